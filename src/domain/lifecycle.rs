//! Handoff lifecycle: what became of each handoff, how long customers waited for a person, and
//! whether the handoff came outside working hours.
//!
//! Policy:
//! - A handoff is a cohort member of the block of its first initiation, counted in its current
//!   state: `initiated = completed + failed + abandoned + open`. `retried` counts handoffs
//!   initiated more than once (whatever their state); `outside_working_hours` those classified
//!   so at their first initiation ([`WorkingHours::is_outside`]), a flag fixed then.
//! - The **wait** is the time from the first initiation to `handoff.completed`, in whole
//!   milliseconds. Waits are kept as a count, a sum, a maximum and a [`WaitHistogram`] whose
//!   bins are exact below 100 ms and 1 % wide above, so that histograms of any set of blocks
//!   merge exactly and a percentile read from them lies within 0.5 % of the exact value.
//! - Percentiles are nearest-rank: the `p`th percentile of `n` waits is the `⌈p·n/100⌉`th
//!   smallest.
//! - Rates are percentages of `initiated` with two decimals (0 when nothing was initiated); each
//!   numerator is a part of `initiated`, so no rate exceeds 100.
//! - Groups: a handoff counts under each of its reasons (so reason groups may sum past the
//!   total), under its session's channel and agent, and under its destination; a handoff without
//!   an agent or a destination is in the group whose key is null.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use super::analytics::percentage;
use super::configuration::{parse_day_span, parse_time};
use super::events::{Reason, states};

/// A group dimension of `GET /v1/handoff-lifecycle` (`group_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dim {
    /// Every handoff, under the key `""`.
    All,
    /// Each of the handoff's reasons.
    Reason,
    /// Its session's channel.
    Channel,
    /// Its destination (`""`: none).
    Destination,
    /// Its session's agent (`""`: none).
    Agent,
}

impl Dim {
    /// Every dimension, in storage order.
    pub const ALL: [Dim; 5] = [
        Dim::All,
        Dim::Reason,
        Dim::Channel,
        Dim::Destination,
        Dim::Agent,
    ];

    /// The stored name (`dim` column) and the `group_by` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::All => "",
            Dim::Reason => "reason",
            Dim::Channel => "channel",
            Dim::Destination => "destination",
            Dim::Agent => "agent",
        }
    }

    /// The dimension a `group_by` value names (not [`Dim::All`]).
    pub fn parse_group_by(s: &str) -> Option<Dim> {
        Dim::ALL.into_iter().skip(1).find(|d| d.as_str() == s)
    }
}

/// What the lifecycle counts of one handoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// First initiation.
    pub initiated_at: DateTime<Utc>,
    /// Current state.
    pub state: String,
    /// Initiations (1 + retries).
    pub attempts: i32,
    /// Reasons of all its attempts.
    pub reasons: Vec<Reason>,
    /// Where it was sent.
    pub destination: Option<String>,
    /// Its session's channel.
    pub channel: String,
    /// Its session's agent.
    pub agent_id: Option<String>,
    /// Classified outside working hours at its first initiation.
    pub outside_working_hours: bool,
    /// Its completion.
    pub completed_at: Option<DateTime<Utc>>,
}

/// Where a handoff stands, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `handoff_completed`.
    Completed,
    /// `handoff_failed` (and not retried since).
    Failed,
    /// `handoff_abandoned`.
    Abandoned,
    /// Initiated, or in a custom state.
    Open,
}

/// The outcome of a state.
pub fn outcome(state: &str) -> Outcome {
    match state {
        states::COMPLETED => Outcome::Completed,
        states::FAILED => Outcome::Failed,
        states::ABANDONED => Outcome::Abandoned,
        _ => Outcome::Open,
    }
}

impl Facts {
    /// The wait in whole milliseconds, once completed.
    pub fn wait_ms(&self) -> Option<i64> {
        self.completed_at
            .map(|c| (c - self.initiated_at).num_milliseconds().max(0))
    }

    /// The `(dimension, key)` pairs the handoff counts under.
    pub fn keys(&self) -> Vec<(Dim, String)> {
        let mut out = Vec::with_capacity(4 + self.reasons.len());
        out.push((Dim::All, String::new()));
        let mut reasons: Vec<&str> = self.reasons.iter().map(|r| r.as_str()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        out.extend(reasons.into_iter().map(|r| (Dim::Reason, r.to_owned())));
        out.push((Dim::Channel, self.channel.clone()));
        out.push((
            Dim::Destination,
            self.destination.clone().unwrap_or_default(),
        ));
        out.push((Dim::Agent, self.agent_id.clone().unwrap_or_default()));
        out
    }
}

/// The bins: exact below [`LINEAR`] ms, then 1 % wide.
const LINEAR: i64 = 100;
/// Bin width ratio above [`LINEAR`].
const RATIO: f64 = 1.01;

/// The histogram bin of a wait (milliseconds).
pub fn bin_of(ms: i64) -> i32 {
    if ms < LINEAR {
        return ms.max(0) as i32;
    }
    let k = ((ms as f64 / LINEAR as f64).ln() / RATIO.ln()).floor() as i64;
    (LINEAR + k.max(0)) as i32
}

/// The value a bin stands for (milliseconds): the value itself below 100 ms, else the geometric
/// middle of the bin (within 0.5 % of every value in it).
pub fn bin_value(bin: i32) -> f64 {
    let bin = i64::from(bin);
    if bin < LINEAR {
        return bin as f64;
    }
    LINEAR as f64 * RATIO.powf((bin - LINEAR) as f64 + 0.5)
}

/// Waits by histogram bin: mergeable by adding counts. Dense over the bins it spans: the count
/// of bin `lo + i` at index `i`, with no zero at either end (so that equal histograms compare
/// equal; empty: `lo` 0, no count). Merging adds two slices, which keeps a read that merges
/// hundreds of rows of hundreds of bins each in the low milliseconds (a map cost ~10× more);
/// starting at the first bin held rather than at bin 0 keeps a histogram of long waits (bins
/// ~1,500 for a day, ~1,800 for a month) as small as the bins it spans, which matters to ingest:
/// a batch completing handoffs initiated weeks earlier builds one histogram per rollup row it
/// touches (thousands).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitHistogram {
    /// The first bin held (0 when empty).
    lo: usize,
    /// Counts of bins `lo..lo + counts.len()`.
    counts: Vec<i64>,
}

impl WaitHistogram {
    /// The counts of bins `lo..hi` (`lo < hi`), the histogram widened with zeros to hold them.
    fn span_mut(&mut self, lo: usize, hi: usize) -> &mut [i64] {
        if self.counts.is_empty() {
            self.lo = lo;
            self.counts.resize(hi - lo, 0);
        } else {
            if lo < self.lo {
                self.counts
                    .splice(0..0, std::iter::repeat_n(0, self.lo - lo));
                self.lo = lo;
            }
            if hi > self.lo + self.counts.len() {
                self.counts.resize(hi - self.lo, 0);
            }
        }
        let at = lo - self.lo;
        &mut self.counts[at..at + (hi - lo)]
    }

    /// Adds `n` waits in `bin` (bins are never negative; a negative one is ignored).
    pub fn add(&mut self, bin: i32, n: i64) {
        let Ok(i) = usize::try_from(bin) else {
            return;
        };
        if n == 0 {
            return;
        }
        self.span_mut(i, i + 1)[0] += n;
        self.trim();
    }

    /// Adds every bin of `other`.
    pub fn merge(&mut self, other: &WaitHistogram) {
        self.merge_signed(other, 1);
    }

    /// Subtracts every bin of `other`.
    pub fn subtract(&mut self, other: &WaitHistogram) {
        self.merge_signed(other, -1);
    }

    fn merge_signed(&mut self, other: &WaitHistogram, sign: i64) {
        if other.counts.is_empty() {
            return;
        }
        let dst = self.span_mut(other.lo, other.lo + other.counts.len());
        for (a, b) in dst.iter_mut().zip(&other.counts) {
            *a += sign * *b;
        }
        self.trim();
    }

    /// Whether no bin holds a count.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Drops zeros at either end.
    fn trim(&mut self) {
        while self.counts.last() == Some(&0) {
            self.counts.pop();
        }
        let zeros = self.counts.iter().take_while(|c| **c == 0).count();
        if zeros > 0 {
            self.counts.drain(..zeros);
            self.lo += zeros;
        }
        if self.counts.is_empty() {
            self.lo = 0;
        }
    }

    /// The nearest-rank `p`th percentile (milliseconds), `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let n: i64 = self.counts.iter().filter(|c| **c > 0).sum();
        if n <= 0 {
            return None;
        }
        let rank = ((p / 100.0 * n as f64).ceil() as i64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += (*c).max(0);
            if seen >= rank {
                return Some(bin_value((self.lo + i) as i32));
            }
        }
        None
    }

    /// The stored form (`handoff_lifecycle_rollups.wait_hist`, see [`WaitHistogram::add_encoded`]):
    /// empty when no bin holds a count; else one byte `w`, the first non-zero bin as a
    /// big-endian `i32`, then the count of every bin from that one to the last non-zero one, each
    /// in `w` big-endian two's-complement bytes, where `w` is the least of 1, 2, 4 and 8 such that
    /// every count's magnitude is below `2^(8w−1)`. Canonical: equal histograms encode equal.
    /// A busy day (a few hundred bins of a few hundred waits) takes ~1 KB, stored inline in the
    /// row (no TOAST, no compression), and decodes without a branch per bin.
    pub fn encode(&self) -> Vec<u8> {
        // No zero at either end (see `trim`).
        let (lo, counts) = (self.lo, &self.counts[..]);
        if counts.is_empty() {
            return Vec::new();
        }
        let top = counts.iter().map(|c| c.unsigned_abs()).max().unwrap_or(0);
        let w = match top {
            t if t < 1 << 7 => 1,
            t if t < 1 << 15 => 2,
            t if t < 1 << 31 => 4,
            _ => 8,
        };
        let mut out = Vec::with_capacity(5 + counts.len() * w);
        out.push(w as u8);
        out.extend_from_slice(&(lo as i32).to_be_bytes());
        for c in counts {
            out.extend_from_slice(&c.to_be_bytes()[8 - w..]);
        }
        out
    }

    /// Adds (`sign` 1) or subtracts (−1) a histogram in its stored form
    /// ([`WaitHistogram::encode`]), straight into this one. `Err` when the bytes are not such a
    /// form (nothing is added then).
    pub fn add_encoded(&mut self, bytes: &[u8], sign: i64) -> Result<(), BadHistogram> {
        let Some((&w, rest)) = bytes.split_first() else {
            return Ok(());
        };
        let w = usize::from(w);
        if !matches!(w, 1 | 2 | 4 | 8) || rest.len() < 4 || (rest.len() - 4) % w != 0 {
            return Err(BadHistogram);
        }
        let (first, body) = rest.split_at(4);
        let lo = i32::from_be_bytes([first[0], first[1], first[2], first[3]]);
        let n = body.len() / w;
        let lo = usize::try_from(lo)
            .ok()
            .filter(|lo| lo + n <= MAX_BINS)
            .ok_or(BadHistogram)?;
        if n == 0 {
            return Ok(());
        }
        let dst = self.span_mut(lo, lo + n);
        match w {
            1 => {
                for (d, b) in dst.iter_mut().zip(body) {
                    *d += sign * i64::from(*b as i8);
                }
            }
            2 => {
                for (d, b) in dst.iter_mut().zip(body.chunks_exact(2)) {
                    *d += sign * i64::from(i16::from_be_bytes([b[0], b[1]]));
                }
            }
            4 => {
                for (d, b) in dst.iter_mut().zip(body.chunks_exact(4)) {
                    *d += sign * i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                }
            }
            _ => {
                for (d, b) in dst.iter_mut().zip(body.chunks_exact(8)) {
                    let mut x = [0; 8];
                    x.copy_from_slice(b);
                    *d += sign * i64::from_be_bytes(x);
                }
            }
        }
        self.trim();
        Ok(())
    }

    /// From its stored form.
    pub fn decode(bytes: &[u8]) -> Result<WaitHistogram, BadHistogram> {
        let mut h = WaitHistogram::default();
        h.add_encoded(bytes, 1)?;
        Ok(h)
    }
}

/// Bins a stored histogram may reach: [`bin_of`] gives ~4,030 for the longest wait an `i64`
/// holds, so more means the bytes are not a histogram.
const MAX_BINS: usize = 1 << 16;

/// Bytes that are not a stored [`WaitHistogram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHistogram;

impl std::fmt::Display for BadHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a stored wait histogram")
    }
}

impl std::error::Error for BadHistogram {}

/// Counts of a set of handoffs (one rollup row, or any merge of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Handoffs.
    pub initiated: i64,
    /// Completed ones.
    pub completed: i64,
    /// Failed ones.
    pub failed: i64,
    /// Abandoned ones.
    pub abandoned: i64,
    /// Open ones.
    pub open: i64,
    /// Initiated more than once.
    pub retried: i64,
    /// Outside working hours.
    pub outside_working_hours: i64,
    /// Waits counted.
    pub wait_count: i64,
    /// Their sum (ms).
    pub wait_sum_ms: i64,
    /// Their maximum (ms).
    pub wait_max_ms: Option<i64>,
    /// Their distribution.
    pub waits: WaitHistogram,
}

impl Tally {
    /// Adds (`sign` 1) or subtracts (-1) one handoff. A wait is final once counted (a completed
    /// handoff never changes), so the maximum only grows.
    pub fn add_handoff(&mut self, f: &Facts, sign: i64) {
        self.initiated += sign;
        match outcome(&f.state) {
            Outcome::Completed => self.completed += sign,
            Outcome::Failed => self.failed += sign,
            Outcome::Abandoned => self.abandoned += sign,
            Outcome::Open => self.open += sign,
        }
        if f.attempts > 1 {
            self.retried += sign;
        }
        if f.outside_working_hours {
            self.outside_working_hours += sign;
        }
        if let Some(ms) = f.wait_ms() {
            self.wait_count += sign;
            self.wait_sum_ms += sign * ms;
            if sign > 0 {
                self.wait_max_ms = Some(self.wait_max_ms.map_or(ms, |m| m.max(ms)));
            }
            self.waits.add(bin_of(ms), sign);
        }
    }

    /// Adds another tally.
    pub fn merge(&mut self, o: &Tally) {
        self.initiated += o.initiated;
        self.completed += o.completed;
        self.failed += o.failed;
        self.abandoned += o.abandoned;
        self.open += o.open;
        self.retried += o.retried;
        self.outside_working_hours += o.outside_working_hours;
        self.wait_count += o.wait_count;
        self.wait_sum_ms += o.wait_sum_ms;
        self.wait_max_ms = match (self.wait_max_ms, o.wait_max_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.waits.merge(&o.waits);
    }

    /// Adds (`sign` 1) or subtracts (-1) another tally's counts and histogram; the maximum is
    /// merged only when adding (a maximum cannot be subtracted).
    pub fn merge_signed(&mut self, o: &Tally, sign: i64) {
        if sign > 0 {
            self.merge(o);
            return;
        }
        self.initiated -= o.initiated;
        self.completed -= o.completed;
        self.failed -= o.failed;
        self.abandoned -= o.abandoned;
        self.open -= o.open;
        self.retried -= o.retried;
        self.outside_working_hours -= o.outside_working_hours;
        self.wait_count -= o.wait_count;
        self.wait_sum_ms -= o.wait_sum_ms;
        self.waits.subtract(&o.waits);
    }

    /// Whether nothing is counted.
    pub fn is_zero(&self) -> bool {
        self.initiated == 0
            && self.completed == 0
            && self.failed == 0
            && self.abandoned == 0
            && self.open == 0
            && self.retried == 0
            && self.outside_working_hours == 0
            && self.wait_count == 0
            && self.waits.is_empty()
    }

    /// The rates, in percent of `initiated`.
    pub fn rates(&self) -> Rates {
        Rates {
            acceptance: percentage(self.completed, self.initiated),
            failure: percentage(self.failed, self.initiated),
            abandonment: percentage(self.abandoned, self.initiated),
            retry: percentage(self.retried, self.initiated),
        }
    }

    /// The median wait in seconds (as [`Tally::wait_summary`] gives it), alone: a day needs no
    /// other percentile.
    pub fn wait_p50(&self) -> Option<f64> {
        self.waits.percentile(50.0).map(secs)
    }

    /// The waits' summary, in seconds.
    pub fn wait_summary(&self) -> WaitSummary {
        let count = self.wait_count.max(0);
        WaitSummary {
            count,
            mean: (count > 0).then(|| secs(self.wait_sum_ms as f64 / count as f64)),
            p50: self.waits.percentile(50.0).map(secs),
            p90: self.waits.percentile(90.0).map(secs),
            p95: self.waits.percentile(95.0).map(secs),
            max: self
                .wait_max_ms
                .filter(|_| count > 0)
                .map(|m| m as f64 / 1000.0),
        }
    }
}

/// Milliseconds as seconds with millisecond precision.
fn secs(ms: f64) -> f64 {
    ms.round() / 1000.0
}

/// Rates in percent with two decimals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Completed / initiated.
    pub acceptance: f64,
    /// Failed / initiated.
    pub failure: f64,
    /// Abandoned / initiated.
    pub abandonment: f64,
    /// Retried / initiated.
    pub retry: f64,
}

/// Wait figures in seconds (millisecond precision); `None` without waits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitSummary {
    /// Waits counted.
    pub count: i64,
    /// Their mean.
    pub mean: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// Longest.
    pub max: Option<f64>,
}

/// The working hours of a configuration revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    /// `working_hours_active`.
    pub active: bool,
    /// The slots' zone.
    pub tz: Tz,
    /// Slots: days (0 = Monday, each in the span) and `[start, end)` in seconds of the local day.
    pub slots: Vec<(Vec<u32>, u32, u32)>,
}

impl WorkingHours {
    /// From a stored document's parts (`settings.working_hours_active`, `settings.timezone`,
    /// `availability`). An unreadable part counts as "no working hours" (the writer validated
    /// the document, so this does not happen).
    pub fn from_document(doc: &serde_json::Value) -> WorkingHours {
        let settings = &doc["settings"];
        let active = settings["working_hours_active"].as_bool().unwrap_or(false);
        let tz = settings["timezone"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(Tz::UTC);
        let mut slots = Vec::new();
        for slot in doc["availability"].as_array().into_iter().flatten() {
            let (Some(span), Some(start), Some(end)) = (
                slot["day_span"].as_str(),
                slot["start_time"].as_str(),
                slot["end_time"].as_str(),
            ) else {
                continue;
            };
            let (Ok((a, b)), Ok(s), Ok(e)) =
                (parse_day_span(span), parse_time(start), parse_time(end))
            else {
                continue;
            };
            let mut days = Vec::new();
            let mut d = a;
            loop {
                days.push(d as u32);
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
            // `23:59` is the latest time the format can write: a slot ending then runs to
            // midnight.
            let end = if e == 23 * 60 + 59 { 24 * 60 } else { e };
            slots.push((days, s * 60, end * 60));
        }
        WorkingHours { active, tz, slots }
    }

    /// Whether `t` is outside working hours: working hours are active and no slot holds the
    /// local time of `t` in the configuration's zone (a slot holds `[start_time, end_time)` on
    /// each day of its span; an `end_time` of `23:59` means midnight).
    pub fn is_outside(&self, t: DateTime<Utc>) -> bool {
        if !self.active {
            return false;
        }
        let local = t.with_timezone(&self.tz);
        let day = local.weekday().num_days_from_monday();
        let secs = local.num_seconds_from_midnight();
        !self
            .slots
            .iter()
            .any(|(days, s, e)| days.contains(&day) && *s <= secs && secs < *e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn bins_are_within_half_a_percent() {
        for ms in (0..200)
            .chain((1..2000).map(|i| i * 997))
            .chain([86_400_000 * 30])
        {
            let v = bin_value(bin_of(ms));
            assert!(
                (v - ms as f64).abs() <= ms as f64 * 0.005 + 1e-9,
                "{ms} → {v}"
            );
        }
        assert!(bin_of(100) <= bin_of(101));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut h = WaitHistogram::default();
        for ms in [10, 20, 30, 40] {
            h.add(bin_of(ms), 1);
        }
        assert_eq!(h.percentile(50.0), Some(20.0));
        assert_eq!(h.percentile(90.0), Some(40.0));
        assert_eq!(h.percentile(1.0), Some(10.0));
        assert_eq!(WaitHistogram::default().percentile(50.0), None);
        assert_eq!(WaitHistogram::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn stored_form_round_trips_in_every_width() {
        assert_eq!(WaitHistogram::default().encode(), Vec::<u8>::new());
        assert_eq!(WaitHistogram::decode(&[]), Ok(WaitHistogram::default()));
        for top in [
            1,
            127,
            128,
            32_767,
            32_768,
            (1 << 31) - 1,
            1 << 31,
            i64::MAX,
        ] {
            let mut h = WaitHistogram::default();
            h.add(700, 3);
            h.add(702, top);
            h.add(705, -top);
            h.add(1_900, 1);
            let bytes = h.encode();
            let w = usize::from(bytes[0]);
            assert_eq!(bytes.len(), 5 + (1_900 - 700 + 1) * w, "{top}");
            assert_eq!(&bytes[1..5], &700_i32.to_be_bytes());
            assert_eq!(WaitHistogram::decode(&bytes).as_ref(), Ok(&h), "{top}");
            // Subtracting its own stored form empties a histogram.
            let mut z = h.clone();
            z.add_encoded(&bytes, -1).unwrap();
            assert!(z.is_empty());
        }
        // Width 1 for counts below 128, 2 from 128.
        let mut h = WaitHistogram::default();
        h.add(5, 127);
        assert_eq!(h.encode(), vec![1, 0, 0, 0, 5, 127]);
        h.add(5, 1);
        assert_eq!(h.encode(), vec![2, 0, 0, 0, 5, 0, 128]);
        for bad in [
            &[3, 0, 0, 0, 5, 1][..],
            &[1, 0, 0][..],
            &[2, 0, 0, 0, 5, 1][..],
            &[1, 255, 255, 255, 255, 1][..],
            &[1, 0, 1, 0, 0, 1][..],
        ] {
            assert_eq!(WaitHistogram::decode(bad), Err(BadHistogram), "{bad:?}");
        }
    }

    /// The reference form of a histogram: its non-zero bins.
    fn bins(pairs: &[(i32, i64)]) -> std::collections::BTreeMap<i32, i64> {
        let mut m = std::collections::BTreeMap::new();
        for (b, n) in pairs {
            *m.entry(*b).or_insert(0) += n;
        }
        m.retain(|_, n| *n != 0);
        m
    }

    proptest::proptest! {
        /// Adding, merging, subtracting and decoding give the histogram of the bins' sums, whatever
        /// the bins' order and spread (the vector widens at either end and drops end zeros).
        #[test]
        fn histogram_operations_match_the_sums_of_their_bins(
            a in proptest::collection::vec((0..2_000_i32, -3..4_i64), 0..12),
            b in proptest::collection::vec((0..2_000_i32, -3..4_i64), 0..12),
        ) {
            let build = |pairs: &[(i32, i64)]| {
                let mut h = WaitHistogram::default();
                for (bin, n) in pairs {
                    h.add(*bin, *n);
                }
                h
            };
            let from_map = |m: &std::collections::BTreeMap<i32, i64>| {
                let mut h = WaitHistogram::default();
                for (bin, n) in m {
                    h.add(*bin, *n);
                }
                h
            };
            let (ha, hb) = (build(&a), build(&b));
            proptest::prop_assert_eq!(&ha, &from_map(&bins(&a)));
            let mut sum = ha.clone();
            sum.merge(&hb);
            let all: Vec<(i32, i64)> = a.iter().chain(&b).copied().collect();
            proptest::prop_assert_eq!(&sum, &from_map(&bins(&all)));
            let mut enc = ha.clone();
            enc.add_encoded(&hb.encode(), 1).unwrap();
            proptest::prop_assert_eq!(&enc, &sum);
            let mut back = sum.clone();
            back.subtract(&hb);
            proptest::prop_assert_eq!(&back, &ha);
            back.add_encoded(&ha.encode(), -1).unwrap();
            proptest::prop_assert!(back.is_empty());
            proptest::prop_assert_eq!(back, WaitHistogram::default());
            // The stored form: the first non-zero bin, then every bin to the last non-zero one.
            let m = bins(&all);
            let bytes = sum.encode();
            match (m.keys().next(), m.keys().last()) {
                (Some(lo), Some(hi)) => {
                    proptest::prop_assert_eq!(&bytes[1..5], &lo.to_be_bytes());
                    proptest::prop_assert_eq!(bytes.len(), 5 + (hi - lo + 1) as usize);
                }
                _ => proptest::prop_assert!(bytes.is_empty()),
            }
        }
    }

    #[test]
    fn working_hours_edges() {
        let doc = json!({
            "settings": {"working_hours_active": true, "timezone": "Asia/Kolkata"},
            "availability": [
                {"id": 1, "day_span": "monday-friday", "start_time": "09:00", "end_time": "17:30"},
                {"id": 2, "day_span": "saturday", "start_time": "20:00", "end_time": "23:59"}
            ]
        });
        let w = WorkingHours::from_document(&doc);
        // 2026-11-02 is a Monday; 09:00 IST = 03:30Z.
        assert!(w.is_outside(utc("2026-11-02T03:29:59Z")));
        assert!(!w.is_outside(utc("2026-11-02T03:30:00Z")));
        assert!(!w.is_outside(utc("2026-11-02T11:59:59Z")));
        assert!(w.is_outside(utc("2026-11-02T12:00:00Z")));
        // Saturday 23:59:30 IST is inside (the slot runs to midnight); Sunday 00:00 is not.
        assert!(!w.is_outside(utc("2026-11-07T18:29:30Z")));
        assert!(w.is_outside(utc("2026-11-07T18:30:00Z")));
        let off =
            WorkingHours::from_document(&json!({"settings": {"working_hours_active": false}}));
        assert!(!off.is_outside(utc("2026-11-07T18:30:00Z")));
        let wrap = WorkingHours::from_document(&json!({
            "settings": {"working_hours_active": true, "timezone": "UTC"},
            "availability": [{"day_span": "saturday-monday", "start_time": "00:00", "end_time": "01:00"}]
        }));
        assert!(!wrap.is_outside(utc("2026-11-08T00:30:00Z")));
        assert!(wrap.is_outside(utc("2026-11-04T00:30:00Z")));
    }

    #[test]
    fn rates_never_pass_100_and_are_0_when_empty() {
        let t = Tally {
            initiated: 3,
            completed: 3,
            retried: 1,
            ..Tally::default()
        };
        let r = t.rates();
        assert_eq!((r.acceptance, r.retry), (100.0, 33.33));
        assert_eq!(Tally::default().rates().acceptance, 0.0);
        assert_eq!(Tally::default().wait_summary().p50, None);
    }
}
