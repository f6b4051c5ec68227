# shellcheck shell=bash disable=SC2034
# The one helper every bench script sources (app/bench, balancer/bench), after
# `set -euo pipefail`: the repository and its release binaries, a work directory and the
# processes started in it (both cleaned up on exit), a check for the tools a script needs, a
# free loopback port, waiting for a URL to answer, and fields of a loadtest `--json` report.
#
#   source "$(dirname "$0")/../../bench/common.sh"
#
# Benchmarks are measurements, not tests: run them on a quiet machine, and record the results
# with the command in BENCHMARKS.md.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR
BIN=$TARGET_DIR/release
WORK=$(mktemp -d "${TMPDIR:-/tmp}/session-cluster-bench.XXXXXX")
PIDS=()

# Every process in PIDS is stopped and reaped, then the work directory goes.
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

need_tools() { # "packages to install" tool...
    local hint=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            echo "needs $tool (apt-get install -y $hint)" >&2
            exit 2
        }
    done
}

# A loopback port free right now (the kernel's pick).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() { # url what [seconds, default 10]
    local tries=$((${3:-10} * 10))
    for _ in $(seq 1 "$tries"); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "$2 did not come up ($1)" >&2
    exit 1
}

# Fields of a loadtest --json report, space-separated: json FILE key.sub key ...
json() {
    python3 - "$@" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
out = []
for path in sys.argv[2:]:
    v = d
    for k in path.split("."):
        v = v[k]
    out.append(f"{v:.2f}" if isinstance(v, float) else str(v))
print(" ".join(out))
PY
}
