"""httpx against aiohttp for the dispatcher's traffic: N POSTs, C in flight, to the stub application.

    python bench/http_clients.py [--requests 5000] [--concurrency 100]

Prints requests per second and client CPU per request (this process), the stub in its own process.
"""

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps({"type": "experiment.test", "data": {"testId": "x" * 36, "task": {"input": {"q": "What is 2 + 2?"}}}}).encode()
HEADERS = {"content-type": "application/json", "webhook-id": "msg_x", "webhook-timestamp": "0", "webhook-signature": "v1,x"}


async def run_httpx(url, requests, concurrency, per_client):
    import httpx

    slots = asyncio.Semaphore(concurrency)
    clients = []
    for _ in range(0, concurrency, per_client):
        limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
        clients.append([httpx.AsyncClient(limits=limits, trust_env=False, timeout=None), per_client])

    async def one():
        async with slots:
            entry = max(clients, key=lambda item: item[1])
            entry[1] -= 1
            try:
                async with entry[0].stream("POST", url, content=BODY, headers=HEADERS) as response:
                    await response.aread()
            finally:
                entry[1] += 1

    await asyncio.gather(*(one() for _ in range(requests)))
    for client, _ in clients:
        await client.aclose()


async def run_aiohttp(url, requests, concurrency, per_client):
    import aiohttp

    slots = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False) as session:

        async def one():
            async with slots, session.post(url, data=BODY, headers=HEADERS, allow_redirects=False) as response:
                await response.read()

        await asyncio.gather(*(one() for _ in range(requests)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = subprocess.Popen([sys.executable, str(ROOT / "bench" / "slow_app.py"), str(port), "0"], stdout=subprocess.PIPE, text=True)
    app.stdout.readline()
    url = f"http://127.0.0.1:{port}/hook"
    try:
        for name, runner, per_client in [
            ("httpx, clients of 10", run_httpx, 10),
            ("httpx, one client", run_httpx, args.concurrency),
            ("aiohttp", run_aiohttp, 0),
        ]:
            asyncio.run(runner(url, 200, args.concurrency, per_client or 1))  # warm-up
            cpu, wall = time.process_time(), time.perf_counter()
            asyncio.run(runner(url, args.requests, args.concurrency, per_client or 1))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(
                json.dumps(
                    {
                        "client": name,
                        "requests_per_s": round(args.requests / wall),
                        "cpu_ms_per_request": round(cpu * 1000 / args.requests, 3),
                    }
                )
            )
    finally:
        app.terminate()


if __name__ == "__main__":
    main()
