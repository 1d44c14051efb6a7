"""The doctor's network checks: proxy, DNS, TCP, TLS, HTTP, the WebSocket handshake, clock and token."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from tray_agent import __version__
from tray_agent.checks.results import CheckResult, Msg, Status, check_result
from tray_agent.core.events import Dialect
from tray_agent.core.i18n import _
from tray_agent.core.protocol import codec_for
from tray_agent.core.protocol.base import UrlError
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.http import (
    ConnectError,
    choose_proxy,
    parse_proxy,
    proxy_variable,
    without_userinfo,
)

STEP_TIMEOUT = 5.0  # seconds for each network step (DNS, TCP, TLS, one HTTP answer)

CLOCK_WARN = 60.0  # seconds of clock skew that start to matter (token iat/exp checks)
CLOCK_FAIL = 300.0  # sign-in tokens are refused beyond this
CERT_WARN_DAYS = 14
MAX_HEADER_BYTES = 64 * 1024


# ---------------------------------------------------------------------------------------------
# Network


@dataclass(frozen=True, slots=True)
class Target:
    """Where the server is, from ``connection.server``."""

    scheme: str
    host: str
    port: int
    base_path: str

    @property
    def secure(self) -> bool:
        """Whether the connection uses TLS."""
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        """``host:port`` as in a Host header (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    @classmethod
    def from_url(cls, url: str) -> Target | None:
        """The target of an http(s) URL, or None when it is not one."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, port or default, parts.path.rstrip("/"))


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy to tunnel through (CONNECT)."""

    host: str
    port: int
    origin: str  # "settings" or the environment variable
    display: str  # the URL without credentials
    authorization: str | None = None  # Proxy-Authorization value; never printed


def _strip_userinfo(url: str) -> str:
    return without_userinfo(url).rstrip("/")


def find_proxy(
    conn: ConnectionSettings, target: Target, env: Mapping[str, str]
) -> tuple[Proxy | None, CheckResult]:
    """The proxy the app would use for ``target`` (settings first, else the environment).

    The environment's proxy (or the operating system's) is the client's own choice
    (:func:`~tray_agent.net.http.choose_proxy`), so the doctor tests what the client uses.

    Returns:
        The proxy (or None for a direct connection) and the report line about it.
    """
    origin = "settings (connection.proxy)"
    url = conn.proxy
    if not url:
        chosen = choose_proxy(target.scheme, target.host, target.port, env)
        if chosen is None:
            configured = proxy_variable(target.scheme, env)
            if configured is None:
                return None, check_result("proxy", Status.OK, _(Msg.PROXY_NONE), proxy=None)
            shown = _strip_userinfo(configured[1])
            text = _(Msg.PROXY_BYPASSED).format(proxy=shown, host=target.host)
            return None, check_result("proxy", Status.OK, text, proxy=None)
        origin, url = chosen
    if "://" not in url:
        url = "http://" + url
    try:  # the client's own reading of the URL (net.http), so the doctor tests what it uses
        parsed = parse_proxy(url)
    except ConnectError:
        return None, check_result(
            "proxy", Status.WARN, _(Msg.PROXY_BAD).format(proxy=_strip_userinfo(url)), proxy=None
        )
    shown = _strip_userinfo(url)
    proxy = Proxy(parsed.host, parsed.port, origin, shown, parsed.authorization)
    return proxy, check_result(
        "proxy", Status.OK, _(Msg.PROXY_USED).format(proxy=shown, origin=origin), proxy=shown
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {STEP_TIMEOUT:.0f} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there, or a firewall rejects it)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@dataclass
class _Answer:
    status: int
    headers: dict[str, str]


async def _read_head(reader: asyncio.StreamReader) -> _Answer:
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP_TIMEOUT)
    if len(raw) > MAX_HEADER_BYTES:
        raise ValueError("answer headers too long")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return _Answer(int(parts[1]), headers)


def _ssl_context(conn: ConnectionSettings) -> ssl.SSLContext:
    from tray_agent.net.auth import make_ssl_context

    return make_ssl_context(conn)


def _cert_fields(cert: Mapping[str, Any]) -> tuple[str, str, str]:
    def name(entry: Any) -> str:
        values = dict(pair for rdn in entry or () for pair in rdn)
        return str(values.get("commonName") or values.get("organizationName") or "?")

    return name(cert.get("subject")), name(cert.get("issuer")), str(cert.get("notAfter", "?"))


def _describe_der(der: bytes | None) -> str:
    """Subject, issuer and expiry of an (unverified) certificate, when ``cryptography`` is here."""
    if not der:
        return ""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
    except ImportError:
        return ""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return ""

    def cn(name: Any) -> str:
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else name.rfc4514_string()

    expires = cert.not_valid_after_utc.strftime("%Y-%m-%d")
    return _(Msg.TLS_CERT_DETAIL).format(subject=cn(cert.subject), issuer=cn(cert.issuer), expires=expires)


def _verify_message(exc: ssl.SSLCertVerificationError, host: str, cert: str) -> str:
    # OpenSSL X509_V_ERR_* codes.
    code = exc.verify_code
    if code in (18, 19):
        return _(Msg.TLS_SELF_SIGNED).format(cert=cert)
    if code in (2, 20, 21):
        return _(Msg.TLS_UNKNOWN_CA).format(cert=cert)
    if code in (62, 64) or "mismatch" in str(exc).lower():  # host name, IP address
        return _(Msg.TLS_HOSTNAME).format(host=host, cert=cert)
    if code == 10:
        return _(Msg.TLS_EXPIRED).format(cert=cert)
    if code == 9:
        return _(Msg.TLS_NOT_YET).format(cert=cert)
    return _(Msg.TLS_OTHER).format(reason=exc.verify_message or exc.reason or exc, cert=cert)


class _StepError(Exception):
    """A network step failed; carries its report line."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.message)
        self.result = result


@dataclass
class NetworkProbe:
    """Connects to the server (through the proxy, if any) and speaks just enough HTTP.

    Each request uses a fresh connection (``Connection: close``); the first connection's steps
    (DNS, TCP, proxy CONNECT, TLS) are reported, later ones only fail their own check.
    """

    conn: ConnectionSettings
    target: Target
    proxy: Proxy | None
    results: list[CheckResult] = field(default_factory=list)
    reported: bool = False

    def _report(self, result: CheckResult) -> None:
        if not self.reported:
            self.results.append(result)

    async def resolve(self) -> None:
        """DNS for the server (and the proxy); a proxy resolves the server itself."""
        loop = asyncio.get_running_loop()
        names = [(self.proxy.host, self.proxy.port)] if self.proxy else []
        names.append((self.target.host, self.target.port))
        for host, port in names:
            is_server = host == self.target.host and port == self.target.port
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), STEP_TIMEOUT
                )
            except (OSError, TimeoutError) as exc:
                if is_server and self.proxy is not None:
                    text = _(Msg.DNS_VIA_PROXY).format(host=host, reason=_reason(exc))
                    self.results.append(check_result("dns", Status.OK, text, host=host, addresses=[]))
                    continue
                text = _(Msg.DNS_FAIL).format(host=host, reason=_reason(exc))
                raise _StepError(check_result("dns", Status.FAIL, text)) from exc
            addresses = sorted({str(info[4][0]) for info in infos})
            text = _(Msg.DNS_OK).format(host=host, addresses=", ".join(addresses[:4]))
            self.results.append(check_result("dns", Status.OK, text, host=host, addresses=addresses))

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """TCP (+ proxy CONNECT) (+ TLS) to the server; raises :class:`_StepError` on a failure."""
        host, port = (
            (self.proxy.host, self.proxy.port) if self.proxy else (self.target.host, self.target.port)
        )
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), STEP_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise _StepError(
                check_result(
                    "tcp", Status.FAIL, _(Msg.TCP_FAIL).format(host=host, port=port, reason=_reason(exc))
                )
            ) from exc
        try:
            self._report(check_result("tcp", Status.OK, _(Msg.TCP_OK).format(host=host, port=port)))
            if self.proxy is not None:
                await self._connect_through(reader, writer)
            if self.target.secure:
                await self._start_tls(writer)
            elif not self.reported:
                self._report(check_result("tls", Status.OK, _(Msg.TLS_PLAIN), tls=False))
        except BaseException:
            writer.close()
            raise
        self.reported = True
        return reader, writer

    async def _connect_through(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.proxy is not None
        target = f"{self.target.host}:{self.target.port}"
        if ":" in self.target.host:
            target = f"[{self.target.host}]:{self.target.port}"
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if self.proxy.authorization:
            head += f"Proxy-Authorization: {self.proxy.authorization}\r\n"
        writer.write((head + "\r\n").encode("latin-1"))
        try:
            await writer.drain()
            answer = await _read_head(reader)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            text = _(Msg.PROXY_CONNECT_FAIL).format(
                host=self.target.host, port=self.target.port, reason=_reason(exc)
            )
            raise _StepError(check_result("proxy-connect", Status.FAIL, text)) from exc
        if answer.status != 200:
            text = _(Msg.PROXY_CONNECT_FAIL).format(
                host=self.target.host, port=self.target.port, reason=f"HTTP {answer.status}"
            )
            raise _StepError(check_result("proxy-connect", Status.FAIL, text, http_status=answer.status))
        text = _(Msg.PROXY_CONNECT_OK).format(host=self.target.host, port=self.target.port)
        self._report(check_result("proxy-connect", Status.OK, text))

    async def _start_tls(self, writer: asyncio.StreamWriter) -> None:
        context = _ssl_context(self.conn)
        host = self.target.host
        try:
            await asyncio.wait_for(writer.start_tls(context, server_hostname=host), STEP_TIMEOUT)
        except ssl.SSLCertVerificationError as exc:
            cert = _describe_der(await self._unverified_certificate())
            raise _StepError(
                check_result(
                    "tls", Status.FAIL, _verify_message(exc, host, cert), verify_code=exc.verify_code
                )
            ) from exc
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            raise _StepError(
                check_result("tls", Status.FAIL, _(Msg.TLS_FAILED).format(reason=_reason(exc)))
            ) from exc
        if self.reported:
            return
        ssl_object = writer.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        version = ssl_object.version() if ssl_object is not None else "TLS"
        subject, issuer, expires = _cert_fields(peer if isinstance(peer, dict) else {})
        details = {"tls": True, "version": version, "subject": subject, "issuer": issuer, "expires": expires}
        text = _(Msg.TLS_OK).format(version=version, subject=subject, issuer=issuer, expires=expires)
        status = Status.OK
        with contextlib.suppress(ValueError, KeyError):
            days = (ssl.cert_time_to_seconds(expires) - datetime.now(UTC).timestamp()) / 86400
            if days < CERT_WARN_DAYS:
                status = Status.WARN
                text = _(Msg.TLS_EXPIRING).format(days=int(days), expires=expires)
        self._report(check_result("tls", status, text, **details))

    async def _unverified_certificate(self) -> bytes | None:
        """The server's certificate without verifying it, only to describe it in the report."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        probe = NetworkProbe(self.conn, Target("http", self.target.host, self.target.port, ""), self.proxy)
        probe.reported = True
        try:
            _reader, writer = await probe.open()
        except _StepError:
            return None
        try:
            await asyncio.wait_for(writer.start_tls(context, server_hostname=self.target.host), STEP_TIMEOUT)
            ssl_object = writer.get_extra_info("ssl_object")
            return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        except (ssl.SSLError, OSError, TimeoutError):
            return None
        finally:
            writer.close()

    async def request(self, path: str, extra_headers: Sequence[tuple[str, str]] = ()) -> _Answer:
        """One GET over a fresh connection; the status line and headers only."""
        reader, writer = await self.open()
        try:
            head = f"GET {path} HTTP/1.1\r\nHost: {self.target.authority}\r\n"
            head += f"User-Agent: tray-agent-doctor/{__version__}\r\nAccept: */*\r\n"
            for name, value in extra_headers:
                head += f"{name}: {value}\r\n"
            if not any(name.lower() == "connection" for name, _ in extra_headers):
                head += "Connection: close\r\n"
            writer.write((head + "\r\n").encode("latin-1"))
            await writer.drain()
            return await _read_head(reader)
        finally:
            writer.close()
            with contextlib.suppress(Exception):  # the server may reset a closed TLS stream
                await asyncio.wait_for(writer.wait_closed(), STEP_TIMEOUT)


def websocket_path(conn: ConnectionSettings, target: Target) -> tuple[str, str] | None:
    """The request path of the dialect's WebSocket endpoint, and the same for the report.

    The org path carries the token in its query (when one is set); the shown path never does.
    """
    token = conn.token.get_secret_value()
    base = f"{target.scheme}://{target.authority}{target.base_path}"
    try:  # the codec's own URL: the doctor probes what the client opens
        url = urlsplit(codec_for(Dialect(conn.dialect)).ws_url(base, token=token, org=conn.org))
    except UrlError:
        return None
    return (f"{url.path}?{url.query}" if token and url.query else url.path), url.path


async def check_network(
    conn: ConnectionSettings, env: Mapping[str, str], now: Callable[[], datetime] | None = None
) -> list[CheckResult]:
    """Proxy, DNS, TCP, TLS, HTTP, WebSocket handshake, clock and token checks, in that order."""
    now = now or (lambda: datetime.now(UTC))
    target = Target.from_url(conn.server)
    if target is None:
        return [check_result("network", Status.SKIP, _(Msg.SKIPPED_NO_SERVER))]
    proxy, proxy_line = find_proxy(conn, target, env)
    probe = NetworkProbe(conn, target, proxy, [proxy_line])
    url = f"{target.scheme}://{target.authority}{target.base_path or '/'}"
    failed = ""
    answer: _Answer | None = None
    try:
        await probe.resolve()
        answer = await probe.request(target.base_path or "/")
    except _StepError as step:
        probe.results.append(step.result)
        failed = step.result.check
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
        probe.results.append(
            check_result("http", Status.FAIL, _(Msg.HTTP_BAD).format(url=url, reason=_reason(exc)))
        )
        failed = "http"
    results = probe.results
    if answer is not None:
        status = Status.WARN if answer.status >= 500 else Status.OK
        template = _(Msg.HTTP_ERROR) if answer.status >= 500 else _(Msg.HTTP_OK)
        results.append(
            check_result(
                "http", status, template.format(status=answer.status, url=url), http_status=answer.status
            )
        )
        results.append(await _check_websocket(probe, conn, target))
        results.append(_check_clock(answer, now()))
    else:
        for check in ("websocket", "clock"):
            results.append(check_result(check, Status.SKIP, _(Msg.SKIPPED_AFTER).format(what=failed)))
    token_line = _check_token(conn, now())
    if token_line is not None:
        results.append(token_line)
    return results


async def _check_websocket(probe: NetworkProbe, conn: ConnectionSettings, target: Target) -> CheckResult:
    paths = websocket_path(conn, target)
    if paths is None:
        return check_result("websocket", Status.SKIP, _(Msg.WS_NO_ORG))
    path, shown = paths
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    headers = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", key),
        ("Origin", f"{target.scheme}://{target.authority}"),
    ]
    try:
        answer = await probe.request(path, headers)
    except _StepError as step:
        return check_result("websocket", Status.FAIL, f"{shown}: {step.result.message}")
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
        return check_result("websocket", Status.FAIL, _(Msg.HTTP_BAD).format(url=shown, reason=_reason(exc)))
    status = answer.status
    if status == 101:
        return check_result(
            "websocket", Status.OK, _(Msg.WS_OK).format(path=shown), http_status=status, path=shown
        )
    if status in (401, 403):
        return check_result(
            "websocket",
            Status.OK,
            _(Msg.WS_SIGN_IN).format(path=shown, status=status),
            http_status=status,
            path=shown,
        )
    if status == 404:
        text = _(Msg.WS_NOT_FOUND).format(path=shown, dialect=conn.dialect)
        return check_result("websocket", Status.FAIL, text, http_status=status, path=shown)
    return check_result(
        "websocket",
        Status.FAIL,
        _(Msg.WS_REFUSED).format(path=shown, status=status),
        http_status=status,
        path=shown,
    )


def _check_clock(answer: _Answer, now: datetime) -> CheckResult:
    date = answer.headers.get("date")
    try:
        server_time = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        server_time = None
    if server_time is None or server_time.tzinfo is None:
        return check_result("clock", Status.WARN, _(Msg.CLOCK_NO_DATE))
    skew = (now - server_time).total_seconds()  # > 0: we are ahead
    size = abs(skew)
    if size < CLOCK_WARN:
        return check_result("clock", Status.OK, _(Msg.CLOCK_OK).format(skew=max(size, 1.0)), skew=skew)
    direction = _(Msg.CLOCK_AHEAD) if skew > 0 else _(Msg.CLOCK_BEHIND)
    status = Status.FAIL if size >= CLOCK_FAIL else Status.WARN
    return check_result("clock", status, _(Msg.CLOCK_SKEW).format(skew=size, direction=direction), skew=skew)


def _check_token(conn: ConnectionSettings, now: datetime) -> CheckResult | None:
    token = conn.token.get_secret_value()
    if conn.dialect != "org" or not token:
        return None
    from tray_agent.core.protocol.auth import decode_jwt_claims

    try:
        claims = decode_jwt_claims(token)
    except ValueError as exc:
        return check_result("token", Status.FAIL, _(Msg.TOKEN_BAD).format(reason=exc))
    if claims.issued_at is not None and (claims.issued_at - now).total_seconds() > CLOCK_WARN:
        seconds = (claims.issued_at - now).total_seconds()
        return check_result("token", Status.WARN, _(Msg.TOKEN_FUTURE).format(seconds=seconds))
    if claims.expires_at is not None:
        minutes = (claims.expires_at - now).total_seconds() / 60
        if minutes <= 0:
            return check_result("token", Status.FAIL, _(Msg.TOKEN_EXPIRED).format(minutes=-minutes))
        return check_result("token", Status.OK, _(Msg.TOKEN_OK).format(minutes=minutes))
    return check_result("token", Status.OK, _(Msg.TOKEN_OK).format(minutes=float("inf")))
