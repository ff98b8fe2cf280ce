//! Baton: a self-hosted server for AI-to-human handoff that speaks the OpenCX, Quickchat,
//! Telzino and PolyAI handoff APIs over one PostgreSQL.
//!
//! `main.rs` only parses the command line; everything else is here so that tests and helper
//! binaries drive the same code.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod cli;
pub mod db;
pub mod demo;
pub mod domain;
pub mod healthcheck;
pub mod http;
pub mod listener;
pub mod monitoring;
pub mod pg;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod webhooks;
