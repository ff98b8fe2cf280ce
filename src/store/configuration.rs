//! Handoff configuration documents and their revisions.
//!
//! An organization without a row has the default document at revision 0; the row is created by
//! its first PUT. A write is a compare-and-swap on the revision ([`replace_if`]): of several
//! writers that read the same revision, exactly one commits and the others change nothing, which
//! is what makes `If-Match` exact. [`lock`] takes the row lock for writers that must not retry.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::auth::OrgId;
use crate::domain::configuration::IdCounters;

/// What a writer needs of the row: the revision (for `If-Match`) and the id counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// 0 for the default document, else the number of accepted PUTs.
    pub revision: i64,
    /// The next id of each section.
    pub next_ids: IdCounters,
}

#[derive(sqlx::FromRow)]
struct LockedRow {
    revision: i64,
    next_availability_id: i64,
    next_custom_guideline_id: i64,
    next_routing_profile_id: i64,
}

impl From<LockedRow> for Locked {
    fn from(r: LockedRow) -> Locked {
        Locked {
            revision: r.revision,
            next_ids: IdCounters {
                availability: r.next_availability_id,
                custom_guideline: r.next_custom_guideline_id,
                routing_profile: r.next_routing_profile_id,
            },
        }
    }
}

/// The revision and id counters a write starts from, read without a lock (`None`: no row yet,
/// so revision 0 and fresh counters).
pub async fn state(db: impl PgExecutor<'_>, org: OrgId) -> sqlx::Result<Option<Locked>> {
    sqlx::query_as::<_, LockedRow>(
        r#"select revision, next_availability_id, next_custom_guideline_id,
                  next_routing_profile_id
           from handoff_configurations where org_id = $1"#,
    )
    .bind(org.get())
    .fetch_optional(db)
    .await
    .map(|row| row.map(Into::into))
}

/// The stored document (JSON text, exactly as GET answers it) and its revision, or `None` when
/// the organization has none yet (its document is then the default at revision 0).
pub async fn get(db: impl PgExecutor<'_>, org: OrgId) -> sqlx::Result<Option<(String, i64)>> {
    sqlx::query_as("select document::text, revision from handoff_configurations where org_id = $1")
        .bind(org.get())
        .fetch_optional(db)
        .await
}

/// Locks the organization's document row until the end of the transaction `conn` is in and
/// returns its revision and id counters, creating the row on first use with `initial_document`
/// (the default document's JSON) at revision 0.
pub async fn lock(
    conn: &mut PgConnection,
    org: OrgId,
    initial_document: &str,
) -> sqlx::Result<Locked> {
    const SELECT: &str = r#"select revision, next_availability_id, next_custom_guideline_id,
                                   next_routing_profile_id
                            from handoff_configurations where org_id = $1
                            for update"#;
    if let Some(row) = sqlx::query_as::<_, LockedRow>(SELECT)
        .bind(org.get())
        .fetch_optional(&mut *conn)
        .await?
    {
        return Ok(row.into());
    }
    // First write: there is no row to lock yet. Insert the default one (a concurrent first
    // writer's insert makes ours a no-op, after waiting for it to commit), then lock it.
    sqlx::query(
        r#"insert into handoff_configurations (org_id, document, revision)
           values ($1, $2::json, 0)
           on conflict (org_id) do nothing"#,
    )
    .bind(org.get())
    .bind(initial_document)
    .execute(&mut *conn)
    .await?;
    sqlx::query_as::<_, LockedRow>(SELECT)
        .bind(org.get())
        .fetch_one(&mut *conn)
        .await
        .map(Into::into)
}

/// Replaces the document with `document` (JSON text, as GET will answer it) if it is still at
/// revision `expected`, bumps the revision and records it, all in one statement. Returns the new
/// revision and its time, or `None` (and changes nothing) when another write came first.
pub async fn replace_if(
    db: impl PgExecutor<'_>,
    org: OrgId,
    expected: i64,
    document: &str,
    next_ids: IdCounters,
    token_jti: Uuid,
) -> sqlx::Result<Option<(i64, DateTime<Utc>)>> {
    // Revision 0 may have no row yet (the usual case) or the row `lock` created: insert, or
    // update only a row still at 0. Later revisions always have a row. A concurrent writer of
    // the same revision makes the update wait, then find the new revision and match nothing.
    let sql = if expected == 0 {
        r#"with written as (
               insert into handoff_configurations as c
                   (org_id, document, revision, next_availability_id,
                    next_custom_guideline_id, next_routing_profile_id)
               values ($1, $2::json, 1, $3, $4, $5)
               on conflict (org_id) do update
               set document = excluded.document, revision = 1,
                   next_availability_id = excluded.next_availability_id,
                   next_custom_guideline_id = excluded.next_custom_guideline_id,
                   next_routing_profile_id = excluded.next_routing_profile_id,
                   updated_at = now()
               where c.revision = 0
               returning org_id, revision, updated_at, document
           )
           insert into handoff_configuration_revisions (org_id, revision, created_at, token_jti, document)
           select org_id, revision, updated_at, $6, document from written
           returning revision, created_at"#
    } else {
        r#"with written as (
               update handoff_configurations
               set document = $2::json, revision = revision + 1,
                   next_availability_id = $3, next_custom_guideline_id = $4,
                   next_routing_profile_id = $5, updated_at = now()
               where org_id = $1 and revision = $7
               returning org_id, revision, updated_at, document
           )
           insert into handoff_configuration_revisions (org_id, revision, created_at, token_jti, document)
           select org_id, revision, updated_at, $6, document from written
           returning revision, created_at"#
    };
    let mut query = sqlx::query_as(sql)
        .bind(org.get())
        .bind(document)
        .bind(next_ids.availability)
        .bind(next_ids.custom_guideline)
        .bind(next_ids.routing_profile)
        .bind(token_jti);
    if expected != 0 {
        query = query.bind(expected);
    }
    query.fetch_optional(db).await
}

/// One accepted PUT.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Revision {
    /// Its number (1 for the first PUT).
    pub revision: i64,
    /// When it was committed.
    pub created_at: DateTime<Utc>,
    /// The id of the token that wrote it.
    pub token_jti: Uuid,
    /// The document it produced (JSON text, as GET answered it).
    pub document: String,
}

/// Up to `limit` revisions older than `before` (all when `None`), newest first.
pub async fn revisions(
    db: impl PgExecutor<'_>,
    org: OrgId,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<Revision>> {
    sqlx::query_as(
        r#"select revision, created_at, token_jti, document::text as document
           from handoff_configuration_revisions
           where org_id = $1 and ($2::bigint is null or revision < $2)
           order by revision desc
           limit $3"#,
    )
    .bind(org.get())
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Dates an organization's first and only revision to `at` when it is later (`serve --demo`:
/// the demo's configuration stands from the start of its generated history). Does nothing
/// once a second revision exists or the first is already that old.
pub async fn date_first_revision(
    db: impl PgExecutor<'_>,
    org: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"update handoff_configuration_revisions r set created_at = $2
           where r.org_id = $1 and r.revision = 1 and r.created_at > $2
             and not exists (select 1 from handoff_configuration_revisions n
                             where n.org_id = $1 and n.revision > 1)"#,
    )
    .bind(org)
    .bind(at)
    .execute(db)
    .await?;
    Ok(())
}
