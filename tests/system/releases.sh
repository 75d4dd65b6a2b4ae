#!/usr/bin/env bash
# The system tests on both Debian releases hawkey supports, with one .deb:
#
#   tests/system/releases.sh [TEST...]
#
# builds the .deb once (packaging/build-deb --prebuilt, into WORK/deb; or
# takes HAWKEY_DEB), then runs tests/system/run.sh with
# HAWKEY_DEBIAN_SUITE=bookworm (Debian 12, systemd 252) and =trixie
# (Debian 13, systemd 257) at once, each logging to WORK/SUITE.log, and
# prints each release's summary line and time; then, unless TESTs were
# named, tests/system/container.sh (the Containerfile built from the same
# .deb and run by podman, on the Debian 12 root the first run cached),
# logging to WORK/container.log. Exits non-zero if any of them failed (or
# did not end with a summary). HAWKEY_SYSTEM_WORK as in run.sh
# (default /var/tmp/hawkey-system); HAWKEY_SYSTEM_SERIAL=1 runs the
# releases one after the other instead. Needs root.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
[ "$(id -u)" -eq 0 ] || { echo "tests/system/releases.sh: needs root (systemd-nspawn, debootstrap)" >&2; exit 1; }
WORK=${HAWKEY_SYSTEM_WORK:-/var/tmp/hawkey-system}
WORK=${WORK%/}
SUITES=(bookworm trixie)
mkdir -p "$WORK"

# shellcheck source=SCRIPTDIR/deb.sh
. tests/system/deb.sh
# Once, for both releases and the container.
deb_under_test "$WORK" || { echo "0 passed, 1 failed"; exit 1; }
deb=$DEB

# run_one SUITE [TEST...]: one release, its log in WORK/SUITE.log, its
# time in WORK/SUITE.time.
run_one() {
    local suite=$1 t0 rc=0
    shift
    t0=$(date +%s)
    HAWKEY_DEB=$deb HAWKEY_DEBIAN_SUITE=$suite HAWKEY_SYSTEM_WORK=$WORK \
        tests/system/run.sh "$@" >"$WORK/$suite.log" 2>&1 || rc=$?
    echo "$(($(date +%s) - t0))" >"$WORK/$suite.time"
    return "$rc"
}

started=$(date +%s)
declare -A rcs=() pids=()
for suite in "${SUITES[@]}"; do
    rm -f "$WORK/$suite.log" "$WORK/$suite.time"
    if [ "${HAWKEY_SYSTEM_SERIAL:-0}" = 1 ]; then
        run_one "$suite" "$@"
        rcs[$suite]=$?
    else
        run_one "$suite" "$@" &
        pids[$suite]=$!
    fi
done
for suite in "${!pids[@]}"; do
    wait "${pids[$suite]}"
    rcs[$suite]=$?
done

RUNS=("${SUITES[@]}")
if [ "$#" -eq 0 ]; then
    t0=$(date +%s)
    HAWKEY_DEB=$deb HAWKEY_SYSTEM_WORK=$WORK tests/system/container.sh >"$WORK/container.log" 2>&1
    rcs[container]=$?
    echo "$(($(date +%s) - t0))" >"$WORK/container.time"
    RUNS+=(container)
fi

failed=0
for suite in "${RUNS[@]}"; do
    echo "=== $suite: $WORK/$suite.log"
    cat "$WORK/$suite.log"
done
for suite in "${RUNS[@]}"; do
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$WORK/$suite.log" | tail -n1)
    if [ "${rcs[$suite]}" -ne 0 ] || [ -z "$summary" ] || [[ $summary != *" 0 failed" ]]; then
        failed=$((failed + 1))
        verdict=FAILED
    else
        verdict=ok
    fi
    echo "system tests on $suite: ${summary:-no summary} (exit ${rcs[$suite]}) in $(cat "$WORK/$suite.time" 2>/dev/null || echo '?')s: $verdict"
done
echo "system tests on ${#SUITES[@]} releases and the container took $(($(date +%s) - started))s; $failed of ${#RUNS[@]} failed"
[ "$failed" -eq 0 ]
