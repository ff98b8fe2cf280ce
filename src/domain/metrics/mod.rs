//! Telzino call metrics, computed from additive sums.
//!
//! Policy:
//! - Every figure is a sum, or a ratio of sums, so that rollups kept at ingest add up to the same
//!   answer as the raw calls: [`CallSums`] is the one place where a call becomes sums, used by
//!   the ingest rollups and by the read path for the raw edges of a range alike.
//! - A range `[start, end)` is read as its cover ([`crate::domain::buckets::cover`]): raw calls
//!   for the parts off the 15-minute grid, then the coarsest rollup buckets that fit
//!   ([`CALL_GRAINS`](crate::domain::buckets::CALL_GRAINS) for an organization,
//!   [`RESELLER_GRAINS`](crate::domain::buckets::RESELLER_GRAINS) for a reseller), so the cost
//!   does not grow with the data.
//! - The rollup rules are here, once: a call's sums ([`CallSums::of_call`]), what it adds to its
//!   escalation reason ([`escalation_of`]), its slot of its UTC day ([`DaySlots::add`]). Ingest
//!   applies them; the report ([`report`]) applies them to the raw edges of a range.
//! - Ratios and means are shown with one decimal; a mean or ratio with nothing to average is
//!   `None` (null) where the contract allows null.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::buckets::{Grain, SLOTS_PER_DAY, slot_of};
use super::events::{CallCompleted, CallSentiment, Outcome};

pub mod report;

/// The additive figures of a set of calls: what the rollups store, per organization, agent and
/// bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallSums {
    /// Calls.
    pub calls: i64,
    /// Calls resolved.
    pub resolved: i64,
    /// Calls transferred (escalated).
    pub transferred: i64,
    /// Calls abandoned.
    pub abandoned: i64,
    /// Calls with another outcome.
    pub other: i64,
    /// Sum of durations, seconds.
    pub duration_sum: f64,
    /// Calls with a sentiment.
    pub sentiment_calls: i64,
    /// Calls with a positive sentiment.
    pub positive_calls: i64,
    /// Sum of `ttft_ms` over the calls reporting it.
    pub ttft_sum: f64,
    /// Calls reporting `ttft_ms`.
    pub ttft_calls: i64,
    /// Sum of `stt_confidence` over the calls reporting it.
    pub stt_sum: f64,
    /// Calls reporting `stt_confidence`.
    pub stt_calls: i64,
    /// Calls reporting `user_corrections`.
    pub correction_calls: i64,
    /// Calls reporting zero `user_corrections`.
    pub zero_correction_calls: i64,
    /// Sum of `cached_tokens / total_tokens` over the calls reporting both with tokens.
    pub context_sum: f64,
    /// Calls reporting both `cached_tokens` and `total_tokens` (> 0).
    pub context_calls: i64,
    /// Tool calls, over the calls reporting both `tool_calls` and `tool_call_errors`.
    pub tool_calls: i64,
    /// Tool call errors, over the same calls.
    pub tool_call_errors: i64,
}

impl CallSums {
    /// The sums of one call.
    pub fn of_call(c: &CallCompleted) -> CallSums {
        let t = &c.telemetry;
        let one = |b: bool| i64::from(b);
        let (context_sum, context_calls) = match (t.cached_tokens, t.total_tokens) {
            (Some(cached), Some(total)) if total > 0 => (cached as f64 / total as f64, 1),
            _ => (0.0, 0),
        };
        let (tool_calls, tool_call_errors) = match (t.tool_calls, t.tool_call_errors) {
            (Some(calls), Some(errors)) => (calls, errors),
            _ => (0, 0),
        };
        CallSums {
            calls: 1,
            resolved: one(c.outcome == Outcome::Resolved),
            transferred: one(c.outcome == Outcome::Transferred),
            abandoned: one(c.outcome == Outcome::Abandoned),
            other: one(c.outcome == Outcome::Other),
            duration_sum: c.duration_seconds,
            sentiment_calls: one(c.sentiment.is_some()),
            positive_calls: one(c.sentiment == Some(CallSentiment::Positive)),
            ttft_sum: t.ttft_ms.unwrap_or(0.0),
            ttft_calls: one(t.ttft_ms.is_some()),
            stt_sum: t.stt_confidence.unwrap_or(0.0),
            stt_calls: one(t.stt_confidence.is_some()),
            correction_calls: one(t.user_corrections.is_some()),
            zero_correction_calls: one(t.user_corrections == Some(0)),
            context_sum,
            context_calls,
            tool_calls,
            tool_call_errors,
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, o: &CallSums) {
        self.calls += o.calls;
        self.resolved += o.resolved;
        self.transferred += o.transferred;
        self.abandoned += o.abandoned;
        self.other += o.other;
        self.duration_sum += o.duration_sum;
        self.sentiment_calls += o.sentiment_calls;
        self.positive_calls += o.positive_calls;
        self.ttft_sum += o.ttft_sum;
        self.ttft_calls += o.ttft_calls;
        self.stt_sum += o.stt_sum;
        self.stt_calls += o.stt_calls;
        self.correction_calls += o.correction_calls;
        self.zero_correction_calls += o.zero_correction_calls;
        self.context_sum += o.context_sum;
        self.context_calls += o.context_calls;
        self.tool_calls += o.tool_calls;
        self.tool_call_errors += o.tool_call_errors;
    }

    /// `resolved / calls × 100` (0 without calls).
    pub fn resolution_rate(&self) -> f64 {
        percent(self.resolved, self.calls).unwrap_or(0.0)
    }

    /// Mean duration in seconds (0 without calls).
    pub fn avg_duration(&self) -> f64 {
        mean(self.duration_sum, self.calls).unwrap_or(0.0)
    }

    /// Total minutes.
    pub fn minutes(&self) -> f64 {
        round1(self.duration_sum / 60.0)
    }

    /// Mean `ttft_ms`; `None` when no call reports it.
    pub fn response_time(&self) -> Option<f64> {
        mean(self.ttft_sum, self.ttft_calls)
    }

    /// Positive / calls with a sentiment × 100; `None` when none has one.
    pub fn sentiment_percent(&self) -> Option<f64> {
        percent(self.positive_calls, self.sentiment_calls)
    }

    /// Transferred / calls × 100; `None` without calls.
    pub fn escalation_rate(&self) -> Option<f64> {
        percent(self.transferred, self.calls)
    }

    /// Calls with zero corrections / calls reporting corrections × 100.
    pub fn intent_accuracy(&self) -> Option<f64> {
        percent(self.zero_correction_calls, self.correction_calls)
    }

    /// Mean of `cached_tokens / total_tokens` × 100.
    pub fn context_retention(&self) -> Option<f64> {
        mean(self.context_sum * 100.0, self.context_calls)
    }

    /// Mean `stt_confidence` × 100.
    pub fn speech_recognition(&self) -> Option<f64> {
        mean(self.stt_sum * 100.0, self.stt_calls)
    }

    /// Tool calls without error / tool calls × 100; `None` without tool calls.
    pub fn entity_extraction(&self) -> Option<f64> {
        percent(self.tool_calls - self.tool_call_errors, self.tool_calls)
    }
}

/// Rounds to one decimal (half away from zero).
///
/// The value is first snapped to 6 decimals: sums kept in floating point (rollups add them
/// bucket by bucket, in an order that depends on the buckets read) differ in their last bits,
/// and without the snap a tie such as 37.75 would round to 37.7 or 37.8 depending on that order.
pub fn round1(x: f64) -> f64 {
    let snapped = (x * 1e6).round() / 1e6;
    let r = (snapped * 10.0).round() / 10.0;
    // Never show `-0.0`.
    if r == 0.0 { 0.0 } else { r }
}

/// `part / whole × 100` with one decimal; `None` when `whole` is 0.
pub fn percent(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| round1(part as f64 * 100.0 / whole as f64))
}

/// `sum / count` with one decimal; `None` when `count` is 0.
pub fn mean(sum: f64, count: i64) -> Option<f64> {
    (count > 0).then(|| round1(sum / count as f64))
}

/// What a transferred call adds to its escalation reason: the reason and the seconds before
/// escalation (`escalated_after_seconds`, else the call's duration). Calls that were not
/// transferred, or carry no reason, add nothing.
pub fn escalation_of(c: &CallCompleted) -> Option<(&str, f64)> {
    if c.outcome != Outcome::Transferred {
        return None;
    }
    let reason = c.escalation_reason.as_deref()?;
    Some((
        reason,
        c.escalated_after_seconds.unwrap_or(c.duration_seconds),
    ))
}

/// The slots of one UTC day: 96 quarter hours, or 24 hours (as the day rows store them).
#[derive(Debug, Clone, PartialEq)]
pub struct DaySlots {
    /// Calls started in each slot.
    pub calls: Vec<i64>,
    /// Resolved calls.
    pub resolved: Vec<i64>,
    /// Seconds of those calls.
    pub seconds: Vec<f64>,
}

impl DaySlots {
    /// 96 empty quarter-hour slots.
    pub fn zero() -> DaySlots {
        DaySlots {
            calls: vec![0; SLOTS_PER_DAY],
            resolved: vec![0; SLOTS_PER_DAY],
            seconds: vec![0.0; SLOTS_PER_DAY],
        }
    }

    /// Adds a call to its quarter-hour slot (`self` must have 96).
    pub fn add(&mut self, c: &CallCompleted) {
        let slot = slot_of(c.started_at);
        self.calls[slot] += 1;
        self.resolved[slot] += i64::from(c.outcome == Outcome::Resolved);
        self.seconds[slot] += c.duration_seconds;
    }

    /// The sums of each hour (four slots) of quarter-hour slots.
    pub fn hours(&self) -> DaySlots {
        DaySlots {
            calls: self.calls.chunks(4).map(|c| c.iter().sum()).collect(),
            resolved: self.resolved.chunks(4).map(|c| c.iter().sum()).collect(),
            seconds: self.seconds.chunks(4).map(|c| c.iter().sum()).collect(),
        }
    }
}

/// One agent's figures in one bucket of a reseller's rollups (what an agent's entry shows).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    /// Its organization.
    pub org_id: Uuid,
    /// The agent.
    pub agent_id: Box<str>,
    /// Calls.
    pub calls: i64,
    /// Calls resolved.
    pub resolved: i64,
    /// Calls transferred.
    pub transferred: i64,
    /// Calls abandoned.
    pub abandoned: i64,
    /// Sum of durations (seconds).
    pub duration_sum: f64,
    /// Calls with a sentiment.
    pub sentiment_calls: i64,
    /// Calls with a positive sentiment.
    pub positive_calls: i64,
}

impl AgentRow {
    /// Adds this row to `s` (the other outcomes are the calls minus the three named ones).
    pub fn add_to(&self, s: &mut CallSums) {
        s.calls += self.calls;
        s.resolved += self.resolved;
        s.transferred += self.transferred;
        s.abandoned += self.abandoned;
        s.other += self.calls - self.resolved - self.transferred - self.abandoned;
        s.duration_sum += self.duration_sum;
        s.sentiment_calls += self.sentiment_calls;
        s.positive_calls += self.positive_calls;
    }
}

/// A rollup key: grain, bucket start, and agent id or escalation reason.
pub type RollupKey<'a> = (Grain, DateTime<Utc>, &'a str);

/// What `calls` add to the rollups of `grains`: per-agent sums and per-reason escalations
/// (calls, seconds) in the bucket of every grain holding each call's start.
#[allow(clippy::type_complexity)]
pub fn bucket_sums<'c>(
    calls: &'c [CallCompleted],
    grains: &[Grain],
) -> (
    HashMap<RollupKey<'c>, CallSums>,
    HashMap<RollupKey<'c>, (i64, f64)>,
) {
    let mut sums: HashMap<RollupKey<'_>, CallSums> = HashMap::new();
    let mut escalations: HashMap<RollupKey<'_>, (i64, f64)> = HashMap::new();
    for c in calls {
        let s = CallSums::of_call(c);
        let escalation = escalation_of(c);
        for &grain in grains {
            let bucket = grain.floor(c.started_at);
            sums.entry((grain, bucket, c.agent_id.as_str()))
                .or_default()
                .add(&s);
            if let Some((reason, seconds)) = escalation {
                let e = escalations.entry((grain, bucket, reason)).or_default();
                e.0 += 1;
                e.1 += seconds;
            }
        }
    }
    (sums, escalations)
}

/// The quarter-hour slots of the UTC days of `calls`, by day.
pub fn day_slots(calls: &[CallCompleted]) -> Vec<(NaiveDate, DaySlots)> {
    let mut days: HashMap<NaiveDate, DaySlots> = HashMap::new();
    for c in calls {
        days.entry(c.started_at.date_naive())
            .or_insert_with(DaySlots::zero)
            .add(c);
    }
    let mut days: Vec<(NaiveDate, DaySlots)> = days.into_iter().collect();
    days.sort_unstable_by_key(|(d, _)| *d);
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_nulls() {
        assert_eq!(percent(1, 3), Some(33.3));
        assert_eq!(percent(2, 3), Some(66.7));
        assert_eq!(percent(0, 0), None);
        assert_eq!(mean(10.0, 4), Some(2.5));
        assert_eq!(round1(-0.01), 0.0);
        // A tie rounds the same whatever the order of the additions behind it.
        let (a, b) = (0.31 + 0.57 + 0.75 + 0.15, 0.15 + 0.75 + 0.57 + 0.31);
        assert_eq!(round1(a / 4.0 * 100.0), 44.5);
        assert_eq!(round1(b / 4.0 * 100.0), 44.5);
        assert_eq!(round1(37.749_999_999_999_99), 37.8);
        assert_eq!(round1(37.750_000_000_000_01), 37.8);
        let s = CallSums::default();
        assert_eq!(s.escalation_rate(), None);
        assert_eq!(s.resolution_rate(), 0.0);
        assert_eq!(s.entity_extraction(), None);
    }
}
