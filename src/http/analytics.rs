//! OpenCX's `GET /handoff-analytics`: the handoff report of one organization over a date range,
//! answered from rollups (`store::analytics`) in a number of rows bounded by the range's buckets.
//!
//! Policy: the body is exactly OpenCX's `HandoffAnalyticsPublicResponseDto` (every field, nothing
//! more, arrays empty rather than missing, `sentiment` null when unknown); the definitions the
//! vendor leaves open are written on each field below and in `domain::analytics`. Query strings
//! with unknown parameters are refused (400 naming the parameter) rather than silently ignored,
//! so a typo such as `startDate` cannot quietly return the default range; an empty value counts
//! as absent.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::{ErrorDto, Result};
use super::extract::Json;
use super::openapi;
use super::{AppState, ReadPool};
use crate::auth::OrgId;
use crate::auth::scope::{ScopeParams, ScopeQuery, ScopeSpec, Scoped};
use crate::domain::analytics::{self as domain, Plan};
use crate::domain::events::{Reason, ReferenceType};
use crate::domain::timerange::TimeRange;
use crate::store;

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "handoff analytics";

/// Days covered when `start_date` is absent.
const DEFAULT_DAYS: i64 = 30;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_handoff_analytics))
}

/// Query parameters of `GET /handoff-analytics`. Unknown parameters are a 400; an empty value is
/// the same as leaving the parameter out.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HandoffAnalyticsQuery {
    /// Start of the range (inclusive), ISO 8601: a date-time with an offset
    /// (`2026-11-01T09:30:00Z`), a local date-time read in `timezone` (`2026-11-01T09:30:00`), or
    /// a date (`2026-11-01`: that local day's first instant). Defaults to 30 days before
    /// `end_date`.
    #[param(value_type = Option<openapi::DateBoundOrEmpty>, inline)]
    pub start_date: Option<String>,
    /// End of the range (exclusive), ISO 8601 as `start_date`; a date alone means the end of that
    /// local day, so `start_date=2026-11-01&end_date=2026-11-30` covers November 1 to 30.
    /// Defaults to now. Start after end, or a range over 366 days, is a 400.
    #[param(value_type = Option<openapi::DateBoundOrEmpty>, inline)]
    pub end_date: Option<String>,
    /// Filter to only handoffs referencing this instruction ID (a reference of type
    /// `instruction`): every handoff-derived figure is narrowed to them; `total_sessions` is not.
    pub instruction_id: Option<String>,
    /// Baton extension: the IANA time zone of local dates and `trends` days (`Asia/Kolkata`,
    /// `America/New_York`). Defaults to the organization's time zone (UTC if the stored zone is
    /// not a known IANA name).
    #[param(value_type = Option<openapi::TimeZoneOrEmpty>, inline)]
    pub timezone: Option<String>,
    /// Baton extension: the organization to report on. Required with a reseller token (one of
    /// its organizations; any other is a 404); an organization token may omit it or name itself.
    #[param(value_type = Option<openapi::UuidOrEmpty>, inline)]
    pub organization_id: Option<String>,
}

/// Why an AI handed off (OpenCX's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HandoffReason {
    /// The AI judged that a human should take over.
    AiImpliedHandoff,
    /// The instructions say to hand off here.
    BasedOnInstructions,
    /// The instructions were unclear.
    InstructionsNotClear,
    /// The knowledge base lacked the answer.
    InsufficientKnowledge,
    /// No tool could do what was asked.
    InsufficientTools,
    /// The topic is prohibited for the AI.
    ProhibitedTopic,
    /// The user asked for a human.
    UserRequestedHumanAssistance,
}

impl ScopeQuery for HandoffAnalyticsQuery {
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

impl From<Reason> for HandoffReason {
    fn from(r: Reason) -> HandoffReason {
        match r {
            Reason::AiImpliedHandoff => HandoffReason::AiImpliedHandoff,
            Reason::BasedOnInstructions => HandoffReason::BasedOnInstructions,
            Reason::InstructionsNotClear => HandoffReason::InstructionsNotClear,
            Reason::InsufficientKnowledge => HandoffReason::InsufficientKnowledge,
            Reason::InsufficientTools => HandoffReason::InsufficientTools,
            Reason::ProhibitedTopic => HandoffReason::ProhibitedTopic,
            Reason::UserRequestedHumanAssistance => HandoffReason::UserRequestedHumanAssistance,
        }
    }
}

/// What a handoff reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HandoffReferenceType {
    /// An AI profile.
    AiProfile,
    /// An instruction.
    Instruction,
    /// A knowledge article.
    Knowledge,
    /// A prohibited topic.
    ProhibitedTopic,
    /// A tool.
    Tool,
}

impl From<ReferenceType> for HandoffReferenceType {
    fn from(t: ReferenceType) -> HandoffReferenceType {
        match t {
            ReferenceType::AiProfile => HandoffReferenceType::AiProfile,
            ReferenceType::Instruction => HandoffReferenceType::Instruction,
            ReferenceType::Knowledge => HandoffReferenceType::Knowledge,
            ReferenceType::ProhibitedTopic => HandoffReferenceType::ProhibitedTopic,
            ReferenceType::Tool => HandoffReferenceType::Tool,
        }
    }
}

/// OpenCX's handoff analytics report. Every field is always present; lists are empty rather than
/// missing.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HandoffAnalyticsPublicResponseDto {
    /// One deterministic sentence built from the figures: handoffs, sessions, the range,
    /// handoffs per session (without `instruction_id`) and the most common reason, e.g. `6
    /// handoffs and 4 sessions started from 2026-11-02T00:00:00Z to 2026-11-04T00:00:00Z (1.50
    /// handoffs per session); most common reason: insufficient_knowledge (50.00% of handoffs).`
    pub summary: String,
    /// Handoffs first initiated in the range. A handoff is one `handoff_id`: a retry after
    /// `handoff_failed` is the same handoff, counted once, at its first initiation. With
    /// `instruction_id`, only handoffs referencing that instruction.
    pub total_handoffs: u64,
    /// Sessions started in the range (never narrowed by `instruction_id`), so
    /// `total_handoffs / total_sessions` is the handoff rate.
    pub total_sessions: u64,
    /// The range's start (inclusive), RFC 3339 with the request's time zone offset (in UTC for
    /// historical offsets with seconds, which RFC 3339 cannot write).
    pub start_date: String,
    /// The range's end (exclusive), RFC 3339 in the request's time zone.
    pub end_date: String,
    /// Handoffs per reason. A handoff counts once for each of its reasons (the reasons of all its
    /// attempts), so percentages may sum past 100. Sorted by count, descending, then by reason.
    pub reasons: Vec<HandoffReasonCount>,
    /// Sessions per reason combination: the sorted set of the reasons of all of a session's
    /// handoffs (with `instruction_id`: of its handoffs referencing the instruction). A session is
    /// counted when its first such handoff was first initiated in the range; its combination
    /// includes its later handoffs. Sorted by session count, descending, then by the reasons.
    pub reason_combinations: Vec<HandoffReasonCombination>,
    /// Handoffs per sentiment at handoff (the latest attempt's, when a retry gave one). Sorted by
    /// count, descending, then by sentiment, unknown (`null`) last among equal counts.
    pub sentiments: Vec<HandoffSentimentCount>,
    /// Handoffs per local calendar day, in `timezone`: one entry for every day that intersects
    /// the range, in order, zeros included. Counts sum to `total_handoffs`.
    pub trends: Vec<HandoffTrendPoint>,
    /// References of type `knowledge`.
    pub knowledge_references: Vec<HandoffReferenceCount>,
    /// References of type `tool`.
    pub tool_references: Vec<HandoffReferenceCount>,
    /// References of types `instruction` and `ai_profile`.
    pub instruction_references: Vec<HandoffReferenceCount>,
    /// References of type `prohibited_topic`.
    pub prohibited_topic_references: Vec<HandoffReferenceCount>,
}

/// A reason's count.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HandoffReasonCount {
    /// The reason.
    pub reason: HandoffReason,
    /// Handoffs carrying this reason.
    pub count: u64,
    /// `count / total_handoffs`, in percent (0–100), two decimals.
    pub percentage: f64,
}

/// A reason combination's count.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HandoffReasonCombination {
    /// The distinct reasons, sorted by name.
    pub reasons: Vec<HandoffReason>,
    /// Sessions with exactly this combination.
    pub session_count: u64,
    /// `session_count` divided by the sessions with a handoff counted here (the sum of all
    /// `session_count`s), in percent, two decimals.
    pub percentage: f64,
}

/// A sentiment's count.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HandoffSentimentCount {
    /// The sentiment given at handoff, as sent; `null` when none was given. Always present
    /// (OpenCX requires it).
    #[schema(required = true)]
    pub sentiment: Option<String>,
    /// Handoffs with this sentiment.
    pub count: u64,
    /// `count / total_handoffs`, in percent (0–100), two decimals.
    pub percentage: f64,
}

/// Handoffs of one local day.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HandoffTrendPoint {
    /// The local date, `YYYY-MM-DD`.
    pub date: String,
    /// Handoffs first initiated that day (within the range).
    pub count: u64,
}

/// How many handoffs referenced a resource.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HandoffReferenceCount {
    /// The resource's type.
    #[serde(rename = "type")]
    pub kind: HandoffReferenceType,
    /// The resource's id.
    pub id: String,
    /// Handoffs referencing it (a handoff counts once, however often it named the resource).
    /// Sorted by count, descending, then by type and id.
    pub count: u64,
}

/// A query parameter's value, an empty one (`start_date=`) read as absent.
pub(crate) fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Get handoff analytics.
///
/// Get a comprehensive overview of AI-to-human handoff events for a date range, including reason
/// breakdowns, sentiment analysis, trends, and referenced resources (OpenCX-compatible). The range
/// is `[start_date, end_date)`; figures come from rollups kept current at ingestion, so they
/// include every acknowledged event. Scope `read_all`.
#[utoipa::path(
    get,
    path = "/handoff-analytics",
    tag = TAG,
    operation_id = "getHandoffAnalytics",
    params(HandoffAnalyticsQuery),
    responses(
        (status = 200, description = "The report", body = HandoffAnalyticsPublicResponseDto),
        (status = 400, description = "A bad parameter (unparsable date, unknown time zone, start after end, range over 366 days, unknown parameter); the message names it", body = ErrorDto),
        (status = 401, description = "Missing or invalid token", body = ErrorDto),
        (status = 403, description = "The token lacks `read_all`", body = ErrorDto),
        (status = 404, description = "`organization_id` is not an organization this token may read", body = ErrorDto),
    )
)]
pub async fn get_handoff_analytics(
    State(ReadPool(pool)): State<ReadPool>,
    scoped: Scoped<HandoffAnalyticsQuery>,
) -> Result<Json<HandoffAnalyticsPublicResponseDto>> {
    let Scoped {
        orgs: org,
        range,
        query: q,
        ..
    } = scoped;
    let instruction = non_empty(&q.instruction_id);
    let plan = Plan::new(&range);
    let counts = store::analytics::read(&pool, org, instruction, range.tz.name(), &plan).await?;
    let r = domain::report(&range, &plan, instruction, &counts);
    let refs = |list: Vec<domain::ReferenceCount>| -> Vec<HandoffReferenceCount> {
        list.into_iter()
            .map(|x| HandoffReferenceCount {
                kind: x.kind.into(),
                id: x.id,
                count: count(x.count),
            })
            .collect()
    };
    Ok(Json(HandoffAnalyticsPublicResponseDto {
        summary: r.summary,
        total_handoffs: count(r.total_handoffs),
        total_sessions: count(r.total_sessions),
        start_date: r.start_date,
        end_date: r.end_date,
        reasons: r
            .reasons
            .into_iter()
            .map(|x| HandoffReasonCount {
                reason: x.reason.into(),
                count: count(x.count),
                percentage: x.percentage,
            })
            .collect(),
        reason_combinations: r
            .reason_combinations
            .into_iter()
            .map(|x| HandoffReasonCombination {
                reasons: x.reasons.into_iter().map(Into::into).collect(),
                session_count: count(x.session_count),
                percentage: x.percentage,
            })
            .collect(),
        sentiments: r
            .sentiments
            .into_iter()
            .map(|x| HandoffSentimentCount {
                sentiment: x.sentiment,
                count: count(x.count),
                percentage: x.percentage,
            })
            .collect(),
        trends: r
            .trends
            .into_iter()
            .map(|(date, n)| HandoffTrendPoint {
                date,
                count: count(n),
            })
            .collect(),
        knowledge_references: refs(r.knowledge_references),
        tool_references: refs(r.tool_references),
        instruction_references: refs(r.instruction_references),
        prohibited_topic_references: refs(r.prohibited_topic_references),
    }))
}
