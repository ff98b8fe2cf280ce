-- `handoff.initiated` carries `explanation` (the AI's reasoning for handing off, OpenCX's field),
-- kept on the handoff like `summary` (a retry replaces it when it sends one). The new final state
-- `handoff_abandoned` (`handoff.abandoned`: the customer left before a person accepted) needs no
-- schema change: `state` is free text, as custom topic states are.
alter table handoffs add column explanation text;
