//! The dashboard's files (`GET /`, `GET /assets/…`): embedded, typed, cacheable, under a strict
//! Content-Security-Policy, outside the OpenAPI document and the rate limit. The page itself is
//! driven in a real browser by `tests/dashboard.rs`.

use std::path::Path;

use baton::http::HttpConfig;
use baton::http::dashboard::{CONTENT_SECURITY_POLICY, embedded_paths};

use crate::common::TestApp;

/// Every file under `dir`, relative to `root`, with `/` separators.
fn files_under(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap().to_str().unwrap();
            out.push(rel.replace('\\', "/"));
        }
    }
}

#[test]
fn every_file_of_the_dashboard_folder_is_embedded() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard");
    let mut on_disk = Vec::new();
    files_under(&root, &root, &mut on_disk);
    on_disk.sort();
    let mut embedded: Vec<String> = embedded_paths().map(str::to_owned).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded);
    // The charting library comes with its licence.
    assert!(embedded.contains(&"vendor/uplot/LICENSE".to_owned()));
}

/// The content type each file must have, by extension (written out here, not taken from the
/// code under test).
fn expected_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    }
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_typed_cacheable_and_under_a_strict_policy() {
    // A limit of one read a minute: the page and its files must not count against it.
    let config = HttpConfig {
        rate_limit_per_minute: 1,
        ..HttpConfig::default()
    };
    let (pool, _) = crate::common::fresh_database().await;
    let keys = std::sync::Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
    let app = TestApp::spawn_with(pool, keys, config).await;

    let res = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
    let csp = CONTENT_SECURITY_POLICY;
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self';"));
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-cache");
    let html = res.text().await.unwrap();
    // No inline script or style: everything the policy allows comes from /assets.
    assert!(html.contains(r#"<script type="module" src="/assets/js/app.js"></script>"#));
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(
        !html.contains("style=") && !html.contains("<style"),
        "{html}"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no outside resource"
    );

    for path in embedded_paths() {
        for _ in 0..2 {
            let res = app
                .client
                .get(app.url(&format!("/assets/{path}")))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{path}");
            assert_eq!(res.headers()["content-type"], expected_type(path), "{path}");
            assert_eq!(
                res.headers()["content-security-policy"],
                CONTENT_SECURITY_POLICY
            );
            let etag = res.headers()["etag"].to_str().unwrap().to_owned();
            assert!(etag.starts_with("W/\""), "{etag}");
            let body = res.bytes().await.unwrap();
            let on_disk = std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("dashboard")
                    .join(path),
            )
            .unwrap();
            assert_eq!(body.as_ref(), on_disk.as_slice(), "{path}");
            // Revalidation: the same tag is a 304 without a body, another tag the file.
            let res = app
                .client
                .get(app.url(&format!("/assets/{path}")))
                .header("if-none-match", format!("\"other\", {etag}"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 304, "{path}");
            assert_eq!(res.headers()["etag"], etag.as_str());
            assert!(res.bytes().await.unwrap().is_empty());
            let res = app
                .client
                .get(app.url(&format!("/assets/{path}")))
                .header("if-none-match", "W/\"other\"")
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{path}");
        }
    }
    // No module script reaches outside this server.
    for path in embedded_paths().filter(|p| p.ends_with(".js") && !p.starts_with("vendor/")) {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("dashboard")
                .join(path),
        )
        .unwrap();
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path} names an outside address"
        );
    }

    // A file that is not there is the usual JSON 404; a path outside the folder too.
    for path in ["/assets/nope.js", "/assets/../Cargo.toml", "/assets/js/"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
    }
}

#[test]
fn the_dashboard_routes_are_not_api_operations() {
    let doc = baton::http::openapi();
    let paths: Vec<&String> = doc.paths.paths.keys().collect();
    assert!(
        paths.iter().all(|p| *p != "/" && !p.starts_with("/assets")),
        "{paths:?}"
    );
}
