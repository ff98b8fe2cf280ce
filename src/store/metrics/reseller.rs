//! A reseller's call figures: the totals and agent rows of its rollup buckets, the agent rows
//! held between requests where their version still stands (see [`AgentCache`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::columns::{SUM_COLUMNS, call_sums};
use super::shared::{Owner, span_arrays, spans};
use crate::domain::buckets::{Grain, Segment};
use crate::domain::metrics::{AgentRow, CallSums};
use crate::store::agent_cache::{AgentCache, Bucket};

/// The agent columns of `reseller_agent_rollups` as arrays, in [`AgentRow`] order.
const AGENT_ARRAYS: &str = "array_agg(x.org_id), array_agg(x.agent_id), array_agg(x.calls),
    array_agg(x.resolved), array_agg(x.transferred), array_agg(x.abandoned),
    array_agg(x.duration_sum), array_agg(x.sentiment_calls), array_agg(x.positive_calls)";

/// Per bucket of the spans `$2`…`$4` of reseller `$1`: grain, start, version, the totals
/// ([`SUM_COLUMNS`]), then the agent rows as arrays ([`AGENT_ARRAYS`]), or nulls for the buckets
/// the caller holds at the version read (`$5`: the versions held; one sequence numbers every
/// write of every bucket, so a version names one bucket in one state).
static RESELLER_BUCKETS_SQL: LazyLock<String> = LazyLock::new(|| {
    let totals: Vec<String> = SUM_COLUMNS.iter().map(|c| format!("r.{c}")).collect();
    format!(
        "select r.grain, r.bucket, r.version, {totals}, a.*
         from {spans}
         cross join lateral (
             select {AGENT_ARRAYS}
             from reseller_agent_rollups x
             where x.reseller_id = $1 and x.grain = r.grain and x.bucket = r.bucket
               and r.version <> all($5::int8[])
         ) a",
        totals = totals.join(", "),
        spans = spans("reseller_call_rollups", Owner::Reseller),
    )
});

/// The totals and the agent rows of the buckets of `spans` (the agent rows from `cache` where
/// it holds the version read, otherwise read and then held).
pub(super) async fn read_buckets(
    pool: &PgPool,
    cache: &AgentCache,
    reseller: Uuid,
    spans: &[Segment],
) -> sqlx::Result<(CallSums, Vec<Arc<[AgentRow]>>)> {
    if spans.is_empty() {
        return Ok((CallSums::default(), Vec::new()));
    }
    // The buckets held, whatever their version: PostgreSQL says which are still current.
    let mut held: HashMap<(Grain, DateTime<Utc>), Bucket> = HashMap::new();
    for span in spans {
        for bucket in span.buckets() {
            if let Some(b) = cache.get(&(reseller, span.grain, bucket)) {
                held.insert((span.grain, bucket), b);
            }
        }
    }
    let (grains, from, to) = span_arrays(spans);
    let rows = sqlx::query(&RESELLER_BUCKETS_SQL)
        .bind(reseller)
        .bind(grains)
        .bind(from)
        .bind(to)
        .bind(held.values().map(|b| b.0).collect::<Vec<i64>>())
        .fetch_all(pool)
        .await?;
    let mut totals = CallSums::default();
    let mut agents = Vec::with_capacity(rows.len());
    for row in &rows {
        let grain = Grain::from_seconds(row.try_get(0)?)
            .ok_or_else(|| sqlx::Error::Decode("a grain of no length".into()))?;
        let bucket: DateTime<Utc> = row.try_get(1)?;
        let version: i64 = row.try_get(2)?;
        totals.add(&call_sums(row)?);
        match held.get(&(grain, bucket)) {
            Some((v, rows)) if *v == version => agents.push(rows.clone()),
            _ => {
                let rows = agent_rows_at(row, 3 + SUM_COLUMNS.len())?;
                cache.put((reseller, grain, bucket), version, rows.clone());
                agents.push(rows);
            }
        }
    }
    Ok((totals, agents))
}

/// The agent rows of a bucket from the [`AGENT_ARRAYS`] at column `at` (nulls: none).
fn agent_rows_at(row: &sqlx::postgres::PgRow, at: usize) -> sqlx::Result<Arc<[AgentRow]>> {
    let orgs: Option<Vec<Uuid>> = row.try_get(at)?;
    let agents: Option<Vec<String>> = row.try_get(at + 1)?;
    let count = |i: usize| -> sqlx::Result<Vec<i64>> {
        Ok(row
            .try_get::<Option<Vec<i64>>, _>(at + i)?
            .unwrap_or_default())
    };
    let (calls, resolved, transferred, abandoned) = (count(2)?, count(3)?, count(4)?, count(5)?);
    let durations: Vec<f64> = row
        .try_get::<Option<Vec<f64>>, _>(at + 6)?
        .unwrap_or_default();
    let (sentiment, positive) = (count(7)?, count(8)?);
    let orgs = orgs.unwrap_or_default();
    let n = orgs.len();
    let lengths = [
        agents.as_ref().map_or(0, Vec::len),
        calls.len(),
        resolved.len(),
        transferred.len(),
        abandoned.len(),
        durations.len(),
        sentiment.len(),
        positive.len(),
    ];
    if lengths.iter().any(|&l| l != n) {
        return Err(sqlx::Error::Decode(
            "agent arrays of one bucket differ in length".into(),
        ));
    }
    Ok(orgs
        .into_iter()
        .zip(agents.unwrap_or_default())
        .enumerate()
        .map(|(i, (org_id, agent_id))| AgentRow {
            org_id,
            agent_id: agent_id.into_boxed_str(),
            calls: calls[i],
            resolved: resolved[i],
            transferred: transferred[i],
            abandoned: abandoned[i],
            duration_sum: durations[i],
            sentiment_calls: sentiment[i],
            positive_calls: positive[i],
        })
        .collect())
}
