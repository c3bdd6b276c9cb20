#!/usr/bin/env bash
#
# Build the Debian package (scripts/build-deb.sh) and check it:
#
#  1. its layout and dependencies (dpkg-deb -c, -f);
#  2. unpacked into a scratch root (dpkg-deb -x): Debian's /usr/sbin/nginx
#     passes `nginx -t` with examples/nginx.conf whose load_module line is
#     replaced by an include of the package's mod-http-aigw.conf (its
#     "modules/..." path resolved under the scratch root), and aigw-key
#     --help runs;
#  3. installed for real (dpkg -i, as root or with sudo -n): the postinst
#     links /etc/nginx/modules-enabled/50-mod-http-aigw.conf, `nginx -t`
#     with the example that includes /etc/nginx/modules-enabled/*.conf as
#     Debian's nginx.conf does, /usr/bin/aigw-key --help; then dpkg --purge,
#     and /etc/nginx/modules-enabled and /usr/lib/nginx/modules must be as
#     they were before.  Skipped (with a message) without root, or when the
#     package was installed already: an operator's copy is left alone.
#
#   scripts/test-deb.sh [--workdir DIR] [--deb FILE] [--no-install]
#
# The package stays installed only for the seconds between dpkg -i and
# dpkg --purge (the suites load the module from the build folder and never
# read /etc/nginx); an exit, a failure or a signal purges it too.

set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
workdir="$root/build/deb-test"
deb=
install=1
pkg=libnginx-mod-http-aigw
nginx=/usr/sbin/nginx

die() { echo "test-deb: FAIL: $*" >&2; exit 1; }
say() { echo "test-deb: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --workdir)    workdir=$2; shift 2 ;;
        --deb)        deb=$2; shift 2 ;;
        --no-install) install=0; shift ;;
        *)            die "unknown option $1" ;;
    esac
done

[ -x "$nginx" ] || die "$nginx not found (apt-get install nginx)"

mkdir -p "$workdir" || exit 1
workdir=$(cd "$workdir" && pwd)

if [ -z "$deb" ]; then
    bash "$root/scripts/build-deb.sh" "$workdir" || die "the build failed"
    deb=$(ls "$workdir/${pkg}"_*.deb 2>/dev/null | head -n 1)
fi
[ -f "$deb" ] || die "no package ($deb)"
say "checking $deb"

# --- 1. layout and dependencies ----------------------------------------------

contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')
for f in /usr/lib/nginx/modules/ngx_http_aigw_module.so \
         /usr/share/nginx/modules-available/mod-http-aigw.conf \
         /usr/bin/aigw-key \
         /usr/share/doc/$pkg/copyright \
         /usr/share/doc/$pkg/examples/nginx.conf; do
    grep -qxF "$f" <<< "$contents" || die "$f is not in the package"
done
grep -q "^/usr/share/doc/$pkg/README.md" <<< "$contents" \
    || die "README.md is not in /usr/share/doc/$pkg"

depends=$(dpkg-deb -f "$deb" Depends)
for d in 'nginx-abi-[0-9]' 'libcjson1' 'libhiredis0\.14'; do
    grep -qE "(^|, )$d" <<< "$depends" \
        || die "Depends lacks $d: $depends"
done
say "layout and Depends ($depends): ok"

# The example, its load_module line replaced by INCLUDE, its logs and
# temporary files under DIR, provider host names pointed at loopback (they
# are resolved when the configuration loads, and CI has no DNS), as
# t/002-examples.t does:  adapt_example INCLUDE DIR > nginx.conf
adapt_example() {
    AIGW_INC=$1 AIGW_DIR=$2 perl -pe '
        my $d = $ENV{AIGW_DIR};
        s|^load_module\s+\S+;|include $ENV{AIGW_INC};|;
        s|\blogs/|$d/|g;
        s|https://[a-z0-9.-]+\.com(?=/)|http://127.0.0.1:9|g;   # no DNS in CI
        $_ .= join "", map { "    ${_}_temp_path $d/$_;\n" }
                  qw(client_body proxy fastcgi uwsgi scgi)
            if /^http \{$/;
    ' "$root/examples/nginx.conf"
}

# nginx_t PREFIX CONF LOG: nginx -t, its output on failure
nginx_t() {
    local out
    if ! out=$(OPENAI_API_KEY=sk-example "$nginx" -t -p "$1" -e "$3" -c "$2" 2>&1); then
        echo "$out" >&2
        cat "$3" >&2 2>/dev/null
        return 1
    fi
    grep -q 'test is successful' <<< "$out" || { echo "$out" >&2; return 1; }
}

# --- 2. a scratch root ---------------------------------------------------------

scratch="$workdir/scratch"
rm -rf "$scratch"
mkdir -p "$scratch/root" "$scratch/run"
dpkg-deb -x "$deb" "$scratch/root" || die "dpkg-deb -x failed"
# what nginx-common ships: the prefix's modules/ is /usr/lib/nginx/modules
ln -s ../../lib/nginx/modules "$scratch/root/usr/share/nginx/modules"
grep -qx 'load_module modules/ngx_http_aigw_module.so;' \
    "$scratch/root/usr/share/nginx/modules-available/mod-http-aigw.conf" \
    || die "mod-http-aigw.conf is not Debian's load_module line"

adapt_example "$scratch/root/usr/share/nginx/modules-available/mod-http-aigw.conf" \
    "$scratch/run" > "$scratch/nginx.conf"
nginx_t "$scratch/root/usr/share/nginx/" "$scratch/nginx.conf" \
        "$scratch/run/error.log" \
    || die "nginx -t with the unpacked module"
perl "$scratch/root/usr/bin/aigw-key" --help > /dev/null 2>&1 \
    || die "aigw-key --help (unpacked) failed"
say "scratch root: nginx -t with mod-http-aigw.conf and aigw-key --help: ok"

# --- 3. dpkg -i, nginx -t, dpkg --purge ----------------------------------------

if [ $install = 0 ]; then
    say "dpkg -i not tried (--no-install)"
    exit 0
fi
sudo=
if [ "$(id -u)" != 0 ]; then
    if command -v sudo > /dev/null && sudo -n true 2> /dev/null; then
        sudo="sudo -n"
    else
        say "not root and no sudo: dpkg -i not tried (skipped)"
        exit 0
    fi
fi
if dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2> /dev/null | grep -q '^i'
then
    say "$pkg is installed on this machine already: left alone," \
        "dpkg -i not tried (skipped)"
    exit 0
fi

enabled=/etc/nginx/modules-enabled
state() { ls -la "$enabled" /usr/lib/nginx/modules 2>/dev/null \
              | grep -v ' \.\.\?$'; }
before=$(state)

# dpkg waits for no one: retry while another dpkg/apt holds the lock
dpkg_locked() {
    local i out
    for i in $(seq 1 60); do
        if out=$($sudo "$@" 2>&1); then
            return 0
        fi
        grep -qi 'lock' <<< "$out" || { echo "$out" >&2; return 1; }
        sleep 5
    done
    echo "$out" >&2
    return 1
}

purged=0
purge() {
    [ $purged = 1 ] && return 0
    purged=1
    dpkg_locked env DEBIAN_FRONTEND=noninteractive dpkg --purge "$pkg" \
        > /dev/null
}
trap 'purge' EXIT
trap 'purge; exit 130' INT
trap 'purge; exit 143' TERM

dpkg_locked env DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" > /dev/null \
    || die "dpkg -i $deb"
say "installed"

[ "$(readlink "$enabled/50-mod-http-aigw.conf")" = \
  /usr/share/nginx/modules-available/mod-http-aigw.conf ] \
    || die "$enabled/50-mod-http-aigw.conf is not the postinst's link"

sys="$workdir/system"
rm -rf "$sys"
mkdir -p "$sys/run"
adapt_example "$enabled/*.conf" "$sys/run" > "$sys/nginx.conf"
# Debian's prefix, where modules/ is /usr/lib/nginx/modules
nginx_t /usr/share/nginx/ "$sys/nginx.conf" "$sys/run/error.log" \
    || die "nginx -t with the installed module"
/usr/bin/aigw-key --help > /dev/null 2>&1 || die "aigw-key --help failed"
say "installed: modules-enabled link, nginx -t, aigw-key --help: ok"

purge || die "dpkg --purge $pkg"
after=$(state)
if [ "$before" != "$after" ]; then
    diff <(echo "$before") <(echo "$after") >&2
    die "$enabled or /usr/lib/nginx/modules differ after the purge"
fi
[ ! -e /usr/bin/aigw-key ] || die "/usr/bin/aigw-key left after the purge"
say "purged: the system is as it was"
