-- The event store (the store of record) and the projections the read endpoints use. Both are
-- written in one transaction per batch, so what was acknowledged is counted exactly once.
-- Every key starts with org_id: the same ids in two organizations never meet, and the schema can
-- be distributed by tenant.

-- Raw events, append-only. `body` is the event as received; a re-send is compared to it as
-- jsonb (key order and spacing do not matter) to tell a harmless re-send (same id, same body)
-- from a conflicting one. It is stored as json, not jsonb: ingestion writes every event and
-- reads almost none, and json skips the conversion (measured: jsonb input cost about a third
-- of the insert).
create table events (
    org_id uuid not null,
    event_id text not null,
    -- Arrival order across the organization's batches, then order within a batch.
    seq bigint generated always as identity,
    type text not null,
    occurred_at timestamptz not null,
    received_at timestamptz not null default now(),
    body json not null,
    constraint events_pkey primary key (org_id, event_id),
    constraint events_org_id_fkey foreign key (org_id) references organizations (id)
);

create function events_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'events are append-only (the store of record): % refused', tg_op;
end;
$$;

create trigger events_append_only before update or delete on events
    for each row execute function events_append_only();

create table sessions (
    org_id uuid not null,
    session_id text not null,
    channel text not null,
    agent_id text,
    started_at timestamptz not null,
    ended_at timestamptz,
    sentiment text,
    constraint sessions_pkey primary key (org_id, session_id)
);

create index sessions_started_at_idx on sessions (org_id, started_at);

create table handoffs (
    org_id uuid not null,
    handoff_id text not null,
    session_id text not null,
    shared_id text,
    -- handoff_initiated, handoff_completed, handoff_failed, or a custom topic state.
    state text not null,
    -- 1 + the retries after failures; the handoff is counted once whatever the attempts.
    attempts integer not null,
    -- Entries in handoff_states so far (the next entry is transitions + 1).
    transitions integer not null,
    reasons text[] not null,
    sentiment text,
    destination text,
    summary text,
    data jsonb not null,
    operator_id text,
    error text,
    initiated_at timestamptz not null,
    last_initiated_at timestamptz not null,
    completed_at timestamptz,
    failed_at timestamptz,
    updated_at timestamptz not null,
    constraint handoffs_pkey primary key (org_id, handoff_id),
    constraint handoffs_shared_id_key unique (org_id, shared_id),
    constraint handoffs_attempts_check check (attempts >= 1)
);

create index handoffs_initiated_at_idx on handoffs (org_id, initiated_at desc, handoff_id desc);
create index handoffs_session_idx on handoffs (org_id, session_id);

-- The history of each handoff's states, with their times.
create table handoff_states (
    org_id uuid not null,
    handoff_id text not null,
    seq integer not null,
    state text not null,
    occurred_at timestamptz not null,
    event_id text not null,
    constraint handoff_states_pkey primary key (org_id, handoff_id, seq)
);

-- What each handoff referenced (instructions, AI profiles, knowledge, tools, prohibited topics).
create table handoff_references (
    org_id uuid not null,
    handoff_id text not null,
    ref_type text not null,
    ref_id text not null,
    constraint handoff_references_pkey primary key (org_id, handoff_id, ref_type, ref_id)
);

-- No index by (ref_type, ref_id): reads by reference use the rollups, and lookups go by handoff
-- (the primary key). Such an index once lured the planner into scanning every reference of an
-- organization for each handoff.

-- Voice agents (Telzino's agents, PolyAI's projects).
create table agents (
    org_id uuid not null,
    agent_id text not null,
    name text not null,
    status text not null,
    deleted_at timestamptz,
    constraint agents_pkey primary key (org_id, agent_id)
);

create table calls (
    org_id uuid not null,
    call_id text not null,
    agent_id text not null,
    started_at timestamptz not null,
    duration_seconds double precision not null,
    outcome text not null,
    sentiment text,
    escalation_reason text,
    escalated_after_seconds double precision,
    ttft_ms double precision,
    stt_confidence double precision,
    tool_calls bigint,
    tool_call_errors bigint,
    user_corrections bigint,
    cached_tokens bigint,
    total_tokens bigint,
    constraint calls_pkey primary key (org_id, call_id)
);

create index calls_started_at_idx on calls (org_id, started_at);
