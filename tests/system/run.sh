#!/usr/bin/env bash
# hawkey's system tests: the freshly built .deb, installed with apt in a
# real Debian 12 or 13 with systemd as PID 1 (systemd-nspawn, see
# nspawn.sh), and
# operated the way its users do: systemctl, journalctl, apt, the init
# script. Each test is named as the behaviour it proves and prints
# "test NAME ... ok" or "... FAILED" with the reason; the run ends with
# "N passed, N failed" and exits non-zero if any failed. Needs root.
# A test fails at its first failing command or expectation (harness.sh;
# tests/system/selftest.sh proves the harness counts right).
#
#   tests/system/run.sh [TEST...]     all tests, or only those named
#
# HAWKEY_DEBIAN_SUITE=bookworm (Debian 12, systemd 252; the default) or
# trixie (Debian 13, systemd 257) picks the release booted. HAWKEY_SYSTEM_WORK
# (default /var/tmp/hawkey-system) holds, under SUITE/, the logs, the .deb
# and the container; its last component and the suite name the machine, so
# both releases can run at once. The debootstrap roots are cached apart
# (nspawn.sh, HAWKEY_SYSTEM_CACHE). HAWKEY_DEB=path tests that .deb instead
# of building one (tests/run.sh builds one for both releases).
#
# Tests run in order on one container and leave it as they found it (the
# service running the shipped config), except where a test says otherwise.
# Load runs inside the container against its own loopback; every loop is
# bounded in count and time.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
NSPAWN=$ROOT/tests/system/nspawn.sh
SUITE=${HAWKEY_DEBIAN_SUITE:-bookworm}
case $SUITE in
    bookworm) RELEASE="Debian 12" ;;
    trixie) RELEASE="Debian 13" ;;
    *) echo "tests/system/run.sh: HAWKEY_DEBIAN_SUITE must be bookworm or trixie, not '$SUITE'" >&2; exit 2 ;;
esac
export HAWKEY_DEBIAN_SUITE=$SUITE
BASE=${HAWKEY_SYSTEM_WORK:-/var/tmp/hawkey-system}
BASE=${BASE%/}
WORK=$BASE/$SUITE
# Named after WORK and the suite, so that runs with WORKs of their own,
# and the two releases, can run at once.
MACHINE=${BASE##*/}-$SUITE
DIR=$WORK/machine
HOSTDIR=$WORK/host
PORT=8080

[ "$(id -u)" -eq 0 ] || { echo "tests/system/run.sh: needs root (systemd-nspawn, debootstrap)" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

# run_tests, summarize, fail, note, expect_eq, expect_has, wait_for, defer.
# shellcheck source=SCRIPTDIR/harness.sh
. "$ROOT/tests/system/harness.sh"
# shellcheck source=SCRIPTDIR/deb.sh
. "$ROOT/tests/system/deb.sh"
# shellcheck source=SCRIPTDIR/instances.sh
. "$ROOT/tests/system/instances.sh"
# shellcheck source=SCRIPTDIR/manpages.sh
. "$ROOT/tests/system/manpages.sh"

c() { "$NSPAWN" exec "$DIR" -- "$@"; }

prop() { c systemctl show -p "$1" --value "${2:-hawkey.service}"; }
http_code() { c curl -s -o /dev/null -m 10 -w '%{http_code}' "http://127.0.0.1:$PORT${1:-/healthz}"; }
active() { [ "$(c systemctl is-active "$1")" = active ]; }
listening() { c sh -c "grep -q ':$(printf '%04X' "$PORT") 00000000:0000 0A' /proc/net/tcp"; }

# load SECONDS THREADS PATH OUT: background load inside; `wait` for it.
load() { c sh -c "python3 /mnt/host/load.py $PORT $1 $2 $3 > $4" & }
load_counts() { c cat "$1"; }
json_field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

set_config() { c sh -c "cat > /etc/hawkey/hawkey.yaml" <<<"$1"; }
restore_config() {
    c cp /usr/share/hawkey-test/hawkey.yaml /etc/hawkey/hawkey.yaml
    c systemctl reset-failed hawkey.service >/dev/null 2>&1
    c systemctl restart hawkey.service
}

# ------------------------------------------------------------------- tests
#
# Each test runs under errexit (see harness.sh): every command is a check,
# and a command that may fail says so with `|| true` and why. What a test
# changes in the container it undoes with `defer`, which runs whether the
# test passed or not.

test_lintian_reports_no_error_or_warning() {
    local out rc=0
    out=$(lintian --fail-on error,warning "$DEB" 2>&1) || rc=$?
    # grep -v exits 1 when it leaves no line: lintian said nothing else.
    out=$(grep -v 'running with root privileges' <<<"$out" || true)
    [ "$rc" -eq 0 ] || fail "lintian exited $rc: $out"
    [ -z "$out" ] || note "$out"
}

test_install_enables_the_socket_which_listens_before_the_service_runs() {
    c apt-get install -y -q "/mnt/host/$(basename "$DEB")" >"$WORK/apt-install.log" 2>&1 || fail "apt install failed: $(tail -5 "$WORK/apt-install.log")"
    # Keep the shipped config to restore after tests that change it.
    c mkdir -p /usr/share/hawkey-test
    c cp /etc/hawkey/hawkey.yaml /usr/share/hawkey-test/hawkey.yaml
    expect_eq "$(c systemctl is-enabled hawkey.socket)" enabled "hawkey.socket enabled"
    expect_eq "$(c systemctl is-active hawkey.socket)" active "hawkey.socket active"
    expect_eq "$(c systemctl is-active hawkey.service)" inactive "hawkey.service not started by the install"
    listening || fail "nothing listens on 127.0.0.1:$PORT"
    c id hawkey >/dev/null || fail "no hawkey system user"
}

test_units_verify_silently_and_expose_at_most_2_0() {
    local out score
    out=$(c systemd-analyze verify /lib/systemd/system/hawkey.socket /lib/systemd/system/hawkey.service 2>&1) || fail "systemd-analyze verify exited $?: $out"
    [ -z "$out" ] || fail "systemd-analyze verify said: $out"
    out=$(c systemd-analyze security --offline=true --threshold=20 /lib/systemd/system/hawkey.service 2>&1) ||
        fail "exposure above 2.0: $(tail -3 <<<"$out")"
    score=$(grep -o 'Overall exposure level for hawkey.service: [0-9.]*' <<<"$out") || fail "no overall exposure level in: $(tail -3 <<<"$out")"
    note "$score"
}

# systemd >= 253 runs hawkey.service as Type=notify-reload (the package's
# generator writes the drop-in); 252 keeps the shipped Type=notify with
# ExecReload=hawkey reload --wait. systemctl show prints each ExecReload=
# as "{ path=... ; argv[]=... ; ... }".
test_the_unit_is_notify_reload_on_systemd_253_and_later_and_notify_before() {
    local type reload dropin
    type=$(prop Type)
    reload=$(prop ExecReload)
    dropin=/run/systemd/generator/hawkey.service.d/50-hawkey-notify-reload.conf
    if [ "$SYSTEMD_VERSION" -ge 253 ]; then
        expect_eq "$type" notify-reload "Type on systemd $SYSTEMD_VERSION"
        expect_has "$reload" "argv[]=/usr/bin/hawkey check --quiet ;" "ExecReload on systemd $SYSTEMD_VERSION"
        if grep -q 'reload --wait' <<<"$reload"; then fail "ExecReload still runs hawkey reload --wait: $reload"; fi
        c test -s "$dropin" || fail "no generator drop-in $dropin"
        expect_has "$(prop DropInPaths)" "$dropin" "DropInPaths"
    else
        expect_eq "$type" notify "Type on systemd $SYSTEMD_VERSION"
        expect_has "$reload" "argv[]=/usr/bin/hawkey reload --wait ;" "ExecReload on systemd $SYSTEMD_VERSION"
        if c test -e "$dropin"; then fail "the generator wrote $dropin on systemd $SYSTEMD_VERSION"; fi
    fi
    note "systemd $SYSTEMD_VERSION: Type=$type, ExecReload=$(sed -n 's/.*argv\[\]=\([^;]*\);.*/\1/p' <<<"$reload")"
}

# An administrator's drop-in in /etc wins over the generator's: Type=notify
# with hawkey reload --wait again, on any systemd.
remove_the_type_dropin() {
    c rm -f /etc/systemd/system/hawkey.service.d/type.conf
    c systemctl daemon-reload
    c systemctl restart hawkey.service
}

test_an_admin_dropin_in_etc_overrides_the_generators_type() {
    defer remove_the_type_dropin
    c mkdir -p /etc/systemd/system/hawkey.service.d
    c sh -c 'printf "[Service]\nType=notify\nExecReload=\nExecReload=/usr/bin/hawkey reload --wait\n" > /etc/systemd/system/hawkey.service.d/type.conf'
    c systemctl daemon-reload
    c systemctl restart hawkey.service
    expect_eq "$(prop Type)" notify "Type with the admin's drop-in"
    expect_has "$(prop ExecReload)" "argv[]=/usr/bin/hawkey reload --wait ;" "ExecReload with the admin's drop-in"
    c systemctl reload hawkey.service || fail "reload under the admin's Type=notify failed"
}

test_the_first_connection_starts_the_service_and_every_worker_answers() {
    expect_eq "$(http_code /)" 200 "first request"
    active hawkey.service || fail "hawkey.service not active after the first connection"
    local n seen
    n=$(c nproc)
    # grep finds nothing when no request was answered: counted as 0 below.
    seen=$(c sh -c "for i in \$(seq 1 200); do curl -s -m 5 http://127.0.0.1:$PORT/delay/10 & done; wait" | { grep -o 'in worker [0-9]*' || true; } | sort -u | wc -l)
    expect_eq "$seen" "$n" "workers that answered out of $n"
    note "$seen of $n workers answered"
}

test_status_line_and_pidfile_tell_the_truth() {
    local status main pid
    status=$(c systemctl status --no-pager hawkey.service)
    expect_has "$status" "Status: \"$(c nproc)/$(c nproc) workers ready, generation 1" "systemctl status"
    main=$(prop MainPID)
    pid=$(c cat /run/hawkey/hawkey.pid)
    expect_eq "$pid" "$main" "pidfile vs MainPID"
    expect_eq "$(c stat -c %U /run/hawkey/hawkey.pid)" hawkey "pidfile owner"
}

test_journal_has_lifecycle_events_with_worker_fields_and_worker_pids() {
    local json pids pid
    json=$(c journalctl -u hawkey.service -o json --no-pager)
    expect_has "$json" '"HAWKEY_WORKER"' "journal field HAWKEY_WORKER"
    expect_has "$json" '"WORKER_PID"' "journal field WORKER_PID"
    expect_has "$json" '"GENERATION"' "journal field GENERATION"
    expect_has "$json" 'starting' "start event"
    pids=$(c hawkey status hawkey --json | python3 -c 'import json,sys; print(" ".join(str(w["pid"]) for w in json.load(sys.stdin)["workers"]))')
    [ -n "$pids" ] || fail "hawkey status --json lists no worker"
    for pid in $pids; do
        # Lines written by the worker itself carry the worker's own _PID.
        [ -n "$(c journalctl _PID="$pid" -o cat --no-pager)" ] || fail "no journal line with _PID=$pid (a worker)"
    done
    note "worker pids with their own journal lines: $pids"
}

test_20_reloads_under_load_fail_no_request() {
    local i counts gen loader
    load 8 4 /delay/5 /tmp/reload-load.json
    loader=$!
    for i in $(seq 1 20); do
        c systemctl reload hawkey.service || fail "systemctl reload #$i failed"
    done
    gen=$(prop StatusText)
    wait "$loader" || fail "the load client failed"
    counts=$(load_counts /tmp/reload-load.json)
    note "20 reloads under load: $counts; $gen"
    expect_has "$gen" "generation 21" "generation after 20 reloads"
    expect_eq "$(json_field "$counts" connect_errors)" 0 "connect errors"
    expect_eq "$(json_field "$counts" failed)" 0 "failed requests"
    expect_eq "$(prop NRestarts)" 0 "restarts during reloads"
}

test_an_invalid_config_fails_the_reload_and_the_service_keeps_serving() {
    local main
    main=$(prop MainPID)
    defer c cp /usr/share/hawkey-test/hawkey.yaml /etc/hawkey/hawkey.yaml
    c sed -i 's/^  count: auto/  count: lots/' /etc/hawkey/hawkey.yaml
    expect_has "$(c cat /etc/hawkey/hawkey.yaml)" "count: lots" "the broken config"
    local out t0 took
    t0=$(date +%s)
    if out=$(c systemctl reload hawkey.service 2>&1); then fail "reload of an invalid config succeeded"; fi
    took=$(($(date +%s) - t0))
    # It fails at once: not by systemd's reload timeout (TimeoutStartSec=).
    [ "$took" -le 10 ] || fail "the failed reload took ${took}s"
    note "systemctl reload said (${took}s): $out"
    # The master saw the reload (SIGHUP, or hawkey reload --wait) and refused it.
    wait_for 5 "the master to log the refused reload" sh -c "$NSPAWN exec $DIR -- journalctl -u hawkey.service --no-pager -n 50 -o cat | grep -q 'reload failed, the running workers are unchanged'"
    active hawkey.service || fail "service not active after a failed reload"
    expect_eq "$(prop MainPID)" "$main" "MainPID after a failed reload"
    expect_has "$(prop StatusText)" "last reload failed" "StatusText"
    expect_eq "$(http_code /)" 200 "serving after a failed reload"
    c cp /usr/share/hawkey-test/hawkey.yaml /etc/hawkey/hawkey.yaml
    c systemctl reload hawkey.service || fail "reload of the restored config failed"
}

# A valid config whose new workers cannot start is rolled back: the old
# generation serves on, and STATUS= says so. What `systemctl reload` says
# differs: on 252 `hawkey reload --wait` exits non-zero, so the reload job
# fails; on >= 253 (Type=notify-reload) systemd takes no reload failure
# from the service (systemd 253-257, see NOTES), and the check of the
# (valid) config passes: the job succeeds, the failure is in `systemctl
# status` and the journal.
test_a_reload_whose_new_workers_cannot_start_is_rolled_back_and_the_old_ones_serve_on() {
    local main rc=0 out t0 took
    active hawkey.service || c systemctl start hawkey.service
    defer restore_config
    main=$(prop MainPID)
    c sed -i 's/^  app: builtin$/  app: exec\n  command: [sh, -c, "exit 3"]/' /etc/hawkey/hawkey.yaml
    c hawkey check --quiet >/dev/null || fail "the failing app's config is not valid"
    t0=$(date +%s)
    out=$(c systemctl reload hawkey.service 2>&1) || rc=$?
    took=$(($(date +%s) - t0))
    if [ "$SYSTEMD_VERSION" -ge 253 ]; then
        expect_eq "$rc" 0 "systemctl reload exit on systemd $SYSTEMD_VERSION (notify-reload)"
    else
        [ "$rc" -ne 0 ] || fail "systemctl reload of a rolled-back reload succeeded on systemd $SYSTEMD_VERSION"
    fi
    wait_for 30 "STATUS= to tell of the rollback" sh -c "$NSPAWN exec $DIR -- systemctl show -p StatusText --value hawkey.service | grep -q 'last reload failed: reload failed and was rolled back'"
    active hawkey.service || fail "service not active after a rolled-back reload"
    expect_eq "$(prop MainPID)" "$main" "MainPID after a rolled-back reload"
    expect_has "$(http_code /)" 200 "serving after a rolled-back reload"
    note "systemd $SYSTEMD_VERSION: systemctl reload exit $rc after ${took}s${out:+ ($out)}; $(prop StatusText)"
}

test_10_restarts_and_5_master_kills_under_load_refuse_no_connection() {
    local i main workers counts w loader
    load 40 4 /healthz /tmp/restart-load.json
    loader=$!
    for i in $(seq 1 10); do
        c systemctl reset-failed hawkey.service >/dev/null 2>&1
        c systemctl restart hawkey.service || fail "systemctl restart #$i failed"
    done
    for i in $(seq 1 5); do
        main=$(prop MainPID)
        workers=$(c sh -c "cat /proc/$main/task/$main/children")
        [ -n "$workers" ] || fail "master $main has no workers before kill -9 #$i"
        c kill -9 "$main"
        # Workers die with the master (PR_SET_PDEATHSIG): none left after 1s.
        for w in $workers; do
            wait_for 1 "old worker $w to be gone after the master was killed" c sh -c "! grep -qs '^State:.*[RSD]' /proc/$w/status"
        done
        wait_for 20 "a new master after kill -9 #$i" sh -c "[ \"\$($NSPAWN exec $DIR -- systemctl show -p MainPID --value hawkey.service)\" != $main ] && [ \"\$($NSPAWN exec $DIR -- systemctl is-active hawkey.service)\" = active ]"
        c systemctl reset-failed hawkey.service >/dev/null 2>&1
    done
    wait "$loader" || fail "the load client failed"
    counts=$(load_counts /tmp/restart-load.json)
    note "10 restarts + 5 kill -9 under load: $counts"
    expect_eq "$(json_field "$counts" connect_errors)" 0 "connect errors"
    active hawkey.socket || fail "socket not active"
}

remove_the_watchdog_dropin() {
    c rm -f /etc/systemd/system/hawkey.service.d/test-watchdog.conf
    c systemctl daemon-reload
    c systemctl reset-failed hawkey.service
    c systemctl restart hawkey.service
}

test_the_watchdog_restarts_a_stalled_master() {
    local main before
    defer remove_the_watchdog_dropin
    c mkdir -p /etc/systemd/system/hawkey.service.d
    c sh -c 'printf "[Service]\nWatchdogSec=2s\nTimeoutAbortSec=2s\n" > /etc/systemd/system/hawkey.service.d/test-watchdog.conf'
    c systemctl daemon-reload
    c systemctl restart hawkey.service
    main=$(prop MainPID)
    before=$(prop NRestarts)
    # Healthy: pinged, not restarted, for 3 watchdog periods.
    sleep 6
    expect_eq "$(prop MainPID)" "$main" "a healthy master was restarted by the watchdog"
    c kill -STOP "$main"
    wait_for 30 "systemd to restart the stalled master" sh -c "[ \"\$($NSPAWN exec $DIR -- systemctl show -p NRestarts --value hawkey.service)\" -gt $before ] && [ \"\$($NSPAWN exec $DIR -- systemctl is-active hawkey.service)\" = active ]"
    expect_has "$(c journalctl -u hawkey.service --no-pager -n 200)" "Watchdog timeout" "journal"
}

test_stop_lets_slow_requests_finish_and_empties_the_cgroup() {
    local i codes
    active hawkey.service || c systemctl start hawkey.service
    defer c systemctl start hawkey.service
    for i in 1 2 3; do
        c sh -c "curl -s -m 30 -o /dev/null -w '%{http_code}' http://127.0.0.1:$PORT/delay/3000 > /tmp/slow$i" &
    done
    # In flight: three established connections to the port.
    wait_for 10 "3 requests in flight" sh -c "[ \$($NSPAWN exec $DIR -- sh -c \"grep -c ':$(printf '%04X' "$PORT") [0-9A-F:]* 01' /proc/net/tcp\") -ge 3 ]"
    c systemctl stop hawkey.service || fail "systemctl stop failed"
    # The curls' own statuses do not matter: their codes are checked.
    wait
    codes=$(c cat /tmp/slow1 /tmp/slow2 /tmp/slow3 | tr -d '\n')
    expect_eq "$codes" 200200200 "slow requests in flight at stop"
    expect_eq "$(c systemctl is-active hawkey.service)" inactive "service state"
    c sh -c '! pgrep -x hawkey' >/dev/null || fail "hawkey processes left after stop: $(c pgrep -ax hawkey)"
    c sh -c '! test -s /sys/fs/cgroup/system.slice/hawkey.service/cgroup.procs' || fail "cgroup not empty after stop"
    expect_has "$(c journalctl -u hawkey.service --no-pager -n 50 -o cat)" "stopped" "final stop line in the journal"
}

test_a_crash_looping_app_backs_off_and_the_socket_keeps_listening() {
    local main t0 t1 ticks json restarts
    defer restore_config
    # `ready: started`: each worker counts as started, then crashes; the
    # master backs off for as long as it runs. (Under the default `auto` a
    # worker that dies before it is ready is a failed start: the test below.)
    set_config "$(printf 'workers:\n  count: 2\n  app: exec\n  ready: started\n  command: [sh, -c, "exit 1"]\n')"
    c systemctl restart hawkey.service || fail "start with a crashing app failed"
    main=$(prop MainPID)
    t0=$(c sh -c "awk '{print \$14+\$15}' /proc/$main/stat")
    sleep 60
    t1=$(c sh -c "awk '{print \$14+\$15}' /proc/$main/stat")
    ticks=$((t1 - t0))
    json=$(c hawkey status hawkey --json)
    restarts=$(python3 -c 'import json,sys; print(sum(w["restarts"] for w in json.loads(sys.argv[1])["workers"]))' "$json")
    note "60s of crash loop: master used $ticks ticks (1/100 s) of CPU, $restarts restarts, MainPID $main -> $(prop MainPID)"
    expect_eq "$(prop MainPID)" "$main" "the master kept running"
    [ "$ticks" -lt 300 ] || fail "master CPU $ticks ticks in 60s (5% is 300)"
    active hawkey.socket || fail "hawkey.socket not active"
    listening || fail "hawkey.socket stopped listening"
    ((restarts >= 10 && restarts <= 40)) || fail "$restarts restarts in 60s: backoff not working"
    expect_has "$(c journalctl -u hawkey.service --no-pager -n 400 -o cat)" "restarting in 30s" "backoff reached 30s"
    expect_has "$(prop StatusText)" "restarts" "StatusText"
}

main_status_is() { [ "$(prop ExecMainStatus)" = "$1" ]; }

test_an_app_that_dies_before_it_is_ready_fails_the_start_with_69_and_the_socket_keeps_listening() {
    local rc=0 log
    defer restore_config
    # An app that never heard of sd_notify and exits at once: under the
    # default `ready: auto` it is never ready, so the start fails (exit 69)
    # instead of a master that calls it ready and restarts it forever.
    set_config "$(printf 'workers:\n  count: 2\n  app: exec\n  command: [sh, -c, "echo cannot open the database >&2; exit 3"]\n')"
    c systemctl restart hawkey.service || rc=$?
    [ "$rc" -ne 0 ] || fail "systemctl restart succeeded with an app that exits at once"
    wait_for 60 "the master to give up with 69" main_status_is 69
    log=$(c journalctl -u hawkey.service --no-pager -n 200 -o cat)
    expect_has "$log" "no worker became ready" "the master's reason"
    expect_has "$log" "exited with status 3" "the worker's exit status"
    active hawkey.socket || fail "hawkey.socket not active"
    listening || fail "hawkey.socket stopped listening"
    note "ExecMainStatus $(prop ExecMainStatus), Result $(prop Result)"
}

test_an_unmodified_server_binding_its_own_port_is_adopted_by_the_installed_library() {
    local lib pids pid inode seen=0 code
    defer restore_config
    lib=$(c sh -c 'ls /usr/lib/*/hawkey/libhawkey_preload.so') || fail "the .deb installed no preload library"
    # python3 -m http.server binds its own port 3000 and knows nothing of
    # hawkey: its bind() gets the socket unit's listener 'http' (8080).
    c mkdir -p /srv/www
    c sh -c 'echo adopted > /srv/www/index.html'
    set_config "$(printf 'workers:\n  count: 2\n  app: exec\n  cwd: /srv/www\n  command: [python3, -m, http.server, "3000"]\n  adopt: {http: 3000}\n')"
    c systemctl restart hawkey.service || fail "start of the adopted app failed: $(c journalctl -u hawkey.service --no-pager -n 20 -o cat)"
    expect_has "$(prop StatusText)" "2/2 workers ready" "readiness seen without READY=1"
    for _ in $(seq 1 40); do
        code=$(http_code /index.html)
        [ "$code" = 200 ] && seen=$((seen + 1))
    done
    expect_eq "$seen" 40 "requests answered through the adopted listener"
    if c sh -c "grep -q ':0BB8 00000000:0000 0A' /proc/net/tcp /proc/net/tcp6"; then fail "something listens on port 3000 itself"; fi
    inode=$(c sh -c "grep ':$(printf '%04X' "$PORT") 00000000:0000 0A' /proc/net/tcp | awk '{print \$10}' | head -1")
    pids=$(c hawkey status hawkey --json | python3 -c 'import json,sys; print(" ".join(str(w["pid"]) for w in json.load(sys.stdin)["workers"]))')
    for pid in $pids; do
        c grep -q "$lib" "/proc/$pid/maps" || fail "worker $pid has not loaded $lib"
        c sh -c "ls -l /proc/$pid/fd | grep -q 'socket:\[$inode\]'" || fail "worker $pid holds no fd of the listener (inode $inode)"
    done
    note "library $lib, workers $pids on listener inode $inode"
}

test_10000_worker_lines_reach_the_journal_under_each_workers_pid() {
    local out last
    defer restore_config
    set_config "$(printf 'workers:\n  count: 2\n  app: exec\n  ready: started\n  command: [sh, -c, %s]\n' "'i=0; while [ \$i -lt 5000 ]; do echo \"line \$i from \$HAWKEY_WORKER\"; i=\$((i+1)); done; exec sleep 1000'")"
    c systemctl restart hawkey.service || fail "restart with the printing app failed"
    # Stop right after they printed: nothing may be lost at stop.
    wait_for 20 "both workers to print 5000 lines" sh -c "[ \$($NSPAWN exec $DIR -- journalctl -u hawkey.service -o cat --no-pager | grep -c '^line 4999 from') -ge 2 ]"
    c systemctl stop hawkey.service
    out=$(c journalctl -u hawkey.service -o json --no-pager --output-fields=MESSAGE,_PID,SYSLOG_IDENTIFIER | python3 -c '
import json, sys
lines = {}
for entry in map(json.loads, sys.stdin):
    m = entry.get("MESSAGE", "")
    if isinstance(m, str) and m.startswith("line "):
        lines.setdefault(entry["_PID"], []).append(m)
counts = sorted(len(v) for v in lines.values())
distinct = sum(len(set(v)) for v in lines.values())
print(len(lines), counts[-2:], distinct)
')
    note "worker pids, lines per pid, distinct lines: $out"
    last=$(c journalctl -u hawkey.service --no-pager -n 5 -o cat -t hawkey)
    expect_has "$out" "[5000, 5000] 10000" "10 000 lines, 5 000 per worker pid"
    expect_has "$last" "stopped" "final stop line"
}

test_an_upgrade_restarts_the_service_without_refusing_connections() {
    local main counts loader
    active hawkey.service || c systemctl start hawkey.service
    main=$(prop MainPID)
    load 12 4 /healthz /tmp/upgrade-load.json
    loader=$!
    c dpkg -i "/mnt/host/$(basename "$DEB")" >"$WORK/dpkg-upgrade.log" 2>&1 || fail "dpkg -i (upgrade) failed: $(tail -5 "$WORK/dpkg-upgrade.log")"
    wait "$loader" || fail "the load client failed"
    counts=$(load_counts /tmp/upgrade-load.json)
    note "reinstall under load: $counts"
    expect_eq "$(json_field "$counts" connect_errors)" 0 "connect errors during the upgrade"
    [ "$(prop MainPID)" != "$main" ] || fail "the service was not restarted by the upgrade"
    active hawkey.service || fail "service not active after the upgrade"
}

# The init script run directly, as on a host without systemd.
INIT=(env _SYSTEMCTL_SKIP_REDIRECT=1 /etc/init.d/hawkey)

# Stops a hawkey the init script started and left running (not the one
# systemd runs: both use the same pidfile), and brings the socket back.
back_to_socket_activation() {
    if ! active hawkey.service; then
        c "${INIT[@]}" stop >/dev/null
    fi
    c systemctl start hawkey.socket
}

test_the_init_script_starts_reloads_and_stops_through_the_pidfile() {
    local pid worker rc=0
    defer back_to_socket_activation
    c systemctl stop hawkey.socket hawkey.service
    c "${INIT[@]}" start >/dev/null || fail "init script start failed"
    pid=$(c cat /run/hawkey/hawkey.pid)
    c "${INIT[@]}" status >/dev/null || fail "status of a running hawkey is not 0"
    expect_eq "$(http_code /)" 200 "serving under the init script"
    # A worker crash: replaced, the pidfile still names the master.
    worker=$(c sh -c "cat /proc/$pid/task/$pid/children" | awk '{print $1}')
    [ -n "$worker" ] || fail "master $pid has no worker"
    c kill -9 "$worker"
    wait_for 5 "the worker to be replaced" sh -c "$NSPAWN exec $DIR -- sh -c \"cat /proc/$pid/task/$pid/children\" | grep -qv '^$worker '"
    expect_eq "$(c cat /run/hawkey/hawkey.pid)" "$pid" "pidfile after a worker crash"
    c "${INIT[@]}" reload >/dev/null || fail "init script reload failed"
    wait_for 10 "generation 2 after reload" sh -c "$NSPAWN exec $DIR -- hawkey status hawkey | grep -q 'generation 2'"
    c "${INIT[@]}" status >/dev/null || fail "status after reload is not 0"
    c "${INIT[@]}" stop >/dev/null || fail "init script stop failed"
    c test ! -e /run/hawkey/hawkey.pid || fail "pidfile left after stop"
    c "${INIT[@]}" status >/dev/null || rc=$?
    expect_eq "$rc" 3 "LSB status of a stopped hawkey"
    c systemctl start hawkey.socket
    expect_eq "$(http_code /)" 200 "socket activation back after the init script test"
}

test_remove_purge_and_reinstall_behave_as_debian_users_expect() {
    c apt-get remove -y -q hawkey >/dev/null 2>&1 || fail "apt remove failed"
    c test ! -e /usr/bin/hawkey || fail "binary left after remove"
    c test -e /etc/hawkey/hawkey.yaml || fail "remove deleted the configuration (a conffile)"
    if listening; then fail "something still listens on $PORT after remove"; fi
    c apt-get purge -y -q hawkey >/dev/null 2>&1 || fail "apt purge failed"
    c test ! -e /etc/hawkey || fail "/etc/hawkey left after purge"
    c apt-get install -y -q "/mnt/host/$(basename "$DEB")" >/dev/null 2>&1 || fail "reinstall failed"
    active hawkey.socket || fail "socket not active after reinstall"
    expect_eq "$(http_code /)" 200 "serving after reinstall"
}

# ------------------------------------------------------------------ runner

ALL=(
    test_lintian_reports_no_error_or_warning
    test_install_enables_the_socket_which_listens_before_the_service_runs
    test_man_pages_are_installed_and_render
    test_units_verify_silently_and_expose_at_most_2_0
    test_the_unit_is_notify_reload_on_systemd_253_and_later_and_notify_before
    test_the_first_connection_starts_the_service_and_every_worker_answers
    test_status_line_and_pidfile_tell_the_truth
    test_journal_has_lifecycle_events_with_worker_fields_and_worker_pids
    test_20_reloads_under_load_fail_no_request
    test_an_invalid_config_fails_the_reload_and_the_service_keeps_serving
    test_an_admin_dropin_in_etc_overrides_the_generators_type
    test_a_reload_whose_new_workers_cannot_start_is_rolled_back_and_the_old_ones_serve_on
    test_10_restarts_and_5_master_kills_under_load_refuse_no_connection
    test_the_watchdog_restarts_a_stalled_master
    test_stop_lets_slow_requests_finish_and_empties_the_cgroup
    test_a_crash_looping_app_backs_off_and_the_socket_keeps_listening
    test_an_app_that_dies_before_it_is_ready_fails_the_start_with_69_and_the_socket_keeps_listening
    test_an_unmodified_server_binding_its_own_port_is_adopted_by_the_installed_library
    test_10000_worker_lines_reach_the_journal_under_each_workers_pid
    test_two_instances_added_with_three_commands_serve_and_status_lists_all_three
    test_stopping_an_instance_leaves_the_other_runtime_directories_in_place
    test_the_journal_names_an_instance_by_identifier_and_by_field
    test_systemctl_reload_of_an_instance_replaces_its_workers_only
    test_the_template_units_verify_silently_and_expose_at_most_2_0
    test_an_instance_without_a_socket_address_refuses_to_start_and_says_why
    test_removing_the_package_stops_every_instance
    test_an_upgrade_restarts_the_service_without_refusing_connections
    test_the_init_script_starts_reloads_and_stops_through_the_pidfile
    test_remove_purge_and_reinstall_behave_as_debian_users_expect
)
selected=("${@:-${ALL[@]}}")
every_test_is_listed "${ALL[@]}" || { echo "0 passed, 1 failed"; exit 1; }

started=$(date +%s)
mkdir -p "$WORK" "$HOSTDIR"
deb_under_test "$WORK" || { echo "0 passed, 1 failed"; exit 1; }
dpkg -s lintian >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian >/dev/null
rm -f "$HOSTDIR"/*.deb
cp "$DEB" "$ROOT/tests/system/load.py" "$HOSTDIR/"
echo "=== preparing the $RELEASE ($SUITE) root (cached) and booting it as $MACHINE"
"$NSPAWN" prepare >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
[ -e "$DIR" ] && "$NSPAWN" stop "$DIR" >/dev/null 2>&1
HAWKEY_NSPAWN_HOSTDIR=$HOSTDIR "$NSPAWN" boot "$MACHINE" "$DIR" >/dev/null || { echo "boot failed"; echo "0 passed, 1 failed"; exit 1; }
trap '"$NSPAWN" stop "$DIR" >/dev/null 2>&1' EXIT
# "systemd 257 (257.9-1~deb13u2)": the number decides what the unit is.
SYSTEMD_LINE=$(c systemctl --version | head -n1)
SYSTEMD_VERSION=$(sed -n 's/^systemd \([0-9][0-9]*\).*/\1/p' <<<"$SYSTEMD_LINE")
[ -n "$SYSTEMD_VERSION" ] || { echo "no systemd version in '$SYSTEMD_LINE'"; echo "0 passed, 1 failed"; exit 1; }
echo "=== $RELEASE ($SUITE, debian_version $(c cat /etc/debian_version)), $SYSTEMD_LINE, .deb $(basename "$DEB")"

run_tests "${selected[@]}"
echo "system tests on $RELEASE ($SUITE, systemd $SYSTEMD_VERSION) took $(($(date +%s) - started))s"
summarize
