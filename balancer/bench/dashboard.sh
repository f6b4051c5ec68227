#!/usr/bin/env bash
# Benchmark: what the dashboard costs the proxy. The balancer's CPU per request with its
# dashboard closed, then open (a client streaming /events, as an open page does), alternating
# in the same run, over three cheap upstreams (one nginx answering `return 200`), so what is
# measured is the proxy hop and the dashboard's bookkeeping, not the app.
#
# Run with (from anywhere in the repo):
#   balancer/bench/dashboard.sh
#   DURATION=10s CONNS=64 ROUNDS=5 PAGES=3 balancer/bench/dashboard.sh
#
# The bookkeeping a request pays (one atomic add into the dashboard's latency buckets, beside
# the counters /metrics already kept) is there in both halves; what an open page adds is the
# once-a-second rendering of the live part for each open page (PAGES of them, default 1),
# which runs on the admin runtime, counted here with the balancer's CPU.
#
# What it does:
#   1. builds the release balancer (NO_BUILD=1 skips this);
#   2. starts nginx with 3 upstream ports and the balancer (WORKER_THREADS=1) on loopback;
#   3. ROUNDS times: wrk with the dashboard closed, then with PAGES `curl -N /events` open,
#      swapping which goes first each round; reads the balancer's user+sys CPU from /proc;
#   4. prints medians of req/s, p99 and CPU µs per request for both, the open/closed ratio,
#      the events received, and the load average before and after (a busy machine blurs it).
# Requires: cargo, nginx, wrk, curl, python3. Loopback only; stops by itself.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
PAGES=${PAGES:-1}
BASE_PORT=${BASE_PORT:-22000} # below the ephemeral range, so TIME-WAIT sockets cannot hold them

# shellcheck source=bench/common.sh
source "$(dirname "$0")/../../bench/common.sh"
need_tools "nginx wrk curl python3" nginx wrk curl python3

UP_PORTS=($((BASE_PORT + 11)) $((BASE_PORT + 12)) $((BASE_PORT + 13)))
LB_PORT=$((BASE_PORT + 80))
LB_ADMIN=$((BASE_PORT + 81))

if [[ -z "${NO_BUILD:-}" ]]; then
    echo "== building the release balancer"
    (cd "$ROOT" && cargo build --release -q -p balancer)
fi

echo "== starting 3 cheap upstreams (one nginx, return 200) and the balancer (1 worker)"
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
    for i in 0 1 2; do
        # X-Served-By as the app sends it, so the dashboard shows replica names as in production.
        echo "    server { listen 127.0.0.1:${UP_PORTS[$i]}; location / { add_header X-Served-By up-$i; return 200 \"ok\\n\"; } }"
    done
    echo "}"
} >"$WORK/upstream.conf"
nginx -p "$WORK/upstream" -e "$WORK/upstream/error.log" -c "$WORK/upstream.conf" &
PIDS+=($!)
for p in "${UP_PORTS[@]}"; do wait_for "http://127.0.0.1:$p/readyz" "upstream on $p"; done

UPSTREAMS=$(printf '127.0.0.1:%s,' "${UP_PORTS[@]}")
WORKER_THREADS=1 UPSTREAMS="${UPSTREAMS%,}" LISTEN_ADDR=127.0.0.1:$LB_PORT ADMIN_ADDR=127.0.0.1:$LB_ADMIN \
    RUST_LOG=warn "$TARGET_DIR/release/balancer" >"$WORK/balancer.log" 2>&1 &
LB_PID=$!
PIDS+=($LB_PID)
wait_for "http://127.0.0.1:$LB_PORT/" "balancer"
wait_for "http://127.0.0.1:$LB_ADMIN/" "dashboard"

cpu_ticks() { # pid -> user+sys clock ticks
    local f
    read -r -a f <"/proc/$1/stat"
    echo $((f[13] + f[14]))
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}'; }

run_wrk() { # -> "rps p99_ms cpu_us_per_req"
    local c0 c1 out rps p99 n
    c0=$(cpu_ticks "$LB_PID")
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$LB_PORT/")
    c1=$(cpu_ticks "$LB_PID")
    rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out" | to_ms)
    n=$(awk '/requests in/{print $1}' <<<"$out")
    echo "$rps $p99 $(awk -v c=$((c1 - c0)) -v t="$TICK_US" -v n="$n" 'BEGIN{printf "%.2f", c*t/n}')"
}

run_open() { # wrk while PAGES clients stream /events -> "rps p99 cpu events"
    local pages=() i result events=0
    for ((i = 0; i < PAGES; i++)); do
        curl -sN "http://127.0.0.1:$LB_ADMIN/events" >"$WORK/events-$i.txt" &
        pages+=($!)
    done
    sleep 1.5 # every page connected and served its first event
    result=$(run_wrk)
    for pid in "${pages[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    for ((i = 0; i < PAGES; i++)); do
        events=$((events + $(grep -c '^event: live' "$WORK/events-$i.txt" || true)))
    done
    echo "$result $events"
}

wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$LB_PORT/" >/dev/null # warm-up
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS="$WORK/results.tsv"
echo "== $ROUNDS rounds x {closed, open with $PAGES page(s)}: wrk -t1 -c$CONNS -d$DURATION, load average $LOAD_BEFORE"
for ((round = 1; round <= ROUNDS; round++)); do
    order="closed open"
    ((round % 2 == 0)) && order="open closed"
    for state in $order; do
        if [[ $state == open ]]; then
            read -r rps p99 cpu events <<<"$(run_open)"
        else
            read -r rps p99 cpu <<<"$(run_wrk)"
            events=0
        fi
        printf '%s\t%s\t%s\t%s\t%s\n' "$state" "$rps" "$p99" "$cpu" "$events" >>"$RESULTS"
        printf '  round %d %-6s %10s req/s  p99 %7s ms  balancer CPU %6s us/req  events %s\n' \
            "$round" "$state" "$rps" "$p99" "$cpu" "$events"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== medians over $ROUNDS rounds (load average $LOAD_BEFORE before, $LOAD_AFTER after; $(nproc) cores)"
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
med = {}
for state in ("closed", "open"):
    runs = [r for r in rows if r[0] == state]
    med[state] = [statistics.median(float(r[i]) for r in runs) for i in (1, 2, 3)]
print("| dashboard | req/s | p99 ms | balancer CPU µs/req |")
print("|---|---|---|---|")
for state in ("closed", "open"):
    rps, p99, cpu = med[state]
    print(f"| {state} | {rps:,.0f} | {p99:.2f} | {cpu:.2f} |")
c, o = med["closed"], med["open"]
print(f"open/closed: CPU per request {o[2] / c[2]:.3f}, req/s {o[0] / c[0]:.3f}")
PY
