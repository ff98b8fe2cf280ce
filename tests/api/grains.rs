//! Migration 20261121000012 (one grain encoding: seconds) converts the rollups a database already
//! holds in place: every table row and every answer is the same after it as before.
//!
//! How: a database of this version is filled through ingest (the demo's 90 days in three
//! organizations, two of them a reseller's), and everything is recorded. It is then put back
//! into the exact form of version 11 (the schema is compared with a database migrated to 11
//! only, and every row's bucket is checked to be aligned on its grain as version 11 meant it:
//! an index into 15 minutes / hour / day / 7 days for analytics, minutes for calls), and
//! migrated again, as `baton serve` would at start.

use std::borrow::Cow;

use baton::auth::{Scope, Subject};
use baton::db::MIGRATOR;
use chrono::{Duration, Utc};
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::common::TestApp;
use crate::rebuild::{assert_same, everything};

const V12: i64 = 20261121000012;

/// The analytics rollup tables (grain was an index 0–3, `smallint`).
const ANALYTICS: &[&str] = &[
    "handoff_rollup_totals",
    "handoff_rollup_breakdown",
    "session_rollups",
];
/// The organizations' call rollup tables (minutes, `smallint`).
const CALLS: &[&str] = &["call_metric_rollups", "call_escalation_rollups"];
/// The resellers' call rollup tables (minutes, `integer`).
const RESELLERS: &[&str] = &[
    "reseller_call_rollups",
    "reseller_agent_rollups",
    "reseller_escalation_rollups",
];
const RESELLER_MINUTES: &str =
    "15, 30, 60, 120, 240, 480, 1440, 2880, 5760, 11520, 23040, 46080, 92160, 184320";

/// The grain columns and checks of the rollup tables, as the catalog describes them.
async fn grain_schema(conn: &mut PgConnection) -> String {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        r#"select c.relname::text, format_type(a.atttypid, a.atttypmod),
                  coalesce((select string_agg(pg_get_constraintdef(k.oid), '; ' order by k.conname)
                            from pg_constraint k where k.conrelid = c.oid), '')
           from pg_class c
           join pg_attribute a on a.attrelid = c.oid and a.attname = 'grain'
           where c.relkind = 'r' and c.relnamespace = 'public'::regnamespace
             and c.relname <> 'handoff_lifecycle_rollups'
           order by 1"#,
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), ANALYTICS.len() + CALLS.len() + RESELLERS.len());
    format!("{rows:#?}")
}

/// Every row's bucket aligned on its grain's length in seconds (`length`: the SQL giving it).
async fn assert_aligned(pool: &PgPool, table: &str, length: &str) {
    let (rows, off): (i64, i64) = sqlx::query_as(&format!(
        "select count(*), count(*) filter (where extract(epoch from bucket)::int8 % ({length}) <> 0)
         from {table}"
    ))
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(rows > 0, "{table} is empty");
    assert_eq!(off, 0, "{table}: buckets off their grain");
}

#[tokio::test]
async fn migration_12_converts_existing_rollups_in_place() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("r").await;
    let a = app.org("a", Some("r"), None).await;
    let b = app.org("b", Some("r"), Some("Asia/Kolkata")).await;
    let c = app.org("c", None, Some("America/New_York")).await;
    let events = baton::demo::generate(Utc::now() - Duration::hours(1), chrono_tz::UTC);
    let mut orgs = Vec::new();
    for org in [&a, &b, &c] {
        let token = app.writer(org).await;
        for chunk in events.chunks(1_000) {
            app.post_events_ok(&token, chunk).await;
        }
        orgs.push((org.id, token));
    }
    let reseller_token = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    let reseller = (reseller.id, reseller_token);
    let kept = everything(&app, &orgs, reseller.clone()).await;

    // Back to version 11's form: its column types, its checks, its encodings.
    let mut down = String::from("begin;\n");
    for t in ANALYTICS {
        down.push_str(&format!(
            "alter table {t} drop constraint {t}_grain_check,
                 alter column grain type smallint
                     using array_position(array[900, 3600, 86400, 604800], grain) - 1,
                 add constraint {t}_grain_check check (grain between 0 and 3);\n"
        ));
    }
    for t in CALLS {
        down.push_str(&format!(
            "alter table {t} drop constraint {t}_grain_check,
                 alter column grain type smallint using grain / 60,
                 add constraint {t}_grain_check check (grain in (15, 60, 1440));\n"
        ));
    }
    for t in RESELLERS {
        down.push_str(&format!(
            "alter table {t} drop constraint {t}_grain_check,
                 alter column grain type integer using grain / 60,
                 add constraint {t}_grain_check check (grain in ({RESELLER_MINUTES}));\n"
        ));
    }
    down.push_str(&format!(
        "delete from _sqlx_migrations where version = {V12};\ncommit;"
    ));
    sqlx::raw_sql(&down).execute(&app.pool).await.unwrap();

    // The same schema as a database migrated to version 11 only.
    let name = format!("baton_v11_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("create database {name}"))
        .execute(&app.pool)
        .await
        .unwrap();
    let mut v11 =
        PgConnection::connect_with(&app.pool.connect_options().as_ref().clone().database(&name))
            .await
            .unwrap();
    let upto_11 = Migrator {
        migrations: Cow::Owned(
            MIGRATOR
                .iter()
                .filter(|m| m.version < V12)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    assert_eq!(
        upto_11.iter().map(|m| m.version).max(),
        Some(20261121000011),
        "version 11 is the last before 12"
    );
    upto_11.run(&mut v11).await.unwrap();
    let mut conn = app.pool.acquire().await.unwrap();
    assert_eq!(grain_schema(&mut conn).await, grain_schema(&mut v11).await);
    drop(conn);
    v11.close().await.unwrap();
    sqlx::query(&format!("drop database {name}"))
        .execute(&app.pool)
        .await
        .unwrap();
    // Version 11's meaning of a grain, checked against the buckets themselves.
    for t in ANALYTICS {
        assert_aligned(&app.pool, t, "(array[900, 3600, 86400, 604800])[grain + 1]").await;
    }
    for t in CALLS.iter().chain(RESELLERS) {
        assert_aligned(&app.pool, t, "grain * 60").await;
    }
    // Answers from version 11's rows are not what this version reads.
    assert_ne!(everything(&app, &orgs, reseller.clone()).await, kept);

    // Migrated as `baton serve` migrates at start: the same rows, the same answers.
    MIGRATOR.run(&app.pool).await.unwrap();
    for t in ANALYTICS.iter().chain(CALLS).chain(RESELLERS) {
        assert_aligned(&app.pool, t, "grain").await;
    }
    let grains: Vec<i32> =
        sqlx::query_scalar("select distinct grain from handoff_rollup_totals order by 1")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(grains, [900, 3600, 86400, 604800]);
    assert_same(&kept, &everything(&app, &orgs, reseller).await);
}
