# Shared by the balancer's bench scripts (sourced after `set -euo pipefail`): the repository
# and target paths, a work directory and the processes started in it (both cleaned up on
# exit), a check for the tools a script needs, and waiting for a URL to answer.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/lb-bench.XXXXXX)
PIDS=()

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
            echo "missing $tool (apt-get install $hint)" >&2
            exit 1
        }
    done
}

wait_for() { # url what [seconds, default 10]
    local tries=$((${3:-10} * 10))
    for _ in $(seq 1 "$tries"); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "$2 did not come up ($1)" >&2
    exit 1
}
