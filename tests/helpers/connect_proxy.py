"""A CONNECT proxy on 127.0.0.1 port 0 that records each CONNECT head and tunnels to one local port."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class TunnelProxy:
    """Tunnels every CONNECT to 127.0.0.1:``target``, whatever host it names (or refuses with ``status``).

    ``heads`` keeps each CONNECT request's head (request line and headers) as received, so tests
    can check what the client asked for (an IPv6 literal in brackets, Proxy-Authorization ...).
    """

    target: int
    status: int = 200
    heads: list[str] = field(default_factory=list)
    server: asyncio.Server | None = None
    url: str = ""

    async def start(self) -> str:
        """Listen on 127.0.0.1 port 0; returns (and keeps in ``url``) the proxy's http:// URL."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self.url

    def stop(self) -> None:
        """Stop listening (open tunnels end with their peers)."""
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        self.heads.append(head)
        if self.status != 200:
            writer.write(f"HTTP/1.1 {self.status} Proxy Authentication Required\r\n\r\n".encode())
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
