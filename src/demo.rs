//! `serve --demo`: the `demo` organization with about 90 days of realistic data, a read+write
//! token, the dashboard's address with that token, and ready-to-paste `curl` lines.
//!
//! The data is generated deterministically (fixed seed) relative to the demo organization's
//! creation time and time zone, and goes in through the same `POST /v1/events` the platforms use
//! (the real router, in-process). A second `--demo` regenerates the same events, which are all
//! duplicates: nothing is added.
//!
//! It is meant to look like a real operation, so that every report has something to show: volume
//! grows over the 90 days and follows a weekly rhythm (weekdays busy, weekends quiet), one
//! weekday has an incident (an order-lookup tool outage) whose handoffs dominate that day, traffic
//! follows the organization's business hours in its own zone (Monday to Friday 08:00–18:00, which
//! the demo also stores as its handoff configuration's availability), the voice agents differ
//! (call lengths of 2 to 6 minutes, resolution, latency, speech recognition), every agent
//! referenced is declared with a name, failed handoffs carry varied errors, and only handoffs of
//! the last two days are still open. One handoff has fixed ids (see [`SHOWCASE_HANDOFF`]) so that
//! the README and the printed `curl` lines can look it up.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use chrono::{DateTime, Datelike, Duration, DurationRound, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;

use crate::admin::{self, AdminError};
use crate::auth::{Keys, Scope, Subject};
use crate::store::{self, tenants::Organization};

/// The demo organization's slug.
pub const DEMO_ORG: &str = "demo";
/// The demo organization's time zone (a new demo organization gets it).
pub const DEMO_TIMEZONE: &str = "Europe/Berlin";
/// Days of history generated.
pub const DEMO_DAYS: i64 = 90;
/// The handoff with fixed ids: `(handoff_id, shared_id, agent_id)`; its session is a call to that
/// agent three hours before the demo organization was created.
pub const SHOWCASE_HANDOFF: (&str, &str, &str) =
    ("demo-handoff-refund", "demo-shared-refund", "agent-aria");
/// Handoffs first initiated longer ago than this are all completed or failed.
pub const OPEN_HANDOFF_MAX_AGE_DAYS: i64 = 2;
/// Local business hours (start and end hour, Monday to Friday) of the demo organization.
const BUSINESS_HOURS: (u32, u32) = (8, 18);
const SEED: u64 = 0xBA70_2026;

/// The demo organization (created on first use) and a fresh read+write token for it.
pub async fn prepare(pool: &PgPool, keys: &Keys) -> anyhow::Result<(Organization, String)> {
    let org = match store::tenants::org_by_slug(pool, DEMO_ORG).await? {
        Some(org) => org,
        None => {
            match admin::create_org(pool, DEMO_ORG, Some("Demo Inc."), None, Some(DEMO_TIMEZONE))
                .await
            {
                Ok(org) => org,
                // Another process created it meanwhile.
                Err(AdminError::Exists { .. }) => store::tenants::org_by_slug(pool, DEMO_ORG)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("demo organization vanished"))?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let issued = admin::issue_token_for(
        pool,
        keys,
        Subject::Org(org.id),
        &[Scope::ReadAll, Scope::WriteAll],
        Duration::days(30),
    )
    .await?;
    Ok((org, issued.token))
}

/// When the demo organization was created: the end of its generated history.
pub async fn anchor(pool: &PgPool, org: &Organization) -> anyhow::Result<DateTime<Utc>> {
    let created: DateTime<Utc> =
        sqlx::query_scalar("select created_at from organizations where id = $1")
            .bind(org.id)
            .fetch_one(pool)
            .await?;
    Ok(created.duration_trunc(Duration::minutes(1))?)
}

/// One request through the router as the demo token: status, `ETag` and body.
async fn call(
    app: &Router,
    token: &str,
    request: axum::http::request::Builder,
    body: String,
) -> anyhow::Result<(axum::http::StatusCode, Option<String>, Vec<u8>)> {
    let req = request
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))?;
    let res = app.clone().oneshot(req).await?;
    let status = res.status();
    let etag = res
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await?;
    Ok((status, etag, bytes.to_vec()))
}

/// Sends the demo events through the router, and stores the demo's handoff configuration if the
/// organization never stored one; returns `(accepted, duplicates)` of the events.
///
/// The configuration goes first, and a configuration the demo writes is dated to the start of
/// the demo's history, as if the operation had set its working hours then: handoffs are
/// classified outside working hours against the configuration in force when they were
/// initiated, so the demo's after-hours handoffs show as such.
pub async fn load(
    app: &Router,
    pool: &PgPool,
    token: &str,
    org: &Organization,
    anchor: DateTime<Utc>,
) -> anyhow::Result<(u64, u64)> {
    let tz: Tz = org.timezone.parse().unwrap_or(Tz::UTC);
    if configure(app, token, &org.timezone).await? {
        let since = tz
            .from_local_datetime(
                &first_day(anchor, tz)
                    .and_hms_opt(0, 0, 0)
                    .unwrap_or_default(),
            )
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(anchor)
            - Duration::days(1);
        store::configuration::date_first_revision(pool, org.id, since).await?;
    }
    let events = generate(anchor, tz);
    let (mut accepted, mut duplicates) = (0, 0);
    for chunk in events.chunks(1_000) {
        let body = json!({ "events": chunk }).to_string();
        let (status, _, bytes) = call(app, token, Request::post("/v1/events"), body).await?;
        anyhow::ensure!(
            status.is_success(),
            "demo data refused ({status}): {}",
            String::from_utf8_lossy(&bytes)
        );
        let v: Value = serde_json::from_slice(&bytes)?;
        accepted += v["accepted"].as_u64().unwrap_or(0);
        duplicates += v["duplicates"].as_u64().unwrap_or(0);
    }
    Ok((accepted, duplicates))
}

/// Turns handoff on with the demo's business hours, once: only while the document is still the
/// default (revision 0, whose tag ends in `-0"`), and with `If-Match` so that a concurrent
/// `--demo` or a user's own write is never overwritten. A second `--demo` therefore writes
/// nothing. Returns whether it wrote.
async fn configure(app: &Router, token: &str, timezone: &str) -> anyhow::Result<bool> {
    const PATH: &str = "/v1/api/human_handoff/configuration";
    let (status, etag, bytes) = call(app, token, Request::get(PATH), String::new()).await?;
    anyhow::ensure!(
        status.is_success(),
        "demo configuration unreadable ({status})"
    );
    let Some(etag) = etag.filter(|t| t.ends_with("-0\"")) else {
        return Ok(false);
    };
    let mut document: Value = serde_json::from_slice(&bytes)?;
    let settings = &mut document["settings"];
    settings["is_active"] = json!(true);
    settings["ai_summary_active"] = json!(true);
    settings["working_hours_active"] = json!(true);
    settings["timezone"] = json!(timezone);
    settings["keywords"] = json!(["human", "agent", "operator"]);
    let (from, to) = BUSINESS_HOURS;
    document["availability"] = json!([{"day_span": "monday-friday",
        "start_time": format!("{from:02}:00"), "end_time": format!("{to:02}:00")}]);
    let (status, _, bytes) = call(
        app,
        token,
        Request::put(PATH).header(header::IF_MATCH, etag),
        document.to_string(),
    )
    .await?;
    // 412: someone configured it in between; theirs stands.
    anyhow::ensure!(
        status.is_success() || status == axum::http::StatusCode::PRECONDITION_FAILED,
        "demo configuration refused ({status}): {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(status.is_success())
}

/// The `curl` lines `--demo` prints, for a server at `addr` (each also run by `tests/readme.rs`).
pub fn curl_lines(org: &Organization, addr: SocketAddr, now: DateTime<Utc>) -> Vec<String> {
    let base = format!("http://{addr}");
    let auth = "-H \"Authorization: Bearer $BATON_TOKEN\"";
    let month_ago = (now - Duration::days(30)).format("%Y-%m-%d");
    let today = now.format("%Y-%m-%d");
    let (_, shared_id, agent) = SHOWCASE_HANDOFF;
    let slug = &org.slug;
    vec![
        format!(
            "curl -sS --fail-with-body \"{base}/handoff-analytics?start_date={month_ago}\" {auth} | jq '{{total_handoffs, total_sessions, reasons}}'"
        ),
        format!(
            "curl -sS --fail-with-body \"{base}/v1/metrics?startDate={month_ago}&endDate={today}\" {auth} | jq .data.metrics"
        ),
        format!(
            "curl -sS --fail-with-body {base}/v1/api/human_handoff/configuration {auth} | jq .settings"
        ),
        format!(
            "curl -sS --fail-with-body \"{base}/v1/handoffs?limit=5\" {auth} | jq '.handoffs[] | {{handoff_id, status, reasons, initiated_at}}'"
        ),
        format!(
            "curl -sS --fail-with-body \"{base}/v1/{slug}/{agent}/handoff_state?shared_id={shared_id}\" -H \"x-api-key: $BATON_TOKEN\" | jq"
        ),
    ]
}

/// The dashboard's address with `token` in its fragment (which browsers never send to the
/// server); an unspecified listen address (`0.0.0.0`, `[::]`) becomes loopback.
pub fn dashboard_url(addr: SocketAddr, token: &str) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}/#token={token}")
}

/// Prints the dashboard's address, the token and the curl lines.
pub fn print_welcome(org: &Organization, token: &str, addr: SocketAddr, loaded: (u64, u64)) {
    println!(
        "Baton demo: organization `{slug}` ({id}, {tz}); demo events: {new} new, {dup} already stored.\n\
         \n\
         Dashboard (open in a browser; the token stays in the tab):\n\
         \n\
         {dashboard}\n\
         \n\
         A read+write token, valid for 30 days:\n\
         \n\
         export BATON_TOKEN={token}\n\
         \n\
         Then, in the shell where you exported it (needs curl and jq):\n\
         \n\
         {lines}\n",
        slug = org.slug,
        id = org.id,
        tz = org.timezone,
        new = loaded.0,
        dup = loaded.1,
        dashboard = dashboard_url(addr, token),
        lines = curl_lines(org, addr, Utc::now()).join("\n"),
    );
}

/// A declared agent and, for voice agents, how its calls tend to go.
struct Agent {
    id: &'static str,
    name: &'static str,
    /// Status when declared at the start of the history.
    status: &'static str,
    voice: Option<Voice>,
}

/// A voice agent's character: what makes it differ from the others in the call metrics.
struct Voice {
    /// Relative share of the calls it takes in business hours (after hours: see `after_hours`).
    weight: u32,
    /// Whether it takes calls outside business hours (and only then).
    after_hours: bool,
    /// Call length in seconds, within 120..=360.
    duration: (i64, i64),
    /// Share of its calls handed to a person (transferred).
    handoff_rate: f64,
    /// Weights of resolved, abandoned and other among calls it keeps.
    outcomes: [u32; 3],
    /// Time to first token, milliseconds.
    ttft_ms: (i64, i64),
    /// Speech recognition confidence.
    stt: (f64, f64),
    /// Weights of positive, neutral, negative and unknown caller sentiment.
    sentiments: [u32; 4],
}

const AGENTS: &[Agent] = &[
    Agent {
        id: "agent-aria",
        name: "Aria (billing line)",
        status: "active",
        voice: Some(Voice {
            weight: 35,
            after_hours: false,
            duration: (150, 300),
            handoff_rate: 0.16,
            outcomes: [84, 9, 7],
            ttft_ms: (280, 650),
            stt: (0.91, 0.99),
            sentiments: [55, 28, 10, 7],
        }),
    },
    Agent {
        id: "agent-max",
        name: "Max (technical support)",
        status: "active",
        voice: Some(Voice {
            weight: 27,
            after_hours: false,
            duration: (240, 360),
            handoff_rate: 0.34,
            outcomes: [66, 18, 16],
            ttft_ms: (600, 1_300),
            stt: (0.86, 0.97),
            sentiments: [33, 35, 24, 8],
        }),
    },
    Agent {
        id: "agent-lena",
        name: "Lena (sales)",
        status: "active",
        voice: Some(Voice {
            weight: 20,
            after_hours: false,
            duration: (120, 220),
            handoff_rate: 0.11,
            outcomes: [70, 24, 6],
            ttft_ms: (250, 550),
            stt: (0.92, 0.99),
            sentiments: [62, 25, 6, 7],
        }),
    },
    Agent {
        id: "agent-otto",
        name: "Otto (legacy IVR)",
        status: "active",
        voice: Some(Voice {
            weight: 18,
            after_hours: false,
            duration: (180, 360),
            handoff_rate: 0.42,
            outcomes: [48, 37, 15],
            ttft_ms: (900, 1_900),
            stt: (0.70, 0.88),
            sentiments: [18, 34, 38, 10],
        }),
    },
    Agent {
        id: "agent-ivy",
        name: "Ivy (after-hours)",
        status: "active",
        voice: Some(Voice {
            weight: 1,
            after_hours: true,
            duration: (120, 280),
            handoff_rate: 0.22,
            outcomes: [74, 16, 10],
            ttft_ms: (350, 800),
            stt: (0.88, 0.98),
            sentiments: [40, 35, 15, 10],
        }),
    },
    Agent {
        id: "agent-chat",
        name: "Chat assistant (web and messaging)",
        status: "active",
        voice: None,
    },
    Agent {
        id: "agent-nova",
        name: "Nova (Spanish line, in training)",
        status: "pending",
        voice: None,
    },
];

/// Day (from the start of the history) Ivy is switched off, and Otto deleted.
const IVY_OFF_DAY: i64 = 45;
const OTTO_GONE_DAY: i64 = 60;
/// The incident: the first weekday at or after this day of the history.
const INCIDENT_FROM_DAY: i64 = DEMO_DAYS - 26;
const INCIDENT_ERROR: &str = "order-lookup tool unavailable (incident INC-2041)";

const CHANNELS: &[(&str, u32)] = &[
    ("web", 34),
    ("whatsapp", 12),
    ("email", 9),
    ("phone_voice", 16),
    ("web_voice", 5),
    ("sms", 5),
    ("messenger", 6),
    ("instagram", 4),
    ("slack", 4),
    ("api", 5),
];

const REASONS: &[(&str, u32)] = &[
    ("user_requested_human_assistance", 34),
    ("ai_implied_handoff", 18),
    ("insufficient_knowledge", 16),
    ("based_on_instructions", 12),
    ("insufficient_tools", 8),
    ("instructions_not_clear", 6),
    ("prohibited_topic", 6),
];

const SENTIMENTS: &[(Option<&str>, u32)] = &[
    (Some("negative"), 30),
    (Some("frustrated"), 18),
    (Some("neutral"), 25),
    (Some("positive"), 9),
    (None, 18),
];

/// Why a handoff failed, with weights.
const ERRORS: &[(&str, u32)] = &[
    ("no operator available", 30),
    ("queue wait exceeded 5 minutes", 20),
    ("operator declined the transfer", 12),
    ("destination queue closed outside business hours", 12),
    ("CRM ticket creation failed: 502 from upstream", 8),
];
const VOICE_ERROR: &str = "SIP transfer failed: 486 Busy Here";

const INSTRUCTIONS: &[&str] = &[
    "refund-policy",
    "escalation-policy",
    "vip-customers",
    "shipping-delays",
];
const AI_PROFILES: &[&str] = &["support-default", "billing-expert"];
const KNOWLEDGE: &[&str] = &[
    "kb-returns",
    "kb-warranty",
    "kb-pricing",
    "kb-account-recovery",
    "kb-shipping",
];
const TOOLS: &[&str] = &["order-lookup", "refund-tool", "calendar-booking"];
const PROHIBITED: &[&str] = &["legal-advice", "medical-advice", "competitor-pricing"];
const CUSTOM_STATES: &[&str] = &[
    "customer_refund",
    "complaint_escalation",
    "successfully_identified",
];
const ESCALATIONS: &[&str] = &[
    "billing dispute",
    "technical issue",
    "caller asked for a human",
    "authentication failed",
];

/// Sessions started per local hour on a weekday: business hours carry most of it.
const WEEKDAY_HOURS: [u32; 24] = [
    1, 1, 0, 0, 0, 1, 2, 4, 9, 13, 15, 14, 10, 12, 14, 13, 11, 8, 5, 4, 3, 2, 2, 1,
];
/// The same on a weekend: later, flatter, no rush.
const WEEKEND_HOURS: [u32; 24] = [
    1, 0, 0, 0, 0, 0, 1, 2, 3, 5, 7, 8, 8, 7, 7, 6, 5, 4, 3, 3, 2, 2, 1, 1,
];

/// Relative volume of each weekday, Monday first (Monday's backlog, a quiet weekend).
fn weekday_factor(day: Weekday) -> f64 {
    [1.12, 1.05, 1.0, 0.98, 0.88, 0.34, 0.26][day.num_days_from_monday() as usize]
}

fn is_weekend(day: Weekday) -> bool {
    matches!(day, Weekday::Sat | Weekday::Sun)
}

/// Whether a local day and hour are within the demo's business hours.
/// The demo's waits by first reason and local hour: quick for a plain request for a person,
/// slow for a prohibited topic (a specialist queue); slower at the 09:00 rush and at lunch, and
/// twice as slow after hours.
fn wait_factor(reason: &str, hour: u32, business: bool) -> f64 {
    let by_reason = match reason {
        "user_requested_human_assistance" => 0.7,
        "ai_implied_handoff" => 0.9,
        "insufficient_knowledge" => 1.0,
        "based_on_instructions" => 1.1,
        "instructions_not_clear" => 1.2,
        "insufficient_tools" => 1.5,
        _ => 1.8,
    };
    let by_hour = match (business, hour) {
        (false, _) => 2.0,
        (true, 9) => 1.3,
        (true, 12) => 1.4,
        (true, _) => 1.0,
    };
    by_reason * by_hour
}

fn in_business_hours(day: Weekday, hour: u32) -> bool {
    !is_weekend(day) && (BUSINESS_HOURS.0..BUSINESS_HOURS.1).contains(&hour)
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen_range(0..total);
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[0].0
}

/// An index drawn with the given weights.
fn pick_index(rng: &mut StdRng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.gen_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    0
}

fn one<'a>(rng: &mut StdRng, items: &'a [&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The first local day of the history, for history ending at `anchor` in `tz`.
fn first_day(anchor: DateTime<Utc>, tz: Tz) -> NaiveDate {
    anchor.with_timezone(&tz).date_naive() - Duration::days(DEMO_DAYS)
}

/// The incident's local day: the first weekday at or after [`INCIDENT_FROM_DAY`].
pub fn incident_day(anchor: DateTime<Utc>, tz: Tz) -> NaiveDate {
    let mut day = first_day(anchor, tz) + Duration::days(INCIDENT_FROM_DAY);
    while is_weekend(day.weekday()) {
        day += Duration::days(1);
    }
    day
}

/// What a session's story needs to know about its day.
struct Day {
    index: i64,
    incident: bool,
    weekday: Weekday,
    hour: u32,
}

/// The demo events for history ending at `anchor`, in the organization's zone `tz`, in an order
/// the state machine accepts.
pub fn generate(anchor: DateTime<Utc>, tz: Tz) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let first = first_day(anchor, tz);
    let local = |date: NaiveDate, seconds: i64| {
        let t = date.and_hms_opt(0, 0, 0).unwrap_or_default() + Duration::seconds(seconds);
        tz.from_local_datetime(&t)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    };
    let start = local(first, 0).unwrap_or(anchor - Duration::days(DEMO_DAYS)) - Duration::hours(1);
    let incident = incident_day(anchor, tz);
    // (time, order within its story, event)
    let mut timed: Vec<(DateTime<Utc>, u32, Value)> = Vec::new();
    let mut push = |t: DateTime<Utc>, order: u32, e: Value| timed.push((t, order, e));

    for (i, a) in AGENTS.iter().enumerate() {
        push(
            start,
            i as u32,
            json!({"id": format!("demo-agent-{}", a.id), "type": "agent.upserted",
            "occurred_at": ts(start), "agent_id": a.id, "name": a.name, "status": a.status}),
        );
    }
    let ivy_off = start + Duration::days(IVY_OFF_DAY);
    push(
        ivy_off,
        0,
        json!({"id": "demo-agent-ivy-inactive", "type": "agent.upserted", "occurred_at": ts(ivy_off),
        "agent_id": "agent-ivy", "name": "Ivy (after-hours)", "status": "inactive"}),
    );
    let otto_gone = start + Duration::days(OTTO_GONE_DAY);
    push(
        otto_gone,
        0,
        json!({"id": "demo-agent-otto-deleted", "type": "agent.deleted", "occurred_at": ts(otto_gone), "agent_id": "agent-otto"}),
    );

    let mut n = 0u32;
    for index in 0..=DEMO_DAYS {
        let date = first + Duration::days(index);
        let weekday = date.weekday();
        // Growth from 75% to 125% of the base over the history, the weekly rhythm, some noise,
        // and the incident day's flood of contacts.
        let growth = 0.75 + 0.5 * index as f64 / DEMO_DAYS as f64;
        let incident_day = date == incident;
        let surge = if incident_day { 2.2 } else { 1.0 };
        let sessions =
            (42.0 * growth * weekday_factor(weekday) * surge * rng.gen_range(0.9..1.1)).round();
        let hours = if is_weekend(weekday) {
            &WEEKEND_HOURS
        } else {
            &WEEKDAY_HOURS
        };
        for _ in 0..sessions as u32 {
            let hour = pick_index(&mut rng, hours) as u32;
            let Some(t0) = local(date, i64::from(hour) * 3600 + rng.gen_range(0..3600)) else {
                continue; // an hour skipped by a DST change
            };
            n += 1;
            let day = Day {
                index,
                incident: incident_day,
                weekday,
                hour,
            };
            story(&mut rng, n, t0, &day, anchor, &mut push);
        }
    }
    showcase(anchor, &mut push);
    timed.sort_by_key(|a| (a.0, a.1));
    timed.into_iter().map(|(_, _, e)| e).collect()
}

/// The handoff the README looks up ([`SHOWCASE_HANDOFF`]): a refund on Aria's billing line three
/// hours before `anchor`, through a custom state to completion. Fixed values, no randomness, so
/// it never shifts the rest of the data.
fn showcase(anchor: DateTime<Utc>, push: &mut impl FnMut(DateTime<Utc>, u32, Value)) {
    let (hid, shared_id, agent) = SHOWCASE_HANDOFF;
    let sid = "demo-call-refund";
    let t0 = anchor - Duration::hours(3);
    let at = |s: i64| t0 + Duration::seconds(s);
    let events = [
        (
            0,
            json!({"id": "demo-refund-start", "type": "session.started", "occurred_at": ts(at(0)),
            "session_id": sid, "channel": "phone_voice", "agent_id": agent}),
        ),
        (
            95,
            json!({"id": "demo-refund-init", "type": "handoff.initiated", "occurred_at": ts(at(95)),
            "handoff_id": hid, "session_id": sid, "shared_id": shared_id,
            "reasons": ["user_requested_human_assistance", "based_on_instructions"],
            "sentiment": "frustrated", "destination": "billing_queue",
            "references": [{"type": "instruction", "id": "refund-policy"}, {"type": "ai_profile", "id": "billing-expert"}],
            "summary": "Caller was charged twice for order A-1042 and wants a refund.",
            "data": {"customer_id": "C20417", "order_id": "A-1042", "language": "en"}}),
        ),
        (
            140,
            json!({"id": "demo-refund-state", "type": "handoff.state", "occurred_at": ts(at(140)),
            "handoff_id": hid, "state": "customer_refund",
            "data": {"refund_amount_eur": 49.9, "verified": true}}),
        ),
        (
            210,
            json!({"id": "demo-refund-done", "type": "handoff.completed", "occurred_at": ts(at(210)),
            "handoff_id": hid, "operator_id": "op-3"}),
        ),
        (
            262,
            json!({"id": "demo-refund-end", "type": "session.ended", "occurred_at": ts(at(262)),
            "session_id": sid, "sentiment": "positive"}),
        ),
        (
            262,
            json!({"id": "demo-refund-call", "type": "call.completed", "occurred_at": ts(at(262)),
            "call_id": "call-demo-refund", "agent_id": agent, "started_at": ts(at(0)),
            "duration_seconds": 262.4, "outcome": "transferred", "sentiment": "positive",
            "escalation_reason": "billing dispute", "escalated_after_seconds": 95,
            "telemetry": {"ttft_ms": 410, "stt_confidence": 0.962, "tool_calls": 2, "tool_call_errors": 0,
                "user_corrections": 0, "cached_tokens": 2100, "total_tokens": 5400}}),
        ),
    ];
    for (order, (offset, e)) in events.into_iter().enumerate() {
        push(at(offset), 10 + order as u32, e);
    }
}

/// One session and whatever happens in it.
fn story(
    rng: &mut StdRng,
    n: u32,
    t0: DateTime<Utc>,
    day: &Day,
    anchor: DateTime<Utc>,
    push: &mut impl FnMut(DateTime<Utc>, u32, Value),
) {
    let sid = format!("demo-s{n}");
    let channel = *pick(rng, CHANNELS);
    let business = in_business_hours(day.weekday, day.hour);
    let voice = if channel == "phone_voice" || channel == "web_voice" {
        // Business hours: the day agents (Otto until deleted). After hours: Ivy while she is on,
        // else the day agents' lines stay open.
        let candidates: Vec<(&Agent, &Voice)> = AGENTS
            .iter()
            .filter_map(|a| a.voice.as_ref().map(|v| (a, v)))
            .filter(|(a, _)| a.id != "agent-otto" || day.index < OTTO_GONE_DAY)
            .filter(|(_, v)| {
                if !business && day.index < IVY_OFF_DAY {
                    v.after_hours
                } else {
                    !v.after_hours
                }
            })
            .collect();
        let weights: Vec<u32> = candidates.iter().map(|(_, v)| v.weight).collect();
        Some(candidates[pick_index(rng, &weights)])
    } else {
        None
    };
    let agent = match voice {
        Some((a, _)) => Some(a.id),
        None if rng.gen_bool(0.7) => Some("agent-chat"),
        None => None,
    };
    // A call lasts its agent's 2–6 minutes; a chat 2–25.
    let length = match voice {
        Some((_, v)) => rng.gen_range(v.duration.0..=v.duration.1),
        None => rng.gen_range(120..1500),
    };
    if t0 + Duration::seconds(length) > anchor - Duration::minutes(5) {
        return;
    }
    let mut order = 10;
    let mut next = |push: &mut dyn FnMut(DateTime<Utc>, u32, Value), t: DateTime<Utc>, e: Value| {
        order += 1;
        push(t, order, e);
    };
    next(
        push,
        t0,
        json!({"id": format!("{sid}-start"), "type": "session.started", "occurred_at": ts(t0),
        "session_id": sid, "channel": channel, "agent_id": agent}),
    );

    let handoff_rate = match (voice, day.incident) {
        (_, true) => 0.6,
        (Some((_, v)), false) => v.handoff_rate,
        (None, false) => 0.24,
    };
    let handoffs = if rng.gen_bool(handoff_rate) {
        if voice.is_none() && rng.gen_bool(0.06) {
            2
        } else {
            1
        }
    } else {
        0
    };
    let offset = rng.gen_range(30..(length / 2).max(31));
    let mut t = t0 + Duration::seconds(offset);
    let recent = t0 > anchor - Duration::days(OPEN_HANDOFF_MAX_AGE_DAYS);
    for k in 0..handoffs {
        let hid = format!("{sid}-h{k}");
        // On the incident day most handoffs are the order-lookup tool failing.
        let outage = day.incident && rng.gen_bool(0.8);
        let mut reasons: Vec<&str> = vec![if outage {
            "insufficient_tools"
        } else {
            *pick(rng, REASONS)
        }];
        let extra = *pick(rng, &[(0usize, 70), (1, 25), (2, 5)]);
        while reasons.len() < 1 + extra {
            let r = *pick(rng, REASONS);
            if !reasons.contains(&r) {
                reasons.push(r);
            }
        }
        let mut refs = Vec::new();
        if rng.gen_bool(0.7) {
            refs.push(json!({"type": "ai_profile", "id": one(rng, AI_PROFILES)}));
        }
        for r in &reasons {
            let (kind, id) = match *r {
                "insufficient_tools" if outage => ("tool", "order-lookup"),
                "prohibited_topic" => ("prohibited_topic", one(rng, PROHIBITED)),
                "insufficient_knowledge" => ("knowledge", one(rng, KNOWLEDGE)),
                "insufficient_tools" => ("tool", one(rng, TOOLS)),
                "based_on_instructions" | "instructions_not_clear" => {
                    ("instruction", one(rng, INSTRUCTIONS))
                }
                _ if rng.gen_bool(0.3) => ("instruction", one(rng, INSTRUCTIONS)),
                _ => continue,
            };
            refs.push(json!({"type": kind, "id": id}));
        }
        let sentiment = *pick(rng, SENTIMENTS);
        let destination = *pick(
            rng,
            &[
                ("support_queue", 5u32),
                ("billing_queue", 3),
                ("tech_queue", 2),
            ],
        );
        let summary = if outage {
            "Order lookup is down; the customer needs a person to find their order.".to_owned()
        } else {
            format!(
                "Customer on {channel} needs a person: {}.",
                reasons[0].replace('_', " ")
            )
        };
        let mut initiated = json!({"id": format!("{hid}-init"), "type": "handoff.initiated", "occurred_at": ts(t),
            "handoff_id": hid, "session_id": sid, "reasons": reasons, "sentiment": sentiment, "references": refs,
            "destination": destination, "summary": summary,
            "data": {"customer_id": format!("C{:05}", 10_000 + n), "language": if n.is_multiple_of(7) { "de" } else { "en" }}});
        // Two handoffs in three carry the AI's reasoning (OpenCX's `explanation`), derived from
        // what is already drawn so that the random stream, and every other figure, is unchanged.
        if !n.is_multiple_of(3) {
            initiated["explanation"] = json!(explanation(reasons[0], outage));
        }
        if rng.gen_bool(0.5) {
            initiated["shared_id"] = json!(format!("demo-shared-{n}-{k}"));
        }
        next(push, t, initiated);
        // 8% pass through a custom topic state, 12% fail and are retried, 3% fail for good (more
        // during the incident and after hours), and 2% of the last two days' are still open in
        // a custom state; 4% are abandoned by the customer before a person accepts (more of
        // those waiting long: a queue-bound reason, or after hours); the rest are completed.
        let fate = rng.gen_range(0..100);
        let still_open = (95..97).contains(&fate) && recent;
        let custom = fate < 8 || still_open;
        let retried = (8..20).contains(&fate) || (outage && fate < 40);
        let failed_for_good = fate >= 97 || (!business && fate >= 90);
        let abandoned = !failed_for_good
            && ((20..24).contains(&fate)
                || (!business && (24..28).contains(&fate))
                || (reasons[0] == "user_requested_human_assistance" && (28..30).contains(&fate)));
        // How long the customer waits depends on the queue the reason leads to and on the
        // hour (a morning rush, lunch, a skeleton crew after hours): a factor on the drawn
        // steps, so the random stream stays the same.
        let pace = wait_factor(reasons[0], day.hour, business);
        let step = |rng: &mut StdRng, range: std::ops::Range<i64>| {
            // Calls move faster than chats: a caller waits on the line.
            let s = rng.gen_range(range);
            let s = if voice.is_some() { s / 4 } else { s };
            Duration::seconds((s as f64 * pace).round() as i64)
        };
        t += step(rng, 20..240);
        if custom {
            let state = one(rng, CUSTOM_STATES);
            next(
                push,
                t,
                json!({"id": format!("{hid}-state"), "type": "handoff.state", "occurred_at": ts(t),
                "handoff_id": hid, "state": state, "data": {"topic_state": state, "verified": true}}),
            );
            t += step(rng, 20..120);
        }
        if retried || failed_for_good {
            let error = if outage {
                INCIDENT_ERROR
            } else if voice.is_some() && rng.gen_bool(0.3) {
                VOICE_ERROR
            } else if !business {
                "destination queue closed outside business hours"
            } else {
                *pick(rng, ERRORS)
            };
            next(
                push,
                t,
                json!({"id": format!("{hid}-fail"), "type": "handoff.failed", "occurred_at": ts(t),
                "handoff_id": hid, "error": error}),
            );
            t += step(rng, 30..300);
        }
        if retried && !failed_for_good {
            next(
                push,
                t,
                json!({"id": format!("{hid}-retry"), "type": "handoff.initiated", "occurred_at": ts(t),
                "handoff_id": hid, "session_id": sid, "reasons": reasons, "destination": "support_queue"}),
            );
            t += step(rng, 20..200);
        }
        if !still_open && !failed_for_good {
            // Drawn for abandoned handoffs too, so that the random stream stays the same.
            let operator = format!("op-{}", rng.gen_range(1..9));
            let end = if abandoned {
                json!({"id": format!("{hid}-abandoned"), "type": "handoff.abandoned",
                "occurred_at": ts(t), "handoff_id": hid})
            } else {
                json!({"id": format!("{hid}-done"), "type": "handoff.completed", "occurred_at": ts(t),
                "handoff_id": hid, "operator_id": operator})
            };
            next(push, t, end);
        }
        t += step(rng, 10..120);
    }

    let end = (t0 + Duration::seconds(length)).max(t);
    let session_sentiment = *pick(
        rng,
        &[
            (Some("positive"), 40u32),
            (Some("neutral"), 30),
            (Some("negative"), 15),
            (None, 15),
        ],
    );
    next(
        push,
        end,
        json!({"id": format!("{sid}-end"), "type": "session.ended", "occurred_at": ts(end),
        "session_id": sid, "sentiment": session_sentiment}),
    );

    if let Some((agent, v)) = voice {
        // The call is the agent's part of the conversation: `length`, whatever the people did
        // after a transfer.
        let duration = length as f64 + f64::from(rng.gen_range(0..10u8)) / 10.0;
        let outcome = if handoffs > 0 {
            "transferred"
        } else {
            ["resolved", "abandoned", "other"][pick_index(rng, &v.outcomes)]
        };
        let sentiment = [Some("positive"), Some("neutral"), Some("negative"), None]
            [pick_index(rng, &v.sentiments)];
        let call_end = t0 + Duration::seconds(length);
        let mut call = json!({"id": format!("{sid}-call"), "type": "call.completed", "occurred_at": ts(call_end),
            "call_id": format!("call-{n}"), "agent_id": agent.id, "started_at": ts(t0),
            "duration_seconds": duration, "outcome": outcome, "sentiment": sentiment});
        if outcome == "transferred" {
            call["escalation_reason"] = json!(if day.incident {
                "technical issue"
            } else {
                one(rng, ESCALATIONS)
            });
            if rng.gen_bool(0.7) {
                call["escalated_after_seconds"] = json!(offset);
            }
        }
        let mut tel = serde_json::Map::new();
        if rng.gen_bool(0.9) {
            tel.insert(
                "ttft_ms".into(),
                json!(rng.gen_range(v.ttft_ms.0..v.ttft_ms.1)),
            );
        }
        if rng.gen_bool(0.85) {
            tel.insert(
                "stt_confidence".into(),
                json!((rng.gen_range(v.stt.0..v.stt.1) * 1000.0).round() / 1000.0),
            );
        }
        if rng.gen_bool(0.8) {
            let calls = rng.gen_range(0..6);
            let error_rate = if day.incident { 0.6 } else { 0.12 };
            tel.insert("tool_calls".into(), json!(calls));
            tel.insert(
                "tool_call_errors".into(),
                json!(if calls > 0 && rng.gen_bool(error_rate) {
                    1
                } else {
                    0
                }),
            );
        }
        if rng.gen_bool(0.8) {
            tel.insert(
                "user_corrections".into(),
                json!(*pick(rng, &[(0u32, 70), (1, 20), (2, 10)])),
            );
        }
        if rng.gen_bool(0.75) {
            let total = rng.gen_range(1500..9000);
            tel.insert("cached_tokens".into(), json!(rng.gen_range(0..total)));
            tel.insert("total_tokens".into(), json!(total));
        }
        call["telemetry"] = Value::Object(tel);
        next(push, call_end, call);
    }
}

/// The AI's reasoning for a handoff of the demo (OpenCX's `explanation`).
fn explanation(reason: &str, outage: bool) -> &'static str {
    if outage {
        return "The order-lookup tool returned errors three times; without it the order cannot be found, so a person has to look it up.";
    }
    match reason {
        "ai_implied_handoff" => {
            "The conversation went in circles and the customer's frustration grew; a person is more likely to resolve it."
        }
        "based_on_instructions" => "The instructions require a person for this kind of request.",
        "instructions_not_clear" => {
            "The instructions do not say how to handle this case, and guessing could mislead the customer."
        }
        "insufficient_knowledge" => "No knowledge article answers the question with confidence.",
        "insufficient_tools" => "No available tool can perform the change the customer asked for.",
        "prohibited_topic" => "The topic is one the AI must not discuss.",
        _ => "The customer asked to speak to a person.",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::domain::events::{Channel, EventKind, Reason, ReferenceType, validate};

    fn anchor() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-21T12:34:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn berlin() -> Tz {
        DEMO_TIMEZONE.parse().unwrap()
    }

    fn events() -> Vec<Value> {
        generate(anchor(), berlin())
    }

    fn time(e: &Value, field: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(e[field].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    }

    fn of_type<'a>(events: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
        events.iter().filter(move |e| e["type"] == kind)
    }

    /// Sessions started per local day.
    fn sessions_per_day(events: &[Value]) -> HashMap<NaiveDate, u32> {
        let mut days = HashMap::new();
        for e in of_type(events, "session.started") {
            *days
                .entry(time(e, "occurred_at").with_timezone(&berlin()).date_naive())
                .or_insert(0) += 1;
        }
        days
    }

    #[test]
    fn demo_data_is_deterministic_valid_and_varied() {
        let anchor = anchor();
        let events = events();
        assert_eq!(
            events,
            generate(anchor, berlin()),
            "same anchor, same events"
        );
        let (mut channels, mut reasons, mut refs, mut types) = (
            HashSet::new(),
            HashSet::new(),
            HashSet::new(),
            HashSet::new(),
        );
        let (mut combined, mut null_sentiment, mut retries, mut sessions) = (0, 0, 0, 0);
        let mut ids = HashSet::new();
        for (i, value) in events.iter().enumerate() {
            let mut problems = Vec::new();
            let e = validate(value, &format!("events[{i}]"), &mut problems)
                .unwrap_or_else(|| panic!("{problems:?}"));
            assert!(
                e.occurred_at <= anchor && e.occurred_at >= anchor - Duration::days(DEMO_DAYS + 2)
            );
            assert!(ids.insert(e.id.clone()), "ids are unique");
            types.insert(e.type_name());
            match &e.kind {
                EventKind::SessionStarted(s) => {
                    channels.insert(s.channel);
                    sessions += 1;
                }
                EventKind::HandoffInitiated(_) if e.id.ends_with("-retry") => retries += 1,
                EventKind::HandoffInitiated(h) => {
                    reasons.extend(h.reasons.iter().copied());
                    refs.extend(h.references.iter().map(|r| r.kind));
                    combined += usize::from(h.reasons.len() > 1);
                    null_sentiment += usize::from(h.sentiment.is_none());
                }
                _ => {}
            }
        }
        assert!((2_000..5_000).contains(&sessions), "{sessions} sessions");
        assert_eq!(channels.len(), Channel::ALL.len());
        assert_eq!(reasons.len(), Reason::ALL.len());
        assert_eq!(refs.len(), ReferenceType::ALL.len());
        assert_eq!(types.len(), crate::domain::events::EVENT_TYPES.len());
        assert!(
            combined > 50 && null_sentiment > 50 && retries > 20,
            "{combined} {null_sentiment} {retries}"
        );
        // Another zone, another history: the zone matters to the data.
        assert_ne!(events, generate(anchor, Tz::UTC));
    }

    #[test]
    fn weekdays_are_busier_than_weekends() {
        let (mut weekday, mut weekend) = ((0u32, 0u32), (0u32, 0u32));
        let incident = incident_day(anchor(), berlin());
        for (day, n) in sessions_per_day(&events()) {
            if day == incident {
                continue;
            }
            let slot = if is_weekend(day.weekday()) {
                &mut weekend
            } else {
                &mut weekday
            };
            slot.0 += n;
            slot.1 += 1;
        }
        let (weekday_mean, weekend_mean) = (
            f64::from(weekday.0) / f64::from(weekday.1),
            f64::from(weekend.0) / f64::from(weekend.1),
        );
        assert!(
            weekday_mean > 2.0 * weekend_mean,
            "{weekday_mean} a weekday, {weekend_mean} a weekend day"
        );
    }

    #[test]
    fn volume_grows_over_the_history() {
        let events = events();
        let anchor = anchor();
        let in_window = |from: i64, to: i64| {
            of_type(&events, "session.started")
                .filter(|e| {
                    let t = time(e, "occurred_at");
                    t >= anchor - Duration::days(from) && t < anchor - Duration::days(to)
                })
                .count()
        };
        let (first, last) = (in_window(DEMO_DAYS, DEMO_DAYS - 30), in_window(30, 0));
        assert!(
            last as f64 > 1.3 * first as f64,
            "first 30 days {first}, last 30 days {last}"
        );
    }

    #[test]
    fn one_incident_day_stands_out_with_one_dominant_reason() {
        let events = events();
        let tz = berlin();
        // Handoffs (first initiations) per local day, and their first reasons.
        let mut per_day: HashMap<NaiveDate, Vec<String>> = HashMap::new();
        for e in of_type(&events, "handoff.initiated").filter(|e| e.get("summary").is_some()) {
            per_day
                .entry(time(e, "occurred_at").with_timezone(&tz).date_naive())
                .or_default()
                .push(e["reasons"][0].as_str().unwrap().to_owned());
        }
        let mut counts: Vec<usize> = per_day.values().map(Vec::len).collect();
        counts.sort_unstable();
        let median = counts[counts.len() / 2];
        let (busiest, reasons) = per_day.iter().max_by_key(|(_, r)| r.len()).unwrap();
        assert_eq!(*busiest, incident_day(anchor(), tz));
        assert!(
            reasons.len() > 3 * median,
            "{} handoffs that day, median {median}",
            reasons.len()
        );
        let dominant = reasons
            .iter()
            .filter(|r| *r == "insufficient_tools")
            .count();
        assert!(
            dominant * 2 > reasons.len(),
            "{dominant} of {}",
            reasons.len()
        );
        // Its reason shows in the failures too.
        assert!(
            of_type(&events, "handoff.failed").any(|e| e["error"] == INCIDENT_ERROR),
            "the incident's failures name it"
        );
        let second = counts[counts.len() - 2];
        assert!(reasons.len() > 2 * second, "one spike, not several");
    }

    #[test]
    fn traffic_follows_the_organization_business_hours_in_its_zone() {
        let tz = berlin();
        let events = events();
        let mut hours = [0u32; 24];
        let (mut business, mut weekday_total) = (0, 0);
        for e in of_type(&events, "session.started") {
            let local = time(e, "occurred_at").with_timezone(&tz);
            if is_weekend(local.weekday()) {
                continue;
            }
            let hour = chrono::Timelike::hour(&local);
            hours[hour as usize] += 1;
            weekday_total += 1;
            business += usize::from(in_business_hours(local.weekday(), hour));
        }
        assert!(
            business * 100 > 75 * weekday_total,
            "{business} of {weekday_total} weekday sessions in business hours"
        );
        let peak = (0..24).max_by_key(|h| hours[*h]).unwrap() as u32;
        assert!((9..17).contains(&peak), "peak at {peak}:00 local");
        // In UTC the same sessions peak an hour or two earlier: the zone is honoured.
        let mut utc = [0u32; 24];
        for e in of_type(&events, "session.started") {
            utc[chrono::Timelike::hour(&time(e, "occurred_at")) as usize] += 1;
        }
        assert!(
            utc[6] > hours[6] * 2,
            "{} at 06 UTC, {} at 06 local",
            utc[6],
            hours[6]
        );
    }

    #[test]
    fn calls_last_two_to_six_minutes_and_agents_differ() {
        let events = events();
        let mut per_agent: HashMap<&str, (u32, u32, f64)> = HashMap::new();
        for e in of_type(&events, "call.completed") {
            let d = e["duration_seconds"].as_f64().unwrap();
            assert!((120.0..=361.0).contains(&d), "{e}");
            let entry = per_agent
                .entry(e["agent_id"].as_str().unwrap())
                .or_default();
            entry.0 += 1;
            entry.1 += u32::from(e["outcome"] == "resolved");
            entry.2 += d;
        }
        assert_eq!(per_agent.len(), 5, "{:?}", per_agent.keys());
        let resolution: Vec<f64> = per_agent
            .values()
            .map(|(n, r, _)| f64::from(*r) / f64::from(*n))
            .collect();
        let mean_length: Vec<f64> = per_agent
            .values()
            .map(|(n, _, d)| d / f64::from(*n))
            .collect();
        let spread = |v: &[f64]| {
            v.iter().copied().fold(f64::MIN, f64::max) - v.iter().copied().fold(f64::MAX, f64::min)
        };
        assert!(spread(&resolution) > 0.2, "resolution rates {resolution:?}");
        assert!(spread(&mean_length) > 90.0, "mean lengths {mean_length:?}");
    }

    #[test]
    fn some_customers_abandon_and_most_handoffs_explain_themselves() {
        let events = generate(anchor(), berlin());
        let initiated: Vec<&Value> = of_type(&events, "handoff.initiated")
            .filter(|e| e["id"].as_str().unwrap().ends_with("-init"))
            .collect();
        let abandoned: Vec<&Value> = of_type(&events, "handoff.abandoned").collect();
        let explained = initiated
            .iter()
            .filter(|e| e.get("explanation").is_some())
            .count();
        let share = abandoned.len() as f64 / initiated.len() as f64;
        assert!((0.02..0.10).contains(&share), "{share}");
        let explained_share = explained as f64 / initiated.len() as f64;
        assert!((0.6..0.7).contains(&explained_share), "{explained_share}");
        // An abandoned handoff is never also completed, and was initiated first.
        let completed: HashSet<&str> = of_type(&events, "handoff.completed")
            .map(|e| e["handoff_id"].as_str().unwrap())
            .collect();
        for e in &abandoned {
            let h = e["handoff_id"].as_str().unwrap();
            assert!(!completed.contains(h), "{h}");
            assert!(initiated.iter().any(|i| i["handoff_id"] == h), "{h}");
        }
    }

    #[test]
    fn waits_vary_by_reason_and_hour() {
        let events = events();
        // First initiation and first reason of each handoff, then its completion.
        let mut first: HashMap<&str, (DateTime<Utc>, &str)> = HashMap::new();
        for e in of_type(&events, "handoff.initiated") {
            first
                .entry(e["handoff_id"].as_str().unwrap())
                .or_insert((time(e, "occurred_at"), e["reasons"][0].as_str().unwrap()));
        }
        let mut waits: HashMap<&str, Vec<i64>> = HashMap::new();
        for e in of_type(&events, "handoff.completed") {
            let (at, reason) = first[e["handoff_id"].as_str().unwrap()];
            waits
                .entry(reason)
                .or_default()
                .push((time(e, "occurred_at") - at).num_seconds());
        }
        let median = |r: &str| {
            let mut w = waits[r].clone();
            w.sort_unstable();
            w[w.len() / 2]
        };
        assert!(
            median("prohibited_topic") > median("user_requested_human_assistance") * 2,
            "{} vs {}",
            median("prohibited_topic"),
            median("user_requested_human_assistance")
        );
        assert!(
            wait_factor("insufficient_knowledge", 3, false)
                > wait_factor("insufficient_knowledge", 10, true)
        );
    }

    #[test]
    fn every_agent_referenced_is_declared_with_a_name_first() {
        let mut declared = HashSet::new();
        let mut referenced = HashSet::new();
        for e in events() {
            match e["type"].as_str().unwrap() {
                "agent.upserted" => {
                    assert!(!e["name"].as_str().unwrap().is_empty());
                    declared.insert(e["agent_id"].as_str().unwrap().to_owned());
                }
                "session.started" | "call.completed" => {
                    if let Some(agent) = e["agent_id"].as_str() {
                        assert!(declared.contains(agent), "{agent} used before declared");
                        referenced.insert(agent.to_owned());
                    }
                }
                _ => {}
            }
        }
        assert!(referenced.len() >= 6, "{referenced:?}");
    }

    #[test]
    fn failures_carry_several_distinct_errors() {
        let errors: HashSet<String> = of_type(&events(), "handoff.failed")
            .map(|e| e["error"].as_str().unwrap().to_owned())
            .collect();
        assert!(errors.len() >= 5, "{errors:?}");
    }

    #[test]
    fn only_recent_handoffs_are_still_open() {
        let events = events();
        let anchor = anchor();
        // The last event of each handoff, and when it was first initiated.
        let mut last: HashMap<&str, &str> = HashMap::new();
        let mut first: HashMap<&str, DateTime<Utc>> = HashMap::new();
        for e in events.iter().filter(|e| e.get("handoff_id").is_some()) {
            let id = e["handoff_id"].as_str().unwrap();
            last.insert(id, e["type"].as_str().unwrap());
            first.entry(id).or_insert_with(|| time(e, "occurred_at"));
        }
        let open: Vec<_> = last
            .iter()
            .filter(|(_, t)| matches!(**t, "handoff.initiated" | "handoff.state"))
            .map(|(id, _)| (*id, first[id]))
            .collect();
        for (id, at) in &open {
            assert!(
                *at > anchor - Duration::days(OPEN_HANDOFF_MAX_AGE_DAYS),
                "{id} open since {at}"
            );
        }
        assert!(
            of_type(&events, "handoff.completed").any(|e| e["handoff_id"] == SHOWCASE_HANDOFF.0),
            "the showcase handoff is there"
        );
    }
}
