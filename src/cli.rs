//! The command line: `serve`, `migrate`, `reseller create`, `org create`, `token issue`,
//! `token revoke`, `healthcheck`. Every command but `healthcheck` takes `--database-url` /
//! `--data-dir` and works whether or not a server runs on the same data dir; `healthcheck` asks a
//! running server over HTTP and never opens the database. Admin commands print one JSON line (or,
//! for `token issue`, the token alone) on stdout; errors are one line on stderr, exit code 1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::http::HeaderValue;
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::admin::{self, TokenFor};
use crate::auth::Scope;
use crate::db::{Database, DbConfig, DbTarget};
use crate::http::{HttpConfig, cors, ratelimit};
use crate::listener::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SHUTDOWN_GRACE, ListenerOptions,
};
use crate::monitoring::DEFAULT_ADMIN_ADDR;
use crate::server::{self, ServeOptions};
use crate::store::agent_cache::DEFAULT_CACHE_ROWS;
use crate::webhooks::WebhookConfig;

/// Baton: self-hosted AI-to-human handoff server.
#[derive(Debug, Parser)]
#[command(name = "baton", version, about, long_about = None)]
pub struct Cli {
    /// Where the data lives.
    #[command(flatten)]
    pub db: DbArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Database selection, shared by every command.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// PostgreSQL URL. When set, Baton uses it and starts no PostgreSQL of its own.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Data dir of the embedded PostgreSQL cluster (used when no database URL is given).
    #[arg(
        long,
        env = "BATON_DATA_DIR",
        default_value = "baton-data",
        global = true
    )]
    pub data_dir: PathBuf,
}

impl DbArgs {
    /// The database these arguments select.
    pub fn target(&self) -> DbTarget {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => DbTarget::Url(url.clone()),
            _ => DbTarget::Embedded(self.data_dir.clone()),
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (migrations run at start).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage resellers.
    Reseller {
        /// What to do.
        #[command(subcommand)]
        command: ResellerCommand,
    },
    /// Manage organizations.
    Org {
        /// What to do.
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Issue and revoke API tokens.
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Recompute every projection and rollup from the raw events, through the same code as
    /// ingest; prints one JSON line of counts.
    Rebuild {
        /// Only this organization (and the other organizations of its reseller, whose rollups
        /// it shares); default: every organization.
        #[arg(long)]
        org: Option<String>,
    },
    /// Exit 0 when a running server's `GET /readyz` answers 200, else 1 with one line on stderr
    /// (for container health checks). Opens no database.
    Healthcheck(HealthcheckArgs),
}

/// `baton healthcheck` options.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Address of the server to ask: its admin listener (the default, read from
    /// `BATON_ADMIN_ADDR` like `serve` does) or its API address (`/readyz` is served on both).
    /// An unspecified IP (`0.0.0.0`, `::`) means this host's loopback.
    #[arg(long, env = "BATON_ADMIN_ADDR", default_value = DEFAULT_ADMIN_ADDR, value_parser = parse_admin_addr)]
    pub addr: AdminAddr,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout_secs: u64,
}

/// An admin listener address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminAddr(pub Option<SocketAddr>);

/// Parses `--admin-addr`: a socket address, or `off`.
fn parse_admin_addr(text: &str) -> Result<AdminAddr, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(AdminAddr(None));
    }
    text.trim()
        .parse()
        .map(|addr| AdminAddr(Some(addr)))
        .map_err(|_| format!("`{text}` is neither an address like 127.0.0.1:9464 nor `off`"))
}

/// `baton serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BATON_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Create the `demo` organization with about 90 days of data, and print the dashboard URL, a
    /// token and curl lines.
    #[arg(long)]
    pub demo: bool,
    /// Most database connections the server opens.
    #[arg(long, env = "BATON_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Seconds a request may take before it is answered 503.
    #[arg(long, env = "BATON_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Most client connections open at once (further clients wait in the listen backlog); lowered
    /// to fit the open-file limit (`ulimit -n`).
    #[arg(long, env = "BATON_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds a client may take to send a complete request head before it is disconnected.
    #[arg(long, env = "BATON_HEADER_READ_TIMEOUT_SECS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT.as_secs())]
    pub header_read_timeout_secs: u64,
    /// Seconds a keep-alive connection may stay idle before it is closed.
    #[arg(long, env = "BATON_IDLE_TIMEOUT_SECS", default_value_t = DEFAULT_IDLE_TIMEOUT.as_secs())]
    pub idle_timeout_secs: u64,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM before every connection is
    /// closed.
    #[arg(long, env = "BATON_SHUTDOWN_GRACE_SECS", default_value_t = DEFAULT_SHUTDOWN_GRACE.as_secs())]
    pub shutdown_grace_secs: u64,
    /// Seconds a single SQL statement may take (PostgreSQL `statement_timeout`).
    #[arg(long, env = "BATON_STATEMENT_TIMEOUT_SECS", default_value_t = 15)]
    pub statement_timeout_secs: u64,
    /// Most agent rows of reseller rollup buckets kept in memory between `GET /v1/metrics`
    /// requests (about 100 bytes each; 0 turns the cache off). A held bucket is reused only
    /// while its version in PostgreSQL is unchanged, so answers are the same either way.
    #[arg(long, env = "BATON_METRICS_CACHE_ROWS", default_value_t = DEFAULT_CACHE_ROWS)]
    pub metrics_cache_rows: usize,
    /// Reads (`GET`) per minute per token, in this server process; beyond, 429 with
    /// `Retry-After`. 0 turns the limit off. Writes are not counted.
    #[arg(long, env = "BATON_RATE_LIMIT_PER_MINUTE", default_value_t = ratelimit::DEFAULT_PER_MINUTE)]
    pub rate_limit_per_minute: u32,
    /// Events this server stores before it refreshes the planner's statistics of the ingested
    /// tables with `ANALYZE` in the background (or a tenth of the events table, when larger);
    /// 0 leaves statistics to autovacuum alone.
    #[arg(long, env = "BATON_ANALYZE_AFTER_EVENTS", default_value_t = crate::db::stats::MIN_EVENTS as u64)]
    pub analyze_after_events: u64,
    /// Address of the admin listener, serving `GET /metrics` (Prometheus text format),
    /// `/healthz` and `/readyz` without tokens (never on the API port); `off` disables it.
    #[arg(long, env = "BATON_ADMIN_ADDR", default_value = DEFAULT_ADMIN_ADDR, value_parser = parse_admin_addr)]
    pub admin_addr: AdminAddr,
    /// A browser origin allowed to call the API, as `https://host[:port]` (repeat for several,
    /// comma-separated in the environment; `*` for any). Unset or empty: no CORS headers.
    #[arg(
        long = "cors-allow-origin",
        env = "BATON_CORS_ALLOW_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allow_origins: Vec<String>,
    /// Delete raw events that occurred more than this many days ago, in the background, in
    /// batches of 5,000 (projections and rollups stay, so every figure is unchanged; `baton
    /// rebuild` can no longer recompute the organizations concerned). 0: keep them forever.
    #[arg(long, env = "BATON_RAW_EVENT_RETENTION_DAYS", default_value_t = 0)]
    pub raw_event_retention_days: u32,
    /// A streaming replica of the database for reads that may be a few seconds stale
    /// (analytics, metrics, handoff lists and records, PolyAI lookups); writes, the configuration
    /// GET and token checks stay on the primary. Unset: every read uses the primary.
    #[arg(long, env = "BATON_READ_DATABASE_URL", hide_env_values = true)]
    pub read_database_url: Option<String>,
    /// Seconds the replica may lag behind the primary before reads fall back to the primary.
    #[arg(long, env = "BATON_READ_REPLICA_MAX_LAG_SECS", default_value_t = 5.0)]
    pub read_replica_max_lag_secs: f64,
    /// Let webhooks point at loopback and private networks (refused otherwise, at creation and
    /// after DNS resolution at each attempt). For tests and closed networks.
    #[arg(
        long,
        env = "BATON_WEBHOOKS_ALLOW_PRIVATE",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub webhooks_allow_private: bool,
    /// First webhook retry delay in milliseconds (doubles per attempt up to 4 h). For tests.
    #[arg(
        long,
        env = "BATON_WEBHOOKS_BACKOFF_MS",
        default_value_t = 5000,
        hide = true
    )]
    pub webhooks_backoff_ms: u64,
    /// How often the webhook worker looks for due deliveries, in milliseconds. For tests.
    #[arg(
        long,
        env = "BATON_WEBHOOKS_POLL_MS",
        default_value_t = 1000,
        hide = true
    )]
    pub webhooks_poll_ms: u64,
    /// Webhook attempts in flight on this server; 0: this server delivers none (it still
    /// enqueues: other servers deliver). For benchmarks and ingest-only servers.
    #[arg(
        long,
        env = "BATON_WEBHOOKS_CONCURRENCY",
        default_value_t = 64,
        hide = true
    )]
    pub webhooks_concurrency: usize,
}

/// `baton reseller …`
#[derive(Debug, Subcommand)]
pub enum ResellerCommand {
    /// Create a reseller; prints `{"id":…,"slug":…}`.
    Create {
        /// Unique slug (lowercase letters, digits, `-`, `_`).
        slug: String,
        /// Display name (default: the slug).
        #[arg(long)]
        name: Option<String>,
    },
}

/// `baton org …`
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization; prints `{"id":…,"slug":…}`.
    Create {
        /// Unique slug (lowercase letters, digits, `-`, `_`).
        slug: String,
        /// Display name (default: the slug).
        #[arg(long)]
        name: Option<String>,
        /// Slug of the reseller it belongs to.
        #[arg(long)]
        reseller: Option<String>,
        /// IANA time zone for day and hour buckets (default UTC).
        #[arg(long)]
        timezone: Option<String>,
    },
}

/// `baton token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; prints the JWT alone.
    Issue(TokenIssueArgs),
    /// Revoke a token by its id (`jti`) or by the token itself.
    Revoke {
        /// The token's `jti`, or the whole token.
        jti: String,
    },
}

/// `baton token issue` options.
#[derive(Debug, Args)]
pub struct TokenIssueArgs {
    /// Whom the token speaks for.
    #[command(flatten)]
    pub target: TokenTarget,
    /// A scope to grant (repeat for several): `read_all`, `write_all` (implies `read_all`).
    #[arg(long = "scope", value_enum, required = true)]
    pub scopes: Vec<Scope>,
    /// Days until the token expires.
    #[arg(long, default_value_t = 90)]
    pub ttl_days: i64,
}

/// Exactly one of `--org` or `--reseller`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TokenTarget {
    /// Organization slug.
    #[arg(long)]
    pub org: Option<String>,
    /// Reseller slug (the token reads all the reseller's organizations).
    #[arg(long)]
    pub reseller: Option<String>,
}

/// Runs a parsed command line; errors are printed as one line.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let target = cli.db.target();
    match cli.command {
        Command::Serve(args) => {
            // Checked here rather than by clap so that an empty variable (`${VAR:-}` in a compose
            // file) means none, and a bad origin is one line like every other error.
            let cors_allow_origins = args
                .cors_allow_origins
                .iter()
                .filter(|o| !o.trim().is_empty())
                .map(|o| {
                    cors::parse_origin(o).map_err(|e| anyhow::anyhow!("--cors-allow-origin: {e}"))
                })
                .collect::<anyhow::Result<Vec<HeaderValue>>>()?;
            server::run(ServeOptions {
                addr: args.addr,
                target,
                db: DbConfig {
                    max_connections: args.db_max_connections.max(1),
                    statement_timeout: Duration::from_secs(args.statement_timeout_secs.max(1)),
                    ..DbConfig::default()
                },
                http: HttpConfig {
                    request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
                    rate_limit_per_minute: args.rate_limit_per_minute,
                    cors_allow_origins,
                    ..HttpConfig::default()
                },
                listener: ListenerOptions {
                    header_read_timeout: Duration::from_secs(args.header_read_timeout_secs.max(1)),
                    idle_timeout: Duration::from_secs(args.idle_timeout_secs.max(1)),
                    max_connections: args.max_connections.max(1),
                    shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
                },
                demo: args.demo,
                metrics_cache_rows: args.metrics_cache_rows,
                analyze_after_events: args.analyze_after_events,
                admin_addr: args.admin_addr.0,
                raw_event_retention_days: args.raw_event_retention_days,
                read_database_url: args.read_database_url.filter(|url| !url.trim().is_empty()),
                read_replica_max_lag: Duration::try_from_secs_f64(args.read_replica_max_lag_secs)
                    .map_err(|_| {
                    anyhow::anyhow!(
                        "--read-replica-max-lag-secs: must be a number of seconds, 0 or more"
                    )
                })?,
                webhooks: WebhookConfig {
                    allow_private: args.webhooks_allow_private,
                    backoff_base: Duration::from_millis(args.webhooks_backoff_ms.max(1)),
                    poll_interval: Duration::from_millis(args.webhooks_poll_ms.max(10)),
                    concurrency: args.webhooks_concurrency,
                    ..WebhookConfig::default()
                },
            })
            .await
        }
        // Before any database is opened (or embedded cluster started): a probe must not need one.
        Command::Healthcheck(args) => {
            let addr = args.addr.0.ok_or_else(|| {
                anyhow::anyhow!(
                    "the admin listener is off (BATON_ADMIN_ADDR=off): pass --addr with the API address"
                )
            })?;
            crate::healthcheck::check(addr, Duration::from_secs(args.timeout_secs.max(1))).await
        }
        command => {
            let db = Database::open(&target, &admin_db_config()).await?;
            let result = admin_command(&db, command).await;
            db.close().await?;
            result
        }
    }
}

/// Admin commands need one connection and no long statements.
fn admin_db_config() -> DbConfig {
    DbConfig {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(10),
        ..DbConfig::default()
    }
}

async fn admin_command(db: &Database, command: Command) -> anyhow::Result<()> {
    let pool = &db.pool;
    match command {
        Command::Serve(_) | Command::Healthcheck(_) => {
            unreachable!("serve and healthcheck are dispatched before")
        }
        Command::Migrate => {
            eprintln!("migrations applied");
        }
        Command::Reseller {
            command: ResellerCommand::Create { slug, name },
        } => {
            let r = admin::create_reseller(pool, &slug, name.as_deref()).await?;
            println!("{}", json!({"id": r.id, "slug": r.slug}));
        }
        Command::Org {
            command:
                OrgCommand::Create {
                    slug,
                    name,
                    reseller,
                    timezone,
                },
        } => {
            let o = admin::create_org(
                pool,
                &slug,
                name.as_deref(),
                reseller.as_deref(),
                timezone.as_deref(),
            )
            .await?;
            println!("{}", json!({"id": o.id, "slug": o.slug}));
        }
        Command::Token {
            command: TokenCommand::Issue(args),
        } => {
            let keys = admin::signing_keys(pool).await?;
            let target = match (&args.target.org, &args.target.reseller) {
                (Some(org), _) => TokenFor::Org(org),
                (None, Some(reseller)) => TokenFor::Reseller(reseller),
                (None, None) => anyhow::bail!("one of --org or --reseller is required"),
            };
            let ttl = chrono::Duration::try_days(args.ttl_days)
                .filter(|_| args.ttl_days <= 3650)
                .ok_or_else(|| anyhow::anyhow!("--ttl-days must be between 1 and 3650"))?;
            let issued = admin::issue_token(pool, &keys, target, &args.scopes, ttl).await?;
            println!("{}", issued.token);
        }
        Command::Token {
            command: TokenCommand::Revoke { jti },
        } => {
            let (jti, at) = admin::revoke_token(pool, &jti).await?;
            println!("{}", json!({"jti": jti, "revoked_at": at}));
        }
        Command::Rebuild { org } => {
            let done = admin::rebuild(pool, org.as_deref()).await?;
            println!("{}", serde_json::to_string(&done)?);
        }
    }
    Ok(())
}
