//! The HTTP API: state, router, layers and the OpenAPI document.
//!
//! Each resource module returns its own `OpenApiRouter`; [`router`] merges them, splits out the
//! OpenAPI document (served at `/openapi.json`), and adds the layers in the order commented there.

pub mod analytics;
pub mod configuration;
pub mod cors;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod exports;
pub mod extract;
pub mod handoff_events;
pub mod handoffs;
pub mod health;
pub mod lifecycle;
pub mod me;
pub mod metrics;
pub mod openapi;
pub mod polyai;
pub mod ratelimit;
pub mod sessions;
pub mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sqlx::PgPool;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::admission::IngestAdmission;
use crate::auth::Keys;
use crate::auth::revocation::TokenVerdicts;
use crate::db::DbHealth;
use crate::db::replica::ReadReplica;
use crate::db::stats::StatsKeeper;
use crate::monitoring::{self, Monitoring};
use crate::store::agent_cache::{AgentCache, DEFAULT_CACHE_ROWS};
use crate::webhooks::WebhookConfig;
use error::{ApiError, envelope};

/// Everything a handler can reach.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// The database pool.
    pub pool: PgPool,
    /// Token signing and verification keys.
    pub keys: Arc<Keys>,
    /// Remembered issued-token records (and so revocation verdicts).
    pub verdicts: Arc<TokenVerdicts>,
    /// Agent rows of reseller rollup buckets read before (`GET /v1/metrics`).
    pub metrics_cache: Arc<AgentCache>,
    /// Connections with generic plans for the `/v1/metrics` reads (see
    /// [`generic_plan_pool`](crate::db::generic_plan_pool)).
    pub metrics_pool: MetricsPool,
    /// Whether the database answers (requests stop waiting on a database that does not).
    pub db_health: Arc<DbHealth>,
    /// The queues ingest batches wait in before they use the database.
    pub ingest_admission: Arc<IngestAdmission>,
    /// Refreshes the planner's statistics after loads.
    pub stats: Arc<StatsKeeper>,
    /// This server's Prometheus metrics (served on the admin listener).
    pub monitoring: Arc<Monitoring>,
    /// The streaming replica reads may use (`--read-database-url`); see [`AppState::read_pool`].
    pub read_replica: Option<Arc<ReadReplica>>,
    /// How webhooks are checked and delivered.
    pub webhooks: Arc<WebhookConfig>,
}

/// The pool of the `/v1/metrics` reads.
#[derive(Clone, Debug)]
pub struct MetricsPool(pub PgPool);

/// The pool of a read that may be a few seconds stale: the replica's when one is configured,
/// answers and is within its lag bound, else the primary's (see [`AppState::read_pool`]).
#[derive(Clone, Debug)]
pub struct ReadPool(pub PgPool);

impl FromRef<AppState> for ReadPool {
    fn from_ref(state: &AppState) -> ReadPool {
        ReadPool(state.read_pool())
    }
}

/// [`ReadPool`] for the `/v1/metrics` reads: the generic-plan pool of the replica or of the
/// primary.
#[derive(Clone, Debug)]
pub struct ReadMetricsPool(pub PgPool);

impl FromRef<AppState> for ReadMetricsPool {
    fn from_ref(state: &AppState) -> ReadMetricsPool {
        ReadMetricsPool(state.read_metrics_pool())
    }
}

impl AppState {
    /// State over a pool, listening for token revocations in the background.
    pub fn new(pool: PgPool, keys: Arc<Keys>) -> AppState {
        AppState::with_token_verdicts(pool, keys, TokenVerdicts::new())
    }

    /// State over a pool with a given memory of issued tokens (say, one trusting records for
    /// less than the default 30 s), which starts listening for revocations in the background.
    pub fn with_token_verdicts(
        pool: PgPool,
        keys: Arc<Keys>,
        verdicts: Arc<TokenVerdicts>,
    ) -> AppState {
        verdicts.listen(pool.clone());
        let db_health = DbHealth::new();
        db_health.watch((*pool.connect_options()).clone());
        AppState {
            db_health,
            stats: StatsKeeper::new(pool.clone()),
            ingest_admission: Arc::new(IngestAdmission::for_pool(
                pool.options().get_max_connections(),
            )),
            metrics_pool: MetricsPool(crate::db::generic_plan_pool(&pool)),
            pool,
            keys,
            verdicts,
            metrics_cache: Arc::new(AgentCache::new(DEFAULT_CACHE_ROWS)),
            monitoring: Arc::new(Monitoring::new()),
            read_replica: None,
            webhooks: Arc::new(WebhookConfig::default()),
        }
    }

    /// The same state reading from `replica` when it may (see [`AppState::read_pool`]).
    pub fn with_read_replica(mut self, replica: Arc<ReadReplica>) -> AppState {
        self.read_replica = Some(replica);
        self.monitoring = Arc::new(Monitoring::with_read_replica());
        self
    }

    /// The one place that decides where a read goes. Reads that may be a few seconds stale
    /// (analytics, metrics, handoff lists and records, PolyAI's lookup) take their pool here: the
    /// replica's while it answers and lags less than its bound, else the primary's. Writes, the
    /// configuration GET (it feeds a GET-modify-PUT), token checks and transactions use
    /// [`AppState::pool`], the primary, directly.
    pub fn read_pool(&self) -> PgPool {
        let replica = self.read_replica.as_ref().and_then(|r| r.pool());
        self.monitoring.read_routed(replica.is_some());
        replica.unwrap_or(&self.pool).clone()
    }

    /// [`AppState::read_pool`] for the `/v1/metrics` reads (pools with generic plans).
    pub fn read_metrics_pool(&self) -> PgPool {
        let replica = self.read_replica.as_ref().and_then(|r| r.generic_pool());
        self.monitoring.read_routed(replica.is_some());
        replica.unwrap_or(&self.metrics_pool.0).clone()
    }

    /// The same state watching the database through `health` (the one whose outages the pool's
    /// connections are tested against, see [`crate::db::watched_pool_options`]).
    pub fn with_db_health(mut self, health: Arc<DbHealth>) -> AppState {
        self.db_health = health;
        self
    }

    /// The same state with another keeper of planner statistics.
    pub fn with_stats_keeper(mut self, stats: Arc<StatsKeeper>) -> AppState {
        self.stats = stats;
        self
    }

    /// The same state with other ingest queues.
    pub fn with_ingest_admission(mut self, admission: IngestAdmission) -> AppState {
        self.ingest_admission = Arc::new(admission);
        self
    }

    /// The same state with other webhook settings.
    pub fn with_webhook_config(mut self, config: WebhookConfig) -> AppState {
        self.webhooks = Arc::new(config);
        self
    }

    /// The same state with a metrics cache of at most `rows` agent rows (0: none).
    pub fn with_metrics_cache_rows(mut self, rows: usize) -> AppState {
        self.metrics_cache = Arc::new(AgentCache::new(rows));
        self
    }
}

/// Limits applied to every request.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Longest a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Largest request body, in bytes (413 beyond).
    pub body_limit: usize,
    /// Reads per minute per token (429 beyond); 0: no limit. See [`ratelimit`].
    pub rate_limit_per_minute: u32,
    /// Browser origins allowed to call the API (`*`: any); empty, no CORS. See [`cors`].
    pub cors_allow_origins: Vec<HeaderValue>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            request_timeout: Duration::from_secs(30),
            body_limit: 10 * 1024 * 1024,
            rate_limit_per_minute: ratelimit::DEFAULT_PER_MINUTE,
            cors_allow_origins: Vec::new(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Baton",
        description = "Self-hosted AI-to-human handoff server. Speaks the OpenCX handoff analytics, Quickchat handoff configuration, Telzino call metrics and PolyAI handoff state APIs. Every error body is OpenCX's `ErrorDto`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&SecuritySchemes),
    security(("bearerAuth" = []), ("apiKey" = [])),
    components(schemas(error::ErrorDto, error::FieldError)),
    tags(
        (name = "operations", description = "Probes and the API description"),
        (name = "events", description = "Getting data in: sessions, handoffs, agents and calls"),
        (name = "handoff analytics", description = "OpenCX's handoff analytics report, answered from rollups kept current at ingestion"),
        (name = "handoff configuration", description = "Quickchat's human handoff configuration: one document per organization, replaced whole by PUT, with ETags and revisions"),
        (name = "handoff states", description = "PolyAI's Handoff API: a handoff's state data by id or shared_id"),
        (name = "handoffs", description = "Handoff records with their sessions and state history, for operators and dashboards"),
        (name = "call metrics", description = "Telzino's call metrics: volume, resolution, distributions, agents, AI insights and escalation reasons, per organization or across a reseller"),
        (name = "webhooks", description = "Signed pushes of the handoff lifecycle (Standard Webhooks): subscriptions, secrets, the delivery log and manual retries"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A Baton token (`baton token issue`) as `Authorization: Bearer <token>`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "The same token as an `x-api-key` header, as PolyAI clients send it.",
            ))),
        );
    }
}

/// Every route; `limit_reads` wraps the routes whose reads are rate limited per token (all
/// but the probes, the OpenAPI document and `POST /v1/events`).
fn api_router(
    limit_reads: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    let mut reads = OpenApiRouter::new()
        .merge(me::router())
        .merge(configuration::router())
        .merge(polyai::router())
        .merge(handoffs::router())
        .merge(metrics::router())
        .merge(analytics::router())
        .merge(lifecycle::router())
        .merge(handoff_events::router())
        .merge(exports::router())
        .merge(webhooks::router())
        .merge(aliases());
    document_aliases(reads.get_openapi_mut());
    ratelimit::document(reads.get_openapi_mut());
    let mut all = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(events::router())
        .merge(sessions::router())
        .merge(limit_reads(reads));
    openapi::document(all.get_openapi_mut());
    error::document_retry_after(all.get_openapi_mut());
    all
}

/// Other paths of existing operations, as the original APIs spell them: `(alias, original)`.
/// Telzino's clients call `GET /metrics`; PolyAI's documentation shows its Handoff API both with
/// and without `/v1`. (Prometheus metrics are on the admin listener, see [`crate::monitoring`].)
///
/// Routing: `/{account_id}/{project_id}/handoff_state` has three segments, like
/// `/v1/handoffs/{handoff_id}`; static segments win, so `/v1/handoffs/handoff_state` is the
/// handoff record `handoff_state`, and an account whose slug is `v1` with a project `handoffs`
/// must use the versioned path.
const ALIASES: [(&str, &str); 2] = [
    ("/metrics", "/v1/metrics"),
    (
        "/{account_id}/{project_id}/handoff_state",
        "/v1/{account_id}/{project_id}/handoff_state",
    ),
];

/// The alias routes: the same handlers (so the same parameters, answers and auth).
fn aliases() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route(ALIASES[0].0, get(metrics::get_metrics))
        .route(ALIASES[1].0, get(polyai::get_handoff_state))
}

/// Documents each alias as a copy of its original's operations, with an operation id and a
/// description of its own.
fn document_aliases(doc: &mut utoipa::openapi::OpenApi) {
    for (alias, original) in ALIASES {
        let Some(mut item) = doc.paths.paths.get(original).cloned() else {
            continue;
        };
        if let Some(op) = item.get.as_mut() {
            op.operation_id = op.operation_id.take().map(|id| format!("{id}_alias"));
            let note = format!(
                "Alias of `GET {original}`: the same parameters, answers and authentication."
            );
            op.description = Some(match op.description.take() {
                Some(d) => format!("{note}\n\n{d}"),
                None => note,
            });
        }
        doc.paths.paths.insert(alias.to_owned(), item);
    }
}

/// The OpenAPI document of the whole API (what `/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router(|reads| reads).split_for_parts().1
}

/// The OpenAPI document as committed in `openapi/openapi.json` (pretty, with a final newline).
pub fn openapi_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| unreachable!("the OpenAPI document always serializes: {e}"));
    text.push('\n');
    text
}

/// The application: every route with its layers.
pub fn router(state: AppState, config: &HttpConfig) -> Router {
    let state_health = state.db_health.clone();
    let limit = ratelimit::ReadLimit::new(state.clone(), config.rate_limit_per_minute);
    // Inside every other layer, so that a 429 is timed, logged and enveloped like any answer.
    let (routes, api) = api_router(|reads| match limit {
        Some(limit) => reads.route_layer(middleware::from_fn_with_state(
            limit,
            ratelimit::limit_reads,
        )),
        None => reads,
    })
    .split_for_parts();
    let api_json = Arc::new(api.to_json().unwrap_or_default());
    let routes = routes.route(
        "/openapi.json",
        get(move || {
            let body = api_json.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    body.as_str().to_owned(),
                )
            }
        }),
    );
    // The dashboard's files: not API operations (not in the document), no token, no rate limit.
    let routes = routes.merge(dashboard::router());
    let monitoring = state.monitoring.clone();
    let app = routes
        .fallback(not_found)
        .with_state(state)
        // Outermost first: every request gets an id, then a span carrying it; panics, bare
        // error statuses, timeouts and database outages all end in the envelope inside that
        // span; bodies are limited before any extractor reads them; responses are compressed
        // last.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        .on_request(())
                        .on_response(on_response)
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(middleware::from_fn(ensure_envelope))
                .layer(middleware::from_fn_with_state(
                    (config.request_timeout, state_health),
                    deadline,
                ))
                .layer(DefaultBodyLimit::max(config.body_limit))
                .layer(CompressionLayer::new()),
        );
    // CORS outside the envelope and the rate limit, so that preflights need no token and error
    // answers are readable by the browser too; metrics outermost, so that every answer is
    // counted as sent (preflights, 503s of the deadline, panics).
    let app = match cors::Cors::new(&config.cors_allow_origins) {
        Some(cors) => app.layer(middleware::from_fn_with_state(cors, cors::apply)),
        None => app,
    };
    app.layer(middleware::from_fn_with_state(
        monitoring,
        monitoring::track,
    ))
}

fn make_span(req: &Request<Body>) -> Span {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %path,
        request_id = %request_id,
        org = tracing::field::Empty,
        reseller = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

fn on_response<B>(res: &axum::http::Response<B>, latency: Duration, span: &Span) {
    span.record("status", res.status().as_u16());
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    tracing::info!("response");
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

/// A JSON 404 for every path no route matches.
async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// Turns any error response without a JSON body (axum's 405, a layer's 413, …) into the envelope.
async fn ensure_envelope(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!("method {method} is not allowed on {path}"),
        StatusCode::PAYLOAD_TOO_LARGE => "request body is too large".to_owned(),
        other => other.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut out = envelope(status, message, None);
    for name in [header::ALLOW, header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
        if let Some(v) = res.headers().get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// Ends a request with a 503 when it outlives the request timeout, or as soon as it has waited
/// on a database that stopped answering (see [`crate::db::health`]); the handler's future is
/// dropped, which rolls back whatever transaction it had open.
async fn deadline(
    State((limit, health)): State<(Duration, Arc<DbHealth>)>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    tokio::select! {
        res = tokio::time::timeout(limit, next.run(req)) => match res {
            Ok(res) => res,
            Err(_) => {
                tracing::warn!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "request timed out"
                );
                ApiError::Unavailable(format!("request timed out after {} s", limit.as_secs_f64()))
                    .into_response()
            }
        },
        () = health.outage(started) => {
            // One warning per outage comes from the watch itself; each request says it at info.
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "request abandoned: the database does not answer"
            );
            ApiError::Unavailable("database unavailable, retry later".to_owned()).into_response()
        }
    }
}
