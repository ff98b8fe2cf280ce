//! The outbox: the messages of a batch, written in the batch's own transaction, rendered when
//! the workers fan them out.
//!
//! Driven by what the batch stored, not by a list of event kinds: every new event whose wire
//! `type` is a webhook event type becomes one message, keyed (for ordering) by the object its body
//! names (`handoff_id`, else `session_id`, else `call_id`). So a new `handoff.*` event type flows
//! through as soon as it is listed in [`super::EVENT_TYPES`].
//!
//! What a message carries: the record as its batch left it (`GET /v1/handoffs/{id}`'s record for
//! `handoff.*`, the session for `session.ended`, the event's call for `call.completed`). The batch
//! stores only what each message is ([`prepare`], [`enqueue`]); the fan-out renders the current
//! record ([`records`], from `store::webhooks::fan_out`), which is the record as the batch left it
//! unless a later batch changed it. A later batch that is about to change such a record first
//! renders it as it is into `webhook_snapshots` ([`keep_snapshots`]), and the fan-out prefers the
//! snapshot. It knows which records to keep without a lookup per message: each handoff names the
//! outbox row of its latest message (`handoffs.webhook_seq`, written with the row), and a row is
//! still waiting when its `seq` is not below the smallest `seq` of the organization's rows in the
//! outbox (read with the ingest lock; rows leave the outbox oldest first).
//!
//! Cost: nothing when the organization subscribes to nothing and has nothing waiting (ingest
//! knows it from its first round trip); otherwise one `nextval` and the insert of one outbox row
//! per batch, and after the commit one notification ([`wake`]). Snapshots are rendered only for
//! records changed while a message about them waits: not when the workers keep up.

use std::collections::{HashMap, HashSet};

use chrono::SecondsFormat;
use serde_json::{Map, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::OrgId;
use crate::domain::projection::Changes;
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

/// What ingest read, for the outbox: with the lock, whether the organization subscribes and
/// where its waiting outbox rows start; with the stored rows the batch touches, the latest outbox
/// row with a message about each handoff (`handoffs.webhook_seq`) and each agent's name.
#[derive(Debug, Default)]
pub struct Stored {
    /// The organization has an enabled subscription.
    pub subscribed: bool,
    /// The smallest `seq` of its rows waiting in the outbox.
    pub waiting_from: Option<i64>,
    /// `handoff_id → webhook_seq`, for the handoffs that have one.
    pub handoff_seqs: HashMap<String, i64>,
    /// `agent_id → name`.
    pub agent_names: HashMap<String, String>,
}

/// One message of a batch.
#[derive(Debug)]
struct Message {
    /// Index of its event in the batch.
    index: usize,
    /// Its event type.
    event_type: &'static str,
    /// Its subject and ordering key: `handoff:<id>`, `session:<id>` or `call:<id>`.
    key: String,
    /// Its whole body when it is rendered at ingest (a call: the event is the data).
    body: Option<String>,
}

/// The messages of a batch, planned after its events were applied and before the projections
/// are written ([`prepare`]); written by [`enqueue`] once they are.
#[derive(Debug, Default)]
pub struct Plan {
    /// The outbox row's `seq` (taken before the row is written, so that the handoffs can point
    /// at it).
    seq: Option<i64>,
    subscriptions: Vec<(Uuid, Vec<String>)>,
    messages: Vec<Message>,
    /// The handoffs with a message in this batch.
    marked: HashSet<String>,
}

impl Plan {
    /// The `webhook_seq` ingest writes with the handoff: this batch's outbox row when the batch
    /// has a message about it.
    pub fn marker(&self, handoff_id: &str) -> Option<i64> {
        self.seq.filter(|_| self.marked.contains(handoff_id))
    }
}

/// Plans the outbox row of the events `new` of `batch` (applied in memory as `changes`, not yet
/// written), and first keeps the records that messages still waiting in the outbox show, where
/// this batch is about to change them ([`keep_snapshots`]).
pub async fn prepare(
    conn: &mut PgConnection,
    org: OrgId,
    batch: &[NewEvent],
    new: &[usize],
    stored: &Stored,
    changes: &Changes,
) -> sqlx::Result<Plan> {
    if let Some(from) = stored.waiting_from {
        keep_snapshots(&mut *conn, org, from, stored, changes).await?;
    }
    if !stored.subscribed || new.is_empty() {
        return Ok(Plan::default());
    }
    let subscriptions = store::subscriptions(&mut *conn, org).await?;
    if subscriptions.is_empty() {
        return Ok(Plan::default());
    }
    let wanted = |t: &str| {
        subscriptions
            .iter()
            .any(|(_, types)| types.iter().any(|x| x == t))
    };
    let mut marked = HashSet::new();
    let messages: Vec<Message> = new
        .iter()
        .filter_map(|&i| {
            let t = batch[i].event.type_name();
            if !super::is_event_type(t) || !wanted(t) {
                return None;
            }
            let (key, body) = match subject(&batch[i].body)? {
                Subject::Handoff(id) => {
                    marked.insert(id.to_owned());
                    (format!("handoff:{id}"), None)
                }
                Subject::Session(id) => (format!("session:{id}"), None),
                Subject::Call(id) => (
                    format!("call:{id}"),
                    Some(body(t, batch[i].event.occurred_at, &call(&batch[i].body))),
                ),
            };
            Some(Message {
                index: i,
                event_type: t,
                key,
                body,
            })
        })
        .collect();
    if messages.is_empty() {
        return Ok(Plan::default());
    }
    let seq = store::next_outbox_seq(&mut *conn).await?;
    Ok(Plan {
        seq: Some(seq),
        subscriptions,
        messages,
        marked,
    })
}

/// Before a batch changes records that messages still waiting in the outbox show, renders them
/// as they are (as the batch of the latest such message left them) into `webhook_snapshots`, so
/// that the fan-out sends what that batch acknowledged. A record changes when:
/// - its handoff changes (the handoff's `webhook_seq` names its latest message);
/// - its session ends (the handoffs of the session with a waiting message);
/// - its agent is declared or renamed (rare: every waiting message of the organization).
///
/// Earlier messages about the same record were kept by the batches that changed it since, by
/// induction; a snapshot already kept for a message is left as it is (it was taken first).
async fn keep_snapshots(
    conn: &mut PgConnection,
    org: OrgId,
    from: i64,
    stored: &Stored,
    changes: &Changes,
) -> sqlx::Result<()> {
    let mut wanted: Vec<(i64, String)> = changes
        .handoffs
        .iter()
        .filter(|h| changes.handoffs_before.contains_key(&h.handoff_id))
        .filter_map(|h| {
            let seq = *stored.handoff_seqs.get(&h.handoff_id)?;
            (seq >= from).then(|| (seq, format!("handoff:{}", h.handoff_id)))
        })
        .collect();
    let ended: Vec<&str> = changes
        .sessions
        .iter()
        .filter(|s| changes.sessions_before.contains_key(&s.session_id))
        .map(|s| s.session_id.as_str())
        .collect();
    if !ended.is_empty() {
        for (handoff_id, seq) in
            store::waiting_handoffs_of_sessions(&mut *conn, org, &ended, from).await?
        {
            wanted.push((seq, format!("handoff:{handoff_id}")));
        }
    }
    let renamed = changes
        .agents
        .iter()
        .any(|a| stored.agent_names.get(&a.agent_id) != Some(&a.name));
    if renamed {
        wanted.extend(store::waiting_subjects(&mut *conn, org).await?);
    }
    wanted.retain(|(_, key)| !key.starts_with("call:"));
    if wanted.is_empty() {
        return Ok(());
    }
    wanted.sort();
    wanted.dedup();
    let keys: Vec<&str> = wanted.iter().map(|(_, k)| k.as_str()).collect();
    let records = records(&mut *conn, org, &keys).await?;
    let (mut seqs, mut subjects, mut data) = (Vec::new(), Vec::new(), Vec::new());
    for (seq, key) in &wanted {
        if let Some(record) = records.get(key) {
            seqs.push(*seq);
            subjects.push(key.as_str());
            data.push(record.as_str());
        }
    }
    store::keep_snapshots(conn, org, &seqs, &subjects, &data).await
}

/// Writes the outbox row planned by [`prepare`] (after the batch's projections are written).
/// Once the transaction has committed, pass the answer to [`wake`].
pub async fn enqueue(
    conn: &mut PgConnection,
    org: OrgId,
    batch: &[NewEvent],
    plan: Plan,
) -> sqlx::Result<Enqueued> {
    let Some(seq) = plan.seq else {
        return Ok(Enqueued(false));
    };
    let mut rows = NewDeliveries {
        seq,
        ..NewDeliveries::default()
    };
    for (n, m) in plan.messages.into_iter().enumerate() {
        let index = i32::try_from(n + 1).unwrap_or(i32::MAX);
        for (webhook, types) in &plan.subscriptions {
            if types.iter().any(|x| x == m.event_type) {
                rows.webhook_ids.push(*webhook);
                rows.event_types.push(m.event_type);
                rows.ordering_keys.push(m.key.clone());
                rows.payload_index.push(index);
            }
        }
        rows.message_times.push(batch[m.index].event.occurred_at);
        rows.payloads.push(m.body);
    }
    store::enqueue(conn, org, &rows).await?;
    Ok(Enqueued(!rows.webhook_ids.is_empty()))
}

/// A message body: `{"type":…,"timestamp":…,"data":…}` around `data` (JSON text). The type is
/// one of [`super::EVENT_TYPES`] and the timestamp RFC 3339: neither needs escaping.
pub(crate) fn body(event_type: &str, at: chrono::DateTime<chrono::Utc>, data: &str) -> String {
    let mut payload = String::with_capacity(data.len() + 80);
    payload.push_str(r#"{"type":""#);
    payload.push_str(event_type);
    payload.push_str(r#"","timestamp":""#);
    payload.push_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    payload.push_str(r#"","data":"#);
    payload.push_str(data);
    payload.push('}');
    payload
}

/// The current records of `keys` (`handoff:<id>`: the handoff as `GET /v1/handoffs/{id}`
/// answers it; `session:<id>`: the session as that record shows it), as JSON text by key; keys
/// of records that do not exist are left out. Each record is rendered once, straight to JSON
/// text. Three statements whatever the number of keys.
pub(crate) async fn records(
    conn: &mut PgConnection,
    org: OrgId,
    keys: &[&str],
) -> sqlx::Result<HashMap<String, String>> {
    let mut handoff_ids: Vec<&str> = Vec::new();
    let mut session_ids: Vec<&str> = Vec::new();
    for key in keys {
        if let Some(id) = key.strip_prefix("handoff:") {
            handoff_ids.push(id);
        } else if let Some(id) = key.strip_prefix("session:") {
            session_ids.push(id);
        }
    }
    handoff_ids.sort_unstable();
    handoff_ids.dedup();
    session_ids.sort_unstable();
    session_ids.dedup();
    let mut out: HashMap<String, String> =
        crate::store::handoffs::details(&mut *conn, org, &handoff_ids)
            .await?
            .into_iter()
            .map(|(id, d)| (format!("handoff:{id}"), to_json(&HandoffResponse::from(d))))
            .collect();
    out.extend(
        sessions(&mut *conn, org, &session_ids)
            .await?
            .into_iter()
            .map(|(id, s)| (format!("session:{id}"), s)),
    );
    Ok(out)
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
