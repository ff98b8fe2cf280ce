//! Rollups: aggregates the read endpoints answer from, maintained in the ingest transaction so
//! that what was acknowledged is counted exactly once, and reads never scan raw rows.
//!
//! Each read model adds its own maintenance here; each receives the batch's [`Changes`]: the
//! new and changed rows, and for rows that existed before the batch their previous state (to
//! subtract before adding the new one).

use sqlx::PgConnection;

use crate::auth::OrgId;
use crate::domain::projection::Changes;

/// Updates every rollup for one applied batch.
///
/// The reseller's rollups come last: the organizations of a reseller ingest concurrently (each
/// under its own lock) and update the same reseller rows, whose row locks are then held only
/// from there to the commit.
///
/// `configured`: whether the organization has a handoff configuration revision, when already
/// known (`None`: the lifecycle looks the revisions up).
pub async fn apply(
    conn: &mut PgConnection,
    org: OrgId,
    changes: &Changes,
    configured: Option<bool>,
) -> sqlx::Result<()> {
    super::metrics::apply(&mut *conn, org, &changes.calls).await?;
    super::analytics::apply(&mut *conn, org, changes).await?;
    super::lifecycle::apply(&mut *conn, org, changes, configured).await?;
    super::metrics::apply_reseller(conn, org, &changes.calls).await?;
    Ok(())
}
