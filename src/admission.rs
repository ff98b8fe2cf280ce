//! Admission of writes: which ingest batch may use the database now.
//!
//! Policy: an organization's batches apply one after another (they share a PostgreSQL advisory
//! lock, which keeps them in order across servers too). Waiting for that lock inside a
//! transaction would hold a pool connection per waiting batch, so one organization posting 32
//! batches at once could take every connection and starve everybody else. So a batch first
//! waits here, holding nothing:
//! 1. in its organization's queue (first come, first served; one batch of an organization at a
//!    time per server), then
//! 2. for one of [`IngestAdmission::writers`] write slots shared by all organizations (half the
//!    pool by default, so reads always find connections).
//!
//! A queue longer than `max_waiting` answers 429 at once, and a batch that waited longer than
//! `max_wait` answers 503; both with `Retry-After`, and nothing of the batch is stored, so the
//! client re-sends it later. Queues are kept per organization for the life of the process (a few
//! dozen bytes each).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// Batches of one organization that may wait on one server before more are refused.
pub const DEFAULT_MAX_WAITING: usize = 64;
/// Longest a batch waits for its turn before it is refused.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10);

/// The write queues of one server.
#[derive(Debug)]
pub struct IngestAdmission {
    writers: Arc<Semaphore>,
    writer_slots: usize,
    max_waiting: usize,
    max_wait: Duration,
    orgs: Mutex<HashMap<Uuid, Arc<OrgQueue>>>,
}

#[derive(Debug, Default)]
struct OrgQueue {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Batches waiting or applying.
    queued: AtomicUsize,
}

/// Why a batch was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The organization already has `max_waiting` batches queued on this server.
    #[error(
        "too many batches of this organization are waiting ({0}); retry when earlier ones are done"
    )]
    QueueFull(usize),
    /// The batch waited `max_wait` without getting its turn.
    #[error("the batch waited {} s for its turn; retry later", .0.as_secs_f64())]
    Waited(Duration),
}

/// A batch's turn: while held, it may open its ingest transaction.
#[derive(Debug)]
pub struct Turn {
    _writer: OwnedSemaphorePermit,
    _org: OwnedMutexGuard<()>,
    queue: Arc<OrgQueue>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.queue.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a batch out of its queue if it leaves before its turn.
struct Queued(Arc<OrgQueue>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

impl IngestAdmission {
    /// Queues with `writers` write slots (at least one).
    pub fn new(writers: usize, max_waiting: usize, max_wait: Duration) -> IngestAdmission {
        let writers = writers.max(1);
        IngestAdmission {
            writers: Arc::new(Semaphore::new(writers)),
            writer_slots: writers,
            max_waiting: max_waiting.max(1),
            max_wait,
            orgs: Mutex::new(HashMap::new()),
        }
    }

    /// The default for a pool of `pool_size` connections: half of them for writes.
    pub fn for_pool(pool_size: u32) -> IngestAdmission {
        IngestAdmission::new(
            (pool_size as usize) / 2,
            DEFAULT_MAX_WAITING,
            DEFAULT_MAX_WAIT,
        )
    }

    /// How many batches (of all organizations) may apply at once.
    pub fn writers(&self) -> usize {
        self.writer_slots
    }

    /// Waits for `org`'s next turn (see the module docs).
    pub async fn turn(&self, org: Uuid) -> Result<Turn, Refused> {
        let queue = {
            let mut orgs = self.orgs.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(orgs.entry(org).or_default())
        };
        let before = queue.queued.fetch_add(1, Ordering::AcqRel);
        let queued = Queued(Arc::clone(&queue));
        if before >= self.max_waiting {
            return Err(Refused::QueueFull(before));
        }
        let wait = async {
            let org_turn = Arc::clone(&queue.turn).lock_owned().await;
            let writer = Arc::clone(&self.writers)
                .acquire_owned()
                .await
                .unwrap_or_else(|_| unreachable!("the write semaphore is never closed"));
            (org_turn, writer)
        };
        match tokio::time::timeout(self.max_wait, wait).await {
            Ok((org_turn, writer)) => {
                // From here the turn counts the batch out when it is done.
                std::mem::forget(queued);
                Ok(Turn {
                    _writer: writer,
                    _org: org_turn,
                    queue,
                })
            }
            Err(_) => Err(Refused::Waited(self.max_wait)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_batch_of_an_organization_at_a_time_and_others_pass() {
        let admission = IngestAdmission::new(2, 8, Duration::from_secs(5));
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let first = admission.turn(a).await.unwrap();
        // A second batch of `a` waits; `b` gets a write slot at once.
        let waiting = tokio::time::timeout(Duration::from_millis(50), admission.turn(a)).await;
        assert!(waiting.is_err());
        let other = admission.turn(b).await.unwrap();
        drop(first);
        let second = admission.turn(a).await.unwrap();
        drop((other, second));
    }

    #[tokio::test]
    async fn a_full_queue_and_a_long_wait_are_refused() {
        let admission = IngestAdmission::new(1, 2, Duration::from_millis(50));
        let a = Uuid::new_v4();
        let held = admission.turn(a).await.unwrap();
        // One waits (and times out), the queue is then full for a third.
        let (waited, full) = tokio::join!(admission.turn(a), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            admission.turn(a).await
        });
        assert_eq!(
            waited.unwrap_err(),
            Refused::Waited(Duration::from_millis(50))
        );
        assert_eq!(full.unwrap_err(), Refused::QueueFull(2));
        drop(held);
        // Everybody who left is counted out: the queue takes batches again.
        admission.turn(a).await.unwrap();
    }

    #[tokio::test]
    async fn write_slots_are_shared_by_all_organizations() {
        let admission = IngestAdmission::new(1, 8, Duration::from_millis(50));
        let held = admission.turn(Uuid::new_v4()).await.unwrap();
        assert_eq!(
            admission.turn(Uuid::new_v4()).await.unwrap_err(),
            Refused::Waited(Duration::from_millis(50))
        );
        drop(held);
        admission.turn(Uuid::new_v4()).await.unwrap();
    }
}
