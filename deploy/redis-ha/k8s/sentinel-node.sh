#!/bin/sh
# Starts one Sentinel of the set (deploy/redis-ha/k8s), beside the Redis of the same pod.
#
# Its configuration lives in $SENTINEL_DIR (on the pod's volume): Sentinel rewrites that file with
# what it learns (the current master, the config epoch, the other sentinels, its own id), so a
# restarted sentinel resumes where it was. On the first start the file is written here, monitoring
# the master another sentinel names, or $BOOTSTRAP_MASTER when none answers.
#
# Env: POD_HOST, SENTINEL_PORT (26379), SENTINELS ("host:port ..."), BOOTSTRAP_MASTER (host:port),
#      MASTER_NAME (mymaster), QUORUM (2), DOWN_AFTER_MS (2000), FAILOVER_TIMEOUT_MS (10000),
#      REDIS_PASSWORD (the sentinels' own password and the masters' `default` user), SENTINEL_DIR.
set -eu
: "${POD_HOST:?set POD_HOST}" "${SENTINELS:?set SENTINELS}" "${BOOTSTRAP_MASTER:?set BOOTSTRAP_MASTER}"
: "${REDIS_PASSWORD:?set REDIS_PASSWORD}" "${SENTINEL_DIR:?set SENTINEL_DIR}"
port=${SENTINEL_PORT:-26379}
name=${MASTER_NAME:-mymaster}
conf=$SENTINEL_DIR/sentinel.conf
mkdir -p "$SENTINEL_DIR"

if [ ! -s "$conf" ]; then
    master=
    for s in $SENTINELS; do
        [ "$s" != "$POD_HOST:$port" ] || continue
        master=$(REDISCLI_AUTH=$REDIS_PASSWORD timeout 3 redis-cli -h "${s%:*}" -p "${s##*:}" \
            sentinel get-master-addr-by-name "$name" 2>/dev/null | paste -sd: - |
            grep -E '^[^:]+:[0-9]+$' || true)
        [ -z "$master" ] || break
    done
    master=${master:-$BOOTSTRAP_MASTER}
    echo "sentinel-node: first start, monitoring $master"
    umask 077
    cat >"$conf" <<CONF
port $port
dir $SENTINEL_DIR
requirepass $REDIS_PASSWORD
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $POD_HOST
sentinel announce-port $port
sentinel monitor $name ${master%:*} ${master##*:} ${QUORUM:-2}
sentinel auth-pass $name $REDIS_PASSWORD
sentinel down-after-milliseconds $name ${DOWN_AFTER_MS:-2000}
sentinel failover-timeout $name ${FAILOVER_TIMEOUT_MS:-10000}
sentinel parallel-syncs $name 1
CONF
else
    echo "sentinel-node: resuming from $conf"
fi
exec redis-server "$conf" --sentinel "$@"
