#!/usr/bin/env bash
# User-space instructions per proxied request: the balancer vs nginx, each counted by
# valgrind's callgrind over the same wrk load. Instruction counts do not depend on what else
# the machine is doing, so this comparison holds on a busy or noisy machine where req/s and CPU
# time do not (kernel time, the other part of a proxy's CPU, is not counted here).
#
#   balancer/bench/instructions.sh            # NO_BUILD=1 skips the release build
#   TOP=20 balancer/bench/instructions.sh     # more of the balancer's own functions
#   DUMPS=/tmp/dumps balancer/bench/instructions.sh   # keep both callgrind dumps there
#
# Setup as `vs_nginx.sh MODE=proxy`: three upstream ports on one nginx answering `return 200`;
# the balancer with 1 worker, nginx with 1 worker process (no master), both with upstream
# keep-alive; `wrk -t1 -c16 -d5s` on `/` after a 2 s warm-up; counting covers the 5 s run only.
# Requires: cargo, valgrind, nginx, wrk, curl. Loopback only; stops by itself.
set -euo pipefail

BASE_PORT=${BASE_PORT:-24000}
TOP=${TOP:-12}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/../../bench/common.sh"
need_tools "valgrind nginx wrk curl" valgrind callgrind_control callgrind_annotate nginx wrk curl
if [[ -z "${NO_BUILD:-}" ]]; then
    (cd "$ROOT" && cargo build --release -q -p balancer)
fi

UP=($((BASE_PORT + 11)) $((BASE_PORT + 12)) $((BASE_PORT + 13)))
LB_PORT=$((BASE_PORT + 80))
NGINX_PORT=$((BASE_PORT + 90))

nginx_conf() { # dir, server blocks... -> a config file for one worker in the foreground
    local dir=$1
    shift
    mkdir -p "$dir"
    {
        echo "worker_processes 1; daemon off; master_process off; pid $dir/nginx.pid;"
        echo "error_log $dir/error.log warn;"
        echo "events { worker_connections 4096; }"
        echo "http { access_log off; keepalive_requests 1000000;"
        for t in client_body proxy fastcgi uwsgi scgi; do echo "${t}_temp_path $dir/$t;"; done
        printf '%s\n' "$@"
        echo "}"
    } >"$dir/nginx.conf"
}

servers=()
for p in "${UP[@]}"; do servers+=("server { listen 127.0.0.1:$p; location / { return 200 \"ok\\n\"; } }"); done
nginx_conf "$WORK/upstream" "${servers[@]}"
nginx -p "$WORK/upstream" -e "$WORK/upstream/error.log" -c "$WORK/upstream/nginx.conf" &
PIDS+=($!)

nginx_conf "$WORK/nginx" \
    "upstream app { $(printf 'server 127.0.0.1:%s; ' "${UP[@]}") keepalive 256; }" \
    "server { listen 127.0.0.1:$NGINX_PORT; location / { proxy_pass http://app;
      proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Forwarded-Host \$host; } }"

# who -> "requests instructions"
count() {
    local who=$1 pid port out
    if [[ $who == balancer ]]; then
        port=$LB_PORT
        env WORKER_THREADS=1 INTERNAL_PATHS=none RUST_LOG=warn \
            UPSTREAMS="$(printf '127.0.0.1:%s,' "${UP[@]}" | sed 's/,$//')" \
            LISTEN_ADDR=127.0.0.1:$LB_PORT ADMIN_ADDR=127.0.0.1:$((BASE_PORT + 81)) \
            valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/$who.out" \
            "$TARGET_DIR/release/balancer" >"$WORK/$who.log" 2>&1 &
    else
        port=$NGINX_PORT
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/$who.out" \
            nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" \
            >"$WORK/$who.log" 2>&1 &
    fi
    pid=$!
    PIDS+=("$pid")
    wait_for "http://127.0.0.1:$port/" "$who" 30
    wrk -t1 -c16 -d2s "http://127.0.0.1:$port/" >/dev/null
    callgrind_control -i on "$pid" >/dev/null 2>&1
    out=$(wrk -t1 -c16 -d5s "http://127.0.0.1:$port/")
    callgrind_control -i off "$pid" >/dev/null 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local dump
    dump=$(ls -t "$WORK/$who.out".* | head -1)
    cp "$dump" "$WORK/$who.dump"
    if [[ -n "${DUMPS:-}" ]]; then mkdir -p "$DUMPS" && cp "$dump" "$DUMPS/$who.callgrind"; fi
    echo "$(awk '/requests in/{print $1}' <<<"$out") $(awk '/^totals:/{print $2}' "$dump")"
}

read -r lb_n lb_i <<<"$(count balancer)"
read -r ng_n ng_i <<<"$(count nginx)"
python3 - "$lb_n" "$lb_i" "$ng_n" "$ng_i" <<'PY'
import sys
lb_n, lb_i, ng_n, ng_i = map(int, sys.argv[1:])
lb, ng = lb_i / lb_n, ng_i / ng_n
print("user-space instructions per proxied request (callgrind, wrk -t1 -c16 -d5s on /):")
print(f"  balancer {lb:10,.0f}   ({lb_n:,} requests)")
print(f"  nginx    {ng:10,.0f}   ({ng_n:,} requests)")
print(f"  ratio balancer/nginx {lb / ng:.2f}x")
PY
echo
echo "balancer: top $TOP functions by their own instructions per request"
callgrind_annotate --inclusive=no "$WORK/balancer.dump" 2>/dev/null |
    sed -nE 's/^ *([0-9,]+) +\( *[0-9.]+%\) +(.*)$/\1 \2/p' | grep -v 'PROGRAM TOTALS' |
    head -n "$TOP" | awk -v n="$lb_n" '{
        v = $1; gsub(",", "", v); $1 = ""; sub(/^ +/, ""); sub(/ \[.*$/, "")
        printf "  %8.0f  %s\n", v / n, substr($0, 1, 110)
    }'
