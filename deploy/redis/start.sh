#!/bin/sh
# Starts redis-server with deploy/redis/users.acl: fills in the SHA-256 of REDIS_PASSWORD (the
# `default` admin user) and REDIS_APP_PASSWORD (the app's least-privilege `app` user), writes
# the result outside the data volume, and execs redis-server with `--aclfile` and any further
# arguments. Works with the official image (its entrypoint drops to the redis user) and with any
# image that has sh, sed and sha256sum.
#
#   start.sh [redis-server options...]      ACL_TEMPLATE=/etc/redis/users.acl by default
#   ACL_RENDER_ONLY=1 ACL_OUT=FILE start.sh  only writes FILE (the HA test scripts use this)
set -eu
: "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
: "${REDIS_APP_PASSWORD:?set REDIS_APP_PASSWORD}"
template=${ACL_TEMPLATE:-/etc/redis/users.acl}
out=${ACL_OUT:-/tmp/redis-users.acl}
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
umask 077
# Redis's ACL files take no comments: they are dropped here.
sed -e '/^#/d' -e '/^[[:space:]]*$/d' \
    -e "s/@ADMIN_SHA256@/$(sha "$REDIS_PASSWORD")/" \
    -e "s/@APP_SHA256@/$(sha "$REDIS_APP_PASSWORD")/" "$template" >"$out"
[ -z "${ACL_RENDER_ONLY:-}" ] || exit 0
if [ "$(id -u)" = 0 ] && id redis >/dev/null 2>&1; then chown redis "$out"; fi
if command -v docker-entrypoint.sh >/dev/null 2>&1; then
    exec docker-entrypoint.sh redis-server --aclfile "$out" "$@"
fi
exec redis-server --aclfile "$out" "$@"
