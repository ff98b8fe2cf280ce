//! Keeping the planner's statistics up with ingest.
//!
//! Policy: PostgreSQL plans a statement from statistics gathered by `ANALYZE`, which autovacuum
//! runs only after a table grew by a fifth and at most once a minute per database (and not at
//! all where an operator turned it off). Until then an organization whose rows arrived after the
//! last `ANALYZE` looks empty to the planner, which then picks plans that read every row of that
//! organization through the wrong index: measured here, `/handoff-analytics` for an organization
//! loaded with 100,000 handoffs took 38 ms instead of 1 ms until the statistics caught up.
//!
//! So Baton analyzes what it loaded: each server counts the events it stored, and once they
//! reach a tenth of the events table (at least [`MIN_EVENTS`]) it runs `ANALYZE` on the ingested
//! tables in the background (one server at a time, at most one run at a time, never on a
//! request's path). A load of any size is thus followed within seconds by fresh statistics, and
//! a steady stream triggers a number of runs that grows only with the logarithm of the history.
//! Ingest itself does not depend on this: its statements use generic plans (see
//! `store::events`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use sqlx::PgPool;

/// Fewest stored events that trigger a run.
pub const MIN_EVENTS: i64 = 10_000;

/// Counts stored events and analyzes when they add up (see the module docs).
#[derive(Debug)]
pub struct StatsKeeper {
    pool: PgPool,
    min_events: i64,
    pending: AtomicI64,
    /// Events in the table at the last run (the estimate `ANALYZE` left).
    baseline: AtomicI64,
    running: AtomicBool,
}

impl StatsKeeper {
    /// A keeper for the database behind `pool`.
    pub fn new(pool: PgPool) -> Arc<StatsKeeper> {
        StatsKeeper::with_min_events(pool, MIN_EVENTS)
    }

    /// A keeper that waits for at least `min_events` (`i64::MAX`: never runs; for tests that
    /// need statistics to stay stale).
    pub fn with_min_events(pool: PgPool, min_events: i64) -> Arc<StatsKeeper> {
        Arc::new(StatsKeeper {
            pool,
            min_events,
            pending: AtomicI64::new(0),
            baseline: AtomicI64::new(0),
            running: AtomicBool::new(false),
        })
    }

    /// Notes `stored` new events; starts a background `ANALYZE` when they add up.
    pub fn stored(self: &Arc<Self>, stored: usize) {
        let pending = self.pending.fetch_add(stored as i64, Ordering::AcqRel) + stored as i64;
        let due = (self.baseline.load(Ordering::Acquire) / 10).max(self.min_events);
        if pending < due || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            this.pending.store(0, Ordering::Release);
            match crate::store::stats::analyze_ingested(&this.pool).await {
                Ok(Some(rows)) => {
                    tracing::debug!(rows, "planner statistics refreshed");
                    this.baseline.store(rows, Ordering::Release);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not refresh planner statistics");
                }
            }
            this.running.store(false, Ordering::Release);
        });
    }
}
