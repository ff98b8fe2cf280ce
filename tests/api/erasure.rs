//! `DELETE /v1/sessions/{session_id}`: a session's personal data erased, every figure of every
//! endpoint unchanged, the erasure recorded without the session id, and a re-sent event unable to
//! bring the data back (nor `baton rebuild`).

use baton::auth::{Scope, Subject};
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestApp, assert_error};

/// The personal fields of a handoff as the API shows it.
const PERSONAL: &[&str] = &["shared_id", "summary", "explanation", "operator_id"];

/// Every figure the API gives for `orgs` and their reseller: both reports in two zones, the
/// reseller's metrics, and every page of every organization's handoff list. Returned as
/// `(path, answer)` pairs.
pub(crate) async fn figures(
    app: &TestApp,
    orgs: &[(Uuid, String)],
    reseller: &(Uuid, String),
) -> Vec<(String, Value)> {
    let start = (Utc::now() - Duration::days(400)).format("%Y-%m-%d");
    let end = (Utc::now() + Duration::days(1)).format("%Y-%m-%d");
    let mut out = Vec::new();
    let read = |path: String, token: String| {
        let app = &app;
        async move {
            let res = app.get(&path, &token).await;
            let status = res.status();
            let answer = res.json::<Value>().await.unwrap();
            assert_eq!(status, 200, "{path}: {answer}");
            (path, answer)
        }
    };
    for (i, (_, token)) in orgs.iter().enumerate() {
        let first = out.len();
        // Ranges longer than 366 days are refused: two consecutive ones.
        let middle = (Utc::now() - Duration::days(200)).format("%Y-%m-%d");
        for (from, to) in [
            (start.to_string(), middle.to_string()),
            (middle.to_string(), end.to_string()),
        ] {
            for zone in ["UTC", "Asia/Kolkata"] {
                out.push(
                    read(
                        format!(
                            "/handoff-analytics?start_date={from}&end_date={to}&timezone={zone}"
                        ),
                        token.clone(),
                    )
                    .await,
                );
                out.push(
                    read(
                        format!("/v1/metrics?startDate={from}&endDate={to}&timezone={zone}"),
                        token.clone(),
                    )
                    .await,
                );
            }
        }
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/handoffs?limit=500&next={c}"),
                None => "/v1/handoffs?limit=500".to_owned(),
            };
            let (path, page) = read(path, token.clone()).await;
            cursor = page["next"].as_str().map(str::to_owned);
            out.push((path, page));
            if cursor.is_none() {
                break;
            }
        }
        for (path, _) in &mut out[first..] {
            *path = format!("organization {i}: {path}");
        }
    }
    let middle = (Utc::now() - Duration::days(200)).format("%Y-%m-%d");
    out.push(
        read(
            format!(
                "/v1/metrics?startDate={middle}&endDate={end}&resellerId={}",
                reseller.0
            ),
            reseller.1.clone(),
        )
        .await,
    );
    out
}

/// Asserts two sets of figures equal, naming the first answer that differs.
pub(crate) fn assert_same_figures(before: &[(String, Value)], after: &[(String, Value)]) {
    assert_eq!(before.len(), after.len());
    for ((path, b), (_, a)) in before.iter().zip(after) {
        if b != a {
            let (bs, as_) = (b.to_string(), a.to_string());
            let at = bs
                .chars()
                .zip(as_.chars())
                .take_while(|(x, y)| x == y)
                .count();
            let around = |s: &str| {
                s.chars()
                    .skip(at.saturating_sub(200))
                    .take(300)
                    .collect::<String>()
            };
            panic!(
                "{path} changed at {at}:\n before: {}\n after:  {}",
                around(&bs),
                around(&as_)
            );
        }
    }
}

/// The demo's 90 days in organizations `a` and `b` of reseller `r`: `(orgs, reseller, events)`.
pub(crate) async fn demo_tenants(
    app: &TestApp,
) -> (Vec<(Uuid, String)>, (Uuid, String), Vec<Value>) {
    let reseller = app.reseller("r").await;
    let a = app.org("a", Some("r"), None).await;
    let b = app.org("b", Some("r"), Some("Europe/Berlin")).await;
    let events = baton::demo::generate(Utc::now() - Duration::hours(1), chrono_tz::UTC);
    let mut orgs = Vec::new();
    for org in [&a, &b] {
        let token = app.writer(org).await;
        for chunk in events.chunks(2_000) {
            app.post_events_ok(&token, chunk).await;
        }
        orgs.push((org.id, token));
    }
    let reseller_token = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    (orgs, (reseller.id, reseller_token), events)
}

/// What the handoff lists should read after erasing `session` of the first organization: the
/// same, with that session's handoffs' personal fields null.
fn blanked(figures: &[(String, Value)], session: &str) -> Vec<(String, Value)> {
    let mut out = figures.to_vec();
    for (_, answer) in out
        .iter_mut()
        .filter(|(p, _)| p.starts_with("organization 0:"))
    {
        if let Some(handoffs) = answer.get_mut("handoffs").and_then(Value::as_array_mut) {
            for h in handoffs
                .iter_mut()
                .filter(|h| h["session"]["session_id"] == session)
            {
                for field in PERSONAL {
                    h[*field] = Value::Null;
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn erasing_a_session_keeps_every_figure_and_forgets_its_personal_data() {
    let app = TestApp::spawn().await;
    let (orgs, reseller, events) = demo_tenants(&app).await;
    let (org, token) = orgs[0].clone();
    let (showcase, shared, agent) = baton::demo::SHOWCASE_HANDOFF;
    let session: String =
        sqlx::query_scalar("select session_id from handoffs where org_id = $1 and handoff_id = $2")
            .bind(org)
            .bind(showcase)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    // The session's handoffs, and the raw events that carry their personal data: worked out
    // from the stored rows, independently of the erasure code.
    let handoffs: Vec<String> = sqlx::query_scalar(
        "select handoff_id from handoffs where org_id = $1 and session_id = $2 order by 1",
    )
    .bind(org)
    .bind(&session)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let personal_events = |org: Uuid| {
        let handoffs = handoffs.clone();
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                r#"select count(*) from events where org_id = $1 and body->>'handoff_id' = any($2)
                   and (body::jsonb ?| array['data', 'summary', 'explanation', 'shared_id', 'operator_id'])"#,
            )
            .bind(org)
            .bind(&handoffs)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let carrying = personal_events(org).await;
    assert!(carrying >= 1, "the showcase handoff carries data");
    let before = figures(&app, &orgs, &reseller).await;
    let events_before: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let polyai_before: Value = app
        .get(
            &format!("/v1/{org}/{agent}/handoff_state?shared_id={shared}"),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        polyai_before["data"]
            .as_object()
            .is_some_and(|d| !d.is_empty())
    );

    let path = format!("/v1/sessions/{session}");
    let res = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(res.text().await.unwrap().is_empty());

    // Every figure as before; in the lists only the erased session's personal fields changed.
    let after = figures(&app, &orgs, &reseller).await;
    assert_same_figures(&blanked(&before, &session), &after);
    assert!(before != after, "the list showed personal fields before");
    let events_after: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events_after, events_before);
    assert_eq!(personal_events(org).await, 0);
    // The other organization's copy of the same session is untouched.
    assert_eq!(personal_events(orgs[1].0).await, carrying);
    let detail: Value = app
        .get(&format!("/v1/handoffs/{showcase}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["data"], json!({}));
    for field in PERSONAL {
        assert_eq!(detail["handoff"][*field], Value::Null, "{field}");
    }
    let res = app
        .get(
            &format!("/v1/{org}/{agent}/handoff_state?shared_id={shared}"),
            &token,
        )
        .await;
    assert_eq!(res.status(), 404);
    let by_id: Value = app
        .get(
            &format!("/v1/{org}/{agent}/handoff_state?id={showcase}"),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_id, json!({"id": showcase, "data": {}}));

    // Recorded without the session id.
    let record: Value = sqlx::query_scalar("select to_jsonb(e) from session_erasures e")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!record.to_string().contains(&session), "{record}");
    assert_eq!(record["org_id"], json!(org));
    assert_eq!(record["handoffs"], json!(handoffs.len()));
    assert_eq!(record["events"], json!(carrying));

    // The session's events sent again: duplicates, and the data stays erased.
    let of_session: Vec<Value> = events
        .iter()
        .filter(|e| {
            e["session_id"] == session.as_str()
                || handoffs.iter().any(|h| e["handoff_id"] == h.as_str())
        })
        .cloned()
        .collect();
    assert!(of_session.len() >= 2);
    let n = of_session.len() as u64;
    assert_eq!(app.post_events_ok(&token, &of_session).await, (0, n));
    assert_eq!(personal_events(org).await, 0);
    // A new event of the session is accepted without its personal fields (here the session's
    // handoff is closed, so a new handoff in the same session).
    let new = json!({"id": "after-erasure", "type": "handoff.initiated",
        "occurred_at": Utc::now().to_rfc3339(), "handoff_id": "after-erasure", "session_id": session,
        "shared_id": "someone", "summary": "their address", "explanation": "they said who they are",
        "data": {"email": "x@example.com"},
        "reasons": ["user_requested_human_assistance"]});
    assert_eq!(
        app.post_events_ok(&token, std::slice::from_ref(&new)).await,
        (1, 0)
    );
    assert_eq!(app.post_events_ok(&token, &[new]).await, (0, 1));
    let stored: Value = sqlx::query_scalar(
        "select body::jsonb from events where org_id = $1 and event_id = 'after-erasure'",
    )
    .bind(org)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    for field in ["shared_id", "summary", "explanation", "data"] {
        assert!(stored.get(field).is_none(), "{stored}");
    }
    let row: (Option<String>, Option<String>, Option<String>, Value) = sqlx::query_as(
        "select shared_id, summary, explanation, data from handoffs where org_id = $1 and handoff_id = 'after-erasure'",
    )
    .bind(org)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(row, (None, None, None, json!({})));
    // Events of other sessions keep theirs.
    let other = json!({"id": "other", "type": "session.started", "occurred_at": Utc::now().to_rfc3339(),
        "session_id": "other", "channel": "web"});
    let other_handoff = json!({"id": "other-h", "type": "handoff.initiated",
        "occurred_at": Utc::now().to_rfc3339(), "handoff_id": "other-h", "session_id": "other",
        "summary": "kept", "reasons": ["user_requested_human_assistance"]});
    app.post_events_ok(&token, &[other, other_handoff]).await;
    let summary: Option<String> = sqlx::query_scalar(
        "select summary from handoffs where org_id = $1 and handoff_id = 'other-h'",
    )
    .bind(org)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(summary.as_deref(), Some("kept"));

    // A rebuild from the raw events gives the same figures, and the data stays erased.
    let kept = figures(&app, &orgs, &reseller).await;
    baton::admin::rebuild(&app.pool, None).await.unwrap();
    assert_same_figures(&kept, &figures(&app, &orgs, &reseller).await);
    let detail: Value = app
        .get(&format!("/v1/handoffs/{showcase}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["data"], json!({}));

    // Erasing again: 204, nothing more recorded.
    let res = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let records: i64 = sqlx::query_scalar("select count(*) from session_erasures")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(records, 1);
}

#[tokio::test]
async fn the_event_store_refuses_every_other_change() {
    let app = TestApp::spawn().await;
    let org = app.org("a", None, None).await;
    let token = app.writer(&org).await;
    app.post_events_ok(
        &token,
        &[
            json!({"id": "e1", "type": "session.started", "occurred_at": "2026-11-01T00:00:00Z",
                 "session_id": "s1", "channel": "web"}),
        ],
    )
    .await;
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("select set_config('baton.erasing', 'on', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    for change in [
        // A value changed, a key added, another column changed, a row deleted.
        r#"update events set body = '{"id": "e1", "type": "session.started", "occurred_at": "2026-11-01T00:00:00Z", "session_id": "s2", "channel": "web"}'"#,
        r#"update events set body = (body::jsonb || '{"x": 1}')::json"#,
        "update events set occurred_at = occurred_at + interval '1 day'",
        "delete from events",
    ] {
        sqlx::query("savepoint s").execute(&mut *tx).await.unwrap();
        let e = sqlx::query(change).execute(&mut *tx).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{change}: {e}");
        sqlx::query("rollback to savepoint s")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.rollback().await.unwrap();
    // Removing a key without the setting: refused too.
    let e = sqlx::query("update events set body = (body::jsonb - 'channel')::json")
        .execute(&app.pool)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
}

#[tokio::test]
async fn erasure_needs_an_org_token_with_write_all_and_an_own_session() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("r").await;
    let a = app.org("a", Some("r"), None).await;
    let b = app.org("b", Some("r"), None).await;
    let writer_a = app.writer(&a).await;
    let writer_b = app.writer(&b).await;
    app.post_events_ok(
        &writer_a,
        &[
            json!({"id": "e1", "type": "session.started", "occurred_at": "2026-11-01T00:00:00Z",
                 "session_id": "s1", "channel": "web"}),
        ],
    )
    .await;
    let delete = |token: Option<String>, path: &'static str| {
        let req = app.client.delete(app.url(path));
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        async move { req.send().await.unwrap() }
    };
    assert_error(delete(None, "/v1/sessions/s1").await, 401, "").await;
    assert_error(
        delete(Some("nope".into()), "/v1/sessions/s1").await,
        401,
        "",
    )
    .await;
    let reader = app.reader(&a).await;
    assert_error(
        delete(Some(reader), "/v1/sessions/s1").await,
        403,
        "Required: write_all",
    )
    .await;
    let reseller_token = app
        .token(
            Subject::Reseller(reseller.id),
            &[Scope::ReadAll, Scope::WriteAll],
        )
        .await;
    assert_error(
        delete(Some(reseller_token), "/v1/sessions/s1").await,
        403,
        "",
    )
    .await;
    // Another organization's session, an unknown one, a NUL: 404; a query parameter: 400.
    assert_error(
        delete(Some(writer_b), "/v1/sessions/s1").await,
        404,
        "not found",
    )
    .await;
    assert_error(
        delete(Some(writer_a.clone()), "/v1/sessions/s2").await,
        404,
        "not found",
    )
    .await;
    assert_error(
        delete(Some(writer_a.clone()), "/v1/sessions/s%001").await,
        404,
        "not found",
    )
    .await;
    assert_error(
        delete(Some(writer_a.clone()), "/v1/sessions/s1?x=1").await,
        400,
        "x",
    )
    .await;
    let records: i64 = sqlx::query_scalar("select count(*) from session_erasures")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(records, 0);
    assert_eq!(
        delete(Some(writer_a), "/v1/sessions/s1").await.status(),
        204
    );
}
