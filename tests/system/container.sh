#!/usr/bin/env bash
# The Containerfile, built and run by a real container engine (podman):
#
#   tests/system/container.sh [TEST...]
#
# builds the image from the top-level Containerfile and the .deb
# (HAWKEY_DEB, or packaging/build-deb --prebuilt into WORK/deb), runs it
# and checks what a container engine's user relies on: hawkey is PID 1 as
# the `hawkey` user and serves /healthz, the HEALTHCHECK passes, every log
# line on stderr is JSON, `podman stop` (the image's STOPSIGNAL, SIGTERM)
# stops every worker gracefully and the container exits 0, and
# `count: auto` follows the CPUs the engine gives it (--cpuset-cpus).
#
# No registry is reachable here, so the base image is the cached Debian 12
# root of tests/system/nspawn.sh, imported under the name the
# Containerfile asks for (docker.io/library/debian:bookworm-slim) into a
# podman storage of this script's own, under WORK/podman: the host's own
# images are never touched. That root is a full Debian 12, not the slim
# image; what the image adds (the .deb, its dependencies, the user, the
# config) is the Containerfile's. The containers have no network but their
# own loopback (--network=none); requests are made from inside.
#
# The OCI runtime is runc: crun refuses a host whose cgroup controllers are
# on v1 (this sandbox). Resource limits are set below the host's hard ones
# (podman's defaults are above them and cannot be set here).
# HAWKEY_SYSTEM_WORK as in run.sh (default /var/tmp/hawkey-system). Needs
# root. Prints "N passed, N failed" last.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
[ "$(id -u)" -eq 0 ] || { echo "tests/system/container.sh: needs root (podman)"; echo "0 passed, 1 failed"; exit 1; }
WORK=${HAWKEY_SYSTEM_WORK:-/var/tmp/hawkey-system}
WORK=${WORK%/}
# shellcheck source=SCRIPTDIR/harness.sh
. "$ROOT/tests/system/harness.sh"
# shellcheck source=SCRIPTDIR/deb.sh
. "$ROOT/tests/system/deb.sh"

BASE=docker.io/library/debian:bookworm-slim
IMAGE=localhost/hawkey-system-test:latest
STORE=$WORK/podman
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

# pm ARGS...: podman on this script's own storage.
pm() {
    podman --root "$STORE/storage" --runroot "$STORE/run" --runtime runc \
        --cgroup-manager cgroupfs --events-backend file "$@"
}

# inside NAME SHELL-COMMAND: run it in the running container NAME.
inside() { pm exec "$1" bash -c "$2"; }

# get NAME PATH: an HTTP/1.0 GET of PATH on 127.0.0.1:8080 from inside NAME;
# prints the response.
get() {
    inside "$1" "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET $2 HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && cat <&3"
}

# start NAME [PODMAN-RUN-ARGS...]: run the image detached as NAME, stopped
# and removed when the test ends, and wait until /healthz answers 200.
start() {
    local name=$1
    shift
    pm rm -f "$name" >/dev/null 2>&1 || true  # a leftover of an earlier run
    pm run -d --name "$name" --network=none "${LIMITS[@]}" "$@" "$IMAGE" >/dev/null 2>"$WORK/container-$name.err" ||
        fail "podman run: $(cat "$WORK/container-$name.err")"
    defer remove "$name"
    wait_for 30 "$name to answer /healthz" healthy "$name"
}

# remove NAME: the container gone (podman's complaint that there is no
# systemd on this host to drop its healthcheck timer from is noise).
remove() { pm rm -f -t 0 "$1" >/dev/null 2>&1; }

healthy() { get "$1" /healthz 2>/dev/null | head -n1 | grep -q ' 200 '; }

# logged NAME TEXT: whether NAME's log so far has TEXT.
logged() { pm logs "$1" 2>&1 | grep -qF -- "$2"; }

# The JSON log lines podman kept of NAME's stderr, checked to be JSON: a
# line that is not fails the test.
json_logs() {
    local logs
    logs=$(pm logs "$1" 2>&1)
    python3 -c '
import json, sys
for n, line in enumerate(sys.argv[1].splitlines(), 1):
    try:
        json.loads(line)
    except ValueError:
        sys.exit(f"log line {n} is not JSON: {line!r}")
' "$logs" || fail "podman logs $1"
    printf '%s\n' "$logs"
}

test_the_containerfile_builds_an_image_from_the_deb() {
    local ctx config
    ctx=$WORK/container-context
    rm -rf "$ctx"
    mkdir -p "$ctx/target/debian" "$ctx/packaging/container"
    # The build context the Containerfile expects: the tree and the .deb.
    cp Containerfile "$ctx/"
    cp packaging/container/hawkey.yaml "$ctx/packaging/container/"
    cp "$DEB" "$ctx/target/debian/"
    # --network=host for the build only: its apt-get update.
    pm build --format docker --network=host "${LIMITS[@]}" -t "$IMAGE" -f "$ctx/Containerfile" "$ctx" >"$WORK/container-build.log" 2>&1 ||
        fail "podman build: $(tail -20 "$WORK/container-build.log")"
    config=$(pm image inspect --format '{{.Config.User}} {{.Config.StopSignal}} {{json .Config.Entrypoint}}' "$IMAGE")
    expect_eq "$config" 'hawkey SIGTERM ["/usr/bin/hawkey","run","-c","/etc/hawkey/hawkey.yaml"]' "user, stop signal, entrypoint"
    expect_has "$(pm image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")" '"/usr/bin/hawkey","status"' "healthcheck"
    expect_eq "$(pm run --rm --network=none "${LIMITS[@]}" --entrypoint /bin/cat "$IMAGE" /etc/hawkey/hawkey.yaml 2>/dev/null | sha256sum)" \
        "$(sha256sum <packaging/container/hawkey.yaml)" "the image's /etc/hawkey/hawkey.yaml"
    note "$(basename "$DEB") into $IMAGE: $(pm image inspect --format '{{.Size}}' "$IMAGE") bytes (on a full Debian 12 root)"
}

test_hawkey_is_pid_1_as_the_hawkey_user_serves_and_passes_its_healthcheck() {
    local uid nproc logs
    start hk-run
    expect_eq "$(inside hk-run 'cat /proc/1/comm')" hawkey "PID 1"
    uid=$(inside hk-run 'id -u hawkey')
    expect_eq "$(inside hk-run "awk '/^Uid:/ { print \$2 }' /proc/1/status")" "$uid" "PID 1's uid (the hawkey user)"
    expect_has "$(get hk-run /)" "HTTP/1.0 200" "GET /"
    pm healthcheck run hk-run >/dev/null 2>&1 || fail "the HEALTHCHECK (hawkey status) failed"
    nproc=$(inside hk-run nproc)
    logs=$(json_logs hk-run)
    expect_has "$logs" "(pid 1) starting $nproc builtin workers" "count: auto is the container's CPUs"
    expect_has "$logs" "all $nproc workers ready" "every worker ready"
}

test_podman_stop_sends_sigterm_and_every_worker_stops_gracefully_exit_0() {
    local nproc logs graceful code
    start hk-stop
    nproc=$(inside hk-stop nproc)
    wait_for 10 "all workers ready" logged hk-stop "all $nproc workers ready"
    pm stop -t 30 hk-stop >/dev/null 2>&1 || fail "podman stop failed"
    code=$(pm inspect --format '{{.State.ExitCode}}' hk-stop)
    expect_eq "$code" 0 "the container's exit status"
    logs=$(json_logs hk-stop)
    graceful=$(grep -c 'exited with status 0' <<<"$logs" || true)  # counted below
    expect_eq "$graceful" "$nproc" "workers that exited 0 on their own"
    expect_has "$logs" '"message":"stopped"' "the master's last word"
    if grep -q 'killed by SIG' <<<"$logs"; then fail "a worker was killed: $(grep 'killed by SIG' <<<"$logs" | head -3)"; fi
}

test_count_auto_follows_the_cpus_the_engine_gives() {
    start hk-one-cpu --cpuset-cpus=0
    expect_eq "$(inside hk-one-cpu nproc)" 1 "CPUs in the container"
    expect_has "$(json_logs hk-one-cpu)" "(pid 1) starting 1 builtin workers" "count: auto on one CPU"
}

ALL=(
    test_the_containerfile_builds_an_image_from_the_deb
    test_hawkey_is_pid_1_as_the_hawkey_user_serves_and_passes_its_healthcheck
    test_podman_stop_sends_sigterm_and_every_worker_stops_gracefully_exit_0
    test_count_auto_follows_the_cpus_the_engine_gives
)
selected=("${@:-${ALL[@]}}")
every_test_is_listed "${ALL[@]}" || { echo "0 passed, 1 failed"; exit 1; }

started=$(date +%s)
mkdir -p "$WORK"
missing=()
for p in podman runc; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        { echo "cannot install ${missing[*]}"; echo "0 passed, 1 failed"; exit 1; }
fi
deb_under_test "$WORK" || { echo "0 passed, 1 failed"; exit 1; }
echo "=== the base image: the cached Debian 12 root, as $BASE"
base_root=$(HAWKEY_DEBIAN_SUITE=bookworm tests/system/nspawn.sh prepare) || { echo "0 passed, 1 failed"; exit 1; }
rm -rf "$STORE"
tar -C "$base_root" -c . | pm import -q - "$BASE" >/dev/null 2>"$WORK/container-import.log" ||
    { cat "$WORK/container-import.log"; echo "podman import of $base_root failed"; echo "0 passed, 1 failed"; exit 1; }
trap 'pm rm -a -f -t 0 >/dev/null 2>&1; rm -rf "$STORE" "$WORK/container-context"' EXIT
echo "=== $(pm --version), runtime $(runc --version | head -n1), .deb $(basename "$DEB")"

run_tests "${selected[@]}"
echo "container tests took $(($(date +%s) - started))s"
summarize
