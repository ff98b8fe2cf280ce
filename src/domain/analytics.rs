//! OpenCX handoff analytics: which rollup buckets answer a range, and the report built from the
//! counts read there (the bucket scheme is explained in docs/ARCHITECTURE.md, "Time buckets").
//!
//! Policy:
//! - Rollups count in the buckets of [`HANDOFF_GRAINS`] (15 minutes, hour, day, 7 days; the
//!   algebra is [`crate::domain::buckets`]). A range is read as its cover; a local day likewise,
//!   by blocks of at most a day inside it: 15 minutes divides every offset in use, so half-hour
//!   zones and DST days come out exact.
//! - Definitions (also in the OpenAPI text): a handoff is one `handoff_id`, counted once, at its
//!   first initiation; `total_sessions` counts sessions started in the range; `reasons` and
//!   `sentiments` percentages divide by `total_handoffs`; a reason combination is the sorted set
//!   of reasons over all of a session's handoffs, counted for the sessions whose first handoff
//!   falls in the range, and its percentage divides by the number of those sessions.
//! - Percentages are 0–100 with two decimals (0 when the divisor is 0). Lists are sorted by count,
//!   descending, then by key (an unknown sentiment after the known ones).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Offset, SecondsFormat, Utc};

use super::buckets::{Cover, Grain, HANDOFF_GRAINS, cover, local_day};
use super::events::{Reason, ReferenceType};
use super::timerange::TimeRange;

/// The grains a local day's cover may use: up to a day (a week block never lies inside one).
fn day_grains() -> &'static [Grain] {
    &HANDOFF_GRAINS[..3]
}

/// Everything one request reads: the range's cover, and each local day's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The range's start.
    pub start: DateTime<Utc>,
    /// The range's end (exclusive).
    pub end: DateTime<Utc>,
    /// The local days, in order (`trends`).
    pub days: Vec<NaiveDate>,
    /// The whole range (breakdowns and sessions).
    pub range: Cover,
    /// Each local day's part of the range, with the day's index.
    pub days_cover: Vec<(usize, Cover)>,
    /// Whether every local day's cover reads from the projections only at the range's own
    /// edges. True for every zone today (offsets are multiples of 15 minutes); false only for
    /// dates under a historical local mean time (e.g. Africa/Monrovia before 1972), where the
    /// days are counted from the projections instead.
    pub days_aligned: bool,
}

impl Plan {
    /// The plan of a range.
    pub fn new(range: &TimeRange) -> Plan {
        let days = range.local_days();
        let days_cover: Vec<(usize, Cover)> = days
            .iter()
            .enumerate()
            .map(|(i, day)| {
                let (from, to) = local_day(range.tz, *day);
                (
                    i,
                    cover(from.max(range.start), to.min(range.end), day_grains()),
                )
            })
            .collect();
        let whole = cover(range.start, range.end, &HANDOFF_GRAINS);
        let days_aligned = days_cover
            .iter()
            .all(|(_, c)| c.raw.iter().all(|piece| whole.raw.contains(piece)));
        Plan {
            start: range.start,
            end: range.end,
            range: whole,
            days,
            days_cover,
            days_aligned,
        }
    }
}

/// The counts read for one request, before sorting and percentages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Handoffs per local day (by index into [`Plan::days`]).
    pub handoffs_by_day: BTreeMap<usize, i64>,
    /// Sessions started in the range.
    pub sessions: i64,
    /// Handoffs per reason.
    pub reasons: BTreeMap<Reason, i64>,
    /// Handoffs per sentiment (`None`: unknown).
    pub sentiments: BTreeMap<Option<String>, i64>,
    /// Sessions per reason combination (sorted, distinct reasons).
    pub combinations: BTreeMap<Vec<Reason>, i64>,
    /// Handoffs per reference.
    pub references: BTreeMap<(ReferenceType, String), i64>,
}

/// A reason's share.
#[derive(Debug, Clone, PartialEq)]
pub struct ReasonShare {
    /// The reason.
    pub reason: Reason,
    /// Handoffs carrying it.
    pub count: i64,
    /// `count / total_handoffs`, in percent.
    pub percentage: f64,
}

/// A reason combination's share.
#[derive(Debug, Clone, PartialEq)]
pub struct CombinationShare {
    /// The sorted reasons.
    pub reasons: Vec<Reason>,
    /// Sessions with exactly this combination.
    pub session_count: i64,
    /// `session_count / sessions with a handoff`, in percent.
    pub percentage: f64,
}

/// A sentiment's share.
#[derive(Debug, Clone, PartialEq)]
pub struct SentimentShare {
    /// The sentiment (`None`: unknown).
    pub sentiment: Option<String>,
    /// Handoffs with it.
    pub count: i64,
    /// `count / total_handoffs`, in percent.
    pub percentage: f64,
}

/// A reference's count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceCount {
    /// Its type.
    pub kind: ReferenceType,
    /// Its id.
    pub id: String,
    /// Handoffs referencing it.
    pub count: i64,
}

/// The report, in OpenCX's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// One sentence built from the figures.
    pub summary: String,
    /// Handoffs first initiated in the range.
    pub total_handoffs: i64,
    /// Sessions started in the range.
    pub total_sessions: i64,
    /// The range's start, RFC 3339 in the request's zone.
    pub start_date: String,
    /// The range's end (exclusive), RFC 3339 in the request's zone.
    pub end_date: String,
    /// Reasons.
    pub reasons: Vec<ReasonShare>,
    /// Reason combinations.
    pub reason_combinations: Vec<CombinationShare>,
    /// Sentiments.
    pub sentiments: Vec<SentimentShare>,
    /// `(local date, handoffs)` for every local day of the range.
    pub trends: Vec<(String, i64)>,
    /// Knowledge references.
    pub knowledge_references: Vec<ReferenceCount>,
    /// Tool references.
    pub tool_references: Vec<ReferenceCount>,
    /// Instruction and AI profile references.
    pub instruction_references: Vec<ReferenceCount>,
    /// Prohibited topic references.
    pub prohibited_topic_references: Vec<ReferenceCount>,
}

/// `part / whole` in percent, two decimals; 0 when `whole` is 0.
pub fn percentage(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

/// Builds the report of `counts` read for `range` (narrowed to `instruction` when given).
pub fn report(
    range: &TimeRange,
    plan: &Plan,
    instruction: Option<&str>,
    counts: &Counts,
) -> Report {
    let trends: Vec<(String, i64)> = plan
        .days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            (
                d.format("%Y-%m-%d").to_string(),
                counts.handoffs_by_day.get(&i).copied().unwrap_or(0),
            )
        })
        .collect();
    let total: i64 = trends.iter().map(|(_, n)| n).sum();

    let mut reasons: Vec<ReasonShare> = counts
        .reasons
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| ReasonShare {
            reason: *r,
            count: *n,
            percentage: percentage(*n, total),
        })
        .collect();
    reasons.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.reason.as_str().cmp(b.reason.as_str()))
    });

    let sessions_with_handoff: i64 = counts.combinations.values().filter(|n| **n > 0).sum();
    let mut reason_combinations: Vec<CombinationShare> = counts
        .combinations
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| CombinationShare {
            reasons: r.clone(),
            session_count: *n,
            percentage: percentage(*n, sessions_with_handoff),
        })
        .collect();
    reason_combinations.sort_by(|a, b| {
        b.session_count
            .cmp(&a.session_count)
            .then_with(|| combination_key(&a.reasons).cmp(&combination_key(&b.reasons)))
    });

    let mut sentiments: Vec<SentimentShare> = counts
        .sentiments
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| SentimentShare {
            sentiment: s.clone(),
            count: *n,
            percentage: percentage(*n, total),
        })
        .collect();
    // Unknown (None) after every known sentiment with the same count.
    sentiments.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.sentiment.is_none().cmp(&b.sentiment.is_none()))
            .then(a.sentiment.cmp(&b.sentiment))
    });

    let refs = |kinds: &[ReferenceType]| -> Vec<ReferenceCount> {
        let mut list: Vec<ReferenceCount> = counts
            .references
            .iter()
            .filter(|((k, _), n)| kinds.contains(k) && **n > 0)
            .map(|((k, id), n)| ReferenceCount {
                kind: *k,
                id: id.clone(),
                count: *n,
            })
            .collect();
        list.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.kind.as_str().cmp(b.kind.as_str()))
                .then(a.id.cmp(&b.id))
        });
        list
    };

    let start_date = local_rfc3339(range, range.start);
    let end_date = local_rfc3339(range, range.end);
    let summary = summary(
        total,
        counts.sessions,
        &start_date,
        &end_date,
        instruction,
        reasons.first(),
    );
    Report {
        summary,
        total_handoffs: total,
        total_sessions: counts.sessions,
        start_date,
        end_date,
        reasons,
        reason_combinations,
        sentiments,
        trends,
        knowledge_references: refs(&[ReferenceType::Knowledge]),
        tool_references: refs(&[ReferenceType::Tool]),
        instruction_references: refs(&[ReferenceType::Instruction, ReferenceType::AiProfile]),
        prohibited_topic_references: refs(&[ReferenceType::ProhibitedTopic]),
    }
}

/// The key a reason combination is stored and sorted under: the distinct reasons' names, sorted
/// bytewise, joined by `,` (`ai_implied_handoff,prohibited_topic`). The one definition: ingest
/// keys the rollups with it, reads sort by it.
pub fn combination_key<'a>(reasons: impl IntoIterator<Item = &'a Reason>) -> String {
    let mut names: Vec<&str> = reasons.into_iter().map(|r| r.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.join(",")
}

/// Parses a stored combination key (`None` if a name is unknown).
pub fn parse_combination(key: &str) -> Option<Vec<Reason>> {
    key.split(',').map(Reason::parse).collect()
}

/// RFC 3339 with the zone's offset; in UTC when the offset has seconds (historical local mean
/// times), which RFC 3339 cannot write.
pub fn local_rfc3339(range: &TimeRange, t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&range.tz);
    if local.offset().fix().local_minus_utc() % 60 != 0 {
        return t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    }
    local.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn summary(
    handoffs: i64,
    sessions: i64,
    start: &str,
    end: &str,
    instruction: Option<&str>,
    top: Option<&ReasonShare>,
) -> String {
    let what = match instruction {
        Some(id) => format!(
            "{} referencing instruction {id}",
            plural(handoffs, "handoff", "handoffs")
        ),
        None => plural(handoffs, "handoff", "handoffs"),
    };
    let mut text = format!(
        "{what} and {} started from {start} to {end}",
        plural(sessions, "session", "sessions")
    );
    if instruction.is_none() && sessions > 0 {
        text.push_str(&format!(
            " ({:.2} handoffs per session)",
            handoffs as f64 / sessions as f64
        ));
    }
    match top {
        Some(top) => text.push_str(&format!(
            "; most common reason: {} ({}% of handoffs).",
            top.reason.as_str(),
            format_pct(top.percentage)
        )),
        None => text.push('.'),
    }
    text
}

fn format_pct(p: f64) -> String {
    format!("{p:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::timerange::day_start;
    use chrono::Duration;
    use chrono_tz::Tz;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Every instant of the range is covered once, by aligned blocks or raw intervals.
    fn assert_exact(c: &Cover, from: DateTime<Utc>, to: DateTime<Utc>) {
        let mut parts: Vec<(DateTime<Utc>, DateTime<Utc>)> = c.raw.clone();
        for s in &c.segments {
            assert_eq!(s.grain.floor(s.from), s.from);
            assert_eq!(s.grain.floor(s.to), s.to);
            assert!(s.from < s.to);
            parts.push((s.from, s.to));
        }
        parts.sort();
        assert_eq!(parts.first().unwrap().0, from);
        assert_eq!(parts.last().unwrap().1, to);
        for w in parts.windows(2) {
            assert_eq!(w[0].1, w[1].0, "{parts:?}");
        }
        for (f, t) in &c.raw {
            assert!(*t - *f < Duration::minutes(15));
        }
    }

    #[test]
    fn a_90_day_range_uses_few_blocks() {
        let from = utc("2026-08-03T18:30:00Z");
        let to = utc("2026-11-01T18:30:00Z");
        let c = cover(from, to, &HANDOFF_GRAINS);
        assert_exact(&c, from, to);
        assert!(c.raw.is_empty());
        assert!(c.segments.len() <= 7, "{:?}", c.segments);
        let from = utc("2026-08-03T18:31:07Z");
        let to = utc("2026-11-01T18:29:59.5Z");
        let c = cover(from, to, &HANDOFF_GRAINS);
        assert_exact(&c, from, to);
        assert_eq!(c.raw.len(), 2);
        let c = cover(
            utc("2026-08-03T18:31:00Z"),
            utc("2026-08-03T18:32:00Z"),
            &HANDOFF_GRAINS,
        );
        assert_eq!(c.raw.len(), 1);
        assert!(c.segments.is_empty());
    }

    #[test]
    fn kolkata_days_are_unions_of_blocks() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let range = TimeRange {
            start: utc("2026-11-01T18:30:00Z"),
            end: utc("2026-11-03T18:30:00Z"),
            tz,
        };
        let plan = Plan::new(&range);
        assert_eq!(plan.days.len(), 2);
        for (i, c) in &plan.days_cover {
            let from = day_start(tz, plan.days[*i]);
            assert_exact(c, from, from + Duration::days(1));
            assert!(c.raw.is_empty());
            assert!(c.segments.iter().all(|s| s.grain <= Grain::DAY));
        }
        assert!(plan.days_aligned);
    }

    #[test]
    fn local_mean_time_days_are_not_aligned() {
        // Monrovia kept UTC-00:44:30 until 1972: its midnights are not on 15-minute boundaries.
        let tz: Tz = "Africa/Monrovia".parse().unwrap();
        let range = TimeRange {
            start: day_start(tz, NaiveDate::from_ymd_opt(1960, 1, 1).unwrap()),
            end: day_start(tz, NaiveDate::from_ymd_opt(1960, 1, 4).unwrap()),
            tz,
        };
        let plan = Plan::new(&range);
        assert!(!plan.days_aligned);
        assert_eq!(plan.range.raw.len(), 2);
    }

    #[test]
    fn dst_days_are_23_and_25_hours() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let range = TimeRange {
            start: utc("2026-11-01T04:00:00Z"),
            end: utc("2026-11-02T05:00:00Z"),
            tz,
        };
        let plan = Plan::new(&range);
        assert_eq!(plan.days.len(), 1);
        assert_exact(&plan.days_cover[0].1, range.start, range.end);
    }

    #[test]
    fn combination_keys() {
        use Reason::*;
        let table: [(&[Reason], &str); 4] = [
            (&[], ""),
            (&[ProhibitedTopic], "prohibited_topic"),
            (
                &[ProhibitedTopic, AiImpliedHandoff, ProhibitedTopic],
                "ai_implied_handoff,prohibited_topic",
            ),
            (
                &[
                    UserRequestedHumanAssistance,
                    InsufficientTools,
                    InsufficientKnowledge,
                ],
                "insufficient_knowledge,insufficient_tools,user_requested_human_assistance",
            ),
        ];
        for (reasons, key) in table {
            assert_eq!(combination_key(reasons), key);
            if !reasons.is_empty() {
                let mut parsed = parse_combination(key).unwrap();
                parsed.sort_by_key(|r| r.as_str());
                assert_eq!(combination_key(&parsed), key);
            }
        }
    }

    #[test]
    fn percentages_and_sorting() {
        assert_eq!(percentage(1, 3), 33.33);
        assert_eq!(percentage(2, 3), 66.67);
        assert_eq!(percentage(5, 0), 0.0);
        let range = TimeRange {
            start: utc("2026-11-01T00:00:00Z"),
            end: utc("2026-11-02T00:00:00Z"),
            tz: Tz::UTC,
        };
        let plan = Plan::new(&range);
        let mut counts = Counts {
            sessions: 4,
            ..Counts::default()
        };
        counts.handoffs_by_day.insert(0, 3);
        counts.reasons.insert(Reason::ProhibitedTopic, 2);
        counts.reasons.insert(Reason::AiImpliedHandoff, 2);
        counts.reasons.insert(Reason::InsufficientTools, 0);
        counts.sentiments.insert(None, 1);
        counts.sentiments.insert(Some("sad".into()), 1);
        counts.sentiments.insert(Some("angry".into()), 1);
        let r = report(&range, &plan, None, &counts);
        assert_eq!(r.total_handoffs, 3);
        let reasons: Vec<_> = r.reasons.iter().map(|s| s.reason).collect();
        assert_eq!(reasons, [Reason::AiImpliedHandoff, Reason::ProhibitedTopic]);
        let s: Vec<_> = r.sentiments.iter().map(|s| s.sentiment.clone()).collect();
        assert_eq!(s, [Some("angry".into()), Some("sad".into()), None]);
        assert_eq!(
            r.summary,
            "3 handoffs and 4 sessions started from 2026-11-01T00:00:00Z to 2026-11-02T00:00:00Z (0.75 handoffs per session); most common reason: ai_implied_handoff (66.67% of handoffs)."
        );
    }
}
