"""The net Client against a scripted dashboard server: login, resync, events, commands, faults."""

from __future__ import annotations

import asyncio
import copy

import pytest
from aiohttp import web

from tests.helpers.net_clients import dashboard_rig, running
from tests.helpers.scripted_server import DashboardServer, Json, ScriptedConnection, dashboard_customer
from tray_agent.core.commands import LoadHistory, RefreshWaitingList, Release, Resolve, SendReply, TakeOver
from tray_agent.core.events import (
    AssignmentChanged,
    CommandFailed,
    CommandKind,
    CommandQueued,
    CommandSent,
    CommandSucceeded,
    Connected,
    ConnectionChanged,
    ConnectionState,
    FailureReason,
    HistoryPage,
    Ignored,
    MessageReceived,
    ServerAcked,
    ServerRejected,
    WaitingListPage,
)
from tray_agent.net.client import Client

pytestmark = pytest.mark.integration

CONNECTED = ConnectionState.CONNECTED


def _server(customers: int = 3) -> DashboardServer:
    server = DashboardServer()
    server.customers = [dashboard_customer("p1", f"c{i}") for i in range(customers)]
    return server


@pytest.mark.asyncio
async def test_dashboard_login_cookie_resync_and_live_events() -> None:
    async with _server(customers=250) as server, running(dashboard_rig(server)) as rig:
        await rig.events.wait_state(CONNECTED)
        states = rig.events.states()
        assert states[:3] == [ConnectionState.CONNECTING, ConnectionState.RESYNCING, CONNECTED]
        # Resync: pages of 200 until has_more is False, before CONNECTED.
        pages = rig.events.of(WaitingListPage)
        assert [(p.offset, len(p.customers), p.has_more) for p in pages] == [
            (0, 200, True),
            (200, 50, False),
        ]
        connected_at = next(
            i
            for i, e in enumerate(rig.events.events)
            if isinstance(e, ConnectionChanged) and e.state is CONNECTED
        )
        last_page_at = rig.events.events.index(pages[-1])
        assert last_page_at < connected_at
        # Login without Origin (G2); the cookie value injected on the handshake by hand.
        (login,) = server.requests_to("POST", "/auth/login")
        assert "Origin" not in login.headers
        (conn,) = server.connections
        cookie = conn.headers["Cookie"]
        assert cookie.startswith("session=")
        assert cookie.removeprefix("session=") in server.sessions
        assert rig.events.of(Connected)[0].user_id == server.user_id
        # Live events are forwarded in order.
        for n in range(5):
            await conn.send(server.customer_message("p1", "c1", f"hello {n}"))
        await rig.events.wait_for(MessageReceived, lambda e: e.text == "hello 4")
        texts = [e.text for e in rig.events.of(MessageReceived)]
        assert texts == [f"hello {n}" for n in range(5)]
        assert rig.events.of(MessageReceived)[0].conversation == "p1/c1"
        # Uncorrelated replies are consumed, never forwarded.
        assert not rig.events.of(ServerAcked)
        assert not rig.events.of(ServerRejected)


@pytest.mark.asyncio
async def test_dashboard_commands_success_failure_and_timeout() -> None:
    async with _server() as server, running(dashboard_rig(server, command_timeout=0.5)) as rig:
        await rig.events.wait_state(CONNECTED)
        ev = rig.events

        take = TakeOver(conversation="p1/c1")
        rig.client.submit(take)
        done = await ev.wait_for(CommandSucceeded, lambda e: e.command_id == take.command_id)
        assert done.kind is CommandKind.TAKE_OVER
        assert done.conversation == "p1/c1"
        await ev.wait_for(AssignmentChanged, lambda e: e.conversation == "p1/c1")

        missing = TakeOver(conversation="p1/nobody")
        rig.client.submit(missing)
        fail = await ev.wait_for(CommandFailed, lambda e: e.command_id == missing.command_id)
        assert fail.reason is FailureReason.NOT_FOUND
        # The bot is stopped first (the server refuses to assign otherwise): that step failed.
        assert fail.text == "Could not stop the bot, so nothing was changed: Customer not found"
        assigns = server.connections[0].frames_of("assign_agent")
        assert [f["data"]["customer_id"] for f in assigns] == ["c1"]  # the failed plan stopped there

        reply = SendReply(conversation="p1/c1", text="Hi, I am here")
        rig.client.submit(reply)
        queued = await ev.wait_for(CommandQueued, lambda e: e.command_id == reply.command_id)
        assert queued.text == "Hi, I am here"
        await ev.wait_for(CommandSent, lambda e: e.command_id == reply.command_id)
        await ev.wait_for(CommandSucceeded, lambda e: e.command_id == reply.command_id)
        echo = await ev.wait_for(MessageReceived, lambda e: e.text == "Hi, I am here")
        assert echo.agent_id == server.user_id

        server.command_errors["send_message"] = "Customer has not requested human assistance"
        refused = SendReply(conversation="p1/c2", text="too early")
        rig.client.submit(refused)
        fail = await ev.wait_for(CommandFailed, lambda e: e.command_id == refused.command_id)
        assert fail.reason is FailureReason.NO_HUMAN_REQUESTED

        release = Release(conversation="p1/c1")
        rig.client.submit(release)
        await ev.wait_for(CommandSucceeded, lambda e: e.command_id == release.command_id)
        again = Release(conversation="p1/c1")
        rig.client.submit(again)
        fail = await ev.wait_for(CommandFailed, lambda e: e.command_id == again.command_id)
        assert fail.reason is FailureReason.NOT_ASSIGNED

        # An unanswered command (the server ignores it: G5) times out.
        server.swallow.add("assign_agent")
        silent = TakeOver(conversation="p1/c2")
        rig.client.submit(silent)
        fail = await ev.wait_for(CommandFailed, lambda e: e.command_id == silent.command_id)
        assert fail.reason is FailureReason.TIMEOUT

        # Invalid commands fail at once, without touching the wire.
        before = len(server.connections[0].received)
        bad = SendReply(conversation="not-a-key", text="x")
        rig.client.submit(bad)
        fail = await ev.wait_for(CommandFailed, lambda e: e.command_id == bad.command_id)
        assert fail.reason is FailureReason.INVALID
        assert len(server.connections[0].received) == before


@pytest.mark.asyncio
async def test_dashboard_server_restart_mid_stream_loses_and_doubles_no_reply() -> None:
    async with _server() as server, running(dashboard_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        conn = await server.next_connection()
        for n in range(3):
            await conn.send(server.customer_message("p1", "c1", f"before {n}"))
        # A reply in flight when the server dies: it must end UNCONFIRMED and never be resent.
        server.swallow.add("send_message")
        inflight = SendReply(conversation="p1/c1", text="in flight")
        rig.client.submit(inflight)
        while True:
            frame = await conn.next_frame()
            if frame.get("type") == "send_message":
                break
        await ev.wait_for(MessageReceived, lambda e: e.text == "before 2")
        mark = ev.mark()
        await server.go_down()
        lost = await ev.wait_for(CommandFailed, lambda e: e.command_id == inflight.command_id)
        assert lost.reason is FailureReason.UNCONFIRMED
        await ev.wait_state(ConnectionState.RECONNECTING, after=mark)
        # A reply written while offline waits in the outbox and goes out after resync, once.
        server.swallow.clear()
        queued = SendReply(conversation="p1/c1", text="while offline")
        rig.client.submit(queued)
        await server.come_up()
        conn2 = await server.next_connection()
        await ev.wait_state(CONNECTED, after=mark)
        await ev.wait_for(CommandSucceeded, lambda e: e.command_id == queued.command_id)
        for n in range(3):
            await conn2.send(server.customer_message("p1", "c1", f"after {n}"))
        await ev.wait_for(MessageReceived, lambda e: e.text == "after 2")

        sent = [f["message"] for c in server.connections for f in c.frames_of("send_message")]
        assert sent == ["in flight", "while offline"]
        # The queued reply went out only after the resync of the new connection.
        kinds = [
            f["type"] for f in conn2.frames_of("get_stopped_customers") + conn2.frames_of("send_message")
        ]
        assert conn2.received.index(next(t for t in conn2.received if "get_stopped_customers" in t)) < (
            conn2.received.index(next(t for t in conn2.received if "send_message" in t))
        )
        assert kinds.count("send_message") == 1
        texts = [e.text for e in ev.of(MessageReceived) if e.text.startswith(("before", "after"))]
        assert texts == [*(f"before {n}" for n in range(3)), *(f"after {n}" for n in range(3))]
        # Never two sockets at once.
        assert len(server.live()) == 1


@pytest.mark.asyncio
async def test_dashboard_half_open_connection_detected_and_recovered() -> None:
    async with (
        _server() as server,
        running(dashboard_rig(server, heartbeat_interval=0.05, heartbeat_timeout=0.5)) as rig,
    ):
        ev = rig.events
        await ev.wait_state(CONNECTED)
        conn = await server.next_connection()
        mark = ev.mark()
        conn.silent = True  # zombie: socket open, nothing comes back
        change = await ev.wait_state(ConnectionState.RECONNECTING, after=mark)
        assert change.detail == "no answer to the heartbeat"
        await server.next_connection()
        await ev.wait_state(CONNECTED, after=mark)
        assert len(server.connections) == 2
        await conn.closed.wait()  # the dead socket was closed before (or while) the new one opened


@pytest.mark.asyncio
async def test_dashboard_session_expiry_ends_in_auth_required_without_retry_storm() -> None:
    async with _server() as server, running(dashboard_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        assert (server.handshakes, server.logins) == (1, 1)
        # The session lapses and the password changed meanwhile: one 401, one re-login, stop.
        server.sessions.clear()
        server.password = "changed"
        mark = ev.mark()
        await server.drop_all()
        change = await ev.wait_state(ConnectionState.AUTH_REQUIRED, after=mark)
        assert "Wrong" in change.detail
        assert (server.handshakes, server.logins) == (2, 2)
        # New credentials: exactly one more login and one handshake.
        rig.client._auth.set_password("changed")  # type: ignore[attr-defined]
        rig.client.reauthenticate()
        await ev.wait_state(CONNECTED, after=mark)
        assert (server.handshakes, server.logins) == (3, 3)

        # Handshakes refused although login works: re-login once, then AUTH_REQUIRED.
        server.reject_status = 401
        mark = ev.mark()
        await server.drop_all()
        await ev.wait_state(ConnectionState.AUTH_REQUIRED, after=mark)
        assert (server.handshakes, server.logins) == (5, 4)
        assert server.rejected == 3


@pytest.mark.asyncio
async def test_dashboard_garbage_is_ignored_and_counted() -> None:
    async with _server() as server, running(dashboard_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        conn = await server.next_connection()
        before = len(ev.of(Ignored))
        for n in range(1000):
            match n % 5:
                case 0:
                    await conn.send("{not json" + str(n))
                case 1:
                    await conn.send({"type": f"mystery_{n}", "data": {"x": n}})
                case 2:
                    await conn.send_bytes(b"\x00\x01binary")
                case 3:
                    await conn.send("[1, 2, 3]")
                case _:
                    await conn.send({"no_type": True})
        await conn.send(server.customer_message("p1", "c1", "still alive"))
        await ev.wait_for(MessageReceived, lambda e: e.text == "still alive", within=15)
        assert len(ev.of(Ignored)) - before == 1000
        assert len(server.connections) == 1
        assert {e.kind for e in ev.of(Ignored)} >= {"binary"}


@pytest.mark.asyncio
async def test_dashboard_oversized_frame_reconnects() -> None:
    async with _server() as server:
        rig = dashboard_rig(server)
        rig.client._codec.max_frame_size = 64 * 1024  # type: ignore[misc]
        async with running(rig):
            ev = rig.events
            await ev.wait_state(CONNECTED)
            conn = await server.next_connection()
            mark = ev.mark()
            await conn.send({"type": "new_message", "pad": "x" * 100_000})
            ignored = await ev.wait_for(Ignored, lambda e: e.kind == "oversized", after=mark)
            assert "65536" in ignored.why
            await server.next_connection()
            await ev.wait_state(CONNECTED, after=mark)


@pytest.mark.asyncio
async def test_dashboard_stop_settles_queued_commands() -> None:
    async with _server() as server:
        rig = dashboard_rig(server)
        async with running(rig):
            await rig.events.wait_state(CONNECTED)
            server.swallow.add("assign_agent")
            take = TakeOver(conversation="p1/c1")
            rig.client.submit(take)
            await rig.events.wait_for(CommandSent, lambda e: e.command_id == take.command_id)
            # Its last step (after stopping the bot over REST) is on the socket, unanswered.
            while (await server.connections[0].next_frame()).get("type") != "assign_agent":
                pass
        fail = await rig.events.wait_for(CommandFailed, lambda e: e.command_id == take.command_id)
        assert fail.reason is FailureReason.UNCONFIRMED
        assert rig.events.states()[-1] is ConnectionState.OFFLINE
        late = TakeOver(conversation="p1/c1")
        rig.client.submit(late)
        fail = await rig.events.wait_for(CommandFailed, lambda e: e.command_id == late.command_id)
        assert fail.reason is FailureReason.OFFLINE
        await asyncio.wait_for(server.connections[0].closed.wait(), 5)


@pytest.mark.asyncio
async def test_dashboard_history_over_rest_with_the_session_cookie() -> None:
    history = {
        "conversation": [
            {
                "id": "m2",
                "message": "newer",
                "timestamp": "2026-01-01T10:01:00Z",
                "is_bot": True,
                "type": "bot",
            },
            {
                "id": "m1",
                "message": "older",
                "timestamp": "2026-01-01T10:00:00Z",
                "is_bot": False,
                "type": "customer",
            },
        ],
        "pagination": {"page": 1, "limit": 50, "total": 2, "total_pages": 1, "has_more": False},
    }
    async with _server() as server, running(dashboard_rig(server)) as rig:
        server.routes[("GET", "/api/dashboard/messages/conversation/c1")] = lambda r: web.json_response(
            history
        )
        await rig.events.wait_state(CONNECTED)
        load = LoadHistory(conversation="p1/c1")
        rig.client.submit(load)
        await rig.events.wait_for(CommandSucceeded, lambda e: e.command_id == load.command_id)
        page = await rig.events.wait_for(HistoryPage)
        assert [m.text for m in page.messages] == ["older", "newer"]
        (request,) = server.requests_to("GET", "/api/dashboard/messages/conversation/c1")
        assert request.headers["Cookie"] == server.connections[0].headers["Cookie"]
        assert request.query == {"page_id": "p1", "page": "1", "limit": "50"}


@pytest.mark.asyncio
async def test_dashboard_session_keepalive_and_reconnect_now() -> None:
    async with _server() as server:
        rig = dashboard_rig(server)
        rig.client._auth._keepalive_interval = 0.05  # type: ignore[attr-defined]
        async with running(rig):
            ev = rig.events
            await ev.wait_state(CONNECTED)
            first = await server.next_connection()
            # GET /auth/check slides the 24 h session while connected (G15).
            await server.wait_until(lambda: server.checks >= 2)
            mark = ev.mark()
            rig.client.reconnect_now()
            second = await server.next_connection()
            await ev.wait_state(CONNECTED, after=mark)
            assert first.closed.is_set()  # the old socket was closed before the new one opened
            assert second is not first
            assert ConnectionState.RECONNECTING not in ev.states()[mark:]
            assert rig.sleep.delays == []


@pytest.mark.asyncio
async def test_dashboard_extra_disconnect_after_a_reconnect_is_retried_at_once() -> None:
    async with _server() as server, running(dashboard_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        await server.next_connection()
        mark = ev.mark()
        await server.drop_all()  # network loss: one backoff delay
        second = await server.next_connection()
        await ev.wait_state(CONNECTED, after=mark)
        assert len(rig.sleep.delays) == 1
        mark = ev.mark()
        await second.close(1000)  # the old socket's cleanup kills the new one (G4)
        await server.next_connection()
        await ev.wait_state(CONNECTED, after=mark)
        assert len(rig.sleep.delays) == 1  # retried at once, backoff untouched


@pytest.mark.asyncio
async def test_dashboard_request_resync_pages_the_whole_list_again_on_the_live_socket() -> None:
    async with _server(customers=250) as server, running(dashboard_rig(server)) as rig:
        await rig.events.wait_state(CONNECTED)
        (conn,) = server.connections
        before = len(conn.frames_of("get_stopped_customers"))
        mark = rig.events.mark()
        rig.client.request_resync("an unknown customer was assigned")
        await rig.events.wait_for(WaitingListPage, lambda p: not p.has_more, after=mark)
        assert len(conn.frames_of("get_stopped_customers")) == before + 2  # two pages, same socket
        assert server.connections == [conn]


@pytest.mark.asyncio
async def test_dashboard_take_over_of_ai_customer_stops_bot_then_assigns_and_resolve_gives_back() -> None:
    server = _server()
    server.customers.append(dashboard_customer("p1", "ai", stop=False))
    async with server, running(dashboard_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        take = TakeOver(conversation="p1/ai")
        rig.client.submit(take)
        await ev.wait_for(CommandSucceeded, lambda e: e.command_id == take.command_id)
        (stop,) = server.requests_to("PUT", "/api/dashboard/customers/ai/stop")
        assert stop.json() == {"page_id": "p1", "stop": True}
        assert [e.command_id for e in ev.of(CommandSent)].count(take.command_id) == 1

        resolve = Resolve(conversation="p1/ai")
        rig.client.submit(resolve)
        await ev.wait_for(CommandSucceeded, lambda e: e.command_id == resolve.command_id)
        (unassign,) = server.requests_to("DELETE", "/api/dashboard/customers/ai/agent")
        assert unassign.json() == {"page_id": "p1"}
        assert server.requests_to("PUT", "/api/dashboard/customers/ai/stop")[-1].json() == {
            "page_id": "p1",
            "stop": False,
        }
        customer = server._find("p1", "ai")
        assert customer is not None
        assert (customer["stop"], customer["agent_id"]) == (False, "")


def _list_all_customers(server: DashboardServer) -> None:
    """``GET /api/dashboard/customers`` (PROTOCOL.md 2.6): every customer, newest activity first."""

    def handler(record):
        page, limit = int(record.query.get("page", "1")), int(record.query.get("limit", "50"))
        rows = server.customers[(page - 1) * limit : page * limit]
        pages = (len(server.customers) + limit - 1) // limit
        pagination = {
            "page": page,
            "limit": limit,
            "total": len(server.customers),
            "total_pages": pages,
            "has_more": page < pages,
        }
        return web.json_response(
            {"customers": rows or None, "pagination": pagination, "company_id": server.company}
        )

    server.routes[("GET", "/api/dashboard/customers")] = handler


@pytest.mark.asyncio
async def test_dashboard_connect_lists_the_customers_the_ai_handles_once_and_bounded() -> None:
    server = _server(customers=1)  # one waiting customer (stop=true)
    server.customers += [dashboard_customer("p1", f"ai{i}", stop=False) for i in range(300)]
    _list_all_customers(server)
    async with server, running(dashboard_rig(server)) as rig:
        await rig.events.wait_state(CONNECTED)
        extra = await rig.events.wait_for(WaitingListPage, lambda p: any(not c.waiting for c in p.customers))
        # One REST page (bounded), read after the waiting list: it adds rows, it drops nobody.
        (listed,) = server.requests_to("GET", "/api/dashboard/customers")
        assert listed.query["page"] == "1"
        assert 0 < int(listed.query["limit"]) <= 200
        assert (extra.offset, extra.has_more, extra.complete_list) == (0, False, False)
        keys = {c.conversation for c in extra.customers}
        assert {"p1/c0", "p1/ai0"} <= keys
        assert not next(c for c in extra.customers if c.conversation == "p1/ai0").waiting
        # A later resync of the same connection reads only the waiting list again.
        mark = rig.events.mark()
        rig.client.request_resync("periodic")
        await rig.events.wait_for(WaitingListPage, lambda p: not p.has_more, after=mark)
        assert len(server.requests_to("GET", "/api/dashboard/customers")) == 1


async def _no_watch_left(client: Client) -> None:
    """Await the client's side tasks (the REST list read after connecting); then nothing is watched."""
    await asyncio.wait_for(asyncio.gather(*client._side_tasks), 5)
    assert client._live_changes._reads == []


class _StaleListServer(DashboardServer):
    """Builds its next waiting-list answer, then broadcasts an assignment, then sends the list.

    As the Go server may: a command's answer and the hub's broadcasts reach the socket from
    different goroutines, so a page built before an assignment can arrive after its broadcast.
    """

    def __init__(self) -> None:
        super().__init__()
        self.assign_before_next_list: str | None = None

    async def on_frame(self, conn: ScriptedConnection, frame: Json) -> None:
        customer_id = self.assign_before_next_list
        if frame.get("type") != "get_stopped_customers" or customer_id is None:
            await super().on_frame(conn, frame)
            return
        self.assign_before_next_list = None
        answer: list[Json] = []
        real_send = conn.send

        async def keep(out: str | Json) -> None:
            assert not isinstance(out, str)
            answer.append(copy.deepcopy(out))

        conn.send = keep  # type: ignore[method-assign]
        try:
            await super().on_frame(conn, frame)  # the page, as the database says before the change
        finally:
            conn.send = real_send  # type: ignore[method-assign]
        customer = self._find("p1", customer_id)
        assert customer is not None
        customer.update(agent_id="someone-else", is_assigned=True)
        await self.broadcast(
            {
                "type": "agent_assignment_changed",
                "page_id": "p1",
                "data": {
                    "customer_id": customer_id,
                    "customer": customer,
                    "agent_id": "someone-else",
                    "agent_email": "",
                    "agent_name": "",
                    "action": "assigned",
                },
            }
        )
        for out in answer:
            await real_send(out)


@pytest.mark.asyncio
async def test_a_socket_page_built_before_a_broadcast_it_follows_names_that_customer() -> None:
    server = _StaleListServer()
    server.customers = [dashboard_customer("p1", f"c{i}") for i in range(3)]
    async with server, running(dashboard_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        await _no_watch_left(rig.client)  # the REST list read after connecting is answered
        mark = ev.mark()
        server.assign_before_next_list = "c1"
        rig.client.submit(RefreshWaitingList(limit=50))
        await ev.wait_for(AssignmentChanged, lambda e: e.conversation == "p1/c1", after=mark)
        page = await ev.wait_for(WaitingListPage, lambda e: True, after=mark)
        assert "p1/c1" in [row.conversation for row in page.customers]  # the stale row
        assert page.changed_live == frozenset({"p1/c1"})
        # The next page is built after the change: nothing to mark, and no watch left behind.
        mark = ev.mark()
        rig.client.submit(RefreshWaitingList(limit=50))
        page = await ev.wait_for(WaitingListPage, lambda e: True, after=mark)
        assert page.changed_live == frozenset()
        assert rig.client._live_changes._reads == []


@pytest.mark.asyncio
async def test_a_page_lost_with_the_socket_leaves_no_watch_behind() -> None:
    async with _server() as server, running(dashboard_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        server.swallow.add("get_stopped_customers")
        refresh = RefreshWaitingList(limit=50)
        (conn,) = server.live()
        asked = len(conn.frames_of("get_stopped_customers"))
        rig.client.submit(refresh)
        await server.wait_until(lambda: len(conn.frames_of("get_stopped_customers")) > asked)
        (pending,) = [
            p for p in rig.client._tracker.outstanding if p.command.command_id == refresh.command_id
        ]
        assert pending.changed_live is not None  # watched while it is on its way
        assert any(watch is pending.changed_live for watch in rig.client._live_changes._reads)
        server.swallow.clear()
        mark = ev.mark()
        await server.drop_all()
        await ev.wait_state(CONNECTED, after=mark)
        await ev.wait_for(CommandSucceeded, lambda e: e.command_id == refresh.command_id)
        await _no_watch_left(rig.client)


@pytest.mark.asyncio
async def test_a_page_the_server_refuses_leaves_no_watch_behind() -> None:
    async with _server() as server, running(dashboard_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        await _no_watch_left(rig.client)  # the REST list read after connecting is answered
        server.command_errors["get_stopped_customers"] = "database unavailable"
        refresh = RefreshWaitingList(limit=50)
        rig.client.submit(refresh)
        failed = await ev.wait_for(CommandFailed, lambda e: e.command_id == refresh.command_id)
        assert failed.text == "database unavailable"
        pending = [p for p in rig.client._tracker.outstanding if p.command.command_id == refresh.command_id]
        assert pending == []
        assert rig.client._live_changes._reads == []
