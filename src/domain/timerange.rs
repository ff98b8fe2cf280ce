//! Date ranges and time zones for the read endpoints.
//!
//! Policy:
//! - Bounds are ISO 8601: a date-time with an offset (`2026-11-01T09:30:00Z`,
//!   `2026-11-01T09:30:00+05:30`) is that instant; a date-time without one
//!   (`2026-11-01T09:30:00`) is read in the request's time zone; a date alone names the whole
//!   local day: as a start, its first instant; as an end, the first instant of the next day, so
//!   that `start_date=2026-11-01&end_date=2026-11-30` covers November 1 to 30 inclusive.
//! - Every bound, once converted to UTC, lies within years 0001–9999 (see
//!   [`input`](crate::domain::input)), and so do the range's ends in the request's zone, as the
//!   answers write them there; as an end, a date names the next day's first instant, so
//!   `9999-12-31` is refused as an end date.
//! - The range is `[start, end)`: inclusive of start, exclusive of end. Start after end, or more
//!   than 366 days, is refused with a message naming the parameter.
//! - Day and hour buckets are local to one IANA zone; a local day's bounds come from the zone's
//!   rules for that date, so days of 23 or 25 hours (DST) and half-hour offsets come out exact.

use chrono::{
    DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use crate::domain::input;

/// Longest range a request may cover.
pub const MAX_RANGE_DAYS: i64 = 366;

/// A refused parameter: its name and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ParamError {
    /// The query parameter, as the client named it.
    pub param: String,
    /// What is wrong.
    pub message: String,
}

impl ParamError {
    /// A problem with `param`.
    pub fn new(param: &str, message: impl Into<String>) -> ParamError {
        ParamError {
            param: param.to_owned(),
            message: message.into(),
        }
    }
}

/// Parses an IANA zone name (`UTC`, `Europe/London`, `Asia/Kolkata`).
pub fn parse_timezone(param: &str, name: &str) -> Result<Tz, ParamError> {
    name.parse::<Tz>()
        .map_err(|_| ParamError::new(param, format!("unknown time zone `{name}`: use an IANA name such as UTC, Europe/London or Asia/Kolkata")))
}

/// Which side of a range a bound is (a date alone means the day's first instant as a start and
/// the next day's first instant as an end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The inclusive start.
    Start,
    /// The exclusive end.
    End,
}

/// Parses one bound in zone `tz`; refuses an instant outside years 0001–9999 in UTC.
pub fn parse_bound(
    param: &str,
    text: &str,
    tz: Tz,
    bound: Bound,
) -> Result<DateTime<Utc>, ParamError> {
    let t = parse_instant(param, text, tz, bound)?;
    if !input::year_in_range(t) {
        return Err(ParamError::new(
            param,
            format!("`{}` {}", text.trim(), input::YEAR_RANGE),
        ));
    }
    Ok(t)
}

fn parse_instant(
    param: &str,
    text: &str,
    tz: Tz,
    bound: Bound,
) -> Result<DateTime<Utc>, ParamError> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    // ISO 8601 also allows a basic offset (+0530) and a space instead of `T`.
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(local_instant(tz, naive));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = match bound {
            Bound::Start => Some(date),
            Bound::End => date.succ_opt(),
        };
        if let Some(day) = day {
            return Ok(day_start(tz, day));
        }
    }
    Err(ParamError::new(
        param,
        format!(
            "`{text}` is not an ISO 8601 date-time or date (e.g. 2026-11-01T09:30:00Z or 2026-11-01)"
        ),
    ))
}

/// The instant a local wall-clock time names; in a DST gap, the first instant after it; in an
/// overlap, the earlier one.
pub fn local_instant(tz: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => {
            // Skip forward minute by minute out of the gap (gaps last at most a few hours).
            let mut probe = naive;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) =
                    tz.from_local_datetime(&probe)
                {
                    let whole = t.with_timezone(&Utc);
                    return whole - Duration::seconds(i64::from(whole.second()));
                }
            }
            Utc.from_utc_datetime(&naive)
        }
    }
}

/// The first instant of a local date.
pub fn day_start(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    local_instant(tz, date.and_time(NaiveTime::MIN))
}

/// A resolved `[start, end)` range in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive start.
    pub start: DateTime<Utc>,
    /// Exclusive end.
    pub end: DateTime<Utc>,
    /// The zone days and hours are counted in.
    pub tz: Tz,
}

/// The names of a request's two bound parameters (`start_date`/`end_date`, `startDate`/`endDate`).
#[derive(Debug, Clone, Copy)]
pub struct BoundNames<'a> {
    /// The start parameter.
    pub start: &'a str,
    /// The end parameter.
    pub end: &'a str,
}

impl TimeRange {
    /// Resolves optional bounds: a missing end is `now`, a missing start `default_days` before
    /// the end. Refuses start after end and ranges over [`MAX_RANGE_DAYS`].
    pub fn resolve(
        start: Option<&str>,
        end: Option<&str>,
        tz: Tz,
        now: DateTime<Utc>,
        default_days: i64,
        names: BoundNames<'_>,
    ) -> Result<TimeRange, ParamError> {
        let end = match end {
            Some(e) => parse_bound(names.end, e, tz, Bound::End)?,
            None => now,
        };
        let start = match start {
            Some(s) => parse_bound(names.start, s, tz, Bound::Start)?,
            None => {
                let start = end - Duration::days(default_days);
                if !input::year_in_range(start) {
                    return Err(ParamError::new(
                        names.end,
                        format!(
                            "the default start, {default_days} days earlier, {}; give {}",
                            input::YEAR_RANGE.replacen("must lie", "would not lie", 1),
                            names.start
                        ),
                    ));
                }
                start
            }
        };
        // Answers write the range's ends and days in `tz`: they must have four-digit years there
        // too (`0001-01-01T00:00:00Z` is still year 0000 in New York).
        for (param, t) in [(names.start, start), (names.end, end)] {
            if !input::in_range_in(t, &tz) {
                return Err(ParamError::new(
                    param,
                    format!(
                        "must lie within years 0001 to 9999 in time zone {} as well as in UTC",
                        tz.name()
                    ),
                ));
            }
        }
        if start > end {
            return Err(ParamError::new(
                names.start,
                format!(
                    "must not be after {} ({} > {})",
                    names.end,
                    start.to_rfc3339(),
                    end.to_rfc3339()
                ),
            ));
        }
        if end - start > Duration::days(MAX_RANGE_DAYS) {
            return Err(ParamError::new(
                names.end,
                format!("the range may cover at most {MAX_RANGE_DAYS} days"),
            ));
        }
        Ok(TimeRange { start, end, tz })
    }

    /// Every local calendar day that intersects the range, in order (none for an empty range).
    pub fn local_days(&self) -> Vec<NaiveDate> {
        if self.start >= self.end {
            return Vec::new();
        }
        let first = self.start.with_timezone(&self.tz).date_naive();
        let last = (self.end - Duration::nanoseconds(1))
            .with_timezone(&self.tz)
            .date_naive();
        first.iter_days().take_while(|d| *d <= last).collect()
    }

    /// The local date of an instant.
    pub fn local_day(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    /// The local hour (0–23) of an instant.
    pub fn local_hour(&self, t: DateTime<Utc>) -> u32 {
        t.with_timezone(&self.tz).hour()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: BoundNames<'static> = BoundNames {
        start: "start_date",
        end: "end_date",
    };

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn bounds_in_every_iso_form() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let p = |s| parse_bound("start_date", s, tz, Bound::Start).unwrap();
        assert_eq!(p("2026-11-01T09:30:00Z"), utc("2026-11-01T09:30:00Z"));
        assert_eq!(p("2026-11-01T09:30:00+05:30"), utc("2026-11-01T04:00:00Z"));
        assert_eq!(p("2026-11-01T09:30:00+0530"), utc("2026-11-01T04:00:00Z"));
        assert_eq!(p("2026-11-01T09:30:00"), utc("2026-11-01T04:00:00Z"));
        assert_eq!(p("2026-11-01"), utc("2026-10-31T18:30:00Z"));
        let end = parse_bound("end_date", "2026-11-01", tz, Bound::End).unwrap();
        assert_eq!(end, utc("2026-11-01T18:30:00Z"));
        let err = parse_bound("end_date", "yesterday", tz, Bound::End).unwrap_err();
        assert_eq!(err.param, "end_date");
        assert!(
            err.to_string()
                .starts_with("end_date: `yesterday` is not an ISO 8601")
        );
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let r = TimeRange::resolve(
            Some("2026-03-08"),
            Some("2026-03-08"),
            tz,
            Utc::now(),
            30,
            NAMES,
        )
        .unwrap();
        assert_eq!(r.end - r.start, Duration::hours(23));
        assert_eq!(r.start, utc("2026-03-08T05:00:00Z"));
        let r = TimeRange::resolve(
            Some("2026-11-01"),
            Some("2026-11-01"),
            tz,
            Utc::now(),
            30,
            NAMES,
        )
        .unwrap();
        assert_eq!(r.end - r.start, Duration::hours(25));
        assert_eq!(r.local_days().len(), 1);
        // 02:30 on the spring-forward day does not exist: it means 03:00 EDT.
        let gap = parse_bound("start_date", "2026-03-08T02:30:00", tz, Bound::Start).unwrap();
        assert_eq!(gap, utc("2026-03-08T07:00:00Z"));
    }

    #[test]
    fn local_days_intersecting() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let r = TimeRange {
            start: utc("2026-11-01T20:00:00Z"),
            end: utc("2026-11-03T18:30:00Z"),
            tz,
        };
        let days: Vec<String> = r.local_days().iter().map(|d| d.to_string()).collect();
        assert_eq!(days, ["2026-11-02", "2026-11-03"]);
        let r = TimeRange {
            end: utc("2026-11-03T18:30:01Z"),
            ..r
        };
        assert_eq!(r.local_days().len(), 3);
        let empty = TimeRange { end: r.start, ..r };
        assert!(empty.local_days().is_empty());
    }

    #[test]
    fn bounds_must_lie_within_years_0001_to_9999_in_utc() {
        let tz = Tz::UTC;
        let refused = |param: &str, text: &str, bound| {
            let e = parse_bound(param, text, tz, bound).unwrap_err();
            assert_eq!(e.param, param, "{text}");
            assert!(e.message.contains("0001"), "{text}: {}", e.message);
        };
        refused("startDate", "-5000-01-01", Bound::Start);
        refused("start_date", "+10000-01-01", Bound::Start);
        refused("end_date", "0000-12-31T23:59:59Z", Bound::End);
        refused("end_date", "9999-12-31T23:59:59-12:00", Bound::End);
        // As an end, a date is the first instant of the next day: 10000-01-01.
        refused("end_date", "9999-12-31", Bound::End);
        assert_eq!(
            parse_bound("start_date", "0001-01-01", tz, Bound::Start).unwrap(),
            utc("0001-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_bound("end_date", "9999-12-31T23:59:59Z", tz, Bound::End).unwrap(),
            utc("9999-12-31T23:59:59Z")
        );
        // A local time is converted first: 0001-01-01T00:00 in Paris is still year 0000 in UTC.
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let e = parse_bound("start_date", "0001-01-01T00:00:00", paris, Bound::Start).unwrap_err();
        assert_eq!(e.param, "start_date");

        // The ends must have four-digit years in the request's zone too, and so must a default
        // start.
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let e = TimeRange::resolve(
            Some("9999-12-30T00:00:00Z"),
            Some("9999-12-31T23:00:00Z"),
            kolkata,
            Utc::now(),
            30,
            NAMES,
        )
        .unwrap_err();
        assert_eq!(e.param, "end_date");
        let e = TimeRange::resolve(
            None,
            Some("0001-01-10T00:00:00Z"),
            tz,
            Utc::now(),
            30,
            NAMES,
        )
        .unwrap_err();
        assert_eq!(e.param, "end_date");
        let r = TimeRange::resolve(
            Some("0001-01-01"),
            Some("0001-12-31"),
            tz,
            Utc::now(),
            30,
            NAMES,
        )
        .unwrap();
        assert_eq!(r.start, utc("0001-01-01T00:00:00Z"));
        assert_eq!(r.local_days().len(), 365);
    }

    #[test]
    fn refused_ranges_name_the_parameter() {
        let tz = Tz::UTC;
        let e = TimeRange::resolve(
            Some("2026-11-02"),
            Some("2026-11-01T00:00:00Z"),
            tz,
            Utc::now(),
            30,
            NAMES,
        )
        .unwrap_err();
        assert_eq!(e.param, "start_date");
        let e = TimeRange::resolve(
            Some("2025-01-01"),
            Some("2026-11-01"),
            tz,
            Utc::now(),
            30,
            NAMES,
        )
        .unwrap_err();
        assert_eq!(e.param, "end_date");
        assert!(
            TimeRange::resolve(
                Some("2025-11-01"),
                Some("2026-10-31"),
                tz,
                Utc::now(),
                30,
                NAMES
            )
            .is_ok()
        );
        assert!(parse_timezone("timezone", "Mars/Base").is_err());
        let now = utc("2026-11-21T12:00:00Z");
        let r = TimeRange::resolve(None, None, tz, now, 30, NAMES).unwrap();
        assert_eq!((r.start, r.end), (utc("2026-10-22T12:00:00Z"), now));
    }
}
