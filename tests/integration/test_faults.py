"""Fault injection: the real net.Client against the demo backend through a fault-injecting proxy.

Every test runs the dashboard demo backend in-process on 127.0.0.1 port 0, a
:class:`~tests.helpers.fault_proxy.FaultProxy` in front of it, and the real
:class:`~tray_agent.net.client.Client` feeding a real :class:`~tray_agent.core.state.Store`.
Timings are shrunk with :class:`~tray_agent.net.config.Timings` (heartbeat 0.25 s + 0.5 s,
backoff 20-100 ms). Nothing waits by sleeping: tests await events or conditions with timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.fakes import EventRecorder, FakeSecretStore
from tests.helpers.fault_proxy import FaultProxy, ws_frame
from tray_agent.core.commands import SendReply
from tray_agent.core.effects import Alert, Notify
from tray_agent.core.events import (
    CommandFailed,
    CommandSent,
    CommandSucceeded,
    ConnectionChanged,
    ConnectionState,
    Event,
    FailureReason,
    Ignored,
    MessageReceived,
    WaitingListPage,
)
from tray_agent.core.policy import AlertPolicy
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.settings import AlertSettings, ConnectionSettings
from tray_agent.core.state import Store
from tray_agent.demo.dashboard import DashboardBackend
from tray_agent.demo.server import DemoServer
from tray_agent.net.auth import DashboardAuthenticator
from tray_agent.net.client import Client
from tray_agent.net.config import Timings

pytestmark = pytest.mark.integration

CONNECTED = ConnectionState.CONNECTED
RECONNECTING = ConnectionState.RECONNECTING

LIVE = Timings(
    heartbeat_interval=0.25,
    heartbeat_timeout=0.5,
    command_timeout=5.0,
    resync_interval=None,
    backoff_base=0.02,
    backoff_max=0.1,
    stable_after=60.0,
    early_drop_window=60.0,
    open_timeout=3.0,
    close_timeout=0.3,
    protocol_ping_interval=None,  # only the application heartbeat may detect a dead path
    protocol_ping_timeout=None,
    http_timeout=3.0,
    poll_interval=0.2,
    ws_retry_interval=0.5,
)
HEARTBEAT_BOUND = LIVE.heartbeat_interval + LIVE.heartbeat_timeout
WAIT = 20.0  # generous upper bound for any awaited condition (a shared, noisy 2-core machine)


class JumpClock:
    """A clock whose wall time and monotonic time can jump independently (sleep/resume).

    On Linux CLOCK_MONOTONIC stops during suspend while the wall clock jumps; on Windows and
    macOS monotonic time includes the suspend. NTP can move the wall clock back.
    """

    def __init__(self) -> None:
        self.wall_offset = 0.0
        self.mono_offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.wall_offset)

    def monotonic(self) -> float:
        return time.monotonic() + self.mono_offset


@dataclass
class Live:
    """A running client on the demo backend behind the proxy."""

    server: DemoServer
    proxy: FaultProxy
    client: Client
    events: EventRecorder
    store: Store
    clock: JumpClock
    secrets: FakeSecretStore
    auth: DashboardAuthenticator

    async def until(self, condition: Callable[[], object], within: float = WAIT) -> None:
        """Wait until ``condition()`` holds, re-checked after every event the client emits."""
        if condition():
            return
        await self.events.wait_for(
            Event, lambda _e: bool(condition()), after=self.events.mark(), within=within
        )

    async def connected_after(self, mark: int, within: float = WAIT) -> None:
        await self.events.wait_state(CONNECTED, after=mark, within=within)


@contextlib.asynccontextmanager
async def live(
    tmp_path: Path,
    *,
    preload: int = 5,
    timings: Timings = LIVE,
    backend_options: dict[str, Any] | None = None,
    on_event: Callable[[Event, tuple[Any, ...]], None] | None = None,
) -> AsyncIterator[Live]:
    """The demo backend (dashboard), a FaultProxy in front of it and a started Client."""
    server = DemoServer(
        "dashboard",
        db_path=tmp_path / "demo.sqlite3",
        preload=preload,
        backend_options=backend_options or {"ping_interval": 3600.0, "read_timeout": 3600.0},
    )
    await server.start()
    proxy = FaultProxy("127.0.0.1", server.port)
    await proxy.start()
    agent = server.info.agents[0]
    settings = ConnectionSettings(
        dialect="dashboard", server=proxy.url, company=agent.tenant, email=agent.email
    )
    clock, store, events, secrets = JumpClock(), Store(), EventRecorder(), FakeSecretStore()

    def emit(event: Event) -> None:
        effects = store.dispatch(event)
        if on_event is not None:
            on_event(event, effects)
        events(event)

    auth = DashboardAuthenticator(
        settings, secrets, clock, password=agent.password, keepalive_interval=3600.0
    )
    client = Client(DashboardCodec(), auth, settings, emit, clock, timings=timings)
    task = client.start()
    rig = Live(server, proxy, client, events, store, clock, secrets, auth)
    try:
        await events.wait_state(CONNECTED, within=WAIT)
        yield rig
    finally:
        await client.stop()
        await task
        await proxy.stop()
        await rig.server.stop()
        if rig.server is not server:
            await server.stop()


# ------------------------------------------------------------------ server truth


def server_waiting(server: DemoServer) -> set[str]:
    """Customers waiting for a human whom nobody has taken, as the backend's database says.

    (The client's waiting set holds only untaken customers since issue 14.)
    """
    # The demo backend's database is the server's truth; reading it is the point of the check.
    rows = server.backend._db.execute(  # type: ignore[attr-defined]
        "SELECT page_id, customer_id FROM customers WHERE stop = 1 AND is_assigned = 0"
    )
    return {f"{page}/{customer}" for page, customer in rows}


def server_replies(server: DemoServer) -> list[tuple[str, str]]:
    """Every human agent's reply stored on the server: (conversation, text)."""
    rows = server.backend._db.execute(  # type: ignore[attr-defined]
        "SELECT page_id, chat_id, message FROM messages WHERE is_human = 1 ORDER BY seq"
    )
    return [(f"{page}/{chat}", text) for page, chat, text in rows]


def waiting_keys(server: DemoServer) -> list[str]:
    return sorted(server_waiting(server))


def new_message_frame(conversation: str, text: str, name: str = "Flood Customer") -> bytes:
    """A dashboard ``new_message`` broadcast frame, as the Go hub writes it."""
    page, _, customer = conversation.partition("/")
    now = int(time.time())
    data = {
        "chat_id": customer,
        "sender_id": customer,
        "sender_name": name,
        "recipient_id": page,
        "message": text,
        "is_bot": False,
        "timestamp": now,
    }
    payload = {"type": "new_message", "page_id": page, "data": data, "timestamp": now}
    return ws_frame(json.dumps(payload, separators=(",", ":")).encode())


# ------------------------------------------------------------------ tests


@pytest.mark.asyncio
async def test_server_restart_reconnects_resyncs_and_matches_server_truth(tmp_path: Path) -> None:
    async with live(tmp_path) as rig:
        assert rig.store.state.waiting_keys == server_waiting(rig.server)
        port = rig.server.port
        mark = rig.events.mark()
        await rig.server.stop()
        await rig.events.wait_state(RECONNECTING, after=mark, within=WAIT)
        # The backend comes back on the same port with the same data, plus changes made while down.
        server = DemoServer("dashboard", db_path=tmp_path / "demo.sqlite3", port=port)
        await server.start()
        rig.server = server
        await server.backend.preload(3)
        mark = rig.events.mark()
        await rig.connected_after(mark)
        assert rig.store.state.waiting_keys == server_waiting(server)
        # Live events flow again on the new connection.
        result = await server.control("ask_for_human", text="back online?")
        key = result["customer"]["ref"]
        await rig.until(lambda: key in rig.store.state.waiting_keys)
        assert rig.store.state.waiting_keys == server_waiting(server)


@pytest.mark.asyncio
async def test_blackhole_is_detected_by_the_heartbeat(tmp_path: Path) -> None:
    """A half-open path (nothing arrives, nothing is refused) ends the connection via the heartbeat.

    websockets' own pings are off and the backend never closes a quiet socket here, so only the
    application heartbeat can notice. The wait is bounded by a generous multiple of
    heartbeat_interval + heartbeat_timeout; the reason is asserted, not the time.
    """
    async with live(tmp_path) as rig:
        mark = rig.events.mark()
        rig.proxy.blackhole()
        lost = await rig.events.wait_state(RECONNECTING, after=mark, within=10 * HEARTBEAT_BOUND)
        assert "heartbeat" in lost.detail
        assert rig.proxy.open_connections >= 1  # the socket itself never closed
        rig.proxy.set_pass()
        rig.proxy.drop()  # the stale half-open links go away
        await rig.connected_after(mark)
        assert rig.store.state.waiting_keys == server_waiting(rig.server)


@pytest.mark.asyncio
async def test_outage_replies_typed_meanwhile_are_delivered_exactly_once(tmp_path: Path) -> None:
    """A long outage while the agent keeps typing replies: each is delivered once, afterwards.

    Compressed clock: the issue's 30 s outage against 1-60 s backoff becomes an outage of 25
    failed reconnect attempts against 20-100 ms backoff (and a 0.25 + 0.5 s heartbeat), i.e.
    long relative to every client interval, which is what made 30 s interesting.
    """
    async with live(tmp_path) as rig:
        conversations = waiting_keys(rig.server)[:3]
        mark = rig.events.mark()
        rig.proxy.refuse()
        rig.proxy.drop()
        await rig.events.wait_state(RECONNECTING, after=mark, within=WAIT)
        replies = []
        for n in range(6):
            reply = SendReply(conversation=conversations[n % 3], text=f"typed during the outage {n}")
            rig.client.submit(reply)
            replies.append(reply)
        # The outage lasts: 25 refused reconnect attempts (each one a RECONNECTING state).
        await rig.until(
            lambda: sum(1 for s in rig.events.states()[mark:] if s is RECONNECTING) >= 25, within=60.0
        )
        assert not any(isinstance(e, CommandSent) for e in rig.events.events[mark:])
        assert server_replies(rig.server) == []
        rig.proxy.refuse(False)
        await rig.connected_after(rig.events.mark())
        ids = {r.command_id for r in replies}
        await rig.until(lambda: ids <= {e.command_id for e in rig.events.of(CommandSucceeded)})
        assert not [e for e in rig.events.of(CommandFailed) if e.command_id in ids]
        stored = server_replies(rig.server)
        assert sorted(stored) == sorted((r.conversation, r.text) for r in replies)  # each exactly once
        sent = [e.command_id for e in rig.events.of(CommandSent) if e.command_id in ids]
        assert sorted(sent) == sorted(ids)


@pytest.mark.asyncio
async def test_slow_server_delay_and_throttle_still_resync_and_deliver(tmp_path: Path) -> None:
    async with live(tmp_path, preload=300) as rig:
        rig.proxy.set_delay(150)  # each way, on top of anything else
        rig.proxy.throttle(64_000)  # bytes/s each way: the 300-customer resync takes seconds
        mark = rig.events.mark()
        rig.proxy.drop()
        await rig.connected_after(mark, within=60.0)
        assert rig.store.state.waiting_keys == server_waiting(rig.server)
        reply = SendReply(conversation=waiting_keys(rig.server)[0], text="slow but sure")
        rig.client.submit(reply)
        await rig.events.wait_for(CommandSucceeded, lambda e: e.command_id == reply.command_id, within=WAIT)
        assert server_replies(rig.server) == [(reply.conversation, reply.text)]
        # The heartbeat tolerates a slow path: no reconnect since the resync.
        assert RECONNECTING not in rig.events.states()[mark:][2:]


@pytest.mark.asyncio
async def test_flood_of_10k_frames_per_second_keeps_the_toast_rate_within_policy(tmp_path: Path) -> None:
    """10,000 customer messages in one second (injected at frame boundaries into the live stream).

    The policy runs on the event path as in the app (reducer alerts -> AlertPolicy, real time);
    every message toast/summary must be at least ``toast_min_interval`` after the previous one.
    """
    settings = AlertSettings(toast_min_interval=1.0, coalesce_window=10.0)
    policy = AlertPolicy(settings)
    shown: list[tuple[datetime, Notify]] = []

    def on_event(_event: Event, effects: tuple[Any, ...]) -> None:
        # As the app's EffectRunner: reducer alerts -> policy, and a tick when a deadline passed.
        now = datetime.now(UTC)
        for effect in effects:
            if isinstance(effect, Alert):
                shown.extend((now, e) for e in policy.on_alert(effect, now) if isinstance(e, Notify))
        deadline = policy.next_deadline()
        if deadline is not None and now >= deadline:
            shown.extend((now, e) for e in policy.on_tick(now) if isinstance(e, Notify))

    async with live(tmp_path, preload=20, on_event=on_event) as rig:
        customers = waiting_keys(rig.server)
        total, rate, batch = 10_000, 10_000.0, 100
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for first in range(0, total, batch):
            rig.proxy.inject(
                b"".join(
                    new_message_frame(customers[i % len(customers)], f"flood {i}")
                    for i in range(first, first + batch)
                )
            )
            await rig.proxy.flush_injections()
            delay = t0 + (first + batch) / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # paces the generator; never a wait for the client
        await rig.until(lambda: len(rig.events.of(MessageReceived)) >= total, within=60.0)
        assert len(rig.events.of(MessageReceived)) == total  # nothing lost, nothing doubled
        assert rig.store.state.unread_total >= total
        assert RECONNECTING not in rig.events.states()  # the flood never broke the connection
        # Message, reminder and summary toasts share the rate limit; escalations bypass it.
        rated = [(at, n) for at, n in shown if not n.toast.key.startswith("escalation:")]
        assert rated, "the flood produced no toast at all"
        gaps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(rated)]
        assert all(g >= settings.toast_min_interval - 1e-3 for g in gaps), gaps
        span = (rated[-1][0] - rated[0][0]).total_seconds()  # the policy's clock, not wall time
        assert len(rated) <= 1 + span / settings.toast_min_interval


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "raw", "reconnects"),
    [
        ("binary", ws_frame(b"\x00\x01\x02binary", opcode=0x2), False),
        ("truncated_json", ws_frame(b'{"type":"new_message","data":{"chat_id":'), False),
        ("not_json", ws_frame(b"<html>502 Bad Gateway</html>"), False),
        ("non_utf8", ws_frame(b'{"type":"new_message","x":"\xff\xfe\xfa"}'), True),
        ("oversized", ws_frame(b"x" * (DashboardCodec.max_frame_size + 1)), True),
    ],
)
async def test_bad_frames_are_ignored_or_end_only_that_connection(
    tmp_path: Path, kind: str, raw: bytes, reconnects: bool
) -> None:
    async with live(tmp_path) as rig:
        mark = rig.events.mark()
        rig.proxy.inject(raw)
        await rig.proxy.flush_injections()
        if reconnects:
            await rig.events.wait_state(RECONNECTING, after=mark, within=WAIT)
            await rig.connected_after(mark)
        else:
            await rig.events.wait_for(Ignored, after=mark, within=WAIT)
        if kind == "oversized":
            assert any(e.kind == "oversized" for e in rig.events.of(Ignored))
        if kind == "binary":
            assert any(e.kind == "binary" for e in rig.events.of(Ignored))
        # The client still works: a live event arrives and the waiting list is the server's.
        result = await rig.server.control("ask_for_human", text=f"after {kind}")
        key = result["customer"]["ref"]
        await rig.until(lambda: key in rig.store.state.waiting_keys)
        assert rig.store.state.waiting_keys == server_waiting(rig.server)
        if not reconnects:
            assert RECONNECTING not in rig.events.states()[mark:]


@pytest.mark.asyncio
async def test_frame_cut_in_the_middle_reconnects_and_resyncs(tmp_path: Path) -> None:
    async with live(tmp_path) as rig:
        mark = rig.events.mark()
        rig.proxy.cut_mid_frame()
        await rig.server.control("ask_for_human", text="this frame is cut in half")
        await rig.events.wait_state(RECONNECTING, after=mark, within=WAIT)
        await rig.connected_after(mark)
        # The cut frame's customer is back through the resync.
        assert rig.store.state.waiting_keys == server_waiting(rig.server)


@pytest.mark.asyncio
async def test_auth_revoked_mid_session_stops_retrying_until_signed_in_again(tmp_path: Path) -> None:
    async with live(tmp_path) as rig:
        conversation = waiting_keys(rig.server)[0]
        db = rig.server.backend._db  # type: ignore[attr-defined]
        password = rig.server.info.agents[0].password
        email = rig.server.info.agents[0].email
        # An admin revokes every session and resets the password; then the socket drops.
        db.execute("UPDATE sessions SET is_active = 0")
        db.execute("UPDATE users SET password = 'reset-by-admin' WHERE email = ?", (email,))
        mark = rig.events.mark()
        rig.proxy.drop()
        await rig.events.wait_state(ConnectionState.AUTH_REQUIRED, after=mark, within=WAIT)
        attempts = rig.proxy.accepted
        reply = SendReply(conversation=conversation, text="queued while signed out")
        rig.client.submit(reply)
        # An observation window of 20 backoff ceilings: no state change, no new connection.
        with pytest.raises(TimeoutError):
            await rig.events.wait_for(
                ConnectionChanged, after=rig.events.mark(), within=20 * LIVE.backoff_max
            )
        assert rig.client.state is ConnectionState.AUTH_REQUIRED
        assert not [e for e in rig.events.of(CommandSent) if e.command_id == reply.command_id]
        assert rig.proxy.accepted == attempts
        # The password comes back; the agent signs in again: the queued reply goes out once.
        db.execute("UPDATE users SET password = ? WHERE email = ?", (password, email))
        rig.auth.set_password(password)
        rig.client.reauthenticate()
        await rig.connected_after(mark)
        await rig.events.wait_for(CommandSucceeded, lambda e: e.command_id == reply.command_id, within=WAIT)
        assert server_replies(rig.server) == [(conversation, reply.text)]


@pytest.mark.asyncio
async def test_clock_jumps_sleep_resume_and_ntp_step_back(tmp_path: Path) -> None:
    """Sleep/resume: the wall clock jumps 8 h (monotonic stops, as on Linux), the path died
    half-open meanwhile; then monotonic jumps too (Windows/macOS); then NTP steps the wall clock
    back an hour. The client detects the dead path, reconnects, and nothing is lost or doubled.
    """
    async with live(tmp_path) as rig:
        keys = waiting_keys(rig.server)
        mark = rig.events.mark()
        rig.clock.wall_offset += 8 * 3600
        rig.proxy.blackhole()
        await rig.events.wait_state(RECONNECTING, after=mark, within=10 * HEARTBEAT_BOUND)
        rig.proxy.set_pass()
        rig.proxy.drop()
        await rig.connected_after(mark)
        first = SendReply(conversation=keys[0], text="after resume")
        rig.client.submit(first)
        await rig.events.wait_for(CommandSucceeded, lambda e: e.command_id == first.command_id, within=WAIT)

        mark = rig.events.mark()
        rig.clock.mono_offset += 3600  # monotonic time that counts the suspend
        second = SendReply(conversation=keys[1], text="after a monotonic jump")
        rig.client.submit(second)
        outcome = await rig.events.wait_for(
            CommandSucceeded | CommandFailed, lambda e: e.command_id == second.command_id, within=WAIT
        )
        assert isinstance(outcome, CommandSucceeded), outcome  # never lost to the jump
        rig.clock.wall_offset -= 3600  # NTP steps the wall clock back
        result = await rig.server.control("ask_for_human", text="after the step back")
        key = result["customer"]["ref"]
        await rig.until(lambda: key in rig.store.state.waiting_keys)
        assert rig.client.state is CONNECTED
        stored = server_replies(rig.server)
        assert stored.count((keys[0], first.text)) == 1
        assert stored.count((keys[1], second.text)) == 1
        assert rig.store.state.waiting_keys == server_waiting(rig.server)


@pytest.mark.asyncio
async def test_a_customer_list_read_before_my_reply_does_not_undo_its_assignment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the clock-jump test in CI: the REST customer list read after connecting was built
    before my reply assigned the customer, and its answer arrived after the assignment's
    broadcast; the customer went back to Waiting, untaken. Here the list's answer is held until
    the broadcast has come.
    """
    built, release = asyncio.Event(), asyncio.Event()
    original = DashboardBackend._rest_customers

    async def held(self: DashboardBackend, request: Any, session: Any) -> Any:
        response = await original(self, request, session)
        built.set()
        with contextlib.suppress(TimeoutError):  # a failed test must not hang the server
            await asyncio.wait_for(release.wait(), WAIT)
        return response

    monkeypatch.setattr(DashboardBackend, "_rest_customers", held)
    async with live(tmp_path) as rig:
        await asyncio.wait_for(built.wait(), WAIT)
        key = waiting_keys(rig.server)[0]
        reply = SendReply(conversation=key, text="I am here")
        mark = rig.events.mark()
        rig.client.submit(reply)
        await rig.events.wait_for(CommandSucceeded, lambda e: e.command_id == reply.command_id, within=WAIT)
        await rig.until(lambda: key in rig.store.state.mine_keys)
        release.set()
        await rig.events.wait_for(WaitingListPage, lambda e: not e.complete_list, after=mark, within=WAIT)
        assert key not in server_waiting(rig.server)
        assert key in rig.store.state.mine_keys
        assert rig.store.state.waiting_keys == server_waiting(rig.server)


@pytest.mark.asyncio
async def test_timings_are_shrunk_consistently(tmp_path: Path) -> None:
    """The compressed timings keep the real order of what they drive: a half-open path is found
    by the heartbeat, long before a command could time out, so a reply written into it comes
    back as unconfirmed (never as a timeout while the socket still looked alive) and is never
    resent by itself; the retries wait backoff delays, each shorter than one heartbeat; a reply
    queued meanwhile goes out exactly once when the path is back."""
    async with live(tmp_path) as rig:
        keys = waiting_keys(rig.server)
        mark = rig.events.mark()
        rig.proxy.blackhole()
        lost = SendReply(conversation=keys[0], text="written into the dead path")
        rig.client.submit(lost)
        await rig.events.wait_for(CommandSent, lambda e: e.command_id == lost.command_id, within=WAIT)
        dropped = await rig.events.wait_for(
            ConnectionChanged, lambda e: e.state is not CONNECTED, after=mark, within=WAIT
        )
        assert dropped.detail == "no answer to the heartbeat", dropped
        outcome = await rig.events.wait_for(
            CommandSucceeded | CommandFailed, lambda e: e.command_id == lost.command_id, within=WAIT
        )
        assert isinstance(outcome, CommandFailed), outcome
        assert outcome.reason is FailureReason.UNCONFIRMED, outcome  # not TIMEOUT
        queued = SendReply(conversation=keys[1], text="queued while reconnecting")
        rig.client.submit(queued)
        # The path stays dead until a retry is scheduled: under load the first reconnect attempt
        # may still be on its way, and mending the path then would let it through at once.
        await rig.events.wait_for(ConnectionChanged, lambda e: bool(e.retry_in), after=mark, within=WAIT)
        rig.proxy.set_pass()
        await rig.connected_after(mark)
        await rig.events.wait_for(CommandSucceeded, lambda e: e.command_id == queued.command_id, within=WAIT)
        delays = [
            e.retry_in for e in rig.events.events[mark:] if isinstance(e, ConnectionChanged) and e.retry_in
        ]
        assert delays, "no retry was scheduled"
        assert all(d <= LIVE.backoff_max < LIVE.heartbeat_interval for d in delays), delays
        stored = server_replies(rig.server)
        assert stored.count((keys[1], queued.text)) == 1
        assert (keys[0], lost.text) not in stored  # the dead path swallowed it; never resent alone
