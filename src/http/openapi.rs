//! What the OpenAPI document says once for every operation, and the parameter schemas several
//! endpoints share.
//!
//! Policy: a parameter's schema accepts exactly what the server accepts, as far as OpenAPI can
//! say it (what it cannot, such as a range's start preceding its end, is in the description and
//! answered 400). Statuses that follow from how a route is served rather than from its handler
//! are added here, in [`document`], so no operation can forget them: `x-request-id` on every
//! request and response; 401 and 403 on every operation needing a token; 503 on every operation
//! that uses the database (and `Retry-After` on it, see
//! [`document_retry_after`](super::error::document_retry_after)).

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{KnownFormat, OpenApi, Ref, RefOr, Required, SchemaFormat};

/// Name of the schema of IANA time zone names (every zone the server knows).
pub const TIME_ZONE_SCHEMA: &str = "IanaTimeZone";

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// An empty string: where a parameter's empty value counts as absent, the schema says so.
fn empty() -> ObjectBuilder {
    string().max_length(Some(0))
}

/// A range bound: an RFC 3339 date-time or a date (the server also reads a date-time without
/// an offset, in the request's time zone, which no OpenAPI format names).
pub fn date_bound() -> Schema {
    OneOfBuilder::new()
        .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))))
        .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))))
        .into()
}

/// [`date_bound`], or empty (same as absent).
pub fn date_bound_or_empty() -> Schema {
    OneOfBuilder::new()
        .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))))
        .item(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))))
        .item(empty())
        .into()
}

/// An IANA time zone name.
pub fn time_zone() -> RefOr<Schema> {
    Ref::from_schema_name(TIME_ZONE_SCHEMA).into()
}

/// An IANA time zone name, or empty (same as absent).
pub fn time_zone_or_empty() -> Schema {
    OneOfBuilder::new()
        .item(Ref::from_schema_name(TIME_ZONE_SCHEMA))
        .item(empty())
        .into()
}

/// A UUID.
pub fn uuid() -> Schema {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .into()
}

/// A UUID, or empty (same as absent).
pub fn uuid_or_empty() -> Schema {
    OneOfBuilder::new().item(uuid()).item(empty()).into()
}

/// Declares a type whose schema is `$schema`, to name in `#[param(value_type = …, inline)]`
/// (unlike `schema_with`, that keeps the parameter's description and `required`).
macro_rules! param_schema {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

param_schema!(
    /// Schema of a range bound: [`date_bound`].
    DateBound => date_bound()
);
param_schema!(
    /// Schema of a range bound that may be empty: [`date_bound_or_empty`].
    DateBoundOrEmpty => date_bound_or_empty()
);
param_schema!(
    /// Schema of a time zone: [`time_zone`].
    TimeZone => time_zone()
);
param_schema!(
    /// Schema of a time zone that may be empty: [`time_zone_or_empty`].
    TimeZoneOrEmpty => time_zone_or_empty()
);
param_schema!(
    /// Schema of a UUID: [`uuid`].
    UuidParam => uuid()
);
param_schema!(
    /// Schema of a UUID that may be empty: [`uuid_or_empty`].
    UuidOrEmpty => uuid_or_empty()
);
param_schema!(
    /// Schema of the handoff list's `status`.
    StatusParam => string().enum_values(Some(["open", "completed", "failed", "abandoned"]))
);
param_schema!(
    /// Schema of the webhook delivery log's `status`.
    DeliveryStatusParam => string().enum_values(Some(["pending", "succeeded", "failed"]))
);
param_schema!(
    /// Schema of a reason filter: OpenCX's reasons.
    ReasonParam => string().enum_values(Some(
        crate::domain::events::Reason::ALL.iter().map(|r| r.as_str())
    ))
);

param_schema!(
    /// Schema of a reason filter that may be empty (same as absent).
    ReasonOrEmpty => OneOfBuilder::new()
        .item(string().enum_values(Some(
            crate::domain::events::Reason::ALL.iter().map(|r| r.as_str())
        )))
        .item(empty())
);

param_schema!(
    /// Schema of the lifecycle report's `group_by`, or empty (same as absent): the dimensions
    /// other than `all`.
    GroupByOrEmpty => OneOfBuilder::new()
        .item(string().enum_values(Some(
            crate::domain::lifecycle::Dim::ALL.iter().skip(1).map(|d| d.as_str())
        )))
        .item(empty())
);
param_schema!(
    /// Schema of the lifecycle report's `compare`, or empty (same as absent).
    CompareOrEmpty => OneOfBuilder::new()
        .item(string().enum_values(Some(["previous_period"])))
        .item(empty())
);

/// The schema of every IANA zone name the server knows (those of `chrono-tz`), in order.
fn time_zone_schema() -> Schema {
    let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    string()
        .enum_values(Some(names))
        .description(Some(
            "An IANA time zone name (`UTC`, `Europe/London`, `Asia/Kolkata`), as the tz database spells it (case matters).",
        ))
        .into()
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorDto")))
                .build(),
        )
        .build()
        .into()
}

/// Whether an operation needs a token: it does unless it says `security: []` (the probes).
fn needs_token(op: &Operation) -> bool {
    op.security.as_ref().is_none_or(|s| !s.is_empty())
}

/// Adds to every operation of `doc` what follows from how routes are served (see the module
/// documentation), and the shared schemas.
pub fn document(doc: &mut OpenApi) {
    doc.components
        .get_or_insert_with(Default::default)
        .schemas
        .insert(TIME_ZONE_SCHEMA.to_owned(), time_zone_schema().into());
    let request_id = ParameterBuilder::new()
        .name("x-request-id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .schema(Some(string()))
        .description(Some(
            "An id for this request, echoed in the `x-request-id` response header and carried by the server's logs; one is generated when absent.",
        ))
        .build();
    let request_id_header = HeaderBuilder::new()
        .schema(string())
        .description(Some(
            "The request's `x-request-id` as sent, or the UUID generated for it.",
        ))
        .build();
    let unauthorized = error_response(
        "Missing, malformed, badly signed, expired, not yet valid, unknown or revoked token (with `WWW-Authenticate: Bearer`)",
    );
    let forbidden = error_response("The token lacks the scope this operation needs");
    let unavailable = error_response(
        "The database is unavailable or too slow, or the request timed out; retry after `Retry-After` seconds",
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            op.parameters
                .get_or_insert_with(Vec::new)
                .push(request_id.clone());
            let secured = needs_token(op);
            let responses = &mut op.responses.responses;
            if secured {
                responses
                    .entry("401".to_owned())
                    .or_insert_with(|| unauthorized.clone());
                responses
                    .entry("403".to_owned())
                    .or_insert_with(|| forbidden.clone());
            }
            // Only liveness answers without the database.
            if path != "/healthz" {
                responses
                    .entry("503".to_owned())
                    .or_insert_with(|| unavailable.clone());
            }
            for response in responses.values_mut() {
                if let RefOr::T(response) = response {
                    response
                        .headers
                        .entry("x-request-id".to_owned())
                        .or_insert_with(|| request_id_header.clone());
                }
            }
        }
    }
}
