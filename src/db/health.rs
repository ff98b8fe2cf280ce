//! Whether PostgreSQL is answering, watched from one dedicated connection.
//!
//! Policy: a database that is killed answers at once with a refused connection, but one that is
//! frozen (stopped, partitioned, swapping) answers nothing, and PostgreSQL's own
//! `statement_timeout` cannot fire on a server that does not run. So every server probes the
//! database every [`PROBE_INTERVAL`] on a connection of its own (outside the pool, so a saturated
//! pool never looks like an outage). A probe that fails, or that has not answered within
//! [`STALL_AFTER`], marks the database *down*:
//! - requests in flight that have run for at least [`STALL_AFTER`] are answered 503 at once
//!   (the middleware in `http` races each request against [`DbHealth::outage`]), so a frozen
//!   database holds no request for more than about 1.25 s;
//! - pooled connections opened before the outage was seen are discarded when next taken from
//!   the pool ([`DbHealth::keep_connection`], and the idle ones are pinged in case a restart
//!   fell between two probes: see `watched_pool_options`), so after a restart no request fails
//!   on a dead connection;
//! - a request that observes *down* wakes the prober, so a recovery is noticed at once rather
//!   than at the next tick.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::{Notify, watch};

/// Time between two probes while the database answers.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// A probe (or a connection attempt) unanswered for this long marks the database down.
pub const STALL_AFTER: Duration = Duration::from_secs(1);

/// The database as last seen by the prober.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The last probe was answered.
    Up,
    /// Since this instant no probe has been answered.
    Down(Instant),
}

/// The watched state of one database.
#[derive(Debug)]
pub struct DbHealth {
    status: watch::Sender<Status>,
    /// When the latest outage was seen: pooled connections older than this may be dead.
    last_outage: Mutex<Option<Instant>>,
    wake: Arc<Notify>,
    /// Set when the database is closed on purpose: the prober stops, reporting nothing.
    stopped: std::sync::atomic::AtomicBool,
}

impl DbHealth {
    /// A state that believes the database is up until the prober says otherwise.
    pub fn new() -> Arc<DbHealth> {
        Arc::new(DbHealth {
            status: watch::Sender::new(Status::Up),
            last_outage: Mutex::new(None),
            wake: Arc::new(Notify::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Probes the database behind `options` for as long as the runtime runs (or until every
    /// other handle of this state is dropped).
    pub fn watch(self: &Arc<Self>, options: PgConnectOptions) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut conn: Option<PgConnection> = None;
            let mut connected_before = false;
            loop {
                let Some(this) = weak.upgrade() else { return };
                if this.stopped.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                let answered = this.probe(&mut conn, &mut connected_before, &options).await;
                if this.stopped.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                this.record(answered);
                let wait = if answered {
                    PROBE_INTERVAL
                } else {
                    PROBE_INTERVAL / 2
                };
                let wake = Arc::clone(&this.wake);
                // No strong handle across the sleep: the prober stops with its state.
                drop(this);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = wake.notified() => {}
                }
            }
        });
    }

    /// One probe: `select 1` on the prober's connection, (re)connecting first when needed.
    async fn probe(
        &self,
        conn: &mut Option<PgConnection>,
        connected_before: &mut bool,
        options: &PgConnectOptions,
    ) -> bool {
        if conn.is_none() {
            match tokio::time::timeout(STALL_AFTER, PgConnection::connect_with(options)).await {
                Ok(Ok(c)) => {
                    // Reconnecting means the old connection was lost, and maybe the pool's too.
                    if *connected_before {
                        self.outage_seen();
                    }
                    *connected_before = true;
                    *conn = Some(c);
                }
                _ => return false,
            }
        }
        let Some(c) = conn.as_mut() else {
            return false;
        };
        match tokio::time::timeout(STALL_AFTER, sqlx::query("select 1").execute(&mut *c)).await {
            Ok(Ok(_)) => true,
            _ => {
                // Dropped rather than closed: closing would wait on a frozen server.
                *conn = None;
                false
            }
        }
    }

    fn record(&self, answered: bool) {
        if answered {
            self.status.send_if_modified(|s| {
                let changed = *s != Status::Up;
                if changed {
                    tracing::info!("the database answers again");
                }
                *s = Status::Up;
                changed
            });
        } else {
            self.outage_seen();
            self.status.send_if_modified(|s| match s {
                Status::Up => {
                    tracing::warn!("the database does not answer; requests waiting on it get 503s");
                    *s = Status::Down(Instant::now());
                    true
                }
                Status::Down(_) => false,
            });
        }
    }

    /// Records that connections opened until now may have been cut (a probe or a ping failed).
    pub fn outage_seen(&self) {
        *self.last_outage.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Stops probing (the database is being closed on purpose: that is no outage).
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
    }

    /// The current status.
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// Whether a pooled connection of this `age` was opened after the latest outage seen (a
    /// `before_acquire` test: older ones may have been cut by a restart and are dropped
    /// rather than failing a request).
    pub fn keep_connection(&self, age: Duration) -> bool {
        let last = *self.last_outage.lock().unwrap_or_else(|e| e.into_inner());
        match (last, Instant::now().checked_sub(age)) {
            (Some(outage), Some(opened)) => opened > outage,
            _ => true,
        }
    }

    /// Resolves when a request that started at `started` should stop waiting on the database:
    /// the database is down and the request has run for at least [`STALL_AFTER`]. Never
    /// resolves while the database is up. A request arriving during an outage wakes the prober,
    /// so that it gets its chance if the database is back within that time.
    pub async fn outage(&self, started: Instant) {
        let mut rx = self.status.subscribe();
        loop {
            let status = *rx.borrow_and_update();
            if let Status::Down(_) = status {
                self.wake.notify_one();
                let due = started + STALL_AFTER;
                tokio::select! {
                    () = tokio::time::sleep_until(due.into()) => {
                        if matches!(*rx.borrow(), Status::Down(_)) {
                            return;
                        }
                    }
                    changed = rx.changed() => if changed.is_err() { std::future::pending::<()>().await },
                }
            } else if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
