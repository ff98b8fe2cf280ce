//! `DELETE /v1/sessions/{session_id}`: erasing a session's personal data (our extension, for
//! requests to forget a customer). What is erased, and why every figure stays the same, is in
//! `store::erasure`.

use axum::extract::State;
use axum::http::StatusCode;
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::error::{ApiError, ErrorDto, Result};
use super::extract::{NoQuery, Path};
use crate::auth::extract::WriteAccess;
use crate::store::erasure::erase_session;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(delete_session))
}

/// Erases a session's personal data; every count and figure stays.
///
/// Blanks, in every handoff of the session, `data` (the PolyAI state payload, so it reads `{}`),
/// `summary`, `explanation`, `shared_id` (the PolyAI lookup by it then answers 404) and the operator id, and
/// removes those fields from the stored raw events of those handoffs. Everything that is counted
/// is kept: the session, its handoffs, their reasons, sentiments, references, states and times,
/// the rollups, so every report answers as before (and `baton rebuild` still reproduces it). The
/// erasure is recorded without the session id (a digest of it, with the time and how many
/// handoffs and events were erased). Events of the session sent afterwards, again or for the
/// first time, are accepted as usual but stored without those fields, so a client's retry does
/// not bring the data back. Erasing again answers 204 again. Org tokens with `write_all` only:
/// a reseller token is a 403; another organization's session, or an unknown one, is a 404.
#[utoipa::path(delete, path = "/v1/sessions/{session_id}", tag = "events",
    params(("session_id" = String, Path, description = "The session's id, as sent in its events")),
    responses(
        (status = 204, description = "Erased (or erased before)"),
        (status = 400, description = "A query parameter (this endpoint takes none)", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks write_all, or is a reseller token", body = ErrorDto),
        (status = 404, description = "No such session in this token's organization", body = ErrorDto),
    ))]
pub async fn delete_session(
    State(pool): State<PgPool>,
    access: WriteAccess,
    _: NoQuery,
    Path(session_id): Path<String>,
) -> Result<StatusCode> {
    match erase_session(&pool, access.org, &session_id).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::NotFound(format!(
            "session `{session_id}` not found"
        ))),
    }
}
