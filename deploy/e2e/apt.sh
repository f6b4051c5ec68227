# shellcheck shell=bash
# Sourced by the deploy scripts: install Debian packages on a fresh machine, where the package lists may be
# missing or stale (then one `apt-get update` and a second try).
# Usage: apt_install LOGFILE PACKAGE...
apt_install() {
    local logfile=$1
    shift
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "$@" >>"$logfile" 2>&1 && return 0
    apt-get update -q >>"$logfile" 2>&1 && apt-get install -y -q "$@" >>"$logfile" 2>&1
}
