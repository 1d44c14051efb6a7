"""The contract between the demo server's shell (HTTP app, control API, simulator) and a dialect.

The demo package is an independent implementation of the *servers'* side of PROTOCOL.md: it
imports nothing from tray_agent.core, net or ui. Each dialect module (``org.py``,
``dashboard.py``) provides a class that satisfies :class:`DemoBackend`; ``server.py`` builds the
aiohttp application, mounts the dialect's routes and the control API, and runs the simulator
against the backend through this interface only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web


@dataclass(frozen=True, slots=True)
class DemoAgent:
    """A demo agent account printed at start-up so that people (and tests) can sign in."""

    email: str
    password: str
    tenant: str  # org id (org dialect) or company id (dashboard dialect)
    name: str = ""
    user_id: str = ""


@dataclass(frozen=True, slots=True)
class DemoCustomer:
    """A simulated customer, addressed the dialect's way.

    ``ref`` is the dialect's own conversation address: the org ``chat_id``, or
    ``"<page_id>/<customer_id>"`` for the dashboard. ``tenant`` is the org / company id.
    """

    ref: str
    name: str
    tenant: str
    channel: str = ""  # org channel, or the dashboard page id
    language: str = "en"  # "en" | "id"


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """What the server prints at start-up (and returns from the control API's ``info``)."""

    dialect: str
    url: str  # http base URL the client is configured with
    agents: tuple[DemoAgent, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)  # e.g. supabase_url, anon_key, org_id


class DemoBackend(Protocol):
    """One dialect's server behaviour, driven by the shell and the simulator."""

    dialect: str

    def add_routes(self, app: web.Application) -> None:
        """Mount this dialect's HTTP and WebSocket routes."""
        ...

    def info(self, base_url: str) -> DemoInfo:
        """Agents, tenant ids and anything else a client needs to sign in."""
        ...

    async def new_customer(
        self, *, tenant: str | None = None, name: str | None = None, language: str = "en"
    ) -> DemoCustomer:
        """Create a customer (and their conversation) in a tenant (default: the first one)."""
        ...

    async def customer_writes(self, customer: DemoCustomer, text: str) -> None:
        """The customer sends a message: stored, broadcast as the real server does."""
        ...

    async def bot_replies(self, customer: DemoCustomer, text: str) -> None:
        """The AI (org) / bot (dashboard) answers the customer, as the real server does."""
        ...

    async def ask_for_human(self, customer: DemoCustomer, text: str = "") -> None:
        """The customer asks for a human: the dialect's full escalation sequence."""
        ...

    async def customer_leaves(self, customer: DemoCustomer) -> None:
        """The conversation ends (org: resolved; dashboard: stop turned off)."""
        ...

    def customers(self) -> list[DemoCustomer]:
        """Customers currently known (for the simulator and the control API)."""
        ...

    async def agent_messages_since(self, customer: DemoCustomer, after: int) -> list[tuple[int, str]]:
        """Agent replies to this customer with a sequence number above ``after``.

        The simulator uses them to answer the human agent: ``[(seq, text), ...]``.
        """
        ...

    async def drop_sockets(self) -> int:
        """Close every client socket abruptly (no close frame); returns how many."""
        ...

    def set_silent(self, silent: bool) -> None:
        """Go silent: send nothing at all (no frames, no pings, no pongs), sockets kept open.

        Like a half-open connection, or the org server's zombie sockets.
        """
        ...

    def set_refuse_upgrades(self, refuse: bool) -> None:
        """Refuse WebSocket upgrades (as a WebSocket-breaking proxy would) while REST works."""
        ...

    async def preload(self, waiting: int, *, tenant: str | None = None) -> None:
        """Create ``waiting`` customers already waiting for a human (benchmarks, resync tests)."""
        ...

    async def close(self) -> None:
        """Close sockets and the database."""
        ...
