-- Deferred lifecycle rollups (`store::lifecycle::pending`). A batch whose handoffs lie in more
-- blocks than `store::lifecycle::pending::DEFER_BLOCKS` (completions of handoffs initiated over
-- weeks, all in one batch) stores what it changed here as one compact row, in its own
-- transaction, instead of updating thousands of `handoff_lifecycle_rollups` rows. A background
-- folder (`db::lifecycle_fold`) computes the deltas and applies them through the ordinary rollup
-- write, under the organization's ingest lock, and deletes the rows in the same transaction;
-- reads merge the rows still pending in the snapshot they read the rollups in.
--
-- `changes`: each handoff the batch changed, its counted fields as they were and as the batch
-- left them (see `store::lifecycle::pending::encode` for the format).
create table handoff_lifecycle_pending (
    org_id uuid not null,
    id bigserial not null,
    changes bytea not null,
    created_at timestamptz not null default now(),
    constraint handoff_lifecycle_pending_pkey primary key (org_id, id)
);

-- Written once, read once: lz4 where the server has it (faster than the default pglz).
do $$
begin
    alter table handoff_lifecycle_pending alter column changes set compression lz4;
exception when feature_not_supported or invalid_parameter_value then
    null;
end
$$;

-- A queue read by its primary key only: statistics of its contents are of no use.
alter table handoff_lifecycle_pending alter column changes set statistics 0;
