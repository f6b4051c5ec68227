#!/usr/bin/env bash
# Benchmark: TLS termination, the balancer vs nginx vs HAProxy, same run, same certificate,
# same settings (TLS 1.3, X25519, one worker each, upstream keep-alive), alternating order.
#
# Run with (from anywhere in the repo):
#   balancer/bench/tls.sh
#   DURATION=10s CONNS=64 ROUNDS=5 balancer/bench/tls.sh
#   NO_BUILD=1 balancer/bench/tls.sh            # use the release balancer already built
#
# The upstreams are three ports of a separate nginx answering `return 200` (as vs_nginx.sh's
# MODE=proxy), so what is measured is the TLS proxy hop itself. Per proxy and round:
#   - h1:   requests/s over kept-alive TLS connections, HTTP/1.1 (wrk);
#   - h2:   requests/s over kept-alive TLS connections, HTTP/2 (h2load, CONNS connections,
#           STREAMS streams each);
#   - hs:   new TLS connections/s: one request per connection, `Connection: close` (wrk,
#           which resumes the TLS session on reconnect where allowed: all three keep a
#           stateful session cache and issue no stateless tickets, rustls' default);
#   - proxy CPU per request (user+sys ticks of the proxy's processes / requests);
# and once per proxy the RSS with 1,000 idle TLS connections (each made one request).
# Medians over ROUNDS, with ratios against nginx; which crypto provider the balancer uses is
# printed (ring: see balancer/src/tls/mod.rs).
# Requires: cargo, nginx, haproxy, wrk, h2load (apt-get install nghttp2-client), openssl,
# curl, python3. Loopback only; stops by itself.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
STREAMS=${STREAMS:-10}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
BASE_PORT=${BASE_PORT:-22000}

# shellcheck source=bench/common.sh
source "$(dirname "$0")/../../bench/common.sh"
need_tools "nginx haproxy wrk nghttp2-client openssl curl python3" nginx haproxy wrk h2load openssl curl python3
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

UPSTREAM_PORTS=($((BASE_PORT + 11)) $((BASE_PORT + 12)) $((BASE_PORT + 13)))
LB_PLAIN=$((BASE_PORT + 80))
LB_ADMIN=$((BASE_PORT + 81))
LB_TLS=$((BASE_PORT + 82))
NGINX_TLS=$((BASE_PORT + 90))
HAPROXY_TLS=$((BASE_PORT + 91))
SECS=${DURATION%s}

if [[ -z "${NO_BUILD:-}" ]]; then
    echo "== building the release balancer"
    (cd "$ROOT" && cargo build --release -q -p balancer)
fi

echo "== one certificate for all three (ECDSA P-256, localhost and 127.0.0.1)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"

echo "== starting the upstreams (one nginx, return 200)"
mkdir -p "$WORK/upstream"
{
    echo "worker_processes 1; daemon off; pid $WORK/upstream.pid;"
    echo "error_log $WORK/upstream/error.log warn;"
    echo "events { worker_connections 8192; }"
    echo "http { access_log off; keepalive_requests 1000000;"
    for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $WORK/upstream/$t;"; done
    for p in "${UPSTREAM_PORTS[@]}"; do echo "  server { listen 127.0.0.1:$p; location / { return 200 \"ok\\n\"; } }"; done
    echo "}"
} >"$WORK/upstream.conf"
nginx -p "$WORK/upstream" -e "$WORK/upstream/error.log" -c "$WORK/upstream.conf" &
PIDS+=($!)
for p in "${UPSTREAM_PORTS[@]}"; do wait_for "http://127.0.0.1:$p/" "upstream on $p"; done

echo "== starting the balancer, nginx and HAProxy (one worker each, TLS 1.3, X25519)"
UPSTREAMS=$(printf '127.0.0.1:%s,' "${UPSTREAM_PORTS[@]}")
WORKER_THREADS=1 INTERNAL_PATHS=none HEALTH_PATH=/ UPSTREAMS=${UPSTREAMS%,} \
    LISTEN_ADDR=127.0.0.1:$LB_PLAIN ADMIN_ADDR=127.0.0.1:$LB_ADMIN TLS_LISTEN_ADDR=127.0.0.1:$LB_TLS \
    TLS_CERT="$WORK/cert.pem" TLS_KEY="$WORK/key.pem" RUST_LOG=warn \
    "$TARGET_DIR/release/balancer" >"$WORK/balancer.log" 2>&1 &
LB_PID=$!
PIDS+=($LB_PID)

mkdir -p "$WORK/nginx"
{
    echo "worker_processes 1; daemon off; pid $WORK/nginx.pid;"
    echo "error_log $WORK/nginx/error.log warn;"
    echo "events { worker_connections 8192; }"
    echo "http { access_log off; keepalive_requests 1000000;"
    for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $WORK/nginx/$t;"; done
    echo "  upstream app {"
    for p in "${UPSTREAM_PORTS[@]}"; do echo "    server 127.0.0.1:$p;"; done
    echo "    keepalive 256;"
    echo "  }"
    echo "  server {"
    echo "    listen 127.0.0.1:$NGINX_TLS ssl http2;"
    echo "    ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;"
    echo "    ssl_protocols TLSv1.3; ssl_ecdh_curve X25519;"
    # Resumption as the balancer (rustls' default): a stateful session cache, no stateless
    # tickets. wrk resumes the session on each reconnect when the server allows it.
    echo "    ssl_session_cache shared:SSL:10m; ssl_session_tickets off;"
    echo "    http2_max_concurrent_streams 128;"
    echo "    location / {"
    echo "      proxy_pass http://app; proxy_http_version 1.1;"
    echo "      proxy_set_header Connection \"\"; proxy_set_header Host \$host;"
    echo "      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;"
    echo "      proxy_set_header X-Forwarded-Proto \$scheme;"
    echo "    }"
    echo "  }"
    echo "}"
} >"$WORK/nginx.conf"
nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)

{
    echo "global"
    echo "  nbthread 1"
    echo "  maxconn 3000" # two descriptors per connection: within an 8192 ulimit
    echo "  ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets"
    echo "  ssl-default-bind-curves X25519"
    echo "defaults"
    echo "  mode http"
    echo "  timeout connect 1s"
    echo "  timeout client 30s"
    echo "  timeout server 30s"
    echo "  timeout http-keep-alive 30s"
    echo "  option http-keep-alive"
    echo "  option forwardfor"
    echo "frontend tls"
    echo "  bind 127.0.0.1:$HAPROXY_TLS ssl crt $WORK/haproxy.pem alpn h2,http/1.1"
    echo "  http-request set-header X-Forwarded-Proto https"
    echo "  default_backend app"
    echo "backend app"
    echo "  balance roundrobin"
    echo "  http-reuse always"
    for p in "${UPSTREAM_PORTS[@]}"; do echo "  server u$p 127.0.0.1:$p"; done
} >"$WORK/haproxy.cfg"
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=($HAPROXY_PID)

for port in $LB_TLS $NGINX_TLS $HAPROXY_TLS; do
    for _ in $(seq 1 100); do
        curl -fsk -o /dev/null "https://127.0.0.1:$port/" && break
        sleep 0.1
    done
    curl -fsk -o /dev/null "https://127.0.0.1:$port/" || { echo "TLS port $port did not come up" >&2; exit 1; }
done
for port in $LB_TLS $NGINX_TLS $HAPROXY_TLS; do
    printf '  %s: %s\n' "$port" "$(curl -sk --http2 -o /dev/null -w '%{http_version}' "https://127.0.0.1:$port/") \
$(echo | openssl s_client -connect "127.0.0.1:$port" -servername localhost 2>/dev/null | grep -E '^(New|Server Temp Key)' | tr '\n' ' ')"
done

port_of() { case $1 in balancer) echo "$LB_TLS" ;; nginx) echo "$NGINX_TLS" ;; haproxy) echo "$HAPROXY_TLS" ;; esac; }
proxy_pids() { # who -> pids to account (nginx: master + worker)
    case $1 in
    balancer) echo "$LB_PID" ;;
    nginx) echo "$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')" ;;
    haproxy) echo "$HAPROXY_PID" ;;
    esac
}
cpu_ticks() {
    local t=0 pid f
    for pid in "$@"; do
        read -r -a f <"/proc/$pid/stat"
        t=$((t + f[13] + f[14]))
    done
    echo "$t"
}
rss_mb() {
    local total=0 pid
    for pid in "$@"; do total=$((total + $(awk '/^VmRSS/{print $2}' "/proc/$pid/status"))); done
    awk -v k="$total" 'BEGIN{printf "%.1f", k/1024}'
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

measure() { # who test -> "rate cpu_us_per_req errors"
    local who=$1 test=$2 port pids c0 c1 out rate n errs
    port=$(port_of "$who")
    read -r -a pids <<<"$(proxy_pids "$who")"
    c0=$(cpu_ticks "${pids[@]}")
    case $test in
    h1)
        out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "https://127.0.0.1:$port/")
        rate=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
        n=$(awk '/requests in/{print $1}' <<<"$out")
        errs=$(awk '/Non-2xx|Socket errors/{s=s $0 "; "} END{print (s==""?"none":s)}' <<<"$out")
        ;;
    hs)
        out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -H "Connection: close" "https://127.0.0.1:$port/")
        rate=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
        n=$(awk '/requests in/{print $1}' <<<"$out")
        errs=$(awk '/Non-2xx/{s=s $0 "; "} END{print (s==""?"none":s)}' <<<"$out")
        ;;
    h2)
        out=$(h2load -t"$THREADS" -c"$CONNS" -m"$STREAMS" -D"$SECS" "https://127.0.0.1:$port/" 2>&1)
        rate=$(awk '/^finished in/{gsub(",","",$4); print $4}' <<<"$out")
        n=$(awk '/^requests:/{print $8}' <<<"$out")
        errs=$(awk '/^requests:/{print "failed " $10 ", errored " $12}' <<<"$out")
        ;;
    esac
    c1=$(cpu_ticks "${pids[@]}")
    cpu=$(awk -v c=$((c1 - c0)) -v t="$TICK_US" -v n="${n:-0}" 'BEGIN{if (n>0) printf "%.1f", c*t/n; else print "nan"}')
    echo "$rate $cpu $errs"
}

# 1,000 TLS connections that each make one request, then stay open and idle.
{
    echo 'import socket, ssl, sys, time'
    echo 'port, secs = int(sys.argv[1]), float(sys.argv[2])'
    echo 'ctx = ssl.create_default_context(cafile=sys.argv[3])'
    echo 'ctx.minimum_version = ssl.TLSVersion.TLSv1_3'
    echo 'ctx.set_alpn_protocols(["http/1.1"])'
    echo 'conns = []'
    echo 'for _ in range(1000):'
    echo '    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")'
    echo '    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")'
    echo '    s.settimeout(5)'
    echo '    s.recv(4096)'
    echo '    conns.append(s)'
    echo 'time.sleep(secs)'
} >"$WORK/hold.py"
MEM="$WORK/mem.txt"
mem_idle() { # who
    local pids holder before idle
    read -r -a pids <<<"$(proxy_pids "$1")"
    before=$(rss_mb "${pids[@]}")
    python3 "$WORK/hold.py" "$(port_of "$1")" 8 "$WORK/cert.pem" &
    holder=$!
    sleep 7
    idle=$(rss_mb "${pids[@]}")
    wait "$holder" || true
    printf '  %-8s RSS %6s MB before, %6s MB with 1,000 idle TLS connections (%s KB per connection)\n' \
        "$1" "$before" "$idle" "$(awk -v a="$before" -v b="$idle" 'BEGIN{printf "%.1f", (b-a)*1024/1000}')" | tee -a "$MEM"
}

PROXIES="balancer nginx haproxy"
echo "== warm-up"
for who in $PROXIES; do wrk -t1 -c"$CONNS" -d2s "https://127.0.0.1:$(port_of "$who")/" >/dev/null; done

echo "== memory with 1,000 idle TLS connections"
for who in $PROXIES; do mem_idle "$who"; done

RESULTS="$WORK/results.tsv"
echo "== $ROUNDS rounds x {h1, h2, hs} x {$PROXIES}: -c$CONNS -d$DURATION (h2: -m$STREAMS)"
for round in $(seq 1 "$ROUNDS"); do
    # Rotate who goes first.
    case $((round % 3)) in
    1) order="balancer nginx haproxy" ;;
    2) order="nginx haproxy balancer" ;;
    0) order="haproxy balancer nginx" ;;
    esac
    for test in h1 h2 hs; do
        for who in $order; do
            read -r rate cpu errs <<<"$(measure "$who" "$test")"
            printf '%s\t%s\t%s\t%s\t%s\n' "$test" "$who" "$rate" "$cpu" "$errs" >>"$RESULTS"
            printf '  round %d %-3s %-8s %10s req/s  proxy CPU %6s us/req  errors: %s\n' "$round" "$test" "$who" "$rate" "$cpu" "$errs"
        done
    done
done

echo
echo "== medians over $ROUNDS rounds (ring provider in the balancer)"
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
runs = {}
for test, who, rate, cpu, _ in rows:
    try:
        runs.setdefault((test, who), []).append((float(rate), float(cpu)))
    except ValueError:
        pass
names = {"h1": "HTTP/1.1 kept-alive req/s", "h2": "h2 kept-alive req/s", "hs": "new TLS connections/s"}
print("| test | proxy | rate | proxy CPU µs/req | rate vs nginx | CPU/req vs nginx |")
print("|---|---|---|---|---|---|")
for test in ("h1", "h2", "hs"):
    med = {w: [statistics.median(r[i] for r in runs.get((test, w), [(0, 0)])) for i in range(2)]
           for w in ("balancer", "nginx", "haproxy")}
    n = med["nginx"]
    for who in ("balancer", "nginx", "haproxy"):
        rate, cpu = med[who]
        rr = rate / n[0] if n[0] else float("nan")
        cr = cpu / n[1] if n[1] else float("nan")
        print(f"| {names[test]} | {who} | {rate:,.0f} | {cpu:.1f} | {rr:.2f}x | {cr:.2f}x |")
PY
echo
cat "$MEM"
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine competes for the same cores)"
