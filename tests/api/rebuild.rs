//! `baton rebuild`: projections and rollups recomputed from the raw events equal what ingest had
//! kept, table by table and answer by answer.

use baton::auth::{Scope, Subject};
use chrono::{Duration, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::TestApp;

/// Tables whose rows carry `column` (`org_id` or `reseller_id`), from the catalog rather than
/// from a list, so that a table added later and forgotten by the rebuild fails this test.
/// Left out: what events do not derive (the events themselves, tenants, tokens, the
/// configuration documents).
pub(crate) async fn derived_tables(pool: &PgPool, column: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select table_name::text from information_schema.columns
         where table_schema = 'public' and column_name = $1
           and table_name not in ('events', 'organizations', 'resellers', 'api_tokens',
                                  'handoff_configurations', 'handoff_configuration_revisions')
         order by 1",
    )
    .bind(column)
    .fetch_all(pool)
    .await
    .unwrap()
}

const ROLLUP_TABLES: &[&str] = &[
    "session_rollups",
    "handoff_rollup_totals",
    "handoff_rollup_breakdown",
    "handoff_session_reasons",
    "handoff_lifecycle",
    "handoff_lifecycle_rollups",
    "call_metric_rollups",
    "call_escalation_rollups",
    "call_volume_days",
];

/// Every row of `table` for `key` (`org_id` or `reseller_id` = `id`), in a canonical order. The
/// reseller rollups' `version` is left out: it is a change counter, renewed by every write.
/// Fractional sums are compared to 12 significant digits: float addition depends on its order,
/// which a hash map's iteration changes from run to run (the answers round them, and are
/// compared exactly below).
async fn rows(pool: &PgPool, table: &str, key: &str, id: Uuid) -> String {
    let rows: Value = sqlx::query_scalar(&format!(
        "select coalesce(jsonb_agg(x order by x::text), '[]')
         from (select to_jsonb(t) - 'version' as x from {table} t where {key} = $1) s"
    ))
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    let mut rows = rows;
    round_floats(&mut rows);
    rows.to_string()
}

fn round_floats(v: &mut Value) {
    match v {
        // Every number: a float sum that happens to be whole prints as an integer.
        Value::Number(n) => {
            let x = n.as_f64().unwrap();
            *v = Value::String(format!("{x:.11e}"));
        }
        Value::Array(items) => items.iter_mut().for_each(round_floats),
        Value::Object(map) => map.values_mut().for_each(round_floats),
        _ => {}
    }
}

/// Everything derived from the events of `orgs` and `reseller`: every table, then every answer.
pub(crate) async fn everything(
    app: &TestApp,
    orgs: &[(Uuid, String)],
    reseller: (Uuid, String),
) -> Vec<String> {
    let mut out = Vec::new();
    let org_tables = derived_tables(&app.pool, "org_id").await;
    assert!(org_tables.len() >= 13, "{org_tables:?}");
    for (org, _) in orgs {
        for table in &org_tables {
            out.push(format!(
                "{table}: {}",
                rows(&app.pool, table, "org_id", *org).await
            ));
        }
    }
    let reseller_tables = derived_tables(&app.pool, "reseller_id").await;
    assert!(reseller_tables.len() >= 4, "{reseller_tables:?}");
    for table in &reseller_tables {
        out.push(format!(
            "{table}: {}",
            rows(&app.pool, table, "reseller_id", reseller.0).await
        ));
    }
    let start = (Utc::now() - Duration::days(100)).format("%Y-%m-%d");
    let end = (Utc::now() + Duration::days(1)).format("%Y-%m-%d");
    let (showcase, shared, agent) = baton::demo::SHOWCASE_HANDOFF;
    for (org, token) in orgs {
        let mut paths = vec![
            format!("/handoff-analytics?start_date={start}&end_date={end}"),
            format!("/handoff-analytics?start_date={start}&end_date={end}&timezone=Asia/Kolkata"),
            format!("/v1/metrics?startDate={start}&endDate={end}"),
            format!("/v1/metrics?startDate={start}&endDate={end}&timezone=America/New_York"),
            format!(
                "/v1/handoff-lifecycle?start_date={start}&end_date={end}&group_by=reason&compare=previous_period"
            ),
            format!(
                "/v1/handoff-lifecycle?start_date={start}&end_date={end}&timezone=Asia/Kolkata&group_by=agent"
            ),
            format!("/v1/handoffs/{showcase}"),
            format!("/v1/{org}/{agent}/handoff_state?shared_id={shared}"),
        ];
        // Every page of the handoff list.
        let mut next: Option<String> = None;
        loop {
            let path = match &next {
                Some(c) => format!("/v1/handoffs?limit=500&cursor={c}"),
                None => "/v1/handoffs?limit=500".to_owned(),
            };
            let page: Value = app.get(&path, token).await.json().await.unwrap();
            next = page["next_cursor"].as_str().map(str::to_owned);
            out.push(page.to_string());
            if next.is_none() {
                break;
            }
        }
        for path in paths.drain(..) {
            let res = app.get(&path, token).await;
            assert_eq!(res.status(), 200, "{path}");
            out.push(format!("{path}: {}", res.text().await.unwrap()));
        }
    }
    let path = format!(
        "/v1/metrics?startDate={start}&endDate={end}&resellerId={}",
        reseller.0
    );
    let res = app.get(&path, &reseller.1).await;
    assert_eq!(res.status(), 200, "{path}");
    out.push(format!("{path}: {}", res.text().await.unwrap()));
    out
}

/// Equal, or a short message naming the first table or answer that differs, and where.
pub(crate) fn assert_same(kept: &[String], now: &[String]) {
    assert_eq!(kept.len(), now.len());
    for (k, n) in kept.iter().zip(now) {
        if k != n {
            let at = k.chars().zip(n.chars()).take_while(|(a, b)| a == b).count();
            let name: String = k.chars().take(60).collect();
            let around = |s: &str| {
                s.chars()
                    .skip(at.saturating_sub(80))
                    .take(200)
                    .collect::<String>()
            };
            panic!(
                "{name}… differs at {at}:\n kept: {}\n now:  {}",
                around(k),
                around(n)
            );
        }
    }
}

#[tokio::test]
async fn a_rebuild_from_the_raw_events_equals_what_ingest_kept() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("r").await;
    let a = app.org("a", Some("r"), None).await;
    let b = app.org("b", Some("r"), Some("Asia/Kolkata")).await;
    let c = app.org("c", None, None).await;
    // The demo's 90 days (sessions on every channel, handoffs with retries, custom states and
    // data, agents declared and deleted, calls) in each organization, in batches as a client
    // sends them.
    let anchor = Utc::now() - Duration::hours(1);
    let events = baton::demo::generate(anchor, chrono_tz::UTC);
    assert!(events.len() > 5_000);
    let mut orgs = Vec::new();
    for org in [&a, &b, &c] {
        let token = app.writer(org).await;
        for chunk in events.chunks(1_000) {
            let res = app.post_events(&token, chunk).await;
            assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        }
        orgs.push((org.id, token));
    }
    let reseller_token = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    let reseller = (reseller.id, reseller_token);
    let kept = everything(&app, &orgs, reseller.clone()).await;

    // Every rollup row of `a` gone, and its reseller's; one projection row altered.
    for table in ROLLUP_TABLES {
        sqlx::query(&format!("delete from {table} where org_id = $1"))
            .bind(a.id)
            .execute(&app.pool)
            .await
            .unwrap();
    }
    for table in derived_tables(&app.pool, "reseller_id").await {
        sqlx::query(&format!("delete from {table} where reseller_id = $1"))
            .bind(reseller.0)
            .execute(&app.pool)
            .await
            .unwrap();
    }
    sqlx::query("update handoffs set state = 'handoff_failed', attempts = 9 where org_id = $1")
        .bind(a.id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_ne!(everything(&app, &orgs, reseller.clone()).await, kept);

    // One organization of a reseller: the reseller's other organization is rebuilt too.
    let done = baton::admin::rebuild(&app.pool, Some("a")).await.unwrap();
    assert_eq!((done.organizations, done.resellers), (2, 1));
    assert_eq!(done.events, 2 * events.len() as u64);
    let handoffs: i64 = sqlx::query_scalar("select count(*) from handoffs where org_id = $1")
        .bind(a.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(done.handoffs, 2 * handoffs as u64);
    assert_same(&kept, &everything(&app, &orgs, reseller.clone()).await);

    // Every organization.
    let done = baton::admin::rebuild(&app.pool, None).await.unwrap();
    assert_eq!((done.organizations, done.resellers), (3, 1));
    assert_same(&kept, &everything(&app, &orgs, reseller.clone()).await);

    // Ingest carries on where the rebuild left off: a re-sent batch is all duplicates.
    let res = app.post_events(&orgs[0].1, &events[..1_000]).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(0), Some(1_000))
    );
}

#[tokio::test]
async fn rebuilding_an_unknown_organization_says_so() {
    let app = TestApp::spawn().await;
    let e = baton::admin::rebuild(&app.pool, Some("nope"))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "no organization with slug `nope`");
}
