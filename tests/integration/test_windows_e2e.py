"""End to end: the inbox and a chat window against the in-process demo backend (dashboard)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tests.helpers.fakes import FakeSecretStore
from tests.helpers.net_clients import FAST
from tray_agent.core.ports import SystemClock
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.settings import ConnectionSettings, Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.core.state import CommandState, Store
from tray_agent.demo.server import DemoServer
from tray_agent.net.auth import DashboardAuthenticator
from tray_agent.net.client import Client
from tray_agent.ui.signin_dialog import SignInRequest
from tray_agent.ui.windows import WindowManager

pytestmark = [pytest.mark.integration, pytest.mark.gui]


async def until(condition: Callable[[], object], limit: float = 10.0) -> None:
    """Run the asyncio loop and Qt events until ``condition`` holds (like qtbot.waitUntil)."""
    deadline = time.monotonic() + limit
    while not condition():
        QApplication.processEvents()
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
    QApplication.processEvents()


@pytest.mark.asyncio
async def test_dashboard_sign_in_take_over_reply_and_release(qtbot, tmp_path: Path) -> None:
    async with DemoServer("dashboard") as server:
        agent = server.info.agents[0]
        store = Store()
        loaded = LoadedSettings(
            settings=Settings(connection=ConnectionSettings(server=server.url, company=agent.tenant))
        )
        client: Client | None = None

        def sign_in(request: SignInRequest) -> None:
            nonlocal client
            settings = ConnectionSettings(
                dialect="dashboard", server=request.server, company=request.company, email=request.email
            )
            clock = SystemClock()
            auth = DashboardAuthenticator(
                settings, FakeSecretStore(), clock, password=request.password, keepalive_interval=3600.0
            )
            client = Client(DashboardCodec(), auth, settings, store.dispatch, clock, timings=FAST)
            client.start()

        class Sink:
            def submit(self, command: object) -> None:
                assert client is not None
                client.submit(command)  # type: ignore[arg-type]

        wm = WindowManager(store, Sink(), loaded, "dashboard", state_file=tmp_path / "windows.json")
        wm.sign_in_requested.connect(sign_in)
        dialog = wm.show_sign_in()
        qtbot.keyClicks(dialog._email_edit, agent.email)
        qtbot.keyClicks(dialog._password_edit, agent.password)
        qtbot.mouseClick(dialog._sign_in_button, Qt.MouseButton.LeftButton)
        try:
            await until(lambda: client is not None and store.state.initial_load_done)
            wm.close_sign_in()
            inbox = wm.show_inbox()
            result = await server.control("ask_for_human", text="I want a person")
            key = result["customer"]["ref"]
            await until(lambda: inbox.proxies[0].row_of(key) >= 0)
            assert inbox.select_conversation(key)
            qtbot.mouseClick(inbox._take_over_button, Qt.MouseButton.LeftButton)
            await until(
                lambda: (
                    inbox.proxies[1].row_of(key) >= 0
                    and store.state.conversation(key).pending_takeover is None
                )
            )

            chat = wm.open_chat(key)
            await server.control("customer_writes", customer=key, text="Hello? <b>anyone</b>")
            await until(lambda: any(r.text == "Hello? <b>anyone</b>" for r in chat.model.records))
            chat._reply_edit.setPlainText("Hi, I am here")
            qtbot.keyClick(chat._reply_edit, Qt.Key.Key_Return)
            await until(
                lambda: any(
                    r.mine and r.text == "Hi, I am here" and r.reply_state is CommandState.CONFIRMED
                    for r in chat.model.records
                )
            )
            assert chat.handler_text == "You are handling this customer."
            qtbot.mouseClick(chat._release_button, Qt.MouseButton.LeftButton)
            await until(lambda: not store.state.conversation(key).assigned)
            assert inbox.proxies[1].row_of(key) == -1
        finally:
            wm.close_all()
            if client is not None:
                await client.stop()
