//! The rule store (`rule_table`): create, read, update, delete and list rules, keeping each
//! rule's conditions exactly as the user wrote them.
//!
//! Every write validates the rule, checks that its dependencies exist and form no cycle,
//! and happens in one immediate transaction, so two writers cannot together create a cycle
//! or a duplicate name.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_query::{Expr, ExprTrait, Order, Query, SelectStatement};
use serde::Serialize;
use serde_json::value::RawValue;

use am_core::error::{PlanError, Problem, ValidationErrors};
use am_core::rule::{CheckedRule, RuleId, RuleSpec};

use crate::backend::{changes_table_name, previous_table_name};
use crate::catalog::{Page, segment_table_name};
use crate::conn::{Conn, Row, TxMode, transaction};
use crate::error::{Error, Result};
use crate::schema::{RULE_TABLE, now};
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

const RULE_COLUMNS: [&str; 12] = [
    "id",
    "rule_name",
    "description",
    "conditions",
    "schedule",
    "start_date",
    "end_date",
    "depends_on",
    "operation",
    "created_at",
    "updated_at",
    "version",
];

fn select_rules() -> SelectStatement {
    Query::select()
        .columns(RULE_COLUMNS)
        .from(RULE_TABLE)
        .to_owned()
}

fn stored_rule(row: &Row) -> Result<StoredRule> {
    let conditions_text = row.opt_text(3)?;
    let conditions = match &conditions_text {
        Some(text) => serde_json::from_str(text)?,
        None => serde_json::Value::Null,
    };
    Ok(StoredRule {
        id: row.i64(0)?,
        spec: RuleSpec {
            rule_name: row.text(1)?,
            description: row.opt_text(2)?,
            conditions,
            schedule: row.opt_text(4)?,
            start_date: row.opt_text(5)?,
            end_date: row.opt_text(6)?,
            depends_on: serde_json::from_str(&row.text(7)?)?,
            operation: row.opt_text(8)?,
        },
        conditions_text,
        created_at: row.utc(9)?,
        updated_at: row.utc(10)?,
        version: row.i64(11)?,
    })
}

fn rules_of(conn: &mut dyn Conn, q: &SelectStatement) -> Result<Vec<StoredRule>> {
    conn.rows(q)?.iter().map(stored_rule).collect()
}

/// One rule; `NotFound` if there is none with that id.
pub fn get_rule(conn: &mut dyn Conn, id: RuleId) -> Result<StoredRule> {
    let q = select_rules().and_where(Expr::col("id").eq(id)).to_owned();
    rules_of(conn, &q)?
        .pop()
        .ok_or_else(|| Error::not_found_id("rule", id))
}

/// The rule with that name (surrounding spaces ignored); `NotFound` if there is none.
pub fn get_rule_by_name(conn: &mut dyn Conn, name: &str) -> Result<StoredRule> {
    let q = select_rules()
        .and_where(Expr::col("rule_name").eq(name.trim()))
        .to_owned();
    rules_of(conn, &q)?
        .pop()
        .ok_or_else(|| Error::not_found_name("rule", name))
}

/// Rules by id, one page (pages from 1).
pub fn list_rules(conn: &mut dyn Conn, page: u32, per_page: u32) -> Result<Page<StoredRule>> {
    let (page, per_page, limit, offset) = Page::<StoredRule>::window(page, per_page);
    let total = count_rows(conn, RULE_TABLE)?;
    let q = select_rules()
        .order_by("id", Order::Asc)
        .limit(limit as u64)
        .offset(offset as u64)
        .to_owned();
    Ok(Page::new(rules_of(conn, &q)?, total, page, per_page))
}

/// `SELECT count(*) FROM <table>` (one of our own tables).
pub(crate) fn count_rows(conn: &mut dyn Conn, table: &str) -> Result<i64> {
    let q = Query::select()
        .expr(Expr::cust("count(*)"))
        .from(sea_query::Alias::new(table))
        .to_owned();
    conn.row(&q)?.i64(0)
}

/// Every rule, by id.
pub fn all_rules(conn: &mut dyn Conn) -> Result<Vec<StoredRule>> {
    rules_of(conn, &select_rules().order_by("id", Order::Asc).to_owned())
}

/// Every rule's id, name and `depends_on`.
fn dependency_graph(conn: &mut dyn Conn) -> Result<HashMap<RuleId, (String, Vec<RuleId>)>> {
    let q = Query::select()
        .columns(["id", "rule_name", "depends_on"])
        .from(RULE_TABLE)
        .to_owned();
    let mut graph = HashMap::new();
    for row in conn.rows(&q)? {
        let deps: Vec<RuleId> = serde_json::from_str(&row.text(2)?)?;
        graph.insert(row.i64(0)?, (row.text(1)?, deps));
    }
    Ok(graph)
}

/// The rules whose `depends_on` names `id`, by id, with their names.
pub fn dependants_of(conn: &mut dyn Conn, id: RuleId) -> Result<Vec<(RuleId, String)>> {
    let mut out: Vec<(RuleId, String)> = dependency_graph(conn)?
        .into_iter()
        .filter(|(_, (_, deps))| deps.contains(&id))
        .map(|(rid, (name, _))| (rid, name))
        .collect();
    out.sort();
    Ok(out)
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
fn check_dependencies(conn: &mut dyn Conn, id: RuleId) -> Result<()> {
    let graph = dependency_graph(conn)?;
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
        let mut conn = self.connection()?;
        let now = conn.dialect().time_value(now());
        let values = [
            ("rule_name", name.into()),
            ("description", spec.description.clone().into()),
            ("conditions", conditions.into()),
            ("schedule", spec.schedule.clone().into()),
            ("start_date", spec.start_date.clone().into()),
            ("end_date", spec.end_date.clone().into()),
            ("depends_on", depends_on.into()),
            ("operation", spec.operation.clone().into()),
            ("updated_at", now.clone()),
        ];
        transaction(conn.as_mut(), TxMode::Write, |conn| {
            let written = match id {
                None => {
                    let mut insert = Query::insert();
                    insert
                        .into_table(RULE_TABLE)
                        .columns(values.iter().map(|(c, _)| *c).chain(["created_at"]))
                        .returning_col("id");
                    let row: Vec<Expr> = values
                        .iter()
                        .map(|(_, v)| Expr::val(v.clone()))
                        .chain([Expr::val(now.clone())])
                        .collect();
                    // As many values as columns.
                    let _ = insert.values(row);
                    conn.row(&insert).and_then(|r| r.i64(0)).map(Some)
                }
                Some(id) => {
                    let mut update = Query::update();
                    update
                        .table(RULE_TABLE)
                        .values(values.iter().map(|(c, v)| (*c, Expr::val(v.clone()))))
                        .value("version", Expr::col("version").add(1))
                        .and_where(Expr::col("id").eq(id));
                    conn.exec(&update).map(|n| (n > 0).then_some(id))
                }
            };
            // `None`: the update matched no row.
            let id = match written {
                Ok(Some(written)) => written,
                Ok(None) => return Err(Error::not_found_id("rule", id.unwrap_or_default())),
                Err(Error::Conflict(_)) => return Err(name_taken(name)),
                Err(e) => return Err(e),
            };
            check_dependencies(conn, id)?;
            Ok(id)
        })
    }

    /// Deletes a rule with its catalog row and segment table, in one transaction. Refused
    /// with `Conflict` while other rules depend on it.
    pub fn delete_rule(&self, id: RuleId) -> Result<()> {
        let mut conn = self.connection()?;
        transaction(conn.as_mut(), TxMode::Write, |conn| {
            let rule = get_rule(conn, id)?;
            let dependants = dependants_of(conn, id)?;
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
            let dialect = conn.dialect();
            for table in [
                segment_table_name(id),
                previous_table_name(id),
                changes_table_name(id),
            ] {
                conn.batch(&format!("DROP TABLE IF EXISTS {}", dialect.quote(&table)))?;
            }
            // The catalog row goes with it (ON DELETE CASCADE); runs keep the rule's name.
            conn.exec(
                &Query::delete()
                    .from_table(RULE_TABLE)
                    .and_where(Expr::col("id").eq(id))
                    .to_owned(),
            )?;
            Ok(())
        })
    }

    /// One rule; `NotFound` if there is none with that id.
    pub fn rule(&self, id: RuleId) -> Result<StoredRule> {
        get_rule(self.connection()?.as_mut(), id)
    }

    /// The rule with that exact name.
    pub fn rule_by_name(&self, name: &str) -> Result<StoredRule> {
        get_rule_by_name(self.connection()?.as_mut(), name)
    }

    /// A rule from what a CLI user typed: an id (`7` or `#7`) or else a name.
    pub fn resolve_rule(&self, key: &str) -> Result<StoredRule> {
        let mut conn = self.connection()?;
        let key = key.trim();
        if let Ok(id) = key.trim_start_matches('#').parse::<RuleId>() {
            match get_rule(conn.as_mut(), id) {
                Err(Error::NotFound { .. }) => {}
                found => return found,
            }
        }
        get_rule_by_name(conn.as_mut(), key)
    }

    /// Rules by id, one page (pages from 1).
    pub fn list_rules(&self, page: u32, per_page: u32) -> Result<Page<StoredRule>> {
        list_rules(self.connection()?.as_mut(), page, per_page)
    }

    /// Every rule, by id.
    pub fn all_rules(&self) -> Result<Vec<StoredRule>> {
        all_rules(self.connection()?.as_mut())
    }

    /// The rules whose `depends_on` names `id`.
    pub fn dependants_of(&self, id: RuleId) -> Result<Vec<(RuleId, String)>> {
        dependants_of(self.connection()?.as_mut(), id)
    }
}
