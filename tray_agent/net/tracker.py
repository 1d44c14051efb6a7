"""The outbox and the outstanding commands: order, correlation of answers, timeouts, drops.

Pure bookkeeping (no I/O; time is passed in): the client sends what
:meth:`CommandTracker.take_sendable` returns and feeds the answers back; every method returns the
outcomes it decided, in order.

Decisions:

* **In flight at a disconnect.** A REPLY, RELEASE or PING written to the socket but not confirmed
  becomes ``CommandFailed(UNCONFIRMED)`` and is never resent (no double message to a customer;
  a second release would fail with "not assigned"). TAKE_OVER, RESOLVE, HAND_BACK, REFRESH and
  HISTORY are idempotent (re-assigning to yourself succeeds on both servers), so they go back to
  the front of the outbox and are sent again after the next resync.
* **Ordering.** At most one command per (kind, conversation) is outstanding; later ones wait in
  the outbox, and so does anything behind them for the same conversation. Dashboard answers carry
  no correlation (G5), so an answer is matched to the oldest outstanding command of its kind.
"""

from __future__ import annotations

import contextlib
import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from tray_agent.core.commands import Command, SendReply, failed, succeeded
from tray_agent.core.events import (
    CommandFailed,
    CommandKind,
    CommandQueued,
    CommandSucceeded,
    Event,
    FailureReason,
    ServerAcked,
    ServerRejected,
    WaitingListPage,
)


class Transport(enum.StrEnum):
    """Where a command went."""

    NONE = ""
    WS = "ws"
    HTTP = "http"


RETRY_AFTER_DROP = frozenset(
    {
        CommandKind.TAKE_OVER,
        CommandKind.RESOLVE,
        CommandKind.HAND_BACK,
        CommandKind.REFRESH,
        CommandKind.HISTORY,
    }
)
"""Idempotent kinds: sent again after a drop, or after a restart that left them unconfirmed."""


@dataclass(eq=False, slots=True)
class PendingCommand:
    """One command between submit and outcome.

    Attributes:
        command: the command.
        internal: the client's own (resync) command: no Command* events are emitted for it.
        transport: where it went once sent.
        deadline: monotonic time after which it fails with TIMEOUT (WebSocket commands).
        page: the WaitingListPage its answer carried (refresh commands).
        hold_until: monotonic time before which it may not go out (the store could not record
            that it is sent); it keeps its place and holds its conversation meanwhile.
        step: the next step of a multi-step command (:class:`~tray_agent.core.protocol.base.Plan`).
        changed_live: for a list page asked over the socket, the conversations live events
            changed since it was sent (:class:`~tray_agent.net.resync.LiveChanges`), until its
            answer or outcome.
    """

    command: Command
    internal: bool = False
    transport: Transport = Transport.NONE
    deadline: float | None = None
    page: WaitingListPage | None = None
    hold_until: float = 0.0
    step: int = 0
    changed_live: set[str] | None = None

    @property
    def kind(self) -> CommandKind:
        """The command's kind."""
        return self.command.kind

    @property
    def conversation(self) -> str:
        """The command's conversation key ("" if none)."""
        return self.command.conversation_key


@dataclass(frozen=True, slots=True)
class Outcome:
    """A command's end: the pending entry and its CommandSucceeded / CommandFailed."""

    pending: PendingCommand
    event: CommandSucceeded | CommandFailed

    @property
    def ok(self) -> bool:
        """True for a success."""
        return isinstance(self.event, CommandSucceeded)


class CommandTracker:
    """The outbox and the outstanding commands, with correlation and timeouts.

    Pure bookkeeping: the client sends what :meth:`take_sendable` returns and feeds answers
    back; every method returns the outcomes it decided, in order.

    Args:
        command_timeout: seconds a sent WebSocket command may wait for its answer.
    """

    def __init__(self, command_timeout: float) -> None:
        self.command_timeout = command_timeout
        self.outbox: deque[PendingCommand] = deque()
        self.outstanding: list[PendingCommand] = []

    def enqueue(self, command: Command, *, internal: bool = False, front: bool = False) -> PendingCommand:
        """Put a command in the outbox (internal resync steps go to the front)."""
        pending = PendingCommand(command, internal=internal)
        if front:
            self.outbox.appendleft(pending)
        else:
            self.outbox.append(pending)
        return pending

    def take_sendable(self, *, live: bool, now: float = 0.0) -> list[PendingCommand]:
        """Remove and return the commands that may go out now, in order.

        Args:
            live: the connection is resynced; otherwise only internal commands may go.
            now: monotonic time, for commands held until later (``hold_until``).

        A command waits while another of the same (kind, conversation) is outstanding, and so
        does every later command of the same conversation (per-conversation order).
        """
        busy = {(p.kind, p.conversation) for p in self.outstanding}
        held: set[str] = set()
        ready: list[PendingCommand] = []
        keep: deque[PendingCommand] = deque()
        for pending in self.outbox:
            if pending.hold_until and pending.hold_until <= now:
                pending.hold_until = 0.0
            key = (pending.kind, pending.conversation)
            blocked = (not live and not pending.internal) or key in busy or pending.hold_until > now
            blocked = blocked or (bool(pending.conversation) and pending.conversation in held)
            if blocked:
                if pending.conversation:
                    held.add(pending.conversation)
                keep.append(pending)
                continue
            busy.add(key)
            ready.append(pending)
        self.outbox = keep
        return ready

    def mark_sent(self, pending: PendingCommand, transport: Transport, now: float) -> None:
        """Record that ``pending`` was written (WebSocket) or its HTTP call started."""
        pending.transport = transport
        pending.deadline = now + self.command_timeout if transport is Transport.WS else None
        self.outstanding.append(pending)

    def put_back(self, pendings: Sequence[PendingCommand]) -> None:
        """Return commands taken by :meth:`take_sendable` but not sent, in order, to the front."""
        for pending in reversed(pendings):
            pending.transport = Transport.NONE
            pending.deadline = None
            self.outbox.appendleft(pending)

    def unsend(self, pending: PendingCommand) -> None:
        """Put back a command that could not be written at all (front of the outbox)."""
        with contextlib.suppress(ValueError):
            self.outstanding.remove(pending)
        pending.transport = Transport.NONE
        pending.deadline = None
        self.outbox.appendleft(pending)

    def oldest(self, kind: CommandKind, conversation: str = "") -> PendingCommand | None:
        """The oldest outstanding WebSocket command of ``kind`` (and conversation, if given)."""
        for pending in self.outstanding:
            if pending.transport is not Transport.WS or pending.kind is not kind:
                continue
            if conversation and pending.conversation and pending.conversation != conversation:
                continue
            return pending
        return None

    def _finish(self, pending: PendingCommand, event: CommandSucceeded | CommandFailed) -> Outcome:
        with contextlib.suppress(ValueError):
            self.outstanding.remove(pending)
        return Outcome(pending, event)

    def acked(self, ack: ServerAcked) -> Outcome | None:
        """Match a success frame to the oldest outstanding command of its kind (+ conversation)."""
        pending = self.oldest(ack.kind, ack.conversation)
        if pending is None:
            return None
        return self._finish(pending, succeeded(pending.command, ack.message_id))

    def rejected(self, rejection: ServerRejected) -> Outcome | None:
        """Match an error frame to the oldest outstanding WebSocket command it can belong to."""
        kinds = set(rejection.kinds)
        for pending in self.outstanding:
            if pending.transport is Transport.WS and (not kinds or pending.kind in kinds):
                text = rejection.text or "the server refused the command"
                return self._finish(pending, failed(pending.command, rejection.reason, text))
        return None

    def answered(self, pending: PendingCommand, events: Sequence[Event], status: int) -> Outcome:
        """The outcome of an HTTP command from its parsed answer (synthesised if absent)."""
        command_id = pending.command.command_id
        for event in events:
            if isinstance(event, CommandSucceeded | CommandFailed) and event.command_id == command_id:
                return self._finish(pending, event)
        if 200 <= status < 300:
            return self._finish(pending, succeeded(pending.command))
        return self._finish(pending, failed(pending.command, FailureReason.SERVER_ERROR, f"HTTP {status}"))

    def fail(self, pending: PendingCommand, reason: FailureReason, text: str) -> Outcome:
        """End ``pending`` (outstanding or not) with a failure."""
        with contextlib.suppress(ValueError):
            self.outbox.remove(pending)
        return self._finish(pending, failed(pending.command, reason, text))

    def expire(self, now: float) -> list[Outcome]:
        """Fail every WebSocket command whose deadline passed (TIMEOUT)."""
        due = [p for p in self.outstanding if p.deadline is not None and p.deadline <= now]
        text = f"no answer from the server within {self.command_timeout:g} s"
        return [self._finish(p, failed(p.command, FailureReason.TIMEOUT, text)) for p in due]

    def next_deadline(self) -> float | None:
        """The earliest command deadline (or end of a hold), or None."""
        deadlines = [p.deadline for p in self.outstanding if p.deadline is not None]
        deadlines += [p.hold_until for p in self.outbox if p.hold_until]
        return min(deadlines) if deadlines else None

    def disconnected(self) -> list[Outcome]:
        """The socket dropped: settle what was in flight on it (see the module docstring).

        Unconfirmed REPLY / RELEASE / PING fail with UNCONFIRMED; idempotent kinds go back to the
        front of the outbox in their original order; internal commands are dropped.
        """
        outcomes: list[Outcome] = []
        retry: list[PendingCommand] = []
        for pending in [p for p in self.outstanding if p.transport is Transport.WS or p.internal]:
            self.outstanding.remove(pending)
            if pending.internal:
                continue
            if pending.kind in RETRY_AFTER_DROP:
                pending.transport, pending.deadline, pending.page = Transport.NONE, None, None
                retry.append(pending)
                continue
            text = "sent, but the connection dropped before the server confirmed it; not resent"
            outcomes.append(Outcome(pending, failed(pending.command, FailureReason.UNCONFIRMED, text)))
        self.outbox = deque([*retry, *(p for p in self.outbox if not p.internal)])
        return outcomes

    def settle_all(self, text: str) -> list[Outcome]:
        """The client stops: queued commands fail OFFLINE, outstanding ones UNCONFIRMED."""
        outcomes = [Outcome(p, failed(p.command, FailureReason.OFFLINE, text)) for p in self.outbox]
        outcomes += [
            Outcome(p, failed(p.command, FailureReason.UNCONFIRMED, f"{text} before the server answered"))
            for p in self.outstanding
        ]
        self.outbox.clear()
        self.outstanding.clear()
        return [o for o in outcomes if not o.pending.internal]


def queued(command: Command, *, durable: bool = False) -> CommandQueued:
    """The CommandQueued event of ``command`` (``durable``: its row is in the outbox store)."""
    return CommandQueued(
        command_id=command.command_id,
        kind=command.kind,
        conversation=command.conversation_key,
        text=command.text if isinstance(command, SendReply) else "",
        durable=durable,
    )


def no_such_unconfirmed(command_id: str) -> CommandFailed:
    """The answer to a resend or discard of an id that no unconfirmed or queued command has."""
    return CommandFailed(
        command_id=command_id,
        kind=CommandKind.REPLY,
        reason=FailureReason.INVALID,
        text="no unconfirmed or queued command has this id",
    )
