//! Where the data lives: a PostgreSQL given by URL, or the embedded cluster under the data dir.
//!
//! A URL may ask for TLS (`sslmode=require`, `verify-ca`, `verify-full`, with `sslrootcert`):
//! sqlx is built with rustls (ring, and Mozilla's roots compiled in), so no system OpenSSL is
//! needed to build or run Baton.
//!
//! Policy: every pool waits at most 2 s for a connection and every statement at most
//! [`DbConfig::statement_timeout`], and [`health`] watches the database from a connection of its
//! own, so that a database outage (killed, restarted or frozen) turns into quick 503s rather than
//! hanging requests, and no request fails on a connection that an outage cut. Migrations run on every open (they are idempotent and take an advisory lock,
//! so a server and an admin command may open the same database at once).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{Connection, PgConnection, PgPool};

use crate::pg::{Cluster, ClusterOptions};

pub mod health;
pub mod lifecycle_fold;
pub mod replica;
pub mod retention;
pub mod stats;

pub use health::DbHealth;

/// The embedded cluster's database.
pub const DATABASE_NAME: &str = "baton";

/// The migrations in `migrations/`, compiled in. Apply them with [`migrate`], not `MIGRATOR.run`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Migrations whose comments were reworded after they were applied somewhere: (version, SHA-384 of
/// the text that was applied). sqlx refuses a database whose recorded checksum differs from the
/// file's, so [`migrate`] first moves a recorded old checksum to the current one. Only comment edits
/// belong here: the statements a database ran must stay what the file says.
const REWORDED: &[(i64, &str)] = &[(
    20261121000004,
    "ffbcb92af51be7bb43121fa9a2eb89f5f88365657e361bfd72fd7aa0b59e59005f55c30f033f7e10fd4e766ea9f1ea35",
)];

/// Applies the pending migrations, after accepting the recorded checksums of [`REWORDED`] ones.
pub async fn migrate(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::migrate::MigrateError> {
    let recorded: bool = sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
        .fetch_one(&mut *conn)
        .await?;
    if recorded {
        for (version, old) in REWORDED {
            let Some(current) = MIGRATOR.iter().find(|m| m.version == *version) else {
                continue;
            };
            let old: Vec<u8> = (0..old.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&old[i..i + 2], 16).expect("REWORDED holds hex"))
                .collect();
            sqlx::query(
                "update _sqlx_migrations set checksum = $1 where version = $2 and checksum = $3",
            )
            .bind(current.checksum.as_ref())
            .bind(version)
            .bind(old)
            .execute(&mut *conn)
            .await?;
        }
    }
    MIGRATOR.run(conn).await
}

/// Which PostgreSQL to use.
#[derive(Debug, Clone)]
pub enum DbTarget {
    /// An existing server (`DATABASE_URL`); nothing is started or stopped.
    Url(String),
    /// The embedded cluster under this data dir.
    Embedded(PathBuf),
}

/// Pool and timeout settings.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long a request waits for a free connection before it gets a 503.
    pub acquire_timeout: Duration,
    /// PostgreSQL's `statement_timeout` for every session of the pool.
    pub statement_timeout: Duration,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(15),
        }
    }
}

/// An open database: the pool, and the embedded cluster when Baton runs its own.
pub struct Database {
    /// The connection pool (cheap to clone).
    pub pool: PgPool,
    /// The connect options the pool uses (handy for dedicated connections).
    pub connect_options: PgConnectOptions,
    /// Whether the database answers; the pool drops connections older than its last outage.
    pub health: Arc<DbHealth>,
    cluster: Option<Cluster>,
}

impl Database {
    /// Opens the database (starting or joining the embedded cluster when needed), runs the
    /// migrations and returns a ready pool.
    pub async fn open(target: &DbTarget, config: &DbConfig) -> Result<Database> {
        let (base, cluster) = match target {
            DbTarget::Url(url) => {
                check_ssl_root_cert(url)?;
                (
                    PgConnectOptions::from_str(url)
                        .context("DATABASE_URL is not a valid PostgreSQL URL")?,
                    None,
                )
            }
            DbTarget::Embedded(dir) => {
                let dir = dir.clone();
                let cluster = tokio::task::spawn_blocking(move || {
                    Cluster::ensure_running(&dir, ClusterOptions::default())
                })
                .await??;
                let options = embedded_options(&cluster, DATABASE_NAME);
                create_database_if_missing(&embedded_options(&cluster, "postgres"), DATABASE_NAME)
                    .await?;
                (options, Some(cluster))
            }
        };
        // Name the server and the TLS mode: a TLS failure otherwise reads as a bare rustls error.
        let whom = match target {
            DbTarget::Url(_) => format!(
                "cannot connect to PostgreSQL at {}:{} (sslmode={})",
                base.get_host(),
                base.get_port(),
                ssl_mode_name(base.get_ssl_mode())
            ),
            DbTarget::Embedded(_) => "cannot connect to PostgreSQL".to_owned(),
        };
        let connect_options = with_session_settings(base, config);
        let health = DbHealth::new();
        let pool = watched_pool_options(config, &health)
            .connect_with(connect_options.clone())
            .await
            // sqlx's message already holds its cause: `{:#}` would print that twice.
            .map_err(|e| anyhow::anyhow!("{whom}: {e}"))?;
        migrate(&mut *pool.acquire().await?)
            .await
            .context("cannot apply database migrations")?;
        health.watch(connect_options.clone());
        Ok(Database {
            pool,
            connect_options,
            health,
            cluster,
        })
    }

    /// The embedded cluster, when Baton runs its own.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Closes the pool, then stops the embedded cluster if this process started it.
    pub async fn close(self) -> Result<()> {
        self.health.stop();
        self.pool.close().await;
        if let Some(cluster) = self.cluster {
            tokio::task::spawn_blocking(move || cluster.stop()).await??;
        }
        Ok(())
    }
}

/// Fails with the file's name when the CA file the URL (or `PGSSLROOTCERT`) names cannot be read:
/// sqlx reads it at connect time and reports only "No such file or directory".
fn check_ssl_root_cert(url: &str) -> Result<()> {
    let from_url = url.split_once('?').and_then(|(_, query)| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "sslrootcert")
            .map(|(_, value)| value.into_owned())
    });
    let Some(path) = from_url.or_else(|| std::env::var("PGSSLROOTCERT").ok()) else {
        return Ok(());
    };
    // libpq's special value: the system's roots (sqlx uses its own compiled-in roots then).
    if path == "system" {
        return Ok(());
    }
    std::fs::metadata(&path)
        .map(|_| ())
        .with_context(|| format!("cannot read sslrootcert {path}"))
}

/// `sslmode` as it is spelled in a URL.
fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// Connect options for a database of the embedded cluster, over its Unix socket.
pub fn embedded_options(cluster: &Cluster, database: &str) -> PgConnectOptions {
    PgConnectOptions::new()
        .socket(cluster.socket_dir())
        .port(cluster.port())
        .username(crate::pg::SUPERUSER)
        .database(database)
}

/// Adds the per-session settings every Baton connection carries.
pub fn with_session_settings(options: PgConnectOptions, config: &DbConfig) -> PgConnectOptions {
    let ms = config.statement_timeout.as_millis().to_string();
    options
        .application_name("baton")
        .options([("statement_timeout", ms.as_str())])
}

/// The pool options for a config.
///
/// Connections are not pinged before each use (`test_before_acquire(false)`): the ping was a
/// round trip before every query (a `/v1/metrics` request runs seven queries at once). A
/// connection that broke while idle fails its next query instead, which answers that request
/// with a 503 and drops the connection from the pool; `/readyz` checks the database itself.
pub fn pool_options(config: &DbConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(0)
        .acquire_timeout(config.acquire_timeout)
        .test_before_acquire(false)
}

/// [`pool_options`] that never hand out a connection a database restart has cut (it would fail
/// the request that used it):
/// - a connection opened before the latest outage `health` saw is dropped;
/// - one idle for more than [`IDLE_PING_AFTER`] is pinged first (a restart can have happened
///   between two probes of `health`); a failed ping drops it and counts as an outage seen, so its
///   siblings are dropped without a ping.
///
/// A busy server reuses its connections within milliseconds and pays nothing; only a quiet one
/// pays a round trip now and then.
pub fn watched_pool_options(config: &DbConfig, health: &Arc<DbHealth>) -> PgPoolOptions {
    let health = Arc::clone(health);
    pool_options(config).before_acquire(move |conn, meta| {
        let health = Arc::clone(&health);
        Box::pin(async move {
            if !health.keep_connection(meta.age) {
                return Ok(false);
            }
            if meta.idle_for <= IDLE_PING_AFTER {
                return Ok(true);
            }
            match conn.ping().await {
                Ok(()) => Ok(true),
                Err(_) => {
                    health.outage_seen();
                    Ok(false)
                }
            }
        })
    })
}

/// How long a pooled connection may sit idle before it is pinged when next taken (see
/// [`watched_pool_options`]): shorter than any PostgreSQL restart.
pub const IDLE_PING_AFTER: Duration = Duration::from_millis(100);

/// A pool beside `pool`, to the same database with the same settings, whose sessions plan
/// prepared statements once (`plan_cache_mode = force_generic_plan`), and at most 8
/// connections. For reads whose statements have one good plan whatever their values (index
/// range scans driven by arrays of bounds): PostgreSQL otherwise plans them anew at every
/// execution, because a plan made for the actual arrays always looks cheaper than the generic
/// one, and that planning cost more than the execution (measured on a reseller's `/v1/metrics`:
/// ~1 ms of planning for a ~0.15 ms read). Connections open on first use.
pub fn generic_plan_pool(pool: &PgPool) -> PgPool {
    let options = (*pool.connect_options())
        .clone()
        .options([("plan_cache_mode", "force_generic_plan")]);
    // The same pool options (the outage test of `watched_pool_options` included), fewer
    // connections.
    let main = pool.options().clone();
    let max = main.get_max_connections().min(8);
    main.max_connections(max).connect_lazy_with(options)
}

/// Creates `name` on the server reached by `admin` unless it exists.
pub async fn create_database_if_missing(admin: &PgConnectOptions, name: &str) -> Result<()> {
    let mut conn = PgConnection::connect_with(admin)
        .await
        .context("cannot connect to the embedded PostgreSQL")?;
    let exists: bool =
        sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let sql = format!("create database \"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&sql).execute(&mut conn).await {
            Ok(_) => {}
            // Another process created it between our check and our create.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    conn.close().await?;
    Ok(())
}
