#!/bin/sh
# Starts one Redis of the Sentinel set (deploy/redis-ha/k8s) as the master or as a replica of the
# master the sentinels name now, so a pod that restarts after a failover rejoins as a replica and
# never comes back as a second master.
#
#   1. Ask every sentinel in $SENTINELS for $MASTER_NAME's address; the first answer wins.
#   2. No sentinel answers (the very first start): $BOOTSTRAP_MASTER is the master.
#   3. Start as master when that address is this server's ($POD_HOST:$REDIS_PORT), else as its
#      replica; Sentinel reconfigures it later if the answer goes stale.
#
# It then execs $START_SH (deploy/redis/start.sh: the shipped ACL with the passwords' hashes) with
# the role's options and any further arguments. POSIX sh, redis-cli and timeout: the official image
# has them.
#
# Env: POD_HOST (this server's stable name, announced to the sentinels), REDIS_PORT (6379),
#      SENTINELS ("host:port host:port ..."), BOOTSTRAP_MASTER (host:port), MASTER_NAME (mymaster),
#      REDIS_PASSWORD (the `default` user's, also the sentinels' and masterauth), START_SH.
set -eu
: "${POD_HOST:?set POD_HOST}" "${SENTINELS:?set SENTINELS}" "${BOOTSTRAP_MASTER:?set BOOTSTRAP_MASTER}"
: "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
port=${REDIS_PORT:-6379}
name=${MASTER_NAME:-mymaster}
start=${START_SH:-/etc/redis/start.sh}

# The master's host:port as one sentinel sees it, or nothing.
ask() {
    host=${1%:*}
    sport=${1##*:}
    REDISCLI_AUTH=$REDIS_PASSWORD timeout 3 redis-cli -h "$host" -p "$sport" \
        sentinel get-master-addr-by-name "$name" 2>/dev/null | paste -sd: - | grep -E '^[^:]+:[0-9]+$' || true
}

master=
for s in $SENTINELS; do
    master=$(ask "$s")
    [ -z "$master" ] || break
done
how="named by the sentinels"
if [ -z "$master" ]; then
    master=$BOOTSTRAP_MASTER
    how="no sentinel answered: the bootstrap master"
fi

set -- --port "$port" --replica-announce-ip "$POD_HOST" --replica-announce-port "$port" \
    --masterauth "$REDIS_PASSWORD" "$@"
if [ "$master" = "$POD_HOST:$port" ]; then
    echo "redis-node: starting as the master ($how)"
else
    echo "redis-node: starting as a replica of $master ($how)"
    set -- "$@" --replicaof "${master%:*}" "${master##*:}"
fi
exec sh "$start" "$@"
