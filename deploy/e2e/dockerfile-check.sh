#!/usr/bin/env bash
# Builds the shipped deploy/Dockerfile end to end, cargo stages included, on a machine with no image registry,
# and checks what users get: the three images build from a clean copy of the tree, run as a non-root user, carry
# a HEALTHCHECK, start their binary, and a source-only change reuses the cached dependency layer.
#
# Run with:  deploy/e2e/dockerfile-check.sh        (as root; ~10 minutes on 2 cores, mostly compiling; CI runs it
#            from .ci/run; it installs docker.io and debootstrap when they are missing)
#
# The two base images the Dockerfile names cannot be pulled here, so they are stood in for, and the official
# names are tagged only for the duration of the build (then untagged again; the cached stand-ins keep private
# names):
#   debian:bookworm-slim       <- the debootstrapped base from deploy/e2e/images.sh
#   rust:$RUST_VERSION-slim-bookworm <- that base + gcc/libc6-dev from Debian + this machine's own Rust toolchain
#                                 laid out as the official image does (CARGO_HOME=/usr/local/cargo)
# cargo inside the build still fetches crates from crates.io, exactly as for users.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BASE_TAG=${BASE_TAG:-session-cluster-e2e/bookworm:v1}
RUST_VERSION=$(sed -nE 's/^ARG RUST_VERSION=(.+)$/\1/p' "$root/deploy/Dockerfile")
RUST_STANDIN=session-cluster-e2e/rust:$RUST_VERSION
RUST_TAG=rust:$RUST_VERSION-slim-bookworm
DEBIAN_TAG=debian:bookworm-slim
CHECK_PREFIX=session-cluster-check
log() { printf '[dockerfile-check] %s\n' "$*" >&2; }
# shellcheck source=deploy/e2e/apt.sh
. "$here/apt.sh"

# What a fresh Debian machine lacks: the Docker engine and client, debootstrap for the stand-in base image, and
# the host toolchain the rust stand-in is made of.
missing=()
command -v docker >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_install /var/tmp/session-cluster-dfcheck-apt.log "${missing[@]}" || {
        log "apt-get install ${missing[*]} failed (see /var/tmp/session-cluster-dfcheck-apt.log)"
        exit 2
    }
fi
docker info >/dev/null 2>&1 || { log "the Docker engine is not reachable (is dockerd running?)"; exit 2; }
command -v rustc >/dev/null || { log "rustc is needed: the rust stand-in image is made from the host toolchain"; exit 2; }

work=$(mktemp -d /var/tmp/session-cluster-dfcheck.XXXXXX)
created_tags=()
# Unnamed images that existed before: the classic builder leaves every intermediate stage behind unnamed (over
# 1 GB each for the cargo stages), and only those this run made are removed at the end.
dangling_before=$(docker images -q -f dangling=true | sort -u)
cleanup() {
    local tag
    for tag in "${created_tags[@]}"; do docker rmi "$tag" >/dev/null 2>&1 || true; done
    docker rmi "$CHECK_PREFIX/app" "$CHECK_PREFIX/balancer" "$CHECK_PREFIX/loadtest" "$CHECK_PREFIX/app:edited" \
        >/dev/null 2>&1 || true
    comm -13 <(echo "$dangling_before") <(docker images -q -f dangling=true | sort -u) |
        xargs -r docker rmi >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# Tags an official name onto a stand-in, unless a real image of that name is already here.
borrow_tag() {
    local standin=$1 official=$2
    if docker image inspect "$official" >/dev/null 2>&1; then
        log "$official exists here already: using it as is"
        return
    fi
    docker tag "$standin" "$official"
    created_tags+=("$official")
}

"$here/images.sh" base

toolchain=$(rustc --print sysroot)
if ! docker image inspect "$RUST_STANDIN" >/dev/null 2>&1; then
    [[ $(rustc --version) == "rustc $RUST_VERSION."* ]] || {
        log "host rustc is $(rustc --version), the Dockerfile wants $RUST_VERSION: cannot stand in"
        exit 2
    }
    log "building the rust stand-in $RUST_STANDIN from $toolchain (no docs)"
    mkdir -p "$work/rust/toolchain"
    tar -C "$toolchain" --exclude=./share/doc -cf - . | tar -C "$work/rust/toolchain" -xf -
    # This machine reaches crates.io through a TLS-inspecting egress whose CA the host trusts; the builder
    # must trust it too (users' machines need nothing of the kind).
    mkdir -p "$work/rust/ca"
    cp /usr/local/share/ca-certificates/*.crt "$work/rust/ca/" 2>/dev/null || true
    cat >"$work/rust/Dockerfile" <<EOF
FROM $BASE_TAG
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        gcc libc6-dev ca-certificates && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
COPY toolchain/ /usr/local/rustup/toolchains/$RUST_VERSION/
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rustup/toolchains/$RUST_VERSION/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin && cargo --version
EOF
    DOCKER_BUILDKIT=0 docker build --force-rm -q -t "$RUST_STANDIN" "$work/rust" >/dev/null
    rm -rf "$work/rust"
fi
borrow_tag "$RUST_STANDIN" "$RUST_TAG"
borrow_tag "$BASE_TAG" "$DEBIAN_TAG"

# A clean copy of the tree as a clone would have it (no target/, no .git), so nothing local leaks in.
mkdir -p "$work/src"
tar -C "$root" --exclude=./target --exclude=./.git --exclude=./test-output -cf - . | tar -C "$work/src" -xf -

failed=0
for target in app balancer loadtest; do
    log "docker build -f deploy/Dockerfile --target $target (from a clean copy)"
    start=$SECONDS
    if ! DOCKER_BUILDKIT=0 docker build --force-rm -f "$work/src/deploy/Dockerfile" --target "$target" \
        -t "$CHECK_PREFIX/$target" "$work/src" >"$work/build-$target.log" 2>&1; then
        tail -n 40 "$work/build-$target.log" >&2
        log "FAIL: build of $target"
        exit 1
    fi
    user=$(docker image inspect -f '{{.Config.User}}' "$CHECK_PREFIX/$target")
    health=$(docker image inspect -f '{{if .Config.Healthcheck}}{{join .Config.Healthcheck.Test " "}}{{end}}' "$CHECK_PREFIX/$target")
    version=$(docker run --rm "$CHECK_PREFIX/$target" --version 2>&1 | head -n 1)
    size=$(docker image inspect -f '{{.Size}}' "$CHECK_PREFIX/$target" | awk '{ printf "%.0f MB", $1 / 1e6 }')
    log "$target: built in $((SECONDS - start))s, $size, user $user, healthcheck [${health:-none}], '$version'"
    [[ $user == 10001:10001 ]] || { log "FAIL: $target runs as '$user'"; failed=1; }
    [[ $target == loadtest || -n $health ]] || { log "FAIL: $target has no HEALTHCHECK"; failed=1; }
    [[ $version == "$target "* ]] || { log "FAIL: $target --version printed '$version'"; failed=1; }
done

# Dependency caching: a source-only change must reuse the `cargo chef cook` layer.
echo "// dockerfile-check: a source-only change" >>"$work/src/app/src/main.rs"
start=$SECONDS
DOCKER_BUILDKIT=0 docker build --force-rm -f "$work/src/deploy/Dockerfile" --target app -t "$CHECK_PREFIX/app:edited" \
    "$work/src" >"$work/build-edited.log" 2>&1
cook_cached=$(grep -A1 'cargo chef cook' "$work/build-edited.log" | grep -c 'Using cache' || true)
if ((cook_cached > 0)); then
    log "PASS: after editing app/src/main.rs the dependency layer was reused (rebuild took $((SECONDS - start))s)"
else
    log "FAIL: the cargo chef cook layer was rebuilt after a source-only change"
    failed=1
fi
((failed)) && { log "RESULT: FAIL"; exit 1; }
log "RESULT: PASS"
