//! Hostile input: the NUL character in paths, queries and bodies, dates outside years 0001–9999,
//! and unknown query parameters. Each is a 4xx in the envelope naming what is wrong (never a
//! 500 that a retrying client would resend forever), and nothing of a refused batch is stored.

use chrono::{DateTime, Datelike};
use serde_json::{Value, json};

use crate::common::fixtures::event as ev;
use crate::common::{TestApp, assert_error};

const AT: &str = "2026-11-02T09:00:00Z";

fn session(id: &str, session: &str) -> Value {
    ev(
        id,
        "session.started",
        AT,
        json!({"session_id": session, "channel": "web", "agent_id": "bot"}),
    )
}

fn initiated(id: &str, handoff: &str, session: &str, fields: Value) -> Value {
    let mut e = ev(
        id,
        "handoff.initiated",
        AT,
        json!({"handoff_id": handoff, "session_id": session, "reasons": ["ai_implied_handoff"]}),
    );
    for (k, v) in fields.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

async fn stored_events(app: &TestApp, org: uuid::Uuid) -> i64 {
    sqlx::query_scalar("select count(*) from events where org_id = $1")
        .bind(org)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The `field`s of an error's `details`, sorted.
fn detail_fields(body: &Value) -> Vec<String> {
    let mut fields: Vec<String> = body["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no details in {body}"))
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_owned())
        .collect();
    fields.sort();
    fields
}

/// The message of every detail about `field`.
fn messages_of<'a>(body: &'a Value, field: &str) -> Vec<&'a str> {
    body["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["field"] == field)
        .map(|d| d["message"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn nul_in_a_path_is_a_404() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    app.post_events_ok(
        &token,
        &[session("e1", "s1"), initiated("e2", "h1", "s1", json!({}))],
    )
    .await;

    let body = assert_error(
        app.get("/v1/handoffs/a%00b", &token).await,
        404,
        "handoff_id",
    )
    .await;
    assert!(body.get("details").is_none(), "{body}");

    // PolyAI answers every miss with one body; a NUL in the account or the project is a miss.
    let miss = assert_error(
        app.get("/v1/acme/bot/handoff_state?id=nope", &token).await,
        404,
        "handoff not found",
    )
    .await;
    for path in [
        "/v1/ac%00me/bot/handoff_state?id=h1",
        "/v1/acme/b%00ot/handoff_state?id=h1",
        "/v1/%00/%00/handoff_state?shared_id=x",
    ] {
        let body = assert_error(app.get(path, &token).await, 404, "handoff not found").await;
        assert_eq!(body, miss, "{path}");
    }
    // The lookup still works without the NUL.
    let res = app.get("/v1/acme/bot/handoff_state?id=h1", &token).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn nul_in_a_polyai_id_or_shared_id_is_the_same_404() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    app.post_events_ok(
        &token,
        &[
            session("e1", "s1"),
            initiated("e2", "h1", "s1", json!({"shared_id": "acme-1"})),
        ],
    )
    .await;
    let miss = assert_error(
        app.get("/v1/acme/bot/handoff_state?shared_id=nope", &token)
            .await,
        404,
        "handoff not found",
    )
    .await;
    for query in [
        "id=h1%00",
        "id=%00",
        "shared_id=acme-1%00",
        "id=h1&shared_id=%00x",
    ] {
        let path = format!("/v1/acme/bot/handoff_state?{query}");
        let body = assert_error(app.get(&path, &token).await, 404, "handoff not found").await;
        assert_eq!(body, miss, "{query}");
    }
}

#[tokio::test]
async fn nul_in_a_query_parameter_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let cases = [
        ("/handoff-analytics?instruction_id=a%00b", "instruction_id"),
        ("/handoff-analytics?timezone=UTC%00", "timezone"),
        ("/v1/handoffs?session_id=s%001", "session_id"),
        ("/v1/handoffs?state=%00", "state"),
        ("/v1/handoffs/h1?organization_id=%00", "organization_id"),
        (
            "/v1/metrics?startDate=2026-11-01&endDate=2026-11-02&timezone=%00",
            "timezone",
        ),
        (
            "/v1/api/human_handoff/configuration?organization_id=%00",
            "organization_id",
        ),
        (
            "/v1/api/human_handoff/configuration/revisions?before=1%00",
            "before",
        ),
        // A NUL in the name is shown as %00.
        ("/v1/handoffs?a%00b=1", "a%00b"),
        ("/v1/me?x%00=1", "x%00"),
    ];
    for (path, param) in cases {
        let body = assert_error(app.get(path, &token).await, 400, param).await;
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("NUL character"), "{path}: {message}");
    }
    // A forged cursor whose id holds NUL (`00`), or whose instant (year −10000) PostgreSQL
    // cannot hold, is not a cursor of this endpoint.
    for next in ["h1.12.6100", "h1.-380000000000000000.61"] {
        let res = app.get(&format!("/v1/handoffs?next={next}"), &token).await;
        assert_error(res, 400, "next: not a cursor").await;
    }
}

#[tokio::test]
async fn nul_anywhere_in_an_event_refuses_the_batch_naming_each_path() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let batch = vec![
        session("e0", "s0"),
        ev(
            "e\u{0}1",
            "session.started",
            AT,
            json!({"session_id": "s1", "channel": "web"}),
        ),
        session("e2", "s\u{0}2"),
        initiated(
            "e3",
            "h3",
            "s0",
            json!({
                "summary": "refund\u{0}",
                "data": {"note": "a\u{0}b", "nested": {"list": ["ok", "\u{0}"]}, "k\u{0}ey": 1}
            }),
        ),
        ev(
            "e4",
            "agent.upserted",
            AT,
            json!({"agent_id": "a1", "name": "Ann\u{0}", "status": "active"}),
        ),
        ev(
            "e5",
            "handoff.state",
            AT,
            json!({"handoff_id": "h3", "state": "customer_refund", "data": {"x": "\u{0}"}}),
        ),
    ];
    let res = app.post_events(&token, &batch).await;
    let body = assert_error(res, 400, "5 of 6 events are invalid; nothing was stored").await;
    assert_eq!(
        detail_fields(&body),
        [
            "events[1].id",
            "events[2].session_id",
            "events[3].data.k\\u0000ey",
            "events[3].data.nested.list[1]",
            "events[3].data.note",
            "events[3].summary",
            "events[4].name",
            "events[5].data.x",
        ]
    );
    for detail in body["details"].as_array().unwrap() {
        let message = detail["message"].as_str().unwrap();
        assert!(message.contains("NUL character"), "{detail}");
    }
    assert_eq!(stored_events(&app, org.id).await, 0);

    // The same as NDJSON, one event per line.
    let ndjson: String = [
        session("n0", "t0"),
        initiated("n1", "g1", "t0", json!({"data": {"note": "x\u{0}"}})),
    ]
    .iter()
    .map(|e| format!("{e}\n"))
    .collect();
    assert!(ndjson.contains("\\u0000"));
    let res = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&token)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 400, "nothing was stored").await;
    assert_eq!(detail_fields(&body), ["events[1].data.note"]);
    assert_eq!(stored_events(&app, org.id).await, 0);

    // An escaped backslash followed by `u0000` is text, not a NUL: stored.
    app.post_events_ok(
        &token,
        &[
            session("e8", "s9"),
            initiated(
                "e9",
                "h9",
                "s9",
                json!({"summary": "C:\\u0000", "data": {"path": "\\u0000"}}),
            ),
        ],
    )
    .await;
    assert_eq!(stored_events(&app, org.id).await, 2);
}

#[tokio::test]
async fn nul_in_the_configuration_document_is_a_400_naming_each_path() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let url = app.url("/v1/api/human_handoff/configuration");
    let res = app.get("/v1/api/human_handoff/configuration", &token).await;
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let mut doc: Value = res.json().await.unwrap();
    doc["settings"]["keywords"] = json!(["agent", "hu\u{0}man"]);
    doc["settings"]["question_message"] = json!("\u{0}");
    let res = app
        .client
        .put(&url)
        .bearer_auth(&token)
        .json(&doc)
        .send()
        .await
        .unwrap();
    let body = assert_error(res, 400, "settings.keywords[1]").await;
    assert_eq!(
        detail_fields(&body),
        ["settings.keywords[1]", "settings.question_message"]
    );
    assert!(
        messages_of(&body, "settings.question_message")[0].contains("NUL character"),
        "{body}"
    );
    // Nothing changed.
    let res = app.get("/v1/api/human_handoff/configuration", &token).await;
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
}

#[tokio::test]
async fn query_dates_outside_years_0001_to_9999_are_a_400_naming_the_parameter() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let cases = [
        (
            "/v1/metrics?startDate=-5000-01-01&endDate=2026-01-01",
            "startDate",
        ),
        (
            "/v1/metrics?startDate=9999-12-01&endDate=9999-12-31T23:59:59-12:00",
            "endDate",
        ),
        (
            "/handoff-analytics?start_date=-5000-01-01&end_date=2026-01-01",
            "start_date",
        ),
        (
            "/handoff-analytics?start_date=2026-01-01&end_date=%2B20000-01-01",
            "end_date",
        ),
        // A date as an end means the next day's first instant: 10000-01-01.
        (
            "/handoff-analytics?start_date=9999-12-01&end_date=9999-12-31",
            "end_date",
        ),
        ("/handoff-analytics?end_date=0001-01-02", "end_date"),
        ("/v1/handoffs?start_date=-0001-01-01", "start_date"),
        ("/v1/handoffs?end_date=%2B12345-06-07", "end_date"),
        ("/v1/handoffs?start_date=0000-12-31T23:00:00Z", "start_date"),
    ];
    for (path, param) in cases {
        let body = assert_error(app.get(path, &token).await, 400, param).await;
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("0001"), "{path}: {message}");
    }
    // No connection was lost on the way: the same pool still answers.
    let res = app
        .get(
            "/v1/metrics?startDate=2026-01-01&endDate=2026-01-02",
            &token,
        )
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn query_dates_at_the_year_bounds_are_answered() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    for path in [
        "/v1/metrics?startDate=0001-01-01&endDate=0001-12-31",
        "/v1/metrics?startDate=9999-01-01&endDate=9999-12-31T23:59:59Z",
        "/handoff-analytics?start_date=0001-01-01&end_date=0001-12-31",
        "/handoff-analytics?start_date=9999-01-01&end_date=9999-12-31T23:59:59Z",
        "/v1/handoffs?start_date=0001-01-01&end_date=9999-12-31T23:59:59Z",
    ] {
        let res = app.get(path, &token).await;
        assert_eq!(res.status(), 200, "{path}: {}", res.text().await.unwrap());
    }
}

#[tokio::test]
async fn event_timestamps_outside_years_0001_to_9999_refuse_the_batch() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let batch = vec![
        session("e0", "s0"),
        // Year 9999 as written, 10000-01-01T11:59:59Z in UTC.
        ev(
            "e1",
            "session.started",
            "9999-12-31T23:59:59-12:00",
            json!({"session_id": "s1", "channel": "web"}),
        ),
        ev(
            "e2",
            "call.completed",
            AT,
            json!({"call_id": "c1", "agent_id": "a1", "started_at": "0001-01-01T00:00:00+00:01",
                   "duration_seconds": 5, "outcome": "resolved"}),
        ),
        ev(
            "e3",
            "session.started",
            "0000-06-01T00:00:00Z",
            json!({"session_id": "s3", "channel": "web"}),
        ),
    ];
    let body = assert_error(
        app.post_events(&token, &batch).await,
        400,
        "nothing was stored",
    )
    .await;
    assert_eq!(
        detail_fields(&body),
        [
            "events[1].occurred_at",
            "events[2].started_at",
            "events[3].occurred_at"
        ]
    );
    for field in ["events[1].occurred_at", "events[2].started_at"] {
        assert!(messages_of(&body, field)[0].contains("0001"), "{body}");
    }
    assert_eq!(stored_events(&app, org.id).await, 0);
}

/// Asserts `text` is RFC 3339 with a four-digit year, as Python and JavaScript parse it.
fn assert_rfc3339(text: &str) {
    let bytes = text.as_bytes();
    assert!(
        bytes.len() >= 20 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-',
        "not a four-digit year: {text}"
    );
    let t = DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert!((1..=9999).contains(&t.year()), "{text}");
}

#[tokio::test]
async fn events_at_the_year_bounds_are_stored_and_read_back_as_rfc3339() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let first = "0001-01-01T00:00:00Z";
    let last = "9999-12-31T23:59:59Z";
    app.post_events_ok(
        &token,
        &[
            ev(
                "e1",
                "session.started",
                first,
                json!({"session_id": "s1", "channel": "web", "agent_id": "bot"}),
            ),
            ev(
                "e2",
                "handoff.initiated",
                first,
                json!({"handoff_id": "h1", "session_id": "s1", "reasons": ["ai_implied_handoff"]}),
            ),
            ev("e3", "handoff.completed", last, json!({"handoff_id": "h1"})),
            ev("e4", "session.ended", last, json!({"session_id": "s1"})),
            ev(
                "e5",
                "call.completed",
                last,
                json!({"call_id": "c1", "agent_id": "bot", "started_at": first,
                       "duration_seconds": 60, "outcome": "resolved"}),
            ),
            ev(
                "e6",
                "call.completed",
                last,
                json!({"call_id": "c2", "agent_id": "bot", "started_at": "9999-12-31T23:58:59Z",
                       "duration_seconds": 60, "outcome": "transferred"}),
            ),
        ],
    )
    .await;
    assert_eq!(stored_events(&app, org.id).await, 6);

    let res = app.get("/v1/handoffs/h1", &token).await;
    assert_eq!(res.status(), 200);
    let detail: Value = res.json().await.unwrap();
    let h = &detail;
    assert_eq!(h["initiated_at"], first, "{detail}");
    assert_eq!(h["completed_at"], last, "{detail}");
    assert_eq!(h["session"]["started_at"], first, "{detail}");
    assert_eq!(h["session"]["ended_at"], last, "{detail}");
    let history: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["occurred_at"].as_str().unwrap())
        .collect();
    assert_eq!(history, [first, last]);
    for field in [
        "initiated_at",
        "last_initiated_at",
        "completed_at",
        "updated_at",
    ] {
        assert_rfc3339(h[field].as_str().unwrap());
    }

    let res = app
        .get(
            "/v1/handoffs?start_date=0001-01-01&end_date=9999-12-31T23:59:59Z",
            &token,
        )
        .await;
    let list: Value = res.json().await.unwrap();
    assert_eq!(list["handoffs"][0]["initiated_at"], first, "{list}");

    let res = app
        .get(
            "/handoff-analytics?start_date=0001-01-01&end_date=0001-01-31&timezone=UTC",
            &token,
        )
        .await;
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["total_handoffs"], 1, "{report}");
    assert_eq!(report["start_date"], first, "{report}");
    assert_rfc3339(report["end_date"].as_str().unwrap());
    assert_eq!(report["trends"][0]["date"], "0001-01-01", "{report}");

    for (range, calls) in [
        ("startDate=0001-01-01&endDate=0001-01-01", 1),
        ("startDate=9999-12-31&endDate=9999-12-31T23:59:59Z", 1),
    ] {
        let res = app.get(&format!("/v1/metrics?{range}"), &token).await;
        let metrics: Value = res.json().await.unwrap();
        assert_eq!(
            metrics["data"]["metrics"]["totalCalls"], calls,
            "{range}: {metrics}"
        );
    }
}

#[tokio::test]
async fn unknown_query_parameters_are_refused_on_every_endpoint() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let gets = [
        "/v1/me?bogus=1",
        "/v1/metrics?startDate=2026-11-01&endDate=2026-11-02&bogus=1",
        "/v1/metrics?startDate=2026-11-01&endDate=2026-11-02&start_date=2026-11-01",
        "/v1/acme/bot/handoff_state?id=h1&bogus=1",
        "/v1/api/human_handoff/configuration?bogus=1",
        "/v1/api/human_handoff/configuration/revisions?bogus=1",
        "/handoff-analytics?bogus=1",
        "/v1/handoffs?bogus=1",
        "/v1/handoffs/h1?bogus=1",
    ];
    for path in gets {
        let param = if path.contains("start_date=2026") {
            "start_date"
        } else {
            "bogus"
        };
        let body = assert_error(app.get(path, &token).await, 400, param).await;
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "invalid query string: {param}: unknown field `{param}`"
            )),
            "{path}: {message}"
        );
    }

    // POST /v1/events: an organization_id the endpoint does not honour is refused, not ignored,
    // and nothing is stored.
    let res = app
        .client
        .post(app.url("/v1/events?organization_id=beta"))
        .bearer_auth(&token)
        .json(&json!({"events": [session("e1", "s1")]}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "unknown field `organization_id`").await;
    assert_eq!(stored_events(&app, org.id).await, 0);

    // PUT configuration: refused, and the document is unchanged.
    let res = app.get("/v1/api/human_handoff/configuration", &token).await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let doc: Value = res.json().await.unwrap();
    let res = app
        .client
        .put(app.url("/v1/api/human_handoff/configuration?organization_id=x"))
        .bearer_auth(&token)
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "unknown field `organization_id`").await;
    let res = app.get("/v1/api/human_handoff/configuration", &token).await;
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);

    // Probes and the API description take no parameters and ignore any (load balancers and
    // monitors add their own).
    for path in ["/healthz?probe=1", "/readyz?probe=1", "/openapi.json?v=2"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn call_figures_too_large_to_sum_are_a_400() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let call = |id: &str, fields: Value| {
        let mut f = json!({"call_id": id, "agent_id": "bot", "started_at": AT,
                           "duration_seconds": 1, "outcome": "transferred"});
        for (k, v) in fields.as_object().unwrap() {
            f[k] = v.clone();
        }
        ev(id, "call.completed", AT, f)
    };
    // Two near f64::MAX used to overflow the rollups' sums: a 500 on the second batch.
    let huge = [
        ("duration_seconds", json!({"duration_seconds": 1e308})),
        (
            "escalated_after_seconds",
            json!({"escalated_after_seconds": 1e308}),
        ),
        (
            "telemetry.ttft_ms",
            json!({"telemetry": {"ttft_ms": 1e308}}),
        ),
        (
            "telemetry.tool_calls",
            json!({"telemetry": {"tool_calls": i64::MAX}}),
        ),
        (
            "telemetry.total_tokens",
            json!({"telemetry": {"total_tokens": i64::MAX}}),
        ),
    ];
    for (i, (field, fields)) in huge.into_iter().enumerate() {
        let body = assert_error(
            app.post_events(&token, &[call(&format!("h{i}"), fields)])
                .await,
            400,
            "nothing was stored",
        )
        .await;
        assert_eq!(detail_fields(&body), [format!("events[0].{field}")]);
    }
    assert_eq!(stored_events(&app, org.id).await, 0);
    // The largest accepted figures, twice, sum and read back as numbers.
    let largest = json!({"duration_seconds": 31_622_400, "escalated_after_seconds": 31_622_400,
                         "telemetry": {"ttft_ms": 86_400_000, "tool_calls": 2_147_483_647}});
    app.post_events_ok(&token, &[call("c1", largest.clone()), call("c2", largest)])
        .await;
    let res = app
        .get(
            "/v1/metrics?startDate=2026-11-01&endDate=2026-11-30",
            &token,
        )
        .await;
    let metrics: Value = res.json().await.unwrap();
    let m = &metrics["data"]["metrics"];
    assert_eq!(m["totalCalls"], 2, "{metrics}");
    // 2 × 31,622,400 s = 1,054,080 minutes.
    assert_eq!(m["totalMinutes"].as_f64(), Some(1_054_080.0), "{metrics}");
}

/// The safety net behind every check above: a value PostgreSQL refuses as data (SQLSTATE class
/// 22) is the client's input, a 400, never a 500 that a client would retry forever.
#[tokio::test]
async fn a_data_exception_from_postgresql_is_a_400() {
    let (pool, _) = crate::common::fresh_database().await;
    for sql in [
        "select 'not a number'::int",
        "select '294277-01-01'::timestamptz",
        "select convert_from('\\x00'::bytea, 'UTF8')",
    ] {
        let e = sqlx::query(sql).execute(&pool).await.unwrap_err();
        let api: baton::http::error::ApiError = e.into();
        assert_eq!(api.status(), 400, "{sql}");
    }
}

/// A JSON body that is not an object (an array of the fields in order, which serde would read
/// into a struct) is a 400 on every JSON body, and changes nothing.
#[tokio::test]
async fn json_bodies_must_be_objects() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let created = app
        .client
        .post(app.url("/v1/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"url": "https://93.184.215.14/hook", "event_types": ["handoff.completed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let webhook: Value = created.json().await.unwrap();
    let hook = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    // (An array serde cannot read as the struct is refused by serde's own message first.)
    for (method, path, body, needle) in [
        (
            reqwest::Method::PATCH,
            hook.as_str(),
            "[null, null]",
            "must be a JSON object",
        ),
        (
            reqwest::Method::PATCH,
            hook.as_str(),
            " [\"https://93.184.215.14/other\"]",
            "must be a JSON object",
        ),
        (
            reqwest::Method::POST,
            "/v1/webhooks",
            "[\"https://93.184.215.14/hook\", [\"handoff.completed\"]]",
            "must be a JSON object",
        ),
        (
            reqwest::Method::PUT,
            "/v1/api/human_handoff/configuration",
            "[]",
            "invalid request body",
        ),
    ] {
        let res = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("if-match", "*")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(res, 400, needle).await;
    }
    let after: Value = app.get(&hook, &token).await.json().await.unwrap();
    assert_eq!(after["url"], webhook["url"]);
    assert_eq!(after["updated_at"], webhook["updated_at"]);
}

/// Whether a parameter schema of the document admits the empty string (formats checked, its
/// references resolved in the document's components).
fn admits_empty(doc: &Value, schema: &Value) -> bool {
    let mut schema = schema.clone();
    schema["components"] = doc["components"].clone();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
        .is_valid(&json!(""))
}

/// A query parameter sent empty (`?name=`) is either refused or documented as admitting the
/// empty string: a server that takes it as "absent" while `/openapi.json` types it as an enum,
/// a date or a UUID tells a schema-driven client that the request is invalid when it is not.
#[tokio::test]
async fn an_empty_query_parameter_is_answered_only_where_the_document_admits_it() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, Some("UTC")).await;
    let token = app.writer(&org).await;
    let doc = serde_json::to_value(baton::http::openapi()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else { continue };
        if path.contains('{') {
            continue;
        }
        for param in op["parameters"].as_array().unwrap() {
            if param["in"] != "query" {
                continue;
            }
            let name = param["name"].as_str().unwrap();
            let res = app.get(&format!("{path}?{name}="), &token).await;
            let status = res.status().as_u16();
            assert!(status < 500, "{path}?{name}=: {status}");
            if status == 200 {
                assert!(
                    admits_empty(&doc, &param["schema"]),
                    "{path}?{name}= is answered 200 but its schema does not admit \"\": {}",
                    param["schema"]
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} parameters checked");
}
