"""An outbox store that cannot write (disk full): a command it cannot mark as sent never goes out."""

from __future__ import annotations

import asyncio
import errno
from dataclasses import replace

import pytest

from tests.helpers.fakes import EventRecorder, FakeClock, FakeSecretStore, RecordingSleep
from tests.helpers.net_clients import FAST, running_client, sent_texts
from tests.helpers.scripted_server import DashboardServer, dashboard_customer
from tests.unit.net.test_outbox_durable import FakeOutbox
from tray_agent.core.commands import SendReply
from tray_agent.core.events import (
    CommandFailed,
    CommandQueued,
    CommandSent,
    CommandSucceeded,
    ConnectionState,
    WaitingListPage,
)
from tray_agent.core.ports import StoredState
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import DashboardAuthenticator
from tray_agent.net.client import Client

HOLD = 3600.0  # the store retry period: only a moved clock ends a hold in these tests


class BrokenOutbox(FakeOutbox):
    """A FakeOutbox whose chosen writes fail, by raising (OSError ENOSPC) or by answering False."""

    def __init__(self, mode: str) -> None:
        super().__init__([])
        self.mode = mode
        self.broken: set[str] = set()
        self.failed = asyncio.Event()

    def _fails(self, what: str) -> bool:
        if what not in self.broken:
            return False
        self.failed.set()
        if self.mode == "raises":
            raise OSError(errno.ENOSPC, "No space left on device")
        return True

    def mark_sent(self, command_id: str) -> bool:  # type: ignore[override]
        if self._fails("mark_sent"):
            return False
        super().mark_sent(command_id)
        return True

    def remove(self, command_id: str) -> bool:  # type: ignore[override]
        if self._fails("remove"):
            return False
        super().remove(command_id)
        return True


def _server() -> DashboardServer:
    server = DashboardServer()
    server.customers = [dashboard_customer("p1", f"c{i}") for i in range(2)]
    return server


def _client(outbox: FakeOutbox, events: EventRecorder, server: DashboardServer, clock: FakeClock) -> Client:
    settings = ConnectionSettings(
        dialect="dashboard", server=server.url, company=server.company, email=server.email
    )
    auth = DashboardAuthenticator(
        settings, FakeSecretStore(), clock, password="pw", keepalive_interval=3600.0
    )
    return Client(
        DashboardCodec(),
        auth,
        settings,
        events,
        clock,
        timings=replace(FAST, store_retry=HOLD),
        sleep=RecordingSleep(),
        outbox=outbox,
    )


async def _round_trip(client: Client, events: EventRecorder) -> None:
    """A full resync on the socket: whatever the client was going to write before it is written."""
    mark = events.mark()
    client.request_resync("test")
    await events.wait_for(WaitingListPage, lambda p: not p.has_more, after=mark)


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["raises", "answers_false"])
async def test_a_reply_the_store_cannot_mark_as_sent_is_held_then_sent_once(mode: str) -> None:
    outbox, events, clock = BrokenOutbox(mode), EventRecorder(), FakeClock()
    async with _server() as server, running_client(_client(outbox, events, server, clock)) as client:
        await events.wait_state(ConnectionState.CONNECTED)
        outbox.broken = {"mark_sent"}  # the disk filled up after the reply was queued
        client.submit(SendReply("p1/c1", "hello", command_id="r1"))
        await asyncio.wait_for(outbox.failed.wait(), 5)
        await _round_trip(client, events)
        assert sent_texts(server) == []  # not on the wire
        assert outbox.state("r1") is StoredState.QUEUED  # and the store says so, truthfully
        assert not [e for e in events.of(CommandSent) if e.command_id == "r1"]
        assert not [e for e in events.of(CommandFailed) if e.command_id == "r1"]
        assert events.states()[-1] is ConnectionState.CONNECTED  # no reconnect over it

        outbox.broken = set()  # room again
        clock.offset += HOLD + 1
        await _round_trip(client, events)
        await events.wait_for(CommandSucceeded, lambda e: e.command_id == "r1")
        assert sent_texts(server) == ["hello"]
        assert outbox.rows == {}


@pytest.mark.asyncio
async def test_a_held_reply_is_shown_as_not_saved_once() -> None:
    outbox, events, clock = BrokenOutbox("raises"), EventRecorder(), FakeClock()
    async with _server() as server, running_client(_client(outbox, events, server, clock)) as client:
        await events.wait_state(ConnectionState.CONNECTED)
        outbox.broken = {"mark_sent"}
        client.submit(SendReply("p1/c1", "hello", command_id="r1"))
        await asyncio.wait_for(outbox.failed.wait(), 5)
        await _round_trip(client, events)
        clock.offset += HOLD + 1  # held a second time: said once, not at every retry
        await _round_trip(client, events)
        queued = [e.durable for e in events.of(CommandQueued) if e.command_id == "r1"]
        assert queued == [True, False]  # saved when queued; then: cannot record its sending
        assert sent_texts(server) == []

        outbox.broken = set()
        clock.offset += HOLD + 1
        await _round_trip(client, events)
        await events.wait_for(CommandSucceeded, lambda e: e.command_id == "r1")
        assert sent_texts(server) == ["hello"]


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["raises", "answers_false"])
async def test_a_full_disk_never_delivers_a_reply_twice_across_a_restart(mode: str) -> None:
    outbox, clock = BrokenOutbox(mode), FakeClock()
    async with _server() as server:
        first = EventRecorder()
        async with running_client(_client(outbox, first, server, clock)) as client:
            await first.wait_state(ConnectionState.CONNECTED)
            outbox.broken = {"mark_sent", "remove"}
            client.submit(SendReply("p1/c1", "only once", command_id="r1"))
            await asyncio.wait_for(outbox.failed.wait(), 5)
            await _round_trip(client, first)
        # The app restarts with room on the disk again: the queued row goes out, once.
        outbox.broken = set()
        second = EventRecorder()
        async with running_client(_client(outbox, second, server, clock)):
            await second.wait_for(CommandSucceeded, lambda e: e.command_id == "r1")
        assert sent_texts(server) == ["only once"]
        assert outbox.rows == {}


@pytest.mark.asyncio
async def test_a_finished_command_whose_row_cannot_be_deleted_is_deleted_later() -> None:
    outbox, events, clock = BrokenOutbox("raises"), EventRecorder(), FakeClock()
    async with _server() as server, running_client(_client(outbox, events, server, clock)) as client:
        await events.wait_state(ConnectionState.CONNECTED)
        outbox.broken = {"remove"}
        client.submit(SendReply("p1/c1", "hello", command_id="r1"))
        await events.wait_for(CommandSucceeded, lambda e: e.command_id == "r1")
        assert outbox.state("r1") is StoredState.SENT  # the delete failed
        outbox.broken = set()
        clock.offset += HOLD + 1
        await _round_trip(client, events)
        assert outbox.rows == {}
        assert sent_texts(server) == ["hello"]
