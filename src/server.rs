//! `baton serve`: bind, open the database (starting the embedded cluster when needed), serve
//! until SIGINT/SIGTERM, drain in-flight requests, then close the pool and stop the cluster.
//! Connections are served by [`crate::listener`], which bounds what stalled clients can hold and
//! how long the drain may take.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::db::replica::ReadReplica;
use crate::db::stats::StatsKeeper;
use crate::db::{Database, DbConfig, DbTarget};
use crate::http::{self, AppState, HttpConfig};
use crate::listener::{HttpListener, ListenerOptions};
use crate::webhooks::WebhookConfig;
use crate::webhooks::worker::Deliverer;
use crate::{admin, demo, monitoring};

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Listen address.
    pub addr: SocketAddr,
    /// Which database.
    pub target: DbTarget,
    /// Pool settings.
    pub db: DbConfig,
    /// Request limits.
    pub http: HttpConfig,
    /// Connection limits and the shutdown grace period.
    pub listener: ListenerOptions,
    /// Prepare the demo organization and print how to use it.
    pub demo: bool,
    /// Bound of the `/v1/metrics` agent cache, in rows (0: off).
    pub metrics_cache_rows: usize,
    /// Stored events that trigger a background `ANALYZE` (0: never).
    pub analyze_after_events: u64,
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`); `None`: none.
    pub admin_addr: Option<SocketAddr>,
    /// Raw events older than this many days are deleted in the background (0: never).
    pub raw_event_retention_days: u32,
    /// A streaming replica for reads (`--read-database-url`).
    pub read_database_url: Option<String>,
    /// Lag beyond which reads fall back to the primary.
    pub read_replica_max_lag: std::time::Duration,
    /// Webhook checks and delivery.
    pub webhooks: WebhookConfig,
}

/// Runs the server until a shutdown signal.
pub async fn run(options: ServeOptions) -> anyhow::Result<()> {
    // The signal handlers come first: once a client can connect, SIGTERM must stop the server
    // gracefully, not kill it with the default action (a signal that arrives during start-up
    // is kept, and the server stops as soon as it serves).
    let signals = ShutdownSignals::register();
    // Bind first: a busy port should fail before PostgreSQL is started for nothing.
    let listener = TcpListener::bind(options.addr)
        .await
        .with_context(|| format!("cannot listen on {}", options.addr))?;
    let addr = listener.local_addr()?;
    let admin = match options.admin_addr {
        Some(admin_addr) => Some(TcpListener::bind(admin_addr).await.with_context(|| {
            format!("cannot listen on {admin_addr} (--admin-addr; `off` disables it)")
        })?),
        None => None,
    };
    let db = Database::open(&options.target, &options.db).await?;
    let result = serve(listener, addr, admin, &db, &options, signals).await;
    let closed = db.close().await;
    result.and(closed)
}

async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    admin: Option<TcpListener>,
    db: &Database,
    options: &ServeOptions,
    signals: ShutdownSignals,
) -> anyhow::Result<()> {
    let keys = Arc::new(admin::signing_keys(&db.pool).await?);
    let replica = match &options.read_database_url {
        Some(url) => Some(ReadReplica::open(
            url,
            &options.db,
            &db.pool,
            options.read_replica_max_lag,
        )?),
        None => None,
    };
    let mut state = AppState::new(db.pool.clone(), keys.clone());
    if let Some(replica) = &replica {
        state = state.with_read_replica(replica.clone());
    }
    let state = state
        .with_db_health(db.health.clone())
        .with_metrics_cache_rows(options.metrics_cache_rows)
        .with_stats_keeper(StatsKeeper::with_min_events(
            db.pool.clone(),
            match options.analyze_after_events {
                0 => i64::MAX,
                n => i64::try_from(n).unwrap_or(i64::MAX),
            },
        ))
        .with_webhook_config(options.webhooks.clone());
    if options.raw_event_retention_days > 0 {
        crate::db::retention::spawn(
            db.pool.clone(),
            crate::db::retention::RetentionOptions::days(options.raw_event_retention_days),
        );
    }
    let admin_app = monitoring::admin_router(state.clone());
    // Delivers webhooks while the server runs (unless its concurrency is 0).
    let deliverer = (options.webhooks.concurrency > 0).then(|| {
        Deliverer::start(
            db.pool.clone(),
            options.webhooks.clone(),
            state.monitoring.clone(),
        )
    });
    // Folds the lifecycle changes large batches left pending while the server runs.
    let folder = crate::db::lifecycle_fold::Folder::start(db.pool.clone(), Default::default());
    let app = http::router(state, &options.http);
    if options.demo {
        let (org, token) = demo::prepare(&db.pool, &keys).await?;
        let anchor = demo::anchor(&db.pool, &org).await?;
        let loaded = demo::load(&app, &db.pool, &token, &org, anchor).await?;
        demo::print_welcome(&org, &token, addr, loaded);
    }
    match db.cluster() {
        Some(cluster) => {
            tracing::info!(%addr, data_dir = %cluster.data_dir().display(), cluster = %cluster.pgdata().display(), "Baton is serving on its embedded PostgreSQL")
        }
        None => tracing::info!(%addr, "Baton is serving"),
    }
    // Descriptors kept for everything but client connections: both database pools (the main one
    // and the `/v1/metrics` one, at most as large), the admin listener's connections and the
    // runtime's, log and data files.
    // Twice as many with a read replica (its two pools).
    let pools = if replica.is_some() { 4 } else { 2 };
    let reserve = pools * u64::from(options.db.max_connections) + ADMIN_MAX_CONNECTIONS as u64 + 64;
    let limits = options.listener.bounded_by_fd_limit(reserve);
    tracing::debug!(?limits, "connection limits");
    // One signal stops both listeners: the admin one stops accepting with the API's, and its
    // connections drain within the same grace.
    let (stop, stopped) = watch::channel(false);
    let api = HttpListener::new(listener, limits).serve(app, wait_for(stopped.clone()));
    // The webhook worker stops with the listeners (attempts in flight get at most 2 s, within
    // the grace period; an abandoned one is retried after its lease).
    let webhooks = {
        let stopped = stopped.clone();
        async move {
            wait_for(stopped).await;
            if let Some(deliverer) = deliverer {
                deliverer.shutdown().await;
            }
        }
    };
    // So does the lifecycle folder (a fold in progress ends first: short transactions).
    let folding = {
        let stopped = stopped.clone();
        async move {
            wait_for(stopped).await;
            folder.shutdown().await;
        }
    };
    let admin = async {
        if let Some(admin) = admin {
            let admin_addr = admin.local_addr().ok();
            tracing::info!(addr = ?admin_addr, "admin listener (/metrics, /healthz, /readyz)");
            let admin_limits = ListenerOptions {
                max_connections: ADMIN_MAX_CONNECTIONS,
                ..options.listener
            };
            HttpListener::new(admin, admin_limits)
                .serve(admin_app, wait_for(stopped))
                .await;
        }
    };
    let signal = async {
        signals.recv().await;
        let _ = stop.send(true);
    };
    tokio::join!(api, admin, signal, webhooks, folding);
    if let Some(replica) = replica {
        replica.close().await;
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Most connections the admin listener keeps open: a scraper and a few probes need a handful.
const ADMIN_MAX_CONNECTIONS: usize = 32;

/// Resolves once `stopped` holds `true` (or its sender is gone).
async fn wait_for(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// SIGINT (Ctrl-C) and SIGTERM, handled from the moment [`ShutdownSignals::register`] runs
/// (tokio installs the handler then; a signal before the first `recv` is not lost).
pub struct ShutdownSignals {
    term: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Installs the handlers (a platform that refuses one just never delivers it).
    pub fn register() -> ShutdownSignals {
        use tokio::signal::unix::{SignalKind, signal};
        ShutdownSignals {
            term: signal(SignalKind::terminate()).ok(),
            interrupt: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Resolves on the first SIGINT or SIGTERM since [`ShutdownSignals::register`].
    pub async fn recv(mut self) {
        async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = one(&mut self.term) => {},
            () = one(&mut self.interrupt) => {},
        }
        tracing::info!("shutdown signal received, draining requests");
    }
}
