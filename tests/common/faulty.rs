//! A PostgreSQL of a test's own, to kill, freeze and restart under a running Baton (the shared
//! harness cluster serves every other test and must never be touched).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use baton::admin;
use baton::db::{Database, DbConfig, DbTarget};
use baton::http::{AppState, HttpConfig};
use baton::pg::{Cluster, ClusterOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A cluster under a temp dir, and a Baton serving on it in this process.
pub struct FaultyDb {
    dir: PathBuf,
    cluster: Option<Cluster>,
    /// Set while frozen: a test that fails mid-freeze must not leave a stopped server behind
    /// (its watchdog's `pg_ctl stop` cannot reach a stopped process).
    frozen: std::cell::Cell<bool>,
}

impl Drop for FaultyDb {
    fn drop(&mut self) {
        if self.frozen.get() {
            self.thaw();
        }
    }
}

impl FaultyDb {
    /// Creates and starts a cluster of its own (removed when the test process exits), durable
    /// as a real one (unlike the shared harness cluster) so that a kill loses nothing committed.
    pub fn start() -> FaultyDb {
        let dir = tempfile::Builder::new()
            .prefix("baton-fault-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let cluster = Cluster::ensure_running(&dir, ClusterOptions::default())
            .expect("start a PostgreSQL cluster");
        cluster
            .stop_when_process_exits(std::process::id(), true)
            .expect("watchdog");
        FaultyDb {
            dir,
            cluster: Some(cluster),
            frozen: std::cell::Cell::new(false),
        }
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The postmaster's pid (first line of `postmaster.pid`).
    pub fn postmaster(&self) -> Pid {
        let text =
            std::fs::read_to_string(self.dir.join("pg/postmaster.pid")).expect("postmaster.pid");
        Pid::from_raw(
            text.lines()
                .next()
                .and_then(|l| l.trim().parse().ok())
                .expect("a pid"),
        )
    }

    /// The postmaster and every process it started.
    fn processes(&self) -> Vec<Pid> {
        let postmaster = self.postmaster();
        let mut all = vec![postmaster];
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`: comm may hold spaces, so split after its `)`.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let ppid: i32 = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if ppid == postmaster.as_raw()
                && let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok())
            {
                all.push(Pid::from_raw(pid));
            }
        }
        all
    }

    /// Freezes the whole server (SIGSTOP to every process): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.frozen.set(true);
        for pid in self.processes() {
            let _ = kill(pid, Signal::SIGSTOP);
        }
    }

    /// Resumes a frozen server.
    pub fn thaw(&self) {
        for pid in self.processes() {
            let _ = kill(pid, Signal::SIGCONT);
        }
        self.frozen.set(false);
    }

    /// Kills the server as a crash would (SIGKILL to every process) and waits until it is gone.
    pub fn kill(&mut self) {
        let procs = self.processes();
        for pid in &procs {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        for _ in 0..200 {
            if procs.iter().all(|p| kill(*p, None).is_err()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The handle's locks go; the data dir stays for the restart.
        self.cluster = None;
    }

    /// Starts the server again after [`FaultyDb::kill`] (crash recovery included); returns when
    /// it accepts connections.
    pub fn restart(&mut self) {
        let cluster = Cluster::ensure_running(&self.dir, ClusterOptions::default())
            .expect("restart the cluster");
        self.cluster = Some(cluster);
    }

    /// Opens the database as `baton serve` does (pool, outage watch, migrations).
    pub async fn open(&self, config: &DbConfig) -> Database {
        Database::open(&DbTarget::Embedded(self.dir.clone()), config)
            .await
            .expect("open the database")
    }

    /// A Baton serving on this database, built as `baton serve` builds it.
    pub async fn serve(&self, http: HttpConfig) -> (super::TestApp, Database) {
        let db = self.open(&DbConfig::default()).await;
        let keys = Arc::new(admin::signing_keys(&db.pool).await.expect("keys"));
        let state = AppState::new(db.pool.clone(), keys).with_db_health(db.health.clone());
        let app = super::TestApp::spawn_with_state(state, http).await;
        (app, db)
    }
}
