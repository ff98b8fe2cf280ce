//! OpenCX's `GET /handoff-analytics/events`: the individual handoffs behind the analytics, each
//! with its session, the AI's summary and explanation, and its reasons; newest first, in cursor
//! pages.
//!
//! Policy: wire-compatible with OpenCX's list (`{items, next, total}`, every item field a string
//! or an array of reasons; a missing summary or explanation is `""`, never `null`, because
//! OpenCX types them as strings). One item per handoff (a retry is the same handoff), dated by
//! its first initiation, so `total` equals `/handoff-analytics` `total_handoffs` for the same
//! range (with `reason`, that reason's count). A cursor carries the first page's range and
//! reason with the position, and a checksum: later pages walk the same range however long the
//! client takes, and a cursor altered or taken from another organization is refused.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::analytics::{HandoffReason, non_empty};
use super::error::{ApiError, ErrorDto, Result};
use super::extract::Json;
use super::openapi;
use super::{AppState, ReadPool};
use crate::auth::OrgId;
use crate::auth::scope::{ScopeParams, ScopeQuery, ScopeSpec, Scoped};
use crate::domain::events::Reason;
use crate::domain::input;
use crate::domain::lifecycle::Dim;
use crate::domain::timerange::TimeRange;
use crate::store;

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "handoff analytics";

/// Days covered when `start_date` is absent (OpenCX's default).
const DEFAULT_DAYS: i64 = 30;
/// Items per page when `limit` is absent.
const DEFAULT_LIMIT: i64 = 50;
/// Most items per page.
const MAX_LIMIT: i64 = 500;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_handoff_events))
}

/// Query of `GET /handoff-analytics/events`. Unknown parameters are a 400; an empty value is the
/// same as leaving the parameter out.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HandoffEventsQuery {
    /// Pagination cursor from a previous response's `next` (empty: none). It carries that first page's range
    /// and `reason`, which then apply (`start_date`, `end_date` and `reason` given with it are
    /// ignored).
    #[param(pattern = r"^(c1\.[0-9a-f]+\.[0-9a-f]{16})?$")]
    pub cursor: Option<String>,
    /// Only handoffs that include this reason. OpenCX documents six reasons here; Baton also
    /// accepts `ai_implied_handoff`. Empty: no filter.
    #[param(value_type = Option<openapi::ReasonOrEmpty>, inline)]
    pub reason: Option<String>,
    /// Start of the range (inclusive), ISO 8601, as `/handoff-analytics` takes it. Defaults to
    /// 30 days before `end_date`.
    #[param(value_type = Option<openapi::DateBoundOrEmpty>, inline)]
    pub start_date: Option<String>,
    /// End of the range (exclusive), ISO 8601. Defaults to now.
    #[param(value_type = Option<openapi::DateBoundOrEmpty>, inline)]
    pub end_date: Option<String>,
    /// Baton extension: the IANA zone of dates without an offset; defaults to the
    /// organization's.
    #[param(value_type = Option<openapi::TimeZoneOrEmpty>, inline)]
    pub timezone: Option<String>,
    /// Baton extension: the organization (required with a reseller token).
    #[param(value_type = Option<openapi::UuidOrEmpty>, inline)]
    pub organization_id: Option<String>,
    /// Baton extension: items per page, 1 to 500 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

impl ScopeQuery for HandoffEventsQuery {
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

/// One handoff.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HandoffEventItem {
    /// The session the AI handed off from.
    pub session_id: String,
    /// The AI-written summary for the human (the latest attempt's); `""` when none was sent.
    pub summary: String,
    /// The AI's explanation of why it handed off (the latest attempt's); `""` when none was
    /// sent.
    pub explanation: String,
    /// The reasons of all the handoff's attempts, in first-seen order.
    pub reasons: Vec<HandoffReason>,
    /// The first initiation, RFC 3339 in UTC.
    pub created_at: String,
}

/// A page of handoffs.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HandoffEventsResponse {
    /// Handoffs, newest first (by first initiation, then handoff id).
    pub items: Vec<HandoffEventItem>,
    /// The cursor of the next page; `null` on the last page.
    #[schema(required = true)]
    pub next: Option<String>,
    /// Handoffs in the range (with `reason`, those carrying it), on every page: equal to
    /// `/handoff-analytics` `total_handoffs` for the same range.
    pub total: i64,
}

/// What a cursor carries.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    reason: Option<Reason>,
    at: DateTime<Utc>,
    handoff_id: String,
}

fn checksum(org: OrgId, payload: &str) -> String {
    let digest = Sha256::digest(format!("{org}.{payload}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

impl Cursor {
    /// `c1.<hex of the payload>.<checksum>`; the payload is `start.end.reason.at.handoff_id`
    /// (instants in microseconds, `-` for no reason).
    fn encode(&self, org: OrgId) -> String {
        let payload = format!(
            "{}.{}.{}.{}.{}",
            self.start.timestamp_micros(),
            self.end.timestamp_micros(),
            self.reason.map_or("-", |r| r.as_str()),
            self.at.timestamp_micros(),
            self.handoff_id
        );
        format!("c1.{}.{}", hex(&payload), checksum(org, &payload))
    }

    fn decode(org: OrgId, text: &str) -> Option<Cursor> {
        let rest = text.trim().strip_prefix("c1.")?;
        let (body, sum) = rest.split_once('.')?;
        let payload = unhex(body)?;
        if checksum(org, &payload) != sum {
            return None;
        }
        let mut parts = payload.splitn(5, '.');
        let instant = |p: Option<&str>| {
            let t = DateTime::from_timestamp_micros(p?.parse().ok()?)?;
            input::year_in_range(t).then_some(t)
        };
        let start = instant(parts.next())?;
        let end = instant(parts.next())?;
        let reason = match parts.next()? {
            "-" => None,
            r => Some(Reason::parse(r)?),
        };
        let at = instant(parts.next())?;
        let handoff_id = parts.next()?.to_owned();
        Some(Cursor {
            start,
            end,
            reason,
            at,
            handoff_id,
        })
    }
}

/// List handoff events.
///
/// A paginated list of individual AI-to-human handoffs, each with the AI-written summary,
/// explanation, handoff reasons and session id (OpenCX-compatible). One item per handoff, dated
/// by its first initiation, newest first; pages never skip or repeat a handoff while new ones
/// arrive. Scope `read_all`.
#[utoipa::path(
    get,
    path = "/handoff-analytics/events",
    tag = TAG,
    operation_id = "listHandoffEvents",
    params(HandoffEventsQuery),
    responses(
        (status = 200, description = "A page of handoffs", body = HandoffEventsResponse),
        (status = 400, description = "A bad parameter (unparsable date, unknown reason or time zone, start after end, range over 366 days, a cursor this server did not give for this organization, unknown parameter); the message names it", body = ErrorDto),
        (status = 404, description = "`organization_id` is not an organization this token may read", body = ErrorDto),
    )
)]
pub async fn list_handoff_events(
    State(ReadPool(pool)): State<ReadPool>,
    scoped: Scoped<HandoffEventsQuery>,
) -> Result<Json<HandoffEventsResponse>> {
    let Scoped {
        orgs: org,
        range,
        query: q,
        ..
    } = scoped;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => match text.trim().parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit: must be a whole number from 1 to {MAX_LIMIT} (got `{text}`)"
                )));
            }
        },
    };
    let reason = match non_empty(&q.reason) {
        None => None,
        Some(r) => Some(Reason::parse(r.trim()).ok_or_else(|| {
            let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
            ApiError::bad_request(format!(
                "reason: `{r}` is not a reason: use one of {}",
                all.join(", ")
            ))
        })?),
    };
    let (range, reason, after) = match non_empty(&q.cursor) {
        None => (range, reason, None),
        Some(text) => {
            let c = Cursor::decode(org, text).ok_or_else(|| {
                ApiError::bad_request(
                    "cursor: not a cursor of this list: pass the `next` value of a previous page as is",
                )
            })?;
            let range = TimeRange {
                start: c.start,
                end: c.end,
                tz: range.tz,
            };
            (range, c.reason, Some((c.at, c.handoff_id)))
        }
    };
    let mut conn = pool.acquire().await?;
    let mut rows = store::handoff_events::page(
        &mut *conn,
        org,
        (range.start, range.end),
        reason.map(|r| r.as_str()),
        after.as_ref().map(|(at, id)| (*at, id.as_str())),
        limit + 1,
    )
    .await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|last| {
            Cursor {
                start: range.start,
                end: range.end,
                reason,
                at: last.initiated_at,
                handoff_id: last.handoff_id.clone(),
            }
            .encode(org)
        })
    } else {
        None
    };
    let figures =
        store::lifecycle::read(&mut conn, org, &range, reason.map(|_| Dim::Reason)).await?;
    let total = match reason {
        None => figures.total.initiated,
        Some(r) => figures.groups.get(r.as_str()).map_or(0, |t| t.initiated),
    };
    Ok(Json(HandoffEventsResponse {
        items: rows
            .into_iter()
            .map(|h| HandoffEventItem {
                session_id: h.session_id,
                summary: h.summary.unwrap_or_default(),
                explanation: h.explanation.unwrap_or_default(),
                reasons: h
                    .reasons
                    .iter()
                    .filter_map(|r| Reason::parse(r))
                    .map(Into::into)
                    .collect(),
                created_at: h
                    .initiated_at
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            })
            .collect(),
        next,
        total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let org = OrgId::for_admin(Uuid::nil());
        let other = OrgId::for_admin(Uuid::from_u128(1));
        let c = Cursor {
            start: DateTime::from_timestamp(1_000, 0).unwrap(),
            end: DateTime::from_timestamp(2_000, 0).unwrap(),
            reason: Some(Reason::ProhibitedTopic),
            at: DateTime::from_timestamp(1_500, 123_000).unwrap(),
            handoff_id: "h.1/ü".to_owned(),
        };
        let text = c.encode(org);
        assert_eq!(Cursor::decode(org, &text), Some(c.clone()));
        assert_eq!(Cursor::decode(other, &text), None);
        let mut tampered = text.clone().into_bytes();
        let i = 5;
        tampered[i] = if tampered[i] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            Cursor::decode(org, &String::from_utf8(tampered).unwrap()),
            None
        );
        for bad in ["", "c1.", "c1.zz.00", "h1.12.61", "c1.31.0000000000000000"] {
            assert_eq!(Cursor::decode(org, bad), None, "{bad}");
        }
    }
}
