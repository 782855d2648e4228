#!/usr/bin/env bash
# Load test of the gateway (`oidcgate serve`) against nginx `proxy_pass` to the same upstream
# (DESIGN §6: the gateway keeps ≥ 80% of nginx's requests/s; p99 added under 1 ms at -c8).
# The upstream is an nginx `return 200` server of its own. The nginx proxy (one worker), the
# gateway (one tokio worker) and the upstream share core 0; wrk runs on core 1; the IdP and Redis run unpinned.
# Each round measures, back to back:
#   direct          GET / on the upstream itself (no proxy at all)
#   nginx           GET / through nginx proxy_pass (the baseline)
#   cookie          the gateway with a cookie session (SESSION_STORE=cookie)
#   redis           the gateway with a Redis session (SESSION_STORE=redis, SESSION_CACHE_TTL=1s)
#   redis-nocache   the same with SESSION_CACHE_TTL=0s (one Redis GET per request)
#   bearer          the gateway with an EdDSA bearer token (validated-token cache on)
# and prints requests/s, p99 and each one's ratio to nginx in that round, then the medians, and
# the cookie gateway's resident memory idle (VmRSS before the first round) and under load (VmHWM
# after the last).
#
#   bench/gateway-load.sh                     # 3 rounds of 10 s, 8 connections
#   ROUNDS=5 DURATION=20s CONNS=32 bench/gateway-load.sh
#
# Needs wrk, nginx, redis-server, curl and taskset (apt-get installs the missing ones).
# Bounded: ROUNDS × 6 × DURATION plus start-up.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-8}
SECRET=bench-gateway-session-secret-of-32-bytes-at-least

missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --locked >&2
BIN=${BIN:-target/release/oidcgate}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for f in "$work"/nginx-*/nginx.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The upstream and the baseline proxy: two nginx instances (one worker each) on core 0, so the
# baseline, like the gateway, is a proxy process in front of a separate upstream process.
up_port=$(free_port)
px_port=$(free_port)
# start_nginx NAME HTTP_BLOCK_BODY: writes the config of one nginx instance and starts it.
start_nginx() {
  local dir="$work/nginx-$1"
  mkdir -p "$dir"
  {
    echo "worker_processes 1; pid $dir/nginx.pid; error_log $dir/error.log warn;"
    echo "events { worker_connections 1024; }"
    echo "http { access_log off; client_body_temp_path $dir; proxy_temp_path $dir;"
    echo "  fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;"
    echo "  $2"
    echo "}"
  } >"$dir/nginx.conf"
  taskset -c 0 /usr/sbin/nginx -c "$dir/nginx.conf" -p "$dir" >&2
}
start_nginx upstream "server { listen 127.0.0.1:$up_port;
    location / { default_type text/plain; return 200 'ok'; } }"
start_nginx proxy "upstream app { server 127.0.0.1:$up_port; keepalive 64; }
  server { listen 127.0.0.1:$px_port; location / { proxy_pass http://app;
    proxy_http_version 1.1; proxy_set_header Connection ''; } }"

# The development IdP and Redis (not pinned: they serve the sign-ins and session reads).
"$BIN" idp --listen 127.0.0.1:0 >"$work/idp.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on http' "$work/idp.out" 2>/dev/null && break; sleep 0.1; done
issuer=$(sed -n 's/^listening on //p' "$work/idp.out" | head -1)
[ -n "$issuer" ] || { echo "the IdP did not start" >&2; exit 1; }
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

# gateway NAME STORE CACHE_TTL: one gateway on core 0 with one tokio worker.
gateway() {
  local name=$1 store=$2 ttl=$3 port
  port=$(free_port)
  env RUST_LOG=warn TOKIO_WORKER_THREADS=1 OIDC_ISSUER="$issuer" OIDC_CLIENT_ID=demo \
    OIDC_CLIENT_SECRET=demo-secret OIDC_REDIRECT_URI="http://127.0.0.1:$port/auth/callback" \
    OIDC_AUDIENCE=demo-api SESSION_SECRET="$SECRET" COOKIE_SECURE=false \
    UPSTREAM_URL="http://127.0.0.1:$up_port" LISTEN_ADDR="127.0.0.1:$port" \
    SESSION_STORE="$store" REDIS_URL="redis://127.0.0.1:$redis_port/0" SESSION_CACHE_TTL="$ttl" \
    taskset -c 0 "$BIN" serve >"$work/$name.out" 2>&1 &
  pids+=($!)
  echo $! >"$work/$name.pid"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  echo "http://127.0.0.1:$port" >"$work/$name.url"
}

# sign_in NAME: signs alice in through the IdP's login form; prints the session cookie.
sign_in() {
  local base jar page request csrf
  base=$(cat "$work/$1.url")
  jar="$work/$1.jar"
  page=$(curl -sf -c "$jar" -b "$jar" -L "$base/login?rd=/")
  request=$(sed -n 's/.*name="request" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)
  csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)
  curl -sf -c "$jar" -b "$jar" -L -o /dev/null "$issuer/login" \
    --data-urlencode "request=$request" --data-urlencode "csrf=$csrf" \
    --data-urlencode username=alice --data-urlencode password=wonderland
  awk '$6 == "oidcgate_session" { print "oidcgate_session=" $7 }' "$jar"
}

gateway cookie cookie 1s
gateway redis redis 1s
gateway redis-nocache redis 0s
cookie_cookie=$(sign_in cookie)
cookie_redis=$(sign_in redis)
cookie_redis_nocache=$(sign_in redis-nocache)
for c in "$cookie_cookie" "$cookie_redis" "$cookie_redis_nocache"; do
  [ -n "$c" ] || { echo "sign-in failed" >&2; exit 1; }
done
token=$(curl -sf -u demo-service:demo-service-secret -d grant_type=client_credentials -d scope=read \
  "$issuer/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# Every variant must reach the upstream before anything is measured.
for probe in "cookie:Cookie: $cookie_cookie" "redis:Cookie: $cookie_redis" \
  "redis-nocache:Cookie: $cookie_redis_nocache" "cookie:Authorization: Bearer $token"; do
  name=${probe%%:*}
  body=$(curl -sf -H "${probe#*:}" "$(cat "$work/$name.url")/")
  [ "$body" = ok ] || { echo "$name did not reach the upstream: $body" >&2; exit 1; }
done

# measure URL [HEADER]: "requests/s p99_ms" of one wrk run on core 1 (fails on non-2xx).
measure() {
  local url=$1; shift
  local out
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$@" "$url")
  if grep -q 'Non-2xx' <<<"$out"; then echo "non-2xx responses from $url" >&2; echo "$out" >&2; exit 1; fi
  local rps p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" { v=$2; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 }; print v }' <<<"$out")
  echo "$rps $p99"
}

kib() { awk -v k="$2" '$1 == k ":" { print $2 }' "/proc/$(cat "$work/$1.pid")/status"; }
idle_rss=$(kib cookie VmRSS)
echo "gateway vs nginx proxy_pass: $ROUNDS rounds × $DURATION, -c$CONNS, wrk on core 1, servers on core 0"
printf '%-6s %-14s %12s %9s %8s %14s\n' round variant 'req/s' 'p99 ms' ratio 'p99 added ms'
results="$work/results"
: >"$results"
for round in $(seq "$ROUNDS"); do
  read -r direct_rps direct_p99 < <(measure "http://127.0.0.1:$up_port/")
  printf '%-6s %-14s %12.0f %9.3f %8s %14s\n' "$round" direct "$direct_rps" "$direct_p99" - -
  read -r base_rps base_p99 < <(measure "http://127.0.0.1:$px_port/")
  printf '%-6s %-14s %12.0f %9.3f %8s %14s\n' "$round" nginx "$base_rps" "$base_p99" 1.000 -
  for variant in cookie redis redis-nocache bearer; do
    case $variant in
      cookie) url=$(cat "$work/cookie.url"); header="Cookie: $cookie_cookie" ;;
      redis) url=$(cat "$work/redis.url"); header="Cookie: $cookie_redis" ;;
      redis-nocache) url=$(cat "$work/redis-nocache.url"); header="Cookie: $cookie_redis_nocache" ;;
      bearer) url=$(cat "$work/cookie.url"); header="Authorization: Bearer $token" ;;
    esac
    read -r rps p99 < <(measure "$url/" -H "$header")
    ratio=$(awk -v a="$rps" -v b="$base_rps" 'BEGIN { printf "%.3f", a / b }')
    added=$(awk -v a="$p99" -v b="$base_p99" 'BEGIN { printf "%.3f", a - b }')
    printf '%-6s %-14s %12.0f %9.3f %8s %14s\n' "$round" "$variant" "$rps" "$p99" "$ratio" "$added"
    echo "$variant $ratio $added" >>"$results"
  done
done
echo "medians over $ROUNDS rounds (ratio to nginx, p99 added):"
for variant in cookie redis redis-nocache bearer; do
  ratio=$(awk -v v="$variant" '$1 == v { print $2 }' "$results" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  added=$(awk -v v="$variant" '$1 == v { print $3 }' "$results" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  printf '  %-14s ratio %s  p99 added %s ms\n' "$variant" "$ratio" "$added"
done
echo "cookie gateway memory: idle VmRSS $((idle_rss / 1024)) MiB, peak under load VmHWM $(($(kib cookie VmHWM) / 1024)) MiB"
