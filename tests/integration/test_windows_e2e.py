"""End to end: the sign-in dialog, the inbox and chat windows against the in-process demo backend.

Both dialects. The app's objects are wired as ``tray_agent/app.py`` does (see
``tests/integration/e2e_rig.py``); the agent's side goes through the widgets only, the customer's
and other agents' sides through the demo's control API and plain REST calls.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from PySide6.QtCore import Qt

from tests.helpers.net_clients import FAST
from tests.integration.e2e_rig import (
    DIALECTS,
    LIMITED_TIMINGS,
    MINE,
    WAITING,
    confirmed,
    delivered,
    my_replies,
    timings_for,
    until,
    windows_rig,
)
from tray_agent.core.events import CommandKind, ConnectionState
from tray_agent.core.state import CommandState
from tray_agent.demo.base import DemoAgent
from tray_agent.demo.server import DemoServer
from tray_agent.ui.models import is_online

pytestmark = [pytest.mark.integration, pytest.mark.gui]


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_sign_in_take_over_reply_and_release(qtbot, tmp_path: Path, dialect: str) -> None:
    async with DemoServer(dialect) as server, windows_rig(server, dialect, tmp_path) as rig:
        inbox = await rig.sign_in(qtbot)
        key = await rig.escalate("I want a person")
        await rig.take_over(qtbot, inbox, key)

        chat = rig.windows.open_chat(key)
        await server.control("customer_writes", customer=key, text="Hello? <b>anyone</b>")
        await until(lambda: any(r.text == "Hello? <b>anyone</b>" for r in chat.model.records))
        rig.type_reply(qtbot, chat, "Hi, I am here")
        await until(lambda: confirmed(chat, "Hi, I am here"), what="reply confirmed")
        assert chat.handler_text == "You are handling this customer."
        assert await delivered(server, key) == ["Hi, I am here"]

        # The customer answers and the exchange goes on, each side seeing the other once.
        await server.control("customer_writes", customer=key, text="Great, my order is late")
        await until(lambda: any(r.text == "Great, my order is late" for r in chat.model.records))
        rig.type_reply(qtbot, chat, "Let me check that for you")
        await until(lambda: confirmed(chat, "Let me check that for you"), what="second reply confirmed")
        assert await delivered(server, key) == ["Hi, I am here", "Let me check that for you"]
        assert sum(1 for r in chat.model.records if r.text == "Great, my order is late") == 1

        qtbot.mouseClick(chat.release_button, Qt.MouseButton.LeftButton)
        await until(lambda: not rig.store.state.conversation(key).assigned, what="released")
        await until(lambda: inbox.proxies[MINE].row_of(key) == -1, what="gone from Mine")
        assert not rig.store.state.conversation(key).assigned_to_me
        assert rig.not_sent == []


async def another_agent_takes(server: DemoServer, agent: DemoAgent, key: str, how: str) -> None:
    """``agent`` takes the customer with plain REST / WebSocket calls, unseen by my client.

    ``rest_reply``: he replies over REST; the server assigns the customer to him and, like the
    real server, broadcasts no ``agent_assignment_changed``.
    ``missed_broadcast``: he sends ``assign_agent`` on his own WebSocket while the server's
    sockets are silent, so the broadcast that would have told my client is lost (as a full
    socket queue loses it, G10); the test waits until the server has him as the assignee.
    """
    page_id, _, customer_id = key.partition("/")
    jar = aiohttp.CookieJar(unsafe=True)  # the session cookie of a 127.0.0.1 server
    async with aiohttp.ClientSession(base_url=server.url, cookie_jar=jar) as http:
        login = {"email": agent.email, "password": agent.password, "company_id": agent.tenant}
        async with http.post("/auth/login", json=login) as response:
            assert response.status == 200, await response.text()
        if how == "rest_reply":
            body = {"page_id": page_id, "message": "I have got this one."}
            async with http.post(f"/api/dashboard/customers/{customer_id}/message", json=body) as response:
                assert response.status == 200, await response.text()
            return
        async with http.ws_connect("/api/dashboard/ws") as ws:
            await server.control("silent", on=True)
            try:
                frame = {"type": "assign_agent", "data": {"customer_id": customer_id, "page_id": page_id}}
                await ws.send_json(frame)

                async def assignee() -> str:
                    query = {"page_id": page_id}
                    async with http.get(f"/api/dashboard/customers/{customer_id}", params=query) as got:
                        return str((await got.json())["customer"].get("agent_id", ""))

                for _ in range(500):  # bounded: at most a few seconds
                    got = await assignee()
                    if got == agent.user_id:
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError(f"the server never assigned the customer to {agent.email}: {got!r}")
            finally:
                await server.control("silent", on=False)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["rest_reply", "missed_broadcast"])
async def test_take_over_conflict_shows_the_banner_and_rolls_back(qtbot, tmp_path: Path, how: str) -> None:
    """Another agent of the company took the customer first: my take-over is refused, not faked.

    Dashboard only. The org server has no conflict semantics: ``PUT /crm/chats/{id}/assign``
    never refuses (it silently re-assigns the chat to whoever asks, and broadcasts nothing; see
    ``tray_agent/demo/org.py``), so there is no refusal for the app to report.

    On the dashboard the other agent (Bob, same company) takes the customer in a way my client
    does not see (:func:`another_agent_takes`), so my inbox still offers Take over. Had my client
    seen his ``assign_agent`` broadcast, the button would be disabled before I could click it.
    """
    async with DemoServer("dashboard") as server, windows_rig(server, "dashboard", tmp_path) as rig:
        me = server.info.agents[0]
        other = next(a for a in server.info.agents if a.tenant == me.tenant and a.email != me.email)
        inbox = await rig.sign_in(qtbot, me)
        key = await rig.escalate("Is anybody there?")
        await until(lambda: inbox.proxies[WAITING].row_of(key) >= 0, what="customer waiting")
        await another_agent_takes(server, other, key, how)
        assert rig.store.state.conversation(key).assigned is False  # nothing told us he took it

        inbox.set_current_tab(WAITING)
        assert inbox.select_conversation(key)
        qtbot.mouseClick(inbox.take_over_button, Qt.MouseButton.LeftButton)
        await until(lambda: inbox.conflict_banner.isVisible(), what="conflict banner")

        # The refusal names nobody: "Customer is already assigned to " (the dashboard never
        # stores the assignee's email, PROTOCOL.md G9), so the banner says "another agent".
        name = rig.store.state.conversation(key).customer_name
        assert inbox.conflict_banner.text == f"{name} is already being handled by another agent."
        conv = rig.store.state.conversation(key)
        assert conv.assigned
        assert not conv.assigned_to_me
        assert conv.pending_takeover is None
        await until(lambda: inbox.proxies[MINE].row_of(key) == -1, what="rolled back")
        assert not inbox.take_over_button.isEnabled()
        assert not inbox.release_button.isEnabled()
        takes = [c for c in rig.store.state.outbound.values() if c.kind is CommandKind.TAKE_OVER]
        assert [c.state for c in takes] == [CommandState.FAILED]


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_replies_typed_while_the_server_is_down_are_delivered_once(
    qtbot, tmp_path: Path, dialect: str
) -> None:
    db = tmp_path / "demo.sqlite3"
    server = DemoServer(dialect, db_path=db)
    await server.start()
    # A restart can race the client into limited mode (a refused handshake, then the REST probe
    # answers: see the report); a short WebSocket retry brings it back to live either way.
    timings = replace(timings_for(dialect), ws_retry_interval=1.0)
    try:
        async with windows_rig(server, dialect, tmp_path, timings) as rig:
            inbox = await rig.sign_in(qtbot)
            key = await rig.escalate("Hello, a human please")
            await rig.take_over(qtbot, inbox, key)
            chat = rig.windows.open_chat(key)

            port = server.port
            await server.stop()
            await until(lambda: not is_online(rig.store.state.connection), what="offline")
            texts = ["Sorry, one moment", "Here is your answer"]
            for text in texts:
                rig.type_reply(qtbot, chat, text)
            await until(lambda: all(len(my_replies(chat, t)) == 1 for t in texts), what="bubbles")
            for text in texts:
                (bubble,) = my_replies(chat, text)
                assert bubble.reply_state is CommandState.QUEUED
                assert chat.delegate.status_text(bubble, False) == (
                    "Queued: will be sent when you are back online"
                )
            assert chat.offline_label.isVisible()

            server = DemoServer(dialect, db_path=db, port=port)  # the same backend, back again
            await server.start()
            rig.server = server
            await until(lambda: all(confirmed(chat, t) for t in texts), what="both replies confirmed")
            await until(
                lambda: rig.store.state.connection.state is ConnectionState.CONNECTED, what="live again"
            )
            assert not chat.offline_label.isVisible()
            assert await delivered(server, key) == texts
    finally:
        await server.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_limited_mode_in_the_windows(qtbot, tmp_path: Path, dialect: str) -> None:
    """WebSocket upgrades refused: the inbox says so, escalations and replies still work over REST.

    Org: take-over and replies are REST calls anyway. Dashboard: no REST route assigns a customer
    (``tests/integration/test_limited_mode.py``), so the take-over fails clearly and the reply
    goes over REST, which the server accepts for a customer nobody else has.
    """
    async with (
        DemoServer(dialect, refuse_upgrades=True) as server,
        windows_rig(server, dialect, tmp_path, LIMITED_TIMINGS) as rig,
    ):
        inbox = await rig.sign_in(qtbot)
        status = inbox.connection_label
        await until(lambda: status.text().startswith("Limited connection"), what="limited status")
        assert rig.store.state.connection.state is ConnectionState.LIMITED

        key = await rig.escalate("Please, a real person")
        await until(lambda: inbox.proxies[WAITING].row_of(key) >= 0, what="escalation while polling")
        if dialect == "org":
            await rig.take_over(qtbot, inbox, key)
        else:
            assert inbox.select_conversation(key)
            qtbot.mouseClick(inbox.take_over_button, Qt.MouseButton.LeftButton)
            await until(
                lambda: any(
                    c.kind is CommandKind.TAKE_OVER and c.state is CommandState.FAILED
                    for c in rig.store.state.outbound.values()
                ),
                what="take-over refused in limited mode",
            )
            await until(lambda: inbox.proxies[MINE].row_of(key) == -1, what="rolled back")
            assert not inbox.conflict_banner.isVisible()  # not somebody else's: no conflict

        chat = rig.windows.open_chat(key)
        await server.control("customer_writes", customer=key, text="Still there?")
        await until(lambda: any(r.text == "Still there?" for r in chat.model.records), what="polled message")
        rig.type_reply(qtbot, chat, "Yes, still here")
        await until(lambda: confirmed(chat, "Yes, still here"), what="reply over REST confirmed")
        assert await delivered(server, key) == ["Yes, still here"]
        assert sum(1 for r in chat.model.records if r.text == "Still there?") == 1

        await server.control("refuse_upgrades", on=False)
        # "Connected, catching up…" (RESYNCING) also starts with "Connected": wait for the end.
        await until(
            lambda: rig.store.state.connection.state is ConnectionState.CONNECTED, what="connected again"
        )
        assert status.text().startswith("Connected")
        assert await delivered(server, key) == ["Yes, still here"]


@pytest.mark.asyncio
async def test_org_ai_hand_off_shows_without_waiting_for_the_periodic_resync(qtbot, tmp_path: Path) -> None:
    """Expected: the customer the AI hands to humans is in the waiting list as soon as it is said.

    The org server broadcasts no escalation (PROTOCOL.md 1.3); the hand-off is the customer's
    message (sent while the AI still had the chat, ``handled_by="ai"``) followed by the AI's
    "connecting you to a human" ``new_message`` whose frame carries ``handled_by="human"`` and no
    ``human_agent_id``. The codec infers the escalation from that AI frame, so the agent is told
    at once, not at the next periodic resync (60 s by default; FAST timings have none).
    """
    async with DemoServer("org") as server, windows_rig(server, "org", tmp_path, FAST) as rig:
        inbox = await rig.sign_in(qtbot)
        key = await rig.escalate("I want a person")
        await until(lambda: inbox.proxies[WAITING].row_of(key) >= 0, limit=5.0, what="hand-off shown")
