//! An organization's call figures: its per-agent rollups, the raw calls of a range's edges (for
//! resellers too), and its agents' names.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::columns::{AGENT_SUMS, call_sums};
use super::shared::{Owner, span_arrays, spans};
use crate::auth::OrgId;
use crate::domain::buckets::Cover;
use crate::domain::events::{CallCompleted, CallSentiment, Outcome, Telemetry};
use crate::domain::metrics::report::{AgentInfo, AgentSums};

/// An empty range's bounds.
const EMPTY: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

pub(super) async fn read_agents(
    pool: &PgPool,
    orgs: &[Uuid],
    cover: &Cover,
) -> sqlx::Result<Vec<AgentSums>> {
    if cover.segments.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "select {AGENT_SUMS} from {spans} group by r.org_id, r.agent_id",
        spans = spans("call_metric_rollups", Owner::Orgs)
    );
    let (grains, from, to) = span_arrays(&cover.segments);
    let rows = sqlx::query(&sql)
        .bind(orgs)
        .bind(grains)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await?;
    rows.iter().map(agent_sums).collect()
}

fn agent_sums(row: &sqlx::postgres::PgRow) -> sqlx::Result<AgentSums> {
    Ok(AgentSums {
        org_id: row.try_get("org_id")?,
        agent_id: row.try_get("agent_id")?,
        sums: call_sums(row)?,
    })
}

/// The raw calls of a cover's edges: two index range scans per organization (under 15 minutes
/// each), whatever the number of organizations.
pub(super) async fn read_edges(
    pool: &PgPool,
    orgs: &[Uuid],
    cover: &Cover,
) -> sqlx::Result<Vec<(Uuid, CallCompleted)>> {
    if cover.raw.is_empty() {
        return Ok(Vec::new());
    }
    // At most two raw parts; a missing one is an empty range.
    let part = |i: usize| cover.raw.get(i).copied().unwrap_or((EMPTY, EMPTY));
    let rows = sqlx::query(
        r#"select c.org_id, c.call_id, c.agent_id, c.started_at, c.duration_seconds, c.outcome,
                  c.sentiment, c.escalation_reason, c.escalated_after_seconds, c.ttft_ms,
                  c.stt_confidence, c.tool_calls, c.tool_call_errors, c.user_corrections,
                  c.cached_tokens, c.total_tokens
           from unnest($1::uuid[]) as o(id)
           cross join lateral (
               select * from calls c
               where c.org_id = o.id and c.started_at >= $2 and c.started_at < $3
               union all
               select * from calls c
               where c.org_id = o.id and c.started_at >= $4 and c.started_at < $5
           ) c"#,
    )
    .bind(orgs)
    .bind(part(0).0)
    .bind(part(0).1)
    .bind(part(1).0)
    .bind(part(1).1)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let outcome: String = row.try_get("outcome")?;
            let sentiment: Option<String> = row.try_get("sentiment")?;
            let call = CallCompleted {
                call_id: row.try_get("call_id")?,
                agent_id: row.try_get("agent_id")?,
                started_at: row.try_get("started_at")?,
                duration_seconds: row.try_get("duration_seconds")?,
                outcome: Outcome::parse(&outcome).ok_or_else(|| decode_error(&outcome))?,
                sentiment: match sentiment {
                    None => None,
                    Some(s) => Some(CallSentiment::parse(&s).ok_or_else(|| decode_error(&s))?),
                },
                escalation_reason: row.try_get("escalation_reason")?,
                escalated_after_seconds: row.try_get("escalated_after_seconds")?,
                telemetry: Telemetry {
                    ttft_ms: row.try_get("ttft_ms")?,
                    stt_confidence: row.try_get("stt_confidence")?,
                    tool_calls: row.try_get("tool_calls")?,
                    tool_call_errors: row.try_get("tool_call_errors")?,
                    user_corrections: row.try_get("user_corrections")?,
                    cached_tokens: row.try_get("cached_tokens")?,
                    total_tokens: row.try_get("total_tokens")?,
                },
            };
            Ok((row.try_get("org_id")?, call))
        })
        .collect()
}

fn decode_error(text: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected stored value `{text}`").into())
}

/// Names and states of the declared agents of `orgs` (one index range per organization; read
/// beside the figures rather than after them, for the agents the figures will name).
pub(super) async fn agent_infos(pool: &PgPool, orgs: &[OrgId]) -> sqlx::Result<Vec<AgentInfo>> {
    if orgs.is_empty() {
        return Ok(Vec::new());
    }
    let orgs: Vec<Uuid> = orgs.iter().map(|o| o.get()).collect();
    let rows: Vec<(Uuid, String, String, String, bool)> = sqlx::query_as(
        r#"select a.org_id, a.agent_id, a.name, a.status, a.deleted_at is not null
           from agents a where a.org_id = any($1)"#,
    )
    .bind(&orgs)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(org_id, agent_id, name, status, deleted)| AgentInfo {
            org_id,
            agent_id,
            name,
            status,
            deleted,
        })
        .collect())
}
