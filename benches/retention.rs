//! Raw event retention benchmark (not a test): how fast `--raw-event-retention-days` deletes old
//! raw events, in its batches of 5,000 per transaction, with the 50 ms pause the server uses
//! between batches and without it, on a fresh embedded PostgreSQL. The events table is filled
//! directly (`insert … select generate_series(…)`, bodies shaped like `session.started` events,
//! in time order as clients send them), since pushing millions of events through HTTP takes too
//! long here.
//!
//! Run: `cargo bench --bench retention` (env: BENCH_EVENTS, default 1000000, half of them deleted
//! with the pause and half without).
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use baton::db::{Database, DbConfig, DbTarget};
use baton::store::retention::prune_batch;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

const BATCH: i64 = 5_000;

async fn phase(pool: &PgPool, cutoff: DateTime<Utc>, pause: Duration) -> (u64, Duration, Duration) {
    let started = Instant::now();
    let mut total = 0;
    let mut slowest = Duration::ZERO;
    loop {
        let t = Instant::now();
        let deleted = prune_batch(pool, cutoff, BATCH).await.unwrap();
        slowest = slowest.max(t.elapsed());
        total += deleted;
        if deleted < BATCH as u64 {
            return (total, started.elapsed(), slowest);
        }
        tokio::time::sleep(pause).await;
    }
}

#[tokio::main]
async fn main() {
    let n = common::env_usize("BENCH_EVENTS", 1_000_000) as i64;
    let dir = tempfile::tempdir().unwrap();
    let _cluster = common::start_cluster(dir.path());
    let db = Database::open(
        &DbTarget::Embedded(dir.path().to_owned()),
        &DbConfig::default(),
    )
    .await
    .unwrap();
    let pool = db.pool.clone();
    let org = baton::admin::create_org(&pool, "bench", None, None, None)
        .await
        .unwrap();
    let base = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let t = Instant::now();
    for chunk in 0..(n + 99_999) / 100_000 {
        let from = chunk * 100_000 + 1;
        let to = (from + 99_999).min(n);
        sqlx::query(
            r#"insert into events (org_id, event_id, type, occurred_at, body)
               select $1, 'e' || g, 'session.started', $2::timestamptz + make_interval(secs => g * 10),
                      json_build_object('id', 'e' || g, 'type', 'session.started',
                          'occurred_at', $2::timestamptz + make_interval(secs => g * 10),
                          'session_id', 's' || g, 'channel', 'web')
               from generate_series($3::bigint, $4::bigint) g"#,
        )
        .bind(org.id)
        .bind(base)
        .bind(from)
        .bind(to)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("vacuum analyze events")
        .execute(&pool)
        .await
        .unwrap();
    println!(
        "loaded {n} raw events in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let half = base + chrono::Duration::seconds(n / 2 * 10 + 5);
    let all = base + chrono::Duration::seconds(n * 10 + 5);
    for (name, cutoff, pause) in [
        (
            "batches of 5,000, 50 ms pause (as the server runs it)",
            half,
            Duration::from_millis(50),
        ),
        ("batches of 5,000, no pause", all, Duration::ZERO),
    ] {
        let (deleted, took, slowest) = phase(&pool, cutoff, pause).await;
        println!(
            "{name}: {deleted} events in {:.2} s = {:.0} events/s; slowest transaction {:.0} ms",
            took.as_secs_f64(),
            deleted as f64 / took.as_secs_f64(),
            slowest.as_secs_f64() * 1e3
        );
    }
    let left: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    db.close().await.unwrap();
}
