//! `GET /handoff-analytics`: a hand-built fixture with every figure known, time zones (a DST day,
//! a half-hour zone), partial 15-minute edges, empty ranges, errors, the auth matrix, tenant
//! isolation, and a property test comparing every figure with a recomputation from raw rows.
//! Every 200 body is validated against OpenCX's schema (`additionalProperties: false`).

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use baton::auth::{Claims, Scope, Subject};
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::common::fixtures::event;
use crate::common::{TestApp, assert_error};

const PATH: &str = "/handoff-analytics";

/// OpenCX's `HandoffAnalyticsPublicResponseDto`, from the contract file.
static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    // A verbatim copy of OpenCX's published contract for this endpoint, kept in the repository.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/contract/opencx-handoff-analytics.openapi.yaml"
    ))
    .expect("the OpenCX contract file");
    let doc: Value = serde_norway::from_str(&text).expect("YAML");
    let mut schema = doc["components"]["schemas"]["HandoffAnalyticsPublicResponseDto"].clone();
    // `$id` is a JSON pointer into the OpenAPI file, meaningless once extracted.
    schema.as_object_mut().unwrap().remove("$id");
    assert_eq!(schema["additionalProperties"], false);
    jsonschema::draft202012::new(&schema).expect("a valid JSON Schema")
});

fn assert_schema(body: &Value) {
    let errors: Vec<String> = SCHEMA.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "schema violations {errors:?} in {body}");
}

/// The schema itself refuses extra and missing fields (so the check above has teeth).
#[test]
fn schema_refuses_extra_and_missing_fields() {
    let ok = json!({"summary": "", "total_handoffs": 0, "total_sessions": 0, "start_date": "",
        "end_date": "", "reasons": [], "reason_combinations": [], "sentiments": [], "trends": [],
        "knowledge_references": [], "tool_references": [], "instruction_references": [],
        "prohibited_topic_references": []});
    assert!(SCHEMA.is_valid(&ok));
    let mut extra = ok.clone();
    extra["extra"] = json!(1);
    assert!(!SCHEMA.is_valid(&extra));
    let mut missing = ok.clone();
    missing.as_object_mut().unwrap().remove("trends");
    assert!(!SCHEMA.is_valid(&missing));
    let mut nested = ok.clone();
    nested["trends"] = json!([{"date": "2026-11-01", "count": 1, "x": 1}]);
    assert!(!SCHEMA.is_valid(&nested));
}

fn started(session: &str, at: &str) -> Value {
    event(
        &format!("{session}-start"),
        "session.started",
        at,
        json!({"session_id": session, "channel": "web"}),
    )
}

fn initiated(id: &str, handoff: &str, session: &str, at: &str, fields: Value) -> Value {
    let mut f = json!({"handoff_id": handoff, "session_id": session});
    for (k, v) in fields.as_object().unwrap() {
        f[k] = v.clone();
    }
    event(id, "handoff.initiated", at, f)
}

/// GET the report with a query string; asserts 200 and the schema.
async fn report(app: &TestApp, token: &str, query: &str) -> Value {
    let res = app.get(&format!("{PATH}?{query}"), token).await;
    assert_eq!(res.status(), 200, "{query}: {}", res.text().await.unwrap());
    let body: Value = res.json().await.unwrap();
    assert_schema(&body);
    body
}

/// The fixture (UTC organization): sessions s0–s5, handoffs h0–h7; see the expected figures in
/// the tests. h3 fails and is retried the next day with other reasons, sentiment and references.
fn fixture() -> Vec<Value> {
    let ur = "user_requested_human_assistance";
    let ik = "insufficient_knowledge";
    vec![
        started("s0", "2026-11-01T23:00:00Z"),
        started("s1", "2026-11-02T09:00:00Z"),
        started("s2", "2026-11-02T10:00:00Z"),
        started("s3", "2026-11-03T12:07:00Z"),
        started("s4", "2026-11-03T23:50:00Z"),
        started("s5", "2026-11-04T01:00:00Z"),
        initiated(
            "e-h0",
            "h0",
            "s0",
            "2026-11-01T23:30:00Z",
            json!({"reasons": ["prohibited_topic"], "sentiment": "negative",
                   "references": [{"type": "instruction", "id": "i1"}]}),
        ),
        initiated(
            "e-h7",
            "h7",
            "s0",
            "2026-11-02T00:30:00Z",
            json!({"reasons": ["based_on_instructions"], "sentiment": "neutral"}),
        ),
        initiated(
            "e-h1",
            "h1",
            "s1",
            "2026-11-02T09:05:00Z",
            json!({"reasons": [ur, ik], "sentiment": "negative",
                   "references": [{"type": "instruction", "id": "i1"}, {"type": "knowledge", "id": "k1"},
                                  {"type": "knowledge", "id": "k2"}, {"type": "tool", "id": "t1"}]}),
        ),
        event(
            "e-h1c",
            "handoff.completed",
            "2026-11-02T09:06:00Z",
            json!({"handoff_id": "h1", "operator_id": "op"}),
        ),
        initiated(
            "e-h2",
            "h2",
            "s1",
            "2026-11-02T09:40:00Z",
            json!({"reasons": ["ai_implied_handoff"], "sentiment": null,
                   "references": [{"type": "instruction", "id": "i1"}, {"type": "ai_profile", "id": "p1"},
                                  {"type": "prohibited_topic", "id": "pt1"}]}),
        ),
        initiated(
            "e-h3",
            "h3",
            "s2",
            "2026-11-02T10:10:00Z",
            json!({"reasons": [ik], "sentiment": "neutral",
                   "references": [{"type": "knowledge", "id": "k1"}]}),
        ),
        event(
            "e-h3f",
            "handoff.failed",
            "2026-11-02T10:12:00Z",
            json!({"handoff_id": "h3", "error": "no agent"}),
        ),
        initiated(
            "e-h4",
            "h4",
            "s3",
            "2026-11-03T12:10:00Z",
            json!({"reasons": [ur], "sentiment": "positive"}),
        ),
        initiated(
            "e-h5",
            "h5",
            "s4",
            "2026-11-03T23:55:00Z",
            json!({"reasons": [ur, ik], "references": [{"type": "instruction", "id": "i1"}]}),
        ),
        initiated(
            "e-h6",
            "h6",
            "s5",
            "2026-11-04T01:10:00Z",
            json!({"reasons": ["ai_implied_handoff"], "references": [{"type": "knowledge", "id": "k1"}]}),
        ),
    ]
}

/// The retry of h3 (sent in a later batch, so the rollups must move stored counts).
fn retry() -> Vec<Value> {
    vec![initiated(
        "e-h3r",
        "h3",
        "s2",
        "2026-11-03T08:00:00Z",
        json!({"reasons": ["insufficient_tools"], "sentiment": "negative",
               "references": [{"type": "knowledge", "id": "k1"}, {"type": "tool", "id": "t2"},
                              {"type": "instruction", "id": "i2"}]}),
    )]
}

fn reasons(pairs: &[(&str, u64, f64)]) -> Value {
    pairs
        .iter()
        .map(|(r, c, p)| json!({"reason": r, "count": c, "percentage": p}))
        .collect()
}

fn refs(items: &[(&str, &str, u64)]) -> Value {
    items
        .iter()
        .map(|(t, id, c)| json!({"type": t, "id": id, "count": c}))
        .collect()
}

const UR: &str = "user_requested_human_assistance";
const IK: &str = "insufficient_knowledge";

#[tokio::test]
async fn fixture_every_figure_known() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    app.post_events_ok(&token, &fixture()).await;
    app.post_events_ok(&token, &retry()).await;
    let body = report(
        &app,
        &token,
        "start_date=2026-11-02T00:00:00Z&end_date=2026-11-04T00:00:00Z",
    )
    .await;
    let expected = json!({
        "summary": "6 handoffs and 4 sessions started from 2026-11-02T00:00:00Z to 2026-11-04T00:00:00Z (1.50 handoffs per session); most common reason: insufficient_knowledge (50.00% of handoffs).",
        "total_handoffs": 6,
        "total_sessions": 4,
        "start_date": "2026-11-02T00:00:00Z",
        "end_date": "2026-11-04T00:00:00Z",
        "reasons": reasons(&[(IK, 3, 50.0), (UR, 3, 50.0), ("ai_implied_handoff", 1, 16.67),
            ("based_on_instructions", 1, 16.67), ("insufficient_tools", 1, 16.67)]),
        "reason_combinations": [
            {"reasons": ["ai_implied_handoff", IK, UR], "session_count": 1, "percentage": 25.0},
            {"reasons": [IK, "insufficient_tools"], "session_count": 1, "percentage": 25.0},
            {"reasons": [IK, UR], "session_count": 1, "percentage": 25.0},
            {"reasons": [UR], "session_count": 1, "percentage": 25.0},
        ],
        "sentiments": [
            {"sentiment": "negative", "count": 2, "percentage": 33.33},
            {"sentiment": null, "count": 2, "percentage": 33.33},
            {"sentiment": "neutral", "count": 1, "percentage": 16.67},
            {"sentiment": "positive", "count": 1, "percentage": 16.67},
        ],
        "trends": [{"date": "2026-11-02", "count": 4}, {"date": "2026-11-03", "count": 2}],
        "knowledge_references": refs(&[("knowledge", "k1", 2), ("knowledge", "k2", 1)]),
        "tool_references": refs(&[("tool", "t1", 1), ("tool", "t2", 1)]),
        "instruction_references": refs(&[("instruction", "i1", 3), ("ai_profile", "p1", 1), ("instruction", "i2", 1)]),
        "prohibited_topic_references": refs(&[("prohibited_topic", "pt1", 1)]),
    });
    assert_eq!(body, expected);

    // Narrowed to instruction i1: h1, h2 and h5 (h0 is before the range); sessions are not narrowed.
    let body = report(
        &app,
        &token,
        "start_date=2026-11-02T00:00:00Z&end_date=2026-11-04T00:00:00Z&instruction_id=i1",
    )
    .await;
    let expected = json!({
        "summary": "3 handoffs referencing instruction i1 and 4 sessions started from 2026-11-02T00:00:00Z to 2026-11-04T00:00:00Z; most common reason: insufficient_knowledge (66.67% of handoffs).",
        "total_handoffs": 3,
        "total_sessions": 4,
        "start_date": "2026-11-02T00:00:00Z",
        "end_date": "2026-11-04T00:00:00Z",
        "reasons": reasons(&[(IK, 2, 66.67), (UR, 2, 66.67), ("ai_implied_handoff", 1, 33.33)]),
        "reason_combinations": [
            {"reasons": ["ai_implied_handoff", IK, UR], "session_count": 1, "percentage": 50.0},
            {"reasons": [IK, UR], "session_count": 1, "percentage": 50.0},
        ],
        "sentiments": [
            {"sentiment": null, "count": 2, "percentage": 66.67},
            {"sentiment": "negative", "count": 1, "percentage": 33.33},
        ],
        "trends": [{"date": "2026-11-02", "count": 2}, {"date": "2026-11-03", "count": 1}],
        "knowledge_references": refs(&[("knowledge", "k1", 1), ("knowledge", "k2", 1)]),
        "tool_references": refs(&[("tool", "t1", 1)]),
        "instruction_references": refs(&[("instruction", "i1", 3), ("ai_profile", "p1", 1)]),
        "prohibited_topic_references": refs(&[("prohibited_topic", "pt1", 1)]),
    });
    assert_eq!(body, expected);

    // i2 was added by h3's retry: h3 moves into that instruction's figures, with its new state.
    let body = report(
        &app,
        &token,
        "start_date=2026-11-02&end_date=2026-11-03&instruction_id=i2",
    )
    .await;
    assert_eq!(body["total_handoffs"], 1);
    assert_eq!(
        body["trends"],
        json!([{"date": "2026-11-02", "count": 1}, {"date": "2026-11-03", "count": 0}])
    );
    assert_eq!(
        body["reasons"],
        reasons(&[(IK, 1, 100.0), ("insufficient_tools", 1, 100.0)])
    );
    assert_eq!(
        body["sentiments"],
        json!([{"sentiment": "negative", "count": 1, "percentage": 100.0}])
    );
    assert_eq!(
        body["reason_combinations"],
        json!([{"reasons": [IK, "insufficient_tools"], "session_count": 1, "percentage": 100.0}])
    );
    assert_eq!(
        body["instruction_references"],
        refs(&[("instruction", "i2", 1)])
    );
    assert_eq!(body["tool_references"], refs(&[("tool", "t2", 1)]));
    // An instruction nobody referenced: zeros, empty lists, every day listed.
    let body = report(
        &app,
        &token,
        "start_date=2026-11-02&end_date=2026-11-03&instruction_id=nobody",
    )
    .await;
    assert_eq!(body["total_handoffs"], 0);
    assert_eq!(body["total_sessions"], 4);
    assert_eq!(body["reasons"], json!([]));
}

#[tokio::test]
async fn bounds_off_15_minute_boundaries_are_exact() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    app.post_events_ok(&token, &fixture()).await;
    app.post_events_ok(&token, &retry()).await;
    // 09:07 excludes s1 (09:00) and h1 (09:05), hence s1's combination; 23:56 keeps h5 (23:55).
    let body = report(
        &app,
        &token,
        "start_date=2026-11-02T09:07:00Z&end_date=2026-11-03T23:56:00Z",
    )
    .await;
    assert_eq!(body["total_handoffs"], 4);
    assert_eq!(body["total_sessions"], 3);
    assert_eq!(
        body["trends"],
        json!([{"date": "2026-11-02", "count": 2}, {"date": "2026-11-03", "count": 2}])
    );
    assert_eq!(
        body["reasons"],
        reasons(&[
            (IK, 2, 50.0),
            (UR, 2, 50.0),
            ("ai_implied_handoff", 1, 25.0),
            ("insufficient_tools", 1, 25.0)
        ])
    );
    assert_eq!(body["reason_combinations"].as_array().unwrap().len(), 3);
    // A range inside one 15-minute bucket: h5 alone.
    let body = report(
        &app,
        &token,
        "start_date=2026-11-03T23:54:30Z&end_date=2026-11-03T23:55:30Z",
    )
    .await;
    assert_eq!(body["total_handoffs"], 1);
    assert_eq!(body["total_sessions"], 0);
    assert_eq!(
        body["instruction_references"],
        refs(&[("instruction", "i1", 1)])
    );
    assert_eq!(
        body["reason_combinations"],
        json!([{"reasons": [IK, UR], "session_count": 1, "percentage": 100.0}])
    );
    // Same handoff, with a bound in another form: an offset, and fractions of a second.
    let body = report(
        &app,
        &token,
        "start_date=2026-11-04T05:24:59.5%2B05:30&end_date=2026-11-03T23:55:00.001Z",
    )
    .await;
    assert_eq!(body["total_handoffs"], 1);
}

#[tokio::test]
async fn new_york_dst_day_has_25_hours() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let mut events = vec![started("s", "2026-10-30T00:00:00Z")];
    // 23:30 EDT Oct 31; 00:30 EDT Nov 1; 23:30 EST Nov 1 (the 25th hour's day); 00:30 EST Nov 2.
    for (i, at) in [
        "2026-11-01T03:30:00Z",
        "2026-11-01T04:30:00Z",
        "2026-11-02T04:30:00Z",
        "2026-11-02T05:30:00Z",
    ]
    .iter()
    .enumerate()
    {
        events.push(initiated(
            &format!("e{i}"),
            &format!("h{i}"),
            "s",
            at,
            json!({"reasons": ["ai_implied_handoff"]}),
        ));
    }
    app.post_events_ok(&token, &events).await;
    let body = report(
        &app,
        &token,
        "start_date=2026-10-31&end_date=2026-11-02&timezone=America/New_York",
    )
    .await;
    assert_eq!(body["start_date"], "2026-10-31T00:00:00-04:00");
    assert_eq!(body["end_date"], "2026-11-03T00:00:00-05:00");
    assert_eq!(
        body["trends"],
        json!([{"date": "2026-10-31", "count": 1}, {"date": "2026-11-01", "count": 2},
               {"date": "2026-11-02", "count": 1}])
    );
    assert_eq!(body["total_handoffs"], 4);
    // In UTC (the organization's zone) the same handoffs fall on other days.
    let body = report(&app, &token, "start_date=2026-10-31&end_date=2026-11-02").await;
    assert_eq!(
        body["trends"],
        json!([{"date": "2026-10-31", "count": 0}, {"date": "2026-11-01", "count": 2},
               {"date": "2026-11-02", "count": 2}])
    );
}

#[tokio::test]
async fn kolkata_half_hour_days_by_default() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, Some("Asia/Kolkata")).await;
    let token = app.writer(&org).await;
    let mut events = vec![started("s", "2026-10-30T00:00:00Z")];
    // IST = UTC+05:30: 23:59 Nov 1 (outside), 00:15 Nov 2, 23:59 Nov 2, 00:00 Nov 3, 00:14 Nov 3.
    for (i, at) in [
        "2026-11-01T18:29:00Z",
        "2026-11-01T18:45:00Z",
        "2026-11-02T18:29:00Z",
        "2026-11-02T18:30:00Z",
        "2026-11-02T18:44:00Z",
    ]
    .iter()
    .enumerate()
    {
        events.push(initiated(
            &format!("e{i}"),
            &format!("h{i}"),
            "s",
            at,
            json!({"reasons": ["insufficient_tools"]}),
        ));
    }
    app.post_events_ok(&token, &events).await;
    let body = report(&app, &token, "start_date=2026-11-02&end_date=2026-11-03").await;
    assert_eq!(body["start_date"], "2026-11-02T00:00:00+05:30");
    assert_eq!(body["end_date"], "2026-11-04T00:00:00+05:30");
    assert_eq!(
        body["trends"],
        json!([{"date": "2026-11-02", "count": 2}, {"date": "2026-11-03", "count": 2}])
    );
    assert_eq!(body["total_handoffs"], 4);
    // The session started before the range; its first handoff (18:29Z Nov 1) too.
    assert_eq!(body["total_sessions"], 0);
    assert_eq!(body["reason_combinations"], json!([]));
}

#[tokio::test]
async fn empty_ranges_are_zeros_and_empty_lists() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    app.post_events_ok(&token, &fixture()).await;
    let empty = |start: &str, end: &str, trends: Value| {
        json!({
            "summary": format!("0 handoffs and 0 sessions started from {start} to {end}."),
            "total_handoffs": 0, "total_sessions": 0, "start_date": start, "end_date": end,
            "reasons": [], "reason_combinations": [], "sentiments": [], "trends": trends,
            "knowledge_references": [], "tool_references": [], "instruction_references": [],
            "prohibited_topic_references": [],
        })
    };
    // start = end: no day intersects the range.
    let body = report(
        &app,
        &token,
        "start_date=2026-11-02T09:05:00Z&end_date=2026-11-02T09:05:00Z",
    )
    .await;
    assert_eq!(
        body,
        empty("2026-11-02T09:05:00Z", "2026-11-02T09:05:00Z", json!([]))
    );
    // A range without data: every day listed, with zeros.
    let body = report(&app, &token, "start_date=2020-02-27&end_date=2020-03-01").await;
    assert_eq!(
        body,
        empty(
            "2020-02-27T00:00:00Z",
            "2020-03-02T00:00:00Z",
            json!([{"date": "2020-02-27", "count": 0}, {"date": "2020-02-28", "count": 0},
                   {"date": "2020-02-29", "count": 0}, {"date": "2020-03-01", "count": 0}])
        )
    );
}

#[tokio::test]
async fn defaults_are_the_last_30_days() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let now = Utc::now();
    let at = |d: Duration| (now - d).to_rfc3339();
    app.post_events_ok(
        &token,
        &[
            started("s", &at(Duration::days(40))),
            initiated(
                "e1",
                "h1",
                "s",
                &at(Duration::days(31)),
                json!({"reasons": [UR]}),
            ),
            initiated(
                "e2",
                "h2",
                "s",
                &at(Duration::days(29)),
                json!({"reasons": [UR]}),
            ),
            initiated(
                "e3",
                "h3",
                "s",
                &at(Duration::hours(1)),
                json!({"reasons": [UR]}),
            ),
        ],
    )
    .await;
    let body = report(&app, &token, "").await;
    assert_eq!(body["total_handoffs"], 2);
    let start = DateTime::parse_from_rfc3339(body["start_date"].as_str().unwrap()).unwrap();
    let end = DateTime::parse_from_rfc3339(body["end_date"].as_str().unwrap()).unwrap();
    assert_eq!(end - start, Duration::days(30));
    assert!((Utc::now() - end.with_timezone(&Utc)).num_seconds().abs() < 60);
    assert!(matches!(body["trends"].as_array().unwrap().len(), 30 | 31));
    // Empty values count as absent.
    let body = report(
        &app,
        &token,
        "start_date=&end_date=&instruction_id=&timezone=",
    )
    .await;
    assert_eq!(body["total_handoffs"], 2);
}

#[tokio::test]
async fn bad_parameters_are_400_naming_them() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.reader(&org).await;
    let cases = [
        ("start_date=yesterday", "start_date"),
        ("end_date=2026-13-01", "end_date"),
        ("timezone=Mars/Base", "timezone"),
        (
            "start_date=2026-11-03&end_date=2026-11-02T00:00:00Z",
            "start_date",
        ),
        ("start_date=2025-01-01&end_date=2026-11-01", "366 days"),
        ("startDate=2026-11-01", "startDate"),
        ("organization_id=acme", "organization_id"),
    ];
    for (query, needle) in cases {
        let res = app.get(&format!("{PATH}?{query}"), &token).await;
        assert_error(res, 400, needle).await;
    }
    // Exactly 366 days is allowed.
    report(
        &app,
        &token,
        "start_date=2025-11-01&end_date=2026-11-01T23:59:59Z",
    )
    .await;
}

#[tokio::test]
async fn auth_matrix_and_tenant_isolation() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("res").await;
    let other_reseller = app.reseller("other").await;
    let org = app.org("acme", Some("res"), None).await;
    let sibling = app.org("sibling", Some("res"), None).await;
    let stranger = app.org("stranger", Some("other"), None).await;
    let token = app.writer(&org).await;
    let stranger_token = app.writer(&stranger).await;
    app.post_events_ok(&token, &fixture()).await;
    // Another tenant with the very same ids, and more.
    app.post_events_ok(&stranger_token, &fixture()).await;
    app.post_events_ok(&stranger_token, &retry()).await;
    app.post_events_ok(
        &stranger_token,
        &[
            started("x", "2026-11-02T12:00:00Z"),
            initiated(
                "ex",
                "hx",
                "x",
                "2026-11-02T12:01:00Z",
                json!({"reasons": [UR],
                "references": [{"type": "instruction", "id": "i1"}]}),
            ),
        ],
    )
    .await;
    let q = "start_date=2026-11-02&end_date=2026-11-03";
    let mine = report(&app, &token, q).await;
    assert_eq!(mine["total_handoffs"], 6);
    assert_eq!(mine["total_sessions"], 4);
    assert_eq!(
        mine["knowledge_references"],
        refs(&[("knowledge", "k1", 2), ("knowledge", "k2", 1)])
    );
    let theirs = report(&app, &stranger_token, q).await;
    assert_eq!(theirs["total_handoffs"], 7);
    let mine_i1 = report(&app, &token, &format!("{q}&instruction_id=i1")).await;
    assert_eq!(mine_i1["total_handoffs"], 3);

    // Missing and bad tokens.
    let res = app.client.get(app.url(PATH)).send().await.unwrap();
    assert_error(res, 401, "missing token").await;
    assert_error(app.get(PATH, "not-a-token").await, 401, "").await;
    // A recorded token's id re-signed without read_all: the claims are not what was issued.
    let issued = app.reader(&org).await;
    let mut claims = Claims::new(
        Subject::Org(org.id),
        vec![],
        Utc::now(),
        Utc::now() + Duration::hours(1),
    );
    claims.jti = baton::auth::unverified_jti(&issued).unwrap();
    let no_scope = app.keys.sign(&claims);
    assert_error(
        app.get(PATH, &no_scope).await,
        401,
        "token does not match what was issued",
    )
    .await;
    // x-api-key works as well as Bearer.
    let res = app
        .client
        .get(app.url(&format!("{PATH}?{q}")))
        .header("x-api-key", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // An org token: itself by id is fine, another organization is a 404.
    let reader = app.reader(&org).await;
    let body = report(&app, &reader, &format!("{q}&organization_id={}", org.id)).await;
    assert_eq!(body["total_handoffs"], 6);
    assert_error(
        app.get(&format!("{PATH}?organization_id={}", stranger.id), &reader)
            .await,
        404,
        "not found",
    )
    .await;
    // A reseller token must name one of its organizations.
    let res_token = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    assert_error(app.get(PATH, &res_token).await, 400, "organization_id").await;
    let body = report(&app, &res_token, &format!("{q}&organization_id={}", org.id)).await;
    assert_eq!(body, mine);
    let body = report(
        &app,
        &res_token,
        &format!("{q}&organization_id={}", sibling.id),
    )
    .await;
    assert_eq!(body["total_handoffs"], 0);
    assert_error(
        app.get(
            &format!("{PATH}?organization_id={}", stranger.id),
            &res_token,
        )
        .await,
        404,
        "not found",
    )
    .await;
    let other_token = app
        .token(Subject::Reseller(other_reseller.id), &[Scope::ReadAll])
        .await;
    assert_error(
        app.get(&format!("{PATH}?organization_id={}", org.id), &other_token)
            .await,
        404,
        "not found",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Property test: random event streams through POST /v1/events; every figure of random requests
// equals a recomputation from the raw rows (handoffs, sessions, handoff_references) in SQL.

const REASONS: [&str; 7] = [
    "ai_implied_handoff",
    "based_on_instructions",
    "instructions_not_clear",
    "insufficient_knowledge",
    "insufficient_tools",
    "prohibited_topic",
    "user_requested_human_assistance",
];
const REF_TYPES: [&str; 5] = [
    "ai_profile",
    "instruction",
    "knowledge",
    "prohibited_topic",
    "tool",
];
const SENTIMENTS: [Option<&str>; 4] = [None, Some("positive"), Some("negative"), Some("neutral")];
const ZONES: [&str; 3] = ["UTC", "Asia/Kolkata", "America/New_York"];

#[derive(Debug, Clone)]
struct Attempt {
    reasons: Vec<usize>,
    sentiment: usize,
    refs: Vec<(usize, usize)>,
}

#[derive(Debug, Clone)]
struct GenHandoff {
    /// Seconds after the session's start.
    delay: i64,
    first: Attempt,
    /// 0 open, 1 completed, 2 failed, 3 failed then retried (after `retry_delay` seconds).
    outcome: u8,
    retry: Attempt,
    retry_delay: i64,
}

#[derive(Debug, Clone)]
struct GenSession {
    /// Seconds after the window's start.
    start: i64,
    handoffs: Vec<GenHandoff>,
}

#[derive(Debug, Clone)]
struct GenQuery {
    start: i64,
    length: i64,
    zone: usize,
    instruction: Option<usize>,
}

fn attempt() -> impl Strategy<Value = Attempt> {
    (
        prop::collection::vec(0..REASONS.len(), 1..3),
        0..SENTIMENTS.len(),
        prop::collection::vec((0..REF_TYPES.len(), 0..2usize), 0..3),
    )
        .prop_map(|(reasons, sentiment, refs)| Attempt {
            reasons,
            sentiment,
            refs,
        })
}

fn gen_handoff() -> impl Strategy<Value = GenHandoff> {
    (
        0..4 * 3600i64,
        attempt(),
        0..4u8,
        attempt(),
        60..30 * 3600i64,
    )
        .prop_map(|(delay, first, outcome, retry, retry_delay)| GenHandoff {
            delay,
            first,
            outcome,
            retry,
            retry_delay,
        })
}

/// A three-day window, so random ranges cut through days, hours and 15-minute buckets.
const WINDOW: i64 = 3 * 24 * 3600;

fn stream() -> impl Strategy<Value = (Vec<GenSession>, Vec<GenQuery>, usize)> {
    let session = (0..WINDOW, prop::collection::vec(gen_handoff(), 0..4))
        .prop_map(|(start, handoffs)| GenSession { start, handoffs });
    let query = (
        -6 * 3600..WINDOW,
        0..WINDOW + 12 * 3600,
        0..ZONES.len(),
        prop::option::of(0..2usize),
    )
        .prop_map(|(start, length, zone, instruction)| GenQuery {
            start,
            length,
            zone,
            instruction,
        });
    (
        prop::collection::vec(session, 1..14),
        prop::collection::vec(query, 3..5),
        1..4usize,
    )
}

fn window_start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-07T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn attempt_fields(a: &Attempt) -> Value {
    let reasons: Vec<&str> = a.reasons.iter().map(|r| REASONS[*r]).collect();
    let refs: Vec<Value> = a
        .refs
        .iter()
        .map(|(t, i)| json!({"type": REF_TYPES[*t], "id": format!("{}{i}", &REF_TYPES[*t][..2])}))
        .collect();
    json!({"reasons": reasons, "sentiment": SENTIMENTS[a.sentiment], "references": refs})
}

/// The events of a generated stream, in an order the state machine accepts.
fn events_of(sessions: &[GenSession]) -> Vec<Value> {
    let base = window_start();
    let at = |s: i64| (base + Duration::seconds(s)).to_rfc3339();
    let mut out = Vec::new();
    for (si, s) in sessions.iter().enumerate() {
        let sid = format!("s{si}");
        out.push(started(&sid, &at(s.start)));
        for (hi, h) in s.handoffs.iter().enumerate() {
            let hid = format!("{sid}h{hi}");
            let t0 = s.start + h.delay;
            out.push(initiated(
                &format!("{hid}-i"),
                &hid,
                &sid,
                &at(t0),
                attempt_fields(&h.first),
            ));
            match h.outcome {
                1 => out.push(event(
                    &format!("{hid}-c"),
                    "handoff.completed",
                    &at(t0 + 30),
                    json!({"handoff_id": hid}),
                )),
                2 | 3 => {
                    out.push(event(
                        &format!("{hid}-f"),
                        "handoff.failed",
                        &at(t0 + 30),
                        json!({"handoff_id": hid}),
                    ));
                    if h.outcome == 3 {
                        out.push(initiated(
                            &format!("{hid}-r"),
                            &hid,
                            &sid,
                            &at(t0 + h.retry_delay),
                            attempt_fields(&h.retry),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Splits the events into `parts` batches, keeping order (retries often land in a later batch).
fn batches(events: Vec<Value>, parts: usize) -> Vec<Vec<Value>> {
    let size = events.len().div_ceil(parts).max(1);
    events.chunks(size).map(<[Value]>::to_vec).collect()
}

/// Every figure recomputed from raw rows.
async fn recompute(
    app: &TestApp,
    org: uuid::Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    zone: &str,
    instruction: Option<&str>,
) -> Value {
    let pool = &app.pool;
    let scoped = r#"select h.* from handoffs h where h.org_id = $1 and ($4::text is null or exists (
        select 1 from handoff_references r where r.org_id = h.org_id and r.handoff_id = h.handoff_id
        and r.ref_type = 'instruction' and r.ref_id = $4))"#;
    let in_range =
        format!("select * from ({scoped}) h where h.initiated_at >= $2 and h.initiated_at < $3");
    let total: i64 = sqlx::query_scalar(&format!("select count(*) from ({in_range}) h"))
        .bind(org)
        .bind(start)
        .bind(end)
        .bind(instruction)
        .fetch_one(pool)
        .await
        .unwrap();
    let sessions: i64 = sqlx::query_scalar(
        "select count(*) from sessions where org_id = $1 and started_at >= $2 and started_at < $3",
    )
    .bind(org)
    .bind(start)
    .bind(end)
    .fetch_one(pool)
    .await
    .unwrap();
    let pct = |n: i64, d: i64| {
        if d == 0 {
            0.0
        } else {
            ((n as f64) * 10000.0 / d as f64).round() / 100.0
        }
    };
    let reasons: Vec<(String, i64)> = sqlx::query_as(&format!(
        "select r, count(*) from ({in_range}) h, unnest(h.reasons) r group by r"
    ))
    .bind(org)
    .bind(start)
    .bind(end)
    .bind(instruction)
    .fetch_all(pool)
    .await
    .unwrap();
    let sentiments: Vec<(Option<String>, i64)> = sqlx::query_as(&format!(
        "select sentiment, count(*) from ({in_range}) h group by sentiment"
    ))
    .bind(org)
    .bind(start)
    .bind(end)
    .bind(instruction)
    .fetch_all(pool)
    .await
    .unwrap();
    let references: Vec<(String, String, i64)> = sqlx::query_as(&format!(
        "select r.ref_type, r.ref_id, count(*) from ({in_range}) h join handoff_references r
         on r.org_id = h.org_id and r.handoff_id = h.handoff_id group by 1, 2"
    ))
    .bind(org)
    .bind(start)
    .bind(end)
    .bind(instruction)
    .fetch_all(pool)
    .await
    .unwrap();
    let combinations: Vec<(Vec<String>, i64)> = sqlx::query_as(&format!(
        "select reasons, count(*) from (
             select h.session_id, min(h.initiated_at) as first,
                    array_agg(distinct r order by r) as reasons
             from ({scoped}) h, unnest(h.reasons) r group by h.session_id) s
         where s.first >= $2 and s.first < $3 group by reasons"
    ))
    .bind(org)
    .bind(start)
    .bind(end)
    .bind(instruction)
    .fetch_all(pool)
    .await
    .unwrap();
    let trends: Vec<(String, i64)> = sqlx::query_as(&format!(
        "select to_char(h.initiated_at at time zone $5, 'YYYY-MM-DD'), count(*) from ({in_range}) h group by 1"
    ))
    .bind(org).bind(start).bind(end).bind(instruction).bind(zone)
    .fetch_all(pool).await.unwrap();
    let with_handoff: i64 = combinations.iter().map(|c| c.1).sum();
    json!({
        "total_handoffs": total,
        "total_sessions": sessions,
        "reasons": reasons.iter().map(|(r, n)| (r.clone(), json!([n, pct(*n, total)]))).collect::<BTreeMap<_, _>>(),
        "sentiments": sentiments.iter().map(|(s, n)| (s.clone().unwrap_or_else(|| "<null>".into()), json!([n, pct(*n, total)]))).collect::<BTreeMap<_, _>>(),
        "references": references.iter().map(|(t, id, n)| (format!("{t}:{id}"), json!(n))).collect::<BTreeMap<_, _>>(),
        "combinations": combinations.iter().map(|(r, n)| (r.join(","), json!([n, pct(*n, with_handoff)]))).collect::<BTreeMap<_, _>>(),
        "trends": trends.iter().filter(|t| t.1 > 0).map(|(d, n)| (d.clone(), json!(n))).collect::<BTreeMap<_, _>>(),
    })
}

/// The same shape from a response, checking list order and trend days on the way.
fn figures_of(body: &Value, start: DateTime<Utc>, end: DateTime<Utc>, zone: &str) -> Value {
    let list = |key: &str| body[key].as_array().unwrap().clone();
    fn sorted_by_count(items: &[Value], count: &str) -> bool {
        items
            .windows(2)
            .all(|w| w[0][count].as_u64() >= w[1][count].as_u64())
    }
    for key in [
        "reasons",
        "sentiments",
        "knowledge_references",
        "tool_references",
        "instruction_references",
        "prohibited_topic_references",
    ] {
        assert!(
            sorted_by_count(&list(key), "count"),
            "{key} not sorted: {body}"
        );
    }
    assert!(sorted_by_count(
        &list("reason_combinations"),
        "session_count"
    ));
    // Every local day intersecting the range, in order.
    let tz: chrono_tz::Tz = zone.parse().unwrap();
    let days: Vec<String> = list("trends")
        .iter()
        .map(|t| t["date"].as_str().unwrap().to_owned())
        .collect();
    if start < end {
        let first = start.with_timezone(&tz).date_naive();
        let last = (end - Duration::nanoseconds(1))
            .with_timezone(&tz)
            .date_naive();
        let expected: Vec<String> = first
            .iter_days()
            .take_while(|d| *d <= last)
            .map(|d| d.to_string())
            .collect();
        assert_eq!(days, expected);
    } else {
        assert!(days.is_empty());
    }
    let mut references = BTreeMap::new();
    for (key, types) in [
        ("knowledge_references", &["knowledge"][..]),
        ("tool_references", &["tool"][..]),
        ("instruction_references", &["instruction", "ai_profile"][..]),
        ("prohibited_topic_references", &["prohibited_topic"][..]),
    ] {
        for r in list(key) {
            assert!(types.contains(&r["type"].as_str().unwrap()), "{key}: {r}");
            references.insert(
                format!(
                    "{}:{}",
                    r["type"].as_str().unwrap(),
                    r["id"].as_str().unwrap()
                ),
                r["count"].clone(),
            );
        }
    }
    json!({
        "total_handoffs": body["total_handoffs"],
        "total_sessions": body["total_sessions"],
        "reasons": list("reasons").iter().map(|r| (r["reason"].as_str().unwrap().to_owned(), json!([r["count"], r["percentage"]]))).collect::<BTreeMap<_, _>>(),
        "sentiments": list("sentiments").iter().map(|r| (r["sentiment"].as_str().unwrap_or("<null>").to_owned(), json!([r["count"], r["percentage"]]))).collect::<BTreeMap<_, _>>(),
        "references": references,
        "combinations": list("reason_combinations").iter().map(|r| {
            let names: Vec<&str> = r["reasons"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
            (names.join(","), json!([r["session_count"], r["percentage"]]))
        }).collect::<BTreeMap<_, _>>(),
        "trends": list("trends").iter().filter(|t| t["count"] != 0).map(|t| (t["date"].as_str().unwrap().to_owned(), t["count"].clone())).collect::<BTreeMap<_, _>>(),
    })
}

/// Numbers compared as f64 (2.0 and 2 are the same figure).
fn normalize(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_rollups_equal_recomputation_from_raw_rows() {
    let app = TestApp::spawn().await;
    let handle = tokio::runtime::Handle::current();
    let cases = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 16,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&stream(), |(sessions, queries, parts)| {
        let n = cases.fetch_add(1, Ordering::SeqCst);
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let org = app.org(&format!("p{n}"), None, None).await;
                let token = app.writer(&org).await;
                for batch in batches(events_of(&sessions), parts) {
                    app.post_events_ok(&token, &batch).await;
                }
                for q in &queries {
                    let start = window_start() + Duration::seconds(q.start);
                    let end = start + Duration::seconds(q.length);
                    let zone = ZONES[q.zone];
                    let instruction = q.instruction.map(|i| format!("in{i}"));
                    let mut query = format!(
                        "start_date={}&end_date={}&timezone={zone}",
                        start.to_rfc3339().replace('+', "%2B"),
                        end.to_rfc3339().replace('+', "%2B"),
                    );
                    if let Some(i) = &instruction {
                        query.push_str(&format!("&instruction_id={i}"));
                    }
                    let body = report(&app, &token, &query).await;
                    let got = normalize(&figures_of(&body, start, end, zone));
                    let want = normalize(
                        &recompute(&app, org.id, start, end, zone, instruction.as_deref()).await,
                    );
                    assert_eq!(got, want, "{query}");
                }
            })
        });
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[tokio::test]
async fn local_mean_time_days_are_exact_too() {
    // Africa/Monrovia kept UTC-00:44:30 until 1972: its midnights fall between 15-minute buckets,
    // so its days are counted from the projections.
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let mut events = vec![started("s", "1959-12-31T00:00:00Z")];
    // Local: 23:05:30 Jan 1, 23:45:30 Jan 1, 00:05:30 Jan 2, and 00:00:30 Jan 3 (outside).
    for (i, at) in [
        "1960-01-01T23:50:00Z",
        "1960-01-02T00:30:00Z",
        "1960-01-02T00:50:00Z",
        "1960-01-03T00:45:00Z",
    ]
    .iter()
    .enumerate()
    {
        events.push(initiated(
            &format!("e{i}"),
            &format!("h{i}"),
            "s",
            at,
            json!({"reasons": [UR]}),
        ));
    }
    app.post_events_ok(&token, &events).await;
    let body = report(
        &app,
        &token,
        "start_date=1960-01-01&end_date=1960-01-02&timezone=Africa/Monrovia",
    )
    .await;
    // RFC 3339 has no offset seconds: such bounds are written in UTC.
    assert_eq!(body["start_date"], "1960-01-01T00:44:30Z");
    assert_eq!(
        body["trends"],
        json!([{"date": "1960-01-01", "count": 2}, {"date": "1960-01-02", "count": 1}])
    );
    assert_eq!(body["total_handoffs"], 3);
    assert_eq!(body["reasons"], reasons(&[(UR, 3, 100.0)]));
}
