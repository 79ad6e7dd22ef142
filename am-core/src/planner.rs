//! The planner: the dependency graph of rules, from their explicit `depends_on` and from the
//! reuse the [`DependencyFinder`] finds, turned into a [`Plan`].
//!
//! It rejects unknown dependencies and cycles (naming every rule in the cycle), orders rules so
//! that each comes after everything it reads, groups them into stages that can run in
//! parallel, and selects parts of the graph: a rule with everything upstream of it, or
//! everything downstream of changed rules. The graph is petgraph's, kept private: callers see
//! only rule ids and [`Plan`] data.
//!
//! Reuse edges are added one rule at a time in id order; a candidate that is the rule itself
//! or anything downstream of it is never offered to the finder, so reuse cannot make a cycle.
//! Reuse parents are always upstream nodes of the rule, so any plan containing a rule also
//! refreshes what it reads in the same run, with the same as-of time.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use petgraph::Direction;
use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed, VisitMap, Visitable};

use crate::error::PlanError;
use crate::evaluate::rule_set_expr;
use crate::finder::DependencyFinder;
use crate::plan::{Plan, PlanNode, Reuse};
use crate::rule::{CheckedRule, RuleId};

/// One rule to plan.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleInput {
    pub id: RuleId,
    pub rule: CheckedRule,
}

/// What the planner may do beyond the user's explicit dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Whether to compute rules from other rules' segments where the finder can.
    pub reuse: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { reuse: true }
    }
}

/// Why one rule reads another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    /// The user's `depends_on`.
    Explicit,
    /// Found by the DependencyFinder.
    Reuse,
}

/// The planned rule set: the graph, each rule's plan node and its stage.
///
/// Build one with every current rule (plus a new or edited one) to check for unknown ids and
/// cycles before saving it.
#[derive(Debug, Clone)]
pub struct Planner {
    /// Edges run from the rule read to the rule reading it.
    graph: DiGraph<RuleId, Edge>,
    index: HashMap<RuleId, NodeIndex>,
    nodes: BTreeMap<RuleId, PlanNode>,
    /// Every rule in plan order: by stage, then by id.
    order: Vec<RuleId>,
    stage_of: HashMap<RuleId, usize>,
}

impl Planner {
    /// Plans a set of rules. If two inputs share an id, the later one is used.
    ///
    /// Errors: [`PlanError::UnknownRule`] for a dependency on an id not in the set (the lowest
    /// such rule is reported), [`PlanError::Cycle`] for a dependency cycle, listing its rules
    /// so that each depends on the next and the last on the first, starting from the lowest id.
    pub fn new(rules: Vec<RuleInput>, options: PlanOptions) -> Result<Planner, PlanError> {
        let rules: BTreeMap<RuleId, CheckedRule> =
            rules.into_iter().map(|r| (r.id, r.rule)).collect();
        let mut graph = DiGraph::with_capacity(rules.len(), rules.len());
        let index: HashMap<RuleId, NodeIndex> =
            rules.keys().map(|&id| (id, graph.add_node(id))).collect();

        let mut upstream: BTreeMap<RuleId, Vec<RuleId>> = BTreeMap::new();
        for (&id, rule) in &rules {
            let mut deps = Vec::with_capacity(rule.depends_on.len());
            for &dep in &rule.depends_on {
                let Some(&from) = index.get(&dep) else {
                    return Err(PlanError::UnknownRule {
                        rule: id,
                        missing: dep,
                    });
                };
                if !deps.contains(&dep) {
                    deps.push(dep);
                    graph.add_edge(from, index[&id], Edge::Explicit);
                }
            }
            upstream.insert(id, deps);
        }
        if let Some(cycle) = find_cycle(&graph, &index, &rules) {
            return Err(PlanError::Cycle { rules: cycle });
        }

        let mut reuse: BTreeMap<RuleId, (crate::plan::SetExpr, Reuse)> = BTreeMap::new();
        if options.reuse {
            let mut finder = DependencyFinder::new();
            let targets: Vec<(RuleId, &CheckedRule)> = rules
                .iter()
                .filter(|(_, r)| r.depends_on.is_empty() && r.condition.is_some())
                .map(|(&id, r)| (id, r))
                .collect();
            for (id, rule) in &targets {
                if let Some(c) = &rule.condition {
                    finder.insert(*id, &rule.name, c);
                }
            }
            for (id, rule) in &targets {
                let Some(condition) = &rule.condition else {
                    continue;
                };
                let node = index[id];
                // Computed only if the finder asks: everything downstream of the rule now,
                // including reuse edges added for earlier rules. Most rules have nothing
                // downstream yet, so that walk is skipped for them.
                let leaf = graph
                    .neighbors_directed(node, Direction::Outgoing)
                    .next()
                    .is_none();
                let downstream = OnceCell::new();
                let exclude = |c: RuleId| {
                    c == *id
                        || (!leaf
                            && index.get(&c).is_some_and(|n| {
                                downstream
                                    .get_or_init(|| reachable(&graph, node))
                                    .is_visited(n)
                            }))
                };
                if let Some((compute, found)) = finder.find_for_rule(*id, condition, &exclude) {
                    for p in &found.parents {
                        if let Some(&from) = index.get(p) {
                            graph.add_edge(from, node, Edge::Reuse);
                        }
                    }
                    upstream.insert(*id, found.parents.clone());
                    reuse.insert(*id, (compute, found));
                }
            }
        }

        // Reuse never offers a downstream rule, so the graph stays acyclic; should that ever
        // fail, report the cycle rather than produce a wrong order.
        let topo = match toposort(&graph, None) {
            Ok(t) => t,
            Err(_) => {
                let cycle = find_cycle(&graph, &index, &rules).unwrap_or_default();
                return Err(PlanError::Cycle { rules: cycle });
            }
        };
        // Stages by node index: no hashing in the loop or in the sort below.
        let mut stage = vec![0usize; graph.node_count()];
        for n in topo {
            stage[n.index()] = graph
                .neighbors_directed(n, Direction::Incoming)
                .map(|p| stage[p.index()] + 1)
                .max()
                .unwrap_or(0);
        }
        let mut by_stage: Vec<(usize, RuleId)> = graph
            .node_indices()
            .map(|n| (stage[n.index()], graph[n]))
            .collect();
        by_stage.sort_unstable();
        let order: Vec<RuleId> = by_stage.iter().map(|&(_, id)| id).collect();
        let stage_of: HashMap<RuleId, usize> =
            by_stage.into_iter().map(|(s, id)| (id, s)).collect();

        let mut nodes = BTreeMap::new();
        for (id, rule) in rules {
            let (compute, found) = match reuse.remove(&id) {
                Some((compute, found)) => (compute, Some(found)),
                None => (rule_set_expr(&rule), None),
            };
            let node = PlanNode {
                rule_id: id,
                rule_name: rule.name,
                compute,
                upstream: upstream.remove(&id).unwrap_or_default(),
                reuse: found,
            };
            nodes.insert(id, node);
        }
        Ok(Planner {
            graph,
            index,
            nodes,
            order,
            stage_of,
        })
    }

    /// Every rule.
    pub fn plan_all(&self) -> Plan {
        self.plan_of(&self.order.iter().copied().collect())
    }

    /// The targets and everything upstream of them (explicit dependencies and reused
    /// segments, transitively).
    pub fn plan_for(&self, targets: &[RuleId]) -> Result<Plan, PlanError> {
        let starts = self.indices(targets)?;
        Ok(self.plan_of(&self.upstream_closure(starts)))
    }

    /// The changed rules and everything downstream of them, plus whatever those read
    /// upstream: what a refresh after the change has to consider.
    pub fn downstream_of(&self, changed: &[RuleId]) -> Result<Plan, PlanError> {
        let starts = self.indices(changed)?;
        let mut down = Vec::new();
        for s in starts {
            let mut dfs = Dfs::new(&self.graph, s);
            while let Some(n) = dfs.next(&self.graph) {
                down.push(n);
            }
        }
        Ok(self.plan_of(&self.upstream_closure(down)))
    }

    /// A rule's plan node.
    pub fn node(&self, id: RuleId) -> Option<&PlanNode> {
        self.nodes.get(&id)
    }

    /// How the finder answered a rule from other segments, if it did.
    pub fn reuse_of(&self, id: RuleId) -> Option<&Reuse> {
        self.nodes.get(&id).and_then(|n| n.reuse.as_ref())
    }

    /// The 0-based stage of a rule.
    pub fn stage_of(&self, id: RuleId) -> Option<usize> {
        self.stage_of.get(&id).copied()
    }

    /// Rules whose `depends_on` names this rule, in id order (why a delete is refused).
    pub fn dependants_of(&self, id: RuleId) -> Vec<RuleId> {
        self.direct(id, Direction::Outgoing, Edge::Explicit)
    }

    /// Rules the finder computes from this rule's segment, in id order.
    pub fn reused_by(&self, id: RuleId) -> Vec<RuleId> {
        self.direct(id, Direction::Outgoing, Edge::Reuse)
    }

    fn direct(&self, id: RuleId, dir: Direction, kind: Edge) -> Vec<RuleId> {
        let Some(&n) = self.index.get(&id) else {
            return Vec::new();
        };
        let mut out: Vec<RuleId> = self
            .graph
            .edges_directed(n, dir)
            .filter(|e| *e.weight() == kind)
            .map(|e| {
                use petgraph::visit::EdgeRef;
                let other = if dir == Direction::Outgoing {
                    e.target()
                } else {
                    e.source()
                };
                self.graph[other]
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn indices(&self, ids: &[RuleId]) -> Result<Vec<NodeIndex>, PlanError> {
        ids.iter()
            .map(|id| self.index.get(id).copied().ok_or(PlanError::NotFound(*id)))
            .collect()
    }

    fn upstream_closure(&self, starts: Vec<NodeIndex>) -> HashSet<RuleId> {
        let rev = Reversed(&self.graph);
        let mut out = HashSet::new();
        let mut dfs = Dfs::empty(rev);
        for s in starts {
            dfs.move_to(s);
            while let Some(n) = dfs.next(rev) {
                out.insert(self.graph[n]);
            }
        }
        out
    }

    /// A plan of the selected rules, which must include everything upstream of each of them.
    /// Stages are counted within the selection.
    fn plan_of(&self, selected: &HashSet<RuleId>) -> Plan {
        let mut local: HashMap<RuleId, usize> = HashMap::with_capacity(selected.len());
        let mut stages: Vec<Vec<RuleId>> = Vec::new();
        let mut nodes = Vec::with_capacity(selected.len());
        // `order` is topological, so every upstream stage is known before it is needed.
        for id in self.order.iter().filter(|id| selected.contains(id)) {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            let stage = node
                .upstream
                .iter()
                .filter_map(|u| local.get(u))
                .map(|s| s + 1)
                .max()
                .unwrap_or(0);
            local.insert(*id, stage);
            if stages.len() <= stage {
                stages.resize_with(stage + 1, Vec::new);
            }
            stages[stage].push(*id);
            nodes.push((stage, node));
        }
        for s in &mut stages {
            s.sort_unstable();
        }
        // Sorted before cloning: keys are unique, and moving references is cheap.
        nodes.sort_unstable_by_key(|(stage, n)| (*stage, n.rule_id));
        let nodes: Vec<PlanNode> = nodes.into_iter().map(|(_, n)| n.clone()).collect();
        Plan { nodes, stages }
    }
}

/// Every node reachable downstream of a node, the node included.
fn reachable(
    graph: &DiGraph<RuleId, Edge>,
    from: NodeIndex,
) -> <DiGraph<RuleId, Edge> as Visitable>::Map {
    let mut dfs = Dfs::new(graph, from);
    while dfs.next(graph).is_some() {}
    dfs.discovered
}

/// The shortest dependency cycle through the lowest-id rule that is on any cycle, as
/// `(id, name)` pairs in which each rule depends on the next and the last on the first.
fn find_cycle(
    graph: &DiGraph<RuleId, Edge>,
    index: &HashMap<RuleId, NodeIndex>,
    rules: &BTreeMap<RuleId, CheckedRule>,
) -> Option<Vec<(RuleId, String)>> {
    let sccs = petgraph::algo::tarjan_scc(graph);
    let on_cycle: BTreeSet<RuleId> = sccs
        .iter()
        .filter(|c| c.len() > 1 || c.iter().any(|&n| graph.contains_edge(n, n)))
        .flatten()
        .map(|&n| graph[n])
        .collect();
    let start = *on_cycle.first()?;
    let name = |id: RuleId| rules.get(&id).map(|r| r.name.clone()).unwrap_or_default();
    let start_node = index.get(&start).copied()?;
    // Breadth-first along "depends on" (incoming edges) until a rule depending on `start`.
    let deps_of = |n: NodeIndex| {
        let mut ds: Vec<NodeIndex> = graph
            .neighbors_directed(n, Direction::Incoming)
            .filter(|d| on_cycle.contains(&graph[*d]))
            .collect();
        ds.sort_by_key(|d| graph[*d]);
        ds
    };
    let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = VecDeque::from([start_node]);
    let mut seen = HashSet::from([start_node]);
    while let Some(n) = queue.pop_front() {
        for d in deps_of(n) {
            if d == start_node {
                let mut path = vec![n];
                let mut cur = n;
                while let Some(&p) = parent.get(&cur) {
                    path.push(p);
                    cur = p;
                }
                path.reverse();
                return Some(
                    path.into_iter()
                        .map(|x| (graph[x], name(graph[x])))
                        .collect(),
                );
            }
            if seen.insert(d) {
                parent.insert(d, n);
                queue.push_back(d);
            }
        }
    }
    Some(vec![(start, name(start))])
}
