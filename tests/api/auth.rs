//! The auth matrix, against `GET /v1/me`: token verification, the issued record, and the per-token
//! read rate limit.

use baton::auth::revocation::TokenVerdicts;
use baton::auth::{AUDIENCE, Claims, ISSUER, Keys, Scope, Subject};
use baton::http::{AppState, HttpConfig};
use chrono::{Duration, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::{TestApp, assert_error};

/// Signs arbitrary claims with the app's own secret and algorithm (recorded or not).
fn sign_raw(claims: &Value, alg: Algorithm, secret: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

async fn stored_secret(app: &TestApp) -> Vec<u8> {
    sqlx::query_scalar("select value from server_secrets where name = 'jwt_hs256'")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The claims of a token issued for `subject`, as recorded in api_tokens, so only the tampered
/// part is wrong. Built from the stored row, not from the token.
async fn issued_claims(app: &TestApp, subject: Subject, scopes: &[Scope]) -> Value {
    let token = app.token(subject, scopes).await;
    let jti = baton::auth::unverified_jti(&token).unwrap();
    let (org, reseller, scopes, iat, exp): (
        Option<uuid::Uuid>,
        Option<uuid::Uuid>,
        Vec<String>,
        i64,
        i64,
    ) = sqlx::query_as(
        "select org_id, reseller_id, scopes, extract(epoch from issued_at)::bigint,
                extract(epoch from expires_at)::bigint
         from api_tokens where jti = $1",
    )
    .bind(jti)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "iat": iat, "exp": exp, "jti": jti,
                            "scopes": scopes});
    match (org, reseller) {
        (Some(org), None) => {
            claims["sub"] = json!(format!("org:{org}"));
            claims["org"] = json!(org);
        }
        (None, Some(reseller)) => {
            claims["sub"] = json!(format!("reseller:{reseller}"));
            claims["reseller"] = json!(reseller);
        }
        other => panic!("a token row names one tenant: {other:?}"),
    }
    claims
}

/// Valid claims of a `read_all` token for `org`, recorded in api_tokens.
async fn recorded_claims(app: &TestApp, org: uuid::Uuid) -> Value {
    issued_claims(app, Subject::Org(org), &[Scope::ReadAll]).await
}

#[tokio::test]
async fn valid_token_as_bearer_or_api_key() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.reader(&org).await;
    let res = app.get("/v1/me", &token).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["kind"], "organization");
    assert_eq!(body["organizations"][0]["id"], org.id.to_string());
    assert_eq!(body["organizations"][0]["slug"], "acme");
    assert_eq!(body["scopes"], json!(["read_all"]));

    let res = app
        .client
        .get(app.url("/v1/me"))
        .header("x-api-key", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The scheme is case-insensitive (RFC 7235).
    let res = app
        .client
        .get(app.url("/v1/me"))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn missing_and_malformed_tokens_are_401() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/v1/me")).send().await.unwrap();
    assert_error(res, 401, "missing token").await;
    let res = app.get("/v1/me", "not-a-jwt").await;
    assert_error(res, 401, "malformed").await;
    let res = app
        .client
        .get(app.url("/v1/me"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "Bearer scheme").await;
    let res = app
        .client
        .get(app.url("/v1/me"))
        .header("authorization", "Bearer")
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "Bearer <token>").await;
}

#[tokio::test]
async fn bad_signature_is_401() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let claims = recorded_claims(&app, org.id).await;
    let token = sign_raw(
        &claims,
        Algorithm::HS256,
        b"some-other-secret-some-other-secret",
    );
    assert_error(app.get("/v1/me", &token).await, 401, "signature").await;
    // A token signed by another Baton (its own Keys) is refused the same way.
    let other = Keys::new(b"yet-another-baton-secret-32-bytes!!");
    let now = Utc::now();
    let foreign = other.sign(&Claims::new(
        Subject::Org(org.id),
        vec![Scope::ReadAll],
        now,
        now + Duration::hours(1),
    ));
    assert_error(app.get("/v1/me", &foreign).await, 401, "signature").await;
}

#[tokio::test]
async fn expired_token_is_401() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let mut claims = recorded_claims(&app, org.id).await;
    claims["exp"] = json!(Utc::now().timestamp() - 10);
    let token = sign_raw(&claims, Algorithm::HS256, &stored_secret(&app).await);
    assert_error(app.get("/v1/me", &token).await, 401, "expired").await;
}

#[tokio::test]
async fn wrong_or_missing_audience_and_issuer_are_401() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let secret = stored_secret(&app).await;
    let base = recorded_claims(&app, org.id).await;

    let mut c = base.clone();
    c["aud"] = json!("someone-else");
    assert_error(
        app.get("/v1/me", &sign_raw(&c, Algorithm::HS256, &secret))
            .await,
        401,
        "audience",
    )
    .await;
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("aud");
    assert_error(
        app.get("/v1/me", &sign_raw(&c, Algorithm::HS256, &secret))
            .await,
        401,
        "audience",
    )
    .await;
    let mut c = base.clone();
    c["iss"] = json!("evil");
    assert_error(
        app.get("/v1/me", &sign_raw(&c, Algorithm::HS256, &secret))
            .await,
        401,
        "issuer",
    )
    .await;
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("iss");
    assert_error(
        app.get("/v1/me", &sign_raw(&c, Algorithm::HS256, &secret))
            .await,
        401,
        "issuer",
    )
    .await;
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("exp");
    assert_error(
        app.get("/v1/me", &sign_raw(&c, Algorithm::HS256, &secret))
            .await,
        401,
        "exp",
    )
    .await;
    // The untampered claims pass, so each refusal above was for the tampered claim.
    assert_eq!(
        app.get("/v1/me", &sign_raw(&base, Algorithm::HS256, &secret))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn other_algorithms_and_alg_none_are_401() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let secret = stored_secret(&app).await;
    let claims = recorded_claims(&app, org.id).await;
    let hs512 = sign_raw(&claims, Algorithm::HS512, &secret);
    assert_error(app.get("/v1/me", &hs512).await, 401, "algorithm").await;

    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64.encode(serde_json::to_vec(&claims).unwrap());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert_error(app.get("/v1/me", &token).await, 401, "").await;
    }
}

#[tokio::test]
async fn revoked_and_unknown_tokens_are_401() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.reader(&org).await;
    assert_eq!(app.get("/v1/me", &token).await.status(), 200);
    // Let the server's revocation listener connect, then have it remember the token as valid,
    // so that the refusal below proves the revocation notice reached the remembered verdict.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.get("/v1/me", &token).await.status(), 200);
    assert_eq!(app.get("/v1/me", &token).await.status(), 200);
    let jti = baton::auth::unverified_jti(&token).unwrap();
    baton::admin::revoke_token(&app.pool, &jti.to_string())
        .await
        .unwrap();
    let res = crate::common::eventually_status(|| app.get("/v1/me", &token), 401).await;
    assert_error(res, 401, "revoked").await;

    // Correctly signed, but never issued (not in api_tokens): refused.
    let now = Utc::now();
    let stray = app.keys.sign(&Claims::new(
        Subject::Org(org.id),
        vec![Scope::ReadAll],
        now,
        now + Duration::hours(1),
    ));
    assert_error(app.get("/v1/me", &stray).await, 401, "unknown token").await;
}

#[tokio::test]
async fn token_naming_both_or_neither_tenant_is_401() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("resell").await;
    let org = app.org("acme", Some("resell"), None).await;
    let secret = stored_secret(&app).await;
    let mut c = recorded_claims(&app, org.id).await;
    c["reseller"] = json!(reseller.id);
    assert_error(
        app.get("/v1/me", &sign_raw(&c, Algorithm::HS256, &secret))
            .await,
        401,
        "exactly one",
    )
    .await;
    c.as_object_mut().unwrap().remove("reseller");
    c.as_object_mut().unwrap().remove("org");
    assert_error(
        app.get("/v1/me", &sign_raw(&c, Algorithm::HS256, &secret))
            .await,
        401,
        "exactly one",
    )
    .await;
}

#[tokio::test]
async fn reseller_token_sees_its_organizations_only() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("resell").await;
    let mine_a = app.org("mine-a", Some("resell"), None).await;
    let mine_b = app
        .org("mine-b", Some("resell"), Some("Asia/Kolkata"))
        .await;
    app.reseller("other-resell").await;
    app.org("theirs", Some("other-resell"), None).await;
    app.org("solo", None, None).await;
    let token = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    let body: Value = app.get("/v1/me", &token).await.json().await.unwrap();
    assert_eq!(body["kind"], "reseller");
    assert_eq!(body["reseller_id"], reseller.id.to_string());
    let ids: Vec<&str> = body["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    let want = [mine_a.id.to_string(), mine_b.id.to_string()];
    assert_eq!(ids, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(body["organizations"][1]["timezone"], "Asia/Kolkata");
}

#[tokio::test]
async fn write_only_scope_implies_read() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.token(Subject::Org(org.id), &[Scope::WriteAll]).await;
    assert_eq!(app.get("/v1/me", &token).await.status(), 200);
}

/// What the 401 for a re-signed token says, whatever was changed: no hint of the record.
const MISMATCH: &str = "token does not match what was issued";

async fn assert_mismatch(app: &TestApp, claims: &Value, secret: &[u8]) {
    let token = sign_raw(claims, Algorithm::HS256, secret);
    let body = assert_error(app.get("/v1/me", &token).await, 401, MISMATCH).await;
    assert_eq!(body["message"], MISMATCH, "{claims}");
}

#[tokio::test]
async fn claims_re_signed_under_an_issued_jti_are_401() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("resell").await;
    let other_reseller = app.reseller("other-resell").await;
    let org = app.org("acme", Some("resell"), None).await;
    let other_org = app.org("globex", None, None).await;
    let secret = stored_secret(&app).await;
    let base = recorded_claims(&app, org.id).await;
    // The claims as issued pass, so each refusal below is for what was changed.
    assert_eq!(
        app.get("/v1/me", &sign_raw(&base, Algorithm::HS256, &secret))
            .await
            .status(),
        200
    );

    // Another organization (with a consistent `sub`, as a careful forger would write it).
    let mut c = base.clone();
    c["org"] = json!(other_org.id);
    c["sub"] = json!(format!("org:{}", other_org.id));
    assert_mismatch(&app, &c, &secret).await;
    // The right organization, but a `sub` naming another.
    let mut c = base.clone();
    c["sub"] = json!(format!("org:{}", other_org.id));
    assert_mismatch(&app, &c, &secret).await;
    // More scopes than issued.
    let mut c = base.clone();
    c["scopes"] = json!(["read_all", "write_all"]);
    assert_mismatch(&app, &c, &secret).await;
    let mut c = base.clone();
    c["scopes"] = json!(["write_all"]);
    assert_mismatch(&app, &c, &secret).await;
    // A later expiry, an earlier one (still in the future), another issue time.
    for (claim, delta) in [("exp", 86_400), ("exp", -3_600), ("iat", -1), ("iat", 1)] {
        let mut c = base.clone();
        c[claim] = json!(base[claim].as_i64().unwrap() + delta);
        assert_mismatch(&app, &c, &secret).await;
    }
    // The organization's reseller, claimed by an org token.
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("org");
    c["reseller"] = json!(reseller.id);
    c["sub"] = json!(format!("reseller:{}", reseller.id));
    assert_mismatch(&app, &c, &secret).await;

    // A reseller token claiming another reseller, or one of its organizations.
    let resold = issued_claims(&app, Subject::Reseller(reseller.id), &[Scope::ReadAll]).await;
    assert_eq!(
        app.get("/v1/me", &sign_raw(&resold, Algorithm::HS256, &secret))
            .await
            .status(),
        200
    );
    let mut c = resold.clone();
    c["reseller"] = json!(other_reseller.id);
    c["sub"] = json!(format!("reseller:{}", other_reseller.id));
    assert_mismatch(&app, &c, &secret).await;
    let mut c = resold.clone();
    c.as_object_mut().unwrap().remove("reseller");
    c["org"] = json!(org.id);
    c["sub"] = json!(format!("org:{}", org.id));
    assert_mismatch(&app, &c, &secret).await;
}

#[tokio::test]
async fn nbf_is_honoured_when_present() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let secret = stored_secret(&app).await;
    let base = recorded_claims(&app, org.id).await;
    let now = Utc::now().timestamp();

    let mut c = base.clone();
    c["nbf"] = json!(now + 120);
    let body = assert_error(
        app.get("/v1/me", &sign_raw(&c, Algorithm::HS256, &secret))
            .await,
        401,
        "token is not valid yet",
    )
    .await;
    assert_eq!(body["message"], "token is not valid yet");
    // A past `nbf` on otherwise issued claims is fine.
    c["nbf"] = json!(now - 120);
    assert_eq!(
        app.get("/v1/me", &sign_raw(&c, Algorithm::HS256, &secret))
            .await
            .status(),
        200
    );
}

/// Waits until the app receives revocation notifications (only then does it remember records).
async fn until_listening(verdicts: &TokenVerdicts) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !verdicts.is_listening() {
        assert!(std::time::Instant::now() < deadline, "listener never up");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_row_deleted_or_altered_by_sql_is_refused_within_the_ttl() {
    let (pool, _) = crate::common::fresh_database().await;
    let keys = std::sync::Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
    let ttl = std::time::Duration::from_secs(2);
    let verdicts = TokenVerdicts::with_ttl(ttl);
    let state = AppState::with_token_verdicts(pool, keys, verdicts.clone());
    let app = TestApp::spawn_with_state(state, HttpConfig::default()).await;
    until_listening(&verdicts).await;
    let org = app.org("acme", None, None).await;
    let deleted = app.reader(&org).await;
    let altered = app.writer(&org).await;
    for token in [&deleted, &altered] {
        assert_eq!(app.get("/v1/me", token).await.status(), 200);
    }

    let started = std::time::Instant::now();
    sqlx::query("delete from api_tokens where jti = $1")
        .bind(baton::auth::unverified_jti(&deleted).unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("update api_tokens set scopes = '{read_all}' where jti = $1")
        .bind(baton::auth::unverified_jti(&altered).unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    // Remembered for a while: no notification tells the server of an edit by SQL ...
    assert_eq!(app.get("/v1/me", &deleted).await.status(), 200);
    // ... but within the TTL the database is asked again.
    let res = crate::common::eventually_status(|| app.get("/v1/me", &deleted), 401).await;
    assert_error(res, 401, "unknown token").await;
    let res = crate::common::eventually_status(|| app.get("/v1/me", &altered), 401).await;
    assert_error(res, 401, MISMATCH).await;
    assert!(
        started.elapsed() < ttl + std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// The `RateLimit-*` headers of a response, as numbers (`None` when absent).
fn rate_headers(res: &reqwest::Response) -> [Option<u64>; 3] {
    ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"].map(|name| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().parse().unwrap())
    })
}

#[tokio::test]
async fn reads_are_rate_limited_per_token() {
    const N: u64 = 3;
    // GCRA with a burst of the whole quota: one request comes back every 60/N s.
    const PERIOD: u64 = 60 / N;
    let (pool, _) = crate::common::fresh_database().await;
    let keys = std::sync::Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
    let config = HttpConfig {
        rate_limit_per_minute: N as u32,
        ..HttpConfig::default()
    };
    let app = TestApp::spawn_with(pool, keys, config).await;
    let org = app.org("acme", None, None).await;
    let token = app.reader(&org).await;
    let neighbour = app.reader(&org).await;
    let writer = app.writer(&org).await;

    let mut forged = app.keys.verify(&token).unwrap();
    forged.scopes.push(Scope::WriteAll);
    let forged = app.keys.sign(&forged);
    for k in 1..=N {
        let res = app.get("/v1/me", &token).await;
        assert_eq!(res.status(), 200);
        // After k requests at once: N - k left, whole again after k periods.
        assert_eq!(rate_headers(&res), [Some(N), Some(N - k), Some(k * PERIOD)]);
        // Refused tokens are not counted (nor told about a limit): none, garbage, a token
        // re-signed with this one's jti.
        let res = app.client.get(app.url("/v1/me")).send().await.unwrap();
        assert_eq!(rate_headers(&res), [None, None, None]);
        assert_error(res, 401, "missing token").await;
        let res = app.get("/v1/me", "garbage").await;
        assert_error(res, 401, "malformed").await;
        let res = app.get("/v1/me", &forged).await;
        assert_eq!(rate_headers(&res), [None, None, None]);
        assert_error(res, 401, MISMATCH).await;
    }

    // One more, on any limited endpoint: 429 in the envelope.
    for path in ["/v1/me", "/v1/handoffs"] {
        let res = app.get(path, &token).await;
        assert_eq!(
            rate_headers(&res),
            [Some(N), Some(0), Some(N * PERIOD)],
            "{path}"
        );
        let retry_after: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(retry_after, PERIOD, "{path}");
        assert_error(res, 429, "rate limit of 3 requests per minute").await;
    }

    // Another token of the same organization has its own quota.
    let res = app.get("/v1/me", &neighbour).await;
    assert_eq!(res.status(), 200);
    assert_eq!(rate_headers(&res), [Some(N), Some(N - 1), Some(PERIOD)]);

    // Writes are not counted and carry no rate limit headers.
    for i in 0..=N {
        let res = app
            .client
            .post(app.url("/v1/events"))
            .bearer_auth(&writer)
            .json(
                &json!({"events": [{"id": format!("e{i}"), "type": "session.started",
                "occurred_at": "2026-11-21T09:00:00Z", "session_id": format!("s{i}"),
                "channel": "web"}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(rate_headers(&res), [None, None, None]);
    }
    let res = app.get("/v1/me", &writer).await;
    assert_eq!(rate_headers(&res), [Some(N), Some(N - 1), Some(PERIOD)]);
    // Neither are the probes.
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(rate_headers(&res), [None, None, None]);
}

#[tokio::test]
async fn a_zero_rate_limit_turns_it_off() {
    let (pool, _) = crate::common::fresh_database().await;
    let keys = std::sync::Arc::new(baton::admin::signing_keys(&pool).await.unwrap());
    let config = HttpConfig {
        rate_limit_per_minute: 0,
        ..HttpConfig::default()
    };
    let app = TestApp::spawn_with(pool, keys, config).await;
    let org = app.org("acme", None, None).await;
    let token = app.reader(&org).await;
    for _ in 0..20 {
        let res = app.get("/v1/me", &token).await;
        assert_eq!(res.status(), 200);
        assert_eq!(rate_headers(&res), [None, None, None]);
    }
}
