//! Deferred lifecycle rollups (`handoff_lifecycle_pending`, migration
//! `20261129190003_lifecycle_pending.sql`).
//!
//! Policy: a batch whose handoffs lie in more than [`defer_blocks`] blocks (completions of
//! handoffs initiated over weeks, all in one batch: each moves its handoff in its own blocks, so
//! ~10,000 rollup rows a batch) neither computes nor writes its deltas: `defer` stores what the
//! batch changed, each handoff's counted fields as they were and as the batch left them, as one
//! compact row in the batch's own transaction (acknowledged ⇔ stored). [`fold`] later computes
//! the deltas of pending rows with the direct path's own function (`lifecycle::deltas_of`), the
//! handoffs' fixed attributes looked up then (they never change), applies them through the
//! ordinary rollup write (`lifecycle::write`) and deletes the rows in the same transaction, under
//! the organization's ingest lock, the lock that write's safety rests on (no other writer of the
//! organization's rollup rows meanwhile): each pending row is applied exactly once, and a fold
//! that fails or dies leaves its rows pending. The background task that calls it is
//! `db::lifecycle_fold`; `baton rebuild` folds in its own transaction.
//!
//! Deltas are additive, so the order of application does not matter: counts, sums and
//! histogram bins add; the maximum wait takes the greater (`greatest`, null skipped), and a
//! delta that subtracts a handoff carries no maximum (a maximum cannot be subtracted: the stored
//! one stays, directly or deferred alike). Each pending row's deltas are computed on their own,
//! as its batch would have written them, then several rows are merged into one write
//! ([`Tally::merge`]), keeping every row key any of them had (even where they cancel out), so
//! that the rows folded are byte for byte those the direct writes would have left (a row a first
//! batch inserts and a second brings back to zero stays, as a zero row).
//!
//! Reads (`super::read`) see pending changes without waiting: each rollup statement also tells
//! whether the organization has pending rows; if one does, the read is made again in one
//! `REPEATABLE READ` snapshot with the deltas of the pending rows ([`load_quarters`]) merged into the
//! answer, so a fold committing meanwhile can neither hide a delta nor count it twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::blocks::QUARTER;
use super::{Fields, Fixed, Moved, RowKey, deltas_of, fixed_of, quarter_deltas, write};
use crate::auth::OrgId;
use crate::domain::events::Reason;
use crate::domain::lifecycle::{Facts, Tally};
use crate::domain::projection::HandoffRow;

/// Blocks (of all grains) a batch's handoffs may lie in for its deltas to be written directly;
/// beyond, its changes are deferred. A handoff counts under about five keys, so this is about
/// 4,000 rollup rows. The live pattern of `cargo bench --bench ingest` lies in a few blocks a
/// batch and its backfill of history in ~90 (68 quarter-hours, their hours, a day or two, a
/// week); completing 1,000 handoffs initiated over 90 days lies in ~2,080 (`cargo bench --bench
/// faults`). See BENCHMARKS.md.
pub const DEFER_BLOCKS: usize = 800;

/// Thresholds changed for single organizations ([`set_defer_blocks`]).
static OVERRIDES: Mutex<Option<HashMap<Uuid, usize>>> = Mutex::new(None);

/// The threshold in force for `org`: [`DEFER_BLOCKS`] unless [`set_defer_blocks`] changed it for
/// that organization.
pub fn defer_blocks(org: OrgId) -> usize {
    let overrides = OVERRIDES.lock().unwrap_or_else(|e| e.into_inner());
    overrides
        .as_ref()
        .and_then(|m| m.get(&org.get()).copied())
        .unwrap_or(DEFER_BLOCKS)
}

/// Changes the threshold of one organization for this process (tests and benchmarks: `Some(0)`
/// defers every batch that changes what a handoff counts, `Some(usize::MAX)` none, `None`
/// restores [`DEFER_BLOCKS`]). Per organization, so that tests running side by side in one
/// process never change each other's batches.
pub fn set_defer_blocks(org: Uuid, blocks: Option<usize>) {
    let mut overrides = OVERRIDES.lock().unwrap_or_else(|e| e.into_inner());
    let map = overrides.get_or_insert_with(HashMap::new);
    match blocks {
        Some(n) => map.insert(org, n),
        None => map.remove(&org),
    };
}

/// Deltas by rollup row.
pub type Deltas = BTreeMap<RowKey, Tally>;

/// Stores a batch's handoff changes as one pending row (in the batch's transaction).
pub(super) async fn defer(
    conn: &mut PgConnection,
    org: OrgId,
    moved: &[Moved<'_>],
) -> sqlx::Result<()> {
    // Stamped when written (late in the batch), not when the batch began: the folder waits for
    // an organization's newest row to be `quiet` old, and a slow batch must not look quiet.
    sqlx::query(
        "insert into handoff_lifecycle_pending (org_id, changes, created_at) values ($1, $2, clock_timestamp())",
    )
    .bind(org.get())
    .bind(encode(moved))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The deltas of every pending row of `org` at the quarter-hour grain only, merged, zeros left
/// out (for a read; in the caller's snapshot). A coarser block's delta is the sum of its
/// quarter-hours' (blocks nest), so a read sums the quarter-hours of the blocks it reads instead
/// of every row being expanded into every grain and merged row by row (the fold's way, which
/// keeps zero rows; a read has no use for them).
pub async fn load_quarters(conn: &mut PgConnection, org: OrgId) -> sqlx::Result<Deltas> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "select changes from handoff_lifecycle_pending where org_id = $1 order by id",
    )
    .bind(org.get())
    .fetch_all(&mut *conn)
    .await?;
    let (decoded, fixed) = decode_rows(conn, org, &rows).await?;
    let quarters = quarter_deltas(
        decoded
            .into_iter()
            .flatten()
            .filter_map(|c| c.facts(&fixed)),
    );
    Ok(quarters
        .into_iter()
        .filter(|(_, t)| !t.is_zero())
        .map(|((dim, quarter, key), t)| ((dim, QUARTER, quarter, key), t))
        .collect())
}

/// One handoff's change in a pending row.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    handoff_id: String,
    before: Option<Fields>,
    after: Fields,
}

impl Change {
    /// The change as `(before, after)` facts, given the fixed attributes of the handoffs (`None`:
    /// the handoff has none, it counts nowhere).
    fn facts(self, fixed: &HashMap<String, Fixed>) -> Option<(Option<Facts>, Facts)> {
        let fx = fixed.get(&self.handoff_id)?;
        Some((self.before.map(|b| b.facts(fx)), self.after.facts(fx)))
    }
}

/// Pending rows decoded, with the fixed attributes of their handoffs (looked up once for all).
async fn decode_rows(
    conn: &mut PgConnection,
    org: OrgId,
    rows: &[Vec<u8>],
) -> sqlx::Result<(Vec<Vec<Change>>, HashMap<String, Fixed>)> {
    let decoded = rows
        .iter()
        .map(|bytes| decode(bytes))
        .collect::<sqlx::Result<Vec<_>>>()?;
    let ids: Vec<&str> = decoded
        .iter()
        .flatten()
        .map(|c| c.handoff_id.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let fixed = fixed_of(&mut *conn, org, &ids).await?;
    Ok((decoded, fixed))
}

/// Adds `deltas` to `all`, keeping every key of either. Both are in key order, so they are
/// merged as two sorted runs and the map is built from the merged run in one pass (looking each
/// key up would compare its strings dozens of times).
fn merge_into(all: &mut Deltas, deltas: Deltas) {
    if all.is_empty() {
        *all = deltas;
        return;
    }
    let mut merged: Vec<(RowKey, Tally)> = Vec::with_capacity(all.len() + deltas.len());
    let mut a = std::mem::take(all).into_iter().peekable();
    let mut b = deltas.into_iter().peekable();
    loop {
        let next = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (Some((ka, _)), Some((kb, _))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => a.next(),
                std::cmp::Ordering::Greater => b.next(),
                std::cmp::Ordering::Equal => {
                    let (k, mut t) = a.next().unwrap_or_else(|| unreachable!("peeked"));
                    let (_, u) = b.next().unwrap_or_else(|| unreachable!("peeked"));
                    t.merge(&u);
                    Some((k, t))
                }
            },
        };
        merged.extend(next);
    }
    // Sorted and distinct: `collect` builds the map without searching it.
    *all = merged.into_iter().collect();
}

/// Folds at most `limit` of `org`'s pending rows (oldest first) into the rollups, in the
/// caller's transaction, which must hold the organization's ingest lock. Returns how many.
pub async fn fold_locked(conn: &mut PgConnection, org: OrgId, limit: i64) -> sqlx::Result<u64> {
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "select id, changes from handoff_lifecycle_pending where org_id = $1 order by id limit $2",
    )
    .bind(org.get())
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let (ids, bytes): (Vec<i64>, Vec<Vec<u8>>) = rows.into_iter().unzip();
    // Each row's deltas computed on their own, as its batch would have written them (see the
    // module docs), then merged into one write.
    let (decoded, fixed) = decode_rows(&mut *conn, org, &bytes).await?;
    let mut all = Deltas::new();
    for changes in decoded {
        merge_into(
            &mut all,
            deltas_of(changes.into_iter().filter_map(|c| c.facts(&fixed))),
        );
    }
    write(&mut *conn, org, all).await?;
    let deleted =
        sqlx::query("delete from handoff_lifecycle_pending where org_id = $1 and id = any($2)")
            .bind(org.get())
            .bind(&ids)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    // Under the ingest lock nothing else folds; were a row gone, the fold fails rather than
    // apply it twice.
    if deleted != ids.len() as u64 {
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(deleted)
}

/// One fold transaction: takes `org`'s ingest lock, folds at most `limit` pending rows, commits.
/// Returns how many were folded.
pub async fn fold(pool: &PgPool, org: OrgId, limit: i64) -> sqlx::Result<u64> {
    let mut tx = crate::store::events::begin_locked(pool, org).await?;
    let n = fold_locked(&mut tx, org, limit).await?;
    tx.commit().await?;
    Ok(n)
}

/// The organizations with pending rows due for a fold: the newest is at least `quiet` old (the
/// organization stopped deferring), or the oldest at least `overdue` old.
pub async fn due(
    pool: &PgPool,
    quiet: std::time::Duration,
    overdue: std::time::Duration,
) -> sqlx::Result<Vec<OrgId>> {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        r#"select org_id from handoff_lifecycle_pending
           group by org_id
           having max(created_at) <= now() - $1 or min(created_at) <= now() - $2
           order by min(id)"#,
    )
    .bind(quiet)
    .bind(overdue)
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().map(OrgId::for_admin).collect())
}

// The stored form, version 2: the byte 2, a varint count of changes, then each change: the
// handoff id (varint length, UTF-8 bytes), a byte 1 if the handoff was stored before the batch
// (then its fields as they were) or 0, and its fields as the batch left them. Fields: the first
// initiation (zigzag varint Unix seconds, varint nanoseconds), the state (varint length, bytes),
// the attempts (zigzag varint), the reasons (varint count, each its index in `Reason::ALL`, one
// byte), the destination (varint 0 for none, else its length + 1, then its bytes) and the
// completion (varint 0 for none, else 1, then as the first initiation).

const VERSION: u8 = 2;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_time(out: &mut Vec<u8>, t: DateTime<Utc>) {
    put_varint(out, zigzag(t.timestamp()));
    put_varint(out, u64::from(t.timestamp_subsec_nanos()));
}

fn put_fields(out: &mut Vec<u8>, h: &HandoffRow) {
    put_time(out, h.initiated_at);
    put_str(out, &h.state);
    put_varint(out, zigzag(i64::from(h.attempts)));
    put_varint(out, h.reasons.len() as u64);
    for r in &h.reasons {
        let i = Reason::ALL
            .iter()
            .position(|x| x == r)
            .unwrap_or_else(|| unreachable!("a reason is one of Reason::ALL: {r:?}"));
        out.push(i as u8);
    }
    match &h.destination {
        None => put_varint(out, 0),
        Some(d) => {
            put_varint(out, d.len() as u64 + 1);
            out.extend_from_slice(d.as_bytes());
        }
    }
    match h.completed_at {
        None => put_varint(out, 0),
        Some(t) => {
            put_varint(out, 1);
            put_time(out, t);
        }
    }
}

/// A batch's handoff changes in their stored form.
pub fn encode(moved: &[Moved<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + moved.len() * 96);
    out.push(VERSION);
    put_varint(&mut out, moved.len() as u64);
    for (before, after) in moved {
        put_str(&mut out, &after.handoff_id);
        match before {
            None => out.push(0),
            Some(b) => {
                out.push(1);
                put_fields(&mut out, b);
            }
        }
        put_fields(&mut out, after);
    }
    out
}

/// Bytes that are not a stored form of changes.
#[derive(Debug)]
pub struct BadChanges(&'static str);

impl std::fmt::Display for BadChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not stored lifecycle changes: {}", self.0)
    }
}

impl std::error::Error for BadChanges {}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, BadChanges> {
        let (&b, rest) = self.0.split_first().ok_or(BadChanges("truncated"))?;
        self.0 = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, BadChanges> {
        let mut v = 0_u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(BadChanges("varint too long"))
    }

    fn len(&mut self) -> Result<usize, BadChanges> {
        usize::try_from(self.varint()?)
            .ok()
            .filter(|n| *n <= self.0.len())
            .ok_or(BadChanges("length beyond the bytes"))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], BadChanges> {
        if n > self.0.len() {
            return Err(BadChanges("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn string(&mut self, n: usize) -> Result<String, BadChanges> {
        let b = self.bytes(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| BadChanges("not UTF-8"))
    }

    fn time(&mut self) -> Result<DateTime<Utc>, BadChanges> {
        let secs = unzigzag(self.varint()?);
        let nanos = u32::try_from(self.varint()?).map_err(|_| BadChanges("time"))?;
        DateTime::from_timestamp(secs, nanos).ok_or(BadChanges("time"))
    }

    fn fields(&mut self) -> Result<Fields, BadChanges> {
        let initiated_at = self.time()?;
        let n = self.len()?;
        let state = self.string(n)?;
        let attempts =
            i32::try_from(unzigzag(self.varint()?)).map_err(|_| BadChanges("attempts"))?;
        let n = self.len()?;
        let mut reasons = Vec::with_capacity(n);
        for _ in 0..n {
            let r = *Reason::ALL
                .get(usize::from(self.byte()?))
                .ok_or(BadChanges("reason"))?;
            reasons.push(r);
        }
        let destination = match self.varint()? {
            0 => None,
            n => {
                let n = usize::try_from(n - 1).map_err(|_| BadChanges("destination"))?;
                Some(self.string(n)?)
            }
        };
        let completed_at = match self.varint()? {
            0 => None,
            1 => Some(self.time()?),
            _ => return Err(BadChanges("completion")),
        };
        Ok(Fields {
            initiated_at,
            state,
            attempts,
            reasons,
            destination,
            completed_at,
        })
    }
}

/// Changes from their stored form ([`encode`]).
pub fn decode(bytes: &[u8]) -> sqlx::Result<Vec<Change>> {
    decode_changes(bytes).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn decode_changes(bytes: &[u8]) -> Result<Vec<Change>, BadChanges> {
    let mut r = Reader(bytes);
    if r.byte()? != VERSION {
        return Err(BadChanges("unknown version"));
    }
    let n = r.len()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.len()?;
        let handoff_id = r.string(len)?;
        let before = match r.byte()? {
            0 => None,
            1 => Some(r.fields()?),
            _ => return Err(BadChanges("before")),
        };
        let after = r.fields()?;
        out.push(Change {
            handoff_id,
            before,
            after,
        });
    }
    if !r.0.is_empty() {
        return Err(BadChanges("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn row(id: &str, state: &str, reasons: Vec<Reason>, destination: Option<&str>) -> HandoffRow {
        let t0: DateTime<Utc> = "1969-12-31T23:59:59.123456789Z".parse().unwrap();
        HandoffRow {
            handoff_id: id.to_owned(),
            session_id: "s".to_owned(),
            shared_id: None,
            state: state.to_owned(),
            attempts: 2,
            transitions: 5,
            reasons,
            sentiment: None,
            destination: destination.map(str::to_owned),
            summary: None,
            explanation: None,
            data: Map::new(),
            operator_id: None,
            error: None,
            initiated_at: t0,
            last_initiated_at: t0,
            completed_at: None,
            failed_at: None,
            updated_at: t0,
        }
    }

    #[test]
    fn changes_round_trip() {
        let before = row("h-é", "handoff_initiated", vec![Reason::ALL[0]], None);
        let mut after = row(
            "h-é",
            "handoff_completed",
            Reason::ALL.to_vec(),
            Some("desk ✓"),
        );
        after.completed_at = Some("9999-12-31T23:59:59.999999Z".parse().unwrap());
        let fresh = row("", "custom", Vec::new(), Some(""));
        let moved: Vec<Moved<'_>> = vec![(Some(&before), &after), (None, &fresh)];
        let bytes = encode(&moved);
        assert_eq!(
            decode(&bytes).unwrap(),
            vec![
                Change {
                    handoff_id: "h-é".to_owned(),
                    before: Some(Fields::of(&before)),
                    after: Fields::of(&after),
                },
                Change {
                    handoff_id: String::new(),
                    before: None,
                    after: Fields::of(&fresh),
                },
            ]
        );
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[1]).is_err());
        assert!(decode(&[VERSION, 1, 0xff]).is_err());
    }
}
