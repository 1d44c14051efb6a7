"""The net Client against a scripted org server (+ Supabase token endpoint): sign-in, REST, faults."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest
from aiohttp import web

from tests.helpers.fakes import make_jwt
from tests.helpers.net_clients import org_rig, running
from tests.helpers.scripted_server import OrgServer, RecordedRequest, org_chat, org_message
from tray_agent.core.commands import RefreshWaitingList, Release, Resolve, SendReply, TakeOver
from tray_agent.core.events import (
    AssignmentChanged,
    CommandFailed,
    CommandSucceeded,
    Connected,
    ConnectionState,
    FailureReason,
    Ignored,
    KeepaliveReceived,
    MessageReceived,
    WaitingListPage,
)

pytestmark = pytest.mark.integration

CONNECTED = ConnectionState.CONNECTED


def _server(chats: int = 3) -> OrgServer:
    server = OrgServer()
    server.chats = [org_chat(f"chat{i}", handled_by="unassigned") for i in range(chats)]
    return server


@pytest.mark.asyncio
async def test_org_password_grant_token_url_rest_resync_and_live_events() -> None:
    async with _server(chats=150) as server, running(org_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        assert server.grants == ["password"]
        (conn,) = server.connections
        assert conn.request.query["token"] in server.tokens
        assert conn.request.path == f"/ws/{server.org_id}"
        # Resync over REST before CONNECTED: the filtered segments (issue 15), pages clamped to 100
        # by the codec; the 150 unassigned chats take two pages, the recent-activity segment one.
        chats = server.requests_to("GET", "/crm/chats")
        assert [
            (r.query.get("handled_by"), r.query.get("status_filter"), r.query["skip"], r.query["limit"])
            for r in chats
        ] == [
            ("human", "open", "0", "100"),
            ("human", "pending", "0", "100"),
            ("human", "assigned", "0", "100"),
            ("unassigned", "open", "0", "100"),
            ("unassigned", "open", "100", "100"),
            ("unassigned", "pending", "0", "100"),
            (None, None, "0", "100"),
        ]
        assert all(r.headers["Authorization"].startswith("Bearer ") for r in chats)
        pages = ev.of(WaitingListPage)
        assert [len(p.customers) for p in pages] == [0, 0, 0, 100, 50, 0, 100]
        assert not pages[-1].has_more
        assert ev.of(Connected)[0].connection_count == 1
        # The refresh token went to the SecretStore; the password did not.
        assert rig.secrets.values[rig.settings.secret_key("refresh_token")] in server.refresh_tokens
        assert rig.settings.secret_key("password") not in rig.secrets.values
        # Server JSON ping -> our pong; live events forwarded.
        await conn.send({"type": "ping", "timestamp": "2026-03-01T10:00:00", "message": "keepalive"})
        await ev.wait_for(KeepaliveReceived, lambda e: e.kind == "ping")
        while (await conn.next_frame()).get("type") != "pong":
            pass
        await conn.send(server.new_message("chat1", "halo"))
        msg = await ev.wait_for(MessageReceived, lambda e: e.text == "halo")
        assert msg.conversation == "chat1"
        await conn.send({"type": "file_upload_completed", "organization_id": "org1", "doc_id": "d"})
        await ev.wait_for(Ignored, lambda e: e.kind == "file_upload_completed")


@pytest.mark.asyncio
async def test_org_commands_over_rest() -> None:
    async with _server() as server:
        server.chats.append(org_chat("taken", handled_by="human", human_id="someone-else"))
        async with running(org_rig(server)) as rig:
            ev = rig.events
            await ev.wait_state(CONNECTED)

            take = TakeOver(conversation="chat1")
            rig.client.submit(take)
            await ev.wait_for(CommandSucceeded, lambda e: e.command_id == take.command_id)
            change = await ev.wait_for(AssignmentChanged, lambda e: e.conversation == "chat1")
            assert change.is_me

            conflict = TakeOver(conversation="taken")
            rig.client.submit(conflict)
            fail = await ev.wait_for(CommandFailed, lambda e: e.command_id == conflict.command_id)
            # Read before assigning (the real assign has no conflict check): never sent.
            assert fail.reason is FailureReason.ALREADY_ASSIGNED
            assert fail.text == "another agent is already handling this customer"
            assert server.requests_to("GET", "/crm/chats/taken")
            assert not server.requests_to("PUT", "/crm/chats/taken/assign")

            reply = SendReply(conversation="chat1", text="Selamat pagi")
            rig.client.submit(reply)
            done = await ev.wait_for(CommandSucceeded, lambda e: e.command_id == reply.command_id)
            assert done.message_id
            (post,) = server.requests_to("POST", "/crm/chats/chat1/messages")
            assert post.headers["Content-Type"].startswith("multipart/form-data")
            assert post.form == {
                "sender_type": "agent",
                "sender_id": server.user_id,
                "content": "Selamat pagi",
            }
            echo = await ev.wait_for(MessageReceived, lambda e: e.message_id == done.message_id)
            assert echo.text == "Selamat pagi"

            missing = SendReply(conversation="nochat", text="hello?")
            rig.client.submit(missing)
            fail = await ev.wait_for(CommandFailed, lambda e: e.command_id == missing.command_id)
            assert fail.reason is FailureReason.NOT_FOUND

            release = Release(conversation="chat1")
            rig.client.submit(release)
            await ev.wait_for(CommandSucceeded, lambda e: e.command_id == release.command_id)
            assert server.requests_to("PUT", "/crm/chats/chat1/assign")[-1].json() == {
                "assigned_agent_id": "ai-1",
                "assigned_to_me": False,
            }

            resolve = Resolve(conversation="chat1")
            rig.client.submit(resolve)
            await ev.wait_for(CommandSucceeded, lambda e: e.command_id == resolve.command_id)
            assert server.requests_to("PUT", "/crm/chats/chat1/resolve")


@pytest.mark.asyncio
async def test_org_token_refresh_on_rest_401_and_handshake_403() -> None:
    async with _server() as server, running(org_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        # The access token stops being accepted: REST 401 -> refresh grant -> retried once.
        server.tokens.clear()
        take = TakeOver(conversation="chat1", force=True)  # one call: the assign itself
        rig.client.submit(take)
        await ev.wait_for(CommandSucceeded, lambda e: e.command_id == take.command_id)
        assert server.grants == ["password", "refresh_token"]
        assert len(server.requests_to("PUT", "/crm/chats/chat1/assign")) == 2
        # Again, then the socket drops: the handshake's 403 triggers one refresh.
        server.tokens.clear()
        mark = ev.mark()
        await server.drop_all()
        await ev.wait_state(CONNECTED, after=mark)
        assert server.grants == ["password", "refresh_token", "refresh_token"]
        assert server.rejected == 1


@pytest.mark.asyncio
async def test_org_expired_token_refreshed_before_use() -> None:
    async with _server() as server:
        server.token_lifetime = 30.0  # inside the 60 s refresh margin: refreshed at every use
        async with running(org_rig(server)) as rig:
            await rig.events.wait_state(CONNECTED)
            assert server.grants[0] == "password"
            assert server.grants[1:]
            assert set(server.grants[1:]) == {"refresh_token"}


@pytest.mark.asyncio
async def test_org_auth_expiry_ends_in_auth_required_without_retry_storm() -> None:
    async with _server() as server, running(org_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        server.revoke_all()
        server.password = "changed"
        mark = ev.mark()
        await server.drop_all()
        change = await ev.wait_state(ConnectionState.AUTH_REQUIRED, after=mark)
        assert change.detail == "Wrong e-mail or password."
        assert server.handshakes == 2
        assert server.rejected == 1
        assert server.grants == ["password", "refresh_token", "password"]
        rig.client._auth.set_password("changed")  # type: ignore[attr-defined]
        rig.client.reauthenticate()
        await ev.wait_state(CONNECTED, after=mark)
        assert server.handshakes == 3
        assert server.grants[-1] == "password"


@pytest.mark.asyncio
async def test_org_pasted_token_cannot_be_refreshed() -> None:
    async with _server() as server:
        pasted = make_jwt(server.user_id, exp=time.time() + 3600)
        server.tokens.add(pasted)
        async with running(org_rig(server, password=None, token=pasted)) as rig:
            await rig.events.wait_state(CONNECTED)
            assert server.grants == []
            server.tokens.clear()
            mark = rig.events.mark()
            await server.drop_all()
            change = await rig.events.wait_state(ConnectionState.AUTH_REQUIRED, after=mark)
            assert "pasted token" in change.detail
            assert server.handshakes == 2
            assert server.grants == []


@pytest.mark.asyncio
async def test_org_periodic_resync_and_half_open_recovery() -> None:
    async with _server() as server:
        rig = org_rig(server, resync_interval=0.05, heartbeat_interval=0.05, heartbeat_timeout=0.5)
        async with running(rig):
            ev = rig.events
            await ev.wait_state(CONNECTED)
            await ev.wait_count(WaitingListPage, 3)  # the initial resync and two periodic ones
            conn = await server.next_connection()
            mark = ev.mark()
            conn.silent = True  # the zombie socket of O10: no pong, no ping
            change = await ev.wait_state(ConnectionState.RECONNECTING, after=mark)
            assert change.detail == "no answer to the heartbeat"
            await ev.wait_state(CONNECTED, after=mark)
            assert len(server.connections) == 2


@pytest.mark.asyncio
async def test_org_reply_queued_during_restart_is_posted_once() -> None:
    async with _server() as server, running(org_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        mark = ev.mark()
        await server.go_down()
        await ev.wait_state(ConnectionState.RECONNECTING, after=mark)
        reply = SendReply(conversation="chat2", text="sorry for the wait")
        rig.client.submit(reply)
        await server.come_up()
        await ev.wait_state(CONNECTED, after=mark)
        await ev.wait_for(CommandSucceeded, lambda e: e.command_id == reply.command_id)
        assert server.message_posts == 1


@pytest.mark.asyncio
async def test_org_secrets_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = _server()
    server.password = "correct horse battery staple"
    async with server, running(org_rig(server, password=server.password)) as rig:
        await rig.events.wait_state(CONNECTED)
        server.tokens.clear()
        mark = rig.events.mark()
        await server.drop_all()
        await rig.events.wait_state(CONNECTED, after=mark)
        take = TakeOver(conversation="chat1")
        rig.client.submit(take)
        await rig.events.wait_for(CommandSucceeded, lambda e: e.command_id == take.command_id)
        secrets = {*rig.secrets.values.values(), server.password}
        secrets |= {conn.request.query["token"] for conn in server.connections}
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage()
        for secret in secrets:
            assert secret not in text, f"secret in log line {record.name}: {text[:80]}"


@pytest.mark.asyncio
async def test_org_message_sent_while_reconnecting_is_caught_up_once() -> None:
    # Issue 15: the real server replays nothing; a customer message sent during the reconnect is
    # visible afterwards only as the chat's last_message_at in the resync list.
    async with _server() as server, running(org_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        (conn,) = server.connections
        await conn.send(server.new_message("chat1", "halo", message_id="m-1"))
        await ev.wait_for(MessageReceived, lambda e: e.message_id == "m-1")
        server.messages["chat1"] = [
            org_message("chat1", "m-1", "halo", "2026-03-01T10:00:00+00:00"),
            org_message("chat1", "m-2", "masih di sana?", "2026-03-01T10:05:00+00:00"),
        ]
        server.chats[1]["last_message_at"] = "2026-03-01T10:05:00+00:00"
        mark = ev.mark()
        await server.drop_all()  # m-2 was written while nobody listened
        await ev.wait_state(CONNECTED, after=mark)
        missed = await ev.wait_for(MessageReceived, lambda e: e.message_id == "m-2")
        assert (missed.conversation, missed.text, missed.sender.value) == (
            "chat1",
            "masih di sana?",
            "customer",
        )
        # Another resync finds nothing new: nothing is fetched or delivered twice.
        rig.client.request_resync("test")
        await ev.wait_count(WaitingListPage, 3)
        (conn,) = server.live()
        await conn.send(server.new_message("chat2", "sentinel", message_id="m-3"))
        await ev.wait_for(MessageReceived, lambda e: e.message_id == "m-3")
        assert [e.message_id for e in ev.of(MessageReceived)] == ["m-1", "m-2", "m-3"]
        assert len(server.requests_to("GET", "/crm/chats/chat1/messages")) == 1


@pytest.mark.asyncio
async def test_org_resync_page_read_before_my_take_over_names_it_as_changed_live() -> None:
    # The org resync reads its pages over REST, apart from the socket: a page built before my
    # take-over but answered after it must say so, or its row would undo the take-over.
    async with _server() as server, running(org_rig(server)) as rig:
        ev = rig.events
        await ev.wait_state(CONNECTED)
        built, release = asyncio.Event(), asyncio.Event()

        async def held(record: RecordedRequest) -> web.StreamResponse:
            response = server._chats(record)
            built.set()
            with contextlib.suppress(TimeoutError):  # a failed test must not hang the server
                await asyncio.wait_for(release.wait(), 10)
            return response

        server.routes[("GET", "/crm/chats")] = held
        mark = ev.mark()
        rig.client.submit(RefreshWaitingList(limit=100))
        await asyncio.wait_for(built.wait(), 5)
        take = TakeOver(conversation="chat1")
        rig.client.submit(take)
        await ev.wait_for(CommandSucceeded, lambda e: e.command_id == take.command_id)
        release.set()
        page = await ev.wait_for(WaitingListPage, lambda e: True, after=mark)
        assert page.changed_live == frozenset({"chat1"})
        # The pages read after the take-over are the truth again: nothing to mark.
        server.routes.pop(("GET", "/crm/chats"))
        mark = ev.mark()
        rig.client.submit(RefreshWaitingList(limit=100))
        page = await ev.wait_for(WaitingListPage, lambda e: True, after=mark)
        assert page.changed_live == frozenset()
