//! `store::tenants` and `store::tokens`.

use baton::store::{tenants, tokens};
use chrono::{Duration, DurationRound, Utc};
use uuid::Uuid;

use crate::common::TestDb;

#[tokio::test]
async fn organizations_and_resellers() {
    let db = TestDb::new().await;
    let channel = tenants::insert_reseller(&db.pool, "channel", "Channel")
        .await
        .unwrap();
    let other = tenants::insert_reseller(&db.pool, "other", "Other")
        .await
        .unwrap();
    let acme = tenants::insert_org(&db.pool, "acme", "Acme", Some(channel.id), "Asia/Kolkata")
        .await
        .unwrap();
    let beta = tenants::insert_org(&db.pool, "beta", "Beta", Some(channel.id), "UTC")
        .await
        .unwrap();
    let solo = tenants::insert_org(&db.pool, "solo", "Solo", None, "UTC")
        .await
        .unwrap();
    assert_eq!(
        (acme.slug.as_str(), acme.reseller_id, acme.timezone.as_str()),
        ("acme", Some(channel.id), "Asia/Kolkata")
    );

    assert_eq!(
        tenants::org_by_id(&db.pool, acme.id).await.unwrap(),
        Some(acme.clone())
    );
    assert_eq!(
        tenants::org_by_slug(&db.pool, "beta").await.unwrap(),
        Some(beta.clone())
    );
    assert_eq!(
        tenants::org_by_slug(&db.pool, "nobody").await.unwrap(),
        None
    );
    assert_eq!(
        tenants::org_by_id(&db.pool, Uuid::now_v7()).await.unwrap(),
        None
    );
    assert_eq!(
        tenants::reseller_by_slug(&db.pool, "channel")
            .await
            .unwrap(),
        Some(channel.clone())
    );

    assert!(
        tenants::reseller_owns(&db.pool, channel.id, acme.id)
            .await
            .unwrap()
    );
    assert!(
        !tenants::reseller_owns(&db.pool, other.id, acme.id)
            .await
            .unwrap()
    );
    assert!(
        !tenants::reseller_owns(&db.pool, channel.id, solo.id)
            .await
            .unwrap()
    );
    // Oldest first.
    assert_eq!(
        tenants::reseller_org_ids(&db.pool, channel.id)
            .await
            .unwrap(),
        [acme.id, beta.id]
    );
    assert!(
        tenants::reseller_org_ids(&db.pool, other.id)
            .await
            .unwrap()
            .is_empty()
    );

    // Slugs are unique.
    assert!(
        tenants::insert_org(&db.pool, "acme", "Again", None, "UTC")
            .await
            .is_err()
    );
    assert!(
        tenants::insert_reseller(&db.pool, "channel", "Again")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tokens_are_recorded_and_revoked_once() {
    let db = TestDb::new().await;
    let org = tenants::insert_org(&db.pool, "acme", "Acme", None, "UTC")
        .await
        .unwrap();
    let jti = Uuid::now_v7();
    // Stored to the microsecond.
    let issued_at = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let expires_at = issued_at + Duration::days(90);
    tokens::insert(
        &db.pool,
        &tokens::NewToken {
            jti,
            org_id: Some(org.id),
            reseller_id: None,
            scopes: &["read_all", "write_all"],
            issued_at,
            expires_at,
        },
    )
    .await
    .unwrap();
    let record = tokens::record(&db.pool, jti).await.unwrap().unwrap();
    assert_eq!(record.org_id, Some(org.id));
    assert_eq!(record.reseller_id, None);
    let mut scopes = record.scopes.clone();
    scopes.sort();
    assert_eq!(scopes, ["read_all", "write_all"]);
    assert_eq!(
        (record.issued_at, record.expires_at),
        (issued_at, expires_at)
    );
    assert!(!record.revoked);
    assert!(
        tokens::record(&db.pool, Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );

    // Revoking twice keeps the first time.
    let first = tokens::revoke(&db.pool, jti).await.unwrap().unwrap();
    let again = tokens::revoke(&db.pool, jti).await.unwrap().unwrap();
    assert_eq!(first, again);
    assert!(
        tokens::record(&db.pool, jti)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    // An unknown token: nothing to revoke.
    assert_eq!(
        tokens::revoke(&db.pool, Uuid::now_v7()).await.unwrap(),
        None
    );
}
