"""CommandQueued.durable says whether the command is on disk (a failing outbox store says False)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.helpers.fakes import EventRecorder, FakeClock, FakeSecretStore, RecordingSleep
from tests.helpers.net_clients import FAST
from tests.helpers.outbox import FailingOutbox
from tray_agent.core.commands import Ping, ResendCommand, SendReply, TakeOver
from tray_agent.core.events import CommandQueued
from tray_agent.core.ports import StoredCommand, StoredState
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import DashboardAuthenticator
from tray_agent.net.client import Client


def _client(events: EventRecorder, outbox: FailingOutbox | None) -> Client:
    """A client that is never started: submit() decides durability synchronously."""
    settings = ConnectionSettings(
        dialect="dashboard", server="http://127.0.0.1:9", company="co1", email="a@b.c"
    )
    clock = FakeClock()
    auth = DashboardAuthenticator(
        settings, FakeSecretStore(), clock, password="pw", keepalive_interval=3600.0
    )
    return Client(
        DashboardCodec(), auth, settings, events, clock, timings=FAST, sleep=RecordingSleep(), outbox=outbox
    )


def _queued(events: EventRecorder, command_id: str) -> CommandQueued:
    return next(e for e in events.of(CommandQueued) if e.command_id == command_id)


def test_queued_is_durable_only_when_the_store_saved_it():
    events = EventRecorder()
    outbox = FailingOutbox()
    client = _client(events, outbox)
    client.submit(SendReply("p1/c1", "saved", command_id="r1"))
    assert _queued(events, "r1").durable is True
    outbox.fail_writes()  # the disk is full / the data directory became read-only
    client.submit(SendReply("p1/c1", "not saved", command_id="r2"))
    client.submit(TakeOver("p1/c2", command_id="t1"))
    assert _queued(events, "r2").durable is False
    assert _queued(events, "t1").durable is False
    assert [c for _, c, ok in outbox.journal if not ok] == ["r2", "t1"]  # it did try
    assert outbox.state("r2") is None


def test_queued_is_not_durable_without_a_store_or_for_kinds_never_persisted():
    events = EventRecorder()
    _client(events, None).submit(SendReply("p1/c1", "memory only", command_id="r1"))
    assert _queued(events, "r1").durable is False
    _client(events, FailingOutbox()).submit(Ping(command_id="p1"))
    assert _queued(events, "p1").durable is False


@pytest.mark.asyncio
async def test_restored_commands_are_durable_and_a_resend_that_cannot_be_saved_is_not():
    events = EventRecorder()
    row = replace(
        StoredCommand.from_command(SendReply("p1/c1", "maybe sent", command_id="u1")), state=StoredState.SENT
    )
    outbox = FailingOutbox([row])
    client = _client(events, outbox)
    task = client.start()  # nothing listens on port 9: stays offline, restores the outbox
    try:
        assert (await events.wait_for(CommandQueued, lambda e: e.command_id == "u1")).durable is True
        outbox.fail_writes()
        mark = events.mark()
        client.submit(ResendCommand(command_id="u1"))
        again = await events.wait_for(CommandQueued, lambda e: e.command_id == "u1", after=mark)
        assert again.durable is False
    finally:
        await client.stop()
        await task
