"""The client's durable outbox (through a fake OutboxStore): write before queued, restart, resend."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.helpers.fakes import EventRecorder, FakeClock, FakeSecretStore, RecordingSleep
from tests.helpers.net_clients import FAST, running_client, sent_texts
from tests.helpers.scripted_server import DashboardServer, dashboard_customer
from tray_agent.core.commands import DiscardCommand, Ping, ResendCommand, Resolve, SendReply, TakeOver
from tray_agent.core.events import (
    CommandDiscarded,
    CommandFailed,
    CommandKind,
    CommandQueued,
    CommandSent,
    CommandSucceeded,
    ConnectionChanged,
    ConnectionState,
    Event,
    FailureReason,
)
from tray_agent.core.ports import StoredCommand, StoredState
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import DashboardAuthenticator
from tray_agent.net.client import Client


class FakeOutbox:
    """An in-memory OutboxStore that logs every call into a shared journal."""

    def __init__(self, journal: list[object], rows: list[StoredCommand] | None = None) -> None:
        self.journal = journal
        self.rows: dict[str, StoredCommand] = {r.command_id: r for r in rows or []}
        self.problem = ""
        self.fail_writes = False

    def pending(self) -> list[StoredCommand]:
        return list(self.rows.values())

    def add(self, command: StoredCommand) -> bool:
        self.journal.append(("add", command.command_id))
        if self.fail_writes:
            return False
        self.rows[command.command_id] = replace(command, state=StoredState.QUEUED)
        return True

    def _set(self, command_id: str, state: StoredState) -> None:
        self.journal.append((state.value, command_id))
        if command_id in self.rows:
            self.rows[command_id] = replace(self.rows[command_id], state=state)

    def mark_sent(self, command_id: str) -> None:
        self._set(command_id, StoredState.SENT)

    def mark_unconfirmed(self, command_id: str) -> None:
        self._set(command_id, StoredState.UNCONFIRMED)

    def remove(self, command_id: str) -> None:
        self.journal.append(("remove", command_id))
        self.rows.pop(command_id, None)

    def state(self, command_id: str) -> StoredState | None:
        row = self.rows.get(command_id)
        return row.state if row else None


class Journal(EventRecorder):
    """Records events into the same journal as the outbox, to check their order."""

    def __init__(self, journal: list[object]) -> None:
        super().__init__()
        self.journal = journal

    def __call__(self, event: Event) -> None:
        self.journal.append(event)
        super().__call__(event)


def _server() -> DashboardServer:
    server = DashboardServer()
    server.customers = [dashboard_customer("p1", f"c{i}") for i in range(2)]
    return server


def _client(outbox: FakeOutbox, events: Journal, url: str = "http://127.0.0.1:9", server=None) -> Client:
    settings = ConnectionSettings(
        dialect="dashboard",
        server=server.url if server else url,
        company=server.company if server else "co1",
        email=server.email if server else "a@b.c",
    )
    clock = FakeClock()
    auth = DashboardAuthenticator(
        settings, FakeSecretStore(), clock, password="pw", keepalive_interval=3600.0
    )
    return Client(
        DashboardCodec(), auth, settings, events, clock, timings=FAST, sleep=RecordingSleep(), outbox=outbox
    )


def test_the_reply_is_on_disk_before_it_is_shown_as_queued():
    journal: list[object] = []
    outbox = FakeOutbox(journal)
    client = _client(outbox, Journal(journal))
    reply = SendReply("p1/c1", "hello", command_id="r1")
    client.submit(reply)
    add = journal.index(("add", "r1"))
    queued = next(i for i, e in enumerate(journal) if isinstance(e, CommandQueued))
    assert add < queued
    assert outbox.rows["r1"].to_command() == reply


def test_only_agent_commands_are_persisted_and_a_failed_write_still_queues():
    journal: list[object] = []
    outbox = FakeOutbox(journal)
    client = _client(outbox, Journal(journal))
    client.submit(Ping(command_id="p"))
    assert outbox.rows == {}
    outbox.fail_writes = True
    client.submit(SendReply("p1/c1", "still goes", command_id="r2"))
    assert any(isinstance(e, CommandQueued) and e.command_id == "r2" for e in journal)


@pytest.mark.asyncio
async def test_stopping_keeps_queued_commands_in_the_store():
    journal: list[object] = []
    outbox = FakeOutbox(journal)
    client = _client(outbox, Journal(journal))  # nothing listens on port 9: offline
    async with running_client(client):
        client.submit(SendReply("p1/c1", "later", command_id="r1"))
    failed = [e for e in journal if isinstance(e, CommandFailed)]
    assert [f.reason for f in failed] == [FailureReason.OFFLINE]
    assert outbox.state("r1") is StoredState.QUEUED


@pytest.mark.asyncio
async def test_queued_commands_from_the_last_run_go_out_after_the_first_resync_once():
    journal: list[object] = []
    rows = [
        StoredCommand.from_command(SendReply("p1/c1", "from before", command_id="old-1")),
        replace(StoredCommand.from_command(TakeOver("p1/c0", command_id="old-2")), state=StoredState.SENT),
        replace(StoredCommand.from_command(Resolve("p1/c1", command_id="old-3")), state=StoredState.SENT),
    ]
    outbox = FakeOutbox(journal, rows)
    events = Journal(journal)
    async with _server() as server, running_client(_client(outbox, events, server=server)):
        await events.wait_for(CommandSucceeded, lambda e: e.command_id == "old-1")
        await events.wait_for(CommandSucceeded, lambda e: e.command_id == "old-2")  # idempotent: again
        await events.wait_for(CommandSucceeded, lambda e: e.command_id == "old-3")  # idempotent too
        connected = next(
            i
            for i, e in enumerate(journal)
            if isinstance(e, ConnectionChanged) and e.state is ConnectionState.CONNECTED
        )
        sent = next(
            i for i, e in enumerate(journal) if isinstance(e, CommandSent) and e.command_id == "old-1"
        )
        assert connected < sent
        assert sent_texts(server) == ["from before"]
        assert journal.index(("sent", "old-1")) < sent  # on disk as sent before it was written
        assert outbox.rows == {}


@pytest.mark.asyncio
async def test_unconfirmed_replies_are_shown_never_resent_until_the_agent_decides():
    journal: list[object] = []
    rows = [
        replace(
            StoredCommand.from_command(SendReply("p1/c1", "maybe sent", command_id="u1")),
            state=StoredState.SENT,
        ),
        replace(
            StoredCommand.from_command(SendReply("p1/c1", "maybe too", command_id="u2")),
            state=StoredState.UNCONFIRMED,
        ),
    ]
    outbox = FakeOutbox(journal, rows)
    events = Journal(journal)
    async with _server() as server, running_client(_client(outbox, events, server=server)) as client:
        queued = await events.wait_for(CommandQueued, lambda e: e.command_id == "u1")
        assert queued.text == "maybe sent"  # the UI can show the bubble
        lost = await events.wait_for(CommandFailed, lambda e: e.command_id == "u1")
        assert lost.reason is FailureReason.UNCONFIRMED
        await events.wait_state(ConnectionState.CONNECTED)
        assert sent_texts(server) == []
        assert outbox.state("u1") is StoredState.UNCONFIRMED
        assert [c.command_id for c in client.unconfirmed()] == ["u1", "u2"]

        client.submit(ResendCommand(command_id="u1"))
        await events.wait_for(CommandSucceeded, lambda e: e.command_id == "u1")
        client.submit(DiscardCommand(command_id="u2"))
        dropped = await events.wait_for(CommandDiscarded, lambda e: e.command_id == "u2")
        assert dropped.kind is CommandKind.REPLY
        assert dropped.conversation == "p1/c1"
        assert not [
            e
            for e in events.of(CommandFailed)
            if e.command_id == "u2" and e.reason is not FailureReason.UNCONFIRMED
        ]
        client.submit(ResendCommand(command_id="nope"))
        unknown = await events.wait_for(CommandFailed, lambda e: e.command_id == "nope")
        assert unknown.reason is FailureReason.INVALID
        assert sent_texts(server) == ["maybe sent"]
        assert outbox.rows == {}


@pytest.mark.asyncio
async def test_a_reply_in_flight_at_a_drop_is_stored_as_unconfirmed():
    journal: list[object] = []
    outbox = FakeOutbox(journal)
    events = Journal(journal)
    async with _server() as server, running_client(_client(outbox, events, server=server)) as client:
        await events.wait_state(ConnectionState.CONNECTED)
        conn = await server.next_connection()
        server.swallow.add("send_message")
        client.submit(SendReply("p1/c1", "in flight", command_id="f1"))
        while (await conn.next_frame()).get("type") != "send_message":
            pass
        await server.go_down()
        lost = await events.wait_for(CommandFailed, lambda e: e.command_id == "f1")
        assert lost.reason is FailureReason.UNCONFIRMED
        assert outbox.state("f1") is StoredState.UNCONFIRMED
        assert [c.command_id for c in client.unconfirmed()] == ["f1"]
