"""Tests for secret redaction and the redacting logging filter."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from tray_agent.core.redact import REDACTED, RedactingFilter, install_redaction, redact

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
HEX64 = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("GET wss://h/ws?token=abc123&x=1", "abc123", "x=1"),
        ("https://h/cb?access_token=AT-1&refresh_token=RT-2&state=ok", "AT-1", "state=ok"),
        ("https://h/cb?access_token=AT-1&refresh_token=RT-2&state=ok", "RT-2", "access_token="),
        ('{"access_token": "AT-9", "token_type": "bearer"}', "AT-9", '"token_type": "bearer"'),
        ('{"refresh_token":"RT-9","expires_in":3600}', "RT-9", '"expires_in":3600'),
        ('{"email": "a@b.c", "password": "hun\\"ter2"}', "hun", '"email": "a@b.c"'),
        ("{'password': 'pw-in-repr', 'user': 'bob'}", "pw-in-repr", "'user': 'bob'"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi", "Authorization: Bearer"),
        ("authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz", "Basic"),
        ("headers={'Authorization': 'Bearer tok-12345678'}", "tok-12345678", "Authorization"),
        ("sent Bearer tok-12345678 upstream", "tok-12345678", "upstream"),
        ("Cookie: session=abc; theme=dark", "abc", "Cookie: session="),
        ("Cookie: session=abc; theme=dark", "dark", "theme="),
        (f"Set-Cookie: session={HEX64}; Path=/; HttpOnly", HEX64, "Path=/; HttpOnly"),
        (f"resync with session={HEX64}", HEX64, "resync with session="),
        (f"jwt {JWT} done", JWT, "done"),
        (f'{{"apikey": "{JWT}"}}', JWT, "apikey"),
        ("apikey: anon-key-value", "anon-key-value", "apikey:"),
        ("X-Api-Key: k-123", "k-123", "X-Api-Key:"),
        ("login(email='a@b', password='pw1')", "pw1", "email='a@b'"),
        ("password: hunter2", "hunter2", "password:"),
        ("proxy https://bob:pa55@proxy:3128/", "pa55", "bob:"),
        ('{"token": 123456}', "123456", '"token"'),
    ],
)
def test_redact_removes_secret_shapes(text: str, secret: str, kept: str) -> None:
    result = redact(text)
    assert secret not in result
    assert kept in result
    assert REDACTED in result


@pytest.mark.parametrize(
    "text",
    [
        "connected to wss://support.example.com/ws in 120 ms",
        "token_type=bearer expires_in=3600",
        "websocket closed with code=1006",
        "Bearer token required",
        "",
    ],
)
def test_redact_leaves_harmless_text(text: str) -> None:
    assert redact(text) == text


def test_redact_is_idempotent() -> None:
    text = f"Cookie: session={HEX64}; a=b\nAuthorization: Bearer {JWT}\n?token=x&access_token=y"
    once = redact(text)
    assert redact(once) == once
    assert "]]" not in once


@pytest.fixture
def stream_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test_redact.filter")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def test_filter_redacts_percent_args(stream_logger: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = stream_logger
    logger.info("connecting to %s with %r", "wss://h/ws?token=tok-1", {"password": "pw-2"})
    output = stream.getvalue()
    assert "tok-1" not in output
    assert "pw-2" not in output
    assert "wss://h/ws?token=[REDACTED]" in output


def test_filter_redacts_exceptions_and_stack(stream_logger: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = stream_logger
    try:
        raise RuntimeError(f"refresh failed: Authorization: Bearer {JWT}")
    except RuntimeError:
        logger.exception("login failed for %s", "refresh_token=rt-3")
    logger.warning("stack", stack_info=True, extra={"note": "x"})
    output = stream.getvalue()
    assert JWT not in output
    assert "rt-3" not in output
    assert "Traceback" in output
    assert "RuntimeError: refresh failed" in output


def test_filter_on_propagated_records_via_install(caplog: pytest.LogCaptureFixture) -> None:
    root = logging.getLogger()
    redacting = install_redaction(root)
    try:
        assert any(redacting in h.filters for h in root.handlers if h is caplog.handler)
        # A second install does not add a second filter.
        install_redaction(root)
        assert sum(isinstance(f, RedactingFilter) for f in caplog.handler.filters) == 1
        with caplog.at_level(logging.INFO):
            logging.getLogger("tray_agent.net.some_child").info("Cookie: session=%s", HEX64)
        assert HEX64 not in caplog.text
        assert HEX64 not in caplog.records[-1].getMessage()
    finally:
        for handler in root.handlers:
            handler.removeFilter(redacting)


def test_filter_survives_bad_format_args() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s %s", ("only-one",), None)
    assert RedactingFilter().filter(record) is True
    assert "only-one" not in record.getMessage()
    assert "withheld" in record.getMessage()


def test_filter_applies_once_per_record() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "value %s", ("password=pw",), None)
    first = RedactingFilter()
    assert first.filter(record)
    message = record.getMessage()
    assert RedactingFilter().filter(record)
    assert record.getMessage() == message == "value password=[REDACTED]"
    assert record.args is None
