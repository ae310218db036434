#!/usr/bin/env bash
# How far the ingest ratio can go without storage: wrk -t2 -c$CONNS against the
# ceiling (bench_baseline), a hookrelay built with bench/no-store.patch and run with
# BENCH_NO_STORE=1 (reads, authenticates, parses, normalizes and routes each webhook,
# then answers 202 without storing or delivering it), and hookrelay as shipped,
# alternating, ROUNDS times, each on a fresh SQLite file. Prints req/s and the ratio
# to the ceiling of the same round.
#
#   git apply bench/no-store.patch && cargo build --release --bin hookrelay \
#     && cp target/release/hookrelay /tmp/hookrelay-no-store && git apply -R bench/no-store.patch
#   cargo build --release --examples --bin hookrelay
#   bench/no-store.sh /tmp/hookrelay-no-store target/release/hookrelay
set -euo pipefail
cd "$(dirname "$0")/.."
NOSTORE=$1
HR=$2
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
PORT=${PORT_BASE:-28480}
SINK_PORT=$((PORT + 2))
EX=target/release/examples
TMP=$(mktemp -d /tmp/hookrelay-nostore.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
"$EX/bench_sink" --listen "127.0.0.1:$SINK_PORT" 2>/dev/null &
PIDS+=($!)
export BENCH_PORT=$PORT BENCH_SINK_PORT=$SINK_PORT BENCH_WORKERS=32 RUST_LOG=warn
URL="http://127.0.0.1:$PORT/hooks/wrk?token=bench-token"
run() { # prints accepted req/s of one closed loop against the server "$@" starts
    "$@" 2>/dev/null &
    local p=$!
    "$EX/bench_load" --ready "http://127.0.0.1:$PORT/readyz" --since-ns "$(date +%s%N)" --timeout 30 >/dev/null
    wrk -t2 -c"$CONNS" -d1s -s bench/wrk-simplebackups.lua "$URL" >/dev/null 2>&1
    wrk -t2 -c"$CONNS" -d"${DURATION}s" -s bench/wrk-simplebackups.lua "$URL" 2>&1 | grep '^{' | tail -1 |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ok_per_s"]))'
    kill "$p"
    wait "$p" 2>/dev/null || true
}
echo "round load1 ceiling_req_s no_store_req_s no_store_ratio hookrelay_req_s hookrelay_ratio"
for r in $(seq "$ROUNDS"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    c=$(run "$EX/bench_baseline" --listen "127.0.0.1:$PORT")
    n=$(BENCH_STORAGE_URL="sqlite://$TMP/n$r.db" BENCH_NO_STORE=1 run "$NOSTORE" serve -c bench/relay.yaml)
    h=$(BENCH_STORAGE_URL="sqlite://$TMP/h$r.db" run "$HR" serve -c bench/relay.yaml)
    python3 -c 'import sys; r,l,c,n,h=sys.argv[1:]; c,n,h=int(c),int(n),int(h); print(r, l, c, n, f"{n/c:.2f}", h, f"{h/c:.2f}")' "$r" "$load" "$c" "$n" "$h"
done
