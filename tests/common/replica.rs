//! A real streaming replica of the test server, for the read-replica tests: `pg_basebackup -R`
//! from the throwaway primary (over its Unix socket, as its `baton` superuser: initdb's default
//! `pg_hba.conf` trusts local replication connections, and PostgreSQL 15's defaults
//! `wal_level = replica` and `max_wal_senders = 10` allow streaming) into a new data dir, started
//! with `pg_ctl` as the cluster's owner (`postgres` when the tests run as root). Stopped
//! (immediate shutdown) and removed when dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sqlx::postgres::PgConnectOptions;

/// A running streaming replica.
pub struct Replica {
    dir: tempfile::TempDir,
    bin: PathBuf,
    owner: Option<String>,
}

impl Replica {
    /// Base-backs up the server `primary` connects to and starts the copy as a hot standby.
    pub fn start(primary: &PgConnectOptions) -> Replica {
        // Where pg_ctl really lives (PATH may hold symlinks to a few of the binaries only):
        // pg_basebackup is beside it.
        let bin = std::fs::canonicalize(
            baton::pg::find_bin_dir()
                .expect("PostgreSQL binaries")
                .join("pg_ctl"),
        )
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
        let owner = nix::unistd::Uid::effective()
            .is_root()
            .then(|| "postgres".to_owned());
        let dir = tempfile::Builder::new()
            .prefix("baton-replica-")
            .tempdir()
            .expect("temp dir");
        let pgdata = dir.path().join("pg");
        if let Some(owner) = &owner {
            let user = nix::unistd::User::from_name(owner).unwrap().unwrap();
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
        }
        let socket = primary
            .get_socket()
            .expect("the throwaway cluster listens on a Unix socket (DATABASE_URL over TCP is not supported here)")
            .clone();
        let replica = Replica { dir, bin, owner };
        replica.run(
            "pg_basebackup",
            &[
                "-h",
                socket.to_str().unwrap(),
                "-p",
                &primary.get_port().to_string(),
                "-U",
                primary.get_username(),
                "-D",
                pgdata.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
            ],
        );
        // The primary keeps its socket in its data dir, so the copy holds its socket lock file.
        for entry in std::fs::read_dir(&pgdata).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with(".s.PGSQL.") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        // Its own socket directory (the copied settings name the primary's); read last, so these
        // win over the included baton.conf.
        let auto = pgdata.join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).unwrap();
        conf.push_str(&format!(
            "\nlisten_addresses = ''\nunix_socket_directories = '{}'\nhot_standby = on\n",
            pgdata.display()
        ));
        std::fs::write(&auto, conf).unwrap();
        replica.start_server();
        replica
    }

    fn run(&self, program: &str, args: &[&str]) {
        let mut cmd = match &self.owner {
            Some(owner) => {
                let mut c = Command::new("runuser");
                c.args(["-u", owner, "--"]).arg(self.bin.join(program));
                c
            }
            None => Command::new(self.bin.join(program)),
        };
        let out = cmd
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let log = std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "{program} failed: {} {log}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start_server(&self) {
        let log = self.dir.path().join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.pgdata().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-s",
                "start",
            ],
        );
    }

    /// The replica's data dir.
    pub fn pgdata(&self) -> PathBuf {
        self.dir.path().join("pg")
    }

    /// Connect options for `database` on the replica.
    pub fn options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(self.pgdata())
            .port(5432)
            .username(baton::pg::SUPERUSER)
            .database(database)
    }

    /// The postmaster's pid, while it runs.
    pub fn pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.pgdata().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// The postmaster and every process it started.
    fn processes(&self) -> Vec<i32> {
        let Some(root) = self.pid() else {
            return Vec::new();
        };
        let mut pids = vec![root];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // The parent pid is the second field after the command name (in parentheses).
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(root) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Freezes every process of the replica (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Thaws it (SIGCONT).
    pub fn thaw(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        for pid in self.processes() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// Stops it at once (immediate shutdown, as a crash would).
    pub fn kill(&self) {
        self.thaw();
        let _ = self.try_run_stop();
    }

    fn try_run_stop(&self) -> bool {
        if !Path::new(&self.pgdata().join("postmaster.pid")).exists() {
            return true;
        }
        let mut cmd = match &self.owner {
            Some(owner) => {
                let mut c = Command::new("runuser");
                c.args(["-u", owner, "--"]).arg(self.bin.join("pg_ctl"));
                c
            }
            None => Command::new(self.bin.join("pg_ctl")),
        };
        cmd.args([
            "-D",
            self.pgdata().to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}
