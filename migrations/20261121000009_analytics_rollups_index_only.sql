-- Index-only reads of the handoff analytics rollups (GET /handoff-analytics).
--
-- A 90-day request reads a few thousand rollup rows (every reason, sentiment, reference and
-- combination of ~20 blocks, plus one total per local day). Through the primary keys alone each
-- of those rows was a heap fetch, and rows are laid out on the heap in the order ingest creates
-- them: all tenants' rows of a bucket interleaved, so nearly every row read was on its own page
-- (6 ms at 10M handoffs, against 4 ms with the same rows clustered by tenant). With the counted
-- column carried in the key's index (`include`), the read is an index-only scan: the index is
-- ordered by tenant, scope, grain and bucket whatever the heap order, and a heap page is visited
-- only where the visibility map says it changed since the last vacuum (the recent buckets, which
-- autovacuum catches up with).
--
-- The price: a count in an index means an update of it is never a HOT update, so every rollup
-- upsert at ingest also inserts an index entry (measured with `cargo bench --bench ingest`, see
-- BENCHMARKS.md). The keys are replaced rather than doubled by a second index, so each write
-- still maintains one index per table; `on conflict (…)` infers the same key columns.
alter table handoff_rollup_totals
    drop constraint handoff_rollup_totals_pkey,
    add constraint handoff_rollup_totals_pkey
        primary key (org_id, scope, grain, bucket) include (handoffs);

alter table handoff_rollup_breakdown
    drop constraint handoff_rollup_breakdown_pkey,
    add constraint handoff_rollup_breakdown_pkey
        primary key (org_id, scope, grain, bucket, kind, key) include (count);

alter table session_rollups
    drop constraint session_rollups_pkey,
    add constraint session_rollups_pkey
        primary key (org_id, grain, bucket) include (sessions);
