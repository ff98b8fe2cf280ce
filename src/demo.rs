//! `serve --demo`: the `demo` organization with about 90 days of realistic data, a read+write
//! token, and ready-to-paste `curl` lines.
//!
//! The data is generated deterministically (fixed seed) relative to the demo organization's
//! creation time, and goes in through the same `POST /v1/events` the platforms use (the real
//! router, in-process). A second `--demo` regenerates the same events, which are all duplicates:
//! nothing is added.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use chrono::{DateTime, Datelike, Duration, DurationRound, Timelike, Utc, Weekday};
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
/// Days of history generated.
pub const DEMO_DAYS: i64 = 90;
const SEED: u64 = 0xBA70_2026;

/// The demo organization (created on first use) and a fresh read+write token for it.
pub async fn prepare(pool: &PgPool, keys: &Keys) -> anyhow::Result<(Organization, String)> {
    let org = match store::tenants::org_by_slug(pool, DEMO_ORG).await? {
        Some(org) => org,
        None => match admin::create_org(pool, DEMO_ORG, Some("Demo Inc."), None, Some("UTC")).await
        {
            Ok(org) => org,
            // Another process created it meanwhile.
            Err(AdminError::Exists { .. }) => store::tenants::org_by_slug(pool, DEMO_ORG)
                .await?
                .ok_or_else(|| anyhow::anyhow!("demo organization vanished"))?,
            Err(e) => return Err(e.into()),
        },
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

/// Sends the demo events through the router; returns `(accepted, duplicates)`.
pub async fn load(app: &Router, token: &str, anchor: DateTime<Utc>) -> anyhow::Result<(u64, u64)> {
    let events = generate(anchor);
    let (mut accepted, mut duplicates) = (0, 0);
    for chunk in events.chunks(1_000) {
        let body = json!({ "events": chunk }).to_string();
        let req = Request::post("/v1/events")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))?;
        let res = app.clone().oneshot(req).await?;
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await?;
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

/// Prints the token and three curl lines.
pub fn print_welcome(org: &Organization, token: &str, addr: SocketAddr, loaded: (u64, u64)) {
    let base = format!("http://{addr}");
    println!(
        "Baton demo: organization `{slug}` ({id}); demo events: {new} new, {dup} already stored.\n\
         A read+write token, valid for 30 days:\n\
         \n\
         export BATON_TOKEN={token}\n\
         \n\
         curl -s \"{base}/handoff-analytics?start_date={month_ago}\" -H \"Authorization: Bearer $BATON_TOKEN\" | jq '{{total_handoffs, total_sessions, reasons}}'\n\
         curl -s \"{base}/v1/metrics?startDate={month_ago}&endDate={today}\" -H \"Authorization: Bearer $BATON_TOKEN\" | jq .data.metrics\n\
         curl -s {base}/v1/api/human_handoff/configuration -H \"Authorization: Bearer $BATON_TOKEN\" | jq .settings\n",
        slug = org.slug,
        id = org.id,
        new = loaded.0,
        dup = loaded.1,
        month_ago = (Utc::now() - Duration::days(30)).format("%Y-%m-%d"),
        today = Utc::now().format("%Y-%m-%d"),
    );
}

struct Agent {
    id: &'static str,
    name: &'static str,
}

const AGENTS: &[Agent] = &[
    Agent {
        id: "agent-aria",
        name: "Aria (billing line)",
    },
    Agent {
        id: "agent-max",
        name: "Max (technical support)",
    },
    Agent {
        id: "agent-lena",
        name: "Lena (sales)",
    },
    Agent {
        id: "agent-otto",
        name: "Otto (legacy IVR)",
    },
    Agent {
        id: "agent-ivy",
        name: "Ivy (after-hours)",
    },
];

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

fn one<'a>(rng: &mut StdRng, items: &'a [&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The demo events for history ending at `anchor`, in an order the state machine accepts.
pub fn generate(anchor: DateTime<Utc>) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let start = (anchor - Duration::days(DEMO_DAYS))
        .duration_trunc(Duration::days(1))
        .unwrap_or(anchor);
    // (time, order within its story, event)
    let mut timed: Vec<(DateTime<Utc>, u32, Value)> = Vec::new();
    let mut push = |t: DateTime<Utc>, order: u32, e: Value| timed.push((t, order, e));

    for (i, a) in AGENTS.iter().enumerate() {
        let status = if a.id == "agent-ivy" {
            "pending"
        } else {
            "active"
        };
        push(
            start,
            i as u32,
            json!({"id": format!("demo-agent-{}", a.id), "type": "agent.upserted",
            "occurred_at": ts(start), "agent_id": a.id, "name": a.name, "status": status}),
        );
    }
    let ivy_off = start + Duration::days(45);
    push(
        ivy_off,
        0,
        json!({"id": "demo-agent-ivy-inactive", "type": "agent.upserted", "occurred_at": ts(ivy_off),
        "agent_id": "agent-ivy", "name": "Ivy (after-hours)", "status": "inactive"}),
    );
    let otto_gone = start + Duration::days(60);
    push(
        otto_gone,
        0,
        json!({"id": "demo-agent-otto-deleted", "type": "agent.deleted", "occurred_at": ts(otto_gone), "agent_id": "agent-otto"}),
    );

    let mut n = 0u32;
    for day in 0..=DEMO_DAYS {
        let date = start + Duration::days(day);
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        let sessions = if weekend {
            rng.gen_range(10..20)
        } else {
            rng.gen_range(32..48)
        };
        for _ in 0..sessions {
            // Business-hour peak (10–12 and 14–16 busiest), a thin night.
            let hour = *pick(
                &mut rng,
                &[
                    (7u32, 2),
                    (8, 5),
                    (9, 9),
                    (10, 12),
                    (11, 12),
                    (12, 8),
                    (13, 9),
                    (14, 11),
                    (15, 11),
                    (16, 9),
                    (17, 6),
                    (18, 4),
                    (19, 3),
                    (20, 2),
                    (22, 1),
                    (2, 1),
                ],
            );
            let t0 =
                date + Duration::hours(hour as i64) + Duration::seconds(rng.gen_range(0..3600));
            let length = Duration::seconds(rng.gen_range(120..1500));
            if t0 + length > anchor {
                continue;
            }
            n += 1;
            story(&mut rng, n, t0, length, date, otto_gone, &mut push);
        }
    }
    timed.sort_by_key(|a| (a.0, a.1));
    timed.into_iter().map(|(_, _, e)| e).collect()
}

/// One session and whatever happens in it.
fn story(
    rng: &mut StdRng,
    n: u32,
    t0: DateTime<Utc>,
    length: Duration,
    day: DateTime<Utc>,
    otto_gone: DateTime<Utc>,
    push: &mut impl FnMut(DateTime<Utc>, u32, Value),
) {
    let sid = format!("demo-s{n}");
    let channel = *pick(rng, CHANNELS);
    let voice = channel == "phone_voice" || channel == "web_voice";
    let agent = if voice {
        // Otto takes calls until deleted; Ivy only before she was switched off, at night.
        let candidates: Vec<&Agent> = AGENTS
            .iter()
            .filter(|a| a.id != "agent-otto" || day < otto_gone)
            .filter(|a| {
                a.id != "agent-ivy" || (t0.hour() >= 18 && day < otto_gone - Duration::days(15))
            })
            .collect();
        Some(candidates[rng.gen_range(0..candidates.len())].id)
    } else if rng.gen_bool(0.7) {
        Some("agent-chat")
    } else {
        None
    };
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

    let handoffs = if rng.gen_bool(0.24) {
        if rng.gen_bool(0.06) { 2 } else { 1 }
    } else {
        0
    };
    let mut t = t0 + Duration::seconds(rng.gen_range(30..(length.num_seconds() / 2).max(31)));
    for k in 0..handoffs {
        let hid = format!("{sid}-h{k}");
        let mut reasons: Vec<&str> = vec![*pick(rng, REASONS)];
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
            let (kind, pool) = match *r {
                "prohibited_topic" => ("prohibited_topic", PROHIBITED),
                "insufficient_knowledge" => ("knowledge", KNOWLEDGE),
                "insufficient_tools" => ("tool", TOOLS),
                "based_on_instructions" | "instructions_not_clear" => ("instruction", INSTRUCTIONS),
                _ if rng.gen_bool(0.3) => ("instruction", INSTRUCTIONS),
                _ => continue,
            };
            refs.push(json!({"type": kind, "id": one(rng, pool)}));
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
        let mut initiated = json!({"id": format!("{hid}-init"), "type": "handoff.initiated", "occurred_at": ts(t),
            "handoff_id": hid, "session_id": sid, "reasons": reasons, "sentiment": sentiment, "references": refs,
            "destination": destination,
            "summary": format!("Customer on {channel} needs a person: {}.", reasons[0].replace('_', " ")),
            "data": {"customer_id": format!("C{:05}", 10_000 + n), "language": if n.is_multiple_of(7) { "de" } else { "en" }}});
        if rng.gen_bool(0.5) {
            initiated["shared_id"] = json!(format!("demo-shared-{n}-{k}"));
        }
        next(push, t, initiated);
        // 8% pass through a custom topic state, 12% fail and are retried, 3% fail for good,
        // 2% are still open in a custom state; the rest are completed.
        let fate = rng.gen_range(0..100);
        let still_open = (95..97).contains(&fate);
        let custom = fate < 8 || still_open;
        let retried = (8..20).contains(&fate);
        let failed_for_good = fate >= 97;
        t += Duration::seconds(rng.gen_range(20..240));
        if custom {
            let state = one(rng, CUSTOM_STATES);
            next(
                push,
                t,
                json!({"id": format!("{hid}-state"), "type": "handoff.state", "occurred_at": ts(t),
                "handoff_id": hid, "state": state, "data": {"topic_state": state, "verified": true}}),
            );
            t += Duration::seconds(rng.gen_range(20..120));
        }
        if retried || failed_for_good {
            next(
                push,
                t,
                json!({"id": format!("{hid}-fail"), "type": "handoff.failed", "occurred_at": ts(t),
                "handoff_id": hid, "error": "no operator available"}),
            );
            t += Duration::seconds(rng.gen_range(30..300));
        }
        if retried {
            next(
                push,
                t,
                json!({"id": format!("{hid}-retry"), "type": "handoff.initiated", "occurred_at": ts(t),
                "handoff_id": hid, "session_id": sid, "reasons": reasons, "destination": "support_queue"}),
            );
            t += Duration::seconds(rng.gen_range(20..200));
        }
        if !still_open && !failed_for_good {
            next(
                push,
                t,
                json!({"id": format!("{hid}-done"), "type": "handoff.completed", "occurred_at": ts(t),
                "handoff_id": hid, "operator_id": format!("op-{}", rng.gen_range(1..9))}),
            );
        }
        t += Duration::seconds(rng.gen_range(10..120));
    }

    let end = (t0 + length).max(t);
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

    if let (true, Some(agent)) = (voice, agent) {
        let duration = (end - t0).num_seconds() as f64 + rng.gen_range(0.0..1.0);
        let outcome = if handoffs > 0 {
            "transferred"
        } else {
            *pick(rng, &[("resolved", 78u32), ("abandoned", 14), ("other", 8)])
        };
        let mut call = json!({"id": format!("{sid}-call"), "type": "call.completed", "occurred_at": ts(end),
            "call_id": format!("call-{n}"), "agent_id": agent, "started_at": ts(t0),
            "duration_seconds": (duration * 10.0).round() / 10.0, "outcome": outcome,
            "sentiment": pick(rng, &[(Some("positive"), 45u32), (Some("neutral"), 30), (Some("negative"), 15), (None, 10)])});
        if outcome == "transferred" {
            call["escalation_reason"] = json!(one(rng, ESCALATIONS));
            if rng.gen_bool(0.7) {
                call["escalated_after_seconds"] =
                    json!(rng.gen_range(20..(duration as i64).max(21)));
            }
        }
        let mut tel = serde_json::Map::new();
        if rng.gen_bool(0.9) {
            tel.insert("ttft_ms".into(), json!(rng.gen_range(250..1400)));
        }
        if rng.gen_bool(0.85) {
            tel.insert(
                "stt_confidence".into(),
                json!((rng.gen_range(0.78..0.99f64) * 1000.0).round() / 1000.0),
            );
        }
        if rng.gen_bool(0.8) {
            let calls = rng.gen_range(0..6);
            tel.insert("tool_calls".into(), json!(calls));
            tel.insert(
                "tool_call_errors".into(),
                json!(if calls > 0 && rng.gen_bool(0.15) {
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
        next(push, end, call);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::domain::events::{Channel, EventKind, Reason, ReferenceType, validate};

    #[test]
    fn demo_data_is_deterministic_valid_and_varied() {
        let anchor = DateTime::parse_from_rfc3339("2026-11-21T12:34:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let events = generate(anchor);
        assert_eq!(events, generate(anchor), "same anchor, same events");
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
                e.occurred_at <= anchor && e.occurred_at >= anchor - Duration::days(DEMO_DAYS + 1)
            );
            assert!(ids.insert(e.id.clone()), "ids are unique");
            types.insert(e.type_name());
            match &e.kind {
                EventKind::SessionStarted { channel, .. } => {
                    channels.insert(*channel);
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
    }
}
