//! One cohort behind every view: on random worlds, for the same range, zone and reason,
//! `/handoff-analytics` `total_handoffs` (or the reason's count) = lifecycle `totals.initiated`
//! (or the reason group's) = the sum of lifecycle `days` = the OpenCX events `total` = the
//! number of items paged through = the export's row count = a count from the raw rows.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::exports::csv_records;
use crate::handoff_events::all_pages;

const REASONS: [&str; 7] = [
    "ai_implied_handoff",
    "based_on_instructions",
    "instructions_not_clear",
    "insufficient_knowledge",
    "insufficient_tools",
    "prohibited_topic",
    "user_requested_human_assistance",
];
const ZONES: [&str; 4] = ["UTC", "Asia/Kolkata", "America/New_York", "Asia/Kathmandu"];

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A random world over the 20 days from `base`: sessions, handoffs with one to three reasons,
/// retries, completions, failures, abandons and custom states.
fn world(rng: &mut StdRng, base: DateTime<Utc>) -> Vec<Value> {
    let mut events = Vec::new();
    let mut n = 0;
    let mut id = |prefix: &str| {
        n += 1;
        format!("{prefix}{n}")
    };
    for s in 0..rng.gen_range(20..60) {
        let start = base + Duration::seconds(rng.gen_range(0..20 * 86_400));
        let session = format!("s{s}");
        let channel = ["web", "sms", "phone_voice"][rng.gen_range(0..3)];
        let mut e = json!({"id": id("e"), "type": "session.started", "occurred_at": at(start),
                           "session_id": session, "channel": channel});
        if rng.gen_bool(0.7) {
            e["agent_id"] = json!(format!("a{}", rng.gen_range(0..3)));
        }
        events.push(e);
        for h in 0..rng.gen_range(0..3) {
            let handoff = format!("{session}-h{h}");
            let mut t = start + Duration::seconds(rng.gen_range(0..3 * 3_600));
            let mut attempts = 0;
            loop {
                attempts += 1;
                let k = rng.gen_range(1..=3);
                let reasons: Vec<&str> = REASONS.choose_multiple(rng, k).copied().collect();
                events.push(json!({"id": id("e"), "type": "handoff.initiated", "occurred_at": at(t),
                                   "handoff_id": handoff, "session_id": session, "reasons": reasons}));
                t += Duration::seconds(rng.gen_range(1..1_800));
                match rng.gen_range(0..10) {
                    0..=3 => {
                        events.push(json!({"id": id("e"), "type": "handoff.completed",
                                           "occurred_at": at(t), "handoff_id": handoff}));
                        break;
                    }
                    4..=5 if attempts < 3 => {
                        events.push(json!({"id": id("e"), "type": "handoff.failed",
                                           "occurred_at": at(t), "handoff_id": handoff}));
                        t += Duration::seconds(rng.gen_range(1..600));
                    }
                    6 => {
                        events.push(json!({"id": id("e"), "type": "handoff.abandoned",
                                           "occurred_at": at(t), "handoff_id": handoff}));
                        break;
                    }
                    7 => {
                        events.push(
                            json!({"id": id("e"), "type": "handoff.state", "occurred_at": at(t),
                                           "handoff_id": handoff, "state": "waiting_for_agent"}),
                        );
                        break;
                    }
                    _ => break,
                }
            }
        }
    }
    // Applied in time order, as a client would send them.
    events.sort_by(|a, b| a["occurred_at"].as_str().cmp(&b["occurred_at"].as_str()));
    events
}

async fn get_json(app: &TestApp, token: &str, path: &str) -> Value {
    let res = app.get(path, token).await;
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

#[tokio::test]
async fn every_view_counts_the_same_cohort() {
    let app = TestApp::spawn().await;
    let base = DateTime::parse_from_rfc3339("2030-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut counted = 0;
    for case in 0..6u64 {
        let mut rng = StdRng::seed_from_u64(1_600 + case);
        let org = app.org(&format!("w{case}"), None, None).await;
        let token = app.writer(&org).await;
        let events = world(&mut rng, base);
        for chunk in events.chunks(500) {
            app.post_events_ok(&token, chunk).await;
        }
        for _ in 0..4 {
            let zone = ZONES[rng.gen_range(0..ZONES.len())];
            // Bounds off every block boundary (whole seconds), or whole local dates.
            let from = base + Duration::seconds(rng.gen_range(-86_400..18 * 86_400));
            let to = from + Duration::seconds(rng.gen_range(0..10 * 86_400));
            let (start, end) = if rng.gen_bool(0.5) {
                (at(from), at(to))
            } else {
                (
                    from.format("%Y-%m-%d").to_string(),
                    to.format("%Y-%m-%d").to_string(),
                )
            };
            let reason = rng
                .gen_bool(0.5)
                .then(|| REASONS[rng.gen_range(0..REASONS.len())]);
            let range = format!("start_date={start}&end_date={end}&timezone={zone}");
            let ctx = format!("case {case}: {range} reason {reason:?}");

            let analytics = get_json(&app, &token, &format!("/handoff-analytics?{range}")).await;
            let group = if reason.is_some() {
                "&group_by=reason"
            } else {
                ""
            };
            let lifecycle = get_json(
                &app,
                &token,
                &format!("/v1/handoff-lifecycle?{range}{group}"),
            )
            .await;
            let with_reason = reason.map(|r| format!("&reason={r}")).unwrap_or_default();
            let (items, totals) =
                all_pages(&app, &token, &format!("{range}{with_reason}&limit=40")).await;
            let res = app
                .get(
                    &format!("/v1/exports/handoffs?{range}{with_reason}"),
                    &token,
                )
                .await;
            assert_eq!(res.status(), 200, "{ctx}");
            let rows = csv_records(&res.text().await.unwrap()).len() as i64 - 1;

            // The range as the server resolved it, counted from the raw rows.
            let (s, e) = (
                DateTime::parse_from_rfc3339(lifecycle["start_date"].as_str().unwrap()).unwrap(),
                DateTime::parse_from_rfc3339(lifecycle["end_date"].as_str().unwrap()).unwrap(),
            );
            let raw: i64 = sqlx::query_scalar(
                "select count(*) from handoffs where org_id = $1 and initiated_at >= $2
                   and initiated_at < $3 and ($4::text is null or $4 = any(reasons))",
            )
            .bind(org.id)
            .bind(s)
            .bind(e)
            .bind(reason)
            .fetch_one(&app.pool)
            .await
            .unwrap();

            let (analytics_n, lifecycle_n) = match reason {
                None => (
                    analytics["total_handoffs"].as_i64().unwrap(),
                    lifecycle["totals"]["initiated"].as_i64().unwrap(),
                ),
                Some(r) => (
                    analytics["reasons"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|x| x["reason"] == r)
                        .map_or(0, |x| x["count"].as_i64().unwrap()),
                    lifecycle["groups"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|g| g["key"] == r)
                        .map_or(0, |g| g["totals"]["initiated"].as_i64().unwrap()),
                ),
            };
            let days: i64 = lifecycle["days"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["initiated"].as_i64().unwrap())
                .sum();
            assert_eq!(days, lifecycle["totals"]["initiated"], "{ctx}");
            let t = &lifecycle["totals"];
            let parts: i64 = ["completed", "failed", "abandoned", "open"]
                .iter()
                .map(|k| t[k].as_i64().unwrap())
                .sum();
            assert_eq!(parts, t["initiated"].as_i64().unwrap(), "{ctx}");
            assert_eq!(analytics["total_handoffs"], t["initiated"], "{ctx}");
            assert_eq!(
                [
                    analytics_n,
                    lifecycle_n,
                    totals[0],
                    items.len() as i64,
                    rows
                ],
                [raw; 5],
                "{ctx}"
            );
            counted += raw;
        }
    }
    // The worlds are not empty where they were looked at.
    assert!(counted > 100, "{counted}");
}
