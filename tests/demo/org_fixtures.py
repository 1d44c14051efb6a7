"""Fixtures for the org dialect's protocol tests: a real OrgBackend on 127.0.0.1, plain clients."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web
from websockets.asyncio.client import ClientConnection

from tray_agent.demo.base import DemoInfo
from tray_agent.demo.org import OrgBackend

NAIVE_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$")
DB_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
API_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


class TickingClock:
    """A clock that moves 1.5 ms per reading (distinct timestamps) and can jump ahead."""

    def __init__(self) -> None:
        self._now = datetime(2026, 3, 21, 8, 15, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        self._now += timedelta(microseconds=1500)
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


@dataclass
class OrgServer:
    """One running backend plus an HTTP session to talk to it."""

    backend: OrgBackend
    runner: web.AppRunner
    base: str
    session: aiohttp.ClientSession
    clock: TickingClock
    info: DemoInfo = field(init=False)

    def __post_init__(self) -> None:
        self.info = self.backend.info(self.base)

    @property
    def anon_key(self) -> str:
        return self.info.extra["supabase_anon_key"]

    @property
    def org1(self) -> str:
        return self.info.extra["org1_id"]

    @property
    def org2(self) -> str:
        return self.info.extra["org2_id"]

    def agent(self, org: str, index: int = 0) -> Any:
        return [a for a in self.info.agents if a.tenant == org][index]

    def ws_url(self, org: str, token: str | None) -> str:
        url = self.base.replace("http://", "ws://") + f"/ws/{org}"
        return url if token is None else f"{url}?token={token}"

    async def grant(
        self, grant_type: str, body: dict[str, Any], apikey: str | None = ""
    ) -> aiohttp.ClientResponse:
        headers = {} if apikey is None else {"apikey": apikey or self.anon_key}
        return await self.session.post(
            f"{self.base}/auth/v1/token", params={"grant_type": grant_type}, json=body, headers=headers
        )

    async def login(self, email: str, password: str = "demo1234") -> dict[str, Any]:
        async with await self.grant("password", {"email": email, "password": password}) as resp:
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())

    async def token(self, org: str, index: int = 0) -> str:
        return str((await self.login(self.agent(org, index).email))["access_token"])

    async def api(self, method: str, path: str, token: str | None, **kwargs: Any) -> tuple[int, Any]:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, f"{self.base}{path}", headers=headers, **kwargs) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)


async def recv_json(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    """The next frame, parsed."""
    return dict(json.loads(await asyncio.wait_for(ws.recv(), within)))


async def recv_until(ws: ClientConnection, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Skip frames until one matches."""
    while True:
        frame = await recv_json(ws)
        if predicate(frame):
            return frame


ServerFactory = Callable[..., Awaitable[OrgServer]]


@pytest_asyncio.fixture
async def make_org_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start backends (several may share one db file, one after the other) and clean them all up."""
    started: list[OrgServer] = []

    async def start(db_name: str = "org.sqlite3", **tunables: Any) -> OrgServer:
        clock = tunables.pop("now", None) or TickingClock()
        backend = OrgBackend(db_path=tmp_path / db_name, now=clock, **tunables)
        app = web.Application()
        backend.add_routes(app)
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        session = aiohttp.ClientSession()
        server = OrgServer(backend, runner, f"http://127.0.0.1:{port}", session, clock)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await stop(server)


async def stop(server: OrgServer) -> None:
    """Stop one server (idempotent)."""
    if server.session.closed:
        return
    await server.session.close()
    await server.backend.close()
    await server.runner.cleanup()


@pytest_asyncio.fixture
async def org_server(make_org_server: ServerFactory) -> OrgServer:
    """A backend with a shrunk JSON-ping idle time."""
    return await make_org_server(ping_after=0.3)
