//! Telzino's call metrics: `GET /v1/metrics`, wrapped as `{"data": {…}}`, camelCase.
//!
//! Policy: calls are counted by `started_at` in `[startDate, endDate)`. The handler parses the
//! request, resolves whose figures and which zone, reads the range's cover
//! ([`crate::store::metrics::read`]) and serializes the report assembled in
//! [`crate::domain::metrics::report`] (merging, local days and hours, sorting, ratios with one
//! decimal). Day and hour buckets are local to `timezone` (default: the organization's zone
//! when the request covers one organization, UTC when it covers several). Unknown query
//! parameters are refused (a 400 naming the parameter), as on every endpoint: a misspelt
//! `startdate` would otherwise silently read another range.

use std::sync::Arc;

use axum::extract::State;
use chrono::Utc;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ErrorDto, Result};
use super::extract::{Json, Query};
use super::openapi;
use super::{AppState, MetricsPool};
use crate::auth::OrgId;
use crate::auth::extract::{Caller, Principal, ReadAccess};
use crate::domain::buckets::cover;
use crate::domain::metrics::report::report;
pub use crate::domain::metrics::report::{
    AgentPerformance, AiInsights, DailyVolume, EscalationReason, HourlyBucket, Metrics,
    MetricsSummary, ResolutionBreakdown,
};
use crate::domain::timerange::{BoundNames, TimeRange, parse_timezone};
use crate::store;
use crate::store::agent_cache::AgentCache;
use crate::store::metrics::Source;

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "call metrics";

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_metrics))
}

/// Query of `GET /v1/metrics`. Unknown parameters are a 400 naming them.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// Start of the range, inclusive, ISO 8601 (`2025-01-01T00:00:00.000Z`). A date-time
    /// without an offset is read in `timezone`; a date alone is the first instant of that local
    /// day. Required.
    #[param(required = true, value_type = Option<openapi::DateBound>, inline)]
    pub start_date: Option<String>,
    /// End of the range, exclusive, ISO 8601 (`2025-12-31T23:59:59.000Z`). A date alone means
    /// the end of that local day (the range includes it). At most 366 days after `startDate`.
    /// Required.
    #[param(required = true, value_type = Option<openapi::DateBound>, inline)]
    pub end_date: Option<String>,
    /// One organization (UUID). With an organization token it must be the token's own (another
    /// is a 404); with a reseller token, one of the reseller's organizations (others are 404).
    /// Omitted (or empty): every organization the token may read.
    #[param(value_type = Option<openapi::UuidOrEmpty>, inline)]
    pub organization_id: Option<String>,
    /// A reseller (UUID): the figures aggregated across its organizations. A reseller token may
    /// name only itself (another is a 404). An organization token may name only its own
    /// reseller, and still sees only its own organization. Empty is the same as absent.
    #[param(value_type = Option<openapi::UuidOrEmpty>, inline)]
    pub reseller_id: Option<String>,
    /// Baton's extension: the IANA zone of `dailyVolume` days and `hourlyDistribution` hours,
    /// and of bounds given without an offset. Default: the organization's zone when the request
    /// covers one organization; UTC when it covers a reseller's organizations.
    #[param(value_type = Option<openapi::TimeZone>, inline)]
    pub timezone: Option<String>,
}

/// The response: Telzino wraps the metrics in `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricsResponse {
    /// The metrics.
    pub data: Metrics,
}

/// Call metrics
///
/// Call volume, resolution, local-day and local-hour distributions, per-agent performance, AI
/// insights and escalation reasons over `[startDate, endDate)`, for one organization or
/// aggregated across a reseller's organizations. Calls are counted by `started_at` in
/// `[startDate, endDate)`. Answered from rollups kept at ingest (15-minute, hourly and daily UTC
/// buckets) plus the raw calls of the parts of the range off the 15-minute grid, so any bounds
/// and any zone (half- and quarter-hour offsets, DST days) are exact. Where Telzino's page and
/// Baton's definitions differ, the field descriptions say which applies. Unknown query
/// parameters are a 400 naming the parameter.
#[utoipa::path(
    get,
    path = "/v1/metrics",
    tag = TAG,
    params(MetricsQuery),
    responses(
        (status = 200, description = "The metrics", body = MetricsResponse),
        (status = 400, description = "A parameter is missing, malformed, out of range (years 0001–9999) or unknown (the message names it)", body = ErrorDto),
        (status = 401, description = "Missing or invalid token", body = ErrorDto),
        (status = 403, description = "The token lacks `read_all`", body = ErrorDto),
        (status = 404, description = "The organization or reseller is not one the token may read", body = ErrorDto),
    )
)]
pub async fn get_metrics(
    State(pool): State<PgPool>,
    State(cache): State<Arc<AgentCache>>,
    State(MetricsPool(reads)): State<MetricsPool>,
    ReadAccess(caller): ReadAccess,
    Query(q): Query<MetricsQuery>,
) -> Result<Json<MetricsResponse>> {
    let start = required(&q.start_date, "startDate")?;
    let end = required(&q.end_date, "endDate")?;
    let organization_id = uuid_param(&q.organization_id, "organizationId")?;
    let reseller_id = uuid_param(&q.reseller_id, "resellerId")?;
    let zone = match q.timezone.as_deref() {
        Some(name) => Some(parse_timezone("timezone", name).map_err(bad_param)?),
        None => None,
    };
    let (orgs, single, whole_reseller) =
        scope(&pool, &caller, organization_id, reseller_id).await?;
    let tz = match (zone, single) {
        (Some(tz), _) => tz,
        (None, Some(org)) => store::tenants::org_by_id(&pool, org.get())
            .await?
            .and_then(|o| o.timezone.parse::<Tz>().ok())
            .unwrap_or(Tz::UTC),
        (None, None) => Tz::UTC,
    };
    let range = TimeRange::resolve(
        Some(start),
        Some(end),
        tz,
        Utc::now(),
        30,
        BoundNames {
            start: "startDate",
            end: "endDate",
        },
    )
    .map_err(bad_param)?;
    let source = match whole_reseller {
        Some(reseller) => Source::Reseller {
            reseller,
            orgs: &orgs,
            cache: &cache,
        },
        None => Source::Orgs { orgs: &orgs },
    };
    let cover = cover(range.start, range.end, source.grains());
    let data = store::metrics::read(&reads, source, &range, &cover).await?;
    Ok(Json(MetricsResponse {
        data: report(&range, &cover, &data),
    }))
}

fn required<'a>(value: &'a Option<String>, param: &str) -> Result<&'a str> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::bad_request(format!(
            "{param}: required, an ISO 8601 date-time or date (e.g. 2025-01-01T00:00:00.000Z)"
        ))),
    }
}

fn uuid_param(value: &Option<String>, param: &str) -> Result<Option<Uuid>> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => Uuid::parse_str(v)
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{param}: `{v}` is not a UUID"))),
    }
}

fn bad_param(e: crate::domain::timerange::ParamError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

fn reseller_not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("reseller {id} not found"))
}

/// The organizations a request covers; the one organization when it covers exactly one by
/// nature (an organization token, or `organizationId`); the reseller when it covers all of a
/// reseller's organizations (a reseller token without `organizationId`).
async fn scope(
    pool: &PgPool,
    caller: &Caller,
    organization_id: Option<Uuid>,
    reseller_id: Option<Uuid>,
) -> Result<(Vec<OrgId>, Option<OrgId>, Option<Uuid>)> {
    match caller.principal {
        Principal::Org(own) => {
            if let Some(r) = reseller_id {
                let org = store::tenants::org_by_id(pool, own.get()).await?;
                if org.and_then(|o| o.reseller_id) != Some(r) {
                    return Err(reseller_not_found(r));
                }
            }
            let org = caller
                .org_for_read(pool, organization_id, "organizationId")
                .await?;
            Ok((vec![org], Some(org), None))
        }
        Principal::Reseller(own) => {
            if let Some(r) = reseller_id
                && r != own.get()
            {
                return Err(reseller_not_found(r));
            }
            match organization_id {
                Some(id) => {
                    let org = caller
                        .org_for_read(pool, Some(id), "organizationId")
                        .await?;
                    Ok((vec![org], Some(org), None))
                }
                None => Ok((caller.orgs_for_read(pool).await?, None, Some(own.get()))),
            }
        }
    }
}
