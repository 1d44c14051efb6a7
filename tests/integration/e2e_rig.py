"""A rig for end-to-end tests of the agent's windows against the in-process demo backend.

It wires the app's objects the way ``tray_agent/app.py`` does: the session layer's
:func:`~tray_agent.session.build_session` (store, dispatcher, local store, and the client built
by :meth:`~tray_agent.session.AccountSession.sign_in` when the sign-in dialog asks, with shrunk
:class:`~tray_agent.net.config.Timings` and an in-memory secret store), a
:class:`~tray_agent.ui.bridge.StoreBridge`, the session as the windows' command sink (as in the
app), and a :class:`~tray_agent.ui.windows.WindowManager` whose UI events go
through the session's dispatcher.

The tests run on pytest-asyncio's default loop and pump Qt events themselves (:func:`until`),
as the first window end-to-end test did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLineEdit

from tests.helpers.fakes import FakeSecretStore
from tests.helpers.net_clients import FAST
from tray_agent.core.events import CommandFailed, Dialect, Event
from tray_agent.core.ports import SystemClock
from tray_agent.core.protocol import codec_for
from tray_agent.core.settings import ConnectionSettings, Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.core.state import CommandState, MessageRecord, State
from tray_agent.demo.base import DemoAgent, DemoCustomer
from tray_agent.demo.server import DemoServer
from tray_agent.net.client import Client
from tray_agent.net.config import Timings
from tray_agent.session import AccountSession, build_session
from tray_agent.ui.bridge import StoreBridge
from tray_agent.ui.chat_window import ChatWindow
from tray_agent.ui.customer_service import CustomerServiceWindow
from tray_agent.ui.signin_dialog import SignInRequest
from tray_agent.ui.windows import WindowManager

DIALECTS = ("dashboard", "org")
WAIT = 15.0
"""Generous limit of every wait (seconds): a loaded 2-core machine must never make them flaky."""

LIMITED_TIMINGS = replace(FAST, poll_interval=0.1, ws_retry_interval=0.5, limited_after=3)
"""Limited mode in milliseconds: poll often, try the WebSocket again soon."""

ORG_RESYNC = 0.5
"""The org periodic resync, shrunk (the app's default is 60 s).

The org server never broadcasts an escalation: the client infers one from a *customer* message in
a chat handed to humans, so an AI hand-off (the demo's ``ask_for_human``) reaches the waiting
list through the periodic ``GET /crm/chats`` resync (PROTOCOL.md O9). See
``test_org_ai_hand_off_shows_without_waiting_for_the_periodic_resync``.
"""


def timings_for(dialect: str, timings: Timings = FAST) -> Timings:
    """The test timings of a dialect: org also resyncs every :data:`ORG_RESYNC` seconds."""
    if dialect == "org" and timings.resync_interval is None:
        return replace(timings, resync_interval=ORG_RESYNC)
    return timings


WAITING, MINE, ALL = 0, 1, 2
"""The inbox tabs (``CustomerServiceWindow.proxies``)."""


async def until(condition: Callable[[], object], limit: float = WAIT, what: str = "") -> None:
    """Run the asyncio loop and Qt events until ``condition`` holds (like qtbot.waitUntil)."""
    deadline = time.monotonic() + limit
    while not condition():
        QApplication.processEvents()
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in time: {what or condition}")
        await asyncio.sleep(0.01)
    QApplication.processEvents()


def demo_customer(server: DemoServer, ref: str) -> DemoCustomer:
    """The demo backend's customer of a conversation key (the key is the customer's ref)."""
    return next(c for c in server.backend.customers() if c.ref == ref)


async def delivered(server: DemoServer, ref: str) -> list[str]:
    """Every human agent reply the demo backend stored for this customer, oldest first."""
    return [text for _seq, text in await server.backend.agent_messages_since(demo_customer(server, ref), 0)]


def my_replies(chat: ChatWindow, text: str) -> list[MessageRecord]:
    """The bubbles of my replies with this text in a chat window."""
    return [r for r in chat.model.records if r.mine and r.text == text]


def confirmed(chat: ChatWindow, text: str) -> bool:
    """Exactly one bubble of my reply ``text``, and it is confirmed."""
    bubbles = my_replies(chat, text)
    return len(bubbles) == 1 and bubbles[0].reply_state is CommandState.CONFIRMED


class WindowsRig:
    """One agent's app (session, store, bridge, windows, client) against one demo server."""

    def __init__(self, server: DemoServer, dialect: str, tmp_path: Path, timings: Timings) -> None:
        self.server = server
        self.dialect = dialect
        self.timings = timings
        self.clock = SystemClock()
        self.loaded = LoadedSettings(settings=Settings())
        # The app's wiring (session.build_session): store, dispatcher, local store, client.
        self.session: AccountSession = build_session(
            self.loaded,
            self.clock,
            data_dir=tmp_path / "data",
            secrets=FakeSecretStore(),
            client_factory=self._make_client,
        )
        self.store = self.session.store
        self.bridge = StoreBridge(self.store)
        self.not_sent: list[str] = []
        """Ids of the commands the session failed at once because it had no client (not signed in)."""
        self.session.dispatcher.observe(self._on_dispatched)
        self.windows = WindowManager(
            self.store,
            self.session,  # the UI's CommandSink, as in the app
            self.loaded,
            dialect,
            bridge=self.bridge,
            state_file=tmp_path / "windows.json",
            dispatch=self.session.dispatcher.dispatch,
        )
        self.windows.sign_in_requested.connect(self._on_windows_sign_in_requested)
        self._tasks: set[asyncio.Future[None]] = set()

    @property
    def client(self) -> Client | None:
        """The session's network client, once signed in."""
        client = self.session.client
        assert client is None or isinstance(client, Client)
        return client

    # ------------------------------------------------------------------ app.py's wiring

    def _make_client(
        self,
        connection: ConnectionSettings,
        authenticator: Any,
        emit: Callable[[Event], None],
        clock: Any,
        outbox: Any,
    ) -> Client:
        """``session.make_client`` with the tests' shrunk timings."""
        dialect = Dialect(connection.dialect)
        kwargs = {"org_id": connection.org} if dialect is Dialect.ORG else {}
        return Client(
            codec_for(dialect, **kwargs),
            authenticator,
            connection,
            emit,
            clock,
            timings=self.timings,
            outbox=outbox,
        )

    def _on_windows_sign_in_requested(self, request: SignInRequest) -> None:
        task = asyncio.ensure_future(self._sign_in(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sign_in(self, request: SignInRequest) -> None:
        await self.session.sign_in(request)  # as TrayApp: the session saves and starts the client

    def _on_dispatched(self, event: Event, old: State, new: State) -> None:
        if isinstance(event, CommandFailed) and self.session.client is None:
            self.not_sent.append(event.command_id)

    async def close(self) -> None:
        """Close the windows, stop the client (cleanly, as at quit) and the bridge."""
        self.windows.close_all()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=WAIT)
        await asyncio.wait_for(self.session.stop(), WAIT)
        self.bridge.close()

    # ------------------------------------------------------------------ what the agent does

    async def sign_in(self, qtbot, agent: DemoAgent | None = None) -> CustomerServiceWindow:
        """Type the account into the sign-in dialog, press Sign in, wait for the first load."""
        info = self.server.info
        agent = agent or info.agents[0]
        dialog = self.windows.show_sign_in()
        fields: list[tuple[QLineEdit | None, str]] = [(dialog.server_edit, info.url)]
        if self.dialect == "org":
            fields += [
                (dialog.org_edit, agent.tenant),
                (dialog.supabase_url_edit, info.extra["supabase_url"]),
                (dialog.supabase_key_edit, info.extra["supabase_anon_key"]),
            ]
        else:
            fields.append((dialog.company_edit, agent.tenant))
        fields += [(dialog.email_edit, agent.email), (dialog.password_edit, agent.password)]
        for edit, text in fields:
            assert edit is not None
            edit.clear()
            qtbot.keyClicks(edit, text)
        qtbot.mouseClick(dialog.sign_in_button, Qt.MouseButton.LeftButton)
        assert dialog.problem_text == ""
        await until(
            lambda: self.client is not None and self.store.state.initial_load_done,
            what="signed in and synced",
        )
        self.windows.close_sign_in()
        return self.windows.show_inbox()

    async def escalate(self, text: str) -> str:
        """A new customer asks for a human (demo control); returns the conversation key."""
        result = await self.server.control("ask_for_human", text=text)
        return str(result["customer"]["ref"])

    async def take_over(self, qtbot, inbox: CustomerServiceWindow, key: str) -> None:
        """Select the customer in the waiting list, click Take over, wait until they are mine."""
        inbox.set_current_tab(WAITING)
        await until(lambda: inbox.proxies[WAITING].row_of(key) >= 0, what="customer in the waiting list")
        assert inbox.select_conversation(key)
        assert inbox.take_over_button.isEnabled()
        qtbot.mouseClick(inbox.take_over_button, Qt.MouseButton.LeftButton)
        await until(lambda: self.is_mine(inbox, key), what="take-over confirmed")

    def is_mine(self, inbox: CustomerServiceWindow, key: str) -> bool:
        """The customer is listed under Mine and no take-over is pending."""
        conv = self.store.state.conversation(key)
        return (
            inbox.proxies[MINE].row_of(key) >= 0
            and conv is not None
            and conv.assigned_to_me
            and conv.pending_takeover is None
        )

    @staticmethod
    def type_reply(qtbot, chat: ChatWindow, text: str) -> None:
        """Type a reply in the chat window's reply box and press Enter."""
        chat.reply_edit.setFocus()
        qtbot.keyClicks(chat.reply_edit, text)
        qtbot.keyClick(chat.reply_edit, Qt.Key.Key_Return)
        assert chat.reply_edit.toPlainText() == ""


@asynccontextmanager
async def windows_rig(
    server: DemoServer, dialect: str, tmp_path: Path, timings: Timings | None = None
) -> AsyncIterator[WindowsRig]:
    """A :class:`WindowsRig` that is closed (windows, client, bridge) however the test ends.

    ``timings`` default to :func:`timings_for` the dialect; given ones are used as they are.
    """
    rig = WindowsRig(server, dialect, tmp_path, timings or timings_for(dialect))
    try:
        yield rig
    finally:
        await rig.close()
