# Shared parts of the scripts that run a throwaway test service (postgres.sh, mariadb.sh,
# rabbitmq.sh). Sourced, never run: each script sets `service` (its name in messages) first, then
# defines its cmd_start, cmd_stop, cmd_status and cmd_destroy and ends with `service_main URL "$@"`.
#
# Nothing here starts anything by itself; every function works on the arguments it is given.

# die MESSAGE...: the message on stderr, prefixed with the script's name, and exit 1.
die() {
    echo "${service}.sh: $*" >&2
    exit 1
}

# check_port VARIABLE PORT [MAX]: exit 2 with a message unless PORT is a number in 1024..MAX (65535).
check_port() {
    local variable="$1" value="$2" max="${3:-65535}"
    if ! [[ "$value" =~ ^[0-9]+$ ]] || ((value < 1024 || value > max)); then
        echo "${service}.sh: $variable must be a port number in 1024-$max, got '$value'" >&2
        exit 2
    fi
}

# checkout_hash: 8 hex digits naming this checkout, so that one checkout's servers are kept apart
# from another's (and `stop` only ever stops this checkout's server).
checkout_hash() {
    printf '%s' "$repo_root" | sha256sum | cut -c1-8
}

# pidfile_pid FILE: print the pid on the first line of FILE; fails if there is none.
pidfile_pid() {
    local pid
    [[ -f "$1" ]] || return 1
    pid="$(head -n 1 "$1" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    echo "$pid"
}

# pid_alive PID [COMM]: the process exists and is neither a zombie nor dead (a killed server that
# nobody has reaped yet, common in containers, still has a pid); with COMM, its command name starts
# with COMM.
pid_alive() {
    local state
    state="$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]] || return 1
    [[ -z "${2:-}" || "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2"* ]]
}

# port_taken PORT: anything (ours or not) accepts TCP connections on 127.0.0.1:PORT.
port_taken() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# show_log_tail FILE...: the last 30 lines of each readable FILE on stderr.
show_log_tail() {
    local f
    for f in "$@"; do
        [[ -r "$f" ]] || continue
        echo "---- last lines of $f ----" >&2
        tail -n 30 "$f" >&2 || true
    done
}

# link_to TARGET LINK: LINK (if not empty) becomes a symlink to TARGET, unless something that is
# not a symlink is there already (left alone).
link_to() {
    local target="$1" link="$2"
    [[ -n "$link" ]] || return 0
    mkdir -p "$(dirname "$link")"
    if [[ -e "$link" && ! -L "$link" ]]; then
        return 0
    fi
    ln -sfnT "$target" "$link"
}

# apt_install PACKAGE...: install Debian packages, as root only (the caller checks). The packages'
# own services are not started by the install (a temporary policy-rc.d says no: the tests start
# theirs). Other test scripts may run apt-get at the same moment (services start in parallel under
# pytest-xdist): wait for apt's locks, and try again if one was still held.
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    local policy=/usr/sbin/policy-rc.d placed=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        placed=1
    fi
    local rc=1 try
    for try in 1 2 3; do
        rc=0
        {
            apt-get -o DPkg::Lock::Timeout=300 update -qq &&
                apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@"
        } >&2 || rc=$?
        ((rc == 0)) && break
        echo "${service}.sh: apt-get failed (exit $rc, try $try of 3)" >&2
        sleep 10
    done
    if ((placed)); then
        rm -f "$policy"
    fi
    ((rc == 0)) || die "apt-get install $* failed (exit $rc)"
}

# wait_for DEADLINE INTERVAL READY ALIVE DEAD LATE [LOG...]: run the function READY every INTERVAL
# seconds until it succeeds. Die with the message DEAD as soon as the function ALIVE (if not empty)
# fails, or with LATE once SECONDS reaches DEADLINE, showing the logs' last lines.
wait_for() {
    local deadline="$1" interval="$2" ready="$3" alive="$4" dead="$5" late="$6"
    shift 6
    until "$ready"; do
        if [[ -n "$alive" ]] && ! "$alive"; then
            show_log_tail "$@"
            die "$dead"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail "$@"
            die "$late"
        fi
        sleep "$interval"
    done
}

# service_main URL COMMAND: the command line every service script takes.
service_main() {
    local url="$1"
    shift
    case "${1:-}" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        url) echo "$url" ;;
        destroy) cmd_destroy ;;
        *)
            echo "usage: $0 start|stop|status|url|destroy" >&2
            exit 2
            ;;
    esac
}
