//! HTTP tests: one binary driving the real router on a real listener, each test on a fresh
//! database.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod analytics;
mod auth;
mod configuration;
mod events;
mod fairness;
mod handoffs;
mod hostile;
mod metrics;
mod monitoring;
mod operations;
mod rebuild;
mod statistics;
mod webhooks;
