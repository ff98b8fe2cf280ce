-- The rollup rules live in Rust only (`store::metrics`, `domain::metrics`). Migration 06 also
-- wrote the reseller rules in SQL, as a function to rebuild the reseller rollups from raw calls;
-- `baton rebuild` now recomputes every projection and rollup from the raw events through the
-- ingest code itself, so the SQL copy is dropped rather than kept in step by hand. (The tests
-- keep an SQL recomputation of their own, as an independent oracle.)
drop function if exists rebuild_reseller_call_rollups();
