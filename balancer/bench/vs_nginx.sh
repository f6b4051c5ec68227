#!/usr/bin/env bash
# Benchmark: the balancer vs nginx in front of the same 3 app replicas, same run, same wrk.
#
# Run with (from anywhere in the repo):
#   balancer/bench/vs_nginx.sh
#   DURATION=10s CONNS=64 ROUNDS=3 balancer/bench/vs_nginx.sh
#   MODE=proxy balancer/bench/vs_nginx.sh      # the proxy alone, over three cheap upstreams
#
# MODE=app (default): 3 app replicas on one redis-server behind both proxies.
# MODE=proxy: the upstreams are three ports of a separate nginx answering `return 200`, both
#   proxies run 1 worker with upstream keep-alive, and the route is `/`: what is measured is
#   the proxy hop itself. It also counts new upstream connections per 1,000 requests (from the
#   upstream nginx's accept counter) for both proxies.
# BALANCER_ENV="NAME=value ..." adds environment for the balancer only (e.g. allocator tunables).
# PROFILE=1 adds, for the balancer, `strace -c` (syscalls per request) and a `perf` summary
#   (where its user-space time goes) over one extra wrk run.
#
# What it does:
#   1. builds release binaries (app, balancer); NO_BUILD=1 skips this;
#   2. starts redis-server, 3 app replicas, the balancer, and nginx (generated config:
#      1 worker, keepalive upstream pool, access log off) on loopback ports;
#   3. measures RSS of both with 1,000 idle keep-alive client connections open;
#   4. drives both with wrk on `/` and on `/session` (with session cookies), alternating which
#      proxy goes first each round, and prints medians of req/s, p50/p99 and the proxy's own
#      CPU time per request, with balancer/nginx ratios;
#   5. measures RSS of both while wrk keeps 1,000 connections busy.
# Requires: cargo, redis-server, nginx, wrk, curl, python3. Loopback only; stops by itself.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
MODE=${MODE:-app}
if [[ $MODE == proxy ]]; then
    ROUTES=${ROUTES:-"/"}
    BALANCER_THREADS=${BALANCER_THREADS:-1}
fi
ROUTES=${ROUTES:-"/ /session /healthz"} # /healthz: almost no app work, isolates the proxy hop
BASE_PORT=${BASE_PORT:-21000} # below the ephemeral range, so TIME-WAIT sockets cannot hold them
BALANCER_THREADS=${BALANCER_THREADS:-} # empty: the balancer default (one worker per core); 1 = like nginx here

# shellcheck source=bench/common.sh
source "$(dirname "$0")/../../bench/common.sh"
need_tools "redis-server nginx wrk curl python3" nginx wrk curl python3 $([[ $MODE == app ]] && echo redis-server)
ulimit -n 65536 2>/dev/null || ulimit -n 8192

REDIS_PORT=$((BASE_PORT + 1))
APP_PORTS=($((BASE_PORT + 11)) $((BASE_PORT + 12)) $((BASE_PORT + 13)))
UPSTREAM_STATUS=$((BASE_PORT + 14))
LB_PORT=$((BASE_PORT + 80))
LB_ADMIN=$((BASE_PORT + 81))
NGINX_PORT=$((BASE_PORT + 90))

if [[ -z "${NO_BUILD:-}" ]]; then
    echo "== building release binaries"
    (cd "$ROOT" && cargo build --release -q -p app -p balancer)
fi


if [[ $MODE == app ]]; then
    echo "== starting redis, 3 replicas, balancer, nginx"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --logfile "$WORK/redis.log" &
    PIDS+=($!)
    sleep 0.3
    for i in 0 1 2; do
        LISTEN_ADDR=127.0.0.1:${APP_PORTS[$i]} REDIS_URL=redis://127.0.0.1:$REDIS_PORT \
            NODE_NAME=bench-$i RUST_LOG=warn "$TARGET_DIR/release/app" >"$WORK/app-$i.log" 2>&1 &
        PIDS+=($!)
    done
    for p in "${APP_PORTS[@]}"; do wait_for "http://127.0.0.1:$p/readyz" "app on $p"; done
else
    echo "== starting 3 cheap upstreams (one nginx, return 200), balancer, nginx"
    mkdir -p "$WORK/upstream"
    {
        echo "worker_processes 1;"
        echo "daemon off;"
        echo "pid $WORK/upstream.pid;"
        echo "error_log $WORK/upstream/error.log warn;"
        echo "events { worker_connections 4096; }"
        echo "http {"
        echo "    access_log off;"
        echo "    keepalive_requests 1000000;"
        for t in client_body proxy fastcgi uwsgi scgi; do echo "    ${t}_temp_path $WORK/upstream/$t;"; done
        for p in "${APP_PORTS[@]}"; do
            echo "    server { listen 127.0.0.1:$p; location / { return 200 \"ok\\n\"; } }"
        done
        echo "    server { listen 127.0.0.1:$UPSTREAM_STATUS; location / { stub_status; } }"
        echo "}"
    } >"$WORK/upstream.conf"
    nginx -p "$WORK/upstream" -e "$WORK/upstream/error.log" -c "$WORK/upstream.conf" &
    PIDS+=($!)
    for p in "${APP_PORTS[@]}"; do wait_for "http://127.0.0.1:$p/readyz" "upstream on $p"; done
fi

UPSTREAMS=$(printf '127.0.0.1:%s,' "${APP_PORTS[@]}")
UPSTREAMS=${UPSTREAMS%,}
# INTERNAL_PATHS=none: /healthz is proxied like nginx does, as the cheapest app route.
env ${BALANCER_THREADS:+WORKER_THREADS=$BALANCER_THREADS} INTERNAL_PATHS=none ${BALANCER_ENV:-} \
    UPSTREAMS="$UPSTREAMS" LISTEN_ADDR=127.0.0.1:$LB_PORT ADMIN_ADDR=127.0.0.1:$LB_ADMIN \
    RUST_LOG=warn "$TARGET_DIR/release/balancer" >"$WORK/balancer.log" 2>&1 &
LB_PID=$!
PIDS+=($LB_PID)

mkdir -p "$WORK/nginx"
{
    echo "worker_processes 1;"
    echo "daemon off;"
    echo "pid $WORK/nginx.pid;"
    echo "error_log $WORK/nginx/error.log warn;"
    echo "events { worker_connections 4096; }"
    echo "http {"
    echo "    access_log off;"
    echo "    keepalive_requests 1000000;"
    for t in client_body proxy fastcgi uwsgi scgi; do echo "    ${t}_temp_path $WORK/nginx/$t;"; done
    echo "    upstream app {"
    for p in "${APP_PORTS[@]}"; do echo "        server 127.0.0.1:$p max_fails=1 fail_timeout=10s;"; done
    echo "        keepalive 256;"
    echo "    }"
    echo "    server {"
    echo "        listen 127.0.0.1:$NGINX_PORT;"
    echo "        location / {"
    echo "            proxy_pass http://app;"
    echo "            proxy_http_version 1.1;"
    echo "            proxy_set_header Connection \"\";"
    echo "            proxy_set_header Host \$host;"
    echo "            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;"
    echo "            proxy_set_header X-Forwarded-Proto \$scheme;"
    echo "            proxy_set_header X-Forwarded-Host \$host;"
    echo "            proxy_next_upstream error timeout;"
    echo "        }"
    echo "    }"
    echo "}"
} >"$WORK/nginx.conf"
nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
wait_for "http://127.0.0.1:$LB_PORT/healthz" "balancer"
wait_for "http://127.0.0.1:$NGINX_PORT/healthz" "nginx"

# Session cookies for /session (app mode): 256 sessions so concurrent requests rarely share one (the
# app serialises writes per session; we measure the proxies, not that lock).
if [[ $MODE == app ]]; then
    for _ in $(seq 1 256); do
        curl -s -D - -o /dev/null "http://127.0.0.1:${APP_PORTS[0]}/session" |
            tr -d '\r' | awk -F'[:;] *' 'tolower($1)=="set-cookie"{print $2; exit}'
    done >"$WORK/cookies.txt"
    [[ $(wc -l <"$WORK/cookies.txt") -eq 256 ]] || {
        echo "could not create session cookies" >&2
        exit 1
    }
fi
{
    echo 'local cookies = {}'
    echo "for line in io.lines(\"$WORK/cookies.txt\") do cookies[#cookies + 1] = line end"
    echo 'local i = math.random(#cookies)'
    echo 'request = function()'
    echo '    i = i % #cookies + 1'
    echo '    return wrk.format("GET", "/session", { ["Cookie"] = cookies[i] })'
    echo 'end'
} >"$WORK/session.lua"

# 1,000 keep-alive connections that each make one request, then stay open and idle.
{
    echo 'import socket, sys, time'
    echo 'port, secs, path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]'
    echo 'conns = []'
    echo 'for _ in range(1000):'
    echo '    s = socket.create_connection(("127.0.0.1", port))'
    echo '    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\n\r\n")'
    echo '    conns.append(s)'
    echo 'for s in conns:'
    echo '    s.settimeout(5)'
    echo '    s.recv(4096)'
    echo 'time.sleep(secs)'
} >"$WORK/hold.py"

proxy_pids() { # who -> pids to account (nginx: master + worker)
    if [[ $1 == balancer ]]; then echo "$LB_PID"; else echo "$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"; fi
}
cpu_ticks() { # pids -> user+sys clock ticks
    local t=0 pid f
    for pid in "$@"; do
        read -r -a f <"/proc/$pid/stat"
        t=$((t + f[13] + f[14]))
    done
    echo "$t"
}
rss_mb() { # pids -> summed VmRSS in MB
    local total=0 pid
    for pid in "$@"; do total=$((total + $(awk '/^VmRSS/{print $2}' "/proc/$pid/status"))); done
    awk -v k="$total" 'BEGIN{printf "%.1f", k/1024}'
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}'; }

upstream_accepts() { # the upstream nginx's accepted connections so far (proxy mode), else 0
    if [[ $MODE == proxy ]]; then
        curl -fs "http://127.0.0.1:$UPSTREAM_STATUS/" | awk 'NR==3{print $1}'
    else
        echo 0
    fi
}

run_wrk() { # who port route -> "rps p50_ms p99_ms cpu_us_per_req new_upstream_conns_per_1000 errors"
    local args=(-t"$THREADS" -c"$CONNS" -d"$DURATION" --latency)
    [[ $3 == /session ]] && args+=(-s "$WORK/session.lua")
    local pids c0 c1 a0 a1 out rps p50 p99 n cpu errs reuse
    read -r -a pids <<<"$(proxy_pids "$1")"
    a0=$(upstream_accepts)
    c0=$(cpu_ticks "${pids[@]}")
    out=$(wrk "${args[@]}" "http://127.0.0.1:$2$3")
    c1=$(cpu_ticks "${pids[@]}")
    a1=$(upstream_accepts)
    rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out" | to_ms)
    p99=$(awk '$1=="99%"{print $2}' <<<"$out" | to_ms)
    n=$(awk '/requests in/{print $1}' <<<"$out")
    cpu=$(awk -v c=$((c1 - c0)) -v t="$TICK_US" -v n="$n" 'BEGIN{printf "%.1f", c*t/n}')
    reuse=-1 # not measured in app mode
    [[ $MODE == proxy ]] && reuse=$(awk -v a=$((a1 - a0)) -v n="$n" 'BEGIN{printf "%.2f", a*1000/n}')
    errs=$(awk '/Non-2xx|Socket errors/{s=s $0 "; "} END{print (s==""?"none":s)}' <<<"$out")
    echo "$rps $p50 $p99 $cpu $reuse $errs"
}

HOLD_PATH=/healthz
[[ $MODE == proxy ]] && HOLD_PATH=/
MEM="$WORK/mem.txt"
mem_idle() { # who port
    local pids holder before idle
    read -r -a pids <<<"$(proxy_pids "$1")"
    before=$(rss_mb "${pids[@]}")
    # Measured once the connections have idled a few seconds (steady state: the balancer parks
    # an idle connection after 500 ms and returns a settled burst's memory after about 1 s).
    python3 "$WORK/hold.py" "$2" 6 "$HOLD_PATH" &
    holder=$!
    sleep 5
    idle=$(rss_mb "${pids[@]}")
    wait "$holder" || true
    printf '  %-8s RSS %6s MB before, %6s MB with 1,000 idle keep-alive client connections\n' \
        "$1" "$before" "$idle" | tee -a "$MEM"
}
mem_load() { # who port
    local pids loader loaded
    read -r -a pids <<<"$(proxy_pids "$1")"
    wrk -t"$THREADS" -c1000 -d6s "http://127.0.0.1:$2$HOLD_PATH" >"$WORK/wrk1000-$1.txt" &
    loader=$!
    sleep 4
    loaded=$(rss_mb "${pids[@]}")
    wait "$loader" || true
    printf '  %-8s RSS %6s MB with 1,000 client connections under wrk load (%s req/s)\n' \
        "$1" "$loaded" "$(awk '/^Requests\/sec/{print $2}' "$WORK/wrk1000-$1.txt")" | tee -a "$MEM"
}

echo "== warm-up"
for port in $LB_PORT $NGINX_PORT; do wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null; done

echo "== memory with 1,000 open idle client connections (after warm-up)"
mem_idle balancer "$LB_PORT"
mem_idle nginx "$NGINX_PORT"

RESULTS="$WORK/results.tsv"
echo "== $ROUNDS rounds x {$ROUTES} x {balancer, nginx}: wrk -t$THREADS -c$CONNS -d$DURATION"
for round in $(seq 1 "$ROUNDS"); do
    for route in $ROUTES; do
        if ((round % 2)); then order="balancer nginx"; else order="nginx balancer"; fi
        for who in $order; do
            port=$LB_PORT
            [[ $who == nginx ]] && port=$NGINX_PORT
            read -r rps p50 p99 cpu reuse errs <<<"$(run_wrk "$who" "$port" "$route")"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$route" "$who" "$rps" "$p50" "$p99" "$cpu" "$reuse" "$errs" >>"$RESULTS"
            printf '  round %d %-8s %-9s %10s req/s  p50 %7s ms  p99 %7s ms  proxy CPU %5s us/req  new upstream conns/1000 req %s  errors: %s\n' \
                "$round" "$route" "$who" "$rps" "$p50" "$p99" "$cpu" "$reuse" "$errs"
        done
    done
done

echo
echo "== memory with 1,000 client connections under load"
mem_load balancer "$LB_PORT"
mem_load nginx "$NGINX_PORT"
echo "  (nginx: master + 1 worker summed; balancer: one process)"

echo
echo "== medians over $ROUNDS rounds (wrk -t$THREADS -c$CONNS -d$DURATION)"
python3 - "$RESULTS" "$ROUTES" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
runs = {}
for route, who, rps, p50, p99, cpu, reuse, _ in rows:
    runs.setdefault((route, who), []).append((float(rps), float(p50), float(p99), float(cpu), float(reuse)))
print("| route | proxy | req/s | p50 ms | p99 ms | proxy CPU µs/req | new upstream conns per 1,000 req |")
print("|---|---|---|---|---|---|---|")
lines = []
for route in sys.argv[2].split():
    med = {}
    for who in ("balancer", "nginx"):
        med[who] = [statistics.median(r[i] for r in runs[(route, who)]) for i in range(5)]
        rps, p50, p99, cpu, reuse = med[who]
        shown = f"{reuse:.2f}" if reuse >= 0 else "n/a"
        print(f"| `{route}` | {who} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.1f} | {shown} |")
    b, n = med["balancer"], med["nginx"]
    lines.append(f"`{route}`: req/s ratio balancer/nginx {b[0]/n[0]:.2f}; p99 {b[2]:.2f} vs {n[2]:.2f} ms "
                 f"(ratio {b[2]/n[2]:.2f}); p50 {b[1]:.2f} vs {n[1]:.2f} ms; proxy CPU/req ratio {b[3]/n[3]:.2f}")
print()
print("\n".join(lines))
PY
echo
cat "$MEM"

if [[ -n "${PROFILE:-}" ]]; then
    route=${ROUTES%% *}
    echo
    echo "== balancer syscalls per request (strace -c, wrk -c$CONNS -d5s $route; strace slows it down)"
    strace -c -f -p "$LB_PID" -o "$WORK/strace.txt" &
    tracer=$!
    sleep 0.5
    n=$(wrk -t"$THREADS" -c"$CONNS" -d5s "http://127.0.0.1:$LB_PORT$route" | awk '/requests in/{print $1}')
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {printf "  %-16s %6.2f per request\n", $NF, $4/n}' "$WORK/strace.txt" | sort -k2 -nr | head -8
    echo
    echo "== balancer perf profile (wrk -c$CONNS -d5s $route): top symbols"
    if perf record -F 999 ${PERF_ARGS:-} -p "$LB_PID" -o "$WORK/perf.data" -- sleep 5 >/dev/null 2>&1 &
        sleep 0.2
        wrk -t"$THREADS" -c"$CONNS" -d5s "http://127.0.0.1:$LB_PORT$route" >/dev/null
        wait $!
    then
        perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
            grep -E '^ +[0-9]' | head -40 | cut -c1-150
        perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -6
    else
        echo "  (perf not available here)"
    fi
fi
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine competes for the same cores)"
