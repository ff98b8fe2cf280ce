//! `baton healthcheck`: asks a running server's `GET /readyz` over HTTP/1.1 (hyper's client, the
//! HTTP implementation the server itself uses) and succeeds on a 200. It opens no database and
//! starts no cluster, so a container health check costs one local request.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Largest answer body read (the probe's JSON is a few dozen bytes).
const MAX_BODY: usize = 64 * 1024;

/// Succeeds when `GET /readyz` on `addr` answers 200 within `timeout`; otherwise the error says
/// what happened, in one line.
pub async fn check(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    // A server bound to the unspecified address answers on this host's loopback.
    let addr = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    };
    match tokio::time::timeout(timeout, probe(addr)).await {
        Ok(result) => result,
        Err(_) => bail!(
            "http://{addr}/readyz did not answer within {} s",
            timeout.as_secs_f64()
        ),
    }
}

async fn probe(addr: SocketAddr) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP handshake with {addr}"))?;
    let conn = tokio::spawn(conn);
    let request = Request::get("/readyz")
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, "baton-healthcheck")
        .body(Body::empty())
        .context("build the request")?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET http://{addr}/readyz"))?;
    let status = response.status();
    let body = axum::body::to_bytes(Body::new(response.into_body()), MAX_BODY)
        .await
        .unwrap_or_default();
    conn.abort();
    if status == StatusCode::OK {
        return Ok(());
    }
    // The envelope's message says why (`database unavailable`); any other body is shown as is.
    let why = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().replace('\n', " "));
    bail!("http://{addr}/readyz answered {status}: {why}")
}
