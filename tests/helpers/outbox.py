"""A fake OutboxStore that can fail on demand, as a read-only or full disk makes the real one fail."""

from __future__ import annotations

from dataclasses import replace

from tray_agent.core.ports import OutboxWriteError, StoredCommand, StoredState


class FailingOutbox:
    """An in-memory OutboxStore (core.ports) whose writes fail while a test says so.

    Follows the port's failure contract like platform.storage.LocalStore does (the contract test
    in tests/unit/platform/test_storage.py runs both): a failed ``add`` returns False and keeps
    nothing, a failed ``mark_sent`` / ``remove`` raises :class:`OutboxWriteError` and leaves the
    row as it was, ``mark_unconfirmed`` and ``pending`` never raise.

    Attributes:
        rows: the "disk", by command id (insertion order = queue order).
        journal: every call as ``(operation, command_id, succeeded)``.
        fail_add, fail_mark_sent, fail_remove, fail_mark_unconfirmed: fail that write from now on.
    """

    def __init__(self, rows: list[StoredCommand] | None = None) -> None:
        self.rows: dict[str, StoredCommand] = {r.command_id: r for r in rows or []}
        self.journal: list[tuple[str, str, bool]] = []
        self.problem = ""
        self.fail_add = False
        self.fail_mark_sent = False
        self.fail_remove = False
        self.fail_mark_unconfirmed = False

    def fail_writes(self, failing: bool = True) -> None:
        """Every write fails (``failing``) or succeeds from now on: the disk filled up or was freed."""
        self.fail_add = self.fail_mark_sent = self.fail_remove = self.fail_mark_unconfirmed = failing

    def _record(self, operation: str, command_id: str, failing: bool) -> bool:
        self.journal.append((operation, command_id, not failing))
        if failing:
            self.problem = f"The local store could not save data ({operation} failed: disk full)."
        return not failing

    def pending(self) -> list[StoredCommand]:
        return list(self.rows.values())

    def add(self, command: StoredCommand) -> bool:
        if not self._record("add", command.command_id, self.fail_add):
            return False
        self.rows[command.command_id] = replace(command, state=StoredState.QUEUED)
        return True

    def mark_sent(self, command_id: str) -> None:
        if not self._record("mark_sent", command_id, self.fail_mark_sent):
            raise OutboxWriteError(f"the outbox could not record the sending of {command_id}: disk full")
        if command_id in self.rows:
            self.rows[command_id] = replace(self.rows[command_id], state=StoredState.SENT)

    def mark_unconfirmed(self, command_id: str) -> None:
        if (
            self._record("mark_unconfirmed", command_id, self.fail_mark_unconfirmed)
            and command_id in self.rows
        ):
            self.rows[command_id] = replace(self.rows[command_id], state=StoredState.UNCONFIRMED)

    def remove(self, command_id: str) -> None:
        if not self._record("remove", command_id, self.fail_remove):
            raise OutboxWriteError(f"the outbox could not record the end of {command_id}: disk full")
        self.rows.pop(command_id, None)

    def state(self, command_id: str) -> StoredState | None:
        """The stored state of ``command_id`` (None when no row)."""
        row = self.rows.get(command_id)
        return row.state if row else None
