"""The connection that never gives up: the driver of the socket, the HTTP calls and the waits of one account.

One :class:`Client` per account. It signs in through an :class:`~tray_agent.net.auth.Authenticator`,
opens one WebSocket (never two: the old one is closed before a new one opens, G4), resyncs the
waiting list before it trusts deltas, forwards the dialect codec's events to ``emit`` in order, and
carries commands out (WebSocket frames or HTTP calls), translating the dialect's answers into
CommandSucceeded / CommandFailed with the command's id.

Plain asyncio only (it runs on a qasync loop in the app): no threads, no per-frame tasks. The
decisions are made in pure modules; this one carries them out (sockets, HTTP, waits):

* :mod:`~tray_agent.net.connection`: the life cycle (phases, backoff, heartbeat, credential
  refusals, limited mode, redirects, "signed in elsewhere", stop);
* :mod:`~tray_agent.net.tracker`: command order, correlation of answers, timeouts, what a drop
  does to commands in flight;
* :mod:`~tray_agent.net.outbox`: the durable outbox store, resend and discard, a store that
  cannot write;
* :mod:`~tray_agent.net.resync` (the waiting list's pages) and :mod:`~tray_agent.net.catch_up`
  (messages missed while offline);
* :mod:`~tray_agent.net.rest`: HTTP calls and the commands that go over HTTP;
* :mod:`~tray_agent.net.config` (URLs, :class:`~tray_agent.net.config.Timings`) and
  :mod:`~tray_agent.net.wire` (the handshake, failure and close texts).

Decisions carried out here:

* **Auth rejections.** A handshake refused with 401/403 makes the authenticator refresh or
  re-login once; if the next handshake is refused too, or the sign-in itself is refused, the
  state is AUTH_REQUIRED and nothing is retried until :meth:`Client.reauthenticate`.
* **The dashboard's extra disconnect** (G4): the first drop within ``early_drop_window`` of a
  connection that followed a failure is retried at once, without growing the backoff.
* **Signed in elsewhere** (dashboard, one socket per user): any other close that the codec calls
  displacing (an empty Close frame, 1005) means another client of my user holds the socket: the
  state is SIGNED_IN_ELSEWHERE and nothing is retried until :meth:`Client.reconnect_now`.
* **Redirects** on the handshake: a same-host ws -> wss upgrade is followed once per attempt;
  any other (captive portal, another host) is a failed handshake, retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.protocol import State

from tray_agent.core.commands import Command
from tray_agent.core.events import (
    CommandFailed,
    CommandKind,
    CommandSucceeded,
    ConnectionChanged,
    ConnectionState,
    Event,
    FailureReason,
    Ignored,
    KeepaliveReceived,
    ServerAcked,
    ServerRejected,
    WaitingListPage,
)
from tray_agent.core.ports import Clock, OutboxStore
from tray_agent.core.protocol.auth import redact_url
from tray_agent.core.protocol.base import DialectCodec, EncodeError, WsFrame
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import (
    Authenticator,
    AuthError,
    AuthRefused,
    classify_network_error,
    make_ssl_context,
)
from tray_agent.net.catch_up import CatchUp
from tray_agent.net.config import ConfigError, Timings, codec_ws_url
from tray_agent.net.connection import (
    Action,
    Backoff,
    ConnectionMachine,
    DropSocket,
    EmitState,
    Ended,
    Ending,
    Finish,
    Phase,
    RenewCredentials,
    SendPing,
    WaitBackoff,
    WaitForAgent,
)
from tray_agent.net.http import ConnectError, parse_proxy
from tray_agent.net.limited import LimitedMode
from tray_agent.net.outbox import Held, Outbox
from tray_agent.net.rest import Rest
from tray_agent.net.resync import LiveChanges, Progress, Resync, failure_text, list_everyone, stamp
from tray_agent.net.tracker import CommandTracker, Outcome, Transport
from tray_agent.net.wire import (
    UPGRADE_REFUSED,
    close_detail,
    describe,
    open_socket,
    redirect_detail,
    socket_proxy,
)
from tray_agent.net.wire import buffered_probe as _buffered_probe

__all__ = ["Client", "Sleep", "Timings"]  # Timings: the constructor's, also importable from net.config

logger = logging.getLogger(__name__)

READ_SLICE = 0.006  # seconds of frame handling (reducing included) before the read loop yields to the GUI
# WORKAROUND(qasync coarse timers): asyncio timers may fire a little early (python/cpython#127859),
# and qasync runs them on Qt coarse timers (about 5 % slack). Waits for a deadline are this much
# longer, so one wake-up meets it; deadlines (pings, heartbeats, command timeouts) are therefore
# met up to 6 %, at most 1 s, late.
TIMER_PADDING = 0.06
TIMER_PADDING_MAX = 1.0

MAX_BATCH = 1024
"""Events handed to the store in one batch at most (reduced in one transaction)."""

BATCH_SLICE = 0.003
"""Seconds of parsing after which a batch is delivered: about 150 frames of a flood (benchmark 1
records ``frames_per_batch``), parsed and reduced in about one :data:`READ_SLICE`. What a batch
costs beyond its frames (each conversation's history copied once, one new State, one alert-engine
run) is then shared by about 2.5 times more frames than with 1 ms batches: benchmark 1 went from
0.170 to 0.215 of the bare loop (median of 7 alternating pairs), benchmark 3's stall unchanged
(4 alternating pairs: 20.6 and 20.7 ms). An alert in a flood waits up to this long more."""

_End = Ending  # how an attempt ended (connection.Ending)
_Result = Ended


Sleep = Callable[[float], Awaitable[None]]


class Client:
    """The network client of one account; implements :class:`~tray_agent.core.ports.CommandSink`.

    Args:
        codec: the dialect codec (told the signed-in user id, asked for the socket URL).
        authenticator: signs in per dialect.
        settings: server, org id, proxy, ca_bundle, timings.
        emit: receives every event, in order, on the event loop; must not block. Exceptions it
            raises are logged and swallowed. When it also has a ``many(events)`` method, the
            events of the frames a burst has already buffered are handed to that as one batch
            (in order, before the read loop waits or sends), instead of one call each.
        clock: monotonic time for deadlines; ``now()`` stamps ConnectionChanged.at.
        timings: overrides the timings from ``settings`` (tests use milliseconds).
        sleep: the backoff sleep (tests make it return at once and record the delays).
        rng: jitter source in [0, 1).
        ssl_context: TLS context for https/wss; default: :func:`~tray_agent.net.auth.make_ssl_context`.
        outbox: the durable outbox (replies, take-overs, releases survive a crash); None keeps
            commands in memory only.

    Emits:
        ConnectionChanged: CONNECTING, RESYNCING (socket open, resync running), CONNECTED,
            RECONNECTING (with ``retry_in``), AUTH_REQUIRED, SIGNED_IN_ELSEWHERE, LIMITED,
            OFFLINE (stopped or bad settings).
        CommandQueued / CommandSent / CommandSucceeded / CommandFailed: per submitted command.
        Ignored: binary and oversized frames (besides what the codec says).
        every other event of the codec (frames and REST answers), in order; ServerAcked and
        ServerRejected are consumed here.
    """

    def __init__(
        self,
        codec: DialectCodec,
        authenticator: Authenticator,
        settings: ConnectionSettings,
        emit: Callable[[Event], None],
        clock: Clock,
        *,
        timings: Timings | None = None,
        sleep: Sleep | None = None,
        rng: Callable[[], float] = random.random,
        ssl_context: ssl.SSLContext | None = None,
        outbox: OutboxStore | None = None,
    ) -> None:
        self._codec = codec
        self._catch_up = CatchUp(codec)  # messages missed while offline, fetched after each resync
        self._live_changes = LiveChanges()  # what list reads in flight must not undo
        self._stop_requested = asyncio.Event()
        self._auth = authenticator
        self._settings = settings
        self._emit_cb = emit
        self._emit_many_cb: Callable[[list[Event]], None] | None = getattr(emit, "many", None)
        self._batch: list[Event] | None = None  # set while a burst's events are collected
        self._clock = clock
        self._t = timings or Timings.from_settings(settings)
        self._sleep: Sleep = sleep or asyncio.sleep
        self._m = ConnectionMachine(
            self._t.for_machine(),
            Backoff(self._t.backoff_base, self._t.backoff_max, rng),
        )
        self._ssl_override = ssl_context
        self._ssl: ssl.SSLContext | None = None  # built in run(): a bad CA bundle is a state, not a crash
        self._ws: ClientConnection | None = None
        self._signed_in = False
        self._running = False  # run() is active
        self._abort_reason = ""
        self._next_keepalive: float | None = None
        self._wake = asyncio.Event()
        self._kick = asyncio.Event()
        self._done = asyncio.Event()
        self._tracker = CommandTracker(self._t.command_timeout)
        self._outbox = Outbox(
            self._tracker,
            outbox,
            codec,
            clock,
            store_retry=self._t.store_retry,
            emit=self._emit,
            wake=self._wake.set,
        )
        self._resync = Resync(self._tracker, clock, self._t.resync_interval)
        self._rest = Rest(
            codec,
            authenticator,
            settings,
            self._t,
            self._outbox,
            clock,
            settle=self._settle,
            emit=self._emit,
            wake=self._wake.set,
            credentials_refused=lambda why: self._apply(self._m.credentials_refused(why)),
            live=self._live_changes,
        )
        self._limited = LimitedMode(
            self._m,
            self._rest.poll_call,
            flush=self._rest.flush,
            emit=self._emit,
            apply=self._apply,
            clock=clock,
            wake=self._wake,
            stop_requested=self._stop_requested,
            wait=self._wait_for_wake,
        )
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._run_task: asyncio.Task[None] | None = None
        self._runner: asyncio.Task[object] | None = None

    # -- public API ------------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The last connection state emitted."""
        return self._m.state

    @property
    def _stopping(self) -> bool:
        return self._m.stopping

    @property
    def _stopped(self) -> bool:
        return self._m.phase is Phase.STOPPED

    @property
    def _live(self) -> bool:
        return self._m.live

    def start(self) -> asyncio.Task[None]:
        """Run :meth:`run` as a task on the running loop and return it (idempotent)."""
        if self._run_task is None or self._run_task.done():
            self._run_task = asyncio.get_running_loop().create_task(self.run(), name="tray_agent.net.client")
        return self._run_task

    async def run(self) -> None:
        """Connect, resync, listen and reconnect until :meth:`stop`.

        Never raises (unexpected errors are logged and lead to a reconnect). Cancellation
        propagates after the client has settled its commands and closed its sockets.
        """
        if self._running or self._stopped:
            logger.warning("Client.run() called twice or after stop(); ignored")
            return
        try:
            self._ssl = self._ssl_override or make_ssl_context(self._settings)
        except (OSError, ssl.SSLError) as exc:
            logger.warning("The CA bundle %r cannot be used: %s", self._settings.ca_bundle, exc)
            why = f"The CA bundle {self._settings.ca_bundle} cannot be used: {exc}"
            self._apply(self._m.unusable(why))
            return
        self._running = True
        self._runner = asyncio.current_task()
        self._done.clear()
        self._outbox.restore()
        self._rest.open(self._ssl)
        try:
            await self._loop()
        finally:
            await self._shutdown()

    async def stop(self) -> None:
        """Close the socket cleanly (code 1000), settle commands and stop :meth:`run`.

        Queued commands fail with OFFLINE, unconfirmed ones with UNCONFIRMED. Waits for the
        run loop to finish (bounded by the close timeout); safe to call twice or before run.
        """
        self._apply(self._m.stop())
        self._stop_requested.set()
        self._kick.set()
        if self._running:
            if asyncio.current_task() is not self._runner:  # called from inside run(): can't wait
                await self._done.wait()
        elif not self._stopped:
            self._outbox.settle_all("the client stopped")
            self._apply(self._m.stopped(requested=True))

    def request_resync(self, why: str = "") -> None:
        """Run a full resync (every page) now, on the live socket; no-op while offline.

        For events that referred to customers the store does not know. When the client is not
        live, the resync that follows the next (re)connect covers it anyway.
        """
        if self._stopping or not self._live:
            return
        logger.info("Resync requested%s", f": {why}" if why else "")
        self._resync.request()
        self._wake.set()

    def reconnect_now(self, *, automatic: bool = False) -> None:
        """Drop the current socket (if any) and reconnect at once, resetting the backoff.

        For sleep/resume and network changes (``automatic``), and "Reconnect now": the agent's
        way back after "signed in elsewhere" (this app takes the live connection back), which
        an automatic reconnect does not do. Does nothing while AUTH_REQUIRED.
        """
        if self._stopping:
            return
        self._apply(self._m.reconnect_requested(automatic=automatic))
        self._kick.set()

    def reauthenticate(self) -> None:
        """Leave AUTH_REQUIRED and try again (after new credentials went to the authenticator)."""
        self._apply(self._m.reauthenticate())
        self._kick.set()

    def submit(self, command: Command) -> None:
        """Queue a command; its outcome arrives as events. Never raises.

        With an outbox store, a reply / take-over / release is written to it *before*
        CommandQueued is emitted, so whatever the agent saw as queued survives a crash.
        Emits CommandQueued at once; CommandFailed at once when the dialect cannot express the
        command (EncodeError) or the client has stopped. :class:`ResendCommand` and
        :class:`DiscardCommand` go to :meth:`resend` / :meth:`discard`.
        """
        self._outbox.submit(command, stopped=self._stopped or self._stopping, signed_in=self._signed_in)

    def unconfirmed(self) -> list[Command]:
        """Commands sent but never confirmed (this run or a previous one), oldest first."""
        return self._outbox.unconfirmed()

    def resend(self, command_id: str) -> None:
        """The agent chose to send an unconfirmed command again (same id: the same bubble).

        Emits CommandQueued (and later its outcome), or CommandFailed(INVALID) when no
        unconfirmed command has that id. Never raises.
        """
        self._outbox.resend(command_id, stopped=self._stopped or self._stopping)

    def discard(self, command_id: str) -> None:
        """The agent dropped an unconfirmed (or still queued) command: it is never sent.

        Emits CommandDiscarded for it, or CommandFailed(INVALID) when no such command waits.
        Never raises.
        """
        self._outbox.discard(command_id)

    # -- emission and state ----------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if isinstance(event, CommandSucceeded | CommandFailed):
            self._outbox.record_outcome(event)
        if self._catch_up.is_copy(event):
            logger.debug("live copy of a message the catch-up delivered: dropped")
            return
        self._catch_up.observe(event)
        self._live_changes.observe(event)
        if self._batch is not None:
            self._batch.append(event)
            return
        try:
            self._emit_cb(event)
        except Exception:
            logger.exception("event consumer failed on %s", event.event_name)

    def _apply(self, actions: Sequence[Action]) -> None:
        """Carry out the machine's immediate actions (the waits are the run loop's)."""
        for action in actions:
            if isinstance(action, EmitState):
                self._emit(
                    ConnectionChanged(
                        state=action.state,
                        detail=action.detail,
                        retry_in=action.retry_in,
                        at=self._clock.now(),
                    )
                )
            elif isinstance(action, DropSocket):
                self._abort(action.reason)
            elif isinstance(action, RenewCredentials):
                self._auth.invalidate()

    def _abort(self, reason: str) -> None:
        if self._ws is not None and not self._abort_reason:
            self._abort_reason = reason
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------------

    async def _loop(self) -> None:
        """Run attempts and do what the machine decides after each (connect, back off, wait)."""
        while not self._stopping:
            if not self._m.unblocked():
                self._kick.clear()
                await self._kick.wait()
                continue
            try:
                result = await self._attempt()
                if result.end is _End.LIMITED:
                    result = await self._limited.run(result.detail)
            except Exception:
                logger.exception("unexpected error in the connection loop")
                result = _Result(_End.FAILED, "internal error")
            if result.end is _End.AUTH_REQUIRED:
                logger.warning("sign-in needed: %s", result.detail)
            elif result.end is _End.CONFIG:
                logger.warning("cannot connect: %s", result.detail)
            actions = self._m.ended(result)
            self._apply(actions)
            for action in actions:
                if isinstance(action, Finish):
                    return
                if isinstance(action, WaitBackoff):
                    logger.info("connection lost: %s; retrying in %.1f s", result.detail, action.delay)
                    await self._wait_backoff(action.delay)
                elif isinstance(action, WaitForAgent) and result.end is _End.DISPLACED:
                    logger.warning("another client of this account took the live connection")

    async def _wait_backoff(self, delay: float) -> None:
        self._kick.clear()
        if self._stopping or self._m.reconnect_pending or not self._running:
            return
        sleeper = asyncio.ensure_future(self._sleep(delay))
        kicked = asyncio.ensure_future(self._kick.wait())
        try:
            await asyncio.wait({sleeper, kicked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, kicked):
                task.cancel()
            await asyncio.gather(sleeper, kicked, return_exceptions=True)

    async def _attempt(self) -> _Result:
        """One sign-in + connection + session. Cancellation propagates."""
        self._apply(self._m.attempt_started())
        assert self._rest.session is not None
        if self._settings.proxy:  # a setting no retry can fix: say so and wait for new settings
            try:
                parse_proxy(self._settings.proxy)
            except ConnectError as exc:
                return _Result(_End.CONFIG, str(exc))
        try:
            credentials = await self._auth.credentials(self._rest.session)
        except AuthRefused as exc:
            return _Result(_End.AUTH_REQUIRED, exc.text)
        except AuthError as exc:
            return _Result(_End.FAILED, exc.text)
        self._signed_in = True
        self._codec.signed_in(credentials.user_id)
        try:
            url = codec_ws_url(self._codec, self._settings, credentials)
        except ConfigError as exc:
            return _Result(_End.CONFIG, str(exc))
        if self._stopping:
            return _Result(_End.STOPPED)
        headers = credentials.http_headers() if credentials.cookie else {}
        while True:
            try:
                ws = await open_socket(
                    url,
                    headers,
                    max_size=self._codec.max_frame_size,
                    timings=self._t,
                    proxy=socket_proxy(url, self._settings.proxy),
                    ssl_context=self._ssl,
                )
                break
            except InvalidStatus as exc:
                status = exc.response.status_code
                refusal = self._m.handshake_refused(status)
                if refusal is not None:
                    if refusal.end is _End.RETRY_NOW:
                        logger.info("handshake refused (HTTP %d); renewing the credentials once", status)
                        self._apply(self._m.auth_retry_started())
                    return refusal
                if 300 <= status < 400:
                    location = exc.response.headers.get("Location", "")
                    follow = self._m.handshake_redirected(status, url, location)
                    if follow is not None:
                        logger.warning(
                            "the server moved the live connection to %s (HTTP %d); following once: "
                            "use an https:// server address",
                            redact_url(follow.url),
                            status,
                        )
                        url = follow.url
                        continue
                    logger.info("handshake redirected (HTTP %d) to %s", status, redact_url(location))
                    return await self._limited.handshake_failed(
                        redirect_detail(status, location), refused=False
                    )
                return await self._limited.handshake_failed(
                    f"handshake refused (HTTP {status})", refused=status in UPGRADE_REFUSED
                )
            except InvalidURI:
                return _Result(_End.CONFIG, "invalid server address")
            except (OSError, TimeoutError, InvalidHandshake, ssl.SSLError) as exc:
                if isinstance(exc, ssl.SSLError):
                    return _Result(_End.FAILED, classify_network_error(exc, "connect").text)
                return await self._limited.handshake_failed(describe(exc), refused=False)
        if self._m.limited:
            logger.info("the WebSocket works again; leaving limited mode")
        self._limited.reset()
        logger.info("connected to %s", redact_url(url))
        return await self._session(ws)

    # -- one connection --------------------------------------------------------------------------

    async def _session(self, ws: ClientConnection) -> _Result:
        opened = self._clock.monotonic()
        self._ws = ws
        self._abort_reason = "stopping" if self._stopping else ""
        self._apply(self._m.opened(opened))
        self._start_resync(initial=True)
        interval = self._auth.keepalive_interval
        self._next_keepalive = opened + interval if interval else None
        reader = asyncio.ensure_future(self._read_loop(ws))
        keeper = asyncio.ensure_future(self._housekeeping(ws))
        try:
            await asyncio.wait({reader, keeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, keeper):
                task.cancel()
            results = await asyncio.gather(reader, keeper, return_exceptions=True)
            for res in results:
                if isinstance(res, Exception):
                    logger.error("connection task failed: %r", res)
            self._m.closed()
            self._ws = None
            self._resync.dropped()
            for pending in self._tracker.outstanding:  # pages asked on this socket will not come
                if pending.changed_live is not None:
                    self._live_changes.end(pending.changed_live)
                    pending.changed_live = None
            with contextlib.suppress(Exception):
                await ws.close()
            self._rest.cancel_internal()
            if not self._stopping:  # when stopping, _shutdown settles everything at once
                for outcome in self._tracker.disconnected():
                    self._emit(outcome.event)
        lived = self._clock.monotonic() - opened
        detail = self._abort_reason or close_detail(ws)
        close_sent = getattr(ws.protocol, "close_sent", None)
        if close_sent is not None and close_sent.code == 1009:
            self._emit(Ignored(kind="oversized", why=f"frame larger than {self._codec.max_frame_size} bytes"))
            detail = "the server sent an oversized frame"
        if self._stopping:
            return _Result(_End.STOPPED)
        if not self._abort_reason and self._codec.displaced(ws.close_code):
            return _Result(_End.DISPLACED, detail, lived)
        return _Result(_End.FAILED, detail, lived)

    async def _read_loop(self, ws: ClientConnection) -> None:
        """Read frames until the socket closes (returns; ConnectionClosed is swallowed).

        Frames already buffered are handed out without yielding to the event loop, so a burst
        (one socket read holds hundreds of frames) would keep the GUI from painting; the loop
        therefore yields once every ``READ_SLICE`` seconds of work, reducing included.

        The events of frames read back to back are handed to ``emit.many`` as one batch (when
        the sink has it): collected while the next message is already buffered, delivered before
        anything that may wait (the next read, a pong, the yield), and at the latest after
        :data:`MAX_BATCH` events or :data:`BATCH_SLICE` seconds of parsing. A batch is parsed
        and reduced as one piece of work; when the next one (expected to cost as much as the
        last) would end past the slice, the loop yields first instead of overshooting it.
        """
        perf_counter = time.perf_counter
        slice_started = batch_started = perf_counter()
        buffered = _buffered_probe(ws) if self._emit_many_cb is not None else None
        batch: list[Event] = []
        try:
            async for message in ws:
                self._m.frame_received(self._clock.monotonic())
                end_slice = False
                if buffered is None:
                    want_pong = self._on_frame(message)
                else:
                    if not batch:
                        batch_started = perf_counter()
                    self._batch = batch
                    try:
                        want_pong = self._on_frame(message)
                    finally:
                        self._batch = None
                    if batch and (
                        want_pong
                        or not buffered()
                        or len(batch) >= MAX_BATCH
                        or perf_counter() - batch_started >= BATCH_SLICE
                    ):
                        batch = self._deliver(batch)
                        done = perf_counter()
                        # The next batch will cost about what this one did (parse + reduce).
                        end_slice = 2 * done - batch_started - slice_started >= READ_SLICE
                if want_pong:
                    await ws.send(self._codec.pong_frame())
                if end_slice or perf_counter() - slice_started >= READ_SLICE:
                    if batch:
                        batch = self._deliver(batch)
                    await asyncio.sleep(0)  # let Qt paint and run its timers between slices
                    slice_started = perf_counter()
        except ConnectionClosed:
            return
        finally:
            if batch:
                self._deliver(batch)

    def _deliver(self, batch: list[Event]) -> list[Event]:
        """Hand a burst's events to ``emit.many``; returns a fresh list for the next burst."""
        assert self._emit_many_cb is not None
        try:
            self._emit_many_cb(batch)
        except Exception:
            logger.exception("event consumer failed on a batch of %d event(s)", len(batch))
        return []

    def _on_frame(self, message: str | bytes) -> bool:
        """Handle one frame; True when the server asked for a JSON pong."""
        if isinstance(message, bytes):
            self._emit(Ignored(kind="binary", why="binary frame"))
            return False
        want_pong = False
        woke = False
        for event in self._codec.parse_frame(message):
            if isinstance(event, ServerAcked):
                outcome = self._tracker.acked(event)
                if outcome is None:
                    logger.debug("unmatched %s confirmation", event.kind)
                else:
                    self._settle(outcome)
                    woke = True
            elif isinstance(event, ServerRejected):
                outcome = self._tracker.rejected(event)
                if outcome is None:
                    logger.info("server error matched no command: %s", event.text)
                else:
                    self._settle(outcome)
                    woke = True
            elif isinstance(event, KeepaliveReceived):
                if event.kind == "ping":
                    want_pong = True
                else:
                    pending = self._tracker.oldest(CommandKind.PING)
                    if pending is not None:
                        self._settle(self._tracker.answered(pending, (), 200))
                        woke = True
                self._emit(event)
            elif isinstance(event, WaitingListPage):
                pending = self._tracker.oldest(CommandKind.REFRESH)
                if pending is not None:
                    if pending.changed_live is not None:
                        # The server may have built the page before a broadcast it sent first.
                        event = stamp(event, self._live_changes.end(pending.changed_live))
                        pending.changed_live = None
                    pending.page = event
                self._emit(event)
            else:
                self._emit(event)
        if woke:
            self._wake.set()
        return want_pong

    def _settle(self, outcome: Outcome) -> None:
        if outcome.pending.changed_live is not None:  # no page came (a timeout, a refusal)
            self._live_changes.end(outcome.pending.changed_live)
            outcome.pending.changed_live = None
        if outcome.pending.internal:  # a resync page: ask for the next one or finish
            self._resync_progress(outcome, self._resync.step(outcome))
            return
        self._emit(outcome.event)
        # The agent's refresh reads the whole list, as a resync does, when its page says there is more.
        self._resync_progress(outcome, self._resync.follow(outcome))

    async def _housekeeping(self, ws: ClientConnection) -> None:
        """Send the outbox, pings, timeouts, periodic resync and session keepalive.

        Returns when the socket must be dropped (abort request, dead heartbeat). Cancellation
        propagates.
        """
        while True:
            self._wake.clear()
            if self._abort_reason:
                return
            now = self._clock.monotonic()
            for action in self._m.tick(now):
                if isinstance(action, DropSocket):
                    self._abort_reason = action.reason
                    logger.info(
                        "heartbeat: nothing received for %.1f s after a ping", self._t.heartbeat_timeout
                    )
                    return
                if isinstance(action, SendPing):
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(self._codec.ping_frame())
            for outcome in self._tracker.expire(now):
                self._settle(outcome)
            if self._live and self._resync.due(now):
                self._start_resync(initial=False)
            if self._next_keepalive is not None and now >= self._next_keepalive:
                interval = self._auth.keepalive_interval or 0.0
                self._next_keepalive = now + interval if interval else None
                self._spawn_side(self._keepalive())
            await self._flush(ws)
            if self._abort_reason:
                return
            deadlines = [self._m.heartbeat_deadline(), self._tracker.next_deadline(), self._next_keepalive]
            if self._live:
                deadlines.append(self._resync.deadline())
            await self._wait_for_wake(min(d for d in deadlines if d is not None))

    async def _wait_for_wake(self, deadline: float) -> None:
        """Wait until :attr:`_wake` is set or the monotonic ``deadline`` has passed.

        qasync runs asyncio timers on Qt's coarse timers, which may fire a little early; the
        loop would then find nothing due and wait again for the last few milliseconds (two
        wake-ups per deadline while idle). The wait is padded so one wake-up meets the deadline.
        """
        timeout = max(0.0, deadline - self._clock.monotonic())
        timeout += min(timeout * TIMER_PADDING, TIMER_PADDING_MAX)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _flush(self, ws: ClientConnection) -> None:
        now = self._clock.monotonic()
        self._outbox.retry_store(now)
        batch = self._tracker.take_sendable(live=self._live, now=now)
        for index, pending in enumerate(batch):
            try:
                outbound = self._rest.due_step(pending, self._codec.encode(pending.command))
                if outbound is None:
                    continue
                if isinstance(outbound, Held):
                    self._outbox.hold(pending, batch[index + 1 :])
                    break
            except EncodeError as exc:
                self._settle(self._tracker.fail(pending, exc.reason, exc.text))
                continue
            except Exception:
                logger.exception("encoding %s failed", type(pending.command).__name__)
                self._settle(self._tracker.fail(pending, FailureReason.INVALID, "internal error"))
                continue
            if isinstance(outbound, WsFrame) and ws.state is not State.OPEN:
                self._tracker.put_back(batch[index:])
                break
            if not self._outbox.mark_sent(pending.command):
                self._outbox.hold(pending, batch[index + 1 :])
                break
            if isinstance(outbound, WsFrame):
                self._tracker.mark_sent(pending, Transport.WS, self._clock.monotonic())
                if pending.kind is CommandKind.REFRESH:
                    pending.changed_live = self._live_changes.begin()
                try:
                    await ws.send(outbound.text)
                except ConnectionClosed:
                    # It may have been written: an unconfirmed command, settled on disconnect.
                    break
            else:
                self._rest.start(pending, outbound)
            self._outbox.announce_sent(pending)

    def _spawn_side(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _keepalive(self) -> None:
        if self._rest.session is not None:
            await self._auth.keepalive(self._rest.session)

    # -- resync ----------------------------------------------------------------------------------

    def _start_resync(self, *, initial: bool) -> None:
        self._catch_up.resync_started()
        self._resync.start(initial=initial)
        self._wake.set()

    def _resync_progress(self, outcome: Outcome, progress: Progress) -> None:
        """Carry out what a settled resync page asks for (see :class:`~tray_agent.net.resync.Progress`)."""
        if progress is Progress.NONE:
            return
        if progress is Progress.NEXT_PAGE:
            self._wake.set()
        elif progress is Progress.FAILED:
            self._abort(f"resync failed: {failure_text(outcome)}")
        else:
            self._spawn_side(self._catch_up.run(self._rest.call, self._emit))
            if progress is Progress.FIRST_DONE:
                self._apply(self._m.resynced())
                self._wake.set()
                self._spawn_side(list_everyone(self._codec, self._rest.call, self._emit, self._live_changes))

    # -- shutdown --------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        tasks: list[asyncio.Task[None]] = [*self._rest.tasks, *self._side_tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._outbox.retry_store(self._clock.monotonic(), force=True)  # one last try to delete finished rows
        self._outbox.settle_all("the client stopped")
        await self._rest.close()
        self._running = False
        self._apply(self._m.stopped(requested=self._stopping))
        self._done.set()
