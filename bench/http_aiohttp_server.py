#!/usr/bin/env python3
"""Python aiohttp side of bench/http's server benchmark (klua: bench/http_server.lua, nginx:
bench/http_nginx.conf): the same trivial JSON handler, GET /hello -> {"message":"hello","n":42}.

    python http_aiohttp_server.py [--host 127.0.0.1] [--port 0]

Prints its URL (http://HOST:PORT, the bound port when --port 0) on stdout once listening, then
serves until SIGTERM or SIGINT. aiohttp's defaults (asyncio's own loop, no uvloop), access log off
(nginx's is off, klua's server keeps none).
"""
import argparse
import asyncio
import signal
import sys

from aiohttp import web

BODY = {"message": "hello", "n": 42}


async def hello(request):
    return web.json_response(BODY)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, a.host, a.port, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(f"http://{a.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
