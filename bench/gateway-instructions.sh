#!/usr/bin/env bash
# Instructions per proxied request (valgrind callgrind): the gateway's user-space cost per
# request, next to nginx `proxy_pass` doing the same job. Unlike requests/s on a shared machine,
# instruction counts repeat to within a percent, so this is the script to judge a change to the
# proxy path with; bench/gateway-load.sh then says what it is worth in requests/s.
#
# Variants (each measured on its own process, counters zeroed after a warm-up):
#   nginx     nginx proxy_pass (master_process off) in front of the upstream
#   public    the gateway, a SKIP_AUTH_ROUTES route (no authentication: the bare proxy path)
#   cookie    the gateway with a cookie session
#   bearer    the gateway with a bearer token (validated-token cache on)
#
#   bench/gateway-instructions.sh              # 4,000 requests per variant, 8 connections
#   REQUESTS=10000 VARIANTS="public cookie" bench/gateway-instructions.sh
#   KEEP=1 bench/gateway-instructions.sh       # keeps the callgrind files (printed) to annotate
#
# Needs valgrind, nginx, curl and python3 (apt-get installs the missing ones). Bounded: each
# variant sends REQUESTS requests (python client below) and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-4000}
CONNS=${CONNS:-8}
VARIANTS=${VARIANTS:-nginx public cookie bearer}
SECRET=bench-gateway-session-secret-of-32-bytes-at-least

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
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
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 600); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

# nginx_conf NAME BODY [EXTRA_MAIN]: writes one nginx configuration, prints its path.
nginx_conf() {
  local dir="$work/nginx-$1"
  mkdir -p "$dir"
  {
    echo "worker_processes 1; pid $dir/nginx.pid; error_log $dir/error.log warn; ${3:-}"
    echo "events { worker_connections 1024; }"
    echo "http { access_log off; client_body_temp_path $dir; proxy_temp_path $dir;"
    echo "  fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;"
    echo "  $2"
    echo "}"
  } >"$dir/nginx.conf"
  echo "$dir/nginx.conf"
}

up_port=$(free_port)
/usr/sbin/nginx -c "$(nginx_conf upstream "server { listen 127.0.0.1:$up_port;
    location / { default_type text/plain; return 200 'ok'; } }")" >&2
wait_http "http://127.0.0.1:$up_port/"

"$BIN" idp --listen 127.0.0.1:0 >"$work/idp.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on http' "$work/idp.out" 2>/dev/null && break; sleep 0.1; done
issuer=$(sed -n 's/^listening on //p' "$work/idp.out" | head -1)
[ -n "$issuer" ] || { echo "the IdP did not start" >&2; exit 1; }

# load URL [HEADER]: sends REQUESTS GETs over CONNS keep-alive connections; fails unless all 200.
load() {
  python3 - "$REQUESTS" "$CONNS" "$@" <<'PY'
import http.client, sys, threading, urllib.parse
total, conns, url = int(sys.argv[1]), int(sys.argv[2]), urllib.parse.urlsplit(sys.argv[3])
headers = dict([sys.argv[4].split(": ", 1)]) if len(sys.argv) > 4 else {}
bad = []
def run(n):
    c = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    for _ in range(n):
        c.request("GET", url.path or "/", headers=headers)
        r = c.getresponse(); r.read()
        if r.status != 200: bad.append(r.status)
threads = [threading.Thread(target=run, args=(total // conns,)) for _ in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
if bad: sys.exit(f"{len(bad)} non-200 answers, first {bad[0]}")
PY
}

# measure NAME PID URL [HEADER]: warm-up, zero, REQUESTS requests, dump; prints Ir per request.
measure() {
  local name=$1 pid=$2 url=$3; shift 3
  load "$url" "$@"
  callgrind_control -z "$pid" >/dev/null 2>&1
  load "$url" "$@"
  callgrind_control -d "$name" "$pid" >/dev/null 2>&1
  local file
  file=$(ls -t "$work/callgrind.out.$pid".* 2>/dev/null | head -1)
  local ir
  ir=$(awk '/^summary:|^totals:/ { print $2; exit }' "$file")
  printf '%-8s %12s instructions per request  (%s)\n' "$name" "$((ir / REQUESTS))" \
    "$([ -n "${KEEP:-}" ] && echo "$file" || echo "-")"
}

CALLGRIND=(valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.%p")

gateway() {
  local port=$1; shift
  env RUST_LOG=warn TOKIO_WORKER_THREADS=1 OIDC_ISSUER="$issuer" OIDC_CLIENT_ID=demo \
    OIDC_CLIENT_SECRET=demo-secret OIDC_REDIRECT_URI="http://127.0.0.1:$port/auth/callback" \
    OIDC_AUDIENCE=demo-api SESSION_SECRET="$SECRET" COOKIE_SECURE=false \
    UPSTREAM_URL="http://127.0.0.1:$up_port" LISTEN_ADDR="127.0.0.1:$port" "$@" \
    "${CALLGRIND[@]}" "$BIN" serve >"$work/gateway-$port.out" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/healthz"
  echo $!
}

sign_in() {
  local base=$1 jar="$work/jar.$RANDOM" page request csrf
  page=$(curl -sf -c "$jar" -b "$jar" -L "$base/login?rd=/")
  request=$(sed -n 's/.*name="request" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)
  csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)
  curl -sf -c "$jar" -b "$jar" -L -o /dev/null "$issuer/login" \
    --data-urlencode "request=$request" --data-urlencode "csrf=$csrf" \
    --data-urlencode username=alice --data-urlencode password=wonderland
  awk '$6 == "oidcgate_session" { print "oidcgate_session=" $7 }' "$jar"
}

echo "instructions per request (callgrind), $REQUESTS requests over $CONNS connections"
for variant in $VARIANTS; do
  port=$(free_port)
  case $variant in
    nginx)
      conf=$(nginx_conf proxy "upstream app { server 127.0.0.1:$up_port; keepalive 64; }
        server { listen 127.0.0.1:$port; location / { proxy_pass http://app;
          proxy_http_version 1.1; proxy_set_header Connection ''; } }" "daemon off; master_process off;")
      "${CALLGRIND[@]}" /usr/sbin/nginx -c "$conf" 2>"$work/nginx-valgrind.log" &
      pids+=($!)
      pid=$!
      wait_http "http://127.0.0.1:$port/"
      measure nginx "$pid" "http://127.0.0.1:$port/"
      ;;
    public)
      pid=$(gateway "$port" SKIP_AUTH_ROUTES='GET=/.*')
      measure public "$pid" "http://127.0.0.1:$port/"
      ;;
    cookie)
      pid=$(gateway "$port")
      cookie=$(sign_in "http://127.0.0.1:$port")
      [ -n "$cookie" ] || { echo "sign-in failed" >&2; exit 1; }
      measure cookie "$pid" "http://127.0.0.1:$port/" "Cookie: $cookie"
      ;;
    bearer)
      pid=$(gateway "$port")
      token=$(curl -sf -u demo-service:demo-service-secret -d grant_type=client_credentials \
        -d scope=read "$issuer/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
      measure bearer "$pid" "http://127.0.0.1:$port/" "Authorization: Bearer $token"
      ;;
    *) echo "unknown variant $variant" >&2; exit 2 ;;
  esac
  kill "$pid" 2>/dev/null || true
done
