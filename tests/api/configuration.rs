//! `GET`/`PUT /v1/api/human_handoff/configuration` and its revisions (Quickchat, seed 001).
//!
//! Expectations are written out by hand (the default document, ids, orders); every rejected PUT
//! is checked to have changed nothing: same body, same ETag, no new revision.

use baton::auth::{Scope, Subject};
use serde_json::{Value, json};

use crate::common::{TestApp, assert_error};

const PATH: &str = "/v1/api/human_handoff/configuration";
const REVISIONS: &str = "/v1/api/human_handoff/configuration/revisions";

/// The default document, written out independently of the code.
fn expected_default() -> Value {
    json!({
        "settings": {
            "is_active": false,
            "keywords": [],
            "ai_summary_active": false,
            "topic_based_routing_active": false,
            "question_message": "Would you like me to connect you with a member of our team?",
            "confirmation_message": "Thanks! I've passed your conversation to our team. Someone will reply here as soon as possible.",
            "confirmation_outside_working_hours_message": "Thanks for your patience! Our team is away right now, so someone will reply here during our working hours.",
            "working_hours_active": false,
            "timezone": "UTC",
            "send_email_notification": false,
            "emails": []
        },
        "availability": [],
        "generic_guidelines": [
            {"name": "user_frustration", "description": "The visitor is frustrated or upset: they repeat the same question, complain about the answers, or say the conversation is not helping.", "is_active": true},
            {"name": "customer_support_suggestion", "description": "The answer would be to contact customer support, for example for account-specific requests, refunds or anything the AI Agent cannot do itself.", "is_active": true},
            {"name": "lack_of_knowledge", "description": "The AI Agent cannot find the answer in its knowledge base and would otherwise have to say it does not know.", "is_active": true},
            {"name": "irrelevant_advice", "description": "The AI Agent's answers do not address what the visitor asked, or the visitor says the advice does not apply to them.", "is_active": true},
            {"name": "media_message", "description": "The visitor sends an image, a file, a voice message or other media that the AI Agent cannot read.", "is_active": true}
        ],
        "custom_guidelines": [],
        "routing_profiles": []
    })
}

/// A full, valid document with new items (no ids), generic guidelines in a shuffled order.
fn sample() -> Value {
    json!({
        "settings": {
            "is_active": true,
            "keywords": ["speak to human", "agent"],
            "ai_summary_active": true,
            "question_message": "Shall I get a colleague?",
            "confirmation_message": "A colleague will join shortly.",
            "confirmation_outside_working_hours_message": "We are closed; we will write back tomorrow.",
            "working_hours_active": true,
            "timezone": "Europe/London",
            "send_email_notification": true,
            "emails": ["ops@example.com", "lead@example.co.uk"]
        },
        "availability": [
            {"day_span": "monday-friday", "start_time": "09:00", "end_time": "17:30"},
            {"day_span": "saturday", "start_time": "10:00", "end_time": "14:00"}
        ],
        "generic_guidelines": [
            {"name": "media_message", "description": "Media", "is_active": false},
            {"name": "user_frustration", "description": "Angry visitor", "is_active": true},
            {"name": "irrelevant_advice", "description": "Off topic", "is_active": false},
            {"name": "lack_of_knowledge", "description": "Unknown answer", "is_active": true},
            {"name": "customer_support_suggestion", "description": "Support", "is_active": true}
        ],
        "custom_guidelines": [
            {"name": "Refunds", "description": "The visitor asks for a refund.", "is_active": true},
            {"name": "Legal", "description": "Anything about lawyers.", "is_active": false}
        ],
        "routing_profiles": [
            {"name": "Billing", "description": "Invoices and payments", "is_active": true, "user_ids": [7, 3]},
            {"name": "Technical Support", "description": "Bugs", "is_active": false, "user_ids": []}
        ]
    })
}

/// What the server must answer after storing [`sample`] into a fresh organization.
fn sample_stored() -> Value {
    json!({
        "settings": {
            "is_active": true,
            "keywords": ["speak to human", "agent"],
            "ai_summary_active": true,
            "topic_based_routing_active": true,
            "question_message": "Shall I get a colleague?",
            "confirmation_message": "A colleague will join shortly.",
            "confirmation_outside_working_hours_message": "We are closed; we will write back tomorrow.",
            "working_hours_active": true,
            "timezone": "Europe/London",
            "send_email_notification": true,
            "emails": ["ops@example.com", "lead@example.co.uk"]
        },
        "availability": [
            {"id": 1, "day_span": "monday-friday", "start_time": "09:00", "end_time": "17:30"},
            {"id": 2, "day_span": "saturday", "start_time": "10:00", "end_time": "14:00"}
        ],
        "generic_guidelines": [
            {"name": "user_frustration", "description": "Angry visitor", "is_active": true},
            {"name": "customer_support_suggestion", "description": "Support", "is_active": true},
            {"name": "lack_of_knowledge", "description": "Unknown answer", "is_active": true},
            {"name": "irrelevant_advice", "description": "Off topic", "is_active": false},
            {"name": "media_message", "description": "Media", "is_active": false}
        ],
        "custom_guidelines": [
            {"id": 1, "name": "Refunds", "description": "The visitor asks for a refund.", "is_active": true},
            {"id": 2, "name": "Legal", "description": "Anything about lawyers.", "is_active": false}
        ],
        "routing_profiles": [
            {"id": 1, "name": "Billing", "description": "Invoices and payments", "is_active": true, "user_ids": [7, 3]},
            {"id": 2, "name": "Technical Support", "description": "Bugs", "is_active": false, "user_ids": []}
        ]
    })
}

fn etag_of(res: &reqwest::Response) -> String {
    res.headers()
        .get("etag")
        .expect("ETag header")
        .to_str()
        .unwrap()
        .to_owned()
}

/// GET the document: (body, ETag).
async fn read(app: &TestApp, token: &str) -> (Value, String) {
    let res = app.get(PATH, token).await;
    assert_eq!(res.status(), 200);
    let tag = etag_of(&res);
    (res.json().await.unwrap(), tag)
}

async fn put(
    app: &TestApp,
    token: &str,
    body: &Value,
    if_match: Option<&str>,
) -> reqwest::Response {
    let mut req = app.client.put(app.url(PATH)).bearer_auth(token).json(body);
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    req.send().await.unwrap()
}

/// PUT that must succeed: (body, ETag).
async fn put_ok(app: &TestApp, token: &str, body: &Value) -> (Value, String) {
    let res = put(app, token, body, None).await;
    let status = res.status();
    let tag = res
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    (body, tag.expect("ETag on PUT"))
}

async fn revision_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from handoff_configuration_revisions")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// An app with one organization whose document is [`sample`], and its writer token.
async fn app_with_sample() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let (stored, _) = put_ok(&app, &token, &sample()).await;
    assert_eq!(stored, sample_stored());
    (app, token)
}

/// PUTs the stored document changed by `change`; expects a 400 whose `details` name exactly
/// `fields` (in order) and whose message contains `needle`, and checks that nothing changed.
async fn assert_rejected(change: impl FnOnce(&mut Value), fields: &[&str], needle: &str) -> Value {
    let (app, token) = app_with_sample().await;
    let (before, tag) = read(&app, &token).await;
    let revisions = revision_count(&app).await;
    let mut body = before.clone();
    change(&mut body);
    let res = put(&app, &token, &body, None).await;
    let err = assert_error(res, 400, needle).await;
    let got: Vec<&str> = err["details"]
        .as_array()
        .map(|d| d.iter().map(|e| e["field"].as_str().unwrap()).collect())
        .unwrap_or_default();
    assert_eq!(got, fields, "{err}");
    let (after, tag_after) = read(&app, &token).await;
    assert_eq!(after, before, "a rejected PUT changed the document");
    assert_eq!(tag_after, tag, "a rejected PUT changed the ETag");
    assert_eq!(revision_count(&app).await, revisions);
    err
}

#[tokio::test]
async fn new_organization_gets_the_default_document() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.reader(&org).await;
    let (body, tag) = read(&app, &token).await;
    assert_eq!(body, expected_default());
    assert_eq!(tag, format!("\"{}-0\"", org.id.simple()));
    let res = app.get(REVISIONS, &token).await;
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    assert_eq!(list, json!({"revisions": [], "next_before": null}));
}

#[tokio::test]
async fn seed_shell_example_enables_handoff() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    // The seed's shell example, verbatim but for the URL and the token.
    let script = r#"set -euo pipefail
# First, fetch the current configuration
CONFIG=$(curl -s "$BASE/v1/api/human_handoff/configuration" \
  -H "Authorization: Bearer $API_TOKEN")

# Modify and PUT back (example: enable handoff)
echo "$CONFIG" | jq '.settings.is_active = true' | \
curl -X PUT "$BASE/v1/api/human_handoff/configuration" \
  -H "Authorization: Bearer $API_TOKEN" \
  -H 'Content-Type: application/json' \
  -d @- --fail-with-body -sS
"#;
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("BASE", &app.base)
        .env("API_TOKEN", &token)
        .output()
        .await
        .expect("bash, curl and jq are installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "script failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut expected = expected_default();
    expected["settings"]["is_active"] = json!(true);
    let answered: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answered, expected);
    let (stored, _) = read(&app, &token).await;
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn round_trip_changes_nothing_but_the_revision() {
    let (app, token) = app_with_sample().await;
    let (first, tag1) = read(&app, &token).await;
    assert_eq!(first, sample_stored());
    let (answered, tag2) = put_ok(&app, &token, &first).await;
    assert_eq!(answered, sample_stored());
    assert_ne!(tag1, tag2, "an accepted PUT is a new version");
    let (second, tag3) = read(&app, &token).await;
    assert_eq!(second, sample_stored());
    assert_eq!(tag3, tag2);
    // Byte for byte too: the same text, field order included.
    let a = app.get(PATH, &token).await.text().await.unwrap();
    put_ok(&app, &token, &serde_json::from_str(&a).unwrap()).await;
    let b = app.get(PATH, &token).await.text().await.unwrap();
    assert_eq!(a, b);
}

#[tokio::test]
async fn ids_are_kept_issued_and_never_reused() {
    let (app, token) = app_with_sample().await;
    let mut doc = sample_stored();
    // Drop custom guideline 1, keep 2, add one: the new one gets 3, not 1.
    doc["custom_guidelines"] = json!([
        {"id": 2, "name": "Legal", "description": "Anything about lawyers.", "is_active": true},
        {"name": "Press", "description": "Journalists", "is_active": true}
    ]);
    doc["availability"] = json!([
        {"day_span": "sunday", "start_time": "12:00", "end_time": "13:00"},
        {"id": 1, "day_span": "monday-friday", "start_time": "08:00", "end_time": "17:30"}
    ]);
    let (stored, _) = put_ok(&app, &token, &doc).await;
    assert_eq!(
        stored["custom_guidelines"],
        json!([
            {"id": 2, "name": "Legal", "description": "Anything about lawyers.", "is_active": true},
            {"id": 3, "name": "Press", "description": "Journalists", "is_active": true}
        ])
    );
    assert_eq!(
        stored["availability"],
        json!([
            {"id": 3, "day_span": "sunday", "start_time": "12:00", "end_time": "13:00"},
            {"id": 1, "day_span": "monday-friday", "start_time": "08:00", "end_time": "17:30"}
        ])
    );
    // Id 1 was this document's before: sending it back restores it.
    let mut doc = stored.clone();
    doc["custom_guidelines"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": 1, "name": "Refunds", "description": "Back again", "is_active": false}));
    let (stored, _) = put_ok(&app, &token, &doc).await;
    let ids: Vec<i64> = stored["custom_guidelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [2, 3, 1]);
    // `id: null` is a new item too.
    let mut doc = stored.clone();
    doc["routing_profiles"][1]["id"] = Value::Null;
    let (stored, _) = put_ok(&app, &token, &doc).await;
    assert_eq!(stored["routing_profiles"][1]["id"], 3);
}

#[tokio::test]
async fn unknown_ids_are_refused() {
    let err = assert_rejected(
        |d| {
            d["custom_guidelines"][0]["id"] = json!(3);
            d["availability"][1]["id"] = json!(0);
            d["routing_profiles"][0]["id"] = json!(99);
        },
        &[
            "availability[1].id",
            "custom_guidelines[0].id",
            "routing_profiles[0].id",
        ],
        "3 problems",
    )
    .await;
    assert!(
        err["details"][1]["message"]
            .as_str()
            .unwrap()
            .contains("never had a custom guideline with id 3"),
        "{err}"
    );
}

#[tokio::test]
async fn ids_of_another_section_are_refused() {
    // Custom guidelines get ids 3 and 4; routing profiles only ever had 1 and 2, so a routing
    // profile may not borrow id 4.
    let (app, token) = app_with_sample().await;
    let mut doc = sample_stored();
    for name in ["Press", "Sales"] {
        doc["custom_guidelines"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": name, "description": "", "is_active": true}));
    }
    let (stored, _) = put_ok(&app, &token, &doc).await;
    assert_eq!(stored["custom_guidelines"][3]["id"], 4);
    let mut doc = stored.clone();
    doc["routing_profiles"][1]["id"] = json!(4);
    let res = put(&app, &token, &doc, None).await;
    let err = assert_error(res, 400, "1 problem").await;
    assert_eq!(err["details"][0]["field"], "routing_profiles[1].id");
    assert_eq!(read(&app, &token).await.0, stored);
}

#[tokio::test]
async fn duplicate_ids_are_refused() {
    assert_rejected(
        |d| d["custom_guidelines"][1]["id"] = json!(1),
        &["custom_guidelines[1].id"],
        "1 problem",
    )
    .await;
}

#[tokio::test]
async fn topic_based_routing_active_is_derived() {
    let (app, token) = app_with_sample().await;
    let mut doc = sample_stored();
    // No active profile: false, whatever the PUT says.
    doc["routing_profiles"][0]["is_active"] = json!(false);
    doc["settings"]["topic_based_routing_active"] = json!(true);
    let (stored, _) = put_ok(&app, &token, &doc).await;
    assert_eq!(stored["settings"]["topic_based_routing_active"], false);
    // One active profile: true, even when the PUT says false or leaves the field out.
    doc["routing_profiles"][1]["is_active"] = json!(true);
    doc["settings"]["topic_based_routing_active"] = json!(false);
    let (stored, _) = put_ok(&app, &token, &doc).await;
    assert_eq!(stored["settings"]["topic_based_routing_active"], true);
    doc["settings"]
        .as_object_mut()
        .unwrap()
        .remove("topic_based_routing_active");
    let (stored, _) = put_ok(&app, &token, &doc).await;
    assert_eq!(stored["settings"]["topic_based_routing_active"], true);
    // No profiles at all: false.
    doc["routing_profiles"] = json!([]);
    let (stored, _) = put_ok(&app, &token, &doc).await;
    assert_eq!(stored["settings"]["topic_based_routing_active"], false);
    let (read_back, _) = read(&app, &token).await;
    assert_eq!(read_back["settings"]["topic_based_routing_active"], false);
}

#[tokio::test]
async fn documented_maximums_are_accepted() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let mut doc = sample();
    doc["settings"]["keywords"] = (0..100).map(|i| json!(format!("kw {i}"))).collect();
    doc["settings"]["emails"] = (0..100)
        .map(|i| json!(format!("op{i}@example.com")))
        .collect();
    doc["settings"]["question_message"] = json!("é".repeat(500));
    doc["availability"] = (0..50)
        .map(|_| json!({"day_span": "monday", "start_time": "00:00", "end_time": "23:59"}))
        .collect();
    doc["custom_guidelines"] = (0..100)
        .map(|i| json!({"name": format!("{i:0>100}"), "description": "d".repeat(2000), "is_active": true}))
        .collect();
    doc["routing_profiles"] = (0..100)
        .map(|i| json!({"name": format!("topic {i}"), "description": "", "is_active": false, "user_ids": (1..=100).collect::<Vec<i64>>()}))
        .collect();
    let (stored, _) = put_ok(&app, &token, &doc).await;
    assert_eq!(
        stored["settings"]["keywords"].as_array().unwrap().len(),
        100
    );
    assert_eq!(stored["availability"][49]["id"], 50);
    assert_eq!(stored["custom_guidelines"][99]["id"], 100);
    assert_eq!(stored["routing_profiles"][99]["id"], 100);
    assert_eq!(stored["settings"]["topic_based_routing_active"], false);
}

// One test per validation rule. Each starts from the stored sample, breaks one rule (sometimes
// in several places) and expects exactly those paths, with nothing changed.

#[tokio::test]
async fn rule_messages_at_most_500_characters() {
    assert_rejected(
        |d| {
            d["settings"]["question_message"] = json!("q".repeat(501));
            d["settings"]["confirmation_message"] = json!("c".repeat(501));
            d["settings"]["confirmation_outside_working_hours_message"] = json!("o".repeat(600));
        },
        &[
            "settings.question_message",
            "settings.confirmation_message",
            "settings.confirmation_outside_working_hours_message",
        ],
        "3 problems",
    )
    .await;
}

#[tokio::test]
async fn rule_names_at_most_100_characters_and_not_blank() {
    assert_rejected(
        |d| {
            d["custom_guidelines"][0]["name"] = json!("n".repeat(101));
            d["custom_guidelines"][1]["name"] = json!("   ");
            d["routing_profiles"][1]["name"] = json!("r".repeat(101));
        },
        &[
            "custom_guidelines[0].name",
            "custom_guidelines[1].name",
            "routing_profiles[1].name",
        ],
        "3 problems",
    )
    .await;
}

#[tokio::test]
async fn rule_names_unique_per_section() {
    assert_rejected(
        |d| {
            d["custom_guidelines"][1]["name"] = json!(" refunds ");
            d["routing_profiles"][1]["name"] = json!("BILLING");
        },
        &["custom_guidelines[1].name", "routing_profiles[1].name"],
        "2 problems",
    )
    .await;
}

#[tokio::test]
async fn rule_descriptions_at_most_2000_characters() {
    assert_rejected(
        |d| {
            d["generic_guidelines"][2]["description"] = json!("g".repeat(2001));
            d["custom_guidelines"][0]["description"] = json!("c".repeat(2001));
            d["routing_profiles"][0]["description"] = json!("r".repeat(2001));
        },
        &[
            "generic_guidelines[2].description",
            "custom_guidelines[0].description",
            "routing_profiles[0].description",
        ],
        "3 problems",
    )
    .await;
}

#[tokio::test]
async fn rule_day_span_is_a_lowercase_day_or_range() {
    assert_rejected(
        |d| {
            d["availability"] = json!([
                {"day_span": "Monday", "start_time": "09:00", "end_time": "10:00"},
                {"day_span": "mon-fri", "start_time": "09:00", "end_time": "10:00"},
                {"day_span": "monday-monday", "start_time": "09:00", "end_time": "10:00"},
                {"day_span": "friday-monday", "start_time": "09:00", "end_time": "10:00"},
                {"day_span": "", "start_time": "09:00", "end_time": "10:00"}
            ]);
        },
        &[
            "availability[0].day_span",
            "availability[1].day_span",
            "availability[2].day_span",
            "availability[4].day_span",
        ],
        "4 problems",
    )
    .await;
}

#[tokio::test]
async fn rule_times_are_hh_mm() {
    assert_rejected(
        |d| {
            d["availability"] = json!([
                {"day_span": "monday", "start_time": "9:00", "end_time": "10:00"},
                {"day_span": "monday", "start_time": "09:00", "end_time": "24:00"},
                {"day_span": "monday", "start_time": "09:60", "end_time": "10:00"},
                {"day_span": "monday", "start_time": "09:00", "end_time": "10.00"}
            ]);
        },
        &[
            "availability[0].start_time",
            "availability[1].end_time",
            "availability[2].start_time",
            "availability[3].end_time",
        ],
        "4 problems",
    )
    .await;
}

#[tokio::test]
async fn rule_start_time_before_end_time() {
    assert_rejected(
        |d| {
            d["availability"][0]["start_time"] = json!("17:30");
            d["availability"][1]["end_time"] = json!("09:59");
        },
        &["availability[0].end_time", "availability[1].end_time"],
        "2 problems",
    )
    .await;
}

#[tokio::test]
async fn rule_timezone_is_iana() {
    assert_rejected(
        |d| d["settings"]["timezone"] = json!("Mars/Olympus_Mons"),
        &["settings.timezone"],
        "1 problem",
    )
    .await;
    assert_rejected(
        |d| d["settings"]["timezone"] = json!("GMT+25"),
        &["settings.timezone"],
        "1 problem",
    )
    .await;
}

#[tokio::test]
async fn rule_emails_are_valid_and_distinct() {
    assert_rejected(
        |d| {
            d["settings"]["emails"] = json!([
                "ops@example.com",
                "not-an-address",
                "a b@example.com",
                "OPS@example.com",
                "x@localhost"
            ]);
        },
        &[
            "settings.emails[1]",
            "settings.emails[2]",
            "settings.emails[3]",
            "settings.emails[4]",
        ],
        "4 problems",
    )
    .await;
}

#[tokio::test]
async fn rule_user_ids_are_positive_and_distinct() {
    assert_rejected(
        |d| d["routing_profiles"][0]["user_ids"] = json!([0, -4, 9, 9]),
        &[
            "routing_profiles[0].user_ids[0]",
            "routing_profiles[0].user_ids[1]",
            "routing_profiles[0].user_ids[3]",
        ],
        "3 problems",
    )
    .await;
}

#[tokio::test]
async fn rule_user_ids_are_integers() {
    // A type error is serde's: the first one is reported with its path.
    assert_rejected(
        |d| d["routing_profiles"][1]["user_ids"] = json!([1.5]),
        &["routing_profiles[1].user_ids[0]"],
        "routing_profiles[1].user_ids[0]",
    )
    .await;
}

#[tokio::test]
async fn rule_keywords_not_blank_short_and_distinct() {
    assert_rejected(
        |d| {
            d["settings"]["keywords"] = json!(["human", " ", "k".repeat(101), "HUMAN "]);
        },
        &[
            "settings.keywords[1]",
            "settings.keywords[2]",
            "settings.keywords[3]",
        ],
        "3 problems",
    )
    .await;
}

#[tokio::test]
async fn rule_at_most_100_keywords() {
    assert_rejected(
        |d| d["settings"]["keywords"] = (0..101).map(|i| json!(format!("k{i}"))).collect(),
        &["settings.keywords"],
        "1 problem",
    )
    .await;
}

#[tokio::test]
async fn rule_at_most_100_emails() {
    assert_rejected(
        |d| {
            d["settings"]["emails"] = (0..101)
                .map(|i| json!(format!("o{i}@example.com")))
                .collect()
        },
        &["settings.emails"],
        "1 problem",
    )
    .await;
}

#[tokio::test]
async fn rule_at_most_50_availability_slots() {
    assert_rejected(
        |d| {
            d["availability"] = (0..51)
                .map(|_| json!({"day_span": "monday", "start_time": "09:00", "end_time": "10:00"}))
                .collect()
        },
        &["availability"],
        "1 problem",
    )
    .await;
}

#[tokio::test]
async fn rule_at_most_100_custom_guidelines() {
    assert_rejected(
        |d| {
            d["custom_guidelines"] = (0..101)
                .map(|i| json!({"name": format!("g{i}"), "description": "", "is_active": true}))
                .collect()
        },
        &["custom_guidelines"],
        "1 problem",
    )
    .await;
}

#[tokio::test]
async fn rule_at_most_100_routing_profiles() {
    assert_rejected(
        |d| {
            d["routing_profiles"] = (0..101)
                .map(|i| json!({"name": format!("p{i}"), "description": "", "is_active": true, "user_ids": []}))
                .collect()
        },
        &["routing_profiles"],
        "1 problem",
    )
    .await;
}

#[tokio::test]
async fn rule_at_most_100_operators_per_profile() {
    assert_rejected(
        |d| d["routing_profiles"][0]["user_ids"] = (1..=101).collect(),
        &["routing_profiles[0].user_ids"],
        "1 problem",
    )
    .await;
}

#[tokio::test]
async fn rule_generic_guideline_names_are_the_five() {
    assert_rejected(
        |d| d["generic_guidelines"][3]["name"] = json!("rudeness"),
        // The unknown entry replaced irrelevant_advice, which is therefore missing.
        &["generic_guidelines[3].name", "generic_guidelines"],
        "2 problems",
    )
    .await;
}

#[tokio::test]
async fn rule_generic_guidelines_each_once() {
    let err = assert_rejected(
        |d| d["generic_guidelines"][4]["name"] = json!("user_frustration"),
        &["generic_guidelines[4].name", "generic_guidelines"],
        "2 problems",
    )
    .await;
    assert!(
        err["details"][1]["message"]
            .as_str()
            .unwrap()
            .contains("`media_message` is missing"),
        "{err}"
    );
}

#[tokio::test]
async fn rule_generic_guidelines_all_five_required() {
    let err = assert_rejected(
        |d| {
            d["generic_guidelines"].as_array_mut().unwrap().truncate(3);
        },
        &["generic_guidelines", "generic_guidelines"],
        "2 problems",
    )
    .await;
    let messages: Vec<&str> = err["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(messages[0].contains("`irrelevant_advice` is missing"));
    assert!(messages[1].contains("`media_message` is missing"));
}

#[tokio::test]
async fn rule_unknown_fields_are_refused() {
    assert_rejected(
        |d| d["settings"]["colour"] = json!("blue"),
        &["settings.colour"],
        "settings.colour: unknown field `colour`",
    )
    .await;
    assert_rejected(
        |d| d["routing_profiles"][0]["priority"] = json!(1),
        &["routing_profiles[0].priority"],
        "routing_profiles[0].priority: unknown field `priority`",
    )
    .await;
    assert_rejected(
        |d| d["extra"] = json!({}),
        &["extra"],
        "unknown field `extra`",
    )
    .await;
}

#[tokio::test]
async fn rule_all_sections_and_fields_required() {
    assert_rejected(
        |d| {
            d.as_object_mut().unwrap().remove("routing_profiles");
        },
        &["routing_profiles"],
        "missing field `routing_profiles`",
    )
    .await;
    assert_rejected(
        |d| {
            d["settings"].as_object_mut().unwrap().remove("timezone");
        },
        &["settings.timezone"],
        "missing field `timezone`",
    )
    .await;
}

#[tokio::test]
async fn rule_field_types_are_checked() {
    assert_rejected(
        |d| d["settings"]["is_active"] = json!("yes"),
        &["settings.is_active"],
        "settings.is_active: invalid type",
    )
    .await;
}

#[tokio::test]
async fn every_problem_is_reported_at_once() {
    assert_rejected(
        |d| {
            d["settings"]["question_message"] = json!("q".repeat(501));
            d["settings"]["timezone"] = json!("Nowhere");
            d["availability"][1]["start_time"] = json!("25:00");
            d["generic_guidelines"][0]["name"] = json!("nope");
            d["custom_guidelines"][0]["name"] = json!("");
            d["routing_profiles"][0]["user_ids"] = json!([-1]);
            d["routing_profiles"][1]["id"] = json!(42);
        },
        &[
            "settings.question_message",
            "settings.timezone",
            "availability[1].start_time",
            "generic_guidelines[0].name",
            "generic_guidelines",
            "custom_guidelines[0].name",
            "routing_profiles[0].user_ids[0]",
            "routing_profiles[1].id",
        ],
        "8 problems",
    )
    .await;
}

#[tokio::test]
async fn malformed_bodies_use_the_envelope() {
    let (app, token) = app_with_sample().await;
    let (before, tag) = read(&app, &token).await;
    let res = app
        .client
        .put(app.url(PATH))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"settings\": ")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "malformed JSON").await;
    let res = app
        .client
        .put(app.url(PATH))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(sample().to_string())
        .send()
        .await
        .unwrap();
    assert_error(res, 415, "application/json").await;
    let (after, tag_after) = read(&app, &token).await;
    assert_eq!((after, tag_after), (before, tag));
}

#[tokio::test]
async fn if_match_guards_the_write() {
    let (app, token) = app_with_sample().await;
    let (doc, tag1) = read(&app, &token).await;
    let mut changed = doc.clone();
    changed["settings"]["is_active"] = json!(false);
    let res = put(&app, &token, &changed, Some(&tag1)).await;
    assert_eq!(res.status(), 200);
    let tag2 = etag_of(&res);
    assert_ne!(tag2, tag1);
    assert_eq!(read(&app, &token).await.1, tag2);
    let revisions = revision_count(&app).await;

    // A stale tag: 412 and nothing changed.
    let mut stale = doc.clone();
    stale["settings"]["keywords"] = json!(["stale"]);
    let res = put(&app, &token, &stale, Some(&tag1)).await;
    assert_error(res, 412, "has changed").await;
    let (now, tag_now) = read(&app, &token).await;
    assert_eq!(now["settings"]["is_active"], false);
    assert_eq!(
        now["settings"]["keywords"],
        json!(["speak to human", "agent"])
    );
    assert_eq!(tag_now, tag2);
    assert_eq!(revision_count(&app).await, revisions);

    // A weak tag never matches (strong comparison).
    let res = put(&app, &token, &stale, Some(&format!("W/{tag2}"))).await;
    assert_error(res, 412, "has changed").await;
    // 412 comes before validation: a stale tag with a bad body is still a 412.
    let mut bad = stale.clone();
    bad["settings"]["timezone"] = json!("Nowhere");
    let res = put(&app, &token, &bad, Some(&tag1)).await;
    assert_error(res, 412, "has changed").await;

    // A list containing the current tag, and `*`, both match.
    let res = put(&app, &token, &now, Some(&format!("{tag1}, {tag2}"))).await;
    assert_eq!(res.status(), 200);
    let res = put(&app, &token, &now, Some("*")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(revision_count(&app).await, revisions + 2);
}

#[tokio::test]
async fn if_match_on_the_default_document() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let token = app.writer(&org).await;
    let (doc, tag) = read(&app, &token).await;
    assert_eq!(tag, format!("\"{}-0\"", org.id.simple()));
    let res = put(&app, &token, &doc, Some(&tag)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(etag_of(&res), format!("\"{}-1\"", org.id.simple()));
    let res = put(&app, &token, &doc, Some(&tag)).await;
    assert_error(res, 412, "has changed").await;
}

#[tokio::test]
async fn without_if_match_the_last_write_wins() {
    let (app, token) = app_with_sample().await;
    let (doc, _) = read(&app, &token).await;
    let mut a = doc.clone();
    a["settings"]["keywords"] = json!(["first"]);
    let mut b = doc.clone();
    b["settings"]["keywords"] = json!(["second"]);
    put_ok(&app, &token, &a).await;
    put_ok(&app, &token, &b).await;
    assert_eq!(
        read(&app, &token).await.0["settings"]["keywords"],
        json!(["second"])
    );
}

#[tokio::test]
async fn concurrent_writers_of_one_version_exactly_one_wins() {
    let (app, token) = app_with_sample().await;
    let (doc, tag) = read(&app, &token).await;
    let writers = 12;
    let mut tasks = Vec::new();
    for i in 0..writers {
        let client = app.client.clone();
        let url = app.url(PATH);
        let token = token.clone();
        let tag = tag.clone();
        let mut body = doc.clone();
        body["settings"]["keywords"] = json!([format!("writer {i}")]);
        tasks.push(tokio::spawn(async move {
            let res = client
                .put(url)
                .bearer_auth(token)
                .header("if-match", tag)
                .json(&body)
                .send()
                .await
                .unwrap();
            (i, res.status().as_u16())
        }));
    }
    let mut winners = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (i, 200) => winners.push(i),
            (_, 412) => refused += 1,
            (_, other) => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer of a version wins");
    assert_eq!(refused, writers - 1);
    let (now, _) = read(&app, &token).await;
    assert_eq!(
        now["settings"]["keywords"],
        json!([format!("writer {}", winners[0])])
    );
}

#[tokio::test]
async fn concurrent_read_modify_write_loses_nothing() {
    let (app, token) = app_with_sample().await;
    let clients = 10;
    let writes_each = 4;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = app.client.clone();
        let url = app.url(PATH);
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            for w in 0..writes_each {
                loop {
                    let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
                    let tag = res.headers()["etag"].to_str().unwrap().to_owned();
                    let mut doc: Value = res.json().await.unwrap();
                    doc["settings"]["keywords"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!(format!("c{c}-w{w}")));
                    let res = client
                        .put(&url)
                        .bearer_auth(&token)
                        .header("if-match", tag)
                        .json(&doc)
                        .send()
                        .await
                        .unwrap();
                    match res.status().as_u16() {
                        200 => break,
                        412 => refused += 1,
                        other => panic!("unexpected status {other}"),
                    }
                }
            }
            refused
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap();
    }
    let (doc, _) = read(&app, &token).await;
    let mut keywords: Vec<String> = doc["settings"]["keywords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    keywords.sort();
    let mut expected: Vec<String> = vec!["agent".to_owned(), "speak to human".to_owned()];
    for c in 0..clients {
        for w in 0..writes_each {
            expected.push(format!("c{c}-w{w}"));
        }
    }
    expected.sort();
    assert_eq!(keywords, expected, "every accepted write is reflected");
    // The sample's PUT, then exactly one revision per accepted write.
    assert_eq!(revision_count(&app).await, 1 + clients * writes_each);
    let attempts: i64 = refused + clients * writes_each;
    assert!(attempts >= clients * writes_each);
    eprintln!("{refused} of {attempts} conditional writes were refused with 412");
}

#[tokio::test]
async fn revisions_are_listed_newest_first() {
    let app = TestApp::spawn().await;
    let org = app.org("acme", None, None).await;
    let alice = app.writer(&org).await;
    let bob = app.writer(&org).await;
    let reader = app.reader(&org).await;
    let alice_jti = baton::auth::unverified_jti(&alice).unwrap().to_string();
    let bob_jti = baton::auth::unverified_jti(&bob).unwrap().to_string();

    let mut doc = sample();
    let (r1, _) = put_ok(&app, &alice, &doc).await;
    doc["settings"]["keywords"] = json!(["two"]);
    let (r2, _) = put_ok(&app, &bob, &doc).await;
    doc["settings"]["keywords"] = json!(["three"]);
    let (r3, _) = put_ok(&app, &alice, &doc).await;

    let res = app.get(REVISIONS, &reader).await;
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    let revisions = list["revisions"].as_array().unwrap();
    let numbers: Vec<i64> = revisions
        .iter()
        .map(|r| r["revision"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    let tokens: Vec<&str> = revisions
        .iter()
        .map(|r| r["token_id"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, [&alice_jti, &bob_jti, &alice_jti]);
    assert_eq!(revisions[0]["configuration"], r3);
    assert_eq!(revisions[1]["configuration"], r2);
    assert_eq!(revisions[2]["configuration"], r1);
    assert_eq!(
        revisions[1]["configuration"]["settings"]["keywords"],
        json!(["two"])
    );
    assert_eq!(revisions[0]["etag"], format!("\"{}-3\"", org.id.simple()));
    let t0 = revisions[0]["created_at"].as_str().unwrap();
    let t2 = revisions[2]["created_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(t0).unwrap()
            >= chrono::DateTime::parse_from_rfc3339(t2).unwrap()
    );
    assert_eq!(list["next_before"], Value::Null);

    // Paging.
    let list: Value = app
        .get(&format!("{REVISIONS}?limit=2"), &reader)
        .await
        .json()
        .await
        .unwrap();
    let numbers: Vec<i64> = list["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2]);
    assert_eq!(list["next_before"], 2);
    let list: Value = app
        .get(&format!("{REVISIONS}?limit=2&before=2"), &reader)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["revisions"].as_array().unwrap().len(), 1);
    assert_eq!(list["revisions"][0]["revision"], 1);
    assert_eq!(list["next_before"], Value::Null);

    let res = app.get(&format!("{REVISIONS}?limit=0"), &reader).await;
    let err = assert_error(res, 400, "invalid query").await;
    assert_eq!(err["details"][0]["field"], "limit");
    let res = app.get(&format!("{REVISIONS}?limit=abc"), &reader).await;
    assert_error(res, 400, "limit").await;
}

#[tokio::test]
async fn auth_matrix() {
    let app = TestApp::spawn().await;
    let reseller = app.reseller("channel").await;
    let other_reseller = app.reseller("other-channel").await;
    let org = app.org("acme", Some("channel"), None).await;
    let foreign = app.org("globex", Some("other-channel"), None).await;
    let writer = app.writer(&org).await;
    let reader = app.reader(&org).await;
    let reseller_token = app
        .token(
            Subject::Reseller(reseller.id),
            &[Scope::ReadAll, Scope::WriteAll],
        )
        .await;
    let _ = other_reseller;
    let (stored, _) = put_ok(&app, &writer, &sample()).await;

    for path in [PATH, REVISIONS] {
        // Missing and bad tokens.
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_error(res, 401, "missing token").await;
        let res = app.get(path, "not-a-jwt").await;
        assert_error(res, 401, "malformed").await;
        // A read-only token reads.
        assert_eq!(app.get(path, &reader).await.status(), 200);
        // Reseller: its own organization by id; another reseller's is a 404; no id is a 400.
        let res = app
            .get(
                &format!("{path}?organization_id={}", org.id),
                &reseller_token,
            )
            .await;
        assert_eq!(res.status(), 200);
        let res = app
            .get(
                &format!("{path}?organization_id={}", foreign.id),
                &reseller_token,
            )
            .await;
        assert_error(res, 404, "not found").await;
        let res = app.get(path, &reseller_token).await;
        assert_error(res, 400, "organization_id").await;
        // An org token naming another organization: 404.
        let res = app
            .get(&format!("{path}?organization_id={}", foreign.id), &writer)
            .await;
        assert_error(res, 404, "not found").await;
    }
    let (as_reseller, _) = {
        let res = app
            .get(
                &format!("{PATH}?organization_id={}", org.id),
                &reseller_token,
            )
            .await;
        let tag = etag_of(&res);
        (res.json::<Value>().await.unwrap(), tag)
    };
    assert_eq!(as_reseller, stored);

    // Writes: no token, bad token, read-only token, reseller token.
    let res = app
        .client
        .put(app.url(PATH))
        .json(&sample())
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "missing token").await;
    let res = put(&app, "not-a-jwt", &sample(), None).await;
    assert_error(res, 401, "malformed").await;
    let res = put(&app, &reader, &sample(), None).await;
    let err = assert_error(res, 403, "").await;
    assert_eq!(
        err["message"],
        "Insufficient token scope. Required: write_all"
    );
    let res = put(&app, &reseller_token, &sample(), None).await;
    assert_error(res, 403, "reseller").await;
    // None of that wrote anything.
    assert_eq!(read(&app, &writer).await.0, stored);
    assert_eq!(revision_count(&app).await, 1);
}

#[tokio::test]
async fn organizations_never_affect_each_other() {
    let app = TestApp::spawn().await;
    let a = app.org("acme", None, None).await;
    let b = app.org("globex", None, None).await;
    let token_a = app.writer(&a).await;
    let token_b = app.writer(&b).await;
    let (_, tag_a0) = read(&app, &token_a).await;

    let (stored_a, tag_a) = put_ok(&app, &token_a, &sample()).await;
    assert_eq!(stored_a, sample_stored());
    // B still has the default, and its own revision 0.
    let (doc_b, tag_b) = read(&app, &token_b).await;
    assert_eq!(doc_b, expected_default());
    assert_eq!(tag_b, format!("\"{}-0\"", b.id.simple()));
    assert_ne!(tag_b, tag_a0);
    // A's tags never match B's document.
    let res = put(&app, &token_b, &doc_b, Some(&tag_a)).await;
    assert_error(res, 412, "has changed").await;
    let res = put(&app, &token_b, &doc_b, Some(&tag_a0)).await;
    assert_error(res, 412, "has changed").await;
    // B's ids are its own: its first items are 1 and 2 too, and A's ids mean nothing to B.
    let mut for_b = sample();
    for_b["custom_guidelines"] = json!([{"name": "Only B", "description": "", "is_active": true}]);
    let (stored_b, _) = put_ok(&app, &token_b, &for_b).await;
    assert_eq!(stored_b["custom_guidelines"][0]["id"], 1);
    let mut bad_b = stored_b.clone();
    bad_b["custom_guidelines"][0]["id"] = json!(2);
    let res = put(&app, &token_b, &bad_b, None).await;
    let err = assert_error(res, 400, "problem").await;
    assert_eq!(err["details"][0]["field"], "custom_guidelines[0].id");
    // A is untouched by all of B's writes, and each lists only its own revisions.
    assert_eq!(read(&app, &token_a).await, (sample_stored(), tag_a));
    let list_a: Value = app.get(REVISIONS, &token_a).await.json().await.unwrap();
    let list_b: Value = app.get(REVISIONS, &token_b).await.json().await.unwrap();
    assert_eq!(list_a["revisions"].as_array().unwrap().len(), 1);
    assert_eq!(list_b["revisions"].as_array().unwrap().len(), 1);
    assert_eq!(list_b["revisions"][0]["configuration"], stored_b);
}

#[tokio::test]
async fn concurrent_writes_without_if_match_all_succeed_with_distinct_ids() {
    let (app, token) = app_with_sample().await;
    let writers = 16;
    let mut tasks = Vec::new();
    for i in 0..writers {
        let client = app.client.clone();
        let url = app.url(PATH);
        let token = token.clone();
        let mut body = sample_stored();
        body["custom_guidelines"] =
            json!([{"name": format!("writer {i}"), "description": "", "is_active": true}]);
        tasks.push(tokio::spawn(async move {
            let res = client
                .put(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let stored: Value = res.json().await.unwrap();
            stored["custom_guidelines"][0]["id"].as_i64().unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort_unstable();
    // The sample used custom guideline ids 1 and 2; each writer got its own next id.
    assert_eq!(ids, (3..3 + writers).collect::<Vec<i64>>());
    assert_eq!(revision_count(&app).await, 1 + writers);
    let (doc, tag) = read(&app, &token).await;
    let last: i64 = sqlx::query_scalar("select revision from handoff_configurations")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(last, 1 + writers);
    assert!(tag.ends_with(&format!("-{}\"", 1 + writers)));
    // The last write won: the stored guideline is the one with the highest id.
    assert_eq!(doc["custom_guidelines"][0]["id"], 2 + writers);
}
