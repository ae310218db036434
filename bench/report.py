"""Turns bench/run.sh's measurements (files in $TMP, figures in the environment)
into the Markdown results table. Called by run.sh; not meant to run alone."""

import datetime
import json
import os
import platform
import statistics

E = os.environ
T = E["TMP"]


def load(name):
    try:
        with open(os.path.join(T, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def num(k):
    try:
        return float(E.get(k, "nan"))
    except ValueError:
        return float("nan")


def fmt(x, d=0):
    if x is None or x != x:
        return "n/a"
    return f"{x:,.{d}f}"


def ratio(a, b, d=2):
    if a is None or b is None or a != a or b != b or b == 0:
        return "n/a"
    return f"{a / b:.{d}f}×"


def verdict(ok):
    if ok is None:
        return "n/a"
    return "met" if ok else "**missed**"


base, base_rate = load("base_load.json"), load("base_rate.json")
hr, hr_rate, hr_backlog = load("hr_load.json"), load("hr_rate.json"), load("hr_backlog.json")
base_ready, hr_ready = load("base_ready.json"), load("hr_ready.json")
base_wrk, hr_wrk, pg_wrk = load("base_wrk.json"), load("hr_wrk.json"), load("pg_wrk.json")
hr_open, sink_open = load("hr_open.json"), load("sink_open.json")
sink_load, sink_drained = load("sink_load.json"), load("sink_load_drained.json")
sink_rate, sink_drain = load("sink_rate.json"), load("sink_drain.json")

dur = (num("load_t1") - num("load_t0")) / 1000
ok202 = hr.get("status", {}).get("202", 0)
committed = num("ev1") - num("ev0")
all_committed = ok202 > 0 and committed == ok202
hr_rps, base_rps = hr.get("ok_per_s"), base.get("ok_per_s")

# Deliveries: hookrelay's own counter, and what the sink saw.
del_load = (num("del1") - num("del0")) / dur if dur > 0 else float("nan")
del_total = num("del2") - num("del0")
del_overall = del_total / (dur + num("drain_s"))
sink_seen = sink_drained.get("count", 0)
stub = del_total > 0 and sink_seen == 0

# Fixed rate: end-to-end at the sink, and stored -> sent from hookrelay's records.
try:
    with open(os.path.join(T, "db_rate.txt")) as f:
        db_ms = sorted(int(x) for x in f.read().split() if x.strip().lstrip("-").isdigit())
except OSError:
    db_ms = []


def pct(v, p):
    if not v:
        return float("nan")
    return float(v[min(len(v) - 1, round((len(v) - 1) * p))])


e2e_p50, e2e_p99 = sink_rate.get("p50_ms"), sink_rate.get("p99_ms")
db_p50, db_p99 = pct(db_ms, 0.5), pct(db_ms, 0.99)

depth = num("BACKLOG_DEPTH")
backlog_n = num("BACKLOG")
backlog_built = depth >= 0.9 * backlog_n
drain_s = num("drain_backlog_s")
drained = num("del_b2") - num("del_b1")
drain_rate = drained / drain_s if drain_s > 0 else float("nan")

rows = []


def row(metric, value, ceiling, r, target, met):
    rows.append(f"| {metric} | {value} | {ceiling} | {r} | {target} | {verdict(met)} |")


def load_note(k):
    v = E.get(k)
    return f" (load {v})" if v else ""


def wrk_committed(w, ev0, ev1):
    """202s answered vs rows committed: every 202 is a row; a row more for each
    request still in flight when wrk stopped (committed, its answer not counted)."""
    n = w.get("n202", 0)
    rows_ = num(ev1) - num(ev0)
    ok = n > 0 and n <= rows_ <= n + int(E.get("WRK_CONNS", "32"))
    return n, rows_, ok


conns = E["CONNS"]
wconns = E.get("WRK_CONNS", "32")
w_hr, w_base = hr_wrk.get("ok_per_s"), base_wrk.get("ok_per_s")
w_n, w_rows, w_ok = wrk_committed(hr_wrk, "wrk_ev0", "wrk_ev1")
row(
    f"**accepted req/s under wrk** (-t2 -c{wconns}, {E['DURATION']} s, token source, no dedup)",
    fmt(w_hr) + load_note("LOAD_HR_WRK"),
    fmt(w_base) + load_note("LOAD_BASE_WRK"),
    ratio(w_hr, w_base),
    "≥ 0.50× ceiling, every 202 committed",
    (w_hr / w_base >= 0.5 and w_ok) if w_hr and w_base else None,
)
row(
    "wrk: 202s answered / events committed",
    f"{w_n:,} / {fmt(w_rows)}", "—", "—",
    f"every 202 a row (≤ {wconns} more: in flight at the end)", w_ok if w_n else None,
)
row("wrk: non-2xx / socket errors",
    f"{hr_wrk.get('non_2xx', 'n/a')} / {sum(hr_wrk.get(k, 0) for k in ('errors_connect', 'errors_read', 'errors_write', 'errors_timeout'))}",
    f"{base_wrk.get('non_2xx', 'n/a')} / {sum(base_wrk.get(k, 0) for k in ('errors_connect', 'errors_read', 'errors_write', 'errors_timeout'))}",
    "—", "none", None)
durable_wrk = load("durable_wrk.json")
w_dur = durable_wrk.get("ok_per_s")
row(
    "durable ceiling under wrk: the ceiling flushing each body (fdatasync, one per batch) "
    "before its 202, nothing else; hookrelay ÷ durable in the hookrelay column",
    (ratio(w_hr, w_dur) + " of it") if w_hr and w_dur else "n/a",
    fmt(w_dur) + load_note("LOAD_DURABLE_WRK"),
    ratio(w_dur, w_base),
    "— (the bound of a durable 202)", None,
)
row("wrk: latency p50 / p99", f"{fmt(hr_wrk.get('p50_ms'), 2)} / {fmt(hr_wrk.get('p99_ms'), 2)} ms",
    f"{fmt(base_wrk.get('p50_ms'), 2)} / {fmt(base_wrk.get('p99_ms'), 2)} ms", "—", "—", None)
row(
    f"accepted req/s, own generator (closed loop, {conns} conns, {E['DURATION']} s, signed source)",
    fmt(hr_rps) + load_note("LOAD_HR"),
    fmt(base_rps) + load_note("LOAD_BASE"),
    ratio(hr_rps, base_rps),
    "≥ 0.50× ceiling, every 202 committed",
    (hr_rps / base_rps >= 0.5 and all_committed) if hr_rps and base_rps else None,
)
row(
    "202s answered / events committed in SQLite",
    f"{ok202:,} / {int(committed):,}",
    "—",
    "—",
    "equal",
    all_committed,
)
row("non-2xx / errors (closed loop)",
    ", ".join(f"{k}: {v}" for k, v in hr.get("status", {}).items() if k != "202") or "none",
    ", ".join(f"{k}: {v}" for k, v in base.get("status", {}).items() if k != "202") or "none",
    "—", "none", None)
row("ingest latency p50 (closed loop)", fmt(hr.get("p50_ms"), 2) + " ms",
    fmt(base.get("p50_ms"), 2) + " ms", ratio(hr.get("p50_ms"), base.get("p50_ms"), 1), "—", None)
row("ingest latency p99 (closed loop)", fmt(hr.get("p99_ms"), 2) + " ms",
    fmt(base.get("p99_ms"), 2) + " ms", ratio(hr.get("p99_ms"), base.get("p99_ms"), 1), "—", None)
row(f"ingest latency p50 / p99 at {E['RATE']} req/s",
    f"{fmt(hr_rate.get('p50_ms'), 2)} / {fmt(hr_rate.get('p99_ms'), 2)} ms",
    f"{fmt(base_rate.get('p50_ms'), 2)} / {fmt(base_rate.get('p99_ms'), 2)} ms",
    f"{ratio(hr_rate.get('p50_ms'), base_rate.get('p50_ms'), 1)} / {ratio(hr_rate.get('p99_ms'), base_rate.get('p99_ms'), 1)}",
    "—", None)
row("delivered/s during the closed-loop run (hookrelay counter)", fmt(del_load), "—",
    ratio(del_load, hr_rps) + " of accepted", "—", None)
row("delivered/s at the sink during the run", fmt(sink_load.get("count", 0) / dur if dur > 0 else None),
    "—", ratio(sink_load.get("count", 0) / dur if dur > 0 else None, hr_rps) + " of accepted", "—",
    None)
row("delivered/s incl. drain after the run (hookrelay counter)",
    f"{fmt(del_overall)} ({int(del_total):,} in {fmt(dur + num('drain_s'), 1)} s)", "—", "—", "—", None)
row(f"end-to-end p50 / p99 at {E['RATE']} req/s (send → sink)",
    f"{fmt(e2e_p50, 2)} / {fmt(e2e_p99, 2)} ms" if e2e_p99 is not None else "n/a (sink got nothing)",
    f"{fmt(base_rate.get('p50_ms'), 2)} / {fmt(base_rate.get('p99_ms'), 2)} ms (ceiling ingest)",
    ratio(e2e_p99, base_rate.get("p99_ms"), 1) + " (p99)" if e2e_p99 is not None else "n/a",
    "p99 ≤ 20 ms", (e2e_p99 <= 20) if e2e_p99 is not None else None)
open_rate, open_dur = num("OPEN_RATE"), num("OPEN_DURATION")
open_depth = num("OPEN_DEPTH")
open_p99 = sink_open.get("p99_ms")
row(f"open loop {fmt(open_rate)} req/s for {fmt(open_dur)} s: sent / accepted",
    f"{hr_open.get('sent', 'n/a'):,} / {hr_open.get('ok', 'n/a'):,}" + load_note("LOAD_OPEN")
    if hr_open else "n/a", "—", "—", "all accepted",
    (hr_open.get("ok") == hr_open.get("sent")) if hr_open else None)
row("open loop: backlog at its end", f"{fmt(open_depth)} deliveries", "—",
    f"{fmt(open_depth / open_rate, 2)} s of traffic" if open_rate else "n/a", "< 1 s of traffic",
    (open_depth < open_rate) if open_depth == open_depth else None)
row("open loop: received → sink p50 / p99 (send → arrival)",
    f"{fmt(sink_open.get('p50_ms'), 2)} / {fmt(open_p99, 2)} ms (n={sink_open.get('with_ts', 0):,})",
    "—", "—", "p99 ≤ 50 ms", (open_p99 <= 50) if open_p99 is not None else None)
row(f"stored → attempt done p50 / p99 at {E['RATE']} req/s (from SQLite, ms resolution)",
    f"{fmt(db_p50, 0)} / {fmt(db_p99, 0)} ms (n={len(db_ms):,})", "—", "—", "—", None)
row("idle RSS (1 s after ready)", f"{E['HR_IDLE']} MB", f"{E['BASE_IDLE']} MB",
    ratio(num("HR_IDLE"), num("BASE_IDLE"), 1), "≤ 20 MB", num("HR_IDLE") <= 20)
row("peak RSS (VmHWM) after closed loop + fixed rate", f"{E['HR_PEAK_RATE']} MB", f"{E['BASE_PEAK']} MB",
    ratio(num("HR_PEAK_RATE"), num("BASE_PEAK"), 1), "≤ 100 MB", num("HR_PEAK_RATE") <= 100)
row(f"RSS with {fmt(depth)} deliveries queued (sink stopped)", f"{E['HR_BACKLOG_RSS']} MB", "—", "—",
    "≤ 100 MB", (num("HR_BACKLOG_RSS") <= 100) if backlog_built else None)
row("peak RSS (VmHWM) over the whole run", f"{E['HR_PEAK_FINAL']} MB", f"{E['BASE_PEAK']} MB",
    ratio(num("HR_PEAK_FINAL"), num("BASE_PEAK"), 1), "≤ 100 MB", num("HR_PEAK_FINAL") <= 100)
row(f"accepted req/s while posting {fmt(backlog_n)} (sink stopped)", fmt(hr_backlog.get("ok_per_s")),
    fmt(base_rps), ratio(hr_backlog.get("ok_per_s"), base_rps), "—", None)
hz = os.sysconf("SC_CLK_TCK")
d_cpu = (num("ticks_d1") - num("ticks_d0")) * 1e6 / hz / drained if drained > 0 else float("nan")
d_vctx = (num("vctx_d1") - num("vctx_d0")) / drained if drained > 0 else float("nan")
d_ictx = (num("ictx_d1") - num("ictx_d0")) / drained if drained > 0 else float("nan")
d_sink = (num("sink_ticks_d1") - num("sink_ticks_d0")) * 1e6 / hz / drained if drained > 0 else float("nan")
row("drain rate after the sink continues",
    f"{fmt(drain_rate)} deliveries/s ({fmt(drained)} in {fmt(drain_s, 1)} s)" + load_note("LOAD_DRAIN"),
    "—", "—", "≥ 15,000/s", (drain_rate >= 15000) if backlog_built else None)
row("drain: hookrelay CPU / wake-ups (voluntary, involuntary context switches) per delivery",
    f"{fmt(d_cpu, 0)} µs / {fmt(d_vctx, 2)}, {fmt(d_ictx, 2)}", "—", "—", "—", None)
row("drain: the bench sink's own CPU per delivery (another process on the same two cores)",
    f"{fmt(d_sink, 0)} µs", "—", "—", "—", None)
row("start-up: spawn → first 200 on /readyz", fmt(hr_ready.get("ms"), 1) + " ms",
    fmt(base_ready.get("ms"), 1) + " ms", ratio(hr_ready.get("ms"), base_ready.get("ms"), 1),
    "≤ 200 ms", (hr_ready.get("ms", 1e9) <= 200) if hr_ready else None)

pg_rows = []
if E.get("PG") == "1":
    pw = pg_wrk.get("ok_per_s")
    pn, prows, prow_ok = wrk_committed(pg_wrk, "pg_ev0", "pg_ev1")
    pg_rows.append(f"| accepted req/s under wrk (-t2 -c{wconns}, {E['DURATION']} s) | "
                   f"{fmt(pw)}{load_note('LOAD_PG_WRK')} | {fmt(w_base)} | {ratio(pw, w_base)} | "
                   f"≥ 5,000/s, every 202 committed | {verdict((pw or 0) >= 5000 and prow_ok)} |")
    pg_rows.append(f"| wrk: 202s answered / events committed | {pn:,} / {fmt(prows)} | — | — | "
                   f"every 202 a row | {verdict(prow_ok if pn else None)} |")
    for n in ("1", "3"):
        d, sk = load(f"pg_r{n}_drain.json"), load(f"pg_r{n}_sink.json")
        if not d:
            continue
        rate = d["deliveries"] / (d["ms"] / 1000) if d.get("ms") else float("nan")
        cpu = d["cpu_ticks"] * 1e6 / hz / d["deliveries"] if d.get("deliveries") else float("nan")
        once = d["attempts"] == d["delivered"] == d["deliveries"] and sk.get("count") == d["deliveries"]
        pg_rows.append(f"| drain of {d['deliveries']:,} with {n} replica{'s' if n != '1' else ''} | "
                       f"{fmt(rate)} deliveries/s ({fmt(d['ms'] / 1000, 1)} s, load {d['load']}; "
                       f"{fmt(cpu, 0)} µs hookrelay CPU per delivery) | — | — | ≥ 2,000/s | "
                       f"{verdict(rate >= 2000)} |")
        pg_rows.append(f"| … each sent once: attempts / delivered / sink received | "
                       f"{d['attempts']:,} / {d['delivered']:,} / {sk.get('count', 0):,} | — | — | "
                       f"all {d['deliveries']:,} | {verdict(once)} |")


def thread_ticks(name):
    ticks = {}
    try:
        with open(os.path.join(T, name)) as f:
            for line in f:
                k, v = line.split()
                ticks[k] = int(v)
    except (OSError, ValueError):
        pass
    return ticks


# Where the CPU went during the closed-loop run: per thread group, CPU time per
# accepted request (clock ticks from /proc/PID/task/*/stat).
t0, t1 = thread_ticks("threads0.txt"), thread_ticks("threads1.txt")
accepted = hr.get("ok") or 0
cpu_rows = []
if accepted and t1:
    groups = {
        "hookrelay-sqlit": "SQLite writer thread (every write: ingest, attempt records)",
        "actix-server_wo": "HTTP workers (parse, verify, normalize, route, respond)",
        "tokio-rt-worker": "delivery (runtime threads at lower priority: claim, render, send)",
        "hookrelay-log": "log writer thread",
    }
    total = 0
    for k in sorted(t1, key=lambda k: -(t1[k] - t0.get(k, 0))):
        d = t1[k] - t0.get(k, 0)
        total += d
        if d:
            cpu_rows.append(f"| {groups.get(k, k)} | {fmt(d * 1e6 / hz / accepted, 1)} µs |")
    cpu_rows.append(f"| **hookrelay, all threads** | **{fmt(total * 1e6 / hz / accepted, 1)} µs** |")
    sink_d = num("sink_ticks1") - num("sink_ticks0")
    cpu_rows.append(f"| the bench sink (another process) | {fmt(sink_d * 1e6 / hz / accepted, 1)} µs |")

rounds = []
durables = []
try:
    with open(os.path.join(T, "rounds.txt")) as f:
        rounds = [tuple(float(x) for x in line.split()) for line in f if line.strip()]
    durables = [r[2] for r in rounds if len(r) > 2]
    rounds = [r[:2] for r in rounds]
except (OSError, ValueError):
    pass
if rounds:
    ratios = [h / b for b, h in rounds if b]
    row(f"accepted req/s, {len(rounds)} more alternating pairs of {E.get('ROUND_DURATION', '?')} s "
        "(queue drained before each)",
        " / ".join(fmt(h) for _, h in rounds), " / ".join(fmt(b) for b, _ in rounds),
        " / ".join(f"{r:.2f}×" for r in ratios) + f" (median {statistics.median(ratios):.2f}×)",
        "≥ 0.50× ceiling", statistics.median(ratios) >= 0.5)
    if len(durables) == len(rounds):
        dratios = [d / b for (b, _), d in zip(rounds, durables) if b]
        row("durable ceiling in the same rounds",
            " / ".join(f"{h / d:.2f}×" for (_, h), d in zip(rounds, durables) if d) + " of it",
            " / ".join(fmt(d) for d in durables),
            " / ".join(f"{r:.2f}×" for r in dratios) + f" (median {statistics.median(dratios):.2f}×)",
            "— (the bound of a durable 202)", None)

out = []
out.append(f"## hookrelay benchmark — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}")
out.append("")
out.append(
    f"`bench/run.sh` (DURATION={E['DURATION']} CONNS={conns} RATE={E['RATE']} "
    f"RATE_DURATION={E['RATE_DURATION']} BACKLOG={E['BACKLOG']} WORKERS={E['WORKERS']} "
    f"OPEN_RATE={E.get('OPEN_RATE')} OPEN_DURATION={E.get('OPEN_DURATION')} WRK_CONNS={wconns}); "
    f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}. Ceiling = bare actix-web "
    "(examples/bench_baseline.rs) under the same generator and payload in the same run; "
    "ratios are hookrelay ÷ ceiling."
)
out.append("")
out.append("| metric | hookrelay | ceiling | ratio | target | |")
out.append("|---|---|---|---|---|---|")
out.extend(rows)
out.append("")
if pg_rows:
    out.append("PostgreSQL (a throwaway server on the same machine, fsync on; bench/pg.sh), same run:")
    out.append("")
    out.append("| metric | hookrelay | ceiling (wrk) | ratio | target | |")
    out.append("|---|---|---|---|---|---|")
    out.extend(pg_rows)
    out.append("")
if cpu_rows:
    out.append("CPU time per accepted request during the closed-loop run, by thread group "
               "(deliveries run at the same time and are counted per accepted request; the "
               "load generator is not counted):")
    out.append("")
    out.append("| threads | CPU per accepted request |")
    out.append("|---|---|")
    out.extend(cpu_rows)
    out.append("")
notes = []
if stub:
    notes.append(
        f"- **The sink received nothing** while hookrelay counted {int(del_total):,} deliveries as "
        "delivered: this build's `webhook` destination does not send HTTP (in this tree "
        "`destinations::build` returns the no-op console stub for every type). Sink-side "
        "figures (end-to-end, delivered/s at the sink) are therefore n/a; hookrelay's own "
        "counter and its SQLite records measure the queue machinery (claim → send → complete) "
        "with a zero-cost send."
    )
if not backlog_built:
    notes.append(
        f"- **The backlog did not build**: queue depth was {fmt(depth)} after posting "
        f"{fmt(backlog_n)} events with the sink stopped, so deliveries were completing without "
        "the sink; the RSS-with-backlog and drain-rate targets are not evaluated."
    )
if db_ms:
    notes.append(
        f"- stored → attempt done (fixed rate): mean {statistics.mean(db_ms):.1f} ms over "
        f"{len(db_ms):,} attempts; the SQLite database and WAL took {E['DB_MB']} MB at the end."
    )
notes.append(
    "- Noise: 2 shared cores; generator, server and sink run on the same machine, so the "
    "ceiling is itself CPU-bound by the generator. Compare ratios, not absolute numbers."
)
out.extend(notes)
print("\n".join(out))
