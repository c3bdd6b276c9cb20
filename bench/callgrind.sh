#!/usr/bin/env bash
#
# bench/callgrind.sh: instructions per request of aigw_pass and of a plain
# nginx proxy_pass (upstream keepalive), counted by valgrind's callgrind on
# a single-process nginx, and where aigw's instructions go.
#
#   bench/callgrind.sh [-n REQUESTS] [-s STREAMS] [-c CASES] [-t TOP]
#                      [-o OUTDIR] [-k]
#
#   -n REQUESTS  requests counted per case (default 2000, at most 100000)
#   -s STREAMS   requests counted per long-stream case (default 10)
#   -c CASES     which of "json-aigw json-plain json-quota json-cache
#                json-cachemiss json-audit json-breaker sse-aigw sse-plain
#                stream-aigw stream-plain streamu-aigw streamu-plain
#                streamt-aigw"
#                (default all; a comma or space separated list).  stream:
#                500 events, one a read, from aigw-mock.js, the client
#                without stream_options; streamu: with include_usage;
#                streamt: the stream case's client, its answer from an
#                Anthropic provider, translated event by event
#   -t TOP       functions listed per aigw case (default 15)
#   -o OUTDIR    keep the callgrind.out files there, for callgrind_annotate
#                or kcachegrind
#   -k           keep the temporary prefix (configs, logs)
#
# Environment twins: CALLGRIND_N, CALLGRIND_STREAMS, CALLGRIND_CASES,
# CALLGRIND_TOP, CALLGRIND_OUT, BENCH_KEEP.  AIGW_MODULE_SO, NGINX_BIN as
# for run.sh.  CALLGRIND_INSTR=yes: costs per instruction too (valgrind's
# --dump-instr), to be read against objdump -d where lines are not known.

set -u -o pipefail

# shellcheck disable=SC2034  # BENCH_* variables are read by lib.sh

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '3,30s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

N=${CALLGRIND_N:-2000}
STREAMS=${CALLGRIND_STREAMS:-10}
CASES=${CALLGRIND_CASES:-json-aigw json-plain sse-aigw sse-plain
stream-aigw stream-plain streamu-aigw streamu-plain}
TOP=${CALLGRIND_TOP:-15}
OUTDIR=${CALLGRIND_OUT:-}
BENCH_KEEP=${BENCH_KEEP:-}
WARMUP=50

while getopts "n:s:c:t:o:kh" opt; do
    case $opt in
        n) N=$OPTARG ;;
        s) STREAMS=$OPTARG ;;
        c) CASES=$OPTARG ;;
        t) TOP=$OPTARG ;;
        o) OUTDIR=$OPTARG ;;
        k) BENCH_KEEP=1 ;;
        h) usage 0 ;;
        *) usage 2 ;;
    esac
done

[[ $N =~ ^[0-9]+$ ]] && [ "$N" -ge 10 ] && [ "$N" -le 100000 ] \
    || bench_die "-n takes 10 to 100000 requests"
[[ $STREAMS =~ ^[0-9]+$ ]] && [ "$STREAMS" -ge 1 ] && [ "$STREAMS" -le 1000 ] \
    || bench_die "-s takes 1 to 1000 requests"
[[ $TOP =~ ^[0-9]+$ ]] || bench_die "-t takes a number"

CASES=$(echo ${CASES//,/ })
NODE_MOCK=
for c in $CASES; do
    case $c in
        json-aigw|json-plain|json-quota|json-cache|json-cachemiss) ;;
        json-audit|json-breaker|sse-aigw|sse-plain) ;;
        stream-aigw|stream-plain|streamu-aigw|streamu-plain|streamt-aigw)
            NODE_MOCK=1 ;;
        *) bench_die "unknown case '$c'" ;;
    esac
done

export BENCH_KEEP
BENCH_WORKERS=1

bench_check_tools valgrind callgrind_annotate callgrind_control curl timeout
[ -n "$NODE_MOCK" ] && bench_check_tools node
bench_make_tmp
bench_traps

if [ -n "$OUTDIR" ]; then
    mkdir -p "$OUTDIR" || bench_die "cannot create $OUTDIR"
    OUTDIR=$(cd "$OUTDIR" && pwd)
fi

bench_pick_port FRONT
bench_pick_port MOCK

if [ -n "$NODE_MOCK" ]; then
    bench_pick_port BENCH_STREAM_MOCK
fi

bench_write_request "$BENCH_TMP"

# The mock runs in an nginx of its own, outside valgrind: only the proxy's
# instructions are counted.

bench_conf_mock_server "$MOCK" \
    | bench_conf_main mock 0 0 > "$BENCH_TMP/conf/mock.conf"

bench_conf_front_server "$FRONT" "$MOCK" \
    | bench_conf_main front 1 1 > "$BENCH_TMP/conf/front.conf"

# json-audit: the same with aigw_audit (signed checkpoints, body HMACs);
# its writer thread is outside the event loop, so not counted: what is
# counted is a request's part (the record, its leaf hash, the ring)
mkdir -p "$BENCH_TMP/audit"
openssl genpkey -algorithm ed25519 -out "$BENCH_TMP/conf/audit.pem" \
    2>/dev/null || bench_die "openssl genpkey failed"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' \
    > "$BENCH_TMP/conf/audit.key"
sed -e "s|^http {|thread_pool  aigw_audit  threads=1;\n\nhttp {\n    \
aigw_audit  $BENCH_TMP/audit  thread_pool=aigw_audit \
sign_key=audit.pem  hmac_key=audit.key;|" \
    "$BENCH_TMP/conf/front.conf" > "$BENCH_TMP/conf/front-audit.conf"
BENCH_BREAKER=1 bench_conf_front_server "$FRONT" "$MOCK" \
    | bench_conf_main front 1 1 > "$BENCH_TMP/conf/front-breaker.conf"

bench_start_nginx mock "$BENCH_TMP/conf/mock.conf" "$MOCK"

if [ -n "$NODE_MOCK" ]; then
    bench_start_node_mock "$BENCH_STREAM_MOCK"
fi


# curl_n KIND MODE COUNT: COUNT requests, one after the other, on one
# keep-alive connection; fails unless every answer is a 200

curl_n() {
    local kind=$1 mode=$2 count=$3 i url codes

    url="http://127.0.0.1:$FRONT/$mode/${kind%u}/v1/chat/completions"

    for ((i = 0; i < count; i++)); do
        echo "url = \"$url\""
        echo "output = \"/dev/null\""
    done > "$BENCH_TMP/curl.conf"

    bench_run timeout -k 5 900 curl -sS -m 60 -K "$BENCH_TMP/curl.conf" \
            -H @"$BENCH_TMP/headers" \
            --data-binary @"$BENCH_TMP/body-$kind.json" \
            -w '%{http_code}\n' \
            >"$BENCH_TMP/curl.codes" 2>"$BENCH_TMP/logs/curl.err" \
        || { cat "$BENCH_TMP/logs/curl.err" >&2; return 1; }

    codes=$(cat "$BENCH_TMP/curl.codes")

    if [ "$(grep -c '^200$' <<< "$codes")" != "$count" ]; then
        bench_log "$kind $mode: not every answer was a 200:" \
                  "$(sort <<< "$codes" | uniq -c | tr '\n' ' ')"
        return 1
    fi
}

# check_answer KIND MODE: the answer itself, once: a stream must end in
# [DONE]

check_answer() {
    local kind=$1 mode=$2 url

    url="http://127.0.0.1:$FRONT/$mode/${kind%u}/v1/chat/completions"

    curl -sS -m 10 -H @"$BENCH_TMP/headers" \
         --data-binary @"$BENCH_TMP/body-$kind.json" "$url" \
         > "$BENCH_TMP/answer-$kind-$mode" || return 1

    case $kind in
        json) grep -q '"object":"chat.completion"' "$BENCH_TMP/answer-$kind-$mode" ;;
        sse|stream*)
              grep -q 'data: \[DONE\]' "$BENCH_TMP/answer-$kind-$mode" ;;
    esac || { bench_log "$kind $mode: unexpected answer"; return 1; }
}

# one_case KIND MODE: a fresh nginx under callgrind; warm-up requests, the
# counters zeroed, N requests counted, nginx stopped (callgrind writes its
# file at exit).  Only what runs inside nginx's event loop is collected, so
# start-up and exit are left out.

one_case() {
    local kind=$1 mode=$2 out pid i n=$N warmup=$WARMUP conf

    case $kind in
        stream*) n=$STREAMS warmup=3 ;;
    esac

    out="$BENCH_TMP/callgrind.out.$kind-$mode"

    BENCH_WRAP=(valgrind --tool=callgrind --callgrind-out-file="$out"
                --toggle-collect=ngx_process_events_and_timers
                --dump-instr=${CALLGRIND_INSTR:-no} --compress-strings=no --vgdb=yes
                --vgdb-prefix="$BENCH_TMP/vgdb"
                --log-file="$BENCH_TMP/logs/valgrind-$kind-$mode.log")
    BENCH_START_WAIT=120

    conf=front.conf
    [ "$mode" = audit ] && conf=front-audit.conf
    [ "$mode" = breaker ] && conf=front-breaker.conf

    bench_start_nginx "front-$kind-$mode" "$BENCH_TMP/conf/$conf" "$FRONT"
    pid=$BENCH_LAST_PID
    BENCH_WRAP=()

    curl_n "$kind" "$mode" "$warmup" && check_answer "$kind" "$mode" \
        || bench_die "$kind $mode: warm-up failed; see $BENCH_TMP/logs"

    # the warm-up client's goodbye reaches nginx before the zeroing
    sleep 0.5

    # without vgdb (ptrace may be refused in a container) the warm-up is
    # counted too, and divided by
    if bench_run timeout 60 callgrind_control --vgdb-prefix="$BENCH_TMP/vgdb" \
            -z "$pid" >"$BENCH_TMP/logs/callgrind_control.log" 2>&1
    then
        CASE_REQS[$kind-$mode]=$n
    else
        bench_log "callgrind_control could not zero the counters;" \
                  "the $warmup warm-up requests are counted too"
        CASE_REQS[$kind-$mode]=$((n + warmup))
    fi

    curl_n "$kind" "$mode" "$n" \
        || bench_die "$kind $mode: requests failed; see $BENCH_TMP/logs"

    sleep 0.5

    kill -TERM "$pid" 2>/dev/null

    for i in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done

    kill -0 "$pid" 2>/dev/null && bench_die "nginx under valgrind did not exit"
    wait "$pid" 2>/dev/null
    bench_forget "$pid"

    [ -s "$out" ] || bench_die "no callgrind output for $kind $mode"

    [ -n "$OUTDIR" ] && cp "$out" "$OUTDIR/"
}

# total Ir of a callgrind.out file
total_ir() {
    awk '/^(totals|summary):/ { print $2; exit }' "$1"
}

# annotate FILE INCLUSIVE(yes|no) FILTER COUNT: "Ir/request  %  function"
# callgrind_annotate lists a function of the module twice, "file:fn" and
# "???:fn" (code without line information): self costs are added up,
# inclusive ones are the larger of the two.  Self cost lists leave out the
# frames that merely hold the collected region (main and below).
annotate() {
    local file=$1 incl=$2 filter=$3 count=$4 total

    total=$(total_ir "$file")

    callgrind_annotate --inclusive="$incl" --threshold=100 "$file" \
            2>/dev/null \
        | awk -v n="$REQS" -v total="$total" -v filter="$filter" \
              -v incl="$incl" '
            /^-+$/ { dash++; next }
            dash < 5 || !/^ *[0-9,]+ / { next }
            {
                ir = $1; gsub(",", "", ir); ir += 0
                fn = $0
                sub(/^ *[0-9,]+ +(\([ 0-9.]+%\) +)?/, "", fn)
                obj = ""
                if (match(fn, / \[[^]]*\]$/)) {
                    obj = substr(fn, RSTART + 2, RLENGTH - 3)
                    sub(/.*\//, "", obj)
                    fn = substr(fn, 1, RSTART - 1)
                }
                if (fn ~ /^<counts for unidentified lines in /) {
                    if (incl == "yes") next
                    sub(/^<counts for unidentified lines in .*\//, "", fn)
                    sub(/>$/, "", fn)
                    fn = "(lines without debug info in " fn ")"
                } else {
                    sub(/^.*:/, "", fn)
                }
                if (filter != "" && fn !~ filter) next
                if (incl == "no" && ir >= total + 0) next
                if (obj != "") o[fn] = obj
                if (incl == "yes") { if (ir > c[fn]) c[fn] = ir }
                else c[fn] += ir
            }
            END {
                for (fn in c)
                    printf "%d\t%s\t%s\n", c[fn], fn, (fn in o) ? o[fn] : "?"
            }' \
        | sort -t "$(printf '\t')" -k1,1nr | head -n "$count" \
        | awk -F '\t' -v n="$REQS" -v total="$total" '{
                printf "  %10.0f  %5.1f%%  %s  (%s)\n", $1 / n,
                       100 * $1 / total, $2, $3
            }'
}

declare -A CASE_REQS

echo "aigw callgrind: $N requests per case ($STREAMS per long stream)," \
     "one keep-alive" \
     "client connection, nginx $("$NGINX_BIN" -v 2>&1 | sed 's/.*\///')," \
     "single process" >&2

declare -A IR    # instructions per request of a case

for c in $CASES; do
    kind=${c%-*}
    mode=${c#*-}
    echo "  $kind $mode ..." >&2
    one_case "$kind" "$mode"
    IR[$c]=$(( $(total_ir "$BENCH_TMP/callgrind.out.$c") / CASE_REQS[$c] ))
done

echo
echo "instructions per request (Ir, nginx in front of the mock; the mock"
echo "runs in another process and is not counted)"
echo
printf '%-5s %14s %14s %12s\n' case "plain proxy" "aigw_pass" "aigw/plain"

for kind in json sse stream streamu; do
    p=${IR[$kind-plain]:-}
    a=${IR[$kind-aigw]:-}
    [ -z "$p$a" ] && continue

    printf '%-5s %14s %14s %12s\n' "$kind" "$p" "$a" \
        "$( [ -n "$p" ] && [ -n "$a" ] \
            && awk -v a="$a" -v p="$p" 'BEGIN { printf "%.3f", a / p }')"
done

# the quota step: limits of the key and its tenant in the shared zone
if [ -n "${IR[json-quota]:-}" ] && [ -n "${IR[json-aigw]:-}" ]; then
    echo
    printf 'json with limits (key and tenant, shared zone): %d Ir/request,' \
        "${IR[json-quota]}"
    printf ' %+d over aigw_pass without limits\n' \
        $(( IR[json-quota] - IR[json-aigw] ))
fi

# the exact cache: a hit, and a miss that stores, against aigw_pass
for m in cache cachemiss; do
    if [ -n "${IR[json-$m]:-}" ] && [ -n "${IR[json-aigw]:-}" ]; then
        echo
        printf 'json %s: %d Ir/request, %+d over aigw_pass without a cache' \
            "$( [ $m = cache ] && echo 'cache hit' || echo 'cache miss')" \
            "${IR[json-$m]}" $(( IR[json-$m] - IR[json-aigw] ))
        [ -n "${IR[json-plain]:-}" ] \
            && printf ', %.3f of the plain proxy' \
                "$(awk -v a="${IR[json-$m]}" -v p="${IR[json-plain]}" \
                   'BEGIN { print a / p }')"
        echo
    fi
done

# the audit record: built, hashed and put in the ring by the worker
if [ -n "${IR[json-audit]:-}" ] && [ -n "${IR[json-aigw]:-}" ]; then
    echo
    printf 'json with aigw_audit (record, HMAC, leaf hash, ring): %d' \
        "${IR[json-audit]}"
    printf ' Ir/request, %+d over aigw_pass without it\n' \
        $(( IR[json-audit] - IR[json-aigw] ))
fi

# the breaker zone and latency tracking: a route balanced by latency
if [ -n "${IR[json-breaker]:-}" ] && [ -n "${IR[json-aigw]:-}" ]; then
    echo
    printf 'json through the breaker zone, balance=latency: %d Ir/request,' \
        "${IR[json-breaker]}"
    printf ' %+d over aigw_pass without it\n' \
        $(( IR[json-breaker] - IR[json-aigw] ))
fi

# the long stream: the difference per event (events: the data lines the
# client got from the plain proxy)
for kind in stream streamu; do
    p=${IR[$kind-plain]:-}
    a=${IR[$kind-aigw]:-}
    [ -n "$p" ] && [ -n "$a" ] || continue

    ev=$(grep -c '^data: {' "$BENCH_TMP/answer-$kind-plain")
    [ "$kind" = streamu ] && ev=$((ev - 1))

    [ "$kind" = stream ] && echo
    printf '%-8s %d events: plain %d Ir/event, aigw %+d Ir/event %s\n' \
        "$kind" "$ev" $((p / ev)) $(( (a - p) / ev )) "above plain"
done

# translation: the translated stream against the same one untranslated
if [ -n "${IR[streamt-aigw]:-}" ] && [ -n "${IR[stream-aigw]:-}" ]; then
    ev=$(grep -c '^data: {' "$BENCH_TMP/answer-streamt-aigw")
    printf 'streamt  %d events: translated from Anthropic %+d Ir/event %s\n' \
        "$ev" $(( (IR[streamt-aigw] - IR[stream-aigw]) / ev )) \
        "above the same stream untranslated"
fi

for kind in json sse stream streamu streamt; do
    f="$BENCH_TMP/callgrind.out.$kind-aigw"
    [ -f "$f" ] || continue

    REQS=${CASE_REQS[$kind-aigw]}

    echo
    echo "aigw $kind: module functions by inclusive cost (Ir/request, % of all)"
    annotate "$f" yes 'ngx_http_aigw_' "$TOP"

    echo
    echo "aigw $kind: all functions by self cost (Ir/request, % of all)"
    annotate "$f" no '' "$TOP"
done

if [ -n "$OUTDIR" ]; then
    echo
    echo "callgrind files: $OUTDIR (callgrind_annotate --inclusive=yes FILE)"
fi

problems=$(grep -c -E '\[(error|crit|alert|emerg)\]' "$BENCH_TMP/logs/error.log")
if [ "$problems" -gt 0 ]; then
    echo "nginx logged $problems error line(s); the first ones:" >&2
    grep -E '\[(error|crit|alert|emerg)\]' "$BENCH_TMP/logs/error.log" \
        | head -n 5 >&2
    exit 1
fi

exit 0
