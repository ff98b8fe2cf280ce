//! The serving loop (`baton::listener`) against stalled and hostile clients: real sockets, the real
//! router on a real database (plus a slow route), and the real `baton` binary for SIGTERM.
//! Timings are behaviour checks with generous slack, not benchmarks.
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use baton::http::{AppState, HttpConfig};
use baton::listener::{ConnectionStats, HttpListener, ListenerOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::ConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A serving loop running in this process.
struct Served {
    addr: SocketAddr,
    stats: Arc<ConnectionStats>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Baton's router on a fresh database, plus `GET /slow/{ms}` which answers after `ms`.
    async fn start(options: ListenerOptions) -> Served {
        let (pool, _) = common::fresh_database().await;
        let keys = Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
        let baton = baton::http::router(AppState::new(pool, keys), &HttpConfig::default());
        let app = Router::new()
            .route(
                "/slow/{ms}",
                get(|Path(ms): Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "slept"
                }),
            )
            .fallback_service(baton);
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = HttpListener::new(tcp, options);
        let stats = listener.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(listener.serve(app, async {
            let _ = stopped.await;
        }));
        Served {
            addr,
            stats,
            stop: Some(stop),
            done,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Triggers the shutdown; returns when it was triggered.
    fn shutdown(&mut self) -> Instant {
        let _ = self.stop.take().unwrap().send(());
        Instant::now()
    }
}

fn options(header: u64, idle: u64, max: usize, grace: u64) -> ListenerOptions {
    ListenerOptions {
        header_read_timeout: Duration::from_millis(header),
        idle_timeout: Duration::from_millis(idle),
        max_connections: max,
        shutdown_grace: Duration::from_millis(grace),
    }
}

/// A client that sends half a request head and then nothing.
async fn stalled(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: baton\r\nX-Never-Ends: ")
        .await
        .unwrap();
    s
}

/// Reads until the server closes `s` (end of stream or reset); how long that took, or `None`
/// when still open after `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// One `GET` on a raw keep-alive connection; the status line and body.
async fn raw_get(s: &mut TcpStream, path: &str) -> (String, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: baton\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a full response");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("content-length");
            if data.len() >= end + 4 + length {
                let status = text.lines().next().unwrap().to_owned();
                return (status, text[end + 4..end + 4 + length].to_owned());
            }
        }
    }
}

#[tokio::test]
async fn a_half_sent_head_is_cut_at_the_header_timeout_while_others_are_served() {
    let served = Served::start(options(1_000, 30_000, 64, 1_000)).await;
    let mut slow = stalled(served.addr).await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_millis(700) {
        let res = client.get(served.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered >= 5, "{answered}");
    let closed = closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("the stalled client is disconnected");
    let at = started.elapsed();
    assert!(
        at >= Duration::from_millis(800) && at < Duration::from_secs(4),
        "closed after {at:?} ({closed:?} of waiting)"
    );
    assert!(served.stats.timed_out() >= 1);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The idle timeout (2 s) is longer than the head timeout (0.5 s): an idle connection is not
    // mistaken for a stalled head.
    let served = Served::start(options(500, 2_000, 64, 1_000)).await;
    let mut conn = TcpStream::connect(served.addr).await.unwrap();
    let (status, body) = raw_get(&mut conn, "/healthz").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status} {body}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // Still open, and still serving, after twice the head timeout.
    let (status, _) = raw_get(&mut conn, "/healthz").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let idle = closed_within(&mut conn, Duration::from_secs(6))
        .await
        .expect("the idle connection is closed");
    assert!(
        idle >= Duration::from_millis(1_700) && idle < Duration::from_secs(5),
        "closed after {idle:?} idle"
    );
}

#[tokio::test]
async fn stalled_clients_beyond_the_cap_wait_in_the_backlog_and_a_good_client_gets_through() {
    let cap = 4;
    let served = Served::start(options(1_000, 30_000, cap, 1_000)).await;
    let mut hostile = Vec::new();
    for _ in 0..cap + 3 {
        hostile.push(stalled(served.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served.stats.open(), cap, "the cap is full, the rest wait");
    let started = Instant::now();
    let res = reqwest::Client::new()
        .get(served.url("/healthz"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(res.status(), 200);
    assert!(
        waited < Duration::from_secs(5),
        "served after {waited:?}: once the first stalled ones timed out"
    );
    for s in &mut hostile {
        assert!(
            closed_within(s, Duration::from_secs(5)).await.is_some(),
            "every stalled client is eventually disconnected"
        );
    }
    assert!(
        served.stats.peak() <= cap,
        "peak {} > cap {cap}",
        served.stats.peak()
    );
    assert!(served.stats.accepted() >= (cap + 3 + 1) as u64);
}

#[tokio::test]
async fn idle_connections_make_room_when_the_cap_is_reached() {
    let cap = 2;
    // Long idle timeout: only the cap can explain their closing.
    let served = Served::start(options(10_000, 60_000, cap, 1_000)).await;
    let mut idle = Vec::new();
    for _ in 0..cap {
        let mut conn = TcpStream::connect(served.addr).await.unwrap();
        let (status, _) = raw_get(&mut conn, "/healthz").await;
        assert!(status.starts_with("HTTP/1.1 200"));
        idle.push(conn);
    }
    let started = Instant::now();
    let res = reqwest::Client::new()
        .get(served.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for conn in &mut idle {
        assert!(closed_within(conn, Duration::from_secs(2)).await.is_some());
    }
    assert!(served.stats.peak() <= cap);
}

#[tokio::test]
async fn shutdown_closes_stalled_clients_at_once_and_lets_the_request_in_flight_finish() {
    let mut served = Served::start(options(30_000, 30_000, 64, 2_000)).await;
    let mut hostile = Vec::new();
    for _ in 0..3 {
        hostile.push(stalled(served.addr).await);
    }
    let slow = tokio::spawn(reqwest::Client::new().get(served.url("/slow/1000")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped_at = served.shutdown();
    for s in &mut hostile {
        let closed = closed_within(s, Duration::from_secs(2))
            .await
            .expect("a stalled head is closed at shutdown");
        assert!(closed < Duration::from_millis(500), "{closed:?}");
    }
    let res = slow
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "slept");
    tokio::time::timeout(Duration::from_secs(6), &mut served.done)
        .await
        .expect("the loop returns within the grace period")
        .unwrap();
    let took = stopped_at.elapsed();
    // ~0.7 s: what the request in flight still needed, not the 2 s grace.
    assert!(took < Duration::from_millis(1_900), "{took:?}");
    assert!(
        TcpStream::connect(served.addr).await.is_err(),
        "no longer listening"
    );
    assert_eq!(served.stats.open(), 0);
}

#[tokio::test]
async fn shutdown_cuts_requests_that_outlast_the_grace_period() {
    let mut served = Served::start(options(30_000, 30_000, 64, 1_000)).await;
    let slow = tokio::spawn(reqwest::Client::new().get(served.url("/slow/20000")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped_at = served.shutdown();
    tokio::time::timeout(Duration::from_secs(6), &mut served.done)
        .await
        .expect("the loop returns once the grace period is over")
        .unwrap();
    let took = stopped_at.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(slow.await.unwrap().is_err(), "the cut request fails");
    assert_eq!(served.stats.open(), 0);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn baton_serve_exits_cleanly_within_the_grace_period_on_sigterm_with_stalled_clients() {
    let (_pool, db) = common::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("baton.log");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--addr", &addr.to_string()])
        .args(["--shutdown-grace-secs", "10", "--admin-addr", "off"])
        .env("DATABASE_URL", db.to_url_lossy().as_str())
        .env("BATON_DATA_DIR", dir.path())
        .env("BATON_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("BATON_ADDR")
        .env_remove("BATON_SHUTDOWN_GRACE_SECS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(res) = client.get(format!("http://{addr}/readyz")).send().await
            && res.status() == 200
        {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "baton serve exited early with {status}: {}",
                std::fs::read_to_string(&log_path).unwrap()
            );
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut hostile = Vec::new();
    for _ in 0..3 {
        hostile.push(stalled(addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("baton serve still running 20 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = signalled.elapsed();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "exit {status}: {log}");
    assert!(took < Duration::from_secs(12), "{took:?} with a 10 s grace");
    for line in log.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            !matches!(line["level"].as_str(), Some("WARN" | "ERROR")),
            "{line}"
        );
    }
    assert!(log.contains("shut down cleanly"), "{log}");
    for s in &mut hostile {
        assert!(closed_within(s, Duration::from_secs(1)).await.is_some());
    }
    eprintln!("SIGTERM to exit with 3 stalled clients and a 10 s grace: {took:?}");
}

#[tokio::test]
async fn at_the_cap_heads_pending_for_over_a_second_make_room_before_their_deadline() {
    let cap = 4;
    // A head deadline far beyond the test: only the pressure rule can let the good client in.
    let served = Served::start(options(60_000, 60_000, cap, 1_000)).await;
    let mut hostile = Vec::new();
    for _ in 0..cap + 2 {
        hostile.push(stalled(served.addr).await);
    }
    let started = Instant::now();
    let res = reqwest::Client::new()
        .get(served.url("/healthz"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(6), "served after {waited:?}");
    assert!(served.stats.peak() <= cap);
    eprintln!(
        "good client behind {} stalled ones at a cap of {cap}: {waited:?}",
        cap + 2
    );
}

/// Runs `baton healthcheck` with `args` and no database settings at all (a data dir that does not
/// exist, so a cluster start would show); its exit status and stderr.
fn healthcheck(args: &[&str], data_dir: &std::path::Path) -> (std::process::ExitStatus, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("healthcheck")
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("BATON_ADMIN_ADDR")
        .env("BATON_DATA_DIR", data_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn baton_healthcheck_passes_against_a_running_server_and_fails_against_a_closed_port() {
    let (_pool, db) = common::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("baton.log");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--addr", &addr.to_string()])
        .args(["--admin-addr", &admin.to_string()])
        .env("DATABASE_URL", db.to_url_lossy().as_str())
        .env("BATON_DATA_DIR", dir.path())
        .env_remove("BATON_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(res) = client.get(format!("http://{admin}/readyz")).send().await
            && res.status() == 200
        {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "baton serve exited early with {status}: {}",
                std::fs::read_to_string(&log_path).unwrap()
            );
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let nowhere = dir.path().join("no-cluster-here");
    // The admin listener, and the API address (probes live on both).
    for target in [admin, addr] {
        let (status, stderr) = healthcheck(&["--addr", &target.to_string()], &nowhere);
        assert!(status.success(), "{target}: {status} {stderr}");
        assert_eq!(stderr, "");
    }
    // Prometheus text on the admin listener; Telzino's metrics (a token needed) on the API port.
    let res = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("# TYPE baton_database_up gauge")
    );
    let res = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // A closed port: non-zero, one line on stderr, and no cluster started for it.
    let closed = format!("127.0.0.1:{}", free_port());
    let (status, stderr) = healthcheck(&["--addr", &closed], &nowhere);
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&closed), "{stderr}");
    assert!(!nowhere.exists(), "healthcheck touched the data dir");

    // SIGTERM stops both listeners.
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        TcpStream::connect(admin).await.is_err(),
        "admin still listening"
    );
    let (status, stderr) = healthcheck(&["--addr", &admin.to_string()], &nowhere);
    assert!(!status.success());
    assert!(stderr.starts_with("error: cannot connect to"), "{stderr}");
}
