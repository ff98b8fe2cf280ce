//! Deferred lifecycle rollup deltas (`handoff_lifecycle_pending`, migration
//! `20261129190001_lifecycle_pending.sql`).
//!
//! Policy: a batch whose deltas would move more than [`defer_rows`] rollup rows (completions of
//! handoffs initiated over weeks, all in one batch: each moves its handoff in its own blocks) does
//! not update them: `defer` stores the deltas, already computed, as one compact row in the
//! batch's own transaction (acknowledged ⇔ stored). [`fold`] later applies pending rows through
//! the ordinary rollup write (`lifecycle::write`) and deletes them in the same transaction, under
//! the organization's ingest lock, the lock that write's safety rests on (no other writer of the
//! organization's rollup rows meanwhile): each pending row is applied exactly once, and a fold
//! that fails or dies leaves its rows pending. The background task that calls it is
//! `db::lifecycle_fold`; `baton rebuild` folds in its own transaction.
//!
//! Deltas are additive, so the order of application does not matter: counts, sums and
//! histogram bins add; the maximum wait takes the greater (`greatest`, null skipped), and a
//! delta that subtracts a handoff carries no maximum (a maximum cannot be subtracted: the stored
//! one stays, directly or deferred alike). Several pending rows are merged into one write
//! ([`Tally::merge`]), keeping every row key any of them had (even where they cancel out), so
//! that the rows folded are byte for byte those the direct writes would have left (a row a first
//! batch inserts and a second brings back to zero stays, as a zero row).
//!
//! Reads (`super::read`) see pending deltas without waiting: each rollup statement also tells
//! whether the organization has pending rows; if one does, the read is made again in one
//! `REPEATABLE READ` snapshot with the pending deltas ([`load`]) merged into the answer, so a
//! fold committing meanwhile can neither hide a delta nor count it twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::{RowKey, write};
use crate::auth::OrgId;
use crate::domain::lifecycle::{Dim, Tally, WaitHistogram};

/// Rollup rows a batch may move directly; beyond, its deltas are deferred. The live pattern
/// moves tens of rows a batch, a bulk load of history ~1,000 (`cargo bench --bench ingest`,
/// `live` and `backfill`); completing 1,000 handoffs initiated over 90 days ~10,400 (`cargo bench
/// --bench faults`). See BENCHMARKS.md.
pub const DEFER_ROWS: usize = 4_000;

static THRESHOLD: AtomicUsize = AtomicUsize::new(DEFER_ROWS);

/// The threshold in force ([`DEFER_ROWS`] unless [`set_defer_rows`] changed it).
pub fn defer_rows() -> usize {
    THRESHOLD.load(Ordering::Relaxed)
}

/// Changes the threshold for this process (tests and benchmarks: 0 defers every batch that moves
/// a row, `usize::MAX` none).
pub fn set_defer_rows(rows: usize) {
    THRESHOLD.store(rows, Ordering::Relaxed);
}

/// Deltas by rollup row.
pub type Deltas = BTreeMap<RowKey, Tally>;

/// Stores a batch's deltas as one pending row (in the batch's transaction).
pub(super) async fn defer(
    conn: &mut PgConnection,
    org: OrgId,
    deltas: &Deltas,
) -> sqlx::Result<()> {
    // Stamped when written (late in the batch), not when the batch began: the folder waits for
    // an organization's newest row to be `quiet` old, and a slow batch must not look quiet.
    sqlx::query(
        "insert into handoff_lifecycle_pending (org_id, deltas, created_at) values ($1, $2, clock_timestamp())",
    )
        .bind(org.get())
        .bind(encode(deltas))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Every pending delta of `org`, merged (for a read; in the caller's snapshot).
pub async fn load(conn: &mut PgConnection, org: OrgId) -> sqlx::Result<Deltas> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "select deltas from handoff_lifecycle_pending where org_id = $1 order by id",
    )
    .bind(org.get())
    .fetch_all(&mut *conn)
    .await?;
    let mut all = Deltas::new();
    for bytes in &rows {
        merge_into(&mut all, decode(bytes)?);
    }
    Ok(all)
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
        "select id, deltas from handoff_lifecycle_pending where org_id = $1 order by id limit $2",
    )
    .bind(org.get())
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut all = Deltas::new();
    let mut ids = Vec::with_capacity(rows.len());
    for (id, bytes) in &rows {
        merge_into(&mut all, decode(bytes)?);
        ids.push(*id);
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

// The stored form, version 1: the byte 1; the keys (varint count, then each a varint length and
// its UTF-8 bytes), in order of first use; the deltas (varint count, then each): the dimension's
// index in `Dim::ALL` (one byte), the grain in seconds (varint), the bucket's Unix seconds minus
// the previous delta's (zigzag varint; deltas come in key order, so mostly small), the key's
// index (varint), the nine counts `initiated … wait_sum_ms` (zigzag varints), the maximum wait
// (varint 0 for none, else zigzag + 1), and the histogram (varint length, then
// `WaitHistogram::encode`).

const VERSION: u8 = 1;

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

/// The deltas in their stored form.
pub fn encode(deltas: &Deltas) -> Vec<u8> {
    let mut keys: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for k in deltas.keys() {
        keys.entry(k.3.as_str()).or_insert_with(|| {
            order.push(k.3.as_str());
            order.len() - 1
        });
    }
    let mut out = Vec::with_capacity(16 + deltas.len() * 20);
    out.push(VERSION);
    put_varint(&mut out, order.len() as u64);
    for k in &order {
        put_varint(&mut out, k.len() as u64);
        out.extend_from_slice(k.as_bytes());
    }
    put_varint(&mut out, deltas.len() as u64);
    let mut prev = 0_i64;
    for ((dim, grain, bucket, key), t) in deltas {
        let d = Dim::ALL
            .iter()
            .position(|x| x.as_str() == *dim)
            .unwrap_or_else(|| unreachable!("a rollup dimension is one of Dim::ALL: {dim}"));
        out.push(d as u8);
        put_varint(&mut out, u64::from(grain.unsigned_abs()));
        let at = bucket.timestamp();
        put_varint(&mut out, zigzag(at - prev));
        prev = at;
        put_varint(&mut out, keys[key.as_str()] as u64);
        for v in [
            t.initiated,
            t.completed,
            t.failed,
            t.abandoned,
            t.open,
            t.retried,
            t.outside_working_hours,
            t.wait_count,
            t.wait_sum_ms,
        ] {
            put_varint(&mut out, zigzag(v));
        }
        put_varint(&mut out, t.wait_max_ms.map_or(0, |m| zigzag(m) + 1));
        let hist = t.waits.encode();
        put_varint(&mut out, hist.len() as u64);
        out.extend_from_slice(&hist);
    }
    out
}

/// Bytes that are not a stored form of deltas.
#[derive(Debug)]
pub struct BadDeltas(&'static str);

impl std::fmt::Display for BadDeltas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not stored lifecycle deltas: {}", self.0)
    }
}

impl std::error::Error for BadDeltas {}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, BadDeltas> {
        let (&b, rest) = self.0.split_first().ok_or(BadDeltas("truncated"))?;
        self.0 = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, BadDeltas> {
        let mut v = 0_u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(BadDeltas("varint too long"))
    }

    fn len(&mut self) -> Result<usize, BadDeltas> {
        usize::try_from(self.varint()?)
            .ok()
            .filter(|n| *n <= self.0.len())
            .ok_or(BadDeltas("length beyond the bytes"))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], BadDeltas> {
        if n > self.0.len() {
            return Err(BadDeltas("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
}

/// Deltas from their stored form ([`encode`]).
pub fn decode(bytes: &[u8]) -> sqlx::Result<Deltas> {
    decode_deltas(bytes).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn decode_deltas(bytes: &[u8]) -> Result<Deltas, BadDeltas> {
    let mut r = Reader(bytes);
    if r.byte()? != VERSION {
        return Err(BadDeltas("unknown version"));
    }
    let n_keys = r.len()?;
    let mut keys = Vec::with_capacity(n_keys);
    for _ in 0..n_keys {
        let n = r.len()?;
        let k = std::str::from_utf8(r.bytes(n)?).map_err(|_| BadDeltas("key not UTF-8"))?;
        keys.push(k.to_owned());
    }
    let n = r.len()?;
    // Written in key order: collected into the map at the end, in one pass.
    let mut out: Vec<(RowKey, Tally)> = Vec::with_capacity(n);
    let mut prev = 0_i64;
    for _ in 0..n {
        let dim = Dim::ALL
            .get(usize::from(r.byte()?))
            .ok_or(BadDeltas("dimension"))?
            .as_str();
        let grain = i32::try_from(r.varint()?).map_err(|_| BadDeltas("grain"))?;
        prev += unzigzag(r.varint()?);
        let bucket: DateTime<Utc> = DateTime::from_timestamp(prev, 0).ok_or(BadDeltas("bucket"))?;
        let key = keys
            .get(usize::try_from(r.varint()?).map_err(|_| BadDeltas("key"))?)
            .ok_or(BadDeltas("key"))?
            .clone();
        let mut v = [0_i64; 9];
        for x in &mut v {
            *x = unzigzag(r.varint()?);
        }
        let max = match r.varint()? {
            0 => None,
            m => Some(unzigzag(m - 1)),
        };
        let hist_len = r.len()?;
        let waits =
            WaitHistogram::decode(r.bytes(hist_len)?).map_err(|_| BadDeltas("histogram"))?;
        let [
            initiated,
            completed,
            failed,
            abandoned,
            open,
            retried,
            outside,
            count,
            sum,
        ] = v;
        out.push((
            (dim, grain, bucket, key),
            Tally {
                initiated,
                completed,
                failed,
                abandoned,
                open,
                retried,
                outside_working_hours: outside,
                wait_count: count,
                wait_sum_ms: sum,
                wait_max_ms: max,
                waits,
            },
        ));
    }
    if !r.0.is_empty() {
        return Err(BadDeltas("trailing bytes"));
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_round_trip() {
        let mut d = Deltas::new();
        let t0: DateTime<Utc> = "2026-08-03T10:15:00Z".parse().unwrap();
        for (i, dim) in Dim::ALL.iter().enumerate() {
            for g in [900, 3600, 86400, 604800] {
                let mut t = Tally {
                    initiated: i as i64 - 2,
                    completed: -1,
                    wait_count: 3,
                    wait_sum_ms: 1 << 40,
                    wait_max_ms: (i % 2 == 0).then_some(123_456_789),
                    ..Tally::default()
                };
                t.waits.add(1_500, 300);
                t.waits.add(1_700, -2);
                d.insert(
                    (
                        dim.as_str(),
                        g,
                        t0 - chrono::Duration::seconds(g.into()),
                        format!("k{i}"),
                    ),
                    t.clone(),
                );
                d.insert((dim.as_str(), g, t0, String::new()), Tally::default());
            }
        }
        let bytes = encode(&d);
        assert_eq!(decode(&bytes).unwrap(), d);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[2]).is_err());
    }
}
