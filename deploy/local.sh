#!/usr/bin/env bash
# The cluster without Docker: redis-server, N app replicas and the balancer, from a cargo build, on loopback.
#
# Run with:  deploy/local.sh [N]        (N replicas, default 3; Ctrl-C stops everything)
#
# Ports (each moves up to the next free one when taken, so a second copy or a busy 8080 still works):
#   balancer 8080 (LOCAL_PORT), its admin 8081, replicas 8001.., redis 6380 (not 6379, so it never meets a
#   system Redis). Everything binds 127.0.0.1 only.
# Env: LOCAL_PROFILE=dev builds without --release; RUST_LOG as usual. Logs go to a temp dir printed at start.
set -euo pipefail

n=${1:-3}
[[ $n =~ ^[1-9][0-9]?$ ]] || { echo "usage: $0 [N]   (N replicas, 1..99)" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
profile=${LOCAL_PROFILE:-release}
dir=$profile
[[ $profile == dev ]] && dir=debug

command -v redis-server >/dev/null || {
    echo "redis-server is not installed: apt-get install -y redis-server (Debian/Ubuntu) or brew install redis" >&2
    exit 2
}

port_busy() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
declare -A taken=()
free_port() {
    local port=$1
    while port_busy "$port" || [[ -n ${taken[$port]:-} ]]; do port=$((port + 1)); done
    taken[$port]=1
    echo "$port"
}

echo "building app and balancer ($profile)..." >&2
(cd "$root" && cargo build --quiet --profile "$profile" -p app -p balancer)
bin=$root/target/$dir

work=$(mktemp -d "${TMPDIR:-/tmp}/session-cluster-local.XXXXXX")
declare -a pids=()
stopping=0
stop_all() {
    ((stopping)) && return
    stopping=1
    echo >&2
    echo "stopping ${#pids[@]} processes..." >&2
    local pid
    # SIGTERM: replicas and the balancer drain in-flight requests; redis-server saves and exits.
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    echo "stopped; logs kept in $work" >&2
}
trap stop_all EXIT
trap 'exit 130' INT TERM

redis_port=$(free_port 6380)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --appendonly yes \
    --rename-command FLUSHALL "" --rename-command FLUSHDB "" >"$work/redis.log" 2>&1 &
pids+=($!)

# Every replica must sign cookies with the same secret; a fresh one per run is enough locally.
secret=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
upstreams=()
replica_ports=()
for ((i = 1; i <= n; i++)); do
    port=$(free_port $((8000 + i)))
    replica_ports+=("$port")
    upstreams+=("127.0.0.1:$port")
    LISTEN_ADDR=127.0.0.1:$port REDIS_URL=redis://127.0.0.1:$redis_port NODE_NAME=replica-$i \
        SESSION_SECRET=$secret COOKIE_SECURE=false \
        "$bin/app" >"$work/replica-$i.log" 2>&1 &
    pids+=($!)
done

balancer_port=$(free_port "${LOCAL_PORT:-8080}")
admin_port=$(free_port $((balancer_port + 1)))
LISTEN_ADDR=127.0.0.1:$balancer_port ADMIN_ADDR=127.0.0.1:$admin_port \
    UPSTREAMS=$(IFS=,; echo "${upstreams[*]}") \
    "$bin/balancer" >"$work/balancer.log" 2>&1 &
pids+=($!)

# Ready when the balancer has every replica in rotation (its checks of /readyz reach Redis) and
# routes a request. With only the first one in, a quick first test would never see a session
# hop between replicas. (The public port answers /readyz itself with 404.)
for ((t = 0; t < 300; t++)); do
    if curl -sf --max-time 1 "http://127.0.0.1:$admin_port/status" 2>/dev/null | grep -Eq "\"healthy\":$n[,}]" &&
        curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$balancer_port/" 2>/dev/null; then break; fi
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null || { echo "a process exited during start; logs in $work:" >&2; tail -n 5 "$work"/*.log >&2; exit 1; }
    done
    sleep 0.1
done

cat <<EOF
session-cluster is running: redis + $n replicas + balancer (Ctrl-C stops all)

  page        http://127.0.0.1:$balancer_port/
  admin       http://127.0.0.1:$admin_port/status   (/metrics, /healthz)
  replicas    $(for p in "${replica_ports[@]}"; do printf 'http://127.0.0.1:%s  ' "$p"; done)
  redis       redis-cli -p $redis_port keys '*'
  loadtest    cargo run --release -p loadtest -- --target http://127.0.0.1:$balancer_port
  browser     BROWSER_TARGET=http://127.0.0.1:$balancer_port cargo test -p system-tests --test browser
  logs        $work
EOF

# Until Ctrl-C, or until any process dies on its own (then stop the rest and say which).
set +e
wait -n "${pids[@]}"
status=$?
((stopping)) || echo "a process exited on its own (status $status); see $work" >&2
exit 1
