"""Limited mode's loop: poll over REST while the WebSocket is blocked, until it is worth another try.

Some corporate proxies break WebSockets while plain HTTPS works. After failed handshakes (see
:meth:`~tray_agent.net.connection.ConnectionMachine.handshake_failed`), :class:`LimitedMode` probes
the REST API and, when it answers, stands in for the socket: it sends the outbox over REST and
runs the :class:`~tray_agent.net.polling.Poller` at the pace the connection machine sets, until
the machine wants the WebSocket tried again, polling fails for good, or the client stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from tray_agent.core.events import Event
from tray_agent.core.ports import Clock
from tray_agent.net.auth import AuthError, AuthRefused
from tray_agent.net.connection import Action, ConnectionMachine, Ended, Ending
from tray_agent.net.polling import Call, Poller, PollError

logger = logging.getLogger(__name__)


class LimitedMode:
    """The REST fallback of one client, driven by its connection machine.

    Args:
        machine: the client's connection machine (when to poll, give up, or retry the socket).
        call: one internal REST call (the client's :meth:`~tray_agent.net.rest.Rest.poll_call`).
        flush: sends what the outbox allows over REST.
        emit: the client's emit (the poller's events).
        apply: carries out the machine's immediate actions.
        clock: monotonic time for the machine.
        wake: the client's wake event (a command queued, a reconnect requested).
        stop_requested: set when the client is asked to stop: a running poll is abandoned.
        wait: the client's wait for ``wake`` or a monotonic deadline.
    """

    def __init__(
        self,
        machine: ConnectionMachine,
        call: Call,
        *,
        flush: Callable[[], None],
        emit: Callable[[Event], None],
        apply: Callable[[Sequence[Action]], None],
        clock: Clock,
        wake: asyncio.Event,
        stop_requested: asyncio.Event,
        wait: Callable[[float], Awaitable[None]],
    ) -> None:
        self._m = machine
        self._call = call
        self._flush = flush
        self._emit = emit
        self._apply = apply
        self._clock = clock
        self._wake = wake
        self._stop_requested = stop_requested
        self._wait = wait
        self._poller: Poller | None = None

    def reset(self) -> None:
        """The WebSocket works again: a later limited mode starts from a fresh baseline."""
        self._poller = None

    async def handshake_failed(self, detail: str, *, refused: bool) -> Ended:
        """A handshake failed for a reason other than the credentials: poll over REST if it answers.

        An "upgrade refused" status (a proxy that breaks WebSockets) tries REST at once; other
        failures after ``limited_after`` in a row; in limited mode every failed retry goes back
        to polling at once. Returns LIMITED when :meth:`run` should follow. Cancellation propagates.
        """
        if not self._m.handshake_failed(refused=refused):
            return Ended(Ending.FAILED, detail)
        if self._m.stopping:
            return Ended(Ending.STOPPED)
        if self._poller is None:
            self._poller = Poller(self._call)
        try:
            answers = await self._poller.probe()
        except AuthRefused as exc:
            return Ended(Ending.AUTH_REQUIRED, exc.text)
        except AuthError as exc:
            return Ended(Ending.FAILED, f"{detail}; {exc.text}")
        return self._m.probe_answered(answers=bool(answers), refused=refused, detail=detail)

    async def run(self, detail: str) -> Ended:
        """Poll over REST until the WebSocket is worth another try, or polling fails for good.

        Commands go over REST meanwhile. Returns PROBE_WS every ``ws_retry_interval`` (and on
        a requested reconnect), STOPPED, AUTH_REQUIRED, or FAILED after repeated poll errors.
        Cancellation propagates.
        """
        assert self._poller is not None
        poller = self._poller
        if not self._m.limited:
            logger.warning("WebSocket unavailable (%s); limited mode: polling over REST", detail)
        self._apply(self._m.limited_entered(detail, self._clock.monotonic()))
        try:
            while not self._m.stopping:
                self._wake.clear()
                if self._m.reconnect_pending or self._m.refused:
                    return Ended(Ending.PROBE_WS)
                self._flush()
                step = self._m.limited_tick(self._clock.monotonic())
                if isinstance(step, Ended):
                    return step
                if step is None:
                    await self._wait(self._m.limited_deadline())
                    continue
                try:
                    events = await self._unless_stopped(poller.poll())
                    if events is None:
                        break
                except AuthRefused as exc:
                    return Ended(Ending.AUTH_REQUIRED, exc.text)
                except (PollError, AuthError) as exc:
                    text = (exc.text if isinstance(exc, AuthError) else str(exc)) or "poll failed"
                    ended = self._m.poll_done(self._clock.monotonic(), text)
                    logger.info("limited mode: poll failed (%d in a row): %s", self._m.poll_errors, text)
                    if ended is not None:
                        return ended
                else:
                    self._m.poll_done(self._clock.monotonic())
                    for event in events:
                        self._emit(event)
            return Ended(Ending.STOPPED)
        finally:
            self._m.limited_left()

    async def _unless_stopped(self, coro: Awaitable[list[Event]]) -> list[Event] | None:
        """Await ``coro``, or give up on it (None) as soon as the client is asked to stop."""
        work = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, stopper):
                if not task.done():
                    task.cancel()
            await asyncio.gather(work, stopper, return_exceptions=True)
        if work.cancelled():
            return None
        return work.result()
