//! `Json`, `Query` and `Path` whose rejections use the error envelope.
//!
//! axum's own extractors answer bad input with plain-text bodies and, for JSON that does not fit
//! the type, a 422; Baton answers every bad body or query with a 4xx `ErrorDto` (400 for content
//! that does not fit, 413 for size, 415 for content type).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

fn rejection(status: StatusCode, message: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(message),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(message),
        s if s.is_server_error() => ApiError::Internal(anyhow::anyhow!(message)),
        _ => ApiError::bad_request(message),
    }
}

/// A JSON body (request) or JSON response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

/// Maps a JSON rejection onto the envelope.
pub fn json_rejection(e: JsonRejection) -> ApiError {
    if let JsonRejection::JsonDataError(err) = &e {
        // `path.to.field: what is wrong` (serde names the first problem it meets).
        let text = inner_text(&err.body_text());
        let details = data_error_detail(&text).into_iter().collect();
        return ApiError::invalid(format!("invalid request body: {text}"), details);
    }
    let message = match &e {
        JsonRejection::JsonSyntaxError(err) => {
            format!("malformed JSON: {}", inner_text(&err.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => {
            "Content-Type must be application/json".to_owned()
        }
        JsonRejection::BytesRejection(err) if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            "request body is too large".to_owned()
        }
        other => other.body_text(),
    };
    rejection(e.status(), message)
}

/// The field a serde data error is about, as a `details` entry: `path: problem at line L column
/// C` becomes `{field: path, message: problem}`, and a missing field is named by its own path.
fn data_error_detail(text: &str) -> Option<super::error::FieldError> {
    let (path, problem) = match text.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (Some(path), rest),
        _ => (None, text),
    };
    let problem = match problem.rfind(" at line ") {
        Some(i) => &problem[..i],
        None => problem,
    };
    if let Some(field) = problem
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        let full = match path {
            Some(p) if p != "." => format!("{p}.{field}"),
            _ => field.to_owned(),
        };
        return Some(super::error::FieldError::new(full, "is required"));
    }
    path.filter(|p| *p != ".")
        .map(|p| super::error::FieldError::new(p, problem))
}

/// axum's texts start with a generic sentence; keep the part that names the problem.
fn inner_text(text: &str) -> String {
    match text.split_once(": ") {
        Some((_, rest)) => rest.to_owned(),
        None => text.to_owned(),
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    /// Serializes into one growing `Vec` (axum's `Json` writes through a `BytesMut` writer that
    /// starts at 128 bytes: a large answer, such as a reseller's metrics of ~150 kB, spent more
    /// time in its small writes and regrowth than in the serialization itself).
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(4096);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(e) => ApiError::Internal(anyhow::anyhow!("cannot serialize the answer: {e}"))
                .into_response(),
        }
    }
}

/// A query string.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ApiError {
    rejection(
        e.status(),
        format!("invalid query string: {}", inner_text(&e.body_text())),
    )
}

/// Path parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(e) => Err(path_rejection(e)),
        }
    }
}

fn path_rejection(e: PathRejection) -> ApiError {
    rejection(
        e.status(),
        format!("invalid path: {}", inner_text(&e.body_text())),
    )
}
