//! Resellers and organizations.

use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// A reseller row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Reseller {
    /// Its id.
    pub id: Uuid,
    /// Its unique slug.
    pub slug: String,
    /// Its display name.
    pub name: String,
}

/// An organization row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Organization {
    /// Its id.
    pub id: Uuid,
    /// Its unique slug.
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// Its reseller, if any.
    pub reseller_id: Option<Uuid>,
    /// Its IANA time zone.
    pub timezone: String,
}

/// Inserts a reseller.
pub async fn insert_reseller(
    db: impl PgExecutor<'_>,
    slug: &str,
    name: &str,
) -> sqlx::Result<Reseller> {
    sqlx::query_as(
        r#"insert into resellers (id, slug, name) values ($1, $2, $3)
           returning id, slug, name"#,
    )
    .bind(Uuid::now_v7())
    .bind(slug)
    .bind(name)
    .fetch_one(db)
    .await
}

/// Inserts an organization.
pub async fn insert_org(
    db: impl PgExecutor<'_>,
    slug: &str,
    name: &str,
    reseller_id: Option<Uuid>,
    timezone: &str,
) -> sqlx::Result<Organization> {
    sqlx::query_as(
        r#"insert into organizations (id, slug, name, reseller_id, timezone)
           values ($1, $2, $3, $4, $5)
           returning id, slug, name, reseller_id, timezone"#,
    )
    .bind(Uuid::now_v7())
    .bind(slug)
    .bind(name)
    .bind(reseller_id)
    .bind(timezone)
    .fetch_one(db)
    .await
}

/// A reseller by slug.
pub async fn reseller_by_slug(
    db: impl PgExecutor<'_>,
    slug: &str,
) -> sqlx::Result<Option<Reseller>> {
    sqlx::query_as("select id, slug, name from resellers where slug = $1")
        .bind(slug)
        .fetch_optional(db)
        .await
}

/// An organization by slug.
pub async fn org_by_slug(
    db: impl PgExecutor<'_>,
    slug: &str,
) -> sqlx::Result<Option<Organization>> {
    sqlx::query_as(
        "select id, slug, name, reseller_id, timezone from organizations where slug = $1",
    )
    .bind(slug)
    .fetch_optional(db)
    .await
}

/// An organization by id.
pub async fn org_by_id(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Organization>> {
    sqlx::query_as("select id, slug, name, reseller_id, timezone from organizations where id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Whether organization `org_id` belongs to reseller `reseller_id`.
pub async fn reseller_owns(pool: &PgPool, reseller_id: Uuid, org_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select exists(select 1 from organizations where id = $1 and reseller_id = $2)",
    )
    .bind(org_id)
    .bind(reseller_id)
    .fetch_one(pool)
    .await
}

/// The ids of a reseller's organizations, oldest first.
pub async fn reseller_org_ids(pool: &PgPool, reseller_id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "select id from organizations where reseller_id = $1 order by created_at, id",
    )
    .bind(reseller_id)
    .fetch_all(pool)
    .await
}
