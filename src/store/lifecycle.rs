//! Handoff lifecycle rollups: maintained in the ingest transaction, read by
//! `GET /v1/handoff-lifecycle` (tables in `migrations/20261121000013_handoff_lifecycle.sql`; the
//! histograms stored as bytes since `migrations/20261129170001_lifecycle_wait_hist_bytes.sql`).
//!
//! Policy: when a handoff is first initiated, its session's channel and agent and its
//! working-hours class (against the configuration revision in force at that instant) are fixed
//! in `handoff_lifecycle`. Every batch then moves each changed handoff's counts, old state
//! subtracted and new state added, in every grain of the block of its first initiation, under
//! every `(dimension, key)` it belongs to ([`Facts::keys`]). The counts, sums and maxima are
//! added in SQL; the wait histograms, stored in a compact `bytea`
//! ([`crate::domain::lifecycle::WaitHistogram::encode`]), are merged in Rust: only the rows whose
//! delta holds waits are read (their histogram and `ctid`), merged and written back by `ctid`,
//! which is safe because the organization's ingest lock is held (see `write`). A batch whose
//! handoffs lie in more than [`pending::DEFER_BLOCKS`] blocks stores what it changed as one
//! pending row instead, its deltas computed and folded later by a background task under the same
//! lock ([`pending`]). Reads merge the
//! blocks covering a range (one row per block and key), plus the deltas still pending, and count
//! the sub-15-minute edges from the projections. Time blocks come from [`blocks`], the one place
//! that knows the bucket algebra.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor, Row};

use crate::auth::OrgId;
use crate::domain::events::Reason;
use crate::domain::lifecycle::{Dim, Facts, Tally, WorkingHours};
use crate::domain::projection::{Changes, HandoffRow};
use crate::domain::timerange::TimeRange;

pub mod pending;

/// The time blocks of the rollups: the grains and covers shared with the analytics rollups.
pub mod blocks {
    use chrono::{DateTime, Duration, Utc};

    use crate::domain::analytics::Plan;
    use crate::domain::buckets::{self, Grain, HANDOFF_GRAINS};
    use crate::domain::timerange::TimeRange;

    /// The blocks `(grain in seconds, start)` holding `t`, one per grain of the handoff ladder.
    pub fn of(t: DateTime<Utc>) -> impl Iterator<Item = (i32, DateTime<Utc>)> {
        HANDOFF_GRAINS
            .into_iter()
            .map(move |g| (g.seconds(), g.floor(t)))
    }

    /// The grain of the 15-minute blocks, in seconds.
    pub const QUARTER: i32 = 900;

    /// The 15-minute block holding `t` (the finest of the ladder: every block of [`of`] is a
    /// union of them).
    pub fn quarter_of(t: DateTime<Utc>) -> DateTime<Utc> {
        HANDOFF_GRAINS[0].floor(t)
    }

    /// A run of whole blocks of one grain: `(grain in seconds, from, to)`.
    pub type Segment = (i32, DateTime<Utc>, DateTime<Utc>);

    /// How a range is read: whole blocks and raw edges, for the whole range and each local day.
    pub struct Reads {
        /// The whole range's blocks.
        pub range: Vec<Segment>,
        /// Each local day's blocks, with the day's index and a sign: a local day that is not a
        /// UTC day (Asia/Kolkata, New York) may be read as the UTC day block it overlaps most,
        /// plus the blocks it has beyond that day and minus the blocks of that day it lacks
        /// (counts and histograms subtract exactly; maxima do not, and a day has none). See
        /// [`signed_day`].
        pub days: Vec<(usize, i64, Segment)>,
        /// Whether some day is read with a subtraction (the range's total is then read from
        /// the range's blocks rather than summed from the days, for its exact maximum).
        pub subtracts: bool,
        /// The edges `[from, to)` read from the projections (`None`: the local days are not
        /// unions of blocks, so the whole range is read from the projections).
        pub raw: Option<Vec<(DateTime<Utc>, DateTime<Utc>)>>,
    }

    /// The reads of `range` (the analytics plan: the same blocks answer both).
    pub fn reads(range: &TimeRange) -> Reads {
        let plan = Plan::new(range);
        let seg = |s: &buckets::Segment| (s.grain.seconds(), s.from, s.to);
        let mut days = Vec::new();
        let mut subtracts = false;
        for (i, c) in &plan.days_cover {
            match signed_day(c) {
                Some(pieces) => {
                    subtracts = true;
                    days.extend(pieces.into_iter().map(|(sign, s)| (*i, sign, seg(&s))));
                }
                None => days.extend(c.segments.iter().map(|s| (*i, 1, seg(s)))),
            }
        }
        Reads {
            range: plan.range.segments.iter().map(seg).collect(),
            days,
            subtracts,
            raw: plan.days_aligned.then(|| plan.range.raw.clone()),
        }
    }

    /// The blocks a cover reads (one row each at most).
    fn rows(segments: &[buckets::Segment]) -> i64 {
        segments
            .iter()
            .map(|s| (s.to - s.from).num_seconds() / i64::from(s.grain.seconds()))
            .sum()
    }

    /// A local day `[s, e)` (a cover of whole blocks) as a UTC day block `[b0, b1)` it overlaps,
    /// plus `[s, b0)` or minus `[b0, s)`, plus `[b1, e)` or minus `[e, b1)`, when that reads
    /// fewer blocks than its own cover: `(sign, segment)`. In Asia/Kolkata a day is 27 blocks
    /// (two quarters, 23 hours, two quarters) and 15 this way, of which 7 are shared with the
    /// next day; a UTC day keeps its one block.
    pub fn signed_day(c: &buckets::Cover) -> Option<Vec<(i64, buckets::Segment)>> {
        if !c.raw.is_empty() {
            return None;
        }
        let (s, e) = (c.segments.first()?.from, c.segments.last()?.to);
        let grains = &HANDOFF_GRAINS[..3];
        let day = Duration::days(1);
        let mut best: Option<(i64, Vec<(i64, buckets::Segment)>)> = None;
        for b0 in [Grain::DAY.floor(s), Grain::DAY.floor(s) + day] {
            let b1 = b0 + day;
            let mut pieces = vec![(
                1,
                buckets::Segment {
                    grain: Grain::DAY,
                    from: b0,
                    to: b1,
                },
            )];
            let mut exact = true;
            for (sign, from, to) in [(1, s, b0), (-1, b0, s), (1, b1, e), (-1, e, b1)] {
                if from >= to {
                    continue;
                }
                let piece = buckets::cover(from, to, grains);
                exact &= piece.raw.is_empty();
                pieces.extend(piece.segments.into_iter().map(|p| (sign, p)));
            }
            let cost = pieces
                .iter()
                .map(|(_, p)| rows(std::slice::from_ref(p)))
                .sum();
            if exact && best.as_ref().is_none_or(|(b, _)| cost < *b) {
                best = Some((cost, pieces));
            }
        }
        best.filter(|(cost, _)| *cost < rows(&c.segments))
            .map(|(_, pieces)| pieces)
    }
}

/// A handoff's fixed lifecycle attributes (set at its first initiation, never changed).
#[derive(Debug, Clone)]
struct Fixed {
    channel: String,
    agent_id: Option<String>,
    outside: bool,
}

/// A handoff's counted fields: what [`Facts`] takes from the handoff itself (the rest is
/// [`Fixed`]). Also the form a pending row stores ([`pending`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    initiated_at: DateTime<Utc>,
    state: String,
    attempts: i32,
    reasons: Vec<Reason>,
    destination: Option<String>,
    completed_at: Option<DateTime<Utc>>,
}

impl Fields {
    fn of(h: &HandoffRow) -> Fields {
        Fields {
            initiated_at: h.initiated_at,
            state: h.state.clone(),
            attempts: h.attempts,
            reasons: h.reasons.clone(),
            destination: h.destination.clone(),
            completed_at: h.completed_at,
        }
    }

    fn facts(self, f: &Fixed) -> Facts {
        Facts {
            initiated_at: self.initiated_at,
            state: self.state,
            attempts: self.attempts,
            reasons: self.reasons,
            destination: self.destination,
            channel: f.channel.clone(),
            agent_id: f.agent_id.clone(),
            outside_working_hours: f.outside,
            completed_at: self.completed_at,
        }
    }
}

/// Whether two versions of a handoff count the same (their [`Fields`] are equal; compared in
/// place, without copying them).
fn counts_the_same(a: &HandoffRow, b: &HandoffRow) -> bool {
    a.initiated_at == b.initiated_at
        && a.state == b.state
        && a.attempts == b.attempts
        && a.reasons == b.reasons
        && a.destination == b.destination
        && a.completed_at == b.completed_at
}

/// `(dim, grain, bucket, key)`.
type RowKey = (&'static str, i32, DateTime<Utc>, String);

/// A rollup row's key and what a batch adds to it.
type Delta = (RowKey, Tally);

/// A handoff a batch changed in what it counts: as it was (`None`: first initiated in the batch)
/// and as the batch left it.
pub(crate) type Moved<'a> = (Option<&'a HandoffRow>, &'a HandoffRow);

/// Updates the lifecycle rollups for one applied batch (called by `store::rollups::apply`).
/// `configured` `Some(false)`: the organization has no configuration revision (read under the
/// ingest lock), so no revision is looked up: working hours are off, as before any revision.
///
/// A batch whose handoffs lie in more than [`pending::defer_blocks`] blocks stores its changes
/// instead ([`pending`]): their deltas are computed and written later, by the folder.
pub async fn apply(
    conn: &mut PgConnection,
    org: OrgId,
    changes: &Changes,
    configured: Option<bool>,
) -> sqlx::Result<()> {
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
        fix_fresh(&mut *conn, org, changes, &fresh, configured, &mut fixed).await?;
    }
    let moved: Vec<Moved<'_>> = changes
        .handoffs
        .iter()
        .map(|h| (changes.handoffs_before.get(&h.handoff_id), h))
        .filter(|(before, after)| before.is_none_or(|b| !counts_the_same(b, after)))
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    if blocks_moved(&moved) > pending::defer_blocks(org) {
        return pending::defer(conn, org, &moved).await;
    }
    let stored: Vec<&str> = moved
        .iter()
        .filter(|(before, _)| before.is_some())
        .map(|(_, h)| h.handoff_id.as_str())
        .collect();
    fixed.extend(fixed_of(&mut *conn, org, &stored).await?);
    let deltas = deltas_of(moved.iter().filter_map(|(before, after)| {
        let fx = fixed.get(&after.handoff_id)?;
        Some((
            before.map(|b| Fields::of(b).facts(fx)),
            Fields::of(after).facts(fx),
        ))
    }));
    write(conn, org, deltas).await
}

/// The distinct blocks (of every grain) the handoffs of `moved` count in. What a batch's deltas
/// move is about this times the keys of a handoff (five or so); it costs a set of integers, not
/// the deltas.
fn blocks_moved(moved: &[Moved<'_>]) -> usize {
    let mut quarters: HashSet<DateTime<Utc>> = HashSet::new();
    for (before, after) in moved {
        quarters.extend(before.map(|b| blocks::quarter_of(b.initiated_at)));
        quarters.insert(blocks::quarter_of(after.initiated_at));
    }
    let mut all: HashSet<(i32, DateTime<Utc>)> = HashSet::with_capacity(quarters.len() * 2);
    for q in quarters {
        all.extend(blocks::of(q));
    }
    all.len()
}

/// The fixed attributes of stored handoffs (those without a lifecycle row are left out: they
/// count nowhere).
async fn fixed_of(
    conn: &mut PgConnection,
    org: OrgId,
    ids: &[&str],
) -> sqlx::Result<HashMap<String, Fixed>> {
    let mut fixed = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(fixed);
    }
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
    .bind(ids)
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
    Ok(fixed)
}

/// What handoff changes, each `(before, after)` (`before` `None`: first initiated in the batch),
/// add to each `(dim, quarter-hour, key)`: a handoff moves its keys in the 15-minute block of
/// its first initiation, and every coarser block's delta is the sum of the quarter-hours it holds
/// (blocks nest).
type QuarterDeltas = HashMap<(&'static str, DateTime<Utc>, String), Tally>;

fn quarter_deltas(changes: impl IntoIterator<Item = (Option<Facts>, Facts)>) -> QuarterDeltas {
    let mut quarters = QuarterDeltas::new();
    let mut add = |f: &Facts, sign: i64| {
        let quarter = blocks::quarter_of(f.initiated_at);
        for (dim, key) in f.keys() {
            quarters
                .entry((dim.as_str(), quarter, key))
                .or_default()
                .add_handoff(f, sign);
        }
    };
    for (before, after) in changes {
        if let Some(before) = before {
            if before == after {
                continue;
            }
            add(&before, -1);
        }
        add(&after, 1);
    }
    quarters
}

/// The deltas of handoff changes (as [`quarter_deltas`] takes them) in every grain, in key order,
/// rows whose delta is zero left out. One definition for the direct path and the folder, so a
/// batch's deltas are the same whichever applies them.
fn deltas_of(changes: impl IntoIterator<Item = (Option<Facts>, Facts)>) -> pending::Deltas {
    // A handoff costs one quarter-hour entry per key rather than one per key and grain. Gathered
    // in a hash map, then sorted once: a batch of completions spread over weeks has ~20,000
    // block entries for ~10,000 rows, and inserting each into an ordered map compared its key's
    // strings ~40 times (measured: most of the batch's CPU in Baton).
    let quarters = quarter_deltas(changes);
    let mut gathered: HashMap<RowKey, Tally> = HashMap::with_capacity(quarters.len() * 2);
    for ((dim, quarter, key), t) in quarters {
        for (grain, bucket) in blocks::of(quarter) {
            gathered
                .entry((dim, grain, bucket, key.clone()))
                .or_default()
                .merge(&t);
        }
    }
    gathered.into_iter().filter(|(_, t)| !t.is_zero()).collect()
}

/// Fixes the lifecycle attributes of handoffs first initiated in this batch and stores them.
async fn fix_fresh(
    conn: &mut PgConnection,
    org: OrgId,
    changes: &Changes,
    fresh: &[&HandoffRow],
    configured: Option<bool>,
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
    let revisions = match configured {
        Some(false) => Vec::new(),
        _ => {
            working_hours_between(
                &mut *conn,
                org,
                fresh.iter().map(|h| h.initiated_at).min(),
                fresh.iter().map(|h| h.initiated_at).max(),
            )
            .await?
        }
    };
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

/// Adds the deltas to the stored rows, under the ingest lock (nothing else writes these rows
/// meanwhile). Counts, sums and maxima are added in SQL (`r.initiated + q.initiated`, `greatest`
/// for the maximum, which ignores a null as [`Tally::merge`] does). Only a histogram needs Rust:
/// a row whose delta holds no wait keeps its stored histogram and is upserted without being read
/// (a batch of initiations reads nothing); a row whose delta holds waits has its stored histogram
/// read (with its `ctid`), merged
/// ([`add_encoded`](crate::domain::lifecycle::WaitHistogram::add_encoded)) and written back by
/// that `ctid` (no second index probe: only an update in this transaction could move the row),
/// or is inserted when there is none.
async fn write(
    conn: &mut PgConnection,
    org: OrgId,
    deltas: BTreeMap<RowKey, Tally>,
) -> sqlx::Result<()> {
    let (mut waits, plain): (Vec<Delta>, Vec<Delta>) =
        deltas.into_iter().partition(|(_, t)| !t.waits.is_empty());
    if !plain.is_empty() {
        upsert(&mut *conn, org, &plain).await?;
    }
    if waits.is_empty() {
        return Ok(());
    }
    let dims: Vec<&str> = waits.iter().map(|(k, _)| k.0).collect();
    let grains: Vec<i32> = waits.iter().map(|(k, _)| k.1).collect();
    let buckets: Vec<DateTime<Utc>> = waits.iter().map(|(k, _)| k.2).collect();
    let keys: Vec<&str> = waits.iter().map(|(k, _)| k.3.as_str()).collect();
    // `q.i`: the delta's index in `waits` (`with ordinality` counts from 1).
    let stored = sqlx::query(
        r#"select q.i, r.ctid::text as tid, r.wait_hist
           from unnest($2::text[], $3::int4[], $4::timestamptz[], $5::text[])
                with ordinality as q(dim, grain, bucket, key, i)
           cross join lateral (
               select r.ctid, r.wait_hist from handoff_lifecycle_rollups r
               where r.org_id = $1 and r.dim = q.dim and r.grain = q.grain
                 and r.bucket = q.bucket and r.key = q.key
               offset 0
           ) r"#,
    )
    .bind(org.get())
    .bind(&dims)
    .bind(&grains)
    .bind(&buckets)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    let mut tids: Vec<Option<String>> = vec![None; waits.len()];
    for row in &stored {
        let i: i64 = row.try_get("i")?;
        let Some(at) = usize::try_from(i - 1).ok().filter(|i| *i < waits.len()) else {
            continue;
        };
        let hist: &[u8] = row.try_get("wait_hist")?;
        waits[at]
            .1
            .waits
            .add_encoded(hist, 1)
            .map_err(bad_histogram)?;
        tids[at] = Some(row.try_get("tid")?);
    }
    let (mut updates, mut update_tids, mut inserts) = (Columns::default(), Vec::new(), Vec::new());
    for ((key, t), tid) in waits.iter().zip(tids) {
        match tid {
            Some(tid) => {
                updates.push(key.0, key.1, key.2, &key.3, t);
                update_tids.push(tid);
            }
            None => inserts.push((key.clone(), t.clone())),
        }
    }
    if !update_tids.is_empty() {
        let query = sqlx::query(
            r#"update handoff_lifecycle_rollups r
               set initiated = r.initiated + q.initiated, completed = r.completed + q.completed,
                   failed = r.failed + q.failed, abandoned = r.abandoned + q.abandoned,
                   open = r.open + q.open, retried = r.retried + q.retried,
                   outside_working_hours = r.outside_working_hours + q.outside,
                   wait_count = r.wait_count + q.wait_count,
                   wait_sum_ms = r.wait_sum_ms + q.wait_sum_ms,
                   wait_max_ms = greatest(r.wait_max_ms, q.wait_max_ms), wait_hist = q.hist
               from unnest($2::text[]::tid[], $3::int8[], $4::int8[], $5::int8[], $6::int8[],
                           $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[],
                           $12::int8[], $13::bytea[])
                    as q(tid, initiated, completed, failed, abandoned, open, retried, outside,
                         wait_count, wait_sum_ms, wait_max_ms, hist)
               where r.ctid = q.tid and r.org_id = $1"#,
        )
        .bind(org.get())
        .bind(&update_tids);
        let done = updates.bind_figures(query).execute(&mut *conn).await?;
        // Every row read is updated (nothing else can have moved one); were one missed, the batch
        // fails rather than lose its delta.
        if usize::try_from(done.rows_affected()).ok() != Some(update_tids.len()) {
            return Err(sqlx::Error::RowNotFound);
        }
    }
    if !inserts.is_empty() {
        upsert(&mut *conn, org, &inserts).await?;
    }
    Ok(())
}

/// Adds rows' deltas whose histograms are either empty (the stored one is kept) or the row's
/// whole histogram (a row [`write`] found no stored row for: under the ingest lock it cannot
/// conflict; were it to, the not-null check fails the batch rather than lose the waits).
async fn upsert(conn: &mut PgConnection, org: OrgId, rows: &[Delta]) -> sqlx::Result<()> {
    let mut cols = Columns::default();
    for ((dim, grain, bucket, key), t) in rows {
        cols.push(dim, *grain, *bucket, key, t);
    }
    let query = sqlx::query(
        r#"insert into handoff_lifecycle_rollups as r
               (org_id, dim, grain, bucket, key, initiated, completed, failed, abandoned, open,
                retried, outside_working_hours, wait_count, wait_sum_ms, wait_max_ms, wait_hist)
           select $1, q.dim, q.grain, q.bucket, q.key, q.initiated, q.completed, q.failed,
                  q.abandoned, q.open, q.retried, q.outside, q.wait_count, q.wait_sum_ms,
                  q.wait_max_ms, q.hist
           from unnest($2::text[], $3::int4[], $4::timestamptz[], $5::text[], $6::int8[],
                       $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[],
                       $13::int8[], $14::int8[], $15::int8[], $16::bytea[])
                as q(dim, grain, bucket, key, initiated, completed, failed, abandoned, open,
                     retried, outside, wait_count, wait_sum_ms, wait_max_ms, hist)
           on conflict (org_id, dim, grain, bucket, key) do update
           set initiated = r.initiated + excluded.initiated,
               completed = r.completed + excluded.completed,
               failed = r.failed + excluded.failed, abandoned = r.abandoned + excluded.abandoned,
               open = r.open + excluded.open, retried = r.retried + excluded.retried,
               outside_working_hours = r.outside_working_hours + excluded.outside_working_hours,
               wait_count = r.wait_count + excluded.wait_count,
               wait_sum_ms = r.wait_sum_ms + excluded.wait_sum_ms,
               wait_max_ms = greatest(r.wait_max_ms, excluded.wait_max_ms),
               wait_hist = case when excluded.wait_hist = ''::bytea then r.wait_hist end"#,
    )
    .bind(org.get())
    .bind(&cols.dim)
    .bind(&cols.grain)
    .bind(&cols.bucket)
    .bind(&cols.key);
    cols.bind_figures(query).execute(&mut *conn).await?;
    Ok(())
}

/// Rows to write, as column arrays.
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
    hist: Vec<Vec<u8>>,
}

impl<'a> Columns<'a> {
    /// Binds the figures (`initiated` … `hist`, in the order of [`Columns`]) as the next
    /// parameters of `q`.
    fn bind_figures<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.initiated)
            .bind(&self.completed)
            .bind(&self.failed)
            .bind(&self.abandoned)
            .bind(&self.open)
            .bind(&self.retried)
            .bind(&self.outside)
            .bind(&self.wait_count)
            .bind(&self.wait_sum_ms)
            .bind(&self.wait_max_ms)
            .bind(&self.hist)
    }

    fn push(&mut self, dim: &'a str, grain: i32, bucket: DateTime<Utc>, key: &'a str, t: &Tally) {
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
        self.hist.push(t.waits.encode());
    }
}

/// The columns of a rollup row, as [`merge_row`] reads them.
const COLUMNS: &str = "r.dim, r.grain, r.bucket, r.key, r.initiated, r.completed, r.failed, \
     r.abandoned, r.open, r.retried, r.outside_working_hours, r.wait_count, r.wait_sum_ms, \
     r.wait_max_ms, r.wait_hist";

/// The error of a stored histogram that does not decode.
fn bad_histogram(e: crate::domain::lifecycle::BadHistogram) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: "wait_hist".to_owned(),
        source: Box::new(e),
    }
}

/// Adds (`sign` 1) or subtracts (−1) a rollup row (read with [`COLUMNS`]) to `into`, its
/// histogram decoded straight from the stored bytes into `into`'s (no intermediate tally: a
/// read merges hundreds of rows). The maximum is merged only when adding (a maximum cannot be
/// subtracted), as [`Tally::merge_signed`] does.
fn merge_row(row: &sqlx::postgres::PgRow, into: &mut Tally, sign: i64) -> sqlx::Result<()> {
    let hist: &[u8] = row.try_get("wait_hist")?;
    let get = |c: &str| row.try_get::<i64, _>(c).map(|v| sign * v);
    into.initiated += get("initiated")?;
    into.completed += get("completed")?;
    into.failed += get("failed")?;
    into.abandoned += get("abandoned")?;
    into.open += get("open")?;
    into.retried += get("retried")?;
    into.outside_working_hours += get("outside_working_hours")?;
    into.wait_count += get("wait_count")?;
    into.wait_sum_ms += get("wait_sum_ms")?;
    if sign > 0 {
        let max: Option<i64> = row.try_get("wait_max_ms")?;
        into.wait_max_ms = match (into.wait_max_ms, max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    into.waits.add_encoded(hist, sign).map_err(bad_histogram)
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
///
/// Deltas still pending (see [`pending`]) are counted: each rollup statement also tells whether
/// the organization has pending rows (normally not: one probe of an empty index, no extra round
/// trip; a statement that finds no rollup row counts as having seen some); if one does, the
/// read is made again in one `REPEATABLE READ` snapshot, the pending
/// deltas of that snapshot merged into the answer (a fold commits its rollup updates and the
/// deletion of what it folded at once, so in one snapshot each delta is either in the rollups or
/// pending, never both, never neither). `conn` must not be in a transaction.
pub async fn read(
    conn: &mut PgConnection,
    org: OrgId,
    range: &TimeRange,
    group_by: Option<Dim>,
) -> sqlx::Result<Figures> {
    let (figures, pending_seen) = read_with(&mut *conn, org, range, group_by, None).await?;
    if !pending_seen {
        return Ok(figures);
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let deltas = pending::load_quarters(&mut tx, org).await?;
    let (figures, _) = read_with(&mut tx, org, range, group_by, Some(&deltas)).await?;
    tx.commit().await?;
    Ok(figures)
}

/// The pending deltas of `dim` in the block run `seg`: those of the quarter-hours it holds
/// (the map holds quarter-hours only, see [`pending::load_quarters`]; its keys are ordered by
/// dimension, grain, bucket, then key, so they are a range of it).
fn pending_in<'a>(
    deltas: &'a pending::Deltas,
    dim: Dim,
    seg: &'a blocks::Segment,
) -> impl Iterator<Item = (&'a RowKey, &'a Tally)> + 'a {
    let (_, from, to) = *seg;
    let quarter = blocks::QUARTER;
    let range = (from < to).then(|| {
        deltas.range(
            (dim.as_str(), quarter, from, String::new())
                ..(dim.as_str(), quarter, to, String::new()),
        )
    });
    range.into_iter().flatten()
}

/// [`read`] with the pending deltas `pending` merged in (`None`: not read); also returns whether
/// a rollup statement saw pending rows.
async fn read_with(
    conn: &mut PgConnection,
    org: OrgId,
    range: &TimeRange,
    group_by: Option<Dim>,
    pending: Option<&pending::Deltas>,
) -> sqlx::Result<(Figures, bool)> {
    let days_list = range.local_days();
    let mut days: Vec<(NaiveDate, Tally)> =
        days_list.iter().map(|d| (*d, Tally::default())).collect();
    let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
    let reads = blocks::reads(range);
    let edges = match &reads.raw {
        Some(raw) => raw.clone(),
        None => vec![(range.start, range.end)],
    };
    let mut pending_seen = false;
    // The range's own total, when the days cannot give it (see `blocks::Reads::subtracts`).
    let mut range_total: Option<Tally> = None;
    if reads.raw.is_some() {
        // Each distinct block run read once, then added to (or subtracted from) every day that
        // uses it: consecutive days share the runs between them.
        let mut uniq: Vec<blocks::Segment> = Vec::new();
        let mut uses: Vec<Vec<(usize, i64)>> = Vec::new();
        let mut index: HashMap<blocks::Segment, usize> = HashMap::new();
        for (day, sign, seg) in &reads.days {
            let i = *index.entry(*seg).or_insert_with(|| {
                uniq.push(*seg);
                uses.push(Vec::new());
                uniq.len() - 1
            });
            uses[i].push((*day, *sign));
        }
        let segs = &uniq;
        let rows = sqlx::query(&format!(
            r#"select s.day, {COLUMNS}, ({PENDING}) as pending
               from unnest($2::int4[], $3::timestamptz[], $4::timestamptz[])
                    with ordinality as s(grain, f, t, day)
               cross join lateral (
                   select * from handoff_lifecycle_rollups r
                   where r.org_id = $1 and r.dim = '' and r.grain = s.grain
                     and r.bucket >= s.f and r.bucket < s.t
                   offset 0
               ) r"#
        ))
        .bind(org.get())
        .bind(segs.iter().map(|s| s.0).collect::<Vec<_>>())
        .bind(segs.iter().map(|s| s.1).collect::<Vec<_>>())
        .bind(segs.iter().map(|s| s.2).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        // No row to carry the probe: read again in one snapshot with what is pending (a probe
        // of its own would see another snapshot, where a fold may have moved deltas this read
        // did not see in the rollups).
        pending_seen |= rows.is_empty();
        for row in &rows {
            pending_seen |= row.try_get::<bool, _>("pending")?;
            // `with ordinality` counts from 1.
            let seg: i64 = row.try_get("day")?;
            let Some(used) = usize::try_from(seg - 1).ok().and_then(|i| uses.get(i)) else {
                continue;
            };
            // Decoded into each day that uses it (at most two), no intermediate tally.
            for (day, sign) in used {
                if let Some((_, d)) = days.get_mut(*day) {
                    merge_row(row, d, *sign)?;
                }
            }
        }
        if let Some(deltas) = pending {
            for (seg, used) in segs.iter().zip(&uses) {
                for (_, t) in pending_in(deltas, Dim::All, seg) {
                    for (day, sign) in used {
                        if let Some((_, d)) = days.get_mut(*day) {
                            d.merge_signed(t, *sign);
                        }
                    }
                }
            }
        }
        if reads.subtracts {
            let mut t = Tally::default();
            let (rows, seen) = read_range(&mut *conn, org, Dim::All, &reads.range).await?;
            pending_seen |= seen;
            for row in &rows {
                merge_row(row, &mut t, 1)?;
            }
            if let Some(deltas) = pending {
                for seg in &reads.range {
                    for (_, d) in pending_in(deltas, Dim::All, seg) {
                        t.merge(d);
                    }
                }
            }
            range_total = Some(t);
        }
        if let Some(dim) = group_by {
            let (rows, seen) = read_range(&mut *conn, org, dim, &reads.range).await?;
            pending_seen |= seen;
            for row in &rows {
                let key: String = row.try_get("key")?;
                merge_row(row, groups.entry(key).or_default(), 1)?;
            }
            if let Some(deltas) = pending {
                for seg in &reads.range {
                    for ((_, _, _, key), d) in pending_in(deltas, dim, seg) {
                        groups.entry(key.clone()).or_default().merge(d);
                    }
                }
            }
        }
    }
    for (from, to) in edges {
        for f in facts_between(&mut *conn, org, from, to).await? {
            let day = range.local_day(f.initiated_at);
            if let Some((_, d)) = days.iter_mut().find(|(x, _)| *x == day) {
                d.add_handoff(&f, 1);
            }
            if let Some(t) = range_total.as_mut() {
                t.add_handoff(&f, 1);
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
    let total = range_total.unwrap_or_else(|| {
        let mut total = Tally::default();
        for (_, d) in &days {
            total.merge(d);
        }
        total
    });
    Ok((
        Figures {
            total,
            days,
            groups,
        },
        pending_seen,
    ))
}

/// Whether the organization (`$1`) has pending deltas: a column of every rollup read (an
/// uncorrelated subquery, evaluated once per statement, in the statement's snapshot; the read's
/// own plan is unchanged). A read that returns no row carries no answer, and is treated as
/// having seen pending deltas.
const PENDING: &str = "select exists (select 1 from handoff_lifecycle_pending w \
     where w.org_id = $1)";

/// The rollup rows of `dim` in the block runs `segs`, and whether the organization has pending
/// deltas (in the same snapshot).
async fn read_range(
    conn: &mut PgConnection,
    org: OrgId,
    dim: Dim,
    segs: &[blocks::Segment],
) -> sqlx::Result<(Vec<sqlx::postgres::PgRow>, bool)> {
    let rows = sqlx::query(&format!(
        r#"select {COLUMNS}, ({PENDING}) as pending
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
    let mut seen = false;
    for row in &rows {
        seen |= row.try_get::<bool, _>("pending")?;
    }
    // No row to carry the probe: the caller reads again in one snapshot (see `read_with`).
    seen |= rows.is_empty();
    Ok((rows, seen))
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

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::blocks::signed_day;
    use crate::domain::buckets::{HANDOFF_GRAINS, cover};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_quarter_grain_is_the_finest_of_the_ladder() {
        assert_eq!(super::blocks::QUARTER, HANDOFF_GRAINS[0].seconds());
        assert!(
            HANDOFF_GRAINS
                .iter()
                .all(|g| g.seconds() % super::blocks::QUARTER == 0)
        );
    }

    /// Every 15-minute slot around the day is counted once if it is in the day, else not at
    /// all, by the signed pieces.
    fn assert_exact_day(from: DateTime<Utc>, to: DateTime<Utc>, max_rows: usize) {
        let c = cover(from, to, &HANDOFF_GRAINS[..3]);
        let pieces = signed_day(&c).expect("read with a UTC day block");
        let rows: i64 = pieces
            .iter()
            .map(|(_, p)| (p.to - p.from).num_seconds() / i64::from(p.grain.seconds()))
            .sum();
        assert!(rows as usize <= max_rows, "{rows} rows");
        let mut slot = from - Duration::days(2);
        while slot < to + Duration::days(2) {
            let n: i64 = pieces
                .iter()
                .filter(|(_, p)| p.from <= slot && slot < p.to)
                .map(|(sign, _)| *sign)
                .sum();
            assert_eq!(n, i64::from(from <= slot && slot < to), "{slot}");
            slot += Duration::minutes(15);
        }
    }

    #[test]
    fn local_days_read_with_a_utc_day_block_add_up_exactly() {
        // Asia/Kolkata (+05:30): 27 blocks of its own, 15 this way.
        assert_exact_day(t("2026-08-02T18:30:00Z"), t("2026-08-03T18:30:00Z"), 15);
        // New York (−04:00): 24 blocks of its own, 9 this way.
        assert_exact_day(t("2026-08-03T04:00:00Z"), t("2026-08-04T04:00:00Z"), 9);
        // A 25-hour DST day in New York (Nov 1, 2026: −04:00 then −05:00).
        assert_exact_day(t("2026-11-01T04:00:00Z"), t("2026-11-02T05:00:00Z"), 11);
        // A UTC day keeps its one block.
        let c = cover(
            t("2026-08-03T00:00:00Z"),
            t("2026-08-04T00:00:00Z"),
            &HANDOFF_GRAINS[..3],
        );
        assert!(signed_day(&c).is_none());
    }
}
