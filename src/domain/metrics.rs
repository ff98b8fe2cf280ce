//! Telzino call metrics, computed from additive sums.
//!
//! Policy:
//! - Every figure is a sum, or a ratio of sums, so that rollups kept at ingest add up to the same
//!   answer as the raw calls: [`CallSums`] is the one place where a call becomes sums, used by
//!   the ingest rollups and by the read path for the raw edges of a range alike.
//! - A range `[start, end)` is read as: raw calls for the parts not on a 15-minute boundary (less
//!   than 15 minutes at each end), then the coarsest rollup grain that fits each part: 15-minute,
//!   hourly and daily UTC buckets ([`cover`]). A 90-day range touches at most ~140 buckets per
//!   agent whatever the history, so the cost does not grow with the data.
//! - Ratios and means are shown with one decimal; a mean or ratio with nothing to average is
//!   `None` (null) where the contract allows null.

use chrono::{DateTime, Duration, Utc};

use super::events::{CallCompleted, CallSentiment, Outcome};

/// Grain lengths (minutes) of the per-organization rollups: 15 minutes, an hour, a day. A
/// 90-day range reads at most ~140 buckets per agent from them.
pub const ORG_GRAINS: [i32; 3] = [15, 60, 1440];

/// Grain lengths (minutes) of the per-reseller rollups: doubling from 15 minutes to 8 hours,
/// then from a day to 128 days. Each divides the next, so a range is covered by at most one
/// bucket per grain at each end (two for 8 hours, whose next grain is three times longer) plus
/// the top grain's: about 15 buckets per agent for 90 days, which keeps a reseller of hundreds
/// of agents within a few thousand rows.
pub const RESELLER_GRAINS: [i32; 14] = [
    15, 30, 60, 120, 240, 480, 1440, 2880, 5760, 11520, 23040, 46080, 92160, 184320,
];

/// The start of the bucket of `minutes` holding `t`; buckets are aligned on the Unix epoch
/// (as `to_timestamp(floor(extract(epoch from t) / (minutes * 60)) * minutes * 60)` in SQL).
pub fn floor(t: DateTime<Utc>, minutes: i32) -> DateTime<Utc> {
    let len = i64::from(minutes) * 60;
    DateTime::from_timestamp(t.timestamp().div_euclid(len) * len, 0).unwrap_or(t)
}

/// The first bucket start of `minutes` at or after `t`.
pub fn ceil(t: DateTime<Utc>, minutes: i32) -> DateTime<Utc> {
    let f = floor(t, minutes);
    if f == t {
        f
    } else {
        f + Duration::minutes(i64::from(minutes))
    }
}

/// One part of a range read from rollups: buckets of `grain` minutes starting in `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The grain, in minutes.
    pub grain: i32,
    /// First bucket start (inclusive).
    pub from: DateTime<Utc>,
    /// Last bucket start (exclusive).
    pub to: DateTime<Utc>,
}

/// How a range is read: raw calls for `raw`, rollups for `spans`. Together they cover the range
/// exactly once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cover {
    /// Parts (at most two, each under 15 minutes, or the whole range when it lies inside one
    /// 15-minute bucket) read from raw calls: `[from, to)`.
    pub raw: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Parts read from rollups, coarsest grain that fits.
    pub spans: Vec<Span>,
}

impl Cover {
    /// The whole part read from rollups, as one interval of 15-minute buckets (empty when the
    /// range is read raw only).
    pub fn rolled(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let from = self.spans.iter().map(|s| s.from).min()?;
        let to = self.spans.iter().map(|s| s.to).max()?;
        Some((from, to))
    }
}

/// Splits `[start, end)` into raw edges and rollup spans of `grains` (finest first, 15 minutes,
/// each dividing the next; see the module docs).
pub fn cover(start: DateTime<Utc>, end: DateTime<Utc>, grains: &[i32]) -> Cover {
    let mut out = Cover::default();
    if start >= end || grains.is_empty() {
        return out;
    }
    let q0 = ceil(start, grains[0]);
    let q1 = floor(end, grains[0]);
    if q0 >= q1 {
        out.raw.push((start, end));
        return out;
    }
    if start < q0 {
        out.raw.push((start, q0));
    }
    if q1 < end {
        out.raw.push((q1, end));
    }
    split(&mut out.spans, grains, q0, q1);
    out
}

/// Covers `[from, to)` (both on `grains[0]` boundaries) with the coarsest grains that fit.
fn split(spans: &mut Vec<Span>, grains: &[i32], from: DateTime<Utc>, to: DateTime<Utc>) {
    let grain = grains[0];
    let push = |spans: &mut Vec<Span>, from, to| {
        if from < to {
            spans.push(Span { grain, from, to });
        }
    };
    match grains.get(1) {
        Some(&c) if ceil(from, c) < floor(to, c) => {
            let (c0, c1) = (ceil(from, c), floor(to, c));
            push(spans, from, c0);
            push(spans, c1, to);
            split(spans, &grains[1..], c0, c1);
        }
        _ => push(spans, from, to),
    }
}

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

/// Whether `tz` is a whole number of hours from UTC at every hour of `[start, end)`: then each
/// UTC hour lies inside one local hour, and hour slots count local hours exactly. (Sampled at
/// every UTC hour: no zone has held a non-whole offset for less than an hour.)
pub fn whole_hours(tz: chrono_tz::Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    use chrono::{Offset, TimeZone};
    let mut t = floor(start, 60);
    while t < end {
        let offset = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
        if offset.local_minus_utc() % 3600 != 0 {
            return false;
        }
        t += Duration::hours(1);
    }
    true
}

/// Number of 15-minute slots in a UTC day.
pub const SLOTS_PER_DAY: usize = 96;

/// The 15-minute slot of the UTC day of `t` (0–95).
pub fn slot_of(t: DateTime<Utc>) -> usize {
    let day = floor(t, 1440);
    ((t - day).num_minutes() / 15) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn span(grain: i32, from: &str, to: &str) -> Span {
        Span {
            grain,
            from: utc(from),
            to: utc(to),
        }
    }

    #[test]
    fn a_range_is_covered_exactly_once_by_the_coarsest_grains() {
        let c = cover(
            utc("2026-11-01T18:37:10Z"),
            utc("2026-11-04T05:20:00Z"),
            &ORG_GRAINS,
        );
        assert_eq!(
            c.raw,
            vec![
                (utc("2026-11-01T18:37:10Z"), utc("2026-11-01T18:45:00Z")),
                (utc("2026-11-04T05:15:00Z"), utc("2026-11-04T05:20:00Z")),
            ]
        );
        assert_eq!(
            c.spans,
            vec![
                span(15, "2026-11-01T18:45:00Z", "2026-11-01T19:00:00Z"),
                span(15, "2026-11-04T05:00:00Z", "2026-11-04T05:15:00Z"),
                span(60, "2026-11-01T19:00:00Z", "2026-11-02T00:00:00Z"),
                span(60, "2026-11-04T00:00:00Z", "2026-11-04T05:00:00Z"),
                span(1440, "2026-11-02T00:00:00Z", "2026-11-04T00:00:00Z"),
            ]
        );
        assert_eq!(
            c.rolled(),
            Some((utc("2026-11-01T18:45:00Z"), utc("2026-11-04T05:15:00Z")))
        );
    }

    #[test]
    fn short_and_aligned_ranges() {
        let c = cover(
            utc("2026-11-01T10:01:00Z"),
            utc("2026-11-01T10:14:00Z"),
            &ORG_GRAINS,
        );
        assert_eq!(c.raw.len(), 1);
        assert!(c.spans.is_empty());
        assert_eq!(c.rolled(), None);
        let c = cover(
            utc("2026-11-01T10:00:00Z"),
            utc("2026-11-01T10:30:00Z"),
            &ORG_GRAINS,
        );
        assert!(c.raw.is_empty());
        assert_eq!(
            c.spans,
            vec![span(15, "2026-11-01T10:00:00Z", "2026-11-01T10:30:00Z")]
        );
        let c = cover(
            utc("2026-11-01T00:00:00Z"),
            utc("2026-11-03T00:00:00Z"),
            &ORG_GRAINS,
        );
        assert_eq!(
            c.spans,
            vec![span(1440, "2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z")]
        );
        assert_eq!(
            cover(c.spans[0].to, c.spans[0].to, &ORG_GRAINS),
            Cover::default()
        );
    }

    /// Every range is partitioned exactly by its raw edges and aligned spans, with few buckets.
    #[test]
    fn the_reseller_grains_partition_any_range_with_few_buckets() {
        let base = utc("2026-01-01T00:00:00Z");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let start = base + Duration::seconds((x % 40_000_000) as i64);
            let end = start + Duration::seconds(((x >> 24) % 12_000_000) as i64 + 1);
            for grains in [&ORG_GRAINS[..], &RESELLER_GRAINS[..]] {
                let c = cover(start, end, grains);
                let mut parts: Vec<(DateTime<Utc>, DateTime<Utc>)> = c.raw.clone();
                let mut buckets = 0;
                for s in &c.spans {
                    assert_eq!(floor(s.from, s.grain), s.from, "{s:?}");
                    assert_eq!(floor(s.to, s.grain), s.to, "{s:?}");
                    buckets += (s.to - s.from).num_minutes() / i64::from(s.grain);
                    parts.push((s.from, s.to));
                }
                parts.sort();
                assert_eq!(parts.first().map(|p| p.0), Some(start));
                assert_eq!(parts.last().map(|p| p.1), Some(end));
                for w in parts.windows(2) {
                    assert_eq!(w[0].1, w[1].0, "{start} .. {end}: {parts:?}");
                }
                if grains.len() == RESELLER_GRAINS.len() && end - start <= Duration::days(92) {
                    assert!(buckets <= 30, "{buckets} buckets for {start} .. {end}");
                }
            }
        }
    }

    #[test]
    fn zones_whole_hours_from_utc() {
        let (s, e) = (utc("2026-01-01T00:00:00Z"), utc("2026-12-31T00:00:00Z"));
        assert!(whole_hours(chrono_tz::UTC, s, e));
        assert!(whole_hours(chrono_tz::America::New_York, s, e));
        assert!(!whole_hours(chrono_tz::Asia::Kolkata, s, e));
        assert!(!whole_hours(chrono_tz::Asia::Kathmandu, s, e));
        // Lord Howe is +10:30 in winter and +11 in summer.
        let lord_howe = chrono_tz::Australia::Lord_Howe;
        assert!(whole_hours(
            lord_howe,
            utc("2026-01-05T00:00:00Z"),
            utc("2026-01-20T00:00:00Z")
        ));
        assert!(!whole_hours(
            lord_howe,
            utc("2026-01-05T00:00:00Z"),
            utc("2026-06-20T00:00:00Z")
        ));
    }

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
        assert_eq!(slot_of(utc("2026-11-01T23:59:59Z")), 95);
        assert_eq!(slot_of(utc("2026-11-01T00:14:59Z")), 0);
    }
}
