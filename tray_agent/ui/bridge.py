"""StoreBridge: turns Store changes into fine-grained, coalesced Qt signals for the widgets."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal

from tray_agent.core.state import State, Store, changed_conversations

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_MS = 16
"""At most one emission per signal per this many milliseconds (PERFORMANCE-NOTES.md §3)."""


class StoreBridge(QObject):
    """Subscribes to the :class:`~tray_agent.core.state.Store` and emits what changed.

    Changes are coalesced with ONE single-shot, leading-edge timer: the first change after a
    quiet period is flushed on the next loop turn; changes within 16 ms of a flush wait until
    16 ms after it. While nothing changes no timer runs. A flush compares the state at the
    previous flush with the current one, so each signal fires at most once per flush and only
    when its part of the state really changed. Widgets read snapshots from :attr:`state`.

    Args:
        store: the store to follow.
        parent: the Qt parent.
        monotonic: clock for the leading-edge decision (tests inject one).

    Signals:
        connection_changed(ConnectionInfo): the connection state, detail or last sync changed.
        waiting_changed(frozenset[str]): keys of customers who started or stopped waiting, or
            whose waiting entry changed (name, assignment ...). The list itself is
            ``state.waiting_list()`` (sorted on demand, cached per state): a flush never sorts it.
        badge_changed(int): the number of customers waiting for a human, nobody has them.
        unread_changed(int): the total of unread customer messages.
        conversations_changed(frozenset[str]): keys of conversations added, changed or removed.
        outbound_changed(Mapping[str, OutboundCommand]): my tracked commands changed.
        focus_changed(object): the focused conversation key, or None.
        flushed(State): after every flush that emitted anything, with the state it reflects.
    """

    connection_changed = Signal(object)
    waiting_changed = Signal(frozenset)
    badge_changed = Signal(int)
    unread_changed = Signal(int)
    conversations_changed = Signal(frozenset)
    outbound_changed = Signal(object)
    focus_changed = Signal(object)
    flushed = Signal(object)

    def __init__(
        self,
        store: Store,
        parent: QObject | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(parent)
        self._store = store
        self._monotonic = monotonic
        self._base: State = store.state  # the state the last flush reflected
        self._last_flush = float("-inf")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer_timeout)
        self._unsubscribe: Callable[[], None] | None = store.subscribe(self._on_store_changed)

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> State:
        """The current state snapshot (never cache server data from it)."""
        return self._store.state

    @property
    def flushed_state(self) -> State:
        """The state the last flush reflected: what the signals so far have told."""
        return self._base

    @property
    def flush_pending(self) -> bool:
        """True while a flush is scheduled (False when idle: no timer runs)."""
        return self._timer.isActive()

    @property
    def pending_delay_ms(self) -> int | None:
        """The delay the pending flush was scheduled with, or None when idle."""
        return self._timer.interval() if self._timer.isActive() else None

    def close(self) -> None:
        """Stop following the store (at shutdown)."""
        self._timer.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def flush_now(self) -> None:
        """Emit whatever changed since the last flush at once (e.g. before showing a window)."""
        self._timer.stop()
        self._flush()

    # ------------------------------------------------------------------ internals

    def _on_store_changed(self, old: State, new: State) -> None:
        if self._timer.isActive():
            return
        since = (self._monotonic() - self._last_flush) * 1000.0
        delay = 0 if since >= FLUSH_INTERVAL_MS else max(1, int(FLUSH_INTERVAL_MS - since))
        self._timer.start(delay)

    def _on_timer_timeout(self) -> None:
        self._flush()

    def _flush(self) -> None:
        old, new = self._base, self._store.state
        self._last_flush = self._monotonic()
        if old is new:
            return
        self._base = new
        emitted = False
        try:
            if old.connection != new.connection:
                self.connection_changed.emit(new.connection)
                emitted = True
            changed = changed_conversations(old.conversations, new.conversations)
            if changed:
                self.conversations_changed.emit(changed)
                emitted = True
            waiting = changed & new.waiting_keys
            if old.waiting_keys is not new.waiting_keys:  # the reducer keeps the set when unchanged
                waiting |= old.waiting_keys ^ new.waiting_keys
            if waiting:
                self.waiting_changed.emit(waiting)
                emitted = True
            if old.waiting_count != new.waiting_count:
                self.badge_changed.emit(new.waiting_count)
                emitted = True
            if old.unread_total != new.unread_total:
                self.unread_changed.emit(new.unread_total)
                emitted = True
            if old.outbound is not new.outbound:
                self.outbound_changed.emit(new.outbound)
                emitted = True
            if old.focused != new.focused:
                self.focus_changed.emit(new.focused)
                emitted = True
            if emitted:
                self.flushed.emit(new)
        except Exception:  # a slot bug must not stop later flushes
            logger.exception("StoreBridge flush failed")
