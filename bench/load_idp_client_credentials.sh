#!/usr/bin/env bash
# Tokens per second from the development IdP's token endpoint (client credentials grant,
# client_secret_basic), RS256 vs EdDSA signing, in one run: `oidcgate idp` (release build, one
# tokio worker) pinned to core 0, `wrk -t1 -c32` pinned to core 1 posting the form.
#
#   bench/load_idp_client_credentials.sh          # 3 rounds of 10 s each
#   ROUNDS=5 DURATION=20s bench/load_idp_client_credentials.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}

if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release >&2

work=$(mktemp -d)
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

taskset -c 0 target/release/oidcgate idp --listen 127.0.0.1:0 --config bench/idp_clients.toml >"$work/idp.out" 2>/dev/null &
pid=$!
for _ in $(seq 100); do grep -q '^listening on ' "$work/idp.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$work/idp.out")
[[ -n "$url" ]] || { echo "idp did not start" >&2; exit 1; }

# One wrk Lua script per client: POST the grant with HTTP Basic authentication.
for alg in rs256 eddsa; do
  auth=$(printf 'svc-%s:svc-%s-secret' "$alg" "$alg" | base64 -w0)
  cat >"$work/$alg.lua" <<LUA
wrk.method = "POST"
wrk.body = "grant_type=client_credentials&scope=read"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $auth"
LUA
  curl -fsS -X POST -H "Authorization: Basic $auth" -d 'grant_type=client_credentials&scope=read' "$url/token" >/dev/null
done

rps() {
  local out
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" -s "$work/$1.lua" "$url/token")
  if grep -q 'Non-2xx' <<<"$out"; then echo "non-2xx responses" >&2; echo "$out" >&2; exit 1; fi
  awk '/^Requests\/sec/ {print $2}' <<<"$out"
}

echo "round rs256_tokens_per_s eddsa_tokens_per_s eddsa/rs256"
for round in $(seq "$ROUNDS"); do
  rs=$(rps rs256)
  ed=$(rps eddsa)
  awk -v r="$round" -v a="$rs" -v b="$ed" 'BEGIN { printf "%s %.0f %.0f %.2f\n", r, a, b, b / a }'
done
