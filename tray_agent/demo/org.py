"""The demo backend's "org" dialect: the FastAPI/Supabase CRM server of PROTOCOL.md §1, quirks included.

One :class:`OrgBackend` serves, on one aiohttp application:

* ``POST /auth/v1/token?grant_type=password|refresh_token`` — a Supabase-Auth-like token endpoint
  (``apikey`` header = the demo anon key; rotating, single-use refresh tokens; short-lived HS256
  access tokens with ``aud="authenticated"``). The org server and the "Supabase URL" are the same
  demo server.
* ``/ws/{organization_id}?token=JWT`` — the notification socket, ``GET /ws/stats``.
* ``/crm/...`` — the REST endpoints the agent app needs (chats, messages, assign, escalate,
  resolve, create chat, customers, minimal tickets).
* ``GET /storage/v1/object/public/chat-media/{name}`` — files uploaded with a REST message.

Everything is stored in SQLite (:mod:`tray_agent.demo.db`); a write is committed before it is
answered or broadcast, so a restart on the same file loses nothing acknowledged.

Reading of the real server (``try-hard-programmer/pubs-repo``, ``final-crm-be/``) behind the
behaviour modelled here, beyond what PROTOCOL.md states:

* **Assign** (``PUT /crm/chats/{id}/assign``, body ``ChatAssign``): with ``assigned_to_me`` true the
  target is the caller's agent row (found by ``user_id``, else linked by e-mail, else created as
  "Unnamed Agent"/``full_name``); otherwise the target is ``assigned_agent_id``. With
  ``assigned_to_me:false`` and no ``assigned_agent_id`` the server answers **400 "No agent
  identified for assignment"**: there is *no* "unassign". An unknown agent (or one of another org)
  is 404 "Agent not found". The update is always ``assigned_agent_id=target, status="assigned"``,
  ``handled_by = "human"`` if the agent row has a ``user_id`` else ``"ai"``, and
  ``human_agent_id=target`` only for a human (assigning to the AI leaves ``human_agent_id`` as it
  was). The customer's newest open ticket follows the assignee. Nothing is broadcast. The response
  is the raw updated row plus ``last_message``: the joined names (``customer_name``,
  ``agent_name``...) are null. **So in this dialect an agent "releases" a chat by assigning it to
  the org's AI agent** (``handled_by`` back to ``"ai"``), or it stays theirs until resolved.
* **Escalate** (``PUT /crm/chats/{id}/escalate``, body ``{human_agent_id, reason?}``): sets
  ``human_agent_id``, ``handled_by="human"``, ``status="assigned"``,
  ``assigned_agent_id=human_agent_id``, ``escalated_at=utcnow``, ``escalation_reason=reason``;
  ``ai_agent_id`` and ``sender_agent_id`` are preserved. Agent not found → 404 "Agent with ID <id>
  not found"; an AI agent → 400 "Cannot escalate to an AI agent. Please provide a human agent ID.".
  The snapshot read answers 400 for "already handled by a human"; PROTOCOL.md (read at HEAD) says
  409 for that and 400 for a resolved/closed chat: we follow PROTOCOL.md. The response carries
  ``customer_name``, ``ai_agent_name``, ``human_agent_name`` and ``agent_name``. Nothing is
  broadcast.
* **Resolve**: ``status="resolved"``, ``resolved_at``, ``resolved_by_agent_id=assigned_agent_id``;
  broadcasts ``chat_update``/``chat_resolved`` with the updated row plus ``last_message``.
* ``GET /crm/chats`` joins ``customer_name``, ``agent_name``, ``ai_agent_name``,
  ``human_agent_name``, ``human_id``; ``GET /crm/chats/{id}`` does **not** (those are null there).
  Message lists name senders generically ("AI Assistant" / "Human Agent" / "Customer");
  ``last_message`` inside a Chat has ``sender_name: null``.
* ``POST /crm/chats/{id}/messages`` answers the pydantic ``Message`` (no ``attachment`` field: it
  only appears on the socket). The socket copy has ``customer_name`` and ``sender_name`` "Human
  Agent" (or "AI Assistant"), ``created_at`` from the DB. Posting an agent message does not change
  ``handled_by``/``status``.
* REST bodies are pydantic-v2 JSON: datetimes end in ``Z``; socket payloads built from DB rows keep
  Supabase's ``+00:00``; top-level socket ``timestamp`` is naive ``utcnow().isoformat()``.
* **The AI escalates** (the customer asks for a human; ``dynamic_ai_service_v2`` handoff, not read
  line by line): modelled as the customer's ``new_message``, then the chat row gets
  ``handled_by="human"``, ``escalated_at``, ``escalation_reason`` with ``status`` left ``"open"``
  and no ``human_agent_id`` (the team inbox: whoever takes it assigns it to themselves), then an
  AI ``new_message`` telling the customer a human will come (``handled_by:"human"`` in the frame),
  then ``ticket_created`` if the chat has no active ticket. No ``escalated`` chat_update exists.

Deliberate deviations: ``POST /crm/chats/{id}/messages`` on a chat of another org is a 404 here
(the real server looks the chat up without the org filter); the WhatsApp/Telegram delivery and
integrations ("gateways") are not modelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import secrets
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tray_agent.demo import jwt as demo_jwt
from tray_agent.demo.base import DemoAgent, DemoCustomer, DemoInfo
from tray_agent.demo.db import open_db

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_JWT_SECRET", "OrgBackend"]

DEFAULT_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"  # Supabase local default
MAX_MESSAGE_SIZE = 16 * 1024 * 1024  # uvicorn's ws_max_size
CHANNELS = ("whatsapp", "telegram", "email", "web")
CHAT_STATUSES = ("open", "pending", "assigned", "resolved", "closed")
ALL_CHANNELS = ("whatsapp", "telegram", "email", "web", "mcp")
TICKET_STATUSES = ("open", "in_progress", "resolved", "closed")
TICKET_PRIORITIES = ("low", "medium", "high", "urgent")
DOCUMENT_EVENTS = (
    "file_upload_completed",
    "document_upload_completed",
    "file_upload_warning",
    "document_upload_warning",
    "file_upload_failed",
    "document_upload_failed",
)

_MIGRATIONS = (
    """
    CREATE TABLE organizations (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE users (
        id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password TEXT NOT NULL,
        full_name TEXT NOT NULL, organization_id TEXT, created_at TEXT NOT NULL);
    CREATE TABLE agents (
        id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, user_id TEXT, name TEXT NOT NULL,
        email TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active', created_at TEXT NOT NULL);
    CREATE TABLE customers (
        id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, name TEXT NOT NULL, email TEXT,
        phone TEXT, avatar_url TEXT, metadata TEXT NOT NULL DEFAULT '{}',
        language TEXT NOT NULL DEFAULT 'en', created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE INDEX customers_org ON customers(organization_id, created_at);
    CREATE TABLE chats (
        id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, customer_id TEXT NOT NULL,
        channel TEXT NOT NULL, assigned_agent_id TEXT, ai_agent_id TEXT, human_agent_id TEXT,
        sender_agent_id TEXT, handled_by TEXT, status TEXT NOT NULL,
        unread_count INTEGER NOT NULL DEFAULT 0, last_message_at TEXT NOT NULL,
        escalated_at TEXT, escalation_reason TEXT, resolved_at TEXT, resolved_by_agent_id TEXT,
        metadata TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE INDEX chats_org_last ON chats(organization_id, last_message_at);
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, chat_id TEXT NOT NULL,
        sender_type TEXT NOT NULL, sender_id TEXT, content TEXT NOT NULL DEFAULT '',
        ticket_id TEXT, metadata TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL);
    CREATE INDEX messages_chat ON messages(chat_id, created_at);
    CREATE TABLE tickets (
        id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, ticket_number TEXT NOT NULL,
        chat_id TEXT NOT NULL, customer_id TEXT NOT NULL, assigned_agent_id TEXT,
        title TEXT NOT NULL, description TEXT, category TEXT, priority TEXT NOT NULL,
        status TEXT NOT NULL, tags TEXT NOT NULL DEFAULT '[]', created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL, resolved_at TEXT, closed_at TEXT);
    CREATE TABLE refresh_tokens (
        token TEXT PRIMARY KEY, user_id TEXT NOT NULL, session_id TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL);
    CREATE TABLE media (name TEXT PRIMARY KEY, content_type TEXT NOT NULL, data BLOB NOT NULL);
    """,
)

_SEED_ORGS = (
    ("Toko Maju", "toko-maju", ("Sari Wulandari", "Budi Santoso"), "Asisten AI"),
    ("Acme Support", "acme", ("Alice Doe", "Bob Roe"), "Acme AI"),
)
_NAMES_EN = ("Emma Clark", "Liam Jones", "Olivia Brown", "Noah Smith", "Ava Wilson", "Mia Taylor")
_NAMES_ID = ("Dewi Lestari", "Agus Pratama", "Rina Kusuma", "Joko Widodo", "Putri Ayu", "Eko Saputra")
_BAD_GATEWAY_HTML = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    "</body></html>"
)
_HUMAN_REQUEST = {"en": "Can I talk to a human, please?", "id": "Bisa bicara dengan manusia?"}
_HANDOFF_REPLY = {
    "en": "I'm connecting you to a human agent. Please wait a moment.",
    "id": "Saya hubungkan Anda dengan agen kami. Mohon tunggu sebentar.",
}


class _HTTPError(Exception):
    """A FastAPI ``HTTPException``: answered as ``{"detail": detail}``."""

    def __init__(self, status: int, detail: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class _User:
    user_id: str
    email: str
    claims: dict[str, Any]


@dataclass(eq=False)
class _Conn:
    """One accepted socket."""

    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    org_id: str
    user_id: str
    registered: bool = True  # False once removed from the manager's tables (zombie)
    pong_waiter: asyncio.Future[None] | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _utc(now: datetime) -> datetime:
    return now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)


def _db_ts(now: datetime) -> str:
    """A DB timestamp as Supabase returns it: ``2026-03-21T08:15:30.123456+00:00``."""
    return _utc(now).isoformat(timespec="microseconds")


def _naive_ts(now: datetime) -> str:
    """``datetime.utcnow().isoformat()``: no zone, microseconds omitted when zero."""
    return _utc(now).replace(tzinfo=None).isoformat()


def _api_ts(value: str | None) -> str | None:
    """A DB timestamp as pydantic v2 serialises the parsed datetime (``...Z``)."""
    if value is None:
        return None
    parsed = _utc(datetime.fromisoformat(value))
    text = parsed.replace(tzinfo=None).isoformat()
    return f"{text}Z"


def _loads(text: str | None, default: Any) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _detail(status: int, detail: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": detail}, status=status, headers=headers)


def _validation(
    loc: list[Any], kind: str, msg: str, value: Any, ctx: dict[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx:
        error["ctx"] = ctx
    return error


class _Query:
    """FastAPI-style query parameter parsing that collects 422 errors."""

    def __init__(self, request: web.Request) -> None:
        self._query = request.query
        self.errors: list[dict[str, Any]] = []

    def text(self, name: str) -> str | None:
        return self._query.get(name)

    def integer(self, name: str, default: int, *, ge: int | None = None, le: int | None = None) -> int:
        raw = self._query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            self.errors.append(
                _validation(
                    ["query", name],
                    "int_parsing",
                    "Input should be a valid integer, unable to parse string as an integer",
                    raw,
                )
            )
            return default
        if ge is not None and value < ge:
            self.errors.append(
                _validation(
                    ["query", name],
                    "greater_than_equal",
                    f"Input should be greater than or equal to {ge}",
                    raw,
                    {"ge": ge},
                )
            )
        if le is not None and value > le:
            self.errors.append(
                _validation(
                    ["query", name],
                    "less_than_equal",
                    f"Input should be less than or equal to {le}",
                    raw,
                    {"le": le},
                )
            )
        return value

    def boolean(self, name: str) -> bool | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "t", "yes", "y", "on"):
            return True
        if lowered in ("0", "false", "f", "no", "n", "off"):
            return False
        self.errors.append(
            _validation(
                ["query", name],
                "bool_parsing",
                "Input should be a valid boolean, unable to interpret input",
                raw,
            )
        )
        return None

    def choice(self, name: str, values: tuple[str, ...]) -> str | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        if raw not in values:
            expected = ", ".join(f"'{v}'" for v in values[:-1]) + f" or '{values[-1]}'"
            self.errors.append(
                _validation(
                    ["query", name], "enum", f"Input should be {expected}", raw, {"expected": expected}
                )
            )
            return None
        return raw

    def timestamp(self, name: str) -> datetime | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        try:
            return _utc(datetime.fromisoformat(raw.replace("Z", "+00:00")))
        except ValueError:
            self.errors.append(
                _validation(
                    ["query", name], "datetime_from_date_parsing", "Input should be a valid datetime", raw
                )
            )
            return None

    def check(self) -> None:
        if self.errors:
            raise _HTTPError(422, self.errors)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _api(handler: Handler) -> Handler:
    """Turn :class:`_HTTPError` into FastAPI's ``{"detail": ...}`` answers."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _HTTPError as exc:
            return _detail(exc.status, exc.detail, exc.headers)

    return wrapper


class OrgBackend:
    """The org dialect's server (see the module docstring).

    Keyword arguments (all but ``db_path`` optional; the shell may pass any of them as tunables):

    Args:
        db_path: SQLite file; created and seeded with two orgs (two human agents and one AI agent
            each, plus one user without an org) on first use.
        ping_after: seconds without a text frame from a client before the JSON ``ping`` (30).
        protocol_ping_interval: seconds between protocol-level pings (uvicorn default 20).
        protocol_ping_timeout: seconds to wait for the protocol pong before closing 1011 (20).
        access_token_ttl: lifetime of issued access tokens in seconds (3600).
        jwt_secret: the HS256 key (Supabase local default).
        anon_key: the ``apikey`` the token endpoint requires (default: an anon JWT signed with
            ``jwt_secret``).
        password: the password of every seeded user ("demo1234").
        now: clock returning an aware (or naive-UTC) ``datetime``; drives timestamps and JWT
            ``iat``/``exp`` checks.
        lost_event_rate: probability (0..1) that a broadcast is skipped entirely, simulating the
            per-process fan-out of ``--workers 2`` (0: off).
        whatsapp_split_events: broadcast every WhatsApp customer message twice with the same
            ``message_id`` (second copy with richer metadata), as the webhook's split events do.
        refuse_status: HTTP status used by :meth:`set_refuse_upgrades` (502, like a proxy; 403 is
            the other useful value).
        seed: seed of the RNG used for ``lost_event_rate``.
    """

    dialect = "org"

    def __init__(
        self,
        *,
        db_path: str | Path,
        ping_after: float = 30.0,
        protocol_ping_interval: float = 20.0,
        protocol_ping_timeout: float = 20.0,
        access_token_ttl: int = 3600,
        jwt_secret: str = DEFAULT_JWT_SECRET,
        anon_key: str | None = None,
        password: str = "demo1234",
        now: Callable[[], datetime] | None = None,
        lost_event_rate: float = 0.0,
        whatsapp_split_events: bool = False,
        refuse_status: int = 502,
        seed: int | None = None,
    ) -> None:
        self._db = open_db(db_path, _MIGRATIONS)
        self._ping_after = ping_after
        self._protocol_ping_interval = protocol_ping_interval
        self._protocol_ping_timeout = protocol_ping_timeout
        self._access_token_ttl = access_token_ttl
        self._jwt_secret = jwt_secret
        self._password = password
        self._now = now or (lambda: datetime.now(UTC))
        self._lost_event_rate = lost_event_rate
        self._split_events = whatsapp_split_events
        self._refuse_status = refuse_status
        self._rng = random.Random(seed)
        self._anon_key = anon_key or demo_jwt.encode_hs256(
            {"iss": "supabase-demo", "role": "anon", "iat": 1700000000, "exp": 4102444800}, jwt_secret
        )
        self._conns: dict[str, list[_Conn]] = {}  # the ConnectionManager's tables
        self._all_conns: set[_Conn] = set()  # every open socket, zombies included
        self._silent = False
        self._refuse_upgrades = False
        self._closed = False
        self._seed()

    # ------------------------------------------------------------------------------------------
    # database helpers

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
        return row

    def _ts(self) -> str:
        return _db_ts(self._now())

    def _seed(self) -> None:
        if self._one("SELECT id FROM organizations LIMIT 1") is not None:
            return
        created = self._ts()
        with self._tx() as db:
            for org_name, slug, humans, ai_name in _SEED_ORGS:
                org_id = str(uuid.uuid4())
                db.execute("INSERT INTO organizations VALUES (?, ?, ?)", (org_id, org_name, created))
                db.execute(
                    "INSERT INTO agents (id, organization_id, user_id, name, email, created_at) "
                    "VALUES (?, ?, NULL, ?, ?, ?)",
                    (str(uuid.uuid4()), org_id, ai_name, f"ai@{slug}.demo", created),
                )
                for number, full_name in enumerate(humans, start=1):
                    user_id = str(uuid.uuid4())
                    email = f"agent{number}@{slug}.demo"
                    db.execute(
                        "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)",
                        (user_id, email, self._password, full_name, org_id, created),
                    )
                    db.execute(
                        "INSERT INTO agents (id, organization_id, user_id, name, email, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (str(uuid.uuid4()), org_id, user_id, full_name, email, created),
                    )
            db.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?, NULL, ?)",
                (str(uuid.uuid4()), "nobody@demo.test", self._password, "No Org", created),
            )

    def _org_ids(self) -> list[str]:
        return [r["id"] for r in self._db.execute("SELECT id FROM organizations ORDER BY rowid")]

    def _ai_agent(self, org_id: str) -> sqlite3.Row:
        row = self._one(
            "SELECT * FROM agents WHERE organization_id=? AND user_id IS NULL AND status='active' "
            "ORDER BY created_at, rowid LIMIT 1",
            org_id,
        )
        assert row is not None, "every seeded org has an AI agent"
        return row

    def _agent(self, agent_id: str | None) -> sqlite3.Row | None:
        return None if agent_id is None else self._one("SELECT * FROM agents WHERE id=?", agent_id)

    def _agent_name(self, agent_id: str | None) -> str | None:
        row = self._agent(agent_id)
        return None if row is None else str(row["name"])

    def _chat_row(self, chat_id: str, org_id: str | None = None) -> sqlite3.Row | None:
        if org_id is None:
            return self._one("SELECT * FROM chats WHERE id=?", chat_id)
        return self._one("SELECT * FROM chats WHERE id=? AND organization_id=?", chat_id, org_id)

    def _last_message_row(self, chat_id: str) -> sqlite3.Row | None:
        return self._one(
            "SELECT * FROM messages WHERE chat_id=? ORDER BY created_at DESC, seq DESC LIMIT 1", chat_id
        )

    def _insert_message(
        self,
        chat_id: str,
        sender_type: str,
        sender_id: str | None,
        content: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        ticket_id: str | None = None,
        touch_chat: bool = True,
    ) -> sqlite3.Row:
        message_id = str(uuid.uuid4())
        created = self._ts()
        with self._tx() as db:
            db.execute(
                "INSERT INTO messages (id, chat_id, sender_type, sender_id, content, ticket_id, metadata, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    chat_id,
                    sender_type,
                    sender_id,
                    content,
                    ticket_id,
                    json.dumps(metadata or {}),
                    created,
                    created,
                ),
            )
            if touch_chat:
                db.execute(
                    "UPDATE chats SET last_message_at=?, updated_at=? WHERE id=?", (created, created, chat_id)
                )
        row = self._one("SELECT * FROM messages WHERE id=?", message_id)
        assert row is not None
        return row

    def _update_chat(self, chat_id: str, values: Mapping[str, Any]) -> sqlite3.Row:
        values = {**values, "updated_at": self._ts()}
        assignments = ", ".join(f"{key}=?" for key in values)
        with self._tx() as db:
            db.execute(f"UPDATE chats SET {assignments} WHERE id=?", (*values.values(), chat_id))
        row = self._chat_row(chat_id)
        assert row is not None
        return row

    # ------------------------------------------------------------------------------------------
    # serialisation

    @staticmethod
    def _message_raw(row: sqlite3.Row) -> dict[str, Any]:
        """A ``messages`` row as Supabase returns it (DB timestamps)."""
        return {
            "id": row["id"],
            "chat_id": row["chat_id"],
            "sender_type": row["sender_type"],
            "sender_id": row["sender_id"],
            "content": row["content"],
            "ticket_id": row["ticket_id"],
            "metadata": _loads(row["metadata"], {}),
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }

    @staticmethod
    def _message_api(row: sqlite3.Row, sender_name: str | None) -> dict[str, Any]:
        """The pydantic ``Message`` model."""
        return {
            "id": row["id"],
            "chat_id": row["chat_id"],
            "sender_type": row["sender_type"],
            "sender_id": row["sender_id"],
            "sender_name": sender_name,
            "content": row["content"],
            "ticket_id": row["ticket_id"],
            "metadata": _loads(row["metadata"], {}),
            "created_at": _api_ts(row["created_at"]),
            "updated_at": _api_ts(row["updated_at"]),
        }

    @staticmethod
    def _chat_raw(row: sqlite3.Row) -> dict[str, Any]:
        """A ``chats`` row as Supabase returns it."""
        raw = {key: row[key] for key in row.keys()}  # noqa: SIM118 - sqlite3.Row has no iteration of keys
        raw["metadata"] = _loads(row["metadata"], {})
        return raw

    def _chat_api(self, row: sqlite3.Row, *, joined: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The pydantic ``Chat`` model; ``joined`` supplies the names the endpoint looked up."""
        names = dict(joined or {})
        last = self._last_message_row(row["id"])
        return {
            "id": row["id"],
            "organization_id": row["organization_id"],
            "customer_id": row["customer_id"],
            "customer_name": names.get("customer_name"),
            "assigned_agent_id": row["assigned_agent_id"],
            "agent_name": names.get("agent_name"),
            "ai_agent_id": row["ai_agent_id"],
            "ai_agent_name": names.get("ai_agent_name"),
            "human_agent_id": row["human_agent_id"],
            "human_id": names.get("human_id"),
            "human_agent_name": names.get("human_agent_name"),
            "handled_by": row["handled_by"] if row["handled_by"] is not None else "unassigned",
            "escalated_at": _api_ts(row["escalated_at"]),
            "escalation_reason": row["escalation_reason"],
            "status": row["status"],
            "channel": row["channel"],
            "unread_count": row["unread_count"],
            "last_message_at": _api_ts(row["last_message_at"]),
            "last_message": None if last is None else self._message_api(last, None),
            "created_at": _api_ts(row["created_at"]),
            "resolved_at": _api_ts(row["resolved_at"]),
            "resolved_by_agent_id": row["resolved_by_agent_id"],
            "updated_at": _api_ts(row["updated_at"]),
            "metadata": names.get("metadata", _loads(row["metadata"], {})),
        }

    def _chat_joined_names(self, row: sqlite3.Row) -> dict[str, Any]:
        """What ``GET /crm/chats`` looks up for each chat."""
        customer = self._one("SELECT name, metadata FROM customers WHERE id=?", row["customer_id"])
        metadata = _loads(row["metadata"], {}) or {}
        if customer is not None:
            cust_meta = _loads(customer["metadata"], {}) or {}
            if cust_meta.get("is_group") or "g.us" in str(cust_meta.get("whatsapp_id", "")):
                metadata["is_group"] = True
        human = self._agent(row["human_agent_id"])
        return {
            "customer_name": None if customer is None else customer["name"],
            "agent_name": self._agent_name(row["assigned_agent_id"]),
            "ai_agent_name": self._agent_name(row["ai_agent_id"]),
            "human_agent_name": None if human is None else human["name"],
            "human_id": None if human is None else human["user_id"],
            "metadata": metadata,
        }

    @staticmethod
    def _customer_api(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "organization_id": row["organization_id"],
            "name": row["name"],
            "email": row["email"],
            "phone": row["phone"],
            "avatar_url": row["avatar_url"],
            "metadata": _loads(row["metadata"], {}),
            "created_at": _api_ts(row["created_at"]),
            "updated_at": _api_ts(row["updated_at"]),
        }

    @staticmethod
    def _ticket_api(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "organization_id": row["organization_id"],
            "ticket_number": row["ticket_number"],
            "chat_id": row["chat_id"],
            "customer_id": row["customer_id"],
            "assigned_agent_id": row["assigned_agent_id"],
            "title": row["title"],
            "description": row["description"],
            "category": row["category"],
            "priority": row["priority"],
            "status": row["status"],
            "tags": _loads(row["tags"], []),
            "created_at": _api_ts(row["created_at"]),
            "updated_at": _api_ts(row["updated_at"]),
            "resolved_at": _api_ts(row["resolved_at"]),
            "closed_at": _api_ts(row["closed_at"]),
            "channel": None,
            "customer_name": None,
            "customer": None,
        }

    # ------------------------------------------------------------------------------------------
    # the connection manager

    async def _send(self, conn: _Conn, message: Mapping[str, Any]) -> bool:
        """Write one frame; ``False`` if the write failed (the caller decides what that means)."""
        if self._silent:
            return True
        try:
            await conn.ws.send_str(json.dumps(message))
        except Exception:
            logger.debug("send to a socket of org %s failed", conn.org_id, exc_info=True)
            return False
        return True

    def _unregister(self, conn: _Conn) -> None:
        conn.registered = False
        sockets = self._conns.get(conn.org_id)
        if sockets is not None and conn in sockets:
            sockets.remove(conn)
            if not sockets:
                del self._conns[conn.org_id]

    async def _send_personal(self, conn: _Conn, message: Mapping[str, Any]) -> None:
        """``send_personal_message``: refuses to write to a socket no longer registered."""
        if not conn.registered:
            return
        if not await self._send(conn, message):
            self._unregister(conn)

    async def _broadcast(self, org_id: str, message: Mapping[str, Any]) -> None:
        """``broadcast_to_organization``: in turn, a failed socket becomes a zombie."""
        if self._lost_event_rate > 0 and self._rng.random() < self._lost_event_rate:
            logger.info("simulated lost event for org %s: %s", org_id, message.get("type"))
            return
        for conn in list(self._conns.get(org_id, ())):
            if not await self._send(conn, message):
                self._unregister(conn)

    def _connection_count(self, org_id: str) -> int:
        return len(self._conns.get(org_id, ()))

    async def _broadcast_new_message(
        self,
        org_id: str,
        *,
        chat_id: str,
        message_id: str,
        customer_id: str | None,
        customer_name: str | None,
        content: str,
        channel: str | None,
        handled_by: str | None,
        sender_type: str,
        sender_id: str | None,
        sender_name: str | None = None,
        is_new_chat: bool = False,
        was_reopened: bool = False,
        metadata: Any = None,
        attachment: Mapping[str, Any] | None = None,
        created_at: str | None = None,
        agents: Mapping[str, str | None] | None = None,
        chat_status: str = "open",
        repeat: int = 1,
        second_metadata: Any = None,
    ) -> None:
        """``broadcast_new_message`` of HEAD: legacy flat part + nested chat part."""
        for copy in range(repeat):
            now_iso = _naive_ts(self._now())
            created = created_at or now_iso
            meta = second_metadata if copy and second_metadata is not None else metadata
            agent_fields = dict(agents or {})
            data = {
                "chat_id": chat_id,
                "message_id": message_id,
                "customer_id": customer_id,
                "customer_name": customer_name,
                "message_content": content,
                "channel": channel,
                "handled_by": handled_by,
                "sender_type": sender_type,
                "sender_id": sender_id,
                "sender_name": sender_name,
                "is_new_chat": is_new_chat,
                "was_reopened": was_reopened,
                "metadata": meta,
                "attachment": dict(attachment) if attachment else None,
                "created_at": created,
                "ai_agent_id": agent_fields.get("ai_agent_id"),
                "ai_agent_name": agent_fields.get("ai_agent_name"),
                "assigned_agent_id": agent_fields.get("assigned_agent_id"),
                "human_agent_id": agent_fields.get("human_agent_id"),
                "human_agent_name": agent_fields.get("human_agent_name"),
                "id": chat_id,
                "status": chat_status,
                "unread_count": 1,
                "last_message_at": created,
                "last_message": {
                    "id": message_id,
                    "chat_id": chat_id,
                    "sender_type": sender_type,
                    "sender_id": sender_id,
                    "sender_name": sender_name,
                    "content": content,
                    "metadata": meta or {},
                    "attachment": dict(attachment) if attachment else None,
                    "created_at": created,
                    "updated_at": created,
                },
            }
            await self._broadcast(org_id, {"type": "new_message", "timestamp": now_iso, "data": data})

    async def _broadcast_chat_update(
        self, org_id: str, chat_id: str, update_type: str, data: Mapping[str, Any]
    ) -> None:
        await self._broadcast(
            org_id,
            {
                "type": "chat_update",
                "timestamp": _naive_ts(self._now()),
                "update_type": update_type,
                "data": {"chat_id": chat_id, **data},
            },
        )

    def _chat_agents(self, chat: sqlite3.Row) -> dict[str, str | None]:
        return {
            "ai_agent_id": chat["ai_agent_id"],
            "ai_agent_name": self._agent_name(chat["ai_agent_id"]),
            "assigned_agent_id": chat["assigned_agent_id"],
            "human_agent_id": chat["human_agent_id"],
            "human_agent_name": self._agent_name(chat["human_agent_id"]),
        }

    # ------------------------------------------------------------------------------------------
    # routes

    def add_routes(self, app: web.Application) -> None:
        """Mount the token endpoint, the socket and the CRM REST routes."""
        app.router.add_post("/auth/v1/token", self._token)
        app.router.add_get("/ws/stats", self._ws_stats)
        app.router.add_get("/ws/{organization_id}", self._websocket)
        app.router.add_get("/crm/chats", _api(self._list_chats))
        app.router.add_post("/crm/chats", _api(self._create_chat))
        app.router.add_get("/crm/chats/{chat_id}", _api(self._get_chat))
        app.router.add_get("/crm/chats/{chat_id}/messages", _api(self._list_messages))
        app.router.add_post("/crm/chats/{chat_id}/messages", _api(self._post_message))
        app.router.add_put("/crm/chats/{chat_id}/assign", _api(self._assign))
        app.router.add_put("/crm/chats/{chat_id}/escalate", _api(self._escalate))
        app.router.add_put("/crm/chats/{chat_id}/resolve", _api(self._resolve))
        app.router.add_get("/crm/customers", _api(self._list_customers))
        app.router.add_get("/crm/customers/{customer_id}", _api(self._get_customer))
        app.router.add_get("/crm/tickets", _api(self._list_tickets))
        app.router.add_post("/crm/tickets", _api(self._create_ticket_endpoint))
        app.router.add_get("/crm/tickets/{ticket_id}", _api(self._get_ticket))
        app.router.add_put("/crm/tickets/{ticket_id}", _api(self._update_ticket))
        app.router.add_get("/storage/v1/object/public/chat-media/{name}", self._media)

    # ------------------------------------------------------------------------------------------
    # Supabase-like auth

    def _issue_session(self, user: sqlite3.Row, session_id: str | None = None) -> dict[str, Any]:
        now = self._now()
        iat = int(_utc(now).timestamp())
        exp = iat + self._access_token_ttl
        session_id = session_id or str(uuid.uuid4())
        org_meta = {"full_name": user["full_name"], "email": user["email"]}
        claims = {
            "aud": "authenticated",
            "exp": exp,
            "iat": iat,
            "iss": "demo/auth/v1",
            "sub": user["id"],
            "email": user["email"],
            "phone": "",
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": org_meta,
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": iat}],
            "session_id": session_id,
            "is_anonymous": False,
        }
        refresh = secrets.token_urlsafe(9)
        with self._tx() as db:
            db.execute(
                "INSERT INTO refresh_tokens (token, user_id, session_id, created_at) VALUES (?, ?, ?, ?)",
                (refresh, user["id"], session_id, _db_ts(now)),
            )
        created = _api_ts(user["created_at"])
        return {
            "access_token": demo_jwt.encode_hs256(claims, self._jwt_secret),
            "token_type": "bearer",
            "expires_in": self._access_token_ttl,
            "expires_at": exp,
            "refresh_token": refresh,
            "user": {
                "id": user["id"],
                "aud": "authenticated",
                "role": "authenticated",
                "email": user["email"],
                "email_confirmed_at": created,
                "phone": "",
                "confirmed_at": created,
                "last_sign_in_at": _api_ts(_db_ts(now)),
                "app_metadata": claims["app_metadata"],
                "user_metadata": org_meta,
                "identities": [],
                "created_at": created,
                "updated_at": created,
                "is_anonymous": False,
            },
        }

    async def _token(self, request: web.Request) -> web.Response:
        apikey = request.headers.get("apikey")
        if not apikey:
            return web.json_response({"message": "No API key found in request"}, status=401)
        if apikey != self._anon_key:
            return web.json_response({"message": "Invalid API key"}, status=401)
        grant = request.query.get("grant_type")
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response(
                {"error": "invalid_request", "error_description": "Could not read request body"}, status=400
            )
        if grant == "password":
            email, password = body.get("email"), body.get("password")
            if not email or not password:
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "missing email or phone"}, status=400
                )
            user = self._one("SELECT * FROM users WHERE lower(email)=lower(?)", str(email))
            if user is None or not secrets.compare_digest(str(user["password"]), str(password)):
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "Invalid login credentials"}, status=400
                )
            return web.json_response(self._issue_session(user))
        if grant == "refresh_token":
            token = body.get("refresh_token")
            row = None if not token else self._one("SELECT * FROM refresh_tokens WHERE token=?", str(token))
            if row is None:
                return web.json_response(
                    {
                        "error": "invalid_grant",
                        "error_description": "Invalid Refresh Token: Refresh Token Not Found",
                    },
                    status=400,
                )
            if row["revoked"]:
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "Invalid Refresh Token: Already Used"},
                    status=400,
                )
            with self._tx() as db:
                db.execute("UPDATE refresh_tokens SET revoked=1 WHERE token=?", (row["token"],))
            user = self._one("SELECT * FROM users WHERE id=?", row["user_id"])
            assert user is not None
            return web.json_response(self._issue_session(user, row["session_id"]))
        return web.json_response(
            {"error": "unsupported_grant_type", "error_description": "unsupported grant type"}, status=400
        )

    def _ws_user(self, token: str | None) -> _User | None:
        """``verify_websocket_token`` (PyJWT): HS256, aud, exp, sub required."""
        if not token:
            return None
        try:
            claims = demo_jwt.decode_hs256(
                token, self._jwt_secret, audience="authenticated", now=_utc(self._now()).timestamp()
            )
        except demo_jwt.InvalidTokenError as exc:
            logger.info("websocket token rejected: %s", exc)
            return None
        if not claims.get("sub"):
            return None
        return _User(str(claims["sub"]), str(claims.get("email") or ""), claims)

    def _rest_user(self, request: web.Request) -> _User:
        """``HTTPBearer`` + ``get_current_user`` (python-jose messages)."""
        header = request.headers.get("Authorization")
        if not header:
            raise _HTTPError(403, "Not authenticated")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _HTTPError(403, "Invalid authentication credentials")
        bearer = {"WWW-Authenticate": "Bearer"}
        try:
            claims = demo_jwt.decode_hs256(
                credentials.strip(),
                self._jwt_secret,
                audience="authenticated",
                now=_utc(self._now()).timestamp(),
            )
        except demo_jwt.ExpiredSignatureError:
            raise _HTTPError(401, "Token has expired", bearer) from None
        except demo_jwt.InvalidAudienceError:
            raise _HTTPError(401, "Invalid token claims", bearer) from None
        except demo_jwt.InvalidTokenError:
            raise _HTTPError(401, "Invalid token", bearer) from None
        if not claims.get("sub"):
            raise _HTTPError(401, "User ID (sub) not found in token", bearer)
        if not claims.get("email"):
            raise _HTTPError(401, "Email not found in token", bearer)
        return _User(str(claims["sub"]), str(claims["email"]), claims)

    def _user_org(self, user_id: str) -> str | None:
        row = self._one("SELECT organization_id FROM users WHERE id=?", user_id)
        return None if row is None or row["organization_id"] is None else str(row["organization_id"])

    def _rest_org(self, request: web.Request) -> tuple[_User, str]:
        user = self._rest_user(request)
        org_id = self._user_org(user.user_id)
        if org_id is None:
            raise _HTTPError(400, "User must belong to an organization")
        return user, org_id

    # ------------------------------------------------------------------------------------------
    # the socket

    async def _ws_stats(self, request: web.Request) -> web.Response:
        del request
        by_org = {org: len(conns) for org, conns in self._conns.items()}
        return web.json_response(
            {
                "total_connections": sum(by_org.values()),
                "organizations_with_connections": len(by_org),
                "connections_by_organization": by_org,
            }
        )

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self._refuse_upgrades:
            if self._refuse_status == 502:
                return web.Response(
                    status=502,
                    text=_BAD_GATEWAY_HTML,
                    content_type="text/html",
                )
            return web.Response(status=self._refuse_status)
        org_id = request.match_info["organization_id"]
        user = self._ws_user(request.query.get("token"))
        # Close-before-accept: uvicorn answers the handshake with an empty 403, whatever the reason.
        if user is None or self._user_org(user.user_id) != org_id or self._closed:
            return web.Response(status=403)
        ws = web.WebSocketResponse(autoping=False, max_msg_size=MAX_MESSAGE_SIZE)
        await ws.prepare(request)
        conn = _Conn(ws=ws, transport=request.transport, org_id=org_id, user_id=user.user_id)
        self._conns.setdefault(org_id, []).append(conn)
        self._all_conns.add(conn)
        keepalive = asyncio.create_task(self._keepalive(conn))
        conn.tasks.append(keepalive)
        try:
            await self._send_personal(
                conn,
                {
                    "type": "connection_established",
                    "message": f"Connected to organization {org_id}",
                    "connection_count": self._connection_count(org_id),
                },
            )
            await self._serve(conn)
        finally:
            self._unregister(conn)
            self._all_conns.discard(conn)
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
            if not ws.closed and conn.transport is not None:
                # The endpoint returned without a close frame: uvicorn just closes the transport.
                conn.transport.abort()
        return ws

    async def _next_text(self, conn: _Conn) -> str | None:
        """The next text frame (``receive_text``); ``None`` ends the app loop.

        Protocol pings and pongs are answered here, below the app, as uvicorn's websockets does:
        they do not reset the app's idle timer.
        """
        ws = conn.ws
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.PING:
                if not self._silent:
                    with contextlib.suppress(Exception):
                        await ws.pong(msg.data)
                continue
            if msg.type is WSMsgType.PONG:
                if conn.pong_waiter is not None and not conn.pong_waiter.done():
                    conn.pong_waiter.set_result(None)
                continue
            if msg.type is WSMsgType.TEXT:
                return str(msg.data)
            if msg.type is WSMsgType.BINARY:
                # receive_text() raises KeyError('text'): the loop breaks and the socket is dropped.
                logger.info("binary frame from a client of org %s: dropping the connection", conn.org_id)
            return None

    async def _serve(self, conn: _Conn) -> None:
        """The app loop of ``websocket_endpoint``."""
        while True:
            try:
                text = await asyncio.wait_for(self._next_text(conn), timeout=self._ping_after)
            except TimeoutError:
                if conn.ws.closed:
                    return
                await self._send_personal(
                    conn, {"type": "ping", "timestamp": _naive_ts(self._now()), "message": "keepalive"}
                )
                continue
            if text is None:
                return
            try:
                message = json.loads(text)
            except ValueError:
                await self._send_personal(conn, {"type": "echo", "data": text})
                continue
            if not isinstance(message, dict):
                # message.get() raises AttributeError: the endpoint leaves its loop.
                logger.info("non-object JSON from a client of org %s: dropping the connection", conn.org_id)
                return
            kind = message.get("type", "")
            if kind == "ping":
                await self._send_personal(conn, {"type": "pong", "timestamp": _naive_ts(self._now())})
            elif kind != "pong":
                await self._send_personal(conn, {"type": "echo", "data": text})

    async def _keepalive(self, conn: _Conn) -> None:
        """Protocol-level pings (uvicorn ``ws_ping_interval``/``ws_ping_timeout``)."""
        loop = asyncio.get_running_loop()
        while not conn.ws.closed:
            await asyncio.sleep(self._protocol_ping_interval)
            if self._silent or conn.ws.closed:
                continue
            conn.pong_waiter = loop.create_future()
            try:
                await conn.ws.ping(secrets.token_bytes(4))
                await asyncio.wait_for(asyncio.shield(conn.pong_waiter), timeout=self._protocol_ping_timeout)
            except TimeoutError:
                logger.info("keepalive ping timeout on a socket of org %s", conn.org_id)
                if conn.transport is not None:
                    conn.transport.abort()
                return
            except (ConnectionError, RuntimeError):
                return

    # ------------------------------------------------------------------------------------------
    # REST: chats

    async def _list_chats(self, request: web.Request) -> web.Response:
        q = _Query(request)
        status_filter = q.choice("status_filter", CHAT_STATUSES)
        channel = q.choice("channel", ALL_CHANNELS)
        unassigned = q.boolean("unassigned")
        escalated = q.boolean("escalated")
        created_after = q.timestamp("created_after")
        created_before = q.timestamp("created_before")
        skip = q.integer("skip", 0, ge=0)
        limit = q.integer("limit", 50, ge=1, le=100)
        q.check()
        _user, org_id = self._rest_org(request)
        where, args = ["organization_id=?"], [org_id]
        for column, value in (
            ("status", status_filter),
            ("channel", channel),
            ("assigned_agent_id", q.text("assigned_to")),
            ("handled_by", q.text("handled_by")),
            ("ai_agent_id", q.text("ai_assigned_to")),
            ("human_agent_id", q.text("human_assigned_to")),
        ):
            if value:
                where.append(f"{column}=?")
                args.append(value)
        if unassigned is True:
            where.append("assigned_agent_id IS NULL")
        if escalated is True:
            where.append("escalated_at IS NOT NULL")
        if created_after is not None:
            where.append("created_at>=?")
            args.append(_db_ts(created_after))
        if created_before is not None:
            where.append("created_at<=?")
            args.append(_db_ts(created_before))
        search = q.text("search")
        if search:
            pattern = f"%{search}%"
            ids = [
                r["id"]
                for r in self._db.execute(
                    "SELECT id FROM customers WHERE organization_id=? AND "
                    "(name LIKE ? OR phone LIKE ? OR email LIKE ?)",
                    (org_id, pattern, pattern, pattern),
                )
            ]
            if not ids:
                return web.json_response({"chats": [], "total": 0})
            where.append(f"customer_id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        clause = " AND ".join(where)
        total = self._db.execute(f"SELECT count(*) FROM chats WHERE {clause}", args).fetchone()[0]
        rows = self._db.execute(
            f"SELECT * FROM chats WHERE {clause} ORDER BY last_message_at DESC, rowid DESC LIMIT ? OFFSET ?",
            [*args, limit, skip],
        ).fetchall()
        chats = [self._chat_api(row, joined=self._chat_joined_names(row)) for row in rows]
        return web.json_response({"chats": chats, "total": total or len(chats)})

    async def _get_chat(self, request: web.Request) -> web.Response:
        _user, org_id = self._rest_org(request)
        chat_id = request.match_info["chat_id"]
        row = self._chat_row(chat_id, org_id)
        if row is None:
            raise _HTTPError(404, f"Chat with ID {chat_id} not found")
        return web.json_response(self._chat_api(row))

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise _HTTPError(
                422,
                [
                    _validation(
                        ["body", 0], "json_invalid", "JSON decode error", {}, {"error": "Invalid JSON"}
                    )
                ],
            ) from None
        if not isinstance(body, dict):
            raise _HTTPError(
                422,
                [
                    _validation(
                        ["body"],
                        "model_attributes_type",
                        "Input should be a valid dictionary or object",
                        body,
                    )
                ],
            )
        return body

    @staticmethod
    def _opt_str(body: Mapping[str, Any], name: str, errors: list[dict[str, Any]]) -> str | None:
        value = body.get(name)
        if value is None or isinstance(value, str):
            return value
        errors.append(_validation(["body", name], "string_type", "Input should be a valid string", value))
        return None

    async def _create_chat(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        errors: list[dict[str, Any]] = []
        channel = body.get("channel")
        if channel is None:
            errors.append(_validation(["body", "channel"], "missing", "Field required", body))
        elif channel not in ALL_CHANNELS:
            expected = "'whatsapp', 'telegram', 'email', 'web' or 'mcp'"
            errors.append(
                _validation(
                    ["body", "channel"],
                    "enum",
                    f"Input should be {expected}",
                    channel,
                    {"expected": expected},
                )
            )
        fields = {
            name: self._opt_str(body, name, errors)
            for name in ("customer_id", "customer_name", "contact", "initial_message", "assigned_agent_id")
        }
        if errors:
            raise _HTTPError(422, errors)
        user, org_id = self._rest_org(request)
        ai = self._ai_agent(org_id)
        ai_agent_id = human_agent_id = assigned_agent_id = sender_agent_id = None
        handled_by, status_value = "unassigned", "open"
        if fields["assigned_agent_id"]:
            target = fields["assigned_agent_id"]
            if target == "me":
                mine = self._one(
                    "SELECT id FROM agents WHERE user_id=? AND organization_id=?", user.user_id, org_id
                )
                if mine is None:
                    raise _HTTPError(400, "You do not have an Agent profile.")
                target = mine["id"]
            agent = self._one("SELECT * FROM agents WHERE id=? AND organization_id=?", target, org_id)
            if agent is None:
                raise _HTTPError(404, "Assigned Agent not found")
            assigned_agent_id = agent["id"]
            status_value = "assigned"
            if agent["user_id"]:
                human_agent_id, handled_by, ai_agent_id = agent["id"], "human", ai["id"]
                sender_agent_id = agent["id"]  # the demo assumes every agent has a personal integration
            else:
                ai_agent_id = sender_agent_id = agent["id"]
                handled_by = "ai"
        else:
            assigned_agent_id = sender_agent_id = ai["id"]
            handled_by, status_value = "ai", "assigned"
        customer_id = fields["customer_id"]
        if customer_id:
            if (
                self._one("SELECT id FROM customers WHERE id=? AND organization_id=?", customer_id, org_id)
                is None
            ):
                raise _HTTPError(500, "Failed to create chat")
        else:
            contact = fields["contact"]
            if not contact:
                raise _HTTPError(400, "Contact required")
            customer_id = self._find_or_create_customer(
                org_id, contact, fields["customer_name"], str(channel)
            )
        now = self._ts()
        active = self._one(
            "SELECT * FROM chats WHERE customer_id=? AND channel=? AND status NOT IN ('resolved', 'closed')",
            customer_id,
            channel,
        )
        if active is not None:
            update: dict[str, Any] = {"sender_agent_id": sender_agent_id}
            update.update(status=status_value, handled_by=handled_by, assigned_agent_id=assigned_agent_id)
            if human_agent_id:
                update["human_agent_id"] = human_agent_id
            if ai_agent_id:
                update["ai_agent_id"] = ai_agent_id
            chat = self._update_chat(active["id"], update)
        else:
            chat_id = str(uuid.uuid4())
            with self._tx() as db:
                db.execute(
                    "INSERT INTO chats (id, organization_id, customer_id, channel, assigned_agent_id, "
                    "ai_agent_id, "
                    "human_agent_id, sender_agent_id, handled_by, status, unread_count, last_message_at, "
                    "created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                    (
                        chat_id,
                        org_id,
                        customer_id,
                        channel,
                        assigned_agent_id,
                        ai_agent_id,
                        human_agent_id,
                        sender_agent_id,
                        handled_by,
                        status_value,
                        now,
                        now,
                        now,
                    ),
                )
            created_chat = self._chat_row(chat_id)
            assert created_chat is not None
            chat = created_chat
        initial = fields["initial_message"]
        if initial:
            self._insert_message(
                chat["id"],
                "agent",
                user.user_id,
                initial,
                metadata={"source": "new_chat_modal"},
                touch_chat=False,
            )
            await self._broadcast_new_message(
                org_id,
                chat_id=chat["id"],
                message_id=uuid.uuid4().hex,  # quirk O7: not the stored id
                customer_id=customer_id,
                customer_name=fields["customer_name"] or "Customer",
                content=initial,
                channel=str(channel),
                handled_by=handled_by,
                sender_type="agent",
                sender_id=sender_agent_id or user.user_id,
                sender_name="Human Agent" if handled_by == "human" else "AI Assistant",
                is_new_chat=True,
            )
        else:
            await self._broadcast_chat_update(org_id, chat["id"], "chat_created", self._chat_raw(chat))
        result = self._chat_api(chat)
        result["last_message"] = None
        return web.json_response(result, status=201)

    def _find_or_create_customer(self, org_id: str, contact: str, name: str | None, channel: str) -> str:
        digits = re.sub(r"[^\d]", "", contact)
        if "@" in contact:
            row = self._one("SELECT id FROM customers WHERE organization_id=? AND email=?", org_id, contact)
        else:
            row = self._one(
                "SELECT id FROM customers WHERE organization_id=? AND (phone=? OR phone=?)",
                org_id,
                contact,
                digits,
            )
        if row is not None:
            return str(row["id"])
        metadata: dict[str, Any] = {"source": "dashboard_create"}
        if "@" not in contact and channel in ("telegram", "whatsapp"):
            metadata[f"{channel}_id"] = digits
        customer_id = str(uuid.uuid4())
        now = self._ts()
        with self._tx() as db:
            db.execute(
                "INSERT INTO customers (id, organization_id, name, email, phone, metadata, created_at, "
                "updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    customer_id,
                    org_id,
                    name or "New Customer",
                    contact if "@" in contact else None,
                    None if "@" in contact else contact,
                    json.dumps(metadata),
                    now,
                    now,
                ),
            )
        return customer_id

    async def _assign(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        errors: list[dict[str, Any]] = []
        agent_id = self._opt_str(body, "assigned_agent_id", errors)
        to_me = body.get("assigned_to_me", False)
        if not isinstance(to_me, bool):
            errors.append(
                _validation(["body", "assigned_to_me"], "bool_type", "Input should be a valid boolean", to_me)
            )
        if errors:
            raise _HTTPError(422, errors)
        user, org_id = self._rest_org(request)
        chat_id = request.match_info["chat_id"]
        chat = self._chat_row(chat_id, org_id)
        if chat is None:
            raise _HTTPError(404, f"Chat {chat_id} not found")
        target_id: str | None
        if to_me:
            mine = self._one(
                "SELECT id FROM agents WHERE user_id=? AND organization_id=?", user.user_id, org_id
            )
            if mine is not None:
                target_id = mine["id"]
            else:
                target_id = str(uuid.uuid4())
                meta = user.claims.get("user_metadata") or {}
                with self._tx() as db:
                    db.execute(
                        "INSERT INTO agents (id, organization_id, user_id, name, email, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            target_id,
                            org_id,
                            user.user_id,
                            meta.get("full_name") or "Unnamed Agent",
                            user.email or f"{user.user_id}@example.com",
                            self._ts(),
                        ),
                    )
        else:
            target_id = agent_id
        if not target_id:
            raise _HTTPError(400, "No agent identified for assignment")
        agent = self._one("SELECT * FROM agents WHERE id=? AND organization_id=?", target_id, org_id)
        if agent is None:
            raise _HTTPError(404, "Agent not found")
        handled_by = "human" if agent["user_id"] else "ai"
        update: dict[str, Any] = {
            "assigned_agent_id": target_id,
            "status": "assigned",
            "handled_by": handled_by,
        }
        if handled_by == "human":
            update["human_agent_id"] = target_id
        chat = self._update_chat(chat_id, update)
        ticket = self._one(
            "SELECT id FROM tickets WHERE customer_id=? AND status NOT IN ('resolved', 'closed') "
            "ORDER BY created_at DESC LIMIT 1",
            chat["customer_id"],
        )
        if ticket is not None:
            with self._tx() as db:
                db.execute(
                    "UPDATE tickets SET assigned_agent_id=?, updated_at=? WHERE id=?",
                    (target_id, self._ts(), ticket["id"]),
                )
        return web.json_response(self._chat_api(chat))

    async def _escalate(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        errors: list[dict[str, Any]] = []
        human_agent_id = body.get("human_agent_id")
        if human_agent_id is None:
            errors.append(_validation(["body", "human_agent_id"], "missing", "Field required", body))
        elif not isinstance(human_agent_id, str):
            errors.append(
                _validation(
                    ["body", "human_agent_id"],
                    "string_type",
                    "Input should be a valid string",
                    human_agent_id,
                )
            )
        reason = self._opt_str(body, "reason", errors)
        if errors:
            raise _HTTPError(422, errors)
        _user, org_id = self._rest_org(request)
        chat_id = request.match_info["chat_id"]
        chat = self._chat_row(chat_id, org_id)
        if chat is None:
            raise _HTTPError(404, f"Chat with ID {chat_id} not found")
        if chat["status"] in ("resolved", "closed"):
            raise _HTTPError(400, f"Cannot escalate a {chat['status']} chat")
        if chat["handled_by"] == "human":
            raise _HTTPError(409, "Chat is already being handled by a human agent")
        agent = self._one("SELECT * FROM agents WHERE id=? AND organization_id=?", human_agent_id, org_id)
        if agent is None:
            raise _HTTPError(404, f"Agent with ID {human_agent_id} not found")
        if agent["user_id"] is None:
            raise _HTTPError(400, "Cannot escalate to an AI agent. Please provide a human agent ID.")
        chat = self._update_chat(
            chat_id,
            {
                "human_agent_id": human_agent_id,
                "handled_by": "human",
                "status": "assigned",
                "assigned_agent_id": human_agent_id,
                "escalated_at": self._ts(),
                "escalation_reason": reason,
            },
        )
        customer = self._one("SELECT name FROM customers WHERE id=?", chat["customer_id"])
        human_name = self._agent_name(human_agent_id)
        joined = {
            "ai_agent_name": self._agent_name(chat["ai_agent_id"]),
            "human_agent_name": human_name,
            "customer_name": None if customer is None else customer["name"],
            "agent_name": human_name,
        }
        return web.json_response(self._chat_api(chat, joined=joined))

    async def _resolve(self, request: web.Request) -> web.Response:
        _user, org_id = self._rest_org(request)
        chat_id = request.match_info["chat_id"]
        chat = self._chat_row(chat_id, org_id)
        if chat is None:
            raise _HTTPError(404, f"Chat with ID {chat_id} not found")
        chat = await self._do_resolve(chat)
        return web.json_response(self._chat_api(chat))

    async def _do_resolve(self, chat: sqlite3.Row) -> sqlite3.Row:
        chat = self._update_chat(
            chat["id"],
            {
                "status": "resolved",
                "resolved_at": self._ts(),
                "resolved_by_agent_id": chat["assigned_agent_id"],
            },
        )
        last = self._last_message_row(chat["id"])
        data = self._chat_raw(chat)
        data["last_message"] = None if last is None else self._message_raw(last)
        await self._broadcast_chat_update(chat["organization_id"], chat["id"], "chat_resolved", data)
        return chat

    # ------------------------------------------------------------------------------------------
    # REST: messages

    async def _list_messages(self, request: web.Request) -> web.Response:
        q = _Query(request)
        skip = q.integer("skip", 0, ge=0)
        limit = q.integer("limit", 50, ge=1, le=100)
        q.check()
        _user, org_id = self._rest_org(request)
        chat_id = request.match_info["chat_id"]
        if self._chat_row(chat_id, org_id) is None:
            raise _HTTPError(404, f"Chat {chat_id} not found")
        order = "DESC" if (q.text("sort_order") or "desc").lower() == "desc" else "ASC"
        total = self._db.execute("SELECT count(*) FROM messages WHERE chat_id=?", (chat_id,)).fetchone()[0]
        rows = self._db.execute(
            f"SELECT * FROM messages WHERE chat_id=? ORDER BY created_at {order}, seq {order} "
            "LIMIT ? OFFSET ?",
            (chat_id, limit, skip),
        ).fetchall()
        names = {"ai": "AI Assistant", "agent": "Human Agent", "customer": "Customer"}
        messages = [self._message_api(row, names.get(row["sender_type"])) for row in rows]
        return web.json_response({"messages": messages, "total": total or len(messages)})

    async def _post_message(self, request: web.Request) -> web.Response:
        form: Mapping[str, Any] = {}
        if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.post()
        errors = [
            _validation(["body", name], "missing", "Field required", None)
            for name in ("sender_type", "sender_id")
            if not isinstance(form.get(name), str)
        ]
        if errors:
            raise _HTTPError(422, errors)
        _user, org_id = self._rest_org(request)
        chat_id = request.match_info["chat_id"]
        chat = self._chat_row(chat_id, org_id)
        if chat is None:
            raise _HTTPError(404, f"Chat {chat_id} not found")
        sender_type, sender_id = str(form["sender_type"]), str(form["sender_id"])
        if sender_type not in ("agent", "ai", "customer"):
            raise _HTTPError(500, f"Failed to create message: invalid sender_type {sender_type!r}")
        content = form.get("content")
        if not isinstance(content, str) or content.lower() in ("null", "undefined"):
            content = ""
        metadata: dict[str, Any] = {}
        raw_meta = form.get("metadata")
        if isinstance(raw_meta, str) and raw_meta:
            parsed = _loads(raw_meta, None)
            if isinstance(parsed, dict):
                metadata = parsed
            else:
                logger.warning("Invalid metadata JSON")
        upload = form.get("file")
        if isinstance(upload, web.FileField):
            data = upload.file.read()
            filename = upload.filename or "file.bin"
            ext = filename.rsplit(".", 1)[-1] if "." in filename else "bin"
            content_type = upload.content_type or "application/octet-stream"
            name = f"{uuid.uuid4()}.{ext}"
            with self._tx() as db:
                db.execute("INSERT INTO media VALUES (?, ?, ?)", (name, content_type, data))
            metadata["media_url"] = f"{request.url.origin()}/storage/v1/object/public/chat-media/{name}"
            metadata["filename"] = filename
            metadata["media_type"] = content_type
            metadata["is_document"] = not content_type.startswith(("image/", "video/"))
        ticket_id = form.get("ticket_id") if isinstance(form.get("ticket_id"), str) else None
        row = self._insert_message(
            chat_id, sender_type, sender_id, content, metadata=metadata, ticket_id=ticket_id
        )
        sender_name = {"agent": "Human Agent", "ai": "AI Assistant"}.get(sender_type, "Customer")
        broadcast_name = sender_name
        if sender_type == "customer":
            customer = self._one("SELECT name FROM customers WHERE id=?", chat["customer_id"])
            broadcast_name = "Unknown Customer" if customer is None else customer["name"]
        url = metadata.get("media_url") or metadata.get("file_url")
        attachment = (
            {
                "url": url,
                "type": metadata.get("media_type") or "application/octet-stream",
                "name": metadata.get("filename") or "file.bin",
            }
            if url
            else None
        )
        chat = self._chat_row(chat_id) or chat
        await self._broadcast_new_message(
            org_id,
            chat_id=chat_id,
            message_id=row["id"],
            customer_id=chat["customer_id"],
            customer_name=broadcast_name,
            content=row["content"],
            channel=chat["channel"],
            handled_by=chat["handled_by"],
            sender_type=sender_type,
            sender_id=sender_id,
            sender_name=sender_name,
            attachment=attachment,
            metadata=metadata,
            created_at=row["created_at"],
        )
        return web.json_response(self._message_api(row, sender_name), status=201)

    async def _media(self, request: web.Request) -> web.Response:
        row = self._one("SELECT * FROM media WHERE name=?", request.match_info["name"])
        if row is None:
            return web.json_response(
                {"statusCode": "404", "error": "not_found", "message": "Object not found"}, status=400
            )
        return web.Response(body=bytes(row["data"]), content_type=row["content_type"])

    # ------------------------------------------------------------------------------------------
    # REST: customers and tickets

    async def _list_customers(self, request: web.Request) -> web.Response:
        q = _Query(request)
        skip = q.integer("skip", 0, ge=0)
        limit = q.integer("limit", 50, ge=1, le=100)
        q.check()
        _user, org_id = self._rest_org(request)
        where, args = "organization_id=?", [org_id]
        search = q.text("search")
        if search:
            where += " AND (name LIKE ? OR email LIKE ? OR phone LIKE ?)"
            args += [f"%{search}%"] * 3
        total = self._db.execute(f"SELECT count(*) FROM customers WHERE {where}", args).fetchone()[0]
        rows = self._db.execute(
            f"SELECT * FROM customers WHERE {where} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            [*args, limit, skip],
        ).fetchall()
        customers = [self._customer_api(r) for r in rows]
        return web.json_response({"customers": customers, "total": total or len(customers)})

    async def _get_customer(self, request: web.Request) -> web.Response:
        _user, org_id = self._rest_org(request)
        customer_id = request.match_info["customer_id"]
        row = self._one("SELECT * FROM customers WHERE id=? AND organization_id=?", customer_id, org_id)
        if row is None:
            raise _HTTPError(404, f"Customer with ID {customer_id} not found")
        return web.json_response(self._customer_api(row))

    async def _list_tickets(self, request: web.Request) -> web.Response:
        q = _Query(request)
        status_filter = q.choice("status_filter", TICKET_STATUSES)
        skip = q.integer("skip", 0, ge=0)
        limit = q.integer("limit", 50, ge=1, le=100)
        q.check()
        _user, org_id = self._rest_org(request)
        where, args = ["organization_id=?"], [org_id]
        for column, value in (
            ("status", status_filter),
            ("chat_id", q.text("chat_id")),
            ("customer_id", q.text("customer_id")),
        ):
            if value:
                where.append(f"{column}=?")
                args.append(value)
        clause = " AND ".join(where)
        total = self._db.execute(f"SELECT count(*) FROM tickets WHERE {clause}", args).fetchone()[0]
        rows = self._db.execute(
            f"SELECT * FROM tickets WHERE {clause} ORDER BY updated_at DESC LIMIT ? OFFSET ?",
            [*args, limit, skip],
        ).fetchall()
        tickets = [self._ticket_api(r) for r in rows]
        return web.json_response({"tickets": tickets, "total": total or len(tickets)})

    async def _get_ticket(self, request: web.Request) -> web.Response:
        _user, org_id = self._rest_org(request)
        ticket_id = request.match_info["ticket_id"]
        row = self._one("SELECT * FROM tickets WHERE id=? AND organization_id=?", ticket_id, org_id)
        if row is None:
            raise _HTTPError(404, f"Ticket with ID {ticket_id} not found")
        return web.json_response(self._ticket_api(row))

    async def _create_ticket(
        self,
        org_id: str,
        chat: sqlite3.Row,
        title: str,
        *,
        description: str | None = None,
        priority: str = "medium",
    ) -> sqlite3.Row:
        """``TicketService.create_ticket``: insert, then broadcast ``ticket_created``."""
        now = self._ts()
        count = self._db.execute(
            "SELECT count(*) FROM tickets WHERE organization_id=?", (org_id,)
        ).fetchone()[0]
        ticket_id = str(uuid.uuid4())
        number = f"TKT-{_utc(self._now()):%Y%m%d}-{count + 1:04d}"
        with self._tx() as db:
            db.execute(
                "INSERT INTO tickets (id, organization_id, ticket_number, chat_id, customer_id, "
                "assigned_agent_id, "
                "title, description, priority, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)",
                (
                    ticket_id,
                    org_id,
                    number,
                    chat["id"],
                    chat["customer_id"],
                    chat["assigned_agent_id"],
                    title,
                    description,
                    priority,
                    now,
                    now,
                ),
            )
        row = self._one("SELECT * FROM tickets WHERE id=?", ticket_id)
        assert row is not None
        await self._broadcast_chat_update(
            org_id,
            chat["id"],
            "ticket_created",
            {"ticket_id": ticket_id, "ticket_number": number, "status": "open", "priority": priority},
        )
        return row

    async def _create_ticket_endpoint(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        errors = [
            _validation(["body", name], "missing", "Field required", body)
            for name in ("chat_id", "customer_id", "title")
            if not isinstance(body.get(name), str)
        ]
        priority = body.get("priority", "medium")
        if priority not in TICKET_PRIORITIES:
            errors.append(
                _validation(
                    ["body", "priority"],
                    "enum",
                    "Input should be 'low', 'medium', 'high' or 'urgent'",
                    priority,
                )
            )
        if errors:
            raise _HTTPError(422, errors)
        _user, org_id = self._rest_org(request)
        chat = self._chat_row(body["chat_id"], org_id)
        if chat is None:
            raise _HTTPError(500, "Failed to create ticket: chat not found")
        active = self._one(
            "SELECT ticket_number FROM tickets WHERE organization_id=? AND chat_id=? "
            "AND status NOT IN ('resolved', 'closed')",
            org_id,
            chat["id"],
        )
        if active is not None:
            raise _HTTPError(
                409, f"An active ticket ({active['ticket_number']}) already exists for this chat."
            )
        row = await self._create_ticket(
            org_id, chat, body["title"], description=body.get("description"), priority=priority
        )
        return web.json_response(self._ticket_api(row), status=201)

    async def _update_ticket(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        errors: list[dict[str, Any]] = []
        if "status" in body and body["status"] not in TICKET_STATUSES:
            errors.append(
                _validation(
                    ["body", "status"],
                    "enum",
                    "Input should be 'open', 'in_progress', 'resolved' or 'closed'",
                    body["status"],
                )
            )
        if "priority" in body and body["priority"] not in TICKET_PRIORITIES:
            errors.append(
                _validation(
                    ["body", "priority"],
                    "enum",
                    "Input should be 'low', 'medium', 'high' or 'urgent'",
                    body["priority"],
                )
            )
        if errors:
            raise _HTTPError(422, errors)
        _user, org_id = self._rest_org(request)
        ticket_id = request.match_info["ticket_id"]
        if self._one("SELECT id FROM tickets WHERE id=? AND organization_id=?", ticket_id, org_id) is None:
            raise _HTTPError(404, "Ticket not found")
        allowed = ("title", "description", "category", "priority", "status", "assigned_agent_id")
        values = {k: body[k] for k in allowed if k in body}
        now = self._ts()
        values["updated_at"] = now
        if values.get("status") == "resolved":
            values["resolved_at"] = now
        if values.get("status") == "closed":
            values["closed_at"] = now
        assignments = ", ".join(f"{k}=?" for k in values)
        with self._tx() as db:
            db.execute(f"UPDATE tickets SET {assignments} WHERE id=?", (*values.values(), ticket_id))
        row = self._one("SELECT * FROM tickets WHERE id=?", ticket_id)
        assert row is not None
        await self._broadcast_chat_update(
            org_id,
            row["chat_id"],
            "ticket_updated",
            {
                "ticket_id": ticket_id,
                "ticket_number": row["ticket_number"],
                "status": row["status"],
                "priority": row["priority"],
            },
        )
        return web.json_response(self._ticket_api(row))

    # ------------------------------------------------------------------------------------------
    # DemoBackend

    def info(self, base_url: str) -> DemoInfo:
        """Agents (with passwords), org ids and the Supabase-like settings."""
        base = base_url.rstrip("/")
        rows = self._db.execute(
            "SELECT u.*, a.id AS agent_id FROM users u LEFT JOIN agents a ON a.user_id=u.id "
            "WHERE u.organization_id IS NOT NULL ORDER BY u.rowid"
        ).fetchall()
        agents = tuple(
            DemoAgent(
                email=r["email"],
                password=r["password"],
                tenant=r["organization_id"],
                name=r["full_name"],
                user_id=r["id"],
            )
            for r in rows
        )
        org_ids = self._org_ids()
        no_org = self._one("SELECT email FROM users WHERE organization_id IS NULL LIMIT 1")
        extra = {
            "supabase_url": base,
            "supabase_anon_key": self._anon_key,
            "org_id": org_ids[0],
            "org_ids": ",".join(org_ids),
            "jwt_secret": self._jwt_secret,
            "user_without_org": "" if no_org is None else no_org["email"],
        }
        for number, org_id in enumerate(org_ids, start=1):
            extra[f"org{number}_id"] = org_id
            extra[f"org{number}_ai_agent_id"] = self._ai_agent(org_id)["id"]
        return DemoInfo(dialect=self.dialect, url=base, agents=agents, extra=extra)

    def _tenant(self, tenant: str | None) -> str:
        org_ids = self._org_ids()
        if tenant is None:
            return org_ids[0]
        if tenant not in org_ids:
            raise ValueError(f"unknown org {tenant!r}")
        return tenant

    async def new_customer(
        self,
        *,
        tenant: str | None = None,
        name: str | None = None,
        language: str = "en",
        channel: str | None = None,
    ) -> DemoCustomer:
        """Create a customer and their chat (AI-handled, no message yet; nothing is broadcast).

        Args:
            tenant: org id (default: the first org).
            name: display name (default: picked from a list).
            language: "en" or "id".
            channel: whatsapp/telegram/email/web (default: rotates through them).
        """
        org_id = self._tenant(tenant)
        count = self._db.execute(
            "SELECT count(*) FROM customers WHERE organization_id=?", (org_id,)
        ).fetchone()[0]
        channel = channel or CHANNELS[count % len(CHANNELS)]
        if channel not in ALL_CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        name = name or (_NAMES_ID if language == "id" else _NAMES_EN)[count % 6]
        phone = f"62812{count + 1:07d}"
        metadata: dict[str, Any] = {}
        if channel in ("whatsapp", "telegram"):
            metadata[f"{channel}_id"] = phone
        email = f"customer{count + 1}@example.com" if channel == "email" else None
        customer_id, chat_id = str(uuid.uuid4()), str(uuid.uuid4())
        ai = self._ai_agent(org_id)
        now = self._ts()
        with self._tx() as db:
            db.execute(
                "INSERT INTO customers (id, organization_id, name, email, phone, metadata, language, "
                "created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    customer_id,
                    org_id,
                    name,
                    email,
                    None if email else phone,
                    json.dumps(metadata),
                    language,
                    now,
                    now,
                ),
            )
            db.execute(
                "INSERT INTO chats (id, organization_id, customer_id, channel, assigned_agent_id, "
                "ai_agent_id, "
                "sender_agent_id, handled_by, status, unread_count, last_message_at, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'ai', 'open', 1, ?, ?, ?)",
                (chat_id, org_id, customer_id, channel, ai["id"], ai["id"], ai["id"], now, now, now),
            )
        return DemoCustomer(ref=chat_id, name=name, tenant=org_id, channel=channel, language=language)

    def _customer_chat(self, customer: DemoCustomer) -> sqlite3.Row:
        chat = self._chat_row(customer.ref)
        if chat is None:
            raise KeyError(f"unknown chat {customer.ref}")
        return chat

    async def customer_writes(self, customer: DemoCustomer, text: str) -> None:
        """A customer message through the channel webhook (``process_webhook_message_v2``)."""
        await self._customer_message(customer, text)

    async def customer_sends_media(
        self, customer: DemoCustomer, kind: str = "image", caption: str = ""
    ) -> None:
        """A WhatsApp media message: ``attachment.type`` is the WhatsApp type, name "Media Attachment".

        Args:
            customer: who sends it.
            kind: "image", "video" or "document".
            caption: the message text (may be empty).
        """
        ext = {"image": "jpg", "video": "mp4"}.get(kind, "pdf")
        url = f"https://media.demo.invalid/{uuid.uuid4().hex}.{ext}"
        await self._customer_message(
            customer,
            caption,
            extra_metadata={"media_url": url, "media_type": kind, "message_type": kind},
            attachment={"url": url, "type": kind, "name": "Media Attachment"},
        )

    async def _customer_message(
        self,
        customer: DemoCustomer,
        text: str,
        *,
        extra_metadata: Mapping[str, Any] | None = None,
        attachment: Mapping[str, Any] | None = None,
    ) -> sqlite3.Row:
        chat = self._customer_chat(customer)
        is_new = self._last_message_row(chat["id"]) is None
        reopened = chat["status"] in ("resolved", "closed")
        if reopened:
            ai = self._ai_agent(chat["organization_id"])
            chat = self._update_chat(
                chat["id"],
                {
                    "status": "open",
                    "handled_by": "ai",
                    "assigned_agent_id": ai["id"],
                    "human_agent_id": None,
                    "resolved_at": None,
                    "resolved_by_agent_id": None,
                    "escalated_at": None,
                    "escalation_reason": None,
                },
            )
        customer_row = self._one("SELECT * FROM customers WHERE id=?", chat["customer_id"])
        assert customer_row is not None
        metadata: dict[str, Any] = {"channel": chat["channel"], "sender_name": customer_row["name"]}
        if chat["channel"] == "whatsapp":
            metadata["whatsapp_message_id"] = f"3EB0{secrets.token_hex(8).upper()}"
            metadata["dataType"] = "message"
        metadata.update(extra_metadata or {})
        row = self._insert_message(chat["id"], "customer", chat["customer_id"], text, metadata=metadata)
        richer = None
        repeat = 1
        if self._split_events and chat["channel"] == "whatsapp":
            repeat = 2
            richer = {
                **metadata,
                "dataType": "media" if attachment else "message_ack",
                "push_name": customer_row["name"],
            }
        await self._broadcast_new_message(
            chat["organization_id"],
            chat_id=chat["id"],
            message_id=row["id"],
            customer_id=chat["customer_id"],
            customer_name=customer_row["name"] or "Unknown",
            content=text,
            channel=chat["channel"],
            handled_by=chat["handled_by"],
            sender_type="customer",
            sender_id=chat["customer_id"],
            sender_name=customer_row["name"] or "Unknown",
            is_new_chat=is_new,
            was_reopened=reopened,
            metadata=metadata,
            attachment=attachment,
            agents=self._chat_agents(chat),
            repeat=repeat,
            second_metadata=richer,
        )
        return row

    async def bot_replies(self, customer: DemoCustomer, text: str) -> None:
        """An AI reply (``dynamic_ai_service_v2._broadcast_response``)."""
        chat = self._customer_chat(customer)
        await self._ai_message(chat, text)

    async def _ai_message(self, chat: sqlite3.Row, text: str) -> sqlite3.Row:
        ai_id = chat["ai_agent_id"] or self._ai_agent(chat["organization_id"])["id"]
        row = self._insert_message(chat["id"], "ai", ai_id, text, metadata={"source": "ai_agent"})
        customer = self._one("SELECT name FROM customers WHERE id=?", chat["customer_id"])
        await self._broadcast_new_message(
            chat["organization_id"],
            chat_id=chat["id"],
            message_id=row["id"],
            customer_id=chat["customer_id"],
            customer_name=None if customer is None else customer["name"],
            content=text,
            channel=chat["channel"],
            handled_by=chat["handled_by"],
            sender_type="ai",
            sender_id=ai_id,
            sender_name=self._agent_name(ai_id),
            metadata={"source": "ai_agent"},
            created_at=row["created_at"],
            agents=self._chat_agents(chat),
        )
        return row

    async def ask_for_human(self, customer: DemoCustomer, text: str = "") -> None:
        """The customer asks for a human and the AI hands off (see the module docstring)."""
        language = customer.language if customer.language in _HUMAN_REQUEST else "en"
        await self._customer_message(customer, text or _HUMAN_REQUEST[language])
        chat = self._customer_chat(customer)
        chat = self._update_chat(
            chat["id"],
            {
                "handled_by": "human",
                "escalated_at": self._ts(),
                "escalation_reason": "Customer requested human agent",
            },
        )
        await self._ai_message(chat, _HANDOFF_REPLY[language])
        active = self._one(
            "SELECT id FROM tickets WHERE chat_id=? AND status NOT IN ('resolved', 'closed')", chat["id"]
        )
        if active is None:
            await self._create_ticket(
                chat["organization_id"], chat, f"[HIGH] {customer.name} - human requested", priority="high"
            )

    async def busy_auto_reply(self, customer: DemoCustomer, text: str) -> None:
        """A busy / out-of-schedule auto reply (``save_and_broadcast_system_message``).

        ``sender_type`` ai, ``customer_id`` null, ``customer_name`` = the agent's name.
        """
        chat = self._customer_chat(customer)
        ai = self._ai_agent(chat["organization_id"])
        row = self._insert_message(chat["id"], "ai", ai["id"], text, metadata={"is_system_message": True})
        await self._broadcast_new_message(
            chat["organization_id"],
            chat_id=chat["id"],
            message_id=row["id"],
            customer_id=None,
            customer_name=ai["name"],
            content=text,
            channel=chat["channel"],
            handled_by=chat["handled_by"],
            sender_type="ai",
            sender_id=ai["id"],
            sender_name=ai["name"],
            metadata={"is_system_message": True},
            created_at=row["created_at"],
        )

    async def ticket_follow_up(self, customer: DemoCustomer, text: str) -> None:
        """The ticket follow-up cron: ``customer_name`` "System", ``metadata`` a JSON string."""
        chat = self._customer_chat(customer)
        metadata = {"type": "ticket_follow_up", "automated": True}
        row = self._insert_message(chat["id"], "ai", None, text, metadata=metadata)
        await self._broadcast_new_message(
            chat["organization_id"],
            chat_id=chat["id"],
            message_id=row["id"],
            customer_id=chat["customer_id"],
            customer_name="System",
            content=text,
            channel=chat["channel"],
            handled_by=chat["handled_by"],
            sender_type="ai",
            sender_id="system",
            sender_name="System",
            metadata=json.dumps(metadata),
            created_at=row["created_at"],
        )

    async def emit_document_event(
        self, tenant: str | None = None, kind: str = "file_upload_completed"
    ) -> None:
        """Publish a document-pipeline notification (no envelope, no timestamp) to an org."""
        if kind not in DOCUMENT_EVENTS:
            raise ValueError(f"unknown document event {kind!r}")
        org_id = self._tenant(tenant)
        frame: dict[str, Any] = {
            "type": kind,
            "organization_id": org_id,
            "agent_id": self._ai_agent(org_id)["id"],
            "doc_id": str(uuid.uuid4()),
            "filename": "katalog.pdf",
            "table": "documents" if kind.startswith("document") else "files",
        }
        if kind.endswith("completed"):
            frame.update(status="completed", url="https://media.demo.invalid/katalog.pdf")
        elif kind.endswith("warning"):
            frame.update(status="not_supported", message="File type not supported for indexing")
        else:
            frame.update(status="failed", error="Processing failed")
        await self._broadcast(org_id, frame)

    async def customer_leaves(self, customer: DemoCustomer) -> None:
        """The chat is resolved, as ``PUT /crm/chats/{id}/resolve`` does (broadcasts chat_resolved)."""
        await self._do_resolve(self._customer_chat(customer))

    def customers(self) -> list[DemoCustomer]:
        """Every chat (one per customer created by :meth:`new_customer` / :meth:`preload`)."""
        rows = self._db.execute(
            "SELECT c.id, c.organization_id, c.channel, u.name, u.language FROM chats c "
            "JOIN customers u ON u.id=c.customer_id ORDER BY c.rowid"
        )
        return [
            DemoCustomer(
                ref=r["id"],
                name=r["name"],
                tenant=r["organization_id"],
                channel=r["channel"],
                language=r["language"],
            )
            for r in rows
        ]

    async def agent_messages_since(self, customer: DemoCustomer, after: int) -> list[tuple[int, str]]:
        """Agent messages in this chat with a sequence number above ``after``."""
        rows = self._db.execute(
            "SELECT seq, content FROM messages WHERE chat_id=? AND sender_type='agent' AND seq>? "
            "ORDER BY seq",
            (customer.ref, after),
        )
        return [(int(r["seq"]), str(r["content"])) for r in rows]

    async def drop_sockets(self) -> int:
        """Abort every socket's TCP connection (no close frame)."""
        conns = list(self._all_conns)
        for conn in conns:
            if conn.transport is not None:
                conn.transport.abort()
        return len(conns)

    def make_zombie(self, *, tenant: str | None = None, user_id: str | None = None) -> int:
        """Turn matching sockets into zombies (O10): removed from the manager's tables, kept open.

        The app then never writes to them again (no broadcasts, no JSON ping/pong) while the
        protocol layer still answers pings, as after a failed broadcast send in the real server.

        Returns:
            How many sockets became zombies.
        """
        hit = [
            c
            for c in self._all_conns
            if c.registered
            and (tenant is None or c.org_id == tenant)
            and (user_id is None or c.user_id == user_id)
        ]
        for conn in hit:
            self._unregister(conn)
        return len(hit)

    def set_silent(self, silent: bool) -> None:
        """Send nothing at all (no frames, no protocol pings or pongs) while keeping sockets open."""
        self._silent = silent

    def set_refuse_upgrades(self, refuse: bool) -> None:
        """Answer WebSocket handshakes with ``refuse_status`` (default 502) while REST works."""
        self._refuse_upgrades = refuse

    def set_lost_events(self, rate: float) -> None:
        """Skip this fraction (0..1) of broadcasts (per-process fan-out with several workers)."""
        self._lost_event_rate = rate

    def set_split_events(self, enabled: bool) -> None:
        """Duplicate WhatsApp customer messages as the webhook's split events do (O6)."""
        self._split_events = enabled

    async def preload(self, waiting: int, *, tenant: str | None = None) -> None:
        """Bulk-insert ``waiting`` customers whose chat waits for a human (one message each)."""
        org_id = self._tenant(tenant)
        ai_id = self._ai_agent(org_id)["id"]
        base = self._db.execute(
            "SELECT count(*) FROM customers WHERE organization_id=?", (org_id,)
        ).fetchone()[0]
        now = self._ts()
        customers, chats, messages = [], [], []
        for i in range(waiting):
            number = base + i + 1
            channel = CHANNELS[number % len(CHANNELS)]
            customer_id, chat_id = str(uuid.uuid4()), str(uuid.uuid4())
            name = f"{_NAMES_EN[number % 6]} #{number}"
            customers.append((customer_id, org_id, name, f"62813{number:07d}", "{}", "en", now, now))
            chats.append(
                (
                    chat_id,
                    org_id,
                    customer_id,
                    channel,
                    ai_id,
                    ai_id,
                    ai_id,
                    now,
                    now,
                    "Customer requested human agent",
                    now,
                    now,
                )
            )
            messages.append((str(uuid.uuid4()), chat_id, customer_id, _HUMAN_REQUEST["en"], now, now))
        with self._tx() as db:
            db.executemany(
                "INSERT INTO customers (id, organization_id, name, phone, metadata, language, created_at, "
                "updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                customers,
            )
            db.executemany(
                "INSERT INTO chats (id, organization_id, customer_id, channel, assigned_agent_id, "
                "ai_agent_id, "
                "sender_agent_id, handled_by, status, unread_count, last_message_at, escalated_at, "
                "escalation_reason, "
                "created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'human', 'open', 1, ?, ?, ?, ?, ?)",
                chats,
            )
            db.executemany(
                "INSERT INTO messages (id, chat_id, sender_type, sender_id, content, created_at, updated_at) "
                "VALUES (?, ?, 'customer', ?, ?, ?, ?)",
                messages,
            )

    async def close(self) -> None:
        """Close every socket (1012, as uvicorn on shutdown) and the database."""
        self._closed = True
        for conn in list(self._all_conns):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1012, message=b"Service Restart"), timeout=2)
            if conn.transport is not None and not conn.ws.closed:
                conn.transport.abort()
        self._conns.clear()
        self._db.close()
