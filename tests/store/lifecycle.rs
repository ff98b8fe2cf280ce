//! Lifecycle rollup writes: the same events stored in one batch and in many (so that rows are
//! inserted, then moved by deltas without waits, which upsert without reading, and by deltas with
//! waits, whose stored histograms are read, merged and written back) leave the same rows, byte
//! for byte, histograms of every count width included.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::common::TestDb;
use crate::common::fixtures::event;
use crate::store;

type Row = (
    String,
    i32,
    DateTime<Utc>,
    String,
    Vec<i64>,
    Option<i64>,
    Vec<u8>,
);

async fn rows(pool: &sqlx::PgPool, org: uuid::Uuid) -> Vec<Row> {
    sqlx::query_as(
        "select dim, grain, bucket, key,
                array[initiated, completed, failed, abandoned, open, retried,
                      outside_working_hours, wait_count, wait_sum_ms],
                wait_max_ms, wait_hist
         from handoff_lifecycle_rollups where org_id = $1
         order by dim, grain, bucket, key",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The events, in arrival order, each with the step (batch) it arrives in when sent in many.
fn events() -> Vec<(usize, Value)> {
    let t0: DateTime<Utc> = "2026-08-03T10:00:00Z".parse().unwrap();
    let at = |d: Duration| (t0 + d).to_rfc3339();
    let mut out = Vec::new();
    for i in 0..240_i64 {
        // 190 handoffs at one instant, those completed all 61 days later (a bin of 152 waits,
        // stored in two bytes a count once the later batches have added to it); the others
        // spread over 40 days.
        let same = i < 190;
        let start = if same {
            Duration::zero()
        } else {
            Duration::minutes(i * 17 * 24)
        };
        let s = format!("s{i}");
        let h = format!("h{i}");
        out.push((
            0,
            event(
                &format!("{s}-start"),
                "session.started",
                &at(start),
                json!({"session_id": s, "channel": if i % 2 == 0 { "web" } else { "phone_voice" }}),
            ),
        ));
        let reasons = if i % 3 == 0 {
            json!(["insufficient_knowledge", "prohibited_topic"])
        } else {
            json!(["user_requested_human_assistance"])
        };
        out.push((
            0,
            event(
                &h,
                "handoff.initiated",
                &at(start + Duration::seconds(1)),
                json!({"handoff_id": h, "session_id": s, "reasons": reasons,
                       "destination": if i % 4 == 0 { Value::Null } else { json!("queue") }}),
            ),
        ));
        match i % 5 {
            // Failed, retried, then completed months later.
            0 => {
                out.push((
                    1,
                    event(
                        &format!("{h}-f"),
                        "handoff.failed",
                        &at(start + Duration::minutes(3)),
                        json!({"handoff_id": h}),
                    ),
                ));
                out.push((
                    2,
                    event(&format!("{h}-r"), "handoff.initiated", &at(start + Duration::minutes(5)),
                          json!({"handoff_id": h, "session_id": s, "reasons": ["insufficient_tools"]})),
                ));
                out.push((
                    3,
                    event(
                        &format!("{h}-c"),
                        "handoff.completed",
                        &at(start + Duration::days(61)),
                        json!({"handoff_id": h}),
                    ),
                ));
            }
            1 => out.push((
                2,
                event(
                    &format!("{h}-a"),
                    "handoff.abandoned",
                    &at(start + Duration::minutes(2)),
                    json!({"handoff_id": h}),
                ),
            )),
            2 => out.push((
                0,
                event(
                    &format!("{h}-c"),
                    "handoff.completed",
                    &at(start
                        + if same {
                            Duration::days(61)
                        } else {
                            Duration::milliseconds(40 + i)
                        }),
                    json!({"handoff_id": h}),
                ),
            )),
            // Completed in a later batch, minutes to weeks later.
            _ => out.push((
                1 + (i as usize % 3),
                event(
                    &format!("{h}-c"),
                    "handoff.completed",
                    &at(start
                        + if same {
                            Duration::days(61)
                        } else {
                            Duration::minutes(7 + i * i)
                        }),
                    json!({"handoff_id": h}),
                ),
            )),
        }
    }
    out
}

#[tokio::test]
async fn rollup_rows_do_not_depend_on_how_events_are_batched() {
    let db = TestDb::new().await;
    let (one, one_id) = db.org("one", None, None).await;
    let (many, many_id) = db.org("many", None, None).await;
    let events = events();
    let all: Vec<Value> = events.iter().map(|(_, e)| e.clone()).collect();
    store(&db.pool, one_id, &all).await.unwrap();
    for step in 0..4 {
        let part: Vec<Value> = events
            .iter()
            .filter(|(s, _)| *s == step)
            .map(|(_, e)| e.clone())
            .collect();
        // Batches of 37 events: a row is written several times within a step too.
        for chunk in part.chunks(37) {
            store(&db.pool, many_id, chunk).await.unwrap();
        }
    }
    let (a, b) = (rows(&db.pool, one.id).await, rows(&db.pool, many.id).await);
    assert!(a.len() > 100, "{} rows", a.len());
    // Histograms of more than one count width, and of many bins.
    assert!(a.iter().any(|r| r.6.first() == Some(&2)));
    assert!(a.iter().any(|r| r.6.len() > 50));
    assert_eq!(a, b);
}

/// Pending rows of an organization.
async fn pending(pool: &sqlx::PgPool, org: uuid::Uuid) -> i64 {
    sqlx::query_scalar("select count(*) from handoff_lifecycle_pending where org_id = $1")
        .bind(org)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The figures `GET /v1/handoff-lifecycle` is made of, for 120 days from the events' first, in
/// UTC and in Asia/Kolkata (whose days are read with subtracted blocks), grouped by reason.
async fn figures(pool: &sqlx::PgPool, org: baton::auth::OrgId) -> Vec<String> {
    use baton::domain::lifecycle::Dim;
    use baton::domain::timerange::TimeRange;
    let start: DateTime<Utc> = "2026-08-01T00:00:00Z".parse().unwrap();
    let mut out = Vec::new();
    let mut conn = pool.acquire().await.unwrap();
    for tz in [chrono_tz::UTC, chrono_tz::Asia::Kolkata] {
        for group_by in [None, Some(Dim::Reason), Some(Dim::Agent)] {
            let range = TimeRange {
                start: start - Duration::hours(5),
                end: start + Duration::days(120) + Duration::minutes(30),
                tz,
            };
            let f = baton::store::lifecycle::read(&mut conn, org, &range, group_by)
                .await
                .unwrap();
            out.push(format!("{:?} {:?} {:?}", f.total, f.days, f.groups));
        }
    }
    out
}

/// The same batches applied directly and deferred (every batch's deltas stored pending, then
/// folded) leave the same rollup rows, byte for byte: deltas that subtract, histograms that
/// change width across batches, rows brought back to zero. Before the fold, reads already
/// answer exactly what the direct rows answer; a fold that rolls back leaves its rows pending.
#[tokio::test]
async fn deferred_deltas_fold_into_the_rows_direct_writes_leave() {
    use baton::store::lifecycle::pending;
    let db = TestDb::new().await;
    let (direct, direct_id) = db.org("direct", None, None).await;
    let (deferred, deferred_id) = db.org("deferred", None, None).await;
    let mut events = events();
    // A handoff alone in its 15-minute block whose retry changes its destination: that block's
    // row of the first destination goes back to zeros.
    let at = |m: i64| {
        ("2026-09-22T10:07:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(m))
            .to_rfc3339()
    };
    events.extend([
        (
            0,
            event(
                "z-start",
                "session.started",
                &at(0),
                json!({"session_id": "z", "channel": "web"}),
            ),
        ),
        (
            0,
            event(
                "z",
                "handoff.initiated",
                &at(1),
                json!({"handoff_id": "z", "session_id": "z",
            "reasons": ["prohibited_topic"], "destination": "lonely_queue"}),
            ),
        ),
        (
            1,
            event("z-f", "handoff.failed", &at(2), json!({"handoff_id": "z"})),
        ),
        (
            2,
            event(
                "z-r",
                "handoff.initiated",
                &at(3),
                json!({"handoff_id": "z", "session_id": "z",
            "reasons": ["prohibited_topic"], "destination": "desk"}),
            ),
        ),
    ]);
    pending::set_defer_blocks(direct.id, Some(usize::MAX));
    pending::set_defer_blocks(deferred.id, Some(0));
    for org in [direct_id, deferred_id] {
        for step in 0..4 {
            let part: Vec<Value> = events
                .iter()
                .filter(|(s, _)| *s == step)
                .map(|(_, e)| e.clone())
                .collect();
            for chunk in part.chunks(37) {
                store(&db.pool, org, chunk).await.unwrap();
            }
        }
    }
    pending::set_defer_blocks(direct.id, None);
    pending::set_defer_blocks(deferred.id, None);
    let expected = rows(&db.pool, direct.id).await;
    assert_eq!(pending(&db.pool, direct.id).await, 0);
    let waiting = pending(&db.pool, deferred.id).await;
    assert!(waiting > 10, "{waiting} pending rows");
    assert!(rows(&db.pool, deferred.id).await.is_empty());

    // Read before any fold: the same answers.
    let answers = figures(&db.pool, direct_id).await;
    assert_eq!(figures(&db.pool, deferred_id).await, answers);

    // A fold that does not commit (a crash mid-fold) changes nothing.
    let mut tx = db.pool.begin().await.unwrap();
    let n = pending::fold_locked(&mut tx, deferred_id, 1_000)
        .await
        .unwrap();
    assert_eq!(n as i64, waiting);
    tx.rollback().await.unwrap();
    assert_eq!(pending(&db.pool, deferred.id).await, waiting);
    assert!(rows(&db.pool, deferred.id).await.is_empty());

    // Folded a few at a time (several pending rows merged into one write).
    let mut folded = 0;
    loop {
        let n = pending::fold(&db.pool, deferred_id, 3).await.unwrap();
        if n == 0 {
            break;
        }
        folded += n;
    }
    assert_eq!(folded as i64, waiting);
    assert_eq!(pending(&db.pool, deferred.id).await, 0);
    let got = rows(&db.pool, deferred.id).await;
    assert!(expected.len() > 100, "{} rows", expected.len());
    assert!(expected.iter().any(|r| r.6.first() == Some(&2)));
    // Rows a batch moved back to all zeros are kept, as the direct writes keep them.
    assert!(
        expected
            .iter()
            .any(|r| r.3 == "lonely_queue" && r.4.iter().all(|v| *v == 0))
    );
    assert_eq!(got, expected);
    assert_eq!(figures(&db.pool, deferred_id).await, answers);
}
