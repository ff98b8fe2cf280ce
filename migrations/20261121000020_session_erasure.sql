-- Erasing a session's personal data (DELETE /v1/sessions/{session_id}).
--
-- The event store stays append-only for everything but one sanctioned change: blanking the
-- personal fields of a stored event's body. The erase function sets the transaction-local
-- setting `baton.erasing` to `on`; only then does the trigger let an UPDATE through, and only one
-- that keeps every column but `body`, and whose new body is the old one with keys removed (never
-- a key added or a value changed). So erasure cannot be used to rewrite history, a stray UPDATE is
-- still refused, and the figures that replaying the events gives (baton rebuild) are unchanged:
-- the personal fields (handoff data, summary, shared_id, operator id) feed no count.
-- Deleting events stays refused here.

create or replace function events_append_only() returns trigger language plpgsql as $$
begin
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

-- One row per erased session, without personal data: the session id is kept only as a SHA-256
-- digest of the organization id and the session id (enough to recognise the session's events if
-- a client sends them again, not to read the id back), with when and how much was erased.
create table session_erasures (
    org_id uuid not null,
    session_digest bytea not null,
    erased_at timestamptz not null default now(),
    -- Handoffs of the session whose personal fields were blanked.
    handoffs integer not null,
    -- Raw events whose bodies lost personal fields.
    events integer not null,
    constraint session_erasures_pkey primary key (org_id, session_digest),
    constraint session_erasures_org_id_fkey foreign key (org_id) references organizations (id)
);
