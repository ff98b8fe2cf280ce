-- A version on every bucket of reseller_call_rollups, so that a server may remember the agent
-- rows of a bucket (reseller_agent_rollups) between requests and know exactly when they changed.
--
-- Why: a reseller's 90-day /v1/metrics request reads the agent rows of ~15 buckets (hundreds of
-- agents each: thousands of rows), and almost all of those buckets are closed: they only change
-- when a late call arrives for them. Ingestion writes an agent row of (reseller, grain, bucket)
-- only together with the totals row of the same bucket, in the same transaction (see
-- `store::metrics::apply_reseller`), and every write of a totals row takes a new value from this
-- sequence. So a (reseller, grain, bucket, version) read in one snapshot names one exact set of
-- agent rows: a server that holds the agent rows it read with a version reuses them while the
-- version stands, and reads them again when it moves. Sequences never go back (not even across
-- `rebuild_reseller_call_rollups()`, whose inserts take the column default), so a version is
-- never reused.
create sequence reseller_rollup_versions as bigint;

alter table reseller_call_rollups add column version bigint not null default 0;
alter table reseller_call_rollups
    alter column version set default nextval('reseller_rollup_versions');
update reseller_call_rollups set version = nextval('reseller_rollup_versions');
alter sequence reseller_rollup_versions owned by reseller_call_rollups.version;
