"""The connection life cycle as a pure state machine: phases, inputs in, actions out (sans-I/O).

:class:`ConnectionMachine` decides; :class:`~tray_agent.net.client.Client` drives it. The machine
never awaits, never touches a socket and reads no clock: the driver passes the monotonic time in
and carries out the returned actions in order (emit a state, connect now, wait out a backoff,
wait for the agent, renew the credentials, send a ping, drop the socket, probe REST).

Phases::

    IDLE --start--> CONNECTING --opened--> RESYNCING --resync done--> LIVE
      CONNECTING/RESYNCING/LIVE --attempt ended--> CONNECTING (at once) | BACKOFF | BLOCKED | LIMITED
      BACKOFF --elapsed / reconnect requested--> CONNECTING
      LIMITED --time to retry the socket--> CONNECTING (no state shown) --opened--> RESYNCING
      BLOCKED --reauthenticate (auth, settings) / reconnect requested (signed in elsewhere)--> CONNECTING
      any --stop--> STOPPED

The decisions it owns (see the client's module docstring for why):

* backoff with full jitter, reset by a stable connection, an explicit reconnect or new credentials;
* the dashboard's extra disconnect (G4): the first drop within ``early_drop_window`` of a
  connection that followed a failure is retried at once;
* a handshake refused with 401/403 renews the credentials once, then AUTH_REQUIRED;
* a redirect answer to the handshake (captive portal, http -> https) is followed once when it
  only upgrades the scheme on the same host; otherwise it is a retryable network failure;
* limited mode: after ``limited_after`` failed handshakes (at once for an "upgrade refused"
  status) REST is probed; if it answers, poll until the socket is worth another try;
* one socket per user (dashboard): a close that means another client of my user took the
  socket over blocks as "signed in elsewhere" until the agent reconnects explicitly;
* the heartbeat watchdog: ping every ``heartbeat_interval``; nothing received within
  ``heartbeat_timeout`` of a ping drops the socket.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tray_agent.core.events import ConnectionState

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


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


class Phase(enum.StrEnum):
    """Where the connection's life cycle stands (finer than the ConnectionState shown)."""

    IDLE = "idle"  # not started
    CONNECTING = "connecting"  # signing in, opening the socket
    RESYNCING = "resyncing"  # socket open, first resync running
    LIVE = "live"  # socket open and resynced
    LIMITED = "limited"  # socket blocked, polling over REST
    BACKOFF = "backoff"  # waiting out a delay after a failure
    BLOCKED = "blocked"  # waiting for the agent (credentials, settings, signed in elsewhere)
    STOPPED = "stopped"


class Block(enum.StrEnum):
    """Why the machine waits for the agent."""

    AUTH = "auth"  # credentials refused: new ones (reauthenticate) unblock
    CONFIG = "config"  # settings unusable: new settings (reauthenticate / a new client) unblock
    ELSEWHERE = "elsewhere"  # another client of my user took the socket: reconnect_now unblocks


class Ending(enum.Enum):
    """How one attempt (sign-in, handshake, session or limited-mode stretch) ended."""

    FAILED = "failed"  # retry after a backoff delay (unless the early-drop rule applies)
    RETRY_NOW = "retry_now"  # retry at once (credentials being renewed, redirect followed ...)
    AUTH_REQUIRED = "auth_required"
    CONFIG = "config"
    STOPPED = "stopped"
    LIMITED = "limited"  # socket blocked but REST answers: poll
    PROBE_WS = "probe_ws"  # limited mode: time to try the socket again (no state change)
    DISPLACED = "displaced"  # the server closed us for another client of my user


@dataclass(frozen=True, slots=True)
class Ended:
    """An attempt's end, as the driver saw it (the machine's main input)."""

    end: Ending
    detail: str = ""
    lived: float | None = None  # seconds the socket was open, if it opened


# -- actions -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmitState:
    """Emit ConnectionChanged(state, detail, retry_in) (only sent when it differs from the last)."""

    state: ConnectionState
    detail: str = ""
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class ConnectNow:
    """Start the next attempt at once."""


@dataclass(frozen=True, slots=True)
class WaitBackoff:
    """Wait ``delay`` seconds (cut short by a reconnect request or stop), then connect."""

    delay: float


@dataclass(frozen=True, slots=True)
class WaitForAgent:
    """Do nothing until :meth:`ConnectionMachine.reauthenticate` / ``reconnect_requested`` / stop."""


@dataclass(frozen=True, slots=True)
class RenewCredentials:
    """Tell the authenticator its credentials are stale (refresh or sign in again next time)."""


@dataclass(frozen=True, slots=True)
class FollowRedirect:
    """Open the socket at ``url`` instead (once; a same-host http -> https upgrade)."""

    url: str


@dataclass(frozen=True, slots=True)
class ProbeRest:
    """Ask the REST API whether it answers (to enter limited mode)."""


@dataclass(frozen=True, slots=True)
class PollRest:
    """Limited mode: poll the REST API now (then report :meth:`ConnectionMachine.poll_done`)."""


@dataclass(frozen=True, slots=True)
class SendPing:
    """Send the application ping frame."""


@dataclass(frozen=True, slots=True)
class DropSocket:
    """Close the socket and end the session (``reason`` becomes the attempt's detail)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Finish:
    """Leave the run loop (stopped)."""


Action = (
    EmitState
    | ConnectNow
    | WaitBackoff
    | WaitForAgent
    | RenewCredentials
    | FollowRedirect
    | ProbeRest
    | PollRest
    | SendPing
    | DropSocket
    | Finish
)


@dataclass(frozen=True, slots=True)
class MachineTimings:
    """The delays the machine decides with (a subset of the client's Timings), in seconds."""

    heartbeat_interval: float = 25.0
    heartbeat_timeout: float = 10.0
    stable_after: float = 60.0
    early_drop_window: float = 60.0
    limited_after: int = 3
    poll_interval: float = 10.0
    ws_retry_interval: float = 180.0
    backoff_max: float = 60.0
    poll_errors_before_giving_up: int = 5


# -- the machine ---------------------------------------------------------------------------------


class ConnectionMachine:
    """The connection life cycle of one client (pure; every method returns the actions to run).

    Args:
        timings: the delays decided with.
        backoff: the reconnect backoff (its attempts are the machine's; tests inject the rng).
    """

    def __init__(self, timings: MachineTimings, backoff: Backoff) -> None:
        self.t = timings
        self.backoff = backoff
        self.phase = Phase.IDLE
        self.block: Block | None = None
        self.stopping = False
        self.limited = False  # limited mode, kept across its socket retries
        self.shown: tuple[ConnectionState, str, float | None] | None = None
        self._auth_retry_used = False
        self._redirect_used = False
        self._reconnect_requested = False
        self._after_failure = False
        self._early_drop_used = False
        self._handshake_failures = 0
        self._ws_retried_after_probe = False
        self._refused = ""  # a REST call was refused even with renewed credentials
        # limited mode schedule
        self._next_poll = 0.0
        self._retry_ws_at = 0.0
        self._poll_errors = 0
        # heartbeat (valid while a socket is open)
        self.next_ping = 0.0
        self.ping_sent: float | None = None
        self.last_rx = 0.0

    # -- what the driver asks --------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The last state emitted (OFFLINE before any)."""
        return self.shown[0] if self.shown else ConnectionState.OFFLINE

    @property
    def live(self) -> bool:
        """Commands flow now (socket resynced, or REST polling in limited mode)."""
        return self.phase in (Phase.LIVE, Phase.LIMITED)

    @property
    def reconnect_pending(self) -> bool:
        """An explicit reconnect was asked for and not yet started."""
        return self._reconnect_requested

    def _emit(self, state: ConnectionState, detail: str = "", retry_in: float | None = None) -> list[Action]:
        new = (state, detail, retry_in)
        if new == self.shown:
            return []
        self.shown = new
        return [EmitState(state, detail, retry_in)]

    def emit(self, state: ConnectionState, detail: str = "") -> list[Action]:
        """A state the driver decided (bad CA bundle, stopped): deduplicated like the rest."""
        return self._emit(state, detail)

    # -- agent / app inputs ----------------------------------------------------------------------

    def stop(self) -> list[Action]:
        """Stop for good: the driver drops the socket and leaves its loop."""
        self.stopping = True
        return [DropSocket("stopping")]

    def stopped(self, *, requested: bool) -> list[Action]:
        """The driver's loop ended (``requested``: through :meth:`stop`)."""
        self.phase = Phase.STOPPED if requested else Phase.IDLE
        return self._emit(ConnectionState.OFFLINE, "stopped" if requested else "")

    def unusable(self, detail: str) -> list[Action]:
        """The client cannot run at all (a bad CA bundle): OFFLINE for good, saying why."""
        self.phase = Phase.STOPPED
        return self._emit(ConnectionState.OFFLINE, detail)

    def reconnect_requested(self, *, automatic: bool = False) -> list[Action]:
        """Sleep/resume, a network change, "Reconnect now": drop the socket, connect at once.

        "Reconnect now" (not ``automatic``) is also the agent's way out of "signed in
        elsewhere" (taking the socket back); an automatic one leaves the other client alone.
        Ignored while the credentials or settings are refused.
        """
        if self.stopping or (automatic and self.block is Block.ELSEWHERE):
            return []
        if self.block is Block.ELSEWHERE:
            self.block = None
            self._early_drop_used = False
        self._reconnect_requested = True
        self.backoff.reset()
        return [DropSocket("reconnect requested")]

    def credentials_refused(self, detail: str) -> list[Action]:
        """A REST call (a command, a resync page) was refused even with renewed credentials.

        Sign-in is needed now, not at the next reconnect: the socket is dropped and the attempt
        ends in AUTH_REQUIRED.
        """
        if self.stopping or self.block is Block.AUTH or self._refused:
            return []
        self._refused = detail
        return [DropSocket(detail)]

    @property
    def refused(self) -> bool:
        """A credentials refusal is waiting to end the attempt."""
        return bool(self._refused)

    def reauthenticate(self) -> list[Action]:
        """New credentials (or settings) are in place: leave BLOCKED and try again."""
        self.block = None
        self._auth_retry_used = False
        self._refused = ""
        self.backoff.reset()
        return []

    # -- one attempt -----------------------------------------------------------------------------

    def attempt_started(self) -> list[Action]:
        """The driver starts signing in and opening the socket."""
        self._reconnect_requested = False
        self._redirect_used = False  # one redirect followed per attempt
        self.phase = Phase.CONNECTING
        if self.limited or self.state is ConnectionState.CONNECTING:
            return []
        return self._emit(ConnectionState.CONNECTING)

    def handshake_refused(self, status: int) -> Ended | None:
        """The handshake got an HTTP answer instead of the upgrade.

        Returns the attempt's end for a refusal of the credentials (renew once, then
        AUTH_REQUIRED); None for other statuses (see :meth:`handshake_redirected` and
        :meth:`handshake_failed`).
        """
        if status not in (401, 403):
            return None
        if not self._auth_retry_used:
            self._auth_retry_used = True
            return Ended(Ending.RETRY_NOW, f"HTTP {status}: signing in again")
        return Ended(Ending.AUTH_REQUIRED, f"the server refused the credentials (HTTP {status})")

    def auth_retry_started(self) -> list[Action]:
        """The first credential refusal: the driver renews the credentials before retrying."""
        return [RenewCredentials()]

    def handshake_redirected(self, status: int, url: str, location: str) -> FollowRedirect | None:
        """A 3xx answer to the handshake (captive portal, http -> https).

        Follows once per attempt when it only upgrades ``ws://`` to ``wss://`` on the same host (and path);
        otherwise None: the driver treats it as a failed handshake (retried with backoff).
        """
        if status not in _REDIRECTS or self._redirect_used or not location:
            return None
        target = _upgrade_of(url, location)
        if target is None:
            return None
        self._redirect_used = True
        return FollowRedirect(target)

    def handshake_failed(self, *, refused: bool) -> list[Action]:
        """A handshake failed for a reason other than the credentials.

        Returns [ProbeRest()] when REST should be tried (limited mode), else [] (the attempt
        ends FAILED).
        """
        self._handshake_failures += 1
        if refused or self.limited or self._handshake_failures >= self.t.limited_after:
            return [ProbeRest()]
        return []

    def probe_answered(self, *, answers: bool, refused: bool, detail: str) -> Ended:
        """The REST probe's verdict after a failed handshake."""
        if not answers:
            self.limited = False
            return Ended(Ending.FAILED, detail)
        if not refused and not self.limited and not self._ws_retried_after_probe:
            # The socket could not even connect, yet REST answers now: most likely the server
            # just came back from an outage. One more socket try before calling it blocked.
            self._ws_retried_after_probe = True
            return Ended(Ending.RETRY_NOW, "the server answers again")
        return Ended(Ending.LIMITED, detail)

    def limited_entered(self, detail: str, now: float) -> list[Action]:
        """Polling over REST starts (or resumes after a failed socket retry, keeping its rhythm)."""
        if not self.limited:
            self._next_poll = now
        self.limited = True
        self.phase = Phase.LIMITED
        self._retry_ws_at = now + self.t.ws_retry_interval
        self._poll_errors = 0
        text = f"WebSocket blocked ({detail}); polling every {self.t.poll_interval:g} s"
        return self._emit(ConnectionState.LIMITED, text)

    def limited_tick(self, now: float) -> Ended | PollRest | None:
        """Limited mode: time to retry the socket (the stretch ends PROBE_WS), to poll, or neither."""
        if self._reconnect_requested or self._refused or now >= self._retry_ws_at:
            return Ended(Ending.PROBE_WS)
        if now >= self._next_poll:
            return PollRest()
        return None

    def limited_deadline(self) -> float:
        """When :meth:`limited_tick` has something to do next."""
        return min(self._next_poll, self._retry_ws_at)

    def poll_done(self, now: float, error: str = "") -> Ended | None:
        """A poll ended (``error``: why it failed); repeated failures end limited mode (FAILED)."""
        if not error:
            self._poll_errors = 0
            self._next_poll = now + self.t.poll_interval
            return None
        self._poll_errors += 1
        if self._poll_errors >= self.t.poll_errors_before_giving_up:
            return Ended(Ending.FAILED, f"polling failed: {error}")
        ceiling = max(self.t.backoff_max, self.t.poll_interval)
        self._next_poll = now + min(self.t.poll_interval * 2.0**self._poll_errors, ceiling)
        return None

    @property
    def poll_errors(self) -> int:
        """Failed polls in a row."""
        return self._poll_errors

    def limited_left(self) -> None:
        """Polling stopped (time to retry the socket, a failure, stop)."""
        if self.phase is Phase.LIMITED:
            self.phase = Phase.CONNECTING

    def opened(self, now: float) -> list[Action]:
        """The socket is open: resync before trusting deltas; start the heartbeat."""
        self._auth_retry_used = False
        self._redirect_used = False
        self._handshake_failures = 0
        self._ws_retried_after_probe = False
        self.limited = False
        self.phase = Phase.RESYNCING
        self.next_ping = now + self.t.heartbeat_interval
        self.ping_sent = None
        self.last_rx = now
        return self._emit(ConnectionState.RESYNCING)

    def resynced(self) -> list[Action]:
        """The first resync on this socket finished: live."""
        if self.phase is not Phase.RESYNCING:
            return []
        self.phase = Phase.LIVE
        return self._emit(ConnectionState.CONNECTED)

    def closed(self) -> None:
        """The socket of this attempt is gone (commands are no longer live)."""
        if self.phase in (Phase.RESYNCING, Phase.LIVE):
            self.phase = Phase.CONNECTING

    # -- heartbeat -------------------------------------------------------------------------------

    def frame_received(self, now: float) -> None:
        """Anything arrived on the socket: it is alive."""
        self.last_rx = now

    def tick(self, now: float) -> list[Action]:
        """Time passed on an open socket: ping when due, drop a socket that stayed silent."""
        if self.ping_sent is not None and now >= self.ping_sent + self.t.heartbeat_timeout:
            if self.last_rx < self.ping_sent:
                return [DropSocket("no answer to the heartbeat")]
            self.ping_sent = None
        if now >= self.next_ping:
            self.next_ping = now + self.t.heartbeat_interval
            if self.ping_sent is None:
                self.ping_sent = now
            return [SendPing()]
        return []

    def heartbeat_deadline(self) -> float:
        """The next moment :meth:`tick` has something to do."""
        if self.ping_sent is not None:
            return min(self.next_ping, self.ping_sent + self.t.heartbeat_timeout)
        return self.next_ping

    # -- after an attempt ------------------------------------------------------------------------

    def ended(self, result: Ended) -> list[Action]:
        """Decide what follows an attempt: connect at once, back off, wait for the agent, finish."""
        self.closed()
        if self.stopping or result.end is Ending.STOPPED:
            return [Finish()]
        if self._refused:
            detail, self._refused = self._refused, ""
            return self._blocked(Block.AUTH, ConnectionState.AUTH_REQUIRED, detail)
        if result.end is Ending.PROBE_WS:
            return [ConnectNow()]
        if result.end is Ending.AUTH_REQUIRED:
            return self._blocked(Block.AUTH, ConnectionState.AUTH_REQUIRED, result.detail)
        if result.end is Ending.CONFIG:
            return self._blocked(Block.CONFIG, ConnectionState.OFFLINE, result.detail)
        if self._reconnect_requested:
            self._reconnect_requested = False
            self._after_failure = False
            return [*self._emit(ConnectionState.CONNECTING, "reconnecting now"), ConnectNow()]
        if result.end is Ending.RETRY_NOW:
            return [*self._emit(ConnectionState.CONNECTING, result.detail), ConnectNow()]
        if result.lived is not None:
            if result.lived >= self.t.stable_after:
                self.backoff.reset()
                self._early_drop_used = False
            elif (
                self._after_failure and not self._early_drop_used and result.lived < self.t.early_drop_window
            ):
                # G4: our own old socket's cleanup on the server may kill the new one once.
                self._early_drop_used = True
                return [*self._emit(ConnectionState.CONNECTING, result.detail), ConnectNow()]
        if result.end is Ending.DISPLACED:
            # The state says it all (the UI words it); no English detail to show beside it.
            return self._blocked(Block.ELSEWHERE, ConnectionState.SIGNED_IN_ELSEWHERE, "")
        self._after_failure = True
        delay = self.backoff.next_delay()
        self.phase = Phase.BACKOFF
        return [*self._emit(ConnectionState.RECONNECTING, result.detail, round(delay, 3)), WaitBackoff(delay)]

    def _blocked(self, block: Block, state: ConnectionState, detail: str) -> list[Action]:
        self.block = block
        self.phase = Phase.BLOCKED
        self._reconnect_requested = False
        return [*self._emit(state, detail), WaitForAgent()]

    def unblocked(self) -> bool:
        """Whether a BLOCKED machine may try again (the agent acted); moves on to CONNECTING."""
        if self.block is not None:
            return False
        if self.phase is Phase.BLOCKED:
            self.phase = Phase.CONNECTING
        return True


def _upgrade_of(url: str, location: str) -> str | None:
    """The socket URL a redirect points to, if it is ``url`` moved from ws:// to wss:// only."""
    here = urlsplit(url)
    there = urlsplit(location)
    if there.scheme not in ("https", "wss") or here.scheme != "ws":
        return None
    if (there.hostname or "").lower() != (here.hostname or "").lower():
        return None
    if there.path.rstrip("/") != here.path.rstrip("/"):
        return None
    query = there.query or here.query
    netloc = there.netloc
    return f"wss://{netloc}{there.path}" + (f"?{query}" if query else "")
