#!/usr/bin/env python3
"""Hostile-client probe of hookrelay's ingest, on 127.0.0.1 only.

    bench/probe.py [--bin target/release/hookrelay] [--nofile 4096] [--conns 6000]

Starts the binary on a fresh database (port 28090), runs each case once, prints
one line of figures per case, stops the server. Every loop is bounded and every
wait has a deadline, so the probe ends on its own. Standard library only.

Cases (issue #9):
  memory     300 connections each send 999,999 of a declared 1,000,000-byte signed
             body and hold; RSS before, at the peak and 15 s after they close
  fds        --conns connections each send headers and `{` and wait (the server runs
             with a soft limit of --nofile descriptors); then one real webhook: its
             status and how long it took to get an answer
  slow-body  headers and `{`, then nothing: what the server answers, and when
  slow-head  half of a request line, then nothing: what the server answers, and when
  wrong-token-huge  a wrong token with Content-Length 100 MB and no body sent
  token-mix  a right token in the header and a wrong one in the URL (and reverse)
  long-name  a 40 KB source name: length of the error answered
  bom        a signed body starting with a UTF-8 BOM
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

PORT = 28090
SECRET = b"probe-secret"
TOKEN = "probe-token"

CONFIG = f"""
server: {{ listen: "127.0.0.1:{PORT}"{{server_extra}} }}
storage: {{ url: "sqlite://{{dir}}/probe.db" }}
templates: {{ dir: "{{dir}}/templates" }}
sources:
  sb: {{ kind: simplebackups, secret: "{SECRET.decode()}" }}
  c66: {{ kind: cloud66, token: "{TOKEN}" }}
"""


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sign(body):
    return hmac.new(SECRET, body, hashlib.sha256).hexdigest()


async def request(raw, timeout=30.0):
    """Sends raw bytes, returns (status line or error, seconds)."""
    t0 = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", PORT), timeout)
        w.write(raw)
        await w.drain()
        line = await asyncio.wait_for(r.readline(), timeout)
        head = line.decode(errors="replace").strip()
        rest = b""
        try:
            rest = await asyncio.wait_for(r.read(65536), 2)
        except asyncio.TimeoutError:
            pass
        w.close()
        return head or "closed without an answer", time.monotonic() - t0, rest
    except Exception as e:  # noqa: BLE001 - the probe reports whatever happened
        return f"error: {type(e).__name__} {e}", time.monotonic() - t0, b""


def post(path, body, headers=()):
    h = f"POST {path} HTTP/1.1\r\nHost: probe\r\nContent-Length: {len(body)}\r\n"
    for k, v in headers:
        h += f"{k}: {v}\r\n"
    return h.encode() + b"\r\n" + body


def real_webhook():
    body = json.dumps({"id": time.time_ns(), "status": "error", "project": "probe"}).encode()
    return post("/hooks/sb", body, [("SB-Signature", sign(body))])


async def case_memory(pid):
    n, size = 300, 1_000_000
    before = rss_mb(pid)
    writers, answers = [], {}
    chunk = b" " * 65536

    async def one(i):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", PORT)
        except OSError as e:
            answers[i] = f"connect: {e}"
            return None
        w.write(
            f"POST /hooks/sb HTTP/1.1\r\nHost: p\r\nContent-Length: {size}\r\n"
            f"SB-Signature: {'0' * 64}\r\n\r\n{{".encode()
        )
        async def first_line():
            try:
                return (await r.readline()).decode(errors="replace").strip() or "closed"
            except Exception as e:  # noqa: BLE001 - reported as it is
                return f"closed ({type(e).__name__})"

        reader = asyncio.ensure_future(first_line())
        sent = 1
        try:
            while sent < size - 1 and not reader.done():
                part = chunk[: min(len(chunk), size - 1 - sent)]
                w.write(part)
                await asyncio.wait_for(w.drain(), 20)
                sent += len(part)
        except Exception:  # noqa: BLE001 - refused mid-body: the reader has the answer
            pass
        try:
            answers[i] = await asyncio.wait_for(asyncio.shield(reader), 0.5)
        except asyncio.TimeoutError:
            answers[i] = "holding"
            reader.cancel()
        return w

    writers = await asyncio.gather(*(one(i) for i in range(n)))
    peak = rss_mb(pid)
    for w in writers:
        if w is not None:
            w.close()
    await asyncio.sleep(15)
    after = rss_mb(pid)
    tally = {}
    for a in answers.values():
        key = " ".join(a.split()[:2]) if a.startswith("HTTP") else a
        tally[key] = tally.get(key, 0) + 1
    status, secs, _ = await request(real_webhook())
    return (
        f"RSS {before:.1f} MB before, {peak:.1f} MB with {n} x 1 MB bodies held, "
        f"{after:.1f} MB 15 s after they closed; answers while held: {tally}; "
        f"a real webhook then: {status} in {secs:.2f} s"
    )


async def case_parse(pid):
    """40 valid signed bodies of ~900 KB made of many small values, at once:
    accepted and stored; their parse trees are many small allocations."""
    before = rss_mb(pid)
    seq = time.time_ns()

    def body(i):
        items = [{"k": f"v{j}", "n": j} for j in range(30_000)]
        return json.dumps({"id": seq + i, "status": "error", "items": items}).encode()

    bodies = [body(i) for i in range(40)]
    results = await asyncio.gather(
        *(request(post("/hooks/sb", b, [("SB-Signature", sign(b))]), timeout=120) for b in bodies)
    )
    peak = rss_mb(pid)
    await asyncio.sleep(15)
    after = rss_mb(pid)
    tally = {}
    for status, _, _ in results:
        key = " ".join(status.split()[:2])
        tally[key] = tally.get(key, 0) + 1
    return (
        f"RSS {before:.1f} MB before, {peak:.1f} MB after 40 x {len(bodies[0]) // 1000} KB "
        f"signed bodies at once, {after:.1f} MB 15 s later; answers {tally}"
    )


async def case_fds(pid, conns):
    held, failed = [], 0
    head = f"POST /hooks/sb HTTP/1.1\r\nHost: p\r\nContent-Length: 100\r\nSB-Signature: {'0' * 64}\r\n\r\n{{"

    async def one():
        nonlocal failed
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", PORT), 5)
            w.write(head.encode())
            held.append(w)
        except Exception:  # noqa: BLE001 - counted
            failed += 1

    t0 = time.monotonic()
    for start in range(0, conns, 500):
        await asyncio.gather(*(one() for _ in range(min(500, conns - start))))
    opened = time.monotonic() - t0
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status, secs, _ = await request(real_webhook(), timeout=60)
    for w in held:
        w.close()
    return (
        f"{len(held)} idle connections open ({failed} failed) in {opened:.1f} s, server fds {fds}; "
        f"a real webhook then: {status} after {secs:.2f} s"
    )


async def case_slow_body():
    raw = f"POST /hooks/sb HTTP/1.1\r\nHost: p\r\nContent-Length: 100\r\nSB-Signature: {'0' * 64}\r\n\r\n{{".encode()
    status, secs, _ = await request(raw, timeout=60)
    return f"{status} after {secs:.2f} s"


async def case_slow_head():
    status, secs, _ = await request(b"POST /hooks/sb HTTP/1.1\r\nHost: p\r\n", timeout=60)
    return f"{status} after {secs:.2f} s"


async def case_wrong_token_huge():
    raw = (
        b"POST /hooks/c66?token=wrong HTTP/1.1\r\nHost: p\r\n"
        b"Content-Length: 100000000\r\n\r\n{"
    )
    status, secs, _ = await request(raw, timeout=30)
    return f"{status} after {secs:.2f} s with 1 of 100,000,000 bytes sent"


async def case_token_mix():
    body = b'{"event_type":"backup.failed"}'
    a, _, _ = await request(post(f"/hooks/c66?token=wrong", body, [("Authorization", f"Bearer {TOKEN}")]))
    b, _, _ = await request(post(f"/hooks/c66?token={TOKEN}", body, [("Authorization", "Bearer wrong")]))
    return f"right header + wrong URL token: {a}; wrong header + right URL token: {b}"


async def case_long_name():
    name = "n" * 40_000
    status, _, rest = await request(post(f"/hooks/{name}", b"{}"))
    body = rest.split(b"\r\n\r\n", 1)[-1]
    return f"{status}, answer body {len(body)} bytes"


async def case_bom():
    body = b"\xef\xbb\xbf" + json.dumps({"id": 4242, "status": "error"}).encode()
    status, _, _ = await request(post("/hooks/sb", body, [("SB-Signature", sign(body))]))
    return status


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/hookrelay")
    ap.add_argument("--nofile", type=int, default=4096)
    ap.add_argument("--conns", type=int, default=6000)
    ap.add_argument("--server", default="", help="more server keys, e.g. 'max_unauthenticated_bytes: 0'")
    ap.add_argument("--log", help="keep the server's log in this file")
    ap.add_argument("--linger", type=float, default=0, help="seconds to keep the server up after the cases")
    ap.add_argument("--cases", default="memory,fds,slow-body,slow-head,wrong-token-huge,token-mix,long-name,bom")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "relay.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG.replace("{dir}", d).replace("{server_extra}", f", {args.server}" if args.server else ""))
        log_path = args.log or os.path.join(d, "server.log")
        log = open(log_path, "w")

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))

        server = subprocess.Popen(
            [args.bin, "serve", "-c", cfg], stderr=log, stdout=subprocess.DEVNULL, preexec_fn=limit
        )
        try:
            for _ in range(100):
                s, _, _ = await request(b"GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n", timeout=1)
                if s.startswith("HTTP"):
                    break
                await asyncio.sleep(0.1)
            print(f"binary {args.bin}, server soft fd limit at start {args.nofile}", flush=True)
            for case in args.cases.split(","):
                if case == "memory":
                    out = await case_memory(server.pid)
                elif case == "parse":
                    out = await case_parse(server.pid)
                elif case == "fds":
                    out = await case_fds(server.pid, args.conns)
                    await asyncio.sleep(12)  # let the server shed them before the next case
                elif case == "slow-body":
                    out = await case_slow_body()
                elif case == "slow-head":
                    out = await case_slow_head()
                elif case == "wrong-token-huge":
                    out = await case_wrong_token_huge()
                elif case == "token-mix":
                    out = await case_token_mix()
                elif case == "long-name":
                    out = await case_long_name()
                elif case == "bom":
                    out = await case_bom()
                else:
                    out = "unknown case"
                print(f"{case:17} {out}", flush=True)
            await asyncio.sleep(args.linger)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()
            longest = 0
            with open(log_path, errors="replace") as f:
                for line in f:
                    longest = max(longest, len(line))
            print(f"longest server log line: {longest} characters")


if __name__ == "__main__":
    asyncio.run(main())
