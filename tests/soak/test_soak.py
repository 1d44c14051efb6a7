"""Soak: 200,000 customer messages with a reconnect every 10,000 and replies all along.

Compressed clock: the real net.Client with shrunk timings (backoff 20-100 ms, heartbeat 0.5 +
1 s) against the in-process dashboard demo backend behind a FaultProxy, which cuts the TCP path
(no close frame) every ``RECONNECT_EVERY`` messages. Messages are real backend messages (stored
in its database, then broadcast); the test writes them in chunks and lets each chunk be
delivered before the next (flow control), so the backend's 256-frame queue never drops one and
the server's database stays the truth to compare with.

Asserts: no crash; RSS flat after warm-up (see ``RSS_TOLERANCE_MB``); every acknowledged reply
exactly once on the server (unconfirmed ones at most once: they are never resent); unread
counts and the waiting list equal to the server's truth at the end.

``TRAY_AGENT_SOAK_EVENTS`` sets the size (default 200,000).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers.fakes import FakeSecretStore
from tests.helpers.fault_proxy import FaultProxy
from tray_agent.core.commands import SendReply
from tray_agent.core.events import (
    CommandFailed,
    CommandSucceeded,
    ConnectionChanged,
    ConnectionState,
    Event,
    MessageReceived,
)
from tray_agent.core.ports import SystemClock
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.settings import ConnectionSettings
from tray_agent.core.state import Store
from tray_agent.demo.server import DemoServer
from tray_agent.net.auth import DashboardAuthenticator
from tray_agent.net.client import Client
from tray_agent.net.config import Timings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

EVENTS = int(os.environ.get("TRAY_AGENT_SOAK_EVENTS", "200000"))
RECONNECT_EVERY = 10_000
CHUNK = 100  # messages written before waiting for their delivery (< the backend's 256 queue)
REPLY_EVERY = 500
CUSTOMERS = 20
WARM_UP = 0.25  # share of the run before RSS must be flat
RSS_TOLERANCE_MB = 8.0  # allocator noise over the post-warm-up samples (PERFORMANCE-NOTES §2.6)
WAIT = 60.0

SOAK = Timings(
    heartbeat_interval=0.5,
    heartbeat_timeout=1.0,
    command_timeout=10.0,
    resync_interval=None,
    backoff_base=0.02,
    backoff_max=0.1,
    stable_after=60.0,
    early_drop_window=60.0,
    open_timeout=5.0,
    close_timeout=0.3,
    protocol_ping_interval=None,
    protocol_ping_timeout=None,
    http_timeout=5.0,
)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


class Sink:
    """The client's event sink: the Store, plus counters (no event list: it would grow)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.messages = 0
        self.acked: set[str] = set()
        self.failed: dict[str, str] = {}
        self.state = ConnectionState.OFFLINE
        self.connects = 0
        self.changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.store.dispatch(event)
        if isinstance(event, MessageReceived) and event.text.startswith("soak "):
            self.messages += 1
        elif isinstance(event, CommandSucceeded):
            self.acked.add(event.command_id)
        elif isinstance(event, CommandFailed):
            self.failed[event.command_id] = str(event.reason)
        elif isinstance(event, ConnectionChanged):
            self.state = event.state
            if event.state is ConnectionState.CONNECTED:
                self.connects += 1
        self.changed.set()

    async def until(self, condition, within: float = WAIT) -> None:  # type: ignore[no-untyped-def]
        async def wait() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), within)


@pytest.mark.asyncio
async def test_soak_200k_messages_reconnect_every_10k_replies_all_along(tmp_path: Path) -> None:
    server = DemoServer(
        "dashboard",
        db_path=tmp_path / "soak.sqlite3",
        preload=CUSTOMERS,
        backend_options={"ping_interval": 3600.0, "read_timeout": 3600.0},
    )
    await server.start()
    proxy = FaultProxy("127.0.0.1", server.port)
    await proxy.start()
    agent = server.info.agents[0]
    settings = ConnectionSettings(
        dialect="dashboard", server=proxy.url, company=agent.tenant, email=agent.email
    )
    store = Store()
    sink = Sink(store)
    clock = SystemClock()
    auth = DashboardAuthenticator(
        settings, FakeSecretStore(), clock, password=agent.password, keepalive_interval=3600
    )
    client = Client(DashboardCodec(), auth, settings, sink, clock, timings=SOAK)
    task = client.start()
    backend = server.backend
    customers = backend.customers()
    replies: list[SendReply] = []
    samples: list[tuple[int, float]] = []
    try:
        await sink.until(lambda: sink.state is ConnectionState.CONNECTED)
        sent = 0
        while sent < EVENTS:
            for i in range(sent, min(sent + CHUNK, EVENTS)):
                await backend.customer_writes(customers[i % CUSTOMERS], f"soak {i}")
            sent = min(sent + CHUNK, EVENTS)
            if sent % REPLY_EVERY == 0:
                reply = SendReply(
                    conversation=customers[(sent // REPLY_EVERY) % CUSTOMERS].ref, text=f"reply {sent}"
                )
                client.submit(reply)
                replies.append(reply)
            await sink.until(lambda sent=sent: sink.messages >= sent)  # flow control: never overflow the hub
            if sent % RECONNECT_EVERY == 0 and sent < EVENTS:
                gc.collect()
                samples.append((sent, rss_mb()))
                before = sink.connects
                proxy.drop()  # no close frame: the path is cut
                await sink.until(lambda before=before: sink.connects > before)
        ids = {r.command_id for r in replies}
        await sink.until(lambda: ids <= sink.acked | set(sink.failed))
        gc.collect()
        samples.append((sent, rss_mb()))

        # No crash, every message delivered exactly once.
        assert task.done() is False
        assert sink.messages == EVENTS
        assert sink.connects >= EVENTS // RECONNECT_EVERY

        # Replies: acknowledged -> exactly once on the server; unconfirmed -> at most once.
        rows = backend._db.execute(  # type: ignore[attr-defined]
            "SELECT page_id, chat_id, message FROM messages WHERE is_human = 1"
        ).fetchall()
        stored = Counter((f"{p}/{c}", m) for p, c, m in rows)
        for reply in replies:
            count = stored[(reply.conversation, reply.text)]
            if reply.command_id in sink.acked:
                assert count == 1, (reply.text, count)
            else:
                assert count <= 1, (reply.text, count, sink.failed.get(reply.command_id))
        assert len(sink.acked & ids) >= len(replies) // 2  # most replies went through

        # Unread counts and the waiting list equal the server's truth.
        truth_rows = backend._db.execute(  # type: ignore[attr-defined]
            "SELECT page_id, chat_id, COUNT(*) FROM messages"
            " WHERE is_bot = 0 AND is_human = 0 AND message LIKE 'soak %' GROUP BY page_id, chat_id"
        ).fetchall()
        truth_unread = {f"{p}/{c}": n for p, c, n in truth_rows}
        state = store.state
        client_unread = {c.key: c.unread for c in state.conversations.values() if c.unread}
        assert client_unread == truth_unread
        waiting = backend._db.execute(  # type: ignore[attr-defined]
            "SELECT page_id, customer_id FROM customers WHERE stop = 1 AND is_assigned = 0"
        ).fetchall()
        assert state.waiting_keys == {f"{p}/{c}" for p, c in waiting}  # untaken only (issue 14)

        # RSS flat after warm-up.
        steady = [mb for at, mb in samples if at >= EVENTS * WARM_UP]
        if len(steady) >= 2:
            assert max(steady) - min(steady) <= RSS_TOLERANCE_MB, samples
        print(f"soak: {EVENTS} messages, {sink.connects} connections, RSS samples {samples}")
    finally:
        await client.stop()
        await task
        await proxy.stop()
        await server.stop()
