-- Rollups of calls for Telzino's GET /v1/metrics, maintained in the ingest transaction (calls are
-- insert-only, so each new call is added once and never subtracted).
--
-- Why three tables: the read path must not scan raw calls (a 90-day GROUP BY over millions of
-- calls costs tens of milliseconds), and must not grow with history.
-- - call_metric_rollups: per organization, grain, UTC bucket and agent, every additive figure the
--   endpoint needs. Each call is added at three grains (15 minutes, hour, day) so that a range
--   is read with the coarsest buckets that fit: ~140 rows per agent for 90 days at most. The
--   15-minute grain also makes ranges in half- and quarter-hour zones exact.
-- - call_escalation_rollups: the same grains, per escalation reason of transferred calls.
-- - call_volume_days: per organization and UTC day, the 96 quarter-hour slots of calls, resolved
--   calls and seconds, for the local-day and local-hour distributions in any zone (a 15-minute
--   UTC slot lies inside one local hour in every zone whose offset is a multiple of 15 minutes,
--   which all current zones are); one row per day keeps a 90-day read at ~90 rows.
-- Means are never stored: sums and counts are, and means are computed at read time.

create table call_metric_rollups (
    org_id uuid not null,
    -- Bucket length in minutes: 15, 60 or 1440.
    grain smallint not null,
    -- Start of the UTC bucket.
    bucket timestamptz not null,
    agent_id text not null,
    calls bigint not null,
    resolved bigint not null,
    transferred bigint not null,
    abandoned bigint not null,
    other_outcome bigint not null,
    duration_sum double precision not null,
    sentiment_calls bigint not null,
    positive_calls bigint not null,
    ttft_sum double precision not null,
    ttft_calls bigint not null,
    stt_sum double precision not null,
    stt_calls bigint not null,
    correction_calls bigint not null,
    zero_correction_calls bigint not null,
    -- Sum of cached_tokens / total_tokens over the calls reporting both (total > 0).
    context_sum double precision not null,
    context_calls bigint not null,
    -- Over the calls reporting both tool_calls and tool_call_errors.
    tool_calls bigint not null,
    tool_call_errors bigint not null,
    constraint call_metric_rollups_pkey primary key (org_id, grain, bucket, agent_id),
    constraint call_metric_rollups_grain_check check (grain in (15, 60, 1440))
);

create table call_escalation_rollups (
    org_id uuid not null,
    grain smallint not null,
    bucket timestamptz not null,
    reason text not null,
    calls bigint not null,
    -- Sum of escalated_after_seconds, else the call's duration.
    seconds_sum double precision not null,
    constraint call_escalation_rollups_pkey primary key (org_id, grain, bucket, reason),
    constraint call_escalation_rollups_grain_check check (grain in (15, 60, 1440))
);

create table call_volume_days (
    org_id uuid not null,
    day date not null,
    calls bigint[] not null,
    resolved bigint[] not null,
    seconds double precision[] not null,
    constraint call_volume_days_pkey primary key (org_id, day),
    constraint call_volume_days_slots_check check (
        cardinality(calls) = 96 and cardinality(resolved) = 96 and cardinality(seconds) = 96)
);
