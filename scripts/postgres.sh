#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite, on loopback only.
#
#   scripts/postgres.sh start    start (or reuse) the server, wait until it is ready, print the admin URL
#   scripts/postgres.sh stop     stop the server this checkout started (pg_ctl stop -m fast)
#   scripts/postgres.sh status   say whether it runs; exit 0 if it does, 3 if not
#   scripts/postgres.sh url      print the admin URL
#   scripts/postgres.sh destroy  stop it and delete its data directory
#
# Environment:
#   GLIMPSE_TEST_PG_PORT            TCP port on 127.0.0.1 (default 24329)
#   GLIMPSE_TEST_PG_START_TIMEOUT   seconds to wait for the server to accept connections (default 60)
#   GLIMPSE_TEST_PG_LINK            the symlink to the server's directory (default
#                                   <repo>/.test-services/postgres; empty: none, for a private server
#                                   a test starts beside the shared one)
#
# Where the data lives, and why not inside the repository:
#   initdb and postgres refuse to run as root, so as root the server runs as the `postgres` system
#   user, which must be able to traverse every parent directory of its data directory; and the
#   unix socket (kept inside the data directory) must have a path shorter than ~107 bytes. A
#   checkout can live anywhere (/root/..., a deep CI path), so rather than chmod-ing the user's
#   parent directories the server lives in
#       /tmp/glimpse-test-pg-<port>-<hash of the checkout path>/{data,server.log}
#   which every user can reach and which keeps the socket path short. The hash keeps one
#   checkout's server apart from another's, so `stop` only ever stops this checkout's server.
#   <repo>/.test-services/postgres is a symlink to that directory (for finding the log).
#
# Settings favour test speed over durability (fsync, synchronous_commit and full_page_writes off):
# never point this at data you care about.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
service=postgres
# shellcheck source=scripts/lib/service.sh
source "$repo_root/scripts/lib/service.sh"

port="${GLIMPSE_TEST_PG_PORT:-24329}"
check_port GLIMPSE_TEST_PG_PORT "$port"

server_root="/tmp/glimpse-test-pg-${port}-$(checkout_hash)"
pgdata="$server_root/data"
logfile="$server_root/server.log"
link="${GLIMPSE_TEST_PG_LINK-$repo_root/.test-services/postgres}"
role="glimpse"
admin_url="postgresql+psycopg://${role}@127.0.0.1:${port}/postgres"
start_timeout="${GLIMPSE_TEST_PG_START_TIMEOUT:-60}"

# --- locating the server binaries -------------------------------------------------------------

find_bindir() {
    local dir
    # Highest installed major version first.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

ensure_binaries() {
    if bindir="$(find_bindir)"; then
        return 0
    fi
    if ((EUID != 0)); then
        die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; install them with: sudo apt-get install -y postgresql"
    fi
    echo "postgres.sh: PostgreSQL server not installed; installing the Debian 'postgresql' package" >&2
    apt_install postgresql
    bindir="$(find_bindir)" || die "postgresql installed but no server binaries under /usr/lib/postgresql/*/bin"
}

# --- running as the server's own user ---------------------------------------------------------

# As root, the server runs as `postgres`; as anyone else, as that user.
if ((EUID == 0)); then
    server_user="postgres"
else
    server_user="$(id -un)"
fi

ensure_server_user() {
    ((EUID == 0)) || return 0
    if ! id -u "$server_user" >/dev/null 2>&1; then
        echo "postgres.sh: creating system user '$server_user'" >&2
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$server_user" || die "could not create system user '$server_user'"
    fi
}

as_server_user() {
    # cd / first: the caller's cwd may not be readable by the server user.
    if ((EUID == 0)); then
        (cd / && runuser -u "$server_user" -- "$@")
    else
        (cd / && "$@")
    fi
}

# --- state ------------------------------------------------------------------------------------

is_running() {
    # pg_ctl status is not enough: it counts a killed postmaster that nobody has reaped yet
    # (a zombie, common in containers) as running, so look at the process state.
    local pid
    pid="$(pidfile_pid "$pgdata/postmaster.pid")" || return 1
    pid_alive "$pid" postgres
}

remove_stale_pidfile() {
    # Only called when is_running is false: a postmaster.pid left by a crashed or killed server
    # (whose pid may still exist as a zombie, which would make postgres refuse to start).
    if [[ -f "$pgdata/postmaster.pid" ]]; then
        echo "postgres.sh: removing stale $pgdata/postmaster.pid" >&2
        rm -f "$pgdata/postmaster.pid" "$pgdata"/.s.PGSQL.*.lock
    fi
}

is_ready() {
    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$role" -d postgres -t 2 >/dev/null 2>&1
}

port_answers() {
    # Anything (ours or not) accepting PostgreSQL connections on the port?
    local rc=0
    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -t 2 >/dev/null 2>&1 || rc=$?
    # 0: accepting, 1: rejecting (e.g. starting up), 2: no response, 3: bad parameters
    ((rc == 0 || rc == 1))
}


# --- init -------------------------------------------------------------------------------------

write_config() {
    local conf="$pgdata/glimpse-test.conf"
    as_server_user tee "$conf" >/dev/null <<CONF
# Written by scripts/postgres.sh on every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$pgdata'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 128MB
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
CONF
    if ! grep -qxF "include 'glimpse-test.conf'" "$pgdata/postgresql.conf"; then
        printf "\ninclude 'glimpse-test.conf'\n" | as_server_user tee -a "$pgdata/postgresql.conf" >/dev/null
    fi
    as_server_user tee "$pgdata/pg_hba.conf" >/dev/null <<'HBA'
# Written by scripts/postgres.sh: a loopback-only test server, no passwords.
# TYPE  DATABASE  USER  ADDRESS         METHOD
local   all       all                   trust
host    all       all   127.0.0.1/32    trust
HBA
}

init_cluster() {
    mkdir -p "$server_root"
    chown "$server_user:" "$server_root"
    chmod 0700 "$server_root"
    if [[ -f "$pgdata/PG_VERSION" ]]; then
        local have want
        have="$(cat "$pgdata/PG_VERSION")"
        want="$(basename "$(dirname "$bindir")")"
        if [[ "$have" != "$want" ]]; then
            echo "postgres.sh: data directory is from PostgreSQL $have, server is $want; re-creating it" >&2
            rm -rf "$pgdata"
        fi
    elif [[ -e "$pgdata" ]]; then
        echo "postgres.sh: removing incomplete data directory $pgdata" >&2
        rm -rf "$pgdata"
    fi
    if [[ ! -f "$pgdata/PG_VERSION" ]]; then
        local out
        if ! out="$(as_server_user "$bindir/initdb" -D "$pgdata" --username="$role" \
            --auth=trust --encoding=UTF8 --no-locale --no-sync 2>&1)"; then
            echo "$out" >&2
            rm -rf "$pgdata"
            die "initdb failed"
        fi
    fi
    write_config
}

# --- commands ---------------------------------------------------------------------------------

cmd_start() {
    ensure_binaries
    ensure_server_user
    local deadline=$((SECONDS + start_timeout))
    if is_running; then
        # Ours, and up or still starting: fall through to the wait below.
        :
    elif port_answers; then
        die "port $port on 127.0.0.1 is already used by another PostgreSQL server (not the one in $pgdata); set GLIMPSE_TEST_PG_PORT to a free port"
    else
        init_cluster
        remove_stale_pidfile
        link_to "$server_root" "$link"
        local out
        if ! out="$(as_server_user "$bindir/pg_ctl" -D "$pgdata" -l "$logfile" -w -t "$start_timeout" \
            -s start 2>&1)"; then
            echo "$out" >&2
            show_log_tail "$logfile"
            die "the server in $pgdata did not start (log: $logfile)"
        fi
    fi
    wait_for "$deadline" 0.2 is_ready is_running \
        "the server in $pgdata is not running (log: $logfile)" \
        "the server in $pgdata is not accepting connections on 127.0.0.1:$port after ${start_timeout}s" \
        "$logfile"
    link_to "$server_root" "$link"
    echo "$admin_url"
}

cmd_stop() {
    bindir="$(find_bindir)" || {
        echo "postgres.sh: not running (PostgreSQL is not installed)" >&2
        return 0
    }
    if ! is_running; then
        remove_stale_pidfile
        echo "postgres.sh: not running ($pgdata)" >&2
        return 0
    fi
    if ! as_server_user "$bindir/pg_ctl" -D "$pgdata" -m fast -w -t 60 -s stop; then
        show_log_tail "$logfile"
        die "could not stop the server in $pgdata"
    fi
    echo "postgres.sh: stopped ($pgdata)" >&2
}

cmd_status() {
    if ! bindir="$(find_bindir)"; then
        echo "not installed"
        return 3
    fi
    if is_running; then
        if is_ready; then
            echo "running: $admin_url (data: $pgdata)"
        else
            echo "running but not accepting connections yet: $admin_url (data: $pgdata)"
        fi
        return 0
    fi
    echo "stopped (data: $pgdata)"
    return 3
}

cmd_destroy() {
    cmd_stop
    rm -rf "$server_root"
    if [[ -n "$link" && -L "$link" ]]; then
        rm -f "$link"
    fi
    echo "postgres.sh: removed $server_root" >&2
}

service_main "$admin_url" "$@"
