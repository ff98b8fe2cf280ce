//! Webhook subscriptions and their outbox of deliveries.
//!
//! Policy: every function takes the organization and filters on it (another organization's
//! webhook is not found), except the workers' [`fan_out`], [`claim`] and outcome functions, which
//! serve every organization and address a delivery by its full key. See [`crate::webhooks`] for the
//! delivery rules these statements implement.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, PgPool, Row};
use uuid::Uuid;

use crate::auth::OrgId;

/// Most due deliveries of one endpoint that one claim looks at (its earliest due). Deliveries
/// waiting behind an earlier one of their key count against it, so an endpoint with more than
/// this many due messages queued behind in-flight ones of their keys waits until they are out.
pub const SCAN_PER_ENDPOINT: i64 = 64;

/// Channel of the notification sent when deliveries are enqueued or made due by hand.
pub const CHANNEL: &str = "baton_webhook_outbox";

/// A subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRow {
    /// Its id.
    pub id: Uuid,
    /// Destination.
    pub url: String,
    /// Subscribed event types.
    pub event_types: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// Current secret.
    pub secret: String,
    /// The secret before the last rotation.
    pub previous_secret: Option<String>,
    /// Until when the previous secret still signs.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Why Baton disabled it.
    pub disabled_reason: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

const WEBHOOK_COLUMNS: &str = "id, url, event_types, description, secret, previous_secret, \
    previous_secret_expires_at, enabled, disabled_reason, created_at, updated_at";

fn webhook(row: &PgRow) -> sqlx::Result<WebhookRow> {
    Ok(WebhookRow {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        event_types: row.try_get("event_types")?,
        description: row.try_get("description")?,
        secret: row.try_get("secret")?,
        previous_secret: row.try_get("previous_secret")?,
        previous_secret_expires_at: row.try_get("previous_secret_expires_at")?,
        enabled: row.try_get("enabled")?,
        disabled_reason: row.try_get("disabled_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Stores a new subscription.
pub async fn create(
    db: impl PgExecutor<'_>,
    org: OrgId,
    url: &str,
    event_types: &[String],
    description: Option<&str>,
    secret: &str,
) -> sqlx::Result<WebhookRow> {
    let sql = format!(
        "insert into webhooks (org_id, id, url, event_types, description, secret)
         values ($1, $2, $3, $4, $5, $6) returning {WEBHOOK_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(org.get())
        .bind(Uuid::now_v7())
        .bind(url)
        .bind(event_types)
        .bind(description)
        .bind(secret)
        .fetch_one(db)
        .await?;
    webhook(&row)
}

/// How many subscriptions the organization has.
pub async fn count(db: impl PgExecutor<'_>, org: OrgId) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from webhooks where org_id = $1")
        .bind(org.get())
        .fetch_one(db)
        .await
}

/// The organization's subscriptions, oldest first.
pub async fn list(pool: &PgPool, org: OrgId) -> sqlx::Result<Vec<WebhookRow>> {
    let sql = format!("select {WEBHOOK_COLUMNS} from webhooks where org_id = $1 order by id");
    sqlx::query(&sql)
        .bind(org.get())
        .fetch_all(pool)
        .await?
        .iter()
        .map(webhook)
        .collect()
}

/// One subscription.
pub async fn get(pool: &PgPool, org: OrgId, id: Uuid) -> sqlx::Result<Option<WebhookRow>> {
    let sql = format!("select {WEBHOOK_COLUMNS} from webhooks where org_id = $1 and id = $2");
    sqlx::query(&sql)
        .bind(org.get())
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(webhook)
        .transpose()
}

/// Changes to a subscription (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    /// New destination.
    pub url: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// New description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// Enable or disable. Enabling clears the disabled reason and the failure run.
    pub enabled: Option<bool>,
}

/// Applies a patch; `None` when there is no such subscription.
pub async fn update(
    pool: &PgPool,
    org: OrgId,
    id: Uuid,
    patch: &WebhookPatch,
) -> sqlx::Result<Option<WebhookRow>> {
    let sql = format!(
        "update webhooks set
             url = coalesce($3, url),
             event_types = coalesce($4, event_types),
             description = case when $5 then $6 else description end,
             enabled = coalesce($7, enabled),
             disabled_reason = case when $7 is null then disabled_reason else null end,
             failing_since = case when $7 then null else failing_since end,
             updated_at = now()
         where org_id = $1 and id = $2
         returning {WEBHOOK_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(org.get())
        .bind(id)
        .bind(patch.url.as_deref())
        .bind(patch.event_types.as_deref())
        .bind(patch.description.is_some())
        .bind(patch.description.clone().flatten())
        .bind(patch.enabled)
        .fetch_optional(pool)
        .await?;
    if patch.enabled == Some(true) && row.is_some() {
        notify(pool).await?;
    }
    row.as_ref().map(webhook).transpose()
}

/// Deletes a subscription and its deliveries; whether it existed.
pub async fn delete(pool: &PgPool, org: OrgId, id: Uuid) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    // After any fan-out under way, so none adds deliveries of this webhook behind the delete.
    sqlx::query(&format!("select pg_advisory_xact_lock({FAN_OUT_LOCK})"))
        .execute(&mut *tx)
        .await?;
    let deleted = sqlx::query("delete from webhooks where org_id = $1 and id = $2")
        .bind(org.get())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("delete from webhook_deliveries where org_id = $1 and webhook_id = $2")
        .bind(org.get())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(deleted > 0)
}

/// Replaces the secret; the current one keeps signing for `grace`.
pub async fn rotate(
    pool: &PgPool,
    org: OrgId,
    id: Uuid,
    secret: &str,
    grace: Duration,
) -> sqlx::Result<Option<WebhookRow>> {
    let sql = format!(
        "update webhooks set previous_secret = secret,
             previous_secret_expires_at = now() + $4 * interval '1 millisecond',
             secret = $3, updated_at = now()
         where org_id = $1 and id = $2
         returning {WEBHOOK_COLUMNS}"
    );
    sqlx::query(&sql)
        .bind(org.get())
        .bind(id)
        .bind(secret)
        .bind(grace.as_millis() as f64)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(webhook)
        .transpose()
}

/// A delivery as the log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    /// Its id.
    pub id: Uuid,
    /// Position in the log (cursor).
    pub seq: i64,
    /// `webhook-id`.
    pub message_id: String,
    /// Event type.
    pub event_type: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// Status code of the last attempt's answer.
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the last attempt started.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When an attempt succeeded.
    pub delivered_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str = "id, seq, message_id, event_type, status, attempts, \
    last_status_code, last_error, next_attempt_at, last_attempt_at, created_at, delivered_at";

fn delivery(row: &PgRow) -> sqlx::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        message_id: row.try_get("message_id")?,
        event_type: row.try_get("event_type")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        last_status_code: row.try_get("last_status_code")?,
        last_error: row.try_get("last_error")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        created_at: row.try_get("created_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

/// A page of an endpoint's deliveries, newest first, before `before_seq` (exclusive). The
/// batches acknowledged before the call are fanned out first, so the page lists every message
/// of every acknowledged batch.
pub async fn deliveries(
    pool: &PgPool,
    org: OrgId,
    webhook_id: Uuid,
    status: Option<&str>,
    before_seq: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryRow>> {
    let sql = format!(
        "select {DELIVERY_COLUMNS} from webhook_deliveries
         where org_id = $1 and webhook_id = $2
           and ($3::text is null or status = $3)
           and ($4::bigint is null or seq < $4)
         order by seq desc
         limit $5"
    );
    let mut tx = pool.begin().await?;
    fan_out_all(&mut tx).await?;
    tx.commit().await?;
    sqlx::query(&sql)
        .bind(org.get())
        .bind(webhook_id)
        .bind(status)
        .bind(before_seq)
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(delivery)
        .collect()
}

/// Makes a delivery due now (whatever its status); `None` when there is no such delivery of
/// that endpoint.
pub async fn retry(
    pool: &PgPool,
    org: OrgId,
    webhook_id: Uuid,
    delivery_id: Uuid,
) -> sqlx::Result<Option<DeliveryRow>> {
    let sql = format!(
        "update webhook_deliveries set status = 'pending', next_attempt_at = now(),
             delivered_at = null
         where org_id = $1 and webhook_id = $2 and id = $3
         returning {DELIVERY_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(org.get())
        .bind(webhook_id)
        .bind(delivery_id)
        .fetch_optional(pool)
        .await?;
    if row.is_some() {
        notify(pool).await?;
    }
    row.as_ref().map(delivery).transpose()
}

/// Sends the outbox notification, in a transaction of its own that does not wait for its commit
/// to be flushed: PostgreSQL holds a database-wide lock from a notifying transaction's commit
/// until the commit is flushed, and a lost wake-up only delays deliveries until the next poll.
async fn notify(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("select set_config('synchronous_commit', 'off', true), pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(db)
        .await?;
    Ok(())
}

/// The enabled subscriptions of an organization: `(id, event types)`. One probe of the primary
/// key: what ingest pays when nothing is subscribed.
pub async fn subscriptions(
    conn: &mut PgConnection,
    org: OrgId,
) -> sqlx::Result<Vec<(Uuid, Vec<String>)>> {
    sqlx::query_as("select id, event_types from webhooks where org_id = $1 and enabled")
        .bind(org.get())
        .fetch_all(conn)
        .await
}

/// An outbox row to insert, column by column.
#[derive(Debug, Default)]
pub struct NewDeliveries {
    /// The row's `seq` ([`next_outbox_seq`]).
    pub seq: i64,
    /// Endpoint of each delivery.
    pub webhook_ids: Vec<Uuid>,
    /// Event type of each delivery.
    pub event_types: Vec<&'static str>,
    /// Ordering key of each delivery (the message's subject: `handoff:<id>`, `session:<id>`,
    /// `call:<id>`).
    pub ordering_keys: Vec<String>,
    /// Index (1-based) of each delivery's message in `payloads` and `message_times`.
    pub payload_index: Vec<i32>,
    /// Each message's whole body when rendered at ingest; `None`: the fan-out renders it.
    pub payloads: Vec<Option<String>>,
    /// When each message's event occurred.
    pub message_times: Vec<DateTime<Utc>>,
}

/// The `seq` of the next outbox row (taken before the row is written, so that the handoffs the
/// batch writes can name it).
pub async fn next_outbox_seq(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("select nextval(pg_get_serial_sequence('webhook_outbox', 'seq'))")
        .fetch_one(conn)
        .await
}

/// The handoffs of `sessions` whose latest webhook message is in an outbox row still waiting
/// (`seq >= from`): `(handoff_id, webhook_seq)`. One probe of the session index per session.
pub async fn waiting_handoffs_of_sessions(
    conn: &mut PgConnection,
    org: OrgId,
    sessions: &[&str],
    from: i64,
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        r#"select h.handoff_id, h.webhook_seq
           from unnest($2::text[]) as q(session_id)
           cross join lateral (select h.handoff_id, h.webhook_seq from handoffs h
                               where h.org_id = $1 and h.session_id = q.session_id
                                 and h.webhook_seq >= $3
                               offset 0) h"#,
    )
    .bind(org.get())
    .bind(sessions)
    .bind(from)
    .fetch_all(conn)
    .await
}

/// Every `(outbox seq, subject)` of the organization's rows still in the outbox.
pub async fn waiting_subjects(
    conn: &mut PgConnection,
    org: OrgId,
) -> sqlx::Result<Vec<(i64, String)>> {
    sqlx::query_as(
        r#"select distinct o.seq, k.key
           from webhook_outbox o cross join lateral unnest(o.ordering_keys) as k(key)
           where o.org_id = $1"#,
    )
    .bind(org.get())
    .fetch_all(conn)
    .await
}

/// Stores records as they are for waiting messages (`webhook_snapshots`); a pair already kept
/// stays as it was.
pub async fn keep_snapshots(
    conn: &mut PgConnection,
    org: OrgId,
    seqs: &[i64],
    subjects: &[&str],
    data: &[&str],
) -> sqlx::Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        r#"insert into webhook_snapshots (outbox_seq, subject, org_id, data)
           select s.seq, s.subject, $1, s.data
           from unnest($2::int8[], $3::text[], $4::text[]) as s(seq, subject, data)
           on conflict do nothing"#,
    )
    .bind(org.get())
    .bind(seqs)
    .bind(subjects)
    .bind(data)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the deliveries of one batch (in their order: it is the delivery order) as one outbox
/// row; the workers fan it out into `webhook_deliveries` ([`fan_out`]). The caller wakes them
/// once its transaction has committed ([`notify_outbox`]).
pub async fn enqueue(
    conn: &mut PgConnection,
    org: OrgId,
    rows: &NewDeliveries,
) -> sqlx::Result<()> {
    if rows.webhook_ids.is_empty() {
        return Ok(());
    }
    // The delivery ids and `webhook-id`s are made by the fan-out (once: it moves a row once).
    sqlx::query(
        r#"insert into webhook_outbox (seq, org_id, webhook_ids, event_types, ordering_keys,
                                       payload_index, payloads, message_times)
           overriding system value
           values ($1, $2, $3, $4, $5, $6, $7, $8)"#,
    )
    .bind(rows.seq)
    .bind(org.get())
    .bind(&rows.webhook_ids)
    .bind(&rows.event_types)
    .bind(&rows.ordering_keys)
    .bind(&rows.payload_index)
    .bind(&rows.payloads)
    .bind(&rows.message_times)
    .execute(conn)
    .await?;
    Ok(())
}

/// The advisory lock that lets one fan-out run at a time, across every server.
const FAN_OUT_LOCK: &str = "hashtext('baton.webhook_fan_out')";

/// Most outbox rows (ingest batches) one fan-out moves: ~10,000 deliveries of full batches, so
/// that a claim behind a backlog does not wait long.
pub const FAN_OUT_BATCHES: i64 = 16;

/// Moves up to `batches` outbox rows, oldest first, into `webhook_deliveries` on `conn` (in its
/// transaction, which must commit for the move to count); returns the deliveries created.
/// Deliveries to endpoints deleted since are dropped.
///
/// One fan-out at a time across every server (a transaction-scoped advisory lock): with `wait`
/// false, a caller that finds another fan-out under way returns 0 at once (that one moves the
/// rows); with `wait` true it waits for it. Serial fan-outs in `seq` order keep the deliveries
/// of a key in the order of their batches (`webhook_deliveries.seq` follows the insert order).
/// Each row is deleted in the transaction that inserts its deliveries: moved exactly once. The
/// rows are read out whole and each batch's deliveries inserted by one statement (one statement
/// for all, subscripting the stored body array per delivery, read and decompressed the whole
/// array each time, and sorted megabytes of bodies on disk).
pub async fn fan_out(conn: &mut PgConnection, batches: i64, wait: bool) -> sqlx::Result<u64> {
    fan_out_through(conn, batches, wait, i64::MAX).await
}

/// [`fan_out`] of the rows up to `seq` `through` only.
async fn fan_out_through(
    conn: &mut PgConnection,
    batches: i64,
    wait: bool,
    through: i64,
) -> sqlx::Result<u64> {
    let locked: bool = if wait {
        sqlx::query(&format!("select pg_advisory_xact_lock({FAN_OUT_LOCK})"))
            .execute(&mut *conn)
            .await?;
        true
    } else {
        sqlx::query_scalar(&format!("select pg_try_advisory_xact_lock({FAN_OUT_LOCK})"))
            .fetch_one(&mut *conn)
            .await?
    };
    if !locked {
        return Ok(0);
    }
    // The rows come out whole (each array read and decompressed once), then each batch's
    // deliveries go in with one statement, as ingest used to insert them.
    let rows = sqlx::query(
        r#"delete from webhook_outbox
           where seq in (select seq from webhook_outbox where seq <= $2 order by seq limit $1)
           returning seq, org_id, created_at, delivery_ids, webhook_ids, message_ids,
                     event_types, ordering_keys, payload_index, payloads, message_times"#,
    )
    .bind(batches)
    .bind(through)
    .fetch_all(&mut *conn)
    .await?;
    let mut batches: Vec<OutboxRow> = rows
        .iter()
        .map(OutboxRow::of)
        .collect::<sqlx::Result<_>>()?;
    if batches.is_empty() {
        return Ok(0);
    }
    batches.sort_by_key(|b| b.seq);
    render(&mut *conn, &mut batches).await?;
    let mut v7 = crate::webhooks::outbox::V7Ids::new();
    for b in &mut batches {
        b.make_ids(&mut v7);
    }
    let mut moved = 0;
    for b in &batches {
        moved += sqlx::query(
            r#"insert into webhook_deliveries (org_id, id, webhook_id, message_id, event_type,
                                               ordering_key, payload, next_attempt_at, created_at)
               select $1, r.id, r.webhook_id, r.message_id, r.event_type, r.ordering_key,
                      ($8::text[])[r.payload_index], now(), $9
               from unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                           $7::int[])
                    with ordinality as r(id, webhook_id, message_id, event_type, ordering_key,
                                         payload_index, n)
               where exists (select 1 from webhooks w
                             where w.org_id = $1 and w.id = r.webhook_id)
                 and ($8::text[])[r.payload_index] is not null
               order by r.n"#,
        )
        .bind(b.org_id)
        .bind(&b.delivery_ids)
        .bind(&b.webhook_ids)
        .bind(&b.message_ids)
        .bind(&b.event_types)
        .bind(&b.ordering_keys)
        .bind(&b.payload_index)
        .bind(&b.payloads)
        .bind(b.created_at)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(moved)
}

/// An outbox row taken by a fan-out.
struct OutboxRow {
    seq: i64,
    org_id: Uuid,
    created_at: DateTime<Utc>,
    /// Made at ingest in rows written before the fan-out made them.
    delivery_ids: Option<Vec<Uuid>>,
    webhook_ids: Vec<Uuid>,
    /// The same.
    message_ids: Option<Vec<String>>,
    event_types: Vec<String>,
    ordering_keys: Vec<String>,
    payload_index: Vec<i32>,
    /// One per message: the body, or `None` until [`render`] makes it.
    payloads: Vec<Option<String>>,
    /// One per message (`None` in rows written before messages were rendered at fan-out).
    message_times: Option<Vec<DateTime<Utc>>>,
}

impl OutboxRow {
    fn of(r: &PgRow) -> sqlx::Result<OutboxRow> {
        Ok(OutboxRow {
            seq: r.try_get("seq")?,
            org_id: r.try_get("org_id")?,
            created_at: r.try_get("created_at")?,
            delivery_ids: r.try_get("delivery_ids")?,
            webhook_ids: r.try_get("webhook_ids")?,
            message_ids: r.try_get("message_ids")?,
            event_types: r.try_get("event_types")?,
            ordering_keys: r.try_get("ordering_keys")?,
            payload_index: r.try_get("payload_index")?,
            payloads: r.try_get("payloads")?,
            message_times: r.try_get("message_times")?,
        })
    }

    /// A delivery id for each delivery and a `webhook-id` for each message (shared by its
    /// endpoints), where ingest did not make them.
    fn make_ids(&mut self, v7: &mut crate::webhooks::outbox::V7Ids) {
        if self.delivery_ids.is_none() {
            self.delivery_ids = Some(self.webhook_ids.iter().map(|_| v7.next()).collect());
        }
        if self.message_ids.is_none() {
            let per_message: Vec<String> = (0..self.payloads.len())
                .map(|_| format!("msg_{}", v7.next().simple()))
                .collect();
            self.message_ids = Some(
                self.payload_index
                    .iter()
                    .map(|&pi| {
                        usize::try_from(pi)
                            .ok()
                            .and_then(|p| per_message.get(p.checked_sub(1)?))
                            .cloned()
                            .unwrap_or_default()
                    })
                    .collect(),
            );
        }
    }

    /// Each message without a body: `(index, subject, event type)`.
    fn unrendered(&self) -> Vec<(usize, &str, &str)> {
        let mut seen = vec![false; self.payloads.len()];
        let mut out = Vec::new();
        for (d, &pi) in self.payload_index.iter().enumerate() {
            let Some(i) = usize::try_from(pi).ok().and_then(|p| p.checked_sub(1)) else {
                continue;
            };
            if i < self.payloads.len() && self.payloads[i].is_none() && !seen[i] {
                seen[i] = true;
                out.push((
                    i,
                    self.ordering_keys[d].as_str(),
                    self.event_types[d].as_str(),
                ));
            }
        }
        out
    }
}

/// Renders the bodies the rows' messages carry: each record as its batch left it. That is the
/// snapshot a later batch kept before changing it, if any, else the record as it is now (no
/// batch changed it since). The snapshots are read after the records: a batch that commits in
/// between kept its snapshot in the same transaction as its change, so a record read after that
/// change always has a snapshot to replace it. A message whose record no longer exists is
/// dropped (its deliveries are not created).
async fn render(conn: &mut PgConnection, batches: &mut [OutboxRow]) -> sqlx::Result<()> {
    let mut wanted: HashMap<Uuid, Vec<&str>> = HashMap::new();
    for b in batches.iter() {
        for (_, key, _) in b.unrendered() {
            wanted.entry(b.org_id).or_default().push(key);
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let mut current: HashMap<(Uuid, String), String> = HashMap::new();
    for (org, keys) in wanted {
        let records =
            crate::webhooks::outbox::records(&mut *conn, OrgId::of_stored_row(org), &keys).await?;
        current.extend(records.into_iter().map(|(k, v)| ((org, k), v)));
    }
    // The snapshots of these rows come out with any left for rows moved before (a batch can keep
    // a snapshot for a row that a fan-out is moving at that moment): both are snapshots whose
    // row is gone (this transaction deleted these). A snapshot is written only for a row its
    // writer saw committed, so a row not yet committed (a lower `seq` can commit after a higher
    // one) has none to lose.
    let max_seq = batches.iter().map(|b| b.seq).max().unwrap_or(0);
    let kept: HashMap<(i64, String), String> = sqlx::query_as::<_, (i64, String, String)>(
        r#"delete from webhook_snapshots s
           where s.outbox_seq <= $1
             and not exists (select 1 from webhook_outbox o where o.seq = s.outbox_seq)
           returning s.outbox_seq, s.subject, s.data"#,
    )
    .bind(max_seq)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(seq, subject, data)| ((seq, subject), data))
    .collect();
    for b in batches.iter_mut() {
        let rendered: Vec<(usize, Option<String>)> = b
            .unrendered()
            .into_iter()
            .map(|(i, key, event_type)| {
                let data = kept
                    .get(&(b.seq, key.to_owned()))
                    .or_else(|| current.get(&(b.org_id, key.to_owned())));
                let at = b.message_times.as_ref().and_then(|t| t.get(i)).copied();
                let body = data
                    .zip(at)
                    .map(|(data, at)| crate::webhooks::outbox::body(event_type, at, data));
                (i, body)
            })
            .collect();
        for (i, body) in rendered {
            b.payloads[i] = body;
        }
    }
    Ok(())
}

/// Fans out, on `conn` (in its transaction), every outbox row committed before the call,
/// waiting for a fan-out under way: for the delivery log, and for an erasure, which rewrites the
/// deliveries of every acknowledged batch. Rows committed meanwhile are left to the workers.
pub async fn fan_out_all(conn: &mut PgConnection) -> sqlx::Result<u64> {
    let Some(last): Option<i64> = sqlx::query_scalar("select max(seq) from webhook_outbox")
        .fetch_one(&mut *conn)
        .await?
    else {
        return Ok(0);
    };
    let mut total = 0;
    loop {
        let moved = fan_out_through(&mut *conn, FAN_OUT_BATCHES, true, last).await?;
        total += moved;
        let left: bool =
            sqlx::query_scalar("select exists (select 1 from webhook_outbox where seq <= $1)")
                .bind(last)
                .fetch_one(&mut *conn)
                .await?;
        if !left {
            return Ok(total);
        }
    }
}

/// Wakes the delivery workers of every server (on [`CHANNEL`]).
pub async fn notify_outbox(pool: &PgPool) -> sqlx::Result<()> {
    notify(pool).await
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Organization.
    pub org_id: Uuid,
    /// Delivery.
    pub id: Uuid,
    /// Endpoint.
    pub webhook_id: Uuid,
    /// `webhook-id`.
    pub message_id: String,
    /// Body.
    pub payload: String,
    /// Attempts including this one (the claim's token: the outcome is recorded only if it still
    /// matches).
    pub attempts: i32,
    /// Enqueued.
    pub created_at: DateTime<Utc>,
    /// Destination.
    pub url: String,
    /// Secrets to sign with (the current one, and the previous one during its grace).
    pub secrets: Vec<String>,
}

/// Claims up to `limit` due deliveries for one attempt each: never one whose key has an
/// earlier pending delivery to the same endpoint, at most `per_endpoint` in flight per endpoint
/// (`busy` lists the endpoints with attempts in flight on this server, and how many); each gets
/// a lease of `lease` (its `next_attempt_at` moves past it).
///
/// First it fans out the outbox ([`fan_out`], skipped while another server does). Then two
/// statements in one transaction, each with a plan that cannot go wrong whatever the
/// statistics. The first
/// finds the endpoints that have pending deliveries by skipping through the partial index of
/// pending rows by endpoint (one index descent per endpoint, whatever the backlog), then reads,
/// for each enabled endpoint with room, its earliest due deliveries through the same index (at
/// most [`SCAN_PER_ENDPOINT`], stopping once it has its room's worth), checks each by an index
/// probe (`offset 0` keeps the probes per row), without locks. So an endpoint at its limit,
/// however large its backlog, costs one index descent, and never holds up the others. The
/// second locks those still due (`for update skip locked`: another server's claim is skipped,
/// never waited for) and moves them on. A delivery that another server claimed in between is no
/// longer due and drops out; one that became eligible meanwhile waits for the next claim.
///
/// (The claim this replaces read the earliest due rows of all endpoints through one index on
/// `next_attempt_at`, filtering out the endpoints at their limit: with a backlog it walked the
/// whole backlog of a busy endpoint on every claim, 30–150 ms with 80,000 pending, so a backlog
/// drained at 40–260 deliveries/s.)
pub async fn claim(
    pool: &PgPool,
    limit: i64,
    per_endpoint: i64,
    busy: &[(Uuid, i32)],
    lease: Duration,
) -> sqlx::Result<Vec<Claimed>> {
    let (busy_ids, busy_counts): (Vec<Uuid>, Vec<i32>) = busy.iter().copied().unzip();
    // The per-endpoint scan's bound is a literal so that every plan (custom or generic) sees it.
    let sql = format!(
        r#"with recursive endpoints (org_id, webhook_id) as (
               (select d.org_id, d.webhook_id from webhook_deliveries d
                where d.status = 'pending' and d.next_attempt_at is not null
                order by d.org_id, d.webhook_id
                limit 1)
               union all
               select n.org_id, n.webhook_id from endpoints e
               cross join lateral (
                   select d.org_id, d.webhook_id from webhook_deliveries d
                   where d.status = 'pending' and d.next_attempt_at is not null
                     and (d.org_id, d.webhook_id) > (e.org_id, e.webhook_id)
                   order by d.org_id, d.webhook_id
                   limit 1) n)
           select c.org_id, c.id
           from endpoints e
           cross join lateral (
               select w.enabled from webhooks w
               where w.org_id = e.org_id and w.id = e.webhook_id
               offset 0) w
           cross join lateral (
               select greatest($2 - coalesce(
                   (select b.n from unnest($3::uuid[], $4::int[]) as b(webhook_id, n)
                    where b.webhook_id = e.webhook_id), 0), 0) as room) r
           cross join lateral (
               select s.org_id, s.id, s.next_attempt_at, s.seq
               from (select d.org_id, d.id, d.ordering_key, d.seq, d.next_attempt_at
                     from webhook_deliveries d
                     where d.org_id = e.org_id and d.webhook_id = e.webhook_id
                       and d.status = 'pending' and d.next_attempt_at <= now()
                     order by d.next_attempt_at
                     limit {SCAN_PER_ENDPOINT}) s
               where r.room > 0
                 and not exists (
                   select 1 from (
                       select 1 from webhook_deliveries x
                       where x.org_id = s.org_id and x.webhook_id = e.webhook_id
                         and x.ordering_key = s.ordering_key and x.status = 'pending'
                         and x.seq < s.seq
                       offset 0) earlier)
               limit r.room) c
           where w.enabled
           order by c.next_attempt_at, c.seq
           limit $1"#
    );
    // Without JIT: the planner's estimate for a claim (it cannot know how few endpoints have
    // pending deliveries) is above `jit_above_cost`, and compiling it took 15-50 ms for a
    // statement that runs in 0.1-0.5 ms.
    //
    // Nor does it wait for its commit to be flushed: a claim lost in a crash of PostgreSQL is
    // made again (the attempt is repeated: at least once). Outcomes do wait (a later message of
    // the key is claimed only once its predecessor's outcome is durable, and that flush carries
    // every claim committed before it), as does ingest (acknowledged ⇒ stored). Waiting for the
    // flush of every claim bounded a backlog's drain by the disk's flush latency.
    let mut tx = pool.begin().await?;
    sqlx::query(
        "select set_config('jit', 'off', true), set_config('synchronous_commit', 'off', true)",
    )
    .execute(&mut *tx)
    .await?;
    // The batches acknowledged since the last claim become deliveries first (unless another
    // server is moving them right now), in this transaction: this claim already sees them.
    if fan_out(&mut tx, FAN_OUT_BATCHES, false).await? > 0 {
        // The other servers' workers claim their share too.
        sqlx::query("select pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    let candidates: Vec<(Uuid, Uuid)> = sqlx::query_as(&sql)
        .bind(limit)
        .bind(per_endpoint)
        .bind(&busy_ids)
        .bind(&busy_counts)
        .fetch_all(&mut *tx)
        .await?;
    if candidates.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let (orgs, ids): (Vec<Uuid>, Vec<Uuid>) = candidates.into_iter().unzip();
    let rows = sqlx::query(
        r#"update webhook_deliveries d
           set attempts = d.attempts + 1, last_attempt_at = now(),
               next_attempt_at = now() + $3 * interval '1 millisecond'
           from (select l.org_id, l.id from webhook_deliveries l
                 where (l.org_id, l.id) in (select * from unnest($1::uuid[], $2::uuid[]))
                   and coalesce(l.status, '') = 'pending' and l.next_attempt_at <= now()
                 for update skip locked) due,
                webhooks w
           where d.org_id = due.org_id and d.id = due.id
             and w.org_id = d.org_id and w.id = d.webhook_id
           returning d.org_id, d.id, d.webhook_id, d.message_id, d.payload, d.attempts,
                     d.created_at, w.url, w.secret,
                     case when w.previous_secret_expires_at > now() then w.previous_secret end
                         as previous_secret"#,
    )
    .bind(&orgs)
    .bind(&ids)
    .bind(lease.as_millis() as f64)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            let mut secrets: Vec<String> = vec![r.try_get("secret")?];
            if let Some(p) = r.try_get::<Option<String>, _>("previous_secret")? {
                secrets.push(p);
            }
            Ok(Claimed {
                org_id: r.try_get("org_id")?,
                id: r.try_get("id")?,
                webhook_id: r.try_get("webhook_id")?,
                message_id: r.try_get("message_id")?,
                payload: r.try_get("payload")?,
                attempts: r.try_get("attempts")?,
                created_at: r.try_get("created_at")?,
                url: r.try_get("url")?,
                secrets,
            })
        })
        .collect()
}

/// A successful attempt, to record with others ([`record_delivered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Organization.
    pub org_id: Uuid,
    /// Delivery.
    pub id: Uuid,
    /// Endpoint.
    pub webhook_id: Uuid,
    /// The claim's attempt number (recorded only if the delivery is still at it).
    pub attempts: i32,
    /// The 2xx status code.
    pub status: u16,
}

/// Records successful attempts, each with its own status code, in one statement (one round
/// trip, one transaction): each delivery that is still at its claimed attempt becomes
/// `succeeded`, and the failure runs of their endpoints end. Returns how many were recorded.
pub async fn record_delivered(pool: &PgPool, done: &[Delivered]) -> sqlx::Result<u64> {
    if done.is_empty() {
        return Ok(0);
    }
    let orgs: Vec<Uuid> = done.iter().map(|d| d.org_id).collect();
    let ids: Vec<Uuid> = done.iter().map(|d| d.id).collect();
    let attempts: Vec<i32> = done.iter().map(|d| d.attempts).collect();
    let codes: Vec<i32> = done.iter().map(|d| i32::from(d.status)).collect();
    let mut endpoints: Vec<(Uuid, Uuid)> = done.iter().map(|d| (d.org_id, d.webhook_id)).collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    let (ep_orgs, ep_ids): (Vec<Uuid>, Vec<Uuid>) = endpoints.into_iter().unzip();
    // A data-modifying `with` runs whether or not the query reads it. Rows are found by primary
    // key probes (`offset 0` keeps the plan a nested loop whatever the statistics). The status
    // test is written `coalesce(status, '') = 'pending'` here and in every statement that finds
    // deliveries by key (`status` is never null): written plainly, it lets the planner add the
    // partial indexes of pending rows to the key lookup (a `BitmapAnd`), which with statistics
    // from before a fan-out read every pending row's index entry for each delivery (2.3 ms per
    // row with 84,000 pending; a backlog drained at 860 deliveries/s).
    // Committed with a flush, one per batch (see `claim`): a success recorded, however quickly
    // the next message of its key follows, is never sent again after it.
    let updated: i64 = sqlx::query_scalar(
        r#"with d as (
               update webhook_deliveries w
               set status = 'succeeded', last_status_code = u.code, last_error = null,
                   next_attempt_at = null, delivered_at = now()
               from (select * from unnest($1::uuid[], $2::uuid[], $3::int[], $4::int[])
                         as u(org_id, id, attempts, code) offset 0) u
               where w.org_id = u.org_id and w.id = u.id and w.attempts = u.attempts
                 and coalesce(w.status, '') = 'pending'
               returning 1),
           e as (
               update webhooks h set failing_since = null
               from unnest($5::uuid[], $6::uuid[]) as x(org_id, id)
               where h.org_id = x.org_id and h.id = x.id and h.failing_since is not null
               returning 1)
           select count(*) from d"#,
    )
    .bind(&orgs)
    .bind(&ids)
    .bind(&attempts)
    .bind(&codes)
    .bind(&ep_orgs)
    .bind(&ep_ids)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(updated).unwrap_or(0))
}

/// What an attempt came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A 2xx.
    Delivered {
        /// The status code.
        status: u16,
    },
    /// 410 Gone: the endpoint is disabled.
    Gone,
    /// Anything else: retried at `retry_at`, or given up when `None`.
    Failed {
        /// The status code, when an answer came.
        status: Option<u16>,
        /// Why.
        error: String,
        /// When to try again; `None`: the retry window is over.
        retry_at: Option<DateTime<Utc>>,
    },
}

/// Records an attempt's outcome, if the delivery is still at the claimed attempt (a manual
/// retry or a takeover after the lease may have moved it on). `disable_after`: an endpoint
/// failing without a success for this long is disabled. Returns whether it was recorded.
pub async fn record(
    pool: &PgPool,
    c: &Claimed,
    outcome: &Outcome,
    disable_after: Duration,
) -> sqlx::Result<bool> {
    let (status, code, error, next): (&str, Option<i32>, Option<String>, Option<DateTime<Utc>>) =
        match outcome {
            Outcome::Delivered { status } => ("succeeded", Some(i32::from(*status)), None, None),
            Outcome::Gone => (
                "failed",
                Some(410),
                Some("the endpoint answered 410 Gone; it is now disabled".to_owned()),
                None,
            ),
            Outcome::Failed {
                status,
                error,
                retry_at,
            } => (
                if retry_at.is_some() {
                    "pending"
                } else {
                    "failed"
                },
                status.map(i32::from),
                Some(error.clone()),
                *retry_at,
            ),
        };
    // A success (the common case) is one statement, without a transaction: the delivery's
    // outcome and the end of the endpoint's failure run, written atomically in one round trip
    // (a data-modifying `with` runs whether or not the query reads it).
    if let Outcome::Delivered { .. } = outcome {
        let updated: i64 = sqlx::query_scalar(
            r#"with d as (
                   update webhook_deliveries
                   set status = 'succeeded', last_status_code = $4, last_error = null,
                       next_attempt_at = null, delivered_at = now()
                   where org_id = $1 and id = $2 and attempts = $3
                     and coalesce(status, '') = 'pending'
                   returning 1),
               w as (
                   update webhooks set failing_since = null
                   where org_id = $1 and id = $5 and failing_since is not null
                   returning 1)
               select count(*) from d"#,
        )
        .bind(c.org_id)
        .bind(c.id)
        .bind(c.attempts)
        .bind(code)
        .bind(c.webhook_id)
        .fetch_one(pool)
        .await?;
        return Ok(updated > 0);
    }
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        r#"update webhook_deliveries
           set status = $4, last_status_code = $5, last_error = $6, next_attempt_at = $7,
               delivered_at = case when $4 = 'succeeded' then now() end
           where org_id = $1 and id = $2 and attempts = $3
             and coalesce(status, '') = 'pending'"#,
    )
    .bind(c.org_id)
    .bind(c.id)
    .bind(c.attempts)
    .bind(status)
    .bind(code)
    .bind(error.as_deref())
    .bind(next)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    match outcome {
        Outcome::Delivered { .. } => {}
        Outcome::Gone => {
            sqlx::query(
                "update webhooks set enabled = false, updated_at = now(),
                     disabled_reason = 'the endpoint answered 410 Gone (at ' || to_char(now() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || ')'
                 where org_id = $1 and id = $2 and enabled",
            )
            .bind(c.org_id)
            .bind(c.webhook_id)
            .execute(&mut *tx)
            .await?;
        }
        Outcome::Failed { error, .. } => {
            sqlx::query(
                r#"update webhooks set
                       failing_since = coalesce(failing_since, now()),
                       enabled = enabled and not coalesce(failing_since <= now() - $3 * interval '1 millisecond', false),
                       disabled_reason = case
                           when enabled and failing_since <= now() - $3 * interval '1 millisecond'
                           then 'failing continuously since '
                                || to_char(failing_since at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                                || ' (no successful delivery for ' || ($3 / 3600000)::int || ' h); last error: ' || $4
                           else disabled_reason end,
                       updated_at = case
                           when enabled and failing_since <= now() - $3 * interval '1 millisecond'
                           then now() else updated_at end
                   where org_id = $1 and id = $2"#,
            )
            .bind(c.org_id)
            .bind(c.webhook_id)
            .bind(disable_after.as_millis() as f64)
            .bind(error)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(updated > 0)
}
