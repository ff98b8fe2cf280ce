-- One grain encoding in every rollup table: the bucket's length in seconds, as `integer`, with a
-- check listing the grains the table keeps (the ladders of `src/domain/buckets.rs`).
--
-- Until now each family of rollups wrote its grain its own way: the handoff analytics tables an
-- index into a list of lengths (0 = 15 minutes, 1 = hour, 2 = day, 3 = 7 days; migration 04),
-- the organizations' call tables the length in minutes as `smallint` (migration 05), the
-- resellers' in minutes as `integer` (migration 06), and the code bridged the three. A length in
-- seconds says what a bucket is without a lookup table, fits every grain from 15 minutes to 128
-- days (and any a future rollup needs) in one type, and is the unit a timestamp's epoch is
-- counted in: a bucket starts at `to_timestamp(floor(extract(epoch from t) / grain) * grain)`.
--
-- The existing rows are converted in place (each table is rewritten once, its keys rebuilt).

alter table handoff_rollup_totals
    drop constraint handoff_rollup_totals_grain_check,
    alter column grain type integer using (array[900, 3600, 86400, 604800])[grain + 1],
    add constraint handoff_rollup_totals_grain_check check (grain in (900, 3600, 86400, 604800));

alter table handoff_rollup_breakdown
    drop constraint handoff_rollup_breakdown_grain_check,
    alter column grain type integer using (array[900, 3600, 86400, 604800])[grain + 1],
    add constraint handoff_rollup_breakdown_grain_check
        check (grain in (900, 3600, 86400, 604800));

alter table session_rollups
    drop constraint session_rollups_grain_check,
    alter column grain type integer using (array[900, 3600, 86400, 604800])[grain + 1],
    add constraint session_rollups_grain_check check (grain in (900, 3600, 86400, 604800));

alter table call_metric_rollups
    drop constraint call_metric_rollups_grain_check,
    alter column grain type integer using grain * 60,
    add constraint call_metric_rollups_grain_check check (grain in (900, 3600, 86400));

alter table call_escalation_rollups
    drop constraint call_escalation_rollups_grain_check,
    alter column grain type integer using grain * 60,
    add constraint call_escalation_rollups_grain_check check (grain in (900, 3600, 86400));

alter table reseller_call_rollups
    drop constraint reseller_call_rollups_grain_check,
    alter column grain type integer using grain * 60,
    add constraint reseller_call_rollups_grain_check check (grain in
        (900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 691200, 1382400, 2764800,
         5529600, 11059200));

alter table reseller_agent_rollups
    drop constraint reseller_agent_rollups_grain_check,
    alter column grain type integer using grain * 60,
    add constraint reseller_agent_rollups_grain_check check (grain in
        (900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 691200, 1382400, 2764800,
         5529600, 11059200));

alter table reseller_escalation_rollups
    drop constraint reseller_escalation_rollups_grain_check,
    alter column grain type integer using grain * 60,
    add constraint reseller_escalation_rollups_grain_check check (grain in
        (900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 691200, 1382400, 2764800,
         5529600, 11059200));
