//! `store::webhooks`: the outbox of a batch is one row written in the batch's transaction; the
//! fan-out moves it into deliveries once, in order, one server at a time, with each body as the
//! batch left the handoff.

use baton::store::webhooks::{self, FAN_OUT_BATCHES};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::TestDb;
use crate::common::fixtures::event;
use crate::store;

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

fn initiated(id: &str, handoff: &str, minute: u32) -> Value {
    event(
        id,
        "handoff.initiated",
        &format!("2026-11-02T09:{minute:02}:00Z"),
        json!({"handoff_id": handoff, "session_id": "s1", "reasons": ["insufficient_tools"]}),
    )
}

fn started() -> Value {
    event(
        "e0",
        "session.started",
        "2026-11-02T09:00:00Z",
        json!({"session_id": "s1", "channel": "web"}),
    )
}

fn completed(id: &str, handoff: &str, minute: u32) -> Value {
    event(
        id,
        "handoff.completed",
        &format!("2026-11-02T09:{minute:02}:00Z"),
        json!({"handoff_id": handoff}),
    )
}

/// [`webhooks::fan_out`] of up to [`FAN_OUT_BATCHES`] rows: the deliveries it created.
async fn fan_out(conn: &mut sqlx::PgConnection, wait: bool) -> u64 {
    webhooks::fan_out(conn, FAN_OUT_BATCHES, wait)
        .await
        .unwrap()
}

/// Every webhook event type.
fn every_type() -> Vec<String> {
    baton::webhooks::EVENT_TYPES
        .iter()
        .map(|t| (*t).to_owned())
        .collect()
}

/// One endpoint subscribed to `types`, then a batch that starts `s1` and initiates `h1`.
async fn one_handoff_subscribed(db: &TestDb, org: baton::auth::OrgId, types: &[&str]) {
    let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    webhooks::create(&db.pool, org, "http://a.test/", &types, None, "whsec_a")
        .await
        .unwrap();
    store(&db.pool, org, &[started(), initiated("e1", "h1", 1)])
        .await
        .unwrap();
}

/// The deliveries, in delivery order: (endpoint, message id, type, key, state in the body).
async fn deliveries(pool: &PgPool) -> Vec<(uuid::Uuid, String, String, String, String)> {
    let rows: Vec<(uuid::Uuid, String, String, String, String)> = sqlx::query_as(
        "select webhook_id, message_id, event_type, ordering_key, payload
         from webhook_deliveries order by seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(w, m, t, k, p)| {
            let body: Value = serde_json::from_str(&p).unwrap();
            assert_eq!(body["type"], json!(t));
            (
                w,
                m,
                t,
                k,
                body["data"]["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_batch_is_one_outbox_row_fanned_out_once_in_order() {
    let db = TestDb::new().await;
    let (_, org) = db.org("acme", None, None).await;
    let (_, quiet) = db.org("quiet", None, None).await;
    let every = every_type();
    let all = webhooks::create(&db.pool, org, "http://a.test/", &every, None, "whsec_a")
        .await
        .unwrap();
    let done = webhooks::create(
        &db.pool,
        org,
        "http://b.test/",
        &["handoff.completed".to_owned()],
        None,
        "whsec_b",
    )
    .await
    .unwrap();

    let session = started();
    store(
        &db.pool,
        org,
        &[
            session.clone(),
            initiated("e1", "h1", 1),
            initiated("e2", "h2", 2),
        ],
    )
    .await
    .unwrap();
    store(&db.pool, org, &[completed("e3", "h1", 5)])
        .await
        .unwrap();
    // An organization without a subscription writes no outbox row.
    store(&db.pool, quiet, &[session, initiated("e1", "h1", 1)])
        .await
        .unwrap();
    assert_eq!(
        count(&db.pool, "webhook_outbox").await,
        2,
        "one row per batch"
    );
    assert_eq!(count(&db.pool, "webhook_deliveries").await, 0);

    // While another fan-out holds the lock, a worker's fan-out moves nothing (and does not wait).
    let mut held = db.pool.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock(hashtext('baton.webhook_fan_out'))")
        .execute(&mut *held)
        .await
        .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(fan_out(&mut conn, false).await, 0);
    held.rollback().await.unwrap();
    assert_eq!(count(&db.pool, "webhook_outbox").await, 2);

    // Batch 1: two messages to `all`; batch 2: one message to both endpoints.
    assert_eq!(fan_out(&mut conn, false).await, 4);
    assert_eq!(count(&db.pool, "webhook_outbox").await, 0);
    assert_eq!(fan_out(&mut conn, false).await, 0);
    let got = deliveries(&db.pool).await;
    let summary: Vec<(uuid::Uuid, &str, &str, &str)> = got
        .iter()
        .map(|(w, _, t, k, s)| (*w, t.as_str(), k.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            // Fanned out after h1 completed, its first message still shows it as initiated.
            (
                all.id,
                "handoff.initiated",
                "handoff:h1",
                "handoff_initiated"
            ),
            (
                all.id,
                "handoff.initiated",
                "handoff:h2",
                "handoff_initiated"
            ),
            (
                all.id,
                "handoff.completed",
                "handoff:h1",
                "handoff_completed"
            ),
            (
                done.id,
                "handoff.completed",
                "handoff:h1",
                "handoff_completed"
            ),
        ]
    );
    assert_eq!(
        got[2].1, got[3].1,
        "one webhook-id per message, for every endpoint"
    );
    assert_ne!(got[0].1, got[1].1);
}

#[tokio::test]
async fn deliveries_to_a_deleted_endpoint_are_not_fanned_out() {
    let db = TestDb::new().await;
    let (_, org) = db.org("acme", None, None).await;
    let types = vec!["handoff.initiated".to_owned()];
    let kept = webhooks::create(&db.pool, org, "http://a.test/", &types, None, "whsec_a")
        .await
        .unwrap();
    let gone = webhooks::create(&db.pool, org, "http://b.test/", &types, None, "whsec_b")
        .await
        .unwrap();
    store(&db.pool, org, &[started(), initiated("e1", "h1", 1)])
        .await
        .unwrap();
    assert!(webhooks::delete(&db.pool, org, gone.id).await.unwrap());
    let mut tx = db.pool.begin().await.unwrap();
    assert_eq!(webhooks::fan_out_all(&mut tx).await.unwrap(), 1);
    tx.commit().await.unwrap();
    let got = deliveries(&db.pool).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, kept.id);
    assert_eq!(count(&db.pool, "webhook_outbox").await, 0);
}

#[tokio::test]
async fn a_fan_out_rolled_back_leaves_the_batch_in_the_outbox() {
    let db = TestDb::new().await;
    let (_, org) = db.org("acme", None, None).await;
    one_handoff_subscribed(&db, org, &["handoff.initiated"]).await;
    let mut tx = db.pool.begin().await.unwrap();
    assert_eq!(fan_out(&mut tx, true).await, 1);
    tx.rollback().await.unwrap();
    assert_eq!(count(&db.pool, "webhook_outbox").await, 1);
    assert_eq!(count(&db.pool, "webhook_deliveries").await, 0);
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(fan_out(&mut conn, false).await, 1);
    assert_eq!(count(&db.pool, "webhook_deliveries").await, 1);
}

/// The deliveries' bodies in delivery order: `(type, key, data)`.
async fn bodies(pool: &PgPool) -> Vec<(String, String, Value)> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select event_type, ordering_key, payload from webhook_deliveries order by seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(t, k, p)| {
            let body: Value = serde_json::from_str(&p).unwrap();
            assert_eq!(body["type"], json!(t));
            (t, k, body["data"].clone())
        })
        .collect()
}

fn agent(id: &str, name: &str) -> Value {
    event(
        id,
        "agent.upserted",
        "2026-11-02T08:00:00Z",
        json!({"agent_id": "ag", "name": name, "status": "active"}),
    )
}

#[tokio::test]
async fn messages_rendered_at_fan_out_show_records_as_their_batches_left_them() {
    let db = TestDb::new().await;
    let (_, org) = db.org("acme", None, None).await;
    let every = every_type();
    webhooks::create(&db.pool, org, "http://a.test/", &every, None, "whsec_a")
        .await
        .unwrap();
    let session = event(
        "e0",
        "session.started",
        "2026-11-02T09:00:00Z",
        json!({"session_id": "s1", "channel": "web", "agent_id": "ag"}),
    );
    // Nothing is fanned out until every batch is in: each later batch changes what an earlier
    // message shows (the handoff, its session's end, its agent's name).
    store(
        &db.pool,
        org,
        &[session, initiated("e1", "h1", 1), initiated("e2", "h2", 2)],
    )
    .await
    .unwrap();
    store(
        &db.pool,
        org,
        &[agent("a1", "Ava"), completed("e3", "h1", 5)],
    )
    .await
    .unwrap();
    let ended = event(
        "e4",
        "session.ended",
        "2026-11-02T09:10:00Z",
        json!({"session_id": "s1", "sentiment": "positive"}),
    );
    store(&db.pool, org, &[ended]).await.unwrap();
    let failed = event(
        "e5",
        "handoff.failed",
        "2026-11-02T09:12:00Z",
        json!({"handoff_id": "h2", "error": "nobody answered"}),
    );
    store(&db.pool, org, &[agent("a2", "Ava 2"), failed])
        .await
        .unwrap();
    assert_eq!(count(&db.pool, "webhook_outbox").await, 4);
    assert_eq!(count(&db.pool, "webhook_deliveries").await, 0);
    assert!(count(&db.pool, "webhook_snapshots").await > 0);

    let mut tx = db.pool.begin().await.unwrap();
    assert_eq!(webhooks::fan_out_all(&mut tx).await.unwrap(), 5);
    tx.commit().await.unwrap();
    assert_eq!(count(&db.pool, "webhook_outbox").await, 0);
    assert_eq!(
        count(&db.pool, "webhook_snapshots").await,
        0,
        "used and removed"
    );

    // (type, key, state, history length, session ended, agent name) of each handoff message.
    let got = bodies(&db.pool).await;
    let summary: Vec<(&str, &str, Value, usize, bool, Value)> = got
        .iter()
        .filter(|(t, _, _)| t.starts_with("handoff."))
        .map(|(t, k, d)| {
            (
                t.as_str(),
                k.as_str(),
                d["state"].clone(),
                d["history"].as_array().unwrap().len(),
                !d["session"]["ended_at"].is_null(),
                d["session"]["agent_name"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "handoff.initiated",
                "handoff:h1",
                json!("handoff_initiated"),
                1,
                false,
                Value::Null
            ),
            (
                "handoff.initiated",
                "handoff:h2",
                json!("handoff_initiated"),
                1,
                false,
                Value::Null
            ),
            (
                "handoff.completed",
                "handoff:h1",
                json!("handoff_completed"),
                2,
                false,
                json!("Ava")
            ),
            (
                "handoff.failed",
                "handoff:h2",
                json!("handoff_failed"),
                2,
                true,
                json!("Ava 2")
            ),
        ]
    );
    // The session as its end left it: the agent not yet renamed.
    let (_, key, session) = got.iter().find(|(t, _, _)| t == "session.ended").unwrap();
    assert_eq!(key, "session:s1");
    assert_eq!(session["sentiment"], json!("positive"));
    assert_eq!(session["agent_name"], json!("Ava"));
    assert_eq!(session["ended_at"], json!("2026-11-02T09:10:00Z"));
}

#[tokio::test]
async fn a_batch_after_the_fan_out_keeps_no_snapshot() {
    let db = TestDb::new().await;
    let (_, org) = db.org("acme", None, None).await;
    one_handoff_subscribed(&db, org, &["handoff.initiated", "handoff.completed"]).await;
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(fan_out(&mut conn, false).await, 1);
    // The handoff's message was fanned out: changing the handoff keeps nothing.
    store(&db.pool, org, &[completed("e2", "h1", 5)])
        .await
        .unwrap();
    assert_eq!(count(&db.pool, "webhook_snapshots").await, 0);
    assert_eq!(fan_out(&mut conn, false).await, 1);
    let got = deliveries(&db.pool).await;
    let states: Vec<&str> = got.iter().map(|d| d.4.as_str()).collect();
    assert_eq!(states, ["handoff_initiated", "handoff_completed"]);
}
