//! Call metrics rollups (Telzino's `GET /v1/metrics`): maintained at ingest ([`write`]), read
//! by bucket.
//!
//! Policy: calls are insert-only, so [`apply`] adds each new call of a batch once to
//! `call_metric_rollups` (per agent, at the grains of
//! [`CALL_GRAINS`](crate::domain::buckets::CALL_GRAINS)), `call_escalation_rollups`
//! (transferred calls with a reason) and `call_volume_days` (96 quarter-hour and 24 hour slots
//! per UTC day), and [`apply_reseller`] the same sums to the reseller's tables (at the grains of
//! [`RESELLER_GRAINS`](crate::domain::buckets::RESELLER_GRAINS)). [`read`] answers a range's
//! cover: the rollup buckets of its segments plus the raw calls of its sub-15-minute edges
//! (through the `(org_id, started_at)` index), so ranges off the 15-minute grid are exact and no
//! read scans more than 30 minutes of raw calls. The report itself is assembled in
//! [`crate::domain::metrics::report`].
//!
//! Layout: [`write`] (ingest's upserts), `org` (an organization's agent rollups, the raw edges,
//! agent names), `reseller` (a reseller's buckets and the agent cache), `shared` (span scans,
//! escalations and day rows of either source), `columns` (the figure columns and their
//! decoding).

use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::OrgId;
use crate::domain::buckets::{CALL_GRAINS, Cover, Grain, RESELLER_GRAINS, Segment, whole_hours};
use crate::domain::metrics::report::RangeData;
use crate::domain::timerange::TimeRange;
use crate::store::agent_cache::AgentCache;

mod columns;
mod org;
mod reseller;
mod shared;
pub mod write;

use org::{agent_infos, read_agents, read_edges};
use shared::{Owner, read_days, read_escalations};
pub use write::{apply, apply_reseller};

/// What a request reads.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Organizations, through their own rollups (one organization, in practice).
    Orgs {
        /// The organizations.
        orgs: &'a [OrgId],
    },
    /// Every organization of a reseller (`orgs`), through the reseller's rollups.
    Reseller {
        /// The reseller.
        reseller: Uuid,
        /// All its organizations (for the raw edges).
        orgs: &'a [OrgId],
        /// The agent rows of buckets read before.
        cache: &'a AgentCache,
    },
}

impl Source<'_> {
    /// The grains of the rollups this source reads (for [`cover`](crate::domain::buckets::cover)).
    pub fn grains(&self) -> &'static [Grain] {
        match self {
            Source::Orgs { .. } => &CALL_GRAINS,
            Source::Reseller { .. } => &RESELLER_GRAINS,
        }
    }

    fn orgs(&self) -> Vec<Uuid> {
        let orgs = match self {
            Source::Orgs { orgs, .. } => orgs,
            Source::Reseller { orgs, .. } => orgs,
        };
        orgs.iter().map(|o| o.get()).collect()
    }
}

/// Reads everything the report of `range` needs (independent queries, run concurrently):
/// `cover` must be the range's cover by `source`'s grains. The days strictly inside the range
/// are read per UTC hour when the zone is whole hours from UTC throughout
/// ([`whole_hours`]).
pub async fn read(
    pool: &PgPool,
    source: Source<'_>,
    range: &TimeRange,
    cover: &Cover,
) -> sqlx::Result<RangeData> {
    let org_ids = source.orgs();
    if org_ids.is_empty() {
        return Ok(RangeData::default());
    }
    let hourly = whole_hours(range.tz, range.start, range.end);
    let orgs = match source {
        Source::Orgs { orgs } => orgs,
        Source::Reseller { orgs, .. } => orgs,
    };
    let data = match source {
        Source::Orgs { .. } => {
            let (agents, escalations, days, edge_calls, infos) = tokio::try_join!(
                read_agents(pool, &org_ids, cover),
                read_escalations(
                    pool,
                    "call_escalation_rollups",
                    Owner::Orgs,
                    &org_ids,
                    cover
                ),
                read_days(pool, "call_volume_days", "org_id", &org_ids, cover, hourly),
                read_edges(pool, &org_ids, cover),
                agent_infos(pool, orgs),
            )?;
            RangeData {
                totals: None,
                agents,
                reseller_agents: Vec::new(),
                escalations,
                days,
                edge_calls,
                infos,
            }
        }
        Source::Reseller {
            reseller, cache, ..
        } => {
            let resellers = [reseller];
            // The buckets whose agent rows are not cached are most of the work: two queries
            // over alternate spans run on two connections at once.
            let half = |parity: usize| -> Vec<Segment> {
                cover
                    .segments
                    .iter()
                    .skip(parity)
                    .step_by(2)
                    .copied()
                    .collect()
            };
            let halves = [half(0), half(1)];
            let (first, second, escalations, days, edge_calls, infos) = tokio::try_join!(
                reseller::read_buckets(pool, cache, reseller, &halves[0]),
                reseller::read_buckets(pool, cache, reseller, &halves[1]),
                read_escalations(
                    pool,
                    "reseller_escalation_rollups",
                    Owner::Reseller,
                    reseller,
                    cover
                ),
                read_days(
                    pool,
                    "reseller_call_volume_days",
                    "reseller_id",
                    &resellers,
                    cover,
                    hourly
                ),
                read_edges(pool, &org_ids, cover),
                agent_infos(pool, orgs),
            )?;
            let mut totals = first.0;
            totals.add(&second.0);
            let mut reseller_agents = first.1;
            reseller_agents.extend(second.1);
            RangeData {
                totals: Some(totals),
                agents: Vec::new(),
                reseller_agents,
                escalations,
                days,
                edge_calls,
                infos,
            }
        }
    };
    Ok(data)
}
