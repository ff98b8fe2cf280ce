//! Webhooks against a real HTTP receiver on 127.0.0.1: signatures checked with an independent
//! Standard Webhooks verification (the `hmac`/`sha2`/`base64` crates, not Baton's code), ordering,
//! retries, restarts, two servers, a hanging receiver, 410, rotation, SSRF and auth.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use baton::admin;
use baton::auth::{Scope, Subject};
use baton::http::{AppState, HttpConfig};
use baton::monitoring::Monitoring;
use baton::webhooks::WebhookConfig;
use baton::webhooks::worker::Deliverer;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgPool;

use crate::common::{TestApp, assert_error, fresh_database};

// ---------- the receiver ----------

/// What the receiver answers.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// 200.
    Ok,
    /// `status` for the next `n` requests, then 200.
    FailFor(u16, usize),
    /// Always `status`.
    Always(u16),
    /// Never answers.
    Hang,
    /// Request n (counting from 0): 500 when n % 5 == 4, else 200 + n % 4 (200 to 203).
    Varied(usize),
}

/// One request received.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    answered: u16,
}

#[derive(Clone)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    mode: Arc<Mutex<Mode>>,
    url: String,
}

impl Receiver {
    async fn start(mode: Mode) -> Receiver {
        let r = Receiver {
            log: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
            url: String::new(),
        };
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{addr}/hook"),
            ..r
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn log(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Requests answered 2xx.
    fn delivered(&self) -> Vec<Received> {
        self.log()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    /// Distinct messages (`webhook-id`s) answered 2xx at least once.
    fn distinct_delivered(&self) -> usize {
        self.delivered()
            .into_iter()
            .map(|r| r.id)
            .collect::<HashSet<_>>()
            .len()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let answer = {
        let mut mode = r.mode.lock().unwrap();
        match *mode {
            Mode::Ok => Some(200),
            Mode::FailFor(status, n) if n > 0 => {
                *mode = Mode::FailFor(status, n - 1);
                Some(status)
            }
            Mode::FailFor(..) => Some(200),
            Mode::Always(status) => Some(status),
            Mode::Hang => None,
            Mode::Varied(n) => {
                *mode = Mode::Varied(n + 1);
                Some(if n % 5 == 4 {
                    500
                } else {
                    200 + (n % 4) as u16
                })
            }
        }
    };
    r.log.lock().unwrap().push(Received {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        body,
        answered: answer.unwrap_or(0),
    });
    match answer {
        Some(s) => StatusCode::from_u16(s).unwrap(),
        None => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }
    }
}

/// Standard Webhooks verification, written from the specification: HMAC-SHA256 keyed with the
/// base64 part of `whsec_…` over `id.timestamp.body`, compared with each `v1,` signature.
fn verify(secret: &str, r: &Received) -> bool {
    let key = B64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    r.signature.split(' ').any(|s| s == expected)
}

// ---------- Baton with a worker ----------

struct Hooked {
    app: TestApp,
    monitoring: Arc<Monitoring>,
    config: WebhookConfig,
    deliverer: Option<Deliverer>,
}

/// Short delays, private destinations allowed (the receiver is on 127.0.0.1).
fn fast() -> WebhookConfig {
    WebhookConfig {
        allow_private: true,
        attempt_timeout: Duration::from_secs(2),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        poll_interval: Duration::from_millis(50),
        ..WebhookConfig::default()
    }
}

impl Hooked {
    async fn spawn(config: WebhookConfig) -> Hooked {
        let (pool, _) = fresh_database().await;
        Hooked::on(pool, config, true).await
    }

    async fn on(pool: PgPool, config: WebhookConfig, worker: bool) -> Hooked {
        let keys = Arc::new(admin::signing_keys(&pool).await.unwrap());
        let state = AppState::new(pool.clone(), keys).with_webhook_config(config.clone());
        let monitoring = state.monitoring.clone();
        let app = TestApp::spawn_with_state(state, HttpConfig::default()).await;
        let deliverer = worker.then(|| Deliverer::start(pool, config.clone(), monitoring.clone()));
        Hooked {
            app,
            monitoring,
            config,
            deliverer,
        }
    }

    /// Starts a worker again (a restarted server).
    fn restart_worker(&mut self) {
        self.deliverer = Some(Deliverer::start(
            self.app.pool.clone(),
            self.config.clone(),
            self.monitoring.clone(),
        ));
    }
}

/// `POST /v1/webhooks`, which must succeed: `(id, secret)`.
async fn subscribe(app: &TestApp, token: &str, url: &str, types: &[&str]) -> (String, String) {
    let res = app
        .client
        .post(app.url("/v1/webhooks"))
        .bearer_auth(token)
        .json(&json!({"url": url, "event_types": types, "description": "test"}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

const ALL: [&str; 7] = [
    "handoff.initiated",
    "handoff.completed",
    "handoff.failed",
    "handoff.abandoned",
    "handoff.state",
    "session.ended",
    "call.completed",
];

/// Session `s{i}` started, handoff `h{i}` initiated, moved to `in_review`, completed by `op{i}`,
/// and the session ended: four webhook messages (initiated, state, completed, session.ended).
fn lifecycle(tag: &str, i: usize) -> Vec<Value> {
    let t = |m: usize| format!("2026-11-02T10:{:02}:{:02}Z", i % 60, m);
    vec![
        json!({"id": format!("{tag}-a{i}"), "type": "session.started", "occurred_at": t(0),
               "session_id": format!("{tag}-s{i}"), "channel": "web"}),
        json!({"id": format!("{tag}-b{i}"), "type": "handoff.initiated", "occurred_at": t(1),
               "handoff_id": format!("{tag}-h{i}"), "session_id": format!("{tag}-s{i}"),
               "reasons": ["insufficient_knowledge"]}),
        json!({"id": format!("{tag}-c{i}"), "type": "handoff.state", "occurred_at": t(2),
               "handoff_id": format!("{tag}-h{i}"), "state": "in_review"}),
        json!({"id": format!("{tag}-d{i}"), "type": "handoff.completed", "occurred_at": t(3),
               "handoff_id": format!("{tag}-h{i}"), "operator_id": format!("op{i}")}),
        json!({"id": format!("{tag}-e{i}"), "type": "session.ended", "occurred_at": t(4),
               "session_id": format!("{tag}-s{i}")}),
    ]
}

/// Waits until `done` holds (at most `secs`).
async fn eventually(secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "not reached within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn deliveries_in_db(pool: &PgPool, status: &str) -> i64 {
    sqlx::query_scalar("select count(*) from webhook_deliveries where status = $1")
        .bind(status)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn parse(r: &Received) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

/// The ordering key of a message: its handoff, or its session.
fn key(v: &Value) -> String {
    let d = &v["data"];
    d["handoff_id"]
        .as_str()
        .or(d["session_id"].as_str())
        .unwrap()
        .to_owned()
}

// ---------- tests ----------

#[tokio::test]
async fn messages_survive_failures_signed_in_order_with_stable_ids() {
    let mut h = Hooked::spawn(fast()).await;
    let receiver = Receiver::start(Mode::FailFor(500, 25)).await;
    let org = h.app.org("acme", None, None).await;
    let token = h.app.writer(&org).await;
    let (_, secret) = subscribe(&h.app, &token, &receiver.url, &ALL).await;
    let mut events = Vec::new();
    for i in 0..6 {
        events.extend(lifecycle("w", i));
    }
    events.push(
        json!({"id": "call-1", "type": "call.completed", "occurred_at": "2026-11-02T11:00:00Z",
        "call_id": "c1", "agent_id": "ag", "started_at": "2026-11-02T10:55:00Z",
        "duration_seconds": 300, "outcome": "resolved"}),
    );
    // Split in two batches: order holds across batches too.
    h.app.post_events_ok(&token, &events[..13]).await;
    h.app.post_events_ok(&token, &events[13..]).await;
    // 6 handoffs × 3 messages + 6 session.ended + 1 call: 25 messages.
    eventually(30, || receiver.distinct_delivered() == 25).await;
    let log = receiver.log();
    assert!(log.iter().filter(|r| r.answered == 500).count() == 25);
    for r in &log {
        assert!(verify(&secret, r), "bad signature on {r:?}");
    }
    // Every webhook-id that failed came back, with the same body, until it succeeded.
    let mut bodies: HashMap<&str, &str> = HashMap::new();
    for r in &log {
        let body = bodies.entry(&r.id).or_insert(&r.body);
        assert_eq!(
            *body, r.body,
            "the body of {} changed between attempts",
            r.id
        );
    }
    let failed: HashSet<&str> = log
        .iter()
        .filter(|r| r.answered == 500)
        .map(|r| r.id.as_str())
        .collect();
    let succeeded: HashSet<&str> = log
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.id.as_str())
        .collect();
    assert!(failed.is_subset(&succeeded));
    // In order per handoff: the receipts of a handoff never go back to an earlier event type.
    let rank = |t: &str| {
        ["handoff.initiated", "handoff.state", "handoff.completed"]
            .iter()
            .position(|x| *x == t)
    };
    let mut last: HashMap<String, usize> = HashMap::new();
    for r in &log {
        let v = parse(r);
        let Some(rank) = rank(v["type"].as_str().unwrap()) else {
            continue;
        };
        let prev = last.insert(key(&v), rank).unwrap_or(0);
        assert!(
            rank >= prev,
            "out of order for {}: {:?}",
            key(&v),
            v["type"]
        );
    }
    // Payloads: the handoff record after its batch, the session, the call.
    let delivered = receiver.delivered();
    let of = |t: &str, k: &str| {
        delivered
            .iter()
            .map(parse)
            .find(|v| v["type"] == t && key(v) == k)
            .unwrap_or_else(|| panic!("no {t} for {k}"))
    };
    let completed = of("handoff.completed", "w-h5");
    assert_eq!(completed["timestamp"], "2026-11-02T10:05:03Z");
    assert_eq!(completed["data"]["state"], "handoff_completed");
    assert_eq!(completed["data"]["operator_id"], "op5");
    assert_eq!(completed["data"]["session"]["session_id"], "w-s5");
    let history: Vec<&str> = completed["data"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        ["handoff_initiated", "in_review", "handoff_completed"]
    );
    // The same record as the API answers.
    let api: Value = h
        .app
        .get("/v1/handoffs/w-h5", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(completed["data"], api);
    let ended = of("session.ended", "w-s2");
    assert_eq!(ended["data"]["channel"], "web");
    assert_eq!(ended["data"]["ended_at"], "2026-11-02T10:02:04Z");
    let call = delivered
        .iter()
        .map(parse)
        .find(|v| v["type"] == "call.completed")
        .unwrap();
    assert_eq!(call["data"]["call_id"], "c1");
    assert_eq!(call["data"]["duration_seconds"], 300);
    // The log says so too, and the metrics count the attempts.
    eventually(5, || true).await;
    assert_eq!(deliveries_in_db(&h.app.pool, "succeeded").await, 25);
    let metrics = h
        .app
        .client
        .get(format!("{}/metrics", h.app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("baton_webhook_attempts_total{outcome=\"delivered\"} 25"),
        "{metrics}"
    );
    assert!(
        metrics.contains("baton_webhook_attempts_total{outcome=\"failed\"} 25"),
        "{metrics}"
    );
    h.deliverer.take();
}

#[tokio::test]
async fn a_refused_batch_delivers_nothing_and_unsubscribed_types_are_not_sent() {
    let h = Hooked::spawn(fast()).await;
    let receiver = Receiver::start(Mode::Ok).await;
    let org = h.app.org("acme", None, None).await;
    let token = h.app.writer(&org).await;
    subscribe(&h.app, &token, &receiver.url, &["handoff.completed"]).await;
    let mut events = lifecycle("r", 1);
    // A completion of a handoff never initiated: 409, the whole batch is refused.
    events.push(json!({"id": "bad", "type": "handoff.completed", "occurred_at": "2026-11-02T12:00:00Z", "handoff_id": "nope"}));
    let res = h.app.post_events(&token, &events).await;
    assert_eq!(res.status(), 409);
    let total: i64 = sqlx::query_scalar("select count(*) from webhook_deliveries")
        .fetch_one(&h.app.pool)
        .await
        .unwrap();
    assert_eq!(total, 0);
    let batches: i64 = sqlx::query_scalar("select count(*) from webhook_outbox")
        .fetch_one(&h.app.pool)
        .await
        .unwrap();
    assert_eq!(batches, 0, "a refused batch leaves nothing in the outbox");
    events.pop();
    h.app.post_events_ok(&token, &events).await;
    eventually(10, || receiver.delivered().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<Value> = receiver.log().iter().map(parse).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["type"], "handoff.completed");
}

/// Erasing a session also erases its handoffs' personal fields from the webhook messages stored
/// for them (delivered or pending); other sessions' messages keep theirs.
#[tokio::test]
async fn erasing_a_session_erases_it_from_webhook_messages() {
    // No worker: the messages stay pending, as if the receiver were down.
    let (pool, _) = fresh_database().await;
    let h = Hooked::on(pool, fast(), false).await;
    let org = h.app.org("acme", None, None).await;
    let token = h.app.writer(&org).await;
    subscribe(&h.app, &token, "http://127.0.0.1:9/hook", &ALL).await;
    let mut events = lifecycle("x", 1);
    events.extend(lifecycle("y", 2));
    for e in &mut events {
        if e["type"] == "handoff.initiated" {
            e["summary"] = json!("call me on 555-0100");
            e["explanation"] = json!("the customer gave their number");
            e["data"] = json!({"phone": "555-0100"});
        }
    }
    h.app.post_events_ok(&token, &events).await;
    let res = h
        .app
        .client
        .delete(h.app.url("/v1/sessions/x-s1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let payloads: Vec<(String, String)> = sqlx::query_as(
        "select ordering_key, payload from webhook_deliveries where ordering_key like 'handoff:%' order by seq",
    )
    .fetch_all(&h.app.pool)
    .await
    .unwrap();
    assert_eq!(payloads.len(), 6, "three messages per handoff");
    for (key, payload) in payloads {
        let record = &serde_json::from_str::<Value>(&payload).unwrap()["data"];
        if key == "handoff:x-h1" {
            assert!(!payload.contains("555-0100"), "{payload}");
            for field in ["summary", "explanation", "shared_id", "operator_id"] {
                assert_eq!(record[field], Value::Null, "{field}: {payload}");
            }
            assert_eq!(record["data"], json!({}));
            assert_eq!(record["handoff_id"], "x-h1", "the rest of the record stays");
        } else {
            assert_eq!(record["summary"], "call me on 555-0100", "{payload}");
            assert_eq!(record["data"], json!({"phone": "555-0100"}));
        }
    }
}

#[tokio::test]
async fn successes_recorded_together_keep_each_delivery_own_code_and_attempts() {
    // Successes are recorded many per statement: each delivery still gets its own status code
    // (2xx codes vary here) and attempt count (every fifth request fails and is retried).
    let h = Hooked::spawn(fast()).await;
    let receiver = Receiver::start(Mode::Varied(0)).await;
    let org = h.app.org("acme", None, None).await;
    let token = h.app.writer(&org).await;
    let (id, _) = subscribe(&h.app, &token, &receiver.url, &ALL).await;
    let mut events = Vec::new();
    for i in 0..40 {
        events.extend(lifecycle("v", i));
    }
    h.app.post_events_ok(&token, &events).await;
    eventually(60, || receiver.distinct_delivered() == 160).await;
    let pool = h.app.pool.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while deliveries_in_db(&pool, "succeeded").await < 160 {
        assert!(
            std::time::Instant::now() < deadline,
            "outcomes not recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = receiver.log();
    let rows: Vec<(String, String, i32, Option<i32>)> = sqlx::query_as(
        "select message_id, status, attempts, last_status_code from webhook_deliveries",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 160);
    let mut codes = HashSet::new();
    let mut retried = 0;
    for (message, status, attempts, code) in rows {
        let requests: Vec<&Received> = log.iter().filter(|r| r.id == message).collect();
        let last = requests.last().unwrap();
        assert_eq!(status, "succeeded");
        assert_eq!(attempts as usize, requests.len(), "{message}");
        assert_eq!(code, Some(i32::from(last.answered)), "{message}");
        codes.insert(last.answered);
        retried += usize::from(attempts > 1);
    }
    assert!(codes.len() >= 3, "{codes:?}");
    assert!(retried > 0);
    // The log the API serves says the same.
    let page: Value = h
        .app
        .get(&format!("/v1/webhooks/{id}/deliveries?limit=200"), &token)
        .await
        .json()
        .await
        .unwrap();
    let served = page["deliveries"].as_array().unwrap();
    assert_eq!(served.len(), 160);
    for d in served {
        let requests: Vec<&Received> = log
            .iter()
            .filter(|r| r.id == d["message_id"].as_str().unwrap())
            .collect();
        assert_eq!(d["attempts"].as_u64().unwrap() as usize, requests.len());
        assert_eq!(
            d["last_response_code"].as_u64().unwrap(),
            u64::from(requests.last().unwrap().answered)
        );
    }
}

#[tokio::test]
async fn pending_messages_are_delivered_after_a_restart() {
    let mut h = Hooked::spawn(fast()).await;
    let receiver = Receiver::start(Mode::Always(503)).await;
    let org = h.app.org("acme", None, None).await;
    let token = h.app.writer(&org).await;
    let (_, secret) = subscribe(&h.app, &token, &receiver.url, &ALL).await;
    let mut events = Vec::new();
    for i in 0..3 {
        events.extend(lifecycle("k", i));
    }
    h.app.post_events_ok(&token, &events).await;
    eventually(10, || !receiver.log().is_empty()).await;
    // Baton is killed (its worker aborted mid-flight) while every message is pending.
    drop(h.deliverer.take());
    assert_eq!(deliveries_in_db(&h.app.pool, "pending").await, 12);
    receiver.set(Mode::Ok);
    h.restart_worker();
    eventually(30, || receiver.distinct_delivered() == 12).await;
    assert!(receiver.log().iter().all(|r| verify(&secret, r)));
}

#[tokio::test]
async fn two_servers_on_one_database_deliver_each_message_once() {
    let (pool, options) = fresh_database().await;
    let a = Hooked::on(pool, fast(), true).await;
    let pool_b = baton::db::pool_options(&baton::db::DbConfig::default())
        .connect_with(options)
        .await
        .unwrap();
    let b = Hooked::on(pool_b, fast(), true).await;
    let receiver = Receiver::start(Mode::Ok).await;
    let org = a.app.org("acme", None, None).await;
    let token = a.app.writer(&org).await;
    subscribe(&a.app, &token, &receiver.url, &ALL).await;
    // Both servers take batches and both deliver.
    for i in 0..40 {
        let app = if i % 2 == 0 { &a.app } else { &b.app };
        app.post_events_ok(&token, &lifecycle("t", i)).await;
    }
    eventually(60, || receiver.log().len() >= 160).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = receiver.log();
    let ids: HashSet<&str> = log.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 160);
    assert_eq!(log.len(), 160, "a message was delivered twice");
    let delivered_by = |m: &Monitoring| {
        m.render(&[], true)
            .lines()
            .find(|l| l.starts_with("baton_webhook_attempts_total{outcome=\"delivered\"}"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .unwrap_or(0)
    };
    assert_eq!(
        delivered_by(&a.monitoring) + delivered_by(&b.monitoring),
        160
    );
}

#[tokio::test]
async fn a_hanging_receiver_does_not_hold_up_another_endpoint() {
    let h = Hooked::spawn(fast()).await;
    let hanging = Receiver::start(Mode::Hang).await;
    let healthy = Receiver::start(Mode::Ok).await;
    let org = h.app.org("acme", None, None).await;
    let token = h.app.writer(&org).await;
    subscribe(&h.app, &token, &hanging.url, &ALL).await;
    subscribe(&h.app, &token, &healthy.url, &ALL).await;
    let mut events = Vec::new();
    for i in 0..30 {
        events.extend(lifecycle("g", i));
    }
    h.app.post_events_ok(&token, &events).await;
    // 120 messages reach the healthy endpoint while the other holds its attempts open.
    eventually(30, || healthy.delivered().len() >= 120).await;
    assert!(hanging.delivered().is_empty());
    // The hanging endpoint's attempts time out and are retried later.
    let failed: Option<String> = sqlx::query_scalar(
        "select last_error from webhook_deliveries where last_error is not null limit 1",
    )
    .fetch_optional(&h.app.pool)
    .await
    .unwrap();
    if let Some(e) = failed {
        assert!(e.contains("no answer within"), "{e}");
    }
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_a_manual_retry_delivers_again() {
    let h = Hooked::spawn(fast()).await;
    let receiver = Receiver::start(Mode::Always(410)).await;
    let org = h.app.org("acme", None, None).await;
    let token = h.app.writer(&org).await;
    let (id, _) = subscribe(&h.app, &token, &receiver.url, &["handoff.initiated"]).await;
    h.app.post_events_ok(&token, &lifecycle("x", 1)).await;
    eventually(10, || receiver.log().len() == 1).await;
    let path = format!("/v1/webhooks/{id}");
    let mut webhook = Value::Null;
    for _ in 0..100 {
        webhook = h.app.get(&path, &token).await.json().await.unwrap();
        if webhook["enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(webhook["enabled"], false, "{webhook}");
    assert!(
        webhook["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410 Gone")
    );
    let log: Value = h
        .app
        .get(&format!("{path}/deliveries"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(log["enabled"], false);
    assert!(log["disabled_reason"].as_str().unwrap().contains("410"));
    let d = &log["deliveries"][0];
    assert_eq!(
        (
            d["status"].as_str(),
            d["attempts"].as_i64(),
            d["last_response_code"].as_i64()
        ),
        (Some("failed"), Some(1), Some(410))
    );
    assert_eq!(d["next_attempt_at"], Value::Null);
    // Disabled: a new message is not enqueued.
    h.app.post_events_ok(&token, &lifecycle("x", 2)).await;
    let log: Value = h
        .app
        .get(&format!("{path}/deliveries"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(log["deliveries"].as_array().unwrap().len(), 1);
    // Enabled again, the failed delivery retried by hand arrives with the same webhook-id.
    receiver.set(Mode::Ok);
    let res = h
        .app
        .client
        .patch(h.app.url(&path))
        .bearer_auth(&token)
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["enabled"].as_bool(), &body["disabled_reason"]),
        (Some(true), &Value::Null)
    );
    let retry = format!("{path}/deliveries/{}/retry", d["id"].as_str().unwrap());
    let res = h
        .app
        .client
        .post(h.app.url(&retry))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    eventually(10, || receiver.delivered().len() == 1).await;
    assert_eq!(
        receiver.delivered()[0].id,
        d["message_id"].as_str().unwrap()
    );
}

#[tokio::test]
async fn an_endpoint_failing_for_the_whole_window_is_disabled_with_a_reason() {
    let config = WebhookConfig {
        disable_after: Duration::from_millis(400),
        retry_window: Duration::from_millis(600),
        ..fast()
    };
    let h = Hooked::spawn(config).await;
    let receiver = Receiver::start(Mode::Always(500)).await;
    let org = h.app.org("acme", None, None).await;
    let token = h.app.writer(&org).await;
    let (id, _) = subscribe(&h.app, &token, &receiver.url, &["handoff.initiated"]).await;
    h.app.post_events_ok(&token, &lifecycle("f", 1)).await;
    let path = format!("/v1/webhooks/{id}/deliveries");
    let mut log = Value::Null;
    for _ in 0..300 {
        log = h.app.get(&path, &token).await.json().await.unwrap();
        if log["enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log["enabled"], false, "{log}");
    let reason = log["disabled_reason"].as_str().unwrap();
    assert!(
        reason.contains("failing continuously since") && reason.contains("answered 500"),
        "{reason}"
    );
    assert!(log["deliveries"][0]["attempts"].as_i64().unwrap() >= 2);
    assert_eq!(log["deliveries"][0]["last_response_code"], 500);
}

#[tokio::test]
async fn rotation_sends_both_signatures_for_a_day() {
    let h = Hooked::spawn(fast()).await;
    let receiver = Receiver::start(Mode::Ok).await;
    let org = h.app.org("acme", None, None).await;
    let token = h.app.writer(&org).await;
    let (id, old) = subscribe(&h.app, &token, &receiver.url, &["handoff.initiated"]).await;
    let res = h
        .app
        .client
        .post(h.app.url(&format!("/v1/webhooks/{id}/rotate-secret")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let new = body["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    let until =
        chrono::DateTime::parse_from_rfc3339(body["previous_secret_expires_at"].as_str().unwrap())
            .unwrap();
    let hours = (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes();
    assert!((23 * 60..=24 * 60).contains(&hours), "{hours}");
    // The secret is not shown again.
    let shown: Value = h
        .app
        .get(&format!("/v1/webhooks/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert!(shown.get("secret").is_none());
    h.app.post_events_ok(&token, &lifecycle("o", 1)).await;
    eventually(10, || receiver.delivered().len() == 1).await;
    let r = &receiver.delivered()[0];
    assert_eq!(r.signature.split(' ').count(), 2, "{}", r.signature);
    let only = |secret: &str| Received {
        signature: r
            .signature
            .split(' ')
            .find(|s| {
                verify(
                    secret,
                    &Received {
                        signature: s.to_string(),
                        ..r.clone()
                    },
                )
            })
            .unwrap_or_default()
            .to_owned(),
        ..r.clone()
    };
    assert!(verify(&old, &only(&old)) && verify(&new, &only(&new)));
    assert_ne!(only(&old).signature, only(&new).signature);
}

#[tokio::test]
async fn private_destinations_are_refused_without_the_flag() {
    let h = Hooked::spawn(WebhookConfig {
        allow_private: false,
        ..fast()
    })
    .await;
    let receiver = Receiver::start(Mode::Ok).await;
    let org = h.app.org("acme", None, None).await;
    let token = h.app.writer(&org).await;
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    for url in [
        receiver.url.clone(),
        format!("http://localhost:{port}/hook"),
        format!("http://vm:{port}/hook"), // a name that resolves to 127.0.0.1
        "http://[::1]/".to_owned(),
        "http://10.0.0.8/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://100.100.100.200/".to_owned(),
        "http://[fd00::1]/".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ] {
        let res = h
            .app
            .client
            .post(h.app.url("/v1/webhooks"))
            .bearer_auth(&token)
            .json(&json!({"url": url, "event_types": ["handoff.initiated"]}))
            .send()
            .await
            .unwrap();
        let body = assert_error(res, 400, "url:").await;
        assert_eq!(body["details"][0]["field"], "url", "{url}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("--webhooks-allow-private"),
            "{body}"
        );
    }
    // A name that resolved elsewhere at creation but points at loopback at delivery time
    // (simulated by changing the stored URL): the attempt fails, nothing is sent.
    let (id, _) = subscribe(
        &h.app,
        &token,
        "http://example.com/hook",
        &["handoff.initiated"],
    )
    .await;
    sqlx::query("update webhooks set url = $1")
        .bind(format!("http://vm:{port}/hook"))
        .execute(&h.app.pool)
        .await
        .unwrap();
    h.app.post_events_ok(&token, &lifecycle("p", 1)).await;
    let path = format!("/v1/webhooks/{id}/deliveries");
    let mut log = Value::Null;
    for _ in 0..250 {
        log = h.app.get(&path, &token).await.json().await.unwrap();
        if log["deliveries"][0]["last_error"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = log["deliveries"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("loopback") && error.contains("127.0.0.1"),
        "{log}"
    );
    assert!(receiver.log().is_empty());
}

#[tokio::test]
async fn subscriptions_are_validated_and_managed() {
    let h = Hooked::spawn(fast()).await;
    let org = h.app.org("acme", None, None).await;
    let token = h.app.writer(&org).await;
    let post = |body: Value| {
        let app = &h.app;
        let token = token.clone();
        async move {
            app.client
                .post(app.url("/v1/webhooks"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let long = format!("https://example.com/{}", "a".repeat(2100));
    for (body, field) in [
        (
            json!({"url": "ftp://example.com/", "event_types": ["handoff.initiated"]}),
            "url",
        ),
        (
            json!({"url": "https://u:p@example.com/", "event_types": ["handoff.initiated"]}),
            "url",
        ),
        (
            json!({"url": long, "event_types": ["handoff.initiated"]}),
            "url",
        ),
        (
            json!({"url": "not a url", "event_types": ["handoff.initiated"]}),
            "url",
        ),
        (
            json!({"url": "https://example.com/", "event_types": []}),
            "event_types",
        ),
        (
            json!({"url": "https://example.com/", "event_types": ["agent.upserted"]}),
            "event_types[0]",
        ),
        (
            json!({"url": "https://example.com/", "event_types": ["handoff.initiated", "nope"]}),
            "event_types[1]",
        ),
        (
            json!({"url": "https://example.com/", "event_types": ["handoff.initiated"], "description": "d".repeat(1001)}),
            "description",
        ),
    ] {
        let res = post(body.clone()).await;
        let err = assert_error(res, 400, field).await;
        assert_eq!(err["details"][0]["field"], field, "{body}");
    }
    assert_error(post(json!({"url": "https://example.com/", "event_types": ["handoff.initiated"], "extra": 1})).await, 400, "extra").await;
    assert_error(
        post(json!({"event_types": ["handoff.initiated"]})).await,
        400,
        "url",
    )
    .await;
    // Create: every type, including handoff.abandoned; duplicates collapse.
    let res = post(json!({"url": "https://example.com/a", "event_types": ["handoff.abandoned", "handoff.abandoned", "call.completed"], "description": "pager"})).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert_eq!(
        created["event_types"],
        json!(["handoff.abandoned", "call.completed"])
    );
    assert_eq!(
        (
            created["enabled"].as_bool(),
            created["description"].as_str()
        ),
        (Some(true), Some("pager"))
    );
    let secret = created["secret"].as_str().unwrap();
    assert_eq!(
        B64.decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap()
            .len(),
        24
    );
    let id = created["id"].as_str().unwrap();
    let list: Value = h
        .app
        .get("/v1/webhooks", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    assert!(list["webhooks"][0].get("secret").is_none());
    // Patch: a field at a time; null clears the description.
    let patch = |body: Value| {
        let app = &h.app;
        let token = token.clone();
        let url = app.url(&format!("/v1/webhooks/{id}"));
        async move {
            app.client
                .patch(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let res = patch(json!({"event_types": ["session.ended"], "description": null})).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["event_types"], json!(["session.ended"]));
    assert_eq!(body["description"], Value::Null);
    assert_eq!(body["url"], "https://example.com/a");
    assert_error(patch(json!({"url": "gopher://x/"})).await, 400, "url").await;
    assert_error(
        patch(json!({"event_types": ["x"]})).await,
        400,
        "event_types[0]",
    )
    .await;
    // Delete, then it is gone.
    let res = h
        .app
        .client
        .delete(h.app.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_error(
        h.app.get(&format!("/v1/webhooks/{id}"), &token).await,
        404,
        "not found",
    )
    .await;
    assert_error(
        h.app.get("/v1/webhooks/not-a-uuid", &token).await,
        404,
        "not found",
    )
    .await;
    // Deliveries: bad parameters.
    let (id, _) = subscribe(
        &h.app,
        &token,
        "https://example.com/b",
        &["handoff.initiated"],
    )
    .await;
    for (q, field) in [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("next=abc", "next"),
        ("x=1", "x"),
    ] {
        assert_error(
            h.app
                .get(&format!("/v1/webhooks/{id}/deliveries?{q}"), &token)
                .await,
            400,
            field,
        )
        .await;
    }
}

#[tokio::test]
async fn deliveries_are_paged_by_cursor() {
    let h = Hooked::on(fresh_database().await.0, fast(), false).await;
    let org = h.app.org("acme", None, None).await;
    let token = h.app.writer(&org).await;
    let (id, _) = subscribe(&h.app, &token, "https://example.com/hook", &ALL).await;
    let mut events = Vec::new();
    for i in 0..3 {
        events.extend(lifecycle("c", i));
    }
    h.app.post_events_ok(&token, &events).await;
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let q = next
            .as_ref()
            .map(|n| format!("&next={n}"))
            .unwrap_or_default();
        let page: Value = h
            .app
            .get(&format!("/v1/webhooks/{id}/deliveries?limit=5{q}"), &token)
            .await
            .json()
            .await
            .unwrap();
        for d in page["deliveries"].as_array().unwrap() {
            assert_eq!(
                (d["status"].as_str(), d["attempts"].as_i64()),
                (Some("pending"), Some(0))
            );
            assert!(d["next_attempt_at"].is_string());
            seen.push(d["event_type"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(n) => next = Some(n.to_owned()),
            None => break,
        }
    }
    // 3 × (initiated, state, completed, session.ended), newest first.
    assert_eq!(seen.len(), 12);
    assert_eq!(seen[0], "session.ended");
    assert_eq!(seen[11], "handoff.initiated");
    let pending: Value = h
        .app
        .get(
            &format!("/v1/webhooks/{id}/deliveries?status=succeeded"),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["deliveries"], json!([]));
}

#[tokio::test]
async fn auth_scopes_and_tenants() {
    let h = Hooked::on(fresh_database().await.0, fast(), false).await;
    let app = &h.app;
    let rs = app.reseller("rs").await;
    let org = app.org("acme", Some("rs"), None).await;
    let other = app.org("other", None, None).await;
    let writer = app.writer(&org).await;
    let reader = app.reader(&org).await;
    let other_writer = app.writer(&other).await;
    let reseller = app
        .token(Subject::Reseller(rs.id), &[Scope::ReadAll, Scope::WriteAll])
        .await;
    let (id, _) = subscribe(
        app,
        &writer,
        "https://example.com/hook",
        &["handoff.initiated"],
    )
    .await;
    let body = json!({"url": "https://example.com/x", "event_types": ["handoff.initiated"]});
    let send = |method: reqwest::Method, path: String, token: Option<String>| {
        let mut req = app.client.request(method, app.url(&path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let body = body.clone();
        async move { req.json(&body).send().await.unwrap() }
    };
    let endpoints = [
        (reqwest::Method::POST, "/v1/webhooks".to_owned(), true),
        (reqwest::Method::GET, "/v1/webhooks".to_owned(), false),
        (reqwest::Method::GET, format!("/v1/webhooks/{id}"), false),
        (reqwest::Method::PATCH, format!("/v1/webhooks/{id}"), true),
        (reqwest::Method::DELETE, format!("/v1/webhooks/{id}"), true),
        (
            reqwest::Method::POST,
            format!("/v1/webhooks/{id}/rotate-secret"),
            true,
        ),
        (
            reqwest::Method::GET,
            format!("/v1/webhooks/{id}/deliveries"),
            false,
        ),
        (
            reqwest::Method::POST,
            format!("/v1/webhooks/{id}/deliveries/{}/retry", uuid::Uuid::nil()),
            true,
        ),
    ];
    for (method, path, write) in &endpoints {
        assert_error(send(method.clone(), path.clone(), None).await, 401, "").await;
        assert_error(
            send(method.clone(), path.clone(), Some("not.a.token".into())).await,
            401,
            "",
        )
        .await;
        if *write {
            assert_error(
                send(method.clone(), path.clone(), Some(reader.clone())).await,
                403,
                "Insufficient token scope. Required: write_all",
            )
            .await;
            assert_error(
                send(method.clone(), path.clone(), Some(reseller.clone())).await,
                403,
                "reseller",
            )
            .await;
        }
        // Another organization's webhook is not found (the list is just empty).
        if path != "/v1/webhooks" {
            assert_error(
                send(method.clone(), path.clone(), Some(other_writer.clone())).await,
                404,
                "not found",
            )
            .await;
        }
    }
    let empty: Value = app
        .get("/v1/webhooks", &other_writer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty["webhooks"], json!([]));
    // A reseller token reads its organization's webhooks, naming it.
    let listed: Value = app
        .get(
            &format!("/v1/webhooks?organization_id={}", org.id),
            &reseller,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["webhooks"][0]["id"], id.as_str());
    assert_error(
        app.get(
            &format!("/v1/webhooks?organization_id={}", other.id),
            &reseller,
        )
        .await,
        404,
        "not found",
    )
    .await;
    let res = app.get(&format!("/v1/webhooks/{id}"), &reader).await;
    assert_eq!(res.status(), 200);
}
