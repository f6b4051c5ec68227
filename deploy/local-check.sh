#!/usr/bin/env bash
# Smoke test of deploy/local.sh, as a person uses it: start it, use the cluster it prints, press Ctrl-C.
#
# Run with:  deploy/local-check.sh        (CI runs it from .ci/run)
#
# Starts `deploy/local.sh 3` in its own process group, waits for its "page" URL, runs the loadtest and the browser
# test against it, then sends SIGINT to the whole group (what Ctrl-C in a terminal does) and checks that every
# process it started is gone within 20 s. Traffic goes only to 127.0.0.1. Exits non-zero on any failure.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/test-output/local
mkdir -p "$out"
rm -f "$out"/*
failed=0
say() { printf '[local-check] %s\n' "$*" >&2; }

# Job control: the background job gets its own process group and keeps SIGINT (non-interactive bash would
# otherwise start it with SIGINT ignored, which is not what a terminal's Ctrl-C meets).
set -m
LOCAL_PORT=${LOCAL_PORT:-18080} "$root/deploy/local.sh" 3 >"$out/local.out" 2>"$out/local.err" &
pid=$!
set +m
cleanup() { kill -KILL -- "-$pid" 2>/dev/null; }
# Live (not zombie) processes of local.sh's group: local.sh itself, redis-server, the replicas, the balancer.
alive() { ps -eo pid=,pgid=,stat=,comm= | awk -v g="$pid" '$2 == g && $3 !~ /^Z/ { printf "%s(%s) ", $4, $1 }'; }
trap cleanup EXIT

url=""
for ((t = 0; t < 1200; t++)); do
    url=$(awk '$1 == "page" { print $2 }' "$out/local.out" 2>/dev/null)
    [[ -n $url ]] && break
    [[ -n $(alive) ]] || break
    sleep 0.5
done
if [[ -z $url ]]; then
    say "FAIL: local.sh did not print its URLs"; cat "$out/local.err" >&2
    exit 1
fi
url=${url%/}
say "local.sh is up at $url"
children=$(alive)

if "$root/target/release/loadtest" --target "$url" --endpoint text --users 10 --requests 20 --no-progress \
    >"$out/loadtest.txt" 2>&1; then
    say "PASS: loadtest against local.sh ($(grep -E '^hops ' "$out/loadtest.txt" | tr -s ' '))"
else
    say "FAIL: loadtest against local.sh (see $out/loadtest.txt)"; failed=1
fi
if BROWSER_TARGET=$url cargo test --quiet --locked -p system-tests --test browser >"$out/browser.txt" 2>&1; then
    say "PASS: browser test against local.sh"
else
    say "FAIL: browser test against local.sh (see $out/browser.txt)"; failed=1
fi

kill -INT -- "-$pid"
gone=0
for ((t = 0; t < 40; t++)); do
    if [[ -z $(alive) ]]; then gone=1; break; fi
    sleep 0.5
done
if ((gone)); then
    say "PASS: Ctrl-C stopped local.sh and its processes ($children)"
else
    say "FAIL: processes left 20 s after Ctrl-C: $(alive)"; failed=1
fi
((failed)) && { say "RESULT: FAIL"; exit 1; }
say "RESULT: PASS"
