#!/usr/bin/env bash
# bench/run.sh — hawkey's benchmarks: the performance goals P1–P8 and G13's
# time and memory half of docs/goals.md, measured on loopback and printed as a
# table with the method beside each figure; also written to
# target/bench/results.json.
#
#   bench/run.sh                  # full run, about 15 minutes (scale: 3 of them)
#   BENCH_QUICK=1 bench/run.sh    # smoke run, about 3 minutes (plus 1.5 for scale)
#   BENCH_ONLY=p5,p6 bench/run.sh # some goals only (p1..p8, g13, scale; p8 runs p1's builtin part)
#   BENCH_ONLY=scale bench/run.sh # issue #11: 2-256 workers, hostile notify senders (as root)
#   BENCH_ONLY=pm2 bench/run.sh   # P10: unmodified Express app, hawkey (adopted) vs PM2 cluster mode
#   bench/run.sh --only g13       # the same as flags: bench/run.sh --help
#
# This wrapper builds hawkey, examples/bare_launcher and examples/loadgen in
# release mode, copies them to target/bench/bin/, runs the driver
# (bench/hawkey_bench/, a Python package: python3 >= 3.9, stdlib only) with
# its arguments, and on exit sweeps up anything still carrying this run's
# tag. What is measured and how: the driver's modules, one per goal, and
# BENCHMARKS.md. Not part of the test suite. Needs: the Rust toolchain, node
# (>= 18), python3, Linux. Uses loopback ports picked at random.
#
# Every process started carries HAWKEY_BENCH_TAG in its environment; on
# exit (normal, error, Ctrl-C) the driver stops what it started and the
# trap below kills anything still carrying the tag.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/target/bench"
TAG="hawkey-bench-$$-$RANDOM"
mkdir -p "$OUT"

PYTHON=python3
[ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3

driver=""
sweep() {
    # Anything this run started that is still alive, found by its tag.
    local pid
    for env in /proc/[0-9]*/environ; do
        pid=${env#/proc/}
        pid=${pid%/environ}
        if [ "$pid" != "$$" ] && grep -qa "HAWKEY_BENCH_TAG=$TAG" "$env" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$driver" ] && kill -0 "$driver" 2>/dev/null; then
        kill -TERM "$driver" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$driver" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$driver" 2>/dev/null || true
    fi
    sweep
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

case " $* " in
    *" -h "* | *" --help "*) exec "$PYTHON" "$ROOT/bench/hawkey_bench" --help ;;
esac

case ",${BENCH_ONLY:-},$*," in
    *pm2*) tests/recipes/install.sh >&2 ;;     # P10: express and pm2 from npm
esac

echo "== building (release)" >&2
cargo build --release --bin hawkey --example bare_launcher --example loadgen >&2
# The preload library beside the snapshot's hawkey, where hawkey looks for
# it first (P10's adopted Express app needs it).
cargo build --release -p hawkey-preload >&2
# Run from a snapshot: a rebuild or clean of target/ meanwhile (another
# checkout's build, a packaging step) cannot swap binaries mid-run.
mkdir -p "$OUT/bin"
for f in target/release/hawkey target/release/examples/bare_launcher target/release/examples/loadgen \
    target/release/libhawkey_preload.so; do
    cp "$f" "$OUT/bin/.new" && mv -f "$OUT/bin/.new" "$OUT/bin/$(basename "$f")"
done

"$PYTHON" "$ROOT/bench/hawkey_bench" --root "$ROOT" --out "$OUT" --tag "$TAG" "$@" &
driver=$!
wait "$driver"
