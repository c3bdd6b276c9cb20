#!/usr/bin/env bash
# Runs the SDK compatibility tests (t/sdk/*.test.mjs) with node's test runner.
#
#   t/sdk/run.sh                      # starts its own mock on a free port
#   AIGW_BASE_URL=http://127.0.0.1:8081/v1 t/sdk/run.sh
#   AIGW_TARGET=gateway AIGW_BASE_URL=http://127.0.0.1:8080/v1 AIGW_API_KEY=... t/sdk/run.sh
#   t/sdk/run.sh --test-reporter=tap anthropic.test.mjs
#
# Arguments are passed to `node --test`; with no file among them, all
# *.test.mjs files run.  Installs the pinned SDKs (npm ci) on first use.
# Environment variables: see t/sdk/README.md.

set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

if [ ! -d node_modules ]; then
    if [ -f package-lock.json ]; then
        npm ci --silent --no-audit --no-fund
    else
        npm install --silent --no-audit --no-fund
    fi
fi

mock_pid=
cleanup() {
    if [ -n "$mock_pid" ]; then
        kill "$mock_pid" 2>/dev/null || true
        wait "$mock_pid" 2>/dev/null || true
    fi
    [ -z "${mock_out:-}" ] || rm -f "$mock_out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${AIGW_BASE_URL:-}" ]; then
    if [ "${AIGW_TARGET:-mock}" != "mock" ]; then
        echo "run.sh: AIGW_TARGET=${AIGW_TARGET} needs AIGW_BASE_URL" >&2
        exit 2
    fi
    mock_out="$(mktemp)"
    node ../../examples/mock/aigw-mock.js --port 0 --host 127.0.0.1 >"$mock_out" &
    mock_pid=$!
    port=
    for _ in $(seq 1 100); do
        port="$(sed -n 's/^aigw-mock listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$mock_out")"
        [ -n "$port" ] && break
        kill -0 "$mock_pid" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "run.sh: the mock provider did not start" >&2
        exit 1
    fi
    export AIGW_BASE_URL="http://127.0.0.1:$port/v1"
    echo "run.sh: started aigw-mock on 127.0.0.1:$port" >&2
fi

args=("$@")
have_file=no
for a in "$@"; do
    case "$a" in
        -*) ;;
        *) have_file=yes ;;
    esac
done
if [ "$have_file" = no ]; then
    args+=(*.test.mjs)
fi

# One file at a time: the mock's /_mock/* state is shared by all requests.
node --test --test-concurrency=1 "${args[@]}"
