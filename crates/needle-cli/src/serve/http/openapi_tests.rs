//! `docs/http-api.md` against the OpenAPI description that `GET /v1/openapi.json` serves: every
//! documented `METHOD /path` is in the description and every described route is documented, and
//! each documented request example deserializes into the handler's own request type (the one
//! the description names for that route).

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// One `### ` section of the doc: the routes its heading names and its fenced JSON blocks.
struct Section {
    routes: Vec<(String, String)>,
    json_blocks: Vec<String>,
}

fn doc_sections(doc: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut in_block: Option<String> = None;
    let mut is_json = false;
    for line in doc.lines() {
        if let Some(block) = in_block.as_mut() {
            if line.trim_start().starts_with("```") {
                let text = in_block.take().unwrap_or_default();
                if is_json && let Some(s) = sections.last_mut() {
                    s.json_blocks.push(text);
                }
            } else {
                block.push_str(line);
                block.push('\n');
            }
            continue;
        }
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            is_json = fence.trim() == "json";
            in_block = Some(String::new());
            continue;
        }
        if line.starts_with("## ") {
            // A new top-level part: later blocks belong to no endpoint.
            sections.push(Section {
                routes: Vec::new(),
                json_blocks: Vec::new(),
            });
        } else if let Some(heading) = line.strip_prefix("### ") {
            let routes = heading
                .split('`')
                .skip(1)
                .step_by(2)
                .filter_map(|code| {
                    let (method, path) = code.split_once(' ')?;
                    let method = method.to_ascii_lowercase();
                    (METHODS.contains(&method.as_str()) && path.starts_with('/'))
                        .then(|| (method, path.to_string()))
                })
                .collect();
            sections.push(Section {
                routes,
                json_blocks: Vec::new(),
            });
        }
    }
    sections
}

/// A doc example with its elisions (`[0.012, -0.034, …]`, `[…]`) taken out, as JSON.
fn example_json(text: &str) -> Result<Value, String> {
    let cleaned = text.replace(", …", "").replace('…', "");
    serde_json::from_str(&cleaned).map_err(|e| format!("not JSON ({e}):\n{text}"))
}

/// Deserializes `v` into the request type the description calls `schema`.
fn deserialize_as(schema: &str, v: Value) -> Result<(), String> {
    fn de<T: serde::de::DeserializeOwned>(v: Value) -> Result<(), String> {
        serde_json::from_value::<T>(v)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    match schema {
        "CreateCollection" => de::<CreateCollection>(v),
        "RecordIn" => de::<RecordIn>(v),
        "BatchIn" => de::<BatchIn>(v),
        "UpdateIn" => de::<UpdateIn>(v),
        "SearchIn" => de::<SearchIn>(v),
        "CountIn" => de::<CountIn>(v),
        "ScrollIn" => de::<ScrollIn>(v),
        "IdsIn" => de::<IdsIn>(v),
        "DeleteIdsIn" => de::<DeleteIdsIn>(v),
        "DeleteByFilterIn" => de::<DeleteByFilterIn>(v),
        "IndexIn" => de::<IndexIn>(v),
        "NodeAddrs" => de::<NodeAddrs>(v),
        "Transfer" => de::<Transfer>(v),
        other => Err(format!(
            "no request type named {other} in this test's table: add it"
        )),
    }
}

fn spec() -> Value {
    serde_json::to_value(openapi()).expect("the description serializes")
}

fn spec_routes(spec: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                routes.insert((method.to_string(), path.clone()));
            }
        }
    }
    routes
}

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/http-api.md");
    std::fs::read_to_string(path).expect("docs/http-api.md")
}

#[test]
fn every_documented_route_is_described_and_every_described_route_is_documented() {
    let spec = spec();
    let described = spec_routes(&spec);
    let documented: BTreeSet<(String, String)> = doc_sections(&doc())
        .into_iter()
        .flat_map(|s| s.routes)
        .collect();
    assert!(
        described.len() >= 25,
        "only {} routes described",
        described.len()
    );
    let undescribed: Vec<_> = documented.difference(&described).collect();
    let undocumented: Vec<_> = described.difference(&documented).collect();
    assert!(
        undescribed.is_empty() && undocumented.is_empty(),
        "docs/http-api.md and /v1/openapi.json disagree:\n documented, not in the description: {undescribed:?}\n described, not documented (a `### `METHOD /path`` heading): {undocumented:?}"
    );
    assert_eq!(spec["openapi"].as_str().map(|v| &v[..2]), Some("3."));
}

#[test]
fn every_documented_request_example_deserializes_into_the_described_request_type() {
    let spec = spec();
    let mut checked = 0;
    let mut failures = Vec::new();
    for section in doc_sections(&doc()) {
        for (method, path) in &section.routes {
            let Some(body) = spec["paths"][path][method].get("requestBody") else {
                continue;
            };
            let schema = body["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .unwrap_or_else(|| panic!("{method} {path}: request body is not a named type"));
            let Some(first) = section.json_blocks.first() else {
                failures.push(format!(
                    "{method} {path}: no JSON request example in its section"
                ));
                continue;
            };
            match example_json(first).and_then(|v| deserialize_as(schema, v)) {
                Ok(()) => checked += 1,
                Err(e) => failures.push(format!(
                    "{method} {path}: the first example is not a {schema}: {e}"
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 14, "only {checked} request examples checked");
}

#[test]
fn a_wrong_example_is_refused() {
    // The check itself can fail: a misspelt field and a wrong type are caught.
    assert!(deserialize_as("SearchIn", serde_json::json!({"vectr": [1.0]})).is_err());
    assert!(deserialize_as("Transfer", serde_json::json!({"to": "two"})).is_err());
    assert!(deserialize_as("Nope", serde_json::json!({})).is_err());
}
