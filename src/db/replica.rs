//! `--read-database-url`: reads from a streaming replica, while it is up and close enough behind.
//!
//! Policy: reads that may be a few seconds stale (analytics, metrics, handoff lists and lookups,
//! PolyAI's lookup) ask [`ReadReplica::pool`] for a pool; every write, the configuration GET (it
//! feeds a GET-modify-PUT), token checks and anything inside a write transaction use the primary
//! and never come here. A probe task watches the replica every [`PROBE_EVERY`] from a connection of
//! its own (each probe bounded by [`PROBE_TIMEOUT`]) and measures its lag by write-ahead-log
//! position rather than by the time of the last replayed transaction (which grows on an idle
//! primary): it notes the primary's `pg_current_wal_insert_lsn()` at each probe (the insert
//! position, not the write position, which trails it under `synchronous_commit = off`), and the lag is the age of
//! the oldest noted position the replica has not replayed yet (`pg_last_wal_replay_lsn()`), zero
//! once it has replayed everything the primary had written. Reads go to the primary while the
//! replica does not answer its probe, or lags more than the bound (`--read-replica-max-lag-secs`),
//! so a stopped, frozen or paused replica costs no failed request beyond those already running on
//! it when it stopped. Replica connections carry the application name [`APPLICATION_NAME`].

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use super::{DbConfig, pool_options, with_session_settings};

/// `application_name` of the replica connections (visible in its `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "baton-read";
/// Time between two probes of the replica.
pub const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Longest a probe may take before the replica counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Default bound of the replica's lag (`--read-replica-max-lag-secs`).
pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(5);

/// A streaming replica for reads, with what its probe last saw.
#[derive(Debug)]
pub struct ReadReplica {
    pool: PgPool,
    generic: PgPool,
    max_lag: Duration,
    up: AtomicBool,
    /// The lag in microseconds, as last measured.
    lag_micros: AtomicU64,
    stop: AtomicBool,
}

impl ReadReplica {
    /// Pools to the replica at `url` (connections open on first use, so a replica that is down at
    /// start does not stop the server), and the probe comparing it with `primary`.
    pub fn open(
        url: &str,
        config: &DbConfig,
        primary: &PgPool,
        max_lag: Duration,
    ) -> anyhow::Result<Arc<ReadReplica>> {
        let options = PgConnectOptions::from_str(url)
            .context("--read-database-url is not a valid PostgreSQL URL")?;
        Ok(ReadReplica::with_options(options, config, primary, max_lag))
    }

    /// [`ReadReplica::open`] with connect options.
    pub fn with_options(
        options: PgConnectOptions,
        config: &DbConfig,
        primary: &PgPool,
        max_lag: Duration,
    ) -> Arc<ReadReplica> {
        let options = with_session_settings(options, config).application_name(APPLICATION_NAME);
        let pool = pool_options(config).connect_lazy_with(options.clone());
        let generic = pool_options(&DbConfig {
            max_connections: config.max_connections.min(8),
            ..config.clone()
        })
        .connect_lazy_with(
            options
                .clone()
                .options([("plan_cache_mode", "force_generic_plan")]),
        );
        let replica = Arc::new(ReadReplica {
            pool,
            generic,
            max_lag,
            up: AtomicBool::new(false),
            lag_micros: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let probe = Arc::clone(&replica);
        let primary = primary.clone();
        tokio::spawn(async move { probe.watch(options, primary).await });
        replica
    }

    /// The replica's pool when reads may use it now, else `None` (read from the primary).
    pub fn pool(&self) -> Option<&PgPool> {
        self.usable().then_some(&self.pool)
    }

    /// The replica's pool with generic plans (the `/v1/metrics` reads), under the same rule.
    pub fn generic_pool(&self) -> Option<&PgPool> {
        self.usable().then_some(&self.generic)
    }

    /// Whether reads go to the replica now: it answered its last probe and its lag is within
    /// the bound.
    pub fn usable(&self) -> bool {
        self.up.load(Ordering::Acquire) && self.lag() <= self.max_lag
    }

    /// Whether the replica answered its last probe.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The replica's lag as last measured.
    pub fn lag(&self) -> Duration {
        Duration::from_micros(self.lag_micros.load(Ordering::Acquire))
    }

    /// Stops the probe and closes the pools.
    pub async fn close(&self) {
        self.stop.store(true, Ordering::Release);
        self.pool.close().await;
        self.generic.close().await;
    }

    async fn watch(&self, options: PgConnectOptions, primary: PgPool) {
        let mut conn: Option<PgConnection> = None;
        // Primary positions not yet replayed, with when they were noted (oldest first).
        let mut pending: VecDeque<(i64, Instant)> = VecDeque::new();
        while !self.stop.load(Ordering::Acquire) {
            let probed = tokio::time::timeout(PROBE_TIMEOUT, async {
                if conn.is_none() {
                    conn = Some(PgConnection::connect_with(&options).await?);
                }
                let primary_lsn: i64 = sqlx::query_scalar(
                    "select (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
                )
                .fetch_one(&primary)
                .await?;
                let Some(c) = conn.as_mut() else {
                    unreachable!("connected above")
                };
                let replayed: Option<i64> = sqlx::query_scalar(
                    "select case when pg_is_in_recovery() then (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint end",
                )
                .fetch_one(c)
                .await?;
                Ok::<_, sqlx::Error>((primary_lsn, replayed))
            })
            .await;
            match probed {
                Ok(Ok((primary_lsn, replayed))) => {
                    let now = Instant::now();
                    if pending.back().is_none_or(|(lsn, _)| *lsn < primary_lsn) {
                        pending.push_back((primary_lsn, now));
                        // Bounded (a replica paused for hours): drop the newest-but-one, never
                        // the oldest, which the lag is measured from.
                        if pending.len() > 10_000 {
                            pending.remove(pending.len() - 2);
                        }
                    }
                    // Not in recovery: a promoted replica, or the primary itself; nothing to wait for.
                    let replayed = replayed.unwrap_or(i64::MAX);
                    while pending.front().is_some_and(|(lsn, _)| *lsn <= replayed) {
                        pending.pop_front();
                    }
                    let lag = pending
                        .front()
                        .map_or(Duration::ZERO, |(_, since)| now.duration_since(*since));
                    self.lag_micros
                        .store(lag.as_micros() as u64, Ordering::Release);
                    self.up.store(true, Ordering::Release);
                }
                _ => {
                    if self.up.swap(false, Ordering::AcqRel) {
                        tracing::warn!(
                            "the read replica does not answer; reading from the primary"
                        );
                    }
                    // A frozen server keeps a connection open: start afresh next time.
                    conn = None;
                }
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }
}
