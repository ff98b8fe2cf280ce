-- Deferred lifecycle rollup deltas (`store::lifecycle::pending`). A batch whose lifecycle deltas
-- would touch more rollup rows than `store::lifecycle::DEFER_ROWS` (completions of handoffs
-- initiated over weeks, all in one batch) stores them here as one compact row, in its own
-- transaction, instead of updating thousands of `handoff_lifecycle_rollups` rows. A background
-- folder (`db::lifecycle_fold`) applies them through the ordinary rollup write, under the
-- organization's ingest lock, and deletes them in the same transaction; reads merge the rows
-- still pending in the snapshot they read the rollups in.
--
-- `deltas`: the batch's deltas, each `(dim, grain, bucket, key)` and what it adds (see
-- `store::lifecycle::pending::encode` for the format).
create table handoff_lifecycle_pending (
    org_id uuid not null,
    id bigserial not null,
    deltas bytea not null,
    created_at timestamptz not null default now(),
    constraint handoff_lifecycle_pending_pkey primary key (org_id, id)
);

-- Written once, read once: lz4 where the server has it (faster than the default pglz).
do $$
begin
    alter table handoff_lifecycle_pending alter column deltas set compression lz4;
exception when feature_not_supported or invalid_parameter_value then
    null;
end
$$;

-- A queue read by its primary key only: statistics of the deltas are of no use.
alter table handoff_lifecycle_pending alter column deltas set statistics 0;
