"""The connection that never gives up: reconnect loop, heartbeat watchdog, outbox, resync, correlation.

One :class:`Client` per account. It signs in through an :class:`~tray_agent.net.auth.Authenticator`,
opens one WebSocket (never two: the old one is closed before a new one opens, G4), resyncs the
waiting list before it trusts deltas, forwards the dialect codec's events to ``emit`` in order, and
carries commands out (WebSocket frames or HTTP calls), translating the dialect's answers into
CommandSucceeded / CommandFailed with the command's id.

Plain asyncio only (it runs on a qasync loop in the app): no threads, no per-frame tasks. The
life-cycle decisions (phases, backoff, heartbeat, credential refusals, limited mode, redirects,
"signed in elsewhere", stop) are made by the pure :class:`~tray_agent.net.connection.ConnectionMachine`;
this module carries out its actions (sockets, HTTP, waits) and owns the outbox and the resync.

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
* **Signed in elsewhere** (dashboard, one socket per user): any other close that the codec calls
  displacing (an empty Close frame, 1005) means another client of my user holds the socket: the
  state is SIGNED_IN_ELSEWHERE and nothing is retried until :meth:`Client.reconnect_now`.
* **Redirects** on the handshake: a same-host ws -> wss upgrade is followed once per attempt;
  any other (captive portal, another host) is a failed handshake, retried with backoff.
* **REST refusals**: a REST call still refused after renewing the credentials once (401, or
  the re-login refused) ends the connection in AUTH_REQUIRED at once.
* **The outbox store failing** (disk full): a command whose row cannot be marked SENT is not
  sent (its row still says QUEUED; a restart would send it again): it stays queued, in order,
  and is tried again every ``store_retry``. Failed deletes of finished rows are retried too.
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
from dataclasses import dataclass, replace
from functools import partial
from urllib.parse import urlsplit, urlunsplit

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
    CommandDiscarded,
    CommandFailed,
    CommandKind,
    CommandQueued,
    CommandRetried,
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
from tray_agent.core.protocol import codec_for
from tray_agent.core.protocol.auth import redact_url
from tray_agent.core.protocol.base import (
    DialectCodec,
    EncodeError,
    HttpCall,
    Outbound,
    Plan,
    UrlError,
    WsFrame,
)
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
from tray_agent.net.connection import (
    Action,
    Backoff,
    ConnectionMachine,
    DropSocket,
    EmitState,
    Ended,
    Ending,
    Finish,
    MachineTimings,
    Phase,
    RenewCredentials,
    SendPing,
    WaitBackoff,
    WaitForAgent,
)
from tray_agent.net.polling import Poller, PollError, rest_call

logger = logging.getLogger(__name__)

RESYNC_PAGE = 200
READ_SLICE = 0.006  # seconds of frame handling (reducing included) before the read loop yields to the GUI
_MAX_RESYNC_PAGES = 500
EVERYONE_PAGE = 100
"""Rows of the one REST page of all customers read after a connection's first resync (see
:meth:`Client._list_everyone`): the most recently active, bounded to one request."""
# WORKAROUND(qasync coarse timers): asyncio timers may fire a little early (python/cpython#127859),
# and qasync runs them on Qt coarse timers (about 5 % slack). Waits for a deadline are this much
# longer, so one wake-up meets it; deadlines (pings, heartbeats, command timeouts) are therefore
# met up to 6 %, at most 1 s, late.
TIMER_PADDING = 0.06
TIMER_PADDING_MAX = 1.0

MAX_BATCH = 256
"""Events handed to the store in one batch at most (reduced in one transaction)."""

BATCH_SLICE = 0.001
"""Seconds of parsing after which a batch is delivered (reducing it takes about twice that): a
batch of about 100 frames, parsed and reduced in about 3 ms, so that a slice holds one or two."""


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
    """The dialect codec's WebSocket URL for ``settings`` (see ``DialectCodec.ws_url``).

    Kept for callers that hold a dialect rather than a codec; the client asks its own codec.

    Raises:
        ConfigError: as :func:`http_base`, or the codec cannot build the URL (no organization id).
    """
    return _codec_ws_url(codec_for(dialect), settings, credentials)


def _codec_ws_url(codec: DialectCodec, settings: ConnectionSettings, credentials: Credentials) -> str:
    try:
        return codec.ws_url(http_base(settings), token=credentials.token, org=settings.org)
    except UrlError as exc:
        raise ConfigError(str(exc)) from None


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
        store_retry: a command the outbox store cannot mark as sent waits this long (unsent)
            before the next try; failed deletes of finished rows are retried as often.
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
    store_retry: float = 5.0

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


# ---------------------------------------------------------------------------------------------
# Command tracking (pure: no I/O, time passed in)
# ---------------------------------------------------------------------------------------------


class Transport(enum.StrEnum):
    """Where a command went."""

    NONE = ""
    WS = "ws"
    HTTP = "http"


# Idempotent kinds: sent again after a drop, or after a restart that left them unconfirmed.
_RETRY_AFTER_DROP = frozenset(
    {
        CommandKind.TAKE_OVER,
        CommandKind.RESOLVE,
        CommandKind.HAND_BACK,
        CommandKind.REFRESH,
        CommandKind.HISTORY,
    }
)

UPGRADE_REFUSED = frozenset({400, 405, 426, 501, 502, 503, 504})
"""Handshake statuses a WebSocket-breaking proxy answers with: try REST polling at once."""

_POLL_ERRORS_BEFORE_GIVING_UP = 5


class _Held:
    """A step not taken: the store could not record that the command goes out (see ``_hold``)."""


HELD = _Held()


@dataclass(eq=False, slots=True)
class PendingCommand:
    """One command between submit and outcome.

    Attributes:
        command: the command.
        internal: the client's own (resync) command: no Command* events are emitted for it.
        transport: where it went once sent.
        deadline: monotonic time after which it fails with TIMEOUT (WebSocket commands).
        page: the WaitingListPage its answer carried (refresh commands).
        hold_until: monotonic time before which it may not go out (the store could not record
            that it is sent); it keeps its place and holds its conversation meanwhile.
        step: the next step of a multi-step command (:class:`~tray_agent.core.protocol.base.Plan`).
    """

    command: Command
    internal: bool = False
    transport: Transport = Transport.NONE
    deadline: float | None = None
    page: WaitingListPage | None = None
    hold_until: float = 0.0
    step: int = 0

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

    def take_sendable(self, *, live: bool, now: float = 0.0) -> list[PendingCommand]:
        """Remove and return the commands that may go out now, in order.

        Args:
            live: the connection is resynced; otherwise only internal commands may go.
            now: monotonic time, for commands held until later (``hold_until``).

        A command waits while another of the same (kind, conversation) is outstanding, and so
        does every later command of the same conversation (per-conversation order).
        """
        busy = {(p.kind, p.conversation) for p in self.outstanding}
        held: set[str] = set()
        ready: list[PendingCommand] = []
        keep: deque[PendingCommand] = deque()
        for pending in self.outbox:
            if pending.hold_until and pending.hold_until <= now:
                pending.hold_until = 0.0
            key = (pending.kind, pending.conversation)
            blocked = (not live and not pending.internal) or key in busy or pending.hold_until > now
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

    def put_back(self, pendings: Sequence[PendingCommand]) -> None:
        """Return commands taken by :meth:`take_sendable` but not sent, in order, to the front."""
        for pending in reversed(pendings):
            pending.transport = Transport.NONE
            pending.deadline = None
            self.outbox.appendleft(pending)

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
        """The earliest command deadline (or end of a hold), or None."""
        deadlines = [p.deadline for p in self.outstanding if p.deadline is not None]
        deadlines += [p.hold_until for p in self.outbox if p.hold_until]
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
        self._outbox = outbox
        # Commands persisted in the outbox store (by id) and those sent but never confirmed,
        # which only the agent may resend or discard.
        self._durable: dict[str, Command] = {}
        self._unconfirmed: dict[str, Command] = {}
        self._on_disk: set[str] = set()  # ids that may have a row in the outbox store
        self._unremoved: set[str] = set()  # finished commands whose row could not be deleted yet
        self._held: set[str] = set()  # commands shown as not saved because the store cannot mark them sent
        self._store_retry_at = 0.0
        self._restored = False
        self._closing = False  # settling at shutdown: queued commands stay in the store
        self._poller: Poller | None = None
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
            MachineTimings(
                heartbeat_interval=self._t.heartbeat_interval,
                heartbeat_timeout=self._t.heartbeat_timeout,
                stable_after=self._t.stable_after,
                early_drop_window=self._t.early_drop_window,
                limited_after=self._t.limited_after,
                poll_interval=self._t.poll_interval,
                ws_retry_interval=self._t.ws_retry_interval,
                backoff_max=self._t.backoff_max,
                poll_errors_before_giving_up=_POLL_ERRORS_BEFORE_GIVING_UP,
            ),
            Backoff(self._t.backoff_base, self._t.backoff_max, rng),
        )
        self._ssl_override = ssl_context
        self._ssl: ssl.SSLContext | None = None  # built in run(): a bad CA bundle is a state, not a crash
        self._tracker = CommandTracker(self._t.command_timeout)
        self._http: aiohttp.ClientSession | None = None
        self._ws: ClientConnection | None = None
        self._credentials: Credentials | None = None
        self._signed_in = False
        self._running = False  # run() is active
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
        self._apply(self._m.stop())
        self._stop_requested.set()
        self._kick.set()
        if self._running:
            if asyncio.current_task() is not self._runner:  # called from inside run(): can't wait
                await self._done.wait()
        elif not self._stopped:
            self._closing = True
            for outcome in self._tracker.settle_all("the client stopped"):
                self._emit(outcome.event)
            self._closing = False
            self._apply(self._m.stopped(requested=True))

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
            if isinstance(command, SendReply) and command.retry_of:
                self._emit(
                    CommandRetried(
                        command_id=command.retry_of,
                        retried_as=command.command_id,
                        conversation=command.conversation,
                    )
                )
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

        Emits CommandDiscarded for it, or CommandFailed(INVALID) when no such command waits.
        Never raises.
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
        self._emit(
            CommandDiscarded(command_id=command_id, kind=command.kind, conversation=command.conversation_key)
        )

    # -- the durable outbox ----------------------------------------------------------------------

    def _store_write(self, what: str, command_id: str, write: Callable[[], object]) -> bool:
        """One write to the outbox store; False when it raised or answered False (disk full ...)."""
        try:
            ok = write() is not False
        except Exception as exc:
            logger.warning("the outbox store failed %s %s: %s", what, command_id, exc)
            return False
        if not ok:
            logger.warning("the outbox store failed %s %s", what, command_id)
        return ok

    def _persist(self, command: Command) -> bool:
        """Write ``command`` to the outbox store; True when it is on disk."""
        if self._outbox is None:
            return False
        outbox = self._outbox
        record = StoredCommand.from_command(command, self._clock.now())
        if record is None:
            return False
        self._durable[command.command_id] = command
        if self._store_write("saving", command.command_id, partial(outbox.add, record)):
            self._on_disk.add(command.command_id)
            return True
        if command.command_id not in self._on_disk:
            logger.warning("the outbox store could not save %s; kept in memory only", command.command_id)
        return False  # this state of it is not on disk (a restored row may be, in an older state)

    def _forget(self, command_id: str) -> None:
        self._held.discard(command_id)
        self._unconfirmed.pop(command_id, None)
        self._durable.pop(command_id, None)
        self._remove_row(command_id)

    def _remove_row(self, command_id: str) -> None:
        """Delete a finished command's row; a failed delete is retried (a left QUEUED row would be sent)."""
        if self._outbox is None or command_id not in self._on_disk:
            return
        outbox = self._outbox
        if self._store_write("removing", command_id, partial(outbox.remove, command_id)):
            self._on_disk.discard(command_id)
            self._unremoved.discard(command_id)
        else:
            self._unremoved.add(command_id)

    def _retry_store(self, now: float) -> None:
        """Retry the deletes that failed, at most every ``store_retry`` seconds."""
        if self._unremoved and now >= self._store_retry_at:
            self._store_retry_at = now + self._t.store_retry
            for command_id in list(self._unremoved):
                if command_id not in self._durable:
                    self._remove_row(command_id)

    def _mark_sent(self, command: Command) -> bool:
        """Record in the store that ``command`` goes out now; False: it must not go out.

        Before the write: a crash in between makes it unconfirmed, never a silent duplicate. If
        the row cannot say SENT, it still says QUEUED, and a restart would send the command a
        second time: so it is not sent now (held, and tried again later).
        """
        if self._outbox is None or command.command_id not in self._on_disk:
            return True
        outbox = self._outbox
        return self._store_write(
            "marking sent", command.command_id, partial(outbox.mark_sent, command.command_id)
        )

    def _hold(self, pending: PendingCommand, rest: Sequence[PendingCommand]) -> None:
        """The store cannot record that ``pending`` goes out: keep it queued, unsent, for a while.

        ``rest`` (the commands taken out after it) go back behind it, in order, so nothing of its
        conversation overtakes it; the others go out at the next flush. The first hold says so
        once (CommandQueued with ``durable`` False: the chat shows it is waiting, not saved).
        """
        pending.hold_until = self._clock.monotonic() + self._t.store_retry
        self._tracker.put_back([pending, *rest])
        self._wake.set()
        command = pending.command
        if not pending.internal and command.command_id not in self._held:
            self._held.add(command.command_id)
            self._emit(_queued(command, durable=False))
        logger.warning(
            "%s %s not sent: the local store cannot record it (disk full?); trying again in %g s",
            type(pending.command).__name__,
            pending.command.command_id,
            self._t.store_retry,
        )

    def _record_outcome(self, event: CommandSucceeded | CommandFailed) -> None:
        command_id = event.command_id
        if isinstance(event, CommandFailed) and event.reason is FailureReason.UNCONFIRMED:
            command = self._durable.get(command_id) or self._unconfirmed.get(command_id)
            if command is None:
                return
            self._unconfirmed[command_id] = command
            if self._outbox is not None and command_id in self._on_disk:
                outbox = self._outbox
                # A failure leaves the row SENT, which a restart shows as unconfirmed too.
                self._store_write(
                    "marking unconfirmed", command_id, partial(outbox.mark_unconfirmed, command_id)
                )
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
        outbox = self._outbox
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
            command_id = command.command_id
            self._durable[command_id] = command
            self._on_disk.add(command_id)
            self._emit(_queued(command, durable=True))  # read back from the store: it is on disk
            if record.state is StoredState.QUEUED or command.kind in _RETRY_AFTER_DROP:
                if record.state is not StoredState.QUEUED:
                    self._store_write("re-queueing", command_id, partial(outbox.add, record))
                self._tracker.enqueue(command)
                continue
            self._unconfirmed[command_id] = command
            if record.state is not StoredState.UNCONFIRMED:
                self._store_write(
                    "marking unconfirmed", command_id, partial(outbox.mark_unconfirmed, command_id)
                )
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
        if self._catch_up.is_copy(event):
            logger.debug("live copy of a message the catch-up delivered: dropped")
            return
        self._catch_up.observe(event)
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
                    result = await self._limited(result.detail)
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
        assert self._http is not None
        try:
            credentials = await self._auth.credentials(self._http)
        except AuthRefused as exc:
            return _Result(_End.AUTH_REQUIRED, exc.text)
        except AuthError as exc:
            return _Result(_End.FAILED, exc.text)
        self._credentials = credentials
        self._signed_in = True
        self._codec.signed_in(credentials.user_id)
        try:
            url = _codec_ws_url(self._codec, self._settings, credentials)
        except ConfigError as exc:
            return _Result(_End.CONFIG, str(exc))
        if self._stopping:
            return _Result(_End.STOPPED)
        headers = {}
        if credentials.cookie:
            headers = credentials.http_headers()
        while True:
            try:
                ws = await self._open(url, headers)
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
                    return await self._handshake_failed(_redirect_detail(status, location), refused=False)
                return await self._handshake_failed(
                    f"handshake refused (HTTP {status})", refused=status in UPGRADE_REFUSED
                )
            except InvalidURI:
                return _Result(_End.CONFIG, "invalid server address")
            except (OSError, TimeoutError, InvalidHandshake, ssl.SSLError) as exc:
                if isinstance(exc, ssl.SSLError):
                    return _Result(_End.FAILED, classify_network_error(exc, "connect").text)
                return await self._handshake_failed(_describe(exc), refused=False)
        if self._m.limited:
            logger.info("the WebSocket works again; leaving limited mode")
        self._poller = None  # a later limited mode starts from a fresh baseline
        logger.info("connected to %s", redact_url(url))
        return await self._session(ws)

    async def _open(self, url: str, headers: dict[str, str]) -> ClientConnection:
        """Open the socket; bounded by ``open_timeout``. Redirects are left to :meth:`_attempt`."""
        return await _ConnectNoRedirect(
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

    # -- limited mode (REST fallback) ------------------------------------------------------------

    async def _handshake_failed(self, detail: str, *, refused: bool) -> _Result:
        """A handshake failed for a reason other than the credentials: poll over REST if it answers.

        An "upgrade refused" status (a proxy that breaks WebSockets) tries REST at once; other
        failures after ``limited_after`` in a row; in limited mode every failed retry goes back
        to polling at once.
        """
        if not self._m.handshake_failed(refused=refused):
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
        return self._m.probe_answered(answers=bool(answers), refused=refused, detail=detail)

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
        if not self._m.limited:
            logger.warning("WebSocket unavailable (%s); limited mode: polling over REST", detail)
        self._apply(self._m.limited_entered(detail, self._clock.monotonic()))
        try:
            while not self._stopping:
                self._wake.clear()
                if self._m.reconnect_pending or self._m.refused:
                    return _Result(_End.PROBE_WS)
                self._flush_rest()
                step = self._m.limited_tick(self._clock.monotonic())
                if isinstance(step, Ended):
                    return step
                if step is None:
                    await self._wait_for_wake(self._m.limited_deadline())
                    continue
                try:
                    events = await self._unless_stopped(poller.poll())
                    if events is None:
                        break
                except AuthRefused as exc:
                    return _Result(_End.AUTH_REQUIRED, exc.text)
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
            return _Result(_End.STOPPED)
        finally:
            self._m.limited_left()

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
        now = self._clock.monotonic()
        self._retry_store(now)
        batch = self._tracker.take_sendable(live=True, now=now)
        for index, pending in enumerate(batch):
            try:
                call = self._due_step(pending, self._rest_form(pending.command))
                if call is None:
                    continue
                if isinstance(call, _Held):
                    self._hold(pending, batch[index + 1 :])
                    return
                if not isinstance(call, HttpCall):
                    raise EncodeError(
                        FailureReason.INVALID, f"no REST form for {type(pending.command).__name__}"
                    )
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
            if not self._mark_sent(pending.command):
                self._hold(pending, batch[index + 1 :])
                return
            self._start_http(pending, call)
            self._announce_sent(pending)

    def _rest_form(self, command: Command) -> HttpCall | Plan:
        """``command`` without a WebSocket: its REST call, or a Plan made only of HTTP steps."""
        try:
            return rest_call(self._codec, command)
        except EncodeError:
            out = self._codec.encode(command)
            if isinstance(out, Plan) and all(isinstance(step, HttpCall) for step in out.steps):
                return out
            raise

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
            return
        self._emit(outcome.event)
        page = outcome.pending.page
        if (
            outcome.ok
            and isinstance(outcome.pending.command, RefreshWaitingList)
            and page is not None
            and page.has_more
            and not self._resync_active
        ):
            # The agent's refresh reads the whole list, as a resync does: the org list comes in
            # segments (waiting, held, recent), and its first page may be an empty one.
            self._resync_active = True
            self._resync_initial = False
            self._resync_pages = 0
            self._resync_step(outcome)

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
            deadlines = [self._m.heartbeat_deadline()]
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

    def _start_http(self, pending: PendingCommand, call: HttpCall, step: int | None = None) -> None:
        """Mark a command sent (in memory; the store already says so) and start its HTTP call.

        ``step``: the index of a Plan's preparatory step this call is (None: the command's call).
        """
        self._tracker.mark_sent(pending, Transport.HTTP, self._clock.monotonic())
        task = asyncio.ensure_future(self._http_command(pending, call, step))
        self._http_tasks[task] = pending
        task.add_done_callback(self._http_tasks.pop)

    def _due_step(self, pending: PendingCommand, outbound: Outbound | Plan) -> Outbound | _Held | None:
        """The step of ``outbound`` to carry out now, or None when a Plan's HTTP step was started.

        :data:`HELD` when the store could not record that the command goes out (see :meth:`_hold`).

        A Plan's steps run one at a time: a preparatory step's answer puts the command back at
        the front of the outbox with ``step`` advanced (see :meth:`_http_command`).
        """
        if not isinstance(outbound, Plan):
            return outbound
        steps = outbound.steps
        index = min(pending.step, len(steps) - 1)
        step = steps[index]
        if index == len(steps) - 1:
            return step
        if not isinstance(step, HttpCall):
            raise EncodeError(FailureReason.INVALID, "only the last step of a plan may be a socket frame")
        first = pending.step == 0
        if first and not self._mark_sent(pending.command):
            return HELD  # the store cannot record it: not one step goes out
        self._start_http(pending, step, index)
        if first:
            self._announce_sent(pending)
        return None

    def _announce_sent(self, pending: PendingCommand) -> None:
        """CommandSent for the agent's own commands (internal resync/ping ones stay silent)."""
        if not pending.internal and pending.step == 0:
            command = pending.command
            self._emit(
                CommandSent(
                    command_id=command.command_id, kind=command.kind, conversation=command.conversation_key
                )
            )

    async def _flush(self, ws: ClientConnection) -> None:
        now = self._clock.monotonic()
        self._retry_store(now)
        batch = self._tracker.take_sendable(live=self._live, now=now)
        for index, pending in enumerate(batch):
            try:
                outbound = self._due_step(pending, self._codec.encode(pending.command))
                if outbound is None:
                    continue
                if isinstance(outbound, _Held):
                    self._hold(pending, batch[index + 1 :])
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
            if not self._mark_sent(pending.command):
                self._hold(pending, batch[index + 1 :])
                break
            if isinstance(outbound, WsFrame):
                self._tracker.mark_sent(pending, Transport.WS, self._clock.monotonic())
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
            self._apply(self._m.resynced())
            self._wake.set()
            self._spawn_side(self._list_everyone())

    async def _list_everyone(self) -> None:
        """After a connection's first resync: one REST page of every customer, AI-handled too.

        The dashboard's socket resync (``get_stopped_customers``) lists only the customers waiting
        for a human, so those the bot handles were missing from the inbox until they wrote again.
        Where the socket resync is not already the REST list (org) and the dialect has a REST
        list (dashboard ``GET /customers``, newest activity first; PROTOCOL.md 2.6), its first
        page is read once per connection and emitted as a page that adds rows and drops nobody.
        Failures are logged only: the waiting list already came.
        """
        command = RefreshWaitingList(offset=0, limit=EVERYONE_PAGE)
        try:
            if not isinstance(self._codec.encode(command), WsFrame):
                return  # the resync itself read the REST list
            call = rest_call(self._codec, command)
        except EncodeError:
            return
        try:
            status, body = await self._http_call(call)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.info("reading the customer list failed: %s", exc)
            return
        for event in self._codec.parse_response(command, status, body):
            if isinstance(event, WaitingListPage):
                self._emit(
                    replace(event, offset=0, has_more=False, complete_list=False, complete_assignments=False)
                )
            elif isinstance(event, CommandFailed):
                logger.info("reading the customer list failed: %s", event.text or event.reason.value)

    def _schedule_resync(self) -> None:
        interval = self._t.resync_interval
        self._next_resync = self._clock.monotonic() + interval if interval else None

    # -- HTTP ------------------------------------------------------------------------------------

    async def _http_command(self, pending: PendingCommand, call: HttpCall, step: int | None = None) -> None:
        """Carry out one HTTP command (or a Plan's step) and settle it. Cancellation: UNCONFIRMED."""
        command = pending.command
        try:
            status, body = await self._http_call(call)
        except asyncio.CancelledError:
            if not pending.internal and pending in self._tracker.outstanding:
                self._settle(self._tracker.fail(pending, FailureReason.UNCONFIRMED, "cancelled"))
            raise
        except AuthRefused as exc:
            self._settle(self._tracker.fail(pending, FailureReason.ACCESS_DENIED, exc.text))
            self._apply(self._m.credentials_refused(exc.text))
            return
        except (AuthError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._settle(self._http_failure(pending, exc))
            return
        if status == 401:  # even after renewing the credentials (see _http_call)
            logger.warning("%s %s: the server refused the renewed credentials", call.method, call.path)
            self._apply(self._m.credentials_refused("the server refused the credentials (HTTP 401)"))
        if step is not None:
            self._step_answered(pending, step, status, body)
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

    def _step_answered(self, pending: PendingCommand, step: int, status: int, body: bytes) -> None:
        """A Plan's preparatory step answered: end the command on failure, else queue the next step."""
        command = pending.command
        events = self._codec.parse_step(command, step, status, body)
        refusal = next(
            (e for e in events if isinstance(e, CommandFailed) and e.command_id == command.command_id), None
        )
        if refusal is None and not 200 <= status < 300:
            refusal = failed(command, FailureReason.SERVER_ERROR, f"HTTP {status}")
        if refusal is not None:
            self._settle(self._tracker.answered(pending, (refusal,), status))
        for event in events:
            if event is not refusal and not isinstance(event, CommandSucceeded | CommandFailed):
                self._emit(event)
        if refusal is None:
            self._tracker.unsend(pending)  # back to the front of the outbox for its next step
            pending.step = step + 1
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
        self._store_retry_at = 0.0  # one last try to delete finished rows
        self._retry_store(self._clock.monotonic())
        self._closing = True
        for outcome in self._tracker.settle_all("the client stopped"):
            self._emit(outcome.event)
        self._closing = False
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.close()
            self._http = None
        self._running = False
        self._apply(self._m.stopped(requested=self._stopping))
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


class _ConnectNoRedirect(connect):
    """websockets' ``connect`` that never follows a redirect itself.

    The library follows ws:// redirects to any host and fails on an http(s) ``Location`` with
    InvalidURI (which looked like a bad server address: offline for good). The client decides
    instead: one same-host upgrade to wss://, else a retryable failure.
    """

    def process_redirect(self, exc: Exception) -> Exception | str:
        """Hand every redirect back to the caller as the InvalidStatus it is."""
        return exc


def _redirect_detail(status: int, location: str) -> str:
    host = urlsplit(location).hostname or ""
    where = f" to {host}" if host else ""
    return (
        f"the server address redirects{where} (HTTP {status}): sign in to this network "
        "(captive portal) or check the server address"
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


def _buffered_probe(ws: ClientConnection) -> Callable[[], bool] | None:
    """A test "the next message is already buffered" (reading it will not wait), or None.

    None when this websockets version does not show its receive buffer: nothing is batched then.
    Only a whole (unfragmented) first frame counts: a fragment may have to wait for the rest.
    """
    queue = getattr(getattr(getattr(ws, "recv_messages", None), "frames", None), "queue", None)
    if not isinstance(queue, deque):
        return None
    frames: deque[object] = queue

    def buffered() -> bool:
        return bool(frames) and getattr(frames[0], "fin", False) is True

    return buffered
