//! Issued tokens and their revocation.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// A token to record at issue.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    /// The token's id.
    pub jti: Uuid,
    /// Its organization (exactly one of `org_id`, `reseller_id`).
    pub org_id: Option<Uuid>,
    /// Its reseller.
    pub reseller_id: Option<Uuid>,
    /// Its scopes' wire names.
    pub scopes: &'a [&'a str],
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// Records an issued token.
pub async fn insert(db: impl PgExecutor<'_>, token: &NewToken<'_>) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into api_tokens (jti, org_id, reseller_id, scopes, issued_at, expires_at)
           values ($1, $2, $3, $4, $5, $6)"#,
    )
    .bind(token.jti)
    .bind(token.org_id)
    .bind(token.reseller_id)
    .bind(token.scopes)
    .bind(token.issued_at)
    .bind(token.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// What was recorded when a token was issued, and whether it has been revoked since.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRecord {
    /// Its organization (exactly one of `org_id`, `reseller_id`).
    pub org_id: Option<Uuid>,
    /// Its reseller.
    pub reseller_id: Option<Uuid>,
    /// Its scopes' wire names.
    pub scopes: Vec<String>,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// Whether it has been revoked.
    pub revoked: bool,
}

/// The record of `jti`, or `None` when Baton never issued it (or its row was deleted).
pub async fn record(db: impl PgExecutor<'_>, jti: Uuid) -> sqlx::Result<Option<TokenRecord>> {
    sqlx::query_as(
        r#"select org_id, reseller_id, scopes, issued_at, expires_at,
                  revoked_at is not null as revoked
           from api_tokens where jti = $1"#,
    )
    .bind(jti)
    .fetch_optional(db)
    .await
}

/// Revokes `jti`; returns when it was revoked (the first revocation's time when it already
/// was), or `None` when no such token was issued. Servers hear of it on commit (`NOTIFY`).
pub async fn revoke(pool: &PgPool, jti: Uuid) -> sqlx::Result<Option<DateTime<Utc>>> {
    let mut tx = pool.begin().await?;
    let at = sqlx::query_scalar(
        r#"update api_tokens set revoked_at = coalesce(revoked_at, now())
           where jti = $1
           returning revoked_at"#,
    )
    .bind(jti)
    .fetch_optional(&mut *tx)
    .await?;
    if at.is_some() {
        sqlx::query("select pg_notify($1, $2)")
            .bind(crate::auth::revocation::CHANNEL)
            .bind(jti.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(at)
}
