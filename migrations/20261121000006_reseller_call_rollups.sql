-- Reseller-level rollups of calls for Telzino's GET /v1/metrics, so that a reseller's request
-- over all its organizations reads a few thousand rows instead of every organization's rollups
-- (100 organizations × 91 days of slot arrays and ~140 buckets per agent took ~250 ms).
--
-- - reseller_call_rollups: per reseller, grain and UTC bucket, the same additive figures as
--   call_metric_rollups, summed over the reseller's organizations and agents. Grains double
--   from 15 minutes to 8 hours, then from a day to 128 days (each divides the next; buckets are
--   aligned on the Unix epoch), so a 90-day range needs about 15 buckets.
-- - reseller_agent_rollups: the same grains per organization and agent, only the figures an
--   agent's entry shows (narrow rows: a reseller has hundreds of agents). The rows of one
--   bucket (every agent of the reseller) are contiguous in the primary key, so a 90-day range
--   is ~15 index range scans.
-- - reseller_escalation_rollups: the same grains, per escalation reason of transferred calls.
-- - reseller_call_volume_days: per reseller and UTC day, the 96 quarter-hour slots of calls,
--   resolved calls and seconds, summed over its organizations.
-- Maintained in the ingest transaction for organizations that have a reseller (and so never
-- written for the others). An organization's reseller is therefore fixed once set: the trigger
-- below refuses to change it.

create function organizations_reseller_is_fixed() returns trigger
language plpgsql as $$
begin
    if new.reseller_id is distinct from old.reseller_id then
        raise exception 'an organization''s reseller cannot change (reseller rollups depend on it)'
            using errcode = 'check_violation';
    end if;
    return new;
end;
$$;

create trigger organizations_reseller_is_fixed
    before update of reseller_id on organizations
    for each row execute function organizations_reseller_is_fixed();

create table reseller_call_rollups (
    reseller_id uuid not null,
    -- Bucket length in minutes.
    grain integer not null,
    -- Start of the UTC bucket.
    bucket timestamptz not null,
    calls bigint not null,
    resolved bigint not null,
    transferred bigint not null,
    abandoned bigint not null,
    other_outcome bigint not null,
    duration_sum double precision not null,
    sentiment_calls bigint not null,
    positive_calls bigint not null,
    ttft_sum double precision not null,
    ttft_calls bigint not null,
    stt_sum double precision not null,
    stt_calls bigint not null,
    correction_calls bigint not null,
    zero_correction_calls bigint not null,
    context_sum double precision not null,
    context_calls bigint not null,
    tool_calls bigint not null,
    tool_call_errors bigint not null,
    constraint reseller_call_rollups_pkey primary key (reseller_id, grain, bucket),
    constraint reseller_call_rollups_grain_check check (grain in
        (15, 30, 60, 120, 240, 480, 1440, 2880, 5760, 11520, 23040, 46080, 92160, 184320))
);

create table reseller_agent_rollups (
    reseller_id uuid not null,
    grain integer not null,
    bucket timestamptz not null,
    org_id uuid not null,
    agent_id text not null,
    calls bigint not null,
    resolved bigint not null,
    transferred bigint not null,
    abandoned bigint not null,
    duration_sum double precision not null,
    sentiment_calls bigint not null,
    positive_calls bigint not null,
    constraint reseller_agent_rollups_pkey primary key (reseller_id, grain, bucket, org_id, agent_id),
    constraint reseller_agent_rollups_grain_check check (grain in
        (15, 30, 60, 120, 240, 480, 1440, 2880, 5760, 11520, 23040, 46080, 92160, 184320))
) with (fillfactor = 70);
-- A read fetches every agent row of ~15 buckets: rows of one bucket on few pages make that ~200
-- page reads instead of one per row (measured: 2.8 ms against 8 ms for 5,400 rows). Rows are
-- created bucket by bucket as calls arrive, and the free space per page keeps the updates that
-- follow on the same page (HOT).

create table reseller_escalation_rollups (
    reseller_id uuid not null,
    grain integer not null,
    bucket timestamptz not null,
    reason text not null,
    calls bigint not null,
    -- Sum of escalated_after_seconds, else the call's duration.
    seconds_sum double precision not null,
    constraint reseller_escalation_rollups_pkey primary key (reseller_id, grain, bucket, reason),
    constraint reseller_escalation_rollups_grain_check check (grain in
        (15, 30, 60, 120, 240, 480, 1440, 2880, 5760, 11520, 23040, 46080, 92160, 184320))
);

create table reseller_call_volume_days (
    reseller_id uuid not null,
    day date not null,
    calls bigint[] not null,
    resolved bigint[] not null,
    seconds double precision[] not null,
    -- The same per UTC hour (24 slots): a day inside a range in a zone whole hours from UTC
    -- reads these, a quarter of the values.
    hour_calls bigint[] not null,
    hour_resolved bigint[] not null,
    hour_seconds double precision[] not null,
    constraint reseller_call_volume_days_pkey primary key (reseller_id, day),
    constraint reseller_call_volume_days_slots_check check (
        cardinality(calls) = 96 and cardinality(resolved) = 96 and cardinality(seconds) = 96
        and cardinality(hour_calls) = 24 and cardinality(hour_resolved) = 24
        and cardinality(hour_seconds) = 24)
) with (toast_tuple_target = 8160);
-- A day's arrays take ~3 kB: above the default 2 kB target they would be compressed,
-- and decompressing 90 days took ~2 ms of every read. Kept inline and uncompressed instead,
-- for the organizations' days too (rows written from now on).
alter table call_volume_days set (toast_tuple_target = 8160);

-- Rebuilds the four tables from the raw calls (the same definitions ingestion uses; a test
-- compares its result with the rows ingestion maintains). Run here for calls stored before
-- this migration; callable again by an operator.
create function rebuild_reseller_call_rollups() returns void
language sql as $$
    delete from reseller_call_rollups;
    delete from reseller_agent_rollups;
    delete from reseller_escalation_rollups;
    delete from reseller_call_volume_days;

    insert into reseller_agent_rollups
    select o.reseller_id, g.grain,
           to_timestamp(floor(extract(epoch from c.started_at) / (g.grain * 60)) * g.grain * 60),
           c.org_id, c.agent_id,
           count(*),
           count(*) filter (where c.outcome = 'resolved'),
           count(*) filter (where c.outcome = 'transferred'),
           count(*) filter (where c.outcome = 'abandoned'),
           sum(c.duration_seconds),
           count(c.sentiment),
           count(*) filter (where c.sentiment = 'positive')
    from calls c
    join organizations o on o.id = c.org_id and o.reseller_id is not null
    cross join unnest(array[15, 30, 60, 120, 240, 480, 1440, 2880, 5760, 11520, 23040, 46080,
                            92160, 184320]) as g(grain)
    group by 1, 2, 3, 4, 5
    order by 1, 2, 3, 4, 5;

    insert into reseller_call_rollups
    select o.reseller_id, g.grain,
           to_timestamp(floor(extract(epoch from c.started_at) / (g.grain * 60)) * g.grain * 60),
           count(*),
           count(*) filter (where c.outcome = 'resolved'),
           count(*) filter (where c.outcome = 'transferred'),
           count(*) filter (where c.outcome = 'abandoned'),
           count(*) filter (where c.outcome = 'other'),
           sum(c.duration_seconds),
           count(c.sentiment),
           count(*) filter (where c.sentiment = 'positive'),
           coalesce(sum(c.ttft_ms), 0), count(c.ttft_ms),
           coalesce(sum(c.stt_confidence), 0), count(c.stt_confidence),
           count(c.user_corrections), count(*) filter (where c.user_corrections = 0),
           coalesce(sum(c.cached_tokens::float8 / c.total_tokens)
                    filter (where c.cached_tokens is not null and c.total_tokens > 0), 0),
           count(*) filter (where c.cached_tokens is not null and c.total_tokens > 0),
           coalesce(sum(c.tool_calls)
                    filter (where c.tool_calls is not null and c.tool_call_errors is not null), 0),
           coalesce(sum(c.tool_call_errors)
                    filter (where c.tool_calls is not null and c.tool_call_errors is not null), 0)
    from calls c
    join organizations o on o.id = c.org_id and o.reseller_id is not null
    cross join unnest(array[15, 30, 60, 120, 240, 480, 1440, 2880, 5760, 11520, 23040, 46080,
                            92160, 184320]) as g(grain)
    group by 1, 2, 3;

    insert into reseller_escalation_rollups
    select o.reseller_id, g.grain,
           to_timestamp(floor(extract(epoch from c.started_at) / (g.grain * 60)) * g.grain * 60),
           c.escalation_reason, count(*),
           sum(coalesce(c.escalated_after_seconds, c.duration_seconds))
    from calls c
    join organizations o on o.id = c.org_id and o.reseller_id is not null
    cross join unnest(array[15, 30, 60, 120, 240, 480, 1440, 2880, 5760, 11520, 23040, 46080,
                            92160, 184320]) as g(grain)
    where c.outcome = 'transferred' and c.escalation_reason is not null
    group by 1, 2, 3, 4;

    insert into reseller_call_volume_days
    with slots as (
        select o.reseller_id, (c.started_at at time zone 'UTC')::date as day,
               (extract(hour from c.started_at at time zone 'UTC') * 4
                + floor(extract(minute from c.started_at at time zone 'UTC') / 15))::int as slot,
               count(*) as calls,
               count(*) filter (where c.outcome = 'resolved') as resolved,
               sum(c.duration_seconds) as seconds
        from calls c
        join organizations o on o.id = c.org_id and o.reseller_id is not null
        group by 1, 2, 3
    ), days as (
        select distinct reseller_id, day from slots
    ), quarters as (
        select d.reseller_id, d.day,
               array_agg(coalesce(s.calls, 0) order by n.slot) as calls,
               array_agg(coalesce(s.resolved, 0) order by n.slot) as resolved,
               array_agg(coalesce(s.seconds, 0) order by n.slot) as seconds
        from days d
        cross join generate_series(0, 95) as n(slot)
        left join slots s on s.reseller_id = d.reseller_id and s.day = d.day and s.slot = n.slot
        group by d.reseller_id, d.day
    )
    select q.reseller_id, q.day, q.calls, q.resolved, q.seconds,
           array(select q.calls[4 * h + 1] + q.calls[4 * h + 2] + q.calls[4 * h + 3] + q.calls[4 * h + 4]
                 from generate_series(0, 23) as h order by h),
           array(select q.resolved[4 * h + 1] + q.resolved[4 * h + 2] + q.resolved[4 * h + 3]
                        + q.resolved[4 * h + 4]
                 from generate_series(0, 23) as h order by h),
           array(select q.seconds[4 * h + 1] + q.seconds[4 * h + 2] + q.seconds[4 * h + 3]
                        + q.seconds[4 * h + 4]
                 from generate_series(0, 23) as h order by h)
    from quarters q;
$$;

select rebuild_reseller_call_rollups();
