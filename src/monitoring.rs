//! Prometheus metrics of one server, and the admin listener that exports them.
//!
//! Policy: metrics are served on a listener of their own (`--admin-addr`, default
//! `127.0.0.1:9464`), never on the API port, where `GET /metrics` is Telzino's call metrics. The
//! admin listener answers `GET /metrics` (Prometheus text format 0.0.4), `/healthz` and `/readyz`,
//! without tokens: bind it where only the scraper and the orchestrator reach it.
//!
//! Every server owns a [`Monitoring`] with its own `prometheus-client` registry (no global
//! recorder), so several servers in one process (as in the tests) count separately. Label values
//! are bounded: the route is axum's matched path template (`/v1/handoffs/{handoff_id}`, never the
//! raw path; `unmatched` for paths no route matches), the method is one of the standard ones or
//! `other`, event types are the nine valid ones.
//!
//! Exported (counters carry the `_total` suffix):
//! - `baton_http_requests_total{method,route,status}` and
//!   `baton_http_request_duration_seconds{method,route,status}` (histogram, up to the response
//!   head);
//! - `baton_events_ingested_total{type}`: events of the batches `POST /v1/events` answered 200
//!   (a retried batch counts again), and `baton_events_duplicates_total`, those of them that were
//!   already stored and ignored;
//! - `baton_ingest_batches_rejected_total{reason}`: `invalid` (400, 413, 415), `conflict` (409),
//!   `too_many` (429), `unavailable` (503, or cut by the request deadline), `error` (500);
//! - `baton_rate_limited_requests_total`: reads refused 429 by the per-token limit;
//! - `baton_db_pool_connections{pool,state}`: connections `in_use` and `idle` of the `main` pool
//!   and of the `metrics` pool (the `/v1/metrics` generic-plan reads), read at scrape time;
//! - `baton_database_up`: 1 while the database answers its health probes, else 0;
//! - with `--read-database-url`: `baton_read_replica_up` (1 while the replica answers its
//!   probes), `baton_read_replica_lag_seconds` (how far behind the primary it is, measured by
//!   write-ahead-log position, so an idle primary does not look lagging), and
//!   `baton_reads_total{target}`: reads that may be stale, by where they went (`replica`, or
//!   `primary` when the replica is down or lags beyond `--read-replica-max-lag-secs`).
//! - `baton_webhook_attempts_total{outcome}`: webhook delivery attempts this server made, by
//!   outcome: `delivered` (2xx), `failed` (retried later), `given_up` (failed after the retry
//!   window), `gone` (410: the endpoint was disabled).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

use crate::db::health::Status;
use crate::http::error::ApiError;
use crate::http::{AppState, health};

/// The admin listener's default address.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9464";

/// The `route` label of requests no route matches.
pub const UNMATCHED: &str = "unmatched";

/// Upper bounds of the latency buckets, in seconds: from a cached read (about a millisecond) to
/// the 30 s request timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
    state: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The metrics of one server.
pub struct Monitoring {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    events: Family<TypeLabels, Counter>,
    duplicates: Counter,
    rejected: Family<ReasonLabels, Counter>,
    rate_limited: Counter,
    pool_connections: Family<PoolLabels, Gauge>,
    database_up: Gauge,
    replica: ReplicaMetrics,
    webhook_attempts: Family<OutcomeLabels, Counter>,
}

/// The read replica's metrics, registered when one is configured (see
/// [`Monitoring::with_read_replica`]).
#[derive(Default)]
struct ReplicaMetrics {
    up: Gauge,
    lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    reads: Family<TargetLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: &'static str,
}

impl std::fmt::Debug for Monitoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitoring").finish_non_exhaustive()
    }
}

/// Why `POST /v1/events` refused a batch (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 400, 413 or 415: the batch cannot be stored as sent.
    Invalid,
    /// 409: an id reused with another body, or a forbidden transition.
    Conflict,
    /// 429: too many batches of the organization waiting.
    TooMany,
    /// 503: the database is unavailable, or the batch waited or ran too long.
    Unavailable,
    /// 500.
    Error,
}

impl Rejection {
    /// The reason of an error answer, or `None` for errors that are not about the batch.
    pub fn of(error: &ApiError) -> Option<Rejection> {
        Some(match error {
            ApiError::BadRequest { .. }
            | ApiError::PayloadTooLarge(_)
            | ApiError::UnsupportedMediaType(_) => Rejection::Invalid,
            ApiError::Conflict(_) => Rejection::Conflict,
            ApiError::TooManyRequests { .. } => Rejection::TooMany,
            ApiError::Unavailable(_) => Rejection::Unavailable,
            ApiError::Internal(_) => Rejection::Error,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Rejection::Invalid => "invalid",
            Rejection::Conflict => "conflict",
            Rejection::TooMany => "too_many",
            Rejection::Unavailable => "unavailable",
            Rejection::Error => "error",
        }
    }
}

impl Default for Monitoring {
    fn default() -> Self {
        Monitoring::new()
    }
}

impl Monitoring {
    /// Empty metrics in a registry of their own.
    pub fn new() -> Monitoring {
        let mut registry = Registry::with_prefix("baton");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        let latency = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response head, by method, route template and status",
            latency.clone(),
        );
        let events = Family::<TypeLabels, Counter>::default();
        registry.register(
            "events_ingested",
            "Events of the batches POST /v1/events accepted, by type (duplicates included)",
            events.clone(),
        );
        let duplicates = Counter::default();
        registry.register(
            "events_duplicates",
            "Events of accepted batches that were already stored and so ignored",
            duplicates.clone(),
        );
        let rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "ingest_batches_rejected",
            "Batches POST /v1/events refused, by reason",
            rejected.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_requests",
            "Reads refused 429 by the per-token rate limit",
            rate_limited.clone(),
        );
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database connections of a pool (main, or metrics: the /v1/metrics reads), in use or idle",
            pool_connections.clone(),
        );
        let database_up = Gauge::default();
        registry.register(
            "database_up",
            "1 while the database answers its health probes, else 0",
            database_up.clone(),
        );
        let webhook_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts this server made, by outcome (delivered, failed, given_up, gone)",
            webhook_attempts.clone(),
        );
        Monitoring {
            webhook_attempts,
            registry,
            requests,
            latency,
            events,
            duplicates,
            rejected,
            rate_limited,
            pool_connections,
            database_up,
            replica: ReplicaMetrics::default(),
        }
    }

    /// Empty metrics, with those of a read replica.
    pub fn with_read_replica() -> Monitoring {
        let mut m = Monitoring::new();
        m.registry.register(
            "read_replica_up",
            "1 while the read replica answers its probes, else 0",
            m.replica.up.clone(),
        );
        m.registry.register(
            "read_replica_lag_seconds",
            "How far the read replica's replay is behind the primary's write-ahead log",
            m.replica.lag.clone(),
        );
        m.registry.register(
            "reads",
            "Reads that may be a few seconds stale, by where they went (replica or primary)",
            m.replica.reads.clone(),
        );
        m
    }

    /// Counts a read routed to the replica or to the primary.
    pub fn read_routed(&self, replica: bool) {
        let target = if replica { "replica" } else { "primary" };
        self.replica
            .reads
            .get_or_create(&TargetLabels { target })
            .inc();
    }

    /// Sets the replica's gauges (at scrape time).
    pub fn replica_seen(&self, up: bool, lag: Duration) {
        self.replica.up.set(i64::from(up));
        self.replica.lag.set(lag.as_secs_f64());
    }

    /// Counts one answered request.
    pub fn request(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let labels = RequestLabels {
            method: method_label(method),
            route: route.to_owned(),
            status,
        };
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts the events of an accepted batch, by type, and those of them already stored.
    pub fn ingested(&self, types: impl IntoIterator<Item = &'static str>, duplicates: u64) {
        // Types are `Event::type_name`s: the nine valid ones, so the label stays bounded.
        let mut counts: Vec<(&'static str, u64)> = Vec::new();
        for t in types {
            match counts.iter_mut().find(|(seen, _)| *seen == t) {
                Some((_, n)) => *n += 1,
                None => counts.push((t, 1)),
            }
        }
        for (t, n) in counts {
            self.events
                .get_or_create(&TypeLabels { r#type: t })
                .inc_by(n);
        }
        self.duplicates.inc_by(duplicates);
    }

    /// Counts a refused batch.
    pub fn rejected(&self, reason: Rejection) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// Counts a webhook delivery attempt by outcome (`delivered`, `failed`, `given_up`, `gone`).
    pub fn webhook_attempt(&self, outcome: &'static str) {
        self.webhook_attempts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts a read refused by the rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// Watches one batch: unless [`BatchWatch::finish`] is called, the batch counts as
    /// `unavailable` (its handler was dropped by the request deadline or a database outage).
    pub fn watch_batch(self: &Arc<Self>) -> BatchWatch {
        BatchWatch(Some(self.clone()))
    }

    /// The registry in the Prometheus text format, with the gauges read now.
    pub fn render(&self, pools: &[(&'static str, &PgPool)], database_up: bool) -> String {
        for (name, pool) in pools {
            let size = i64::from(pool.size());
            let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
            self.pool_connections
                .get_or_create(&PoolLabels {
                    pool: name,
                    state: "idle",
                })
                .set(idle);
            self.pool_connections
                .get_or_create(&PoolLabels {
                    pool: name,
                    state: "in_use",
                })
                .set((size - idle).max(0));
        }
        self.database_up.set(i64::from(database_up));
        let mut text = String::new();
        if let Err(e) = prometheus_text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }
}

/// One `POST /v1/events` batch being handled (see [`Monitoring::watch_batch`]).
pub struct BatchWatch(Option<Arc<Monitoring>>);

impl BatchWatch {
    /// Counts the handler's outcome: nothing for a stored batch (the events were counted when
    /// stored), the reason of a refusal otherwise.
    pub fn finish<T>(mut self, result: &Result<T, ApiError>) {
        if let (Some(m), Err(e)) = (self.0.take(), result)
            && let Some(reason) = Rejection::of(e)
        {
            m.rejected(reason);
        }
    }
}

impl Drop for BatchWatch {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            m.rejected(Rejection::Unavailable);
        }
    }
}

/// The method label: the standard methods by name, any other as `other` (clients choose the
/// method, so it must not mint new label values).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The middleware counting every request of the API router by its route template and status.
/// Added with `Router::layer`, so it runs after routing and sees [`MatchedPath`].
pub async fn track(State(m): State<Arc<Monitoring>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let res = next.run(req).await;
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    m.request(&method, route, res.status().as_u16(), started.elapsed());
    res
}

/// The admin listener's router: `/metrics`, `/healthz`, `/readyz`. Its own requests are not
/// counted (scrapes and probes would drown the API's figures).
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(get_prometheus))
        .route("/healthz", get(health::get_healthz))
        .route("/readyz", get(health::get_readyz))
        .fallback(|req: Request| async move {
            ApiError::NotFound(format!(
                "no route for {} {} on the admin listener (it serves /metrics, /healthz and /readyz)",
                req.method(),
                req.uri().path()
            ))
        })
        .with_state(state)
}

async fn get_prometheus(State(state): State<AppState>) -> Response {
    let up = matches!(state.db_health.status(), Status::Up);
    if let Some(replica) = &state.read_replica {
        state.monitoring.replica_seen(replica.up(), replica.lag());
    }
    let text = state.monitoring.render(
        &[("main", &state.pool), ("metrics", &state.metrics_pool.0)],
        up,
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}
