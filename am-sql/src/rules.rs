//! The rule store (`rule_table`): create, read, update, delete and list rules, keeping each
//! rule's conditions exactly as the user wrote them.
//!
//! Every write validates the rule, checks that its dependencies exist and form no cycle,
//! and happens in one immediate transaction, so two writers cannot together create a cycle
//! or a duplicate name.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::Serialize;
use serde_json::value::RawValue;

use am_core::error::{PlanError, Problem, ValidationErrors};
use am_core::rule::{CheckedRule, RuleId, RuleSpec};

use crate::catalog::{Page, segment_table_name};
use crate::db::{now_text, parse_time};
use crate::dialect::previous_table_name;
use crate::error::{Error, Result};
use crate::store::Store;

/// A rule as stored: the spec as written, plus the platform's bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRule {
    pub id: RuleId,
    /// The rule as written; `conditions` is parsed from [`StoredRule::conditions_text`].
    pub spec: RuleSpec,
    /// The conditions' JSON text exactly as stored (`None` when the rule has none).
    pub conditions_text: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Starts at 1 and grows with every update: a segment built from an older version is
    /// stale.
    pub version: i64,
}

impl StoredRule {
    /// The rule checked into its typed form (what the planner and the engine use). A rule
    /// saved without conditions or dependencies before conditions were required still
    /// reads, as every user ([`am_core::validate::check_stored_rule`]).
    pub fn checked(&self) -> Result<CheckedRule> {
        Ok(am_core::validate::check_stored_rule(&self.spec)?)
    }
}

const RULE_COLUMNS: &str = "id, rule_name, description, conditions, schedule, start_date, \
     end_date, depends_on, operation, created_at, updated_at, version";

struct RawRule {
    id: RuleId,
    rule_name: String,
    description: Option<String>,
    conditions: Option<String>,
    schedule: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    depends_on: String,
    operation: Option<String>,
    created_at: String,
    updated_at: String,
    version: i64,
}

fn raw_rule(row: &Row<'_>) -> rusqlite::Result<RawRule> {
    Ok(RawRule {
        id: row.get(0)?,
        rule_name: row.get(1)?,
        description: row.get(2)?,
        conditions: row.get(3)?,
        schedule: row.get(4)?,
        start_date: row.get(5)?,
        end_date: row.get(6)?,
        depends_on: row.get(7)?,
        operation: row.get(8)?,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
        version: row.get(11)?,
    })
}

fn finish(raw: RawRule) -> Result<StoredRule> {
    let conditions = match &raw.conditions {
        Some(text) => serde_json::from_str(text)?,
        None => serde_json::Value::Null,
    };
    Ok(StoredRule {
        id: raw.id,
        spec: RuleSpec {
            rule_name: raw.rule_name,
            description: raw.description,
            conditions,
            schedule: raw.schedule,
            start_date: raw.start_date,
            end_date: raw.end_date,
            depends_on: serde_json::from_str(&raw.depends_on)?,
            operation: raw.operation,
        },
        conditions_text: raw.conditions,
        created_at: parse_time(&raw.created_at)?,
        updated_at: parse_time(&raw.updated_at)?,
        version: raw.version,
    })
}

/// One rule; `NotFound` if there is none with that id.
pub fn get_rule(conn: &Connection, id: RuleId) -> Result<StoredRule> {
    let raw = conn
        .query_row(
            &format!("SELECT {RULE_COLUMNS} FROM rule_table WHERE id = ?1"),
            [id],
            raw_rule,
        )
        .optional()?;
    finish(raw.ok_or_else(|| Error::not_found_id("rule", id))?)
}

/// The rule with that name (surrounding spaces ignored); `NotFound` if there is none.
pub fn get_rule_by_name(conn: &Connection, name: &str) -> Result<StoredRule> {
    let raw = conn
        .query_row(
            &format!("SELECT {RULE_COLUMNS} FROM rule_table WHERE rule_name = ?1"),
            [name.trim()],
            raw_rule,
        )
        .optional()?;
    finish(raw.ok_or_else(|| Error::not_found_name("rule", name))?)
}

/// Rules by id, one page (pages from 1).
pub fn list_rules(conn: &Connection, page: u32, per_page: u32) -> Result<Page<StoredRule>> {
    let (page, per_page, limit, offset) = Page::<StoredRule>::window(page, per_page);
    let total: i64 = conn.query_row("SELECT count(*) FROM rule_table", [], |r| r.get(0))?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {RULE_COLUMNS} FROM rule_table ORDER BY id LIMIT ?1 OFFSET ?2"
    ))?;
    let items = stmt
        .query_map(params![limit, offset], raw_rule)?
        .map(|r| r.map_err(Error::from).and_then(finish))
        .collect::<Result<Vec<_>>>()?;
    Ok(Page::new(items, total, page, per_page))
}

/// Every rule, by id.
pub fn all_rules(conn: &Connection) -> Result<Vec<StoredRule>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RULE_COLUMNS} FROM rule_table ORDER BY id"
    ))?;
    stmt.query_map([], raw_rule)?
        .map(|r| r.map_err(Error::from).and_then(finish))
        .collect()
}

/// The rules whose `depends_on` names `id`, by id, with their names.
pub fn dependants_of(conn: &Connection, id: RuleId) -> Result<Vec<(RuleId, String)>> {
    let mut stmt = conn.prepare(
        "SELECT r.id, r.rule_name FROM rule_table AS r
         WHERE EXISTS (SELECT 1 FROM json_each(r.depends_on) AS d WHERE d.value = ?1)
         ORDER BY r.id",
    )?;
    let rows = stmt
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The rule as written and its conditions' text, from a JSON body.
fn spec_from_json(body: &str) -> Result<(RuleSpec, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct RawConditions<'a> {
        #[serde(borrow, default)]
        conditions: Option<&'a RawValue>,
    }
    let malformed = |e: serde_json::Error| {
        Error::Invalid(ValidationErrors(vec![Problem {
            path: "$".into(),
            message: format!("malformed JSON: {e}"),
        }]))
    };
    let value: serde_json::Value = serde_json::from_str(body).map_err(malformed)?;
    let spec = am_core::validate::parse_rule(&value)?;
    let raw: RawConditions<'_> = serde_json::from_str(body).map_err(malformed)?;
    // JSON null (or no conditions) is stored as SQL NULL, like a rule without conditions.
    let text = raw
        .conditions
        .map(|c| c.get().to_owned())
        .filter(|t| t.trim() != "null");
    Ok((spec, text))
}

/// The conditions' text of a spec built in code: compact JSON (keys in serde_json's order).
fn conditions_text(spec: &RuleSpec) -> Result<Option<String>> {
    if spec.conditions.is_null() {
        return Ok(None);
    }
    Ok(Some(serde_json::to_string(&spec.conditions)?))
}

/// Refuses a `depends_on` that names a missing rule or closes a cycle through `id`. The
/// graph was acyclic before this write, so any new cycle passes through `id`.
fn check_dependencies(conn: &Connection, id: RuleId) -> Result<()> {
    let mut stmt = conn.prepare("SELECT id, rule_name, depends_on FROM rule_table")?;
    let mut graph: HashMap<RuleId, (String, Vec<RuleId>)> = HashMap::new();
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, RuleId>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })? {
        let (rid, name, deps) = row?;
        graph.insert(rid, (name, serde_json::from_str(&deps)?));
    }
    let Some((_, deps)) = graph.get(&id) else {
        return Err(Error::not_found_id("rule", id));
    };
    let missing: Vec<Problem> = deps
        .iter()
        .enumerate()
        .filter(|(_, d)| !graph.contains_key(d))
        .map(|(i, d)| Problem {
            path: format!("depends_on[{i}]"),
            message: format!("no rule with id {d}"),
        })
        .collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(ValidationErrors(missing)));
    }
    // Depth-first search from `id` along depends_on, keeping the path to report a cycle.
    let mut path = vec![id];
    let mut seen = HashSet::new();
    if let Some(cycle) = find_cycle(&graph, id, id, &mut path, &mut seen) {
        let rules = cycle
            .into_iter()
            .map(|r| (r, graph.get(&r).map(|(n, _)| n.clone()).unwrap_or_default()))
            .collect();
        return Err(PlanError::Cycle { rules }.into());
    }
    Ok(())
}

fn find_cycle(
    graph: &HashMap<RuleId, (String, Vec<RuleId>)>,
    start: RuleId,
    at: RuleId,
    path: &mut Vec<RuleId>,
    seen: &mut HashSet<RuleId>,
) -> Option<Vec<RuleId>> {
    let deps = graph
        .get(&at)
        .map(|(_, d)| d.as_slice())
        .unwrap_or_default();
    for &dep in deps {
        if dep == start {
            let mut cycle = path.clone();
            cycle.push(start);
            return Some(cycle);
        }
        if seen.insert(dep) {
            path.push(dep);
            if let Some(c) = find_cycle(graph, start, dep, path, seen) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

fn name_taken(name: &str) -> Error {
    Error::Conflict(format!("a rule named {name:?} already exists"))
}

impl Store {
    /// Creates a rule from a spec built in code; its conditions are stored as compact JSON.
    /// Use [`Store::create_rule_json`] to keep a request body's text exactly.
    pub fn create_rule(&self, spec: &RuleSpec) -> Result<RuleId> {
        self.write_rule(None, spec, conditions_text(spec)?)
    }

    /// Creates a rule from its JSON text, storing the conditions byte for byte as written.
    pub fn create_rule_json(&self, body: &str) -> Result<RuleId> {
        let (spec, text) = spec_from_json(body)?;
        self.write_rule(None, &spec, text)
    }

    /// Replaces a rule's spec, bumping its version and `updated_at`.
    pub fn update_rule(&self, id: RuleId, spec: &RuleSpec) -> Result<()> {
        self.write_rule(Some(id), spec, conditions_text(spec)?)
            .map(drop)
    }

    /// [`Store::update_rule`] from JSON text, storing the conditions byte for byte.
    pub fn update_rule_json(&self, id: RuleId, body: &str) -> Result<()> {
        let (spec, text) = spec_from_json(body)?;
        self.write_rule(Some(id), &spec, text).map(drop)
    }

    fn write_rule(
        &self,
        id: Option<RuleId>,
        spec: &RuleSpec,
        conditions: Option<String>,
    ) -> Result<RuleId> {
        am_core::validate::check_rule(spec)?;
        // Stored, and unique, without surrounding spaces.
        let name = spec.rule_name.trim();
        let depends_on = serde_json::to_string(&spec.depends_on)?;
        let now = now_text();
        let mut conn = self.connection()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let written = match id {
            None => tx
                .execute(
                    "INSERT INTO rule_table (rule_name, description, conditions, schedule,
                         start_date, end_date, depends_on, operation, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                    params![
                        name,
                        spec.description,
                        conditions,
                        spec.schedule,
                        spec.start_date,
                        spec.end_date,
                        depends_on,
                        spec.operation,
                        now
                    ],
                )
                .map(|_| Some(tx.last_insert_rowid())),
            Some(id) => tx
                .execute(
                    "UPDATE rule_table SET rule_name = ?2, description = ?3, conditions = ?4,
                         schedule = ?5, start_date = ?6, end_date = ?7, depends_on = ?8,
                         operation = ?9, updated_at = ?10, version = version + 1
                     WHERE id = ?1",
                    params![
                        id,
                        name,
                        spec.description,
                        conditions,
                        spec.schedule,
                        spec.start_date,
                        spec.end_date,
                        depends_on,
                        spec.operation,
                        now
                    ],
                )
                .map(|n| (n > 0).then_some(id)),
        };
        // `None`: the update matched no row.
        let id = match written.map_err(Error::from) {
            Ok(Some(written)) => written,
            Ok(None) => return Err(Error::not_found_id("rule", id.unwrap_or_default())),
            Err(Error::Conflict(_)) => return Err(name_taken(name)),
            Err(e) => return Err(e),
        };
        check_dependencies(&tx, id)?;
        tx.commit()?;
        Ok(id)
    }

    /// Deletes a rule with its catalog row and segment table, in one transaction. Refused
    /// with `Conflict` while other rules depend on it.
    pub fn delete_rule(&self, id: RuleId) -> Result<()> {
        let mut conn = self.connection()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rule = get_rule(&tx, id)?;
        let dependants = dependants_of(&tx, id)?;
        if !dependants.is_empty() {
            let names = dependants
                .iter()
                .map(|(d, name)| format!("#{d} {name:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::Conflict(format!(
                "rule #{id} {:?} is used by {names}",
                rule.spec.rule_name
            )));
        }
        for table in [segment_table_name(id), previous_table_name(id)] {
            tx.execute_batch(&format!("DROP TABLE IF EXISTS \"{table}\""))?;
        }
        // The catalog row goes with it (ON DELETE CASCADE); runs keep the rule's name.
        tx.execute("DELETE FROM rule_table WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    /// One rule; `NotFound` if there is none with that id.
    pub fn rule(&self, id: RuleId) -> Result<StoredRule> {
        get_rule(&self.connection()?, id)
    }

    /// The rule with that exact name.
    pub fn rule_by_name(&self, name: &str) -> Result<StoredRule> {
        get_rule_by_name(&self.connection()?, name)
    }

    /// A rule from what a CLI user typed: an id (`7` or `#7`) or else a name.
    pub fn resolve_rule(&self, key: &str) -> Result<StoredRule> {
        let conn = self.connection()?;
        let key = key.trim();
        if let Ok(id) = key.trim_start_matches('#').parse::<RuleId>() {
            match get_rule(&conn, id) {
                Err(Error::NotFound { .. }) => {}
                found => return found,
            }
        }
        get_rule_by_name(&conn, key)
    }

    /// Rules by id, one page (pages from 1).
    pub fn list_rules(&self, page: u32, per_page: u32) -> Result<Page<StoredRule>> {
        list_rules(&self.connection()?, page, per_page)
    }

    /// Every rule, by id.
    pub fn all_rules(&self) -> Result<Vec<StoredRule>> {
        all_rules(&self.connection()?)
    }

    /// The rules whose `depends_on` names `id`.
    pub fn dependants_of(&self, id: RuleId) -> Result<Vec<(RuleId, String)>> {
        dependants_of(&self.connection()?, id)
    }
}
