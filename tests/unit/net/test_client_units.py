"""The offline behaviour of Client (fake codec): submit, stop, never raising, backoff without a server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.helpers.fakes import EventRecorder, FakeClock, FakeSecretStore
from tray_agent.core.commands import Command, SendReply, TakeOver
from tray_agent.core.events import (
    CommandFailed,
    CommandQueued,
    ConnectionState,
    Dialect,
    Event,
    FailureReason,
    Ignored,
)
from tray_agent.core.protocol.base import EncodeError, HttpCall, Outbound, WsFrame
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import DashboardAuthenticator
from tray_agent.net.client import Client


class FakeCodec:
    """A minimal DialectCodec: JSON-free, one WsFrame per command, EncodeError for "bad"."""

    dialect = Dialect.DASHBOARD
    max_frame_size = 1024

    def parse_frame(self, frame: str | bytes) -> Sequence[Event]:
        return (Ignored(kind="fake", why="fake"),)

    def encode(self, command: Command) -> Outbound:
        if command.conversation_key == "bad":
            raise EncodeError(FailureReason.INVALID, "bad key")
        if isinstance(command, SendReply):
            return HttpCall("POST", "/x")
        return WsFrame(text=command.kind.value)

    def parse_response(self, command: Command, status: int, body: bytes) -> Sequence[Event]:
        return ()

    def ping_frame(self) -> str:
        return "ping"

    def pong_frame(self) -> str:
        return "pong"


# -- Client without a server ----------------------------------------------------------------------


def _client(events: EventRecorder) -> Client:
    settings = ConnectionSettings(dialect="dashboard", server="http://127.0.0.1:9")
    clock = FakeClock()
    auth = DashboardAuthenticator(settings, FakeSecretStore(), clock, password="pw")
    return Client(FakeCodec(), auth, settings, events, clock)


@pytest.mark.asyncio
async def test_client_submit_queues_and_stop_settles_offline() -> None:
    events = EventRecorder()
    client = _client(events)
    reply = SendReply(conversation="p/a", text="hello")
    client.submit(reply)
    (queued,) = events.of(CommandQueued)
    assert (queued.command_id, queued.text) == (reply.command_id, "hello")
    # Before the first sign-in an EncodeError is deferred to send time (the codec may lack ids).
    client.submit(TakeOver(conversation="bad"))
    assert not events.of(CommandFailed)
    await client.stop()
    reasons = [e.reason for e in events.of(CommandFailed)]
    assert reasons == [FailureReason.OFFLINE, FailureReason.OFFLINE]
    assert events.states() == [ConnectionState.OFFLINE]
    late = TakeOver(conversation="p/b")
    client.submit(late)
    assert events.of(CommandFailed)[-1].command_id == late.command_id


def test_client_submit_never_raises_even_if_emit_does() -> None:
    calls: list[Event] = []

    def explode(event: Event) -> None:
        calls.append(event)
        raise RuntimeError("consumer bug")

    settings = ConnectionSettings(dialect="dashboard", server="http://127.0.0.1:9")
    clock = FakeClock()
    auth = DashboardAuthenticator(settings, FakeSecretStore(), clock)
    client = Client(FakeCodec(), auth, settings, explode, clock)
    client.submit(TakeOver(conversation="p/a"))
    assert calls
    assert isinstance(calls[0], CommandQueued)  # the raising path really ran


@pytest.mark.asyncio
async def test_client_unreachable_server_backs_off_with_jitter() -> None:
    events = EventRecorder()
    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) >= 4:
            await client.stop()

    settings = ConnectionSettings(
        dialect="dashboard", server="http://127.0.0.1:9", email="a@b.c", company="co"
    )
    clock = FakeClock()
    auth = DashboardAuthenticator(settings, FakeSecretStore(), clock, password="pw", timeout=2.0)
    client = Client(FakeCodec(), auth, settings, events, clock, sleep=fake_sleep, rng=lambda: 0.5)
    await asyncio.wait_for(client.run(), 20)
    assert delays == [0.5, 1.0, 2.0, 4.0]
    reconnecting = [e for e in events.states() if e is ConnectionState.RECONNECTING]
    assert len(reconnecting) == 4
    assert events.states()[-1] is ConnectionState.OFFLINE
