//! `GET /v1/metrics` (Telzino): a hand-built fixture whose every figure is worked out below, a
//! half-hour zone, exact sub-15-minute edges, the empty case, the access matrix, bad input, and
//! a property test against a recomputation from raw calls in SQL.

use baton::auth::{Scope, Subject};
use baton::store::tenants::Organization;
use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestApp, assert_error};

fn agent(id: &str, name: &str, status: &str) -> Value {
    json!({"id": format!("agent-{id}-{name}"), "type": "agent.upserted", "occurred_at": "2026-10-01T00:00:00Z",
           "agent_id": id, "name": name, "status": status})
}

/// A `call.completed` event; `extra` adds optional fields.
fn call(
    id: &str,
    agent: &str,
    started_at: &str,
    duration: f64,
    outcome: &str,
    extra: Value,
) -> Value {
    let mut e = json!({"id": format!("ev-{id}"), "type": "call.completed", "occurred_at": started_at,
        "call_id": id, "agent_id": agent, "started_at": started_at, "duration_seconds": duration,
        "outcome": outcome});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

async fn metrics(app: &TestApp, token: &str, query: &[(&str, &str)]) -> Value {
    let res = app
        .client
        .get(app.url("/v1/metrics"))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    body["data"].clone()
}

async fn get(app: &TestApp, token: &str, query: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .get(app.url("/v1/metrics"))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .unwrap()
}

const DAY: [(&str, &str); 2] = [
    ("startDate", "2026-11-02T00:00:00Z"),
    ("endDate", "2026-11-03T00:00:00Z"),
];

fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut q = DAY.to_vec();
    q.extend_from_slice(extra);
    q
}

/// 24 hours, zero except the given `(hour, calls, minutes)`.
fn hours(nonzero: &[(usize, i64, f64)]) -> Value {
    let mut out: Vec<Value> = (0..24)
        .map(|h| json!({"hour": format!("{h:02}:00"), "calls": 0, "minutes": 0.0}))
        .collect();
    for &(h, calls, minutes) in nonzero {
        out[h] = json!({"hour": format!("{h:02}:00"), "calls": calls, "minutes": minutes});
    }
    Value::Array(out)
}

struct Fixture {
    app: TestApp,
    a: Organization,
    b: Organization,
    c: Organization,
    r1: Uuid,
    r2: Uuid,
}

/// Reseller r1 with organizations A (Asia/Kolkata) and B (UTC); reseller r2 with C.
///
/// A, on 2026-11-02 (UTC): agents a1 "Alice" (active), a2 "Bob" (inactive, then deleted), a3
/// (never declared).
/// - c1 a1 09:00 120 s resolved positive; ttft 400, stt 0.9, tools 2/0 errors, 0 corrections,
///   500/1000 cached tokens
/// - c2 a1 09:40 60 s transferred negative "billing dispute" after 30 s; ttft 600, stt 0.8,
///   tools 2/1 errors, 1 correction, 0/1000 cached
/// - c3 a2 10:07 300 s transferred neutral "billing dispute" (no escalated_after: 300 s)
/// - c4 a2 23:50 180 s abandoned, no sentiment, no telemetry
/// - c5 a3 14:30 240 s other positive, reason "technical issue" (not transferred: not counted);
///   2 corrections
/// - c6 a1 15:00 600 s transferred positive "technical issue" after 100 s
/// - outside the day: c7 a1 2026-11-03 00:10, c8 a1 2026-11-01 23:59
///
/// B: b1 "Carol": d1 12:00 100 s resolved positive ttft 300; d2 agent "a1" (undeclared in B)
/// 12:30 200 s resolved. C: e1 12:00 1000 s resolved.
async fn fixture() -> Fixture {
    let app = TestApp::spawn().await;
    let r1 = app.reseller("r1").await;
    let r2 = app.reseller("r2").await;
    let a = app.org("org-a", Some("r1"), Some("Asia/Kolkata")).await;
    let b = app.org("org-b", Some("r1"), None).await;
    let c = app.org("org-c", Some("r2"), None).await;
    let ta = app.writer(&a).await;
    app.post_events_ok(&ta,
        &[
            agent("a1", "Alice", "active"),
            agent("a2", "Bob", "inactive"),
            json!({"id": "del-a2", "type": "agent.deleted", "occurred_at": "2026-11-05T00:00:00Z", "agent_id": "a2"}),
            call("c1", "a1", "2026-11-02T09:00:00Z", 120.0, "resolved", json!({"sentiment": "positive",
                "telemetry": {"ttft_ms": 400.0, "stt_confidence": 0.9, "tool_calls": 2, "tool_call_errors": 0,
                              "user_corrections": 0, "cached_tokens": 500, "total_tokens": 1000}})),
            call("c2", "a1", "2026-11-02T09:40:00Z", 60.0, "transferred", json!({"sentiment": "negative",
                "escalation_reason": "billing dispute", "escalated_after_seconds": 30.0,
                "telemetry": {"ttft_ms": 600.0, "stt_confidence": 0.8, "tool_calls": 2, "tool_call_errors": 1,
                              "user_corrections": 1, "cached_tokens": 0, "total_tokens": 1000}})),
            call("c3", "a2", "2026-11-02T10:07:00Z", 300.0, "transferred", json!({"sentiment": "neutral",
                "escalation_reason": "billing dispute"})),
            call("c4", "a2", "2026-11-02T23:50:00Z", 180.0, "abandoned", json!({})),
            call("c5", "a3", "2026-11-02T14:30:00Z", 240.0, "other", json!({"sentiment": "positive",
                "escalation_reason": "technical issue", "telemetry": {"user_corrections": 2}})),
            call("c6", "a1", "2026-11-02T15:00:00Z", 600.0, "transferred", json!({"sentiment": "positive",
                "escalation_reason": "technical issue", "escalated_after_seconds": 100.0})),
            call("c7", "a1", "2026-11-03T00:10:00Z", 100.0, "resolved", json!({})),
            call("c8", "a1", "2026-11-01T23:59:00Z", 100.0, "resolved", json!({})),
        ],
    )
    .await;
    let tb = app.writer(&b).await;
    app.post_events_ok(
        &tb,
        &[
            agent("b1", "Carol", "active"),
            call(
                "d1",
                "b1",
                "2026-11-02T12:00:00Z",
                100.0,
                "resolved",
                json!({"sentiment": "positive", "telemetry": {"ttft_ms": 300.0}}),
            ),
            call(
                "d2",
                "a1",
                "2026-11-02T12:30:00Z",
                200.0,
                "resolved",
                json!({}),
            ),
        ],
    )
    .await;
    let tc = app.writer(&c).await;
    app.post_events_ok(
        &tc,
        &[call(
            "e1",
            "c1",
            "2026-11-02T12:00:00Z",
            1000.0,
            "resolved",
            json!({}),
        )],
    )
    .await;
    Fixture {
        app,
        a,
        b,
        c,
        r1: r1.id,
        r2: r2.id,
    }
}

fn agent_entry(
    id: &str,
    name: &str,
    counts: [i64; 4],
    percents: [f64; 4],
    avg: f64,
    sentiment: Value,
    status: &str,
) -> Value {
    json!({"agentId": id, "agentName": name, "totalCalls": counts.iter().sum::<i64>(),
        "resolved": counts[0], "transferred": counts[1], "abandoned": counts[2], "other": counts[3],
        "resolvedPercent": percents[0], "transferredPercent": percents[1],
        "abandonedPercent": percents[2], "otherPercent": percents[3],
        "avgDuration": avg, "sentimentPercent": sentiment, "status": status})
}

#[tokio::test]
async fn every_figure_of_one_organization() {
    let f = fixture().await;
    let token = f.app.reader(&f.a).await;
    let data = metrics(&f.app, &token, &with(&[("timezone", "UTC")])).await;
    let expected = json!({
        "metrics": {"totalCalls": 6, "totalMinutes": 25.0, "resolutionRate": 16.7,
                    "avgDuration": 250.0, "activeAgents": 3, "responseTime": 500.0,
                    "sentimentPercent": 60.0, "escalationRate": 50.0},
        "dailyVolume": [{"date": "2026-11-02", "totalCalls": 6, "resolvedCalls": 1}],
        "hourlyDistribution": hours(&[(9, 2, 3.0), (10, 1, 5.0), (14, 1, 4.0), (15, 1, 10.0), (23, 1, 3.0)]),
        "resolutionBreakdown": {"resolved": 1, "transferred": 3, "abandoned": 1, "other": 1},
        "agentPerformance": [
            agent_entry("a1", "Alice", [1, 2, 0, 0], [33.3, 66.7, 0.0, 0.0], 260.0, json!(66.7), "active"),
            agent_entry("a2", "Bob", [0, 1, 1, 0], [0.0, 50.0, 50.0, 0.0], 240.0, json!(0.0), "deleted"),
            agent_entry("a3", "a3", [0, 0, 0, 1], [0.0, 0.0, 0.0, 100.0], 240.0, json!(100.0), "active"),
        ],
        "aiInsights": {"intentAccuracy": 33.3, "contextRetention": 25.0, "speechRecognition": 85.0,
                       "entityExtraction": 75.0, "responseLatency": 500.0, "trainingSessions": 6},
        "escalationReasons": [
            {"reason": "billing dispute", "count": 2, "percentOfTotal": 66.7, "avgTimeBeforeEscalation": 165.0},
            {"reason": "technical issue", "count": 1, "percentOfTotal": 33.3, "avgTimeBeforeEscalation": 100.0},
        ],
    });
    assert_eq!(data, expected);
}

#[tokio::test]
async fn half_hour_zone_is_the_organization_default() {
    let f = fixture().await;
    let token = f.app.reader(&f.a).await;
    // A's zone is Asia/Kolkata (+05:30): 09:00Z is 14:30, 09:40Z is 15:10, 10:07Z is 15:37,
    // 14:30Z is 20:00, 15:00Z is 20:30, 23:50Z is 05:20 the next day.
    let expected_hours = hours(&[(5, 1, 3.0), (14, 1, 2.0), (15, 2, 6.0), (20, 2, 14.0)]);
    let expected_days = json!([
        {"date": "2026-11-02", "totalCalls": 5, "resolvedCalls": 1},
        {"date": "2026-11-03", "totalCalls": 1, "resolvedCalls": 0},
    ]);
    for query in [with(&[]), with(&[("timezone", "Asia/Kolkata")])] {
        let data = metrics(&f.app, &token, &query).await;
        assert_eq!(data["hourlyDistribution"], expected_hours);
        assert_eq!(data["dailyVolume"], expected_days);
        assert_eq!(data["metrics"]["totalCalls"], 6);
    }
    // Date-only bounds are local days: 2026-11-02 in Kolkata is 2026-11-01T18:30Z to
    // 2026-11-02T18:30Z: c1, c2, c3, c5, c6 and c8 (23:59Z on Nov 1 is 05:29 on Nov 2).
    let data = metrics(
        &f.app,
        &token,
        &[("startDate", "2026-11-02"), ("endDate", "2026-11-02")],
    )
    .await;
    assert_eq!(data["metrics"]["totalCalls"], 6);
    assert_eq!(
        data["dailyVolume"],
        json!([{"date": "2026-11-02", "totalCalls": 6, "resolvedCalls": 2}])
    );
}

#[tokio::test]
async fn bounds_off_the_quarter_hour_are_exact() {
    let f = fixture().await;
    let token = f.app.reader(&f.a).await;
    let count = |data: &Value| {
        (
            data["metrics"]["totalCalls"].as_i64().unwrap(),
            data["metrics"]["totalMinutes"].as_f64().unwrap(),
        )
    };
    // c1 at 09:00:00 is excluded one second later; c6 at 15:00:00 is excluded by the end.
    let d = metrics(
        &f.app,
        &token,
        &[
            ("startDate", "2026-11-02T09:00:01Z"),
            ("endDate", "2026-11-02T15:00:00Z"),
        ],
    )
    .await;
    assert_eq!(count(&d), (3, 10.0));
    assert_eq!(d["escalationReasons"][0]["count"], 2);
    let d = metrics(
        &f.app,
        &token,
        &[
            ("startDate", "2026-11-02T09:00:00Z"),
            ("endDate", "2026-11-02T15:00:00.001Z"),
        ],
    )
    .await;
    assert_eq!(count(&d), (5, 22.0));
    assert_eq!(
        d["escalationReasons"][1],
        json!({"reason": "technical issue", "count": 1, "percentOfTotal": 33.3, "avgTimeBeforeEscalation": 100.0})
    );
    // Inside one quarter hour.
    let d = metrics(
        &f.app,
        &token,
        &[
            ("startDate", "2026-11-02T09:31:00Z"),
            ("endDate", "2026-11-02T09:41:00Z"),
        ],
    )
    .await;
    assert_eq!(count(&d), (1, 1.0));
    assert_eq!(d["agentPerformance"][0]["agentName"], "Alice");
}

#[tokio::test]
async fn a_reseller_sees_its_organizations_together() {
    let f = fixture().await;
    let token = f
        .app
        .token(Subject::Reseller(f.r1), &[Scope::ReadAll])
        .await;
    let r1 = f.r1.to_string();
    for query in [with(&[]), with(&[("resellerId", &r1)])] {
        let data = metrics(&f.app, &token, &query).await;
        assert_eq!(
            data["metrics"],
            json!({"totalCalls": 8, "totalMinutes": 30.0, "resolutionRate": 37.5, "avgDuration": 225.0,
                   "activeAgents": 5, "responseTime": 433.3, "sentimentPercent": 66.7, "escalationRate": 37.5})
        );
        // Several organizations: UTC, although A's zone is Kolkata.
        assert_eq!(
            data["hourlyDistribution"],
            hours(&[
                (9, 2, 3.0),
                (10, 1, 5.0),
                (12, 2, 5.0),
                (14, 1, 4.0),
                (15, 1, 10.0),
                (23, 1, 3.0)
            ])
        );
        let names: Vec<(&str, &str, &str)> = data["agentPerformance"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["agentId"].as_str().unwrap(),
                    a["agentName"].as_str().unwrap(),
                    a["status"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("a1", "Alice", "active"),
                ("a2", "Bob", "deleted"),
                ("b1", "Carol", "active"),
                ("a1", "a1", "active"),
                ("a3", "a3", "active"),
            ]
        );
        assert_eq!(data["aiInsights"]["trainingSessions"], 8);
        assert_eq!(data["escalationReasons"][0]["percentOfTotal"], 66.7);
    }
    // One of its organizations, in that organization's zone.
    let b = f.b.id.to_string();
    let data = metrics(
        &f.app,
        &token,
        &with(&[("organizationId", &b), ("resellerId", &r1)]),
    )
    .await;
    assert_eq!(data["metrics"]["totalCalls"], 2);
    assert_eq!(data["metrics"]["escalationRate"], 0.0);
    assert_eq!(data["escalationReasons"], json!([]));
    let a = f.a.id.to_string();
    let data = metrics(&f.app, &token, &with(&[("organizationId", &a)])).await;
    assert_eq!(data["metrics"]["totalCalls"], 6);
    assert_eq!(
        data["dailyVolume"].as_array().unwrap().len(),
        2,
        "Kolkata days"
    );

    // The other reseller sees only C.
    let token2 = f
        .app
        .token(Subject::Reseller(f.r2), &[Scope::ReadAll])
        .await;
    let data = metrics(&f.app, &token2, &with(&[])).await;
    assert_eq!(data["metrics"]["totalCalls"], 1);
    assert_eq!(data["agentPerformance"][0]["agentId"], "c1");
}

#[tokio::test]
async fn access_matrix() {
    let f = fixture().await;
    let (a, b, c) = (f.a.id.to_string(), f.b.id.to_string(), f.c.id.to_string());
    let (r1, r2) = (f.r1.to_string(), f.r2.to_string());
    let unknown = Uuid::new_v4().to_string();
    let org_token = f.app.reader(&f.a).await;
    let reseller_token = f
        .app
        .token(Subject::Reseller(f.r1), &[Scope::ReadAll])
        .await;

    // Organization token: itself only.
    let own = metrics(&f.app, &org_token, &with(&[("organizationId", &a)])).await;
    assert_eq!(own["metrics"]["totalCalls"], 6);
    let via_reseller = metrics(&f.app, &org_token, &with(&[("resellerId", &r1)])).await;
    assert_eq!(
        via_reseller, own,
        "its own reseller still shows only itself"
    );
    for (param, id) in [
        ("organizationId", &b),
        ("organizationId", &c),
        ("organizationId", &unknown),
    ] {
        assert_error(
            get(&f.app, &org_token, &with(&[(param, id)])).await,
            404,
            id,
        )
        .await;
    }
    for id in [&r2, &unknown] {
        assert_error(
            get(&f.app, &org_token, &with(&[("resellerId", id)])).await,
            404,
            id,
        )
        .await;
    }

    // Reseller token: its organizations, none outside.
    for id in [&c, &unknown] {
        assert_error(
            get(&f.app, &reseller_token, &with(&[("organizationId", id)])).await,
            404,
            id,
        )
        .await;
    }
    for id in [&r2, &unknown] {
        assert_error(
            get(&f.app, &reseller_token, &with(&[("resellerId", id)])).await,
            404,
            id,
        )
        .await;
    }
    assert_error(
        get(
            &f.app,
            &reseller_token,
            &with(&[("resellerId", &r2), ("organizationId", &c)]),
        )
        .await,
        404,
        "reseller",
    )
    .await;

    // A write token reads too (write_all implies read_all); no token or a bad one is a 401.
    let writer = f.app.writer(&f.a).await;
    assert_eq!(get(&f.app, &writer, &with(&[])).await.status(), 200);
    let res = f
        .app
        .client
        .get(f.app.url("/v1/metrics"))
        .query(&DAY)
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "missing token").await;
    assert_error(get(&f.app, "not-a-token", &with(&[])).await, 401, "").await;
}

#[tokio::test]
async fn bad_parameters_are_named() {
    let f = fixture().await;
    let token = f.app.reader(&f.a).await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("endDate", "2026-11-03")], "startDate"),
        (vec![("startDate", "2026-11-03")], "endDate"),
        (
            vec![("startDate", ""), ("endDate", "2026-11-03")],
            "startDate",
        ),
        (
            vec![("startDate", "yesterday"), ("endDate", "2026-11-03")],
            "startDate",
        ),
        (
            vec![("startDate", "2026-11-01"), ("endDate", "2026-13-01")],
            "endDate",
        ),
        (
            vec![("startDate", "2026-11-05"), ("endDate", "2026-11-03")],
            "startDate",
        ),
        (
            vec![("startDate", "2024-01-01"), ("endDate", "2026-11-03")],
            "endDate",
        ),
        (with(&[("organizationId", "not-a-uuid")]), "organizationId"),
        (with(&[("resellerId", "123")]), "resellerId"),
        (with(&[("timezone", "Mars/Base")]), "timezone"),
    ];
    for (query, param) in cases {
        let body = assert_error(get(&f.app, &token, &query).await, 400, param).await;
        assert!(
            body["message"].as_str().unwrap().starts_with(param),
            "{query:?}: {body}"
        );
    }
}

#[tokio::test]
async fn no_calls_at_all() {
    let app = TestApp::spawn().await;
    let org = app.org("empty", None, None).await;
    let token = app.reader(&org).await;
    let data = metrics(
        &app,
        &token,
        &[("startDate", "2026-11-01"), ("endDate", "2026-11-03")],
    )
    .await;
    let day = |d: &str| json!({"date": d, "totalCalls": 0, "resolvedCalls": 0});
    assert_eq!(
        data,
        json!({
            "metrics": {"totalCalls": 0, "totalMinutes": 0.0, "resolutionRate": 0.0, "avgDuration": 0.0,
                        "activeAgents": 0, "responseTime": null, "sentimentPercent": null, "escalationRate": null},
            "dailyVolume": [day("2026-11-01"), day("2026-11-02"), day("2026-11-03")],
            "hourlyDistribution": hours(&[]),
            "resolutionBreakdown": {"resolved": 0, "transferred": 0, "abandoned": 0, "other": 0},
            "agentPerformance": [],
            "aiInsights": {"intentAccuracy": null, "contextRetention": null, "speechRecognition": null,
                           "entityExtraction": null, "responseLatency": null, "trainingSessions": 0},
            "escalationReasons": [],
        })
    );
    // A reseller without organizations, and an empty range, are empty too.
    let r = app.reseller("lonely").await;
    let token = app.token(Subject::Reseller(r.id), &[Scope::ReadAll]).await;
    let data = metrics(&app, &token, &DAY).await;
    assert_eq!(data["metrics"]["totalCalls"], 0);
    assert_eq!(data["hourlyDistribution"].as_array().unwrap().len(), 24);
    let data = metrics(
        &app,
        &token,
        &[
            ("startDate", "2026-11-02T00:00:00Z"),
            ("endDate", "2026-11-02T00:00:00Z"),
        ],
    )
    .await;
    assert_eq!(data["dailyVolume"], json!([]));
}

// ---- property test: rollups + edges equal a recomputation from raw calls --------------------

#[derive(Debug, Clone)]
struct GenCall {
    agent: u8,
    second: i64,
    duration: u16,
    outcome: u8,
    sentiment: Option<u8>,
    reason: Option<u8>,
    after: Option<u16>,
    ttft: Option<u16>,
    stt: Option<u8>,
    tools: Option<(u8, u8)>,
    corrections: Option<u8>,
    tokens: Option<(u16, u16)>,
}

fn gen_call() -> impl Strategy<Value = GenCall> {
    (
        (
            0u8..4,
            0i64..3 * 86_400,
            0u16..2_000,
            0u8..4,
            proptest::option::of(0u8..3),
        ),
        (
            proptest::option::of(0u8..3),
            proptest::option::of(0u16..600),
            proptest::option::of(0u16..2_000),
            proptest::option::of(0u8..=100),
        ),
        (
            proptest::option::of((0u8..5, 0u8..5)),
            proptest::option::of(0u8..3),
            proptest::option::of((0u16..1_000, 0u16..1_000)),
        ),
    )
        .prop_map(
            |(
                (agent, second, duration, outcome, sentiment),
                (reason, after, ttft, stt),
                (tools, corrections, tokens),
            )| {
                GenCall {
                    agent,
                    second,
                    duration,
                    outcome,
                    sentiment,
                    reason,
                    after,
                    ttft,
                    stt,
                    tools: tools.map(|(a, b)| (a.max(b), a.min(b))),
                    corrections,
                    tokens: tokens.map(|(a, b)| (a.min(b), a.max(b))),
                }
            },
        )
}

const BASE: &str = "2026-03-07T00:00:00Z";

fn at(second: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339(BASE).unwrap();
    (base + chrono::Duration::seconds(second))
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn event_of(i: usize, c: &GenCall) -> Value {
    let outcome = ["resolved", "transferred", "abandoned", "other"][c.outcome as usize];
    let mut extra = json!({});
    if let Some(s) = c.sentiment {
        extra["sentiment"] = json!(["positive", "neutral", "negative"][s as usize]);
    }
    if let Some(r) = c.reason {
        extra["escalation_reason"] = json!(["billing", "tech", "angry"][r as usize]);
    }
    if let Some(a) = c.after {
        extra["escalated_after_seconds"] = json!(a);
    }
    let mut t = json!({});
    if let Some(v) = c.ttft {
        t["ttft_ms"] = json!(v);
    }
    if let Some(v) = c.stt {
        t["stt_confidence"] = json!(f64::from(v) / 100.0);
    }
    if let Some((calls, errors)) = c.tools {
        t["tool_calls"] = json!(calls);
        t["tool_call_errors"] = json!(errors);
    }
    if let Some(v) = c.corrections {
        t["user_corrections"] = json!(v);
    }
    if let Some((cached, total)) = c.tokens {
        t["cached_tokens"] = json!(cached);
        t["total_tokens"] = json!(total);
    }
    extra["telemetry"] = t;
    call(
        &format!("p{i}"),
        &format!("ag{}", c.agent),
        &at(c.second),
        f64::from(c.duration),
        outcome,
        extra,
    )
}

fn close(a: &Value, b: Option<f64>, what: &str) {
    match (a.as_f64(), b) {
        (None, None) => assert!(a.is_null(), "{what}: {a}"),
        (Some(x), Some(y)) => assert!((x - y).abs() <= 0.051, "{what}: API {x}, SQL {y}"),
        (x, y) => panic!("{what}: API {x:?}, SQL {y:?}"),
    }
}

/// Totals recomputed in SQL: calls, seconds, four outcomes, mean ttft, sentiment %, intent %,
/// distinct agents.
type Totals = (
    i64,
    Option<f64>,
    i64,
    i64,
    i64,
    i64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    i64,
);

async fn check_case(app: &TestApp, n: usize, calls: &[GenCall], from: i64, len: i64, zone: &str) {
    // The organization has a reseller, so that the reseller's rollups are checked too.
    let reseller = app.reseller(&format!("prop-r-{n}")).await;
    let org = app
        .org(&format!("prop-{n}"), Some(&format!("prop-r-{n}")), None)
        .await;
    let token = app.writer(&org).await;
    // Several batches, so rollup rows are added to, not only inserted.
    let events: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| event_of(i, c))
        .collect();
    for chunk in events.chunks(7) {
        app.post_events_ok(&token, chunk).await;
    }
    let (start, end) = (at(from), at(from + len));
    let data = metrics(
        app,
        &token,
        &[
            ("startDate", start.as_str()),
            ("endDate", end.as_str()),
            ("timezone", zone),
        ],
    )
    .await;
    // The reseller's view of its only organization comes from the reseller rollups (other
    // grains, other tables) and must be the same.
    let reseller_token = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    let via_reseller = metrics(
        app,
        &reseller_token,
        &[
            ("startDate", start.as_str()),
            ("endDate", end.as_str()),
            ("timezone", zone),
        ],
    )
    .await;
    assert_eq!(
        via_reseller, data,
        "reseller view of {start} .. {end} {zone}"
    );
    let pool = &app.pool;
    let (s, e) = (
        chrono::DateTime::parse_from_rfc3339(&start).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&end).unwrap(),
    );
    let row: Totals = sqlx::query_as(
        r#"select count(*), sum(duration_seconds),
                  count(*) filter (where outcome = 'resolved'),
                  count(*) filter (where outcome = 'transferred'),
                  count(*) filter (where outcome = 'abandoned'),
                  count(*) filter (where outcome = 'other'),
                  avg(ttft_ms),
                  100.0 * count(*) filter (where sentiment = 'positive')
                        / nullif(count(sentiment), 0)::float8,
                  100.0 * count(*) filter (where user_corrections = 0)
                        / nullif(count(user_corrections), 0)::float8,
                  count(distinct agent_id)
               from calls where org_id = $1 and started_at >= $2 and started_at < $3"#,
    )
    .bind(org.id)
    .bind(s)
    .bind(e)
    .fetch_one(pool)
    .await
    .unwrap();
    let m = &data["metrics"];
    assert_eq!(m["totalCalls"], row.0);
    close(
        &m["totalMinutes"],
        Some(row.1.unwrap_or(0.0) / 60.0),
        "totalMinutes",
    );
    let b = &data["resolutionBreakdown"];
    assert_eq!(
        (
            b["resolved"].as_i64(),
            b["transferred"].as_i64(),
            b["abandoned"].as_i64(),
            b["other"].as_i64()
        ),
        (Some(row.2), Some(row.3), Some(row.4), Some(row.5))
    );
    close(&m["responseTime"], row.6, "responseTime");
    close(&m["sentimentPercent"], row.7, "sentimentPercent");
    close(
        &data["aiInsights"]["intentAccuracy"],
        row.8,
        "intentAccuracy",
    );
    assert_eq!(m["activeAgents"], row.9);
    let total = row.0;
    close(
        &m["escalationRate"],
        (total > 0).then(|| 100.0 * row.3 as f64 / total as f64),
        "escalationRate",
    );

    let ai: (Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        r#"select 100.0 * avg(cached_tokens::float8 / total_tokens) filter (where total_tokens > 0),
                  100.0 * avg(stt_confidence),
                  100.0 * sum(tool_calls - tool_call_errors)::float8 / nullif(sum(tool_calls), 0)
           from calls where org_id = $1 and started_at >= $2 and started_at < $3"#,
    )
    .bind(org.id)
    .bind(s)
    .bind(e)
    .fetch_one(pool)
    .await
    .unwrap();
    close(
        &data["aiInsights"]["contextRetention"],
        ai.0,
        "contextRetention",
    );
    close(
        &data["aiInsights"]["speechRecognition"],
        ai.1,
        "speechRecognition",
    );
    close(
        &data["aiInsights"]["entityExtraction"],
        ai.2,
        "entityExtraction",
    );

    let hourly: Vec<(i32, i64, f64)> = sqlx::query_as(
        r#"select extract(hour from started_at at time zone $4)::int, count(*), sum(duration_seconds)
           from calls where org_id = $1 and started_at >= $2 and started_at < $3 group by 1"#,
    )
    .bind(org.id)
    .bind(s)
    .bind(e)
    .bind(zone)
    .fetch_all(pool)
    .await
    .unwrap();
    let hours_api = data["hourlyDistribution"].as_array().unwrap();
    assert_eq!(hours_api.len(), 24);
    let mut expected = vec![(0i64, 0f64); 24];
    for (h, c, secs) in hourly {
        expected[h as usize] = (c, secs);
    }
    for (h, (c, secs)) in expected.iter().enumerate() {
        assert_eq!(hours_api[h]["calls"], *c, "hour {h}");
        close(&hours_api[h]["minutes"], Some(secs / 60.0), "minutes");
    }

    let daily: Vec<(String, i64, i64)> = sqlx::query_as(
        r#"select to_char((started_at at time zone $4)::date, 'YYYY-MM-DD'), count(*),
                  count(*) filter (where outcome = 'resolved')
           from calls where org_id = $1 and started_at >= $2 and started_at < $3 group by 1"#,
    )
    .bind(org.id)
    .bind(s)
    .bind(e)
    .bind(zone)
    .fetch_all(pool)
    .await
    .unwrap();
    let days_api = data["dailyVolume"].as_array().unwrap();
    let api_sum: i64 = days_api
        .iter()
        .map(|d| d["totalCalls"].as_i64().unwrap())
        .sum();
    assert_eq!(api_sum, total);
    for (day, c, r) in daily {
        let d = days_api.iter().find(|d| d["date"] == day.as_str()).unwrap();
        assert_eq!(
            (d["totalCalls"].as_i64(), d["resolvedCalls"].as_i64()),
            (Some(c), Some(r)),
            "{day}"
        );
    }

    let agents: Vec<(String, i64, i64, f64, Option<f64>)> = sqlx::query_as(
        r#"select agent_id, count(*), count(*) filter (where outcome = 'transferred'),
                  avg(duration_seconds),
                  100.0 * count(*) filter (where sentiment = 'positive') / nullif(count(sentiment), 0)::float8
           from calls where org_id = $1 and started_at >= $2 and started_at < $3
           group by agent_id order by count(*) desc, agent_id"#,
    )
    .bind(org.id)
    .bind(s)
    .bind(e)
    .fetch_all(pool)
    .await
    .unwrap();
    let agents_api = data["agentPerformance"].as_array().unwrap();
    assert_eq!(agents_api.len(), agents.len());
    for (api, (id, c, t, avg, sent)) in agents_api.iter().zip(&agents) {
        assert_eq!(api["agentId"], id.as_str());
        assert_eq!(api["totalCalls"], *c);
        assert_eq!(api["transferred"], *t);
        close(&api["avgDuration"], Some(*avg), "agent avgDuration");
        close(&api["sentimentPercent"], *sent, "agent sentimentPercent");
    }

    let reasons: Vec<(String, i64, f64)> = sqlx::query_as(
        r#"select escalation_reason, count(*), avg(coalesce(escalated_after_seconds, duration_seconds))
           from calls where org_id = $1 and started_at >= $2 and started_at < $3
             and outcome = 'transferred' and escalation_reason is not null
           group by 1 order by count(*) desc, 1"#,
    )
    .bind(org.id)
    .bind(s)
    .bind(e)
    .fetch_all(pool)
    .await
    .unwrap();
    let reasons_api = data["escalationReasons"].as_array().unwrap();
    assert_eq!(reasons_api.len(), reasons.len());
    for (api, (reason, c, avg)) in reasons_api.iter().zip(&reasons) {
        assert_eq!(api["reason"], reason.as_str());
        assert_eq!(api["count"], *c);
        close(
            &api["avgTimeBeforeEscalation"],
            Some(*avg),
            "avgTimeBeforeEscalation",
        );
        close(
            &api["percentOfTotal"],
            Some(100.0 * *c as f64 / row.3 as f64),
            "percentOfTotal",
        );
    }
}

#[test]
fn rollups_equal_a_recomputation_from_raw_calls() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(TestApp::spawn());
    let zones = ["UTC", "Asia/Kolkata", "America/New_York", "Asia/Kathmandu"];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 12,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let counter = std::sync::atomic::AtomicUsize::new(0);
    // Ranges start anywhere in the three days (2026-03-07 to 03-10 spans New York's DST change),
    // on or off quarter-hour boundaries.
    let strategy = (
        proptest::collection::vec(gen_call(), 0..60),
        prop_oneof![0i64..3 * 86_400, (0i64..288).prop_map(|q| q * 900)],
        prop_oneof![1i64..3 * 86_400, (1i64..288).prop_map(|q| q * 900)],
        0usize..4,
    );
    runner
        .run(&strategy, |(calls, from, len, zone)| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            rt.block_on(check_case(&app, n, &calls, from, len, zones[zone]));
            Ok(())
        })
        .unwrap();
}

/// The four reseller tables as text, floats rounded to 6 decimals (ingestion adds them batch by
/// batch, the rebuild in one sum).
async fn reseller_tables(app: &TestApp) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        r#"select string_agg(concat_ws('|', reseller_id, grain, bucket, calls, resolved,
                   transferred, abandoned, other_outcome, round(duration_sum::numeric, 6),
                   sentiment_calls, positive_calls, round(ttft_sum::numeric, 6), ttft_calls,
                   round(stt_sum::numeric, 6), stt_calls, correction_calls, zero_correction_calls,
                   round(context_sum::numeric, 6), context_calls, tool_calls, tool_call_errors),
                   E'\n' order by reseller_id, grain, bucket)
           from reseller_call_rollups"#,
        r#"select string_agg(concat_ws('|', reseller_id, grain, bucket, org_id, agent_id, calls,
                   resolved, transferred, abandoned, round(duration_sum::numeric, 6),
                   sentiment_calls, positive_calls),
                   E'\n' order by reseller_id, grain, bucket, org_id, agent_id)
           from reseller_agent_rollups"#,
        r#"select string_agg(concat_ws('|', reseller_id, grain, bucket, reason, calls,
                   round(seconds_sum::numeric, 6)), E'\n' order by reseller_id, grain, bucket, reason)
           from reseller_escalation_rollups"#,
        r#"select string_agg(concat_ws('|', reseller_id, day, calls, resolved,
                   array(select round(x::numeric, 6) from unnest(seconds) x),
                   hour_calls, hour_resolved,
                   array(select round(x::numeric, 6) from unnest(hour_seconds) x)),
                   E'\n' order by reseller_id, day)
           from reseller_call_volume_days"#,
    ] {
        let text: Option<String> = sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap();
        out.push(text.unwrap_or_default());
    }
    out
}

/// The reseller rollups ingestion maintains equal a rebuild from the raw calls (the function
/// the migration runs for calls stored before it), and an organization's reseller is fixed.
#[tokio::test]
async fn reseller_rollups_equal_a_rebuild_from_raw_calls() {
    let f = fixture().await;
    let maintained = reseller_tables(&f.app).await;
    let rows: i64 = sqlx::query_scalar("select count(*) from reseller_agent_rollups")
        .fetch_one(&f.app.pool)
        .await
        .unwrap();
    // r1: A's 8 calls and B's 2 over 4 agents; r2: C's 1 call. Every call in 14 grains.
    assert!(rows >= 14 * 5, "{rows} rows");
    // Organizations without a reseller write none.
    let loner = f.app.org("loner", None, None).await;
    let token = f.app.writer(&loner).await;
    f.app
        .post_events_ok(
            &token,
            &[call(
                "l1",
                "x",
                "2026-11-02T10:00:00Z",
                30.0,
                "resolved",
                json!({}),
            )],
        )
        .await;
    assert_eq!(reseller_tables(&f.app).await, maintained);

    // An independent recomputation in SQL (not Baton's code).
    sqlx::raw_sql(include_str!("../common/reseller_rollups.sql"))
        .execute(&f.app.pool)
        .await
        .unwrap();
    let rebuilt = reseller_tables(&f.app).await;
    for (table, (r, m)) in rebuilt.iter().zip(&maintained).enumerate() {
        assert!(!m.is_empty(), "table {table} is empty");
        assert_eq!(r, m, "table {table}");
    }

    let moved = sqlx::query("update organizations set reseller_id = $1 where id = $2")
        .bind(f.r2)
        .bind(f.a.id)
        .execute(&f.app.pool)
        .await;
    assert!(moved.is_err(), "an organization's reseller must not change");
}

/// Organizations of one reseller ingest at the same time and update the same reseller rows:
/// every batch is accepted (no deadlock) and the reseller's figures are the sum of theirs.
#[tokio::test]
async fn organizations_of_one_reseller_ingest_concurrently() {
    let app = TestApp::spawn().await;
    let r = app.reseller("busy").await;
    let mut writers = Vec::new();
    for o in 0..4 {
        let org = app.org(&format!("busy-{o}"), Some("busy"), None).await;
        writers.push(app.writer(&org).await);
    }
    let mut tasks = Vec::new();
    for (o, token) in writers.iter().enumerate() {
        for b in 0..6 {
            // Calls spread over two days in scrambled order, so batches share many buckets.
            let events: Vec<Value> = (0..40)
                .map(|i| {
                    let minute = (i * 97 + b * 31 + o * 13) % 2880;
                    let at = format!(
                        "2026-11-0{}T{:02}:{:02}:00Z",
                        2 + minute / 1440,
                        (minute % 1440) / 60,
                        minute % 60
                    );
                    call(
                        &format!("c{o}-{b}-{i}"),
                        &format!("a{}", i % 3),
                        &at,
                        60.0,
                        "resolved",
                        json!({}),
                    )
                })
                .collect();
            let (app, token) = (&app, token.clone());
            tasks.push(async move { app.post_events_ok(&token, &events).await });
        }
    }
    futures::future::join_all(tasks).await;
    let token = app.token(Subject::Reseller(r.id), &[Scope::ReadAll]).await;
    let data = metrics(
        &app,
        &token,
        &[
            ("startDate", "2026-11-01T00:00:00Z"),
            ("endDate", "2026-11-05T00:00:00Z"),
        ],
    )
    .await;
    assert_eq!(data["metrics"]["totalCalls"], 4 * 6 * 40);
    assert_eq!(data["agentPerformance"].as_array().unwrap().len(), 4 * 3);
    let daily: i64 = data["dailyVolume"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["totalCalls"].as_i64().unwrap())
        .sum();
    assert_eq!(daily, 4 * 6 * 40);
}

/// An agent entry without its organization, for comparing views.
fn entries(data: &Value) -> Vec<String> {
    let mut out: Vec<String> = data["agentPerformance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.to_string())
        .collect();
    out.sort();
    out
}

/// A reseller's request holds the agent rows of the buckets it read; the next request reuses
/// them while their version stands, and reads them again once a call (here late ones, into
/// buckets already held) changes them. The answers equal the organizations' own views, which
/// do not go through the cache.
#[tokio::test]
async fn held_reseller_buckets_follow_late_calls() {
    let f = fixture().await;
    let token = f
        .app
        .token(Subject::Reseller(f.r1), &[Scope::ReadAll])
        .await;
    let range = [
        ("startDate", "2026-10-01T00:00:00Z"),
        ("endDate", "2026-11-21T00:00:00Z"),
        ("timezone", "UTC"),
    ];
    let before = metrics(&f.app, &token, &range).await;
    // A: c1…c8; B: d1, d2.
    assert_eq!(before["metrics"]["totalCalls"], 10);
    let held = f.app.metrics_cache.rows();
    assert!(held > 0, "the buckets read are held");
    assert_eq!(metrics(&f.app, &token, &range).await, before);
    assert_eq!(f.app.metrics_cache.rows(), held, "nothing new to hold");

    let tb = f.app.writer(&f.b).await;
    f.app
        .post_events_ok(
            &tb,
            &[
                call(
                    "d3",
                    "b1",
                    "2026-11-02T12:05:00Z",
                    50.0,
                    "resolved",
                    json!({}),
                ),
                call(
                    "d4",
                    "b9",
                    "2026-10-15T08:00:00Z",
                    70.0,
                    "abandoned",
                    json!({}),
                ),
            ],
        )
        .await;
    let after = metrics(&f.app, &token, &range).await;
    assert_eq!(after["metrics"]["totalCalls"], 12);
    let agent = |data: &Value, id: &str| -> Value {
        data["agentPerformance"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agentId"] == id && a["agentName"] != "a1")
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(agent(&before, "b1")["totalCalls"], 1);
    assert_eq!(agent(&after, "b1")["totalCalls"], 2);
    assert_eq!(agent(&after, "b1")["avgDuration"], 75.0);
    assert_eq!(agent(&before, "b9"), Value::Null);
    assert_eq!(agent(&after, "b9")["abandoned"], 1);

    // The reseller's agents are exactly A's and B's, each read from its own rollups.
    let mut orgs = Vec::new();
    for org in [&f.a, &f.b] {
        let reader = f.app.reader(org).await;
        orgs.extend(entries(&metrics(&f.app, &reader, &range).await));
    }
    orgs.sort();
    assert_eq!(entries(&after), orgs);

    // Rebuilding the rollups (`baton rebuild`) gives every bucket a new version: read again,
    // same answer.
    baton::admin::rebuild(&f.app.pool, None).await.unwrap();
    assert_eq!(metrics(&f.app, &token, &range).await, after);
}
