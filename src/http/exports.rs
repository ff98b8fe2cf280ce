//! Streaming exports: `GET /v1/exports/{handoffs,calls,events}?format=csv|ndjson`.
//!
//! Policy: every row of the list the filters select, as RFC 4180 CSV (header row; quoted as the
//! `csv` crate quotes, which a property test checks for any text) or NDJSON, streamed
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
use serde::Deserialize;
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::{ErrorDto, FieldError, Result};
use super::handoffs::selection_filters;
use super::openapi;
use super::{AppState, ReadPool};
use crate::auth::OrgId;
use crate::auth::scope::{Bounds, ScopeParams, ScopeQuery, ScopeSpec, Scoped, invalid};
use crate::domain::handoffs::Status;
use crate::store;
use crate::store::exports::{Export, Format};
use crate::store::handoffs::ListFilter;

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "exports";

/// The routes of this module.
///
/// Exports are gzipped at the fastest level (when asked for): at the default level compressing
/// cost more CPU than producing the rows (export benchmark, 1M handoffs: +2.3 s of server CPU
/// for CSV at the default level, +0.55 s at the fastest, for 36 instead of 24 MB). The router's
/// own compression layer leaves an answer that already has a `Content-Encoding` as it is.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_handoffs))
        .routes(routes!(export_calls))
        .routes(routes!(export_events))
        .layer(CompressionLayer::new().quality(CompressionLevel::Fastest))
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

/// The organization, zone and bounds of an export, resolved as `GET /v1/handoffs` resolves
/// them; `problems` are the export's own parameters' problems, reported in the same 400.
macro_rules! export_scope {
    ($query:ty, |$q:ident| $problems:expr) => {
        impl ScopeQuery for $query {
            type Orgs = OrgId;
            type Range = Bounds;
            const SPEC: ScopeSpec = ScopeSpec::SNAKE;
            fn scope_params(&self) -> ScopeParams<'_> {
                ScopeParams {
                    organization: self.organization_id.as_deref().map(str::trim),
                    reseller: None,
                    timezone: self.timezone.as_deref().map(str::trim),
                    start: self.start_date.as_deref(),
                    end: self.end_date.as_deref(),
                }
            }
            fn problems(&self) -> Vec<FieldError> {
                let $q = self;
                $problems
            }
        }
    };
}

export_scope!(ExportHandoffsQuery, |q| q
    .filters()
    .err()
    .unwrap_or_default());
export_scope!(ExportCallsQuery, |q| {
    let mut problems = Vec::new();
    format_of(q.format.as_deref(), Format::Csv, &mut problems);
    if q.agent_id.as_deref().is_some_and(|s| s.trim().is_empty()) {
        problems.push(FieldError::new("agent_id", "must not be empty"));
    }
    problems
});
export_scope!(ExportEventsQuery, |q| {
    let mut problems = Vec::new();
    format_of(q.format.as_deref(), Format::Ndjson, &mut problems);
    problems
});

/// The handoff export's filters, as given.
struct HandoffFilters {
    format: Format,
    state: Option<String>,
    status: Option<Status>,
    reason: Option<String>,
}

impl ExportHandoffsQuery {
    /// The export's own parameters, or every problem with them.
    fn filters(&self) -> std::result::Result<HandoffFilters, Vec<FieldError>> {
        let mut problems = Vec::new();
        let format = format_of(self.format.as_deref(), Format::Csv, &mut problems);
        let (state, status, reason) = selection_filters(
            &self.state,
            &self.status,
            &self.reason,
            &self.session_id,
            &mut problems,
        );
        if problems.is_empty() {
            Ok(HandoffFilters {
                format,
                state,
                status,
                reason,
            })
        } else {
            Err(problems)
        }
    }
}

/// The streamed answer of an opened export. A task produces the chunks (fetch, encode) one
/// ahead of the body: the database fetches the next chunk while the previous one is written to
/// the socket, instead of each waiting for the other. At most two chunks are held (the one in
/// the channel and the one being written), so memory stays bounded; a client that goes away
/// closes the channel, and the task ends, dropping the cursor's transaction.
fn stream(export: Export, format: Format, name: &str) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    tokio::spawn(async move {
        let mut export = export;
        loop {
            let chunk = tokio::select! {
                chunk = export.next_chunk() => chunk,
                () = tx.closed() => return,
            };
            let item = match chunk {
                Ok(Some(bytes)) => Ok(Bytes::from(bytes)),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "export ended early");
                    Err(std::io::Error::other(e.to_string()))
                }
            };
            let last = item.is_err();
            if tx.send(item).await.is_err() || last {
                return;
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
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
    State(ReadPool(pool)): State<ReadPool>,
    State(health): State<std::sync::Arc<crate::db::DbHealth>>,
    scoped: Scoped<ExportHandoffsQuery>,
) -> Result<Response> {
    let Scoped {
        orgs: org,
        range: Bounds { start, end },
        query: q,
        ..
    } = scoped;
    let HandoffFilters {
        format,
        state,
        status,
        reason,
    } = q.filters().map_err(invalid)?;
    let filter = ListFilter {
        state,
        status,
        reason,
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
    State(ReadPool(pool)): State<ReadPool>,
    State(health): State<std::sync::Arc<crate::db::DbHealth>>,
    scoped: Scoped<ExportCallsQuery>,
) -> Result<Response> {
    let Scoped {
        orgs: org,
        range: Bounds { start, end },
        query: q,
        ..
    } = scoped;
    let format = format_of(q.format.as_deref(), Format::Csv, &mut Vec::new());
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
    State(ReadPool(pool)): State<ReadPool>,
    State(health): State<std::sync::Arc<crate::db::DbHealth>>,
    scoped: Scoped<ExportEventsQuery>,
) -> Result<Response> {
    let Scoped {
        orgs: org,
        range: Bounds { start, end },
        query: q,
        ..
    } = scoped;
    let format = format_of(q.format.as_deref(), Format::Ndjson, &mut Vec::new());
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
