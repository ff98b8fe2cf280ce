//! Quickchat's handoff configuration: `GET` and whole-document `PUT
//! /v1/api/human_handoff/configuration`, plus `GET …/configuration/revisions` (our extension).
//!
//! Policy: one document per organization, field for field as Quickchat's; a PUT replaces all of
//! it or nothing. The body is checked by the domain rules, which list every problem at once. The
//! `ETag` is strong and changes with every accepted PUT; `If-Match` makes a read-modify-write
//! safe (412 when someone wrote in between), and without it the last write wins, as on Quickchat.

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorDto, FieldError, Result};
use super::extract::{Json, NoQuery};
use crate::auth::OrgId;
use crate::auth::extract::WriteAccess;
use crate::auth::scope::{ScopeParams, ScopeQuery, ScopeSpec, Scoped};
use crate::domain::configuration::{
    self as domain, Configuration, CustomGuideline, Draft, GenericGuidelineDraft, IdCounters,
    RoutingProfile, Slot,
};
use crate::store;

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "handoff configuration";

const PATH: &str = "/v1/api/human_handoff/configuration";

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_configuration, put_configuration))
        .routes(routes!(list_revisions))
}

/// The whole handoff configuration of one organization: what `GET` returns and what `PUT` takes
/// back (all five sections required; unknown fields are refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffConfiguration {
    /// Core handoff settings.
    pub settings: HandoffSettings,
    /// Working hours: at most 50 slots, kept in the order sent. Overlapping slots are allowed.
    pub availability: Vec<HandoffAvailabilitySlot>,
    /// The five predefined guidelines, each exactly once. A PUT may list them in any order;
    /// responses always list them in this order: `user_frustration`,
    /// `customer_support_suggestion`, `lack_of_knowledge`, `irrelevant_advice`, `media_message`.
    pub generic_guidelines: Vec<HandoffGenericGuideline>,
    /// User-defined guidelines: at most 100, kept in the order sent.
    pub custom_guidelines: Vec<HandoffCustomGuideline>,
    /// Topic-based routing profiles: at most 100, kept in the order sent.
    pub routing_profiles: Vec<HandoffRoutingProfile>,
}

/// Core handoff configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffSettings {
    /// Whether human handoff is enabled (default `false`).
    pub is_active: bool,
    /// Trigger keywords that prompt a handoff (e.g. `["speak to human", "agent"]`): at most 100,
    /// each 1 to 100 characters, not blank, no two equal ignoring case and surrounding blanks.
    pub keywords: Vec<String>,
    /// Send an AI-generated conversation summary to the human operator when handoff occurs.
    pub ai_summary_active: bool,
    /// Whether topic-based routing is enabled. Read-only: always `true` exactly when at least one
    /// routing profile is active, else `false`. A PUT may send it (so a GET body can be sent back
    /// as is) or leave it out; its value is ignored.
    #[serde(default)]
    #[schema(read_only)]
    pub topic_based_routing_active: bool,
    /// Message asking the visitor whether they want to be connected to a human (at most 500
    /// characters; may be empty).
    pub question_message: String,
    /// Message shown after the visitor confirms handoff (at most 500 characters; may be empty).
    pub confirmation_message: String,
    /// Message shown when handoff is requested outside working hours (at most 500 characters;
    /// may be empty).
    pub confirmation_outside_working_hours_message: String,
    /// Restrict handoff to the `availability` slots.
    pub working_hours_active: bool,
    /// IANA time zone of the working hours (e.g. `"Europe/London"`; default `"UTC"`). Names are
    /// case-sensitive.
    pub timezone: String,
    /// Send e-mail notifications to operators on handoff.
    pub send_email_notification: bool,
    /// Addresses to notify: at most 100 valid e-mail addresses, no two equal ignoring case. May
    /// be empty even when `send_email_notification` is on.
    pub emails: Vec<String>,
}

/// A working-hours slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffAvailabilitySlot {
    /// Slot id, issued by Baton (per organization, from 1 upwards, never reused). Always set in
    /// responses. In a PUT, send it back to keep the slot's id, or leave it out (or `null`) for a
    /// new slot; an id this organization's document never had is a 400.
    #[serde(default)]
    pub id: Option<i64>,
    /// A lowercase day (`"monday"`) or a range of two different days (`"monday-friday"`); a
    /// range runs forward through the week and may wrap (`"friday-monday"` is Friday to Monday).
    pub day_span: String,
    /// Start time, `"HH:MM"` on a 24-hour clock (`00:00` to `23:59`).
    pub start_time: String,
    /// End time, `"HH:MM"`, strictly after `start_time` (a slot does not cross midnight).
    pub end_time: String,
}

/// A predefined handoff trigger rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffGenericGuideline {
    /// Guideline type: `"user_frustration"`, `"customer_support_suggestion"`,
    /// `"lack_of_knowledge"`, `"irrelevant_advice"` or `"media_message"`.
    pub name: String,
    /// When this guideline triggers (at most 2000 characters; may be empty).
    pub description: String,
    /// Whether this guideline is enabled.
    pub is_active: bool,
}

/// A user-defined handoff trigger rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffCustomGuideline {
    /// Guideline id, issued by Baton (per organization, from 1 upwards, never reused). Always set
    /// in responses; in a PUT, send it back to keep it or leave it out for a new guideline; an id
    /// this organization's document never had is a 400.
    #[serde(default)]
    pub id: Option<i64>,
    /// Custom guideline name: 1 to 100 characters, not blank, unique among custom guidelines
    /// ignoring case.
    pub name: String,
    /// When this guideline should trigger handoff (at most 2000 characters).
    pub description: String,
    /// Whether this guideline is enabled.
    pub is_active: bool,
}

/// A topic-based routing profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffRoutingProfile {
    /// Routing profile id, issued by Baton (per organization, from 1 upwards, never reused).
    /// Always set in responses; in a PUT, send it back to keep it or leave it out for a new
    /// profile; an id this organization's document never had is a 400.
    #[serde(default)]
    pub id: Option<i64>,
    /// Topic name (e.g. "Billing"): 1 to 100 characters, not blank, unique among routing
    /// profiles ignoring case.
    pub name: String,
    /// When this profile should match (at most 2000 characters).
    pub description: String,
    /// Whether this routing profile is enabled (any active profile turns
    /// `settings.topic_based_routing_active` on).
    pub is_active: bool,
    /// IDs of operators to notify when this profile matches: positive integers, each once, at
    /// most 100. Baton does not check them against a user directory.
    pub user_ids: Vec<i64>,
}

impl From<&Configuration> for HandoffConfiguration {
    fn from(c: &Configuration) -> Self {
        let s = &c.settings;
        HandoffConfiguration {
            settings: HandoffSettings {
                is_active: s.is_active,
                keywords: s.keywords.clone(),
                ai_summary_active: s.ai_summary_active,
                topic_based_routing_active: c.topic_based_routing_active(),
                question_message: s.question_message.clone(),
                confirmation_message: s.confirmation_message.clone(),
                confirmation_outside_working_hours_message: s
                    .confirmation_outside_working_hours_message
                    .clone(),
                working_hours_active: s.working_hours_active,
                timezone: s.timezone.clone(),
                send_email_notification: s.send_email_notification,
                emails: s.emails.clone(),
            },
            availability: c
                .availability
                .iter()
                .map(|a| HandoffAvailabilitySlot {
                    id: Some(a.id),
                    day_span: a.day_span.clone(),
                    start_time: a.start_time.clone(),
                    end_time: a.end_time.clone(),
                })
                .collect(),
            generic_guidelines: c
                .generic_guidelines
                .iter()
                .map(|g| HandoffGenericGuideline {
                    name: g.name.as_str().to_owned(),
                    description: g.description.clone(),
                    is_active: g.is_active,
                })
                .collect(),
            custom_guidelines: c
                .custom_guidelines
                .iter()
                .map(|g| HandoffCustomGuideline {
                    id: Some(g.id),
                    name: g.name.clone(),
                    description: g.description.clone(),
                    is_active: g.is_active,
                })
                .collect(),
            routing_profiles: c
                .routing_profiles
                .iter()
                .map(|r| HandoffRoutingProfile {
                    id: Some(r.id),
                    name: r.name.clone(),
                    description: r.description.clone(),
                    is_active: r.is_active,
                    user_ids: r.user_ids.clone(),
                })
                .collect(),
        }
    }
}

impl From<HandoffConfiguration> for Draft {
    fn from(c: HandoffConfiguration) -> Draft {
        let s = c.settings;
        Draft {
            settings: domain::Settings {
                is_active: s.is_active,
                keywords: s.keywords,
                ai_summary_active: s.ai_summary_active,
                question_message: s.question_message,
                confirmation_message: s.confirmation_message,
                confirmation_outside_working_hours_message: s
                    .confirmation_outside_working_hours_message,
                working_hours_active: s.working_hours_active,
                timezone: s.timezone,
                send_email_notification: s.send_email_notification,
                emails: s.emails,
            },
            availability: c
                .availability
                .into_iter()
                .map(|a| Slot {
                    id: a.id,
                    day_span: a.day_span,
                    start_time: a.start_time,
                    end_time: a.end_time,
                })
                .collect(),
            generic_guidelines: c
                .generic_guidelines
                .into_iter()
                .map(|g| GenericGuidelineDraft {
                    name: g.name,
                    description: g.description,
                    is_active: g.is_active,
                })
                .collect(),
            custom_guidelines: c
                .custom_guidelines
                .into_iter()
                .map(|g| CustomGuideline {
                    id: g.id,
                    name: g.name,
                    description: g.description,
                    is_active: g.is_active,
                })
                .collect(),
            routing_profiles: c
                .routing_profiles
                .into_iter()
                .map(|r| RoutingProfile {
                    id: r.id,
                    name: r.name,
                    description: r.description,
                    is_active: r.is_active,
                    user_ids: r.user_ids,
                })
                .collect(),
        }
    }
}

/// Query of `GET /v1/api/human_handoff/configuration`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationQuery {
    /// The organization to read: required with a reseller token (one of its organizations);
    /// with an organization token, optional and must be the token's own.
    #[param(value_type = Option<Uuid>)]
    pub organization_id: Option<String>,
}

impl ScopeQuery for ConfigurationQuery {
    type Orgs = OrgId;
    type Range = ();
    const SPEC: ScopeSpec = ScopeSpec::SNAKE;
    fn scope_params(&self) -> ScopeParams<'_> {
        ScopeParams {
            organization: self.organization_id.as_deref(),
            ..ScopeParams::default()
        }
    }
}

/// The strong entity tag of an organization's document at a revision. It names the organization
/// too, so a tag read with one organization's token never matches another's document.
pub fn etag(org: OrgId, revision: i64) -> String {
    format!("\"{}-{}\"", org.get().simple(), revision)
}

/// The document as a GET answers it.
fn render(document: &Configuration) -> Result<String> {
    Ok(
        serde_json::to_string(&HandoffConfiguration::from(document))
            .map_err(anyhow::Error::from)?,
    )
}

/// The default document's body, rendered once.
static DEFAULT_BODY: LazyLock<String> = LazyLock::new(|| {
    serde_json::to_string(&HandoffConfiguration::from(
        &Configuration::default_for_new_org(),
    ))
    .unwrap_or_else(|e| unreachable!("the default document always serializes: {e}"))
});

/// A 200 with a rendered document and its `ETag`.
fn document_response(org: OrgId, revision: i64, body: String) -> Result<Response> {
    Ok(Response::builder()
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .header(header::ETAG, etag(org, revision))
        .body(Body::from(body))
        .map_err(anyhow::Error::from)?)
}

/// Whether an `If-Match` header value lets a write to the document tagged `current` proceed:
/// `*` always does (the document always exists); otherwise one of the listed tags must equal it
/// under strong comparison, so weak tags (`W/"…"`) never match. A tag sent without its quotes is
/// accepted too, for hand-written requests.
pub fn if_match_allows(value: &str, current: &str) -> bool {
    let bare = current.trim_matches('"');
    value.split(',').map(str::trim).any(|tag| {
        tag == "*"
            || tag == current
            || (!tag.starts_with("W/") && !tag.contains('"') && tag == bare)
    })
}

/// Reads the handoff configuration.
///
/// An organization that never wrote one gets the default document (handoff off, the five
/// generic guidelines on with default descriptions, default messages, `UTC`, empty lists). The
/// `ETag` header identifies this version of the document for `If-Match`.
#[utoipa::path(get, path = PATH, tag = TAG,
    params(ConfigurationQuery),
    responses(
        (status = 200, description = "The organization's handoff configuration", body = HandoffConfiguration,
            headers(("ETag" = String, description = "Strong entity tag of this version of the document"))),
        (status = 400, description = "Bad query, or a reseller token without `organization_id`", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks read_all", body = ErrorDto),
        (status = 404, description = "`organization_id` is not an organization the token may read", body = ErrorDto),
    ))]
pub async fn get_configuration(
    State(pool): State<PgPool>,
    scoped: Scoped<ConfigurationQuery>,
) -> Result<Response> {
    let org = scoped.orgs;
    // The stored text is the body: no parsing or rendering on the read path.
    match store::configuration::get(&pool, org).await? {
        Some((body, revision)) => document_response(org, revision, body),
        None => document_response(org, 0, DEFAULT_BODY.clone()),
    }
}

/// Replaces the whole handoff configuration atomically.
///
/// All five sections are required and checked together: a 400 lists every problem in `details`
/// with its JSON path, and nothing is changed. Items sent with an `id` keep it, items without one
/// get a new id. `settings.topic_based_routing_active` is ignored (it is derived). With
/// `If-Match`, the write happens only if the document is still the version that tag names (else
/// 412 and nothing is changed); without it, the last write wins. Every accepted PUT, even one that
/// changes nothing, becomes a new revision with a new `ETag`.
#[utoipa::path(put, path = PATH, tag = TAG,
    params(
        ("If-Match" = Option<String>, Header, description = "An `ETag` from a GET or PUT of this document, a comma-separated list of them, or `*`: write only if the document is still that version"),
    ),
    request_body = HandoffConfiguration,
    responses(
        (status = 200, description = "The stored configuration, with the ids it now has", body = HandoffConfiguration,
            headers(("ETag" = String, description = "Strong entity tag of the new version"))),
        (status = 400, description = "Malformed JSON, a missing or unknown field, values that break the rules or hold the NUL character (each listed in `details`), or a query parameter (this endpoint takes none)", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks write_all, or is a reseller token", body = ErrorDto),
        (status = 412, description = "`If-Match` names a version that is no longer current; nothing was changed", body = ErrorDto),
        (status = 413, description = "The body is over 10 MiB", body = ErrorDto),
        (status = 415, description = "The body is not `application/json`", body = ErrorDto),
    ))]
pub async fn put_configuration(
    State(pool): State<PgPool>,
    WriteAccess { caller, org }: WriteAccess,
    _: NoQuery,
    headers: HeaderMap,
    Json(body): Json<HandoffConfiguration>,
) -> Result<Response> {
    let if_match = match headers.get(header::IF_MATCH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("If-Match header is not valid text"))?
                .to_owned(),
        ),
    };
    let draft = Draft::from(body);
    // Optimistic: read the revision and counters, check and validate, then write only if the
    // revision is unchanged (one atomic statement). A writer that loses the race re-reads: with
    // an If-Match tag it then gets its 412, without one (or with `*`) it tries again.
    for _ in 0..OPTIMISTIC_ATTEMPTS {
        let state = store::configuration::state(&pool, org).await?;
        let (revision, next_ids) =
            state.map_or((0, IdCounters::default()), |s| (s.revision, s.next_ids));
        let (body, next_ids) =
            checked_body(org, revision, next_ids, if_match.as_deref(), draft.clone())?;
        if let Some((revision, _)) =
            store::configuration::replace_if(&pool, org, revision, &body, next_ids, caller.jti)
                .await?
        {
            return document_response(org, revision, body);
        }
    }
    // Many writers on this one organization: take the row lock so that this one is served.
    let mut tx = pool.begin().await?;
    let locked = store::configuration::lock(&mut tx, org, &DEFAULT_BODY).await?;
    let (body, next_ids) = checked_body(
        org,
        locked.revision,
        locked.next_ids,
        if_match.as_deref(),
        draft,
    )?;
    let (revision, _) = store::configuration::replace_if(
        &mut *tx,
        org,
        locked.revision,
        &body,
        next_ids,
        caller.jti,
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("the locked configuration row changed"))?;
    tx.commit().await?;
    document_response(org, revision, body)
}

/// Compare-and-swap attempts before a writer takes the row lock.
const OPTIMISTIC_ATTEMPTS: usize = 8;

/// Checks `If-Match` against `revision` (412), then validates the draft with the counters (400
/// listing every problem); returns the body to store and the advanced id counters.
fn checked_body(
    org: OrgId,
    revision: i64,
    next_ids: IdCounters,
    if_match: Option<&str>,
    draft: Draft,
) -> Result<(String, IdCounters)> {
    let current_tag = etag(org, revision);
    if let Some(value) = if_match
        && !if_match_allows(value, &current_tag)
    {
        return Err(ApiError::PreconditionFailed(format!(
            "the handoff configuration has changed since that version (If-Match: {value}); the current ETag is {current_tag}: GET it again and reapply your change"
        )));
    }
    let (document, next_ids) = domain::validate(draft, next_ids).map_err(|problems| {
        let n = problems.len();
        ApiError::invalid(
            format!(
                "invalid handoff configuration: {n} problem{} (see details)",
                if n == 1 { "" } else { "s" }
            ),
            problems
                .into_iter()
                .map(|p| FieldError::new(p.field, p.message))
                .collect(),
        )
    })?;
    Ok((render(&document)?, next_ids))
}

/// Query of `GET /v1/api/human_handoff/configuration/revisions`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RevisionsQuery {
    /// The organization to read: required with a reseller token; with an organization token,
    /// optional and must be the token's own.
    #[param(value_type = Option<Uuid>)]
    pub organization_id: Option<String>,
    /// Most revisions to return, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Only revisions older than this one (pass the previous page's `next_before`).
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub before: Option<i64>,
}

impl ScopeQuery for RevisionsQuery {
    type Orgs = OrgId;
    type Range = ();
    const SPEC: ScopeSpec = ScopeSpec::SNAKE;
    fn scope_params(&self) -> ScopeParams<'_> {
        ScopeParams {
            organization: self.organization_id.as_deref(),
            ..ScopeParams::default()
        }
    }
}

/// One accepted PUT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandoffConfigurationRevision {
    /// The revision number: 1 for the organization's first accepted PUT, then one more per PUT.
    /// The default document a new organization starts with is revision 0 and is not listed.
    pub revision: i64,
    /// When the PUT was committed.
    pub created_at: DateTime<Utc>,
    /// The id (`jti`) of the token that made the PUT, as `GET /v1/me` shows it.
    pub token_id: Uuid,
    /// The `ETag` this revision had (what `If-Match` would have needed to overwrite it).
    pub etag: String,
    /// The whole document as this PUT stored it (ids resolved, `topic_based_routing_active`
    /// derived).
    pub configuration: HandoffConfiguration,
}

/// A page of revisions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandoffConfigurationRevisionsResponse {
    /// The revisions, newest first.
    pub revisions: Vec<HandoffConfigurationRevision>,
    /// Pass as `before` to get the next (older) page; `null` when there is none.
    pub next_before: Option<i64>,
}

const DEFAULT_REVISIONS: i64 = 20;
const MAX_REVISIONS: i64 = 100;

/// Lists the accepted PUTs of the handoff configuration, newest first (Baton's extension).
#[utoipa::path(get, path = "/v1/api/human_handoff/configuration/revisions", tag = TAG,
    params(RevisionsQuery),
    responses(
        (status = 200, description = "Revisions, newest first", body = HandoffConfigurationRevisionsResponse),
        (status = 400, description = "Bad query, or a reseller token without `organization_id`", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks read_all", body = ErrorDto),
        (status = 404, description = "`organization_id` is not an organization the token may read", body = ErrorDto),
    ))]
pub async fn list_revisions(
    State(pool): State<PgPool>,
    scoped: Scoped<RevisionsQuery>,
) -> Result<Json<HandoffConfigurationRevisionsResponse>> {
    let Scoped {
        orgs: org, query, ..
    } = scoped;
    let mut problems = Vec::new();
    let limit = query.limit.unwrap_or(DEFAULT_REVISIONS);
    if !(1..=MAX_REVISIONS).contains(&limit) {
        problems.push(FieldError::new(
            "limit",
            format!("must be between 1 and {MAX_REVISIONS} (got {limit})"),
        ));
    }
    if let Some(before) = query.before
        && before < 1
    {
        problems.push(FieldError::new(
            "before",
            format!("must be a revision number, 1 or more (got {before})"),
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid("invalid query string", problems));
    }
    let rows = store::configuration::revisions(&pool, org, query.before, limit).await?;
    let next_before = match rows.last() {
        Some(last) if rows.len() as i64 == limit && last.revision > 1 => Some(last.revision),
        _ => None,
    };
    let mut revisions = Vec::with_capacity(rows.len());
    for r in rows {
        let configuration: HandoffConfiguration = serde_json::from_str(&r.document)
            .map_err(|e| anyhow::anyhow!("stored revision {} does not parse: {e}", r.revision))?;
        revisions.push(HandoffConfigurationRevision {
            revision: r.revision,
            created_at: r.created_at,
            token_id: r.token_jti,
            etag: etag(org, r.revision),
            configuration,
        });
    }
    Ok(Json(HandoffConfigurationRevisionsResponse {
        revisions,
        next_before,
    }))
}

#[cfg(test)]
mod tests {
    use super::if_match_allows;

    #[test]
    fn if_match_uses_strong_comparison() {
        let current = "\"abc-3\"";
        assert!(if_match_allows("\"abc-3\"", current));
        assert!(if_match_allows("*", current));
        assert!(if_match_allows("\"abc-2\", \"abc-3\"", current));
        assert!(if_match_allows("abc-3", current));
        assert!(!if_match_allows("W/\"abc-3\"", current));
        assert!(!if_match_allows("\"abc-2\"", current));
        assert!(!if_match_allows("", current));
    }
}
