#!/usr/bin/env bash
# A throwaway object store for the test suite: OpenStack Swift on loopback, one device and one
# replica, speaking both the native Swift API (tempauth) and S3 (the s3api middleware).
#
#   scripts/s3-server.sh start    start (or reuse) the servers, wait until they serve, print KEY=VALUE lines
#   scripts/s3-server.sh stop     stop the servers this checkout started
#   scripts/s3-server.sh status   say whether they run; exit 0 if they all do, 3 if not
#   scripts/s3-server.sh destroy  stop them and delete their data
#
# Printed by start (and kept in <state>/env):
#   S3_ENDPOINT_URL=http://127.0.0.1:<port>   S3, path-style buckets, region us-east-1
#   S3_ACCESS_KEY=test:tester  S3_SECRET_KEY=s3-test-secret-7c41e0
#   SWIFT_AUTH_URL=http://127.0.0.1:<port>/auth/v1.0  SWIFT_USER=test:tester  SWIFT_KEY=s3-test-secret-7c41e0
#   SWIFT_DIR=<state>/etc  SWIFT_MEMCACHE=127.0.0.1:<port>  SWIFT_PYTHON=<the Swift venv's python>
#       (for a second proxy on the same servers: tests/objectsupport.py's Keystone-validating one)
#
# Environment:
#   GLIMPSE_TEST_S3_PORT           proxy port on 127.0.0.1 (default: GLIMPSE_TEST_PG_PORT + 1000,
#                                  or 25329); the account/container/object/memcached ports are
#                                  picked free at each start
#   GLIMPSE_TEST_S3_START_TIMEOUT  seconds to wait for the servers (default 60)
#
# What it installs, only when missing: Swift and its dependencies, pinned in
# scripts/s3-server-requirements.txt, into a virtualenv made by the project's uv
# (.test-services/swift-venv), and Debian's memcached (tempauth keeps its tokens there), with
# apt-get as root. Everything else (configuration, rings, data, logs, pid files) lives in
# .test-services/s3-<port>/. The servers are tagged with GLIMPSE_S3_SERVER_DIR=<that directory>
# in their environment, so stop never touches a process it did not start.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
default_port=25329
if [[ "${GLIMPSE_TEST_PG_PORT:-}" =~ ^[0-9]+$ ]]; then
    default_port=$((GLIMPSE_TEST_PG_PORT + 1000))
fi
port="${GLIMPSE_TEST_S3_PORT:-$default_port}"
if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1024 || port > 65535)); then
    echo "s3-server.sh: GLIMPSE_TEST_S3_PORT must be a port number in 1024-65535, got '$port'" >&2
    exit 2
fi
start_timeout="${GLIMPSE_TEST_S3_START_TIMEOUT:-60}"
state="$repo_root/.test-services/s3-$port"
venv="$repo_root/.test-services/swift-venv"
requirements="$repo_root/scripts/s3-server-requirements.txt"
helper="$repo_root/scripts/s3_server_helper.py"
py=("$venv/bin/python" -I -W ignore "$helper")
uv="$repo_root/.tools/bin/uv"
user_name="tester"
account="test"
secret="s3-test-secret-7c41e0"
servers="memcached account container object proxy"

die() {
    echo "s3-server.sh: $*" >&2
    exit 1
}

# --- installing -------------------------------------------------------------------------------

ensure_memcached() {
    command -v memcached >/dev/null 2>&1 && return 0
    ((EUID == 0)) || die "memcached is not installed; install it with: sudo apt-get install -y memcached"
    echo "s3-server.sh: installing the Debian 'memcached' package" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends memcached >&2; then
        apt-get update -qq >&2 || die "apt-get update failed"
        apt-get install -y -qq --no-install-recommends memcached >&2 || die "apt-get install memcached failed"
    fi
    command -v memcached >/dev/null 2>&1 || die "memcached is still missing after apt-get install"
}

swift_importable() {
    [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -I -c 'import swift.common.middleware.s3api' 2>/dev/null
}

ensure_swift() {
    local stamp="$venv/.requirements"
    if swift_importable && cmp -s "$requirements" "$stamp"; then
        return 0
    fi
    [[ -x "$uv" ]] || die "$uv is missing; run 'make install' first"
    echo "s3-server.sh: installing Swift (scripts/s3-server-requirements.txt) into $venv" >&2
    if [[ ! -x "$venv/bin/python" ]]; then
        "$uv" venv -q --python "${GLIMPSE_TEST_S3_PYTHON:-3.11}" "$venv" >&2 || die "could not create $venv"
    fi
    "$uv" pip install -q --python "$venv/bin/python" -r "$requirements" >&2 \
        || die "could not install Swift into $venv"
    swift_importable || die "Swift is installed in $venv but does not import"
    cp "$requirements" "$stamp"
}

# --- processes --------------------------------------------------------------------------------

pid_of() {
    [[ -s "$state/run/$1.pid" ]] && cat "$state/run/$1.pid"
}

is_ours() {
    local pid="$1"
    [[ -n "$pid" && -r "/proc/$pid/environ" ]] || return 1
    tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF "GLIMPSE_S3_SERVER_DIR=$state"
}

alive() {
    local pid
    pid="$(pid_of "$1")" || return 1
    is_ours "$pid" || return 1
    [[ "$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" != "Z" ]]
}

all_alive() {
    local name
    for name in $servers; do
        alive "$name" || return 1
    done
}

stop_one() {
    local name="$1" pid
    pid="$(pid_of "$name")" || true
    if [[ -n "$pid" ]] && is_ours "$pid"; then
        # The Swift servers lead their own process group, which holds their forked workers.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            is_ours "$pid" || break
            sleep 0.1
        done
        if is_ours "$pid"; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$state/run/$name.pid"
}

show_logs() {
    local log
    for log in "$state"/log/*.log; do
        [[ -s "$log" ]] || continue
        echo "---- last lines of $log ----" >&2
        tail -n 15 "$log" >&2 || true
    done
}

# --- configuration ----------------------------------------------------------------------------

write_configs() {
    local aport="$1" cport="$2" oport="$3" mport="$4" etc="$state/etc"
    mkdir -p "$etc" "$state/srv/d1" "$state/run" "$state/log" "$state/cache"
    if [[ ! -s "$etc/swift.conf" ]]; then # kept across restarts: the data stays readable
        cat >"$etc/swift.conf" <<EOF
[swift-hash]
swift_hash_path_suffix = $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

[storage-policy:0]
name = standard
default = yes

[swift-constraints]
max_file_size = 5368709122
EOF
    fi
    local kind kport
    for kind in account container object; do
        case "$kind" in
            account) kport="$aport" ;;
            container) kport="$cport" ;;
            object) kport="$oport" ;;
        esac
        cat >"$etc/$kind-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $kport
workers = 0
user = $(id -un)
swift_dir = $etc
devices = $state/srv
mount_check = false
disable_fallocate = true
recon_cache_path = $state/cache
log_name = $kind-server

[pipeline:main]
pipeline = healthcheck $kind-server

[app:$kind-server]
use = egg:swift#$kind

[filter:healthcheck]
use = egg:swift#healthcheck
EOF
    done
    # The proxy's configuration comes from the helper, which also writes the one of the
    # Keystone-validating proxy of tests/objectsupport.py.
    "${py[@]}" proxy-config tempauth "$etc" "$port" "127.0.0.1:$mport" "$(id -un)" \
        "account=$account" "user=$user_name" "key=$secret" >"$etc/proxy-server.conf" \
        || die "could not write $etc/proxy-server.conf"
}

print_env() {
    local mport="$1"
    cat <<EOF
S3_ENDPOINT_URL=http://127.0.0.1:$port
S3_ACCESS_KEY=$account:$user_name
S3_SECRET_KEY=$secret
S3_REGION=us-east-1
SWIFT_AUTH_URL=http://127.0.0.1:$port/auth/v1.0
SWIFT_USER=$account:$user_name
SWIFT_KEY=$secret
SWIFT_DIR=$state/etc
SWIFT_MEMCACHE=127.0.0.1:$mport
SWIFT_PYTHON=$venv/bin/python
EOF
}

# --- commands ---------------------------------------------------------------------------------

cmd_start() {
    # Reused only when it was started from the same requirements and printed what is printed today.
    if all_alive && grep -q '^SWIFT_PYTHON=' "$state/env" 2>/dev/null \
        && cmp -s "$requirements" "$venv/.requirements"; then
        cat "$state/env"
        return 0
    fi
    cmd_stop 2>/dev/null # whatever is left of a half-started or half-stopped run
    ensure_memcached
    ensure_swift
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is in use by another program; set GLIMPSE_TEST_S3_PORT to a free port"
    fi
    local aport cport oport mport
    read -r aport cport oport mport < <("${py[@]}" ports 4)
    write_configs "$aport" "$cport" "$oport" "$mport"
    "${py[@]}" rings "$state/etc" "$aport" "$cport" "$oport" || die "could not build the Swift rings"

    export GLIMPSE_S3_SERVER_DIR="$state"
    setsid memcached -l 127.0.0.1 -p "$mport" -U 0 -m 64 -u "$(id -un)" \
        </dev/null >>"$state/log/memcached.log" 2>&1 &
    echo $! >"$state/run/memcached.pid"
    local name
    for name in account container object proxy; do
        setsid "${py[@]}" serve "$state/etc" "$state/etc/$name-server.conf" "$name-server" \
            </dev/null >>"$state/log/$name.log" 2>&1 &
        echo $! >"$state/run/$name.pid"
    done
    unset GLIMPSE_S3_SERVER_DIR

    if ! "${py[@]}" wait "$start_timeout" "$port" "$account:$user_name" "$secret" "$aport" "$cport" "$oport"; then
        show_logs
        cmd_stop
        die "the Swift servers in $state did not start"
    fi
    print_env "$mport" >"$state/env"
    cat "$state/env"
}

cmd_stop() {
    local name
    [[ -d "$state/run" ]] || return 0
    # Keystone-validating proxies a test run started on these servers (tests/objectsupport.py) and
    # left behind, for instance when pytest was killed.
    for name in "$state"/run/keystone-proxy-*.pid; do
        [[ -e "$name" ]] && stop_one "$(basename "$name" .pid)"
    done
    for name in proxy object container account memcached; do
        stop_one "$name"
    done
    echo "s3-server.sh: stopped ($state)" >&2
}

cmd_status() {
    local name pid rc=0
    for name in $servers; do
        if alive "$name"; then
            pid="$(pid_of "$name")"
            echo "$name: running (pid $pid)"
        else
            echo "$name: stopped"
            rc=3
        fi
    done
    return $rc
}

cmd_destroy() {
    cmd_stop
    rm -rf "$state"
    echo "s3-server.sh: removed $state" >&2
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    destroy) cmd_destroy ;;
    *)
        echo "usage: $0 start|stop|status|destroy" >&2
        exit 2
        ;;
esac
