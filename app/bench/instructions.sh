#!/usr/bin/env bash
# What the session lock costs per write, in user-space instructions of the replica and of
# Redis, counted by valgrind's callgrind: SESSION_LOCK=off (last write wins) vs on (an
# optimistic compare-and-set script for a quiet session). Instruction counts do not depend on
# what else the machine is doing, so this comparison holds where req/s and CPU time do not
# (kernel time is not counted here; both modes make the same round trips, see lock.sh §1).
#
#   app/bench/instructions.sh [writes]      (default 3000; NO_BUILD=1 skips the release build)
#   DUMPS=/tmp/dumps app/bench/instructions.sh   # keep the callgrind dumps there
#
# One replica (under callgrind) on one Redis (under callgrind), driven by the loadtest's
# throughput mode: 50 connections, each its own session, POST /api/session/views, after an
# unrecorded warm-up of 500 writes. Requires: cargo, valgrind, redis-server, redis-cli, curl.
# Loopback only; every run is bounded by its count of writes.
set -euo pipefail
cd "$(dirname "$0")/../.."
writes=${1:-3000}
# shellcheck source=bench/common.sh
source bench/common.sh
need_tools "valgrind redis-server redis-tools curl" valgrind callgrind_control redis-server redis-cli curl python3
[[ -n "${NO_BUILD:-}" ]] || cargo build --release -q -p app -p loadtest
APP=$BIN/app
LT=$BIN/loadtest

grind() { # out-file command... -> runs it under callgrind with counting off, in the background
  local out=$1
  shift
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@" >"$out.log" 2>&1 &
  PIDS+=($!)
}
total() { awk '/^totals:/{print $2}' "$1"; }
dump() { # pid out-file name -> instructions counted since the last zeroing; keeps the dump as name
  callgrind_control -i off "$1" >/dev/null
  callgrind_control -d "$1" >/dev/null
  local file
  # callgrind numbers its dumps: out-file.1, out-file.2, ...
  file=$(ls -t "$2".[0-9]* | head -1)
  mv "$file" "$WORK/$3"
  if [[ -n "${DUMPS:-}" ]]; then mkdir -p "$DUMPS" && cp "$WORK/$3" "$DUMPS/$3.callgrind"; fi
  total "$WORK/$3"
}

rport=$(free_port)
grind "$WORK/redis.out" redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK"
REDIS_PID=${PIDS[-1]}
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

load() { # url writes
  "$LT" --target "$1" --throughput --connections 50 --requests "$2" \
    --path /api/session/views --method POST --json --no-progress >"$WORK/load.json" || true
  json "$WORK/load.json" completed errors
}

declare -A APP_I REDIS_I WRITES
for mode in off on; do
  port=$(free_port)
  RUST_LOG=warn SESSION_LOCK=$mode NODE_NAME="grind-$mode" LISTEN_ADDR=127.0.0.1:$port \
    REDIS_URL=redis://127.0.0.1:$rport grind "$WORK/app-$mode.out" "$APP"
  app_pid=${PIDS[-1]}
  url=http://127.0.0.1:$port
  for _ in $(seq 600); do curl -fs "$url/readyz" >/dev/null && break; sleep 0.1; done
  curl -fs "$url/readyz" >/dev/null || { echo "the replica (lock $mode) did not come up" >&2; exit 1; }
  load "$url" 500 >/dev/null
  callgrind_control -z "$app_pid" >/dev/null
  callgrind_control -z "$REDIS_PID" >/dev/null
  callgrind_control -i on "$app_pid" >/dev/null
  callgrind_control -i on "$REDIS_PID" >/dev/null
  read -r completed errors <<<"$(load "$url" "$writes")"
  APP_I[$mode]=$(dump "$app_pid" "$WORK/app-$mode.out" "app-$mode")
  REDIS_I[$mode]=$(dump "$REDIS_PID" "$WORK/redis.out" "redis-$mode")
  WRITES[$mode]=$completed
  [[ $errors == 0 ]] || echo "lock $mode: $errors errors" >&2
  kill "$app_pid"
  wait "$app_pid" 2>/dev/null || true
done

python3 - "${WRITES[off]}" "${APP_I[off]}" "${REDIS_I[off]}" "${WRITES[on]}" "${APP_I[on]}" "${REDIS_I[on]}" <<'PY'
import sys
n_off, app_off, redis_off, n_on, app_on, redis_on = map(int, sys.argv[1:])
rows = [("replica", app_off / n_off, app_on / n_on), ("Redis", redis_off / n_off, redis_on / n_on)]
rows.append(("both", rows[0][1] + rows[1][1], rows[0][2] + rows[1][2]))
print(f"user-space instructions per write (callgrind; {n_off:,} writes off, {n_on:,} on):")
print(f"  {'':8} {'lock off':>10} {'lock on':>10} {'extra':>9} {'on/off':>7}")
for name, off, on in rows:
    print(f"  {name:8} {off:10,.0f} {on:10,.0f} {on - off:+9,.0f} {on / off:6.2f}x")
PY
