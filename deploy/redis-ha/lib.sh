# shellcheck shell=bash
# Shared by cluster.sh and sentinel.sh (sourced, not run): free loopback ports, processes that are
# always cleaned up, bounded waits, the app replicas and the balancer started from built binaries.
#
# Everything listens on 127.0.0.1 only. Every process started here is recorded by PID and killed
# by that PID on exit (normal, error, Ctrl-C or the watchdog), and its log is kept in $WORK; the
# logs are printed on failure and the directory removed on success (KEEP_WORK=1 keeps it).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Binaries: built into target/debug by default; BIN_DIR=/path uses prebuilt ones (e.g. target/release).
BIN_DIR_GIVEN=${BIN_DIR:-}
BIN_DIR=${BIN_DIR:-$ROOT/target/debug}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/redis-ha.XXXXXX")
PIDS=()
# Commands cleanup runs after the processes are gone (e.g. a compose project's teardown).
ON_EXIT=()
WATCHDOG=
FAILED=1
SCRIPT=$(basename "$0" .sh)
# A demo password, used for every Redis and in the URLs: exercises AUTH through cluster and sentinel.
# The admin (`default` user of deploy/redis/users.acl, also what redis-cli uses here) and the
# replicas' least-privilege `app` user: the data nodes run with the shipped ACL.
REDIS_PASSWORD=redis-ha-test-password
REDIS_APP_PASSWORD=redis-ha-app-password
export REDISCLI_AUTH=$REDIS_PASSWORD
ACL_FILE=$WORK/users.acl
REDIS_PASSWORD=$REDIS_PASSWORD REDIS_APP_PASSWORD=$REDIS_APP_PASSWORD ACL_RENDER_ONLY=1 \
  ACL_TEMPLATE="$ROOT/deploy/redis/users.acl" ACL_OUT="$ACL_FILE" sh "$ROOT/deploy/redis/start.sh"

log() { printf '[%s %s] %s\n' "$SCRIPT" "$(date +%H:%M:%S)" "$*" >&2; }

die() {
  log "FAIL: $*"
  exit 1
}

cleanup() {
  local code=$?
  if [[ -n $WATCHDOG ]]; then kill "$WATCHDOG" 2>/dev/null || true; fi
  # Newest first: the balancer and apps stop before the Redis they use.
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill "${PIDS[i]}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    # Bounded: anything still alive after 5 s is killed hard.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  local hook
  for hook in "${ON_EXIT[@]}"; do "$hook" || true; done
  if ((code != 0 || FAILED)); then
    log "logs of the failed run (last 8 lines each):"
    for f in "$WORK"/*.log; do
      [[ -f $f ]] || continue
      echo "----- $(basename "$f")" >&2
      tail -n 8 "$f" >&2
    done
    ((code != 0)) || code=1
  fi
  if [[ ${KEEP_WORK:-0} == 1 || $code != 0 ]]; then
    log "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ends the whole run after $1 seconds, whatever it is waiting for.
watchdog() {
  local limit=$1 main=$$
  (
    # Killed by cleanup: take the sleep along, so no orphan keeps the caller's output pipe open.
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    sleep "$limit" &
    nap=$!
    wait "$nap"
    echo "[$SCRIPT] FAIL: time limit of ${limit}s reached" >&2
    kill -TERM "$main" 2>/dev/null
  ) &
  WATCHDOG=$!
}

need() {
  local missing=()
  for cmd in "$@"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd"); done
  ((${#missing[@]} == 0)) || die "missing commands: ${missing[*]} (apt-get install redis-server redis-tools curl jq)"
}

# Builds the three binaries (a no-op when they are fresh), unless BIN_DIR names prebuilt ones.
binaries() {
  if [[ -z ${BIN_DIR_GIVEN:-} ]]; then
    log "cargo build -p app -p balancer -p loadtest (debug)"
    (cd "$ROOT" && cargo build -q -p app -p balancer -p loadtest --bins) || die "cargo build failed"
  fi
  for bin in app balancer loadtest; do
    [[ -x $BIN_DIR/$bin ]] || die "$BIN_DIR/$bin is missing"
  done
}

# True when nothing listens on 127.0.0.1:$1.
port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Sets the variable named $1 to a free loopback port; with $2 = offset, port+offset must be free too
# (Redis Cluster's bus port is port+10000). Ports handed out in this run are remembered so two calls
# never collide (a variable, not `$(...)`, so the memory survives: a subshell would forget it).
TAKEN=" "
free_port() {
  local _var=$1 _offset=${2:-0} _port
  for _ in $(seq 200); do
    # 10000-21999 (+10000 for a bus port: below 32000), clear of Linux's ephemeral range 32768+,
    # where the kernel picks outgoing ports and other tests bind port 0.
    _port=$((10000 + RANDOM % 12000))
    [[ $TAKEN == *" $_port "* || $TAKEN == *" $((_port + _offset)) "* ]] && continue
    if port_is_free "$_port" && { ((_offset == 0)) || port_is_free $((_port + _offset)); }; then
      TAKEN+="$_port $((_port + _offset)) "
      printf -v "$_var" '%s' "$_port"
      return 0
    fi
  done
  die "no free loopback port found"
}

# Starts "$@" in the background with its output in $WORK/$1.log (first argument = log name).
spawn() {
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}

# Polls `$2...` every 0.1 s until it succeeds or $1 seconds have passed.
wait_until() {
  local limit=$1
  shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# Like wait_until, but gives up at once when process $2 has exited (e.g. its port was taken).
wait_alive() {
  local limit=$1 pid=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# HTTP status of GET $1 (000 when nothing answered).
status_of() {
  curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true
}

is_ok() { [[ $(status_of "$1") == 200 ]]; }

# Starts $1 app replicas on REDIS_URL=$2; sets APP_PORTS. Extra env (SESSION_LOCK=...) comes from
# the caller's environment via APP_ENV (an array of NAME=value).
APP_PORTS=()
start_apps() {
  local count=$1 url=$2 i port
  for ((i = 0; i < count; i++)); do
    free_port port
    spawn "app-$i" env LISTEN_ADDR="127.0.0.1:$port" NODE_NAME="$SCRIPT-app-$i" REDIS_URL="$url" \
      SESSION_LOCK=on RUST_LOG="${APP_LOG:-info}" "${APP_ENV[@]}" "$BIN_DIR/app"
    APP_PORTS+=("$port")
  done
  for port in "${APP_PORTS[@]}"; do
    wait_until 30 is_ok "http://127.0.0.1:$port/readyz" ||
      die "app on port $port not ready within 30 s (its /readyz: $(status_of "http://127.0.0.1:$port/readyz"))"
  done
  log "${#APP_PORTS[@]} app replicas ready on ports ${APP_PORTS[*]}"
}
APP_ENV=()

# Starts the balancer in front of APP_PORTS; sets BALANCER (its base URL) and BALANCER_ADMIN.
start_balancer() {
  local port admin upstreams
  free_port port
  free_port admin
  upstreams=$(printf '127.0.0.1:%s,' "${APP_PORTS[@]}")
  spawn balancer env LISTEN_ADDR="127.0.0.1:$port" ADMIN_ADDR="127.0.0.1:$admin" \
    UPSTREAMS="${upstreams%,}" HEALTH_INTERVAL=500ms EJECT_COOLDOWN=2s RUST_LOG=warn "$BIN_DIR/balancer"
  BALANCER=http://127.0.0.1:$port
  BALANCER_ADMIN=http://127.0.0.1:$admin
  wait_until 20 is_ok "$BALANCER_ADMIN/healthz" || die "balancer admin not up within 20 s"
  # A replica in rotation has passed the balancer's /readyz check (the public port hides /readyz).
  wait_until 20 has_ready_replica || die "balancer does not reach a ready replica within 20 s"
  log "balancer on $BALANCER (admin $BALANCER_ADMIN)"
}

# True when the balancer has a replica in rotation and routes `GET /` to one.
has_ready_replica() {
  curl -sf -m 2 "$BALANCER_ADMIN/status" | grep -Eq '"healthy":[1-9]' && is_ok "$BALANCER/"
}

# Runs the loadtest with "$@", its table on stderr, its JSON report in $WORK/$1.json (first argument
# = report name). Returns the loadtest's exit code.
loadtest() {
  local name=$1 code=0
  shift
  "$BIN_DIR/loadtest" --target "$BALANCER" --no-progress --json "$@" >"$WORK/$name.json" 2>"$WORK/$name.log" || code=$?
  return "$code"
}

# One field of a loadtest JSON report, e.g. `field seq .common.errors`.
field() { jq -r "$2" "$WORK/$1.json"; }
