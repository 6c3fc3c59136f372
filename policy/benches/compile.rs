//! Policy compile time for 10, 1,000 and 10,000 rules (target: 10,000 in < 20 ms, linear).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use palisade_policy::{load_str, LoadOptions};

/// A policy with `n` rules spread over file, process and egress sections.
pub fn policy_with_rules(n: usize) -> String {
    let mut s = String::from(
        "apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {name: bench}\nspec:\n  file:\n    rules:\n",
    );
    let third = n / 3;
    for i in 0..third {
        s.push_str(&format!(
            "      - {{path: /data/d{}/f{i}, access: [read, write], action: deny}}\n",
            i % 97
        ));
    }
    s.push_str("  process:\n    default: deny\n    allow:\n");
    for i in 0..third {
        s.push_str(&format!("      - {{path: /opt/app/bin/tool{i}}}\n"));
    }
    s.push_str("  network:\n    egress:\n      default: deny\n      allow:\n");
    for i in 0..(n - 2 * third) {
        s.push_str(&format!(
            "        - {{cidr: 10.{}.{}.0/24, ports: [443], protocol: tcp}}\n",
            (i / 256) % 256,
            i % 256
        ));
    }
    s
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    for n in [10usize, 1_000, 10_000] {
        let source = policy_with_rules(n);
        group.bench_with_input(BenchmarkId::new("parse+validate", n), &source, |b, s| {
            b.iter(|| load_str(s, &LoadOptions::default()))
        });
        let loaded = load_str(&source, &LoadOptions::default());
        assert!(!loaded.diags.has_errors());
        let policy = loaded.policies.into_iter().next().expect("one policy");
        group.bench_with_input(BenchmarkId::new("compile", n), &policy, |b, p| {
            b.iter(|| p.compile().expect("compiles"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
