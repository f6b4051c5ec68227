#!/usr/bin/env bash
# Throughput of the loadtest's --throughput mode against wrk, in the same run, on the same
# trivial endpoint: nginx answering `return 200` (one worker, access log off), on loopback.
# Prints each round and the ratio loadtest/wrk of the median req/s (the target is >= 0.8), and
# each tool's CPU time per request (user+sys from /usr/bin/time), which is less sensitive to
# other load on the machine than req/s: the generator that needs less CPU leaves more to the
# server on a 2-core box.
#
# Usage: loadtest/bench/vs_wrk.sh [duration_s=10] [connections=64] [rounds=3]
# Env:   WRK=/usr/bin/wrk  NGINX=nginx  THREADS=2 (wrk -t and loadtest --threads)
#        TARGET=app  to hit the app's /healthz (needs a running app on APP_URL) instead of nginx.
set -euo pipefail

DURATION="${1:-10}"
CONNECTIONS="${2:-64}"
ROUNDS="${3:-3}"
WRK="${WRK:-/usr/bin/wrk}"
NGINX="${NGINX:-nginx}"
THREADS="${THREADS:-2}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

command -v "$WRK" >/dev/null || { echo "wrk not found at $WRK (apt-get install wrk)" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is needed to read the JSON report (apt-get install jq)" >&2; exit 2; }

echo "building loadtest (release)…" >&2
cargo build --release -p loadtest --manifest-path "$ROOT/Cargo.toml" >&2
LOADTEST="$ROOT/target/release/loadtest"

WORK="$(mktemp -d)"
NGINX_PID=""
cleanup() {
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "${TARGET:-nginx}" = "app" ]; then
  URL="${APP_URL:-http://127.0.0.1:3000}/healthz"
  PEER_DESC="app /healthz at $URL"
else
  command -v "$NGINX" >/dev/null || { echo "nginx not found (apt-get install nginx-light)" >&2; exit 2; }
  PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  mkdir -p "$WORK/tmp"
  cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/tmp;
  proxy_temp_path $WORK/tmp;
  fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp;
  scgi_temp_path $WORK/tmp;
  server {
    listen 127.0.0.1:$PORT;
    location / { return 200 "ok\n"; }
  }
}
CONF
  "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" &
  NGINX_PID=$!
  for _ in $(seq 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    sleep 0.1
  done
  URL="http://127.0.0.1:$PORT/"
  PEER_DESC="nginx 'return 200' (1 worker) at $URL"
fi

echo "target: $PEER_DESC; ${DURATION}s per run, $CONNECTIONS connections, $THREADS threads, $ROUNDS rounds"
echo "machine: $(nproc) cores; $("$WRK" -v 2>&1 | head -1 | cut -d' ' -f1-2)"

TIME=""
[ -x /usr/bin/time ] && TIME="/usr/bin/time -f %U+%S -o $WORK/cpu"
cpu_per_req() { # rps -> microseconds of CPU per request in the last run, or "-"
  if [ -n "$TIME" ]; then
    tail -1 "$WORK/cpu" | awk -F+ -v r="$1" -v d="$DURATION" '{printf "%.2f", ($1 + $2) / (r * d) * 1e6}'
  else
    echo "-"
  fi
}

wrk_rps=()
lt_rps=()
wrk_cpu=()
lt_cpu=()
for round in $(seq "$ROUNDS"); do
  # wrk first in odd rounds, loadtest first in even ones, so neither always runs on a warmer box.
  for tool in $( [ $((round % 2)) -eq 1 ] && echo "wrk loadtest" || echo "loadtest wrk"); do
    if [ "$tool" = wrk ]; then
      rps="$($TIME "$WRK" -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "$URL" | awk '/^Requests\/sec:/ {print $2}')"
      wrk_rps+=("$rps")
      cpu="$(cpu_per_req "$rps")"
      wrk_cpu+=("$cpu")
    else
      rps="$($TIME "$LOADTEST" --target "${URL%/healthz}" --throughput --path "$( [ "${TARGET:-nginx}" = app ] && echo /healthz || echo / )" \
        --connections "$CONNECTIONS" --duration "${DURATION}s" --threads "$THREADS" --json --no-progress \
        | jq -r '.req_per_s')"
      lt_rps+=("$rps")
      cpu="$(cpu_per_req "$rps")"
      lt_cpu+=("$cpu")
    fi
    printf 'round %d  %-9s %12.1f req/s   cpu %s us/req\n' "$round" "$tool" "$rps" "$cpu"
  done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
W="$(median "${wrk_rps[@]}")"
L="$(median "${lt_rps[@]}")"
awk -v w="$W" -v l="$L" 'BEGIN {
  printf "median  wrk %.1f req/s, loadtest %.1f req/s, ratio loadtest/wrk = %.2f (target >= 0.80): %s\n",
    w, l, l / w, (l / w >= 0.8 ? "OK" : "BELOW TARGET")
}'
if [ -n "$TIME" ]; then
  WC="$(median "${wrk_cpu[@]}")"
  LC="$(median "${lt_cpu[@]}")"
  awk -v w="$WC" -v l="$LC" 'BEGIN { printf "median  cpu per request: wrk %.2f us, loadtest %.2f us (loadtest/wrk = %.2f)\n", w, l, l / w }'
fi
