//! Load benchmark of the handoff configuration endpoints (not a test): starts Baton in-process on
//! a throwaway embedded PostgreSQL cluster (or on `DATABASE_URL`), creates many organizations with
//! tokens, then drives `GET` and `PUT /v1/api/human_handoff/configuration` over many keep-alive
//! connections for a fixed time and prints requests per second and latency percentiles.
//!
//! The load generator is a minimal HTTP/1.1 client on tokio's `TcpStream` with every request
//! pre-serialized, so that it takes as little of the shared CPU as possible. Run it on a release
//! build: `cargo run --release --bin bench-config -- --help`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use baton::auth::{Scope, Subject};
use baton::db::{Database, DbConfig, DbTarget};
use baton::http::{AppState, HttpConfig};
use baton::pg::{Cluster, ClusterOptions};
use baton::{admin, http};
use clap::Parser;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATH: &str = "/v1/api/human_handoff/configuration";

/// Benchmark of GET and PUT /v1/api/human_handoff/configuration.
#[derive(Debug, Parser)]
struct Args {
    /// Organizations (each with its own token and document).
    #[arg(long, default_value_t = 1000)]
    orgs: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds measured per scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of unmeasured load before each scenario.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Server pool size (PostgreSQL connections).
    #[arg(long, default_value_t = 16)]
    pool: u32,
    /// Scenarios to run, in order: `get`, `put`, `put-if-match` (PUT with `If-Match: *`).
    #[arg(long, value_delimiter = ',', default_value = "get,put")]
    scenarios: Vec<String>,
    /// Run the throwaway cluster without fsync (like the test harness); the default keeps
    /// PostgreSQL's durable settings. Ignored with DATABASE_URL.
    #[arg(long)]
    ephemeral: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let (target, dir) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => (DbTarget::Url(url), None),
        _ => {
            let dir = std::env::temp_dir().join(format!("baton-bench-{}", uuid::Uuid::new_v4()));
            let options = ClusterOptions {
                ephemeral: args.ephemeral,
                ..Default::default()
            };
            let d = dir.clone();
            // Started here so the durability setting is ours; Database::open then joins it.
            let cluster =
                tokio::task::spawn_blocking(move || Cluster::ensure_running(&d, options)).await??;
            cluster.stop_when_process_exits(std::process::id(), true)?;
            (DbTarget::Embedded(dir.clone()), Some((dir, cluster)))
        }
    };
    let db = Database::open(
        &target,
        &DbConfig {
            max_connections: args.pool,
            ..DbConfig::default()
        },
    )
    .await?;
    let result = bench(&args, &db).await;
    db.close().await?;
    if let Some((dir, cluster)) = dir {
        tokio::task::spawn_blocking(move || cluster.stop_now()).await??;
        std::fs::remove_dir_all(&dir).ok();
    }
    result
}

/// Pre-serialized requests of one organization.
struct OrgRequests {
    get: Vec<u8>,
    /// Two PUTs of the org's stored document that differ in `settings.is_active`, so every PUT
    /// really changes the document.
    put: [Vec<u8>; 2],
    put_if_match: [Vec<u8>; 2],
}

async fn bench(args: &Args, db: &Database) -> Result<()> {
    let pool = db.pool.clone();
    let keys = Arc::new(admin::signing_keys(&pool).await?);
    let app = http::router(
        AppState::new(pool.clone(), keys.clone()),
        // The benchmark measures the server, not the per-token read limit.
        &HttpConfig {
            rate_limit_per_minute: 0,
            ..HttpConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    eprintln!("creating {} organizations with tokens…", args.orgs);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let mut tokens = Vec::with_capacity(args.orgs);
    for i in 0..args.orgs {
        let org = admin::create_org(
            &pool,
            &format!("bench-{}-{i}", &run_id[..8]),
            None,
            None,
            None,
        )
        .await?;
        let token = admin::issue_token_for(
            &pool,
            &keys,
            Subject::Org(org.id),
            &[Scope::ReadAll, Scope::WriteAll],
            chrono::Duration::days(1),
        )
        .await?
        .token;
        tokens.push(token);
    }
    eprintln!("  done in {:.1} s", started.elapsed().as_secs_f64());

    // Give every organization a realistic stored document (ids issued), then prepare requests.
    eprintln!("storing a document per organization…");
    let mut conn = Client::connect(addr).await?;
    let mut requests = Vec::with_capacity(args.orgs);
    for token in &tokens {
        let (status, body) = conn.send(&put_request(token, &sample(), None)).await?;
        if status != 200 {
            bail!(
                "seeding PUT answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let mut stored: Value = serde_json::from_slice(&body)?;
        let mut put = Vec::new();
        let mut put_if_match = Vec::new();
        for active in [false, true] {
            stored["settings"]["is_active"] = json!(active);
            put.push(put_request(token, &stored, None));
            put_if_match.push(put_request(token, &stored, Some("*")));
        }
        requests.push(OrgRequests {
            get: format!(
                "GET {PATH} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\n\r\n"
            )
            .into_bytes(),
            put: [put[0].clone(), put[1].clone()],
            put_if_match: [put_if_match[0].clone(), put_if_match[1].clone()],
        });
    }
    drop(conn);
    let requests = Arc::new(requests);

    println!(
        "| scenario | orgs | connections | pool | seconds | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | non-200 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for scenario in &args.scenarios {
        let kind = match scenario.as_str() {
            "get" => Kind::Get,
            "put" => Kind::Put,
            "put-if-match" => Kind::PutIfMatch,
            other => bail!("unknown scenario `{other}` (use get, put, put-if-match)"),
        };
        load(
            addr,
            &requests,
            kind,
            args.connections,
            Duration::from_secs(args.warmup),
        )
        .await?;
        let started = Instant::now();
        let report = load(
            addr,
            &requests,
            kind,
            args.connections,
            Duration::from_secs(args.duration),
        )
        .await?;
        let secs = started.elapsed().as_secs_f64();
        let mut lat = report.latencies_us;
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            f64::from(lat[i]) / 1000.0
        };
        println!(
            "| {scenario} | {} | {} | {} | {secs:.1} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            args.orgs,
            args.connections,
            args.pool,
            lat.len(),
            lat.len() as f64 / secs,
            pct(0.50),
            pct(0.90),
            pct(0.99),
            lat.last().map_or(0.0, |&m| f64::from(m) / 1000.0),
            report.failures,
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Get,
    Put,
    PutIfMatch,
}

struct Report {
    latencies_us: Vec<u32>,
    failures: u64,
}

/// Runs `connections` clients for `duration`, each walking the organizations from its own
/// starting point so that the load spreads over all of them.
async fn load(
    addr: std::net::SocketAddr,
    requests: &Arc<Vec<OrgRequests>>,
    kind: Kind,
    connections: usize,
    duration: Duration,
) -> Result<Report> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(connections);
    for c in 0..connections {
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await?;
            let n = requests.len();
            let mut i = c * n / connections.max(1);
            let mut round = 0usize;
            let mut latencies = Vec::with_capacity(64 * 1024);
            let mut failures = 0u64;
            while Instant::now() < deadline {
                let org = &requests[i % n];
                let req = match kind {
                    Kind::Get => &org.get,
                    Kind::Put => &org.put[round % 2],
                    Kind::PutIfMatch => &org.put_if_match[round % 2],
                };
                let t = Instant::now();
                let (status, _) = client.send(req).await?;
                latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                if status != 200 {
                    failures += 1;
                }
                i += 1;
                if i.is_multiple_of(n) {
                    round += 1;
                }
            }
            anyhow::Ok((latencies, failures))
        }));
    }
    let mut report = Report {
        latencies_us: Vec::new(),
        failures: 0,
    };
    for t in tasks {
        let (lat, failures) = t.await??;
        report.latencies_us.extend(lat);
        report.failures += failures;
    }
    Ok(report)
}

fn sample() -> Value {
    json!({
        "settings": {
            "is_active": true,
            "keywords": ["speak to human", "agent", "operator"],
            "ai_summary_active": true,
            "question_message": "Would you like me to connect you with a member of our team?",
            "confirmation_message": "Thanks! Someone from our team will reply here shortly.",
            "confirmation_outside_working_hours_message": "Our team is away; we will reply during working hours.",
            "working_hours_active": true,
            "timezone": "Europe/London",
            "send_email_notification": true,
            "emails": ["ops@example.com", "lead@example.com"]
        },
        "availability": [
            {"day_span": "monday-friday", "start_time": "09:00", "end_time": "17:30"},
            {"day_span": "saturday", "start_time": "10:00", "end_time": "14:00"}
        ],
        "generic_guidelines": [
            {"name": "user_frustration", "description": "The visitor is upset or repeats the question.", "is_active": true},
            {"name": "customer_support_suggestion", "description": "The answer is to contact support.", "is_active": true},
            {"name": "lack_of_knowledge", "description": "The AI does not know the answer.", "is_active": true},
            {"name": "irrelevant_advice", "description": "The advice does not address the question.", "is_active": false},
            {"name": "media_message", "description": "The visitor sent media.", "is_active": true}
        ],
        "custom_guidelines": [
            {"name": "Refunds", "description": "The visitor asks for a refund or a chargeback.", "is_active": true},
            {"name": "Legal", "description": "Anything involving lawyers or a complaint to a regulator.", "is_active": true}
        ],
        "routing_profiles": [
            {"name": "Billing", "description": "Invoices, payments and refunds.", "is_active": true, "user_ids": [11, 12]},
            {"name": "Technical Support", "description": "Bugs, outages and integration questions.", "is_active": true, "user_ids": [21, 22, 23]}
        ]
    })
}

fn put_request(token: &str, body: &Value, if_match: Option<&str>) -> Vec<u8> {
    let body = body.to_string();
    let if_match = if_match
        .map(|t| format!("if-match: {t}\r\n"))
        .unwrap_or_default();
    format!(
        "PUT {PATH} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\n{if_match}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A keep-alive HTTP/1.1 connection that sends pre-serialized requests and reads
/// `Content-Length` responses (all Baton's JSON responses have one).
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Sends one request; returns the status and the body.
    async fn send(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>)> {
        self.stream.write_all(request).await?;
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("response head")?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .context("status line")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .context("response without content-length")?;
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        let body = self.buf[head_end..head_end + length].to_vec();
        self.buf.drain(..head_end + length);
        Ok((status, body))
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
