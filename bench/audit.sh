#!/usr/bin/env bash
#
# bench/audit.sh: what aigw_audit adds to a request: aigw_pass with and
# without it, the same JSON request, one client connection (the latency a
# request gets, p50 and p99) and then CONNECTIONS (req/s), in rounds that
# alternate off and on; the best round of each is reported.
#
#   bench/audit.sh [-d SECONDS] [-c CONNECTIONS] [-r ROUNDS] [-k]
#
# Environment twins: BENCH_DURATION (5), BENCH_CONNECTIONS (16),
# BENCH_ROUNDS (2), BENCH_KEEP, BENCH_FRONT_PORT and BENCH_MOCK_PORT (the
# ports, else free ones).  AIGW_MODULE_SO, NGINX_BIN as for run.sh.
# One worker; the audit log has a thread pool of one thread, signs every
# checkpoint (Ed25519) and HMACs every body.

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '3,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

BENCH_DURATION=${BENCH_DURATION:-5}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-16}
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
BENCH_KEEP=${BENCH_KEEP:-}

while getopts "d:c:r:kh" opt; do
    case $opt in
        d) BENCH_DURATION=$OPTARG ;;
        c) BENCH_CONNECTIONS=$OPTARG ;;
        r) BENCH_ROUNDS=$OPTARG ;;
        k) BENCH_KEEP=1 ;;
        h) usage 0 ;;
        *) usage 2 ;;
    esac
done

for v in BENCH_DURATION BENCH_CONNECTIONS BENCH_ROUNDS; do
    [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] \
        || bench_die "$v must be a whole number, at least 1"
done
[ "$BENCH_DURATION" -le 600 ] || bench_die "at most 600 seconds"
[ "$BENCH_ROUNDS" -le 20 ] || bench_die "at most 20 rounds"

export BENCH_KEEP
BENCH_WORKERS=1

bench_check_tools wrk curl openssl timeout
bench_make_tmp
bench_traps

# BENCH_FRONT_PORT, BENCH_MOCK_PORT: given ports instead of free ones
if [ -n "${BENCH_FRONT_PORT:-}" ]; then FRONT=$BENCH_FRONT_PORT; else
    bench_pick_port FRONT; fi
if [ -n "${BENCH_MOCK_PORT:-}" ]; then MOCK=$BENCH_MOCK_PORT; else
    bench_pick_port MOCK; fi

bench_write_request "$BENCH_TMP"

bench_conf_mock_server "$MOCK" \
    | bench_conf_main mock 0 0 > "$BENCH_TMP/conf/mock.conf"
bench_conf_front_server "$FRONT" "$MOCK" \
    | bench_conf_main off 1 0 > "$BENCH_TMP/conf/off.conf"

mkdir -p "$BENCH_TMP/audit"
openssl genpkey -algorithm ed25519 -out "$BENCH_TMP/conf/audit.pem" \
    2>/dev/null || bench_die "openssl genpkey failed"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' \
    > "$BENCH_TMP/conf/audit.key"
sed -e "s|^http {|thread_pool  aigw_audit  threads=1;\n\nhttp {\n    \
aigw_audit  $BENCH_TMP/audit  thread_pool=aigw_audit \
sign_key=audit.pem  hmac_key=audit.key;|" \
    "$BENCH_TMP/conf/off.conf" > "$BENCH_TMP/conf/on.conf"

bench_start_nginx mock "$BENCH_TMP/conf/mock.conf" "$MOCK"

# one_run MODE CONNECTIONS LOG: wrk against a fresh nginx of MODE
one_run() {
    local mode=$1 conns=$2 log=$3 pid

    bench_start_nginx "front-$mode" "$BENCH_TMP/conf/$mode.conf" "$FRONT"
    pid=$BENCH_LAST_PID

    AIGW_BENCH_BODY="$BENCH_TMP/body-json.json" \
    AIGW_BENCH_HEADERS="$BENCH_TMP/headers" \
    bench_run timeout -k 5 $((BENCH_DURATION + 60)) \
        wrk -t 1 -c "$conns" -d "${BENCH_DURATION}s" --latency \
            --timeout 10s -s "$BENCH_DIR/post.lua" \
            "http://127.0.0.1:$FRONT/aigw/json/v1/chat/completions" \
            > "$log" 2>&1 || bench_die "wrk failed: $(tail -n 5 "$log")"

    bench_stop_pid "$pid"
    bench_forget "$pid"

    grep '^BENCH ' "$log" || bench_die "no summary from wrk in $log"
}

field() {
    local name=$1 line=" $2 "
    line=${line#* $name=}
    echo "${line%% *}"
}

declare -A P50 P99 RPS

echo "aigw audit bench: ${BENCH_DURATION} s a run, ${BENCH_ROUNDS}" \
     "round(s), nginx $("$NGINX_BIN" -v 2>&1 | sed 's/.*\///'), 1 worker," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

for round in $(seq 1 "$BENCH_ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then modes="off on"; else modes="on off"; fi

    for mode in $modes; do
        line=$(one_run "$mode" 1 "$BENCH_TMP/logs/wrk-$mode-1-$round.log")
        p50=$(field p50_us "$line")
        p99=$(field p99_us "$line")

        line=$(one_run "$mode" "$BENCH_CONNECTIONS" \
                       "$BENCH_TMP/logs/wrk-$mode-n-$round.log")
        rps=$(field rps "$line")

        printf '  round %d audit %-3s  p50 %6s us  p99 %6s us  %10s req/s\n' \
               "$round" "$mode" "$p50" "$p99" "$rps" >&2

        if [ -z "${P50[$mode]:-}" ] || [ "$p50" -lt "${P50[$mode]}" ]; then
            P50[$mode]=$p50
            P99[$mode]=$p99
        fi
        if [ -z "${RPS[$mode]:-}" ] \
           || awk -v a="$rps" -v b="${RPS[$mode]}" 'BEGIN { exit !(a > b) }'
        then
            RPS[$mode]=$rps
        fi
    done
done

records=$(cat "$BENCH_TMP"/audit/audit-*.log 2>/dev/null | wc -l)

echo
printf '%-10s %10s %10s %12s\n' audit "p50 (1 c)" "p99 (1 c)" \
       "req/s ($BENCH_CONNECTIONS c)"
for mode in off on; do
    printf '%-10s %7s us %7s us %12s\n' "$mode" "${P50[$mode]}" \
           "${P99[$mode]}" "${RPS[$mode]}"
done
echo
echo "added at p50: $(( P50[on] - P50[off] )) us (target: under 20 us);" \
     "$records records written"
