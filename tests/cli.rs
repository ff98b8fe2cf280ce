//! The `baton` command and its embedded PostgreSQL, driven as a user would: real processes on
//! real data dirs.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use baton::db::embedded_options;
use baton::pg::{Cluster, ClusterOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

fn baton(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
    cmd.env_remove("DATABASE_URL")
        .env_remove("BATON_JWT_SECRET")
        .env_remove("BATON_ADDR")
        // Tests run servers side by side: none takes the admin listener's fixed default port.
        .env("BATON_ADMIN_ADDR", "off")
        .env("BATON_DATA_DIR", data_dir)
        .stdin(Stdio::null());
    cmd
}

fn run(data_dir: &Path, args: &[&str]) -> Output {
    baton(data_dir).args(args).output().unwrap()
}

fn ok_stdout(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A started `baton serve` and the lines it prints on stdout.
struct Server {
    child: Child,
    base: String,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_logging(data_dir, extra, Stdio::null(), &[])
    }

    /// Starts with its logs sent to `stderr` and extra environment variables.
    fn start_logging(
        data_dir: &Path,
        extra: &[&str],
        stderr: Stdio,
        env: &[(&str, &str)],
    ) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut child = baton(data_dir)
            .args(["serve", "--addr", &addr])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Server {
            child,
            base: format!("http://{addr}"),
            lines,
        }
    }

    /// Polls `/readyz` until it answers 200.
    async fn ready(&mut self) -> Duration {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Ok(res) = client.get(format!("{}/readyz", self.base)).send().await
                && res.status() == 200
            {
                return started.elapsed();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("baton serve exited early with {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "server never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn stop(mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "baton serve exited with {status}");
    }

    /// The demo's summary of stored events (`(new, already stored)`) and its token.
    fn printed_demo(&self) -> ((u64, u64), String) {
        let mut counts = None;
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(60)).unwrap();
            if let Some(rest) = line.split("demo events: ").nth(1) {
                let numbers: Vec<u64> = rest
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse().ok())
                    .collect();
                counts = Some((numbers[0], numbers[1]));
            }
            if let Some(token) = line.strip_prefix("export BATON_TOKEN=") {
                return (
                    counts.expect("summary printed before the token"),
                    token.to_owned(),
                );
            }
        }
    }
}

async fn me(base: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cli_token_is_accepted_then_refused_after_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let reseller: Value = serde_json::from_str(
        ok_stdout(run(
            d,
            &["reseller", "create", "r1", "--name", "Reseller One"],
        ))
        .trim(),
    )
    .unwrap();
    assert_eq!(reseller["slug"], "r1");
    assert!(uuid::Uuid::parse_str(reseller["id"].as_str().unwrap()).is_ok());
    let org_line = ok_stdout(run(
        d,
        &[
            "org",
            "create",
            "acme",
            "--reseller",
            "r1",
            "--timezone",
            "Europe/London",
        ],
    ));
    assert_eq!(org_line.lines().count(), 1, "one JSON line: {org_line}");
    let org: Value = serde_json::from_str(org_line.trim()).unwrap();
    assert_eq!(org.as_object().unwrap().len(), 2, "{org}");

    let out = ok_stdout(run(
        d,
        &[
            "token",
            "issue",
            "--org",
            "acme",
            "--scope",
            "read_all",
            "--ttl-days",
            "7",
        ],
    ));
    // Only the JWT, on one line.
    assert_eq!(out.lines().count(), 1, "{out}");
    let token = out.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");

    let mut server = Server::start(d, &[]);
    server.ready().await;
    let res = me(&server.base, &token).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["organizations"][0]["id"], org["id"]);
    assert_eq!(body["organizations"][0]["timezone"], "Europe/London");

    // Admin commands work on the same data dir while the server runs.
    ok_stdout(run(d, &["org", "create", "second"]));
    let jti = baton::auth::unverified_jti(&token).unwrap().to_string();
    let revoked: Value =
        serde_json::from_str(ok_stdout(run(d, &["token", "revoke", &jti])).trim()).unwrap();
    assert_eq!(revoked["jti"], jti);

    // Servers hear of revocations by notification, within milliseconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    let res = loop {
        let res = me(&server.base, &token).await;
        if res.status() == 401 || Instant::now() > deadline {
            break res;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers().get("www-authenticate").unwrap(), "Bearer");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["statusCode"], 401);
    assert_eq!(body["error"], "Unauthorized");
    assert_eq!(body["message"], "token has been revoked");

    // A reseller token from the CLI reads its organization.
    let rtoken = ok_stdout(run(
        d,
        &["token", "issue", "--reseller", "r1", "--scope", "read_all"],
    ));
    let body: Value = me(&server.base, rtoken.trim()).await.json().await.unwrap();
    assert_eq!(body["kind"], "reseller");
    assert_eq!(body["organizations"].as_array().unwrap().len(), 1);

    server.stop();
    // The server stopped the cluster it started.
    assert!(!d.join("pg/postmaster.pid").exists());
}

#[tokio::test]
async fn demo_is_ready_fast_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut server = Server::start(d, &["--demo"]);
    let (loaded, token) = server.printed_demo();
    let first_ready = server.ready().await;
    assert!(
        loaded.0 > 5_000,
        "a first start stores the demo data: {loaded:?}"
    );
    assert_eq!(loaded.1, 0);
    let first: Value = me(&server.base, &token).await.json().await.unwrap();
    assert_eq!(first["organizations"][0]["slug"], "demo");
    assert_eq!(
        first["scopes"],
        serde_json::json!(["read_all", "write_all"])
    );
    server.stop();

    let mut server = Server::start(d, &["--demo"]);
    let (reloaded, token2) = server.printed_demo();
    server.ready().await;
    // A second --demo adds nothing: every event is recognised as already stored.
    assert_eq!(reloaded, (0, loaded.0));
    let second: Value = me(&server.base, &token2).await.json().await.unwrap();
    assert_eq!(
        second["organizations"], first["organizations"],
        "same demo org reused"
    );
    // The first token still works: same data, same signing secret.
    assert_eq!(me(&server.base, &token).await.status(), 200);
    server.stop();
    eprintln!("first start ready after {first_ready:?}");
}

#[tokio::test]
async fn cli_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // One cluster for all the commands (each joins it), stopped at the end.
    let cluster = Cluster::ensure_running(
        d,
        ClusterOptions {
            ephemeral: true,
            ..Default::default()
        },
    )
    .unwrap();
    cluster
        .stop_when_process_exits(std::process::id(), false)
        .unwrap();
    ok_stdout(run(d, &["org", "create", "taken"]));

    let cases: &[(&[&str], &str)] = &[
        (&["org", "create", "Bad Slug"], "invalid slug"),
        (
            &["org", "create", "taken"],
            "organization `taken` already exists",
        ),
        (
            &["org", "create", "x", "--reseller", "nope"],
            "no reseller with slug `nope`",
        ),
        (
            &["org", "create", "y", "--timezone", "Mars/Base"],
            "unknown time zone `Mars/Base`",
        ),
        (
            &["token", "issue", "--org", "ghost", "--scope", "read_all"],
            "no organization with slug `ghost`",
        ),
        (
            &["token", "revoke", "6a1f8e4e-0000-4000-8000-000000000000"],
            "no token with id",
        ),
        (&["token", "revoke", "garbage"], "neither a token id"),
        (
            &[
                "token",
                "issue",
                "--org",
                "taken",
                "--scope",
                "read_all",
                "--ttl-days",
                "0",
            ],
            "--ttl-days",
        ),
    ];
    for (args, needle) in cases {
        let out = run(d, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    // Usage errors come from the argument parser (exit 2).
    let out = run(d, &["token", "issue", "--org", "taken"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        d,
        &[
            "token",
            "issue",
            "--org",
            "taken",
            "--reseller",
            "r",
            "--scope",
            "read_all",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    cluster.stop_now().unwrap();
}

async fn count_rows(cluster: &Cluster) -> i64 {
    let mut conn = PgConnection::connect_with(&embedded_options(cluster, "postgres"))
        .await
        .unwrap();
    sqlx::query("create table if not exists kept (n int)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("insert into kept values (1)")
        .execute(&mut conn)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("select count(*) from kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    n
}

fn postmaster_pid(d: &Path) -> i32 {
    std::fs::read_to_string(d.join("pg/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn embedded_cluster_starts_stops_restarts_and_survives_an_unclean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let options = ClusterOptions::default();

    let first = Cluster::ensure_running(d, options).unwrap();
    assert!(first.started_here());
    first
        .stop_when_process_exits(std::process::id(), false)
        .unwrap();
    assert_eq!(count_rows(&first).await, 1);

    // A second user of the same data dir joins the running server and does not stop it.
    let joined = Cluster::ensure_running(d, options).unwrap();
    assert!(!joined.started_here());
    joined.stop().unwrap();
    assert_eq!(count_rows(&first).await, 2);

    first.stop().unwrap();
    assert!(!d.join("pg/postmaster.pid").exists());

    // Restart on the same data dir: the data is still there.
    let again = Cluster::ensure_running(d, options).unwrap();
    assert!(again.started_here());
    assert_eq!(count_rows(&again).await, 3);

    // The one that started it leaves first (an admin command finishing while a server that
    // joined it still runs): the cluster stays up for the remaining user, who stops it last.
    let server = Cluster::ensure_running(d, options).unwrap();
    again.stop().unwrap();
    assert_eq!(count_rows(&server).await, 4);
    server.stop().unwrap();
    assert!(!d.join("pg/postmaster.pid").exists());
    let again = Cluster::ensure_running(d, options).unwrap();
    assert!(again.started_here());

    // An unclean stop: the postmaster is killed, its pid file stays behind, and the pid in it now
    // belongs to an unrelated live process (ours), as after a container restart.
    let pid = postmaster_pid(d);
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while process_alive(pid) {
        assert!(Instant::now() < deadline, "killed postgres lingers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its backends notice the postmaster's death and exit on their own, shortly.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid_file = d.join("pg/postmaster.pid");
    let text = std::fs::read_to_string(&pid_file).unwrap();
    let rest: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(
        &pid_file,
        format!("{}\n{}\n", std::process::id(), rest.join("\n")),
    )
    .unwrap();

    let recovered = Cluster::ensure_running(d, options).unwrap();
    assert!(recovered.started_here());
    assert_eq!(count_rows(&recovered).await, 5);
    recovered.stop().unwrap();
}

/// Whether `pid` runs (a zombie waiting for its reaper does not).
fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn json_logs_carry_the_request_span() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log_path = d.join("baton.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Server::start_logging(
        d,
        &[],
        Stdio::from(log),
        &[("BATON_LOG_FORMAT", "json"), ("RUST_LOG", "info")],
    );
    server.ready().await;
    let res = reqwest::Client::new()
        .get(format!("{}/no/such/path", server.base))
        .header("x-request-id", "log-me-7")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    server.stop();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let line = lines
        .iter()
        .find(|l| l["span"]["request_id"] == "log-me-7")
        .unwrap_or_else(|| panic!("no log line of the request in {text}"));
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["span"]["path"], "/no/such/path");
    assert_eq!(line["span"]["status"], 404);
    assert!(line["span"]["latency_ms"].is_number(), "{line}");
}

/// Stops and removes a cluster kept under `/var/lib/baton/clusters` when the test ends, however
/// it ends (the data dir's temp dir removes only the symlinks).
struct RelocatedCluster(std::path::PathBuf);

impl Drop for RelocatedCluster {
    fn drop(&mut self) {
        if self.0.join("pg/postmaster.pid").exists() {
            let pg_ctl = baton::pg::find_bin_dir().unwrap().join("pg_ctl");
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_ctl)
                .arg("-D")
                .arg(self.0.join("pg"))
                .args(["-m", "immediate", "-w", "stop"])
                .current_dir("/")
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn data_dir_inside_a_closed_root_directory_works_and_is_reused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // A directory only its owner can enter, as /root (mode 0700) is.
    let closed = tempfile::tempdir().unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let d = closed.path().join("baton-data");
    let root = nix::unistd::Uid::effective().is_root();
    // As root, the postgres user cannot reach `d`: the cluster lives under /var/lib/baton, in a
    // directory named by the first 16 hex digits of the SHA-256 of the data dir's canonical path.
    let canonical = closed.path().canonicalize().unwrap().join("baton-data");
    let digest = <sha2::Sha256 as sha2::Digest>::digest(canonical.as_os_str().as_encoded_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let elsewhere = Path::new("/var/lib/baton/clusters").join(hash);
    let _cleanup = root.then(|| RelocatedCluster(elsewhere.clone()));

    ok_stdout(run(&d, &["migrate"]));
    let org: Value =
        serde_json::from_str(ok_stdout(run(&d, &["org", "create", "closed"])).trim()).unwrap();
    let token = ok_stdout(run(
        &d,
        &["token", "issue", "--org", "closed", "--scope", "read_all"],
    ));
    if root {
        assert_eq!(
            std::fs::read_link(d.join("pg")).unwrap(),
            elsewhere.join("pg")
        );
        assert_eq!(
            std::fs::read_link(d.join("postgres.log")).unwrap(),
            elsewhere.join("postgres.log")
        );
        assert_eq!(
            std::fs::read_to_string(elsewhere.join("data-dir")).unwrap(),
            canonical.to_str().unwrap()
        );
        let meta = std::fs::metadata(&elsewhere).unwrap();
        let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        assert_eq!(meta.uid(), postgres.uid.as_raw());
        assert_eq!(meta.mode() & 0o777, 0o700);
        // The closed directory stays closed and root's.
        let meta = std::fs::metadata(closed.path()).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o700));
    } else {
        assert!(d.join("pg/PG_VERSION").is_file());
    }

    // The server on the same data dir: ready, and it says where the cluster is.
    let log_path = closed.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Server::start_logging(
        &d,
        &[],
        Stdio::from(log),
        &[("RUST_LOG", "info"), ("BATON_LOG_FORMAT", "json")],
    );
    server.ready().await;
    let body: Value = me(&server.base, token.trim()).await.json().await.unwrap();
    assert_eq!(body["organizations"][0]["id"], org["id"]);
    server.stop();
    let logged = std::fs::read_to_string(&log_path).unwrap();
    let expected_pgdata = if root {
        elsewhere.join("pg")
    } else {
        canonical.join("pg")
    };
    assert!(
        logged.contains(&format!("\"cluster\":\"{}\"", expected_pgdata.display())),
        "{logged}"
    );
    // Stopped by the last user (the server).
    assert!(!d.join("pg/postmaster.pid").exists());

    // A second run finds the same cluster: the organization is still there.
    let out = run(&d, &["org", "create", "closed"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("organization `closed` already exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut server = Server::start(&d, &[]);
    server.ready().await;
    let body: Value = me(&server.base, token.trim()).await.json().await.unwrap();
    assert_eq!(body["organizations"][0]["id"], org["id"]);
    server.stop();
}
