//! Validation: turns a rule as written (JSON, [`RuleSpec`]) into a [`CheckedRule`] whose
//! condition is a typed [`Expr`], or reports every problem found, each with its JSON path
//! (`conditions[1].operator`) and what would be allowed there.
//!
//! This is also where the seed's flat-list form gets its meaning: the transaction-field
//! predicates of a list form one filter that scopes every aggregate in the list (at any
//! depth); a list with such predicates and no aggregate means "has at least one such
//! transaction".

use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike};
use serde_json::{Map, Value as Json};

use crate::error::{Problem, ValidationErrors};
use crate::expr::{Cents, CmpOp, Expr, Pred, Scope, Source, Test, Timestamp, Value, Window};
use crate::field::{Availability, Field, FieldKind, ValueType};
use crate::geo::{Circle, MAX_RADIUS_KM};
use crate::rule::{CheckedRule, Operation, RuleId, RuleSpec};
use crate::schedule::Schedule;

/// The longest rule name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest description accepted, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// The longest `last_days` window accepted (about a century).
pub const MAX_LAST_DAYS: u32 = 36_500;
/// The most predicates a rule may hold, counting those inside `where` (and each value of an
/// `in`/`not_in` on `avg_transaction_amount`, which is tested value by value).
pub const MAX_PREDICATES: usize = 200;
/// The deepest nesting of lists, `all`/`any`/`not` groups and `where` filters.
pub const MAX_DEPTH: usize = 12;
/// The most values in one `in`/`not_in` list.
pub const MAX_LIST_VALUES: usize = 1_000;
/// The most distinct aggregate scopes (source, window and transaction filter) in a rule:
/// each is one join when the rule is computed on its own.
pub const MAX_SCOPES: usize = 24;
/// The most values a rule's conditions may hold once every list filter is applied to each
/// aggregate scope it filters (each is one bound SQL parameter).
pub const MAX_VALUES: usize = 10_000;
/// The most rules one rule may depend on.
pub const MAX_DEPENDENCIES: usize = 100;

/// The keys a rule may have (contract section 2).
pub const RULE_KEYS: &[&str] = &[
    "rule_name",
    "description",
    "conditions",
    "schedule",
    "start_date",
    "end_date",
    "depends_on",
    "operation",
];

/// The keys the platform adds when it shows a rule (the API's rule view, `am rules show
/// --json`). They are accepted and ignored, so a rule read back can be sent again as is;
/// any other key is rejected.
pub const VIEW_KEYS: &[&str] = &[
    "id",
    "created_at",
    "updated_at",
    "version",
    "schedule_description",
    "next_run_at",
    "last_run",
    "segment_id",
    "segment",
    "reuses",
];

/// Looks up a rule by name, for `depends_on` entries that name a rule instead of giving its
/// id: the rule's id, or why there is none (the message of the problem reported).
pub type NameLookup<'a> = &'a mut dyn FnMut(&str) -> Result<RuleId, String>;

/// Reads a rule from JSON, reporting every key of the wrong JSON type with its path (where
/// serde would stop at the first) and every key a rule does not have, with the key it most
/// resembles. `depends_on` holds rule ids.
pub fn parse_rule(value: &Json) -> Result<RuleSpec, ValidationErrors> {
    parse_rule_with(value, None)
}

/// [`parse_rule`], where `depends_on` may also name rules: `names` turns each name into an
/// id, and a name it cannot find is a problem at its path, reported with all the others.
pub fn parse_rule_with(
    value: &Json,
    mut names: Option<NameLookup<'_>>,
) -> Result<RuleSpec, ValidationErrors> {
    let mut problems = Vec::new();
    let Some(obj) = value.as_object() else {
        return Err(ValidationErrors(vec![problem(
            "rule",
            format!("expected a JSON object, got {}", describe(value)),
        )]));
    };
    // Keys the unknown keys most resemble: what a problem about them follows from.
    let mut meant: Vec<&str> = Vec::new();
    for key in obj.keys() {
        if RULE_KEYS.contains(&key.as_str()) || VIEW_KEYS.contains(&key.as_str()) {
            continue;
        }
        let closest = closest_key(key, RULE_KEYS);
        meant.extend(closest);
        problems.push(problem(
            key,
            unknown_key(closest, &format!("allowed: {}", RULE_KEYS.join(", "))),
        ));
    }
    let mut opt_string = |key: &str| -> Option<String> {
        match obj.get(key) {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(other) => {
                problems.push(problem(
                    key,
                    format!("expected a string or null, got {}", describe(other)),
                ));
                None
            }
        }
    };
    let description = opt_string("description");
    let schedule = opt_string("schedule");
    let start_date = opt_string("start_date");
    let end_date = opt_string("end_date");
    let operation = opt_string("operation");
    let rule_name = match obj.get("rule_name") {
        Some(Json::String(s)) => s.trim().to_string(),
        None | Some(Json::Null) => {
            if !meant.contains(&"rule_name") {
                problems.push(problem("rule_name", "is required"));
            }
            String::new()
        }
        Some(other) => {
            problems.push(problem(
                "rule_name",
                format!("expected a string, got {}", describe(other)),
            ));
            String::new()
        }
    };
    let what = if names.is_some() {
        "a rule id (an integer) or a rule name"
    } else {
        "a rule id (an integer)"
    };
    let mut depends_on = Vec::new();
    match obj.get("depends_on") {
        None | Some(Json::Null) => {}
        Some(Json::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("depends_on[{i}]");
                match (item, names.as_mut()) {
                    (Json::Number(n), _) if integer_of(n).is_some() => {
                        depends_on.extend(integer_of(n));
                    }
                    (Json::String(name), Some(lookup)) if !name.trim().is_empty() => {
                        match lookup(name.trim()) {
                            Ok(id) => depends_on.push(id),
                            Err(why) => problems.push(problem(&path, why)),
                        }
                    }
                    _ => problems.push(problem(
                        &path,
                        format!("expected {what}, got {}", describe(item)),
                    )),
                }
            }
        }
        Some(other) => problems.push(problem(
            "depends_on",
            format!(
                "expected a list of rule ids (integers), got {}",
                describe(other)
            ),
        )),
    }
    let spec = RuleSpec {
        rule_name,
        description,
        conditions: obj.get("conditions").cloned().unwrap_or(Json::Null),
        schedule,
        start_date,
        end_date,
        depends_on,
        operation,
    };
    if problems.is_empty() {
        return Ok(spec);
    }
    // Also report what the well-typed keys hold wrong, leaving out what follows from a
    // badly typed or misspelt key (it was read as absent).
    let mistyped: Vec<String> = problems.iter().map(|p| root_key(&p.path)).collect();
    let deps_unknown = mistyped.iter().any(|k| k == "depends_on") || meant.contains(&"depends_on");
    if let Err(ValidationErrors(more)) = check_rule(&spec) {
        let follows = |p: &Problem| {
            let root = root_key(&p.path);
            mistyped.contains(&root)
                || meant.contains(&root.as_str())
                || deps_unknown && p.message.contains("depends_on is empty")
        };
        problems.extend(more.into_iter().filter(|p| !follows(p)));
    }
    Err(ValidationErrors(problems))
}

/// The message for an unknown key: the allowed key it most resembles, else `allowed` (what
/// may be there).
fn unknown_key(closest: Option<&str>, allowed: &str) -> String {
    match closest {
        Some(key) => format!("unknown key; did you mean {key}?"),
        None => format!("unknown key; {allowed}"),
    }
}

/// The allowed key a misspelt one most resembles: a different case, a few typos (one for
/// short keys), or the start of the allowed key (`desc` for `description`).
fn closest_key<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let key = key.to_lowercase();
    allowed
        .iter()
        .map(|&a| (typos(&key, a), a))
        .filter(|&(n, a)| {
            let most = if a.len() <= 4 { 1 } else { 2 };
            n <= most || key.chars().count() >= 4 && a.starts_with(key.as_str())
        })
        .min_by_key(|&(n, _)| n)
        .map(|(_, a)| a)
}

/// Edits (insertions, deletions, substitutions, swaps of neighbours) from `a` to `b`.
fn typos(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Rows i-2, i-1 and i of the optimal string alignment table.
    let mut before: Vec<usize> = Vec::new();
    let mut last: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut last, row);
    }
    last[b.len()]
}

/// The top-level key a problem path starts with (`depends_on` for `depends_on[1]`).
fn root_key(path: &str) -> String {
    path.split(['.', '[']).next().unwrap_or(path).to_string()
}

/// [`parse_rule`] then [`check_rule`].
pub fn check_rule_json(value: &Json) -> Result<CheckedRule, ValidationErrors> {
    check_rule(&parse_rule(value)?)
}

/// Checks a rule, collecting every problem. Empty strings in `schedule`, `start_date`,
/// `end_date` and `operation` count as absent, as forms send them. A rule without
/// dependencies needs conditions: every user is written `"conditions": []`, so that a
/// misspelt or forgotten key never selects everyone.
pub fn check_rule(spec: &RuleSpec) -> Result<CheckedRule, ValidationErrors> {
    check(spec, true)
}

/// [`check_rule`] for a rule read from the database: a rule saved before conditions were
/// required, with neither conditions nor dependencies, still means every user, so reading
/// and refreshing the rules keeps working; writing it again needs the explicit form.
pub fn check_stored_rule(spec: &RuleSpec) -> Result<CheckedRule, ValidationErrors> {
    check(spec, false)
}

fn check(spec: &RuleSpec, require_conditions: bool) -> Result<CheckedRule, ValidationErrors> {
    let mut problems = Vec::new();

    let name = spec.rule_name.trim();
    if name.is_empty() {
        problems.push(problem("rule_name", "must not be empty"));
    } else if name.chars().count() > MAX_NAME_CHARS {
        problems.push(problem(
            "rule_name",
            format!(
                "is {} characters long; at most {MAX_NAME_CHARS} are allowed",
                name.chars().count()
            ),
        ));
    }
    if let Some(d) = &spec.description {
        let n = d.chars().count();
        if n > MAX_DESCRIPTION_CHARS {
            problems.push(problem(
                "description",
                format!("is {n} characters long; at most {MAX_DESCRIPTION_CHARS} are allowed"),
            ));
        }
    }

    let schedule = match non_empty(&spec.schedule) {
        None => None,
        Some(s) => match Schedule::parse(s) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(problem(
                    "schedule",
                    format!("invalid schedule: {}", e.reason),
                ));
                None
            }
        },
    };

    let start = non_empty(&spec.start_date).and_then(|s| match parse_time(s) {
        Ok(t) => Some(t.start),
        Err(e) => {
            problems.push(problem("start_date", e));
            None
        }
    });
    let end = non_empty(&spec.end_date).and_then(|s| match parse_time(s) {
        Ok(t) => Some(t.end),
        Err(e) => {
            problems.push(problem("end_date", e));
            None
        }
    });
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        problems.push(problem(
            "end_date",
            format!("ends ({}) before start_date ({})", fmt_time(e), fmt_time(s)),
        ));
    }
    let window = Window::Range { start, end };

    if spec.depends_on.len() > MAX_DEPENDENCIES {
        problems.push(problem(
            "depends_on",
            format!(
                "lists {} rules; at most {MAX_DEPENDENCIES} are allowed",
                spec.depends_on.len()
            ),
        ));
    } else {
        for (i, id) in spec.depends_on.iter().enumerate() {
            if spec.depends_on[..i].contains(id) {
                problems.push(problem(
                    &format!("depends_on[{i}]"),
                    format!("rule {id} is listed more than once"),
                ));
            }
        }
    }
    let operation = match non_empty(&spec.operation) {
        None => None,
        Some(s) => match Operation::parse(s) {
            Some(op) => Some(op),
            None => {
                problems.push(problem(
                    "operation",
                    format!(
                        "unknown operation {s:?}; allowed: {}",
                        Operation::NAMES.join(", ")
                    ),
                ));
                None
            }
        },
    };
    let has_operation = non_empty(&spec.operation).is_some();
    if has_operation && spec.depends_on.is_empty() {
        problems.push(problem(
            "operation",
            "an operation needs dependencies, but depends_on is empty",
        ));
    }
    // With an operation, the missing dependencies are the problem already reported.
    if require_conditions
        && spec.conditions.is_null()
        && spec.depends_on.is_empty()
        && !has_operation
    {
        problems.push(problem(
            "conditions",
            "is required when depends_on is empty; write \"conditions\": [] to select every user",
        ));
    }
    if operation == Some(Operation::Difference) && spec.depends_on.len() == 1 {
        problems.push(problem(
            "depends_on",
            "DIFFERENCE needs at least 2 dependencies (the first minus the others)",
        ));
    }

    let condition = match check_conditions(&spec.conditions, window) {
        Ok(c) => c,
        Err(ValidationErrors(ps)) => {
            problems.extend(ps);
            None
        }
    };

    if !problems.is_empty() {
        return Err(ValidationErrors(problems));
    }
    let depends_on: Vec<RuleId> = spec.depends_on.clone();
    let operation = match operation {
        None if !depends_on.is_empty() => Some(Operation::Intersection),
        other => other,
    };
    Ok(CheckedRule {
        name: name.to_string(),
        condition,
        window,
        depends_on,
        operation,
        schedule,
    })
}

/// Checks a rule's conditions as written; aggregates without a window of their own get
/// `window` (the rule's). Problem paths start with `conditions`. Null means no condition.
pub fn check_conditions(
    conditions: &Json,
    window: Window,
) -> Result<Option<Expr>, ValidationErrors> {
    if conditions.is_null() {
        return Ok(None);
    }
    let mut c = Checker {
        problems: Vec::new(),
        window,
        depth: 0,
        predicates: 0,
        scopes: Vec::new(),
    };
    let out = c.condition(conditions, "conditions", &[]);
    if let Some((e, _)) = &out {
        let n = bound_values(e);
        if n > MAX_VALUES {
            c.err(
                "conditions",
                format!(
                    "the conditions hold {n} values once each list's transaction predicates are applied to every aggregate they filter; at most {MAX_VALUES} are allowed"
                ),
            );
        }
    }
    if c.problems.is_empty() {
        Ok(out.map(|(e, _)| e))
    } else {
        Err(ValidationErrors(c.problems))
    }
}

/// A timestamp as written, with what it means as a lower and as an upper bound: the same
/// instant, or for a date alone the day's first and last second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSpec {
    pub start: Timestamp,
    pub end: Timestamp,
    pub date_only: bool,
}

/// The forms accepted for dates and times, for messages.
pub const TIME_FORMS: &str = "\"YYYY-MM-DD HH:MM:SS\", \"YYYY-MM-DDTHH:MM:SS\", RFC 3339 (\"2025-01-01T00:00:00Z\") or a date \"YYYY-MM-DD\" (the whole day)";

/// Parses a date or date-time in one of the accepted forms ([`TIME_FORMS`]); offsets are
/// converted to UTC.
pub fn parse_time(s: &str) -> Result<TimeSpec, String> {
    let s = s.trim();
    let bad = || format!("invalid date-time {s:?}; expected {TIME_FORMS}");
    if s.len() == 10 {
        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())?;
        let start = d.and_hms_opt(0, 0, 0).ok_or_else(bad)?;
        let end = d.and_hms_opt(23, 59, 59).ok_or_else(bad)?;
        return Ok(TimeSpec {
            start,
            end,
            date_only: true,
        });
    }
    let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| DateTime::parse_from_rfc3339(s).map(|t| t.naive_utc()))
        .map_err(|_| bad())?;
    if t.nanosecond() != 0 {
        return Err(format!(
            "invalid date-time {s:?}: fractional seconds are not supported"
        ));
    }
    Ok(TimeSpec {
        start: t,
        end: t,
        date_only: false,
    })
}

/// Why a number is not an amount of money; each holds the number as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("expected an amount with at most 2 decimal places, got {0}")]
    TooPrecise(String),
    #[error("amount {0} is out of range")]
    OutOfRange(String),
}

/// Converts a JSON number to cents exactly, from its decimal text: at most two decimal
/// places. serde_json keeps a non-integer as the nearest `f64`, whose shortest text is the
/// number as written for anything up to 15 significant digits, so no arithmetic on binary
/// fractions is involved.
pub fn money_from_json(n: &serde_json::Number) -> Result<Cents, MoneyError> {
    if let Some(i) = n.as_i64() {
        return i
            .checked_mul(100)
            .ok_or_else(|| MoneyError::OutOfRange(n.to_string()));
    }
    decimal_to_cents(&n.to_string())
}

fn decimal_to_cents(text: &str) -> Result<Cents, MoneyError> {
    let bad = || MoneyError::TooPrecise(text.to_string());
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (text, 0),
    };
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let frac = frac.trim_end_matches('0');
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    // value = digits * 10^(exp - frac_len); cents = digits * 10^(exp - frac_len + 2).
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let frac_len = i32::try_from(frac.len()).map_err(|_| bad())?;
    let shift = exp - frac_len + 2;
    if digits.is_empty() {
        return Ok(0);
    }
    if shift < 0 {
        return Err(bad());
    }
    let out_of_range = || MoneyError::OutOfRange(text.to_string());
    let mut v: i128 = digits.parse().map_err(|_| out_of_range())?;
    for _ in 0..shift {
        v = v.checked_mul(10).ok_or_else(out_of_range)?;
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).map_err(|_| out_of_range())
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn problem(path: &str, message: impl Into<String>) -> Problem {
    Problem {
        path: path.to_string(),
        message: message.into(),
    }
}

fn fmt_time(t: Timestamp) -> String {
    t.format(crate::expr::TIMESTAMP_FORMAT).to_string()
}

/// A short rendering of a JSON value for messages.
/// A JSON number as an integer, when it is a whole number: `3`, and also `-0` (which the
/// JSON reader keeps as the float -0.0) and `3.0`. Floats only up to 2^53, where every whole
/// number is exact.
fn integer_of(n: &serde_json::Number) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= EXACT)
            .map(|f| f as i64)
    })
}

fn describe(v: &Json) -> String {
    let kind = match v {
        Json::Null => return "null".into(),
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => return "an object".into(),
    };
    let text = v.to_string();
    if text.chars().count() > 40 {
        let short: String = text.chars().take(37).collect();
        format!("{kind} {short}...")
    } else {
        format!("{kind} {text}")
    }
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Integer => "integer",
        ValueType::Money => "money",
        ValueType::Text => "text",
        ValueType::Timestamp => "timestamp",
        ValueType::Location => "location",
    }
}

/// The operators a value type accepts, in the order messages list them.
pub fn operators_for(t: ValueType) -> &'static [&'static str] {
    match t {
        ValueType::Integer | ValueType::Money => &[
            "=",
            "!=",
            ">",
            ">=",
            "<",
            "<=",
            "in",
            "not_in",
            "between",
            "is_null",
            "is_not_null",
        ],
        ValueType::Text => &[
            "=",
            "!=",
            "in",
            "not_in",
            "contains",
            "starts_with",
            "is_null",
            "is_not_null",
        ],
        ValueType::Timestamp => &[
            "=",
            "!=",
            ">",
            ">=",
            "<",
            "<=",
            "between",
            "is_null",
            "is_not_null",
        ],
        ValueType::Location => &["within_km"],
    }
}

const ALL_OPERATORS: &[&str] = &[
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "in",
    "not_in",
    "between",
    "contains",
    "starts_with",
    "is_null",
    "is_not_null",
    "within_km",
];

/// The keys of a `within_km` value.
const CIRCLE_KEYS: &[&str] = &["lat", "lon", "km"];

const PREDICATE_KEYS: &[&str] = &["field", "operator", "value", "where", "source", "window"];
const GROUP_KEYS: &[&str] = &["all", "any", "not"];
const WINDOW_KEYS: &[&str] = &["last_days", "start", "end"];

/// Whether an object is a predicate (else a group): it has a `field`, or predicate keys and
/// no group key, so `{"feild": .., "operator": ..}` is reported as a predicate's typo.
fn is_predicate(obj: &Map<String, Json>) -> bool {
    obj.contains_key("field")
        || !GROUP_KEYS.iter().any(|k| obj.contains_key(*k))
            && PREDICATE_KEYS.iter().any(|k| obj.contains_key(*k))
}
const SCOPE_KEYS: &[&str] = &["where", "source", "window"];

fn all_fields_message() -> String {
    format!(
        "profile fields {}; aggregates {}; transaction fields (in a condition list or a \"where\") {}",
        Field::names_of(FieldKind::Profile).join(", "),
        Field::names_of(FieldKind::Aggregate).join(", "),
        Field::names_of(FieldKind::Transaction).join(", "),
    )
}

/// Whether a transaction field exists on the tables a source reads; else why not.
fn availability_problem(field: Field, source: Source) -> Option<String> {
    match (field.availability(), source) {
        (Availability::CreditCardOnly, Source::Upi) => Some(format!(
            "{field} exists only on credit_card transactions, so it cannot filter an aggregate over upi"
        )),
        (Availability::UpiOnly, Source::CreditCard) => Some(format!(
            "{field} exists only on upi transactions, so it cannot filter an aggregate over credit_card"
        )),
        _ => None,
    }
}

/// Where a predicate stands, which decides the fields it may name.
#[derive(Clone, Copy)]
enum Place {
    /// A user-level condition outside a list: profile and aggregate fields.
    User,
    /// Directly in a condition list: also transaction fields, which filter the list.
    ListItem,
    /// Inside an aggregate's `where`, over the source's tables: transaction fields only.
    Where(Source),
}

struct Checker {
    problems: Vec<Problem>,
    /// The rule's window, for aggregates without their own.
    window: Window,
    /// How many lists, groups and `where` filters enclose the condition being checked.
    depth: usize,
    /// Predicates seen so far, weighted as [`MAX_PREDICATES`] says.
    predicates: usize,
    /// The distinct aggregate scopes seen so far.
    scopes: Vec<Scope>,
}

impl Checker {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(problem(path, message));
    }

    /// Enters one more level of nesting at `path`; false (with a problem) when that would
    /// exceed [`MAX_DEPTH`], so hostile nesting is never recursed into. Pair with `leave`.
    fn enter(&mut self, path: &str) -> bool {
        if self.depth >= MAX_DEPTH {
            self.err(
                path,
                format!(
                    "nested too deeply: at most {MAX_DEPTH} levels of lists, all/any/not groups and where filters are allowed"
                ),
            );
            return false;
        }
        self.depth += 1;
        true
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Counts a predicate at `path` against [`MAX_PREDICATES`], reporting the first one
    /// over the limit.
    fn count_predicate(&mut self, obj: &Map<String, Json>, path: &str) {
        let avg_list = obj.get("field").and_then(Json::as_str)
            == Some(Field::AvgTransactionAmount.name())
            && matches!(
                obj.get("operator").and_then(Json::as_str),
                Some("in" | "not_in")
            );
        let weight = match obj.get("value") {
            Some(Json::Array(items)) if avg_list => items.len().max(1),
            _ => 1,
        };
        let before = self.predicates;
        self.predicates = self.predicates.saturating_add(weight);
        if before <= MAX_PREDICATES && self.predicates > MAX_PREDICATES {
            self.err(
                path,
                format!(
                    "the rule has more than {MAX_PREDICATES} predicates by here; at most {MAX_PREDICATES} are allowed, counting those inside \"where\" and each value of an in/not_in list on avg_transaction_amount"
                ),
            );
        }
    }

    /// Records an aggregate scope used at `path`, reporting the first one over
    /// [`MAX_SCOPES`].
    fn note_scope(&mut self, scope: &Scope, path: &str) {
        if self.scopes.contains(scope) {
            return;
        }
        self.scopes.push(scope.clone());
        if self.scopes.len() == MAX_SCOPES + 1 {
            self.err(
                path,
                format!(
                    "this is aggregate scope {}; at most {MAX_SCOPES} different scopes (source, window and transaction filter) are allowed in a rule",
                    self.scopes.len()
                ),
            );
        }
    }

    /// A user-level condition. `inherited` is the filter of the enclosing lists. Returns the
    /// expression and whether it contains an aggregate; `None` after a problem.
    fn condition(&mut self, v: &Json, path: &str, inherited: &[Expr]) -> Option<(Expr, bool)> {
        match v {
            Json::Array(items) => {
                if !self.enter(path) {
                    return None;
                }
                let out = self.list(items, path, inherited);
                self.leave();
                out
            }
            Json::Object(obj) if is_predicate(obj) => {
                self.predicate(obj, path, Place::User, inherited)
            }
            Json::Object(obj) => {
                if !self.enter(path) {
                    return None;
                }
                let out = self.group(obj, path, inherited);
                self.leave();
                out
            }
            other => {
                self.err(
                    path,
                    format!(
                        "expected a condition: a list, {{\"all\": [..]}}, {{\"any\": [..]}}, {{\"not\": ..}} or a predicate {{\"field\", \"operator\", \"value\"}}; got {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    /// The seed's flat list: transaction predicates filter every aggregate in it.
    fn list(&mut self, items: &[Json], path: &str, inherited: &[Expr]) -> Option<(Expr, bool)> {
        let is_tx = |v: &Json| {
            v.get("field")
                .and_then(Json::as_str)
                .and_then(Field::parse)
                .is_some_and(|f| f.kind() == FieldKind::Transaction)
        };
        let mut ok = true;
        let mut filter: Vec<Expr> = inherited.to_vec();
        let mut has_tx = false;
        for (i, item) in items.iter().enumerate() {
            if let Some(obj) = item.as_object().filter(|_| is_tx(item)) {
                has_tx = true;
                match self.predicate(obj, &format!("{path}[{i}]"), Place::ListItem, &[]) {
                    Some((e, _)) => filter.push(e),
                    None => ok = false,
                }
            }
        }
        let mut out = Vec::new();
        let mut has_agg = false;
        for (i, item) in items.iter().enumerate() {
            if is_tx(item) {
                continue;
            }
            match self.condition(item, &format!("{path}[{i}]"), &filter) {
                Some((e, agg)) => {
                    has_agg |= agg;
                    out.push(e);
                }
                None => ok = false,
            }
        }
        if has_tx && !has_agg {
            // No aggregate to scope: the list asks for at least one such transaction.
            let scope = Scope {
                source: Source::All,
                window: self.window,
                filter: conjunction(filter).map(Box::new),
            };
            self.note_scope(&scope, path);
            out.push(Expr::Pred(Pred::Aggregate {
                field: Field::TransactionCount,
                scope,
                test: Test::Cmp(CmpOp::Ge, Value::Int(1)),
            }));
            has_agg = true;
        }
        ok.then_some((Expr::All(out), has_agg))
    }

    fn group(
        &mut self,
        obj: &Map<String, Json>,
        path: &str,
        inherited: &[Expr],
    ) -> Option<(Expr, bool)> {
        let (key, inner) = self.group_key(obj, path)?;
        let inner_path = format!("{path}.{key}");
        if key == "not" {
            let (e, agg) = self.condition(inner, &inner_path, inherited)?;
            return Some((Expr::Not(Box::new(e)), agg));
        }
        let Some(items) = inner.as_array() else {
            self.err(
                &inner_path,
                format!("expected a list of conditions, got {}", describe(inner)),
            );
            return None;
        };
        let mut ok = true;
        let mut out = Vec::new();
        let mut has_agg = false;
        for (i, item) in items.iter().enumerate() {
            match self.condition(item, &format!("{inner_path}[{i}]"), inherited) {
                Some((e, agg)) => {
                    has_agg |= agg;
                    out.push(e);
                }
                None => ok = false,
            }
        }
        let e = if key == "all" {
            Expr::All(out)
        } else {
            Expr::Any(out)
        };
        ok.then_some((e, has_agg))
    }

    /// The one key of a group object, which must be `all`, `any` or `not`.
    fn group_key<'a>(
        &mut self,
        obj: &'a Map<String, Json>,
        path: &str,
    ) -> Option<(&'static str, &'a Json)> {
        let mut found = None;
        let mut ok = true;
        for (k, v) in obj {
            let key = match k.as_str() {
                "all" => "all",
                "any" => "any",
                "not" => "not",
                _ => {
                    let allowed = format!(
                        "a group has exactly one of \"all\", \"any\", \"not\", and a predicate has {}",
                        PREDICATE_KEYS.join(", ")
                    );
                    let closest =
                        closest_key(k, GROUP_KEYS).or_else(|| closest_key(k, PREDICATE_KEYS));
                    self.err(&format!("{path}.{k}"), unknown_key(closest, &allowed));
                    ok = false;
                    continue;
                }
            };
            if found.is_some() {
                self.err(
                    &format!("{path}.{k}"),
                    "a group has exactly one of \"all\", \"any\", \"not\"; nest groups to combine them",
                );
                ok = false;
            } else {
                found = Some((key, v));
            }
        }
        if found.is_none() && ok {
            self.err(
                path,
                "expected a group with one of \"all\", \"any\", \"not\", or a predicate with \"field\", \"operator\", \"value\"",
            );
        }
        if ok { found } else { None }
    }

    /// A condition inside `where`: transaction predicates combined by lists and groups.
    fn where_condition(&mut self, v: &Json, path: &str, source: Source) -> Option<Expr> {
        let nests =
            matches!(v, Json::Array(_)) || matches!(v, Json::Object(obj) if !is_predicate(obj));
        if !nests {
            return self.where_inner(v, path, source);
        }
        if !self.enter(path) {
            return None;
        }
        let out = self.where_inner(v, path, source);
        self.leave();
        out
    }

    fn where_inner(&mut self, v: &Json, path: &str, source: Source) -> Option<Expr> {
        match v {
            Json::Array(items) => {
                let mut ok = true;
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match self.where_condition(item, &format!("{path}[{i}]"), source) {
                        Some(e) => out.push(e),
                        None => ok = false,
                    }
                }
                ok.then_some(Expr::All(out))
            }
            Json::Object(obj) if is_predicate(obj) => self
                .predicate(obj, path, Place::Where(source), &[])
                .map(|(e, _)| e),
            Json::Object(obj) => {
                let (key, inner) = self.group_key(obj, path)?;
                let inner_path = format!("{path}.{key}");
                if key == "not" {
                    let e = self.where_condition(inner, &inner_path, source)?;
                    return Some(Expr::Not(Box::new(e)));
                }
                let Some(items) = inner.as_array() else {
                    self.err(
                        &inner_path,
                        format!("expected a list of conditions, got {}", describe(inner)),
                    );
                    return None;
                };
                let mut ok = true;
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match self.where_condition(item, &format!("{inner_path}[{i}]"), source) {
                        Some(e) => out.push(e),
                        None => ok = false,
                    }
                }
                let e = if key == "all" {
                    Expr::All(out)
                } else {
                    Expr::Any(out)
                };
                ok.then_some(e)
            }
            other => {
                self.err(
                    path,
                    format!(
                        "expected a condition over transaction fields, got {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    fn predicate(
        &mut self,
        obj: &Map<String, Json>,
        path: &str,
        place: Place,
        inherited: &[Expr],
    ) -> Option<(Expr, bool)> {
        self.count_predicate(obj, path);
        let mut ok = true;
        let mut typos = Vec::new();
        for k in obj.keys() {
            if !PREDICATE_KEYS.contains(&k.as_str()) {
                let closest = closest_key(k, PREDICATE_KEYS);
                typos.extend(closest);
                let allowed = format!("a predicate has {}", PREDICATE_KEYS.join(", "));
                self.err(&format!("{path}.{k}"), unknown_key(closest, &allowed));
                ok = false;
            }
        }
        let field_path = format!("{path}.field");
        let field = match obj.get("field") {
            Some(Json::String(name)) => match Field::parse(name) {
                Some(f) => Some(f),
                None => {
                    self.err(
                        &field_path,
                        format!("unknown field {name:?}; allowed: {}", all_fields_message()),
                    );
                    None
                }
            },
            None if typos.contains(&"field") => None,
            other => {
                let what = match other {
                    Some(v) => format!("expected a field name (a string), got {}", describe(v)),
                    None => "is required".to_string(),
                };
                self.err(
                    &field_path,
                    format!("{what}; allowed: {}", all_fields_message()),
                );
                None
            }
        };
        // Check the field's place.
        let field = field.filter(|&f| match (place, f.kind()) {
            (Place::User, FieldKind::Transaction) => {
                self.err(
                    &field_path,
                    format!(
                        "{f} is a transaction field; use it directly in a condition list (it then filters the list's aggregates) or inside an aggregate's \"where\""
                    ),
                );
                false
            }
            (Place::Where(_), k) if k != FieldKind::Transaction => {
                self.err(
                    &field_path,
                    format!(
                        "{f} is not a transaction field; inside \"where\" only transaction fields apply: {}",
                        Field::names_of(FieldKind::Transaction).join(", ")
                    ),
                );
                false
            }
            (Place::Where(source), _) => match availability_problem(f, source) {
                Some(msg) => {
                    self.err(&field_path, msg);
                    false
                }
                None => true,
            },
            _ => true,
        });
        let is_aggregate = field.is_some_and(|f| f.kind() == FieldKind::Aggregate);
        if field.is_some() && !is_aggregate {
            for k in SCOPE_KEYS {
                if obj.contains_key(*k) {
                    self.err(
                        &format!("{path}.{k}"),
                        format!(
                            "where/source/window only apply to aggregate fields: {}",
                            Field::names_of(FieldKind::Aggregate).join(", ")
                        ),
                    );
                    ok = false;
                }
            }
        }
        let test = field.and_then(|f| self.test(obj, path, f, &typos));
        let scope = if is_aggregate {
            self.scope(obj, path, inherited)
        } else {
            None
        };
        let (field, test) = (field?, test?);
        if !ok {
            return None;
        }
        let e = match field.kind() {
            FieldKind::Profile => Pred::Profile { field, test },
            FieldKind::Transaction => Pred::Tx { field, test },
            FieldKind::Aggregate => {
                let scope = scope?;
                self.note_scope(&scope, path);
                Pred::Aggregate { field, scope, test }
            }
        };
        Some((Expr::Pred(e), is_aggregate))
    }

    /// An aggregate's scope: its source and window, and its `where` combined with the
    /// filter of the enclosing lists.
    fn scope(&mut self, obj: &Map<String, Json>, path: &str, inherited: &[Expr]) -> Option<Scope> {
        let mut ok = true;
        let source_path = format!("{path}.source");
        let source = match obj.get("source") {
            None | Some(Json::Null) => Source::All,
            Some(Json::String(s)) if s == "all" => Source::All,
            Some(Json::String(s)) if s == "credit_card" => Source::CreditCard,
            Some(Json::String(s)) if s == "upi" => Source::Upi,
            Some(other) => {
                let what = match other {
                    Json::String(s) => format!("unknown source {s:?}"),
                    v => format!("expected a source (a string), got {}", describe(v)),
                };
                self.err(
                    &source_path,
                    format!("{what}; allowed: all, credit_card, upi"),
                );
                ok = false;
                Source::All
            }
        };
        let window = match obj.get("window") {
            None | Some(Json::Null) => Some(self.window),
            Some(w) => self.window_spec(w, &format!("{path}.window")),
        };
        let own = match obj.get("where") {
            None | Some(Json::Null) => None,
            Some(w) => {
                let where_path = format!("{path}.where");
                let checked = if self.enter(&where_path) {
                    let e = self.where_condition(w, &where_path, source);
                    self.leave();
                    e
                } else {
                    None
                };
                if checked.is_none() {
                    ok = false;
                }
                checked
            }
        };
        // Transaction fields the enclosing lists filter on must exist on this source.
        let mut fields = Vec::new();
        for e in inherited {
            collect_tx_fields(e, &mut fields);
        }
        fields.sort();
        fields.dedup();
        for f in fields {
            if let Some(msg) = availability_problem(f, source) {
                self.err(&source_path, format!("the list's condition on {msg}"));
                ok = false;
            }
        }
        let window = window?;
        if !ok {
            return None;
        }
        let mut filter: Vec<Expr> = inherited.to_vec();
        filter.extend(own);
        Some(Scope {
            source,
            window,
            filter: conjunction(filter).map(Box::new),
        })
    }

    /// A predicate's `window`: `{"last_days": N}` or `{"start", "end"}`.
    fn window_spec(&mut self, w: &Json, path: &str) -> Option<Window> {
        let Some(obj) = w.as_object() else {
            self.err(
                path,
                format!(
                    "expected {{\"last_days\": N}} or {{\"start\": .., \"end\": ..}}, got {}",
                    describe(w)
                ),
            );
            return None;
        };
        let mut ok = true;
        for k in obj.keys() {
            if !WINDOW_KEYS.contains(&k.as_str()) {
                self.err(
                    &format!("{path}.{k}"),
                    unknown_key(
                        closest_key(k, WINDOW_KEYS),
                        "a window is {\"last_days\": N} or {\"start\": .., \"end\": ..}",
                    ),
                );
                ok = false;
            }
        }
        if let Some(n) = obj.get("last_days") {
            if obj.contains_key("start") || obj.contains_key("end") {
                self.err(path, "a window has either last_days or start/end, not both");
                return None;
            }
            let days = n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=MAX_LAST_DAYS).contains(n));
            return match days {
                Some(d) if ok => Some(Window::LastDays(d)),
                Some(_) => None,
                None => {
                    self.err(
                        &format!("{path}.last_days"),
                        format!(
                            "expected a whole number of days from 1 to {MAX_LAST_DAYS}, got {}",
                            describe(n)
                        ),
                    );
                    None
                }
            };
        }
        let mut bound = |key: &str, is_start: bool| -> Option<Timestamp> {
            match obj.get(key) {
                None | Some(Json::Null) => None,
                Some(Json::String(s)) => match parse_time(s) {
                    Ok(t) => Some(if is_start { t.start } else { t.end }),
                    Err(e) => {
                        self.problems.push(problem(&format!("{path}.{key}"), e));
                        ok = false;
                        None
                    }
                },
                Some(other) => {
                    self.problems.push(problem(
                        &format!("{path}.{key}"),
                        format!("expected {TIME_FORMS}, got {}", describe(other)),
                    ));
                    ok = false;
                    None
                }
            }
        };
        let start = bound("start", true);
        let end = bound("end", false);
        if let (Some(s), Some(e)) = (start, end)
            && e < s
        {
            self.err(
                &format!("{path}.end"),
                format!("ends ({}) before the start ({})", fmt_time(e), fmt_time(s)),
            );
            ok = false;
        }
        ok.then_some(Window::Range { start, end })
    }

    /// The predicate's operator and value as a typed test for the field.
    /// `typos` are the keys misspelt keys of the predicate resemble: missing, they were
    /// reported already.
    fn test(
        &mut self,
        obj: &Map<String, Json>,
        path: &str,
        field: Field,
        typos: &[&str],
    ) -> Option<Test> {
        let t = field.value_type();
        let allowed = operators_for(t);
        let op_path = format!("{path}.operator");
        let op = match obj.get("operator") {
            Some(Json::String(op)) if allowed.contains(&op.as_str()) => op.as_str(),
            Some(Json::String(op)) if ALL_OPERATORS.contains(&op.as_str()) => {
                self.err(
                    &op_path,
                    format!(
                        "operator {op:?} does not apply to {field} ({}); allowed: {}",
                        type_name(t),
                        allowed.join(", ")
                    ),
                );
                return None;
            }
            other => {
                let what = match other {
                    // Missing after a misspelt key: that key's problem says it all.
                    None if typos.contains(&"operator") => return None,
                    None => "is required".to_string(),
                    Some(Json::String(s)) => format!("unknown operator {s:?}"),
                    Some(v) => format!("expected an operator (a string), got {}", describe(v)),
                };
                self.err(
                    &op_path,
                    format!(
                        "{what}; allowed for {field} ({}): {}",
                        type_name(t),
                        allowed.join(", ")
                    ),
                );
                return None;
            }
        };
        let value_path = format!("{path}.value");
        let value = obj.get("value").filter(|v| !v.is_null());
        if matches!(op, "is_null" | "is_not_null") {
            if let Some(v) = value {
                self.err(
                    &value_path,
                    format!("{op} takes no value; got {}", describe(v)),
                );
                return None;
            }
            return Some(if op == "is_null" {
                Test::IsNull
            } else {
                Test::IsNotNull
            });
        }
        let Some(value) = value else {
            if typos.contains(&"value") {
                return None;
            }
            self.err(
                &value_path,
                format!("{op} needs a value: {}", expected(field, op)),
            );
            return None;
        };
        match op {
            "within_km" => self.circle(value, &value_path).map(Test::WithinKm),
            "in" | "not_in" => {
                if let Some(items) = value.as_array().filter(|xs| xs.len() > MAX_LIST_VALUES) {
                    self.err(
                        &value_path,
                        format!(
                            "{op} has {} values; at most {MAX_LIST_VALUES} are allowed",
                            items.len()
                        ),
                    );
                    return None;
                }
                let Some(items) = value.as_array().filter(|xs| !xs.is_empty()) else {
                    self.err(
                        &value_path,
                        format!(
                            "{op} needs a non-empty list of {}; got {}",
                            plural(t),
                            describe(value)
                        ),
                    );
                    return None;
                };
                let mut ok = true;
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match self.value(item, &format!("{value_path}[{i}]"), field) {
                        Some(v) => out.push(v.start),
                        None => ok = false,
                    }
                }
                let out = ok.then_some(out)?;
                Some(if op == "in" {
                    Test::In(out)
                } else {
                    Test::NotIn(out)
                })
            }
            "between" => {
                let Some([lo, hi]) = value.as_array().map(Vec::as_slice) else {
                    self.err(
                        &value_path,
                        format!(
                            "between needs a list [lo, hi] of two {}; got {}",
                            plural(t),
                            describe(value)
                        ),
                    );
                    return None;
                };
                let lo = self.value(lo, &format!("{value_path}[0]"), field);
                let hi = self.value(hi, &format!("{value_path}[1]"), field);
                let (lo, hi) = (lo?.start, hi?.end);
                if lo > hi {
                    self.err(
                        &value_path,
                        format!("between needs lo <= hi, got {}", describe(value)),
                    );
                    return None;
                }
                Some(Test::Between(lo, hi))
            }
            "contains" | "starts_with" => {
                let Json::String(s) = value else {
                    self.err(
                        &value_path,
                        format!("{op} needs a string, got {}", describe(value)),
                    );
                    return None;
                };
                Some(if op == "contains" {
                    Test::Contains(s.clone())
                } else {
                    Test::StartsWith(s.clone())
                })
            }
            _ => {
                let v = self.value(value, &value_path, field)?;
                let cmp = |op, v| Some(Test::Cmp(op, v));
                // A date alone means the whole day: each comparison takes the bound of the
                // day that keeps that meaning.
                match op {
                    "=" if v.date_only => Some(Test::Between(v.start, v.end)),
                    "!=" if v.date_only => Some(Test::NotBetween(v.start, v.end)),
                    "=" => cmp(CmpOp::Eq, v.start),
                    "!=" => cmp(CmpOp::Ne, v.start),
                    ">" => cmp(CmpOp::Gt, v.end),
                    ">=" => cmp(CmpOp::Ge, v.start),
                    "<" => cmp(CmpOp::Lt, v.start),
                    _ => cmp(CmpOp::Le, v.end),
                }
            }
        }
    }

    /// A `within_km` value: `{"lat", "lon", "km"}`, each a number in range.
    fn circle(&mut self, v: &Json, path: &str) -> Option<Circle> {
        let Json::Object(obj) = v else {
            self.err(
                path,
                format!(
                    "within_km needs {}, got {}",
                    expected_value(ValueType::Location),
                    describe(v)
                ),
            );
            return None;
        };
        let mut ok = true;
        for k in obj.keys() {
            if !CIRCLE_KEYS.contains(&k.as_str()) {
                let allowed = format!("within_km takes {}", CIRCLE_KEYS.join(", "));
                self.err(
                    &format!("{path}.{k}"),
                    unknown_key(closest_key(k, CIRCLE_KEYS), &allowed),
                );
                ok = false;
            }
        }
        let lat = self.circle_part(
            obj,
            path,
            "lat",
            "a latitude in degrees from -90 to 90",
            |x| (-90.0..=90.0).contains(&x),
        );
        let lon = self.circle_part(
            obj,
            path,
            "lon",
            "a longitude in degrees from -180 to 180",
            |x| (-180.0..=180.0).contains(&x),
        );
        let expected_km = format!("a radius in km, more than 0 and at most {MAX_RADIUS_KM}");
        let km = self.circle_part(obj, path, "km", &expected_km, |x| {
            x > 0.0 && x <= MAX_RADIUS_KM
        });
        if !ok {
            return None;
        }
        Circle::new(lat?, lon?, km?)
    }

    /// One number of a `within_km` value, reported at `path.key` when missing or out of range.
    fn circle_part(
        &mut self,
        obj: &Map<String, Json>,
        path: &str,
        key: &str,
        expected: &str,
        in_range: impl Fn(f64) -> bool,
    ) -> Option<f64> {
        let key_path = format!("{path}.{key}");
        match obj.get(key) {
            Some(Json::Number(n)) if n.as_f64().is_some_and(&in_range) => n.as_f64(),
            Some(other) => {
                self.err(
                    &key_path,
                    format!("expected {expected}, got {}", describe(other)),
                );
                None
            }
            None => {
                self.err(&key_path, format!("is required: {expected}"));
                None
            }
        }
    }

    /// One value of the field's type, as lower and upper bound (equal except for dates).
    fn value(&mut self, v: &Json, path: &str, field: Field) -> Option<TypedValue> {
        let t = field.value_type();
        let plain = |value: Value| TypedValue {
            start: value.clone(),
            end: value,
            date_only: false,
        };
        let result = match (t, v) {
            (ValueType::Integer, Json::Number(n)) => integer_of(n)
                .map(|i| plain(Value::Int(i)))
                .ok_or_else(|| format!("{field} needs an integer, got {}", describe(v))),
            (ValueType::Money, Json::Number(n)) => money_from_json(n)
                .map(|c| plain(Value::Money(c)))
                .map_err(|e| match e {
                    MoneyError::TooPrecise(text) => {
                        format!("{field} needs an amount with at most 2 decimal places, got {text}")
                    }
                    MoneyError::OutOfRange(text) => {
                        format!("amount {text} is out of range for {field}")
                    }
                }),
            (ValueType::Text, Json::String(s)) => Ok(plain(Value::Text(s.clone()))),
            (ValueType::Timestamp, Json::String(s)) => parse_time(s).map(|t| TypedValue {
                start: Value::Time(t.start),
                end: Value::Time(t.end),
                date_only: t.date_only,
            }),
            _ => Err(format!(
                "{field} needs {}, got {}",
                expected_value(t),
                describe(v)
            )),
        };
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }
}

/// A checked value as a lower and an upper bound (they differ for a date alone).
struct TypedValue {
    start: Value,
    end: Value,
    date_only: bool,
}

fn expected_value(t: ValueType) -> String {
    match t {
        ValueType::Integer => "an integer".into(),
        ValueType::Money => "an amount (a number with at most 2 decimal places)".into(),
        ValueType::Text => "a string".into(),
        ValueType::Timestamp => format!("a date-time: {TIME_FORMS}"),
        ValueType::Location => {
            r#"{"lat": degrees, "lon": degrees, "km": radius}, as in {"lat": 12.9716, "lon": 77.5946, "km": 10}"#.into()
        }
    }
}

fn plural(t: ValueType) -> &'static str {
    match t {
        ValueType::Integer => "integers",
        ValueType::Money => "amounts",
        ValueType::Text => "strings",
        ValueType::Timestamp => "date-times",
        ValueType::Location => "locations",
    }
}

fn expected(field: Field, op: &str) -> String {
    let t = field.value_type();
    match op {
        "in" | "not_in" => format!("a non-empty list of {}", plural(t)),
        "between" => format!("a list [lo, hi] of two {}", plural(t)),
        "contains" | "starts_with" => "a string".into(),
        _ => expected_value(t),
    }
}

/// The values a checked condition holds, counting each distinct scope's filter once per
/// scope, as a standalone query binds them.
fn bound_values(e: &Expr) -> usize {
    fn test_values(t: &Test) -> usize {
        match t {
            Test::IsNull | Test::IsNotNull => 0,
            Test::Cmp(..) | Test::Contains(_) | Test::StartsWith(_) => 1,
            Test::Between(..) | Test::NotBetween(..) => 2,
            Test::In(vs) | Test::NotIn(vs) => vs.len(),
            Test::WithinKm(_) => crate::geo::BOUND_VALUES,
        }
    }
    fn walk<'a>(e: &'a Expr, scopes: &mut Vec<&'a Scope>) -> usize {
        match e {
            Expr::True | Expr::False => 0,
            Expr::All(xs) | Expr::Any(xs) => xs.iter().map(|x| walk(x, scopes)).sum(),
            Expr::Not(x) => walk(x, scopes),
            Expr::Pred(Pred::Profile { test, .. } | Pred::Tx { test, .. }) => test_values(test),
            Expr::Pred(Pred::Aggregate { scope, test, .. }) => {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
                test_values(test)
            }
        }
    }
    let mut scopes = Vec::new();
    let mut n = walk(e, &mut scopes);
    for scope in scopes {
        // The window's two bounds, and the filter's values.
        n += 2;
        if let Some(f) = &scope.filter {
            n += walk(f, &mut Vec::new());
        }
    }
    n
}

fn collect_tx_fields(e: &Expr, out: &mut Vec<Field>) {
    match e {
        Expr::All(xs) | Expr::Any(xs) => xs.iter().for_each(|x| collect_tx_fields(x, out)),
        Expr::Not(x) => collect_tx_fields(x, out),
        Expr::Pred(Pred::Tx { field, .. }) => out.push(*field),
        _ => {}
    }
}

/// The conjunction of filter parts; `None` when there are none.
fn conjunction(mut parts: Vec<Expr>) -> Option<Expr> {
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Expr::All(parts)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cents(s: &str) -> Result<Cents, MoneyError> {
        match serde_json::from_str(s) {
            Ok(Json::Number(n)) => money_from_json(&n),
            _ => panic!("not a number: {s}"),
        }
    }

    #[test]
    fn money_is_read_from_decimal_text() {
        assert_eq!(cents("999.7"), Ok(99_970));
        assert_eq!(cents("999.70"), Ok(99_970));
        assert_eq!(cents("1000"), Ok(100_000));
        assert_eq!(cents("-5.5"), Ok(-550));
        assert_eq!(cents("0.1"), Ok(10));
        assert_eq!(cents("0.29"), Ok(29));
        assert_eq!(cents("1e3"), Ok(100_000));
        assert_eq!(cents("12345678901.99"), Ok(1_234_567_890_199));
        assert!(cents("0.001").is_err());
        assert!(cents("1e-3").is_err());
        assert!(cents("1e30").is_err());
        assert_eq!(decimal_to_cents("1.50"), Ok(150));
        assert_eq!(decimal_to_cents("0.00"), Ok(0));
        assert!(decimal_to_cents("1.2.3").is_err());
    }

    #[test]
    fn times_in_every_accepted_form() {
        let t = |s: &str| parse_time(s).map(|t| (fmt_time(t.start), fmt_time(t.end), t.date_only));
        let noon = (
            "2025-01-01 12:00:00".to_string(),
            "2025-01-01 12:00:00".to_string(),
            false,
        );
        assert_eq!(t("2025-01-01 12:00:00"), Ok(noon.clone()));
        assert_eq!(t("2025-01-01T12:00:00"), Ok(noon.clone()));
        assert_eq!(t("2025-01-01T12:00:00Z"), Ok(noon.clone()));
        assert_eq!(t("2025-01-01T14:00:00+02:00"), Ok(noon));
        assert_eq!(
            t("2025-12-31"),
            Ok((
                "2025-12-31 00:00:00".into(),
                "2025-12-31 23:59:59".into(),
                true
            ))
        );
        assert!(t("2025-13-01").is_err());
        assert!(t("31/12/2025").is_err());
        assert!(t("2025-01-01T00:00:00.5Z").is_err());
    }
}
