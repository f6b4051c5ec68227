#!/usr/bin/env bash
# The app, the balancer and the loadtest against Redis Sentinel (redis-sentinel:// URL), with a
# failover in the middle of a loadtest run, and a report of what users saw.
#
#   deploy/redis-ha/sentinel.sh                 # ~40 s; SENTINEL FAILOVER; exit 0 = pass, 1 = fail
#   FAILOVER=kill deploy/redis-ha/sentinel.sh   # unplanned: SIGKILL the master, Sentinel fails over
#   SETUP=compose deploy/redis-ha/sentinel.sh   # the same run on docker-compose.yml's `sentinel` profile
#
# Setup (the recommended one, deploy/redis-ha/README.md), all on free loopback ports: 1 master +
# REPLICAS (default 2) replicas (password on all), 3 sentinels (quorum 2, down-after 2 s, password
# too), 3 app replicas with
#   REDIS_URL=redis-sentinel://app:APP_PASSWORD@127.0.0.1:S1?sentinelServiceName=mymaster&sentinelPassword=PASSWORD&node=127.0.0.1:S2&node=127.0.0.1:S3
#   (the data nodes run the shipped ACL, deploy/redis/users.acl; the app is its `app` user)
# and the balancer in front. Then, through the balancer:
#   1. warm-up: a short sequential loadtest must pass (sessions work through Sentinel discovery);
#   2. the failover run: a sequential loadtest (8 users, each counting on its own session and
#      reading it back at the end) and a paced probe user (one increment every 100 ms, timestamps
#      kept) run while the master fails over; both stop a few seconds after the service is back.
#
# How the app keeps acknowledged writes (app/src/replication.rs): a write is acknowledged only by
# the server Sentinel names master, only while that server has as many replicas in sync as Sentinel
# counts (the write script checks INFO replication first: the old master refuses the moment its
# replica is promoted), and only once they confirmed it (WAIT). The app hears of the switch from
# the sentinels' +switch-master event (and asks them twice a second as a fallback).
# SENTINEL_GUARD=on adds `min-replicas-to-write 1` on every server (the previous recommendation):
# redundant with the app's fence, and it makes the new master refuse writes until it has a replica.
#
# Pass means (the targets of the README's promise; FAILOVER=kill reports against them too):
#   - no acknowledged write lost: 0 reset, repeat, non_monotonic, stale_read and gap anomalies in
#     the loadtest, and the probe user's counter never goes back (LOSS_LIMIT, default 0);
#   - a short outage: the probe's failed requests span at most OUTAGE_LIMIT_MS (default 2000; 5000
#     with FAILOVER=kill, where Sentinel first waits down-after-milliseconds, 2 s, then elects a
#     leader) from the first to the last, and the run ends with at least 3 s of successful requests;
#   - Sentinel agrees: the promoted replica is master afterwards (and, planned, the old master
#     its replica).
# Errors during the switch are counted and reported (statuses, window), and bounded by the outage.
source "$(dirname "$0")/lib.sh"

watchdog "${TIME_LIMIT:-240}"
need redis-server redis-cli curl jq
binaries
FAILOVER=${FAILOVER:-planned}
SETUP=${SETUP:-processes}
[[ $SETUP == processes || $SETUP == compose ]] || { echo "SETUP must be processes or compose" >&2; exit 2; }
# Unplanned, nobody can switch before Sentinel has seen the master down for down-after-milliseconds
# (2 s here) and elected a leader that promotes a replica (about 1-1.5 s more): 5 s bounds that.
if [[ $FAILOVER == kill ]]; then OUTAGE_LIMIT_MS=${OUTAGE_LIMIT_MS:-5000}; fi
OUTAGE_LIMIT_MS=${OUTAGE_LIMIT_MS:-2000}
LOSS_LIMIT=${LOSS_LIMIT:-0}
# Replicas of the master: with 2, the new master has a replica in sync again about a second after
# the switch (the other one, which Sentinel reconfigures first), so writes are replicated again at once.
REPLICAS=${REPLICAS:-2}
if [[ $SETUP == compose && ($REPLICAS != 2 || ${SENTINEL_GUARD:-off} != off) ]]; then
  echo "SETUP=compose runs docker-compose.yml as shipped: 2 replicas, no guard (REPLICAS, SENTINEL_GUARD)" >&2
  exit 2
fi
[[ $FAILOVER == planned || $FAILOVER == kill ]] || { echo "FAILOVER must be planned or kill" >&2; exit 2; }
GUARD=()
case ${SENTINEL_GUARD:-off} in
  # With one replica the new master has no replica either until the old master is converted and has
  # resynced, so with the guard it refuses writes until then; repl-diskless-sync-delay 0 starts that
  # resync at once instead of after the default 5 s (session data sets are small).
  on) GUARD=(--min-replicas-to-write 1 --min-replicas-max-lag 10 --repl-diskless-sync-delay 0) ;;
  off) ;;
  *) echo "SENTINEL_GUARD must be on or off" >&2; exit 2 ;;
esac

# --- setup: processes on loopback ports (SETUP=processes, the default) -----------------------------------------
setup_processes() {
  # --- Redis: master + replica -----------------------------------------------------------------------------
  # Starts a Redis (extra args in "$@"), retried on another port if the chosen one was taken meanwhile.
  start_redis() {
    local name=$1 attempt
    shift
    for attempt in 1 2 3; do
      free_port REDIS_PORT
      mkdir -p "$WORK/$name"
      spawn "$name" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK/$name" --save "" \
        --appendonly no --aclfile "$ACL_FILE" --masterauth "$REDIS_PASSWORD" "${GUARD[@]}" "$@"
      wait_alive 10 "${PIDS[-1]}" redis-cli -p "$REDIS_PORT" ping && return 0
      log "$name on $REDIS_PORT did not start (attempt $attempt)"
    done
    die "could not start $name"
  }
  start_redis master
  MASTER=127.0.0.1:$REDIS_PORT
  REPLICA_PORTS=()
  for ((i = 0; i < REPLICAS; i++)); do
    start_redis "replica-$i" --replicaof 127.0.0.1 "${MASTER#*:}"
    REPLICA_PORTS+=("$REDIS_PORT")
  done
  in_sync() {
    local port
    for port in "${REPLICA_PORTS[@]}"; do
      redis-cli -p "$port" info replication | grep -q 'master_link_status:up' || return 1
    done
  }
  wait_until 15 in_sync || die "the replicas did not sync with the master within 15 s"

  # --- 3 sentinels -------------------------------------------------------------------------------------------
  SENTINELS=()
  for i in 0 1 2; do
    free_port port
    cat >"$WORK/sentinel-$i.conf" <<EOF
bind 127.0.0.1
port $port
dir $WORK
requirepass $REDIS_PASSWORD
sentinel monitor mymaster 127.0.0.1 ${MASTER#*:} 2
sentinel auth-pass mymaster $REDIS_PASSWORD
sentinel down-after-milliseconds mymaster 2000
sentinel failover-timeout mymaster 10000
sentinel parallel-syncs mymaster 1
EOF
    spawn "sentinel-$i" redis-server "$WORK/sentinel-$i.conf" --sentinel
    SENTINELS+=("$port")
  done
  sentinel() { redis-cli -p "${SENTINELS[0]}" sentinel "$@"; }
  # Ready when every sentinel knows the master, the replica and the two other sentinels.
  sentinels_ready() {
    local port
    for port in "${SENTINELS[@]}"; do
      [[ $(redis-cli -p "$port" sentinel get-master-addr-by-name mymaster | paste -sd: -) == "$MASTER" ]] || return 1
      [[ $(redis-cli -p "$port" sentinel master mymaster | awk 'p {print; exit} /^num-other-sentinels$/ {p=1}') == 2 ]] || return 1
      [[ $(redis-cli -p "$port" sentinel master mymaster | awk 'p {print; exit} /^num-slaves$/ {p=1}') == "$REPLICAS" ]] || return 1
    done
  }
  wait_until 30 sentinels_ready || die "the sentinels did not discover each other and the replica within 30 s"
  log "master $MASTER, replicas :${REPLICA_PORTS[*]}, sentinels ${SENTINELS[*]} (quorum 2)"

  # --- apps and balancer --------------------------------------------------------------------------------------
  # The data nodes as the ACL's `app` user; the sentinels with their own password.
  url="redis-sentinel://app:$REDIS_APP_PASSWORD@127.0.0.1:${SENTINELS[0]}?sentinelServiceName=mymaster"
  url+="&sentinelPassword=$REDIS_PASSWORD&node=127.0.0.1:${SENTINELS[1]}&node=127.0.0.1:${SENTINELS[2]}"
  start_apps 3 "$url"
  start_balancer
  # The master's process is the one started first (PIDS[0]).
  kill_master() {
    kill -9 "${PIDS[0]}"
    wait "${PIDS[0]}" 2>/dev/null || true
  }
  role_of() { redis-cli -h "${1%:*}" -p "${1##*:}" role 2>/dev/null | head -n 1; }
}

# --- setup: docker-compose.yml's `sentinel` profile (SETUP=compose) -----------------------------------------------
# The SAME compose files a user runs (docker-compose.yml + deploy/redis-ha/compose-sentinel.yml),
# with the images built offline by deploy/e2e/images.sh; the servers and sentinels know each other
# by their service names (`sentinel announce-hostnames`), which is what this setup adds to the
# loopback one. The loadtest and the probe run on this host against the published balancer port.
setup_compose() {
  need docker
  if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else need docker-compose; COMPOSE=(docker-compose); fi
  "$ROOT/deploy/e2e/images.sh" >"$WORK/images.log" 2>&1 || die "building the images failed (deploy/e2e/images.sh: $(tail -n 3 "$WORK/images.log"))"
  export COMPOSE_PROJECT_NAME=${SENTINEL_PROJECT:-sessioncluster-sentinel}
  free_port BALANCER_PORT
  free_port BALANCER_ADMIN_PORT
  free_port REDIS_HOST_PORT
  export BALANCER_PORT BALANCER_ADMIN_PORT REDIS_HOST_PORT
  compose() { (cd "$ROOT" && "${COMPOSE[@]}" -f docker-compose.yml -f deploy/redis-ha/compose-sentinel.yml --profile sentinel "$@"); }
  compose_down() {
    ((FAILED == 0)) || compose logs --no-color --tail 100 >"$WORK/compose.log" 2>&1 || true
    compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
  }
  ON_EXIT+=(compose_down)
  compose_down
  compose up -d --scale app=3 >"$WORK/compose-up.log" 2>&1 || die "compose up failed: $(tail -n 5 "$WORK/compose-up.log")"
  sentinel() { compose exec -T sentinel-1 redis-cli -p 26379 sentinel "$@" | tr -d '\r'; }
  role_of() { compose exec -T "${1%:*}" redis-cli role 2>/dev/null | head -n 1 | tr -d '\r'; }
  kill_master() { docker kill "$(compose ps -q "${MASTER%:*}")" >/dev/null; }
  MASTER=redis:6379
  sentinels_ready() {
    local s
    for s in sentinel-1 sentinel-2 sentinel-3; do
      [[ $(compose exec -T "$s" redis-cli -p 26379 sentinel get-master-addr-by-name mymaster | tr -d '\r' | paste -sd: -) == "$MASTER" ]] || return 1
      [[ $(compose exec -T "$s" redis-cli -p 26379 sentinel master mymaster | tr -d '\r' | awk 'p {print; exit} /^num-slaves$/ {p=1}') == 2 ]] || return 1
      [[ $(compose exec -T "$s" redis-cli -p 26379 sentinel master mymaster | tr -d '\r' | awk 'p {print; exit} /^num-other-sentinels$/ {p=1}') == 2 ]] || return 1
    done
  }
  wait_until 90 sentinels_ready || die "the compose sentinels did not agree on $MASTER with 2 replicas within 90 s"
  BALANCER=http://127.0.0.1:$BALANCER_PORT
  BALANCER_ADMIN=http://127.0.0.1:$BALANCER_ADMIN_PORT
  three_ready() { curl -sf -m 2 "$BALANCER_ADMIN/status" | grep -Eq '"healthy":3' && is_ok "$BALANCER/"; }
  wait_until 90 three_ready || die "the balancer did not have 3 ready replicas within 90 s"
  log "compose: master $MASTER, 2 replicas, 3 sentinels, 3 apps, balancer on $BALANCER"
}

master_addr() { sentinel get-master-addr-by-name mymaster | paste -sd: -; }
case $SETUP in
  processes) setup_processes ;;
  compose) setup_compose ;;
esac

problems=()
# --- 1. warm-up -------------------------------------------------------------------------------------------------
loadtest warmup --users 10 --requests 10 || problems+=("warm-up loadtest did not pass (exit $?)")
warm_line="warm-up: $(field warmup '.verdict') - $(field warmup '.requests') requests, $(field warmup '.errors') errors"

# --- 2. the failover run -------------------------------------------------------------------------------------
# The probe user: one increment every 100 ms with its own cookie jar; lines "ms status views".
probe() {
  local out status views start
  while [[ ! -e $WORK/stop-probe ]]; do
    start=$(date +%s%3N)
    out=$(curl -s -m 3 -b "$WORK/probe.jar" -c "$WORK/probe.jar" -X POST -w '\n%{http_code}' \
      "$BALANCER/api/session/views" || true)
    status=${out##*$'\n'}
    views=$(grep -o '"views":[0-9]*' <<<"$out" | cut -d: -f2 || true)
    echo "$(date +%s%3N) ${status:-000} ${views:--} $start" >>"$WORK/probe.txt"
    sleep 0.1
  done
}
now_ms() { date +%s%3N; }
probe &
PIDS+=($!)
"$BIN_DIR/loadtest" --target "$BALANCER" --no-progress --json --users 8 --requests 1000000 \
  >"$WORK/failover.json" 2>"$WORK/failover.log" &
LOADTEST=$!
PIDS+=("$LOADTEST")
sleep 3

t_failover=$(now_ms)
if [[ $FAILOVER == kill ]]; then
  kill_master
  log "master $MASTER killed (SIGKILL); Sentinel fails over after down-after-milliseconds (2 s)"
else
  sentinel failover mymaster >"$WORK/failover-cmd.log" 2>&1 || die "SENTINEL FAILOVER refused: $(cat "$WORK/failover-cmd.log")"
  log "SENTINEL FAILOVER mymaster sent"
fi
is_promoted() { [[ -n $(master_addr) && $(master_addr) != "$MASTER" ]]; }
wait_until 20 is_promoted || die "sentinel did not promote a replica within 20 s"
t_promoted=$(now_ms)
NEW_MASTER=$(master_addr)
log "sentinel reports the new master $NEW_MASTER after $((t_promoted - t_failover)) ms"

if [[ $FAILOVER == planned ]]; then
  # The old master keeps its role until Sentinel converts it (8-11 s); the app's fence makes it
  # refuse writes meanwhile.
  is_demoted() { role_of "$MASTER" | grep -q slave; }
  wait_until 30 is_demoted || log "the old master was still a master 30 s after the failover"
  t_demoted=$(now_ms)
  demoted_line="old master demoted after $((t_demoted - t_failover)) ms"
else
  demoted_line="old master killed, not restarted"
  sleep 5
fi
log "$demoted_line"
# Run on until the probe has succeeded for 3 s in a row (bounded), then 2 s more.
sleep 1
recovered() {
  local since=$(($(now_ms) - 3000))
  awk -v since="$since" '$1 >= since {recent++; if ($2 != 200) bad++}
    END {exit !(recent >= 5 && bad == 0)}' "$WORK/probe.txt"
}
wait_until 25 recovered || log "the probe did not see 3 s of clean successes"
sleep 2
kill -INT "$LOADTEST" 2>/dev/null || true
wait_until 20 bash -c "! kill -0 $LOADTEST" || die "the loadtest did not stop after SIGINT"
touch "$WORK/stop-probe"
t_end=$(now_ms)
sleep 0.5

# --- the verdict -------------------------------------------------------------------------------------------------
# Probe timeline: requests, errors, first/last error after the failover, value before and after.
# A step back of the counter is acknowledged increments lost: `lost` of them, acknowledged over
# `window` ms (from the first lost acknowledgement to the last one before the drop).
# Lines are "end status views start" (ms). The outage is the span of failed requests after t0,
# from the start of the first to the end of the last.
read -r p_total p_errors p_first_err p_last_err p_before p_after p_reset p_lost p_window <<<"$(awk -v t0="$t_failover" '
  { n++ }
  $2 != 200 { errors++; if ($1 >= t0) { if (!first) first = ($4 ? $4 : $1); last = $1 } }
  $2 == 200 && $3 != "-" {
    v = $3
    if ($1 < t0) before = v
    if (prev && v == 1) reset++
    if (prev && v <= prev) {
      if (prev - v + 1 > lost) { lost = prev - v + 1; window = (v in seen) ? tprev - seen[v] : -1 }
    }
    if (!(v in seen)) seen[v] = $1
    prev = v; tprev = $1; after = v
  }
  END { printf "%d %d %.0f %.0f %d %d %d %d %.0f\n", n, errors, first, last, before, after, reset, lost, window }' "$WORK/probe.txt")"
statuses=$(awk '{c[$2]++} END {for (s in c) printf "%s x%d ", s, c[s]}' "$WORK/probe.txt")
if ((p_last_err > 0)); then
  outage_ms=$((p_last_err - p_first_err))
  outage="failed requests from +$((p_first_err - t_failover)) ms to +$((p_last_err - t_failover)) ms: $outage_ms ms"
else
  outage_ms=0
  outage="no failed request"
fi
clean_tail_ms=$((t_end - (p_last_err > 0 ? p_last_err : t_failover)))

l_requests=$(field failover '.requests')
l_errors=$(field failover '.errors')
l_reset=$(field failover '.anomalies.reset')
l_repeat=$(field failover '.anomalies.repeat')
l_nonmono=$(field failover '.anomalies.non_monotonic')
l_stale=$(field failover '.anomalies.stale_read')
l_gap=$(field failover '.anomalies.gap')
l_users=$(field failover '.users')
lost_writes=$((l_reset + l_repeat + l_nonmono + l_stale))

((outage_ms <= OUTAGE_LIMIT_MS)) ||
  problems+=("the probe's failed requests spanned $outage_ms ms (limit ${OUTAGE_LIMIT_MS} ms)")
((clean_tail_ms >= 3000)) || problems+=("the run did not end with 3 s of successful requests")
((lost_writes == 0)) ||
  problems+=("$lost_writes lost-write anomalies (reset, repeat, non_monotonic, stale_read): acknowledged writes lost")
((l_gap == 0)) || problems+=("$l_gap gaps: increments applied twice")
((p_reset == 0)) || problems+=("the probe user's session was reset (counter back to 1): session lost")
((p_lost <= LOSS_LIMIT)) ||
  problems+=("the probe user lost $p_lost acknowledged increments, acknowledged over ${p_window} ms (limit $LOSS_LIMIT)")
((p_after > 0 && p_after >= p_before)) ||
  problems+=("the probe user's counter ended at $p_after, below its $p_before before the failover")
[[ $(master_addr) == "$NEW_MASTER" ]] || problems+=("sentinel no longer names the promoted replica as master")
if [[ $FAILOVER == planned ]]; then
  role_of "$MASTER" | grep -q slave || problems+=("the old master was not turned into a replica")
fi
nodes_after=$(awk -v t="$p_last_err" '$1 > t && $2 == 200' "$WORK/probe.txt" | wc -l)

echo
echo "== Redis Sentinel failover report (setup: $SETUP; redis-sentinel:// URL, 1 master + $REPLICAS replica(s), 3 sentinels, 3 apps, balancer) =="
echo "  $warm_line"
echo "  guard (min-replicas-to-write 1): ${SENTINEL_GUARD:-off}; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  failover ($FAILOVER) at t=0; new master named after $((t_promoted - t_failover)) ms; $demoted_line"
echo "  probe user (1 request / 100 ms): $p_total requests, $p_errors failed ($statuses); $outage"
echo "    $nodes_after successes after the last failure"
echo "    counter: $p_before before the failover, $p_after at the end; resets $p_reset; acknowledged increments lost: $p_lost (acknowledged over ${p_window} ms)"
echo "  loadtest ($l_users users, sequential, stopped ~3 s after recovery): $l_requests requests, $l_errors errors"
echo "    anomalies: reset $l_reset, repeat $l_repeat, non_monotonic $l_nonmono, stale_read $l_stale, gap $l_gap, unknown $(field failover '.anomalies.unknown')"
echo "    lost-write examples: $(field failover '[.examples[] | select(.kind != "unknown") | "\(.kind) saw \(.observed) expected \(.expected_min)"] | .[0:4] | join(", ")')"
echo "    error examples: $(field failover '.error_examples | join(" | ")' | cut -c1-300)"
echo "  pass criteria: failed requests span <= ${OUTAGE_LIMIT_MS} ms; probe loses <= $LOSS_LIMIT acknowledged increment(s);"
echo "    0 lost-write anomalies and 0 gaps in the loadtest; no session reset; sentinel shows the promoted replica as master"
if ((${#problems[@]})); then
  for p in "${problems[@]}"; do echo "  PROBLEM: $p"; done
  echo "sentinel.sh: FAIL"
  exit 1
fi
FAILED=0
echo "sentinel.sh: PASS"
