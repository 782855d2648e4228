//! Validation overhead over the raw signature check, measured interleaved: each round times a
//! block of raw aws-lc-rs verifies and a block of full validations of the same token back to
//! back, so machine-wide drift hits both alike; the median of the per-round ratios is reported.
//!
//! `cargo bench -p oidcgate-core --bench overhead` (optional args: ROUNDS BLOCK ALG)
//!
//! Under `valgrind --tool=callgrind` (instruction counts, repeatable on a busy machine), the
//! inclusive costs of `Subject::validate` and `Subject::raw_verify` give the same ratio in
//! instructions: see bench/RESULTS.md.

mod common;

use std::time::Instant;

use common::Subject;
use oidcgate_core::jose::Algorithm;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(41);
    let block: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(400);
    println!(
        "alg    raw_us  full_us  overhead_us  ratio(median)  ratio(p10..p90)   [{rounds} rounds x {block}]"
    );
    let only = args.get(2).cloned();
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        if only.as_deref().is_some_and(|o| o != alg.name()) {
            continue;
        }
        let subject = Subject::new(alg, false);
        let (mut raws, mut fulls, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which goes first so neither always runs on a warmer cache.
            let time = |f: &dyn Fn() -> bool| {
                let start = Instant::now();
                for _ in 0..block {
                    assert!(f());
                }
                start.elapsed().as_secs_f64() * 1e6 / block as f64
            };
            let (raw, full) = if round % 2 == 0 {
                let r = time(&|| subject.raw_verify());
                (r, time(&|| subject.validate()))
            } else {
                let f = time(&|| subject.validate());
                (time(&|| subject.raw_verify()), f)
            };
            raws.push(raw);
            fulls.push(full);
            ratios.push(full / raw);
        }
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let (p10, p90) = (sorted[rounds / 10], sorted[rounds * 9 / 10]);
        let (raw, full) = (median(&mut raws), median(&mut fulls));
        println!(
            "{:<6} {raw:>6.2}  {full:>7.2}  {:>11.2}  {:>13.3}  {p10:.3}..{p90:.3}",
            alg.name(),
            full - raw,
            median(&mut ratios)
        );
    }
}
