//! `POST /v1/events`: atomic batches, exactly-once storage, the state machine, limits, auth.

use serde_json::{Value, json};

use crate::common::fixtures::event;
use crate::common::{TestApp, assert_error};

/// An event of `kind` with `fields`, at minute `minute` of 2026-11-02 09:00 UTC.
fn ev(id: &str, kind: &str, minute: u32, fields: Value) -> Value {
    event(id, kind, &format!("2026-11-02T09:{minute:02}:00Z"), fields)
}

fn session(id: &str, session: &str) -> Value {
    ev(
        id,
        "session.started",
        0,
        json!({"session_id": session, "channel": "web"}),
    )
}

fn initiated(id: &str, handoff: &str, session: &str) -> Value {
    ev(
        id,
        "handoff.initiated",
        1,
        json!({"handoff_id": handoff, "session_id": session, "reasons": ["ai_implied_handoff"]}),
    )
}

async fn count(app: &TestApp, table: &str, org: uuid::Uuid) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table} where org_id = $1"))
        .bind(org)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn resending_is_a_no_op_and_a_changed_body_is_409() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let batch = vec![session("e1", "s1"), initiated("e2", "h1", "s1")];
    assert_eq!(app.post_events_ok(&token, &batch).await, (2, 0));
    assert_eq!(app.post_events_ok(&token, &batch).await, (0, 2));
    // Key order and whitespace do not make a body different.
    let reordered: Value = serde_json::from_str(
        r#"{"session_id":"s1","channel":"web","occurred_at":"2026-11-02T09:00:00Z","type":"session.started","id":"e1"}"#,
    )
    .unwrap();
    assert_eq!(
        app.post_events_ok(&token, &[reordered, session("e3", "s2")])
            .await,
        (1, 1)
    );

    // Same id, other body: 409, and the new event of that batch is not stored either.
    let changed = ev(
        "e1",
        "session.started",
        0,
        json!({"session_id": "s1", "channel": "sms"}),
    );
    let res = app
        .post_events(&token, &[session("e4", "s3"), changed])
        .await;
    let body = assert_error(res, 409, "events[1]").await;
    assert!(
        body["message"].as_str().unwrap().contains("different body"),
        "{body}"
    );
    assert_eq!(count(&app, "events", org.id).await, 3);
    assert_eq!(count(&app, "sessions", org.id).await, 2);

    // The same id twice in one batch: same body is one event, other bodies a 409.
    assert_eq!(
        app.post_events_ok(&token, &[session("e5", "s5"), session("e5", "s5")])
            .await,
        (1, 1)
    );
    let res = app
        .post_events(&token, &[session("e6", "s6"), session("e6", "s7")])
        .await;
    assert_error(res, 409, "events[1]").await;
}

#[tokio::test]
async fn an_invalid_event_stores_nothing_and_every_problem_is_listed() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let good0 = session("e1", "s1");
    let bad1 = ev(
        "e2",
        "handoff.initiated",
        1,
        json!({"handoff_id": "h1", "session_id": "s1", "reasons": [], "mood": 1}),
    );
    let good2 = initiated("e3", "h2", "s1");
    let bad3 = ev(
        "e4",
        "call.completed",
        2,
        json!({"call_id": "c1", "agent_id": "a", "started_at": "nope", "duration_seconds": 3, "outcome": "won"}),
    );
    let res = app
        .post_events(&token, &[good0.clone(), bad1, good2.clone(), bad3])
        .await;
    let body = assert_error(res, 400, "2 of 4 events are invalid").await;
    let mut fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "events[1].mood",
            "events[1].reasons",
            "events[3].outcome",
            "events[3].started_at"
        ]
    );
    assert_eq!(count(&app, "events", org.id).await, 0);
    // The valid ones alone are all new: nothing of the refused batch had been stored.
    assert_eq!(app.post_events_ok(&token, &[good0, good2]).await, (2, 0));
}

#[tokio::test]
async fn ndjson_batches() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let lines = [session("e1", "s1"), initiated("e2", "h1", "s1")]
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let send = |body: String| {
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(&token)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
    };
    let res = send(format!("{lines}\n\n")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"accepted": 2, "duplicates": 0})
    );
    let res = send(format!("{}\n{{not json\n", session("e3", "s3")))
        .await
        .unwrap();
    let body = assert_error(res, 400, "not JSON").await;
    assert_eq!(body["details"][0]["field"], "events[1]");
    assert!(
        body["details"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2")
    );
    assert_eq!(count(&app, "events", org.id).await, 2);
}

#[tokio::test]
async fn malformed_bodies_and_content_types() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let raw = |ct: &'static str, body: &'static str| {
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(&token)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    assert_error(
        raw("application/json", "{\"events\": [").await.unwrap(),
        400,
        "malformed JSON",
    )
    .await;
    assert_error(
        raw("application/json", "[]").await.unwrap(),
        400,
        "JSON object",
    )
    .await;
    assert_error(
        raw("application/json", "{}").await.unwrap(),
        400,
        "`events` is required",
    )
    .await;
    assert_error(
        raw("application/json", "{\"events\": {}}").await.unwrap(),
        400,
        "array",
    )
    .await;
    let body = assert_error(
        raw("application/json", "{\"events\": [], \"extra\": 1}")
            .await
            .unwrap(),
        400,
        "only hold",
    )
    .await;
    assert_eq!(body["details"][0]["field"], "extra");
    assert_error(
        raw("text/plain", "{\"events\": []}").await.unwrap(),
        415,
        "application/x-ndjson",
    )
    .await;
    let res = raw("application/json", "{\"events\": []}").await.unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"accepted": 0, "duplicates": 0})
    );
}

#[tokio::test]
async fn size_limits_are_413() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let events: Vec<Value> = (0..10_001)
        .map(|i| session(&format!("e{i}"), &format!("s{i}")))
        .collect();
    assert_error(app.post_events(&token, &events).await, 413, "10000 events").await;
    // Exactly the limit is fine.
    assert_eq!(
        app.post_events_ok(&token, &events[..10_000]).await,
        (10_000, 0)
    );

    let huge = format!(
        "{{\"events\": [], \"pad\": \"{}\"}}",
        "x".repeat(10 * 1024 * 1024)
    );
    let res = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_error(res, 413, "").await;
    assert_eq!(count(&app, "events", org.id).await, 10_000);
}

/// Sends `events` after a fresh session + initiation of handoff `h`, returning the status and body.
async fn after_initiation(app: &TestApp, token: &str, tag: &str, events: &[Value]) -> (u16, Value) {
    let s = format!("s-{tag}");
    let mut batch = vec![
        session(&format!("{tag}-s"), &s),
        ev(
            &format!("{tag}-i"),
            "handoff.initiated",
            1,
            json!({"handoff_id": format!("h-{tag}"), "session_id": s, "reasons": ["ai_implied_handoff"]}),
        ),
    ];
    batch.extend(events.iter().cloned());
    let res = app.post_events(token, &batch).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

fn step(tag: &str, n: usize, kind: &str) -> Value {
    let h = format!("h-{tag}");
    let id = format!("{tag}-{n}");
    match kind {
        "completed" => ev(
            &id,
            "handoff.completed",
            2 + n as u32,
            json!({"handoff_id": h}),
        ),
        "failed" => ev(
            &id,
            "handoff.failed",
            2 + n as u32,
            json!({"handoff_id": h, "error": "no agent"}),
        ),
        "initiated" => ev(
            &id,
            "handoff.initiated",
            2 + n as u32,
            json!({"handoff_id": h, "session_id": format!("s-{tag}"), "reasons": ["insufficient_tools"]}),
        ),
        custom => ev(
            &id,
            "handoff.state",
            2 + n as u32,
            json!({"handoff_id": h, "state": custom}),
        ),
    }
}

#[tokio::test]
async fn every_transition_allowed_and_forbidden() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    // Paths from handoff_initiated; `true` when the last step must be refused.
    let cases: &[(&[&str], bool)] = &[
        (&["completed"], false),
        (&["failed"], false),
        (&["failed", "initiated"], false),
        (&["failed", "initiated", "completed"], false),
        (&["customer_refund"], false),
        (&["customer_refund", "complaint_escalation"], false),
        (&["customer_refund", "completed"], false),
        (&["customer_refund", "failed", "initiated"], false),
        (&["initiated"], true),
        (&["completed", "completed"], true),
        (&["completed", "failed"], true),
        (&["completed", "initiated"], true),
        (&["completed", "customer_refund"], true),
        (&["failed", "completed"], true),
        (&["failed", "failed"], true),
        (&["failed", "customer_refund"], true),
        (&["customer_refund", "initiated"], true),
    ];
    for (n, (path, forbidden)) in cases.iter().enumerate() {
        let tag = format!("t{n}");
        let events: Vec<Value> = path
            .iter()
            .enumerate()
            .map(|(i, k)| step(&tag, i, k))
            .collect();
        let (status, body) = after_initiation(&app, &token, &tag, &events).await;
        if *forbidden {
            assert_eq!(status, 409, "{path:?}: {body}");
            // Named by its index in the batch (2 events precede the path).
            let index = 2 + path.len() - 1;
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("events[{index}]")),
                "{path:?}: {body}"
            );
            assert_eq!(
                count_handoff(&app, org.id, &format!("h-{tag}")).await,
                0,
                "{path:?} stored nothing"
            );
        } else {
            assert_eq!(status, 200, "{path:?}: {body}");
        }
    }
    // Events for a handoff never initiated.
    for (i, kind) in ["completed", "failed", "customer_refund"]
        .iter()
        .enumerate()
    {
        let res = app
            .post_events(
                &token,
                &[session(&format!("u{i}-s"), "su"), step("unknown", i, kind)],
            )
            .await;
        let body = assert_error(res, 409, "events[1]").await;
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("never initiated"),
            "{body}"
        );
    }
}

async fn count_handoff(app: &TestApp, org: uuid::Uuid, handoff: &str) -> i64 {
    sqlx::query_scalar("select count(*) from handoffs where org_id = $1 and handoff_id = $2")
        .bind(org)
        .bind(handoff)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn projections_hold_what_the_events_said() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let batch = vec![
        ev(
            "e1",
            "session.started",
            0,
            json!({"session_id": "s1", "channel": "phone_voice", "agent_id": "bot"}),
        ),
        ev(
            "e2",
            "handoff.initiated",
            1,
            json!({
            "handoff_id": "h1", "session_id": "s1", "shared_id": "acme-1",
            "reasons": ["prohibited_topic", "ai_implied_handoff"], "sentiment": "angry",
            "references": [{"type": "instruction", "id": "i1"}, {"type": "tool", "id": "t1"}],
            "destination": "queue-a", "data": {"customer_id": "12345", "tier": "gold"}}),
        ),
        ev(
            "e3",
            "handoff.failed",
            2,
            json!({"handoff_id": "h1", "error": "queue closed"}),
        ),
    ];
    assert_eq!(app.post_events_ok(&token, &batch).await, (3, 0));
    // A later batch: the retry, a custom state with data, completion, the session's end.
    let batch = vec![
        ev(
            "e4",
            "handoff.initiated",
            5,
            json!({
            "handoff_id": "h1", "session_id": "s1", "reasons": ["user_requested_human_assistance", "ai_implied_handoff"],
            "references": [{"type": "instruction", "id": "i1"}, {"type": "knowledge", "id": "k1"}],
            "destination": "queue-b"}),
        ),
        ev(
            "e5",
            "handoff.state",
            6,
            json!({"handoff_id": "h1", "state": "customer_refund", "data": {"tier": "platinum", "refund": 30}}),
        ),
        ev(
            "e6",
            "handoff.completed",
            7,
            json!({"handoff_id": "h1", "operator_id": "op-7"}),
        ),
        ev(
            "e7",
            "session.ended",
            8,
            json!({"session_id": "s1", "sentiment": null}),
        ),
    ];
    assert_eq!(app.post_events_ok(&token, &batch).await, (4, 0));

    let row: Value = sqlx::query_scalar(
        r#"select to_jsonb(h) from (
               select state, attempts, reasons, destination, shared_id, data, operator_id,
                      initiated_at::text as initiated_at, last_initiated_at::text as last_initiated_at
               from handoffs where org_id = $1 and handoff_id = 'h1') h"#,
    )
    .bind(org.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        json!({
            "state": "handoff_completed",
            "attempts": 2,
            "reasons": ["prohibited_topic", "ai_implied_handoff", "user_requested_human_assistance"],
            "destination": "queue-b",
            "shared_id": "acme-1",
            "data": {"customer_id": "12345", "tier": "platinum", "refund": 30},
            "operator_id": "op-7",
            "initiated_at": "2026-11-02 09:01:00+00",
            "last_initiated_at": "2026-11-02 09:05:00+00",
        })
    );

    let history: Vec<(i32, String, String)> = sqlx::query_as(
        "select seq, state, event_id from handoff_states where org_id = $1 and handoff_id = 'h1' order by seq",
    )
    .bind(org.id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let want = [
        (1, "handoff_initiated", "e2"),
        (2, "handoff_failed", "e3"),
        (3, "handoff_initiated", "e4"),
        (4, "customer_refund", "e5"),
        (5, "handoff_completed", "e6"),
    ];
    assert_eq!(history.len(), want.len());
    for (got, want) in history.iter().zip(want) {
        assert_eq!((got.0, got.1.as_str(), got.2.as_str()), want);
    }
    let refs: Vec<(String, String)> = sqlx::query_as(
        "select ref_type, ref_id from handoff_references where org_id = $1 order by 1, 2",
    )
    .bind(org.id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let refs: Vec<(&str, &str)> = refs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        refs,
        [("instruction", "i1"), ("knowledge", "k1"), ("tool", "t1")]
    );
    let session: (Option<String>, bool) =
        sqlx::query_as("select sentiment, ended_at is not null from sessions where org_id = $1")
            .bind(org.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(session, (None, true));
}

#[tokio::test]
async fn session_shared_id_call_and_agent_rules() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let base = vec![
        session("e1", "s1"),
        ev(
            "e2",
            "handoff.initiated",
            1,
            json!({"handoff_id": "h1", "session_id": "s1", "shared_id": "x", "reasons": ["ai_implied_handoff"]}),
        ),
    ];
    assert_eq!(app.post_events_ok(&token, &base).await, (2, 0));
    let refused: &[(Value, &str)] = &[
        (session("f1", "s1"), "already started"),
        (
            ev("f2", "session.ended", 3, json!({"session_id": "nope"})),
            "never started",
        ),
        (
            ev(
                "f3",
                "handoff.initiated",
                3,
                json!({"handoff_id": "h9", "session_id": "nope", "reasons": ["ai_implied_handoff"]}),
            ),
            "never started",
        ),
        (
            ev(
                "f4",
                "handoff.initiated",
                3,
                json!({"handoff_id": "h9", "session_id": "s1", "shared_id": "x", "reasons": ["ai_implied_handoff"]}),
            ),
            "already belongs to handoff `h1`",
        ),
    ];
    for (event, needle) in refused {
        let body = assert_error(
            app.post_events(&token, std::slice::from_ref(event)).await,
            409,
            "events[0]",
        )
        .await;
        assert!(body["message"].as_str().unwrap().contains(needle), "{body}");
    }
    assert_eq!(
        app.post_events_ok(
            &token,
            &[ev(
                "e3",
                "session.ended",
                4,
                json!({"session_id": "s1", "sentiment": "happy"})
            )]
        )
        .await,
        (1, 0)
    );
    let body = assert_error(
        app.post_events(
            &token,
            &[ev("f5", "session.ended", 5, json!({"session_id": "s1"}))],
        )
        .await,
        409,
        "already ended",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nothing was stored")
    );

    let call = |id: &str, call: &str| {
        ev(
            id,
            "call.completed",
            6,
            json!({"call_id": call, "agent_id": "a1", "started_at": "2026-11-02T08:00:00Z", "duration_seconds": 61.5, "outcome": "resolved"}),
        )
    };
    assert_eq!(
        app.post_events_ok(&token, &[call("c-e1", "c1")]).await,
        (1, 0)
    );
    assert_error(
        app.post_events(&token, &[call("c-e2", "c1")]).await,
        409,
        "already recorded",
    )
    .await;

    let agents = vec![
        ev(
            "a1",
            "agent.upserted",
            7,
            json!({"agent_id": "ag", "name": "Ava", "status": "active"}),
        ),
        ev(
            "a2",
            "agent.upserted",
            8,
            json!({"agent_id": "ag", "name": "Ava 2", "status": "inactive"}),
        ),
        ev("a3", "agent.deleted", 9, json!({"agent_id": "ag"})),
        ev(
            "a4",
            "agent.deleted",
            9,
            json!({"agent_id": "never-declared"}),
        ),
    ];
    assert_eq!(app.post_events_ok(&token, &agents).await, (4, 0));
    let rows: Vec<(String, String, String, bool)> = sqlx::query_as("select agent_id, name, status, deleted_at is not null from agents where org_id = $1 order by 1")
        .bind(org.id)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                "ag".to_owned(),
                "Ava 2".to_owned(),
                "inactive".to_owned(),
                true
            ),
            (
                "never-declared".to_owned(),
                "never-declared".to_owned(),
                "active".to_owned(),
                true
            ),
        ]
    );
}

#[tokio::test]
async fn concurrent_identical_batches_store_once() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let mut batch = Vec::new();
    for i in 0..50 {
        batch.push(session(&format!("s{i}"), &format!("sess{i}")));
        batch.push(initiated(
            &format!("h{i}"),
            &format!("hand{i}"),
            &format!("sess{i}"),
        ));
    }
    let sends = (0..8).map(|_| app.post_events_ok(&token, &batch));
    let results = futures::future::join_all(sends).await;
    let accepted: u64 = results.iter().map(|r| r.0).sum();
    let duplicates: u64 = results.iter().map(|r| r.1).sum();
    assert_eq!(accepted, 100, "{results:?}");
    assert_eq!(duplicates, 700);
    assert!(
        results.contains(&(100, 0)),
        "one request stored all: {results:?}"
    );
    assert_eq!(count(&app, "events", org.id).await, 100);
    assert_eq!(count(&app, "handoffs", org.id).await, 50);
    assert_eq!(count(&app, "handoff_states", org.id).await, 50);
}

#[tokio::test]
async fn two_organizations_with_identical_ids_never_meet() {
    let app = TestApp::spawn().await;
    let a = app.org("org-a", None, None).await;
    let b = app.org("org-b", None, None).await;
    let (ta, tb) = (app.writer(&a).await, app.writer(&b).await);
    let batch = vec![
        session("e1", "s1"),
        initiated("e2", "h1", "s1"),
        ev("e3", "handoff.completed", 2, json!({"handoff_id": "h1"})),
    ];
    assert_eq!(app.post_events_ok(&ta, &batch).await, (3, 0));
    // Same ids in B are new there, and B's state machine starts from nothing.
    assert_eq!(app.post_events_ok(&tb, &batch[..2]).await, (2, 0));
    let state: String =
        sqlx::query_scalar("select state from handoffs where org_id = $1 and handoff_id = 'h1'")
            .bind(b.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(state, "handoff_initiated");
    for table in ["events", "sessions", "handoffs"] {
        assert_eq!(
            count(&app, table, a.id).await,
            if table == "events" { 3 } else { 1 }
        );
        assert_eq!(
            count(&app, table, b.id).await,
            if table == "events" { 2 } else { 1 }
        );
    }
}

#[tokio::test]
async fn auth_matrix() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("r2").await;
    let org = app.org("acme2", Some("r2"), None).await;
    let events = [session("e1", "s1")];

    let res = app
        .client
        .post(app.url("/v1/events"))
        .json(&json!({"events": events}))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "missing token").await;
    assert_error(app.post_events("garbage", &events).await, 401, "malformed").await;
    let reader = app.reader(&org).await;
    let body = assert_error(app.post_events(&reader, &events).await, 403, "").await;
    assert_eq!(
        body["message"],
        "Insufficient token scope. Required: write_all"
    );
    let rtoken = app
        .token(
            baton::auth::Subject::Reseller(reseller.id),
            &[baton::auth::Scope::ReadAll, baton::auth::Scope::WriteAll],
        )
        .await;
    assert_error(app.post_events(&rtoken, &events).await, 403, "reseller").await;
    assert_eq!(count(&app, "events", org.id).await, 0);
    // x-api-key works too.
    let writer = app.writer(&org).await;
    let res = app
        .client
        .post(app.url("/v1/events"))
        .header("x-api-key", writer)
        .json(&json!({"events": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// Events belong to an existing organization (checked once per insert statement, not per row):
/// an event of an unknown organization is refused, and an organization keeps its events.
#[tokio::test]
async fn events_belong_to_an_existing_organization() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    assert_eq!(
        app.post_events_ok(&token, &[session("e1", "s1")]).await,
        (1, 0)
    );

    let insert = |org_id: uuid::Uuid| {
        sqlx::query(
            r#"insert into events (org_id, event_id, type, occurred_at, body)
               values ($1, 'x', 'session.started', now(), '{}')"#,
        )
        .bind(org_id)
    };
    let unknown = insert(uuid::Uuid::new_v4()).execute(&app.pool).await;
    let err = unknown.expect_err("an event of an unknown organization");
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23503"),
        "{err}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");

    // An organization with events can be neither deleted nor renumbered; one without can.
    let empty = app.org("empty", None, None).await;
    for statement in [
        "delete from organizations where id = $1",
        "update organizations set id = gen_random_uuid() where id = $1",
    ] {
        let refused = sqlx::query(statement)
            .bind(org.id)
            .execute(&app.pool)
            .await
            .expect_err("the organization has events");
        assert_eq!(
            refused
                .as_database_error()
                .and_then(|e| e.code())
                .as_deref(),
            Some("23503"),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("still has events"),
            "{refused}"
        );
    }
    sqlx::query("delete from organizations where id = $1")
        .bind(empty.id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(count(&app, "events", org.id).await, 1);
}
