//! `GET /v1/exports/{handoffs,calls,events}`: CSV read back by a CSV parser, NDJSON, gzip, the
//! list filters, the events export re-posted into an empty organization reproducing every
//! answer, auth and tenancy.

use std::io::Read;

use baton::auth::{Scope, Subject};
use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::common::{TestApp, assert_error};
use crate::handoff_events::all_pages;
use crate::lifecycle::{configuration, put_configuration};

async fn export(app: &TestApp, token: &str, path: &str) -> (reqwest::header::HeaderMap, String) {
    let res = app.get(path, token).await;
    assert_eq!(res.status(), 200, "{path}");
    let headers = res.headers().clone();
    (headers, res.text().await.unwrap())
}

/// CSV records (header first), parsed by the `csv` crate.
pub fn csv_records(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

fn fixture() -> Vec<Value> {
    vec![
        json!({"id": "s1", "type": "session.started", "occurred_at": "2030-03-04T08:00:00Z",
               "session_id": "s1", "channel": "whatsapp", "agent_id": "bot-1"}),
        json!({"id": "s2", "type": "session.started", "occurred_at": "2030-03-04T09:00:00Z",
               "session_id": "s2", "channel": "sms"}),
        // Monday 08:59 UTC: outside the 09:00-17:00 working hours stored below.
        json!({"id": "i1", "type": "handoff.initiated", "occurred_at": "2030-03-04T08:59:00Z",
               "handoff_id": "h1", "session_id": "s1", "reasons": ["prohibited_topic", "insufficient_tools"],
               "summary": "Asked about \"legal\" things,\nthen left", "explanation": "Policy, says the profile",
               "destination": "legal", "sentiment": "negative"}),
        json!({"id": "c1", "type": "handoff.completed", "occurred_at": "2030-03-04T09:01:30.5Z",
               "handoff_id": "h1", "operator_id": "op-7"}),
        json!({"id": "i2", "type": "handoff.initiated", "occurred_at": "2030-03-04T09:30:00Z",
               "handoff_id": "h2", "session_id": "s2", "reasons": ["insufficient_knowledge"]}),
        json!({"id": "a2", "type": "handoff.abandoned", "occurred_at": "2030-03-04T09:40:00Z",
               "handoff_id": "h2"}),
        json!({"id": "k1", "type": "call.completed", "occurred_at": "2030-03-04T10:00:00Z",
               "call_id": "call-1", "agent_id": "bot-1", "started_at": "2030-03-04T09:55:00Z",
               "duration_seconds": 300.5, "outcome": "transferred", "sentiment": "neutral",
               "escalation_reason": "billing, refunds", "escalated_after_seconds": 120}),
    ]
}

#[tokio::test]
async fn handoffs_as_csv_and_ndjson_with_filters() {
    let app = TestApp::spawn().await;
    let org = app.org("o", None, None).await;
    let token = app.writer(&org).await;
    put_configuration(
        &app,
        &token,
        &configuration(
            "UTC",
            json!([{"day_span": "monday-friday", "start_time": "09:00", "end_time": "17:00"}]),
        ),
    )
    .await;
    app.post_events_ok(&token, &fixture()).await;

    let (headers, text) = export(&app, &token, "/v1/exports/handoffs?format=csv").await;
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"handoffs.csv\""
    );
    assert!(text.ends_with("\r\n"));
    let rows = csv_records(&text);
    assert_eq!(
        rows[0],
        [
            "handoff_id",
            "session_id",
            "shared_id",
            "channel",
            "agent_id",
            "reasons",
            "sentiment",
            "state",
            "status",
            "attempts",
            "initiated_at",
            "completed_at",
            "wait_seconds",
            "destination",
            "operator_id",
            "outside_working_hours",
            "summary",
            "explanation"
        ]
    );
    assert_eq!(rows.len(), 3);
    // Newest first: h2, then h1.
    assert_eq!(
        rows[1],
        [
            "h2",
            "s2",
            "",
            "sms",
            "",
            "insufficient_knowledge",
            "",
            "handoff_abandoned",
            "abandoned",
            "1",
            "2030-03-04T09:30:00Z",
            "",
            "",
            "",
            "",
            "false",
            "",
            ""
        ]
    );
    assert_eq!(
        rows[2],
        [
            "h1",
            "s1",
            "",
            "whatsapp",
            "bot-1",
            "prohibited_topic;insufficient_tools",
            "negative",
            "handoff_completed",
            "completed",
            "1",
            "2030-03-04T08:59:00Z",
            "2030-03-04T09:01:30.500Z",
            "150.5",
            "legal",
            "op-7",
            "true",
            "Asked about \"legal\" things,\nthen left",
            "Policy, says the profile"
        ]
    );

    let (headers, text) = export(
        &app,
        &token,
        "/v1/exports/handoffs?format=ndjson&status=completed",
    )
    .await;
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["reasons"],
        json!(["prohibited_topic", "insufficient_tools"])
    );
    assert_eq!(lines[0]["wait_seconds"], 150.5);
    assert_eq!(lines[0]["outside_working_hours"], true);
    assert_eq!(lines[0]["shared_id"], Value::Null);

    for (query, n) in [
        ("reason=insufficient_knowledge", 1),
        ("state=handoff_abandoned", 1),
        ("session_id=s1", 1),
        ("start_date=2030-03-04T09:00:00Z", 1),
        ("end_date=2030-03-04T09:00:00Z", 1),
        ("start_date=2030-03-05", 0),
        ("status=open", 0),
    ] {
        let (_, text) = export(&app, &token, &format!("/v1/exports/handoffs?{query}")).await;
        assert_eq!(csv_records(&text).len(), n + 1, "{query}");
    }

    let (_, text) = export(&app, &token, "/v1/exports/calls").await;
    let rows = csv_records(&text);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        &rows[1][..8],
        [
            "call-1",
            "bot-1",
            "2030-03-04T09:55:00Z",
            "300.5",
            "transferred",
            "neutral",
            "billing, refunds",
            "120"
        ]
    );
    let (_, text) = export(
        &app,
        &token,
        "/v1/exports/calls?agent_id=other&format=ndjson",
    )
    .await;
    assert_eq!(text, "");

    let (_, text) = export(&app, &token, "/v1/exports/events?format=csv").await;
    let rows = csv_records(&text);
    assert_eq!(rows.len(), fixture().len() + 1);
    assert_eq!(rows[0], ["id", "type", "occurred_at", "event"]);
    let first: Value = serde_json::from_str(&rows[1][3]).unwrap();
    assert_eq!(first, fixture()[0]);
}

#[tokio::test]
async fn gzip_when_asked() {
    let app = TestApp::spawn().await;
    let org = app.org("o", None, None).await;
    let token = app.writer(&org).await;
    app.post_events_ok(&token, &fixture()).await;
    let plain = export(&app, &token, "/v1/exports/events").await.1;
    let res = app
        .client
        .get(app.url("/v1/exports/events"))
        .bearer_auth(&token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let bytes = res.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, plain);
}

/// Every answer of an organization that events determine, for the demo's range.
async fn answers(app: &TestApp, token: &str) -> Vec<String> {
    let start = (Utc::now() - Duration::days(100)).format("%Y-%m-%d");
    let end = (Utc::now() + Duration::days(1)).format("%Y-%m-%d");
    let mut out = Vec::new();
    for path in [
        format!("/handoff-analytics?start_date={start}&end_date={end}"),
        format!("/handoff-analytics?start_date={start}&end_date={end}&timezone=Asia/Kolkata"),
        format!(
            "/v1/handoff-lifecycle?start_date={start}&end_date={end}&group_by=reason&compare=previous_period"
        ),
        format!(
            "/v1/handoff-lifecycle?start_date={start}&end_date={end}&group_by=agent&timezone=America/New_York"
        ),
        format!("/v1/metrics?startDate={start}&endDate={end}"),
        "/v1/exports/handoffs".to_owned(),
        "/v1/exports/calls".to_owned(),
        "/v1/handoffs?limit=500".to_owned(),
    ] {
        let res = app.get(&path, token).await;
        assert_eq!(res.status(), 200, "{path}");
        out.push(format!("{path}: {}", res.text().await.unwrap()));
    }
    let (items, totals) = all_pages(
        app,
        token,
        &format!("start_date={start}&end_date={end}&limit=500"),
    )
    .await;
    out.push(format!("events: {items:?} {totals:?}"));
    out
}

#[tokio::test]
async fn an_events_export_reposted_into_an_empty_organization_reproduces_every_answer() {
    let app = TestApp::spawn().await;
    let source = app.org("source", None, None).await;
    let copy = app.org("copy", None, None).await;
    let (source_token, copy_token) = (app.writer(&source).await, app.writer(&copy).await);
    let events = baton::demo::generate(Utc::now() - Duration::hours(1), chrono_tz::UTC);
    for chunk in events.chunks(2_000) {
        app.post_events_ok(&source_token, chunk).await;
    }
    let (_, ndjson) = export(&app, &source_token, "/v1/exports/events").await;
    let lines: Vec<&str> = ndjson.lines().collect();
    assert_eq!(lines.len(), events.len());
    for batch in lines.chunks(10_000) {
        let res = app
            .client
            .post(app.url("/v1/events"))
            .bearer_auth(&copy_token)
            .header("content-type", "application/x-ndjson")
            .body(batch.join("\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
    assert_eq!(
        answers(&app, &source_token).await,
        answers(&app, &copy_token).await
    );
    // And the copy's own export is the same file.
    assert_eq!(
        export(&app, &copy_token, "/v1/exports/events").await.1,
        ndjson
    );
}

#[tokio::test]
async fn bad_input_auth_and_tenancy() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("res").await;
    let org = app.org("acme", Some("res"), None).await;
    let stranger = app.org("stranger", None, None).await;
    let token = app.writer(&org).await;
    let stranger_token = app.writer(&stranger).await;
    app.post_events_ok(&stranger_token, &fixture()).await;
    for kind in ["handoffs", "calls", "events"] {
        let path = format!("/v1/exports/{kind}");
        let res = app.client.get(app.url(&path)).send().await.unwrap();
        assert_error(res, 401, "missing token").await;
        assert_error(app.get(&path, "not-a-token").await, 401, "").await;
        assert_error(
            app.get(&format!("{path}?format=xlsx"), &token).await,
            400,
            "format",
        )
        .await;
        assert_error(
            app.get(&format!("{path}?limit=5"), &token).await,
            400,
            "limit",
        )
        .await;
        assert_error(
            app.get(&format!("{path}?start_date=soon"), &token).await,
            400,
            "start_date",
        )
        .await;
        assert_error(
            app.get(&format!("{path}?timezone=Nowhere"), &token).await,
            400,
            "timezone",
        )
        .await;
        // Another tenant's data never shows, and naming it is a 404.
        let (_, text) = export(&app, &token, &format!("{path}?format=ndjson")).await;
        assert_eq!(text, "", "{kind}");
        assert_error(
            app.get(&format!("{path}?organization_id={}", stranger.id), &token)
                .await,
            404,
            "not found",
        )
        .await;
        let res_token = app
            .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
            .await;
        assert_error(app.get(&path, &res_token).await, 400, "organization_id").await;
        assert_error(
            app.get(
                &format!("{path}?organization_id={}", stranger.id),
                &res_token,
            )
            .await,
            404,
            "not found",
        )
        .await;
        let (_, text) = export(
            &app,
            &res_token,
            &format!("{path}?organization_id={}&format=ndjson", org.id),
        )
        .await;
        assert_eq!(text, "");
    }
    assert_error(
        app.get("/v1/exports/handoffs?status=lost", &token).await,
        400,
        "status",
    )
    .await;
    assert_error(
        app.get("/v1/exports/handoffs?reason=angry", &token).await,
        400,
        "reason",
    )
    .await;
    assert_error(
        app.get("/v1/exports/handoffs?session_id=%00", &token).await,
        400,
        "",
    )
    .await;
    // A reseller exports one of its organizations.
    let other = app.org("sibling", Some("res"), None).await;
    app.post_events_ok(&app.writer(&other).await, &fixture())
        .await;
    let res_token = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    let (_, text) = export(
        &app,
        &res_token,
        &format!("/v1/exports/handoffs?organization_id={}", other.id),
    )
    .await;
    assert_eq!(csv_records(&text).len(), 3);
}
