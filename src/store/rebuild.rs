//! `baton rebuild`: every projection and rollup of some organizations recomputed from their raw
//! events, through the same code as ingest.
//!
//! Policy: the event store is the record; everything else is derived from it. A rebuild deletes
//! the organizations' projections (sessions, handoffs and their states and references, agents,
//! calls) and rollups, then replays their events in arrival order (`events.seq`), a thousand at
//! a time, through [`apply_stored`], the function ingest itself applies a batch with: there is no
//! second copy of any rule to drift. A reseller's rollups sum all of its organizations, so
//! rebuilding one organization of a reseller rebuilds all of that reseller's organizations.
//! Everything happens in one transaction holding the organizations' ingest locks: readers see
//! the old figures until the commit, and their batches wait meanwhile.
//!
//! An organization whose old raw events were deleted by retention (see [`super::retention`])
//! cannot be recomputed: replaying what is left would lose the figures of the deleted events. It
//! is left exactly as it is, with every organization of its reseller (their rollups are shared):
//! rebuilding everything lists them under `not_rebuilt` with the horizon, and naming one of them
//! is an error that says so.

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::events::{Applying, IngestError, NewEvent, apply_stored, lock_key};
use crate::auth::OrgId;
use crate::domain::events::validate;

/// Tables derived from an organization's events, keyed by `org_id`.
const ORG_TABLES: &[&str] = &[
    "sessions",
    "handoffs",
    "handoff_states",
    "handoff_references",
    "agents",
    "calls",
    "session_rollups",
    "handoff_rollup_totals",
    "handoff_rollup_breakdown",
    "handoff_session_reasons",
    "handoff_lifecycle",
    "handoff_lifecycle_rollups",
    "handoff_lifecycle_pending",
    "call_metric_rollups",
    "call_escalation_rollups",
    "call_volume_days",
];

/// Tables derived from the events of all of a reseller's organizations, keyed by `reseller_id`.
const RESELLER_TABLES: &[&str] = &[
    "reseller_call_rollups",
    "reseller_agent_rollups",
    "reseller_escalation_rollups",
    "reseller_call_volume_days",
];

/// Events replayed per step.
const STEP: i64 = 1_000;

/// Pending lifecycle rows folded per statement after a replay.
const FOLD_STEP: i64 = 16;

/// What a rebuild did (printed by `baton rebuild` as one JSON line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rebuilt {
    /// Organizations rebuilt.
    pub organizations: u64,
    /// Resellers whose rollups were rebuilt.
    pub resellers: u64,
    /// Events replayed.
    pub events: u64,
    /// Rows in the projections afterwards.
    pub sessions: u64,
    /// Handoffs afterwards.
    pub handoffs: u64,
    /// Handoff state changes afterwards.
    pub handoff_states: u64,
    /// Agents afterwards.
    pub agents: u64,
    /// Calls afterwards.
    pub calls: u64,
    /// Milliseconds it took.
    pub milliseconds: u64,
    /// Organizations left as they were because retention deleted some of their raw events (or
    /// those of an organization of the same reseller).
    pub not_rebuilt: Vec<NotRebuilt>,
}

/// An organization a rebuild left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotRebuilt {
    /// Its id.
    pub organization: Uuid,
    /// Its slug.
    pub slug: String,
    /// Raw events of this organization (or of its reseller's, when this is `null`) that occurred
    /// before this were deleted by retention.
    pub pruned_before: Option<chrono::DateTime<chrono::Utc>>,
    /// How many of its raw events retention deleted.
    pub events_pruned: i64,
}

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// A stored event no longer passes validation or the state machine: the event store holds
    /// something ingest would refuse today (named, so it can be looked at).
    #[error("organization {org}: stored event `{event_id}` cannot be replayed: {message}")]
    Replay {
        /// The organization.
        org: Uuid,
        /// The event.
        event_id: String,
        /// What is wrong.
        message: String,
    },
    /// Retention deleted raw events of the organizations asked for (or of their reseller's), so
    /// they cannot be recomputed; nothing was changed.
    #[error(
        "cannot rebuild {}: raw events were deleted by --raw-event-retention-days, so their projections and rollups cannot be recomputed; they were left as they are",
        .0.iter().map(|n| match n.pruned_before {
            Some(t) => format!("organization `{}` (events before {} deleted, {} of them)", n.slug, t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), n.events_pruned),
            None => format!("organization `{}` (its reseller shares rollups with one that was pruned)", n.slug),
        }).collect::<Vec<_>>().join(", ")
    )]
    Pruned(Vec<NotRebuilt>),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Rebuilds the organizations `orgs` (with, for those that belong to a reseller, every other
/// organization of that reseller) and the rollups of their resellers. With `all`, the
/// organizations retention pruned are skipped and listed; without, they are an error.
pub async fn rebuild(pool: &PgPool, orgs: &[Uuid], all: bool) -> Result<Rebuilt, RebuildError> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    let conn: &mut PgConnection = &mut tx;
    // An offline-sized job: no statement timeout; generic plans as in ingest.
    sqlx::query("select set_config('statement_timeout', '0', true), set_config('plan_cache_mode', 'force_generic_plan', true)")
        .execute(&mut *conn)
        .await?;
    let resellers: Vec<Uuid> = sqlx::query_scalar(
        "select distinct reseller_id from organizations where id = any($1) and reseller_id is not null order by 1",
    )
    .bind(orgs)
    .fetch_all(&mut *conn)
    .await?;
    let orgs: Vec<Uuid> = sqlx::query_scalar(
        "select id from organizations where id = any($1) or reseller_id = any($2) order by id",
    )
    .bind(orgs)
    .bind(&resellers)
    .fetch_all(&mut *conn)
    .await?;
    // Organizations retention pruned, and those sharing a reseller with one.
    let not_rebuilt: Vec<NotRebuilt> = sqlx::query_as::<
        _,
        (
            Uuid,
            String,
            Option<chrono::DateTime<chrono::Utc>>,
            Option<i64>,
        ),
    >(
        r#"select o.id, o.slug, r.pruned_before, r.events_pruned
           from organizations o left join event_retention r on r.org_id = o.id
           where o.id = any($1) and (r.org_id is not null or o.reseller_id in (
               select p.reseller_id from organizations p join event_retention x on x.org_id = p.id))
           order by o.slug"#,
    )
    .bind(&orgs)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(
        |(organization, slug, pruned_before, events_pruned)| NotRebuilt {
            organization,
            slug,
            pruned_before,
            events_pruned: events_pruned.unwrap_or(0),
        },
    )
    .collect();
    if !not_rebuilt.is_empty() && !all {
        return Err(RebuildError::Pruned(not_rebuilt));
    }
    let orgs: Vec<Uuid> = orgs
        .into_iter()
        .filter(|o| !not_rebuilt.iter().any(|n| n.organization == *o))
        .collect();
    let resellers: Vec<Uuid> = sqlx::query_scalar(
        "select distinct reseller_id from organizations where id = any($1) and reseller_id is not null order by 1",
    )
    .bind(&orgs)
    .fetch_all(&mut *conn)
    .await?;
    // The ingest locks, in one order, so that two rebuilds cannot deadlock.
    let mut keys: Vec<i64> = orgs
        .iter()
        .map(|o| lock_key(OrgId::for_admin(*o)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    sqlx::query("select pg_advisory_xact_lock(k) from unnest($1::int8[]) as k order by k")
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
    // Webhook messages still in the outbox are rendered from the projections as they are now
    // (their records as their batches left them, see `webhooks::outbox`): the rebuilt handoffs
    // no longer name their latest message, so a later batch could not keep those records.
    super::webhooks::fan_out_all(&mut *conn).await?;
    for table in ORG_TABLES {
        sqlx::query(&format!("delete from {table} where org_id = any($1)"))
            .bind(&orgs)
            .execute(&mut *conn)
            .await?;
    }
    for table in RESELLER_TABLES {
        sqlx::query(&format!("delete from {table} where reseller_id = any($1)"))
            .bind(&resellers)
            .execute(&mut *conn)
            .await?;
    }
    let mut done = Rebuilt {
        organizations: orgs.len() as u64,
        resellers: resellers.len() as u64,
        not_rebuilt,
        ..Rebuilt::default()
    };
    for &org in &orgs {
        let org = OrgId::for_admin(org);
        done.events += replay(&mut *conn, org).await?;
        // Replayed steps that moved many lifecycle rollup rows deferred them: folded here, under
        // the same locks, so a rebuild leaves nothing pending.
        while super::lifecycle::pending::fold_locked(&mut *conn, org, FOLD_STEP).await? > 0 {}
    }
    let counts = sqlx::query(
        r#"select (select count(*) from sessions where org_id = any($1)) as sessions,
                  (select count(*) from handoffs where org_id = any($1)) as handoffs,
                  (select count(*) from handoff_states where org_id = any($1)) as handoff_states,
                  (select count(*) from agents where org_id = any($1)) as agents,
                  (select count(*) from calls where org_id = any($1)) as calls"#,
    )
    .bind(&orgs)
    .fetch_one(&mut *conn)
    .await?;
    let count =
        |name: &str| -> sqlx::Result<u64> { Ok(counts.try_get::<i64, _>(name)?.max(0) as u64) };
    done.sessions = count("sessions")?;
    done.handoffs = count("handoffs")?;
    done.handoff_states = count("handoff_states")?;
    done.agents = count("agents")?;
    done.calls = count("calls")?;
    tx.commit().await?;
    done.milliseconds = started.elapsed().as_millis() as u64;
    Ok(done)
}

/// Replays one organization's events in arrival order; returns how many.
async fn replay(conn: &mut PgConnection, org: OrgId) -> Result<u64, RebuildError> {
    // A cursor sorts the organization's events once; each step fetches the next thousand.
    sqlx::query(
        "declare replay no scroll cursor for select event_id, body from events where org_id = $1 order by seq",
    )
    .bind(org.get())
    .execute(&mut *conn)
    .await?;
    let mut total = 0;
    loop {
        let rows: Vec<(String, Value)> =
            sqlx::query_as(&format!("fetch forward {STEP} from replay"))
                .fetch_all(&mut *conn)
                .await?;
        if rows.is_empty() {
            break;
        }
        let mut batch = Vec::with_capacity(rows.len());
        for (event_id, body) in rows {
            let mut problems = Vec::new();
            match validate(&body, "event", &mut problems) {
                Some(event) if problems.is_empty() => batch.push(NewEvent { event, body }),
                _ => {
                    return Err(RebuildError::Replay {
                        org: org.get(),
                        event_id,
                        message: problems
                            .iter()
                            .map(|p| format!("{}: {}", p.field, p.message))
                            .collect::<Vec<_>>()
                            .join("; "),
                    });
                }
            }
        }
        let all: Vec<usize> = (0..batch.len()).collect();
        match apply_stored(&mut *conn, org, &batch, &all).await {
            Ok(()) => {}
            Err(Applying::Refused(IngestError::State(c))) => {
                return Err(RebuildError::Replay {
                    org: org.get(),
                    event_id: c.event_id,
                    message: c.message,
                });
            }
            Err(Applying::Refused(IngestError::Database(e)) | Applying::Written(e)) => {
                return Err(e.into());
            }
            Err(Applying::Refused(e)) => {
                return Err(RebuildError::Replay {
                    org: org.get(),
                    event_id: String::new(),
                    message: e.to_string(),
                });
            }
        }
        total += batch.len() as u64;
    }
    sqlx::query("close replay").execute(&mut *conn).await?;
    Ok(total)
}
