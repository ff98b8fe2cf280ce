//! Planner statistics of the tables ingest writes (see [`crate::db::stats`] for when).

use sqlx::PgPool;

/// Every table ingest writes, whose statistics the read and ingest plans depend on.
const INGESTED_TABLES: &str = "events, sessions, handoffs, handoff_states, handoff_references, \
     agents, calls, session_rollups, handoff_rollup_totals, handoff_rollup_breakdown, \
     handoff_session_reasons, call_metric_rollups, call_escalation_rollups, call_volume_days, \
     reseller_call_rollups, reseller_agent_rollups, reseller_escalation_rollups, \
     reseller_call_volume_days, webhook_deliveries, webhook_outbox";

/// `ANALYZE`s the ingested tables unless another server is doing it right now; returns whether
/// it ran, and the events table's row estimate afterwards.
pub async fn analyze_ingested(pool: &PgPool) -> sqlx::Result<Option<i64>> {
    let mut tx = pool.begin().await?;
    // One server at a time: the others skip rather than wait (their loads are in the same
    // tables, so the statistics come out the same).
    let mine: bool =
        sqlx::query_scalar("select pg_try_advisory_xact_lock(hashtext('baton.analyze'))")
            .fetch_one(&mut *tx)
            .await?;
    if !mine {
        return Ok(None);
    }
    // ANALYZE samples a bounded number of rows per table (seconds at most), but more than the
    // statement timeout meant for requests may allow on a busy machine.
    sqlx::query("set local statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("analyze {INGESTED_TABLES}"))
        .execute(&mut *tx)
        .await?;
    let rows: f32 =
        sqlx::query_scalar("select reltuples from pg_class where oid = 'events'::regclass")
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Some(rows.max(0.0) as i64))
}
