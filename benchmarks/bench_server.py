"""Benchmark server process: the demo backend (dashboard) behind a frame-injecting proxy.

Run by ``run_all.py`` as a subprocess so that the server gets its own core. Clients sign in and
resync against the real demo backend; the load itself is pre-framed ``new_message`` /
``agent_requested`` frames written by the proxy at frame boundaries, because a websockets or
aiohttp server that frames one message per ``send`` tops out far below a receive loop
(PERFORMANCE-NOTES.md §2.2) and the demo backend's per-message SQLite write lower still.

stdout, first line: ``{"url": <proxy url>, "direct": <backend url>, "email", "password", "company"}``.
stdin, one JSON command per line; each gets one JSON answer line:

* ``{"cmd": "flood", "count": N}``: N ``new_message`` frames (20 customers) as fast as possible.
* ``{"cmd": "steady", "count": N, "rate": R}``: N ``agent_requested`` frames (each a new
  customer) at R/s; each text starts with ``ts=<CLOCK_MONOTONIC seconds>`` of its write.
* ``{"cmd": "preload", "count": N}``: N more waiting customers in the backend (no broadcast).
* ``{"cmd": "links"}``: how many WebSocket links the proxy carries.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.fault_proxy import FaultProxy, ws_frame  # noqa: E402
from tray_agent.demo.server import DemoServer  # noqa: E402

PAGE = "101000000000001"


def message_frame(page: str, customer: str, text: str, now: int) -> bytes:
    data = {
        "chat_id": customer,
        "sender_id": customer,
        "sender_name": f"Customer {customer[-4:]}",
        "recipient_id": page,
        "message": text,
        "is_bot": False,
        "timestamp": now,
    }
    payload = {"type": "new_message", "page_id": page, "data": data, "timestamp": now}
    return ws_frame(json.dumps(payload, separators=(",", ":")).encode())


def escalation_frame(page: str, customer: str, text: str, now: int) -> bytes:
    data = {"chat_id": customer, "customer_name": f"Customer {customer}", "message": text, "timestamp": now}
    payload = {"type": "agent_requested", "page_id": page, "data": data, "timestamp": now}
    return ws_frame(json.dumps(payload, separators=(",", ":")).encode())


async def write_all(proxy: FaultProxy, data: bytes) -> None:
    proxy.inject(data)
    await proxy.flush_injections()


async def flood(proxy: FaultProxy, keys: list[str], count: int) -> dict[str, float]:
    now = int(time.time())
    frames = [
        message_frame(*keys[i % len(keys)].split("/"), f"load {i} " + "x" * 40, now) for i in range(count)
    ]
    t0 = time.monotonic()
    for start in range(0, count, 500):
        await write_all(proxy, b"".join(frames[start : start + 500]))
    return {"t0": t0, "t1": time.monotonic()}


async def steady(proxy: FaultProxy, count: int, rate: float, seq: list[int]) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    t0 = time.monotonic()
    for i in range(count):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the pacing of the load itself
        seq[0] += 1
        customer = f"9{seq[0]:015d}"
        text = f"ts={time.monotonic():.6f} I want a human"
        await write_all(proxy, escalation_frame(PAGE, customer, text, int(time.time())))
    return {"t0": t0, "t1": time.monotonic()}


async def main() -> None:
    preload = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory(prefix="tray-bench-") as tmp:
        server = DemoServer(
            "dashboard",
            db_path=Path(tmp) / "bench.sqlite3",
            preload=preload,
            backend_options={"ping_interval": 3600.0, "read_timeout": 3600.0},
        )
        await server.start()
        proxy = FaultProxy("127.0.0.1", server.port)
        await proxy.start()
        agent = server.info.agents[0]
        keys = [c.ref for c in server.backend.customers()][:20]
        print(
            json.dumps(
                {
                    "url": proxy.url,
                    "direct": server.url,
                    "email": agent.email,
                    "password": agent.password,
                    "company": agent.tenant,
                }
            ),
            flush=True,
        )
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        seq = [0]
        try:
            while line := await reader.readline():
                cmd = json.loads(line)
                if cmd["cmd"] == "flood":
                    answer = await flood(proxy, keys, int(cmd["count"]))
                elif cmd["cmd"] == "steady":
                    answer = await steady(proxy, int(cmd["count"]), float(cmd["rate"]), seq)
                elif cmd["cmd"] == "preload":
                    await server.backend.preload(int(cmd["count"]))
                    answer = {"customers": len(server.backend.customers())}
                elif cmd["cmd"] == "links":
                    answer = {"links": proxy.open_connections}
                else:
                    answer = {"error": f"unknown {cmd['cmd']}"}
                print(json.dumps(answer), flush=True)
        finally:
            await proxy.stop()
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
