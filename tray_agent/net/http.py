"""The client's HTTP layer: stdlib ``http.client`` on daemon worker threads, behind one async call.

:class:`HttpClient` performs the client's REST calls (sign-in, token renewal, session checks,
commands, resync pages, limited mode). It replaces aiohttp in the client process: importing
aiohttp cost the tray app about 9-10 MB of idle memory, while ``http.client`` (already loaded
by the standard library modules the app uses) and a worker thread cost about 0.1 MB.

Decisions:

* **Threads.** Each request runs on a daemon worker thread of a small pool of our own (never the
  default executor, whose non-daemon workers are joined at interpreter exit and could hold up
  quitting for a whole timeout); idle workers end after :data:`WORKER_IDLE` seconds. The answer
  comes back with ``loop.call_soon_threadsafe``. Cancelling the awaiting task (or its total
  timeout) shuts the request's socket down, so the thread ends at once (at worst when its socket
  timeout expires) and its result is dropped; a request not yet started is never sent.
* **Keep-alive.** Connections are reused per (scheme, host, port, proxy), a few per key and in all
  (:data:`POOL_PER_KEY`, :data:`POOL_TOTAL`), for :data:`POOL_IDLE` seconds; one the server
  already closed is dropped before use. A reused connection that fails before an answer is retried
  once on a new connection only when the request was not completely sent, or when its method is
  safe (GET, HEAD, OPTIONS): a reply, a release (DELETE, PUT) is never sent twice (the tracker's
  decisions in :mod:`tray_agent.net.tracker` hold: such a command becomes UNCONFIRMED).
* **Errors.** Connecting (DNS, refused, proxy) fails with :class:`ConnectError` (nothing was
  sent); TLS failures keep their ``ssl`` exception (:class:`ssl.SSLCertVerificationError` for an
  untrusted certificate); the server closing without an answer is :class:`ServerDisconnected`;
  the total timeout is :class:`TimeoutError`; a malformed answer :class:`ProtocolError`; an
  answer larger than ``max_body`` :class:`BodyTooLarge`.
  :func:`tray_agent.net.auth.classify_network_error` turns them into the user's words.
* **Proxies.** An explicit ``http://[user:pass@]host:port`` proxy, else (``trust_env``) the
  environment's (:func:`proxy_from_environment`, the one choice the WebSocket and the doctor
  share): https through a ``CONNECT`` tunnel of our own (IPv6 literals in brackets), plain http
  as absolute-URI requests; credentials in the proxy URL become ``Proxy-Authorization: Basic``.
  Only http:// proxies are supported.
* **No cookie jar, no redirects**: cookies are read from ``Set-Cookie`` by hand (net.auth) and a
  3xx is returned as it is (our calls never followed redirects).
* Answers compressed with gzip or deflate are decompressed (bounded by ``max_body`` too).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json as jsonlib
import logging
import os
import queue
import select
import socket
import ssl
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, urlencode, urlsplit

from tray_agent import __version__

logger = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024
"""Largest answer body read (bytes, after decompression); larger ones fail with BodyTooLarge."""
POOL_PER_KEY = 4
"""Idle connections kept per (scheme, host, port, proxy)."""
POOL_TOTAL = 8
"""Idle connections kept in all."""
POOL_IDLE = 15.0
"""Seconds an idle connection is kept (aiohttp's default keep-alive)."""
WORKER_IDLE = 30.0
"""Seconds an idle worker thread waits for work before it ends."""
MAX_WORKERS = 8
"""Most worker threads at once; more requests wait in line (their timeout runs meanwhile)."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods retried once when a reused connection turns out closed after the request was sent."""
_CHUNK = 1024 * 1024  # few reads (each takes the GIL back from the loop's thread)
_USER_AGENT = f"tray-agent/{__version__} Python-http.client"


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class HttpError(Exception):
    """A failure that is not a socket error: the answer could not be used."""


class ProtocolError(HttpError):
    """The server's answer was not valid HTTP."""


class BodyTooLarge(HttpError):  # noqa: N818 (reads as what happened, like ConnectionRefusedError)
    """The answer's body is larger than the client accepts."""

    def __init__(self, limit: int) -> None:
        shown = f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit} bytes"
        super().__init__(f"the server's answer is too large (more than {shown})")
        self.limit = limit


class ConnectError(OSError):
    """No connection could be made (DNS, refused, unreachable, proxy): nothing was sent."""


class ProxyRefused(ConnectError):  # noqa: N818 (reads as what happened)
    """The proxy refused to open a tunnel (CONNECT answered with an error status)."""


class ServerDisconnected(ConnectionError):  # noqa: N818 (aiohttp's name for it)
    """The server closed the connection before answering."""


# ---------------------------------------------------------------------------------------------
# Requests and answers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FormField:
    """One multipart/form-data part: a text field, or a file when ``filename`` is set."""

    name: str
    value: str | bytes
    filename: str | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One answer: status, every header line (repeated ones kept, e.g. Set-Cookie), and the body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> tuple[str, ...]:
        """Every value of header ``name`` (case-insensitive), in order."""
        wanted = name.lower()
        return tuple(value for key, value in self.headers if key.lower() == wanted)


def multipart(fields: Sequence[FormField]) -> tuple[bytes, str]:
    """Encode ``fields`` as multipart/form-data; returns (body, Content-Type).

    Text parts carry ``Content-Type: text/plain; charset=utf-8`` (as aiohttp's FormData did);
    names and file names are quoted as browsers do (``"``, CR, LF percent-encoded).
    """
    boundary = uuid.uuid4().hex
    out = bytearray()
    for part in fields:
        disposition = f'form-data; name="{_quote_field(part.name)}"'
        if part.filename is not None:
            disposition += f'; filename="{_quote_field(part.filename)}"'
        content_type = part.content_type
        if content_type is None:
            is_text = isinstance(part.value, str) and part.filename is None
            content_type = "text/plain; charset=utf-8" if is_text else "application/octet-stream"
        value = part.value.encode() if isinstance(part.value, str) else part.value
        head = f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n\r\n"
        out += head.encode()
        out += value
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def _quote_field(text: str) -> str:
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where it is, and the Proxy-Authorization header its URL's credentials make."""

    host: str
    port: int
    authorization: str | None = None
    url: str = field(default="", repr=False)
    """``http://[user:pass@]host:port``, complete (for libraries that take a proxy URL)."""

    @property
    def key(self) -> str:
        """What tells two proxies apart in the connection pool."""
        return f"{self.host}:{self.port}:{self.authorization or ''}"


def parse_proxy(url: str) -> Proxy:
    """``http://[user:pass@]host[:port]`` (the scheme may be left out) -> :class:`Proxy`.

    Raises:
        ConnectError: not an http:// proxy URL.
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port or 80
    except ValueError:
        raise ConnectError(f"the proxy setting is not a valid URL ({without_userinfo(text)})") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ConnectError(f"only http:// proxies are supported ({without_userinfo(text)})")
    authorization = None
    userinfo = ""
    if parts.username is not None:
        raw = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(raw).decode("ascii")
        userinfo = f"{parts.username}:{parts.password or ''}@"  # still percent-encoded
    canonical = f"http://{userinfo}{_authority(parts.hostname, port, 0)}"
    return Proxy(parts.hostname, port, authorization, canonical)


def without_userinfo(url: str) -> str:
    """``url`` without the ``user:password@`` part (safe to show or log; never raises)."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.rpartition("@")[2] if sep else url.rpartition("@")[2]


def proxy_variable(scheme: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """The variable of ``env`` naming the proxy for ``scheme`` and its value (``no_proxy`` aside).

    The rules of ``urllib.request.getproxies_environment`` (which the client used before):
    ``<scheme>_proxy`` in any case, a name ending in lowercase ``_proxy`` winning over the others;
    an empty value means none (an empty ``https_proxy`` hides ``HTTPS_PROXY``); with
    ``REQUEST_METHOD`` set (a CGI script) only a lowercase-suffixed ``http_proxy`` is read, as a
    client's ``Proxy:`` header becomes ``HTTP_PROXY`` there (CVE-2016-1000110). ``all_proxy`` is
    not read: it names a proxy for every scheme, SOCKS ones included.
    """
    return _proxy_variables(env).get(scheme)


def proxy_from_environment(
    scheme: str, host: str, port: int, env: Mapping[str, str]
) -> tuple[str, str] | None:
    """The proxy for ``scheme``://``host``:``port`` that ``env`` names: (variable, URL), or None for direct.

    The one choice of the environment's proxy: the client passes ``os.environ`` (see
    :func:`environment_proxy`), ``tray-agent doctor`` the environment it checks, so they never
    disagree. The variable is :func:`proxy_variable`'s; ``no_proxy`` (same lookup) then bypasses
    it: ``*`` alone (spaces aside) covers every host; otherwise it is a comma-separated list of
    hosts or domain suffixes (a leading dot changes nothing: ``example.com`` covers
    ``example.com`` and ``a.example.com``), each optionally with a ``:port`` (then it covers that
    port only; an IPv6 literal with a port in brackets: ``[::1]:8443``), compared
    case-insensitively. ``*`` inside a list, wildcards and CIDR ranges are not understood (as by
    urllib, given ``host:port``).
    """
    return _chosen(_proxy_variables(env), scheme, host, port)


def _chosen(
    variables: Mapping[str, tuple[str, str]], scheme: str, host: str, port: int
) -> tuple[str, str] | None:
    """:func:`proxy_from_environment` over the variables :func:`_proxy_variables` found."""
    chosen = variables.get(scheme)
    if chosen is None:
        return None
    no_proxy = variables.get("no")
    if no_proxy is not None and _no_proxy_covers(no_proxy[1], host, port):
        return None
    return chosen


def _proxy_variables(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Scheme (``https``, ``no`` ...) -> (variable, value), in urllib's two passes."""
    found: dict[str, tuple[str, str]] = {}
    for name, value in env.items():
        lower = name.lower()
        if value and lower.endswith("_proxy"):
            found[lower[: -len("_proxy")]] = (name, value)
    if "REQUEST_METHOD" in env:
        found.pop("http", None)
    for name, value in env.items():  # names ending in lowercase "_proxy" win, even when empty
        if name.endswith("_proxy"):
            scheme = name.lower()[: -len("_proxy")]
            if value:
                found[scheme] = (name, value)
            else:
                found.pop(scheme, None)
    return found


def _no_proxy_covers(no_proxy: str, host: str, port: int) -> bool:
    if no_proxy.strip() == "*":
        return True
    host = host.lower()
    for raw in no_proxy.split(","):
        name, entry_port = _no_proxy_entry(raw.strip().lower())
        if not name or (entry_port is not None and entry_port != port):
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


def _no_proxy_entry(entry: str) -> tuple[str, int | None]:
    """A ``no_proxy`` entry as (host or suffix without its leading dots, port or None)."""
    entry = entry.lstrip(".")
    if entry.startswith("["):  # [IPv6] or [IPv6]:port
        inside, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return inside, int(port) if port.isdigit() else None
    name, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and ":" not in name:  # host:port (a bare IPv6 literal has more colons)
        return name, int(port)
    return entry, None


SYSTEM_PROXY_ORIGIN: Final = "system proxy settings"
"""What :func:`choose_proxy` calls the operating system's proxy settings (in place of a variable)."""


def system_proxy(scheme: str, host: str) -> tuple[str, str] | None:
    """The operating system's proxy for ``scheme``://``host``: (:data:`SYSTEM_PROXY_ORIGIN`, URL) or None.

    Windows (the Internet settings in the registry, their bypass list included) and macOS
    (System Configuration) have proxy settings of their own, read with ``urllib.request``'s
    ``getproxies`` and ``proxy_bypass`` (imported only there). Elsewhere there is nothing beyond
    the environment: None.
    """
    if sys.platform not in ("win32", "darwin"):
        return None
    import urllib.request  # only where the OS has proxy settings of its own

    url = urllib.request.getproxies().get(scheme)
    if not url or urllib.request.proxy_bypass(host):
        return None
    return SYSTEM_PROXY_ORIGIN, url


def choose_proxy(scheme: str, host: str, port: int, env: Mapping[str, str]) -> tuple[str, str] | None:
    """The proxy the client uses for ``scheme``://``host``:``port`` without a proxy setting.

    :func:`proxy_from_environment`; when ``env`` names no proxy variable at all (``no_proxy``
    included), the operating system's settings (:func:`system_proxy`: Windows and macOS), as
    ``urllib.request.getproxies`` falls back to them. The client passes ``os.environ``,
    ``tray-agent doctor`` the environment it checks: they choose alike.
    """
    variables = _proxy_variables(env)
    if variables:
        return _chosen(variables, scheme, host, port)
    return system_proxy(scheme, host)


def environment_proxy(scheme: str, host: str, port: int) -> Proxy | None:
    """The process environment's proxy for ``scheme``://``host``:``port`` (None: direct).

    :func:`choose_proxy` with ``os.environ``. Non-http proxies and unreadable entries
    are ignored (logged): the connection is direct then.
    """
    chosen = choose_proxy(scheme, host, port, os.environ)
    if chosen is None:
        return None
    name, url = chosen
    try:
        return parse_proxy(url)
    except ConnectError as exc:
        logger.warning("ignoring the proxy in %s: %s", name, exc)
        return None


# ---------------------------------------------------------------------------------------------
# Worker threads
# ---------------------------------------------------------------------------------------------


class _Workers:
    """Daemon threads taking jobs from one queue; started on demand, ended when idle."""

    def __init__(self, max_workers: int = MAX_WORKERS, idle: float = WORKER_IDLE) -> None:
        self._max = max_workers
        self._idle = idle
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle_workers = threading.Semaphore(0)
        self.count = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if not self._idle_workers.acquire(blocking=False) and self.count < self._max:
                self.count += 1
                threading.Thread(target=self._run, name="tray-agent-http", daemon=True).start()
            self._queue.put(job)

    def _run(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=self._idle)
            except queue.Empty:
                with self._lock:
                    if self._idle_workers.acquire(blocking=False):
                        self.count -= 1
                        return
                continue  # a job was promised to an idle worker: it is on its way
            try:
                job()
            except Exception:  # never ends the thread
                logger.exception("HTTP worker job failed")
            self._idle_workers.release()


# ---------------------------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------------------------

_Key = tuple[str, str, int, str]


class _Pool:
    """Idle keep-alive connections per key, bounded, each for POOL_IDLE seconds. Thread-safe."""

    def __init__(self, per_key: int, total: int, idle: float) -> None:
        self._per_key = per_key
        self._total = total
        self._idle = idle
        self._lock = threading.Lock()
        self._idle_conns: list[tuple[_Key, http.client.HTTPConnection, float]] = []
        self.closed = False

    def take(self, key: _Key) -> http.client.HTTPConnection | None:
        """The most recent idle connection for ``key`` that is still open, or None."""
        stale: list[http.client.HTTPConnection] = []
        found: http.client.HTTPConnection | None = None
        now = time.monotonic()
        with self._lock:
            keep = []
            for entry in self._idle_conns:
                if now - entry[2] > self._idle:
                    stale.append(entry[1])
                else:
                    keep.append(entry)
            self._idle_conns = keep
            for index in range(len(keep) - 1, -1, -1):
                if keep[index][0] == key:
                    found = keep.pop(index)[1]
                    break
        for conn in stale:
            conn.close()
        if found is not None and _dropped(found):
            found.close()
            return None
        return found

    def give(self, key: _Key, conn: http.client.HTTPConnection) -> None:
        """Keep ``conn`` for reuse (the oldest idle connections beyond the bounds are closed)."""
        evicted: list[http.client.HTTPConnection] = []
        with self._lock:
            if self.closed:
                evicted.append(conn)
            else:
                self._idle_conns.append((key, conn, time.monotonic()))
                same = [e for e in self._idle_conns if e[0] == key]
                while len(same) > self._per_key:
                    oldest = same.pop(0)
                    self._idle_conns.remove(oldest)
                    evicted.append(oldest[1])
                while len(self._idle_conns) > self._total:
                    evicted.append(self._idle_conns.pop(0)[1])
        for old in evicted:
            old.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            conns, self._idle_conns = [e[1] for e in self._idle_conns], []
        for conn in conns:
            conn.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle_conns)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection was closed by the server (readable while idle means EOF or junk)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):  # no FD_SETSIZE limit
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return True
    return isinstance(exc, http.client.BadStatusLine) and not str(exc).strip("'\" \r\n")


# ---------------------------------------------------------------------------------------------
# One request on a worker thread
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)  # identity: jobs live in a set
class _Job:
    method: str
    scheme: str
    host: str
    port: int
    target: str  # path and query
    headers: dict[str, str]
    body: bytes | None
    deadline: float
    proxy: str | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    conn: http.client.HTTPConnection | None = None
    aborted: bool = False

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's time is up")
        return left

    def attach(self, conn: http.client.HTTPConnection) -> bool:
        """Track ``conn`` for :meth:`abort`; False when the job was aborted already."""
        with self.lock:
            if self.aborted:
                return False
            self.conn = conn
            return True

    def detach(self) -> bool:
        """Stop tracking the connection; False when the job was aborted meanwhile."""
        with self.lock:
            self.conn = None
            return not self.aborted

    def abort(self) -> None:
        """The caller gave up: wake the thread by shutting the socket down (any thread may call)."""
        with self.lock:
            self.aborted = True
            conn = self.conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                # The plain socket's shutdown: SSLSocket.shutdown would drop its SSL object under
                # the worker's feet; this just makes the worker's blocked read return.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _AbortedError(Exception):
    """Internal: the job was given up; its result goes nowhere."""


class HttpClient:
    """One client's HTTP connections and worker threads (see the module docstring).

    Args:
        ssl_context: TLS for https (the client's: OS trust store plus the policy's CA bundle);
            None makes a default context when first needed.
        trust_env: without an explicit proxy, use the environment's (``*_proxy``, ``no_proxy``:
            :func:`environment_proxy`).
        max_body: largest answer accepted (bytes).
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        *,
        trust_env: bool = True,
        max_body: int = MAX_BODY,
        pool_per_key: int = POOL_PER_KEY,
        pool_total: int = POOL_TOTAL,
        pool_idle: float = POOL_IDLE,
    ) -> None:
        self._ssl = ssl_context
        self._trust_env = trust_env
        self._max_body = max_body
        self._pool = _Pool(pool_per_key, pool_total, pool_idle)
        self._workers = _Workers()
        self._active: set[_Job] = set()
        self._active_lock = threading.Lock()
        self.connections_opened = 0
        """How many connections were made (tests: keep-alive reuse)."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._pool.closed

    @property
    def idle_connections(self) -> int:
        """How many keep-alive connections wait for reuse."""
        return len(self._pool)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        query: Sequence[tuple[str, str]] = (),
        json: Any = None,
        form: Sequence[FormField] | None = None,
        timeout: float,  # noqa: ASYNC109 (the worker thread's deadline too, not only the await's)
        proxy: str | None = None,
    ) -> HttpResponse:
        """Perform one request and read the whole answer.

        Args:
            method: GET, POST, PUT, DELETE ...
            url: absolute http(s) URL; its path already percent-encoded.
            headers: extra headers (they override the defaults).
            query: parameters appended to the URL's query.
            json: a JSON body (unless ``form`` is given).
            form: multipart/form-data fields.
            timeout: total seconds for the request, from now (queueing, connecting, sending,
                reading the answer); then TimeoutError.
            proxy: explicit proxy URL; None: the environment's when ``trust_env``.

        Raises:
            ConnectError, ServerDisconnected, ssl.SSLError, TimeoutError, OSError, HttpError.
            Cancellation propagates at once; the request's thread is woken and its result dropped.
        """
        if self.closed:
            raise ConnectError("the HTTP client is closed")
        job = self._job(method, url, headers, query, json, form, timeout, proxy)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[HttpResponse] = loop.create_future()

        def finish(result: HttpResponse | None, error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, result, error)

        with self._active_lock:
            self._active.add(job)
        self._workers.submit(lambda: self._work(job, finish))
        try:
            async with asyncio.timeout(timeout):
                return await future
        except (asyncio.CancelledError, TimeoutError):
            job.abort()
            raise

    async def close(self) -> None:
        """Close idle connections and abort requests in flight. Later requests fail with ConnectError."""
        self._pool.close()
        with self._active_lock:
            active = list(self._active)
        for job in active:
            job.abort()

    # -- building --------------------------------------------------------------------------------

    def _job(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        query: Sequence[tuple[str, str]],
        json: Any,
        form: Sequence[FormField] | None,
        timeout: float,
        proxy: str | None,
    ) -> _Job:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ConnectError("not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectError(f"not an http(s) URL ({parts.scheme or 'no scheme'})")
        target = parts.path or "/"
        query_text = parts.query
        if query:
            extra = urlencode(list(query), safe="/:@")
            query_text = f"{query_text}&{extra}" if query_text else extra
        if query_text:
            target += "?" + query_text
        out = {
            "User-Agent": _USER_AGENT,
            "Accept": "*/*",
            "Accept-Encoding": "gzip, deflate",
        }
        body: bytes | None = None
        if form is not None:
            body, out["Content-Type"] = multipart(form)
        elif json is not None:
            body = jsonlib.dumps(json).encode()
            out["Content-Type"] = "application/json"
        out.update(headers or {})
        return _Job(
            method=method.upper(),
            scheme=parts.scheme,
            host=parts.hostname,
            port=port or (443 if parts.scheme == "https" else 80),
            target=target,
            headers=out,
            body=body,
            deadline=time.monotonic() + timeout,
            proxy=proxy or None,
        )

    # -- on the worker thread --------------------------------------------------------------------

    def _work(self, job: _Job, finish: Callable[[HttpResponse | None, BaseException | None], None]) -> None:
        try:
            result = self._perform(job)
        except _AbortedError:
            return
        except BaseException as exc:
            if not job.aborted:
                finish(None, exc)
            return
        finally:
            with self._active_lock:
                self._active.discard(job)
        finish(result, None)

    def _perform(self, job: _Job) -> HttpResponse:
        if job.aborted:
            raise _AbortedError
        proxy = self._proxy(job)
        key: _Key = (job.scheme, job.host, job.port, proxy.key if proxy else "")
        target = job.target
        headers = job.headers
        if proxy is not None and job.scheme == "http":
            target = f"http://{_authority(job.host, job.port, 80)}{job.target}"
            if proxy.authorization:
                headers = {**headers, "Proxy-Authorization": proxy.authorization}
        for attempt in (1, 2):
            conn = self._pool.take(key) if attempt == 1 else None
            reused = conn is not None
            if conn is None:
                conn = self._open(job, proxy)
            if not job.attach(conn):
                conn.close()
                raise _AbortedError
            sent = False
            try:
                _set_timeout(conn, job.remaining())
                conn.request(job.method, target, body=job.body, headers=headers)
                sent = True
                response = conn.getresponse()
                answer = self._read(job, conn, response)
            except Exception as exc:
                conn.close()
                if not job.detach():
                    raise _AbortedError from None
                if reused and _is_disconnect(exc) and (not sent or job.method in SAFE_METHODS):
                    logger.debug("%s: a kept-alive connection was closed; once more on a new one", job.method)
                    continue
                error = _translate(exc)
                if error is exc:
                    raise
                raise error from exc
            if not job.detach() or response.will_close:
                conn.close()
            else:
                self._pool.give(key, conn)
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _proxy(self, job: _Job) -> Proxy | None:
        if job.proxy:
            return parse_proxy(job.proxy)
        if self._trust_env:
            return environment_proxy(job.scheme, job.host, job.port)
        return None

    def _open(self, job: _Job, proxy: Proxy | None) -> http.client.HTTPConnection:
        """A new connection (TLS and tunnel included). Raises ConnectError, ssl.SSLError, TimeoutError."""
        timeout = job.remaining()
        conn: http.client.HTTPConnection
        host, port = (proxy.host, proxy.port) if proxy is not None else (job.host, job.port)
        if job.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            if proxy is not None:
                conn = _TunnelConnection(job.host, job.port, proxy, timeout=timeout, context=self._ssl)
            else:
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.connections_opened += 1
        if not job.attach(conn):
            raise _AbortedError
        try:
            conn.connect()
        except (ssl.SSLError, TimeoutError):
            conn.close()
            raise
        except OSError as exc:
            conn.close()
            if job.aborted:
                raise _AbortedError from None
            if isinstance(exc, ConnectError):  # the tunnel's own (ProxyRefused ...)
                raise
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        finally:
            job.detach()
        return conn

    def _read(
        self, job: _Job, conn: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> HttpResponse:
        limit = self._max_body
        if response.length is not None and response.length > limit:
            raise BodyTooLarge(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            _set_timeout(conn, job.remaining())
            chunk = response.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = (response.getheader("Content-Encoding") or "").strip().lower()
        if body and encoding in ("gzip", "x-gzip", "deflate"):
            body = _decompress(body, encoding, limit)
        return HttpResponse(response.status, tuple(response.getheaders()), body)


class _TunnelConnection(http.client.HTTPSConnection):
    """https to ``host``:``port`` through an HTTP proxy's CONNECT tunnel that we open ourselves.

    WORKAROUND(gh-100985): Python 3.11's ``set_tunnel`` strips the brackets of an IPv6 literal
    and sends ``CONNECT ::1:8443 HTTP/1.0`` without a Host header, which proxies read as host
    ``::1:8443`` on port 80 or refuse. Our CONNECT says ``[::1]:8443``, in HTTP/1.1 with a Host
    header; requests on the tunnel carry ``Host: [::1]:8443`` (``host`` is the connection's own,
    so ``http.client`` brackets it). A closed connection reopened by ``http.client`` goes through
    the proxy again.
    """

    def __init__(
        self, host: str, port: int, proxy: Proxy, *, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._proxy = proxy
        self._tls = context

    def connect(self) -> None:
        """TCP to the proxy, CONNECT, then TLS with the server. Raises ProxyRefused, ConnectError, OSError."""
        sock = socket.create_connection((self._proxy.host, self._proxy.port), self.timeout)
        self.sock = sock  # from here on an abort (shutdown) wakes a blocked CONNECT too
        with contextlib.suppress(OSError):  # not every OS has TCP_NODELAY
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _open_tunnel(sock, self.host, self.port, self._proxy.authorization)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def _open_tunnel(sock: socket.socket, host: str, port: int, authorization: str | None) -> None:
    """Ask the HTTP proxy at the other end of ``sock`` for a tunnel to ``host``:``port``.

    Raises:
        ProxyRefused: the proxy answered with another status than 200.
        ConnectError: the proxy's answer is not HTTP.
        OSError: the socket failed (TimeoutError at the socket's timeout).
    """
    if not host.isascii():
        host = host.encode("idna").decode("ascii")  # as http.client writes a Host header
    authority = _authority(host, port, 0)
    head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {_USER_AGENT}\r\n"
    if authorization:
        head += f"Proxy-Authorization: {authorization}\r\n"
    sock.sendall((head + "\r\n").encode("ascii"))
    answer = http.client.HTTPResponse(sock, method="CONNECT")
    try:
        answer.begin()
    except OSError:  # RemoteDisconnected too: the proxy closed without answering
        raise
    except http.client.HTTPException as exc:
        raise ConnectError(f"the proxy's answer to CONNECT is not HTTP ({type(exc).__name__})") from exc
    finally:
        answer.close()  # the reader only: the socket stays open for the tunnel
    if answer.status != 200:
        raise ProxyRefused(f"the proxy refused the tunnel ({answer.status} {answer.reason.strip()})")


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = 31 if encoding != "deflate" else 15
    try:
        try:
            inflater = zlib.decompressobj(wbits)
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            if encoding != "deflate":
                raise
            inflater = zlib.decompressobj(-15)  # raw deflate, as some servers send it
            out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(f"the answer's {encoding} encoding is broken") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(limit)
    return out


def _set_timeout(conn: http.client.HTTPConnection, seconds: float) -> None:
    if conn.sock is not None:
        conn.sock.settimeout(seconds)


def _authority(host: str, port: int, default: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default else f"{shown}:{port}"


def _translate(exc: Exception) -> Exception:
    """A worker's exception as this module's errors (TLS and timeouts keep theirs)."""
    if isinstance(exc, HttpError | TimeoutError | ConnectError):
        return exc
    if _is_disconnect(exc):
        return ServerDisconnected("the server closed the connection before answering")
    if isinstance(exc, ssl.SSLError | OSError):
        return exc
    if isinstance(exc, http.client.HTTPException):
        return ProtocolError(f"the server's answer is not valid HTTP ({type(exc).__name__})")
    return exc


def _settle(
    future: asyncio.Future[HttpResponse], result: HttpResponse | None, error: BaseException | None
) -> None:
    if future.done():
        return  # cancelled or timed out: the answer goes nowhere
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)
