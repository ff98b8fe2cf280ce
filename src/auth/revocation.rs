//! Which tokens are revoked, remembered per process and kept current by PostgreSQL notifications.
//!
//! Policy: every request's token must be one Baton issued and has not revoked. Asking the
//! database each time costs a round trip per request, so each server remembers the verdict for
//! the tokens it has seen, and `baton token revoke` (in the same transaction as the revocation)
//! sends a `NOTIFY` that every server listening applies at once. While a server's listening
//! connection is down, or before it is up, it asks the database on every request: a revocation
//! is never missed, only the saving is. A generation counter makes sure a verdict read from the
//! database just before a revocation arrived is not remembered after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::store;

/// The notification channel `baton token revoke` signals on; the payload is the `jti`.
pub const CHANNEL: &str = "baton_token_revoked";
/// Most verdicts remembered; beyond, the memory starts over.
const MAX_ENTRIES: usize = 100_000;

/// Remembered token verdicts (`jti → revoked`).
#[derive(Debug, Default)]
pub struct TokenVerdicts {
    verdicts: RwLock<HashMap<Uuid, bool>>,
    generation: AtomicU64,
    listening: AtomicBool,
}

impl TokenVerdicts {
    /// An empty memory that asks the database until [`TokenVerdicts::listen`] is connected.
    pub fn new() -> Arc<TokenVerdicts> {
        Arc::new(TokenVerdicts::default())
    }

    /// `None` when Baton never issued `jti`, else whether it is revoked.
    pub async fn revoked(&self, pool: &PgPool, jti: Uuid) -> sqlx::Result<Option<bool>> {
        if self.listening.load(Ordering::Acquire)
            && let Some(v) = self.read().get(&jti)
        {
            return Ok(Some(*v));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let verdict = store::tokens::revoked(pool, jti).await?;
        if let Some(revoked) = verdict
            && self.listening.load(Ordering::Acquire)
        {
            let mut map = self.write();
            // A notification applied meanwhile may concern this very token: then drop this read.
            if self.generation.load(Ordering::Acquire) == generation {
                if map.len() >= MAX_ENTRIES {
                    map.clear();
                }
                map.insert(jti, revoked);
            }
        }
        Ok(verdict)
    }

    /// Applies a revocation notification.
    fn revoke(&self, jti: Uuid) {
        let mut map = self.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.insert(jti, true);
    }

    /// Forgets everything and stops trusting the memory (notifications may have been missed).
    fn reset(&self, listening: bool) {
        let mut map = self.write();
        self.listening.store(false, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
        self.listening.store(listening, Ordering::Release);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Uuid, bool>> {
        self.verdicts.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Uuid, bool>> {
        self.verdicts.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Listens for revocations on a dedicated connection for as long as the runtime runs,
    /// reconnecting after a second whenever the connection is lost.
    pub fn listen(self: &Arc<Self>, pool: PgPool) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            while !pool.is_closed() {
                this.listen_once(&pool).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    async fn listen_once(&self, pool: &PgPool) {
        let Ok(mut listener) = PgListener::connect_with(pool).await else {
            return;
        };
        if listener.listen(CHANNEL).await.is_err() {
            return;
        }
        // From here on every revocation reaches us; what we remembered before may be stale.
        self.reset(true);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match n.payload().parse::<Uuid>() {
                    Ok(jti) => self.revoke(jti),
                    // Not ours to understand: forget everything rather than guess.
                    Err(_) => self.reset(true),
                },
                // The pool closes when the server shuts down: nothing is lost, say nothing.
                _ if pool.is_closed() => return,
                Ok(None) | Err(_) => {
                    tracing::warn!(
                        "lost the token revocation listener; checking every token in the database until it is back"
                    );
                    self.reset(false);
                    return;
                }
            }
        }
    }
}
