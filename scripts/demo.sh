#!/usr/bin/env bash
# Starts the gateway on 127.0.0.1:8080 with examples/nginx.conf, in the
# background, with the bundled mock provider on 127.0.0.1:8081.  Without
# OPENAI_API_KEY the "openai" provider is pointed at the mock, so that
#
#   curl http://127.0.0.1:8080/v1/chat/completions \
#        -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
#
# answers at once.  `scripts/demo.sh stop` stops both.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
so=${AIGW_MODULE:-${AIGW_MODULE_SO:-$root/build/ngx_http_aigw_module.so}}
nginx=${NGINX_BINARY:-/usr/sbin/nginx}
prefix=$root/build/demo
conf=$prefix/conf/nginx.conf

stop() {
    if [ -f "$prefix/logs/nginx.pid" ]; then
        # a signal, not "nginx -s quit", which would parse the config again
        kill -QUIT "$(cat "$prefix/logs/nginx.pid")" 2>/dev/null \
            || rm -f "$prefix/logs/nginx.pid"
        for _ in $(seq 50); do
            [ -f "$prefix/logs/nginx.pid" ] || break
            sleep 0.1
        done
    fi
    if [ -f "$prefix/mock.pid" ]; then
        kill "$(cat "$prefix/mock.pid")" 2>/dev/null || true
        rm -f "$prefix/mock.pid"
    fi
}

if [ "${1:-}" = stop ]; then
    stop
    echo "aigw demo stopped"
    exit 0
fi

[ -f "$so" ] || { echo "no $so: run 'make build' first" >&2; exit 1; }

stop
mkdir -p "$prefix/conf" "$prefix/logs"

sed "s|^load_module .*;|load_module $so;|" "$root/examples/nginx.conf" \
    > "$conf"

if [ -z "${OPENAI_API_KEY:-}" ]; then
    echo "no OPENAI_API_KEY: provider \"openai\" is the bundled mock" \
         "on 127.0.0.1:8081"
    export OPENAI_API_KEY=sk-aigw-demo-mock
    sed -i 's|https://api.openai.com/v1|http://127.0.0.1:8081/v1|' "$conf"
fi

nohup node "$root/examples/mock/aigw-mock.js" --port 8081 \
    > "$prefix/logs/mock.log" 2>&1 < /dev/null &
echo $! > "$prefix/mock.pid"

for _ in $(seq 50); do
    grep -q listening "$prefix/logs/mock.log" 2>/dev/null && break
    sleep 0.1
done

"$nginx" -p "$prefix" -c "$conf" -t -q
"$nginx" -p "$prefix" -c "$conf"

cat <<EOT
aigw is listening on 127.0.0.1:8080 (logs in $prefix/logs)

  curl http://127.0.0.1:8080/v1/chat/completions \\
       -H 'Content-Type: application/json' \\
       -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'

stop it with: scripts/demo.sh stop
EOT
