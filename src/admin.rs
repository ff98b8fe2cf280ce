//! Administration: the operations behind the CLI (`reseller create`, `org create`, `token issue`,
//! `token revoke`), shared with the demo and the tests so that all of them go through one path.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{Claims, Keys, MIN_SECRET_LEN, Scope, Subject, unverified_jti};
use crate::store::{self, tenants::Organization, tenants::Reseller};

/// Name of the stored JWT secret in `server_secrets`.
const JWT_SECRET_NAME: &str = "jwt_hs256";

/// Errors of admin operations: all are the operator's to fix, and print as one line.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A slug that breaks the slug rule.
    #[error(
        "invalid slug `{0}`: use 1 to 63 lowercase letters, digits, `-` or `_`, starting with a letter or digit"
    )]
    InvalidSlug(String),
    /// The slug is taken.
    #[error("{kind} `{slug}` already exists")]
    Exists {
        /// `reseller` or `organization`.
        kind: &'static str,
        /// The slug.
        slug: String,
    },
    /// No such reseller or organization.
    #[error("no {kind} with slug `{slug}`")]
    Missing {
        /// `reseller` or `organization`.
        kind: &'static str,
        /// The slug.
        slug: String,
    },
    /// A time zone that is not an IANA name.
    #[error("unknown time zone `{0}`: use an IANA name such as UTC, Europe/London or Asia/Kolkata")]
    InvalidTimezone(String),
    /// Bad arguments to `token issue` / `token revoke`.
    #[error("{0}")]
    Invalid(String),
    /// A rebuild met a stored event it cannot replay.
    #[error(transparent)]
    Rebuild(crate::store::rebuild::RebuildError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<crate::store::rebuild::RebuildError> for AdminError {
    fn from(e: crate::store::rebuild::RebuildError) -> AdminError {
        match e {
            crate::store::rebuild::RebuildError::Database(e) => AdminError::Database(e),
            other => AdminError::Rebuild(other),
        }
    }
}

/// Whether `slug` follows the slug rule (same as the database's check constraints).
///
/// ```
/// use baton::admin::valid_slug;
/// assert!(valid_slug("acme-eu_2"));
/// assert!(!valid_slug("Acme"));
/// assert!(!valid_slug("-acme"));
/// assert!(!valid_slug(""));
/// ```
pub fn valid_slug(slug: &str) -> bool {
    let bytes = slug.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

/// The signing keys: from `BATON_JWT_SECRET` when set and not empty (at least 32 bytes), else the secret
/// generated once and stored in the database.
pub async fn signing_keys(pool: &PgPool) -> anyhow::Result<Keys> {
    if let Some(secret) = std::env::var_os("BATON_JWT_SECRET").filter(|s| !s.is_empty()) {
        let secret = secret.into_encoded_bytes();
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_LEN,
            "BATON_JWT_SECRET must be at least {MIN_SECRET_LEN} bytes long"
        );
        return Ok(Keys::new(&secret));
    }
    let secret = store::secrets::get_or_create(pool, JWT_SECRET_NAME, || {
        rand::random::<[u8; 32]>().to_vec()
    })
    .await?;
    Ok(Keys::new(&secret))
}

/// Creates a reseller.
pub async fn create_reseller(
    pool: &PgPool,
    slug: &str,
    name: Option<&str>,
) -> Result<Reseller, AdminError> {
    if !valid_slug(slug) {
        return Err(AdminError::InvalidSlug(slug.to_owned()));
    }
    store::tenants::insert_reseller(pool, slug, name.unwrap_or(slug))
        .await
        .map_err(|e| {
            if store::is_constraint(&e, "resellers_slug_key") {
                AdminError::Exists {
                    kind: "reseller",
                    slug: slug.to_owned(),
                }
            } else {
                e.into()
            }
        })
}

/// Creates an organization, optionally under a reseller, with a time zone (default UTC).
pub async fn create_org(
    pool: &PgPool,
    slug: &str,
    name: Option<&str>,
    reseller: Option<&str>,
    timezone: Option<&str>,
) -> Result<Organization, AdminError> {
    if !valid_slug(slug) {
        return Err(AdminError::InvalidSlug(slug.to_owned()));
    }
    let timezone = timezone.unwrap_or("UTC");
    if timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(AdminError::InvalidTimezone(timezone.to_owned()));
    }
    let reseller_id = match reseller {
        Some(r) => Some(reseller_id_by_slug(pool, r).await?),
        None => None,
    };
    store::tenants::insert_org(pool, slug, name.unwrap_or(slug), reseller_id, timezone)
        .await
        .map_err(|e| {
            if store::is_constraint(&e, "organizations_slug_key") {
                AdminError::Exists {
                    kind: "organization",
                    slug: slug.to_owned(),
                }
            } else {
                e.into()
            }
        })
}

/// Whom to issue a token for, by slug.
#[derive(Debug, Clone, Copy)]
pub enum TokenFor<'a> {
    /// An organization's slug.
    Org(&'a str),
    /// A reseller's slug.
    Reseller(&'a str),
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Its id, for `token revoke`.
    pub jti: Uuid,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// The id of the organization `slug`, or [`AdminError::Missing`].
async fn org_id_by_slug(pool: &PgPool, slug: &str) -> Result<Uuid, AdminError> {
    Ok(store::tenants::org_by_slug(pool, slug)
        .await?
        .ok_or_else(|| AdminError::Missing {
            kind: "organization",
            slug: slug.to_owned(),
        })?
        .id)
}

/// The id of the reseller `slug`, or [`AdminError::Missing`].
async fn reseller_id_by_slug(pool: &PgPool, slug: &str) -> Result<Uuid, AdminError> {
    Ok(store::tenants::reseller_by_slug(pool, slug)
        .await?
        .ok_or_else(|| AdminError::Missing {
            kind: "reseller",
            slug: slug.to_owned(),
        })?
        .id)
}

/// Issues a token for an organization or reseller named by slug.
pub async fn issue_token(
    pool: &PgPool,
    keys: &Keys,
    target: TokenFor<'_>,
    scopes: &[Scope],
    ttl: Duration,
) -> Result<IssuedToken, AdminError> {
    let subject = match target {
        TokenFor::Org(slug) => Subject::Org(org_id_by_slug(pool, slug).await?),
        TokenFor::Reseller(slug) => Subject::Reseller(reseller_id_by_slug(pool, slug).await?),
    };
    issue_token_for(pool, keys, subject, scopes, ttl).await
}

/// Issues a token for a subject by id, recording its `jti`.
pub async fn issue_token_for(
    pool: &PgPool,
    keys: &Keys,
    subject: Subject,
    scopes: &[Scope],
    ttl: Duration,
) -> Result<IssuedToken, AdminError> {
    if scopes.is_empty() {
        return Err(AdminError::Invalid(
            "at least one --scope is required".to_owned(),
        ));
    }
    if ttl <= Duration::zero() {
        return Err(AdminError::Invalid(
            "--ttl-days must be at least 1".to_owned(),
        ));
    }
    let mut scopes = scopes.to_vec();
    scopes.sort_by_key(|s| s.as_str());
    scopes.dedup();
    // Whole seconds, as in the JWT, so that the recorded expiry is the token's.
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now);
    let claims = Claims::new(subject, scopes.clone(), now, now + ttl);
    let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let (org_id, reseller_id) = match subject {
        Subject::Org(id) => (Some(id), None),
        Subject::Reseller(id) => (None, Some(id)),
    };
    store::tokens::insert(
        pool,
        &store::tokens::NewToken {
            jti: claims.jti,
            org_id,
            reseller_id,
            scopes: &names,
            issued_at: now,
            expires_at: now + ttl,
        },
    )
    .await?;
    Ok(IssuedToken {
        token: keys.sign(&claims),
        jti: claims.jti,
        expires_at: now + ttl,
    })
}

/// Revokes a token given its `jti` or the token itself; returns its id and revocation time.
pub async fn revoke_token(
    pool: &PgPool,
    jti_or_token: &str,
) -> Result<(Uuid, DateTime<Utc>), AdminError> {
    let arg = jti_or_token.trim();
    let jti = match arg.parse::<Uuid>() {
        Ok(jti) => jti,
        Err(_) => unverified_jti(arg).ok_or_else(|| {
            AdminError::Invalid(format!(
                "`{arg}` is neither a token id (jti) nor a Baton token"
            ))
        })?,
    };
    let at = store::tokens::revoke(pool, jti)
        .await?
        .ok_or_else(|| AdminError::Invalid(format!("no token with id {jti}")))?;
    Ok((jti, at))
}

/// Recomputes every projection and rollup of the organization `slug` (with the other
/// organizations of its reseller, whose rollups it shares), or of every organization, from the
/// raw events (see [`crate::store::rebuild`]).
pub async fn rebuild(
    pool: &PgPool,
    slug: Option<&str>,
) -> Result<crate::store::rebuild::Rebuilt, AdminError> {
    let orgs: Vec<Uuid> = match slug {
        Some(slug) => vec![org_id_by_slug(pool, slug).await?],
        None => {
            sqlx::query_scalar("select id from organizations order by id")
                .fetch_all(pool)
                .await?
        }
    };
    Ok(crate::store::rebuild::rebuild(pool, &orgs, slug.is_none()).await?)
}
