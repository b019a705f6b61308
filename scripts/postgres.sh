#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (and for trying OncoVigil on PostgreSQL by hand).
#
#   scripts/postgres.sh install              install Debian's `postgresql` when no server binaries are found
#   scripts/postgres.sh start DIR [PORT]     initdb a cluster in DIR (created if missing), start it on
#                                            127.0.0.1:PORT (default: a free port), create database
#                                            "oncovigil" and print its SQLAlchemy URL on stdout
#   scripts/postgres.sh stop DIR             stop the server of DIR (fast shutdown); DIR is left for the caller
#   scripts/postgres.sh url DIR              print the URL of the running server of DIR
#
# The cluster trusts loopback connections without a password and runs with fsync off: for tests only.
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (Debian's package
# creates it; it is created here when missing) and DIR is handed to that user.
set -euo pipefail

DB_NAME=oncovigil
DB_USER=oncovigil

die() { echo "postgres.sh: $*" >&2; exit 1; }

bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then echo "$dir"; return 0; fi
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
    return 1
}

install_server() {
    if bindir >/dev/null; then return 0; fi
    [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed; run as root or: sudo apt-get install -y postgresql"
    echo "postgres.sh: installing postgresql from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    bindir >/dev/null || die "apt-get installed postgresql but no initdb was found under /usr/lib/postgresql"
}

# Runs a server binary as the unprivileged owner of the cluster.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

url_of() {
    local dir=$1 port
    port=$(cat "$dir/port" 2>/dev/null) || die "$dir has no running server (no $dir/port)"
    echo "postgresql+psycopg://$DB_USER@127.0.0.1:$port/$DB_NAME"
}

start() {
    local dir=${1:?usage: postgres.sh start DIR [PORT]} port=${2:-}
    install_server
    local bin
    bin=$(bindir)
    if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [[ -n "$port" ]] || port=$(free_port)
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres "$dir"
        runuser -u postgres -- test -w "$dir" || die "user postgres cannot reach $dir (a parent directory is private); use a directory under /tmp"
    fi
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        as_owner "$bin/initdb" -D "$dir/data" -U "$DB_USER" --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
            >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed (log above)"; }
    fi
    # The socket lives in DIR so that no system directory (/var/run/postgresql) has to be writable.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off" \
        -o "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100" \
        start >/dev/null || { tail -n 30 "$dir/server.log" >&2; die "the server did not start (log above)"; }
    echo "$port" >"$dir/port"
    if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres -tAq \
            -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
        as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$DB_USER" "$DB_NAME"
    fi
    url_of "$dir"
}

stop() {
    local dir=${1:?usage: postgres.sh stop DIR}
    local bin
    bin=$(bindir) || die "PostgreSQL is not installed"
    [[ -f "$dir/data/postmaster.pid" ]] || { rm -f "$dir/port"; return 0; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    rm -f "$dir/port"
}

case "${1:-}" in
    install) install_server ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    url) shift; url_of "${1:?usage: postgres.sh url DIR}" ;;
    *) die "usage: postgres.sh install | start DIR [PORT] | stop DIR | url DIR" ;;
esac
