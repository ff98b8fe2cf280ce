//! The read scope: which organization(s) a read covers, in which time zone, over which range.
//! Every endpoint that reads by organization resolves it here, through [`Scoped`] (or, for
//! PolyAI's path, [`account`]), so the rules below are written once.
//!
//! Policy:
//! - **Organizations.** An organization token reads its own organization; naming another (by
//!   id) is a 404, exactly as for an organization that does not exist. A reseller token reads its
//!   organizations: it names one with the endpoint's organization parameter (another reseller's,
//!   or an unknown id, is the same 404). Without the parameter, endpoints about one organization
//!   refuse a reseller token with a 400 naming the parameter, and endpoints that aggregate
//!   (`GET /v1/metrics`) read all of the reseller's organizations. `resellerId` (metrics), when
//!   given, must be the token's reseller, or the reseller of the token's organization.
//! - **Time zone.** The explicit `timezone` parameter when given (an unknown name is a 400), else
//!   the organization's stored zone, else UTC (a read over several organizations has no zone of
//!   its own). A stored zone that is not a known IANA name is read as UTC and logged as a
//!   warning, rather than failing the request: the caller did nothing wrong and cannot repair it,
//!   `baton org create` refuses unknown zones, so such a zone only comes from editing the table by
//!   hand or from a name later withdrawn from the time zone database; every dashboard of the
//!   organization would otherwise fail until an operator noticed. The answer stays self-describing
//!   (analytics write their bounds with the zone's offset), and `timezone` overrides it.
//!   The stored zone is read only when the range needs a zone.
//! - **Range.** Endpoints choose their kind ([`ReadRange`]): none, optional filter bounds of any
//!   length ([`Bounds`]), or a report range of at most 366 days ([`TimeRange`], see
//!   [`crate::domain::timerange`]).
//! - **Errors.** Malformed values (an organization id that is not a UUID, an unknown zone, a
//!   missing required bound), together with the endpoint's own parameter problems, are one 400
//!   listing each in `details`; then the organization (404, or the 400 of a reseller token that
//!   must name one); then the bounds (400).
//!
//! Each endpoint keeps its own spelling (`organization_id`, `organizationId`) and its own reading
//! of empty values: its query type hands over the raw values through [`ScopeQuery`].

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use uuid::Uuid;

use super::extract::{Caller, Principal, ReadAccess};
use super::revocation::TokenVerdicts;
use super::{Keys, OrgId, ResellerId};
use crate::domain::timerange::{
    Bound, BoundNames, ParamError, TimeRange, parse_bound, parse_timezone,
};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::Query;
use crate::store;
use crate::store::tenants::Organization;

/// How an endpoint spells its scope parameters, and how its range is bounded.
#[derive(Debug, Clone, Copy)]
pub struct ScopeSpec {
    /// The organization parameter (`organization_id`, `organizationId`).
    pub organization: &'static str,
    /// The reseller parameter (`resellerId`), for endpoints that take one.
    pub reseller: &'static str,
    /// The zone parameter.
    pub timezone: &'static str,
    /// The range's start parameter.
    pub start: &'static str,
    /// The range's end parameter.
    pub end: &'static str,
    /// Whether a report range needs both bounds (else the end defaults to now and the start to
    /// `default_days` before it).
    pub range_required: bool,
    /// Days a report range covers when its start is not given.
    pub default_days: i64,
}

impl ScopeSpec {
    /// The snake_case spelling (OpenCX, Quickchat, Baton's own endpoints).
    pub const SNAKE: ScopeSpec = ScopeSpec {
        organization: "organization_id",
        reseller: "reseller_id",
        timezone: "timezone",
        start: "start_date",
        end: "end_date",
        range_required: false,
        default_days: 30,
    };

    /// The camelCase spelling (Telzino).
    pub const CAMEL: ScopeSpec = ScopeSpec {
        organization: "organizationId",
        reseller: "resellerId",
        timezone: "timezone",
        start: "startDate",
        end: "endDate",
        range_required: false,
        default_days: 30,
    };
}

/// The raw values of the scope parameters, as the endpoint reads its query (an endpoint that
/// treats an empty value as absent hands over `None` for it).
#[derive(Debug, Clone, Copy, Default)]
pub struct ScopeParams<'a> {
    /// The organization parameter.
    pub organization: Option<&'a str>,
    /// The reseller parameter.
    pub reseller: Option<&'a str>,
    /// The zone parameter.
    pub timezone: Option<&'a str>,
    /// The range's start.
    pub start: Option<&'a str>,
    /// The range's end.
    pub end: Option<&'a str>,
}

/// The query of a read endpoint: its spelling, the organizations and the range it reads.
pub trait ScopeQuery: DeserializeOwned + Send + Sync + 'static {
    /// One organization ([`OrgId`]) or possibly all of a reseller's ([`Orgs`]).
    type Orgs: ReadOrgs;
    /// The kind of range: `()`, [`Bounds`] or [`TimeRange`].
    type Range: ReadRange;
    /// The parameters' names.
    const SPEC: ScopeSpec;
    /// The scope parameters' values.
    fn scope_params(&self) -> ScopeParams<'_>;
    /// The endpoint's other parameters' problems, reported in the same 400 as malformed scope
    /// values (before the organization is looked up).
    fn problems(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

/// The organizations a read covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orgs {
    /// One organization: the token's own, or the one named.
    One(OrgId),
    /// Every organization of a reseller (a reseller token naming none), oldest first.
    Reseller {
        /// The reseller.
        reseller: ResellerId,
        /// Its organizations.
        orgs: Vec<OrgId>,
    },
}

impl Orgs {
    /// The organizations, as a list.
    pub fn ids(&self) -> Vec<OrgId> {
        match self {
            Orgs::One(org) => vec![*org],
            Orgs::Reseller { orgs, .. } => orgs.clone(),
        }
    }
}

/// What an endpoint reads: one organization, or possibly all of a reseller's.
pub trait ReadOrgs: Sized + Send {
    /// Whether a reseller token that names no organization reads all of its organizations
    /// (else it is a 400 naming the parameter).
    const RESELLER_READS_ALL: bool;
    /// From the resolved organizations.
    fn from_orgs(orgs: Orgs) -> Result<Self, ApiError>;
}

impl ReadOrgs for OrgId {
    const RESELLER_READS_ALL: bool = false;
    fn from_orgs(orgs: Orgs) -> Result<OrgId, ApiError> {
        match orgs {
            Orgs::One(org) => Ok(org),
            Orgs::Reseller { .. } => Err(ApiError::Internal(anyhow::anyhow!(
                "a one-organization scope resolved to a reseller's organizations"
            ))),
        }
    }
}

impl ReadOrgs for Orgs {
    const RESELLER_READS_ALL: bool = true;
    fn from_orgs(orgs: Orgs) -> Result<Orgs, ApiError> {
        Ok(orgs)
    }
}

/// A kind of range.
pub trait ReadRange: Sized + Send {
    /// Whether resolving it needs the zone (reading a stored zone costs a query).
    fn needs_zone(params: &ScopeParams<'_>) -> bool;
    /// Problems visible before the zone is known (a missing required bound).
    fn missing(params: &ScopeParams<'_>, spec: &ScopeSpec) -> Vec<FieldError>;
    /// The range, in zone `tz`.
    fn resolve(params: &ScopeParams<'_>, spec: &ScopeSpec, tz: Tz)
    -> Result<Self, Vec<FieldError>>;
}

/// No range (a lookup).
impl ReadRange for () {
    fn needs_zone(_: &ScopeParams<'_>) -> bool {
        false
    }
    fn missing(_: &ScopeParams<'_>, _: &ScopeSpec) -> Vec<FieldError> {
        Vec::new()
    }
    fn resolve(_: &ScopeParams<'_>, _: &ScopeSpec, _: Tz) -> Result<(), Vec<FieldError>> {
        Ok(())
    }
}

/// Optional filter bounds of any length: `[start, end)`, each end open when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bounds {
    /// Inclusive start.
    pub start: Option<DateTime<Utc>>,
    /// Exclusive end.
    pub end: Option<DateTime<Utc>>,
}

impl ReadRange for Bounds {
    fn needs_zone(params: &ScopeParams<'_>) -> bool {
        params.start.is_some() || params.end.is_some()
    }
    fn missing(_: &ScopeParams<'_>, _: &ScopeSpec) -> Vec<FieldError> {
        Vec::new()
    }
    fn resolve(
        params: &ScopeParams<'_>,
        spec: &ScopeSpec,
        tz: Tz,
    ) -> Result<Bounds, Vec<FieldError>> {
        let mut problems = Vec::new();
        let mut parse = |param: &str, text: Option<&str>, bound| {
            text.and_then(|text| {
                parse_bound(param, text, tz, bound)
                    .map_err(|e| problems.push(field(e)))
                    .ok()
            })
        };
        let start = parse(spec.start, params.start, Bound::Start);
        let end = parse(spec.end, params.end, Bound::End);
        if let (Some(s), Some(e)) = (start, end)
            && s > e
        {
            problems.push(FieldError::new(
                spec.start,
                format!(
                    "must not be after {} ({} > {})",
                    spec.end,
                    s.to_rfc3339(),
                    e.to_rfc3339()
                ),
            ));
        }
        if problems.is_empty() {
            Ok(Bounds { start, end })
        } else {
            Err(problems)
        }
    }
}

/// A report range (at most 366 days; see [`TimeRange::resolve`]).
impl ReadRange for TimeRange {
    fn needs_zone(_: &ScopeParams<'_>) -> bool {
        true
    }
    fn missing(params: &ScopeParams<'_>, spec: &ScopeSpec) -> Vec<FieldError> {
        if !spec.range_required {
            return Vec::new();
        }
        [(spec.start, params.start), (spec.end, params.end)]
            .into_iter()
            .filter(|(_, value)| value.is_none())
            .map(|(param, _)| {
                FieldError::new(
                    param,
                    "required, an ISO 8601 date-time or date (e.g. 2025-01-01T00:00:00.000Z)",
                )
            })
            .collect()
    }
    fn resolve(
        params: &ScopeParams<'_>,
        spec: &ScopeSpec,
        tz: Tz,
    ) -> Result<TimeRange, Vec<FieldError>> {
        TimeRange::resolve(
            params.start,
            params.end,
            tz,
            Utc::now(),
            spec.default_days,
            BoundNames {
                start: spec.start,
                end: spec.end,
            },
        )
        .map_err(|e| vec![field(e)])
    }
}

fn field(e: ParamError) -> FieldError {
    FieldError::new(e.param, e.message)
}

/// One 400 listing `problems` (the message joins them, `details` lists them).
pub fn invalid(problems: Vec<FieldError>) -> ApiError {
    let message = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::invalid(message, problems)
}

/// A read request with its scope resolved: the caller (whose token grants `read_all`), the
/// organization(s), the range, and the endpoint's query.
#[derive(Debug)]
pub struct Scoped<Q: ScopeQuery> {
    /// The verified caller.
    pub caller: Caller,
    /// The organization(s) read.
    pub orgs: Q::Orgs,
    /// The range read (in its zone, for reports).
    pub range: Q::Range,
    /// The endpoint's query.
    pub query: Q,
}

impl<Q, S> FromRequestParts<S> for Scoped<Q>
where
    Q: ScopeQuery,
    S: Send + Sync,
    PgPool: FromRef<S>,
    Arc<Keys>: FromRef<S>,
    Arc<TokenVerdicts>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The token first (401, 403), then the query (400), as every endpoint answers.
        let ReadAccess(caller) = ReadAccess::from_request_parts(parts, state).await?;
        let Query(query) = Query::<Q>::from_request_parts(parts, state).await?;
        let pool = PgPool::from_ref(state);
        let (orgs, range) = resolve::<Q>(&pool, &caller, &query).await?;
        Ok(Scoped {
            caller,
            orgs,
            range,
            query,
        })
    }
}

/// Resolves the scope of `query` for `caller` (see the module's policy).
pub async fn resolve<Q: ScopeQuery>(
    pool: &PgPool,
    caller: &Caller,
    query: &Q,
) -> Result<(Q::Orgs, Q::Range), ApiError> {
    let spec = Q::SPEC;
    let params = query.scope_params();
    let mut problems = query.problems();
    problems.extend(Q::Range::missing(&params, &spec));
    let organization = uuid_param(spec.organization, params.organization, &mut problems);
    let reseller = uuid_param(spec.reseller, params.reseller, &mut problems);
    let explicit = params
        .timezone
        .and_then(|name| match parse_timezone(spec.timezone, name) {
            Ok(tz) => Some(tz),
            Err(e) => {
                problems.push(field(e));
                None
            }
        });
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    let wants_zone = explicit.is_none() && Q::Range::needs_zone(&params);
    let (orgs, row) = organizations(
        pool,
        caller,
        Request {
            param: spec.organization,
            organization,
            reseller,
            reseller_reads_all: Q::Orgs::RESELLER_READS_ALL,
            wants_row: wants_zone,
        },
    )
    .await?;
    let tz = zone(explicit, row.as_ref());
    let range = Q::Range::resolve(&params, &spec, tz).map_err(invalid)?;
    Ok((Q::Orgs::from_orgs(orgs)?, range))
}

/// The zone of a read: the explicit one, else the organization's stored zone, else UTC (a
/// stored zone that is not an IANA name is read as UTC, with a warning: see the module's
/// policy).
pub fn zone(explicit: Option<Tz>, org: Option<&Organization>) -> Tz {
    if let Some(tz) = explicit {
        return tz;
    }
    let Some(org) = org else { return Tz::UTC };
    match org.timezone.parse::<Tz>() {
        Ok(tz) => tz,
        Err(_) => {
            tracing::warn!(
                org = %org.id,
                timezone = %org.timezone,
                "the organization's stored time zone is not a known IANA name; reading in UTC"
            );
            Tz::UTC
        }
    }
}

fn uuid_param(param: &str, value: Option<&str>, problems: &mut Vec<FieldError>) -> Option<Uuid> {
    let text = value?;
    match Uuid::parse_str(text) {
        Ok(id) => Some(id),
        Err(_) => {
            problems.push(FieldError::new(
                param,
                format!("`{text}` is not an organization or reseller id (a UUID)"),
            ));
            None
        }
    }
}

/// What a request asks of [`organizations`].
struct Request {
    param: &'static str,
    organization: Option<Uuid>,
    reseller: Option<Uuid>,
    reseller_reads_all: bool,
    /// Whether the one organization's row is needed (for its zone).
    wants_row: bool,
}

/// The organizations a request covers, with the row of the one organization when `wants_row`
/// (or when reading it was needed anyway).
async fn organizations(
    pool: &PgPool,
    caller: &Caller,
    req: Request,
) -> Result<(Orgs, Option<Organization>), ApiError> {
    match caller.principal {
        Principal::Org(own) => {
            let row = if req.wants_row || req.reseller.is_some() {
                Some(
                    store::tenants::org_by_id(pool, own.get())
                        .await?
                        .ok_or_else(|| org_not_found(own.get()))?,
                )
            } else {
                None
            };
            if let Some(r) = req.reseller
                && row.as_ref().and_then(|o| o.reseller_id) != Some(r)
            {
                return Err(reseller_not_found(r));
            }
            match req.organization {
                Some(id) if id != own.get() => Err(org_not_found(id)),
                _ => Ok((Orgs::One(own), row)),
            }
        }
        Principal::Reseller(own) => {
            if let Some(r) = req.reseller
                && r != own.get()
            {
                return Err(reseller_not_found(r));
            }
            match req.organization {
                // One query either way: the row when its zone is needed, else ownership alone.
                Some(id) if req.wants_row => {
                    let row = store::tenants::org_by_id(pool, id)
                        .await?
                        .filter(|o| o.reseller_id == Some(own.get()))
                        .ok_or_else(|| org_not_found(id))?;
                    Ok((Orgs::One(OrgId(id)), Some(row)))
                }
                Some(id) => {
                    if store::tenants::reseller_owns(pool, own.get(), id).await? {
                        Ok((Orgs::One(OrgId(id)), None))
                    } else {
                        Err(org_not_found(id))
                    }
                }
                None if req.reseller_reads_all => Ok((
                    Orgs::Reseller {
                        reseller: own,
                        orgs: readable_orgs(pool, caller).await?,
                    },
                    None,
                )),
                None => Err(ApiError::bad_request(format!(
                    "{}: required with a reseller token (the organization to read)",
                    req.param
                ))),
            }
        }
    }
}

/// Whether `caller` may read organization `id`.
async fn may_read(pool: &PgPool, caller: &Caller, id: Uuid) -> Result<bool, ApiError> {
    Ok(match caller.principal {
        Principal::Org(own) => own.get() == id,
        Principal::Reseller(reseller) => {
            store::tenants::reseller_owns(pool, reseller.get(), id).await?
        }
    })
}

/// Every organization `caller` may read: the organization token's own, or all of a reseller's
/// (oldest first).
pub async fn readable_orgs(pool: &PgPool, caller: &Caller) -> Result<Vec<OrgId>, ApiError> {
    match caller.principal {
        Principal::Org(org) => Ok(vec![org]),
        Principal::Reseller(reseller) => Ok(store::tenants::reseller_org_ids(pool, reseller.get())
            .await?
            .into_iter()
            .map(OrgId)
            .collect()),
    }
}

/// The organization a PolyAI `account_id` names (its slug or its id), if `caller` may read it.
pub async fn account(
    pool: &PgPool,
    caller: &Caller,
    account_id: &str,
) -> Result<Option<OrgId>, ApiError> {
    for candidate in store::handoffs::account_candidates(pool, account_id).await? {
        if may_read(pool, caller, candidate).await? {
            return Ok(Some(OrgId(candidate)));
        }
    }
    Ok(None)
}

fn org_not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("organization {id} not found"))
}

fn reseller_not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("reseller {id} not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(timezone: &str) -> Organization {
        Organization {
            id: Uuid::nil(),
            slug: "acme".to_owned(),
            name: "Acme".to_owned(),
            reseller_id: None,
            timezone: timezone.to_owned(),
        }
    }

    #[test]
    fn zone_explicit_then_stored_then_utc() {
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // The parameter wins over the stored zone.
        assert_eq!(zone(Some(kolkata), Some(&org("Europe/Berlin"))), kolkata);
        // The stored zone.
        assert_eq!(zone(None, Some(&org("Europe/Berlin"))), berlin);
        // No organization of its own (a reseller's organizations): UTC.
        assert_eq!(zone(None, None), Tz::UTC);
        // A stored zone that is not an IANA name: UTC, not an error.
        assert_eq!(zone(None, Some(&org("Mars/Base"))), Tz::UTC);
        assert_eq!(zone(None, Some(&org(""))), Tz::UTC);
        // An explicit zone still wins over a bad stored one.
        assert_eq!(zone(Some(kolkata), Some(&org("Mars/Base"))), kolkata);
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn filter_bounds() {
        let spec = ScopeSpec::SNAKE;
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let none = ScopeParams::default();
        assert!(!Bounds::needs_zone(&none));
        assert_eq!(
            Bounds::resolve(&none, &spec, Tz::UTC),
            Ok(Bounds::default())
        );
        // A date is a local day: the end date includes its whole day.
        let days = ScopeParams {
            start: Some("2026-11-02"),
            end: Some("2026-11-02"),
            ..Default::default()
        };
        assert!(Bounds::needs_zone(&days));
        assert_eq!(
            Bounds::resolve(&days, &spec, kolkata),
            Ok(Bounds {
                start: Some(at("2026-11-01T18:30:00Z")),
                end: Some(at("2026-11-02T18:30:00Z")),
            })
        );
        // Any length.
        let long = ScopeParams {
            start: Some("2000-01-01"),
            end: Some("2030-01-01"),
            ..Default::default()
        };
        assert!(Bounds::resolve(&long, &spec, Tz::UTC).is_ok());
        // Every problem, named.
        let bad = ScopeParams {
            start: Some("yesterday"),
            end: Some("2026-13-01"),
            ..Default::default()
        };
        let fields: Vec<String> = Bounds::resolve(&bad, &spec, Tz::UTC)
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(fields, ["start_date", "end_date"]);
        let reversed = ScopeParams {
            start: Some("2026-11-03"),
            end: Some("2026-11-01"),
            ..Default::default()
        };
        let problems = Bounds::resolve(&reversed, &spec, Tz::UTC).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "start_date");
    }

    #[test]
    fn report_ranges() {
        let required = ScopeSpec {
            range_required: true,
            ..ScopeSpec::CAMEL
        };
        let none = ScopeParams::default();
        let missing: Vec<String> = TimeRange::missing(&none, &required)
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(missing, ["startDate", "endDate"]);
        assert!(TimeRange::missing(&none, &ScopeSpec::SNAKE).is_empty());
        // Optional bounds: the last 30 days up to now.
        let r = <TimeRange as ReadRange>::resolve(&none, &ScopeSpec::SNAKE, Tz::UTC).unwrap();
        assert_eq!(r.end - r.start, chrono::Duration::days(30));
        // Over 366 days: refused, naming the end.
        let long = ScopeParams {
            start: Some("2025-01-01"),
            end: Some("2026-06-01"),
            ..Default::default()
        };
        let problems = <TimeRange as ReadRange>::resolve(&long, &required, Tz::UTC).unwrap_err();
        assert_eq!(problems[0].field, "endDate");
        // Days of the zone.
        let day = ScopeParams {
            start: Some("2026-11-02"),
            end: Some("2026-11-02"),
            ..Default::default()
        };
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let r = <TimeRange as ReadRange>::resolve(&day, &required, kolkata).unwrap();
        assert_eq!(
            (r.start, r.end, r.tz),
            (
                at("2026-11-01T18:30:00Z"),
                at("2026-11-02T18:30:00Z"),
                kolkata
            )
        );
    }

    #[test]
    fn organization_ids_are_uuids() {
        let mut problems = Vec::new();
        assert_eq!(uuid_param("organization_id", None, &mut problems), None);
        let id = Uuid::now_v7();
        assert_eq!(
            uuid_param("organization_id", Some(&id.to_string()), &mut problems),
            Some(id)
        );
        assert!(problems.is_empty());
        assert_eq!(
            uuid_param("organizationId", Some("acme"), &mut problems),
            None
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "organizationId");
        assert!(problems[0].message.contains("`acme`"));
    }
}
