//! The lifecycle folder every server runs: folds the changes that large batches left pending
//! (`store::lifecycle::pending`) into the lifecycle rollups, in the background.
//!
//! Policy: every [`FoldOptions::every`] the task asks which organizations have pending rows due
//! (the newest at least [`FoldOptions::quiet`] old, so that a burst of large batches is not
//! slowed by folds between them and its rows coalesce; or the oldest at least
//! [`FoldOptions::overdue`] old, so that an organization that never pauses is still folded) and
//! folds each one's, [`FoldOptions::rows`] pending rows per transaction. A fold takes the
//! organization's ingest lock (one fold at a time per organization across servers, and no batch
//! writes its rollups meanwhile); its transactions are short and re-queue for the lock between
//! them, so the organization's batches interleave. Reads never wait for it: they merge what is
//! still pending. Stopping waits for the fold transaction in progress (if any), then returns; a
//! fold cut short (the process killed, the database gone) rolls back and leaves its rows pending
//! for the next pass of any server.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::lifecycle::pending;

/// How the folder works.
#[derive(Debug, Clone, Copy)]
pub struct FoldOptions {
    /// Time between two looks for due organizations.
    pub every: Duration,
    /// An organization's pending rows are due once its newest is this old.
    pub quiet: Duration,
    /// … or once its oldest is this old.
    pub overdue: Duration,
    /// Pending rows folded (merged into one rollup write) per transaction.
    pub rows: i64,
}

impl Default for FoldOptions {
    /// A look every 250 ms; due after 500 ms without a new pending row, or 5 s after the oldest;
    /// 4 pending rows a transaction (see BENCHMARKS.md).
    fn default() -> FoldOptions {
        FoldOptions {
            every: Duration::from_millis(250),
            quiet: Duration::from_millis(500),
            overdue: Duration::from_secs(5),
            rows: 4,
        }
    }
}

/// A running folder.
#[derive(Debug)]
pub struct Folder {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Folder {
    /// Starts the folder on `pool`.
    pub fn start(pool: PgPool, options: FoldOptions) -> Folder {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(pool, options, stopped));
        Folder {
            stop,
            task: Some(task),
        }
    }

    /// Stops looking for work, lets a fold transaction in progress end, and returns once the
    /// task has stopped.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One pass: folds every organization due; returns how many pending rows were folded.
pub async fn run_once(
    pool: &PgPool,
    options: FoldOptions,
    stopped: &watch::Receiver<bool>,
) -> sqlx::Result<u64> {
    let mut total = 0;
    for org in pending::due(pool, options.quiet, options.overdue).await? {
        loop {
            if *stopped.borrow() {
                return Ok(total);
            }
            let n = pending::fold(pool, org, options.rows).await?;
            total += n;
            if n < options.rows.max(1) as u64 {
                break;
            }
        }
    }
    Ok(total)
}

async fn run(pool: PgPool, options: FoldOptions, mut stopped: watch::Receiver<bool>) {
    let mut pause = options.every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        pause = options.every;
        match run_once(&pool, options, &stopped).await {
            Ok(0) => {}
            Ok(folded) => tracing::debug!(folded, "lifecycle: pending rollup changes folded"),
            Err(e) => {
                // The database may be down: one warning per `overdue`, not per look.
                pause = options.overdue.max(options.every);
                tracing::warn!(error = %e, "lifecycle: folding pending rollup changes failed; retrying later")
            }
        }
        if *stopped.borrow() {
            return;
        }
    }
}
