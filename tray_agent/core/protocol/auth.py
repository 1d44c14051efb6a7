"""Wire shapes of sign-in for both dialects: request builders and answer parsers, no I/O.

Org (PROTOCOL.md 1.1): the backend has no login endpoint; the client signs in at the Supabase
token endpoint (password grant, then refresh-token grant) and sends the access token (a JWT) as
``?token=`` on the WebSocket URL and as ``Authorization: Bearer`` on REST. Dashboard (2.1):
``POST /auth/login`` sets a ``session`` cookie, which the client copies into the ``Cookie``
header itself (never through a cookie jar, never with an ``Origin`` header on login: G2).

Everything here is pure: the network layer (:mod:`tray_agent.net.auth`) performs the requests.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

SESSION_COOKIE = "session"


class AuthProblem(enum.StrEnum):
    """Why a sign-in answer is not a success, coarse enough to decide what to do next."""

    REFUSED = "refused"  # bad credentials / expired refresh token: ask the user
    RATE_LIMITED = "rate_limited"  # try again later
    SERVER_ERROR = "server_error"  # 5xx or an unexpected status: retry with backoff
    BAD_ANSWER = "bad_answer"  # 2xx that does not have the expected shape


class AuthAnswerError(Exception):
    """A sign-in answer that is not a usable success.

    Attributes:
        problem: the coarse classification.
        text: plain words for the user (never contains a secret).
        status: the HTTP status.
    """

    def __init__(self, problem: AuthProblem, text: str, status: int = 0) -> None:
        super().__init__(text)
        self.problem = problem
        self.text = text
        self.status = status


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """One HTTP request to perform for sign-in.

    Attributes:
        method: GET or POST.
        url: absolute URL.
        headers: request headers (may hold secrets: never log them).
        json: a JSON body or None.
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    json: Any = None

    def __repr__(self) -> str:
        # Bodies and headers carry passwords and tokens: keep them out of reprs and logs.
        return f"AuthRequest({self.method} {redact_url(self.url)})"


def redact_url(url: str) -> str:
    """Return ``url`` without its query string and fragment (``?token=`` never reaches a log)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else parts.path


# ---------------------------------------------------------------------------------------------
# JWT (read without verification: only the server can verify HS256 with its secret)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JwtClaims:
    """The claims of a JWT that the client uses.

    Attributes:
        subject: ``sub`` (the Supabase user id), "" if absent.
        expires_at: ``exp`` as an aware UTC datetime, None if absent.
        issued_at: ``iat`` as an aware UTC datetime, None if absent.
        email: ``email``, "" if absent.
        audience: ``aud`` as a string ("" if absent; the org server requires "authenticated").
    """

    subject: str = ""
    expires_at: datetime | None = None
    issued_at: datetime | None = None
    email: str = ""
    audience: str = ""


def _b64url_decode(segment: str) -> bytes:
    padded = segment + "=" * (-len(segment) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (OverflowError, OSError, ValueError):
        return None


def decode_jwt_claims(token: str) -> JwtClaims:
    """Read a JWT's payload WITHOUT verifying its signature.

    Used for pasted tokens (who am I, when does it expire), refresh scheduling and clock-skew
    diagnostics. Never use the result for a trust decision.

    Args:
        token: a compact JWS (``header.payload.signature``).

    Raises:
        ValueError: the token is not a JWT with a JSON object payload (the message never
            contains the token).
    """
    parts = token.strip().split(".")
    if len(parts) != 3 or not parts[1]:
        raise ValueError("not a JWT (expected three dot-separated parts)")
    try:
        payload = json.loads(_b64url_decode(parts[1]))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("not a JWT (payload is not base64url JSON)") from exc
    if not isinstance(payload, dict):
        raise ValueError("not a JWT (payload is not a JSON object)")
    sub = payload.get("sub")
    email = payload.get("email")
    aud = payload.get("aud")
    if isinstance(aud, list):
        aud = next((a for a in aud if isinstance(a, str)), "")
    return JwtClaims(
        subject=sub if isinstance(sub, str) else "",
        expires_at=_epoch(payload.get("exp")),
        issued_at=_epoch(payload.get("iat")),
        email=email if isinstance(email, str) else "",
        audience=aud if isinstance(aud, str) else "",
    )


# ---------------------------------------------------------------------------------------------
# Org: Supabase Auth token endpoint
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SupabaseSession:
    """A successful Supabase token answer.

    Attributes:
        access_token: the JWT for the org backend.
        refresh_token: the single-use refresh token ("" if the answer had none).
        expires_at: when the access token expires (from ``expires_at``, ``expires_in`` or the
            JWT's ``exp``), aware UTC; None if nothing says.
        user_id: the Supabase user id (``user.id`` or the JWT ``sub``).
    """

    access_token: str
    refresh_token: str
    expires_at: datetime | None
    user_id: str

    def __repr__(self) -> str:
        return f"SupabaseSession(user_id={self.user_id!r}, expires_at={self.expires_at!r})"


def _supabase_headers(anon_key: str) -> tuple[tuple[str, str], ...]:
    # supabase-js sends the anon key both as `apikey` and as the bearer token.
    return (
        ("apikey", anon_key),
        ("Authorization", f"Bearer {anon_key}"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    )


def _token_url(supabase_url: str, grant_type: str) -> str:
    return f"{supabase_url.rstrip('/')}/auth/v1/token?grant_type={quote(grant_type)}"


def supabase_password_request(supabase_url: str, anon_key: str, email: str, password: str) -> AuthRequest:
    """Build ``POST {supabase_url}/auth/v1/token?grant_type=password``.

    Args:
        supabase_url: the Supabase project URL (``https://<ref>.supabase.co``).
        anon_key: the project's public anon key.
        email: the agent's e-mail.
        password: the agent's password.
    """
    return AuthRequest(
        "POST",
        _token_url(supabase_url, "password"),
        _supabase_headers(anon_key),
        {"email": email, "password": password},
    )


def supabase_refresh_request(supabase_url: str, anon_key: str, refresh_token: str) -> AuthRequest:
    """Build ``POST {supabase_url}/auth/v1/token?grant_type=refresh_token``.

    Args:
        supabase_url: the Supabase project URL.
        anon_key: the project's public anon key.
        refresh_token: the refresh token of the last session (single use).
    """
    return AuthRequest(
        "POST",
        _token_url(supabase_url, "refresh_token"),
        _supabase_headers(anon_key),
        {"refresh_token": refresh_token},
    )


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _first_text(obj: dict[str, Any] | None, *keys: str) -> str:
    if obj is None:
        return ""
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


_SUPABASE_REFUSALS = {
    "invalid_grant",
    "invalid_credentials",
    "refresh_token_not_found",
    "refresh_token_already_used",
    "session_not_found",
    "session_expired",
    "user_not_found",
    "user_banned",
    "email_not_confirmed",
    "bad_jwt",
}


def parse_supabase_token_response(status: int, body: bytes, *, now: datetime) -> SupabaseSession:
    """Parse the token endpoint's answer.

    Args:
        status: HTTP status.
        body: the raw body.
        now: the current time (to turn ``expires_in`` into a date).

    Raises:
        AuthAnswerError: not a success; ``problem`` says whether to ask the user (REFUSED),
            wait (RATE_LIMITED) or retry (SERVER_ERROR / BAD_ANSWER).
    """
    obj = _json_object(body)
    if 200 <= status < 300:
        access = _first_text(obj, "access_token")
        if obj is None or not access:
            raise AuthAnswerError(
                AuthProblem.BAD_ANSWER, "The sign-in service gave an unexpected answer.", status
            )
        claims: JwtClaims | None
        try:
            claims = decode_jwt_claims(access)
        except ValueError:
            claims = None
        expires_at = _epoch(obj.get("expires_at"))
        expires_in = obj.get("expires_in")
        if expires_at is None and isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            expires_at = datetime.fromtimestamp(now.timestamp() + float(expires_in), UTC)
        if expires_at is None and claims is not None:
            expires_at = claims.expires_at
        user = obj.get("user")
        user_id = _first_text(user if isinstance(user, dict) else None, "id")
        if not user_id and claims is not None:
            user_id = claims.subject
        return SupabaseSession(access, _first_text(obj, "refresh_token"), expires_at, user_id)
    code = _first_text(obj, "error_code", "error", "code")
    detail = _first_text(obj, "error_description", "msg", "message")
    if status == 429 or code == "over_request_rate_limit":
        raise AuthAnswerError(
            AuthProblem.RATE_LIMITED, "Too many sign-in attempts; trying again later.", status
        )
    if status >= 500:
        raise AuthAnswerError(
            AuthProblem.SERVER_ERROR, f"The sign-in service failed (HTTP {status}).", status
        )
    if code in {"invalid_grant", "invalid_credentials"} and "refresh" not in detail.lower():
        raise AuthAnswerError(AuthProblem.REFUSED, "Wrong e-mail or password.", status)
    if code in _SUPABASE_REFUSALS or status in (400, 401, 403):
        words = detail or code or f"HTTP {status}"
        raise AuthAnswerError(AuthProblem.REFUSED, f"Sign-in refused: {words}.", status)
    raise AuthAnswerError(AuthProblem.SERVER_ERROR, f"The sign-in service answered HTTP {status}.", status)


# ---------------------------------------------------------------------------------------------
# Dashboard: POST /auth/login, GET /auth/check, the session cookie
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DashboardLogin:
    """A successful dashboard login.

    Attributes:
        session: the ``session`` cookie value (64 hex chars on the real server).
        user_id: ``user.id`` (Mongo hex), "" if absent.
        company_id: ``user.company_id``, "" if absent.
        role: ``user.role``, "" if absent.
    """

    session: str
    user_id: str = ""
    company_id: str = ""
    role: str = ""

    def __repr__(self) -> str:
        return f"DashboardLogin(user_id={self.user_id!r}, company_id={self.company_id!r})"


@dataclass(frozen=True, slots=True)
class DashboardCheck:
    """The answer of ``GET /auth/check``."""

    authenticated: bool
    user_id: str = ""
    company_id: str = ""
    role: str = ""


def dashboard_login_request(server: str, email: str, password: str, company_id: str) -> AuthRequest:
    """Build ``POST {server}/auth/login``.

    No ``Origin`` header on purpose: with a cross-origin Origin the server marks the cookie
    ``Secure; SameSite=None`` (PROTOCOL.md G2).

    Args:
        server: the backend's http(s) base URL.
        email: the agent's e-mail.
        password: the agent's password.
        company_id: the company the agent signs in to.
    """
    return AuthRequest(
        "POST",
        f"{server.rstrip('/')}/auth/login",
        (("Content-Type", "application/json"), ("Accept", "application/json")),
        {"email": email, "password": password, "company_id": company_id},
    )


def dashboard_check_request(server: str, session: str) -> AuthRequest:
    """Build ``GET {server}/auth/check`` with the session cookie (slides the 24 h session: G15)."""
    return AuthRequest(
        "GET", f"{server.rstrip('/')}/auth/check", (cookie_header(session), ("Accept", "application/json"))
    )


def cookie_header(session: str) -> tuple[str, str]:
    """The ``Cookie`` header carrying the dashboard session."""
    return ("Cookie", f"{SESSION_COOKIE}={session}")


_COOKIE_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def session_cookie_from_headers(set_cookie_headers: list[str] | tuple[str, ...]) -> str | None:
    """Extract the ``session`` cookie's value from ``Set-Cookie`` header values.

    Attributes such as ``Secure``, ``SameSite`` and ``Domain`` are deliberately ignored: the
    client injects the value into ``Cookie`` itself (G2). An empty value or an ``Expires`` in the
    past / ``Max-Age<=0`` (a deletion) yields None. The last matching header wins.
    """
    found: str | None = None
    for header in set_cookie_headers:
        first, _, attrs = header.partition(";")
        name, sep, value = first.partition("=")
        if not sep or name.strip() != SESSION_COOKIE:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        deleted = False
        for attr in attrs.split(";"):
            key, _, arg = attr.strip().partition("=")
            if key.lower() == "max-age":
                with contextlib.suppress(ValueError):
                    deleted = int(arg.strip()) <= 0
        if not value or deleted or not _COOKIE_TOKEN.match(value):
            found = None
            continue
        found = value
    return found


def parse_dashboard_login(
    status: int, body: bytes, set_cookie_headers: list[str] | tuple[str, ...]
) -> DashboardLogin:
    """Parse the answer of ``POST /auth/login``.

    Args:
        status: HTTP status.
        body: raw body (``{"message", "user": {...}}`` or ``{"error": "..."}``).
        set_cookie_headers: every ``Set-Cookie`` header value of the answer.

    Raises:
        AuthAnswerError: 401 → REFUSED (``Invalid credentials`` / ``Account is disabled``),
            400 → REFUSED (missing fields), 5xx → SERVER_ERROR, no cookie → BAD_ANSWER.
    """
    obj = _json_object(body)
    if 200 <= status < 300:
        session = session_cookie_from_headers(set_cookie_headers)
        if session is None:
            raise AuthAnswerError(
                AuthProblem.BAD_ANSWER, "The server signed in but sent no session cookie.", status
            )
        user = obj.get("user") if obj is not None else None
        user_obj = user if isinstance(user, dict) else None
        return DashboardLogin(
            session,
            _first_text(user_obj, "id", "_id"),
            _first_text(user_obj, "company_id"),
            _first_text(user_obj, "role"),
        )
    error = _first_text(obj, "error", "message")
    if status == 429:
        raise AuthAnswerError(
            AuthProblem.RATE_LIMITED, "Too many sign-in attempts; trying again later.", status
        )
    if status >= 500:
        raise AuthAnswerError(
            AuthProblem.SERVER_ERROR, f"The server failed to sign in (HTTP {status}).", status
        )
    if status == 401:
        if error == "Account is disabled":
            raise AuthAnswerError(AuthProblem.REFUSED, "This account is disabled.", status)
        raise AuthAnswerError(AuthProblem.REFUSED, "Wrong e-mail, password or company.", status)
    if status in (400, 403, 404):
        raise AuthAnswerError(AuthProblem.REFUSED, f"Sign-in refused: {error or f'HTTP {status}'}.", status)
    raise AuthAnswerError(AuthProblem.SERVER_ERROR, f"The server answered HTTP {status} to sign-in.", status)


def parse_dashboard_check(status: int, body: bytes) -> DashboardCheck:
    """Parse the answer of ``GET /auth/check``.

    Raises:
        AuthAnswerError: SERVER_ERROR for 5xx / unexpected answers (the session state is then
            unknown, not refused).
    """
    obj = _json_object(body)
    if status == 401:
        return DashboardCheck(False)
    if not 200 <= status < 300 or obj is None:
        raise AuthAnswerError(AuthProblem.SERVER_ERROR, f"Session check failed (HTTP {status}).", status)
    if obj.get("authenticated") is not True:
        return DashboardCheck(False)
    return DashboardCheck(
        True, _first_text(obj, "user_id"), _first_text(obj, "company_id"), _first_text(obj, "role")
    )
