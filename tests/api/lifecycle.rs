//! `GET /v1/handoff-lifecycle`: hand-built fixtures whose every figure is worked out by hand
//! (waits, retries, working-hours edges in Asia/Kolkata, a New York DST day, a slot ending at
//! midnight), percentiles against exact ones recomputed from raw rows, auth and tenancy.

use baton::auth::{Scope, Subject};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::common::{TestApp, assert_error};

const PATH: &str = "/v1/handoff-lifecycle";

/// A whole configuration document with the given working hours.
pub fn configuration(timezone: &str, availability: Value) -> Value {
    json!({
        "settings": {
            "is_active": true,
            "keywords": [],
            "ai_summary_active": false,
            "question_message": "Shall I get a colleague?",
            "confirmation_message": "A colleague will join shortly.",
            "confirmation_outside_working_hours_message": "We are closed.",
            "working_hours_active": true,
            "timezone": timezone,
            "send_email_notification": false,
            "emails": []
        },
        "availability": availability,
        "generic_guidelines": [
            {"name": "media_message", "description": "Media", "is_active": false},
            {"name": "user_frustration", "description": "Angry visitor", "is_active": true},
            {"name": "irrelevant_advice", "description": "Off topic", "is_active": false},
            {"name": "lack_of_knowledge", "description": "Unknown answer", "is_active": true},
            {"name": "customer_support_suggestion", "description": "Support", "is_active": true}
        ],
        "custom_guidelines": [],
        "routing_profiles": []
    })
}

/// Stores a configuration document (its revision is in force from now on).
pub async fn put_configuration(app: &TestApp, token: &str, doc: &Value) {
    let res = app
        .client
        .put(app.url("/v1/api/human_handoff/configuration"))
        .bearer_auth(token)
        .json(doc)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

fn started(id: &str, at: &str, channel: &str, agent: Option<&str>) -> Value {
    let mut e = json!({"id": format!("e-{id}"), "type": "session.started", "occurred_at": at,
                       "session_id": id, "channel": channel});
    if let Some(a) = agent {
        e["agent_id"] = json!(a);
    }
    e
}

fn initiated(
    event: &str,
    h: &str,
    s: &str,
    at: &str,
    reasons: &[&str],
    dest: Option<&str>,
) -> Value {
    let mut e = json!({"id": event, "type": "handoff.initiated", "occurred_at": at,
                       "handoff_id": h, "session_id": s, "reasons": reasons});
    if let Some(d) = dest {
        e["destination"] = json!(d);
    }
    e
}

fn ended(event: &str, kind: &str, h: &str, at: &str) -> Value {
    json!({"id": event, "type": kind, "occurred_at": at, "handoff_id": h})
}

/// The Kolkata fixture (Monday 2030-03-04 to Sunday 2030-03-10; working hours Monday–Friday
/// 09:00–18:00 and Saturday 20:00–23:59 IST):
///
/// | handoff | first initiation (UTC) | IST | hours | reasons | outcome | wait |
/// |---|---|---|---|---|---|---|
/// | h1 | 03-04 03:30:00 | Mon 09:00:00 | inside | insufficient_knowledge | completed | 30 s |
/// | h2 | 03-04 03:29:59 | Mon 08:59:59 | outside | user_requested…, insufficient_knowledge | failed, retried, completed | 960 s |
/// | h5 | 03-05 12:30:00 | Tue 18:00:00 | outside | ai_implied_handoff | open (custom state) | — |
/// | h6 | 03-05 04:00:00 | Tue 09:30:00 | inside | insufficient_tools | completed | 600 s |
/// | h3 | 03-09 18:29:30 | Sat 23:59:30 | inside | prohibited_topic | completed | 120 s |
/// | h4 | 03-09 18:30:00 | Sun 00:00:00 | outside | user_requested… | failed | — |
/// | h7 | 03-06 05:00:00 | Wed 10:30:00 | inside | insufficient_knowledge | abandoned | — |
///
/// Plus h0 on 03-01 (previous period), completed after 45 s.
fn kolkata_events() -> Vec<Value> {
    const UR: &str = "user_requested_human_assistance";
    const IK: &str = "insufficient_knowledge";
    vec![
        started("s0", "2030-03-01T09:00:00Z", "web", Some("a1")),
        initiated("i0", "h0", "s0", "2030-03-01T10:00:00Z", &[IK], None),
        ended("c0", "handoff.completed", "h0", "2030-03-01T10:00:45Z"),
        started("s1", "2030-03-04T03:00:00Z", "web", Some("a1")),
        started("s2", "2030-03-05T03:00:00Z", "phone_voice", Some("a2")),
        started("s3", "2030-03-05T12:00:00Z", "web", None),
        initiated(
            "i2",
            "h2",
            "s1",
            "2030-03-04T03:29:59Z",
            &[UR, IK],
            Some("billing"),
        ),
        initiated(
            "i1",
            "h1",
            "s1",
            "2030-03-04T03:30:00Z",
            &[IK],
            Some("billing"),
        ),
        ended("c1", "handoff.completed", "h1", "2030-03-04T03:30:30Z"),
        ended("f2", "handoff.failed", "h2", "2030-03-04T03:31:00Z"),
        initiated("r2", "h2", "s1", "2030-03-04T03:40:00Z", &[IK], None),
        ended("c2", "handoff.completed", "h2", "2030-03-04T03:45:59Z"),
        initiated(
            "i6",
            "h6",
            "s2",
            "2030-03-05T04:00:00Z",
            &["insufficient_tools"],
            None,
        ),
        ended("c6", "handoff.completed", "h6", "2030-03-05T04:10:00Z"),
        initiated(
            "i5",
            "h5",
            "s3",
            "2030-03-05T12:30:00Z",
            &["ai_implied_handoff"],
            None,
        ),
        json!({"id": "t5", "type": "handoff.state", "occurred_at": "2030-03-05T12:31:00Z",
               "handoff_id": "h5", "state": "customer_refund"}),
        initiated(
            "i3",
            "h3",
            "s2",
            "2030-03-09T18:29:30Z",
            &["prohibited_topic"],
            None,
        ),
        ended("c3", "handoff.completed", "h3", "2030-03-09T18:31:30Z"),
        initiated("i4", "h4", "s3", "2030-03-09T18:30:00Z", &[UR], None),
        ended("f4", "handoff.failed", "h4", "2030-03-09T18:35:00Z"),
        initiated("i7", "h7", "s3", "2030-03-06T05:00:00Z", &[IK], None),
        ended("a7", "handoff.abandoned", "h7", "2030-03-06T05:02:00Z"),
    ]
}

async fn kolkata_app() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    let org = app.org("k", None, None).await;
    let token = app.writer(&org).await;
    put_configuration(
        &app,
        &token,
        &configuration(
            "Asia/Kolkata",
            json!([
                {"day_span": "monday-friday", "start_time": "09:00", "end_time": "18:00"},
                {"day_span": "saturday", "start_time": "20:00", "end_time": "23:59"}
            ]),
        ),
    )
    .await;
    app.post_events_ok(&token, &kolkata_events()).await;
    (app, token)
}

async fn lifecycle(app: &TestApp, token: &str, query: &str) -> Value {
    let res = app.get(&format!("{PATH}?{query}"), token).await;
    assert_eq!(res.status(), 200, "{query}");
    res.json().await.unwrap()
}

/// `got` (seconds) within `tolerance` (relative) of `exact`.
fn close(got: &Value, exact: f64, tolerance: f64) -> bool {
    got.as_f64()
        .is_some_and(|g| (g - exact).abs() <= exact * tolerance + 1e-9)
}

const Q: &str = "start_date=2030-03-04&end_date=2030-03-10&timezone=Asia/Kolkata";

#[tokio::test]
async fn kolkata_fixture_every_figure_known() {
    let (app, token) = kolkata_app().await;
    let body = lifecycle(&app, &token, Q).await;
    assert_eq!(body["start_date"], "2030-03-04T00:00:00+05:30");
    assert_eq!(body["end_date"], "2030-03-11T00:00:00+05:30");
    assert_eq!(
        body["totals"],
        json!({"initiated": 7, "completed": 4, "failed": 1, "abandoned": 1, "open": 1,
               "retried": 1, "outside_working_hours": 3})
    );
    assert_eq!(
        body["rates"],
        json!({"acceptance": 57.14, "failure": 14.29, "abandonment": 14.29, "retry": 14.29})
    );
    // Waits 30, 120, 600, 960 s: nearest-rank p50 is the 2nd, p90 and p95 the 4th.
    let w = &body["wait_seconds"];
    assert_eq!(w["count"], 4);
    assert_eq!(w["mean"], 427.5);
    assert_eq!(w["max"], 960.0);
    assert!(close(&w["p50"], 120.0, 0.005), "{w}");
    assert!(close(&w["p90"], 960.0, 0.005), "{w}");
    assert!(close(&w["p95"], 960.0, 0.005), "{w}");
    let days = body["days"].as_array().unwrap();
    let dates: Vec<&str> = days.iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert_eq!(
        dates,
        [
            "2030-03-04",
            "2030-03-05",
            "2030-03-06",
            "2030-03-07",
            "2030-03-08",
            "2030-03-09",
            "2030-03-10"
        ]
    );
    let counts: Vec<[i64; 4]> = days
        .iter()
        .map(|d| ["initiated", "completed", "failed", "abandoned"].map(|k| d[k].as_i64().unwrap()))
        .collect();
    assert_eq!(
        counts,
        [
            [2, 2, 0, 0],
            [2, 1, 0, 0],
            [1, 0, 0, 1],
            [0; 4],
            [0; 4],
            [1, 1, 0, 0],
            [1, 0, 1, 0]
        ]
    );
    assert!(close(&days[0]["wait_p50"], 30.0, 0.005));
    assert!(close(&days[1]["wait_p50"], 600.0, 0.005));
    assert!(days[2]["wait_p50"].is_null());
    assert!(days[3]["wait_p50"].is_null());
    assert!(close(&days[5]["wait_p50"], 120.0, 0.005));
    assert!(days[6]["wait_p50"].is_null());
    assert_eq!(body["groups"], json!([]));
    assert_eq!(body["previous"], Value::Null);

    // The same days in UTC: h4 (18:30Z on the 9th) moves to the 9th, h0 is still out.
    let utc = lifecycle(
        &app,
        &token,
        "start_date=2030-03-04&end_date=2030-03-10&timezone=UTC",
    )
    .await;
    assert_eq!(utc["totals"]["initiated"], 7);
    assert_eq!(utc["days"][5]["initiated"], 2);
    assert_eq!(utc["days"][6]["initiated"], 0);
}

fn group_keys(body: &Value) -> Vec<(Value, i64)> {
    body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["key"].clone(), g["totals"]["initiated"].as_i64().unwrap()))
        .collect()
}

#[tokio::test]
async fn groups_and_the_previous_period() {
    let (app, token) = kolkata_app().await;
    let by = |g: &str| format!("{Q}&group_by={g}");
    let reasons = lifecycle(&app, &token, &by("reason")).await;
    assert_eq!(
        group_keys(&reasons),
        [
            (json!("insufficient_knowledge"), 3),
            (json!("user_requested_human_assistance"), 2),
            (json!("ai_implied_handoff"), 1),
            (json!("insufficient_tools"), 1),
            (json!("prohibited_topic"), 1),
        ]
    );
    let ur = &reasons["groups"][1];
    assert_eq!(ur["totals"]["completed"], 1);
    assert_eq!(ur["totals"]["failed"], 1);
    assert_eq!(ur["totals"]["retried"], 1);
    assert_eq!(ur["totals"]["outside_working_hours"], 2);
    assert_eq!(ur["rates"]["acceptance"], 50.0);
    assert_eq!(ur["wait_seconds"]["max"], 960.0);
    let ik = &reasons["groups"][0];
    assert_eq!(ik["wait_seconds"]["count"], 2);
    assert_eq!(ik["wait_seconds"]["mean"], 495.0);

    let dest = lifecycle(&app, &token, &by("destination")).await;
    assert_eq!(group_keys(&dest), [(Value::Null, 5), (json!("billing"), 2)]);
    let agents = lifecycle(&app, &token, &by("agent")).await;
    assert_eq!(
        group_keys(&agents),
        [(Value::Null, 3), (json!("a1"), 2), (json!("a2"), 2)]
    );
    let channels = lifecycle(&app, &token, &by("channel")).await;
    assert_eq!(
        group_keys(&channels),
        [(json!("web"), 5), (json!("phone_voice"), 2)]
    );
    // Groups do not change the totals.
    assert_eq!(
        channels["totals"],
        lifecycle(&app, &token, Q).await["totals"]
    );

    let cmp = lifecycle(
        &app,
        &token,
        &format!("{Q}&compare=previous_period&group_by=agent"),
    )
    .await;
    let prev = &cmp["previous"];
    assert_eq!(prev["start_date"], "2030-02-25T00:00:00+05:30");
    assert_eq!(prev["end_date"], "2030-03-04T00:00:00+05:30");
    assert_eq!(prev["totals"]["initiated"], 1);
    assert_eq!(prev["totals"]["completed"], 1);
    assert_eq!(prev["wait_seconds"]["max"], 45.0);
    assert!(close(&prev["wait_seconds"]["p50"], 45.0, 0.005));
    assert_eq!(group_keys(prev), [(json!("a1"), 1)]);
    assert_eq!(prev["days"].as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn bounds_off_block_boundaries_are_exact() {
    let (app, token) = kolkata_app().await;
    // h2 at 03:29:59 and h1 at 03:30:00: a two-second range holds both, a one-second one h2.
    let both = lifecycle(
        &app,
        &token,
        "start_date=2030-03-04T03:29:59Z&end_date=2030-03-04T03:30:01Z&timezone=UTC&group_by=destination",
    )
    .await;
    assert_eq!(both["totals"]["initiated"], 2);
    assert_eq!(both["totals"]["outside_working_hours"], 1);
    assert_eq!(both["wait_seconds"]["max"], 960.0);
    assert_eq!(group_keys(&both), [(json!("billing"), 2)]);
    let one = lifecycle(
        &app,
        &token,
        "start_date=2030-03-04T03:29:59Z&end_date=2030-03-04T03:30:00Z&timezone=UTC",
    )
    .await;
    assert_eq!(one["totals"]["initiated"], 1);
    assert_eq!(one["totals"]["retried"], 1);
    // A range of whole blocks and edges: 03:29:59 to 18:29:31 on the 9th (h3 at 18:29:30 in).
    let mid = lifecycle(
        &app,
        &token,
        "start_date=2030-03-04T03:29:59Z&end_date=2030-03-09T18:29:31Z&timezone=Asia/Kolkata",
    )
    .await;
    assert_eq!(mid["totals"]["initiated"], 6);
    assert_eq!(mid["totals"]["abandoned"], 1);
    assert_eq!(mid["totals"]["completed"], 4);
    let sum: i64 = mid["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["initiated"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 6);
}

#[tokio::test]
async fn new_york_dst_day_and_hours_classified_in_the_configuration_zone() {
    let app = TestApp::spawn().await;
    let org = app.org("ny", None, Some("America/New_York")).await;
    let token = app.writer(&org).await;
    put_configuration(
        &app,
        &token,
        &configuration(
            "America/New_York",
            json!([{"day_span": "sunday", "start_time": "01:00", "end_time": "04:00"}]),
        ),
    )
    .await;
    // 2030-03-10 is the day New York skips 02:00–03:00 (23 hours: 05:00Z to 04:00Z).
    let times = [
        "2030-03-10T05:59:00Z", // 00:59 EST: outside
        "2030-03-10T06:30:00Z", // 01:30 EST: inside
        "2030-03-10T07:30:00Z", // 03:30 EDT: inside
        "2030-03-10T08:00:00Z", // 04:00 EDT: outside (end excluded)
        "2030-03-11T03:59:59Z", // 23:59:59 EDT: outside
        "2030-03-11T04:00:00Z", // Monday 00:00 EDT: the next day
    ];
    let mut events = vec![started("s", "2030-03-10T05:00:00Z", "sms", None)];
    for (i, t) in times.iter().enumerate() {
        events.push(initiated(
            &format!("i{i}"),
            &format!("d{i}"),
            "s",
            t,
            &["prohibited_topic"],
            None,
        ));
    }
    app.post_events_ok(&token, &events).await;
    // The organization's zone by default.
    let body = lifecycle(&app, &token, "start_date=2030-03-10&end_date=2030-03-10").await;
    assert_eq!(body["start_date"], "2030-03-10T00:00:00-05:00");
    assert_eq!(body["end_date"], "2030-03-11T00:00:00-04:00");
    assert_eq!(body["totals"]["initiated"], 5);
    assert_eq!(body["totals"]["open"], 5);
    assert_eq!(body["totals"]["outside_working_hours"], 3);
    assert_eq!(body["days"].as_array().unwrap().len(), 1);
    assert_eq!(body["days"][0]["initiated"], 5);
    let analytics: Value = app
        .get(
            "/handoff-analytics?start_date=2030-03-10&end_date=2030-03-10",
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(analytics["total_handoffs"], 5);
}

#[tokio::test]
async fn handoffs_before_the_first_configuration_are_inside_working_hours() {
    let app = TestApp::spawn().await;
    let org = app.org("early", None, None).await;
    let token = app.writer(&org).await;
    // Both handoffs are outside the one slot (Mondays 09:00-10:00) of the document stored
    // below. A revision is in force from its creation (now) on: the 2030 handoff falls under
    // it, the 2020 one under the default document (working hours off).
    let events = vec![
        started("s", "2020-03-01T09:00:00Z", "web", None),
        initiated(
            "i1",
            "old",
            "s",
            "2020-03-01T12:00:00Z",
            &["prohibited_topic"],
            None,
        ),
        initiated(
            "i2",
            "new",
            "s",
            "2030-03-10T12:00:00Z",
            &["prohibited_topic"],
            None,
        ),
    ];
    put_configuration(
        &app,
        &token,
        &configuration(
            "UTC",
            json!([{"day_span": "monday", "start_time": "09:00", "end_time": "10:00"}]),
        ),
    )
    .await;
    app.post_events_ok(&token, &events).await;
    let old = lifecycle(&app, &token, "start_date=2020-03-01&end_date=2020-03-01").await;
    assert_eq!(old["totals"]["initiated"], 1);
    assert_eq!(old["totals"]["outside_working_hours"], 0);
    let new = lifecycle(&app, &token, "start_date=2030-03-10&end_date=2030-03-10").await;
    assert_eq!(new["totals"]["outside_working_hours"], 1);
}

/// Nearest-rank percentile of sorted values.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

#[tokio::test]
async fn percentiles_are_within_2_percent_of_exact_ones_from_raw_rows() {
    let app = TestApp::spawn().await;
    let org = app.org("p", None, None).await;
    let token = app.writer(&org).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let mut events = Vec::new();
    let base = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").unwrap();
    for i in 0..400 {
        let start = base + chrono::Duration::seconds(rng.gen_range(0..10 * 86_400));
        let at = start.to_rfc3339();
        events.push(started(&format!("s{i}"), &at, "web", None));
        events.push(initiated(
            &format!("i{i}"),
            &format!("h{i}"),
            &format!("s{i}"),
            &at,
            &["insufficient_knowledge"],
            None,
        ));
        if rng.gen_bool(0.8) {
            // Log-uniform waits from 50 ms to 3 hours, in milliseconds.
            let ms = (rng.gen_range(50f64.ln()..(3.0 * 3_600_000f64).ln())).exp() as i64;
            let done = start + chrono::Duration::milliseconds(ms);
            events.push(ended(
                &format!("c{i}"),
                "handoff.completed",
                &format!("h{i}"),
                &done.to_rfc3339(),
            ));
        }
    }
    app.post_events_ok(&token, &events).await;
    let query = "start_date=2030-01-01&end_date=2030-01-10&timezone=Asia/Kolkata";
    let body = lifecycle(&app, &token, query).await;
    // Exact waits from the raw rows, by local day.
    let rows: Vec<(String, f64)> = sqlx::query_as(
        "select to_char(initiated_at at time zone 'Asia/Kolkata', 'YYYY-MM-DD'),
                extract(epoch from completed_at - initiated_at)::float8
         from handoffs where org_id = $1 and completed_at is not null
           and initiated_at >= '2030-01-01T00:00:00+05:30' and initiated_at < '2030-01-11T00:00:00+05:30'",
    )
    .bind(org.id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut all: Vec<f64> = rows.iter().map(|r| r.1).collect();
    all.sort_by(f64::total_cmp);
    let w = &body["wait_seconds"];
    assert_eq!(w["count"], all.len());
    for (k, p) in [("p50", 50.0), ("p90", 90.0), ("p95", 95.0)] {
        let exact = nearest_rank(&all, p);
        assert!(close(&w[k], exact, 0.02), "{k}: {} vs {exact}", w[k]);
    }
    assert_eq!(w["max"].as_f64().unwrap(), *all.last().unwrap());
    for day in body["days"].as_array().unwrap() {
        let mut of_day: Vec<f64> = rows
            .iter()
            .filter(|r| r.0 == day["date"].as_str().unwrap())
            .map(|r| r.1)
            .collect();
        of_day.sort_by(f64::total_cmp);
        if of_day.is_empty() {
            assert!(day["wait_p50"].is_null());
        } else {
            assert!(
                close(&day["wait_p50"], nearest_rank(&of_day, 50.0), 0.02),
                "{day}"
            );
        }
    }
}

#[tokio::test]
async fn bad_parameters_are_400_naming_them() {
    let (app, token) = kolkata_app().await;
    for (query, needle) in [
        ("group_by=team", "group_by"),
        ("compare=last_year", "compare"),
        ("start_date=yesterday", "start_date"),
        ("timezone=Mars/Olympus", "timezone"),
        ("start_date=2030-01-01&end_date=2031-06-01", "366"),
        ("startDate=2030-01-01", "startDate"),
        ("group_by=%00", ""),
    ] {
        assert_error(
            app.get(&format!("{PATH}?{query}"), &token).await,
            400,
            needle,
        )
        .await;
    }
}

#[tokio::test]
async fn auth_and_tenancy() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("res").await;
    let other = app.reseller("other").await;
    let org = app.org("acme", Some("res"), None).await;
    let stranger = app.org("stranger", Some("other"), None).await;
    let token = app.writer(&org).await;
    let stranger_token = app.writer(&stranger).await;
    app.post_events_ok(&stranger_token, &kolkata_events()).await;
    let res = app.client.get(app.url(PATH)).send().await.unwrap();
    assert_error(res, 401, "missing token").await;
    assert_error(app.get(PATH, "not-a-token").await, 401, "").await;
    // Another tenant's data never shows, and naming it is a 404.
    let mine = lifecycle(&app, &token, Q).await;
    assert_eq!(mine["totals"]["initiated"], 0);
    assert_error(
        app.get(&format!("{PATH}?organization_id={}", stranger.id), &token)
            .await,
        404,
        "not found",
    )
    .await;
    let res_token = app
        .token(Subject::Reseller(reseller.id), &[Scope::ReadAll])
        .await;
    assert_error(app.get(PATH, &res_token).await, 400, "organization_id").await;
    let body = lifecycle(&app, &res_token, &format!("{Q}&organization_id={}", org.id)).await;
    assert_eq!(body, mine);
    assert_error(
        app.get(
            &format!("{PATH}?organization_id={}", stranger.id),
            &res_token,
        )
        .await,
        404,
        "not found",
    )
    .await;
    let other_token = app
        .token(Subject::Reseller(other.id), &[Scope::ReadAll])
        .await;
    let theirs = lifecycle(
        &app,
        &other_token,
        &format!("{Q}&organization_id={}", stranger.id),
    )
    .await;
    assert_eq!(theirs["totals"]["initiated"], 7);
}

/// A batch whose lifecycle deltas are deferred (stored pending, the folder not run: the test
/// app has none) is answered exactly as if they had been written directly: the same fixture,
/// sent in batches of 3 events to two organizations, every batch of the second deferred
/// (threshold 0), gives the same bodies for every query.
#[tokio::test]
async fn deferred_deltas_are_read_before_they_are_folded() {
    use baton::store::lifecycle::pending;
    let app = TestApp::spawn().await;
    let config = configuration(
        "Asia/Kolkata",
        json!([{"day_span": "monday-friday", "start_time": "09:00", "end_time": "18:00"}]),
    );
    let mut tokens = Vec::new();
    for (slug, threshold) in [("direct", usize::MAX), ("deferred", 0)] {
        let org = app.org(slug, None, None).await;
        let token = app.writer(&org).await;
        put_configuration(&app, &token, &config).await;
        pending::set_defer_blocks(org.id, Some(threshold));
        for chunk in kolkata_events().chunks(3) {
            app.post_events_ok(&token, chunk).await;
        }
        tokens.push((org.id, token));
    }
    let count = |org: uuid::Uuid, table: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("select count(*) from {table} where org_id = $1"))
                .bind(org)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let ((direct, direct_token), (deferred, deferred_token)) = (&tokens[0], &tokens[1]);
    assert_eq!(count(*direct, "handoff_lifecycle_pending").await, 0);
    assert!(count(*deferred, "handoff_lifecycle_pending").await >= 5);
    assert_eq!(count(*deferred, "handoff_lifecycle_rollups").await, 0);
    for query in [
        Q.to_owned(),
        format!("{Q}&group_by=reason"),
        format!("{Q}&group_by=channel"),
        format!("{Q}&group_by=destination"),
        format!("{Q}&group_by=agent"),
        format!("{Q}&compare=previous_period"),
        "start_date=2030-02-20&end_date=2030-03-20".to_owned(),
        "start_date=2030-02-20&end_date=2030-03-20&timezone=America/New_York&group_by=reason"
            .to_owned(),
    ] {
        let a = lifecycle(&app, direct_token, &query).await;
        let b = lifecycle(&app, deferred_token, &query).await;
        assert_eq!(a, b, "{query}");
        assert!(
            a["totals"]["initiated"].as_i64().unwrap() > 0,
            "{query}: {a}"
        );
    }
    // `baton rebuild` replays with the threshold in force (here every step deferred) and folds
    // what it deferred in its own transaction: nothing is left pending, the rows are the direct
    // ones.
    baton::admin::rebuild(&app.pool, Some("deferred"))
        .await
        .unwrap();
    assert_eq!(count(*deferred, "handoff_lifecycle_pending").await, 0);
    let rollups = |org: uuid::Uuid| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "select coalesce(string_agg(x::text, ';' order by x::text), '')
                 from (select to_jsonb(r) - 'org_id' as x from handoff_lifecycle_rollups r
                       where org_id = $1) s",
            )
            .bind(org)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let rows = rollups(*direct).await;
    assert!(rows.len() > 1_000);
    assert_eq!(rollups(*deferred).await, rows);
}
