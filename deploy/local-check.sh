#!/usr/bin/env bash
# Smoke test of deploy/local.sh, as a person uses it: start it, use the cluster it prints, start a second copy
# beside it, press Ctrl-C in each.
#
# Run with:  deploy/local-check.sh        (CI runs it from .ci/run)
#
# Starts `deploy/local.sh 3` in its own process group, waits for its "page" URL, runs the loadtest and the browser
# test against it. Then starts a second copy (`deploy/local.sh 2`, asking for the same balancer port) while the
# first runs: it must come up on ports of its own (no port shared with the first copy, none twice within it),
# print commands that name its own ports, and pass the loadtest. Each copy then gets SIGINT to its whole group
# (what Ctrl-C in a terminal does), and every process it started must be gone within 20 s; the first copy must
# still serve after the second stopped. Traffic goes only to 127.0.0.1. Exits non-zero on any failure.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/test-output/local
mkdir -p "$out"
rm -f "$out"/*
failed=0
say() { printf '[local-check] %s\n' "$*" >&2; }
fail() { say "FAIL: $*"; failed=1; }
target_dir=${CARGO_TARGET_DIR:-$root/target}
[[ $target_dir == /* ]] || target_dir=$root/$target_dir
port=${LOCAL_PORT:-18080}

declare -a groups=()
cleanup() { local g; for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done; }
trap cleanup EXIT
# Live (not zombie) processes of process group $1: local.sh itself, redis-server, the replicas, the balancer.
alive() { ps -eo pid=,pgid=,stat=,comm= | awk -v g="$1" '$2 == g && $3 !~ /^Z/ { printf "%s(%s) ", $4, $1 }'; }

# start NAME N: deploy/local.sh N in its own process group, its output in $out/NAME.out; sets $pid and $url.
start() {
    local name=$1 replicas=$2 t
    # Job control: the background job gets its own process group and keeps SIGINT (non-interactive bash would
    # otherwise start it with SIGINT ignored, which is not what a terminal's Ctrl-C meets).
    set -m
    LOCAL_PORT=$port "$root/deploy/local.sh" "$replicas" >"$out/$name.out" 2>"$out/$name.err" &
    pid=$!
    set +m
    groups+=("$pid")
    url=""
    for ((t = 0; t < 1200; t++)); do
        url=$(awk '$1 == "page" { print $2 }' "$out/$name.out" 2>/dev/null)
        [[ -n $url ]] && break
        [[ -n $(alive "$pid") ]] || break
        sleep 0.5
    done
    if [[ -z $url ]]; then
        say "FAIL: local.sh ($name) did not print its URLs"; cat "$out/$name.err" >&2
        exit 1
    fi
    url=${url%/}
    say "local.sh ($name) is up at $url"
}

# stop NAME PID: Ctrl-C to the group, then every process of it must be gone within 20 s.
stop() {
    local name=$1 group=$2 children t gone=0
    children=$(alive "$group")
    kill -INT -- "-$group"
    for ((t = 0; t < 40; t++)); do
        if [[ -z $(alive "$group") ]]; then gone=1; break; fi
        sleep 0.5
    done
    if ((gone)); then
        say "PASS: Ctrl-C stopped local.sh ($name) and its processes ($children)"
    else
        fail "processes of local.sh ($name) left 20 s after Ctrl-C: $(alive "$group")"
    fi
}

# The ports a copy printed: page, admin, replicas, redis (one per line).
ports_of() {
    grep -oE '127\.0\.0\.1:[0-9]+' "$out/$1.out" | cut -d: -f2 | sort -u
    awk '$1 == "redis" { for (i = 1; i <= NF; i++) if ($i == "-p") print $(i + 1) }' "$out/$1.out"
}

# loadtest NAME URL: the sequential check through the balancer, with the binary local.sh built.
loadtest() {
    if "$target_dir/release/loadtest" --target "$2" --endpoint text --users 10 --requests 20 --no-progress \
        >"$out/loadtest-$1.txt" 2>&1; then
        say "PASS: loadtest against local.sh ($1: $(grep -E '^hops ' "$out/loadtest-$1.txt" | tr -s ' '))"
    else
        fail "loadtest against local.sh ($1) (see $out/loadtest-$1.txt)"
    fi
}

start first 3
first_pid=$pid first_url=$url
loadtest first "$first_url"
if BROWSER_TARGET=$first_url cargo test --quiet --locked -p system-tests --test browser >"$out/browser.txt" 2>&1; then
    say "PASS: browser test against local.sh"
else
    fail "browser test against local.sh (see $out/browser.txt)"
fi

# A second copy beside the first, asking for the same balancer port.
start second 2
second_pid=$pid second_url=$url
shared=$(comm -12 <(ports_of first | sort) <(ports_of second | sort) | tr '\n' ' ')
replicas=$(awk '$1 == "replicas" { for (i = 2; i <= NF; i++) print $i }' "$out/second.out")
if [[ -n $shared ]]; then
    fail "the second copy printed ports of the first: $shared"
elif (($(sort -u <<<"$replicas" | wc -l) != 2)); then
    fail "the second copy's replicas are not 2 distinct URLs: $replicas"
else
    say "PASS: the second copy got ports of its own ($(ports_of second | tr '\n' ' '))"
fi
# Every command it printed names its own ports.
second_redis=$(awk '$1 == "redis" { for (i = 1; i <= NF; i++) if ($i == "-p") print $(i + 1) }' "$out/second.out")
wrong=$(grep -E 'cargo|curl' "$out/second.out" | grep -vF "$second_url" || true)
if [[ -n $wrong ]]; then
    fail "printed commands that do not use the second copy's balancer ($second_url): $wrong"
elif ! redis-cli -p "$second_redis" ping >/dev/null 2>&1; then
    fail "the printed redis-cli port $second_redis does not answer"
else
    say "PASS: every command the second copy printed uses its ports (balancer $second_url, redis $second_redis)"
fi
loadtest second "$second_url"

stop second "$second_pid"
if curl -sf -o /dev/null --max-time 2 "$first_url/"; then
    say "PASS: the first copy still serves after the second stopped"
else
    fail "the first copy stopped serving when the second stopped"
fi
stop first "$first_pid"

((failed)) && { say "RESULT: FAIL"; exit 1; }
say "RESULT: PASS"
