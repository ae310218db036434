#!/usr/bin/env bash
# A throwaway PostgreSQL for the benchmark, as the tests start theirs
# (tests/support/pg.rs): Debian's binaries, initdb + pg_ctl as the `postgres` user,
# a temporary folder, loopback only. Unlike the tests' server it keeps fsync on:
# the benchmark's "every 202 committed" means on disk.
#
#   bench/pg.sh start DIR PORT   # prints the URL
#   bench/pg.sh stop DIR
#   bench/pg.sh db URL NAME      # a fresh database on the server; prints its URL
#   bench/pg.sh cpu DIR          # CPU ticks of the server so far (postmaster and every
#                                # process it started; a backend's ticks are lost when it
#                                # exits, so read this while the clients are connected)
#
# PG_OPTS adds server options, e.g. PG_OPTS="-c shared_preload_libraries=pg_stat_statements".
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x "$bin/pg_ctl" ]] || { echo "PostgreSQL not found: apt-get install -y postgresql" >&2; exit 1; }
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case $1 in
start)
    dir=$2 port=$3
    mkdir -p "$dir"
    [[ $(id -u) == 0 ]] && chown postgres:postgres "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=128MB ${PG_OPTS:-}" \
        start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    as_pg "$bin/pg_ctl" -D "$2/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$2"
    ;;
cpu)
    pm=$(head -1 "$2/data/postmaster.pid")
    { echo "$pm"; pgrep -P "$pm"; } | while read -r p; do
        sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}'
    done | awk '{s += $1} END {print s + 0}'
    ;;
db)
    url=$2 name=$3
    psql -q "$url" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
    echo "${url%/*}/$name"
    ;;
esac
