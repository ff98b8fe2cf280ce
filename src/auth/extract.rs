//! The axum side of auth: the only place a request becomes an [`OrgId`].
//!
//! The token comes from `Authorization: Bearer …` or, as PolyAI clients send it, `x-api-key`.
//! Missing, malformed, badly signed, expired, not yet valid, unknown, revoked tokens and tokens
//! whose claims differ from what was issued are 401s with `WWW-Authenticate: Bearer`; a missing scope is a 403 with Quickchat's exact text.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sqlx::PgPool;
use uuid::Uuid;

use super::revocation::TokenVerdicts;
use super::{Keys, OrgId, ResellerId, Scope, Subject, TokenError, grants};
use crate::http::error::ApiError;

/// The tenant a verified token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// An organization's token.
    Org(OrgId),
    /// A reseller's token: reads the reseller's organizations.
    Reseller(ResellerId),
}

/// A caller whose token was verified (any scope).
#[derive(Debug, Clone)]
pub struct Caller {
    /// Whom the token speaks for.
    pub principal: Principal,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The token's id.
    pub jti: Uuid,
}

impl Caller {
    /// Fails with Quickchat's 403 unless the token grants `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if grants(&self.scopes, scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "Insufficient token scope. Required: {scope}"
            )))
        }
    }

    /// The organization of an org token; a reseller token is refused with 403 (endpoints that
    /// act on one organization's own data, such as writes).
    pub fn own_org(&self) -> Result<OrgId, ApiError> {
        match self.principal {
            Principal::Org(org) => Ok(org),
            Principal::Reseller(_) => Err(ApiError::Forbidden(
                "this endpoint needs an organization token; reseller tokens can only read"
                    .to_owned(),
            )),
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    PgPool: FromRef<S>,
    Arc<Keys>: FromRef<S>,
    Arc<TokenVerdicts>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let token = bearer_token(parts)?;
        let keys = Arc::<Keys>::from_ref(state);
        let claims = keys
            .verify(token)
            .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
        let subject = claims.subject().ok_or_else(|| {
            ApiError::Unauthorized("token must name exactly one of `org` or `reseller`".to_owned())
        })?;
        let pool = PgPool::from_ref(state);
        let record = Arc::<TokenVerdicts>::from_ref(state)
            .record(&pool, claims.jti)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("unknown token".to_owned()))?;
        // Forgery (other claims re-signed under an issued jti) before revocation: a forged
        // token is told only that it does not match.
        if !claims.matches(&record) {
            return Err(ApiError::Unauthorized(TokenError::Mismatch.to_string()));
        }
        if record.revoked {
            return Err(ApiError::Unauthorized("token has been revoked".to_owned()));
        }
        let principal = match subject {
            Subject::Org(id) => Principal::Org(OrgId(id)),
            Subject::Reseller(id) => Principal::Reseller(ResellerId(id)),
        };
        let span = tracing::Span::current();
        match principal {
            Principal::Org(org) => span.record("org", tracing::field::display(org)),
            Principal::Reseller(r) => span.record("reseller", tracing::field::display(r.get())),
        };
        let caller = Caller {
            principal,
            scopes: claims.scopes,
            jti: claims.jti,
        };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    if let Some(value) = parts.headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| {
            ApiError::Unauthorized("Authorization header is not valid text".to_owned())
        })?;
        let (scheme, token) = value.trim().split_once(' ').ok_or_else(|| {
            ApiError::Unauthorized("Authorization header must be `Bearer <token>`".to_owned())
        })?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized(
                "Authorization header must use the Bearer scheme".to_owned(),
            ));
        }
        return Ok(token.trim());
    }
    if let Some(value) = parts.headers.get("x-api-key") {
        return value
            .to_str()
            .map(str::trim)
            .map_err(|_| ApiError::Unauthorized("x-api-key header is not valid text".to_owned()));
    }
    Err(ApiError::Unauthorized(
        "missing token: send `Authorization: Bearer <token>` or `x-api-key: <token>`".to_owned(),
    ))
}

/// A caller whose token grants `read_all` (or `write_all`).
#[derive(Debug, Clone)]
pub struct ReadAccess(pub Caller);

impl<S> FromRequestParts<S> for ReadAccess
where
    S: Send + Sync,
    PgPool: FromRef<S>,
    Arc<Keys>: FromRef<S>,
    Arc<TokenVerdicts>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(Scope::ReadAll)?;
        Ok(ReadAccess(caller))
    }
}

/// A caller whose token grants `write_all`. Reseller tokens never write: they get a 403.
#[derive(Debug, Clone)]
pub struct WriteAccess {
    /// The verified caller.
    pub caller: Caller,
    /// The organization written to (the token's own).
    pub org: OrgId,
}

impl<S> FromRequestParts<S> for WriteAccess
where
    S: Send + Sync,
    PgPool: FromRef<S>,
    Arc<Keys>: FromRef<S>,
    Arc<TokenVerdicts>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(Scope::WriteAll)?;
        let org = caller.own_org()?;
        Ok(WriteAccess { caller, org })
    }
}
