//! HTTP tests: one binary driving the real router on a real listener, each test on a fresh
//! database.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod analytics;
mod auth;
mod cohort;
mod configuration;
mod dashboard;
mod erasure;
mod events;
mod exports;
mod fairness;
mod grains;
mod handoff_events;
mod handoffs;
mod hostile;
mod lifecycle;
mod metrics;
mod monitoring;
mod operations;
mod rebuild;
mod retention;
mod scope;
mod servers;
mod statistics;
mod webhooks;
