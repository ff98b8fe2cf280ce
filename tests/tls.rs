//! `DATABASE_URL` over TLS, as managed PostgreSQL services require: a real cluster of this test's
//! own with `ssl = on`, a certificate authority and a server certificate made here, and a
//! `pg_hba.conf` that refuses TCP connections without TLS (so a connection that works used TLS).
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use baton::db::{Database, DbConfig, DbTarget, create_database_if_missing, embedded_options};
use baton::pg::{Cluster, ClusterOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};

/// The TLS cluster, started once for the tests of this binary and stopped when it exits.
struct TlsServer {
    port: u16,
    /// The CA that signed the server certificate.
    ca: PathBuf,
    /// Another CA, which signed nothing the server shows.
    wrong_ca: PathBuf,
    _cluster: Cluster,
}

static SERVER: OnceLock<TlsServer> = OnceLock::new();

const DATABASE: &str = "tls";

fn server() -> &'static TlsServer {
    // Set up on a thread of its own: the caller may be inside a test's runtime.
    SERVER.get_or_init(|| std::thread::spawn(start).join().expect("TLS cluster setup"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed CA: its certificate and key.
fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params.self_signed(&key).unwrap(), key)
}

/// Writes `text` to `path` with `mode`, owned as `like` is (the cluster's owner: PostgreSQL
/// refuses a key that another user can read, or that it does not own).
fn write_owned(path: &Path, text: &str, mode: u32, like: &Path) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    let meta = std::fs::metadata(like).unwrap();
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(meta.uid())),
        Some(nix::unistd::Gid::from_raw(meta.gid())),
    )
    .unwrap();
}

fn start() -> TlsServer {
    let dir = tempfile::Builder::new()
        .prefix("baton-tls-pg-")
        .tempdir()
        .unwrap()
        .keep();
    let port = free_port();
    let options = ClusterOptions {
        ephemeral: true,
        tcp_port: Some(port),
    };
    let first = Cluster::ensure_running(&dir, options).unwrap();
    first
        .stop_when_process_exits(std::process::id(), true)
        .unwrap();
    let pgdata = first.pgdata().to_path_buf();

    let (ca, ca_key) = make_ca("Baton test CA");
    let (wrong_ca, _) = make_ca("Some other CA");
    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&server_key, &ca, &ca_key).unwrap();
    write_owned(&pgdata.join("server.crt"), &cert.pem(), 0o644, &pgdata);
    write_owned(
        &pgdata.join("server.key"),
        &server_key.serialize_pem(),
        0o600,
        &pgdata,
    );
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let wrong_ca_path = dir.join("wrong-ca.pem");
    std::fs::write(&wrong_ca_path, wrong_ca.pem()).unwrap();

    // Appended after Baton's include, so these win. 127.0.0.2 is an address the certificate does
    // not name (every 127/8 address is the loopback on Linux).
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(pgdata.join("postgresql.conf"))
        .unwrap();
    writeln!(
        conf,
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nlisten_addresses = '127.0.0.1,127.0.0.2'"
    )
    .unwrap();
    std::fs::write(
        pgdata.join("pg_hba.conf"),
        "local all all trust\n\
         hostssl all all 127.0.0.0/8 trust\n\
         hostnossl all all 127.0.0.0/8 reject\n",
    )
    .unwrap();
    // `listen_addresses` takes a restart.
    first.stop_now().unwrap();
    drop(first);
    let cluster = Cluster::ensure_running(&dir, options).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(create_database_if_missing(
        &embedded_options(&cluster, "postgres"),
        DATABASE,
    ))
    .unwrap();
    TlsServer {
        port,
        ca: ca_path,
        wrong_ca: wrong_ca_path,
        _cluster: cluster,
    }
}

impl TlsServer {
    fn url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://{}@{host}:{}/{DATABASE}?{query}",
            baton::pg::SUPERUSER,
            self.port
        )
    }
}

/// Opens the database as `baton serve` does with this `DATABASE_URL`.
async fn open(url: &str) -> anyhow::Result<Database> {
    Database::open(&DbTarget::Url(url.to_owned()), &DbConfig::default()).await
}

/// Whether the pool's session runs over TLS, as the server sees it.
async fn session_uses_tls(db: &Database) -> bool {
    sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn assert_tls(url: &str) {
    let db = open(url).await.unwrap_or_else(|e| panic!("{url}: {e:#}"));
    assert!(session_uses_tls(&db).await, "{url}");
    db.close().await.unwrap();
}

async fn open_error(url: &str) -> String {
    match open(url).await {
        Ok(_) => panic!("{url} connected"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn sslmode_require_connects_over_tls_and_plain_tcp_is_refused() {
    let s = server();
    assert_tls(&s.url("127.0.0.1", "sslmode=require")).await;
    // `prefer`, the default, uses TLS when the server offers it.
    assert_tls(&s.url("127.0.0.1", "sslmode=prefer")).await;
    // Without TLS the server refuses (the `hostnossl … reject` line): the connections above did
    // use TLS.
    let err = open_error(&s.url("127.0.0.1", "sslmode=disable")).await;
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(err.contains("no encryption"), "{err}");
}

#[tokio::test]
async fn verify_full_checks_the_authority_and_the_host_name() {
    let s = server();
    let ca = s.ca.display();
    // The certificate names both `localhost` and `127.0.0.1`.
    for host in ["localhost", "127.0.0.1"] {
        assert_tls(&s.url(host, &format!("sslmode=verify-full&sslrootcert={ca}"))).await;
    }
    // A certificate signed by another authority is refused, and the error says why.
    let err = open_error(&s.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", s.wrong_ca.display()),
    ))
    .await;
    assert!(err.contains("127.0.0.1:"), "names the server: {err}");
    assert!(err.contains("sslmode=verify-full"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    // 127.0.0.2 reaches the same server, but the certificate does not name it.
    let err = open_error(&s.url(
        "127.0.0.2",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    assert!(err.contains("not valid for name \"127.0.0.2\""), "{err}");
}

#[tokio::test]
async fn verify_ca_checks_the_authority() {
    let s = server();
    let ca = s.ca.display();
    assert_tls(&s.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"))).await;
    assert_tls(&s.url("localhost", &format!("sslmode=verify-ca&sslrootcert={ca}"))).await;
    // Another authority is refused.
    let err = open_error(&s.url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", s.wrong_ca.display()),
    ))
    .await;
    assert!(err.contains("UnknownIssuer"), "{err}");
    // libpq's verify-ca would accept a host name the certificate does not hold; sqlx 0.8.6 with
    // rustls 0.23.24 or later checks it as verify-full does (sqlx issue #3793, fixed after 0.8.6).
    // Stricter, not weaker; the README says so. When this starts to connect, update the README.
    let err = open_error(&s.url("127.0.0.2", &format!("sslmode=verify-ca&sslrootcert={ca}"))).await;
    assert!(err.contains("not valid for name"), "{err}");
}

#[test]
fn the_command_reports_tls_failures_in_one_line() {
    let s = server();
    let cases = [
        (
            format!("sslmode=verify-full&sslrootcert={}", s.wrong_ca.display()),
            "UnknownIssuer",
        ),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem".to_owned(),
            "cannot read sslrootcert /nonexistent/ca.pem",
        ),
        ("sslmode=disable".to_owned(), "no encryption"),
    ];
    for (query, needle) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("migrate")
            .env("DATABASE_URL", s.url("127.0.0.1", &query))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{query}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{query}: {stderr}");
        assert!(stderr.starts_with("error: "), "{query}: {stderr}");
        assert!(stderr.contains(needle), "{query}: {stderr}");
    }
    // With the right authority the same command works.
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("migrate")
        .env(
            "DATABASE_URL",
            s.url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={}", s.ca.display()),
            ),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
