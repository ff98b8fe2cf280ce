//! Applying the migrations to a database that recorded an older text of a reworded one.

use crate::common::TestDb;

/// Migration 04's comment was reworded after release: a database that applied the old text
/// (its recorded checksum) migrates again without complaint, and records the current text.
#[tokio::test]
async fn a_database_migrated_before_a_comment_was_reworded_still_migrates() {
    let db = TestDb::new().await;
    let old = "ffbcb92af51be7bb43121fa9a2eb89f5f88365657e361bfd72fd7aa0b59e59005f55c30f033f7e10fd4e766ea9f1ea35";
    sqlx::query(
        "update _sqlx_migrations set checksum = decode($1, 'hex') where version = 20261121000004",
    )
    .bind(old)
    .execute(&db.pool)
    .await
    .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    baton::db::migrate(&mut conn).await.expect("migrates");
    let recorded: Vec<u8> =
        sqlx::query_scalar("select checksum from _sqlx_migrations where version = 20261121000004")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    let current = baton::db::MIGRATOR
        .iter()
        .find(|m| m.version == 20261121000004)
        .unwrap();
    assert_eq!(recorded, current.checksum.as_ref());
    // Any other changed text is still refused, as sqlx does.
    sqlx::query("update _sqlx_migrations set checksum = '\\x00' where version = 20261121000004")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert!(baton::db::migrate(&mut conn).await.is_err());
}
