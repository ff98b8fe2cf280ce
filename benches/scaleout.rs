//! Scale-out benchmark (not a test): read throughput of `GET /handoff-analytics` (90 days) with one
//! `baton serve` on the primary, then with two servers reading from a streaming replica
//! (`--read-database-url`), everything on this one machine (so the second setup shares the same
//! cores: the ratio says what the extra processes cost or bring here, not on separate machines).
//!
//! Data: the demo's 90 days (sessions, handoffs, calls) in BENCH_ORGS organizations, pushed through
//! `POST /v1/events`. The replica is made with `pg_basebackup -R` from the embedded cluster after
//! loading. Each setup is driven by BENCH_CLIENTS concurrent keep-alive clients for BENCH_SECONDS
//! (round-robin over the servers), after a warm-up; the reads' destination is checked on the
//! servers' admin `/metrics` (`baton_reads_total{target="replica"}`).
//!
//! Run: `cargo bench --bench scaleout` (env: BENCH_ORGS, default 4; BENCH_CLIENTS, default 16;
//! BENCH_SECONDS, default 10).
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/common/replica.rs"]
mod replica;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use baton::auth::{Scope, Subject};
use baton::db::{Database, DbConfig, DbTarget};
use chrono::Utc;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Requests answered per second by `clients` concurrent clients over `urls` (round-robin), with
/// the tokens in turn.
async fn throughput(urls: &[String], tokens: &[String], clients: usize, seconds: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let url = urls[c % urls.len()].clone();
            let token = tokens[c % tokens.len()].clone();
            let done = done.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while Instant::now() < until {
                    let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
                    assert_eq!(res.status(), 200);
                    res.bytes().await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / seconds as f64
}

async fn replica_reads(admin: &str) -> f64 {
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("baton_reads_total{target=\"replica\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let orgs = common::env_usize("BENCH_ORGS", 4);
    let clients = common::env_usize("BENCH_CLIENTS", 16);
    let seconds = common::env_usize("BENCH_SECONDS", 10) as u64;
    let dir = tempfile::tempdir().unwrap();
    let _cluster = common::start_cluster(dir.path());
    let db = Database::open(
        &DbTarget::Embedded(dir.path().to_owned()),
        &DbConfig::default(),
    )
    .await
    .unwrap();
    let keys = baton::admin::signing_keys(&db.pool).await.unwrap();
    let one = common::Server::start(dir.path()).await;
    let client = reqwest::Client::new();
    let events = baton::demo::generate(Utc::now() - chrono::Duration::hours(1), chrono_tz::UTC);
    let mut tokens = Vec::new();
    for i in 0..orgs {
        let org = baton::admin::create_org(&db.pool, &format!("o{i}"), None, None, None)
            .await
            .unwrap();
        let scopes = [Scope::ReadAll, Scope::WriteAll];
        let token = baton::admin::issue_token_for(
            &db.pool,
            &keys,
            Subject::Org(org.id),
            &scopes,
            chrono::Duration::days(1),
        )
        .await
        .unwrap()
        .token;
        for chunk in events.chunks(2_000) {
            let res = client
                .post(format!("{}/v1/events", one.base))
                .bearer_auth(&token)
                .json(&serde_json::json!({ "events": chunk }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
        tokens.push(token);
    }
    println!(
        "loaded {} events in each of {orgs} organizations",
        events.len()
    );
    let start = (Utc::now() - chrono::Duration::days(90)).format("%Y-%m-%d");
    let end = Utc::now().format("%Y-%m-%d");
    let path = format!("/handoff-analytics?start_date={start}&end_date={end}");

    let warm = throughput(&[format!("{}{path}", one.base)], &tokens, clients, 2).await;
    let single = throughput(&[format!("{}{path}", one.base)], &tokens, clients, seconds).await;
    println!("one server on the primary: {single:.0} req/s ({clients} clients; warm-up {warm:.0})");
    one.stop();

    let replica = replica::Replica::start(&baton::db::embedded_options(
        db.cluster().unwrap(),
        "postgres",
    ));
    let url = format!(
        "postgres://{}@localhost/{}?host={}&port=5432",
        baton::pg::SUPERUSER,
        baton::db::DATABASE_NAME,
        replica.pgdata().display()
    );
    let admins = [free_port(), free_port()];
    let mut servers = Vec::new();
    for admin in admins {
        let admin = format!("127.0.0.1:{admin}");
        servers.push(
            common::Server::start_with(
                dir.path(),
                &[
                    ("BATON_READ_DATABASE_URL", url.as_str()),
                    ("BATON_ADMIN_ADDR", admin.as_str()),
                ],
            )
            .await,
        );
    }
    // Let the probes see the replica caught up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let urls: Vec<String> = servers
        .iter()
        .map(|s| format!("{}{path}", s.base))
        .collect();
    let warm = throughput(&urls, &tokens, clients, 2).await;
    let two = throughput(&urls, &tokens, clients, seconds).await;
    let mut on_replica = 0.0;
    for admin in admins {
        on_replica += replica_reads(&format!("http://127.0.0.1:{admin}")).await;
    }
    println!(
        "two servers reading from a replica: {two:.0} req/s ({clients} clients; warm-up {warm:.0}); {on_replica:.0} reads served by the replica"
    );
    println!("ratio: {:.2}", two / single);
    for s in servers {
        s.stop();
    }
    drop(replica);
    db.close().await.unwrap();
}
