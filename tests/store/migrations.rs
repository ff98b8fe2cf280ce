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

/// Migration 20261129170001 turns the lifecycle rollups' histogram arrays (`wait_bins`,
/// `wait_counts`) into `wait_hist`, byte for byte what `WaitHistogram::encode` writes for the
/// same histogram (every count width, gaps, an empty histogram), and leaves the rest of the row.
#[tokio::test]
async fn lifecycle_histogram_arrays_convert_to_the_stored_form() {
    use baton::domain::lifecycle::WaitHistogram;
    use sqlx::{Connection, Executor, PgConnection};

    const VERSION: i64 = 20261129170001;
    let admin = crate::common::server_admin();
    let name = format!("baton_t_{}", uuid::Uuid::new_v4().simple());
    let mut server = PgConnection::connect_with(&admin).await.unwrap();
    server
        .execute(format!("create database {name}").as_str())
        .await
        .unwrap();
    let mut conn = PgConnection::connect_with(&admin.clone().database(&name))
        .await
        .unwrap();
    let before = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            baton::db::MIGRATOR
                .iter()
                .filter(|m| m.version < VERSION)
                .cloned()
                .collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before.run(&mut conn).await.unwrap();

    // Histograms as (bin, count) pairs, the arrays as the former write path stored them: sorted
    // non-zero bins.
    let cases: Vec<Vec<(i32, i64)>> = vec![
        vec![],
        vec![(5, 1)],
        vec![(0, 127), (99, 1)],
        vec![(632, 128), (633, 3), (1085, 40)],
        vec![(700, 1), (702, 32_767), (900, 32_768)],
        vec![(1_000, (1 << 31) - 1), (1_001, 1 << 31), (2_000, 7)],
        (632..1086).map(|b| (b, i64::from(b % 97) + 1)).collect(),
    ];
    for (i, pairs) in cases.iter().enumerate() {
        let (bins, counts): (Vec<i32>, Vec<i64>) = pairs.iter().copied().unzip();
        sqlx::query(
            "insert into handoff_lifecycle_rollups (org_id, dim, grain, bucket, key, initiated,
                 completed, failed, abandoned, open, retried, outside_working_hours, wait_count,
                 wait_sum_ms, wait_max_ms, wait_bins, wait_counts)
             values ('00000000-0000-0000-0000-000000000001', '', 900,
                     timestamptz '2026-11-02T00:00:00Z' + make_interval(mins => 15 * $1), '',
                     7, 5, 1, 1, 0, 2, 3, 5, 1234, 600, $2, $3)",
        )
        .bind(i as i32)
        .bind(&bins)
        .bind(&counts)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    baton::db::migrate(&mut conn).await.unwrap();
    let rows: Vec<(Vec<u8>, i64, i64, Option<i64>)> = sqlx::query_as(
        "select wait_hist, initiated, wait_sum_ms, wait_max_ms from handoff_lifecycle_rollups
         order by bucket",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), cases.len());
    for (pairs, (stored, initiated, sum, max)) in cases.iter().zip(rows) {
        let mut h = WaitHistogram::default();
        for (b, c) in pairs {
            h.add(*b, *c);
        }
        assert_eq!(stored, h.encode(), "{pairs:?}");
        assert_eq!(WaitHistogram::decode(&stored), Ok(h));
        assert_eq!((initiated, sum, max), (7, 1234, Some(600)));
    }
    let columns: Vec<String> = sqlx::query_scalar(
        "select column_name::text from information_schema.columns
         where table_name = 'handoff_lifecycle_rollups' and column_name like 'wait%'
         order by 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        columns,
        ["wait_count", "wait_hist", "wait_max_ms", "wait_sum_ms"]
    );
    conn.close().await.unwrap();
}
