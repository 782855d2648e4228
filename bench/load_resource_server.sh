#!/usr/bin/env bash
# Load test of the resource_server example under wrk (DESIGN §6 setup): the server pinned to
# core 0 with one tokio worker, wrk pinned to core 1. In one run, against the same server
# process, it compares GET /public (no auth) with GET /protected carrying a valid bearer token,
# once with the validated-token cache on and once with it off (every request verifies the
# EdDSA signature). Rounds alternate public/protected so drift hits both alike.
#
#   bench/load_resource_server.sh            # 3 rounds of 10 s, 32 connections
#   ROUNDS=5 DURATION=20s CONNS=8 bench/load_resource_server.sh
#   WITH_FASTAPI=1 bench/load_resource_server.sh   # also FastAPI/Starlette + Authlib (bench/fastapi_authlib),
#                                                  # same core, same issuer, same token
#
# Needs wrk and taskset (installed with apt-get when missing). Bounded: ROUNDS × 3 × DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}

if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --example resource_server >&2

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# start NAME TOKEN_CACHE_ENTRIES: runs the example (development issuer) and waits for its token.
start() {
  local name=$1 cache=$2
  env -u OIDC_ISSUER RUST_LOG=warn TOKIO_WORKER_THREADS=1 TOKEN_CACHE_ENTRIES="$cache" \
    LISTEN_ADDR=127.0.0.1:0 taskset -c 0 target/release/examples/resource_server >"$work/$name.out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q '^token: ' "$work/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '^token: ' "$work/$name.out" || { echo "server $name did not start" >&2; exit 1; }
}

# rps URL [HEADER]: requests/s of one wrk run on core 1 (fails on any non-2xx response).
rps() {
  local url=$1; shift
  local out
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$@" "$url")
  if grep -q 'Non-2xx' <<<"$out"; then echo "non-2xx responses from $url" >&2; echo "$out" >&2; exit 1; fi
  awk '/^Requests\/sec/ {print $2}' <<<"$out"
}

start cached 10000
start cold 0
url_of() { sed -n 's/^listening on //p' "$work/$1.out"; }
token_of() { sed -n 's/^token: //p' "$work/$1.out"; }
auth_cached="Authorization: Bearer $(token_of cached)"
auth_cold="Authorization: Bearer $(token_of cold)"

fastapi=""
if [[ "${WITH_FASTAPI:-0}" == 1 ]]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  issuer=$(sed -n 's/^OIDC_ISSUER is not set: trusting a development issuer at //p' "$work/cached.out")
  OIDC_ISSUER="$issuer" OIDC_AUDIENCE=demo-api PORT="$port" bench/fastapi_authlib/run.sh >"$work/fastapi.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do curl -fsS "http://127.0.0.1:$port/public" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS -H "$auth_cached" "http://127.0.0.1:$port/protected" >/dev/null || { cat "$work/fastapi.out" >&2; exit 1; }
  fastapi="http://127.0.0.1:$port"
fi

if [[ -n "$fastapi" ]]; then
  echo "round public_rps protected_cached_rps protected_cold_rps cached/public cold/public fastapi_protected_rps cached/fastapi"
else
  echo "round public_rps protected_cached_rps protected_cold_rps cached/public cold/public"
fi
for round in $(seq "$ROUNDS"); do
  pub=$(rps "$(url_of cached)/public")
  cached=$(rps "$(url_of cached)/protected" -H "$auth_cached")
  cold=$(rps "$(url_of cold)/protected" -H "$auth_cold")
  line=$(awk -v r="$round" -v p="$pub" -v c="$cached" -v k="$cold" \
    'BEGIN { printf "%s %.0f %.0f %.0f %.3f %.3f", r, p, c, k, c / p, k / p }')
  if [[ -n "$fastapi" ]]; then
    fa=$(rps "$fastapi/protected" -H "$auth_cached")
    line="$line $(awk -v f="$fa" -v c="$cached" 'BEGIN { printf "%.0f %.1f", f, c / f }')"
  fi
  echo "$line"
done
