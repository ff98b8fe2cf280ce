//! Two Baton servers on one database (as behind a load balancer): a revocation through one is
//! refused by the other at once, configuration ETags are the database's (a PUT through one with
//! an ETag the other gave), the metrics cache of one sees what the other ingested, and rate limits
//! are per server process, as documented.

use std::sync::Arc;

use baton::auth::{Scope, Subject};
use baton::http::{AppState, HttpConfig};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

use crate::common::{TestApp, eventually_status, fresh_database};

/// Two servers, each with its own pool, token memory, metrics cache and rate limiter, on one
/// fresh database.
async fn two_servers(config: HttpConfig) -> (TestApp, TestApp) {
    let (pool, options) = fresh_database().await;
    let keys = Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
    let other_pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .unwrap();
    let a = TestApp::spawn_with_state(AppState::new(pool, keys.clone()), config.clone()).await;
    let b = TestApp::spawn_with_state(AppState::new(other_pool, keys), config).await;
    (a, b)
}

#[tokio::test]
async fn a_revocation_through_one_server_is_refused_by_the_other() {
    let (a, b) = two_servers(HttpConfig::default()).await;
    let org = a.org("acme", None, None).await;
    let token = a.reader(&org).await;
    // Both servers have checked (and remember) the token.
    assert_eq!(a.get("/v1/me", &token).await.status(), 200);
    assert_eq!(b.get("/v1/me", &token).await.status(), 200);
    // Revoked as `baton token revoke` does, on server A's connection.
    baton::admin::revoke_token(&a.pool, &token).await.unwrap();
    for app in [&b, &a] {
        let res = eventually_status(|| app.get("/v1/me", &token), 401).await;
        assert_eq!(res.status(), 401);
    }
}

#[tokio::test]
async fn configuration_etags_hold_across_servers() {
    let (a, b) = two_servers(HttpConfig::default()).await;
    let org = a.org("acme", None, None).await;
    let token = a.writer(&org).await;
    let path = "/v1/api/human_handoff/configuration";
    let res = b.get(path, &token).await;
    assert_eq!(res.status(), 200);
    let tag = res.headers()["etag"].to_str().unwrap().to_owned();
    let mut document: Value = res.json().await.unwrap();
    document["settings"]["is_active"] =
        json!(!document["settings"]["is_active"].as_bool().unwrap());
    // A PUT through A with the ETag B gave: accepted; A's new ETag is what B serves next.
    let res = a
        .client
        .put(a.url(path))
        .bearer_auth(&token)
        .header("if-match", &tag)
        .json(&document)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let new_tag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_tag, tag);
    let res = b.get(path, &token).await;
    assert_eq!(res.headers()["etag"].to_str().unwrap(), new_tag);
    // The stale ETag is refused by either server.
    for app in [&b, &a] {
        let res = app
            .client
            .put(app.url(path))
            .bearer_auth(&token)
            .header("if-match", &tag)
            .json(&document)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 412);
    }
}

#[tokio::test]
async fn the_metrics_cache_of_one_server_sees_what_another_ingested() {
    let (a, b) = two_servers(HttpConfig::default()).await;
    let reseller = a.reseller("r").await;
    let org = a.org("acme", Some("r"), None).await;
    let writer = a.writer(&org).await;
    let reader = a
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    let call = |i: usize| {
        json!({"id": format!("c{i}"), "type": "call.completed", "occurred_at": "2026-11-10T10:00:00Z",
               "call_id": format!("c{i}"), "agent_id": "agent-1", "started_at": "2026-11-10T10:00:00Z",
               "duration_seconds": 60, "outcome": "resolved"})
    };
    let agent = json!({"id": "ag", "type": "agent.upserted", "occurred_at": "2026-11-01T00:00:00Z",
                       "agent_id": "agent-1", "name": "One", "status": "active"});
    a.post_events_ok(&writer, &[agent, call(0)]).await;
    // B reads (and caches the reseller's buckets), A ingests, B sees it at once.
    assert_eq!(total_calls(&b, &reader).await, Some(1));
    assert_eq!(total_calls(&b, &reader).await, Some(1));
    a.post_events_ok(&writer, &[call(1), call(2)]).await;
    assert_eq!(total_calls(&b, &reader).await, Some(3));
    assert_eq!(total_calls(&a, &reader).await, Some(3));
}

/// `totalCalls` of the reseller's November.
async fn total_calls(app: &TestApp, token: &str) -> Option<u64> {
    let path = "/v1/metrics?startDate=2026-11-01&endDate=2026-12-01";
    let body: Value = app.get(path, token).await.json().await.unwrap();
    body["data"]["metrics"]["totalCalls"].as_u64()
}

#[tokio::test]
async fn rate_limits_are_per_server_process() {
    let (a, b) = two_servers(HttpConfig {
        rate_limit_per_minute: 3,
        ..HttpConfig::default()
    })
    .await;
    let org = a.org("acme", None, None).await;
    let token = a.reader(&org).await;
    for _ in 0..3 {
        assert_eq!(a.get("/v1/me", &token).await.status(), 200);
    }
    assert_eq!(a.get("/v1/me", &token).await.status(), 429);
    // The other server keeps its own count: two servers allow twice the rate (documented).
    for _ in 0..3 {
        assert_eq!(b.get("/v1/me", &token).await.status(), 200);
    }
    assert_eq!(b.get("/v1/me", &token).await.status(), 429);
}
