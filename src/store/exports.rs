//! Exports: every row of a filtered list, streamed from a server-side cursor in chunks, in
//! constant memory whatever the organization's size.
//!
//! Policy: an export runs in one read-only transaction (one snapshot: rows written while it
//! runs are not half in it) holding a `no scroll` cursor; each chunk is one `fetch forward`
//! of [`CHUNK_ROWS`] rows, encoded to bytes and handed to the response body (the HTTP layer
//! produces one chunk ahead, so the next fetch overlaps the writing of the previous chunk), so
//! memory is bounded by two chunks and a slow client slows the fetches rather than filling a
//! buffer. Each fetch is watched like a request (see [`Export::next_chunk`]): a
//! database that stops answering ends the stream with an error, which aborts the response, so
//! the client sees a truncated body (no final chunk) rather than a hang or a short file that
//! looks complete.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row, Transaction};

use crate::auth::OrgId;
use crate::db::DbHealth;
use crate::domain::lifecycle::{Outcome, outcome};
use crate::store::handoffs::{ListFilter, push_filters};

/// Rows per fetch.
pub const CHUNK_ROWS: usize = 2_000;

/// Longest wait for one chunk before the export is abandoned.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(20);

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

/// A value of one exported column.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// Text (CSV: as is; JSON: a string), or nothing (CSV: empty; JSON: null).
    Text(Option<String>),
    /// A whole number.
    Int(Option<i64>),
    /// A number.
    Float(Option<f64>),
    /// A flag.
    Bool(Option<bool>),
    /// A list of texts (CSV: joined by `;`; JSON: an array).
    List(Vec<String>),
    /// A JSON document kept as its text (CSV: the text; JSON: the value itself).
    Json(String),
}

/// What is exported: the columns, and how a fetched row becomes their values.
#[derive(Clone, Copy)]
pub struct Kind {
    /// Column names (the CSV header, the JSON keys).
    pub columns: &'static [&'static str],
    /// A row's values, in column order.
    pub fields: fn(&PgRow) -> sqlx::Result<Vec<Field>>,
    /// NDJSON lines are this column's JSON alone (the events: each line an event as posted),
    /// rather than an object of every column.
    pub ndjson_column: Option<usize>,
}

/// An export under way: its transaction and cursor.
pub struct Export {
    tx: Option<Transaction<'static, Postgres>>,
    kind: Kind,
    format: Format,
    header: bool,
    health: std::sync::Arc<DbHealth>,
}

/// Why a chunk could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The database stopped answering, or a chunk took too long.
    #[error("export abandoned: {0}")]
    Stalled(&'static str),
}

fn time(t: Option<DateTime<Utc>>) -> Field {
    Field::Text(t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
}

/// Handoffs: one row per handoff with its session's channel and agent.
pub const HANDOFFS: Kind = Kind {
    columns: &[
        "handoff_id",
        "session_id",
        "shared_id",
        "channel",
        "agent_id",
        "reasons",
        "sentiment",
        "state",
        "status",
        "attempts",
        "initiated_at",
        "completed_at",
        "wait_seconds",
        "destination",
        "operator_id",
        "outside_working_hours",
        "summary",
        "explanation",
    ],
    fields: handoff_fields,
    ndjson_column: None,
};

fn handoff_fields(r: &PgRow) -> sqlx::Result<Vec<Field>> {
    let state: String = r.try_get(7)?;
    let initiated: DateTime<Utc> = r.try_get(9)?;
    let completed: Option<DateTime<Utc>> = r.try_get(10)?;
    let status = match outcome(&state) {
        Outcome::Completed => "completed",
        Outcome::Failed => "failed",
        Outcome::Abandoned => "abandoned",
        Outcome::Open => "open",
    };
    Ok(vec![
        Field::Text(r.try_get(0)?),
        Field::Text(r.try_get(1)?),
        Field::Text(r.try_get(2)?),
        Field::Text(r.try_get(3)?),
        Field::Text(r.try_get(4)?),
        Field::List(r.try_get(5)?),
        Field::Text(r.try_get(6)?),
        Field::Text(Some(state)),
        Field::Text(Some(status.to_owned())),
        Field::Int(Some(i64::from(r.try_get::<i32, _>(8)?))),
        time(Some(initiated)),
        time(completed),
        Field::Float(completed.map(|c| (c - initiated).num_milliseconds() as f64 / 1000.0)),
        Field::Text(r.try_get(11)?),
        Field::Text(r.try_get(12)?),
        Field::Bool(r.try_get(13)?),
        Field::Text(r.try_get(14)?),
        Field::Text(r.try_get(15)?),
    ])
}

/// Calls: one row per call.
pub const CALLS: Kind = Kind {
    columns: &[
        "call_id",
        "agent_id",
        "started_at",
        "duration_seconds",
        "outcome",
        "sentiment",
        "escalation_reason",
        "escalated_after_seconds",
        "ttft_ms",
        "stt_confidence",
        "tool_calls",
        "tool_call_errors",
        "user_corrections",
        "cached_tokens",
        "total_tokens",
    ],
    fields: call_fields,
    ndjson_column: None,
};

fn call_fields(r: &PgRow) -> sqlx::Result<Vec<Field>> {
    Ok(vec![
        Field::Text(r.try_get(0)?),
        Field::Text(r.try_get(1)?),
        time(r.try_get(2)?),
        Field::Float(r.try_get(3)?),
        Field::Text(r.try_get(4)?),
        Field::Text(r.try_get(5)?),
        Field::Text(r.try_get(6)?),
        Field::Float(r.try_get(7)?),
        Field::Float(r.try_get(8)?),
        Field::Float(r.try_get(9)?),
        Field::Int(r.try_get(10)?),
        Field::Int(r.try_get(11)?),
        Field::Int(r.try_get(12)?),
        Field::Int(r.try_get(13)?),
        Field::Int(r.try_get(14)?),
    ])
}

/// Events: the event store in arrival order; as NDJSON each line is the event as it was posted.
pub const EVENTS: Kind = Kind {
    columns: &["id", "type", "occurred_at", "event"],
    fields: event_fields,
    ndjson_column: Some(3),
};

fn event_fields(r: &PgRow) -> sqlx::Result<Vec<Field>> {
    Ok(vec![
        Field::Text(r.try_get(0)?),
        Field::Text(r.try_get(1)?),
        time(r.try_get(2)?),
        Field::Json(r.try_get(3)?),
    ])
}

/// The rows of an export, as a cursor declaration (`$1`: the organization).
pub enum Query<'a> {
    /// Handoffs matching the list's filters, newest first.
    Handoffs(&'a ListFilter),
    /// Calls started in `[start, end)` (either bound optional), by an agent when given, newest
    /// first.
    Calls {
        /// Lower bound.
        start: Option<DateTime<Utc>>,
        /// Upper bound.
        end: Option<DateTime<Utc>>,
        /// Only this agent's.
        agent_id: Option<&'a str>,
    },
    /// Events that occurred in `[start, end)` (either bound optional), in arrival order.
    Events {
        /// Lower bound.
        start: Option<DateTime<Utc>>,
        /// Upper bound.
        end: Option<DateTime<Utc>>,
    },
}

impl Export {
    /// Opens the export: a read-only transaction and its cursor. Errors here are the request's
    /// (nothing has been sent yet).
    pub async fn open(
        pool: &sqlx::PgPool,
        health: std::sync::Arc<DbHealth>,
        org: OrgId,
        query: Query<'_>,
        format: Format,
    ) -> sqlx::Result<Export> {
        let mut tx = pool.begin().await?;
        sqlx::query("set transaction read only")
            .execute(&mut *tx)
            .await?;
        let (kind, mut q) = match &query {
            Query::Handoffs(_) => (
                HANDOFFS,
                QueryBuilder::<Postgres>::new(
                    r#"declare export no scroll cursor for
                       select h.handoff_id, h.session_id, h.shared_id, s.channel, s.agent_id,
                              h.reasons, h.sentiment, h.state, h.attempts, h.initiated_at,
                              h.completed_at, h.destination, h.operator_id,
                              l.outside_working_hours, h.summary, h.explanation
                       from handoffs h
                       join sessions s on s.org_id = h.org_id and s.session_id = h.session_id
                       left join handoff_lifecycle l
                            on l.org_id = h.org_id and l.handoff_id = h.handoff_id
                       where h.org_id = "#,
                ),
            ),
            Query::Calls { .. } => (
                CALLS,
                QueryBuilder::<Postgres>::new(
                    r#"declare export no scroll cursor for
                       select c.call_id, c.agent_id, c.started_at, c.duration_seconds, c.outcome,
                              c.sentiment, c.escalation_reason, c.escalated_after_seconds,
                              c.ttft_ms, c.stt_confidence, c.tool_calls, c.tool_call_errors,
                              c.user_corrections, c.cached_tokens, c.total_tokens
                       from calls c
                       where c.org_id = "#,
                ),
            ),
            Query::Events { .. } => (
                EVENTS,
                // The body as stored (`json` keeps the text as received): raw line breaks in
                // JSON text can only be whitespace between tokens, so they become spaces and
                // each event stays on one line.
                QueryBuilder::<Postgres>::new(
                    r#"declare export no scroll cursor for
                       select e.event_id, e.type, e.occurred_at,
                              translate(e.body::text, E'\n\r', '  ')
                       from events e
                       where e.org_id = "#,
                ),
            ),
        };
        q.push_bind(org.get());
        match query {
            Query::Handoffs(filter) => {
                push_filters(&mut q, filter);
                q.push(" order by h.initiated_at desc, h.handoff_id desc");
            }
            Query::Calls {
                start,
                end,
                agent_id,
            } => {
                if let Some(s) = start {
                    q.push(" and c.started_at >= ").push_bind(s);
                }
                if let Some(e) = end {
                    q.push(" and c.started_at < ").push_bind(e);
                }
                if let Some(a) = agent_id {
                    q.push(" and c.agent_id = ").push_bind(a);
                }
                q.push(" order by c.started_at desc, c.call_id desc");
            }
            Query::Events { start, end } => {
                if let Some(s) = start {
                    q.push(" and e.occurred_at >= ").push_bind(s);
                }
                if let Some(e) = end {
                    q.push(" and e.occurred_at < ").push_bind(e);
                }
                q.push(" order by e.seq");
            }
        }
        q.build().execute(&mut *tx).await?;
        Ok(Export {
            tx: Some(tx),
            kind,
            format,
            header: format == Format::Csv,
            health,
        })
    }

    /// The next chunk of encoded rows (the CSV header comes with the first), or `None` at the
    /// end (the transaction is then closed). A fetch that waits on a database that stopped
    /// answering, or longer than a request may, is abandoned with [`ChunkError::Stalled`].
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ChunkError> {
        let Some(tx) = self.tx.as_mut() else {
            return Ok(None);
        };
        let started = Instant::now();
        let sql = format!("fetch forward {CHUNK_ROWS} from export");
        // Not a cached prepared statement: its columns depend on the cursor (another export
        // kind on the same connection has other ones).
        let fetch = sqlx::query(&sql).persistent(false).fetch_all(&mut **tx);
        let rows = tokio::select! {
            rows = tokio::time::timeout(CHUNK_TIMEOUT, fetch) => match rows {
                Ok(rows) => rows?,
                Err(_) => return Err(ChunkError::Stalled("a chunk took too long")),
            },
            () = self.health.outage(started) => {
                return Err(ChunkError::Stalled("the database does not answer"));
            }
        };
        let out = match self.format {
            Format::Csv => self.csv_chunk(&rows)?,
            Format::Ndjson => self.ndjson_chunk(&rows)?,
        };
        if rows.len() < CHUNK_ROWS
            && let Some(tx) = self.tx.take()
        {
            tx.commit().await?;
        }
        if out.is_empty() && self.tx.is_none() {
            return Ok(None);
        }
        Ok(Some(out))
    }

    /// Rows as CSV records (RFC 4180: CRLF line ends, quotes where needed, by the `csv`
    /// crate), after the header on the first chunk.
    fn csv_chunk(&mut self, rows: &[PgRow]) -> Result<Vec<u8>, ChunkError> {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::with_capacity(rows.len() * 200 + 256));
        let csv_error = |e: csv::Error| sqlx::Error::Protocol(format!("csv: {e}"));
        if std::mem::take(&mut self.header) {
            w.write_record(self.kind.columns).map_err(csv_error)?;
        }
        let mut text = String::new();
        for row in rows {
            for f in (self.kind.fields)(row)? {
                write_csv_field(&mut w, f, &mut text).map_err(csv_error)?;
            }
            w.write_record(None::<&[u8]>).map_err(csv_error)?;
        }
        w.into_inner()
            .map_err(|e| ChunkError::Database(sqlx::Error::Protocol(format!("csv: {e}"))))
    }

    /// Rows as JSON lines.
    fn ndjson_chunk(&self, rows: &[PgRow]) -> Result<Vec<u8>, ChunkError> {
        let mut out = Vec::with_capacity(rows.len() * 300);
        // Keys in sorted order, as a `serde_json` object writes them.
        let mut order: Vec<usize> = (0..self.kind.columns.len()).collect();
        order.sort_by_key(|i| self.kind.columns[*i]);
        for row in rows {
            let fields = (self.kind.fields)(row)?;
            match self.kind.ndjson_column {
                Some(i) => match fields.into_iter().nth(i) {
                    Some(Field::Json(text)) => out.extend_from_slice(text.as_bytes()),
                    Some(other) => out.extend_from_slice(json_value(other).to_string().as_bytes()),
                    None => {}
                },
                None => write_json_object(&mut out, self.kind.columns, &order, &fields),
            }
            out.push(b'\n');
        }
        Ok(out)
    }
}

/// Writes one CSV field, without a `String` per number (`text` is a reused buffer).
fn write_csv_field(
    w: &mut csv::Writer<Vec<u8>>,
    f: Field,
    text: &mut String,
) -> Result<(), csv::Error> {
    use std::fmt::Write;
    text.clear();
    match f {
        Field::Text(t) => return w.write_field(t.as_deref().unwrap_or_default()),
        Field::Json(t) => return w.write_field(&t),
        Field::Int(Some(n)) => {
            let _ = write!(text, "{n}");
        }
        Field::Float(Some(x)) => {
            let _ = write!(text, "{x}");
        }
        Field::Bool(Some(b)) => {
            let _ = write!(text, "{b}");
        }
        Field::List(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    text.push(';');
                }
                text.push_str(item);
            }
        }
        Field::Int(None) | Field::Float(None) | Field::Bool(None) => {}
    }
    w.write_field(text.as_bytes())
}

/// Writes a JSON object of the columns (in the key order `order`) straight to `out`: the same
/// text as building a `serde_json` object and printing it, without the object.
fn write_json_object(out: &mut Vec<u8>, columns: &[&str], order: &[usize], fields: &[Field]) {
    out.push(b'{');
    for (n, &i) in order.iter().enumerate() {
        let (Some(name), Some(f)) = (columns.get(i), fields.get(i)) else {
            continue;
        };
        if n > 0 {
            out.push(b',');
        }
        // Writing JSON into a `Vec` fails only for values that cannot be JSON (never here).
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
        let _ = match f {
            Field::Text(t) => serde_json::to_writer(&mut *out, t),
            Field::Int(x) => serde_json::to_writer(&mut *out, x),
            Field::Float(x) => serde_json::to_writer(&mut *out, &x.map(Value::from)),
            Field::Bool(x) => serde_json::to_writer(&mut *out, x),
            Field::List(items) => serde_json::to_writer(&mut *out, items),
            Field::Json(_) => serde_json::to_writer(&mut *out, &json_value(f.clone())),
        };
    }
    out.push(b'}');
}

#[cfg(test)]
fn csv_text(f: Field) -> String {
    match f {
        Field::Text(t) => t.unwrap_or_default(),
        Field::Int(n) => n.map(|n| n.to_string()).unwrap_or_default(),
        Field::Float(x) => x.map(|x| x.to_string()).unwrap_or_default(),
        Field::Bool(b) => b.map(|b| b.to_string()).unwrap_or_default(),
        Field::List(items) => items.join(";"),
        Field::Json(text) => text,
    }
}

fn json_value(f: Field) -> Value {
    match f {
        Field::Text(t) => t.map_or(Value::Null, Value::String),
        Field::Int(n) => n.map_or(Value::Null, Value::from),
        Field::Float(x) => x.map_or(Value::Null, Value::from),
        Field::Bool(b) => b.map_or(Value::Null, Value::Bool),
        Field::List(items) => Value::from(items),
        Field::Json(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_text_of_each_field() {
        assert_eq!(csv_text(Field::Text(None)), "");
        assert_eq!(csv_text(Field::List(vec!["a".into(), "b".into()])), "a;b");
        assert_eq!(csv_text(Field::Float(Some(1.5))), "1.5");
        assert_eq!(json_value(Field::Json("{\"a\": 1}".into()))["a"], 1);
    }

    fn sample() -> Vec<Field> {
        vec![
            Field::Text(Some("a \"quoted\", text".into())),
            Field::Text(None),
            Field::Int(Some(-3)),
            Field::Int(None),
            Field::Float(Some(12.25)),
            Field::Float(Some(f64::NAN)),
            Field::Bool(Some(true)),
            Field::List(vec!["x".into(), "y".into()]),
            Field::List(vec![]),
            Field::Json("{\"k\": [1, 2]}".into()),
        ]
    }

    #[test]
    fn csv_fields_are_written_as_their_text() {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut text = String::new();
        for f in sample() {
            write_csv_field(&mut w, f, &mut text).unwrap();
        }
        w.write_record(None::<&[u8]>).unwrap();
        let mut expected = csv::Writer::from_writer(Vec::new());
        expected
            .write_record(sample().into_iter().map(csv_text))
            .unwrap();
        assert_eq!(w.into_inner().unwrap(), expected.into_inner().unwrap());
    }

    #[test]
    fn json_objects_are_the_text_serde_json_prints() {
        let columns = ["z", "b", "a", "k", "f", "n", "t", "l", "e", "j"];
        let mut order: Vec<usize> = (0..columns.len()).collect();
        order.sort_by_key(|i| columns[*i]);
        let mut out = Vec::new();
        write_json_object(&mut out, &columns, &order, &sample());
        let mut object = serde_json::Map::new();
        for (name, f) in columns.iter().zip(sample()) {
            object.insert((*name).to_owned(), json_value(f));
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            Value::Object(object).to_string()
        );
    }
}
