"""Sign-in per dialect: obtains, refreshes and keeps alive the credentials a connection needs.

Org: a Supabase access token (password grant, then refresh-token grant when it nears expiry; or
a pasted token, which cannot be refreshed). Dashboard: a ``session`` cookie from ``POST
/auth/login``, kept alive with ``GET /auth/check`` (G15). Refresh tokens, cookies and passwords
go through a :class:`~tray_agent.core.ports.SecretStore`; nothing here ever logs one.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import truststore

from tray_agent.core.events import Dialect
from tray_agent.core.ports import Clock, SecretStore
from tray_agent.core.protocol.auth import (
    AuthAnswerError,
    AuthProblem,
    AuthRequest,
    cookie_header,
    dashboard_check_request,
    dashboard_login_request,
    decode_jwt_claims,
    parse_dashboard_check,
    parse_dashboard_login,
    parse_supabase_token_response,
    redact_url,
    supabase_password_request,
    supabase_refresh_request,
)
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.http import (
    BodyTooLarge,
    ConnectError,
    HttpClient,
    HttpError,
    ProxyRefused,
    ServerDisconnected,
)

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class AuthError(Exception):
    """A sign-in attempt failed; ``text`` is plain words without secrets. Retryable by default."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class AuthRefused(AuthError):  # noqa: N818 (names of the brief)
    """The credentials were refused: stop and ask the user (state AUTH_REQUIRED)."""


class ServerUnreachable(AuthError):  # noqa: N818 (names of the brief)
    """The sign-in server could not be reached (DNS, refused, timeout): retry with backoff."""


class TlsError(AuthError):
    """TLS failed (untrusted certificate, TLS-inspecting proxy ...): retry, but tell the user."""


class AuthRetryable(AuthError):  # noqa: N818 (names of the brief)
    """Any other failure (5xx, rate limit, odd answer): retry with backoff."""


# ---------------------------------------------------------------------------------------------
# Credentials and the Authenticator protocol
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one connection attempt needs.

    Attributes:
        token: org access token (JWT), "" for the dashboard.
        cookie: dashboard ``session`` cookie value, "" for org.
        user_id: the signed-in user's id if known (org: JWT ``sub``; dashboard: login ``user.id``).
    """

    token: str = ""
    cookie: str = ""
    user_id: str = ""

    def __repr__(self) -> str:
        return f"Credentials(user_id={self.user_id!r}, token={'***' if self.token else ''!r})"

    def http_headers(self) -> dict[str, str]:
        """Headers that authenticate a REST call (Bearer token or the session cookie)."""
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.cookie:
            name, value = cookie_header(self.cookie)
            return {name: value}
        return {}


class Authenticator(Protocol):
    """Obtains credentials for a connection attempt (one implementation per dialect)."""

    dialect: Dialect

    @property
    def keepalive_interval(self) -> float | None:
        """Seconds between :meth:`keepalive` calls while connected, or None for none."""
        ...

    async def credentials(self, http: HttpClient) -> Credentials:
        """Return usable credentials, signing in or refreshing when needed.

        Raises:
            AuthRefused: ask the user. ServerUnreachable / TlsError / AuthRetryable: retry later.
            Cancellation propagates; each HTTP request is bounded by the authenticator's timeout.
        """
        ...

    def invalidate(self) -> None:
        """The server refused the current credentials: the next call must refresh / re-login."""
        ...

    async def keepalive(self, http: HttpClient) -> None:
        """Keep the server-side session alive (dashboard ``/auth/check``). Never raises."""
        ...


# ---------------------------------------------------------------------------------------------
# Plumbing shared with the client
# ---------------------------------------------------------------------------------------------


def make_ssl_context(settings: ConnectionSettings) -> ssl.SSLContext:
    """The TLS context for https/wss: the operating system's trust store, plus the policy's CA.

    ``truststore`` verifies certificates the way the OS does (Windows certificate store, macOS
    keychain, the system CA files on Linux), so a corporate root CA deployed by IT is trusted
    without any setting; ``settings.ca_bundle`` adds one more bundle (TLS-inspecting proxies).
    Verification and host-name checks are always on: a TLS failure is never bypassed.

    Raises:
        OSError: the CA bundle named in the settings cannot be read.
        ssl.SSLError: it is not a PEM bundle.
    """
    context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if settings.ca_bundle:
        context.load_verify_locations(cafile=settings.ca_bundle)
    return context


async def get_secret(secrets: SecretStore, key: str) -> str:
    """Read a secret off the loop; "" when absent."""
    value: str | None = await off_loop(lambda: secrets.get(key))
    return value or ""


async def off_loop(func: Callable[[], _T]) -> _T:
    """Run a blocking call (keyring) in the default executor. Cancellation abandons the wait."""
    return await asyncio.get_running_loop().run_in_executor(None, func)


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """Status, body and ``Set-Cookie`` values of one answer."""

    status: int
    body: bytes
    set_cookies: tuple[str, ...]


def classify_network_error(exc: BaseException, what: str) -> AuthError:
    """Turn a transport exception into ServerUnreachable / TlsError / AuthRetryable."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsError(f"{what}: the server's TLS certificate is not trusted.")
    if isinstance(exc, ssl.SSLError):
        return TlsError(f"{what}: TLS failed.")
    if isinstance(exc, ProxyRefused):
        return ServerUnreachable(f"{what}: {exc}.")
    if isinstance(exc, ConnectError | TimeoutError | ServerDisconnected):
        return ServerUnreachable(f"{what}: server unreachable.")
    if isinstance(exc, BodyTooLarge):
        return AuthRetryable(f"{what}: {exc}.")
    if isinstance(exc, OSError | HttpError):
        return ServerUnreachable(f"{what}: network error ({type(exc).__name__}).")
    return AuthRetryable(f"{what}: {type(exc).__name__}.")


async def perform(
    http: HttpClient, request: AuthRequest, *, seconds: float, proxy: str | None, what: str
) -> HttpAnswer:
    """Perform a sign-in request.

    Args:
        http: the client's HTTP layer (no cookie jar; cookies are handled by hand).
        request: what to send.
        seconds: total seconds for the request (then TimeoutError -> ServerUnreachable).
        proxy: explicit proxy URL or None (the environment's proxy, see :class:`HttpClient`).
        what: a few words for errors ("sign-in", "token refresh").

    Raises:
        ServerUnreachable, TlsError, AuthRetryable: the request did not produce an answer.
    """
    try:
        response = await http.request(
            request.method,
            request.url,
            headers=dict(request.headers),
            json=request.json,
            proxy=proxy,
            timeout=seconds,
        )
    except (HttpError, OSError, TimeoutError) as exc:
        error = classify_network_error(exc, what)
        logger.debug("%s %s failed: %s", request.method, redact_url(request.url), error.text)
        raise error from None
    return HttpAnswer(response.status, response.body, response.header_values("Set-Cookie"))


def _raise_for(answer: AuthAnswerError) -> AuthError:
    if answer.problem is AuthProblem.REFUSED:
        return AuthRefused(answer.text)
    return AuthRetryable(answer.text)


# ---------------------------------------------------------------------------------------------
# Org: Supabase Auth
# ---------------------------------------------------------------------------------------------


class OrgAuthenticator:
    """Org dialect: a Supabase access token, refreshed before it expires.

    Args:
        settings: server, supabase_url, supabase_key (anon), email, proxy.
        secrets: where the refresh token (and a remembered password) live.
        clock: for expiry decisions.
        password: the password for this run (kept in memory only; see :meth:`set_password`).
        token: a pasted access token; it cannot be refreshed, and once it expires or is refused
            the state becomes AUTH_REQUIRED.
        refresh_margin: refresh when the token expires within this many seconds (not applied to a
            pasted token, which cannot be refreshed: it is used until it expires).
        timeout: seconds per HTTP request.
    """

    dialect = Dialect.ORG

    def __init__(
        self,
        settings: ConnectionSettings,
        secrets: SecretStore,
        clock: Clock,
        *,
        password: str | None = None,
        token: str | None = None,
        refresh_margin: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        self._settings = settings
        self._secrets = secrets
        self._clock = clock
        self._password = password
        self._refresh_margin = refresh_margin
        self._timeout = timeout
        self._access = ""
        self._refresh = ""
        self._expires_at: datetime | None = None
        self._user_id = ""
        self._pasted = False
        self._invalid = False
        if token:
            self.set_token(token)

    @property
    def keepalive_interval(self) -> float | None:
        """None: Supabase sessions need no keepalive (tokens are refreshed on use)."""
        return None

    @property
    def user_id(self) -> str:
        """The Supabase user id (JWT ``sub``) once known, else ""."""
        return self._user_id

    def set_password(self, password: str, *, remember: bool = False) -> None:
        """Use this password for the next sign-in (and keep it in the SecretStore if asked).

        ``remember`` writes to the SecretStore synchronously: call it off the event loop when
        the store is a real keyring.
        """
        self._password = password
        self._pasted = False
        self._invalid = True
        if remember:
            self._secrets.set(self._settings.secret_key("password"), password)

    def set_token(self, token: str) -> None:
        """Use a pasted access token (no refresh possible).

        Raises:
            ValueError: the text is not a JWT.
        """
        claims = decode_jwt_claims(token)
        self._access = token.strip()
        self._refresh = ""
        self._expires_at = claims.expires_at
        self._user_id = claims.subject
        self._pasted = True
        self._invalid = False

    def invalidate(self) -> None:  # noqa: D102 (protocol)
        self._invalid = True

    async def keepalive(self, http: HttpClient) -> None:  # noqa: D102 (protocol)
        return None

    def _fresh(self) -> bool:
        if not self._access or self._invalid:
            return False
        if self._expires_at is None:
            return True
        # The margin buys time to refresh before expiry. A pasted token cannot be refreshed, and
        # the server checks only ``exp`` (PROTOCOL.md 5): it is good until the very end.
        margin = 0.0 if self._pasted else self._refresh_margin
        return self._clock.now() + timedelta(seconds=margin) < self._expires_at

    async def credentials(self, http: HttpClient) -> Credentials:
        """Return a fresh access token: cached, refreshed, or from a password grant.

        Raises:
            AuthRefused: no usable refresh token and no password, the password is wrong, or a
                pasted token expired / was refused. Other AuthErrors: retry later.
            Each request is bounded by ``timeout``; cancellation propagates.
        """
        if self._fresh():
            return Credentials(token=self._access, user_id=self._user_id)
        if self._pasted:
            if self._invalid:
                raise AuthRefused("The pasted token was refused; paste a new one or sign in.")
            raise AuthRefused("The pasted token has expired; paste a new one or sign in.")
        settings = self._settings
        if not settings.supabase_url or not settings.supabase_key:
            raise AuthRefused("Sign-in needs the Supabase URL and anon key in the settings.")
        refresh = self._refresh or await get_secret(self._secrets, settings.secret_key("refresh_token"))
        if refresh:
            request = supabase_refresh_request(settings.supabase_url, settings.supabase_key, refresh)
            answer = await perform(
                http, request, seconds=self._timeout, proxy=settings.proxy or None, what="token refresh"
            )
            try:
                return await self._accept(answer)
            except AuthAnswerError as exc:
                if exc.problem is not AuthProblem.REFUSED:
                    raise _raise_for(exc) from None
                logger.info("refresh token refused (%s); trying the password", exc.text)
                self._refresh = ""
                await off_loop(lambda: self._secrets.delete(settings.secret_key("refresh_token")))
        password = self._password or await get_secret(self._secrets, settings.secret_key("password"))
        if not password:
            raise AuthRefused("Please sign in.")
        request = supabase_password_request(
            settings.supabase_url, settings.supabase_key, settings.email, password
        )
        answer = await perform(
            http, request, seconds=self._timeout, proxy=settings.proxy or None, what="sign-in"
        )
        try:
            return await self._accept(answer)
        except AuthAnswerError as exc:
            if exc.problem is AuthProblem.REFUSED:
                self._password = None
            raise _raise_for(exc) from None

    async def _accept(self, answer: HttpAnswer) -> Credentials:
        session = parse_supabase_token_response(answer.status, answer.body, now=self._clock.now())
        self._access = session.access_token
        self._expires_at = session.expires_at
        self._user_id = session.user_id
        self._invalid = False
        if session.refresh_token:
            self._refresh = session.refresh_token
            key = self._settings.secret_key("refresh_token")
            await off_loop(lambda: self._secrets.set(key, session.refresh_token))
        if self._expires_at is not None:
            skew = (self._expires_at - self._clock.now()).total_seconds()
            if skew < self._refresh_margin:
                logger.warning("new access token expires in %.0f s: is the system clock wrong?", skew)
        return Credentials(token=self._access, user_id=self._user_id)


# ---------------------------------------------------------------------------------------------
# Dashboard: session cookie
# ---------------------------------------------------------------------------------------------


class DashboardAuthenticator:
    """Dashboard dialect: the ``session`` cookie, from a login, kept alive with /auth/check.

    Args:
        settings: server, company, email, proxy.
        secrets: where the session cookie (and a remembered password) live.
        clock: unused today; kept for symmetry and diagnostics.
        password: the password for this run (memory only; see :meth:`set_password`).
        keepalive_interval: seconds between ``GET /auth/check`` while connected (G15).
        timeout: seconds per HTTP request.
    """

    dialect = Dialect.DASHBOARD

    def __init__(
        self,
        settings: ConnectionSettings,
        secrets: SecretStore,
        clock: Clock,
        *,
        password: str | None = None,
        keepalive_interval: float = 1800.0,
        timeout: float = 10.0,
    ) -> None:
        self._settings = settings
        self._secrets = secrets
        self._clock = clock
        self._password = password
        self._keepalive_interval = keepalive_interval
        self._timeout = timeout
        self._cookie = ""
        self._user_id = ""
        self._stored_tried = False

    @property
    def keepalive_interval(self) -> float | None:
        """Seconds between session checks while connected."""
        return self._keepalive_interval

    @property
    def user_id(self) -> str:
        """The user's Mongo id once known from a login or a check, else ""."""
        return self._user_id

    def set_password(self, password: str, *, remember: bool = False) -> None:
        """Use this password for the next login (and keep it in the SecretStore if asked).

        ``remember`` writes synchronously: call it off the event loop for a real keyring.
        """
        self._password = password
        self._cookie = ""
        self._stored_tried = True  # a new password means a fresh login, not the old cookie
        if remember:
            self._secrets.set(self._settings.secret_key("password"), password)

    def invalidate(self) -> None:  # noqa: D102 (protocol)
        self._cookie = ""
        self._stored_tried = True

    async def credentials(self, http: HttpClient) -> Credentials:
        """Return the session cookie: cached, stored from an earlier run, or from a login.

        Raises:
            AuthRefused: no password, or the login was refused. Other AuthErrors: retry later.
            Each request is bounded by ``timeout``; cancellation propagates.
        """
        settings = self._settings
        if not self._cookie and not self._stored_tried:
            self._stored_tried = True
            self._cookie = await get_secret(self._secrets, settings.secret_key("session"))
        if self._cookie:
            return Credentials(cookie=self._cookie, user_id=self._user_id)
        password = self._password or await get_secret(self._secrets, settings.secret_key("password"))
        if not password:
            raise AuthRefused("Please sign in.")
        if not settings.company or not settings.email:
            raise AuthRefused("Sign-in needs the e-mail and company id in the settings.")
        request = dashboard_login_request(settings.server, settings.email, password, settings.company)
        answer = await perform(
            http, request, seconds=self._timeout, proxy=settings.proxy or None, what="sign-in"
        )
        try:
            login = parse_dashboard_login(answer.status, answer.body, answer.set_cookies)
        except AuthAnswerError as exc:
            if exc.problem is AuthProblem.REFUSED:
                self._password = None
            raise _raise_for(exc) from None
        self._cookie = login.session
        self._user_id = login.user_id or self._user_id
        key = settings.secret_key("session")
        await off_loop(lambda: self._secrets.set(key, login.session))
        return Credentials(cookie=self._cookie, user_id=self._user_id)

    async def keepalive(self, http: HttpClient) -> None:
        """``GET /auth/check`` to slide the 24 h session; forget the cookie if it is gone.

        Never raises (errors are logged); bounded by ``timeout``; cancellation propagates.
        """
        if not self._cookie:
            return
        request = dashboard_check_request(self._settings.server, self._cookie)
        try:
            answer = await perform(
                http, request, seconds=self._timeout, proxy=self._settings.proxy or None, what="session check"
            )
            check = parse_dashboard_check(answer.status, answer.body)
        except (AuthError, AuthAnswerError) as exc:
            logger.info("session check failed: %s", exc)
            return
        if check.authenticated:
            self._user_id = check.user_id or self._user_id
        else:
            logger.info("session expired on the server; will sign in again at the next reconnect")
            self._cookie = ""
            self._stored_tried = True
            key = self._settings.secret_key("session")
            await off_loop(lambda: self._secrets.delete(key))


def authenticator_for(
    settings: ConnectionSettings,
    secrets: SecretStore,
    clock: Clock,
    *,
    password: str | None = None,
    token: str | None = None,
) -> OrgAuthenticator | DashboardAuthenticator:
    """Build the authenticator of ``settings.dialect`` (a convenience for app.py and ``listen``).

    Raises:
        ValueError: a pasted ``token`` that is not a JWT.
    """
    if settings.dialect == "org":
        return OrgAuthenticator(settings, secrets, clock, password=password, token=token)
    return DashboardAuthenticator(settings, secrets, clock, password=password)
