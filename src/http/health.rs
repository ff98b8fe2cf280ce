//! Liveness and readiness probes (no token needed).

use std::time::Duration;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::error::{ApiError, ErrorDto, Result};
use super::extract::Json;

/// How long readiness waits for the database before answering 503.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_healthz))
        .routes(routes!(get_readyz))
}

/// A probe's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` (the process is up) or `ready` (the database answers too).
    pub status: String,
}

/// Liveness: the process is up and serving HTTP. Never touches the database.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(),
    responses((status = 200, description = "The process is up", body = HealthResponse)))]
pub async fn get_healthz() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".to_owned(),
    })
}

/// Readiness: the database answers a query within a second; otherwise 503, quickly.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(),
    responses(
        (status = 200, description = "Ready to serve", body = HealthResponse),
        (status = 503, description = "The database is unreachable or too slow", body = ErrorDto),
    ))]
pub async fn get_readyz(State(pool): State<PgPool>) -> Result<Json<HealthResponse>> {
    match tokio::time::timeout(READY_TIMEOUT, sqlx::query("select 1").execute(&pool)).await {
        Ok(Ok(_)) => Ok(Json(HealthResponse {
            status: "ready".to_owned(),
        })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable("database unavailable".to_owned()))
        }
        Err(_) => Err(ApiError::Unavailable(
            "database did not answer within 1 s".to_owned(),
        )),
    }
}
