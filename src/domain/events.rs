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
    };
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
}

/// A reference from a handoff to a resource of the AI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// What kind of resource.
    pub kind: ReferenceType,
    /// Its id.
    pub id: String,
}

/// The fields of `handoff.initiated`.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffInitiated {
    /// The handoff.
    pub handoff_id: String,
    /// Its session.
    pub session_id: String,
    /// The id shared with the client's systems (unique per organization).
    pub shared_id: Option<String>,
    /// Why (distinct, in the order given).
    pub reasons: Vec<Reason>,
    /// Sentiment at handoff (free text, or none).
    pub sentiment: Option<String>,
    /// Resources involved (distinct).
    pub references: Vec<Reference>,
    /// Where it was sent (queue, skill).
    pub destination: Option<String>,
    /// Summary for the human.
    pub summary: Option<String>,
    /// PolyAI handoff state payload.
    pub data: Option<Map<String, Value>>,
}

/// The fields of `call.completed`.
#[derive(Debug, Clone, PartialEq)]
pub struct CallCompleted {
    /// The call.
    pub call_id: String,
    /// The agent (project) that took it.
    pub agent_id: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it lasted.
    pub duration_seconds: f64,
    /// How it ended.
    pub outcome: Outcome,
    /// Caller sentiment, if measured.
    pub sentiment: Option<CallSentiment>,
    /// Why it was escalated.
    pub escalation_reason: Option<String>,
    /// Seconds into the call when it was escalated.
    pub escalated_after_seconds: Option<f64>,
    /// AI telemetry.
    pub telemetry: Telemetry,
}

/// AI telemetry of a call; every figure optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    /// Time to first token, ms.
    pub ttft_ms: Option<f64>,
    /// Speech recognition confidence, 0–1.
    pub stt_confidence: Option<f64>,
    /// Tool calls made.
    pub tool_calls: Option<i64>,
    /// Tool calls that failed.
    pub tool_call_errors: Option<i64>,
    /// Times the caller corrected the AI.
    pub user_corrections: Option<i64>,
    /// Prompt tokens served from cache.
    pub cached_tokens: Option<i64>,
    /// Prompt tokens in all.
    pub total_tokens: Option<i64>,
}

/// What an event says.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// `session.started`
    SessionStarted {
        /// The session.
        session_id: String,
        /// Its channel.
        channel: Channel,
        /// The agent (project) serving it.
        agent_id: Option<String>,
    },
    /// `session.ended`
    SessionEnded {
        /// The session.
        session_id: String,
        /// Final sentiment.
        sentiment: Option<String>,
    },
    /// `handoff.initiated`
    HandoffInitiated(HandoffInitiated),
    /// `handoff.completed`
    HandoffCompleted {
        /// The handoff.
        handoff_id: String,
        /// The human who took it.
        operator_id: Option<String>,
    },
    /// `handoff.failed`
    HandoffFailed {
        /// The handoff.
        handoff_id: String,
        /// What went wrong.
        error: Option<String>,
    },
    /// `handoff.state`
    HandoffState {
        /// The handoff.
        handoff_id: String,
        /// The custom topic state.
        state: String,
        /// Data merged into the stored data.
        data: Option<Map<String, Value>>,
    },
    /// `agent.upserted`
    AgentUpserted {
        /// The agent.
        agent_id: String,
        /// Its name.
        name: String,
        /// Its status.
        status: AgentStatus,
    },
    /// `agent.deleted`
    AgentDeleted {
        /// The agent.
        agent_id: String,
    },
    /// `call.completed`
    CallCompleted(CallCompleted),
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
        match &self.kind {
            EventKind::SessionStarted { .. } => "session.started",
            EventKind::SessionEnded { .. } => "session.ended",
            EventKind::HandoffInitiated(_) => "handoff.initiated",
            EventKind::HandoffCompleted { .. } => "handoff.completed",
            EventKind::HandoffFailed { .. } => "handoff.failed",
            EventKind::HandoffState { .. } => "handoff.state",
            EventKind::AgentUpserted { .. } => "agent.upserted",
            EventKind::AgentDeleted { .. } => "agent.deleted",
            EventKind::CallCompleted(_) => "call.completed",
        }
    }
}

/// The event types, as sent.
pub const EVENT_TYPES: &[&str] = &[
    "session.started",
    "session.ended",
    "handoff.initiated",
    "handoff.completed",
    "handoff.failed",
    "handoff.state",
    "agent.upserted",
    "agent.deleted",
    "call.completed",
];

fn allowed_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "session.started" => &["session_id", "channel", "agent_id"],
        "session.ended" => &["session_id", "sentiment"],
        "handoff.initiated" => &[
            "handoff_id",
            "session_id",
            "shared_id",
            "reasons",
            "sentiment",
            "references",
            "destination",
            "summary",
            "data",
        ],
        "handoff.completed" => &["handoff_id", "operator_id"],
        "handoff.failed" => &["handoff_id", "error"],
        "handoff.state" => &["handoff_id", "state", "data"],
        "agent.upserted" => &["agent_id", "name", "status"],
        "agent.deleted" => &["agent_id"],
        "call.completed" => &[
            "call_id",
            "agent_id",
            "started_at",
            "duration_seconds",
            "outcome",
            "sentiment",
            "escalation_reason",
            "escalated_after_seconds",
            "telemetry",
        ],
        _ => &[],
    }
}

const TELEMETRY_FIELDS: &[&str] = &[
    "ttft_ms",
    "stt_confidence",
    "tool_calls",
    "tool_call_errors",
    "user_corrections",
    "cached_tokens",
    "total_tokens",
];

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

    fn text(&mut self, key: &str, v: &Value, max: usize) -> Option<String> {
        match v.as_str() {
            None => {
                self.problem(key, "must be a string");
                None
            }
            Some("") => {
                self.problem(key, "must not be empty");
                None
            }
            Some(s) if s.chars().count() > max => {
                self.problem(key, format!("must be at most {max} characters"));
                None
            }
            Some(s) => Some(s.to_owned()),
        }
    }

    fn req_text(&mut self, key: &str, max: usize) -> Option<String> {
        let v = self.required(key)?;
        self.text(key, v, max)
    }

    fn opt_text(&mut self, key: &str, max: usize) -> Option<String> {
        let v = self.value(key)?;
        self.text(key, v, max)
    }

    fn req_enum<T>(&mut self, key: &str, parse: fn(&str) -> Option<T>, names: &str) -> Option<T> {
        let v = self.required(key)?;
        self.enum_value(key, v, parse, names)
    }

    fn enum_value<T>(
        &mut self,
        key: &str,
        v: &Value,
        parse: fn(&str) -> Option<T>,
        names: &str,
    ) -> Option<T> {
        match v.as_str().map(parse) {
            Some(Some(t)) => Some(t),
            _ => {
                self.problem(key, format!("must be one of {names}"));
                None
            }
        }
    }

    fn time(&mut self, key: &str) -> Option<DateTime<Utc>> {
        let v = self.required(key)?;
        match v.as_str().map(DateTime::parse_from_rfc3339) {
            Some(Ok(t)) if input::year_in_range(t.with_timezone(&Utc)) => {
                Some(t.with_timezone(&Utc))
            }
            Some(Ok(_)) => {
                self.problem(key, input::YEAR_RANGE);
                None
            }
            _ => {
                self.problem(
                    key,
                    "must be an RFC 3339 date-time such as 2026-11-21T09:30:00Z",
                );
                None
            }
        }
    }

    fn number(&mut self, key: &str, v: &Value, min: f64, max: f64) -> Option<f64> {
        match v.as_f64() {
            Some(n) if n.is_finite() && n >= min && n <= max => Some(n),
            Some(_) if max.is_finite() => {
                self.problem(key, format!("must be a number between {min} and {max}"));
                None
            }
            Some(_) => {
                self.problem(key, format!("must be a number ≥ {min}"));
                None
            }
            None => {
                self.problem(key, "must be a number");
                None
            }
        }
    }

    fn count(&mut self, key: &str, v: &Value) -> Option<i64> {
        match v.as_i64() {
            Some(n) if (0..=MAX_COUNT).contains(&n) => Some(n),
            _ => {
                self.problem(key, format!("must be an integer from 0 to {MAX_COUNT}"));
                None
            }
        }
    }

    fn object(&mut self, key: &str) -> Option<Map<String, Value>> {
        let v = self.value(key)?;
        match v.as_object() {
            Some(m) => Some(m.clone()),
            None => {
                self.problem(key, "must be a JSON object");
                None
            }
        }
    }

    fn data(&mut self, key: &str) -> Option<Map<String, Value>> {
        let data = self.object(key)?;
        let size = serde_json::to_vec(&data)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_DATA_BYTES {
            self.problem(
                key,
                format!("must be at most {MAX_DATA_BYTES} bytes of JSON (is {size})"),
            );
            return None;
        }
        Some(data)
    }

    fn reject_unknown(&mut self, allowed: &[&str]) {
        let unknown: Vec<String> = self
            .map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            self.problem(&key, "unknown field");
        }
    }
}

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
    let id = r.req_text("id", MAX_ID_CHARS);
    let occurred_at = r.time("occurred_at");
    let type_name = match r.required("type") {
        Some(Value::String(t)) if EVENT_TYPES.contains(&t.as_str()) => Some(t.as_str()),
        Some(_) => {
            r.problem("type", format!("must be one of {}", EVENT_TYPES.join(", ")));
            None
        }
        None => None,
    };
    let type_name = type_name?;
    let mut allowed = vec!["id", "type", "occurred_at"];
    allowed.extend_from_slice(allowed_fields(type_name));
    r.reject_unknown(&allowed);
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

fn read_kind(r: &mut Reader<'_>, type_name: &str) -> Option<EventKind> {
    let id = MAX_ID_CHARS;
    Some(match type_name {
        "session.started" => {
            let session_id = r.req_text("session_id", id);
            let channel = r.req_enum("channel", Channel::parse, &Channel::names());
            let agent_id = r.opt_text("agent_id", id);
            EventKind::SessionStarted {
                session_id: session_id?,
                channel: channel?,
                agent_id,
            }
        }
        "session.ended" => {
            let session_id = r.req_text("session_id", id);
            let sentiment = r.opt_text("sentiment", MAX_LABEL_CHARS);
            EventKind::SessionEnded {
                session_id: session_id?,
                sentiment,
            }
        }
        "handoff.initiated" => EventKind::HandoffInitiated(read_initiated(r)?),
        "handoff.completed" => {
            let handoff_id = r.req_text("handoff_id", id);
            let operator_id = r.opt_text("operator_id", id);
            EventKind::HandoffCompleted {
                handoff_id: handoff_id?,
                operator_id,
            }
        }
        "handoff.failed" => {
            let handoff_id = r.req_text("handoff_id", id);
            let error = r.opt_text("error", MAX_TEXT_CHARS);
            EventKind::HandoffFailed {
                handoff_id: handoff_id?,
                error,
            }
        }
        "handoff.state" => {
            let handoff_id = r.req_text("handoff_id", id);
            let state = r.req_text("state", 64);
            if let Some(s) = &state {
                if !s
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    r.problem("state", "must match [a-z0-9_]{1,64}");
                } else if [states::INITIATED, states::COMPLETED, states::FAILED]
                    .contains(&s.as_str())
                {
                    r.problem(
                        "state",
                        "is a custom topic state; use handoff.initiated, handoff.completed or handoff.failed for the built-in states",
                    );
                }
            }
            let data = r.data("data");
            EventKind::HandoffState {
                handoff_id: handoff_id?,
                state: state?,
                data,
            }
        }
        "agent.upserted" => {
            let agent_id = r.req_text("agent_id", id);
            let name = r.req_text("name", MAX_LABEL_CHARS);
            let status = r.req_enum("status", AgentStatus::parse, &AgentStatus::names());
            EventKind::AgentUpserted {
                agent_id: agent_id?,
                name: name?,
                status: status?,
            }
        }
        "agent.deleted" => EventKind::AgentDeleted {
            agent_id: r.req_text("agent_id", id)?,
        },
        "call.completed" => EventKind::CallCompleted(read_call(r)?),
        _ => return None,
    })
}

fn read_initiated(r: &mut Reader<'_>) -> Option<HandoffInitiated> {
    let handoff_id = r.req_text("handoff_id", MAX_ID_CHARS);
    let session_id = r.req_text("session_id", MAX_ID_CHARS);
    let shared_id = r.opt_text("shared_id", MAX_ID_CHARS);
    let mut reasons = Vec::new();
    match r.required("reasons") {
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str().and_then(Reason::parse) {
                    Some(reason) if !reasons.contains(&reason) => reasons.push(reason),
                    Some(_) => {}
                    None => r.problem(
                        &format!("reasons[{i}]"),
                        format!("must be one of {}", Reason::names()),
                    ),
                }
            }
        }
        Some(Value::Array(_)) => r.problem("reasons", "must not be empty"),
        Some(_) => r.problem("reasons", "must be an array of reasons"),
        None => {}
    }
    let sentiment = r.opt_text("sentiment", MAX_LABEL_CHARS);
    let mut references = Vec::new();
    match r.value("references") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(reference) = read_reference(r, i, item)
                    && !references.contains(&reference)
                {
                    references.push(reference);
                }
            }
        }
        Some(_) => r.problem("references", "must be an array of {type, id} objects"),
    }
    let destination = r.opt_text("destination", MAX_LABEL_CHARS);
    let summary = r.opt_text("summary", MAX_TEXT_CHARS);
    let data = r.data("data");
    Some(HandoffInitiated {
        handoff_id: handoff_id?,
        session_id: session_id?,
        shared_id,
        reasons,
        sentiment,
        references,
        destination,
        summary,
        data,
    })
}

fn read_reference(r: &mut Reader<'_>, i: usize, item: &Value) -> Option<Reference> {
    let key = format!("references[{i}]");
    let Some(map) = item.as_object() else {
        r.problem(&key, "must be an object {type, id}");
        return None;
    };
    let mut inner = Reader {
        map,
        path: format!("{}.{key}", r.path),
        problems: r.problems,
    };
    inner.reject_unknown(&["type", "id"]);
    let kind = inner.req_enum("type", ReferenceType::parse, &ReferenceType::names());
    let id = inner.req_text("id", MAX_ID_CHARS);
    Some(Reference {
        kind: kind?,
        id: id?,
    })
}

fn read_call(r: &mut Reader<'_>) -> Option<CallCompleted> {
    let call_id = r.req_text("call_id", MAX_ID_CHARS);
    let agent_id = r.req_text("agent_id", MAX_ID_CHARS);
    let started_at = r.time("started_at");
    let duration_seconds = r
        .required("duration_seconds")
        .and_then(|v| r.number("duration_seconds", v, 0.0, MAX_CALL_SECONDS));
    let outcome = r.req_enum("outcome", Outcome::parse, &Outcome::names());
    let sentiment = r.value("sentiment").and_then(|v| {
        r.enum_value(
            "sentiment",
            v,
            CallSentiment::parse,
            &CallSentiment::names(),
        )
    });
    let escalation_reason = r.opt_text("escalation_reason", MAX_LABEL_CHARS);
    let escalated_after_seconds = r
        .value("escalated_after_seconds")
        .and_then(|v| r.number("escalated_after_seconds", v, 0.0, MAX_CALL_SECONDS));
    let telemetry = match r.value("telemetry") {
        None => Telemetry::default(),
        Some(Value::Object(map)) => {
            let mut t = Reader {
                map,
                path: format!("{}.telemetry", r.path),
                problems: r.problems,
            };
            t.reject_unknown(TELEMETRY_FIELDS);
            let num = |t: &mut Reader<'_>, key: &str, max: f64| {
                let v = t.value(key)?;
                t.number(key, v, 0.0, max)
            };
            let int = |t: &mut Reader<'_>, key: &str| {
                let v = t.value(key)?;
                t.count(key, v)
            };
            let tel = Telemetry {
                ttft_ms: num(&mut t, "ttft_ms", MAX_TTFT_MS),
                stt_confidence: num(&mut t, "stt_confidence", 1.0),
                tool_calls: int(&mut t, "tool_calls"),
                tool_call_errors: int(&mut t, "tool_call_errors"),
                user_corrections: int(&mut t, "user_corrections"),
                cached_tokens: int(&mut t, "cached_tokens"),
                total_tokens: int(&mut t, "total_tokens"),
            };
            if let (Some(errors), Some(calls)) = (tel.tool_call_errors, tel.tool_calls)
                && errors > calls
            {
                t.problem("tool_call_errors", "must not exceed tool_calls");
            }
            if let (Some(cached), Some(total)) = (tel.cached_tokens, tel.total_tokens)
                && cached > total
            {
                t.problem("cached_tokens", "must not exceed total_tokens");
            }
            tel
        }
        Some(_) => {
            r.problem("telemetry", "must be a JSON object");
            Telemetry::default()
        }
    };
    Some(CallCompleted {
        call_id: call_id?,
        agent_id: agent_id?,
        started_at: started_at?,
        duration_seconds: duration_seconds?,
        outcome: outcome?,
        sentiment,
        escalation_reason,
        escalated_after_seconds,
        telemetry,
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

    #[test]
    fn data_is_limited_to_64_kib() {
        let big = "x".repeat(MAX_DATA_BYTES);
        let got = fields(
            json!({"id": "e", "type": "handoff.state", "occurred_at": "2026-01-01T00:00:00Z", "handoff_id": "h", "state": "s", "data": {"blob": big}}),
        );
        assert_eq!(got, ["events[0].data"]);
    }
}
