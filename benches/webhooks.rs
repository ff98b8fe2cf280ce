//! Webhook benchmark (not a test): a release `baton serve` on a fresh embedded PostgreSQL with a
//! receiver in this process on 127.0.0.1 (answering 200 at once), all sharing the machine.
//!
//! 1. Ingest: batches of 1,000 events (sessions, handoffs initiated then completed or failed,
//!    session ends, calls) into organizations without any webhook, then into organizations with
//!    one webhook subscribed to every type (its deliveries running meanwhile), alternately, in
//!    rounds; events/s of each and their ratio.
//! 2. Deliveries/s: messages the receiver got over the time from the first acknowledged batch
//!    with a subscription to the last message received.
//! 3. Delay from acknowledgement to delivery: small batches (one handoff each) at a steady pace;
//!    for each message, receipt time minus the time its batch's answer arrived (p50, p99).
//!
//! With BENCH_HOLD=1 the deliveries accumulate during the ingest phase instead (the server runs
//! with `BATON_WEBHOOKS_CONCURRENCY=0`); then a server with deliveries is started and the
//! backlog's drain is timed (deliveries/s from its start to the last message received).
//!
//! Each ingest phase also reports the CPU time it cost per 1,000 events: the server process,
//! PostgreSQL (the postmaster and its children) and this process (clients and receiver), read
//! from `/proc` (so other load on the machine does not count).
//!
//! Run: `cargo bench --bench webhooks` (env: BENCH_ROUNDS, default 3; BENCH_BATCHES per round
//! and kind, default 40; BENCH_CLIENTS, default 2; BENCH_LATENCY_BATCHES, default 400;
//! BENCH_HOLD; BENCH_PG_STATS: print PostgreSQL's time per statement after the ingest phase and
//! after the drain; BENCH_PG_SETTINGS: more `postgresql.conf` lines, `;`-separated; BENCH_SPLIT=1:
//! each session's handoff completes and the session ends one batch after it started, so every
//! handoff changes while its first message may still wait in the outbox).
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use baton::auth::{Scope, Subject};
use serde_json::{Value, json};

const BATCH: usize = 1_000;

fn batch(tag: &str, b: usize) -> Vec<Value> {
    let mut events = Vec::with_capacity(BATCH);
    let mut n = 0;
    while events.len() < BATCH {
        let (first, second) = session(tag, b, n);
        events.extend(first);
        events.extend(second);
        n += 1;
    }
    events.truncate(BATCH);
    events
}

/// Sessions per batch of [`split_batch`] (2.92 events each on average: ~1,000 a batch).
const SPLIT_SESSIONS: usize = 342;

/// A batch of BENCH_SPLIT=1: the first half of each of its sessions (started, handed off) and the
/// second half of the previous batch's (handoff completed or failed, session ended, call), so
/// that every handoff changes one batch after its `handoff.initiated` message.
fn split_batch(tag: &str, b: usize) -> Vec<Value> {
    let mut events = Vec::with_capacity(BATCH + 20);
    for n in 0..SPLIT_SESSIONS {
        if b > 0 {
            events.extend(session(tag, b - 1, n).1);
        }
        events.extend(session(tag, b, n).0);
    }
    events
}

/// Session `n` of batch `b`: its first events (started, handed off) and its last ones (handoff
/// completed or failed, ended, call).
fn session(tag: &str, b: usize, n: usize) -> (Vec<Value>, Vec<Value>) {
    let base = chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z").unwrap();
    let s = format!("{tag}-{b}-{n}");
    let at = |min: i64| {
        (base
            + chrono::Duration::milliseconds((b * 1000 + n) as i64 * 200)
            + chrono::Duration::minutes(min))
        .to_rfc3339()
    };
    let voice = n.is_multiple_of(4);
    let mut first = vec![
        json!({"id": format!("{s}-start"), "type": "session.started", "occurred_at": at(0),
        "session_id": s, "channel": if voice { "phone_voice" } else { "web" }, "agent_id": format!("agent-{}", n % 5)}),
    ];
    let mut second = Vec::new();
    if n.is_multiple_of(3) {
        first.push(json!({"id": format!("{s}-h"), "type": "handoff.initiated", "occurred_at": at(1),
            "handoff_id": format!("{s}-h"), "session_id": s,
            "reasons": ["user_requested_human_assistance", "insufficient_knowledge"],
            "sentiment": "negative", "references": [{"type": "instruction", "id": format!("i{}", n % 7)}],
            "destination": "support_queue", "data": {"customer_id": n}}));
        second.push(json!({"id": format!("{s}-hc"), "type": if n.is_multiple_of(9) { "handoff.failed" } else { "handoff.completed" },
            "occurred_at": at(2), "handoff_id": format!("{s}-h")}));
    }
    second.push(json!({"id": format!("{s}-end"), "type": "session.ended", "occurred_at": at(3), "session_id": s, "sentiment": "neutral"}));
    if voice {
        second.push(json!({"id": format!("{s}-call"), "type": "call.completed", "occurred_at": at(3),
            "call_id": format!("{s}-call"), "agent_id": format!("agent-{}", n % 5), "started_at": at(0),
            "duration_seconds": 180.5, "outcome": "resolved"}));
    }
    (first, second)
}

/// Receipt times by `webhook-id`, and the `data.handoff_id` of each message.
type Receipt = (Instant, String, Option<String>);

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Receipt>>>);

async fn receive(
    State(log): State<Log>,
    headers: axum::http::HeaderMap,
    body: String,
) -> StatusCode {
    let now = Instant::now();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let handoff = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["data"]["handoff_id"].as_str().map(str::to_owned));
    log.0.lock().unwrap().push((now, id, handoff));
    StatusCode::OK
}

/// CPU seconds of (server, PostgreSQL, this process).
#[derive(Clone, Copy, Default)]
struct Cpu(f64, f64, f64);

impl Cpu {
    fn now(server: u32, postmaster: u32) -> Cpu {
        Cpu(
            common::cpu_secs(server),
            common::cluster_cpu_secs(postmaster),
            common::cpu_secs(std::process::id()),
        )
    }
    fn add_since(&mut self, start: Cpu, end: Cpu) {
        self.0 += end.0 - start.0;
        self.1 += end.1 - start.1;
        self.2 += end.2 - start.2;
    }
    fn per_1000(&self, events: usize) -> String {
        let k = events as f64 / 1000.0;
        format!(
            "server {:.1} ms, PostgreSQL {:.1} ms, bench {:.1} ms (CPU per 1,000 events)",
            self.0 * 1000.0 / k,
            self.1 * 1000.0 / k,
            self.2 * 1000.0 / k
        )
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn post_all(
    client: &reqwest::Client,
    url: &str,
    jobs: Vec<(String, Vec<String>)>,
) -> (usize, f64) {
    let started = Instant::now();
    let mut handles = Vec::new();
    let mut events = 0;
    for (token, bodies) in jobs {
        events += bodies.len() * BATCH;
        let client = client.clone();
        let url = url.to_owned();
        handles.push(tokio::spawn(async move {
            for body in bodies {
                let res = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    (events, started.elapsed().as_secs_f64())
}

async fn run() {
    let rounds = common::env_usize("BENCH_ROUNDS", 3);
    let per_round = common::env_usize("BENCH_BATCHES", 40);
    let clients = common::env_usize("BENCH_CLIENTS", 2).max(1);
    let latency_batches = common::env_usize("BENCH_LATENCY_BATCHES", 400);
    let hold = std::env::var("BENCH_HOLD").is_ok_and(|v| !v.is_empty() && v != "0");
    let split = std::env::var("BENCH_SPLIT").is_ok_and(|v| !v.is_empty() && v != "0");

    let log = Log::default();
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::Builder::new()
        .prefix("baton-bench-")
        .tempdir()
        .unwrap();
    // BENCH_PG_SETTINGS: more `postgresql.conf` lines, `;`-separated (e.g. auto_explain's, with
    // a `log_directory` outside the data dir, to keep the plans of slow statements).
    let cluster = match std::env::var("BENCH_PG_SETTINGS") {
        Ok(extra) => common::start_cluster_with(dir.path(), &extra.replace(';', "\n")),
        Err(_) => common::start_cluster(dir.path()),
    };
    let postmaster: u32 = std::fs::read_to_string(cluster.pgdata().join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let db = baton::db::Database::open(
        &baton::db::DbTarget::Embedded(dir.path().to_path_buf()),
        &baton::db::DbConfig::default(),
    )
    .await
    .unwrap();
    common::create_statement_stats(&db.pool).await;
    let keys = baton::admin::signing_keys(&db.pool).await.unwrap();
    let mut tokens = Vec::new();
    for kind in ["none", "sub"] {
        let mut ts = Vec::new();
        for c in 0..=clients {
            let org = baton::admin::create_org(&db.pool, &format!("{kind}-{c}"), None, None, None)
                .await
                .unwrap();
            let t = baton::admin::issue_token_for(
                &db.pool,
                &keys,
                Subject::Org(org.id),
                &[Scope::ReadAll, Scope::WriteAll],
                chrono::Duration::days(1),
            )
            .await
            .unwrap();
            ts.push(t.token);
        }
        tokens.push(ts);
    }
    let mut env = vec![("BATON_WEBHOOKS_ALLOW_PRIVATE", "1")];
    if hold {
        env.push(("BATON_WEBHOOKS_CONCURRENCY", "0"));
    }
    let mut server = common::Server::start_with(dir.path(), &env).await;
    let client = reqwest::Client::new();
    let all = [
        "handoff.initiated",
        "handoff.completed",
        "handoff.failed",
        "handoff.abandoned",
        "handoff.state",
        "session.ended",
        "call.completed",
    ];
    // Every "sub" organization (the latency one, index `clients`, too) has one webhook.
    for token in &tokens[1] {
        let res = client
            .post(format!("{}/v1/webhooks", server.base))
            .bearer_auth(token)
            .json(&json!({"url": hook, "event_types": all}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    let mut url = format!("{}/v1/events", server.base);

    // 1. Ingest, alternating.
    let (mut none, mut sub) = ((0usize, 0.0f64), (0usize, 0.0f64));
    let mut cpu = [Cpu::default(); 2];
    let mut first_sub_ack: Option<Instant> = None;
    for r in 0..rounds {
        for (k, kind) in ["none", "sub"].iter().enumerate() {
            let jobs: Vec<(String, Vec<String>)> = (0..clients)
                .map(|c| {
                    let bodies = (0..per_round.div_ceil(clients))
                        .map(|b| {
                            let tag = format!("{kind}{c}r{r}");
                            let events = if split {
                                split_batch(&tag, b)
                            } else {
                                batch(&tag, b)
                            };
                            json!({"events": events}).to_string()
                        })
                        .collect();
                    (tokens[k][c].clone(), bodies)
                })
                .collect();
            if k == 1 && first_sub_ack.is_none() {
                first_sub_ack = Some(Instant::now());
            }
            let before = Cpu::now(server.pid(), postmaster);
            let (events, secs) = post_all(&client, &url, jobs).await;
            cpu[k].add_since(before, Cpu::now(server.pid(), postmaster));
            let slot = if k == 0 { &mut none } else { &mut sub };
            slot.0 += events;
            slot.1 += secs;
            println!("round {r} {kind}: {:.0} events/s", events as f64 / secs);
        }
    }
    let none_rate = none.0 as f64 / none.1;
    let sub_rate = sub.0 as f64 / sub.1;
    println!("ingest without webhooks: {none_rate:.0} events/s");
    println!(
        "ingest with one webhook subscribed to every type: {sub_rate:.0} events/s ({:.1} %)",
        100.0 * sub_rate / none_rate
    );
    println!("  without: {}", cpu[0].per_1000(none.0));
    println!("  with:    {}", cpu[1].per_1000(sub.0));
    common::print_statement_stats(&mut db.pool.acquire().await.unwrap()).await;

    // 2. Deliveries/s: wait until every message has arrived.
    // Every message: fanned out already, or still in its batch's outbox row.
    let expected: i64 = sqlx::query_scalar(
        "select (select count(*) from webhook_deliveries)
              + (select coalesce(sum(cardinality(webhook_ids)), 0) from webhook_outbox)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let mut drain_started = Instant::now();
    let mut drain_cpu = Cpu::default();
    if hold {
        server.stop();
        // The new server's CPU counts from its start; PostgreSQL's and this process's from here.
        drain_cpu = Cpu(
            0.0,
            common::cluster_cpu_secs(postmaster),
            common::cpu_secs(std::process::id()),
        );
        let pending: i64 = sqlx::query_scalar(
            "select (select count(*) from webhook_deliveries where status = 'pending')
                      + (select coalesce(sum(cardinality(webhook_ids)), 0) from webhook_outbox)",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if common::statement_stats() {
            // The drain's own statements, apart from the ingest's.
            sqlx::query("select pg_stat_statements_reset()")
                .execute(&db.pool)
                .await
                .unwrap();
        }
        drain_started = Instant::now();
        server =
            common::Server::start_with(dir.path(), &[("BATON_WEBHOOKS_ALLOW_PRIVATE", "1")]).await;
        url = format!("{}/v1/events", server.base);
        println!("backlog: {pending} messages pending when a server with deliveries starts");
    }
    while (log.0.lock().unwrap().len() as i64) < expected {
        assert!(
            drain_started.elapsed() < Duration::from_secs(1800),
            "deliveries stalled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = log.0.lock().unwrap().iter().map(|e| e.0).max().unwrap();
    if hold {
        let span = (last - drain_started).as_secs_f64();
        println!(
            "deliveries: backlog of {expected} messages drained in {span:.1} s from the server's start: {:.0} deliveries/s",
            expected as f64 / span
        );
        let end = Cpu::now(server.pid(), postmaster);
        let us = |secs: f64| secs * 1e6 / expected as f64;
        println!(
            "  CPU per delivery while draining: server {:.0} µs, PostgreSQL {:.0} µs, bench (receiver) {:.0} µs",
            us(end.0),
            us(end.1 - drain_cpu.1),
            us(end.2 - drain_cpu.2)
        );
        common::print_statement_stats(&mut db.pool.acquire().await.unwrap()).await;
    } else {
        let span = (last - first_sub_ack.unwrap()).as_secs_f64();
        println!(
            "deliveries: {expected} messages in {span:.1} s from the first acknowledged batch: {:.0} deliveries/s",
            expected as f64 / span
        );
    }
    let duplicates = {
        let l = log.0.lock().unwrap();
        l.len()
            - l.iter()
                .map(|e| &e.1)
                .collect::<std::collections::HashSet<_>>()
                .len()
    };
    println!("duplicates received: {duplicates}");

    // 3. Delay, at a steady 50 batches/s of one handoff (session.started + handoff.initiated).
    log.0.lock().unwrap().clear();
    let token = tokens[1][clients].clone();
    let mut acks: Vec<(String, Instant)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..latency_batches {
        tick.tick().await;
        let s = format!("lat-{i}");
        let body = json!({"events": [
            {"id": format!("{s}-a"), "type": "session.started", "occurred_at": "2026-11-01T10:00:00Z", "session_id": s, "channel": "web"},
            {"id": format!("{s}-b"), "type": "handoff.initiated", "occurred_at": "2026-11-01T10:00:01Z",
             "handoff_id": s, "session_id": s, "reasons": ["insufficient_knowledge"]}]});
        let res = client
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        acks.push((s, Instant::now()));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while log.0.lock().unwrap().len() < latency_batches && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received: std::collections::HashMap<String, Instant> = log
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(at, _, h)| h.clone().map(|h| (h, *at)))
        .collect();
    let mut delays: Vec<f64> = acks
        .iter()
        .filter_map(|(h, ack)| {
            received
                .get(h)
                .map(|r| r.saturating_duration_since(*ack).as_secs_f64() * 1000.0)
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    println!(
        "acknowledgement → delivery over {} messages: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(f64::NAN)
    );
    server.stop();
}
