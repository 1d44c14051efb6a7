"""The Go "dashboard" dialect (PROTOCOL.md section 2): cookie login, REST and the WebSocket hub.

This is a faithful re-implementation of the server's behaviour as the client meets it in
production, quirks included: unix-int ``timestamp`` in frames but RFC 3339 in embedded objects,
empty ``agent_email``/``agent_name`` for socket-originated actions, one live socket per user with
the old socket's cleanup killing the new one, broadcasts silently dropped when a socket's
256-frame queue is full, ``customers: null`` in REST lists, and the error strings verbatim.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tray_agent.demo import texts
from tray_agent.demo.base import DemoAgent, DemoCustomer, DemoInfo
from tray_agent.demo.db import open_db

logger = logging.getLogger(__name__)

SESSION_COOKIE = "session"
SESSION_TTL = 24 * 3600.0
PING_INTERVAL = 54.0
READ_TIMEOUT = 60.0
WRITE_TIMEOUT = 10.0
QUEUE_SIZE = 256
MAX_FRAME = 512 * 1024

_MIGRATIONS = (
    """
    CREATE TABLE companies (company_id TEXT PRIMARY KEY, company_name TEXT NOT NULL);
    CREATE TABLE pages (
        page_id TEXT PRIMARY KEY, page_name TEXT NOT NULL,
        company_id TEXT NOT NULL REFERENCES companies(company_id), is_active INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY, username TEXT NOT NULL, email TEXT NOT NULL, password TEXT NOT NULL,
        first_name TEXT NOT NULL DEFAULT '', last_name TEXT NOT NULL DEFAULT '',
        company_id TEXT NOT NULL, role TEXT NOT NULL, is_active INTEGER NOT NULL DEFAULT 1,
        last_login REAL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        UNIQUE (email, company_id)
    );
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, username TEXT NOT NULL,
        email TEXT NOT NULL, company_id TEXT NOT NULL, role TEXT NOT NULL,
        expires_at REAL NOT NULL, is_active INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE customers (
        id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, customer_name TEXT NOT NULL,
        first_name TEXT NOT NULL DEFAULT '', last_name TEXT NOT NULL DEFAULT '',
        page_id TEXT NOT NULL, page_name TEXT NOT NULL, company_id TEXT NOT NULL,
        language TEXT NOT NULL DEFAULT 'en',
        message_count INTEGER NOT NULL DEFAULT 0, last_message TEXT NOT NULL DEFAULT '',
        last_seen REAL NOT NULL, first_seen REAL NOT NULL,
        stop INTEGER NOT NULL DEFAULT 0, stopped_at REAL,
        is_assigned INTEGER NOT NULL DEFAULT 0, agent_id TEXT NOT NULL DEFAULT '',
        agent_name TEXT NOT NULL DEFAULT '', agent_email TEXT NOT NULL DEFAULT '',
        assigned_at REAL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        UNIQUE (page_id, customer_id)
    );
    CREATE INDEX customers_company ON customers (company_id, stop, stopped_at);
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
        chat_id TEXT NOT NULL, sender_id TEXT NOT NULL, sender_name TEXT NOT NULL DEFAULT '',
        recipient_id TEXT NOT NULL DEFAULT '', page_id TEXT NOT NULL, page_name TEXT NOT NULL,
        message TEXT NOT NULL, is_bot INTEGER NOT NULL, is_human INTEGER NOT NULL DEFAULT 0,
        source TEXT NOT NULL DEFAULT '', agent_id TEXT NOT NULL DEFAULT '',
        agent_email TEXT NOT NULL DEFAULT '', agent_name TEXT NOT NULL DEFAULT '',
        timestamp REAL NOT NULL, updated_at REAL NOT NULL
    );
    CREATE INDEX messages_chat ON messages (page_id, chat_id, seq);
    """,
)

# Seed data written on first start: two companies kept apart, several pages and agents.
_SEED_COMPANIES = (("acme", "Acme Support"), ("globex", "Globex Store"))
_SEED_PAGES = (
    ("101000000000001", "Acme Shoes", "acme"),
    ("101000000000002", "Acme Travel Indonesia", "acme"),
    ("202000000000001", "Globex Store", "globex"),
)
_SEED_USERS = (
    ("alice@acme.test", "alice-demo", "Alice", "Agent", "acme", "human_agent"),
    ("bob@acme.test", "bob-demo", "Bob", "Admin", "acme", "company_admin"),
    ("carol@globex.test", "carol-demo", "Carol", "Support", "globex", "human_agent"),
)


class _Closed:
    """Sentinel put in a socket's queue when its channel is closed (Go ``close(conn.Send)``)."""


_CLOSE = _Closed()


def rfc3339(ts: float | None) -> str | None:
    """Format epoch seconds the way Go marshals a ``time.Time`` read back from Mongo (ms, UTC, Z)."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = moment.microsecond // 1000
    if millis:
        text += f".{millis:03d}".rstrip("0")
    return text + "Z"


def _hex_id() -> str:
    """A Mongo-ObjectId-looking hex id (24 chars)."""
    return secrets.token_hex(12)


def _json_response(data: Any, *, status: int = 200) -> web.Response:
    """JSON the way Go's encoder writes it: compact, UTF-8."""
    return web.json_response(data, status=status, dumps=_compact_dumps)


def _compact_dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _error(status: int, text: str, **extra: Any) -> web.Response:
    return _json_response({"error": text, **extra}, status=status)


@dataclass(eq=False)
class _Session:
    session_id: str
    user_id: str
    username: str
    email: str
    company_id: str
    role: str


@dataclass(eq=False)
class _Socket:
    """One upgraded connection: Go's ``WebSocketConnection`` with its buffered ``Send`` channel."""

    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    company_id: str
    user_id: str
    queue: asyncio.Queue[str | _Closed]
    # G9: the Go handler reads the never-set user_email / user_name locals, so these stay empty.
    user_email: str = ""
    user_name: str = ""
    dropped: int = 0
    sent: int = 0
    writer: asyncio.Task[None] | None = None

    def abort(self) -> None:
        """Close the TCP connection without a close frame (Go ``conn.Close()``: client sees 1006)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()  # type: ignore[attr-defined]


class DashboardBackend:
    """The Go Fiber "dashboard" server, backed by SQLite.

    Args:
        db_path: SQLite file (created and seeded on first use).
        ping_interval: seconds between protocol Pings (Go: 54).
        read_timeout: read deadline, reset by data frames and Pongs only (Go: 60).
        write_timeout: write deadline for one frame (Go: 10).
        queue_size: per-socket outbound queue; broadcasts beyond it are dropped (Go: 256).
        max_frame: inbound frame cap; larger frames close the socket with 1009 (Go: 512 KiB).
        old_socket_cleanup_kills_new: model G4 (the old socket's cleanup closes the newer socket's
            queue, which then gets an empty Close frame, code 1005). On by default, as in prod.
        clock: wall clock in epoch seconds (tests move it to expire sessions).
    """

    dialect = "dashboard"

    def __init__(
        self,
        db_path: str | Path,
        *,
        ping_interval: float = PING_INTERVAL,
        read_timeout: float = READ_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        queue_size: int = QUEUE_SIZE,
        max_frame: int = MAX_FRAME,
        old_socket_cleanup_kills_new: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ping_interval = ping_interval
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.queue_size = queue_size
        self.max_frame = max_frame
        self.old_socket_cleanup_kills_new = old_socket_cleanup_kills_new
        self.clock = clock
        self.send_failure: str | None = None  # when set, Messenger delivery fails with this text
        self.broadcasts_dropped = 0
        self._db: sqlite3.Connection = open_db(db_path, _MIGRATIONS)
        self._silent = False
        self._refuse_upgrades = False
        self._conns: dict[str, dict[str, _Socket]] = {}
        self._all_sockets: set[_Socket] = set()
        self._seed()

    # ------------------------------------------------------------------ seed and accounts
    def _seed(self) -> None:
        if self._db.execute("SELECT COUNT(*) FROM companies").fetchone()[0]:
            return
        with self._tx():
            self._db.executemany("INSERT INTO companies VALUES (?, ?)", _SEED_COMPANIES)
            self._db.executemany(
                "INSERT INTO pages (page_id, page_name, company_id) VALUES (?, ?, ?)", _SEED_PAGES
            )
        for email, password, first, last, company, role in _SEED_USERS:
            self.add_agent(email, password, company, first_name=first, last_name=last, role=role)

    @contextlib.contextmanager
    def _tx(self) -> Any:
        self._db.execute("BEGIN")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add_agent(
        self,
        email: str,
        password: str,
        company_id: str,
        *,
        first_name: str = "",
        last_name: str = "",
        role: str = "human_agent",
        is_active: bool = True,
    ) -> DemoAgent:
        """Create (or return the existing) user account; used by seeding, tests and the load bench."""
        row = self._db.execute(
            "SELECT * FROM users WHERE email = ? AND company_id = ?", (email, company_id)
        ).fetchone()
        if row is None:
            now = self.clock()
            user_id = _hex_id()
            username = email.split("@", 1)[0]
            self._db.execute(
                "INSERT INTO users (id, username, email, password, first_name, last_name, company_id,"
                " role, is_active, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (user_id, username, email, password, first_name, last_name, company_id, role,
                 int(is_active), now, now),
            )  # fmt: skip
            row = self._db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
        name = f"{row['first_name']} {row['last_name']}".strip()
        return DemoAgent(row["email"], row["password"], row["company_id"], name, row["id"])

    def add_company(self, company_id: str, name: str, pages: list[tuple[str, str]]) -> None:
        """Create a company and its pages (``[(page_id, page_name), ...]``) if missing."""
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO companies VALUES (?, ?)", (company_id, name))
            for page_id, page_name in pages:
                self._db.execute(
                    "INSERT OR IGNORE INTO pages (page_id, page_name, company_id) VALUES (?, ?, ?)",
                    (page_id, page_name, company_id),
                )

    # ------------------------------------------------------------------ DemoBackend: info
    def info(self, base_url: str) -> DemoInfo:
        """Active agents, companies and pages (``extra`` maps ``pages:<company>`` to page ids)."""
        rows = self._db.execute(
            "SELECT * FROM users WHERE is_active = 1 AND email NOT LIKE 'load-%' ORDER BY created_at, email"
        ).fetchall()
        agents = tuple(
            DemoAgent(
                r["email"],
                r["password"],
                r["company_id"],
                f"{r['first_name']} {r['last_name']}".strip(),
                r["id"],
            )
            for r in rows
        )
        extra = {"companies": ",".join(self._company_ids())}
        for company in self._company_ids():
            extra[f"pages:{company}"] = ",".join(p["page_id"] for p in self._pages(company))
        return DemoInfo(dialect=self.dialect, url=base_url, agents=agents, extra=extra)

    def _company_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT company_id FROM companies ORDER BY rowid")]

    def _pages(self, company_id: str) -> list[sqlite3.Row]:
        return self._db.execute(
            "SELECT * FROM pages WHERE company_id = ? ORDER BY rowid", (company_id,)
        ).fetchall()

    def _page(self, page_id: str, company_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM pages WHERE page_id = ? AND company_id = ?", (page_id, company_id)
        ).fetchone()
        return row

    # ------------------------------------------------------------------ customers and messages
    def _reload(self, row: sqlite3.Row) -> sqlite3.Row:
        fresh: sqlite3.Row = self._db.execute("SELECT * FROM customers WHERE id = ?", (row["id"],)).fetchone()
        return fresh

    def _customer_row(self, customer_id: str, page_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM customers WHERE customer_id = ? AND page_id = ?", (customer_id, page_id)
        ).fetchone()
        return row

    def customer_json(self, row: sqlite3.Row) -> dict[str, Any]:
        """A ``models.Customer`` as Go marshals it (``omitempty`` fields left out when empty)."""
        out: dict[str, Any] = {
            "id": row["id"],
            "customer_id": row["customer_id"],
            "customer_name": row["customer_name"],
        }
        if row["first_name"]:
            out["first_name"] = row["first_name"]
        if row["last_name"]:
            out["last_name"] = row["last_name"]
        out.update(page_id=row["page_id"], page_name=row["page_name"], company_id=row["company_id"])
        out["message_count"] = row["message_count"]
        if row["last_message"]:
            out["last_message"] = row["last_message"]
        out["last_seen"] = rfc3339(row["last_seen"])
        out["first_seen"] = rfc3339(row["first_seen"])
        out["stop"] = bool(row["stop"])
        if row["stopped_at"] is not None:
            out["stopped_at"] = rfc3339(row["stopped_at"])
        out["is_assigned"] = bool(row["is_assigned"])
        for key in ("agent_name", "agent_id", "agent_email"):
            if row[key]:
                out[key] = row[key]
        if row["assigned_at"] is not None:
            out["assigned_at"] = rfc3339(row["assigned_at"])
        out["created_at"] = rfc3339(row["created_at"])
        out["updated_at"] = rfc3339(row["updated_at"])
        return out

    def _demo_customer(self, row: sqlite3.Row) -> DemoCustomer:
        return DemoCustomer(
            ref=f"{row['page_id']}/{row['customer_id']}",
            name=row["customer_name"],
            tenant=row["company_id"],
            channel=row["page_id"],
            language=row["language"],
        )

    def _row_for(self, customer: DemoCustomer) -> sqlite3.Row:
        page_id, _, customer_id = customer.ref.partition("/")
        row = self._customer_row(customer_id, page_id)
        if row is None:
            raise KeyError(customer.ref)
        return row

    def _save_message(
        self,
        *,
        chat_id: str,
        sender_id: str,
        recipient_id: str,
        page: sqlite3.Row,
        text: str,
        is_bot: bool,
        is_human: bool = False,
        sender_name: str = "",
        source: str = "",
        agent: tuple[str, str, str] = ("", "", ""),
        at: float | None = None,
    ) -> None:
        now = self.clock() if at is None else at
        self._db.execute(
            "INSERT INTO messages (id, type, chat_id, sender_id, sender_name, recipient_id, page_id,"
            " page_name, message, is_bot, is_human, source, agent_id, agent_email, agent_name,"
            " timestamp, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (_hex_id(), "chat", chat_id, sender_id, sender_name, recipient_id, page["page_id"],
             page["page_name"], text, int(is_bot), int(is_human), source, *agent, now, now),
        )  # fmt: skip

    def _set_stop(self, row: sqlite3.Row, stop: bool) -> sqlite3.Row:
        now = self.clock()
        if stop:
            self._db.execute(
                "UPDATE customers SET stop = 1, stopped_at = ?, updated_at = ? WHERE id = ?",
                (now, now, row["id"]),
            )
        else:
            self._db.execute("UPDATE customers SET stop = 0, updated_at = ? WHERE id = ?", (now, row["id"]))
        return self._reload(row)

    def _assign(self, row: sqlite3.Row, agent_id: str, email: str, name: str) -> sqlite3.Row:
        now = self.clock()
        self._db.execute(
            "UPDATE customers SET agent_id = ?, agent_email = ?, agent_name = ?, is_assigned = 1,"
            " assigned_at = ?, updated_at = ? WHERE id = ?",
            (agent_id, email, name, now, now, row["id"]),
        )
        return self._reload(row)

    def _unassign(self, row: sqlite3.Row) -> sqlite3.Row:
        self._db.execute(
            "UPDATE customers SET agent_id = '', agent_email = '', agent_name = '', is_assigned = 0,"
            " assigned_at = NULL, updated_at = ? WHERE id = ?",
            (self.clock(), row["id"]),
        )
        return self._reload(row)

    # ------------------------------------------------------------------ DemoBackend: simulation
    async def new_customer(
        self, *, tenant: str | None = None, name: str | None = None, language: str = "en"
    ) -> DemoCustomer:
        """Create a customer on one of the company's pages.

        Indonesian customers favour the company's Indonesian page when it has one.
        """
        company = tenant or self._company_ids()[0]
        pages = self._pages(company)
        if not pages:
            raise ValueError(f"company {company!r} has no pages")
        count = self._db.execute("SELECT COUNT(*) FROM customers").fetchone()[0]
        page = pages[count % len(pages)]
        if language == "id":
            page = next((p for p in pages if "Indonesia" in p["page_name"]), page)
        psid = str(7_000_000_000_000_000 + secrets.randbelow(10**15))
        full_name = name or f"User {psid[:8]}"
        first, _, last = full_name.partition(" ")
        now = self.clock()
        self._db.execute(
            "INSERT INTO customers (id, customer_id, customer_name, first_name, last_name, page_id,"
            " page_name, company_id, language, last_seen, first_seen, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (_hex_id(), psid, full_name, first if name else "", last if name else "", page["page_id"],
             page["page_name"], company, language, now, now, now, now),
        )  # fmt: skip
        row = self._customer_row(psid, page["page_id"])
        assert row is not None
        return self._demo_customer(row)

    def _page_of(self, row: sqlite3.Row) -> sqlite3.Row:
        page = self._page(row["page_id"], row["company_id"])
        assert page is not None
        return page

    def _customer_message(self, row: sqlite3.Row, text: str) -> sqlite3.Row:
        """Store a customer message (webhook path) and broadcast it; returns the updated row."""
        page = self._page_of(row)
        now = self.clock()
        with self._tx():
            self._save_message(
                chat_id=row["customer_id"], sender_id=row["customer_id"], recipient_id=page["page_id"],
                page=page, text=text, is_bot=False, sender_name=row["customer_name"],
            )  # fmt: skip
            self._db.execute(
                "UPDATE customers SET message_count = message_count + 1, last_message = ?,"
                " last_seen = ?, updated_at = ? WHERE id = ?",
                (text, now, now, row["id"]),
            )
        data: dict[str, Any] = {
            "chat_id": row["customer_id"],
            "sender_id": row["customer_id"],
            "sender_name": row["customer_name"],
            "recipient_id": page["page_id"],
            "message": text,
            "is_bot": False,
            "timestamp": int(now),
        }
        if row["stop"]:
            data["requires_human"] = True
        self.broadcast(row["company_id"], "new_message", data, page_id=page["page_id"])
        return self._reload(row)

    def _bot_message(self, row: sqlite3.Row, text: str) -> None:
        page = self._page_of(row)
        with self._tx():
            self._save_message(
                chat_id=row["customer_id"], sender_id=page["page_id"], recipient_id=row["customer_id"],
                page=page, text=text, is_bot=True, sender_name=page["page_name"],
            )  # fmt: skip
        data = {
            "chat_id": row["customer_id"],
            "sender_id": page["page_id"],
            "sender_name": page["page_name"],
            "recipient_id": row["customer_id"],
            "message": text,
            "is_bot": True,
            "timestamp": int(self.clock()),
        }
        self.broadcast(row["company_id"], "new_message", data, page_id=page["page_id"])

    async def customer_writes(self, customer: DemoCustomer, text: str) -> None:
        """Webhook path: store, broadcast ``new_message`` (``requires_human`` when stopped)."""
        self._customer_message(self._row_for(customer), text)

    async def bot_replies(self, customer: DemoCustomer, text: str) -> None:
        """The bot answers, unless the customer is in human mode (the real bot stays quiet then)."""
        row = self._row_for(customer)
        if row["stop"]:
            logger.debug("bot stays quiet: customer %s is waiting for a human", customer.ref)
            return
        self._bot_message(row, text)

    async def ask_for_human(self, customer: DemoCustomer, text: str = "") -> None:
        """The webhook's escalation sequence when the AI decides a human is wanted.

        Customer message -> ``agent_requested`` -> ``customer_stop_status_changed`` -> empty bot
        message, in that order.
        """
        row = self._row_for(customer)
        text = text or ("Saya mau bicara dengan manusia" if customer.language == "id" else "I want a human")
        already = bool(row["stop"])
        row = self._customer_message(row, text)
        if already:
            return
        now = int(self.clock())
        self.broadcast(
            row["company_id"],
            "agent_requested",
            {
                "chat_id": row["customer_id"],
                "customer_name": row["customer_name"],
                "message": text,
                "timestamp": now,
            },
            page_id=row["page_id"],
        )
        with self._tx():
            row = self._set_stop(row, True)
        self.broadcast(
            row["company_id"],
            "customer_stop_status_changed",
            {"customer": self.customer_json(row), "stop": True, "timestamp": now},
            page_id=row["page_id"],
        )
        self._bot_message(row, "")

    async def customer_leaves(self, customer: DemoCustomer) -> None:
        """The conversation ends: stop turned off, broadcast as the REST stop endpoint does."""
        row = self._row_for(customer)
        with self._tx():
            row = self._set_stop(row, False)
        self.broadcast(
            row["company_id"],
            "customer_stop_status_changed",
            {"customer": self.customer_json(row), "stop": False, "timestamp": int(self.clock())},
            page_id=row["page_id"],
        )

    def customers(self) -> list[DemoCustomer]:
        """Every customer of every company, oldest first."""
        rows = self._db.execute("SELECT * FROM customers ORDER BY created_at, rowid").fetchall()
        return [self._demo_customer(r) for r in rows]

    async def agent_messages_since(self, customer: DemoCustomer, after: int) -> list[tuple[int, str]]:
        """Human agents' replies to this customer with ``seq > after``."""
        page_id, _, customer_id = customer.ref.partition("/")
        rows = self._db.execute(
            "SELECT seq, message FROM messages WHERE page_id = ? AND chat_id = ? AND is_human = 1"
            " AND seq > ? ORDER BY seq",
            (page_id, customer_id, after),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    async def preload(self, waiting: int, *, tenant: str | None = None) -> None:
        """Create ``waiting`` customers already waiting for a human, without broadcasting."""
        company = tenant or self._company_ids()[0]
        pages = self._pages(company)
        base = self.clock()
        with self._tx():
            for i in range(waiting):
                page = pages[i % len(pages)]
                psid = str(7_000_000_000_000_000 + secrets.randbelow(10**15))
                language = "id" if i % 3 == 2 else "en"
                name = texts.customer_name(language, i)
                text = texts.HUMAN_REQUESTS[language][i % len(texts.HUMAN_REQUESTS[language])]
                at = base - 60.0 * (waiting - i)
                self._db.execute(
                    "INSERT INTO customers (id, customer_id, customer_name, first_name, last_name,"
                    " page_id, page_name, company_id, language, message_count, last_message,"
                    " last_seen, first_seen, stop, stopped_at, created_at, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,1,?,?,?,1,?,?,?)",
                    (_hex_id(), psid, name, name.split(" ")[0], name.partition(" ")[2], page["page_id"],
                     page["page_name"], company, language, text, at, at, at, at, at),
                )  # fmt: skip
                self._save_message(
                    chat_id=psid, sender_id=psid, recipient_id=page["page_id"], page=page,
                    text=text, is_bot=False, sender_name=name, at=at,
                )  # fmt: skip

    # ------------------------------------------------------------------ DemoBackend: transport knobs
    async def drop_sockets(self) -> int:
        """Abort every socket's TCP connection (no close frame)."""
        sockets = list(self._all_sockets)
        for sock in sockets:
            sock.abort()
        return len(sockets)

    def set_silent(self, silent: bool) -> None:
        """While silent nothing is written: frames are discarded, no Ping, no Pong."""
        self._silent = silent

    def set_refuse_upgrades(self, refuse: bool) -> None:
        """Answer upgrade requests as if a proxy stripped the Upgrade header (426), REST unchanged."""
        self._refuse_upgrades = refuse

    def socket_count(self) -> int:
        """Sockets currently open (including ones no longer in the broadcast map)."""
        return len(self._all_sockets)

    async def close(self) -> None:
        """Abort sockets, stop their writers and close the database."""
        for sock in list(self._all_sockets):
            sock.abort()
            if sock.writer is not None:
                sock.writer.cancel()
        writers = [s.writer for s in self._all_sockets if s.writer is not None]
        if writers:
            await asyncio.gather(*writers, return_exceptions=True)
        self._db.close()

    # ------------------------------------------------------------------ broadcast hub
    def broadcast(self, company_id: str, type_: str, data: dict[str, Any], *, page_id: str = "") -> int:
        """Queue one frame to every socket in the company's broadcast map (non-blocking).

        Returns:
            How many sockets the frame was queued to; full queues drop it silently (G10).
        """
        conns = self._conns.get(company_id)
        if not conns:
            return 0
        payload: dict[str, Any] = {"type": type_}
        if page_id:
            payload["page_id"] = page_id
        payload["data"] = data
        payload["timestamp"] = int(self.clock())
        frame = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        queued = 0
        for sock in conns.values():
            try:
                sock.queue.put_nowait(frame)
                queued += 1
            except asyncio.QueueFull:
                sock.dropped += 1
                self.broadcasts_dropped += 1
                logger.warning("WebSocket connection buffer full (user %s)", sock.user_id)
        return queued

    def _register(self, sock: _Socket) -> None:
        self._conns.setdefault(sock.company_id, {})[sock.user_id] = sock

    def _unregister(self, company_id: str, user_id: str, sock: _Socket) -> None:
        conns = self._conns.get(company_id)
        if not conns or user_id not in conns:
            return
        current = conns[user_id]
        if current is not sock and not self.old_socket_cleanup_kills_new:
            return
        # Faithful G4: the map is keyed by user id, so the old socket's cleanup closes whichever
        # socket is registered now -- possibly the newer one, which then gets an empty Close frame.
        del conns[user_id]
        if not conns:
            del self._conns[company_id]
        self._close_queue(current)

    @staticmethod
    def _close_queue(sock: _Socket) -> None:
        while True:
            try:
                sock.queue.put_nowait(_CLOSE)
                return
            except asyncio.QueueFull:
                # close(ch) never blocks in Go; make room by discarding the oldest frame.
                sock.queue.get_nowait()

    # ------------------------------------------------------------------ HTTP plumbing
    def add_routes(self, app: web.Application) -> None:
        """Mount ``/auth/*``, ``/api/dashboard/ws`` and the ``/api/dashboard`` REST group."""
        r = app.router
        r.add_post("/auth/login", self._login)
        r.add_post("/auth/logout", self._logout)
        r.add_get("/auth/check", self._check)
        r.add_get("/api/dashboard/ws", self._ws_handler)
        api = "/api/dashboard"
        routes: list[tuple[str, str, Callable[[web.Request, _Session], Awaitable[web.Response]]]] = [
            ("GET", "/pages", self._rest_pages),
            ("GET", "/customers", self._rest_customers),
            ("GET", "/customers/search", self._rest_search),
            ("GET", "/customers/stats", self._rest_stats),
            ("GET", "/customers/{customerID}", self._rest_customer),
            ("POST", "/customers/{customerID}/message", self._rest_send),
            ("PUT", "/customers/{customerID}/stop", self._rest_stop),
            ("POST", "/customers/{customerID}/toggle-stop", self._rest_toggle_stop),
            ("PUT", "/customers/{customerID}/agent", self._rest_agent_name),
            ("DELETE", "/customers/{customerID}/agent", self._rest_unassign),
            ("PUT", "/customers/{customerID}/assignment", self._rest_assignment),
            ("GET", "/messages/conversation/{customerID}", self._rest_conversation),
            ("GET", "/messages/chat/{chatID}", self._rest_chat),
            ("GET", "/messages/page/{pageID}/chats", self._rest_page_chats),
            ("GET", "/messages", self._rest_messages),
        ]
        for method, path, handler in routes:
            r.add_route(method, api + path, self._authed(handler))

    def _session_from_cookie(self, request: web.Request) -> _Session | web.Response:
        """RequireAuth: 401 before anything else; a valid session slides to now + 24 h (G15)."""
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            return _error(401, "Authentication required")
        row = self._db.execute(
            "SELECT * FROM sessions WHERE session_id = ? AND is_active = 1", (token,)
        ).fetchone()
        now = self.clock()
        if row is None or row["expires_at"] <= now:
            return _error(401, "Invalid or expired session")
        self._db.execute(
            "UPDATE sessions SET expires_at = ? WHERE session_id = ?", (now + SESSION_TTL, token)
        )
        return _Session(token, row["user_id"], row["username"], row["email"], row["company_id"], row["role"])

    def _authed(
        self, handler: Callable[[web.Request, _Session], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            session = self._session_from_cookie(request)
            if isinstance(session, web.Response):
                return session
            return await handler(request, session)

        return wrapped

    @staticmethod
    async def _json_body(request: web.Request, fields: dict[str, type]) -> dict[str, Any] | None:
        """Fiber's BodyParser: JSON only, wrong field types fail the whole body."""
        if "json" not in request.content_type:
            return None
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return None
        if body is None:
            body = {}
        if not isinstance(body, dict):
            return None
        out: dict[str, Any] = {}
        for name, kind in fields.items():
            value = body.get(name)
            if value is None:
                out[name] = kind()
            elif type(value) is not kind:
                return None
            else:
                out[name] = value
        return out

    # ------------------------------------------------------------------ /auth
    def _cookie_flags(self, request: web.Request) -> tuple[bool, str]:
        """G2: Secure + SameSite=None when Origin is not the request's host name (or ngrok)."""
        origin = request.headers.get("Origin", "")
        hostname = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
        is_ngrok = "ngrok" in origin or "ngrok" in hostname
        cross = bool(origin) and not (
            origin.startswith("http://" + hostname) or origin.startswith("https://" + hostname)
        )
        if is_ngrok or cross:
            return True, "None"
        return False, "Lax"

    def _user_json(self, row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "username": row["username"],
            "email": row["email"],
            "first_name": row["first_name"],
            "last_name": row["last_name"],
            "company_id": row["company_id"],
            "role": row["role"],
            "is_active": bool(row["is_active"]),
            "last_login": rfc3339(row["last_login"]) or "0001-01-01T00:00:00Z",
            "created_at": rfc3339(row["created_at"]),
            "updated_at": rfc3339(row["updated_at"]),
        }

    async def _login(self, request: web.Request) -> web.Response:
        body = await self._json_body(request, {"email": str, "password": str, "company_id": str})
        if body is None:
            return _error(400, "Invalid request body")
        if not body["email"] or not body["password"] or not body["company_id"]:
            return _error(400, "Email, password, and company_id are required")
        row = self._db.execute(
            "SELECT * FROM users WHERE email = ? AND company_id = ?", (body["email"], body["company_id"])
        ).fetchone()
        if row is None:
            return _error(401, "Invalid credentials")
        if not row["is_active"]:
            return _error(401, "Account is disabled")
        if not hmac.compare_digest(row["password"].encode(), body["password"].encode()):
            return _error(401, "Invalid credentials")
        token = secrets.token_hex(32)
        expires = self.clock() + SESSION_TTL
        self._db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
            (token, row["id"], row["username"], row["email"], row["company_id"], row["role"], expires),
        )
        resp = _json_response({"message": "Login successful", "user": self._user_json(row)})
        self._db.execute("UPDATE users SET last_login = ? WHERE id = ?", (self.clock(), row["id"]))
        secure, same_site = self._cookie_flags(request)
        resp.set_cookie(
            SESSION_COOKIE,
            token,
            expires=formatdate(expires, usegmt=True),
            path="/",
            httponly=True,
            secure=secure,
            samesite=same_site,
        )
        return resp

    async def _logout(self, request: web.Request) -> web.Response:
        resp = _json_response({"message": "Logged out successfully"})
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            return resp
        self._db.execute("UPDATE sessions SET is_active = 0 WHERE session_id = ?", (token,))
        secure, same_site = self._cookie_flags(request)
        resp.set_cookie(
            SESSION_COOKIE,
            "",
            expires=formatdate(self.clock() - 3600, usegmt=True),
            path="/",
            httponly=True,
            secure=secure,
            samesite=same_site,
        )
        return resp

    async def _check(self, request: web.Request) -> web.Response:
        session = self._session_from_cookie(request)
        if isinstance(session, web.Response):
            return _json_response({"authenticated": False})
        return _json_response(
            {
                "authenticated": True,
                "user_id": session.user_id,
                "username": session.username,
                "email": session.email,
                "company_id": session.company_id,
                "role": session.role,
            }
        )

    # ------------------------------------------------------------------ WebSocket
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        session = self._session_from_cookie(request)
        if isinstance(session, web.Response):
            return session
        upgrade = (
            request.headers.get("Upgrade", "").lower() == "websocket"
            and "upgrade" in request.headers.get("Connection", "").lower()
        )
        if self._refuse_upgrades or not upgrade:
            return _error(426, "Upgrade Required")
        transport = request.transport
        ws = web.WebSocketResponse(max_msg_size=self.max_frame, autoping=False, autoclose=True)
        await ws.prepare(request)
        if not session.company_id:
            if transport is not None:
                transport.abort()
            return ws
        sock = _Socket(
            ws, transport, session.company_id, session.user_id, queue=asyncio.Queue(self.queue_size)
        )
        self._all_sockets.add(sock)
        self._register(sock)
        try:
            if not self._silent:
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "connected",
                            "message": "WebSocket connection established",
                            "user_id": sock.user_id,
                        }
                    )
                )
            sock.writer = asyncio.get_running_loop().create_task(self._write_loop(sock))
            await self._read_loop(sock)
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("socket of user %s ended: %r", sock.user_id, exc)
        finally:
            # Go: the read loop's deferred conn.Close() runs before UnregisterConnection, so this
            # socket ends without a close frame; only a *newer* socket gets the empty Close frame.
            sock.abort()
            self._unregister(sock.company_id, sock.user_id, sock)
            self._all_sockets.discard(sock)
            if sock.writer is not None:
                # Let the writer flush an empty Close frame if the queue was closed, then stop it.
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(sock.writer), 0.05)
                sock.writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sock.writer
            sock.abort()
        return ws

    async def _read_loop(self, sock: _Socket) -> None:
        """Go's ``handleWebSocketReceive``: the deadline is reset by data frames and Pongs only."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout
        ws = sock.ws
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.info("read deadline passed for user %s: dropping the socket", sock.user_id)
                return
            try:
                msg = await ws.receive(timeout=remaining)
            except TimeoutError:
                logger.info("read deadline passed for user %s: dropping the socket", sock.user_id)
                return
            if msg.type is WSMsgType.PING:
                if not self._silent:
                    await ws.pong(msg.data)
                continue
            if msg.type is WSMsgType.PONG:
                deadline = loop.time() + self.read_timeout
                continue
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                deadline = loop.time() + self.read_timeout
                await self._handle_frame(sock, msg.data)
                continue
            return  # CLOSE, CLOSING, CLOSED, ERROR (incl. 1009 for an oversized frame)

    async def _write_loop(self, sock: _Socket) -> None:
        """Go's ``handleWebSocketSend``: one writer per socket, Pings on a ticker.

        The pending ``queue.get()`` task is kept across ping ticks rather than cancelled, so no
        frame can be lost between a timeout and a get.
        """
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.ping_interval
        getter: asyncio.Task[str | _Closed] | None = None
        ws = sock.ws
        try:
            while True:
                if getter is None:
                    getter = loop.create_task(sock.queue.get())
                done, _ = await asyncio.wait({getter}, timeout=max(0.0, next_ping - loop.time()))
                if not done:
                    next_ping += self.ping_interval
                    if not self._silent:
                        async with asyncio.timeout(self.write_timeout):
                            await ws.ping()
                    continue
                frames = [getter.result()]
                getter = None
                while not sock.queue.empty():
                    frames.append(sock.queue.get_nowait())
                for frame in frames:
                    if isinstance(frame, _Closed):
                        # Channel closed: an empty Close frame (the client sees 1005), then close.
                        # WORKAROUND(aiohttp): no public API sends a Close frame without a code.
                        writer = ws._writer
                        if writer is not None:
                            with contextlib.suppress(Exception):
                                await writer.send_frame(b"", WSMsgType.CLOSE)
                        sock.abort()
                        return
                    if self._silent:
                        continue
                    async with asyncio.timeout(self.write_timeout):
                        await ws.send_str(frame)
                    sock.sent += 1
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            logger.debug("writer for user %s stopped: %r", sock.user_id, exc)
            sock.abort()
        finally:
            if getter is not None:
                getter.cancel()

    async def _reply(self, sock: _Socket, payload: dict[str, Any]) -> None:
        """A direct reply: Go's blocking ``conn.Send <- data`` (never dropped)."""
        await sock.queue.put(json.dumps(payload, separators=(",", ":"), ensure_ascii=False))

    async def _ws_error(self, sock: _Socket, text: str) -> None:
        await self._reply(sock, {"type": "error", "error": text})

    async def _handle_frame(self, sock: _Socket, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            logger.debug("invalid JSON from user %s ignored", sock.user_id)
            return
        if msg is None:
            msg = {}
        if not isinstance(msg, dict):
            return
        fields: dict[str, str] = {}
        for key in ("type", "customer_id", "page_id", "message"):
            value = msg.get(key)
            if value is not None and not isinstance(value, str):
                return  # json.Unmarshal fails on the whole frame
            fields[key] = value or ""
        handler = {
            "ping": self._cmd_ping,
            "subscribe": self._cmd_subscribe,
            "send_message": self._cmd_send_message,
            "get_stopped_customers": self._cmd_stopped_customers,
            "assign_agent": self._cmd_assign,
            "unassign_agent": self._cmd_unassign,
        }.get(fields["type"])
        if handler is None:
            logger.debug("unknown WebSocket message type %r ignored", fields["type"])
            return
        await handler(sock, fields, msg.get("data", _MISSING))

    async def _cmd_ping(self, sock: _Socket, fields: dict[str, str], data: Any) -> None:
        await self._reply(sock, {"type": "pong"})

    async def _cmd_subscribe(self, sock: _Socket, fields: dict[str, str], data: Any) -> None:
        logger.info("WebSocket client subscribed (page %s): no reply, no filtering", fields["page_id"])

    async def _cmd_stopped_customers(self, sock: _Socket, fields: dict[str, str], data: Any) -> None:
        page_id, limit, skip = "", 50, 0
        if isinstance(data, dict):
            # json.Unmarshal keeps the fields it could decode and skips mistyped ones.
            if isinstance(data.get("page_id"), str):
                page_id = data["page_id"]
            if type(data.get("limit")) is int:
                limit = data["limit"]
            if type(data.get("skip")) is int:
                skip = data["skip"]
        if limit <= 0 or limit > 200:
            limit = 50
        if page_id and self._page(page_id, sock.company_id) is None:
            await self._ws_error(sock, "Page not found or access denied")
            return
        if skip < 0:  # Mongo rejects a negative skip
            await self._ws_error(sock, "Failed to retrieve stopped customers")
            return
        where = "company_id = ? AND stop = 1" + (" AND page_id = ?" if page_id else "")
        args: tuple[Any, ...] = (sock.company_id, page_id) if page_id else (sock.company_id,)
        total = self._db.execute(f"SELECT COUNT(*) FROM customers WHERE {where}", args).fetchone()[0]
        rows = self._db.execute(
            f"SELECT * FROM customers WHERE {where} ORDER BY stopped_at DESC, rowid DESC LIMIT ? OFFSET ?",
            (*args, limit, skip),
        ).fetchall()
        now = self.clock()
        customers = []
        for row in rows:
            item = self.customer_json(row)
            minutes = int((now - row["updated_at"]) / 60)
            if minutes < 60:
                since = f"{minutes} minutes ago"
            elif minutes < 1440:
                since = f"{minutes // 60} hours ago"
            else:
                since = f"{minutes // 1440} days ago"
            item["time_since_last_conversation"] = since
            item["minutes_since_last_conversation"] = minutes
            item["is_assigned"] = row["agent_id"] != ""
            item["is_assigned_to_me"] = row["agent_id"] == sock.user_id
            customers.append(item)
        await self._reply(
            sock,
            {
                "type": "stopped_customers",
                "data": {
                    "customers": customers,
                    "pagination": {
                        "total": total,
                        "limit": limit,
                        "skip": skip,
                        "has_more": skip + limit < total,
                    },
                    "page_id": page_id,
                },
                "timestamp": int(now),
            },
        )

    async def _assignment_params(self, sock: _Socket, data: Any) -> sqlite3.Row | None:
        """Shared checks of ``assign_agent`` / ``unassign_agent`` (payload under ``data``)."""
        customer_id = page_id = ""
        if data is not _MISSING and data is not None:
            if not isinstance(data, dict):
                await self._ws_error(sock, "Invalid request data")
                return None
            for key in ("customer_id", "page_id"):
                if data.get(key) is not None and not isinstance(data[key], str):
                    await self._ws_error(sock, "Invalid request data")
                    return None
            customer_id = data.get("customer_id") or ""
            page_id = data.get("page_id") or ""
        if not customer_id or not page_id:
            await self._ws_error(sock, "customer_id and page_id are required")
            return None
        if self._page(page_id, sock.company_id) is None:
            await self._ws_error(sock, "Page not found or access denied")
            return None
        row = self._customer_row(customer_id, page_id)
        if row is None:
            await self._ws_error(sock, "Customer not found")
            return None
        return row

    async def _cmd_assign(self, sock: _Socket, fields: dict[str, str], data: Any) -> None:
        row = await self._assignment_params(sock, data)
        if row is None:
            return
        if not row["stop"]:
            await self._ws_error(sock, "Customer has not requested human assistance")
            return
        if row["agent_id"] and row["agent_id"] != sock.user_id:
            await self._ws_error(sock, f"Customer is already assigned to {row['agent_email']}")
            return
        with self._tx():
            row = self._assign(row, sock.user_id, sock.user_email, sock.user_name)
        customer = self.customer_json(row)
        await self._reply(
            sock,
            {
                "type": "agent_assigned",
                "data": {
                    "customer": customer,
                    "agent_id": sock.user_id,
                    "agent_email": sock.user_email,
                    "agent_name": sock.user_name,
                },
                "timestamp": int(self.clock()),
            },
        )
        self.broadcast(
            sock.company_id,
            "agent_assignment_changed",
            {
                "customer_id": row["customer_id"],
                "customer": customer,
                "agent_id": sock.user_id,
                "agent_email": sock.user_email,
                "agent_name": sock.user_name,
                "action": "assigned",
                "timestamp": int(self.clock()),
            },
            page_id=row["page_id"],
        )

    async def _cmd_unassign(self, sock: _Socket, fields: dict[str, str], data: Any) -> None:
        row = await self._assignment_params(sock, data)
        if row is None:
            return
        if row["agent_id"] != sock.user_id:
            await self._ws_error(sock, "You are not assigned to this customer")
            return
        with self._tx():
            row = self._unassign(row)
        customer = self.customer_json(row)
        await self._reply(
            sock, {"type": "agent_unassigned", "data": {"customer": customer}, "timestamp": int(self.clock())}
        )
        self.broadcast(
            sock.company_id,
            "agent_assignment_changed",
            {
                "customer_id": row["customer_id"],
                "customer": customer,
                "action": "unassigned",
                "timestamp": int(self.clock()),
            },
            page_id=row["page_id"],
        )

    async def _cmd_send_message(self, sock: _Socket, fields: dict[str, str], data: Any) -> None:
        customer_id, page_id, text = fields["customer_id"], fields["page_id"], fields["message"]
        if not customer_id or not page_id or not text:
            await self._ws_error(sock, "Missing required fields: customer_id, page_id, and message")
            return
        page = self._page(page_id, sock.company_id)
        if page is None:
            await self._ws_error(sock, "Page not found in company configuration")
            return
        row = self._customer_row(customer_id, page_id)
        if row is None:
            await self._ws_error(sock, "Customer not found")
            return
        if not row["stop"]:
            await self._ws_error(sock, "Customer has not requested human assistance")
            return
        if not row["agent_id"]:
            with self._tx():
                row = self._assign(row, sock.user_id, sock.user_email, sock.user_name)
            self.broadcast(
                sock.company_id,
                "agent_assignment_changed",
                {
                    "customer_id": customer_id,
                    "customer": self.customer_json(row),
                    "agent_id": sock.user_id,
                    "agent_email": sock.user_email,
                    "agent_name": sock.user_name,
                    "action": "assigned",
                    "timestamp": int(self.clock()),
                },
                page_id=page_id,
            )
        elif row["agent_id"] != sock.user_id:
            await self._ws_error(sock, f"Customer is already assigned to {row['agent_email']}")
            return
        if self.send_failure is not None:
            await self._ws_error(sock, "Failed to send message to customer")
            return
        with self._tx():
            self._save_message(
                chat_id=customer_id, sender_id=page_id, recipient_id=customer_id, page=page, text=text,
                is_bot=False, is_human=True, source="dashboard",
                agent=(sock.user_id, sock.user_email, sock.user_name),
            )  # fmt: skip
        now = int(self.clock())
        await self._reply(
            sock,
            {
                "type": "message_sent",
                "customer_id": customer_id,
                "page_id": page_id,
                "message": text,
                "timestamp": now,
            },
        )
        self.broadcast(
            sock.company_id,
            "new_message",
            {
                "chat_id": customer_id,
                "sender_id": page_id,
                "recipient_id": customer_id,
                "message": text,
                "is_bot": False,
                "is_human": True,
                "agent_id": sock.user_id,
                "agent_email": sock.user_email,
                "agent_name": sock.user_name,
                "timestamp": now,
            },
            page_id=page_id,
        )

    # ------------------------------------------------------------------ REST
    @staticmethod
    def _query_int(request: web.Request, name: str, default: int) -> int:
        """Fiber's ``QueryInt``: the default when missing or not an integer."""
        try:
            return int(request.query.get(name, ""))
        except ValueError:
            return default

    async def _rest_pages(self, request: web.Request, s: _Session) -> web.Response:
        company = self._db.execute("SELECT * FROM companies WHERE company_id = ?", (s.company_id,)).fetchone()
        pages = [
            {"page_id": p["page_id"], "page_name": p["page_name"], "is_active": bool(p["is_active"])}
            for p in self._pages(s.company_id)
        ]
        company_json = (
            {"company_id": company["company_id"], "company_name": company["company_name"]}
            if company
            else None
        )
        return _json_response({"pages": pages, "company": company_json})

    async def _rest_customers(self, request: web.Request, s: _Session) -> web.Response:
        page_id = request.query.get("page_id", "")
        page = self._query_int(request, "page", 1)
        limit = min(self._query_int(request, "limit", 50), 200)
        if page_id and self._page(page_id, s.company_id) is None:
            return _error(403, "Page not found or access denied")
        if page < 1 or limit < 1:  # negative skip / division by zero in the Go handler
            return _error(500, "Failed to retrieve customers")
        skip = (page - 1) * limit
        where, args = ("page_id = ?", (page_id,)) if page_id else ("company_id = ?", (s.company_id,))
        total = self._db.execute(f"SELECT COUNT(*) FROM customers WHERE {where}", args).fetchone()[0]
        rows = self._db.execute(
            f"SELECT * FROM customers WHERE {where} ORDER BY last_seen DESC, rowid DESC LIMIT ? OFFSET ?",
            (*args, limit, skip),
        ).fetchall()
        total_pages = (total + limit - 1) // limit
        body: dict[str, Any] = {"page_id": page_id} if page_id else {"company_id": s.company_id}
        body["customers"] = [self.customer_json(r) for r in rows] or None  # G13: null when empty
        body["pagination"] = {
            "page": page,
            "limit": limit,
            "total": total,
            "total_pages": total_pages,
            "has_more": page < total_pages,
        }
        return _json_response(body)

    async def _rest_search(self, request: web.Request, s: _Session) -> web.Response:
        term = request.query.get("q", "")
        if not term:
            return _error(400, "Search query is required")
        limit = min(self._query_int(request, "limit", 20), 100)
        like = f"%{term.lower()}%"
        rows = self._db.execute(
            "SELECT * FROM customers WHERE company_id = ?"
            " AND (lower(customer_name) LIKE ? OR customer_id LIKE ?) ORDER BY last_seen DESC LIMIT ?",
            (s.company_id, like, like, limit if limit > 0 else -1),
        ).fetchall()
        customers = [self.customer_json(r) for r in rows]
        return _json_response({"query": term, "customers": customers or None, "count": len(customers)})

    async def _rest_stats(self, request: web.Request, s: _Session) -> web.Response:
        page_id = request.query.get("page_id", "")
        if page_id and self._page(page_id, s.company_id) is None:
            return _error(403, "Page not found or access denied")
        db = self._db
        total = db.execute("SELECT COUNT(*) FROM customers WHERE company_id = ?", (s.company_id,)).fetchone()[
            0
        ]
        active = db.execute(
            "SELECT COUNT(*) FROM customers WHERE company_id = ? AND last_seen > ?",
            (s.company_id, self.clock() - 86400),
        ).fetchone()[0]
        by_page = {
            r[0]: r[1]
            for r in db.execute(
                "SELECT page_id, COUNT(*) FROM customers WHERE company_id = ? GROUP BY page_id",
                (s.company_id,),
            )
        }
        stopped = db.execute(
            "SELECT COUNT(*) FROM customers WHERE company_id = ? AND stop = 1", (s.company_id,)
        ).fetchone()[0]
        return _json_response(
            {
                "total_customers": total,
                "active_customers_24h": active,
                "customers_by_page": by_page,
                "stopped_customers": stopped,
            }
        )

    async def _rest_customer(self, request: web.Request, s: _Session) -> web.Response:
        page_id = request.query.get("page_id", "")
        if not page_id:
            return _error(400, "Page ID is required")
        if self._page(page_id, s.company_id) is None:
            return _error(403, "Page not found or access denied")
        row = self._customer_row(request.match_info["customerID"], page_id)
        if row is None:
            return _error(404, "Customer not found")
        return _json_response({"customer": self.customer_json(row)})

    async def _rest_body_and_customer(
        self, request: web.Request, s: _Session, fields: dict[str, type]
    ) -> tuple[dict[str, Any], sqlite3.Row | None] | web.Response:
        body = await self._json_body(request, fields)
        if body is None:
            return _error(400, "Invalid request body")
        if not body["page_id"]:
            return _error(400, "Page ID is required")
        if self._page(body["page_id"], s.company_id) is None:
            return _error(403, "Page not found or access denied")
        return body, self._customer_row(request.match_info["customerID"], body["page_id"])

    async def _rest_send(self, request: web.Request, s: _Session) -> web.Response:
        body = await self._json_body(request, {"page_id": str, "message": str})
        if body is None:
            return _error(400, "Invalid request body")
        if not body["page_id"] or not body["message"]:
            return _error(400, "Page ID and message are required")
        page = self._page(body["page_id"], s.company_id)
        if page is None:
            return _error(403, "Page not found or access denied")
        customer_id = request.match_info["customerID"]
        row = self._customer_row(customer_id, body["page_id"])
        if row is None:
            return _error(404, "Customer not found")
        if not row["stop"]:
            return _error(400, "Customer has not requested human assistance. Set stop=true first.")
        if row["agent_id"] and row["agent_id"] != s.user_id:
            return _error(
                403,
                f"Customer is already assigned to {row['agent_email']}."
                " Only the assigned agent can send messages.",
            )
        # The REST handler also reads the never-set user_email / user_name locals: both empty.
        agent = (s.user_id, "", "")
        if not row["agent_id"]:
            with self._tx():
                row = self._assign(row, *agent)  # no agent_assignment_changed broadcast here
        if self.send_failure is not None:
            err = self.send_failure
            return _error(500, f"Failed to send message to customer: {err}", details=err)
        with self._tx():
            self._save_message(
                chat_id=customer_id, sender_id=page["page_id"], recipient_id=customer_id, page=page,
                text=body["message"], is_bot=False, is_human=True, agent=agent,
            )  # fmt: skip
        now = int(self.clock())
        self.broadcast(
            s.company_id,
            "new_message",
            {
                "chat_id": customer_id,
                "sender_id": page["page_id"],
                "recipient_id": customer_id,
                "message": body["message"],
                "is_bot": False,
                "is_human": True,
                "agent_id": s.user_id,
                "agent_email": "",
                "agent_name": "",
                "timestamp": now,
            },
            page_id=page["page_id"],
        )
        return _json_response(
            {
                "message": "Message sent successfully",
                "data": {
                    "customer_id": customer_id,
                    "page_id": page["page_id"],
                    "message": body["message"],
                    "agent": "",
                    "timestamp": now,
                },
            }
        )

    async def _rest_stop(self, request: web.Request, s: _Session) -> web.Response:
        got = await self._rest_body_and_customer(request, s, {"page_id": str, "stop": bool})
        if isinstance(got, web.Response):
            return got
        body, row = got
        if row is None:
            return _error(404, "Customer not found")
        with self._tx():
            row = self._set_stop(row, body["stop"])
        customer = self.customer_json(row)
        self.broadcast(
            s.company_id,
            "customer_stop_status_changed",
            {"customer": customer, "stop": body["stop"], "timestamp": int(self.clock())},
            page_id=body["page_id"],
        )
        return _json_response({"message": "Customer status updated successfully", "customer": customer})

    async def _rest_toggle_stop(self, request: web.Request, s: _Session) -> web.Response:
        got = await self._rest_body_and_customer(request, s, {"page_id": str})
        if isinstance(got, web.Response):
            return got
        body, row = got
        if row is None:
            return _error(404, "Customer not found")
        previous = bool(row["stop"])
        with self._tx():
            row = self._set_stop(row, not previous)
        customer = self.customer_json(row)
        self.broadcast(
            s.company_id,
            "customer_stop_status_changed",
            {"customer": customer, "stop": not previous, "timestamp": int(self.clock())},
            page_id=body["page_id"],
        )
        return _json_response(
            {
                "message": "Customer status toggled successfully",
                "customer": customer,
                "previous_stop": previous,
                "current_stop": not previous,
            }
        )

    async def _rest_agent_name(self, request: web.Request, s: _Session) -> web.Response:
        got = await self._rest_body_and_customer(request, s, {"page_id": str, "agent_name": str})
        if isinstance(got, web.Response):
            return got
        body, row = got
        if row is None:
            return _error(404, "Customer not found")
        with self._tx():
            self._db.execute(
                "UPDATE customers SET agent_name = ?, updated_at = ? WHERE id = ?",
                (body["agent_name"], self.clock(), row["id"]),
            )
        row = self._customer_row(row["customer_id"], row["page_id"])
        assert row is not None
        return _json_response(
            {"message": "Agent name updated successfully", "customer": self.customer_json(row)}
        )

    async def _rest_unassign(self, request: web.Request, s: _Session) -> web.Response:
        got = await self._rest_body_and_customer(request, s, {"page_id": str})
        if isinstance(got, web.Response):
            return got
        body, row = got
        if row is None:
            return _error(404, "Customer not found")
        # The "admin override" compares the role with "admin", which no role equals.
        if row["agent_id"] and row["agent_id"] != s.user_id and s.role != "admin":
            return _error(403, "Only the assigned agent or an admin can unassign")
        with self._tx():
            row = self._unassign(row)
        customer = self.customer_json(row)
        self.broadcast(
            s.company_id,
            "agent_status_changed",
            {
                "customer_id": row["customer_id"],
                "customer": customer,
                "action": "unassigned",
                "agent_email": s.email,
                "timestamp": int(self.clock()),
            },
            page_id=body["page_id"],
        )
        return _json_response({"message": "Agent unassigned successfully", "customer": customer})

    async def _rest_assignment(self, request: web.Request, s: _Session) -> web.Response:
        got = await self._rest_body_and_customer(request, s, {"page_id": str, "is_assigned": bool})
        if isinstance(got, web.Response):
            return got
        body, row = got
        if row is None:
            return _error(404, "Customer not found")
        with self._tx():
            self._db.execute(
                "UPDATE customers SET is_assigned = ?, updated_at = ? WHERE id = ?",
                (int(body["is_assigned"]), self.clock(), row["id"]),
            )
        row = self._customer_row(row["customer_id"], row["page_id"])
        assert row is not None
        customer = self.customer_json(row)
        self.broadcast(
            s.company_id,
            "customer_assignment_updated",
            {
                "customer_id": row["customer_id"],
                "customer": customer,
                "is_assigned": body["is_assigned"],
                "timestamp": int(self.clock()),
            },
            page_id=body["page_id"],
        )
        return _json_response({"message": "Assignment status updated successfully", "customer": customer})

    def _message_json(self, row: sqlite3.Row) -> dict[str, Any]:
        """A raw ``models.Message`` document (``/messages/chat``, oldest first)."""
        out: dict[str, Any] = {
            "id": row["id"],
            "type": row["type"],
            "chat_id": row["chat_id"],
            "sender_id": row["sender_id"],
        }
        if row["sender_name"]:
            out["sender_name"] = row["sender_name"]
        if row["recipient_id"]:
            out["recipient_id"] = row["recipient_id"]
        out.update(page_id=row["page_id"], page_name=row["page_name"], message=row["message"])
        out["is_bot"] = bool(row["is_bot"])
        if row["is_human"]:
            out["is_human"] = True
        for key in ("source", "agent_id", "agent_email", "agent_name"):
            if row[key]:
                out[key] = row[key]
        out["timestamp"] = rfc3339(row["timestamp"])
        out["updated_at"] = rfc3339(row["updated_at"])
        return out

    async def _rest_conversation(self, request: web.Request, s: _Session) -> web.Response:
        customer_id = request.match_info["customerID"]
        page_id = request.query.get("page_id", "")
        if not page_id:
            return _error(400, "Page ID is required")
        if self._page(page_id, s.company_id) is None:
            return _error(403, "Page not found or access denied")
        page = max(self._query_int(request, "page", 1), 1)
        limit = self._query_int(request, "limit", 50)
        if limit <= 0 or limit > 200:
            limit = 50
        total = self._db.execute(
            "SELECT COUNT(*) FROM messages WHERE page_id = ? AND chat_id = ?", (page_id, customer_id)
        ).fetchone()[0]
        rows = self._db.execute(
            "SELECT * FROM messages WHERE page_id = ? AND chat_id = ? ORDER BY timestamp DESC, seq DESC"
            " LIMIT ? OFFSET ?",
            (page_id, customer_id, limit, (page - 1) * limit),
        ).fetchall()
        items = []
        for r in rows:
            item: dict[str, Any] = {
                "id": r["id"],
                "message": r["message"],
                "timestamp": rfc3339(r["timestamp"]),
                "is_bot": bool(r["is_bot"]),
                "is_human": bool(r["is_human"]),
                "sender_id": r["sender_id"],
                "recipient_id": r["recipient_id"],
                "type": "bot" if r["sender_id"] == page_id else "customer",
                "sender_name": r["sender_name"],
            }
            if r["is_human"]:
                item.update(agent_id=r["agent_id"], agent_email=r["agent_email"], agent_name=r["agent_name"])
            items.append(item)
        total_pages = (total + limit - 1) // limit
        customer = self._db.execute(
            "SELECT customer_name FROM customers WHERE page_id = ? AND customer_id = ?",
            (page_id, customer_id),
        ).fetchone()
        page_row = self._page(page_id, s.company_id)
        # handlers/message_handler.go answers the items under "conversation", newest first.
        return _json_response(
            {
                "customer_id": customer_id,
                "customer_name": customer["customer_name"] if customer is not None else "",
                "page_id": page_id,
                "page_name": page_row["page_name"] if page_row is not None else "",
                "conversation": items,
                "pagination": {
                    "page": page,
                    "limit": limit,
                    "total": total,
                    "total_pages": total_pages,
                    "has_more": page < total_pages,
                },
            }
        )

    async def _rest_chat(self, request: web.Request, s: _Session) -> web.Response:
        chat_id = request.match_info["chatID"]
        page_id = request.query.get("page_id", "")
        if not page_id:
            return _error(400, "Page ID is required")
        if self._page(page_id, s.company_id) is None:
            return _error(403, "Page not found or access denied")
        rows = self._db.execute(
            "SELECT * FROM messages WHERE page_id = ? AND chat_id = ? ORDER BY timestamp ASC, seq ASC",
            (page_id, chat_id),
        ).fetchall()
        messages = [self._message_json(r) for r in rows]
        return _json_response(
            {"chat_id": chat_id, "page_id": page_id, "messages": messages or None, "count": len(messages)}
        )

    async def _rest_page_chats(self, request: web.Request, s: _Session) -> web.Response:
        page_id = request.match_info["pageID"]
        if self._page(page_id, s.company_id) is None:
            return _error(403, "Page not found or access denied")
        rows = self._db.execute(
            "SELECT m.* FROM messages m JOIN (SELECT chat_id, MAX(seq) AS seq FROM messages WHERE page_id = ?"
            " GROUP BY chat_id) last ON m.seq = last.seq ORDER BY m.timestamp DESC",
            (page_id,),
        ).fetchall()
        chats = []
        for r in rows:
            count = self._db.execute(
                "SELECT COUNT(*) FROM messages WHERE page_id = ? AND chat_id = ?", (page_id, r["chat_id"])
            ).fetchone()[0]
            chats.append(
                {"chat_id": r["chat_id"], "last_message": self._message_json(r), "message_count": count}
            )
        return _json_response({"page_id": page_id, "chats": chats or None, "count": len(chats)})

    async def _rest_messages(self, request: web.Request, s: _Session) -> web.Response:
        page_id = request.query.get("page_id", "")
        sender_id = request.query.get("sender_id", "")
        if not page_id:
            return _error(400, "Page ID is required")
        if self._page(page_id, s.company_id) is None:
            return _error(403, "Page not found or access denied")
        limit = self._query_int(request, "limit", 50)
        if limit <= 0 or limit > 200:
            limit = 50
        sql = "SELECT * FROM messages WHERE page_id = ?"
        args: list[Any] = [page_id]
        if sender_id:
            sql += " AND sender_id = ?"
            args.append(sender_id)
        rows = self._db.execute(sql + " ORDER BY timestamp DESC, seq DESC LIMIT ?", (*args, limit)).fetchall()
        messages = [self._message_json(r) for r in rows]
        return _json_response({"messages": messages or None, "count": len(messages)})


class _Missing:
    """Marks a command frame without a ``data`` field (Go: ``msg.Data == nil``)."""


_MISSING = _Missing()
