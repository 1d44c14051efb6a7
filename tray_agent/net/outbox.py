"""The agent's commands from submit to outcome, and their rows in the durable outbox store.

:class:`Outbox` owns the :class:`~tray_agent.core.ports.OutboxStore` port and how it meets the
:class:`~tray_agent.net.tracker.CommandTracker`: a reply, take-over or release is written to the
store *before* CommandQueued is emitted, marked SENT *before* it goes out, and its row is deleted
once it has an outcome; commands sent but never confirmed wait for the agent's resend or discard.
Pure (no socket, no HTTP client; time comes from the clock).

Decisions:

* **The store failing** (disk full): a command whose row cannot be marked SENT is not sent (its row
  still says QUEUED; a restart would send it again): it stays queued, in order, and is tried
  again every ``store_retry`` (:meth:`Outbox.hold`; the chat shows it as "not saved" once, with
  CommandQueued ``durable`` False). Failed deletes of finished rows are retried too.
* **A failed save** keeps the command in memory only: it is sent, but would not survive a crash.
* **At shutdown** commands still queued keep their rows and go out at the next start.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from functools import partial

from tray_agent.core.commands import Command, DiscardCommand, ResendCommand, SendReply, failed
from tray_agent.core.events import (
    CommandDiscarded,
    CommandFailed,
    CommandRetried,
    CommandSent,
    CommandSucceeded,
    Event,
    FailureReason,
)
from tray_agent.core.ports import Clock, OutboxStore, StoredCommand, StoredState
from tray_agent.core.protocol.base import DialectCodec, EncodeError
from tray_agent.net.tracker import (
    RETRY_AFTER_DROP,
    CommandTracker,
    PendingCommand,
    no_such_unconfirmed,
    queued,
)

logger = logging.getLogger(__name__)


class Held:
    """A step not taken: the store could not record that the command goes out (see :meth:`Outbox.hold`)."""


HELD = Held()


class Outbox:
    """The agent's commands and their rows in the outbox store, beside the tracker's in-memory outbox.

    Args:
        tracker: the in-memory outbox and the outstanding commands (shared with the client).
        store: the durable outbox; None keeps commands in memory only.
        codec: the dialect codec (a command it cannot express fails at submit).
        clock: wall-clock stamps for new rows; monotonic time for holds.
        store_retry: seconds a held command waits before its next try, and between retries of
            failed deletes.
        emit: the client's emit: every event goes through it (and back to
            :meth:`record_outcome` for outcomes).
        wake: wakes the client's send loop (something may go out now).
    """

    def __init__(
        self,
        tracker: CommandTracker,
        store: OutboxStore | None,
        codec: DialectCodec,
        clock: Clock,
        *,
        store_retry: float,
        emit: Callable[[Event], None],
        wake: Callable[[], None],
    ) -> None:
        self.tracker = tracker
        self._store = store
        self._codec = codec
        self._clock = clock
        self._store_retry = store_retry
        self._emit = emit
        self._wake = wake
        # Commands persisted in the outbox store (by id) and those sent but never confirmed,
        # which only the agent may resend or discard.
        self._durable: dict[str, Command] = {}
        self._unconfirmed: dict[str, Command] = {}
        self._on_disk: set[str] = set()  # ids that may have a row in the outbox store
        self._unremoved: set[str] = set()  # finished commands whose row could not be deleted yet
        self._held: set[str] = set()  # commands shown as not saved because the store cannot mark them sent
        self._retry_at = 0.0
        self._restored = False
        self._closing = False  # settling at shutdown: queued commands stay in the store
        self._kept: str | None = None  # a resend refused while stopped: the command stays as it was

    # -- the agent's side ------------------------------------------------------------------------

    def submit(self, command: Command, *, stopped: bool, signed_in: bool) -> None:
        """Queue a command for the client (see :meth:`~tray_agent.net.client.Client.submit`). Never raises.

        Args:
            command: the agent's command; a resend or discard goes to :meth:`resend` / :meth:`discard`.
            stopped: the client has stopped (or is stopping): the command fails OFFLINE at once.
            signed_in: the codec knows the signed-in user: a command it cannot encode fails at once
                (before the first sign-in, that is decided when it is sent).
        """
        try:
            if isinstance(command, ResendCommand):
                self.resend(command.command_id, stopped=stopped)
                return
            if isinstance(command, DiscardCommand):
                self.discard(command.command_id)
                return
            if stopped:
                self._emit(queued(command))
                self._emit(failed(command, FailureReason.OFFLINE, "the client is stopped"))
                return
            try:
                self._codec.encode(command)
            except EncodeError as exc:
                # Before the first sign-in the codec may lack the user id / chat cache: decide
                # when the command is sent instead.
                if signed_in:
                    self._emit(queued(command))
                    self._emit(failed(command, exc.reason, exc.text))
                    return
            self._queue(command)
        except Exception:
            logger.exception("submit(%s) failed", type(command).__name__)
            with contextlib.suppress(Exception):
                self._emit(failed(command, FailureReason.INVALID, "internal error"))

    def _queue(self, command: Command) -> None:
        """Persist ``command``, say it is queued (and, for a retried reply, what it retries), queue it."""
        durable = self._persist(command)
        self._emit(queued(command, durable=durable))
        if isinstance(command, SendReply) and command.retry_of:
            self._emit(
                CommandRetried(
                    command_id=command.retry_of,
                    retried_as=command.command_id,
                    conversation=command.conversation,
                )
            )
        self.tracker.enqueue(command)
        self._wake()

    def unconfirmed(self) -> list[Command]:
        """Commands sent but never confirmed (this run or a previous one), oldest first."""
        return list(self._unconfirmed.values())

    def resend(self, command_id: str, *, stopped: bool) -> None:
        """The agent chose to send an unconfirmed command again (same id: the same bubble).

        Emits CommandQueued (and later its outcome), CommandFailed(OFFLINE) when the client has
        ``stopped`` (it stays unconfirmed), or CommandFailed(INVALID) when no unconfirmed
        command has that id.
        """
        command = self._unconfirmed.pop(command_id, None)
        if command is None:
            self._emit(no_such_unconfirmed(command_id))
            return
        if stopped:
            self._unconfirmed[command_id] = command
            self._kept = command_id  # its OFFLINE outcome must not delete it (nor its row)
            try:
                self._emit(failed(command, FailureReason.OFFLINE, "the client is stopped"))
            finally:
                self._kept = None
            return
        durable = self._persist(command)
        self._emit(queued(command, durable=durable))
        self.tracker.enqueue(command)
        self._wake()

    def discard(self, command_id: str) -> None:
        """The agent dropped an unconfirmed (or still queued) command: it is never sent.

        Emits CommandDiscarded for it, or CommandFailed(INVALID) when no such command waits.
        """
        command = self._unconfirmed.pop(command_id, None)
        if command is None:
            for pending in list(self.tracker.outbox):
                if pending.command.command_id == command_id and not pending.internal:
                    self.tracker.outbox.remove(pending)
                    command = pending.command
                    break
        if command is None:
            self._emit(no_such_unconfirmed(command_id))
            return
        self._forget(command_id)
        self._emit(
            CommandDiscarded(command_id=command_id, kind=command.kind, conversation=command.conversation_key)
        )

    def restore(self) -> None:
        """Load the store once: queued commands wait for the first resync, unconfirmed ones for the agent.

        A take-over that was sent but not confirmed is queued again (assigning to yourself is
        idempotent on both servers); a reply or release is shown as unconfirmed, never resent.
        """
        if self._restored or self._store is None:
            return
        store = self._store
        self._restored = True
        try:
            records = store.pending()
        except Exception:
            logger.exception("reading the outbox store failed")
            return
        for record in records:
            command = record.to_command()
            if command is None:
                continue
            command_id = command.command_id
            self._durable[command_id] = command
            self._on_disk.add(command_id)
            self._emit(queued(command, durable=True))  # read back from the store: it is on disk
            if record.state is StoredState.QUEUED or command.kind in RETRY_AFTER_DROP:
                if record.state is not StoredState.QUEUED:
                    self._store_write("re-queueing", command_id, partial(store.add, record))
                self.tracker.enqueue(command)
                continue
            self._unconfirmed[command_id] = command
            if record.state is not StoredState.UNCONFIRMED:
                self._store_write(
                    "marking unconfirmed", command_id, partial(store.mark_unconfirmed, command_id)
                )
            text = "sent before the app stopped, but the server never confirmed it; resend or discard it"
            self._emit(failed(command, FailureReason.UNCONFIRMED, text))
        if records:
            logger.info("outbox store: %d command(s) restored", len(records))
            self._wake()

    # -- the send loop's side --------------------------------------------------------------------

    def mark_sent(self, command: Command) -> bool:
        """Record in the store that ``command`` goes out now; False: it must not go out.

        Before the write: a crash in between makes it unconfirmed, never a silent duplicate. If
        the row cannot say SENT, it still says QUEUED, and a restart would send the command a
        second time: so it is not sent now (held, and tried again later).
        """
        if self._store is None or command.command_id not in self._on_disk:
            return True
        store = self._store
        return self._store_write(
            "marking sent", command.command_id, partial(store.mark_sent, command.command_id)
        )

    def hold(self, pending: PendingCommand, rest: Sequence[PendingCommand]) -> None:
        """The store cannot record that ``pending`` goes out: keep it queued, unsent, for a while.

        ``rest`` (the commands taken out after it) go back behind it, in order, so nothing of its
        conversation overtakes it; the others go out at the next flush. The first hold says so
        once (CommandQueued with ``durable`` False: the chat shows it is waiting, not saved).
        """
        pending.hold_until = self._clock.monotonic() + self._store_retry
        self.tracker.put_back([pending, *rest])
        self._wake()
        command = pending.command
        if not pending.internal and command.command_id not in self._held:
            self._held.add(command.command_id)
            self._emit(queued(command, durable=False))
        logger.warning(
            "%s %s not sent: the local store cannot record it (disk full?); trying again in %g s",
            type(pending.command).__name__,
            pending.command.command_id,
            self._store_retry,
        )

    def announce_sent(self, pending: PendingCommand) -> None:
        """CommandSent for the agent's own commands (internal resync/ping ones stay silent)."""
        if not pending.internal and pending.step == 0:
            command = pending.command
            self._emit(
                CommandSent(
                    command_id=command.command_id, kind=command.kind, conversation=command.conversation_key
                )
            )

    def retry_store(self, now: float, *, force: bool = False) -> None:
        """Retry the deletes that failed, at most every ``store_retry`` seconds (``force``: now)."""
        if force:
            self._retry_at = 0.0
        if self._unremoved and now >= self._retry_at:
            self._retry_at = now + self._store_retry
            for command_id in list(self._unremoved):
                if command_id not in self._durable:
                    self._remove_row(command_id)

    # -- outcomes --------------------------------------------------------------------------------

    def record_outcome(self, event: CommandSucceeded | CommandFailed) -> None:
        """Bring the store up to date with an outcome the client emits (never raises).

        UNCONFIRMED: the command waits for the agent (its row says so). OFFLINE while settling
        at shutdown: the row stays QUEUED. Any other outcome deletes the row.
        """
        command_id = event.command_id
        if command_id not in self._durable and command_id not in self._unconfirmed:
            return
        try:
            self._record_outcome(event)
        except Exception:
            logger.exception("recording the outcome of %s failed", command_id)

    def settle_all(self, text: str) -> None:
        """The client stops: emit the end of every command (queued ones keep their rows)."""
        self._closing = True
        try:
            for outcome in self.tracker.settle_all(text):
                self._emit(outcome.event)
        finally:
            self._closing = False

    def _record_outcome(self, event: CommandSucceeded | CommandFailed) -> None:
        command_id = event.command_id
        if isinstance(event, CommandFailed) and event.reason is FailureReason.UNCONFIRMED:
            command = self._durable.get(command_id) or self._unconfirmed.get(command_id)
            if command is None:
                return
            self._unconfirmed[command_id] = command
            if self._store is not None and command_id in self._on_disk:
                store = self._store
                # A failure leaves the row SENT, which a restart shows as unconfirmed too.
                self._store_write(
                    "marking unconfirmed", command_id, partial(store.mark_unconfirmed, command_id)
                )
            return
        if isinstance(event, CommandFailed) and event.reason is FailureReason.OFFLINE:
            if self._closing:
                return  # still queued at shutdown: stays in the store and goes out at the next start
            if command_id == self._kept:
                return  # a resend refused while stopped: still unconfirmed, row and all
        self._forget(command_id)

    # -- the store -------------------------------------------------------------------------------

    def _store_write(self, what: str, command_id: str, write: Callable[[], object]) -> bool:
        """One write to the outbox store; False when it raised or answered False (disk full ...)."""
        try:
            ok = write() is not False
        except Exception as exc:
            logger.warning("the outbox store failed %s %s: %s", what, command_id, exc)
            return False
        if not ok:
            logger.warning("the outbox store failed %s %s", what, command_id)
        return ok

    def _persist(self, command: Command) -> bool:
        """Write ``command`` to the outbox store; True when it is on disk."""
        if self._store is None:
            return False
        store = self._store
        record = StoredCommand.from_command(command, self._clock.now())
        if record is None:
            return False
        self._durable[command.command_id] = command
        if self._store_write("saving", command.command_id, partial(store.add, record)):
            self._on_disk.add(command.command_id)
            return True
        if command.command_id not in self._on_disk:
            logger.warning("the outbox store could not save %s; kept in memory only", command.command_id)
        return False  # this state of it is not on disk (a restored row may be, in an older state)

    def _forget(self, command_id: str) -> None:
        self._held.discard(command_id)
        self._unconfirmed.pop(command_id, None)
        self._durable.pop(command_id, None)
        self._remove_row(command_id)

    def _remove_row(self, command_id: str) -> None:
        """Delete a finished command's row; a failed delete is retried (a left QUEUED row would be sent)."""
        if self._store is None or command_id not in self._on_disk:
            return
        store = self._store
        if self._store_write("removing", command_id, partial(store.remove, command_id)):
            self._on_disk.discard(command_id)
            self._unremoved.discard(command_id)
        else:
            self._unremoved.add(command_id)
