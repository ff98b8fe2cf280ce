-- Handoff lifecycle (GET /v1/handoff-lifecycle): what became of each handoff, how long customers
-- waited for a person, and whether it came outside working hours. Maintained in the ingest
-- transaction (src/store/lifecycle.rs) and recomputed by `baton rebuild` through the same code.

-- What a handoff's lifecycle needs that neither `handoffs` nor its rows' history keep, fixed at
-- its first initiation: its session's channel and agent (so that a later event of the handoff
-- moves its counts without looking the session up), and whether it came outside working hours
-- under the configuration revision in force at that instant.
create table handoff_lifecycle (
    org_id uuid not null,
    handoff_id text not null,
    channel text not null,
    agent_id text,
    outside_working_hours boolean not null,
    constraint handoff_lifecycle_pkey primary key (org_id, handoff_id)
);

-- Counts per aligned block of UTC time (the handoff grains of src/domain/buckets.rs: the bucket
-- length in seconds, 15 minutes to 7 days, as in every rollup table), per
-- dimension: `dim` is '' (every handoff, key ''), 'reason', 'channel', 'destination' or 'agent'
-- (key '' when the handoff has none). Every handoff is counted in the block of its first
-- initiation, in its current state (a cohort: initiated = completed + failed + abandoned +
-- open), so a later event moves it from one state column to another in the same row.
--
-- Waits (first initiation to completion, whole milliseconds) are kept as a count, a sum, a
-- maximum and a mergeable histogram: `wait_bins` (sorted bin numbers, see
-- `domain::lifecycle::bin_of`) and `wait_counts` (handoffs per bin), a sparse array pair, so
-- that a day's distribution is one row and any set of blocks merges into exact bin counts.
create table handoff_lifecycle_rollups (
    org_id uuid not null,
    dim text not null,
    grain integer not null,
    bucket timestamptz not null,
    key text not null,
    initiated bigint not null,
    completed bigint not null,
    failed bigint not null,
    abandoned bigint not null,
    open bigint not null,
    retried bigint not null,
    outside_working_hours bigint not null,
    wait_count bigint not null,
    wait_sum_ms bigint not null,
    wait_max_ms bigint,
    wait_bins int4[] not null,
    wait_counts int8[] not null,
    -- Keyed for the reads: one dimension's blocks of one grain over a time span.
    constraint handoff_lifecycle_rollups_pkey primary key (org_id, dim, grain, bucket, key),
    constraint handoff_lifecycle_rollups_grain_check check (grain in (900, 3600, 86400, 604800)),
    constraint handoff_lifecycle_rollups_bins_check
        check (cardinality(wait_bins) = cardinality(wait_counts))
) with (fillfactor = 90);

-- Configuration in force at an instant: the newest revision created at or before it.
create index handoff_configuration_revisions_created_idx
    on handoff_configuration_revisions (org_id, created_at);
