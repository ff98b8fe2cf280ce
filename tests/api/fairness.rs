//! One organization's write burst never makes another organization's requests fail: batches wait
//! for their organization's turn holding no database connection.

use std::time::Duration;

use baton::admission::{DEFAULT_MAX_WAITING, IngestAdmission};
use baton::http::{AppState, HttpConfig};
use futures::future::join_all;

use crate::common::fixtures::sessions_with_handoffs as batch;
use crate::common::{TestApp, TestDb};

#[tokio::test]
async fn a_burst_of_one_organization_does_not_fail_another() {
    // The default admission (4 writers on the harness's 8 connections), except for how long a
    // batch may wait: the 32nd batch waits for 31 others, whose time depends on the machine, and a
    // 503 for that wait is the admission's documented answer, not what this test is about.
    let TestDb { pool, keys } = TestDb::new().await;
    let state = AppState::new(pool, keys).with_ingest_admission(IngestAdmission::new(
        4,
        DEFAULT_MAX_WAITING,
        Duration::from_secs(600),
    ));
    let app = TestApp::spawn_with_state(state, HttpConfig::default()).await;
    let noisy = app.org("noisy", None, None).await;
    let quiet = app.org("quiet", None, None).await;
    let noisy_token = app.writer(&noisy).await;
    let quiet_token = app.writer(&quiet).await;

    // 32 concurrent batches of 1,000 events (the harness's pool has 8 connections).
    let burst = join_all((0..32).map(|b| {
        let events = batch(&format!("b{b}"), 0, 500);
        let app = &app;
        let token = &noisy_token;
        async move { app.post_events(token, &events).await.status().as_u16() }
    }));
    // Meanwhile the other organization reads and writes, one request after another.
    let other = async {
        let mut statuses = Vec::new();
        for round in 0..12 {
            let res = app
                .post_events(&quiet_token, &batch(&format!("q{round}"), 0, 2))
                .await;
            statuses.push(("POST /v1/events", res.status().as_u16()));
            for path in [
                "/v1/handoffs?limit=5",
                "/handoff-analytics?start_date=2026-11-01T00:00:00Z&end_date=2026-12-01T00:00:00Z",
                "/v1/me",
            ] {
                statuses.push((path, app.get(path, &quiet_token).await.status().as_u16()));
            }
        }
        statuses
    };
    let (burst, other) = tokio::join!(burst, other);

    let failed: Vec<_> = other.iter().filter(|(_, s)| *s != 200).collect();
    assert!(failed.is_empty(), "the quiet organization got {failed:?}");
    assert!(burst.iter().all(|s| *s == 200), "burst statuses {burst:?}");
    // Everything acknowledged is stored exactly once.
    let stored: i64 = sqlx::query_scalar("select count(*) from events where org_id = $1")
        .bind(noisy.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 32 * 1000);
    let quiet_handoffs: i64 = sqlx::query_scalar("select count(*) from handoffs where org_id = $1")
        .bind(quiet.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(quiet_handoffs, 12 * 2);
}
