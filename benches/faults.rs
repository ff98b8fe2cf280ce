//! Fault benchmark (not a test): a release `baton serve` on an embedded PostgreSQL that this
//! program freezes, kills and restarts under load, plus the other operational figures: ingest
//! right after a restart with stale planner statistics, reads right after a bulk load, another
//! organization's requests during a 32-batch burst, and shutdown with stalled clients.
//!
//! Run: `cargo bench --bench faults` (env BENCH_FREEZE_SECS, default 10; BENCH_PG_STATS=1 prints
//! PostgreSQL time per statement of the stale-statistics ingest).
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/common/fixtures.rs"]
mod fixtures;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baton::auth::{Scope, Subject};
use fixtures::{completions, started_and_handed_off};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// The postmaster and every process it started.
fn postgres_processes(pgdata: &Path) -> Vec<Pid> {
    let text = std::fs::read_to_string(pgdata.join("postmaster.pid")).unwrap();
    let postmaster: i32 = text.lines().next().unwrap().trim().parse().unwrap();
    let mut all = vec![Pid::from_raw(postmaster)];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(postmaster)
            && let Some(pid) = e.file_name().to_str().and_then(|p| p.parse().ok())
        {
            all.push(Pid::from_raw(pid));
        }
    }
    all
}

fn signal_all(pgdata: &Path, signal: Signal) {
    for pid in postgres_processes(pgdata) {
        let _ = kill(pid, signal);
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// `n` sessions each with a handoff, spread over the 90 days before 2026-11-28.
fn sessions(tag: &str, from: usize, n: usize) -> Vec<Value> {
    (from..from + n)
        .flat_map(|i| started_and_handed_off(tag, i, &initiated_at(i).to_rfc3339()))
        .collect()
}

/// When handoff `i` of [`sessions`] is initiated.
fn initiated_at(i: usize) -> chrono::DateTime<chrono::Utc> {
    let base: chrono::DateTime<chrono::Utc> = "2026-08-30T00:00:00Z".parse().unwrap();
    base + chrono::Duration::seconds((i as i64 * 7_919) % (90 * 86_400))
}

/// The lifecycle blocks (15 minutes, hour, day, week: one rollup row each per dimension) that
/// completing handoffs `from..from + n` of [`sessions`] moves.
fn blocks_touched(from: usize, n: usize) -> [usize; 4] {
    let mut out = [0; 4];
    for (k, secs) in [900, 3_600, 86_400, 604_800].into_iter().enumerate() {
        let blocks: std::collections::HashSet<i64> = (from..from + n)
            .map(|i| initiated_at(i).timestamp().div_euclid(secs))
            .collect();
        out[k] = blocks.len();
    }
    out
}

const ANALYTICS: &str =
    "/handoff-analytics?start_date=2026-08-30T00:00:00Z&end_date=2026-11-28T00:00:00Z";

const LIFECYCLE: &str =
    "/v1/handoff-lifecycle?start_date=2026-08-30T00:00:00Z&end_date=2026-11-28T00:00:00Z";

struct Bench {
    dir: tempfile::TempDir,
    pool: sqlx::PgPool,
    keys: baton::auth::Keys,
    client: reqwest::Client,
}

impl Bench {
    async fn token(&self, slug: &str) -> String {
        let org = baton::admin::create_org(&self.pool, slug, None, None, None)
            .await
            .unwrap();
        baton::admin::issue_token_for(
            &self.pool,
            &self.keys,
            Subject::Org(org.id),
            &[Scope::WriteAll],
            chrono::Duration::days(1),
        )
        .await
        .unwrap()
        .token
    }

    async fn post(&self, base: &str, token: &str, events: &[Value]) -> (u16, f64) {
        let t = Instant::now();
        let status = match self
            .client
            .post(format!("{base}/v1/events"))
            .bearer_auth(token)
            .json(&json!({ "events": events }))
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        (status, t.elapsed().as_secs_f64() * 1000.0)
    }

    async fn get(&self, base: &str, token: &str, path: &str) -> (u16, f64) {
        let t = Instant::now();
        let status = match self
            .client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        (status, t.elapsed().as_secs_f64() * 1000.0)
    }
}

/// Readers and a writer in a loop until stopped; each result with when it was sent.
async fn load_loop(
    bench: Arc<Bench>,
    base: String,
    token: String,
    stop: Arc<AtomicBool>,
    tag: String,
) -> Vec<(Instant, u16, f64)> {
    let mut out = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Acquire) {
        let sent = Instant::now();
        let (status, ms) = match i % 3 {
            0 => bench.get(&base, &token, "/v1/me").await,
            1 => bench.get(&base, &token, ANALYTICS).await,
            _ => bench.post(&base, &token, &sessions(&tag, i * 2, 2)).await,
        };
        out.push((sent, status, ms));
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out
}

/// Runs the load during `fault`, then reports 503 latencies during it and failures after
/// `recovered` (the instant `fault` returns).
async fn outage(
    bench: &Arc<Bench>,
    base: &str,
    token: &str,
    name: &str,
    fault: impl AsyncFnOnce(),
) {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            tokio::spawn(load_loop(
                bench.clone(),
                base.to_owned(),
                token.to_owned(),
                stop.clone(),
                format!("{name}-{w}"),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    fault().await;
    let recovered = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Release);
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await.unwrap());
    }
    let during = sorted(
        results
            .iter()
            .filter(|(sent, s, _)| *sent >= started && *sent < recovered && *s == 503)
            .map(|r| r.2)
            .collect(),
    );
    let other_during = results
        .iter()
        .filter(|(sent, s, _)| *sent >= started && *sent < recovered && *s != 503 && *s != 200)
        .count();
    let after: Vec<_> = results
        .iter()
        .filter(|(sent, ..)| *sent >= recovered)
        .collect();
    let failed_after = after.iter().filter(|(_, s, _)| *s != 200).count();
    println!(
        "{name}: {} answers 503 during the fault, p50 {:.0} ms, max {:.0} ms ({} other non-200); after recovery {} of {} requests failed",
        during.len(),
        pct(&during, 0.5),
        during.last().copied().unwrap_or(f64::NAN),
        other_during,
        failed_after,
        after.len()
    );
}

/// `handoff_lifecycle_rollups`' rows inserted, updated and HOT-updated so far.
async fn rollup_table_stats(pool: &sqlx::PgPool) -> [i64; 3] {
    // Counters reach the view when a backend reports them (at the latest when it exits).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (i, u, h): (i64, i64, i64) = sqlx::query_as(
        r"select n_tup_ins, n_tup_upd, n_tup_hot_upd from pg_stat_user_tables
          where relname = 'handoff_lifecycle_rollups'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    [i, u, h]
}

/// The pending lifecycle rows left once none are, or after `limit`.
async fn pending_after(pool: &sqlx::PgPool, limit: Duration) -> i64 {
    let t = Instant::now();
    loop {
        let n: i64 = sqlx::query_scalar("select count(*) from handoff_lifecycle_pending")
            .fetch_one(pool)
            .await
            .unwrap();
        if n == 0 || t.elapsed() >= limit {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn rate(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::Builder::new()
        .prefix("baton-fault-bench-")
        .tempdir()
        .unwrap();
    let pgdata = dir.path().join("pg");
    let _cluster = common::start_cluster(dir.path());
    let db = baton::db::Database::open(
        &baton::db::DbTarget::Embedded(dir.path().to_path_buf()),
        &baton::db::DbConfig::default(),
    )
    .await
    .unwrap();
    let keys = baton::admin::signing_keys(&db.pool).await.unwrap();
    let bench = Arc::new(Bench {
        dir,
        pool: db.pool.clone(),
        keys,
        client: reqwest::Client::new(),
    });
    let freeze_secs = common::env_usize("BENCH_FREEZE_SECS", 10) as u64;
    let no_limit = [("BATON_RATE_LIMIT_PER_MINUTE", "0")];

    // 1. Frozen and killed under load.
    let server = common::Server::start_with(bench.dir.path(), &no_limit).await;
    let token = bench.token("outage").await;
    let pg = pgdata.clone();
    outage(&bench, &server.base, &token, "frozen", async || {
        signal_all(&pg, Signal::SIGSTOP);
        tokio::time::sleep(Duration::from_secs(freeze_secs)).await;
        signal_all(&pg, Signal::SIGCONT);
    })
    .await;
    let data_dir = bench.dir.path().to_path_buf();
    outage(&bench, &server.base, &token, "killed", async || {
        signal_all(&pg, Signal::SIGKILL);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let dir = data_dir.clone();
        tokio::task::spawn_blocking(move || {
            std::mem::forget(baton::pg::Cluster::ensure_running(&dir, Default::default()).unwrap())
        })
        .await
        .unwrap();
    })
    .await;
    server.stop();

    // 2. Ingest right after a restart, while the statistics do not know the organization
    // (Baton's own ANALYZE turned off to show the plans alone).
    let stale = [
        ("BATON_RATE_LIMIT_PER_MINUTE", "0"),
        ("BATON_ANALYZE_AFTER_EVENTS", "0"),
    ];
    sqlx::query("alter system set autovacuum = off")
        .execute(&bench.pool)
        .await
        .unwrap();
    sqlx::query("select pg_reload_conf()")
        .execute(&bench.pool)
        .await
        .unwrap();
    sqlx::query("analyze").execute(&bench.pool).await.unwrap();
    let server = common::Server::start_with(bench.dir.path(), &stale).await;
    let fresh = bench.token("fresh").await;
    for b in 0..100 {
        let (s, _) = bench
            .post(&server.base, &fresh, &sessions("f", b * 500, 500))
            .await;
        assert_eq!(s, 200);
    }
    // Those batches initiate handoffs spread over 90 days: their lifecycle deltas were deferred
    // (store::lifecycle::pending); the server folds them before it is restarted, as the direct
    // writes of before had applied them within the load.
    let t = Instant::now();
    let n = pending_after(&bench.pool, Duration::from_secs(300)).await;
    println!(
        "  (the load's deferred lifecycle deltas folded {:.2} s after it; {n} left)",
        t.elapsed().as_secs_f64()
    );
    server.stop();
    let server = common::Server::start_with(bench.dir.path(), &stale).await;
    common::create_statement_stats(&bench.pool).await;
    let postmaster = common::postmaster_pid(&pgdata).unwrap();
    let cpu_before = (
        common::cpu_secs(server.pid()),
        common::cluster_cpu_secs(postmaster),
    );
    let table_before = rollup_table_stats(&bench.pool).await;
    let timed = async |from: usize| {
        let t = Instant::now();
        for b in 0..20 {
            let (s, _) = bench
                .post(
                    &server.base,
                    &fresh,
                    &completions("f", from + b * 1000, 1000),
                )
                .await;
            assert_eq!(s, 200);
        }
        t.elapsed()
    };
    let first = timed(0).await;
    let warm = timed(20_000).await;
    println!(
        "ingest after a restart with stale statistics: first 20 batches {:.0} events/s, the next 20 (warm) {:.0} events/s, ratio {:.2}",
        rate(20_000, first),
        rate(20_000, warm),
        warm.as_secs_f64() / first.as_secs_f64()
    );
    println!(
        "  CPU for those 40,000 completions: Baton {:.1} s, PostgreSQL {:.1} s",
        common::cpu_secs(server.pid()) - cpu_before.0,
        common::cluster_cpu_secs(postmaster) - cpu_before.1
    );
    // A lifecycle read over the 90 days while the step's changes are still pending: it computes
    // their deltas in its own snapshot (store::lifecycle::read).
    let pending_for_read = pending_after(&bench.pool, Duration::ZERO).await;
    let (status, read_ms) = bench.get(&server.base, &fresh, LIFECYCLE).await;
    assert_eq!(status, 200);
    println!(
        "  /v1/handoff-lifecycle over the 90 days with {pending_for_read} pending rows: {read_ms:.1} ms"
    );
    // Batches that moved many lifecycle rollup rows deferred them: how long the server's
    // folder takes to apply them (store::lifecycle::pending).
    let cpu_step = (
        common::cpu_secs(server.pid()),
        common::cluster_cpu_secs(postmaster),
    );
    let t = Instant::now();
    let pending_at_end = pending_after(&bench.pool, Duration::ZERO).await;
    let n = pending_after(&bench.pool, Duration::from_secs(120)).await;
    println!(
        "  lifecycle folder: {pending_at_end} pending rows at the end of the step, {n} left after {:.2} s (CPU meanwhile: Baton {:.1} s, PostgreSQL {:.1} s)",
        t.elapsed().as_secs_f64(),
        common::cpu_secs(server.pid()) - cpu_step.0,
        common::cluster_cpu_secs(postmaster) - cpu_step.1
    );
    common::print_statement_stats(&mut bench.pool.acquire().await.unwrap()).await;
    // After the server's backends exit, which flushes their table counters.
    server.stop();
    let table_after = rollup_table_stats(&bench.pool).await;
    let per_batch = |i: usize| (table_after[i] - table_before[i]) as f64 / 40.0;
    println!(
        "  lifecycle rollup rows per batch: {:.0} inserted, {:.0} updated ({:.0} HOT); the organization's rows by dimension and grain:",
        per_batch(0),
        per_batch(1),
        per_batch(2)
    );
    let [q, h, d, w] = blocks_touched(0, 1000);
    println!(
        "    the first batch's handoffs lie in {q} quarter-hours, {h} hours, {d} days and {w} weeks: {} rows in each of the 5 dimensions (every handoff has one key in each)",
        q + h + d + w
    );
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        r"select r.dim, r.grain, count(*) from handoff_lifecycle_rollups r
          join organizations o on o.id = r.org_id where o.slug = 'fresh'
          group by 1, 2 order by 1, 2",
    )
    .fetch_all(&bench.pool)
    .await
    .unwrap();
    for (dim, grain, n) in rows {
        println!("    dim {dim:>12?} grain {grain:>6}: {n:>6} rows");
    }
    sqlx::query("alter system reset autovacuum")
        .execute(&bench.pool)
        .await
        .unwrap();
    sqlx::query("select pg_reload_conf()")
        .execute(&bench.pool)
        .await
        .unwrap();

    // 3. Reads right after a bulk load (183,000 events), then after VACUUM ANALYZE.
    let server = common::Server::start_with(bench.dir.path(), &no_limit).await;
    let loaded = bench.token("loaded").await;
    for b in 0..183 {
        let (s, _) = bench
            .post(&server.base, &loaded, &sessions("l", b * 500, 500))
            .await;
        assert_eq!(s, 200);
    }
    let reads = async || {
        let mut ms = Vec::new();
        for _ in 0..300 {
            let (s, t) = bench.get(&server.base, &loaded, ANALYTICS).await;
            assert_eq!(s, 200);
            ms.push(t);
        }
        sorted(ms)
    };
    let right_after = reads().await;
    sqlx::query("vacuum analyze")
        .execute(&bench.pool)
        .await
        .unwrap();
    let settled = reads().await;
    println!(
        "/handoff-analytics over 90 days right after loading 183,000 events: p50 {:.2} ms, p99 {:.2} ms; after VACUUM ANALYZE: p50 {:.2} ms, p99 {:.2} ms",
        pct(&right_after, 0.5),
        pct(&right_after, 0.99),
        pct(&settled, 0.5),
        pct(&settled, 0.99)
    );

    // 4. One organization posts 32 batches of 1,000 events at once; another works meanwhile.
    let noisy = bench.token("noisy").await;
    let quiet = bench.token("quiet").await;
    let burst = futures::future::join_all((0..32).map(|b| {
        let bench = bench.clone();
        let base = server.base.clone();
        let noisy = noisy.clone();
        async move {
            bench
                .post(&base, &noisy, &sessions(&format!("n{b}"), 0, 500))
                .await
        }
    }));
    let other = async {
        let mut out = Vec::new();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for i in 0..20 {
            out.push(bench.get(&server.base, &quiet, ANALYTICS).await);
            out.push(
                bench
                    .post(&server.base, &quiet, &sessions("q", i * 2, 2))
                    .await,
            );
        }
        out
    };
    let t = Instant::now();
    let (burst, other) = tokio::join!(burst, other);
    let burst_secs = t.elapsed().as_secs_f64();
    let errors = other.iter().filter(|(s, _)| *s != 200).count();
    let other_ms = sorted(other.iter().map(|r| r.1).collect());
    println!(
        "32-batch burst ({:.1} s, {} of 32 batches 200): the other organization's {} requests: {} errors, p50 {:.1} ms, p99 {:.1} ms",
        burst_secs,
        burst.iter().filter(|(s, _)| *s == 200).count(),
        other.len(),
        errors,
        pct(&other_ms, 0.5),
        pct(&other_ms, 0.99)
    );
    server.stop();

    // 5. SIGTERM with 3 clients stalled half-way through their request heads.
    let server = common::Server::start_with(bench.dir.path(), &no_limit).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let stalled: Vec<_> = (0..3)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /v1/me HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    server.stop();
    println!(
        "SIGTERM with 3 stalled clients (grace 10 s): exited after {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    drop(stalled);
}
