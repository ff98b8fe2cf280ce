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
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorDto, FieldError, Result};
use super::extract::{Json, Path, Query};
use super::openapi;
use crate::auth::OrgId;
use crate::auth::extract::{Caller, ReadAccess};
use crate::domain::events::{Reason, states};
use crate::domain::timerange::{Bound, parse_bound, parse_timezone};
use crate::store;
use crate::store::handoffs::{HandoffRecord, ListFilter, Position, Status};

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
    /// The current state: `handoff_initiated`, `handoff_completed`, `handoff_failed`, or the
    /// latest custom topic state (`customer_refund`, …) sent with `handoff.state`. A retry (a new
    /// `handoff.initiated` after `handoff_failed`) makes it `handoff_initiated` again.
    pub state: String,
    /// Where the handoff stands, whatever its state's name: `open` (initiated, or in a custom
    /// state: a custom state never ends a handoff), `completed` (final) or `failed` (may still
    /// be retried).
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
}

impl HandoffStatus {
    fn of(state: &str) -> HandoffStatus {
        match state {
            states::COMPLETED => HandoffStatus::Completed,
            states::FAILED => HandoffStatus::Failed,
            _ => HandoffStatus::Open,
        }
    }
}

impl From<HandoffRecord> for HandoffDto {
    fn from(r: HandoffRecord) -> Self {
        HandoffDto {
            status: HandoffStatus::of(&r.state),
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
    /// `handoff_completed`, `handoff_failed` or a custom topic state (`[a-z0-9_]{1,64}`).
    #[param(pattern = r"^[a-z0-9_]{1,64}$")]
    pub state: Option<String>,
    /// Only handoffs with this `status`: `open` (initiated or in a custom state), `completed` or
    /// `failed`.
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
    /// default: the organization's time zone.
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

pub(crate) fn param_error(problems: Vec<FieldError>) -> ApiError {
    let message = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::invalid(message, problems)
}

/// The organization a request reads (see [`Caller::org_for_read`]).
pub(crate) async fn read_org(
    pool: &PgPool,
    caller: &Caller,
    organization_id: &Option<String>,
) -> Result<OrgId> {
    let requested = match organization_id.as_deref() {
        None => None,
        Some(text) => Some(Uuid::parse_str(text.trim()).map_err(|_| {
            param_error(vec![FieldError::new(
                "organization_id",
                format!("`{text}` is not an organization id (a UUID)"),
            )])
        })?),
    };
    caller
        .org_for_read(pool, requested, "organization_id")
        .await
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
    State(pool): State<PgPool>,
    ReadAccess(caller): ReadAccess,
    Path(handoff_id): Path<String>,
    Query(query): Query<HandoffQuery>,
) -> Result<Json<HandoffResponse>> {
    let org = read_org(&pool, &caller, &query.organization_id).await?;
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
    State(pool): State<PgPool>,
    ReadAccess(caller): ReadAccess,
    Query(query): Query<ListHandoffsQuery>,
) -> Result<Json<HandoffListResponse>> {
    let mut problems = Vec::new();
    let state = query.state.as_deref().map(str::trim);
    if let Some(s) = state
        && !is_state_name(s)
    {
        problems.push(FieldError::new(
            "state",
            format!("`{s}` is not a state: use handoff_initiated, handoff_completed, handoff_failed or a custom state ([a-z0-9_]{{1,64}})"),
        ));
    }
    let status = match query.status.as_deref().map(str::trim) {
        None => None,
        Some(text) => match text {
            "open" => Some(Status::Open),
            "completed" => Some(Status::Completed),
            "failed" => Some(Status::Failed),
            _ => {
                problems.push(FieldError::new(
                    "status",
                    format!("`{text}` is not a status: use open, completed or failed"),
                ));
                None
            }
        },
    };
    let reason = query.reason.as_deref().map(str::trim);
    if let Some(r) = reason
        && Reason::parse(r).is_none()
    {
        let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        problems.push(FieldError::new(
            "reason",
            format!("`{r}` is not a reason: use one of {}", all.join(", ")),
        ));
    }
    if query
        .session_id
        .as_deref()
        .is_some_and(|s| s.trim().is_empty())
    {
        problems.push(FieldError::new("session_id", "must not be empty"));
    }
    let limit = match query.limit.as_deref().map(str::trim) {
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
    let after = match query.next.as_deref() {
        None => None,
        Some(text) => match decode_cursor(text) {
            Some(p) => Some(p),
            None => {
                problems.push(FieldError::new(
                    "next",
                    "not a cursor of this endpoint: pass the `next` value of a previous page as is",
                ));
                None
            }
        },
    };
    let tz = match query.timezone.as_deref() {
        Some(name) => match parse_timezone("timezone", name.trim()) {
            Ok(tz) => Some(tz),
            Err(e) => {
                problems.push(FieldError::new(e.param, e.message));
                None
            }
        },
        None => None,
    };
    if !problems.is_empty() {
        return Err(param_error(problems));
    }
    let org = read_org(&pool, &caller, &query.organization_id).await?;

    let (mut start, mut end) = (None, None);
    if query.start_date.is_some() || query.end_date.is_some() {
        let tz = match tz {
            Some(tz) => tz,
            None => org_timezone(&pool, org).await?,
        };
        let mut problems = Vec::new();
        for (param, text, bound, slot) in [
            ("start_date", &query.start_date, Bound::Start, &mut start),
            ("end_date", &query.end_date, Bound::End, &mut end),
        ] {
            if let Some(text) = text {
                match parse_bound(param, text, tz, bound) {
                    Ok(t) => *slot = Some(t),
                    Err(e) => problems.push(FieldError::new(e.param, e.message)),
                }
            }
        }
        if let (Some(s), Some(e)) = (start, end)
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
    }

    let filter = ListFilter {
        state: state.map(str::to_owned),
        status,
        reason: reason.map(str::to_owned),
        session_id: query.session_id.clone(),
        start,
        end,
        after,
    };
    let mut rows = store::handoffs::list(&pool, org, &filter, limit + 1).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|last| {
            encode_cursor(&Position {
                initiated_at: last.initiated_at,
                handoff_id: last.handoff_id.clone(),
            })
        })
    } else {
        None
    };
    Ok(Json(HandoffListResponse {
        handoffs: rows.into_iter().map(HandoffDto::from).collect(),
        next,
    }))
}

async fn org_timezone(pool: &PgPool, org: OrgId) -> Result<chrono_tz::Tz> {
    let name = store::tenants::org_by_id(pool, org.get())
        .await?
        .map(|o| o.timezone)
        .unwrap_or_else(|| "UTC".to_owned());
    Ok(name.parse().unwrap_or(chrono_tz::Tz::UTC))
}

/// Whether `s` can name a state: one of PolyAI's three, or a custom state as `handoff.state`
/// accepts it.
fn is_state_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The cursor of a position: `h1.<microseconds since the epoch>.<hex of the handoff id>`.
/// (Opaque to clients; the version prefix lets the format change without misreading old ones.)
pub fn encode_cursor(p: &Position) -> String {
    let mut out = format!("h1.{}.", p.initiated_at.timestamp_micros());
    for b in p.handoff_id.as_bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The position a cursor names, or `None` when it is not one of ours.
pub fn decode_cursor(text: &str) -> Option<Position> {
    let rest = text.trim().strip_prefix("h1.")?;
    let (micros, hex) = rest.split_once('.')?;
    if micros.is_empty() || !micros.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    let initiated_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let handoff_id = String::from_utf8(bytes).ok()?;
    // A cursor is client input: one this endpoint never wrote (a NUL in the id, an instant
    // PostgreSQL cannot hold) is refused like any other garbage, not sent to the database.
    if handoff_id.contains('\0') || !crate::domain::input::year_in_range(initiated_at) {
        return None;
    }
    Some(Position {
        initiated_at,
        handoff_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let p = Position {
            initiated_at: DateTime::parse_from_rfc3339("2026-11-02T09:01:02.345678Z")
                .unwrap()
                .with_timezone(&Utc),
            handoff_id: "h-ü/1.2".to_owned(),
        };
        let c = encode_cursor(&p);
        assert!(c.starts_with("h1.1793610062345678."), "{c}");
        assert_eq!(decode_cursor(&c), Some(p));
        for bad in [
            "",
            "h1.",
            "h1..61",
            "h1.12.",
            "h1.12.6",
            "h1.12.zz",
            "h1.x.61",
            "h2.12.61",
            "h1.12.ff",
            "h1.+12.61",
            // A NUL in the id; an instant in year −10000.
            "h1.12.6100",
            "h1.-380000000000000000.61",
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn state_names() {
        assert!(is_state_name("handoff_failed"));
        assert!(is_state_name("customer_refund"));
        assert!(!is_state_name(""));
        assert!(!is_state_name("Customer"));
        assert!(!is_state_name("a-b"));
        assert!(!is_state_name(&"a".repeat(65)));
    }
}
