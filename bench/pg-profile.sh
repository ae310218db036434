#!/usr/bin/env bash
# Where PostgreSQL's time goes, per statement: one hookrelay build on a throwaway
# server (bench/pg.sh, fsync on) with pg_stat_statements loaded, under wrk -c32 for
# DURATION s (deliveries running beside it), then a BACKLOG posted with the sink
# stopped and drained by one replica. The statistics are reset before each phase.
#
#   bench/pg-profile.sh target/release/hookrelay /tmp/pgprof [DURATION] [BACKLOG]
#
# Writes into OUT: ingest.cpu / drain.cpu (load, req/s or deliveries/s, hookrelay's
# and the server's CPU per item), ingest.stmts / drain.stmts (pg_stat_statements:
# calls, execution and planning time, rows, buffers, WAL records and full-page
# images per statement), ingest.wal / drain.wal (pg_stat_wal, the checkpointer,
# pg_stat_user_tables with HOT updates, index scans and tuples read, commits).
# EXTRA_PG_OPTS adds server options (e.g. "-c checkpoint_timeout=30s" to see the
# full-page images after a checkpoint). Ports PORT_BASE (29380) .. + 9.
# Needs the release examples (bench_sink, bench_load) built.
set -euo pipefail
BIN=$1; OUT=$2; DUR=${3:-10}; BACKLOG=${4:-20000}
cd "$(dirname "$0")/.."
ROOT=$(pwd)
mkdir -p "$OUT"
PB=${PORT_BASE:-29380}; HR=$PB; SINK=$((PB + 2)); PGP=$((PB + 9))
EX=$ROOT/target/release/examples
PG_DIR=$(mktemp -d /tmp/hookrelay-pgprof.XXXXXX)
PIDS=()
SINK_PID=
cleanup() {
    "$ROOT/bench/pg.sh" stop "$PG_DIR"
    [[ -n "$SINK_PID" ]] && kill -CONT "$SINK_PID" 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM
PG_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all \
-c pg_stat_statements.track_planning=on -c track_io_timing=on -c track_wal_io_timing=on ${EXTRA_PG_OPTS:-}" \
    "$ROOT/bench/pg.sh" start "$PG_DIR" $PGP >"$OUT/server"
URL=$("$ROOT/bench/pg.sh" db "$(cat "$OUT/server")" prof)
psql -q "$URL" -c "CREATE EXTENSION pg_stat_statements"
"$EX/bench_sink" --listen "127.0.0.1:$SINK" 2>/dev/null &
SINK_PID=$!
PIDS+=("$SINK_PID")
"$EX/bench_load" --ready "http://127.0.0.1:$SINK/stats" --since-ns "$(date +%s%N)" --timeout 30 >/dev/null
BENCH_STORAGE_URL=$URL BENCH_PORT=$HR BENCH_SINK_PORT=$SINK BENCH_WORKERS=${WORKERS:-32} RUST_LOG=warn \
    "$BIN" serve -c bench/relay.yaml 2>"$OUT/hr.log" &
H=$!
PIDS+=("$H")
"$EX/bench_load" --ready "http://127.0.0.1:$HR/readyz" --since-ns "$(date +%s%N)" --timeout 30 >/dev/null
W="http://127.0.0.1:$HR/hooks/wrk?token=bench-token"
any_pending() { psql -Atq "$URL" -c "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE state = 'pending' LIMIT 1) p"; }
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hz=$(getconf CLK_TCK)
snap() {
    psql -q "$URL" -X -o "$OUT/$1.stmts" -c "SELECT calls, round(total_exec_time::numeric, 1) exec_ms,
        round(total_plan_time::numeric, 1) plan_ms, plans, rows, shared_blks_hit hit, shared_blks_read rd,
        shared_blks_dirtied dirt, shared_blks_written wr, wal_records, wal_fpi, wal_bytes,
        left(regexp_replace(query, '\s+', ' ', 'g'), 160) q
        FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 40"
    psql -q "$URL" -X -o "$OUT/$1.wal" -c "SELECT * FROM pg_stat_wal" -c "SELECT * FROM pg_stat_bgwriter" \
        -c "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, n_live_tup, n_dead_tup FROM pg_stat_user_tables ORDER BY relname" \
        -c "SELECT relname, indexrelname, idx_scan, idx_tup_read FROM pg_stat_user_indexes ORDER BY relname" \
        -c "SELECT xact_commit, xact_rollback, blks_hit, blks_read FROM pg_stat_database WHERE datname = 'prof'"
}
reset() {
    psql -q "$URL" -X -c "SELECT pg_stat_statements_reset()" -c "SELECT pg_stat_reset_shared('wal')" \
        -c "SELECT pg_stat_reset_shared('bgwriter')" -c "SELECT pg_stat_reset()" >/dev/null
    sleep 0.6 # the cumulative statistics are flushed at most every 0.5 s
}
per() { echo $(( ($2 - $1) * 1000000 / hz / $3 )); }

wrk -t2 -c32 -d1s -s bench/wrk-simplebackups.lua "$W" >/dev/null 2>&1
while [[ $(any_pending) != 0 ]]; do sleep 0.3; done
reset
h0=$(ticks $H); p0=$("$ROOT/bench/pg.sh" cpu "$PG_DIR")
wrk -t2 -c32 -d"${DUR}s" -s bench/wrk-simplebackups.lua "$W" >"$OUT/wrk.txt" 2>&1
h1=$(ticks $H); p1=$("$ROOT/bench/pg.sh" cpu "$PG_DIR")
load=$(cut -d' ' -f1 /proc/loadavg)
sleep 0.6
snap ingest
n=$(grep '^{' "$OUT/wrk.txt" | tail -1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["n202"])')
echo "load $load req_per_s $((n / DUR)) 202s $n hookrelay_us_per_req $(per "$h0" "$h1" "$n") server_us_per_req $(per "$p0" "$p1" "$n")" >"$OUT/ingest.cpu"
while [[ $(any_pending) != 0 ]]; do sleep 0.3; done

kill -STOP "$SINK_PID"
"$EX/bench_load" --url "$W" --connections 32 --count "$BACKLOG" --timeout 120 >/dev/null
sleep 1
reset
h0=$(ticks $H); p0=$("$ROOT/bench/pg.sh" cpu "$PG_DIR"); t0=$(date +%s%N)
kill -CONT "$SINK_PID"
while [[ $(any_pending) != 0 ]]; do sleep 0.25; done
t1=$(date +%s%N); h1=$(ticks $H); p1=$("$ROOT/bench/pg.sh" cpu "$PG_DIR")
load=$(cut -d' ' -f1 /proc/loadavg)
sleep 0.6
snap drain
echo "load $load deliveries_per_s $((BACKLOG * 1000000000 / (t1 - t0))) hookrelay_us_per_delivery $(per "$h0" "$h1" "$BACKLOG") server_us_per_delivery $(per "$p0" "$p1" "$BACKLOG")" >"$OUT/drain.cpu"
cat "$OUT/ingest.cpu" "$OUT/drain.cpu"
