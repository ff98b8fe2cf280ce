//! The handoff list's rules: where a handoff stands (its status), what names a state, the
//! position a page ends at and its opaque cursor, and how a page is cut.
//!
//! Policy: the list is ordered by first initiation, then handoff id, both descending; a position
//! `(initiated_at, handoff_id)` never changes once a handoff exists (a retry keeps its first
//! initiation), so pages that start strictly after a position neither repeat nor skip a handoff
//! while others arrive. A cursor is `h1.<microseconds since the epoch>.<hex of the handoff id>`:
//! opaque to clients, versioned so the format can change without misreading old ones, and
//! refused (not sent to the database) when it names what cannot be stored.

use chrono::{DateTime, Utc};

use super::events::states;
use super::input;

/// Where a handoff stands, whatever its state's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Initiated, or in a custom state (a custom state never ends a handoff).
    Open,
    /// A human took it (final).
    Completed,
    /// The transfer failed; a retry may initiate it again.
    Failed,
    /// The customer left before a person accepted (final).
    Abandoned,
}

impl Status {
    /// The status of a handoff in `state`.
    pub fn of(state: &str) -> Status {
        match state {
            states::COMPLETED => Status::Completed,
            states::FAILED => Status::Failed,
            states::ABANDONED => Status::Abandoned,
            _ => Status::Open,
        }
    }

    /// A status by name (`open`, `completed`, `failed`, `abandoned`).
    pub fn parse(name: &str) -> Option<Status> {
        match name {
            "open" => Some(Status::Open),
            "completed" => Some(Status::Completed),
            "failed" => Some(Status::Failed),
            "abandoned" => Some(Status::Abandoned),
            _ => None,
        }
    }
}

/// Whether `s` can name a state: one of PolyAI's three or `handoff_abandoned`, or a custom state as `handoff.state`
/// accepts it (`[a-z0-9_]{1,64}`).
pub fn is_state_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A position in the list: the last handoff of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Its first initiation.
    pub initiated_at: DateTime<Utc>,
    /// Its id.
    pub handoff_id: String,
}

/// The cursor of a position.
pub fn encode_cursor(p: &Position) -> String {
    let mut out = format!("h1.{}.", p.initiated_at.timestamp_micros());
    for b in p.handoff_id.as_bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The position a cursor names, or `None` when it is not one of ours.
pub fn decode_cursor(text: &str) -> Option<Position> {
    let rest = text.trim().strip_prefix("h1.")?;
    let (micros, hex) = rest.split_once('.')?;
    if micros.is_empty() || !micros.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    let initiated_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let handoff_id = String::from_utf8(bytes).ok()?;
    // A cursor is client input: one the list never wrote (a NUL in the id, an instant
    // PostgreSQL cannot hold) is refused like any other garbage.
    if handoff_id.contains('\0') || !input::year_in_range(initiated_at) {
        return None;
    }
    Some(Position {
        initiated_at,
        handoff_id,
    })
}

/// Cuts a page from `rows`, read with a limit of `limit + 1` (newest first): at most `limit`
/// rows, and the cursor of the last one when more follow (`None` on the last page).
pub fn page<T>(
    mut rows: Vec<T>,
    limit: usize,
    position: impl Fn(&T) -> Position,
) -> (Vec<T>, Option<String>) {
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|last| encode_cursor(&position(last)));
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let p = Position {
            initiated_at: at("2026-11-02T09:01:02.345678Z"),
            handoff_id: "h-ü/1.2".to_owned(),
        };
        let c = encode_cursor(&p);
        assert!(c.starts_with("h1.1793610062345678."), "{c}");
        assert_eq!(decode_cursor(&c), Some(p));
        for bad in [
            "",
            "h1.",
            "h1..61",
            "h1.12.",
            "h1.12.6",
            "h1.12.zz",
            "h1.x.61",
            "h2.12.61",
            "h1.12.ff",
            "h1.+12.61",
            // A NUL in the id; an instant in year −10000.
            "h1.12.6100",
            "h1.-380000000000000000.61",
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn state_names() {
        assert!(is_state_name("handoff_failed"));
        assert!(is_state_name("customer_refund"));
        assert!(!is_state_name(""));
        assert!(!is_state_name("Customer"));
        assert!(!is_state_name("a-b"));
        assert!(!is_state_name(&"a".repeat(65)));
    }

    #[test]
    fn statuses() {
        assert_eq!(Status::of("handoff_initiated"), Status::Open);
        assert_eq!(Status::of("customer_refund"), Status::Open);
        assert_eq!(Status::of("handoff_completed"), Status::Completed);
        assert_eq!(Status::of("handoff_failed"), Status::Failed);
        assert_eq!(Status::parse("open"), Some(Status::Open));
        assert_eq!(Status::parse("failed"), Some(Status::Failed));
        assert_eq!(Status::of("handoff_abandoned"), Status::Abandoned);
        assert_eq!(Status::parse("abandoned"), Some(Status::Abandoned));
        assert_eq!(Status::parse("closed"), None);
    }

    #[test]
    fn pages() {
        let rows = |n: usize| -> Vec<(i64, &'static str)> {
            [(30, "c"), (20, "b"), (10, "a")]
                .into_iter()
                .take(n)
                .collect()
        };
        let position = |r: &(i64, &str)| Position {
            initiated_at: DateTime::from_timestamp(r.0, 0).unwrap(),
            handoff_id: r.1.to_owned(),
        };
        // Read with limit + 1: a third row means another page, starting after the second.
        let (page2, next) = page(rows(3), 2, position);
        assert_eq!(page2, rows(2));
        assert_eq!(
            next.as_deref().and_then(decode_cursor),
            Some(position(&(20, "b")))
        );
        // Exactly the limit: the last page.
        assert_eq!(page(rows(2), 2, position), (rows(2), None));
        assert_eq!(page(Vec::new(), 2, position), (Vec::new(), None));
    }
}
