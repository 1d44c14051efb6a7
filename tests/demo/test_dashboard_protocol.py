"""The demo dashboard server against PROTOCOL.md section 2, driven by plain websockets/aiohttp clients."""

from __future__ import annotations

import json
import re
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.demo.conftest import EpochClock, agent, control, login, open_socket, recv, recv_type, ws_url
from tray_agent.demo.dashboard import DashboardBackend
from tray_agent.demo.server import DemoServer

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$")
PAGE_1, PAGE_2, GLOBEX_PAGE = "101000000000001", "101000000000002", "202000000000001"
CUSTOMER_KEYS = {
    "id",
    "customer_id",
    "customer_name",
    "page_id",
    "page_name",
    "company_id",
    "message_count",
    "last_seen",
    "first_seen",
    "stop",
    "is_assigned",
    "created_at",
    "updated_at",
}


def dashboard(server: DemoServer) -> DashboardBackend:
    backend = server.backend
    assert isinstance(backend, DashboardBackend)
    return backend


def assert_customer(obj: dict[str, Any]) -> None:
    assert obj.keys() >= CUSTOMER_KEYS
    for key in ("last_seen", "first_seen", "created_at", "updated_at", "stopped_at", "assigned_at"):
        if key in obj:
            assert RFC3339.match(obj[key]), (key, obj[key])


def assert_envelope(frame: dict[str, Any], type_: str, page_id: str) -> dict[str, Any]:
    assert frame["type"] == type_
    assert frame["page_id"] == page_id
    assert type(frame["timestamp"]) is int
    assert type(frame["data"]["timestamp"]) is int
    assert set(frame) == {"type", "page_id", "data", "timestamp"}
    data: dict[str, Any] = frame["data"]
    return data


async def ping_pong(ws: ClientConnection) -> None:
    """Prove that nothing else was queued before: the next frame after a ping is the pong."""
    await ws.send(json.dumps({"type": "ping"}))
    assert await recv(ws) == {"type": "pong"}


async def waiting_customer(http: aiohttp.ClientSession, server: DemoServer, **params: Any) -> tuple[str, str]:
    """A customer who asked for a human: (page_id, customer_id)."""
    result = await control(http, server, "ask_for_human", **params)
    page_id, _, customer_id = result["customer"]["ref"].partition("/")
    return page_id, customer_id


# ---------------------------------------------------------------------- /auth
@pytest.mark.asyncio
async def test_login_sets_session_cookie(dashboard_server: DemoServer, http: aiohttp.ClientSession) -> None:
    alice = agent(dashboard_server, "alice@acme.test")
    async with http.post(
        dashboard_server.url + "/auth/login",
        json={"email": alice.email, "password": alice.password, "company_id": "acme"},
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
        cookie_header = resp.headers["Set-Cookie"]
        date = parsedate_to_datetime(resp.headers["Date"])
    assert body["message"] == "Login successful"
    assert set(body["user"]) == {
        "id",
        "username",
        "email",
        "first_name",
        "last_name",
        "company_id",
        "role",
        "is_active",
        "last_login",
        "created_at",
        "updated_at",
    }
    assert body["user"]["id"] == alice.user_id
    assert body["user"]["company_id"] == "acme"
    value = re.match(r"session=([0-9a-f]+);", cookie_header)
    assert value is not None
    assert len(value.group(1)) == 64
    attrs = {part.strip().split("=")[0].lower(): part for part in cookie_header.split(";")[1:]}
    assert "httponly" in attrs
    assert attrs["path"].strip() == "Path=/"
    assert attrs["samesite"].strip() == "SameSite=Lax"
    assert "secure" not in attrs
    expires = parsedate_to_datetime(attrs["expires"].split("=", 1)[1])
    # Expires is the (fake) server clock + 24 h; the Date header is the real clock.
    assert abs((expires - date).total_seconds() - 86400) < 120


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("origin", "secure"),
    [
        ("http://evil.example", True),
        ("https://x.ngrok.app", True),
        ("http://127.0.0.1:1", False),
        (None, False),
    ],
)
async def test_login_cookie_secure_quirk(
    dashboard_server: DemoServer, http: aiohttp.ClientSession, origin: str | None, secure: bool
) -> None:
    headers = {"Origin": origin} if origin else {}
    async with http.post(
        dashboard_server.url + "/auth/login",
        json={"email": "alice@acme.test", "password": "alice-demo", "company_id": "acme"},
        headers=headers,
    ) as resp:
        cookie = resp.headers["Set-Cookie"]
    assert ("Secure" in cookie) is secure
    assert ("SameSite=None" in cookie) is secure
    assert ("SameSite=Lax" in cookie) is not secure


@pytest.mark.asyncio
async def test_login_errors(dashboard_server: DemoServer, http: aiohttp.ClientSession) -> None:
    dashboard(dashboard_server).add_agent("off@acme.test", "pw", "acme", is_active=False)
    url = dashboard_server.url + "/auth/login"
    cases: list[tuple[Any, int, str]] = [
        ("not json", 400, "Invalid request body"),
        (
            {"email": "alice@acme.test", "password": "alice-demo"},
            400,
            "Email, password, and company_id are required",
        ),
        ({"email": "alice@acme.test", "password": "wrong", "company_id": "acme"}, 401, "Invalid credentials"),
        (
            {"email": "alice@acme.test", "password": "alice-demo", "company_id": "globex"},
            401,
            "Invalid credentials",
        ),
        ({"email": "off@acme.test", "password": "pw", "company_id": "acme"}, 401, "Account is disabled"),
    ]
    for body, status, error in cases:
        kwargs: dict[str, Any] = (
            {"data": body, "headers": {"Content-Type": "application/json"}}
            if isinstance(body, str)
            else {"json": body}
        )
        async with http.post(url, **kwargs) as resp:
            assert resp.status == status
            assert await resp.json() == {"error": error}
            assert "Set-Cookie" not in resp.headers


@pytest.mark.asyncio
async def test_check_and_logout(dashboard_server: DemoServer, http: aiohttp.ClientSession) -> None:
    url = dashboard_server.url
    async with http.get(url + "/auth/check") as resp:
        assert await resp.json() == {"authenticated": False}
    token = await login(http, dashboard_server)
    cookie = {"Cookie": f"session={token}"}
    async with http.get(url + "/auth/check", headers=cookie) as resp:
        body = await resp.json()
    alice = agent(dashboard_server, "alice@acme.test")
    assert body == {
        "authenticated": True,
        "user_id": alice.user_id,
        "username": "alice",
        "email": "alice@acme.test",
        "company_id": "acme",
        "role": "human_agent",
    }
    async with http.post(url + "/auth/logout", headers=cookie) as resp:
        assert await resp.json() == {"message": "Logged out successfully"}
    async with http.get(url + "/auth/check", headers=cookie) as resp:
        assert await resp.json() == {"authenticated": False}
    with pytest.raises(InvalidStatus) as info:
        await connect(ws_url(dashboard_server), additional_headers=cookie)
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body or b"") == {"error": "Invalid or expired session"}


# ---------------------------------------------------------------------- handshake
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("cookie", "error"),
    [(None, "Authentication required"), ("0" * 64, "Invalid or expired session")],
)
async def test_ws_handshake_401(dashboard_server: DemoServer, cookie: str | None, error: str) -> None:
    headers = {"Cookie": f"session={cookie}"} if cookie else {}
    with pytest.raises(InvalidStatus) as info:
        await connect(ws_url(dashboard_server), additional_headers=headers)
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body or b"") == {"error": error}


@pytest.mark.asyncio
async def test_ws_non_upgrade_get_is_426(dashboard_server: DemoServer, http: aiohttp.ClientSession) -> None:
    token = await login(http, dashboard_server)
    async with http.get(
        dashboard_server.url + "/api/dashboard/ws", headers={"Cookie": f"session={token}"}
    ) as resp:
        assert resp.status == 426
        assert await resp.json() == {"error": "Upgrade Required"}


@pytest.mark.asyncio
async def test_session_slides_on_http_only(
    dashboard_server: DemoServer, http: aiohttp.ClientSession, clock: EpochClock
) -> None:
    url = dashboard_server.url
    token = await login(http, dashboard_server)
    cookie = {"Cookie": f"session={token}"}
    clock.advance(23 * 3600)
    ws = await open_socket(dashboard_server, token)  # the handshake slides the session
    clock.advance(23 * 3600)
    for _ in range(3):
        await ping_pong(ws)  # socket traffic does not slide it
    clock.advance(2 * 3600)
    async with http.get(url + "/auth/check", headers=cookie) as resp:
        assert await resp.json() == {"authenticated": False}
    await ping_pong(ws)  # the open socket is never re-checked
    await ws.close()
    token = await login(http, dashboard_server)
    cookie = {"Cookie": f"session={token}"}
    clock.advance(23 * 3600)
    async with http.get(url + "/api/dashboard/pages", headers=cookie) as resp:
        assert resp.status == 200
    clock.advance(23 * 3600)
    async with http.get(url + "/api/dashboard/pages", headers=cookie) as resp:
        assert resp.status == 200
    clock.advance(25 * 3600)
    async with http.get(url + "/api/dashboard/pages", headers=cookie) as resp:
        assert resp.status == 401
        assert await resp.json() == {"error": "Invalid or expired session"}


# ---------------------------------------------------------------------- commands
@pytest.mark.asyncio
async def test_connected_ping_subscribe_and_ignored_frames(
    dashboard_server: DemoServer, http: aiohttp.ClientSession
) -> None:
    token = await login(http, dashboard_server)
    async with connect(ws_url(dashboard_server), additional_headers={"Cookie": f"session={token}"}) as ws:
        first = await recv(ws)
        assert first == {
            "type": "connected",
            "message": "WebSocket connection established",
            "user_id": agent(dashboard_server, "alice@acme.test").user_id,
        }
        await ws.send(json.dumps({"type": "subscribe", "page_id": PAGE_1}))
        await ws.send("{not json")
        await ws.send(json.dumps({"type": "no_such_command"}))
        await ws.send(json.dumps([1, 2]))
        await ws.send(json.dumps({"type": 5}))
        await ping_pong(ws)  # none of the above produced a reply


@pytest.mark.asyncio
async def test_get_stopped_customers(
    dashboard_server: DemoServer, http: aiohttp.ClientSession, clock: EpochClock
) -> None:
    await control(http, dashboard_server, "preload", count=60)
    clock.advance(90)
    token = await login(http, dashboard_server)
    async with await open_socket(dashboard_server, token) as ws:
        await ws.send(json.dumps({"type": "get_stopped_customers"}))
        frame = await recv(ws)
        assert set(frame) == {"type", "data", "timestamp"}
        assert frame["type"] == "stopped_customers"
        assert type(frame["timestamp"]) is int
        data = frame["data"]
        assert data["page_id"] == ""
        assert data["pagination"] == {"total": 60, "limit": 50, "skip": 0, "has_more": True}
        customers = data["customers"]
        assert len(customers) == 50
        for item in customers:
            assert_customer(item)
            assert item["stop"] is True
            assert item["is_assigned"] is False
            assert item["is_assigned_to_me"] is False
            assert type(item["minutes_since_last_conversation"]) is int
            assert item["time_since_last_conversation"].endswith(" ago")
        stopped = [c["stopped_at"] for c in customers]
        assert stopped == sorted(stopped, reverse=True)
        assert customers[0]["time_since_last_conversation"] == "2 minutes ago"
        assert customers[0]["minutes_since_last_conversation"] == 2
        assert customers[-1]["time_since_last_conversation"] == "51 minutes ago"

        for limit in (0, -3, 201):
            await ws.send(json.dumps({"type": "get_stopped_customers", "data": {"limit": limit, "skip": 55}}))
            frame = await recv(ws)
            assert frame["data"]["pagination"] == {"total": 60, "limit": 50, "skip": 55, "has_more": False}
            assert len(frame["data"]["customers"]) == 5
        await ws.send(
            json.dumps({"type": "get_stopped_customers", "data": {"page_id": PAGE_2, "limit": 200}})
        )
        frame = await recv(ws)
        assert frame["data"]["page_id"] == PAGE_2
        assert {c["page_id"] for c in frame["data"]["customers"]} == {PAGE_2}
        assert frame["data"]["pagination"]["total"] == 30
        await ws.send(json.dumps({"type": "get_stopped_customers", "data": "garbage"}))
        assert (await recv(ws))["data"]["pagination"]["limit"] == 50  # malformed data: defaults
        await ws.send(json.dumps({"type": "get_stopped_customers", "data": {"page_id": GLOBEX_PAGE}}))
        assert await recv(ws) == {"type": "error", "error": "Page not found or access denied"}
        await ws.send(json.dumps({"type": "get_stopped_customers", "data": {"skip": -1}}))
        assert await recv(ws) == {"type": "error", "error": "Failed to retrieve stopped customers"}


@pytest.mark.asyncio
async def test_escalation_broadcast_sequence(
    dashboard_server: DemoServer, http: aiohttp.ClientSession
) -> None:
    token = await login(http, dashboard_server)
    async with await open_socket(dashboard_server, token) as ws:
        result = await control(http, dashboard_server, "new_customer", name="Budi Santoso", language="id")
        page_id, _, psid = result["customer"]["ref"].partition("/")
        await control(
            http, dashboard_server, "customer_writes", customer=result["customer"]["ref"], text="Halo"
        )
        data = assert_envelope(await recv(ws), "new_message", page_id)
        assert data == {
            "chat_id": psid,
            "sender_id": psid,
            "sender_name": "Budi Santoso",
            "recipient_id": page_id,
            "message": "Halo",
            "is_bot": False,
            "timestamp": data["timestamp"],
        }
        await control(http, dashboard_server, "bot_replies", customer=result["customer"]["ref"], text="Hai!")
        data = assert_envelope(await recv(ws), "new_message", page_id)
        assert data["is_bot"] is True
        assert data["sender_id"] == page_id
        assert data["recipient_id"] == psid
        assert data["sender_name"] == "Acme Travel Indonesia"
        assert data["message"] == "Hai!"

        await control(
            http, dashboard_server, "ask_for_human", customer=result["customer"]["ref"], text="Mau admin"
        )
        customer_msg = assert_envelope(await recv(ws), "new_message", page_id)
        assert customer_msg["message"] == "Mau admin"
        assert "requires_human" not in customer_msg
        requested = assert_envelope(await recv(ws), "agent_requested", page_id)
        assert requested == {
            "chat_id": psid,
            "customer_name": "Budi Santoso",
            "message": "Mau admin",
            "timestamp": requested["timestamp"],
        }
        status = assert_envelope(await recv(ws), "customer_stop_status_changed", page_id)
        assert status["stop"] is True
        assert_customer(status["customer"])
        assert status["customer"]["stop"] is True
        assert RFC3339.match(status["customer"]["stopped_at"])
        bot = assert_envelope(await recv(ws), "new_message", page_id)
        assert bot["is_bot"] is True
        assert bot["message"] == ""  # G8: the cleared bot reply is still broadcast
        # In human mode the customer's messages carry requires_human and the bot stays quiet.
        await control(
            http, dashboard_server, "customer_writes", customer=result["customer"]["ref"], text="Halo?"
        )
        again = assert_envelope(await recv(ws), "new_message", page_id)
        assert again["requires_human"] is True
        await control(
            http, dashboard_server, "bot_replies", customer=result["customer"]["ref"], text="ignored"
        )
        await ping_pong(ws)
        for frame_data in (customer_msg, requested, bot, again):
            assert not {"id", "message_id", "mid", "_id"} & frame_data.keys()  # G7: no ids


@pytest.mark.asyncio
async def test_assign_and_unassign(dashboard_server: DemoServer, http: aiohttp.ClientSession) -> None:
    alice = agent(dashboard_server, "alice@acme.test")
    bob_token = await login(http, dashboard_server, "bob@acme.test")
    token = await login(http, dashboard_server)
    async with (
        await open_socket(dashboard_server, token) as ws,
        await open_socket(dashboard_server, bob_token) as bob,
    ):
        page_id, psid = await waiting_customer(http, dashboard_server)
        calm = await control(http, dashboard_server, "customer_writes", text="not waiting")
        calm_page, _, calm_id = calm["customer"]["ref"].partition("/")
        for sock in (ws, bob):
            for _ in range(5):  # the escalation's four frames and the calm customer's message
                await recv(sock)

        cases: list[tuple[Any, str]] = [
            (None, "customer_id and page_id are required"),
            ("text", "Invalid request data"),
            ([1], "Invalid request data"),
            ({"customer_id": 5, "page_id": page_id}, "Invalid request data"),
            ({"customer_id": psid}, "customer_id and page_id are required"),
            ({"customer_id": psid, "page_id": GLOBEX_PAGE}, "Page not found or access denied"),
            ({"customer_id": "nobody", "page_id": page_id}, "Customer not found"),
            ({"customer_id": calm_id, "page_id": calm_page}, "Customer has not requested human assistance"),
        ]
        for data, error in cases:
            frame: dict[str, Any] = {"type": "assign_agent", "customer_id": psid, "page_id": page_id}
            if data is not None:
                frame["data"] = data
            await ws.send(json.dumps(frame))
            assert await recv(ws) == {"type": "error", "error": error}

        await ws.send(
            json.dumps({"type": "unassign_agent", "data": {"customer_id": psid, "page_id": page_id}})
        )
        assert await recv(ws) == {"type": "error", "error": "You are not assigned to this customer"}

        await ws.send(json.dumps({"type": "assign_agent", "data": {"customer_id": psid, "page_id": page_id}}))
        direct = await recv(ws)
        assert set(direct) == {"type", "data", "timestamp"}
        assert direct["type"] == "agent_assigned"
        assert direct["data"]["agent_id"] == alice.user_id
        assert direct["data"]["agent_email"] == ""  # G9
        assert direct["data"]["agent_name"] == ""
        assert direct["data"]["customer"]["agent_id"] == alice.user_id
        assert "agent_email" not in direct["data"]["customer"]  # omitempty
        for sock in (ws, bob):
            changed = assert_envelope(
                await recv_type(sock, "agent_assignment_changed"), "agent_assignment_changed", page_id
            )
            assert changed["action"] == "assigned"
            assert changed["customer_id"] == psid
            assert changed["agent_id"] == alice.user_id
            assert changed["agent_email"] == ""
            assert changed["agent_name"] == ""
            assert changed["customer"]["is_assigned"] is True

        # Re-assigning to yourself succeeds; someone else hits the empty-email error text.
        await ws.send(json.dumps({"type": "assign_agent", "data": {"customer_id": psid, "page_id": page_id}}))
        assert (await recv(ws))["type"] == "agent_assigned"
        await bob.send(
            json.dumps({"type": "assign_agent", "data": {"customer_id": psid, "page_id": page_id}})
        )
        assert await recv_type(bob, "error") == {"type": "error", "error": "Customer is already assigned to "}
        await bob.send(
            json.dumps({"type": "unassign_agent", "data": {"customer_id": psid, "page_id": page_id}})
        )
        assert await recv_type(bob, "error") == {
            "type": "error",
            "error": "You are not assigned to this customer",
        }

        await ws.send(
            json.dumps({"type": "unassign_agent", "data": {"customer_id": psid, "page_id": page_id}})
        )
        direct = await recv_type(ws, "agent_unassigned")
        assert set(direct) == {"type", "data", "timestamp"}
        assert set(direct["data"]) == {"customer"}
        assert "agent_id" not in direct["data"]["customer"]
        changed = assert_envelope(
            await recv_type(bob, "agent_assignment_changed"), "agent_assignment_changed", page_id
        )
        assert set(changed) == {"customer_id", "customer", "action", "timestamp"}
        assert changed["action"] == "unassigned"


@pytest.mark.asyncio
async def test_send_message(dashboard_server: DemoServer, http: aiohttp.ClientSession) -> None:
    alice = agent(dashboard_server, "alice@acme.test")
    token = await login(http, dashboard_server)
    bob_token = await login(http, dashboard_server, "bob@acme.test")
    async with (
        await open_socket(dashboard_server, token) as ws,
        await open_socket(dashboard_server, bob_token) as bob,
    ):
        page_id, psid = await waiting_customer(http, dashboard_server)
        calm = await control(http, dashboard_server, "customer_writes", text="hello bot")
        calm_page, _, calm_id = calm["customer"]["ref"].partition("/")
        missing = "Missing required fields: customer_id, page_id, and message"
        cases = [
            ({"customer_id": psid, "page_id": page_id}, missing),
            ({"customer_id": psid, "page_id": page_id, "message": ""}, missing),
            (
                {"customer_id": psid, "page_id": GLOBEX_PAGE, "message": "x"},
                "Page not found in company configuration",
            ),
            ({"customer_id": "nobody", "page_id": page_id, "message": "x"}, "Customer not found"),
            (
                {"customer_id": calm_id, "page_id": calm_page, "message": "x"},
                "Customer has not requested human assistance",
            ),
        ]
        for fields, error in cases:
            await ws.send(json.dumps({"type": "send_message", **fields}))
            assert await recv_type(ws, "error") == {"type": "error", "error": error}
        # The payload is top-level (G6): inside data it is "missing".
        await ws.send(
            json.dumps(
                {"type": "send_message", "data": {"customer_id": psid, "page_id": page_id, "message": "x"}}
            )
        )
        assert (await recv_type(ws, "error"))["error"].startswith("Missing required fields")

        await ws.send(
            json.dumps(
                {"type": "send_message", "customer_id": psid, "page_id": page_id, "message": "Hi, Alice here"}
            )
        )
        frames = [await recv(ws) for _ in range(3)]
        by_type = {f["type"]: f for f in frames}
        assert set(by_type) == {
            "agent_assignment_changed",
            "message_sent",
            "new_message",
        }  # no agent_assigned
        assert by_type["message_sent"] == {
            "type": "message_sent",
            "customer_id": psid,
            "page_id": page_id,
            "message": "Hi, Alice here",
            "timestamp": by_type["message_sent"]["timestamp"],
        }
        assert type(by_type["message_sent"]["timestamp"]) is int
        msg = assert_envelope(by_type["new_message"], "new_message", page_id)
        assert msg == {
            "chat_id": psid,
            "sender_id": page_id,
            "recipient_id": psid,
            "message": "Hi, Alice here",
            "is_bot": False,
            "is_human": True,
            "agent_id": alice.user_id,
            "agent_email": "",
            "agent_name": "",
            "timestamp": msg["timestamp"],
        }
        for _ in range(5):  # the escalation's four frames and the calm customer's message
            await recv(bob)
        assert (await recv(bob))["type"] == "agent_assignment_changed"
        assert (await recv(bob))["data"]["message"] == "Hi, Alice here"
        await bob.send(
            json.dumps({"type": "send_message", "customer_id": psid, "page_id": page_id, "message": "Bob"})
        )
        assert await recv_type(bob, "error") == {"type": "error", "error": "Customer is already assigned to "}

        dashboard(dashboard_server).send_failure = "page token expired"
        await ws.send(
            json.dumps({"type": "send_message", "customer_id": psid, "page_id": page_id, "message": "lost"})
        )
        assert await recv_type(ws, "error") == {
            "type": "error",
            "error": "Failed to send message to customer",
        }


@pytest.mark.asyncio
async def test_companies_kept_apart(dashboard_server: DemoServer, http: aiohttp.ClientSession) -> None:
    carol_token = await login(http, dashboard_server, "carol@globex.test")
    token = await login(http, dashboard_server)
    async with (
        await open_socket(dashboard_server, carol_token) as carol,
        await open_socket(dashboard_server, token) as ws,
    ):
        await waiting_customer(http, dashboard_server)
        await recv_type(ws, "agent_requested")
        await ping_pong(carol)
        result = await control(http, dashboard_server, "ask_for_human", tenant="globex")
        assert result["customer"]["channel"] == GLOBEX_PAGE
        assert (await recv(carol))["page_id"] == GLOBEX_PAGE


# ---------------------------------------------------------------------- one socket per user
@pytest.mark.asyncio
async def test_second_socket_steals_broadcasts_and_old_cleanup_kills_it(
    dashboard_server: DemoServer, http: aiohttp.ClientSession
) -> None:
    token = await login(http, dashboard_server)
    old = await open_socket(dashboard_server, token)
    new = await open_socket(dashboard_server, token)
    await control(http, dashboard_server, "customer_writes", text="hello")
    assert (await recv(new))["type"] == "new_message"
    await ping_pong(old)  # the old socket only gets direct replies now
    await old.close()
    with pytest.raises(ConnectionClosed) as info:
        await recv(new)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1005  # the empty Close frame (G4)


# ---------------------------------------------------------------------- transport quirks
@pytest.mark.asyncio
async def test_full_queue_drops_broadcasts_silently(tmp_path: Any, http: aiohttp.ClientSession) -> None:
    options = {"ping_interval": 3600.0, "read_timeout": 3600.0, "queue_size": 4}
    async with DemoServer("dashboard", db_path=tmp_path / "q.sqlite3", backend_options=options) as server:
        token = await login(http, server)
        async with await open_socket(server, token) as ws:
            backend = dashboard(server)
            # No await between the calls: the socket's writer cannot drain, the queue fills.
            queued = [backend.broadcast("acme", "test_frame", {"n": i, "timestamp": 0}) for i in range(10)]
            assert queued == [1] * 4 + [0] * 6
            assert [(await recv(ws))["data"]["n"] for _ in range(4)] == [0, 1, 2, 3]
            await ping_pong(ws)
            assert backend.broadcasts_dropped == 6


@pytest.mark.asyncio
async def test_oversized_frame_closes_1009(dashboard_server: DemoServer, http: aiohttp.ClientSession) -> None:
    token = await login(http, dashboard_server)
    ws = await open_socket(dashboard_server, token)
    await ws.send(json.dumps({"type": "ping", "pad": "x" * 512 * 1024}))
    with pytest.raises(ConnectionClosed) as info:
        await recv(ws)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009


@pytest.mark.asyncio
async def test_protocol_ping_and_read_deadline(tmp_path: Any, http: aiohttp.ClientSession) -> None:
    options = {"ping_interval": 0.1, "read_timeout": 0.6}
    async with DemoServer("dashboard", db_path=tmp_path / "p.sqlite3", backend_options=options) as server:
        token = await login(http, server)
        url = ws_url(server)
        async with http.ws_connect(url, headers={"Cookie": f"session={token}"}, autoping=False) as ws:
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "connected"
            # Server Pings arrive on the ticker; we never answer and send nothing: dropped (1006).
            kinds = []
            while True:
                msg = await ws.receive(timeout=5)
                kinds.append(msg.type)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
            assert aiohttp.WSMsgType.PING in kinds
            assert aiohttp.WSMsgType.CLOSE not in kinds  # no close frame: the TCP connection just ends
        # A client that answers the Pings stays connected well past the 0.6 s deadline.
        async with http.ws_connect(url, headers={"Cookie": f"session={token}"}, autoping=False) as ws:
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "connected"
            for _ in range(12):
                msg = await ws.receive(timeout=5)
                assert msg.type is aiohttp.WSMsgType.PING
                await ws.pong(msg.data)
            await ws.send_str(json.dumps({"type": "ping"}))
            while (msg := await ws.receive(timeout=5)).type is aiohttp.WSMsgType.PING:
                await ws.pong(msg.data)
            assert json.loads(msg.data) == {"type": "pong"}


@pytest.mark.asyncio
async def test_silent_and_speak_again(dashboard_server: DemoServer, http: aiohttp.ClientSession) -> None:
    token = await login(http, dashboard_server)
    async with await open_socket(dashboard_server, token) as ws:
        await control(http, dashboard_server, "silent", on=True)
        await ws.send(json.dumps({"type": "ping"}))
        await control(http, dashboard_server, "customer_writes", text="unheard")
        with pytest.raises(TimeoutError):
            await recv(ws, wait=0.3)
        await control(http, dashboard_server, "silent", on=False)
        await ping_pong(ws)


@pytest.mark.asyncio
async def test_drop_sockets_and_refuse_upgrades(
    dashboard_server: DemoServer, http: aiohttp.ClientSession
) -> None:
    token = await login(http, dashboard_server)
    ws = await open_socket(dashboard_server, token)
    assert (await control(http, dashboard_server, "drop_sockets")) == {"dropped": 1}
    with pytest.raises(ConnectionClosed) as info:
        await recv(ws)
    assert info.value.rcvd is None  # abrupt: no close frame (1006)
    await control(http, dashboard_server, "refuse_upgrades", on=True)
    with pytest.raises(InvalidStatus) as refused:
        await connect(ws_url(dashboard_server), additional_headers={"Cookie": f"session={token}"})
    assert refused.value.response.status_code == 426
    async with http.get(
        dashboard_server.url + "/api/dashboard/pages", headers={"Cookie": f"session={token}"}
    ) as r:
        assert r.status == 200
    await control(http, dashboard_server, "refuse_upgrades", on=False)
    async with await open_socket(dashboard_server, token):
        pass


# ---------------------------------------------------------------------- REST (section 2.6)
async def rest(
    http: aiohttp.ClientSession, server: DemoServer, token: str, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(
        method, server.url + "/api/dashboard" + path, headers={"Cookie": f"session={token}"}, **kwargs
    ) as resp:
        return resp.status, await resp.json()


@pytest.mark.asyncio
async def test_rest_requires_session(dashboard_server: DemoServer, http: aiohttp.ClientSession) -> None:
    async with http.get(dashboard_server.url + "/api/dashboard/customers") as resp:
        assert resp.status == 401
        assert await resp.json() == {"error": "Authentication required"}
    status, body = await rest(http, dashboard_server, "f" * 64, "GET", "/pages")
    assert (status, body) == (401, {"error": "Invalid or expired session"})


@pytest.mark.asyncio
async def test_rest_pages_customers_search_stats(
    dashboard_server: DemoServer, http: aiohttp.ClientSession
) -> None:
    token = await login(http, dashboard_server)
    carol = await login(http, dashboard_server, "carol@globex.test")
    status, body = await rest(http, dashboard_server, token, "GET", "/pages")
    assert status == 200
    assert body["pages"] == [
        {"page_id": PAGE_1, "page_name": "Acme Shoes", "is_active": True},
        {"page_id": PAGE_2, "page_name": "Acme Travel Indonesia", "is_active": True},
    ]
    # G13: an empty list is null.
    status, body = await rest(http, dashboard_server, carol, "GET", "/customers")
    assert body["customers"] is None
    assert body["company_id"] == "globex"
    assert body["pagination"] == {"page": 1, "limit": 50, "total": 0, "total_pages": 0, "has_more": False}

    await control(http, dashboard_server, "preload", count=7)
    await control(http, dashboard_server, "new_customer", name="Zed Unique")
    status, body = await rest(
        http, dashboard_server, token, "GET", "/customers", params={"page": "2", "limit": "3"}
    )
    assert status == 200
    assert len(body["customers"]) == 3
    assert body["pagination"] == {"page": 2, "limit": 3, "total": 8, "total_pages": 3, "has_more": True}
    for item in body["customers"]:
        assert_customer(item)
    status, body = await rest(http, dashboard_server, token, "GET", "/customers", params={"page_id": PAGE_2})
    assert body["page_id"] == PAGE_2
    assert {c["page_id"] for c in body["customers"]} == {PAGE_2}
    status, body = await rest(
        http, dashboard_server, token, "GET", "/customers", params={"page_id": GLOBEX_PAGE}
    )
    assert (status, body) == (403, {"error": "Page not found or access denied"})

    status, body = await rest(
        http, dashboard_server, token, "GET", "/customers/search", params={"q": "zed uni"}
    )
    assert status == 200
    assert body["query"] == "zed uni"
    assert body["count"] == 1
    assert body["customers"][0]["customer_name"] == "Zed Unique"
    status, body = await rest(
        http, dashboard_server, token, "GET", "/customers/search", params={"q": "nobody"}
    )
    assert body == {"query": "nobody", "customers": None, "count": 0}
    status, body = await rest(http, dashboard_server, token, "GET", "/customers/search")
    assert (status, body) == (400, {"error": "Search query is required"})
    status, body = await rest(http, dashboard_server, token, "GET", "/customers/stats")
    assert status == 200
    assert body["stopped_customers"] == 7
    assert body["total_customers"] == 8


@pytest.mark.asyncio
async def test_rest_customer_and_history_orders(
    dashboard_server: DemoServer, http: aiohttp.ClientSession
) -> None:
    token = await login(http, dashboard_server)
    result = await control(http, dashboard_server, "customer_writes", text="first")
    ref = result["customer"]["ref"]
    page_id, _, psid = ref.partition("/")
    await control(http, dashboard_server, "bot_replies", customer=ref, text="second")
    await control(http, dashboard_server, "ask_for_human", customer=ref, text="third")
    status, body = await rest(
        http,
        dashboard_server,
        token,
        "POST",
        f"/customers/{psid}/message",
        json={"page_id": page_id, "message": "fourth"},
    )
    assert status == 200, body

    status, body = await rest(
        http, dashboard_server, token, "GET", f"/customers/{psid}", params={"page_id": page_id}
    )
    assert status == 200
    assert_customer(body["customer"])
    assert body["customer"]["customer_id"] == psid
    status, body = await rest(http, dashboard_server, token, "GET", f"/customers/{psid}")
    assert (status, body) == (400, {"error": "Page ID is required"})
    status, body = await rest(
        http, dashboard_server, token, "GET", "/customers/nobody", params={"page_id": page_id}
    )
    assert (status, body) == (404, {"error": "Customer not found"})

    status, body = await rest(
        http, dashboard_server, token, "GET", f"/messages/conversation/{psid}", params={"page_id": page_id}
    )
    assert status == 200
    # The Go handler answers under "conversation" (not "messages"), newest first, with the names.
    assert "messages" not in body
    assert body["customer_id"] == psid
    assert body["page_id"] == page_id
    assert body["customer_name"]
    assert body["page_name"]
    newest_first = [m["message"] for m in body["conversation"]]
    assert newest_first == ["fourth", "", "third", "second", "first"]
    assert [m["type"] for m in body["conversation"]] == ["bot", "bot", "customer", "bot", "customer"]
    agent_msg = body["conversation"][0]
    assert agent_msg["is_human"] is True
    assert agent_msg["agent_id"] == agent(dashboard_server, "alice@acme.test").user_id
    assert agent_msg["agent_email"] == ""
    for m in body["conversation"]:
        assert RFC3339.match(m["timestamp"])
        assert isinstance(m["id"], str)
    status, body = await rest(
        http, dashboard_server, token, "GET", f"/messages/chat/{psid}", params={"page_id": page_id}
    )
    assert status == 200
    assert [m["message"] for m in body["messages"]] == ["first", "second", "third", "", "fourth"]
    assert body["messages"][0]["sender_name"]
    assert "is_human" not in body["messages"][0]
    status, body = await rest(http, dashboard_server, token, "GET", f"/messages/page/{page_id}/chats")
    assert body["chats"][0]["chat_id"] == psid
    status, body = await rest(
        http, dashboard_server, token, "GET", "/messages", params={"page_id": page_id, "sender_id": psid}
    )
    assert [m["message"] for m in body["messages"]] == ["third", "first"]


@pytest.mark.asyncio
async def test_rest_send_message_errors_and_no_assignment_broadcast(
    dashboard_server: DemoServer, http: aiohttp.ClientSession
) -> None:
    token = await login(http, dashboard_server)
    bob = await login(http, dashboard_server, "bob@acme.test")
    page_id, psid = await waiting_customer(http, dashboard_server)
    calm = await control(http, dashboard_server, "customer_writes", text="hello")
    calm_page, _, calm_id = calm["customer"]["ref"].partition("/")
    path = f"/customers/{psid}/message"
    cases: list[tuple[str, str, Any, int, str]] = [
        (token, path, {"page_id": page_id}, 400, "Page ID and message are required"),
        (token, path, {"page_id": GLOBEX_PAGE, "message": "x"}, 403, "Page not found or access denied"),
        (token, "/customers/nobody/message", {"page_id": page_id, "message": "x"}, 404, "Customer not found"),
        (token, f"/customers/{calm_id}/message", {"page_id": calm_page, "message": "x"}, 400,
         "Customer has not requested human assistance. Set stop=true first."),
    ]  # fmt: skip
    for who, url, body, status, error in cases:
        assert await rest(http, dashboard_server, who, "POST", url, json=body) == (status, {"error": error})

    async with await open_socket(dashboard_server, bob) as ws:
        status, body = await rest(
            http, dashboard_server, token, "POST", path, json={"page_id": page_id, "message": "hi"}
        )
        assert status == 200
        assert body == {
            "message": "Message sent successfully",
            "data": {
                "customer_id": psid,
                "page_id": page_id,
                "message": "hi",
                "agent": "",
                "timestamp": body["data"]["timestamp"],
            },
        }
        assert type(body["data"]["timestamp"]) is int
        frame = await recv(ws)  # the auto-assignment is NOT broadcast: the message comes first
        msg = assert_envelope(frame, "new_message", page_id)
        assert msg["is_human"] is True
        assert msg["message"] == "hi"
    status, body = await rest(
        http, dashboard_server, bob, "POST", path, json={"page_id": page_id, "message": "x"}
    )
    assert (status, body) == (
        403,
        {"error": "Customer is already assigned to . Only the assigned agent can send messages."},
    )
    dashboard(dashboard_server).send_failure = "token expired"
    status, body = await rest(
        http, dashboard_server, token, "POST", path, json={"page_id": page_id, "message": "x"}
    )
    assert (status, body) == (
        500,
        {"error": "Failed to send message to customer: token expired", "details": "token expired"},
    )


@pytest.mark.asyncio
async def test_rest_status_endpoints_broadcast(
    dashboard_server: DemoServer, http: aiohttp.ClientSession
) -> None:
    token = await login(http, dashboard_server)
    bob = await login(http, dashboard_server, "bob@acme.test")
    result = await control(http, dashboard_server, "customer_writes", text="hello")
    page_id, _, psid = result["customer"]["ref"].partition("/")
    base = f"/customers/{psid}"
    async with await open_socket(dashboard_server, token) as ws:
        status, body = await rest(
            http, dashboard_server, token, "PUT", base + "/stop", json={"page_id": page_id, "stop": True}
        )
        assert status == 200
        assert body["message"] == "Customer status updated successfully"
        data = assert_envelope(await recv(ws), "customer_stop_status_changed", page_id)
        assert data["stop"] is True

        status, body = await rest(
            http, dashboard_server, token, "POST", base + "/toggle-stop", json={"page_id": page_id}
        )
        assert (body["previous_stop"], body["current_stop"]) == (True, False)
        data = assert_envelope(await recv(ws), "customer_stop_status_changed", page_id)
        assert data["stop"] is False  # G12
        await rest(http, dashboard_server, token, "POST", base + "/toggle-stop", json={"page_id": page_id})
        await recv(ws)

        status, body = await rest(
            http,
            dashboard_server,
            token,
            "PUT",
            base + "/agent",
            json={"page_id": page_id, "agent_name": "Alice A."},
        )
        assert status == 200
        assert body["customer"]["agent_name"] == "Alice A."

        status, body = await rest(
            http,
            dashboard_server,
            token,
            "PUT",
            base + "/assignment",
            json={"page_id": page_id, "is_assigned": True},
        )
        assert status == 200
        data = assert_envelope(await recv(ws), "customer_assignment_updated", page_id)
        assert set(data) == {"customer_id", "customer", "is_assigned", "timestamp"}
        assert data["is_assigned"] is True

        # Bob takes the customer over the socket path (REST send auto-assigns), then only he can unassign.
        await rest(
            http,
            dashboard_server,
            bob,
            "POST",
            base + "/message",
            json={"page_id": page_id, "message": "Bob"},
        )
        await recv(ws)
        status, body = await rest(
            http, dashboard_server, token, "DELETE", base + "/agent", json={"page_id": page_id}
        )
        assert (status, body) == (403, {"error": "Only the assigned agent or an admin can unassign"})
        status, body = await rest(
            http, dashboard_server, bob, "DELETE", base + "/agent", json={"page_id": page_id}
        )
        assert status == 200
        assert body["message"] == "Agent unassigned successfully"
        data = assert_envelope(await recv(ws), "agent_status_changed", page_id)
        assert set(data) == {"customer_id", "customer", "action", "agent_email", "timestamp"}
        assert data["action"] == "unassigned"
        assert data["agent_email"] == "bob@acme.test"

        for method, suffix, body_json, status_code, error in [
            ("PUT", "/stop", {"stop": True}, 400, "Page ID is required"),
            ("PUT", "/stop", {"page_id": page_id, "stop": "yes"}, 400, "Invalid request body"),
            ("PUT", "/stop", {"page_id": GLOBEX_PAGE, "stop": True}, 403, "Page not found or access denied"),
        ]:
            assert await rest(http, dashboard_server, token, method, base + suffix, json=body_json) == (
                status_code,
                {"error": error},
            )
        assert await rest(
            http,
            dashboard_server,
            token,
            "PUT",
            "/customers/nobody/stop",
            json={"page_id": page_id, "stop": True},
        ) == (404, {"error": "Customer not found"})


@pytest.mark.asyncio
async def test_preloaded_messages_carry_their_waiting_time(
    dashboard_server: DemoServer, http: aiohttp.ClientSession, clock: EpochClock
) -> None:
    await control(http, dashboard_server, "preload", count=3)
    clock.advance(600)
    token = await login(http, dashboard_server)
    status, body = await rest(http, dashboard_server, token, "GET", "/customers", params={"limit": "10"})
    assert status == 200
    for customer in body["customers"]:
        status, history = await rest(
            http,
            dashboard_server,
            token,
            "GET",
            f"/messages/conversation/{customer['customer_id']}",
            params={"page_id": customer["page_id"]},
        )
        assert status == 200
        [message] = history["conversation"]
        # The customer's words were written when they started waiting, not when the demo started.
        assert message["timestamp"] == customer["stopped_at"] == customer["last_seen"]
