"""The Outbox without a socket: its store beside the tracker (save, mark sent, hold, restore, outcomes)."""

from __future__ import annotations

from tests.helpers.fakes import SettableClock
from tests.unit.net.test_outbox_durable import FakeOutbox
from tray_agent.core.commands import DiscardCommand, Ping, ResendCommand, SendReply, TakeOver, succeeded
from tray_agent.core.events import (
    CommandDiscarded,
    CommandFailed,
    CommandKind,
    CommandQueued,
    CommandRetried,
    CommandSent,
    CommandSucceeded,
    Event,
    FailureReason,
)
from tray_agent.core.ports import StoredCommand, StoredState
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.net.outbox import Outbox
from tray_agent.net.tracker import CommandTracker, Transport

RETRY = 5.0


class Rig:
    """An Outbox on a FakeOutbox store whose emit routes outcomes back, as the client's does."""

    def __init__(self, rows: list[StoredCommand] | None = None, store: type[FakeOutbox] = FakeOutbox) -> None:
        self.journal: list[object] = []
        self.store = store(self.journal, rows)
        self.clock = SettableClock()
        self.tracker = CommandTracker(10.0)
        self.wakes = 0
        self.outbox = Outbox(
            self.tracker,
            self.store,
            DashboardCodec(),
            self.clock,
            store_retry=RETRY,
            emit=self.emit,
            wake=self.wake,
        )

    def emit(self, event: Event) -> None:
        if isinstance(event, CommandSucceeded | CommandFailed):
            self.outbox.record_outcome(event)
        self.journal.append(event)

    def wake(self) -> None:
        self.wakes += 1

    def events(self) -> list[Event]:
        return [e for e in self.journal if isinstance(e, Event)]

    def submit(self, command: SendReply | TakeOver | Ping | ResendCommand | DiscardCommand) -> None:
        self.outbox.submit(command, stopped=False, signed_in=False)


class BrokenSent(FakeOutbox):
    """A FakeOutbox that cannot mark commands as sent (disk full)."""

    def mark_sent(self, command_id: str) -> bool:  # type: ignore[override]
        self.journal.append(("mark_sent failed", command_id))
        return False


class FlakyRemove(FakeOutbox):
    """A FakeOutbox whose deletes fail until ``works`` is set."""

    works = False

    def remove(self, command_id: str) -> bool:  # type: ignore[override]
        if not self.works:
            return False
        super().remove(command_id)
        return True


def test_outbox_submit_writes_the_row_before_the_queued_event_and_wakes() -> None:
    rig = Rig()
    rig.submit(SendReply("p1/c1", "hello", command_id="r1"))
    assert rig.journal[0] == ("add", "r1")
    queued = rig.journal[1]
    assert isinstance(queued, CommandQueued)
    assert (queued.command_id, queued.durable, queued.text) == ("r1", True, "hello")
    assert [p.command.command_id for p in rig.tracker.outbox] == ["r1"]
    assert rig.wakes == 1


def test_outbox_a_failed_save_keeps_the_command_in_memory_not_durable() -> None:
    rig = Rig()
    rig.store.fail_writes = True
    rig.submit(SendReply("p1/c1", "hello", command_id="r1"))
    (queued,) = [e for e in rig.events() if isinstance(e, CommandQueued)]
    assert not queued.durable
    assert len(rig.tracker.outbox) == 1
    assert rig.outbox.mark_sent(rig.tracker.outbox[0].command)  # not on disk: nothing to mark


def test_outbox_pings_are_never_persisted() -> None:
    rig = Rig()
    rig.submit(Ping(command_id="p"))
    assert ("add", "p") not in rig.journal
    (queued,) = [e for e in rig.events() if isinstance(e, CommandQueued)]
    assert not queued.durable


def test_outbox_a_retried_reply_says_what_it_retries() -> None:
    rig = Rig()
    rig.submit(SendReply("p1/c1", "again", command_id="r2", retry_of="r1"))
    retried = [e for e in rig.events() if isinstance(e, CommandRetried)]
    assert [(e.command_id, e.retried_as) for e in retried] == [("r1", "r2")]


def test_outbox_stopped_or_unexpressible_commands_fail_at_submit() -> None:
    rig = Rig()
    rig.outbox.submit(TakeOver("p1/c1", command_id="t1"), stopped=True, signed_in=True)
    failed = [e for e in rig.events() if isinstance(e, CommandFailed)]
    assert [(e.command_id, e.reason) for e in failed] == [("t1", FailureReason.OFFLINE)]
    assert not rig.tracker.outbox
    assert ("add", "t1") not in rig.journal


def test_outbox_a_command_the_store_cannot_mark_sent_is_held_in_order_and_shown_once() -> None:
    rig = Rig(store=BrokenSent)
    first, second = SendReply("p1/c1", "one", command_id="r1"), SendReply("p1/c1", "two", command_id="r2")
    rig.submit(first)
    rig.submit(second)
    batch = rig.tracker.take_sendable(live=True, now=rig.clock.monotonic())
    assert not rig.outbox.mark_sent(batch[0].command)
    rig.outbox.hold(batch[0], batch[1:])
    # Both are back, in order; the first waits store_retry, the second waits behind it.
    assert [p.command.command_id for p in rig.tracker.outbox] == ["r1", "r2"]
    assert batch[0].hold_until == rig.clock.monotonic() + RETRY
    assert rig.tracker.take_sendable(live=True, now=rig.clock.monotonic()) == []
    not_saved = [e for e in rig.events() if isinstance(e, CommandQueued) and not e.durable]
    assert [e.command_id for e in not_saved] == ["r1"]
    # Held again after the retry period: not shown a second time.
    rig.clock.advance(RETRY)
    again = rig.tracker.take_sendable(live=True, now=rig.clock.monotonic())
    assert [p.command.command_id for p in again] == ["r1"]
    rig.outbox.hold(again[0], [])
    assert len([e for e in rig.events() if isinstance(e, CommandQueued) and not e.durable]) == 1
    assert rig.store.state("r1") is StoredState.QUEUED


def test_outbox_announces_only_the_agents_commands_once() -> None:
    rig = Rig()
    rig.submit(TakeOver("p1/c1", command_id="t1"))
    internal = rig.tracker.enqueue(Ping(command_id="i"), internal=True)
    (pending,) = [p for p in rig.tracker.outbox if not p.internal]
    rig.outbox.announce_sent(pending)
    rig.outbox.announce_sent(internal)
    pending.step = 1  # a Plan's later step: already announced
    rig.outbox.announce_sent(pending)
    assert [e.command_id for e in rig.events() if isinstance(e, CommandSent)] == ["t1"]


def test_outbox_a_success_removes_the_row_and_a_drop_makes_it_unconfirmed() -> None:
    rig = Rig()
    done, dropped = SendReply("p1/c1", "a", command_id="r1"), SendReply("p1/c2", "b", command_id="r2")
    rig.submit(done)
    rig.submit(dropped)
    for pending in rig.tracker.take_sendable(live=True):
        assert rig.outbox.mark_sent(pending.command)
        rig.tracker.mark_sent(pending, Transport.WS, 0.0)
    rig.emit(succeeded(done))
    assert rig.store.state("r1") is None
    for outcome in rig.tracker.disconnected():
        rig.emit(outcome.event)
    assert rig.store.state("r2") is StoredState.UNCONFIRMED
    assert [c.command_id for c in rig.outbox.unconfirmed()] == ["r2"]


def test_outbox_resend_and_discard_of_unconfirmed_commands() -> None:
    rows = [
        StoredCommand("r1", CommandKind.REPLY, "p1/c1", "one", state=StoredState.SENT),
        StoredCommand("r2", CommandKind.REPLY, "p1/c2", "two", state=StoredState.UNCONFIRMED),
    ]
    rig = Rig(rows)
    rig.outbox.restore()
    assert [c.command_id for c in rig.outbox.unconfirmed()] == ["r1", "r2"]
    rig.submit(ResendCommand(command_id="r1"))
    assert [p.command.command_id for p in rig.tracker.outbox] == ["r1"]
    assert rig.store.state("r1") is StoredState.QUEUED
    rig.submit(DiscardCommand(command_id="r2"))
    assert rig.store.state("r2") is None
    assert [e.command_id for e in rig.events() if isinstance(e, CommandDiscarded)] == ["r2"]
    rig.submit(DiscardCommand(command_id="nope"))
    unknown = [e for e in rig.events() if isinstance(e, CommandFailed) and e.command_id == "nope"]
    assert [e.reason for e in unknown] == [FailureReason.INVALID]
    assert rig.outbox.unconfirmed() == []


def test_outbox_discard_takes_a_queued_command_off_the_outbox() -> None:
    rig = Rig()
    rig.submit(SendReply("p1/c1", "oops", command_id="r1"))
    rig.outbox.discard("r1")
    assert not rig.tracker.outbox
    assert rig.store.state("r1") is None


def test_outbox_restore_requeues_queued_and_idempotent_rows_once() -> None:
    rows = [
        StoredCommand("r1", CommandKind.REPLY, "p1/c1", "queued"),
        StoredCommand("t1", CommandKind.TAKE_OVER, "p1/c2", state=StoredState.SENT),
        StoredCommand("r2", CommandKind.REPLY, "p1/c3", "sent", state=StoredState.SENT),
    ]
    rig = Rig(rows)
    rig.outbox.restore()
    rig.outbox.restore()  # once per client
    assert [p.command.command_id for p in rig.tracker.outbox] == ["r1", "t1"]
    assert rig.store.state("t1") is StoredState.QUEUED
    assert rig.store.state("r2") is StoredState.UNCONFIRMED
    queued = [e for e in rig.events() if isinstance(e, CommandQueued)]
    assert [(e.command_id, e.durable) for e in queued] == [("r1", True), ("t1", True), ("r2", True)]
    failed = [e for e in rig.events() if isinstance(e, CommandFailed)]
    assert [(e.command_id, e.reason) for e in failed] == [("r2", FailureReason.UNCONFIRMED)]
    assert rig.wakes == 1


def test_outbox_settle_all_at_shutdown_keeps_the_queued_rows() -> None:
    rig = Rig()
    rig.submit(SendReply("p1/c1", "later", command_id="r1"))
    rig.outbox.settle_all("the client stopped")
    failed = [e for e in rig.events() if isinstance(e, CommandFailed)]
    assert [(e.command_id, e.reason) for e in failed] == [("r1", FailureReason.OFFLINE)]
    assert rig.store.state("r1") is StoredState.QUEUED


def test_outbox_a_failed_delete_is_retried_after_the_retry_period() -> None:
    rig = Rig(store=FlakyRemove)
    reply = SendReply("p1/c1", "a", command_id="r1")
    rig.submit(reply)
    rig.emit(succeeded(reply))
    assert rig.store.state("r1") is StoredState.QUEUED  # the delete failed: a restart would send it
    rig.outbox.retry_store(rig.clock.monotonic())  # the first retry, still failing
    rig.store.works = True  # type: ignore[attr-defined]
    rig.outbox.retry_store(rig.clock.monotonic())  # within the retry period: not tried
    assert rig.store.state("r1") is StoredState.QUEUED
    rig.clock.advance(RETRY)
    rig.outbox.retry_store(rig.clock.monotonic())
    assert rig.store.state("r1") is None


def test_outbox_a_forced_retry_deletes_at_once() -> None:
    rig = Rig(store=FlakyRemove)
    reply = SendReply("p1/c1", "a", command_id="r1")
    rig.submit(reply)
    rig.emit(succeeded(reply))
    rig.outbox.retry_store(rig.clock.monotonic())
    rig.store.works = True  # type: ignore[attr-defined]
    rig.outbox.retry_store(rig.clock.monotonic(), force=True)  # the shutdown's last try
    assert rig.store.state("r1") is None


def test_outbox_resend_after_the_client_stopped_keeps_the_command_unconfirmed_and_its_row() -> None:
    # The agent presses Resend while the client is stopped (signed out, quitting): the reply is
    # not sent, and it must not be lost either: it stays unconfirmed, in memory and on disk.
    rows = [StoredCommand("r1", CommandKind.REPLY, "p1/c1", "one", state=StoredState.UNCONFIRMED)]
    rig = Rig(rows)
    rig.outbox.restore()
    before = len(rig.events())
    rig.outbox.resend("r1", stopped=True)
    offline = [e for e in rig.events()[before:] if isinstance(e, CommandFailed)]
    assert [(e.command_id, e.reason) for e in offline] == [("r1", FailureReason.OFFLINE)]
    assert [c.command_id for c in rig.outbox.unconfirmed()] == ["r1"]
    assert rig.store.state("r1") is StoredState.UNCONFIRMED
