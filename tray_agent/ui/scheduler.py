"""QtScheduler: the core's Scheduler port on Qt single-shot timers (the app's event loop)."""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer

MAX_TIMER_MS = 2_147_483_647
"""QTimer takes an int32 of milliseconds."""


class QtTimerHandle:
    """One pending call: a single-shot QTimer, deleted once it fired or was cancelled."""

    def __init__(self, timer: QTimer) -> None:
        self._timer: QTimer | None = timer

    @property
    def active(self) -> bool:
        """The call has not happened and was not cancelled."""
        return self._timer is not None and self._timer.isActive()

    @property
    def interval_ms(self) -> int:
        """The delay the call was armed with."""
        return self._timer.interval() if self._timer is not None else 0

    def cancel(self) -> None:
        """Do not make the call (no-op once it ran or was cancelled)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop()
            timer.deleteLater()

    def _fire(self, callback: Callable[[], None]) -> None:
        timer, self._timer = self._timer, None
        if timer is None:
            return
        timer.deleteLater()
        callback()


class QtScheduler:
    """A :class:`~tray_agent.core.ports.Scheduler` on QTimers owned by ``parent``.

    Args:
        parent: owns the timers (they die with it).
    """

    def __init__(self, parent: QObject | None = None) -> None:
        self._parent = parent

    def call_later(self, delay: float, callback: Callable[[], None]) -> QtTimerHandle:
        """Call ``callback`` once after ``delay`` seconds (0: the next loop turn)."""
        timer = QTimer(self._parent)
        timer.setSingleShot(True)
        handle = QtTimerHandle(timer)
        timer.timeout.connect(lambda: handle._fire(callback))
        timer.start(min(MAX_TIMER_MS, max(0, math.ceil(delay * 1000.0))))
        return handle
