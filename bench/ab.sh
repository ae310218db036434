#!/usr/bin/env bash
# A/B of two hookrelay binaries in one run, alternating, each on a fresh SQLite
# database (or PostgreSQL with BENCH_STORAGE_URL_FN, see below):
#
#   bench/ab.sh /tmp/hookrelay-before target/release/hookrelay
#   ROUNDS=3 DURATION=5 BACKLOG=50000 bench/ab.sh A B
#
# Per round and binary: wrk -t2 -c$CONNS -d${DURATION}s (the wrk source, as in
# run.sh) -> accepted req/s and 202s vs rows committed; then the sink is stopped
# (SIGSTOP), BACKLOG events are posted, the sink continues and the drain rate is
# taken from the sink's count. Printed per round and binary: the load average, wrk's
# req/s, hookrelay's CPU per accepted request (deliveries running alongside
# included), 202s and rows, drain rate, CPU and context switches per delivery.
# OPEN_RATE (0 = off; e.g. 5000) adds, before the backlog, an open loop of the own
# generator at that rate for OPEN_DURATION (30) s to the signed source, as in run.sh:
# the queue depth at its end and the sink's send -> arrival p50 / p99 (after it drains).
# PG=1 runs both on PostgreSQL instead: a throwaway server (bench/pg.sh, fsync on) on
# PORT_BASE + 9, a fresh database per round and binary, and two more columns: the
# server's CPU (every backend) per accepted request and per delivery, beside hookrelay's.
# Needs the release examples (bench_sink, bench_load) built.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
A=$1
B=$2
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
BACKLOG=${BACKLOG:-50000}
WORKERS=${WORKERS:-32}
OPEN_RATE=${OPEN_RATE:-0}
OPEN_DURATION=${OPEN_DURATION:-30}
PG=${PG:-0}
# How often the queue depth is read while waiting for a drain. On PostgreSQL each
# read counts the pending rows (~10 ms of the server's CPU with 30,000 queued), so
# it is read less often there: the server's CPU per delivery is then the drain's.
if [[ "$PG" == 1 ]]; then POLL=${POLL:-0.25}; else POLL=${POLL:-0.05}; fi
PORT_BASE=${PORT_BASE:-28180}
HR_PORT=$PORT_BASE
SINK_PORT=$((PORT_BASE + 2))
EX=$ROOT/target/release/examples
TMP=$(mktemp -d /tmp/hookrelay-ab.XXXXXX)
PIDS=()
SINK_PID=
PG_DIR=
cleanup() {
    [[ -n "$PG_DIR" ]] && "$ROOT/bench/pg.sh" stop "$PG_DIR"
    [[ -n "$SINK_PID" ]] && kill -CONT "$SINK_PID" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
now_ms() { echo $(($(date +%s%N) / 1000000)); }
metric() {
    curl -s "http://127.0.0.1:$HR_PORT/metrics" | awk -v n="$1{" -v l="$2" \
        'index($0, n) == 1 && index($0, l) > 0 {s += $NF} END {print s + 0}' || echo 0
}
depth() { metric hookrelay_queue_depth 'destination="sink"'; }
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
ctx() { # voluntary + involuntary context switches of every thread of $1
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2} END {print v, n}'
}
sink_count() { curl -s "http://127.0.0.1:$SINK_PORT/stats" | grep -o '"count": *[0-9]*' | grep -o '[0-9]*$' || echo 0; }
# The timed drain ends when the sink has received the backlog: reading the queue
# depth counts the pending rows on every scrape, CPU the drain would be charged.
wait_sink() {
    local t0 limit=$2
    t0=$(now_ms)
    while (($(sink_count) < $1)); do
        (($(now_ms) - t0 > limit * 1000)) && break
        sleep 0.05
    done
    echo $(($(now_ms) - t0))
}
wait_drain() {
    local t0 d limit=$1
    t0=$(now_ms)
    while :; do
        d=$(depth)
        [[ "$d" == 0 ]] && break
        (($(now_ms) - t0 > limit * 1000)) && break
        sleep "$POLL"
    done
    echo $(($(now_ms) - t0))
}

pg_ticks() { if [[ -n "$PG_DIR" ]]; then "$ROOT/bench/pg.sh" cpu "$PG_DIR"; else echo 0; fi; }
if [[ "$PG" == 1 ]]; then
    # Its own folder: the postgres user cannot enter $TMP (mode 700).
    PG_DIR=$(mktemp -d /tmp/hookrelay-ab-pg.XXXXXX)
    PG_SERVER=$("$ROOT/bench/pg.sh" start "$PG_DIR" $((PORT_BASE + 9)))
    pg_db() { "$ROOT/bench/pg.sh" db "$PG_SERVER" "ab_${1,,}"; }
    BENCH_STORAGE_URL_FN=pg_db
fi

"$EX/bench_sink" --listen "127.0.0.1:$SINK_PORT" 2>/dev/null &
SINK_PID=$!
PIDS+=("$SINK_PID")
"$EX/bench_load" --ready "http://127.0.0.1:$SINK_PORT/stats" --since-ns "$(date +%s%N)" --timeout 30 >/dev/null

export BENCH_PORT=$HR_PORT BENCH_SINK_PORT=$SINK_PORT BENCH_WORKERS=$WORKERS RUST_LOG=${RUST_LOG:-warn}
URL="http://127.0.0.1:$HR_PORT/hooks/wrk?token=bench-token"
echo "round bin load1 wrk_req_s cpu_us_per_req 202s rows drain_per_s cpu_us_per_delivery vol_ctx_per_delivery invol_ctx_per_delivery" \
    "$( [[ "$PG" == 1 ]] && echo pg_cpu_us_per_req pg_cpu_us_per_delivery)" \
    "$( ((OPEN_RATE > 0)) && echo open_load1 open_accepted open_depth_end open_p50_ms open_p99_ms)"
for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then order="A B"; else order="B A"; fi
    for who in $order; do
        if [[ $who == A ]]; then bin=$A; else bin=$B; fi
        db="$TMP/$r-$who.db"
        if [[ -n "${BENCH_STORAGE_URL_FN:-}" ]]; then
            BENCH_STORAGE_URL=$($BENCH_STORAGE_URL_FN "$r$who")
        else
            BENCH_STORAGE_URL="sqlite://$db"
        fi
        export BENCH_STORAGE_URL
        count_rows() {
            if [[ $BENCH_STORAGE_URL == sqlite://* ]]; then
                sqlite3 -readonly "${BENCH_STORAGE_URL#sqlite://}" "SELECT COUNT(*) FROM events WHERE source = 'wrk'"
            else
                psql -Atq "$BENCH_STORAGE_URL" -c "SELECT COUNT(*) FROM events WHERE source = 'wrk'"
            fi
        }
        "$bin" serve -c bench/relay.yaml 2>"$TMP/$r-$who.log" &
        hr=$!
        PIDS+=("$hr")
        "$EX/bench_load" --ready "http://127.0.0.1:$HR_PORT/readyz" --since-ns "$(date +%s%N)" --timeout 30 >/dev/null
        wrk -t2 -c"$CONNS" -d1s -s bench/wrk-simplebackups.lua "$URL" >/dev/null 2>&1
        wait_drain 60 >/dev/null
        rows0=$(count_rows)
        w0=$(ticks "$hr")
        p0=$(pg_ticks)
        wrk -t2 -c"$CONNS" -d"${DURATION}s" -s bench/wrk-simplebackups.lua "$URL" >"$TMP/wrk.txt" 2>&1
        wrk_json=$(grep '^{' "$TMP/wrk.txt" | tail -1)
        w1=$(ticks "$hr")
        p1=$(pg_ticks)
        wait_drain 120 >/dev/null
        rows=$(($(count_rows) - rows0))
        open=""
        if ((OPEN_RATE > 0)); then
            curl -s -X POST "http://127.0.0.1:$SINK_PORT/reset" >/dev/null
            "$EX/bench_load" --url "http://127.0.0.1:$HR_PORT/hooks/simplebackups" --secret bench-secret \
                --connections 64 --rate "$OPEN_RATE" --duration "$OPEN_DURATION" >"$TMP/open.json"
            od=$(depth)
            ol=$(cut -d' ' -f1 /proc/loadavg)
            wait_drain 300 >/dev/null
            sleep 0.5
            open="$ol $(python3 -c 'import json,sys; o=json.load(open(sys.argv[1])); s=json.load(open(sys.argv[2])); print(o.get("ok"), sys.argv[3], s.get("p50_ms"), s.get("p99_ms"))' \
                "$TMP/open.json" <(curl -s "http://127.0.0.1:$SINK_PORT/stats") "$od")"
        fi
        curl -s -X POST "http://127.0.0.1:$SINK_PORT/reset" >/dev/null
        kill -STOP "$SINK_PID"
        "$EX/bench_load" --url "$URL" --connections 32 --count "$BACKLOG" --timeout 120 >/dev/null
        sleep 1
        t0=$(ticks "$hr")
        q0=$(pg_ticks)
        read -r v0 n0 < <(ctx "$hr")
        kill -CONT "$SINK_PID"
        ms=$(wait_sink "$BACKLOG" 600)
        t1=$(ticks "$hr")
        q1=$(pg_ticks)
        read -r v1 n1 < <(ctx "$hr")
        wait_drain 60 >/dev/null
        python3 - "$r" "$who" "$wrk_json" "$rows" "$BACKLOG" "$ms" "$t0" "$t1" "$v0" "$v1" "$n0" "$n1" "$(cut -d' ' -f1 /proc/loadavg)" "$w0" "$w1" "$open" "$PG" "$p0" "$p1" "$q0" "$q1" <<'EOF'
import json, sys, os
r, who, wj, rows, backlog, ms, t0, t1, v0, v1, n0, n1, load, w0, w1, open_, pg, p0, p1, q0, q1 = sys.argv[1:]
w = json.loads(wj)
hz = os.sysconf("SC_CLK_TCK")
n = int(backlog)
print(r, who, load, round(w["ok_per_s"]),
      round((int(w1) - int(w0)) / hz * 1e6 / max(1, w["n202"]), 1), w["n202"] + w["other_2xx"], rows,
      round(n / (int(ms) / 1000)), round((int(t1) - int(t0)) / hz * 1e6 / n, 1),
      round((int(v1) - int(v0)) / n, 2), round((int(n1) - int(n0)) / n, 2), open_,
      *([round((int(p1) - int(p0)) / hz * 1e6 / max(1, w["n202"]), 1),
         round((int(q1) - int(q0)) / hz * 1e6 / n, 1)] if pg == "1" else []))
EOF
        kill "$hr"
        wait "$hr" 2>/dev/null || true
    done
done
