"""Backoff math, URL building, log redaction and the offline behaviour of Client (fake codec)."""

from __future__ import annotations

import asyncio
import logging
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
from tray_agent.core.protocol.auth import redact_url
from tray_agent.core.protocol.base import EncodeError, HttpCall, Outbound, WsFrame
from tray_agent.core.redact import redact
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import Credentials, DashboardAuthenticator
from tray_agent.net.client import Client
from tray_agent.net.config import ConfigError, Timings, http_base, ws_url
from tray_agent.net.connection import Backoff


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


# -- backoff --------------------------------------------------------------------------------------


def test_backoff_full_jitter_doubles_up_to_the_cap() -> None:
    backoff = Backoff(1.0, 60.0, rng=lambda: 0.999999)
    ceilings = [round(backoff.next_delay()) for _ in range(9)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    backoff.reset()
    assert round(backoff.next_delay()) == 1


def test_backoff_delay_is_uniform_below_the_ceiling() -> None:
    values = iter([0.0, 0.5, 0.25])
    backoff = Backoff(1.0, 60.0, rng=lambda: next(values))
    assert [backoff.next_delay() for _ in range(3)] == [0.0, 1.0, 1.0]


def test_backoff_never_overflows() -> None:
    backoff = Backoff(1.0, 60.0, rng=lambda: 1.0)
    backoff.attempts = 10_000
    assert backoff.next_delay() == 60.0


def test_timings_come_from_settings() -> None:
    settings = ConnectionSettings(
        heartbeat_interval=30, heartbeat_timeout=5, resync_interval=120, backoff_max=90
    )
    timings = Timings.from_settings(settings)
    assert (timings.heartbeat_interval, timings.heartbeat_timeout) == (30, 5)
    assert (timings.resync_interval, timings.backoff_max, timings.command_timeout) == (120, 90, 10)


# -- URLs -----------------------------------------------------------------------------------------


def test_ws_url_per_dialect() -> None:
    org = ConnectionSettings(dialect="org", server="https://crm.example.com:8443/api/", org="o 1")
    url = ws_url(org, Dialect.ORG, Credentials(token="a.b.c"))
    assert url == "wss://crm.example.com:8443/api/ws/o%201?token=a.b.c"
    assert redact_url(url) == "wss://crm.example.com:8443/api/ws/o%201"
    dash = ConnectionSettings(dialect="dashboard", server="http://127.0.0.1:8080")
    assert ws_url(dash, Dialect.DASHBOARD, Credentials(cookie="s")) == "ws://127.0.0.1:8080/api/dashboard/ws"
    assert http_base(dash) == "http://127.0.0.1:8080"


def test_urls_refuse_bad_or_insecure_servers() -> None:
    with pytest.raises(ConfigError):
        http_base(ConnectionSettings(server=""))
    with pytest.raises(ConfigError):
        http_base(ConnectionSettings(server="ftp://x"))
    with pytest.raises(ConfigError, match="unencrypted"):
        http_base(ConnectionSettings(server="http://crm.example.com"))
    assert http_base(ConnectionSettings(server="http://crm.example.com", allow_insecure=True))
    assert http_base(ConnectionSettings(server="http://localhost:8000"))
    with pytest.raises(ConfigError, match="organization"):
        ws_url(ConnectionSettings(dialect="org", server="https://x"), Dialect.ORG, Credentials(token="t"))


# -- redaction ------------------------------------------------------------------------------------


def test_redact_masks_tokens_cookies_and_bearers() -> None:
    line = (
        "> GET /ws/org1?token=eyJhbGc.eyJzdWIi.sig HTTP/1.1 Cookie: session=abc123 Authorization: Bearer xyz"
    )
    cleaned = redact(line)
    for secret in ("eyJhbGc", "abc123", "xyz"):
        assert secret not in cleaned
    assert "/ws/org1" in cleaned


def test_wire_logger_redacts_library_debug_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tray_agent.net.wire")
    logging.getLogger("tray_agent.net.wire").debug("> GET %s HTTP/1.1", "/ws/o?token=SECRET-JWT")
    logging.getLogger("tray_agent.net.wire").debug("> Cookie: session=SECRET-COOKIE")
    assert caplog.records
    assert all("SECRET" not in r.getMessage() for r in caplog.records)


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
