"""The WebSocket helpers: redacted wire logs, failure and close texts, the buffer probe, the proxy."""

from __future__ import annotations

import logging
import os
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.helpers.connect_proxy import TunnelProxy
from tray_agent.core.redact import redact
from tray_agent.net.config import Timings
from tray_agent.net.wire import (
    buffered_probe,
    close_detail,
    describe,
    open_socket,
    redirect_detail,
    socket_proxy,
)

# -- redaction ------------------------------------------------------------------------------------


def test_redact_masks_tokens_cookies_and_bearers() -> None:
    line = (
        "> GET /ws/org1?token=eyJhbGc.eyJzdWIi.sig HTTP/1.1 Cookie: session=abc123 Authorization: Bearer xyz"
    )
    cleaned = redact(line)
    for secret in ("eyJhbGc", "abc123", "xyz"):
        assert secret not in cleaned
    assert "/ws/org1" in cleaned


def test_wire_logger_redacts_library_debug_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tray_agent.net.wire")
    logging.getLogger("tray_agent.net.wire").debug("> GET %s HTTP/1.1", "/ws/o?token=SECRET-JWT")
    logging.getLogger("tray_agent.net.wire").debug("> Cookie: session=SECRET-COOKIE")
    assert caplog.records
    assert all("SECRET" not in r.getMessage() for r in caplog.records)


# -- words for the connection state ----------------------------------------------------------------


def test_wire_describes_handshake_failures_in_plain_words() -> None:
    assert describe(TimeoutError()) == "connection timed out"
    assert (
        describe(ConnectionRefusedError(111, "Connection refused"))
        == "server unreachable (connection refused)"
    )
    assert describe(OSError(113, "No route to host")) == "server unreachable (No route to host)"
    assert describe(ValueError("x")) == "handshake failed (ValueError)"


def test_wire_redirect_detail_names_the_host_only() -> None:
    text = redirect_detail(302, "https://portal.example/login?token=SECRET")
    assert text.startswith("the server address redirects to portal.example (HTTP 302)")
    assert "SECRET" not in text
    assert redirect_detail(307, "").startswith("the server address redirects (HTTP 307)")


def _socket(**fields: Any) -> Any:
    return SimpleNamespace(**fields)


def test_wire_close_detail() -> None:
    assert close_detail(_socket(close_code=None, close_reason="")) == "connection lost"
    assert close_detail(_socket(close_code=1006, close_reason="")) == "connection lost"
    assert close_detail(_socket(close_code=1001, close_reason="")) == "closed by the server (1001)"
    assert close_detail(_socket(close_code=4000, close_reason="bye")) == "closed by the server (4000: bye)"


def test_wire_buffered_probe_sees_only_whole_buffered_frames() -> None:
    frames: deque[object] = deque()
    probe = buffered_probe(_socket(recv_messages=_socket(frames=_socket(queue=frames))))
    assert probe is not None
    assert not probe()
    frames.append(_socket(fin=False))  # a fragment may have to wait for the rest
    assert not probe()
    frames[0] = _socket(fin=True)
    assert probe()


def test_wire_buffered_probe_is_none_without_a_visible_buffer() -> None:
    assert buffered_probe(_socket()) is None


# -- the socket's proxy: the client's one choice -----------------------------------------------------


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment without any proxy variable (tests set their own)."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    return monkeypatch


def test_wire_socket_proxy_is_chosen_as_for_http_requests(proxy_env: pytest.MonkeyPatch) -> None:
    proxy_env.setenv("http_proxy", "http://plain.corp:3128")
    proxy_env.setenv("HTTPS_PROXY", "tls.corp:8080")
    proxy_env.setenv("wss_proxy", "http://never.corp:1")  # the library's own variable: not read
    proxy_env.setenv("no_proxy", "direct.test:8443,[::1]:9000")
    assert socket_proxy("wss://crm.test/ws", "") == "http://tls.corp:8080"
    assert socket_proxy("ws://crm.test/ws", "") == "http://plain.corp:3128"
    assert socket_proxy("wss://direct.test:8443/ws", "") is None
    assert socket_proxy("wss://direct.test/ws", "") == "http://tls.corp:8080"  # another port
    assert socket_proxy("ws://[::1]:9000/ws", "") is None
    # The setting wins, written out in full (the library reads no scheme-less URL).
    assert socket_proxy("wss://crm.test/ws", "u:p%40ss@proxy.corp") == "http://u:p%40ss@proxy.corp:80"
    proxy_env.setenv("https_proxy", "socks5://tunnel.corp:1080")  # only http:// proxies: direct
    assert socket_proxy("wss://crm.test/ws", "") is None


@pytest.mark.asyncio
async def test_wire_socket_to_an_ipv6_literal_through_a_connect_proxy(proxy_env: pytest.MonkeyPatch) -> None:
    hosts: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        hosts.append(ws.request.headers["Host"])
        await ws.close()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        proxy = TunnelProxy(port)  # tunnels to 127.0.0.1 whatever the CONNECT names
        proxy_env.setenv("http_proxy", await proxy.start())
        url = f"ws://[::1]:{port}/ws"
        try:
            ws = await open_socket(
                url, {}, max_size=1024, timings=Timings(), proxy=socket_proxy(url, ""), ssl_context=None
            )
            await ws.wait_closed()
        finally:
            proxy.stop()
    authority = f"[::1]:{port}"
    request_line, *headers = proxy.heads[0].split("\r\n")
    assert request_line == f"CONNECT {authority} HTTP/1.1"
    assert f"Host: {authority}" in headers
    assert hosts == [authority]
