//! PolyAI's `GET /v1/{account_id}/{project_id}/handoff_state`, and `GET /v1/handoffs[/{id}]`:
//! lookups and their precedence, tenancy (the same 404 whatever did not match), the retry path
//! and custom states with their history, filters, and keyset pages that neither skip nor repeat
//! a handoff while new ones arrive.

use baton::auth::{Scope, Subject};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::common::{TestApp, assert_error};

const BASE: &str = "2026-11-02T09:00:00Z";

/// `BASE` plus `seconds`, as RFC 3339.
fn at(seconds: i64) -> String {
    let base = DateTime::parse_from_rfc3339(BASE)
        .unwrap()
        .with_timezone(&Utc);
    (base + Duration::seconds(seconds)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An event of `kind` at `occurred_at` with `fields`.
fn ev(id: &str, kind: &str, occurred_at: &str, fields: Value) -> Value {
    let mut e = json!({"id": id, "type": kind, "occurred_at": occurred_at});
    for (k, v) in fields.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

fn session(session: &str, agent: Option<&str>, when: &str) -> Value {
    ev(
        &format!("start-{session}"),
        "session.started",
        when,
        json!({"session_id": session, "channel": "web", "agent_id": agent}),
    )
}

/// `handoff.initiated` of `handoff` in `session` at `when`, with extra `fields`.
fn initiated(id: &str, handoff: &str, session: &str, when: &str, fields: Value) -> Value {
    let mut e = ev(
        id,
        "handoff.initiated",
        when,
        json!({"handoff_id": handoff, "session_id": session, "reasons": ["ai_implied_handoff"]}),
    );
    for (k, v) in fields.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

/// GET with the token as `x-api-key`, as PolyAI clients send it.
async fn get_key(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("x-api-key", token)
        .send()
        .await
        .unwrap()
}

async fn json_ok(res: reqwest::Response) -> Value {
    let url = res.url().to_string();
    assert_eq!(res.status(), 200, "{url}");
    res.json().await.unwrap()
}

/// acme (agent `support-bot` on s1, no agent on s2): h1 (shared acme-1) and h2 in s1, h3
/// (shared acme-3) in s2.
async fn acme_fixture(app: &TestApp, token: &str) {
    app.post_events_ok(
        token,
        &[
            session("s1", Some("support-bot"), &at(0)),
            session("s2", None, &at(0)),
            initiated(
                "e1",
                "h1",
                "s1",
                &at(60),
                json!({"shared_id": "acme-1", "data": {"customer_id": "12345"}}),
            ),
            initiated("e2", "h2", "s1", &at(300), json!({"data": {"x": 1}})),
            initiated("e3", "h3", "s2", &at(120), json!({"shared_id": "acme-3"})),
        ],
    )
    .await;
}

#[tokio::test]
async fn handoff_state_by_id_and_shared_id_with_shared_id_winning() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    acme_fixture(&app, &token).await;
    let reader = app.reader(&org).await;
    let state = |query: &str| {
        let path = format!("/v1/acme/support-bot/handoff_state?{query}");
        let reader = reader.clone();
        let app = &app;
        async move { get_key(app, &path, &reader).await }
    };

    let h1 = json!({"id": "h1", "shared_id": "acme-1", "data": {"customer_id": "12345"}});
    assert_eq!(json_ok(state("id=h1").await).await, h1);
    assert_eq!(json_ok(state("shared_id=acme-1").await).await, h1);
    // No shared id: the key is absent, not null.
    let h2 = json_ok(state("id=h2").await).await;
    assert_eq!(h2, json!({"id": "h2", "data": {"x": 1}}));
    assert!(h2.get("shared_id").is_none());
    // Both given: shared_id wins, and there is no fallback to id.
    assert_eq!(json_ok(state("id=h2&shared_id=acme-1").await).await, h1);
    assert_error(
        state("id=h1&shared_id=nope").await,
        404,
        "handoff not found",
    )
    .await;
    // An empty value counts as absent.
    assert_eq!(json_ok(state("id=&shared_id=acme-1").await).await, h1);
    assert_eq!(json_ok(state("id=h1&shared_id=").await).await, h1);
    // Neither: 400.
    assert_error(state("").await, 400, "id or shared_id").await;
    assert_error(state("id=&shared_id=").await, 400, "id or shared_id").await;
    // Another parameter is refused by name, not ignored.
    assert_error(state("other=1").await, 400, "unknown field `other`").await;
    // A conversation (session) id answers with its newest handoff.
    assert_eq!(
        json_ok(state("id=s1").await).await,
        json!({"id": "h2", "data": {"x": 1}})
    );

    // The `default` project holds the sessions without an agent; h3 has no data: `{}`.
    let h3 = json!({"id": "h3", "shared_id": "acme-3", "data": {}});
    let res = get_key(
        &app,
        "/v1/acme/default/handoff_state?shared_id=acme-3",
        &reader,
    )
    .await;
    assert_eq!(json_ok(res).await, h3);
    let res = get_key(&app, "/v1/acme/default/handoff_state?id=s2", &reader).await;
    assert_eq!(json_ok(res).await, h3);
    // A handoff id wins over a session id: a handoff named `s2` (in s1, project support-bot).
    app.post_events_ok(
        &token,
        &[initiated(
            "e4",
            "s2",
            "s1",
            &at(30),
            json!({"data": {"y": 2}}),
        )],
    )
    .await;
    let res = get_key(&app, "/v1/acme/support-bot/handoff_state?id=s2", &reader).await;
    assert_eq!(json_ok(res).await, json!({"id": "s2", "data": {"y": 2}}));
    let res = get_key(&app, "/v1/acme/default/handoff_state?id=s2", &reader).await;
    assert_eq!(json_ok(res).await, h3);
    assert_eq!(json_ok(state("id=s1").await).await["id"], "h2");

    // account_id by id, in any case, and by slug.
    for account in [org.id.to_string(), org.id.to_string().to_uppercase()] {
        let res = get_key(
            &app,
            &format!("/v1/{account}/support-bot/handoff_state?id=h1"),
            &reader,
        )
        .await;
        assert_eq!(json_ok(res).await, h1);
    }
    // A bearer token works as well as x-api-key.
    let res = app
        .get("/v1/acme/support-bot/handoff_state?id=h1", &reader)
        .await;
    assert_eq!(json_ok(res).await, h1);
}

#[tokio::test]
async fn every_miss_is_the_same_404() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("channel").await;
    let acme = app.org("acme", Some("channel"), None).await;
    let beta = app.org("beta", Some("channel"), None).await;
    let other = app.org("other", None, None).await;
    let acme_token = app.writer(&acme).await;
    acme_fixture(&app, &acme_token).await;
    // The other organizations hold handoffs with their own ids and with acme's ids.
    for (org, prefix) in [(&beta, "beta"), (&other, "other")] {
        let t = app.writer(org).await;
        app.post_events_ok(
            &t,
            &[
                session("s1", Some("support-bot"), &at(0)),
                initiated(
                    "e1",
                    &format!("{prefix}-h"),
                    "s1",
                    &at(10),
                    json!({"shared_id": format!("{prefix}-shared"), "data": {"org": prefix}}),
                ),
                initiated("e2", "h9", "s1", &at(20), json!({"shared_id": "acme-9"})),
            ],
        )
        .await;
    }
    let reader = app.reader(&acme).await;
    let unknown = get_key(
        &app,
        "/v1/acme/support-bot/handoff_state?id=nothing",
        &reader,
    )
    .await;
    let unknown = assert_error(unknown, 404, "handoff not found").await;
    let misses = [
        // Another organization's handoff, addressed through acme.
        "/v1/acme/support-bot/handoff_state?id=other-h",
        "/v1/acme/support-bot/handoff_state?shared_id=other-shared",
        "/v1/acme/support-bot/handoff_state?id=h9",
        "/v1/acme/support-bot/handoff_state?shared_id=acme-9",
        // Another organization's account, by slug and by id.
        "/v1/other/support-bot/handoff_state?id=other-h",
        "/v1/beta/support-bot/handoff_state?id=beta-h",
        // No such account.
        "/v1/nobody/support-bot/handoff_state?id=h1",
        "/v1/00000000-0000-0000-0000-000000000000/support-bot/handoff_state?id=h1",
        // The wrong project.
        "/v1/acme/sales-bot/handoff_state?id=h1",
        "/v1/acme/default/handoff_state?id=h1",
        "/v1/acme/default/handoff_state?shared_id=acme-1",
        "/v1/acme/support-bot/handoff_state?shared_id=acme-3",
    ];
    for path in misses {
        let res = get_key(&app, path, &reader).await;
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(res.json::<Value>().await.unwrap(), unknown, "{path}");
    }
    let res = get_key(
        &app,
        &format!("/v1/{}/support-bot/handoff_state?id=other-h", other.id),
        &reader,
    )
    .await;
    assert_eq!(res.json::<Value>().await.unwrap(), unknown);

    // A reseller token reads any of its organizations, and nothing else.
    let rtoken = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    let res = get_key(&app, "/v1/acme/support-bot/handoff_state?id=h1", &rtoken).await;
    assert_eq!(json_ok(res).await["id"], "h1");
    let res = get_key(
        &app,
        &format!(
            "/v1/{}/support-bot/handoff_state?shared_id=beta-shared",
            beta.id
        ),
        &rtoken,
    )
    .await;
    assert_eq!(
        json_ok(res).await,
        json!({"id": "beta-h", "shared_id": "beta-shared", "data": {"org": "beta"}})
    );
    let res = get_key(
        &app,
        "/v1/other/support-bot/handoff_state?id=other-h",
        &rtoken,
    )
    .await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap(), unknown);
}

#[tokio::test]
async fn handoff_state_auth_matrix() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    acme_fixture(&app, &token).await;
    let path = "/v1/acme/support-bot/handoff_state?id=h1";
    let res = app.client.get(app.url(path)).send().await.unwrap();
    assert_error(res, 401, "missing token").await;
    assert_error(get_key(&app, path, "garbage").await, 401, "malformed").await;
    assert_error(app.get(path, "garbage").await, 401, "malformed").await;
    // A token signed with another secret.
    let forged = baton::auth::Keys::new(&[7u8; 32]).sign(&baton::auth::Claims::new(
        Subject::Org(org.id),
        vec![Scope::ReadAll],
        Utc::now(),
        Utc::now() + Duration::hours(1),
    ));
    assert_error(get_key(&app, path, &forged).await, 401, "signature").await;
    // write_all implies read_all; read_all alone is enough.
    let write_only = app.token(Subject::Org(org.id), &[Scope::WriteAll]).await;
    for t in [&write_only, &app.reader(&org).await, &token] {
        assert_eq!(get_key(&app, path, t).await.status(), 200);
        assert_eq!(app.get(path, t).await.status(), 200);
    }
    // Bad requests are checked after the token.
    let res = app
        .client
        .get(app.url("/v1/acme/support-bot/handoff_state"))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "missing token").await;
}

/// Posts `events` one request at a time.
async fn post_each(app: &TestApp, token: &str, events: &[Value]) {
    for e in events {
        app.post_events_ok(token, std::slice::from_ref(e)).await;
    }
}

#[tokio::test]
async fn retry_and_custom_states_with_their_history_and_merged_data() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    app.post_events_ok(
        &token,
        &[
            ev(
                "a1",
                "agent.upserted",
                &at(0),
                json!({"agent_id": "support-bot", "name": "Support Bot", "status": "active"}),
            ),
            session("s1", Some("support-bot"), &at(0)),
        ],
    )
    .await;
    let detail = |app: &TestApp| {
        let token = token.clone();
        let url = app.url("/v1/handoffs/h1");
        let client = app.client.clone();
        async move {
            let res = client.get(url).bearer_auth(token).send().await.unwrap();
            json_ok(res).await
        }
    };
    let polyai = |app: &TestApp| {
        let token = token.clone();
        let url = app.url("/v1/acme/support-bot/handoff_state?shared_id=acme-1");
        let client = app.client.clone();
        async move {
            let res = client
                .get(url)
                .header("x-api-key", token)
                .send()
                .await
                .unwrap();
            json_ok(res).await
        }
    };

    post_each(
        &app,
        &token,
        &[initiated(
            "e1",
            "h1",
            "s1",
            &at(60),
            json!({
                "shared_id": "acme-1",
                "reasons": ["user_requested_human_assistance"],
                "sentiment": "frustrated",
                "references": [{"type": "instruction", "id": "refunds"}],
                "destination": "billing_queue",
                "summary": "Wants a refund.",
                "data": {"customer_id": "12345", "step": "start"}
            }),
        )],
    )
    .await;
    let d = detail(&app).await;
    assert_eq!(
        (d["state"].as_str(), d["status"].as_str()),
        (Some("handoff_initiated"), Some("open"))
    );

    // A custom state: still open; its data merges in.
    post_each(
        &app,
        &token,
        &[ev(
            "e2",
            "handoff.state",
            &at(90),
            json!({"handoff_id": "h1", "state": "customer_refund", "data": {"refund_amount": 20, "step": "refund"}}),
        )],
    )
    .await;
    let d = detail(&app).await;
    assert_eq!(
        (d["state"].as_str(), d["status"].as_str()),
        (Some("customer_refund"), Some("open"))
    );
    assert_eq!(
        polyai(&app).await["data"],
        json!({"customer_id": "12345", "step": "refund", "refund_amount": 20})
    );

    // Failure, then a retry (same handoff: attempts 2), then completion.
    post_each(
        &app,
        &token,
        &[ev(
            "e3",
            "handoff.failed",
            &at(120),
            json!({"handoff_id": "h1", "error": "queue closed"}),
        )],
    )
    .await;
    let d = detail(&app).await;
    assert_eq!(
        (d["state"].as_str(), d["status"].as_str()),
        (Some("handoff_failed"), Some("failed"))
    );
    post_each(
        &app,
        &token,
        &[
            initiated(
                "e4",
                "h1",
                "s1",
                &at(180),
                json!({
                    "reasons": ["insufficient_knowledge", "user_requested_human_assistance"],
                    "references": [{"type": "knowledge", "id": "kb-7"}, {"type": "instruction", "id": "refunds"}],
                    "destination": "overflow_queue",
                    "data": {"attempt": 2}
                }),
            ),
            ev(
                "e5",
                "handoff.state",
                &at(200),
                json!({"handoff_id": "h1", "state": "successfully_identified", "data": {"handoff_reason": "successfully_identified"}}),
            ),
            ev(
                "e6",
                "handoff.completed",
                &at(240),
                json!({"handoff_id": "h1", "operator_id": "op-7"}),
            ),
        ],
    )
    .await;

    let data = json!({
        "customer_id": "12345",
        "step": "refund",
        "refund_amount": 20,
        "attempt": 2,
        "handoff_reason": "successfully_identified"
    });
    assert_eq!(
        polyai(&app).await,
        json!({"id": "h1", "shared_id": "acme-1", "data": data})
    );
    let expected = json!({
        "handoff_id": "h1",
        "shared_id": "acme-1",
        "state": "handoff_completed",
        "status": "completed",
        "attempts": 2,
        "reasons": ["user_requested_human_assistance", "insufficient_knowledge"],
        "sentiment": "frustrated",
        "references": [
            {"type": "instruction", "id": "refunds"},
            {"type": "knowledge", "id": "kb-7"}
        ],
        "destination": "overflow_queue",
        "summary": "Wants a refund.",
        "explanation": null,
        "operator_id": "op-7",
        "error": "queue closed",
        "initiated_at": at(60),
        "last_initiated_at": at(180),
        "completed_at": at(240),
        "failed_at": at(120),
        "updated_at": at(240),
        "session": {
            "session_id": "s1",
            "channel": "web",
            "agent_id": "support-bot",
            "agent_name": "Support Bot",
            "started_at": at(0),
            "ended_at": null,
            "sentiment": null
        },
        "data": data,
        "history": [
            {"seq": 1, "state": "handoff_initiated", "occurred_at": at(60), "attempt": 1, "event_id": "e1"},
            {"seq": 2, "state": "customer_refund", "occurred_at": at(90), "attempt": 1, "event_id": "e2"},
            {"seq": 3, "state": "handoff_failed", "occurred_at": at(120), "attempt": 1, "event_id": "e3"},
            {"seq": 4, "state": "handoff_initiated", "occurred_at": at(180), "attempt": 2, "event_id": "e4"},
            {"seq": 5, "state": "successfully_identified", "occurred_at": at(200), "attempt": 2, "event_id": "e5"},
            {"seq": 6, "state": "handoff_completed", "occurred_at": at(240), "attempt": 2, "event_id": "e6"}
        ]
    });
    assert_eq!(normalize(detail(&app).await), expected);
    // The list shows the same handoff, without data and history.
    let list = json_ok(app.get("/v1/handoffs", &token).await).await;
    let mut item = expected.clone();
    item.as_object_mut().unwrap().remove("data");
    item.as_object_mut().unwrap().remove("history");
    assert_eq!(normalize(list), json!({"handoffs": [item], "next": null}));
}

/// Rewrites every RFC 3339 time in `v` to whole seconds with `Z`, so that expectations can be
/// written with [`at`].
fn normalize(v: Value) -> Value {
    match v {
        Value::String(s) => match DateTime::parse_from_rfc3339(&s) {
            Ok(t) if s.len() >= 20 => Value::String(
                t.with_timezone(&Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            _ => Value::String(s),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

#[tokio::test]
async fn detail_tenancy_and_parameters() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("channel").await;
    let acme = app.org("acme", Some("channel"), None).await;
    let other = app.org("other", None, None).await;
    let acme_token = app.writer(&acme).await;
    acme_fixture(&app, &acme_token).await;
    let other_token = app.writer(&other).await;
    app.post_events_ok(
        &other_token,
        &[
            session("s9", None, &at(0)),
            initiated("e1", "other-h", "s9", &at(10), json!({})),
        ],
    )
    .await;

    let d = json_ok(app.get("/v1/handoffs/h1", &acme_token).await).await;
    assert_eq!(d["handoff_id"], "h1");
    assert_eq!(d["data"], json!({"customer_id": "12345"}));
    let own = format!("/v1/handoffs/h1?organization_id={}", acme.id);
    assert_eq!(json_ok(app.get(&own, &acme_token).await).await, d);
    assert_error(
        app.get("/v1/handoffs/nothing", &acme_token).await,
        404,
        "handoff `nothing` not found",
    )
    .await;
    // Another tenant's handoff is a 404 with the same text as an unknown one.
    let res = assert_error(app.get("/v1/handoffs/other-h", &acme_token).await, 404, "").await;
    assert_eq!(res["message"], "handoff `other-h` not found");
    let path = format!("/v1/handoffs/other-h?organization_id={}", other.id);
    assert_error(app.get(&path, &acme_token).await, 404, "not found").await;
    assert_error(
        app.get("/v1/handoffs/h1?organization_id=acme", &acme_token)
            .await,
        400,
        "organization_id",
    )
    .await;
    assert_error(
        app.get("/v1/handoffs/h1?verbose=1", &acme_token).await,
        400,
        "verbose",
    )
    .await;

    // Reseller: organization_id is required, and must be one of its organizations.
    let rtoken = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    assert_error(
        app.get("/v1/handoffs/h1", &rtoken).await,
        400,
        "organization_id",
    )
    .await;
    let path = format!("/v1/handoffs/h1?organization_id={}", acme.id);
    assert_eq!(json_ok(get_key(&app, &path, &rtoken).await).await, d);
    let path = format!("/v1/handoffs/other-h?organization_id={}", other.id);
    assert_error(app.get(&path, &rtoken).await, 404, "not found").await;

    // Auth.
    let res = app
        .client
        .get(app.url("/v1/handoffs/h1"))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "missing token").await;
    assert_error(
        get_key(&app, "/v1/handoffs/h1", "garbage").await,
        401,
        "malformed",
    )
    .await;
    let write_only = app.token(Subject::Org(acme.id), &[Scope::WriteAll]).await;
    assert_eq!(
        get_key(&app, "/v1/handoffs/h1", &write_only).await.status(),
        200
    );
}

/// The ids of the handoffs of `org`, newest first, recomputed from the table.
async fn all_ids(app: &TestApp, org: uuid::Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "select handoff_id from handoffs where org_id = $1 order by initiated_at desc, handoff_id desc",
    )
    .bind(org)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["handoffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["handoff_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn pages_neither_skip_nor_repeat_while_new_handoffs_arrive() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let other = app.org("other", None, None).await;
    let token = app.writer(&org).await;
    // 30 handoffs; every three share a time, so that ties are broken by id.
    let mut events = vec![session("s1", None, &at(0))];
    for i in 0..30 {
        events.push(initiated(
            &format!("e{i:02}"),
            &format!("h{i:02}"),
            "s1",
            &at(1000 + (i / 3) * 60),
            json!({}),
        ));
    }
    app.post_events_ok(&token, &events).await;
    // Another tenant's handoffs, at the same times, never show.
    let other_token = app.writer(&other).await;
    app.post_events_ok(&other_token, &events[..10]).await;

    let existing = all_ids(&app, org.id).await;
    assert_eq!(existing.len(), 30);
    assert_eq!(existing[..4], ["h29", "h28", "h27", "h26"]);

    let mut seen: Vec<String> = Vec::new();
    let mut next: Option<String> = None;
    let mut round = 0;
    // Handoffs that arrived ahead of the walk's position: a fresh walk would show them.
    let mut ahead: Vec<String> = Vec::new();
    loop {
        let path = match &next {
            None => "/v1/handoffs?limit=4".to_owned(),
            Some(c) => format!("/v1/handoffs?limit=4&next={c}"),
        };
        let page = json_ok(app.get(&path, &token).await).await;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 4);
        seen.extend(page_ids.clone());
        next = page["next"].as_str().map(str::to_owned);
        if next.is_none() {
            break;
        }
        // Between pages: a newer handoff, an older one than everything, two at the same time as
        // the last listed, one with a smaller id (it belongs after the position) and one with a
        // larger id (before it), and a failure and retry of a listed handoff (it must not move).
        // Ids are lowercase letters and digits of one length, so every collation orders them as
        // bytes do.
        let last = page["handoffs"].as_array().unwrap().last().unwrap().clone();
        let last_time = last["initiated_at"].as_str().unwrap().to_owned();
        let position = (
            DateTime::parse_from_rfc3339(&last_time).unwrap(),
            last["handoff_id"].as_str().unwrap().to_owned(),
        );
        let r = round;
        let new = [
            (format!("n{r:02}"), at(5000 + r)),
            (format!("a{r:02}"), at(100 - r)),
            (format!("g{r:02}"), last_time.clone()),
            (format!("i{r:02}"), last_time.clone()),
        ];
        let mut batch = Vec::new();
        for (id, when) in &new {
            batch.push(initiated(&format!("e-{id}"), id, "s1", when, json!({})));
            if (DateTime::parse_from_rfc3339(when).unwrap(), id.clone()) > position {
                ahead.push(id.clone());
            }
        }
        batch.push(ev(
            &format!("f{r}"),
            "handoff.failed",
            &at(6000),
            json!({"handoff_id": page_ids[0]}),
        ));
        batch.push(initiated(
            &format!("retry{r}"),
            &page_ids[0],
            "s1",
            &at(6001),
            json!({}),
        ));
        app.post_events_ok(&token, &batch).await;
        round += 1;
        assert!(round < 40, "too many pages");
    }
    // No repeats.
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "repeated: {seen:?}");
    // Every handoff that existed at the start, exactly once.
    for id in &existing {
        assert_eq!(seen.iter().filter(|s| *s == id).count(), 1, "{id}");
    }
    // The pages are in the order the table gives now, and hold every handoff but those that
    // arrived ahead of the walk's position.
    let now = all_ids(&app, org.id).await;
    let expected: Vec<String> = now
        .iter()
        .filter(|id| !ahead.contains(id))
        .cloned()
        .collect();
    assert_eq!(seen, expected);
    // Older arrivals and smaller-id ties were picked up; newer ones and larger-id ties were not.
    assert!(seen.iter().filter(|s| s.starts_with('a')).count() >= 5);
    assert!(seen.iter().any(|s| s.starts_with('g')));
    assert!(ahead.iter().any(|s| s.starts_with('i')));
    assert!(!seen.iter().any(|s| s.starts_with('n')));
    // A fresh walk with the largest page gives the whole list at once.
    let all = json_ok(app.get("/v1/handoffs?limit=500", &token).await).await;
    assert_eq!(ids(&all), now);
    assert_eq!(all["next"], Value::Null);
    // Default page size: 50.
    let first = json_ok(app.get("/v1/handoffs", &token).await).await;
    assert_eq!(ids(&first), now[..50]);
    assert!(first["next"].is_string());
}

#[tokio::test]
async fn list_filters_and_bad_parameters() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, Some("Asia/Kolkata")).await;
    let token = app.writer(&org).await;
    // Times around the Kolkata (UTC+05:30) day boundaries of November 2.
    app.post_events_ok(
        &token,
        &[
            session("s1", None, "2026-11-01T00:00:00Z"),
            session("s2", Some("bot"), "2026-11-01T00:00:00Z"),
            initiated(
                "e1",
                "h1",
                "s1",
                "2026-11-01T18:29:00Z",
                json!({"reasons": ["prohibited_topic"]}),
            ),
            initiated(
                "e2",
                "h2",
                "s1",
                "2026-11-01T18:30:00Z",
                json!({"reasons": ["prohibited_topic", "ai_implied_handoff"]}),
            ),
            initiated("e3", "h3", "s2", "2026-11-02T18:29:59Z", json!({})),
            initiated("e4", "h4", "s2", "2026-11-02T18:30:00Z", json!({})),
            ev(
                "e5",
                "handoff.completed",
                "2026-11-03T00:00:00Z",
                json!({"handoff_id": "h1"}),
            ),
            ev(
                "e6",
                "handoff.failed",
                "2026-11-03T00:00:00Z",
                json!({"handoff_id": "h2"}),
            ),
            ev(
                "e7",
                "handoff.state",
                "2026-11-03T00:00:00Z",
                json!({"handoff_id": "h3", "state": "customer_refund"}),
            ),
        ],
    )
    .await;
    let list = |query: &str| {
        let path = format!("/v1/handoffs?{query}");
        let token = token.clone();
        let app = &app;
        async move { ids(&json_ok(app.get(&path, &token).await).await) }
    };
    assert_eq!(list("").await, ["h4", "h3", "h2", "h1"]);
    assert_eq!(list("state=handoff_completed").await, ["h1"]);
    assert_eq!(list("state=handoff_failed").await, ["h2"]);
    assert_eq!(list("state=customer_refund").await, ["h3"]);
    assert_eq!(list("state=handoff_initiated").await, ["h4"]);
    assert!(list("state=complaint_escalation").await.is_empty());
    // status: a custom state is open.
    assert_eq!(list("status=open").await, ["h4", "h3"]);
    assert_eq!(list("status=completed").await, ["h1"]);
    assert_eq!(list("status=failed").await, ["h2"]);
    assert_eq!(list("status=open&state=customer_refund").await, ["h3"]);
    assert!(list("status=failed&state=customer_refund").await.is_empty());
    assert_eq!(list("reason=prohibited_topic").await, ["h2", "h1"]);
    assert_eq!(list("reason=ai_implied_handoff").await, ["h4", "h3", "h2"]);
    assert_eq!(list("session_id=s2").await, ["h4", "h3"]);
    assert_eq!(
        list("session_id=s1&reason=ai_implied_handoff").await,
        ["h2"]
    );
    // Dates are local days of the organization's zone, end date inclusive.
    assert_eq!(
        list("start_date=2026-11-02&end_date=2026-11-02").await,
        ["h3", "h2"]
    );
    assert_eq!(list("start_date=2026-11-02").await, ["h4", "h3", "h2"]);
    assert_eq!(list("end_date=2026-11-01").await, ["h1"]);
    // Or of the zone asked for; instants with an offset are what they say.
    assert_eq!(
        list("start_date=2026-11-02&end_date=2026-11-02&timezone=UTC").await,
        ["h4", "h3"]
    );
    assert_eq!(
        list("start_date=2026-11-01T18:30:00Z&end_date=2026-11-02T18:30:00%2B00:00").await,
        ["h3", "h2"]
    );
    assert_eq!(
        list("start_date=2026-11-02T00:00:00").await,
        ["h4", "h3", "h2"]
    );
    assert_eq!(
        list("start_date=2026-11-02&end_date=2026-11-02&state=handoff_failed").await,
        ["h2"]
    );
    // A long range is fine here.
    assert_eq!(
        list("start_date=2020-01-01&end_date=2030-01-01")
            .await
            .len(),
        4
    );

    for (query, param) in [
        ("state=Handoff-Failed", "state"),
        ("state=", "state"),
        ("reason=angry", "reason"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("next=garbage", "next"),
        ("next=h1.x.61", "next"),
        ("start_date=yesterday", "start_date"),
        ("end_date=2026-13-01", "end_date"),
        ("start_date=2026-11-03&end_date=2026-11-01", "start_date"),
        ("timezone=Mars/Base", "timezone"),
        ("session_id=", "session_id"),
        ("organization_id=acme", "organization_id"),
        ("status=closed", "status"),
        ("colour=red", "colour"),
        ("state=a&state=b", "state"),
    ] {
        let body = assert_error(
            app.get(&format!("/v1/handoffs?{query}"), &token).await,
            400,
            param,
        )
        .await;
        assert!(
            body["message"].as_str().unwrap().contains(param),
            "{query}: {body}"
        );
    }
    // Every problem at once.
    let body = assert_error(
        app.get("/v1/handoffs?state=X&reason=Y&limit=0", &token)
            .await,
        400,
        "state",
    )
    .await;
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["state", "reason", "limit"]);
}

#[tokio::test]
async fn list_tenancy_and_auth_matrix() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("channel").await;
    let acme = app.org("acme", Some("channel"), None).await;
    let beta = app.org("beta", Some("channel"), None).await;
    let other = app.org("other", None, None).await;
    for org in [&acme, &beta, &other] {
        let t = app.writer(org).await;
        app.post_events_ok(
            &t,
            &[
                session("s1", None, &at(0)),
                initiated("e1", &format!("{}-h", org.slug), "s1", &at(10), json!({})),
                initiated("e2", "shared-name", "s1", &at(20), json!({})),
            ],
        )
        .await;
    }
    let reader = app.reader(&acme).await;
    let page = json_ok(get_key(&app, "/v1/handoffs", &reader).await).await;
    assert_eq!(ids(&page), ["shared-name", "acme-h"]);
    let path = format!("/v1/handoffs?organization_id={}", other.id);
    assert_error(app.get(&path, &reader).await, 404, "not found").await;

    let rtoken = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    assert_error(
        app.get("/v1/handoffs", &rtoken).await,
        400,
        "organization_id",
    )
    .await;
    let path = format!("/v1/handoffs?organization_id={}", beta.id);
    assert_eq!(
        ids(&json_ok(app.get(&path, &rtoken).await).await),
        ["shared-name", "beta-h"]
    );
    let path = format!("/v1/handoffs?organization_id={}", other.id);
    assert_error(get_key(&app, &path, &rtoken).await, 404, "not found").await;

    let res = app
        .client
        .get(app.url("/v1/handoffs"))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "missing token").await;
    assert_error(app.get("/v1/handoffs", "garbage").await, 401, "malformed").await;
    assert_error(
        get_key(&app, "/v1/handoffs", "garbage").await,
        401,
        "malformed",
    )
    .await;
    let write_only = app.token(Subject::Org(acme.id), &[Scope::WriteAll]).await;
    let page = json_ok(app.get("/v1/handoffs", &write_only).await).await;
    assert_eq!(ids(&page), ["shared-name", "acme-h"]);
}

/// `handoff.abandoned` and `explanation`, hand-built: h1 initiated with an explanation and
/// abandoned; h2 in a custom state and abandoned; h3 open; h4 completed; h5 failed. Every figure
/// below is counted by hand from these events.
#[tokio::test]
async fn abandoned_handoffs_and_explanations_in_records_filters_and_lookups() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let explanation = "The customer asked twice for a refund the AI may not grant.";
    let events = vec![
        session("s1", None, &at(0)),
        initiated(
            "e1",
            "h1",
            "s1",
            &at(10),
            json!({"shared_id": "acme-1", "explanation": explanation, "data": {"k": "v"}}),
        ),
        initiated("e2", "h2", "s1", &at(20), json!({})),
        ev(
            "e3",
            "handoff.state",
            &at(30),
            json!({"handoff_id": "h2", "state": "in_queue"}),
        ),
        initiated("e4", "h3", "s1", &at(40), json!({})),
        initiated("e5", "h4", "s1", &at(50), json!({})),
        initiated("e6", "h5", "s1", &at(60), json!({})),
        ev(
            "e7",
            "handoff.completed",
            &at(70),
            json!({"handoff_id": "h4"}),
        ),
        ev("e8", "handoff.failed", &at(70), json!({"handoff_id": "h5"})),
        ev(
            "e9",
            "handoff.abandoned",
            &at(100),
            json!({"handoff_id": "h1"}),
        ),
        ev(
            "e10",
            "handoff.abandoned",
            &at(130),
            json!({"handoff_id": "h2"}),
        ),
    ];
    app.post_events_ok(&token, &events).await;

    // One handoff, with everything known about it.
    let d = json_ok(app.get("/v1/handoffs/h1", &token).await).await;
    assert_eq!(d["state"], "handoff_abandoned");
    assert_eq!(d["status"], "abandoned");
    assert_eq!(d["explanation"], explanation);
    assert_eq!(d["updated_at"], at(100));
    assert_eq!(d["completed_at"], Value::Null);
    let history: Vec<&str> = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["handoff_initiated", "handoff_abandoned"]);
    let h2 = json_ok(app.get("/v1/handoffs/h2", &token).await).await;
    assert_eq!(h2["explanation"], Value::Null);
    assert_eq!(h2["state"], "handoff_abandoned");

    // Filters: by state, by status; `open` no longer includes abandoned handoffs.
    let list_ids = |q: &'static str| {
        let app = &app;
        let token = &token;
        async move {
            let page = json_ok(app.get(&format!("/v1/handoffs?{q}"), token).await).await;
            ids(&page)
        }
    };
    assert_eq!(list_ids("state=handoff_abandoned").await, ["h2", "h1"]);
    assert_eq!(list_ids("status=abandoned").await, ["h2", "h1"]);
    assert_eq!(list_ids("status=open").await, ["h3"]);
    assert_eq!(list_ids("status=completed").await, ["h4"]);
    assert_eq!(list_ids("status=failed").await, ["h5"]);
    let all = json_ok(app.get("/v1/handoffs", &token).await).await;
    let explanations: Vec<&Value> = all["handoffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["explanation"])
        .collect();
    assert_eq!(
        explanations,
        [
            &Value::Null,
            &Value::Null,
            &Value::Null,
            &Value::Null,
            &json!(explanation)
        ]
    );
    assert_error(
        app.get("/v1/handoffs?status=gone", &token).await,
        400,
        "open, completed, failed or abandoned",
    )
    .await;

    // PolyAI's lookup answers an abandoned handoff as any other: its body has no state.
    let polyai = json_ok(
        get_key(
            &app,
            "/v1/acme/default/handoff_state?shared_id=acme-1",
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(
        polyai,
        json!({"id": "h1", "shared_id": "acme-1", "data": {"k": "v"}})
    );

    // An abandoned handoff is final: nothing may follow it, and nothing of that batch is stored.
    for (id, kind) in [
        ("x1", "handoff.completed"),
        ("x2", "handoff.failed"),
        ("x3", "handoff.abandoned"),
    ] {
        let res = app
            .post_events(
                &token,
                &[ev(id, kind, &at(200), json!({"handoff_id": "h1"}))],
            )
            .await;
        assert_error(res, 409, "handoff `h1` is handoff_abandoned").await;
    }
    let res = app
        .post_events(&token, &[initiated("x4", "h1", "s1", &at(200), json!({}))])
        .await;
    assert_error(res, 409, "handoff `h1` is handoff_abandoned").await;
    // A failed handoff is not open: it cannot be abandoned (a retry first makes it open again).
    let res = app
        .post_events(
            &token,
            &[ev(
                "x5",
                "handoff.abandoned",
                &at(200),
                json!({"handoff_id": "h5"}),
            )],
        )
        .await;
    assert_error(res, 409, "handoff `h5` is handoff_failed").await;
    // `explanation` has the limits of `summary`.
    let res = app
        .post_events(
            &token,
            &[initiated(
                "x6",
                "h9",
                "s1",
                &at(200),
                json!({"explanation": "x".repeat(10_001)}),
            )],
        )
        .await;
    let body = assert_error(res, 400, "").await;
    assert_eq!(body["details"][0]["field"], "events[0].explanation");
}

/// The analytics report is the same with or without abandonments and explanations: both are
/// about what happened after the handoff was counted (at its first initiation).
#[tokio::test]
async fn abandonments_and_explanations_change_no_analytics_figure() {
    let app = TestApp::spawn().await;
    let plain = app.org("plain", None, None).await;
    let other = app.org("other", None, None).await;
    let base = vec![
        session("s1", None, &at(0)),
        initiated(
            "e1",
            "h1",
            "s1",
            &at(10),
            json!({"reasons": ["prohibited_topic"]}),
        ),
        initiated("e2", "h2", "s1", &at(20), json!({})),
        ev(
            "e3",
            "handoff.completed",
            &at(30),
            json!({"handoff_id": "h2"}),
        ),
    ];
    app.post_events_ok(&app.writer(&plain).await, &base).await;
    let mut with = base.clone();
    with[1]["explanation"] = json!("The topic is prohibited.");
    with.push(ev(
        "e4",
        "handoff.abandoned",
        &at(40),
        json!({"handoff_id": "h1"}),
    ));
    app.post_events_ok(&app.writer(&other).await, &with).await;
    let q = "/handoff-analytics?start_date=2026-11-02T00:00:00Z&end_date=2026-11-03T00:00:00Z";
    let a = json_ok(app.get(q, &app.reader(&plain).await).await).await;
    let b = json_ok(app.get(q, &app.reader(&other).await).await).await;
    assert_eq!(a["total_handoffs"], 2);
    assert_eq!(a, b);
}
