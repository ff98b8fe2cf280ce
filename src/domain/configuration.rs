//! The handoff configuration document (Quickchat's `human_handoff/configuration`) and its rules.
//!
//! Policy: a [`Draft`] is what a client sent; [`validate`] turns it into a [`Configuration`] or
//! lists every problem at once, each with the JSON path of the field. Nothing here touches the
//! database: the caller passes the organization's id counters in and stores what comes out.
//! `topic_based_routing_active` is never stored: it is derived from the routing profiles.

use std::collections::{HashMap, HashSet};
use std::fmt;

/// Longest `question_message`, `confirmation_message` and
/// `confirmation_outside_working_hours_message`, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;
/// Longest custom guideline or routing profile name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest description (generic and custom guidelines, routing profiles), in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Longest keyword, in characters.
pub const MAX_KEYWORD_CHARS: usize = 100;
/// Longest e-mail address, in characters (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Most keywords.
pub const MAX_KEYWORDS: usize = 100;
/// Most notification e-mail addresses.
pub const MAX_EMAILS: usize = 100;
/// Most availability slots.
pub const MAX_AVAILABILITY: usize = 50;
/// Most custom guidelines.
pub const MAX_CUSTOM_GUIDELINES: usize = 100;
/// Most routing profiles.
pub const MAX_ROUTING_PROFILES: usize = 100;
/// Most operators per routing profile.
pub const MAX_USER_IDS: usize = 100;

/// The days a `day_span` may name, in week order.
pub const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Core handoff settings. `topic_based_routing_active` is not here: see
/// [`Configuration::topic_based_routing_active`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Whether human handoff is enabled.
    pub is_active: bool,
    /// Phrases with which a visitor asks for a human directly.
    pub keywords: Vec<String>,
    /// Whether the operator gets an AI summary of the conversation.
    pub ai_summary_active: bool,
    /// Asks the visitor whether they want a human.
    pub question_message: String,
    /// Shown once the visitor confirmed.
    pub confirmation_message: String,
    /// Shown when handoff is requested outside working hours.
    pub confirmation_outside_working_hours_message: String,
    /// Whether handoff is limited to the availability slots.
    pub working_hours_active: bool,
    /// IANA time zone of the availability slots.
    pub timezone: String,
    /// Whether operators are e-mailed on handoff.
    pub send_email_notification: bool,
    /// Addresses to notify.
    pub emails: Vec<String>,
}

/// One working-hours slot. `I` is `i64` once stored, `Option<i64>` in a draft (`None`: new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot<I> {
    /// Its id.
    pub id: I,
    /// A lowercase day (`monday`) or a `day-day` range (`monday-friday`).
    pub day_span: String,
    /// `HH:MM`, 24-hour.
    pub start_time: String,
    /// `HH:MM`, 24-hour, after `start_time`.
    pub end_time: String,
}

/// The five predefined guidelines, in the order Quickchat lists them (and Baton answers them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuidelineName {
    /// The visitor is frustrated.
    UserFrustration,
    /// The AI itself would suggest contacting support.
    CustomerSupportSuggestion,
    /// The AI does not know the answer.
    LackOfKnowledge,
    /// The AI's advice is beside the point.
    IrrelevantAdvice,
    /// The visitor sent media.
    MediaMessage,
}

impl GuidelineName {
    /// All five, in answer order.
    pub const ALL: [GuidelineName; 5] = [
        GuidelineName::UserFrustration,
        GuidelineName::CustomerSupportSuggestion,
        GuidelineName::LackOfKnowledge,
        GuidelineName::IrrelevantAdvice,
        GuidelineName::MediaMessage,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            GuidelineName::UserFrustration => "user_frustration",
            GuidelineName::CustomerSupportSuggestion => "customer_support_suggestion",
            GuidelineName::LackOfKnowledge => "lack_of_knowledge",
            GuidelineName::IrrelevantAdvice => "irrelevant_advice",
            GuidelineName::MediaMessage => "media_message",
        }
    }

    /// Parses a wire name (exact, lowercase).
    pub fn parse(s: &str) -> Option<GuidelineName> {
        GuidelineName::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// What the default document says about this guideline.
    pub fn default_description(self) -> &'static str {
        match self {
            GuidelineName::UserFrustration => {
                "The visitor is frustrated or upset: they repeat the same question, complain about the answers, or say the conversation is not helping."
            }
            GuidelineName::CustomerSupportSuggestion => {
                "The answer would be to contact customer support, for example for account-specific requests, refunds or anything the AI Agent cannot do itself."
            }
            GuidelineName::LackOfKnowledge => {
                "The AI Agent cannot find the answer in its knowledge base and would otherwise have to say it does not know."
            }
            GuidelineName::IrrelevantAdvice => {
                "The AI Agent's answers do not address what the visitor asked, or the visitor says the advice does not apply to them."
            }
            GuidelineName::MediaMessage => {
                "The visitor sends an image, a file, a voice message or other media that the AI Agent cannot read."
            }
        }
    }
}

impl fmt::Display for GuidelineName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A predefined guideline as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericGuideline {
    /// Which one.
    pub name: GuidelineName,
    /// When it triggers.
    pub description: String,
    /// Whether it is enabled.
    pub is_active: bool,
}

/// A predefined guideline as sent: the name is checked by [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericGuidelineDraft {
    /// The name as sent.
    pub name: String,
    /// When it triggers.
    pub description: String,
    /// Whether it is enabled.
    pub is_active: bool,
}

/// A user-defined guideline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomGuideline<I> {
    /// Its id.
    pub id: I,
    /// Its name.
    pub name: String,
    /// When it should trigger handoff.
    pub description: String,
    /// Whether it is enabled.
    pub is_active: bool,
}

/// A topic-based routing profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingProfile<I> {
    /// Its id.
    pub id: I,
    /// The topic's name.
    pub name: String,
    /// Which conversations it matches.
    pub description: String,
    /// Whether it is enabled.
    pub is_active: bool,
    /// The operators notified when it matches.
    pub user_ids: Vec<i64>,
}

/// A validated, stored configuration document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    /// Core settings.
    pub settings: Settings,
    /// Working hours.
    pub availability: Vec<Slot<i64>>,
    /// The five predefined guidelines, in [`GuidelineName::ALL`] order.
    pub generic_guidelines: Vec<GenericGuideline>,
    /// User-defined guidelines, in the order the client sent them.
    pub custom_guidelines: Vec<CustomGuideline<i64>>,
    /// Routing profiles, in the order the client sent them.
    pub routing_profiles: Vec<RoutingProfile<i64>>,
}

impl Configuration {
    /// The document of an organization that never stored one: handoff off, the five generic
    /// guidelines on with their default descriptions, default messages, UTC, empty lists.
    pub fn default_for_new_org() -> Configuration {
        Configuration {
            settings: Settings {
                is_active: false,
                keywords: Vec::new(),
                ai_summary_active: false,
                question_message: "Would you like me to connect you with a member of our team?"
                    .to_owned(),
                confirmation_message:
                    "Thanks! I've passed your conversation to our team. Someone will reply here as soon as possible."
                        .to_owned(),
                confirmation_outside_working_hours_message:
                    "Thanks for your patience! Our team is away right now, so someone will reply here during our working hours."
                        .to_owned(),
                working_hours_active: false,
                timezone: "UTC".to_owned(),
                send_email_notification: false,
                emails: Vec::new(),
            },
            availability: Vec::new(),
            generic_guidelines: GuidelineName::ALL
                .into_iter()
                .map(|name| GenericGuideline {
                    name,
                    description: name.default_description().to_owned(),
                    is_active: true,
                })
                .collect(),
            custom_guidelines: Vec::new(),
            routing_profiles: Vec::new(),
        }
    }

    /// Whether topic-based routing is on: true exactly when an active routing profile exists.
    pub fn topic_based_routing_active(&self) -> bool {
        self.routing_profiles.iter().any(|p| p.is_active)
    }
}

/// A configuration as a client sent it (a PUT body), not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// Core settings.
    pub settings: Settings,
    /// Working hours; `id: None` for new slots.
    pub availability: Vec<Slot<Option<i64>>>,
    /// The five predefined guidelines, in any order.
    pub generic_guidelines: Vec<GenericGuidelineDraft>,
    /// User-defined guidelines; `id: None` for new ones.
    pub custom_guidelines: Vec<CustomGuideline<Option<i64>>>,
    /// Routing profiles; `id: None` for new ones.
    pub routing_profiles: Vec<RoutingProfile<Option<i64>>>,
}

/// The next id to issue in each section of one organization's document. Ids are issued from 1
/// upwards and never reused, so the ids the document ever had are exactly those below these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCounters {
    /// Next availability slot id.
    pub availability: i64,
    /// Next custom guideline id.
    pub custom_guideline: i64,
    /// Next routing profile id.
    pub routing_profile: i64,
}

impl Default for IdCounters {
    fn default() -> Self {
        IdCounters {
            availability: 1,
            custom_guideline: 1,
            routing_profile: 1,
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path (`settings.question_message`, `availability[2].start_time`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Checks a draft against every rule and resolves its ids: items that carry an id issued before
/// keep it, items without one get the next id of their section. Returns the document and the
/// advanced counters, or every problem found (in document order).
pub fn validate(
    draft: Draft,
    next: IdCounters,
) -> Result<(Configuration, IdCounters), Vec<Problem>> {
    let mut p = Vec::new();
    check_settings(&draft.settings, &mut p);

    check_len(
        &mut p,
        "availability",
        draft.availability.len(),
        MAX_AVAILABILITY,
        "slots",
    );
    let mut ids = IdIssuer::new(next.availability, "availability slot");
    let mut availability = Vec::with_capacity(draft.availability.len());
    for (i, slot) in draft.availability.into_iter().enumerate() {
        let at = format!("availability[{i}]");
        if let Err(m) = parse_day_span(&slot.day_span) {
            p.push(Problem::new(format!("{at}.day_span"), m));
        }
        let start = parse_time(&slot.start_time)
            .map_err(|m| p.push(Problem::new(format!("{at}.start_time"), m)))
            .ok();
        let end = parse_time(&slot.end_time)
            .map_err(|m| p.push(Problem::new(format!("{at}.end_time"), m)))
            .ok();
        if let (Some(s), Some(e)) = (start, end)
            && s >= e
        {
            p.push(Problem::new(
                format!("{at}.end_time"),
                format!(
                    "must be after start_time ({} is not after {})",
                    slot.end_time, slot.start_time
                ),
            ));
        }
        let id = ids.resolve(slot.id, &at, &mut p);
        availability.push(Slot {
            id,
            day_span: slot.day_span,
            start_time: slot.start_time,
            end_time: slot.end_time,
        });
    }
    let next_availability = ids.next;

    let generic_guidelines = check_generic(draft.generic_guidelines, &mut p);

    check_len(
        &mut p,
        "custom_guidelines",
        draft.custom_guidelines.len(),
        MAX_CUSTOM_GUIDELINES,
        "custom guidelines",
    );
    let mut ids = IdIssuer::new(next.custom_guideline, "custom guideline");
    let mut names = NameSet::default();
    let mut custom_guidelines = Vec::with_capacity(draft.custom_guidelines.len());
    for (i, g) in draft.custom_guidelines.into_iter().enumerate() {
        let at = format!("custom_guidelines[{i}]");
        check_name(&g.name, &at, &mut names, &mut p);
        check_description(&g.description, &at, &mut p);
        let id = ids.resolve(g.id, &at, &mut p);
        custom_guidelines.push(CustomGuideline {
            id,
            name: g.name,
            description: g.description,
            is_active: g.is_active,
        });
    }
    let next_custom = ids.next;

    check_len(
        &mut p,
        "routing_profiles",
        draft.routing_profiles.len(),
        MAX_ROUTING_PROFILES,
        "routing profiles",
    );
    let mut ids = IdIssuer::new(next.routing_profile, "routing profile");
    let mut names = NameSet::default();
    let mut routing_profiles = Vec::with_capacity(draft.routing_profiles.len());
    for (i, r) in draft.routing_profiles.into_iter().enumerate() {
        let at = format!("routing_profiles[{i}]");
        check_name(&r.name, &at, &mut names, &mut p);
        check_description(&r.description, &at, &mut p);
        check_len(
            &mut p,
            &format!("{at}.user_ids"),
            r.user_ids.len(),
            MAX_USER_IDS,
            "operators",
        );
        let mut seen = HashSet::new();
        for (j, &user) in r.user_ids.iter().enumerate() {
            if user < 1 {
                p.push(Problem::new(
                    format!("{at}.user_ids[{j}]"),
                    format!("must be a positive integer (got {user})"),
                ));
            } else if !seen.insert(user) {
                p.push(Problem::new(
                    format!("{at}.user_ids[{j}]"),
                    format!("operator {user} is listed more than once"),
                ));
            }
        }
        let id = ids.resolve(r.id, &at, &mut p);
        routing_profiles.push(RoutingProfile {
            id,
            name: r.name,
            description: r.description,
            is_active: r.is_active,
            user_ids: r.user_ids,
        });
    }
    let next_profile = ids.next;

    if !p.is_empty() {
        return Err(p);
    }
    Ok((
        Configuration {
            settings: draft.settings,
            availability,
            generic_guidelines,
            custom_guidelines,
            routing_profiles,
        },
        IdCounters {
            availability: next_availability,
            custom_guideline: next_custom,
            routing_profile: next_profile,
        },
    ))
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn check_len(p: &mut Vec<Problem>, field: &str, len: usize, max: usize, what: &str) {
    if len > max {
        p.push(Problem::new(
            field,
            format!("at most {max} {what} are allowed (got {len})"),
        ));
    }
}

fn check_max_chars(p: &mut Vec<Problem>, field: String, value: &str, max: usize) {
    let n = chars(value);
    if n > max {
        p.push(Problem::new(
            field,
            format!("must be at most {max} characters long (got {n})"),
        ));
    }
}

fn check_settings(s: &Settings, p: &mut Vec<Problem>) {
    for (name, value) in [
        ("question_message", &s.question_message),
        ("confirmation_message", &s.confirmation_message),
        (
            "confirmation_outside_working_hours_message",
            &s.confirmation_outside_working_hours_message,
        ),
    ] {
        check_max_chars(p, format!("settings.{name}"), value, MAX_MESSAGE_CHARS);
    }

    check_len(
        p,
        "settings.keywords",
        s.keywords.len(),
        MAX_KEYWORDS,
        "keywords",
    );
    let mut seen = HashMap::new();
    for (i, k) in s.keywords.iter().enumerate() {
        let at = format!("settings.keywords[{i}]");
        if k.trim().is_empty() {
            p.push(Problem::new(at, "must not be blank"));
            continue;
        }
        let n = chars(k);
        if n > MAX_KEYWORD_CHARS {
            p.push(Problem::new(
                at,
                format!("must be at most {MAX_KEYWORD_CHARS} characters long (got {n})"),
            ));
            continue;
        }
        if let Some(first) = seen.insert(k.trim().to_lowercase(), i) {
            p.push(Problem::new(
                at,
                format!("duplicate keyword (same as settings.keywords[{first}])"),
            ));
        }
    }

    if s.timezone.parse::<chrono_tz::Tz>().is_err() {
        p.push(Problem::new(
            "settings.timezone",
            format!(
                "unknown time zone `{}`: use an IANA name such as UTC or Europe/London",
                s.timezone
            ),
        ));
    }

    check_len(
        p,
        "settings.emails",
        s.emails.len(),
        MAX_EMAILS,
        "addresses",
    );
    let mut seen = HashMap::new();
    for (i, e) in s.emails.iter().enumerate() {
        let at = format!("settings.emails[{i}]");
        if let Err(m) = check_email(e) {
            p.push(Problem::new(at, m));
        } else if let Some(first) = seen.insert(e.to_lowercase(), i) {
            p.push(Problem::new(
                at,
                format!("duplicate address (same as settings.emails[{first}])"),
            ));
        }
    }
}

fn check_generic(
    drafts: Vec<GenericGuidelineDraft>,
    p: &mut Vec<Problem>,
) -> Vec<GenericGuideline> {
    let mut found: HashMap<GuidelineName, (usize, GenericGuideline)> = HashMap::new();
    for (i, g) in drafts.into_iter().enumerate() {
        let at = format!("generic_guidelines[{i}]");
        check_description(&g.description, &at, p);
        let Some(name) = GuidelineName::parse(&g.name) else {
            p.push(Problem::new(
                format!("{at}.name"),
                format!(
                    "unknown generic guideline `{}`: use one of {}",
                    g.name,
                    GuidelineName::ALL.map(GuidelineName::as_str).join(", ")
                ),
            ));
            continue;
        };
        if let Some((first, _)) = found.get(&name) {
            p.push(Problem::new(
                format!("{at}.name"),
                format!("`{name}` is listed more than once (also at generic_guidelines[{first}])"),
            ));
            continue;
        }
        found.insert(
            name,
            (
                i,
                GenericGuideline {
                    name,
                    description: g.description,
                    is_active: g.is_active,
                },
            ),
        );
    }
    let mut out = Vec::with_capacity(GuidelineName::ALL.len());
    for name in GuidelineName::ALL {
        match found.remove(&name) {
            Some((_, g)) => out.push(g),
            None => p.push(Problem::new(
                "generic_guidelines",
                format!("`{name}` is missing: all five generic guidelines are required"),
            )),
        }
    }
    out
}

fn check_description(description: &str, at: &str, p: &mut Vec<Problem>) {
    check_max_chars(
        p,
        format!("{at}.description"),
        description,
        MAX_DESCRIPTION_CHARS,
    );
}

/// Names of one section, compared without case and surrounding blanks.
#[derive(Default)]
struct NameSet(HashMap<String, String>);

fn check_name(name: &str, at: &str, names: &mut NameSet, p: &mut Vec<Problem>) {
    let field = format!("{at}.name");
    if name.trim().is_empty() {
        p.push(Problem::new(field, "must not be blank"));
        return;
    }
    let n = chars(name);
    if n > MAX_NAME_CHARS {
        p.push(Problem::new(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters long (got {n})"),
        ));
        return;
    }
    if let Some(first) = names.0.insert(name.trim().to_lowercase(), at.to_owned()) {
        p.push(Problem::new(
            field,
            format!("duplicate name (same as {first}.name)"),
        ));
    }
}

/// Resolves the ids of one section.
struct IdIssuer {
    next: i64,
    first_seen: HashMap<i64, String>,
    what: &'static str,
}

impl IdIssuer {
    fn new(next: i64, what: &'static str) -> IdIssuer {
        IdIssuer {
            next,
            first_seen: HashMap::new(),
            what,
        }
    }

    fn resolve(&mut self, id: Option<i64>, at: &str, p: &mut Vec<Problem>) -> i64 {
        let Some(id) = id else {
            let id = self.next;
            self.next += 1;
            return id;
        };
        if id < 1 || id >= self.next {
            p.push(Problem::new(
                format!("{at}.id"),
                format!(
                    "this organization never had a {} with id {id}: omit `id` to add a new one",
                    self.what
                ),
            ));
        } else if let Some(first) = self.first_seen.insert(id, at.to_owned()) {
            p.push(Problem::new(
                format!("{at}.id"),
                format!("id {id} is used more than once (also by {first})"),
            ));
        }
        id
    }
}

/// Parses `HH:MM` (00:00 to 23:59) into minutes after midnight.
pub fn parse_time(s: &str) -> Result<u32, String> {
    let bad = || format!("`{s}` is not a time in HH:MM format (00:00 to 23:59)");
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' || ![0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit()) {
        return Err(bad());
    }
    let hours = u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0');
    let minutes = u32::from(b[3] - b'0') * 10 + u32::from(b[4] - b'0');
    if hours > 23 || minutes > 59 {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

/// Parses a `day_span` into its first and last day (0 = Monday). A range may wrap past Sunday
/// (`friday-monday`), and must name two different days.
pub fn parse_day_span(s: &str) -> Result<(usize, usize), String> {
    let day = |d: &str| DAYS.iter().position(|&x| x == d);
    let bad = || {
        format!(
            "`{s}` is not a day or a day range: use a lowercase day such as `monday`, or two joined by `-` such as `monday-friday`"
        )
    };
    match s.split_once('-') {
        None => day(s).map(|d| (d, d)).ok_or_else(bad),
        Some((a, b)) => match (day(a), day(b)) {
            (Some(a), Some(b)) if a != b => Ok((a, b)),
            (Some(_), Some(_)) => Err(format!(
                "`{s}` names the same day twice: write `{}` alone",
                DAYS[day(a).unwrap_or(0)]
            )),
            _ => Err(bad()),
        },
    }
}

/// Checks an e-mail address: one `@`, a local part of at most 64 plain characters, and a domain
/// of at least two dot-separated labels of letters, digits and inner hyphens.
pub fn check_email(s: &str) -> Result<(), String> {
    let bad = |why: &str| format!("`{s}` is not a valid e-mail address: {why}");
    if chars(s) > MAX_EMAIL_CHARS {
        return Err(bad(&format!("longer than {MAX_EMAIL_CHARS} characters")));
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err(bad("no `@`"));
    };
    const LOCAL_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~.";
    if local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c) || !c.is_ascii())
    {
        return Err(bad(
            "the part before `@` is empty or has characters not allowed there",
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(bad("the domain must be like example.com"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        let c = Configuration::default_for_new_org();
        Draft {
            settings: c.settings,
            availability: vec![Slot {
                id: None,
                day_span: "monday-friday".to_owned(),
                start_time: "09:00".to_owned(),
                end_time: "17:30".to_owned(),
            }],
            generic_guidelines: c
                .generic_guidelines
                .into_iter()
                .rev()
                .map(|g| GenericGuidelineDraft {
                    name: g.name.as_str().to_owned(),
                    description: g.description,
                    is_active: g.is_active,
                })
                .collect(),
            custom_guidelines: vec![],
            routing_profiles: vec![RoutingProfile {
                id: None,
                name: "Billing".to_owned(),
                description: "Invoices".to_owned(),
                is_active: true,
                user_ids: vec![1, 2],
            }],
        }
    }

    fn fields(r: Result<(Configuration, IdCounters), Vec<Problem>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn default_is_valid_and_routing_is_derived() {
        let d = Configuration::default_for_new_org();
        assert!(!d.topic_based_routing_active());
        assert_eq!(d.generic_guidelines.len(), 5);
        let (c, next) = validate(draft(), IdCounters::default()).unwrap();
        assert!(c.topic_based_routing_active());
        assert_eq!(c.availability[0].id, 1);
        assert_eq!(c.routing_profiles[0].id, 1);
        assert_eq!(
            next,
            IdCounters {
                availability: 2,
                custom_guideline: 1,
                routing_profile: 2
            }
        );
        // Generic guidelines come back in Quickchat's order whatever order was sent.
        let names: Vec<&str> = c
            .generic_guidelines
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "user_frustration",
                "customer_support_suggestion",
                "lack_of_knowledge",
                "irrelevant_advice",
                "media_message"
            ]
        );
    }

    #[test]
    fn ids_never_issued_or_repeated_are_refused() {
        let mut d = draft();
        d.availability[0].id = Some(3);
        d.routing_profiles.push(d.routing_profiles[0].clone());
        d.routing_profiles[0].id = Some(1);
        d.routing_profiles[1].id = Some(1);
        d.routing_profiles[1].name = "Other".to_owned();
        let next = IdCounters {
            availability: 3,
            custom_guideline: 1,
            routing_profile: 2,
        };
        assert_eq!(
            fields(validate(d, next)),
            ["availability[0].id", "routing_profiles[1].id"]
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let mut d = draft();
        d.settings.timezone = "Mars/Olympus".to_owned();
        d.settings.emails = vec!["a@b.co".to_owned(), "nope".to_owned(), "A@b.co".to_owned()];
        d.availability[0].day_span = "Monday".to_owned();
        d.availability[0].end_time = "09:00".to_owned();
        d.generic_guidelines.pop();
        d.routing_profiles[0].user_ids = vec![0, 5, 5];
        assert_eq!(
            fields(validate(d, IdCounters::default())),
            [
                "settings.timezone",
                "settings.emails[1]",
                "settings.emails[2]",
                "availability[0].day_span",
                "availability[0].end_time",
                "generic_guidelines",
                "routing_profiles[0].user_ids[0]",
                "routing_profiles[0].user_ids[2]",
            ]
        );
    }

    #[test]
    fn times_days_and_emails() {
        assert_eq!(parse_time("00:00"), Ok(0));
        assert_eq!(parse_time("23:59"), Ok(23 * 60 + 59));
        for bad in ["24:00", "9:00", "09:60", "09-00", "0900", " 09:00"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_day_span("sunday"), Ok((6, 6)));
        assert_eq!(parse_day_span("friday-monday"), Ok((4, 0)));
        for bad in [
            "Monday",
            "mon",
            "monday-monday",
            "monday-",
            "-friday",
            "monday-friday-sunday",
        ] {
            assert!(parse_day_span(bad).is_err(), "{bad}");
        }
        for good in ["ops@example.com", "first.last+tag@mail.example.co.uk"] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ops",
            "@example.com",
            "ops@",
            "ops@example",
            "a b@example.com",
            "ops@-x.com",
            "a..b@example.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
