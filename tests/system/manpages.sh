# shellcheck shell=bash
# System test of the man pages the package installs, hawkey(1) and
# hawkey.yaml(5), sourced by run.sh: the helpers (c, fail, note,
# expect_has, defer, ...) are run.sh's and harness.sh's. It runs after the
# install test, on the installed package, and reads the pages the way an
# operator does: man(1) of the installed files.

# plain_man PAGE: `man PAGE` as plain ASCII text: LANG=C, so that groff
# writes ASCII hyphens (not U+2010 and U+2212, which grep would miss), and
# any overstrike for bold or underline removed.
plain_man() {
    c env LANG=C man -P cat "$1" | sed $'s/.\b//g'
}

test_man_pages_are_installed_and_render() {
    # The container is built with man-db (nspawn.sh); a root built without
    # it gets it here. `command` is a shell builtin, hence sh -c.
    if ! c sh -c 'command -v man' >/dev/null; then
        note "no man in the container: installing man-db"
        c apt-get update -q >"$WORK/apt-man-db.log" 2>&1 || fail "apt-get update failed: $(tail -5 "$WORK/apt-man-db.log")"
        c env DEBIAN_FRONTEND=noninteractive apt-get install -y -q man-db >>"$WORK/apt-man-db.log" 2>&1 ||
            fail "apt-get install man-db failed: $(tail -5 "$WORK/apt-man-db.log")"
    fi
    c test -s /usr/share/man/man1/hawkey.1.gz || fail "no /usr/share/man/man1/hawkey.1.gz"
    c test -s /usr/share/man/man5/hawkey.yaml.5.gz || fail "no /usr/share/man/man5/hawkey.yaml.5.gz"

    local page section
    page=$(plain_man hawkey)
    for section in NAME SYNOPSIS DESCRIPTION COMMANDS SIGNALS "EXIT STATUS" ENVIRONMENT FILES EXAMPLES "SEE ALSO"; do
        expect_has "$page" "$section" "man hawkey, section $section"
    done
    expect_has "$page" "hawkey - a pre-fork service manager for systemd hosts" "man hawkey, NAME"
    expect_has "$page" "hawkey reload [-c FILE] [--wait] [NAME]" "man hawkey, reload's synopsis"
    expect_has "$page" "SIGHUP" "man hawkey, SIGNALS"
    expect_has "$page" "/run/hawkey-NAME/" "man hawkey, FILES"
    expect_has "$page" "systemctl enable --now hawkey@api.socket" "man hawkey, EXAMPLES"
    expect_has "$page" "hawkey.yaml(5)" "man hawkey, SEE ALSO"
    if grep -qE 'hawkey-(run|check|status|reload|stop)\(1\)' <<<"$page"; then
        fail "man hawkey names pages that are not installed: $(grep -oE 'hawkey-[a-z]+\(1\)' <<<"$page" | sort -u | tr '\n' ' ')"
    fi

    page=$(plain_man hawkey.yaml)
    for section in NAME SYNOPSIS DESCRIPTION KEYS EXAMPLE FILES "SEE ALSO"; do
        expect_has "$page" "$section" "man hawkey.yaml, section $section"
    done
    expect_has "$page" "hawkey.yaml - configuration of the hawkey pre-fork service manager" "man hawkey.yaml, NAME"
    expect_has "$page" "workers.recycle.memory" "man hawkey.yaml, KEYS"
    expect_has "$page" "workers.stop_timeout" "man hawkey.yaml, KEYS"
    expect_has "$page" "Default: 25s." "man hawkey.yaml, a default"
    note "man hawkey: $(plain_man hawkey | wc -l) lines; man hawkey.yaml: $(plain_man hawkey.yaml | wc -l) lines"
    # whatis needs man-db's index, which its dpkg trigger may or may not
    # have updated in a container: told, not required.
    note "whatis: $(c whatis hawkey hawkey.yaml 2>&1 | tr '\n' ';' || true)"
}
