#!/usr/bin/env bash
# Runs a tier (any command) N times in a row, with --hog keeping every core
# busy meanwhile, and counts: a test that passes only on an idle machine, or
# only some of the time, is a broken test.
#
#   tests/repeat.sh [--hog] N -- COMMAND [ARGS...]
#   tests/repeat.sh --hog 20 -- cargo test --locked --all-targets
#   tests/repeat.sh --hog 3 -- tests/run.sh          (the whole command)
#
# The hog is one busy loop per core (nproc), at the same priority as the
# tests, started before the first run and killed when this script exits.
# Each run's output goes to target/repeat/run-K.log; the last line is
# "N passed, M failed", and the exit status is non-zero if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."

hog=false
if [ "${1:-}" = "--hog" ]; then
    hog=true
    shift
fi
runs=${1:-}
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]] || [ "${2:-}" != "--" ] || [ $# -lt 3 ]; then
    echo "usage: tests/repeat.sh [--hog] N -- COMMAND [ARGS...]" >&2
    exit 64
fi
shift 2

hogs=()
stop_hogs() {
    for pid in "${hogs[@]}"; do
        kill "$pid" 2>/dev/null
    done
    wait 2>/dev/null
}
trap stop_hogs EXIT
if $hog; then
    for _ in $(seq "$(nproc)"); do
        # Bounded: a hog outlives no forgotten shell by more than 4 hours.
        timeout 4h sh -c 'while :; do :; done' &
        hogs+=("$!")
    done
    echo "tests/repeat.sh: ${#hogs[@]} busy loops running (pids ${hogs[*]})" >&2
fi

mkdir -p target/repeat
passed=0
failed=0
for k in $(seq "$runs"); do
    log=target/repeat/run-$k.log
    start=$(date +%s)
    "$@" >"$log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        verdict=passed
    else
        failed=$((failed + 1))
        verdict="FAILED (exit $rc, see $log)"
    fi
    echo "run $k of $runs: $verdict in $(( $(date +%s) - start )) s" >&2
    grep -h "^test .* FAILED$\|panicked at" "$log" | head -5 >&2
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
