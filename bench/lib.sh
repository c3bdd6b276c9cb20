# shellcheck shell=bash
# shellcheck disable=SC2034  # BENCH_LAST_PID is read by the scripts
#
# Shared by bench/run.sh and bench/callgrind.sh: the temporary prefix, free
# ports, process bookkeeping and cleanup, the request the client sends, the
# mock provider, and the nginx configuration around it.  Source it; it runs
# nothing by itself.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_ROOT=$(cd "$BENCH_DIR/.." && pwd)

NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
AIGW_MODULE_SO=${AIGW_MODULE_SO:-build/ngx_http_aigw_module.so}

BENCH_TMP=
BENCH_LAST_PID=
BENCH_WRAP=()
BENCH_PIDS=()          # processes this script started, stopped in reverse
BENCH_PORTS=" "        # ports handed out, so two picks never collide


bench_die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

bench_log() {
    echo "${0##*/}: $*" >&2
}


# --- setup and cleanup -------------------------------------------------

bench_check_tools() {
    local t

    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || bench_die "needs '$t' in PATH"
    done

    [ -x "$NGINX_BIN" ] || bench_die "no nginx at $NGINX_BIN (set NGINX_BIN)"

    # a relative module path is taken from the repository root
    case "$AIGW_MODULE_SO" in
        /*) ;;
        *) AIGW_MODULE_SO="$BENCH_ROOT/$AIGW_MODULE_SO" ;;
    esac

    [ -f "$AIGW_MODULE_SO" ] \
        || bench_die "no module at $AIGW_MODULE_SO (build it, or set" \
                     "AIGW_MODULE_SO=/path/to/ngx_http_aigw_module.so)"
}


# A private prefix: conf/, logs/, tmp/ of every nginx started here.

bench_make_tmp() {
    BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/aigw-bench.XXXXXX") \
        || bench_die "cannot create a temporary directory"

    # nginx workers run as "nobody" when started by root
    chmod 755 "$BENCH_TMP"
    mkdir -p "$BENCH_TMP/conf" "$BENCH_TMP/logs" "$BENCH_TMP/tmp"
}


# Stops what was started, newest first: SIGTERM (a master stops its
# workers), a few seconds' grace, then SIGKILL for it and its children.

bench_stop_pid() {
    local pid=$1 i kids

    kill -0 "$pid" 2>/dev/null || return 0

    kids=$(pgrep -P "$pid" 2>/dev/null)
    kill -TERM "$pid" 2>/dev/null

    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done

    if kill -0 "$pid" 2>/dev/null; then
        bench_log "process $pid did not stop on SIGTERM, killing it"
        kill -KILL "$pid" 2>/dev/null
    fi

    for i in $kids; do
        kill -KILL "$i" 2>/dev/null
    done

    wait "$pid" 2>/dev/null
    return 0
}

bench_cleanup() {
    local i

    trap - EXIT INT TERM HUP

    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        bench_stop_pid "${BENCH_PIDS[i]}"
    done

    BENCH_PIDS=()

    if [ -n "$BENCH_TMP" ] && [ -d "$BENCH_TMP" ]; then
        if [ -n "${BENCH_KEEP:-}" ]; then
            bench_log "kept $BENCH_TMP"
        else
            rm -rf "$BENCH_TMP"
        fi
    fi
}

# bench_forget PID: a process that has ended, and needs no cleanup.

bench_forget() {
    local p keep=()

    for p in "${BENCH_PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done

    BENCH_PIDS=(${keep[@]+"${keep[@]}"})
}

# bench_run CMD...: runs a command as a background job that cleanup knows
# of, and waits for it; a signal to the script is then acted on at once,
# not after the command ends.  Returns the command's status.

bench_run() {
    local pid rc

    "$@" &
    pid=$!
    BENCH_PIDS+=("$pid")

    wait "$pid"
    rc=$?

    bench_forget "$pid"
    return "$rc"
}

bench_traps() {
    trap 'bench_cleanup' EXIT
    trap 'bench_cleanup; exit 130' INT
    trap 'bench_cleanup; exit 143' TERM
    trap 'bench_cleanup; exit 129' HUP
}


# --- ports ---------------------------------------------------------------

# Ports in LISTEN state (TCP and TCP6), from /proc: no ss/netstat needed.

bench_listening_ports() {
    local f

    for f in /proc/net/tcp /proc/net/tcp6; do
        [ -r "$f" ] || continue
        while read -r _ local _ st _; do
            [ "$st" = "0A" ] || continue
            echo $((16#${local##*:}))
        done < <(tail -n +2 "$f")
    done
}

# bench_pick_port VAR: a port below the kernel's ephemeral range (so that
# no outgoing connection holds it) that nothing listens on; with
# BENCH_PORT_BASE set, only from the 20 ports starting there.

bench_pick_port() {
    local var=$1 p i busy

    busy=" $(bench_listening_ports | tr '\n' ' ') "

    for i in $(seq 1 200); do
        if [ -n "${BENCH_PORT_BASE:-}" ]; then
            # a range of the caller's own: BENCH_PORT_BASE .. +19
            [ "$i" -gt 20 ] && break
            p=$((BENCH_PORT_BASE + i - 1))
        else
            p=$((20000 + RANDOM % 12000))
        fi

        case "$busy$BENCH_PORTS" in
            *" $p "*) continue ;;
        esac

        BENCH_PORTS="$BENCH_PORTS$p "
        printf -v "$var" '%s' "$p"
        return 0
    done

    bench_die "no free port found"
}

# bench_wait_port PORT SECONDS [PID]: until something accepts on PORT.

bench_wait_port() {
    local port=$1 secs=$2 pid=${3:-} i

    for i in $(seq 1 $((secs * 10))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi

        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi

        sleep 0.1
    done

    return 1
}


# --- what the client sends -------------------------------------------------

# A chat request as an SDK sends it: ~320 bytes of JSON and the headers of
# the official Python SDK.  The streaming one asks for usage, as metering
# clients do.

bench_write_request() {
    local dir=$1

    cat > "$dir/body-json.json" <<'EOF'
{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly and precisely."},{"role":"user","content":"Summarise in two sentences why keep-alive connections reduce latency for HTTP APIs, and name one trade-off."}],"temperature":0.2,"max_tokens":256,"user":"bench-user-42"}
EOF

    cat > "$dir/body-sse.json" <<'EOF'
{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly and precisely."},{"role":"user","content":"Summarise in two sentences why keep-alive connections reduce latency for HTTP APIs, and name one trade-off."}],"temperature":0.2,"max_tokens":256,"user":"bench-user-42","stream":true,"stream_options":{"include_usage":true}}
EOF

    # the long stream (bench/callgrind.sh's "stream" cases): no max_tokens
    # to cut the answer short; the SDK default without stream_options, and
    # with the client's include_usage
    sed 's/,"max_tokens":256//' "$dir/body-sse.json" > "$dir/body-streamu.json"
    sed 's/,"stream_options":{"include_usage":true}//' \
        "$dir/body-streamu.json" > "$dir/body-stream.json"
    # the same client, its stream from an Anthropic provider, translated
    cp "$dir/body-stream.json" "$dir/body-streamt.json"

    # the virtual key of the headers below: aigw authenticates every
    # request, as it does in production
    cat > "$dir/keys.json" <<'EOF'
{"keys":[{"id":"bench","tenant":"bench","user":"u42",
  "hash":"fb60bd289b4f3d4b2c1dd8a8c0ef39d041d3f4b3d1d66a5c6e7b6e0d9ca7d739"}]}
EOF

    cat > "$dir/headers" <<'EOF'
Content-Type: application/json
Accept: application/json
Authorization: Bearer sk-bench-0123456789abcdefghijklmnopqrstuvwxyzABCDEF
User-Agent: OpenAI/Python 1.54.4
X-Stainless-Lang: python
X-Stainless-Package-Version: 1.54.4
X-Stainless-OS: Linux
X-Stainless-Arch: x64
X-Stainless-Runtime: CPython
X-Stainless-Runtime-Version: 3.11.9
X-Stainless-Retry-Count: 0
EOF
}


# --- the mock provider ------------------------------------------------------

BENCH_ID=chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG
BENCH_HEAD='"object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306"'

# the answer of POST /json/v1/chat/completions (~1 KB)
bench_mock_json() {
    printf '%s' '{"id":"'"$BENCH_ID"'","object":"chat.completion","created":1741570283,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Keep-alive connections let a client reuse one TCP (and TLS) connection for many requests, so each call skips the handshakes and slow start and begins sending at once. The trade-off is that idle connections hold memory and file descriptors on both ends until they time out.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":41,"completion_tokens":52,"total_tokens":93,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_06737a9306"}'
}

# the answer of POST /sse/v1/chat/completions (~4 KB): a role chunk, ten
# content chunks, the finish chunk, the usage chunk and [DONE], as OpenAI
# streams them with stream_options.include_usage
bench_mock_sse() {
    local t

    printf 'data: {"id":"%s",%s,"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}\n\n' \
        "$BENCH_ID" "$BENCH_HEAD"

    for t in "Keep" "-alive" " connections" " skip" " the" " handshakes" \
             " on" " every" " call" "."
    do
        printf 'data: {"id":"%s",%s,"choices":[{"index":0,"delta":{"content":"%s"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n' \
            "$BENCH_ID" "$BENCH_HEAD" "$t"
    done

    printf 'data: {"id":"%s",%s,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}\n\n' \
        "$BENCH_ID" "$BENCH_HEAD"

    printf 'data: {"id":"%s",%s,"choices":[],"usage":{"prompt_tokens":41,"completion_tokens":10,"total_tokens":51,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n' \
        "$BENCH_ID" "$BENCH_HEAD"

    printf 'data: [DONE]\n\n'
}

# The mock provider as an nginx server block: fixed answers with "return".
# nginx reads a configuration token of at most 4 KB, so the stream is kept in
# a few constant map variables, each ending on an event boundary, and
# "return" joins them.  The stream goes out chunked, as providers send it: a
# sub_filter whose string never occurs makes nginx drop Content-Length (the
# cost is on the mock's side, the same for both proxies).
# BENCH_SSE_CHUNKED=0 sends it with a Content-Length instead.

bench_conf_mock_server() {
    local port=$1 chunked=${BENCH_SSE_CHUNKED:-1}
    local sse part n=0 vars=

    sse=$(bench_mock_sse; echo x)
    sse=${sse%x}

    while [ -n "$sse" ]; do
        part=
        # whole events, up to ~1.5 KB a part
        while [ -n "$sse" ] && [ "${#part}" -lt 1500 ]; do
            part=$part${sse%%$'\n\n'*}$'\n\n'
            sse=${sse#*$'\n\n'}
        done

        n=$((n + 1))
        vars="$vars\$aigw_bench_sse_$n"

        cat <<EOF
    map \$request_method \$aigw_bench_sse_$n {
        default  '$part';
    }

EOF
    done

    cat <<EOF
    # --- mock provider: OpenAI chat completions, JSON and SSE ---
    server {
        listen  127.0.0.1:$port;

        keepalive_requests  1000000;
        keepalive_timeout   300s;
        charset             off;

        location = /json/v1/chat/completions {
            default_type  application/json;
            return 200 '$(bench_mock_json)';
        }

        location = /sse/v1/chat/completions {
            default_type  text/event-stream;
            add_header    Cache-Control no-cache;
EOF

    if [ "$chunked" = 1 ]; then
        cat <<EOF
            sub_filter_types  text/event-stream;
            sub_filter        '@@aigw-bench-never-matches@@' '';
EOF
    fi

    cat <<EOF
            return 200 '$vars';
        }

        location / {
            return 404;
        }
    }
EOF
}

# The two proxies in front of the mock: plain proxy_pass with an upstream
# keepalive pool, and aigw_pass; the same keepalive limits for both.

# BENCH_STREAM_MOCK: the port of examples/mock/aigw-mock.js, for the long
# stream: 500 events of one word each (498 words, the role and the finish
# chunks), one write every millisecond, so that each is a read of its own
# at the proxy (see bench_start_node_mock).
BENCH_STREAM_OPTS=words=498,piece=1,pace=1

bench_conf_front_server() {
    local port=$1 mock=$2 ka=${BENCH_KEEPALIVE:-128}
    local node=${BENCH_STREAM_MOCK:-} stream_locations=
    local breaker_http= breaker_location=

    # BENCH_BREAKER=1: (d) the breaker zone, and a route balanced by
    # latency through it: what provider health costs a request
    if [ -n "${BENCH_BREAKER:-}" ]; then
        breaker_http='    aigw_breaker  zone=bench_breaker:64k;
    aigw_route  bench-json-lat  bench-json  balance=latency;
'
        breaker_location='        location /breaker/json/v1/ {
            aigw_pass  bench-json-lat;
        }
'
    fi

    if [ -n "$node" ]; then
        stream_locations='        location /plain/stream/v1/ {
            proxy_pass
                http://bench_node/fault/'$BENCH_STREAM_OPTS'/v1/;
            proxy_http_version  1.1;
            proxy_set_header    Connection "";
            proxy_buffering     off;
        }

        location /aigw/stream/v1/ {
            aigw_pass  bench-stream;
        }

        # the same stream from an Anthropic provider, translated
        location /aigw/streamt/v1/ {
            aigw_pass  bench-streamt;
        }

'
        cat <<EOF
    # --- the long stream: aigw-mock.js ---
    upstream bench_node {
        server  127.0.0.1:$node;
        keepalive           $ka;
        keepalive_requests  1000000;
        keepalive_timeout   60s;
    }

    aigw_provider  mocknode
        http://127.0.0.1:$node/fault/$BENCH_STREAM_OPTS/v1  format=openai;
    aigw_model  bench-stream  mocknode:gpt-4o-mini  input=0.15 output=0.60;
    aigw_provider  mocknodeclaude
        http://127.0.0.1:$node/fault/$BENCH_STREAM_OPTS/v1  format=anthropic;
    aigw_model  bench-streamt  mocknodeclaude:claude-haiku-4-5
                input=1.00 output=5.00;

EOF
    fi

    cat <<EOF
    # --- (a) plain nginx proxy ---
    upstream bench_mock {
        server  127.0.0.1:$mock;
        keepalive           $ka;
        keepalive_requests  1000000;
        keepalive_timeout   300s;
    }

    # --- (b) aigw ---
    aigw_keys  $BENCH_TMP/keys.json;

    aigw_provider  mockjson  http://127.0.0.1:$mock/json/v1  format=openai;
    aigw_provider  mocksse   http://127.0.0.1:$mock/sse/v1   format=openai;

    aigw_model  bench-json  mockjson:gpt-4o-mini  input=0.15 output=0.60;
    aigw_model  bench-sse   mocksse:gpt-4o-mini   input=0.15 output=0.60;

    aigw_cache_zone  bench_cache:16m;

$breaker_http
    aigw_keepalive           $ka;
    aigw_keepalive_requests  1000000;
    aigw_keepalive_timeout   300s;

    server {
        listen  127.0.0.1:$port;

        keepalive_requests  1000000;
        keepalive_timeout   300s;

        # the size of aigw_buffer_size (16k): the answer's header and the
        # stream pass through a buffer of the same size in both proxies
        proxy_buffer_size   16k;
        proxy_buffers       8 16k;

        location /plain/json/v1/ {
            proxy_pass          http://bench_mock/json/v1/;
            proxy_http_version  1.1;
            proxy_set_header    Connection "";
        }

        # an operator turns buffering off for streams
        location /plain/sse/v1/ {
            proxy_pass          http://bench_mock/sse/v1/;
            proxy_http_version  1.1;
            proxy_set_header    Connection "";
            proxy_buffering     off;
        }

$stream_locations        location /aigw/json/v1/ {
            aigw_pass  bench-json;
        }

        location /aigw/sse/v1/ {
            aigw_pass  bench-sse;
        }

        # (d) the exact cache: every request a hit (the same body)
        location /cache/json/v1/ {
            aigw_cache  on;
            aigw_pass  bench-json;
        }

        # (e) the cache's cost on a miss: key, lookup, store (a TTL of
        # 0 s makes every request a miss that stores)
        location /cachemiss/json/v1/ {
            aigw_cache      on;
            aigw_cache_ttl  0s;
            aigw_pass  bench-json;
        }

        # (f) the same as (b); audited where the configuration has
        # aigw_audit (callgrind.sh's json-audit)
        location /audit/json/v1/ {
            aigw_pass  bench-json;
        }

        # (c) aigw with limits that never refuse: the quota step's cost
        location /quota/json/v1/ {
            aigw_limit  key     rpm=100000000 tpm=100000000000
                                budget=1000000/month;
            aigw_limit  tenant  rpm=100000000 concurrency=100000;
            aigw_pass  bench-json;
        }
$breaker_location    }
EOF
}

# bench_start_node_mock PORT: examples/mock/aigw-mock.js on PORT, stopped
# with the rest.

bench_start_node_mock() {
    local port=$1 pid

    node "$BENCH_ROOT/examples/mock/aigw-mock.js" --port "$port" \
        >"$BENCH_TMP/logs/node-mock.out" 2>&1 &
    pid=$!
    BENCH_PIDS+=("$pid")

    bench_wait_port "$port" 20 "$pid" || bench_die "aigw-mock.js did not start"
}

# bench_conf_main NAME LOAD_MODULE SINGLE: the top of a configuration whose
# http block is read from stdin.  SINGLE=1: one process, no master (nginx
# is always started with -g 'daemon off;').

bench_conf_main() {
    local name=$1 with_module=$2 single=$3 workers=${BENCH_WORKERS:-1}
    local t=$BENCH_TMP

    if [ "$with_module" = 1 ]; then
        echo "load_module  $AIGW_MODULE_SO;"
    fi

    if [ "$single" = 1 ]; then
        echo "master_process  off;"
        workers=1
    fi

    cat <<EOF
worker_processes  $workers;
pid        $t/logs/$name.pid;
error_log  $t/logs/error.log  ${BENCH_LOG_LEVEL:-warn};

events {
    worker_connections  4096;
}

http {
    access_log  off;

    client_body_temp_path  $t/tmp/body;
    proxy_temp_path        $t/tmp/proxy;
    fastcgi_temp_path      $t/tmp/fastcgi;
    uwsgi_temp_path        $t/tmp/uwsgi;
    scgi_temp_path         $t/tmp/scgi;

EOF
    cat
    echo "}"
}

# bench_start_nginx NAME CONF PORT... : starts nginx in the foreground of a
# background job (its PID, left in BENCH_LAST_PID, is ours to stop) and
# waits until it listens.  With BENCH_WRAP set (an array), nginx runs under
# that command, e.g. valgrind.

bench_start_nginx() {
    local name=$1 conf=$2 pid port
    shift 2

    "$NGINX_BIN" -p "$BENCH_TMP/" -c "$conf" -e "$BENCH_TMP/logs/error.log" \
        -t -q 2>"$BENCH_TMP/logs/$name.test" \
        || { cat "$BENCH_TMP/logs/$name.test" >&2;
             bench_die "nginx refused $conf"; }

    ${BENCH_WRAP[@]+"${BENCH_WRAP[@]}"} \
        "$NGINX_BIN" -p "$BENCH_TMP/" -c "$conf" -e "$BENCH_TMP/logs/error.log" \
        -g 'daemon off;' >"$BENCH_TMP/logs/$name.out" 2>&1 &
    pid=$!
    BENCH_LAST_PID=$pid
    BENCH_PIDS+=("$pid")

    for port in "$@"; do
        bench_wait_port "$port" "${BENCH_START_WAIT:-20}" "$pid" || {
            tail -n 20 "$BENCH_TMP/logs/error.log" >&2
            bench_die "$name did not listen on port $port"
        }
    done
}
