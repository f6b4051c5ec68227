#!/usr/bin/env bash
# End-to-end test of docker-compose.yml on this machine's real Docker engine, with no image registry.
#
# Run with:  deploy/e2e.sh            (as root, from anywhere; CI runs it from .ci/run)
#
# It builds every image the compose file names offline (deploy/e2e/images.sh: a debootstrapped Debian base,
# Debian's redis-server tagged redis:7.4, and the shipped Dockerfile's runtime stages around the host's release
# binaries), then drives the SAME docker-compose.yml through the issue's seven steps:
#   1. up --scale app=3: the loadtest passes through the balancer, and one session hops across all 3 containers
#      (plus `run --rm loadtest` inside the compose network, the browser test against the balancer, and one
#      session counting 1, 2, 3 over HTTP/2 on the TLS port with a Secure cookie);
#   2. scale to 5 under load: the new replicas get traffic within 5 s, no errors;
#   3. scale to 2 under load: no failed requests, no miscount;
#      (around both: the balancer's dashboard lists 3, 5, then 2 backends in rotation, and headless Chromium on
#      the host saves a screenshot of it at each, through the published admin port: test-output/e2e/dashboard-*.png);
#   4. docker kill one replica under load: no failed GETs, no miscount;
#   5. restart redis: existing sessions continue counting (AOF);
#   6. stop redis: 503s and /readyz 503; start it: the cluster recovers by itself;
#   7. tear everything down, volumes included.
# It prints a short report and exits 1 if any step failed, 2 if it could not run at all. Teardown always runs.
#
# Traffic goes only to 127.0.0.1 (published ports) and to the containers this script started. Every load loop is
# bounded in requests and in seconds.
#
# Env: E2E_PROJECT (compose project name, default sessioncluster-e2e), E2E_BROWSER=0 skips the browser step
#      (reported as SKIP, never as a pass). Logs of every step and of every container go to test-output/e2e/
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root" || exit 2

export COMPOSE_PROJECT_NAME=${E2E_PROJECT:-sessioncluster-e2e}
out=$root/test-output/e2e
mkdir -p "$out"
rm -f "$out"/*
work=$(mktemp -d /var/tmp/session-cluster-e2e.XXXXXX)
WALKERS=4
PROFILE_DIR=release

log() { printf '[e2e %s] %s\n' "$(date +%T)" "$*" >&2; }
# shellcheck source=deploy/e2e/apt.sh
. "$here/e2e/apt.sh"

# ---------------------------------------------------------------------------------------------------------------
# Tools: install what a fresh Debian machine lacks, and pick whichever compose spelling exists.
ensure_tools() {
    local missing=()
    command -v curl >/dev/null || missing+=(curl)
    command -v jq >/dev/null || missing+=(jq)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v docker >/dev/null || missing+=(docker.io)
    if [[ ${E2E_BROWSER:-1} != 0 ]]; then
        command -v chromium >/dev/null || missing+=(chromium)
        command -v chromedriver >/dev/null || missing+=(chromium-driver)
    fi
    if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
        missing+=(docker-compose)
    fi
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt_install "$out/apt.log" "${missing[@]}" || {
            log "apt-get install ${missing[*]} failed (see $out/apt.log)"
            return 1
        }
    fi
    docker info >/dev/null 2>&1 || { log "the Docker engine is not reachable (is dockerd running?)"; return 1; }
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    else
        COMPOSE=(docker-compose)
    fi
    log "compose: $("${COMPOSE[@]}" version 2>/dev/null | head -n 1)"
}

compose() { "${COMPOSE[@]}" "$@"; }

port_busy() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The compose file's default host ports, unless something on this machine already listens there.
pick_port() {
    local var=$1 port=$2
    if [[ -n ${!var:-} ]]; then return; fi
    while port_busy "$port"; do port=$((port + 1)); done
    export "$var=$port"
}

# ---------------------------------------------------------------------------------------------------------------
# Report.
declare -a REPORT=()
FAILED=0
pass() { REPORT+=("PASS  $1: $2"); log "PASS $1: $2"; }
fail() { REPORT+=("FAIL  $1: $2"); log "FAIL $1: $2"; FAILED=1; }
skip() { REPORT+=("SKIP  $1: $2"); log "SKIP $1: $2"; }

print_report() {
    printf '\n==== session-cluster e2e report (%s, %s) ====\n' "$("${COMPOSE[@]:-true}" version --short 2>/dev/null || echo compose)" "$(date -u +%FT%TZ)"
    printf '%s\n' "${REPORT[@]}"
    if ((FAILED)); then
        printf 'RESULT: FAIL (logs in %s)\n' "$out"
    else
        printf 'RESULT: PASS\n'
    fi
}

# ---------------------------------------------------------------------------------------------------------------
# Teardown: always, on success, failure or Ctrl-C.
declare -a BG_PIDS=()
stop_background() {
    touch "$work/stop"
    local pid
    for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    BG_PIDS=()
    rm -f "$work/stop"
}

teardown() {
    local status=$?
    trap - EXIT INT TERM
    stop_background
    if ((${#COMPOSE[@]})); then
        compose --profile loadtest down -v --remove-orphans --timeout 5 >/dev/null 2>&1
    fi
    rm -rf "$work"
    exit "$status"
}
COMPOSE=()
trap teardown EXIT
trap 'log "interrupted"; FAILED=1; exit 130' INT TERM

# ---------------------------------------------------------------------------------------------------------------
# Cluster helpers.
BASE=""

# Running app containers (compose ps would list killed ones too).
app_ids() {
    docker ps -q --no-trunc --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
        --filter "label=com.docker.compose.service=app"
}

# Node names of the running app containers: the app names itself after its hostname, the short container id.
app_nodes() { app_ids | cut -c1-12 | sort; }

# Replica names the balancer routes to, from N requests to / (curl gets Hello, World!!: it carries
# X-Served-By and touches no session).
served_nodes() {
    local n=$1 i
    for ((i = 0; i < n; i++)); do
        curl -s -o /dev/null --max-time 3 -w '%header{x-served-by}\n' "$BASE/"
    done | grep -v '^$' | sort -u
}

# Waits until the balancer routes to exactly the running app containers.
wait_served_all() {
    local timeout=$1 want got
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        want=$(app_nodes)
        got=$(served_nodes $(($(wc -l <<<"$want") * 4)))
        [[ -n $want && $want == "$got" ]] && return 0
        sleep 1
    done
    log "balancer routes to [$(echo $got)], containers are [$(echo $want)]"
    return 1
}

wait_redis_healthy() {
    local timeout=$1 id
    local deadline=$((SECONDS + timeout))
    id=$(compose ps -q redis)
    while ((SECONDS < deadline)); do
        [[ $(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null) == healthy ]] && return 0
        sleep 1
    done
    return 1
}

# Waits until every app container is in the balancer's rotation (each passed its /readyz check,
# which needs Redis; the public port hides /readyz) and GET / through the balancer answers 200
# 10 times in a row.
wait_ready_through_balancer() {
    local timeout=$1 streak=0 want healthy
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        want=$(app_ids | wc -l)
        healthy=$(curl -s --max-time 2 "http://127.0.0.1:$BALANCER_ADMIN_PORT/status" | grep -Eo '"healthy":[0-9]+' | cut -d: -f2)
        if [[ ${healthy:-0} -ge $want && $want -gt 0 &&
            $(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$BASE/") == 200 ]]; then
            streak=$((streak + 1))
            ((streak >= 10)) && return 0
        else
            streak=0
            sleep 0.3
        fi
    done
    return 1
}

# ---------------------------------------------------------------------------------------------------------------
# Load: WALKERS sequential users with persistent cookie jars (deploy/e2e/walker.sh) plus the loadtest in a loop.
PHASE=""
start_load() {
    PHASE=$1
    local seconds=$2 with_loadtest=${3:-1} i
    for ((i = 1; i <= WALKERS; i++)); do
        "$here/e2e/walker.sh" "$BASE" "$work/jar.$i" "$out/walk.$PHASE.$i.log" "$work/stop" "$seconds" 100000 &
        BG_PIDS+=($!)
    done
    if ((with_loadtest)); then
        (
            end=$((SECONDS + seconds))
            runs=0
            while [[ ! -e $work/stop ]] && ((SECONDS < end && runs < 200)); do
                runs=$((runs + 1))
                "$root/target/$PROFILE_DIR/loadtest" --target "$BASE" --endpoint text --users 4 --requests 25 \
                    --no-progress >>"$out/loadtest.$PHASE.log" 2>&1
                echo $? >>"$out/loadtest.$PHASE.rc"
            done
        ) &
        BG_PIDS+=($!)
    fi
}

# Checks every walker's log of PHASE: all 200, and each counter exactly one more than the last one seen (also across
# phases: the last count is carried in $work/last.N). Sets LOAD_SUMMARY; returns 1 on any failure or miscount.
check_load() {
    local i total=0 failed=0 miscount=0 line lt_runs=0 lt_bad=0
    local detail=""
    for ((i = 1; i <= WALKERS; i++)); do
        local f=$out/walk.$PHASE.$i.log
        [[ -s $f ]] || { detail+=" walker$i:no-requests"; miscount=$((miscount + 1)); continue; }
        line=$(awk -v last="$(cat "$work/last.$i" 2>/dev/null || echo -1)" '
            { n++
              if ($2 != 200) { failed++; unknown++; next }
              c = $4 + 0
              if (last >= 0 && c != last + 1) {
                  if (c == 1) resets++; else if (c <= last) lost++; else if (c <= last + 1 + unknown) unsure++; else gaps++
              }
              last = c; unknown = 0 }
            END { printf "%d %d %d %d %d %d %d\n", n, failed, resets, lost, gaps, unsure, last }' "$f")
        read -r n f_ resets lost gaps unsure last <<<"$line"
        echo "$last" >"$work/last.$i"
        total=$((total + n))
        failed=$((failed + f_))
        miscount=$((miscount + resets + lost + gaps))
        ((resets + lost + gaps + unsure)) && detail+=" walker$i:resets=$resets,lost=$lost,gaps=$gaps,after-failure=$unsure"
    done
    if [[ -f $out/loadtest.$PHASE.rc ]]; then
        lt_runs=$(wc -l <"$out/loadtest.$PHASE.rc")
        lt_bad=$(grep -cv '^0$' "$out/loadtest.$PHASE.rc")
        # The loadtest's own words for what went wrong, once each (e.g. "errors seen: HTTP 502 Bad Gateway").
        ((lt_bad)) && detail+=" loadtest: $(grep -hE '^(errors seen|\* )' "$out/loadtest.$PHASE.log" | sort | uniq -c |
            awk '{ $1 = $1 "x"; print }' | paste -sd ';')"
    fi
    local nodes codes
    nodes=$(cat "$out"/walk."$PHASE".*.log 2>/dev/null | awk '$2 == 200 { print $3 }' | sort -u | wc -l)
    # Which statuses the failures were (000 = no HTTP response at all), e.g. "502x1".
    codes=$(cat "$out"/walk."$PHASE".*.log 2>/dev/null | awk '$2 != 200 { n[$2]++ } END { for (c in n) printf "%s%sx%d", sep, c, n[c]; sep = "," }')
    LOAD_SUMMARY="$total walker requests, $failed failed${codes:+ ($codes)}, $miscount miscounted, $nodes replicas seen; loadtest runs $lt_runs, non-zero $lt_bad${detail:+;$detail}"
    ((failed == 0 && miscount == 0 && lt_bad == 0 && total > 0))
}

# First time (epoch seconds) each of the given nodes answered a walker in PHASE, or "never".
first_seen() {
    local node=$1
    cat "$out"/walk."$PHASE".*.log 2>/dev/null | awk -v n="$node" '$3 == n && $2 == 200 { print $1 }' | sort -n | head -n 1
}

# ---------------------------------------------------------------------------------------------------------------
# The steps.
step_build() {
    log "building images (cached base images are reused)"
    if ! "$here/e2e/images.sh" all 2>&1 | tee "$out/images.log" >&2; then
        fail build "deploy/e2e/images.sh failed (see $out/images.log)"
        return 1
    fi
    pass build "images $(grep -E '^\s+image:' docker-compose.yml | awk '{print $2}' | tr '\n' ' ')built offline"
}

step_up() {
    pick_port BALANCER_PORT 8080
    pick_port BALANCER_ADMIN_PORT 8081
    pick_port BALANCER_TLS_PORT 8443
    pick_port REDIS_HOST_PORT 6379
    BASE=http://127.0.0.1:$BALANCER_PORT
    compose --profile loadtest down -v --remove-orphans --timeout 5 >/dev/null 2>&1
    log "up --scale app=3 (balancer on $BASE)"
    if ! compose up -d --no-build --scale app=3 >"$out/up.log" 2>&1; then
        fail "1 up" "compose up failed: $(tail -n 3 "$out/up.log" | tr '\n' ' ')"
        return 1
    fi
    if ! wait_served_all 90; then
        fail "1 up" "the balancer did not route to all 3 replicas within 90 s"
        return 1
    fi

    # One user's session hops across all 3 containers and counts 1..30 exactly.
    local i
    for ((i = 1; i <= WALKERS; i++)); do rm -f "$work/jar.$i" "$work/last.$i"; done
    PHASE=up
    "$here/e2e/walker.sh" "$BASE" "$work/jar.1" "$out/walk.up.1.log" "$work/stop" 30 30
    local seen want
    seen=$(awk '$2 == 200 { print $3 }' "$out/walk.up.1.log" | sort -u)
    want=$(app_nodes)
    local counts
    counts=$(awk '{ printf "%s ", $4 }' "$out/walk.up.1.log")
    if [[ $seen != "$want" || $counts != "$(seq -s ' ' 1 30) " ]]; then
        fail "1 up" "one session over 30 requests: replicas [$(echo $seen)] vs containers [$(echo $want)], counts $counts"
        return 1
    fi
    echo 30 >"$work/last.1"

    # The loadtest through the balancer, from the host.
    "$root/target/$PROFILE_DIR/loadtest" --target "$BASE" --endpoint text --users 20 --requests 30 --no-progress \
        >"$out/loadtest.up.txt" 2>&1
    local rc=$?
    if ((rc != 0)); then
        fail "1 up" "loadtest exited $rc (see $out/loadtest.up.txt)"
        return 1
    fi
    local lt
    lt=$(grep -E '^(hops|replicas per session|requests per replica) ' "$out/loadtest.up.txt" | tr -s ' ' | paste -sd ';')
    pass "1 up" "3 replicas; one session counted 1..30 across all 3 [$(echo $seen)]; loadtest 20x30 exit 0 ($lt)"

    # The profile service exactly as the README tells users to run it: from inside the compose network.
    if compose run --rm -T loadtest </dev/null >"$out/loadtest.run.txt" 2>&1; then
        pass "1 run loadtest" "'compose run --rm loadtest' (profile) passed inside the network"
    else
        fail "1 run loadtest" "'compose run --rm loadtest' failed (see $out/loadtest.run.txt)"
    fi

    # The public port serves the application, not the replicas' internals; curl gets the original greeting.
    local internal="" path code hello
    for path in /metrics /readyz /healthz; do
        code=$(curl -s -o /dev/null --max-time 3 -w '%{http_code}' "$BASE$path")
        internal+="$path $code; "
    done
    hello=$(curl -s --max-time 3 "$BASE/")
    if [[ $internal == "/metrics 404; /readyz 404; /healthz 404; " && $hello == "Hello, World!!" ]]; then
        pass "1 public port" "$internal GET / with curl: $hello"
    else
        fail "1 public port" "expected 404 for the internals and Hello, World!! at /: ${internal}GET / -> $hello"
    fi
}

# The TLS path as the compose file promises it: https on BALANCER_TLS_PORT (the development certificate, so -k)
# over HTTP/2, one session counting 1, 2, 3 through balancer-tls and app-secure, its cookie Secure.
step_tls() {
    local url="https://127.0.0.1:$BALANCER_TLS_PORT" jar="$work/tls.jar" i views counts="" proto cookie
    local deadline=$((SECONDS + 60))
    until [[ $(curl -sk -o /dev/null --max-time 2 -w '%{http_code}' "$url/") == 200 ]]; do
        if ((SECONDS >= deadline)); then
            fail "1 tls" "$url/ did not answer 200 within 60 s"
            return
        fi
        sleep 1
    done
    rm -f "$jar"
    for i in 1 2 3; do
        views=$(curl -sk --http2 --max-time 5 -b "$jar" -c "$jar" -D "$work/tls.head.$i" "$url/api/session/views" -X POST |
            grep -Eo '"views":[0-9]+' | cut -d: -f2)
        counts+="${views:--} "
    done
    proto=$(head -n 1 "$work/tls.head.1" | cut -d' ' -f1)
    cookie=$(grep -i '^set-cookie:' "$work/tls.head.1" | head -n 1)
    if [[ $counts == "1 2 3 " && $proto == HTTP/2 && $cookie == *[Ss]ecure* ]]; then
        pass "1 tls" "$url over $proto: one session counted $counts; Set-Cookie is Secure"
    else
        fail "1 tls" "expected 1 2 3 over HTTP/2 with a Secure cookie: counts $counts, protocol $proto, cookie ${cookie:-none}"
    fi
}

# The Redis service as the compose file promises it: password required, FLUSHALL/FLUSHDB gone, published on
# loopback only, and the sessions visible with the README's redis-cli command.
step_redis_config() {
    local id noauth flush flushdb published keys record json problems=""
    id=$(compose ps -q redis)
    noauth=$(compose exec -T redis env -u REDISCLI_AUTH redis-cli ping 2>&1 | tr -d '\r')
    flush=$(compose exec -T redis redis-cli FLUSHALL 2>&1 | tr -d '\r')
    flushdb=$(compose exec -T redis redis-cli FLUSHDB 2>&1 | tr -d '\r')
    published=$(docker port "$id" 6379/tcp | tr '\n' ' ')
    keys=$(compose exec -T redis redis-cli --scan --pattern 'session:*' 2>/dev/null | wc -l)
    record=$(compose exec -T redis redis-cli --scan --pattern 'session:{*}' 2>/dev/null | tr -d '\r' | head -n 1)
    json=$(compose exec -T redis redis-cli GET "$record" 2>/dev/null | tr -d '\r')
    [[ $noauth == *NOAUTH* ]] || problems+=" ping without password: '$noauth';"
    [[ $flush == *"unknown command"* ]] || problems+=" FLUSHALL: '$flush';"
    [[ $flushdb == *"unknown command"* ]] || problems+=" FLUSHDB: '$flushdb';"
    [[ $published == "127.0.0.1:$REDIS_HOST_PORT " ]] || problems+=" published on '$published';"
    ((keys > 0)) || problems+=" no session keys seen by redis-cli;"
    [[ $json == '{"id":'*'"views":'* ]] || problems+=" GET $record is not a readable JSON record: '${json:0:80}';"
    # The replicas run as the ACL's `app` user: Redis denied them nothing so far (ACL LOG is empty)...
    local denied as_app probe answer
    denied=$(compose exec -T redis redis-cli ACL LOG 2>&1 | tr -d '\r')
    [[ -z $denied ]] || problems+=" ACL LOG shows commands the app was denied: '${denied:0:120}';"
    # ...and `app` can do nothing but its job.
    as_app='redis-cli --user app --pass "$REDIS_APP_PASSWORD" --no-auth-warning'
    for probe in "KEYS '*'" "CONFIG GET '*'" "GET not-a-session" "SET not-a-session x"; do
        answer=$(compose exec -T redis sh -c "$as_app $probe" 2>&1 | tr -d '\r')
        [[ $answer == NOPERM* ]] || problems+=" app user '$probe' was not denied: '$answer';"
    done
    if [[ -z $problems ]]; then
        pass "1 redis" "password required, FLUSHALL/FLUSHDB disabled, published only on $published, $keys keys under session:* via redis-cli, records are JSON; replicas run as ACL user app (ACL LOG empty; KEYS, CONFIG, other keys denied)"
    else
        fail "1 redis" "$problems"
    fi
}

step_browser() {
    if [[ ${E2E_BROWSER:-1} == 0 ]]; then
        skip browser "E2E_BROWSER=0"
        return
    fi
    log "browser test against $BASE"
    # Only the page's test: the dashboard's starts its own cluster (it stops replicas); here the dashboard is
    # photographed while scaling instead.
    if BROWSER_TARGET=$BASE cargo test --quiet --locked -p system-tests --test browser visit_again >"$out/browser.txt" 2>&1; then
        pass browser "chromium clicked 'Visit again' 6 times through the compose balancer (screenshot in test-output/)"
    else
        fail browser "cargo test -p system-tests --test browser failed (see $out/browser.txt)"
    fi
}

# The balancer's dashboard as a person on this host sees it (the admin port is published on 127.0.0.1): waits
# up to 20 s for it to list exactly $2 backends, all in rotation, then saves a headless Chromium screenshot as
# test-output/e2e/dashboard-$1.png. Problems are collected for step_dashboard's verdict.
DASHBOARD_SEEN=""
DASHBOARD_PROBLEMS=""
dashboard_shot() {
    local name=$1 want=$2 url="http://127.0.0.1:$BALANCER_ADMIN_PORT/" html="" known=0 ready=0
    local deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
        html=$(curl -s --max-time 2 "$url")
        known=$(grep -o 'data-addr="' <<<"$html" | wc -l)
        ready=$(grep -o 'data-state="ready"' <<<"$html" | wc -l)
        ((known == want && ready == want)) && break
        sleep 0.5
    done
    DASHBOARD_SEEN+=" $name:$ready/$known"
    ((known == want && ready == want)) || DASHBOARD_PROBLEMS+=" $name: $ready of $known in rotation, want $want;"
    [[ ${E2E_BROWSER:-1} == 0 ]] && return
    local png=$out/dashboard-$name.png
    # --no-sandbox: this runs as root, where Chromium's sandbox refuses to start. The page is rendered by the
    # server at load, so the screenshot needs no wait for its live updates.
    timeout 60 chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
        --window-size=1100,1000 --screenshot="$png" "$url" >"$out/dashboard-$name.log" 2>&1
    [[ $(head -c 4 "$png" 2>/dev/null | tail -c 3) == PNG ]] || DASHBOARD_PROBLEMS+=" $name: no screenshot (see $out/dashboard-$name.log);"
}

step_dashboard() {
    if [[ ${E2E_BROWSER:-1} == 0 ]]; then
        skip dashboard "E2E_BROWSER=0 (backends listed in rotation/known:$DASHBOARD_SEEN)"
    elif [[ -n $DASHBOARD_PROBLEMS ]]; then
        fail dashboard "$DASHBOARD_PROBLEMS"
    else
        pass dashboard "listed in rotation/known:$DASHBOARD_SEEN; screenshots $out/dashboard-{3,5,2}.png"
    fi
}

step_scale_up() {
    local before
    before=$(app_nodes)
    start_load scale5 25
    sleep 2
    dashboard_shot 3 3
    log "scale to 5 under load"
    if ! compose up -d --no-build --no-recreate --scale app=5 >"$out/scale5.log" 2>&1; then
        stop_background
        fail "2 scale to 5" "compose failed: $(tail -n 3 "$out/scale5.log" | tr '\n' ' ')"
        return
    fi
    local new node
    new=$(comm -13 <(echo "$before") <(app_nodes))
    # The whole 5 s window, then a little more load, then the verdict.
    sleep 5.5
    # Each new replica's clock starts when Docker started its container (compose v1 itself takes seconds to
    # create them, which is not the balancer's delay to measure).
    local late="" delays=""
    for node in $new; do
        local t t0
        t0=$(date -d "$(docker inspect -f '{{.State.StartedAt}}' "$node")" +%s.%N)
        t=$(first_seen "$node")
        if [[ -z $t ]] || (($(awk -v a="$t" -v b="$t0" 'BEGIN { print (a - b > 5) }'))); then
            late+=" $node(${t:+$(awk -v a="$t" -v b="$t0" 'BEGIN { printf "%.1fs", a - b }')})"
        else
            delays+=" $node:$(awk -v a="$t" -v b="$t0" 'BEGIN { printf "%.1fs", a - b }')"
        fi
    done
    sleep 3
    dashboard_shot 5 5
    stop_background
    local ok=1
    check_load || ok=0
    if [[ $(wc -w <<<"$new") != 2 ]]; then
        fail "2 scale to 5" "expected 2 new containers, got [$(echo $new)]"
    elif [[ -n $late ]]; then
        fail "2 scale to 5" "no traffic within 5 s for:$late; $LOAD_SUMMARY"
    elif ((!ok)); then
        fail "2 scale to 5" "$LOAD_SUMMARY"
    else
        pass "2 scale to 5" "new replicas' first request after container start:$delays; $LOAD_SUMMARY"
    fi
}

step_scale_down() {
    start_load scale2 30
    sleep 2
    log "scale to 2 under load"
    local t0=$SECONDS
    compose up -d --no-build --no-recreate --scale app=2 >"$out/scale2.log" 2>&1
    local took=$((SECONDS - t0))
    sleep 3
    dashboard_shot 2 2
    stop_background
    local remaining
    remaining=$(app_nodes | wc -l)
    if ((remaining != 2)); then
        fail "3 scale to 2" "$remaining app containers left"
    elif check_load; then
        pass "3 scale to 2" "drained in ${took}s; $LOAD_SUMMARY"
    else
        fail "3 scale to 2" "$LOAD_SUMMARY"
    fi
}

step_kill() {
    # Back to 3 first (not under load), so 2 remain after the kill and sessions still hop between replicas.
    compose up -d --no-build --no-recreate --scale app=3 >"$out/kill.log" 2>&1
    if ! wait_served_all 60; then
        fail "4 kill replica" "could not get back to 3 routed replicas before the kill"
        return
    fi
    local victim
    victim=$(app_ids | head -n 1)
    start_load kill 20
    sleep 2
    log "docker kill ${victim:0:12} under load"
    docker kill "$victim" >/dev/null
    sleep 5
    stop_background
    if check_load; then
        pass "4 kill replica" "killed ${victim:0:12}; $LOAD_SUMMARY"
    else
        fail "4 kill replica" "killed ${victim:0:12}; $LOAD_SUMMARY"
    fi
    # Whatever the restart policy did, later steps want a settled set of replicas the balancer routes to.
    wait_served_all 30 >/dev/null 2>&1
}

step_redis_restart() {
    log "restart redis"
    compose restart -t 10 redis >"$out/redis-restart.log" 2>&1
    if ! wait_redis_healthy 60 || ! wait_ready_through_balancer 60; then
        fail "5 redis restart" "redis or the replicas did not come back within 60 s"
        return
    fi
    local aof
    aof=$(compose exec -T redis sh -c 'ls /data/appendonlydir 2>/dev/null' | tr '\n' ' ')
    # No loadtest here: the walkers' first requests must continue their own pre-restart sessions.
    start_load redis-restart 4 0
    wait "${BG_PIDS[@]}" 2>/dev/null
    BG_PIDS=()
    if [[ -z $aof ]]; then
        fail "5 redis restart" "no AOF files in /data/appendonlydir"
    elif check_load; then
        pass "5 redis restart" "every session continued from its last count (AOF: $aof); $LOAD_SUMMARY"
    else
        fail "5 redis restart" "$LOAD_SUMMARY"
    fi
}

step_redis_down() {
    local apps starts_before
    apps=$(app_ids)
    starts_before=$(docker inspect -f '{{.Id}} {{.State.StartedAt}} {{.RestartCount}}' $apps)
    log "stop redis"
    compose stop -t 10 redis >"$out/redis-stop.log" 2>&1
    local deadline=$((SECONDS + 15)) code="" retry="" readyz_ok=0 readyz_total=0 detail
    while ((SECONDS < deadline)); do
        code=$(curl -s -o /dev/null -D "$work/h" --max-time 5 -w '%{http_code}' "$BASE/session")
        [[ $code == 503 ]] && break
        sleep 0.5
    done
    retry=$(awk 'tolower($1) == "retry-after:" { print $2 }' "$work/h" | tr -d '\r')
    # Each replica's own /readyz, from inside its container (replicas publish no host port).
    local id probe
    for id in $apps; do
        readyz_total=$((readyz_total + 1))
        probe=$(docker exec "$id" /usr/local/bin/probe.sh LISTEN_ADDR /readyz 2>&1)
        [[ $probe == *" 503"* ]] && readyz_ok=$((readyz_ok + 1))
    done
    detail="GET /session -> $code (Retry-After: ${retry:-none}); /readyz 503 on $readyz_ok/$readyz_total replicas"
    if [[ $code == 503 && $readyz_ok == "$readyz_total" ]]; then
        pass "6 redis down" "$detail"
    else
        fail "6 redis down" "$detail"
    fi

    log "start redis"
    local t0=$SECONDS
    compose start redis >>"$out/redis-stop.log" 2>&1
    if ! wait_redis_healthy 60 || ! wait_ready_through_balancer 60; then
        fail "6 redis back" "the cluster did not recover within 60 s of starting redis"
        return
    fi
    local took=$((SECONDS - t0))
    start_load redis-back 4 0
    wait "${BG_PIDS[@]}" 2>/dev/null
    BG_PIDS=()
    local starts_after
    starts_after=$(docker inspect -f '{{.Id}} {{.State.StartedAt}} {{.RestartCount}}' $apps 2>/dev/null)
    if [[ $starts_before != "$starts_after" ]]; then
        fail "6 redis back" "app containers were restarted; recovery must not need that"
    elif check_load; then
        pass "6 redis back" "recovered by itself in ${took}s, no replica restarted, sessions continue; $LOAD_SUMMARY"
    else
        fail "6 redis back" "$LOAD_SUMMARY"
    fi
}

step_down() {
    compose logs --no-color --timestamps >"$out/compose.log" 2>&1
    compose --profile loadtest down -v --remove-orphans --timeout 10 >"$out/down.log" 2>&1
    local left vols
    left=$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" | wc -l)
    vols=$(docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" | wc -l)
    if ((left == 0 && vols == 0)); then
        pass "7 down" "no containers, networks' users or volumes of project $COMPOSE_PROJECT_NAME left"
    else
        fail "7 down" "$left containers and $vols volumes left"
    fi
}

main() {
    ensure_tools || { REPORT+=("FAIL  tools: missing and not installable"); FAILED=1; print_report; exit 2; }
    step_build || { print_report; exit 2; }
    if step_up; then
        step_redis_config
        step_tls
        step_browser
        step_scale_up
        step_scale_down
        step_dashboard
        step_kill
        step_redis_restart
        step_redis_down
    fi
    step_down
    print_report
    ((FAILED)) && exit 1
    exit 0
}

main "$@"
