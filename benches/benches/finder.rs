//! DependencyFinder benchmarks: building the index over 100, 1,000 and 10,000 rules, and
//! answering 100 rules' conditions against it.

use std::hint::black_box;

use am_core::expr::Expr;
use am_core::finder::DependencyFinder;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

mod rule_set;

fn finder(c: &mut Criterion) {
    let mut group = c.benchmark_group("finder");
    group.sample_size(10);
    for n in [100usize, 1_000, 10_000] {
        let rules = rule_set::rule_set(n);
        let candidates: Vec<(i64, String, Expr)> = rules
            .iter()
            .filter(|r| r.rule.depends_on.is_empty())
            .filter_map(|r| Some((r.id, r.rule.name.clone(), r.rule.condition.clone()?)))
            .collect();
        group.bench_with_input(BenchmarkId::new("build", n), &candidates, |b, cs| {
            b.iter(|| {
                let mut f = DependencyFinder::new();
                for (id, name, e) in cs {
                    f.insert(*id, name, e);
                }
                black_box(f)
            })
        });
        let mut f = DependencyFinder::new();
        for (id, name, e) in &candidates {
            f.insert(*id, name, e);
        }
        // The last 100 rules, as if each were being added or edited.
        let queries: Vec<&(i64, String, Expr)> = candidates.iter().rev().take(100).collect();
        group.bench_with_input(BenchmarkId::new("find_100", n), &queries, |b, qs| {
            b.iter(|| {
                let mut found = 0;
                for (id, _, e) in qs {
                    if f.find_for_rule(*id, e, &|_| false).is_some() {
                        found += 1;
                    }
                }
                black_box(found)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, finder);
criterion_main!(benches);
