#!/usr/bin/env bash
#
# The semantic cache: lookup time and hit/false-hit rates.
#
#   bench/semantic.sh [-l] [-r] [-c]
#
# 1. (-l, or neither) the lookup: bench/semantic_lookup.c, built with the
#    module's flags against the configured nginx tree of the build
#    (build/nginx-normal), scans one partition of n vectors for the
#    nearest, n = 1024 (the default aigw_cache_semantic_partition),
#    10,000 and 50,000, at 256 dimensions (the mock's) and 1536 (OpenAI's
#    text-embedding-3-small); the best of SEMANTIC_ROUNDS rounds (20).
# 2. (-r, or neither) the rates: nginx with the module and the mock's
#    deterministic embedder; for each pair of bench/data/semantic-pairs.tsv
#    the first question is asked (stored), then the second, in a namespace
#    of its own; the second's X-AIGW-Cache is compared to what the pair
#    says it should be: a paraphrase that is a SEMANTIC_HIT is a hit, a
#    hard negative that is one is a false hit.  SEMANTIC_PRECISION, when
#    set: the index's (float32, int8), in -r's and -c's nginx.
#
# 3. (-c, only when asked: it stores SEMANTIC_CONTENTION_N vectors first,
#    some minutes of CPU) the lock: nginx with two workers and a
#    partition of SEMANTIC_CONTENTION_N (10,000) vectors of 1536
#    dimensions (the mock's text-embedding-3-small), filled by wrk with
#    bench/semantic.lua; then the latency of an exact hit (wrk, one
#    connection, SEMANTIC_CONTENTION_SECONDS, 10) alone, and while another
#    connection runs semantic lookups of that partition back to back
#    (Cache-Control: no-store: looked up, not stored); with
#    SEMANTIC_CONTENTION_WORKERS=1 both on one worker (the scan's slices).
#    Run it once with
#    AIGW_MODULE_SO of the build before a change, once after.
#
# Ports: SEMANTIC_BENCH_PORT and SEMANTIC_BENCH_MOCK_PORT (picked free
# when unset).  Needs gcc, curl, node and /usr/sbin/nginx.

set -u -o pipefail

. "$(dirname "$0")/lib.sh"

lookup=0
rates=0
contention=0

while getopts "lrc" o; do
    case $o in
        l) lookup=1 ;;
        r) rates=1 ;;
        c) contention=1 ;;
        *) bench_die "usage: $0 [-l] [-r] [-c]" ;;
    esac
done

if [ $lookup = 0 ] && [ $rates = 0 ] && [ $contention = 0 ]; then
    lookup=1
    rates=1
fi

bench_check_tools gcc curl node
bench_make_tmp
bench_traps

if [ $lookup = 1 ]; then
    ngx=${SEMANTIC_NGINX_TREE:-$BENCH_ROOT/build/nginx-normal}
    [ -f "$ngx/objs/ngx_auto_config.h" ] \
        || bench_die "no configured nginx tree at $ngx (make build first)"

    gcc -O2 -Wall -Wextra -Wno-unused-parameter \
        -I "$ngx/objs" -I "$ngx/src/core" -I "$ngx/src/event" \
        -I "$ngx/src/event/modules" -I "$ngx/src/os/unix" \
        -o "$BENCH_TMP/semantic_lookup" "$BENCH_DIR/semantic_lookup.c" \
        || bench_die "semantic_lookup.c did not build"

    echo "# lookup: one partition scanned, microseconds (best of" \
         "${SEMANTIC_ROUNDS:-20})"
    echo "# vectors dims us int8-us"

    for n in 1024 10000 50000; do
        for d in 256 1536; do
            "$BENCH_TMP/semantic_lookup" "$n" "$d" "${SEMANTIC_ROUNDS:-20}"
        done
    done
fi

if [ $rates = 1 ]; then
    port=${SEMANTIC_BENCH_PORT:-}
    mport=${SEMANTIC_BENCH_MOCK_PORT:-}
    [ -n "$port" ] || bench_pick_port port
    [ -n "$mport" ] || bench_pick_port mport

    bench_start_node_mock "$mport"

    cat > "$BENCH_TMP/conf/semantic.conf" <<EOC
load_module  $AIGW_MODULE_SO;
master_process  off;
pid        $BENCH_TMP/logs/semantic.pid;
error_log  $BENCH_TMP/logs/error.log  warn;
events { worker_connections 64; }
http {
    access_log  off;
    client_body_temp_path  $BENCH_TMP/tmp;
    proxy_temp_path  $BENCH_TMP/tmp;
    aigw_cache_zone  cache:16m;
    aigw_provider  mock  http://127.0.0.1:$mport/v1;
    aigw_model  gpt-4o  mock:gpt-4o;
    server {
        listen  127.0.0.1:$port;
        aigw_auth  off;
        location /v1/ {
            aigw_cache  on;
            aigw_cache_namespace  \$http_x_pair;
            aigw_cache_semantic  /_embeddings;
            aigw_cache_semantic_model  mock-semantic;
            ${SEMANTIC_PRECISION:+aigw_cache_semantic_precision  $SEMANTIC_PRECISION;}
            aigw_pass;
        }
        location = /_embeddings {
            internal;
            proxy_pass  http://127.0.0.1:$mport/v1/embeddings;
            proxy_pass_request_headers  off;
            proxy_set_header  Content-Type  application/json;
            subrequest_output_buffer_size  64k;
        }
    }
}
EOC

    bench_start_nginx semantic "$BENCH_TMP/conf/semantic.conf" "$port"

    ask() {
        local pair=$1 text=$2
        text=${text//\\/\\\\}
        text=${text//\"/\\\"}
        curl -s -o /dev/null -D - "http://127.0.0.1:$port/v1/chat/completions" \
            -H "X-Pair: p$pair" -H 'Content-Type: application/json' \
            -d "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"$text\"}]}" \
            | tr -d '\r' | sed -n 's/^X-AIGW-Cache: //Ip'
    }

    i=0; hits=0; paraphrases=0; false_hits=0; negatives=0

    while IFS=$'\t' read -r first second want; do
        case $first in '#'*|'') continue ;; esac
        i=$((i + 1))
        ask "$i" "$first" > /dev/null
        got=$(ask "$i" "$second")

        if [ "$want" = hit ]; then
            paraphrases=$((paraphrases + 1))
            [ "$got" = SEMANTIC_HIT ] && hits=$((hits + 1))
        else
            negatives=$((negatives + 1))
            [ "$got" = SEMANTIC_HIT ] && false_hits=$((false_hits + 1))
        fi

        printf '%-13s %-5s %s | %s\n' "${got:-?}" "$want" "$first" "$second"
    done < "$BENCH_DIR/data/semantic-pairs.tsv"

    echo "# paraphrases hit: $hits of $paraphrases;" \
         "hard negatives hit (false hits): $false_hits of $negatives"
fi

if [ $contention = 1 ]; then
    bench_check_tools wrk ss perl
    cport=${SEMANTIC_CONTENTION_PORT:-}
    cmport=${SEMANTIC_CONTENTION_MOCK_PORT:-}
    [ -n "$cport" ] || bench_pick_port cport
    [ -n "$cmport" ] || bench_pick_port cmport
    want=${SEMANTIC_CONTENTION_N:-10000}
    secs=${SEMANTIC_CONTENTION_SECONDS:-10}

    bench_start_node_mock "$cmport"

    cworkers=${SEMANTIC_CONTENTION_WORKERS:-2}
    case $cworkers in 1|2) ;; *) bench_die "SEMANTIC_CONTENTION_WORKERS: 1 or 2" ;; esac

    cat > "$BENCH_TMP/conf/contention.conf" <<EOC
load_module  $AIGW_MODULE_SO;
worker_processes  $cworkers;
pid        $BENCH_TMP/logs/contention.pid;
error_log  $BENCH_TMP/logs/error.log  warn;
events { worker_connections 64; }
http {
    access_log  off;
    keepalive_requests  10000000;
    client_body_temp_path  $BENCH_TMP/tmp;
    proxy_temp_path  $BENCH_TMP/tmp;
    aigw_cache_zone  cache:${SEMANTIC_CONTENTION_ZONE:-$(( want * 20 / 1000 + 16 ))m};
    aigw_provider  mock  http://127.0.0.1:$cmport/v1;
    aigw_model  gpt-4o  mock:gpt-4o;
    server {
        listen  127.0.0.1:$cport reuseport;
        aigw_auth  off;
        location /v1/ {
            aigw_cache  on;
            aigw_cache_semantic  /_embeddings;
            aigw_cache_semantic_model  text-embedding-3-small;
            aigw_cache_semantic_partition  $want;
            ${SEMANTIC_PRECISION:+aigw_cache_semantic_precision  $SEMANTIC_PRECISION;}
            aigw_pass;
        }
        location = /_embeddings {
            internal;
            proxy_pass  http://127.0.0.1:$cmport/v1/embeddings;
            proxy_pass_request_headers  off;
            proxy_set_header  Content-Type  application/json;
            subrequest_output_buffer_size  64k;
        }
        location = /metrics {
            aigw_metrics;
        }
    }
}
EOC

    bench_start_nginx contention "$BENCH_TMP/conf/contention.conf" "$cport"

    url=http://127.0.0.1:$cport/v1/chat/completions

    metric() {
        curl -s "http://127.0.0.1:$cport/metrics" | sed -n "s/^$1 \([0-9]*\).*/\1/p"
    }

    # the nginx workers of the client connections to the port, one a line
    workers() {
        ss -tnpH state established "( sport = :$cport )" \
            | sed -n 's/.*pid=\([0-9]*\).*/\1/p'
    }

    # the partition filled: at most 30 rounds of 10 s
    for round in $(seq 1 30); do
        n=$(metric aigw_cache_semantic_vectors_total)
        [ "${n:-0}" -ge "$want" ] && break
        echo "# filling the partition: ${n:-0} of $want vectors"
        AIGW_SEM_TAG=fill$round wrk -t2 -c4 -d10s \
            -s "$BENCH_DIR/semantic.lua" "$url" > /dev/null
    done

    n=$(metric aigw_cache_semantic_vectors_total)
    [ "${n:-0}" -ge "$want" ] || bench_die "only ${n:-0} vectors stored"

    # the exact hit: stored once, then asked by wrk on one connection

    printf '%s' '{"model":"gpt-4o","messages":[{"role":"system","content":"bench"},{"role":"user","content":"The exact one"}]}' \
        > "$BENCH_TMP/exact.json"
    curl -s -o /dev/null -H 'Content-Type: application/json' \
        --data-binary @"$BENCH_TMP/exact.json" "$url"
    hit=$(curl -s -o /dev/null -D - -H 'Content-Type: application/json' \
              --data-binary @"$BENCH_TMP/exact.json" "$url" \
          | tr -d '\r' | sed -n 's/^X-AIGW-Cache: //Ip')
    [ "$hit" = HIT ] || bench_die "the exact request is not a hit ($hit)"

    echo "# exact hits, one connection, $secs s; semantic lookups of" \
         "$want vectors x 1536 dims on another, $cworkers worker(s)" \
         "(module $AIGW_MODULE_SO)"

    hits=$((secs * 1000))

    # the hits' client: paced, one a millisecond, on its own connection
    hits() {
        perl "$BENCH_DIR/semantic_hits.pl" "$cport" /v1/chat/completions \
            "$BENCH_TMP/exact.json" "$hits" 1000 \
            > "$BENCH_TMP/exact.out" 2> "$BENCH_TMP/exact.err" &
        exact=$!
        BENCH_PIDS+=("$exact")

        for i in $(seq 1 100); do
            grep -q connected "$BENCH_TMP/exact.err" && break
            sleep 0.1
        done
    }

    hits
    wait "$exact"
    bench_forget "$exact"
    sed -n 's/^/exact alone: /p' "$BENCH_TMP/exact.out"

    # the lookups on one connection, the hits on another: each kept to
    # a worker (keepalive_requests), the hits' made again (at most 8
    # times) until the other worker serves them, for a scan holds its
    # worker whatever the lock does

    AIGW_SEM_TAG=load AIGW_SEM_NOSTORE=1 \
        wrk -t1 -c1 -d"$((secs * 3 + 20))s" -s "$BENCH_DIR/semantic.lua" \
        "$url" > "$BENCH_TMP/load.out" &
    load=$!
    BENCH_PIDS+=("$load")

    for i in $(seq 1 100); do
        lw=$(workers)
        [ -n "$lw" ] && break
        sleep 0.1
    done

    [ -n "$lw" ] || bench_die "the lookups' connection is not seen"

    for try in $(seq 1 8); do
        hits

        # one worker: the hits wait for the lookups' slices on it
        if [ "$cworkers" = 1 ] || [ -n "$(workers | grep -vx "$lw")" ]; then
            wait "$exact"
            bench_forget "$exact"
            sed -n 's/^/exact with lookups: /p' "$BENCH_TMP/exact.out"
            break
        fi

        bench_stop_pid "$exact"
        bench_forget "$exact"
        echo "# the hits' connection went to the lookups' worker, again"
    done

    kill -INT "$load" 2>/dev/null
    wait "$load"
    bench_forget "$load"
    sed -n 's/^BENCH /semantic lookups: /p' "$BENCH_TMP/load.out"
    echo "# semantic lookups: $(metric \
        'aigw_cache_semantic_lookups_total{result="miss"}') misses in all"
fi
