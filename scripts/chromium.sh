#!/usr/bin/env bash
# Headless Chromium for the web view tests (tests/browsersupport.py) and for screenshots by hand.
#
#   scripts/chromium.sh install   install Debian's chromium package if it is missing (as root)
#   scripts/chromium.sh path      install if needed, then print the browser's executable
#
# The tests drive this browser with Playwright's Python package (a locked dev dependency), pointed at
# the executable `path` prints: Playwright's own browser downloads are never used.
set -euo pipefail

die() {
    echo "chromium.sh: $*" >&2
    exit 1
}

chromium_bin() {
    command -v chromium 2>/dev/null || { [[ -x /usr/bin/chromium ]] && echo /usr/bin/chromium; } || true
}

ensure_chromium() {
    [[ -n "$(chromium_bin)" ]] && return 0
    ((EUID == 0)) || die "chromium is not installed; install it with: sudo apt-get install -y chromium"
    echo "chromium.sh: installing the Debian 'chromium' package" >&2
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium fonts-dejavu-core)
    if ! "${apt[@]}" >&2; then
        apt-get -o DPkg::Lock::Timeout=300 update -qq >&2 || die "apt-get update failed"
        "${apt[@]}" >&2 || die "apt-get install chromium failed"
    fi
    [[ -n "$(chromium_bin)" ]] || die "chromium is still missing after apt-get install"
}

case "${1:-}" in
install)
    ensure_chromium
    ;;
path)
    ensure_chromium
    chromium_bin
    ;;
*)
    die "usage: $0 install | path"
    ;;
esac
