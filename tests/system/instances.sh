# shellcheck shell=bash
# System tests of instances (hawkey@NAME.service and .socket) and of the
# host-wide `hawkey status`, sourced by run.sh: the helpers (c, prop,
# expect_eq, defer, ...) are run.sh's and harness.sh's. Each test adds the
# instances it needs with the three documented commands (the drop-in as a
# file, which is what `systemctl edit` writes) and removes them again with
# `defer`, so the container is left as it was found.

# add_instance NAME PORT: /etc/hawkey/NAME.yaml (2 built-in workers), the
# socket's address in a drop-in, `systemctl enable --now` of the socket,
# and a first request (which starts the service); removed at the test's end.
add_instance() {
    local name=$1 port=$2
    c sh -c "cat > /etc/hawkey/$name.yaml" <<EOF
# instance $name of the system tests
listen:
  - {name: http, address: "127.0.0.1:$port"}
workers:
  count: 2
EOF
    c mkdir -p "/etc/systemd/system/hawkey@$name.socket.d"
    c sh -c "printf '[Socket]\nListenStream=127.0.0.1:$port\n' > /etc/systemd/system/hawkey@$name.socket.d/listen.conf"
    c systemctl daemon-reload
    defer remove_instance "$name"
    c systemctl enable --now "hawkey@$name.socket" >/dev/null 2>&1 || fail "enable --now hawkey@$name.socket: $(c systemctl status --no-pager "hawkey@$name.socket" 2>&1 | tail -5)"
    expect_eq "$(port_code "$port" /healthz)" 200 "first request to instance $name"
    active "hawkey@$name.service" || fail "hawkey@$name.service not active after its first connection"
}

remove_instance() {
    local name=$1
    c systemctl disable --now "hawkey@$name.socket" >/dev/null 2>&1
    c systemctl stop "hawkey@$name.service"
    c systemctl reset-failed "hawkey@$name.service" "hawkey@$name.socket" >/dev/null 2>&1 || true # nothing failed
    c rm -rf "/etc/hawkey/$name.yaml" "/etc/systemd/system/hawkey@$name.socket.d"
    c systemctl daemon-reload
}

port_code() { c curl -s -o /dev/null -m 10 -w '%{http_code}' "http://127.0.0.1:$1$2"; }

# status_field NAME FIELD: FIELD of NAME's row in `hawkey status --json`.
status_field() {
    local json
    json=$(c hawkey status --json)
    python3 -c '
import json, sys
rows = [r for r in json.loads(sys.argv[1]) if r["name"] == sys.argv[2]]
print(rows[0][sys.argv[3]] if len(rows) == 1 else "no single row for " + sys.argv[2])
' "$json" "$1" "$2"
}

test_two_instances_added_with_three_commands_serve_and_status_lists_all_three() {
    expect_eq "$(http_code /healthz)" 200 "the default instance"
    add_instance api 8081
    add_instance jobs 8082
    local out name
    out=$(c hawkey status)
    note "hawkey status on a host running three instances:"
    while IFS= read -r line; do note "  $line"; done <<<"$out"
    expect_eq "$(wc -l <<<"$out")" 4 "a header and three instances"
    for name in hawkey api jobs; do
        expect_eq "$(status_field "$name" state)" running "$name's state"
        expect_eq "$(status_field "$name" ready)/$(status_field "$name" total)" "$(if [ "$name" = hawkey ]; then c nproc; else echo 2; fi)/$(if [ "$name" = hawkey ]; then c nproc; else echo 2; fi)" "$name's ready workers"
        (($(status_field "$name" rss_bytes) > 1048576)) || fail "$name's memory: $(status_field "$name" rss_bytes)"
    done
    expect_eq "$(status_field api pid)" "$(prop MainPID hawkey@api.service)" "api's master"
    for port in 8080 8081 8082; do
        expect_eq "$(port_code "$port" /)" 200 "127.0.0.1:$port"
    done
    # The hawkey user reads every instance's status too; anyone else sees
    # them listed, as unreachable.
    local as_hawkey as_nobody
    as_hawkey=$(c setpriv --reuid=hawkey --regid=hawkey --init-groups hawkey status)
    expect_eq "$(grep -c ' running ' <<<"$as_hawkey")" 3 "instances running, as the hawkey user: $as_hawkey"
    as_nobody=$(c setpriv --reuid=nobody --regid=nogroup --clear-groups hawkey status)
    note "as nobody:"
    while IFS= read -r line; do note "  $line"; done <<<"$as_nobody"
    expect_eq "$(grep -c ' unreachable: permission denied ' <<<"$as_nobody")" 3 "instances unreachable, as nobody"
    local detail
    detail=$(c hawkey status api)
    expect_has "$detail" "CPU%" "hawkey status api"
    expect_eq "$(c stat -c %U /run/hawkey-api/hawkey.pid)" hawkey "api's pidfile owner"
}

test_stopping_an_instance_leaves_the_other_runtime_directories_in_place() {
    expect_eq "$(http_code /healthz)" 200 "the default instance"
    add_instance api 8081
    add_instance jobs 8082
    c systemctl stop hawkey@api.service
    c test ! -e /run/hawkey-api || fail "/run/hawkey-api left after its instance stopped"
    c test -S /run/hawkey/hawkey.sock || fail "/run/hawkey lost its control socket"
    c test -S /run/hawkey-jobs/hawkey.sock || fail "/run/hawkey-jobs lost its control socket"
    expect_eq "$(status_field api state)" stopped "api after its stop"
    expect_eq "$(status_field jobs state)" running "jobs after api's stop"
    expect_eq "$(port_code 8082 /healthz)" 200 "jobs serving"
    # The socket stayed: the next connection starts api again.
    expect_eq "$(port_code 8081 /healthz)" 200 "api started again by its socket"
}

test_the_journal_names_an_instance_by_identifier_and_by_field() {
    add_instance api 8081
    local by_id by_field
    by_id=$(c journalctl -t hawkey-api --no-pager -o cat)
    expect_has "$by_id" "starting 2 builtin workers" "journalctl -t hawkey-api"
    by_field=$(c journalctl HAWKEY_INSTANCE=api --no-pager -o json)
    expect_has "$by_field" "starting 2 builtin workers" "journalctl HAWKEY_INSTANCE=api"
    expect_has "$by_field" '"SYSLOG_IDENTIFIER":"hawkey-api"' "the master's identifier"
    if grep -q '"_SYSTEMD_UNIT":"hawkey.service"' <<<"$by_field"; then
        fail "HAWKEY_INSTANCE=api matched the default instance's records"
    fi
}

test_systemctl_reload_of_an_instance_replaces_its_workers_only() {
    expect_eq "$(http_code /healthz)" 200 "the default instance"
    add_instance api 8081
    add_instance jobs 8082
    local before
    before=$(status_field hawkey generation)
    c systemctl reload hawkey@api.service || fail "systemctl reload hawkey@api failed"
    expect_eq "$(status_field api generation)" 2 "api after its reload"
    expect_eq "$(status_field jobs generation)" 1 "jobs after api's reload"
    expect_eq "$(status_field hawkey generation)" "$before" "the default instance after api's reload"
    expect_eq "$(port_code 8081 /healthz)" 200 "api serving after its reload"
}

test_the_template_units_verify_silently_and_expose_at_most_2_0() {
    add_instance api 8081
    local out score
    out=$(c systemd-analyze verify hawkey@api.socket hawkey@api.service 2>&1) || fail "systemd-analyze verify exited $?: $out"
    [ -z "$out" ] || fail "systemd-analyze verify said: $out"
    out=$(c systemd-analyze security --offline=true --threshold=20 hawkey@api.service 2>&1) ||
        fail "exposure above 2.0: $(tail -3 <<<"$out")"
    score=$(grep -o 'Overall exposure level for hawkey@api.service: [0-9.]*' <<<"$out") || fail "no overall exposure level in: $(tail -3 <<<"$out")"
    note "$score"
}

test_an_instance_without_a_socket_address_refuses_to_start_and_says_why() {
    c sh -c "printf 'workers:\n  count: 1\n' > /etc/hawkey/nosock.yaml"
    defer c rm -f /etc/hawkey/nosock.yaml
    # Both units failed (that is the test), unless the start was refused
    # before systemd loaded them: then there is nothing to reset.
    defer c sh -c "systemctl reset-failed hawkey@nosock.service hawkey@nosock.socket 2>/dev/null || true"
    if c systemctl start hawkey@nosock.service >/dev/null 2>&1; then
        fail "hawkey@nosock.service started without a socket address"
    fi
    expect_has "$(c journalctl -u hawkey@nosock.socket --no-pager -o cat)" "has no Listen setting" "the socket's reason"
    c test ! -e /run/hawkey-nosock || fail "a runtime directory for an instance that never ran"
}

reinstall() { c apt-get install -y -q "/mnt/host/$(basename "$DEB")" >/dev/null 2>&1; }

test_removing_the_package_stops_every_instance() {
    add_instance api 8081
    c apt-get remove -y -q hawkey >"$WORK/apt-remove-instances.log" 2>&1 || fail "apt remove failed: $(tail -5 "$WORK/apt-remove-instances.log")"
    defer reinstall
    if active hawkey@api.service; then fail "hawkey@api.service still runs after remove"; fi
    if active hawkey@api.socket; then fail "hawkey@api.socket still listens after remove"; fi
    if c sh -c "grep -q ':1F91 00000000:0000 0A' /proc/net/tcp"; then fail "something still listens on 8081 after remove"; fi
    c test ! -e /run/hawkey-api || fail "/run/hawkey-api left after remove"
    c test -e /etc/hawkey/api.yaml || fail "remove deleted the instance's configuration"
}
