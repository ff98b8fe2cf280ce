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

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;

/// How long a browser may reuse a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS policy of a server.
#[derive(Clone, Debug)]
pub struct Cors {
    layer: CorsLayer,
    origins: Arc<[HeaderValue]>,
    any: bool,
}

impl Cors {
    /// The policy for `origins`, or `None` (no CORS) when the list is empty.
    pub fn new(origins: &[HeaderValue]) -> Option<Cors> {
        if origins.is_empty() {
            return None;
        }
        let any = origins.iter().any(|o| o == "*");
        let allow_origin = if any {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().cloned())
        };
        let layer = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::DELETE,
            ])
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
            .max_age(PREFLIGHT_MAX_AGE);
        Some(Cors {
            layer,
            origins: origins.into(),
            any,
        })
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any
            || self
                .origins
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
    }
}

/// The middleware: requests from an allowed origin go through tower-http's CORS layer (which
/// answers every `OPTIONS` as a preflight); any other request, with another origin or none,
/// bypasses it entirely, so it gets no CORS header and an `OPTIONS` is routed as usual.
pub async fn apply(State(cors): State<Cors>, req: Request, next: Next) -> Response {
    if !req
        .headers()
        .get(header::ORIGIN)
        .is_some_and(|o| cors.allows(o))
    {
        return next.run(req).await;
    }
    let mut next = Some(next);
    let inner = tower::service_fn(move |req: Request| {
        let next = next.take();
        async move {
            Ok::<_, Infallible>(match next {
                Some(next) => next.run(req).await,
                // A one-shot service is called once.
                None => {
                    ApiError::Internal(anyhow::anyhow!("CORS service called twice")).into_response()
                }
            })
        }
    });
    match cors.layer.layer(inner).oneshot(req).await {
        Ok(res) => res.map(Body::new),
        Err(never) => match never {},
    }
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
