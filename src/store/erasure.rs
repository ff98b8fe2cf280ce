//! Erasing a session's personal data (`DELETE /v1/sessions/{session_id}`), and keeping it erased.
//!
//! Policy: personal data is what a customer could be identified by, and it feeds no figure: the
//! fields listed in [`PERSONAL_FIELDS`] (a handoff's `data`, `summary`, `explanation`, `shared_id`,
//! the operator id). Erasing a session blanks them in its handoffs and removes them from the bodies of the raw
//! events of those handoffs (the event store allows exactly that change while the transaction says
//! it is erasing; see the migration), so that every count, rollup and `baton rebuild` stays the
//! same. The erasure is recorded in `session_erasures` without the session id: only a digest of
//! it ([`session_digest`]). Ingest consults that record under the organization's ingest lock
//! ([`forget_erased`]): an event of an erased session, sent again or for the first time, is
//! stored without its personal fields, so a client's retry never brings the data back. Webhook
//! messages about the session's handoffs lose the same fields from their stored payloads.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use super::events::{NewEvent, begin_locked};
use crate::auth::OrgId;
use crate::domain::events::{EventKind, validate};

/// The personal fields: each is both a key of event bodies (`handoff.initiated`,
/// `handoff.completed`, `handoff.state`) and a column of `handoffs`, with the value the column
/// takes when erased. A new personal field is one more entry here.
pub const PERSONAL_FIELDS: &[(&str, &str)] = &[
    ("data", "'{}'::jsonb"),
    ("summary", "null"),
    ("explanation", "null"),
    ("shared_id", "null"),
    ("operator_id", "null"),
];

/// What an erasure changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    /// Handoffs of the session whose personal fields were blanked.
    pub handoffs: u64,
    /// Raw events whose bodies lost personal fields.
    pub events: u64,
}

/// The digest under which an erased session is recorded: SHA-256 of the organization id's 16
/// bytes followed by the session id's UTF-8 bytes.
pub fn session_digest(org: OrgId, session_id: &str) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(org.get().as_bytes());
    hash.update(session_id.as_bytes());
    hash.finalize().to_vec()
}

/// Erases the personal data of a session of `org`; `None` when the organization has no such
/// session. Erasing a session again changes nothing and answers the same.
pub async fn erase_session(
    pool: &PgPool,
    org: OrgId,
    session_id: &str,
) -> sqlx::Result<Option<Erased>> {
    // Under the ingest lock: a batch either comes before (and is erased with the rest) or after
    // (and finds the erasure record).
    let mut tx = begin_locked(pool, org).await?;
    let exists: bool = sqlx::query_scalar(
        "select exists(select 1 from sessions where org_id = $1 and session_id = $2)",
    )
    .bind(org.get())
    .bind(session_id)
    .fetch_one(&mut *tx)
    .await?;
    if !exists {
        return Ok(None);
    }
    let handoff_ids: Vec<String> =
        sqlx::query_scalar("select handoff_id from handoffs where org_id = $1 and session_id = $2")
            .bind(org.get())
            .bind(session_id)
            .fetch_all(&mut *tx)
            .await?;
    let blanks = PERSONAL_FIELDS
        .iter()
        .map(|(column, blank)| format!("{column} = {blank}"))
        .collect::<Vec<_>>()
        .join(", ");
    let handoffs = sqlx::query(&format!(
        "update handoffs set {blanks} where org_id = $1 and session_id = $2"
    ))
    .bind(org.get())
    .bind(session_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Every event of a handoff is in its state history (`handoff_states.event_id`), so the raw
    // events to rewrite are found by key, without scanning the organization's events.
    let fields: Vec<&str> = PERSONAL_FIELDS.iter().map(|(f, _)| *f).collect();
    // The one change the event store's trigger lets through, and only in this transaction. A
    // `set local` statement rather than `set_config()`: Citus forwards it to the shards'
    // transactions (`citus.propagate_set_commands = 'local'`, see docs/SCALING.md).
    sqlx::query("set local baton.erasing = 'on'")
        .execute(&mut *tx)
        .await?;
    let events = sqlx::query(
        r#"update events e set body = (e.body::jsonb - $3::text[])::json
           from (select distinct s.event_id from handoff_states s
                 where s.org_id = $1 and s.handoff_id = any($2)) s
           where e.org_id = $1 and e.event_id = s.event_id and e.body::jsonb ?| $3::text[]"#,
    )
    .bind(org.get())
    .bind(&handoff_ids)
    .bind(&fields)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Webhook messages about the session's handoffs (delivered, or still to be) carry the
    // handoff record: its personal fields take their erased values there too, so the delivery
    // log keeps nothing and a later attempt sends nothing of them.
    let erased_record: serde_json::Map<String, Value> = PERSONAL_FIELDS
        .iter()
        .map(|(field, _)| {
            let blank = if *field == "data" {
                Value::Object(Default::default())
            } else {
                Value::Null
            };
            ((*field).to_owned(), blank)
        })
        .collect();
    // The batches acknowledged but not yet fanned out become deliveries first, so that their
    // bodies are rewritten too.
    crate::store::webhooks::fan_out_all(&mut tx).await?;
    let keys: Vec<String> = handoff_ids.iter().map(|h| format!("handoff:{h}")).collect();
    sqlx::query(
        r#"update webhook_deliveries
           set payload = jsonb_set(payload::jsonb, '{data}', (payload::jsonb -> 'data') || $3)::text
           where org_id = $1 and ordering_key = any($2)
             and jsonb_typeof(payload::jsonb -> 'data') = 'object'"#,
    )
    .bind(org.get())
    .bind(&keys)
    .bind(Value::Object(erased_record))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        r#"insert into session_erasures (org_id, session_digest, handoffs, events)
           values ($1, $2, $3, $4)
           on conflict (org_id, session_digest) do nothing"#,
    )
    .bind(org.get())
    .bind(session_digest(org, session_id))
    .bind(i32::try_from(handoffs).unwrap_or(i32::MAX))
    .bind(i32::try_from(events).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Erased { handoffs, events }))
}

/// The batch with the personal fields removed from the events of erased sessions, or `None` when
/// no event of the batch belongs to one. Ingest calls it, under the ingest lock, only for an
/// organization that has erased sessions (it checks that with one index probe per batch).
pub(crate) async fn forget_erased(
    conn: &mut PgConnection,
    org: OrgId,
    batch: &[NewEvent],
) -> sqlx::Result<Option<Vec<NewEvent>>> {
    // The session of every event that can carry personal fields: named by the event, or by the
    // handoff it continues (initiated earlier in this batch, or stored). A new handoff event type
    // is covered by `EventKind::continued_handoff`.
    let mut session_of_handoff: HashMap<&str, &str> = HashMap::new();
    let mut stored_handoffs: HashSet<&str> = HashSet::new();
    for e in batch {
        match &e.event.kind {
            EventKind::HandoffInitiated(h) => {
                session_of_handoff.insert(&h.handoff_id, &h.session_id);
            }
            kind => {
                if let Some(handoff_id) = kind.continued_handoff() {
                    stored_handoffs.insert(handoff_id);
                }
            }
        }
    }
    let ids: Vec<&str> = stored_handoffs.into_iter().collect();
    let stored: Vec<(String, String)> = sqlx::query_as(
        r#"select h.handoff_id, h.session_id from unnest($2::text[]) as q(handoff_id)
           cross join lateral (
               select h.handoff_id, h.session_id from handoffs h
               where h.org_id = $1 and h.handoff_id = q.handoff_id
               offset 0
           ) h"#,
    )
    .bind(org.get())
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let stored: HashMap<&str, &str> = stored
        .iter()
        .map(|(h, s)| (h.as_str(), s.as_str()))
        .collect();
    let session_of = |e: &NewEvent| -> Option<String> {
        match &e.event.kind {
            EventKind::HandoffInitiated(h) => Some(h.session_id.clone()),
            kind => kind.continued_handoff().and_then(|handoff_id| {
                session_of_handoff
                    .get(handoff_id)
                    .or_else(|| stored.get(handoff_id))
                    .map(|s| (*s).to_owned())
            }),
        }
    };
    let sessions: Vec<Option<String>> = batch.iter().map(session_of).collect();
    let digests: Vec<Vec<u8>> = sessions
        .iter()
        .flatten()
        .collect::<HashSet<_>>()
        .into_iter()
        .map(|s| session_digest(org, s))
        .collect();
    let erased: HashSet<Vec<u8>> = sqlx::query_scalar(
        "select session_digest from session_erasures where org_id = $1 and session_digest = any($2)",
    )
    .bind(org.get())
    .bind(&digests)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    if erased.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(batch.len());
    for (e, session) in batch.iter().zip(&sessions) {
        let erase = session
            .as_ref()
            .is_some_and(|s| erased.contains(&session_digest(org, s)));
        out.push(if erase {
            without_personal(e)
        } else {
            e.clone()
        });
    }
    Ok(Some(out))
}

/// The event without its personal fields (validated again: they are all optional, so it stays
/// valid).
fn without_personal(e: &NewEvent) -> NewEvent {
    let mut body = e.body.clone();
    if let Value::Object(map) = &mut body {
        for (field, _) in PERSONAL_FIELDS {
            map.remove(*field);
        }
    }
    let mut problems = Vec::new();
    match validate(&body, "event", &mut problems) {
        Some(event) if problems.is_empty() => NewEvent { event, body },
        // Unreachable while every personal field is optional; keep the event as it came rather
        // than refuse a batch.
        _ => e.clone(),
    }
}
