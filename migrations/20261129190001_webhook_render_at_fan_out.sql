-- Webhook messages rendered at fan-out instead of in the ingest transaction.
--
-- A subscribed batch used to read back the records its messages carry (handoffs with their
-- history, sessions) and render them to JSON inside its transaction: with a subscription to every
-- type, a third more database and server time per batch. It now stores only what each message is
-- (type, time, subject) and the workers render the record when they fan the row out.
--
-- A message still carries the record as its batch left it. Between the batch and its fan-out,
-- only a later ingest batch can change a record, under the organization's ingest lock; before it
-- changes one that a message still waiting in the outbox shows, that batch renders the record as
-- it is (as the earlier batch left it) into `webhook_snapshots`, and the fan-out uses the snapshot
-- instead of the current record. Which messages are waiting is known from the handoff itself:
-- `handoffs.webhook_seq` is the outbox row of the latest message about it, and a row is still
-- waiting while its seq is not below the smallest seq in the outbox (rows are fanned out oldest
-- first).

-- The outbox row of the latest webhook message about the handoff (null: none since this column
-- exists). Written with the rest of the row by ingest; no index (read with the row).
alter table handoffs add column webhook_seq bigint;

-- When each message's event occurred (its `timestamp`), one per message. Null in rows written
-- before this migration, whose `payloads` hold every body rendered.
alter table webhook_outbox add column message_times timestamptz[];
-- `payloads` stays: a whole body where it was rendered at ingest (a `call.completed`, whose data is
-- the event itself, and every message of rows written before this migration), null where the
-- fan-out renders it from `ordering_keys` (`handoff:<id>` or `session:<id>`).
alter table webhook_outbox alter column message_times set statistics 0;

-- Records as a batch left them, rendered by a later batch before it changed them: the `data` of
-- the messages of outbox row `outbox_seq` about `subject` (`handoff:<id>` or `session:<id>`).
-- The first snapshot of a pair is the right one (it was taken before the first change), so later
-- ones are not written. A fan-out uses and deletes the snapshots of the rows it moves, and any left
-- by rows moved before (a batch may snapshot a row that a concurrent fan-out is moving).
create table webhook_snapshots (
    outbox_seq bigint not null,
    subject text not null,
    org_id uuid not null,
    data text not null,
    constraint webhook_snapshots_pkey primary key (outbox_seq, subject)
);

alter table webhook_snapshots
    alter column subject set statistics 0,
    alter column data set statistics 0;

alter table webhook_snapshots set (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 100,
    autovacuum_vacuum_cost_delay = 0
);

-- The organization's rows waiting in the outbox, found by organization: ingest asks for the
-- smallest one with its lock (below), fan-outs delete from the other end.
create index webhook_outbox_org_idx on webhook_outbox (org_id, seq);

-- The start of an ingest transaction (migration 20261129170002) now also returns the smallest
-- `seq` of the organization's rows in the outbox (null: none), so that a batch knows without
-- another round trip whether a message it may change the record of is still waiting.
drop function baton_ingest_begin(bigint, uuid);
create function baton_ingest_begin(lock_key bigint, org uuid,
                                   out erasures boolean, out pruned_before timestamptz,
                                   out webhooks boolean, out configured boolean,
                                   out outbox_from bigint)
language plpgsql volatile as $$
begin
    perform pg_advisory_xact_lock(lock_key);
    perform set_config('plan_cache_mode', 'force_generic_plan', true);
    erasures := exists (select 1 from session_erasures e where e.org_id = org);
    pruned_before := (select r.pruned_before from event_retention r where r.org_id = org);
    webhooks := exists (select 1 from webhooks w where w.org_id = org and w.enabled);
    configured := exists (select 1 from handoff_configuration_revisions c where c.org_id = org);
    outbox_from := (select o.seq from webhook_outbox o where o.org_id = org
                    order by o.seq limit 1);
end;
$$;

-- The delivery ids and `webhook-id`s are made by the fan-out (it moves a row once, so they are
-- made once): null in rows written from now on.
alter table webhook_outbox
    alter column delivery_ids drop not null,
    alter column message_ids drop not null;
