#!/usr/bin/env python3
"""Python aiohttp side of bench/http's client benchmark (klua: bench/http_client.lua).

    python http_aiohttp_client.py --url URL [--requests 10000] [--concurrency 100] [--warmup 100]
                                  [--expect-size BYTES]

One ClientSession (a TCPConnector of `concurrency` connections: keep-alive, no per-host cap
below it), `concurrency` coroutines each taking the next request number until `requests` GETs
are done. The warm-up (untimed) opens the connections; then the timed phase runs from just before
the first GET to the last body read. Every response must be 200 with a body of --expect-size
bytes (when given). Prints one line of JSON:
  {"requests":N,"seconds":T,"rps":R,"errors":E,"bytes":B,"p50_ms":..,"p99_ms":..}
"""
import argparse
import asyncio
import json
import sys
import time

import aiohttp


async def batch(session, url, n, concurrency, expect):
    next_i = 0
    lat = []
    stats = {"errors": 0, "bytes": 0, "first_error": None}

    async def worker():
        nonlocal next_i
        while next_i < n:
            next_i += 1
            t0 = time.perf_counter()
            try:
                async with session.get(url) as r:
                    body = await r.read()
                    ok = r.status == 200 and (expect is None or len(body) == expect)
                    if not ok and stats["first_error"] is None:
                        stats["first_error"] = f"status {r.status}, {len(body)} bytes"
            except aiohttp.ClientError as e:
                ok, body = False, b""
                if stats["first_error"] is None:
                    stats["first_error"] = repr(e)
            lat.append(time.perf_counter() - t0)
            stats["bytes"] += len(body)
            if not ok:
                stats["errors"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, stats


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=None, help="untimed GETs first (default: concurrency)")
    ap.add_argument("--expect-size", type=int, default=None)
    a = ap.parse_args()
    warmup = a.concurrency if a.warmup is None else a.warmup
    conn = aiohttp.TCPConnector(limit=a.concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        if warmup:
            await batch(session, a.url, warmup, a.concurrency, a.expect_size)
        t0, c0 = time.perf_counter(), time.process_time()
        lat, stats = await batch(session, a.url, a.requests, a.concurrency, a.expect_size)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    lat.sort()
    pick = lambda q: lat[max(0, min(len(lat) - 1, int(-(-q * len(lat) // 1)) - 1))] * 1000 if lat else None
    out = {"requests": len(lat), "seconds": secs, "rps": len(lat) / secs if secs > 0 else 0, "cpu_s": cpu,
           "errors": stats["errors"], "bytes": stats["bytes"], "p50_ms": pick(0.50), "p99_ms": pick(0.99)}
    if stats["first_error"]:
        out["first_error"] = stats["first_error"]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
