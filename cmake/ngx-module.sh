#!/usr/bin/env bash
#
# Configure a private copy of an nginx source tree with aigw as a dynamic
# module, and build the module from it.  Called by CMakeLists.txt; usable by
# hand as well.
#
#   ngx-module.sh configure SRC TREE ADDON CC "CC_OPT" "LD_OPT"
#   ngx-module.sh build     TREE ADDON OUT
#   ngx-module.sh binary    TREE OUT
#
# SRC    an nginx source tree: Debian's nginx-dev (/usr/share/nginx/src,
#        with ./configure and conf_flags) or an upstream checkout/archive of
#        nginx/nginx (auto/configure).
# TREE   where the private copy goes (wiped on every configure).
# ADDON  the aigw repository (the directory holding `config`).
# OUT    where the built .so (build) or nginx binary (binary) is copied.
#
# `binary` builds nginx itself from a configured tree (objs/nginx): the
# binary the suites run in when the tree is not Debian's nginx-dev.
#
# Set VERBOSE=1 to see nginx's configure and compiler command lines.

set -euo pipefail

die() { echo "ngx-module.sh: $*" >&2; exit 1; }

# The module-building make must not join the jobserver of the make (or
# ninja) that runs us: it would warn and fall back to -j1 anyway.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES

jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)

run_logged() {
    # run_logged LOG CMD...: quiet on success, the whole log on failure.
    local log=$1; shift
    if [ "${VERBOSE:-}" = 1 ]; then
        "$@" 2>&1 | tee "$log"
        return "${PIPESTATUS[0]}"
    fi
    if ! "$@" > "$log" 2>&1; then
        cat "$log" >&2
        return 1
    fi
}

cmd_configure() {
    [ $# -eq 6 ] || die "usage: configure SRC TREE ADDON CC CC_OPT LD_OPT"
    local src=$1 tree=$2 addon=$3 cc=$4 cc_opt=$5 ld_opt=$6
    local conf flags

    [ -d "$src" ] || die "nginx source tree '$src' does not exist" \
        "(set NGINX_SRC; Debian: apt-get install nginx-dev)"
    [ -f "$addon/config" ] || die "'$addon/config' not found"

    if [ -f "$src/configure" ]; then
        conf=./configure
    elif [ -f "$src/auto/configure" ]; then
        conf=auto/configure
    else
        die "'$src' has neither ./configure nor auto/configure:" \
            "not an nginx source tree"
    fi

    # A fresh copy each time: configure writes objs/ and Makefile into the
    # tree, and a stale objs/ from an earlier configure must not survive.
    rm -rf "$tree"
    mkdir -p "$tree"
    tar -C "$src" --exclude=./.git --exclude=./.hg --exclude=./objs \
        --exclude=./Makefile -cf - . | tar -C "$tree" -xf -

    if [ -f "$tree/conf_flags" ]; then
        # Debian's nginx-dev: the exact flags /usr/sbin/nginx was configured
        # with, so that the module's signature matches the binary's.
        # shellcheck disable=SC1091
        . "$tree/conf_flags"
        flags=("${NGX_CONF_FLAGS[@]}")
    else
        # --with-threads: aigw_audit writes off the event loop in nginx's
        # thread pools (Debian's nginx has them too)
        flags=(--with-compat --with-http_ssl_module --with-threads)
    fi

    # With CFLAGS in the environment nginx skips auto/cc/gcc altogether:
    # no -W, no -Werror.  We want nginx's own warning set plus ours.
    unset CFLAGS
    # Under the sanitizer flags configure runs its probe programs with the
    # sanitizer runtime; a probe that leaks must not count as "not found".
    export ASAN_OPTIONS=detect_leaks=0

    echo "-- aigw: configuring nginx ($conf) in $tree"
    (cd "$tree" && run_logged "$tree/configure.log" \
        sh "$conf" "${flags[@]}" \
            --with-cc="$cc" \
            --with-cc-opt="$cc_opt" \
            --with-ld-opt="$ld_opt" \
            --add-dynamic-module="$addon") \
        || die "nginx configure failed (log: $tree/configure.log)"

    # -Werror is deliberately not passed in --with-cc-opt: configure compiles
    # its feature probes with the --with-cc-opt flags, and -Werror plus
    # -Wall -Wextra makes some probes fail (NGX_HAVE_PWRITE,
    # NGX_HAVE_STRERRORDESC_NP, ... vanish), so the tree would no longer
    # describe the nginx binary.  nginx's auto/cc/gcc puts -Werror into the
    # build CFLAGS only; make sure it is there, and that our flags are too.
    local mk="$tree/objs/Makefile" cflags
    [ -f "$mk" ] || die "configure produced no $mk"
    cflags=$(sed -n 's/^CFLAGS *= *//p' "$mk")
    case " $cflags " in
        *" -Werror "*) ;;
        *) sed -i 's/^\(CFLAGS *=.*\)$/\1 -Werror/' "$mk" ;;
    esac
    cflags=$(sed -n 's/^CFLAGS *= *//p' "$mk")
    for f in $cc_opt -Werror; do
        case " $cflags " in
            *" $f "*) ;;
            *) die "'$f' does not reach the module's CFLAGS in $mk" ;;
        esac
    done
    echo "-- aigw: module CFLAGS: $cflags"
}

cmd_build() {
    [ $# -eq 3 ] || die "usage: build TREE ADDON OUT"
    local tree=$1 addon=$2 out=$3
    local so="$tree/objs/ngx_http_aigw_module.so"
    local objs="$tree/objs/addon/ngx_http_aigw_module"

    [ -f "$tree/objs/Makefile" ] || die "$tree is not configured"

    # nginx's Makefile knows only the headers that `config` lists in
    # ngx_module_deps; when any other file of the module changed since the
    # last link, recompile everything (a dozen files, seconds).
    if [ -f "$so" ] && [ -d "$objs" ] && [ -n "$(find "$addon/ngx_http_aigw_module" \
            -type f ! -name '*.c' -newer "$so" -print -quit)" ]; then
        rm -f "$objs"/*.o
    fi

    echo "-- aigw: building $(basename "$out") in $tree"
    (cd "$tree" && run_logged "$tree/build.log" \
        make -j"$jobs" -f objs/Makefile modules) \
        || die "module build failed (log: $tree/build.log)"

    [ -f "$so" ] || die "make produced no $so"
    mkdir -p "$(dirname "$out")"
    # cp, not copy-if-different: the copy must be newer than its inputs.
    cp "$so" "$out.tmp"
    mv -f "$out.tmp" "$out"
}

cmd_binary() {
    [ $# -eq 2 ] || die "usage: binary TREE OUT"
    local tree=$1 out=$2

    [ -f "$tree/objs/Makefile" ] || die "$tree is not configured"

    echo "-- aigw: building nginx in $tree"
    (cd "$tree" && run_logged "$tree/binary.log" \
        make -j"$jobs" -f objs/Makefile binary) \
        || die "nginx build failed (log: $tree/binary.log)"

    mkdir -p "$(dirname "$out")"
    cp "$tree/objs/nginx" "$out.tmp"
    mv -f "$out.tmp" "$out"
}

case "${1:-}" in
    configure) shift; cmd_configure "$@" ;;
    build)     shift; cmd_build "$@" ;;
    binary)    shift; cmd_binary "$@" ;;
    *)         die "usage: $0 configure|build|binary ..." ;;
esac
