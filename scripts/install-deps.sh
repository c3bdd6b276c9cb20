#!/usr/bin/env bash
#
# Install the Debian packages that building, testing, the demo and the
# benchmarks of aigw need.  Idempotent: when everything is present it only
# asks dpkg and returns (well under a second); `apt-get update` runs only
# when something is missing.
#
#   scripts/install-deps.sh           install what is missing
#   scripts/install-deps.sh --check   only report; exit 1 if anything is missing

set -euo pipefail

pkgs=(
    build-essential     # gcc, make, libasan for the sanitizer build
    cmake
    pkg-config
    nginx               # /usr/sbin/nginx: the binary the suites load into
    nginx-dev           # /usr/share/nginx/src: headers + configure;
                        # dh_nginx and dh-sequence-nginx for `make deb`
    debhelper           # make deb (and the ctest 'deb'): dh; both come
    dpkg-dev            # with nginx-dev anyway, so they cost nothing
    libssl-dev
    libpcre2-dev
    libcjson-dev
    libhiredis-dev
    redis-server        # shared quotas across nodes (tests, demo)
    wrk                 # bench/
    libtest-base-perl   # t/lib runner (Test::Nginx compatible)
    libipc-run-perl
    libjson-pp-perl
    valgrind
    clang               # t/fuzz: libFuzzer harnesses
    libclang-rt-14-dev  # libFuzzer's runtime (not pulled in by clang)
    curl
    prometheus          # promtool checks the metrics endpoint
)
# Node.js may come from elsewhere (nodesource); only fill the gap.
if ! command -v node > /dev/null 2>&1; then
    pkgs+=(nodejs npm)
fi

check_only=0
[ "${1:-}" = --check ] && check_only=1

declare -A have=()
while IFS=$'\t' read -r name status; do
    # db:Status-Abbrev is "ii " for an installed package
    [ "${status:0:2}" = ii ] && have[$name]=1
done < <(dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\n' "${pkgs[@]}" \
            2>/dev/null || true)

missing=()
for p in "${pkgs[@]}"; do
    [ -n "${have[$p]:-}" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#pkgs[@]} packages present"
    exit 0
fi

echo "install-deps: missing: ${missing[*]}"
[ $check_only = 1 ] && exit 1

sudo=
if [ "$(id -u)" != 0 ]; then
    command -v sudo > /dev/null 2>&1 \
        || { echo "install-deps: not root and no sudo" >&2; exit 1; }
    sudo="sudo -n"
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/aigw-install-deps.XXXXXX)

# Installing nginx, redis-server or prometheus must not start system
# services (port 80, 6379, 9090): the tests start their own.
policy=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
    if [ $own_policy = 1 ]; then
        $sudo rm -f "$policy"
    fi
    rm -f "$log"
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" > /dev/null
    $sudo chmod 755 "$policy"
    own_policy=1
fi

apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 -q -y)

attempt() {
    # attempt WHAT CMD...: run quietly, twice at most; the log on failure.
    local what=$1 i; shift
    for i in 1 2; do
        if $sudo "$@" > "$log" 2>&1; then
            return 0
        fi
        echo "install-deps: $what failed (attempt $i)" >&2
        sleep 5
    done
    tail -n 50 "$log" >&2
    return 1
}

echo "install-deps: apt-get update"
attempt "apt-get update" apt-get "${apt_opts[@]}" update

echo "install-deps: apt-get install ${missing[*]}"
attempt "apt-get install" env DEBIAN_FRONTEND=noninteractive \
    apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}"

for tool in cc make cmake pkg-config nginx prove node; do
    command -v "$tool" > /dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
        echo "install-deps: '$tool' still missing after install" >&2
        exit 1
    }
done
echo "install-deps: done"
