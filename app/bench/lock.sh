#!/usr/bin/env bash
# Session locking: what it costs, and what it saves. Compares SESSION_LOCK=on with the plain
# last-write-wins mode (SESSION_LOCK=off) in the same run, on one Redis, 3 replicas each.
#
#   app/bench/lock.sh [seconds-per-run]      (default 10; ROUNDS=5 rounds in section 2)
#   SECTIONS="2" app/bench/lock.sh 10         (only the sections named; default "1 2 3 4")
#
# Prints:
#   1. Redis commands per request (INFO commandstats deltas / requests) for a read, a write and
#      a locked write, and the round trips (client commands seen by MONITOR; the commands a
#      Lua script runs travel in its EVAL's round trip).
#   2. Throughput with many distinct sessions (200 users), lock on vs off: one unrecorded
#      warm-up run of each, then ROUNDS rounds (default 5) alternating which goes first, and
#      the ratio of the medians.
#   3. One hot session with 16 parallel clients, lock on vs off: req/s and lost updates.
#   4. The record codec: SESSION_CODEC=json vs msgpack (lock on, 200 users), alternating,
#      3 rounds, ratio of the medians.
# Everything runs on loopback; every run is bounded by its duration.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
# shellcheck source=bench/common.sh
source bench/common.sh
need_tools "redis-server redis-tools curl" redis-server redis-cli curl python3

cargo build --release -q -p app -p loadtest
APP=$BIN/app
LT=$BIN/loadtest

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null &
PIDS+=($!)
REDIS_PID=$!
rcli() { redis-cli -p "$rport" "$@"; }
for _ in $(seq 50); do rcli ping >/dev/null 2>&1 && break; sleep 0.1; done

# Not run in a $(...) subshell: the replicas' pids must reach `PIDS`, or they outlive the script.
start_replicas() { # lock on|off, codec json|msgpack, variable that gets the comma-separated URLs
  local lock=$1 codec=$2 out=$3 urls=() started=()
  for i in 1 2 3; do
    local port; port=$(free_port)
    RUST_LOG=warn SESSION_LOCK=$lock SESSION_CODEC=$codec NODE_NAME="lock-$lock-$codec-$i" LISTEN_ADDR=127.0.0.1:$port \
      REDIS_URL=redis://127.0.0.1:$rport "$APP" >"$WORK/app-$lock-$codec-$i.log" 2>&1 &
    PIDS+=($!)
    started+=($!)
    urls+=("http://127.0.0.1:$port")
  done
  for u in "${urls[@]}"; do
    for _ in $(seq 100); do curl -fs "$u/readyz" >/dev/null && break; sleep 0.05; done
  done
  printf -v "$out" '%s' "$(IFS=,; echo "${urls[*]}")"
  printf -v "${out}_PIDS" '%s' "${started[*]}"
}
cpu_ticks() { # pids -> user+sys clock ticks
  local t=0 pid f
  for pid in "$@"; do read -r -a f <"/proc/$pid/stat"; t=$((t + f[13] + f[14])); done
  echo "$t"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))
start_replicas on json ON
start_replicas off json OFF
start_replicas on msgpack MSGPACK
first() { echo "${1%%,*}"; }

want() { [[ " ${SECTIONS:-1 2 3 4} " == *" $1 "* ]]; }

if want 1; then
echo "== 1. Redis commands per request (200 sequential requests on one session) =="
count_commands() { # url method path -> commands executed and round trips, per request
  local url=$1 method=$2 path=$3 n=200 jar="$WORK/jar"
  rm -f "$jar"
  curl -fs -c "$jar" -X POST "$url/api/session/views" >/dev/null   # open the session
  sleep 0.2
  rcli config resetstat >/dev/null
  # MONITOR shows each client command once; commands run inside a script appear as "lua]"
  # lines and share their EVAL's round trip.
  redis-cli -p "$rport" monitor >"$WORK/monitor" & local mon=$!
  sleep 0.2
  for _ in $(seq $n); do curl -fs -b "$jar" -c "$jar" -X "$method" "$url$path" >/dev/null; done
  sleep 0.3; kill "$mon"; wait "$mon" 2>/dev/null || true
  local trips
  trips=$(grep ' 127.0.0.1:' "$WORK/monitor" | grep -v 'lua]' | grep -cvE '"(PING|CLIENT|INFO|ping|client|info)"' || true)
  rcli info commandstats | tr -d '\r' | python3 -c '
import sys
n, trips = int(sys.argv[1]), int(sys.argv[2])
calls = {}
for line in sys.stdin:
    if line.startswith("cmdstat_"):
        name, rest = line[8:].split(":", 1)
        calls[name] = int(rest.split("calls=")[1].split(",")[0])
for skip in ("info", "config|resetstat", "ping", "client|id", "monitor"):
    calls.pop(skip, None)
print(f"{sum(calls.values())/n:.2f} commands, {trips/n:.2f} round trips  {dict(sorted(calls.items()))}")
' "$n" "$trips"
}
printf '%-34s %s\n' "read   (GET /api/session)" "$(count_commands "$(first "$ON")" GET /api/session)"
printf '%-34s %s\n' "write  (POST views, lock off)" "$(count_commands "$(first "$OFF")" POST /api/session/views)"
printf '%-34s %s\n' "locked write (POST views, lock on)" "$(count_commands "$(first "$ON")" POST /api/session/views)"
fi

if want 2; then
echo
echo "== 2. Throughput, 200 users with distinct sessions, POST /api/session/views, ${secs}s per run =="
echo "   (CPU per request: Redis's and the 3 replicas' own user+sys time over the requests served;"
echo "    Redis time: each command's execution time in Redis (INFO commandstats) per request, where"
echo "    a script's EVALSHA includes the commands it runs, which are also counted on their own)"
thr() { "$LT" --target "$1" --throughput --connections 200 --duration "${secs}s" \
  --path /api/session/views --method POST --json --no-progress >"$WORK/thr.json" || true
  json "$WORK/thr.json" req_per_s latency.p50_ms latency.p99_ms errors; }
# thr with the CPU split: url, replica pids -> "req/s p50 p99 errors redis_us app_us"
thr_cpu() {
  local url=$1 r0 a0 r1 a1 out n
  read -r -a apps <<<"$2"
  rcli config resetstat >/dev/null
  r0=$(cpu_ticks "$REDIS_PID"); a0=$(cpu_ticks "${apps[@]}")
  out=$(thr "$url")
  r1=$(cpu_ticks "$REDIS_PID"); a1=$(cpu_ticks "${apps[@]}")
  n=$(json "$WORK/thr.json" completed)
  echo "$out $(awk -v r=$((r1 - r0)) -v a=$((a1 - a0)) -v t="$TICK_US" -v n="$n" 'BEGIN{printf "%.1f %.1f", r*t/n, a*t/n}') $(redis_time "$n")"
}
# Redis execution time per request by command, from INFO commandstats: "evalsha=8.5,mget=0.9"
redis_time() {
  rcli info commandstats | tr -d '\r' | python3 -c '
import sys
n = int(sys.argv[1])
out = []
for line in sys.stdin:
    if line.startswith("cmdstat_"):
        name, rest = line[8:].split(":", 1)
        if name in ("get", "set", "mget", "evalsha", "eval"):
            out.append((name, int(rest.split("usec=")[1].split(",")[0]) / n))
print(",".join(f"{k}={v:.2f}" for k, v in sorted(out, key=lambda kv: -kv[1])) or "none")
' "$1"
}
declare -a on_rps off_rps
# Warm-up, not recorded: the first run of a fresh replica pays for its allocator's and its
# connections' growth, which would favour whichever mode runs second.
thr "$OFF" >/dev/null
thr "$ON" >/dev/null
for round in $(seq "${ROUNDS:-5}"); do
  # Alternate who goes first, so warm-up and drift do not favour one side.
  if ((round % 2)); then order="OFF ON"; else order="ON OFF"; fi
  for mode in $order; do
    if [[ $mode == OFF ]]; then url=$OFF; apps=$OFF_PIDS; else url=$ON; apps=$ON_PIDS; fi
    read -r r p50 p99 err redis_us app_us redis_cmds <<<"$(thr_cpu "$url" "$apps")"
    if [[ $mode == OFF ]]; then off_rps+=("$r"); else on_rps+=("$r"); fi
    echo "round $round  lock ${mode,,}: $r req/s  p50 ${p50} ms  p99 ${p99} ms  errors $err  CPU/req: Redis ${redis_us} µs, replicas ${app_us} µs  Redis time/req µs: ${redis_cmds}"
  done
done
python3 -c "import statistics,sys; on=statistics.median(float(x) for x in sys.argv[1].split()); off=statistics.median(float(x) for x in sys.argv[2].split()); print(f'ratio on/off (medians of {len(sys.argv[1].split())} rounds): {on/off:.2f}x  (target >= 0.90x)')" "${on_rps[*]}" "${off_rps[*]}"
python3 -c "import sys; on=[float(x) for x in sys.argv[1].split()]; off=[float(x) for x in sys.argv[2].split()]; print('each round on/off: ' + ' '.join(f'{a/b:.2f}x' for a, b in zip(on, off)))" "${on_rps[*]}" "${off_rps[*]}"
fi

if want 3; then
echo
echo "== 3. One hot session, 16 parallel clients, ${secs}s per run =="
hot() { "$LT" --target "$1" --parallel 16 --duration "${secs}s" --json --no-progress >"$WORK/hot.json" || true
  read -r rps acked final lost err p99 <<<"$(json "$WORK/hot.json" req_per_s acknowledged final_value counter.lost errors latency.p99_ms)"
  echo "$rps req/s  acknowledged $acked  final $final  lost $lost  errors $err  p99 $p99 ms"; }
echo "lock off: $(hot "$OFF")"
echo "lock on:  $(hot "$ON")"
fi

if want 4; then
echo
echo "== 4. Record codec, lock on, 200 users, POST /api/session/views, ${secs}s per run =="
declare -a json_rps msgpack_rps
for round in 1 2 3; do
  if ((round % 2)); then order="json msgpack"; else order="msgpack json"; fi
  for codec in $order; do
    if [[ $codec == json ]]; then url=$ON; else url=$MSGPACK; fi
    read -r r p50 p99 err <<<"$(thr "$url")"
    if [[ $codec == json ]]; then json_rps+=("$r"); else msgpack_rps+=("$r"); fi
    echo "round $round  $codec: $r req/s  p50 ${p50} ms  p99 ${p99} ms  errors $err"
  done
done
python3 -c "import statistics,sys; j=statistics.median(float(x) for x in sys.argv[1].split()); m=statistics.median(float(x) for x in sys.argv[2].split()); print(f'ratio json/msgpack (medians of 3 rounds): {j/m:.2f}x')" "${json_rps[*]}" "${msgpack_rps[*]}"
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
