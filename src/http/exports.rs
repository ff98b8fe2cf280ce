//! Streaming exports: `GET /v1/exports/{handoffs,calls,events}?format=csv|ndjson`.
//!
//! Policy: every row of the list the filters select, as RFC 4180 CSV (header row; written by
//! the `csv` crate rather than by hand, so quoting is right for any text) or NDJSON, streamed
//! from a server-side cursor (`store::exports`) in constant memory; gzip when the client sends
//! `Accept-Encoding: gzip` (the compression layer of the router, which compresses streamed
//! bodies chunk by chunk). Errors found before the first byte (bad filters, another tenant, the
//! database down) are ordinary error answers; a failure once rows are flowing aborts the
//! response, so a client never mistakes a truncated export for a complete one. The events
//! export, as NDJSON, is exactly what `POST /v1/events` accepts, in arrival order: posted into
//! an empty organization it reproduces every figure (backups, migrations between servers).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorDto, FieldError, Result};
use super::extract::Query;
use super::openapi;
use crate::auth::OrgId;
use crate::auth::extract::{Caller, ReadAccess};
use crate::domain::events::Reason;
use crate::domain::timerange::{Bound, parse_bound, parse_timezone};
use crate::store;
use crate::store::exports::{Export, Format};
use crate::store::handoffs::{ListFilter, Status};

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "exports";

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_handoffs))
        .routes(routes!(export_calls))
        .routes(routes!(export_events))
}

/// `format` values.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FormatParam {
    /// RFC 4180 CSV with a header row (`text/csv`).
    Csv,
    /// One JSON object per line (`application/x-ndjson`).
    Ndjson,
}

/// Query of `GET /v1/exports/handoffs`: the filters of `GET /v1/handoffs`. Unknown parameters
/// are refused.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportHandoffsQuery {
    /// `csv` or `ndjson` (default `csv`).
    #[param(value_type = Option<FormatParam>, inline)]
    pub format: Option<String>,
    /// The organization to export: required with a reseller token (one of its organizations).
    #[param(value_type = Option<openapi::UuidParam>, inline)]
    pub organization_id: Option<String>,
    /// Only handoffs in this state (`handoff_initiated`, `handoff_completed`, `handoff_failed`,
    /// `handoff_abandoned` or a custom state).
    #[param(pattern = r"^[a-z0-9_]{1,64}$")]
    pub state: Option<String>,
    /// Only handoffs with this status: `open`, `completed`, `failed` or `abandoned`.
    #[param(value_type = Option<openapi::StatusParam>, inline)]
    pub status: Option<String>,
    /// Only handoffs carrying this reason.
    #[param(value_type = Option<openapi::ReasonParam>, inline)]
    pub reason: Option<String>,
    /// Only handoffs of this session.
    #[param(pattern = r"\S")]
    pub session_id: Option<String>,
    /// Only handoffs first initiated at or after this ISO 8601 instant or date.
    #[param(value_type = Option<openapi::DateBound>, inline)]
    pub start_date: Option<String>,
    /// Only handoffs first initiated before this instant, or up to the end of this date.
    #[param(value_type = Option<openapi::DateBound>, inline)]
    pub end_date: Option<String>,
    /// IANA zone of dates without an offset; default: the organization's.
    #[param(value_type = Option<openapi::TimeZone>, inline)]
    pub timezone: Option<String>,
}

/// Query of `GET /v1/exports/calls`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportCallsQuery {
    /// `csv` or `ndjson` (default `csv`).
    #[param(value_type = Option<FormatParam>, inline)]
    pub format: Option<String>,
    /// The organization to export: required with a reseller token.
    #[param(value_type = Option<openapi::UuidParam>, inline)]
    pub organization_id: Option<String>,
    /// Only calls of this agent.
    #[param(pattern = r"\S")]
    pub agent_id: Option<String>,
    /// Only calls started at or after this ISO 8601 instant or date.
    #[param(value_type = Option<openapi::DateBound>, inline)]
    pub start_date: Option<String>,
    /// Only calls started before this instant, or up to the end of this date.
    #[param(value_type = Option<openapi::DateBound>, inline)]
    pub end_date: Option<String>,
    /// IANA zone of dates without an offset; default: the organization's.
    #[param(value_type = Option<openapi::TimeZone>, inline)]
    pub timezone: Option<String>,
}

/// Query of `GET /v1/exports/events`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportEventsQuery {
    /// `ndjson` (default: each line an event exactly as `POST /v1/events` accepts it) or `csv`
    /// (`id`, `type`, `occurred_at` and the event's JSON).
    #[param(value_type = Option<FormatParam>, inline)]
    pub format: Option<String>,
    /// The organization to export: required with a reseller token.
    #[param(value_type = Option<openapi::UuidParam>, inline)]
    pub organization_id: Option<String>,
    /// Only events that occurred at or after this ISO 8601 instant or date. (A part of the
    /// history may not replay on its own: a completion without its initiation is refused.)
    #[param(value_type = Option<openapi::DateBound>, inline)]
    pub start_date: Option<String>,
    /// Only events that occurred before this instant, or up to the end of this date.
    #[param(value_type = Option<openapi::DateBound>, inline)]
    pub end_date: Option<String>,
    /// IANA zone of dates without an offset; default: the organization's.
    #[param(value_type = Option<openapi::TimeZone>, inline)]
    pub timezone: Option<String>,
}

fn param_error(problems: Vec<FieldError>) -> ApiError {
    let message = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::invalid(message, problems)
}

fn format_of(text: Option<&str>, default: Format, problems: &mut Vec<FieldError>) -> Format {
    match text.map(str::trim) {
        None => default,
        Some("csv") => Format::Csv,
        Some("ndjson") => Format::Ndjson,
        Some(other) => {
            problems.push(FieldError::new(
                "format",
                format!("`{other}` is not a format: use csv or ndjson"),
            ));
            default
        }
    }
}

/// The organization, then the range bounds read in `timezone` (or the organization's zone).
async fn org_and_bounds(
    pool: &PgPool,
    caller: &Caller,
    organization_id: &Option<String>,
    timezone: &Option<String>,
    start: &Option<String>,
    end: &Option<String>,
) -> Result<(OrgId, Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
    let requested = match organization_id.as_deref() {
        None => None,
        Some(text) => Some(Uuid::parse_str(text.trim()).map_err(|_| {
            param_error(vec![FieldError::new(
                "organization_id",
                format!("`{text}` is not an organization id (a UUID)"),
            )])
        })?),
    };
    let tz = match timezone.as_deref() {
        Some(name) => Some(
            parse_timezone("timezone", name.trim())
                .map_err(|e| param_error(vec![FieldError::new(e.param, e.message)]))?,
        ),
        None => None,
    };
    let org = caller
        .org_for_read(pool, requested, "organization_id")
        .await?;
    if start.is_none() && end.is_none() {
        return Ok((org, None, None));
    }
    let tz = match tz {
        Some(tz) => tz,
        None => store::tenants::org_by_id(pool, org.get())
            .await?
            .and_then(|o| o.timezone.parse::<Tz>().ok())
            .unwrap_or(Tz::UTC),
    };
    let mut problems = Vec::new();
    let mut parse = |param: &str, text: &Option<String>, bound| {
        text.as_deref()
            .and_then(|t| match parse_bound(param, t, tz, bound) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push(FieldError::new(e.param, e.message));
                    None
                }
            })
    };
    let (s, e) = (
        parse("start_date", start, Bound::Start),
        parse("end_date", end, Bound::End),
    );
    if let (Some(s), Some(e)) = (s, e)
        && s > e
    {
        problems.push(FieldError::new(
            "start_date",
            format!(
                "must not be after end_date ({} > {})",
                s.to_rfc3339(),
                e.to_rfc3339()
            ),
        ));
    }
    if !problems.is_empty() {
        return Err(param_error(problems));
    }
    Ok((org, s, e))
}

/// The streamed answer of an opened export.
fn stream(export: Export, format: Format, name: &str) -> Response {
    let body = futures_util::stream::unfold(Some(export), |state| async move {
        let mut export = state?;
        match export.next_chunk().await {
            Ok(Some(bytes)) => Some((Ok(Bytes::from(bytes)), Some(export))),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "export ended early");
                Some((Err(std::io::Error::other(e.to_string())), None))
            }
        }
    });
    let (content_type, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
    };
    let disposition = format!("attachment; filename=\"{name}.{ext}\"");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        // Fused: a body may be polled again after its end (some layers do).
        Body::from_stream(futures_util::StreamExt::fuse(body)),
    )
        .into_response()
}

/// Export handoffs.
///
/// One row per handoff selected by the filters of `GET /v1/handoffs` (newest first): its
/// session's channel and agent, reasons (`;`-separated in CSV), sentiment, state, status,
/// attempts, first initiation and completion times, wait in seconds (first initiation to
/// completion), destination, operator, whether it came outside working hours, summary and
/// explanation. Streamed; gzip with `Accept-Encoding: gzip`. A failure after the first byte
/// aborts the response (the body ends without its final chunk). Scope `read_all`.
#[utoipa::path(get, path = "/v1/exports/handoffs", tag = TAG, operation_id = "exportHandoffs",
    params(ExportHandoffsQuery),
    responses(
        (status = 200, description = "The handoffs, streamed", content(
            (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 400, description = "A bad or unknown parameter, or no `organization_id` with a reseller token", body = ErrorDto),
        (status = 404, description = "`organization_id` is not an organization this token may read", body = ErrorDto),
    )
)]
pub async fn export_handoffs(
    State(pool): State<PgPool>,
    State(health): State<std::sync::Arc<crate::db::DbHealth>>,
    ReadAccess(caller): ReadAccess,
    Query(q): Query<ExportHandoffsQuery>,
) -> Result<Response> {
    let mut problems = Vec::new();
    let format = format_of(q.format.as_deref(), Format::Csv, &mut problems);
    let state = q.state.as_deref().map(str::trim);
    if let Some(s) = state
        && !((1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    {
        problems.push(FieldError::new(
            "state",
            format!("`{s}` is not a state ([a-z0-9_]{{1,64}})"),
        ));
    }
    let status = match q.status.as_deref().map(str::trim) {
        None => None,
        Some("open") => Some(Status::Open),
        Some("completed") => Some(Status::Completed),
        Some("failed") => Some(Status::Failed),
        Some("abandoned") => Some(Status::Abandoned),
        Some(other) => {
            problems.push(FieldError::new(
                "status",
                format!("`{other}` is not a status: use open, completed, failed or abandoned"),
            ));
            None
        }
    };
    let reason = q.reason.as_deref().map(str::trim);
    if let Some(r) = reason
        && Reason::parse(r).is_none()
    {
        problems.push(FieldError::new("reason", format!("`{r}` is not a reason")));
    }
    if q.session_id.as_deref().is_some_and(|s| s.trim().is_empty()) {
        problems.push(FieldError::new("session_id", "must not be empty"));
    }
    if !problems.is_empty() {
        return Err(param_error(problems));
    }
    let (org, start, end) = org_and_bounds(
        &pool,
        &caller,
        &q.organization_id,
        &q.timezone,
        &q.start_date,
        &q.end_date,
    )
    .await?;
    let filter = ListFilter {
        state: state.map(str::to_owned),
        status,
        reason: reason.map(str::to_owned),
        session_id: q.session_id.clone(),
        start,
        end,
        after: None,
    };
    let export = Export::open(
        &pool,
        health,
        org,
        store::exports::Query::Handoffs(&filter),
        format,
    )
    .await?;
    Ok(stream(export, format, "handoffs"))
}

/// Export calls.
///
/// One row per call (newest first) with every figure `call.completed` recorded. Streamed; gzip
/// with `Accept-Encoding: gzip`. Scope `read_all`.
#[utoipa::path(get, path = "/v1/exports/calls", tag = TAG, operation_id = "exportCalls",
    params(ExportCallsQuery),
    responses(
        (status = 200, description = "The calls, streamed", content(
            (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 400, description = "A bad or unknown parameter, or no `organization_id` with a reseller token", body = ErrorDto),
        (status = 404, description = "`organization_id` is not an organization this token may read", body = ErrorDto),
    )
)]
pub async fn export_calls(
    State(pool): State<PgPool>,
    State(health): State<std::sync::Arc<crate::db::DbHealth>>,
    ReadAccess(caller): ReadAccess,
    Query(q): Query<ExportCallsQuery>,
) -> Result<Response> {
    let mut problems = Vec::new();
    let format = format_of(q.format.as_deref(), Format::Csv, &mut problems);
    if q.agent_id.as_deref().is_some_and(|s| s.trim().is_empty()) {
        problems.push(FieldError::new("agent_id", "must not be empty"));
    }
    if !problems.is_empty() {
        return Err(param_error(problems));
    }
    let (org, start, end) = org_and_bounds(
        &pool,
        &caller,
        &q.organization_id,
        &q.timezone,
        &q.start_date,
        &q.end_date,
    )
    .await?;
    let query = store::exports::Query::Calls {
        start,
        end,
        agent_id: q.agent_id.as_deref(),
    };
    let export = Export::open(&pool, health, org, query, format).await?;
    Ok(stream(export, format, "calls"))
}

/// Export events.
///
/// The organization's raw events in arrival order. As NDJSON (the default) each line is an
/// event exactly as `POST /v1/events` accepts it (`Content-Type: application/x-ndjson`), so the
/// file posted into an empty organization, in batches of at most 10,000 lines, reproduces every
/// figure. As CSV: `id`, `type`, `occurred_at` and the event's JSON. Streamed; gzip with
/// `Accept-Encoding: gzip`. Scope `read_all`.
#[utoipa::path(get, path = "/v1/exports/events", tag = TAG, operation_id = "exportEvents",
    params(ExportEventsQuery),
    responses(
        (status = 200, description = "The events, streamed", content(
            (String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 400, description = "A bad or unknown parameter, or no `organization_id` with a reseller token", body = ErrorDto),
        (status = 404, description = "`organization_id` is not an organization this token may read", body = ErrorDto),
    )
)]
pub async fn export_events(
    State(pool): State<PgPool>,
    State(health): State<std::sync::Arc<crate::db::DbHealth>>,
    ReadAccess(caller): ReadAccess,
    Query(q): Query<ExportEventsQuery>,
) -> Result<Response> {
    let mut problems = Vec::new();
    let format = format_of(q.format.as_deref(), Format::Ndjson, &mut problems);
    if !problems.is_empty() {
        return Err(param_error(problems));
    }
    let (org, start, end) = org_and_bounds(
        &pool,
        &caller,
        &q.organization_id,
        &q.timezone,
        &q.start_date,
        &q.end_date,
    )
    .await?;
    let export = Export::open(
        &pool,
        health,
        org,
        store::exports::Query::Events { start, end },
        format,
    )
    .await?;
    Ok(stream(export, format, "events"))
}
