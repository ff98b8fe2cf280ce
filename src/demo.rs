//! `serve --demo`: the `demo` organization, a read+write token for it, and ready-to-paste
//! `curl` lines. Idempotent: a second run finds the organization and only issues a new token.

use std::net::SocketAddr;

use chrono::Duration;
use sqlx::PgPool;

use crate::admin::{self, AdminError};
use crate::auth::{Keys, Scope, Subject};
use crate::store;

/// The demo organization's slug.
pub const DEMO_ORG: &str = "demo";

/// Creates the demo organization if needed, issues a token and prints how to try the API.
pub async fn prepare(pool: &PgPool, keys: &Keys, addr: SocketAddr) -> anyhow::Result<()> {
    let org = match store::tenants::org_by_slug(pool, DEMO_ORG).await? {
        Some(org) => org,
        None => match admin::create_org(pool, DEMO_ORG, Some("Demo Inc."), None, Some("UTC")).await
        {
            Ok(org) => org,
            // Another process created it meanwhile.
            Err(AdminError::Exists { .. }) => store::tenants::org_by_slug(pool, DEMO_ORG)
                .await?
                .ok_or_else(|| anyhow::anyhow!("demo organization vanished"))?,
            Err(e) => return Err(e.into()),
        },
    };
    let issued = admin::issue_token_for(
        pool,
        keys,
        Subject::Org(org.id),
        &[Scope::ReadAll, Scope::WriteAll],
        Duration::days(30),
    )
    .await?;
    let base = format!("http://{addr}");
    println!(
        "Baton demo: organization `{slug}` ({id}), token valid until {exp} (read_all, write_all).\n\
         \n\
         export BATON_TOKEN={token}\n\
         \n\
         curl -s {base}/readyz\n\
         curl -s {base}/v1/me -H \"Authorization: Bearer $BATON_TOKEN\"\n\
         curl -s {base}/openapi.json | jq '.paths | keys'\n",
        slug = org.slug,
        id = org.id,
        exp = issued.expires_at.format("%Y-%m-%d"),
        token = issued.token,
    );
    Ok(())
}
