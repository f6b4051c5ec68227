#!/usr/bin/env bash
# Builds, offline, every image docker-compose.yml names, for the end-to-end test on a machine with no registry.
#
# Why this exists: nothing can be pulled here, so `FROM rust:…`, `FROM debian:…` and `image: redis:7.4` cannot be
# fetched. Instead:
#   1. a minimal Debian bookworm root filesystem is made with debootstrap from Debian's package mirror (the only
#      thing reachable), with Debian's redis-server in it, and `docker import`ed twice:
#        - as $BASE_TAG, the stand-in for `debian:bookworm-slim` (the shipped Dockerfile's runtime base);
#        - as `redis:7.4`, the stand-in for the official image (Debian's redis-server 7.0, which has AOF, EXAT and
#          rename-command like 7.4).
#      Both are cached by tag: a second run skips debootstrap entirely.
#   2. the three project images are built from the shipped deploy/Dockerfile itself, with only its cargo build stage
#      swapped for the host's release binaries and its runtime FROM pointed at the stand-in base, so the runtime
#      stages (user, entrypoint, HEALTHCHECK) that users get are exactly the ones tested.
#
# Usage: deploy/e2e/images.sh            (run from anywhere; needs root for debootstrap, as CI is)
# Env:   E2E_REBUILD_BASE=1 forces a fresh debootstrap; CARGO_PROFILE (default release).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# Bump when the package list changes, so cached base images are not reused with stale contents.
BASE_TAG=${BASE_TAG:-session-cluster-e2e/bookworm:v1}
REDIS_TAG=redis:7.4
STANDIN_LABEL=org.session-cluster.standin
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PROFILE=${CARGO_PROFILE:-release}

log() { printf '[images] %s\n' "$*" >&2; }

# Image names come from the compose file itself, so the script and the file cannot drift apart.
compose_image() {
    local service=$1
    awk -v svc="  $service:" '
        $0 == svc { in_svc = 1; next }
        in_svc && /^  [a-z]/ { exit }
        in_svc && $1 == "image:" { print $2; exit }' "$root/docker-compose.yml"
}

# shellcheck source=deploy/e2e/apt.sh
. "$here/apt.sh"
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2 (missing $1)"
    apt_install /dev/null "$2" || { log "apt-get install $2 failed"; return 1; }
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

build_base_images() {
    if [[ ${E2E_REBUILD_BASE:-0} != 1 ]] && have_image "$BASE_TAG" && have_image "$REDIS_TAG"; then
        log "cached: $BASE_TAG and $REDIS_TAG"
        return 0
    fi
    need debootstrap debootstrap
    local rootfs
    rootfs=$(mktemp -d /var/tmp/session-cluster-rootfs.XXXXXX)
    # shellcheck disable=SC2064 # expand now: the path is fixed
    trap "rm -rf '$rootfs'" RETURN
    log "debootstrap bookworm (minbase + redis-server) into $rootfs; takes a few minutes once"
    # invoke-rc.d must not try to start redis inside the chroot.
    if ! debootstrap --variant=minbase --include=redis-server,redis-tools \
        bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1; then
        tail -n 30 "$rootfs.log" >&2
        log "debootstrap failed (log above)"
        return 1
    fi
    rm -f "$rootfs.log"
    # What a slim image would not carry: package caches, docs, man pages.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    log "importing $BASE_TAG"
    tar -C "$rootfs" -c . | docker import \
        --change "LABEL $STANDIN_LABEL=base" \
        --change 'CMD ["bash"]' - "$BASE_TAG" >/dev/null
    if have_image "$REDIS_TAG" && [[ -z $(docker image inspect -f "{{ index .Config.Labels \"$STANDIN_LABEL\" }}" "$REDIS_TAG" 2>/dev/null) ]]; then
        log "$REDIS_TAG exists and is not ours (a real one): keeping it"
    else
        log "importing $REDIS_TAG (stand-in: Debian's redis-server)"
        # Mirrors the official image's contract: workdir /data, port 6379, `redis-server` as the command.
        tar -C "$rootfs" -c . | docker import \
            --change "LABEL $STANDIN_LABEL=redis" \
            --change 'WORKDIR /data' \
            --change 'EXPOSE 6379' \
            --change 'VOLUME /data' \
            --change 'CMD ["redis-server"]' - "$REDIS_TAG" >/dev/null
    fi
}

build_project_images() {
    log "cargo build --profile $PROFILE -p app -p balancer -p loadtest"
    (cd "$root" && cargo build --quiet --locked --profile "$PROFILE" -p app -p balancer -p loadtest)
    local dir=$PROFILE
    [[ $PROFILE == dev ]] && dir=debug
    local ctx
    ctx=$(mktemp -d /var/tmp/session-cluster-ctx.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$ctx'" RETURN
    mkdir -p "$ctx/bin" "$ctx/deploy"
    cp "$root/target/$dir/app" "$root/target/$dir/balancer" "$root/target/$dir/loadtest" "$ctx/bin/"
    cp "$root/deploy/probe.sh" "$ctx/deploy/"
    # The shipped Dockerfile, with everything before the runtime stage replaced by a stage that holds the host's
    # binaries where the cargo stage would have left them (/out).
    {
        echo "FROM $BASE_TAG AS builder"
        echo "COPY bin/ /out/"
        awk '/^FROM .* AS runtime$/ { keep = 1 } keep' "$root/deploy/Dockerfile" |
            sed -E "s|^FROM debian:bookworm-slim AS runtime$|FROM $BASE_TAG AS runtime|"
    } >"$ctx/Dockerfile"
    grep -q "^FROM $BASE_TAG AS runtime$" "$ctx/Dockerfile" || {
        log "deploy/Dockerfile has no 'FROM debian:bookworm-slim AS runtime' line; cannot derive the local build"
        return 1
    }
    local target image dangling_before
    dangling_before=$(docker images -q -f dangling=true | sort -u)
    for target in app balancer loadtest; do
        image=$(compose_image "$target")
        [[ -n $image ]] || { log "no image: for service $target in docker-compose.yml"; return 1; }
        log "docker build --target $target -t $image"
        # The classic builder: BuildKit needs the buildx plugin, which Debian's docker.io does not ship.
        if ! DOCKER_BUILDKIT=0 docker build --force-rm --target "$target" -t "$image" "$ctx" >"$ctx/build.log" 2>&1; then
            tail -n 30 "$ctx/build.log" >&2
            log "docker build --target $target failed (log above)"
            return 1
        fi
    done
    # What this build left unnamed (the images these tags named before, the classic builder's stage images) is
    # dropped, so repeated runs do not pile them up; unnamed images that were here before are left alone.
    comm -13 <(echo "$dangling_before") <(docker images -q -f dangling=true | sort -u) |
        xargs -r docker rmi >/dev/null 2>&1 || true
}

case "${1:-all}" in
base) build_base_images ;;
project) build_project_images ;;
all) build_base_images && build_project_images ;;
*) echo "usage: $0 [base|project|all]" >&2; exit 2 ;;
esac
