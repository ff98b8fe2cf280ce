//! Event fixtures shared by the tests and the benchmarks (`#[path]`-included by both).
#![allow(dead_code)]

use serde_json::{Value, json};

/// Sessions `from..from + n`, each started and handed off at once (reason
/// `insufficient_knowledge`), ids prefixed by `tag`; times spread over November 2026.
pub fn sessions_with_handoffs(tag: &str, from: usize, n: usize) -> Vec<Value> {
    (from..from + n)
        .flat_map(|i| {
            let t = format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + i % 28, i % 24, i % 60);
            started_and_handed_off(tag, i, &t)
        })
        .collect()
}

/// The events of [`sessions_with_handoffs`] for session `i` at time `t`.
pub fn started_and_handed_off(tag: &str, i: usize, t: &str) -> [Value; 2] {
    [
        json!({"id": format!("{tag}-s{i}"), "type": "session.started", "occurred_at": t,
               "session_id": format!("{tag}-{i}"), "channel": "web"}),
        json!({"id": format!("{tag}-h{i}"), "type": "handoff.initiated", "occurred_at": t,
               "handoff_id": format!("{tag}-{i}"), "session_id": format!("{tag}-{i}"),
               "reasons": ["insufficient_knowledge"]}),
    ]
}

/// Completions of the handoffs `from..from + n` of [`sessions_with_handoffs`].
pub fn completions(tag: &str, from: usize, n: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            json!({"id": format!("{tag}-c{i}"), "type": "handoff.completed",
                   "occurred_at": "2026-11-29T10:00:00Z", "handoff_id": format!("{tag}-{i}")})
        })
        .collect()
}

/// An event of `kind` (`session.started`, `handoff.initiated`, …) with id `id`, at
/// `occurred_at`, with the type's own `fields` (a JSON object) merged in.
pub fn event(id: &str, kind: &str, occurred_at: &str, fields: Value) -> Value {
    let mut e = json!({"id": id, "type": kind, "occurred_at": occurred_at});
    if let Some(fields) = fields.as_object() {
        for (k, v) in fields {
            e[k] = v.clone();
        }
    }
    e
}
