//! The OpenAPI document (`/api/openapi.json`) tells the truth: real responses of every
//! operation, successes and errors, have a status the document lists for that operation and
//! a body its schema for that status accepts.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Engine, TestServer, get_with_host, on_every_engine, rule};

/// Keywords the checker understands; a schema using any other fails the check rather than
/// passing unchecked.
const KNOWN: &[&str] = &[
    "type",
    "properties",
    "required",
    "items",
    "allOf",
    "oneOf",
    "anyOf",
    "enum",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "format",
    "description",
    "title",
];

/// Checks values against the document's schemas: the subset of JSON Schema it uses, `$ref`s
/// resolved in the document. Stricter than JSON Schema in one way: an object may only have
/// the properties its schema lists, so a field the server sends that the document does not
/// describe is a mismatch too.
struct Checker<'a> {
    doc: &'a Value,
}

fn type_matches(ty: &str, value: &Value) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unknown type {other}"),
    }
}

impl<'a> Checker<'a> {
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("not a local schema: {r}"));
                let target = &self.doc["components"]["schemas"][name];
                assert!(target.is_object(), "{r} is not in the document");
                self.resolve(target)
            }
            None => schema,
        }
    }

    /// The properties an object schema lists, its `allOf` parts' included; `None` for an
    /// object schema that lists none (any object).
    fn properties(&self, schema: &'a Value) -> Option<BTreeSet<String>> {
        let schema = self.resolve(schema);
        let mut names = BTreeSet::new();
        let mut listed = false;
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            listed = true;
            names.extend(props.keys().cloned());
        }
        for part in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(more) = self.properties(part) {
                listed = true;
                names.extend(more);
            }
        }
        listed.then_some(names)
    }

    fn errors(&self, schema: &'a Value, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(schema, value, "$", true, &mut errors);
        errors
    }

    fn check(
        &self,
        schema: &'a Value,
        value: &Value,
        at: &str,
        strict: bool,
        errors: &mut Vec<String>,
    ) {
        let schema = self.resolve(schema);
        let Some(keywords) = schema.as_object() else {
            errors.push(format!("{at}: the schema is not an object: {schema}"));
            return;
        };
        for key in keywords.keys() {
            if !KNOWN.contains(&key.as_str()) {
                errors.push(format!("{at}: the checker does not know `{key}`"));
            }
        }
        if let Some(ty) = keywords.get("type") {
            let types: Vec<&str> = match ty {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                other => panic!("bad type {other}"),
            };
            if !types.iter().any(|t| type_matches(t, value)) {
                errors.push(format!("{at}: {value} is not of type {types:?}"));
                return;
            }
        }
        if let Some(options) = keywords.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            errors.push(format!("{at}: {value} is not one of {options:?}"));
        }
        match value {
            Value::Object(map) => {
                for name in keywords
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !map.contains_key(name) {
                        errors.push(format!("{at}: required property `{name}` is missing"));
                    }
                }
                if let Some(props) = keywords.get("properties").and_then(Value::as_object) {
                    for (name, v) in map {
                        if let Some(p) = props.get(name) {
                            self.check(p, v, &format!("{at}.{name}"), true, errors);
                        }
                    }
                }
                if strict && let Some(listed) = self.properties(schema) {
                    for name in map.keys().filter(|n| !listed.contains(*n)) {
                        errors.push(format!("{at}: property `{name}` is not in the document"));
                    }
                }
            }
            Value::Array(items) => {
                let len = items.len() as u64;
                if let Some(min) = keywords.get("minItems").and_then(Value::as_u64)
                    && len < min
                {
                    errors.push(format!("{at}: {len} items, fewer than {min}"));
                }
                if let Some(max) = keywords.get("maxItems").and_then(Value::as_u64)
                    && len > max
                {
                    errors.push(format!("{at}: {len} items, more than {max}"));
                }
                if let Some(item) = keywords.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.check(item, v, &format!("{at}[{i}]"), true, errors);
                    }
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if let Some(min) = keywords.get("minimum").and_then(Value::as_f64)
                    && x < min
                {
                    errors.push(format!("{at}: {n} is below the minimum {min}"));
                }
                if let Some(max) = keywords.get("maximum").and_then(Value::as_f64)
                    && x > max
                {
                    errors.push(format!("{at}: {n} is above the maximum {max}"));
                }
                match keywords.get("format").and_then(Value::as_str) {
                    Some("int64") if n.as_i64().is_none() => {
                        errors.push(format!("{at}: {n} is not an int64"));
                    }
                    Some("int32") if n.as_i64().and_then(|v| i32::try_from(v).ok()).is_none() => {
                        errors.push(format!("{at}: {n} is not an int32"));
                    }
                    _ => {}
                }
            }
            Value::String(s) => {
                if keywords.get("format").and_then(Value::as_str) == Some("date-time")
                    && chrono::DateTime::parse_from_rfc3339(s).is_err()
                {
                    errors.push(format!("{at}: {s:?} is not a date-time"));
                }
                let chars = s.chars().count() as u64;
                if let Some(min) = keywords.get("minLength").and_then(Value::as_u64)
                    && chars < min
                {
                    errors.push(format!("{at}: {s:?} is shorter than {min}"));
                }
            }
            _ => {}
        }
        for part in keywords
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // The parts together list the properties; strictness was checked above.
            self.check(part, value, at, false, errors);
        }
        if let Some(parts) = keywords.get("oneOf").and_then(Value::as_array) {
            let matching = parts
                .iter()
                .filter(|p| {
                    let mut e = Vec::new();
                    self.check(p, value, at, strict, &mut e);
                    e.is_empty()
                })
                .count();
            if matching != 1 {
                errors.push(format!(
                    "{at}: {value} matches {matching} of the oneOf schemas, not one"
                ));
            }
        }
        if let Some(parts) = keywords.get("anyOf").and_then(Value::as_array) {
            let any = parts.iter().any(|p| {
                let mut e = Vec::new();
                self.check(p, value, at, strict, &mut e);
                e.is_empty()
            });
            if !any {
                errors.push(format!("{at}: {value} matches none of the anyOf schemas"));
            }
        }
    }
}

/// A real response to check: the operation it answered, its status, content type and body.
struct Seen {
    method: &'static str,
    template: &'static str,
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// What is wrong with `seen` according to the document.
fn mismatches(doc: &Value, seen: &Seen) -> Vec<String> {
    let what = format!("{} {} -> {}", seen.method, seen.template, seen.status);
    let op = &doc["paths"][seen.template][seen.method];
    if !op.is_object() {
        return vec![format!("{what}: the operation is not in the document")];
    }
    let response = &op["responses"][seen.status.to_string()];
    if !response.is_object() {
        return vec![format!("{what}: the status is not documented")];
    }
    let mut problems = Vec::new();
    if response["description"].as_str().is_none_or(str::is_empty) {
        problems.push(format!("{what}: the response has no description"));
    }
    let content = &response["content"];
    let mime = seen.content_type.split(';').next().unwrap_or("").trim();
    let Some(media) = content.get(mime) else {
        problems.push(format!(
            "{what}: content type {mime:?}, the document says {content}"
        ));
        return problems;
    };
    if mime != "application/json" {
        return problems;
    }
    let body: Value = match serde_json::from_slice(&seen.body) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("{what}: the body is not JSON: {e}"));
            return problems;
        }
    };
    problems.extend(
        Checker { doc }
            .errors(&media["schema"], &body)
            .into_iter()
            .map(|e| {
                let body: String = body.to_string().chars().take(300).collect();
                format!("{what}: {e} (body {body})")
            }),
    );
    problems
}

async fn send(
    s: &TestServer,
    method: &'static str,
    path: &str,
    template: &'static str,
    body: Body,
) -> Seen {
    let mut req = s.client.request(
        Method::from_bytes(method.as_bytes()).expect("method"),
        s.url(path),
    );
    if let Some((content_type, bytes)) = body {
        req = req.header("content-type", content_type).body(bytes);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.bytes().await.expect("body").to_vec();
    Seen {
        method: match method {
            "GET" => "get",
            "POST" => "post",
            "PUT" => "put",
            "DELETE" => "delete",
            other => panic!("{other}"),
        },
        template,
        status,
        content_type,
        body,
    }
}

/// A request body with its content type, or none.
type Body = Option<(&'static str, Vec<u8>)>;

fn json_body(v: &Value) -> Body {
    Some(("application/json", v.to_string().into_bytes()))
}

on_every_engine!(real_responses_match_the_document);
async fn real_responses_match_the_document(engine: Engine) {
    let s = TestServer::start_with(engine, |c| c.body_limit = 8192, 200, 2000).await;
    let (status, doc) = s.get_json("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);

    // The shapes that differ: a list-form rule, a tree-form rule, a rule with only
    // dependencies (null conditions), a built segment and a run.
    let list = s.create_rule(&rule("list form")).await;
    let mut tree = rule("tree form");
    tree["conditions"] = json!({"any": [
        {"field": "total_spend", "operator": ">", "value": 5000},
        {"not": {"field": "city_tier", "operator": "=", "value": 1}}
    ]});
    tree["schedule"] = Value::Null;
    let tree = s.create_rule(&tree).await;
    let deps = s
        .create_rule(
            &json!({"rule_name": "deps only", "depends_on": [list, tree], "operation": "UNION"}),
        )
        .await;
    let segment = s.built(list).await;
    let (_, runs) = s.get_json("/api/runs").await;
    let run = runs["items"][0]["id"].as_i64().expect("a run");
    const BEYOND: &str = "9223372036854775808";

    let mut seen = Vec::new();
    let gets: Vec<(String, &'static str)> = vec![
        ("/api/rules".into(), "/api/rules"),
        ("/api/rules?page=2&per_page=1".into(), "/api/rules"),
        ("/api/rules?page=0".into(), "/api/rules"),
        ("/api/rules?page=4294967296".into(), "/api/rules"),
        ("/api/rules?per_page=abc".into(), "/api/rules"),
        (format!("/api/rules/{list}"), "/api/rules/{id}"),
        (format!("/api/rules/{tree}"), "/api/rules/{id}"),
        (format!("/api/rules/{deps}"), "/api/rules/{id}"),
        ("/api/rules/999999".into(), "/api/rules/{id}"),
        (format!("/api/rules/{BEYOND}"), "/api/rules/{id}"),
        ("/api/rules/abc".into(), "/api/rules/{id}"),
        (format!("/api/rules/{list}/plan"), "/api/rules/{id}/plan"),
        (format!("/api/rules/{deps}/plan"), "/api/rules/{id}/plan"),
        ("/api/rules/999999/plan".into(), "/api/rules/{id}/plan"),
        (format!("/api/rules/{BEYOND}/plan"), "/api/rules/{id}/plan"),
        ("/api/segments".into(), "/api/segments"),
        ("/api/segments?page=0".into(), "/api/segments"),
        (format!("/api/segments/{segment}"), "/api/segments/{id}"),
        ("/api/segments/999999".into(), "/api/segments/{id}"),
        (format!("/api/segments/{BEYOND}"), "/api/segments/{id}"),
        (
            format!("/api/segments/{segment}/sample_data"),
            "/api/segments/{id}/sample_data",
        ),
        (
            "/api/segments/999999/sample_data".into(),
            "/api/segments/{id}/sample_data",
        ),
        (
            format!("/api/segments/{BEYOND}/sample_data"),
            "/api/segments/{id}/sample_data",
        ),
        (
            format!("/api/segments/{segment}/lineage"),
            "/api/segments/{id}/lineage",
        ),
        (
            "/api/segments/999999/lineage".into(),
            "/api/segments/{id}/lineage",
        ),
        (
            format!("/api/segments/{segment}/export"),
            "/api/segments/{id}/export",
        ),
        (
            "/api/segments/999999/export".into(),
            "/api/segments/{id}/export",
        ),
        (
            format!("/api/segments/{BEYOND}/export"),
            "/api/segments/{id}/export",
        ),
        ("/api/runs".into(), "/api/runs"),
        (
            format!("/api/runs?rule_id={list}&status=succeeded&limit=5"),
            "/api/runs",
        ),
        ("/api/runs?status=bogus".into(), "/api/runs"),
        ("/api/runs?limit=0".into(), "/api/runs"),
        (format!("/api/runs/{run}"), "/api/runs/{id}"),
        ("/api/runs/999999".into(), "/api/runs/{id}"),
        (format!("/api/runs/{BEYOND}"), "/api/runs/{id}"),
        ("/api/health".into(), "/api/health"),
        ("/api/analytics/summary".into(), "/api/analytics/summary"),
        ("/api/fields".into(), "/api/fields"),
        (
            "/api/schedules/describe?schedule=0%200%20*%20*%20*".into(),
            "/api/schedules/describe",
        ),
        (
            "/api/schedules/describe?schedule=bogus".into(),
            "/api/schedules/describe",
        ),
        ("/api/schedules/describe".into(), "/api/schedules/describe"),
    ];
    for (path, template) in gets {
        seen.push(send(&s, "GET", &path, template, None).await);
    }

    let mut big = rule("big");
    big["description"] = json!("x".repeat(10_000));
    let plain = Some(("text/plain", rule("plain").to_string().into_bytes()));
    let malformed = Some(("application/json", b"{\"rule_name\": ".to_vec()));
    let invalid =
        json!({"rule_name": "bad", "conditions": [{"field": "nope", "operator": ">", "value": 1}]});
    let by_id = "/api/rules/{id}";
    let writes: Vec<(&'static str, String, &'static str, Body)> = vec![
        (
            "POST",
            "/api/rules".into(),
            "/api/rules",
            json_body(&rule("new one")),
        ),
        (
            "POST",
            "/api/rules".into(),
            "/api/rules",
            json_body(&rule("list form")),
        ),
        (
            "POST",
            "/api/rules".into(),
            "/api/rules",
            json_body(&invalid),
        ),
        ("POST", "/api/rules".into(), "/api/rules", malformed.clone()),
        ("POST", "/api/rules".into(), "/api/rules", plain.clone()),
        ("POST", "/api/rules".into(), "/api/rules", json_body(&big)),
        (
            "POST",
            "/api/rules/preview".into(),
            "/api/rules/preview",
            json_body(&rule("p")),
        ),
        (
            "POST",
            format!("/api/rules/preview?rule_id={tree}"),
            "/api/rules/preview",
            json_body(&rule("p")),
        ),
        (
            "POST",
            "/api/rules/preview?rule_id=999999".into(),
            "/api/rules/preview",
            json_body(&rule("p")),
        ),
        (
            "POST",
            "/api/rules/preview".into(),
            "/api/rules/preview",
            json_body(&invalid),
        ),
        (
            "POST",
            "/api/rules/preview".into(),
            "/api/rules/preview",
            plain.clone(),
        ),
        (
            "PUT",
            format!("/api/rules/{tree}"),
            by_id,
            json_body(&rule("tree form")),
        ),
        (
            "PUT",
            "/api/rules/999999".into(),
            by_id,
            json_body(&rule("x")),
        ),
        (
            "PUT",
            format!("/api/rules/{tree}"),
            by_id,
            json_body(&invalid),
        ),
        ("PUT", format!("/api/rules/{tree}"), by_id, plain.clone()),
        (
            "PUT",
            format!("/api/rules/{BEYOND}"),
            by_id,
            json_body(&rule("x")),
        ),
        (
            "POST",
            format!("/api/rules/{tree}/trigger"),
            "/api/rules/{id}/trigger",
            None,
        ),
        (
            "POST",
            "/api/rules/999999/trigger".into(),
            "/api/rules/{id}/trigger",
            None,
        ),
        (
            "POST",
            format!("/api/rules/{BEYOND}/trigger"),
            "/api/rules/{id}/trigger",
            None,
        ),
        ("DELETE", format!("/api/rules/{list}"), by_id, None),
        ("DELETE", format!("/api/rules/{deps}"), by_id, None),
        ("DELETE", "/api/rules/999999".into(), by_id, None),
        ("DELETE", format!("/api/rules/{BEYOND}"), by_id, None),
    ];
    for (method, path, template, body) in writes {
        seen.push(send(&s, method, &path, template, body).await);
    }

    // A foreign Host, and a configured token missing.
    let foreign = get_with_host(s.addr, "/api/rules", "evil.example").await;
    seen.push(Seen {
        method: "get",
        template: "/api/rules",
        status: foreign.status,
        content_type: "application/json".into(),
        body: foreign.body,
    });
    let guarded = TestServer::start_with(engine, |c| c.token = Some("s3cret".into()), 5, 10).await;
    seen.push(send(&guarded, "GET", "/api/rules", "/api/rules", None).await);
    seen.push(
        send(
            &guarded,
            "POST",
            "/api/rules",
            "/api/rules",
            json_body(&rule("t")),
        )
        .await,
    );
    guarded.stop().await;

    let statuses: BTreeSet<u16> = seen.iter().map(|r| r.status).collect();
    for want in [200, 201, 202, 400, 401, 403, 404, 409, 413, 415, 422] {
        assert!(
            statuses.contains(&want),
            "no response with status {want} was checked"
        );
    }
    let problems: Vec<String> = seen.iter().flat_map(|r| mismatches(&doc, r)).collect();
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
    s.stop().await;
}

on_every_engine!(parameters_state_their_bounds);
async fn parameters_state_their_bounds(engine: Engine) {
    let s = TestServer::start_with(engine, |_| {}, 5, 10).await;
    let (_, doc) = s.get_json("/api/openapi.json").await;
    let param = |path: &str, method: &str, name: &str| -> Value {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
    };
    for path in ["/api/rules", "/api/segments"] {
        let page = param(path, "get", "page");
        assert_eq!(page["schema"]["minimum"], 1, "{page}");
        assert_eq!(page["schema"]["maximum"], 4294967295_i64, "{page}");
        let per_page = param(path, "get", "per_page");
        assert_eq!(per_page["schema"]["minimum"], 1, "{per_page}");
        assert_eq!(per_page["schema"]["maximum"], 100, "{per_page}");
    }
    let limit = param("/api/runs", "get", "limit");
    assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
    assert_eq!(limit["schema"]["maximum"], 100, "{limit}");
    let schedule = param("/api/schedules/describe", "get", "schedule");
    assert_eq!(schedule["required"], true, "{schedule}");
    let body =
        &doc["paths"]["/api/rules"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let body = Checker { doc: &doc }.resolve(body);
    assert_eq!(body["required"], json!(["rule_name"]), "{body}");
    s.stop().await;
}

#[test]
fn the_checker_finds_mismatches() {
    let doc = json!({"components": {"schemas": {
        "Thing": {"type": "object", "required": ["id", "when"], "properties": {
            "id": {"type": "integer", "format": "int64", "minimum": 1},
            "when": {"type": ["string", "null"], "format": "date-time"},
            "conditions": {"type": "object"},
            "rows": {"type": "array", "items": {"type": "array", "items": {"type": "object"}}}
        }},
        "Maybe": {"oneOf": [{"$ref": "#/components/schemas/Thing"}, {"type": "null"}]}
    }}});
    let checker = Checker { doc: &doc };
    let thing = json!({"$ref": "#/components/schemas/Thing"});
    assert!(
        checker
            .errors(&thing, &json!({"id": 1, "when": "2025-01-01T00:00:00Z"}))
            .is_empty()
    );
    assert!(
        checker
            .errors(&thing, &json!({"id": 1, "when": null}))
            .is_empty()
    );
    let bad = [
        json!({"id": 1}),
        json!({"id": 0, "when": null}),
        json!({"id": 1, "when": "yesterday"}),
        json!({"id": 1, "when": null, "extra": true}),
        json!({"id": 1, "when": null, "conditions": [{"field": "x"}]}),
        json!({"id": 1, "when": null, "rows": [[1, "a", null]]}),
    ];
    for value in bad {
        assert!(!checker.errors(&thing, &value).is_empty(), "{value}");
    }
    let maybe = json!({"$ref": "#/components/schemas/Maybe"});
    assert!(checker.errors(&maybe, &Value::Null).is_empty());
    assert!(!checker.errors(&maybe, &json!(3)).is_empty());
    assert!(
        !checker
            .errors(&json!({"prefixItems": []}), &json!([]))
            .is_empty()
    );
}
