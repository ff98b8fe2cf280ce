//! Baton against database faults as an operator meets them: PostgreSQL frozen (SIGSTOP), killed
//! and restarted, while Baton keeps running. Each test has a cluster of its own.
//!
//! These check behaviour (503 in the envelope with `Retry-After`, nothing hangs, the first
//! requests after recovery succeed); the timings are measured by `cargo bench --bench faults`.
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;
#[path = "common/faulty.rs"]
mod faulty;

use std::time::{Duration, Instant};

use baton::http::HttpConfig;
use futures::future::join_all;

use common::fixtures::sessions_with_handoffs as batch;
use common::{TestApp, assert_error};
use faulty::FaultyDb;

/// Generous bound for "ends quickly" (the goal is 2 s; the bench measures it): a request that
/// hung on the database would take the 30 s request timeout.
const QUICK: Duration = Duration::from_secs(5);

type Pending<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = (String, reqwest::Response)> + 'a>>;

/// Every kind of request an outage meets: probes, reads, a write.
async fn requests(app: &TestApp, token: &str, tag: &str) -> Vec<(String, reqwest::Response)> {
    let reads = [
        "/readyz",
        "/v1/me",
        "/handoff-analytics?start_date=2026-11-01T00:00:00Z&end_date=2026-11-10T00:00:00Z",
        "/v1/handoffs",
        "/v1/api/human_handoff/configuration",
    ];
    let mut futures: Vec<Pending<'_>> = reads
        .iter()
        .map(|path| {
            let fut = async move { (path.to_string(), app.get(path, token).await) };
            Box::pin(fut) as Pending<'_>
        })
        .collect();
    let events = batch(tag, 0, 5);
    futures.push(Box::pin(async move {
        (
            "POST /v1/events".to_owned(),
            app.post_events(token, &events).await,
        )
    }));
    join_all(futures).await
}

async fn assert_all_ok(app: &TestApp, token: &str, tag: &str) {
    for (what, res) in requests(app, token, tag).await {
        let status = res.status();
        assert!(
            status.is_success(),
            "{what}: {status} {}",
            res.text().await.unwrap()
        );
    }
}

async fn assert_all_503(app: &TestApp, token: &str, tag: &str) {
    let started = Instant::now();
    for (what, res) in requests(app, token, tag).await {
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        assert!(
            retry_after.is_some_and(|s| s >= 1),
            "{what}: Retry-After {retry_after:?}"
        );
        let body = assert_error(res, 503, "").await;
        assert!(
            body["message"].as_str().unwrap().contains("database")
                || body["message"].as_str().unwrap().contains("timed out"),
            "{what}: {body}"
        );
    }
    assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_frozen_database_gives_503s_and_the_first_requests_after_it_succeed() {
    let db = FaultyDb::start();
    let (app, _database) = db.serve(HttpConfig::default()).await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    assert_all_ok(&app, &token, "warm").await;

    db.freeze();
    // Requests already waiting on the database when it froze, and new ones meanwhile.
    assert_all_503(&app, &token, "frozen-1").await;
    assert_all_503(&app, &token, "frozen-2").await;
    db.thaw();

    // No warm-up allowed: the very first requests after the thaw succeed.
    assert_all_ok(&app, &token, "after").await;
    // What a frozen batch did is either stored whole or not at all: re-sending it is safe.
    let res = app.post_events(&token, &batch("frozen-1", 0, 5)).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn a_killed_database_gives_quick_503s_and_no_request_fails_after_its_restart() {
    let mut db = FaultyDb::start();
    let (app, _database) = db.serve(HttpConfig::default()).await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    // Fill the pool with connections that the crash will cut.
    for _ in 0..3 {
        assert_all_ok(&app, &token, "warm").await;
    }
    let stored_before: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&app.pool)
        .await
        .unwrap();

    db.kill();
    assert_all_503(&app, &token, "down").await;
    db.restart();

    // Every request right after the restart succeeds: no dead pooled connection is handed out.
    for round in 0..3 {
        assert_all_ok(&app, &token, &format!("after-{round}")).await;
    }

    // A crash and restart that no request saw: the pool still holds the connections it cut.
    for _ in 0..3 {
        assert_all_ok(&app, &token, "warm").await;
    }
    db.kill();
    db.restart();
    assert_all_ok(&app, &token, "unseen").await;

    // What was acknowledged before the crashes is still there.
    let stored_after: i64 =
        sqlx::query_scalar("select count(*) from events where event_id like 'warm-%'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored_after, stored_before);
}

#[tokio::test]
async fn an_export_aborts_when_the_database_freezes_mid_stream() {
    let db = FaultyDb::start();
    let (app, _database) = db.serve(HttpConfig::default()).await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    // 40,000 handoffs (~8 MB of CSV): far more than the socket buffers hold, so the server must
    // go back to the database while the client reads.
    for i in 0..8 {
        let res = app.post_events(&token, &batch("x", i * 5_000, 5_000)).await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
    // A complete export ends with its last record.
    let full = app
        .get("/v1/exports/handoffs", &token)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(full.matches("\r\n").count(), 40_001);

    let mut res = app.get("/v1/exports/handoffs", &token).await;
    assert_eq!(res.status(), 200);
    let first = res.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    db.freeze();
    let started = Instant::now();
    let mut received = first.len();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(20), res.chunk()).await {
            Ok(Ok(Some(bytes))) => received += bytes.len(),
            Ok(Ok(None)) => break "complete",
            Ok(Err(_)) => break "aborted",
            Err(_) => break "hung",
        }
    };
    db.thaw();
    // The client can tell: the body ends with an error, not as if it were whole.
    assert_eq!(ended, "aborted", "after {received} of {} bytes", full.len());
    assert!(received < full.len());
    assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
    // And the next export after the thaw is whole.
    let again = app
        .get("/v1/exports/handoffs", &token)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(again.len(), full.len());
}
