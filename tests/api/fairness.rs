//! One organization's write burst never makes another organization's requests fail: batches wait
//! for their organization's turn holding no database connection.

use crate::common::TestApp;
use crate::common::fixtures::sessions_with_handoffs as batch;
use futures::future::join_all;

#[tokio::test]
async fn a_burst_of_one_organization_does_not_fail_another() {
    let app = TestApp::spawn().await;
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
