"""Scripted WebSocket + HTTP fakes of the two backends, for net tests (NOT the demo server).

Each server listens on 127.0.0.1 port 0 (aiohttp), speaks just enough of PROTOCOL.md to sign in,
resync and answer commands, and lets a test push frames, read what the client sent, reject
handshakes, go silent (half-open), drop or restart, answer REST calls with canned JSON and count
everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.helpers.fakes import make_jwt

Json = dict[str, Any]
RestHandler = Callable[["RecordedRequest"], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass
class RecordedRequest:
    """One HTTP request the server saw."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    form: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class ScriptedConnection:
    """One accepted WebSocket on the server side."""

    def __init__(self, server: ScriptedServer, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.server = server
        self.request = request
        self.ws = ws
        self.received: list[str] = []
        self.inbox: asyncio.Queue[str] = asyncio.Queue()
        self.silent = False  # half-open: stop answering anything (pongs, commands)
        self.closed = asyncio.Event()

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.request.headers)

    async def send(self, frame: str | Json) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def send_bytes(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_bytes(data)

    async def close(self, code: int = 1000, message: bytes = b"") -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code, message=message)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (network loss / crash)."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def next_frame(self, within: float = 5.0) -> Json:
        return json.loads(await asyncio.wait_for(self.inbox.get(), within))

    def frames_of(self, kind: str) -> list[Json]:
        out = []
        for text in self.received:
            with contextlib.suppress(ValueError):
                obj = json.loads(text)
                if isinstance(obj, dict) and obj.get("type") == kind:
                    out.append(obj)
        return out


class ScriptedServer:
    """Base: the aiohttp app, connection bookkeeping, request log, restart."""

    ws_path = "/ws"

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_route("GET", self.ws_path, self._ws_entry)
        self.app.router.add_route("*", "/{tail:.*}", self._http_entry)
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None
        self.port = 0
        self.connections: list[ScriptedConnection] = []
        self.new_connections: asyncio.Queue[ScriptedConnection] = asyncio.Queue()
        self.handshakes = 0  # WebSocket upgrade attempts (accepted or not)
        self.rejected = 0
        self.reject_status: int | None = None  # reject every handshake with this status
        self.requests: list[RecordedRequest] = []
        self.routes: dict[tuple[str, str], RestHandler] = {}
        self.frame_hook: Callable[[ScriptedConnection, Json], Awaitable[bool]] | None = None
        self._changed = asyncio.Event()  # set on every request / handshake / frame

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ScriptedServer:
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        await self._listen()
        return self

    async def _listen(self) -> None:
        assert self.runner is not None
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await self.site.start()
        if not self.port:
            server = self.site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def drop_all(self, *, abort: bool = True) -> None:
        for conn in list(self.live()):
            if abort:
                conn.abort()
            else:
                await conn.close(1012, b"service restart")

    async def go_down(self) -> None:
        """Stop listening and drop every connection (a crashed server)."""
        await self.drop_all()
        if self.site is not None:
            await self.site.stop()
            self.site = None

    async def come_up(self) -> None:
        await self._listen()

    async def restart(self) -> None:
        await self.go_down()
        await self.come_up()

    async def stop(self) -> None:
        for conn in self.live():
            await conn.close(1001)
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def __aenter__(self) -> ScriptedServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def live(self) -> list[ScriptedConnection]:
        return [c for c in self.connections if not c.closed.is_set()]

    async def next_connection(self, within: float = 5.0) -> ScriptedConnection:
        return await asyncio.wait_for(self.new_connections.get(), within)

    async def broadcast(self, frame: str | Json) -> None:
        for conn in self.live():
            await conn.send(frame)

    async def wait_until(self, condition: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until ``condition()`` holds, re-checking after every request, handshake or frame."""

        async def watch() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(watch(), within)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # -- WebSocket ------------------------------------------------------------------------------

    def check_handshake(self, request: web.Request) -> web.StreamResponse | None:
        """Return a rejection response, or None to accept (dialects override)."""
        return None

    async def welcome(self, conn: ScriptedConnection) -> None:
        """First frames after accept (dialects override)."""

    async def on_frame(self, conn: ScriptedConnection, frame: Json) -> None:
        """Answer one client frame (dialects override)."""

    async def _ws_entry(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        self._changed.set()
        if self.reject_status is not None:
            self.rejected += 1
            return web.json_response({"error": "rejected by script"}, status=self.reject_status)
        rejection = self.check_handshake(request)
        if rejection is not None:
            self.rejected += 1
            return rejection
        ws = web.WebSocketResponse(autoping=True, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn = ScriptedConnection(self, request, ws)
        self.connections.append(conn)
        try:
            await self.welcome(conn)
            self.new_connections.put_nowait(conn)
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                conn.received.append(msg.data)
                self._changed.set()
                conn.inbox.put_nowait(msg.data)
                if conn.silent:
                    continue
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    continue
                if not isinstance(frame, dict):
                    continue
                if self.frame_hook is not None and await self.frame_hook(conn, frame):
                    continue
                await self.on_frame(conn, frame)
        finally:
            conn.closed.set()
        return ws

    # -- HTTP -----------------------------------------------------------------------------------

    async def _http_entry(self, request: web.Request) -> web.StreamResponse:
        form: dict[str, str] = {}
        body = b""
        if request.content_type.startswith("multipart/"):
            posted = await request.post()
            form = {k: v if isinstance(v, str) else v.file.read().decode() for k, v in posted.items()}
        else:
            body = await request.read()
        record = RecordedRequest(
            request.method, request.path, dict(request.query), dict(request.headers), body, form
        )
        self.requests.append(record)
        self._changed.set()
        handler = self.routes.get((request.method, request.path)) or self.route(record)
        if handler is None:
            return web.json_response({"error": "not found"}, status=404)
        result = handler(record)
        if isinstance(result, web.StreamResponse):
            return result
        return await result

    def route(self, record: RecordedRequest) -> RestHandler | None:
        """Dialect routes for paths with parameters (dialects override)."""
        return None


# =============================================================================================
# Dashboard dialect (PROTOCOL.md 2)
# =============================================================================================


def dashboard_customer(
    page_id: str, customer_id: str, *, name: str = "", stop: bool = True, agent_id: str = ""
) -> Json:
    return {
        "id": secrets.token_hex(12),
        "customer_id": customer_id,
        "customer_name": name or f"Customer {customer_id}",
        "page_id": page_id,
        "page_name": f"Page {page_id}",
        "company_id": "co1",
        "message_count": 1,
        "last_message": "hello",
        "last_seen": "2026-01-01T10:00:00Z",
        "stop": stop,
        "stopped_at": "2026-01-01T10:00:00Z",
        "is_assigned": bool(agent_id),
        "agent_id": agent_id,
        "created_at": "2026-01-01T09:00:00Z",
        "updated_at": "2026-01-01T10:00:00Z",
    }


class DashboardServer(ScriptedServer):
    """Go Fiber dashboard fake: cookie login, ``/api/dashboard/ws``, WS commands."""

    ws_path = "/api/dashboard/ws"

    def __init__(
        self, *, email: str = "agent@example.com", password: str = "pw", company: str = "co1"
    ) -> None:
        super().__init__()
        self.email, self.password, self.company = email, password, company
        self.user_id = "u" + secrets.token_hex(11)
        self.sessions: set[str] = set()
        self.logins = 0
        self.checks = 0
        self.customers: list[Json] = []
        self.command_errors: dict[str, str] = {}  # frame type -> error text to answer once
        self.swallow: set[str] = set()  # frame types that get no answer at all
        self.routes[("POST", "/auth/login")] = self._login
        self.routes[("GET", "/auth/check")] = self._check

    def _session_of(self, headers: Any) -> str:
        cookie = headers.get("Cookie", "")
        for part in cookie.split(";"):
            name, _, value = part.strip().partition("=")
            if name == "session":
                return value
        return ""

    def _login(self, record: RecordedRequest) -> web.StreamResponse:
        self.logins += 1
        body = record.json() or {}
        if not all(body.get(k) for k in ("email", "password", "company_id")):
            return web.json_response({"error": "Email, password, and company_id are required"}, status=400)
        if (body["email"], body["password"], body["company_id"]) != (self.email, self.password, self.company):
            return web.json_response({"error": "Invalid credentials"}, status=401)
        session = secrets.token_hex(32)
        self.sessions.add(session)
        response = web.json_response(
            {
                "message": "Login successful",
                "user": {"id": self.user_id, "email": self.email, "company_id": self.company},
            }
        )
        secure = "Origin" in record.headers  # the Secure-cookie trap of G2
        attrs = "; SameSite=None; Secure" if secure else "; SameSite=Lax"
        response.headers.add("Set-Cookie", f"session={session}; Path=/; HttpOnly{attrs}")
        return response

    def _check(self, record: RecordedRequest) -> web.StreamResponse:
        self.checks += 1
        if self._session_of(record.headers) in self.sessions:
            return web.json_response(
                {"authenticated": True, "user_id": self.user_id, "company_id": self.company}
            )
        return web.json_response({"authenticated": False})

    def check_handshake(self, request: web.Request) -> web.StreamResponse | None:
        session = self._session_of(request.headers)
        if not session:
            return web.json_response({"error": "Authentication required"}, status=401)
        if session not in self.sessions:
            return web.json_response({"error": "Invalid or expired session"}, status=401)
        return None

    async def welcome(self, conn: ScriptedConnection) -> None:
        await conn.send(
            {"type": "connected", "message": "WebSocket connection established", "user_id": self.user_id}
        )

    def _find(self, page_id: str, customer_id: str) -> Json | None:
        for c in self.customers:
            if c["page_id"] == page_id and c["customer_id"] == customer_id:
                return c
        return None

    async def on_frame(self, conn: ScriptedConnection, frame: Json) -> None:
        kind = frame.get("type")
        now = int(time.time())
        if kind in self.swallow:
            return
        if kind in self.command_errors:
            await conn.send({"type": "error", "error": self.command_errors.pop(str(kind))})
            return
        if kind == "ping":
            await conn.send({"type": "pong"})
        elif kind == "get_stopped_customers":
            data = frame.get("data") or {}
            limit = data.get("limit", 50)
            limit = 50 if limit <= 0 or limit > 200 else limit
            skip = data.get("skip", 0)
            stopped = [c for c in self.customers if c["stop"]]
            chunk = stopped[skip : skip + limit]
            rows = [{**c, "is_assigned_to_me": c["agent_id"] == self.user_id} for c in chunk]
            await conn.send(
                {
                    "type": "stopped_customers",
                    "data": {
                        "customers": rows,
                        "pagination": {
                            "total": len(stopped),
                            "limit": limit,
                            "skip": skip,
                            "has_more": skip + limit < len(stopped),
                        },
                        "page_id": "",
                    },
                    "timestamp": now,
                }
            )
        elif kind in ("assign_agent", "unassign_agent"):
            data = frame.get("data") or {}
            customer = self._find(data.get("page_id", ""), data.get("customer_id", ""))
            if customer is None:
                await conn.send({"type": "error", "error": "Customer not found"})
                return
            if kind == "assign_agent":
                customer["agent_id"], customer["is_assigned"] = self.user_id, True
                await conn.send(
                    {
                        "type": "agent_assigned",
                        "data": {
                            "customer": customer,
                            "agent_id": self.user_id,
                            "agent_email": "",
                            "agent_name": "",
                        },
                        "timestamp": now,
                    }
                )
                await self.broadcast(
                    {
                        "type": "agent_assignment_changed",
                        "page_id": customer["page_id"],
                        "data": {
                            "customer_id": customer["customer_id"],
                            "customer": customer,
                            "agent_id": self.user_id,
                            "agent_email": "",
                            "agent_name": "",
                            "action": "assigned",
                            "timestamp": now,
                        },
                        "timestamp": now,
                    }
                )
            else:
                if customer["agent_id"] != self.user_id:
                    await conn.send({"type": "error", "error": "You are not assigned to this customer"})
                    return
                customer["agent_id"], customer["is_assigned"] = "", False
                await conn.send(
                    {"type": "agent_unassigned", "data": {"customer": customer}, "timestamp": now}
                )
        elif kind == "send_message":
            page_id, customer_id, text = frame.get("page_id"), frame.get("customer_id"), frame.get("message")
            if not (page_id and customer_id and text):
                await conn.send(
                    {"type": "error", "error": "Missing required fields: customer_id, page_id, and message"}
                )
                return
            if self._find(page_id, customer_id) is None:
                await conn.send({"type": "error", "error": "Customer not found"})
                return
            await conn.send(
                {
                    "type": "message_sent",
                    "customer_id": customer_id,
                    "page_id": page_id,
                    "message": text,
                    "timestamp": now,
                }
            )
            await self.broadcast(
                {
                    "type": "new_message",
                    "page_id": page_id,
                    "data": {
                        "chat_id": customer_id,
                        "sender_id": page_id,
                        "recipient_id": customer_id,
                        "message": text,
                        "is_bot": False,
                        "is_human": True,
                        "agent_id": self.user_id,
                        "agent_email": "",
                        "agent_name": "",
                        "timestamp": now,
                    },
                    "timestamp": now,
                }
            )

    def customer_message(self, page_id: str, customer_id: str, text: str) -> Json:
        now = int(time.time())
        return {
            "type": "new_message",
            "page_id": page_id,
            "data": {
                "chat_id": customer_id,
                "sender_id": customer_id,
                "sender_name": f"Customer {customer_id}",
                "recipient_id": page_id,
                "message": text,
                "is_bot": False,
                "timestamp": now,
            },
            "timestamp": now,
        }


# =============================================================================================
# Org dialect (PROTOCOL.md 1) + the Supabase token endpoint on the same server
# =============================================================================================


def org_message(
    chat_id: str, message_id: str, text: str, created_at: str, sender_type: str = "customer"
) -> Json:
    """A ``messages`` row as ``GET /crm/chats/{id}/messages`` answers it (names generic, PROTOCOL.md 1.6)."""
    return {
        "id": message_id,
        "chat_id": chat_id,
        "sender_type": sender_type,
        "sender_id": f"cust-{chat_id}" if sender_type == "customer" else "ai-1",
        "sender_name": {"customer": "Customer", "ai": "AI Assistant"}.get(sender_type, "Human Agent"),
        "content": text,
        "ticket_id": None,
        "metadata": {},
        "created_at": created_at,
        "updated_at": created_at,
    }


def org_chat(chat_id: str, *, handled_by: str = "human", status: str = "open", human_id: str = "") -> Json:
    return {
        "id": chat_id,
        "organization_id": "org1",
        "customer_id": f"cust-{chat_id}",
        "customer_name": f"Customer {chat_id}",
        "ai_agent_id": "ai-1",
        "human_agent_id": human_id,
        "human_id": human_id,
        "handled_by": handled_by,
        "status": status,
        "channel": "whatsapp",
        "unread_count": 1,
        "last_message_at": "2026-03-01T10:00:00+00:00",
        "created_at": "2026-03-01T09:00:00+00:00",
        "updated_at": "2026-03-01T10:00:00+00:00",
    }


class OrgServer(ScriptedServer):
    """FastAPI org fake (``/ws/{org}?token=``, ``/crm/...``) plus ``/auth/v1/token`` (Supabase)."""

    ws_path = "/ws/{org}"

    def __init__(
        self,
        *,
        org_id: str = "org1",
        email: str = "agent@example.com",
        password: str = "pw",
        anon_key: str = "anon",
    ) -> None:
        super().__init__()
        self.org_id, self.email, self.password, self.anon_key = org_id, email, password, anon_key
        self.user_id = "11111111-2222-3333-4444-555555555555"
        self.token_lifetime = 3600.0
        self.tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.grants: list[str] = []  # grant types asked for, in order
        self.chats: list[Json] = []
        self.messages: dict[str, list[Json]] = {}  # chat id -> message rows (GET .../messages)
        self.reply_status: int | None = None  # answer POST messages with this status
        self.message_posts = 0
        self.routes[("POST", "/auth/v1/token")] = self._token

    # -- Supabase -------------------------------------------------------------------------------

    def issue(self) -> Json:
        access = make_jwt(self.user_id, exp=time.time() + self.token_lifetime, nonce=secrets.token_hex(4))
        refresh = secrets.token_urlsafe(16)
        self.tokens.add(access)
        self.refresh_tokens.add(refresh)
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": int(self.token_lifetime),
            "expires_at": int(time.time() + self.token_lifetime),
            "refresh_token": refresh,
            "user": {"id": self.user_id, "email": self.email},
        }

    def _token(self, record: RecordedRequest) -> web.StreamResponse:
        grant = record.query.get("grant_type", "")
        self.grants.append(grant)
        if record.headers.get("apikey") != self.anon_key:
            return web.json_response({"message": "Invalid API key"}, status=401)
        body = record.json() or {}
        if grant == "password":
            if (body.get("email"), body.get("password")) != (self.email, self.password):
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "Invalid login credentials"}, status=400
                )
            return web.json_response(self.issue())
        if grant == "refresh_token":
            token = body.get("refresh_token", "")
            if token not in self.refresh_tokens:
                return web.json_response(
                    {
                        "error": "invalid_grant",
                        "error_description": "Invalid Refresh Token: Refresh Token Not Found",
                    },
                    status=400,
                )
            self.refresh_tokens.discard(token)  # single use
            return web.json_response(self.issue())
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    def revoke_all(self) -> None:
        self.tokens.clear()
        self.refresh_tokens.clear()

    # -- WebSocket ------------------------------------------------------------------------------

    def check_handshake(self, request: web.Request) -> web.StreamResponse | None:
        if request.query.get("token") not in self.tokens or request.match_info.get("org") != self.org_id:
            return web.Response(status=403)  # uvicorn's answer to close-before-accept
        return None

    async def welcome(self, conn: ScriptedConnection) -> None:
        await conn.send(
            {
                "type": "connection_established",
                "message": f"Connected to organization {self.org_id}",
                "connection_count": 1,
            }
        )

    async def on_frame(self, conn: ScriptedConnection, frame: Json) -> None:
        if frame.get("type") == "ping":
            await conn.send({"type": "pong", "timestamp": "2026-03-01T10:00:00"})
        elif frame.get("type") != "pong":
            await conn.send({"type": "echo", "data": json.dumps(frame)})

    def new_message(
        self, chat_id: str, text: str, *, message_id: str = "", sender_type: str = "customer"
    ) -> Json:
        return {
            "type": "new_message",
            "timestamp": "2026-03-01T10:00:00.123456",
            "data": {
                "chat_id": chat_id,
                "message_id": message_id or secrets.token_hex(8),
                "customer_id": f"cust-{chat_id}",
                "customer_name": f"Customer {chat_id}",
                "message_content": text,
                "channel": "whatsapp",
                "handled_by": "ai",
                "sender_type": sender_type,
                "sender_id": f"cust-{chat_id}",
                "is_new_chat": False,
                "was_reopened": False,
                "metadata": None,
                "attachment": None,
                "created_at": "2026-03-01T10:00:00+00:00",
            },
        }

    # -- REST -----------------------------------------------------------------------------------

    def _authorized(self, record: RecordedRequest) -> bool:
        auth = record.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.tokens

    def route(self, record: RecordedRequest) -> RestHandler | None:
        if not record.path.startswith("/crm/"):
            return None
        if not self._authorized(record):
            return lambda r: web.json_response({"detail": "Invalid token"}, status=401)
        parts = record.path.strip("/").split("/")
        if record.method == "GET" and parts == ["crm", "chats"]:
            return self._chats
        if len(parts) == 4 and parts[:2] == ["crm", "chats"]:
            chat_id, action = parts[2], parts[3]
            if record.method == "PUT" and action == "assign":
                return lambda r: self._assign(r, chat_id)
            if record.method == "POST" and action == "messages":
                return lambda r: self._post_message(r, chat_id)
            if record.method == "GET" and action == "messages":
                return lambda r: self._messages(r, chat_id)
        return None

    def _messages(self, record: RecordedRequest, chat_id: str) -> web.StreamResponse:
        """``GET /crm/chats/{id}/messages``: ``{messages, total}``, newest first unless ``sort_order=asc``."""
        if not any(c["id"] == chat_id for c in self.chats):
            return web.json_response({"detail": f"Chat {chat_id} not found"}, status=404)
        skip = int(record.query.get("skip", "0"))
        limit = int(record.query.get("limit", "50"))
        if not 1 <= limit <= 100:
            return web.json_response({"detail": "limit out of range"}, status=422)
        rows = sorted(self.messages.get(chat_id, []), key=lambda m: str(m["created_at"]))
        if record.query.get("sort_order", "desc").lower() == "desc":
            rows.reverse()
        return web.json_response({"messages": rows[skip : skip + limit], "total": len(rows)})

    def _chats(self, record: RecordedRequest) -> web.StreamResponse:
        """``GET /crm/chats``: ``status_filter``/``handled_by`` filters, newest ``last_message_at`` first."""
        skip = int(record.query.get("skip", "0"))
        limit = int(record.query.get("limit", "50"))
        if not 1 <= limit <= 100:
            return web.json_response({"detail": "limit out of range"}, status=422)
        rows = [
            c
            for c in self.chats
            if all(
                c.get(column) == record.query[name]
                for name, column in (("status_filter", "status"), ("handled_by", "handled_by"))
                if name in record.query
            )
        ]
        rows.sort(key=lambda c: str(c.get("last_message_at") or ""), reverse=True)  # stable
        return web.json_response({"chats": rows[skip : skip + limit], "total": len(rows)})

    def _assign(self, record: RecordedRequest, chat_id: str) -> web.StreamResponse:
        chat = next((c for c in self.chats if c["id"] == chat_id), None)
        if chat is None:
            return web.json_response({"detail": "Chat not found"}, status=404)
        body = record.json() or {}
        if body.get("assigned_to_me"):
            if chat["handled_by"] == "human" and chat["human_id"] and chat["human_id"] != self.user_id:
                return web.json_response({"detail": "Chat is already handled by a human agent"}, status=409)
            chat.update(
                handled_by="human", human_id=self.user_id, human_agent_id="agent-me", status="assigned"
            )
        else:
            chat.update(handled_by="ai", human_id="", status="assigned")
        return web.json_response(chat)

    async def _post_message(self, record: RecordedRequest, chat_id: str) -> web.StreamResponse:
        self.message_posts += 1
        if self.reply_status is not None:
            return web.json_response({"detail": "Chat not found"}, status=self.reply_status)
        if not any(c["id"] == chat_id for c in self.chats):
            return web.json_response({"detail": "Chat not found"}, status=404)
        message_id = secrets.token_hex(8)
        row = {
            "id": message_id,
            "chat_id": chat_id,
            "sender_type": record.form.get("sender_type", ""),
            "sender_id": record.form.get("sender_id", ""),
            "sender_name": "Human Agent",
            "content": record.form.get("content", ""),
            "metadata": {},
            "created_at": "2026-03-01T10:00:01+00:00",
            "updated_at": "2026-03-01T10:00:01+00:00",
        }
        await self.broadcast(
            self.new_message(chat_id, row["content"], message_id=message_id, sender_type="agent")
        )
        return web.json_response(row, status=201)
