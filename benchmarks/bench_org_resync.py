"""Cost of one org resync (requests and seconds) at 3,000 and 30,000 chats, against the demo org server.

Issue 15: the periodic org resync used to page through every chat (3,000 chats = 30 GETs every
60 s). It now reads filtered segments (human-handled / unassigned chats by status) and the newest
activity down to what the previous resync saw (``core/protocol/org.py``). This prints, per size:

* ``full``: paging through every chat (``skip``/``limit`` only), the old resync, for comparison;
* ``first``: the first resync of a run (filtered segments + one page of recent activity);
* ``idle``: the next periodic resync when nothing happened;
* ``busy``: a periodic resync after 150 AI-handled chats got new messages.

The demo server runs in this process (so the seconds include its SQLite work and its per-row
joins, which the real server also does). The chat mix: 4 % waiting for a human, 2 % held by a
human, 1 % unassigned, the rest AI-handled (half open, half resolved). The client side is the
real codec, paging the way ``net.Client`` does (``RefreshWaitingList`` of 200, clamped to 100),
over the client's HTTP layer (``net.http``: http.client on a worker thread, keep-alive);
``--http aiohttp`` pages with an aiohttp session instead, as the client did before.

    .venv/bin/python benchmarks/bench_org_resync.py [--sizes 3000,30000] [--http client|aiohttp]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tray_agent.core.commands import RefreshWaitingList  # noqa: E402
from tray_agent.core.events import WaitingListPage  # noqa: E402
from tray_agent.core.protocol.base import HttpCall  # noqa: E402
from tray_agent.core.protocol.org import OrgCodec  # noqa: E402
from tray_agent.demo.server import DemoServer  # noqa: E402
from tray_agent.net.http import HttpClient  # noqa: E402


class Http(Protocol):
    """The one call the benchmark makes: (status, body) of a request."""

    async def __call__(
        self,
        method: str,
        url: str,
        query: Sequence[tuple[str, str]],
        headers: dict[str, str],
        json: Any = None,
    ) -> tuple[int, bytes]: ...


class ClientHttp:
    """The client's HTTP layer (net.http)."""

    def __init__(self) -> None:
        self.http = HttpClient(trust_env=False)

    async def __call__(
        self,
        method: str,
        url: str,
        query: Sequence[tuple[str, str]],
        headers: dict[str, str],
        json: Any = None,
    ) -> tuple[int, bytes]:
        answer = await self.http.request(method, url, query=query, headers=headers, json=json, timeout=30)
        return answer.status, answer.body

    async def close(self) -> None:
        await self.http.close()


class AiohttpHttp:
    """An aiohttp session, as the client used before net.http."""

    def __init__(self) -> None:
        import aiohttp

        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def __call__(
        self,
        method: str,
        url: str,
        query: Sequence[tuple[str, str]],
        headers: dict[str, str],
        json: Any = None,
    ) -> tuple[int, bytes]:
        async with self.http.request(method, url, params=list(query), headers=headers, json=json) as resp:
            return resp.status, await resp.read()

    async def close(self) -> None:
        await self.http.close()


RESYNC_PAGE = 200  # what net.client asks for (the codec clamps it to the server's 100)


async def _token(http: Http, server: DemoServer) -> tuple[str, str]:
    agent = server.info.agents[0]
    anon = server.info.extra["supabase_anon_key"]
    _, raw = await http(
        "POST",
        f"{server.url}/auth/v1/token",
        [("grant_type", "password")],
        {"apikey": anon},
        {"email": agent.email, "password": agent.password},
    )
    body = json.loads(raw)
    return str(body["access_token"]), str(body["user"]["id"])


def _shape(server: DemoServer, chats: int) -> None:
    """Turn the preloaded (all waiting) chats into the mix described in the module docstring."""
    backend: Any = server.backend
    db = backend._db  # a benchmark may arrange the demo's data directly
    org = server.info.extra["org1_id"]
    ai = db.execute("SELECT id FROM agents WHERE organization_id=? AND user_id IS NULL", (org,)).fetchone()[0]
    human = db.execute(
        "SELECT id FROM agents WHERE organization_id=? AND user_id IS NOT NULL LIMIT 1", (org,)
    ).fetchone()[0]
    ids = [r[0] for r in db.execute("SELECT id FROM chats WHERE organization_id=? ORDER BY rowid", (org,))]
    with db:
        for i, chat_id in enumerate(ids):
            slot = i % 100
            stamp = f"2026-03-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.000000+00:00"
            if slot < 4:  # waiting for a human (the preload's shape)
                update = ("human", "open", ai, None)
            elif slot < 6:
                update = ("human", "assigned", human, human)
            elif slot < 7:
                update = ("unassigned", "open", None, None)
            elif slot < 53:
                update = ("ai", "open", ai, None)
            else:
                update = ("ai", "resolved", ai, None)
            db.execute(
                "UPDATE chats SET handled_by=?, status=?, assigned_agent_id=?, human_agent_id=?, "
                "last_message_at=? WHERE id=?",
                (*update, stamp, chat_id),
            )
    assert len(ids) >= chats


async def _resync(http: Http, base: str, token: str, codec: OrgCodec) -> dict[str, float]:
    """One resync exactly as net.Client pages it; requests, seconds, rows."""
    requests = rows = 0
    offset = 0
    t0 = time.perf_counter()
    while True:
        command = RefreshWaitingList(offset=offset, limit=RESYNC_PAGE)
        call = codec.encode(command)
        assert isinstance(call, HttpCall)
        status, body = await http("GET", base + call.path, call.query, {"Authorization": f"Bearer {token}"})
        requests += 1
        pages = [e for e in codec.parse_response(command, status, body) if isinstance(e, WaitingListPage)]
        if not pages:
            raise RuntimeError(f"resync failed: HTTP {status} {body[:200]!r}")
        page = pages[0]
        rows += len(page.customers)
        if not page.has_more:
            break
        offset = page.offset + len(page.customers)
    return {"requests": requests, "seconds": round(time.perf_counter() - t0, 3), "rows": rows}


async def _full(http: Http, base: str, token: str) -> dict[str, float]:
    """The old resync: every chat, 100 a page, newest first."""
    requests = rows = 0
    t0 = time.perf_counter()
    while True:
        query = [("skip", str(rows)), ("limit", "100")]
        _, raw = await http("GET", base + "/crm/chats", query, {"Authorization": f"Bearer {token}"})
        body = json.loads(raw)
        requests += 1
        got = len(body["chats"])
        rows += got
        if got == 0 or rows >= body["total"]:
            break
    return {"requests": requests, "seconds": round(time.perf_counter() - t0, 3), "rows": rows}


def _touch(server: DemoServer, count: int) -> None:
    """``count`` AI-handled open chats get a new message (last_message_at moves to the top)."""
    db: Any = server.backend._db
    rows = db.execute(
        "SELECT id FROM chats WHERE handled_by='ai' AND status='open' ORDER BY rowid LIMIT ?", (count,)
    ).fetchall()
    with db:
        for i, (chat_id,) in enumerate(rows):
            db.execute(
                "UPDATE chats SET last_message_at=? WHERE id=?",
                (f"2026-03-02T10:00:{i % 60:02d}.{i:06d}+00:00", chat_id),
            )


async def measure(chats: int, kind: str = "client") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tray-bench-resync-") as tmp:
        server = DemoServer("org", db_path=Path(tmp) / "org.sqlite3", preload=chats)
        await server.start()
        try:
            _shape(server, chats)
            http = ClientHttp() if kind == "client" else AiohttpHttp()
            try:
                token, user_id = await _token(http, server)
                codec = OrgCodec(user_id=user_id, org_id=server.info.extra["org1_id"])
                result: dict[str, Any] = {"chats": chats, "http": kind}
                result["full"] = await _full(http, server.url, token)
                result["first"] = await _resync(http, server.url, token, codec)
                result["idle"] = await _resync(http, server.url, token, codec)
                _touch(server, 150)
                result["busy"] = await _resync(http, server.url, token, codec)
                return result
            finally:
                await http.close()
        finally:
            await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3000,30000", help="comma-separated chat counts")
    parser.add_argument(
        "--http", choices=("client", "aiohttp"), default="client", help="net.http (default) or aiohttp"
    )
    args = parser.parse_args()
    results = [asyncio.run(measure(int(size), args.http)) for size in args.sizes.split(",")]
    print(f"HTTP: {args.http}")
    print(f"{'chats':>7} {'resync':>6} {'requests':>9} {'seconds':>8} {'rows':>7}")
    for result in results:
        for kind in ("full", "first", "idle", "busy"):
            r = result[kind]
            print(f"{result['chats']:>7} {kind:>6} {r['requests']:>9} {r['seconds']:>8.3f} {r['rows']:>7}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
