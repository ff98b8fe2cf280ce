-- The events → organizations check without a transition table, so that `events` can be
-- distributed by organization (Citus; see docs/SCALING.md).
--
-- Migration 7 checked the organizations of an insert once per statement through a statement-level
-- trigger `referencing new table`; Citus does not support transition tables on distributed
-- tables. The same guarantee, with a row-level trigger (which Citus runs on each shard): an
-- inserted event's organization must exist, and is locked `for key share` (as a foreign key
-- does) until the transaction ends, so it cannot be deleted under the insert. Checked once per
-- organization per transaction: the trigger's WHEN clause skips rows whose organization this
-- transaction has already checked (a transaction-local setting the function sets), so a batch of
-- one organization's events pays one lookup, and every other row one comparison instead of a
-- function call. (The lock taken by the first check lasts until commit, which is what makes
-- skipping the others safe; a rolled-back savepoint reverts the setting too.)

drop trigger events_organizations_exist on events;
drop function events_organizations_exist();

create function events_organization_exists() returns trigger language plpgsql as $$
begin
    perform 1 from organizations o where o.id = new.org_id for key share of o;
    if not found then
        raise foreign_key_violation
            using message = 'insert into events: the organization does not exist',
                  constraint = 'events_org_id_fkey';
    end if;
    perform set_config('baton.events_org_checked', new.org_id::text, true);
    return new;
end;
$$;

create trigger events_organization_exists before insert on events
    for each row
    when (current_setting('baton.events_org_checked', true) is distinct from new.org_id::text)
    execute function events_organization_exists();
