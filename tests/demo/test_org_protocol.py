"""The org dialect's wire behaviour (PROTOCOL.md §1), driven with plain websockets/aiohttp clients."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.demo.org_fixtures import (
    API_TS,
    DB_TS,
    NAIVE_TS,
    OrgServer,
    ServerFactory,
    make_org_server,
    org_server,
    recv_json,
    recv_until,
    stop,
)
from tray_agent.demo import jwt

__all__ = ["make_org_server", "org_server"]  # fixtures re-exported for pytest

NEW_MESSAGE_KEYS = {
    "chat_id", "message_id", "customer_id", "customer_name", "message_content", "channel", "handled_by",
    "sender_type", "sender_id", "sender_name", "is_new_chat", "was_reopened", "metadata", "attachment",
    "created_at", "ai_agent_id", "ai_agent_name", "assigned_agent_id", "human_agent_id", "human_agent_name",
    "id", "status", "unread_count", "last_message_at", "last_message",
}  # fmt: skip
CHAT_KEYS = {
    "id", "organization_id", "customer_id", "customer_name", "assigned_agent_id", "agent_name", "ai_agent_id",
    "ai_agent_name", "human_agent_id", "human_id", "human_agent_name", "handled_by", "escalated_at",
    "escalation_reason", "status", "channel", "unread_count", "last_message_at", "last_message", "created_at",
    "resolved_at", "resolved_by_agent_id", "updated_at", "metadata",
}  # fmt: skip
MESSAGE_KEYS = {
    "id", "chat_id", "sender_type", "sender_id", "sender_name", "content", "ticket_id", "metadata",
    "created_at", "updated_at",
}  # fmt: skip


async def welcome(ws) -> dict:
    frame = await recv_json(ws)
    assert frame["type"] == "connection_established"
    return frame


# ---------------------------------------------------------------------------------------------
# token endpoint


@pytest.mark.asyncio
async def test_org_token_password_grant_answers_like_supabase(org_server: OrgServer):
    agent = org_server.agent(org_server.org1)
    session = await org_server.login(agent.email)
    assert session["token_type"] == "bearer"
    assert session["expires_in"] == 3600
    assert session["user"]["id"] == agent.user_id
    assert session["user"]["email"] == agent.email
    assert session["refresh_token"]
    claims = jwt.decode_hs256(
        session["access_token"],
        org_server.info.extra["jwt_secret"],
        audience="authenticated",
        now=session["expires_at"] - 10,
    )
    assert claims["sub"] == agent.user_id
    assert claims["exp"] == session["expires_at"]
    assert claims["role"] == "authenticated"


@pytest.mark.asyncio
async def test_org_token_errors(org_server: OrgServer):
    email = org_server.agent(org_server.org1).email
    async with await org_server.grant("password", {"email": email, "password": "wrong"}) as resp:
        assert resp.status == 400
        assert await resp.json() == {
            "error": "invalid_grant",
            "error_description": "Invalid login credentials",
        }
    async with await org_server.grant("password", {"email": "who@x.y", "password": "demo1234"}) as resp:
        assert resp.status == 400
    async with await org_server.grant(
        "password", {"email": email, "password": "demo1234"}, apikey=None
    ) as resp:
        assert resp.status == 401
        assert await resp.json() == {"message": "No API key found in request"}
    async with await org_server.grant(
        "password", {"email": email, "password": "demo1234"}, apikey="nope"
    ) as resp:
        assert resp.status == 401
        assert await resp.json() == {"message": "Invalid API key"}
    async with await org_server.grant("magic", {}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "unsupported_grant_type"


@pytest.mark.asyncio
async def test_org_refresh_tokens_rotate_and_are_single_use(org_server: OrgServer):
    first = await org_server.login(org_server.agent(org_server.org1).email)
    async with await org_server.grant("refresh_token", {"refresh_token": first["refresh_token"]}) as resp:
        assert resp.status == 200
        second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    async with await org_server.grant("refresh_token", {"refresh_token": first["refresh_token"]}) as resp:
        assert resp.status == 400
        assert await resp.json() == {
            "error": "invalid_grant",
            "error_description": "Invalid Refresh Token: Already Used",
        }
    async with await org_server.grant("refresh_token", {"refresh_token": "unknown"}) as resp:
        assert resp.status == 400
        assert "Not Found" in (await resp.json())["error_description"]
    status, _ = await org_server.api("GET", "/crm/chats", second["access_token"])
    assert status == 200


# ---------------------------------------------------------------------------------------------
# handshake


async def assert_handshake_status(url: str, status: int) -> bytes:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, open_timeout=5):
            pass
    assert caught.value.response.status_code == status
    return caught.value.response.body or b""


@pytest.mark.asyncio
async def test_org_handshake_is_403_with_empty_body_for_every_auth_problem(org_server: OrgServer):
    secret = org_server.info.extra["jwt_secret"]
    good = await org_server.token(org_server.org1)
    claims = jwt.decode_hs256(good, secret, audience="authenticated", now=0, verify_exp=False)
    no_org_session = await org_server.login(org_server.info.extra["user_without_org"])
    bad_tokens = [
        None,
        "garbage",
        jwt.encode_hs256(claims, "another-secret"),
        jwt.encode_hs256({**claims, "aud": "anon"}, secret),
        jwt.encode_hs256({**claims, "exp": claims["iat"] - 1}, secret),
        jwt.encode_hs256({k: v for k, v in claims.items() if k != "sub"}, secret),
        jwt.encode_hs256(claims, secret, headers={"alg": "HS512"}),
        no_org_session["access_token"],
    ]
    for token in bad_tokens:
        assert await assert_handshake_status(org_server.ws_url(org_server.org1, token), 403) == b""
    # a valid token for the wrong org
    assert await assert_handshake_status(org_server.ws_url(org_server.org2, good), 403) == b""


@pytest.mark.asyncio
async def test_org_handshake_rejects_a_token_after_expiry_but_open_socket_survives(
    make_org_server: ServerFactory,
):
    server = await make_org_server(access_token_ttl=60)
    token = await server.token(server.org1)
    async with connect(server.ws_url(server.org1, token)) as ws:
        await welcome(ws)
        server.clock.advance(61)
        await assert_handshake_status(server.ws_url(server.org1, token), 403)
        status, body = await server.api("GET", "/crm/chats", token)
        assert (status, body["detail"]) == (401, "Token has expired")
        # the open socket is never re-checked
        await ws.send('{"type":"ping"}')
        assert (await recv_json(ws))["type"] == "pong"


@pytest.mark.asyncio
async def test_org_connection_established_counts_sockets_of_the_org(org_server: OrgServer):
    token1 = await org_server.token(org_server.org1)
    token2 = await org_server.token(org_server.org1, 1)
    async with connect(org_server.ws_url(org_server.org1, token1)) as ws1:
        first = await welcome(ws1)
        assert first == {
            "type": "connection_established",
            "message": f"Connected to organization {org_server.org1}",
            "connection_count": 1,
        }
        async with connect(org_server.ws_url(org_server.org1, token2)) as ws2:
            assert (await welcome(ws2))["connection_count"] == 2
            status, stats = await org_server.api("GET", "/ws/stats", None)
            assert status == 200
            assert stats["connections_by_organization"] == {org_server.org1: 2}


@pytest.mark.asyncio
async def test_org_refused_upgrades_answer_502_while_rest_works(make_org_server: ServerFactory):
    server = await make_org_server()
    token = await server.token(server.org1)
    server.backend.set_refuse_upgrades(True)
    await assert_handshake_status(server.ws_url(server.org1, token), 502)
    status, _ = await server.api("GET", "/crm/chats", token)
    assert status == 200
    server.backend.set_refuse_upgrades(False)
    async with connect(server.ws_url(server.org1, token)) as ws:
        await welcome(ws)


# ---------------------------------------------------------------------------------------------
# client frames and keepalive


@pytest.mark.asyncio
async def test_org_ping_pong_echo_and_idle_ping(org_server: OrgServer):
    token = await org_server.token(org_server.org1)
    async with connect(org_server.ws_url(org_server.org1, token)) as ws:
        await welcome(ws)
        await ws.send('{"type":"ping"}')
        pong = await recv_until(ws, lambda f: f["type"] != "ping")  # skip a racing idle keepalive
        assert set(pong) == {"type", "timestamp"}
        assert pong["type"] == "pong"
        assert NAIVE_TS.match(pong["timestamp"])
        await ws.send("hello there")
        assert await recv_json(ws) == {"type": "echo", "data": "hello there"}
        raw = '{"type": "send_message", "text": "x"}'
        await ws.send(raw)
        assert await recv_json(ws) == {"type": "echo", "data": raw}
        await ws.send('{"type":"pong"}')  # ignored: only resets the idle timer
        ping = await recv_json(ws)
        assert ping["type"] == "ping"
        assert ping["message"] == "keepalive"
        assert NAIVE_TS.match(ping["timestamp"])
        # the server keeps pinging a silent client and never drops it
        assert (await recv_json(ws))["type"] == "ping"
        # protocol-level ping is answered
        pong_waiter = await ws.ping()
        await asyncio.wait_for(pong_waiter, 5)


@pytest.mark.asyncio
@pytest.mark.parametrize("frame", [b"\x00\x01binary", "[1, 2]", "null", '"text"'])
async def test_org_binary_or_non_object_json_drops_the_connection(org_server: OrgServer, frame):
    token = await org_server.token(org_server.org1)
    async with connect(org_server.ws_url(org_server.org1, token)) as ws:
        await welcome(ws)
        await ws.send(frame)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert (await org_server.api("GET", "/ws/stats", None))[1]["total_connections"] == 0


@pytest.mark.asyncio
async def test_org_zombie_socket_gets_no_app_frames_but_answers_protocol_pings(org_server: OrgServer):
    token = await org_server.token(org_server.org1)
    customer = await org_server.backend.new_customer(tenant=org_server.org1)
    async with connect(org_server.ws_url(org_server.org1, token)) as zombie:
        await welcome(zombie)
        assert org_server.backend.make_zombie(tenant=org_server.org1) == 1
        async with connect(org_server.ws_url(org_server.org1, token)) as healthy:
            assert (await welcome(healthy))["connection_count"] == 1
            await zombie.send('{"type":"ping"}')
            await org_server.backend.customer_writes(customer, "halo")
            assert (await recv_json(healthy))["type"] == "new_message"
            await asyncio.wait_for(await zombie.ping(), 5)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(zombie.recv(), 0.8)  # > ping_after: no JSON ping either


@pytest.mark.asyncio
async def test_org_silent_server_sends_nothing_not_even_protocol_pongs(org_server: OrgServer):
    token = await org_server.token(org_server.org1)
    async with connect(org_server.ws_url(org_server.org1, token)) as ws:
        await welcome(ws)
        org_server.backend.set_silent(True)
        await ws.send('{"type":"ping"}')
        waiter = await ws.ping()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), 0.5)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.1)
        org_server.backend.set_silent(False)
        await ws.send('{"type":"ping"}')
        frame = await recv_until(ws, lambda f: f["type"] != "ping")  # skip a racing idle keepalive
        assert frame["type"] == "pong"


@pytest.mark.asyncio
async def test_org_protocol_ping_timeout_drops_a_client_that_does_not_pong(make_org_server: ServerFactory):
    server = await make_org_server(protocol_ping_interval=0.1, protocol_ping_timeout=0.2)
    token = await server.token(server.org1)
    async with connect(server.ws_url(server.org1, token)) as answering:
        await welcome(answering)
        # a client that never answers protocol pings (aiohttp with autoping off)
        async with server.session.ws_connect(server.ws_url(server.org1, token), autoping=False) as mute:
            assert (await mute.receive_json(timeout=5))["type"] == "connection_established"
            kinds = []
            while True:
                msg = await mute.receive(timeout=5)
                kinds.append(msg.type)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
            assert aiohttp.WSMsgType.PING in kinds
        # the client that answers stays connected
        await answering.send('{"type":"ping"}')
        assert (await recv_until(answering, lambda f: f["type"] == "pong"))["type"] == "pong"


@pytest.mark.asyncio
async def test_org_drop_sockets_closes_abruptly(org_server: OrgServer):
    token = await org_server.token(org_server.org1)
    async with connect(org_server.ws_url(org_server.org1, token)) as ws:
        await welcome(ws)
        assert await org_server.backend.drop_sockets() == 1
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 5)
        assert caught.value.rcvd is None  # no close frame


# ---------------------------------------------------------------------------------------------
# server frames


@pytest.mark.asyncio
async def test_org_new_message_shapes_for_customer_ai_and_system_emitters(org_server: OrgServer):
    backend = org_server.backend
    token = await org_server.token(org_server.org1)
    customer = await backend.new_customer(
        tenant=org_server.org1, name="Dewi", language="id", channel="whatsapp"
    )
    async with connect(org_server.ws_url(org_server.org1, token)) as ws:
        await welcome(ws)
        await backend.customer_writes(customer, "Halo, pesanan saya?")
        frame = await recv_json(ws)
        assert set(frame) == {"type", "timestamp", "data"}
        assert NAIVE_TS.match(frame["timestamp"])
        data = frame["data"]
        assert set(data) == NEW_MESSAGE_KEYS
        assert data["sender_type"] == "customer"
        assert data["sender_id"] == data["customer_id"]
        assert data["customer_name"] == data["sender_name"] == "Dewi"
        assert data["message_content"] == "Halo, pesanan saya?"
        assert data["channel"] == "whatsapp"
        assert data["handled_by"] == "ai"
        assert data["is_new_chat"] is True
        assert data["was_reopened"] is False
        assert data["status"] == "open"
        assert data["unread_count"] == 1
        assert data["id"] == data["chat_id"] == customer.ref
        assert NAIVE_TS.match(data["created_at"])  # broadcast time, not the DB time
        assert data["last_message"]["id"] == data["message_id"]
        assert data["attachment"] is None
        assert isinstance(data["metadata"], dict)

        await backend.customer_writes(customer, "lagi")
        assert (await recv_json(ws))["data"]["is_new_chat"] is False

        await backend.bot_replies(customer, "Pesanan Anda sedang dikirim.")
        ai = (await recv_json(ws))["data"]
        assert ai["sender_type"] == "ai"
        assert ai["is_new_chat"] is False
        assert ai["sender_id"] == org_server.info.extra["org1_ai_agent_id"]
        assert DB_TS.match(ai["created_at"])

        await backend.busy_auto_reply(customer, "Kami sedang sibuk.")
        busy = (await recv_json(ws))["data"]
        assert busy["sender_type"] == "ai"
        assert busy["customer_id"] is None
        assert busy["customer_name"] == "Asisten AI"

        await backend.ticket_follow_up(customer, "Apakah masalah Anda sudah selesai?")
        follow = (await recv_json(ws))["data"]
        assert follow["customer_name"] == "System"
        assert isinstance(follow["metadata"], str)
        assert json.loads(follow["metadata"])["type"] == "ticket_follow_up"

        await backend.customer_sends_media(customer, "image", "foto")
        media = (await recv_json(ws))["data"]
        assert media["attachment"]["type"] == "image"
        assert media["attachment"]["name"] == "Media Attachment"

        await backend.emit_document_event(org_server.org1, "file_upload_failed")
        doc = await recv_json(ws)
        assert doc["type"] == "file_upload_failed"
        assert doc["status"] == "failed"
        assert "timestamp" not in doc
        assert "data" not in doc


@pytest.mark.asyncio
async def test_org_whatsapp_split_events_repeat_the_message_id(make_org_server: ServerFactory):
    server = await make_org_server(whatsapp_split_events=True)
    token = await server.token(server.org1)
    customer = await server.backend.new_customer(tenant=server.org1, channel="whatsapp")
    async with connect(server.ws_url(server.org1, token)) as ws:
        await welcome(ws)
        await server.backend.customer_writes(customer, "hi")
        first, second = (await recv_json(ws))["data"], (await recv_json(ws))["data"]
        assert first["message_id"] == second["message_id"]
        assert set(first["metadata"]) < set(second["metadata"])


@pytest.mark.asyncio
async def test_org_lost_events_skip_broadcasts(make_org_server: ServerFactory):
    server = await make_org_server(lost_event_rate=1.0)
    token = await server.token(server.org1)
    customer = await server.backend.new_customer(tenant=server.org1)
    async with connect(server.ws_url(server.org1, token)) as ws:
        await welcome(ws)
        await server.backend.customer_writes(customer, "lost")
        server.backend.set_lost_events(0.0)
        await server.backend.customer_writes(customer, "delivered")
        assert (await recv_json(ws))["data"]["message_content"] == "delivered"
    token = await server.token(server.org1)
    status, body = await server.api("GET", f"/crm/chats/{customer.ref}/messages", token)
    assert status == 200
    assert [m["content"] for m in body["messages"]] == ["delivered", "lost"]


@pytest.mark.asyncio
async def test_org_ask_for_human_escalates_without_an_escalated_update(org_server: OrgServer):
    backend = org_server.backend
    token = await org_server.token(org_server.org1)
    customer = await backend.new_customer(tenant=org_server.org1, channel="telegram")
    async with connect(org_server.ws_url(org_server.org1, token)) as ws:
        await welcome(ws)
        await backend.ask_for_human(customer)
        asked = await recv_json(ws)
        assert asked["data"]["sender_type"] == "customer"
        handoff = await recv_json(ws)
        assert handoff["data"]["sender_type"] == "ai"
        assert handoff["data"]["handled_by"] == "human"
        ticket = await recv_json(ws)
        assert ticket["type"] == "chat_update"
        assert ticket["update_type"] == "ticket_created"
        assert set(ticket["data"]) == {"chat_id", "ticket_id", "ticket_number", "status", "priority"}
        assert ticket["data"]["chat_id"] == customer.ref
        status, chat = await org_server.api("GET", f"/crm/chats/{customer.ref}", token)
        assert chat["handled_by"] == "human"
        assert API_TS.match(chat["escalated_at"])
        assert chat["escalation_reason"]

        status, updated = await org_server.api(
            "PUT", f"/crm/tickets/{ticket['data']['ticket_id']}", token, json={"status": "in_progress"}
        )
        assert status == 200
        assert updated["status"] == "in_progress"
        frame = await recv_json(ws)
        assert frame["update_type"] == "ticket_updated"
        assert frame["data"]["status"] == "in_progress"


# ---------------------------------------------------------------------------------------------
# REST


@pytest.mark.asyncio
async def test_org_rest_auth_errors(org_server: OrgServer):
    assert await org_server.api("GET", "/crm/chats", None) == (403, {"detail": "Not authenticated"})
    status, body = await org_server.api("GET", "/crm/chats", "garbage")
    assert (status, body) == (401, {"detail": "Invalid token"})
    wrong_aud = jwt.encode_hs256(
        {"sub": "x", "email": "e", "aud": "anon"}, org_server.info.extra["jwt_secret"]
    )
    assert await org_server.api("GET", "/crm/chats", wrong_aud) == (401, {"detail": "Invalid token claims"})
    no_org = (await org_server.login(org_server.info.extra["user_without_org"]))["access_token"]
    assert await org_server.api("GET", "/crm/chats", no_org) == (
        400,
        {"detail": "User must belong to an organization"},
    )


@pytest.mark.asyncio
async def test_org_rest_list_chats_filters_sorting_and_validation(org_server: OrgServer):
    backend = org_server.backend
    token = await org_server.token(org_server.org1)
    first = await backend.new_customer(tenant=org_server.org1, name="Zed Alpha", channel="email")
    second = await backend.new_customer(tenant=org_server.org1, name="Yan Beta", channel="web")
    await backend.customer_writes(second, "older")
    await backend.customer_writes(first, "newer")
    status, body = await org_server.api("GET", "/crm/chats", token)
    assert status == 200
    assert body["total"] == 2
    assert [c["id"] for c in body["chats"]] == [first.ref, second.ref]
    chat = body["chats"][0]
    assert set(chat) == CHAT_KEYS
    assert chat["customer_name"] == "Zed Alpha"
    assert chat["ai_agent_name"] == "Asisten AI"
    assert chat["last_message"]["content"] == "newer"
    assert set(chat["last_message"]) == MESSAGE_KEYS
    assert API_TS.match(chat["last_message_at"])

    async def ids(**params):
        status, body = await org_server.api("GET", "/crm/chats", token, params=params)
        assert status == 200, body
        return [c["id"] for c in body["chats"]]

    assert await ids(channel="web") == [second.ref]
    assert await ids(search="Alpha") == [first.ref]
    assert await ids(search="nobody") == []
    assert await ids(status_filter="open") == [first.ref, second.ref]
    assert await ids(status_filter="resolved") == []
    assert await ids(handled_by="ai", limit="1") == [first.ref]
    assert await ids(skip="1") == [second.ref]
    assert await ids(escalated="true") == []
    assert await ids(unassigned="true") == []
    for params, kind in [
        ({"limit": "101"}, "less_than_equal"),
        ({"limit": "0"}, "greater_than_equal"),
        ({"skip": "-1"}, "greater_than_equal"),
        ({"limit": "x"}, "int_parsing"),
        ({"status_filter": "waiting"}, "enum"),
    ]:
        status, body = await org_server.api("GET", "/crm/chats", token, params=params)
        assert status == 422
        assert body["detail"][0]["type"] == kind
        assert body["detail"][0]["loc"][0] == "query"


@pytest.mark.asyncio
async def test_org_orgs_are_kept_apart(org_server: OrgServer):
    backend = org_server.backend
    token1 = await org_server.token(org_server.org1)
    token2 = await org_server.token(org_server.org2)
    mine = await backend.new_customer(tenant=org_server.org1)
    theirs = await backend.new_customer(tenant=org_server.org2)
    async with connect(org_server.ws_url(org_server.org2, token2)) as ws:
        await welcome(ws)
        await backend.customer_writes(mine, "for org 1 only")
        await backend.customer_writes(theirs, "for org 2")
        assert (await recv_json(ws))["data"]["chat_id"] == theirs.ref
    _, body = await org_server.api("GET", "/crm/chats", token2)
    assert [c["id"] for c in body["chats"]] == [theirs.ref]
    assert (await org_server.api("GET", f"/crm/chats/{mine.ref}", token2))[0] == 404
    assert (await org_server.api("GET", f"/crm/chats/{mine.ref}/messages", token2))[0] == 404
    form = aiohttp.FormData({"sender_type": "agent", "sender_id": "x", "content": "hi"})
    assert (await org_server.api("POST", f"/crm/chats/{mine.ref}/messages", token2, data=form))[0] == 404
    assert (await org_server.api("GET", "/crm/customers", token1))[1]["total"] == 1


@pytest.mark.asyncio
async def test_org_rest_message_is_echoed_with_the_same_id(org_server: OrgServer):
    backend = org_server.backend
    token = await org_server.token(org_server.org1)
    agent = org_server.agent(org_server.org1)
    customer = await backend.new_customer(tenant=org_server.org1, channel="whatsapp")
    await backend.customer_writes(customer, "help")
    async with connect(org_server.ws_url(org_server.org1, token)) as ws:
        await welcome(ws)
        form = aiohttp.FormData()
        form.add_field("sender_type", "agent")
        form.add_field("sender_id", agent.user_id)
        form.add_field("content", "Sure, here is the invoice")
        form.add_field("metadata", json.dumps({"client": "tray"}))
        form.add_field("file", b"%PDF-1.4 demo", filename="invoice.pdf", content_type="application/pdf")
        status, message = await org_server.api(
            "POST", f"/crm/chats/{customer.ref}/messages", token, data=form
        )
        assert status == 201
        assert set(message) == MESSAGE_KEYS
        assert message["sender_name"] == "Human Agent"
        assert message["sender_type"] == "agent"
        assert API_TS.match(message["created_at"])
        assert message["metadata"]["client"] == "tray"
        frame = await recv_json(ws)
        data = frame["data"]
        assert data["message_id"] == message["id"]
        assert data["sender_name"] == data["customer_name"] == "Human Agent"
        assert DB_TS.match(data["created_at"])
        assert data["attachment"]["type"] == "application/pdf"
        assert data["attachment"]["name"] == "invoice.pdf"
        async with org_server.session.get(data["attachment"]["url"]) as resp:
            assert await resp.read() == b"%PDF-1.4 demo"
    status, body = await org_server.api("GET", f"/crm/chats/{customer.ref}/messages", token)
    assert body["total"] == 2
    assert [m["sender_name"] for m in body["messages"]] == ["Human Agent", "Customer"]
    status, asc = await org_server.api(
        "GET", f"/crm/chats/{customer.ref}/messages", token, params={"sort_order": "asc", "limit": "1"}
    )
    assert [m["content"] for m in asc["messages"]] == ["help"]
    assert (await backend.agent_messages_since(customer, 0))[0][1] == "Sure, here is the invoice"
    status, body = await org_server.api(
        "POST", f"/crm/chats/{customer.ref}/messages", token, data={"content": "x"}
    )
    assert status == 422
    assert {e["loc"][1] for e in body["detail"]} == {"sender_type", "sender_id"}


@pytest.mark.asyncio
async def test_org_assign_release_escalate_and_resolve(org_server: OrgServer):
    backend = org_server.backend
    token = await org_server.token(org_server.org1)
    ai_id = org_server.info.extra["org1_ai_agent_id"]
    customer = await backend.new_customer(tenant=org_server.org1)
    other = await backend.new_customer(tenant=org_server.org1)
    path = f"/crm/chats/{customer.ref}"
    async with connect(org_server.ws_url(org_server.org1, token)) as ws:
        await welcome(ws)
        status, chat = await org_server.api("PUT", f"{path}/assign", token, json={"assigned_to_me": True})
        assert status == 200
        assert (chat["handled_by"], chat["status"]) == ("human", "assigned")
        assert chat["human_agent_id"] == chat["assigned_agent_id"]
        assert chat["customer_name"] is None  # the assign response is the raw row
        mine = chat["human_agent_id"]
        status, body = await org_server.api("PUT", f"{path}/assign", token, json={"assigned_to_me": False})
        assert (status, body) == (400, {"detail": "No agent identified for assignment"})
        status, body = await org_server.api(
            "PUT", f"{path}/assign", token, json={"assigned_agent_id": "nope"}
        )
        assert (status, body) == (404, {"detail": "Agent not found"})
        # releasing = handing the chat back to the AI agent
        status, chat = await org_server.api("PUT", f"{path}/assign", token, json={"assigned_agent_id": ai_id})
        assert (chat["handled_by"], chat["assigned_agent_id"], chat["human_agent_id"]) == ("ai", ai_id, mine)

        status, chat = await org_server.api(
            "PUT", f"{path}/escalate", token, json={"human_agent_id": mine, "reason": "VIP"}
        )
        assert status == 200
        assert (chat["handled_by"], chat["status"], chat["escalation_reason"]) == ("human", "assigned", "VIP")
        assert API_TS.match(chat["escalated_at"])
        assert chat["human_agent_name"] == chat["agent_name"] == org_server.agent(org_server.org1).name
        status, body = await org_server.api("PUT", f"{path}/escalate", token, json={"human_agent_id": mine})
        assert status == 409
        other_path = f"/crm/chats/{other.ref}"
        status, body = await org_server.api(
            "PUT", f"{other_path}/escalate", token, json={"human_agent_id": ai_id}
        )
        assert status == 400
        assert (await org_server.api("PUT", f"{other_path}/escalate", token, json={}))[0] == 422
        status, _ = await org_server.api(
            "PUT", "/crm/chats/missing/escalate", token, json={"human_agent_id": mine}
        )
        assert status == 404

        await backend.customer_writes(customer, "thanks, bye")
        # assign/escalate broadcast nothing: the next new_message is the first news of them, and
        # it carries the new handler and agent ids (PROTOCOL.md 5).
        frame = await recv_json(ws)
        assert frame["type"] == "new_message"
        data = frame["data"]
        assert (data["handled_by"], data["human_agent_id"], data["assigned_agent_id"]) == (
            "human",
            mine,
            mine,
        )
        assert data["human_agent_name"] == org_server.agent(org_server.org1).name
        status, chat = await org_server.api("PUT", f"{path}/resolve", token)
        assert (status, chat["status"], chat["resolved_by_agent_id"]) == (200, "resolved", mine)
        frame = await recv_json(ws)
        assert (frame["type"], frame["update_type"]) == ("chat_update", "chat_resolved")
        assert frame["data"]["chat_id"] == frame["data"]["id"] == customer.ref
        assert frame["data"]["status"] == "resolved"
        assert frame["data"]["last_message"]["content"] == "thanks, bye"
        assert DB_TS.match(frame["data"]["resolved_at"])
        status, _ = await org_server.api("PUT", f"{path}/escalate", token, json={"human_agent_id": mine})
        assert status == 400

        await backend.customer_writes(customer, "one more thing")
        reopened = (await recv_json(ws))["data"]
        assert reopened["was_reopened"] is True
        await backend.customer_leaves(customer)
        assert (await recv_json(ws))["update_type"] == "chat_resolved"


@pytest.mark.asyncio
async def test_org_create_chat_with_and_without_initial_message(org_server: OrgServer):
    token = await org_server.token(org_server.org1)
    async with connect(org_server.ws_url(org_server.org1, token)) as ws:
        await welcome(ws)
        status, chat = await org_server.api(
            "POST",
            "/crm/chats",
            token,
            json={"contact": "0812999", "customer_name": "Rina", "channel": "whatsapp"},
        )
        assert status == 201
        assert set(chat) == CHAT_KEYS
        frame = await recv_json(ws)
        assert (frame["type"], frame["update_type"]) == ("chat_update", "chat_created")
        assert frame["data"]["chat_id"] == frame["data"]["id"] == chat["id"]
        assert frame["data"]["organization_id"] == org_server.org1

        status, chat2 = await org_server.api(
            "POST",
            "/crm/chats",
            token,
            json={
                "contact": "a@b.c",
                "channel": "email",
                "initial_message": "Hello!",
                "assigned_agent_id": "me",
            },
        )
        assert status == 201
        assert chat2["handled_by"] == "human"
        data = (await recv_json(ws))["data"]
        assert data["is_new_chat"] is True
        assert data["sender_name"] == "Human Agent"
        status, history = await org_server.api("GET", f"/crm/chats/{chat2['id']}/messages", token)
        assert [m["content"] for m in history["messages"]] == ["Hello!"]
        assert history["messages"][0]["id"] != data["message_id"]  # quirk O7
        assert (await org_server.api("POST", "/crm/chats", token, json={"channel": "fax"}))[0] == 422


@pytest.mark.asyncio
async def test_org_customers_endpoints(org_server: OrgServer):
    token = await org_server.token(org_server.org1)
    customer = await org_server.backend.new_customer(tenant=org_server.org1, name="Agus", channel="telegram")
    status, body = await org_server.api("GET", "/crm/customers", token, params={"search": "Agu"})
    assert status == 200
    assert body["total"] == 1
    customer_id = body["customers"][0]["id"]
    status, one = await org_server.api("GET", f"/crm/customers/{customer_id}", token)
    assert (one["name"], one["organization_id"]) == ("Agus", customer.tenant)
    assert "telegram_id" in one["metadata"]
    assert (await org_server.api("GET", "/crm/customers/nope", token))[1] == {
        "detail": "Customer with ID nope not found"
    }


# ---------------------------------------------------------------------------------------------
# persistence and bulk


@pytest.mark.asyncio
async def test_org_restart_on_the_same_db_loses_nothing(make_org_server: ServerFactory):
    server = await make_org_server("shared.sqlite3")
    session = await server.login(server.agent(server.org1).email)
    customer = await server.backend.new_customer(tenant=server.org1, name="Putri")
    await server.backend.customer_writes(customer, "kept")
    form = aiohttp.FormData({"sender_type": "agent", "sender_id": "x", "content": "also kept"})
    status, sent = await server.api(
        "POST", f"/crm/chats/{customer.ref}/messages", session["access_token"], data=form
    )
    assert status == 201
    org1 = server.org1
    await stop(server)

    again = await make_org_server("shared.sqlite3")
    assert again.org1 == org1
    assert [c.ref for c in again.backend.customers()] == [customer.ref]
    async with await again.grant("refresh_token", {"refresh_token": session["refresh_token"]}) as resp:
        assert resp.status == 200
        token = (await resp.json())["access_token"]
    status, body = await again.api("GET", f"/crm/chats/{customer.ref}/messages", token)
    assert [m["content"] for m in body["messages"]] == ["also kept", "kept"]
    assert body["messages"][0]["id"] == sent["id"]


@pytest.mark.asyncio
async def test_org_preload_inserts_waiting_chats(org_server: OrgServer):
    await org_server.backend.preload(10_000, tenant=org_server.org2)
    token = await org_server.token(org_server.org2)
    status, body = await org_server.api(
        "GET", "/crm/chats", token, params={"limit": "100", "escalated": "true"}
    )
    assert status == 200
    assert body["total"] == 10_000
    assert len(body["chats"]) == 100
    assert all(c["handled_by"] == "human" and c["status"] == "open" for c in body["chats"])
    assert len(org_server.backend.customers()) == 10_000
