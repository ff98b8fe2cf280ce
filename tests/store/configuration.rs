//! `store::configuration`: the default at revision 0 without a row, compare-and-swap writes
//! (what makes `If-Match` exact), revisions, and the entity tags built from them.

use baton::domain::configuration::IdCounters;
use baton::http::configuration::etag;
use baton::store::configuration as config;
use uuid::Uuid;

use crate::common::TestDb;

#[tokio::test]
async fn writes_are_compare_and_swap_on_the_revision() {
    let db = TestDb::new().await;
    let (_, org) = db.org("acme", None, None).await;
    let (_, other) = db.org("other", None, None).await;
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let ids = IdCounters {
        availability: 2,
        custom_guideline: 1,
        routing_profile: 3,
    };

    // No row: the default document at revision 0.
    assert_eq!(config::get(&db.pool, org).await.unwrap(), None);
    assert_eq!(config::state(&db.pool, org).await.unwrap(), None);

    // Two writers read revision 0: the first wins, the second changes nothing.
    let (first, _) = config::replace_if(&db.pool, org, 0, r#"{"v": 1}"#, ids, alice)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, 1);
    assert_eq!(
        config::replace_if(&db.pool, org, 0, r#"{"v": "lost"}"#, ids, bob)
            .await
            .unwrap(),
        None
    );
    let (document, revision) = config::get(&db.pool, org).await.unwrap().unwrap();
    assert_eq!(
        (
            revision,
            serde_json::from_str::<serde_json::Value>(&document).unwrap()
        ),
        (1, serde_json::json!({"v": 1}))
    );
    let state = config::state(&db.pool, org).await.unwrap().unwrap();
    assert_eq!((state.revision, state.next_ids), (1, ids));

    // The next write names revision 1; a stale one (0 or 2) is refused.
    for stale in [0, 2] {
        assert_eq!(
            config::replace_if(&db.pool, org, stale, r#"{"v": 9}"#, ids, bob)
                .await
                .unwrap(),
            None
        );
    }
    let (second, _) = config::replace_if(&db.pool, org, 1, r#"{"v": 2}"#, ids, bob)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second, 2);

    // Revisions, newest first, with their writers; `before` pages.
    let revisions = config::revisions(&db.pool, org, None, 10).await.unwrap();
    let seen: Vec<(i64, Uuid)> = revisions
        .iter()
        .map(|r| (r.revision, r.token_jti))
        .collect();
    assert_eq!(seen, [(2, bob), (1, alice)]);
    let older = config::revisions(&db.pool, org, Some(2), 10).await.unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].revision, 1);
    assert_eq!(
        config::revisions(&db.pool, org, None, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    // Another organization is untouched.
    assert_eq!(config::get(&db.pool, other).await.unwrap(), None);
    assert!(
        config::revisions(&db.pool, other, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Entity tags name the organization and the revision: no two are equal.
    let tags = [etag(org, 1), etag(org, 2), etag(other, 1), etag(other, 0)];
    for (i, a) in tags.iter().enumerate() {
        assert!(a.starts_with('"') && a.ends_with('"'), "{a}");
        for b in &tags[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(etag(org, 2), format!("\"{}-2\"", org.get().simple()));
}

#[tokio::test]
async fn lock_creates_the_default_row_at_revision_0() {
    let db = TestDb::new().await;
    let (_, org) = db.org("acme", None, None).await;
    let mut tx = db.pool.begin().await.unwrap();
    let locked = config::lock(&mut tx, org, r#"{"default": true}"#)
        .await
        .unwrap();
    assert_eq!(
        (locked.revision, locked.next_ids),
        (0, IdCounters::default())
    );
    // A write at revision 0 in the same transaction replaces the row `lock` created.
    let (revision, _) = config::replace_if(
        &mut *tx,
        org,
        0,
        r#"{"v": 1}"#,
        locked.next_ids,
        Uuid::now_v7(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(revision, 1);
    tx.commit().await.unwrap();
    assert_eq!(config::get(&db.pool, org).await.unwrap().unwrap().1, 1);
}
