//! `POST /v1/events`: how AI platforms push what happened. The event types and their rules are
//! in `domain::events`; how a batch is stored in `store::events` (and docs/ARCHITECTURE.md).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::error::{ApiError, ErrorDto, FieldError, Result};
use super::extract::{Json, NoQuery};
use crate::admission::Refused;
use crate::auth::extract::WriteAccess;
use crate::domain::events::{Event, MAX_BODY_BYTES, MAX_EVENTS, validate};
use crate::store::events::{IngestError, NewEvent, ingest};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_events))
}

/// A batch of events, as `application/json`. (As `application/x-ndjson`, send one event object
/// per line instead.)
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"events": [
    {"id": "evt-1", "type": "session.started", "occurred_at": "2026-11-21T09:00:00Z", "session_id": "s-1", "channel": "web", "agent_id": "support-bot"},
    {"id": "evt-2", "type": "handoff.initiated", "occurred_at": "2026-11-21T09:03:10Z", "handoff_id": "h-1", "session_id": "s-1", "shared_id": "acme-123", "reasons": ["user_requested_human_assistance"], "sentiment": "frustrated", "references": [{"type": "instruction", "id": "refund-policy"}], "destination": "billing_queue", "summary": "Customer wants a refund for order 991.", "data": {"customer_id": "12345"}},
    {"id": "evt-3", "type": "handoff.completed", "occurred_at": "2026-11-21T09:04:00Z", "handoff_id": "h-1", "operator_id": "op-7"}
]}))]
#[serde(deny_unknown_fields)]
pub struct EventsRequest {
    /// Up to 10,000 events, applied in order: each an `Event` (one schema per event type,
    /// chosen by `type`). The whole batch is checked before anything is stored.
    #[schema(value_type = Vec<Event>, max_items = 10000)]
    pub events: Vec<Value>,
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub struct IngestResponse {
    /// Events stored by this request.
    pub accepted: u64,
    /// Events already stored with the same body (or repeated in the batch): ignored, so a
    /// client may retry a batch safely.
    pub duplicates: u64,
}

/// Stores a batch of events, atomically and exactly once.
///
/// The whole batch is stored or none of it: any invalid event gets a 400 listing every problem
/// of every event (`details[].field` is the JSON path, `events[3].reasons[0]`). An event whose
/// `id` is already stored with the same body is a duplicate and has no effect; the same `id`
/// with another body is a 409. Events apply in order to sessions, handoffs, agents and calls;
/// an event the current state forbids (completing a handoff never initiated, a second
/// completion, …) is a 409 naming the event. At most 10,000 events and 10 MiB (413 beyond).
///
/// As `application/x-ndjson`, the body is one `Event` object per line (`\n`-separated; blank
/// lines are ignored). OpenAPI cannot describe a sequence of lines, so that content is declared
/// with the schema of one line.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content(
        (EventsRequest = "application/json"),
        (Event = "application/x-ndjson"),
    )),
    responses(
        (status = 200, description = "Stored (or already stored)", body = IngestResponse),
        (status = 400, description = "Malformed body or invalid events (each problem in `details` with its path: a NUL character anywhere, a timestamp outside years 0001–9999 in UTC, …), or a query parameter (this endpoint takes none); nothing stored", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks write_all, or is a reseller token", body = ErrorDto),
        (status = 409, description = "An id reused with another body, or a forbidden transition; nothing stored", body = ErrorDto),
        (status = 413, description = "More than 10,000 events or 10 MiB", body = ErrorDto),
        (status = 415, description = "Neither application/json nor application/x-ndjson", body = ErrorDto),
        (status = 429, description = "Too many batches of this organization are already waiting on this server; nothing stored, retry after `Retry-After` seconds", body = ErrorDto),
        (status = 503, description = "The database is unavailable, or the batch waited too long for its turn; nothing stored, retry after `Retry-After` seconds", body = ErrorDto),
    ))]
pub async fn post_events(
    State(state): State<AppState>,
    access: WriteAccess,
    _: NoQuery,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<IngestResponse>> {
    let watch = state.monitoring.watch_batch();
    let result = store_batch(&state, access, &headers, body).await;
    watch.finish(&result);
    result
}

/// The handler's work; [`post_events`] counts its outcome.
async fn store_batch(
    state: &AppState,
    access: WriteAccess,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<IngestResponse>> {
    let format = body_format(headers)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        _ => ApiError::bad_request(format!("cannot read the request body: {}", e.body_text())),
    })?;
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    let values = match format {
        Format::Json => parse_json(&body)?,
        Format::Ndjson => parse_ndjson(&body)?,
    };
    if values.len() > MAX_EVENTS {
        return Err(ApiError::PayloadTooLarge(format!(
            "at most {MAX_EVENTS} events per request (got {}); split the batch",
            values.len()
        )));
    }
    let mut problems = Vec::new();
    let mut batch = Vec::with_capacity(values.len());
    let mut bad = 0;
    for (i, value) in values.into_iter().enumerate() {
        let before = problems.len();
        if let Some(event) = validate(&value, &format!("events[{i}]"), &mut problems) {
            batch.push(NewEvent { event, body: value });
        }
        if problems.len() > before {
            bad += 1;
        }
    }
    if !problems.is_empty() {
        let details = problems
            .into_iter()
            .map(|p| FieldError::new(p.field, p.message))
            .collect();
        return Err(ApiError::invalid(
            format!(
                "{bad} of {} events are invalid; nothing was stored",
                batch.len() + bad
            ),
            details,
        ));
    }
    // Wait for this organization's turn holding no database connection (see `admission`).
    let _turn = state
        .ingest_admission
        .turn(access.org.get())
        .await
        .map_err(|refused| match refused {
            Refused::QueueFull(_) => ApiError::TooManyRequests {
                message: format!("{refused}; nothing was stored"),
                retry_after: 1,
            },
            Refused::Waited(_) => ApiError::Unavailable(format!("{refused}; nothing was stored")),
        })?;
    match ingest(&state.pool, access.org, &batch).await {
        Ok(done) => {
            state.stats.stored(done.accepted);
            state.monitoring.ingested(
                batch.iter().map(|e| e.event.type_name()),
                done.duplicates as u64,
            );
            Ok(Json(IngestResponse {
                accepted: done.accepted as u64,
                duplicates: done.duplicates as u64,
            }))
        }
        Err(IngestError::Database(e)) => Err(e.into()),
        Err(e) => Err(ApiError::Conflict(format!("{e}; nothing was stored"))),
    }
}

enum Format {
    Json,
    Ndjson,
}

fn body_format(headers: &HeaderMap) -> Result<Format> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Format::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines" => Ok(Format::Ndjson),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json or application/x-ndjson (got `{content_type}`)"
        ))),
    }
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "request body exceeds {} MiB; split the batch",
        MAX_BODY_BYTES / (1024 * 1024)
    ))
}

fn parse_json(body: &[u8]) -> Result<Vec<Value>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object {\"events\": [...]}",
        ));
    };
    let unknown: Vec<FieldError> = map
        .keys()
        .filter(|k| k.as_str() != "events")
        .map(|k| FieldError::new(k.clone(), "unknown field"))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::invalid(
            "the body may only hold `events`",
            unknown,
        ));
    }
    match map.remove("events") {
        Some(Value::Array(events)) => Ok(events),
        Some(_) => Err(ApiError::invalid(
            "`events` must be an array",
            vec![FieldError::new("events", "must be an array of events")],
        )),
        None => Err(ApiError::invalid(
            "`events` is required",
            vec![FieldError::new("events", "is required")],
        )),
    }
}

fn parse_ndjson(body: &[u8]) -> Result<Vec<Value>> {
    let mut values = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => values.push(v),
            Err(e) => {
                problems.push(FieldError::new(
                    format!("events[{}]", values.len() + problems.len()),
                    format!("line {}: malformed JSON: {e}", n + 1),
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(
            format!("{} lines are not JSON; nothing was stored", problems.len()),
            problems,
        ));
    }
    Ok(values)
}
