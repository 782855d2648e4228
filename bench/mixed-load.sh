#!/usr/bin/env bash
# Mixed load on one gateway for a bounded time (issue 7: no deadlock, memory ceiling recorded).
# The built-in IdP issues 30-second access tokens, so sessions keep refreshing; the gateway keeps
# sessions in Redis and passes the access token upstream. At the same time, for DURATION:
#   session     wrk -c16 with a signed-in session cookie (refreshes under way)
#   bearer      wrk -c16 with a valid bearer token
#   unknown-kid wrk -c8 with a token naming a kid the IdP never had (401s; JWKS refetches are
#               bounded by the 5 s cooldown)
#   logins      a loop of full sign-ins through the IdP's form, each followed by /logout
#   probes      a loop of /readyz and /metrics
# The gateway's resident memory is sampled every second. Afterwards the script checks that the
# gateway still answers /healthz within 2 s (no deadlock) and that a fresh sign-in still works,
# and prints request counts, error counts, the JWKS fetch count and the memory ceiling.
#
#   bench/mixed-load.sh                # 60 s
#   DURATION=20 bench/mixed-load.sh
#
# Needs wrk, nginx, redis-server, curl (apt-get installs the missing ones). Stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-60}
SECRET=bench-mixed-session-secret-of-32-bytes-at-least

missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --locked >&2
BIN=target/release/oidcgate

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

up_port=$(free_port)
cat >"$work/nginx.conf" <<EOF
worker_processes 1; pid $work/nginx.pid; error_log $work/error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $work; proxy_temp_path $work;
  fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 127.0.0.1:$up_port; location / { default_type text/plain; return 200 'ok'; } } }
EOF
/usr/sbin/nginx -c "$work/nginx.conf" -p "$work" >&2

"$BIN" idp --listen 127.0.0.1:0 --access-token-ttl 30 >"$work/idp.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on http' "$work/idp.out" 2>/dev/null && break; sleep 0.1; done
issuer=$(sed -n 's/^listening on //p' "$work/idp.out" | head -1)
[ -n "$issuer" ] || { echo "the IdP did not start" >&2; exit 1; }
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

gw_port=$(free_port)
base="http://127.0.0.1:$gw_port"
env RUST_LOG=warn OIDC_ISSUER="$issuer" OIDC_CLIENT_ID=demo OIDC_CLIENT_SECRET=demo-secret \
  OIDC_REDIRECT_URI="$base/auth/callback" OIDC_AUDIENCE=demo-api SESSION_SECRET="$SECRET" \
  COOKIE_SECURE=false UPSTREAM_URL="http://127.0.0.1:$up_port" LISTEN_ADDR="127.0.0.1:$gw_port" \
  SESSION_STORE=redis REDIS_URL="redis://127.0.0.1:$redis_port/0" PASS_ACCESS_TOKEN=true \
  "$BIN" serve >"$work/gw.out" 2>&1 &
gw_pid=$!
pids+=($gw_pid)
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

# sign_in JAR: signs alice in through the IdP's form; prints the session cookie.
sign_in() {
  local jar=$1 page request csrf
  rm -f "$jar"
  page=$(curl -sf -c "$jar" -b "$jar" -L "$base/login?rd=/")
  request=$(sed -n 's/.*name="request" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)
  csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)
  curl -sf -c "$jar" -b "$jar" -L -o /dev/null "$issuer/login" \
    --data-urlencode "request=$request" --data-urlencode "csrf=$csrf" \
    --data-urlencode username=alice --data-urlencode password=wonderland
  awk '$6 == "oidcgate_session" { print "oidcgate_session=" $7 }' "$jar"
}
cookie=$(sign_in "$work/jar")
[ -n "$cookie" ] || { echo "sign-in failed" >&2; exit 1; }
token=$(curl -sf -u demo-service:demo-service-secret -d grant_type=client_credentials -d scope=read \
  "$issuer/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# The same token with its header naming a kid the IdP never had.
unknown=$(python3 - "$token" <<'EOF'
import base64, json, sys
h, p, s = sys.argv[1].split(".")
header = json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))
header["kid"] = "never-issued"
enc = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
print(f"{enc}.{p}.{s}")
EOF
)

echo "mixed load for ${DURATION}s on $base (gateway pid $gw_pid)"
rss_max=0
(
  end=$((SECONDS + DURATION))
  while [ $SECONDS -lt $end ]; do
    awk '$1 == "VmRSS:" { print $2 }' "/proc/$gw_pid/status" 2>/dev/null
    sleep 1
  done
) >"$work/rss" &
sampler=$!
wrk -t1 -c16 -d"${DURATION}s" -H "Cookie: $cookie" "$base/" >"$work/session.wrk" 2>&1 &
w1=$!
wrk -t1 -c16 -d"${DURATION}s" -H "Authorization: Bearer $token" "$base/" >"$work/bearer.wrk" 2>&1 &
w2=$!
wrk -t1 -c8 -d"${DURATION}s" -H "Authorization: Bearer $unknown" "$base/" >"$work/unknown.wrk" 2>&1 &
w3=$!
(
  end=$((SECONDS + DURATION)); ok=0; failed=0
  while [ $SECONDS -lt $end ]; do
    c=$(sign_in "$work/jar-loop" || true)
    if [ -n "$c" ] && curl -sf -o /dev/null -H "Cookie: $c" "$base/"; then
      ok=$((ok + 1))
      curl -s -o /dev/null -H "Cookie: $c" "$base/logout"
    else
      failed=$((failed + 1))
    fi
  done
  echo "$ok $failed"
) >"$work/logins" &
w4=$!
(
  end=$((SECONDS + DURATION)); n=0; bad=0
  while [ $SECONDS -lt $end ]; do
    curl -s -o /dev/null --max-time 2 "$base/readyz" || bad=$((bad + 1))
    curl -sf -o /dev/null --max-time 2 "$base/metrics" || bad=$((bad + 1))
    n=$((n + 2)); sleep 0.2
  done
  echo "$n $bad"
) >"$work/probes" &
w5=$!
wait $w1 $w2 $w3 $w4 $w5 $sampler

# requests and non-2xx of a wrk run
counts() {
  local total non2xx
  total=$(awk '/requests in/ { print $1 }' "$1")
  non2xx=$(awk '/Non-2xx/ { print $5 }' "$1")
  echo "${total:-0} requests, ${non2xx:-0} non-2xx"
}
echo "session      $(counts "$work/session.wrk")"
echo "bearer       $(counts "$work/bearer.wrk")"
echo "unknown-kid  $(counts "$work/unknown.wrk") (all expected 401)"
read -r ok failed <"$work/logins"
echo "logins       $ok full sign-in + request + logout, $failed failed"
read -r n bad <"$work/probes"
echo "probes       $n /readyz + /metrics, $bad without an answer within 2 s"
fetches=$(curl -sf "$base/metrics" | awk '$1 == "oidcgate_jwks_fetches" { print $2 }')
echo "JWKS fetches $fetches in ${DURATION}s (unknown-kid refetches at most one per 5 s)"
refreshes=$(curl -sf "$base/metrics" | grep '^oidcgate_session_refreshes' | tr '\n' ' ')
echo "refreshes    $refreshes"
rss_max=$(sort -n "$work/rss" | tail -1)
rss_idle=$(head -1 "$work/rss")
echo "memory       VmRSS first sample $((rss_idle / 1024)) MiB, ceiling $((rss_max / 1024)) MiB, VmHWM $(($(awk '$1 == "VmHWM:" { print $2 }' "/proc/$gw_pid/status") / 1024)) MiB"
# No deadlock: the gateway still answers at once, and a new sign-in works.
curl -sf --max-time 2 -o /dev/null "$base/healthz" || { echo "FAIL: /healthz did not answer within 2 s" >&2; exit 1; }
after=$(sign_in "$work/jar-after")
curl -sf --max-time 2 -o /dev/null -H "Cookie: $after" "$base/" || { echo "FAIL: no sign-in after the load" >&2; exit 1; }
grep -q panicked "$work/gw.out" && { echo "FAIL: the gateway panicked" >&2; cat "$work/gw.out" >&2; exit 1; }
echo "after        /healthz answered, a new sign-in works, no panic in the gateway's log"
# The gateway's distinct warnings (timestamps cut), most frequent first: what "unavailable" or
# any other trouble was.
warnings=$(grep ' WARN ' "$work/gw.out" | sed 's/^.* WARN //' | sort | uniq -c | sort -rn | head -5 || true)
echo "warnings     ${warnings:-none}"
