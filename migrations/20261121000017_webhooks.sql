-- Webhooks: an organization's subscriptions, and the outbox of deliveries.
--
-- Deliveries are written by the ingest transaction itself (one row per message and subscribed
-- endpoint), so an acknowledged event has its deliveries stored and a refused batch has none. Any
-- number of servers deliver them: a worker claims due rows with `for update skip locked` and
-- moves `next_attempt_at` past the attempt's deadline (a lease), so each attempt is made by one
-- server, and a server that dies mid-attempt leaves a row another server retries once the lease
-- has passed (at least once).
--
-- No foreign key from deliveries to webhooks: a referential check per outbox row would tax every
-- ingest batch. Deleting a webhook deletes its deliveries in the same transaction; the workers
-- only claim deliveries whose webhook exists and is enabled.

create table webhooks (
    org_id uuid not null references organizations (id) on delete cascade,
    id uuid not null,
    url text not null,
    -- Subscribed event types (validated by the writer against the webhook event types).
    event_types text[] not null,
    description text,
    -- `whsec_<base64>`: the HMAC key, needed in clear to sign.
    secret text not null,
    -- The secret before the last rotation, still signing until `previous_secret_expires_at`.
    previous_secret text,
    previous_secret_expires_at timestamptz,
    enabled boolean not null default true,
    -- Why Baton disabled it (410 Gone, or failing continuously); null when enabled by hand.
    disabled_reason text,
    -- First failed attempt of the current run of failures (null after a success).
    failing_since timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint webhooks_pkey primary key (org_id, id)
);

create table webhook_deliveries (
    org_id uuid not null,
    id uuid not null,
    webhook_id uuid not null,
    -- Enqueue order: deliveries of one ordering key go out in this order.
    seq bigint generated always as identity,
    -- The `webhook-id` header (`msg_…`), the same on every attempt and for every endpoint.
    message_id text not null,
    event_type text not null,
    -- `handoff:<id>`, `session:<id>` or `call:<id>`: a message waits while an earlier one with
    -- the same key to the same endpoint is still pending.
    ordering_key text not null,
    -- The exact body signed and sent.
    payload text not null,
    status text not null default 'pending',
    attempts int not null default 0,
    next_attempt_at timestamptz,
    last_attempt_at timestamptz,
    last_status_code int,
    last_error text,
    created_at timestamptz not null default now(),
    delivered_at timestamptz,
    constraint webhook_deliveries_pkey primary key (org_id, id),
    constraint webhook_deliveries_status_check check (status in ('pending', 'succeeded', 'failed'))
);

-- What the workers poll: due pending deliveries.
create index webhook_deliveries_due on webhook_deliveries (next_attempt_at)
    where status = 'pending';
-- Ordering: is an earlier delivery of the same key to the same endpoint still pending?
create index webhook_deliveries_order on webhook_deliveries (org_id, webhook_id, ordering_key, seq)
    where status = 'pending';
-- The delivery log of an endpoint, newest first.
create index webhook_deliveries_log on webhook_deliveries (org_id, webhook_id, seq desc);

-- A queue table: every attempt moves a row in the partial indexes and every outcome takes it out,
-- so their heads fill with dead entries that each claim walks past. Vacuum it early and without
-- throttling rather than at the default 20 % of the table.
alter table webhook_deliveries set (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
