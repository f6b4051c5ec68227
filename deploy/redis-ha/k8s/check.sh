#!/usr/bin/env bash
# Runs the Sentinel set of deploy/redis-ha/k8s the way its StatefulSet does, with the same
# scripts (redis-node.sh, sentinel-node.sh, deploy/redis/start.sh), as real redis-server
# processes on 127.0.0.1 ports instead of pods, and checks what Kubernetes relies on:
#
#   1. pods started in order (OrderedReady) form 1 master, 2 replicas in sync, 3 sentinels that
#      know each other and both replicas;
#   2. SIGKILL of pod 0 (its Redis and its Sentinel, the master among them): the two sentinels
#      left promote a replica within 15 s, and a write confirmed by WAIT before is on it;
#   3. pod 0 started again with its volume: its Redis rejoins as a replica of the new master (never
#      a second master: sampled every 0.1 s while it starts), its Sentinel resumes from the
#      rewritten file and names the new master;
#   4. a Sentinel whose volume was lost (pod 2, file removed) asks the others and monitors the
#      current master;
#   5. with kubectl at hand, `kubectl kustomize deploy/redis-ha/k8s` renders: no single-Redis
#      StatefulSet left, the app's REDIS_URL names the three sentinels of the StatefulSet, the
#      scripts in the ConfigMap are these files.
#
# Run with:  deploy/redis-ha/k8s/check.sh     (needs redis-server, redis-cli; CI runs it)
# Prints PASS or FAIL with the reason; logs are kept on failure.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=deploy/redis-ha/lib.sh
. "$here/../lib.sh"
need redis-server redis-cli timeout paste
watchdog 180

R=() S=() POD_PIDS=()
for i in 0 1 2; do
  free_port "r$i"
  free_port "s$i"
  R+=("$(eval echo "\$r$i")")
  S+=("$(eval echo "\$s$i")")
done
SENTINEL_LIST="127.0.0.1:${S[0]} 127.0.0.1:${S[1]} 127.0.0.1:${S[2]}"

# Starts pod $1 (its Redis, then its Sentinel), as the StatefulSet's containers do.
start_pod() {
  local i=$1
  mkdir -p "$WORK/pod-$i/data" "$WORK/pod-$i/sentinel"
  spawn "redis-$i" env POD_HOST=127.0.0.1 REDIS_PORT="${R[i]}" SENTINELS="$SENTINEL_LIST" \
    BOOTSTRAP_MASTER="127.0.0.1:${R[0]}" REDIS_PASSWORD="$REDIS_PASSWORD" \
    REDIS_APP_PASSWORD="$REDIS_APP_PASSWORD" START_SH="$ROOT/deploy/redis/start.sh" \
    ACL_TEMPLATE="$ROOT/deploy/redis/users.acl" ACL_OUT="$WORK/pod-$i/users.acl" \
    sh "$here/redis-node.sh" --bind 127.0.0.1 --dir "$WORK/pod-$i/data" --appendonly yes
  POD_PIDS[i * 2]=${PIDS[-1]}
  spawn "sentinel-$i" env POD_HOST=127.0.0.1 SENTINEL_PORT="${S[i]}" SENTINELS="$SENTINEL_LIST" \
    BOOTSTRAP_MASTER="127.0.0.1:${R[0]}" REDIS_PASSWORD="$REDIS_PASSWORD" \
    SENTINEL_DIR="$WORK/pod-$i/sentinel" sh "$here/sentinel-node.sh" --bind 127.0.0.1
  POD_PIDS[i * 2 + 1]=${PIDS[-1]}
}
# The pod's readiness probe: both containers answer PING.
pod_ready() { redis-cli -p "${R[$1]}" ping | grep -q PONG && redis-cli -p "${S[$1]}" ping | grep -q PONG; }
role() { redis-cli -p "$1" role 2>/dev/null | head -n 1; }
# The master's port as sentinel $1 names it.
named_by() { redis-cli -p "$1" sentinel get-master-addr-by-name mymaster 2>/dev/null | sed -n 2p; }
field() { redis-cli -p "$1" sentinel master mymaster | awk -v f="$2" 'p {print; exit} $0 == f {p=1}'; }
linked_to() {
  local info
  info=$(redis-cli -p "$1" info replication 2>/dev/null | tr -d '\r')
  grep -qx "master_port:$2" <<<"$info" && grep -qx 'master_link_status:up' <<<"$info"
}

# --- 1. ordered start ----------------------------------------------------------------------------
for i in 0 1 2; do
  start_pod "$i"
  wait_until 20 pod_ready "$i" || die "pod $i did not become ready within 20 s"
done
settled() {
  [[ $(role "${R[0]}") == master ]] && linked_to "${R[1]}" "${R[0]}" && linked_to "${R[2]}" "${R[0]}" || return 1
  local s
  for s in "${S[@]}"; do
    [[ $(named_by "$s") == "${R[0]}" && $(field "$s" num-other-sentinels) == 2 && $(field "$s" num-slaves) == 2 ]] || return 1
  done
}
wait_until 30 settled || die "1 master + 2 replicas + 3 sentinels did not settle within 30 s"
log "1. settled: master :${R[0]}, replicas :${R[1]} :${R[2]}, sentinels ${S[*]}"
[[ $(redis-cli -p "${R[0]}" set k8s-check before-failover) == OK ]] || die "the write to the master failed"
[[ $(redis-cli -p "${R[0]}" wait 2 2000) == 2 ]] || die "the replicas did not confirm the write"

# --- 2. pod 0 killed -----------------------------------------------------------------------------
kill -9 "${POD_PIDS[0]}" "${POD_PIDS[1]}"
wait "${POD_PIDS[0]}" "${POD_PIDS[1]}" 2>/dev/null || true
t0=$SECONDS
promoted() {
  local m
  m=$(named_by "${S[1]}")
  [[ -n $m && $m != "${R[0]}" && $m == "$(named_by "${S[2]}")" && $(role "$m") == master ]]
}
wait_until 15 promoted || die "no replica was promoted within 15 s of pod 0's death"
NEW=$(named_by "${S[1]}")
log "2. pod 0 killed: :$NEW promoted after $((SECONDS - t0)) s"
[[ $(redis-cli -p "$NEW" get k8s-check) == before-failover ]] || die "the confirmed write is not on the new master"

# --- 3. pod 0 back -------------------------------------------------------------------------------
start_pod 0
masters_seen=0
deadline=$((SECONDS + 20))
until pod_ready 0 && linked_to "${R[0]}" "$NEW" && [[ $(named_by "${S[0]}") == "$NEW" ]]; do
  ((SECONDS < deadline)) || die "pod 0 did not rejoin as a replica of :$NEW within 20 s (role $(role "${R[0]}"))"
  [[ $(role "${R[0]}") != master ]] || masters_seen=$((masters_seen + 1))
  sleep 0.1
done
((masters_seen == 0)) || die "pod 0's Redis answered as a master $masters_seen time(s) while it rejoined"
grep -q 'starting as a replica' "$WORK/redis-0.log" || die "redis-node.sh did not start pod 0 as a replica"
grep -q 'resuming from' "$WORK/sentinel-0.log" || die "pod 0's sentinel did not resume from its rewritten file"
[[ $(redis-cli -p "${R[0]}" get k8s-check) == before-failover ]] || die "pod 0 lacks the confirmed write"
log "3. pod 0 rejoined as a replica of :$NEW, its sentinel names :$NEW"

# --- 4. a sentinel without its file ----------------------------------------------------------------
kill "${POD_PIDS[5]}"
wait_until 5 bash -c "! kill -0 ${POD_PIDS[5]} 2>/dev/null" || die "sentinel 2 did not stop"
rm -f "$WORK/pod-2/sentinel/sentinel.conf"
spawn "sentinel-2b" env POD_HOST=127.0.0.1 SENTINEL_PORT="${S[2]}" SENTINELS="$SENTINEL_LIST" \
  BOOTSTRAP_MASTER="127.0.0.1:${R[0]}" REDIS_PASSWORD="$REDIS_PASSWORD" \
  SENTINEL_DIR="$WORK/pod-2/sentinel" sh "$here/sentinel-node.sh" --bind 127.0.0.1
wait_until 10 bash -c "[[ \$(redis-cli -p ${S[2]} sentinel get-master-addr-by-name mymaster | sed -n 2p) == $NEW ]]" ||
  die "a sentinel started without its file does not monitor the current master :$NEW"
grep -q "first start, monitoring 127.0.0.1:$NEW" "$WORK/sentinel-2b.log" || die "sentinel 2 did not ask the others"
log "4. a sentinel without its file monitors :$NEW"

# --- 5. the rendered overlay -----------------------------------------------------------------------
if command -v kubectl >/dev/null 2>&1 && python3 -c 'import yaml' 2>/dev/null; then
  kubectl kustomize "$here" >"$WORK/rendered.yaml" || die "kubectl kustomize deploy/redis-ha/k8s failed"
  python3 "$here/rendered_check.py" "$WORK/rendered.yaml" "$here" || die "the rendered overlay is wrong"
  log "5. kubectl kustomize: the overlay renders as intended"
else
  log "5. SKIP: kubectl or python3's yaml is missing, the overlay was not rendered"
fi

FAILED=0
log "PASS"
