//! Plans that do not depend on fresh planner statistics: an organization whose rows arrived after
//! the last `ANALYZE` (autovacuum off here, as after a bulk load or a crash) is still ingested by
//! primary key, and Baton refreshes the statistics itself after a load.

use std::time::{Duration, Instant};

use baton::db::stats::StatsKeeper;
use baton::http::{AppState, HttpConfig};
use serde_json::json;
use sqlx::PgPool;

use crate::common::fixtures::{completions, sessions_with_handoffs};
use crate::common::{TestApp, fresh_database};

/// A Baton on `pool` whose own statistics keeper never runs.
async fn app_without_keeper(pool: PgPool, keys: std::sync::Arc<baton::auth::Keys>) -> TestApp {
    let state = AppState::new(pool.clone(), keys)
        .with_stats_keeper(StatsKeeper::with_min_events(pool, i64::MAX));
    TestApp::spawn_with_state(state, HttpConfig::default()).await
}

async fn no_autovacuum(pool: &PgPool) {
    let tables: Vec<String> = sqlx::query_scalar(
        "select relname::text from pg_class where relkind = 'r' and relnamespace = 'public'::regnamespace",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for t in tables {
        sqlx::query(&format!("alter table {t} set (autovacuum_enabled = false)"))
            .execute(pool)
            .await
            .unwrap();
    }
}

/// Index tuples read through `index` so far, as the statistics system knows them (backends
/// report when they exit, so the caller closes the pools whose reads it wants counted).
async fn tuples_read(admin: &PgPool, index: &str) -> i64 {
    sqlx::query_scalar("select idx_tup_read from pg_stat_user_indexes where indexrelname = $1")
        .bind(index)
        .fetch_one(admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn ingest_looks_rows_up_by_primary_key_whatever_the_statistics_say() {
    let (pool, options) = fresh_database().await;
    no_autovacuum(&pool).await;
    let keys = std::sync::Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
    let loader = app_without_keeper(pool.clone(), keys.clone()).await;
    let known = loader.org("known", None, None).await;
    let fresh = loader.org("fresh", None, None).await;
    let known_token = loader.writer(&known).await;
    let fresh_token = loader.writer(&fresh).await;

    // The statistics know one organization; then another one's rows arrive.
    let res = loader
        .post_events(&known_token, &sessions_with_handoffs("k", 0, 300))
        .await;
    assert_eq!(res.status(), 200);
    sqlx::query("analyze").execute(&pool).await.unwrap();
    for b in 0..8 {
        let res = loader
            .post_events(&fresh_token, &sessions_with_handoffs("f", b * 500, 500))
            .await;
        assert_eq!(res.status(), 200);
    }

    // A server that starts now (new connections, no plan cached) completes them.
    let pool2 = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone())
        .await
        .unwrap();
    let app = app_without_keeper(pool2.clone(), keys).await;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    let before_handoffs = tuples_read(&admin, "handoffs_session_idx").await;
    let before_sessions = tuples_read(&admin, "sessions_started_at_idx").await;
    for b in 0..8 {
        let res = app
            .post_events(&fresh_token, &completions("f", b * 500, 500))
            .await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
    let res = app
        .post_events(
            &fresh_token,
            &[json!({"id": "f-end", "type": "session.ended", "occurred_at": "2026-11-29T11:00:00Z",
                     "session_id": "f-3"})],
        )
        .await;
    assert_eq!(res.status(), 200);
    // The server's connections report what they read when they exit.
    pool2.close().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut read_handoffs, mut read_sessions);
    loop {
        sqlx::query("select pg_stat_clear_snapshot()")
            .execute(&admin)
            .await
            .unwrap();
        read_handoffs = tuples_read(&admin, "handoffs_session_idx").await - before_handoffs;
        read_sessions = tuples_read(&admin, "sessions_started_at_idx").await - before_sessions;
        let reported: i64 = sqlx::query_scalar(
            "select idx_scan from pg_stat_user_indexes where indexrelname = 'handoffs_pkey'",
        )
        .fetch_one(&admin)
        .await
        .unwrap();
        if reported >= 4000 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A custom plan would have read all 4,000 of the organization's handoffs through the
    // session index for each of the 4,000 lookups (16 million index tuples).
    assert!(
        read_handoffs < 4_000,
        "handoffs_session_idx read {read_handoffs} tuples"
    );
    assert!(
        read_sessions < 4_000,
        "sessions_started_at_idx read {read_sessions} tuples"
    );
}

#[tokio::test]
async fn baton_refreshes_the_statistics_after_a_load() {
    let (pool, _) = fresh_database().await;
    no_autovacuum(&pool).await;
    let keys = std::sync::Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
    let state = AppState::new(pool.clone(), keys)
        .with_stats_keeper(StatsKeeper::with_min_events(pool.clone(), 2_000));
    let app = TestApp::spawn_with_state(state, HttpConfig::default()).await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let analyzed = || async {
        sqlx::query_scalar::<_, f32>("select reltuples from pg_class where relname = 'handoffs'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert!(analyzed().await < 1.0);
    for b in 0..3 {
        let res = app
            .post_events(&token, &sessions_with_handoffs("a", b * 500, 500))
            .await;
        assert_eq!(res.status(), 200);
    }
    // Past 2,000 stored events, an ANALYZE runs in the background (the estimate it leaves is
    // exact for a table this small).
    let deadline = Instant::now() + Duration::from_secs(10);
    while analyzed().await < 1000.0 {
        assert!(Instant::now() < deadline, "handoffs never analyzed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
