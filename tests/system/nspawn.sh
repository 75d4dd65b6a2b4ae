#!/usr/bin/env bash
# Boot a throwaway Debian 12 (bookworm) or 13 (trixie) with systemd as PID 1
# under systemd-nspawn, for hawkey's system tests.  Needs root.
#
#   tests/system/nspawn.sh prepare            install host tools if missing,
#                                             build/refresh the cached root,
#                                             print its path
#   tests/system/nspawn.sh boot NAME DIR      make DIR (must not exist) a fresh
#                                             copy of the cached root (overlay
#                                             mount; cp -a if that fails), boot
#                                             it as machine NAME, wait for
#                                             running/degraded, write the
#                                             container's PID 1 (as seen from
#                                             the host) to DIR.pid, print it
#   tests/system/nspawn.sh exec DIR -- CMD... run CMD inside (nsenter -a), with
#                                             a clean environment; exit status
#                                             and stdin/stdout pass through
#   tests/system/nspawn.sh stop DIR           power off (bounded), kill what is
#                                             left, unmount and remove DIR and
#                                             DIR.{pid,log,state,overlay}
#
# Getting files in: DIR is the container's root directory as seen from the host
# (writes land in DIR.overlay/upper), so `cp x.deb DIR/root/` works while it
# runs; or set HAWKEY_NSPAWN_HOSTDIR=/some/dir at boot to bind it read-only at
# /mnt/host.  DIR.log holds the container's console output.
# The container has --private-network: only its own loopback, no network.
# A command run by `exec` joins the container's namespaces but stays in the
# caller's cgroup (inside it shows as 0::/../../..); when a test cares about
# its cgroup, run it as `exec DIR -- systemd-run --scope -q CMD` (keeps the
# terminal and exit status) or `systemd-run --pipe --wait -q CMD` (a service).
# Cgroup controllers are not usable inside on a host whose controllers are all
# on cgroup v1 (like this sandbox): CPUQuota=, MemoryMax= etc. have no effect.
#
# Environment (all optional):
#   HAWKEY_DEBIAN_SUITE        bookworm (default) or trixie: the release booted;
#                              each has a cached root of its own
#   HAWKEY_SYSTEM_CACHE        cache directory   (default /var/cache/hawkey-system)
#   HAWKEY_DEBIAN_MIRROR       debootstrap mirror (default: from the host's apt sources)
#   HAWKEY_NSPAWN_HOSTDIR      host directory bound read-only at /mnt/host
#   HAWKEY_NSPAWN_COPY         overlay (default) or cp: how DIR is made
#   HAWKEY_NSPAWN_BOOT_TIMEOUT seconds to wait for running/degraded (default 120)
#   HAWKEY_NSPAWN_STOP_TIMEOUT seconds to wait for poweroff          (default 30)
#   SYSTEMD_NSPAWN_UNIFIED_HIERARCHY  nspawn's own knob; this script sets 1 (pure
#                              cgroup v2 inside, like a stock Debian 12) when
#                              unset and the host has cgroup2; 0 forces legacy v1
#
# Without a systemd host (PID 1 is not systemd, e.g. inside a CI sandbox),
# --keep-unit makes nspawn use the cgroup it was started in and create
# "payload"/"supervisor" children there.  Started from the root cgroup, that is
# /payload for every container, so two containers would collide; this script
# therefore first moves nspawn into its own cgroup, hawkey-system/NAME, in every
# named/unified hierarchy (what a systemd unit would have given it).  On a
# systemd host it runs nspawn in a delegated scope via systemd-run --scope.
set -euo pipefail

prog=tests/system/nspawn.sh
SUITE=${HAWKEY_DEBIAN_SUITE:-bookworm}
case $SUITE in bookworm|trixie) ;; *) echo "$prog: HAWKEY_DEBIAN_SUITE must be bookworm or trixie, not '$SUITE'" >&2; exit 2 ;; esac
VARIANT=minbase
PACKAGES=(systemd systemd-sysv dbus curl procps python3 adduser man-db)
# Bump when the post-debootstrap tweaks below change, to force a rebuild.
RECIPE=1
CACHE_DIR=${HAWKEY_SYSTEM_CACHE:-/var/cache/hawkey-system}
ROOT=$CACHE_DIR/$SUITE
STAMP=$ROOT.stamp
BOOT_TIMEOUT=${HAWKEY_NSPAWN_BOOT_TIMEOUT:-120}
STOP_TIMEOUT=${HAWKEY_NSPAWN_STOP_TIMEOUT:-30}
CG_PARENT=hawkey-system
IN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "$prog: $*" >&2; exit 1; }
log() { echo "$prog: $*" >&2; }
now() { date +%s; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (nspawn, debootstrap, nsenter)"; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

# --- prepare ---------------------------------------------------------------

install_host_tools() {
    local missing=() p
    for p in systemd-container debootstrap; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing host packages: ${missing[*]}"
    timeout 600 apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive timeout 900 \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
}

# The first Debian archive URI apt uses for suite $SUITE (deb822 .sources or
# one-line .list), so debootstrap goes exactly where apt goes.
host_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v s="$SUITE" '
            /^[ \t]*deb[ \t]/ {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == s) { print $i; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v s="$SUITE" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " s " ") && uris != "" && !disabled) {
                    split(uris, u, " "); print u[1]; found = 1
                }
                types = ""; suites = ""; uris = ""; disabled = 0
            }
            /^[ \t]*$/ { flush(); if (found) exit; next }
            /^#/ { next }
            { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^[ \t]+/, "")
              if (key == "types") types = $0
              else if (key == "suites") suites = $0
              else if (key == "uris") uris = $0
              else if (key == "enabled" && tolower($0) == "no") disabled = 1 }
            END { if (!found) flush() }' "$f"
    done
}

# debootstrap fetches with wget, which honours http(s)_proxy; apt may instead
# be configured through Acquire::http(s)::Proxy.  Export the latter if set.
apt_proxy_env() {
    local v
    for scheme in http https; do
        v=$(apt-config dump 2>/dev/null | sed -n "s/^Acquire::$scheme::Proxy \"\(.*\)\";$/\1/p" | head -n1)
        if [ -n "$v" ] && [ "$v" != DIRECT ] && [ "$v" != false ]; then
            if [ -z "$(printenv "${scheme}_proxy" || true)" ]; then
                export "${scheme}_proxy=$v"
                log "using apt's $scheme proxy for debootstrap: $v"
            fi
        fi
    done
}

stamp_text() {
    printf 'suite=%s\nvariant=%s\npackages=%s\nrecipe=%s\n' \
        "$SUITE" "$VARIANT" "$(printf '%s\n' "${PACKAGES[@]}" | sort | paste -sd, -)" "$RECIPE"
}

build_root() {
    local mirror new t0
    mirror=${HAWKEY_DEBIAN_MIRROR:-$(host_mirror | head -n1)}
    if [ -z "$mirror" ]; then
        mirror=http://deb.debian.org/debian
        log "no $SUITE entry in the host's apt sources; falling back to $mirror"
    fi
    apt_proxy_env
    new=$ROOT.new
    rm -rf --one-file-system "$new"
    log "debootstrap $SUITE from $mirror into $new (this takes about a minute)"
    t0=$(now)
    if ! timeout 1800 debootstrap --variant="$VARIANT" \
            --include="$(IFS=,; echo "${PACKAGES[*]}")" \
            "$SUITE" "$new" "$mirror" >"$CACHE_DIR/debootstrap-$SUITE.log" 2>&1; then
        tail -n 30 "$CACHE_DIR/debootstrap-$SUITE.log" >&2 || true
        die "debootstrap failed (full log: $CACHE_DIR/debootstrap-$SUITE.log)"
    fi
    log "debootstrap took $(( $(now) - t0 ))s"

    # Tweaks.  Hostname: none, so nspawn's machine name is used.  Drop the
    # downloaded .debs so each boot copies less.  Periodic timers off so
    # nothing wakes up during a test (apt-daily would try the network).
    rm -f "$new/etc/hostname"
    rm -f "$new"/var/cache/apt/archives/*.deb
    rm -rf "$new"/var/lib/apt/lists/*
    systemctl --root="$new" --quiet disable \
        apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
        e2scrub_all.timer fstrim.timer 2>/dev/null || true
    mkdir -p "$new/mnt/host"

    rm -rf --one-file-system "$ROOT" "$STAMP"
    mv "$new" "$ROOT"
    stamp_text >"$STAMP"
}

cmd_prepare() {
    need_root
    install_host_tools
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/.lock"
    flock -w 1800 9 || die "timed out waiting for the lock on $CACHE_DIR/.lock (another prepare?)"
    if [ -d "$ROOT" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_text)" ]; then
        :
    else
        if grep -qF "lowerdir=$ROOT," /proc/self/mountinfo; then
            die "cached root $ROOT needs a rebuild but running containers use it as overlay lower layer; stop them first"
        fi
        [ -d "$ROOT" ] && log "cached root $ROOT is stale or unstamped; rebuilding"
        build_root
    fi
    exec 9>&-
    echo "$ROOT"
}

# --- cgroups ---------------------------------------------------------------

booted_with_systemd() { [ -d /run/systemd/system ]; }

# Hierarchies nspawn keys its own cgroup on: the cgroup2 root on a unified
# host; name=systemd (and the hybrid cgroup2) on a legacy/hybrid host.
cgroup_hierarchies() {
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        echo /sys/fs/cgroup
    else
        [ -f /sys/fs/cgroup/systemd/cgroup.procs ] && echo /sys/fs/cgroup/systemd
        [ -f /sys/fs/cgroup/unified/cgroup.procs ] && echo /sys/fs/cgroup/unified
    fi
    return 0
}

# Remove cgroup directory trees bottom-up; they must be empty of processes.
remove_cgroups() {
    local d
    for d in "$@"; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ -d "$d" ] && log "warning: could not remove cgroup $d (processes left?)"
    done
    return 0
}

# --- boot / exec / stop ------------------------------------------------------

state_of() { echo "${1%/}.state"; }

# Load DIR's state file: NSPAWN_PID, LEADER, NAME, CGROUPS.
load_state() {
    local st
    st=$(state_of "$1")
    [ -f "$st" ] || die "no container state at $st (was '$prog boot NAME $1' run?)"
    # shellcheck disable=SC1090
    . "$st"
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# The container's PID 1 as the host sees it: the child of nspawn running
# systemd (before exec it is still called systemd-nspawn/(sd-...)).
find_leader() {
    local nspawn_pid=$1 c
    for c in $(pgrep -P "$nspawn_pid" || true); do
        case "$(cat "/proc/$c/comm" 2>/dev/null)" in
            systemd|init) echo "$c"; return 0 ;;
        esac
    done
    return 1
}

in_container() {
    # -a: every namespace of the leader, plus its root and cwd.  env -i: the
    # caller's environment (NOTIFY_SOCKET, LISTEN_FDS, cargo vars...) stays out.
    nsenter -t "$1" -a -- env -i PATH="$IN_PATH" HOME=/root LANG=C.UTF-8 \
        ${TERM:+TERM="$TERM"} "${@:2}"
}

cmd_boot() {
    [ $# -eq 2 ] || usage
    need_root
    local name=$1 dir=${2%/} st logf pidf nspawn_pid leader state t0 deadline cg h copy
    local -a cgroups=() args=() wrap=()
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]] || die "bad machine name '$name' (letters, digits, _ . -; max 64)"
    [ -n "$dir" ] && [ "$dir" != / ] || die "bad DIR '$2'"
    [[ $dir = /* ]] || dir=$PWD/$dir
    { [ -e "$dir" ] || [ -e "$dir.overlay" ]; } && die "$dir or $dir.overlay already exists; stop it ('$prog stop $dir') or pick a fresh DIR"
    [ -d "$ROOT" ] && [ -f "$STAMP" ] || die "no cached root at $ROOT; run '$prog prepare' first"
    command -v systemd-nspawn >/dev/null || die "systemd-nspawn missing; run '$prog prepare' first"
    st=$(state_of "$dir"); logf=$dir.log; pidf=$dir.pid
    mkdir -p "$(dirname "$dir")" || die "cannot create the parent directory of $dir"
    rm -f "$st" "$logf" "$pidf"

    copy=${HAWKEY_NSPAWN_COPY:-overlay}
    case "$copy" in overlay|cp) ;; *) die "HAWKEY_NSPAWN_COPY must be 'overlay' or 'cp', not '$copy'" ;; esac
    [[ $ROOT$dir = *[,:]* ]] && copy='cp'  # overlay option syntax

    t0=$(now)
    args=(--boot --register=no --keep-unit --settings=no --console=read-only
          --private-network -M "$name" -D "$dir")
    if [ -n "${HAWKEY_NSPAWN_HOSTDIR:-}" ]; then
        [ -d "$HAWKEY_NSPAWN_HOSTDIR" ] || die "HAWKEY_NSPAWN_HOSTDIR=$HAWKEY_NSPAWN_HOSTDIR is not a directory"
        args+=(--bind-ro="$(realpath "$HAWKEY_NSPAWN_HOSTDIR")":/mnt/host)
    fi

    # A pure cgroup v2 tree inside, as on a stock Debian 12 host, unless the
    # caller chose (nspawn's own default follows the host: hybrid here).
    if [ -z "${SYSTEMD_NSPAWN_UNIFIED_HIERARCHY+set}" ] &&
       { [ -f /sys/fs/cgroup/cgroup.controllers ] || [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; }; then
        export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
    fi

    if booted_with_systemd; then
        # What --keep-unit is documented for: run inside a unit of its own.
        wrap=(systemd-run --scope --quiet --collect --unit="hawkey-nspawn-$name"
              --property=Delegate=yes)
    else
        for h in $(cgroup_hierarchies); do
            cg=$h/$CG_PARENT/$name
            # A leftover from a crashed run goes if empty; a live one means
            # machine NAME is running already.
            [ -e "$cg" ] && { find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true; }
            [ -e "$cg" ] && die "cgroup $cg is in use: machine '$name' is running already (stop it or pick another NAME)"
            mkdir -p "$cg" || die "cannot create cgroup $cg"
            cgroups+=("$cg")
        done
        [ "${#cgroups[@]}" -gt 0 ] || die "no usable cgroup hierarchy under /sys/fs/cgroup"
    fi
    printf 'NAME=%q\nCGROUPS=(%s)\n' "$name" "$([ "${#cgroups[@]}" -eq 0 ] || printf '%q ' "${cgroups[@]}")" >"$st"

    fail_boot() {
        log "boot of $name failed: $*"
        log "--- last lines of $logf:"
        tail -n 40 "$logf" >&2 || true
        cmd_stop "$dir" >/dev/null 2>&1 || true
        exit 1
    }

    # The throwaway root: an overlay on the cached root (instant; writes go
    # to DIR.overlay/upper) or, if overlayfs is unavailable or
    # HAWKEY_NSPAWN_COPY=cp, a full cp -a (1-10 s here, storage-bound).
    mkdir -p "$dir"
    if [ "$copy" = overlay ]; then
        mkdir -p "$dir.overlay/upper" "$dir.overlay/work"
        if mount -t overlay "hawkey-$name" \
                -o "lowerdir=$ROOT,upperdir=$dir.overlay/upper,workdir=$dir.overlay/work" \
                "$dir" 2>"$logf"; then
            :
        else
            log "overlay mount on $dir failed ($(cat "$logf")); falling back to cp -a"
            rm -rf --one-file-system "$dir.overlay"
            copy='cp'
        fi
    fi
    if [ "$copy" = cp ]; then
        rmdir "$dir"
        cp -a "$ROOT" "$dir" || fail_boot "copying $ROOT to $dir failed"
    fi

    # setsid: own session, so the caller's terminal signals do not reach it.
    # bash -c moves itself into the cgroups and execs nspawn (same pid).
    setsid bash -c 'for cg in "${@:2:$1}"; do echo $$ >"$cg/cgroup.procs" || exit 97; done
                    shift $(( $1 + 1 )); exec "$@"' \
        hawkey-nspawn "${#cgroups[@]}" "${cgroups[@]}" "${wrap[@]}" systemd-nspawn "${args[@]}" \
        </dev/null >"$logf" 2>&1 &
    nspawn_pid=$!
    printf 'NSPAWN_PID=%s\n' "$nspawn_pid" >>"$st"

    deadline=$(( $(now) + BOOT_TIMEOUT ))
    leader=
    for _ in $(seq 1 $(( BOOT_TIMEOUT * 10 ))); do
        alive "$nspawn_pid" || fail_boot "systemd-nspawn exited early"
        leader=$(find_leader "$nspawn_pid") && break
        [ "$(now)" -lt "$deadline" ] || break
        sleep 0.1
    done
    [ -n "$leader" ] || fail_boot "no systemd child of nspawn (pid $nspawn_pid) within ${BOOT_TIMEOUT}s"
    printf 'LEADER=%s\n' "$leader" >>"$st"

    state=unknown
    for _ in $(seq 1 $(( BOOT_TIMEOUT * 5 ))); do
        alive "$leader" || fail_boot "container systemd (pid $leader) died"
        state=$(timeout 5 nsenter -t "$leader" -a systemctl is-system-running 2>/dev/null || true)
        case "$state" in
            running|degraded) break ;;
            maintenance|stopping) fail_boot "systemd reports '$state'" ;;
        esac
        [ "$(now)" -lt "$deadline" ] || fail_boot "not running/degraded after ${BOOT_TIMEOUT}s (last state: '${state:-none}')"
        sleep 0.2
    done
    case "$state" in running|degraded) ;; *) fail_boot "gave up waiting (last state: '$state')" ;; esac
    if [ "$state" = degraded ]; then
        log "warning: $name is degraded; failed units:"
        in_container "$leader" systemctl --failed --no-legend --no-pager >&2 || true
    fi
    echo "$leader" >"$pidf"
    log "$name up ($state) in $(( $(now) - t0 ))s; leader pid $leader, console log $logf"
    echo "$leader"
}

cmd_exec() {
    [ $# -ge 3 ] && [ "$2" = -- ] || usage
    local dir=${1%/} pid
    [ -f "$dir.pid" ] || die "no $dir.pid (container not booted?)"
    pid=$(cat "$dir.pid")
    [[ $pid =~ ^[0-9]+$ ]] || die "$dir.pid does not hold a pid"
    case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
        systemd|init) ;;
        *) die "pid $pid from $dir.pid is not the container's systemd any more (container gone?)" ;;
    esac
    shift 2
    in_container "$pid" "$@"
}

cmd_stop() {
    [ $# -eq 1 ] || usage
    need_root
    local dir=${1%/} st NAME='' NSPAWN_PID='' LEADER='' i f
    local -a CGROUPS=()
    [[ $dir = /* ]] || dir=$PWD/$dir
    st=$(state_of "$dir")
    if [ ! -f "$st" ]; then
        { [ -e "$dir" ] || [ -e "$dir.overlay" ]; } && die "$dir exists but has no state file $st; not removing it"
        log "nothing to stop at $dir"
        return 0
    fi
    load_state "$dir"
    [ -n "$LEADER" ] || LEADER=$(find_leader "${NSPAWN_PID:-0}" || true)

    if alive "$NSPAWN_PID"; then
        if [ -n "$LEADER" ] && alive "$LEADER"; then
            timeout 10 nsenter -t "$LEADER" -a systemctl poweroff --no-block >/dev/null 2>&1 \
                || kill -s RTMIN+4 "$LEADER" 2>/dev/null || true   # RTMIN+4: systemd's poweroff signal
        else
            kill -TERM "$NSPAWN_PID" 2>/dev/null || true
        fi
        for i in $(seq 1 $(( STOP_TIMEOUT * 10 ))); do
            alive "$NSPAWN_PID" || break
            sleep 0.1
        done
        if alive "$NSPAWN_PID"; then
            log "warning: $NAME did not power off in ${STOP_TIMEOUT}s; killing it"
            [ -n "$LEADER" ] && kill -KILL "$LEADER" 2>/dev/null || true  # takes the whole pid namespace
            kill -KILL "$NSPAWN_PID" 2>/dev/null || true
            for i in $(seq 1 50); do alive "$NSPAWN_PID" || break; sleep 0.1; done
            alive "$NSPAWN_PID" && die "systemd-nspawn pid $NSPAWN_PID survives SIGKILL"
        fi
    fi
    # nspawn gone but its container not (nspawn was SIGKILLed): killing the
    # container's PID 1 takes its whole pid namespace down.
    if [ -n "$LEADER" ] && alive "$LEADER" &&
       [[ $(cat "/proc/$LEADER/comm" 2>/dev/null) = @(systemd|init) ]]; then
        kill -KILL "$LEADER" 2>/dev/null || true
        for i in $(seq 1 50); do alive "$LEADER" || break; sleep 0.1; done
    fi
    if booted_with_systemd; then
        timeout 30 systemctl stop "hawkey-nspawn-$NAME.scope" >/dev/null 2>&1 || true
    fi
    # Anything still in our cgroups (there should be nothing) gets SIGKILL.
    for i in "${CGROUPS[@]}"; do
        [ -d "$i" ] || continue
        while IFS= read -r f; do
            xargs -r kill -KILL <"$f" 2>/dev/null || true
        done < <(find "$i" -name cgroup.procs)
    done
    sleep 0.1
    remove_cgroups "${CGROUPS[@]}"
    rmdir /sys/fs/cgroup/$CG_PARENT /sys/fs/cgroup/*/$CG_PARENT 2>/dev/null || true

    # The overlay (if any) is the only mount of ours; nspawn's own mounts
    # lived in its mount namespace.  Refuse to rm -rf through anything else.
    for i in $(seq 1 25); do
        mountpoint -q "$dir" || break
        umount "$dir" 2>/dev/null || sleep 0.2
    done
    mountpoint -q "$dir" && die "cannot unmount $dir (busy?); not removing it"
    if awk -v d="$dir/" 'index($5, d) == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
        die "something is mounted under $dir; not removing it"
    fi
    rm -rf --one-file-system "$dir" "$dir.overlay"
    rm -f "$dir.pid" "$dir.log" "$st"
}

case "${1:-}" in
    prepare) shift; [ $# -eq 0 ] || usage; cmd_prepare ;;
    boot) shift; cmd_boot "$@" ;;
    exec) shift; cmd_exec "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) usage ;;
esac
