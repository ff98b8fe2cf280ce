-- Webhook claims per endpoint (issue 17). The workers find the endpoints that have pending
-- deliveries by skipping through the pending rows by endpoint (one index descent per endpoint),
-- and read each endpoint's earliest due deliveries from this index, so an endpoint at its
-- in-flight limit costs one descent however large its backlog. The index on `next_attempt_at`
-- alone made every claim walk the whole backlog of an endpoint at its limit (30-150 ms a claim
-- with 80,000 pending: 40-260 deliveries/s).
--
-- `next_attempt_at is not null` (true of every pending row) keeps the claim's ordering probe
-- ("an earlier pending delivery of the same key?") off this index, which it could otherwise
-- prefer when the statistics are stale (it is narrower than `webhook_deliveries_order`, and
-- walking an endpoint's whole backlog per probe).
drop index webhook_deliveries_due;
create index webhook_deliveries_due on webhook_deliveries (org_id, webhook_id, next_attempt_at)
    where status = 'pending' and next_attempt_at is not null;
