-- Quickchat-compatible handoff configuration: one document per organization, replaced whole by
-- each PUT, plus every accepted PUT kept as a revision.
--
-- The document is stored as one value rather than one table per section: the API only ever reads
-- and writes it whole, and one row read per GET is what lets the endpoint serve thousands of
-- requests a second. It is stored as the exact GET body (json, not jsonb, so the text and its field
-- order are kept): a GET sends the stored text as is, with no parsing or rendering. Ids of list items are issued per organization and per section from the
-- counters below, so "an id this organization's document ever had" is exactly 1 ≤ id < counter:
-- the counters are the record of every id issued, and they never go back.

create table handoff_configurations (
    org_id uuid not null,
    -- The current document (settings, availability, generic_guidelines, custom_guidelines,
    -- routing_profiles), rendered as the API answers it; validated by the writer.
    document json not null,
    -- 0 for the default document no PUT has replaced yet, then the number of accepted PUTs. The
    -- ETag is built from it, so it must only grow.
    revision bigint not null,
    -- Next id to issue per section (ids start at 1 and are never reused).
    next_availability_id bigint not null default 1,
    next_custom_guideline_id bigint not null default 1,
    next_routing_profile_id bigint not null default 1,
    updated_at timestamptz not null default now(),
    constraint handoff_configurations_pkey primary key (org_id),
    constraint handoff_configurations_org_id_fkey foreign key (org_id) references organizations (id),
    constraint handoff_configurations_revision_check check (revision >= 0),
    constraint handoff_configurations_next_ids_check check (
        next_availability_id >= 1 and next_custom_guideline_id >= 1 and next_routing_profile_id >= 1
    )
);

-- Every accepted PUT: when, with which token, and the document it produced. Rows are only ever
-- inserted, never updated, so the history is an audit trail.
create table handoff_configuration_revisions (
    org_id uuid not null,
    revision bigint not null,
    created_at timestamptz not null,
    -- The jti of the token that wrote it. No foreign key to api_tokens: the audit trail must
    -- outlive any cleanup of old tokens.
    token_jti uuid not null,
    -- The document this PUT stored, rendered as GET answered it then.
    document json not null,
    -- Also serves "newest first" listing per organization (a backward index scan).
    constraint handoff_configuration_revisions_pkey primary key (org_id, revision),
    constraint handoff_configuration_revisions_org_id_fkey foreign key (org_id) references organizations (id),
    constraint handoff_configuration_revisions_revision_check check (revision >= 1)
);
