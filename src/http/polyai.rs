//! PolyAI's handoff state lookup: `GET /v1/{account_id}/{project_id}/handoff_state`.
//!
//! Policy: the answer is PolyAI's body, `{id, shared_id (only when set), data}`, and nothing
//! else. `account_id` must be an organization the token may read (its own; for a reseller token
//! one of the reseller's), `project_id` the agent of the handoff's session. Whatever does not
//! match (an unknown account, another tenant's account, another project, an unknown id) is the
//! same 404 with the same body, so a response never tells whether something exists elsewhere;
//! an id or path parameter holding the NUL character, which nothing stored can hold, is that
//! same 404 too. Unknown query parameters are a 400 naming them, as everywhere.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::error::{ApiError, ErrorDto, Result};
use super::extract::{Json, LookupQuery, Path};
use crate::auth::OrgId;
use crate::auth::extract::{Caller, ReadAccess};
use crate::store;
use crate::store::handoffs::Lookup;

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "handoff states";

/// The project of sessions that name no agent.
pub const DEFAULT_PROJECT: &str = "default";

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_handoff_state))
}

/// Path of `GET /v1/{account_id}/{project_id}/handoff_state`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct HandoffStatePath {
    /// The organization: its slug (`acme`) or its id. It must be the token's organization, or
    /// for a reseller token one of the reseller's organizations; any other is a 404.
    pub account_id: String,
    /// The project: the `agent_id` of the handoff's session (`session.started`), or `default`
    /// for sessions started without an agent. A handoff of another project is a 404.
    pub project_id: String,
}

/// Query of `GET /v1/{account_id}/{project_id}/handoff_state`. Other parameters are a 400
/// naming them; an empty value counts as absent.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HandoffStateQuery {
    /// The id of a handoff (`handoff_id` of `handoff.initiated`). A PolyAI conversation id is
    /// accepted too: when no handoff has this id, the most recently initiated handoff of the
    /// session (conversation) with this id answers.
    pub id: Option<String>,
    /// The id shared with your systems (`shared_id` of `handoff.initiated`). When both `id` and
    /// `shared_id` are given, `shared_id` alone is used (no fallback to `id`).
    pub shared_id: Option<String>,
}

/// A handoff's state, as PolyAI's Handoff API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "0bba04d7-38b3-4fd3-a1a8-329c34517fc1",
    "shared_id": "acme_inc_sdklfasdklfjasbdfklabs",
    "data": {"customer_id": "12345", "handoff_reason": "successfully_identified"}
}))]
pub struct HandoffStateResponse {
    /// The handoff's id (`handoff_id`), also when it was found by its session's id.
    pub id: String,
    /// The id shared with your systems; absent when the handoff has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_id: Option<String>,
    /// The `data` object sent with `handoff.initiated`, with the `data` of every later
    /// `handoff.state` event (and of retries) merged in key by key, later keys winning. `{}`
    /// when none was sent.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// The one 404 of this endpoint, whatever did not match.
fn not_found() -> ApiError {
    ApiError::NotFound(
        "handoff not found: no handoff with this id or shared_id in this account and project"
            .to_owned(),
    )
}

/// A query value, with an empty or blank one counting as absent.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The organization `account_id` names, if the caller may read it.
async fn account(pool: &PgPool, caller: &Caller, account_id: &str) -> Result<OrgId> {
    for candidate in store::handoffs::account_candidates(pool, account_id).await? {
        match caller
            .org_for_read(pool, Some(candidate), "account_id")
            .await
        {
            Ok(org) => return Ok(org),
            Err(ApiError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(not_found())
}

/// The state of a handoff, looked up by `shared_id` or `id` (PolyAI's Handoff API).
///
/// `shared_id` wins when both are given; neither is a 400. The token may come as `x-api-key`
/// (as PolyAI clients send it) or as `Authorization: Bearer`; it needs `read_all` (or
/// `write_all`). States follow PolyAI: `handoff_initiated → handoff_completed | handoff_failed`,
/// `handoff_failed → handoff_initiated` (a retry), and custom topic states (`customer_refund`,
/// …) on top, whose `data` is merged into the answer's. For the state itself, its history and
/// everything else about the handoff, see `GET /v1/handoffs/{handoff_id}`.
///
/// A handoff the customer abandoned (`handoff.abandoned`, state `handoff_abandoned`, which
/// PolyAI's states do not have) is answered like any other: PolyAI's body carries no state, so
/// it stays `{id, shared_id?, data}` with nothing added, and `data` is not changed by the
/// abandonment. In PolyAI's terms it is a handoff that ended without a live agent accepting
/// (their "fallback / call ends"); its state is in `GET /v1/handoffs/{handoff_id}`.
#[utoipa::path(get, path = "/v1/{account_id}/{project_id}/handoff_state", tag = TAG,
    params(HandoffStatePath, HandoffStateQuery),
    responses(
        (status = 200, description = "The handoff's state data", body = HandoffStateResponse),
        (status = 400, description = "Neither `id` nor `shared_id` given, or an unknown query parameter (the message names it)", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks read_all", body = ErrorDto),
        (status = 404, description = "No such handoff in this account and project (also for another tenant's account or handoff: the body is the same)", body = ErrorDto),
    ))]
pub async fn get_handoff_state(
    State(pool): State<PgPool>,
    ReadAccess(caller): ReadAccess,
    path: Result<Path<HandoffStatePath>, ApiError>,
    query: Result<LookupQuery<HandoffStateQuery>, ApiError>,
) -> Result<Json<HandoffStateResponse>> {
    // The extractors' own 404 (an id holding NUL) becomes this endpoint's one 404.
    let uniform = |e: ApiError| match e {
        ApiError::NotFound(_) => not_found(),
        other => other,
    };
    let Path(path) = path.map_err(uniform)?;
    let LookupQuery(query) = query.map_err(uniform)?;
    let lookup = match (present(&query.shared_id), present(&query.id)) {
        (Some(shared_id), _) => Lookup::SharedId(shared_id),
        (None, Some(id)) => Lookup::Id(id),
        (None, None) => {
            return Err(ApiError::bad_request(
                "id or shared_id: one of them is required (shared_id wins when both are given)",
            ));
        }
    };
    let org = account(&pool, &caller, &path.account_id).await?;
    let state = store::handoffs::handoff_state(&pool, org, &path.project_id, lookup)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(HandoffStateResponse {
        id: state.handoff_id,
        shared_id: state.shared_id,
        data: state.data,
    }))
}
