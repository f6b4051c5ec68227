#!/usr/bin/env bash
# The hostile request heads of issue 23, sent on raw sockets to the balancer and to nginx in
# front of the same two backends, in the same run: prints, for each case, the status line each
# proxy answered and what reached the backend; then 30 uploads that the backends answer 404
# before reading them (and close: the unread body makes it a reset), with the answers each
# proxy gave and how often it took a backend out of rotation.
#
#   balancer/bench/rfc_vs_nginx.sh            # NO_BUILD=1 skips the release build
#
# Not a benchmark (nothing is timed): a behaviour comparison, reproducible, for the balancer's
# section of README.md. The backends are a small Python server on raw sockets (it echoes the
# head it got; `/upload*` gets 404 at once and a close; `/many` answers with 120 Set-Cookie
# lines; a request with `Upgrade` gets a 101 to the protocol asked for). nginx 1.22 runs
# with the configuration a WebSocket-capable nginx in front of such an app usually has:
# `proxy_http_version 1.1`, `proxy_request_buffering off`, `Upgrade $http_upgrade` and
# `Connection $connection_upgrade`, `max_fails=1 fail_timeout=10s`, the forwarding headers
# set, and `location = /metrics|/readyz|/healthz { return 404; }` for the internal paths.
# The balancer runs with its defaults (1 worker). Loopback only; stops by itself.
set -euo pipefail

BASE_PORT=${BASE_PORT:-25000}
# shellcheck source=bench/common.sh
source "$(dirname "$0")/../../bench/common.sh"
need_tools "nginx python3 curl" nginx python3 curl
if [[ -z "${NO_BUILD:-}" ]]; then
    (cd "$ROOT" && cargo build --release -q -p balancer)
fi

BACKENDS=($((BASE_PORT + 11)) $((BASE_PORT + 12)))
LB_PORT=$((BASE_PORT + 80))
LB_ADMIN=$((BASE_PORT + 81))
NGINX_PORT=$((BASE_PORT + 90))

cat >"$WORK/backend.py" <<'PY'
import socket, sys, threading, time

port, log = int(sys.argv[1]), sys.argv[2]

def serve(conn):
    with conn:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 1 << 20:
            chunk = conn.recv(65536)
            if not chunk:
                return
            head += chunk
        head = head.split(b"\r\n\r\n")[0].decode("latin-1")
        lines = head.split("\r\n")
        path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else ""
        headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        if path != "/readyz":
            with open(log, "a") as f:
                f.write(head.replace("\r\n", "\n") + "\n\n")
        if path == "/readyz":
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        elif path.startswith("/upload"):
            conn.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found")
        elif path == "/many":
            cookies = "".join(f"set-cookie: c{i}=v{i}\r\n" for i in range(120))
            conn.sendall(f"HTTP/1.1 200 OK\r\n{cookies}content-length: 2\r\nconnection: close\r\n\r\nok".encode())
        elif "upgrade" in headers:
            conn.sendall(f"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: {headers['upgrade']}\r\n\r\ntunnel".encode())
            time.sleep(0.3)
        else:
            body = head.lower().encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(128)
while True:
    c, _ = listener.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY

for p in "${BACKENDS[@]}"; do
    python3 "$WORK/backend.py" "$p" "$WORK/backend.log" &
    PIDS+=($!)
done

env WORKER_THREADS=1 RUST_LOG=warn \
    UPSTREAMS="127.0.0.1:${BACKENDS[0]},127.0.0.1:${BACKENDS[1]}" \
    LISTEN_ADDR=127.0.0.1:$LB_PORT ADMIN_ADDR=127.0.0.1:$LB_ADMIN \
    "$TARGET_DIR/release/balancer" >"$WORK/balancer.log" 2>&1 &
PIDS+=($!)

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1; daemon off; master_process off; pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    $(for t in client_body proxy fastcgi uwsgi scgi; do echo "${t}_temp_path $WORK/nginx/$t;"; done)
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    upstream app {
        server 127.0.0.1:${BACKENDS[0]} max_fails=1 fail_timeout=10s;
        server 127.0.0.1:${BACKENDS[1]} max_fails=1 fail_timeout=10s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location = /metrics { return 404; }
        location = /readyz { return 404; }
        location = /healthz { return 404; }
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_request_buffering off;
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
        }
    }
}
EOF
nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)

wait_for "http://127.0.0.1:$LB_ADMIN/healthz" balancer 30
for _ in $(seq 1 100); do
    [[ $(curl -fs "http://127.0.0.1:$LB_ADMIN/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["healthy"])') == 2 ]] && break
    sleep 0.1
done
wait_for "http://127.0.0.1:$NGINX_PORT/ready-check" nginx 10

echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'); balancer: $(git -C "$ROOT" rev-parse --short HEAD)"
python3 - "$LB_PORT" "$NGINX_PORT" "$WORK/backend.log" "$LB_ADMIN" "$WORK/nginx/error.log" <<'PY'
import json, os, socket, sys, urllib.request

lb, ng, log, admin, nginx_errors = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]

def exchange(port, request):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(3)
    out = b""
    try:
        s.sendall(request)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    finally:
        s.close()
    return out.decode("latin-1")

def logged():
    return open(log).read() if os.path.exists(log) else ""

def run(port, request, probe):
    before = len(logged())
    answer = exchange(port, request)
    seen = logged()[before:]
    status = " ".join(answer.split("\r\n")[0].split(" ")[:2]) or "(closed, no answer)"
    reached = "not forwarded" if not seen else probe(seen, answer)
    return status, reached

def req(line, *headers, close=True):
    h = "".join(f"{x}\r\n" for x in headers)
    c = "connection: close\r\n" if close else ""
    return f"{line}\r\n{h}{c}\r\n".encode("latin-1")

forwarded = lambda seen, answer: "forwarded"
def carried(what):
    return lambda seen, answer: f"forwarded, {what} " + ("reached the backend" if what.lower() in seen.lower() else "dropped")
def cookies(seen, answer):
    return f"forwarded, {answer.lower().count('set-cookie:')} Set-Cookie relayed"
def upgrade(seen, answer):
    up = "upgrade:" in seen.lower()
    return "forwarded " + ("with Upgrade" if up else "without Upgrade")

H = "host: example.test"
cases = [
    ("HTTP/1.1 without Host", req("GET / HTTP/1.1"), forwarded),
    ("empty Host", req("GET / HTTP/1.1", "host:"), forwarded),
    ("Host: evil.test/x?y#z@a", req("GET / HTTP/1.1", "host: evil.test/x?y#z@a"), forwarded),
    ("Host: user@example.test", req("GET / HTTP/1.1", "host: user@example.test"), forwarded),
    ("Host: example.test:99999", req("GET / HTTP/1.1", "host: example.test:99999"), forwarded),
    ("Connection: close, Host", req("GET / HTTP/1.1", H, "connection: close, host", close=False), carried("host:")),
    ("authority form on GET", req("GET example.test:80 HTTP/1.1", H), forwarded),
    ("userinfo in absolute form", req("GET http://user:pw@example.test/ HTTP/1.1", H), forwarded),
    ("asterisk form on GET", req("GET * HTTP/1.1", H), forwarded),
    ("OPTIONS *", req("OPTIONS * HTTP/1.1", H), forwarded),
    ("HTTP/1.0 without Host", req("GET / HTTP/1.0", close=False), forwarded),
    ("X_Forwarded_For: 6.6.6.6", req("GET / HTTP/1.1", H, "X_Forwarded_For: 6.6.6.6"), carried("6.6.6.6")),
    ("X_Real_IP: 6.6.6.6", req("GET / HTTP/1.1", H, "X_Real_IP: 6.6.6.6"), carried("6.6.6.6")),
    ("Upgrade: h2c (HTTP/1.1)", req("GET / HTTP/1.1", H, "connection: upgrade, http2-settings, close", "upgrade: h2c", "http2-settings: AAMAAABkAAQAAP__", close=False), upgrade),
    ("Upgrade: websocket (HTTP/1.0)", req("GET / HTTP/1.0", H, "connection: upgrade", "upgrade: websocket", close=False), upgrade),
    ("Upgrade: websocket (HTTP/1.1)", req("GET / HTTP/1.1", H, "connection: upgrade", "upgrade: websocket", close=False), upgrade),
    ("response with 120 Set-Cookie", req("GET /many HTTP/1.1", H), cookies),
    ("request with 97 header lines + Host", req("GET / HTTP/1.1", H, *[f"x-h{i}: {i}" for i in range(97)]), forwarded),
]
for path in ["/metrics", "//metrics", "/./metrics", "/foo/../metrics", "/%2fmetrics", "/%2e%2e/metrics", "/metrics/"]:
    cases.append((f"GET {path}", req(f"GET {path} HTTP/1.1", H), forwarded))

width = max(len(c[0]) for c in cases)
print(f"\n{'case':<{width}} | {'balancer':<36} | nginx")
print("-" * (width + 80))
for name, request, probe in cases:
    b = run(lb, request, probe)
    n = run(ng, request, probe)
    print(f"{name:<{width}} | {b[0] + ', ' + b[1]:<36} | {n[0]}, {n[1]}")

upload = b"POST /upload HTTP/1.1\r\nhost: example.test\r\ncontent-length: 65536\r\nconnection: close\r\n\r\n" + b"u" * 65536
print("\n30 uploads of 64 KiB to /upload, answered 404 by the backend before it reads them:")
for name, port in (("balancer", lb), ("nginx", ng)):
    statuses = {}
    for _ in range(30):
        s = exchange(port, upload).split("\r\n")[0] or "(no answer)"
        statuses[s] = statuses.get(s, 0) + 1
    if name == "balancer":
        status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin}/status"))
        out = f"ejections {sum(b['ejections'] for b in status['backends'])}, failures {sum(b['failures'] for b in status['backends'])}"
    else:
        errors = open(nginx_errors).read()
        out = f"'upstream server temporarily disabled' {errors.count('temporarily disabled')} times"
    print(f"  {name:<8} {statuses}; {out}")
PY
