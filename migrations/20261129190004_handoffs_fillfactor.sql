-- Handoff rows are updated in place by later batches (every state change, the completion, a
-- retry: two to four updates in a handoff's life), and none of those changes an indexed column
-- (the indexes are on the organization, the handoff and session ids, the shared id and the
-- first initiation). With full pages each such update is a new tuple on another page and a new
-- entry in every index of the table; with room left on the page it is a heap-only (HOT) update
-- that touches no index. 10 % of each page is kept for them, as for the rollup tables. It applies
-- to pages written from now on (existing pages fill up as before until they are rewritten).
alter table handoffs set (fillfactor = 90);
