"""The demo server's control API (loopback-only scripted events, load mode) and dialect selection."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from tests.demo.conftest import control, login, open_socket, recv
from tray_agent.demo.server import DemoServer, is_loopback


def test_control_is_loopback_only() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.8.0.1")
    assert is_loopback("::1")
    assert not is_loopback("192.168.1.20")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback(None)
    assert not is_loopback("garbage")


@pytest.mark.asyncio
async def test_info_and_scripted_events(dashboard_server: DemoServer, http: aiohttp.ClientSession) -> None:
    info = await control(http, dashboard_server, "info")
    assert info["dialect"] == "dashboard"
    assert info["url"] == dashboard_server.url
    assert info["control"] == dashboard_server.url + "/_demo/control"
    assert {a["email"] for a in info["agents"]} >= {"alice@acme.test", "carol@globex.test"}
    assert info["customers"] == 0
    assert info["sockets"] == 0

    created = await control(http, dashboard_server, "new_customer", name="Siti Lestari", language="id")
    assert created["customer"]["language"] == "id"
    assert created["customer"]["channel"] == "101000000000002"  # the Indonesian page
    ref = created["customer"]["ref"]
    token = await login(http, dashboard_server)
    async with await open_socket(dashboard_server, token) as ws:
        assert (await control(http, dashboard_server, "info"))["sockets"] == 1
        await control(http, dashboard_server, "customer_writes", customer=ref, text="Halo kak")
        assert (await recv(ws))["data"]["message"] == "Halo kak"
        await control(http, dashboard_server, "ask_for_human", customer=ref)
        frames = [await recv(ws) for _ in range(4)]
        assert [f["type"] for f in frames] == [
            "new_message",
            "agent_requested",
            "customer_stop_status_changed",
            "new_message",
        ]
        await control(http, dashboard_server, "customer_leaves", customer=ref)
        left = await recv(ws)
        assert left["type"] == "customer_stop_status_changed"
        assert left["data"]["stop"] is False


@pytest.mark.asyncio
async def test_bad_requests(dashboard_server: DemoServer, http: aiohttp.ClientSession) -> None:
    url = dashboard_server.url + "/_demo/control"
    for body in ({"action": "nope"}, {"action": "customer_leaves", "customer": "x/y"}, {"no": "action"}):
        async with http.post(url, json=body) as resp:
            assert resp.status == 400
            assert "error" in await resp.json()
    async with http.post(url, data="{") as resp:
        assert resp.status == 400


@pytest.mark.asyncio
async def test_burst_preload_and_load_agents(
    dashboard_server: DemoServer, http: aiohttp.ClientSession
) -> None:
    token = await login(http, dashboard_server)
    async with await open_socket(dashboard_server, token) as ws:
        result = await control(http, dashboard_server, "burst", count=200, rate=2000, customers=5, wait=True)
        assert result["sent"] == 200
        texts = [(await recv(ws))["data"]["message"] for _ in range(200)]
        assert texts == [f"load {i}" for i in range(200)]
    await control(http, dashboard_server, "preload", count=3, tenant="globex")
    carol = await login(http, dashboard_server, "carol@globex.test")
    async with await open_socket(dashboard_server, carol) as ws:
        await ws.send(json.dumps({"type": "get_stopped_customers"}))
        assert (await recv(ws))["data"]["pagination"]["total"] == 3
    agents = (await control(http, dashboard_server, "add_agents", count=3, tenant="globex"))["agents"]
    assert [a["email"] for a in agents] == ["load-0@globex.test", "load-1@globex.test", "load-2@globex.test"]
    async with http.post(
        dashboard_server.url + "/auth/login",
        json={"email": agents[2]["email"], "password": agents[2]["password"], "company_id": "globex"},
    ) as resp:
        assert resp.status == 200


@pytest.mark.asyncio
async def test_org_dialect_is_selected(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with DemoServer("org", db_path=tmp_path / "org.sqlite3") as server:
        info = await control(http, server, "info")
        assert info["dialect"] == "org"
        assert info["agents"]
        created = await control(http, server, "new_customer")
        assert created["customer"]["ref"]
        await control(http, server, "ask_for_human", customer=created["customer"]["ref"])
