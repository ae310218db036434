#!/usr/bin/env bash
# hookrelay benchmark: one command, loopback only.
#
#   bench/run.sh                     # full run, ~3-5 minutes on 2 cores
#   DURATION=5 BACKLOG=20000 bench/run.sh   # quicker
#
# Builds the release binary and the bench examples, then measures, in one run:
#   1. the ceiling: a bare actix-web server (examples/bench_baseline.rs) loaded
#      with the same generators and payload: wrk (Debian's package, -t2 -c32,
#      bench/wrk-simplebackups.lua: a new SimpleBackups id per request, ?token=
#      auth) and the own generator (examples/bench_load.rs, signed, 64 conns);
#      and the durable ceiling under wrk (the same server flushing each body to
#      disk before its 202: the bound of any server with a durable 202);
#   2. hookrelay (SQLite, SimpleBackups sources, webhook destination to
#      examples/bench_sink.rs): start-up to ready, idle RSS, closed-loop accepted
#      req/s under both generators with every 202 checked against the rows
#      committed, ingest latency, delivered/s, peak RSS;
#   3. end-to-end latency (generator send -> sink arrival) at a fixed rate, and an
#      open loop at OPEN_RATE for OPEN_DURATION (backlog left at its end);
#   4. RSS with BACKLOG deliveries queued while the sink is stopped (SIGSTOP), then
#      the drain rate after it continues (SIGCONT), timed until the sink has
#      received them all, with CPU and wake-ups per delivery;
#   6. the same on PostgreSQL (PG=1, the default when Debian's server binaries are
#      installed; bench/pg.sh starts a throwaway server with fsync on): accepted
#      req/s under wrk, drain of BACKLOG with one and with three replicas, and no
#      delivery sent twice.
# Every figure is also given as a ratio to the ceiling measured in the same run,
# because the machine is shared and absolute numbers are noisy; the 1-minute load
# average is noted with each phase.
#
# Environment (defaults):
#   DURATION=10        closed-loop seconds per measurement (ceiling and hookrelay)
#   CONNS=64           closed-loop concurrent connections
#   RATE=500           fixed-rate phase, requests per second
#   RATE_DURATION=10   fixed-rate phase, seconds
#   BACKLOG=100000     events posted while the sink is stopped
#   WORKERS=32         delivery.workers (32 is hookrelay's default)
#   PORT_BASE=28080    hookrelay on PORT_BASE, ceiling +1, sink +2, durable +3 (below the
#                      ephemeral range: a connection to a port in that range with
#                      nothing listening can connect to itself and hold the port)
#   HOOKRELAY_BIN      use this binary instead of target/release/hookrelay
#   SKIP_BUILD=1       do not run cargo
#   PERF=1             record `perf record -g` of hookrelay during the closed-loop run
#   ROUNDS=3           extra alternating ceiling/hookrelay closed-loop pairs at the
#                      end (ROUND_DURATION=5 s each) for the spread of the ratio
#   OPEN_RATE=5000     open-loop phase, requests per second
#   OPEN_DURATION=30   open-loop phase, seconds
#   WRK_CONNS=32       wrk's connections
#   PG=1               PostgreSQL phase (0 skips it)
#   KEEP_TMP=1         keep the temporary folder (database, logs)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
RATE=${RATE:-500}
RATE_DURATION=${RATE_DURATION:-10}
BACKLOG=${BACKLOG:-100000}
WORKERS=${WORKERS:-32}
ROUNDS=${ROUNDS:-3}
ROUND_DURATION=${ROUND_DURATION:-5}
OPEN_RATE=${OPEN_RATE:-5000}
OPEN_DURATION=${OPEN_DURATION:-30}
WRK_CONNS=${WRK_CONNS:-32}
if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then PG=${PG:-1}; else PG=0; fi
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
PORT_BASE=${PORT_BASE:-28080}
HR_PORT=$PORT_BASE
BASE_PORT=$((PORT_BASE + 1))
SINK_PORT=$((PORT_BASE + 2))
DURABLE_PORT=$((PORT_BASE + 3))
SECRET=bench-secret
ADMIN=bench-admin-token

log() { echo "[bench $(date +%T)] $*" >&2; }

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building (release): hookrelay, bench_baseline, bench_sink, bench_load"
    cargo build --release --bins --example bench_baseline --example bench_sink --example bench_load >&2
fi
# What the build (or anything before) left unwritten goes to disk now, not during
# the run: hookrelay's fsyncs would otherwise wait behind gigabytes of someone
# else's dirty pages, which measures the disk queue, not hookrelay.
log "sync (dirty pages written back before measuring)"
sync
BIN=${HOOKRELAY_BIN:-$ROOT/target/release/hookrelay}
EX=$ROOT/target/release/examples

TMP=$(mktemp -d /tmp/hookrelay-bench.XXXXXX)
PIDS=()
SINK_PID=
cleanup() {
    local rc=$?
    [[ -n "$SINK_PID" ]] && kill -CONT "$SINK_PID" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -n "${PG_DIR:-}" ]]; then "$ROOT/bench/pg.sh" stop "$PG_DIR" || true; fi
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit $rc
}
trap cleanup EXIT INT TERM

now_ns() { date +%s%N; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# json FILE EXPR: a Python expression over the parsed JSON `j`.
json() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
calc() { python3 -c "import math; print($1)"; }
# CPU ticks (user + system) per thread name of process $1, e.g. "hookrelay-sqlit 1234".
thread_ticks() {
    for t in /proc/"$1"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')"
    done 2>/dev/null | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}'
}
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# Voluntary and involuntary context switches of every thread of process $1.
ctx_switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^voluntary_ctxt/ {v += $2} /^nonvoluntary_ctxt/ {n += $2} END {print v + 0, n + 0}'
}
loadavg() { cut -d' ' -f1 /proc/loadavg; }
# wrk_run URL SECONDS OUT: wrk -t2 -c$WRK_CONNS with the Lua script; its JSON line in OUT.
wrk_run() {
    wrk -t2 -c"$WRK_CONNS" -d"$2s" -s "$ROOT/bench/wrk-simplebackups.lua" "$1" | grep '^{' | tail -1 >"$3"
}
rss_mb() { awk -v f="$2:" '$1==f {printf "%.1f", $2/1024}' "/proc/$1/status"; }
metric() { # metric NAME_PREFIX LABEL_FILTER -> value (0 if absent)
    curl -s "http://127.0.0.1:$HR_PORT/metrics" | awk -v n="$1{" -v l="$2" \
        'index($0, n) == 1 && index($0, l) > 0 {s += $NF} END {print s + 0}' || echo 0
}
depth() { metric hookrelay_queue_depth 'destination="sink"'; }
delivered() { metric hookrelay_deliveries_total 'outcome="delivered"'; }
db_count() { sqlite3 -readonly "$TMP/bench.db" "$1" 2>/dev/null || echo 0; }
pg_count() { psql -Atq "$PG_URL" -c "$1" 2>/dev/null || echo 0; }
wait_ready() { # URL SINCE_NS -> json line
    "$EX/bench_load" --ready "$1" --since-ns "$2" --timeout 30
}
load() { "$EX/bench_load" "$@"; }
sink_count() { curl -s "http://127.0.0.1:$SINK_PORT/stats" | grep -o '"count": *[0-9]*' | grep -o '[0-9]*$' || echo 0; }
wait_sink() { # wait until the sink has received $1 since its last reset; echoes seconds waited
    local t0 limit=$2
    t0=$(now_ms)
    while (( $(sink_count) < $1 )); do
        (( $(now_ms) - t0 > limit * 1000 )) && { log "the sink has not received $1 after ${limit}s"; break; }
        sleep 0.05
    done
    calc "($(now_ms) - $t0) / 1000"
}
wait_drain() { # wait until queue depth is 0; echoes seconds waited
    local t0 d limit=$1
    t0=$(now_ms)
    while :; do
        d=$(depth)
        [[ "$d" == 0 ]] && break
        (( $(now_ms) - t0 > limit * 1000 )) && { log "queue not drained after ${limit}s (depth $d)"; break; }
        sleep 0.1
    done
    calc "($(now_ms) - $t0) / 1000"
}

log "tmp: $TMP  ports: hookrelay $HR_PORT, ceiling $BASE_PORT, sink $SINK_PORT"

# ---------------------------------------------------------------- 1. ceiling
t0=$(now_ns)
"$EX/bench_baseline" --listen "127.0.0.1:$BASE_PORT" 2>"$TMP/baseline.log" &
BASE_PID=$!; PIDS+=("$BASE_PID")
wait_ready "http://127.0.0.1:$BASE_PORT/readyz" "$t0" >"$TMP/base_ready.json"
sleep 1
BASE_IDLE=$(rss_mb "$BASE_PID" VmRSS)
URL_BASE="http://127.0.0.1:$BASE_PORT/hooks/simplebackups"
log "ceiling: warm-up 1s, then ${DURATION}s closed loop, $CONNS connections"
load --url "$URL_BASE" --secret "$SECRET" --connections "$CONNS" --duration 1 >/dev/null
load --url "$URL_BASE" --secret "$SECRET" --connections "$CONNS" --duration "$DURATION" >"$TMP/base_load.json"
LOAD_BASE=$(loadavg)
log "ceiling under wrk: ${DURATION}s, $WRK_CONNS connections"
WRK_URL_BASE="http://127.0.0.1:$BASE_PORT/hooks/wrk?token=bench-token"
wrk_run "$WRK_URL_BASE" 1 /dev/null
wrk_run "$WRK_URL_BASE" "$DURATION" "$TMP/base_wrk.json"
LOAD_BASE_WRK=$(loadavg)
# The durable ceiling: the same server flushing each body to disk before its 202
# (examples/bench_baseline.rs --durable), the bound of any server that makes each
# webhook durable before answering, on the disk this run uses.
log "durable ceiling under wrk: ${DURATION}s, $WRK_CONNS connections"
"$EX/bench_baseline" --listen "127.0.0.1:$DURABLE_PORT" --durable "$TMP/durable.ring" 2>>"$TMP/baseline.log" &
DURABLE_PID=$!; PIDS+=("$DURABLE_PID")
wait_ready "http://127.0.0.1:$DURABLE_PORT/readyz" "$(now_ns)" >/dev/null
WRK_URL_DURABLE="http://127.0.0.1:$DURABLE_PORT/hooks/wrk?token=bench-token"
wrk_run "$WRK_URL_DURABLE" 1 /dev/null
wrk_run "$WRK_URL_DURABLE" "$DURATION" "$TMP/durable_wrk.json"
LOAD_DURABLE_WRK=$(loadavg)
kill "$DURABLE_PID"; wait "$DURABLE_PID" 2>/dev/null || true
log "ceiling at $RATE/s for ${RATE_DURATION}s"
load --url "$URL_BASE" --secret "$SECRET" --connections "$CONNS" --rate "$RATE" --duration "$RATE_DURATION" >"$TMP/base_rate.json"
BASE_PEAK=$(rss_mb "$BASE_PID" VmHWM)
kill "$BASE_PID"; wait "$BASE_PID" 2>/dev/null || true

# ---------------------------------------------------------------- 2. hookrelay
"$EX/bench_sink" --listen "127.0.0.1:$SINK_PORT" 2>"$TMP/sink.log" &
SINK_PID=$!; PIDS+=("$SINK_PID")
t=$(now_ns); wait_ready "http://127.0.0.1:$SINK_PORT/stats" "$t" >/dev/null

export BENCH_STORAGE_URL="sqlite://$TMP/bench.db" BENCH_PORT=$HR_PORT BENCH_SINK_PORT=$SINK_PORT \
    BENCH_WORKERS=$WORKERS RUST_LOG=${RUST_LOG:-warn}
t0=$(now_ns)
"$BIN" serve -c bench/relay.yaml 2>"$TMP/hookrelay.log" &
HR_PID=$!; PIDS+=("$HR_PID")
wait_ready "http://127.0.0.1:$HR_PORT/readyz" "$t0" >"$TMP/hr_ready.json"
sleep 1
HR_IDLE=$(rss_mb "$HR_PID" VmRSS)
URL_HR="http://127.0.0.1:$HR_PORT/hooks/simplebackups"

log "hookrelay: warm-up 1s, then ${DURATION}s closed loop, $CONNS connections"
load --url "$URL_HR" --secret "$SECRET" --connections "$CONNS" --duration 1 >/dev/null
wait_drain 60 >/dev/null
ev0=$(db_count "SELECT COUNT(*) FROM events")
del0=$(delivered)
curl -s -X POST "http://127.0.0.1:$SINK_PORT/reset" >/dev/null
if [[ "${PERF:-0}" == 1 ]] && command -v perf >/dev/null; then
    # DWARF unwinding: the release build has no frame pointers.
    perf record -F 499 --call-graph dwarf,16384 -o "$TMP/perf.data" -p "$HR_PID" -- sleep "$DURATION" 2>/dev/null &
    PERF_PID=$!
fi
thread_ticks "$HR_PID" >"$TMP/threads0.txt"; sink_ticks0=$(proc_ticks "$SINK_PID")
load_t0=$(now_ms)
load --url "$URL_HR" --secret "$SECRET" --connections "$CONNS" --duration "$DURATION" >"$TMP/hr_load.json"
load_t1=$(now_ms)
LOAD_HR=$(loadavg)
thread_ticks "$HR_PID" >"$TMP/threads1.txt"; sink_ticks1=$(proc_ticks "$SINK_PID")
del1=$(delivered)
curl -s "http://127.0.0.1:$SINK_PORT/stats" >"$TMP/sink_load.json"
drain_s=$(wait_drain 120)
del2=$(delivered)
curl -s "http://127.0.0.1:$SINK_PORT/stats" >"$TMP/sink_load_drained.json"
ev1=$(db_count "SELECT COUNT(*) FROM events")
HR_PEAK_LOAD=$(rss_mb "$HR_PID" VmHWM)

# ---------------------------------------------------------------- 2b. hookrelay under wrk
log "hookrelay under wrk: ${DURATION}s, $WRK_CONNS connections"
WRK_URL_HR="http://127.0.0.1:$HR_PORT/hooks/wrk?token=bench-token"
wrk_run "$WRK_URL_HR" 1 /dev/null
wait_drain 120 >/dev/null
wrk_ev0=$(db_count "SELECT COUNT(*) FROM events WHERE source = 'wrk'")
thread_ticks "$HR_PID" >"$TMP/wrk_threads0.txt"
wrk_run "$WRK_URL_HR" "$DURATION" "$TMP/hr_wrk.json"
thread_ticks "$HR_PID" >"$TMP/wrk_threads1.txt"
LOAD_HR_WRK=$(loadavg)
wait_drain 120 >/dev/null
wrk_ev1=$(db_count "SELECT COUNT(*) FROM events WHERE source = 'wrk'")
if [[ -n "${PERF_PID:-}" ]]; then
    wait "$PERF_PID" || true
    # Inclusive (children) percentages of all hookrelay samples, by thread and function.
    perf report -i "$TMP/perf.data" --children --sort comm,sym -g none --percent-limit 1.5 --stdio 2>/dev/null \
        | sed 's/[ .]*$//' | grep -v '^#*$' | head -200 >"$ROOT/bench/perf-ingest.txt" || true
    log "perf report: bench/perf-ingest.txt"
fi

# ---------------------------------------------------------------- 3. end-to-end at a fixed rate
log "hookrelay at $RATE/s for ${RATE_DURATION}s (end-to-end latency)"
curl -s -X POST "http://127.0.0.1:$SINK_PORT/reset" >/dev/null
rate_t0=$(now_ms)
load --url "$URL_HR" --secret "$SECRET" --connections "$CONNS" --rate "$RATE" --duration "$RATE_DURATION" >"$TMP/hr_rate.json"
wait_drain 60 >/dev/null
sleep 0.5
curl -s "http://127.0.0.1:$SINK_PORT/stats" >"$TMP/sink_rate.json"
# Inside hookrelay, from its own records (ms resolution): stored -> attempt finished.
db_count "SELECT a.at + a.duration_ms - d.created_at FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
          WHERE d.created_at >= $rate_t0 AND d.state = 'delivered' AND a.error IS NULL" >"$TMP/db_rate.txt"
db_count "SELECT COUNT(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.created_at >= $rate_t0" >"$TMP/db_rate_attempts.txt"
HR_PEAK_RATE=$(rss_mb "$HR_PID" VmHWM)

# ---------------------------------------------------------------- 3b. open loop at OPEN_RATE
log "hookrelay open loop at $OPEN_RATE/s for ${OPEN_DURATION}s"
curl -s -X POST "http://127.0.0.1:$SINK_PORT/reset" >/dev/null
load --url "$URL_HR" --secret "$SECRET" --connections "$CONNS" --rate "$OPEN_RATE" --duration "$OPEN_DURATION" >"$TMP/hr_open.json"
OPEN_DEPTH=$(depth)
LOAD_OPEN=$(loadavg)
wait_drain 120 >/dev/null
sleep 0.5
curl -s "http://127.0.0.1:$SINK_PORT/stats" >"$TMP/sink_open.json"

# ---------------------------------------------------------------- 4. backlog and drain
log "backlog: sink stopped (SIGSTOP), posting $BACKLOG events"
# Reset while it still answers: from here its count is the backlog's deliveries.
curl -s -X POST "http://127.0.0.1:$SINK_PORT/reset" >/dev/null
kill -STOP "$SINK_PID"
del_b0=$(delivered)
load --url "$URL_HR" --secret "$SECRET" --connections "$CONNS" --count "$BACKLOG" --timeout 60 >"$TMP/hr_backlog.json"
sleep 2
BACKLOG_DEPTH=$(depth)
del_b1=$(delivered)
HR_BACKLOG_RSS=$(rss_mb "$HR_PID" VmRSS)
HR_PEAK_BACKLOG=$(rss_mb "$HR_PID" VmHWM)
log "queue depth $BACKLOG_DEPTH, RSS ${HR_BACKLOG_RSS} MB; continuing the sink (SIGCONT)"
ticks_d0=$(proc_ticks "$HR_PID"); read -r vctx_d0 ictx_d0 < <(ctx_switches "$HR_PID")
sink_ticks_d0=$(proc_ticks "$SINK_PID")
kill -CONT "$SINK_PID"
drain_t0=$(now_ms)
# Timed until the sink has received every delivery of the backlog, read from the
# sink: hookrelay's queue depth counts the pending rows on every /metrics scrape
# (~9 ms of its CPU with 100,000 queued), and reading it every 0.1 s was ~5% of
# the drain's CPU, which no user's scrape interval would cost. The depth is
# read once it is over, to see every attempt recorded.
drain_backlog_s=$(wait_sink "$BACKLOG_DEPTH" 600)
ticks_d1=$(proc_ticks "$HR_PID"); read -r vctx_d1 ictx_d1 < <(ctx_switches "$HR_PID")
sink_ticks_d1=$(proc_ticks "$SINK_PID")
LOAD_DRAIN=$(loadavg)
wait_drain 60 >/dev/null
del_b2=$(delivered)
curl -s "http://127.0.0.1:$SINK_PORT/stats" >"$TMP/sink_drain.json"
HR_PEAK_FINAL=$(rss_mb "$HR_PID" VmHWM)
HR_AFTER_RSS=$(rss_mb "$HR_PID" VmRSS)
DB_MB=$(du -sm "$TMP" | awk '{print $1}')

# ---------------------------------------------------------------- 5. repeated pairs
# The machine's speed drifts between minutes; pairs taken back to back, alternating
# which goes first, show how much the headline ratio moves.
if (( ROUNDS > 0 )); then
    log "$ROUNDS alternating rounds of ${ROUND_DURATION}s wrk runs (ceiling, durable ceiling, hookrelay)"
    "$EX/bench_baseline" --listen "127.0.0.1:$BASE_PORT" 2>>"$TMP/baseline.log" &
    BASE_PID=$!; PIDS+=("$BASE_PID")
    "$EX/bench_baseline" --listen "127.0.0.1:$DURABLE_PORT" --durable "$TMP/durable.ring" 2>>"$TMP/baseline.log" &
    DURABLE_PID=$!; PIDS+=("$DURABLE_PID")
    wait_ready "http://127.0.0.1:$BASE_PORT/readyz" "$(now_ns)" >/dev/null
    wait_ready "http://127.0.0.1:$DURABLE_PORT/readyz" "$(now_ns)" >/dev/null
    : >"$TMP/rounds.txt"
    for r in $(seq "$ROUNDS"); do
        if (( r % 2 )); then order="BASE DURABLE HR"; else order="HR DURABLE BASE"; fi
        for who in $order; do
            case $who in
                BASE) url=$WRK_URL_BASE ;;
                DURABLE) url=$WRK_URL_DURABLE ;;
                HR) url=$WRK_URL_HR ;;
            esac
            wrk_run "$url" "$ROUND_DURATION" "$TMP/round_${r}_$who.json"
        done
        echo "$(json "$TMP/round_${r}_BASE.json" "j['ok_per_s']") $(json "$TMP/round_${r}_HR.json" "j['ok_per_s']")" \
            "$(json "$TMP/round_${r}_DURABLE.json" "j['ok_per_s']")" >>"$TMP/rounds.txt"
        wait_drain 120 >/dev/null
    done
    kill "$BASE_PID" "$DURABLE_PID"; wait "$BASE_PID" "$DURABLE_PID" 2>/dev/null || true
fi
kill "$HR_PID"; wait "$HR_PID" 2>/dev/null || true

# ---------------------------------------------------------------- 6. PostgreSQL
# The database on PORT_BASE+9, replicas on PORT_BASE+10, +11, +12.
pg_pending() { pg_count "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'"; }
# 1 while anything is pending, else 0: one entry of the pending-rows index, where a
# count of 100,000 rows takes the server ~30 ms, every poll, out of the drain it
# measures.
pg_any_pending() { pg_count "SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE state = 'pending' LIMIT 1) p"; }
pg_drain() { # pg_drain REPLICAS NAME: BACKLOG posted with the sink stopped, then drained
    local n=$1 name=$2 pids=() i t0 pending ms ticks0=0 ticks1=0
    for i in $(seq "$n"); do
        BENCH_PORT=$((HR_PORT + 9 + i)) "$BIN" serve -c bench/relay.yaml 2>"$TMP/pg_$name-$i.log" &
        pids+=($!); PIDS+=($!)
    done
    for i in $(seq "$n"); do
        wait_ready "http://127.0.0.1:$((HR_PORT + 9 + i))/readyz" "$(now_ns)" >/dev/null
    done
    # Counted from here: the sink's count is then every send of this backlog.
    curl -s -X POST "http://127.0.0.1:$SINK_PORT/reset" >/dev/null
    kill -STOP "$SINK_PID"
    load --url "http://127.0.0.1:$((HR_PORT + 10))/hooks/wrk?token=bench-token" --connections "$CONNS" \
        --count "$BACKLOG" --timeout 120 >"$TMP/pg_${name}_backlog.json"
    sleep 1
    for p in "${pids[@]}"; do ticks0=$((ticks0 + $(proc_ticks "$p"))); done
    kill -CONT "$SINK_PID"
    t0=$(now_ms)
    while :; do
        [[ $(pg_any_pending) == 0 ]] && break
        (( $(now_ms) - t0 > 600000 )) && { log "PostgreSQL drain: $(pg_pending) still pending after 600 s"; break; }
        sleep 0.2
    done
    ms=$(( $(now_ms) - t0 ))
    for p in "${pids[@]}"; do ticks1=$((ticks1 + $(proc_ticks "$p"))); done
    sleep 0.5
    curl -s "http://127.0.0.1:$SINK_PORT/stats" >"$TMP/pg_${name}_sink.json"
    echo "{\"ms\": $ms, \"load\": $(loadavg), \"cpu_ticks\": $((ticks1 - ticks0)), \"replicas\": $n," \
        "\"deliveries\": $(pg_count "SELECT COUNT(*) FROM deliveries")," \
        "\"delivered\": $(pg_count "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'")," \
        "\"attempts\": $(pg_count "SELECT COUNT(*) FROM attempts")}" >"$TMP/pg_${name}_drain.json"
    for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
}
if [[ "$PG" == 1 ]]; then
    log "PostgreSQL: starting a throwaway server (fsync on)"
    # Its own folder: the postgres user cannot enter $TMP (mode 700).
    PG_DIR=$(mktemp -d /tmp/hookrelay-bench-pg.XXXXXX)
    PG_SERVER=$("$ROOT/bench/pg.sh" start "$PG_DIR" $((PORT_BASE + 9)))
    PG_URL=$("$ROOT/bench/pg.sh" db "$PG_SERVER" bench_ingest)
    BENCH_STORAGE_URL=$PG_URL BENCH_PORT=$((HR_PORT + 10)) "$BIN" serve -c bench/relay.yaml 2>"$TMP/pg_hr.log" &
    PG_PID=$!; PIDS+=("$PG_PID")
    wait_ready "http://127.0.0.1:$((HR_PORT + 10))/readyz" "$(now_ns)" >/dev/null
    PG_WRK_URL="http://127.0.0.1:$((HR_PORT + 10))/hooks/wrk?token=bench-token"
    log "PostgreSQL: wrk ${DURATION}s, $WRK_CONNS connections"
    wrk_run "$PG_WRK_URL" 1 /dev/null
    while [[ $(pg_pending) != 0 ]]; do sleep 0.2; done
    pg_ev0=$(pg_count "SELECT COUNT(*) FROM events WHERE source = 'wrk'")
    wrk_run "$PG_WRK_URL" "$DURATION" "$TMP/pg_wrk.json"
    LOAD_PG_WRK=$(loadavg)
    pg_ev1=$(pg_count "SELECT COUNT(*) FROM events WHERE source = 'wrk'")
    while [[ $(pg_pending) != 0 ]]; do sleep 0.2; done
    kill "$PG_PID"; wait "$PG_PID" 2>/dev/null || true
    for n in 1 3; do
        log "PostgreSQL: drain of $BACKLOG with $n replica(s)"
        PG_URL=$("$ROOT/bench/pg.sh" db "$PG_SERVER" "bench_drain$n")
        BENCH_STORAGE_URL=$PG_URL pg_drain "$n" "r$n"
    done
fi


# ---------------------------------------------------------------- report
export TMP DURATION CONNS RATE RATE_DURATION BACKLOG WORKERS BASE_IDLE BASE_PEAK HR_IDLE \
    HR_PEAK_LOAD HR_PEAK_RATE HR_BACKLOG_RSS HR_PEAK_BACKLOG HR_PEAK_FINAL HR_AFTER_RSS \
    BACKLOG_DEPTH ev0 ev1 del0 del1 del2 load_t0 load_t1 drain_s del_b0 del_b1 del_b2 \
    drain_backlog_s DB_MB sink_ticks0 sink_ticks1 sink_ticks_d0 sink_ticks_d1 ROUND_DURATION OPEN_RATE OPEN_DURATION OPEN_DEPTH \
    wrk_ev0 wrk_ev1 pg_ev0 pg_ev1 ticks_d0 ticks_d1 vctx_d0 vctx_d1 ictx_d0 ictx_d1 WRK_CONNS PG \
    LOAD_BASE LOAD_BASE_WRK LOAD_DURABLE_WRK LOAD_HR LOAD_HR_WRK LOAD_OPEN LOAD_DRAIN LOAD_PG_WRK
python3 "$ROOT/bench/report.py" | tee "$ROOT/bench/results.md"
