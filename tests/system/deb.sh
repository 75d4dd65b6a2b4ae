# shellcheck shell=bash
# The .deb the system tests install, sourced by run.sh, releases.sh and
# container.sh:
#
#   deb_under_test WORK   sets DEB: $HAWKEY_DEB when set, else the package
#                   packaging/build-deb --prebuilt builds into WORK/deb
#                   (its log in WORK/build-deb.log). Returns 1, having said
#                   why (the log's tail), when it cannot.

deb_under_test() {
    local work=$1 root debs
    if [ -n "${HAWKEY_DEB:-}" ]; then
        DEB=$HAWKEY_DEB
    else
        root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
        echo "=== building the .deb (packaging/build-deb --prebuilt)"
        rm -f "$work"/deb/hawkey_*.deb
        "$root/packaging/build-deb" --prebuilt "$work/deb" >"$work/build-deb.log" 2>&1 ||
            { tail -30 "$work/build-deb.log"; echo "the .deb did not build"; return 1; }
        debs=("$work"/deb/hawkey_*.deb)
        DEB=${debs[-1]}
    fi
    [ -f "$DEB" ] || { echo "no .deb at '$DEB'"; return 1; }
}
