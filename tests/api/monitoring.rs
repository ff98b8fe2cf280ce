//! Operations: Prometheus metrics on the admin listener (counted against requests this test
//! makes and counts itself), the `GET /metrics` and unversioned PolyAI aliases on the API port,
//! and CORS.

use std::collections::BTreeMap;
use std::sync::Arc;

use baton::http::HttpConfig;
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::common::fixtures::event;
use crate::common::{TestApp, assert_error};

fn ev(id: &str, kind: &str, fields: Value) -> Value {
    event(id, kind, "2026-10-01T09:00:00Z", fields)
}

/// The samples of a Prometheus text exposition: `(name, labels) -> value`.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').unwrap()),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        out.push((name.to_owned(), labels, value));
    }
    out
}

/// The value of the sample `name` whose labels are exactly `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| v)
}

async fn scrape(app: &TestApp) -> String {
    let res = app
        .client
        .get(format!("{}/metrics", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    res.text().await.unwrap()
}

#[tokio::test]
async fn admin_metrics_count_requests_events_rejections_rate_limits_and_pools() {
    let (pool, _) = crate::common::fresh_database().await;
    let keys = Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
    let config = HttpConfig {
        rate_limit_per_minute: 2,
        ..HttpConfig::default()
    };
    let app = TestApp::spawn_with(pool, keys, config).await;
    let org = app.org("acme", None, None).await;
    let writer = app.writer(&org).await;
    let reader = app.reader(&org).await;

    let batch = vec![
        ev(
            "e1",
            "session.started",
            json!({"session_id": "s1", "channel": "web"}),
        ),
        ev(
            "e2",
            "session.started",
            json!({"session_id": "s2", "channel": "phone_voice"}),
        ),
        ev(
            "e3",
            "handoff.initiated",
            json!({"handoff_id": "h1", "session_id": "s1", "reasons": ["ai_implied_handoff"]}),
        ),
        ev(
            "e4",
            "agent.upserted",
            json!({"agent_id": "bot", "name": "Bot", "status": "active"}),
        ),
    ];
    let mut posted_by_type: BTreeMap<String, f64> = BTreeMap::new();
    for e in &batch {
        *posted_by_type
            .entry(e["type"].as_str().unwrap().to_owned())
            .or_default() += 1.0;
    }
    let mut events_answers: BTreeMap<u16, f64> = BTreeMap::new();
    let res = app.post_events(&writer, &batch).await;
    *events_answers.entry(res.status().as_u16()).or_default() += 1.0;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // Invalid: an unknown type. Conflict: a stored id with another body.
    let res = app
        .post_events(&writer, &[ev("bad", "session.exploded", json!({}))])
        .await;
    *events_answers.entry(res.status().as_u16()).or_default() += 1.0;
    assert_eq!(res.status(), 400);
    let res = app
        .post_events(
            &writer,
            &[ev(
                "e1",
                "session.started",
                json!({"session_id": "other", "channel": "web"}),
            )],
        )
        .await;
    *events_answers.entry(res.status().as_u16()).or_default() += 1.0;
    assert_eq!(res.status(), 409);

    // Two reads within the limit of 2, then a 429; raw paths differ, the template is one.
    let mut record_answers: BTreeMap<u16, f64> = BTreeMap::new();
    for path in ["/v1/handoffs/h1", "/v1/handoffs/nope", "/v1/handoffs/h1"] {
        let res = app.get(path, &reader).await;
        *record_answers.entry(res.status().as_u16()).or_default() += 1.0;
    }
    assert_eq!(
        record_answers,
        BTreeMap::from([(200, 1.0), (404, 1.0), (429, 1.0)])
    );
    let res = app
        .client
        .get(app.url("/no/such/path"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let text = scrape(&app).await;
    for (status, n) in &events_answers {
        let status = status.to_string();
        let labels = [
            ("method", "POST"),
            ("route", "/v1/events"),
            ("status", status.as_str()),
        ];
        assert_eq!(
            sample(&text, "baton_http_requests_total", &labels),
            Some(*n),
            "{status}\n{text}"
        );
        assert_eq!(
            sample(&text, "baton_http_request_duration_seconds_count", &labels),
            Some(*n)
        );
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        assert_eq!(
            sample(&text, "baton_http_request_duration_seconds_bucket", &inf),
            Some(*n)
        );
        let sum = sample(&text, "baton_http_request_duration_seconds_sum", &labels).unwrap();
        assert!(sum > 0.0 && sum < 30.0, "{sum}");
    }
    for (status, n) in &record_answers {
        let status = status.to_string();
        let labels = [
            ("method", "GET"),
            ("route", "/v1/handoffs/{handoff_id}"),
            ("status", status.as_str()),
        ];
        assert_eq!(
            sample(&text, "baton_http_requests_total", &labels),
            Some(*n),
            "{status}\n{text}"
        );
    }
    assert_eq!(
        sample(
            &text,
            "baton_http_requests_total",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0)
    );
    // Never the raw path: bounded cardinality.
    assert!(
        !text.contains("/v1/handoffs/h1") && !text.contains("nope") && !text.contains("/no/such")
    );

    for (kind, n) in &posted_by_type {
        assert_eq!(
            sample(&text, "baton_events_ingested_total", &[("type", kind)]),
            Some(*n),
            "{kind}"
        );
    }
    let ingested: f64 = samples(&text)
        .iter()
        .filter(|(name, _, _)| name == "baton_events_ingested_total")
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(ingested, batch.len() as f64);
    assert_eq!(
        sample(&text, "baton_events_duplicates_total", &[]),
        Some(0.0)
    );
    for reason in ["invalid", "conflict"] {
        assert_eq!(
            sample(
                &text,
                "baton_ingest_batches_rejected_total",
                &[("reason", reason)]
            ),
            Some(1.0),
            "{reason}"
        );
    }
    assert_eq!(
        sample(&text, "baton_rate_limited_requests_total", &[]),
        Some(1.0)
    );
    for pool in ["main", "metrics"] {
        for state in ["in_use", "idle"] {
            let v = sample(
                &text,
                "baton_db_pool_connections",
                &[("pool", pool), ("state", state)],
            );
            assert!(v.is_some_and(|v| v >= 0.0), "{pool} {state}\n{text}");
        }
    }
    // The main pool has served the requests above, so it holds at least one connection.
    let main: f64 = ["in_use", "idle"]
        .iter()
        .map(|s| {
            sample(
                &text,
                "baton_db_pool_connections",
                &[("pool", "main"), ("state", s)],
            )
            .unwrap()
        })
        .sum();
    assert!(main >= 1.0, "{text}");
    assert_eq!(sample(&text, "baton_database_up", &[]), Some(1.0));

    // Scrapes are not counted, and the admin listener has its probes but no API.
    let again = scrape(&app).await;
    assert!(!again.contains("route=\"/metrics\""));
    let res = app
        .client
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(format!("{}/healthz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(format!("{}/v1/me", app.admin))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "no route").await;
}

#[tokio::test]
async fn a_retried_batch_counts_again_with_its_duplicates() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let writer = app.writer(&org).await;
    let batch = [ev(
        "e1",
        "agent.upserted",
        json!({"agent_id": "bot", "name": "Bot", "status": "active"}),
    )];
    for _ in 0..2 {
        assert_eq!(app.post_events(&writer, &batch).await.status(), 200);
    }
    let text = scrape(&app).await;
    // A retried batch counts again as ingested, and its event as a duplicate.
    assert_eq!(
        sample(
            &text,
            "baton_events_ingested_total",
            &[("type", "agent.upserted")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "baton_events_duplicates_total", &[]),
        Some(1.0)
    );
}

#[tokio::test]
async fn get_metrics_on_the_api_port_is_telzinos_metrics() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let writer = app.writer(&org).await;
    let reader = app.reader(&org).await;
    let calls: Vec<Value> = (0..3)
        .map(|i| {
            ev(
                &format!("c{i}"),
                "call.completed",
                json!({"call_id": format!("c{i}"), "agent_id": "bot",
                       "started_at": format!("2026-10-01T0{i}:10:00Z"), "duration_seconds": 60 + i,
                       "outcome": "resolved"}),
            )
        })
        .collect();
    assert_eq!(app.post_events(&writer, &calls).await.status(), 200);
    let query = "startDate=2026-10-01T00:00:00.000Z&endDate=2026-10-02T00:00:00.000Z";
    let versioned = app.get(&format!("/v1/metrics?{query}"), &reader).await;
    assert_eq!(versioned.status(), 200);
    let versioned: Value = versioned.json().await.unwrap();
    assert_eq!(versioned["data"]["metrics"]["totalCalls"], 3, "{versioned}");
    let alias = app.get(&format!("/metrics?{query}"), &reader).await;
    assert_eq!(alias.status(), 200);
    assert!(
        alias.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(alias.json::<Value>().await.unwrap(), versioned);
    // The same auth and the same parameter checks.
    let res = app
        .client
        .get(app.url(&format!("/metrics?{query}")))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "").await;
    assert_error(
        app.get("/metrics?endDate=2026-10-02", &reader).await,
        400,
        "startDate",
    )
    .await;
}

#[tokio::test]
async fn polyai_unversioned_path_answers_like_the_versioned_one() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let writer = app.writer(&org).await;
    let reader = app.reader(&org).await;
    let events = [
        ev(
            "e1",
            "session.started",
            json!({"session_id": "s1", "channel": "phone_voice", "agent_id": "support-bot"}),
        ),
        ev(
            "e2",
            "handoff.initiated",
            json!({"handoff_id": "h1", "session_id": "s1", "shared_id": "acme-1",
                   "reasons": ["ai_implied_handoff"], "data": {"customer_id": "12345"}}),
        ),
        // A handoff whose id is the alias's last segment: `/v1/handoffs/handoff_state` stays
        // the handoff record route.
        ev(
            "e3",
            "handoff.initiated",
            json!({"handoff_id": "handoff_state", "session_id": "s1", "reasons": ["ai_implied_handoff"]}),
        ),
    ];
    let res = app.post_events(&writer, &events).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    for query in [
        "id=h1",
        "shared_id=acme-1",
        "id=unknown",
        "",
        "id=h1&bogus=1",
    ] {
        let versioned = app
            .get(
                &format!("/v1/acme/support-bot/handoff_state?{query}"),
                &reader,
            )
            .await;
        let alias = app
            .get(&format!("/acme/support-bot/handoff_state?{query}"), &reader)
            .await;
        assert_eq!(alias.status(), versioned.status(), "{query}");
        assert_eq!(
            alias.json::<Value>().await.unwrap(),
            versioned.json::<Value>().await.unwrap(),
            "{query}"
        );
    }
    let res = app
        .get("/acme/support-bot/handoff_state?id=h1", &reader)
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"id": "h1", "shared_id": "acme-1", "data": {"customer_id": "12345"}})
    );
    // The same auth: an x-api-key works, no token is a 401.
    let res = app
        .client
        .get(app.url("/acme/support-bot/handoff_state?id=h1"))
        .header("x-api-key", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(app.url("/acme/support-bot/handoff_state?id=h1"))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "").await;
    let record = app.get("/v1/handoffs/handoff_state", &reader).await;
    assert_eq!(record.status(), 200);
    let record: Value = record.json().await.unwrap();
    assert_eq!(record["handoff_id"], "handoff_state", "{record}");
}

const ALLOWED: &str = "https://dash.example.com";

async fn cors_app(origins: &[&str]) -> TestApp {
    let (pool, _) = crate::common::fresh_database().await;
    let keys = Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
    let config = HttpConfig {
        cors_allow_origins: origins
            .iter()
            .map(|o| baton::http::cors::parse_origin(o).unwrap())
            .collect(),
        ..HttpConfig::default()
    };
    TestApp::spawn_with(pool, keys, config).await
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(
            Method::OPTIONS,
            app.url("/v1/api/human_handoff/configuration"),
        )
        .header("origin", origin)
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "authorization, content-type, if-match",
        )
        .send()
        .await
        .unwrap()
}

async fn read_from(app: &TestApp, origin: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/me"))
        .header("origin", origin)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn cors_headers(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

fn list(res: &reqwest::Response, name: &str) -> Vec<String> {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn cors_answers_preflights_and_exposes_headers_to_allowed_origins_only() {
    let app = cors_app(&[ALLOWED, "http://localhost:3000"]).await;
    let org = app.org("acme", None, None).await;
    let token = app.reader(&org).await;

    let res = preflight(&app, ALLOWED).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        HeaderValue::from_static(ALLOWED)
    );
    let methods = list(&res, "access-control-allow-methods");
    for m in ["get", "post", "put", "delete"] {
        assert!(methods.contains(&m.to_owned()), "{methods:?}");
    }
    let headers = list(&res, "access-control-allow-headers");
    for h in ["authorization", "content-type", "if-match", "x-api-key"] {
        assert!(headers.contains(&h.to_owned()), "{headers:?}");
    }
    assert_eq!(res.headers()["access-control-max-age"], "600");
    assert!(
        res.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );

    let res = read_from(&app, ALLOWED, &token).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], ALLOWED);
    let exposed = list(&res, "access-control-expose-headers");
    for h in [
        "etag",
        "x-request-id",
        "retry-after",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
    ] {
        assert!(exposed.contains(&h.to_owned()), "{h} in {exposed:?}");
    }
    // The exposed rate-limit headers are there to read.
    assert!(res.headers().get("ratelimit-remaining").is_some());
    // Errors too are readable by the allowed page.
    let res = app
        .client
        .get(app.url("/v1/me"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_error(res, 401, "").await;

    // Another origin: served as without CORS, no Access-Control-* header at all.
    for origin in [
        "https://evil.example.com",
        "https://dash.example.com.evil.io",
    ] {
        let res = preflight(&app, origin).await;
        assert!(cors_headers(&res).is_empty(), "{:?}", res.headers());
        let res = read_from(&app, origin, &token).await;
        assert_eq!(res.status(), 200);
        assert!(cors_headers(&res).is_empty(), "{:?}", res.headers());
    }
}

#[tokio::test]
async fn without_allowed_origins_there_are_no_cors_headers() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.reader(&org).await;
    let res = preflight(&app, ALLOWED).await;
    assert!(cors_headers(&res).is_empty(), "{:?}", res.headers());
    assert_ne!(res.status(), 200);
    let res = read_from(&app, ALLOWED, &token).await;
    assert_eq!(res.status(), 200);
    assert!(cors_headers(&res).is_empty(), "{:?}", res.headers());
}
