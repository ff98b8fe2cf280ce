-- Tenancy and authentication: resellers own organizations; tokens are JWTs whose ids (jti) are
-- recorded here so that a token can be revoked and so that only tokens Baton issued are accepted.

-- A reseller (Telzino's word) groups organizations; its tokens read, never write, their data.
create table resellers (
    id uuid primary key,
    slug text not null,
    name text not null,
    created_at timestamptz not null default now(),
    constraint resellers_slug_key unique (slug),
    -- Slugs appear in URLs (PolyAI's account_id) and shell commands: keep them plain.
    constraint resellers_slug_check check (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$')
);

-- An organization is the tenant: every row of tenant data carries its id first.
create table organizations (
    id uuid primary key,
    slug text not null,
    name text not null,
    reseller_id uuid,
    -- IANA zone for day and hour buckets when a request names none; validated by the writer.
    timezone text not null default 'UTC',
    created_at timestamptz not null default now(),
    constraint organizations_slug_key unique (slug),
    constraint organizations_slug_check check (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    constraint organizations_reseller_id_fkey foreign key (reseller_id) references resellers (id)
);

create index organizations_reseller_id_idx on organizations (reseller_id) where reseller_id is not null;

-- Every token Baton issued; a token whose jti is missing here, or revoked, is refused.
create table api_tokens (
    jti uuid primary key,
    org_id uuid,
    reseller_id uuid,
    scopes text[] not null,
    issued_at timestamptz not null,
    expires_at timestamptz not null,
    revoked_at timestamptz,
    constraint api_tokens_org_id_fkey foreign key (org_id) references organizations (id),
    constraint api_tokens_reseller_id_fkey foreign key (reseller_id) references resellers (id),
    -- A token speaks for exactly one organization or one reseller.
    constraint api_tokens_one_principal check (num_nonnulls(org_id, reseller_id) = 1),
    constraint api_tokens_scopes_check check (scopes <@ array['read_all', 'write_all']::text[] and cardinality(scopes) > 0)
);

-- Server-wide secrets (the JWT signing key when BATON_JWT_SECRET is unset), generated once so
-- that the CLI and every server on the same database sign and verify alike.
create table server_secrets (
    name text primary key,
    value bytea not null,
    created_at timestamptz not null default now()
);
