//! Time buckets: the one algebra every rollup counts in and every read is planned with.
//!
//! Policy:
//! - A [`Grain`] is a bucket length, a whole number of seconds, and is stored as that number
//!   (`int4`, the column `grain` of every rollup table, with a `check` listing the table's
//!   grains). Buckets of a grain are aligned blocks of UTC time counted from the Unix epoch
//!   ([`Grain::floor`], [`Grain::ceil`]); a bucket row is keyed by its grain and its start.
//! - Each family of rollups keeps its own ladder of grains, finest first, each dividing the next
//!   so that blocks nest: [`HANDOFF_GRAINS`] (analytics), [`CALL_GRAINS`] (an organization's
//!   call metrics), [`RESELLER_GRAINS`] (a reseller's call metrics). Every ladder starts at 15
//!   minutes.
//! - A range `[from, to)` is read as its [`cover`]: the coarsest aligned blocks that fit, and
//!   what is left at either end short of a 15-minute boundary (`raw`, read from the projections
//!   themselves), so any bound is exact and a 90-day read touches a bounded number of buckets
//!   whatever the history.
//! - Zones: every UTC offset in use is a multiple of 15 minutes, so a local day or a local hour
//!   (Asia/Kolkata, a DST day in London or New York) is an exact union of 15-minute blocks, and
//!   a 15-minute UTC slot lies inside one local hour. [`Grain::floor_in`] and [`Grain::ceil_in`]
//!   give the local boundaries (a local day may last 23 or 25 hours); [`whole_hours`] says when
//!   hour slots suffice; [`DayInZone`] maps the slots of a UTC day to local wall-clock times.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::timerange::day_start;

/// A bucket length in seconds (the value stored in the rollup tables' `grain` columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grain(i32);

impl Grain {
    /// 15 minutes: the finest grain of every ladder (it divides every UTC offset in use).
    pub const QUARTER_HOUR: Grain = Grain(15 * 60);
    /// An hour.
    pub const HOUR: Grain = Grain(60 * 60);
    /// A UTC day.
    pub const DAY: Grain = Grain(24 * 60 * 60);
    /// Seven UTC days, from a Thursday (the Unix epoch was one).
    pub const WEEK: Grain = Grain(7 * 24 * 60 * 60);

    /// A grain of `minutes` minutes.
    pub const fn minutes(minutes: i32) -> Grain {
        Grain(minutes * 60)
    }

    /// Its length in seconds: what the rollup tables store.
    pub const fn seconds(self) -> i32 {
        self.0
    }

    /// The grain stored as `seconds`, if it is positive.
    pub fn from_seconds(seconds: i32) -> Option<Grain> {
        (seconds > 0).then_some(Grain(seconds))
    }

    /// Its length.
    pub fn duration(self) -> Duration {
        Duration::seconds(i64::from(self.0))
    }

    /// The start of the UTC block holding `t`.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let len = i64::from(self.0);
        DateTime::from_timestamp(t.timestamp().div_euclid(len) * len, 0).unwrap_or(t)
    }

    /// The first UTC block boundary at or after `t`.
    pub fn ceil(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let f = self.floor(t);
        if f == t { t } else { f + self.duration() }
    }

    /// The start of the local block of `tz` holding `t`: the local day's first instant for
    /// [`Grain::DAY`] (a DST day lasts 23 or 25 hours), the local wall-clock boundary for grains
    /// that divide a day (an hour of Asia/Kolkata starts at :30 UTC). Grains longer than a day
    /// have no local form: their UTC block.
    pub fn floor_in(self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        if self == Grain::DAY {
            return day_start(tz, t.with_timezone(&tz).date_naive());
        }
        if Grain::DAY.0 % self.0 != 0 {
            return self.floor(t);
        }
        let offset = i64::from(offset_at(tz, t).local_minus_utc());
        let len = i64::from(self.0);
        let local = (t.timestamp() + offset).div_euclid(len) * len;
        DateTime::from_timestamp(local - offset, 0).unwrap_or(t)
    }

    /// The first local block boundary of `tz` at or after `t` (see [`Grain::floor_in`]).
    pub fn ceil_in(self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let f = self.floor_in(t, tz);
        if f == t {
            return t;
        }
        if self == Grain::DAY {
            let day = t.with_timezone(&tz).date_naive();
            return day.succ_opt().map_or(t, |next| day_start(tz, next));
        }
        // The block after `t`'s, found from an instant inside it: across a DST change the local
        // clock skips or repeats, and the next boundary is where the new offset puts it.
        let next = self.floor_in(t + self.duration(), tz);
        if next > t { next } else { f + self.duration() }
    }
}

/// The grains of the handoff analytics rollups: 15 minutes, an hour, a day, 7 days.
pub const HANDOFF_GRAINS: [Grain; 4] = [Grain::QUARTER_HOUR, Grain::HOUR, Grain::DAY, Grain::WEEK];

/// The grains of an organization's call metric rollups: 15 minutes, an hour, a day. A 90-day
/// range reads at most ~140 buckets per agent from them.
pub const CALL_GRAINS: [Grain; 3] = [Grain::QUARTER_HOUR, Grain::HOUR, Grain::DAY];

/// The grains of a reseller's call metric rollups: doubling from 15 minutes to 8 hours, then
/// from a day to 128 days (8 hours divides a day). A range is covered by at most one bucket per
/// grain at each end (two for 8 hours) plus the top grain's: about 15 buckets for 90 days,
/// which keeps a reseller of hundreds of agents within a few thousand rows.
pub const RESELLER_GRAINS: [Grain; 14] = [
    Grain::minutes(15),
    Grain::minutes(30),
    Grain::minutes(60),
    Grain::minutes(120),
    Grain::minutes(240),
    Grain::minutes(480),
    Grain::minutes(1440),
    Grain::minutes(2880),
    Grain::minutes(5760),
    Grain::minutes(11_520),
    Grain::minutes(23_040),
    Grain::minutes(46_080),
    Grain::minutes(92_160),
    Grain::minutes(184_320),
];

/// A run of whole blocks of one grain: buckets starting in `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The grain.
    pub grain: Grain,
    /// First bucket start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive), a bucket boundary of `grain`.
    pub to: DateTime<Utc>,
}

impl Segment {
    /// Its buckets' starts, in order.
    pub fn buckets(&self) -> impl Iterator<Item = DateTime<Utc>> + use<> {
        let (step, to) = (self.grain.duration(), self.to);
        std::iter::successors(Some(self.from), move |b| Some(*b + step))
            .take_while(move |b| *b < to)
    }
}

/// How `[from, to)` is read: whole blocks from the rollups (`segments`, in time order), and the
/// rest from the projections (`raw`: at most two intervals, each under 15 minutes, or the whole
/// range when no 15-minute block fits in it). Together they cover the range exactly once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cover {
    /// Whole blocks, coarsest grain that fits, in time order.
    pub segments: Vec<Segment>,
    /// Intervals `[from, to)` read from the projections, in time order.
    pub raw: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Cover {
    /// The part read from rollups as one interval (`None` when the range is read raw only).
    pub fn rolled(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        Some((self.segments.first()?.from, self.segments.last()?.to))
    }
}

/// Covers `[from, to)` with the coarsest blocks of `grains` (finest first, each dividing the
/// next) that fit, and raw edges short of `grains[0]` boundaries. An empty or reversed range
/// has an empty cover.
pub fn cover(from: DateTime<Utc>, to: DateTime<Utc>, grains: &[Grain]) -> Cover {
    let mut out = Cover::default();
    let Some(finest) = grains.first() else {
        return out;
    };
    if from >= to {
        return out;
    }
    let (a, b) = (finest.ceil(from), finest.floor(to));
    if a >= b {
        out.raw.push((from, to));
        return out;
    }
    if from < a {
        out.raw.push((from, a));
    }
    aligned(a, b, grains, &mut out.segments);
    if b < to {
        out.raw.push((b, to));
    }
    out
}

/// Covers `[a, b)`, both on `grains[0]` boundaries, in time order: the coarsest grain with a
/// whole block inside, then the two sides with the finer grains.
fn aligned(a: DateTime<Utc>, b: DateTime<Utc>, grains: &[Grain], out: &mut Vec<Segment>) {
    if a >= b {
        return;
    }
    for (i, grain) in grains.iter().enumerate().rev() {
        let (ca, fb) = (grain.ceil(a), grain.floor(b));
        if ca < fb {
            aligned(a, ca, &grains[..i], out);
            out.push(Segment {
                grain: *grain,
                from: ca,
                to: fb,
            });
            aligned(fb, b, &grains[..i], out);
            return;
        }
    }
}

/// The zone's offset from UTC at `t`.
pub fn offset_at(tz: Tz, t: DateTime<Utc>) -> FixedOffset {
    tz.offset_from_utc_datetime(&t.naive_utc()).fix()
}

/// Whether `tz` is a whole number of hours from UTC at every hour of `[start, end)`: then each
/// UTC hour lies inside one local hour, and hour slots count local hours exactly. (Sampled at
/// every UTC hour: no zone has held a non-whole offset for less than an hour.)
pub fn whole_hours(tz: Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    let mut t = Grain::HOUR.floor(start);
    while t < end {
        if offset_at(tz, t).local_minus_utc() % 3600 != 0 {
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
    ((t - Grain::DAY.floor(t)).num_minutes() / 15) as usize
}

/// A UTC day seen from a zone: the local wall-clock time of each of its instants, with one
/// offset lookup for the whole day unless the offset changes within it (a DST day).
#[derive(Debug, Clone, Copy)]
pub struct DayInZone {
    /// The day's first instant.
    pub start: DateTime<Utc>,
    tz: Tz,
    offset: FixedOffset,
    steady: bool,
}

impl DayInZone {
    /// The UTC day `day` in `tz` (`None` past chrono's range).
    pub fn new(day: NaiveDate, tz: Tz) -> Option<DayInZone> {
        let start = day.and_hms_opt(0, 0, 0)?.and_utc();
        let offset = offset_at(tz, start);
        let steady = offset_at(tz, start + Duration::seconds(86_399)) == offset;
        Some(DayInZone {
            start,
            tz,
            offset,
            steady,
        })
    }

    /// The local wall-clock time of the start of slot `i` of `per_day` equal slots.
    pub fn slot_start(&self, i: usize, per_day: usize) -> (DateTime<Utc>, NaiveDateTime) {
        let step = 86_400 / per_day.max(1) as i64;
        let t = self.start + Duration::seconds(step * i as i64);
        let offset = if self.steady {
            self.offset
        } else {
            offset_at(self.tz, t)
        };
        (t, t.naive_utc() + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn tz(name: &str) -> Tz {
        name.parse().unwrap()
    }

    #[test]
    fn floor_and_ceil_in_utc() {
        // (instant, grain, floor, ceil), worked out by hand. 2026-11-01 is day 20,758 since the
        // epoch (even: a 2-day block starts there); 2026-10-29, a Thursday, is day 20,755 = 7 ×
        // 2,965 (a week block starts there).
        let table = [
            (
                "2026-11-01T18:37:10Z",
                Grain::QUARTER_HOUR,
                "2026-11-01T18:30:00Z",
                "2026-11-01T18:45:00Z",
            ),
            (
                "2026-11-01T18:45:00Z",
                Grain::QUARTER_HOUR,
                "2026-11-01T18:45:00Z",
                "2026-11-01T18:45:00Z",
            ),
            (
                "2026-11-01T00:00:00.5Z",
                Grain::QUARTER_HOUR,
                "2026-11-01T00:00:00Z",
                "2026-11-01T00:15:00Z",
            ),
            (
                "2026-11-01T18:37:10Z",
                Grain::HOUR,
                "2026-11-01T18:00:00Z",
                "2026-11-01T19:00:00Z",
            ),
            (
                "2026-11-01T18:37:10Z",
                Grain::DAY,
                "2026-11-01T00:00:00Z",
                "2026-11-02T00:00:00Z",
            ),
            (
                "2026-11-02T00:00:00Z",
                Grain::DAY,
                "2026-11-02T00:00:00Z",
                "2026-11-02T00:00:00Z",
            ),
            (
                "2026-11-01T18:37:10Z",
                Grain::WEEK,
                "2026-10-29T00:00:00Z",
                "2026-11-05T00:00:00Z",
            ),
            (
                "2026-11-01T18:37:10Z",
                Grain::minutes(2880),
                "2026-11-01T00:00:00Z",
                "2026-11-03T00:00:00Z",
            ),
            (
                "2026-11-01T18:37:10Z",
                Grain::minutes(480),
                "2026-11-01T16:00:00Z",
                "2026-11-02T00:00:00Z",
            ),
            (
                "1969-12-31T23:50:00Z",
                Grain::HOUR,
                "1969-12-31T23:00:00Z",
                "1970-01-01T00:00:00Z",
            ),
        ];
        for (t, grain, floor, ceil) in table {
            assert_eq!(grain.floor(utc(t)), utc(floor), "floor {t} {grain:?}");
            assert_eq!(grain.ceil(utc(t)), utc(ceil), "ceil {t} {grain:?}");
        }
    }

    #[test]
    fn floor_and_ceil_in_a_zone() {
        // London: 2026-03-29 01:00Z clocks go 01:00 GMT → 02:00 BST (a 23-hour day);
        // 2026-10-25 01:00Z, 02:00 BST → 01:00 GMT (25 hours). New York: 2026-03-08 07:00Z,
        // 02:00 EST → 03:00 EDT; 2026-11-01 06:00Z, 02:00 EDT → 01:00 EST. Kolkata: +05:30.
        let table = [
            // 02:30 BST: the local hour 02:00 BST began at 01:00Z.
            (
                "Europe/London",
                "2026-03-29T01:30:00Z",
                Grain::HOUR,
                "2026-03-29T01:00:00Z",
                "2026-03-29T02:00:00Z",
            ),
            // 00:30 GMT: local 01:00 never happens; the next local hour starts at 02:00 BST.
            (
                "Europe/London",
                "2026-03-29T00:30:00Z",
                Grain::HOUR,
                "2026-03-29T00:00:00Z",
                "2026-03-29T01:00:00Z",
            ),
            (
                "Europe/London",
                "2026-03-29T12:00:00Z",
                Grain::DAY,
                "2026-03-29T00:00:00Z",
                "2026-03-29T23:00:00Z",
            ),
            // 01:30 BST, then 01:00 GMT (the second 01:00) starts at 01:00Z.
            (
                "Europe/London",
                "2026-10-25T00:30:00Z",
                Grain::HOUR,
                "2026-10-25T00:00:00Z",
                "2026-10-25T01:00:00Z",
            ),
            (
                "Europe/London",
                "2026-10-25T12:00:00Z",
                Grain::DAY,
                "2026-10-24T23:00:00Z",
                "2026-10-26T00:00:00Z",
            ),
            (
                "Europe/London",
                "2026-10-24T23:00:00Z",
                Grain::DAY,
                "2026-10-24T23:00:00Z",
                "2026-10-24T23:00:00Z",
            ),
            (
                "America/New_York",
                "2026-03-08T07:30:00Z",
                Grain::HOUR,
                "2026-03-08T07:00:00Z",
                "2026-03-08T08:00:00Z",
            ),
            (
                "America/New_York",
                "2026-03-08T12:00:00Z",
                Grain::DAY,
                "2026-03-08T05:00:00Z",
                "2026-03-09T04:00:00Z",
            ),
            (
                "America/New_York",
                "2026-11-01T05:30:00Z",
                Grain::HOUR,
                "2026-11-01T05:00:00Z",
                "2026-11-01T06:00:00Z",
            ),
            (
                "America/New_York",
                "2026-11-01T06:30:00Z",
                Grain::HOUR,
                "2026-11-01T06:00:00Z",
                "2026-11-01T07:00:00Z",
            ),
            (
                "America/New_York",
                "2026-11-01T12:00:00Z",
                Grain::DAY,
                "2026-11-01T04:00:00Z",
                "2026-11-02T05:00:00Z",
            ),
            // 15:30 IST: its hour is 15:00–16:00 IST, 09:30Z–10:30Z.
            (
                "Asia/Kolkata",
                "2026-11-01T10:00:00Z",
                Grain::HOUR,
                "2026-11-01T09:30:00Z",
                "2026-11-01T10:30:00Z",
            ),
            (
                "Asia/Kolkata",
                "2026-11-01T09:30:00Z",
                Grain::HOUR,
                "2026-11-01T09:30:00Z",
                "2026-11-01T09:30:00Z",
            ),
            (
                "Asia/Kolkata",
                "2026-11-01T10:00:00Z",
                Grain::QUARTER_HOUR,
                "2026-11-01T10:00:00Z",
                "2026-11-01T10:00:00Z",
            ),
            (
                "Asia/Kolkata",
                "2026-11-01T20:00:00Z",
                Grain::DAY,
                "2026-11-01T18:30:00Z",
                "2026-11-02T18:30:00Z",
            ),
            (
                "UTC",
                "2026-11-01T18:37:10Z",
                Grain::DAY,
                "2026-11-01T00:00:00Z",
                "2026-11-02T00:00:00Z",
            ),
            // Longer than a day: UTC blocks.
            (
                "Asia/Kolkata",
                "2026-11-01T18:37:10Z",
                Grain::WEEK,
                "2026-10-29T00:00:00Z",
                "2026-11-05T00:00:00Z",
            ),
        ];
        for (zone, t, grain, floor, ceil) in table {
            let z = tz(zone);
            assert_eq!(
                grain.floor_in(utc(t), z),
                utc(floor),
                "floor {zone} {t} {grain:?}"
            );
            assert_eq!(
                grain.ceil_in(utc(t), z),
                utc(ceil),
                "ceil {zone} {t} {grain:?}"
            );
        }
    }

    fn seg(grain: Grain, from: &str, to: &str) -> Segment {
        Segment {
            grain,
            from: utc(from),
            to: utc(to),
        }
    }

    #[test]
    fn covers_worked_by_hand() {
        let day_grains = &HANDOFF_GRAINS[..3];
        let (q, h, d) = (Grain::QUARTER_HOUR, Grain::HOUR, Grain::DAY);
        type Case<'a> = (
            &'a str,
            &'a [Grain],
            &'a str,
            &'a str,
            Vec<Segment>,
            Vec<(&'a str, &'a str)>,
        );
        let table: Vec<Case> = vec![
            (
                "empty",
                &CALL_GRAINS,
                "2026-11-01T10:00:00Z",
                "2026-11-01T10:00:00Z",
                vec![],
                vec![],
            ),
            (
                "reversed",
                &CALL_GRAINS,
                "2026-11-01T11:00:00Z",
                "2026-11-01T10:00:00Z",
                vec![],
                vec![],
            ),
            (
                "inside one quarter hour",
                &CALL_GRAINS,
                "2026-11-01T10:01:00Z",
                "2026-11-01T10:14:00Z",
                vec![],
                vec![("2026-11-01T10:01:00Z", "2026-11-01T10:14:00Z")],
            ),
            (
                "across a boundary, no whole block",
                &CALL_GRAINS,
                "2026-11-01T10:10:00Z",
                "2026-11-01T10:20:00Z",
                vec![],
                vec![("2026-11-01T10:10:00Z", "2026-11-01T10:20:00Z")],
            ),
            (
                "ragged ends",
                &CALL_GRAINS,
                "2026-11-01T18:37:10Z",
                "2026-11-04T05:20:00Z",
                vec![
                    seg(q, "2026-11-01T18:45:00Z", "2026-11-01T19:00:00Z"),
                    seg(h, "2026-11-01T19:00:00Z", "2026-11-02T00:00:00Z"),
                    seg(d, "2026-11-02T00:00:00Z", "2026-11-04T00:00:00Z"),
                    seg(h, "2026-11-04T00:00:00Z", "2026-11-04T05:00:00Z"),
                    seg(q, "2026-11-04T05:00:00Z", "2026-11-04T05:15:00Z"),
                ],
                vec![
                    ("2026-11-01T18:37:10Z", "2026-11-01T18:45:00Z"),
                    ("2026-11-04T05:15:00Z", "2026-11-04T05:20:00Z"),
                ],
            ),
            (
                "ending at midnight",
                &CALL_GRAINS,
                "2026-11-01T18:37:10Z",
                "2026-11-03T00:00:00Z",
                vec![
                    seg(q, "2026-11-01T18:45:00Z", "2026-11-01T19:00:00Z"),
                    seg(h, "2026-11-01T19:00:00Z", "2026-11-02T00:00:00Z"),
                    seg(d, "2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"),
                ],
                vec![("2026-11-01T18:37:10Z", "2026-11-01T18:45:00Z")],
            ),
            (
                "a fraction of a second",
                &CALL_GRAINS,
                "2026-11-01T10:00:00.5Z",
                "2026-11-01T10:30:00Z",
                vec![seg(q, "2026-11-01T10:15:00Z", "2026-11-01T10:30:00Z")],
                vec![("2026-11-01T10:00:00.5Z", "2026-11-01T10:15:00Z")],
            ),
            (
                "midnight to midnight, one week block (weeks start on Thursdays)",
                &HANDOFF_GRAINS,
                "2026-10-26T00:00:00Z",
                "2026-11-09T00:00:00Z",
                vec![
                    seg(d, "2026-10-26T00:00:00Z", "2026-10-29T00:00:00Z"),
                    seg(Grain::WEEK, "2026-10-29T00:00:00Z", "2026-11-05T00:00:00Z"),
                    seg(d, "2026-11-05T00:00:00Z", "2026-11-09T00:00:00Z"),
                ],
                vec![],
            ),
            (
                "a Kolkata day (2026-11-02 IST)",
                day_grains,
                "2026-11-01T18:30:00Z",
                "2026-11-02T18:30:00Z",
                vec![
                    seg(q, "2026-11-01T18:30:00Z", "2026-11-01T19:00:00Z"),
                    seg(h, "2026-11-01T19:00:00Z", "2026-11-02T18:00:00Z"),
                    seg(q, "2026-11-02T18:00:00Z", "2026-11-02T18:30:00Z"),
                ],
                vec![],
            ),
            (
                "London's 23-hour day (2026-03-29)",
                day_grains,
                "2026-03-29T00:00:00Z",
                "2026-03-29T23:00:00Z",
                vec![seg(h, "2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z")],
                vec![],
            ),
            (
                "New York's 25-hour day (2026-11-01)",
                day_grains,
                "2026-11-01T04:00:00Z",
                "2026-11-02T05:00:00Z",
                vec![seg(h, "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z")],
                vec![],
            ),
            (
                "a reseller's two days: one 2-day block",
                &RESELLER_GRAINS,
                "2026-11-01T00:00:00Z",
                "2026-11-03T00:00:00Z",
                vec![seg(
                    Grain::minutes(2880),
                    "2026-11-01T00:00:00Z",
                    "2026-11-03T00:00:00Z",
                )],
                vec![],
            ),
            (
                "a reseller's evening",
                &RESELLER_GRAINS,
                "2026-11-01T15:10:00Z",
                "2026-11-02T00:00:00Z",
                vec![
                    seg(q, "2026-11-01T15:15:00Z", "2026-11-01T15:30:00Z"),
                    seg(
                        Grain::minutes(30),
                        "2026-11-01T15:30:00Z",
                        "2026-11-01T16:00:00Z",
                    ),
                    seg(
                        Grain::minutes(480),
                        "2026-11-01T16:00:00Z",
                        "2026-11-02T00:00:00Z",
                    ),
                ],
                vec![("2026-11-01T15:10:00Z", "2026-11-01T15:15:00Z")],
            ),
        ];
        for (name, grains, from, to, segments, raw) in table {
            let c = cover(utc(from), utc(to), grains);
            assert_eq!(c.segments, segments, "{name}");
            let raw: Vec<_> = raw.iter().map(|(f, t)| (utc(f), utc(t))).collect();
            assert_eq!(c.raw, raw, "{name}");
        }
        assert_eq!(
            cover(
                utc("2026-11-01T10:00:00Z"),
                utc("2026-11-01T11:00:00Z"),
                &[]
            ),
            Cover::default()
        );
    }

    #[test]
    fn local_days_are_unions_of_blocks() {
        // Every local day of a year in these zones, DST days included, is covered exactly by
        // blocks of at most a day, with nothing read raw.
        for zone in [
            "Europe/London",
            "America/New_York",
            "Asia/Kolkata",
            "Asia/Kathmandu",
        ] {
            let z = tz(zone);
            let mut day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
            while day.year_ce().1 == 2026 {
                let from = day_start(z, day);
                let to = Grain::DAY.ceil_in(from + Duration::hours(12), z);
                assert_eq!(Grain::DAY.floor_in(to - Duration::seconds(1), z), from);
                let c = cover(from, to, &HANDOFF_GRAINS[..3]);
                assert!(c.raw.is_empty(), "{zone} {day}");
                assert_exact(&c, from, to);
                day = day.succ_opt().unwrap();
            }
        }
    }

    use chrono::Datelike;

    /// Every instant of `[from, to)` is covered once, by aligned blocks in time order and raw
    /// intervals under 15 minutes.
    fn assert_exact(c: &Cover, from: DateTime<Utc>, to: DateTime<Utc>) {
        let mut parts: Vec<(DateTime<Utc>, DateTime<Utc>)> = c.raw.clone();
        for w in c.segments.windows(2) {
            assert!(w[0].to <= w[1].from, "{:?}", c.segments);
        }
        for s in &c.segments {
            assert_eq!(s.grain.floor(s.from), s.from, "{s:?}");
            assert_eq!(s.grain.floor(s.to), s.to, "{s:?}");
            assert!(s.from < s.to);
            parts.push((s.from, s.to));
        }
        parts.sort();
        assert_eq!(parts.first().map(|p| p.0), Some(from));
        assert_eq!(parts.last().map(|p| p.1), Some(to));
        for w in parts.windows(2) {
            assert_eq!(w[0].1, w[1].0, "{from} .. {to}: {parts:?}");
        }
        if !c.segments.is_empty() {
            for (f, t) in &c.raw {
                assert!(*t - *f < Duration::minutes(15));
            }
        }
    }

    /// Random ranges are partitioned exactly, with few buckets.
    #[test]
    fn every_ladder_partitions_any_range_with_few_buckets() {
        let base = utc("2026-01-01T00:00:00Z");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let start = base + Duration::seconds((x % 40_000_000) as i64);
            let end = start + Duration::seconds(((x >> 24) % 12_000_000) as i64 + 1);
            for grains in [&HANDOFF_GRAINS[..], &CALL_GRAINS[..], &RESELLER_GRAINS[..]] {
                let c = cover(start, end, grains);
                assert_exact(&c, start, end);
                let buckets: usize = c.segments.iter().map(|s| s.buckets().count()).sum();
                if grains.len() == RESELLER_GRAINS.len() && end - start <= Duration::days(92) {
                    assert!(buckets <= 30, "{buckets} buckets for {start} .. {end}");
                }
            }
        }
        // A 90-day range of the analytics ladder: a few weeks, days, hours and quarters.
        let c = cover(
            utc("2026-08-03T18:30:00Z"),
            utc("2026-11-01T18:30:00Z"),
            &HANDOFF_GRAINS,
        );
        assert!(c.raw.is_empty());
        assert!(c.segments.len() <= 7, "{:?}", c.segments);
    }

    #[test]
    fn ladders_nest() {
        for ladder in [&HANDOFF_GRAINS[..], &CALL_GRAINS[..], &RESELLER_GRAINS[..]] {
            assert_eq!(ladder[0], Grain::QUARTER_HOUR);
            for w in ladder.windows(2) {
                assert_eq!(w[1].seconds() % w[0].seconds(), 0, "{w:?}");
            }
        }
        assert_eq!(Grain::from_seconds(900), Some(Grain::QUARTER_HOUR));
        assert_eq!(Grain::from_seconds(0), None);
        assert_eq!(RESELLER_GRAINS[13].seconds(), 128 * 86_400);
    }

    #[test]
    fn zones_whole_hours_from_utc() {
        let (s, e) = (utc("2026-01-01T00:00:00Z"), utc("2026-12-31T00:00:00Z"));
        assert!(whole_hours(chrono_tz::UTC, s, e));
        assert!(whole_hours(chrono_tz::America::New_York, s, e));
        assert!(whole_hours(chrono_tz::Europe::London, s, e));
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
        // An empty range has no hour to disprove it.
        assert!(whole_hours(chrono_tz::Asia::Kolkata, s, s));
    }

    #[test]
    fn slots_of_a_utc_day_in_a_zone() {
        assert_eq!(slot_of(utc("2026-11-01T23:59:59Z")), 95);
        assert_eq!(slot_of(utc("2026-11-01T00:14:59Z")), 0);
        assert_eq!(slot_of(utc("2026-11-01T10:15:00Z")), 41);
        let local = |zone: &str, day: &str, i: usize, per_day: usize| {
            let d = DayInZone::new(day.parse().unwrap(), tz(zone)).unwrap();
            d.slot_start(i, per_day).1.to_string()
        };
        // (zone, UTC day, slot, slots per day, local wall-clock time of the slot's start).
        let table = [
            ("Asia/Kolkata", "2026-11-01", 0, 96, "2026-11-01 05:30:00"),
            ("Asia/Kolkata", "2026-11-01", 95, 96, "2026-11-02 05:15:00"),
            ("UTC", "2026-11-01", 13, 24, "2026-11-01 13:00:00"),
            // New York falls back at 06:00Z: 05:00Z is 01:00 EDT, 06:00Z is 01:00 EST.
            (
                "America/New_York",
                "2026-11-01",
                5,
                24,
                "2026-11-01 01:00:00",
            ),
            (
                "America/New_York",
                "2026-11-01",
                6,
                24,
                "2026-11-01 01:00:00",
            ),
            (
                "America/New_York",
                "2026-11-01",
                7,
                24,
                "2026-11-01 02:00:00",
            ),
            // London springs forward at 01:00Z: 00:45Z is 00:45 GMT, 01:00Z is 02:00 BST.
            ("Europe/London", "2026-03-29", 3, 96, "2026-03-29 00:45:00"),
            ("Europe/London", "2026-03-29", 4, 96, "2026-03-29 02:00:00"),
        ];
        for (zone, day, i, per_day, expected) in table {
            assert_eq!(
                local(zone, day, i, per_day),
                expected,
                "{zone} {day} {i}/{per_day}"
            );
        }
    }
}
