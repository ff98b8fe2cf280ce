//! `GET /v1/me`: who the token speaks for and what it may read (our extension). Handy to check a
//! token, and to find the organization ids a reseller token can pass as `organization_id`.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::AppState;
use super::error::{ErrorDto, Result};
use super::extract::{Json, NoQuery};
use crate::auth::Scope;
use crate::auth::extract::{Principal, ReadAccess};
use crate::store;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me))
}

/// An organization as the token sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrganizationDto {
    /// Its id (what `organization_id` / `organizationId` take).
    pub id: Uuid,
    /// Its slug (what PolyAI's `account_id` takes, as does the id).
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// Its IANA time zone, the default for day and hour buckets.
    pub timezone: String,
}

impl From<store::tenants::Organization> for OrganizationDto {
    fn from(o: store::tenants::Organization) -> Self {
        OrganizationDto {
            id: o.id,
            slug: o.slug,
            name: o.name,
            timezone: o.timezone,
        }
    }
}

/// The caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MeResponse {
    /// `organization` or `reseller`.
    pub kind: String,
    /// The token's id (`jti`), the handle for `baton token revoke`.
    pub token_id: Uuid,
    /// The token's scopes.
    #[schema(value_type = Vec<String>, example = json!(["read_all"]))]
    pub scopes: Vec<Scope>,
    /// The reseller's id, for a reseller token.
    pub reseller_id: Option<Uuid>,
    /// The organizations the token reads: its own, or all of the reseller's.
    pub organizations: Vec<OrganizationDto>,
}

/// Who the token speaks for.
#[utoipa::path(get, path = "/v1/me", tag = "operations",
    responses(
        (status = 200, description = "The caller", body = MeResponse),
        (status = 400, description = "A query parameter was sent (this endpoint takes none; the message names it)", body = ErrorDto),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorDto),
        (status = 403, description = "The token lacks read_all", body = ErrorDto),
    ))]
pub async fn get_me(
    State(pool): State<PgPool>,
    ReadAccess(caller): ReadAccess,
    _: NoQuery,
) -> Result<Json<MeResponse>> {
    let mut organizations = Vec::new();
    for org in crate::auth::scope::readable_orgs(&pool, &caller).await? {
        if let Some(o) = store::tenants::org_by_id(&pool, org.get()).await? {
            organizations.push(o.into());
        }
    }
    let (kind, reseller_id) = match caller.principal {
        Principal::Org(_) => ("organization", None),
        Principal::Reseller(r) => ("reseller", Some(r.get())),
    };
    Ok(Json(MeResponse {
        kind: kind.to_owned(),
        token_id: caller.jti,
        scopes: caller.scopes,
        reseller_id,
        organizations,
    }))
}
