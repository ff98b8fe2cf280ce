//! Reading handoffs: PolyAI's handoff state lookup, one handoff with its history, and the
//! keyset-paginated list.
//!
//! Policy: every query filters on the caller's `org_id` first. The list is ordered by first
//! initiation time, then handoff id, both descending; a page starts strictly after a position
//! `(initiated_at, handoff_id)`, which never changes once a handoff exists (a retry keeps its
//! first initiation), so a sequence of pages neither repeats nor skips a handoff while others
//! arrive. Optional filters are added to the SQL only when given, so every shape of the query
//! gets a plan that walks `handoffs_initiated_at_idx` in order.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::auth::OrgId;
use crate::domain::handoffs::{Position, Status};

/// What PolyAI's handoff state endpoint answers with.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffState {
    /// The handoff's id.
    pub handoff_id: String,
    /// The id shared with the client's systems.
    pub shared_id: Option<String>,
    /// The payload stored at initiation, with later data merged in.
    pub data: Value,
}

/// How a handoff state is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// By `shared_id`.
    SharedId(&'a str),
    /// By `id`: a handoff id, else a session (conversation) id whose newest handoff answers.
    Id(&'a str),
}

/// The organizations an `account_id` (slug or id) may name: every organization whose slug is
/// `account`, or whose id is `account` read as a UUID. (A slug may look like a UUID, so both are
/// tried; the caller keeps the one it may read.)
pub async fn account_candidates(pool: &PgPool, account: &str) -> sqlx::Result<Vec<Uuid>> {
    let as_id = Uuid::parse_str(account).ok();
    sqlx::query_scalar(
        r#"select id from organizations
           where slug = $1 or id = $2
           order by (slug = $1) desc, id"#,
    )
    .bind(account)
    .bind(as_id)
    .fetch_all(pool)
    .await
}

/// The handoff state of a handoff in project `project` (the agent of its session, `default`
/// for sessions without an agent), or `None`.
pub async fn handoff_state(
    db: impl PgExecutor<'_>,
    org: OrgId,
    project: &str,
    lookup: Lookup<'_>,
) -> sqlx::Result<Option<HandoffState>> {
    let row = match lookup {
        Lookup::SharedId(shared_id) => {
            sqlx::query(
                r#"select h.handoff_id, h.shared_id, h.data
                   from handoffs h
                   join sessions s on s.org_id = h.org_id and s.session_id = h.session_id
                   where h.org_id = $1 and h.shared_id = $2
                     and coalesce(s.agent_id, 'default') = $3"#,
            )
            .bind(org.get())
            .bind(shared_id)
            .bind(project)
            .fetch_optional(db)
            .await?
        }
        Lookup::Id(id) => {
            // A handoff id first; failing that, the newest handoff of the session with that id.
            sqlx::query(
                r#"select handoff_id, shared_id, data from (
                       (select h.handoff_id, h.shared_id, h.data, 0 as rank
                        from handoffs h
                        join sessions s on s.org_id = h.org_id and s.session_id = h.session_id
                        where h.org_id = $1 and h.handoff_id = $2
                          and coalesce(s.agent_id, 'default') = $3)
                       union all
                       (select h.handoff_id, h.shared_id, h.data, 1 as rank
                        from handoffs h
                        join sessions s on s.org_id = h.org_id and s.session_id = h.session_id
                        where h.org_id = $1 and h.session_id = $2
                          and coalesce(s.agent_id, 'default') = $3
                        order by h.initiated_at desc, h.handoff_id desc
                        limit 1)
                   ) found
                   order by rank
                   limit 1"#,
            )
            .bind(org.get())
            .bind(id)
            .bind(project)
            .fetch_optional(db)
            .await?
        }
    };
    row.map(|row| {
        Ok(HandoffState {
            handoff_id: row.try_get("handoff_id")?,
            shared_id: row.try_get("shared_id")?,
            data: row.try_get("data")?,
        })
    })
    .transpose()
}

/// A reference of a handoff.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ReferenceRow {
    /// `ai_profile`, `instruction`, `knowledge`, `prohibited_topic` or `tool`.
    #[serde(rename = "type")]
    pub ref_type: String,
    /// The referenced resource's id.
    pub id: String,
}

/// A handoff with its session, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffRecord {
    /// Its id.
    pub handoff_id: String,
    /// The id shared with the client's systems.
    pub shared_id: Option<String>,
    /// Current state.
    pub state: String,
    /// Initiations (1 + retries).
    pub attempts: i32,
    /// Reasons, first-seen order.
    pub reasons: Vec<String>,
    /// Sentiment at handoff.
    pub sentiment: Option<String>,
    /// What it referenced, by type then id.
    pub references: Vec<ReferenceRow>,
    /// Where it was sent.
    pub destination: Option<String>,
    /// Summary for the human.
    pub summary: Option<String>,
    /// The AI's reasoning for handing off.
    pub explanation: Option<String>,
    /// The human who took it.
    pub operator_id: Option<String>,
    /// The latest failure's message.
    pub error: Option<String>,
    /// First initiation.
    pub initiated_at: DateTime<Utc>,
    /// Latest initiation.
    pub last_initiated_at: DateTime<Utc>,
    /// Completion.
    pub completed_at: Option<DateTime<Utc>>,
    /// Latest failure.
    pub failed_at: Option<DateTime<Utc>>,
    /// Latest change.
    pub updated_at: DateTime<Utc>,
    /// Its session.
    pub session_id: String,
    /// The session's channel.
    pub channel: String,
    /// The session's agent.
    pub agent_id: Option<String>,
    /// The agent's (last) name, when the agent was declared.
    pub agent_name: Option<String>,
    /// When the session started.
    pub session_started_at: DateTime<Utc>,
    /// When the session ended.
    pub session_ended_at: Option<DateTime<Utc>>,
    /// The session's final sentiment.
    pub session_sentiment: Option<String>,
}

/// One entry of a handoff's state history.
#[derive(Debug, Clone, PartialEq)]
pub struct StateEntry {
    /// 1, 2, … in order.
    pub seq: i32,
    /// The state entered.
    pub state: String,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// Which initiation this entry belongs to (1 for the first, 2 after the first retry, …).
    pub attempt: i64,
    /// The event that caused it.
    pub event_id: String,
}

/// A handoff with everything known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffDetail {
    /// The handoff and its session.
    pub record: HandoffRecord,
    /// The handoff state payload (initiation data with later data merged in).
    pub data: Value,
    /// Every state it went through, in order.
    pub history: Vec<StateEntry>,
}

const RECORD_COLUMNS: &str = r#"
    h.handoff_id, h.shared_id, h.state, h.attempts, h.reasons, h.sentiment, h.destination,
    h.summary, h.explanation, h.operator_id, h.error, h.initiated_at, h.last_initiated_at, h.completed_at,
    h.failed_at, h.updated_at, h.session_id, s.channel, s.agent_id, a.name as agent_name,
    s.started_at as session_started_at, s.ended_at as session_ended_at,
    s.sentiment as session_sentiment,
    (select coalesce(jsonb_agg(jsonb_build_object('type', r.ref_type, 'id', r.ref_id)
                               order by r.ref_type, r.ref_id), '[]'::jsonb)
     from handoff_references r
     where r.org_id = h.org_id and r.handoff_id = h.handoff_id) as refs"#;

const RECORD_JOINS: &str = r#"
    join sessions s on s.org_id = h.org_id and s.session_id = h.session_id
    left join agents a on a.org_id = s.org_id and a.agent_id = s.agent_id"#;

fn record(row: &sqlx::postgres::PgRow) -> sqlx::Result<HandoffRecord> {
    let refs: Value = row.try_get("refs")?;
    let references: Vec<ReferenceRow> = serde_json::from_value(refs)
        .map_err(|e| sqlx::Error::Decode(format!("handoff references: {e}").into()))?;
    Ok(HandoffRecord {
        handoff_id: row.try_get("handoff_id")?,
        shared_id: row.try_get("shared_id")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        reasons: row.try_get("reasons")?,
        sentiment: row.try_get("sentiment")?,
        references,
        destination: row.try_get("destination")?,
        summary: row.try_get("summary")?,
        explanation: row.try_get("explanation")?,
        operator_id: row.try_get("operator_id")?,
        error: row.try_get("error")?,
        initiated_at: row.try_get("initiated_at")?,
        last_initiated_at: row.try_get("last_initiated_at")?,
        completed_at: row.try_get("completed_at")?,
        failed_at: row.try_get("failed_at")?,
        updated_at: row.try_get("updated_at")?,
        session_id: row.try_get("session_id")?,
        channel: row.try_get("channel")?,
        agent_id: row.try_get("agent_id")?,
        agent_name: row.try_get("agent_name")?,
        session_started_at: row.try_get("session_started_at")?,
        session_ended_at: row.try_get("session_ended_at")?,
        session_sentiment: row.try_get("session_sentiment")?,
    })
}

/// One handoff with its data and history, or `None`.
pub async fn handoff(
    pool: &PgPool,
    org: OrgId,
    handoff_id: &str,
) -> sqlx::Result<Option<HandoffDetail>> {
    let sql = format!(
        "select {RECORD_COLUMNS}, h.data from handoffs h {RECORD_JOINS}
         where h.org_id = $1 and h.handoff_id = $2"
    );
    let Some(row) = sqlx::query(&sql)
        .bind(org.get())
        .bind(handoff_id)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let record = record(&row)?;
    let data: Value = row.try_get("data")?;
    let history = sqlx::query(
        r#"select seq, state, occurred_at, event_id,
                  count(*) filter (where state = 'handoff_initiated') over (order by seq) as attempt
           from handoff_states
           where org_id = $1 and handoff_id = $2
           order by seq"#,
    )
    .bind(org.get())
    .bind(handoff_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(StateEntry {
            seq: r.try_get("seq")?,
            state: r.try_get("state")?,
            occurred_at: r.try_get("occurred_at")?,
            attempt: r.try_get("attempt")?,
            event_id: r.try_get("event_id")?,
        })
    })
    .collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Some(HandoffDetail {
        record,
        data,
        history,
    }))
}

/// Filters and page of the list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only handoffs in this state.
    pub state: Option<String>,
    /// Only handoffs with this status.
    pub status: Option<Status>,
    /// Only handoffs carrying this reason.
    pub reason: Option<String>,
    /// Only handoffs of this session.
    pub session_id: Option<String>,
    /// Only handoffs first initiated at or after this instant.
    pub start: Option<DateTime<Utc>>,
    /// Only handoffs first initiated before this instant.
    pub end: Option<DateTime<Utc>>,
    /// Only handoffs after this position (newest first).
    pub after: Option<Position>,
}

/// Appends the conditions of `filter` on `handoffs h` (` and …` each) to a query that has
/// already selected the organization: the one statement of the list's filters, shared by the
/// list and the export.
pub(crate) fn push_filters<'a>(q: &mut QueryBuilder<'a, Postgres>, filter: &'a ListFilter) {
    if let Some(state) = &filter.state {
        q.push(" and h.state = ").push_bind(state);
    }
    match filter.status {
        None => {}
        Some(Status::Completed) => {
            q.push(" and h.state = 'handoff_completed'");
        }
        Some(Status::Failed) => {
            q.push(" and h.state = 'handoff_failed'");
        }
        Some(Status::Abandoned) => {
            q.push(" and h.state = 'handoff_abandoned'");
        }
        Some(Status::Open) => {
            q.push(
                " and h.state not in ('handoff_completed', 'handoff_failed', 'handoff_abandoned')",
            );
        }
    }
    if let Some(reason) = &filter.reason {
        q.push(" and ").push_bind(reason).push(" = any(h.reasons)");
    }
    if let Some(session_id) = &filter.session_id {
        q.push(" and h.session_id = ").push_bind(session_id);
    }
    if let Some(start) = filter.start {
        q.push(" and h.initiated_at >= ").push_bind(start);
    }
    if let Some(end) = filter.end {
        q.push(" and h.initiated_at < ").push_bind(end);
    }
    if let Some(after) = &filter.after {
        q.push(" and (h.initiated_at, h.handoff_id) < (")
            .push_bind(after.initiated_at)
            .push(", ")
            .push_bind(&after.handoff_id)
            .push(")");
    }
}

/// Up to `limit` handoffs, newest first (by first initiation, then id, descending).
///
/// The page is cut from `handoffs` alone (an ordered walk of `handoffs_initiated_at_idx`), and
/// only its rows are joined to their sessions, agents and references. The limit is written into
/// the SQL rather than bound: with a bound limit PostgreSQL's generic plan assumes a large page
/// and hash-joins every session of the table (measured: 100 ms instead of 1 ms).
pub async fn list(
    pool: &PgPool,
    org: OrgId,
    filter: &ListFilter,
    limit: i64,
) -> sqlx::Result<Vec<HandoffRecord>> {
    let limit = limit.clamp(1, 10_000);
    let mut q: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!(
        "select {RECORD_COLUMNS} from (select * from handoffs h where h.org_id = "
    ));
    q.push_bind(org.get());
    push_filters(&mut q, filter);
    q.push(format!(
        " order by h.initiated_at desc, h.handoff_id desc limit {limit}) h {RECORD_JOINS} \
         order by h.initiated_at desc, h.handoff_id desc"
    ));
    q.build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(record)
        .collect()
}

/// Several handoffs with data and history, by id (those that exist), on the caller's
/// connection: what the webhook outbox renders inside the ingest transaction. Two statements
/// whatever the number of handoffs, each looking every id up by primary key.
pub async fn details(
    conn: &mut sqlx::PgConnection,
    org: OrgId,
    handoff_ids: &[&str],
) -> sqlx::Result<std::collections::HashMap<String, HandoffDetail>> {
    let mut out = std::collections::HashMap::with_capacity(handoff_ids.len());
    if handoff_ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "select {RECORD_COLUMNS}, h.data
         from unnest($2::text[]) as q(handoff_id)
         cross join lateral (select * from handoffs h
                             where h.org_id = $1 and h.handoff_id = q.handoff_id offset 0) h
         {RECORD_JOINS}"
    );
    for row in sqlx::query(&sql)
        .bind(org.get())
        .bind(handoff_ids)
        .fetch_all(&mut *conn)
        .await?
    {
        let record = record(&row)?;
        out.insert(
            record.handoff_id.clone(),
            HandoffDetail {
                data: row.try_get("data")?,
                record,
                history: Vec::new(),
            },
        );
    }
    let rows = sqlx::query(
        r#"select s.handoff_id, s.seq, s.state, s.occurred_at, s.event_id,
                  count(*) filter (where s.state = 'handoff_initiated')
                      over (partition by s.handoff_id order by s.seq) as attempt
           from unnest($2::text[]) as q(handoff_id)
           cross join lateral (select * from handoff_states s
                               where s.org_id = $1 and s.handoff_id = q.handoff_id offset 0) s
           order by s.handoff_id, s.seq"#,
    )
    .bind(org.get())
    .bind(handoff_ids)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let id: String = r.try_get("handoff_id")?;
        if let Some(d) = out.get_mut(&id) {
            d.history.push(StateEntry {
                seq: r.try_get("seq")?,
                state: r.try_get("state")?,
                occurred_at: r.try_get("occurred_at")?,
                attempt: r.try_get("attempt")?,
                event_id: r.try_get("event_id")?,
            });
        }
    }
    Ok(out)
}
