#!/usr/bin/env bash
# The original demo's own workload: many connections hammering ONE session cookie on
# `GET /session`, through the balancer and 3 replicas. Session lock on vs off, same run,
# alternating rounds, medians.
#
#   app/bench/hot_session.sh                    # 5 s per run, 3 rounds, 32 connections
#   SECS=10 ROUNDS=5 CONNS=32 HANDOFFS=8 GROUP_COMMIT=on app/bench/hot_session.sh
#
# For each mode it prints req/s, p50/p99 (wrk --latency), non-2xx answers, wrk's socket
# timeouts (2 s), and lost updates: the counter read after the run against the base read
# before it plus the 2xx answers wrk counted (at most CONNS requests were in flight when wrk
# stopped; those may or may not have counted, so a loss is only reported beyond that), and
# the lock wait p50/p99 that the replicas' /metrics histograms give.
# Needs: cargo, redis-server, wrk, curl, python3. Loopback only; every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
HANDOFFS=${HANDOFFS:-8}       # SESSION_LOCK_HANDOFFS of the replicas
GROUP_COMMIT=${GROUP_COMMIT:-on} # SESSION_LOCK_GROUP_COMMIT of the replicas
# shellcheck source=bench/common.sh
source bench/common.sh
need_tools "redis-server redis-tools wrk curl" redis-server redis-cli wrk curl python3

[[ -n "${NO_BUILD:-}" ]] || cargo build --release -q -p app -p balancer

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null &
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

declare -A LB REPLICAS
start_stack() { # mode on|off: 3 replicas and a balancer in front of them
  local mode=$1 ups=() urls=()
  for i in 1 2 3; do
    local port; port=$(free_port)
    RUST_LOG=warn SESSION_LOCK=$mode SESSION_LOCK_HANDOFFS=$HANDOFFS SESSION_LOCK_GROUP_COMMIT=$GROUP_COMMIT NODE_NAME="$mode-$i" LISTEN_ADDR=127.0.0.1:$port SHUTDOWN_DELAY=0s \
      REDIS_URL=redis://127.0.0.1:$rport "$BIN/app" >"$WORK/app-$mode-$i.log" 2>&1 &
    PIDS+=($!)
    ups+=("127.0.0.1:$port"); urls+=("http://127.0.0.1:$port")
  done
  for u in "${urls[@]}"; do
    for _ in $(seq 100); do curl -fs "$u/readyz" >/dev/null && break; sleep 0.05; done
  done
  local lport aport; lport=$(free_port); aport=$(free_port)
  RUST_LOG=warn UPSTREAMS=$(IFS=,; echo "${ups[*]}") LISTEN_ADDR=127.0.0.1:$lport ADMIN_ADDR=127.0.0.1:$aport \
    "$BIN/balancer" >"$WORK/lb-$mode.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$lport/session" -o /dev/null && break; sleep 0.05; done
  LB[$mode]="http://127.0.0.1:$lport"
  REPLICAS[$mode]="${urls[*]}"
}
start_stack on
start_stack off

views() { curl -fs -H "Cookie: $2" "$1/api/session" | python3 -c 'import json,sys; print(json.load(sys.stdin)["views"])'; }

# Lock wait quantiles from the replicas' histograms (their sum), in ms.
lock_wait() {
  local mode=$1
  for u in ${REPLICAS[$mode]}; do curl -fs "$u/metrics"; done | python3 -c '
import sys, collections
buckets = collections.Counter()
for line in sys.stdin:
    if line.startswith("session_lock_wait_seconds_bucket"):
        le = line.split("le=\"")[1].split("\"")[0]
        buckets[float("inf") if le == "+Inf" else float(le)] += float(line.rsplit(" ", 1)[1])
total = buckets[float("inf")]
def q(p):
    for le in sorted(buckets):
        if buckets[le] >= p * total:
            return "inf" if le == float("inf") else f"<= {le*1000:g}"
    return "-"
print(f"lock wait p50 {q(0.5)} ms, p99 {q(0.99)} ms ({int(total)} waits)" if total else "no lock waits")
'
}

run() { # mode -> "rps p50_ms p99_ms non2xx timeouts lost"
  local mode=$1 lb=${LB[$1]}
  local cookie; cookie=$(curl -fs -D - -o /dev/null "$lb/session" | tr -d '\r' | awk -F'[ ;]' 'tolower($1)=="set-cookie:" {print $2; exit}')
  local base; base=$(views "$lb" "$cookie")
  wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -H "Cookie: $cookie" "$lb/session" >"$WORK/wrk-$mode.txt" 2>&1 || true
  sleep 0.3
  local final; final=$(views "$lb" "$cookie")
  python3 - "$WORK/wrk-$mode.txt" "$base" "$final" "$CONNS" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
base, final, conns = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def ms(label):
    m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m: return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
total = int(re.search(r"(\d+) requests in", text).group(1))
non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", text) or [0, 0])[1])
timeouts = int((re.search(r"timeout (\d+)", text) or [0, 0])[1])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
acked = total - non2xx
applied = final - base
# Requests wrk abandoned when the run ended may have counted: up to `conns` beyond the 2xx.
lost = max(0, acked - applied)
print(f"{rps:.0f} {ms('50'):.2f} {ms('99'):.2f} {non2xx} {timeouts} {lost} {acked} {applied}")
PY
}

echo "== one hot session: wrk -t1 -c$CONNS -d${SECS}s on GET /session with one cookie, through the balancer and 3 replicas"
echo "   SESSION_LOCK_HANDOFFS=$HANDOFFS SESSION_LOCK_GROUP_COMMIT=$GROUP_COMMIT"
echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A RPS P50 P99 LOST NON TOUT
for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then order="off on"; else order="on off"; fi
  for mode in $order; do
    read -r rps p50 p99 non tout lost acked applied <<<"$(run "$mode")"
    RPS[$mode]+="$rps "; P50[$mode]+="$p50 "; P99[$mode]+="$p99 "; LOST[$mode]+="$lost "; NON[$mode]+="$non "; TOUT[$mode]+="$tout "
    printf 'round %d  lock %-3s  %6s req/s  p50 %6s ms  p99 %7s ms  non-2xx %s  timeouts %s  2xx %s  applied %s  lost %s\n' \
      "$round" "$mode" "$rps" "$p50" "$p99" "$non" "$tout" "$acked" "$applied" "$lost"
  done
done
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' $1; }
echo
for mode in off on; do
  printf 'median lock %-3s  %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  non-2xx %s  timeouts %s  lost (sum) %s\n' "$mode" \
    "$(median "${RPS[$mode]}")" "$(median "${P50[$mode]}")" "$(median "${P99[$mode]}")" \
    "$(python3 -c 'import sys; print(int(sum(float(x) for x in sys.argv[1:])))' ${NON[$mode]})" \
    "$(python3 -c 'import sys; print(int(sum(float(x) for x in sys.argv[1:])))' ${TOUT[$mode]})" \
    "$(python3 -c 'import sys; print(int(sum(float(x) for x in sys.argv[1:])))' ${LOST[$mode]})"
done
python3 -c 'import statistics,sys; on=statistics.median(float(x) for x in sys.argv[1].split()); off=statistics.median(float(x) for x in sys.argv[2].split()); print(f"ratio lock on / off: {on/off:.2f}x req/s  (target >= 0.5x)")' "${RPS[on]}" "${RPS[off]}"
echo "lock on: $(lock_wait on)"
echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
