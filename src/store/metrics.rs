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

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::auth::OrgId;
use crate::domain::events::{CallCompleted, CallSentiment, Outcome, Telemetry};
use crate::domain::metrics::{CallSums, Cover, Grain, SLOTS_PER_DAY, escalation_of, slot_of};

/// A rollup key: grain (minutes), bucket start, and agent id or reason.
type Key<'a> = (i16, DateTime<Utc>, &'a str);

/// A stored day of slots as read.
type DayRow = (NaiveDate, Vec<i64>, Vec<i64>, Vec<f64>);

/// Adds a batch's new calls to the rollups (inside the ingest transaction).
pub async fn apply(
    conn: &mut PgConnection,
    org: OrgId,
    calls: &[CallCompleted],
) -> sqlx::Result<()> {
    if calls.is_empty() {
        return Ok(());
    }
    let mut sums: HashMap<Key<'_>, CallSums> = HashMap::new();
    let mut escalations: HashMap<Key<'_>, (i64, f64)> = HashMap::new();
    let mut days: HashMap<NaiveDate, Slots> = HashMap::new();
    for c in calls {
        let s = CallSums::of_call(c);
        let escalation = escalation_of(c);
        for grain in Grain::ALL {
            let bucket = grain.floor(c.started_at);
            sums.entry((grain.minutes(), bucket, c.agent_id.as_str()))
                .or_default()
                .add(&s);
            if let Some((reason, seconds)) = escalation {
                let e = escalations
                    .entry((grain.minutes(), bucket, reason))
                    .or_default();
                e.0 += 1;
                e.1 += seconds;
            }
        }
        let day = days
            .entry(c.started_at.date_naive())
            .or_insert_with(Slots::zero);
        let slot = slot_of(c.started_at);
        day.calls[slot] += 1;
        day.resolved[slot] += s.resolved;
        day.seconds[slot] += c.duration_seconds;
    }

    let rows: Vec<(&Key<'_>, &CallSums)> = sums.iter().collect();
    let col = |f: fn(&CallSums) -> i64| rows.iter().map(|(_, s)| f(s)).collect::<Vec<i64>>();
    let colf = |f: fn(&CallSums) -> f64| rows.iter().map(|(_, s)| f(s)).collect::<Vec<f64>>();
    sqlx::query(
        r#"insert into call_metric_rollups as r (org_id, grain, bucket, agent_id, calls, resolved,
               transferred, abandoned, other_outcome, duration_sum, sentiment_calls,
               positive_calls, ttft_sum, ttft_calls, stt_sum, stt_calls, correction_calls,
               zero_correction_calls, context_sum, context_calls, tool_calls, tool_call_errors)
           select $1, * from unnest($2::int2[], $3::timestamptz[], $4::text[], $5::int8[],
               $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::float8[], $11::int8[],
               $12::int8[], $13::float8[], $14::int8[], $15::float8[], $16::int8[], $17::int8[],
               $18::int8[], $19::float8[], $20::int8[], $21::int8[], $22::int8[])
           on conflict (org_id, grain, bucket, agent_id) do update set
               calls = r.calls + excluded.calls,
               resolved = r.resolved + excluded.resolved,
               transferred = r.transferred + excluded.transferred,
               abandoned = r.abandoned + excluded.abandoned,
               other_outcome = r.other_outcome + excluded.other_outcome,
               duration_sum = r.duration_sum + excluded.duration_sum,
               sentiment_calls = r.sentiment_calls + excluded.sentiment_calls,
               positive_calls = r.positive_calls + excluded.positive_calls,
               ttft_sum = r.ttft_sum + excluded.ttft_sum,
               ttft_calls = r.ttft_calls + excluded.ttft_calls,
               stt_sum = r.stt_sum + excluded.stt_sum,
               stt_calls = r.stt_calls + excluded.stt_calls,
               correction_calls = r.correction_calls + excluded.correction_calls,
               zero_correction_calls = r.zero_correction_calls + excluded.zero_correction_calls,
               context_sum = r.context_sum + excluded.context_sum,
               context_calls = r.context_calls + excluded.context_calls,
               tool_calls = r.tool_calls + excluded.tool_calls,
               tool_call_errors = r.tool_call_errors + excluded.tool_call_errors"#,
    )
    .bind(org.get())
    .bind(rows.iter().map(|(k, _)| k.0).collect::<Vec<i16>>())
    .bind(rows.iter().map(|(k, _)| k.1).collect::<Vec<_>>())
    .bind(rows.iter().map(|(k, _)| k.2).collect::<Vec<&str>>())
    .bind(col(|s| s.calls))
    .bind(col(|s| s.resolved))
    .bind(col(|s| s.transferred))
    .bind(col(|s| s.abandoned))
    .bind(col(|s| s.other))
    .bind(colf(|s| s.duration_sum))
    .bind(col(|s| s.sentiment_calls))
    .bind(col(|s| s.positive_calls))
    .bind(colf(|s| s.ttft_sum))
    .bind(col(|s| s.ttft_calls))
    .bind(colf(|s| s.stt_sum))
    .bind(col(|s| s.stt_calls))
    .bind(col(|s| s.correction_calls))
    .bind(col(|s| s.zero_correction_calls))
    .bind(colf(|s| s.context_sum))
    .bind(col(|s| s.context_calls))
    .bind(col(|s| s.tool_calls))
    .bind(col(|s| s.tool_call_errors))
    .execute(&mut *conn)
    .await?;

    if !escalations.is_empty() {
        let rows: Vec<(&Key<'_>, &(i64, f64))> = escalations.iter().collect();
        sqlx::query(
            r#"insert into call_escalation_rollups as r (org_id, grain, bucket, reason, calls, seconds_sum)
               select $1, * from unnest($2::int2[], $3::timestamptz[], $4::text[], $5::int8[], $6::float8[])
               on conflict (org_id, grain, bucket, reason) do update set
                   calls = r.calls + excluded.calls,
                   seconds_sum = r.seconds_sum + excluded.seconds_sum"#,
        )
        .bind(org.get())
        .bind(rows.iter().map(|(k, _)| k.0).collect::<Vec<i16>>())
        .bind(rows.iter().map(|(k, _)| k.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|(k, _)| k.2).collect::<Vec<&str>>())
        .bind(rows.iter().map(|(_, v)| v.0).collect::<Vec<i64>>())
        .bind(rows.iter().map(|(_, v)| v.1).collect::<Vec<f64>>())
        .execute(&mut *conn)
        .await?;
    }

    // One row per day; the 96 slots of each day travel as one slice of a flat array.
    let days: Vec<(NaiveDate, Slots)> = days.into_iter().collect();
    let flat_i = |f: fn(&Slots) -> &[i64]| {
        days.iter()
            .flat_map(|(_, s)| f(s).iter().copied())
            .collect::<Vec<i64>>()
    };
    sqlx::query(
        r#"insert into call_volume_days as v (org_id, day, calls, resolved, seconds)
           select $1, d.day,
                  ($3::int8[])[(d.n - 1) * 96 + 1 : d.n * 96],
                  ($4::int8[])[(d.n - 1) * 96 + 1 : d.n * 96],
                  ($5::float8[])[(d.n - 1) * 96 + 1 : d.n * 96]
           from unnest($2::date[]) with ordinality as d(day, n)
           on conflict (org_id, day) do update set
               calls = (select array_agg(a + b order by i)
                        from unnest(v.calls, excluded.calls) with ordinality as u(a, b, i)),
               resolved = (select array_agg(a + b order by i)
                           from unnest(v.resolved, excluded.resolved) with ordinality as u(a, b, i)),
               seconds = (select array_agg(a + b order by i)
                          from unnest(v.seconds, excluded.seconds) with ordinality as u(a, b, i))"#,
    )
    .bind(org.get())
    .bind(days.iter().map(|(d, _)| *d).collect::<Vec<_>>())
    .bind(flat_i(|s| &s.calls))
    .bind(flat_i(|s| &s.resolved))
    .bind(
        days.iter()
            .flat_map(|(_, s)| s.seconds.iter().copied())
            .collect::<Vec<f64>>(),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The 96 quarter-hour slots of one UTC day.
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
    /// Per-agent sums over the rollup spans.
    pub agents: Vec<AgentSums>,
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

/// The rollup rows of the organizations `$1` in two ranges of 15-minute buckets, two of hours
/// and one of days (what [`cover`](crate::domain::metrics::cover) yields at most), as a table
/// `r`. One branch per range, so that each is a primary-key range scan per organization
/// (`org_id = any($1) and grain = … and bucket between …`): a single condition OR-ing the
/// ranges leaves only `org_id` to the index and reads an organization's whole history.
fn spans(table: &str) -> String {
    let branch = |grain: u32, from: u32| {
        format!(
            "select * from {table} where org_id = any($1) and grain = {grain} and bucket >= ${from} and bucket < ${}",
            from + 1
        )
    };
    format!(
        "({} union all {} union all {} union all {} union all {}) r",
        branch(15, 2),
        branch(15, 4),
        branch(60, 6),
        branch(60, 8),
        branch(1440, 10)
    )
}

/// The bounds bound to [`spans`]'s `$2`…`$11`.
#[derive(Debug, Clone, Copy)]
struct Ranges([DateTime<Utc>; 10]);

impl Ranges {
    fn of(cover: &Cover) -> Ranges {
        let mut bounds = [EMPTY; 10];
        let mut used = [0usize; 3];
        for span in &cover.spans {
            let (g, base, slots) = match span.grain {
                Grain::Quarter => (0, 0, 2),
                Grain::Hour => (1, 4, 2),
                Grain::Day => (2, 8, 1),
            };
            if used[g] < slots {
                bounds[base + 2 * used[g]] = span.from;
                bounds[base + 2 * used[g] + 1] = span.to;
                used[g] += 1;
            }
        }
        Ranges(bounds)
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|t| *t == EMPTY)
    }

    fn bind<'q>(
        &self,
        mut q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        for t in self.0 {
            q = q.bind(t);
        }
        q
    }

    fn bind_as<'q, O>(
        &self,
        mut q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        for t in self.0 {
            q = q.bind(t);
        }
        q
    }
}

/// Reads everything a range needs (four independent queries, run concurrently).
pub async fn read(pool: &PgPool, orgs: &[OrgId], cover: &Cover) -> sqlx::Result<RangeData> {
    let org_ids: Vec<Uuid> = orgs.iter().map(|o| o.get()).collect();
    if org_ids.is_empty() {
        return Ok(RangeData::default());
    }
    let ranges = Ranges::of(cover);
    let (agents, escalations, days, edge_calls) = tokio::try_join!(
        read_agents(pool, &org_ids, &ranges),
        read_escalations(pool, &org_ids, &ranges),
        read_days(pool, &org_ids, cover),
        read_edges(pool, &org_ids, cover),
    )?;
    Ok(RangeData {
        agents,
        escalations,
        days,
        edge_calls,
    })
}

async fn read_agents(pool: &PgPool, orgs: &[Uuid], r: &Ranges) -> sqlx::Result<Vec<AgentSums>> {
    if r.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        r#"select r.org_id, r.agent_id, sum(r.calls)::int8 as calls,
                  sum(r.resolved)::int8 as resolved, sum(r.transferred)::int8 as transferred,
                  sum(r.abandoned)::int8 as abandoned, sum(r.other_outcome)::int8 as other_outcome,
                  sum(r.duration_sum) as duration_sum,
                  sum(r.sentiment_calls)::int8 as sentiment_calls,
                  sum(r.positive_calls)::int8 as positive_calls,
                  sum(r.ttft_sum) as ttft_sum, sum(r.ttft_calls)::int8 as ttft_calls,
                  sum(r.stt_sum) as stt_sum, sum(r.stt_calls)::int8 as stt_calls,
                  sum(r.correction_calls)::int8 as correction_calls,
                  sum(r.zero_correction_calls)::int8 as zero_correction_calls,
                  sum(r.context_sum) as context_sum, sum(r.context_calls)::int8 as context_calls,
                  sum(r.tool_calls)::int8 as tool_calls,
                  sum(r.tool_call_errors)::int8 as tool_call_errors
           from {spans}
           group by r.org_id, r.agent_id"#,
        spans = spans("call_metric_rollups")
    );
    let rows = r.bind(sqlx::query(&sql).bind(orgs)).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(AgentSums {
                org_id: row.try_get("org_id")?,
                agent_id: row.try_get("agent_id")?,
                sums: CallSums {
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
                },
            })
        })
        .collect()
}

async fn read_escalations(
    pool: &PgPool,
    orgs: &[Uuid],
    r: &Ranges,
) -> sqlx::Result<Vec<(String, i64, f64)>> {
    if r.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        r#"select r.reason, sum(r.calls)::int8, sum(r.seconds_sum)
           from {spans}
           group by r.reason"#,
        spans = spans("call_escalation_rollups")
    );
    r.bind_as(sqlx::query_as(&sql).bind(orgs))
        .fetch_all(pool)
        .await
}

async fn read_days(
    pool: &PgPool,
    orgs: &[Uuid],
    cover: &Cover,
) -> sqlx::Result<Vec<(NaiveDate, Slots)>> {
    let Some((from, to)) = cover.rolled() else {
        return Ok(Vec::new());
    };
    let first = from.date_naive();
    let last = (to - chrono::Duration::minutes(15)).date_naive();
    let rows: Vec<DayRow> = sqlx::query_as(
        r#"select day, calls, resolved, seconds from call_volume_days
           where org_id = any($1) and day >= $2 and day <= $3"#,
    )
    .bind(orgs)
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
                for (i, c) in calls.iter().enumerate().take(SLOTS_PER_DAY) {
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
           from calls c
           where c.org_id = any($1)
             and ((c.started_at >= $2 and c.started_at < $3)
               or (c.started_at >= $4 and c.started_at < $5))"#,
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

/// Names and states of the given `(organization, agent)` pairs that were declared.
pub async fn agent_infos(pool: &PgPool, pairs: &[(Uuid, &str)]) -> sqlx::Result<Vec<AgentInfo>> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(Uuid, String, String, String, bool)> = sqlx::query_as(
        r#"select a.org_id, a.agent_id, a.name, a.status, a.deleted_at is not null
           from unnest($1::uuid[], $2::text[]) as p(org_id, agent_id)
           join agents a on a.org_id = p.org_id and a.agent_id = p.agent_id"#,
    )
    .bind(pairs.iter().map(|p| p.0).collect::<Vec<_>>())
    .bind(pairs.iter().map(|p| p.1).collect::<Vec<_>>())
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
