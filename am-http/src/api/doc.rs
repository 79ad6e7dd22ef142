//! What the OpenAPI document says beyond each handler's own annotations: the rule body's
//! schema, the schemas serde types cannot express (conditions, sample rows), and the
//! responses every operation of a kind can give (a bad id, a foreign host, a slow body).

use utoipa::Modify;
use utoipa::ToSchema;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// A rule as sent to `POST /api/rules`, `PUT /api/rules/{id}` and `POST /api/rules/preview`
/// (contract section 2). Keys it does not define (`id`, `created_at`, ...) are ignored, so a
/// rule read back from the API can be sent again; everything else is checked by the
/// validator, which answers 422 naming the path of each problem.
#[derive(ToSchema)]
#[allow(dead_code)] // describes the body; the validator reads it (am_core::validate)
pub struct RuleInput {
    /// Not empty, at most 200 characters.
    #[schema(min_length = 1)]
    pub rule_name: String,
    /// At most 2000 characters.
    pub description: Option<String>,
    #[schema(schema_with = conditions_schema)]
    pub conditions: Option<serde_json::Value>,
    /// A crontab line or `@` name; null or absent for manual refreshes only.
    pub schedule: Option<String>,
    /// Start of the rule's window, inclusive (`2025-01-01`, `2025-01-01T00:00:00Z`, ...).
    pub start_date: Option<String>,
    /// End of the rule's window, inclusive.
    pub end_date: Option<String>,
    /// Rules whose segments this one combines.
    pub depends_on: Option<Vec<i64>>,
    /// `INTERSECTION` (the default with `depends_on`), `UNION` or `DIFFERENCE`.
    pub operation: Option<String>,
}

/// A condition is a list of conditions (all must hold) or an object: `{"all": [..]}`,
/// `{"any": [..]}`, `{"not": ..}` or a predicate `{"field", "operator", "value"}`; null or
/// absent for a rule that only combines its dependencies.
pub fn conditions_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Object, Type::Null]))
        .description(Some(
            "A list of conditions (all must hold) or one condition object: `{\"all\": [..]}`, \
             `{\"any\": [..]}`, `{\"not\": ..}` or a predicate `{\"field\", \"operator\", \"value\"}` \
             (contract section 2); null for a rule that only combines its `depends_on`. In a \
             rule read back, exactly as written.",
        ))
        .build()
        .into()
}

/// Rows of `[user_id, name, email]`: an integer and two strings, name and email may be null.
/// (Said with `items` rather than `prefixItems`, which not every OpenAPI tool reads.)
pub fn sample_rows_schema() -> Schema {
    let cell = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([
            Type::Integer,
            Type::String,
            Type::Null,
        ]))
        .build();
    let row = ArrayBuilder::new()
        .items(cell)
        .min_items(Some(3))
        .max_items(Some(3));
    ArrayBuilder::new()
        .items(row)
        .description(Some(
            "Rows of `[user_id, name, email]`: an integer, then a string or null twice.",
        ))
        .build()
        .into()
}

/// Adds the responses that follow from what an operation takes, so each is documented once:
/// 400 for a bad path or query parameter (an id beyond 64 bits), 408, 413 and 415 for a
/// body, 401 and 403 everywhere (a configured token; a foreign host or a cross-site write),
/// 503 wherever the database is read. Also gives every response a description, which
/// OpenAPI requires.
pub struct CommonResponses;

/// Operations that never read the database.
const NO_DATABASE: [&str; 3] = ["/api/health", "/api/fields", "/api/schedules/describe"];

fn describe_status(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "created",
        "202" => "accepted; the refresh runs in the background",
        "400" => "`bad_request`: malformed JSON, or a bad path or query parameter",
        "401" => "`unauthorized`: a token is configured and the request lacks it",
        "403" => "`forbidden`: a Host this server does not answer, or a cross-site write",
        "404" => "`not_found`",
        "408" => "`request_timeout`: the body did not arrive in time",
        "409" => "`conflict`",
        "413" => "`payload_too_large`: the body is over the limit",
        "415" => "`unsupported_media_type`: the body is not `application/json`",
        "422" => "`invalid_rule`, with the path of each problem in `details`",
        "503" => "`unavailable`: shutting down, or the database stayed busy; retry",
        _ => "see the error body",
    }
}

fn add_error(op: &mut Operation, status: &str) {
    let body = ContentBuilder::new()
        .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))))
        .build();
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .content("application/json", body)
                .into()
        });
}

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for op in ops.into_iter().flatten() {
                if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    add_error(op, "400");
                }
                if op.request_body.is_some() {
                    for status in ["400", "408", "413", "415", "422"] {
                        add_error(op, status);
                    }
                }
                add_error(op, "401");
                add_error(op, "403");
                if !NO_DATABASE.contains(&path.as_str()) {
                    add_error(op, "503");
                }
                for (status, response) in op.responses.responses.iter_mut() {
                    if let RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        response.description = describe_status(status).to_string();
                    }
                }
            }
        }
    }
}
