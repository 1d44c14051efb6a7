"""Load benchmark of the demo dashboard server: many sockets, and a 1,000 events/s broadcast.

Runs the server as a subprocess (`python -m tray_agent demo-server`), so the server and the
clients get a core each, and prints figures. Not a test: it asserts nothing, it reports.

    .venv/bin/python benchmarks/demo_load.py [--sockets 2000] [--rate 1000] [--seconds 10]

Scenario A: N sockets (N distinct agents: the server keeps one socket per user) connected at
once; a short burst of customer messages must reach every socket.
Scenario B: a steady stream of customer messages at RATE/s for SECONDS, broadcast to a few
sockets; every frame must arrive (the real server would only drop frames when a socket's
256-frame queue is full, which a reader that keeps up never hits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def start_server(db: Path) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tray_agent",
        "demo-server",
        "--dialect",
        "dashboard",
        "--port",
        "0",
        "--db",
        str(db),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
    return proc, first


async def control(http: aiohttp.ClientSession, url: str, action: str, **params: Any) -> dict[str, Any]:
    async with http.post(url + "/_demo/control", json={"action": action, **params}) as resp:
        resp.raise_for_status()
        result: dict[str, Any] = await resp.json()
        return result


async def login_all(http: aiohttp.ClientSession, url: str, agents: list[dict[str, Any]]) -> list[str]:
    limit = asyncio.Semaphore(32)

    async def one(agent: dict[str, Any]) -> str:
        async with limit:
            body = {"email": agent["email"], "password": agent["password"], "company_id": agent["tenant"]}
            async with http.post(url + "/auth/login", json=body) as resp:
                resp.raise_for_status()
                return resp.cookies["session"].value

    return await asyncio.gather(*(one(a) for a in agents))


async def open_all(url: str, tokens: list[str]) -> list[ClientConnection]:
    ws_url = url.replace("http://", "ws://") + "/api/dashboard/ws"
    limit = asyncio.Semaphore(64)

    async def one(token: str) -> ClientConnection:
        async with limit:
            ws = await connect(ws_url, additional_headers={"Cookie": f"session={token}"}, max_queue=None)
            first = json.loads(await ws.recv())
            assert first["type"] == "connected"
            return ws

    return await asyncio.gather(*(one(t) for t in tokens))


async def receive(ws: ClientConnection, expected: int, deadline: float) -> tuple[int, float]:
    """Count ``new_message`` frames until ``expected`` arrived or the deadline; (count, last time)."""
    got = 0
    last = 0.0
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        while got < expected:
            raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - loop.time()))
            if json.loads(raw)["type"] == "new_message":
                got += 1
                last = time.perf_counter()
    return got, last


async def burst(
    http: aiohttp.ClientSession, url: str, sockets: list[ClientConnection], count: int, rate: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + count / rate + 60
    receivers = [asyncio.create_task(receive(ws, count, deadline)) for ws in sockets]
    started = time.perf_counter()
    sent = await control(http, url, "burst", count=count, rate=rate, customers=20, wait=True)
    results = await asyncio.gather(*receivers)
    received = sum(r[0] for r in results)
    finished = max(r[1] for r in results) - started
    info = await control(http, url, "info")
    return {
        "sockets": len(sockets),
        "events": count,
        "target_rate": rate,
        "server_rate": sent["rate"],
        "frames_expected": count * len(sockets),
        "frames_received": received,
        "frames_lost": count * len(sockets) - received,
        "server_dropped_total": info["broadcasts_dropped"],
        "all_delivered_after_s": round(finished, 2),
        "delivered_frames_per_s": round(received / finished) if finished > 0 else None,
    }


async def main(args: argparse.Namespace) -> None:
    fd_limit = raise_fd_limit(args.sockets * 2 + 1000)
    print(f"fd limit: {fd_limit}")
    with tempfile.TemporaryDirectory() as tmp:
        proc, first = await start_server(Path(tmp) / "load.sqlite3")
        url = first["url"]
        try:
            async with aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=64)
            ) as http:
                agents = (await control(http, url, "add_agents", count=args.sockets, tenant="acme"))["agents"]
                t0 = time.perf_counter()
                tokens = await login_all(http, url, agents)
                t1 = time.perf_counter()
                sockets = await open_all(url, tokens)
                t2 = time.perf_counter()
                info = await control(http, url, "info")
                print(
                    f"A: {len(tokens)} logins in {t1 - t0:.2f} s;"
                    f" {len(sockets)} sockets opened in {t2 - t1:.2f} s;"
                    f" server reports {info['sockets']} open sockets"
                )
                result = await burst(http, url, sockets, args.fanout_events, args.fanout_rate)
                print("A: fan-out to every socket:", json.dumps(result))
                for ws in sockets[args.stream_sockets :]:
                    await ws.close()
                few = sockets[: args.stream_sockets]
                result = await burst(http, url, few, int(args.rate * args.seconds), args.rate)
                print("B: steady stream:", json.dumps(result))
                for ws in few:
                    await ws.close()
        finally:
            proc.terminate()
            await proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--fanout-events", type=int, default=20, help="events broadcast to all sockets (A)")
    parser.add_argument("--fanout-rate", type=float, default=20.0, help="their rate per second (A)")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second (B)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of B")
    parser.add_argument("--stream-sockets", type=int, default=5, help="sockets listening during B")
    asyncio.run(main(parser.parse_args()))
