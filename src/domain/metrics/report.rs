//! The call metrics report (Telzino's `GET /v1/metrics` answer) assembled from what the store
//! read for a range's cover: the rolled-up part and the raw edges merged per agent, the UTC
//! slots of the day rows mapped to local days and hours (one offset per UTC day unless it
//! changes within it), ratios from sums, and the lists sorted.
//!
//! Policy: agents are sorted by calls descending, then name, id and organization; escalation
//! reasons by count descending, then reason. Every ratio and mean comes from [`CallSums`], with
//! one decimal.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, Timelike};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{AgentRow, CallSums, DaySlots, escalation_of, mean, percent, round1};
use crate::domain::buckets::{Cover, DayInZone};
use crate::domain::events::{CallCompleted, Outcome};
use crate::domain::timerange::TimeRange;

/// One agent's figures over the rolled-up part of a range.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSums {
    /// Its organization.
    pub org_id: Uuid,
    /// The agent.
    pub agent_id: String,
    /// The sums.
    pub sums: CallSums,
}

/// A stored agent's name and state.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentInfo {
    /// Its organization.
    pub org_id: Uuid,
    /// The agent.
    pub agent_id: String,
    /// Its (last) name.
    pub name: String,
    /// Its status.
    pub status: String,
    /// Whether it was deleted.
    pub deleted: bool,
}

/// What a range reads: the rolled-up part and the raw edges, not yet merged.
#[derive(Debug, Default)]
pub struct RangeData {
    /// Sums over the rollup spans across the source's agents, when the source keeps them
    /// apart from [`agents`](Self::agents) (a reseller: its agent rollups hold only what an
    /// agent's entry shows). `None`: the sum of `agents`.
    pub totals: Option<CallSums>,
    /// Per-agent sums over the rollup spans (organizations' rollups).
    pub agents: Vec<AgentSums>,
    /// The agent rows of each rollup bucket (a reseller's rollups; an agent appears once per
    /// bucket it has calls in).
    pub reseller_agents: Vec<Arc<[AgentRow]>>,
    /// Per-reason `(calls, seconds)` over the rollup spans, across the organizations.
    pub escalations: Vec<(String, i64, f64)>,
    /// Slots of the UTC days the rolled part touches, summed across organizations (slots
    /// outside the rolled part are included: the report masks them).
    pub days: Vec<(NaiveDate, DaySlots)>,
    /// The raw calls of the edges, with their organization.
    pub edge_calls: Vec<(Uuid, CallCompleted)>,
    /// The names and states of the organizations' declared agents.
    pub infos: Vec<AgentInfo>,
}

/// Usage metrics over the range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Headline figures.
    pub metrics: MetricsSummary,
    /// One entry per local calendar day that intersects the range, in order, zeros included.
    pub daily_volume: Vec<DailyVolume>,
    /// Exactly 24 entries, `"00:00"` to `"23:00"`, local hours of `timezone`, summed over the
    /// range's days.
    pub hourly_distribution: Vec<HourlyBucket>,
    /// Calls by outcome.
    pub resolution_breakdown: ResolutionBreakdown,
    /// One entry per agent with a call in the range, by `totalCalls` descending (then name,
    /// then id). Across several organizations, an agent id used by two of them gives two
    /// entries.
    pub agent_performance: Vec<AgentPerformance>,
    /// AI quality and operational figures.
    pub ai_insights: AiInsights,
    /// Reasons of transferred calls, by `count` descending (then reason); `[]` when no
    /// transferred call has a reason.
    pub escalation_reasons: Vec<EscalationReason>,
}

/// Headline figures. Ratios and means have one decimal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSummary {
    /// Calls started in the range.
    pub total_calls: i64,
    /// Sum of durations / 60.
    pub total_minutes: f64,
    /// Resolved / total × 100 (0 without calls).
    pub resolution_rate: f64,
    /// Mean duration, seconds (0 without calls).
    pub avg_duration: f64,
    /// Distinct agents with a call in the range.
    pub active_agents: i64,
    /// Mean `telemetry.ttft_ms` over the calls reporting it; null when none does.
    pub response_time: Option<f64>,
    /// Positive / calls with a sentiment × 100; null when no call has a sentiment.
    pub sentiment_percent: Option<f64>,
    /// Transferred / total × 100; null when there are no calls.
    pub escalation_rate: Option<f64>,
}

/// Calls of one local day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailyVolume {
    /// `YYYY-MM-DD`, local to `timezone`.
    pub date: String,
    /// Calls started that day (within the range).
    pub total_calls: i64,
    /// Of which resolved.
    pub resolved_calls: i64,
}

/// Calls of one local hour of the day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HourlyBucket {
    /// `HH:00`.
    pub hour: String,
    /// Calls started during that hour, over every day of the range.
    pub calls: i64,
    /// Their minutes (sum of durations / 60, one decimal).
    pub minutes: f64,
}

/// Calls by outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResolutionBreakdown {
    /// Resolved by the agent.
    pub resolved: i64,
    /// Transferred to a human.
    pub transferred: i64,
    /// Abandoned by the caller.
    pub abandoned: i64,
    /// Other outcomes.
    pub other: i64,
}

/// One agent's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPerformance {
    /// The agent's id (as sent in `call.completed`; Baton does not require UUIDs).
    pub agent_id: String,
    /// Its name (a deleted agent keeps its last name; an agent never declared by
    /// `agent.upserted` is named by its id).
    pub agent_name: String,
    /// Calls.
    pub total_calls: i64,
    /// Resolved calls.
    pub resolved: i64,
    /// Transferred calls.
    pub transferred: i64,
    /// Abandoned calls.
    pub abandoned: i64,
    /// Other outcomes.
    pub other: i64,
    /// Resolved / total × 100.
    pub resolved_percent: f64,
    /// Transferred / total × 100.
    pub transferred_percent: f64,
    /// Abandoned / total × 100.
    pub abandoned_percent: f64,
    /// Other / total × 100.
    pub other_percent: f64,
    /// Mean duration, seconds.
    pub avg_duration: f64,
    /// Positive / calls with a sentiment × 100; null when none has one.
    pub sentiment_percent: Option<f64>,
    /// The agent's current status: `active`, `inactive`, `cancelled`, `pending`, or `deleted`
    /// (after `agent.deleted`). An agent never declared is `active`.
    pub status: String,
}

/// AI quality and operational figures; each null when no call reports what it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AiInsights {
    /// Calls with zero `user_corrections` / calls reporting `user_corrections` × 100.
    pub intent_accuracy: Option<f64>,
    /// Mean of `cached_tokens / total_tokens` × 100, over calls reporting both (with
    /// `total_tokens` > 0).
    pub context_retention: Option<f64>,
    /// Mean `stt_confidence` × 100.
    pub speech_recognition: Option<f64>,
    /// Tool calls without error / tool calls × 100, over calls reporting both `tool_calls` and
    /// `tool_call_errors`; null when they made no tool call.
    pub entity_extraction: Option<f64>,
    /// Same as `metrics.responseTime`.
    pub response_latency: Option<f64>,
    /// Same as `metrics.totalCalls`.
    pub training_sessions: i64,
}

/// One escalation reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EscalationReason {
    /// The `escalation_reason` of transferred calls (a reason on a call with another outcome is
    /// not an escalation and is not counted).
    pub reason: String,
    /// Transferred calls with this reason.
    pub count: i64,
    /// Count / transferred calls × 100.
    pub percent_of_total: f64,
    /// Mean `escalated_after_seconds`, or the call's duration when it is not reported.
    pub avg_time_before_escalation: f64,
}

type AgentKey = (Uuid, String);

/// Per-agent sums over the whole range: the rolled-up part plus the raw edges.
fn merge_agents(data: &RangeData) -> Vec<(AgentKey, CallSums)> {
    // Thousands of rows (an agent once per bucket it has calls in) into hundreds of agents: a
    // fast hasher, keys borrowed from the rows.
    let mut by_agent: HashMap<(Uuid, &str), CallSums, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(1024, foldhash::fast::RandomState::default());
    for a in &data.agents {
        by_agent
            .entry((a.org_id, a.agent_id.as_str()))
            .or_default()
            .add(&a.sums);
    }
    for bucket in &data.reseller_agents {
        for a in bucket.iter() {
            a.add_to(by_agent.entry((a.org_id, &a.agent_id)).or_default());
        }
    }
    for (org, call) in &data.edge_calls {
        by_agent
            .entry((*org, call.agent_id.as_str()))
            .or_default()
            .add(&CallSums::of_call(call));
    }
    by_agent
        .into_iter()
        .filter(|(_, s)| s.calls > 0)
        .map(|((org, agent), s)| ((org, agent.to_owned()), s))
        .collect()
}

/// The report of a range from what the store read for its cover: the rolled-up part and the
/// raw edges merged, the UTC slots of the days mapped to local days and hours, ratios computed,
/// lists sorted.
pub fn report(range: &TimeRange, cover: &Cover, data: &RangeData) -> Metrics {
    let agents = merge_agents(data);
    // The headline: the source's own totals plus the raw edges, else the sum of the agents
    // (which include the edges).
    let total = match data.totals {
        Some(mut total) => {
            for (_, call) in &data.edge_calls {
                total.add(&CallSums::of_call(call));
            }
            total
        }
        None => {
            let mut total = CallSums::default();
            for (_, s) in &agents {
                total.add(s);
            }
            total
        }
    };

    // Days and hours: the rolled-up slots inside the range, then the raw edges.
    // The local days are consecutive: a local date's index is its distance from the first.
    let days = range.local_days();
    let first_day = days.first().copied();
    let mut daily = vec![(0i64, 0i64); days.len()];
    let mut hourly = [(0i64, 0f64); 24];
    let mut count = |local: NaiveDateTime, calls: i64, resolved: i64, seconds: f64| {
        let index = first_day.map(|f| (local.date() - f).num_days());
        if let Some(i) = index.and_then(|i| usize::try_from(i).ok())
            && let Some(day) = daily.get_mut(i)
        {
            day.0 += calls;
            day.1 += resolved;
        }
        let h = local.hour() as usize;
        hourly[h].0 += calls;
        hourly[h].1 += seconds;
    };
    if let Some((from, to)) = cover.rolled() {
        for (day, slots) in &data.days {
            let Some(utc_day) = DayInZone::new(*day, range.tz) else {
                continue;
            };
            // 96 quarter-hour or 24 hour slots.
            let per_day = slots.calls.len();
            for (i, &calls) in slots.calls.iter().enumerate() {
                if calls == 0 {
                    continue;
                }
                let (t, local) = utc_day.slot_start(i, per_day);
                if t >= from && t < to {
                    count(local, calls, slots.resolved[i], slots.seconds[i]);
                }
            }
        }
    }
    let mut escalations: HashMap<&str, (i64, f64)> = HashMap::new();
    for (reason, calls, seconds) in &data.escalations {
        let e = escalations.entry(reason.as_str()).or_default();
        e.0 += calls;
        e.1 += seconds;
    }
    for (_, call) in &data.edge_calls {
        let resolved = i64::from(call.outcome == Outcome::Resolved);
        let local = call.started_at.with_timezone(&range.tz).naive_local();
        count(local, 1, resolved, call.duration_seconds);
        if let Some((reason, seconds)) = escalation_of(call) {
            let e = escalations.entry(reason).or_default();
            e.0 += 1;
            e.1 += seconds;
        }
    }

    let infos: HashMap<(Uuid, &str), &AgentInfo> = data
        .infos
        .iter()
        .map(|i| ((i.org_id, i.agent_id.as_str()), i))
        .collect();
    let mut agent_performance: Vec<(Uuid, AgentPerformance)> = agents
        .iter()
        .map(|((org, agent_id), s)| {
            let info = infos.get(&(*org, agent_id.as_str()));
            let pct = |n| percent(n, s.calls).unwrap_or(0.0);
            (
                *org,
                AgentPerformance {
                    agent_id: agent_id.clone(),
                    agent_name: info.map_or_else(|| agent_id.clone(), |i| i.name.clone()),
                    total_calls: s.calls,
                    resolved: s.resolved,
                    transferred: s.transferred,
                    abandoned: s.abandoned,
                    other: s.other,
                    resolved_percent: pct(s.resolved),
                    transferred_percent: pct(s.transferred),
                    abandoned_percent: pct(s.abandoned),
                    other_percent: pct(s.other),
                    avg_duration: s.avg_duration(),
                    sentiment_percent: s.sentiment_percent(),
                    status: match info {
                        Some(i) if i.deleted => "deleted".to_owned(),
                        Some(i) => i.status.clone(),
                        None => "active".to_owned(),
                    },
                },
            )
        })
        .collect();
    agent_performance.sort_by(|(oa, a), (ob, b)| {
        b.total_calls
            .cmp(&a.total_calls)
            .then_with(|| a.agent_name.cmp(&b.agent_name))
            .then_with(|| a.agent_id.cmp(&b.agent_id))
            .then_with(|| oa.cmp(ob))
    });

    let mut escalation_reasons: Vec<EscalationReason> = escalations
        .into_iter()
        .filter(|(_, (calls, _))| *calls > 0)
        .map(|(reason, (calls, seconds))| EscalationReason {
            reason: reason.to_owned(),
            count: calls,
            percent_of_total: percent(calls, total.transferred).unwrap_or(0.0),
            avg_time_before_escalation: mean(seconds, calls).unwrap_or(0.0),
        })
        .collect();
    escalation_reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));

    Metrics {
        metrics: MetricsSummary {
            total_calls: total.calls,
            total_minutes: total.minutes(),
            resolution_rate: total.resolution_rate(),
            avg_duration: total.avg_duration(),
            active_agents: agents.len() as i64,
            response_time: total.response_time(),
            sentiment_percent: total.sentiment_percent(),
            escalation_rate: total.escalation_rate(),
        },
        daily_volume: days
            .iter()
            .zip(&daily)
            .map(|(d, (calls, resolved))| DailyVolume {
                date: d.format("%Y-%m-%d").to_string(),
                total_calls: *calls,
                resolved_calls: *resolved,
            })
            .collect(),
        hourly_distribution: hourly
            .iter()
            .enumerate()
            .map(|(h, (calls, seconds))| HourlyBucket {
                hour: format!("{h:02}:00"),
                calls: *calls,
                minutes: round1(seconds / 60.0),
            })
            .collect(),
        resolution_breakdown: ResolutionBreakdown {
            resolved: total.resolved,
            transferred: total.transferred,
            abandoned: total.abandoned,
            other: total.other,
        },
        agent_performance: agent_performance.into_iter().map(|(_, a)| a).collect(),
        ai_insights: AiInsights {
            intent_accuracy: total.intent_accuracy(),
            context_retention: total.context_retention(),
            speech_recognition: total.speech_recognition(),
            entity_extraction: total.entity_extraction(),
            response_latency: total.response_time(),
            training_sessions: total.calls,
        },
        escalation_reasons,
    }
}
