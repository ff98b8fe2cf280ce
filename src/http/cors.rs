//! CORS for browser clients: `--cors-allow-origin` (`BATON_CORS_ALLOW_ORIGINS`).
//!
//! Policy: off unless origins are configured (no `Access-Control-*` header at all then: the API
//! is for servers and the browsers of the configured dashboards only). With origins, a request
//! from one of them gets `Access-Control-Allow-Origin` set to it (or `*` when `*` is
//! configured), and preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered 200
//! before authentication, for the methods and request headers the API uses; the response headers
//! a client needs are exposed: `ETag` (configuration `If-Match`), `x-request-id`, `Retry-After`
//! and `RateLimit-Limit`/`-Remaining`/`-Reset`. Requests from other origins are served as
//! without CORS, carrying no `Access-Control-*` header, so the browser withholds the answer.
//! Credentials (cookies) are not allowed: Baton authenticates with tokens in headers.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may reuse a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The layer for `origins`, or `None` (no CORS) when the list is empty.
pub fn layer(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().cloned())
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                header::ETAG,
                header::RETRY_AFTER,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("ratelimit-limit"),
                HeaderName::from_static("ratelimit-remaining"),
                HeaderName::from_static("ratelimit-reset"),
            ])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// Parses one configured origin: `*`, or `scheme://host[:port]` exactly as browsers send it in
/// `Origin` (no path, no trailing slash), so that a typo fails at start rather than never
/// matching.
pub fn parse_origin(text: &str) -> Result<HeaderValue, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(HeaderValue::from_static("*"));
    }
    let bad = || {
        format!(
            "`{text}` is not an origin: expected `*` or scheme://host[:port], like https://dashboard.example.com"
        )
    };
    let uri: axum::http::Uri = text.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let path_ok = uri.path_and_query().is_none_or(|p| p.as_str() == "/") && !text.ends_with('/');
    if !scheme_ok || uri.authority().is_none() || !path_ok {
        return Err(bad());
    }
    HeaderValue::from_str(&text.to_ascii_lowercase()).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn origins_are_checked() {
        assert_eq!(
            parse_origin("https://Dash.example.com:8443").unwrap(),
            "https://dash.example.com:8443"
        );
        assert_eq!(parse_origin("*").unwrap(), "*");
        for bad in [
            "dash.example.com",
            "https://dash.example.com/",
            "https://dash.example.com/app",
            "ftp://dash.example.com",
            "",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
