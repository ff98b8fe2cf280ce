//! `GET /v1/metrics` benchmark (not a test): 90-day requests over HTTP to a release build of
//! `baton serve` on a fresh embedded PostgreSQL, for one large organization, for a reseller of
//! 100 organizations, and for a small organization (cost must not grow with history); beside
//! the naive SQL over raw calls for the same figures, measured in the same run.
//!
//! Data is loaded with `insert … select generate_series(…)` into `calls`, and the rollups are
//! built from those rows with the same definitions ingestion uses (the property test in
//! `tests/api/metrics.rs` proves rollups equal raw recomputation); pushing millions of events
//! through HTTP would take too long here.
//!
//! Run: `cargo bench --bench metrics` (env: BENCH_CALLS, calls of the large organization,
//! default 10,000,000; BENCH_RESELLER_CALLS, calls per reseller organization, default 20,000;
//! BENCH_REQUESTS, default 400; BENCH_ONLY, run only the cases whose name contains it;
//! BENCH_PG_STATS=1, print PostgreSQL's time per statement; BENCH_HOLD=1, after loading, print a
//! psql command for the loaded database, the server's pid and a curl command per case, and wait
//! an hour instead of measuring).
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use baton::auth::{Scope, Subject};
use baton::db::embedded_options;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// One year of history ending here; the request covers its last 90 days.
const HISTORY_END: &str = "2026-11-21T00:00:00Z";
const START: &str = "2026-08-23T10:07:00Z";
const END: &str = "2026-11-21T10:07:00Z";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

/// Inserts `n` calls for `org` spread evenly over the year before [`HISTORY_END`], with
/// `agents` agents and every optional field present on some calls and absent on others.
async fn load_calls(conn: &mut PgConnection, org: Uuid, n: usize, agents: usize) {
    sqlx::query(
        r#"insert into calls (org_id, call_id, agent_id, started_at, duration_seconds, outcome,
               sentiment, escalation_reason, escalated_after_seconds, ttft_ms, stt_confidence,
               tool_calls, tool_call_errors, user_corrections, cached_tokens, total_tokens)
           select $1, 'c' || i, 'agent-' || (i % $3),
                  $4::timestamptz - interval '365 days' + make_interval(secs => i * 31536000.0 / $2),
                  30 + (i * 37) % 600,
                  case i % 10 when 0 then 'transferred' when 1 then 'transferred'
                              when 2 then 'abandoned' when 3 then 'other' else 'resolved' end,
                  case i % 3 when 0 then 'positive' when 1 then 'neutral' else null end,
                  case when i % 10 < 2 and i % 7 <> 0
                       then (array['billing dispute', 'technical issue', 'angry caller'])[1 + i % 3] end,
                  case when i % 4 = 0 then null else 20 + i % 100 end,
                  case when i % 5 = 0 then null else 300 + i % 400 end,
                  case when i % 6 = 0 then null else 0.8 + (i % 20) / 100.0 end,
                  case when i % 8 = 0 then null else i % 4 end,
                  case when i % 8 = 0 then null else least(i % 2, i % 4) end,
                  case when i % 9 = 0 then null else i % 3 end,
                  case when i % 11 = 0 then null else i % 500 end,
                  case when i % 11 = 0 then null else 1000 end
           from generate_series(0, $2 - 1) as i"#,
    )
    .bind(org)
    .bind(n as i64)
    .bind(agents as i64)
    .bind(chrono::DateTime::parse_from_rfc3339(HISTORY_END).unwrap())
    .execute(&mut *conn)
    .await
    .unwrap();
    // Declared agents (the last one deleted), as `agent.*` events would store them.
    sqlx::query(
        r#"insert into agents (org_id, agent_id, name, status, deleted_at)
           select $1, 'agent-' || i, 'Agent ' || i, case when i % 3 = 2 then 'inactive' else 'active' end,
                  case when i = $2 - 1 then now() end
           from generate_series(0, $2 - 1) as i"#,
    )
    .bind(org)
    .bind(agents as i64)
    .execute(&mut *conn)
    .await
    .unwrap();
}

/// Builds every rollup of `orgs` from their calls, with ingestion's definitions.
async fn build_rollups(conn: &mut PgConnection, orgs: &[Uuid]) {
    for grain in baton::domain::buckets::CALL_GRAINS.map(|g| g.seconds()) {
        sqlx::query(
            r#"insert into call_metric_rollups
               select org_id, $2::int4, date_bin(make_interval(secs => $2::int4), started_at, timestamptz '2000-01-01 00:00:00+00'),
                      agent_id, count(*),
                      count(*) filter (where outcome = 'resolved'),
                      count(*) filter (where outcome = 'transferred'),
                      count(*) filter (where outcome = 'abandoned'),
                      count(*) filter (where outcome = 'other'),
                      sum(duration_seconds), count(sentiment),
                      count(*) filter (where sentiment = 'positive'),
                      coalesce(sum(ttft_ms), 0), count(ttft_ms),
                      coalesce(sum(stt_confidence), 0), count(stt_confidence),
                      count(user_corrections), count(*) filter (where user_corrections = 0),
                      coalesce(sum(cached_tokens::float8 / total_tokens)
                               filter (where cached_tokens is not null and total_tokens > 0), 0),
                      count(*) filter (where cached_tokens is not null and total_tokens > 0),
                      coalesce(sum(tool_calls) filter (where tool_calls is not null and tool_call_errors is not null), 0),
                      coalesce(sum(tool_call_errors) filter (where tool_calls is not null and tool_call_errors is not null), 0)
               from calls where org_id = any($1)
               group by org_id, 3, agent_id"#,
        )
        .bind(orgs)
        .bind(grain)
        .execute(&mut *conn)
        .await
        .unwrap();
        sqlx::query(
            r#"insert into call_escalation_rollups
               select org_id, $2::int4, date_bin(make_interval(secs => $2::int4), started_at, timestamptz '2000-01-01 00:00:00+00'),
                      escalation_reason, count(*), sum(coalesce(escalated_after_seconds, duration_seconds))
               from calls
               where org_id = any($1) and outcome = 'transferred' and escalation_reason is not null
               group by org_id, 3, escalation_reason"#,
        )
        .bind(orgs)
        .bind(grain)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    // The reseller rollups, recomputed in SQL from the raw calls (a test proves this equals what
    // ingestion maintains; there are no events here for `baton rebuild` to replay).
    sqlx::raw_sql(include_str!("../tests/common/reseller_rollups.sql"))
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        r#"insert into call_volume_days
           with q as (
               select org_id, (started_at at time zone 'UTC')::date as d,
                      floor(extract(epoch from started_at - (date_trunc('day', started_at at time zone 'UTC') at time zone 'UTC')) / 900)::int as s,
                      count(*) as c, count(*) filter (where outcome = 'resolved') as r,
                      sum(duration_seconds) as sec
               from calls where org_id = any($1) group by 1, 2, 3
           ), days as (select distinct org_id, d from q),
           quarters as (
               select days.org_id, days.d,
                      array_agg(coalesce(q.c, 0) order by s.s) as c,
                      array_agg(coalesce(q.r, 0) order by s.s) as r,
                      array_agg(coalesce(q.sec, 0) order by s.s) as sec
               from days cross join generate_series(0, 95) as s(s)
               left join q on q.org_id = days.org_id and q.d = days.d and q.s = s.s
               group by days.org_id, days.d
           )
           select org_id, d, c, r, sec,
                  array(select c[4 * h + 1] + c[4 * h + 2] + c[4 * h + 3] + c[4 * h + 4]
                        from generate_series(0, 23) as h order by h),
                  array(select r[4 * h + 1] + r[4 * h + 2] + r[4 * h + 3] + r[4 * h + 4]
                        from generate_series(0, 23) as h order by h),
                  array(select sec[4 * h + 1] + sec[4 * h + 2] + sec[4 * h + 3] + sec[4 * h + 4]
                        from generate_series(0, 23) as h order by h)
           from quarters"#,
    )
    .bind(orgs)
    .execute(&mut *conn)
    .await
    .unwrap();
}

/// The naive answer: the same figures straight from raw calls (headline and per-agent, hours,
/// days, reasons). Returns its duration.
async fn naive(conn: &mut PgConnection, orgs: &[Uuid]) -> Duration {
    let s = chrono::DateTime::parse_from_rfc3339(START).unwrap();
    let e = chrono::DateTime::parse_from_rfc3339(END).unwrap();
    let t = Instant::now();
    for sql in [
        r#"select org_id, agent_id, count(*), count(*) filter (where outcome = 'resolved'),
                  count(*) filter (where outcome = 'transferred'), count(*) filter (where outcome = 'abandoned'),
                  sum(duration_seconds), avg(ttft_ms), count(*) filter (where sentiment = 'positive'),
                  count(sentiment), avg(stt_confidence), count(*) filter (where user_corrections = 0),
                  count(user_corrections), avg(cached_tokens::float8 / nullif(total_tokens, 0)),
                  sum(tool_calls), sum(tool_call_errors)
           from calls where org_id = any($1) and started_at >= $2 and started_at < $3
           group by org_id, agent_id"#,
        r#"select extract(hour from started_at at time zone 'UTC'), count(*), sum(duration_seconds)
           from calls where org_id = any($1) and started_at >= $2 and started_at < $3 group by 1"#,
        r#"select (started_at at time zone 'UTC')::date, count(*), count(*) filter (where outcome = 'resolved')
           from calls where org_id = any($1) and started_at >= $2 and started_at < $3 group by 1"#,
        r#"select escalation_reason, count(*), avg(coalesce(escalated_after_seconds, duration_seconds))
           from calls where org_id = any($1) and started_at >= $2 and started_at < $3
             and outcome = 'transferred' and escalation_reason is not null group by 1"#,
    ] {
        sqlx::query(sql)
            .bind(orgs)
            .bind(s)
            .bind(e)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    }
    t.elapsed()
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

async fn measure(client: &reqwest::Client, url: &str, token: &str, requests: usize) -> Stats {
    for _ in 0..20 {
        let res = client.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let res = client.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
        latencies.push(t.elapsed());
    }
    latencies.sort();
    Stats {
        p50: latencies[latencies.len() / 2],
        p99: latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)],
    }
}

/// Like [`measure`], with one late call ingested over HTTP (by one of `writers`, organizations
/// of the reseller) before each timed request: it starts 1 to 48 hours before the range's end,
/// so it lands in buckets the previous request read, and their agent rows must be read again.
async fn measure_with_late_calls(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    requests: usize,
    events_url: &str,
    writers: &[String],
) -> Stats {
    let end = chrono::DateTime::parse_from_rfc3339(END).unwrap();
    let mut latencies = Vec::with_capacity(requests);
    for i in 0..requests + 20 {
        let at = end - chrono::Duration::minutes(60 + (i as i64 * 37) % (47 * 60));
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let event = serde_json::json!({"events": [{
            "id": format!("late-{i}"), "type": "call.completed", "occurred_at": at,
            "call_id": format!("late-{i}"), "agent_id": format!("agent-{}", i % 5),
            "started_at": at, "duration_seconds": 60, "outcome": "resolved"}]});
        let res = client
            .post(events_url)
            .bearer_auth(&writers[i % writers.len()])
            .json(&event)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        let t = Instant::now();
        let res = client.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
        if i >= 20 {
            latencies.push(t.elapsed());
        }
    }
    latencies.sort();
    Stats {
        p50: latencies[latencies.len() / 2],
        p99: latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn run() {
    let big_calls = common::env_usize("BENCH_CALLS", 10_000_000);
    let reseller_calls = common::env_usize("BENCH_RESELLER_CALLS", 20_000);
    let requests = common::env_usize("BENCH_REQUESTS", 400);
    let dir = tempfile::Builder::new()
        .prefix("baton-bench-metrics-")
        .tempdir()
        .unwrap();
    let cluster = common::start_cluster(dir.path());
    let db = baton::db::Database::open(
        &baton::db::DbTarget::Embedded(dir.path().to_path_buf()),
        &baton::db::DbConfig::default(),
    )
    .await
    .unwrap();
    let pool = &db.pool;
    let keys = baton::admin::signing_keys(pool).await.unwrap();
    let token = |subject| {
        let keys = &keys;
        async move {
            baton::admin::issue_token_for(
                pool,
                keys,
                subject,
                &[Scope::ReadAll],
                chrono::Duration::days(1),
            )
            .await
            .unwrap()
            .token
        }
    };
    let big = baton::admin::create_org(pool, "big", None, None, None)
        .await
        .unwrap();
    let small = baton::admin::create_org(pool, "small", None, None, None)
        .await
        .unwrap();
    let reseller = baton::admin::create_reseller(pool, "resell", None)
        .await
        .unwrap();
    let mut reseller_orgs = Vec::new();
    for i in 0..100 {
        let o = baton::admin::create_org(pool, &format!("r-{i}"), None, Some("resell"), None)
            .await
            .unwrap();
        reseller_orgs.push(o.id);
    }

    let mut conn =
        PgConnection::connect_with(&embedded_options(&cluster, baton::db::DATABASE_NAME))
            .await
            .unwrap();
    let t = Instant::now();
    load_calls(&mut conn, big.id, big_calls, 10).await;
    load_calls(&mut conn, small.id, 10_000, 10).await;
    for &o in &reseller_orgs {
        load_calls(&mut conn, o, reseller_calls, 5).await;
    }
    let load_calls_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut all = vec![big.id, small.id];
    all.extend(&reseller_orgs);
    build_rollups(&mut conn, &all).await;
    sqlx::query("vacuum analyze")
        .execute(&mut conn)
        .await
        .unwrap();
    let rollup_s = t.elapsed().as_secs_f64();
    let rollup_rows: i64 = sqlx::query_scalar("select count(*) from call_metric_rollups")
        .fetch_one(&mut conn)
        .await
        .unwrap();

    common::create_statement_stats(pool).await;
    let server = common::Server::start(dir.path()).await;
    let base = server.base.clone();
    // The same server with the reseller agent cache off: every request reads every bucket's
    // agent rows (what the first request for a range costs).
    let uncached =
        common::Server::start_with(dir.path(), &[("BATON_METRICS_CACHE_ROWS", "0")]).await;
    let client = reqwest::Client::new();
    let path = format!("/v1/metrics?startDate={START}&endDate={END}");
    let url = format!("{base}{path}");
    let url_kolkata = format!("{url}&timezone=Asia/Kolkata");
    let url_uncached = format!("{}{path}", uncached.base);

    println!(
        "metrics: loaded {big_calls} calls (org big), 10000 (org small), 100 x {reseller_calls} (reseller) in {load_calls_s:.0} s; rollups built in {rollup_s:.0} s ({rollup_rows} agent rollup rows)"
    );
    println!("  request: 90 days, {START} .. {END} (bounds off the 15-minute grid)");
    let cases: Vec<(&str, String, &str, Vec<Uuid>)> = vec![
        (
            "org, big",
            token(Subject::Org(big.id)).await,
            url.as_str(),
            vec![big.id],
        ),
        (
            "org, big, Asia/Kolkata",
            token(Subject::Org(big.id)).await,
            url_kolkata.as_str(),
            vec![big.id],
        ),
        (
            "org, small",
            token(Subject::Org(small.id)).await,
            url.as_str(),
            vec![small.id],
        ),
        (
            "reseller, 100 orgs",
            token(Subject::Reseller(reseller.id)).await,
            url.as_str(),
            reseller_orgs.clone(),
        ),
        (
            "reseller, 100 orgs, Asia/Kolkata",
            token(Subject::Reseller(reseller.id)).await,
            url_kolkata.as_str(),
            reseller_orgs.clone(),
        ),
        (
            "reseller, 100 orgs, agent cache off",
            token(Subject::Reseller(reseller.id)).await,
            url_uncached.as_str(),
            reseller_orgs.clone(),
        ),
    ];
    if std::env::var("BENCH_HOLD").is_ok() {
        println!(
            "HOLD psql -h {} -U baton baton; server pid {}",
            cluster.socket_dir().display(),
            server.pid()
        );
        for (name, token, url, _) in &cases {
            println!("HOLD {name}: curl -s -H 'authorization: Bearer {token}' '{url}'");
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    println!("  | case | calls in range | GET p50 ms | GET p99 ms | naive SQL p50 ms |");
    println!("  |---|---|---|---|---|");
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for (name, token, url, orgs) in cases {
        if !name.contains(only.as_str()) {
            continue;
        }
        let body: serde_json::Value = client
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let in_range = body["data"]["metrics"]["totalCalls"].as_i64().unwrap();
        let stats = measure(&client, url, &token, requests).await;
        let mut naive_runs = Vec::new();
        for _ in 0..5 {
            naive_runs.push(naive(&mut conn, &orgs).await);
        }
        naive_runs.sort();
        println!(
            "  | {name} | {in_range} | {:.2} | {:.2} | {:.1} |",
            ms(stats.p50),
            ms(stats.p99),
            ms(naive_runs[2])
        );
    }

    if "reseller, 100 orgs, one late call before each request".contains(only.as_str()) {
        let mut writers = Vec::new();
        for &o in reseller_orgs.iter().take(10) {
            let t = baton::admin::issue_token_for(
                pool,
                &keys,
                Subject::Org(o),
                &[Scope::WriteAll],
                chrono::Duration::days(1),
            )
            .await
            .unwrap();
            writers.push(t.token);
        }
        let token = token(Subject::Reseller(reseller.id)).await;
        let stats = measure_with_late_calls(
            &client,
            &url,
            &token,
            requests,
            &format!("{base}/v1/events"),
            &writers,
        )
        .await;
        println!(
            "  | reseller, 100 orgs, one late call before each request | - | {:.2} | {:.2} | - |",
            ms(stats.p50),
            ms(stats.p99)
        );
    }

    common::print_statement_stats(&mut conn).await;
    server.stop();
    uncached.stop();
    conn.close().await.unwrap();
    db.close().await.unwrap();
    cluster.stop_now().ok();
}
