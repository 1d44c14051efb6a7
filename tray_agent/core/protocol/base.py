"""The contract every dialect module fulfils: frames in -> domain events, commands -> outbound.

Sans-I/O: a codec never touches a socket. The network layer feeds it received frames and HTTP
answers and carries out what :meth:`DialectCodec.encode` returns (a WebSocket text frame or an
HTTP call relative to the server's base URL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from tray_agent.core.commands import Command
from tray_agent.core.events import Dialect, Event, FailureReason


@dataclass(frozen=True, slots=True)
class WsFrame:
    """A JSON text frame to send on the WebSocket."""

    text: str


@dataclass(frozen=True, slots=True)
class FormFile:
    """A file part of a multipart form."""

    name: str
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class HttpCall:
    """An HTTP request relative to the server's base URL.

    Attributes:
        method: GET, POST, PUT, DELETE.
        path: absolute path, e.g. ``/crm/chats``; already percent-encoded where needed.
        query: query parameters in order.
        json: a JSON body, or None.
        form: multipart/form-data text fields, or None (org message POST).
        files: multipart file parts (only with ``form``).
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    json: Any = None
    form: tuple[tuple[str, str], ...] | None = None
    files: tuple[FormFile, ...] = field(default=())


Outbound = WsFrame | HttpCall


class EncodeError(Exception):
    """A command cannot be expressed in this dialect (bad conversation key, empty text ...)."""

    def __init__(self, reason: FailureReason, text: str) -> None:
        """Store the failure reason and a plain-words explanation."""
        super().__init__(text)
        self.reason = reason
        self.text = text


class UrlError(ValueError):
    """The settings cannot make this dialect's socket URL (a plain-words reason, no secret)."""


def websocket_url(base: str, path: str, query: str = "") -> str:
    """``base`` (the server's ``http(s)://host[:port][/prefix]``) turned into a ``ws(s)://`` URL.

    ``ws``/``wss`` follows ``http``/``https``; ``path`` is appended to the base's own path.
    """
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, query, ""))


class DialectCodec(Protocol):
    """One backend dialect's wire knowledge. Implementations never raise from parse methods."""

    dialect: Dialect
    max_frame_size: int  # bytes; larger inbound frames are refused by the socket

    def parse_frame(self, frame: str | bytes) -> Sequence[Event]:
        """Translate one received WebSocket frame into domain events (Ignored for junk)."""
        ...

    def encode(self, command: Command) -> Outbound:
        """Express a command on the wire. Raises EncodeError when impossible."""
        ...

    def parse_response(self, command: Command, status: int, body: bytes) -> Sequence[Event]:
        """Translate the HTTP answer to an :class:`HttpCall` from :meth:`encode`.

        Returns the domain events it implies (e.g. CommandSucceeded + AssignmentChanged for an
        org take-over, a HistoryPage, a WaitingListPage) or CommandFailed with a reason.
        """
        ...

    def ws_url(self, base: str, *, token: str = "", org: str = "") -> str:
        """This dialect's WebSocket URL on the server whose REST base URL is ``base``.

        Args:
            base: ``http(s)://host[:port][/prefix]`` without a trailing slash.
            token: the bearer token, for dialects that carry it in the URL (org: ``?token=``;
                log such a URL only through ``redact_url``).
            org: the organization id, for dialects whose URL names it.

        Raises:
            UrlError: the URL needs something that is missing (e.g. the organization id).
        """
        ...

    def signed_in(self, user_id: str) -> None:
        """The network layer signed in as ``user_id`` (org: the JWT ``sub``; "" when unknown)."""
        ...

    def displaced(self, close_code: int | None) -> bool:
        """Whether a server close with ``close_code`` means another client of my user took over.

        Dashboard: one socket per user (PROTOCOL.md 2.5); org: never.
        """
        ...

    def ping_frame(self) -> str:
        """The application-level ping frame (``{"type":"ping"}``)."""
        ...

    def pong_frame(self) -> str:
        """The answer to a server JSON ping (org), ``{"type":"pong"}``."""
        ...
