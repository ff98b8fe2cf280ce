-- The start of an ingest transaction in one round trip (`store::events::begin_ingest`): the
-- organization's ingest lock, generic plans for the rest of the transaction, and what the batch
-- needs to know about the organization, read under the lock.
--
-- The probes must run after the lock is granted: a session erased by a transaction that held the
-- lock just before must be seen. A single SELECT would evaluate them against the snapshot taken
-- when the statement started, before the lock wait; a volatile PL/pgSQL function takes a new
-- snapshot for each statement it runs (READ COMMITTED), so its queries after the lock see every
-- transaction committed before the lock was granted, as separate statements did.
--
-- Returns: whether the organization erased sessions (`session_erasures`), its retention horizon
-- (`event_retention.pruned_before`), whether it has an enabled webhook subscription, and whether
-- it has stored a handoff configuration revision (the lifecycle's working hours).
create function baton_ingest_begin(lock_key bigint, org uuid,
                                   out erasures boolean, out pruned_before timestamptz,
                                   out webhooks boolean, out configured boolean)
language plpgsql volatile as $$
begin
    perform pg_advisory_xact_lock(lock_key);
    perform set_config('plan_cache_mode', 'force_generic_plan', true);
    erasures := exists (select 1 from session_erasures e where e.org_id = org);
    pruned_before := (select r.pruned_before from event_retention r where r.org_id = org);
    webhooks := exists (select 1 from webhooks w where w.org_id = org and w.enabled);
    configured := exists (select 1 from handoff_configuration_revisions c where c.org_id = org);
end;
$$;
