//! Store tests: the functions of `baton::store` called directly on a real, migrated database (one
//! per test), with hand-built events and answers worked out by hand. The HTTP tests (`tests/api`)
//! cover the same data through the endpoints; these pin each store function's own contract.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod configuration;
mod events;
mod handoffs;
mod lifecycle;
mod migrations;
mod rollups;
mod tenants;
mod webhooks;

use baton::auth::OrgId;
use baton::domain::events::validate;
use baton::store::events::{IngestError, Ingested, NewEvent, ingest};
use serde_json::Value;

/// The validated batch of `events` (each must be valid).
pub fn batch(events: &[Value]) -> Vec<NewEvent> {
    events
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let mut problems = Vec::new();
            let event = validate(value, &format!("events[{i}]"), &mut problems);
            assert!(problems.is_empty(), "events[{i}]: {problems:?}");
            NewEvent {
                event: event.unwrap(),
                body: value.clone(),
            }
        })
        .collect()
}

/// Ingests `events` into `org`.
pub async fn store(
    pool: &sqlx::PgPool,
    org: OrgId,
    events: &[Value],
) -> Result<Ingested, IngestError> {
    ingest(pool, org, &batch(events)).await
}
