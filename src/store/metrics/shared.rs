//! Reads shared by both sources of call figures: the span scans of a rollup table, the
//! escalation reasons and the day rows.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::buckets::{Cover, Segment};
use crate::domain::metrics::DaySlots;

/// A stored day of slots as read.
type DayRow = (NaiveDate, Vec<i64>, Vec<i64>, Vec<f64>);

/// Whose rollups a span read covers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Owner {
    /// Organizations' (`org_id = any($1)`: `$1` binds a uuid array).
    Orgs,
    /// One reseller's (`reseller_id = $1`).
    Reseller,
}

/// The rows of a rollup table for the spans `$2`…`$4` ([`span_arrays`]) of the owner `$1`, as
/// a table `r`: one primary-key range scan per span (and organization). `offset 0` keeps each
/// span its own index scan under any plan: a generic plan of fixed `bucket >= $n` conditions
/// read an organization's whole history.
pub(super) fn spans(table: &str, owner: Owner) -> String {
    let key = match owner {
        Owner::Orgs => "t.org_id = any($1)",
        Owner::Reseller => "t.reseller_id = $1",
    };
    format!(
        "unnest($2::int4[], $3::timestamptz[], $4::timestamptz[]) as s(grain, lo, hi)
         cross join lateral (
             select * from {table} t
             where {key} and t.grain = s.grain and t.bucket >= s.lo and t.bucket < s.hi
             offset 0
         ) r"
    )
}

/// A cover's spans as the arrays [`spans`] binds at `$2`…`$4`.
pub(super) type SpanArrays = (Vec<i32>, Vec<DateTime<Utc>>, Vec<DateTime<Utc>>);

pub(super) fn span_arrays(spans: &[Segment]) -> SpanArrays {
    (
        spans.iter().map(|s| s.grain.seconds()).collect(),
        spans.iter().map(|s| s.from).collect(),
        spans.iter().map(|s| s.to).collect(),
    )
}

/// Escalation reasons with their calls and seconds over a cover's spans of `table`, whose
/// owner is `key` (`owner` says which).
pub(super) async fn read_escalations<K>(
    pool: &PgPool,
    table: &str,
    owner: Owner,
    key: K,
    cover: &Cover,
) -> sqlx::Result<Vec<(String, i64, f64)>>
where
    K: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    if cover.segments.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "select r.reason, sum(r.calls::float8)::int8, sum(r.seconds_sum) from {spans} group by r.reason",
        spans = spans(table, owner)
    );
    let (grains, from, to) = span_arrays(&cover.segments);
    sqlx::query_as(&sql)
        .bind(key)
        .bind(grains)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await
}

/// The days of slots of `table` (keyed by `key`) for the rolled part of a cover, summed over
/// `ids`. With `hourly`, the days strictly inside the rolled part come as 24 hour slots, the
/// first and last as 96 quarter-hour slots.
pub(super) async fn read_days(
    pool: &PgPool,
    table: &str,
    key: &str,
    ids: &[Uuid],
    cover: &Cover,
    hourly: bool,
) -> sqlx::Result<Vec<(NaiveDate, DaySlots)>> {
    let Some((from, to)) = cover.rolled() else {
        return Ok(Vec::new());
    };
    let first = from.date_naive();
    let last = (to - chrono::Duration::minutes(15)).date_naive();
    let columns = if hourly {
        "case when day = $2 or day = $3 then calls else hour_calls end,
         case when day = $2 or day = $3 then resolved else hour_resolved end,
         case when day = $2 or day = $3 then seconds else hour_seconds end"
    } else {
        "calls, resolved, seconds"
    };
    let rows: Vec<DayRow> = sqlx::query_as(&format!(
        "select day, {columns} from {table}
         where {key} = any($1) and day >= $2 and day <= $3"
    ))
    .bind(ids)
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await?;
    let mut by_day: HashMap<NaiveDate, DaySlots> = HashMap::new();
    for (day, calls, resolved, seconds) in rows {
        match by_day.get_mut(&day) {
            None => {
                by_day.insert(
                    day,
                    DaySlots {
                        calls,
                        resolved,
                        seconds,
                    },
                );
            }
            Some(s) => {
                // Several rows of one day come only from several organizations (a source of
                // one table and one kind of slots), so their slots are alike.
                for (i, c) in calls.iter().enumerate().take(s.calls.len()) {
                    s.calls[i] += c;
                    s.resolved[i] += resolved.get(i).copied().unwrap_or(0);
                    s.seconds[i] += seconds.get(i).copied().unwrap_or(0.0);
                }
            }
        }
    }
    let mut days: Vec<(NaiveDate, DaySlots)> = by_day.into_iter().collect();
    days.sort_by_key(|(d, _)| *d);
    Ok(days)
}
