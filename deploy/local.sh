#!/usr/bin/env bash
# The cluster without Docker: redis-server, N app replicas and the balancer, from a cargo build, on loopback.
#
# Run with:  deploy/local.sh [N]        (N replicas, default 3; Ctrl-C stops everything)
#
# Ports (each moves up to the next free one when taken, so a second copy or a busy 8080 still works, and every
# command it prints names the ports it chose):
#   balancer 8080 (LOCAL_PORT), its admin 8081, replicas 8001.., redis 6380 (not 6379, so it never meets a
#   system Redis). Everything binds 127.0.0.1 only.
# It builds the app, the balancer and the loadtest the way the commands it prints build them (release, one
# `cargo build` per command), so `cargo run --release -p loadtest` afterwards starts without compiling.
# Env: LOCAL_PROFILE=dev builds without --release; CARGO_TARGET_DIR as cargo reads it; RUST_LOG as usual.
# Logs go to a temp dir printed at start.
set -euo pipefail

n=${1:-3}
[[ $n =~ ^[1-9][0-9]?$ ]] || { echo "usage: $0 [N]   (N replicas, 1..99)" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
profile=${LOCAL_PROFILE:-release}
dir=$profile
build_flags=(--profile "$profile")
run_cmd="cargo run --profile $profile -p loadtest --"
case $profile in
    release) build_flags=(--release); run_cmd="cargo run --release -p loadtest --" ;;
    dev) dir=debug; build_flags=(); run_cmd="cargo run -p loadtest --" ;;
esac

command -v redis-server >/dev/null || {
    echo "redis-server is not installed: apt-get install -y redis-server (Debian/Ubuntu) or brew install redis" >&2
    exit 2
}

port_busy() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Ports this copy already handed out: one of them may not be bound yet (a replica still starting), so a
# busy-check alone would give it out twice. free_port sets $port rather than printing it: inside $(...) it
# would run in a subshell, and its record of taken ports would be lost with it.
declare -A taken=()
free_port() {
    port=$1
    while port_busy "$port" || [[ -n ${taken[$port]:-} ]]; do port=$((port + 1)); done
    taken[$port]=1
}

# Each command builds what a later command runs, with the same packages selected: cargo unifies features across
# the packages of one invocation, so building the loadtest together with the others would give it other features
# than `cargo run --release -p loadtest` asks for, and that run would compile again. Cargo's own progress shows.
cargo_build() {
    echo "building $* ($profile; the first build takes a few minutes)..." >&2
    (cd "$root" && cargo build "${build_flags[@]}" "$@")
}
cargo_build -p app -p balancer
cargo_build -p loadtest
target_dir=${CARGO_TARGET_DIR:-$root/target}
[[ $target_dir == /* ]] || target_dir=$root/$target_dir
bin=$target_dir/$dir

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

free_port 6380
redis_port=$port
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --appendonly yes \
    --rename-command FLUSHALL "" --rename-command FLUSHDB "" >"$work/redis.log" 2>&1 &
pids+=($!)

# Every replica must sign cookies with the same secret; a fresh one per run is enough locally.
secret=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
# Chosen before the replicas start: their page links to the balancer's dashboard (DASHBOARD_URL).
free_port "${LOCAL_PORT:-8080}"
balancer_port=$port
free_port $((balancer_port + 1))
admin_port=$port
upstreams=()
replica_ports=()
for ((i = 1; i <= n; i++)); do
    free_port $((8000 + i))
    replica_ports+=("$port")
    upstreams+=("127.0.0.1:$port")
    LISTEN_ADDR=127.0.0.1:$port REDIS_URL=redis://127.0.0.1:$redis_port NODE_NAME=replica-$i \
        SESSION_SECRET=$secret COOKIE_SECURE=false DASHBOARD_URL=http://127.0.0.1:$admin_port/ \
        "$bin/app" >"$work/replica-$i.log" 2>&1 &
    pids+=($!)
done

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

page=http://127.0.0.1:$balancer_port
cat <<EOF
session-cluster is running: redis + $n replicas + balancer (Ctrl-C stops all)

  page        $page/
  dashboard   http://127.0.0.1:$admin_port/          (live; /status, /metrics, /healthz)
  replicas    $(for p in "${replica_ports[@]}"; do printf 'http://127.0.0.1:%s  ' "$p"; done)
  curl        curl -s -c jar -b jar -D - $page/session
  loadtest    $run_cmd --target $page
              $run_cmd --target $page --parallel 16
  redis       redis-cli -p $redis_port --scan --pattern 'session:*'
  browser     BROWSER_TARGET=$page cargo test -p system-tests --test browser
  logs        $work
EOF

# Until Ctrl-C, or until any process dies on its own (then stop the rest and say which).
set +e
wait -n "${pids[@]}"
status=$?
((stopping)) || echo "a process exited on its own (status $status); see $work" >&2
exit 1
