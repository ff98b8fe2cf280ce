//! Domain types: plain Rust values and the rules they obey, with no HTTP and no SQL, so that they
//! can be unit-tested alone and shared by the HTTP layer, the store and the tools.

pub mod analytics;
pub mod buckets;
pub mod configuration;
pub mod events;
pub mod handoffs;
pub mod input;
pub mod lifecycle;
pub mod metrics;
pub mod projection;
pub mod timerange;
