//! Rules: the seed's shapes, validation with paths, conflicts, cycles, injection strings.

use am_sql::render::USERS;
use reqwest::{Method, StatusCode};
use sea_query::Query;
use serde_json::json;

use crate::support::{Engine, TestServer, assert_error, conn, on_every_engine, rule};

on_every_engine!(rule_crud_keeps_the_seed_shapes);
async fn rule_crud_keeps_the_seed_shapes(engine: Engine) {
    let s = TestServer::start(engine).await;
    let (status, created) = s.post_json("/api/rules", &rule("High value")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["message"], "Rule created successfully");
    let id = created["rule_id"].as_i64().expect("rule_id");

    let (status, got) = s.get_json(&format!("/api/rules/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["id"], id);
    assert_eq!(got["rule_name"], "High value");
    assert_eq!(got["conditions"][0]["field"], "total_spend");
    assert_eq!(got["schedule"], "0 0 * * *");
    assert!(
        got["schedule_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{got}"
    );
    assert!(got["next_run_at"].is_string(), "{got}");
    assert!(got["last_run"].is_null());
    assert!(got["segment_id"].is_null());
    assert_eq!(got["reuses"], json!([]));

    let mut changed = rule("High value v2");
    changed["schedule"] = json!(null);
    let (status, updated) = s
        .send_json(Method::PUT, &format!("/api/rules/{id}"), &changed)
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated, json!({"message": "Rule updated successfully"}));
    let (_, got) = s.get_json(&format!("/api/rules/{id}")).await;
    assert_eq!(got["rule_name"], "High value v2");
    assert!(got["schedule_description"].is_null());
    assert!(got["next_run_at"].is_null());

    let (status, deleted) = s
        .send_json(Method::DELETE, &format!("/api/rules/{id}"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["message"], "Rule deleted successfully");
    let (status, body) = s.get_json(&format!("/api/rules/{id}")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    s.stop().await;
}

on_every_engine!(rule_list_paginates_and_validates_its_parameters);
async fn rule_list_paginates_and_validates_its_parameters(engine: Engine) {
    let s = TestServer::start(engine).await;
    for i in 0..5 {
        s.create_rule(&rule(&format!("rule {i}"))).await;
    }
    let (status, page) = s.get_json("/api/rules?page=2&per_page=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 5);
    assert_eq!(page["page"], 2);
    assert_eq!(page["pages"], 3);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["items"][0]["rule_name"], "rule 2");

    let (_, default) = s.get_json("/api/rules").await;
    assert_eq!(default["page"], 1);
    assert_eq!(default["items"].as_array().map(Vec::len), Some(5));

    for bad in [
        "page=0",
        "page=-1",
        "per_page=0",
        "per_page=101",
        "per_page=abc",
        "page=1.5",
    ] {
        let (status, body) = s.get_json(&format!("/api/rules?{bad}")).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (status, body) = s.get_json("/api/segments?per_page=1000").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    s.stop().await;
}

on_every_engine!(invalid_rules_are_422_with_paths);
async fn invalid_rules_are_422_with_paths(engine: Engine) {
    let s = TestServer::start(engine).await;
    let mut bad = rule("bad");
    bad["conditions"] = json!([
        {"field": "total_spend", "operator": ">", "value": "lots"},
        {"field": "no_such_field", "operator": "=", "value": 1}
    ]);
    let (status, body) = s.post_json("/api/rules", &bad).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rule",
    );
    let paths: Vec<&str> = body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|d| d["path"].as_str())
        .collect();
    assert!(
        paths.iter().any(|p| p.starts_with("conditions[0]")),
        "{body}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("conditions[1]")),
        "{body}"
    );

    // Wrong JSON types at the top level also name their path.
    let (status, body) = s
        .post_json("/api/rules", &json!({"rule_name": 5, "depends_on": "x"}))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rule",
    );
    let text = body["error"]["details"].to_string();
    assert!(text.contains("rule_name"), "{body}");
    assert!(text.contains("depends_on"), "{body}");

    let mut cron = rule("bad cron");
    cron["schedule"] = json!("61 * * * *");
    let (status, body) = s.post_json("/api/rules", &cron).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rule",
    );
    assert!(
        body["error"]["details"].to_string().contains("schedule"),
        "{body}"
    );

    let (status, body) = s.get_json("/api/rules").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], 0, "nothing invalid was stored");
    s.stop().await;
}

on_every_engine!(duplicate_names_conflict_and_dependants_block_delete);
async fn duplicate_names_conflict_and_dependants_block_delete(engine: Engine) {
    let s = TestServer::start(engine).await;
    let a = s.create_rule(&rule("A")).await;
    let (status, body) = s.post_json("/api/rules", &rule("A")).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");

    let mut b = rule("B");
    b["depends_on"] = json!([a]);
    b["operation"] = json!("INTERSECTION");
    let b_id = s.create_rule(&b).await;
    let (status, body) = s
        .send_json(Method::DELETE, &format!("/api/rules/{a}"), &json!({}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");

    // A cycle: A depends on B, which depends on A.
    let mut a_cycle = rule("A");
    a_cycle["depends_on"] = json!([b_id]);
    let (status, body) = s
        .send_json(Method::PUT, &format!("/api/rules/{a}"), &a_cycle)
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rule",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("cycle"),
        "{body}"
    );

    let mut unknown = rule("C");
    unknown["depends_on"] = json!([999_999]);
    let (status, body) = s.post_json("/api/rules", &unknown).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rule",
    );
    s.stop().await;
}

on_every_engine!(injection_strings_are_stored_and_matched_literally);
async fn injection_strings_are_stored_and_matched_literally(engine: Engine) {
    let s = TestServer::start(engine).await;
    let evil_name = "x'); DROP TABLE users; --";
    let evil_value = "Robert'); DROP TABLE users;--\"";
    // Written as users' ETL would, values bound.
    let insert = Query::insert()
        .into_table(USERS)
        .columns(["user_id", "name", "email", "city_tier", "created_at"])
        .values_panic([
            9_000_001_i64.into(),
            evil_value.into(),
            "bobby@example.com".into(),
            1.into(),
            "2025-01-01 00:00:00".into(),
        ])
        .to_owned();
    conn(&s.store).exec(&insert).expect("insert user");
    let body = json!({
        "rule_name": evil_name,
        "conditions": [{"field": "name", "operator": "=", "value": evil_value}],
    });
    let id = s.create_rule(&body).await;
    let (_, got) = s.get_json(&format!("/api/rules/{id}")).await;
    assert_eq!(got["rule_name"], evil_name);
    assert_eq!(got["conditions"][0]["value"], evil_value);

    let segment = s.built(id).await;
    let (_, sample) = s
        .get_json(&format!("/api/segments/{segment}/sample_data"))
        .await;
    assert_eq!(
        sample["data"],
        json!([[9_000_001, evil_value, "bobby@example.com"]])
    );
    let (status, summary) = s.get_json("/api/analytics/summary").await;
    assert_eq!(status, StatusCode::OK, "the users table is still there");
    assert_eq!(summary["total_users"], 301);
    s.stop().await;
}

on_every_engine!(preview_and_plan_explain_without_saving);
async fn preview_and_plan_explain_without_saving(engine: Engine) {
    let s = TestServer::start(engine).await;
    let (status, preview) = s.post_json("/api/rules/preview", &rule("Preview me")).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert!(
        preview["audience_size"].as_i64().is_some_and(|n| n >= 0),
        "{preview}"
    );
    assert!(
        preview["sql"]
            .as_str()
            .is_some_and(|q| q.contains("SELECT")),
        "{preview}"
    );
    assert!(preview["plan"]["nodes"].is_array(), "{preview}");
    let (_, rules) = s.get_json("/api/rules").await;
    assert_eq!(rules["total"], 0, "preview saves nothing");

    let (status, body) = s
        .post_json(
            "/api/rules/preview",
            &json!({"rule_name": "x", "conditions": [{"field": "nope"}]}),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rule",
    );

    let base = s.create_rule(&rule("Big spenders")).await;
    let mut child = rule("Big tier-1 spenders");
    child["depends_on"] = json!([base]);
    child["conditions"] = json!([{"field": "city_tier", "operator": "=", "value": 1}]);
    let child = s.create_rule(&child).await;
    let (status, plan) = s.get_json(&format!("/api/rules/{child}/plan")).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    let nodes = plan["nodes"].as_array().expect("nodes");
    let ids: Vec<i64> = nodes.iter().filter_map(|n| n["rule_id"].as_i64()).collect();
    assert_eq!(ids, vec![base, child], "upstream first");
    assert_eq!(nodes[1]["upstream"], json!([base]));
    assert!(
        nodes
            .iter()
            .all(|n| n["sql"].as_str().is_some_and(|q| q.contains("SELECT"))),
        "{plan}"
    );
    assert!(
        plan["dot"].as_str().is_some_and(|d| d.contains("digraph")),
        "{plan}"
    );
    assert!(plan["text"].as_str().is_some_and(|t| !t.is_empty()));

    let (status, body) = s.get_json("/api/rules/424242/plan").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    s.stop().await;
}

on_every_engine!(preview_while_editing_plans_the_candidate_in_place_of_the_saved_rule);
async fn preview_while_editing_plans_the_candidate_in_place_of_the_saved_rule(engine: Engine) {
    let s = TestServer::start(engine).await;
    let base = s.create_rule(&rule("Big spenders")).await;
    let mut child = rule("Big tier-1 spenders");
    child["depends_on"] = json!([base]);
    child["conditions"] = json!([{"field": "city_tier", "operator": "=", "value": 1}]);
    let child = s.create_rule(&child).await;

    // As a new rule, the saved conditions are answered from the saved rule's segment.
    let (status, new) = s
        .post_json("/api/rules/preview", &rule("Big spenders"))
        .await;
    assert_eq!(status, StatusCode::OK, "{new}");
    assert_eq!(new["reuses"][0]["kind"], "equal", "{new}");
    assert_eq!(
        new["reuses"][0]["parents"],
        json!([{"id": base, "rule_name": "Big spenders"}])
    );

    // As an edit of that rule, it is planned under its own id and never reuses itself.
    let edit = format!("/api/rules/preview?rule_id={base}");
    let (status, same) = s.post_json(&edit, &rule("Big spenders")).await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same["reuses"], json!([]), "{same}");
    assert_eq!(same["audience_size"], new["audience_size"]);
    let nodes = same["plan"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{same}");
    assert_eq!(nodes[0]["rule_id"], base);
    assert_eq!(nodes[0]["reuse"], json!(null));

    // The edited conditions decide the count, and saving them builds exactly that audience.
    let mut edited_rule = rule("Big spenders");
    edited_rule["conditions"] = json!([
        {"field": "total_spend", "operator": ">", "value": 1000},
        {"field": "city_tier", "operator": "=", "value": 2}
    ]);
    let (status, edited) = s.post_json(&edit, &edited_rule).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["reuses"], json!([]), "{edited}");
    let edited_size = edited["audience_size"].as_i64().expect("audience_size");
    let saved_size = new["audience_size"].as_i64().expect("audience_size");
    assert!(
        (1..saved_size).contains(&edited_size),
        "0 < {edited_size} < {saved_size}"
    );

    // A dependency that leads back to the edited rule is a cycle through it.
    let mut cyclic = rule("Big spenders");
    cyclic["depends_on"] = json!([child]);
    let (status, body) = s.post_json(&edit, &cyclic).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rule",
    );
    assert_eq!(body["error"]["details"][0]["path"], "depends_on", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cycle") && m.contains(&format!("#{child}"))),
        "{body}"
    );
    // The same body as a new rule has no cycle.
    let (status, body) = s.post_json("/api/rules/preview", &cyclic).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = s
        .post_json("/api/rules/preview?rule_id=424242", &edited_rule)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = s
        .post_json("/api/rules/preview?rule_id=abc", &edited_rule)
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");

    // Previews saved nothing; saving the edit builds the audience the preview promised.
    let (_, stored) = s.get_json(&format!("/api/rules/{base}")).await;
    assert_eq!(stored["conditions"], rule("Big spenders")["conditions"]);
    let (status, body) = s
        .send_json(Method::PUT, &format!("/api/rules/{base}"), &edited_rule)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let segment = s.built(base).await;
    let (_, seg) = s.get_json(&format!("/api/segments/{segment}")).await;
    assert_eq!(seg["row_count"].as_i64(), Some(edited_size), "{seg}");
    s.stop().await;
}

/// The `[(path, message)]` of a 422 body.
fn details(status: StatusCode, body: &serde_json::Value) -> Vec<(String, String)> {
    assert_error(
        status,
        body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rule",
    );
    body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| {
            let text = |k: &str| d[k].as_str().expect("a string").to_string();
            (text("path"), text("message"))
        })
        .collect()
}

fn pair(path: &str, message: &str) -> (String, String) {
    (path.to_string(), message.to_string())
}

on_every_engine!(unknown_keys_are_422_on_create_update_and_preview);
async fn unknown_keys_are_422_on_create_update_and_preview(engine: Engine) {
    let s = TestServer::start_with(engine, |_| {}, 40, 200).await;
    let id = s.create_rule(&rule("kept")).await;
    let mut typo = rule("typo");
    let conditions = typo.as_object_mut().and_then(|o| o.remove("conditions"));
    typo["condition"] = conditions.expect("conditions");
    let mut nested = rule("nested");
    nested["conditions"][0]["window"] = json!({"last_dayz": 30});
    let cases = [
        (
            typo,
            pair("condition", "unknown key; did you mean conditions?"),
        ),
        (
            nested,
            pair(
                "conditions[0].window.last_dayz",
                "unknown key; did you mean last_days?",
            ),
        ),
    ];
    for (body, want) in &cases {
        for (method, path) in [
            (Method::POST, "/api/rules".to_string()),
            (Method::PUT, format!("/api/rules/{id}")),
            (Method::POST, "/api/rules/preview".to_string()),
        ] {
            let (status, got) = s.send_json(method.clone(), &path, body).await;
            assert_eq!(details(status, &got), vec![want.clone()], "{method} {path}");
        }
    }
    // A rule read back is sent again as is: the keys the view adds are ignored.
    let (_, read) = s.get_json(&format!("/api/rules/{id}")).await;
    let (status, body) = s
        .send_json(Method::PUT, &format!("/api/rules/{id}"), &read)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, list) = s.get_json("/api/rules").await;
    assert_eq!(list["total"], 1, "only the valid rule was stored");
    assert_eq!(list["items"][0]["rule_name"], "kept");
    s.stop().await;
}

on_every_engine!(every_user_is_written_as_empty_conditions);
async fn every_user_is_written_as_empty_conditions(engine: Engine) {
    let s = TestServer::start_with(engine, |_| {}, 40, 200).await;
    let required = vec![pair(
        "conditions",
        "is required when depends_on is empty; write \"conditions\": [] to select every user",
    )];
    for body in [
        json!({"rule_name": "absent"}),
        json!({"rule_name": "null", "conditions": null, "depends_on": []}),
    ] {
        let (status, got) = s.post_json("/api/rules", &body).await;
        assert_eq!(details(status, &got), required, "{body}");
        let (status, got) = s.post_json("/api/rules/preview", &body).await;
        assert_eq!(details(status, &got), required, "{body}");
    }
    let everyone = json!({"rule_name": "everyone", "conditions": []});
    let (status, preview) = s.post_json("/api/rules/preview", &everyone).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["audience_size"], 40);
    let id = s.create_rule(&everyone).await;
    let segment = s.built(id).await;
    let (_, seg) = s.get_json(&format!("/api/segments/{segment}")).await;
    assert_eq!(seg["row_count"], 40);
    // With dependencies, no conditions is the combination as it is.
    let child = s
        .create_rule(&json!({"rule_name": "child", "depends_on": [id]}))
        .await;
    let (_, got) = s.get_json(&format!("/api/rules/{child}")).await;
    assert!(got["conditions"].is_null(), "{got}");
    s.stop().await;
}

on_every_engine!(location_rules_preview_and_bad_circles_are_422_with_paths);
async fn location_rules_preview_and_bad_circles_are_422_with_paths(engine: Engine) {
    let s = TestServer::start(engine).await;
    let mut near = rule("Near Bengaluru");
    near["conditions"] = json!([{"field": "location", "operator": "within_km",
        "value": {"lat": 12.9716, "lon": 77.5946, "km": 10}}]);
    let (status, preview) = s.post_json("/api/rules/preview", &near).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert!(preview["audience_size"].as_i64().is_some(), "{preview}");

    let mut bad = rule("Nowhere");
    bad["conditions"] = json!([{"field": "location", "operator": "within_km",
        "value": {"lat": 12.9716, "lon": 200, "km": -1}}]);
    for path in ["/api/rules", "/api/rules/preview"] {
        let (status, body) = s.post_json(path, &bad).await;
        assert_eq!(
            details(status, &body),
            vec![
                pair(
                    "conditions[0].value.lon",
                    "expected a longitude in degrees from -180 to 180, got a number 200"
                ),
                pair(
                    "conditions[0].value.km",
                    "expected a radius in km, more than 0 and at most 20000, got a number -1"
                ),
            ]
        );
    }
    s.stop().await;
}
