//! All SQL lives here, one module per aggregate. Functions take an executor (pool, connection or
//! transaction): the caller owns the transaction. Tenant data is always filtered by `org_id`.

pub mod agent_cache;
pub mod analytics;
pub mod configuration;
pub mod erasure;
pub mod events;
pub mod exports;
pub mod handoff_events;
pub mod handoffs;
pub mod lifecycle;
pub mod metrics;
pub mod rebuild;
pub mod retention;
pub mod rollups;
pub mod secrets;
pub mod stats;
pub mod tenants;
pub mod tokens;
pub mod webhooks;

/// Whether an error is the violation of the named constraint.
pub fn is_constraint(e: &sqlx::Error, name: &str) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.constraint() == Some(name))
}
