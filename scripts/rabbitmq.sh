#!/usr/bin/env bash
# A throwaway RabbitMQ broker for the notification tests, on loopback, with its own node and data.
#
#   scripts/rabbitmq.sh start    install if missing, start (or reuse), wait, print the transport URL
#   scripts/rabbitmq.sh stop     stop this checkout's broker (a no-op if it is not running)
#   scripts/rabbitmq.sh status   say whether it runs; exit 0 if it does, 3 if not
#   scripts/rabbitmq.sh url      print the transport URL
#   scripts/rabbitmq.sh destroy  stop it and delete its data
#
# Environment:
#   GLIMPSE_TEST_RABBITMQ_PORT           AMQP port on 127.0.0.1 (default: GLIMPSE_TEST_PG_PORT + 2000,
#                                        so 26329 next to PostgreSQL's default 24329); the Erlang
#                                        distribution port is the next one up
#   GLIMPSE_TEST_RABBITMQ_START_TIMEOUT  seconds to wait for the broker to answer (default 120)
#
# What it installs, only when missing: Debian's `rabbitmq-server` package, with apt-get as root. The
# package's own service is not started by the install (a temporary policy-rc.d says no), and the
# broker runs as the current user from the package's own scripts (not the wrappers in /usr/sbin,
# which switch to the `rabbitmq` user), with every file of its own under the state directory:
#
#   /tmp/glimpse-test-rabbitmq-<port>-<hash of the checkout path>/ (mnesia/, log/, rabbitmq.conf,
#   enabled_plugins, the Erlang cookie in home/), with a symlink at .test-services/rabbitmq.
#
# The node is named glimpse-<port>@localhost; epmd (Erlang's port mapper, shared by every Erlang node
# of the machine) is bound to 127.0.0.1 and stopped by `stop` when no node is left registered.
# The account is RabbitMQ's `guest` (password `guest`), which RabbitMQ only accepts from loopback.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
service=rabbitmq
# shellcheck source=scripts/lib/service.sh
source "$repo_root/scripts/lib/service.sh"

default_port=26329
if [[ "${GLIMPSE_TEST_PG_PORT:-}" =~ ^[0-9]+$ ]]; then
    default_port=$((GLIMPSE_TEST_PG_PORT + 2000))
fi
port="${GLIMPSE_TEST_RABBITMQ_PORT:-$default_port}"
check_port GLIMPSE_TEST_RABBITMQ_PORT "$port" 65534
dist_port=$((port + 1))

state="/tmp/glimpse-test-rabbitmq-${port}-$(checkout_hash)"
link="$repo_root/.test-services/rabbitmq"
node="glimpse-${port}@localhost"
url="rabbit://guest:guest@127.0.0.1:${port}/"
start_timeout="${GLIMPSE_TEST_RABBITMQ_START_TIMEOUT:-120}"
bindir=/usr/lib/rabbitmq/bin

# Everything the broker and rabbitmqctl read comes from here, never from /etc/rabbitmq.
broker_env() {
    export HOME="$state/home"
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_NODENAME="$node"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$port"
    export RABBITMQ_DIST_PORT="$dist_port"
    export RABBITMQ_MNESIA_BASE="$state/mnesia"
    export RABBITMQ_LOG_BASE="$state/log"
    export RABBITMQ_PID_FILE="$state/rabbitmq.pid"
    export RABBITMQ_CONFIG_FILE="$state/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$state/advanced.config"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$state/enabled_plugins"
    export RABBITMQ_CONF_ENV_FILE="$state/rabbitmq-env.conf"
}

find_binaries() {
    [[ -x "$bindir/rabbitmq-server" && -x "$bindir/rabbitmqctl" ]]
}

ensure_binaries() {
    find_binaries && return 0
    if ((EUID != 0)); then
        die "RabbitMQ not found; install it with: sudo apt-get install -y rabbitmq-server"
    fi
    echo "rabbitmq.sh: RabbitMQ not installed; installing the Debian 'rabbitmq-server' package" >&2
    apt_install rabbitmq-server
    find_binaries || die "rabbitmq-server installed but $bindir/rabbitmq-server or rabbitmqctl is missing"
}

server_pid() {
    pidfile_pid "$state/rabbitmq.pid"
}

is_running() {
    local pid
    pid="$(server_pid)" || return 1
    [[ -d "/proc/$pid" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$state/"
}

is_ready() {
    "$bindir/rabbitmqctl" -n "$node" -q status >/dev/null 2>&1 && port_taken "$port"
}

launched_alive() {
    [[ -z "$launched" ]] || kill -0 "$launched" 2>/dev/null
}

prepare() {
    mkdir -p "$state/home" "$state/mnesia" "$state/log"
    chmod 0700 "$state" "$state/home"
    if [[ ! -f "$state/home/.erlang.cookie" ]]; then
        head -c 32 /dev/urandom | sha256sum | cut -c1-40 >"$state/home/.erlang.cookie"
        chmod 0400 "$state/home/.erlang.cookie"
    fi
    cat >"$state/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$port
loopback_users.guest = true
log.console = false
log.file.level = info
disk_free_limit.absolute = 10MB
vm_memory_high_watermark.relative = 0.2
EOF
    echo '[].' >"$state/advanced.config"
    echo '[].' >"$state/enabled_plugins"
    : >"$state/rabbitmq-env.conf"
    link_to "$state" "$link"
}

cmd_start() {
    ensure_binaries
    broker_env
    local deadline=$((SECONDS + start_timeout))
    launched=""
    if is_running; then
        :
    elif port_taken "$port"; then
        die "port $port on 127.0.0.1 is already in use (not by the broker of $state); set GLIMPSE_TEST_RABBITMQ_PORT to a free port"
    else
        prepare
        rm -f "$state/rabbitmq.pid"
        # setsid + nohup: the broker outlives the pytest process that started it.
        setsid nohup "$bindir/rabbitmq-server" </dev/null >"$state/console.log" 2>&1 &
        launched=$!
    fi
    wait_for "$deadline" 0.5 is_ready launched_alive "the broker of $state exited while starting" \
        "the broker of $state did not answer on 127.0.0.1:$port after ${start_timeout}s" \
        "$state"/log/*.log "$state/console.log"
    echo "$url"
}

cmd_stop() {
    if ! find_binaries || [[ ! -d "$state" ]]; then
        echo "rabbitmq.sh: not running ($state)" >&2
        return 0
    fi
    broker_env
    if is_running; then
        local pid
        pid="$(server_pid)"
        "$bindir/rabbitmqctl" -n "$node" -q stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 60))
        while [[ -d "/proc/$pid" ]]; do
            if ((SECONDS >= deadline)); then
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
        echo "rabbitmq.sh: stopped ($state)" >&2
    else
        echo "rabbitmq.sh: not running ($state)" >&2
    fi
    # epmd is shared by every Erlang node of the machine: stop it only when none is registered.
    if command -v epmd >/dev/null && epmd -names 2>/dev/null | grep -q '^epmd: up' &&
        ! epmd -names 2>/dev/null | grep -q '^name '; then
        epmd -kill >/dev/null 2>&1 || true
    fi
}

cmd_status() {
    if ! find_binaries; then
        echo "not installed"
        return 3
    fi
    broker_env
    if is_running; then
        echo "running: $url (node $node, data: $state)"
        return 0
    fi
    echo "stopped (data: $state)"
    return 3
}

cmd_destroy() {
    cmd_stop
    rm -rf "$state"
    [[ -L "$link" ]] && rm -f "$link"
    echo "rabbitmq.sh: removed $state" >&2
}

service_main "$url" "$@"
