//! OpenCX `GET /handoff-analytics/events`: every answer validated against the vendor's list
//! schema, cursor pages that neither skip nor repeat while handoffs arrive, the reason filter,
//! the vendor's defaults, totals equal to the analytics, auth and tenancy.

use std::collections::HashSet;

use baton::auth::{Scope, Subject};
use chrono::{Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::common::{TestApp, assert_error};

const PATH: &str = "/handoff-analytics/events";

/// OpenCX's documented answer: `items` (each `{session_id, summary, explanation, reasons,
/// created_at}`, all strings but `reasons`, an array of reasons), `next` (string or null),
/// `total` (number); all required.
fn contract() -> Value {
    json!({
        "type": "object",
        "required": ["items", "next", "total"],
        "additionalProperties": false,
        "properties": {
            "items": {"type": "array", "items": {
                "type": "object",
                "required": ["session_id", "summary", "explanation", "reasons", "created_at"],
                "additionalProperties": false,
                "properties": {
                    "session_id": {"type": "string"},
                    "summary": {"type": "string"},
                    "explanation": {"type": "string"},
                    "reasons": {"type": "array", "items": {"enum": [
                        "ai_implied_handoff", "based_on_instructions", "instructions_not_clear",
                        "insufficient_knowledge", "insufficient_tools", "prohibited_topic",
                        "user_requested_human_assistance"]}},
                    "created_at": {"type": "string", "format": "date-time"}
                }
            }},
            "next": {"type": ["string", "null"]},
            "total": {"type": "number"}
        }
    })
}

/// GET that must answer 200 with a body valid against the contract.
pub async fn events_page(app: &TestApp, token: &str, query: &str) -> Value {
    let res = app.get(&format!("{PATH}?{query}"), token).await;
    assert_eq!(res.status(), 200, "{query}");
    let body: Value = res.json().await.unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&contract())
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?} in {body}");
    body
}

/// Every page from `query`, following `next`; the items and the totals seen.
pub async fn all_pages(app: &TestApp, token: &str, query: &str) -> (Vec<Value>, Vec<i64>) {
    let (mut items, mut totals) = (Vec::new(), Vec::new());
    let mut page = events_page(app, token, query).await;
    loop {
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        totals.push(page["total"].as_i64().unwrap());
        match page["next"].as_str() {
            Some(c) => page = events_page(app, token, &format!("cursor={c}&limit=7")).await,
            None => break,
        }
    }
    (items, totals)
}

fn handoff(i: usize, at: &str, reasons: &[&str], summary: Option<&str>) -> Vec<Value> {
    let mut h = json!({"id": format!("i{i}"), "type": "handoff.initiated", "occurred_at": at,
                       "handoff_id": format!("h{i}"), "session_id": format!("s{i}"), "reasons": reasons});
    if let Some(s) = summary {
        h["summary"] = json!(s);
    }
    vec![
        json!({"id": format!("s{i}"), "type": "session.started", "occurred_at": at,
               "session_id": format!("s{i}"), "channel": "web"}),
        h,
    ]
}

#[tokio::test]
async fn pages_neither_skip_nor_repeat_while_handoffs_arrive() {
    let app = TestApp::spawn().await;
    let org = app.org("o", None, None).await;
    let token = app.writer(&org).await;
    let mut events = Vec::new();
    // 30 handoffs on 2030-05-01, several at the same instant (ties broken by id).
    for i in 0..30 {
        let at = format!("2030-05-01T10:{:02}:00Z", i / 3);
        events.extend(handoff(
            i,
            &at,
            &["insufficient_knowledge"],
            Some("Needs a refund"),
        ));
    }
    app.post_events_ok(&token, &events).await;
    let q = "start_date=2030-05-01&end_date=2030-05-02&limit=7";
    let mut page = events_page(&app, &token, q).await;
    let mut seen = Vec::new();
    let mut arrivals = 100;
    loop {
        // The total counts the range as it is now, arrivals included.
        assert_eq!(page["total"], 30 + (arrivals - 100) / 2);
        for item in page["items"].as_array().unwrap() {
            seen.push(item["session_id"].as_str().unwrap().to_owned());
        }
        // Newer handoffs arrive between pages (and one after the range).
        let newer = format!("2030-05-01T23:{:02}:00Z", arrivals - 100);
        let mut more = handoff(arrivals, &newer, &["prohibited_topic"], None);
        more.extend(handoff(
            arrivals + 1,
            "2030-05-03T01:00:00Z",
            &["prohibited_topic"],
            None,
        ));
        app.post_events_ok(&token, &more).await;
        arrivals += 2;
        match page["next"].as_str() {
            Some(c) => page = events_page(&app, &token, &format!("cursor={c}&limit=7")).await,
            None => break,
        }
    }
    // Newest first: by time, then by handoff id, both descending.
    let mut expected: Vec<(String, String)> = (0..30)
        .map(|i| (format!("10:{:02}", i / 3), format!("h{i}")))
        .collect();
    expected.sort();
    expected.reverse();
    let expected: Vec<String> = expected
        .into_iter()
        .map(|(_, h)| h.replacen('h', "s", 1))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 30);
    // A fresh walk now sees the arrivals inside the range.
    let fresh = events_page(&app, &token, "start_date=2030-05-01&end_date=2030-05-02").await;
    assert_eq!(fresh["total"], 30 + (arrivals - 100) / 2);
}

#[tokio::test]
async fn items_reasons_summaries_and_totals_agree_with_the_analytics() {
    let app = TestApp::spawn().await;
    let org = app.org("o", None, None).await;
    let token = app.writer(&org).await;
    let mut events = handoff(
        1,
        "2030-05-01T10:00:00Z",
        &["prohibited_topic"],
        Some("Legal question"),
    );
    events.extend(handoff(
        2,
        "2030-05-01T11:00:00.5Z",
        &["ai_implied_handoff", "insufficient_tools"],
        None,
    ));
    events.extend(handoff(
        3,
        "2030-05-03T00:00:00Z",
        &["ai_implied_handoff"],
        None,
    ));
    // h2 fails and is retried with another reason: still one item, with both attempts' reasons.
    events.push(json!({"id": "f2", "type": "handoff.failed", "occurred_at": "2030-05-01T11:05:00Z", "handoff_id": "h2"}));
    events.push(json!({"id": "r2", "type": "handoff.initiated", "occurred_at": "2030-05-01T11:06:00Z",
                       "handoff_id": "h2", "session_id": "s2", "reasons": ["user_requested_human_assistance"],
                       "summary": "Second try", "explanation": "The customer asked twice"}));
    app.post_events_ok(&token, &events).await;
    let q = "start_date=2030-05-01&end_date=2030-05-02";
    let body = events_page(&app, &token, q).await;
    assert_eq!(
        body,
        json!({"items": [
            {"session_id": "s2", "summary": "Second try", "explanation": "The customer asked twice",
             "reasons": ["ai_implied_handoff", "insufficient_tools", "user_requested_human_assistance"],
             "created_at": "2030-05-01T11:00:00.500Z"},
            {"session_id": "s1", "summary": "Legal question", "explanation": "",
             "reasons": ["prohibited_topic"], "created_at": "2030-05-01T10:00:00Z"}
        ], "next": null, "total": 2})
    );
    let analytics: Value = app
        .get(&format!("/handoff-analytics?{q}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(analytics["total_handoffs"], 2);
    // Every reason is accepted, ai_implied_handoff included; the total is that reason's count.
    let only = events_page(&app, &token, &format!("{q}&reason=ai_implied_handoff")).await;
    assert_eq!(only["total"], 1);
    assert_eq!(only["items"][0]["session_id"], "s2");
    let none = events_page(&app, &token, &format!("{q}&reason=based_on_instructions")).await;
    assert_eq!(none, json!({"items": [], "next": null, "total": 0}));
    // A zone for dates without offsets: 2030-05-03 in Kolkata starts at 18:30Z on the 2nd.
    let kolkata = events_page(
        &app,
        &token,
        "start_date=2030-05-02&end_date=2030-05-02&timezone=Asia/Kolkata",
    )
    .await;
    assert_eq!(kolkata["total"], 0);
    let kolkata = events_page(
        &app,
        &token,
        "start_date=2030-05-03&end_date=2030-05-03&timezone=Asia/Kolkata",
    )
    .await;
    assert_eq!(kolkata["total"], 1);
    // Pages of one with a reason: the cursor keeps the reason and the range.
    let (items, totals) = all_pages(
        &app,
        &token,
        "start_date=2030-05-01&end_date=2030-05-04&reason=ai_implied_handoff&limit=1",
    )
    .await;
    assert_eq!(items.len(), 2);
    assert_eq!(totals, [2, 2]);
}

#[tokio::test]
async fn defaults_are_the_last_30_days() {
    let app = TestApp::spawn().await;
    let org = app.org("o", None, None).await;
    let token = app.writer(&org).await;
    let at =
        |days: i64| (Utc::now() - Duration::days(days)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut events = handoff(1, &at(31), &["prohibited_topic"], None);
    events.extend(handoff(2, &at(29), &["prohibited_topic"], None));
    events.extend(handoff(3, &at(0), &["prohibited_topic"], None));
    app.post_events_ok(&token, &events).await;
    let body = events_page(&app, &token, "").await;
    assert_eq!(body["total"], 2);
    let ids: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s3", "s2"]);
}

#[tokio::test]
async fn bad_input_auth_and_tenancy() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("res").await;
    let org = app.org("acme", Some("res"), None).await;
    let stranger = app.org("stranger", None, None).await;
    let token = app.writer(&org).await;
    let stranger_token = app.writer(&stranger).await;
    let mut events = Vec::new();
    for i in 0..3 {
        events.extend(handoff(
            i,
            &format!("2030-05-01T10:0{i}:00Z"),
            &["prohibited_topic"],
            None,
        ));
    }
    app.post_events_ok(&stranger_token, &events).await;
    app.post_events_ok(&token, &events[..2]).await;
    let q = "start_date=2030-05-01&end_date=2030-05-02";
    for (query, needle) in [
        ("reason=angry", "reason"),
        ("start_date=soon", "start_date"),
        ("cursor=c1.00.0000000000000000", "cursor"),
        ("limit=0", "limit"),
        ("page=2", "page"),
        ("timezone=Nowhere", "timezone"),
    ] {
        assert_error(
            app.get(&format!("{PATH}?{query}"), &token).await,
            400,
            needle,
        )
        .await;
    }
    // Another organization's cursor is not one of ours.
    let theirs = events_page(&app, &stranger_token, &format!("{q}&limit=1")).await;
    let cursor = theirs["next"].as_str().unwrap();
    assert_error(
        app.get(&format!("{PATH}?cursor={cursor}"), &token).await,
        400,
        "cursor",
    )
    .await;
    let res = app.client.get(app.url(PATH)).send().await.unwrap();
    assert_error(res, 401, "missing token").await;
    assert_error(app.get(PATH, "not-a-token").await, 401, "").await;
    assert_eq!(events_page(&app, &token, q).await["total"], 1);
    assert_error(
        app.get(&format!("{PATH}?organization_id={}", stranger.id), &token)
            .await,
        404,
        "not found",
    )
    .await;
    let res_token = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    assert_error(app.get(PATH, &res_token).await, 400, "organization_id").await;
    assert_eq!(
        events_page(&app, &res_token, &format!("{q}&organization_id={}", org.id)).await["total"],
        1
    );
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
}
