#!/usr/bin/env bash
# Fuzzes hawkey's config parser (docs/goals.md G14: no panic, hang or OOM) for
# FUZZ_SECONDS (default 60), with cargo-fuzz and libFuzzer:
#   fuzz/run.sh                      # 60 s, as tests/run.sh runs it
#   FUZZ_SECONDS=3600 fuzz/run.sh    # an hour
# Installs cargo-fuzz if it is missing (once per machine, ~1 min), builds the
# `config` target (first build ~5 min), seeds the working corpus
# fuzz/corpus/config from the committed seeds in fuzz/seeds/config, and
# fuzzes with a 5 s limit per input and a 2 GiB memory limit. Exits non-zero
# on any crash (panic or failed assertion), hang or out-of-memory, after
# printing the input that caused it and how to reproduce it.
#
# Stable Rust only: cargo-fuzz passes -Zsanitizer=address, which stable
# rustc accepts under RUSTC_BOOTSTRAP=1. FUZZ_SANITIZER=none fuzzes without
# AddressSanitizer (faster; panics, hangs and OOM are still caught).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"
target=config
corpus="fuzz/corpus/$target"
seeds="fuzz/seeds/$target"
artifacts="fuzz/artifacts/$target"
case "$seconds" in
    '' | *[!0-9]* | 0)
        echo "fuzz/run.sh: FUZZ_SECONDS must be a whole number of seconds > 0, not '$seconds'" >&2
        exit 2
        ;;
esac

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz (once per machine)" >&2
    cargo install cargo-fuzz --locked --version '^0.13'
fi

echo "fuzz/run.sh: building the '$target' fuzz target (sanitizer: $sanitizer)" >&2
build_start=$SECONDS
cargo fuzz build --sanitizer "$sanitizer" "$target"
echo "fuzz/run.sh: built in $((SECONDS - build_start)) s" >&2

mkdir -p "$corpus" "$artifacts"
cp -f "$seeds"/* "$corpus"/

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "fuzz/run.sh: fuzzing '$target' for $seconds s" >&2
run_start=$SECONDS
status=0
# -max_total_time bounds the run; the outer timeout is only a safety net
# (a 5 s per-input timeout is libFuzzer's own hang detection).
timeout -k 30 "$((seconds + 300))" \
    cargo fuzz run --sanitizer "$sanitizer" "$target" "$corpus" -- \
    -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 \
    -print_final_stats=1 </dev/null 2>&1 | tee "$log" || status=$?
elapsed=$((SECONDS - run_start))

stat_of() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
execs="$(stat_of number_of_executed_units)"
rate="$(stat_of average_exec_per_sec)"
files="$(find "$corpus" -type f | wc -l)"

if [ "$status" -ne 0 ]; then
    kind="crash"
    grep -q 'ERROR: libFuzzer: timeout' "$log" && kind="hang (an input ran > 5 s)"
    grep -q 'ERROR: libFuzzer: out-of-memory' "$log" && kind="out-of-memory (> 2048 MB)"
    [ "$status" -eq 124 ] || [ "$status" -eq 137 ] && kind="fuzzer did not stop in time"
    artifact="$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$log" | tail -n 1)"
    artifact="${artifact#"$PWD/"}"
    echo >&2
    echo "fuzz/run.sh: FAILED: $kind (exit status $status)" >&2
    if [ -n "$artifact" ]; then
        flag=""
        [ "$sanitizer" = address ] || flag=" --sanitizer $sanitizer"
        echo "fuzz/run.sh: the input: $artifact" >&2
        echo "fuzz/run.sh: reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run$flag $target $artifact" >&2
        kept=""
        for seed in "$seeds"/*; do
            if cmp -s "$seed" "$artifact"; then kept="$seed"; fi
        done
        if [ -n "$kept" ]; then
            echo "fuzz/run.sh: that is the committed seed $kept: a bug found before and not fixed yet" >&2
        else
            echo "fuzz/run.sh: keep it as a regression seed: cp $artifact $seeds/crash-NNN" >&2
        fi
    fi
    echo "fuzz: $target: FAILED ($kind) after ${execs:-?} executions, corpus $files files, ${elapsed} s" >&2
    exit 1
fi
echo "fuzz: $target: ${execs:-?} executions (${rate:-?}/s), corpus $files files, ${elapsed} s, no crash, hang or OOM"
