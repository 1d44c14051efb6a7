"""`tray-agent demo-server` as a subprocess: machine-readable first line, durability, clean exit."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

START_TIMEOUT = 30.0


async def start_server(db: Path, *extra: str) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
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
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
    return proc, json.loads(line)


async def login(http: aiohttp.ClientSession, url: str, agent: dict[str, Any]) -> str:
    body = {"email": agent["email"], "password": agent["password"], "company_id": agent["tenant"]}
    async with http.post(url + "/auth/login", json=body) as resp:
        assert resp.status == 200
        return resp.cookies["session"].value


async def stop(proc: asyncio.subprocess.Process, sig: int) -> int:
    proc.send_signal(sig)
    return await asyncio.wait_for(proc.wait(), START_TIMEOUT)


@pytest.mark.asyncio
async def test_first_line_and_durability_across_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite3"
    proc, first = await start_server(db, "--preload", "2")
    try:
        assert first["dialect"] == "dashboard"
        assert first["url"].startswith("http://127.0.0.1:")
        assert first["control"] == first["url"] + "/_demo/control"
        alice = next(a for a in first["agents"] if a["email"] == "alice@acme.test")
        assert alice["tenant"] == "acme"
        url = first["url"]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            token = await login(http, url, alice)
            cookie = {"Cookie": f"session={token}"}
            refs = []
            for _ in range(2):
                async with http.post(url + "/_demo/control", json={"action": "ask_for_human"}) as resp:
                    refs.append((await resp.json())["customer"]["ref"])
            # Acknowledged over REST: reply (auto-assigns).
            page_a, _, psid_a = refs[0].partition("/")
            async with http.post(
                url + f"/api/dashboard/customers/{psid_a}/message",
                json={"page_id": page_a, "message": "On it!"},
                headers=cookie,
            ) as resp:
                assert resp.status == 200
            # Acknowledged over the socket: assign_agent -> agent_assigned.
            page_b, _, psid_b = refs[1].partition("/")
            ws_url = url.replace("http://", "ws://") + "/api/dashboard/ws"
            async with connect(ws_url, additional_headers=cookie) as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connected"
                await ws.send(
                    json.dumps({"type": "assign_agent", "data": {"customer_id": psid_b, "page_id": page_b}})
                )
                while json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] != "agent_assigned":
                    pass
    finally:
        proc.kill()  # SIGKILL: no chance to flush anything
        await proc.wait()

    proc, first = await start_server(db)
    try:
        url = first["url"]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            cookie = {"Cookie": f"session={token}"}  # the session survived too
            async with http.get(url + "/api/dashboard/customers", headers=cookie) as resp:
                assert resp.status == 200
                customers = (await resp.json())["customers"]
            assert len(customers) == 4  # two preloaded + two escalated
            by_ref = {f"{c['page_id']}/{c['customer_id']}": c for c in customers}
            for ref in refs:
                assert by_ref[ref]["stop"] is True
                assert by_ref[ref]["agent_id"] == alice["user_id"]
            async with http.get(
                url + f"/api/dashboard/messages/conversation/{psid_a}",
                params={"page_id": page_a},
                headers=cookie,
            ) as resp:
                messages = (await resp.json())["conversation"]
            assert messages[0]["message"] == "On it!"
            assert messages[0]["is_human"] is True
    finally:
        rc = await stop(proc, signal.SIGINT)
    assert rc == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_signal_exits_cleanly(tmp_path: Path, sig: int) -> None:
    proc, first = await start_server(tmp_path / "demo.sqlite3")
    assert first["agents"]
    assert await stop(proc, sig) == 0
