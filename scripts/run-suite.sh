#!/usr/bin/env bash
#
# Run the Test::Nginx suites (t/**/*.t, but t/sdk, t/unit, t/lib, t/data)
# against a built ngx_http_aigw_module.so with `prove -j1 -I t/lib`.
#
#   scripts/run-suite.sh [options] [t/NNN-topic.t ...]
#
#   --module PATH   the module .so          (default build/ngx_http_aigw_module.so)
#   --nginx PATH    the nginx binary        (default /usr/sbin/nginx)
#   --asan LIBASAN  sanitizer variant: run nginx with LD_PRELOAD=LIBASAN and
#                   fail when an ASan/UBSan report appears
#   --workdir DIR   servroot and sanitizer logs go here (default build/t-<name>)
#   --port N        TEST_NGINX_SERVER_PORT  (default 1984); the suites'
#                   other servers take N+1 to N+19 (AIGW_TEST_PORTS)
#
# All blocks' error logs are appended to DIR/error.log.  Every answer,
# log and provider request is recorded in DIR/secrets, and after the
# suites scripts/check-secrets.pl fails the run if any of them holds a
# key of t/data/secrets.txt (a provider's key may reach the provider).
#
# Every nginx and mock a suite starts must be gone when it ends, also when
# a test fails or the run is interrupted: after the suites, a process that
# is still alive and points into DIR (its command line, its environment's
# AIGW_SUITE_WORKDIR, or a file it holds open) fails the run, and is
# stopped.  One left by an earlier, killed run is stopped before.
# Extra prove options: AIGW_PROVE_ARGS="-v".  Extra sanitizer options are
# appended from AIGW_ASAN_OPTIONS / AIGW_UBSAN_OPTIONS.
# Exits 77 (ctest's "skipped") when there is no .t file to run.

set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

module="$root/build/ngx_http_aigw_module.so"
nginx=/usr/sbin/nginx
libasan=
workdir=
port=1984

die() { echo "run-suite: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --module)  module=$2; shift 2 ;;
        --nginx)   nginx=$2; shift 2 ;;
        --asan)    libasan=$2; shift 2 ;;
        --workdir) workdir=$2; shift 2 ;;
        --port)    port=$2; shift 2 ;;
        --)        shift; break ;;
        -*)        die "unknown option $1" ;;
        *)         break ;;
    esac
done

if [ -z "$workdir" ]; then
    if [ -n "$libasan" ]; then
        workdir="$root/build/t-asan"
    else
        workdir="$root/build/t-normal"
    fi
fi

if [ $# -gt 0 ]; then
    files=("$@")
else
    mapfile -t files < <(find t -type f -name '*.t' \
        -not -path 't/sdk/*' -not -path 't/unit/*' -not -path 't/lib/*' \
        -not -path 't/data/*' -not -path 't/servroot*' | LC_ALL=C sort)
fi
if [ ${#files[@]} -eq 0 ]; then
    echo "run-suite: no .t files under t/: nothing to run (skipped)"
    exit 77
fi

module=$(realpath "$module" 2>/dev/null) \
    || die "module not found; build it first (make build)"
[ -f "$module" ] || die "module $module not found; build it first (make build)"
[ -x "$nginx" ] || die "nginx binary $nginx not found (apt-get install nginx)"
command -v prove > /dev/null || die "prove not found (apt-get install perl)"

mkdir -p "$workdir" || exit 1
workdir=$(cd "$workdir" && pwd)
servroot="$workdir/servroot"
preflight="$workdir/preflight"
sanlogs="$workdir/sanitizer"
errlog="$workdir/error.log"      # every block's error log, appended

# Processes of this work dir: what a suite started and left behind.
#   suite_procs: "PID COMMAND" lines, none when all is clean
suite_procs() {
    AIGW_SCAN_DIR="$workdir" perl -e '
        my $dir = "$ENV{AIGW_SCAN_DIR}/";
        my $tag = "AIGW_SUITE_WORKDIR=$ENV{AIGW_SCAN_DIR}";
        my %skip;    # this scan and the shells it runs in
        for (my $p = $$; $p > 1; ) {
            $skip{$p} = 1;
            open my $s, "<", "/proc/$p/stat" or last;
            ($p) = <$s> =~ /^\d+ \(.*\) \S+ (\d+) /s or last;
        }
        for my $d (glob "/proc/[0-9]*") {
            my ($pid) = $d =~ /(\d+)$/;
            next if $skip{$pid};
            open my $st, "<", "$d/stat" or next;
            next if <$st> =~ /^\d+ \(.*\) [ZX] /s;   # reaped soon
            local $/;
            open my $c, "<", "$d/cmdline" or next;
            my $cmd = <$c> // "";
            my $env = "";
            if (open my $e, "<", "$d/environ") { $env = <$e> // "" }
            my $ours = index($cmd, $dir) >= 0
                       || index("\0$env\0", "\0$tag\0") >= 0;
            if (!$ours && opendir my $fds, "$d/fd") {
                for (readdir $fds) {
                    my $t = readlink "$d/fd/$_" // next;
                    if (index($t, $dir) == 0) { $ours = 1; last }
                }
            }
            next unless $ours;
            $cmd =~ s/\0+$//;
            $cmd =~ tr/\0/ /;
            print "$pid $cmd\n";
        }'
}

# stop_suite_procs WHY: stops them (TERM, then KILL); 1 if there were any
stop_suite_procs() {
    local procs i
    procs=$(suite_procs)
    # a process on its way out is given a moment
    for i in 1 2 3 4 5 6 7 8 9 10; do
        [ -n "$procs" ] || return 0
        sleep 0.3
        procs=$(suite_procs)
    done
    [ -n "$procs" ] || return 0
    echo "run-suite: $1:" >&2
    echo "$procs" | sed 's/^/    /' >&2
    kill -TERM $(echo "$procs" | cut -d' ' -f1) 2>/dev/null
    for i in 1 2 3 4 5 6 7 8 9 10; do
        sleep 0.3
        procs=$(suite_procs)
        [ -n "$procs" ] || return 1
    done
    kill -KILL $(echo "$procs" | cut -d' ' -f1) 2>/dev/null
    return 1
}

stop_suite_procs "processes left by an earlier run, stopped now"
# Nothing from an earlier run may be mistaken for this run's output.
rm -rf "$servroot" "$errlog" "$workdir/tmp" "$workdir/secrets"
mkdir -p "$workdir/tmp" "$workdir/secrets"

binary=$nginx
if [ -n "$libasan" ]; then
    [ -f "$libasan" ] || die "libasan $libasan not found"
    rm -rf "$sanlogs"
    mkdir -p "$sanlogs"
    # Only nginx runs with the sanitizer runtime, not perl, curl or node.
    # detect_leaks=0: nginx leaves its cycle to the OS at exit by design.
    # The logs live beside the servroot, not in it: the runner wipes the
    # servroot before each block.
    binary="$workdir/nginx-asan"
    cat > "$binary" <<EOF
#!/bin/sh
# Generated by scripts/run-suite.sh: nginx with the ASan runtime preloaded.
LD_PRELOAD="$libasan\${LD_PRELOAD:+:\$LD_PRELOAD}"
ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:disable_coredump=1:log_path=$sanlogs/asan${AIGW_ASAN_OPTIONS:+:$AIGW_ASAN_OPTIONS}"
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$sanlogs/ubsan${AIGW_UBSAN_OPTIONS:+:$AIGW_UBSAN_OPTIONS}"
export LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS
exec "$nginx" "\$@"
EOF
    chmod +x "$binary"
fi

# ASan writes its reports to $sanlogs (log_path).  UBSan, when it shares
# the process with ASan (gcc's separate libubsan), ignores log_path and
# writes to stderr, which nginx has pointed at its error log: the runner
# appends each block's error log to $errlog (TEST_NGINX_ERROR_LOG), and we
# look there too.
#   sanitizer_reports LOG...: 1 (and the reports on stderr) if any
sanitizer_reports() {
    [ -n "$libasan" ] || return 0
    local f found=0 n=0
    for f in "$sanlogs"/*; do
        [ -s "$f" ] || continue
        n=$((n + 1))
        if [ $found = 0 ]; then
            echo "run-suite: sanitizer reports in $sanlogs:" >&2
        fi
        found=1
        if [ $n -le 5 ]; then
            echo "==== $f" >&2
            head -n 120 "$f" >&2
        fi
    done
    [ $n -gt 5 ] && echo "==== ... and $((n - 5)) more report(s)" >&2
    for f in "$@"; do
        [ -s "$f" ] || continue
        grep -qE "$sanitizer_re" "$f" || continue
        found=1
        echo "==== sanitizer report(s) in $f:" >&2
        # the report line and its stack, not the debug log around it
        awk -v re="$sanitizer_re" '
            $0 ~ re             { if (seen[$0]++) { dup++; st = 0; next }
                                  print FNR ": " $0; st = 1; next }
            st && /^ +#[0-9]+ / { print; next }
                                { st = 0 }
            END { if (dup) print "(" dup " repeated report(s) not shown)" }
            ' "$f" | head -n 150 >&2
    done
    return $found
}
sanitizer_re='runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer'

# Preflight: does the module load into this nginx at all?  One clear error
# here beats every test failing with the same one.
rm -rf "$preflight"
mkdir -p "$preflight"
cat > "$preflight/nginx.conf" <<EOF
error_log $preflight/error.log;
pid $preflight/nginx.pid;
load_module $module;
events {}
http {
    client_body_temp_path $preflight/client_body_temp;
    proxy_temp_path $preflight/proxy_temp;
    fastcgi_temp_path $preflight/fastcgi_temp;
    uwsgi_temp_path $preflight/uwsgi_temp;
    scgi_temp_path $preflight/scgi_temp;
}
EOF
if ! out=$("$binary" -t -q -e "$preflight/error.log" -p "$preflight/" \
        -c "$preflight/nginx.conf" 2>&1); then
    echo "run-suite: $module does not load into $nginx:" >&2
    echo "$out" >&2
    cat "$preflight/error.log" 2>/dev/null >&2
    sanitizer_reports "$preflight/error.log"
    exit 1
fi
if ! sanitizer_reports "$preflight/error.log"; then
    exit 1
fi

export TEST_NGINX_BINARY="$binary"
export TEST_NGINX_LOAD_MODULES="$module"
export TEST_NGINX_SERVROOT="$servroot"
export TEST_NGINX_SERVER_PORT="$port"
# the ports after it, up to the next run's block (ctest's are 20 apart),
# for the nginx, redis-server and tcp_listen ports a suite adds
# (t/lib/AigwPort.pm): none a kernel's "free" port another run may take
export AIGW_TEST_PORTS="$((port + 1))-$((port + 19))"
export TEST_NGINX_ERROR_LOG="$errlog"
# AigwNginx's prefixes, and the mark by which what the suites start is
# found when they are done
export AIGW_TEST_TMPDIR="$workdir/tmp"
export AIGW_SUITE_WORKDIR="$workdir"
# every answer, log and provider request of the run, for the secrets check
export AIGW_SECRETS_DIR="$workdir/secrets"

echo "run-suite: ${#files[@]} file(s), module $module," \
    "servroot $servroot, port $port${libasan:+, ASan+UBSan}"

# prove runs as a job of its own process group, so that a signal to us is
# acted on at once and passed on to it and to the tests (which stop their
# nginx and mocks on INT, TERM and HUP).
prove_pid=
on_signal() {
    trap - INT TERM HUP
    echo "run-suite: SIG$1: stopping the suites" >&2
    [ -n "$prove_pid" ] && kill -"$1" -- -"$prove_pid" 2>/dev/null
    wait "$prove_pid" 2>/dev/null
    stop_suite_procs "interrupted: processes the suites left, stopped now"
    exit "$2"
}
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

set -m
# shellcheck disable=SC2086
prove -j1 -I t/lib ${AIGW_PROVE_ARGS:-} "${files[@]}" &
prove_pid=$!
set +m
wait "$prove_pid"
rc=$?
prove_pid=

if ! stop_suite_procs "FAIL: processes the suites started still run"
then
    rc=1
fi

last_errlog="$errlog"
[ -s "$errlog" ] || last_errlog="$servroot/logs/error.log"
if ! sanitizer_reports "$last_errlog" "$servroot/logs/nginx.stderr"; then
    echo "run-suite: FAIL: ASan/UBSan reported errors (see above)" >&2
    rc=1
fi

# Secrets never leak: no key of t/data/secrets.txt in any log line, answer
# or metric of the run, nor in a provider request but a provider's own key.
if ! perl scripts/check-secrets.pl t/data/secrets.txt "$AIGW_SECRETS_DIR" \
        "$errlog" "$servroot"/logs/*.log; then
    echo "run-suite: FAIL: a secret leaked (see above)" >&2
    rc=1
fi
exit $rc
