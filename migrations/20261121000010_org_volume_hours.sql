-- Hour slots for the organizations' day rows (GET /v1/metrics), as the resellers' have had
-- since migration 06.
--
-- A 90-day request of one organization reads ~91 rows of `call_volume_days`, and the three
-- 96-slot arrays of each were the largest read of the request (~2 ms of PostgreSQL time in
-- `cargo bench --bench metrics`, decoded into ~26,000 numbers). In a zone whole hours from UTC
-- (UTC itself, America/New_York, ...) the days strictly inside the range need only their 24
-- hour sums, a quarter of the values. Ingestion writes both from now on; existing rows get
-- theirs summed from their quarter hours here.
alter table call_volume_days
    add column hour_calls bigint[],
    add column hour_resolved bigint[],
    add column hour_seconds double precision[];

update call_volume_days set
    hour_calls = array(select calls[4 * h + 1] + calls[4 * h + 2] + calls[4 * h + 3]
                              + calls[4 * h + 4]
                       from generate_series(0, 23) as h order by h),
    hour_resolved = array(select resolved[4 * h + 1] + resolved[4 * h + 2] + resolved[4 * h + 3]
                                 + resolved[4 * h + 4]
                          from generate_series(0, 23) as h order by h),
    hour_seconds = array(select seconds[4 * h + 1] + seconds[4 * h + 2] + seconds[4 * h + 3]
                                + seconds[4 * h + 4]
                         from generate_series(0, 23) as h order by h);

alter table call_volume_days
    alter column hour_calls set not null,
    alter column hour_resolved set not null,
    alter column hour_seconds set not null,
    add constraint call_volume_days_hour_slots_check check (
        cardinality(hour_calls) = 24 and cardinality(hour_resolved) = 24
        and cardinality(hour_seconds) = 24);
