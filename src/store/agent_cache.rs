//! The agent rows of reseller rollup buckets, remembered between `/v1/metrics` requests.
//!
//! Policy: a reseller's 90-day request needs the agent rows of ~15 buckets, hundreds of agents
//! each, and nearly all of those buckets are closed (a range ending now is covered by buckets
//! that end at or before it). Every write of a bucket's agent rows also writes the bucket's
//! totals row in the same transaction, and every such write takes a new `version` from a
//! sequence (migration `20261121000008`). So the request reads the totals rows with their
//! versions, names the buckets it holds with the version it holds them at, and PostgreSQL
//! returns agent rows only for the buckets whose version moved: the answer is the same as
//! reading every row, in the same snapshot. Several servers on one database each keep their own
//! cache; nothing needs to be told about writes.
//!
//! The cache is bounded by a number of agent rows (`--metrics-cache-rows`, ~100 bytes each); past
//! it, the least recently used buckets are dropped. 0 turns it off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::buckets::Grain;
pub use crate::domain::metrics::AgentRow;

/// A bucket: reseller, grain, start.
pub type BucketKey = (Uuid, Grain, DateTime<Utc>);

/// The agent rows of a bucket at a version.
pub type Bucket = (i64, Arc<[AgentRow]>);

/// Agent rows of buckets at the version they were read at (see the module docs).
#[derive(Debug)]
pub struct AgentCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    buckets: HashMap<BucketKey, Entry>,
    rows: usize,
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    version: i64,
    rows: Arc<[AgentRow]>,
    used: u64,
}

/// Default bound: about 100 MB.
pub const DEFAULT_CACHE_ROWS: usize = 1_000_000;

impl AgentCache {
    /// A cache of at most `budget` agent rows (0: remembers nothing).
    pub fn new(budget: usize) -> AgentCache {
        AgentCache {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map is consistent after every statement; a panic elsewhere cannot leave it half
        // updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rows held for `key`, with their version.
    pub fn get(&self, key: &BucketKey) -> Option<Bucket> {
        if self.budget == 0 {
            return None;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.buckets.get_mut(key)?;
        entry.used = now;
        Some((entry.version, entry.rows.clone()))
    }

    /// Holds `rows` for `key` at `version` (replacing what was held), then drops the least
    /// recently used buckets down to three quarters of the budget if it is exceeded.
    pub fn put(&self, key: BucketKey, version: i64, rows: Arc<[AgentRow]>) {
        let added = weight(&rows);
        if self.budget == 0 || added > self.budget {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        if let Some(old) = inner.buckets.insert(
            key,
            Entry {
                version,
                rows,
                used,
            },
        ) {
            inner.rows -= weight(&old.rows);
        }
        inner.rows += added;
        if inner.rows > self.budget {
            let mut by_use: Vec<(u64, BucketKey)> =
                inner.buckets.iter().map(|(k, e)| (e.used, *k)).collect();
            by_use.sort_unstable_by_key(|(used, _)| *used);
            let target = self.budget - self.budget / 4;
            for (_, k) in by_use {
                if inner.rows <= target {
                    break;
                }
                if let Some(e) = inner.buckets.remove(&k) {
                    inner.rows -= weight(&e.rows);
                }
            }
        }
    }

    /// Agent rows held now.
    pub fn rows(&self) -> usize {
        self.lock().rows
    }
}

/// What a bucket counts against the budget: its rows, at least one.
fn weight(rows: &[AgentRow]) -> usize {
    rows.len().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Arc<[AgentRow]> {
        (0..n)
            .map(|i| AgentRow {
                org_id: Uuid::nil(),
                agent_id: format!("a{i}").into(),
                calls: 1,
                resolved: 1,
                transferred: 0,
                abandoned: 0,
                duration_sum: 10.0,
                sentiment_calls: 0,
                positive_calls: 0,
            })
            .collect()
    }

    fn key(minute: i64) -> BucketKey {
        (
            Uuid::nil(),
            Grain::QUARTER_HOUR,
            DateTime::from_timestamp(minute * 60, 0).unwrap_or_default(),
        )
    }

    #[test]
    fn holds_the_latest_version_and_drops_the_least_recently_used() {
        let cache = AgentCache::new(10);
        cache.put(key(0), 1, rows(4));
        cache.put(key(0), 2, rows(3));
        assert_eq!(cache.get(&key(0)).map(|(v, r)| (v, r.len())), Some((2, 3)));
        assert_eq!(cache.rows(), 3);
        cache.put(key(15), 5, rows(4));
        // Touch the first bucket, so the second is the least recently used.
        assert!(cache.get(&key(0)).is_some());
        cache.put(key(30), 6, rows(4));
        // 11 rows > 10: drop by least recent use down to 8 or fewer.
        assert!(cache.get(&key(15)).is_none());
        assert!(cache.get(&key(0)).is_some());
        assert!(cache.get(&key(30)).is_some());
        assert_eq!(cache.rows(), 7);
        // A bucket larger than the budget is not held.
        cache.put(key(45), 7, rows(11));
        assert!(cache.get(&key(45)).is_none());
    }

    #[test]
    fn a_zero_budget_holds_nothing() {
        let cache = AgentCache::new(0);
        cache.put(key(0), 1, rows(1));
        assert!(cache.get(&key(0)).is_none());
        assert_eq!(cache.rows(), 0);
    }
}
