//! The outbox: the deliveries of a batch, written in the batch's own transaction.
//!
//! Driven by what the batch stored, not by a list of event kinds: every new event whose wire
//! `type` is a webhook event type becomes one message, keyed (for ordering) by the object its body
//! names (`handoff_id`, else `session_id`, else `call_id`), with `data` read back from the
//! projections the batch has just written, in the same transaction. So a new `handoff.*` event
//! type flows through as soon as it is listed in [`super::EVENT_TYPES`].
//!
//! Cost: nothing when the organization subscribes to nothing (ingest knows it from its first
//! round trip); otherwise two statements to read the handoffs, one for sessions, the insert of
//! one outbox row for the whole batch, and after the commit one notification ([`wake`]). The
//! workers turn that row into one delivery row per message and endpoint later
//! ([`crate::store::webhooks::fan_out`]), outside the ingest transaction.

use std::collections::{HashMap, HashSet};

use chrono::SecondsFormat;
use serde_json::{Map, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::OrgId;
use crate::http::handoffs::{HandoffResponse, HandoffSessionDto};
use crate::store::events::NewEvent;
use crate::store::webhooks::{self as store, NewDeliveries};

/// What a message is about, read from the event body.
enum Subject<'a> {
    Handoff(&'a str),
    Session(&'a str),
    Call(&'a str),
}

fn subject(body: &Value) -> Option<Subject<'_>> {
    let field = |k: &str| body.get(k).and_then(Value::as_str);
    if let Some(id) = field("handoff_id") {
        Some(Subject::Handoff(id))
    } else if let Some(id) = field("session_id") {
        Some(Subject::Session(id))
    } else {
        field("call_id").map(Subject::Call)
    }
}

/// Whether a batch enqueued deliveries (then the workers are woken after its commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "wake the workers after the commit"]
pub struct Enqueued(bool);

impl Enqueued {
    /// Nothing was enqueued (an organization without an enabled subscription).
    pub const NOTHING: Enqueued = Enqueued(false);
}

/// Writes the outbox row of the events `new` of `batch` (just applied on `conn`). Once the
/// transaction has committed, pass the answer to [`wake`].
pub async fn enqueue(
    conn: &mut PgConnection,
    org: OrgId,
    batch: &[NewEvent],
    new: &[usize],
) -> sqlx::Result<Enqueued> {
    if new.is_empty() {
        return Ok(Enqueued(false));
    }
    let subscriptions = store::subscriptions(&mut *conn, org).await?;
    if subscriptions.is_empty() {
        return Ok(Enqueued(false));
    }
    let wanted = |t: &str| {
        subscriptions
            .iter()
            .any(|(_, types)| types.iter().any(|x| x == t))
    };
    let events: Vec<(usize, &'static str, Subject<'_>)> = new
        .iter()
        .filter_map(|&i| {
            let t = batch[i].event.type_name();
            if !super::is_event_type(t) || !wanted(t) {
                return None;
            }
            subject(&batch[i].body).map(|s| (i, t, s))
        })
        .collect();
    if events.is_empty() {
        return Ok(Enqueued(false));
    }
    let mut handoff_ids: Vec<&str> = Vec::new();
    let mut session_ids: Vec<&str> = Vec::new();
    let (mut seen_h, mut seen_s) = (HashSet::new(), HashSet::new());
    for (_, _, s) in &events {
        match s {
            Subject::Handoff(id) if seen_h.insert(*id) => handoff_ids.push(id),
            Subject::Session(id) if seen_s.insert(*id) => session_ids.push(id),
            _ => {}
        }
    }
    // Each record is rendered once, straight to JSON text (no value tree), and shared by the
    // messages about it (a batch that initiates and completes a handoff sends its record twice).
    let handoffs: HashMap<String, String> =
        crate::store::handoffs::details(&mut *conn, org, &handoff_ids)
            .await?
            .into_iter()
            .map(|(id, d)| (id, to_json(&HandoffResponse::from(d))))
            .collect();
    let sessions = sessions(&mut *conn, org, &session_ids).await?;
    let mut rows = NewDeliveries::default();
    let mut ids = V7Ids::new();
    let mut payload = String::new();
    for (i, t, s) in events {
        let e = &batch[i];
        let call_data;
        let (key, data) = match s {
            Subject::Handoff(id) => (format!("handoff:{id}"), handoffs.get(id)),
            Subject::Session(id) => (format!("session:{id}"), sessions.get(id)),
            Subject::Call(id) => {
                call_data = call(&e.body);
                (format!("call:{id}"), Some(&call_data))
            }
        };
        let Some(data) = data else { continue };
        // `{"type":…,"timestamp":…,"data":…}`: the type is one of [`super::EVENT_TYPES`] and the
        // timestamp RFC 3339, neither needs escaping.
        payload.clear();
        payload.reserve(data.len() + 80);
        payload.push_str(r#"{"type":""#);
        payload.push_str(t);
        payload.push_str(r#"","timestamp":""#);
        payload.push_str(
            &e.event
                .occurred_at
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        );
        payload.push_str(r#"","data":"#);
        payload.push_str(data);
        payload.push('}');
        let index = i32::try_from(rows.payloads.len() + 1).unwrap_or(i32::MAX);
        rows.payloads.push(payload.clone());
        let message_id = format!("msg_{}", ids.next().simple());
        for (webhook, types) in &subscriptions {
            if types.iter().any(|x| x == t) {
                rows.webhook_ids.push(*webhook);
                rows.message_ids.push(message_id.clone());
                rows.event_types.push(t);
                rows.ordering_keys.push(key.clone());
                rows.payload_index.push(index);
            }
        }
    }
    store::enqueue(conn, org, &rows).await?;
    Ok(Enqueued(!rows.webhook_ids.is_empty()))
}

/// Wakes the delivery workers of every server after a batch that enqueued deliveries has
/// committed. Outside the batch's transaction: PostgreSQL serializes the commits of notifying
/// transactions (a database-wide lock held until the commit is flushed), which made concurrent
/// subscribed batches commit one after another. A notification lost here (an error, or the server
/// stopping) only delays the deliveries until the workers' next poll.
pub async fn wake(pool: &sqlx::PgPool, enqueued: Enqueued) {
    if enqueued.0
        && let Err(e) = store::notify_outbox(pool).await
    {
        tracing::warn!(error = %e, "webhooks: cannot notify the delivery workers");
    }
}

/// Version 7 UUIDs for one batch: the current millisecond and random bits from a generator
/// seeded once from the operating system. `Uuid::now_v7` reads the operating system's random
/// source for each one (a system call: an eighth of the outbox's CPU time with two ids per
/// message).
pub(crate) struct V7Ids {
    millis: u64,
    rng: rand::rngs::StdRng,
}

impl V7Ids {
    pub(crate) fn new() -> V7Ids {
        V7Ids {
            millis: u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0),
            rng: rand::SeedableRng::from_entropy(),
        }
    }

    pub(crate) fn next(&mut self) -> Uuid {
        let mut random = [0u8; 10];
        rand::Rng::fill(&mut self.rng, &mut random);
        uuid::Builder::from_unix_timestamp_millis(self.millis, &random).into_uuid()
    }
}

/// JSON text of `v` (`null` if it cannot be serialized, which these types never fail to be).
fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// The call of a `call.completed`, as JSON text: its body without the event's own fields.
fn call(body: &Value) -> String {
    let Some(m) = body.as_object() else {
        return "{}".to_owned();
    };
    let call: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "id" | "type" | "occurred_at"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    to_json(&call)
}

/// Sessions as the handoff record shows them, by id, as JSON text.
async fn sessions(
    conn: &mut PgConnection,
    org: OrgId,
    ids: &[&str],
) -> sqlx::Result<HashMap<String, String>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        r#"select s.session_id, s.channel, s.agent_id, a.name, s.started_at, s.ended_at, s.sentiment
           from unnest($2::text[]) as q(session_id)
           cross join lateral (select * from sessions s
                               where s.org_id = $1 and s.session_id = q.session_id offset 0) s
           left join agents a on a.org_id = s.org_id and a.agent_id = s.agent_id"#,
    )
    .bind(org.get())
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(session_id, channel, agent_id, agent_name, started_at, ended_at, sentiment)| {
                (
                    session_id.clone(),
                    to_json(&HandoffSessionDto {
                        session_id,
                        channel,
                        agent_id,
                        agent_name,
                        started_at,
                        ended_at,
                        sentiment,
                    }),
                )
            },
        )
        .collect())
}
