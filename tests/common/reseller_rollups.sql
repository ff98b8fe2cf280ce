-- The reseller rollups recomputed from the raw calls, in SQL, independently of Baton's Rust code:
-- the oracle `tests/api/metrics.rs` compares what ingest maintains with, and the loader of
-- `cargo bench --bench metrics` (which inserts millions of calls straight into `calls`, with no
-- events to replay). Baton itself rebuilds its rollups with `baton rebuild`, through the ingest
-- code; this file is not part of the product. It is the body of the function migration
-- 20261121000006 created (and migration 20261121000011 drops), with grains in seconds since
-- migration 20261121000012.
delete from reseller_call_rollups;
delete from reseller_agent_rollups;
delete from reseller_escalation_rollups;
delete from reseller_call_volume_days;

insert into reseller_agent_rollups
select o.reseller_id, g.grain,
       to_timestamp(floor(extract(epoch from c.started_at) / g.grain) * g.grain),
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
cross join unnest(array[900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 691200,
                        1382400, 2764800, 5529600, 11059200]) as g(grain)
group by 1, 2, 3, 4, 5
order by 1, 2, 3, 4, 5;

insert into reseller_call_rollups
select o.reseller_id, g.grain,
       to_timestamp(floor(extract(epoch from c.started_at) / g.grain) * g.grain),
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
cross join unnest(array[900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 691200,
                        1382400, 2764800, 5529600, 11059200]) as g(grain)
group by 1, 2, 3;

insert into reseller_escalation_rollups
select o.reseller_id, g.grain,
       to_timestamp(floor(extract(epoch from c.started_at) / g.grain) * g.grain),
       c.escalation_reason, count(*),
       sum(coalesce(c.escalated_after_seconds, c.duration_seconds))
from calls c
join organizations o on o.id = c.org_id and o.reseller_id is not null
cross join unnest(array[900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 691200,
                        1382400, 2764800, 5529600, 11059200]) as g(grain)
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
