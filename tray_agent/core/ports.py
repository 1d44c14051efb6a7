"""Protocols the core needs from the outside: command sink, notifier, sound, secrets, clock, timers, outbox.

Implementations live in net/ (CommandSink) and platform/ (the rest), each platform port with a
Null implementation so the app keeps running where the OS service is missing. Tests use fakes.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from tray_agent.core.commands import Command, Release, SendReply, TakeOver
from tray_agent.core.effects import Effect, SoundName, Toast, ToastAction
from tray_agent.core.events import CommandKind


class Clock(Protocol):
    """Time source; injected so that tests control time."""

    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds, for timeouts and rate limits."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:  # noqa: D102
        return datetime.now(UTC)

    def monotonic(self) -> float:  # noqa: D102
        return time.monotonic()


class TimerHandle(Protocol):
    """A pending call of a :class:`Scheduler`."""

    def cancel(self) -> None:
        """Do not make the call (no-op once it ran or was cancelled)."""
        ...


class Scheduler(Protocol):
    """One-shot timers on the event loop (Qt in the app, asyncio in ``listen``, fakes in tests).

    The core never sleeps: whatever needs a deadline (the alert policy's next tick) asks for one
    call at that moment and re-arms after it.
    """

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Call ``callback`` once on the loop after ``delay`` seconds (0: the next loop turn)."""
        ...


class CommandSink(Protocol):
    """Where user intents go (the network client)."""

    def submit(self, command: Command) -> None:
        """Queue a command; its outcome arrives later as events. Never raises."""
        ...


class EffectSink(Protocol):
    """Where the dispatcher hands a dispatch's alert effects (the alert engine)."""

    def run(self, effects: Iterable[Effect]) -> None:
        """Carry out Alert / Notify / Withdraw / PlaySound effects. Never raises."""
        ...


ToastCallback = Callable[[str, ToastAction | None], None]
"""Called with (toast key, button) when a toast is clicked (button None) or a button pressed."""


class Notifier(Protocol):
    """Native notifications."""

    @property
    def available(self) -> bool:
        """False when toasts cannot be shown at all (Null notifier); the UI says so."""
        ...

    def set_callback(self, callback: ToastCallback) -> None:
        """Register the single click/button handler."""
        ...

    def show(self, toast: Toast) -> Awaitable[None]:
        """Show or replace (same key) a toast. Never raises; failures are logged."""
        ...

    def withdraw(self, key: str) -> Awaitable[None]:
        """Remove a toast if it is still shown. Never raises."""
        ...


class Sound(Protocol):
    """Alert sounds."""

    @property
    def available(self) -> bool:
        """False when no playback works here (no player, no device)."""
        ...

    def play(self, sound: SoundName, volume: float = 1.0) -> None:
        """Start playing, without blocking. Never raises."""
        ...


class SecretStore(Protocol):
    """OS keyring access (blocking calls; run them in an executor from async code)."""

    @property
    def persistent(self) -> bool:
        """False when secrets live in memory only for this run (no keyring)."""
        ...

    def get(self, key: str) -> str | None:
        """The secret, or None."""
        ...

    def set(self, key: str, value: str) -> None:
        """Store a secret. Never raises; falls back to memory with a logged warning."""
        ...

    def delete(self, key: str) -> None:
        """Remove a secret if present. Never raises."""
        ...


# ---------------------------------------------------------------------------------------------
# The durable outbox (implemented by platform.storage.LocalStore; net reaches it only through this)
# ---------------------------------------------------------------------------------------------


class StoredState(enum.StrEnum):
    """Where a persisted command stands."""

    QUEUED = "queued"  # never written to the wire: safe to send at the next start
    SENT = "sent"  # written (or its HTTP call started), no answer yet
    UNCONFIRMED = "unconfirmed"  # sent, then a drop or crash: only the agent may resend it


@dataclass(frozen=True, slots=True)
class StoredCommand:
    """One persisted command of the agent (reply, take-over, release).

    Attributes:
        command_id: the command's id (kept across restarts, so outcomes still match).
        kind: reply, take_over or release.
        conversation: the conversation key.
        text: the reply text ("" for other kinds).
        state: queued, sent or unconfirmed.
        queued_at: wall-clock time it was first queued (UTC).
    """

    command_id: str
    kind: CommandKind
    conversation: str
    text: str = ""
    state: StoredState = StoredState.QUEUED
    queued_at: datetime | None = None

    @classmethod
    def from_command(cls, command: Command, queued_at: datetime | None = None) -> StoredCommand | None:
        """The record of ``command``, or None for kinds that are never persisted."""
        if isinstance(command, SendReply):
            text = command.text
        elif isinstance(command, TakeOver | Release):
            text = ""
        else:
            return None  # refreshes, history loads and pings are re-derived, never replayed
        return cls(command.command_id, command.kind, command.conversation, text, queued_at=queued_at)

    def to_command(self) -> Command | None:
        """The command again (same id), or None for a record of an unknown kind."""
        if self.kind is CommandKind.REPLY:
            return SendReply(self.conversation, self.text, command_id=self.command_id)
        if self.kind is CommandKind.TAKE_OVER:
            return TakeOver(self.conversation, command_id=self.command_id)
        if self.kind is CommandKind.RELEASE:
            return Release(self.conversation, command_id=self.command_id)
        return None


class OutboxWriteError(Exception):
    """The outbox could not record a command's state change (read-only or full disk, closed store).

    Raised by :meth:`OutboxStore.mark_sent` and :meth:`OutboxStore.remove`. The row on disk still
    says what it said before, so the client must not put the command on the wire after a failed
    ``mark_sent`` (the next start would send it again: a reply delivered twice), and must treat a
    failed ``remove`` as a row that will come back at the next start.
    """


class OutboxStore(Protocol):
    """The durable outbox the network client writes through.

    Synchronous on purpose: each call is one small SQLite transaction in WAL mode (well under a
    millisecond to a few ms with the fsync), made at human pace (one per reply or take-over),
    and the client must know the row is on disk *before* it emits CommandQueued -- an await
    there would let the loop show "queued" for a reply a crash could still lose, and would make
    :meth:`~CommandSink.submit` asynchronous for every caller.

    Failures: a failed :meth:`add` returns False (the client keeps the command in memory only and
    says it is not durable); a failed :meth:`mark_sent` or :meth:`remove` raises
    :class:`OutboxWriteError` (the row on disk was not changed); :meth:`pending` and
    :meth:`mark_unconfirmed` never raise (a row left at SENT is treated as unconfirmed anyway).
    Every failure is logged and reported through :attr:`problem`.
    The client answers: a command whose ``add`` failed is kept in memory only (sent, but it would
    not survive a crash); one whose ``mark_sent`` failed is *not* sent (its row still says QUEUED)
    and waits queued until the store records it; a failed ``remove`` is retried.
    """

    @property
    def problem(self) -> str:
        """A plain-words description of the last storage problem, "" when all is well."""
        ...

    def pending(self) -> list[StoredCommand]:
        """Every persisted command, oldest first."""
        ...

    def add(self, command: StoredCommand) -> bool:
        """Persist a new QUEUED command (or reset an existing id to QUEUED); True once on disk."""
        ...

    def mark_sent(self, command_id: str) -> None:
        """The command is about to be written to the wire (recorded *before* the write).

        Raises:
            OutboxWriteError: the state change was not recorded; do not send the command.
        """
        ...

    def mark_unconfirmed(self, command_id: str) -> None:
        """The command was sent but its answer never came (drop, crash, stop)."""
        ...

    def remove(self, command_id: str) -> None:
        """The command ended (confirmed, failed, discarded): forget it.

        Raises:
            OutboxWriteError: the row is still there and will be read back at the next start.
        """
        ...


class DraftStore(Protocol):
    """Unsent reply drafts by conversation (platform.storage.LocalStore; injected into the UI by app.py)."""

    def draft(self, conversation: str) -> str:
        """The saved draft of ``conversation`` ("" if none)."""
        ...

    def set_draft(self, conversation: str, text: str) -> None:
        """Save a draft; a blank text deletes it. Never raises."""
        ...

    def drafts(self) -> dict[str, str]:
        """Every saved draft by conversation."""
        ...
