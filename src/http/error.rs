//! The error envelope: every error on every endpoint is OpenCX's `ErrorDto`.
//!
//! Policy: client errors carry a message a person can act on (naming the parameter or field);
//! 5xx bodies never carry internal text, and the cause is logged once, inside the request span.
//! Every 503 and 429 says when to come back (`Retry-After`, whole seconds): the error's own value
//! when it has one, else [`DEFAULT_RETRY_AFTER_SECS`]. It is added here, where every envelope is
//! built, so no path can forget it.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `Retry-After` of a 503 or 429 that carries no better estimate: an outage or a timeout is
/// usually over, or worth trying again, within about a second, and a client polling that fast
/// is still far below what the server answers.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// `Result` with [`ApiError`] as the error.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The body of every error response (OpenCX's `ErrorDto`, plus optional `details`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"statusCode": 400, "message": "start_date: not an ISO 8601 date-time", "error": "Bad Request"}))]
pub struct ErrorDto {
    /// The HTTP status code, repeated.
    pub status_code: u16,
    /// What went wrong, for a person.
    pub message: String,
    /// The status's reason phrase (`Bad Request`, `Not Found`, …).
    pub error: String,
    /// Per-field problems of a rejected body, each with the field's JSON path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<FieldError>>,
}

/// One problem with one field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// JSON path of the field (`settings.question_message`, `events[3].reasons`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or fails validation.
    #[error("{message}")]
    BadRequest {
        /// Summary.
        message: String,
        /// Per-field problems (empty when the message says it all).
        details: Vec<FieldError>,
    },
    /// 401: no usable token. Sent with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the token lacks a scope or may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource, or one of another tenant.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with stored state.
    #[error("{0}")]
    Conflict(String),
    /// 412: an `If-Match` precondition no longer holds.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: the body is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body's content type is not accepted.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: the token made more requests than its rate limit allows; sent with `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        /// Summary.
        message: String,
        /// Whole seconds until a request will be accepted again (at least 1).
        retry_after: u64,
    },
    /// 503: the database is unreachable or too slow; retry later. Sent with
    /// `Retry-After: 1` ([`DEFAULT_RETRY_AFTER_SECS`]).
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected database error; details are logged, never sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 400 with a message only.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// A 400 listing field problems.
    pub fn invalid(message: impl Into<String>, details: Vec<FieldError>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            details,
        }
    }

    /// The status code this error is sent with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    /// `RowNotFound` is a 404; an unreachable, saturated or too-slow database is a 503; anything
    /// else is a 500.
    fn from(e: sqlx::Error) -> ApiError {
        match &e {
            sqlx::Error::RowNotFound => ApiError::NotFound("not found".to_owned()),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable("database unavailable, retry later".to_owned())
            }
            sqlx::Error::Database(db)
                if matches!(
                    db.code().as_deref(),
                    // query_canceled (statement_timeout), admin_shutdown, crash_shutdown,
                    // cannot_connect_now, too_many_connections, serialization/deadlock are
                    // transient too but callers retry those themselves.
                    Some("57014" | "57P01" | "57P02" | "57P03" | "53300")
                ) =>
            {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable("database unavailable or too slow, retry later".to_owned())
            }
            // A data exception (a value PostgreSQL cannot store: NUL in text, a date beyond its
            // range, a number too large) is a request Baton's own checks should have refused:
            // still the client's input, so a 400 rather than a 500 that a client would retry
            // forever. Logged, because it means a check is missing.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")) => {
                tracing::warn!(error = %e, "a value reached the database that validation should have refused");
                ApiError::bad_request(
                    "a value in the request cannot be stored (out of range, or text PostgreSQL cannot hold)",
                )
            }
            _ => ApiError::Internal(e.into()),
        }
    }
}

/// Builds an envelope response. A 401 gets `WWW-Authenticate: Bearer`; a 503 or 429 gets
/// `Retry-After: 1` (callers with a better value replace it).
pub fn envelope(status: StatusCode, message: String, details: Option<Vec<FieldError>>) -> Response {
    let body = ErrorDto {
        status_code: status.as_u16(),
        message,
        error: status.canonical_reason().unwrap_or("Error").to_owned(),
        details,
    };
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(DEFAULT_RETRY_AFTER_SECS),
        );
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                envelope(status, "internal server error".to_owned(), None)
            }
            ApiError::BadRequest { message, details } => {
                envelope(status, message, (!details.is_empty()).then_some(details))
            }
            ApiError::TooManyRequests {
                message,
                retry_after,
            } => {
                let mut response = envelope(status, message, None);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
                response
            }
            other => envelope(status, other.to_string(), None),
        }
    }
}

/// Documents `Retry-After` on every 503 and 429 response of `doc`, as [`envelope`] sends it.
pub fn document_retry_after(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{Object, Type};
    let retry_after = HeaderBuilder::new()
        .schema(Object::with_type(Type::Integer))
        .description(Some(
            "Whole seconds after which the request may be retried (1 unless the error knows better).",
        ))
        .build();
    let operations = doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    });
    for op in operations {
        for (status, response) in op.responses.responses.iter_mut() {
            if let ("503" | "429", RefOr::T(response)) = (status.as_str(), response) {
                response
                    .headers
                    .entry("Retry-After".to_owned())
                    .or_insert_with(|| retry_after.clone());
            }
        }
    }
}
