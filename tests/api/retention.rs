//! `--raw-event-retention-days`: old raw events deleted in bounded batches, every figure of every
//! endpoint unchanged, re-sent old events still harmless, and `baton rebuild` saying what it can
//! no longer recompute instead of wiping it.

use baton::db::retention::{RetentionOptions, run_once};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::erasure::{assert_same_figures, demo_tenants, figures};

fn occurred(e: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(e["occurred_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn pruning_old_raw_events_keeps_every_figure() {
    let app = TestApp::spawn().await;
    let (orgs, reseller, events) = demo_tenants(&app).await;
    // An organization of its own, outside the reseller, with recent events only.
    let c = app.org("c", None, None).await;
    let c_token = app.writer(&c).await;
    app.post_events_ok(
        &c_token,
        &[
            json!({"id": "c1", "type": "session.started", "occurred_at": Utc::now().to_rfc3339(),
                 "session_id": "c1", "channel": "web"}),
        ],
    )
    .await;

    let before = figures(&app, &orgs, &reseller).await;
    let days = 30;
    let cutoff = Utc::now() - Duration::days(days);
    // Worked out from the fixture, not from the store: the events that survive.
    let young = events.iter().filter(|e| occurred(e) >= cutoff).count() as i64;
    let old = events.len() as i64 - young;
    assert!(old > 1_000 && young > 1_000, "{old} old, {young} young");

    let options = RetentionOptions {
        batch: 700,
        pause: std::time::Duration::ZERO,
        ..RetentionOptions::days(days as u32)
    };
    let deleted = run_once(&app.pool, options).await.unwrap();
    assert_eq!(deleted as i64, 2 * old);
    for (org, _) in &orgs {
        let left: i64 = sqlx::query_scalar("select count(*) from events where org_id = $1")
            .bind(org)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(left, young);
        let (pruned_before, pruned): (DateTime<Utc>, i64) = sqlx::query_as(
            "select pruned_before, events_pruned from event_retention where org_id = $1",
        )
        .bind(org)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(pruned, old);
        assert!((pruned_before - cutoff).num_seconds().abs() < 60);
    }
    // Nothing left to delete; the other organization untouched.
    assert_eq!(run_once(&app.pool, options).await.unwrap(), 0);
    let c_pruned: i64 =
        sqlx::query_scalar("select count(*) from event_retention where org_id = $1")
            .bind(c.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(c_pruned, 0);

    assert_same_figures(&before, &figures(&app, &orgs, &reseller).await);

    // Every event sent again: the old ones count as already stored (their ids are gone, but they
    // are older than the horizon), the young ones are duplicates as always; nothing changes.
    let (_, token) = &orgs[0];
    let mut accepted = 0;
    let mut duplicates = 0;
    for chunk in events.chunks(2_000) {
        let (a, d) = app.post_events_ok(token, chunk).await;
        accepted += a;
        duplicates += d;
    }
    assert_eq!((accepted, duplicates), (0, events.len() as u64));
    assert_same_figures(&before, &figures(&app, &orgs, &reseller).await);

    // A rebuild cannot recompute the pruned organizations (nor their reseller's other ones): it
    // says so and leaves them as they are.
    let e = baton::admin::rebuild(&app.pool, Some("a"))
        .await
        .unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("organization `a` (events before"),
        "{message}"
    );
    assert!(message.contains("--raw-event-retention-days"), "{message}");
    let done = baton::admin::rebuild(&app.pool, None).await.unwrap();
    assert_eq!(done.organizations, 1, "only c");
    let skipped: Vec<&str> = done.not_rebuilt.iter().map(|n| n.slug.as_str()).collect();
    assert_eq!(skipped, ["a", "b"]);
    assert!(done.not_rebuilt.iter().all(|n| n.events_pruned == old));
    assert_same_figures(&before, &figures(&app, &orgs, &reseller).await);
    // Organization c rebuilds as usual.
    assert_eq!(
        baton::admin::rebuild(&app.pool, Some("c"))
            .await
            .unwrap()
            .events,
        1
    );
}

#[tokio::test]
async fn the_event_store_refuses_deletes_outside_retention() {
    let app = TestApp::spawn().await;
    let org = app.org("a", None, None).await;
    let token = app.writer(&org).await;
    app.post_events_ok(
        &token,
        &[
            json!({"id": "e1", "type": "session.started", "occurred_at": "2020-01-01T00:00:00Z",
                 "session_id": "s1", "channel": "web"}),
        ],
    )
    .await;
    let e = sqlx::query("delete from events")
        .execute(&app.pool)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
}
