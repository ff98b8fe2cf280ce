//! The events AI platforms push in, and their validation.
//!
//! Policy: validation is strict and complete. Every problem of every event is reported at once,
//! each with its JSON path (`events[3].reasons[1]`), so that a client can fix a whole batch in
//! one go; unknown fields and unknown types are errors, not silently dropped. An optional field
//! may also be sent as `null`, meaning absent. Inputs every endpoint refuses (the NUL character
//! anywhere in an event, keys of `data` included; timestamps outside years 0001–9999 in UTC) are
//! reported the same way, with their paths, by [`validate`] (see [`input`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, Discriminator, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::{KnownFormat, Ref, RefOr, SchemaFormat};

use crate::domain::input;

/// Most events per request.
pub const MAX_EVENTS: usize = 10_000;
/// Largest request body, in bytes.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Largest `data` object of a handoff, serialized, in bytes.
pub const MAX_DATA_BYTES: usize = 64 * 1024;
/// Longest id (`id`, `session_id`, `handoff_id`, …), in characters.
pub const MAX_ID_CHARS: usize = 256;
/// Longest free text (`summary`, `error`), in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Longest short label (`sentiment`, `destination`, `escalation_reason`, agent `name`), in characters.
pub const MAX_LABEL_CHARS: usize = 256;
/// Longest call (`duration_seconds`, `escalated_after_seconds`): 366 days, in seconds. Far
/// beyond any real call, and small enough that sums over any number of calls stay finite (two
/// durations near `f64::MAX` overflowed the rollups' sums).
pub const MAX_CALL_SECONDS: f64 = 366.0 * 86_400.0;
/// Largest time to first token: one day, in milliseconds.
pub const MAX_TTFT_MS: f64 = 86_400_000.0;
/// Largest telemetry count (`tool_calls`, `total_tokens`, …), so that sums stay within 64 bits.
pub const MAX_COUNT: i64 = i32::MAX as i64;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path, from the batch (`events[3].reasons`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a wire name.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            fn names() -> String {
                [$($text),+].join(", ")
            }
        }

        impl WireEnum for $name {
            const ALL: &'static [$name] = $name::ALL;

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }

            fn parse(s: &str) -> Option<$name> {
                $name::parse(s)
            }

            fn names() -> String {
                $name::names()
            }
        }
    };
}

/// A closed set of wire names (declared with [`string_enum!`]).
trait WireEnum: Copy + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// The wire name.
    fn as_str(self) -> &'static str;
    /// Parses a wire name.
    fn parse(s: &str) -> Option<Self>;
    /// Every wire name, comma-separated.
    fn names() -> String;
}

string_enum! {
    /// Where a session happens.
    Channel {
        /// Web chat.
        Web = "web",
        /// E-mail.
        Email = "email",
        /// Phone call.
        PhoneVoice = "phone_voice",
        /// Slack.
        Slack = "slack",
        /// SMS.
        Sms = "sms",
        /// WhatsApp.
        Whatsapp = "whatsapp",
        /// Instagram.
        Instagram = "instagram",
        /// Messenger.
        Messenger = "messenger",
        /// API.
        Api = "api",
        /// Voice in the browser.
        WebVoice = "web_voice",
    }
}

string_enum! {
    /// Why the AI handed off (OpenCX's reasons).
    Reason {
        /// The AI judged a human should take over.
        AiImpliedHandoff = "ai_implied_handoff",
        /// The instructions say to hand off here.
        BasedOnInstructions = "based_on_instructions",
        /// The instructions were unclear.
        InstructionsNotClear = "instructions_not_clear",
        /// The knowledge base lacked the answer.
        InsufficientKnowledge = "insufficient_knowledge",
        /// No tool could do what was asked.
        InsufficientTools = "insufficient_tools",
        /// The topic is prohibited for the AI.
        ProhibitedTopic = "prohibited_topic",
        /// The user asked for a human.
        UserRequestedHumanAssistance = "user_requested_human_assistance",
    }
}

string_enum! {
    /// What a handoff reference points at.
    ReferenceType {
        /// An AI profile.
        AiProfile = "ai_profile",
        /// An instruction.
        Instruction = "instruction",
        /// A knowledge article.
        Knowledge = "knowledge",
        /// A prohibited topic.
        ProhibitedTopic = "prohibited_topic",
        /// A tool.
        Tool = "tool",
    }
}

string_enum! {
    /// An agent's (Telzino's) status.
    AgentStatus {
        /// Taking calls.
        Active = "active",
        /// Switched off.
        Inactive = "inactive",
        /// Cancelled.
        Cancelled = "cancelled",
        /// Being set up.
        Pending = "pending",
    }
}

string_enum! {
    /// How a call ended.
    Outcome {
        /// The AI resolved it.
        Resolved = "resolved",
        /// Transferred to a human (an escalation).
        Transferred = "transferred",
        /// The caller hung up.
        Abandoned = "abandoned",
        /// Anything else.
        Other = "other",
    }
}

string_enum! {
    /// A call's sentiment.
    CallSentiment {
        /// Positive.
        Positive = "positive",
        /// Neutral.
        Neutral = "neutral",
        /// Negative.
        Negative = "negative",
    }
}

/// The handoff states of PolyAI's state machine (custom topic states come on top).
pub mod states {
    /// A handoff was triggered (first time, or a retry after a failure).
    pub const INITIATED: &str = "handoff_initiated";
    /// A human accepted it.
    pub const COMPLETED: &str = "handoff_completed";
    /// The transfer failed.
    pub const FAILED: &str = "handoff_failed";
    /// The customer left before a person accepted (Baton's addition to PolyAI's states; final).
    pub const ABANDONED: &str = "handoff_abandoned";
}

/// A reference from a handoff to a resource of the AI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// What kind of resource.
    pub kind: ReferenceType,
    /// Its id.
    pub id: String,
}

// ---------------------------------------------------------------------------------------------
// How the declarations above become code.
// ---------------------------------------------------------------------------------------------

/// Reads the fields of one JSON object, collecting problems.
struct Reader<'a> {
    map: &'a Map<String, Value>,
    path: String,
    problems: &'a mut Vec<Problem>,
}

impl<'a> Reader<'a> {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            field: format!("{}.{key}", self.path),
            message: message.into(),
        });
    }

    /// The value of `key`, `None` when absent or null.
    fn value(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required(&mut self, key: &str) -> Option<&'a Value> {
        let v = self.value(key);
        if v.is_none() {
            self.problem(key, "is required");
        }
        v
    }

    /// Reports every key not in one of `allowed`.
    fn reject_unknown(&mut self, allowed: &[&[&str]]) {
        let unknown: Vec<String> = self
            .map
            .keys()
            .filter(|k| !allowed.iter().any(|list| list.contains(&k.as_str())))
            .cloned()
            .collect();
        for key in unknown {
            self.problem(&key, "unknown field");
        }
    }
}

/// How one field is read and what its JSON Schema is.
trait Rule {
    /// What the field holds once read.
    type Value;
    /// Reads a present, non-null value, or reports why not.
    fn read(r: &mut Reader<'_>, key: &str, v: &Value) -> Option<Self::Value>;
    /// The field's JSON Schema.
    fn schema() -> RefOr<Schema>;
}

/// An object type declared with [`object!`]: its fields, how they are read, their schemas.
trait Fields: Sized {
    /// The field names, as sent.
    const FIELDS: &'static [&'static str];
    /// Reads every field (not checking for unknown ones).
    fn read_fields(r: &mut Reader<'_>) -> Option<Self>;
    /// Adds the fields to an object schema.
    fn properties(object: ObjectBuilder) -> ObjectBuilder;
}

/// Reads one field of a [`Reader`]: `req` (absent or null is a problem), `opt` (absent or null
/// is `None`) or `default` (absent or null is the type's default). The result is `None` when
/// the field is invalid (the problem is recorded).
macro_rules! read_field {
    (req, $r:expr, $key:expr, $rule:ty) => {{
        let reader: &mut Reader<'_> = $r;
        match reader.required($key) {
            Some(v) => <$rule as Rule>::read(reader, $key, v),
            None => None,
        }
    }};
    (opt, $r:expr, $key:expr, $rule:ty) => {{
        let reader: &mut Reader<'_> = $r;
        match reader.value($key) {
            Some(v) => <$rule as Rule>::read(reader, $key, v).map(Some),
            None => Some(None),
        }
    }};
    (default, $r:expr, $key:expr, $rule:ty) => {{
        let reader: &mut Reader<'_> = $r;
        match reader.value($key) {
            Some(v) => <$rule as Rule>::read(reader, $key, v),
            None => Some(Default::default()),
        }
    }};
}

/// Adds one field's schema to an object schema (`req` fields are required; the others may be
/// absent or `null`).
fn property(
    object: ObjectBuilder,
    presence: &str,
    key: &str,
    schema: RefOr<Schema>,
    doc: &[&str],
) -> ObjectBuilder {
    let description = doc
        .iter()
        .map(|line| line.trim())
        .collect::<Vec<_>>()
        .join(" ");
    match presence {
        "req" => object
            .property(key, describe(schema, description))
            .required(key),
        _ => object.property(key, describe(nullable(schema), description)),
    }
}

/// `schema`, or `null`.
fn nullable(schema: RefOr<Schema>) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(schema)
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

/// `schema` with a description (kept as is where it cannot hold one).
fn describe(schema: RefOr<Schema>, description: String) -> RefOr<Schema> {
    match schema {
        RefOr::T(Schema::Object(mut o)) => {
            o.description = Some(description);
            RefOr::T(Schema::Object(o))
        }
        RefOr::T(Schema::Array(mut a)) => {
            a.description = Some(description);
            RefOr::T(Schema::Array(a))
        }
        RefOr::T(Schema::OneOf(mut o)) => {
            o.description = Some(description);
            RefOr::T(Schema::OneOf(o))
        }
        other => other,
    }
}

/// Declares an object type: a struct, the names of its fields, how they are read (in
/// declaration order, every problem reported; then the optional `check` block, which sees each
/// field as read: `None` when invalid), and their schemas.
macro_rules! object {
    (
        $(#[doc = $doc:literal])*
        $(#[derive($($derive:path),+)])?
        $name:ident {
            $(
                $(#[doc = $fdoc:literal])*
                $field:ident : $ty:ty = $presence:ident $rule:ty
            ),+ $(,)?
        }
        $(check($r:ident) $check:block)?
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq $($(, $derive)+)?)]
        pub struct $name {
            $(
                $(#[doc = $fdoc])*
                pub $field: $ty,
            )+
        }

        impl Fields for $name {
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),+];

            #[allow(clippy::redundant_locals)]
            fn read_fields(reader: &mut Reader<'_>) -> Option<$name> {
                $(
                    let $field = read_field!($presence, &mut *reader, stringify!($field), $rule);
                )+
                $({
                    let $r = &mut *reader;
                    $check
                })?
                Some($name {
                    $($field: $field?,)+
                })
            }

            fn properties(mut object: ObjectBuilder) -> ObjectBuilder {
                $(
                    object = property(
                        object,
                        stringify!($presence),
                        stringify!($field),
                        <$rule as Rule>::schema(),
                        &[$($fdoc),*],
                    );
                )+
                object
            }
        }
    };
}

/// Declares the event types: each an [`object!`] and a variant of [`EventKind`], with its wire
/// name.
macro_rules! event_types {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident = $wire:literal { $($body:tt)* }
    ),+ $(,)?) => {
        $(
            object! {
                $(#[doc = $doc])*
                $variant { $($body)* }
            }
        )+

        /// What an event says: one variant per event type.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventKind {
            $(
                #[doc = concat!("`", $wire, "`")]
                $variant($variant),
            )+
        }

        impl EventKind {
            /// The wire `type`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(EventKind::$variant(_) => $wire,)+
                }
            }
        }

        /// The event types, as sent.
        pub const EVENT_TYPES: &[&str] = &[$($wire),+];

        /// The fields of an event type (beyond `id`, `type` and `occurred_at`).
        fn fields_of(type_name: &str) -> &'static [&'static str] {
            match type_name {
                $($wire => <$variant as Fields>::FIELDS,)+
                _ => &[],
            }
        }

        /// Reads the fields of an event of a known type.
        fn read_kind(r: &mut Reader<'_>, type_name: &str) -> Option<EventKind> {
            match type_name {
                $($wire => <$variant as Fields>::read_fields(r).map(EventKind::$variant),)+
                _ => None,
            }
        }

        /// `(schema name, wire type, schema)` of every event type.
        fn event_schemas() -> Vec<(&'static str, &'static str, Schema)> {
            vec![$((
                concat!(stringify!($variant), "Event"),
                $wire,
                event_schema::<$variant>($wire, &[$($doc),*]),
            )),+]
        }
    };
}

/// The schema of an event of one type: `id`, `type` (this one), `occurred_at` and its fields;
/// no other field.
fn event_schema<T: Fields>(wire: &str, doc: &[&str]) -> Schema {
    let description = doc
        .iter()
        .map(|line| line.trim())
        .collect::<Vec<_>>()
        .join(" ");
    let object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .title(Some(wire))
        .description(Some(format!("`{wire}`: {description}")))
        .property(
            "id",
            describe(
                Id::schema(),
                "Client-chosen id, unique per organization: an event sent again with the same id and body is a duplicate and has no effect.".into(),
            ),
        )
        .required("id")
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([wire]))
                .description(Some("The event type.")),
        )
        .required("type")
        .property(
            "occurred_at",
            describe(
                Instant::schema(),
                "When it happened (RFC 3339, years 0001–9999 once converted to UTC).".into(),
            ),
        )
        .required("occurred_at");
    T::properties(object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

/// The schema of one event (a `oneOf` of the event types, discriminated by `type`), with a
/// component per type. Named `Event` in the OpenAPI document.
impl utoipa::PartialSchema for Event {
    fn schema() -> RefOr<Schema> {
        let mut discriminator = Discriminator::new("type");
        let mut one_of = OneOfBuilder::new().description(Some(
            "One event: `id`, `type`, `occurred_at` and the fields of its type (one schema per type, chosen by `type`). Unknown fields and types are refused; an optional field may be `null` (same as absent); the NUL character (`\\u0000`) is refused in every string and key.",
        ));
        for (name, wire, _) in event_schemas() {
            let reference = format!("#/components/schemas/{name}");
            discriminator
                .mapping
                .insert(wire.to_owned(), reference.clone());
            one_of = one_of.item(Ref::new(reference));
        }
        one_of.discriminator(Some(discriminator)).into()
    }
}

impl utoipa::ToSchema for Event {
    fn name() -> std::borrow::Cow<'static, str> {
        "Event".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for (name, _, schema) in event_schemas() {
            schemas.push((name.to_owned(), schema.into()));
        }
    }
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn number(min: f64, max: f64) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(min))
        .maximum(Some(max))
        .into()
}

/// A non-empty string of at most `MAX` characters.
struct Str<const MAX: usize>;
/// An id (`handoff_id`, …).
type Id = Str<MAX_ID_CHARS>;
/// A short label (`sentiment`, `destination`, …).
type Label = Str<MAX_LABEL_CHARS>;
/// Free text (`summary`, `error`).
type Text = Str<MAX_TEXT_CHARS>;

impl<const MAX: usize> Rule for Str<MAX> {
    type Value = String;

    fn read(r: &mut Reader<'_>, key: &str, v: &Value) -> Option<String> {
        match v.as_str() {
            None => {
                r.problem(key, "must be a string");
                None
            }
            Some("") => {
                r.problem(key, "must not be empty");
                None
            }
            Some(s) if s.chars().count() > MAX => {
                r.problem(key, format!("must be at most {MAX} characters"));
                None
            }
            Some(s) => Some(s.to_owned()),
        }
    }

    fn schema() -> RefOr<Schema> {
        string().min_length(Some(1)).max_length(Some(MAX)).into()
    }
}

/// One value of a [`string_enum!`].
struct Choice<T>(std::marker::PhantomData<T>);

impl<T: WireEnum> Rule for Choice<T> {
    type Value = T;

    fn read(r: &mut Reader<'_>, key: &str, v: &Value) -> Option<T> {
        match v.as_str().and_then(T::parse) {
            Some(t) => Some(t),
            None => {
                r.problem(key, format!("must be one of {}", T::names()));
                None
            }
        }
    }

    fn schema() -> RefOr<Schema> {
        string()
            .enum_values(Some(T::ALL.iter().map(|t| t.as_str())))
            .into()
    }
}

/// An RFC 3339 date-time within years 0001–9999 in UTC.
struct Instant;

impl Rule for Instant {
    type Value = DateTime<Utc>;

    fn read(r: &mut Reader<'_>, key: &str, v: &Value) -> Option<DateTime<Utc>> {
        match v.as_str().map(DateTime::parse_from_rfc3339) {
            Some(Ok(t)) if input::year_in_range(t.with_timezone(&Utc)) => {
                Some(t.with_timezone(&Utc))
            }
            Some(Ok(_)) => {
                r.problem(key, input::YEAR_RANGE);
                None
            }
            _ => {
                r.problem(
                    key,
                    "must be an RFC 3339 date-time such as 2026-11-21T09:30:00Z",
                );
                None
            }
        }
    }

    fn schema() -> RefOr<Schema> {
        string()
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .into()
    }
}

/// Declares a rule for a finite number within `[0, max]`.
macro_rules! bounded_number {
    ($(#[doc = $doc:literal])* $name:ident, $max:expr) => {
        $(#[doc = $doc])*
        struct $name;

        impl Rule for $name {
            type Value = f64;

            fn read(r: &mut Reader<'_>, key: &str, v: &Value) -> Option<f64> {
                let (min, max) = (0.0, $max);
                match v.as_f64() {
                    Some(n) if n.is_finite() && n >= min && n <= max => Some(n),
                    Some(_) => {
                        r.problem(key, format!("must be a number between {min} and {max}"));
                        None
                    }
                    None => {
                        r.problem(key, "must be a number");
                        None
                    }
                }
            }

            fn schema() -> RefOr<Schema> {
                number(0.0, $max)
            }
        }
    };
}

bounded_number!(
    /// Seconds of a call.
    Seconds,
    MAX_CALL_SECONDS
);
bounded_number!(
    /// Time to first token, in milliseconds.
    Millis,
    MAX_TTFT_MS
);
bounded_number!(
    /// A confidence, 0–1.
    Ratio,
    1.0
);

/// A telemetry count: an integer from 0 to [`MAX_COUNT`].
struct Count;

impl Rule for Count {
    type Value = i64;

    fn read(r: &mut Reader<'_>, key: &str, v: &Value) -> Option<i64> {
        // JSON has one number type: `3.0` is the integer 3 (as JSON Schema's `integer` says).
        let integral = v
            .as_f64()
            .filter(|n| n.fract() == 0.0 && n.abs() <= MAX_COUNT as f64)
            .map(|n| n as i64);
        match v.as_i64().or(integral) {
            Some(n) if (0..=MAX_COUNT).contains(&n) => Some(n),
            _ => {
                r.problem(key, format!("must be an integer from 0 to {MAX_COUNT}"));
                None
            }
        }
    }

    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .maximum(Some(MAX_COUNT))
            .into()
    }
}

/// The reasons of a handoff: a non-empty array; repeats are dropped, first-seen order kept.
struct Reasons;

impl Rule for Reasons {
    type Value = Vec<Reason>;

    fn read(r: &mut Reader<'_>, key: &str, v: &Value) -> Option<Vec<Reason>> {
        let items = match v {
            Value::Array(items) if !items.is_empty() => items,
            Value::Array(_) => {
                r.problem(key, "must not be empty");
                return None;
            }
            _ => {
                r.problem(key, "must be an array of reasons");
                return None;
            }
        };
        let mut reasons = Vec::new();
        let mut valid = true;
        for (i, item) in items.iter().enumerate() {
            match item.as_str().and_then(Reason::parse) {
                Some(reason) if !reasons.contains(&reason) => reasons.push(reason),
                Some(_) => {}
                None => {
                    valid = false;
                    r.problem(
                        &format!("{key}[{i}]"),
                        format!("must be one of {}", Reason::names()),
                    );
                }
            }
        }
        valid.then_some(reasons)
    }

    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Choice::<Reason>::schema())
            .min_items(Some(1))
            .into()
    }
}

/// The references of a handoff: `{type, id}` objects; repeats are dropped.
struct References;

impl Rule for References {
    type Value = Vec<Reference>;

    fn read(r: &mut Reader<'_>, key: &str, v: &Value) -> Option<Vec<Reference>> {
        let Value::Array(items) = v else {
            r.problem(key, "must be an array of {type, id} objects");
            return None;
        };
        let mut references = Vec::new();
        let mut valid = true;
        for (i, item) in items.iter().enumerate() {
            let key = format!("{key}[{i}]");
            let Some(map) = item.as_object() else {
                r.problem(&key, "must be an object {type, id}");
                valid = false;
                continue;
            };
            let mut inner = Reader {
                map,
                path: format!("{}.{key}", r.path),
                problems: r.problems,
            };
            inner.reject_unknown(&[&["type", "id"]]);
            let kind = read_field!(req, &mut inner, "type", Choice<ReferenceType>);
            let id = read_field!(req, &mut inner, "id", Id);
            match (kind, id) {
                (Some(kind), Some(id)) => {
                    let reference = Reference { kind, id };
                    if !references.contains(&reference) {
                        references.push(reference);
                    }
                }
                _ => valid = false,
            }
        }
        valid.then_some(references)
    }

    fn schema() -> RefOr<Schema> {
        let reference = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("type", Choice::<ReferenceType>::schema())
            .required("type")
            .property("id", Id::schema())
            .required("id")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        ArrayBuilder::new().items(reference).into()
    }
}

/// A JSON object of at most [`MAX_DATA_BYTES`], serialized.
struct Data;

impl Rule for Data {
    type Value = Map<String, Value>;

    fn read(r: &mut Reader<'_>, key: &str, v: &Value) -> Option<Map<String, Value>> {
        let Some(data) = v.as_object() else {
            r.problem(key, "must be a JSON object");
            return None;
        };
        let size = serde_json::to_vec(data)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_DATA_BYTES {
            r.problem(
                key,
                format!("must be at most {MAX_DATA_BYTES} bytes of JSON (is {size})"),
            );
            return None;
        }
        Some(data.clone())
    }

    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

/// The built-in handoff states, which `handoff.state` may not name.
const BUILT_IN_STATES: &[&str] = &[
    states::INITIATED,
    states::COMPLETED,
    states::FAILED,
    states::ABANDONED,
];

/// A custom topic state: `[a-z0-9_]{1,64}`, not a built-in state.
struct CustomState;

impl Rule for CustomState {
    type Value = String;

    fn read(r: &mut Reader<'_>, key: &str, v: &Value) -> Option<String> {
        let s = Str::<64>::read(r, key, v)?;
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            r.problem(key, "must match [a-z0-9_]{1,64}");
            return None;
        }
        if BUILT_IN_STATES.contains(&s.as_str()) {
            r.problem(
                key,
                "is a custom topic state; use handoff.initiated, handoff.completed, handoff.failed or handoff.abandoned for the built-in states",
            );
            return None;
        }
        Some(s)
    }

    fn schema() -> RefOr<Schema> {
        string().pattern(Some("^[a-z0-9_]{1,64}$")).into()
    }
}

/// A nested object declared with [`object!`]: unknown fields refused, problems reported under
/// the field's path.
struct Nested<T>(std::marker::PhantomData<T>);

impl<T: Fields> Rule for Nested<T> {
    type Value = T;

    fn read(r: &mut Reader<'_>, key: &str, v: &Value) -> Option<T> {
        let Some(map) = v.as_object() else {
            r.problem(key, "must be a JSON object");
            return None;
        };
        let mut inner = Reader {
            map,
            path: format!("{}.{key}", r.path),
            problems: r.problems,
        };
        inner.reject_unknown(&[T::FIELDS]);
        let before = inner.problems.len();
        let value = T::read_fields(&mut inner);
        if inner.problems.len() > before {
            return None;
        }
        value
    }

    fn schema() -> RefOr<Schema> {
        T::properties(ObjectBuilder::new().schema_type(Type::Object))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

// ---------------------------------------------------------------------------------------------
// The event types. Each is declared once, here: its wire name, its fields in the order they are
// read and reported, each field's Rust type, whether it is required, and the rule that reads it
// (which also gives its JSON Schema). Validation, the fields each type allows, the `EventKind`
// enum, `EVENT_TYPES` and the OpenAPI schemas of `POST /v1/events` all follow from it.
// ---------------------------------------------------------------------------------------------

event_types! {
    /// A session began.
    SessionStarted = "session.started" {
        /// The session.
        session_id: String = req Id,
        /// Its channel.
        channel: Channel = req Choice<Channel>,
        /// The agent (project) serving it.
        agent_id: Option<String> = opt Id,
    },
    /// A session ended.
    SessionEnded = "session.ended" {
        /// The session.
        session_id: String = req Id,
        /// Final sentiment (free text).
        sentiment: Option<String> = opt Label,
    },
    /// The AI handed the conversation off to a person: a new handoff, or the retry of a failed
    /// one (same `handoff_id`).
    HandoffInitiated = "handoff.initiated" {
        /// The handoff.
        handoff_id: String = req Id,
        /// Its session (started before).
        session_id: String = req Id,
        /// The id shared with the client's systems (unique per organization).
        shared_id: Option<String> = opt Id,
        /// Why (distinct, in the order given; repeats are ignored).
        reasons: Vec<Reason> = req Reasons,
        /// Sentiment at handoff (free text).
        sentiment: Option<String> = opt Label,
        /// Resources of the AI involved (distinct; repeats are ignored).
        references: Vec<Reference> = default References,
        /// Where it was sent (queue, skill).
        destination: Option<String> = opt Label,
        /// Summary for the human.
        summary: Option<String> = opt Text,
        /// The AI's reasoning for handing off (OpenCX's `explanation`).
        explanation: Option<String> = opt Text,
        /// PolyAI handoff state payload (a JSON object of at most 64 KiB).
        data: Option<Map<String, Value>> = opt Data,
    },
    /// A person accepted the handoff.
    HandoffCompleted = "handoff.completed" {
        /// The handoff (open: initiated or in a custom state).
        handoff_id: String = req Id,
        /// The human who took it.
        operator_id: Option<String> = opt Id,
    },
    /// The transfer failed (a later `handoff.initiated` may retry it).
    HandoffFailed = "handoff.failed" {
        /// The handoff (open: initiated or in a custom state).
        handoff_id: String = req Id,
        /// What went wrong.
        error: Option<String> = opt Text,
    },
    /// The customer left before a person accepted: the open handoff (initiated or in a custom
    /// state) ends as `handoff_abandoned`, a final state.
    HandoffAbandoned = "handoff.abandoned" {
        /// The handoff (open: initiated or in a custom state).
        handoff_id: String = req Id,
    },
    /// An open handoff entered a custom topic state.
    HandoffState = "handoff.state" {
        /// The handoff (open: initiated or in a custom state).
        handoff_id: String = req Id,
        /// The custom topic state: `[a-z0-9_]{1,64}`, not one of the built-in states.
        state: String = req CustomState,
        /// Data merged, key by key, into the handoff's stored data (a JSON object of at most
        /// 64 KiB).
        data: Option<Map<String, Value>> = opt Data,
    },
    /// An agent (project) was created or changed.
    AgentUpserted = "agent.upserted" {
        /// The agent.
        agent_id: String = req Id,
        /// Its name.
        name: String = req Label,
        /// Its status.
        status: AgentStatus = req Choice<AgentStatus>,
    },
    /// An agent (project) was deleted; it keeps its last name.
    AgentDeleted = "agent.deleted" {
        /// The agent.
        agent_id: String = req Id,
    },
    /// A call ended (Telzino's call metrics).
    CallCompleted = "call.completed" {
        /// The call (recorded once).
        call_id: String = req Id,
        /// The agent (project) that took it.
        agent_id: String = req Id,
        /// When it started (RFC 3339, years 0001–9999 in UTC).
        started_at: DateTime<Utc> = req Instant,
        /// How long it lasted, in seconds (at most 366 days).
        duration_seconds: f64 = req Seconds,
        /// How it ended (`transferred` is an escalation).
        outcome: Outcome = req Choice<Outcome>,
        /// Caller sentiment, if measured.
        sentiment: Option<CallSentiment> = opt Choice<CallSentiment>,
        /// Why it was escalated.
        escalation_reason: Option<String> = opt Label,
        /// Seconds into the call when it was escalated (at most 366 days).
        escalated_after_seconds: Option<f64> = opt Seconds,
        /// AI telemetry (every figure optional).
        telemetry: Telemetry = default Nested<Telemetry>,
    },
}

object! {
    /// AI telemetry of a call; every figure optional.
    #[derive(Default)]
    Telemetry {
        /// Time to first token, ms (at most one day).
        ttft_ms: Option<f64> = opt Millis,
        /// Speech recognition confidence, 0–1.
        stt_confidence: Option<f64> = opt Ratio,
        /// Tool calls made.
        tool_calls: Option<i64> = opt Count,
        /// Tool calls that failed (at most `tool_calls`).
        tool_call_errors: Option<i64> = opt Count,
        /// Times the caller corrected the AI.
        user_corrections: Option<i64> = opt Count,
        /// Prompt tokens served from cache (at most `total_tokens`).
        cached_tokens: Option<i64> = opt Count,
        /// Prompt tokens in all.
        total_tokens: Option<i64> = opt Count,
    }
    check(r) {
        if let (Some(Some(errors)), Some(Some(calls))) = (tool_call_errors, tool_calls)
            && errors > calls
        {
            r.problem("tool_call_errors", "must not exceed tool_calls");
        }
        if let (Some(Some(cached)), Some(Some(total))) = (cached_tokens, total_tokens)
            && cached > total
        {
            r.problem("cached_tokens", "must not exceed total_tokens");
        }
    }
}

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Client-chosen id, unique per organization.
    pub id: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// The wire `type`.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

/// The fields every event has, whatever its type.
const COMMON_FIELDS: &[&str] = &["id", "type", "occurred_at"];

/// Validates one event; problems are appended with paths under `path` (`events[3]`).
pub fn validate(value: &Value, path: &str, problems: &mut Vec<Problem>) -> Option<Event> {
    let Some(map) = value.as_object() else {
        problems.push(Problem {
            field: path.to_owned(),
            message: "must be a JSON object".to_owned(),
        });
        return None;
    };
    let before = problems.len();
    // PostgreSQL stores neither a NUL in text nor `\u0000` in jsonb, and the whole event is
    // stored as sent: a NUL anywhere in it, key or value, is refused here with its path.
    problems.extend(
        input::nul_paths(value, path)
            .into_iter()
            .map(|field| Problem {
                field,
                message: input::NUL_IN_JSON.to_owned(),
            }),
    );
    let mut r = Reader {
        map,
        path: path.to_owned(),
        problems,
    };
    let id = read_field!(req, &mut r, "id", Id);
    let occurred_at = read_field!(req, &mut r, "occurred_at", Instant);
    let type_name = match r.required("type") {
        Some(Value::String(t)) if EVENT_TYPES.contains(&t.as_str()) => Some(t.as_str()),
        Some(_) => {
            r.problem("type", format!("must be one of {}", EVENT_TYPES.join(", ")));
            None
        }
        None => None,
    };
    let type_name = type_name?;
    r.reject_unknown(&[COMMON_FIELDS, fields_of(type_name)]);
    let kind = read_kind(&mut r, type_name);
    if r.problems.len() > before {
        return None;
    }
    Some(Event {
        id: id?,
        occurred_at: occurred_at?,
        kind: kind?,
    })
}

/// Whether a set of reasons is the sorted, distinct form used for combinations.
pub fn sorted_reasons(reasons: &[Reason]) -> Vec<Reason> {
    reasons
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<Event, Vec<Problem>> {
        let mut problems = Vec::new();
        match validate(&v, "events[0]", &mut problems) {
            Some(e) if problems.is_empty() => Ok(e),
            _ => Err(problems),
        }
    }

    fn fields(v: Value) -> Vec<String> {
        check(v).unwrap_err().into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn a_full_handoff_is_read() {
        let e = check(json!({
            "id": "e1", "type": "handoff.initiated", "occurred_at": "2026-11-01T10:00:00+01:00",
            "handoff_id": "h1", "session_id": "s1", "shared_id": null,
            "reasons": ["prohibited_topic", "ai_implied_handoff", "prohibited_topic"],
            "sentiment": null,
            "references": [{"type": "instruction", "id": "i1"}, {"type": "instruction", "id": "i1"}],
            "data": {"customer_id": "12345"}
        }))
        .unwrap();
        assert_eq!(e.occurred_at.to_rfc3339(), "2026-11-01T09:00:00+00:00");
        let EventKind::HandoffInitiated(h) = e.kind else {
            panic!()
        };
        assert_eq!(
            h.reasons,
            vec![Reason::ProhibitedTopic, Reason::AiImpliedHandoff]
        );
        assert_eq!(h.references.len(), 1);
        assert_eq!(h.shared_id, None);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let got = fields(json!({
            "id": "", "type": "handoff.initiated", "occurred_at": "yesterday",
            "session_id": 5, "reasons": ["bogus", "ai_implied_handoff"], "colour": "red",
            "references": [{"type": "nope", "id": "x", "extra": 1}]
        }));
        assert_eq!(
            got.into_iter().collect::<BTreeSet<_>>(),
            [
                "events[0].id",
                "events[0].occurred_at",
                "events[0].colour",
                "events[0].handoff_id",
                "events[0].session_id",
                "events[0].reasons[0]",
                "events[0].references[0].extra",
                "events[0].references[0].type",
            ]
            .into_iter()
            .map(String::from)
            .collect()
        );
    }

    #[test]
    fn unknown_type_and_missing_type() {
        assert_eq!(
            fields(
                json!({"id": "e", "type": "session.paused", "occurred_at": "2026-01-01T00:00:00Z"})
            ),
            ["events[0].type"]
        );
        assert_eq!(
            fields(json!({"id": "e", "occurred_at": "2026-01-01T00:00:00Z"})),
            ["events[0].type"]
        );
        assert_eq!(fields(json!([1])), ["events[0]"]);
    }

    #[test]
    fn call_bounds() {
        let got = fields(json!({
            "id": "c", "type": "call.completed", "occurred_at": "2026-01-01T00:00:00Z",
            "call_id": "c1", "agent_id": "a1", "started_at": "2026-01-01T00:00:00Z",
            "duration_seconds": -1, "outcome": "resolved", "sentiment": "happy",
            "telemetry": {"stt_confidence": 1.5, "tool_calls": 1, "tool_call_errors": 2, "latency": 3}
        }));
        assert_eq!(
            got,
            [
                "events[0].duration_seconds",
                "events[0].sentiment",
                "events[0].telemetry.latency",
                "events[0].telemetry.stt_confidence",
                "events[0].telemetry.tool_call_errors",
            ]
        );
    }

    #[test]
    fn call_figures_are_bounded_so_that_sums_stay_finite() {
        let call = |fields: Value| {
            let mut e = json!({
                "id": "c", "type": "call.completed", "occurred_at": "2026-01-01T00:00:00Z",
                "call_id": "c1", "agent_id": "a1", "started_at": "2026-01-01T00:00:00Z",
                "duration_seconds": 1, "outcome": "transferred"
            });
            for (k, v) in fields.as_object().unwrap() {
                e[k] = v.clone();
            }
            e
        };
        assert!(
            check(call(json!({
                "duration_seconds": 31_622_400, "escalated_after_seconds": 31_622_400,
                "telemetry": {"ttft_ms": 86_400_000, "tool_calls": 2_147_483_647, "total_tokens": 2_147_483_647}
            })))
            .is_ok()
        );
        let got = fields(call(json!({
            "duration_seconds": 1e308, "escalated_after_seconds": 31_622_401,
            "telemetry": {"ttft_ms": 1e308, "tool_calls": 2_147_483_648_i64, "total_tokens": i64::MAX}
        })));
        assert_eq!(
            got,
            [
                "events[0].duration_seconds",
                "events[0].escalated_after_seconds",
                "events[0].telemetry.ttft_ms",
                "events[0].telemetry.tool_calls",
                "events[0].telemetry.total_tokens",
            ]
        );
    }

    #[test]
    fn custom_state_rules() {
        let base = |state: &str| json!({"id": "e", "type": "handoff.state", "occurred_at": "2026-01-01T00:00:00Z", "handoff_id": "h", "state": state});
        assert!(check(base("customer_refund")).is_ok());
        assert_eq!(fields(base("Customer-Refund")), ["events[0].state"]);
        assert_eq!(fields(base("handoff_completed")), ["events[0].state"]);
        assert_eq!(fields(base(&"x".repeat(65))), ["events[0].state"]);
        assert_eq!(fields(base("handoff_abandoned")), ["events[0].state"]);
    }

    #[test]
    fn timestamps_must_have_four_digit_years_in_utc() {
        let session = |at: &str| json!({"id": "e", "type": "session.started", "occurred_at": at, "session_id": "s", "channel": "web"});
        let e = check(session("0001-01-01T00:00:00Z")).unwrap();
        assert_eq!(e.occurred_at.to_rfc3339(), "0001-01-01T00:00:00+00:00");
        let e = check(session("9999-12-31T23:59:59Z")).unwrap();
        assert_eq!(e.occurred_at.to_rfc3339(), "9999-12-31T23:59:59+00:00");
        // Year 9999 as written, 10000 in UTC; year 0001 as written, 0000 in UTC.
        assert_eq!(
            fields(session("9999-12-31T23:59:59-12:00")),
            ["events[0].occurred_at"]
        );
        assert_eq!(
            fields(session("0001-01-01T00:30:00+01:00")),
            ["events[0].occurred_at"]
        );
        let call = json!({
            "id": "c", "type": "call.completed", "occurred_at": "2026-01-01T00:00:00Z",
            "call_id": "c1", "agent_id": "a1", "started_at": "9999-12-31T23:00:00-05:00",
            "duration_seconds": 1, "outcome": "resolved"
        });
        let mut problems = Vec::new();
        assert!(validate(&call, "events[0]", &mut problems).is_none());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "events[0].started_at");
        assert!(
            problems[0].message.contains("0001"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn nul_anywhere_in_an_event_is_refused_with_its_path() {
        let got = fields(json!({
            "id": "e\u{0}", "type": "handoff.initiated", "occurred_at": "2026-01-01T00:00:00Z",
            "handoff_id": "h", "session_id": "s", "reasons": ["ai_implied_handoff"],
            "summary": "a\u{0}b", "data": {"note": "x\u{0}", "k\u{0}": 1, "fine": ["\u{0}"]}
        }));
        assert_eq!(
            got.into_iter().collect::<BTreeSet<_>>(),
            [
                "events[0].id",
                "events[0].summary",
                "events[0].data.note",
                "events[0].data.k\\u0000",
                "events[0].data.fine[0]",
            ]
            .into_iter()
            .map(String::from)
            .collect()
        );
        let agent = json!({"id": "a", "type": "agent.upserted", "occurred_at": "2026-01-01T00:00:00Z", "agent_id": "a1", "name": "Ann\u{0}", "status": "active"});
        assert_eq!(fields(agent), ["events[0].name"]);
    }

    /// The OpenAPI document follows from the declarations: one schema per type, chosen by
    /// `type`, listing exactly the fields validation accepts, those validation requires as
    /// required, and no others.
    #[test]
    fn the_schema_of_each_event_type_is_its_validation() {
        use utoipa::{PartialSchema, ToSchema};
        let one_of = serde_json::to_value(Event::schema()).unwrap();
        let mut components = Vec::new();
        Event::schemas(&mut components);
        assert_eq!(components.len(), EVENT_TYPES.len());
        let mapping = one_of["discriminator"]["mapping"].as_object().unwrap();
        assert_eq!(one_of["discriminator"]["propertyName"], "type");
        assert_eq!(mapping.len(), EVENT_TYPES.len());
        let required_of = |wire: &str| -> Vec<&str> {
            match wire {
                "session.started" => vec!["session_id", "channel"],
                "session.ended" => vec!["session_id"],
                "handoff.initiated" => vec!["handoff_id", "session_id", "reasons"],
                "handoff.completed" | "handoff.failed" | "handoff.abandoned" => vec!["handoff_id"],
                "handoff.state" => vec!["handoff_id", "state"],
                "agent.upserted" => vec!["agent_id", "name", "status"],
                "agent.deleted" => vec!["agent_id"],
                "call.completed" => vec![
                    "call_id",
                    "agent_id",
                    "started_at",
                    "duration_seconds",
                    "outcome",
                ],
                other => unreachable!("{other}"),
            }
        };
        for (name, schema) in components {
            let schema = serde_json::to_value(schema).unwrap();
            let wire = schema["properties"]["type"]["enum"][0].as_str().unwrap();
            assert_eq!(
                mapping[wire],
                format!("#/components/schemas/{name}"),
                "{wire}"
            );
            assert_eq!(schema["additionalProperties"], false, "{wire}");
            let properties: BTreeSet<&str> = schema["properties"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let accepted: BTreeSet<&str> = COMMON_FIELDS
                .iter()
                .chain(fields_of(wire))
                .copied()
                .collect();
            assert_eq!(properties, accepted, "{wire}");
            let required: BTreeSet<&str> = schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let mut expected = required_of(wire);
            expected.extend(COMMON_FIELDS);
            assert_eq!(required, expected.into_iter().collect(), "{wire}");
            // Each required field is reported missing by validation, and nothing else is.
            let mut problems = Vec::new();
            validate(&json!({"type": wire}), "e", &mut problems);
            let missing: BTreeSet<String> = problems.into_iter().map(|p| p.field).collect();
            let expected: BTreeSet<String> = required
                .iter()
                .filter(|f| **f != "type")
                .map(|f| format!("e.{f}"))
                .collect();
            assert_eq!(missing, expected, "{wire}");
        }
    }

    #[test]
    fn counts_written_as_integral_numbers_are_integers() {
        let call = |tool_calls: Value| {
            check(json!({
                "id": "c", "type": "call.completed", "occurred_at": "2026-01-01T00:00:00Z",
                "call_id": "c1", "agent_id": "a1", "started_at": "2026-01-01T00:00:00Z",
                "duration_seconds": 1, "outcome": "resolved", "telemetry": {"tool_calls": tool_calls}
            }))
        };
        let EventKind::CallCompleted(c) = call(json!(3.0)).unwrap().kind else {
            panic!()
        };
        assert_eq!(c.telemetry.tool_calls, Some(3));
        assert!(call(json!(2.5)).is_err());
        assert!(call(json!(-1.0)).is_err());
        assert!(call(json!(2_147_483_648.0)).is_err());
    }

    #[test]
    fn data_is_limited_to_64_kib() {
        let big = "x".repeat(MAX_DATA_BYTES);
        let got = fields(
            json!({"id": "e", "type": "handoff.state", "occurred_at": "2026-01-01T00:00:00Z", "handoff_id": "h", "state": "s", "data": {"blob": big}}),
        );
        assert_eq!(got, ["events[0].data"]);
    }
}
