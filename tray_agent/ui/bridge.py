"""StoreBridge: turns Store changes into fine-grained, coalesced Qt signals for the widgets."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from PySide6.QtCore import QObject, QTimer, Signal

from tray_agent.core.state import Refusal, State, Store, changed_conversations

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_MS = 16
"""At most one emission per signal per this many milliseconds (PERFORMANCE-NOTES.md §3)."""

MAX_LIST_INTERVAL_MS = 64
"""Longest wait of the list signals (``conversations_changed``, ``waiting_changed``) under
sustained load: smooth to the eye, a quarter of the repaints of the inbox (issue 16). 128 ms
gave no more throughput within the noise of benchmark 1 and longer UI gaps in a 10k resync."""

BUSY_FLUSHES = 3
"""Consecutive busy flushes (they found list changes while the store kept changing) before the
list interval is stretched: about 50 ms of sustained load, so one change is never delayed."""

QUIET_S = 2 * FLUSH_INTERVAL_MS / 1000.0
"""A gap without store changes this long (seconds) ends the load: back to the base interval."""


class FlushPacer:
    """How long the list part of the bridge's flushes waits: 16 ms, stretched under load.

    Pure (no Qt, no clock of its own): times are monotonic seconds passed in, so the adaptation
    is tested with a fake clock. The interval doubles (16, 32, 64 ms) after
    :data:`BUSY_FLUSHES` busy flushes in a row, then after each further busy one, and returns to
    16 ms as soon as the load stops: a flush that finds no change in the last 16 ms, or a store
    change after a quiet gap of :data:`QUIET_S`.
    """

    __slots__ = ("_busy", "_last_change", "interval")

    def __init__(self) -> None:
        self.interval = FLUSH_INTERVAL_MS / 1000.0
        """The current wait between list flushes (seconds)."""
        self._busy = 0
        self._last_change = float("-inf")

    @property
    def stretched(self) -> bool:
        """The interval is longer than the base one (the store is under sustained load)."""
        return self.interval > FLUSH_INTERVAL_MS / 1000.0

    def changed(self, now: float) -> None:
        """The store changed at ``now``."""
        if now - self._last_change >= QUIET_S:
            self._reset()
        self._last_change = now

    def quiet(self, now: float) -> bool:
        """No store change in the last 16 ms: the load (if any) has stopped."""
        return now - self._last_change >= FLUSH_INTERVAL_MS / 1000.0

    def flushed(self, now: float, found: bool) -> None:
        """A list flush ran at ``now``; ``found``: it had list changes to tell."""
        if not found or self.quiet(now):
            self._reset()  # nothing new, or nothing new lately: the load has stopped
            return
        self._busy += 1
        if self._busy >= BUSY_FLUSHES:
            self.interval = min(self.interval * 2.0, MAX_LIST_INTERVAL_MS / 1000.0)

    def _reset(self) -> None:
        self._busy = 0
        self.interval = FLUSH_INTERVAL_MS / 1000.0


def _refusals_changed(old: Mapping[str, Refusal], new: Mapping[str, Refusal]) -> frozenset[str]:
    """Keys refused, no longer refused or refused otherwise (small bounded maps)."""
    return frozenset(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


class StoreBridge(QObject):
    """Subscribes to the :class:`~tray_agent.core.state.Store` and emits what changed.

    Changes are coalesced with ONE single-shot, leading-edge timer: the first change after a
    quiet period is flushed on the next loop turn; changes within 16 ms of a flush wait until
    16 ms after it. While nothing changes no timer runs. A flush compares the state at the
    previous flush with the current one, so each signal fires at most once per flush and only
    when its part of the state really changed. Widgets read snapshots from :attr:`state`.

    Under sustained load the list signals (``conversations_changed``, ``waiting_changed`` and
    then ``flushed``), whose slots relayout and repaint the shown inbox, wait longer: up to
    :data:`MAX_LIST_INTERVAL_MS` (:class:`FlushPacer`), back to 16 ms as soon as the load stops.
    The small signals (connection, badge, unread, outbound, focus: the tray's icon and tooltip)
    keep the 16 ms cadence. Alerts never pass here (dispatcher -> alert engine).

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
        conversations_changed(frozenset[str]): keys of conversations added, changed or removed,
            and of unknown ones whose history the server refused, failed to load or stopped
            refusing (``state.refused``): no list shows those, a chat window opened on one does.
        outbound_changed(Mapping[str, OutboundCommand]): my tracked commands changed.
        focus_changed(object): the focused conversation key, or None.
        flushed(State): after every flush of the list signals that emitted anything, with the
            state it reflects (every signal above is then up to date with it).
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
        self._base: State = store.state  # the state the last list flush reflected
        self._told: State = store.state  # the state the small signals last reflected
        self._last_flush = float("-inf")
        self._last_list = float("-inf")
        self._pacer = FlushPacer()
        self._due = 0.0  # when the pending timer is meant to fire (monotonic seconds)
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
        """The state the last full flush reflected: what all signals so far have told.

        Under load the small signals (badge, unread ...) may already tell a newer state.
        """
        return self._base

    @property
    def list_interval_ms(self) -> float:
        """The current wait of the list signals (16 ms unless the store is under sustained load)."""
        return self._pacer.interval * 1000.0

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
        self._flush(force=True)

    # ------------------------------------------------------------------ internals

    def _on_store_changed(self, old: State, new: State) -> None:
        now = self._monotonic()
        self._pacer.changed(now)
        due = max(now, self._last_flush + FLUSH_INTERVAL_MS / 1000.0)
        if self._timer.isActive() and self._due <= due:
            return  # the pending flush comes soon enough (the small signals' cadence)
        self._start(due, now)

    def _start(self, due: float, now: float) -> None:
        # Leading edge: the first change after a quiet period is flushed on the next loop turn.
        delay = 0 if due <= now else max(1, int((due - now) * 1000.0))
        self._due = due
        self._timer.start(delay)

    def _on_timer_timeout(self) -> None:
        self._flush()

    def _flush(self, *, force: bool = False) -> None:
        new = self._store.state
        now = self._last_flush = self._monotonic()
        list_due = self._last_list + self._pacer.interval
        # A timer may fire a little early: a flush within a few ms of the due time counts. A
        # quiet store (the load just stopped) gets its list at once, not at the stretched time.
        full = force or not self._pacer.stretched or now >= list_due - 0.004 or self._pacer.quiet(now)
        if self._told is new and (self._base is new or not full):
            if self._base is not new:
                self._start(min(list_due, now + FLUSH_INTERVAL_MS / 1000.0), now)
            elif full:
                self._last_list = now
                self._pacer.flushed(now, found=False)
            return
        told, old = self._told, self._base
        self._told = new
        emitted = False
        try:
            if told.connection != new.connection:
                self.connection_changed.emit(new.connection)
                emitted = True
            if full:
                self._base = new
                self._last_list = now
                changed = changed_conversations(old.conversations, new.conversations)
                if old.refused is not new.refused:  # a chat window opened on the key shows it
                    changed |= _refusals_changed(old.refused, new.refused)
                self._pacer.flushed(now, found=bool(changed))
                if changed:
                    self.conversations_changed.emit(changed)
                    emitted = True
                waiting = changed & new.waiting_keys
                if old.waiting_keys is not new.waiting_keys:  # the reducer keeps the set when unchanged
                    waiting |= old.waiting_keys ^ new.waiting_keys
                if waiting:
                    self.waiting_changed.emit(waiting)
                    emitted = True
            if told.waiting_count != new.waiting_count:
                self.badge_changed.emit(new.waiting_count)
                emitted = True
            if told.unread_total != new.unread_total:
                self.unread_changed.emit(new.unread_total)
                emitted = True
            if told.outbound is not new.outbound:
                self.outbound_changed.emit(new.outbound)
                emitted = True
            if told.focused != new.focused:
                self.focus_changed.emit(new.focused)
                emitted = True
            if full:
                if emitted:
                    self.flushed.emit(new)
            else:
                # The list signals follow at their (stretched) time, or sooner if the load stops.
                self._start(min(list_due, now + FLUSH_INTERVAL_MS / 1000.0), now)
        except Exception:  # a slot bug must not stop later flushes
            logger.exception("StoreBridge flush failed")
