#!/usr/bin/env bash
# The self-test of the system tests' harness (harness.sh): fake tests, each
# failing one way a real test can fail, run through the same run_tests and
# summarize that run.sh uses; checks each test's verdict, the reasons
# printed, the "N passed, N failed" line and the exit status, and exits
# non-zero if the harness miscounts. No root, no container, a few seconds.
#
#   tests/system/selftest.sh
#
# It runs itself as the fake suite: `selftest.sh --suite TEST...` (as run.sh
# does), `--suite-in-condition TEST...` (run_tests inside an `if`, which the
# harness must refuse) and `--list-check TEST...` (every_test_is_listed).

# ------------------------------------------------------------ the fake suite

# The fake tests are called by name, through run_tests.
# shellcheck disable=SC2317
if [[ ${1:-} == --suite* || ${1:-} == --list-check ]]; then
    set -u  # as run.sh, less its pipefail: the harness must set that itself
    # shellcheck source=SCRIPTDIR/harness.sh
    . "$(dirname "$0")/harness.sh"
    MARKS=$SELFTEST_MARKS

    mark() { echo "$*" >>"$MARKS/$1"; }
    # Code after a failure that must not run.
    reached() { mark "reached-${FUNCNAME[1]}"; }

    test_passes() {
        expect_eq 1 1 "one"
        expect_has "abc" b "letters"
        wait_for 2 "true" true
        note "all good"
    }
    test_a_failed_expectation_stops_the_test() {
        expect_eq got want "value"
        reached
    }
    test_a_check_or_fail_stops_the_test() {
        # shellcheck disable=SC2050 # a check that fails, on purpose
        [ a = b ] || fail "a is not b"
        reached
    }
    test_a_failing_command_stops_the_test() {
        false
        reached
    }
    helper_that_fails() {
        grep -q "$1" <<<haystack
        reached
    }
    test_a_failure_inside_a_helper_stops_the_test() {
        helper_that_fails needle
        reached
    }
    test_a_failure_in_a_pipeline_stops_the_test() {
        false | cat
        reached
    }
    test_a_failed_command_substitution_stops_the_test() {
        local x
        x=$(false)
        reached
    }
    test_a_failure_inside_a_command_substitution_stops_the_test() {
        local x
        # shellcheck disable=SC2034 # x is never used: the test stops here
        x=$(false; echo "not reached")
        reached
    }
    test_an_unset_variable_stops_the_test() {
        # shellcheck disable=SC2154 # unset, on purpose
        echo "$selftest_unset_variable"
        reached
    }
    test_a_timed_out_wait_stops_the_test() {
        wait_for 1 "something that never happens" false
        reached
    }
    test_a_failure_after_a_tolerated_fail_is_reported() {
        fail "tolerated" || true  # as after `wait_for ... || true`
        false
        reached
    }
    test_returning_1_fails_the_test() {
        return 1
    }
    test_a_failed_deferred_command_fails_the_test() {
        defer false
    }
    test_deferred_commands_run_last_first_after_a_failure() {
        defer mark cleanup first
        defer mark cleanup second
        false
    }
    test_failures_allowed_explicitly_do_not_fail() {
        false || true  # allowed to fail
        if false; then reached; fi
        # shellcheck disable=SC2251 # errexit skips it, which is the point
        ! false
        [ -n "" ] || note "a condition that is false is no failure"
    }
    test_a_background_job_is_left_running() {
        (sleep 1; mark background "done") &
    }
    test_the_background_job_ended_before_this_test() {
        expect_eq "$(cat "$MARKS/background")" "background done" "the previous test's job"
    }

    case $1 in
        --suite) shift; run_tests "$@"; summarize ;;
        --suite-in-condition) shift; if run_tests "$@"; then :; fi; summarize ;;
        --list-check) shift; every_test_is_listed "$@" ;;
    esac
    exit
fi

# ------------------------------------------------------------ the checks

set -euo pipefail
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
SELFTEST_MARKS=$(mktemp -d)
export SELFTEST_MARKS
trap 'rm -rf "$SELFTEST_MARKS"' EXIT
problems=0
problem() { echo "selftest: $*" >&2; problems=$((problems + 1)); }

# Each fake test and the verdict the harness must give it.
verdicts=(
    test_passes=ok
    test_a_failed_expectation_stops_the_test=FAILED
    test_a_check_or_fail_stops_the_test=FAILED
    test_a_failing_command_stops_the_test=FAILED
    test_a_failure_inside_a_helper_stops_the_test=FAILED
    test_a_failure_in_a_pipeline_stops_the_test=FAILED
    test_a_failed_command_substitution_stops_the_test=FAILED
    test_a_failure_inside_a_command_substitution_stops_the_test=FAILED
    test_an_unset_variable_stops_the_test=FAILED
    test_a_timed_out_wait_stops_the_test=FAILED
    test_a_failure_after_a_tolerated_fail_is_reported=FAILED
    test_returning_1_fails_the_test=FAILED
    test_a_failed_deferred_command_fails_the_test=FAILED
    test_deferred_commands_run_last_first_after_a_failure=FAILED
    test_failures_allowed_explicitly_do_not_fail=ok
    test_a_background_job_is_left_running=ok
    test_the_background_job_ended_before_this_test=ok
    test_no_such_function=FAILED
)
names=("${verdicts[@]%=*}")

# run ARGS...: run the fake suite; its output in $out, its status in $rc.
run() {
    rc=0
    out=$("$self" "$@" 2>&1) || rc=$?
}

# verdict OUT NAME WANT: the harness's final line for NAME says WANT.
verdict() {
    grep -qE "^test ${2#test_} \.\.\. $3 \([0-9.]+s\)$" <<<"$1" ||
        problem "test ${2#test_}: expected '$3', got: $(grep "^test ${2#test_} \.\.\. [^(]" <<<"$1" || echo 'no verdict')"
}
has() { grep -qF -- "$2" <<<"$1" || problem "output lacks: $2"; }

# 1. All of them, as run.sh runs its tests.
run --suite "${names[@]}"
want_ok=0 want_failed=0
for v in "${verdicts[@]}"; do
    verdict "$out" "${v%=*}" "${v#*=}"
    if [ "${v#*=}" = ok ]; then want_ok=$((want_ok + 1)); else want_failed=$((want_failed + 1)); fi
done
[ "$(tail -n 1 <<<"$out")" = "$want_ok passed, $want_failed failed" ] ||
    problem "count line: expected '$want_ok passed, $want_failed failed', got '$(tail -n 1 <<<"$out")'"
[ "$rc" -ne 0 ] || problem "exit status 0 with failed tests"
reached=$(compgen -G "$SELFTEST_MARKS/reached-*" || true)  # none is the good case
[ -z "$reached" ] || problem "code after a failure ran: ${reached//$'\n'/ }"
[ "$(cat "$SELFTEST_MARKS/cleanup" 2>/dev/null || true)" = $'cleanup second\ncleanup first' ] ||
    problem "deferred commands did not run last first: '$(cat "$SELFTEST_MARKS/cleanup" 2>/dev/null || true)'"
# The reasons: what failed and the test's own line.
has "$out" "FAILED: value: expected 'want', got 'got'"
has "$out" "at harness.sh:"
has "$out" "FAILED: a is not b"
has "$out" "FAILED: \`false\` exited 1 at selftest.sh:"
[ "$(grep -cF "FAILED: \`false\` exited 1 at selftest.sh:" <<<"$out")" -eq 3 ] ||
    problem "expected 3 reports of \`false\` failing (plain, after a tolerated fail, with deferred commands)"
has "$out" "FAILED: \`grep -q \"\$1\" <<< haystack\` exited 1 at selftest.sh:"
has "$out" "in \`helper_that_fails needle\`, called from selftest.sh:"
has "$out" "FAILED: timed out after 1s waiting for something that never happens"
has "$out" "selftest_unset_variable: unbound variable"
has "$out" "FAILED: the pipeline ending in \`cat\` (statuses 1 0) exited 1"
has "$out" "FAILED: the test returned 1"
has "$out" "FAILED: cleanup \`false\`: \`false\` exited 1"
has "$out" "FAILED: no test function named test_no_such_function"
[ "$problems" -eq 0 ] || { echo "--- the fake suite's output:" >&2; cat >&2 <<<"$out"; }

# 2. Only passing tests: exit status 0.
p=$problems
run --suite test_passes test_failures_allowed_explicitly_do_not_fail
[ "$(tail -n 1 <<<"$out")" = "2 passed, 0 failed" ] || problem "passing run: got '$(tail -n 1 <<<"$out")'"
[ "$rc" -eq 0 ] || problem "passing run exited $rc"
[ "$problems" -eq "$p" ] || cat >&2 <<<"$out"

# 3. run_tests in a condition, where bash ignores errexit: refused, not
# counted as passed.
p=$problems
run --suite-in-condition test_a_failing_command_stops_the_test test_passes
[ "$(tail -n 1 <<<"$out")" = "0 passed, 2 failed" ] || problem "in a condition: got '$(tail -n 1 <<<"$out")'"
[ "$rc" -ne 0 ] || problem "in a condition: exit status 0"
has "$out" "errexit is ignored here"
[ -z "$(compgen -G "$SELFTEST_MARKS/reached-*" || true)" ] || problem "in a condition: a test ran on after a failure"
[ "$problems" -eq "$p" ] || cat >&2 <<<"$out"

# 4. The list of tests against the defined functions.
defined=("${names[@]:0:${#names[@]}-1}")  # all but test_no_such_function
run --list-check "${defined[@]}"
[ "$rc" -eq 0 ] || problem "every_test_is_listed refused the full list: $out"
run --list-check "${defined[@]:1}"
[ "$rc" -ne 0 ] || problem "every_test_is_listed accepted a list without test_passes"
has "$out" "defined but not listed, so never run: test_passes"
run --list-check "${names[@]}"
[ "$rc" -ne 0 ] || problem "every_test_is_listed accepted an undefined test"
has "$out" "listed but not defined: test_no_such_function"

if [ "$problems" -ne 0 ]; then
    echo "selftest: $problems problems: the harness miscounts or misreports" >&2
    exit 1
fi
echo "selftest: the harness counted ${#verdicts[@]} fake tests right ($want_ok passed, $want_failed failed, as expected)"
