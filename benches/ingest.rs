//! Ingest benchmark (not a test): batches of 1,000 events over HTTP to a release build of
//! `baton serve`, on a fresh embedded PostgreSQL, with the server, PostgreSQL and this load
//! generator sharing the machine; then PostgreSQL's own `COPY` of the same raw rows, measured in
//! the same run, so the ratio is visible.
//!
//! Run: `cargo bench --bench ingest` (env: BENCH_BATCHES, default 300; BENCH_CLIENTS, default 4;
//! BENCH_PATTERN `live` (default) or `backfill`; BENCH_PG_STATS=1 for per-statement times;
//! BENCH_RESELLER=1 puts the organizations under a reseller, so the reseller's call rollups are
//! written too; BENCH_SETUP_SQL, SQL run on the fresh database before the server starts).
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use baton::auth::{Scope, Subject};
use baton::db::embedded_options;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

const BATCH: usize = 1_000;

/// CPU seconds used by the cluster under `pgdata`: its postmaster and every process it started.
fn postgres_cpu(pgdata: &std::path::Path) -> f64 {
    common::postmaster_pid(pgdata).map_or(0.0, common::cluster_cpu_secs)
}

/// A realistic mix: each session starts, a third hand off (initiated, then completed or failed),
/// every session ends, and voice sessions also report a call.
fn batch(org_tag: &str, b: usize, step_ms: i64) -> Vec<Value> {
    let mut events = Vec::with_capacity(BATCH);
    let mut n = 0;
    let base = chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z").unwrap();
    while events.len() < BATCH {
        let s = format!("{org_tag}-s{b}-{n}");
        let at = |min: i64| {
            (base
                + chrono::Duration::milliseconds((b * 1000 + n) as i64 * step_ms)
                + chrono::Duration::minutes(min))
            .to_rfc3339()
        };
        let voice = n % 4 == 0;
        events.push(json!({"id": format!("{s}-start"), "type": "session.started", "occurred_at": at(0),
            "session_id": s, "channel": if voice { "phone_voice" } else { "web" }, "agent_id": format!("agent-{}", n % 5)}));
        if n % 3 == 0 {
            events.push(json!({"id": format!("{s}-h"), "type": "handoff.initiated", "occurred_at": at(1),
                "handoff_id": format!("{s}-h"), "session_id": s,
                "reasons": ["user_requested_human_assistance", "insufficient_knowledge"],
                "sentiment": "negative", "references": [{"type": "instruction", "id": format!("i{}", n % 7)}],
                "destination": "support_queue", "data": {"customer_id": n}}));
            events.push(json!({"id": format!("{s}-hc"), "type": if n % 9 == 0 { "handoff.failed" } else { "handoff.completed" },
                "occurred_at": at(2), "handoff_id": format!("{s}-h")}));
        }
        events.push(json!({"id": format!("{s}-end"), "type": "session.ended", "occurred_at": at(3), "session_id": s, "sentiment": "neutral"}));
        if voice {
            events.push(json!({"id": format!("{s}-call"), "type": "call.completed", "occurred_at": at(3),
                "call_id": format!("{s}-call"), "agent_id": format!("agent-{}", n % 5), "started_at": at(0),
                "duration_seconds": 180.5, "outcome": "resolved", "sentiment": "positive",
                "telemetry": {"ttft_ms": 420.0, "stt_confidence": 0.93, "tool_calls": 2, "tool_call_errors": 0,
                              "user_corrections": 1, "cached_tokens": 800, "total_tokens": 2000}}));
        }
        n += 1;
    }
    events.truncate(BATCH);
    events
}

fn main() {
    let batches = common::env_usize("BENCH_BATCHES", 300);
    let clients = common::env_usize("BENCH_CLIENTS", 4).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(batches, clients));
}

async fn run(batches: usize, clients: usize) {
    let dir = tempfile::Builder::new()
        .prefix("baton-bench-")
        .tempdir()
        .unwrap();
    let cluster = common::start_cluster(dir.path());
    let db = baton::db::Database::open(
        &baton::db::DbTarget::Embedded(dir.path().to_path_buf()),
        &baton::db::DbConfig::default(),
    )
    .await
    .unwrap();
    common::create_statement_stats(&db.pool).await;
    let keys = baton::admin::signing_keys(&db.pool).await.unwrap();
    let mut tokens = Vec::new();
    for c in 0..clients {
        let reseller = std::env::var("BENCH_RESELLER")
            .is_ok()
            .then_some("bench-reseller");
        if reseller.is_some() && c == 0 {
            baton::admin::create_reseller(&db.pool, "bench-reseller", None)
                .await
                .unwrap();
        }
        let org = baton::admin::create_org(&db.pool, &format!("bench-{c}"), None, reseller, None)
            .await
            .unwrap();
        let t = baton::admin::issue_token_for(
            &db.pool,
            &keys,
            Subject::Org(org.id),
            &[Scope::WriteAll],
            chrono::Duration::days(1),
        )
        .await
        .unwrap();
        tokens.push((org.id, t.token));
    }

    // BENCH_SETUP_SQL: statements run before the server starts (e.g. a schema variant to
    // compare, such as the rollup keys before a migration).
    if let Ok(sql) = std::env::var("BENCH_SETUP_SQL") {
        sqlx::raw_sql(&sql).execute(&db.pool).await.unwrap();
    }
    let server = common::Server::start(dir.path()).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();

    // Pre-serialize every body so the generator measures the server, not serde.
    // `live` (default): events arrive as they happen, sessions 0.2 s apart, so a batch covers
    // about a minute; `backfill`: history loaded in bulk, sessions a minute apart, so a batch
    // covers about 17 hours (many more rollup buckets per batch).
    let pattern = std::env::var("BENCH_PATTERN").unwrap_or_else(|_| "live".to_owned());
    let step_ms = match pattern.as_str() {
        "backfill" => 60_000,
        _ => 200,
    };
    let per_client = batches.div_ceil(clients);
    let mut bodies: Vec<Vec<String>> = Vec::new();
    for c in 0..clients {
        bodies.push(
            (0..per_client)
                .map(|b| json!({"events": batch(&format!("c{c}"), b, step_ms)}).to_string())
                .collect(),
        );
    }
    let total_events = clients * per_client * BATCH;

    let cpu_before = (
        common::cpu_secs(server.pid()),
        postgres_cpu(&dir.path().join("pg")),
    );
    // Scenario 1: every client its own organization. Scenario 2 would add lock contention; one
    // organization's batches apply one at a time by design.
    let started = Instant::now();
    let mut handles = Vec::new();
    for (c, bodies) in bodies.iter().cloned().enumerate() {
        let client = client.clone();
        let url = format!("{base}/v1/events");
        let token = tokens[c].1.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for body in bodies {
                let t = Instant::now();
                let res = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
                let v: Value = res.json().await.unwrap();
                assert_eq!(v["accepted"], BATCH);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    let elapsed = started.elapsed();
    let server_cpu = common::cpu_secs(server.pid()) - cpu_before.0;
    let postgres_cpu_used = postgres_cpu(&dir.path().join("pg")) - cpu_before.1;
    latencies.sort();
    let rate = total_events as f64 / elapsed.as_secs_f64();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];

    // PostgreSQL's COPY of the same raw event rows into a copy of the events table.
    let mut conn =
        PgConnection::connect_with(&embedded_options(&cluster, baton::db::DATABASE_NAME))
            .await
            .unwrap();
    sqlx::query("create table events_copy (like events including all)")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut text = String::new();
    for (c, bodies) in bodies.iter().enumerate() {
        for body in bodies {
            let v: Value = serde_json::from_str(body).unwrap();
            for e in v["events"].as_array().unwrap() {
                let body = e.to_string().replace('\\', "\\\\");
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    tokens[c].0,
                    e["id"].as_str().unwrap(),
                    e["type"].as_str().unwrap(),
                    e["occurred_at"].as_str().unwrap(),
                    body
                ));
            }
        }
    }
    let copy_started = Instant::now();
    let mut copy = conn
        .copy_in_raw("copy events_copy (org_id, event_id, type, occurred_at, body) from stdin")
        .await
        .unwrap();
    copy.send(text.as_bytes()).await.unwrap();
    let copied = copy.finish().await.unwrap();
    let copy_elapsed = copy_started.elapsed();
    assert_eq!(copied as usize, total_events);
    let copy_rate = total_events as f64 / copy_elapsed.as_secs_f64();

    let stored: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored as usize, total_events);

    println!(
        "ingest ({pattern}): {total_events} events in {} batches of {BATCH} from {clients} concurrent clients (one organization each)",
        clients * per_client
    );
    println!(
        "  POST /v1/events: {:.0} events/s over {:.2} s; batch latency p50 {:.1} ms, p99 {:.1} ms",
        rate,
        elapsed.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!(
        "  COPY of the same raw rows (events table only, one connection): {:.0} rows/s over {:.2} s",
        copy_rate,
        copy_elapsed.as_secs_f64()
    );
    println!("  ratio: Baton ingest = {:.2} x COPY", rate / copy_rate);
    println!(
        "  CPU per 100k events: baton {:.2} s, postgres {:.2} s (the machine has 2 cores)",
        server_cpu * 100_000.0 / total_events as f64,
        postgres_cpu_used * 100_000.0 / total_events as f64
    );

    common::print_statement_stats(&mut conn).await;
    server.stop();
    conn.close().await.unwrap();
    db.close().await.unwrap();
    cluster.stop_now().ok();
}
