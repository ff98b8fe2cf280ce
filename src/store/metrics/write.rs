//! Ingest's side of the call rollups: a batch's new calls added to the organization's rollups
//! and to its reseller's, one set-based upsert per table (calls are insert-only, so a call is
//! added once and never subtracted). What a call adds is decided in
//! [`crate::domain::metrics`] ([`bucket_sums`], [`day_slots`]); this module only writes it.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::NaiveDate;
use sqlx::PgConnection;
use uuid::Uuid;

use super::columns::{AGENT_COLUMNS, SUM_COLUMNS, count_of, float_of, is_float};
use crate::auth::OrgId;
use crate::domain::buckets::{CALL_GRAINS, RESELLER_GRAINS};
use crate::domain::events::CallCompleted;
use crate::domain::metrics::{CallSums, DaySlots, RollupKey, bucket_sums, day_slots};

/// A rollup table of sums and how a batch upserts into it: the uuid keys bound first (`$1`…),
/// then the grains, buckets, agent ids when `agent`, and `columns`, as unnested arrays.
struct SumsTable {
    table: &'static str,
    keys: &'static [&'static str],
    agent: bool,
    columns: &'static [&'static str],
    /// Whether every write takes a new `version` (see [`AgentCache`]).
    versioned: bool,
    sql: LazyLock<String>,
}

impl SumsTable {
    const fn new(
        table: &'static str,
        keys: &'static [&'static str],
        agent: bool,
        columns: &'static [&'static str],
        versioned: bool,
        sql: fn() -> String,
    ) -> SumsTable {
        SumsTable {
            table,
            keys,
            agent,
            columns,
            versioned,
            sql: LazyLock::new(sql),
        }
    }

    fn build_sql(&self) -> String {
        let mut names: Vec<&str> = self.keys.to_vec();
        names.extend(["grain", "bucket"]);
        let mut arrays = vec![
            format!("${}::int4[]", self.keys.len() + 1),
            format!("${}::timestamptz[]", self.keys.len() + 2),
        ];
        if self.agent {
            names.push("agent_id");
            arrays.push(format!("${}::text[]", self.keys.len() + 3));
        }
        let conflict = names.join(", ");
        for c in self.columns {
            let ty = if is_float(c) { "float8" } else { "int8" };
            arrays.push(format!("${}::{ty}[]", self.keys.len() + 1 + arrays.len()));
            names.push(c);
        }
        let keys: Vec<String> = (1..=self.keys.len()).map(|i| format!("${i}")).collect();
        let mut updates: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{c} = r.{c} + excluded.{c}"))
            .collect();
        if self.versioned {
            // A new row takes the column default, the same sequence.
            updates.push("version = nextval('reseller_rollup_versions')".to_owned());
        }
        format!(
            "insert into {table} as r ({names}) select {keys}, * from unnest({arrays})
             on conflict ({conflict}) do update set {updates}",
            table = self.table,
            names = names.join(", "),
            keys = keys.join(", "),
            arrays = arrays.join(", "),
            updates = updates.join(", "),
        )
    }

    /// Upserts `rows` (keyed by grain, bucket and agent id; the agent is ignored unless
    /// `agent`) for the uuid `keys`.
    async fn upsert(
        &self,
        conn: &mut PgConnection,
        keys: &[Uuid],
        rows: &HashMap<RollupKey<'_>, CallSums>,
    ) -> sqlx::Result<()> {
        // In key order (see [`apply_reseller`]).
        let mut rows: Vec<(&RollupKey<'_>, &CallSums)> = rows.iter().collect();
        rows.sort_unstable_by_key(|(k, _)| **k);
        let mut q = sqlx::query(self.sql.as_str());
        for k in keys {
            q = q.bind(*k);
        }
        q = q.bind(
            rows.iter()
                .map(|(k, _)| k.0.seconds())
                .collect::<Vec<i32>>(),
        );
        q = q.bind(rows.iter().map(|(k, _)| k.1).collect::<Vec<_>>());
        if self.agent {
            q = q.bind(
                rows.iter()
                    .map(|(k, _)| k.2.to_owned())
                    .collect::<Vec<String>>(),
            );
        }
        for column in self.columns {
            q = if is_float(column) {
                q.bind(
                    rows.iter()
                        .map(|(_, s)| float_of(s, column))
                        .collect::<Vec<f64>>(),
                )
            } else {
                q.bind(
                    rows.iter()
                        .map(|(_, s)| count_of(s, column))
                        .collect::<Vec<i64>>(),
                )
            };
        }
        q.execute(conn).await?;
        Ok(())
    }
}

static ORG_SUMS: SumsTable = SumsTable::new(
    "call_metric_rollups",
    &["org_id"],
    true,
    SUM_COLUMNS,
    false,
    || ORG_SUMS.build_sql(),
);
static RESELLER_SUMS: SumsTable = SumsTable::new(
    "reseller_call_rollups",
    &["reseller_id"],
    false,
    SUM_COLUMNS,
    true,
    || RESELLER_SUMS.build_sql(),
);
static RESELLER_AGENTS: SumsTable = SumsTable::new(
    "reseller_agent_rollups",
    &["reseller_id", "org_id"],
    true,
    AGENT_COLUMNS,
    false,
    || RESELLER_AGENTS.build_sql(),
);

/// The upsert of escalation sums into `table` keyed by `key`: `$1` the organization or
/// reseller, then the unnested grains, buckets, reasons and sums.
fn escalations_sql(table: &str, key: &str) -> String {
    format!(
        "insert into {table} as r ({key}, grain, bucket, reason, calls, seconds_sum)
         select $1, * from unnest($2::int4[], $3::timestamptz[], $4::text[], $5::int8[], $6::float8[])
         on conflict ({key}, grain, bucket, reason) do update set
             calls = r.calls + excluded.calls,
             seconds_sum = r.seconds_sum + excluded.seconds_sum"
    )
}

/// The upsert of days of slots into `table` keyed by `key`: `$1` the organization or
/// reseller, `$2` the days, then the 96 slots of each day as consecutive slices of flat arrays
/// (`$3`…`$5`), and their 24 hour sums likewise (`$6`…`$8`).
fn days_sql(table: &str, key: &str) -> String {
    let add = |c: &str| {
        format!(
            "{c} = (select array_agg(a + b order by i)
                    from unnest(v.{c}, excluded.{c}) with ordinality as u(a, b, i))"
        )
    };
    let columns = [
        "calls",
        "resolved",
        "seconds",
        "hour_calls",
        "hour_resolved",
        "hour_seconds",
    ];
    let values = [
        "($3::int8[])[(d.n - 1) * 96 + 1 : d.n * 96]",
        "($4::int8[])[(d.n - 1) * 96 + 1 : d.n * 96]",
        "($5::float8[])[(d.n - 1) * 96 + 1 : d.n * 96]",
        "($6::int8[])[(d.n - 1) * 24 + 1 : d.n * 24]",
        "($7::int8[])[(d.n - 1) * 24 + 1 : d.n * 24]",
        "($8::float8[])[(d.n - 1) * 24 + 1 : d.n * 24]",
    ];
    let updates: Vec<String> = columns.iter().map(|c| add(c)).collect();
    format!(
        "insert into {table} as v ({key}, day, {columns})
         select $1, d.day, {values}
         from unnest($2::date[]) with ordinality as d(day, n)
         on conflict ({key}, day) do update set {updates}",
        columns = columns.join(", "),
        values = values.join(", "),
        updates = updates.join(", "),
    )
}

static ORG_ESCALATIONS_SQL: LazyLock<String> =
    LazyLock::new(|| escalations_sql("call_escalation_rollups", "org_id"));
static RESELLER_ESCALATIONS_SQL: LazyLock<String> =
    LazyLock::new(|| escalations_sql("reseller_escalation_rollups", "reseller_id"));
static ORG_DAYS_SQL: LazyLock<String> = LazyLock::new(|| days_sql("call_volume_days", "org_id"));
static RESELLER_DAYS_SQL: LazyLock<String> =
    LazyLock::new(|| days_sql("reseller_call_volume_days", "reseller_id"));

/// Adds a batch's new calls to the organization's rollups (inside the ingest transaction).
pub async fn apply(
    conn: &mut PgConnection,
    org: OrgId,
    calls: &[CallCompleted],
) -> sqlx::Result<()> {
    if calls.is_empty() {
        return Ok(());
    }
    let (sums, escalations) = bucket_sums(calls, &CALL_GRAINS);
    ORG_SUMS.upsert(&mut *conn, &[org.get()], &sums).await?;
    upsert_escalations(&mut *conn, &ORG_ESCALATIONS_SQL, org.get(), &escalations).await?;
    upsert_days(&mut *conn, &ORG_DAYS_SQL, org.get(), &day_slots(calls)).await?;
    Ok(())
}

/// Adds a batch's new calls to the rollups of the organization's reseller, when it has one
/// (inside the ingest transaction, last: see [`crate::store::rollups::apply`]).
///
/// Organizations of one reseller write the same rows concurrently, so every statement writes
/// its rows in key order: two batches lock shared rows in the same order and wait for each
/// other instead of deadlocking.
pub async fn apply_reseller(
    conn: &mut PgConnection,
    org: OrgId,
    calls: &[CallCompleted],
) -> sqlx::Result<()> {
    if calls.is_empty() {
        return Ok(());
    }
    let reseller: Option<Uuid> =
        sqlx::query_scalar("select reseller_id from organizations where id = $1")
            .bind(org.get())
            .fetch_one(&mut *conn)
            .await?;
    let Some(reseller) = reseller else {
        return Ok(());
    };
    let (agents, escalations) = bucket_sums(calls, &RESELLER_GRAINS);
    let mut totals: HashMap<RollupKey<'_>, CallSums> = HashMap::new();
    for ((grain, bucket, _), s) in &agents {
        totals.entry((*grain, *bucket, "")).or_default().add(s);
    }
    RESELLER_SUMS
        .upsert(&mut *conn, &[reseller], &totals)
        .await?;
    RESELLER_AGENTS
        .upsert(&mut *conn, &[reseller, org.get()], &agents)
        .await?;
    upsert_escalations(
        &mut *conn,
        &RESELLER_ESCALATIONS_SQL,
        reseller,
        &escalations,
    )
    .await?;
    upsert_days(&mut *conn, &RESELLER_DAYS_SQL, reseller, &day_slots(calls)).await?;
    Ok(())
}

/// Upserts escalation sums with `sql` (from [`escalations_sql`]).
async fn upsert_escalations(
    conn: &mut PgConnection,
    sql: &'static str,
    key: Uuid,
    escalations: &HashMap<RollupKey<'_>, (i64, f64)>,
) -> sqlx::Result<()> {
    if escalations.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<(&RollupKey<'_>, &(i64, f64))> = escalations.iter().collect();
    rows.sort_unstable_by_key(|(k, _)| **k);
    sqlx::query(sql)
        .bind(key)
        .bind(
            rows.iter()
                .map(|(k, _)| k.0.seconds())
                .collect::<Vec<i32>>(),
        )
        .bind(rows.iter().map(|(k, _)| k.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|(k, _)| k.2).collect::<Vec<&str>>())
        .bind(rows.iter().map(|(_, v)| v.0).collect::<Vec<i64>>())
        .bind(rows.iter().map(|(_, v)| v.1).collect::<Vec<f64>>())
        .execute(conn)
        .await?;
    Ok(())
}

/// One row per day; the 96 slots of each day travel as one slice of a flat array, and their
/// sums per hour likewise.
async fn upsert_days(
    conn: &mut PgConnection,
    sql: &'static str,
    key: Uuid,
    days: &[(NaiveDate, DaySlots)],
) -> sqlx::Result<()> {
    let flat = |days: &[(NaiveDate, DaySlots)]| {
        (
            days.iter()
                .flat_map(|(_, s)| s.calls.iter().copied())
                .collect::<Vec<i64>>(),
            days.iter()
                .flat_map(|(_, s)| s.resolved.iter().copied())
                .collect::<Vec<i64>>(),
            days.iter()
                .flat_map(|(_, s)| s.seconds.iter().copied())
                .collect::<Vec<f64>>(),
        )
    };
    let (calls, resolved, seconds) = flat(days);
    let hours: Vec<(NaiveDate, DaySlots)> = days.iter().map(|(d, s)| (*d, s.hours())).collect();
    let (hour_calls, hour_resolved, hour_seconds) = flat(&hours);
    sqlx::query(sql)
        .bind(key)
        .bind(days.iter().map(|(d, _)| *d).collect::<Vec<_>>())
        .bind(calls)
        .bind(resolved)
        .bind(seconds)
        .bind(hour_calls)
        .bind(hour_resolved)
        .bind(hour_seconds)
        .execute(conn)
        .await?;
    Ok(())
}
