//! Call metrics rollups (Telzino's `GET /v1/metrics`): maintained at ingest, read by grain.
//!
//! Policy: calls are insert-only, so [`apply`] adds each new call of a batch once to
//! `call_metric_rollups` (per agent, at the 15-minute, hour and day grains),
//! `call_escalation_rollups` (transferred calls with a reason) and `call_volume_days` (96
//! quarter-hour slots per UTC day), with one set-based statement per table. [`read`] answers a
//! range from the coarsest rollup buckets that fit ([`cover`](crate::domain::metrics::cover))
//! plus the raw calls of the sub-15-minute edges (through the `(org_id, started_at)` index), so
//! ranges not on a 15-minute boundary are exact and no read scans more than 30 minutes of raw
//! calls.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::auth::OrgId;
use crate::domain::events::{CallCompleted, CallSentiment, Outcome, Telemetry};
use crate::domain::metrics::{
    CallSums, Cover, ORG_GRAINS, RESELLER_GRAINS, SLOTS_PER_DAY, Span, escalation_of, floor,
    slot_of,
};
use crate::store::agent_cache::{AgentCache, AgentRow, Bucket};

/// A rollup key: grain (minutes), bucket start, and agent id or reason.
type Key<'a> = (i32, DateTime<Utc>, &'a str);

/// A stored day of slots as read.
type DayRow = (NaiveDate, Vec<i64>, Vec<i64>, Vec<f64>);

/// The additive columns of `call_metric_rollups` and `reseller_call_rollups`, in
/// [`CallSums`] order.
const SUM_COLUMNS: &[&str] = &[
    "calls",
    "resolved",
    "transferred",
    "abandoned",
    "other_outcome",
    "duration_sum",
    "sentiment_calls",
    "positive_calls",
    "ttft_sum",
    "ttft_calls",
    "stt_sum",
    "stt_calls",
    "correction_calls",
    "zero_correction_calls",
    "context_sum",
    "context_calls",
    "tool_calls",
    "tool_call_errors",
];

/// The columns of `reseller_agent_rollups`: what an agent's entry shows (other outcomes are
/// the calls minus the three named ones).
const AGENT_COLUMNS: &[&str] = &[
    "calls",
    "resolved",
    "transferred",
    "abandoned",
    "duration_sum",
    "sentiment_calls",
    "positive_calls",
];

/// Whether a sums column is a float (the others are counts).
fn is_float(column: &str) -> bool {
    column.ends_with("_sum")
}

/// The count of `s` stored in column `column` (0 for a float column).
fn count_of(s: &CallSums, column: &str) -> i64 {
    match column {
        "calls" => s.calls,
        "resolved" => s.resolved,
        "transferred" => s.transferred,
        "abandoned" => s.abandoned,
        "other_outcome" => s.other,
        "sentiment_calls" => s.sentiment_calls,
        "positive_calls" => s.positive_calls,
        "ttft_calls" => s.ttft_calls,
        "stt_calls" => s.stt_calls,
        "correction_calls" => s.correction_calls,
        "zero_correction_calls" => s.zero_correction_calls,
        "context_calls" => s.context_calls,
        "tool_calls" => s.tool_calls,
        "tool_call_errors" => s.tool_call_errors,
        _ => 0,
    }
}

/// The sum of `s` stored in float column `column` (0 for a count column).
fn float_of(s: &CallSums, column: &str) -> f64 {
    match column {
        "duration_sum" => s.duration_sum,
        "ttft_sum" => s.ttft_sum,
        "stt_sum" => s.stt_sum,
        "context_sum" => s.context_sum,
        _ => 0.0,
    }
}

/// How a rollup table stores its grains: `int2` (the organization tables, 15 minutes to a
/// day) or `int4` (the reseller tables, up to 128 days in minutes).
#[derive(Debug, Clone, Copy)]
enum GrainType {
    Int2,
    Int4,
}

impl GrainType {
    fn sql(self) -> &'static str {
        match self {
            GrainType::Int2 => "int2",
            GrainType::Int4 => "int4",
        }
    }

    /// Binds `grains` as an array of this type.
    fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
        grains: impl Iterator<Item = i32>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        match self {
            GrainType::Int2 => q.bind(grains.map(|g| g as i16).collect::<Vec<i16>>()),
            GrainType::Int4 => q.bind(grains.collect::<Vec<i32>>()),
        }
    }
}

/// A rollup table of sums and how a batch upserts into it: the uuid keys bound first (`$1`…),
/// then the grains, buckets, agent ids when `agent`, and `columns`, as unnested arrays.
struct SumsTable {
    table: &'static str,
    keys: &'static [&'static str],
    grain_type: GrainType,
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
        grain_type: GrainType,
        agent: bool,
        columns: &'static [&'static str],
        versioned: bool,
        sql: fn() -> String,
    ) -> SumsTable {
        SumsTable {
            table,
            keys,
            grain_type,
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
            format!("${}::{}[]", self.keys.len() + 1, self.grain_type.sql()),
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
        rows: &HashMap<Key<'_>, CallSums>,
    ) -> sqlx::Result<()> {
        // In key order (see [`apply_reseller`]).
        let mut rows: Vec<(&Key<'_>, &CallSums)> = rows.iter().collect();
        rows.sort_unstable_by_key(|(k, _)| **k);
        let mut q = sqlx::query(self.sql.as_str());
        for k in keys {
            q = q.bind(*k);
        }
        q = self.grain_type.bind(q, rows.iter().map(|(k, _)| k.0));
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
    GrainType::Int2,
    true,
    SUM_COLUMNS,
    false,
    || ORG_SUMS.build_sql(),
);
static RESELLER_SUMS: SumsTable = SumsTable::new(
    "reseller_call_rollups",
    &["reseller_id"],
    GrainType::Int4,
    false,
    SUM_COLUMNS,
    true,
    || RESELLER_SUMS.build_sql(),
);
static RESELLER_AGENTS: SumsTable = SumsTable::new(
    "reseller_agent_rollups",
    &["reseller_id", "org_id"],
    GrainType::Int4,
    true,
    AGENT_COLUMNS,
    false,
    || RESELLER_AGENTS.build_sql(),
);

/// The upsert of escalation sums into `table` keyed by `key`: `$1` the organization or
/// reseller, then the unnested grains, buckets, reasons and sums.
fn escalations_sql(table: &str, key: &str, grain_type: GrainType) -> String {
    let grain_type = grain_type.sql();
    format!(
        "insert into {table} as r ({key}, grain, bucket, reason, calls, seconds_sum)
         select $1, * from unnest($2::{grain_type}[], $3::timestamptz[], $4::text[], $5::int8[], $6::float8[])
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
    LazyLock::new(|| escalations_sql("call_escalation_rollups", "org_id", GrainType::Int2));
static RESELLER_ESCALATIONS_SQL: LazyLock<String> = LazyLock::new(|| {
    escalations_sql(
        "reseller_escalation_rollups",
        "reseller_id",
        GrainType::Int4,
    )
});
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
    let (sums, escalations) = bucket_sums(calls, &ORG_GRAINS);
    ORG_SUMS.upsert(&mut *conn, &[org.get()], &sums).await?;
    upsert_escalations(
        &mut *conn,
        &ORG_ESCALATIONS_SQL,
        GrainType::Int2,
        org.get(),
        &escalations,
    )
    .await?;
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
    let mut totals: HashMap<Key<'_>, CallSums> = HashMap::new();
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
        GrainType::Int4,
        reseller,
        &escalations,
    )
    .await?;
    upsert_days(&mut *conn, &RESELLER_DAYS_SQL, reseller, &day_slots(calls)).await?;
    Ok(())
}

/// Per-agent sums and per-reason escalations of `calls` in the buckets of every grain.
#[allow(clippy::type_complexity)]
fn bucket_sums<'c>(
    calls: &'c [CallCompleted],
    grains: &[i32],
) -> (HashMap<Key<'c>, CallSums>, HashMap<Key<'c>, (i64, f64)>) {
    let mut sums: HashMap<Key<'_>, CallSums> = HashMap::new();
    let mut escalations: HashMap<Key<'_>, (i64, f64)> = HashMap::new();
    for c in calls {
        let s = CallSums::of_call(c);
        let escalation = escalation_of(c);
        for &grain in grains {
            let bucket = floor(c.started_at, grain);
            sums.entry((grain, bucket, c.agent_id.as_str()))
                .or_default()
                .add(&s);
            if let Some((reason, seconds)) = escalation {
                let e = escalations.entry((grain, bucket, reason)).or_default();
                e.0 += 1;
                e.1 += seconds;
            }
        }
    }
    (sums, escalations)
}

/// The quarter-hour slots of the UTC days of `calls`.
fn day_slots(calls: &[CallCompleted]) -> Vec<(NaiveDate, Slots)> {
    let mut days: HashMap<NaiveDate, Slots> = HashMap::new();
    for c in calls {
        let day = days
            .entry(c.started_at.date_naive())
            .or_insert_with(Slots::zero);
        let slot = slot_of(c.started_at);
        day.calls[slot] += 1;
        day.resolved[slot] += i64::from(c.outcome == Outcome::Resolved);
        day.seconds[slot] += c.duration_seconds;
    }
    let mut days: Vec<(NaiveDate, Slots)> = days.into_iter().collect();
    days.sort_unstable_by_key(|(d, _)| *d);
    days
}

/// Upserts escalation sums with `sql` (from [`escalations_sql`] with `grain_type`).
async fn upsert_escalations(
    conn: &mut PgConnection,
    sql: &'static str,
    grain_type: GrainType,
    key: Uuid,
    escalations: &HashMap<Key<'_>, (i64, f64)>,
) -> sqlx::Result<()> {
    if escalations.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<(&Key<'_>, &(i64, f64))> = escalations.iter().collect();
    rows.sort_unstable_by_key(|(k, _)| **k);
    let q = grain_type.bind(sqlx::query(sql).bind(key), rows.iter().map(|(k, _)| k.0));
    q.bind(rows.iter().map(|(k, _)| k.1).collect::<Vec<_>>())
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
    days: &[(NaiveDate, Slots)],
) -> sqlx::Result<()> {
    let flat = |days: &[(NaiveDate, Slots)]| {
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
    let hours: Vec<(NaiveDate, Slots)> = days.iter().map(|(d, s)| (*d, s.hours())).collect();
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

/// The slots of one UTC day: 96 quarter hours, or 24 hours.
#[derive(Debug, Clone, PartialEq)]
pub struct Slots {
    /// Calls started in each slot.
    pub calls: Vec<i64>,
    /// Resolved calls.
    pub resolved: Vec<i64>,
    /// Seconds of those calls.
    pub seconds: Vec<f64>,
}

impl Slots {
    /// The sums of each hour (four slots) of quarter-hour slots.
    fn hours(&self) -> Slots {
        Slots {
            calls: self.calls.chunks(4).map(|c| c.iter().sum()).collect(),
            resolved: self.resolved.chunks(4).map(|c| c.iter().sum()).collect(),
            seconds: self.seconds.chunks(4).map(|c| c.iter().sum()).collect(),
        }
    }

    fn zero() -> Slots {
        Slots {
            calls: vec![0; SLOTS_PER_DAY],
            resolved: vec![0; SLOTS_PER_DAY],
            seconds: vec![0.0; SLOTS_PER_DAY],
        }
    }
}

/// One agent's figures over the rolled-up part of a range.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSums {
    /// Its organization.
    pub org_id: Uuid,
    /// The agent.
    pub agent_id: String,
    /// The sums.
    pub sums: CallSums,
}

/// A stored agent's name and state.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentInfo {
    /// Its organization.
    pub org_id: Uuid,
    /// The agent.
    pub agent_id: String,
    /// Its (last) name.
    pub name: String,
    /// Its status.
    pub status: String,
    /// Whether it was deleted.
    pub deleted: bool,
}

/// What a range reads: the rolled-up part and the raw edges, not yet merged.
#[derive(Debug, Default)]
pub struct RangeData {
    /// Sums over the rollup spans across the source's agents, when the source keeps them
    /// apart from [`agents`](Self::agents) (a reseller: its agent rollups hold only what an
    /// agent's entry shows). `None`: the sum of `agents`.
    pub totals: Option<CallSums>,
    /// Per-agent sums over the rollup spans (organizations' rollups).
    pub agents: Vec<AgentSums>,
    /// The agent rows of each rollup bucket (a reseller's rollups; an agent appears once per
    /// bucket it has calls in).
    pub reseller_agents: Vec<Arc<[AgentRow]>>,
    /// Per-reason `(calls, seconds)` over the rollup spans, across the organizations.
    pub escalations: Vec<(String, i64, f64)>,
    /// Quarter-hour slots of the UTC days the rolled part touches, summed across organizations
    /// (slots outside the rolled part are included: the caller masks them).
    pub days: Vec<(NaiveDate, Slots)>,
    /// The raw calls of the edges, with their organization.
    pub edge_calls: Vec<(Uuid, CallCompleted)>,
}

/// An empty range's bounds.
const EMPTY: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

/// Whose rollups a span read covers.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// Organizations' (`org_id = any($1)`: `$1` binds a uuid array).
    Orgs,
    /// One reseller's (`reseller_id = $1`).
    Reseller,
}

/// The rows of a rollup table for the spans `$2`…`$4` ([`span_arrays`]) of the owner `$1`, as
/// a table `r`: one primary-key range scan per span (and organization). `offset 0` keeps each
/// span its own index scan under any plan: a generic plan of fixed `bucket >= $n` conditions
/// read an organization's whole history. Grains are bound as `int4`; an `int2` grain column
/// compares with them in the same operator family, so its index still serves the condition.
fn spans(table: &str, owner: Owner) -> String {
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
type SpanArrays = (Vec<i32>, Vec<DateTime<Utc>>, Vec<DateTime<Utc>>);

fn span_arrays(spans: &[Span]) -> SpanArrays {
    (
        spans.iter().map(|s| s.grain).collect(),
        spans.iter().map(|s| s.from).collect(),
        spans.iter().map(|s| s.to).collect(),
    )
}

/// What a request reads.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Organizations, through their own rollups (one organization, in practice).
    Orgs {
        /// The organizations.
        orgs: &'a [OrgId],
        /// Whether the days strictly inside the range may be read per UTC hour (see
        /// [`whole_hours`](crate::domain::metrics::whole_hours)).
        hourly: bool,
    },
    /// Every organization of a reseller (`orgs`), through the reseller's rollups.
    Reseller {
        /// The reseller.
        reseller: Uuid,
        /// Whether the days strictly inside the range may be read per UTC hour (the zone's
        /// offset is whole hours throughout: see
        /// [`whole_hours`](crate::domain::metrics::whole_hours)).
        hourly: bool,
        /// All its organizations (for the raw edges).
        orgs: &'a [OrgId],
        /// The agent rows of buckets read before.
        cache: &'a AgentCache,
    },
}

impl Source<'_> {
    /// The grains of the rollups this source reads (for [`cover`](crate::domain::metrics::cover)).
    pub fn grains(&self) -> &'static [i32] {
        match self {
            Source::Orgs { .. } => &ORG_GRAINS,
            Source::Reseller { .. } => &RESELLER_GRAINS,
        }
    }

    fn orgs(&self) -> Vec<Uuid> {
        let orgs = match self {
            Source::Orgs { orgs, .. } => orgs,
            Source::Reseller { orgs, .. } => orgs,
        };
        orgs.iter().map(|o| o.get()).collect()
    }
}

/// Reads everything a range needs (four independent queries, run concurrently). `cover` must
/// come from `source`'s grains.
pub async fn read(pool: &PgPool, source: Source<'_>, cover: &Cover) -> sqlx::Result<RangeData> {
    let org_ids = source.orgs();
    if org_ids.is_empty() {
        return Ok(RangeData::default());
    }
    let data = match source {
        Source::Orgs { hourly, .. } => {
            let (agents, escalations, days, edge_calls) = tokio::try_join!(
                read_agents(pool, &org_ids, cover),
                read_escalations(
                    pool,
                    "call_escalation_rollups",
                    Owner::Orgs,
                    &org_ids,
                    cover
                ),
                read_days(pool, "call_volume_days", "org_id", &org_ids, cover, hourly),
                read_edges(pool, &org_ids, cover),
            )?;
            RangeData {
                totals: None,
                agents,
                reseller_agents: Vec::new(),
                escalations,
                days,
                edge_calls,
            }
        }
        Source::Reseller {
            reseller,
            hourly,
            cache,
            ..
        } => {
            let resellers = [reseller];
            // The buckets whose agent rows are not cached are most of the work: two queries
            // over alternate spans run on two connections at once.
            let half = |parity: usize| -> Vec<Span> {
                cover
                    .spans
                    .iter()
                    .skip(parity)
                    .step_by(2)
                    .copied()
                    .collect()
            };
            let halves = [half(0), half(1)];
            let (first, second, escalations, days, edge_calls) = tokio::try_join!(
                read_reseller_buckets(pool, cache, reseller, &halves[0]),
                read_reseller_buckets(pool, cache, reseller, &halves[1]),
                read_escalations(
                    pool,
                    "reseller_escalation_rollups",
                    Owner::Reseller,
                    reseller,
                    cover
                ),
                read_days(
                    pool,
                    "reseller_call_volume_days",
                    "reseller_id",
                    &resellers,
                    cover,
                    hourly
                ),
                read_edges(pool, &org_ids, cover),
            )?;
            let mut totals = first.0;
            totals.add(&second.0);
            let mut reseller_agents = first.1;
            reseller_agents.extend(second.1);
            RangeData {
                totals: Some(totals),
                agents: Vec::new(),
                reseller_agents,
                escalations,
                days,
                edge_calls,
            }
        }
    };
    Ok(data)
}

/// The per-agent sums selected from a rollup table aliased `r`. Counts are summed as `float8`
/// and cast back: exact for any total below 2^53, and `sum(int8)` (which accumulates in 128 bits
/// and returns `numeric`) costs about twice as much per row.
const AGENT_SUMS: &str = r#"r.org_id, r.agent_id, sum(r.calls::float8)::int8 as calls,
       sum(r.resolved::float8)::int8 as resolved, sum(r.transferred::float8)::int8 as transferred,
       sum(r.abandoned::float8)::int8 as abandoned, sum(r.other_outcome::float8)::int8 as other_outcome,
       sum(r.duration_sum) as duration_sum,
       sum(r.sentiment_calls::float8)::int8 as sentiment_calls,
       sum(r.positive_calls::float8)::int8 as positive_calls,
       sum(r.ttft_sum) as ttft_sum, sum(r.ttft_calls::float8)::int8 as ttft_calls,
       sum(r.stt_sum) as stt_sum, sum(r.stt_calls::float8)::int8 as stt_calls,
       sum(r.correction_calls::float8)::int8 as correction_calls,
       sum(r.zero_correction_calls::float8)::int8 as zero_correction_calls,
       sum(r.context_sum) as context_sum, sum(r.context_calls::float8)::int8 as context_calls,
       sum(r.tool_calls::float8)::int8 as tool_calls,
       sum(r.tool_call_errors::float8)::int8 as tool_call_errors"#;

async fn read_agents(pool: &PgPool, orgs: &[Uuid], cover: &Cover) -> sqlx::Result<Vec<AgentSums>> {
    if cover.spans.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "select {AGENT_SUMS} from {spans} group by r.org_id, r.agent_id",
        spans = spans("call_metric_rollups", Owner::Orgs)
    );
    let (grains, from, to) = span_arrays(&cover.spans);
    let rows = sqlx::query(&sql)
        .bind(orgs)
        .bind(grains)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
    rows.iter().map(agent_sums).collect()
}

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
async fn read_reseller_buckets(
    pool: &PgPool,
    cache: &AgentCache,
    reseller: Uuid,
    spans: &[Span],
) -> sqlx::Result<(CallSums, Vec<Arc<[AgentRow]>>)> {
    if spans.is_empty() {
        return Ok((CallSums::default(), Vec::new()));
    }
    // The buckets held, whatever their version: PostgreSQL says which are still current.
    let mut held: HashMap<(i32, DateTime<Utc>), Bucket> = HashMap::new();
    for span in spans {
        let step = chrono::Duration::minutes(i64::from(span.grain));
        let mut bucket = span.from;
        while bucket < span.to {
            if let Some(b) = cache.get(&(reseller, span.grain, bucket)) {
                held.insert((span.grain, bucket), b);
            }
            bucket += step;
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
        let grain: i32 = row.try_get(0)?;
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

fn agent_sums(row: &sqlx::postgres::PgRow) -> sqlx::Result<AgentSums> {
    Ok(AgentSums {
        org_id: row.try_get("org_id")?,
        agent_id: row.try_get("agent_id")?,
        sums: call_sums(row)?,
    })
}

/// The [`SUM_COLUMNS`] of a row, by name.
fn call_sums(row: &sqlx::postgres::PgRow) -> sqlx::Result<CallSums> {
    Ok(CallSums {
        calls: row.try_get("calls")?,
        resolved: row.try_get("resolved")?,
        transferred: row.try_get("transferred")?,
        abandoned: row.try_get("abandoned")?,
        other: row.try_get("other_outcome")?,
        duration_sum: row.try_get("duration_sum")?,
        sentiment_calls: row.try_get("sentiment_calls")?,
        positive_calls: row.try_get("positive_calls")?,
        ttft_sum: row.try_get("ttft_sum")?,
        ttft_calls: row.try_get("ttft_calls")?,
        stt_sum: row.try_get("stt_sum")?,
        stt_calls: row.try_get("stt_calls")?,
        correction_calls: row.try_get("correction_calls")?,
        zero_correction_calls: row.try_get("zero_correction_calls")?,
        context_sum: row.try_get("context_sum")?,
        context_calls: row.try_get("context_calls")?,
        tool_calls: row.try_get("tool_calls")?,
        tool_call_errors: row.try_get("tool_call_errors")?,
    })
}

/// Escalation reasons with their calls and seconds over a cover's spans of `table`, whose
/// owner is `key` (`owner` says which).
async fn read_escalations<K>(
    pool: &PgPool,
    table: &str,
    owner: Owner,
    key: K,
    cover: &Cover,
) -> sqlx::Result<Vec<(String, i64, f64)>>
where
    K: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    if cover.spans.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "select r.reason, sum(r.calls::float8)::int8, sum(r.seconds_sum) from {spans} group by r.reason",
        spans = spans(table, owner)
    );
    let (grains, from, to) = span_arrays(&cover.spans);
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
async fn read_days(
    pool: &PgPool,
    table: &str,
    key: &str,
    ids: &[Uuid],
    cover: &Cover,
    hourly: bool,
) -> sqlx::Result<Vec<(NaiveDate, Slots)>> {
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
    let mut by_day: HashMap<NaiveDate, Slots> = HashMap::new();
    for (day, calls, resolved, seconds) in rows {
        match by_day.get_mut(&day) {
            None => {
                by_day.insert(
                    day,
                    Slots {
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
    let mut days: Vec<(NaiveDate, Slots)> = by_day.into_iter().collect();
    days.sort_by_key(|(d, _)| *d);
    Ok(days)
}

/// The raw calls of a cover's edges: two index range scans per organization (under 15 minutes
/// each), whatever the number of organizations.
async fn read_edges(
    pool: &PgPool,
    orgs: &[Uuid],
    cover: &Cover,
) -> sqlx::Result<Vec<(Uuid, CallCompleted)>> {
    if cover.raw.is_empty() {
        return Ok(Vec::new());
    }
    // At most two raw parts; a missing one is an empty range.
    let part = |i: usize| cover.raw.get(i).copied().unwrap_or((EMPTY, EMPTY));
    let rows = sqlx::query(
        r#"select c.org_id, c.call_id, c.agent_id, c.started_at, c.duration_seconds, c.outcome,
                  c.sentiment, c.escalation_reason, c.escalated_after_seconds, c.ttft_ms,
                  c.stt_confidence, c.tool_calls, c.tool_call_errors, c.user_corrections,
                  c.cached_tokens, c.total_tokens
           from unnest($1::uuid[]) as o(id)
           cross join lateral (
               select * from calls c
               where c.org_id = o.id and c.started_at >= $2 and c.started_at < $3
               union all
               select * from calls c
               where c.org_id = o.id and c.started_at >= $4 and c.started_at < $5
           ) c"#,
    )
    .bind(orgs)
    .bind(part(0).0)
    .bind(part(0).1)
    .bind(part(1).0)
    .bind(part(1).1)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let outcome: String = row.try_get("outcome")?;
            let sentiment: Option<String> = row.try_get("sentiment")?;
            let call = CallCompleted {
                call_id: row.try_get("call_id")?,
                agent_id: row.try_get("agent_id")?,
                started_at: row.try_get("started_at")?,
                duration_seconds: row.try_get("duration_seconds")?,
                outcome: Outcome::parse(&outcome).ok_or_else(|| decode_error(&outcome))?,
                sentiment: match sentiment {
                    None => None,
                    Some(s) => Some(CallSentiment::parse(&s).ok_or_else(|| decode_error(&s))?),
                },
                escalation_reason: row.try_get("escalation_reason")?,
                escalated_after_seconds: row.try_get("escalated_after_seconds")?,
                telemetry: Telemetry {
                    ttft_ms: row.try_get("ttft_ms")?,
                    stt_confidence: row.try_get("stt_confidence")?,
                    tool_calls: row.try_get("tool_calls")?,
                    tool_call_errors: row.try_get("tool_call_errors")?,
                    user_corrections: row.try_get("user_corrections")?,
                    cached_tokens: row.try_get("cached_tokens")?,
                    total_tokens: row.try_get("total_tokens")?,
                },
            };
            Ok((row.try_get("org_id")?, call))
        })
        .collect()
}

fn decode_error(text: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected stored value `{text}`").into())
}

/// Names and states of the declared agents of `orgs` (one index range per organization; read
/// beside the figures rather than after them, for the agents the figures will name).
pub async fn agent_infos(pool: &PgPool, orgs: &[OrgId]) -> sqlx::Result<Vec<AgentInfo>> {
    if orgs.is_empty() {
        return Ok(Vec::new());
    }
    let orgs: Vec<Uuid> = orgs.iter().map(|o| o.get()).collect();
    let rows: Vec<(Uuid, String, String, String, bool)> = sqlx::query_as(
        r#"select a.org_id, a.agent_id, a.name, a.status, a.deleted_at is not null
           from agents a where a.org_id = any($1)"#,
    )
    .bind(&orgs)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(org_id, agent_id, name, status, deleted)| AgentInfo {
            org_id,
            agent_id,
            name,
            status,
            deleted,
        })
        .collect())
}
