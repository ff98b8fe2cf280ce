-- Rollups for OpenCX's GET /handoff-analytics, maintained in the ingest
-- transaction (src/store/analytics.rs) so that the read path never scans raw rows: a 90-day
-- request reads a number of rows bounded by its buckets, not by the tenant's handoffs.
--
-- Buckets are aligned blocks of UTC time in four grains: 0 = 15 minutes, 1 = hour, 2 = day,
-- 3 = 7 days (all counted from the Unix epoch). Every count is kept in every grain; a read covers
-- its range with the coarsest blocks that fit (a 90-day range is ~12 weeks, a few days, hours and
-- quarters) and a local day with the blocks inside it. 15 minutes divides every UTC offset in use
-- (Asia/Kolkata +05:30, Asia/Kathmandu +05:45), so local days are exact unions of buckets; the
-- parts of a range that are not on a 15-minute boundary are read from the indexed projections.
--
-- `scope` is '' for all of an organization's handoffs, or an instruction id: each handoff is also
-- counted under every instruction it references, so `instruction_id` reads as fast as no filter.
-- (Reference ids are never empty, so '' cannot collide with an instruction.)

-- Handoffs per bucket, by first initiation (a retry is the same handoff).
create table handoff_rollup_totals (
    org_id uuid not null,
    scope text not null,
    grain smallint not null,
    bucket timestamptz not null,
    handoffs bigint not null,
    constraint handoff_rollup_totals_pkey primary key (org_id, scope, grain, bucket),
    constraint handoff_rollup_totals_grain_check check (grain between 0 and 3)
) with (fillfactor = 90);

-- Breakdowns per bucket: `kind` is `reason`, `sentiment` (key = the sentiment),
-- `no_sentiment` (key ''), `combination` (key = a session's sorted reasons joined by ','),
-- or a reference type (`instruction`, `ai_profile`, `knowledge`, `tool`, `prohibited_topic`; key
-- = the reference id). Counts are of handoffs, except `combination`: of sessions, in the bucket
-- of the session's first handoff in the scope. A retry that changes a handoff's reasons,
-- sentiment or references moves its counts (old subtracted, new added), so a count can reach
-- zero; readers skip zeros.
create table handoff_rollup_breakdown (
    org_id uuid not null,
    scope text not null,
    grain smallint not null,
    bucket timestamptz not null,
    kind text not null,
    key text not null,
    count bigint not null,
    constraint handoff_rollup_breakdown_pkey primary key (org_id, scope, grain, bucket, kind, key),
    constraint handoff_rollup_breakdown_grain_check check (grain between 0 and 3)
) with (fillfactor = 90);

-- Sessions per bucket, by start (never narrowed by instruction).
create table session_rollups (
    org_id uuid not null,
    grain smallint not null,
    bucket timestamptz not null,
    sessions bigint not null,
    constraint session_rollups_pkey primary key (org_id, grain, bucket),
    constraint session_rollups_grain_check check (grain between 0 and 3)
) with (fillfactor = 90);

-- Each session's reason combination per scope: the first initiation of its first handoff in the
-- scope and the sorted, distinct reasons of all its handoffs in the scope. The ingest recomputes
-- it for the sessions a batch touches and moves the session's `combination` count when it
-- changes; the read answers the partial 15-minute edges of a range from it (by first_initiated_at).
create table handoff_session_reasons (
    org_id uuid not null,
    scope text not null,
    session_id text not null,
    first_initiated_at timestamptz not null,
    reasons text not null,
    -- Keyed by session first: the ingest reads and rewrites all scopes of the sessions it
    -- touches.
    constraint handoff_session_reasons_pkey primary key (org_id, session_id, scope)
);

create index handoff_session_reasons_first_idx
    on handoff_session_reasons (org_id, scope, first_initiated_at);

-- The partial edges of a range (under 15 minutes each) read handoffs by handoffs_initiated_at_idx
-- and sessions by sessions_started_at_idx, checking an instruction by handoff_references' key.
