//! The delivery worker every server runs: claims due deliveries from PostgreSQL, attempts them
//! concurrently (bounded per server and per endpoint), and records each outcome.
//!
//! Successes (nearly every attempt) are recorded in batches by one recorder task: whatever has
//! finished while the previous batch was being written goes in the next statement, each delivery
//! with its own status code and attempt, so a busy worker writes one statement per many
//! deliveries and an idle one writes each success at once. A success not yet recorded when the
//! server dies is sent again after its lease (at least once). Failures are recorded one by one,
//! with their endpoint's failure run.
//!
//! Each claim first fans out the batches acknowledged since the last one (in its own
//! transaction, unless another server is doing it: [`store::fan_out`]).
//!
//! A worker wakes on the outbox notification (sent once a batch that enqueued deliveries has
//! committed, or by the transaction that made a delivery due by hand) and otherwise polls every
//! `poll_interval`, which also brings retries whose time has come. Stopping it waits briefly for
//! attempts in flight, then abandons them: their leases pass and a worker retries them (at least
//! once). Dropping a [`Deliverer`] aborts it at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use super::WebhookConfig;
use super::destination::{GuardedResolver, Refused, check_literal, parse_url};
use super::signing::signature_header;
use crate::monitoring::Monitoring;
use crate::store::webhooks::{self as store, Claimed, Delivered, Outcome};

/// Most successes one statement records.
const RECORD_BATCH: usize = 256;

/// A running worker.
#[derive(Debug)]
pub struct Deliverer {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Deliverer {
    /// Starts the worker on `pool`.
    pub fn start(pool: PgPool, config: WebhookConfig, monitoring: Arc<Monitoring>) -> Deliverer {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(pool, Arc::new(config), monitoring, stopped));
        Deliverer {
            stop,
            task: Some(task),
        }
    }

    /// Stops taking deliveries, lets attempts in flight finish for up to two seconds, and
    /// returns once the worker has stopped.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The HTTP client of attempts: rustls, no redirects, no proxy from the environment (it would
/// bypass the address check), the attempt deadline, and the guarded resolver.
pub fn client(config: &WebhookConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(config.attempt_timeout)
        .connect_timeout(config.attempt_timeout)
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: config.allow_private,
        }))
        .user_agent(concat!("Baton-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|e| unreachable!("a client with these settings always builds: {e}"))
}

async fn listener(pool: &PgPool) -> Option<PgListener> {
    let mut l = PgListener::connect_with(pool).await.ok()?;
    l.listen(store::CHANNEL).await.ok()?;
    Some(l)
}

async fn run(
    pool: PgPool,
    config: Arc<WebhookConfig>,
    monitoring: Arc<Monitoring>,
    mut stopped: watch::Receiver<bool>,
) {
    let client = client(&config);
    let mut notifications = listener(&pool).await;
    let (recorded, outcomes) = mpsc::unbounded_channel::<Delivered>();
    let recorder = tokio::spawn(record_successes(pool.clone(), outcomes));
    let mut inflight: JoinSet<()> = JoinSet::new();
    let mut endpoint_of: HashMap<tokio::task::Id, Uuid> = HashMap::new();
    let mut per_endpoint: HashMap<Uuid, usize> = HashMap::new();
    let per_endpoint_max = config.per_endpoint.max(1);
    let concurrency = config.concurrency.max(1);
    // Claims are batched: one is made when the worker starts, on a notification or a poll tick,
    // after a claim that filled every slot, and once half of the attempts in flight after the
    // last claim have finished; not for each finished attempt (with an endpoint at its limit,
    // claiming on each one would claim one delivery at a time).
    let mut want_claim = true;
    let mut inflight_after_claim = 0usize;
    let mut finished_since_claim = 0usize;
    loop {
        if *stopped.borrow() {
            break;
        }
        let free = concurrency.saturating_sub(inflight.len());
        if want_claim && free > 0 {
            want_claim = false;
            let busy: Vec<(Uuid, i32)> = per_endpoint
                .iter()
                .map(|(id, n)| (*id, i32::try_from(*n).unwrap_or(i32::MAX)))
                .collect();
            match store::claim(
                &pool,
                free as i64,
                per_endpoint_max as i64,
                &busy,
                config.lease(),
            )
            .await
            {
                Ok(claims) => {
                    finished_since_claim = 0;
                    want_claim = claims.len() == free;
                    for c in claims {
                        *per_endpoint.entry(c.webhook_id).or_default() += 1;
                        let webhook = c.webhook_id;
                        let handle = inflight.spawn(attempt(
                            client.clone(),
                            pool.clone(),
                            config.clone(),
                            monitoring.clone(),
                            recorded.clone(),
                            c,
                        ));
                        endpoint_of.insert(handle.id(), webhook);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhooks: cannot claim deliveries"),
            }
            inflight_after_claim = inflight.len();
        }
        tokio::select! {
            _ = stopped.changed() => break,
            Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                let id = match &done { Ok((id, ())) => *id, Err(e) => e.id() };
                if let Some(w) = endpoint_of.remove(&id)
                    && let Some(n) = per_endpoint.get_mut(&w)
                {
                    *n -= 1;
                    if *n == 0 {
                        per_endpoint.remove(&w);
                    }
                }
                finished_since_claim += 1;
                if inflight.is_empty() || finished_since_claim * 2 >= inflight_after_claim.max(1) {
                    want_claim = true;
                }
            }
            () = notified(&mut notifications, config.poll_interval) => want_claim = true,
            () = tokio::time::sleep(config.poll_interval) => want_claim = true,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while inflight.join_next().await.is_some() {}
    })
    .await;
    inflight.abort_all();
    // The successes already in hand are written before the worker stops (an abandoned attempt's
    // sender goes with it, so the recorder ends once the queue is empty).
    while inflight.join_next().await.is_some() {}
    drop(recorded);
    let _ = tokio::time::timeout(Duration::from_secs(2), recorder).await;
}

/// Records the successes sent on `outcomes`, many per statement: it takes whatever has queued
/// up (at most [`RECORD_BATCH`]) while the previous statement ran.
async fn record_successes(pool: PgPool, mut outcomes: mpsc::UnboundedReceiver<Delivered>) {
    let mut batch: Vec<Delivered> = Vec::with_capacity(RECORD_BATCH);
    while outcomes.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        // The outcome matters (a success not recorded is sent again): retry the write briefly.
        for pause in [0u64, 200, 1000, 3000] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            match store::record_delivered(&pool, &batch).await {
                Ok(_) => break,
                Err(e) => tracing::warn!(
                    error = %e,
                    deliveries = batch.len(),
                    "webhooks: cannot record successful attempts"
                ),
            }
        }
        batch.clear();
    }
}

/// Resolves on a notification; never, without a listener; after a pause, on a broken one
/// (it reconnects on the next call).
async fn notified(l: &mut Option<PgListener>, pause: Duration) {
    match l {
        Some(l) => {
            if l.recv().await.is_err() {
                tokio::time::sleep(pause).await;
            }
        }
        None => std::future::pending().await,
    }
}

/// One attempt of one delivery, and its outcome recorded.
async fn attempt(
    client: reqwest::Client,
    pool: PgPool,
    config: Arc<WebhookConfig>,
    monitoring: Arc<Monitoring>,
    recorded: mpsc::UnboundedSender<Delivered>,
    c: Claimed,
) {
    let sent = send(&client, &config, &c).await;
    let retry_at = || {
        let now = Utc::now();
        let window =
            chrono::Duration::from_std(config.retry_window).unwrap_or(chrono::TimeDelta::MAX);
        if c.created_at + window <= now {
            None
        } else {
            chrono::Duration::from_std(config.backoff(c.attempts))
                .ok()
                .map(|d| now + d)
        }
    };
    let outcome = match sent {
        Ok(status) if (200..300).contains(&status) => Outcome::Delivered { status },
        Ok(410) => Outcome::Gone,
        Ok(status) => Outcome::Failed {
            status: Some(status),
            error: if (300..400).contains(&status) {
                format!("answered {status}; redirects are not followed")
            } else {
                format!("answered {status}")
            },
            retry_at: retry_at(),
        },
        Err(error) => Outcome::Failed {
            status: None,
            error,
            retry_at: retry_at(),
        },
    };
    monitoring.webhook_attempt(match &outcome {
        Outcome::Delivered { .. } => "delivered",
        Outcome::Gone => "gone",
        Outcome::Failed { retry_at: None, .. } => "given_up",
        Outcome::Failed { .. } => "failed",
    });
    if let Outcome::Delivered { status } = outcome {
        // Recorded with others; if the recorder is gone (the worker stopped), as one.
        let done = Delivered {
            org_id: c.org_id,
            id: c.id,
            webhook_id: c.webhook_id,
            attempts: c.attempts,
            status,
        };
        if recorded.send(done).is_ok() {
            return;
        }
    }
    // The outcome matters (a success not recorded is sent again): retry the write briefly.
    for pause in [0u64, 200, 1000, 3000] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        match store::record(&pool, &c, &outcome, config.disable_after).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, delivery = %c.id, "webhooks: cannot record an attempt")
            }
        }
    }
}

/// Sends one attempt: the status code, or why no answer came.
async fn send(
    client: &reqwest::Client,
    config: &WebhookConfig,
    c: &Claimed,
) -> Result<u16, String> {
    let url = parse_url(&c.url).map_err(|e| format!("bad url: {e}"))?;
    if !config.allow_private {
        check_literal(&url).map_err(|e| e.to_string())?;
    }
    let timestamp = Utc::now().timestamp();
    let signature = signature_header(
        c.secrets.iter().map(String::as_str),
        &c.message_id,
        timestamp,
        &c.payload,
    );
    let res = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &c.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(c.payload.clone())
        .send()
        .await
        .map_err(|e| describe(&e, config))?;
    Ok(res.status().as_u16())
}

/// A failed attempt's reason, for the delivery log.
fn describe(e: &reqwest::Error, config: &WebhookConfig) -> String {
    if e.is_timeout() {
        return format!(
            "no answer within {} s",
            config.attempt_timeout.as_secs_f64()
        );
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut parts = Vec::new();
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return r.to_string();
        }
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}
