"""The client's HTTP layer (net.http) against scripted servers on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import gzip
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.helpers.connect_proxy import TunnelProxy
from tests.helpers.tls import self_signed_cert
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import ServerUnreachable, TlsError, classify_network_error, make_ssl_context
from tray_agent.net.http import (
    BodyTooLarge,
    ConnectError,
    FormField,
    HttpClient,
    ProxyRefused,
    ServerDisconnected,
    parse_proxy,
)

WAIT = 10.0  # upper bound for something that should happen at once


# -- a scripted HTTP/1.1 server ----------------------------------------------------------------------


@dataclass
class Request:
    """One request as the server read it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    connection: int


Answer = tuple[int, list[tuple[str, str]], bytes]
Handler = Callable[[Request], Awaitable[Answer | str]]
"""Returns an answer, or "close" (close without answering) or "hang" (never answer)."""


async def _ok(request: Request) -> Answer:
    return 200, [], b"ok " + request.target.encode()


@dataclass
class ScriptedServer:
    """HTTP/1.1 with keep-alive; ``handler`` decides each answer. ``closed`` counts ended connections."""

    handler: Handler = _ok
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    closed: int = 0
    closed_event: asyncio.Event = field(default_factory=asyncio.Event)
    received: asyncio.Event = field(default_factory=asyncio.Event)
    close_after_answer: bool = False
    server: asyncio.Server | None = None
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.writers.add(writer)
        self.handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, target, headers, body, number)
                self.requests.append(request)
                self.received.set()
                answer = await self.handler(request)
                if answer == "close":
                    break
                if answer == "hang":
                    await reader.read()  # until the client goes away
                    break
                assert not isinstance(answer, str)
                status, extra, payload = answer
                names = {name.lower() for name, _ in extra}
                out = [f"HTTP/1.1 {status} X"]
                if "content-length" not in names and "transfer-encoding" not in names:
                    out.append(f"Content-Length: {len(payload)}")
                out += [f"{name}: {value}" for name, value in extra]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + payload)
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.closed += 1
            self.closed_event.set()

    async def wait_closed(self, count: int) -> None:
        async def until() -> None:
            while self.closed < count:
                self.closed_event.clear()
                await self.closed_event.wait()

        await asyncio.wait_for(until(), WAIT)


@contextlib.asynccontextmanager
async def scripted(
    handler: Handler = _ok, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer(handler)
    server.server = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield server
    finally:
        server.server.close()
        for writer in server.writers:
            writer.close()  # the handlers see the end of their stream and finish
        await asyncio.wait_for(asyncio.gather(*server.handlers, return_exceptions=True), WAIT)


@contextlib.asynccontextmanager
async def client(**kwargs: object) -> AsyncIterator[HttpClient]:
    http = HttpClient(trust_env=False, **kwargs)  # type: ignore[arg-type]
    try:
        yield http
    finally:
        await http.close()


# -- keep-alive ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_http_keep_alive_reuses_one_connection() -> None:
    async with scripted() as server, client() as http:
        first = await http.request("GET", server.url + "/a", query=[("q", "x y")], timeout=WAIT)
        second = await http.request("POST", server.url + "/b", json={"text": "hi"}, timeout=WAIT)
    assert (first.status, first.body) == (200, b"ok /a?q=x+y")
    assert second.body == b"ok /b"
    assert server.connections == 1
    assert http.connections_opened == 1
    assert server.requests[1].headers["content-type"] == "application/json"
    assert server.requests[1].body == b'{"text": "hi"}'


@pytest.mark.asyncio
async def test_http_concurrent_requests_keep_a_bounded_pool_on_daemon_threads() -> None:
    gate = asyncio.Event()

    async def wait_for_all(request: Request) -> Answer:
        if len(server.requests) == 6:
            gate.set()
        await gate.wait()
        return 200, [], b"ok"

    async with scripted(wait_for_all) as server, client(pool_per_key=2) as http:
        answers = await asyncio.gather(
            *(http.request("GET", server.url + "/", timeout=WAIT) for _ in range(6))
        )
        assert [a.status for a in answers] == [200] * 6
        assert server.connections == 6
        assert http.idle_connections == 2  # the others were closed
        workers = [t for t in threading.enumerate() if t.name == "tray-agent-http"]
        assert workers
        assert all(t.daemon for t in workers)  # never holds up the interpreter's exit


@pytest.mark.asyncio
async def test_http_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    async with scripted() as server, client() as http:
        server.close_after_answer = True
        await http.request("GET", server.url + "/a", timeout=WAIT)
        await server.wait_closed(1)
        server.close_after_answer = False
        answer = await http.request("POST", server.url + "/reply", json={}, timeout=WAIT)
    assert answer.status == 200
    assert [r.target for r in server.requests] == ["/a", "/reply"]  # the reply went out once
    assert server.connections == 2


@pytest.mark.asyncio
async def test_http_a_reused_connection_closed_on_the_request_retries_only_safe_methods() -> None:
    async def second_request_on_a_connection_is_dropped(request: Request) -> Answer | str:
        seen = [r for r in server.requests if r.connection == request.connection]
        return "close" if len(seen) == 2 else (200, [], b"fine")

    async with scripted(second_request_on_a_connection_is_dropped) as server, client() as http:
        await http.request("GET", server.url + "/a", timeout=WAIT)
        # A GET is sent again on a new connection.
        assert (await http.request("GET", server.url + "/list", timeout=WAIT)).body == b"fine"
        assert [r.target for r in server.requests] == ["/a", "/list", "/list"]
        # A POST (a reply) is never sent twice: the caller hears that the server went away.
        with pytest.raises(ServerDisconnected) as info:
            await http.request("POST", server.url + "/reply", json={"text": "hi"}, timeout=WAIT)
    assert [r.target for r in server.requests].count("/reply") == 1
    assert classify_network_error(info.value, "request").text == "request: server unreachable."


@pytest.mark.asyncio
async def test_http_keeps_every_set_cookie_and_the_status_of_a_redirect() -> None:
    async def answer(request: Request) -> Answer:
        cookies = [("Set-Cookie", "session=abc; HttpOnly"), ("Set-Cookie", "theme=dark")]
        return 302, [*cookies, ("Location", "/elsewhere")], b""

    async with scripted(answer) as server, client() as http:
        response = await http.request("POST", server.url + "/auth/login", json={}, timeout=WAIT)
    assert response.status == 302  # not followed
    assert response.header_values("set-cookie") == ("session=abc; HttpOnly", "theme=dark")
    assert response.header("location") == "/elsewhere"
    assert len(server.requests) == 1


# -- timeouts, cancellation, failures ----------------------------------------------------------------


async def _hang(request: Request) -> str:
    return "hang"


@pytest.mark.asyncio
async def test_http_total_timeout_raises_and_frees_the_connection() -> None:
    async with scripted(_hang) as server, client() as http:
        with pytest.raises(TimeoutError) as info:
            await http.request("GET", server.url + "/slow", timeout=0.3)
        await server.wait_closed(1)  # the worker gave the connection up
        assert http.idle_connections == 0
    assert classify_network_error(info.value, "sign-in").text == "sign-in: server unreachable."


@pytest.mark.asyncio
async def test_http_cancel_returns_at_once_and_the_worker_lets_go() -> None:
    async with scripted(_hang) as server, client() as http:
        task = asyncio.ensure_future(http.request("POST", server.url + "/reply", json={}, timeout=60))
        await asyncio.wait_for(server.received.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)
        await server.wait_closed(1)  # well before the 60 s socket timeout
        server.handler = _ok
        assert (await http.request("GET", server.url + "/next", timeout=WAIT)).status == 200


@pytest.mark.asyncio
async def test_http_refused_connection_is_a_connect_error() -> None:
    async with scripted() as server:
        url = server.url
    async with client() as http:
        with pytest.raises(ConnectError) as info:
            await http.request("GET", url + "/", timeout=WAIT)
    assert classify_network_error(info.value, "request").text == "request: server unreachable."


@pytest.mark.asyncio
async def test_http_server_closing_without_an_answer_is_server_disconnected() -> None:
    async def close(request: Request) -> str:
        return "close"

    async with scripted(close) as server, client() as http:
        with pytest.raises(ServerDisconnected):
            await http.request("GET", server.url + "/", timeout=WAIT)


# -- bounded answers -------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked", "gzip"])
@pytest.mark.asyncio
async def test_http_refuses_an_absurd_body(framing: str) -> None:
    big = b"x" * 5000

    async def answer(request: Request) -> Answer:
        if framing == "length":
            return 200, [], big
        if framing == "gzip":
            return 200, [("Content-Encoding", "gzip")], gzip.compress(big)
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(big[i : i + 1000]), big[i : i + 1000]) for i in range(0, 5000, 1000)
        )
        return 200, [("Transfer-Encoding", "chunked")], chunks + b"0\r\n\r\n"

    async with scripted(answer) as server, client(max_body=4096) as http:
        with pytest.raises(BodyTooLarge) as info:
            await http.request("GET", server.url + "/huge", timeout=WAIT)
    assert "too large" in classify_network_error(info.value, "request").text


@pytest.mark.asyncio
async def test_http_reads_chunked_and_gzip_answers() -> None:
    async def answer(request: Request) -> Answer:
        if request.target == "/gzip":
            return 200, [("Content-Encoding", "gzip")], gzip.compress(b'{"ok": true}')
        return 200, [("Transfer-Encoding", "chunked")], b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"

    async with scripted(answer) as server, client() as http:
        assert (await http.request("GET", server.url + "/gzip", timeout=WAIT)).body == b'{"ok": true}'
        assert (await http.request("GET", server.url + "/chunked", timeout=WAIT)).body == b"abcde"
    assert server.connections == 1


# -- multipart -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_http_multipart_form_with_a_file() -> None:
    async with scripted() as server, client() as http:
        fields = [
            FormField("sender_type", "agent"),
            FormField("content", 'héllo "you"\r\nline 2'),
            FormField("file", b"\x89PNG\x00", filename='a "b".png', content_type="image/png"),
        ]
        await http.request("POST", server.url + "/messages", form=fields, timeout=WAIT)
    (request,) = server.requests
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + request.body, policy=email.policy.HTTP
    )
    assert isinstance(message, EmailMessage)
    parts = list(message.iter_parts())
    names = [p.get_param("name", header="content-disposition") for p in parts]
    assert names == ["sender_type", "content", "file"]
    assert parts[1].get_payload(decode=True).decode() == 'héllo "you"\r\nline 2'
    assert parts[2].get_content_type() == "image/png"
    assert parts[2].get_filename() == "a %22b%22.png"  # quoted as browsers do
    assert parts[2].get_payload(decode=True) == b"\x89PNG\x00"


# -- TLS -------------------------------------------------------------------------------------------


def _server_tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    cert, key = self_signed_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


@pytest.mark.asyncio
async def test_http_untrusted_certificate_is_a_tls_error(tmp_path: Path) -> None:
    server_tls, cert = _server_tls(tmp_path)
    async with scripted(ssl_context=server_tls) as server:
        url = f"https://127.0.0.1:{server.port}/"
        async with client(ssl_context=make_ssl_context(ConnectionSettings())) as http:
            with pytest.raises(ssl.SSLError) as info:
                await http.request("GET", url, timeout=WAIT)
        error = classify_network_error(info.value, "sign-in")
        assert isinstance(error, TlsError)
        assert error.text == "sign-in: the server's TLS certificate is not trusted."
        # The policy's CA bundle makes it trusted; the connection is kept alive as over http.
        trusted = make_ssl_context(ConnectionSettings(ca_bundle=str(cert)))
        async with client(ssl_context=trusted) as http:
            assert (await http.request("GET", url, timeout=WAIT)).status == 200
            assert (await http.request("GET", url, timeout=WAIT)).status == 200
            assert http.connections_opened == 1


# -- proxies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 407])
@pytest.mark.asyncio
async def test_http_https_through_a_connect_proxy(tmp_path: Path, status: int) -> None:
    server_tls, cert = _server_tls(tmp_path)
    async with scripted(ssl_context=server_tls) as server:
        port = server.port
        proxy = TunnelProxy(port, status)
        proxy.url = (await proxy.start()).replace("http://", "http://user:p%40ss@")
        trusted = make_ssl_context(ConnectionSettings(ca_bundle=str(cert)))
        try:
            async with client(ssl_context=trusted) as http:
                request = http.request(
                    "GET", f"https://127.0.0.1:{server.port}/x", proxy=proxy.url, timeout=WAIT
                )
                if status == 200:
                    assert (await request).body == b"ok /x"
                else:
                    with pytest.raises(ProxyRefused) as info:
                        await request
                    error = classify_network_error(info.value, "request")
                    assert isinstance(error, ServerUnreachable)
                    assert "407" in error.text
        finally:
            proxy.stop()
    assert proxy.heads[0].startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.")
    assert parse_proxy(proxy.url).authorization in proxy.heads[0]  # Basic user:p@ss


@pytest.mark.asyncio
async def test_http_https_to_an_ipv6_literal_through_a_connect_proxy(tmp_path: Path) -> None:
    # The proxy tunnels to 127.0.0.1 whatever the CONNECT names: no IPv6 socket is needed.
    server_tls, cert = _server_tls(tmp_path)  # its certificate names ::1 too
    async with scripted(ssl_context=server_tls) as server:
        authority = f"[::1]:{server.port}"
        proxy = TunnelProxy(server.port)
        await proxy.start()
        trusted = make_ssl_context(ConnectionSettings(ca_bundle=str(cert)))
        try:
            async with client(ssl_context=trusted) as http:
                url = f"https://{authority}/x"
                assert (await http.request("GET", url, proxy=proxy.url, timeout=WAIT)).body == b"ok /x"
        finally:
            proxy.stop()
    request_line, *headers = proxy.heads[0].split("\r\n")
    assert request_line == f"CONNECT {authority} HTTP/1.1"
    assert f"Host: {authority}" in headers
    assert server.requests[0].headers["host"] == authority


@pytest.mark.asyncio
async def test_http_plain_http_through_a_proxy_uses_absolute_uris() -> None:
    async with scripted() as proxy, client() as http:  # the scripted server stands for the proxy
        proxy_url = f"http://agent:secret@127.0.0.1:{proxy.port}"
        await http.request("GET", "http://crm.example.test:8080/api?a=1", proxy=proxy_url, timeout=WAIT)
    (request,) = proxy.requests
    assert request.target == "http://crm.example.test:8080/api?a=1"
    assert request.headers["host"] == "crm.example.test:8080"
    assert request.headers["proxy-authorization"] == "Basic YWdlbnQ6c2VjcmV0"


@pytest.mark.asyncio
async def test_http_environment_proxy_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    async with scripted() as proxy:
        for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("no_proxy", "direct.example.test")
        http = HttpClient(trust_env=True)
        try:
            await http.request("GET", "http://crm.example.test/api", timeout=WAIT)
            with pytest.raises(ConnectError):  # bypassed: straight to a name that does not resolve
                await http.request("GET", "http://direct.example.test/api", timeout=WAIT)
        finally:
            await http.close()
        untrusting = HttpClient(trust_env=False)
        try:
            with pytest.raises(ConnectError):
                await untrusting.request("GET", "http://crm.example.test/api", timeout=WAIT)
        finally:
            await untrusting.close()
    assert [r.target for r in proxy.requests] == ["http://crm.example.test/api"]


def test_http_proxy_urls() -> None:
    assert parse_proxy("proxy.corp:3128") == parse_proxy("http://proxy.corp:3128")
    assert parse_proxy("http://proxy.corp").port == 80
    with pytest.raises(ConnectError, match="only http://"):
        parse_proxy("socks5://user:pw@proxy.corp:1080")
    with pytest.raises(ConnectError) as info:
        parse_proxy("https://user:secret@proxy.corp:443")
    assert "secret" not in str(info.value)


@pytest.mark.asyncio
async def test_http_closed_client_refuses_requests() -> None:
    http = HttpClient(trust_env=False)
    await http.close()
    with pytest.raises(ConnectError, match="closed"):
        await http.request("GET", "http://127.0.0.1:9/", timeout=WAIT)
