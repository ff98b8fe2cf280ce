//! Handoff analytics benchmark (not a test): `GET /handoff-analytics` over HTTP against a release
//! build of `baton serve`, for a small and a big tenant beside 99 ordinary ones, with the naive
//! SQL (GROUP BY over the raw handoffs of the tenant and range) timed in the same run.
//!
//! Data: a year of history per tenant, generated with `insert … select generate_series` straight
//! into the projections (`sessions`, `handoffs`, `handoff_references`), then the rollups built
//! from those rows with set-based SQL that follows the ingest rules (`store::analytics`):
//! first-initiation buckets, scope `''` plus one scope per referenced instruction, combinations
//! per session, coarser grains summed from the 15-minute rows. The whole load is one
//! transaction that truncates the tables first, with keys and indexes rebuilt at the end and
//! `wal_level = minimal`, so it writes no WAL. The run checks the HTTP answers against the
//! naive SQL before timing.
//!
//! Run: `cargo bench --bench analytics` (env: BENCH_BIG, handoffs of the big tenant, default
//! 10,000,000; BENCH_SMALL, default 10,000; BENCH_ORDINARY, handoffs of each of the 99 ordinary
//! tenants, default 5,000; BENCH_REQUESTS, timed requests per case, default 2,000;
//! BENCH_PG_STATS=1, print PostgreSQL's time per statement of the timed requests;
//! BENCH_PG_SETTINGS, extra `postgresql.conf` lines separated by `;`;
//! BENCH_EXPLAIN=1, log the plans of slow statements; BENCH_HOLD=1, after loading, print a psql
//! command and the tokens and wait an hour instead of measuring; BENCH_LIFECYCLE_ONLY=1, time
//! only `GET /v1/handoff-lifecycle`, skipping the `/handoff-analytics` cases and the naive SQL;
//! BENCH_SKIP_LIFECYCLE=1, load and time no lifecycle rows (a cluster of the size it had before
//! issue 16); BENCH_EXPLAIN_AFTER=1, after the timing print the rollup keys' sizes, heights and
//! visibility and the read's planning counts, and log the plan of every case's read, the cluster
//! log copied to the file BENCH_EXPLAIN_AFTER_LOG names).
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use baton::auth::{Scope, Subject};
use baton::db::embedded_options;
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

/// History generated per tenant: 365 days ending at `HISTORY_END`.
const HISTORY_START: &str = "2025-11-01T00:00:00Z";
const HISTORY_SECONDS: i64 = 365 * 24 * 3600;
/// The 90-day range requested (local dates, end inclusive): Aug 3 – Oct 31, 2026.
const RANGE: (&str, &str) = ("2026-08-03", "2026-10-31");

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn exec(conn: &mut PgConnection, what: &str, sql: &str) {
    let t = Instant::now();
    conn.execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    println!("  load: {what}: {:.1} s", t.elapsed().as_secs_f64());
}

/// The tables the load fills (all empty before it).
const LOADED: &str = "sessions, handoffs, handoff_references, handoff_session_reasons, \
                      handoff_rollup_totals, handoff_rollup_breakdown, session_rollups, \
                      handoff_lifecycle, handoff_lifecycle_rollups";

/// Generates every tenant's projections and builds the rollups from them, in one transaction
/// that first truncates the tables: with `wal_level = minimal` (set by [`run`]) PostgreSQL then
/// writes no WAL for them, only syncs the files at commit. The loaded tables' indexes and keys
/// are dropped first and rebuilt at the end with their own definitions (read from the catalog,
/// so the schema ends as the migrations made it).
async fn load(conn: &mut PgConnection, tenants: &[(Uuid, usize)]) {
    let values: Vec<String> = tenants
        .iter()
        .map(|(id, n)| format!("('{id}'::uuid, {n}::bigint)"))
        .collect();
    exec(
        conn,
        "settings",
        "begin;
         set local temp_buffers = '4GB';
         set local maintenance_work_mem = '2GB'; set local work_mem = '2GB';
         set local synchronous_commit = off; set local max_parallel_workers_per_gather = 2;
         set local max_parallel_maintenance_workers = 2",
    )
    .await;
    exec(conn, "truncate", &format!("truncate {LOADED}")).await;
    // Keys and indexes of the loaded tables, to drop now and rebuild after the load.
    let keys: Vec<(String, String, String)> = sqlx::query_as(
        "select c.conrelid::regclass::text, c.conname::text, pg_get_constraintdef(c.oid)
         from pg_constraint c
         where c.conrelid = any(string_to_array($1, ', ')::regclass[]) and c.contype in ('p', 'u')",
    )
    .bind(LOADED)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "select i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
         from pg_index i
         where i.indrelid = any(string_to_array($1, ', ')::regclass[])
           and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid)",
    )
    .bind(LOADED)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut drop = String::new();
    for (table, name, _) in &keys {
        drop.push_str(&format!("alter table {table} drop constraint {name};\n"));
    }
    for (name, _) in &indexes {
        drop.push_str(&format!("drop index {name};\n"));
    }
    exec(conn, "drop keys and indexes", &drop).await;
    exec(
        conn,
        "tenants",
        &format!(
            "create temp table gen (org_id uuid, n bigint) on commit drop;
             insert into gen values {};",
            values.join(", ")
        ),
    )
    .await;
    let at = format!(
        "timestamptz '{HISTORY_START}' + make_interval(secs => (i::float8 * {HISTORY_SECONDS} / g.n))"
    );
    // Handoff i belongs to session i*3/4 (a third of the sessions with handoffs have two);
    // sessions 3n/4..n have none. Reasons, sentiments and references vary with i.
    exec(
        conn,
        "handoffs",
        &format!(
            r#"insert into handoffs (org_id, handoff_id, session_id, state, attempts, transitions,
                   reasons, sentiment, data, initiated_at, last_initiated_at, completed_at, updated_at)
               select g.org_id, 'h' || i, 's' || (i * 3 / 4), 'handoff_completed', 1, 2,
                      case when i % 3 = 0 and (i / 7) % 7 <> i % 7
                           then array[r[i % 7 + 1], r[(i / 7) % 7 + 1]] else array[r[i % 7 + 1]] end,
                      (array[null, 'positive', 'neutral', 'negative']::text[])[i % 4 + 1],
                      '{{}}'::jsonb, t.at, t.at, t.w, t.w
               from gen g, generate_series(0::bigint, g.n - 1) as i,
                    lateral (select {at} as at,
                                    {at} + make_interval(secs => 20 + (i * 7919) % 1800
                                                                 + (i % 1000) / 1000.0) as w) t,
                    (select array['ai_implied_handoff', 'based_on_instructions', 'instructions_not_clear',
                                  'insufficient_knowledge', 'insufficient_tools', 'prohibited_topic',
                                  'user_requested_human_assistance'] as r) names"#
        ),
    )
    .await;
    exec(
        conn,
        "sessions",
        &format!(
            r#"insert into sessions (org_id, session_id, channel, started_at, ended_at, sentiment)
               select g.org_id, 's' || k, 'web',
                      case when k < g.n * 3 / 4
                           then timestamptz '{HISTORY_START}'
                                + make_interval(secs => ((k * 4 + 2) / 3)::float8 * {HISTORY_SECONDS} / g.n)
                                - interval '5 minutes'
                           else timestamptz '{HISTORY_START}'
                                + make_interval(secs => (k - g.n * 3 / 4)::float8 * {HISTORY_SECONDS} / (g.n - g.n * 3 / 4))
                      end,
                      null, null
               from gen g, generate_series(0::bigint, g.n - 1) as k"#
        ),
    )
    .await;
    exec(
        conn,
        "handoff_references",
        // Handoff i references instruction ins-(i/5)%10 when i%5 = 0, AI profile prof-i%3 when
        // i%7 = 0, knowledge kb-i%25 when i%2 = 0, tool tool-(i/6)%8 when i%6 = 1, prohibited
        // topic topic-i%5 when i%13 = 0.
        r#"insert into handoff_references (org_id, handoff_id, ref_type, ref_id)
           select g.org_id, 'h' || i, 'instruction', 'ins-' || (i / 5) % 10
           from gen g, generate_series(0::bigint, g.n - 1, 5) as i
           union all
           select g.org_id, 'h' || i, 'ai_profile', 'prof-' || i % 3
           from gen g, generate_series(0::bigint, g.n - 1, 7) as i
           union all
           select g.org_id, 'h' || i, 'knowledge', 'kb-' || i % 25
           from gen g, generate_series(0::bigint, g.n - 1, 2) as i
           union all
           select g.org_id, 'h' || i, 'tool', 'tool-' || (i / 6) % 8
           from gen g, generate_series(1::bigint, g.n - 1, 6) as i
           union all
           select g.org_id, 'h' || i, 'prohibited_topic', 'topic-' || i % 5
           from gen g, generate_series(0::bigint, g.n - 1, 13) as i"#,
    )
    .await;
    // The rollups, as the ingest writes them (store::analytics): every handoff in the
    // 15-minute bucket of its first initiation, under scope '' and under each instruction it
    // references; breakdowns by reason, sentiment (or none), reference, and per session the
    // sorted distinct reasons of its handoffs in the scope, in the bucket of its first one.
    // Coarser grains are sums of the 15-minute rows (blocks nest: hour, day, 7 days, all from
    // the Unix epoch).
    // Intermediate tables in their own schema, unlogged (not temporary) so that PostgreSQL can
    // read them with parallel workers; dropped before the commit.
    exec(
        conn,
        "schema for intermediates",
        "create schema bench_load; set local search_path = bench_load, public",
    )
    .await;
    exec(
        conn,
        "handoffs with their references, by scope",
        r#"create unlogged table refs as
           select r.org_id, r.handoff_id,
                  array_agg(r.ref_type order by r.ref_type, r.ref_id) as types,
                  array_agg(r.ref_id order by r.ref_type, r.ref_id) as ids
           from handoff_references r group by 1, 2;
           create unlogged table scoped as
           select h.org_id, s.scope, h.session_id,
                  date_bin('15 minutes', h.initiated_at, timestamptz '1970-01-01T00:00:00Z') as bucket,
                  h.initiated_at, h.reasons, h.sentiment, r.types, r.ids
           from handoffs h
           left join refs r on r.org_id = h.org_id and r.handoff_id = h.handoff_id
           cross join lateral (
               select '' as scope
               union all
               select x.id from unnest(r.types, r.ids) as x(t, id) where x.t = 'instruction'
           ) s"#,
    )
    .await;
    exec(
        conn,
        "handoff_session_reasons",
        r#"insert into handoff_session_reasons (org_id, scope, session_id, first_initiated_at, reasons)
           select s.org_id, s.scope, s.session_id, min(s.initiated_at),
                  string_agg(distinct x.reason collate "C", ',' order by x.reason collate "C")
           from scoped s cross join unnest(s.reasons) as x(reason)
           group by s.org_id, s.scope, s.session_id"#,
    )
    .await;
    exec(
        conn,
        "rollups, 15 minutes",
        r#"create unlogged table t0 as
           select org_id, scope, bucket, count(*) as n from scoped group by 1, 2, 3;
           create unlogged table s0 as
           select org_id, date_bin('15 minutes', started_at, timestamptz '1970-01-01T00:00:00Z') as bucket,
                  count(*) as n
           from sessions group by 1, 2;
           create unlogged table b0 as
           select org_id, scope, bucket, kind, key, count(*) as n from (
               select s.org_id, s.scope, s.bucket, 'reason' as kind, x.reason as key
               from scoped s cross join unnest(s.reasons) as x(reason)
               union all
               select s.org_id, s.scope, s.bucket,
                      case when s.sentiment is null then 'no_sentiment' else 'sentiment' end,
                      coalesce(s.sentiment, '')
               from scoped s
               union all
               select s.org_id, s.scope, s.bucket, x.t, x.id
               from scoped s cross join unnest(s.types, s.ids) as x(t, id)
               union all
               select c.org_id, c.scope,
                      date_bin('15 minutes', c.first_initiated_at, timestamptz '1970-01-01T00:00:00Z'),
                      'combination', c.reasons
               from handoff_session_reasons c
           ) m
           group by 1, 2, 3, 4, 5"#,
    )
    .await;
    for (grain, size) in [(1, "1 hour"), (2, "1 day"), (3, "7 days")] {
        let prev = grain - 1;
        let bb = format!("date_bin('{size}', bucket, timestamptz '1970-01-01T00:00:00Z')");
        exec(
            conn,
            &format!("rollups, {size}"),
            &format!(
                r#"create unlogged table t{grain} as
                   select org_id, scope, {bb} as bucket, sum(n)::int8 as n from t{prev} group by 1, 2, 3;
                   create unlogged table s{grain} as
                   select org_id, {bb} as bucket, sum(n)::int8 as n from s{prev} group by 1, 2;
                   create unlogged table b{grain} as
                   select org_id, scope, {bb} as bucket, kind, key, sum(n)::int8 as n
                   from b{prev} group by 1, 2, 3, 4, 5"#
            ),
        )
        .await;
    }
    // Stored in time order, as ingest (which writes as time goes by) leaves them roughly; with
    // BENCH_ROLLUP_ORDER=tenant, clustered by tenant and scope instead (the best case for reads).
    let by_tenant = std::env::var("BENCH_ROLLUP_ORDER").is_ok_and(|v| v == "tenant");
    let (tk, sk) = if by_tenant {
        ("org_id, scope, ", "org_id, ")
    } else {
        ("", "")
    };
    let mut copy = String::new();
    // The grain stored is its length in seconds (`domain::buckets::HANDOFF_GRAINS`).
    for (g, grain) in baton::domain::buckets::HANDOFF_GRAINS.iter().enumerate() {
        let seconds = grain.seconds();
        copy.push_str(&format!(
            "insert into handoff_rollup_totals (org_id, scope, grain, bucket, handoffs)
             select org_id, scope, {seconds}, bucket, n from t{g} order by {tk}bucket;
             insert into session_rollups (org_id, grain, bucket, sessions)
             select org_id, {seconds}, bucket, n from s{g} order by {sk}bucket;
             insert into handoff_rollup_breakdown (org_id, scope, grain, bucket, kind, key, count)
             select org_id, scope, {seconds}, bucket, kind, key, n from b{g} order by {tk}bucket;\n"
        ));
    }
    exec(conn, "rollups, stored", &copy).await;
    // BENCH_SKIP_LIFECYCLE=1: the lifecycle tables stay empty (and their timing is skipped):
    // the `/handoff-analytics` read on a cluster as large as before issue 16.
    if !skip_lifecycle() {
        load_lifecycle(conn).await;
    }
    let mut build = String::new();
    for (table, name, def) in &keys {
        build.push_str(&format!(
            "alter table {table} add constraint {name} {def};\n"
        ));
    }
    for (_, def) in &indexes {
        build.push_str(def);
        build.push_str(";\n");
    }
    exec(conn, "keys and indexes", &build).await;
    exec(conn, "drop intermediates", "drop schema bench_load cascade").await;
    exec(conn, "commit", "commit").await;
    exec(conn, "vacuum analyze", &format!("vacuum analyze {LOADED}")).await;
}

/// The lifecycle rollups of the generated handoffs (all completed, waits of 20 s to 30 min),
/// as the ingest keeps them (`store::lifecycle`): each handoff in its first initiation's block
/// of every handoff grain, under all handoffs and each of its reasons, with the wait histogram
/// (`domain::lifecycle::bin_of` and the stored form of `WaitHistogram::encode`, written again
/// here in SQL for the load, as migration `20261129170001` converts). Channel, destination
/// and agent groups are left out: the benchmark reads the totals, days and reason groups.
async fn load_lifecycle(conn: &mut PgConnection) {
    exec(
        conn,
        "handoff_lifecycle",
        r#"insert into handoff_lifecycle (org_id, handoff_id, channel, agent_id, outside_working_hours)
           select org_id, handoff_id, 'web', null,
                  extract(hour from initiated_at) not between 8 and 17
           from handoffs"#,
    )
    .await;
    exec(
        conn,
        "lifecycle, 15 minutes",
        r#"create unlogged table lk as
           select h.org_id, k.dim, k.key,
                  date_bin('15 minutes', h.initiated_at, timestamptz '1970-01-01T00:00:00Z') as bucket,
                  m.ms, case when m.ms < 100 then m.ms
                             else 100 + floor(ln(m.ms / 100.0) / ln(1.01))::int8 end as bin,
                  extract(hour from h.initiated_at) not between 8 and 17 as outside
           from handoffs h
           cross join lateral (select (extract(epoch from h.completed_at - h.initiated_at) * 1000)::int8 as ms) m
           cross join lateral (
               select '' as dim, '' as key
               union all select 'reason', x from unnest(h.reasons) as x
           ) k;
           create unlogged table l0 as
           select org_id, dim, key, bucket, bin, count(*) as n, sum(ms) as s, max(ms) as mx,
                  count(*) filter (where outside) as o
           from lk group by 1, 2, 3, 4, 5"#,
    )
    .await;
    for (grain, size) in [(1, "1 hour"), (2, "1 day"), (3, "7 days")] {
        let prev = grain - 1;
        exec(
            conn,
            &format!("lifecycle, {size}"),
            &format!(
                r#"create unlogged table l{grain} as
                   select org_id, dim, key,
                          date_bin('{size}', bucket, timestamptz '1970-01-01T00:00:00Z') as bucket,
                          bin, sum(n)::int8 as n, sum(s)::int8 as s, max(mx) as mx, sum(o)::int8 as o
                   from l{prev} group by 1, 2, 3, 4, 5"#
            ),
        )
        .await;
    }
    let mut copy = String::new();
    for (g, grain) in baton::domain::buckets::HANDOFF_GRAINS.iter().enumerate() {
        let seconds = grain.seconds();
        copy.push_str(&format!(
            r"insert into handoff_lifecycle_rollups (org_id, dim, grain, bucket, key, initiated,
                 completed, failed, abandoned, open, retried, outside_working_hours, wait_count,
                 wait_sum_ms, wait_max_ms, wait_hist)
             select org_id, dim, {seconds}, bucket, key, sum(n), sum(n), 0, 0, 0, 0, sum(o),
                    sum(n), sum(s), max(mx),
                    set_byte('\x00'::bytea, 0, w) || int4send(min(bin)::int4)
                    || string_agg(decode(repeat('00', gap * w), 'hex')
                                  || substring(int8send(n) from 9 - w), ''::bytea order by bin)
             from (select l.*,
                          case when max(n) over k < 128 then 1 when max(n) over k < 32768 then 2
                               when max(n) over k < 2147483648 then 4 else 8 end as w,
                          (bin - coalesce(lag(bin) over (k order by bin), bin - 1) - 1)::int4 as gap
                   from l{g} l window k as (partition by org_id, dim, bucket, key)) z
             group by org_id, dim, bucket, key, w order by bucket;
"
        ));
    }
    exec(conn, "lifecycle rollups, stored", &copy).await;
}

/// How the lifecycle rollups are stored (heap and TOAST sizes, the big tenant's stored
/// histogram bytes per day row) and the plan of reading its 90 UTC day rows with the histograms
/// (`length` forces them to be read, as sending them does).
async fn lifecycle_storage(conn: &mut PgConnection, big: Uuid) {
    let (heap, toast): (i64, i64) = sqlx::query_as(
        "select pg_relation_size(c.oid), coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0)
         from pg_class c where c.oid = 'handoff_lifecycle_rollups'::regclass",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    let (rows, hist, row): (i64, Option<f64>, Option<f64>) = sqlx::query_as(
        "select count(*), avg(pg_column_size(r.wait_hist))::float8, avg(pg_column_size(r.*))::float8
         from handoff_lifecycle_rollups r
         where r.org_id = $1 and r.dim = '' and r.grain = 86400",
    )
    .bind(big)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    println!(
        "lifecycle rollups: heap {:.1} MB, TOAST {:.1} MB; big tenant: {rows} day rows, stored \
         histogram {:.0} B, row {:.0} B on average",
        heap as f64 / 1e6,
        toast as f64 / 1e6,
        hist.unwrap_or(0.0),
        row.unwrap_or(0.0)
    );
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "explain (analyze, buffers, costs off)
         select sum(length(r.wait_hist)) from handoff_lifecycle_rollups r
         where r.org_id = '{big}' and r.dim = '' and r.grain = 86400
           and r.bucket >= '{}' and r.bucket < timestamptz '{}' + interval '1 day'",
        RANGE.0, RANGE.1
    ))
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    println!("  {}", plan.join("\n  "));
}

/// p50 and p99 of `n` sequential GETs (after a warm-up), in milliseconds.
async fn measure(client: &reqwest::Client, url: &str, token: &str, n: usize) -> (f64, f64) {
    for _ in 0..(n / 10).max(20) {
        let res = client.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        res.bytes().await.unwrap();
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let res = client.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
        times.push(t.elapsed());
    }
    percentiles(&mut times)
}

fn percentiles(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    let p = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)].as_secs_f64() * 1e3;
    (p(50), p(99))
}

/// The naive answer: GROUP BYs over the raw handoffs of the tenant and range (what the rollups
/// replace): totals per day, reasons, sentiments, references, sessions, combinations.
const NAIVE: [&str; 6] = [
    "select (initiated_at at time zone 'UTC')::date, count(*) from handoffs
     where org_id = $1 and initiated_at >= $2 and initiated_at < $3 group by 1",
    "select r, count(*) from handoffs h, unnest(h.reasons) r
     where h.org_id = $1 and h.initiated_at >= $2 and h.initiated_at < $3 group by r",
    "select sentiment, count(*) from handoffs
     where org_id = $1 and initiated_at >= $2 and initiated_at < $3 group by sentiment",
    "select r.ref_type, r.ref_id, count(*) from handoffs h
     join handoff_references r on r.org_id = h.org_id and r.handoff_id = h.handoff_id
     where h.org_id = $1 and h.initiated_at >= $2 and h.initiated_at < $3 group by 1, 2",
    "select count(*) from sessions where org_id = $1 and started_at >= $2 and started_at < $3",
    "select reasons, count(*) from (
         select h.session_id, min(h.initiated_at) as first, array_agg(distinct r order by r) as reasons
         from handoffs h, unnest(h.reasons) r
         where h.org_id = $1 and h.session_id in (
             select session_id from handoffs
             where org_id = $1 and initiated_at >= $2 and initiated_at < $3)
         group by h.session_id) s
     where s.first >= $2 and s.first < $3 group by reasons",
];

/// Runs the naive queries `runs` times; p50 of the whole set in ms, and the reason counts.
async fn naive(conn: &mut PgConnection, org: Uuid, runs: usize) -> (f64, i64, Vec<(String, i64)>) {
    let start = chrono::DateTime::parse_from_rfc3339(&format!("{}T00:00:00Z", RANGE.0)).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(&format!("{}T00:00:00Z", RANGE.1)).unwrap()
        + chrono::Duration::days(1);
    let mut times = Vec::new();
    let mut total = 0;
    let mut reasons = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        for (i, sql) in NAIVE.iter().enumerate() {
            match i {
                0 => {
                    let rows: Vec<(chrono::NaiveDate, i64)> = sqlx::query_as(sql)
                        .bind(org)
                        .bind(start)
                        .bind(end)
                        .fetch_all(&mut *conn)
                        .await
                        .unwrap();
                    total = rows.iter().map(|r| r.1).sum();
                }
                1 => {
                    reasons = sqlx::query_as(sql)
                        .bind(org)
                        .bind(start)
                        .bind(end)
                        .fetch_all(&mut *conn)
                        .await
                        .unwrap();
                }
                _ => {
                    sqlx::query(sql)
                        .bind(org)
                        .bind(start)
                        .bind(end)
                        .fetch_all(&mut *conn)
                        .await
                        .unwrap();
                }
            }
        }
        times.push(t.elapsed());
    }
    let (p50, _) = percentiles(&mut times);
    reasons.sort();
    (p50, total, reasons)
}

async fn run() {
    let big = common::env_usize("BENCH_BIG", 10_000_000);
    let small = common::env_usize("BENCH_SMALL", 10_000);
    let ordinary = common::env_usize("BENCH_ORDINARY", 5_000);
    let requests = common::env_usize("BENCH_REQUESTS", 2_000);

    let dir = tempfile::Builder::new()
        .prefix("baton-bench-analytics-")
        .tempdir()
        .unwrap();
    // Bulk-load settings: no WAL for the tables the load truncates and fills in one
    // transaction, no checkpoint in the middle of it. They do not change how reads run.
    // BENCH_PG_SETTINGS: more `postgresql.conf` lines, `;`-separated (e.g.
    // `enable_indexonlyscan = off` to see what the covering keys save).
    let extra = std::env::var("BENCH_PG_SETTINGS")
        .unwrap_or_default()
        .replace(';', "\n");
    let cluster = common::start_cluster_with(
        dir.path(),
        &format!(
            "wal_level = minimal\nmax_wal_senders = 0\nmax_wal_size = '16GB'\ncheckpoint_timeout = '1h'\n{extra}"
        ),
    );
    let db = baton::db::Database::open(
        &baton::db::DbTarget::Embedded(dir.path().to_path_buf()),
        &baton::db::DbConfig::default(),
    )
    .await
    .unwrap();
    let keys = baton::admin::signing_keys(&db.pool).await.unwrap();
    let mut tenants = Vec::new();
    let mut tokens = Vec::new();
    for (slug, n) in [("small", small), ("big", big)]
        .into_iter()
        .chain((0..99).map(|i| {
            (
                Box::leak(format!("ordinary-{i}").into_boxed_str()) as &str,
                ordinary,
            )
        }))
    {
        let org = baton::admin::create_org(&db.pool, slug, None, None, None)
            .await
            .unwrap();
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
        tenants.push((org.id, n));
        tokens.push(token);
    }
    let mut conn =
        PgConnection::connect_with(&embedded_options(&cluster, baton::db::DATABASE_NAME))
            .await
            .unwrap();
    let total: usize = tenants.iter().map(|t| t.1).sum();
    println!("loading {total} handoffs (small {small}, big {big}, 99 x {ordinary}) ...");
    let load_started = Instant::now();
    load(&mut conn, &tenants).await;
    let load_secs = load_started.elapsed().as_secs_f64();
    let rollup_rows: i64 = sqlx::query_scalar(
        "select (select count(*) from handoff_rollup_breakdown) + (select count(*) from handoff_rollup_totals)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    println!("loaded in {load_secs:.0} s ({rollup_rows} rollup rows)");

    let explain = std::env::var("BENCH_EXPLAIN").is_ok();
    if explain {
        // Plans of slow statements go to the cluster's log, printed at the end.
        for sql in [
            "load 'auto_explain'",
            "alter system set session_preload_libraries = 'auto_explain'",
            "alter system set auto_explain.log_min_duration = '3ms'",
            "alter system set auto_explain.log_analyze = on",
            "alter system set auto_explain.log_buffers = on",
            "select pg_reload_conf()",
        ] {
            conn.execute(sql).await.unwrap();
        }
    }

    if std::env::var("BENCH_HOLD").is_ok() {
        println!(
            "HOLD psql -h {} -U postgres baton",
            cluster.socket_dir().display()
        );
        for (i, (org, _)) in tenants.iter().enumerate().take(2) {
            println!("HOLD tenant {i}: org {org}, token {}", tokens[i]);
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    lifecycle_storage(&mut conn, tenants[1].0).await;
    common::create_statement_stats(&db.pool).await;
    let server = common::Server::start(dir.path()).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();

    let load_before = loadavg();
    let range = format!("start_date={}&end_date={}", RANGE.0, RANGE.1);
    let cases = [
        ("90 days", range.clone()),
        (
            "90 days, instruction_id",
            format!("{range}&instruction_id=ins-3"),
        ),
        (
            "90 days, Asia/Kolkata",
            format!("{range}&timezone=Asia/Kolkata"),
        ),
        (
            "90 days, bounds off 15 min",
            "start_date=2026-08-03T10:07:13Z&end_date=2026-10-31T17:52:41Z".to_owned(),
        ),
    ];
    let mut table = Vec::new();
    let lifecycle_only = std::env::var("BENCH_LIFECYCLE_ONLY").is_ok_and(|v| v == "1");
    for (tenant, idx, n) in [("10k", 0usize, small), ("big", 1usize, big)] {
        if lifecycle_only {
            break;
        }
        let (org, _) = tenants[idx];
        let token = &tokens[idx];
        // The answer equals the naive SQL's.
        let body: Value = client
            .get(format!("{base}/handoff-analytics?{range}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The naive SQL takes tens of seconds on the big tenant: fewer runs there.
        let runs = if n > 1_000_000 { 3 } else { 7 };
        let (naive_p50, naive_total, naive_reasons) = naive(&mut conn, org, runs).await;
        assert_eq!(body["total_handoffs"], naive_total, "{body}");
        let mut reasons: Vec<(String, i64)> = body["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["reason"].as_str().unwrap().to_owned(),
                    r["count"].as_i64().unwrap(),
                )
            })
            .collect();
        reasons.sort();
        assert_eq!(reasons, naive_reasons);
        for (name, query) in &cases {
            let (p50, p99) = measure(
                &client,
                &format!("{base}/handoff-analytics?{query}"),
                token,
                requests,
            )
            .await;
            table.push((tenant, n, name.to_string(), p50, p99, naive_p50));
        }
    }
    // The lifecycle report of the same tenants and range.
    let mut lifecycle = Vec::new();
    for (tenant, idx, n) in [("10k", 0usize, small), ("big", 1usize, big)] {
        if skip_lifecycle() {
            break;
        }
        let token = &tokens[idx];
        let body: Value = client
            .get(format!("{base}/v1/handoff-lifecycle?{range}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let analytics: Value = client
            .get(format!("{base}/handoff-analytics?{range}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            body["totals"]["initiated"], analytics["total_handoffs"],
            "{body}"
        );
        for (name, query) in [
            ("90 days", range.clone()),
            (
                "90 days, group_by=reason",
                format!("{range}&group_by=reason"),
            ),
            (
                "90 days, Asia/Kolkata",
                format!("{range}&timezone=Asia/Kolkata"),
            ),
            (
                "90 days, compare=previous_period",
                format!("{range}&compare=previous_period"),
            ),
        ] {
            let (p50, p99) = measure(
                &client,
                &format!("{base}/v1/handoff-lifecycle?{query}"),
                token,
                requests,
            )
            .await;
            lifecycle.push((tenant, n, name, p50, p99));
        }
    }
    let (h50, h99) = measure(&client, &format!("{base}/healthz"), &tokens[0], requests).await;
    if std::env::var("BENCH_EXPLAIN_AFTER").is_ok() {
        explain_after(&mut conn, dir.path(), &client, &tokens, &cases).await;
    }
    println!(
        "load average (/proc/loadavg) before timing: {load_before}; after: {}",
        loadavg()
    );
    println!();
    println!("GET /v1/handoff-lifecycle ({requests} sequential requests per case)");
    println!("| tenant | handoffs | request | p50 ms | p99 ms | p50 / 10k p50 |");
    println!("|---|---:|---|---:|---:|---:|");
    for (tenant, n, name, p50, p99) in &lifecycle {
        let small_p50 = lifecycle
            .iter()
            .find(|r| r.0 == "10k" && r.2 == *name)
            .map_or(f64::NAN, |r| r.3);
        println!(
            "| {tenant} | {n} | {name} | {p50:.2} | {p99:.2} | {:.2}x |",
            p50 / small_p50
        );
    }

    println!();
    println!(
        "GET /handoff-analytics, sequential requests over HTTP ({requests} per case after a warm-up)"
    );
    println!(
        "| tenant | handoffs | request | p50 ms | p99 ms | naive SQL p50 ms | naive / Baton p50 |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|");
    for (tenant, n, name, p50, p99, naive) in &table {
        println!(
            "| {tenant} | {n} | {name} | {p50:.2} | {p99:.2} | {naive:.1} | {:.0}x |",
            naive / p50
        );
    }
    println!("| - | - | GET /healthz (floor) | {h50:.2} | {h99:.2} | - | - |");
    let p = |tenant: &str, case: &str| {
        table
            .iter()
            .find(|r| r.0 == tenant && r.2 == case)
            .map(|r| r.3)
            .unwrap()
    };
    if !lifecycle_only {
        println!(
            "big / 10k p50: plain {:.2}x, instruction_id {:.2}x",
            p("big", "90 days") / p("10k", "90 days"),
            p("big", "90 days, instruction_id") / p("10k", "90 days, instruction_id")
        );
    }

    if explain {
        let log = walk(dir.path(), "postgres.log");
        if let Some(log) = log {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let plans: Vec<&str> = text.lines().filter(|l| !l.contains("STATEMENT")).collect();
            let from = plans
                .iter()
                .position(|l| l.contains("duration:"))
                .unwrap_or(0);
            println!(
                "{}",
                plans[from..]
                    .iter()
                    .take(200)
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }

    common::print_statement_stats(&mut conn).await;
    server.stop();
    conn.close().await.unwrap();
    db.close().await.unwrap();
    cluster.stop_now().ok();
}

/// The 1-, 5- and 15-minute load averages (the machine is shared: figures move with them).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The first file named `name` under `dir`.
fn walk(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
        if path.is_dir()
            && let Some(found) = walk(&path, name)
        {
            return Some(found);
        }
    }
    None
}

/// BENCH_EXPLAIN_AFTER=1: after the timed part (so the timing runs without instrumentation),
/// prints the sizes, B-tree heights and visibility of the tables the read uses and the read's
/// planning counts (`pg_stat_statements`; with `pg_stat_statements.track_planning = on` in
/// BENCH_PG_SETTINGS, the planning time too), then logs the plan (analyze, buffers) of 8
/// requests of every case through a second server (its new sessions load auto_explain) and
/// copies the cluster's log to the file BENCH_EXPLAIN_AFTER_LOG names.
async fn explain_after(
    conn: &mut PgConnection,
    dir: &std::path::Path,
    client: &reqwest::Client,
    tokens: &[String],
    cases: &[(&str, String)],
) {
    for sql in [
        "create extension if not exists pageinspect",
        "create extension if not exists pg_visibility",
    ] {
        conn.execute(sql).await.unwrap();
    }
    let diag = [
        r"select format('%s rel %s MB idx %s MB', relname, pg_relation_size(oid) / 1000000,
                 pg_indexes_size(oid) / 1000000) from pg_class
          where relname in ('handoff_rollup_breakdown', 'handoff_rollup_totals', 'session_rollups',
                            'handoffs', 'handoff_session_reasons', 'handoff_references', 'sessions')
          order by 1",
        r"select format('%s %s MB pages %s', c.relname, pg_relation_size(c.oid) / 1000000, c.relpages)
          from pg_class c where c.relkind = 'i' and c.relname like any (array['handoff_rollup%', 'session_rollups%'])
          order by 1",
        r"select format('%s level %s fastlevel %s', i, (bt_metap(i)).level, (bt_metap(i)).fastlevel)
          from unnest(array['handoff_rollup_breakdown_pkey', 'handoff_rollup_totals_pkey', 'session_rollups_pkey']) i",
        r"select format('%s all_visible %s of %s', t, (pg_visibility_map_summary(t::regclass)).all_visible,
                 pg_relation_size(t::regclass) / 8192)
          from unnest(array['handoff_rollup_breakdown', 'handoff_rollup_totals', 'session_rollups']) t",
        r"select format('big breakdown rows %s, scope-empty %s, avg key width %s, scope-instr avg width %s',
                 count(*), count(*) filter (where scope = ''),
                 avg(pg_column_size(row(org_id, scope, grain, bucket, kind, key, count))) filter (where scope = '')::numeric(6,1),
                 avg(pg_column_size(row(org_id, scope, grain, bucket, kind, key, count))) filter (where scope <> '')::numeric(6,1))
          from handoff_rollup_breakdown where org_id = (select id from organizations where slug = 'big')",
        r"select format('calls %s plans %s mean_plan %s mean_exec %s rows %s blks_hit %s blks_read %s: %s', calls, plans,
                 mean_plan_time::numeric(8,3), mean_exec_time::numeric(8,3), rows, shared_blks_hit, shared_blks_read, left(regexp_replace(query, '\s+', ' ', 'g'), 60))
          from pg_stat_statements order by total_exec_time desc limit 4",
    ];
    for q in diag {
        match sqlx::query_scalar::<_, String>(q)
            .fetch_all(&mut *conn)
            .await
        {
            Ok(rows) => {
                for r in rows {
                    println!("DIAG {r}");
                }
            }
            Err(e) => println!("DIAG error {e}"),
        }
    }
    for sql in [
        "load 'auto_explain'",
        "alter system set session_preload_libraries = 'auto_explain'",
        "alter system set auto_explain.log_min_duration = 0",
        "alter system set auto_explain.log_analyze = on",
        "alter system set auto_explain.log_buffers = on",
        "select pg_reload_conf()",
    ] {
        conn.execute(sql).await.unwrap();
    }
    let server = common::Server::start(dir).await;
    for token in tokens.iter().take(2) {
        for (_, query) in cases {
            for _ in 0..8 {
                client
                    .get(format!("{}/handoff-analytics?{query}", server.base))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
            }
        }
    }
    drop(server);
    if let (Some(log), Ok(to)) = (
        walk(dir, "postgres.log"),
        std::env::var("BENCH_EXPLAIN_AFTER_LOG"),
    ) {
        std::fs::copy(log, to).unwrap();
    }
}

/// BENCH_SKIP_LIFECYCLE=1: no lifecycle rows loaded nor timed.
fn skip_lifecycle() -> bool {
    std::env::var("BENCH_SKIP_LIFECYCLE").is_ok_and(|v| v == "1")
}
