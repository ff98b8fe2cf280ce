-- Lifecycle wait histograms in one compact `bytea` per rollup row (`wait_hist`) instead of the
-- sparse `wait_bins int4[]` / `wait_counts int8[]` pair. A busy tenant's day row held a few
-- hundred bins: ~5.5 KB of arrays, so every row was TOASTed and pglz-compressed and each read
-- decompressed it and sent 20 bytes per bin (binary array elements carry a 4-byte length each).
-- The new form (`domain::lifecycle::WaitHistogram::encode`): empty when no bin holds a count;
-- else one byte `w` (1, 2, 4 or 8), the first non-zero bin as a big-endian int4, then the count of
-- every bin from it to the last non-zero one in `w` big-endian two's-complement bytes, `w` the
-- least of 1, 2, 4, 8 with every |count| < 2^(8w-1). Such a day row takes ~0.5-1 KB and stays
-- inline in its row, uncompressed.
alter table handoff_lifecycle_rollups add column wait_hist bytea not null default '';

-- Existing rows, converted set-wise: each non-zero bin with the gap (bins) since the previous
-- one, its row's first bin and width; the bytes are the header, then per bin `gap * w` zero
-- bytes and its count's last `w` bytes.
update handoff_lifecycle_rollups r
set wait_hist = e.hist
from (
    select z.org_id, z.dim, z.grain, z.bucket, z.key,
           set_byte('\x00'::bytea, 0, z.w) || int4send(min(z.bin))
           || string_agg(decode(repeat('00', z.gap * z.w), 'hex')
                         || substring(int8send(z.n) from 9 - z.w), ''::bytea order by z.bin) as hist
    from (
        select b.*,
               case when max(abs(b.n)) over k < 128 then 1
                    when max(abs(b.n)) over k < 32768 then 2
                    when max(abs(b.n)) over k < 2147483648 then 4
                    else 8 end as w,
               (b.bin - coalesce(lag(b.bin) over (k order by b.bin), b.bin - 1) - 1)::int4 as gap
        from (
            select r.org_id, r.dim, r.grain, r.bucket, r.key, x.bin, sum(x.n)::int8 as n
            from handoff_lifecycle_rollups r
            cross join unnest(r.wait_bins, r.wait_counts) as x(bin, n)
            group by r.org_id, r.dim, r.grain, r.bucket, r.key, x.bin
            having sum(x.n) <> 0
        ) b
        window k as (partition by b.org_id, b.dim, b.grain, b.bucket, b.key)
    ) z
    group by z.org_id, z.dim, z.grain, z.bucket, z.key, z.w
) e
where r.org_id = e.org_id and r.dim = e.dim and r.grain = e.grain and r.bucket = e.bucket
  and r.key = e.key;

alter table handoff_lifecycle_rollups drop constraint handoff_lifecycle_rollups_bins_check;
alter table handoff_lifecycle_rollups drop column wait_bins;
alter table handoff_lifecycle_rollups drop column wait_counts;
alter table handoff_lifecycle_rollups alter column wait_hist drop default;
