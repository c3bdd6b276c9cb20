#!/usr/bin/env bash
# Virtual keys at scale: the time to load a key file of N keys, and the
# cost of authenticating one request (instructions of the access-phase
# handler, counted by callgrind) with 1 key and with N keys in the table.
#
#   bench/keys.sh [N]          N defaults to 100000
#
# Needs the module (AIGW_MODULE, default build/ngx_http_aigw_module.so),
# Debian's nginx, valgrind and perl.  Loopback only; every loop bounded.

set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
module="${AIGW_MODULE:-$root/build/ngx_http_aigw_module.so}"
nginx="${NGINX_BINARY:-/usr/sbin/nginx}"
nkeys="${1:-100000}"
requests="${AIGW_BENCH_REQUESTS:-500}"

[ -f "$module" ] || { echo "keys.sh: no module at $module" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "keys.sh: needs valgrind" >&2; exit 1; }

work="$(mktemp -d /tmp/aigw-keys.XXXXXX)"
nginx_pid=
cleanup() {
    [ -z "$nginx_pid" ] || kill "$nginx_pid" 2>/dev/null || true
    [ -z "$nginx_pid" ] || wait "$nginx_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port="$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1,
        LocalAddr => "127.0.0.1", LocalPort => 0)->sockport')"

# a key file of N keys; the one used is the last, secret sk-bench-N
make_keys() {
    perl -MDigest::SHA=sha256_hex -e '
        my $n = shift;
        print "{\"keys\":[\n";
        for my $i (1 .. $n) {
            printf "{\"id\":\"key_%d\",\"hash\":\"%s\",\"tenant\":\"t%d\","
                 . "\"user\":\"u%d\",\"models\":[\"bench*\"],"
                 . "\"metadata\":{\"cost_center\":\"cc-%d\"},"
                 . "\"limits\":{\"rpm\":600}}%s\n",
                 $i, sha256_hex("sk-bench-$i"), $i % 1000, $i, $i % 50,
                 $i == $n ? "" : ",";
        }
        print "]}\n";
    ' "$1" > "$2"
}

write_conf() {
    mkdir -p "$work/$1/logs" "$work/$1/conf"
    cat > "$work/$1/conf/nginx.conf" <<EOF
load_module $module;
master_process off;
daemon off;
worker_processes 1;
error_log $work/$1/logs/error.log error;
pid $work/$1/logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $work/$1/body;
    aigw_keys $work/keys-$1.json;
    aigw_provider self http://127.0.0.1:$port/mock/v1;
    aigw_model bench self:bench;
    server {
        listen 127.0.0.1:$port;
        location /v1/ { aigw_pass; }
        location /mock/ {
            aigw_auth off;
            default_type application/json;
            return 200 '{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}';
        }
    }
}
EOF
}

load_time() {
    local t0 t1
    t0=$(date +%s%N)
    "$nginx" -p "$work/$1" -c conf/nginx.conf -t -q
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
}

# instructions per call of the access handler, and of a whole request
per_request() {
    local dir="$work/$1" secret="$2" out
    # only the event loop: the key file's loading is measured apart
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
        --collect-atstart=no --toggle-collect=ngx_process_events_and_timers \
        "$nginx" -p "$dir" -c conf/nginx.conf > "$dir/vg.log" 2>&1 &
    nginx_pid=$!

    for _ in $(seq 1 300); do
        curl -s -o /dev/null "http://127.0.0.1:$port/mock/x" && break
        sleep 0.1
    done

    perl -MIO::Socket::INET -e '
        my ($port, $n, $secret) = @ARGV;
        my $body = q({"model":"bench","messages":[{"role":"user","content":"hi"}]});
        for (1 .. $n) {
            my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port")
                or die "connect: $!";
            print $s "POST /v1/chat/completions HTTP/1.0\r\n"
                   . "Authorization: Bearer $secret\r\n"
                   . "Content-Length: " . length($body) . "\r\n\r\n$body";
            local $/;
            my $r = <$s>;
            die "unexpected answer: $r" unless $r =~ m{^HTTP/1.1 200};
        }
    ' "$port" "$requests" "$secret"

    kill -QUIT "$nginx_pid"
    wait "$nginx_pid" || true
    nginx_pid=

    out="$(callgrind_annotate --inclusive=yes "$dir/cg.out" 2>/dev/null)"
    perl -e '
        my ($n, $text) = @ARGV;
        my ($auth) = $text =~ /^\s*([\d,]+)\s.*ngx_http_aigw_auth_handler/m;
        my ($req) = $text =~ /^\s*([\d,]+)\s.*PROGRAM TOTALS/m;
        s/,//g for grep defined, $auth, $req;
        printf "%d %d\n", ($auth // 0) / $n, ($req // 0) / $n;
    ' "$requests" "$out"
}

echo "generating $nkeys keys ..."
make_keys 1 "$work/keys-one.json"
make_keys "$nkeys" "$work/keys-many.json"
write_conf one
write_conf many

size=$(du -h "$work/keys-many.json" | cut -f1)
t_one=$(load_time one)
t_many=$(load_time many)

echo "counting instructions over $requests requests each ..."
read -r a1 r1 <<< "$(per_request one sk-bench-1)"
read -r a2 r2 <<< "$(per_request many "sk-bench-$nkeys")"

printf '\n%-34s %12s %12s\n' "" "1 key" "$nkeys keys"
printf '%-34s %12s %12s\n' "key file" "-" "$size"
printf '%-34s %10s ms %10s ms\n' "nginx -t (load + parse + table)" \
       "$t_one" "$t_many"
printf '%-34s %12s %12s\n' "instr/request: access handler" "$a1" "$a2"
printf '%-34s %12s %12s\n' "instr/request: event loop, all" "$r1" "$r2"
perl -e 'printf "%-34s %25.3f\n", "ratio access handler many/one",
         $ARGV[1] / ($ARGV[0] || 1)' "$a1" "$a2"
