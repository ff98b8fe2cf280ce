//! Handoff analytics rollups: maintained in the ingest transaction, read by
//! `GET /handoff-analytics` (tables in `migrations/20261121000004_handoff_analytics_rollups.sql`).
//!
//! Policy: a batch moves each count it changes in every grain (old state subtracted, new state
//! added), so a rollup always equals a recomputation from the projections. A handoff is counted
//! once, in the 15-minute bucket of its first initiation, under scope `''` and under every
//! instruction it references; a retry that adds reasons or references, or replaces the
//! sentiment, moves its counts. A session's reason combination is recomputed from the stored
//! handoffs for the sessions whose handoffs gained reasons or references. Reads sum the
//! rollup blocks of a [`Plan`] and count the sub-15-minute edges from the projections, in one
//! statement. Lookups by lists of ids go through `lateral (… offset 0)` so that every plan,
//! generic ones included, probes the index per id instead of scanning the organization's rows:
//! the cost of a batch or a read never grows with history.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use crate::auth::OrgId;
use crate::domain::analytics::{Counts, Plan, combination_key, parse_combination};
use crate::domain::buckets::{Cover, Grain, HANDOFF_GRAINS, Segment};
use crate::domain::events::{Reason, ReferenceType};
use crate::domain::projection::{Changes, HandoffRow};

/// Breakdown kinds besides the reference types (which are their own kinds).
const REASON: &str = "reason";
const SENTIMENT: &str = "sentiment";
const NO_SENTIMENT: &str = "no_sentiment";
const COMBINATION: &str = "combination";

/// Count changes of one batch, by 15-minute bucket. The handoffs' counts are keyed by strings
/// borrowed from the batch's rows (a hash map: no key is copied or compared byte by byte per
/// handoff); [`write`] orders them.
#[derive(Default)]
struct Deltas<'a> {
    /// `(scope, bucket) → handoffs`.
    totals: HashMap<(&'a str, DateTime<Utc>), i64>,
    /// `(scope, bucket, kind, key) → count`.
    breakdown: HashMap<(&'a str, DateTime<Utc>, &'a str, &'a str), i64>,
    /// `(scope, bucket, combination, key) → count`: the reason combinations (keys built here).
    combinations: BTreeMap<(String, DateTime<Utc>, String, String), i64>,
    /// `bucket → sessions`.
    sessions: BTreeMap<DateTime<Utc>, i64>,
}

impl<'a> Deltas<'a> {
    /// Adds (`sign` 1) or subtracts (-1) one handoff's contribution.
    fn handoff(&mut self, h: &'a HandoffRow, refs: &'a [(String, String)], sign: i64) {
        let at = Grain::QUARTER_HOUR.floor(h.initiated_at);
        let scopes = std::iter::once("").chain(
            refs.iter()
                .filter(|(t, _)| t == ReferenceType::Instruction.as_str())
                .map(|(_, id)| id.as_str()),
        );
        for scope in scopes {
            *self.totals.entry((scope, at)).or_default() += sign;
            let mut add = |kind: &'a str, key: &'a str| {
                *self.breakdown.entry((scope, at, kind, key)).or_default() += sign;
            };
            for r in &h.reasons {
                add(REASON, r.as_str());
            }
            match &h.sentiment {
                Some(s) => add(SENTIMENT, s),
                None => add(NO_SENTIMENT, ""),
            }
            for (t, id) in refs {
                add(t.as_str(), id.as_str());
            }
        }
    }
}

/// Updates the analytics rollups for one applied batch (called by `store::rollups::apply`).
///
/// `changes.references` must hold only the pairs this batch stored (not those stored before).
pub async fn apply(conn: &mut PgConnection, org: OrgId, changes: &Changes) -> sqlx::Result<()> {
    // The reference lists the deltas borrow from: the pairs of handoffs stored before (read
    // back) and, for those, the pairs they had before this batch.
    let mut refs: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut olds: Vec<Vec<(String, String)>> = Vec::new();
    let mut deltas = Deltas::default();
    for s in &changes.sessions {
        if !changes.sessions_before.contains_key(&s.session_id) {
            *deltas
                .sessions
                .entry(Grain::QUARTER_HOUR.floor(s.started_at))
                .or_default() += 1;
        }
    }

    // Handoffs whose counted state changed: new, or with other reasons, sentiment or references.
    let mut new_refs: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for (h, r) in &changes.references {
        new_refs
            .entry(h.as_str())
            .or_default()
            .push((r.kind.as_str().to_owned(), r.id.clone()));
    }
    let moved: Vec<&HandoffRow> = changes
        .handoffs
        .iter()
        .filter(|h| match changes.handoffs_before.get(&h.handoff_id) {
            None => true,
            Some(b) => {
                b.reasons != h.reasons
                    || b.sentiment != h.sentiment
                    || new_refs.contains_key(h.handoff_id.as_str())
            }
        })
        .collect();
    if !moved.is_empty() {
        // References: a handoff new in this batch has exactly the pairs stored now; only the
        // handoffs stored before are looked up.
        let ids: Vec<&str> = moved
            .iter()
            .filter(|h| changes.handoffs_before.contains_key(&h.handoff_id))
            .map(|h| h.handoff_id.as_str())
            .collect();
        if !ids.is_empty() {
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                r#"select r.handoff_id, r.ref_type, r.ref_id
                   from unnest($2::text[]) as q(handoff_id)
                   cross join lateral (
                       select r.handoff_id, r.ref_type, r.ref_id from handoff_references r
                       where r.org_id = $1 and r.handoff_id = q.handoff_id
                       offset 0
                   ) r"#,
            )
            .bind(org.get())
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
            for (h, t, id) in rows {
                refs.entry(h).or_default().push((t, id));
            }
        }
        let after = |h: &HandoffRow| {
            match changes.handoffs_before.get(&h.handoff_id) {
                Some(_) => refs.get(&h.handoff_id),
                None => new_refs.get(h.handoff_id.as_str()),
            }
            .map(Vec::as_slice)
            .unwrap_or(&[])
        };
        // The pairs each handoff stored before had before this batch, in the order of `moved`.
        for h in &moved {
            if changes.handoffs_before.contains_key(&h.handoff_id) {
                let added: HashSet<&(String, String)> = new_refs
                    .get(h.handoff_id.as_str())
                    .map(|v| v.iter().collect())
                    .unwrap_or_default();
                olds.push(
                    after(h)
                        .iter()
                        .filter(|r| !added.contains(r))
                        .cloned()
                        .collect(),
                );
            }
        }
        let mut olds = olds.iter();
        for h in &moved {
            if let Some(before) = changes.handoffs_before.get(&h.handoff_id) {
                let old = olds.next().map(Vec::as_slice).unwrap_or(&[]);
                deltas.handoff(before, old, -1);
            }
            deltas.handoff(h, after(h), 1);
        }

        // Reason combinations of the sessions whose handoffs moved: recomputed from the stored
        // handoffs, compared with the stored combination, the difference counted.
        let mut sessions: Vec<&str> = moved
            .iter()
            .filter(|h| {
                changes.handoffs_before.get(&h.handoff_id).is_none_or(|b| {
                    b.reasons != h.reasons || new_refs.contains_key(h.handoff_id.as_str())
                })
            })
            .map(|h| h.session_id.as_str())
            .collect();
        sessions.sort_unstable();
        sessions.dedup();
        // A session started in this batch has all its handoffs in this batch: its combinations
        // are computed here and inserted (none was stored). The others are recomputed in SQL
        // from the stored handoffs.
        let started: HashSet<&str> = changes
            .sessions
            .iter()
            .filter(|s| !changes.sessions_before.contains_key(&s.session_id))
            .map(|s| s.session_id.as_str())
            .collect();
        let (fresh_sessions, sessions): (Vec<&str>, Vec<&str>) =
            sessions.into_iter().partition(|s| started.contains(s));
        if !fresh_sessions.is_empty() {
            let fresh = fresh_combinations(changes, &fresh_sessions, &new_refs);
            sqlx::query(
                r#"insert into handoff_session_reasons
                       (org_id, scope, session_id, first_initiated_at, reasons)
                   select $1, * from unnest($2::text[], $3::text[], $4::timestamptz[], $5::text[])"#,
            )
            .bind(org.get())
            .bind(fresh.iter().map(|c| c.0).collect::<Vec<_>>())
            .bind(fresh.iter().map(|c| c.1).collect::<Vec<_>>())
            .bind(fresh.iter().map(|c| c.2).collect::<Vec<_>>())
            .bind(fresh.iter().map(|c| c.3.as_str()).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
            for (scope, _, first, reasons) in fresh {
                *deltas
                    .combinations
                    .entry((
                        scope.to_owned(),
                        Grain::QUARTER_HOUR.floor(first),
                        COMBINATION.to_owned(),
                        reasons,
                    ))
                    .or_default() += 1;
            }
        }
        if !sessions.is_empty() {
            recount_combinations(&mut *conn, org, &sessions, &mut deltas).await?;
        }
    }
    write(conn, org, &deltas).await
}

/// The reason combinations `(scope, session, first initiation, key)` of sessions started in this
/// batch, from this batch's handoffs (all of theirs): a scope per instruction, keyed by
/// [`combination_key`].
fn fresh_combinations<'a>(
    changes: &'a Changes,
    sessions: &[&str],
    new_refs: &'a HashMap<&str, Vec<(String, String)>>,
) -> Vec<(&'a str, &'a str, DateTime<Utc>, String)> {
    let wanted: HashSet<&str> = sessions.iter().copied().collect();
    let mut acc = Combinations::default();
    for h in &changes.handoffs {
        if !wanted.contains(h.session_id.as_str()) {
            continue;
        }
        let instructions = new_refs
            .get(h.handoff_id.as_str())
            .into_iter()
            .flatten()
            .filter(|(t, _)| t == ReferenceType::Instruction.as_str())
            .map(|(_, id)| id.as_str());
        for scope in std::iter::once("").chain(instructions) {
            acc.add(scope, &h.session_id, h.initiated_at, &h.reasons);
        }
    }
    acc.keys()
}

/// Sessions' reason combinations being gathered: `(scope, session) → (first initiation,
/// reasons)`.
#[derive(Default)]
struct Combinations<'a>(BTreeMap<(&'a str, &'a str), Gathered>);

/// A session's first initiation and reasons so far, in one scope.
type Gathered = (DateTime<Utc>, Vec<Reason>);

impl<'a> Combinations<'a> {
    /// Adds a handoff of `session` in `scope`.
    fn add(&mut self, scope: &'a str, session: &'a str, at: DateTime<Utc>, reasons: &[Reason]) {
        let e = self.0.entry((scope, session)).or_insert((at, Vec::new()));
        e.0 = e.0.min(at);
        e.1.extend_from_slice(reasons);
    }

    /// `(scope, session, first initiation, key)` of the sessions with a reason.
    fn keys(self) -> Vec<(&'a str, &'a str, DateTime<Utc>, String)> {
        self.0
            .into_iter()
            .filter(|(_, (_, reasons))| !reasons.is_empty())
            .map(|((scope, session), (first, reasons))| {
                (scope, session, first, combination_key(&reasons))
            })
            .collect()
    }
}

/// Recomputes the reason combinations of `sessions` (stored before this batch) from their stored
/// handoffs, stores those that changed, and moves their counts in `deltas`.
async fn recount_combinations(
    conn: &mut PgConnection,
    org: OrgId,
    sessions: &[&str],
    deltas: &mut Deltas<'_>,
) -> sqlx::Result<()> {
    // The sessions' handoffs under each scope (`old` false), and their stored combinations
    // (`old` true), in one statement.
    type Row = (
        bool,
        String,
        String,
        DateTime<Utc>,
        Option<Vec<String>>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        r#"with touched as materialized (
               select h.handoff_id, h.session_id, h.initiated_at, h.reasons
               from unnest($2::text[]) as q(session_id)
               cross join lateral (
                   select h.handoff_id, h.session_id, h.initiated_at, h.reasons
                   from handoffs h
                   where h.org_id = $1 and h.session_id = q.session_id
                   offset 0
               ) h
           )
           select false, ''::text, t.session_id, t.initiated_at, t.reasons, null::text
           from touched t
           union all
           select false, r.ref_id, t.session_id, t.initiated_at, t.reasons, null
           from touched t
           cross join lateral (
               select r.ref_id from handoff_references r
               where r.org_id = $1 and r.handoff_id = t.handoff_id
                 and r.ref_type = 'instruction'
               offset 0
           ) r
           union all
           select true, c.scope, c.session_id, c.first_initiated_at, null, c.reasons
           from unnest($2::text[]) as q(session_id)
           cross join lateral (
               select c.scope, c.session_id, c.first_initiated_at, c.reasons
               from handoff_session_reasons c
               where c.org_id = $1 and c.session_id = q.session_id
               offset 0
           ) c"#,
    )
    .bind(org.get())
    .bind(sessions)
    .fetch_all(&mut *conn)
    .await?;
    let mut handoffs: Vec<(&str, &str, DateTime<Utc>, Vec<Reason>)> = Vec::new();
    let mut stored: HashMap<(&str, &str), (DateTime<Utc>, &str)> = HashMap::new();
    for (old, scope, session, at, reasons, key) in &rows {
        if *old {
            stored.insert(
                (scope.as_str(), session.as_str()),
                (*at, key.as_deref().unwrap_or("")),
            );
        } else {
            let reasons = reasons
                .iter()
                .flatten()
                .map(|r| parse_stored(r, Reason::parse))
                .collect::<sqlx::Result<Vec<Reason>>>()?;
            handoffs.push((scope, session, *at, reasons));
        }
    }
    let mut acc = Combinations::default();
    for (scope, session, at, reasons) in &handoffs {
        acc.add(scope, session, *at, reasons);
    }
    let changed: Vec<(&str, &str, DateTime<Utc>, String)> = acc
        .keys()
        .into_iter()
        .filter(|(scope, session, first, key)| {
            stored.get(&(*scope, *session)) != Some(&(*first, key.as_str()))
        })
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    sqlx::query(
        r#"insert into handoff_session_reasons
               (org_id, scope, session_id, first_initiated_at, reasons)
           select $1, * from unnest($2::text[], $3::text[], $4::timestamptz[], $5::text[])
           on conflict (org_id, session_id, scope) do update
           set first_initiated_at = excluded.first_initiated_at, reasons = excluded.reasons"#,
    )
    .bind(org.get())
    .bind(changed.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(changed.iter().map(|c| c.1).collect::<Vec<_>>())
    .bind(changed.iter().map(|c| c.2).collect::<Vec<_>>())
    .bind(changed.iter().map(|c| c.3.as_str()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    for (scope, session, first, key) in &changed {
        let mut count = |at: DateTime<Utc>, key: &str, d: i64| {
            *deltas
                .combinations
                .entry((
                    (*scope).to_owned(),
                    Grain::QUARTER_HOUR.floor(at),
                    COMBINATION.to_owned(),
                    key.to_owned(),
                ))
                .or_default() += d;
        };
        if let Some((at, old)) = stored.get(&(*scope, *session)) {
            count(*at, old, -1);
        }
        count(*first, key, 1);
    }
    Ok(())
}

/// Adds the deltas to every grain.
async fn write(conn: &mut PgConnection, org: OrgId, d: &Deltas<'_>) -> sqlx::Result<()> {
    let mut totals: BTreeMap<(&str, i32, DateTime<Utc>), i64> = BTreeMap::new();
    for ((scope, at), n) in d.totals.iter().filter(|(_, n)| **n != 0) {
        for g in HANDOFF_GRAINS {
            *totals
                .entry((scope, g.seconds(), g.floor(*at)))
                .or_default() += n;
        }
    }
    let mut breakdown: BTreeMap<(&str, i32, DateTime<Utc>, &str, &str), i64> = BTreeMap::new();
    let combinations = d
        .combinations
        .iter()
        .map(|((scope, at, kind, key), n)| ((scope.as_str(), *at, kind.as_str(), key.as_str()), n));
    let counts = d.breakdown.iter().map(|(k, n)| (*k, n));
    for ((scope, at, kind, key), n) in counts.chain(combinations).filter(|(_, n)| **n != 0) {
        for g in HANDOFF_GRAINS {
            *breakdown
                .entry((scope, g.seconds(), g.floor(at), kind, key))
                .or_default() += n;
        }
    }
    let mut sessions: BTreeMap<(i32, DateTime<Utc>), i64> = BTreeMap::new();
    for (at, n) in d.sessions.iter().filter(|(_, n)| **n != 0) {
        for g in HANDOFF_GRAINS {
            *sessions.entry((g.seconds(), g.floor(*at))).or_default() += n;
        }
    }
    if !totals.is_empty() {
        sqlx::query(
            r#"insert into handoff_rollup_totals (org_id, scope, grain, bucket, handoffs)
               select $1, * from unnest($2::text[], $3::int4[], $4::timestamptz[], $5::int8[])
               on conflict (org_id, scope, grain, bucket) do update
               set handoffs = handoff_rollup_totals.handoffs + excluded.handoffs"#,
        )
        .bind(org.get())
        .bind(totals.keys().map(|k| k.0).collect::<Vec<_>>())
        .bind(totals.keys().map(|k| k.1).collect::<Vec<_>>())
        .bind(totals.keys().map(|k| k.2).collect::<Vec<_>>())
        .bind(totals.values().copied().collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !breakdown.is_empty() {
        sqlx::query(
            r#"insert into handoff_rollup_breakdown (org_id, scope, grain, bucket, kind, key, count)
               select $1, * from unnest($2::text[], $3::int4[], $4::timestamptz[], $5::text[],
                                        $6::text[], $7::int8[])
               on conflict (org_id, scope, grain, bucket, kind, key) do update
               set count = handoff_rollup_breakdown.count + excluded.count"#,
        )
        .bind(org.get())
        .bind(breakdown.keys().map(|k| k.0).collect::<Vec<_>>())
        .bind(breakdown.keys().map(|k| k.1).collect::<Vec<_>>())
        .bind(breakdown.keys().map(|k| k.2).collect::<Vec<_>>())
        .bind(breakdown.keys().map(|k| k.3).collect::<Vec<_>>())
        .bind(breakdown.keys().map(|k| k.4).collect::<Vec<_>>())
        .bind(breakdown.values().copied().collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !sessions.is_empty() {
        sqlx::query(
            r#"insert into session_rollups (org_id, grain, bucket, sessions)
               select $1, * from unnest($2::int4[], $3::timestamptz[], $4::int8[])
               on conflict (org_id, grain, bucket) do update
               set sessions = session_rollups.sessions + excluded.sessions"#,
        )
        .bind(org.get())
        .bind(sessions.keys().map(|k| k.0).collect::<Vec<_>>())
        .bind(sessions.keys().map(|k| k.1).collect::<Vec<_>>())
        .bind(sessions.values().copied().collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Reads the counts of a plan: all handoffs (`instruction` `None`) or those referencing an
/// instruction.
///
/// The whole blocks are summed from the rollups; the range's edges (under 15 minutes each) are
/// counted from the projections with plain index range scans (scalar bounds, so every plan,
/// generic or custom, uses the indexes), and their handoffs are given to local days in SQL.
pub async fn read(
    db: impl PgExecutor<'_>,
    org: OrgId,
    instruction: Option<&str>,
    tz: &str,
    plan: &Plan,
) -> sqlx::Result<Counts> {
    let mut range = Segments::default();
    range.push(&plan.range);
    let days = if plan.days_aligned {
        DayReads::new(plan)
    } else {
        DayReads::default()
    };
    // At most two edges; an absent one is the empty interval [start, start).
    let edge = |i: usize| plan.range.raw.get(i).copied();
    let empty = (plan.range.raw.first().map(|r| r.0)).unwrap_or_default();
    let (e1, e2) = (
        edge(0).unwrap_or((empty, empty)),
        edge(1).unwrap_or((empty, empty)),
    );
    let (whole_from, whole_to) = if plan.days_aligned {
        (empty, empty)
    } else {
        (plan.start, plan.end)
    };
    let rows: Vec<(String, String, i64)> = sqlx::query_as(READ)
        .bind(org.get())
        .bind(instruction.unwrap_or(""))
        .bind(&range.grain)
        .bind(&range.from)
        .bind(&range.to)
        .bind(e1.0)
        .bind(e1.1)
        .bind(e2.0)
        .bind(e2.1)
        .bind(&days.runs.grain)
        .bind(&days.runs.from)
        .bind(&days.runs.to)
        .bind(tz)
        .bind(whole_from)
        .bind(whole_to)
        .bind(&days.seg_from)
        .bind(&days.seg_to)
        .bind(&days.seg_grain)
        .bind(&days.seg_day)
        .fetch_all(db)
        .await?;
    let day_index: HashMap<String, usize> = plan
        .days
        .iter()
        .enumerate()
        .map(|(i, d)| (d.format("%Y-%m-%d").to_string(), i))
        .collect();

    let mut counts = Counts::default();
    for (kind, key, n) in rows {
        match kind.as_str() {
            // Handoffs by local day, from the rollups: the key is the day's index.
            "handoffs_day" => {
                if let Ok(day) = key.parse::<usize>() {
                    *counts.handoffs_by_day.entry(day).or_default() += n;
                }
            }
            // Handoffs by local date, from the projections.
            "handoffs_on" => {
                if let Some(day) = day_index.get(&key) {
                    *counts.handoffs_by_day.entry(*day).or_default() += n;
                }
            }
            "sessions" => counts.sessions += n,
            REASON => {
                let reason = parse_stored(&key, Reason::parse)?;
                *counts.reasons.entry(reason).or_default() += n;
            }
            SENTIMENT => *counts.sentiments.entry(Some(key)).or_default() += n,
            NO_SENTIMENT => *counts.sentiments.entry(None).or_default() += n,
            COMBINATION => {
                let reasons = parse_stored(&key, parse_combination)?;
                *counts.combinations.entry(reasons).or_default() += n;
            }
            other => {
                let kind = parse_stored(other, ReferenceType::parse)?;
                *counts.references.entry((kind, key)).or_default() += n;
            }
        }
    }
    Ok(counts)
}

fn parse_stored<T>(text: &str, parse: fn(&str) -> Option<T>) -> sqlx::Result<T> {
    parse(text)
        .ok_or_else(|| sqlx::Error::Decode(format!("unexpected stored value `{text}`").into()))
}

/// How the local days' totals are read from `handoff_rollup_totals`.
///
/// Every local day is covered by blocks inside it ([`Plan::days_cover`]), and all these
/// blocks, of all grains, are disjoint, so a block row belongs to the segment whose start is
/// the last one at or before its bucket (`width_bucket` over the sorted starts) if it has that
/// segment's grain and lies before its end. That lets a grain whose segments fill most of their
/// span be read with one index range scan over the span (the hours of a half-hour zone such as
/// Asia/Kolkata: 23 of every 24), and a sparse grain (its quarter hours at local midnight) with
/// one probe per run of adjacent segments; each row is given to its day by its segment, with
/// no per-row time zone conversion.
#[derive(Default)]
struct DayReads {
    /// The index range scans.
    runs: Segments,
    /// The segments, sorted by start, with their ends, grains and days (index into
    /// [`Plan::days`]).
    seg_from: Vec<DateTime<Utc>>,
    seg_to: Vec<DateTime<Utc>>,
    seg_grain: Vec<i32>,
    seg_day: Vec<i32>,
}

impl DayReads {
    fn new(plan: &Plan) -> DayReads {
        let mut segs: Vec<(Segment, usize)> = plan
            .days_cover
            .iter()
            .flat_map(|(day, c)| c.segments.iter().map(move |s| (*s, *day)))
            .collect();
        segs.sort_by_key(|(s, _)| s.from);
        let mut reads = DayReads::default();
        for (s, day) in &segs {
            reads.seg_from.push(s.from);
            reads.seg_to.push(s.to);
            reads.seg_grain.push(s.grain.seconds());
            reads.seg_day.push(*day as i32);
        }
        for grain in HANDOFF_GRAINS {
            let of_grain: Vec<Segment> = segs
                .iter()
                .filter(|(s, _)| s.grain == grain)
                .map(|(s, _)| *s)
                .collect();
            let (Some(first), Some(last)) = (of_grain.first(), of_grain.last()) else {
                continue;
            };
            let covered: i64 = of_grain.iter().map(|s| (s.to - s.from).num_seconds()).sum();
            let span = (last.to - first.from).num_seconds();
            if covered * 4 >= span * 3 {
                reads.runs.push_one(Segment {
                    grain,
                    from: first.from,
                    to: last.to,
                });
            } else {
                let mut run = of_grain[0];
                for s in &of_grain[1..] {
                    if s.from == run.to {
                        run.to = s.to;
                    } else {
                        reads.runs.push_one(run);
                        run = *s;
                    }
                }
                reads.runs.push_one(run);
            }
        }
        reads
    }
}

/// Segment arrays of covers.
#[derive(Default)]
struct Segments {
    grain: Vec<i32>,
    from: Vec<DateTime<Utc>>,
    to: Vec<DateTime<Utc>>,
}

impl Segments {
    fn push(&mut self, c: &Cover) {
        for s in &c.segments {
            self.push_one(*s);
        }
    }

    fn push_one(&mut self, s: Segment) {
        self.grain.push(s.grain.seconds());
        self.from.push(s.from);
        self.to.push(s.to);
    }
}

/// The read: `$1` org, `$2` scope, `$3..$5` the range's blocks, `$6..$9` its two edges,
/// `$10..$12` the runs of local days' blocks to scan, `$13` the zone, `$14..$15` the whole range
/// when local days are not unions of blocks (else empty), `$16..$19` the local days' segments
/// (sorted starts, ends, grains, day indexes; see [`DayReads`]). Each block run is read by its own index range scan
/// (`offset 0` keeps the lateral subqueries from being flattened into a hash join over all of
/// the organization's rollup rows).
const READ: &str = r#"
with edge_all as materialized (
    select h.handoff_id, h.initiated_at, h.reasons, h.sentiment
    from handoffs h
    where h.org_id = $1 and h.initiated_at >= $6 and h.initiated_at < $7
    union all
    select h.handoff_id, h.initiated_at, h.reasons, h.sentiment
    from handoffs h
    where h.org_id = $1 and h.initiated_at >= $8 and h.initiated_at < $9
),
edge as materialized (
    select e.* from edge_all e
    cross join lateral (
        select count(*) as n from handoff_references r
        where r.org_id = $1 and r.handoff_id = e.handoff_id
          and r.ref_type = 'instruction' and r.ref_id = $2
    ) m
    where $2::text = '' or m.n > 0
),
rseg as (
    select * from unnest($3::int4[], $4::timestamptz[], $5::timestamptz[]) as s(grain, f, t)
),
dseg as (
    select * from unnest($10::int4[], $11::timestamptz[], $12::timestamptz[]) as s(grain, f, t)
)
select b.kind, b.key, sum(b.count)::int8 as n
from rseg s
cross join lateral (
    select b.kind, b.key, b.count from handoff_rollup_breakdown b
    where b.org_id = $1 and b.scope = $2 and b.grain = s.grain
      and b.bucket >= s.f and b.bucket < s.t
    offset 0
) b
group by b.kind, b.key
union all
select 'handoffs_day', (($19::int4[])[w.k])::text, sum(t.handoffs)::int8
from dseg s
cross join lateral (
    select t.bucket, t.handoffs from handoff_rollup_totals t
    where t.org_id = $1 and t.scope = $2 and t.grain = s.grain
      and t.bucket >= s.f and t.bucket < s.t
    offset 0
) t
cross join lateral (select width_bucket(t.bucket, $16::timestamptz[]) as k) w
where ($18::int4[])[w.k] = s.grain and t.bucket < ($17::timestamptz[])[w.k]
group by 2
union all
select 'handoffs_on', to_char(e.initiated_at at time zone $13, 'YYYY-MM-DD'), count(*)
from edge e
where $14::timestamptz = $15::timestamptz
group by 2
union all
select 'handoffs_on', to_char(h.initiated_at at time zone $13, 'YYYY-MM-DD'), count(*)
from handoffs h
where h.org_id = $1 and h.initiated_at >= $14 and h.initiated_at < $15
  and ($2::text = '' or exists (
      select 1 from handoff_references r
      where r.org_id = $1 and r.handoff_id = h.handoff_id
        and r.ref_type = 'instruction' and r.ref_id = $2))
group by 2
union all
select 'sessions', '', sum(r.sessions)::int8
from rseg s
cross join lateral (
    select r.sessions from session_rollups r
    where r.org_id = $1 and r.grain = s.grain and r.bucket >= s.f and r.bucket < s.t
    offset 0
) r
having count(*) > 0
union all
select 'sessions', '', count(*)
from sessions s
where s.org_id = $1
  and ((s.started_at >= $6 and s.started_at < $7) or (s.started_at >= $8 and s.started_at < $9))
union all
select 'reason', x.reason, count(*)
from edge e cross join unnest(e.reasons) as x(reason)
group by x.reason
union all
select case when e.sentiment is null then 'no_sentiment' else 'sentiment' end,
       coalesce(e.sentiment, ''), count(*)
from edge e
group by 1, 2
union all
select r.ref_type, r.ref_id, count(*)
from edge e
cross join lateral (
    select r.ref_type, r.ref_id from handoff_references r
    where r.org_id = $1 and r.handoff_id = e.handoff_id
) r
group by r.ref_type, r.ref_id
union all
select 'combination', c.reasons, count(*)
from handoff_session_reasons c
where c.org_id = $1 and c.scope = $2
  and ((c.first_initiated_at >= $6 and c.first_initiated_at < $7)
       or (c.first_initiated_at >= $8 and c.first_initiated_at < $9))
group by c.reasons
"#;
