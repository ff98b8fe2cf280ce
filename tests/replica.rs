//! `--read-database-url` against a real streaming replica that the harness starts
//! (`pg_basebackup -R` from the throwaway primary): reads are served by the replica, writes and
//! the configuration GET by the primary; with the replica lagging (replay paused) or stopped
//! (frozen, then killed) every read still succeeds and sees what was just written.
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::db::DbConfig;
use baton::db::replica::{APPLICATION_NAME, PROBE_EVERY, ReadReplica};
use baton::http::{AppState, HttpConfig};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use common::fixtures::sessions_with_handoffs;
use common::replica::Replica;
use common::{TestApp, fresh_database, server_admin};

const MAX_LAG: Duration = Duration::from_secs(1);

const ANALYTICS: &str =
    "/handoff-analytics?start_date=2026-11-01T00:00:00Z&end_date=2026-12-01T00:00:00Z";

/// A value of the admin `/metrics` text (the first line starting with `name`).
async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    let text = app
        .client
        .get(format!("{}/metrics", app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits (at most 10 s) until `check` holds.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The handoff total the analytics report gives.
async fn total_handoffs(app: &TestApp, token: &str) -> u64 {
    let res = app.get(ANALYTICS, token).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["total_handoffs"].as_u64().unwrap()
}

/// Statements Baton's read connections have run in the test database on the replica.
async fn replica_reads(replica: &mut PgConnection, database: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity where application_name = $1 and datname = $2",
    )
    .bind(APPLICATION_NAME)
    .bind(database)
    .fetch_one(replica)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_use_the_replica_and_fall_back_to_the_primary() {
    let (pool, options) = fresh_database().await;
    let database = options.get_database().unwrap().to_owned();
    let replica = Replica::start(&server_admin());
    let read = ReadReplica::with_options(
        replica.options(&database),
        &DbConfig::default(),
        &pool,
        MAX_LAG,
    );
    let keys = Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
    let state = AppState::new(pool, keys).with_read_replica(read.clone());
    let app = TestApp::spawn_with_state(state, HttpConfig::default()).await;
    let org = app.org("a", None, None).await;
    let token = app.writer(&org).await;
    app.post_events_ok(&token, &sessions_with_handoffs("a", 0, 50))
        .await;

    // Caught up: reads go to the replica, which has the events. (The lag is as of the last
    // probe: let one start after the commit.)
    tokio::time::sleep(PROBE_EVERY * 3).await;
    until("the replica to catch up", || async {
        metric(&app, "baton_read_replica_up").await == Some(1.0)
            && metric(&app, "baton_read_replica_lag_seconds").await == Some(0.0)
    })
    .await;
    let mut on_replica = PgConnection::connect_with(&replica.options(&database))
        .await
        .unwrap();
    let replica_has: i64 = sqlx::query_scalar("select count(*) from handoffs")
        .fetch_one(&mut on_replica)
        .await
        .unwrap();
    assert_eq!(replica_has, 50);
    assert_eq!(total_handoffs(&app, &token).await, 50);
    for path in [
        "/v1/handoffs",
        "/v1/handoffs/a-3",
        "/v1/metrics?startDate=2026-11-01&endDate=2026-12-01",
    ] {
        assert_eq!(app.get(path, &token).await.status(), 200, "{path}");
    }
    let polyai = format!("/v1/{}/default/handoff_state?id=a-3", org.id);
    assert_eq!(app.get(&polyai, &token).await.status(), 200);
    assert!(replica_reads(&mut on_replica, &database).await >= 1);
    let replica_count = metric(&app, "baton_reads_total{target=\"replica\"}").await;
    assert!(replica_count >= Some(5.0), "{replica_count:?}");
    assert_eq!(
        metric(&app, "baton_reads_total{target=\"primary\"}").await,
        None
    );
    // The configuration GET (it feeds a GET-modify-PUT) stays on the primary: no read counted.
    assert_eq!(
        app.get("/v1/api/human_handoff/configuration", &token)
            .await
            .status(),
        200
    );
    assert_eq!(
        metric(&app, "baton_reads_total{target=\"replica\"}").await,
        replica_count
    );

    // Lagging: replay paused, new events on the primary. Once the lag passes the bound, reads
    // go to the primary and see them.
    sqlx::query("select pg_wal_replay_pause()")
        .execute(&mut on_replica)
        .await
        .unwrap();
    app.post_events_ok(&token, &sessions_with_handoffs("a", 50, 10))
        .await;
    until("the lag to pass the bound", || async {
        metric(&app, "baton_read_replica_lag_seconds")
            .await
            .is_some_and(|lag| lag > MAX_LAG.as_secs_f64())
    })
    .await;
    assert_eq!(total_handoffs(&app, &token).await, 60);
    assert!(metric(&app, "baton_reads_total{target=\"primary\"}").await >= Some(1.0));
    // Replay resumed: back on the replica, which has caught up.
    sqlx::query("select pg_wal_replay_resume()")
        .execute(&mut on_replica)
        .await
        .unwrap();
    until("the replica to catch up again", || async {
        metric(&app, "baton_read_replica_lag_seconds").await == Some(0.0)
    })
    .await;
    let before = metric(&app, "baton_reads_total{target=\"replica\"}").await;
    assert_eq!(total_handoffs(&app, &token).await, 60);
    assert!(metric(&app, "baton_reads_total{target=\"replica\"}").await > before);
    on_replica.close().await.ok();

    // Frozen (SIGSTOP): within a probe's timeout reads go to the primary; each succeeds and sees
    // what was written meanwhile.
    replica.freeze();
    let frozen = Instant::now();
    until("the replica to count as down", || async {
        metric(&app, "baton_read_replica_up").await == Some(0.0)
    })
    .await;
    assert!(frozen.elapsed() < Duration::from_secs(3));
    app.post_events_ok(&token, &sessions_with_handoffs("a", 60, 5))
        .await;
    for _ in 0..20 {
        assert_eq!(total_handoffs(&app, &token).await, 65);
    }
    for path in [
        "/v1/handoffs/a-62",
        "/v1/metrics?startDate=2026-11-01&endDate=2026-12-01",
    ] {
        assert_eq!(app.get(path, &token).await.status(), 200, "{path}");
    }
    // Killed: the same.
    replica.kill();
    app.post_events_ok(&token, &sessions_with_handoffs("a", 65, 5))
        .await;
    for _ in 0..20 {
        assert_eq!(total_handoffs(&app, &token).await, 70);
    }
    assert_eq!(metric(&app, "baton_read_replica_up").await, Some(0.0));
    read.close().await;
}
