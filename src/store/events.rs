//! Ingestion: raw events and projections, in one transaction per batch.
//!
//! Policy: a batch takes its organization's ingest lock (a transaction-scoped advisory lock), so
//! batches of one organization apply one after another, in arrival order, while organizations
//! never wait for each other. Under the lock: raw events are inserted (`on conflict do nothing`
//! tells new ids from stored ones), stored ones are compared body to body (same → duplicate,
//! other → conflict), the rows the new events touch are loaded, the state machine runs in
//! memory ([`Projector`]), and every changed row is written back with one set-based statement
//! per table. Any refusal rolls the whole batch back. The webhook outbox rows of the new events
//! are written last, in the same transaction.
//!
//! The lock and what the batch needs to know of the organization (erased sessions, retention
//! horizon, webhook subscriptions, configuration revisions) come in one round trip
//! ([`begin_ingest`]); an organization without subscriptions or revisions costs no further
//! statement for them.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};

use crate::auth::OrgId;
use crate::domain::events::{AgentStatus, Channel, Event, EventKind, Reason};
use crate::domain::projection::{
    AgentRow, Changes, Conflict, HandoffRow, Loaded, Projector, SessionRow,
};
use crate::webhooks::outbox::{Plan, Stored};

/// What a stored batch amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Events stored now.
    pub accepted: usize,
    /// Events already stored with the same body (or repeated within the batch), ignored.
    pub duplicates: usize,
}

/// Why a batch was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// An event the state machine forbids.
    #[error("events[{}] (id `{}`): {}", .0.index, .0.event_id, .0.message)]
    State(Conflict),
    /// An event id already used with another body.
    #[error("events[{index}] (id `{event_id}`): {message}")]
    IdReused {
        /// Index in the batch.
        index: usize,
        /// The id.
        event_id: String,
        /// Where it was used before.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// One event to store: validated, with its body as received.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The validated event.
    pub event: Event,
    /// The JSON object received (kept verbatim in the event store).
    pub body: Value,
}

/// Stores a batch atomically; see the module docs.
pub async fn ingest(
    pool: &PgPool,
    org: OrgId,
    batch: &[NewEvent],
) -> Result<Ingested, IngestError> {
    // In the lock's round trip: whether the organization erased sessions, its retention
    // horizon, whether it subscribes to webhooks and whether it has a configuration.
    let (mut tx, mut known) = begin_ingest(pool, org).await?;
    let (erasures, horizon) = (known.erasures, known.horizon);
    // Events of erased sessions lose their personal fields before anything else looks at them
    // (see `erasure`): a re-sent one is then the duplicate of its erased self. Events older than
    // the retention horizon count as stored (see `retention`).
    let mut stripped = match erasures {
        true => super::erasure::forget_erased(&mut tx, org, batch).await?,
        false => None,
    };
    let unique = unique_events(stripped.as_deref().unwrap_or(batch), horizon)?;

    // Fast path: a plain insert of every event (no `on conflict`, nothing returned), which is
    // the common case. Under the ingest lock only an earlier batch can have stored one of these
    // ids; then the insert fails on the primary key, and the batch starts over on the slow path
    // that tells stored ids apart.
    let plain = insert_events(
        &mut tx,
        org,
        stripped.as_deref().unwrap_or(batch),
        &unique,
        false,
    )
    .await;
    let new: Vec<usize> = match plain {
        Ok(_) => unique,
        Err(e) if super::is_constraint(&e, "events_pkey") => {
            tx.rollback().await?;
            // The subscriptions and configuration are read again under the new lock (the
            // horizon stays the one read first, as it did).
            (tx, known) = begin_ingest(pool, org).await?;
            // Looked at again under the new lock: a session may have been erased meanwhile.
            stripped = super::erasure::forget_erased(&mut tx, org, batch).await?;
            let batch = stripped.as_deref().unwrap_or(batch);
            let unique = unique_events(batch, horizon)?;
            let inserted: HashSet<String> = insert_events(&mut tx, org, batch, &unique, true)
                .await?
                .into_iter()
                .collect();
            let stored_before: Vec<usize> = unique
                .iter()
                .copied()
                .filter(|&i| !inserted.contains(&batch[i].event.id))
                .collect();
            if !stored_before.is_empty() {
                check_resent(&mut tx, org, batch, &stored_before).await?;
            }
            unique
                .into_iter()
                .filter(|&i| inserted.contains(&batch[i].event.id))
                .collect()
        }
        Err(e) => return Err(e.into()),
    };
    let batch = stripped.as_deref().unwrap_or(batch);
    let plan = match apply_stored_known(&mut tx, org, batch, &new, &known).await {
        Ok(plan) => plan,
        Err(Applying::Refused(e)) => return Err(e),
        Err(Applying::Written(e)) => {
            tx.rollback().await?;
            return Err(refused_insert(pool, org, batch, &new, e).await);
        }
    };
    // The webhook outbox, in the same transaction: acknowledged ⇔ will be delivered. An
    // organization without an enabled subscription (read under the lock) has nothing to enqueue.
    let enqueued = crate::webhooks::outbox::enqueue(&mut tx, org, batch, plan).await?;
    tx.commit().await?;
    crate::webhooks::outbox::wake(pool, enqueued).await;
    Ok(Ingested {
        accepted: new.len(),
        duplicates: batch.len() - new.len(),
    })
}

/// The indexes of the batch's first occurrence of each id. Repeats inside the batch: the same
/// body is a duplicate, another body a conflict. Events that occurred before `horizon` (raw events
/// that old were deleted by retention, so a re-send cannot be recognised) are left out: they count
/// as duplicates.
fn unique_events(
    batch: &[NewEvent],
    horizon: Option<DateTime<Utc>>,
) -> Result<Vec<usize>, IngestError> {
    let mut first_index: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
    let mut unique: Vec<usize> = Vec::with_capacity(batch.len());
    for (i, e) in batch.iter().enumerate() {
        match first_index.get(e.event.id.as_str()) {
            None => {
                first_index.insert(&e.event.id, i);
                unique.push(i);
            }
            Some(&j) if batch[j].body == e.body => {}
            Some(&j) => {
                return Err(IngestError::IdReused {
                    index: i,
                    event_id: e.event.id.clone(),
                    message: format!("the same id is used by events[{j}] with a different body"),
                });
            }
        }
    }
    if let Some(horizon) = horizon {
        unique.retain(|&i| batch[i].event.occurred_at >= horizon);
    }
    Ok(unique)
}

/// Inserts the raw events `unique` of the batch. Plain (`skip_stored` false) it fails on the
/// first stored id; with `skip_stored` it skips them and returns the ids inserted.
async fn insert_events(
    conn: &mut PgConnection,
    org: OrgId,
    batch: &[NewEvent],
    unique: &[usize],
    skip_stored: bool,
) -> sqlx::Result<Vec<String>> {
    let ids: Vec<&str> = unique.iter().map(|&i| batch[i].event.id.as_str()).collect();
    let types: Vec<&str> = unique.iter().map(|&i| batch[i].event.type_name()).collect();
    let times: Vec<DateTime<Utc>> = unique.iter().map(|&i| batch[i].event.occurred_at).collect();
    // Sent as text: PostgreSQL only checks it is JSON (binding jsonb would convert it).
    let bodies: Vec<String> = unique.iter().map(|&i| batch[i].body.to_string()).collect();
    const INSERT: &str = r#"insert into events (org_id, event_id, type, occurred_at, body)
           select $1, e.event_id, e.type, e.occurred_at, e.body::json
           from unnest($2::text[], $3::text[], $4::timestamptz[], $5::text[])
                as e(event_id, type, occurred_at, body)"#;
    let bind = |sql| {
        sqlx::query(sql)
            .bind(org.get())
            .bind(&ids)
            .bind(&types)
            .bind(&times)
            .bind(&bodies)
    };
    if !skip_stored {
        bind(INSERT).execute(&mut *conn).await?;
        return Ok(Vec::new());
    }
    let sql = format!("{INSERT} on conflict (org_id, event_id) do nothing returning event_id");
    let rows = bind(&sql).fetch_all(&mut *conn).await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Why applying stored events failed.
pub(crate) enum Applying {
    /// The state machine refused an event, or a read failed.
    Refused(IngestError),
    /// Writing the projections back failed (a primary key: see [`refused_insert`]).
    Written(sqlx::Error),
}

impl From<sqlx::Error> for Applying {
    fn from(e: sqlx::Error) -> Applying {
        Applying::Refused(IngestError::Database(e))
    }
}

/// Applies the events `new` of `batch` (in the event store already) to the projections and the
/// rollups: the rows they touch are loaded, the state machine runs over them in order, the
/// changed rows are written back and every rollup moves by the difference. The one path from
/// events to what the endpoints read, shared by ingest and `baton rebuild`.
pub(crate) async fn apply_stored(
    conn: &mut PgConnection,
    org: OrgId,
    batch: &[NewEvent],
    new: &[usize],
) -> Result<(), Applying> {
    apply_stored_known(conn, org, batch, new, &Known::default())
        .await
        .map(|_| ())
}

/// [`apply_stored`] with what is already known of the organization (ingest reads it with the
/// lock).
async fn apply_stored_known(
    conn: &mut PgConnection,
    org: OrgId,
    batch: &[NewEvent],
    new: &[usize],
    known: &Known,
) -> Result<Plan, Applying> {
    if new.is_empty() {
        return Ok(Plan::default());
    }
    let (loaded, mut stored) = load(&mut *conn, org, batch, new).await?;
    stored.subscribed = known.webhooks;
    stored.waiting_from = known.outbox_from;
    let mut projector = Projector::new(loaded);
    for &i in new {
        projector
            .apply(i, &batch[i].event)
            .map_err(|c| Applying::Refused(IngestError::State(c)))?;
    }
    let mut changes = projector.finish();
    // Before the rows are written: records that waiting webhook messages show are kept as they
    // are, and the batch's own messages are planned (see `webhooks::outbox`).
    let plan = if stored.subscribed || stored.waiting_from.is_some() {
        crate::webhooks::outbox::prepare(&mut *conn, org, batch, new, &stored, &changes).await?
    } else {
        Plan::default()
    };
    write(&mut *conn, org, &mut changes, &plan)
        .await
        .map_err(Applying::Written)?;
    super::rollups::apply(conn, org, &changes, known.configured).await?;
    Ok(plan)
}

/// What ingest reads of an organization with its lock ([`begin_ingest`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known {
    /// Whether it erased sessions.
    pub erasures: bool,
    /// Its retention horizon.
    pub horizon: Option<DateTime<Utc>>,
    /// Whether it has an enabled webhook subscription.
    pub webhooks: bool,
    /// Whether it stored a handoff configuration revision (`None`: not read).
    pub configured: Option<bool>,
    /// The smallest `seq` of its rows waiting in the webhook outbox (`None`: none, or not read).
    pub outbox_from: Option<i64>,
}

impl Default for Known {
    /// Nothing read (`baton rebuild`): every check is made where it is needed, and nothing
    /// about webhooks is done (a rebuild fans the outbox out first and enqueues nothing).
    fn default() -> Known {
        Known {
            erasures: true,
            horizon: None,
            webhooks: false,
            configured: None,
            outbox_from: None,
        }
    }
}

/// Begins an ingest transaction: [`begin_locked`] and the organization's [`Known`] state in
/// the same round trip (`baton_ingest_begin`, migration `20261129170002`, reads it after the
/// lock is granted, so a transaction that held the lock before is seen).
async fn begin_ingest(
    pool: &PgPool,
    org: OrgId,
) -> sqlx::Result<(sqlx::Transaction<'static, sqlx::Postgres>, Known)> {
    let mut tx = pool.begin().await?;
    type Begun = (bool, Option<DateTime<Utc>>, bool, bool, Option<i64>);
    let (erasures, horizon, webhooks, configured, outbox_from): Begun = sqlx::query_as(
        "select erasures, pruned_before, webhooks, configured, outbox_from
             from baton_ingest_begin($1, $2)",
    )
    .bind(lock_key(org))
    .bind(org.get())
    .fetch_one(&mut *tx)
    .await?;
    Ok((
        tx,
        Known {
            erasures,
            horizon,
            webhooks,
            configured: Some(configured),
            outbox_from,
        },
    ))
}

/// Begins a transaction holding the organization's ingest lock.
pub(crate) async fn begin_locked(
    pool: &PgPool,
    org: OrgId,
) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    // With the lock, generic plans for the rest of the transaction (same round trip): ingest
    // looks rows up by primary key, but a custom plan for an organization the statistics do not
    // know yet (just loaded, or after a crash reset them) estimates it empty and scans all of
    // its rows through another index for every id (measured: 236 ms a lookup). A generic plan
    // does not look at the organization's id, so it keeps the primary key whatever the
    // statistics say.
    sqlx::query(
        "select pg_advisory_xact_lock($1), set_config('plan_cache_mode', 'force_generic_plan', true)",
    )
    .bind(lock_key(org))
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

/// The advisory lock key of an organization's ingest lock.
pub(crate) fn lock_key(org: OrgId) -> i64 {
    let (hi, lo) = org.get().as_u64_pair();
    (hi ^ lo) as i64
}

/// Events whose id was already stored: fine when the body is the same, a conflict otherwise.
async fn check_resent(
    conn: &mut PgConnection,
    org: OrgId,
    batch: &[NewEvent],
    indexes: &[usize],
) -> Result<(), IngestError> {
    let ids: Vec<&str> = indexes
        .iter()
        .map(|&i| batch[i].event.id.as_str())
        .collect();
    let bodies: Vec<&Value> = indexes.iter().map(|&i| &batch[i].body).collect();
    let differing: Vec<String> = sqlx::query_scalar(
        r#"select n.event_id
           from unnest($2::text[], $3::jsonb[]) as n(event_id, body)
           cross join lateral (
               select e.body from events e
               where e.org_id = $1 and e.event_id = n.event_id
               offset 0
           ) e
           where e.body::jsonb <> n.body"#,
    )
    .bind(org.get())
    .bind(&ids)
    .bind(&bodies)
    .fetch_all(&mut *conn)
    .await?;
    if let Some(index) = indexes
        .iter()
        .copied()
        .find(|&i| differing.contains(&batch[i].event.id))
    {
        return Err(IngestError::IdReused {
            index,
            event_id: batch[index].event.id.clone(),
            message: "an event with this id was already stored with a different body".to_owned(),
        });
    }
    Ok(())
}

/// Explains a write refused by a primary key: a `session.started` or `call.completed` whose
/// session or call was stored by an earlier batch (those are not looked up beforehand).
async fn refused_insert(
    pool: &PgPool,
    org: OrgId,
    batch: &[NewEvent],
    new: &[usize],
    e: sqlx::Error,
) -> IngestError {
    let (table, column) = if super::is_constraint(&e, "sessions_pkey") {
        ("sessions", "session_id")
    } else if super::is_constraint(&e, "calls_pkey") {
        ("calls", "call_id")
    } else {
        return IngestError::Database(e);
    };
    let candidates: Vec<(usize, &str)> = new
        .iter()
        .filter_map(|&i| match (&batch[i].event.kind, table) {
            (EventKind::SessionStarted(s), "sessions") => Some((i, s.session_id.as_str())),
            (EventKind::CallCompleted(c), "calls") => Some((i, c.call_id.as_str())),
            _ => None,
        })
        .collect();
    let ids: Vec<&str> = candidates.iter().map(|(_, id)| *id).collect();
    let stored: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(&format!(
        "select {column} from {table} where org_id = $1 and {column} = any($2)"
    ))
    .bind(org.get())
    .bind(&ids)
    .fetch_all(pool)
    .await;
    let stored: HashSet<String> = match stored {
        Ok(rows) => rows.into_iter().collect(),
        Err(e) => return IngestError::Database(e),
    };
    match candidates.into_iter().find(|(_, id)| stored.contains(*id)) {
        Some((index, id)) => IngestError::State(Conflict {
            index,
            event_id: batch[index].event.id.clone(),
            message: if table == "sessions" {
                format!("session `{id}` has already started")
            } else {
                format!("call `{id}` is already recorded")
            },
        }),
        None => IngestError::Database(e),
    }
}

/// Loads the stored rows the new events touch.
///
/// Each list of ids is looked up through `lateral (… offset 0)`, one index probe per id, so
/// that no plan (a generic plan made while a table was small included) scans an
/// organization's rows: a batch's cost never grows with history. (A generic plan of
/// `handoff_id = any($2)` once scanned every handoff of the organization through another index,
/// ~9 ms per batch after 75,000 handoffs.)
async fn load(
    conn: &mut PgConnection,
    org: OrgId,
    batch: &[NewEvent],
    new: &[usize],
) -> sqlx::Result<(Loaded, Stored)> {
    // Sessions started in this batch and calls are new by rule: they are not looked up (a
    // stored one makes the insert fail on its primary key, reported as a conflict by
    // `refused_insert`), which spares a lookup per event on the hot path.
    let mut started: HashSet<&str> = HashSet::new();
    let mut session_ids: HashSet<&str> = HashSet::new();
    let mut handoff_ids: HashSet<&str> = HashSet::new();
    let mut shared_ids: HashSet<&str> = HashSet::new();
    let mut agent_ids: HashSet<&str> = HashSet::new();
    for &i in new {
        match &batch[i].event.kind {
            EventKind::SessionStarted(s) => {
                started.insert(&s.session_id);
            }
            EventKind::SessionEnded(s) => {
                session_ids.insert(&s.session_id);
            }
            EventKind::HandoffInitiated(h) => {
                session_ids.insert(&h.session_id);
                handoff_ids.insert(&h.handoff_id);
                if let Some(s) = &h.shared_id {
                    shared_ids.insert(s);
                }
            }
            EventKind::HandoffCompleted(h) => {
                handoff_ids.insert(&h.handoff_id);
            }
            EventKind::HandoffFailed(h) => {
                handoff_ids.insert(&h.handoff_id);
            }
            EventKind::HandoffState(h) => {
                handoff_ids.insert(&h.handoff_id);
            }
            EventKind::HandoffAbandoned(h) => {
                handoff_ids.insert(&h.handoff_id);
            }
            EventKind::AgentUpserted(a) => {
                agent_ids.insert(&a.agent_id);
            }
            EventKind::AgentDeleted(a) => {
                agent_ids.insert(&a.agent_id);
            }
            EventKind::CallCompleted(_) => {}
        }
    }
    session_ids.retain(|id| !started.contains(id));
    let mut loaded = Loaded::default();
    let mut stored = Stored::default();
    if !session_ids.is_empty() {
        let ids: Vec<&str> = session_ids.into_iter().collect();
        let rows = sqlx::query(
            r#"select s.session_id, s.channel, s.agent_id, s.started_at, s.ended_at, s.sentiment
               from unnest($2::text[]) as q(session_id)
               cross join lateral (
                   select * from sessions s
                   where s.org_id = $1 and s.session_id = q.session_id
                   offset 0
               ) s"#,
        )
        .bind(org.get())
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let s = SessionRow {
                session_id: row.try_get("session_id")?,
                channel: parse_stored(row.try_get("channel")?, Channel::parse)?,
                agent_id: row.try_get("agent_id")?,
                started_at: row.try_get("started_at")?,
                ended_at: row.try_get("ended_at")?,
                sentiment: row.try_get("sentiment")?,
            };
            loaded.sessions.insert(s.session_id.clone(), s);
        }
    }
    if !handoff_ids.is_empty() {
        let ids: Vec<&str> = handoff_ids.into_iter().collect();
        let rows = sqlx::query(
            r#"select h.handoff_id, h.session_id, h.shared_id, h.state, h.attempts,
                      h.transitions, h.reasons, h.sentiment, h.destination, h.summary, h.data,
                      h.explanation, h.operator_id, h.error, h.initiated_at, h.last_initiated_at,
                      h.completed_at, h.failed_at, h.updated_at, h.webhook_seq
               from unnest($2::text[]) as q(handoff_id)
               cross join lateral (
                   select * from handoffs h
                   where h.org_id = $1 and h.handoff_id = q.handoff_id
                   offset 0
               ) h"#,
        )
        .bind(org.get())
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let reasons: Vec<String> = row.try_get("reasons")?;
            let data: Value = row.try_get("data")?;
            let h = HandoffRow {
                handoff_id: row.try_get("handoff_id")?,
                session_id: row.try_get("session_id")?,
                shared_id: row.try_get("shared_id")?,
                state: row.try_get("state")?,
                attempts: row.try_get("attempts")?,
                transitions: row.try_get("transitions")?,
                reasons: reasons
                    .iter()
                    .map(|r| parse_stored(r.clone(), Reason::parse))
                    .collect::<sqlx::Result<_>>()?,
                sentiment: row.try_get("sentiment")?,
                destination: row.try_get("destination")?,
                summary: row.try_get("summary")?,
                explanation: row.try_get("explanation")?,
                data: match data {
                    Value::Object(m) => m,
                    _ => Default::default(),
                },
                operator_id: row.try_get("operator_id")?,
                error: row.try_get("error")?,
                initiated_at: row.try_get("initiated_at")?,
                last_initiated_at: row.try_get("last_initiated_at")?,
                completed_at: row.try_get("completed_at")?,
                failed_at: row.try_get("failed_at")?,
                updated_at: row.try_get("updated_at")?,
            };
            if let Some(seq) = row.try_get::<Option<i64>, _>("webhook_seq")? {
                stored.handoff_seqs.insert(h.handoff_id.clone(), seq);
            }
            loaded.handoffs.insert(h.handoff_id.clone(), h);
        }
    }
    if !shared_ids.is_empty() {
        let ids: Vec<&str> = shared_ids.into_iter().collect();
        let rows: Vec<(String, String)> = sqlx::query_as(
            r#"select h.shared_id, h.handoff_id
               from unnest($2::text[]) as q(shared_id)
               cross join lateral (
                   select h.shared_id, h.handoff_id from handoffs h
                   where h.org_id = $1 and h.shared_id = q.shared_id
                   offset 0
               ) h"#,
        )
        .bind(org.get())
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        loaded.shared_ids.extend(rows);
    }
    if !agent_ids.is_empty() {
        let ids: Vec<&str> = agent_ids.into_iter().collect();
        let rows: Vec<(String, String, String, Option<DateTime<Utc>>)> = sqlx::query_as(
            r#"select a.agent_id, a.name, a.status, a.deleted_at
               from unnest($2::text[]) as q(agent_id)
               cross join lateral (
                   select * from agents a
                   where a.org_id = $1 and a.agent_id = q.agent_id
                   offset 0
               ) a"#,
        )
        .bind(org.get())
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        for (agent_id, name, status, deleted_at) in rows {
            let a = AgentRow {
                agent_id,
                name,
                status: parse_stored(status, AgentStatus::parse)?,
                deleted_at,
            };
            stored
                .agent_names
                .insert(a.agent_id.clone(), a.name.clone());
            loaded.agents.insert(a.agent_id.clone(), a);
        }
    }
    Ok((loaded, stored))
}

fn parse_stored<T>(text: String, parse: fn(&str) -> Option<T>) -> sqlx::Result<T> {
    parse(&text)
        .ok_or_else(|| sqlx::Error::Decode(format!("unexpected stored value `{text}`").into()))
}

/// The handoff rows bound by [`bind_handoffs`], as a table `h`.
const HANDOFF_ROWS: &str = r#"unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[],
           $8::text[], $9::text[], $10::text[], $11::text[], $12::jsonb[], $13::text[], $14::text[],
           $15::timestamptz[], $16::timestamptz[], $17::timestamptz[], $18::timestamptz[],
           $19::timestamptz[], $20::text[], $21::int8[])
       as h(handoff_id, session_id, shared_id, state, attempts, transitions, reasons, sentiment,
            destination, summary, data, operator_id, error, initiated_at, last_initiated_at,
            completed_at, failed_at, updated_at, explanation, webhook_seq)"#;

/// Binds `$1` (the organization) and the columns of [`HANDOFF_ROWS`]; `webhook_seq` from the
/// batch's webhook plan.
fn bind_handoffs<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    org: OrgId,
    h: &[&HandoffRow],
    plan: &Plan,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let reasons: Vec<String> = h
        .iter()
        .map(|r| {
            r.reasons
                .iter()
                .map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let data: Vec<Value> = h.iter().map(|r| Value::Object(r.data.clone())).collect();
    query
        .bind(org.get())
        .bind(h.iter().map(|r| r.handoff_id.clone()).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.session_id.clone()).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.shared_id.clone()).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.state.clone()).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.attempts).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.transitions).collect::<Vec<_>>())
        .bind(reasons)
        .bind(h.iter().map(|r| r.sentiment.clone()).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.destination.clone()).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.summary.clone()).collect::<Vec<_>>())
        .bind(data)
        .bind(h.iter().map(|r| r.operator_id.clone()).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.initiated_at).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.last_initiated_at).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.completed_at).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.failed_at).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.explanation.clone()).collect::<Vec<_>>())
        .bind(
            h.iter()
                .map(|r| plan.marker(&r.handoff_id))
                .collect::<Vec<_>>(),
        )
}

/// Writes the changed rows back, one statement per table. `changes.references` is narrowed to
/// the pairs stored now (a retry may repeat a stored reference; rollups count each pair once).
async fn write(
    conn: &mut PgConnection,
    org: OrgId,
    changes: &mut Changes,
    plan: &Plan,
) -> sqlx::Result<()> {
    // Rows that existed before the batch are updated, new ones inserted (a plain insert is
    // cheaper than an upsert, and under the ingest lock we know which is which).
    let (old, new): (Vec<&SessionRow>, Vec<&SessionRow>) = changes
        .sessions
        .iter()
        .partition(|r| changes.sessions_before.contains_key(&r.session_id));
    if !new.is_empty() {
        sqlx::query(
            r#"insert into sessions (org_id, session_id, channel, agent_id, started_at, ended_at, sentiment)
               select $1, * from unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[],
                                        $6::timestamptz[], $7::text[])"#,
        )
        .bind(org.get())
        .bind(new.iter().map(|r| r.session_id.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|r| r.channel.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|r| r.agent_id.as_deref()).collect::<Vec<_>>())
        .bind(new.iter().map(|r| r.started_at).collect::<Vec<_>>())
        .bind(new.iter().map(|r| r.ended_at).collect::<Vec<_>>())
        .bind(new.iter().map(|r| r.sentiment.as_deref()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !old.is_empty() {
        sqlx::query(
            r#"update sessions s set ended_at = u.ended_at, sentiment = u.sentiment
               from unnest($2::text[], $3::timestamptz[], $4::text[]) as u(session_id, ended_at, sentiment)
               where s.org_id = $1 and s.session_id = u.session_id"#,
        )
        .bind(org.get())
        .bind(old.iter().map(|r| r.session_id.as_str()).collect::<Vec<_>>())
        .bind(old.iter().map(|r| r.ended_at).collect::<Vec<_>>())
        .bind(old.iter().map(|r| r.sentiment.as_deref()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let (old, new): (Vec<&HandoffRow>, Vec<&HandoffRow>) = changes
        .handoffs
        .iter()
        .partition(|r| changes.handoffs_before.contains_key(&r.handoff_id));
    if !new.is_empty() {
        bind_handoffs(
            sqlx::query(&format!(
                r#"insert into handoffs (org_id, handoff_id, session_id, shared_id, state, attempts,
                       transitions, reasons, sentiment, destination, summary, data, operator_id, error,
                       initiated_at, last_initiated_at, completed_at, failed_at, updated_at,
                       explanation, webhook_seq)
                   select $1, h.handoff_id, h.session_id, h.shared_id, h.state, h.attempts,
                          h.transitions, string_to_array(h.reasons, ','), h.sentiment, h.destination,
                          h.summary, h.data, h.operator_id, h.error, h.initiated_at,
                          h.last_initiated_at, h.completed_at, h.failed_at, h.updated_at,
                          h.explanation, h.webhook_seq
                   from {HANDOFF_ROWS}"#
            )),
            org,
            &new,
            plan,
        )
        .execute(&mut *conn)
        .await?;
    }
    if !old.is_empty() {
        bind_handoffs(
            sqlx::query(&format!(
                r#"update handoffs t set
                       shared_id = h.shared_id, state = h.state, attempts = h.attempts,
                       transitions = h.transitions, reasons = string_to_array(h.reasons, ','),
                       sentiment = h.sentiment, destination = h.destination, summary = h.summary,
                       data = h.data, operator_id = h.operator_id, error = h.error,
                       last_initiated_at = h.last_initiated_at, completed_at = h.completed_at,
                       failed_at = h.failed_at, updated_at = h.updated_at,
                       explanation = h.explanation,
                       webhook_seq = coalesce(h.webhook_seq, t.webhook_seq)
                   from {HANDOFF_ROWS}
                   where t.org_id = $1 and t.handoff_id = h.handoff_id"#
            )),
            org,
            &old,
            plan,
        )
        .execute(&mut *conn)
        .await?;
    }
    if !changes.transitions.is_empty() {
        let t = &changes.transitions;
        sqlx::query(
            r#"insert into handoff_states (org_id, handoff_id, seq, state, occurred_at, event_id)
               select $1, * from unnest($2::text[], $3::int[], $4::text[], $5::timestamptz[], $6::text[])"#,
        )
        .bind(org.get())
        .bind(t.iter().map(|r| r.handoff_id.as_str()).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.state.as_str()).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !changes.references.is_empty() {
        let r = &changes.references;
        let stored: HashSet<(String, String, String)> = sqlx::query_as(
            r#"insert into handoff_references (org_id, handoff_id, ref_type, ref_id)
               select distinct $1::uuid, * from unnest($2::text[], $3::text[], $4::text[])
               on conflict do nothing
               returning handoff_id, ref_type, ref_id"#,
        )
        .bind(org.get())
        .bind(r.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>())
        .bind(r.iter().map(|(_, x)| x.kind.as_str()).collect::<Vec<_>>())
        .bind(r.iter().map(|(_, x)| x.id.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        let mut seen = HashSet::new();
        changes.references.retain(|(h, x)| {
            let key = (h.clone(), x.kind.as_str().to_owned(), x.id.clone());
            stored.contains(&key) && seen.insert(key)
        });
    }
    if !changes.agents.is_empty() {
        let a = &changes.agents;
        sqlx::query(
            r#"insert into agents (org_id, agent_id, name, status, deleted_at)
               select $1, * from unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[])
               on conflict (org_id, agent_id) do update
               set name = excluded.name, status = excluded.status, deleted_at = excluded.deleted_at"#,
        )
        .bind(org.get())
        .bind(a.iter().map(|r| r.agent_id.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.deleted_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !changes.calls.is_empty() {
        let c = &changes.calls;
        sqlx::query(
            r#"insert into calls (org_id, call_id, agent_id, started_at, duration_seconds, outcome,
                   sentiment, escalation_reason, escalated_after_seconds, ttft_ms, stt_confidence,
                   tool_calls, tool_call_errors, user_corrections, cached_tokens, total_tokens)
               select $1, * from unnest($2::text[], $3::text[], $4::timestamptz[], $5::float8[],
                   $6::text[], $7::text[], $8::text[], $9::float8[], $10::float8[], $11::float8[],
                   $12::int8[], $13::int8[], $14::int8[], $15::int8[], $16::int8[])"#,
        )
        .bind(org.get())
        .bind(c.iter().map(|r| r.call_id.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|r| r.agent_id.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|r| r.started_at).collect::<Vec<_>>())
        .bind(c.iter().map(|r| r.duration_seconds).collect::<Vec<_>>())
        .bind(c.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>())
        .bind(
            c.iter()
                .map(|r| r.sentiment.map(|s| s.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            c.iter()
                .map(|r| r.escalation_reason.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            c.iter()
                .map(|r| r.escalated_after_seconds)
                .collect::<Vec<_>>(),
        )
        .bind(c.iter().map(|r| r.telemetry.ttft_ms).collect::<Vec<_>>())
        .bind(
            c.iter()
                .map(|r| r.telemetry.stt_confidence)
                .collect::<Vec<_>>(),
        )
        .bind(c.iter().map(|r| r.telemetry.tool_calls).collect::<Vec<_>>())
        .bind(
            c.iter()
                .map(|r| r.telemetry.tool_call_errors)
                .collect::<Vec<_>>(),
        )
        .bind(
            c.iter()
                .map(|r| r.telemetry.user_corrections)
                .collect::<Vec<_>>(),
        )
        .bind(
            c.iter()
                .map(|r| r.telemetry.cached_tokens)
                .collect::<Vec<_>>(),
        )
        .bind(
            c.iter()
                .map(|r| r.telemetry.total_tokens)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
