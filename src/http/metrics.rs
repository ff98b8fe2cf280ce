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
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::{ErrorDto, Result};
use super::extract::Json;
use super::openapi;
use super::{AppState, ReadMetricsPool};
use crate::auth::scope::{Orgs, ScopeParams, ScopeQuery, ScopeSpec, Scoped};
use crate::domain::buckets::cover;
use crate::domain::metrics::report::report;
pub use crate::domain::metrics::report::{
    AgentPerformance, AiInsights, DailyVolume, EscalationReason, HourlyBucket, Metrics,
    MetricsSummary, ResolutionBreakdown,
};
use crate::domain::timerange::TimeRange;
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
    /// covers one organization (UTC if its stored zone is not a known IANA name); UTC when it
    /// covers a reseller's organizations.
    #[param(value_type = Option<openapi::TimeZone>, inline)]
    pub timezone: Option<String>,
}

impl ScopeQuery for MetricsQuery {
    type Orgs = Orgs;
    type Range = TimeRange;
    const SPEC: ScopeSpec = ScopeSpec {
        range_required: true,
        ..ScopeSpec::CAMEL
    };
    fn scope_params(&self) -> ScopeParams<'_> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        ScopeParams {
            organization: given(&self.organization_id),
            reseller: given(&self.reseller_id),
            timezone: self.timezone.as_deref(),
            start: given(&self.start_date),
            end: given(&self.end_date),
        }
    }
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
    State(cache): State<Arc<AgentCache>>,
    State(ReadMetricsPool(reads)): State<ReadMetricsPool>,
    scoped: Scoped<MetricsQuery>,
) -> Result<Json<MetricsResponse>> {
    let Scoped { orgs, range, .. } = scoped;
    let (orgs, whole_reseller) = match orgs {
        Orgs::One(org) => (vec![org], None),
        Orgs::Reseller { reseller, orgs } => (orgs, Some(reseller.get())),
    };
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
