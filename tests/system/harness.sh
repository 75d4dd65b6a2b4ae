# shellcheck shell=bash
# The test harness of hawkey's system tests, sourced by run.sh (the real
# tests) and by selftest.sh (fake tests that prove the harness counts
# honestly). It runs test functions and counts them "ok" or "FAILED":
#
#   run_tests TEST...   run each test function, print "test NAME ... ok" or
#                       "... FAILED" with the reason; call it as a plain
#                       command, never in a condition (see below)
#   summarize           print "N passed, N failed"; status 0 iff some test
#                       ran and none failed
#   every_test_is_listed TEST...
#                       fail unless the TESTs are exactly the defined test_*
#                       functions (a test left out of the list never runs)
#
# and gives the tests their vocabulary:
#
#   fail MSG            print "FAILED: MSG", return 1 (so the test stops)
#   note MSG            print MSG, indented
#   expect_eq GOT WANT WHAT, expect_has TEXT NEEDLE WHAT
#   wait_for SECONDS WHAT CMD...   poll CMD every 0.1 s, fail on timeout
#   defer CMD...        run CMD when the test ends, passed or failed (last
#                       registered runs first); a failing CMD fails the test
#
# A test fails when any command in it fails: each runs in a subshell of its
# own with errexit, errtrace, nounset, pipefail and inherit_errexit, so a
# failed expectation (`check || fail ...`), a failing command, a failure
# inside a helper, in a pipeline or in a command substitution assigned to a
# variable stops the test there, and the harness prints the failed command
# and the test's line. A command that is allowed to fail says so:
# `cmd || true  # why`. What errexit cannot see, and the tests must not rely
# on: the status of a `$(...)` used as an argument (check its output
# instead), of `local x=$(...)` (declare first), of anything in a
# condition (`if`, `while`, `!`, left of `&&`/`||`), and of the last
# command but one in `a && b` (`a` failing there is not a failure).
#
# Bash ignores errexit in everything run in a conditional context, however
# deep, even in a subshell that sets -e again; so `if run_tests ...` would
# count a test with a failed expectation as passed. The harness checks for
# that before each test and fails the test instead of running it.
#
# After a test, the harness waits for the background jobs it started (every
# one is bounded in time) so the next test starts on a quiet machine, then
# runs its deferred commands. Tests run in order; a test's variables and
# deferred commands die with its subshell.

HARNESS_PASSED=0
HARNESS_FAILED=0

note() { echo "    $*"; }
# fail MSG: also notes where it was called, so that the failure report does
# not repeat what MSG said.
fail() {
    echo "    FAILED: $*"
    _HARNESS_SAID="${BASH_SOURCE[1]}:${BASH_LINENO[0]}:${FUNCNAME[1]}"
    return 1
}

expect_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }
expect_has() { grep -qF -- "$2" <<<"$1" || fail "$3: '$2' not in: $(head -c 600 <<<"$1")"; }

# wait_for SECONDS WHAT CMD...: polls CMD every 0.1s.
wait_for() {
    local seconds=$1 what=$2 i
    shift 2
    for ((i = 0; i < seconds * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "timed out after ${seconds}s waiting for $what"
}

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# defer CMD...: run CMD (a command and its words, kept as given) when the
# current test ends. Call it in the test's own shell, not in a $(...).
defer() {
    [ -n "${HARNESS_TEST:-}" ] || { echo "harness: defer outside a test" >&2; return 1; }
    _HARNESS_DEFERRED+=("$(printf '%q ' "$@")")
}

# every_test_is_listed TEST...
every_test_is_listed() {
    local missing extra
    missing=$(comm -13 <(printf '%s\n' "$@" | sort) <(declare -F | awk '$3 ~ /^test_/ { print $3 }' | sort))
    extra=$(comm -23 <(printf '%s\n' "$@" | sort) <(declare -F | awk '$3 ~ /^test_/ { print $3 }' | sort))
    [ -z "$missing" ] || echo "harness: defined but not listed, so never run: $missing" >&2
    [ -z "$extra" ] || echo "harness: listed but not defined: $extra" >&2
    [ -z "$missing" ] && [ -z "$extra" ]
}

run_tests() {
    local t t0 rc
    for t in "$@"; do
        t0=$(date +%s.%N)
        printf 'test %s ...\n' "${t#test_}"
        # Not `if (...)`: errexit would be ignored inside.
        (_harness_test "$t")
        rc=$?
        if [ "$rc" -eq 0 ]; then
            HARNESS_PASSED=$((HARNESS_PASSED + 1))
            printf 'test %s ... ok (%ss)\n' "${t#test_}" "$(elapsed "$t0")"
        else
            HARNESS_FAILED=$((HARNESS_FAILED + 1))
            printf 'test %s ... FAILED (%ss)\n' "${t#test_}" "$(elapsed "$t0")"
        fi
    done
}

summarize() {
    echo "$HARNESS_PASSED passed, $HARNESS_FAILED failed"
    [ "$HARNESS_FAILED" -eq 0 ] && [ "$HARNESS_PASSED" -gt 0 ]
}

# ---------------------------------------------------------------- internals

# The strict mode every test and every deferred command runs in.
_harness_strict() {
    set -eEuo pipefail
    shopt -s inherit_errexit
    _HARNESS_ERR=
    _HARNESS_ERR_CMD=
    _HARNESS_ERR_WHERE=
    _HARNESS_ERR_SAID=
    _HARNESS_SAID=
    # "$*": the arguments of the function the failed command ran in.
    trap '_harness_on_err $? "${PIPESTATUS[*]}" "$*"' ERR
}

# Runs in the test's subshell: the test, then its cleanup (EXIT trap).
_harness_test() {
    HARNESS_TEST=$1
    _HARNESS_DEFERRED=()
    set +e
    # Probe: does `set -e` stop a shell here? Not when run_tests is called in
    # a condition; then no failure would stop the test.
    local probe
    (set -e; false; exit 0)
    probe=$?
    if [ "$probe" -eq 0 ]; then
        fail "harness: errexit is ignored here (run_tests was called in a condition: if, while, !, && or ||), so failures would not stop this test; not running it"
        exit 2
    fi
    declare -F "$HARNESS_TEST" >/dev/null || { fail "no test function named $HARNESS_TEST"; exit 1; }
    trap _harness_end_test EXIT
    _harness_strict
    "$HARNESS_TEST"
}

# ERR trap, given $?, PIPESTATUS and the arguments of the function the
# failed command ran in: keep the command and where it ran, for the EXIT
# trap. With errexit the first failure outside a condition ends the shell,
# so this is that failure (for `f || return 1`, the caller's line).
_harness_on_err() {
    local status=$1 statuses=$2 args=$3 fn=${FUNCNAME[1]} i line='' from=''
    case "$fn" in
        _harness_*) ;;  # the test function or a deferred command itself
        *)
            line="${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}"
            for ((i = 2; i < ${#FUNCNAME[@]}; i++)); do
                if [ "${FUNCNAME[i]}" = "${HARNESS_TEST:-}" ]; then
                    from=", called from ${BASH_SOURCE[i]##*/}:${BASH_LINENO[i - 1]}"
                    break
                fi
            done
            ;;
    esac
    _HARNESS_ERR=$status
    _HARNESS_ERR_CMD="\`$(head -c 300 <<<"$BASH_COMMAND")\`"
    [[ $statuses != *' '* ]] || _HARNESS_ERR_CMD="the pipeline ending in $_HARNESS_ERR_CMD (statuses $statuses)"
    [[ $BASH_COMMAND != return\ * ]] || _HARNESS_ERR_CMD="return"
    # `fail` failed here: it said why already.
    _HARNESS_ERR_SAID=
    [ "${_HARNESS_SAID:-}" != "${BASH_SOURCE[1]}:${BASH_LINENO[0]}:$fn" ] || _HARNESS_ERR_SAID=1
    _HARNESS_ERR_WHERE=$line
    if [ -n "$line" ] && [ "$fn" != "${HARNESS_TEST:-}" ]; then
        if [ -n "$_HARNESS_ERR_SAID" ]; then
            _HARNESS_ERR_WHERE+=" in $fn$from"
        else
            # With the arguments: `c` fails for the command it runs inside.
            _HARNESS_ERR_WHERE+=" in \`$(head -c 200 <<<"$fn${args:+ $args}")\`$from"
        fi
    fi
}

# Print why this (sub)shell is failing with status $1 (and what it was: $2),
# unless `fail` said it already.
_harness_explain() {
    local status=$1 what=${2:-} at=
    [ -z "${_HARNESS_ERR_WHERE:-}" ] || at=" at $_HARNESS_ERR_WHERE"
    if [ -z "${_HARNESS_ERR:-}" ]; then
        echo "    FAILED: ${what}exit status $status (see the error above)"
    elif [ -n "$_HARNESS_ERR_SAID" ]; then
        [ -z "$at" ] || echo "   $at"
    elif [ "$_HARNESS_ERR_CMD" = return ] && [ -z "$at" ]; then
        echo "    FAILED: ${what}the test returned $_HARNESS_ERR"
    elif [ "$_HARNESS_ERR_CMD" = return ]; then
        echo "    FAILED: ${what}a function returned $_HARNESS_ERR$at"
    else
        echo "    FAILED: ${what}$_HARNESS_ERR_CMD exited $_HARNESS_ERR$at"
    fi
}

# EXIT trap of a test's subshell.
_harness_end_test() {
    local rc=$? i status
    set +e
    trap - ERR
    [ "$rc" -eq 0 ] || _harness_explain "$rc"
    # Background jobs the test started: bounded by design; let them end.
    wait
    for ((i = ${#_HARNESS_DEFERRED[@]} - 1; i >= 0; i--)); do
        # A global: locals are gone when a subshell's EXIT trap runs.
        _HARNESS_CLEANUP=${_HARNESS_DEFERRED[i]}
        (
            trap 'status=$?; [ "$status" -eq 0 ] || _harness_explain "$status" "cleanup \`${_HARNESS_CLEANUP% }\`: "' EXIT
            _harness_strict
            eval "$_HARNESS_CLEANUP"
        )
        status=$?
        [ "$status" -eq 0 ] || rc=1
    done
    exit "$rc"
}
