//! Who is calling: tokens, scopes and the tenant a request may touch.
//!
//! Policy: a token is an HS256 JWT with `iss`, `aud`, `exp`, `iat`, `jti`, `scopes` and exactly one
//! of `org` or `reseller`. Verification pins the algorithm, requires `exp`, `iss` and `aud`, and
//! honours `nbf` when present. The signature alone is not trusted: whoever holds the secret could
//! sign any claims, so the `jti` must be one Baton issued and has not revoked, and the claims must
//! say exactly what was recorded when it was issued ([`Claims::matches`], checked by the extractor
//! in [`extract`]).
//! [`OrgId`] can only be made by that extractor and the read scope resolved from it ([`scope`]), so every store function that takes one is
//! reached only for a tenant the caller may see.

pub mod extract;
pub mod revocation;
pub mod scope;

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::tokens::TokenRecord;

/// The `iss` of every Baton token.
pub const ISSUER: &str = "baton";
/// The `aud` of every Baton token.
pub const AUDIENCE: &str = "baton-api";
/// Shortest accepted signing secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// What a token may do. `write_all` implies `read_all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Scope {
    /// Read every resource of the token's tenant.
    ReadAll,
    /// Write (and read) every resource of the token's tenant.
    WriteAll,
}

impl Scope {
    /// The wire name (`read_all`, `write_all`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ReadAll => "read_all",
            Scope::WriteAll => "write_all",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read_all" => Some(Scope::ReadAll),
            "write_all" => Some(Scope::WriteAll),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a set of granted scopes satisfies `required` (`write_all` implies `read_all`).
///
/// ```
/// use baton::auth::{Scope, grants};
/// assert!(grants(&[Scope::WriteAll], Scope::ReadAll));
/// assert!(!grants(&[Scope::ReadAll], Scope::WriteAll));
/// ```
pub fn grants(granted: &[Scope], required: Scope) -> bool {
    granted.contains(&required)
        || (required == Scope::ReadAll && granted.contains(&Scope::WriteAll))
}

/// An organization the caller may access. Only [`extract`] and [`scope`] construct one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrgId(Uuid);

impl OrgId {
    /// The organization's id.
    pub fn get(self) -> Uuid {
        self.0
    }

    /// An organization named by an operator on the command line (`baton rebuild --org`), who
    /// holds the database itself. Never for a request: those get theirs from the extractor.
    pub(crate) fn for_admin(id: Uuid) -> OrgId {
        OrgId(id)
    }

    /// The organization a stored row belongs to (a webhook outbox row the workers fan out).
    pub(crate) fn of_stored_row(id: Uuid) -> OrgId {
        OrgId(id)
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A reseller whose token is calling. Only [`extract`] constructs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResellerId(Uuid);

impl ResellerId {
    /// The reseller's id.
    pub fn get(self) -> Uuid {
        self.0
    }
}

/// Whom a token speaks for, as written in its claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// One organization (`org` claim).
    Org(Uuid),
    /// One reseller and, for reading, all of its organizations (`reseller` claim).
    Reseller(Uuid),
}

/// The claims of a Baton token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
    /// `org:<uuid>` or `reseller:<uuid>`, for logs and other JWT tooling.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
    /// The token's id, the handle for revocation.
    pub jti: Uuid,
    /// What the token may do.
    pub scopes: Vec<Scope>,
    /// The organization the token speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<Uuid>,
    /// The reseller the token speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reseller: Option<Uuid>,
    /// Not valid before, seconds since the epoch. Baton does not set it; when present it is
    /// honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

impl Claims {
    /// Claims for a new token.
    pub fn new(
        subject: Subject,
        scopes: Vec<Scope>,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Claims {
        let sub = subject_claim(subject);
        let (org, reseller) = match subject {
            Subject::Org(id) => (Some(id), None),
            Subject::Reseller(id) => (None, Some(id)),
        };
        Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub,
            exp: expires_at.timestamp(),
            iat: issued_at.timestamp(),
            jti: Uuid::new_v4(),
            scopes,
            org,
            reseller,
            nbf: None,
        }
    }

    /// The subject, when the claims name exactly one of `org` and `reseller`.
    pub fn subject(&self) -> Option<Subject> {
        match (self.org, self.reseller) {
            (Some(org), None) => Some(Subject::Org(org)),
            (None, Some(reseller)) => Some(Subject::Reseller(reseller)),
            _ => None,
        }
    }

    /// Whether the claims say exactly what was recorded when the token was issued: the same
    /// subject (and `sub` written from it), the same set of scopes, and the same `iat` and `exp`
    /// (whole seconds). A token re-signed with other claims under a known `jti` fails here.
    pub fn matches(&self, record: &TokenRecord) -> bool {
        let subject = match (record.org_id, record.reseller_id) {
            (Some(org), None) => Subject::Org(org),
            (None, Some(reseller)) => Subject::Reseller(reseller),
            _ => return false,
        };
        let claimed: BTreeSet<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        let issued: BTreeSet<&str> = record.scopes.iter().map(String::as_str).collect();
        self.subject() == Some(subject)
            && self.sub == subject_claim(subject)
            && claimed == issued
            && self.iat == record.issued_at.timestamp()
            && self.exp == record.expires_at.timestamp()
    }
}

/// The `sub` claim of a subject: `org:<uuid>` or `reseller:<uuid>`.
fn subject_claim(subject: Subject) -> String {
    match subject {
        Subject::Org(id) => format!("org:{id}"),
        Subject::Reseller(id) => format!("reseller:{id}"),
    }
}

/// Why a token was refused (each becomes a 401 message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is not a well-formed JWT.
    #[error("malformed token: not a JWT")]
    Malformed,
    /// The header names another algorithm than HS256 (including `none`).
    #[error("token algorithm not accepted: only HS256 tokens are valid")]
    Algorithm,
    /// The signature does not match.
    #[error("invalid token signature")]
    Signature,
    /// `exp` is in the past.
    #[error("token has expired")]
    Expired,
    /// `iss` is missing or not Baton's.
    #[error("token issuer is not baton")]
    Issuer,
    /// `aud` is missing or not Baton's.
    #[error("token audience is not baton-api")]
    Audience,
    /// A required claim is missing or has the wrong type.
    #[error("token claims are invalid: {0}")]
    Claims(String),
    /// `nbf` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// The claims differ from what was recorded at issue. The message names no claim: a forger
    /// learns nothing about the issued record.
    #[error("token does not match what was issued")]
    Mismatch,
}

/// Signing and verification keys for one secret.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// Keys for an HS256 secret.
    pub fn new(secret: &[u8]) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        // Baton never sets `nbf`, but a token carrying one must not be used before it.
        validation.validate_nbf = true;
        validation.leeway = 0;
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs claims into a JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .unwrap_or_else(|e| unreachable!("HS256 signing of plain claims cannot fail: {e}"))
    }

    /// Verifies a JWT and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        // The header is checked first so that `alg: none` and friends get a precise message.
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName | ErrorKind::Json(_) => TokenError::Algorithm,
            _ => TokenError::Malformed,
        })?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Algorithm);
        }
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer => TokenError::Issuer,
                ErrorKind::InvalidAudience => TokenError::Audience,
                ErrorKind::MissingRequiredClaim(c) => missing_claim(c),
                ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
                // Claims that our type requires surface as serde's "missing field `x`".
                ErrorKind::Json(err) => match err.to_string().split('`').nth(1) {
                    Some(field) if err.to_string().starts_with("missing field") => {
                        missing_claim(field)
                    }
                    _ => TokenError::Claims(err.to_string()),
                },
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                    TokenError::Malformed
                }
                _ => TokenError::Malformed,
            })
    }
}

fn missing_claim(name: &str) -> TokenError {
    match name {
        "iss" => TokenError::Issuer,
        "aud" => TokenError::Audience,
        other => TokenError::Claims(format!("`{other}` is required")),
    }
}

/// Reads the `jti` out of a token without verifying it (for `baton token revoke <jwt>`).
pub fn unverified_jti(token: &str) -> Option<Uuid> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64_url_decode(payload)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("jti")?.as_str()?.parse().ok()
}

fn base64_url_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn keys() -> Keys {
        Keys::new(b"0123456789abcdef0123456789abcdef")
    }

    fn claims(exp_in: Duration) -> Claims {
        let now = Utc::now();
        Claims::new(
            Subject::Org(Uuid::new_v4()),
            vec![Scope::ReadAll],
            now,
            now + exp_in,
        )
    }

    #[test]
    fn round_trip() {
        let c = claims(Duration::days(1));
        let token = keys().sign(&c);
        assert_eq!(keys().verify(&token).unwrap(), c);
        assert_eq!(unverified_jti(&token), Some(c.jti));
    }

    #[test]
    fn expired_is_refused() {
        let token = keys().sign(&claims(Duration::seconds(-5)));
        assert_eq!(keys().verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn other_secret_is_refused() {
        let token = Keys::new(b"another-secret-another-secret-xx").sign(&claims(Duration::days(1)));
        assert_eq!(keys().verify(&token), Err(TokenError::Signature));
    }

    #[test]
    fn future_nbf_is_refused_past_nbf_accepted() {
        let mut c = claims(Duration::days(1));
        c.nbf = Some(Utc::now().timestamp() + 60);
        assert_eq!(
            keys().verify(&keys().sign(&c)),
            Err(TokenError::NotYetValid)
        );
        c.nbf = Some(Utc::now().timestamp() - 60);
        assert_eq!(keys().verify(&keys().sign(&c)), Ok(c));
    }

    fn record_of(c: &Claims) -> TokenRecord {
        TokenRecord {
            org_id: c.org,
            reseller_id: c.reseller,
            scopes: c.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            issued_at: DateTime::from_timestamp(c.iat, 0).unwrap(),
            expires_at: DateTime::from_timestamp(c.exp, 0).unwrap(),
            revoked: false,
        }
    }

    #[test]
    fn claims_must_equal_the_record() {
        let c = claims(Duration::days(1));
        let record = record_of(&c);
        assert!(c.matches(&record));
        // Scope order and repetition do not matter; the set does.
        let mut r = record.clone();
        r.scopes = vec!["write_all".into(), "read_all".into()];
        let mut both = c.clone();
        both.scopes = vec![Scope::ReadAll, Scope::WriteAll, Scope::ReadAll];
        assert!(both.matches(&r));
        assert!(!c.matches(&r), "fewer scopes than issued");
        assert!(!both.matches(&record), "more scopes than issued");

        let mut other = c.clone();
        other.org = Some(Uuid::new_v4());
        other.sub = format!("org:{}", other.org.unwrap());
        assert!(!other.matches(&record));
        let mut sub_only = c.clone();
        sub_only.sub = format!("org:{}", Uuid::new_v4());
        assert!(!sub_only.matches(&record));
        let mut as_reseller = c.clone();
        as_reseller.reseller = as_reseller.org.take();
        as_reseller.sub = format!("reseller:{}", as_reseller.reseller.unwrap());
        assert!(!as_reseller.matches(&record));
        let mut later = c.clone();
        later.exp += 1;
        assert!(!later.matches(&record));
        let mut earlier = c.clone();
        earlier.iat -= 1;
        assert!(!earlier.matches(&record));
        // A record holding fractions of a second still matches its whole-second claims.
        let mut fractional = record.clone();
        fractional.expires_at += chrono::TimeDelta::milliseconds(400);
        assert!(c.matches(&fractional));
    }

    #[test]
    fn scopes_imply() {
        assert!(grants(&[Scope::WriteAll], Scope::ReadAll));
        assert!(grants(&[Scope::ReadAll], Scope::ReadAll));
        assert!(!grants(&[Scope::ReadAll], Scope::WriteAll));
    }
}
