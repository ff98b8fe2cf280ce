//! Shared by the benchmarks: a release `baton serve` child process on a data dir.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A numeric setting from the environment, or `default` when unset or not a number.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A running `baton serve` (the release build of this crate), killed if the benchmark panics.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Server {
    /// Starts `baton serve` on a free loopback port over the cluster of `data_dir` (which the
    /// benchmark has started, so the server joins it) and waits until `/readyz` answers 200.
    /// The release build of this crate, or the binary BENCH_BATON names.
    pub async fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[]).await
    }

    /// Like [`Server::start`], with extra environment variables (server settings).
    pub async fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        // BENCH_BATON: another build of the server (to compare two builds on one machine).
        let program = std::env::var("BENCH_BATON").unwrap_or(env!("CARGO_BIN_EXE_baton").into());
        let child = Command::new(program)
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .env("BATON_DATA_DIR", data_dir)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            // Benchmarks measure the server, not the per-token read limit.
            .env("BATON_RATE_LIMIT_PER_MINUTE", "0")
            // No admin listener: its fixed default port may be taken on a developer's machine.
            .env("BATON_ADMIN_ADDR", "off")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start baton serve");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = client
                .get(format!("{}/readyz", server.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return server;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "server not ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it as an operator would (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Starts the embedded cluster of `data_dir`; with BENCH_PG_STATS set, with
/// `pg_stat_statements` loaded (see [`create_statement_stats`] and [`print_statement_stats`]).
/// The cluster stops when this process exits.
pub fn start_cluster(data_dir: &Path) -> baton::pg::Cluster {
    use baton::pg::{Cluster, ClusterOptions};
    let mut cluster = Cluster::ensure_running(data_dir, ClusterOptions::default()).unwrap();
    if statement_stats() {
        use std::io::Write;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data_dir.join("pg/postgresql.conf"))
            .unwrap();
        writeln!(conf, "shared_preload_libraries = 'pg_stat_statements'").unwrap();
        cluster.stop_now().unwrap();
        cluster = Cluster::ensure_running(data_dir, ClusterOptions::default()).unwrap();
    }
    cluster
        .stop_when_process_exits(std::process::id(), true)
        .unwrap();
    cluster
}

/// Whether BENCH_PG_STATS asks for PostgreSQL's time per statement.
pub fn statement_stats() -> bool {
    std::env::var("BENCH_PG_STATS").is_ok()
}

/// Creates (or resets) `pg_stat_statements` when [`statement_stats`] is on.
pub async fn create_statement_stats(pool: &sqlx::PgPool) {
    if statement_stats() {
        sqlx::query("create extension if not exists pg_stat_statements")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("select pg_stat_statements_reset()")
            .execute(pool)
            .await
            .unwrap();
    }
}

/// Prints the statements PostgreSQL spent most time on when [`statement_stats`] is on.
pub async fn print_statement_stats(conn: &mut sqlx::PgConnection) {
    if !statement_stats() {
        return;
    }
    let rows: Vec<(String, f64, i64, f64)> = sqlx::query_as(
        r"select left(regexp_replace(query, '\s+', ' ', 'g'), 110), total_exec_time, calls,
                 mean_exec_time
          from pg_stat_statements order by total_exec_time desc limit 40",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    println!("  PostgreSQL time by statement (ms in all, calls, mean ms):");
    for (q, ms, calls, mean) in rows {
        println!("    {ms:>9.0} {calls:>6} {mean:>8.3}  {q}");
    }
    // Background work the statements do not show: autovacuum and autoanalyze runs, and WAL.
    let maintained: Vec<(String, i64, i64)> = sqlx::query_as(
        r"select relname::text, autovacuum_count, autoanalyze_count from pg_stat_user_tables
          where autovacuum_count + autoanalyze_count > 0 order by relname",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    println!("  autovacuum / autoanalyze runs: {maintained:?}");
    let wal: Option<i64> = sqlx::query_scalar("select wal_bytes::int8 from pg_stat_wal")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    println!(
        "  WAL written since the cluster started: {} MB",
        wal.unwrap_or(0) / 1_000_000
    );
}

/// Like [`start_cluster`], with `settings` (lines of `postgresql.conf`) appended and the
/// cluster restarted to apply them; with BENCH_PG_STATS set, `pg_stat_statements` is loaded too.
pub fn start_cluster_with(data_dir: &Path, settings: &str) -> baton::pg::Cluster {
    start_cluster_keeping(data_dir, settings, false)
}

/// Like [`start_cluster_with`]; with `keep`, the data dir is left in place when the cluster
/// stops (to start it again by hand and study its queries).
pub fn start_cluster_keeping(data_dir: &Path, settings: &str, keep: bool) -> baton::pg::Cluster {
    use baton::pg::{Cluster, ClusterOptions};
    use std::io::Write;
    let cluster = Cluster::ensure_running(data_dir, ClusterOptions::default()).unwrap();
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data_dir.join("pg/postgresql.conf"))
        .unwrap();
    writeln!(conf, "\n{settings}").unwrap();
    if statement_stats() {
        writeln!(conf, "shared_preload_libraries = 'pg_stat_statements'").unwrap();
    }
    cluster.stop_now().unwrap();
    let cluster = Cluster::ensure_running(data_dir, ClusterOptions::default()).unwrap();
    cluster
        .stop_when_process_exits(std::process::id(), !keep)
        .unwrap();
    cluster
}

/// CPU seconds used so far by a process (user + system), from `/proc/<pid>/stat`; 0 when it is
/// gone.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux.
    (ticks(14) + ticks(15)) / 100.0
}

/// The postmaster's pid of the cluster under `pgdata` (the first line of `postmaster.pid`).
pub fn postmaster_pid(pgdata: &Path) -> Option<u32> {
    std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
}

/// CPU seconds of a PostgreSQL cluster: its postmaster and every live process it started.
pub fn cluster_cpu_secs(postmaster: u32) -> f64 {
    let mut total = cpu_secs(postmaster);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            total += cpu_secs(pid);
        }
    }
    total
}
