//! What was issued for each token, remembered per process for a short while and kept current by
//! PostgreSQL notifications.
//!
//! Policy: every request's token must be one Baton issued and has not revoked, and its claims
//! must equal what was recorded at issue. Asking the database each time costs a round trip per
//! request, so each server remembers the issued record of the tokens it has seen, for at most
//! [`DEFAULT_TTL`] (30 s): a row deleted or altered by hand (SQL) takes effect within that
//! time, without a restart. Revocations need not wait: `baton token revoke` (in the same
//! transaction as the revocation) sends a `NOTIFY` that every listening server applies at once.
//! While a server's listening connection is down, or before it is up, it asks the database on
//! every request: a revocation is never missed, only the saving is. A generation counter makes
//! sure a record read from the database just before a revocation arrived is not remembered after
//! it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::store;
use crate::store::tokens::TokenRecord;

/// The notification channel `baton token revoke` signals on; the payload is the `jti`.
pub const CHANNEL: &str = "baton_token_revoked";
/// How long a remembered record is trusted before the database is asked again. Short enough
/// that an edit by SQL is felt quickly; long enough that a busy token costs one lookup per
/// half minute rather than one per request.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Most records remembered; beyond, the memory starts over.
const MAX_ENTRIES: usize = 100_000;

/// Remembered issued records (`jti → record`, with when it was read).
#[derive(Debug)]
pub struct TokenVerdicts {
    records: RwLock<HashMap<Uuid, (Instant, Arc<TokenRecord>)>>,
    ttl: Duration,
    generation: AtomicU64,
    listening: AtomicBool,
}

impl TokenVerdicts {
    /// An empty memory trusting records for [`DEFAULT_TTL`], asking the database until
    /// [`TokenVerdicts::listen`] is connected.
    pub fn new() -> Arc<TokenVerdicts> {
        TokenVerdicts::with_ttl(DEFAULT_TTL)
    }

    /// An empty memory trusting each record for `ttl` (zero: always ask the database).
    pub fn with_ttl(ttl: Duration) -> Arc<TokenVerdicts> {
        Arc::new(TokenVerdicts {
            records: RwLock::default(),
            ttl,
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
        })
    }

    /// How long a record is trusted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether revocation notifications are being received (records are remembered only then).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// The record of `jti` (`None` when Baton never issued it or its row is gone), from memory
    /// when it was read less than the TTL ago, else from the database.
    pub async fn record(&self, pool: &PgPool, jti: Uuid) -> sqlx::Result<Option<Arc<TokenRecord>>> {
        if self.is_listening()
            && let Some((read_at, record)) = self.read().get(&jti)
            && read_at.elapsed() < self.ttl
        {
            return Ok(Some(Arc::clone(record)));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let read_at = Instant::now();
        let record = store::tokens::record(pool, jti).await?.map(Arc::new);
        let mut map = self.write();
        match &record {
            Some(record) if self.is_listening() && !self.ttl.is_zero() => {
                // A notification applied meanwhile may concern this very token: then drop this read.
                if self.generation.load(Ordering::Acquire) == generation {
                    if map.len() >= MAX_ENTRIES {
                        map.retain(|_, (at, _)| at.elapsed() < self.ttl);
                        if map.len() >= MAX_ENTRIES {
                            map.clear();
                        }
                    }
                    map.insert(jti, (read_at, Arc::clone(record)));
                }
            }
            // Gone or not to be remembered: forget any stale copy too.
            _ => {
                map.remove(&jti);
            }
        }
        Ok(record)
    }

    /// Applies a revocation notification: the next request reads the record again.
    fn revoke(&self, jti: Uuid) {
        let mut map = self.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.remove(&jti);
    }

    /// Forgets everything and stops trusting the memory (notifications may have been missed).
    fn reset(&self, listening: bool) {
        let mut map = self.write();
        self.listening.store(false, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
        self.listening.store(listening, Ordering::Release);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Uuid, (Instant, Arc<TokenRecord>)>> {
        self.records.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Uuid, (Instant, Arc<TokenRecord>)>> {
        self.records.write().unwrap_or_else(|e| e.into_inner())
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
