//! `Json`, `Query` and `Path` whose rejections use the error envelope, and [`NoQuery`] for
//! endpoints that take no query parameters.
//!
//! axum's own extractors answer bad input with plain-text bodies and, for JSON that does not fit
//! the type, a 422; Baton answers every bad body or query with a 4xx `ErrorDto` (400 for content
//! that does not fit, 413 for size, 415 for content type).
//!
//! They also refuse, once for every endpoint, what PostgreSQL cannot store: the NUL character
//! (see [`input`]). In a JSON body or a query parameter it is a 400 naming the field or
//! parameter; in a path parameter (always an id to look up) it is a 404, since nothing stored
//! can have such an id. Both checks cost a substring search unless the request really holds an
//! escaped NUL (`\u0000` in JSON, `%00` in a URL).

use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldError};
use crate::domain::input;

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
        // Keep the raw bytes for the NUL check; axum's own extractor then reads them as it reads
        // any body, so content type, syntax and data errors are reported as before (except that
        // the body is now read first: an oversized body is a 413 whatever its content type).
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| json_rejection(e.into()))?;
        let value = match axum::Json::<T>::from_request(
            Request::from_parts(parts, Body::from(bytes.clone())),
            state,
        )
        .await
        {
            Ok(axum::Json(value)) => value,
            Err(e) => return Err(json_rejection(e)),
        };
        // Every JSON body of this API is an object; serde would also read a struct from an
        // array of its fields in order (`[null, null]`), which no client means.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request(
                "the body must be a JSON object (`{...}`)",
            ));
        }
        refuse_nul_in_json(&bytes)?;
        Ok(Json(value))
    }
}

/// A 400 listing every string and key of a JSON body that holds NUL, if any does.
fn refuse_nul_in_json(bytes: &[u8]) -> Result<(), ApiError> {
    if !input::json_may_hold_nul(bytes) {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        // The typed read accepted it, so this does not happen; nothing to report if it did.
        return Ok(());
    };
    let paths = input::nul_paths(&value, "");
    if paths.is_empty() {
        return Ok(());
    }
    let message = format!(
        "invalid request body: {} {}",
        paths.join(", "),
        input::NUL_IN_JSON
    );
    let details = paths
        .into_iter()
        .map(|p| FieldError::new(p, input::NUL_IN_JSON))
        .collect();
    Err(ApiError::invalid(message, details))
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
        if let Some(name) = nul_query_parameter(parts) {
            return Err(nul_parameter(&name));
        }
        read_query(parts, state).await.map(Query)
    }
}

/// A query string whose values are ids to look up (PolyAI's `id` and `shared_id`): a value
/// holding NUL names nothing that can exist, so it is a 404, as any unknown id is, rather than
/// a 400. Otherwise the same as [`Query`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LookupQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for LookupQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(name) = nul_query_parameter(parts) {
            return Err(ApiError::NotFound(format!(
                "{name}: not found (no id contains the NUL character)"
            )));
        }
        read_query(parts, state).await.map(LookupQuery)
    }
}

/// No query parameters: for endpoints that take none, any parameter is a 400 naming it (with
/// the wording of the other endpoints' unknown parameters), rather than silently ignored: a
/// client sending `?organization_id=…` to `POST /v1/events` learns that it is not honoured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(name) = nul_query_parameter(parts) {
            return Err(nul_parameter(&name));
        }
        let query = parts.uri.query().unwrap_or("");
        match form_urlencoded::parse(query.as_bytes()).next() {
            None => Ok(NoQuery),
            Some((name, _)) => Err(ApiError::bad_request(format!(
                "invalid query string: {name}: unknown field `{name}`, this endpoint takes no query parameters"
            ))),
        }
    }
}

fn nul_parameter(name: &str) -> ApiError {
    ApiError::bad_request(format!(
        "invalid query string: {name}: {}",
        input::NUL_IN_PARAM
    ))
}

async fn read_query<T, S>(parts: &mut Parts, state: &S) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    match axum::extract::Query::<T>::from_request_parts(parts, state).await {
        Ok(axum::extract::Query(value)) => Ok(value),
        Err(e) => Err(query_rejection(e)),
    }
}

/// The first query parameter whose name or value holds NUL, if any. A URL can carry NUL only
/// percent-encoded, so a query without `%00` is passed without decoding.
fn nul_query_parameter(parts: &Parts) -> Option<String> {
    let query = parts.uri.query()?;
    if !query.contains("%00") {
        return None;
    }
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        .map(|(name, _)| input::param_name(&name))
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
        // Every path parameter of the API names something to look up, and nothing stored can
        // hold NUL: such a path names nothing, a 404. A URL carries NUL only as `%00`.
        if parts.uri.path().contains("%00")
            && let Ok(raw) = RawPathParams::from_request_parts(parts, state).await
            && let Some((name, _)) = raw.iter().find(|(_, value)| value.contains('\0'))
        {
            return Err(ApiError::NotFound(format!(
                "{name}: not found (no id contains the NUL character)"
            )));
        }
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
