"""The client's life cycle against scripted servers: redirects, "signed in elsewhere", REST refusals."""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from websockets.asyncio.client import connect

from tests.helpers.fakes import EventRecorder, FakeClock, FakeSecretStore, RecordingSleep
from tests.helpers.net_clients import FAST, dashboard_rig, org_rig, running, running_client
from tests.helpers.scripted_server import (
    DashboardServer,
    OrgServer,
    RecordedRequest,
    ScriptedConnection,
    dashboard_customer,
    org_chat,
)
from tests.helpers.tls import self_signed_cert
from tray_agent.core.commands import SendReply
from tray_agent.core.events import CommandFailed, ConnectionChanged, ConnectionState
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.settings import ConnectionSettings
from tray_agent.demo.server import DemoServer
from tray_agent.net.auth import DashboardAuthenticator
from tray_agent.net.client import Client

pytestmark = pytest.mark.integration

CONNECTED = ConnectionState.CONNECTED
LOOPBACK = ipaddress.ip_address("127.0.0.1")
ELSEWHERE = ConnectionState.SIGNED_IN_ELSEWHERE


def _server() -> DashboardServer:
    server = DashboardServer()
    server.customers = [dashboard_customer("p1", f"c{i}") for i in range(2)]
    return server


async def _empty_close(conn: ScriptedConnection) -> None:
    """What the Go server does to a socket whose user connected again: a Close frame without a code."""
    # WORKAROUND(aiohttp): no public API sends a Close frame without a status code (the demo does the same).
    writer = conn.ws._writer
    assert writer is not None
    await writer.send_frame(b"", WSMsgType.CLOSE)
    await conn.closed.wait()


# -- one socket per user (PROTOCOL.md 2.5) -----------------------------------------------------------


@pytest.mark.asyncio
async def test_dashboard_socket_taken_over_by_another_client_says_signed_in_elsewhere() -> None:
    async with _server() as server, running(dashboard_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        conn = await server.next_connection()
        mark = ev.mark()
        await _empty_close(conn)
        changed = await ev.wait_for(ConnectionChanged, lambda e: e.state is not CONNECTED, after=mark)
        assert changed.state is ELSEWHERE  # not a reconnect loop
        assert server.handshakes == 1
        assert rig.sleep.delays == []
        # "Reconnect now" takes the live connection back.
        mark = ev.mark()
        rig.client.reconnect_now()
        await server.next_connection()
        await ev.wait_state(CONNECTED, after=mark)
        assert server.handshakes == 2


@pytest.mark.asyncio
async def test_dashboard_empty_close_right_after_our_own_network_loss_is_retried_at_once() -> None:
    async with _server() as server, running(dashboard_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        await server.next_connection()
        mark = ev.mark()
        await server.drop_all()  # network loss: our old socket may linger on the server (G4)
        second = await server.next_connection()
        await ev.wait_state(CONNECTED, after=mark)
        mark = ev.mark()
        await _empty_close(second)  # the lingering socket's cleanup kills the new one
        await server.next_connection()
        await ev.wait_state(CONNECTED, after=mark)
        assert ELSEWHERE not in ev.states()
        assert len(rig.sleep.delays) == 1


# -- redirects on the handshake -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [301, 302, 307])
async def test_handshake_redirected_to_a_captive_portal_is_a_retryable_failure(status: int) -> None:
    server = _server()
    server.check_handshake = lambda request: web.Response(  # type: ignore[method-assign]
        status=status, headers={"Location": "http://portal.example.net/login?return=x"}
    )
    async with server, running(dashboard_rig(server, limited_after=100)) as rig:
        ev = rig.events
        failure = await ev.wait_for(ConnectionChanged, lambda e: e.state is not ConnectionState.CONNECTING)
        assert failure.state is ConnectionState.RECONNECTING, failure  # never a dead end
        assert "portal.example.net" in failure.detail
        assert "captive portal" in failure.detail
        await server.wait_until(lambda: server.handshakes >= 3)  # it keeps trying


class _TlsDashboardServer(DashboardServer):
    """The same scripted dashboard, listening with TLS (the https:// side of a redirect)."""

    def __init__(self, context: ssl.SSLContext, twin: DashboardServer) -> None:
        super().__init__(email=twin.email, password=twin.password, company=twin.company)
        self._context = context
        self.sessions = twin.sessions  # one login serves both sides
        self.customers = twin.customers
        self.user_id = twin.user_id

    async def _listen(self) -> None:
        assert self.runner is not None
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self._context)
        await self.site.start()
        if not self.port:
            server = self.site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def _upgrade_pair(tmp_path: Path) -> AsyncIterator[tuple[DashboardServer, DashboardServer, Path]]:
    cert, key = self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with _server() as plain, _TlsDashboardServer(context, plain) as secure:
        yield plain, secure, cert


@pytest.mark.asyncio
async def test_handshake_redirected_from_http_to_https_on_the_same_host_is_followed(tmp_path: Path) -> None:
    async with _upgrade_pair(tmp_path) as (plain, secure, cert):
        target = f"https://127.0.0.1:{secure.port}/api/dashboard/ws"
        plain.check_handshake = lambda request: web.Response(  # type: ignore[method-assign]
            status=301, headers={"Location": target}
        )
        settings = ConnectionSettings(
            dialect="dashboard", server=plain.url, company=plain.company, email=plain.email
        )
        clock, events = FakeClock(), EventRecorder()
        auth = DashboardAuthenticator(
            settings, FakeSecretStore(), clock, password="pw", keepalive_interval=3600.0
        )
        client = Client(
            DashboardCodec(),
            auth,
            settings,
            events,
            clock,
            timings=FAST,
            sleep=RecordingSleep(),
            ssl_context=ssl.create_default_context(cafile=str(cert)),
        )
        task = client.start()
        try:
            await events.wait_state(CONNECTED)
            assert plain.handshakes == 1
            assert len(secure.connections) == 1
            assert secure.connections[0].headers.get("Cookie", "").startswith("session=")
        finally:
            await client.stop()
            await task


# -- credentials refused on a REST command -------------------------------------------------------------


@pytest.mark.asyncio
async def test_org_rest_command_refused_after_renewal_requires_sign_in_at_once() -> None:
    server = OrgServer()
    server.chats = [org_chat("chat1", handled_by="unassigned")]
    async with server, running(org_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        refusals: list[str] = []

        def refuse(record: RecordedRequest) -> web.StreamResponse:
            refusals.append(record.headers.get("Authorization", ""))
            return web.json_response({"detail": "Invalid token"}, status=401)

        server.routes[("POST", "/crm/chats/chat1/messages")] = refuse
        reply = SendReply(conversation="chat1", text="hello")
        mark = ev.mark()
        rig.client.submit(reply)
        await ev.wait_for(CommandFailed, lambda e: e.command_id == reply.command_id)
        changed = await ev.wait_for(ConnectionChanged, lambda e: e.state is not CONNECTED, after=mark)
        assert changed.state is ConnectionState.AUTH_REQUIRED  # now, not at the next reconnect
        assert len(refusals) == 2  # the credentials were renewed once in between
        assert refusals[0] != refusals[1]
        assert server.handshakes == 1


@pytest.mark.asyncio
async def test_demo_dashboard_web_tab_closing_under_the_app_says_signed_in_elsewhere(tmp_path: Path) -> None:
    """Against the demo backend (faithful to the Go server's one-socket-per-user map, G4)."""
    server = DemoServer(
        "dashboard",
        db_path=tmp_path / "demo.sqlite3",
        preload=2,
        backend_options={"ping_interval": 3600.0, "read_timeout": 3600.0},
    )
    await server.start()
    try:
        agent = server.info.agents[0]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            login = {"email": agent.email, "password": agent.password, "company_id": agent.tenant}
            async with http.post(server.url + "/auth/login", json=login) as resp:
                assert resp.status == 200
                cookie = resp.cookies["session"].value
        ws_url = server.url.replace("http://", "ws://") + "/api/dashboard/ws"
        browser = await connect(ws_url, additional_headers={"Cookie": f"session={cookie}"})
        settings = ConnectionSettings(
            dialect="dashboard", server=server.url, company=agent.tenant, email=agent.email
        )
        clock, events = FakeClock(), EventRecorder()
        auth = DashboardAuthenticator(
            settings, FakeSecretStore(), clock, password=agent.password, keepalive_interval=3600.0
        )
        sleep = RecordingSleep()
        client = Client(DashboardCodec(), auth, settings, events, clock, timings=FAST, sleep=sleep)
        task = client.start()
        try:
            await events.wait_state(CONNECTED)
            mark = events.mark()
            await browser.close()  # the web dashboard tab goes: its cleanup closes our socket
            changed = await events.wait_for(ConnectionChanged, lambda e: e.state is not CONNECTED, after=mark)
            assert changed.state is ELSEWHERE
            assert sleep.delays == []
            mark = events.mark()
            client.reconnect_now()
            await events.wait_state(CONNECTED, after=mark)
        finally:
            await client.stop()
            await task
    finally:
        await server.stop()


# -- an unusable proxy setting ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("proxy", ["http://proxy.corp:99999", "socks5://proxy.corp:1080"])
async def test_an_unusable_proxy_setting_stops_with_its_words_instead_of_retrying(proxy: str) -> None:
    server = _server()
    settings = ConnectionSettings(
        dialect="dashboard", server=server.url, company=server.company, email=server.email, proxy=proxy
    )
    ev, clock = EventRecorder(), FakeClock()
    auth = DashboardAuthenticator(settings, FakeSecretStore(), clock, password="pw")
    client = Client(DashboardCodec(), auth, settings, ev, clock, timings=FAST, sleep=RecordingSleep())
    async with server:
        async with running_client(client):
            ended = await ev.wait_for(ConnectionChanged, lambda e: e.state is not ConnectionState.CONNECTING)
            assert ended.state is ConnectionState.OFFLINE, ended  # a settings problem: no retry loop
            assert "proxy" in ended.detail
            assert "proxy.corp" in ended.detail
            assert ConnectionState.RECONNECTING not in ev.states()
        assert server.handshakes == 0
