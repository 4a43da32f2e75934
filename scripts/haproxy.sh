#!/usr/bin/env bash
# HAProxy for the multi-node test topology (tests/integration/test_topology.py) and for trying a
# load-balanced layout by hand.
#
#   scripts/haproxy.sh install        install Debian's haproxy package if it is missing (as root)
#   scripts/haproxy.sh check CONFIG   install if needed, then check CONFIG (haproxy -c)
#   scripts/haproxy.sh run CONFIG     install if needed, then run haproxy in the foreground on CONFIG
#
# `run` replaces this shell with haproxy (-db: no daemon, logs and errors on stderr), so the caller's
# process id is haproxy's and SIGTERM/SIGKILL reach it directly. It runs as the calling user; the
# configuration must bind only ports that user may bind (the tests use free ports on 127.0.0.1).
set -euo pipefail

die() {
    echo "haproxy.sh: $*" >&2
    exit 1
}

haproxy_bin() {
    command -v haproxy 2>/dev/null || { [[ -x /usr/sbin/haproxy ]] && echo /usr/sbin/haproxy; } || true
}

ensure_haproxy() {
    [[ -n "$(haproxy_bin)" ]] && return 0
    ((EUID == 0)) || die "haproxy is not installed; install it with: sudo apt-get install -y haproxy"
    echo "haproxy.sh: installing the Debian 'haproxy' package" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Debian's package starts its own service with /etc/haproxy/haproxy.cfg; tell it not to.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        created_policy=1
    fi
    local status=0
    if ! apt-get install -y -qq --no-install-recommends haproxy >&2; then
        apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends haproxy >&2 || status=$?
    fi
    ((created_policy)) && rm -f "$policy"
    ((status == 0)) || die "apt-get install haproxy failed"
    [[ -n "$(haproxy_bin)" ]] || die "haproxy is still missing after apt-get install"
}

command=${1:-}
case "$command" in
install)
    ensure_haproxy
    ;;
check | run)
    config=${2:-}
    [[ -n "$config" && -f "$config" ]] || die "usage: $0 $command CONFIG (an existing haproxy configuration file)"
    ensure_haproxy
    if [[ "$command" == check ]]; then
        exec "$(haproxy_bin)" -c -q -f "$config"
    fi
    exec "$(haproxy_bin)" -db -f "$config"
    ;;
*)
    die "usage: $0 install | check CONFIG | run CONFIG"
    ;;
esac
