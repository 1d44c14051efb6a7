"""A customer's life cycle in the windows against the in-process demo backend, both dialects.

Escalation -> take over -> reply -> Resolve in the chat window -> gone from Waiting and Mine, and
not back after a resync; the dashboard take over of a customer the bot is handling; the org
"Take anyway" after a colleague took the chat unseen.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from PySide6.QtCore import Qt

from tests.integration.e2e_rig import DIALECTS, MINE, WAITING, confirmed, delivered, until, windows_rig
from tray_agent.core.events import CommandKind
from tray_agent.core.lifecycle import held_customers
from tray_agent.core.state import CommandState
from tray_agent.demo.server import DemoServer

pytestmark = [pytest.mark.integration, pytest.mark.gui]

ALL = 2


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_escalation_take_over_reply_resolve_and_gone(qtbot, tmp_path: Path, dialect: str) -> None:
    async with DemoServer(dialect) as server, windows_rig(server, dialect, tmp_path) as rig:
        inbox = await rig.sign_in(qtbot)
        key = await rig.escalate("I want a person")
        await rig.take_over(qtbot, inbox, key)
        assert held_customers(rig.store.state) == (key,)

        chat = rig.windows.open_chat(key)
        rig.type_reply(qtbot, chat, "Done, your order ships today")
        await until(lambda: confirmed(chat, "Done, your order ships today"), what="reply confirmed")
        assert await delivered(server, key) == ["Done, your order ships today"]

        assert chat.resolve_button.isVisible()
        qtbot.mouseClick(chat.resolve_button, Qt.MouseButton.LeftButton)
        resolved = [c for c in rig.store.state.outbound.values() if c.kind is CommandKind.RESOLVE]
        await until(lambda: resolved[0].command_id in rig.store.state.outbound, what="resolve queued")
        await until(
            lambda: rig.store.state.outbound[resolved[0].command_id].state is CommandState.CONFIRMED,
            what="resolve confirmed",
        )
        await until(lambda: inbox.proxies[WAITING].row_of(key) == -1, what="gone from Waiting")
        await until(lambda: inbox.proxies[MINE].row_of(key) == -1, what="gone from Mine")
        assert rig.store.state.waiting_count == 0
        assert held_customers(rig.store.state) == ()
        assert chat.handler_text == "Nobody is handling this customer."

        # A resync (the server's truth) does not bring them back as waiting.
        assert rig.client is not None
        before = rig.store.state.connection.last_synced
        rig.client.request_resync("test")
        await until(
            lambda: rig.store.state.connection.last_synced != before and rig.store.state.resync is None,
            what="resynced",
        )
        conv = rig.store.state.conversation(key)
        assert conv is not None
        assert not conv.waiting
        assert inbox.proxies[WAITING].row_of(key) == -1


@pytest.mark.asyncio
async def test_dashboard_take_over_of_a_customer_the_bot_is_handling(qtbot, tmp_path: Path) -> None:
    async with DemoServer("dashboard") as server, windows_rig(server, "dashboard", tmp_path) as rig:
        inbox = await rig.sign_in(qtbot)
        result = await server.control("customer_writes", text="hello bot")  # nobody asked for a human
        key = str(result["customer"]["ref"])
        await until(lambda: rig.store.state.conversation(key) is not None, what="customer known")
        inbox.set_current_tab(ALL)
        await until(lambda: inbox.proxies[ALL].row_of(key) >= 0, what="listed")
        assert inbox.select_conversation(key)
        assert inbox.take_over_button.isEnabled()
        qtbot.mouseClick(inbox.take_over_button, Qt.MouseButton.LeftButton)
        await until(lambda: rig.is_mine(inbox, key), what="taken over")
        assert not inbox.conflict_banner.isVisible()
        chat = rig.windows.open_chat(key)
        rig.type_reply(qtbot, chat, "A human here")
        await until(lambda: confirmed(chat, "A human here"), what="reply confirmed")
        qtbot.mouseClick(chat.hand_back_button, Qt.MouseButton.LeftButton)
        await until(lambda: not rig.store.state.conversation(key).assigned_to_me, what="handed back")
        await until(lambda: inbox.proxies[MINE].row_of(key) == -1, what="gone from Mine")


@pytest.mark.asyncio
async def test_org_take_over_refused_for_a_colleagues_chat_then_take_anyway(qtbot, tmp_path: Path) -> None:
    async with DemoServer("org") as server, windows_rig(server, "org", tmp_path) as rig:
        me = server.info.agents[0]
        colleague = next(a for a in server.info.agents if a.tenant == me.tenant and a.email != me.email)
        inbox = await rig.sign_in(qtbot, me)
        key = await rig.escalate("Is anybody there?")
        await until(lambda: inbox.proxies[WAITING].row_of(key) >= 0, what="customer waiting")

        # The colleague takes the chat over REST: the org server broadcasts nothing.
        base = server.info.url
        async with aiohttp.ClientSession() as http:
            grant = {"email": colleague.email, "password": colleague.password}
            headers = {"apikey": server.info.extra["supabase_anon_key"]}
            async with http.post(
                f"{base}/auth/v1/token", params={"grant_type": "password"}, json=grant, headers=headers
            ) as response:
                token = (await response.json())["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            body = {"assigned_to_me": True}
            async with http.put(f"{base}/crm/chats/{key}/assign", json=body, headers=auth) as response:
                assert response.status == 200, await response.text()
        assert not rig.store.state.conversation(key).assigned  # nothing told us

        assert inbox.select_conversation(key)
        qtbot.mouseClick(inbox.take_over_button, Qt.MouseButton.LeftButton)
        await until(lambda: inbox.conflict_banner.isVisible(), what="conflict banner")
        assert "already" in inbox.conflict_banner.text
        conv = rig.store.state.conversation(key)
        assert conv.assigned
        assert not conv.assigned_to_me
        assert inbox.conflict_banner.take_anyway_button.isVisible()

        qtbot.mouseClick(inbox.conflict_banner.take_anyway_button, Qt.MouseButton.LeftButton)
        await until(lambda: rig.is_mine(inbox, key), what="taken anyway")
        assert not inbox.conflict_banner.isVisible()
