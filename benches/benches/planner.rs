//! Planning benchmarks: `Planner::new` (graph, cycle check, finder) plus `plan_all`, with and
//! without reuse, and a downstream selection, at 100, 1,000 and 10,000 rules.

use std::hint::black_box;

use am_core::planner::{PlanOptions, Planner};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

mod rule_set;

fn planning(c: &mut Criterion) {
    let mut group = c.benchmark_group("planner");
    group.sample_size(10);
    for n in [100usize, 1_000, 10_000] {
        let rules = rule_set::rule_set(n);
        group.bench_with_input(BenchmarkId::new("plan_all", n), &rules, |b, rules| {
            b.iter(|| {
                let p = Planner::new(rules.clone(), PlanOptions { reuse: true });
                black_box(p.map(|p| p.plan_all()))
            })
        });
        group.bench_with_input(
            BenchmarkId::new("plan_all_without_reuse", n),
            &rules,
            |b, rules| {
                b.iter(|| {
                    let p = Planner::new(rules.clone(), PlanOptions { reuse: false });
                    black_box(p.map(|p| p.plan_all()))
                })
            },
        );
        if let Ok(planner) = Planner::new(rules.clone(), PlanOptions::default()) {
            group.bench_with_input(BenchmarkId::new("downstream_of", n), &planner, |b, p| {
                b.iter(|| black_box(p.downstream_of(&[1, 2, 3])))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, planning);
criterion_main!(benches);
