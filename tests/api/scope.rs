//! The read scope every read endpoint resolves (`baton::auth::scope`): which organization(s) a
//! token reads on each endpoint (missing, unknown, foreign or malformed `organization_id`, org
//! and reseller tokens), and the zone: the explicit `timezone`, else the organization's stored
//! zone, else UTC, with a stored zone that is not an IANA name read as UTC on every endpoint.

use baton::auth::{Scope, Subject};
use baton::store::tenants::Organization;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::fixtures::event;
use crate::common::{TestApp, assert_error};

/// 2026-11-01 20:00 UTC: 2026-11-02 01:30 in Kolkata (+05:30).
const AT: &str = "2026-11-01T20:00:00Z";

/// One session with one handoff (id `{slug}-h`), one call, in the organization.
async fn fill(app: &TestApp, org: &Organization) {
    let token = app.writer(org).await;
    app.post_events_ok(
        &token,
        &[
            event(
                "s",
                "session.started",
                AT,
                json!({"session_id": "s1", "channel": "web", "agent_id": "bot"}),
            ),
            event(
                "h",
                "handoff.initiated",
                AT,
                json!({"handoff_id": format!("{}-h", org.slug), "session_id": "s1",
                       "reasons": ["insufficient_tools"]}),
            ),
            event(
                "c",
                "call.completed",
                AT,
                json!({"call_id": "c1", "agent_id": "bot", "started_at": AT,
                       "duration_seconds": 60, "outcome": "resolved"}),
            ),
        ],
    )
    .await;
}

struct World {
    app: TestApp,
    /// Reseller `channel`'s, in Asia/Kolkata.
    acme: Organization,
    /// Reseller `channel`'s, in UTC.
    beta: Organization,
    /// No reseller.
    other: Organization,
    org_token: String,
    reseller_token: String,
}

async fn world() -> World {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("channel").await;
    let acme = app.org("acme", Some("channel"), Some("Asia/Kolkata")).await;
    let beta = app.org("beta", Some("channel"), None).await;
    let other = app.org("other", None, None).await;
    for org in [&acme, &beta, &other] {
        fill(&app, org).await;
    }
    let org_token = app.reader(&acme).await;
    let reseller_token = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    World {
        app,
        acme,
        beta,
        other,
        org_token,
        reseller_token,
    }
}

/// Each read endpoint that takes an organization parameter: its path (with a query when it
/// needs one), the parameter's name, and whether a reseller token may leave it out (then it
/// reads all of its organizations).
fn endpoints() -> Vec<(&'static str, &'static str, bool)> {
    vec![
        (
            "/handoff-analytics?start_date=2026-11-01",
            "organization_id",
            false,
        ),
        ("/v1/handoffs?limit=5", "organization_id", false),
        ("/v1/handoffs/acme-h?", "organization_id", false),
        (
            "/v1/metrics?startDate=2026-11-01&endDate=2026-11-02",
            "organizationId",
            true,
        ),
        (
            "/v1/api/human_handoff/configuration?",
            "organization_id",
            false,
        ),
        (
            "/v1/api/human_handoff/configuration/revisions?",
            "organization_id",
            false,
        ),
        (
            "/v1/handoff-lifecycle?start_date=2026-11-01",
            "organization_id",
            false,
        ),
        (
            "/handoff-analytics/events?start_date=2026-11-01",
            "organization_id",
            false,
        ),
        ("/v1/exports/handoffs?", "organization_id", false),
        ("/v1/exports/calls?", "organization_id", false),
        ("/v1/exports/events?", "organization_id", false),
    ]
}

fn with(path: &str, param: &str, value: &str) -> String {
    let sep = if path.ends_with('?') { "" } else { "&" };
    format!("{path}{sep}{param}={value}")
}

async fn status(w: &World, path: &str, token: &str) -> u16 {
    w.app.get(path, token).await.status().as_u16()
}

#[tokio::test]
async fn organizations_of_every_read_endpoint() {
    let w = world().await;
    let acme = w.acme.id.to_string();
    let unknown = Uuid::now_v7().to_string();
    let other = w.other.id.to_string();
    for (path, param, reseller_reads_all) in endpoints() {
        // An organization token: its own organization, named or not.
        assert_eq!(status(&w, path, &w.org_token).await, 200, "{path}");
        let own = with(path, param, &acme);
        assert_eq!(status(&w, &own, &w.org_token).await, 200, "{own}");
        // Another tenant's organization, or none at all: the same 404.
        for id in [&other, &unknown, &w.beta.id.to_string()] {
            let p = with(path, param, id);
            let body = assert_error(w.app.get(&p, &w.org_token).await, 404, "not found").await;
            assert_eq!(
                body["message"],
                format!("organization {id} not found"),
                "{p}"
            );
        }
        // Not an id: a 400 naming the parameter, for either token.
        for token in [&w.org_token, &w.reseller_token] {
            let p = with(path, param, "acme");
            assert_error(w.app.get(&p, token).await, 400, param).await;
        }

        // A reseller token: one of its organizations by id.
        assert_eq!(status(&w, &own, &w.reseller_token).await, 200, "{own}");
        for id in [&other, &unknown] {
            let p = with(path, param, id);
            assert_error(w.app.get(&p, &w.reseller_token).await, 404, "not found").await;
        }
        // Naming none: all of them where the endpoint aggregates, else a 400 naming it.
        if reseller_reads_all {
            assert_eq!(status(&w, path, &w.reseller_token).await, 200, "{path}");
        } else {
            let body = assert_error(w.app.get(path, &w.reseller_token).await, 400, param).await;
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("required with a reseller token"),
                "{path}: {body}"
            );
        }
    }
}

#[tokio::test]
async fn polyai_account_is_resolved_by_the_same_rules() {
    let w = world().await;
    let path = |account: &str| format!("/v1/{account}/bot/handoff_state?id=acme-h");
    for account in ["acme", &w.acme.id.to_string()] {
        for token in [&w.org_token, &w.reseller_token] {
            let res = w.app.get(&path(account), token).await;
            assert_eq!(res.status(), 200, "{account}");
        }
    }
    // Another tenant's account, by slug or id, and an unknown one: PolyAI's one 404.
    for account in ["other", &w.other.id.to_string(), "nobody"] {
        for token in [&w.org_token, &w.reseller_token] {
            assert_error(w.app.get(&path(account), token).await, 404, "not found").await;
        }
    }
    // A sibling: the reseller reads it, the organization token does not.
    let beta = "/v1/beta/bot/handoff_state?id=beta-h";
    assert_eq!(status(&w, beta, &w.reseller_token).await, 200);
    assert_error(w.app.get(beta, &w.org_token).await, 404, "not found").await;
}

/// The local days of an analytics report's `trends` with a handoff.
async fn analytics_days(w: &World, token: &str, query: &str) -> Vec<String> {
    let res = w
        .app
        .get(&format!("/handoff-analytics?{query}"), token)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["trends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["count"].as_u64().unwrap() > 0)
        .map(|t| t["date"].as_str().unwrap().to_owned())
        .collect()
}

/// The local days of `/v1/handoff-lifecycle` with an initiated handoff.
async fn lifecycle_days(w: &World, token: &str, query: &str) -> Vec<String> {
    let res = w
        .app
        .get(&format!("/v1/handoff-lifecycle?{query}"), token)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["days"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["initiated"].as_u64().unwrap() > 0)
        .map(|d| d["date"].as_str().unwrap().to_owned())
        .collect()
}

/// The local days of `/v1/metrics` with a call.
async fn metrics_days(w: &World, token: &str, query: &str) -> Vec<(String, i64)> {
    let res = w.app.get(&format!("/v1/metrics?{query}"), token).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["data"]["dailyVolume"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["totalCalls"].as_i64().unwrap() > 0)
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_owned(),
                d["totalCalls"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The handoff ids `/v1/handoffs` lists.
async fn listed(w: &World, token: &str, query: &str) -> Vec<String> {
    let res = w.app.get(&format!("/v1/handoffs?{query}"), token).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["handoffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["handoff_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn zone_explicit_else_stored_else_utc() {
    let w = world().await;
    let acme = format!("organization_id={}", w.acme.id);
    let acme_camel = format!("organizationId={}", w.acme.id);
    let range = "start_date=2026-11-01&end_date=2026-11-02";
    let camel = "startDate=2026-11-01&endDate=2026-11-02";
    // 20:00 UTC on November 1 is 01:30 on November 2 in Kolkata, acme's stored zone: for its
    // own token and for the reseller naming it.
    for (token, org, org_camel) in [
        (&w.org_token, "", ""),
        (&w.reseller_token, &*acme, &*acme_camel),
    ] {
        assert_eq!(
            analytics_days(&w, token, &format!("{range}&{org}")).await,
            ["2026-11-02"]
        );
        assert_eq!(
            lifecycle_days(&w, token, &format!("{range}&{org}")).await,
            ["2026-11-02"]
        );
        assert_eq!(
            metrics_days(&w, token, &format!("{camel}&{org_camel}")).await,
            [("2026-11-02".to_owned(), 1)]
        );
        // November 2 in Kolkata holds the handoff; November 2 in UTC does not.
        let day = "start_date=2026-11-02&end_date=2026-11-02";
        assert_eq!(listed(&w, token, &format!("{day}&{org}")).await, ["acme-h"]);
        assert!(
            listed(&w, token, &format!("{day}&timezone=UTC&{org}"))
                .await
                .is_empty()
        );
        // The parameter wins.
        assert_eq!(
            analytics_days(&w, token, &format!("{range}&timezone=UTC&{org}")).await,
            ["2026-11-01"]
        );
        assert_eq!(
            lifecycle_days(&w, token, &format!("{range}&timezone=UTC&{org}")).await,
            ["2026-11-01"]
        );
        assert_eq!(
            metrics_days(&w, token, &format!("{camel}&timezone=UTC&{org_camel}")).await,
            [("2026-11-01".to_owned(), 1)]
        );
    }
    // A reseller's organizations together have no zone of their own: UTC (acme's and beta's
    // calls; other's is not the reseller's).
    assert_eq!(
        metrics_days(&w, &w.reseller_token, camel).await,
        [("2026-11-01".to_owned(), 2)]
    );

    // A stored zone that is not an IANA name (edited by hand): UTC on every endpoint, not an
    // error; an explicit zone still applies.
    sqlx::query("update organizations set timezone = 'Mars/Base' where id = $1")
        .bind(w.acme.id)
        .execute(&w.app.pool)
        .await
        .unwrap();
    for (token, org, org_camel) in [
        (&w.org_token, "", ""),
        (&w.reseller_token, &*acme, &*acme_camel),
    ] {
        assert_eq!(
            analytics_days(&w, token, &format!("{range}&{org}")).await,
            ["2026-11-01"]
        );
        let res = w
            .app
            .get(&format!("/handoff-analytics?{range}&{org}"), token)
            .await;
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["start_date"], "2026-11-01T00:00:00Z");
        assert_eq!(
            metrics_days(&w, token, &format!("{camel}&{org_camel}")).await,
            [("2026-11-01".to_owned(), 1)]
        );
        let day = "start_date=2026-11-01&end_date=2026-11-01";
        assert_eq!(listed(&w, token, &format!("{day}&{org}")).await, ["acme-h"]);
        assert_eq!(
            analytics_days(&w, token, &format!("{range}&timezone=Asia/Kolkata&{org}")).await,
            ["2026-11-02"]
        );
    }
    // An unknown zone as a parameter is still the caller's mistake: a 400 naming it.
    assert_error(
        w.app
            .get("/handoff-analytics?timezone=Mars/Base", &w.org_token)
            .await,
        400,
        "timezone",
    )
    .await;
}

#[tokio::test]
async fn malformed_scope_values_are_reported_together() {
    let w = world().await;
    // The list's own filters and the scope's values, in one 400.
    let body = assert_error(
        w.app
            .get(
                "/v1/handoffs?state=X&organization_id=acme&timezone=Mars/Base",
                &w.org_token,
            )
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
    assert_eq!(fields, ["state", "organization_id", "timezone"]);
    // Metrics: both missing bounds at once.
    let body = assert_error(
        w.app.get("/v1/metrics", &w.org_token).await,
        400,
        "startDate",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("endDate"),
        "{body}"
    );
    // resellerId must be the token's reseller (or its organization's).
    let foreign = Uuid::now_v7();
    for token in [&w.org_token, &w.reseller_token] {
        let path =
            format!("/v1/metrics?startDate=2026-11-01&endDate=2026-11-02&resellerId={foreign}");
        assert_error(w.app.get(&path, token).await, 404, "reseller").await;
    }
}
