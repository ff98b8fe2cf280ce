//! `GET /v1/handoff-lifecycle` (Baton's own): what became of the handoffs first initiated in a
//! range, how long customers waited for a person, per local day and per group, optionally with
//! the previous period of the same length. Answered from rollups (`store::lifecycle`).
//!
//! Policy: the range, zone and organization are taken as `/handoff-analytics` takes them, so
//! `totals.initiated` equals its `total_handoffs` for the same query. Definitions are in
//! `domain::lifecycle` and on the fields below. Unknown parameters are refused.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::analytics::non_empty;
use super::error::{ApiError, ErrorDto, Result};
use super::extract::Json;
use super::openapi;
use super::{AppState, ReadPool};
use crate::auth::OrgId;
use crate::auth::scope::{ScopeParams, ScopeQuery, ScopeSpec, Scoped};
use crate::domain::analytics::local_rfc3339;
use crate::domain::input;
use crate::domain::lifecycle::{Dim, Tally};
use crate::domain::timerange::TimeRange;
use crate::store;
use crate::store::lifecycle::Figures;

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "handoff lifecycle";

/// Days covered when `start_date` is absent.
const DEFAULT_DAYS: i64 = 30;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_handoff_lifecycle))
}

/// Query of `GET /v1/handoff-lifecycle`. Unknown parameters are a 400; an empty value is the
/// same as leaving the parameter out.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HandoffLifecycleQuery {
    /// Start of the range (inclusive), as `/handoff-analytics` takes it. Defaults to 30 days
    /// before `end_date`.
    #[param(value_type = Option<openapi::DateBoundOrEmpty>, inline)]
    pub start_date: Option<String>,
    /// End of the range (exclusive; a date alone means the end of that local day). Defaults to
    /// now. Start after end, or a range over 366 days, is a 400.
    #[param(value_type = Option<openapi::DateBoundOrEmpty>, inline)]
    pub end_date: Option<String>,
    /// IANA time zone of local dates and `days`; defaults to the organization's.
    #[param(value_type = Option<openapi::TimeZoneOrEmpty>, inline)]
    pub timezone: Option<String>,
    /// The organization to report on. Required with a reseller token (one of its organizations;
    /// any other is a 404); an organization token may omit it or name itself.
    #[param(value_type = Option<openapi::UuidOrEmpty>, inline)]
    pub organization_id: Option<String>,
    /// Also answer `groups`, one per `reason` (a handoff with two reasons is in two groups),
    /// `channel` (its session's), `destination` (`null`: none given) or `agent` (its session's;
    /// `null`: none).
    #[param(value_type = Option<openapi::GroupByOrEmpty>, inline)]
    pub group_by: Option<String>,
    /// `previous_period`: also answer `previous`, the same figures for the period of the same
    /// length that ends where this one starts.
    #[param(value_type = Option<openapi::CompareOrEmpty>, inline)]
    pub compare: Option<String>,
}

impl ScopeQuery for HandoffLifecycleQuery {
    type Orgs = OrgId;
    type Range = TimeRange;
    const SPEC: ScopeSpec = ScopeSpec {
        default_days: DEFAULT_DAYS,
        ..ScopeSpec::SNAKE
    };
    fn scope_params(&self) -> ScopeParams<'_> {
        ScopeParams {
            organization: non_empty(&self.organization_id),
            reseller: None,
            timezone: non_empty(&self.timezone),
            start: non_empty(&self.start_date),
            end: non_empty(&self.end_date),
        }
    }
}

/// What became of the handoffs first initiated in the range (a cohort): `initiated = completed
/// + failed + abandoned + open`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LifecycleTotals {
    /// Handoffs first initiated in the range (a retry is the same handoff); equal to
    /// `/handoff-analytics` `total_handoffs` for the same range and zone.
    pub initiated: i64,
    /// Of those, completed (a person took it).
    pub completed: i64,
    /// Failed, and not retried since.
    pub failed: i64,
    /// Abandoned by the customer before a person took it.
    pub abandoned: i64,
    /// Still open (initiated, or in a custom state).
    pub open: i64,
    /// Initiated more than once (retried after a failure), whatever their state now.
    pub retried: i64,
    /// First initiated outside working hours: the organization's handoff configuration in
    /// force at that instant (the newest revision written before it; before the first `PUT`,
    /// working hours are off) had `working_hours_active` and no `availability` slot held the
    /// instant in the configuration's `timezone`. A slot holds `[start_time, end_time)`; an
    /// `end_time` of `23:59` runs to midnight. Fixed at the first initiation.
    pub outside_working_hours: i64,
}

/// Rates in percent of `initiated`, two decimals, 0 when nothing was initiated; never above 100.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LifecycleRates {
    /// `completed / initiated`.
    pub acceptance: f64,
    /// `failed / initiated`.
    pub failure: f64,
    /// `abandoned / initiated`.
    pub abandonment: f64,
    /// `retried / initiated`.
    pub retry: f64,
}

/// Waits for a person: from a handoff's first initiation to its completion, for the completed
/// handoffs counted here, in seconds (millisecond precision). Percentiles are nearest-rank,
/// read from histograms whose bins are 1 % wide (exact below 0.1 s), so they lie within 0.5 %
/// of the exact value. Every figure but `count` is `null` when no handoff was completed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WaitSeconds {
    /// Completed handoffs.
    pub count: i64,
    /// Mean wait.
    #[schema(required = true)]
    pub mean: Option<f64>,
    /// Median wait.
    #[schema(required = true)]
    pub p50: Option<f64>,
    /// 90th percentile.
    #[schema(required = true)]
    pub p90: Option<f64>,
    /// 95th percentile.
    #[schema(required = true)]
    pub p95: Option<f64>,
    /// Longest wait (exact).
    #[schema(required = true)]
    pub max: Option<f64>,
}

/// One local day.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LifecycleDay {
    /// The local date, `YYYY-MM-DD`.
    pub date: String,
    /// Handoffs first initiated that day (within the range); they sum to `totals.initiated`.
    pub initiated: i64,
    /// Of those, completed.
    pub completed: i64,
    /// Of those, failed.
    pub failed: i64,
    /// Of those, abandoned.
    pub abandoned: i64,
    /// Median wait of those completed (seconds), `null` when none.
    #[schema(required = true)]
    pub wait_p50: Option<f64>,
}

/// One group (see `group_by`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LifecycleGroup {
    /// The reason, channel, destination or agent id; `null` for handoffs without a destination
    /// or agent.
    #[schema(required = true)]
    pub key: Option<String>,
    /// Its handoffs' outcomes.
    pub totals: LifecycleTotals,
    /// Its rates.
    pub rates: LifecycleRates,
    /// Its waits.
    pub wait_seconds: WaitSeconds,
}

/// The figures of one period.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LifecyclePeriod {
    /// The range's start (inclusive), RFC 3339 in the request's time zone.
    pub start_date: String,
    /// The range's end (exclusive), RFC 3339 in the request's time zone.
    pub end_date: String,
    /// Outcomes.
    pub totals: LifecycleTotals,
    /// Rates.
    pub rates: LifecycleRates,
    /// Waits.
    pub wait_seconds: WaitSeconds,
    /// Every local day that intersects the range, in order, zeros included.
    pub days: Vec<LifecycleDay>,
    /// With `group_by`: one entry per key with handoffs, by `totals.initiated` descending, then
    /// key (null last). Empty without `group_by`.
    pub groups: Vec<LifecycleGroup>,
}

/// The lifecycle report.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HandoffLifecycleResponse {
    /// The range's figures.
    #[serde(flatten)]
    pub period: LifecyclePeriod,
    /// With `compare=previous_period`: the same figures for `[start − (end − start), start)`;
    /// otherwise `null`.
    #[schema(required = true)]
    pub previous: Option<LifecyclePeriod>,
}

fn totals(t: &Tally) -> LifecycleTotals {
    LifecycleTotals {
        initiated: t.initiated,
        completed: t.completed,
        failed: t.failed,
        abandoned: t.abandoned,
        open: t.open,
        retried: t.retried,
        outside_working_hours: t.outside_working_hours,
    }
}

fn rates(t: &Tally) -> LifecycleRates {
    let r = t.rates();
    LifecycleRates {
        acceptance: r.acceptance,
        failure: r.failure,
        abandonment: r.abandonment,
        retry: r.retry,
    }
}

fn waits(t: &Tally) -> WaitSeconds {
    let w = t.wait_summary();
    WaitSeconds {
        count: w.count,
        mean: w.mean,
        p50: w.p50,
        p90: w.p90,
        p95: w.p95,
        max: w.max,
    }
}

fn period(range: &TimeRange, f: Figures, group_by: Option<Dim>) -> LifecyclePeriod {
    let keyed = matches!(group_by, Some(Dim::Destination | Dim::Agent));
    let mut groups: Vec<LifecycleGroup> = f
        .groups
        .iter()
        .map(|(k, t)| LifecycleGroup {
            key: (!(keyed && k.is_empty())).then(|| k.clone()),
            totals: totals(t),
            rates: rates(t),
            wait_seconds: waits(t),
        })
        .collect();
    groups.sort_by(|a, b| {
        b.totals
            .initiated
            .cmp(&a.totals.initiated)
            .then_with(|| match (&a.key, &b.key) {
                (Some(x), Some(y)) => x.cmp(y),
                (a, b) => a.is_none().cmp(&b.is_none()),
            })
    });
    LifecyclePeriod {
        start_date: local_rfc3339(range, range.start),
        end_date: local_rfc3339(range, range.end),
        totals: totals(&f.total),
        rates: rates(&f.total),
        wait_seconds: waits(&f.total),
        days: f
            .days
            .iter()
            .map(|(d, t)| LifecycleDay {
                date: d.format("%Y-%m-%d").to_string(),
                initiated: t.initiated,
                completed: t.completed,
                failed: t.failed,
                abandoned: t.abandoned,
                wait_p50: t.wait_p50(),
            })
            .collect(),
        groups,
    }
}

/// Get the handoff lifecycle.
///
/// What became of the handoffs first initiated in `[start_date, end_date)`: completed, failed,
/// abandoned or still open, retried, outside working hours; rates; how long customers waited for
/// a person (count, mean, percentiles, maximum); per local day; optionally per reason, channel,
/// destination or agent, and for the previous period. Answered from rollups kept current at
/// ingestion. Scope `read_all`.
#[utoipa::path(
    get,
    path = "/v1/handoff-lifecycle",
    tag = TAG,
    operation_id = "getHandoffLifecycle",
    params(HandoffLifecycleQuery),
    responses(
        (status = 200, description = "The report", body = HandoffLifecycleResponse),
        (status = 400, description = "A bad parameter (unparsable date, unknown time zone, start after end, range over 366 days, unknown `group_by` or `compare`, unknown parameter); the message names it", body = ErrorDto),
        (status = 404, description = "`organization_id` is not an organization this token may read", body = ErrorDto),
    )
)]
pub async fn get_handoff_lifecycle(
    State(ReadPool(pool)): State<ReadPool>,
    scoped: Scoped<HandoffLifecycleQuery>,
) -> Result<Json<HandoffLifecycleResponse>> {
    let Scoped {
        orgs: org,
        range,
        query: q,
        ..
    } = scoped;
    let group_by = match non_empty(&q.group_by) {
        None => None,
        Some(g) => Some(Dim::parse_group_by(g).ok_or_else(|| {
            ApiError::bad_request(format!(
                "group_by: `{g}` is not a dimension: use reason, channel, destination or agent"
            ))
        })?),
    };
    let compare = match non_empty(&q.compare) {
        None => false,
        Some("previous_period") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "compare: `{other}` is not a comparison: use previous_period"
            )));
        }
    };
    let mut conn = pool.acquire().await?;
    let figures = store::lifecycle::read(&mut conn, org, &range, group_by).await?;
    let previous = if compare {
        let before = TimeRange {
            start: range.start - (range.end - range.start),
            end: range.start,
            tz: range.tz,
        };
        if input::in_range_in(before.start, &before.tz) {
            let f = store::lifecycle::read(&mut conn, org, &before, group_by).await?;
            Some(period(&before, f, group_by))
        } else {
            None
        }
    } else {
        None
    };
    Ok(Json(HandoffLifecycleResponse {
        period: period(&range, figures, group_by),
        previous,
    }))
}
