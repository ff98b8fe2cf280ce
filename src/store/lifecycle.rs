//! Handoff lifecycle rollups: maintained in the ingest transaction, read by
//! `GET /v1/handoff-lifecycle` (tables in `migrations/20261121000012_handoff_lifecycle.sql`).
//!
//! Policy: when a handoff is first initiated, its session's channel and agent and its
//! working-hours class (against the configuration revision in force at that instant) are fixed
//! in `handoff_lifecycle`. Every batch then moves each changed handoff's counts, old state
//! subtracted and new state added, in every grain of the block of its first initiation, under
//! every `(dimension, key)` it belongs to ([`Facts::keys`]). Rows are read, merged in Rust (the
//! wait histograms are sparse arrays) and written back: safe because the organization's ingest
//! lock is held. Reads merge the blocks covering a range (one row per block and key) and count
//! the sub-15-minute edges from the projections. Time blocks come from [`blocks`], the one place
//! that knows the bucket algebra.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor, Row};

use crate::auth::OrgId;
use crate::domain::events::Reason;
use crate::domain::lifecycle::{Dim, Facts, Tally, WaitHistogram, WorkingHours};
use crate::domain::projection::{Changes, HandoffRow};
use crate::domain::timerange::TimeRange;

/// The time blocks of the rollups: the grains and covers shared with the analytics rollups.
pub mod blocks {
    use chrono::{DateTime, Utc};

    use crate::domain::analytics::Plan;
    use crate::domain::buckets::{self, HANDOFF_GRAINS};
    use crate::domain::timerange::TimeRange;

    /// The blocks `(grain in seconds, start)` holding `t`, one per grain of the handoff ladder.
    pub fn of(t: DateTime<Utc>) -> impl Iterator<Item = (i32, DateTime<Utc>)> {
        HANDOFF_GRAINS
            .into_iter()
            .map(move |g| (g.seconds(), g.floor(t)))
    }

    /// A run of whole blocks of one grain: `(grain in seconds, from, to)`.
    pub type Segment = (i32, DateTime<Utc>, DateTime<Utc>);

    /// How a range is read: whole blocks and raw edges, for the whole range and each local day.
    pub struct Reads {
        /// The whole range's blocks.
        pub range: Vec<Segment>,
        /// Each local day's blocks, with the day's index.
        pub days: Vec<(usize, Segment)>,
        /// The edges `[from, to)` read from the projections (`None`: the local days are not
        /// unions of blocks, so the whole range is read from the projections).
        pub raw: Option<Vec<(DateTime<Utc>, DateTime<Utc>)>>,
    }

    /// The reads of `range` (the analytics plan: the same blocks answer both).
    pub fn reads(range: &TimeRange) -> Reads {
        let plan = Plan::new(range);
        let seg = |s: &buckets::Segment| (s.grain.seconds(), s.from, s.to);
        Reads {
            range: plan.range.segments.iter().map(seg).collect(),
            days: plan
                .days_cover
                .iter()
                .flat_map(|(i, c)| c.segments.iter().map(move |s| (*i, seg(s))))
                .collect(),
            raw: plan.days_aligned.then(|| plan.range.raw.clone()),
        }
    }
}

/// A handoff's fixed lifecycle attributes.
#[derive(Debug, Clone)]
struct Fixed {
    channel: String,
    agent_id: Option<String>,
    outside: bool,
}

fn facts(h: &HandoffRow, f: &Fixed) -> Facts {
    Facts {
        initiated_at: h.initiated_at,
        state: h.state.clone(),
        attempts: h.attempts,
        reasons: h.reasons.clone(),
        destination: h.destination.clone(),
        channel: f.channel.clone(),
        agent_id: f.agent_id.clone(),
        outside_working_hours: f.outside,
        completed_at: h.completed_at,
    }
}

/// `(dim, grain, bucket, key)`.
type RowKey = (&'static str, i32, DateTime<Utc>, String);

/// Updates the lifecycle rollups for one applied batch (called by `store::rollups::apply`).
pub async fn apply(conn: &mut PgConnection, org: OrgId, changes: &Changes) -> sqlx::Result<()> {
    if changes.handoffs.is_empty() {
        return Ok(());
    }
    let fresh: Vec<&HandoffRow> = changes
        .handoffs
        .iter()
        .filter(|h| !changes.handoffs_before.contains_key(&h.handoff_id))
        .collect();
    let mut fixed: HashMap<String, Fixed> = HashMap::new();
    if !fresh.is_empty() {
        fix_fresh(&mut *conn, org, changes, &fresh, &mut fixed).await?;
    }
    let stored: Vec<&str> = changes
        .handoffs
        .iter()
        .filter(|h| changes.handoffs_before.contains_key(&h.handoff_id))
        .map(|h| h.handoff_id.as_str())
        .collect();
    if !stored.is_empty() {
        let rows = sqlx::query(
            r#"select l.handoff_id, l.channel, l.agent_id, l.outside_working_hours
               from unnest($2::text[]) as q(handoff_id)
               cross join lateral (
                   select * from handoff_lifecycle l
                   where l.org_id = $1 and l.handoff_id = q.handoff_id
                   offset 0
               ) l"#,
        )
        .bind(org.get())
        .bind(&stored)
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            fixed.insert(
                r.try_get("handoff_id")?,
                Fixed {
                    channel: r.try_get("channel")?,
                    agent_id: r.try_get("agent_id")?,
                    outside: r.try_get("outside_working_hours")?,
                },
            );
        }
    }

    let mut deltas: BTreeMap<RowKey, Tally> = BTreeMap::new();
    let mut add = |f: &Facts, sign: i64| {
        for (dim, key) in f.keys() {
            for (grain, bucket) in blocks::of(f.initiated_at) {
                deltas
                    .entry((dim.as_str(), grain, bucket, key.clone()))
                    .or_default()
                    .add_handoff(f, sign);
            }
        }
    };
    for h in &changes.handoffs {
        let Some(fx) = fixed.get(&h.handoff_id) else {
            continue;
        };
        let after = facts(h, fx);
        if let Some(before) = changes.handoffs_before.get(&h.handoff_id) {
            let before = facts(before, fx);
            if before == after {
                continue;
            }
            add(&before, -1);
        }
        add(&after, 1);
    }
    deltas.retain(|_, t| !t.is_zero());
    write(conn, org, deltas).await
}

/// Fixes the lifecycle attributes of handoffs first initiated in this batch and stores them.
async fn fix_fresh(
    conn: &mut PgConnection,
    org: OrgId,
    changes: &Changes,
    fresh: &[&HandoffRow],
    fixed: &mut HashMap<String, Fixed>,
) -> sqlx::Result<()> {
    // Sessions: those changed in this batch are at hand, the others are looked up.
    let mut sessions: HashMap<String, (String, Option<String>)> = changes
        .sessions
        .iter()
        .map(|s| {
            (
                s.session_id.clone(),
                (s.channel.as_str().to_owned(), s.agent_id.clone()),
            )
        })
        .collect();
    let missing: Vec<&str> = fresh
        .iter()
        .map(|h| h.session_id.as_str())
        .filter(|s| !sessions.contains_key(*s))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            r#"select s.session_id, s.channel, s.agent_id
               from unnest($2::text[]) as q(session_id)
               cross join lateral (
                   select s.session_id, s.channel, s.agent_id from sessions s
                   where s.org_id = $1 and s.session_id = q.session_id
                   offset 0
               ) s"#,
        )
        .bind(org.get())
        .bind(&missing)
        .fetch_all(&mut *conn)
        .await?;
        for (id, channel, agent) in rows {
            sessions.insert(id, (channel, agent));
        }
    }
    let revisions = working_hours_between(
        &mut *conn,
        org,
        fresh.iter().map(|h| h.initiated_at).min(),
        fresh.iter().map(|h| h.initiated_at).max(),
    )
    .await?;
    let (mut ids, mut channels, mut agents, mut outside) = (vec![], vec![], vec![], vec![]);
    for h in fresh {
        let (channel, agent) = sessions.get(&h.session_id).cloned().unwrap_or_default();
        let f = Fixed {
            channel,
            agent_id: agent,
            outside: in_force(&revisions, h.initiated_at)
                .is_some_and(|w| w.is_outside(h.initiated_at)),
        };
        ids.push(h.handoff_id.as_str());
        channels.push(f.channel.clone());
        agents.push(f.agent_id.clone());
        outside.push(f.outside);
        fixed.insert(h.handoff_id.clone(), f);
    }
    sqlx::query(
        r#"insert into handoff_lifecycle (org_id, handoff_id, channel, agent_id, outside_working_hours)
           select $1, * from unnest($2::text[], $3::text[], $4::text[], $5::bool[])"#,
    )
    .bind(org.get())
    .bind(&ids)
    .bind(&channels)
    .bind(&agents)
    .bind(&outside)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The configuration revisions in force at some instant of `[from, to]`: `(created_at, working
/// hours)`, by revision. The revision in force at `t` is the newest created at or before `t`;
/// before the first one, the default document (working hours off) applied.
async fn working_hours_between(
    conn: &mut PgConnection,
    org: OrgId,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> sqlx::Result<Vec<(DateTime<Utc>, WorkingHours)>> {
    let (Some(from), Some(to)) = (from, to) else {
        return Ok(Vec::new());
    };
    let rows: Vec<(i64, DateTime<Utc>, Value)> = sqlx::query_as(
        r#"select r.revision, r.created_at,
                  json_build_object('settings', r.document->'settings',
                                    'availability', r.document->'availability')::jsonb
           from handoff_configuration_revisions r
           where r.org_id = $1 and r.created_at <= $3
             and r.revision >= coalesce((
                 select max(p.revision) from handoff_configuration_revisions p
                 where p.org_id = $1 and p.created_at <= $2), 0)
           order by r.revision"#,
    )
    .bind(org.get())
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(_, at, doc)| (at, WorkingHours::from_document(&doc)))
        .collect())
}

/// The working hours in force at `t` (the newest revision created at or before it).
fn in_force(
    revisions: &[(DateTime<Utc>, WorkingHours)],
    t: DateTime<Utc>,
) -> Option<&WorkingHours> {
    revisions
        .iter()
        .rev()
        .find(|(at, _)| *at <= t)
        .map(|(_, w)| w)
}

/// Adds the deltas to the stored rows (read, merged, written back under the ingest lock).
async fn write(
    conn: &mut PgConnection,
    org: OrgId,
    deltas: BTreeMap<RowKey, Tally>,
) -> sqlx::Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let dims: Vec<&str> = deltas.keys().map(|k| k.0).collect();
    let grains: Vec<i32> = deltas.keys().map(|k| k.1).collect();
    let buckets: Vec<DateTime<Utc>> = deltas.keys().map(|k| k.2).collect();
    let keys: Vec<&str> = deltas.keys().map(|k| k.3.as_str()).collect();
    let stored = sqlx::query(&format!(
        r#"select {COLUMNS}
           from unnest($2::text[], $3::int4[], $4::timestamptz[], $5::text[])
                as q(dim, grain, bucket, key)
           cross join lateral (
               select * from handoff_lifecycle_rollups r
               where r.org_id = $1 and r.dim = q.dim and r.grain = q.grain
                 and r.bucket = q.bucket and r.key = q.key
               offset 0
           ) r"#
    ))
    .bind(org.get())
    .bind(&dims)
    .bind(&grains)
    .bind(&buckets)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    let mut merged: BTreeMap<(String, i32, DateTime<Utc>, String), Tally> = BTreeMap::new();
    for row in &stored {
        let (dim, grain, bucket, key, t) = tally_row(row)?;
        merged.insert((dim, grain, bucket, key), t);
    }
    for ((dim, grain, bucket, key), d) in deltas {
        merged
            .entry((dim.to_owned(), grain, bucket, key))
            .or_default()
            .merge(&d);
    }
    let mut cols = Columns::default();
    for ((dim, grain, bucket, key), t) in &merged {
        cols.push(dim, *grain, *bucket, key, t);
    }
    sqlx::query(
        r#"insert into handoff_lifecycle_rollups
               (org_id, dim, grain, bucket, key, initiated, completed, failed, abandoned, open,
                retried, outside_working_hours, wait_count, wait_sum_ms, wait_max_ms, wait_bins,
                wait_counts)
           select $1, q.dim, q.grain, q.bucket, q.key, q.initiated, q.completed, q.failed,
                  q.abandoned, q.open, q.retried, q.outside, q.wait_count, q.wait_sum_ms,
                  q.wait_max_ms,
                  coalesce((select array_agg(b::int4 order by o)
                            from unnest(string_to_array(q.bins, ',')) with ordinality as x(b, o)
                            where b <> ''), '{}'),
                  coalesce((select array_agg(c::int8 order by o)
                            from unnest(string_to_array(q.counts, ',')) with ordinality as x(c, o)
                            where c <> ''), '{}')
           from unnest($2::text[], $3::int4[], $4::timestamptz[], $5::text[], $6::int8[],
                       $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[],
                       $13::int8[], $14::int8[], $15::int8[], $16::text[], $17::text[])
                as q(dim, grain, bucket, key, initiated, completed, failed, abandoned, open,
                     retried, outside, wait_count, wait_sum_ms, wait_max_ms, bins, counts)
           on conflict (org_id, dim, grain, bucket, key) do update
           set initiated = excluded.initiated, completed = excluded.completed,
               failed = excluded.failed, abandoned = excluded.abandoned, open = excluded.open,
               retried = excluded.retried, outside_working_hours = excluded.outside_working_hours,
               wait_count = excluded.wait_count, wait_sum_ms = excluded.wait_sum_ms,
               wait_max_ms = excluded.wait_max_ms, wait_bins = excluded.wait_bins,
               wait_counts = excluded.wait_counts"#,
    )
    .bind(org.get())
    .bind(&cols.dim)
    .bind(&cols.grain)
    .bind(&cols.bucket)
    .bind(&cols.key)
    .bind(&cols.initiated)
    .bind(&cols.completed)
    .bind(&cols.failed)
    .bind(&cols.abandoned)
    .bind(&cols.open)
    .bind(&cols.retried)
    .bind(&cols.outside)
    .bind(&cols.wait_count)
    .bind(&cols.wait_sum_ms)
    .bind(&cols.wait_max_ms)
    .bind(&cols.bins)
    .bind(&cols.counts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rows to write, as column arrays (the histogram arrays as comma-separated text: PostgreSQL
/// has no arrays of arrays of different lengths).
#[derive(Default)]
struct Columns<'a> {
    dim: Vec<&'a str>,
    grain: Vec<i32>,
    bucket: Vec<DateTime<Utc>>,
    key: Vec<&'a str>,
    initiated: Vec<i64>,
    completed: Vec<i64>,
    failed: Vec<i64>,
    abandoned: Vec<i64>,
    open: Vec<i64>,
    retried: Vec<i64>,
    outside: Vec<i64>,
    wait_count: Vec<i64>,
    wait_sum_ms: Vec<i64>,
    wait_max_ms: Vec<Option<i64>>,
    bins: Vec<String>,
    counts: Vec<String>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, dim: &'a str, grain: i32, bucket: DateTime<Utc>, key: &'a str, t: &Tally) {
        let join = |v: Vec<String>| v.join(",");
        let (bins, counts) = t.waits.to_arrays();
        self.dim.push(dim);
        self.grain.push(grain);
        self.bucket.push(bucket);
        self.key.push(key);
        self.initiated.push(t.initiated);
        self.completed.push(t.completed);
        self.failed.push(t.failed);
        self.abandoned.push(t.abandoned);
        self.open.push(t.open);
        self.retried.push(t.retried);
        self.outside.push(t.outside_working_hours);
        self.wait_count.push(t.wait_count);
        self.wait_sum_ms.push(t.wait_sum_ms);
        self.wait_max_ms.push(t.wait_max_ms);
        self.bins
            .push(join(bins.iter().map(ToString::to_string).collect()));
        self.counts
            .push(join(counts.iter().map(ToString::to_string).collect()));
    }
}

/// The columns of a rollup row, as [`tally_row`] reads them.
const COLUMNS: &str = "r.dim, r.grain, r.bucket, r.key, r.initiated, r.completed, r.failed, \
     r.abandoned, r.open, r.retried, r.outside_working_hours, r.wait_count, r.wait_sum_ms, \
     r.wait_max_ms, r.wait_bins, r.wait_counts";

fn tally_row(
    row: &sqlx::postgres::PgRow,
) -> sqlx::Result<(String, i32, DateTime<Utc>, String, Tally)> {
    let bins: Vec<i32> = row.try_get("wait_bins")?;
    let counts: Vec<i64> = row.try_get("wait_counts")?;
    Ok((
        row.try_get("dim")?,
        row.try_get("grain")?,
        row.try_get("bucket")?,
        row.try_get("key")?,
        Tally {
            initiated: row.try_get("initiated")?,
            completed: row.try_get("completed")?,
            failed: row.try_get("failed")?,
            abandoned: row.try_get("abandoned")?,
            open: row.try_get("open")?,
            retried: row.try_get("retried")?,
            outside_working_hours: row.try_get("outside_working_hours")?,
            wait_count: row.try_get("wait_count")?,
            wait_sum_ms: row.try_get("wait_sum_ms")?,
            wait_max_ms: row.try_get("wait_max_ms")?,
            waits: WaitHistogram::from_arrays(&bins, &counts),
        },
    ))
}

/// The figures of one range: every handoff, each local day's, and the groups of one dimension.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Every handoff first initiated in the range.
    pub total: Tally,
    /// Per local day of the range (in order; zeros included).
    pub days: Vec<(NaiveDate, Tally)>,
    /// Per key of the requested dimension (empty without one).
    pub groups: BTreeMap<String, Tally>,
}

/// Reads the figures of `range`, grouped by `group_by` when given.
pub async fn read(
    conn: &mut PgConnection,
    org: OrgId,
    range: &TimeRange,
    group_by: Option<Dim>,
) -> sqlx::Result<Figures> {
    let days_list = range.local_days();
    let mut days: Vec<(NaiveDate, Tally)> =
        days_list.iter().map(|d| (*d, Tally::default())).collect();
    let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
    let reads = blocks::reads(range);
    let edges = match &reads.raw {
        Some(raw) => raw.clone(),
        None => vec![(range.start, range.end)],
    };
    if reads.raw.is_some() {
        let segs = &reads.days;
        let rows = sqlx::query(&format!(
            r#"select s.day, {COLUMNS}
               from unnest($2::int4[], $3::timestamptz[], $4::timestamptz[], $5::int4[])
                    as s(grain, f, t, day)
               cross join lateral (
                   select * from handoff_lifecycle_rollups r
                   where r.org_id = $1 and r.dim = '' and r.grain = s.grain
                     and r.bucket >= s.f and r.bucket < s.t
                   offset 0
               ) r"#
        ))
        .bind(org.get())
        .bind(segs.iter().map(|(_, s)| s.0).collect::<Vec<_>>())
        .bind(segs.iter().map(|(_, s)| s.1).collect::<Vec<_>>())
        .bind(segs.iter().map(|(_, s)| s.2).collect::<Vec<_>>())
        .bind(segs.iter().map(|(d, _)| *d as i32).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            let day: i32 = row.try_get("day")?;
            let (.., t) = tally_row(row)?;
            if let Some((_, d)) = days.get_mut(day as usize) {
                d.merge(&t);
            }
        }
        if let Some(dim) = group_by {
            let segs = &reads.range;
            let rows = sqlx::query(&format!(
                r#"select {COLUMNS}
                   from unnest($3::int4[], $4::timestamptz[], $5::timestamptz[]) as s(grain, f, t)
                   cross join lateral (
                       select * from handoff_lifecycle_rollups r
                       where r.org_id = $1 and r.dim = $2 and r.grain = s.grain
                         and r.bucket >= s.f and r.bucket < s.t
                       offset 0
                   ) r"#
            ))
            .bind(org.get())
            .bind(dim.as_str())
            .bind(segs.iter().map(|s| s.0).collect::<Vec<_>>())
            .bind(segs.iter().map(|s| s.1).collect::<Vec<_>>())
            .bind(segs.iter().map(|s| s.2).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;
            for row in &rows {
                let (_, _, _, key, t) = tally_row(row)?;
                groups.entry(key).or_default().merge(&t);
            }
        }
    }
    for (from, to) in edges {
        for f in facts_between(&mut *conn, org, from, to).await? {
            let day = range.local_day(f.initiated_at);
            if let Some((_, d)) = days.iter_mut().find(|(x, _)| *x == day) {
                d.add_handoff(&f, 1);
            }
            if let Some(dim) = group_by {
                for (d, key) in f.keys() {
                    if d == dim {
                        groups.entry(key).or_default().add_handoff(&f, 1);
                    }
                }
            }
        }
    }
    groups.retain(|_, t| !t.is_zero());
    let mut total = Tally::default();
    for (_, d) in &days {
        total.merge(d);
    }
    Ok(Figures {
        total,
        days,
        groups,
    })
}

/// The facts of the handoffs first initiated in `[from, to)`, from the projections.
pub async fn facts_between(
    db: impl PgExecutor<'_>,
    org: OrgId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<Facts>> {
    if from >= to {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        r#"select h.initiated_at, h.state, h.attempts, h.reasons, h.destination, h.completed_at,
                  l.channel, l.agent_id, l.outside_working_hours
           from handoffs h
           join handoff_lifecycle l on l.org_id = h.org_id and l.handoff_id = h.handoff_id
           where h.org_id = $1 and h.initiated_at >= $2 and h.initiated_at < $3"#,
    )
    .bind(org.get())
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let reasons: Vec<String> = r.try_get("reasons")?;
            Ok(Facts {
                initiated_at: r.try_get("initiated_at")?,
                state: r.try_get("state")?,
                attempts: r.try_get("attempts")?,
                reasons: reasons.iter().filter_map(|x| Reason::parse(x)).collect(),
                destination: r.try_get("destination")?,
                channel: r.try_get("channel")?,
                agent_id: r.try_get("agent_id")?,
                outside_working_hours: r.try_get("outside_working_hours")?,
                completed_at: r.try_get("completed_at")?,
            })
        })
        .collect()
}
