"""AsyncioScheduler: the core's Scheduler port on an asyncio loop (for front ends without Qt)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class AsyncioScheduler:
    """A :class:`~tray_agent.core.ports.Scheduler` on ``loop.call_later`` (the running loop by default).

    Args:
        loop: the loop to schedule on; None uses the running loop at each call.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        """Call ``callback`` once after ``delay`` seconds (0: the next loop turn)."""
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        return loop.call_later(max(0.0, delay), callback)
