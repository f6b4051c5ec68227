#!/usr/bin/env bash
# The app, its session lock, the balancer and the loadtest against a real Redis Cluster, through a
# redis-cluster:// URL.
#
#   deploy/redis-ha/cluster.sh            # ~20 s; exit 0 = pass, 1 = fail (with a report)
#
# Builds a 6-node cluster (3 masters, 3 replicas; `redis-server --cluster-enabled yes` on free loopback
# ports, `redis-cli --cluster create --cluster-replicas 1`), with a password, then 3 app replicas
# with the shipped ACL (deploy/redis/users.acl) on every node and the replicas connecting as its
# least-privilege `app` user: REDIS_URL=redis-cluster://app:PASSWORD@master1?node=master2&node=master3 and SESSION_LOCK=on,
# and the balancer in front. Pass means, all through the balancer:
#   1. the loadtest's sequential mode passes (every session counts 1, 2, 3... while hopping replicas);
#   2. its parallel mode passes: 0 lost updates on one session (the lock works on a cluster: the lock
#      keys `session:{<sid>}:lock` and `session:{<sid>}` are single-key commands, each routed to its slot);
#   3. the sessions are spread over all 3 masters (the cluster really shards them), and the replicas
#      hold copies;
#   4. a coordinated failover of one shard (`CLUSTER FAILOVER` on its replica) during a sequential run
#      is invisible to users: 0 errors and 0 anomalies of any kind (the requests cut off by the
#      switch are retried by the Redis client, and every write recognises its own retry).
#      MAX_FAILOVER_ERRORS (default 0) is the number of client-visible errors allowed.
source "$(dirname "$0")/lib.sh"

watchdog "${TIME_LIMIT:-240}"
need redis-server redis-cli curl jq
binaries

# --- the cluster ------------------------------------------------------------------------------------
REDIS_PORTS=()
# Starts one cluster node; retried on another port if the chosen one was taken meanwhile.
start_node() {
  local port attempt
  for attempt in 1 2 3; do
    free_port port 10000
    mkdir -p "$WORK/redis-$port"
    spawn "redis-$port" redis-server --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
      --cluster-config-file "$WORK/redis-$port/nodes.conf" --cluster-node-timeout 2000 \
      --dir "$WORK/redis-$port" --appendonly no --save "" \
      --aclfile "$ACL_FILE" --masterauth "$REDIS_PASSWORD"
    if wait_alive 10 "${PIDS[-1]}" redis-cli -p "$port" ping; then
      REDIS_PORTS+=("$port")
      return 0
    fi
    log "redis-server on $port did not start (attempt $attempt)"
  done
  die "could not start a cluster node"
}
for _ in 1 2 3 4 5 6; do start_node; done
nodes=$(printf '127.0.0.1:%s ' "${REDIS_PORTS[@]}")
# shellcheck disable=SC2086 # one argument per node
redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes >"$WORK/cluster-create.log" 2>&1 ||
  die "redis-cli --cluster create failed"
# Ready when every node says cluster_state:ok and sees 3 masters and 3 replicas (the replica roles
# spread by gossip a moment after `--cluster create` returns).
cluster_ok() {
  local port
  for port in "${REDIS_PORTS[@]}"; do
    redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' || return 1
    [[ $(redis-cli -p "$port" cluster nodes | awk '$3 ~ /master/' | wc -l) == 3 ]] || return 1
    [[ $(redis-cli -p "$port" cluster nodes | awk '$3 ~ /slave/' | wc -l) == 3 ]] || return 1
  done
}
wait_until 30 cluster_ok || die "the cluster did not settle (state ok, 3 masters, 3 replicas on every node) within 30 s"
masters_of() { redis-cli -p "${REDIS_PORTS[0]}" cluster nodes | awk '$3 ~ /master/ {split($2, a, "@"); print a[1]}'; }
mapfile -t MASTERS < <(masters_of)
((${#MASTERS[@]} == 3)) || die "expected 3 masters, cluster nodes shows ${#MASTERS[@]}"
log "cluster up: masters ${MASTERS[*]}, 3 replicas"

# --- apps and balancer -------------------------------------------------------------------------------
url="redis-cluster://app:$REDIS_APP_PASSWORD@${MASTERS[0]}?node=${MASTERS[1]}&node=${MASTERS[2]}"
start_apps 3 "$url"
start_balancer

# --- the checks --------------------------------------------------------------------------------------
problems=()
loadtest seq --users 30 --requests 20 || problems+=("sequential loadtest did not pass (exit $?)")
seq_line="sequential: $(field seq '.verdict') - $(field seq '.requests') requests, $(field seq '.errors') errors, anomalies $(field seq '.anomalies | tostring'), replicas $(field seq '.requests_per_replica | tostring')"

loadtest par --parallel 8 --per-worker 25 || problems+=("parallel loadtest did not pass (exit $?)")
par_line="parallel (8 workers x 25, SESSION_LOCK=on): $(field par '.verdict') - $(field par '.counter.lost') lost, final $(field par '.final_value'), $(field par '.errors') errors"

# The lock really ran on the cluster: every replica counts the locks it took.
locks=0
for port in "${APP_PORTS[@]}"; do
  n=$(curl -s -m 2 "http://127.0.0.1:$port/metrics" | awk '/^session_lock_wait_seconds_count/ {print $2}')
  locks=$((locks + ${n%.*}))
done
((locks > 0)) || problems+=("no session lock was taken (session_lock_wait_seconds_count is 0 on every replica)")

# Where did the sessions go? Keys per master, and the same count on its replica.
spread=()
for m in "${MASTERS[@]}"; do
  keys=$(redis-cli -p "${m##*:}" dbsize)
  spread+=("${m##*:}=$keys")
  ((keys > 0)) || problems+=("master ${m} holds no session: the cluster did not shard")
done
replica_keys=0
for port in "${REDIS_PORTS[@]}"; do
  if redis-cli -p "$port" role | head -1 | grep -q slave; then
    wait_until 5 test "$(redis-cli -p "$port" dbsize)" -gt 0 || true
    replica_keys=$((replica_keys + $(redis-cli -p "$port" dbsize)))
  fi
done
((replica_keys > 0)) || problems+=("no replica holds a copy of any key")

# --- 4. a manual failover of one shard during a sequential run ------------------------------------------
# `CLUSTER FAILOVER` on a replica is Redis's coordinated switch: the master pauses its clients until the
# replica has caught up, then they swap roles. fred follows the MOVED redirections that the old master
# answers with. Expected: no lost write, no reset, at most a few errors during the pause.
victim=${MASTERS[0]}
victim_id=$(redis-cli -p "${victim##*:}" cluster myid)
promoted=
for port in "${REDIS_PORTS[@]}"; do
  if redis-cli -p "$port" cluster nodes | awk -v id="$victim_id" '$3 ~ /myself/ && $4 == id {f=1} END {exit !f}'; then
    promoted=$port
  fi
done
[[ -n $promoted ]] || die "no replica of ${victim} found"
"$BIN_DIR/loadtest" --target "$BALANCER" --no-progress --json --users 8 --requests 100000 \
  >"$WORK/shard-failover.json" 2>"$WORK/shard-failover.log" &
run=$!
PIDS+=("$run")
sleep 2
redis-cli -p "$promoted" cluster failover >/dev/null || die "CLUSTER FAILOVER refused by :$promoted"
is_master() { redis-cli -p "$promoted" role | head -1 | grep -q master; }
wait_until 15 is_master || problems+=("replica :$promoted was not promoted within 15 s")
sleep 3
kill -INT "$run" 2>/dev/null || true
wait_until 20 bash -c "! kill -0 $run" || die "the loadtest did not stop after SIGINT"
lost=$(($(field shard-failover '.anomalies.reset') + $(field shard-failover '.anomalies.repeat') + $(field shard-failover '.anomalies.non_monotonic') + $(field shard-failover '.anomalies.stale_read')))
((lost == 0)) || problems+=("$lost lost-write anomalies in the coordinated shard failover")
(($(field shard-failover '.anomalies.gap') == 0)) || problems+=("gaps (double-applied increments) in the shard failover")
failover_errors=$(field shard-failover '.errors')
((failover_errors <= ${MAX_FAILOVER_ERRORS:-0})) ||
  problems+=("$failover_errors client-visible errors in the coordinated shard failover (limit ${MAX_FAILOVER_ERRORS:-0})")
fail_line="shard failover (CLUSTER FAILOVER on :$promoted, master :${victim##*:}) during 8 sequential users: $(field shard-failover '.requests') requests, $(field shard-failover '.errors') errors, anomalies $(field shard-failover '.anomalies | tostring')"

# --- report --------------------------------------------------------------------------------------------
echo
echo "== Redis Cluster report (redis-cluster:// URL, 3 masters + 3 replicas, 3 apps, balancer) =="
echo "  $seq_line"
echo "  $par_line"
echo "  $fail_line"
echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  session locks taken on the cluster (sum of session_lock_wait_seconds_count): $locks"
echo "  keys per master (port=keys): ${spread[*]}; keys on replicas: $replica_keys"
if ((${#problems[@]})); then
  for p in "${problems[@]}"; do echo "  PROBLEM: $p"; done
  echo "cluster.sh: FAIL"
  exit 1
fi
FAILED=0
echo "cluster.sh: PASS"
