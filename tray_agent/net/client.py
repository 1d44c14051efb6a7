"""The connection that never gives up: reconnect loop, heartbeat watchdog, outbox, resync, correlation.

One :class:`Client` per account. It signs in through an :class:`~tray_agent.net.auth.Authenticator`,
opens one WebSocket (never two: the old one is closed before a new one opens, G4), resyncs the
waiting list before it trusts deltas, forwards the dialect codec's events to ``emit`` in order, and
carries commands out (WebSocket frames or HTTP calls), translating the dialect's answers into
CommandSucceeded / CommandFailed with the command's id.

Plain asyncio only (it runs on a qasync loop in the app): no threads, no per-frame tasks.

Decisions:

* **In flight at a disconnect.** A REPLY, RELEASE or PING written to the socket but not confirmed
  becomes ``CommandFailed(UNCONFIRMED)`` and is never resent (no double message to a customer;
  a second release would fail with "not assigned"). TAKE_OVER, REFRESH and HISTORY are idempotent
  (re-assigning to yourself succeeds on both servers), so they go back to the front of the
  outbox and are sent again after the next resync. HTTP calls already started are left to
  finish (their answer is still valid); internal resync calls are abandoned.
* **Ordering.** At most one command per (kind, conversation) is outstanding; later ones wait in
  the outbox, and so does anything behind them for the same conversation. Dashboard answers carry
  no correlation (G5), so an answer is matched to the oldest outstanding command of its kind.
* **Resync** runs after every (re)connect (state RESYNCING until the last page) and again every
  ``resync_interval`` while connected, for both dialects (O9, G10). A failed first resync counts
  as a connection failure (reconnect with backoff); a failed periodic one is only logged.
* **Auth rejections.** A handshake refused with 401/403 makes the authenticator refresh or
  re-login once; if the next handshake is refused too, or the sign-in itself is refused, the
  state is AUTH_REQUIRED and nothing is retried until :meth:`Client.reauthenticate`.
* **The dashboard's extra disconnect** (G4): the first drop within ``early_drop_window`` of a
  connection that followed a failure is retried at once, without growing the backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.protocol import State

from tray_agent.core.commands import (
    Command,
    DiscardCommand,
    RefreshWaitingList,
    ResendCommand,
    SendReply,
    failed,
    succeeded,
)
from tray_agent.core.events import (
    CommandFailed,
    CommandKind,
    CommandQueued,
    CommandSent,
    CommandSucceeded,
    ConnectionChanged,
    ConnectionState,
    Dialect,
    Event,
    FailureReason,
    Ignored,
    KeepaliveReceived,
    ServerAcked,
    ServerRejected,
    WaitingListPage,
)
from tray_agent.core.ports import Clock, OutboxStore, StoredCommand, StoredState
from tray_agent.core.protocol.auth import redact_url
from tray_agent.core.protocol.base import DialectCodec, EncodeError, HttpCall, WsFrame
from tray_agent.core.redact import RedactingFilter
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import (
    Authenticator,
    AuthError,
    AuthRefused,
    Credentials,
    TlsError,
    classify_network_error,
    make_ssl_context,
)
from tray_agent.net.catch_up import CatchUp
from tray_agent.net.polling import Poller, PollError, rest_call

logger = logging.getLogger(__name__)

RESYNC_PAGE = 200
READ_SLICE = 0.008  # seconds of frame handling before the read loop yields to the GUI
_MAX_RESYNC_PAGES = 500
# WORKAROUND(qasync coarse timers): asyncio timers may fire a little early (python/cpython#127859),
# and qasync runs them on Qt coarse timers (about 5 % slack). Waits for a deadline are this much
# longer, so one wake-up meets it; deadlines (pings, heartbeats, command timeouts) are therefore
# met up to 6 %, at most 1 s, late.
TIMER_PADDING = 0.06
TIMER_PADDING_MAX = 1.0


# ---------------------------------------------------------------------------------------------
# The websockets library logs handshakes (with the ?token= URL and Cookie header) at debug level:
# its logger gets the core redaction filter itself, so no handler ever sees those secrets.
# ---------------------------------------------------------------------------------------------

_wire_logger = logging.getLogger("tray_agent.net.wire")
_wire_logger.addFilter(RedactingFilter())


# ---------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------


class ConfigError(ValueError):
    """The settings cannot produce a usable URL (shown to the user; no secret inside)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_base(settings: ConnectionSettings) -> str:
    """The REST base URL (``settings.server`` without a trailing slash).

    Raises:
        ConfigError: empty or non-http(s) server, or plain http to a non-loopback host without
            ``allow_insecure``.
    """
    parts = urlsplit(settings.server.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("The server address must start with http:// or https://.")
    if parts.scheme == "http" and not settings.allow_insecure and not _is_loopback(parts.hostname):
        raise ConfigError("Refusing an unencrypted http:// server; use https:// or allow insecure.")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def ws_url(settings: ConnectionSettings, dialect: Dialect, credentials: Credentials) -> str:
    """The WebSocket URL: org ``/ws/{org_id}?token=JWT``, dashboard ``/api/dashboard/ws``.

    ``ws``/``wss`` follows the server's ``http``/``https``. The org URL holds the token: log it
    only through :func:`~tray_agent.core.protocol.auth.redact_url`.

    Raises:
        ConfigError: as :func:`http_base`, or no organization id for org.
    """
    parts = urlsplit(http_base(settings))
    scheme = "wss" if parts.scheme == "https" else "ws"
    if dialect is Dialect.ORG:
        if not settings.org:
            raise ConfigError("The organization id is missing in the settings.")
        path = f"{parts.path}/ws/{quote(settings.org, safe='')}"
        query = urlencode({"token": credentials.token})
        return urlunsplit((scheme, parts.netloc, path, query, ""))
    return urlunsplit((scheme, parts.netloc, f"{parts.path}/api/dashboard/ws", "", ""))


# ---------------------------------------------------------------------------------------------
# Timings and backoff
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timings:
    """Every delay the client uses, in seconds (tests shrink them to milliseconds).

    Attributes:
        heartbeat_interval: application ping period.
        heartbeat_timeout: the socket is dead if nothing arrives this long after a ping.
        command_timeout: an unanswered command fails with TIMEOUT after this.
        resync_interval: full resync period while connected; None disables it.
        backoff_base: first backoff ceiling.
        backoff_max: backoff ceiling cap.
        stable_after: a connection that lived this long resets the backoff.
        early_drop_window: see the module docstring (dashboard's extra disconnect).
        open_timeout: WebSocket handshake timeout.
        close_timeout: how long a clean close may take before the socket is aborted.
        protocol_ping_interval: websockets' own ping period (None: off).
        protocol_ping_timeout: websockets' own pong timeout.
        http_timeout: total time of one REST call.
        poll_interval: limited mode (WebSocket blocked): seconds between REST polls.
        ws_retry_interval: limited mode: seconds between attempts to get the WebSocket back.
        limited_after: consecutive failed handshakes (not refusals of the credentials) after
            which the REST API is tried; an "upgrade refused" status tries it at once.
    """

    heartbeat_interval: float = 25.0
    heartbeat_timeout: float = 10.0
    command_timeout: float = 10.0
    resync_interval: float | None = 60.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    stable_after: float = 60.0
    early_drop_window: float = 60.0
    open_timeout: float = 10.0
    close_timeout: float = 5.0
    protocol_ping_interval: float | None = 20.0
    protocol_ping_timeout: float | None = 20.0
    http_timeout: float = 10.0
    poll_interval: float = 10.0
    ws_retry_interval: float = 180.0
    limited_after: int = 3

    @classmethod
    def from_settings(cls, settings: ConnectionSettings) -> Timings:
        """Timings from the user's connection settings (defaults for the rest)."""
        return cls(
            heartbeat_interval=settings.heartbeat_interval,
            heartbeat_timeout=settings.heartbeat_timeout,
            command_timeout=settings.command_timeout,
            resync_interval=settings.resync_interval,
            backoff_max=settings.backoff_max,
            http_timeout=settings.command_timeout,
            poll_interval=settings.poll_interval,
            ws_retry_interval=settings.ws_retry_interval,
        )


class Backoff:
    """Exponential backoff with full jitter: delay = uniform(0, min(cap, base * 2**n)).

    Args:
        base: ceiling of the first delay.
        cap: largest ceiling.
        rng: returns a float in [0, 1) (injected so tests are deterministic).
    """

    def __init__(
        self, base: float = 1.0, cap: float = 60.0, rng: Callable[[], float] = random.random
    ) -> None:
        self.base = base
        self.cap = cap
        self.attempts = 0
        self._rng = rng

    def ceiling(self) -> float:
        """The ceiling of the next delay."""
        return min(self.cap, self.base * (2.0 ** min(self.attempts, 62)))

    def next_delay(self) -> float:
        """The next delay; grows the ceiling for the one after."""
        delay = self._rng() * self.ceiling()
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """Back to the first ceiling (after a stable connection or an explicit reconnect)."""
        self.attempts = 0


# ---------------------------------------------------------------------------------------------
# Command tracking (pure: no I/O, time passed in)
# ---------------------------------------------------------------------------------------------


class Transport(enum.StrEnum):
    """Where a command went."""

    NONE = ""
    WS = "ws"
    HTTP = "http"


_RETRY_AFTER_DROP = frozenset({CommandKind.TAKE_OVER, CommandKind.REFRESH, CommandKind.HISTORY})

UPGRADE_REFUSED = frozenset({400, 405, 426, 501, 502, 503, 504})
"""Handshake statuses a WebSocket-breaking proxy answers with: try REST polling at once."""

_POLL_ERRORS_BEFORE_GIVING_UP = 5


@dataclass(eq=False, slots=True)
class PendingCommand:
    """One command between submit and outcome.

    Attributes:
        command: the command.
        internal: the client's own (resync) command: no Command* events are emitted for it.
        transport: where it went once sent.
        deadline: monotonic time after which it fails with TIMEOUT (WebSocket commands).
        page: the WaitingListPage its answer carried (refresh commands).
    """

    command: Command
    internal: bool = False
    transport: Transport = Transport.NONE
    deadline: float | None = None
    page: WaitingListPage | None = None

    @property
    def kind(self) -> CommandKind:
        """The command's kind."""
        return self.command.kind

    @property
    def conversation(self) -> str:
        """The command's conversation key ("" if none)."""
        return self.command.conversation_key


@dataclass(frozen=True, slots=True)
class Outcome:
    """A command's end: the pending entry and its CommandSucceeded / CommandFailed."""

    pending: PendingCommand
    event: CommandSucceeded | CommandFailed

    @property
    def ok(self) -> bool:
        """True for a success."""
        return isinstance(self.event, CommandSucceeded)


class CommandTracker:
    """The outbox and the outstanding commands, with correlation and timeouts.

    Pure bookkeeping: the client sends what :meth:`take_sendable` returns and feeds answers
    back; every method returns the outcomes it decided, in order.

    Args:
        command_timeout: seconds a sent WebSocket command may wait for its answer.
    """

    def __init__(self, command_timeout: float) -> None:
        self.command_timeout = command_timeout
        self.outbox: deque[PendingCommand] = deque()
        self.outstanding: list[PendingCommand] = []

    def enqueue(self, command: Command, *, internal: bool = False, front: bool = False) -> PendingCommand:
        """Put a command in the outbox (internal resync steps go to the front)."""
        pending = PendingCommand(command, internal=internal)
        if front:
            self.outbox.appendleft(pending)
        else:
            self.outbox.append(pending)
        return pending

    def take_sendable(self, *, live: bool) -> list[PendingCommand]:
        """Remove and return the commands that may go out now, in order.

        Args:
            live: the connection is resynced; otherwise only internal commands may go.

        A command waits while another of the same (kind, conversation) is outstanding, and so
        does every later command of the same conversation (per-conversation order).
        """
        busy = {(p.kind, p.conversation) for p in self.outstanding}
        held: set[str] = set()
        ready: list[PendingCommand] = []
        keep: deque[PendingCommand] = deque()
        for pending in self.outbox:
            key = (pending.kind, pending.conversation)
            blocked = (not live and not pending.internal) or key in busy
            blocked = blocked or (bool(pending.conversation) and pending.conversation in held)
            if blocked:
                if pending.conversation:
                    held.add(pending.conversation)
                keep.append(pending)
                continue
            busy.add(key)
            ready.append(pending)
        self.outbox = keep
        return ready

    def mark_sent(self, pending: PendingCommand, transport: Transport, now: float) -> None:
        """Record that ``pending`` was written (WebSocket) or its HTTP call started."""
        pending.transport = transport
        pending.deadline = now + self.command_timeout if transport is Transport.WS else None
        self.outstanding.append(pending)

    def unsend(self, pending: PendingCommand) -> None:
        """Put back a command that could not be written at all (front of the outbox)."""
        with contextlib.suppress(ValueError):
            self.outstanding.remove(pending)
        pending.transport = Transport.NONE
        pending.deadline = None
        self.outbox.appendleft(pending)

    def oldest(self, kind: CommandKind, conversation: str = "") -> PendingCommand | None:
        """The oldest outstanding WebSocket command of ``kind`` (and conversation, if given)."""
        for pending in self.outstanding:
            if pending.transport is not Transport.WS or pending.kind is not kind:
                continue
            if conversation and pending.conversation and pending.conversation != conversation:
                continue
            return pending
        return None

    def _finish(self, pending: PendingCommand, event: CommandSucceeded | CommandFailed) -> Outcome:
        with contextlib.suppress(ValueError):
            self.outstanding.remove(pending)
        return Outcome(pending, event)

    def acked(self, ack: ServerAcked) -> Outcome | None:
        """Match a success frame to the oldest outstanding command of its kind (+ conversation)."""
        pending = self.oldest(ack.kind, ack.conversation)
        if pending is None:
            return None
        return self._finish(pending, succeeded(pending.command, ack.message_id))

    def rejected(self, rejection: ServerRejected) -> Outcome | None:
        """Match an error frame to the oldest outstanding WebSocket command it can belong to."""
        kinds = set(rejection.kinds)
        for pending in self.outstanding:
            if pending.transport is Transport.WS and (not kinds or pending.kind in kinds):
                text = rejection.text or "the server refused the command"
                return self._finish(pending, failed(pending.command, rejection.reason, text))
        return None

    def answered(self, pending: PendingCommand, events: Sequence[Event], status: int) -> Outcome:
        """The outcome of an HTTP command from its parsed answer (synthesised if absent)."""
        command_id = pending.command.command_id
        for event in events:
            if isinstance(event, CommandSucceeded | CommandFailed) and event.command_id == command_id:
                return self._finish(pending, event)
        if 200 <= status < 300:
            return self._finish(pending, succeeded(pending.command))
        return self._finish(pending, failed(pending.command, FailureReason.SERVER_ERROR, f"HTTP {status}"))

    def fail(self, pending: PendingCommand, reason: FailureReason, text: str) -> Outcome:
        """End ``pending`` (outstanding or not) with a failure."""
        with contextlib.suppress(ValueError):
            self.outbox.remove(pending)
        return self._finish(pending, failed(pending.command, reason, text))

    def expire(self, now: float) -> list[Outcome]:
        """Fail every WebSocket command whose deadline passed (TIMEOUT)."""
        due = [p for p in self.outstanding if p.deadline is not None and p.deadline <= now]
        text = f"no answer from the server within {self.command_timeout:g} s"
        return [self._finish(p, failed(p.command, FailureReason.TIMEOUT, text)) for p in due]

    def next_deadline(self) -> float | None:
        """The earliest command deadline, or None."""
        deadlines = [p.deadline for p in self.outstanding if p.deadline is not None]
        return min(deadlines) if deadlines else None

    def disconnected(self) -> list[Outcome]:
        """The socket dropped: settle what was in flight on it (see the module docstring).

        Unconfirmed REPLY / RELEASE / PING fail with UNCONFIRMED; idempotent kinds go back to the
        front of the outbox in their original order; internal commands are dropped.
        """
        outcomes: list[Outcome] = []
        retry: list[PendingCommand] = []
        for pending in [p for p in self.outstanding if p.transport is Transport.WS or p.internal]:
            self.outstanding.remove(pending)
            if pending.internal:
                continue
            if pending.kind in _RETRY_AFTER_DROP:
                pending.transport, pending.deadline, pending.page = Transport.NONE, None, None
                retry.append(pending)
                continue
            text = "sent, but the connection dropped before the server confirmed it; not resent"
            outcomes.append(Outcome(pending, failed(pending.command, FailureReason.UNCONFIRMED, text)))
        self.outbox = deque([*retry, *(p for p in self.outbox if not p.internal)])
        return outcomes

    def settle_all(self, text: str) -> list[Outcome]:
        """The client stops: queued commands fail OFFLINE, outstanding ones UNCONFIRMED."""
        outcomes = [Outcome(p, failed(p.command, FailureReason.OFFLINE, text)) for p in self.outbox]
        outcomes += [
            Outcome(p, failed(p.command, FailureReason.UNCONFIRMED, f"{text} before the server answered"))
            for p in self.outstanding
        ]
        self.outbox.clear()
        self.outstanding.clear()
        return [o for o in outcomes if not o.pending.internal]


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


class _End(enum.Enum):
    FAILED = "failed"  # retry after a backoff delay
    RETRY_NOW = "retry_now"  # retry at once (credentials being renewed)
    AUTH_REQUIRED = "auth_required"
    CONFIG = "config"
    STOPPED = "stopped"
    LIMITED = "limited"  # WebSocket blocked but REST answers: poll
    PROBE_WS = "probe_ws"  # limited mode: time to try the WebSocket again (no state change)


@dataclass(frozen=True, slots=True)
class _Result:
    end: _End
    detail: str = ""
    lived: float | None = None  # seconds the socket was open, if it opened


Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class _Heartbeat:
    next_ping: float
    ping_sent: float | None = None
    last_rx: float = 0.0


class Client:
    """The network client of one account; implements :class:`~tray_agent.core.ports.CommandSink`.

    Args:
        codec: the dialect codec (org: its ``user_id`` is set from the credentials).
        authenticator: signs in per dialect.
        settings: server, org id, proxy, ca_bundle, timings.
        emit: receives every event, in order, on the event loop; must not block. Exceptions it
            raises are logged and swallowed.
        clock: monotonic time for deadlines; ``now()`` stamps ConnectionChanged.at.
        timings: overrides the timings from ``settings`` (tests use milliseconds).
        sleep: the backoff sleep (tests make it return at once and record the delays).
        rng: jitter source in [0, 1).
        ssl_context: TLS context for https/wss; default: :func:`~tray_agent.net.auth.make_ssl_context`.
        outbox: the durable outbox (replies, take-overs, releases survive a crash); None keeps
            commands in memory only.

    Emits:
        ConnectionChanged: CONNECTING, RESYNCING (socket open, resync running), CONNECTED,
            RECONNECTING (with ``retry_in``), AUTH_REQUIRED, OFFLINE (stopped or bad settings).
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
        self._outbox = outbox
        # Commands persisted in the outbox store (by id) and those sent but never confirmed,
        # which only the agent may resend or discard.
        self._durable: dict[str, Command] = {}
        self._unconfirmed: dict[str, Command] = {}
        self._restored = False
        self._closing = False  # settling at shutdown: queued commands stay in the store
        self._handshake_failures = 0
        self._ws_retried_after_probe = False
        self._limited_mode = False
        self._poller: Poller | None = None
        self._next_poll = 0.0
        self._stop_requested = asyncio.Event()
        self._auth = authenticator
        self._settings = settings
        self._emit_cb = emit
        self._clock = clock
        self._t = timings or Timings.from_settings(settings)
        self._sleep: Sleep = sleep or asyncio.sleep
        self._backoff = Backoff(self._t.backoff_base, self._t.backoff_max, rng)
        self._ssl_override = ssl_context
        self._ssl: ssl.SSLContext | None = None  # built in run(): a bad CA bundle is a state, not a crash
        self._tracker = CommandTracker(self._t.command_timeout)
        self._state: tuple[ConnectionState, str, float | None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: ClientConnection | None = None
        self._credentials: Credentials | None = None
        self._signed_in = False
        self._live = False
        self._running = False
        self._stopping = False
        self._stopped = False
        self._blocked = False
        self._auth_retry_used = False
        self._reconnect_requested = False
        self._after_failure = False
        self._early_drop_used = False
        self._abort_reason = ""
        self._resync_active = False
        self._resync_initial = False
        self._resync_pages = 0
        self._next_resync: float | None = None
        self._next_keepalive: float | None = None
        self._wake = asyncio.Event()
        self._kick = asyncio.Event()
        self._done = asyncio.Event()
        self._http_tasks: dict[asyncio.Task[None], PendingCommand] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._run_task: asyncio.Task[None] | None = None
        self._runner: asyncio.Task[object] | None = None

    # -- public API ------------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The last connection state emitted."""
        return self._state[0] if self._state else ConnectionState.OFFLINE

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
            self._stopped = True
            self._set_state(
                ConnectionState.OFFLINE, f"The CA bundle {self._settings.ca_bundle} cannot be used: {exc}"
            )
            return
        self._running = True
        self._runner = asyncio.current_task()
        self._done.clear()
        self._restore()
        connector = aiohttp.TCPConnector(ssl=self._ssl)
        self._http = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=not self._settings.proxy
        )
        try:
            await self._loop()
        finally:
            await self._shutdown()

    async def stop(self) -> None:
        """Close the socket cleanly (code 1000), settle commands and stop :meth:`run`.

        Queued commands fail with OFFLINE, unconfirmed ones with UNCONFIRMED. Waits for the
        run loop to finish (bounded by the close timeout); safe to call twice or before run.
        """
        self._stopping = True
        self._stop_requested.set()
        self._kick.set()
        self._abort("stopping")
        if self._running:
            if asyncio.current_task() is not self._runner:  # called from inside run(): can't wait
                await self._done.wait()
        elif not self._stopped:
            self._stopped = True
            self._closing = True
            for outcome in self._tracker.settle_all("the client stopped"):
                self._emit(outcome.event)
            self._closing = False
            self._set_state(ConnectionState.OFFLINE, "stopped")

    def request_resync(self, why: str = "") -> None:
        """Run a full resync (every page) now, on the live socket; no-op while offline.

        For events that referred to customers the store does not know. When the client is not
        live, the resync that follows the next (re)connect covers it anyway.
        """
        if self._stopping or not self._live:
            return
        logger.info("Resync requested%s", f": {why}" if why else "")
        self._next_resync = self._clock.monotonic()
        self._wake.set()

    def reconnect_now(self) -> None:
        """Drop the current socket (if any) and reconnect at once, resetting the backoff.

        For sleep/resume and network changes. Does nothing while AUTH_REQUIRED.
        """
        if self._stopping:
            return
        self._reconnect_requested = True
        self._backoff.reset()
        self._kick.set()
        self._abort("reconnect requested")

    def reauthenticate(self) -> None:
        """Leave AUTH_REQUIRED and try again (after new credentials went to the authenticator)."""
        self._blocked = False
        self._auth_retry_used = False
        self._backoff.reset()
        self._kick.set()

    def submit(self, command: Command) -> None:
        """Queue a command; its outcome arrives as events. Never raises.

        With an outbox store, a reply / take-over / release is written to it *before*
        CommandQueued is emitted, so whatever the agent saw as queued survives a crash.
        Emits CommandQueued at once; CommandFailed at once when the dialect cannot express the
        command (EncodeError) or the client has stopped. :class:`ResendCommand` and
        :class:`DiscardCommand` go to :meth:`resend` / :meth:`discard`.
        """
        try:
            if isinstance(command, ResendCommand):
                self.resend(command.command_id)
                return
            if isinstance(command, DiscardCommand):
                self.discard(command.command_id)
                return
            if self._stopped or self._stopping:
                self._emit(_queued(command))
                self._emit(failed(command, FailureReason.OFFLINE, "the client is stopped"))
                return
            try:
                self._codec.encode(command)
            except EncodeError as exc:
                # Before the first sign-in the codec may lack the user id / chat cache: decide
                # when the command is sent instead.
                if self._signed_in:
                    self._emit(_queued(command))
                    self._emit(failed(command, exc.reason, exc.text))
                    return
            durable = self._persist(command)
            self._emit(_queued(command, durable=durable))
            self._tracker.enqueue(command)
            self._wake.set()
        except Exception:
            logger.exception("submit(%s) failed", type(command).__name__)
            with contextlib.suppress(Exception):
                self._emit(failed(command, FailureReason.INVALID, "internal error"))

    def unconfirmed(self) -> list[Command]:
        """Commands sent but never confirmed (this run or a previous one), oldest first."""
        return list(self._unconfirmed.values())

    def resend(self, command_id: str) -> None:
        """The agent chose to send an unconfirmed command again (same id: the same bubble).

        Emits CommandQueued (and later its outcome), or CommandFailed(INVALID) when no
        unconfirmed command has that id. Never raises.
        """
        command = self._unconfirmed.pop(command_id, None)
        if command is None:
            self._emit(_no_such_unconfirmed(command_id))
            return
        if self._stopped or self._stopping:
            self._unconfirmed[command_id] = command
            self._emit(failed(command, FailureReason.OFFLINE, "the client is stopped"))
            return
        durable = self._persist(command)
        self._emit(_queued(command, durable=durable))
        self._tracker.enqueue(command)
        self._wake.set()

    def discard(self, command_id: str) -> None:
        """The agent dropped an unconfirmed (or still queued) command: it is never sent.

        Emits CommandFailed(OFFLINE, "discarded ...") for it, or CommandFailed(INVALID) when no
        such command waits. Never raises.
        """
        command = self._unconfirmed.pop(command_id, None)
        if command is None:
            for pending in list(self._tracker.outbox):
                if pending.command.command_id == command_id and not pending.internal:
                    self._tracker.outbox.remove(pending)
                    command = pending.command
                    break
        if command is None:
            self._emit(_no_such_unconfirmed(command_id))
            return
        self._forget(command_id)
        self._emit(failed(command, FailureReason.OFFLINE, "discarded by the agent; not sent"))

    # -- the durable outbox ----------------------------------------------------------------------

    def _persist(self, command: Command) -> bool:
        """Write ``command`` to the outbox store; True when it is on disk."""
        if self._outbox is None:
            return False
        record = StoredCommand.from_command(command, self._clock.now())
        if record is None:
            return False
        self._durable[command.command_id] = command
        if not self._outbox.add(record):
            logger.warning("the outbox store could not save %s; kept in memory only", command.command_id)
            return False
        return True

    def _forget(self, command_id: str) -> None:
        self._unconfirmed.pop(command_id, None)
        if self._durable.pop(command_id, None) is not None and self._outbox is not None:
            self._outbox.remove(command_id)

    def _mark_sent(self, command: Command) -> None:
        """Record in the store that ``command`` goes out now.

        Before the write: a crash in between makes it unconfirmed, never a silent duplicate.
        """
        if self._outbox is not None and command.command_id in self._durable:
            self._outbox.mark_sent(command.command_id)

    def _record_outcome(self, event: CommandSucceeded | CommandFailed) -> None:
        command_id = event.command_id
        if isinstance(event, CommandFailed) and event.reason is FailureReason.UNCONFIRMED:
            command = self._durable.get(command_id) or self._unconfirmed.get(command_id)
            if command is None:
                return
            self._unconfirmed[command_id] = command
            if self._outbox is not None and command_id in self._durable:
                self._outbox.mark_unconfirmed(command_id)
            return
        if isinstance(event, CommandFailed) and event.reason is FailureReason.OFFLINE and self._closing:
            return  # still queued at shutdown: stays in the store and goes out at the next start
        self._forget(command_id)

    def _restore(self) -> None:
        """Load the store once: queued commands wait for the first resync, unconfirmed ones for the agent.

        A take-over that was sent but not confirmed is queued again (assigning to yourself is
        idempotent on both servers); a reply or release is shown as unconfirmed, never resent.
        """
        if self._restored or self._outbox is None:
            return
        self._restored = True
        try:
            records = self._outbox.pending()
        except Exception:
            logger.exception("reading the outbox store failed")
            return
        for record in records:
            command = record.to_command()
            if command is None:
                continue
            self._durable[command.command_id] = command
            self._emit(_queued(command, durable=True))  # read back from the store: it is on disk
            if record.state is StoredState.QUEUED or command.kind in _RETRY_AFTER_DROP:
                if record.state is not StoredState.QUEUED:
                    self._outbox.add(record)
                self._tracker.enqueue(command)
                continue
            self._unconfirmed[command.command_id] = command
            if record.state is not StoredState.UNCONFIRMED:
                self._outbox.mark_unconfirmed(command.command_id)
            text = "sent before the app stopped, but the server never confirmed it; resend or discard it"
            self._emit(failed(command, FailureReason.UNCONFIRMED, text))
        if records:
            logger.info("outbox store: %d command(s) restored", len(records))
            self._wake.set()

    # -- emission and state ----------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if isinstance(event, CommandSucceeded | CommandFailed) and (
            event.command_id in self._durable or event.command_id in self._unconfirmed
        ):
            try:
                self._record_outcome(event)
            except Exception:
                logger.exception("recording the outcome of %s failed", event.command_id)
        self._catch_up.observe(event)
        try:
            self._emit_cb(event)
        except Exception:
            logger.exception("event consumer failed on %s", event.event_name)

    def _set_state(self, state: ConnectionState, detail: str = "", retry_in: float | None = None) -> None:
        new = (state, detail, retry_in)
        if new == self._state:
            return
        self._state = new
        self._emit(ConnectionChanged(state=state, detail=detail, retry_in=retry_in, at=self._clock.now()))

    def _abort(self, reason: str) -> None:
        if self._ws is not None and not self._abort_reason:
            self._abort_reason = reason
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            if self._blocked:
                self._kick.clear()
                await self._kick.wait()
                continue
            try:
                result = await self._attempt()
                if result.end is _End.LIMITED:
                    result = await self._limited(result.detail)
            except Exception:
                logger.exception("unexpected error in the connection loop")
                result = _Result(_End.FAILED, "internal error")
            if self._stopping or result.end is _End.STOPPED:
                break
            if result.end is _End.PROBE_WS:
                continue
            if result.end is _End.AUTH_REQUIRED:
                self._blocked = True
                logger.warning("sign-in needed: %s", result.detail)
                self._set_state(ConnectionState.AUTH_REQUIRED, result.detail)
                continue
            if result.end is _End.CONFIG:
                self._blocked = True
                logger.warning("cannot connect: %s", result.detail)
                self._set_state(ConnectionState.OFFLINE, result.detail)
                continue
            if self._reconnect_requested:
                self._reconnect_requested = False
                self._after_failure = False
                self._set_state(ConnectionState.CONNECTING, "reconnecting now")
                continue
            if result.end is _End.RETRY_NOW:
                self._set_state(ConnectionState.CONNECTING, result.detail)
                continue
            if result.lived is not None:
                if result.lived >= self._t.stable_after:
                    self._backoff.reset()
                    self._early_drop_used = False
                elif (
                    self._after_failure
                    and not self._early_drop_used
                    and result.lived < self._t.early_drop_window
                ):
                    self._early_drop_used = True
                    logger.info(
                        "connection dropped soon after a reconnect (%s); retrying at once", result.detail
                    )
                    self._set_state(ConnectionState.CONNECTING, result.detail)
                    continue
            self._after_failure = True
            delay = self._backoff.next_delay()
            logger.info("connection lost: %s; retrying in %.1f s", result.detail, delay)
            self._set_state(ConnectionState.RECONNECTING, result.detail, round(delay, 3))
            await self._wait_backoff(delay)

    async def _wait_backoff(self, delay: float) -> None:
        self._kick.clear()
        if self._stopping or self._reconnect_requested or not self._running:
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
        self._reconnect_requested = False
        if not self._limited_mode and (
            self._state is None or self._state[0] is not ConnectionState.CONNECTING
        ):
            self._set_state(ConnectionState.CONNECTING)
        assert self._http is not None
        try:
            credentials = await self._auth.credentials(self._http)
        except AuthRefused as exc:
            return _Result(_End.AUTH_REQUIRED, exc.text)
        except AuthError as exc:
            return _Result(_End.FAILED, exc.text)
        self._credentials = credentials
        self._signed_in = True
        if credentials.user_id and hasattr(self._codec, "user_id"):
            self._codec.user_id = credentials.user_id
        try:
            url = ws_url(self._settings, self._codec.dialect, credentials)
        except ConfigError as exc:
            return _Result(_End.CONFIG, str(exc))
        if self._stopping:
            return _Result(_End.STOPPED)
        headers = {}
        if credentials.cookie:
            headers = credentials.http_headers()
        try:
            ws = await connect(
                url,
                additional_headers=headers,
                max_size=self._codec.max_frame_size,
                max_queue=16,
                open_timeout=self._t.open_timeout,
                close_timeout=self._t.close_timeout,
                ping_interval=self._t.protocol_ping_interval,
                ping_timeout=self._t.protocol_ping_timeout,
                proxy=self._settings.proxy or True,
                ssl=self._ssl if url.startswith("wss:") else None,
                logger=_wire_logger,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                if not self._auth_retry_used:
                    self._auth_retry_used = True
                    self._auth.invalidate()
                    logger.info("handshake refused (HTTP %d); renewing the credentials once", status)
                    return _Result(_End.RETRY_NOW, f"HTTP {status}: signing in again")
                return _Result(_End.AUTH_REQUIRED, f"the server refused the credentials (HTTP {status})")
            return await self._handshake_failed(
                f"handshake refused (HTTP {status})", refused=status in UPGRADE_REFUSED
            )
        except InvalidURI:
            return _Result(_End.CONFIG, "invalid server address")
        except (OSError, TimeoutError, InvalidHandshake, ssl.SSLError) as exc:
            if isinstance(exc, ssl.SSLError):
                return _Result(_End.FAILED, classify_network_error(exc, "connect").text)
            return await self._handshake_failed(_describe(exc), refused=False)
        self._auth_retry_used = False
        self._handshake_failures = 0
        self._ws_retried_after_probe = False
        if self._limited_mode:
            logger.info("the WebSocket works again; leaving limited mode")
        self._limited_mode = False
        self._poller = None  # a later limited mode starts from a fresh baseline
        logger.info("connected to %s", redact_url(url))
        return await self._session(ws)

    # -- limited mode (REST fallback) ------------------------------------------------------------

    async def _handshake_failed(self, detail: str, *, refused: bool) -> _Result:
        """A handshake failed for a reason other than the credentials: poll over REST if it answers.

        An "upgrade refused" status (a proxy that breaks WebSockets) tries REST at once; other
        failures after ``limited_after`` in a row; in limited mode every failed retry goes back
        to polling at once.
        """
        self._handshake_failures += 1
        if not (refused or self._limited_mode or self._handshake_failures >= self._t.limited_after):
            return _Result(_End.FAILED, detail)
        if self._stopping:
            return _Result(_End.STOPPED)
        if self._poller is None:
            self._poller = Poller(self._poll_call)
        try:
            answers = await self._poller.probe()
        except AuthRefused as exc:
            return _Result(_End.AUTH_REQUIRED, exc.text)
        except AuthError as exc:
            return _Result(_End.FAILED, f"{detail}; {exc.text}")
        if not answers:
            self._limited_mode = False
            return _Result(_End.FAILED, detail)
        if not refused and not self._limited_mode and not self._ws_retried_after_probe:
            # The socket could not even connect, yet REST answers now: most likely the server
            # just came back from an outage. One more WebSocket try before calling it blocked.
            self._ws_retried_after_probe = True
            return _Result(_End.RETRY_NOW, "the server answers again")
        return _Result(_End.LIMITED, detail)

    async def _poll_call(self, command: Command) -> Sequence[Event]:
        """One internal REST call of the poller. Raises PollError, AuthRefused, AuthError."""
        try:
            call = rest_call(self._codec, command)
            status, body = await self._http_call(call)
        except EncodeError as exc:
            raise PollError(exc.text) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise PollError(classify_network_error(exc, "request").text) from None
        return self._codec.parse_response(command, status, body)

    async def _limited(self, detail: str) -> _Result:
        """Poll over REST until the WebSocket is worth another try, or polling fails for good.

        Commands go over REST meanwhile. Returns PROBE_WS every ``ws_retry_interval`` (and on
        :meth:`reconnect_now`), STOPPED, AUTH_REQUIRED, or FAILED after repeated poll errors.
        Cancellation propagates.
        """
        assert self._poller is not None
        poller = self._poller
        first = not self._limited_mode
        self._limited_mode = True
        if first:
            logger.warning("WebSocket unavailable (%s); limited mode: polling over REST", detail)
        self._set_state(
            ConnectionState.LIMITED,
            f"WebSocket blocked ({detail}); polling every {self._t.poll_interval:g} s",
        )
        self._live = True
        retry_ws_at = self._clock.monotonic() + self._t.ws_retry_interval
        errors = 0
        # A failed WebSocket retry comes back here: keep the poll rhythm instead of polling at once.
        next_poll = self._clock.monotonic() if first else self._next_poll
        try:
            while not self._stopping:
                self._wake.clear()
                if self._reconnect_requested:
                    return _Result(_End.PROBE_WS)
                self._flush_rest()
                now = self._clock.monotonic()
                if now >= retry_ws_at:
                    return _Result(_End.PROBE_WS)
                if now >= next_poll:
                    try:
                        events = await self._unless_stopped(poller.poll())
                        if events is None:
                            break
                    except AuthRefused as exc:
                        return _Result(_End.AUTH_REQUIRED, exc.text)
                    except (PollError, AuthError) as exc:
                        errors += 1
                        text = exc.text if isinstance(exc, AuthError) else str(exc)
                        logger.info("limited mode: poll failed (%d in a row): %s", errors, text)
                        if errors >= _POLL_ERRORS_BEFORE_GIVING_UP:
                            return _Result(_End.FAILED, f"polling failed: {text}")
                        delay = min(
                            self._t.poll_interval * 2.0**errors,
                            max(self._t.backoff_max, self._t.poll_interval),
                        )
                    else:
                        errors = 0
                        delay = self._t.poll_interval
                        for event in events:
                            self._emit(event)
                    next_poll = self._next_poll = self._clock.monotonic() + delay
                    continue
                await self._wait_for_wake(min(next_poll, retry_ws_at))
            return _Result(_End.STOPPED)
        finally:
            self._live = False

    async def _unless_stopped(self, coro: Awaitable[list[Event]]) -> list[Event] | None:
        """Await ``coro``, or give up on it (None) as soon as :meth:`stop` is called."""
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

    def _flush_rest(self) -> None:
        """Send what the outbox allows, each command as its REST call (limited mode)."""
        for pending in self._tracker.take_sendable(live=True):
            try:
                call = rest_call(self._codec, pending.command)
            except EncodeError as exc:
                if pending.kind in (CommandKind.TAKE_OVER, CommandKind.RELEASE):
                    text = (
                        "not possible in limited mode (this network blocks the live connection); "
                        "a reply assigns the customer to you"
                    )
                    self._settle(self._tracker.fail(pending, FailureReason.OFFLINE, text))
                else:
                    self._settle(self._tracker.fail(pending, exc.reason, exc.text))
                continue
            self._start_http(pending, call)
            self._announce_sent(pending)

    # -- one connection --------------------------------------------------------------------------

    async def _session(self, ws: ClientConnection) -> _Result:
        opened = self._clock.monotonic()
        self._ws = ws
        self._abort_reason = "stopping" if self._stopping else ""
        self._live = False
        self._set_state(ConnectionState.RESYNCING)
        self._start_resync(initial=True)
        beat = _Heartbeat(next_ping=opened + self._t.heartbeat_interval, last_rx=opened)
        interval = self._auth.keepalive_interval
        self._next_keepalive = opened + interval if interval else None
        reader = asyncio.ensure_future(self._read_loop(ws, beat))
        keeper = asyncio.ensure_future(self._housekeeping(ws, beat))
        try:
            await asyncio.wait({reader, keeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, keeper):
                task.cancel()
            results = await asyncio.gather(reader, keeper, return_exceptions=True)
            for res in results:
                if isinstance(res, Exception):
                    logger.error("connection task failed: %r", res)
            self._live = False
            self._ws = None
            self._resync_active = False
            with contextlib.suppress(Exception):
                await ws.close()
            for task, pending in list(self._http_tasks.items()):
                if pending.internal:
                    task.cancel()
            if not self._stopping:  # when stopping, _shutdown settles everything at once
                for outcome in self._tracker.disconnected():
                    self._emit(outcome.event)
        lived = self._clock.monotonic() - opened
        detail = self._abort_reason or _close_detail(ws)
        close_sent = getattr(ws.protocol, "close_sent", None)
        if close_sent is not None and close_sent.code == 1009:
            self._emit(Ignored(kind="oversized", why=f"frame larger than {self._codec.max_frame_size} bytes"))
            detail = "the server sent an oversized frame"
        if self._stopping:
            return _Result(_End.STOPPED)
        return _Result(_End.FAILED, detail, lived)

    async def _read_loop(self, ws: ClientConnection, beat: _Heartbeat) -> None:
        """Read frames until the socket closes (returns; ConnectionClosed is swallowed).

        Frames already buffered are handed out without yielding to the event loop, so a burst
        (one socket read holds hundreds of frames) would keep the GUI from painting; the loop
        therefore yields once every ``READ_SLICE`` seconds of work.
        """
        slice_started = time.perf_counter()
        try:
            async for message in ws:
                beat.last_rx = self._clock.monotonic()
                if self._on_frame(message):
                    await ws.send(self._codec.pong_frame())
                if time.perf_counter() - slice_started >= READ_SLICE:
                    await asyncio.sleep(0)  # let Qt paint and run its timers between slices
                    slice_started = time.perf_counter()
        except ConnectionClosed:
            return

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
                    pending.page = event
                self._emit(event)
            else:
                self._emit(event)
        if woke:
            self._wake.set()
        return want_pong

    def _settle(self, outcome: Outcome) -> None:
        if outcome.pending.internal:
            self._resync_step(outcome)
        else:
            self._emit(outcome.event)

    async def _housekeeping(self, ws: ClientConnection, beat: _Heartbeat) -> None:
        """Send the outbox, pings, timeouts, periodic resync and session keepalive.

        Returns when the socket must be dropped (abort request, dead heartbeat). Cancellation
        propagates.
        """
        while True:
            self._wake.clear()
            if self._abort_reason:
                return
            now = self._clock.monotonic()
            if beat.ping_sent is not None and now >= beat.ping_sent + self._t.heartbeat_timeout:
                if beat.last_rx < beat.ping_sent:
                    self._abort_reason = "no answer to the heartbeat"
                    logger.info("heartbeat: nothing received for %.1f s after a ping", now - beat.ping_sent)
                    return
                beat.ping_sent = None
            if now >= beat.next_ping:
                beat.next_ping = now + self._t.heartbeat_interval
                if beat.ping_sent is None:
                    beat.ping_sent = now
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(self._codec.ping_frame())
            for outcome in self._tracker.expire(now):
                self._settle(outcome)
            if (
                self._live
                and not self._resync_active
                and self._next_resync is not None
                and now >= self._next_resync
            ):
                self._start_resync(initial=False)
            if self._next_keepalive is not None and now >= self._next_keepalive:
                interval = self._auth.keepalive_interval or 0.0
                self._next_keepalive = now + interval if interval else None
                self._spawn_side(self._keepalive())
            await self._flush(ws)
            if self._abort_reason:
                return
            deadlines = [beat.next_ping]
            if beat.ping_sent is not None:
                deadlines.append(beat.ping_sent + self._t.heartbeat_timeout)
            command_deadline = self._tracker.next_deadline()
            if command_deadline is not None:
                deadlines.append(command_deadline)
            if self._live and self._next_resync is not None and not self._resync_active:
                deadlines.append(self._next_resync)
            if self._next_keepalive is not None:
                deadlines.append(self._next_keepalive)
            await self._wait_for_wake(min(deadlines))

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

    def _start_http(self, pending: PendingCommand, call: HttpCall) -> None:
        """Mark a command sent (memory and the durable outbox) and start its HTTP call."""
        self._tracker.mark_sent(pending, Transport.HTTP, self._clock.monotonic())
        self._mark_sent(pending.command)
        task = asyncio.ensure_future(self._http_command(pending, call))
        self._http_tasks[task] = pending
        task.add_done_callback(self._http_tasks.pop)

    def _announce_sent(self, pending: PendingCommand) -> None:
        """CommandSent for the agent's own commands (internal resync/ping ones stay silent)."""
        if not pending.internal:
            command = pending.command
            self._emit(
                CommandSent(
                    command_id=command.command_id, kind=command.kind, conversation=command.conversation_key
                )
            )

    async def _flush(self, ws: ClientConnection) -> None:
        for pending in self._tracker.take_sendable(live=self._live):
            try:
                outbound = self._codec.encode(pending.command)
            except EncodeError as exc:
                self._settle(self._tracker.fail(pending, exc.reason, exc.text))
                continue
            except Exception:
                logger.exception("encoding %s failed", type(pending.command).__name__)
                self._settle(self._tracker.fail(pending, FailureReason.INVALID, "internal error"))
                continue
            if isinstance(outbound, WsFrame):
                if ws.state is not State.OPEN:
                    self._tracker.unsend(pending)
                    break
                self._tracker.mark_sent(pending, Transport.WS, self._clock.monotonic())
                self._mark_sent(pending.command)
                try:
                    await ws.send(outbound.text)
                except ConnectionClosed:
                    # It may have been written: an unconfirmed command, settled on disconnect.
                    break
            else:
                self._start_http(pending, outbound)
            self._announce_sent(pending)

    def _spawn_side(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _keepalive(self) -> None:
        if self._http is not None:
            await self._auth.keepalive(self._http)

    # -- resync ----------------------------------------------------------------------------------

    def _start_resync(self, *, initial: bool) -> None:
        self._resync_active = True
        self._resync_initial = initial
        self._resync_pages = 0
        self._catch_up.resync_started()
        self._tracker.enqueue(RefreshWaitingList(offset=0, limit=RESYNC_PAGE), internal=True, front=True)
        self._wake.set()

    def _resync_step(self, outcome: Outcome) -> None:
        """An internal resync command ended: ask for the next page or finish."""
        if not self._resync_active:
            return
        if not outcome.ok:
            text = outcome.event.text if isinstance(outcome.event, CommandFailed) else ""
            self._resync_active = False
            if self._resync_initial:
                self._abort(f"resync failed: {text}")
            else:
                logger.info("periodic resync failed: %s", text)
                self._schedule_resync()
            return
        page = outcome.pending.page
        self._resync_pages += 1
        if page is not None and page.has_more and self._resync_pages < _MAX_RESYNC_PAGES:
            offset = page.offset + len(page.customers)
            self._tracker.enqueue(
                RefreshWaitingList(offset=offset, limit=RESYNC_PAGE), internal=True, front=True
            )
            self._wake.set()
            return
        self._resync_active = False
        self._schedule_resync()
        self._spawn_side(self._catch_up.run(self._http_call, self._emit))
        if self._resync_initial:
            self._live = True
            self._set_state(ConnectionState.CONNECTED)
            self._wake.set()

    def _schedule_resync(self) -> None:
        interval = self._t.resync_interval
        self._next_resync = self._clock.monotonic() + interval if interval else None

    # -- HTTP ------------------------------------------------------------------------------------

    async def _http_command(self, pending: PendingCommand, call: HttpCall) -> None:
        """Carry out one HTTP command and settle it. Cancellation settles it as UNCONFIRMED."""
        command = pending.command
        try:
            status, body = await self._http_call(call)
        except asyncio.CancelledError:
            if not pending.internal and pending in self._tracker.outstanding:
                self._settle(self._tracker.fail(pending, FailureReason.UNCONFIRMED, "cancelled"))
            raise
        except AuthRefused as exc:
            self._settle(self._tracker.fail(pending, FailureReason.ACCESS_DENIED, exc.text))
            return
        except (AuthError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._settle(self._http_failure(pending, exc))
            return
        events = self._codec.parse_response(command, status, body)
        outcome = self._tracker.answered(pending, events, status)
        for event in events:
            if isinstance(event, WaitingListPage):
                pending.page = event  # before the outcome: the resync step reads it
        for event in events:
            if event is outcome.event:
                self._settle(outcome)
            elif isinstance(event, ServerAcked | ServerRejected):
                continue
            else:
                self._emit(event)
        if outcome.event not in events:
            self._settle(outcome)
        self._wake.set()

    def _http_failure(self, pending: PendingCommand, exc: BaseException) -> Outcome:
        if isinstance(exc, TimeoutError):
            return self._tracker.fail(
                pending, FailureReason.TIMEOUT, f"no answer from the server within {self._t.http_timeout:g} s"
            )
        error = exc if isinstance(exc, AuthError) else classify_network_error(exc, "request")
        logger.info(
            "%s %s failed: %s", type(pending.command).__name__, pending.command.command_id, error.text
        )
        if isinstance(exc, aiohttp.ClientConnectorError) or isinstance(error, TlsError):
            return self._tracker.fail(pending, FailureReason.OFFLINE, error.text)
        if pending.kind is CommandKind.REPLY:
            return self._tracker.fail(pending, FailureReason.UNCONFIRMED, error.text)
        return self._tracker.fail(pending, FailureReason.SERVER_ERROR, error.text)

    async def _http_call(self, call: HttpCall) -> tuple[int, bytes]:
        """Perform ``call`` with credentials; on 401 renew them once and retry once.

        Raises:
            AuthError, aiohttp.ClientError, OSError, TimeoutError. Bounded by ``http_timeout``
            per request; cancellation propagates.
        """
        assert self._http is not None
        credentials = await self._auth.credentials(self._http)
        status, body = await self._http_once(call, credentials)
        if status == 401:
            logger.info("%s %s: HTTP 401; renewing the credentials once", call.method, call.path)
            self._auth.invalidate()
            credentials = await self._auth.credentials(self._http)
            status, body = await self._http_once(call, credentials)
        return status, body

    async def _http_once(self, call: HttpCall, credentials: Credentials) -> tuple[int, bytes]:
        assert self._http is not None
        url = http_base(self._settings) + call.path
        data: aiohttp.FormData | None = None
        if call.form is not None:
            data = aiohttp.FormData(default_to_multipart=True)
            for name, value in call.form:
                data.add_field(name, value)
            for part in call.files:
                data.add_field(
                    part.name, part.content, filename=part.filename, content_type=part.content_type
                )
        async with self._http.request(
            call.method,
            url,
            params=list(call.query),
            headers={"Accept": "application/json", **credentials.http_headers()},
            json=call.json if data is None and call.json is not None else None,
            data=data,
            proxy=self._settings.proxy or None,
            timeout=aiohttp.ClientTimeout(total=self._t.http_timeout),
            allow_redirects=False,
        ) as response:
            return response.status, await response.read()

    # -- shutdown --------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        tasks: list[asyncio.Task[None]] = [*self._http_tasks, *self._side_tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._closing = True
        for outcome in self._tracker.settle_all("the client stopped"):
            self._emit(outcome.event)
        self._closing = False
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.close()
            self._http = None
        self._running = False
        self._stopped = self._stopping
        self._set_state(ConnectionState.OFFLINE, "stopped" if self._stopping else "")
        self._done.set()


def _queued(command: Command, *, durable: bool = False) -> CommandQueued:
    return CommandQueued(
        command_id=command.command_id,
        kind=command.kind,
        conversation=command.conversation_key,
        text=command.text if isinstance(command, SendReply) else "",
        durable=durable,
    )


def _no_such_unconfirmed(command_id: str) -> CommandFailed:
    return CommandFailed(
        command_id=command_id,
        kind=CommandKind.REPLY,
        reason=FailureReason.INVALID,
        text="no unconfirmed or queued command has this id",
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "server unreachable (connection refused)"
    if isinstance(exc, OSError):
        return f"server unreachable ({exc.strerror or type(exc).__name__})"
    return f"handshake failed ({type(exc).__name__})"


def _close_detail(ws: ClientConnection) -> str:
    code = ws.close_code
    if code is None or code == 1006:
        return "connection lost"
    reason = ws.close_reason
    return f"closed by the server ({code}{': ' + reason if reason else ''})"
