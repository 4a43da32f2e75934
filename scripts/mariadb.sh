#!/usr/bin/env bash
# A throwaway MariaDB server for the test suite, on loopback, with its own data directory.
#
#   scripts/mariadb.sh start    install if missing, initialise, start (or reuse), wait, print the admin URL
#   scripts/mariadb.sh stop     stop this checkout's server (a no-op if it is not running)
#   scripts/mariadb.sh status   say whether it runs; exit 0 if it does, 3 if not
#   scripts/mariadb.sh url      print the admin URL
#   scripts/mariadb.sh destroy  stop it and delete its data directory
#
# Environment:
#   GLIMPSE_TEST_MARIADB_PORT           TCP port on 127.0.0.1 (default: GLIMPSE_TEST_PG_PORT - 21000,
#                                       so 3329 next to PostgreSQL's default 24329)
#   GLIMPSE_TEST_MARIADB_START_TIMEOUT  seconds to wait for the server to answer (default 60)
#   GLIMPSE_TEST_MARIADB_LINK           the symlink to the server's directory (default
#                                       <repo>/.test-services/mariadb; empty: none, for a private
#                                       server a test starts beside the shared one)
#
# What it installs, only when missing: Debian's `mariadb-server` package, with apt-get as root. The
# package's own service is not started by the install (a temporary policy-rc.d says no), and its
# configuration files are not read (--no-defaults): every setting is on the command line below.
#
# Where the data lives: /tmp/glimpse-test-mariadb-<port>-<hash of the checkout path>/
# ({data/, server.log, mariadb.sock, mariadb.pid}), with a symlink at .test-services/mariadb. Outside
# the repository because the unix socket path must stay short; the checkout hash keeps one checkout's
# server apart from another's, so `stop` only ever stops this checkout's server. The server runs as
# the current user (as root too: `--user` names it).
#
# The admin account is `glimpse` (password `glimpse`, every privilege, from 127.0.0.1 only); the
# server's default character set is utf8mb4. Settings favour speed over durability (no log flush at
# commit, no doublewrite, no binary log): never point this at data you care about.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
service=mariadb
# shellcheck source=scripts/lib/service.sh
source "$repo_root/scripts/lib/service.sh"

default_port=3329
if [[ "${GLIMPSE_TEST_PG_PORT:-}" =~ ^[0-9]+$ ]]; then
    default_port=$((GLIMPSE_TEST_PG_PORT - 21000))
fi
port="${GLIMPSE_TEST_MARIADB_PORT:-$default_port}"
check_port GLIMPSE_TEST_MARIADB_PORT "$port"

server_root="/tmp/glimpse-test-mariadb-${port}-$(checkout_hash)"
datadir="$server_root/data"
logfile="$server_root/server.log"
socket="$server_root/mariadb.sock"
pidfile="$server_root/mariadb.pid"
link="${GLIMPSE_TEST_MARIADB_LINK-$repo_root/.test-services/mariadb}"
role="glimpse"
password="glimpse"
admin_url="mysql+pymysql://${role}:${password}@127.0.0.1:${port}/?charset=utf8mb4&ssl_disabled=true"
start_timeout="${GLIMPSE_TEST_MARIADB_START_TIMEOUT:-60}"
run_user="$(id -un)"

# --- locating and installing the binaries ------------------------------------------------------

find_binaries() {
    mariadbd="$(command -v mariadbd || true)"
    [[ -z "$mariadbd" && -x /usr/sbin/mariadbd ]] && mariadbd=/usr/sbin/mariadbd
    install_db="$(command -v mariadb-install-db || true)"
    client="$(command -v mariadb || true)"
    admin="$(command -v mariadb-admin || true)"
    [[ -n "$mariadbd" && -n "$install_db" && -n "$client" && -n "$admin" ]]
}

ensure_binaries() {
    find_binaries && return 0
    if ((EUID != 0)); then
        die "MariaDB server binaries not found; install them with: sudo apt-get install -y mariadb-server"
    fi
    echo "mariadb.sh: MariaDB not installed; installing the Debian 'mariadb-server' package" >&2
    # The package's own server (port 3306) is not started: the tests start theirs.
    apt_install mariadb-server
    find_binaries || die "mariadb-server installed but mariadbd, mariadb-install-db, mariadb or mariadb-admin is missing"
}

# --- state ------------------------------------------------------------------------------------

server_pid() {
    pidfile_pid "$pidfile"
}

is_running() {
    local pid
    pid="$(server_pid)" || return 1
    pid_alive "$pid" mariadbd
}

is_ready() {
    # A query, not `mariadb-admin ping`: ping succeeds even when the login is refused.
    "$client" --no-defaults --protocol=tcp -h 127.0.0.1 -P "$port" -u "$role" -p"$password" \
        --connect-timeout=2 -e 'SELECT 1' >/dev/null 2>&1
}

socket_ready() {
    "$admin" --no-defaults --socket="$socket" -u root --connect-timeout=2 ping >/dev/null 2>&1
}

launched_alive() {
    [[ -z "$launched_pid" ]] || pid_alive "$launched_pid"
}

# --- init -------------------------------------------------------------------------------------

init_datadir() {
    mkdir -p "$server_root"
    chmod 0700 "$server_root"
    if [[ -d "$datadir/mysql" && -f "$server_root/initialised" ]]; then
        return 0
    fi
    rm -rf "$datadir" "$server_root/initialised"
    mkdir -p "$datadir"
    local out
    if ! out="$("$install_db" --no-defaults --datadir="$datadir" --user="$run_user" \
        --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve 2>&1)"; then
        echo "$out" >&2
        rm -rf "$datadir"
        die "mariadb-install-db failed"
    fi
    touch "$server_root/initialised"
}

launch() {
    rm -f "$pidfile" "$socket"
    # setsid + nohup: the server outlives the pytest process that started it.
    setsid nohup "$mariadbd" --no-defaults \
        --user="$run_user" \
        --datadir="$datadir" \
        --socket="$socket" \
        --pid-file="$pidfile" \
        --log-error="$logfile" \
        --port="$port" \
        --bind-address=127.0.0.1 \
        --skip-name-resolve \
        --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_general_ci \
        --max-connections=500 \
        --innodb-buffer-pool-size=128M \
        --innodb-flush-log-at-trx-commit=0 \
        --innodb-doublewrite=0 \
        --innodb-flush-method=nosync \
        --skip-log-bin \
        --performance-schema=OFF \
        --lock-wait-timeout=60 \
        --innodb-lock-wait-timeout=30 \
        </dev/null >/dev/null 2>&1 &
    launched_pid=$!
}

create_role() {
    "$client" --no-defaults --socket="$socket" -u root <<SQL
CREATE USER IF NOT EXISTS '${role}'@'127.0.0.1' IDENTIFIED BY '${password}';
GRANT ALL PRIVILEGES ON *.* TO '${role}'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
}

# --- commands ---------------------------------------------------------------------------------

cmd_start() {
    ensure_binaries
    local deadline=$((SECONDS + start_timeout))
    launched_pid=""
    if is_running; then
        : # ours, up or still starting: wait below
    elif port_taken "$port"; then
        die "port $port on 127.0.0.1 is already in use (not by the server in $datadir); set GLIMPSE_TEST_MARIADB_PORT to a free port"
    else
        init_datadir
        link_to "$server_root" "$link"
        launch
    fi
    wait_for "$deadline" 0.2 socket_ready launched_alive \
        "the server in $datadir is not running (log: $logfile)" \
        "the server in $datadir did not answer on $socket after ${start_timeout}s" "$logfile"
    is_ready || create_role >&2 || die "could not create the '$role' account"
    wait_for "$deadline" 0.2 is_ready "" "" \
        "the server in $datadir is not accepting '$role' on 127.0.0.1:$port after ${start_timeout}s" "$logfile"
    link_to "$server_root" "$link"
    echo "$admin_url"
}

cmd_stop() {
    if ! find_binaries; then
        echo "mariadb.sh: not running (MariaDB is not installed)" >&2
        return 0
    fi
    local pid
    if ! is_running || ! pid="$(server_pid)"; then
        echo "mariadb.sh: not running ($datadir)" >&2
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 60))
    while is_running; do
        if ((SECONDS >= deadline)); then
            show_log_tail "$logfile"
            die "the server in $datadir (pid $pid) did not stop within 60s"
        fi
        sleep 0.2
    done
    echo "mariadb.sh: stopped ($datadir)" >&2
}

cmd_status() {
    if ! find_binaries; then
        echo "not installed"
        return 3
    fi
    if is_running; then
        if is_ready; then
            echo "running: $admin_url (data: $datadir)"
        else
            echo "running but not accepting connections yet: $admin_url (data: $datadir)"
        fi
        return 0
    fi
    echo "stopped (data: $datadir)"
    return 3
}

cmd_destroy() {
    cmd_stop
    rm -rf "$server_root"
    if [[ -n "$link" && -L "$link" ]]; then
        rm -f "$link"
    fi
    echo "mariadb.sh: removed $server_root" >&2
}

service_main "$admin_url" "$@"
