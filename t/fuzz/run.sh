#!/usr/bin/env bash
#
# Builds the libFuzzer harnesses and runs each for a bounded time (ctest
# runs this as 'fuzz').
#
#   t/fuzz/run.sh --tree <configured nginx tree> --workdir <dir>
#                 [--seconds N] [harness...]
#
# AIGW_FUZZ_SECONDS overrides the default of 60 s a harness.  The corpora
# grow under the work dir only; the seeds (t/data/json, t/data/sse) are
# read, never written.  Every file in t/fuzz/regressions/<harness>-* is
# replayed first.  A crash fails the run and prints the input in base64,
# to be saved there.  Exit 77 (skipped) only when there is no clang.

set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
tree=
work=
seconds=${AIGW_FUZZ_SECONDS:-60}
harnesses=()

while [ $# -gt 0 ]; do
    case $1 in
        --tree)    tree=$2; shift 2 ;;
        --workdir) work=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        -*)        echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *)         harnesses+=("$1"); shift ;;
    esac
done

[ ${#harnesses[@]} -gt 0 ] || harnesses=(scan sse usage json cache_key cache_semantic retry_after audit_token)

if [ -z "$tree" ] || [ -z "$work" ]; then
    echo "usage: $0 --tree <nginx tree> --workdir <dir> [--seconds N]" >&2
    exit 2
fi

if [ ! -f "$tree/objs/ngx_auto_config.h" ]; then
    echo "run.sh: $tree is not a configured nginx tree" >&2
    exit 2
fi

cc=${AIGW_FUZZ_CC:-clang}
if ! command -v "$cc" > /dev/null 2>&1; then
    echo "run.sh: no $cc (scripts/install-deps.sh installs it): skipped"
    exit 77
fi

mkdir -p "$work/artifacts"
work=$(cd "$work" && pwd)

seeds_scan=$root/t/data/json
seeds_sse=$root/t/data/sse
seeds_usage=$root/t/data/usage
seeds_json=$root/t/data/json
seeds_cache_key=$root/t/data/json
seeds_cache_semantic=$root/t/data/embeddings
seeds_audit_token=$root/examples

# libraries a harness links besides the sanitizers
libs_cache_key=-lcrypto

failed=0

for h in "${harnesses[@]}"; do
    src=$root/t/fuzz/fuzz_$h.c
    bin=$work/fuzz_$h
    seeds=seeds_$h
    seeds=${!seeds:-}
    libs=libs_$h
    libs=${!libs:-}

    if [ ! -f "$src" ]; then
        echo "run.sh: no harness $src" >&2
        exit 2
    fi

    # a missing libFuzzer runtime is a failure, not a skip
    "$cc" -g -O1 -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined \
        -Wall -Wextra -Wno-unused-parameter -Werror \
        -I "$tree/objs" -I "$tree/src/core" -I "$tree/src/event" \
        -I "$tree/src/event/modules" -I "$tree/src/os/unix" \
        -o "$bin" "$src" $libs

    rm -f "$work/artifacts/$h-"*

    regressions=()
    for f in "$root/t/fuzz/regressions/$h-"*; do
        [ -f "$f" ] && regressions+=("$f")
    done

    if [ ${#regressions[@]} -gt 0 ]; then
        echo "fuzz_$h: replaying ${#regressions[@]} regression inputs"
        if ! (cd "$work" && "$bin" "${regressions[@]}" \
                > "$work/$h-regressions.log" 2>&1)
        then
            tail -n 40 "$work/$h-regressions.log"
            echo "fuzz_$h: a regression input fails again"
            failed=1
            continue
        fi
    fi

    mkdir -p "$work/corpus-$h"

    echo "fuzz_$h: ${seconds} s, corpus $work/corpus-$h"

    rc=0
    (cd "$work" && "$bin" -max_total_time="$seconds" -timeout=10 \
        -max_len=16384 -dict="$root/t/fuzz/json_sse.dict" \
        -artifact_prefix="$work/artifacts/$h-" -print_final_stats=1 \
        "$work/corpus-$h" ${seeds:+"$seeds"} > "$work/$h.log" 2>&1) || rc=$?

    if [ $rc -ne 0 ]; then
        tail -n 60 "$work/$h.log"
        echo "fuzz_$h: FAILED (exit $rc)"

        for f in "$work/artifacts/$h-"*; do
            [ -f "$f" ] || continue
            echo "fuzz_$h: input $(basename "$f"), base64:"
            base64 -w 76 "$f"
            echo "fuzz_$h: keep it: base64 -d > t/fuzz/regressions/$h-<name>"
        done

        failed=1
        continue
    fi

    grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$h.log" | tail -n 1 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' \
        "$work/$h.log" || true
done

exit $failed
