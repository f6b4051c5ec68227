#!/usr/bin/env bash
# One sequential user for deploy/e2e.sh: GET /session again and again with its own cookie jar, and one log line per
# request, so the script can tell afterwards which replica served what, when, and whether the counter stayed exact.
#
# Usage: walker.sh BASE_URL JAR LOG STOP_FILE MAX_SECONDS MAX_REQUESTS
#   Stops at whichever comes first: STOP_FILE exists, MAX_SECONDS elapsed, MAX_REQUESTS sent.
# Log line: <epoch seconds.micros> <http status, 000 = no response> <X-Served-By or -> <counter or ->
#
# Why curl in bash and not the loadtest: the e2e needs wall-clock times per request and per replica (did a new
# replica get traffic within 5 s of scaling?) across phases that keep the same session; the loadtest runs beside
# the walkers as the load and as a second, independent checker.
set -u
url=$1 jar=$2 log=$3 stop=$4 max_seconds=$5 max_requests=$6
start=${EPOCHREALTIME%.*}
sent=0
while [[ ! -e $stop ]] && ((sent < max_requests && ${EPOCHREALTIME%.*} - start < max_seconds)); do
    # Body first, then our own last line with status and node; a body never ends the output.
    out=$(curl -s -b "$jar" -c "$jar" --max-time 5 -w '\n%{http_code} %header{x-served-by}' "$url/session" 2>/dev/null)
    sent=$((sent + 1))
    status_line=${out##*$'\n'}
    code=${status_line%% *}
    node=${status_line#* }
    [[ -n $node && $node != "$status_line" ]] || node=-
    count=-
    if [[ $out =~ Session\ View\ Cnt\ +([0-9]+) ]]; then count=${BASH_REMATCH[1]}; fi
    printf '%s %s %s %s\n' "$EPOCHREALTIME" "${code:-000}" "$node" "$count" >>"$log"
done
