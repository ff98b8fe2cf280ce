//! The individual handoffs behind the analytics (OpenCX's `GET /handoff-analytics/events`): a
//! keyset walk of `handoffs_initiated_at_idx`, newest first.
//!
//! Policy: one item per handoff, by first initiation then id, both descending; a page starts
//! strictly after the previous page's last `(initiated_at, handoff_id)`, so handoffs that arrive
//! meanwhile never shift the pages (a newer one is before the first page; one backdated into
//! the walked range shows where it belongs). The limit is written into the SQL, as in
//! `store::handoffs::list`, so that the generic plan keeps the index walk.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Row};

use crate::auth::OrgId;

/// One handoff of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffEvent {
    /// Its id (the cursor's key, not answered).
    pub handoff_id: String,
    /// Its session.
    pub session_id: String,
    /// The AI's summary (the latest attempt's).
    pub summary: Option<String>,
    /// The AI's explanation (the latest attempt's).
    pub explanation: Option<String>,
    /// Reasons of all its attempts.
    pub reasons: Vec<String>,
    /// First initiation.
    pub initiated_at: DateTime<Utc>,
}

/// Up to `limit` handoffs first initiated in `[start, end)`, carrying `reason` when given,
/// strictly after `after` (newest first).
pub async fn page(
    db: impl PgExecutor<'_>,
    org: OrgId,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    reason: Option<&str>,
    after: Option<(DateTime<Utc>, &str)>,
    limit: i64,
) -> sqlx::Result<Vec<HandoffEvent>> {
    let limit = limit.clamp(1, 1_001);
    let (at, id) = match after {
        Some((at, id)) => (Some(at), Some(id)),
        None => (None, None),
    };
    let rows = sqlx::query(&format!(
        r#"select h.handoff_id, h.session_id, h.summary, h.explanation, h.reasons, h.initiated_at
           from handoffs h
           where h.org_id = $1 and h.initiated_at >= $2 and h.initiated_at < $3
             and ($4::text is null or $4 = any(h.reasons))
             and ($5::timestamptz is null or (h.initiated_at, h.handoff_id) < ($5, $6::text))
           order by h.initiated_at desc, h.handoff_id desc
           limit {limit}"#
    ))
    .bind(org.get())
    .bind(start)
    .bind(end)
    .bind(reason)
    .bind(at)
    .bind(id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HandoffEvent {
                handoff_id: r.try_get("handoff_id")?,
                session_id: r.try_get("session_id")?,
                summary: r.try_get("summary")?,
                explanation: r.try_get("explanation")?,
                reasons: r.try_get("reasons")?,
                initiated_at: r.try_get("initiated_at")?,
            })
        })
        .collect()
}
