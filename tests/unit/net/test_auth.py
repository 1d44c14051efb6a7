"""Sign-in: wire shapes (core.protocol.auth) and the per-dialect authenticators (net.auth)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tests.helpers.fakes import FakeClock, FakeSecretStore, make_jwt
from tests.helpers.scripted_server import DashboardServer, OrgServer
from tray_agent.core.protocol.auth import (
    AuthAnswerError,
    AuthProblem,
    dashboard_check_request,
    dashboard_login_request,
    decode_jwt_claims,
    parse_dashboard_check,
    parse_dashboard_login,
    parse_supabase_token_response,
    redact_url,
    session_cookie_from_headers,
    supabase_password_request,
    supabase_refresh_request,
)
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import (
    AuthRefused,
    AuthRetryable,
    Credentials,
    DashboardAuthenticator,
    OrgAuthenticator,
    ServerUnreachable,
)
from tray_agent.net.http import HttpClient

NOW = datetime(2026, 3, 21, 8, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def http_client() -> AsyncIterator[HttpClient]:
    """The client's HTTP layer, closed afterwards (no proxy from the environment)."""
    http = HttpClient(trust_env=False)
    try:
        yield http
    finally:
        await http.close()


# -- JWT ------------------------------------------------------------------------------------------


def test_jwt_claims_read_without_verification() -> None:
    token = make_jwt("user-1", exp=NOW.timestamp() + 3600, email="a@b.c")
    claims = decode_jwt_claims(token)
    assert claims.subject == "user-1"
    assert claims.expires_at == datetime(2026, 3, 21, 9, 0, tzinfo=UTC)
    assert (claims.email, claims.audience) == ("a@b.c", "authenticated")


@pytest.mark.parametrize("junk", ["", "abc", "a.b", "a.!!!.c", "a.bm90IGpzb24.c", "a.WzFd.c"])
def test_jwt_junk_is_a_value_error_without_the_token(junk: str) -> None:
    with pytest.raises(ValueError, match="not a JWT") as info:
        decode_jwt_claims(junk)
    assert junk not in str(info.value) or not junk


# -- Supabase -------------------------------------------------------------------------------------


def test_supabase_requests_carry_the_anon_key_twice() -> None:
    request = supabase_password_request("https://ref.supabase.co/", "anon", "a@b.c", "pw")
    assert request.url == "https://ref.supabase.co/auth/v1/token?grant_type=password"
    assert dict(request.headers)["apikey"] == "anon"
    assert dict(request.headers)["Authorization"] == "Bearer anon"
    assert request.json == {"email": "a@b.c", "password": "pw"}
    assert "pw" not in repr(request)
    refresh = supabase_refresh_request("https://ref.supabase.co", "anon", "rt")
    assert refresh.url.endswith("grant_type=refresh_token")
    assert refresh.json == {"refresh_token": "rt"}


def test_supabase_success_parsed() -> None:
    token = make_jwt("sub-1", exp=NOW.timestamp() + 3600)
    body = json.dumps(
        {"access_token": token, "refresh_token": "r1", "expires_in": 3600, "user": {"id": "u-1"}}
    )
    session = parse_supabase_token_response(200, body.encode(), now=NOW)
    assert (session.access_token, session.refresh_token, session.user_id) == (token, "r1", "u-1")
    assert session.expires_at == datetime(2026, 3, 21, 9, 0, tzinfo=UTC)
    assert token not in repr(session)
    # Without user nor expires_*: the JWT says.
    session = parse_supabase_token_response(200, json.dumps({"access_token": token}).encode(), now=NOW)
    assert (session.user_id, session.expires_at) == ("sub-1", datetime(2026, 3, 21, 9, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("status", "body", "problem", "words"),
    [
        (
            400,
            {"error": "invalid_grant", "error_description": "Invalid login credentials"},
            "refused",
            "Wrong",
        ),
        (400, {"error_code": "invalid_credentials", "msg": "Invalid login credentials"}, "refused", "Wrong"),
        (
            400,
            {"error": "invalid_grant", "error_description": "Invalid Refresh Token: Already Used"},
            "refused",
            "Refresh",
        ),
        (429, {"error_code": "over_request_rate_limit"}, "rate_limited", "Too many"),
        (500, {}, "server_error", "500"),
        (200, {"nope": 1}, "bad_answer", "unexpected"),
        (418, "not json", "server_error", "418"),
    ],
)
def test_supabase_errors_classified(status: int, body: object, problem: str, words: str) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    with pytest.raises(AuthAnswerError) as info:
        parse_supabase_token_response(status, raw, now=NOW)
    assert info.value.problem is AuthProblem(problem)
    assert words in info.value.text


# -- Dashboard ------------------------------------------------------------------------------------


def test_dashboard_login_request_has_no_origin() -> None:
    request = dashboard_login_request("http://h:8080/", "a@b.c", "pw", "co")
    assert request.url == "http://h:8080/auth/login"
    assert "Origin" not in dict(request.headers)
    assert request.json == {"email": "a@b.c", "password": "pw", "company_id": "co"}
    check = dashboard_check_request("http://h:8080", "abc")
    assert dict(check.headers)["Cookie"] == "session=abc"


def test_session_cookie_extracted_whatever_its_attributes() -> None:
    value = "ab" * 32
    secure = (
        f"session={value}; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly; Secure; SameSite=None"
    )
    assert session_cookie_from_headers([secure]) == value
    assert session_cookie_from_headers(["other=1", f'session="{value}"']) == value
    assert session_cookie_from_headers([f"session={value}", "session=; Max-Age=0"]) is None
    assert session_cookie_from_headers(["sessionx=1"]) is None
    assert session_cookie_from_headers(["session=bad value"]) is None


def test_dashboard_login_answers() -> None:
    body = json.dumps(
        {"message": "Login successful", "user": {"id": "u1", "company_id": "co", "role": "human_agent"}}
    )
    login = parse_dashboard_login(200, body.encode(), ["session=abc123; Path=/; HttpOnly"])
    assert (login.session, login.user_id, login.company_id, login.role) == (
        "abc123",
        "u1",
        "co",
        "human_agent",
    )
    assert "abc123" not in repr(login)
    with pytest.raises(AuthAnswerError, match="no session cookie"):
        parse_dashboard_login(200, body.encode(), [])
    with pytest.raises(AuthAnswerError) as info:
        parse_dashboard_login(401, b'{"error":"Invalid credentials"}', [])
    assert info.value.problem is AuthProblem.REFUSED
    with pytest.raises(AuthAnswerError, match="disabled"):
        parse_dashboard_login(401, b'{"error":"Account is disabled"}', [])
    with pytest.raises(AuthAnswerError) as info:
        parse_dashboard_login(500, b"boom", [])
    assert info.value.problem is AuthProblem.SERVER_ERROR


def test_dashboard_check_answers() -> None:
    ok = parse_dashboard_check(
        200, b'{"authenticated":true,"user_id":"u1","company_id":"co","role":"viewer"}'
    )
    assert ok.authenticated
    assert ok.user_id == "u1"
    assert not parse_dashboard_check(200, b'{"authenticated":false}').authenticated
    assert not parse_dashboard_check(401, b"").authenticated
    with pytest.raises(AuthAnswerError):
        parse_dashboard_check(503, b"")


def test_redact_url_drops_query_and_credentials() -> None:
    assert redact_url("wss://user:pw@h:1/ws/o?token=abc#x") == "wss://h:1/ws/o"


def test_credentials_headers_and_repr() -> None:
    assert Credentials(token="t").http_headers() == {"Authorization": "Bearer t"}
    assert Credentials(cookie="c").http_headers() == {"Cookie": "session=c"}
    assert "t0ken" not in repr(Credentials(token="t0ken"))


# -- OrgAuthenticator against the scripted Supabase endpoint --------------------------------------


def _org_settings(server: OrgServer) -> ConnectionSettings:
    return ConnectionSettings(
        dialect="org",
        server=server.url,
        org="org1",
        email=server.email,
        supabase_url=server.url,
        supabase_key="anon",
    )


@pytest.mark.asyncio
async def test_org_authenticator_password_then_refresh_then_password_fallback() -> None:
    async with OrgServer() as server, http_client() as http:
        settings, secrets, clock = _org_settings(server), FakeSecretStore(), FakeClock()
        auth = OrgAuthenticator(settings, secrets, clock, password="pw")
        first = await auth.credentials(http)
        assert first.user_id == server.user_id
        assert await auth.credentials(http) == first  # cached while fresh
        assert server.grants == ["password"]
        # Near expiry -> refresh grant; the new refresh token replaces the stored one.
        clock.offset = server.token_lifetime - 30
        second = await auth.credentials(http)
        assert second.token != first.token
        assert server.grants == ["password", "refresh_token"]
        assert secrets.values[settings.secret_key("refresh_token")] in server.refresh_tokens
        # Refused by the server -> refresh; a dead refresh token -> password again.
        server.refresh_tokens.clear()
        auth.invalidate()
        await auth.credentials(http)
        assert server.grants[-2:] == ["refresh_token", "password"]
        # A wrong password is AuthRefused, and the password is forgotten.
        server.refresh_tokens.clear()
        server.password = "new"
        auth.invalidate()
        with pytest.raises(AuthRefused, match="Wrong"):
            await auth.credentials(http)
        with pytest.raises(AuthRefused, match="sign in"):
            await auth.credentials(http)


@pytest.mark.asyncio
async def test_org_authenticator_uses_a_stored_refresh_token_and_remembered_password() -> None:
    async with OrgServer() as server, http_client() as http:
        settings = _org_settings(server)
        refresh = server.issue()["refresh_token"]
        secrets = FakeSecretStore({settings.secret_key("refresh_token"): refresh})
        auth = OrgAuthenticator(settings, secrets, FakeClock())
        await auth.credentials(http)
        assert server.grants == ["refresh_token"]
        auth.set_password("pw", remember=True)
        assert secrets.values[settings.secret_key("password")] == "pw"


@pytest.mark.asyncio
async def test_org_authenticator_pasted_token() -> None:
    settings = ConnectionSettings(
        dialect="org", server="http://127.0.0.1:9", org="o", supabase_url="http://x"
    )
    token = make_jwt("me", exp=time.time() + 3600)
    auth = OrgAuthenticator(settings, FakeSecretStore(), FakeClock(), token=token)
    async with http_client() as http:
        assert await auth.credentials(http) == Credentials(token=token, user_id="me")
        auth.invalidate()
        with pytest.raises(AuthRefused, match="refused"):
            await auth.credentials(http)
    expired = OrgAuthenticator(
        settings, FakeSecretStore(), FakeClock(), token=make_jwt("me", exp=time.time() - 5)
    )
    async with http_client() as http:
        with pytest.raises(AuthRefused, match="expired"):
            await expired.credentials(http)
    with pytest.raises(ValueError, match="JWT"):
        OrgAuthenticator(settings, FakeSecretStore(), FakeClock(), token="not-a-jwt")


@pytest.mark.asyncio
async def test_org_authenticator_pasted_token_is_used_until_it_expires() -> None:
    # The refresh margin exists to refresh in time; a pasted token cannot be refreshed and the
    # server accepts it until ``exp``, so it must not be called expired 60 s early.
    settings = ConnectionSettings(
        dialect="org", server="http://127.0.0.1:9", org="o", supabase_url="http://x"
    )
    clock = FakeClock(NOW)
    token = make_jwt("me", exp=NOW.timestamp() + 30)
    auth = OrgAuthenticator(settings, FakeSecretStore(), clock, token=token, refresh_margin=60.0)
    async with http_client() as http:
        assert await auth.credentials(http) == Credentials(token=token, user_id="me")
        clock.offset = 31
        with pytest.raises(AuthRefused, match="expired"):
            await auth.credentials(http)


@pytest.mark.asyncio
async def test_org_authenticator_unreachable_and_server_errors_are_retryable() -> None:
    settings = ConnectionSettings(
        dialect="org",
        server="http://127.0.0.1:9",
        org="o",
        supabase_url="http://127.0.0.1:9",
        supabase_key="k",
    )
    auth = OrgAuthenticator(settings, FakeSecretStore(), FakeClock(), password="pw", timeout=2.0)
    async with http_client() as http:
        with pytest.raises(ServerUnreachable):
            await auth.credentials(http)
    async with OrgServer() as server, http_client() as http:
        from aiohttp import web

        server.routes[("POST", "/auth/v1/token")] = lambda r: web.json_response({}, status=503)
        auth = OrgAuthenticator(_org_settings(server), FakeSecretStore(), FakeClock(), password="pw")
        with pytest.raises(AuthRetryable, match="503"):
            await auth.credentials(http)


# -- DashboardAuthenticator -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_dashboard_authenticator_login_store_reuse_and_keepalive() -> None:
    async with DashboardServer() as server, http_client() as http:
        settings = ConnectionSettings(
            dialect="dashboard", server=server.url, company="co1", email=server.email
        )
        secrets = FakeSecretStore()
        auth = DashboardAuthenticator(settings, secrets, FakeClock(), password="pw")
        creds = await auth.credentials(http)
        assert creds.cookie in server.sessions
        assert creds.user_id == server.user_id
        assert secrets.values[settings.secret_key("session")] == creds.cookie
        # A later run reuses the stored cookie without logging in.
        again = DashboardAuthenticator(settings, secrets, FakeClock())
        assert (await again.credentials(http)).cookie == creds.cookie
        assert server.logins == 1
        # Keepalive slides the session; a dead session is forgotten.
        await again.keepalive(http)
        assert server.checks == 1
        server.sessions.clear()
        await again.keepalive(http)
        assert settings.secret_key("session") not in secrets.values
        with pytest.raises(AuthRefused):
            await again.credentials(http)  # no password known to this instance
        # A wrong password is refused.
        wrong = DashboardAuthenticator(settings, FakeSecretStore(), FakeClock(), password="nope")
        with pytest.raises(AuthRefused, match="Wrong"):
            await wrong.credentials(http)
