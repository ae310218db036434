#!/usr/bin/env bash
# What a durable 202 costs on this disk: wrk -t2 -c$CONNS, alternating, ROUNDS times,
# each server on fresh files in one folder of /tmp, against
#   ceiling          bench_baseline: answers 202, does nothing else;
#   durable          bench_baseline --durable: each body written and flushed
#                    (fdatasync) before its 202, one flush per batch of all waiting;
#   no-store         (with NOSTORE_BIN) hookrelay built with bench/no-store.patch,
#                    BENCH_NO_STORE=1: read, authenticated, parsed, normalized and
#                    routed, answered 202 without being stored or delivered;
#   no-store durable the same with BENCH_NO_STORE=durable: its body also written and
#                    flushed as the durable ceiling does (the cheapest durable store
#                    hookrelay could have);
#   hookrelay        as shipped.
# Prints req/s with the ratio to the ceiling of the same round.
#
# Under a closed loop of CONNS connections no more than CONNS webhooks can wait for
# one flush, so a server that flushes before answering is bound by the flush time
# as well as by its CPU: the durable ceiling measures that bound on the disk used.
#
#   git apply bench/no-store.patch && cargo build --release --bin hookrelay \
#     && cp target/release/hookrelay /tmp/hookrelay-no-store && git apply -R bench/no-store.patch
#   cargo build --release --examples --bin hookrelay
#   NOSTORE_BIN=/tmp/hookrelay-no-store bench/durable.sh target/release/hookrelay
set -euo pipefail
cd "$(dirname "$0")/.."
HR=${1:-target/release/hookrelay}
NS=${NOSTORE_BIN:-}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
PORT=${PORT_BASE:-28580}
SINK_PORT=$((PORT + 2))
EX=target/release/examples
TMP=$(mktemp -d /tmp/hookrelay-durable.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
sync
"$EX/bench_sink" --listen "127.0.0.1:$SINK_PORT" 2>/dev/null &
PIDS+=($!)
export BENCH_PORT=$PORT BENCH_SINK_PORT=$SINK_PORT BENCH_WORKERS=32 RUST_LOG=warn
URL="http://127.0.0.1:$PORT/hooks/wrk?token=bench-token"
run() { # prints accepted req/s of one closed loop against the server "$@" starts
    "$@" 2>/dev/null &
    local p=$!
    "$EX/bench_load" --ready "http://127.0.0.1:$PORT/readyz" --since-ns "$(date +%s%N)" --timeout 60 >/dev/null
    wrk -t2 -c"$CONNS" -d1s -s bench/wrk-simplebackups.lua "$URL" >/dev/null 2>&1
    wrk -t2 -c"$CONNS" -d"${DURATION}s" -s bench/wrk-simplebackups.lua "$URL" 2>&1 | grep '^{' | tail -1 |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ok_per_s"]))'
    kill "$p"
    wait "$p" 2>/dev/null || true
}
echo "| round | load1 | ceiling | durable | no-store | no-store durable | hookrelay |"
echo "|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    c=$(run "$EX/bench_baseline" --listen "127.0.0.1:$PORT")
    d=$(run "$EX/bench_baseline" --listen "127.0.0.1:$PORT" --durable "$TMP/d.ring")
    n=-1 nd=-1
    if [[ -n "$NS" ]]; then
        n=$(BENCH_STORAGE_URL="sqlite://$TMP/n.db" BENCH_NO_STORE=1 run "$NS" serve -c bench/relay.yaml)
        nd=$(BENCH_STORAGE_URL="sqlite://$TMP/nd.db" BENCH_NO_STORE=durable \
            BENCH_DURABLE_FILE="$TMP/nd.ring" run "$NS" serve -c bench/relay.yaml)
    fi
    h=$(BENCH_STORAGE_URL="sqlite://$TMP/h.db" run "$HR" serve -c bench/relay.yaml)
    rm -f "$TMP"/*.db* "$TMP"/*.ring
    python3 -c '
import sys
r, l, *v = sys.argv[1:]
c, *rest = map(int, v)
cell = lambda x: "-" if x < 0 else f"{x:,} ({x / c:.2f}×)"
print(f"| {r} | {l} | {c:,} | " + " | ".join(cell(x) for x in rest) + " |")' "$r" "$load" "$c" "$d" "$n" "$nd" "$h"
done
