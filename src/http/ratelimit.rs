//! Per-token rate limits on reads: `--rate-limit-per-minute` requests per minute per token.
//!
//! Policy: the key is the token's `jti`, so the token is verified first (the [`Caller`]
//! extractor, whose result the handler then reuses): a request without a valid token is a 401
//! and is not counted. Only reads (`GET`/`HEAD`) of the routes this layer wraps are counted;
//! writes are bounded elsewhere (ingest is queued per organization) and a 429 on a write would
//! turn into retries of whole batches. The limit is a GCRA (the `governor` crate) with a burst
//! of the whole minute's quota: a fresh token may spend its N requests at once, then gets one
//! more every 60/N s. The state lives in this process only: N servers behind a balancer allow
//! N times the rate.
//!
//! Every counted response, successful or not, carries `RateLimit-Limit` (N),
//! `RateLimit-Remaining` (requests that would be accepted right now) and `RateLimit-Reset`
//! (whole seconds until the quota is whole again); a 429 also carries `Retry-After` (whole
//! seconds until one request will be accepted). Refusals are counted in
//! `baton_rate_limited_requests_total` (see [`crate::monitoring`]).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::{OpenApi, Ref, RefOr};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::auth::extract::Caller;

/// Baton's default: 600 requests per minute per token (10 per second, all at once if need be).
/// OpenCX documents 100 per minute for its API, but one Baton token typically feeds a dashboard
/// that polls several endpoints (analytics, metrics, handoff lists and records) every few
/// seconds; 600 leaves that comfortable room while cutting a runaway script (measured: about
/// 17,000 requests in 10 s from one token) to a few percent of what it would take.
pub const DEFAULT_PER_MINUTE: u32 = 600;

/// How often keys idle long enough to have a whole quota again are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

type Limiter =
    RateLimiter<Uuid, DefaultKeyedStateStore<Uuid>, DefaultClock, StateInformationMiddleware>;

/// The read limiter of one server process, with the state the token check needs.
#[derive(Clone)]
pub struct ReadLimit {
    app: AppState,
    limiter: Arc<Limiter>,
    per_minute: NonZeroU32,
    /// 60 s / N: the time one request's allowance takes to come back.
    replenish: Duration,
}

impl ReadLimit {
    /// A limit of `per_minute` reads per token, or `None` when `per_minute` is 0 (no limit).
    /// Must be called inside a Tokio runtime: a background task drops idle tokens' state.
    pub fn new(app: AppState, per_minute: u32) -> Option<ReadLimit> {
        let per_minute = NonZeroU32::new(per_minute)?;
        let quota = Quota::per_minute(per_minute);
        let limiter = Arc::new(RateLimiter::keyed(quota).with_middleware());
        // Tokens come and go; without a sweep their state would stay for the process's life.
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limiter) = weak.upgrade() else {
                    return;
                };
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        });
        Some(ReadLimit {
            app,
            limiter,
            per_minute,
            replenish: quota.replenish_interval(),
        })
    }

    /// The headers of a response that `remaining` requests may follow right away, the quota
    /// being whole again after `reset`.
    fn headers(&self, headers: &mut HeaderMap, remaining: u32, reset: Duration) {
        headers.insert("ratelimit-limit", HeaderValue::from(self.per_minute.get()));
        headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
        headers.insert("ratelimit-reset", HeaderValue::from(ceil_secs(reset)));
    }
}

/// Whole seconds, rounded up: a client told to wait this long never comes back too early.
fn ceil_secs(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000) as u64
}

/// The middleware: counts the reads of verified tokens and refuses those over the limit.
pub async fn limit_reads(State(limit): State<ReadLimit>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &limit.app).await {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    match limit.limiter.check_key(&caller.jti) {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            // governor does not expose the bucket's exact fill time; (N - remaining) periods is
            // at most one period (60/N s) over it, so the quota is surely whole by then.
            let reset = limit.replenish * (limit.per_minute.get() - remaining);
            let mut response = next.run(Request::from_parts(parts, body)).await;
            limit.headers(response.headers_mut(), remaining, reset);
            response
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(limit.limiter.clock().now());
            // Refused means the bucket is empty: after `wait` one request is back, and the
            // N - 1 others one period apart.
            let reset = wait + limit.replenish * (limit.per_minute.get() - 1);
            let retry_after = ceil_secs(wait).max(1);
            limit.app.monitoring.rate_limited();
            let mut response = ApiError::TooManyRequests {
                message: format!(
                    "rate limit of {} requests per minute for this token exceeded; retry in {retry_after} s",
                    limit.per_minute
                ),
                retry_after,
            }
            .into_response();
            limit.headers(response.headers_mut(), 0, reset);
            response
        }
    }
}

/// Adds what the limit means for clients to the `GET` operations of `doc` (the routes the
/// layer wraps): the 429 response, and the `RateLimit-*` headers on it and on success.
pub fn document(doc: &mut OpenApi) {
    let integer = |description: &str| {
        HeaderBuilder::new()
            .schema(Object::with_type(Type::Integer))
            .description(Some(description))
            .build()
    };
    let limit_headers = [
        (
            "RateLimit-Limit",
            integer("Requests per minute this token may make (`--rate-limit-per-minute`)."),
        ),
        (
            "RateLimit-Remaining",
            integer("Requests this token may make right now."),
        ),
        (
            "RateLimit-Reset",
            integer("Whole seconds until the token's quota is whole again."),
        ),
    ];
    let too_many = ResponseBuilder::new()
        .description("Too many requests from this token; retry after `Retry-After` seconds")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorDto")))
                .build(),
        )
        .header(
            "Retry-After",
            integer("Whole seconds until a request will be accepted again."),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        let Some(op) = item.get.as_mut() else {
            continue;
        };
        let responses = &mut op.responses.responses;
        responses.insert("429".to_owned(), RefOr::T(too_many.clone()));
        // Documented where a client looks for them: on success and on the 429 (errors of a
        // counted request carry them too; a 401 is not counted and carries none).
        for (status, response) in responses.iter_mut() {
            if let (true, RefOr::T(response)) =
                (status.starts_with('2') || status == "429", response)
            {
                for (name, header) in &limit_headers {
                    response.headers.insert((*name).to_owned(), header.clone());
                }
            }
        }
    }
}
