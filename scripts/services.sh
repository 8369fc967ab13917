#!/usr/bin/env bash
# Start or stop the real PostgreSQL and Redis servers the tests use, on loopback only, with their
# state under .run/ (thrown away by `stop`). Prints the environment the tests read.
#   scripts/services.sh start   -> writes .run/services.env
#   scripts/services.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="$PWD/.run"
PG_PORT="${HUB_TEST_PG_PORT:-55432}"
REDIS_PORT="${HUB_TEST_REDIS_PORT:-56379}"

pg_bin() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    [[ -n "$dir" ]] || { echo "services: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
    echo "$dir"
}

as_postgres() {
    # initdb and postgres refuse to run as root.
    if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    stop >/dev/null 2>&1 || true
    mkdir -p "$RUN"
    local bin; bin="$(pg_bin)"
    mkdir -p "$RUN/pg" "$RUN/pgsock"
    [[ "$(id -u)" == 0 ]] && chown -R postgres:postgres "$RUN/pg" "$RUN/pgsock" && chmod 755 "$RUN"
    as_postgres "$bin/initdb" -D "$RUN/pg/data" -U postgres -A trust --no-sync -E UTF8 >"$RUN/pg-initdb.log"
    as_postgres "$bin/pg_ctl" -D "$RUN/pg/data" -l "$RUN/pg/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $RUN/pgsock -c fsync=off -c max_connections=200" >/dev/null
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes \
        --dir "$RUN" --pidfile "$RUN/redis.pid" --logfile "$RUN/redis.log"
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$REDIS_PORT" ping >/dev/null
    cat >"$RUN/services.env" <<ENV
export HUB_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres
export HUB_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
ENV
    echo "services: PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT"
}

stop() {
    local bin
    if [[ -f "$RUN/pg/data/postmaster.pid" ]]; then
        bin="$(pg_bin)"
        as_postgres "$bin/pg_ctl" -D "$RUN/pg/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [[ -f "$RUN/redis.pid" ]]; then
        kill "$(cat "$RUN/redis.pid")" 2>/dev/null || true
    fi
    rm -rf "$RUN"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
