"""What the connection settings make for the network client: the server's URLs and every delay.

Pure (no socket, no HTTP client): :func:`http_base` and :func:`ws_url` check the server address
and build the URLs the client opens; :class:`Timings` holds the delays it waits for.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from tray_agent.core.events import Dialect
from tray_agent.core.protocol import codec_for
from tray_agent.core.protocol.base import DialectCodec, UrlError
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.connection import MachineTimings

# ---------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------


class Signed(Protocol):
    """What a socket URL needs of the credentials (:class:`~tray_agent.net.auth.Credentials`)."""

    @property
    def token(self) -> str:
        """The org access token ("" for the dashboard, whose socket takes the session cookie)."""
        ...


class ConfigError(ValueError):
    """The settings cannot produce a usable URL (shown to the user; no secret inside)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine ("localhost" or a loopback address)."""
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
    if parts.scheme == "http" and not settings.allow_insecure and not is_loopback(parts.hostname):
        raise ConfigError("Refusing an unencrypted http:// server; use https:// or allow insecure.")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def ws_url(settings: ConnectionSettings, dialect: Dialect, credentials: Signed) -> str:
    """The dialect codec's WebSocket URL for ``settings`` (see ``DialectCodec.ws_url``).

    Kept for callers that hold a dialect rather than a codec; the client asks its own codec.

    Raises:
        ConfigError: as :func:`http_base`, or the codec cannot build the URL (no organization id).
    """
    return codec_ws_url(codec_for(dialect), settings, credentials)


def codec_ws_url(codec: DialectCodec, settings: ConnectionSettings, credentials: Signed) -> str:
    """``codec``'s WebSocket URL for ``settings`` and ``credentials``.

    Raises:
        ConfigError: as :func:`ws_url`.
    """
    try:
        return codec.ws_url(http_base(settings), token=credentials.token, org=settings.org)
    except UrlError as exc:
        raise ConfigError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Timings
# ---------------------------------------------------------------------------------------------

POLL_ERRORS_BEFORE_GIVING_UP = 5
"""Limited mode: polls failed in a row after which the connection counts as failed."""


_MACHINE = MachineTimings()
"""The connection machine's defaults: the delays it shares with :class:`Timings` are set once."""


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
        early_drop_window: see the client's module docstring (dashboard's extra disconnect).
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

    heartbeat_interval: float = _MACHINE.heartbeat_interval
    heartbeat_timeout: float = _MACHINE.heartbeat_timeout
    command_timeout: float = 10.0
    resync_interval: float | None = 60.0
    backoff_base: float = 1.0
    backoff_max: float = _MACHINE.backoff_max
    stable_after: float = _MACHINE.stable_after
    early_drop_window: float = _MACHINE.early_drop_window
    open_timeout: float = 10.0
    close_timeout: float = 5.0
    protocol_ping_interval: float | None = 20.0
    protocol_ping_timeout: float | None = 20.0
    http_timeout: float = 10.0
    poll_interval: float = _MACHINE.poll_interval
    ws_retry_interval: float = _MACHINE.ws_retry_interval
    limited_after: int = _MACHINE.limited_after
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

    def for_machine(self) -> MachineTimings:
        """The delays the connection machine decides with."""
        return MachineTimings(
            heartbeat_interval=self.heartbeat_interval,
            heartbeat_timeout=self.heartbeat_timeout,
            stable_after=self.stable_after,
            early_drop_window=self.early_drop_window,
            limited_after=self.limited_after,
            poll_interval=self.poll_interval,
            ws_retry_interval=self.ws_retry_interval,
            backoff_max=self.backoff_max,
            poll_errors_before_giving_up=POLL_ERRORS_BEFORE_GIVING_UP,
        )
