//! `store::events::ingest`: what a batch stores, duplicates, conflicts (nothing written), and
//! the projections the state machine leaves.

use baton::store::events::{IngestError, Ingested};
use baton::store::handoffs;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::TestDb;
use crate::common::fixtures::event;
use crate::store;

fn at(minute: u32) -> String {
    format!("2026-11-02T09:{minute:02}:00Z")
}

/// s1 starts; h1 is initiated, fails, is retried with another reason and enters a custom state.
fn story() -> Vec<Value> {
    vec![
        event(
            "e1",
            "session.started",
            &at(0),
            json!({"session_id": "s1", "channel": "web", "agent_id": "bot"}),
        ),
        event(
            "e2",
            "handoff.initiated",
            &at(1),
            json!({"handoff_id": "h1", "session_id": "s1", "shared_id": "sh1",
                     "reasons": ["insufficient_tools"], "data": {"a": 1}}),
        ),
        event(
            "e3",
            "handoff.failed",
            &at(2),
            json!({"handoff_id": "h1", "error": "busy"}),
        ),
        event(
            "e4",
            "handoff.initiated",
            &at(3),
            json!({"handoff_id": "h1", "session_id": "s1",
                     "reasons": ["prohibited_topic"], "data": {"b": 2}}),
        ),
        event(
            "e5",
            "handoff.state",
            &at(4),
            json!({"handoff_id": "h1", "state": "customer_refund", "data": {"a": 3}}),
        ),
    ]
}

/// Rows of `table` of every organization.
async fn rows(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_is_stored_once_and_projected() {
    let db = TestDb::new().await;
    let (_, org) = db.org("acme", None, None).await;
    assert_eq!(
        store(&db.pool, org, &story()).await.unwrap(),
        Ingested {
            accepted: 5,
            duplicates: 0
        }
    );
    // Sent again: every event a duplicate, nothing new.
    assert_eq!(
        store(&db.pool, org, &story()).await.unwrap(),
        Ingested {
            accepted: 0,
            duplicates: 5
        }
    );
    // Repeated within a batch: the same.
    let again = vec![story()[0].clone(), story()[0].clone()];
    assert_eq!(
        store(&db.pool, org, &again).await.unwrap(),
        Ingested {
            accepted: 0,
            duplicates: 2
        }
    );
    assert_eq!(rows(&db.pool, "events").await, 5);

    let d = handoffs::handoff(&db.pool, org, "h1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.record.state, "customer_refund");
    assert_eq!(d.record.attempts, 2);
    assert_eq!(d.record.reasons, ["insufficient_tools", "prohibited_topic"]);
    assert_eq!(d.record.shared_id.as_deref(), Some("sh1"));
    assert_eq!(d.record.error.as_deref(), Some("busy"));
    assert_eq!(
        d.record.initiated_at.to_rfc3339(),
        "2026-11-02T09:01:00+00:00"
    );
    assert_eq!(
        d.record.last_initiated_at.to_rfc3339(),
        "2026-11-02T09:03:00+00:00"
    );
    assert_eq!(d.record.agent_id.as_deref(), Some("bot"));
    // Later keys win.
    assert_eq!(d.data, json!({"a": 3, "b": 2}));
    let history: Vec<(i32, &str, i64, &str)> = d
        .history
        .iter()
        .map(|e| (e.seq, e.state.as_str(), e.attempt, e.event_id.as_str()))
        .collect();
    assert_eq!(
        history,
        [
            (1, "handoff_initiated", 1, "e2"),
            (2, "handoff_failed", 1, "e3"),
            (3, "handoff_initiated", 2, "e4"),
            (4, "customer_refund", 2, "e5"),
        ]
    );
}

#[tokio::test]
async fn a_refused_batch_writes_nothing() {
    let db = TestDb::new().await;
    let (_, org) = db.org("acme", None, None).await;
    store(&db.pool, org, &story()).await.unwrap();
    let before = (
        rows(&db.pool, "events").await,
        rows(&db.pool, "sessions").await,
    );

    // An id already stored with another body.
    let mut reused = story()[0].clone();
    reused["channel"] = json!("email");
    let fresh = event(
        "e9",
        "session.started",
        &at(9),
        json!({"session_id": "s9", "channel": "web"}),
    );
    match store(&db.pool, org, &[fresh.clone(), reused]).await {
        Err(IngestError::IdReused {
            index, event_id, ..
        }) => {
            assert_eq!((index, event_id.as_str()), (1, "e1"));
        }
        other => panic!("{other:?}"),
    }
    // A transition the state machine forbids, after a valid event.
    let unknown = event(
        "e10",
        "handoff.completed",
        &at(10),
        json!({"handoff_id": "h9"}),
    );
    match store(&db.pool, org, &[fresh.clone(), unknown]).await {
        Err(IngestError::State(c)) => assert_eq!((c.index, c.event_id.as_str()), (1, "e10")),
        other => panic!("{other:?}"),
    }
    // The same id twice in one batch with different bodies.
    let mut twin = fresh.clone();
    twin["channel"] = json!("sms");
    assert!(matches!(
        store(&db.pool, org, &[fresh.clone(), twin]).await,
        Err(IngestError::IdReused { index: 1, .. })
    ));
    assert_eq!(
        (
            rows(&db.pool, "events").await,
            rows(&db.pool, "sessions").await
        ),
        before
    );
    // The valid event alone goes in.
    assert_eq!(
        store(&db.pool, org, &[fresh]).await.unwrap(),
        Ingested {
            accepted: 1,
            duplicates: 0
        }
    );
}

#[tokio::test]
async fn organizations_do_not_share_ids() {
    let db = TestDb::new().await;
    let (_, acme) = db.org("acme", None, None).await;
    let (_, beta) = db.org("beta", None, None).await;
    // The same event ids in two organizations are two events.
    store(&db.pool, acme, &story()).await.unwrap();
    assert_eq!(
        store(&db.pool, beta, &story()[..2]).await.unwrap(),
        Ingested {
            accepted: 2,
            duplicates: 0
        }
    );
    let a = handoffs::handoff(&db.pool, acme, "h1")
        .await
        .unwrap()
        .unwrap();
    let b = handoffs::handoff(&db.pool, beta, "h1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.record.attempts, b.record.attempts), (2, 1));
    assert_eq!(b.record.state, "handoff_initiated");
    assert_eq!(b.data, json!({"a": 1}));
}
