#!/usr/bin/env bash
#
# The semantic cache: lookup time and hit/false-hit rates.
#
#   bench/semantic.sh [-l] [-r]
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
#    hard negative that is one is a false hit.
#
# Ports: SEMANTIC_BENCH_PORT and SEMANTIC_BENCH_MOCK_PORT (picked free
# when unset).  Needs gcc, curl, node and /usr/sbin/nginx.

set -u -o pipefail

. "$(dirname "$0")/lib.sh"

lookup=0
rates=0

while getopts "lr" o; do
    case $o in
        l) lookup=1 ;;
        r) rates=1 ;;
        *) bench_die "usage: $0 [-l] [-r]" ;;
    esac
done

if [ $lookup = 0 ] && [ $rates = 0 ]; then
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
    echo "# vectors dims us"

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
