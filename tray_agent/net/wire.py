"""The WebSocket as the client uses it: the handshake (no redirects), failure texts, the receive-buffer probe.

Everything here that knows the ``websockets`` library, apart from the client's read loop: how a
socket is opened (:func:`open_socket`, redirects handed back to the caller, through the proxy
:func:`socket_proxy` chooses as for every other request), what a failed
handshake or a close is called in a log line and the connection state, and the test "the next
message is already buffered" the read loop batches with (:func:`buffered_probe`).
"""

from __future__ import annotations

import logging
import ssl
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect

from tray_agent.core.redact import RedactingFilter
from tray_agent.net.config import Timings
from tray_agent.net.http import environment_proxy, parse_proxy

# ---------------------------------------------------------------------------------------------
# The websockets library logs handshakes (with the ?token= URL and Cookie header) at debug level:
# its logger gets the core redaction filter itself, so no handler ever sees those secrets.
# ---------------------------------------------------------------------------------------------

wire_logger = logging.getLogger("tray_agent.net.wire")
wire_logger.addFilter(RedactingFilter())

UPGRADE_REFUSED = frozenset({400, 405, 426, 501, 502, 503, 504})
"""Handshake statuses a WebSocket-breaking proxy answers with: try REST polling at once."""


class ConnectNoRedirect(connect):
    """websockets' ``connect`` that never follows a redirect itself.

    The library follows ws:// redirects to any host and fails on an http(s) ``Location`` with
    InvalidURI (which looked like a bad server address: offline for good). The client decides
    instead: one same-host upgrade to wss://, else a retryable failure.
    """

    def process_redirect(self, exc: Exception) -> Exception | str:
        """Hand every redirect back to the caller as the InvalidStatus it is."""
        return exc


async def open_socket(
    url: str,
    headers: dict[str, str],
    *,
    max_size: int,
    timings: Timings,
    proxy: str | None,
    ssl_context: ssl.SSLContext | None,
) -> ClientConnection:
    """Open the socket; bounded by ``timings.open_timeout``. Redirects are the caller's.

    Args:
        url: the ws:// or wss:// URL (the TLS context is used for wss:// only).
        headers: extra handshake headers (the session cookie).
        max_size: the largest frame accepted (the codec's); a larger one closes with 1009.
        timings: open, close and protocol ping timings.
        proxy: the http:// proxy URL to tunnel through (CONNECT), or None for a direct
            connection (:func:`socket_proxy`); the library never reads the environment itself.
        ssl_context: the TLS context for wss://.

    Raises:
        InvalidStatus (redirects included), InvalidURI, InvalidHandshake, OSError, TimeoutError,
        ssl.SSLError. Cancellation propagates.
    """
    return await ConnectNoRedirect(
        url,
        additional_headers=headers,
        max_size=max_size,
        max_queue=16,
        open_timeout=timings.open_timeout,
        close_timeout=timings.close_timeout,
        ping_interval=timings.protocol_ping_interval,
        ping_timeout=timings.protocol_ping_timeout,
        proxy=proxy,
        ssl=ssl_context if url.startswith("wss:") else None,
        logger=wire_logger,
    )


def socket_proxy(url: str, explicit: str) -> str | None:
    """The proxy URL the socket for ``url`` goes through (None: direct).

    The explicit proxy setting when there is one, else the environment's, chosen as for every
    HTTP request of the client (:func:`tray_agent.net.http.environment_proxy`): a wss:// URL
    takes the https proxy, a ws:// one the http proxy, and ``no_proxy`` is read the same way.
    The websockets library's own choice differed (``wss_proxy``, ``socks_proxy``, https before
    http for ws://). The URL returned is complete (``http://`` and the port written out).

    Raises:
        ConnectError: the explicit setting is not an http:// proxy URL.
    """
    if explicit:
        return parse_proxy(explicit).url
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError:  # the handshake reports the bad URL itself
        return None
    proxy = environment_proxy("https" if secure else "http", parts.hostname or "", port)
    return proxy.url if proxy is not None else None


def redirect_detail(status: int, location: str) -> str:
    """The state's words for a handshake redirected elsewhere (a captive portal, another host)."""
    host = urlsplit(location).hostname or ""
    where = f" to {host}" if host else ""
    return (
        f"the server address redirects{where} (HTTP {status}): sign in to this network "
        "(captive portal) or check the server address"
    )


def describe(exc: BaseException) -> str:
    """The state's words for a handshake that failed with ``exc`` (not a refusal)."""
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "server unreachable (connection refused)"
    if isinstance(exc, OSError):
        return f"server unreachable ({exc.strerror or type(exc).__name__})"
    return f"handshake failed ({type(exc).__name__})"


def close_detail(ws: ClientConnection) -> str:
    """The state's words for how ``ws`` closed."""
    code = ws.close_code
    if code is None or code == 1006:
        return "connection lost"
    reason = ws.close_reason
    return f"closed by the server ({code}{': ' + reason if reason else ''})"


def buffered_probe(ws: ClientConnection) -> Callable[[], bool] | None:
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
