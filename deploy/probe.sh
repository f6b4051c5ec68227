#!/bin/bash
# HTTP health probe for HEALTHCHECK, in plain bash (/dev/tcp), so runtime images need no curl or wget.
#
# Usage: probe.sh ADDR_VAR PATH
#   ADDR_VAR names the environment variable holding the service's listen address (LISTEN_ADDR, ADMIN_ADDR);
#   only its port is used and the probe always dials 127.0.0.1, because a wildcard bind (0.0.0.0, [::]) is
#   not an address one can connect to. Exit 0 only on an HTTP 200 status line.
set -u
var=${1:?usage: probe.sh ADDR_VAR PATH}
path=${2:?usage: probe.sh ADDR_VAR PATH}
addr=${!var:-}
port=${addr##*:}
[[ $port =~ ^[0-9]+$ ]] || { echo "probe: \$$var='$addr' has no port" >&2; exit 2; }
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 3 status <&3 || exit 1
[[ $status =~ ^HTTP/1\.[01]\ 200 ]] || { echo "probe: $path answered: ${status%$'\r'}" >&2; exit 1; }
