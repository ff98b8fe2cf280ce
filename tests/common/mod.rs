//! The test harness: a real PostgreSQL for every test binary, a fresh database for every test,
//! and a real HTTP listener on a free port driving the real router.
//!
//! With `DATABASE_URL` set, its server is used (databases are created on it). Without it, the
//! harness starts a throwaway cluster under a temp dir with Baton's own embedded-PostgreSQL code
//! and a watchdog that stops and removes it when the test process exits.
#![allow(dead_code)]

pub mod fixtures;
pub mod replica;

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use axum::extract::FromRequestParts;
use baton::admin;
use baton::auth::extract::WriteAccess;
use baton::auth::{Keys, OrgId, Scope, Subject};
use baton::db::{DbConfig, embedded_options, migrate, pool_options, with_session_settings};
use baton::http::{AppState, HttpConfig};
use baton::pg::{Cluster, ClusterOptions};
use baton::store::agent_cache::AgentCache;
use baton::store::tenants::{Organization, Reseller};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

struct Shared {
    /// Connects to the server's maintenance database.
    admin: PgConnectOptions,
    /// A database with every migration applied, copied for each test.
    template: String,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        // Set up on a thread of its own: the caller may be inside a test's runtime.
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(init_shared())
        })
        .join()
        .expect("harness setup panicked")
    })
}

async fn init_shared() -> Shared {
    let admin = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            PgConnectOptions::from_str(&url).expect("DATABASE_URL is a PostgreSQL URL")
        }
        _ => {
            let dir = tempfile::Builder::new()
                .prefix("baton-test-pg-")
                .tempdir()
                .expect("temp dir")
                .keep();
            let cluster = Cluster::ensure_running(
                &dir,
                ClusterOptions {
                    ephemeral: true,
                    ..Default::default()
                },
            )
            .expect("start the throwaway PostgreSQL cluster");
            cluster
                .stop_when_process_exits(std::process::id(), true)
                .expect("watchdog");
            embedded_options(&cluster, "postgres")
        }
    };
    let template = format!("baton_tmpl_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .expect("connect to test server");
    sqlx::query(&format!("create database {template}"))
        .execute(&mut conn)
        .await
        .expect("create template database");
    conn.close().await.ok();
    let mut tmpl = PgConnection::connect_with(&admin.clone().database(&template))
        .await
        .expect("connect to template");
    migrate(&mut tmpl).await.expect("migrate template");
    tmpl.close().await.ok();
    Shared { admin, template }
}

/// Connect options of the test server's maintenance database (the throwaway cluster's, or
/// `DATABASE_URL`'s).
pub fn server_admin() -> PgConnectOptions {
    shared().admin.clone()
}

/// A fresh, migrated database of its own.
pub async fn fresh_database() -> (PgPool, PgConnectOptions) {
    let shared = shared();
    let name = format!("baton_t_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::connect_with(&shared.admin)
        .await
        .expect("connect to test server");
    // Copying a template fails while another session is connected to it; setup sessions are
    // short, so retry briefly.
    let mut attempt = 0;
    loop {
        match sqlx::query(&format!(
            "create database {name} template {}",
            shared.template
        ))
        .execute(&mut conn)
        .await
        {
            Ok(_) => break,
            Err(e) if attempt < 50 => {
                attempt += 1;
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("create test database: {e}"),
        }
    }
    conn.close().await.ok();
    let config = DbConfig::default();
    let options = with_session_settings(shared.admin.clone().database(&name), &config);
    let pool = pool_options(&DbConfig {
        max_connections: 8,
        ..config
    })
    .connect_with(options.clone())
    .await
    .expect("connect to test database");
    (pool, options)
}

/// A fresh, migrated database with Baton's signing keys, for tests that call the library (the
/// store, the auth extractors) without a server.
pub struct TestDb {
    /// A pool on the database.
    pub pool: PgPool,
    /// The signing keys stored in it.
    pub keys: Arc<Keys>,
}

impl TestDb {
    /// A database of its own.
    pub async fn new() -> TestDb {
        let (pool, _) = fresh_database().await;
        let keys = Arc::new(admin::signing_keys(&pool).await.expect("keys"));
        TestDb { pool, keys }
    }

    /// Creates an organization (time zone UTC unless given), and its [`OrgId`] as a request
    /// gets one: an issued token through the auth extractor (the only way to make one).
    pub async fn org(
        &self,
        slug: &str,
        reseller: Option<&str>,
        timezone: Option<&str>,
    ) -> (Organization, OrgId) {
        let org = admin::create_org(&self.pool, slug, None, reseller, timezone)
            .await
            .expect("create org");
        let token = admin::issue_token_for(
            &self.pool,
            &self.keys,
            Subject::Org(org.id),
            &[Scope::WriteAll],
            chrono::Duration::days(1),
        )
        .await
        .expect("issue token")
        .token;
        let state = AppState::new(self.pool.clone(), self.keys.clone());
        let (mut parts, ()) = axum::http::Request::builder()
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .expect("request")
            .into_parts();
        let access = WriteAccess::from_request_parts(&mut parts, &state)
            .await
            .expect("the token is accepted");
        (org, access.org)
    }

    /// Creates a reseller.
    pub async fn reseller(&self, slug: &str) -> Reseller {
        admin::create_reseller(&self.pool, slug, None)
            .await
            .expect("create reseller")
    }
}

/// A running Baton on a fresh database.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `http://127.0.0.1:PORT` of the admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub admin: String,
    /// An HTTP client.
    pub client: reqwest::Client,
    /// The app's pool (for fixtures and for checking what was stored).
    pub pool: PgPool,
    /// The app's signing keys.
    pub keys: Arc<Keys>,
    /// The app's `/v1/metrics` agent cache.
    pub metrics_cache: Arc<AgentCache>,
}

impl TestApp {
    /// Starts Baton on a fresh database.
    pub async fn spawn() -> TestApp {
        let TestDb { pool, keys } = TestDb::new().await;
        Self::spawn_with(pool, keys, HttpConfig::default()).await
    }

    /// Starts Baton on a given pool (possibly one whose database is unreachable).
    pub async fn spawn_with(pool: PgPool, keys: Arc<Keys>, config: HttpConfig) -> TestApp {
        Self::spawn_with_state(AppState::new(pool, keys), config).await
    }

    /// Starts Baton on a state built by the test (say, with a short token memory).
    pub async fn spawn_with_state(state: AppState, config: HttpConfig) -> TestApp {
        let pool = state.pool.clone();
        let keys = state.keys.clone();
        let metrics_cache = state.metrics_cache.clone();
        let admin_app = baton::monitoring::admin_router(state.clone());
        let app = baton::http::router(state, &config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // The serving loop of `baton serve`, with its default limits.
        let server = baton::listener::HttpListener::new(listener, Default::default());
        tokio::spawn(server.serve(app, std::future::pending()));
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin_addr = admin.local_addr().expect("addr");
        let admin_server = baton::listener::HttpListener::new(admin, Default::default());
        tokio::spawn(admin_server.serve(admin_app, std::future::pending()));
        TestApp {
            base: format!("http://{addr}"),
            admin: format!("http://{admin_addr}"),
            client: reqwest::Client::new(),
            pool,
            keys,
            metrics_cache,
        }
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates an organization (time zone UTC unless given).
    pub async fn org(
        &self,
        slug: &str,
        reseller: Option<&str>,
        timezone: Option<&str>,
    ) -> Organization {
        admin::create_org(&self.pool, slug, None, reseller, timezone)
            .await
            .expect("create org")
    }

    /// Creates a reseller.
    pub async fn reseller(&self, slug: &str) -> Reseller {
        admin::create_reseller(&self.pool, slug, None)
            .await
            .expect("create reseller")
    }

    /// Issues a token, as `baton token issue` does.
    pub async fn token(&self, subject: Subject, scopes: &[Scope]) -> String {
        admin::issue_token_for(
            &self.pool,
            &self.keys,
            subject,
            scopes,
            chrono::Duration::days(1),
        )
        .await
        .expect("issue token")
        .token
    }

    /// An org token with `read_all` and `write_all`.
    pub async fn writer(&self, org: &Organization) -> String {
        self.token(Subject::Org(org.id), &[Scope::ReadAll, Scope::WriteAll])
            .await
    }

    /// An org token with `read_all` only.
    pub async fn reader(&self, org: &Organization) -> String {
        self.token(Subject::Org(org.id), &[Scope::ReadAll]).await
    }

    /// `POST /v1/events` with `{"events": events}`.
    pub async fn post_events(
        &self,
        token: &str,
        events: &[serde_json::Value],
    ) -> reqwest::Response {
        self.client
            .post(self.url("/v1/events"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "events": events }))
            .send()
            .await
            .expect("request")
    }

    /// `POST /v1/events` that must succeed; returns `(accepted, duplicates)`, the whole answer.
    pub async fn post_events_ok(&self, token: &str, events: &[serde_json::Value]) -> (u64, u64) {
        let res = self.post_events(token, events).await;
        let status = res.status();
        let body: serde_json::Value = res.json().await.expect("JSON answer");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
        (
            body["accepted"].as_u64().expect("accepted"),
            body["duplicates"].as_u64().expect("duplicates"),
        )
    }

    /// GET with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }
}

/// Asserts an error envelope: status, `statusCode`, reason phrase, and a message containing `needle`.
pub async fn assert_error(res: reqwest::Response, status: u16, needle: &str) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status of {}", res.url());
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type}"
    );
    if status == 401 {
        assert_eq!(
            res.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer")
        );
    }
    let body: serde_json::Value = res.json().await.expect("JSON error body");
    assert_eq!(body["statusCode"], status, "{body}");
    let reason = reqwest::StatusCode::from_u16(status)
        .unwrap()
        .canonical_reason()
        .unwrap();
    assert_eq!(body["error"], reason, "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains(needle),
        "message {message:?} lacks {needle:?}"
    );
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    for k in &keys {
        assert!(
            ["statusCode", "message", "error", "details"].contains(&k.as_str()),
            "extra key {k}"
        );
    }
    body
}

/// Repeats a request until it answers `status` (revocations reach servers by notification, within
/// milliseconds); gives up after 5 s and returns the last response.
pub async fn eventually_status<F, Fut>(mut send: F, status: u16) -> reqwest::Response
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let res = send().await;
        if res.status().as_u16() == status || std::time::Instant::now() > deadline {
            return res;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
