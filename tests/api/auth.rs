//! The auth matrix (DESIGN §3), against `GET /v1/me`.

use baton::auth::{AUDIENCE, Claims, ISSUER, Keys, Scope, Subject};
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

/// Valid claims for `org`, recorded in api_tokens so only the tampered part is wrong.
async fn recorded_claims(app: &TestApp, org: uuid::Uuid) -> Value {
    let token = app.token(Subject::Org(org), &[Scope::ReadAll]).await;
    let jti = baton::auth::unverified_jti(&token).unwrap();
    let now = Utc::now().timestamp();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": format!("org:{org}"), "iat": now,
           "exp": now + 3600, "jti": jti, "scopes": ["read_all"], "org": org})
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
