//! Probes, the envelope for framework errors, request ids, the OpenAPI document, and quick 503s
//! when the database is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::auth::{Claims, Keys, Scope, Subject};
use baton::http::HttpConfig;
use serde_json::Value;

use crate::common::{TestApp, assert_error};

/// Asserts a `Retry-After` of whole, positive seconds (every 503 and 429 carries one).
fn assert_retry_after(res: &reqwest::Response) {
    let value = res
        .headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on the {} of {}", res.status(), res.url()))
        .to_str()
        .unwrap();
    let seconds: u64 = value
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {value:?} is not whole seconds"));
    assert!(seconds > 0, "Retry-After {seconds}");
}

#[tokio::test]
async fn probes_answer() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn unknown_path_and_wrong_method_use_the_envelope() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/no/such/thing"))
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "/no/such/thing").await;
    let res = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert!(res.headers().get("allow").is_some());
    assert_error(res, 405, "DELETE").await;
}

#[tokio::test]
async fn request_id_is_generated_or_echoed() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    let id = res.headers().get("x-request-id").unwrap().to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let res = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers().get("x-request-id").unwrap(), "trace-me-42");
}

#[tokio::test]
async fn openapi_document_is_served_and_matches_the_committed_file() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let served: Value = res.json().await.unwrap();
    let committed: Value =
        serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    assert_eq!(served, committed);
    assert_eq!(
        served["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
}

/// A pool aimed at a port where nothing listens: every database call fails.
fn dead_pool() -> sqlx::PgPool {
    let options = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(9)
        .username("nobody")
        .database("nothing");
    baton::db::pool_options(&baton::db::DbConfig::default()).connect_lazy_with(options)
}

#[tokio::test]
async fn database_outage_gives_quick_503s() {
    let keys = Arc::new(Keys::new(b"outage-test-secret-outage-test-secret"));
    let app = TestApp::spawn_with(dead_pool(), keys.clone(), HttpConfig::default()).await;
    // Liveness does not depend on the database.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let started = Instant::now();
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_retry_after(&res);
    assert_error(res, 503, "database").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let now = chrono::Utc::now();
    let token = keys.sign(&Claims::new(
        Subject::Org(uuid::Uuid::new_v4()),
        vec![Scope::ReadAll],
        now,
        now + chrono::Duration::hours(1),
    ));
    let started = Instant::now();
    let res = app.get("/v1/me", &token).await;
    assert_retry_after(&res);
    let body = assert_error(res, 503, "database").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Nothing internal leaks.
    assert!(
        !body["message"].as_str().unwrap().contains("127.0.0.1"),
        "{body}"
    );
}

/// Holds an exclusive lock on `api_tokens` (every token check waits on it) until dropped.
async fn block_token_checks(pool: &sqlx::PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("lock table api_tokens in access exclusive mode")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

#[tokio::test]
async fn a_request_over_its_time_limit_is_a_503() {
    let (pool, _) = crate::common::fresh_database().await;
    let keys = Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
    let config = HttpConfig {
        request_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let app = TestApp::spawn_with(pool.clone(), keys, config).await;
    let org = app.org("acme", None, None).await;
    let token = app.reader(&org).await;
    let lock = block_token_checks(&pool).await;
    let started = Instant::now();
    let res = app.get("/v1/me", &token).await;
    assert_retry_after(&res);
    assert_error(res, 503, "timed out").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    lock.rollback().await.unwrap();
    assert_eq!(app.get("/v1/me", &token).await.status(), 200);
}

#[tokio::test]
async fn a_statement_over_its_time_limit_is_a_503() {
    let (pool, options) = crate::common::fresh_database().await;
    let keys = Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
    let impatient = baton::db::DbConfig {
        statement_timeout: Duration::from_millis(200),
        ..baton::db::DbConfig::default()
    };
    let short = baton::db::pool_options(&impatient)
        .connect_with(baton::db::with_session_settings(options, &impatient))
        .await
        .unwrap();
    let app = TestApp::spawn_with(short, keys, HttpConfig::default()).await;
    let org = baton::admin::create_org(&pool, "acme", None, None, None)
        .await
        .unwrap();
    let token = baton::admin::issue_token_for(
        &pool,
        &app.keys,
        Subject::Org(org.id),
        &[Scope::ReadAll],
        chrono::Duration::days(1),
    )
    .await
    .unwrap()
    .token;
    let lock = block_token_checks(&pool).await;
    let started = Instant::now();
    let res = app.get("/v1/me", &token).await;
    assert_retry_after(&res);
    assert_error(res, 503, "too slow").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    lock.rollback().await.unwrap();
}
