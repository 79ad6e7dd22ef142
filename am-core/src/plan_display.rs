//! Plans and conditions as people read them: the indented text form of a [`Plan`]
//! (`Display`), its Graphviz DOT form ([`Plan::to_dot`]), and [`ExprText`], the one-line form
//! of a condition used in both and in the finder's reasons.
//!
//! Explain output and the lineage graph both come from here, so they always agree.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Formatter, Write as _};

use crate::expr::{CmpOp, Expr, Pred, Scope, Source, TIMESTAMP_FORMAT, Test, Value, Window};
use crate::plan::{Plan, PlanNode, ReuseKind, SetExpr};

/// A condition in one line: `city_tier in [1, 2] and total_spend > 1000.00 [credit_card,
/// last 30 days]`. Aggregates show their scope in brackets unless told not to.
#[derive(Debug, Clone, Copy)]
pub struct ExprText<'a> {
    expr: &'a Expr,
    show_scope: bool,
}

impl<'a> ExprText<'a> {
    pub fn new(expr: &'a Expr) -> Self {
        ExprText {
            expr,
            show_scope: true,
        }
    }

    /// Leaves out aggregates' scopes, for reasons that say "same scope" instead.
    pub fn without_scope(expr: &'a Expr) -> Self {
        ExprText {
            expr,
            show_scope: false,
        }
    }
}

impl Display for ExprText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_expr(f, self.expr, self.show_scope, false)
    }
}

/// Writes an expression; `nested` asks for parentheses around `and` / `or` lists so that
/// precedence is never in doubt.
fn write_expr(f: &mut Formatter<'_>, e: &Expr, show_scope: bool, nested: bool) -> fmt::Result {
    match e {
        Expr::True => f.write_str("true"),
        Expr::False => f.write_str("false"),
        Expr::All(xs) | Expr::Any(xs) => {
            let (joiner, empty) = match e {
                Expr::All(_) => (" and ", "true"),
                _ => (" or ", "false"),
            };
            match xs.as_slice() {
                [] => f.write_str(empty),
                [x] => write_expr(f, x, show_scope, nested),
                _ => {
                    if nested {
                        f.write_str("(")?;
                    }
                    for (i, x) in xs.iter().enumerate() {
                        if i > 0 {
                            f.write_str(joiner)?;
                        }
                        write_expr(f, x, show_scope, true)?;
                    }
                    if nested {
                        f.write_str(")")?;
                    }
                    Ok(())
                }
            }
        }
        Expr::Not(x) => {
            f.write_str("not ")?;
            write_expr(f, x, show_scope, true)
        }
        Expr::Pred(p) => write_pred(f, p, show_scope),
    }
}

fn write_pred(f: &mut Formatter<'_>, p: &Pred, show_scope: bool) -> fmt::Result {
    match p {
        Pred::Profile { field, test } | Pred::Tx { field, test } => {
            write!(f, "{field}")?;
            write_test(f, test)
        }
        Pred::Aggregate { field, scope, test } => {
            write!(f, "{field}")?;
            write_test(f, test)?;
            if show_scope {
                f.write_str(" [")?;
                write_scope(f, scope)?;
                f.write_str("]")?;
            }
            Ok(())
        }
    }
}

fn write_test(f: &mut Formatter<'_>, t: &Test) -> fmt::Result {
    match t {
        Test::Cmp(op, v) => {
            let op = match op {
                CmpOp::Eq => "=",
                CmpOp::Ne => "!=",
                CmpOp::Gt => ">",
                CmpOp::Ge => ">=",
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
            };
            write!(f, " {op} {}", ValueText(v))
        }
        Test::In(vs) => write!(f, " in {}", ValuesText(vs)),
        Test::NotIn(vs) => write!(f, " not in {}", ValuesText(vs)),
        Test::Between(a, b) => write!(f, " between {} and {}", ValueText(a), ValueText(b)),
        Test::NotBetween(a, b) => {
            write!(f, " not between {} and {}", ValueText(a), ValueText(b))
        }
        Test::Contains(s) => write!(f, " contains {s:?}"),
        Test::StartsWith(s) => write!(f, " starts with {s:?}"),
        Test::IsNull => f.write_str(" is null"),
        Test::IsNotNull => f.write_str(" is not null"),
        Test::WithinKm(c) => write!(f, " within {} km of ({}, {})", c.km, c.lat, c.lon),
    }
}

fn write_scope(f: &mut Formatter<'_>, s: &Scope) -> fmt::Result {
    f.write_str(match s.source {
        Source::All => "all sources",
        Source::CreditCard => "credit_card",
        Source::Upi => "upi",
    })?;
    f.write_str(", ")?;
    match s.window {
        Window::LastDays(n) => write!(f, "last {n} days")?,
        Window::Range {
            start: None,
            end: None,
        } => f.write_str("all time")?,
        Window::Range { start, end } => {
            if let Some(s) = start {
                write!(f, "{}", ValueText(&Value::Time(s)))?;
            }
            f.write_str(" .. ")?;
            if let Some(e) = end {
                write!(f, "{}", ValueText(&Value::Time(e)))?;
            }
        }
    }
    if let Some(filter) = &s.filter {
        f.write_str(", where ")?;
        write_expr(f, filter, true, false)?;
    }
    Ok(())
}

/// A value as users write it: money with two decimals, text quoted, midnight as a date.
struct ValueText<'a>(&'a Value);

impl Display for ValueText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Int(i) => write!(f, "{i}"),
            Value::Money(c) => {
                let sign = if *c < 0 { "-" } else { "" };
                let abs = c.unsigned_abs();
                write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
            }
            Value::Text(s) => write!(f, "{s:?}"),
            Value::Time(t) => {
                if t.time() == chrono::NaiveTime::MIN {
                    write!(f, "{}", t.date())
                } else {
                    write!(f, "{}", t.format(TIMESTAMP_FORMAT))
                }
            }
        }
    }
}

struct ValuesText<'a>(&'a [Value]);

impl Display for ValuesText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", ValueText(v))?;
        }
        f.write_str("]")
    }
}

/// A set expression in one line: `segment #2 where total_spend > 5000.00 [..]`,
/// `INTERSECTION(#1, #2)`.
#[derive(Debug, Clone, Copy)]
pub struct SetExprText<'a>(pub &'a SetExpr);

impl Display for SetExprText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_set(f, self.0)
    }
}

fn write_set(f: &mut Formatter<'_>, s: &SetExpr) -> fmt::Result {
    match s {
        SetExpr::AllUsers => f.write_str("all users"),
        SetExpr::Segment(id) => write!(f, "#{id}"),
        SetExpr::Intersect(xs) => write_set_list(f, "INTERSECTION", xs.iter()),
        SetExpr::Union(xs) => write_set_list(f, "UNION", xs.iter()),
        SetExpr::Difference(first, rest) => {
            write_set_list(f, "DIFFERENCE", std::iter::once(&**first).chain(rest))
        }
        SetExpr::Filter(inner, e) => {
            match &**inner {
                SetExpr::AllUsers => f.write_str("users")?,
                SetExpr::Segment(id) => write!(f, "segment #{id}")?,
                other => write_set(f, other)?,
            }
            f.write_str(" where ")?;
            write_expr(f, e, true, false)
        }
    }
}

fn write_set_list<'a>(
    f: &mut Formatter<'_>,
    name: &str,
    xs: impl Iterator<Item = &'a SetExpr>,
) -> fmt::Result {
    write!(f, "{name}(")?;
    for (i, x) in xs.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_set(f, x)?;
    }
    f.write_str(")")
}

/// The name of a reuse kind as the text and DOT forms print it.
pub fn reuse_kind_name(kind: ReuseKind) -> &'static str {
    match kind {
        ReuseKind::Equal => "equal",
        ReuseKind::Conjunction => "conjunction",
        ReuseKind::Disjunction => "disjunction",
        ReuseKind::Negation => "negation",
        ReuseKind::Narrowing => "narrowing",
    }
}

impl Plan {
    /// The nodes in stage order; nodes missing from `stages` (never produced by the
    /// planner) come last, in node order, so nothing is silently dropped.
    fn nodes_by_stage(&self) -> Vec<(usize, &PlanNode)> {
        let by_id: BTreeMap<_, _> = self.nodes.iter().map(|n| (n.rule_id, n)).collect();
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut seen = std::collections::BTreeSet::new();
        for (i, stage) in self.stages.iter().enumerate() {
            for id in stage {
                if let Some(n) = by_id.get(id)
                    && seen.insert(*id)
                {
                    out.push((i + 1, *n));
                }
            }
        }
        let last = self.stages.len() + 1;
        for n in &self.nodes {
            if seen.insert(n.rule_id) {
                out.push((last, n));
            }
        }
        out
    }

    /// The plan as a Graphviz digraph: one box per rule, an edge from each upstream rule;
    /// explicit dependencies are solid, reuse edges dashed and labelled with their kind.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph plan {\n  rankdir=LR;\n  node [shape=box];\n");
        for (_, n) in self.nodes_by_stage() {
            let label = format!("#{} {}", n.rule_id, n.rule_name);
            // Writing to a String cannot fail.
            let _ = writeln!(out, "  r{} [label=\"{}\"];", n.rule_id, dot_escape(&label));
        }
        for (_, n) in self.nodes_by_stage() {
            for up in &n.upstream {
                match &n.reuse {
                    Some(r) if r.parents.contains(up) => {
                        let _ = writeln!(
                            out,
                            "  r{up} -> r{} [style=dashed, label=\"{}\"];",
                            n.rule_id,
                            reuse_kind_name(r.kind)
                        );
                    }
                    _ => {
                        let _ = writeln!(out, "  r{up} -> r{};", n.rule_id);
                    }
                }
            }
        }
        out.push_str("}\n");
        out
    }
}

fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The indented text form: each stage, then each rule with how it is computed and, when the
/// finder answered it from other segments, the kind of reuse and its reason.
impl Display for Plan {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut current = 0;
        for (stage, n) in self.nodes_by_stage() {
            if stage != current {
                writeln!(f, "stage {stage}")?;
                current = stage;
            }
            writeln!(
                f,
                "  #{} {:?} = {}",
                n.rule_id,
                n.rule_name,
                SetExprText(&n.compute)
            )?;
            if let Some(r) = &n.reuse {
                writeln!(f, "      reuse ({}): {}", reuse_kind_name(r.kind), r.reason)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Field;
    use crate::plan::Reuse;

    fn spend_over(cents: i64, window: Window) -> Expr {
        Expr::Pred(Pred::Aggregate {
            field: Field::TotalSpend,
            scope: Scope {
                source: Source::CreditCard,
                window,
                filter: Some(Box::new(Expr::Pred(Pred::Tx {
                    field: Field::Category,
                    test: Test::Cmp(CmpOp::Eq, Value::Text("Travel".into())),
                }))),
            },
            test: Test::Cmp(CmpOp::Gt, Value::Money(cents)),
        })
    }

    #[test]
    fn conditions_read_plainly() {
        let tier = Expr::Pred(Pred::Profile {
            field: Field::CityTier,
            test: Test::In(vec![Value::Int(1), Value::Int(2)]),
        });
        let e = Expr::All(vec![
            tier.clone(),
            Expr::Not(Box::new(Expr::Any(vec![
                spend_over(100_050, Window::LastDays(30)),
                tier,
            ]))),
        ]);
        assert_eq!(
            ExprText::new(&e).to_string(),
            "city_tier in [1, 2] and not (total_spend > 1000.50 [credit_card, last 30 days, \
             where category = \"Travel\"] or city_tier in [1, 2])"
        );
        let day = chrono::NaiveDate::from_ymd_opt(2025, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("valid date");
        let end = chrono::NaiveDate::from_ymd_opt(2025, 12, 31)
            .and_then(|d| d.and_hms_opt(23, 59, 59))
            .expect("valid date");
        let ranged = spend_over(
            -5,
            Window::Range {
                start: Some(day),
                end: Some(end),
            },
        );
        assert_eq!(
            ExprText::without_scope(&ranged).to_string(),
            "total_spend > -0.05"
        );
        assert_eq!(
            ExprText::new(&ranged).to_string(),
            "total_spend > -0.05 [credit_card, 2025-01-01 .. 2025-12-31 23:59:59, where \
             category = \"Travel\"]"
        );
    }

    #[test]
    fn plan_prints_as_text_and_dot() {
        let plan = Plan {
            nodes: vec![
                PlanNode {
                    rule_id: 2,
                    rule_name: "Spenders \"big\"".into(),
                    compute: SetExpr::Filter(
                        Box::new(SetExpr::AllUsers),
                        spend_over(1000, Window::LastDays(7)),
                    ),
                    upstream: vec![],
                    reuse: None,
                },
                PlanNode {
                    rule_id: 3,
                    rule_name: "Copy".into(),
                    compute: SetExpr::Segment(2),
                    upstream: vec![2],
                    reuse: Some(Reuse {
                        kind: ReuseKind::Equal,
                        parents: vec![2],
                        reason: "same condition".into(),
                    }),
                },
                PlanNode {
                    rule_id: 4,
                    rule_name: "Rest".into(),
                    compute: SetExpr::Difference(
                        Box::new(SetExpr::AllUsers),
                        vec![SetExpr::Segment(2), SetExpr::Segment(3)],
                    ),
                    upstream: vec![2, 3],
                    reuse: None,
                },
            ],
            stages: vec![vec![2], vec![3], vec![4]],
        };
        let text = plan.to_string();
        assert!(text.starts_with("stage 1\n  #2 \"Spenders \\\"big\\\"\" = users where"));
        assert!(
            text.contains("stage 2\n  #3 \"Copy\" = #2\n      reuse (equal): same condition\n")
        );
        assert!(text.contains("  #4 \"Rest\" = DIFFERENCE(all users, #2, #3)\n"));
        let dot = plan.to_dot();
        assert!(dot.contains("r2 [label=\"#2 Spenders \\\"big\\\"\"];"));
        assert!(dot.contains("r2 -> r3 [style=dashed, label=\"equal\"];"));
        assert!(dot.contains("r3 -> r4;"));
        assert!(dot.ends_with("}\n"));
    }
}
