//! The outbox: the deliveries of a batch, written in the batch's own transaction.
//!
//! Driven by what the batch stored, not by a list of event kinds: every new event whose wire
//! `type` is a webhook event type becomes one message, keyed (for ordering) by the object its body
//! names (`handoff_id`, else `session_id`, else `call_id`), with `data` read back from the
//! projections the batch has just written, in the same transaction. So a new `handoff.*` event
//! type flows through as soon as it is listed in [`super::EVENT_TYPES`].
//!
//! Cost: one primary-key probe of `webhooks` per batch when the organization subscribes to
//! nothing; otherwise two statements to read the handoffs, one for sessions, one insert.

use std::collections::{HashMap, HashSet};

use chrono::SecondsFormat;
use serde_json::{Map, Value, json};
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

/// Writes the outbox rows of the events `new` of `batch` (just applied on `conn`).
pub async fn enqueue(
    conn: &mut PgConnection,
    org: OrgId,
    batch: &[NewEvent],
    new: &[usize],
) -> sqlx::Result<()> {
    if new.is_empty() {
        return Ok(());
    }
    let subscriptions = store::subscriptions(&mut *conn, org).await?;
    if subscriptions.is_empty() {
        return Ok(());
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
        return Ok(());
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
    let handoffs: HashMap<String, Value> =
        crate::store::handoffs::details(&mut *conn, org, &handoff_ids)
            .await?
            .into_iter()
            .map(|(id, d)| (id, to_value(HandoffResponse::from(d))))
            .collect();
    let sessions = sessions(&mut *conn, org, &session_ids).await?;
    let mut rows = NewDeliveries::default();
    for (i, t, s) in events {
        let e = &batch[i];
        let (key, data) = match s {
            Subject::Handoff(id) => (format!("handoff:{id}"), handoffs.get(id).cloned()),
            Subject::Session(id) => (format!("session:{id}"), sessions.get(id).cloned()),
            Subject::Call(id) => (format!("call:{id}"), Some(call(&e.body))),
        };
        let Some(data) = data else { continue };
        let payload = json!({
            "type": t,
            "timestamp": e.event.occurred_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            "data": data,
        })
        .to_string();
        let index = i32::try_from(rows.payloads.len() + 1).unwrap_or(i32::MAX);
        rows.payloads.push(payload);
        let message_id = format!("msg_{}", Uuid::now_v7().simple());
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
    store::enqueue(conn, org, &rows).await
}

fn to_value<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The call of a `call.completed`: its body without the event's own fields.
fn call(body: &Value) -> Value {
    let mut m: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
    for k in ["id", "type", "occurred_at"] {
        m.remove(k);
    }
    Value::Object(m)
}

/// Sessions as the handoff record shows them, by id.
async fn sessions(
    conn: &mut PgConnection,
    org: OrgId,
    ids: &[&str],
) -> sqlx::Result<HashMap<String, Value>> {
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
                    to_value(HandoffSessionDto {
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
