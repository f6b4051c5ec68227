# shellcheck shell=bash disable=SC2034
# Shared by the app's bench scripts (sourced after `set -euo pipefail`, from the repository
# root): where the release binaries are, a free loopback port, a work directory and the
# processes started in it (both cleaned up on exit), a check for the tools a script needs,
# and fields of a loadtest `--json` report.

BIN=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

need_tools() { # "packages to install" tool...
  local hint=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install -y $hint)" >&2; exit 2; }
  done
}

# Fields of a loadtest --json report, space-separated: json FILE key.sub key ...
json() { python3 - "$@" <<'PY'
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
