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
