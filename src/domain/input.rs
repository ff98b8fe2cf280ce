//! Limits every input shares, whatever the endpoint: no NUL character, and timestamps within
//! years 0001–9999.
//!
//! Policy: PostgreSQL refuses the NUL character (U+0000) in `text` and `jsonb`, and Python's and
//! JavaScript's date parsers refuse years outside 0001–9999 (which RFC 3339 cannot write with
//! four digits anyway). Input that would break either is refused where it enters, with a 4xx
//! naming the field, rather than reaching the database and coming back as a 500 that a client
//! retrying on 5xx would resend forever.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde_json::Value;

/// What is wrong with a string or key holding NUL, for a JSON field.
pub const NUL_IN_JSON: &str =
    "must not contain the NUL character (\\u0000), which Baton cannot store";

/// What is wrong with a query or path parameter holding NUL.
pub const NUL_IN_PARAM: &str = "must not contain the NUL character (%00), which Baton cannot store";

/// Earliest year of a timestamp Baton accepts, once converted to UTC.
pub const MIN_YEAR: i32 = 1;
/// Latest year of a timestamp Baton accepts, once converted to UTC.
pub const MAX_YEAR: i32 = 9999;

/// What is wrong with a timestamp outside [`MIN_YEAR`]–[`MAX_YEAR`].
pub const YEAR_RANGE: &str = "must lie within years 0001 to 9999 once converted to UTC \
     (0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z)";

/// Whether an instant's year (in UTC) is within 0001–9999, so that it prints as RFC 3339 with a
/// four-digit year.
pub fn year_in_range(t: DateTime<Utc>) -> bool {
    in_range_in(t, &Utc)
}

/// Whether an instant's year, as a local date-time in `tz`, is within 0001–9999 (for answers
/// written in a local zone: `2026-11-01T00:00:00+05:30`, trend days).
pub fn in_range_in<Tz: TimeZone>(t: DateTime<Utc>, tz: &Tz) -> bool {
    (MIN_YEAR..=MAX_YEAR).contains(&t.with_timezone(tz).year())
}

/// Whether JSON text may hold a NUL: in valid JSON a NUL can only be written as the escape
/// `\u0000` (a raw NUL byte is a syntax error), so when this is `false` no string or key of the
/// document holds one. A cheap gate before [`nul_paths`], which finds where.
pub fn json_may_hold_nul(text: &[u8]) -> bool {
    text.windows(6).any(|w| w == b"\\u0000")
}

/// The JSON paths of every string and key holding NUL in `value`, under `path` (`""` for the
/// root): `events[2].data.note`, `settings.keywords[0]`. A key holding NUL is named by its own
/// path, with the NUL written `\u0000`.
pub fn nul_paths(value: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Paths are built only for a value that holds a NUL: the common case allocates nothing.
    if holds_nul(value) {
        walk(value, path, &mut out);
    }
    out
}

/// Whether any string or key of `value` holds NUL.
pub fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map
            .iter()
            .any(|(key, item)| key.contains('\0') || holds_nul(item)),
        _ => false,
    }
}

fn walk(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.contains('\0') => out.push(root_or(path)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let child = if path.is_empty() {
                    key.replace('\0', "\\u0000")
                } else {
                    format!("{path}.{}", key.replace('\0', "\\u0000"))
                };
                if key.contains('\0') {
                    out.push(child.clone());
                }
                walk(item, &child, out);
            }
        }
        _ => {}
    }
}

fn root_or(path: &str) -> String {
    if path.is_empty() {
        "(root)".to_owned()
    } else {
        path.to_owned()
    }
}

/// A query or path parameter name as it can be shown: a NUL in it written `%00`.
pub fn param_name(name: &str) -> String {
    name.replace('\0', "%00")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_found_in_strings_and_keys_at_any_depth() {
        let v = json!({
            "id": "a\u{0}b",
            "data": {"note": "x\u{0}", "ok": "fine", "list": ["y", "\u{0}"], "k\u{0}": 1},
            "clean": [1, true, null, "text"]
        });
        let mut got = nul_paths(&v, "events[2]");
        got.sort();
        assert_eq!(
            got,
            [
                "events[2].data.k\\u0000",
                "events[2].data.list[1]",
                "events[2].data.note",
                "events[2].id",
            ]
        );
        assert_eq!(nul_paths(&json!({"a": {"b": ["\u{0}"]}}), ""), ["a.b[0]"]);
        assert_eq!(nul_paths(&json!("\u{0}"), ""), ["(root)"]);
        assert!(nul_paths(&json!({"a": "no nul here", "b": [1, 2]}), "").is_empty());
        assert!(holds_nul(&json!([{"k\u{0}": 1}])));
        assert!(!holds_nul(&json!([{"k": "v"}, 1, null])));
    }

    #[test]
    fn the_raw_scan_gates_exactly_the_escape() {
        // The text of a document holding NUL always carries the escape.
        let text = serde_json::to_vec(&json!({"k": "a\u{0}"})).unwrap();
        assert!(json_may_hold_nul(&text));
        assert!(json_may_hold_nul(br#"{"a":"\u0000"}"#));
        assert!(!json_may_hold_nul(br#"{"a":"\u0001", "b": "u0000"}"#));
        // An escaped backslash followed by `u0000` passes the gate, but holds no NUL: the walk
        // is what decides.
        let tricky = br#"{"a":"\\u0000"}"#;
        assert!(json_may_hold_nul(tricky));
        let v: Value = serde_json::from_slice(tricky).unwrap();
        assert!(nul_paths(&v, "").is_empty());
        // A raw NUL byte is not JSON at all.
        assert!(serde_json::from_slice::<Value>(b"{\"a\":\"\0\"}").is_err());
    }

    #[test]
    fn years_are_bounded_in_utc_and_in_a_zone() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert!(year_in_range(t("0001-01-01T00:00:00Z")));
        assert!(year_in_range(t("9999-12-31T23:59:59.999999999Z")));
        // 9999-12-31T23:59:59 at UTC−12 is 10000-01-01T11:59:59Z.
        assert!(!year_in_range(t("9999-12-31T23:59:59-12:00")));
        // 0001-01-01T00:00:00 at UTC+01 is 0000-12-31T23:00:00Z.
        assert!(!year_in_range(t("0001-01-01T00:00:00+01:00")));
        let kolkata: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        assert!(!in_range_in(t("9999-12-31T20:00:00Z"), &kolkata));
        assert!(in_range_in(t("9999-12-31T20:00:00Z"), &ny));
        assert!(!in_range_in(t("0001-01-01T01:00:00Z"), &ny));
    }

    #[test]
    fn parameter_names_show_nul_as_percent_00() {
        assert_eq!(param_name("a\u{0}b"), "a%00b");
    }
}
