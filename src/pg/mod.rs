//! The embedded PostgreSQL cluster: Baton's default store when no `DATABASE_URL` is given.
//!
//! Policy: use the machine's own PostgreSQL server binaries (never download anything), keep the
//! cluster under Baton's data dir, listen on a Unix socket inside that dir only (no TCP port that
//! could collide), and reuse whatever is already there: an existing cluster is started, a running
//! one (a server, or another admin command, on the same data dir) is joined, and a `postmaster.pid`
//! left by an unclean stop is cleared. Every Baton process using the cluster holds a shared lock
//! on `<data-dir>/.baton.users`; the last one to leave stops the cluster (so an admin command
//! never stops it under a running server, and a cluster left by a crashed server is stopped by
//! whoever uses it last). PostgreSQL refuses to run as root, so when Baton runs as root
//! the cluster belongs to, and runs as, the `postgres` system user. Local connections use `trust`:
//! the socket lives in a directory that only the cluster's owner (and root) can enter.
//!
//! A root-owned data dir is often one the `postgres` user cannot reach: a clone under `/root`
//! (mode 0700) is the usual case. Then the cluster files (`pg/` and `postgres.log`) live in
//! [`RELOCATED_ROOT`]`/<hash of the canonical data dir>` instead, a directory of the `postgres`
//! user's, and the data dir keeps the locks and two symlinks (`pg`, `postgres.log`) pointing there,
//! so an operator finds the cluster with `ls -l`. Keyed by the data dir, the same data dir finds
//! the same cluster at every start. The alternatives were worse: opening `/root` to other users
//! weakens the machine, and the system temp dir is emptied at reboot (and by tmp cleaners).
//!
//! Everything here is synchronous (`std::process`): it runs once at start and once at stop.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Uid, User};
use sha2::{Digest, Sha256};

/// The database superuser that `initdb` creates; Baton connects as it over the socket.
pub const SUPERUSER: &str = "baton";
/// The port number only names the socket file (`.s.PGSQL.5432`); no TCP port is opened (unless
/// [`ClusterOptions::tcp_port`] asks for one).
const PORT: u16 = 5432;
/// Where clusters live whose data dir the `postgres` user cannot reach (Baton running as root).
pub const RELOCATED_ROOT: &str = "/var/lib/baton/clusters";
/// Written in a relocated cluster's directory: the data dir it belongs to, for operators and to
/// tell a (vanishingly unlikely) hash collision from a reuse.
const DATA_DIR_NOTE: &str = "data-dir";
/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes with the trailing NUL).
const MAX_SOCKET_PATH: usize = 107;
const INSTALL_HINT: &str = "no PostgreSQL server binaries found (looked in PATH, `pg_config --bindir` and /usr/lib/postgresql/*/bin): install the `postgresql` package (Debian/Ubuntu: apt-get install postgresql), set BATON_PG_BIN to the directory holding `initdb` and `pg_ctl`, or set DATABASE_URL";

/// How the cluster is tuned.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterOptions {
    /// Trade durability for speed (`fsync`, `synchronous_commit` and `full_page_writes` off):
    /// only for throwaway clusters such as the test harness's.
    pub ephemeral: bool,
    /// Also listen on `127.0.0.1` at this port (the socket file is then named after it too).
    /// For tests that need TCP, such as TLS; Baton itself only uses the Unix socket.
    pub tcp_port: Option<u16>,
}

/// A PostgreSQL cluster under a data dir, running (see [`Cluster::ensure_running`]).
#[derive(Debug)]
pub struct Cluster {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    /// Holds `pg/` and `postgres.log`: the data dir, or a directory under [`RELOCATED_ROOT`].
    cluster_dir: PathBuf,
    pgdata: PathBuf,
    port: u16,
    owner: Option<User>,
    started_here: bool,
    /// Shared lock on `.baton.users` while this process uses the cluster.
    user_lock: Option<Flock<File>>,
}

impl Cluster {
    /// Makes sure a cluster runs on `data_dir`: creates it on first use, starts it if it is
    /// stopped (clearing a stale `postmaster.pid`), or joins it if something already runs it.
    pub fn ensure_running(data_dir: &Path, options: ClusterOptions) -> Result<Cluster> {
        fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve data dir {}", data_dir.display()))?;
        let bin_dir = find_bin_dir()?;
        let owner = cluster_owner()?;
        let port = options.tcp_port.unwrap_or(PORT);
        // One process at a time decides where the cluster lives, creates, starts or stops it; the
        // others wait.
        let _init = lock_file(&data_dir.join(".baton.lock"), FlockArg::LockExclusive)?;
        let cluster_dir = match &owner {
            Some(user) if !can_reach(user, &data_dir)? => relocate(&data_dir, user)?,
            Some(user) => {
                // Only the cluster's owner needs the data dir; root can enter it anyway.
                chown(&data_dir, user)?;
                data_dir.clone()
            }
            None => data_dir.clone(),
        };
        let pgdata = cluster_dir.join("pg");
        let socket = pgdata.join(format!(".s.PGSQL.{port}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "data dir path {} is too long for a Unix socket ({} bytes at most for {}); choose a shorter --data-dir",
                data_dir.display(),
                MAX_SOCKET_PATH,
                socket.display()
            );
        }

        let mut cluster = Cluster {
            bin_dir,
            data_dir,
            cluster_dir,
            pgdata,
            port,
            owner,
            started_here: false,
            user_lock: None,
        };
        if !cluster.pgdata.join("PG_VERSION").exists() {
            cluster.initdb(options)?;
        }
        cluster.write_settings(options)?;
        if !cluster.accepts_connections() {
            cluster.clear_stale_lock_files()?;
            cluster.start()?;
            cluster.started_here = true;
        }
        cluster.user_lock = Some(lock_file(&cluster.users_lock_path(), FlockArg::LockShared)?);
        Ok(cluster)
    }

    fn users_lock_path(&self) -> PathBuf {
        self.data_dir.join(".baton.users")
    }

    /// The directory holding the server's Unix socket (pass it as the connection host).
    pub fn socket_dir(&self) -> &Path {
        &self.pgdata
    }

    /// The socket's port number (part of the socket file name; also the TCP port when
    /// [`ClusterOptions::tcp_port`] is set).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's PostgreSQL data directory (`pg/`): under the data dir, or under
    /// [`RELOCATED_ROOT`] when the `postgres` user cannot reach the data dir.
    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// Whether the cluster lives under [`RELOCATED_ROOT`] rather than in the data dir.
    pub fn relocated(&self) -> bool {
        self.cluster_dir != self.data_dir
    }

    /// The data dir this cluster lives under.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether this process started the server.
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Leaves the cluster, and stops it if no other Baton process uses it any more.
    pub fn stop(mut self) -> Result<()> {
        let _init = lock_file(&self.data_dir.join(".baton.lock"), FlockArg::LockExclusive)?;
        drop(self.user_lock.take());
        match lock_file(&self.users_lock_path(), FlockArg::LockExclusiveNonblock) {
            // Nobody else holds the shared lock: we are the last user.
            Ok(_last) if self.accepts_connections() => self.stop_now(),
            Ok(_) => Ok(()),
            Err(_) => Ok(()),
        }
    }

    /// Stops the server whoever started it (fast shutdown: open sessions are ended).
    pub fn stop_now(&self) -> Result<()> {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .context("cannot run pg_ctl stop")?;
        if !out.status.success() {
            bail!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Detaches a watchdog process that stops the server (immediate shutdown) once process `pid`
    /// has exited, and then removes the data dir when `remove_data_dir` is set. Throwaway clusters
    /// (the test harness's) use it because a process's statics are never dropped.
    pub fn stop_when_process_exits(&self, pid: u32, remove_data_dir: bool) -> Result<()> {
        let mut stop = String::new();
        if let Some(user) = &self.owner {
            stop.push_str(&format!("runuser -u {} -- ", shell_quote(&user.name)));
        }
        stop.push_str(&format!(
            "{} -D {} -m immediate -w stop",
            shell_quote(&self.bin_dir.join("pg_ctl").to_string_lossy()),
            shell_quote(&self.pgdata.to_string_lossy())
        ));
        let mut script =
            format!("while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1");
        if remove_data_dir {
            script.push_str(&format!(
                "; rm -rf {}",
                shell_quote(&self.data_dir.to_string_lossy())
            ));
            if self.relocated() {
                script.push_str(&format!(
                    " {}",
                    shell_quote(&self.cluster_dir.to_string_lossy())
                ));
            }
        }
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            .process_group(0)
            .spawn()
            .context("cannot start the cluster watchdog")?;
        Ok(())
    }

    fn initdb(&self, options: ClusterOptions) -> Result<()> {
        fs::create_dir_all(&self.pgdata)
            .with_context(|| format!("cannot create {}", self.pgdata.display()))?;
        fs::set_permissions(&self.pgdata, fs::Permissions::from_mode(0o700))?;
        if let Some(user) = &self.owner {
            chown(&self.pgdata, user)?;
        }
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&self.pgdata).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        if options.ephemeral {
            cmd.arg("--no-sync");
        }
        let out = cmd.output().context("cannot run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // Settings that depend on where the data dir is live in baton.conf, rewritten at every
        // start, so that a moved data dir keeps working.
        let mut conf = OpenOptions::new()
            .append(true)
            .open(self.pgdata.join("postgresql.conf"))?;
        writeln!(
            conf,
            "\n# Added by Baton: socket location and tuning, rewritten at every start.\ninclude_if_exists = 'baton.conf'"
        )?;
        Ok(())
    }

    fn write_settings(&self, options: ClusterOptions) -> Result<()> {
        let socket_dir = self.pgdata.to_string_lossy().replace('\'', "''");
        let listen = if options.tcp_port.is_some() {
            "127.0.0.1"
        } else {
            ""
        };
        let port = self.port;
        let mut conf = format!(
            "# Written by Baton at every start; edit postgresql.conf instead.\n\
             listen_addresses = '{listen}'\n\
             port = {port}\n\
             unix_socket_directories = '{socket_dir}'\n\
             unix_socket_permissions = 0700\n\
             max_connections = 200\n"
        );
        if options.ephemeral {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let path = self.pgdata.join("baton.conf");
        fs::write(&path, conf).with_context(|| format!("cannot write {}", path.display()))?;
        if let Some(user) = &self.owner {
            chown(&path, user)?;
        }
        Ok(())
    }

    fn accepts_connections(&self) -> bool {
        UnixStream::connect(self.pgdata.join(format!(".s.PGSQL.{}", self.port))).is_ok()
    }

    /// A `postmaster.pid` whose process is gone, or is not a postgres at all (the pid was reused
    /// after a crash or a container restart), would stop PostgreSQL from starting.
    fn clear_stale_lock_files(&self) -> Result<()> {
        let pid_file = self.pgdata.join("postmaster.pid");
        let Ok(mut file) = File::open(&pid_file) else {
            return Ok(());
        };
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let pid: Option<i32> = text.lines().next().and_then(|l| l.trim().parse().ok());
        let alive_postgres = pid.is_some_and(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmd| String::from_utf8_lossy(&cmd).contains("postgres"))
                .unwrap_or(false)
        });
        if alive_postgres {
            // A live postmaster that does not accept connections yet is starting up or shutting
            // down: leave it to pg_ctl, which will report what is going on.
            return Ok(());
        }
        tracing::warn!(pid_file = %pid_file.display(), "removing stale postmaster.pid left by an unclean stop");
        fs::remove_file(&pid_file)?;
        let port = self.port;
        let socket_lock = self.pgdata.join(format!(".s.PGSQL.{port}.lock"));
        let _ = fs::remove_file(socket_lock);
        let _ = fs::remove_file(self.pgdata.join(format!(".s.PGSQL.{port}")));
        Ok(())
    }

    fn start(&self) -> Result<()> {
        let log = self.cluster_dir.join("postgres.log");
        let offset = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-s", "start"])
            .output()
            .context("cannot run pg_ctl start")?;
        if !out.status.success() {
            let mut tail = String::new();
            if let Ok(mut f) = File::open(&log) {
                let _ = f.seek(SeekFrom::Start(offset));
                let _ = f.read_to_string(&mut tail);
            }
            bail!(
                "PostgreSQL did not start (data dir {}): {} {}",
                self.pgdata.display(),
                String::from_utf8_lossy(&out.stderr).trim(),
                tail.trim()
            );
        }
        Ok(())
    }

    /// A command for one of the server binaries, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let bin = self.bin_dir.join(program);
        let mut cmd = match &self.owner {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", &user.name, "--"]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        // The caller's working directory may be closed to the postgres user.
        cmd.current_dir("/").stdin(Stdio::null());
        cmd
    }
}

/// Opens (creating it) and locks a lock file.
fn lock_file(path: &Path, how: FlockArg) -> Result<Flock<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Flock::lock(file, how).map_err(|(_, e)| anyhow!("cannot lock {}: {e}", path.display()))
}

/// The system user that must own and run the cluster: `postgres` when Baton runs as root,
/// nobody else (Baton's own user) otherwise.
fn cluster_owner() -> Result<Option<User>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres")? {
        Some(user) => Ok(Some(user)),
        None => bail!(
            "PostgreSQL refuses to run as root and there is no `postgres` system user to run it as: install the `postgresql` package, run Baton as an ordinary user, or set DATABASE_URL"
        ),
    }
}

/// Whether `user` can reach `data_dir`, which Baton gives to it: that takes search permission on
/// every directory above (asked of the system as that user, so groups and ACLs count).
fn can_reach(user: &User, data_dir: &Path) -> Result<bool> {
    let Some(parent) = data_dir.parent() else {
        return Ok(true);
    };
    let status = Command::new("runuser")
        .args(["-u", &user.name, "--", "test", "-x"])
        .arg(parent)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run runuser to check what the postgres user can reach")?;
    Ok(status.success())
}

/// The directory under [`RELOCATED_ROOT`] that keeps the cluster of `data_dir` (canonical), made
/// ready: created (0700, owned by `user`), labelled with the data dir, and pointed at from the
/// data dir by the symlinks `pg` and `postgres.log`.
fn relocate(data_dir: &Path, user: &User) -> Result<PathBuf> {
    let dir = relocated_dir(data_dir);
    let unreachable = || {
        format!(
            "the `postgres` user cannot reach data dir {} (a directory above it is closed to other users), so its cluster lives in {}",
            data_dir.display(),
            dir.display()
        )
    };
    let pg_link = data_dir.join("pg");
    if let Ok(meta) = fs::symlink_metadata(&pg_link)
        && !meta.file_type().is_symlink()
    {
        // An empty `pg/` is what a failed `initdb` of an older Baton left behind.
        if fs::remove_dir(&pg_link).is_err() {
            bail!(
                "{}, but {} already holds files: move that cluster to a place the `postgres` user can reach, or open the directories above it to others (chmod o+x)",
                unreachable(),
                pg_link.display()
            );
        }
    }
    let root = Path::new(RELOCATED_ROOT);
    fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    // The postgres user must traverse every level down to its own directory.
    for level in [Path::new("/var/lib/baton"), root] {
        let mode = fs::metadata(level)?.permissions().mode();
        if mode & 0o001 == 0 {
            fs::set_permissions(level, fs::Permissions::from_mode(mode | 0o755))
                .with_context(|| format!("cannot open {} to the postgres user", level.display()))?;
        }
    }
    let note = dir.join(DATA_DIR_NOTE);
    match fs::read(&note) {
        Ok(named) if named != data_dir.as_os_str().as_encoded_bytes() => bail!(
            "{} belongs to data dir {}, not to {}",
            dir.display(),
            String::from_utf8_lossy(&named),
            data_dir.display()
        ),
        Ok(_) => {}
        Err(_) => {
            fs::create_dir_all(&dir).with_context(unreachable)?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
            chown(&dir, user)?;
            fs::write(&note, data_dir.as_os_str().as_encoded_bytes())
                .with_context(|| format!("cannot write {}", note.display()))?;
            tracing::info!(
                data_dir = %data_dir.display(),
                cluster = %dir.display(),
                "the postgres user cannot reach the data dir: its cluster lives elsewhere"
            );
        }
    }
    for name in ["pg", "postgres.log"] {
        let link = data_dir.join(name);
        let target = dir.join(name);
        if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link)
                .with_context(|| format!("cannot create the symlink {}", link.display()))?;
        }
    }
    Ok(dir)
}

/// `RELOCATED_ROOT/<first 16 hex digits of the SHA-256 of the canonical data dir>`: short, so the
/// socket path stays far below the kernel's limit, and the same for the same data dir whatever
/// Baton's version (a standard hash, unlike std's `DefaultHasher`).
pub fn relocated_dir(data_dir: &Path) -> PathBuf {
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Path::new(RELOCATED_ROOT).join(hex)
}

fn chown(path: &Path, user: &User) -> Result<()> {
    nix::unistd::chown(path, Some(user.uid), Some(Gid::from_raw(user.gid.as_raw())))
        .with_context(|| format!("cannot give {} to user {}", path.display(), user.name))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`: `BATON_PG_BIN`, then PATH, then
/// `pg_config --bindir`, then Debian's `/usr/lib/postgresql/<version>/bin`, newest version first.
pub fn find_bin_dir() -> Result<PathBuf> {
    let pg_config = || {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        out.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    find_bin_dir_in(
        std::env::var_os("BATON_PG_BIN").map(PathBuf::from),
        std::env::var_os("PATH"),
        pg_config,
        Path::new("/usr/lib/postgresql"),
    )
}

/// [`find_bin_dir`] with its inputs given: the override, a PATH value, a `pg_config` probe and
/// the directory holding one `<version>/bin` per installed major version.
pub fn find_bin_dir_in(
    override_dir: Option<PathBuf>,
    path: Option<std::ffi::OsString>,
    pg_config: impl FnOnce() -> Option<PathBuf>,
    versions_root: &Path,
) -> Result<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(dir) = override_dir {
        if has_all(&dir) {
            return Ok(dir);
        }
        bail!(
            "BATON_PG_BIN={} does not hold initdb, pg_ctl and postgres",
            dir.display()
        );
    }
    if let Some(dir) = path.and_then(|p| std::env::split_paths(&p).find(|dir| has_all(dir))) {
        return Ok(dir);
    }
    if let Some(dir) = pg_config().filter(|dir| has_all(dir)) {
        return Ok(dir);
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(versions_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Vec<u32> = name
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            has_all(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, dir)) => Ok(dir),
        None => bail!("{INSTALL_HINT}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bin(dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        for b in ["initdb", "pg_ctl", "postgres"] {
            fs::write(dir.join(b), "").unwrap();
        }
    }

    #[test]
    fn newest_debian_version_wins() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9.6", "13", "15", "16"] {
            fake_bin(&root.path().join(v).join("bin"));
        }
        // A newer major without the binaries does not count.
        fs::create_dir_all(root.path().join("17/bin")).unwrap();
        let found = find_bin_dir_in(None, Some("".into()), || None, root.path()).unwrap();
        assert_eq!(found, root.path().join("16/bin"));
    }

    #[test]
    fn path_then_pg_config_come_first() {
        let root = tempfile::tempdir().unwrap();
        fake_bin(&root.path().join("15/bin"));
        let on_path = root.path().join("on-path");
        fake_bin(&on_path);
        let from_config = root.path().join("from-config");
        fake_bin(&from_config);
        let path = std::env::join_paths([root.path().join("empty"), on_path.clone()]).unwrap();
        let c = from_config.clone();
        assert_eq!(
            find_bin_dir_in(None, Some(path), move || Some(c), root.path()).unwrap(),
            on_path
        );
        assert_eq!(
            find_bin_dir_in(None, None, || Some(from_config.clone()), root.path()).unwrap(),
            from_config
        );
    }

    #[test]
    fn nothing_installed_names_the_package() {
        let root = tempfile::tempdir().unwrap();
        let err =
            find_bin_dir_in(None, Some("/nonexistent".into()), || None, root.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("install the `postgresql` package"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn bad_override_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let err = find_bin_dir_in(Some(root.path().to_path_buf()), None, || None, root.path())
            .unwrap_err();
        assert!(err.to_string().contains("BATON_PG_BIN"));
    }
}
