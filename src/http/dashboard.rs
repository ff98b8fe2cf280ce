//! The dashboard: `GET /` and `GET /assets/{path}` serve the files of `dashboard/`, embedded in
//! the binary at build time.
//!
//! Policy: the dashboard is a client of the public API like any other. Its files are static (no
//! templating, no token or data in them); the page reads a token from the user and calls the API
//! from the browser. So these routes need no token, are not rate limited, and are not API
//! operations (they are not in `/openapi.json`).
//!
//! The files are listed here one by one with `include_bytes!` rather than through a crate that
//! embeds a folder: there are a dozen, each needs its content type written down anyway, and the
//! bytes are embedded the same way in debug and release builds (no reading from disk in
//! development). A test checks that every file under `dashboard/` is in the list. Each answer
//! carries a weak `ETag` (a SHA-256 of the file, computed once) with `Cache-Control: no-cache`,
//! so a browser revalidates and gets a `304` until the binary changes; and a strict
//! `Content-Security-Policy`: scripts, styles and connections from this origin only, nothing
//! inline, no frames.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The `Content-Security-Policy` of every dashboard file: its own scripts, styles, images and
/// API only (canvas charts need no image source; uPlot sets styles through the DOM, which CSP
/// allows), no inline code, no plugins, not framed, no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

macro_rules! file {
    ($path:literal, $content_type:literal) => {
        (
            $path,
            $content_type,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/", $path)) as &[u8],
        )
    };
}

/// Every file of `dashboard/`: `(path under it, content type, bytes)`.
const FILES: &[(&str, &str, &[u8])] = &[
    file!("index.html", "text/html; charset=utf-8"),
    file!("app.css", "text/css; charset=utf-8"),
    file!("favicon.svg", "image/svg+xml"),
    file!("js/app.js", "text/javascript; charset=utf-8"),
    file!("js/api.js", "text/javascript; charset=utf-8"),
    file!("js/charts.js", "text/javascript; charset=utf-8"),
    file!("js/ui.js", "text/javascript; charset=utf-8"),
    file!("js/views/overview.js", "text/javascript; charset=utf-8"),
    file!("js/views/lifecycle.js", "text/javascript; charset=utf-8"),
    file!("js/views/handoffs.js", "text/javascript; charset=utf-8"),
    file!("js/views/calls.js", "text/javascript; charset=utf-8"),
    file!(
        "js/views/configuration.js",
        "text/javascript; charset=utf-8"
    ),
    file!("js/views/webhooks.js", "text/javascript; charset=utf-8"),
    file!(
        "vendor/uplot/uPlot.esm.js",
        "text/javascript; charset=utf-8"
    ),
    file!("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    file!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
    file!("vendor/uplot/README.md", "text/plain; charset=utf-8"),
];

/// One embedded file with its validator.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    etag: HeaderValue,
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(path, content_type, bytes)| {
            let digest = Sha256::digest(bytes);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            Asset {
                path,
                content_type,
                bytes,
                // Weak: the compression layer may send the same file gzipped or not.
                etag: HeaderValue::from_str(&format!("W/\"{hex}\""))
                    .unwrap_or_else(|e| unreachable!("hex is a valid header value: {e}")),
            }
        })
        .collect()
});

/// The paths of the embedded files, relative to `dashboard/` (for the test that compares them
/// with the folder).
pub fn embedded_paths() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|f| f.0)
}

/// The dashboard's routes: `/` and `/assets/{*path}`.
pub fn router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route("/", get(get_index))
        .route("/assets/{*path}", get(get_asset))
}

async fn get_index(headers: HeaderMap) -> Response {
    serve("index.html", &headers).unwrap_or_else(IntoResponse::into_response)
}

async fn get_asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers).unwrap_or_else(IntoResponse::into_response)
}

fn serve(path: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.path == path)
        .ok_or_else(|| ApiError::NotFound(format!("no dashboard file {path}")))?;
    let common = [
        (header::ETAG, asset.etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if not_modified(headers, &asset.etag) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    Ok((
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.bytes,
    )
        .into_response())
}

/// Whether `If-None-Match` names this version (weak comparison, as RFC 9110 asks for it).
fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag
        .as_bytes()
        .strip_prefix(b"W/")
        .unwrap_or(etag.as_bytes());
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == ours)
}
