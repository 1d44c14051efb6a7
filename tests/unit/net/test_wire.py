"""The WebSocket helpers without a socket: redacted wire logs, failure and close texts, the buffer probe."""

from __future__ import annotations

import logging
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest

from tray_agent.core.redact import redact
from tray_agent.net.wire import buffered_probe, close_detail, describe, redirect_detail

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
