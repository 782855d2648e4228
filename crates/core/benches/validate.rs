//! Criterion benches of what core does on the request path, each beside its baseline in the
//! same run (DESIGN §6): cold validation per algorithm vs the raw aws-lc-rs verify of a
//! pre-parsed key, and a validated-token cache hit vs a plain thread-safe map lookup.
//! `benches/overhead.rs` gives the same ratio with the two interleaved, which is steadier on a
//! shared machine.
//!
//! `cargo bench -p oidcgate-core --bench validate`

mod common;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use common::{Subject, run_ready};
use criterion::{Criterion, criterion_group, criterion_main};
use oidcgate_core::jose::Algorithm;

fn bench_validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let subject = Subject::new(alg, false);
        group.bench_function(format!("{alg}/raw_verify"), |b| {
            b.iter(|| subject.raw_verify())
        });
        group.bench_function(format!("{alg}/full_validation"), |b| {
            b.iter(|| subject.validate())
        });
    }
    group.finish();
}

fn bench_cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_cache");
    let subject = Subject::new(Algorithm::RS256, true);
    let claims = run_ready(subject.validator.validate(&subject.token)).unwrap();
    group.bench_function("hit", |b| b.iter(|| subject.validate()));

    // Baseline: the simplest thread-safe token → claims lookup (a std map behind a RwLock).
    let map: RwLock<HashMap<String, Arc<_>>> =
        RwLock::new(HashMap::from([(subject.token.clone(), claims)]));
    group.bench_function("baseline_rwlock_hashmap", |b| {
        b.iter(|| {
            map.read()
                .unwrap()
                .get(std::hint::black_box(subject.token.as_str()))
                .cloned()
                .is_some()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_validation, bench_cache);
criterion_main!(benches);
