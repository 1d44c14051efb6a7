"""Sleep/resume detection from two clocks: the wall clock runs on while the machine sleeps.

On Linux and macOS the monotonic clock stops during suspend while the wall clock keeps the real
time, so after a resume the wall clock has moved further than the monotonic one. The same test
catches a large manual clock change. Either way the connection is probably dead or lying (the
server dropped us long ago), so the app reconnects at once instead of waiting for the heartbeat
or the backoff.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_THRESHOLD = 15.0  # seconds of difference between the clocks that count as a jump


@dataclass(slots=True)
class ResumeDetector:
    """Feed it ``(wall, monotonic)`` samples; it says when the clocks drifted apart.

    Attributes:
        threshold: how many seconds the wall clock must gain (or lose) on the monotonic clock
            between two samples to count as a resume or clock jump.
    """

    threshold: float = DEFAULT_THRESHOLD
    _last: tuple[float, float] | None = None

    def observe(self, wall: float, monotonic: float) -> float | None:
        """Record a sample; return the size of the jump in seconds, or None when there was none."""
        last, self._last = self._last, (wall, monotonic)
        if last is None:
            return None
        drift = (wall - last[0]) - (monotonic - last[1])
        return drift if abs(drift) >= self.threshold else None
