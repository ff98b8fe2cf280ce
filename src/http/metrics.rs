//! Telzino's call metrics: `GET /v1/metrics`, wrapped as `{"data": {…}}`, camelCase.
//!
//! Policy: calls are counted by `started_at` in `[startDate, endDate)`. Figures come from the
//! rollups kept at ingest, plus the raw calls of the sub-15-minute edges of the range (see
//! [`crate::store::metrics`]); every ratio and mean is computed here from sums and shown with
//! one decimal. Day and hour buckets are local to `timezone` (default: the organization's
//! zone when the request covers one organization, UTC when it covers several). Unknown query
//! parameters are refused (a 400 naming the parameter), as on every endpoint: a misspelt
//! `startdate` would otherwise silently read another range.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use chrono::{Duration, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ErrorDto, Result};
use super::extract::{Json, Query};
use super::openapi;
use super::{AppState, ReadMetricsPool};
use crate::auth::OrgId;
use crate::auth::extract::{Caller, Principal, ReadAccess};
use crate::domain::metrics::{CallSums, cover, escalation_of, mean, percent, round1, whole_hours};
use crate::domain::timerange::{BoundNames, TimeRange, parse_timezone};
use crate::store;
use crate::store::agent_cache::AgentCache;
use crate::store::metrics::{RangeData, Source};

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

/// Usage metrics over the range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Headline figures.
    pub metrics: MetricsSummary,
    /// One entry per local calendar day that intersects the range, in order, zeros included.
    pub daily_volume: Vec<DailyVolume>,
    /// Exactly 24 entries, `"00:00"` to `"23:00"`, local hours of `timezone`, summed over the
    /// range's days.
    pub hourly_distribution: Vec<HourlyBucket>,
    /// Calls by outcome.
    pub resolution_breakdown: ResolutionBreakdown,
    /// One entry per agent with a call in the range, by `totalCalls` descending (then name,
    /// then id). Across several organizations, an agent id used by two of them gives two
    /// entries.
    pub agent_performance: Vec<AgentPerformance>,
    /// AI quality and operational figures.
    pub ai_insights: AiInsights,
    /// Reasons of transferred calls, by `count` descending (then reason); `[]` when no
    /// transferred call has a reason.
    pub escalation_reasons: Vec<EscalationReason>,
}

/// Headline figures. Ratios and means have one decimal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSummary {
    /// Calls started in the range.
    pub total_calls: i64,
    /// Sum of durations / 60.
    pub total_minutes: f64,
    /// Resolved / total × 100 (0 without calls).
    pub resolution_rate: f64,
    /// Mean duration, seconds (0 without calls).
    pub avg_duration: f64,
    /// Distinct agents with a call in the range.
    pub active_agents: i64,
    /// Mean `telemetry.ttft_ms` over the calls reporting it; null when none does.
    pub response_time: Option<f64>,
    /// Positive / calls with a sentiment × 100; null when no call has a sentiment.
    pub sentiment_percent: Option<f64>,
    /// Transferred / total × 100; null when there are no calls.
    pub escalation_rate: Option<f64>,
}

/// Calls of one local day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailyVolume {
    /// `YYYY-MM-DD`, local to `timezone`.
    pub date: String,
    /// Calls started that day (within the range).
    pub total_calls: i64,
    /// Of which resolved.
    pub resolved_calls: i64,
}

/// Calls of one local hour of the day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HourlyBucket {
    /// `HH:00`.
    pub hour: String,
    /// Calls started during that hour, over every day of the range.
    pub calls: i64,
    /// Their minutes (sum of durations / 60, one decimal).
    pub minutes: f64,
}

/// Calls by outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResolutionBreakdown {
    /// Resolved by the agent.
    pub resolved: i64,
    /// Transferred to a human.
    pub transferred: i64,
    /// Abandoned by the caller.
    pub abandoned: i64,
    /// Other outcomes.
    pub other: i64,
}

/// One agent's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPerformance {
    /// The agent's id (as sent in `call.completed`; Baton does not require UUIDs).
    pub agent_id: String,
    /// Its name (a deleted agent keeps its last name; an agent never declared by
    /// `agent.upserted` is named by its id).
    pub agent_name: String,
    /// Calls.
    pub total_calls: i64,
    /// Resolved calls.
    pub resolved: i64,
    /// Transferred calls.
    pub transferred: i64,
    /// Abandoned calls.
    pub abandoned: i64,
    /// Other outcomes.
    pub other: i64,
    /// Resolved / total × 100.
    pub resolved_percent: f64,
    /// Transferred / total × 100.
    pub transferred_percent: f64,
    /// Abandoned / total × 100.
    pub abandoned_percent: f64,
    /// Other / total × 100.
    pub other_percent: f64,
    /// Mean duration, seconds.
    pub avg_duration: f64,
    /// Positive / calls with a sentiment × 100; null when none has one.
    pub sentiment_percent: Option<f64>,
    /// The agent's current status: `active`, `inactive`, `cancelled`, `pending`, or `deleted`
    /// (after `agent.deleted`). An agent never declared is `active`.
    pub status: String,
}

/// AI quality and operational figures; each null when no call reports what it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AiInsights {
    /// Calls with zero `user_corrections` / calls reporting `user_corrections` × 100.
    pub intent_accuracy: Option<f64>,
    /// Mean of `cached_tokens / total_tokens` × 100, over calls reporting both (with
    /// `total_tokens` > 0).
    pub context_retention: Option<f64>,
    /// Mean `stt_confidence` × 100.
    pub speech_recognition: Option<f64>,
    /// Tool calls without error / tool calls × 100, over calls reporting both `tool_calls` and
    /// `tool_call_errors`; null when they made no tool call.
    pub entity_extraction: Option<f64>,
    /// Same as `metrics.responseTime`.
    pub response_latency: Option<f64>,
    /// Same as `metrics.totalCalls`.
    pub training_sessions: i64,
}

/// One escalation reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EscalationReason {
    /// The `escalation_reason` of transferred calls (a reason on a call with another outcome is
    /// not an escalation and is not counted).
    pub reason: String,
    /// Transferred calls with this reason.
    pub count: i64,
    /// Count / transferred calls × 100.
    pub percent_of_total: f64,
    /// Mean `escalated_after_seconds`, or the call's duration when it is not reported.
    pub avg_time_before_escalation: f64,
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
    State(ReadMetricsPool(reads)): State<ReadMetricsPool>,
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
    let hourly = whole_hours(range.tz, range.start, range.end);
    let source = match whole_reseller {
        Some(reseller) => Source::Reseller {
            reseller,
            hourly,
            orgs: &orgs,
            cache: &cache,
        },
        None => Source::Orgs {
            orgs: &orgs,
            hourly,
        },
    };
    let cover = cover(range.start, range.end, source.grains());
    let (data, infos) = tokio::try_join!(
        store::metrics::read(&reads, source, &cover),
        store::metrics::agent_infos(&reads, &orgs),
    )?;
    let agents = merge_agents(&data);
    Ok(Json(MetricsResponse {
        data: report(&range, &cover, &data, agents, infos),
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

type AgentKey = (Uuid, String);

/// Per-agent sums over the whole range: the rolled-up part plus the raw edges.
fn merge_agents(data: &RangeData) -> Vec<(AgentKey, CallSums)> {
    // Thousands of rows (an agent once per bucket it has calls in) into hundreds of agents: a
    // fast hasher, keys borrowed from the rows.
    let mut by_agent: HashMap<(Uuid, &str), CallSums, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(1024, foldhash::fast::RandomState::default());
    for a in &data.agents {
        by_agent
            .entry((a.org_id, a.agent_id.as_str()))
            .or_default()
            .add(&a.sums);
    }
    for bucket in &data.reseller_agents {
        for a in bucket.iter() {
            a.add_to(by_agent.entry((a.org_id, &a.agent_id)).or_default());
        }
    }
    for (org, call) in &data.edge_calls {
        by_agent
            .entry((*org, call.agent_id.as_str()))
            .or_default()
            .add(&CallSums::of_call(call));
    }
    by_agent
        .into_iter()
        .filter(|(_, s)| s.calls > 0)
        .map(|((org, agent), s)| ((org, agent.to_owned()), s))
        .collect()
}

/// Builds the response from what the store read.
fn report(
    range: &TimeRange,
    cover: &crate::domain::metrics::Cover,
    data: &RangeData,
    agents: Vec<(AgentKey, CallSums)>,
    infos: Vec<store::metrics::AgentInfo>,
) -> Metrics {
    // The headline: the source's own totals plus the raw edges, else the sum of the agents
    // (which include the edges).
    let total = match data.totals {
        Some(mut total) => {
            for (_, call) in &data.edge_calls {
                total.add(&CallSums::of_call(call));
            }
            total
        }
        None => {
            let mut total = CallSums::default();
            for (_, s) in &agents {
                total.add(s);
            }
            total
        }
    };

    // Days and hours: the rolled-up slots inside the range, then the raw edges.
    // The local days are consecutive: a local date's index is its distance from the first.
    let days = range.local_days();
    let first_day = days.first().copied();
    let mut daily = vec![(0i64, 0i64); days.len()];
    let mut hourly = [(0i64, 0f64); 24];
    let mut count = |local: NaiveDateTime, calls: i64, resolved: i64, seconds: f64| {
        let index = first_day.map(|f| (local.date() - f).num_days());
        if let Some(i) = index.and_then(|i| usize::try_from(i).ok())
            && let Some(day) = daily.get_mut(i)
        {
            day.0 += calls;
            day.1 += resolved;
        }
        let h = local.hour() as usize;
        hourly[h].0 += calls;
        hourly[h].1 += seconds;
    };
    if let Some((from, to)) = cover.rolled() {
        for (day, slots) in &data.days {
            let day_start = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
            let Some(day_start) = day_start else { continue };
            // One zone offset for the whole UTC day unless it changes within it.
            let offset_at =
                |t: chrono::DateTime<Utc>| range.tz.offset_from_utc_datetime(&t.naive_utc()).fix();
            let day_offset = offset_at(day_start);
            let steady = offset_at(day_start + Duration::seconds(86_399)) == day_offset;
            // 96 quarter-hour or 24 hour slots.
            let step = 1440 / slots.calls.len().max(1) as i64;
            for (i, &calls) in slots.calls.iter().enumerate() {
                if calls == 0 {
                    continue;
                }
                let t = day_start + Duration::minutes(step * i as i64);
                if t >= from && t < to {
                    let offset = if steady { day_offset } else { offset_at(t) };
                    count(
                        t.naive_utc() + offset,
                        calls,
                        slots.resolved[i],
                        slots.seconds[i],
                    );
                }
            }
        }
    }
    let mut escalations: HashMap<&str, (i64, f64)> = HashMap::new();
    for (reason, calls, seconds) in &data.escalations {
        let e = escalations.entry(reason.as_str()).or_default();
        e.0 += calls;
        e.1 += seconds;
    }
    for (_, call) in &data.edge_calls {
        let resolved = i64::from(call.outcome == crate::domain::events::Outcome::Resolved);
        let local = call.started_at.with_timezone(&range.tz).naive_local();
        count(local, 1, resolved, call.duration_seconds);
        if let Some((reason, seconds)) = escalation_of(call) {
            let e = escalations.entry(reason).or_default();
            e.0 += 1;
            e.1 += seconds;
        }
    }

    let infos: HashMap<(Uuid, &str), &store::metrics::AgentInfo> = infos
        .iter()
        .map(|i| ((i.org_id, i.agent_id.as_str()), i))
        .collect();
    let mut agent_performance: Vec<(Uuid, AgentPerformance)> = agents
        .iter()
        .map(|((org, agent_id), s)| {
            let info = infos.get(&(*org, agent_id.as_str()));
            let pct = |n| percent(n, s.calls).unwrap_or(0.0);
            (
                *org,
                AgentPerformance {
                    agent_id: agent_id.clone(),
                    agent_name: info.map_or_else(|| agent_id.clone(), |i| i.name.clone()),
                    total_calls: s.calls,
                    resolved: s.resolved,
                    transferred: s.transferred,
                    abandoned: s.abandoned,
                    other: s.other,
                    resolved_percent: pct(s.resolved),
                    transferred_percent: pct(s.transferred),
                    abandoned_percent: pct(s.abandoned),
                    other_percent: pct(s.other),
                    avg_duration: s.avg_duration(),
                    sentiment_percent: s.sentiment_percent(),
                    status: match info {
                        Some(i) if i.deleted => "deleted".to_owned(),
                        Some(i) => i.status.clone(),
                        None => "active".to_owned(),
                    },
                },
            )
        })
        .collect();
    agent_performance.sort_by(|(oa, a), (ob, b)| {
        b.total_calls
            .cmp(&a.total_calls)
            .then_with(|| a.agent_name.cmp(&b.agent_name))
            .then_with(|| a.agent_id.cmp(&b.agent_id))
            .then_with(|| oa.cmp(ob))
    });

    let mut escalation_reasons: Vec<EscalationReason> = escalations
        .into_iter()
        .filter(|(_, (calls, _))| *calls > 0)
        .map(|(reason, (calls, seconds))| EscalationReason {
            reason: reason.to_owned(),
            count: calls,
            percent_of_total: percent(calls, total.transferred).unwrap_or(0.0),
            avg_time_before_escalation: mean(seconds, calls).unwrap_or(0.0),
        })
        .collect();
    escalation_reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));

    Metrics {
        metrics: MetricsSummary {
            total_calls: total.calls,
            total_minutes: total.minutes(),
            resolution_rate: total.resolution_rate(),
            avg_duration: total.avg_duration(),
            active_agents: agents.len() as i64,
            response_time: total.response_time(),
            sentiment_percent: total.sentiment_percent(),
            escalation_rate: total.escalation_rate(),
        },
        daily_volume: days
            .iter()
            .zip(&daily)
            .map(|(d, (calls, resolved))| DailyVolume {
                date: d.format("%Y-%m-%d").to_string(),
                total_calls: *calls,
                resolved_calls: *resolved,
            })
            .collect(),
        hourly_distribution: hourly
            .iter()
            .enumerate()
            .map(|(h, (calls, seconds))| HourlyBucket {
                hour: format!("{h:02}:00"),
                calls: *calls,
                minutes: round1(seconds / 60.0),
            })
            .collect(),
        resolution_breakdown: ResolutionBreakdown {
            resolved: total.resolved,
            transferred: total.transferred,
            abandoned: total.abandoned,
            other: total.other,
        },
        agent_performance: agent_performance.into_iter().map(|(_, a)| a).collect(),
        ai_insights: AiInsights {
            intent_accuracy: total.intent_accuracy(),
            context_retention: total.context_retention(),
            speech_recognition: total.speech_recognition(),
            entity_extraction: total.entity_extraction(),
            response_latency: total.response_time(),
            training_sessions: total.calls,
        },
        escalation_reasons,
    }
}
