//! `/v1/webhooks`: an organization's webhook subscriptions and their delivery log (our
//! extension). Writes need `write_all` and an organization token (reseller tokens only read);
//! reads need `read_all`, with `organization_id` for a reseller token. Another organization's
//! webhook, like an unknown id, is a 404. The secret is shown twice only: in the answer to the
//! creation and to each rotation.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorDto, FieldError, Result};
use super::extract::{Json, NoQuery, Path};
use super::handoffs::HandoffQuery;
use super::openapi;
use crate::auth::OrgId;
use crate::auth::extract::WriteAccess;
use crate::auth::scope::{ScopeParams, ScopeQuery, ScopeSpec, Scoped, invalid};
use crate::store::webhooks::{self as store, DeliveryRow, WebhookPatch, WebhookRow};
use crate::webhooks::{EVENT_TYPES, WebhookConfig, destination, is_event_type, signing};

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "webhooks";

/// Most webhooks an organization may have.
pub const MAX_WEBHOOKS: i64 = 50;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// How long the secret replaced by a rotation keeps signing.
pub const ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Deliveries per page when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 50;
/// Most deliveries per page.
pub const MAX_LIMIT: i64 = 500;
/// How long creation waits for the URL's host to resolve before accepting it unchecked.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(rotate_webhook_secret))
        .routes(routes!(list_webhook_deliveries))
        .routes(routes!(retry_webhook_delivery))
}

/// A webhook event type (documentation of the strings `event_types` holds).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub enum WebhookEventType {
    /// A handoff was triggered (first time or retry).
    #[serde(rename = "handoff.initiated")]
    HandoffInitiated,
    /// A person accepted it.
    #[serde(rename = "handoff.completed")]
    HandoffCompleted,
    /// The transfer failed.
    #[serde(rename = "handoff.failed")]
    HandoffFailed,
    /// The customer left before a person accepted it.
    #[serde(rename = "handoff.abandoned")]
    HandoffAbandoned,
    /// A custom topic state.
    #[serde(rename = "handoff.state")]
    HandoffState,
    /// A session ended.
    #[serde(rename = "session.ended")]
    SessionEnded,
    /// A voice call was recorded.
    #[serde(rename = "call.completed")]
    CallCompleted,
}

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDto {
    /// Its id.
    pub id: Uuid,
    /// Where messages are POSTed (`http` or `https`).
    pub url: String,
    /// The event types it receives.
    #[schema(value_type = Vec<WebhookEventType>, example = json!(["handoff.initiated", "handoff.completed"]))]
    pub event_types: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// Whether messages are delivered. New messages are not enqueued while disabled; pending
    /// ones wait and resume when it is enabled again.
    pub enabled: bool,
    /// Why Baton disabled it (`410 Gone`, or failing continuously for 3 days); `null` when
    /// enabled, or disabled by hand.
    pub disabled_reason: Option<String>,
    /// Until when the secret replaced by the last rotation still signs (both signatures are
    /// sent until then); `null` when none does.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<WebhookRow> for WebhookDto {
    fn from(w: WebhookRow) -> Self {
        WebhookDto {
            id: w.id,
            url: w.url,
            event_types: w.event_types,
            description: w.description,
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            previous_secret_expires_at: w.previous_secret_expires_at.filter(|t| *t > Utc::now()),
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A webhook with its signing secret: only in the answer to its creation or a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookWithSecretResponse {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: WebhookDto,
    /// The signing secret, `whsec_` and base64: keep it, it is not shown again. Verify
    /// `webhook-signature` with it as the Standard Webhooks libraries do.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

/// The organization's webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookListResponse {
    /// Oldest first.
    pub webhooks: Vec<WebhookDto>,
}

/// Body of `POST /v1/webhooks`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `http` or `https` URL, without credentials, at most 2048 characters. Unless Baton runs
    /// with `--webhooks-allow-private`, it must not be or resolve to a loopback, private,
    /// link-local, CGNAT, multicast, unspecified or metadata address.
    #[schema(
        example = "https://example.com/baton-webhooks",
        max_length = 2048,
        pattern = "^[hH][tT][tT][pP][sS]?://"
    )]
    pub url: String,
    /// Event types to receive (at least one): `handoff.initiated`, `handoff.completed`,
    /// `handoff.failed`, `handoff.abandoned`, `handoff.state`, `session.ended`,
    /// `call.completed`.
    #[schema(value_type = Vec<WebhookEventType>, min_items = 1, example = json!(["handoff.initiated"]))]
    pub event_types: Vec<String>,
    /// Free text, at most 1000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: Option<String>,
}

/// Body of `PATCH /v1/webhooks/{webhook_id}`: the fields to change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    /// New URL (same rules as at creation).
    #[serde(default)]
    #[schema(max_length = 2048, pattern = "^[hH][tT][tT][pP][sS]?://")]
    pub url: Option<String>,
    /// New event types (same rules as at creation).
    #[serde(default)]
    #[schema(value_type = Option<Vec<WebhookEventType>>, min_items = 1)]
    pub event_types: Option<Vec<String>>,
    /// New description; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub description: Option<Option<String>>,
    /// `false` stops deliveries; `true` resumes them (and clears `disabled_reason`).
    #[serde(default)]
    pub enabled: Option<bool>,
}

fn present<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// One message to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryDto {
    /// Its id (for `…/deliveries/{delivery_id}/retry`).
    pub id: Uuid,
    /// The `webhook-id` header: the same on every attempt (deduplicate on it).
    pub message_id: String,
    /// The event type.
    pub event_type: String,
    /// `pending` (waiting for an attempt or a retry), `succeeded`, or `failed` (gave up after
    /// the retry window, or the endpoint answered 410).
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// The status code of the last answer (`null`: none yet, or no answer).
    pub last_response_code: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the last attempt started.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When it was enqueued (the batch's acknowledgement).
    pub created_at: DateTime<Utc>,
    /// When an attempt succeeded.
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<DeliveryRow> for DeliveryDto {
    fn from(d: DeliveryRow) -> Self {
        DeliveryDto {
            id: d.id,
            message_id: d.message_id,
            event_type: d.event_type,
            next_attempt_at: if d.status == "pending" {
                d.next_attempt_at
            } else {
                None
            },
            status: d.status,
            attempts: d.attempts,
            last_response_code: d.last_status_code,
            last_error: d.last_error,
            last_attempt_at: d.last_attempt_at,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

/// A page of an endpoint's delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryListResponse {
    /// Newest first.
    pub deliveries: Vec<DeliveryDto>,
    /// Pass as `next` for the following (older) page; `null` on the last page.
    pub next: Option<String>,
    /// Whether the endpoint is enabled.
    pub enabled: bool,
    /// Why Baton disabled the endpoint, if it did.
    pub disabled_reason: Option<String>,
}

/// Query of `GET /v1/webhooks/{webhook_id}/deliveries`. Unknown parameters are refused.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// The organization to read: required with a reseller token.
    #[param(value_type = Option<openapi::UuidParam>, inline)]
    pub organization_id: Option<String>,
    /// Only deliveries in this status: `pending`, `succeeded` or `failed`.
    #[param(value_type = Option<openapi::DeliveryStatusParam>, inline)]
    pub status: Option<String>,
    /// Deliveries per page, 1 to 500 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `next` of the previous page, as it was given.
    #[param(pattern = r"^[1-9][0-9]{0,18}$")]
    pub next: Option<String>,
}

impl ScopeQuery for DeliveriesQuery {
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

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("webhook `{id}` not found"))
}

/// The id in a path: a malformed one names no webhook (404).
fn webhook_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| not_found(text))
}

/// Checks a URL (form, then addresses); the field problem when refused.
async fn check_url(url: &str, config: &WebhookConfig) -> std::result::Result<(), FieldError> {
    let parsed = destination::parse_url(url).map_err(|e| FieldError::new("url", e))?;
    if !config.allow_private {
        destination::check_resolved(&parsed, RESOLVE_TIMEOUT)
            .await
            .map_err(|e| FieldError::new("url", e.to_string()))?;
    }
    Ok(())
}

/// Checks event types; the distinct ones in the order given.
fn check_types(types: &[String], problems: &mut Vec<FieldError>) -> Vec<String> {
    if types.is_empty() {
        problems.push(FieldError::new(
            "event_types",
            "must list at least one event type",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, t) in types.iter().enumerate() {
        if !is_event_type(t) {
            problems.push(FieldError::new(
                format!("event_types[{i}]"),
                format!(
                    "`{t}` is not a webhook event type (one of: {})",
                    EVENT_TYPES.join(", ")
                ),
            ));
        } else if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

fn check_description(d: Option<&str>, problems: &mut Vec<FieldError>) {
    if d.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
        problems.push(FieldError::new(
            "description",
            format!("longer than {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
}

/// Subscribe an endpoint to event types.
///
/// Answers the webhook with its signing secret, shown this once (and after each rotation).
/// Messages are POSTed as `{type, timestamp, data}` with the Standard Webhooks headers
/// `webhook-id`, `webhook-timestamp` and `webhook-signature`.
#[utoipa::path(post, path = "/v1/webhooks", tag = TAG,
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Created; the secret is shown this once", body = WebhookWithSecretResponse),
        (status = 400, description = "A bad URL, a refused destination, an unknown event type or a malformed body; `details` names the field", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks write_all, or is a reseller token", body = ErrorDto),
        (status = 409, description = "The organization has 50 webhooks already", body = ErrorDto),
        (status = 413, description = "The body is too large", body = ErrorDto),
        (status = 415, description = "The body is not JSON", body = ErrorDto),
    ))]
pub async fn create_webhook(
    State(pool): State<PgPool>,
    State(config): State<Arc<WebhookConfig>>,
    WriteAccess { org, .. }: WriteAccess,
    _: NoQuery,
    Json(body): Json<CreateWebhookRequest>,
) -> Result<Response> {
    let mut problems = Vec::new();
    let types = check_types(&body.event_types, &mut problems);
    check_description(body.description.as_deref(), &mut problems);
    if let Err(p) = check_url(&body.url, &config).await {
        problems.insert(0, p);
    }
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    if store::count(&pool, org).await? >= MAX_WEBHOOKS {
        return Err(ApiError::Conflict(format!(
            "the organization has {MAX_WEBHOOKS} webhooks already; delete one first"
        )));
    }
    let secret = signing::new_secret();
    let row = store::create(
        &pool,
        org,
        &body.url,
        &types,
        body.description.as_deref(),
        &secret,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookWithSecretResponse {
            webhook: row.into(),
            secret,
        }),
    )
        .into_response())
}

/// The organization's webhooks (without secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = TAG,
    params(HandoffQuery),
    responses(
        (status = 200, description = "The webhooks, oldest first", body = WebhookListResponse),
        (status = 400, description = "A bad or unknown query parameter, or no `organization_id` with a reseller token", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks read_all", body = ErrorDto),
        (status = 404, description = "`organization_id` is not an organization this token reads", body = ErrorDto),
    ))]
pub async fn list_webhooks(
    State(pool): State<PgPool>,
    scoped: Scoped<HandoffQuery>,
) -> Result<Json<WebhookListResponse>> {
    let org = scoped.orgs;
    Ok(Json(WebhookListResponse {
        webhooks: store::list(&pool, org)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

async fn found(pool: &PgPool, org: OrgId, id: &str) -> Result<WebhookRow> {
    store::get(pool, org, webhook_id(id)?)
        .await?
        .ok_or_else(|| not_found(id))
}

/// One webhook (without its secret).
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}", tag = TAG,
    params(("webhook_id" = Uuid, Path, description = "The webhook's id"), HandoffQuery),
    responses(
        (status = 200, description = "The webhook", body = WebhookDto),
        (status = 400, description = "A bad or unknown query parameter, or no `organization_id` with a reseller token", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks read_all", body = ErrorDto),
        (status = 404, description = "No such webhook for this token", body = ErrorDto),
    ))]
pub async fn get_webhook(
    State(pool): State<PgPool>,
    Path(id): Path<String>,
    scoped: Scoped<HandoffQuery>,
) -> Result<Json<WebhookDto>> {
    let org = scoped.orgs;
    Ok(Json(found(&pool, org, &id).await?.into()))
}

/// Change a webhook's URL, event types, description, or enable/disable it.
///
/// Enabling a webhook that Baton disabled clears `disabled_reason` and resumes its pending
/// deliveries.
#[utoipa::path(patch, path = "/v1/webhooks/{webhook_id}", tag = TAG,
    params(("webhook_id" = Uuid, Path, description = "The webhook's id")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, description = "The webhook as changed", body = WebhookDto),
        (status = 400, description = "A bad field (named in `details`) or a malformed body", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks write_all, or is a reseller token", body = ErrorDto),
        (status = 404, description = "No such webhook for this token", body = ErrorDto),
        (status = 413, description = "The body is too large", body = ErrorDto),
        (status = 415, description = "The body is not JSON", body = ErrorDto),
    ))]
pub async fn update_webhook(
    State(pool): State<PgPool>,
    State(config): State<Arc<WebhookConfig>>,
    WriteAccess { org, .. }: WriteAccess,
    Path(id): Path<String>,
    _: NoQuery,
    Json(body): Json<UpdateWebhookRequest>,
) -> Result<Json<WebhookDto>> {
    let uuid = webhook_id(&id)?;
    let mut problems = Vec::new();
    let types = body
        .event_types
        .as_ref()
        .map(|t| check_types(t, &mut problems));
    check_description(body.description.clone().flatten().as_deref(), &mut problems);
    if let Some(url) = &body.url
        && let Err(p) = check_url(url, &config).await
    {
        problems.insert(0, p);
    }
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let patch = WebhookPatch {
        url: body.url,
        event_types: types,
        description: body.description,
        enabled: body.enabled,
    };
    let row = store::update(&pool, org, uuid, &patch)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(row.into()))
}

/// Delete a webhook and its delivery log; pending deliveries are dropped.
#[utoipa::path(delete, path = "/v1/webhooks/{webhook_id}", tag = TAG,
    params(("webhook_id" = Uuid, Path, description = "The webhook's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A query parameter was sent (this endpoint takes none)", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks write_all, or is a reseller token", body = ErrorDto),
        (status = 404, description = "No such webhook for this token", body = ErrorDto),
    ))]
pub async fn delete_webhook(
    State(pool): State<PgPool>,
    WriteAccess { org, .. }: WriteAccess,
    Path(id): Path<String>,
    _: NoQuery,
) -> Result<StatusCode> {
    if store::delete(&pool, org, webhook_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&id))
    }
}

/// Replace a webhook's signing secret.
///
/// Answers the new secret, shown this once. The old one keeps signing for 24 hours: until then
/// every message carries both signatures in `webhook-signature`, space-separated, so receivers
/// can switch without losing a message.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/rotate-secret", tag = TAG,
    params(("webhook_id" = Uuid, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "The webhook with its new secret", body = WebhookWithSecretResponse),
        (status = 400, description = "A query parameter was sent (this endpoint takes none)", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks write_all, or is a reseller token", body = ErrorDto),
        (status = 404, description = "No such webhook for this token", body = ErrorDto),
    ))]
pub async fn rotate_webhook_secret(
    State(pool): State<PgPool>,
    WriteAccess { org, .. }: WriteAccess,
    Path(id): Path<String>,
    _: NoQuery,
) -> Result<Json<WebhookWithSecretResponse>> {
    let secret = signing::new_secret();
    let row = store::rotate(&pool, org, webhook_id(&id)?, &secret, ROTATION_GRACE)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(WebhookWithSecretResponse {
        webhook: row.into(),
        secret,
    }))
}

/// A webhook's delivery log, newest first, by cursor pages.
///
/// Each delivery shows its status, attempts, the last response code and error, and the time of
/// the next attempt; the page also says whether the endpoint is enabled and, if Baton disabled
/// it, why.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}/deliveries", tag = TAG,
    params(("webhook_id" = Uuid, Path, description = "The webhook's id"), DeliveriesQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryListResponse),
        (status = 400, description = "A bad or unknown query parameter, or no `organization_id` with a reseller token", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks read_all", body = ErrorDto),
        (status = 404, description = "No such webhook for this token", body = ErrorDto),
    ))]
pub async fn list_webhook_deliveries(
    State(pool): State<PgPool>,
    Path(id): Path<String>,
    scoped: Scoped<DeliveriesQuery>,
) -> Result<Json<DeliveryListResponse>> {
    let Scoped {
        orgs: org, query, ..
    } = scoped;
    let mut problems = Vec::new();
    let status = query.status.as_deref().map(str::trim);
    if let Some(s) = status
        && !["pending", "succeeded", "failed"].contains(&s)
    {
        problems.push(FieldError::new(
            "status",
            format!("`{s}` is not pending, succeeded or failed"),
        ));
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
    let before = match query.next.as_deref() {
        None => None,
        Some(text) => match text.trim().parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                problems.push(FieldError::new(
                    "next",
                    "not a cursor returned by this endpoint",
                ));
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let webhook = found(&pool, org, &id).await?;
    let mut rows = store::deliveries(&pool, org, webhook.id, status, before, limit + 1).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    Ok(Json(DeliveryListResponse {
        deliveries: rows.into_iter().map(Into::into).collect(),
        next,
        enabled: webhook.enabled,
        disabled_reason: webhook.disabled_reason,
    }))
}

/// Attempt a delivery again now, whatever its status (a manual retry).
///
/// The message keeps its `webhook-id` and body. A disabled endpoint's deliveries wait until it
/// is enabled again.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", tag = TAG,
    params(
        ("webhook_id" = Uuid, Path, description = "The webhook's id"),
        ("delivery_id" = Uuid, Path, description = "The delivery's id"),
    ),
    responses(
        (status = 202, description = "Due now; the delivery as it stands", body = DeliveryDto),
        (status = 400, description = "A query parameter was sent (this endpoint takes none)", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks write_all, or is a reseller token", body = ErrorDto),
        (status = 404, description = "No such webhook or delivery for this token", body = ErrorDto),
    ))]
pub async fn retry_webhook_delivery(
    State(pool): State<PgPool>,
    WriteAccess { org, .. }: WriteAccess,
    Path((id, delivery)): Path<(String, String)>,
    _: NoQuery,
) -> Result<Response> {
    let webhook = webhook_id(&id)?;
    let missing = || ApiError::NotFound(format!("delivery `{delivery}` not found"));
    let delivery_id = Uuid::parse_str(&delivery).map_err(|_| missing())?;
    let row = store::retry(&pool, org, webhook, delivery_id)
        .await?
        .ok_or_else(missing)?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryDto::from(row))).into_response())
}
