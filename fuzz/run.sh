#!/usr/bin/env bash
# Runs oidcgate's cargo-fuzz targets for a bounded time each and prints how many inputs each one
# executed. Targets: jws_parse, jwks_parse, discovery_parse, session_cookie, callback_query and
# logout_token (oidcgate-core), return_path (oidcgate-axum's `rd` check), gateway_config
# (oidcgate-gateway's settings) and proxy_headers (oidcgate-gateway's header rules).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     SECONDS per target, default 60; default: all targets
#
# Works on the stable toolchain: cargo-fuzz needs nightly-only flags (-Zsanitizer, the
# SanitizerCoverage options), which RUSTC_BOOTSTRAP=1 unlocks on stable rustc. Installs
# cargo-fuzz (`cargo install cargo-fuzz --locked`) when it is missing.
#
# Environment:
#   SANITIZER         address (default; stable ships the ASan runtime), or none / leak
#   CARGO_BUILD_JOBS  build parallelism, default 1 (the machine has 2 shared cores)
#   FUZZ_ARGS         extra libFuzzer flags, e.g. FUZZ_ARGS="-jobs=2 -workers=2"
#
# The checked-in seeds in fuzz/corpus/<target>/ are only read: new inputs go to the scratch
# corpus fuzz/target/corpus/<target>/ and logs to fuzz/target/logs/ (both git-ignored). A crash
# leaves its input in fuzz/artifacts/<target>/ (git-ignored); minimize it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz tmin <target> <artifact>`, then add it to fuzz/corpus/<target>/
# so the replay tests replay it for good: `cargo test -p oidcgate-core --test fuzz_corpus` (the
# core targets), `-p oidcgate-axum --test fuzz_corpus` (return_path) and
# `-p oidcgate-gateway --test fuzz_corpus` (gateway_config, proxy_headers).
set -euo pipefail

ALL_TARGETS=(jws_parse jwks_parse discovery_parse session_cookie callback_query return_path
    logout_token gateway_config proxy_headers)
seconds="${1:-60}"
shift || true
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=("${ALL_TARGETS[@]}")
fi
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
    echo "usage: $0 [SECONDS] [TARGET...]   (SECONDS: a positive integer)" >&2
    exit 2
fi

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
sanitizer="${SANITIZER:-address}"
read -r -a extra_args <<<"${FUZZ_ARGS:-}"

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$fuzz_dir/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

echo "==> building ${targets[*]} (sanitizer: $sanitizer)"
for target in "${targets[@]}"; do
    cargo fuzz build --sanitizer "$sanitizer" "$target"
done

mkdir -p "$fuzz_dir/target/logs"
summary=()
failed=0
for target in "${targets[@]}"; do
    seeds="$fuzz_dir/corpus/$target"
    scratch="$fuzz_dir/target/corpus/$target"
    log="$fuzz_dir/target/logs/$target.log"
    mkdir -p "$scratch"
    echo "==> fuzzing $target for ${seconds}s (seeds: fuzz/corpus/$target, log: $log)"
    status=0
    # The first corpus directory receives new inputs; the seed directory is only read.
    cargo fuzz run --sanitizer "$sanitizer" "$target" "$scratch" "$seeds" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${extra_args[@]}" \
        >"$log" 2>&1 || status=$?
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    took="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)"
    if [[ "$status" -eq 0 ]]; then
        line="$target: ${runs:-?} executions in ${took:-?}s, no crash"
    else
        failed=1
        line="$target: FAILED (exit $status) after ${runs:-?} executions; see $log and fuzz/artifacts/$target/"
        grep -E "^(==[0-9]+==ERROR|thread '.*' .*panicked|SUMMARY:|Test unit written)" "$log" | head -n 5 || true
    fi
    echo "$line"
    summary+=("$line")
done

echo "==> summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
