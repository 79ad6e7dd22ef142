//! The DependencyFinder: answers a rule's condition from segments that other rules already
//! define, with a reason a person can read.
//!
//! Candidates are rules without `depends_on` that have a condition: their segment is exactly
//! their condition over all users, so a condition equivalent to (or implied by) theirs can be
//! computed from their segment. Everything is compared in normal form
//! ([`crate::normalize::normalize`]). The kinds of reuse, tried in this order:
//!
//! 1. **Equal**: the same normal form; the segment is copied.
//! 2. **Negation**: the rule is the complement of a candidate.
//! 3. **Conjunction** of two or more candidates, each equal to some of the rule's conjuncts;
//!    the remaining conjuncts filter their intersection.
//! 4. **Disjunction**: some of the rule's disjuncts are candidates; their union plus the users
//!    matching the remaining disjuncts.
//! 5. **Narrowing**: the rule implies a candidate (each of the candidate's conjuncts is
//!    implied by one of the rule's: the same predicate, a bound inside a bound on the same
//!    field and scope, a value set inside a value set), so the rule can be evaluated over
//!    that candidate's segment only (whether that is cheaper is the engine's call). The most
//!    specific such candidate is chosen. When every one of its conjuncts is literally one of
//!    the rule's, this is reported as a conjunction.
//!
//! Every answer is equivalent to the rule's condition, so reuse never changes a result.
//! Lookups go through hash indexes (normal form, conjuncts, predicate keys), never through a
//! scan of every rule. Ties are broken by the lowest rule id, so answers are deterministic.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use crate::expr::{CmpOp, Expr, Pred, Test, Value};
use crate::normalize::normalize;
use crate::plan::{Reuse, ReuseKind, SetExpr};
use crate::plan_display::ExprText;
use crate::rule::RuleId;

/// A rule the finder may reuse.
#[derive(Debug, Clone)]
struct Candidate {
    id: RuleId,
    name: String,
    /// The normal form of the rule's condition.
    form: Expr,
    /// The conjuncts of `form` (itself when it is not a conjunction).
    conjuncts: Vec<Expr>,
    /// Hashes of the parts of `form` when it is a conjunction or a disjunction.
    part_hashes: Vec<u64>,
}

/// Where a conjunct is filed for implication lookups: predicates by what they test (so a
/// different bound on the same field and scope finds them), anything else by its exact form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Anchor {
    Key(u64),
    Exact(u64),
}

/// An index over existing rules' normal forms that answers a condition from their segments.
#[derive(Debug, Clone, Default)]
pub struct DependencyFinder {
    candidates: Vec<Candidate>,
    slot_of: HashMap<RuleId, usize>,
    /// Hash of the normal form -> candidates with that form.
    by_form: HashMap<u64, Vec<usize>>,
    /// Hash of one conjunct of a conjunction candidate (the one filed with the fewest others
    /// when it was inserted) -> candidates. A rule can only contain every conjunct of the
    /// candidate if it contains that one.
    by_conjunct: HashMap<u64, Vec<usize>>,
    /// The same for disjunction candidates and their disjuncts.
    by_disjunct: HashMap<u64, Vec<usize>>,
    /// One anchor conjunct per candidate (the one filed with the fewest others when it was
    /// inserted); a rule can only imply the candidate if one of its conjuncts meets it there.
    /// Entries are (candidate, index of the anchor conjunct).
    by_anchor: HashMap<Anchor, Vec<(usize, usize)>>,
}

impl DependencyFinder {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many candidates are indexed.
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// Adds a rule whose segment is exactly `condition` over all users (a rule without
    /// `depends_on`). Inserting an id again replaces nothing: the first insertion stays.
    /// Conditions that normalise to `true` or `false` are not worth reusing and are skipped.
    pub fn insert(&mut self, id: RuleId, name: &str, condition: &Expr) {
        if self.slot_of.contains_key(&id) {
            return;
        }
        let form = normalize(condition);
        if matches!(form, Expr::True | Expr::False) {
            return;
        }
        let conjuncts = conjuncts_of(&form);
        let slot = self.candidates.len();
        self.by_form.entry(form_hash(&form)).or_default().push(slot);
        let part_hashes: Vec<u64> = match &form {
            Expr::All(xs) | Expr::Any(xs) => xs.iter().map(form_hash).collect(),
            _ => Vec::new(),
        };
        let index = match &form {
            Expr::All(_) => Some(&mut self.by_conjunct),
            Expr::Any(_) => Some(&mut self.by_disjunct),
            _ => None,
        };
        if let Some(index) = index {
            let rarest = part_hashes
                .iter()
                .min_by_key(|h| index.get(h).map_or(0, Vec::len));
            if let Some(h) = rarest {
                index.entry(*h).or_default().push(slot);
            }
        }
        // File under the rarest anchor so that buckets stay small when many rules share a
        // field (every rule with some bound on total_spend, say).
        let anchor = conjuncts
            .iter()
            .enumerate()
            .map(|(i, c)| (anchor_of(c), i))
            .min_by_key(|(a, _)| self.by_anchor.get(a).map_or(0, Vec::len));
        if let Some((anchor, i)) = anchor {
            self.by_anchor.entry(anchor).or_default().push((slot, i));
        }
        self.slot_of.insert(id, slot);
        self.candidates.push(Candidate {
            id,
            name: name.to_owned(),
            form,
            conjuncts,
            part_hashes,
        });
    }

    /// Finds how `condition` can be computed from the indexed rules' segments, never using a
    /// rule for which `exclude` is true. Returns the set expression and the reuse decision.
    pub fn find(
        &self,
        condition: &Expr,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        let form = normalize(condition);
        self.find_form(&form, exclude)
    }

    /// Like [`find`](Self::find) for a rule that is itself indexed: never the rule itself, and
    /// of two rules with the same normal form only the lower id may be the other's parent, so
    /// two equal rules never reuse each other.
    pub fn find_for_rule(
        &self,
        id: RuleId,
        condition: &Expr,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        let Some(&slot) = self.slot_of.get(&id) else {
            return self.find(condition, &|c| c == id || exclude(c));
        };
        let own = &self.candidates[slot];
        let form = &own.form;
        let own_fp = form_hash(form);
        let same_form_higher: BTreeSet<RuleId> = self
            .by_form
            .get(&own_fp)
            .into_iter()
            .flatten()
            .map(|&s| &self.candidates[s])
            .filter(|c| c.id > id && c.form == *form)
            .map(|c| c.id)
            .collect();
        self.find_form(form, &|c| {
            c == id || same_form_higher.contains(&c) || exclude(c)
        })
    }

    fn find_form(&self, form: &Expr, exclude: &dyn Fn(RuleId) -> bool) -> Option<(SetExpr, Reuse)> {
        if matches!(form, Expr::True | Expr::False) {
            return None;
        }
        self.find_equal(form, exclude)
            .or_else(|| self.find_negation(form, exclude))
            .or_else(|| self.find_conjunction(form, exclude))
            .or_else(|| self.find_disjunction(form, exclude))
            .or_else(|| self.find_narrowing(form, exclude))
    }

    /// The lowest-id usable candidate whose normal form is exactly `form`.
    fn equal_candidate(&self, form: &Expr, exclude: &dyn Fn(RuleId) -> bool) -> Option<&Candidate> {
        self.by_form
            .get(&form_hash(form))
            .into_iter()
            .flatten()
            .map(|&s| &self.candidates[s])
            .filter(|c| c.form == *form && !exclude(c.id))
            .min_by_key(|c| c.id)
    }

    fn find_equal(
        &self,
        form: &Expr,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        let c = self.equal_candidate(form, exclude)?;
        let reason = format!(
            "same condition as {} ({}), so its segment is reused as it is",
            rule_ref(c),
            ExprText::new(&c.form)
        );
        Some((
            SetExpr::Segment(c.id),
            Reuse {
                kind: ReuseKind::Equal,
                parents: vec![c.id],
                reason,
            },
        ))
    }

    fn find_negation(
        &self,
        form: &Expr,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        // Not(x) with x a candidate, or a candidate whose form is the normal form of not-form.
        let direct = match form {
            Expr::Not(inner) => self.equal_candidate(inner, exclude),
            _ => None,
        };
        let c = match direct {
            Some(c) => c,
            // A candidate that is itself a negation is better computed from this rule
            // than the other way round, so only positive complements are used.
            None => match normalize(&Expr::Not(Box::new(form.clone()))) {
                Expr::Not(_) => return None,
                complement => self.equal_candidate(&complement, exclude)?,
            },
        };
        let reason = format!(
            "the condition is the complement of {} ({}), so it is every user not in that segment",
            rule_ref(c),
            ExprText::new(&c.form)
        );
        Some((
            SetExpr::Difference(Box::new(SetExpr::AllUsers), vec![SetExpr::Segment(c.id)]),
            Reuse {
                kind: ReuseKind::Negation,
                parents: vec![c.id],
                reason,
            },
        ))
    }

    /// Candidates whose every part (conjunct or disjunct, per `is_list`) is among `parts`,
    /// found through the candidate's single form or its indexed part.
    fn covering_candidates(
        &self,
        parts: &[Expr],
        first_index: &HashMap<u64, Vec<usize>>,
        is_list: fn(&Expr) -> Option<&[Expr]>,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Vec<(&Candidate, Vec<usize>)> {
        let fps: Vec<u64> = parts.iter().map(form_hash).collect();
        let mut position: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, fp) in fps.iter().enumerate() {
            position.entry(*fp).or_default().push(i);
        }
        let find_part = |h: u64, e: &Expr| -> Option<usize> {
            position.get(&h)?.iter().copied().find(|&i| parts[i] == *e)
        };
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for fp in &fps {
            let singles = self.by_form.get(fp).into_iter().flatten();
            let lists = first_index.get(fp).into_iter().flatten();
            for &slot in singles.chain(lists) {
                if !seen.insert(slot) {
                    continue;
                }
                let c = &self.candidates[slot];
                let covered: Option<Vec<usize>> = match is_list(&c.form) {
                    Some(xs) => xs
                        .iter()
                        .zip(&c.part_hashes)
                        .map(|(x, h)| find_part(*h, x))
                        .collect(),
                    None => find_part(*fp, &c.form).map(|i| vec![i]),
                };
                if let Some(covered) = covered
                    && !exclude(c.id)
                {
                    out.push((c, covered));
                }
            }
        }
        out
    }

    fn find_conjunction(
        &self,
        form: &Expr,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        let Expr::All(parts) = form else {
            return None;
        };
        let found = self.covering_candidates(parts, &self.by_conjunct, as_all, exclude);
        let (chosen, covered) = greedy_cover(found, parts.len());
        // One parent is a narrowing (possibly by a more specific rule); leave it to that.
        if chosen.len() < 2 {
            return None;
        }
        let residual: Vec<Expr> = uncovered(parts, &covered);
        let intersect = SetExpr::Intersect(chosen.iter().map(|c| SetExpr::Segment(c.id)).collect());
        let compute = match residual_expr(residual.clone(), Expr::All) {
            Some(rest) => SetExpr::Filter(Box::new(intersect), rest),
            None => intersect,
        };
        let mut reason = format!("the condition is {}", list_rules(&chosen, " and "));
        if let Some(rest) = residual_expr(residual, Expr::All) {
            reason.push_str(&format!(", plus {}", ExprText::new(&rest)));
            reason.push_str(", so it filters the intersection of those segments");
        } else {
            reason.push_str(", so it is the intersection of those segments");
        }
        Some((
            compute,
            Reuse {
                kind: ReuseKind::Conjunction,
                parents: chosen.iter().map(|c| c.id).collect(),
                reason,
            },
        ))
    }

    fn find_disjunction(
        &self,
        form: &Expr,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        let Expr::Any(parts) = form else {
            return None;
        };
        let found = self.covering_candidates(parts, &self.by_disjunct, as_any, exclude);
        let (chosen, covered) = greedy_cover(found, parts.len());
        if chosen.is_empty() {
            return None;
        }
        let rest = residual_expr(uncovered(parts, &covered), Expr::Any);
        let mut members: Vec<SetExpr> = chosen.iter().map(|c| SetExpr::Segment(c.id)).collect();
        let mut reason = format!("the condition is {}", list_rules(&chosen, " or "));
        match &rest {
            Some(rest) => {
                reason.push_str(&format!(
                    " or {}, so it is the union of those segments and the users matching the rest",
                    ExprText::new(rest)
                ));
                members.push(SetExpr::Filter(Box::new(SetExpr::AllUsers), rest.clone()));
            }
            None => reason.push_str(", so it is the union of those segments"),
        }
        Some((
            SetExpr::Union(members),
            Reuse {
                kind: ReuseKind::Disjunction,
                parents: chosen.iter().map(|c| c.id).collect(),
                reason,
            },
        ))
    }

    fn find_narrowing(
        &self,
        form: &Expr,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        let rule_parts = conjuncts_of(form);
        let mut seen = BTreeSet::new();
        let mut implied: Vec<&Candidate> = Vec::new();
        for part in &rule_parts {
            let anchors = [Some(anchor_of(part)), Some(Anchor::Exact(form_hash(part)))];
            for anchor in anchors.into_iter().flatten() {
                for &(slot, at) in self.by_anchor.get(&anchor).into_iter().flatten() {
                    let c = &self.candidates[slot];
                    // Cheap first: this part must imply the anchor, else another part may.
                    if !implies(part, &c.conjuncts[at]) || !seen.insert(slot) {
                        continue;
                    }
                    if implies_all(&rule_parts, &c.conjuncts) && !exclude(c.id) {
                        implied.push(c);
                    }
                }
            }
        }
        implied.sort_by_key(|c| c.id);
        // The most specific: walk in id order, moving to a candidate that implies the
        // current best without being implied by it.
        let mut best = *implied.first()?;
        for &c in &implied[1..] {
            if implies_all(&c.conjuncts, &best.conjuncts)
                && !implies_all(&best.conjuncts, &c.conjuncts)
            {
                best = c;
            }
        }
        // Members of the parent satisfy each of its conjuncts; the rule's conjuncts that are
        // literally among them need no second test.
        let residual: Vec<Expr> = rule_parts
            .iter()
            .filter(|p| !best.conjuncts.contains(p))
            .cloned()
            .collect();
        let all_literal = best.conjuncts.iter().all(|p| rule_parts.contains(p));
        let segment = SetExpr::Segment(best.id);
        let rest = residual_expr(residual, Expr::All);
        let compute = match &rest {
            Some(rest) => SetExpr::Filter(Box::new(segment), rest.clone()),
            None => segment,
        };
        let (kind, reason) = if all_literal {
            let mut reason = format!("the condition is {}", list_rules(&[best], " and "));
            if let Some(rest) = &rest {
                reason.push_str(&format!(", plus {}", ExprText::new(rest)));
            }
            reason.push_str(", so it can be evaluated over that segment only");
            (ReuseKind::Conjunction, reason)
        } else {
            (ReuseKind::Narrowing, narrowing_reason(&rule_parts, best))
        };
        Some((
            compute,
            Reuse {
                kind,
                parents: vec![best.id],
                reason,
            },
        ))
    }
}

/// `rule #12 "Spenders"`.
fn rule_ref(c: &Candidate) -> String {
    format!("rule #{} {:?}", c.id, c.name)
}

/// `rule #1 "Tier 1" (city_tier = 1) and rule #2 ...`.
fn list_rules(cs: &[&Candidate], joiner: &str) -> String {
    cs.iter()
        .map(|c| format!("{} ({})", rule_ref(c), ExprText::new(&c.form)))
        .collect::<Vec<_>>()
        .join(joiner)
}

/// `total_spend > 5000.00 [credit_card, last 30 days] lies inside rule #12 "Spenders"
/// (total_spend > 1000.00, same scope), so it can be evaluated over that segment only`.
fn narrowing_reason(rule_parts: &[Expr], parent: &Candidate) -> String {
    let mut inside = Vec::new();
    let mut described = Vec::new();
    for p in &parent.conjuncts {
        // The rule conjunct that implies this one; exact matches need no explanation.
        let Some(r) = rule_parts.iter().find(|r| implies(r, p)) else {
            continue;
        };
        if r == p {
            described.push(ExprText::new(p).to_string());
            continue;
        }
        if !inside.contains(r) {
            inside.push(r.clone());
        }
        match (r, p) {
            (
                Expr::Pred(Pred::Aggregate { scope: a, .. }),
                Expr::Pred(Pred::Aggregate { scope: b, .. }),
            ) if a == b => {
                described.push(format!("{}, same scope", ExprText::without_scope(p)));
            }
            _ => described.push(ExprText::new(p).to_string()),
        }
    }
    let inside: Vec<String> = inside
        .iter()
        .map(|e| ExprText::new(e).to_string())
        .collect();
    format!(
        "{} lies inside {} ({}), so it can be evaluated over that segment only",
        inside.join(" and "),
        rule_ref(parent),
        described.join("; ")
    )
}

fn as_all(e: &Expr) -> Option<&[Expr]> {
    match e {
        Expr::All(xs) => Some(xs),
        _ => None,
    }
}

fn as_any(e: &Expr) -> Option<&[Expr]> {
    match e {
        Expr::Any(xs) => Some(xs),
        _ => None,
    }
}

/// The conjuncts of a normal form.
fn conjuncts_of(form: &Expr) -> Vec<Expr> {
    match form {
        Expr::All(xs) => xs.clone(),
        other => vec![other.clone()],
    }
}

/// Picks candidates covering the most parts first (ties: lowest id), skipping any that add
/// nothing new. Returns the chosen candidates and which parts they cover.
fn greedy_cover(
    mut found: Vec<(&Candidate, Vec<usize>)>,
    n: usize,
) -> (Vec<&Candidate>, Vec<bool>) {
    found.sort_by(|(a, ca), (b, cb)| cb.len().cmp(&ca.len()).then(a.id.cmp(&b.id)));
    let mut covered = vec![false; n];
    let mut chosen = Vec::new();
    for (c, parts) in found {
        if parts.iter().any(|&i| !covered[i]) {
            for i in parts {
                covered[i] = true;
            }
            chosen.push(c);
        }
    }
    (chosen, covered)
}

fn uncovered(parts: &[Expr], covered: &[bool]) -> Vec<Expr> {
    parts
        .iter()
        .zip(covered)
        .filter(|(_, c)| !**c)
        .map(|(p, _)| p.clone())
        .collect()
}

/// `None` for no parts, the part itself for one, else the list.
fn residual_expr(mut parts: Vec<Expr>, list: fn(Vec<Expr>) -> Expr) -> Option<Expr> {
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(list(parts)),
    }
}

/// A hash of an expression already in normal form, for index buckets. Buckets are always
/// confirmed with `==`, so this only has to be fast and consistent within one process (the
/// stable [`crate::normalize::fingerprint`] normalises and serialises again).
fn form_hash(e: &Expr) -> u64 {
    let mut h = DefaultHasher::new();
    e.hash(&mut h);
    h.finish()
}

/// What a predicate is about: a profile field, or an aggregate with its exact scope.
fn pred_key(p: &Pred) -> Option<u64> {
    let mut h = DefaultHasher::new();
    match p {
        Pred::Profile { field, .. } => {
            0u8.hash(&mut h);
            field.hash(&mut h);
        }
        Pred::Aggregate { field, scope, .. } => {
            1u8.hash(&mut h);
            field.hash(&mut h);
            scope.hash(&mut h);
        }
        Pred::Tx { .. } => return None,
    }
    Some(h.finish())
}

fn anchor_of(e: &Expr) -> Anchor {
    match e {
        Expr::Pred(p) => match pred_key(p) {
            Some(k) => Anchor::Key(k),
            None => Anchor::Exact(form_hash(e)),
        },
        other => Anchor::Exact(form_hash(other)),
    }
}

/// Whether every one of `theirs` is implied by one of `ours`, so `All(ours)` implies
/// `All(theirs)`.
fn implies_all(ours: &[Expr], theirs: &[Expr]) -> bool {
    theirs.iter().all(|t| ours.iter().any(|o| implies(o, t)))
}

/// Whether `a` implies `b` for every user. Conservative: `false` means "not shown".
fn implies(a: &Expr, b: &Expr) -> bool {
    if a == b || matches!(a, Expr::False) || matches!(b, Expr::True) {
        return true;
    }
    match (a, b) {
        (Expr::Pred(pa), Expr::Pred(pb)) => match (pa, pb) {
            (
                Pred::Profile {
                    field: fa,
                    test: ta,
                },
                Pred::Profile {
                    field: fb,
                    test: tb,
                },
            ) => fa == fb && test_implies(ta, tb),
            (
                Pred::Aggregate {
                    field: fa,
                    scope: sa,
                    test: ta,
                },
                Pred::Aggregate {
                    field: fb,
                    scope: sb,
                    test: tb,
                },
            ) => fa == fb && sa == sb && test_implies(ta, tb),
            _ => false,
        },
        _ => false,
    }
}

/// A test's accepted values, as far as implication needs them. Every test except `IsNull`
/// is false on null, so these are sets of non-null values.
enum Accepts<'a> {
    /// Between optional bounds, each with whether it is included.
    Range(Option<(&'a Value, bool)>, Option<(&'a Value, bool)>),
    Set(Vec<&'a Value>),
    AllBut(Vec<&'a Value>),
    AnyValue,
    Other,
}

fn accepts(t: &Test) -> Accepts<'_> {
    match t {
        Test::Cmp(CmpOp::Eq, v) => Accepts::Set(vec![v]),
        Test::Cmp(CmpOp::Ne, v) => Accepts::AllBut(vec![v]),
        Test::Cmp(CmpOp::Gt, v) => Accepts::Range(Some((v, false)), None),
        Test::Cmp(CmpOp::Ge, v) => Accepts::Range(Some((v, true)), None),
        Test::Cmp(CmpOp::Lt, v) => Accepts::Range(None, Some((v, false))),
        Test::Cmp(CmpOp::Le, v) => Accepts::Range(None, Some((v, true))),
        Test::Between(a, b) => Accepts::Range(Some((a, true)), Some((b, true))),
        Test::In(vs) => Accepts::Set(vs.iter().collect()),
        Test::NotIn(vs) => Accepts::AllBut(vs.iter().collect()),
        Test::IsNotNull => Accepts::AnyValue,
        _ => Accepts::Other,
    }
}

/// Compares values of the same type; values of different types are never comparable here.
fn cmp_same(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) | (Value::Money(x), Value::Money(y)) => Some(x.cmp(y)),
        (Value::Text(x), Value::Text(y)) => Some(x.cmp(y)),
        (Value::Time(x), Value::Time(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn in_range(v: &Value, lo: Option<(&Value, bool)>, hi: Option<(&Value, bool)>) -> bool {
    let above = match lo {
        None => true,
        Some((l, incl)) => match cmp_same(v, l) {
            Some(Ordering::Greater) => true,
            Some(Ordering::Equal) => incl,
            _ => false,
        },
    };
    let below = match hi {
        None => true,
        Some((h, incl)) => match cmp_same(v, h) {
            Some(Ordering::Less) => true,
            Some(Ordering::Equal) => incl,
            _ => false,
        },
    };
    above && below
}

/// Whether lower bound `a` is at least as tight as lower bound `b` (`upper` flips it).
fn bound_within(a: Option<(&Value, bool)>, b: Option<(&Value, bool)>, upper: bool) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some((av, ai)), Some((bv, bi))) => match cmp_same(av, bv) {
            Some(Ordering::Equal) => bi || !ai,
            Some(Ordering::Greater) => !upper,
            Some(Ordering::Less) => upper,
            None => false,
        },
    }
}

/// Whether every non-null value passing `a` passes `b` (and `a` never passes a null).
fn test_implies(a: &Test, b: &Test) -> bool {
    if a == b {
        return true;
    }
    if matches!(a, Test::IsNull) || matches!(b, Test::IsNull) {
        return false;
    }
    let lower = |s: &str| s.to_ascii_lowercase();
    match (a, b) {
        (Test::StartsWith(x), Test::StartsWith(y)) => return lower(x).starts_with(&lower(y)),
        (Test::StartsWith(x) | Test::Contains(x), Test::Contains(y)) => {
            return lower(x).contains(&lower(y));
        }
        _ => {}
    }
    match (accepts(a), accepts(b)) {
        (_, Accepts::AnyValue) => true,
        (Accepts::Range(al, ah), Accepts::Range(bl, bh)) => {
            bound_within(al, bl, false) && bound_within(ah, bh, true)
        }
        (Accepts::Set(vs), Accepts::Range(bl, bh)) => vs.iter().all(|v| in_range(v, bl, bh)),
        (Accepts::Set(vs), Accepts::Set(ws)) => vs.iter().all(|v| ws.contains(v)),
        (Accepts::Set(vs), Accepts::AllBut(ws)) => vs.iter().all(|v| {
            ws.iter()
                .all(|w| cmp_same(v, w).is_some_and(|o| o != Ordering::Equal))
        }),
        (Accepts::Range(al, ah), Accepts::AllBut(ws)) => ws.iter().all(|w| {
            // A value of another type could never be equal, but stay conservative.
            cmp_same(w, al.or(ah).map_or(w, |(v, _)| v)).is_some() && !in_range(w, al, ah)
        }),
        (Accepts::AllBut(vs), Accepts::AllBut(ws)) => ws.iter().all(|w| vs.contains(w)),
        _ => false,
    }
}
