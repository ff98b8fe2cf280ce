//! Rollup reads: `store::analytics::read` over a range whose ends are off the rollups'
//! 15-minute grid, in a zone with a half-hour offset, against counts worked out by hand.

use std::collections::BTreeMap;

use baton::domain::analytics::{Counts, Plan};
use baton::domain::events::{Reason, ReferenceType};
use baton::domain::timerange::{BoundNames, TimeRange};
use baton::store::analytics;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::common::TestDb;
use crate::common::fixtures::event;
use crate::store;

fn started(session: &str, at: &str) -> Value {
    event(
        &format!("{session}-start"),
        "session.started",
        at,
        json!({"session_id": session, "channel": "web"}),
    )
}

fn initiated(handoff: &str, session: &str, at: &str, fields: Value) -> Value {
    let mut e = event(
        handoff,
        "handoff.initiated",
        at,
        json!({"handoff_id": handoff, "session_id": session}),
    );
    for (k, v) in fields.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

/// Times in UTC; Kolkata is +05:30.
fn fixture() -> Vec<Value> {
    vec![
        // Before the range.
        started("s0", "2026-10-31T18:00:00Z"),
        initiated(
            "h0",
            "s0",
            "2026-10-31T18:00:00Z",
            json!({"reasons": ["insufficient_knowledge"]}),
        ),
        // s1 starts 2 minutes before the range; its handoff is inside (Nov 2, 01:35 local).
        started("s1", "2026-11-01T20:00:00Z"),
        initiated(
            "h1",
            "s1",
            "2026-11-01T20:05:00Z",
            json!({
            "reasons": ["prohibited_topic", "insufficient_tools"], "sentiment": "angry",
            "references": [{"type": "knowledge", "id": "k1"}]}),
        ),
        // s2 (Nov 2, 15:37 local) hands off twice: at 15:37 and at 00:15 on Nov 3.
        started("s2", "2026-11-02T10:07:00Z"),
        initiated(
            "h2",
            "s2",
            "2026-11-02T10:07:00Z",
            json!({"reasons": ["insufficient_tools"]}),
        ),
        initiated(
            "h3",
            "s2",
            "2026-11-02T18:45:00Z",
            json!({
            "reasons": ["ai_implied_handoff"], "sentiment": "calm",
            "references": [{"type": "instruction", "id": "i1"}]}),
        ),
        // At the range's (exclusive) end.
        started("s3", "2026-11-02T19:00:00Z"),
        initiated(
            "h4",
            "s3",
            "2026-11-02T19:00:00Z",
            json!({"reasons": ["prohibited_topic"]}),
        ),
    ]
}

#[tokio::test]
async fn analytics_counts_off_the_grid_in_kolkata() {
    let db = TestDb::new().await;
    let (_, org) = db.org("acme", None, Some("Asia/Kolkata")).await;
    store(&db.pool, org, &fixture()).await.unwrap();

    let tz: Tz = "Asia/Kolkata".parse().unwrap();
    let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    // [Nov 2 01:32, Nov 3 00:30) local: two local days, Nov 2 (index 0) and Nov 3 (index 1).
    let range = TimeRange::resolve(
        Some("2026-11-01T20:02:00Z"),
        Some("2026-11-02T19:00:00Z"),
        tz,
        Utc::now(),
        30,
        BoundNames {
            start: "start",
            end: "end",
        },
    )
    .unwrap();
    assert_eq!(
        (range.start, range.end),
        (utc("2026-11-01T20:02:00Z"), utc("2026-11-02T19:00:00Z"))
    );
    let plan = Plan::new(&range);
    assert_eq!(plan.days.len(), 2);

    let counts = analytics::read(&db.pool, org, None, tz.name(), &plan)
        .await
        .unwrap();
    let expected = Counts {
        // h1 and h2 on Nov 2, h3 on Nov 3.
        handoffs_by_day: BTreeMap::from([(0, 2), (1, 1)]),
        // Only s2 started in the range.
        sessions: 1,
        reasons: BTreeMap::from([
            (Reason::AiImpliedHandoff, 1),
            (Reason::InsufficientTools, 2),
            (Reason::ProhibitedTopic, 1),
        ]),
        sentiments: BTreeMap::from([
            (None, 1),
            (Some("angry".to_owned()), 1),
            (Some("calm".to_owned()), 1),
        ]),
        // s1 by h1; s2 by h2 and h3 together.
        combinations: BTreeMap::from([
            (vec![Reason::InsufficientTools, Reason::ProhibitedTopic], 1),
            (vec![Reason::AiImpliedHandoff, Reason::InsufficientTools], 1),
        ]),
        references: BTreeMap::from([
            ((ReferenceType::Instruction, "i1".to_owned()), 1),
            ((ReferenceType::Knowledge, "k1".to_owned()), 1),
        ]),
    };
    assert_eq!(nonzero(counts), expected);

    // Narrowed to instruction i1: h3 alone; sessions are not narrowed.
    let counts = analytics::read(&db.pool, org, Some("i1"), tz.name(), &plan)
        .await
        .unwrap();
    let expected = Counts {
        handoffs_by_day: BTreeMap::from([(1, 1)]),
        sessions: 1,
        reasons: BTreeMap::from([(Reason::AiImpliedHandoff, 1)]),
        sentiments: BTreeMap::from([(Some("calm".to_owned()), 1)]),
        combinations: BTreeMap::from([(vec![Reason::AiImpliedHandoff], 1)]),
        references: BTreeMap::from([((ReferenceType::Instruction, "i1".to_owned()), 1)]),
    };
    assert_eq!(nonzero(counts), expected);
}

/// Counts without zero entries (a key counted and uncounted again may be read as 0).
fn nonzero(mut c: Counts) -> Counts {
    c.handoffs_by_day.retain(|_, n| *n != 0);
    c.reasons.retain(|_, n| *n != 0);
    c.sentiments.retain(|_, n| *n != 0);
    c.combinations.retain(|_, n| *n != 0);
    c.references.retain(|_, n| *n != 0);
    c
}
