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
//! scan of every rule; rules with the same normal form are indexed once, and lone bounds on
//! one field and scope are kept ordered by bound, so a narrowing lookup visits only the
//! bounds the rule implies. Ties are broken by the lowest rule id, so answers are
//! deterministic.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::hash::{BuildHasher, Hash, Hasher};

use foldhash::fast::FixedState;
use std::mem::discriminant;

use crate::expr::{CmpOp, Expr, Pred, Test, Value};
use crate::normalize::normalize;
use crate::plan::{Reuse, ReuseKind, SetExpr};
use crate::plan_display::ExprText;
use crate::rule::RuleId;

/// One normal form and every indexed rule that has it. Rules with equal forms answer the
/// same lookups, so the indexes hold each form once however many rules share it.
#[derive(Debug, Clone)]
struct Candidate {
    /// (id, name), ascending by id: the lowest usable id is the one an answer names.
    members: Vec<(RuleId, String)>,
    /// The normal form.
    form: Expr,
    /// [`form_hash`] of `form`.
    hash: u64,
    /// Hashes of the parts of `form` when it is a conjunction or a disjunction.
    part_hashes: Vec<u64>,
}

impl Candidate {
    /// The conjuncts of the form (itself when it is not a conjunction).
    fn conjuncts(&self) -> &[Expr] {
        conjuncts_of(&self.form)
    }

    /// The lowest-id member that may be used.
    fn pick(&self, exclude: &dyn Fn(RuleId) -> bool) -> Option<Pick<'_>> {
        self.pick_below(RuleId::MAX, exclude)
    }

    /// The lowest-id usable member below `limit`.
    fn pick_below(&self, limit: RuleId, exclude: &dyn Fn(RuleId) -> bool) -> Option<Pick<'_>> {
        self.members
            .iter()
            .take_while(|(id, _)| *id < limit)
            .find(|(id, _)| !exclude(*id))
            .map(|(id, name)| Pick {
                id: *id,
                name,
                c: self,
            })
    }
}

/// A candidate as one answer uses it: through one of its rules.
#[derive(Debug, Clone, Copy)]
struct Pick<'a> {
    id: RuleId,
    name: &'a str,
    c: &'a Candidate,
}

/// Maps and sets keyed by our own hashes and small integers, with foldhash's fixed-seed
/// hasher: much cheaper than SipHash on the normal forms and small keys hashed for every
/// lookup. Its lack of keys loses nothing: buckets are confirmed with `==`, and the form
/// hashes were unkeyed (`DefaultHasher::new()`) before.
type HashMap<K, V> = std::collections::HashMap<K, V, FixedState>;
type HashSet<K> = std::collections::HashSet<K, FixedState>;

/// A normal form being looked up, with the hashes the indexes are keyed by.
struct Query<'a> {
    form: &'a Expr,
    hash: u64,
    /// Hashes of the parts of `form` when it is a conjunction or a disjunction.
    part_hashes: Cow<'a, [u64]>,
}

impl<'a> Query<'a> {
    fn new(form: &'a Expr) -> Self {
        let part_hashes = match form {
            Expr::All(xs) | Expr::Any(xs) => xs.iter().map(form_hash).collect(),
            _ => Vec::new(),
        };
        Query {
            form,
            hash: form_hash(form),
            part_hashes: Cow::Owned(part_hashes),
        }
    }

    /// An indexed form, whose hashes are known already.
    fn of(c: &'a Candidate) -> Self {
        Query {
            form: &c.form,
            hash: c.hash,
            part_hashes: Cow::Borrowed(&c.part_hashes),
        }
    }

    /// The hash of the conjunct `i` of [`conjuncts_of`] the form.
    fn conjunct_hash(&self, i: usize) -> u64 {
        match self.form {
            Expr::All(_) => self.part_hashes.get(i).copied().unwrap_or(self.hash),
            _ => self.hash,
        }
    }
}

/// Where a conjunct is filed for implication lookups: predicates by what they test (so a
/// different bound on the same field and scope finds them), anything else by its exact form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Anchor {
    Key(u64),
    Exact(u64),
}

/// The candidates filed under one anchor.
#[derive(Debug, Clone, Default)]
struct Bucket {
    /// (candidate, index of its anchor conjunct, [`anchor_bits`] of all its conjuncts),
    /// tested one by one.
    scan: Vec<(usize, usize, u64)>,
    /// Candidates that are a single bound on one subject, ordered by bound: many rules
    /// bounding the same field and scope are the common case, and a lookup then visits only
    /// the bounds the rule implies.
    bounds: Option<Bounds>,
}

impl Bucket {
    fn len(&self) -> usize {
        self.scan.len()
            + self
                .bounds
                .as_ref()
                .map_or(0, |b| b.lower.len() + b.upper.len())
    }
}

/// Single-bound candidates on one subject (a profile field, or an aggregate in one scope).
#[derive(Debug, Clone)]
struct Bounds {
    /// A predicate on the subject; only its field and scope count.
    subject: Pred,
    /// `> v` and `>= v` by (v, strict): a greater key is a tighter bound.
    lower: BTreeMap<(Value, bool), usize>,
    /// `< v` and `<= v` by (v, inclusive): a smaller key is a tighter bound.
    upper: BTreeMap<(Value, bool), usize>,
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
    by_anchor: HashMap<Anchor, Bucket>,
}

impl DependencyFinder {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many rules are indexed.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
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
        let fp = form_hash(&form);
        let same = self
            .by_form
            .get(&fp)
            .into_iter()
            .flatten()
            .copied()
            .find(|&s| self.candidates[s].form == form);
        if let Some(slot) = same {
            let members = &mut self.candidates[slot].members;
            let at = members.partition_point(|(m, _)| *m < id);
            members.insert(at, (id, name.to_owned()));
            self.slot_of.insert(id, slot);
            return;
        }
        let slot = self.candidates.len();
        self.by_form.entry(fp).or_default().push(slot);
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
        self.file_anchor(slot, conjuncts_of(&form));
        self.slot_of.insert(id, slot);
        self.candidates.push(Candidate {
            members: vec![(id, name.to_owned())],
            form,
            hash: fp,
            part_hashes,
        });
    }

    /// Files a new candidate under the rarest anchor of its conjuncts, so that buckets stay
    /// small when many rules share a field (every rule with some bound on total_spend, say);
    /// a lone bound goes into its bucket's ordered bounds.
    fn file_anchor(&mut self, slot: usize, conjuncts: &[Expr]) {
        let Some((anchor, at)) = conjuncts
            .iter()
            .enumerate()
            .map(|(i, c)| (anchor_of(c), i))
            .min_by_key(|(a, _)| self.by_anchor.get(a).map_or(0, Bucket::len))
        else {
            return;
        };
        let bucket = self.by_anchor.entry(anchor).or_default();
        if let [Expr::Pred(p)] = conjuncts
            && let Some((upper, key)) = bound_key(p)
        {
            let bounds = bucket.bounds.get_or_insert_with(|| Bounds {
                subject: p.clone(),
                lower: BTreeMap::new(),
                upper: BTreeMap::new(),
            });
            // A different subject with the same key hash is rare enough to scan.
            if same_subject(&bounds.subject, p) {
                let map = if upper {
                    &mut bounds.upper
                } else {
                    &mut bounds.lower
                };
                if let Entry::Vacant(e) = map.entry(key) {
                    e.insert(slot);
                    return;
                }
            }
        }
        bucket
            .scan
            .push((slot, at, anchor_bits(conjuncts.iter().map(anchor_of))));
    }

    /// Finds how `condition` can be computed from the indexed rules' segments, never using a
    /// rule for which `exclude` is true. Returns the set expression and the reuse decision.
    pub fn find(
        &self,
        condition: &Expr,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        let form = normalize(condition);
        self.find_form(&Query::new(&form), exclude)
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
        let same_form_higher =
            |c: RuleId| c > id && own.members.binary_search_by_key(&c, |m| m.0).is_ok();
        self.find_form(&Query::of(own), &|c| {
            c == id || same_form_higher(c) || exclude(c)
        })
    }

    fn find_form(
        &self,
        q: &Query<'_>,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        if matches!(q.form, Expr::True | Expr::False) {
            return None;
        }
        self.find_equal(q, exclude)
            .or_else(|| self.find_negation(q.form, exclude))
            .or_else(|| self.find_conjunction(q, exclude))
            .or_else(|| self.find_disjunction(q, exclude))
            .or_else(|| self.find_narrowing(q, exclude))
    }

    /// The lowest-id usable rule whose normal form is exactly `form` (with hash `hash`).
    fn equal_candidate(
        &self,
        form: &Expr,
        hash: u64,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<Pick<'_>> {
        self.by_form
            .get(&hash)
            .into_iter()
            .flatten()
            .map(|&s| &self.candidates[s])
            // An indexed rule's own form is found without comparing it.
            .find(|c| std::ptr::eq(&c.form, form) || c.form == *form)?
            .pick(exclude)
    }

    fn find_equal(
        &self,
        q: &Query<'_>,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        let c = self.equal_candidate(q.form, q.hash, exclude)?;
        let reason = format!(
            "same condition as {} ({}), so its segment is reused as it is",
            rule_ref(c),
            ExprText::new(&c.c.form)
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
        // Not(x) with x a candidate. Since `form` is a normal form, the normal form of its
        // negation is either that x or a `not`; a candidate that is itself a negation is
        // better computed from this rule than the other way round, so only x is looked up.
        let Expr::Not(inner) = form else {
            return None;
        };
        let c = self.equal_candidate(inner, form_hash(inner), exclude)?;
        let reason = format!(
            "the condition is the complement of {} ({}), so it is every user not in that segment",
            rule_ref(c),
            ExprText::new(&c.c.form)
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
        fps: &[u64],
        first_index: &HashMap<u64, Vec<usize>>,
        is_list: fn(&Expr) -> Option<&[Expr]>,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Vec<(Pick<'_>, Vec<usize>)> {
        let mut position: HashMap<u64, Vec<usize>> = HashMap::default();
        for (i, fp) in fps.iter().enumerate() {
            position.entry(*fp).or_default().push(i);
        }
        let find_part = |h: u64, e: &Expr| -> Option<usize> {
            position.get(&h)?.iter().copied().find(|&i| parts[i] == *e)
        };
        let mut seen = HashSet::default();
        let mut out = Vec::new();
        for fp in fps {
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
                // Other rules with the same form cover the same parts and come later in
                // `greedy_cover`'s order, so they would add nothing.
                if let Some(covered) = covered
                    && let Some(pick) = c.pick(exclude)
                {
                    out.push((pick, covered));
                }
            }
        }
        out
    }

    fn find_conjunction(
        &self,
        q: &Query<'_>,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        let Expr::All(parts) = q.form else {
            return None;
        };
        let found =
            self.covering_candidates(parts, &q.part_hashes, &self.by_conjunct, as_all, exclude);
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
        q: &Query<'_>,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        let Expr::Any(parts) = q.form else {
            return None;
        };
        let found =
            self.covering_candidates(parts, &q.part_hashes, &self.by_disjunct, as_any, exclude);
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

    /// Every usable candidate the rule implies, in id order, as far as the choice in
    /// [`find_narrowing`](Self::find_narrowing) can depend on it.
    ///
    /// That choice walks the candidates in id order, moving to one that strictly implies the
    /// current best. Implication is transitive, so two kinds of candidate never change the
    /// outcome and are left out: one implied by a lower-id candidate in the list (it could
    /// never strictly imply the best once that one has been seen), and one followed directly,
    /// in id order, by a tighter bound of the same ordered run (the walk reaches that one
    /// either way). Everything else is compared as before.
    fn implied_candidates(&self, q: &Query<'_>, exclude: &dyn Fn(RuleId) -> bool) -> Vec<Pick<'_>> {
        let rule_parts = conjuncts_of(q.form);
        let anchors: Vec<(Anchor, Anchor)> = rule_parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let exact = Anchor::Exact(q.conjunct_hash(i));
                let key = match part {
                    Expr::Pred(p) => pred_key(p).map_or(exact, Anchor::Key),
                    _ => exact,
                };
                (key, exact)
            })
            .collect();
        // Each conjunct of an implied candidate is implied by a part with the same anchor.
        let rule_bits = anchor_bits(anchors.iter().flat_map(|&(k, e)| [k, e]));
        let mut seen: HashSet<usize> = HashSet::default();
        // (pick, run): picks of one ordered run get strictly tighter as ids grow.
        let mut implied: Vec<(Pick<'_>, Option<usize>)> = Vec::new();
        let mut runs = 0;
        for (part, &(key, exact)) in rule_parts.iter().zip(&anchors) {
            let both = [key, exact];
            let own = if key == exact { &both[..1] } else { &both[..] };
            for &anchor in own {
                let Some(bucket) = self.by_anchor.get(&anchor) else {
                    continue;
                };
                for &(slot, at, bits) in &bucket.scan {
                    if bits & !rule_bits != 0 {
                        continue;
                    }
                    let c = &self.candidates[slot];
                    // Cheap first: this part must imply the anchor, else another part may.
                    if !implies(part, &c.conjuncts()[at]) || seen.contains(&slot) {
                        continue;
                    }
                    seen.insert(slot);
                    if implies_all(rule_parts, c.conjuncts())
                        && let Some(p) = c.pick(exclude)
                    {
                        implied.push((p, None));
                    }
                }
                if let (Expr::Pred(p), Some(bounds)) = (part, &bucket.bounds) {
                    self.implied_bounds(p, bounds, exclude, &mut |slot, pick, run| {
                        if seen.insert(slot) {
                            implied.push((pick, run.map(|r| runs + r)));
                        }
                    });
                    runs += 2;
                }
            }
        }
        implied.sort_by_key(|(p, _)| p.id);
        let next_run = |i: usize| implied.get(i + 1).and_then(|(_, r)| *r);
        (0..implied.len())
            .filter(|&i| implied[i].1.is_none() || implied[i].1 != next_run(i))
            .map(|i| implied[i].0)
            .collect()
    }

    /// The single-bound candidates of `bounds` that `part` implies, passed to `found` as
    /// (slot, pick, run) with run 0 for lower and 1 for upper bounds (`None` when the
    /// candidates found are not one ordered run). Only the range of bounds the part implies
    /// is visited, from the tightest, and of those only a candidate with a lower id than
    /// every tighter one can be chosen, so only those are reported.
    fn implied_bounds<'a>(
        &'a self,
        part: &Pred,
        bounds: &'a Bounds,
        exclude: &dyn Fn(RuleId) -> bool,
        found: &mut dyn FnMut(usize, Pick<'a>, Option<usize>),
    ) {
        if !same_subject(&bounds.subject, part) {
            return;
        }
        let (lower, upper) = match implied_range(part_test(part)) {
            ImpliedRange::None => return,
            ImpliedRange::Every => {
                // An empty value set implies every bound: rare, so no ordering is used.
                for &slot in bounds.lower.values().chain(bounds.upper.values()) {
                    if let Some(p) = self.candidates[slot].pick(exclude) {
                        found(slot, p, None);
                    }
                }
                return;
            }
            ImpliedRange::Up(lower, upper) => (lower, upper),
        };
        let mut visit =
            |keys: &mut dyn Iterator<Item = (&(Value, bool), &usize)>, run: usize, variant| {
                let mut below = RuleId::MAX;
                for (_, &slot) in keys.take_while(|((v, _), _)| discriminant(v) == variant) {
                    let c = &self.candidates[slot];
                    if c.members.first().is_some_and(|(id, _)| *id < below)
                        && let Some(p) = c.pick_below(below, exclude)
                    {
                        below = p.id;
                        found(slot, p, Some(run));
                    }
                }
            };
        if let Some(key) = lower {
            let variant = discriminant(&key.0);
            visit(&mut bounds.lower.range(..=key).rev(), 0, variant);
        }
        if let Some(key) = upper {
            let variant = discriminant(&key.0);
            visit(&mut bounds.upper.range(key..), 1, variant);
        }
    }

    fn find_narrowing(
        &self,
        q: &Query<'_>,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<(SetExpr, Reuse)> {
        let rule_parts = conjuncts_of(q.form);
        let implied = self.implied_candidates(q, exclude);
        // The most specific: walk in id order, moving to a candidate that implies the
        // current best without being implied by it.
        let mut best = *implied.first()?;
        for &c in &implied[1..] {
            if implies_all(c.c.conjuncts(), best.c.conjuncts())
                && !implies_all(best.c.conjuncts(), c.c.conjuncts())
            {
                best = c;
            }
        }
        // Members of the parent satisfy each of its conjuncts; the rule's conjuncts that are
        // literally among them need no second test.
        let parent = best.c.conjuncts();
        let residual: Vec<Expr> = rule_parts
            .iter()
            .filter(|p| !parent.contains(p))
            .cloned()
            .collect();
        let all_literal = parent.iter().all(|p| rule_parts.contains(p));
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
            (ReuseKind::Narrowing, narrowing_reason(rule_parts, best))
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
fn rule_ref(c: Pick<'_>) -> String {
    format!("rule #{} {:?}", c.id, c.name)
}

/// `rule #1 "Tier 1" (city_tier = 1) and rule #2 ...`.
fn list_rules(cs: &[Pick<'_>], joiner: &str) -> String {
    cs.iter()
        .map(|c| format!("{} ({})", rule_ref(*c), ExprText::new(&c.c.form)))
        .collect::<Vec<_>>()
        .join(joiner)
}

/// `total_spend > 5000.00 [credit_card, last 30 days] lies inside rule #12 "Spenders"
/// (total_spend > 1000.00, same scope), so it can be evaluated over that segment only`.
fn narrowing_reason(rule_parts: &[Expr], parent: Pick<'_>) -> String {
    let mut inside = Vec::new();
    let mut described = Vec::new();
    for p in parent.c.conjuncts() {
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
fn conjuncts_of(form: &Expr) -> &[Expr] {
    match form {
        Expr::All(xs) => xs,
        other => std::slice::from_ref(other),
    }
}

/// Picks candidates covering the most parts first (ties: lowest id), skipping any that add
/// nothing new. Returns the chosen candidates and which parts they cover.
fn greedy_cover(mut found: Vec<(Pick<'_>, Vec<usize>)>, n: usize) -> (Vec<Pick<'_>>, Vec<bool>) {
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
    FixedState::default().hash_one(e)
}

/// What a predicate is about: a profile field, or an aggregate with its exact scope.
fn pred_key(p: &Pred) -> Option<u64> {
    let mut h = FixedState::default().build_hasher();
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

/// Whether two predicates test the same thing (field, and scope for aggregates), as
/// [`implies`] requires.
fn same_subject(a: &Pred, b: &Pred) -> bool {
    match (a, b) {
        (Pred::Profile { field: fa, .. }, Pred::Profile { field: fb, .. }) => fa == fb,
        (
            Pred::Aggregate {
                field: fa,
                scope: sa,
                ..
            },
            Pred::Aggregate {
                field: fb,
                scope: sb,
                ..
            },
        ) => fa == fb && sa == sb,
        _ => false,
    }
}

fn part_test(p: &Pred) -> &Test {
    match p {
        Pred::Profile { test, .. } | Pred::Aggregate { test, .. } | Pred::Tx { test, .. } => test,
    }
}

/// For a single bound on a profile field or an aggregate: whether it is an upper bound, and
/// its key in [`Bounds`].
fn bound_key(p: &Pred) -> Option<(bool, (Value, bool))> {
    let (Pred::Profile { test, .. } | Pred::Aggregate { test, .. }) = p else {
        return None;
    };
    match test {
        Test::Cmp(CmpOp::Gt, v) => Some((false, (v.clone(), true))),
        Test::Cmp(CmpOp::Ge, v) => Some((false, (v.clone(), false))),
        Test::Cmp(CmpOp::Lt, v) => Some((true, (v.clone(), false))),
        Test::Cmp(CmpOp::Le, v) => Some((true, (v.clone(), true))),
        _ => None,
    }
}

/// Which single bounds on its subject a test implies, as [`test_implies`] decides.
enum ImpliedRange {
    None,
    Every,
    /// Lower bounds with a key up to the first, upper bounds with a key from the second,
    /// each of the same value type as that key.
    Up(Option<(Value, bool)>, Option<(Value, bool)>),
}

fn implied_range(t: &Test) -> ImpliedRange {
    match accepts(t) {
        // `lo` implies a lower bound at most as tight; `hi` an upper bound at most as tight.
        Accepts::Range(lo, hi) => ImpliedRange::Up(
            lo.map(|(v, incl)| (v.clone(), !incl)),
            hi.map(|(v, incl)| (v.clone(), incl)),
        ),
        // Every value lies inside a bound exactly when the smallest (largest) does; values
        // of another type never compare, so a mixed set implies no bound.
        Accepts::Set(vs) => {
            let Some(first) = vs.first() else {
                return ImpliedRange::Every;
            };
            if vs.iter().any(|v| discriminant(*v) != discriminant(*first)) {
                return ImpliedRange::None;
            }
            let min = vs.iter().min().map(|v| ((*v).clone(), false));
            let max = vs.iter().max().map(|v| ((*v).clone(), true));
            ImpliedRange::Up(min, max)
        }
        _ => ImpliedRange::None,
    }
}

/// A 64-bit summary of a set of anchors: one bit per anchor, so a candidate whose bits are
/// not all among a rule's cannot be implied by it.
fn anchor_bits(anchors: impl Iterator<Item = Anchor>) -> u64 {
    anchors.fold(0, |bits, a| {
        let (Anchor::Key(h) | Anchor::Exact(h)) = a;
        // The top bits: a multiply mixes its input into those most.
        bits | 1 << (h >> 58)
    })
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
        // Membership compares one haversine per centre with each circle's threshold.
        (Test::WithinKm(x), Test::WithinKm(y)) => return x.inside(y),
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;
    use crate::arbitrary::arb_test;
    use crate::expr::{Scope, Source, Window};
    use crate::field::Field;

    /// The narrowing parent by the definition: every indexed rule the condition implies, in
    /// id order, moving to one that strictly implies the best so far.
    fn linear_narrowing(
        rules: &[(RuleId, Expr)],
        form: &Expr,
        exclude: &dyn Fn(RuleId) -> bool,
    ) -> Option<RuleId> {
        let parts = conjuncts_of(form);
        let mut implied: Vec<(RuleId, &[Expr])> = rules
            .iter()
            .filter(|(id, f)| !matches!(f, Expr::True | Expr::False) && !exclude(*id))
            .map(|(id, f)| (*id, conjuncts_of(f)))
            .filter(|(_, cs)| implies_all(parts, cs))
            .collect();
        implied.sort_by_key(|(id, _)| *id);
        let mut best = *implied.first()?;
        for &c in &implied[1..] {
            if implies_all(c.1, best.1) && !implies_all(best.1, c.1) {
                best = c;
            }
        }
        Some(best.0)
    }

    /// Predicates on a few subjects with small value domains, so that buckets hold many
    /// bounds, some equal, on the same field and scope.
    fn arb_dense_pred() -> BoxedStrategy<Expr> {
        let scopes = vec![
            Scope {
                source: Source::All,
                window: Window::UNBOUNDED,
                filter: None,
            },
            Scope {
                source: Source::CreditCard,
                window: Window::LastDays(30),
                filter: None,
            },
        ];
        let aggregate = (
            select(vec![Field::TransactionCount, Field::AvgTransactionAmount]),
            select(scopes),
        )
            .prop_flat_map(|(field, scope)| {
                arb_test(field).prop_map(move |test| {
                    Expr::Pred(Pred::Aggregate {
                        field,
                        scope: scope.clone(),
                        test,
                    })
                })
            });
        let profile = arb_test(Field::CityTier).prop_map(|test| {
            Expr::Pred(Pred::Profile {
                field: Field::CityTier,
                test,
            })
        });
        prop_oneof![4 => aggregate, 1 => profile].boxed()
    }

    fn arb_dense_condition() -> BoxedStrategy<Expr> {
        let pred = arb_dense_pred();
        prop_oneof![
            6 => pred.clone(),
            2 => proptest::collection::vec(pred.clone(), 2..4).prop_map(Expr::All),
            1 => proptest::collection::vec(pred, 2..3).prop_map(Expr::Any),
        ]
        .boxed()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Choosing among many candidates in one bucket picks the parent the definition
        /// picks, whatever the insertion order, ids and exclusions.
        #[test]
        fn narrowing_picks_the_linear_choice(
            conditions in proptest::collection::vec(arb_dense_condition(), 1..120),
            ids in proptest::collection::vec(1i64..400, 120),
            queries in proptest::collection::vec(arb_dense_condition(), 1..20),
            excluded in proptest::collection::btree_set(1i64..400, 0..60),
        ) {
            let mut finder = DependencyFinder::new();
            let mut rules = Vec::new();
            for (c, &id) in conditions.iter().zip(&ids) {
                if finder.slot_of.contains_key(&id) {
                    continue;
                }
                finder.insert(id, &format!("rule {id}"), c);
                rules.push((id, normalize(c)));
            }
            for q in queries.iter().chain(&conditions) {
                let form = normalize(q);
                if matches!(form, Expr::True | Expr::False) {
                    continue;
                }
                for exclude in [&|_| false, &|id| excluded.contains(&id)] as [&dyn Fn(RuleId) -> bool; 2] {
                    let found = finder
                        .find_narrowing(&Query::new(&form), exclude)
                        .map(|(_, reuse)| reuse.parents);
                    let expected = linear_narrowing(&rules, &form, exclude).map(|id| vec![id]);
                    prop_assert_eq!(found, expected, "{:?}", form);
                }
            }
        }
    }
}
