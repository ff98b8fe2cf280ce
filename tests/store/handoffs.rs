//! `store::handoffs`: the list's order, filters and keyset pages; one handoff; PolyAI's lookup
//! and account resolution.

use baton::domain::handoffs::{Position, Status};
use baton::store::handoffs::{self, ListFilter, Lookup};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::common::TestDb;
use crate::common::fixtures::event;
use crate::store;

fn at(minute: u32) -> String {
    format!("2026-11-02T09:{minute:02}:00Z")
}

fn instant(minute: u32) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&at(minute))
        .unwrap()
        .with_timezone(&Utc)
}

fn initiated(id: &str, handoff: &str, session: &str, minute: u32, reason: &str) -> Value {
    event(
        id,
        "handoff.initiated",
        &at(minute),
        json!({"handoff_id": handoff, "session_id": session, "reasons": [reason]}),
    )
}

/// h1 (s1, 09:01, completed), h2 (s1, 09:02, failed), h3 (s2, 09:02), h4 (s2, 09:05, custom
/// state). s1 has agent `bot`; s2 none (PolyAI's `default` project). Newest first: h4, h3, h2
/// (same time as h3: by id, descending), h1.
fn fixture() -> Vec<Value> {
    let mut h1 = initiated("e3", "h1", "s1", 1, "insufficient_tools");
    h1["shared_id"] = json!("sh1");
    vec![
        event(
            "e1",
            "session.started",
            &at(0),
            json!({"session_id": "s1", "channel": "web", "agent_id": "bot"}),
        ),
        event(
            "e2",
            "session.started",
            &at(0),
            json!({"session_id": "s2", "channel": "sms"}),
        ),
        h1,
        initiated("e4", "h2", "s1", 2, "prohibited_topic"),
        initiated("e5", "h3", "s2", 2, "insufficient_tools"),
        initiated("e6", "h4", "s2", 5, "ai_implied_handoff"),
        event(
            "e7",
            "handoff.completed",
            &at(10),
            json!({"handoff_id": "h1"}),
        ),
        event("e8", "handoff.failed", &at(11), json!({"handoff_id": "h2"})),
        event(
            "e9",
            "handoff.state",
            &at(12),
            json!({"handoff_id": "h4", "state": "customer_refund"}),
        ),
    ]
}

async fn ids(db: &TestDb, org: baton::auth::OrgId, filter: ListFilter, limit: i64) -> Vec<String> {
    handoffs::list(&db.pool, org, &filter, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.handoff_id)
        .collect()
}

#[tokio::test]
async fn list_order_filters_and_pages() {
    let db = TestDb::new().await;
    let (_, org) = db.org("acme", None, None).await;
    let (_, other) = db.org("other", None, None).await;
    store(&db.pool, org, &fixture()).await.unwrap();
    store(&db.pool, other, &fixture()[..3]).await.unwrap();

    let all = ListFilter::default();
    assert_eq!(
        ids(&db, org, all.clone(), 10).await,
        ["h4", "h3", "h2", "h1"]
    );
    assert_eq!(ids(&db, other, all.clone(), 10).await, ["h1"]);
    let cases: Vec<(ListFilter, &[&str])> = vec![
        (
            ListFilter {
                status: Some(Status::Open),
                ..Default::default()
            },
            &["h4", "h3"],
        ),
        (
            ListFilter {
                status: Some(Status::Completed),
                ..Default::default()
            },
            &["h1"],
        ),
        (
            ListFilter {
                status: Some(Status::Failed),
                ..Default::default()
            },
            &["h2"],
        ),
        (
            ListFilter {
                state: Some("customer_refund".into()),
                ..Default::default()
            },
            &["h4"],
        ),
        (
            ListFilter {
                reason: Some("insufficient_tools".into()),
                ..Default::default()
            },
            &["h3", "h1"],
        ),
        (
            ListFilter {
                session_id: Some("s1".into()),
                ..Default::default()
            },
            &["h2", "h1"],
        ),
        // Start inclusive, end exclusive.
        (
            ListFilter {
                start: Some(instant(2)),
                ..Default::default()
            },
            &["h4", "h3", "h2"],
        ),
        (
            ListFilter {
                end: Some(instant(2)),
                ..Default::default()
            },
            &["h1"],
        ),
        (
            ListFilter {
                status: Some(Status::Open),
                session_id: Some("s1".into()),
                ..Default::default()
            },
            &[],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            ids(&db, org, filter.clone(), 10).await,
            expected,
            "{filter:?}"
        );
    }

    // Pages: the first two, then strictly after the second's position (h3 at 09:02: h2, at
    // the same instant, follows by id).
    assert_eq!(ids(&db, org, all.clone(), 2).await, ["h4", "h3"]);
    let after = Position {
        initiated_at: instant(2),
        handoff_id: "h3".into(),
    };
    let next = ListFilter {
        after: Some(after),
        ..Default::default()
    };
    assert_eq!(ids(&db, org, next.clone(), 2).await, ["h2", "h1"]);
    // A position holds while newer handoffs arrive.
    store(
        &db.pool,
        org,
        &[initiated("e20", "h0", "s1", 30, "prohibited_topic")],
    )
    .await
    .unwrap();
    assert_eq!(ids(&db, org, next, 2).await, ["h2", "h1"]);
    assert_eq!(ids(&db, org, all, 1).await, ["h0"]);
}

#[tokio::test]
async fn one_handoff_and_polyai_lookups() {
    let db = TestDb::new().await;
    let (acme, org) = db.org("acme", None, None).await;
    let (_, other) = db.org("other", None, None).await;
    store(&db.pool, org, &fixture()).await.unwrap();

    let h4 = handoffs::handoff(&db.pool, org, "h4")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h4.record.state, "customer_refund");
    assert_eq!(
        (h4.record.session_id.as_str(), h4.record.channel.as_str()),
        ("s2", "sms")
    );
    assert_eq!(h4.record.agent_id, None);
    assert_eq!(h4.data, json!({}));
    assert_eq!(h4.history.len(), 2);
    assert!(
        handoffs::handoff(&db.pool, org, "nothing")
            .await
            .unwrap()
            .is_none()
    );
    // Another organization's handoff is not found.
    assert!(
        handoffs::handoff(&db.pool, other, "h4")
            .await
            .unwrap()
            .is_none()
    );

    let found = |project: &'static str, lookup: Lookup<'static>| {
        let pool = db.pool.clone();
        async move {
            handoffs::handoff_state(&pool, org, project, lookup)
                .await
                .unwrap()
                .map(|s| s.handoff_id)
        }
    };
    assert_eq!(
        found("bot", Lookup::SharedId("sh1")).await.as_deref(),
        Some("h1")
    );
    // Another project: not found.
    assert_eq!(found("default", Lookup::SharedId("sh1")).await, None);
    assert_eq!(
        found("default", Lookup::Id("h3")).await.as_deref(),
        Some("h3")
    );
    assert_eq!(found("bot", Lookup::Id("h3")).await, None);
    // A session's id: its newest handoff.
    assert_eq!(
        found("default", Lookup::Id("s2")).await.as_deref(),
        Some("h4")
    );
    assert_eq!(found("bot", Lookup::Id("s1")).await.as_deref(), Some("h2"));
    assert_eq!(found("bot", Lookup::Id("nothing")).await, None);

    // Accounts: by slug or id; nothing else.
    let by = |account: String| {
        let pool = db.pool.clone();
        async move { handoffs::account_candidates(&pool, &account).await.unwrap() }
    };
    assert_eq!(by("acme".into()).await, [acme.id]);
    assert_eq!(by(acme.id.to_string()).await, [acme.id]);
    assert!(by("nobody".into()).await.is_empty());
}
