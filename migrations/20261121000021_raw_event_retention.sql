-- Raw event retention (`--raw-event-retention-days N`): raw events that occurred more than N days
-- ago are deleted in the background, in bounded batches. Projections and rollups stay, so every
-- figure is unchanged; only what can be recomputed from the raw events (baton rebuild) shrinks.

-- 1. The event store allows DELETE in a transaction that says it is pruning (a transaction-local
-- setting only the retention task sets); erasure's one UPDATE (migration 20) stays as it was.
create or replace function events_append_only() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' and current_setting('baton.pruning', true) = 'on' then
        return old;
    end if;
    if tg_op = 'UPDATE'
       and current_setting('baton.erasing', true) = 'on'
       and new.org_id = old.org_id and new.event_id = old.event_id and new.seq = old.seq
       and new.type = old.type and new.occurred_at = old.occurred_at
       and new.received_at = old.received_at
       and json_typeof(new.body) = 'object'
       and not exists (
           select 1 from json_each(new.body) n
           where n.value::jsonb is distinct from (old.body::jsonb -> n.key)
       ) then
        return new;
    end if;
    raise exception 'events are append-only (the store of record): % refused', tg_op;
end;
$$;

-- 2. Finding old events without scanning the table. A BRIN index, not a B-tree: events arrive
-- roughly in time order, so block ranges summarise occurred_at well, and a BRIN index costs ingest
-- next to nothing (a B-tree would add an entry per event to the hottest insert path). Partitioning
-- the table by time would make deletion a DROP, but converting a live, large table in a migration
-- means rewriting it under a lock, and its primary key (org_id, event_id) would have to include
-- the partition key, so a re-sent id could no longer be recognised across partitions.
create index events_occurred_at_brin on events using brin (occurred_at) with (pages_per_range = 32);

-- 3. What was pruned, per organization: ingest treats an event that occurred before
-- `pruned_before` as already stored (its id may have been deleted, so a re-send could not be
-- recognised otherwise), and baton rebuild refuses to recompute an organization whose raw events
-- are incomplete.
create table event_retention (
    org_id uuid not null,
    -- Events of the organization that occurred before this may have been deleted (the latest
    -- cutoff that deleted any of them).
    pruned_before timestamptz not null,
    events_pruned bigint not null,
    last_pruned_at timestamptz not null,
    constraint event_retention_pkey primary key (org_id),
    constraint event_retention_org_id_fkey foreign key (org_id) references organizations (id)
);
