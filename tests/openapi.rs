//! The committed OpenAPI document must be what the code generates.
#![allow(clippy::unwrap_used)]

#[test]
fn committed_openapi_matches_the_code() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json is committed");
    let generated = baton::http::openapi_json();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date: run `cargo run --bin gen-openapi` and commit the result"
    );
}

fn document() -> serde_json::Value {
    serde_json::to_value(baton::http::openapi()).unwrap()
}

/// Every operation of the document, as `(label, operation)`.
fn operations(doc: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((format!("{} {path}", method.to_uppercase()), op.clone()));
        }
    }
    out
}

#[test]
fn every_operation_declares_request_id_and_the_statuses_of_serving() {
    let doc = document();
    for (label, op) in operations(&doc) {
        let params = op["parameters"].as_array().unwrap();
        assert!(
            params.iter().any(|p| p["name"] == "x-request-id"
                && p["in"] == "header"
                && p["required"] == false),
            "{label}: no optional x-request-id header"
        );
        let responses = op["responses"].as_object().unwrap();
        for (status, response) in responses {
            assert!(
                response["headers"].get("x-request-id").is_some(),
                "{label} {status}: x-request-id is not a response header"
            );
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorDto",
                    "{label} {status}"
                );
            }
            if status == "503" || status == "429" {
                assert!(
                    response["headers"].get("Retry-After").is_some(),
                    "{label} {status}"
                );
            }
        }
        let secured = op
            .get("security")
            .is_none_or(|s| !s.as_array().unwrap().is_empty());
        if secured {
            for status in ["400", "401", "403", "503"] {
                assert!(responses.contains_key(status), "{label}: no {status}");
            }
        }
        if label.starts_with("GET ") && secured {
            assert!(responses.contains_key("429"), "{label}: no 429");
        }
        if op.get("requestBody").is_some() {
            for status in ["413", "415"] {
                assert!(responses.contains_key(status), "{label}: no {status}");
            }
            for (media, content) in op["requestBody"]["content"].as_object().unwrap() {
                assert!(
                    content.get("schema").is_some(),
                    "{label}: {media} has no schema"
                );
            }
        }
    }
}

#[test]
fn every_query_parameter_is_typed_beyond_a_plain_string() {
    // Free-text ids: any string (but NUL) is one, so `type: string` is exact.
    let free_text = ["instruction_id", "id", "shared_id"];
    let doc = document();
    for (label, op) in operations(&doc) {
        for p in op["parameters"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            if p["in"] != "query" || free_text.contains(&name) {
                continue;
            }
            let schema = &p["schema"];
            let typed = [
                "format", "pattern", "enum", "minimum", "oneOf", "anyOf", "$ref",
            ]
            .iter()
            .any(|k| schema.get(*k).is_some());
            assert!(typed, "{label}: `{name}` is an untyped string: {schema}");
            assert!(
                p.get("description").is_some(),
                "{label}: `{name}` has no description"
            );
        }
    }
}

#[test]
fn analytics_sentiment_is_required_as_in_the_opencx_contract() {
    let contract: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/contract/opencx-handoff-analytics.openapi.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    let theirs = &contract["components"]["schemas"]["HandoffAnalyticsPublicResponseDto"]["properties"]
        ["sentiments"]["items"]["required"];
    let doc = document();
    let ours = &doc["components"]["schemas"]["HandoffSentimentCount"]["required"];
    let mut theirs: Vec<_> = theirs.as_array().unwrap().iter().collect();
    let mut ours: Vec<_> = ours.as_array().unwrap().iter().collect();
    theirs.sort_by_key(|v| v.to_string());
    ours.sort_by_key(|v| v.to_string());
    assert_eq!(ours, theirs);
    assert!(ours.iter().any(|v| *v == "sentiment"));
}
