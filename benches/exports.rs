//! Export benchmark (not a test): `GET /v1/exports/handoffs` as CSV and as NDJSON over HTTP
//! against a release build of `baton serve`, for one organization of 1M handoffs; records the
//! rows per second the client receives and the server process's memory growth while it streams.
//!
//! Data: the handoffs (all completed, waits of 20 s to 30 min, one or two reasons, a summary
//! with commas and quotes on every tenth, so the CSV writer quotes), their sessions and their
//! lifecycle attributes, generated with `insert … select generate_series` straight into the
//! projections in one transaction that truncates the tables first (with `wal_level = minimal`
//! PostgreSQL then writes no WAL for them). The client reads the body chunk by chunk and counts
//! line ends without keeping the rows (no field of the data holds a line break), and checks that
//! it got one row per handoff.
//!
//! Memory: `VmRSS` of the server sampled every 20 ms during each export (the peak minus the
//! value just before the request), and `VmHWM` (the process's peak) before and after.
//!
//! CPU: user + system seconds of the server, of this client and of PostgreSQL's processes
//! during each export (from `/proc/<pid>/stat`), printed per 1M rows.
//!
//! Run: `cargo bench --bench exports` (env: BENCH_HANDOFFS, default 1,000,000; BENCH_RUNS, runs
//! per format, default 3; BENCH_DIGEST=1: print the SHA-256 of the first body of each format, to check that a change
//! keeps the bytes; BENCH_PERF=<dir>: `perf record -g` of the server and PostgreSQL during the
//! first export of each format).
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use baton::auth::{Scope, Subject};
use baton::db::embedded_options;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

/// The history generated: 365 days from here.
const HISTORY_START: &str = "2025-11-01T00:00:00Z";
const HISTORY_SECONDS: i64 = 365 * 24 * 3600;

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

/// Generates `n` handoffs of `org`, their sessions and lifecycle rows.
async fn load(conn: &mut PgConnection, org: Uuid, n: usize) {
    exec(
        conn,
        "settings",
        "begin; set local maintenance_work_mem = '1GB'; set local work_mem = '1GB';
         set local synchronous_commit = off",
    )
    .await;
    exec(
        conn,
        "truncate",
        "truncate sessions, handoffs, handoff_lifecycle cascade",
    )
    .await;
    let at = format!(
        "timestamptz '{HISTORY_START}' + make_interval(secs => (i::float8 * {HISTORY_SECONDS} / {n}))"
    );
    exec(
        conn,
        "handoffs",
        &format!(
            r#"insert into handoffs (org_id, handoff_id, session_id, state, attempts, transitions,
                   reasons, sentiment, destination, summary, data, operator_id, initiated_at,
                   last_initiated_at, completed_at, updated_at)
               select '{org}'::uuid, 'h' || i, 's' || (i * 3 / 4), 'handoff_completed', 1 + (i % 9 = 0)::int, 2,
                      case when i % 3 = 0 and (i / 7) % 7 <> i % 7
                           then array[r[i % 7 + 1], r[(i / 7) % 7 + 1]] else array[r[i % 7 + 1]] end,
                      (array[null, 'positive', 'neutral', 'negative']::text[])[i % 4 + 1],
                      (array[null, 'billing', 'support']::text[])[i % 3 + 1],
                      case when i % 10 = 0 then 'Asked for "a refund", then for a manager'
                           else 'Customer wants a person' end,
                      '{{}}'::jsonb, 'op-' || i % 40, t.at, t.at, t.w, t.w
               from generate_series(0::bigint, {n} - 1) as i,
                    lateral (select {at} as at,
                                    {at} + make_interval(secs => 20 + (i * 7919) % 1800) as w) t,
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
            r#"insert into sessions (org_id, session_id, channel, agent_id, started_at)
               select '{org}'::uuid, 's' || k, (array['web', 'voice']::text[])[k % 2 + 1],
                      'agent-' || k % 50,
                      timestamptz '{HISTORY_START}'
                          + make_interval(secs => ((k * 4)/ 3)::float8 * {HISTORY_SECONDS} / {n})
               from generate_series(0::bigint, {n} * 3 / 4) as k"#
        ),
    )
    .await;
    exec(
        conn,
        "handoff_lifecycle",
        r#"insert into handoff_lifecycle (org_id, handoff_id, channel, agent_id, outside_working_hours)
           select h.org_id, h.handoff_id, 'web', null,
                  extract(hour from h.initiated_at) not between 8 and 17
           from handoffs h"#,
    )
    .await;
    exec(conn, "commit", "commit").await;
    exec(
        conn,
        "vacuum analyze",
        "vacuum analyze sessions, handoffs, handoff_lifecycle",
    )
    .await;
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// CPU seconds used so far by the three parties of an export.
#[derive(Clone, Copy)]
struct Cpu {
    server: f64,
    client: f64,
    postgres: f64,
}

impl Cpu {
    fn now(server_pid: u32, data_dir: &std::path::Path) -> Cpu {
        Cpu {
            server: common::cpu_secs(server_pid),
            client: common::cpu_secs(std::process::id()),
            postgres: common::postmaster_pid(&data_dir.join("pg"))
                .map_or(0.0, common::cluster_cpu_secs),
        }
    }
}

/// With BENCH_PERF=<dir>: `perf record -g` of the server and of PostgreSQL's processes during
/// the first export of each format, into `<dir>/perf-<format>.data`.
fn perf_start(
    server_pid: u32,
    data_dir: &std::path::Path,
    format: &str,
) -> Option<std::process::Child> {
    let out = std::env::var("BENCH_PERF").ok()?;
    let mut pids = vec![server_pid.to_string()];
    if let Some(postmaster) = std::fs::read_to_string(data_dir.join("pg/postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_owned()))
    {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            if stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                == Some(postmaster.as_str())
            {
                pids.push(pid);
            }
        }
    }
    let child = std::process::Command::new("perf")
        .args(["record", "-F", "499", "-g", "-o"])
        .arg(format!("{out}/perf-{format}.data"))
        .args(["-p", &pids.join(",")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    Some(child)
}

/// Stops a `perf record` started by [`perf_start`] (SIGINT: it writes its file and exits).
fn perf_stop(child: Option<std::process::Child>) {
    if let Some(mut child) = child {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = child.wait();
    }
}

/// One export's figures.
struct Run {
    rows: u64,
    bytes: u64,
    secs: f64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    /// CPU seconds used during the export by the server, this client and PostgreSQL.
    cpu: Cpu,
    /// SHA-256 of the body, with BENCH_DIGEST set.
    digest: Option<String>,
}

/// Streams one export, counting line ends, while a task samples the server's `VmRSS`.
async fn export(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    pid: u32,
    data_dir: &std::path::Path,
    digest: bool,
    gzip: bool,
) -> Run {
    use sha2::Digest;
    let mut digest = digest.then(sha2::Sha256::new);
    let cpu_before = Cpu::now(pid, data_dir);
    let rss_before_kib = status_kib(pid, "VmRSS:");
    let peak = Arc::new(AtomicU64::new(rss_before_kib));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let t = Instant::now();
    let mut request = client.get(url).bearer_auth(token);
    if gzip {
        request = request.header("accept-encoding", "gzip");
    }
    let mut res = request.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let (mut lines, mut bytes) = (0u64, 0u64);
    // With gzip, the body is inflated here (the client's CPU then includes it).
    let mut inflate = gzip.then(|| flate2::write::GzDecoder::new(Vec::with_capacity(1 << 20)));
    while let Some(chunk) = res.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
        let plain: &[u8] = match inflate.as_mut() {
            Some(inflate) => {
                use std::io::Write;
                inflate.get_mut().clear();
                inflate.write_all(&chunk).unwrap();
                inflate.flush().unwrap();
                inflate.get_ref()
            }
            None => &chunk,
        };
        lines += plain.iter().filter(|b| **b == b'\n').count() as u64;
        if let Some(d) = digest.as_mut() {
            d.update(plain);
        }
    }
    if let Some(inflate) = inflate {
        let rest = inflate.finish().unwrap();
        lines += rest.iter().filter(|b| **b == b'\n').count() as u64;
        if let Some(d) = digest.as_mut() {
            d.update(&rest);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu_after = Cpu::now(pid, data_dir);
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    peak.fetch_max(status_kib(pid, "VmRSS:"), Ordering::Relaxed);
    Run {
        rows: lines,
        bytes,
        secs,
        rss_before_kib,
        rss_peak_kib: peak.load(Ordering::Relaxed),
        cpu: Cpu {
            server: cpu_after.server - cpu_before.server,
            client: cpu_after.client - cpu_before.client,
            postgres: cpu_after.postgres - cpu_before.postgres,
        },
        digest: digest.map(|d| {
            d.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        }),
    }
}

async fn run() {
    let n = common::env_usize("BENCH_HANDOFFS", 1_000_000);
    let runs = common::env_usize("BENCH_RUNS", 3);
    // BENCH_KEEP_DIR: the data dir is made there and kept (to study the queries with psql
    // afterwards, on a cluster started by hand); otherwise a temporary one.
    let (_temp, data) = match std::env::var("BENCH_KEEP_DIR") {
        Ok(keep) => {
            std::fs::create_dir_all(&keep).unwrap();
            let data = tempfile::Builder::new()
                .prefix("data-")
                .tempdir_in(keep)
                .unwrap()
                .keep();
            println!("data dir kept: {}", data.display());
            (None, data)
        }
        Err(_) => {
            let temp = tempfile::Builder::new()
                .prefix("baton-bench-exports-")
                .tempdir()
                .unwrap();
            let data = temp.path().to_path_buf();
            (Some(temp), data)
        }
    };
    let dir = data.as_path();
    let cluster = common::start_cluster_keeping(
        dir,
        "wal_level = minimal\nmax_wal_senders = 0\nmax_wal_size = '8GB'\ncheckpoint_timeout = '1h'\n",
        _temp.is_none(),
    );
    let db = baton::db::Database::open(
        &baton::db::DbTarget::Embedded(dir.to_path_buf()),
        &baton::db::DbConfig::default(),
    )
    .await
    .unwrap();
    let keys = baton::admin::signing_keys(&db.pool).await.unwrap();
    let org = baton::admin::create_org(&db.pool, "exported", None, None, None)
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
    let mut conn =
        PgConnection::connect_with(&embedded_options(&cluster, baton::db::DATABASE_NAME))
            .await
            .unwrap();
    println!("loading {n} handoffs ...");
    let started = Instant::now();
    load(&mut conn, org.id, n).await;
    println!("loaded in {:.0} s", started.elapsed().as_secs_f64());

    let server = common::Server::start(dir).await;
    let pid = server.pid();
    let client = reqwest::Client::new();
    let range = "start_date=2025-10-01&end_date=2026-12-31";
    let hwm_start = status_kib(pid, "VmHWM:");
    let mut table = Vec::new();
    // BENCH_GZIP=1: each format also with `Accept-Encoding: gzip` (MB then counts the
    // compressed bytes received).
    let mut variants = vec![("csv", false), ("ndjson", false)];
    if std::env::var("BENCH_GZIP").is_ok() {
        variants.extend([("csv", true), ("ndjson", true)]);
    }
    for (format, gzip) in variants {
        let url = format!(
            "{}/v1/exports/handoffs?format={format}&{range}",
            server.base
        );
        let name = if gzip { "gzip" } else { "" };
        for i in 0..runs {
            let perf = (i == 0)
                .then(|| perf_start(pid, dir, &format!("{format}{name}")))
                .flatten();
            // Only the first run of a format is hashed or profiled: the others measure alone.
            let digest = i == 0 && std::env::var("BENCH_DIGEST").is_ok();
            let r = export(&client, &url, &token, pid, dir, digest, gzip).await;
            perf_stop(perf);
            let rows = if format == "csv" { r.rows - 1 } else { r.rows };
            assert_eq!(rows, n as u64, "{format}: one row per handoff");
            println!(
                "  {format}{} run {}: {rows} rows, {:.1} MB in {:.2} s{}",
                if gzip { " gzip" } else { "" },
                i + 1,
                r.bytes as f64 / 1e6,
                r.secs,
                r.digest
                    .as_deref()
                    .map(|d| format!(", sha256 {d}"))
                    .unwrap_or_default()
            );
            let label = if gzip {
                format!("{format} gzip")
            } else {
                format.to_owned()
            };
            table.push((label, rows, r));
        }
    }
    let hwm_end = status_kib(pid, "VmHWM:");
    println!();
    println!("GET /v1/exports/handoffs, {n} handoffs, one request at a time");
    println!(
        "| format | rows | MB | seconds | rows/s | RSS before MiB | RSS peak growth MiB | CPU s per 1M rows: server | client | PostgreSQL |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (format, rows, r) in &table {
        let per_m = 1e6 / *rows as f64;
        println!(
            "| {format} | {rows} | {:.1} | {:.2} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} |",
            r.bytes as f64 / 1e6,
            r.secs,
            *rows as f64 / r.secs,
            r.rss_before_kib as f64 / 1024.0,
            r.rss_peak_kib.saturating_sub(r.rss_before_kib) as f64 / 1024.0,
            r.cpu.server * per_m,
            r.cpu.client * per_m,
            r.cpu.postgres * per_m,
        );
    }
    println!(
        "server VmHWM: {:.1} MiB after start-up, {:.1} MiB after the exports (growth {:.1} MiB)",
        hwm_start as f64 / 1024.0,
        hwm_end as f64 / 1024.0,
        hwm_end.saturating_sub(hwm_start) as f64 / 1024.0
    );
    server.stop();
    conn.close().await.unwrap();
    db.close().await.unwrap();
    cluster.stop_now().ok();
}
