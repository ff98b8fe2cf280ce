//! `--raw-event-retention-days N`: the background task that deletes raw events that occurred more
//! than N days ago.
//!
//! Policy: bounded work, never in ingest's way. Each transaction deletes at most
//! [`RetentionOptions::batch`] events (found through a BRIN index on `occurred_at`), then the task
//! pauses, so locks are held for milliseconds and the write-ahead log grows in small steps; it
//! takes no ingest lock (ingest inserts new rows, retention deletes old ones). A pass runs until
//! nothing older than the cutoff is left, then the task sleeps until the next pass. Projections
//! and rollups are not touched (see `store::retention`). With several servers on one database,
//! each runs the task; their passes delete disjoint batches or find nothing.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;

use crate::store::retention::prune_batch;

/// How the retention task works.
#[derive(Debug, Clone, Copy)]
pub struct RetentionOptions {
    /// Raw events that occurred more than this many days ago are deleted.
    pub days: u32,
    /// Events deleted per transaction.
    pub batch: i64,
    /// Pause between two batches.
    pub pause: Duration,
    /// Time between two passes.
    pub every: Duration,
}

impl RetentionOptions {
    /// The defaults for `days`: 5,000 events a transaction, 50 ms between them, a pass a minute.
    pub fn days(days: u32) -> RetentionOptions {
        RetentionOptions {
            days,
            batch: 5_000,
            pause: Duration::from_millis(50),
            every: Duration::from_secs(60),
        }
    }
}

/// One pass: deletes every raw event older than the cutoff, batch by batch; returns how many.
pub async fn run_once(pool: &PgPool, options: RetentionOptions) -> sqlx::Result<u64> {
    let cutoff = Utc::now() - chrono::Duration::days(i64::from(options.days));
    let mut total = 0;
    loop {
        let deleted = prune_batch(pool, cutoff, options.batch).await?;
        total += deleted;
        if deleted < options.batch.max(0) as u64 {
            return Ok(total);
        }
        tokio::time::sleep(options.pause).await;
    }
}

/// Runs passes in the background for as long as the process lives.
pub fn spawn(pool: PgPool, options: RetentionOptions) {
    tokio::spawn(async move {
        loop {
            match run_once(&pool, options).await {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::info!(deleted, days = options.days, "raw event retention pass")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "raw event retention pass failed; retrying at the next pass")
                }
            }
            tokio::time::sleep(options.every).await;
        }
    });
}
