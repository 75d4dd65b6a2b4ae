#!/usr/bin/env bash
# hawkey's whole test suite, in one command: installs what it needs (Debian
# packages, rustfmt, clippy), then format check, lints, docs, every test.
# Needs root: some tests drop privileges to 'nobody' and must be able to.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
        echo "tests/run.sh: the suite needs root; re-running under sudo" >&2
        exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME,CI "$0" "$@"
    fi
    echo "tests/run.sh: the suite needs root (privilege-drop tests); run it as root" >&2
    exit 1
fi

# Debian packages the tests use: systemd-socket-activate (systemd),
# python3 (a test app and JSON checks), python3-venv (a venv for PyPI's
# sdnotify), python3-systemd (libsystemd's sd_notify, for a worker),
# nodejs (examples/node, the Node drain shim), wrk (keep-alive load in
# tests/keepalive.rs), procps,
# curl, groff-base (tests/cli.rs formats the man pages with groff, in the
# second tier); for the system tests
# systemd-container (systemd-nspawn), debootstrap, podman and runc (the
# Containerfile built and run, tests/system/container.sh), and for the
# package debhelper, dpkg-dev, fakeroot and lintian.
packages=(systemd python3 python3-venv python3-systemd nodejs wrk procps curl groff-base systemd-container debootstrap podman runc debhelper dpkg-dev fakeroot lintian)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "tests/run.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

step() { printf '\n=== %s\n' "$*" >&2; }

# Third-party sd_notify clients the long tier runs workers with: PyPI's
# sdnotify in a venv of its own (libsystemd's is python3-systemd, above).
if ! target/test-venv/bin/python3 -c 'import sdnotify' 2>/dev/null; then
    echo "tests/run.sh: installing sdnotify from PyPI into target/test-venv" >&2
    python3 -m venv target/test-venv
    target/test-venv/bin/pip install -q sdnotify==0.3.2
fi

# The real servers the recipes, the adoption proofs (tests/adopt.rs) and
# the PM2 benchmark run, pinned, from PyPI, npm and Debian (idempotent).
tests/recipes/install.sh

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
step "the library without the built-in app (--no-default-features)"
# What a program that embeds hawkey with its own app compiles: neither
# hyper nor tokio.
cargo clippy --locked --no-default-features --lib -- -D warnings
step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
step "cargo test: the first tier (no root, node, wrk, groff or packages needed)"
# tests/library.rs runs target/debug/examples/hello. `cargo test
# --all-targets` compiles examples only as test harnesses (into deps/), so
# build the real example binaries first; doc tests after.
cargo build --locked --examples
# The preload library (a cdylib, beside target/debug/hawkey, where hawkey
# finds it): exec'd workers get it by default.
cargo build --locked -p hawkey-preload
# What `cargo test` runs: every test but those libtest lists as ignored,
# the long ones ("long tier: ...") and those that need root, node, wrk,
# groff or the recipes' packages ("needs ...", see tests/tiers.rs).
cargo test --locked --all-targets
cargo test --locked --doc
step "cargo test: the second tier (as root: privilege drops, other uids, PID 1, node, wrk, groff, the recipes' packages; chaos, soak, 50 reloads, ...)"
# The ignored tests, and only those: together with the first tier, every
# test once. Everything they need is installed above.
cargo test --locked --all-targets -- --ignored
step "recipes: real servers from their registries under hawkey (tests/recipes/run.py)"
# gunicorn (sync and uvicorn workers), uvicorn, hypercorn, waitress,
# Express (adopted), Fastify and Puma: each started, spread over both
# workers, reloaded 5 times under connection-per-request and keep-alive
# load, and stopped; non-zero if any recipe fails its assertions.
python3 tests/recipes/run.py
step "fuzz: the config parser (G14), 60 s"
# Without AddressSanitizer: the parser is safe Rust, and libFuzzer still
# catches every panic, hang and out-of-memory; the build is much shorter.
FUZZ_SANITIZER=none fuzz/run.sh
step "system tests: the harness's self-test"
tests/system/selftest.sh
step "system tests: one .deb in Debian 12 and in Debian 13, each with systemd as PID 1 (systemd-nspawn), then in a container built by podman"
# The package is built once and installed by apt in both releases (the
# same file users get); the two containers run at once (on 2 cores both
# take about as long together as one alone, about 4 minutes: the tests are
# mostly waits), each with its own machine name, work directory and log;
# then the podman test, about 20 s. Any of them failing fails the suite;
# each one's time is printed.
tests/system/releases.sh
