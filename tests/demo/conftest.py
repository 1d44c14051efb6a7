"""Fixtures for the demo backend tests: in-process servers on 127.0.0.1 port 0 and raw clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from tray_agent.demo.base import DemoAgent
from tray_agent.demo.server import DemoServer

FRAME_TIMEOUT = 5.0


class EpochClock:
    """The demo backend's ``clock`` (``Callable[[], float]``, epoch seconds), moved by hand.

    Not a Clock port (see tests.helpers.fakes for those).
    """

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> EpochClock:
    return EpochClock()


@pytest.fixture
def backend_options(clock: EpochClock) -> dict[str, Any]:
    """Long keepalive intervals (tests that need short ones override this fixture)."""
    return {"ping_interval": 3600.0, "read_timeout": 3600.0, "clock": clock}


@pytest_asyncio.fixture
async def dashboard_server(tmp_path: Path, backend_options: dict[str, Any]) -> AsyncIterator[DemoServer]:
    """The dashboard dialect served in-process on a free loopback port."""
    server = DemoServer("dashboard", db_path=tmp_path / "demo.sqlite3", backend_options=backend_options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client with no cookie jar (cookies are passed explicitly)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


def agent(server: DemoServer, email: str) -> DemoAgent:
    return next(a for a in server.info.agents if a.email == email)


async def login(http: aiohttp.ClientSession, server: DemoServer, email: str = "alice@acme.test") -> str:
    """Sign in and return the ``session`` cookie value."""
    who = agent(server, email)
    async with http.post(
        server.url + "/auth/login",
        json={"email": who.email, "password": who.password, "company_id": who.tenant},
    ) as resp:
        assert resp.status == 200, await resp.text()
        return resp.cookies["session"].value


def ws_url(server: DemoServer) -> str:
    return server.url.replace("http://", "ws://") + "/api/dashboard/ws"


async def open_socket(server: DemoServer, token: str) -> ClientConnection:
    """Open the dashboard socket and consume the ``connected`` frame."""
    ws = await connect(ws_url(server), additional_headers={"Cookie": f"session={token}"})
    first = await recv(ws)
    assert first["type"] == "connected"
    return ws


async def recv(ws: ClientConnection, wait: float = FRAME_TIMEOUT) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), wait)
    frame = json.loads(raw)
    assert isinstance(frame, dict)
    return frame


async def recv_type(ws: ClientConnection, type_: str, wait: float = FRAME_TIMEOUT) -> dict[str, Any]:
    """Skip frames until one of ``type_`` arrives."""
    while True:
        frame = await recv(ws, wait)
        if frame["type"] == type_:
            return frame


async def control(
    http: aiohttp.ClientSession, server: DemoServer, action: str, **params: Any
) -> dict[str, Any]:
    async with http.post(server.url + "/_demo/control", json={"action": action, **params}) as resp:
        assert resp.status == 200, await resp.text()
        result: dict[str, Any] = await resp.json()
        return result
