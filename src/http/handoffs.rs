//! Our richer view of handoffs, for operators and dashboards: `GET /v1/handoffs` (newest first,
//! filtered, cursor-paginated) and `GET /v1/handoffs/{handoff_id}` (everything, with the history
//! of states).
//!
//! Policy: an organization token reads its own handoffs; a reseller token names one of its
//! organizations with `organization_id` (required). Another tenant's handoff is a 404, and is
//! never listed. Unknown query parameters are refused (a misspelt filter would otherwise silently
//! widen the list); every bad value is a 400 naming its parameter.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::{ApiError, ErrorDto, FieldError, Result};
use super::extract::{Json, Path};
use super::openapi;
use super::{AppState, ReadPool};
use crate::auth::OrgId;
use crate::auth::extract::ReadAccess;
use crate::auth::scope::{Bounds, ScopeParams, ScopeQuery, ScopeSpec, Scoped};
use crate::domain::events::Reason;
use crate::domain::handoffs::{self as domain, Position, Status};
use crate::store;
use crate::store::handoffs::{HandoffRecord, ListFilter};

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "handoffs";

/// Handoffs per page when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 50;
/// Most handoffs per page.
pub const MAX_LIMIT: i64 = 500;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_handoffs))
        .routes(routes!(get_handoff))
}

/// A resource a handoff referenced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandoffReferenceDto {
    /// `ai_profile`, `instruction`, `knowledge`, `prohibited_topic` or `tool`.
    #[serde(rename = "type")]
    pub ref_type: String,
    /// The resource's id.
    pub id: String,
}

/// The session a handoff happened in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandoffSessionDto {
    /// The session's (conversation's) id.
    pub session_id: String,
    /// `web`, `email`, `phone_voice`, `slack`, `sms`, `whatsapp`, `instagram`, `messenger`,
    /// `api` or `web_voice`.
    pub channel: String,
    /// The agent (PolyAI's project) of the session; `null` when it named none (PolyAI's
    /// `default` project).
    pub agent_id: Option<String>,
    /// The agent's name from `agent.upserted` (kept after `agent.deleted`); `null` when the
    /// agent was never declared or the session has none.
    pub agent_name: Option<String>,
    /// When the session started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `null` while it goes on.
    pub ended_at: Option<DateTime<Utc>>,
    /// Its final sentiment (`session.ended`), if any.
    pub sentiment: Option<String>,
}

/// A handoff as listed (everything but `data` and the history; see
/// `GET /v1/handoffs/{handoff_id}`). Optional fields are present as `null` when unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandoffDto {
    /// The handoff's id (`handoff_id` of `handoff.initiated`).
    pub handoff_id: String,
    /// The id shared with your systems (PolyAI's `shared_id`), or `null`.
    pub shared_id: Option<String>,
    /// The current state: `handoff_initiated`, `handoff_completed`, `handoff_failed`,
    /// `handoff_abandoned` (Baton's addition to PolyAI's states: the customer left before a
    /// person accepted, `handoff.abandoned`; final), or the latest custom topic state
    /// (`customer_refund`, …) sent with `handoff.state`. A retry (a new `handoff.initiated`
    /// after `handoff_failed`) makes it `handoff_initiated` again.
    pub state: String,
    /// Where the handoff stands, whatever its state's name: `open` (initiated, or in a custom
    /// state: a custom state never ends a handoff), `completed` (final), `failed` (may still
    /// be retried) or `abandoned` (final: the customer left before a person accepted).
    pub status: HandoffStatus,
    /// Initiations: 1, plus one per retry after a failure. A handoff is one handoff whatever
    /// its attempts (counted once, at its first initiation).
    pub attempts: i32,
    /// OpenCX reasons, distinct, in the order first given (a retry adds its new reasons).
    pub reasons: Vec<String>,
    /// Sentiment at handoff (the latest initiation's, when it gave one), or `null`.
    pub sentiment: Option<String>,
    /// What the handoff referenced, by type then id (a retry adds its references).
    pub references: Vec<HandoffReferenceDto>,
    /// Where it was sent (queue, skill), or `null`.
    pub destination: Option<String>,
    /// The summary for the human, or `null`.
    pub summary: Option<String>,
    /// The AI's reasoning for handing off (`explanation` of `handoff.initiated`, OpenCX's
    /// field; the latest initiation's, when it gave one), or `null`.
    pub explanation: Option<String>,
    /// The operator who took it (`handoff.completed`), or `null`.
    pub operator_id: Option<String>,
    /// The latest failure's message (`handoff.failed`); kept after a retry, so a completed
    /// handoff may show the error of an earlier attempt.
    pub error: Option<String>,
    /// First initiation: the handoff's time (lists are ordered and `start_date`/`end_date`
    /// filter on it; a retry does not change it).
    pub initiated_at: DateTime<Utc>,
    /// Latest initiation (the latest retry's, or the first).
    pub last_initiated_at: DateTime<Utc>,
    /// Completion, or `null`.
    pub completed_at: Option<DateTime<Utc>>,
    /// Latest failure (kept after a retry), or `null`.
    pub failed_at: Option<DateTime<Utc>>,
    /// Latest state change.
    pub updated_at: DateTime<Utc>,
    /// The session it happened in.
    pub session: HandoffSessionDto,
}

/// Where a handoff stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HandoffStatus {
    /// Initiated, or in a custom state: waiting for completion or failure.
    Open,
    /// A human took it (final).
    Completed,
    /// The transfer failed; a retry may initiate it again.
    Failed,
    /// The customer left before a person accepted (final).
    Abandoned,
}

impl From<Status> for HandoffStatus {
    fn from(s: Status) -> HandoffStatus {
        match s {
            Status::Open => HandoffStatus::Open,
            Status::Completed => HandoffStatus::Completed,
            Status::Failed => HandoffStatus::Failed,
            Status::Abandoned => HandoffStatus::Abandoned,
        }
    }
}

impl From<HandoffRecord> for HandoffDto {
    fn from(r: HandoffRecord) -> Self {
        HandoffDto {
            status: Status::of(&r.state).into(),
            handoff_id: r.handoff_id,
            shared_id: r.shared_id,
            state: r.state,
            attempts: r.attempts,
            reasons: r.reasons,
            sentiment: r.sentiment,
            references: r
                .references
                .into_iter()
                .map(|x| HandoffReferenceDto {
                    ref_type: x.ref_type,
                    id: x.id,
                })
                .collect(),
            destination: r.destination,
            summary: r.summary,
            explanation: r.explanation,
            operator_id: r.operator_id,
            error: r.error,
            initiated_at: r.initiated_at,
            last_initiated_at: r.last_initiated_at,
            completed_at: r.completed_at,
            failed_at: r.failed_at,
            updated_at: r.updated_at,
            session: HandoffSessionDto {
                session_id: r.session_id,
                channel: r.channel,
                agent_id: r.agent_id,
                agent_name: r.agent_name,
                started_at: r.session_started_at,
                ended_at: r.session_ended_at,
                sentiment: r.session_sentiment,
            },
        }
    }
}

/// One state a handoff went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandoffStateEntry {
    /// 1, 2, … in the order applied.
    pub seq: i32,
    /// The state entered (`handoff_initiated`, `handoff_completed`, `handoff_failed` or a custom
    /// topic state).
    pub state: String,
    /// When (the event's `occurred_at`).
    pub occurred_at: DateTime<Utc>,
    /// The attempt this entry belongs to: 1 until the first retry, 2 from the retry's
    /// `handoff_initiated` on, and so on.
    pub attempt: i64,
    /// The id of the event that caused it.
    pub event_id: String,
}

/// A handoff with its data and the history of its states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HandoffResponse {
    /// The handoff.
    #[serde(flatten)]
    pub handoff: HandoffDto,
    /// The handoff state payload: `data` of `handoff.initiated` with the `data` of later
    /// `handoff.state` events and retries merged in key by key, later keys winning (what PolyAI's
    /// `handoff_state` endpoint answers). `{}` when none was sent.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Every state the handoff went through, oldest first.
    pub history: Vec<HandoffStateEntry>,
}

/// A page of handoffs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandoffListResponse {
    /// Handoffs, newest first: by first initiation time, then by `handoff_id`, both descending.
    pub handoffs: Vec<HandoffDto>,
    /// Pass as `next` to get the following page; `null` on the last page. Opaque. A cursor is a
    /// position in the order above: the pages it starts never repeat a handoff, and never skip
    /// one that existed when the first page was read, even while new handoffs arrive (those
    /// first initiated after the position show up in later pages; newer ones on a fresh first
    /// page).
    pub next: Option<String>,
}

/// Query of `GET /v1/handoffs/{handoff_id}`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HandoffQuery {
    /// The organization to read: required with a reseller token; with an organization token,
    /// optional and must be the token's own (another is a 404).
    #[param(value_type = Option<openapi::UuidParam>, inline)]
    pub organization_id: Option<String>,
}

/// Query of `GET /v1/handoffs`. Unknown parameters are refused.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListHandoffsQuery {
    /// The organization to read: required with a reseller token; with an organization token,
    /// optional and must be the token's own (another is a 404).
    #[param(value_type = Option<openapi::UuidParam>, inline)]
    pub organization_id: Option<String>,
    /// Only handoffs whose current state is this one: `handoff_initiated`,
    /// `handoff_completed`, `handoff_failed`, `handoff_abandoned` or a custom topic state
    /// (`[a-z0-9_]{1,64}`).
    #[param(pattern = r"^[a-z0-9_]{1,64}$")]
    pub state: Option<String>,
    /// Only handoffs with this `status`: `open` (initiated or in a custom state), `completed`,
    /// `failed` or `abandoned`.
    #[param(value_type = Option<openapi::StatusParam>, inline)]
    pub status: Option<String>,
    /// Only handoffs carrying this OpenCX reason (`ai_implied_handoff`,
    /// `based_on_instructions`, `instructions_not_clear`, `insufficient_knowledge`,
    /// `insufficient_tools`, `prohibited_topic`, `user_requested_human_assistance`).
    #[param(value_type = Option<openapi::ReasonParam>, inline)]
    pub reason: Option<String>,
    /// Only handoffs of this session (not blank).
    #[param(pattern = r"\S")]
    pub session_id: Option<String>,
    /// Only handoffs first initiated at or after this ISO 8601 instant or date
    /// (`2026-11-01T09:30:00Z`; a date is its first instant in `timezone`). No lower bound when
    /// absent.
    #[param(value_type = Option<openapi::DateBound>, inline)]
    pub start_date: Option<String>,
    /// Only handoffs first initiated before this ISO 8601 instant, or up to the end of this
    /// date (`2026-11-30` includes all of November 30 in `timezone`). No upper bound when
    /// absent. Unlike the analytics endpoints, the range may be longer than 366 days.
    #[param(value_type = Option<openapi::DateBound>, inline)]
    pub end_date: Option<String>,
    /// IANA zone for dates and date-times without an offset in `start_date`/`end_date`;
    /// default: the organization's time zone (UTC if the stored zone is not a known IANA name).
    #[param(value_type = Option<openapi::TimeZone>, inline)]
    pub timezone: Option<String>,
    /// Handoffs per page, 1 to 500 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `next` cursor of the previous page, as it was given (opaque: only the server's own
    /// cursors are accepted).
    #[param(pattern = r"^h1\.-?[0-9]+\.([0-9a-fA-F]{2})+$")]
    pub next: Option<String>,
}

impl ScopeQuery for HandoffQuery {
    type Orgs = OrgId;
    type Range = ();
    const SPEC: ScopeSpec = ScopeSpec::SNAKE;
    fn scope_params(&self) -> ScopeParams<'_> {
        ScopeParams {
            organization: self.organization_id.as_deref().map(str::trim),
            ..ScopeParams::default()
        }
    }
}

impl ScopeQuery for ListHandoffsQuery {
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
        self.filters().err().unwrap_or_default()
    }
}

/// The list's own filters and page, as given.
struct Filters {
    state: Option<String>,
    status: Option<Status>,
    reason: Option<String>,
    session_id: Option<String>,
    limit: i64,
    after: Option<Position>,
}

/// The filters that select handoffs, shared by the list and its export: `state`, `status`,
/// `reason` (trimmed, each checked), and `session_id` (checked not blank; the caller keeps it as
/// given). Every bad one is pushed onto `problems`.
pub(crate) fn selection_filters(
    state: &Option<String>,
    status: &Option<String>,
    reason: &Option<String>,
    session_id: &Option<String>,
    problems: &mut Vec<FieldError>,
) -> (Option<String>, Option<Status>, Option<String>) {
    let state = state.as_deref().map(str::trim);
    if let Some(s) = state
        && !domain::is_state_name(s)
    {
        problems.push(FieldError::new(
            "state",
            format!("`{s}` is not a state: use handoff_initiated, handoff_completed, handoff_failed, handoff_abandoned or a custom state ([a-z0-9_]{{1,64}})"),
        ));
    }
    let status = status.as_deref().map(str::trim).and_then(|text| {
        let status = Status::parse(text);
        if status.is_none() {
            problems.push(FieldError::new(
                "status",
                format!("`{text}` is not a status: use open, completed, failed or abandoned"),
            ));
        }
        status
    });
    let reason = reason.as_deref().map(str::trim);
    if let Some(r) = reason
        && Reason::parse(r).is_none()
    {
        let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        problems.push(FieldError::new(
            "reason",
            format!("`{r}` is not a reason: use one of {}", all.join(", ")),
        ));
    }
    if session_id.as_deref().is_some_and(|s| s.trim().is_empty()) {
        problems.push(FieldError::new("session_id", "must not be empty"));
    }
    (state.map(str::to_owned), status, reason.map(str::to_owned))
}

impl ListHandoffsQuery {
    /// The filters and page (every bad one named).
    fn filters(&self) -> std::result::Result<Filters, Vec<FieldError>> {
        let mut problems = Vec::new();
        let (state, status, reason) = selection_filters(
            &self.state,
            &self.status,
            &self.reason,
            &self.session_id,
            &mut problems,
        );
        let limit = match self.limit.as_deref().map(str::trim) {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    problems.push(FieldError::new(
                        "limit",
                        format!("must be a whole number from 1 to {MAX_LIMIT} (got `{text}`)"),
                    ));
                    DEFAULT_LIMIT
                }
            },
        };
        let after = self.next.as_deref().and_then(|text| {
            let position = domain::decode_cursor(text);
            if position.is_none() {
                problems.push(FieldError::new(
                    "next",
                    "not a cursor of this endpoint: pass the `next` value of a previous page as is",
                ));
            }
            position
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Filters {
            state,
            status,
            reason,
            session_id: self.session_id.clone(),
            limit,
            after,
        })
    }
}

/// One handoff with its session, data and the history of its states.
///
/// Another tenant's handoff, or an unknown id, is a 404.
#[utoipa::path(get, path = "/v1/handoffs/{handoff_id}", tag = TAG,
    params(("handoff_id" = String, Path, description = "The handoff's id"), HandoffQuery),
    responses(
        (status = 200, description = "The handoff", body = HandoffResponse),
        (status = 400, description = "A bad or unknown query parameter, or no `organization_id` with a reseller token", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks read_all", body = ErrorDto),
        (status = 404, description = "No such handoff (or organization) for this token", body = ErrorDto),
    ))]
pub async fn get_handoff(
    State(ReadPool(pool)): State<ReadPool>,
    _: ReadAccess,
    Path(handoff_id): Path<String>,
    scoped: Scoped<HandoffQuery>,
) -> Result<Json<HandoffResponse>> {
    let org = scoped.orgs;
    let detail = store::handoffs::handoff(&pool, org, &handoff_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("handoff `{handoff_id}` not found")))?;
    Ok(Json(detail.into()))
}

impl From<store::handoffs::HandoffDetail> for HandoffResponse {
    fn from(detail: store::handoffs::HandoffDetail) -> Self {
        HandoffResponse {
            handoff: detail.record.into(),
            data: detail.data,
            history: detail
                .history
                .into_iter()
                .map(|e| HandoffStateEntry {
                    seq: e.seq,
                    state: e.state,
                    occurred_at: e.occurred_at,
                    attempt: e.attempt,
                    event_id: e.event_id,
                })
                .collect(),
        }
    }
}

/// Handoffs, newest first, filtered and paginated by cursor.
///
/// Ordered by first initiation time (a retry does not move a handoff), then `handoff_id`, both
/// descending. Filters combine with AND. Follow `next` until it is `null`: the pages neither
/// repeat nor skip a handoff while new ones arrive. Every bad parameter is a 400 naming it.
#[utoipa::path(get, path = "/v1/handoffs", tag = TAG,
    params(ListHandoffsQuery),
    responses(
        (status = 200, description = "A page of handoffs", body = HandoffListResponse),
        (status = 400, description = "A bad or unknown query parameter, or no `organization_id` with a reseller token", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks read_all", body = ErrorDto),
        (status = 404, description = "`organization_id` is not an organization this token reads", body = ErrorDto),
    ))]
pub async fn list_handoffs(
    State(ReadPool(pool)): State<ReadPool>,
    scoped: Scoped<ListHandoffsQuery>,
) -> Result<Json<HandoffListResponse>> {
    let Scoped {
        orgs: org,
        range: Bounds { start, end },
        query,
        ..
    } = scoped;
    let filters = query.filters().map_err(crate::auth::scope::invalid)?;
    let filter = ListFilter {
        state: filters.state,
        status: filters.status,
        reason: filters.reason,
        session_id: filters.session_id,
        start,
        end,
        after: filters.after,
    };
    let limit = filters.limit;
    let rows = store::handoffs::list(&pool, org, &filter, limit + 1).await?;
    let (rows, next) = domain::page(rows, limit as usize, |last| Position {
        initiated_at: last.initiated_at,
        handoff_id: last.handoff_id.clone(),
    });
    Ok(Json(HandoffListResponse {
        handoffs: rows.into_iter().map(HandoffDto::from).collect(),
        next,
    }))
}
