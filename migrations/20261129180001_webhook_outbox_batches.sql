-- The webhook outbox as one row per ingest batch.
--
-- Ingest used to insert one `webhook_deliveries` row per message and endpoint inside the batch's
-- transaction: with a subscription to every type, ~660 rows (four indexes each) per batch of
-- 1,000 events, about a third of the batch's database time. A subscribed batch now writes one
-- row here holding its deliveries as arrays (the bodies once per message, rendered in that
-- transaction, so every attempt still sends the record as the batch left it). The delivery
-- workers move these rows into `webhook_deliveries` ("fan-out"), one server at a time, in `seq`
-- order, deleting each row in the same transaction that inserts its deliveries: a batch is
-- fanned out exactly once, and the deliveries of a key keep the order of the batches.
create table webhook_outbox (
    seq bigint generated always as identity,
    org_id uuid not null,
    created_at timestamptz not null default now(),
    -- One element per delivery (message × subscribed endpoint), in delivery order.
    delivery_ids uuid[] not null,
    webhook_ids uuid[] not null,
    message_ids text[] not null,
    event_types text[] not null,
    ordering_keys text[] not null,
    -- 1-based index into `payloads` of each delivery.
    payload_index int4[] not null,
    -- The bodies, one per message (shared by its endpoints).
    payloads text[] not null,
    constraint webhook_outbox_pkey primary key (seq)
);

-- The bodies are JSON text, read once: compressed with lz4 where the server has it (several times
-- faster than the default pglz, and fewer TOAST chunks and WAL than storing them uncompressed).
do $$
begin
    alter table webhook_outbox alter column payloads set compression lz4;
exception when feature_not_supported or invalid_parameter_value then
    null;
end
$$;

-- A queue, read only by its primary key: planner statistics are of no use, and sampling rows of
-- 660-element arrays (autoanalyze, after every few batches) cost more than writing them.
alter table webhook_outbox
    alter column delivery_ids set statistics 0,
    alter column webhook_ids set statistics 0,
    alter column message_ids set statistics 0,
    alter column event_types set statistics 0,
    alter column ordering_keys set statistics 0,
    alter column payload_index set statistics 0,
    alter column payloads set statistics 0;

alter table webhook_outbox set (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 100,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 2000000000
);
