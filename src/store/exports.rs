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
//! looks complete. A cursor also makes PostgreSQL plan for the first rows (an index scan in
//! the export's order and nested loops), so the first chunk comes at once whatever the size.
//!
//! Encoding is written for speed, as exports are the bulkiest answers: rows are written field
//! by field straight from the fetched rows by an [`Encoder`] (texts borrowed, not copied into a
//! `String`; a `text[]` read from its binary form; instants by a hand-written RFC 3339 writer;
//! CSV quoting by hand; JSON objects assembled from reused per-column buffers in key order).
//! Unit tests check each against what `chrono`, the `csv` crate and `serde_json` write, so the
//! bytes are those of the straightforward encoding.

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

/// What is exported: the columns, and how a fetched row is written.
#[derive(Clone, Copy)]
pub struct Kind {
    /// Column names (the CSV header, the JSON keys).
    pub columns: &'static [&'static str],
    /// Writes a row's values, in column order, to the encoder (one call per column).
    pub fields: fn(&PgRow, &mut Encoder) -> sqlx::Result<()>,
    /// NDJSON lines are this column's JSON alone (the events: each line an event as posted),
    /// rather than an object of every column.
    pub ndjson_column: Option<usize>,
}

/// An export under way: its transaction and cursor.
pub struct Export {
    tx: Option<Transaction<'static, Postgres>>,
    kind: Kind,
    encoder: Encoder,
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

/// Texts are read borrowed from the row (no `String` per field), the reasons straight from
/// the binary array (see [`text_array`]).
fn handoff_fields(r: &PgRow, w: &mut Encoder) -> sqlx::Result<()> {
    let state: &str = r.try_get(7)?;
    let initiated: DateTime<Utc> = r.try_get(9)?;
    let completed: Option<DateTime<Utc>> = r.try_get(10)?;
    let status = match outcome(state) {
        Outcome::Completed => "completed",
        Outcome::Failed => "failed",
        Outcome::Abandoned => "abandoned",
        Outcome::Open => "open",
    };
    w.text(r.try_get(0)?);
    w.text(r.try_get(1)?);
    w.text(r.try_get(2)?);
    w.text(r.try_get(3)?);
    w.text(r.try_get(4)?);
    match text_array(r, 5)? {
        Some(items) => w.list(items),
        None => {
            let items: Vec<String> = r.try_get(5)?;
            w.list(items.iter().map(String::as_str));
        }
    }
    w.text(r.try_get(6)?);
    w.text(Some(state));
    w.text(Some(status));
    w.int(Some(i64::from(r.try_get::<i32, _>(8)?)));
    w.time(Some(initiated));
    w.time(completed);
    w.float(completed.map(|c| (c - initiated).num_milliseconds() as f64 / 1000.0));
    w.text(r.try_get(11)?);
    w.text(r.try_get(12)?);
    w.bool(r.try_get(13)?);
    w.text(r.try_get(14)?);
    w.text(r.try_get(15)?);
    Ok(())
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

fn call_fields(r: &PgRow, w: &mut Encoder) -> sqlx::Result<()> {
    w.text(r.try_get(0)?);
    w.text(r.try_get(1)?);
    w.time(r.try_get(2)?);
    w.float(r.try_get(3)?);
    w.text(r.try_get(4)?);
    w.text(r.try_get(5)?);
    w.text(r.try_get(6)?);
    w.float(r.try_get(7)?);
    w.float(r.try_get(8)?);
    w.float(r.try_get(9)?);
    for i in 10..15 {
        w.int(r.try_get(i)?);
    }
    Ok(())
}

/// Events: the event store in arrival order; as NDJSON each line is the event as it was posted.
pub const EVENTS: Kind = Kind {
    columns: &["id", "type", "occurred_at", "event"],
    fields: event_fields,
    ndjson_column: Some(3),
};

fn event_fields(r: &PgRow, w: &mut Encoder) -> sqlx::Result<()> {
    w.text(r.try_get(0)?);
    w.text(r.try_get(1)?);
    w.time(r.try_get(2)?);
    w.json(r.try_get(3)?);
    Ok(())
}

/// The items of a one-dimensional `text[]` without NULLs, read from the column's binary value
/// without allocating; `None` when the value is not that (text format, NULL, a NULL item,
/// more dimensions, bad UTF-8), so the caller decodes it the ordinary way (and gets its
/// error). Binary layout: dimensions, has-nulls flag, element type, then per dimension its
/// length and lower bound, then each item as a length (-1: NULL) and its bytes.
fn text_array(r: &PgRow, i: usize) -> sqlx::Result<Option<TextItems<'_>>> {
    use sqlx::ValueRef;
    use sqlx::postgres::PgValueFormat;
    let value = r.try_get_raw(i)?;
    if value.is_null() || value.format() != PgValueFormat::Binary {
        return Ok(None);
    }
    Ok(value.as_bytes().ok().and_then(TextItems::parse))
}

/// The items of a binary `text[]` checked by [`TextItems::parse`]: each valid UTF-8, none NULL.
#[derive(Clone)]
struct TextItems<'r> {
    rest: &'r [u8],
    remaining: usize,
}

impl<'r> TextItems<'r> {
    fn parse(bytes: &'r [u8]) -> Option<TextItems<'r>> {
        let int = |b: &[u8], at: usize| -> Option<i32> {
            Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        let items = match int(bytes, 0)? {
            0 => TextItems {
                rest: &[],
                remaining: 0,
            },
            1 => TextItems {
                rest: bytes.get(20..)?,
                remaining: usize::try_from(int(bytes, 12)?).ok()?,
            },
            _ => return None,
        };
        // Every item present and text, so that iterating cannot stop early.
        let (mut rest, mut n) = (items.rest, items.remaining);
        while n > 0 {
            let len = usize::try_from(int(rest, 0)?).ok()?;
            std::str::from_utf8(rest.get(4..4 + len)?).ok()?;
            rest = &rest[4 + len..];
            n -= 1;
        }
        Some(items)
    }
}

impl<'r> Iterator for TextItems<'r> {
    type Item = &'r str;

    fn next(&mut self) -> Option<&'r str> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let len = usize::try_from(i32::from_be_bytes(self.rest.get(..4)?.try_into().ok()?)).ok()?;
        let item = std::str::from_utf8(self.rest.get(4..4 + len)?).ok()?;
        self.rest = &self.rest[4 + len..];
        Some(item)
    }
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
        // No JIT: the cursor's plan costs enough for PostgreSQL to compile it with LLVM, which
        // took about 3 % of an export's CPU (measured on 1M handoffs) and gains nothing back
        // on a plan that is index scans and nested loops.
        sqlx::query("set transaction read only")
            .execute(&mut *tx)
            .await?;
        sqlx::query("set local jit = off").execute(&mut *tx).await?;
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
            encoder: Encoder::new(format, kind.columns, kind.ndjson_column),
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
        let out = self.encode(&rows)?;
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

    /// Rows encoded (after the CSV header on the first chunk), into a buffer of their size.
    fn encode(&mut self, rows: &[PgRow]) -> sqlx::Result<Vec<u8>> {
        let per_row = match self.encoder.format {
            Format::Csv => 224,
            Format::Ndjson => 512,
        };
        self.encoder.out = Vec::with_capacity(rows.len() * per_row + 512);
        if std::mem::take(&mut self.header) {
            for name in self.kind.columns {
                self.encoder.text(Some(name));
            }
            self.encoder.end_row();
        }
        for row in rows {
            (self.kind.fields)(row, &mut self.encoder)?;
            self.encoder.end_row();
        }
        Ok(std::mem::take(&mut self.encoder.out))
    }
}

/// Writes rows, field by field in column order, as CSV records or JSON lines.
///
/// CSV is RFC 4180 as the `csv` crate writes it with CRLF line ends (a unit test checks the
/// two agree on any text): a field is quoted when it holds a comma, a quote, CR or LF, and
/// its quotes are doubled. A JSON object has its keys in sorted order, as a `serde_json` map
/// prints them: each field's value is written to its own reused buffer, and the line is
/// assembled from them in key order at the row's end.
pub struct Encoder {
    format: Format,
    out: Vec<u8>,
    /// The next field's column.
    column: usize,
    /// NDJSON: each column's JSON value in the current row.
    values: Vec<Vec<u8>>,
    /// NDJSON: the columns in key order, each with its `"key":` (a comma before all but the
    /// first).
    keys: Vec<(usize, Vec<u8>)>,
    ndjson_column: Option<usize>,
}

impl Encoder {
    /// An encoder of rows of these columns.
    pub fn new(format: Format, columns: &[&str], ndjson_column: Option<usize>) -> Encoder {
        let mut order: Vec<usize> = (0..columns.len()).collect();
        order.sort_by_key(|i| columns[*i]);
        let keys = order
            .iter()
            .enumerate()
            .map(|(n, &i)| {
                let mut key = if n > 0 { b",".to_vec() } else { Vec::new() };
                // Writing a string into a `Vec` cannot fail.
                let _ = serde_json::to_writer(&mut key, columns[i]);
                key.push(b':');
                (i, key)
            })
            .collect();
        Encoder {
            format,
            out: Vec::new(),
            column: 0,
            values: vec![Vec::new(); columns.len()],
            keys,
            ndjson_column,
        }
    }

    /// The buffer the next field goes to (CSV: the output, after a delimiter; NDJSON: the
    /// column's value buffer, emptied).
    fn field(&mut self) -> &mut Vec<u8> {
        let column = self.column;
        self.column += 1;
        match self.format {
            Format::Csv => {
                if column > 0 {
                    self.out.push(b',');
                }
                &mut self.out
            }
            Format::Ndjson => {
                if column >= self.values.len() {
                    self.values.resize_with(column + 1, Vec::new);
                }
                let value = &mut self.values[column];
                value.clear();
                value
            }
        }
    }

    /// Text (CSV: as is; JSON: a string), or nothing (CSV: empty; JSON: null).
    pub fn text(&mut self, t: Option<&str>) {
        let csv = self.format == Format::Csv;
        let out = self.field();
        match (t, csv) {
            (Some(t), true) => csv_field(out, t.as_bytes()),
            (None, true) => {}
            (Some(t), false) => json_string(out, t),
            (None, false) => out.extend_from_slice(b"null"),
        }
    }

    /// A whole number.
    pub fn int(&mut self, n: Option<i64>) {
        let csv = self.format == Format::Csv;
        let out = self.field();
        match n {
            Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
            None if csv => {}
            None => out.extend_from_slice(b"null"),
        }
    }

    /// A number (CSV: Rust's shortest text, as `{x}` prints it; JSON: as `serde_json` prints
    /// it, null when not finite).
    pub fn float(&mut self, x: Option<f64>) {
        use std::io::Write;
        let csv = self.format == Format::Csv;
        let out = self.field();
        match x {
            Some(x) if csv => {
                let _ = write!(out, "{x}");
            }
            None if csv => {}
            // `serde_json` writes a number that is not finite as null, as `Value` holds it.
            x => {
                let _ = serde_json::to_writer(out, &x);
            }
        }
    }

    /// A flag.
    pub fn bool(&mut self, b: Option<bool>) {
        let csv = self.format == Format::Csv;
        let out = self.field();
        match b {
            Some(true) => out.extend_from_slice(b"true"),
            Some(false) => out.extend_from_slice(b"false"),
            None if csv => {}
            None => out.extend_from_slice(b"null"),
        }
    }

    /// A list of texts (CSV: joined by `;`, one field; JSON: an array).
    pub fn list<'a>(&mut self, items: impl Iterator<Item = &'a str>) {
        let csv = self.format == Format::Csv;
        let out = self.field();
        if csv {
            let start = out.len();
            for (i, item) in items.enumerate() {
                if i > 0 {
                    out.push(b';');
                }
                out.extend_from_slice(item.as_bytes());
            }
            if needs_quotes(&out[start..]) {
                let joined = out.split_off(start);
                csv_field(out, &joined);
            }
        } else {
            out.push(b'[');
            for (i, item) in items.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_string(out, item);
            }
            out.push(b']');
        }
    }

    /// An instant, as RFC 3339 in UTC (see [`write_rfc3339`]), or nothing.
    pub fn time(&mut self, t: Option<DateTime<Utc>>) {
        let csv = self.format == Format::Csv;
        let out = self.field();
        match t {
            Some(t) if csv => write_rfc3339(out, t),
            Some(t) => {
                out.push(b'"');
                write_rfc3339(out, t);
                out.push(b'"');
            }
            None if csv => {}
            None => out.extend_from_slice(b"null"),
        }
    }

    /// A JSON document kept as its text (CSV: the text; the NDJSON line of its column: the
    /// text as is; in a JSON object: the value itself, or a string if it is not JSON).
    pub fn json(&mut self, text: &str) {
        let (csv, column) = (self.format == Format::Csv, self.column);
        let raw = self.ndjson_column == Some(column);
        let out = self.field();
        if csv {
            csv_field(out, text.as_bytes());
        } else if raw {
            out.extend_from_slice(text.as_bytes());
        } else {
            let value = serde_json::from_str::<Value>(text)
                .unwrap_or_else(|_| Value::String(text.to_owned()));
            let _ = serde_json::to_writer(out, &value);
        }
    }

    /// Ends the row: CSV's CRLF, or the JSON line.
    pub fn end_row(&mut self) {
        let written = std::mem::take(&mut self.column);
        match self.format {
            Format::Csv => {
                if written == 0 {
                    // As the `csv` crate writes an empty record.
                    self.out.extend_from_slice(b"\"\"");
                }
                self.out.extend_from_slice(b"\r\n");
            }
            Format::Ndjson => {
                match self.ndjson_column {
                    Some(i) => {
                        if i < written {
                            self.out.extend_from_slice(&self.values[i]);
                        }
                    }
                    None => {
                        self.out.push(b'{');
                        let mut first = true;
                        for (i, key) in &self.keys {
                            if *i >= written {
                                continue;
                            }
                            let key = if first {
                                key.strip_prefix(b",").unwrap_or(key)
                            } else {
                                key
                            };
                            first = false;
                            self.out.extend_from_slice(key);
                            self.out.extend_from_slice(&self.values[*i]);
                        }
                        self.out.push(b'}');
                    }
                }
                self.out.push(b'\n');
            }
        }
    }
}

/// Whether a CSV field must be quoted: it holds a delimiter, a quote, CR or LF.
fn needs_quotes(field: &[u8]) -> bool {
    field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
}

/// One CSV field: as is, or quoted with its quotes doubled when [`needs_quotes`].
fn csv_field(out: &mut Vec<u8>, field: &[u8]) {
    if !needs_quotes(field) {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    let mut rest = field;
    while let Some(at) = rest.iter().position(|&b| b == b'"') {
        out.extend_from_slice(&rest[..=at]);
        out.push(b'"');
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// A JSON string, escaped as `serde_json` escapes it.
fn json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a `Vec` cannot fail.
    let _ = serde_json::to_writer(out, s);
}

/// Writes an instant as RFC 3339 in UTC, exactly as
/// `to_rfc3339_opts(SecondsFormat::AutoSi, true)` does (`2030-03-04T09:01:30.500Z`: the
/// fraction as milli-, micro- or nanoseconds, whichever is exact; none when whole; `Z`),
/// without its formatting machinery and `String`: the civil date from the days since
/// 1970-01-01 by Howard Hinnant's `civil_from_days`. Years outside 0000–9999 (chrono then adds
/// a sign) and leap seconds are left to chrono.
pub fn write_rfc3339(out: &mut Vec<u8>, t: DateTime<Utc>) {
    let secs = t.timestamp();
    let nanos = t.timestamp_subsec_nanos();
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        out.extend_from_slice(t.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes());
        return;
    }
    let two = |out: &mut Vec<u8>, n: i64| {
        out.push(b'0' + (n / 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, month);
    out.push(b'-');
    two(out, day);
    out.push(b'T');
    two(out, of_day / 3600);
    out.push(b':');
    two(out, of_day / 60 % 60);
    out.push(b':');
    two(out, of_day % 60);
    let (fraction, digits) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (nanos / 1_000_000, 3)
    } else if nanos.is_multiple_of(1_000) {
        (nanos / 1_000, 6)
    } else {
        (nanos, 9)
    };
    if digits > 0 {
        out.push(b'.');
        let mut text = [b'0'; 9];
        let mut f = fraction;
        for d in text[..digits].iter_mut().rev() {
            *d = b'0' + (f % 10) as u8;
            f /= 10;
        }
        out.extend_from_slice(&text[..digits]);
    }
    out.push(b'Z');
}

/// (year, month, day) of a day counted from 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value of each kind the encoder writes.
    #[derive(Debug, Clone)]
    enum Field {
        Text(Option<String>),
        Int(Option<i64>),
        Float(Option<f64>),
        Bool(Option<bool>),
        List(Vec<String>),
        Time(Option<DateTime<Utc>>),
        Json(String),
    }

    fn write(e: &mut Encoder, f: &Field) {
        match f {
            Field::Text(t) => e.text(t.as_deref()),
            Field::Int(n) => e.int(*n),
            Field::Float(x) => e.float(*x),
            Field::Bool(b) => e.bool(*b),
            Field::List(items) => e.list(items.iter().map(String::as_str)),
            Field::Time(t) => e.time(*t),
            Field::Json(t) => e.json(t),
        }
    }

    /// The text the previous encoder gave a field in CSV (`Display`, chrono, `;`-joined).
    fn csv_text(f: &Field) -> String {
        match f.clone() {
            Field::Text(t) => t.unwrap_or_default(),
            Field::Int(n) => n.map(|n| n.to_string()).unwrap_or_default(),
            Field::Float(x) => x.map(|x| x.to_string()).unwrap_or_default(),
            Field::Bool(b) => b.map(|b| b.to_string()).unwrap_or_default(),
            Field::List(items) => items.join(";"),
            Field::Time(t) => t
                .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                .unwrap_or_default(),
            Field::Json(text) => text,
        }
    }

    /// The `serde_json` value the previous encoder gave a field in JSON.
    fn json_value(f: &Field) -> Value {
        match f.clone() {
            Field::Text(t) => t.map_or(Value::Null, Value::String),
            Field::Int(n) => n.map_or(Value::Null, Value::from),
            Field::Float(x) => x.map_or(Value::Null, Value::from),
            Field::Bool(b) => b.map_or(Value::Null, Value::Bool),
            Field::List(items) => Value::from(items),
            Field::Time(t) => t.map_or(Value::Null, |t| {
                Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }),
            Field::Json(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
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
            Field::Time(Some(at("2030-03-04T09:01:30.5Z"))),
            Field::Time(None),
            Field::List(vec!["with, comma".into(), "q\"".into()]),
            Field::Text(Some("line\r\nbreaks and é ✓ \u{1} \\ tab\t".into())),
            Field::Float(Some(1e21)),
            Field::Float(Some(-0.0)),
            Field::Bool(Some(false)),
            Field::Bool(None),
            Field::Json("not json, \"at all\"".into()),
        ]
    }

    const COLUMNS: [&str; 19] = [
        "z", "b", "a", "k", "f", "n", "t", "l", "e", "j", "ti", "tn", "lq", "u", "big", "neg",
        "no", "bn", "jx",
    ];

    fn encode(format: Format, ndjson_column: Option<usize>, rows: &[Vec<Field>]) -> Vec<u8> {
        let mut e = Encoder::new(format, &COLUMNS, ndjson_column);
        for row in rows {
            for f in row {
                write(&mut e, f);
            }
            e.end_row();
        }
        e.out
    }

    #[test]
    fn csv_records_are_what_the_csv_crate_writes() {
        let rows = vec![sample(), sample()];
        let mut expected = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .flexible(true)
            .from_writer(Vec::new());
        for row in &rows {
            expected.write_record(row.iter().map(csv_text)).unwrap();
        }
        expected.write_record(None::<&[u8]>).unwrap();
        let mut got = encode(Format::Csv, None, &rows);
        got.extend_from_slice(&encode(Format::Csv, None, &[vec![]]));
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(expected.into_inner().unwrap()).unwrap()
        );
    }

    #[test]
    fn json_objects_are_the_text_serde_json_prints() {
        let mut object = serde_json::Map::new();
        for (name, f) in COLUMNS.iter().zip(sample()) {
            object.insert((*name).to_owned(), json_value(&f));
        }
        let line = format!("{}\n", Value::Object(object));
        assert_eq!(
            String::from_utf8(encode(Format::Ndjson, None, &[sample(), sample()])).unwrap(),
            format!("{line}{line}")
        );
    }

    #[test]
    fn an_ndjson_column_is_its_text_alone() {
        // Column 9 holds JSON text: the line is that text as is; other columns: their value.
        let got = encode(Format::Ndjson, Some(9), &[sample()]);
        assert_eq!(got, b"{\"k\": [1, 2]}\n");
        let got = encode(Format::Ndjson, Some(0), &[sample()]);
        assert_eq!(got, b"\"a \\\"quoted\\\", text\"\n");
    }

    #[test]
    fn text_arrays_are_read_from_their_binary_form() {
        fn array(items: &[Option<&str>]) -> Vec<u8> {
            let mut b = Vec::new();
            for n in [1i32, 0, 25, items.len() as i32, 1] {
                b.extend_from_slice(&n.to_be_bytes());
            }
            for item in items {
                match item {
                    Some(s) => {
                        b.extend_from_slice(&(s.len() as i32).to_be_bytes());
                        b.extend_from_slice(s.as_bytes());
                    }
                    None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
            b
        }
        let bytes = array(&[Some("a"), Some(""), Some("é;b")]);
        let items: Vec<&str> = TextItems::parse(&bytes).unwrap().collect();
        assert_eq!(items, ["a", "", "é;b"]);
        let empty = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25];
        assert_eq!(TextItems::parse(&empty).unwrap().count(), 0);
        assert!(TextItems::parse(&array(&[Some("a"), None])).is_none());
        assert!(TextItems::parse(&bytes[..bytes.len() - 1]).is_none());
        let mut bad = array(&[Some("ab")]);
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert!(TextItems::parse(&bad).is_none());
        let mut two_dims = array(&[Some("a")]);
        two_dims[3] = 2;
        assert!(TextItems::parse(&two_dims).is_none());
    }

    fn rfc3339(t: DateTime<Utc>) -> String {
        let mut out = Vec::new();
        write_rfc3339(&mut out, t);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc3339_is_what_chrono_writes_on_edge_cases() {
        for text in [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "1969-12-31T23:59:59.999Z",
            "0000-01-01T00:00:00Z",
            "0000-03-01T00:00:00.000001Z",
            "9999-12-31T23:59:59.999999999Z",
            "2000-02-29T12:00:00.100Z",
            "2000-03-01T00:00:00Z",
            "1900-02-28T23:59:59Z",
            "1900-03-01T00:00:00Z",
            "2100-02-28T00:00:00Z",
            "2024-02-29T23:59:59.000010Z",
            "2030-03-04T09:01:30.5Z",
            "2026-12-31T23:59:59.123456789Z",
            "1600-02-29T01:02:03.000000001Z",
            "0001-01-01T00:00:00Z",
        ] {
            let t = at(text);
            assert_eq!(
                rfc3339(t),
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                "{text}"
            );
        }
        // Outside 0000-9999 chrono's own text (with a sign).
        let last = DateTime::<Utc>::MAX_UTC.timestamp();
        for secs in [-62_167_219_201i64, 253_402_300_800, -210_866_803_200, last] {
            let t = DateTime::from_timestamp(secs, 1_000).unwrap();
            assert_eq!(
                rfc3339(t),
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                "{secs}"
            );
        }
    }

    #[test]
    fn rfc3339_is_what_chrono_writes_on_any_instant() {
        use proptest::prelude::*;
        // From PostgreSQL's first instant (4713 BC) to chrono's last (PostgreSQL's go further,
        // but such a value cannot be read into chrono at all).
        let instants = (
            -210_866_803_200i64..=DateTime::<Utc>::MAX_UTC.timestamp(),
            prop_oneof![
                Just(0u32),
                0..1_000u32,
                0..1_000_000u32,
                0..1_000_000_000u32
            ],
            0..3u32,
        );
        proptest!(ProptestConfig::with_cases(20_000), |((secs, frac, scale) in instants)| {
            let nanos = match scale {
                0 => frac % 1_000 * 1_000_000,
                1 => frac % 1_000_000 * 1_000,
                _ => frac,
            };
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            prop_assert_eq!(rfc3339(t), t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        });
    }

    #[test]
    fn csv_quoting_is_what_the_csv_crate_writes_on_any_text() {
        use proptest::prelude::*;
        proptest!(ProptestConfig::with_cases(5_000), |(texts in proptest::collection::vec("[a-c,;\"\r\n é\t]{0,12}", 1..5))| {
            let row: Vec<Field> = texts.iter().map(|t| Field::Text(Some(t.clone()))).collect();
            let list = Field::List(texts.clone());
            let mut expected = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(Vec::new());
            expected.write_record(row.iter().chain([&list]).map(csv_text)).unwrap();
            let mut e = Encoder::new(Format::Csv, &COLUMNS, None);
            for f in row.iter().chain([&list]) {
                write(&mut e, f);
            }
            e.end_row();
            prop_assert_eq!(e.out, expected.into_inner().unwrap());
        });
    }
}
