//! Handoff read benchmark (not a test): `GET /v1/handoffs` (first page, deep cursor pages,
//! filters), `GET /v1/handoffs/{id}` and PolyAI's `handoff_state`, against a release build of
//! `baton serve` on a fresh embedded PostgreSQL, for a large tenant and a small one. The
//! projection tables are filled directly with `insert … select generate_series(…)` (rows shaped
//! as ingestion writes them), since pushing millions of events through HTTP takes too long here.
//!
//! Run: `cargo bench --bench handoffs` (env: BENCH_HANDOFFS, default 1000000 for the large
//! tenant; the small one has 10000; BENCH_REQUESTS per scenario, default 200).
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use baton::auth::{Scope, Subject};
use baton::domain::handoffs::{Position, encode_cursor};
use baton::pg::{Cluster, ClusterOptions};
use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;

const DAYS: f64 = 90.0;

fn base() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-08-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Seconds between two handoffs of a tenant with `n` of them over 90 days.
fn spacing(n: usize) -> f64 {
    DAYS * 86_400.0 / n as f64
}

/// The first initiation of handoff `g` (1-based) of a tenant with `n`.
fn time_of(g: usize, n: usize) -> DateTime<Utc> {
    base() + chrono::Duration::microseconds((g as f64 * spacing(n) * 1e6).round() as i64)
}

/// Fills the projections of `org` with `n` handoffs, one session each: 10% failed, 10% open, 10%
/// in a custom state, 70% completed; one in seven carries `prohibited_topic`; sessions of every
/// fifth handoff have no agent.
async fn load(pool: &PgPool, org: Uuid, n: usize) {
    let (n, step) = (n as i64, spacing(n));
    for sql in [
        r#"insert into sessions (org_id, session_id, channel, agent_id, started_at, ended_at)
           select $1, 's' || g, 'web', case when g % 5 = 0 then null else 'agent-' || (g % 5) end,
                  $3::timestamptz + make_interval(secs => g * $4::float8) - interval '1 minute',
                  $3::timestamptz + make_interval(secs => g * $4::float8) + interval '5 minutes'
           from generate_series(1, $2::bigint) g"#,
        r#"insert into handoffs (org_id, handoff_id, session_id, shared_id, state, attempts,
               transitions, reasons, sentiment, destination, summary, data, operator_id, error,
               initiated_at, last_initiated_at, completed_at, failed_at, updated_at)
           select $1, 'h' || g, 's' || g, 'sh' || g,
                  case g % 10 when 0 then 'handoff_failed' when 1 then 'handoff_initiated'
                              when 2 then 'customer_refund' else 'handoff_completed' end,
                  1, case g % 10 when 1 then 1 else 2 end,
                  case when g % 7 = 0 then array['prohibited_topic']
                       else array['user_requested_human_assistance', 'insufficient_knowledge'] end,
                  'negative', 'support_queue', 'Customer ' || g || ' wants a refund.',
                  jsonb_build_object('customer_id', g, 'step', 'start'),
                  case when g % 10 >= 3 then 'op-' || (g % 13) end,
                  case when g % 10 = 0 then 'queue closed' end,
                  t, t,
                  case when g % 10 >= 3 then t + interval '1 minute' end,
                  case when g % 10 = 0 then t + interval '1 minute' end,
                  case when g % 10 = 1 then t else t + interval '1 minute' end
           from generate_series(1, $2::bigint) g,
                lateral (select $3::timestamptz + make_interval(secs => g * $4::float8) as t) x"#,
        r#"insert into handoff_states (org_id, handoff_id, seq, state, occurred_at, event_id)
           select $1, 'h' || g, 1, 'handoff_initiated',
                  $3::timestamptz + make_interval(secs => g * $4::float8), 'e' || g || '-1'
           from generate_series(1, $2::bigint) g
           union all
           select $1, 'h' || g, 2,
                  case g % 10 when 0 then 'handoff_failed' when 2 then 'customer_refund'
                              else 'handoff_completed' end,
                  $3::timestamptz + make_interval(secs => g * $4::float8) + interval '1 minute',
                  'e' || g || '-2'
           from generate_series(1, $2::bigint) g where g % 10 <> 1"#,
        r#"insert into handoff_references (org_id, handoff_id, ref_type, ref_id)
           select $1, 'h' || g, 'instruction', 'i' || (g % 7)
           from generate_series(1, $2::bigint) g"#,
    ] {
        sqlx::query(sql)
            .bind(org)
            .bind(n)
            .bind(base())
            .bind(step)
            .execute(pool)
            .await
            .unwrap();
    }
}

struct Scenario {
    name: &'static str,
    paths: Vec<String>,
}

async fn measure(client: &reqwest::Client, base: &str, token: &str, s: &Scenario) -> String {
    for path in s.paths.iter().take(20) {
        let res = client
            .get(format!("{base}{path}"))
            .header("x-api-key", token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}: {}", res.text().await.unwrap());
    }
    let mut latencies = Vec::with_capacity(s.paths.len());
    let mut items = 0usize;
    for path in &s.paths {
        let t = Instant::now();
        let res = client
            .get(format!("{base}{path}"))
            .header("x-api-key", token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        latencies.push(t.elapsed());
        items += body["handoffs"].as_array().map(|a| a.len()).unwrap_or(1);
    }
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    format!(
        "| {} | {:.2} | {:.2} | {:.1} |",
        s.name,
        pct(50).as_secs_f64() * 1e3,
        pct(99).as_secs_f64() * 1e3,
        items as f64 / latencies.len() as f64
    )
}

fn scenarios(slug: &str, n: usize, requests: usize) -> Vec<Scenario> {
    let mut rng = rand::thread_rng();
    let mut pick = || rng.gen_range(1..=n);
    let cursor = |g: usize| {
        encode_cursor(&Position {
            initiated_at: time_of(g, n),
            handoff_id: format!("h{g}"),
        })
    };
    let repeat = |f: &mut dyn FnMut() -> String| (0..requests).map(|_| f()).collect::<Vec<_>>();
    let day = |d: i64| {
        (base() + chrono::Duration::days(d))
            .format("%Y-%m-%d")
            .to_string()
    };
    vec![
        Scenario {
            name: "list, first page (limit 50)",
            paths: repeat(&mut || "/v1/handoffs".to_owned()),
        },
        Scenario {
            name: "list, page at a random cursor (limit 50)",
            paths: repeat(&mut || format!("/v1/handoffs?next={}", cursor(pick()))),
        },
        Scenario {
            name: "list, limit 500 at a random cursor",
            paths: repeat(&mut || format!("/v1/handoffs?limit=500&next={}", cursor(pick()))),
        },
        Scenario {
            name: "list, state=handoff_failed (10%) at a random cursor",
            paths: repeat(&mut || {
                format!("/v1/handoffs?state=handoff_failed&next={}", cursor(pick()))
            }),
        },
        Scenario {
            name: "list, reason=prohibited_topic (1/7) at a random cursor",
            paths: repeat(&mut || {
                format!(
                    "/v1/handoffs?reason=prohibited_topic&next={}",
                    cursor(pick())
                )
            }),
        },
        Scenario {
            name: "list, one random day (start_date=end_date)",
            paths: repeat(&mut || {
                let d = day((pick() % 89) as i64);
                format!("/v1/handoffs?start_date={d}&end_date={d}")
            }),
        },
        Scenario {
            name: "list, session_id of a random session",
            paths: repeat(&mut || format!("/v1/handoffs?session_id=s{}", pick())),
        },
        Scenario {
            name: "GET /v1/handoffs/{id}, random id",
            paths: repeat(&mut || format!("/v1/handoffs/h{}", pick())),
        },
        Scenario {
            name: "PolyAI handoff_state by shared_id",
            paths: repeat(&mut || {
                let g = pick();
                let project = if g % 5 == 0 {
                    "default".to_owned()
                } else {
                    format!("agent-{}", g % 5)
                };
                format!("/v1/{slug}/{project}/handoff_state?shared_id=sh{g}")
            }),
        },
        Scenario {
            name: "PolyAI handoff_state by id",
            paths: repeat(&mut || {
                let g = pick();
                let project = if g % 5 == 0 {
                    "default".to_owned()
                } else {
                    format!("agent-{}", g % 5)
                };
                format!("/v1/{slug}/{project}/handoff_state?id=h{g}")
            }),
        },
    ]
}

fn main() {
    let large = common::env_usize("BENCH_HANDOFFS", 1_000_000);
    let requests = common::env_usize("BENCH_REQUESTS", 200).max(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(large, requests));
}

async fn run(large: usize, requests: usize) {
    let dir = tempfile::Builder::new()
        .prefix("baton-bench-")
        .tempdir()
        .unwrap();
    let cluster = Cluster::ensure_running(dir.path(), ClusterOptions::default()).unwrap();
    cluster
        .stop_when_process_exits(std::process::id(), true)
        .unwrap();
    let db = baton::db::Database::open(
        &baton::db::DbTarget::Embedded(dir.path().to_path_buf()),
        &baton::db::DbConfig {
            // Loading a million rows per statement takes longer than the server's default.
            statement_timeout: Duration::from_secs(1800),
            ..baton::db::DbConfig::default()
        },
    )
    .await
    .unwrap();
    let keys = baton::admin::signing_keys(&db.pool).await.unwrap();
    let mut tenants = Vec::new();
    for (slug, n) in [("large", large), ("small", 10_000)] {
        let org = baton::admin::create_org(&db.pool, slug, None, None, None)
            .await
            .unwrap();
        let loading = Instant::now();
        load(&db.pool, org.id, n).await;
        eprintln!(
            "loaded {n} handoffs for {slug} in {:.1} s",
            loading.elapsed().as_secs_f64()
        );
        let token = baton::admin::issue_token_for(
            &db.pool,
            &keys,
            Subject::Org(org.id),
            &[Scope::ReadAll],
            chrono::Duration::days(1),
        )
        .await
        .unwrap()
        .token;
        tenants.push((slug, n, org.id, token));
    }
    for table in [
        "sessions",
        "handoffs",
        "handoff_states",
        "handoff_references",
    ] {
        sqlx::query(&format!("vacuum analyze {table}"))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    // The plan of a deep cursor page, for the record.
    let plan: Vec<String> = sqlx::query_scalar(
        r#"explain (costs off)
           select h.handoff_id from handoffs h
           where h.org_id = $1 and (h.initiated_at, h.handoff_id) < ($2, $3)
           order by h.initiated_at desc, h.handoff_id desc limit 51"#,
    )
    .bind(tenants[0].2)
    .bind(time_of(large / 2, large))
    .bind(format!("h{}", large / 2))
    .fetch_all(&db.pool)
    .await
    .unwrap();
    eprintln!("plan of a cursor page:\n  {}", plan.join("\n  "));

    let server = common::Server::start(dir.path()).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();

    for (slug, n, _, token) in &tenants {
        println!(
            "\n{slug} tenant: {n} handoffs over 90 days; {requests} sequential requests per scenario, one client"
        );
        println!("| scenario | p50 ms | p99 ms | items per response |");
        println!("|---|---|---|---|");
        for s in scenarios(slug, *n, requests) {
            println!("{}", measure(&client, &base, token, &s).await);
        }
    }

    if let Some(secs) = std::env::var("BENCH_HOLD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        eprintln!(
            "holding for {secs} s: psql -h {} -p {} -U {} {}",
            cluster.socket_dir().display(),
            cluster.port(),
            baton::pg::SUPERUSER,
            baton::db::DATABASE_NAME
        );
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    server.stop();
    db.close().await.unwrap();
    cluster.stop_now().ok();
}
