//! Raw event retention: deleting raw events that occurred before a cutoff, a bounded batch per
//! transaction, and remembering per organization how far that went.
//!
//! Policy: only the raw events go; projections and rollups stay, so every figure is unchanged.
//! Each organization whose events were deleted gets a horizon (`event_retention.pruned_before`):
//! ingest treats an event that occurred before it as already stored (its id may have been
//! deleted, so a re-send could not be told from a new event and would be applied twice), and
//! `baton rebuild` leaves such an organization alone (it cannot recompute what it no longer has).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Deletes at most `limit` raw events that occurred before `cutoff`, in one transaction, and
/// moves the horizon of the organizations they belonged to. Returns how many were deleted.
pub async fn prune_batch(pool: &PgPool, cutoff: DateTime<Utc>, limit: i64) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    // The one DELETE the event store's trigger lets through, and only in this transaction.
    // `set local`, not `set_config()`: Citus forwards it to the shards (see docs/SCALING.md).
    sqlx::query("set local baton.pruning = 'on'")
        .execute(&mut *tx)
        .await?;
    let per_org: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        // By key rather than by `ctid`: the same statement works on a table distributed by
        // organization (see docs/SCALING.md), where a row's `ctid` means nothing across shards.
        r#"with gone as (
               delete from events e
               using (select org_id, event_id from events where occurred_at < $1 limit $2) d
               where e.org_id = d.org_id and e.event_id = d.event_id
               returning e.org_id)
           select org_id, count(*) from gone group by org_id"#,
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let orgs: Vec<uuid::Uuid> = per_org.iter().map(|(o, _)| *o).collect();
    let counts: Vec<i64> = per_org.iter().map(|(_, n)| *n).collect();
    sqlx::query(
        r#"insert into event_retention (org_id, pruned_before, events_pruned, last_pruned_at)
           select o, $3, n, now() from unnest($1::uuid[], $2::int8[]) as u(o, n)
           on conflict (org_id) do update set
               pruned_before = greatest(event_retention.pruned_before, excluded.pruned_before),
               events_pruned = event_retention.events_pruned + excluded.events_pruned,
               last_pruned_at = excluded.last_pruned_at"#,
    )
    .bind(&orgs)
    .bind(&counts)
    .bind(cutoff)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(counts.iter().map(|n| *n as u64).sum())
}
