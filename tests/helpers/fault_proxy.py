"""A loopback TCP proxy that injects network faults between the client and a server.

:class:`FaultProxy` listens on 127.0.0.1 port 0 and forwards every connection to ``target``.
The faults are switched at run time and apply to live connections at once:

* **pass** -- forward everything (the default).
* **drop** -- :meth:`FaultProxy.drop` aborts both sides of every open connection (RST, no close
  frame); with :meth:`FaultProxy.refuse` new connections are closed as soon as they arrive
  (a server that is down).
* **delay** -- :meth:`FaultProxy.set_delay` holds every chunk for ``ms`` milliseconds in both
  directions (a delay line: order and throughput are kept, latency is added).
* **blackhole** -- :meth:`FaultProxy.blackhole` stops forwarding both ways but keeps every socket
  open (a half-open TCP path: writes succeed, nothing arrives). Bytes are discarded.
* **cut mid-frame** -- :meth:`FaultProxy.cut_mid_frame` forwards the first half of the next
  server-to-client WebSocket frame, then closes both sides.
* **throttle** -- :meth:`FaultProxy.throttle` limits each direction to ``bytes_per_s``.
* **inject** -- :meth:`FaultProxy.inject` writes raw bytes (e.g. a hand-made WebSocket frame) to
  the client at the next server-to-client frame boundary, so tests can send oversized,
  non-UTF-8 or binary frames through a real server's stream.

Server-to-client bytes are parsed as WebSocket frames after the HTTP ``101`` response, which is
what makes the frame-boundary faults possible; other traffic (REST) passes as plain bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections import deque
from dataclasses import dataclass, field

CHUNK = 65536


def ws_frame(
    payload: bytes, *, opcode: int = 0x1, fin: bool = True, declared_length: int | None = None
) -> bytes:
    """A server-to-client (unmasked) WebSocket frame.

    Args:
        payload: the frame's payload bytes.
        opcode: 0x1 text, 0x2 binary, 0x8 close ...
        fin: the FIN bit.
        declared_length: a length to put in the header instead of ``len(payload)`` (for frames
            that announce more than they carry).
    """
    length = len(payload) if declared_length is None else declared_length
    head = bytes([(0x80 if fin else 0) | opcode])
    if length < 126:
        head += bytes([length])
    elif length < 65536:
        head += bytes([126]) + struct.pack("!H", length)
    else:
        head += bytes([127]) + struct.pack("!Q", length)
    return head + payload


class _FrameSplitter:
    """Finds WebSocket frame boundaries in the server-to-client byte stream.

    Before the HTTP response headers end, everything is "HTTP"; after a ``101`` response the rest
    is frames. :meth:`feed` returns the data as a list of (bytes, starts_a_frame) pieces.
    """

    def __init__(self) -> None:
        self.http = b""
        self.websocket = False
        self.passthrough = False  # a plain HTTP connection (not upgraded): no framing
        self._header = b""
        self._remaining = 0  # payload bytes left in the current frame

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        pieces: list[tuple[bytes, bool]] = []
        if self.passthrough:
            return [(data, False)]
        if not self.websocket:
            self.http += data
            end = self.http.find(b"\r\n\r\n")
            if end < 0:
                if len(self.http) > 65536:
                    self.passthrough = True
                    data, self.http = self.http, b""
                    return [(data, False)]
                return []
            head, rest = self.http[: end + 4], self.http[end + 4 :]
            self.http = b""
            pieces.append((head, False))
            if not head.startswith(b"HTTP/1.1 101"):
                self.passthrough = True
                if rest:
                    pieces.append((rest, False))
                return pieces
            self.websocket = True
            data = rest
        pos = 0
        while pos < len(data):
            if self._remaining:
                take = min(self._remaining, len(data) - pos)
                pieces.append((data[pos : pos + take], False))
                self._remaining -= take
                pos += take
                continue
            # Collect a complete header (2, 4 or 10 bytes, + 4 if masked).
            self._header += data[pos : pos + 1]
            pos += 1
            need = self._header_size()
            while len(self._header) < need and pos < len(data):
                self._header += data[pos : pos + 1]
                pos += 1
                need = self._header_size()
            if len(self._header) < need:
                break  # the partial header is kept and forwarded once complete
            header, self._header = self._header, b""
            self._remaining = self._payload_length(header)
            pieces.append((header, True))
        # Merge consecutive non-boundary pieces to keep writes large.
        merged: list[tuple[bytes, bool]] = []
        for piece, boundary in pieces:
            if not piece:
                continue
            if merged and not boundary:
                merged[-1] = (merged[-1][0] + piece, merged[-1][1])
            else:
                merged.append((piece, boundary))
        return merged

    def _header_size(self) -> int:
        h = self._header
        if len(h) < 2:
            return 2
        size = 2 + {126: 2, 127: 8}.get(h[1] & 0x7F, 0)
        return size + (4 if h[1] & 0x80 else 0)

    @staticmethod
    def _payload_length(header: bytes) -> int:
        code = header[1] & 0x7F
        if code == 126:
            return int(struct.unpack("!H", header[2:4])[0])
        if code == 127:
            return int(struct.unpack("!Q", header[2:10])[0])
        return code


@dataclass(eq=False)
class _Link:
    """One proxied connection (client side + server side)."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    splitter: _FrameSplitter = field(default_factory=_FrameSplitter)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: bool = False

    def abort(self) -> None:
        self.closed = True
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.transport.abort()


class FaultProxy:
    """A fault-injecting TCP proxy on 127.0.0.1 port 0 (use as ``async with``).

    Args:
        target_host: the server's host.
        target_port: the server's port (may be changed later with :attr:`target_port`).

    Attributes:
        port: the bound port (after :meth:`start`).
        accepted: connections accepted so far (including refused ones).
        frames_to_client: WebSocket frames forwarded server -> client (all connections).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self.frames_to_client = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._refuse = False
        self._blackhole = False
        self._delay = 0.0
        self._rate: float | None = None
        self._cut_armed = False
        self._injections: deque[bytes] = deque()
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the client's server setting)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        """Connections currently proxied."""
        return sum(1 for link in self._links if not link.closed)

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on 127.0.0.1 port 0."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and abort every connection."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        tasks = [t for link in self._links for t in link.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._links.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    # ------------------------------------------------------------------ fault switches

    def set_pass(self) -> None:
        """Back to plain forwarding (no refusal, blackhole, delay, throttle or armed cut)."""
        self._refuse = self._blackhole = self._cut_armed = False
        self._delay = 0.0
        self._rate = None
        self._poke()

    def drop(self) -> int:
        """Abort both sides of every open connection; returns how many were dropped."""
        links = [link for link in self._links if not link.closed]
        for link in links:
            link.abort()
        return len(links)

    def refuse(self, on: bool = True) -> None:
        """While on, new connections are closed at once (the server is "down")."""
        self._refuse = on

    def blackhole(self, on: bool = True) -> None:
        """While on, nothing is forwarded either way; sockets stay open (half-open path)."""
        self._blackhole = on
        self._poke()

    def set_delay(self, ms: float) -> None:
        """Hold every chunk ``ms`` milliseconds, both directions."""
        self._delay = ms / 1000.0

    def throttle(self, bytes_per_s: float | None) -> None:
        """Limit each direction of each connection to ``bytes_per_s`` (None: unlimited)."""
        self._rate = bytes_per_s

    def cut_mid_frame(self) -> None:
        """Forward half of the next server-to-client WebSocket frame, then close both sides."""
        self._cut_armed = True

    def inject(self, raw: bytes) -> None:
        """Write ``raw`` to the client at the next server-to-client frame boundary."""
        self._injections.append(raw)

    async def flush_injections(self) -> None:
        """Write pending injections now to every open WebSocket link (at a frame boundary)."""
        for link in list(self._links):
            if link.closed or not link.splitter.websocket or link.splitter._remaining:
                continue
            while self._injections:
                link.client.write(self._injections.popleft())
            with contextlib.suppress(Exception):
                await link.client.drain()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ plumbing

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refuse:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(client=writer, server=up_writer)
        self._links.add(link)
        loop = asyncio.get_running_loop()
        link.tasks = [
            loop.create_task(self._pump(link, reader, up_writer, to_client=False)),
            loop.create_task(self._pump(link, up_reader, writer, to_client=True)),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            link.abort()
            self._links.discard(link)

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, to_client: bool
    ) -> None:
        """Copy one direction, applying the faults; a delay line keeps latency off throughput."""
        line: asyncio.Queue[tuple[float, bytes, bool] | None] = asyncio.Queue()
        sender = asyncio.get_running_loop().create_task(self._send(link, line, writer, to_client=to_client))
        try:
            while not link.closed:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if self._blackhole:
                    continue  # discarded: the path is dead but nobody is told
                pieces = link.splitter.feed(data) if to_client else [(data, False)]
                for piece, boundary in pieces:
                    await line.put((time.monotonic() + self._delay, piece, boundary))
        except (ConnectionError, OSError):
            pass
        finally:
            await line.put(None)
            with contextlib.suppress(Exception):
                await sender
            # Half-close semantics are not needed: the first side to end ends the link.
            link.abort()

    async def _send(
        self,
        link: _Link,
        line: asyncio.Queue[tuple[float, bytes, bool] | None],
        writer: asyncio.StreamWriter,
        *,
        to_client: bool,
    ) -> None:
        try:
            while True:
                item = await line.get()
                if item is None or link.closed:
                    return
                due, piece, boundary = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # the injected delay itself, not a wait for state
                if self._blackhole:
                    continue
                if to_client and boundary:
                    self.frames_to_client += 1
                    while self._injections:
                        writer.write(self._injections.popleft())
                    if self._cut_armed:
                        self._cut_armed = False
                        writer.write(piece[: max(1, len(piece) // 2)] if len(piece) > 2 else piece)
                        with contextlib.suppress(Exception):
                            await writer.drain()
                        link.abort()
                        return
                await self._write(writer, piece)
        except (ConnectionError, OSError):
            link.abort()

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        rate = self._rate
        if not rate:
            writer.write(data)
            await writer.drain()
            return
        step = max(1, int(rate / 20))  # 50 ms slices
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(len(piece) / rate)  # the throttle itself
