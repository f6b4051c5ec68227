#!/usr/bin/env bash
# Benchmark: the balancer vs nginx in front of the same 3 app replicas, same run, same wrk.
#
# Run with (from anywhere in the repo):
#   balancer/bench/vs_nginx.sh
#   DURATION=10s CONNS=64 ROUNDS=3 balancer/bench/vs_nginx.sh
#
# What it does:
#   1. builds release binaries (app, balancer); NO_BUILD=1 skips this;
#   2. starts redis-server, 3 app replicas, the balancer, and nginx (generated config:
#      1 worker, keepalive upstream pool, access log off) on loopback ports;
#   3. drives both with wrk on `/` and on `/session` (with session cookies), alternating which
#      proxy goes first each round, and prints medians, p50/p99 and balancer/nginx ratios;
#   4. measures RSS of the balancer and nginx while holding 1,000 open client connections
#      (idle keep-alive, and under wrk -c1000 load).
# Requires: cargo, redis-server, nginx, wrk, curl, python3. Loopback only; stops by itself.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
BASE_PORT=${BASE_PORT:-21000}   # below the ephemeral range, so TIME-WAIT sockets cannot hold them
BALANCER_THREADS=${BALANCER_THREADS:-}   # empty: tokio default (one per core)

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/lb-bench.XXXXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in redis-server nginx wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install redis-server nginx wrk curl python3)" >&2; exit 1; }
done
ulimit -n 65536 2>/dev/null || ulimit -n 8192

REDIS_PORT=$((BASE_PORT + 1))
APP_PORTS=($((BASE_PORT + 11)) $((BASE_PORT + 12)) $((BASE_PORT + 13)))
LB_PORT=$((BASE_PORT + 80))
LB_ADMIN=$((BASE_PORT + 81))
NGINX_PORT=$((BASE_PORT + 90))

if [[ -z "${NO_BUILD:-}" ]]; then
    echo "== building release binaries"
    (cd "$ROOT" && cargo build --release -q -p app -p balancer)
fi

wait_for() { # url, what
    for _ in $(seq 1 100); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "$2 did not come up ($1)" >&2
    exit 1
}

echo "== starting redis, 3 replicas, balancer, nginx"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$WORK/redis.log" &
PIDS+=($!)
sleep 0.3
for i in 0 1 2; do
    LISTEN_ADDR=127.0.0.1:${APP_PORTS[$i]} REDIS_URL=redis://127.0.0.1:$REDIS_PORT \
        NODE_NAME=bench-$i RUST_LOG=warn "$TARGET_DIR/release/app" 2>"$WORK/app-$i.log" &
    PIDS+=($!)
done
for p in "${APP_PORTS[@]}"; do wait_for "http://127.0.0.1:$p/readyz" "app on $p"; done

UPSTREAMS=$(printf '127.0.0.1:%s,' "${APP_PORTS[@]}"); UPSTREAMS=${UPSTREAMS%,}
env ${BALANCER_THREADS:+TOKIO_WORKER_THREADS=$BALANCER_THREADS} \
    UPSTREAMS=$UPSTREAMS LISTEN_ADDR=127.0.0.1:$LB_PORT ADMIN_ADDR=127.0.0.1:$LB_ADMIN \
    RUST_LOG=warn "$TARGET_DIR/release/balancer" 2>"$WORK/balancer.log" &
LB_PID=$!
PIDS+=($LB_PID)

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream app {
$(for p in "${APP_PORTS[@]}"; do echo "        server 127.0.0.1:$p max_fails=1 fail_timeout=10s;"; done)
        keepalive 256;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_next_upstream error timeout;
        }
    }
}
EOF
nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
wait_for "http://127.0.0.1:$LB_PORT/healthz" "balancer"
wait_for "http://127.0.0.1:$NGINX_PORT/healthz" "nginx"

# Session cookies for /session: 256 sessions so concurrent requests rarely share one (the
# app serialises writes per session; we measure the proxies, not that lock).
for _ in $(seq 1 256); do
    curl -s -D - -o /dev/null "http://127.0.0.1:${APP_PORTS[0]}/session" \
        | tr -d '\r' | awk -F'[:;] *' 'tolower($1)=="set-cookie"{print $2; exit}'
done >"$WORK/cookies.txt"
[[ $(wc -l <"$WORK/cookies.txt") -eq 256 ]] || { echo "could not create session cookies" >&2; exit 1; }
cat >"$WORK/session.lua" <<EOF
local cookies = {}
for line in io.lines("$WORK/cookies.txt") do cookies[#cookies + 1] = line end
local i = math.random(#cookies)
request = function()
    i = i % #cookies + 1
    return wrk.format("GET", "/session", { ["Cookie"] = cookies[i] })
end
EOF

# wrk -> "rps p50_ms p99_ms errors"
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}'; }
run_wrk() { # port route
    local args=(-t"$THREADS" -c"$CONNS" -d"$DURATION" --latency)
    [[ $2 == /session ]] && args+=(-s "$WORK/session.lua")
    local out; out=$(wrk "${args[@]}" "http://127.0.0.1:$1$2")
    local rps p50 p99 errs
    rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out" | to_ms)
    p99=$(awk '$1=="99%"{print $2}' <<<"$out" | to_ms)
    errs=$(awk '/Non-2xx|Socket errors/{s=s $0 "; "} END{print (s==""?"none":s)}' <<<"$out")
    echo "$rps $p50 $p99 $errs"
}

echo "== warm-up"
for port in $LB_PORT $NGINX_PORT; do wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null; done

RESULTS="$WORK/results.tsv"
echo "== $ROUNDS rounds x {/, /session} x {balancer, nginx}: wrk -t$THREADS -c$CONNS -d$DURATION"
for round in $(seq 1 "$ROUNDS"); do
    for route in / /session; do
        if (( round % 2 )); then order="balancer nginx"; else order="nginx balancer"; fi
        for who in $order; do
            port=$LB_PORT; [[ $who == nginx ]] && port=$NGINX_PORT
            read -r rps p50 p99 errs <<<"$(run_wrk "$port" "$route")"
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$route" "$who" "$rps" "$p50" "$p99" "$errs" >>"$RESULTS"
            printf '  round %d %-8s %-9s %10s req/s  p50 %7s ms  p99 %7s ms  errors: %s\n' \
                "$round" "$route" "$who" "$rps" "$p50" "$p99" "$errs"
        done
    done
done

echo
echo "== medians over $ROUNDS rounds"
python3 - "$RESULTS" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
med = {}
for route, who, rps, p50, p99, _ in rows:
    med.setdefault((route, who), []).append((float(rps), float(p50), float(p99)))
print(f"| route | proxy | req/s | p50 ms | p99 ms |")
print(f"|---|---|---|---|---|")
summary = []
for route in ("/", "/session"):
    vals = {}
    for who in ("balancer", "nginx"):
        runs = med[(route, who)]
        vals[who] = tuple(statistics.median(r[i] for r in runs) for i in range(3))
        print(f"| `{route}` | {who} | {vals[who][0]:,.0f} | {vals[who][1]:.2f} | {vals[who][2]:.2f} |")
    b, n = vals["balancer"], vals["nginx"]
    summary.append(f"`{route}`: throughput ratio balancer/nginx = {b[0]/n[0]:.2f}, "
                   f"p50 {b[1]:.2f} vs {n[1]:.2f} ms, p99 {b[2]:.2f} vs {n[2]:.2f} ms "
                   f"(p99 ratio {b[2]/n[2]:.2f})")
print()
for s in summary:
    print(s)
EOF

rss_kb() { # pid... -> summed VmRSS in kB
    local total=0
    for pid in "$@"; do total=$((total + $(awk '/^VmRSS/{print $2}' "/proc/$pid/status"))); done
    echo "$total"
}
mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
nginx_pids() { echo "$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"; }

echo
echo "== memory with 1,000 open client connections"
# Idle: 1,000 keep-alive connections that each made one request and stay open.
hold_idle() { # port seconds
    python3 - "$1" "$2" <<'EOF' &
import socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
conns = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
    conns.append(s)
for s in conns:
    s.settimeout(5)
    s.recv(4096)
time.sleep(secs)
EOF
    echo $!
}
for who in balancer nginx; do
    port=$LB_PORT; [[ $who == nginx ]] && port=$NGINX_PORT
    before=$( [[ $who == balancer ]] && rss_kb "$LB_PID" || rss_kb $(nginx_pids) )
    holder=$(hold_idle "$port" 4)
    sleep 3
    idle=$( [[ $who == balancer ]] && rss_kb "$LB_PID" || rss_kb $(nginx_pids) )
    wait "$holder" || true
    wrk -t"$THREADS" -c1000 -d6s "http://127.0.0.1:$port/healthz" >"$WORK/wrk1000-$who.txt" &
    loader=$!
    sleep 4
    loaded=$( [[ $who == balancer ]] && rss_kb "$LB_PID" || rss_kb $(nginx_pids) )
    wait "$loader" || true
    printf '  %-8s RSS before %6.1f MB | 1,000 idle keep-alive conns %6.1f MB | 1,000 conns under wrk load %6.1f MB\n' \
        "$who" "$(mb "$before")" "$(mb "$idle")" "$(mb "$loaded")"
done
echo "  (nginx: master + 1 worker summed; balancer: one process)"
