//! The figure columns of the call rollup tables, and how rows become [`CallSums`].

use sqlx::Row;

use crate::domain::metrics::CallSums;

/// The additive columns of `call_metric_rollups` and `reseller_call_rollups`, in
/// [`CallSums`] order.
pub(super) const SUM_COLUMNS: &[&str] = &[
    "calls",
    "resolved",
    "transferred",
    "abandoned",
    "other_outcome",
    "duration_sum",
    "sentiment_calls",
    "positive_calls",
    "ttft_sum",
    "ttft_calls",
    "stt_sum",
    "stt_calls",
    "correction_calls",
    "zero_correction_calls",
    "context_sum",
    "context_calls",
    "tool_calls",
    "tool_call_errors",
];

/// The columns of `reseller_agent_rollups`: what an agent's entry shows (other outcomes are
/// the calls minus the three named ones).
pub(super) const AGENT_COLUMNS: &[&str] = &[
    "calls",
    "resolved",
    "transferred",
    "abandoned",
    "duration_sum",
    "sentiment_calls",
    "positive_calls",
];

/// Whether a sums column is a float (the others are counts).
pub(super) fn is_float(column: &str) -> bool {
    column.ends_with("_sum")
}

/// The count of `s` stored in column `column` (0 for a float column).
pub(super) fn count_of(s: &CallSums, column: &str) -> i64 {
    match column {
        "calls" => s.calls,
        "resolved" => s.resolved,
        "transferred" => s.transferred,
        "abandoned" => s.abandoned,
        "other_outcome" => s.other,
        "sentiment_calls" => s.sentiment_calls,
        "positive_calls" => s.positive_calls,
        "ttft_calls" => s.ttft_calls,
        "stt_calls" => s.stt_calls,
        "correction_calls" => s.correction_calls,
        "zero_correction_calls" => s.zero_correction_calls,
        "context_calls" => s.context_calls,
        "tool_calls" => s.tool_calls,
        "tool_call_errors" => s.tool_call_errors,
        _ => 0,
    }
}

/// The sum of `s` stored in float column `column` (0 for a count column).
pub(super) fn float_of(s: &CallSums, column: &str) -> f64 {
    match column {
        "duration_sum" => s.duration_sum,
        "ttft_sum" => s.ttft_sum,
        "stt_sum" => s.stt_sum,
        "context_sum" => s.context_sum,
        _ => 0.0,
    }
}

/// The per-agent sums selected from a rollup table aliased `r`. Counts are summed as `float8`
/// and cast back: exact for any total below 2^53, and `sum(int8)` (which accumulates in 128 bits
/// and returns `numeric`) costs about twice as much per row.
pub(super) const AGENT_SUMS: &str = r#"r.org_id, r.agent_id, sum(r.calls::float8)::int8 as calls,
       sum(r.resolved::float8)::int8 as resolved, sum(r.transferred::float8)::int8 as transferred,
       sum(r.abandoned::float8)::int8 as abandoned, sum(r.other_outcome::float8)::int8 as other_outcome,
       sum(r.duration_sum) as duration_sum,
       sum(r.sentiment_calls::float8)::int8 as sentiment_calls,
       sum(r.positive_calls::float8)::int8 as positive_calls,
       sum(r.ttft_sum) as ttft_sum, sum(r.ttft_calls::float8)::int8 as ttft_calls,
       sum(r.stt_sum) as stt_sum, sum(r.stt_calls::float8)::int8 as stt_calls,
       sum(r.correction_calls::float8)::int8 as correction_calls,
       sum(r.zero_correction_calls::float8)::int8 as zero_correction_calls,
       sum(r.context_sum) as context_sum, sum(r.context_calls::float8)::int8 as context_calls,
       sum(r.tool_calls::float8)::int8 as tool_calls,
       sum(r.tool_call_errors::float8)::int8 as tool_call_errors"#;

/// The [`SUM_COLUMNS`] of a row, by name.
pub(super) fn call_sums(row: &sqlx::postgres::PgRow) -> sqlx::Result<CallSums> {
    Ok(CallSums {
        calls: row.try_get("calls")?,
        resolved: row.try_get("resolved")?,
        transferred: row.try_get("transferred")?,
        abandoned: row.try_get("abandoned")?,
        other: row.try_get("other_outcome")?,
        duration_sum: row.try_get("duration_sum")?,
        sentiment_calls: row.try_get("sentiment_calls")?,
        positive_calls: row.try_get("positive_calls")?,
        ttft_sum: row.try_get("ttft_sum")?,
        ttft_calls: row.try_get("ttft_calls")?,
        stt_sum: row.try_get("stt_sum")?,
        stt_calls: row.try_get("stt_calls")?,
        correction_calls: row.try_get("correction_calls")?,
        zero_correction_calls: row.try_get("zero_correction_calls")?,
        context_sum: row.try_get("context_sum")?,
        context_calls: row.try_get("context_calls")?,
        tool_calls: row.try_get("tool_calls")?,
        tool_call_errors: row.try_get("tool_call_errors")?,
    })
}
