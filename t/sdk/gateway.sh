#!/usr/bin/env bash
# Starts aigw in front of the mock provider, runs the command it is given
# (normally t/sdk/run.sh) against it with AIGW_TARGET=gateway, stops both and
# exits with the command's status.
#
#   AIGW_MODULE=build/ngx_http_aigw_module.so t/sdk/gateway.sh t/sdk/run.sh
#
# Every fault test of the SDK suites is pointed at a model whose provider is
# the mock with that fault, so the official SDKs parse each answer and each
# error the gateway gives, streams included.
#
# The gateway listens on AIGW_SDK_PORT when set (ctest gives it, as it gives
# the suites theirs), else on a port the kernel found free.  A port can be
# taken by another run between that choice and nginx's bind: nginx then
# fails with "Address already in use", and is started again on another
# free port, at most AIGW_SDK_PORT_TRIES (5) times in all.

set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
module="${AIGW_MODULE:-$root/build/ngx_http_aigw_module.so}"
nginx="${NGINX_BINARY:-/usr/sbin/nginx}"

[ "$#" -gt 0 ] || set -- "$root/t/sdk/run.sh"
cmd=("$@")

if [ ! -f "$module" ]; then
    echo "gateway.sh: no module at $module" >&2
    exit 1
fi

prefix="$(mktemp -d /tmp/aigw-sdk.XXXXXX)"
mkdir -p "$prefix/logs" "$prefix/conf"

mock_pid=
master=
cleanup() {
    local i
    [ -n "$master" ] || master="$(cat "$prefix/logs/nginx.pid" 2>/dev/null)"
    if [ -n "$master" ] && kill -QUIT "$master" 2>/dev/null; then
        for i in $(seq 1 50); do
            kill -0 "$master" 2>/dev/null || break
            sleep 0.1
        done
        # a daemon leads its process group: the master and its workers
        if kill -0 "$master" 2>/dev/null; then
            echo "gateway.sh: nginx $master did not quit; killing it" >&2
            kill -KILL -- "-$master" "$master" 2>/dev/null || true
        fi
    fi
    if [ -n "$mock_pid" ]; then
        kill "$mock_pid" 2>/dev/null || true
        wait "$mock_pid" 2>/dev/null || true
    fi
    rm -rf "$prefix"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

free_port() {
    perl -MIO::Socket::INET -e \
        'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1",
                                     LocalPort => 0)->sockport'
}

# the file exists before the background child opens it: sed below may run
# first, and a sed that cannot read its file ends this script (set -e)
: > "$prefix/logs/mock.out"
node "$root/examples/mock/aigw-mock.js" --port 0 --host 127.0.0.1 \
    > "$prefix/logs/mock.out" 2>&1 &
mock_pid=$!

mport=
for _ in $(seq 1 100); do
    mport="$(sed -n 's/^aigw-mock listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' \
             "$prefix/logs/mock.out")"
    [ -n "$mport" ] && break
    sleep 0.05
done
[ -n "$mport" ] || { echo "gateway.sh: mock did not start" >&2; exit 1; }

mock="http://127.0.0.1:$mport"

# one provider per fault: "NAME OPTIONS" for each wire format
openai_faults=(
    "400 status=400" "401 status=401" "403 status=403" "404 status=404"
    "409 status=409" "422 status=422" "429 status=429,retry_after=7"
    "500 status=500" "502 status=502" "503 status=503" "RESET reset"
    "HANG hang" "GARBAGE garbage" "BADJSON badjson" "CUT cut=3"
    "STREAM_ERROR stream_error=2" "CHUNKED chunked,delay=50" "GZIP gzip"
    "PACE pace=40,words=20" "STALL stall=2"
)
anthropic_faults=(
    "400 status=400" "401 status=401" "403 status=403" "404 status=404"
    "429 status=429,retry_after=9" "500 status=500" "503 status=503"
    "529 status=529" "STREAM_ERROR stream_error=3" "RESET reset" "CUT cut=4"
    "STALL stall=2"
)

# write_conf PORT: the gateway's nginx.conf, listening on PORT
write_conf() {
local gport=$1
{
    echo "load_module $module;"
    echo "error_log $prefix/logs/error.log info;"
    echo "pid $prefix/logs/nginx.pid;"
    echo "env AIGW_SDK_PROVIDER_KEY;"
    echo "events { worker_connections 256; }"
    echo "http {"
    echo "  access_log $prefix/logs/access.log;"
    echo "  client_body_temp_path $prefix/body;"
    echo "  aigw_provider mock $mock/v1 key_env=AIGW_SDK_PROVIDER_KEY;"
    echo "  aigw_provider claude $mock/v1 format=anthropic"
    echo "                key_env=AIGW_SDK_PROVIDER_KEY;"
    echo "  aigw_cache_zone sdk_cache:1m;"
    echo "  aigw_model gpt-4o-mini mock:gpt-4o-mini;"
    echo "  aigw_model gpt-3.5-turbo-instruct mock:gpt-3.5-turbo-instruct;"
    echo "  aigw_model text-embedding-3-small mock:text-embedding-3-small;"
    echo "  aigw_model claude-haiku-4-5 claude:claude-haiku-4-5;"
    for f in "${openai_faults[@]}"; do
        set -- $f
        echo "  aigw_provider f-$1 $mock/fault/$2/v1"
        echo "                key_env=AIGW_SDK_PROVIDER_KEY;"
        echo "  aigw_model broken-$1 f-$1:gpt-4o-mini;"
    done
    for f in "${anthropic_faults[@]}"; do
        set -- $f
        echo "  aigw_provider af-$1 $mock/fault/$2/v1 format=anthropic"
        echo "                key_env=AIGW_SDK_PROVIDER_KEY;"
        echo "  aigw_model claude-broken-$1 af-$1:claude-haiku-4-5;"
    done
    # resilience: keep-alives while the first token is late; a stream
    # cut mid-answer resumed on the next model, with a prefill
    echo "  aigw_provider late $mock/fault/first=1200/v1"
    echo "                key_env=AIGW_SDK_PROVIDER_KEY;"
    echo "  aigw_provider alate $mock/fault/first=1200/v1 format=anthropic"
    echo "                key_env=AIGW_SDK_PROVIDER_KEY;"
    echo "  aigw_provider rcut $mock/fault/cut=3,chars=5/v1"
    echo "                key_env=AIGW_SDK_PROVIDER_KEY;"
    echo "  aigw_provider arcut $mock/fault/cut=5,chars=5/v1 format=anthropic"
    echo "                key_env=AIGW_SDK_PROVIDER_KEY;"
    echo "  aigw_model late-gpt late:gpt-4o-mini;"
    echo "  aigw_model late-claude alate:claude-haiku-4-5;"
    echo "  aigw_model cut-gpt rcut:gpt-4o-mini;"
    echo "  aigw_model cut-claude arcut:claude-haiku-4-5;"
    echo "  aigw_model gpt-4o-mini-prefill mock:gpt-4o-mini prefill;"
    echo "  aigw_model claude-prefill claude:claude-haiku-4-5 prefill;"
    echo "  aigw_route resumed-gpt cut-gpt gpt-4o-mini-prefill;"
    echo "  aigw_route resumed-claude cut-claude claude-prefill;"
    echo "  server {"
    echo "    listen 127.0.0.1:$gport;"
    echo "    aigw_read_timeout 5s;"
    echo "    aigw_stream_idle_timeout 1s;"
    echo "    location /v1/ { aigw_pass; }"
    # the exact cache: a question asked twice, the second a hit
    echo "    location /cached/v1/ { aigw_cache on; aigw_pass; }"
    # the gateway's own limits: one request a minute of each tenant
    echo "    location /limited/openai/v1/ {"
    echo "      aigw_tenant sdk-openai; aigw_limit tenant rpm=1 tpm=100000;"
    echo "      aigw_pass;"
    echo "    }"
    echo "    location /resilient/v1/ {"
    echo "      aigw_first_token_timeout 3s; aigw_stream_keepalive 200ms;"
    echo "      aigw_stream_resume on;"
    echo "      aigw_pass;"
    echo "    }"
    echo "    location /limited/anthropic/v1/ {"
    echo "      aigw_tenant sdk-anthropic; aigw_limit tenant rpm=1 tpm=100000;"
    echo "      aigw_pass;"
    echo "    }"
    echo "  }"
    echo "}"
} > "$prefix/conf/nginx.conf"
}

export AIGW_SDK_PROVIDER_KEY=sk-aigw-sdk-provider

# A daemon nginx exits 0 only once its listening socket is bound: the port
# is ours then.  One taken meanwhile is an "Address already in use" exit.
tries="${AIGW_SDK_PORT_TRIES:-5}"
gport="${AIGW_SDK_PORT:-}"
for try in $(seq 1 "$tries"); do
    [ -n "$gport" ] || gport="$(free_port)"
    write_conf "$gport"
    rc=0
    "$nginx" -p "$prefix" -c conf/nginx.conf 2> "$prefix/logs/start.err" \
        || rc=$?
    [ "$rc" -eq 0 ] && break
    if ! grep -q 'Address already in use' "$prefix/logs/start.err" \
        || [ "$try" -eq "$tries" ]
    then
        echo "gateway.sh: nginx did not start on port $gport:" >&2
        cat "$prefix/logs/start.err" >&2
        exit 1
    fi
    echo "gateway.sh: port $gport is taken, trying another" >&2
    # its [emerg] lines are not the run's: the log is checked at the end
    rm -f "$prefix/logs/error.log"
    gport=
done

# the daemon writes its pid file after the fork: waited for, bounded
for _ in $(seq 1 100); do
    [ -s "$prefix/logs/nginx.pid" ] && break
    sleep 0.1
done
master="$(cat "$prefix/logs/nginx.pid" 2>/dev/null || true)"
if [ -z "$master" ]; then
    echo "gateway.sh: nginx wrote no pid file" >&2
    exit 1
fi

export AIGW_TARGET=gateway
export AIGW_BASE_URL="http://127.0.0.1:$gport/v1"
export AIGW_ANTHROPIC_BASE_URL="http://127.0.0.1:$gport"
export AIGW_API_KEY=sk-client-key-never-forwarded
export AIGW_CACHED_BASE_URL="http://127.0.0.1:$gport/cached/v1"
export AIGW_CACHED_ANTHROPIC_BASE_URL="http://127.0.0.1:$gport/cached"
export AIGW_RESILIENT_BASE_URL="http://127.0.0.1:$gport/resilient/v1"
export AIGW_RESILIENT_ANTHROPIC_BASE_URL="http://127.0.0.1:$gport/resilient"
export AIGW_LIMITED_BASE_URL="http://127.0.0.1:$gport/limited/openai/v1"
export AIGW_LIMITED_ANTHROPIC_BASE_URL="http://127.0.0.1:$gport/limited/anthropic"
for f in "${openai_faults[@]}"; do
    set -- $f
    export "AIGW_FAULT_MODEL_$1=broken-$1"
done
for f in "${anthropic_faults[@]}"; do
    set -- $f
    export "AIGW_ANTHROPIC_FAULT_MODEL_$1=claude-broken-$1"
done

status=0
"${cmd[@]}" || status=$?

if grep -E '\[(alert|crit|emerg)\]' "$prefix/logs/error.log"; then
    echo "gateway.sh: nginx logged alerts" >&2
    status=1
fi

if grep -q 'sk-client-key-never-forwarded\|sk-aigw-sdk-provider' \
        "$prefix/logs/error.log"; then
    echo "gateway.sh: a secret reached the error log" >&2
    status=1
fi

exit "$status"
