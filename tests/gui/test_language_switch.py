"""Switching the language re-words every open window at once (issue 14: the inbox stayed half
English, server errors stayed English in the Indonesian sign-in, "Keluar" meant Quit and Sign out)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QMenu, QMessageBox

from tests.gui.conftest import FakeCommandSink, FakeNotifier, FakeSound, SettableClock, close_awaitable
from tests.gui.fakes import make_env, page, summary
from tests.gui.test_customer_service import ARTIFACTS
from tray_agent.core import i18n
from tray_agent.core.i18n import _
from tray_agent.core.policy import AlertPolicy
from tray_agent.core.settings import AlertSettings, ConnectionSettings, Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.core.state import Store
from tray_agent.ui.bridge import StoreBridge
from tray_agent.ui.effects import EffectRunner
from tray_agent.ui.language import apply_language
from tray_agent.ui.signin_dialog import SignInDialog
from tray_agent.ui.tray import TrayController

pytestmark = pytest.mark.gui


@pytest.fixture
def english(qapp: QApplication) -> Iterator[None]:
    apply_language("en", qapp)
    yield
    apply_language("en", qapp)


@pytest.fixture
def manager(tmp_path, english):
    env = make_env()
    env.feed(
        page(
            summary("p/a", "Siti", since=timedelta(minutes=-12), last="Pesanan saya belum sampai"),
            summary("p/b", "Budi", since=timedelta(minutes=-3)),
        )
    )
    settings = Settings(connection=ConnectionSettings(dialect="dashboard"))
    manager = env.window_manager(tmp_path / "windows.json", LoadedSettings(settings=settings))
    yield env, manager
    manager.close_all()
    env.close()


def in_indonesian(*messages: str) -> list[str]:
    """What the messages read in Indonesian (the language the test switched to)."""
    assert i18n.language() == "id"
    return [_(message) for message in messages]


def test_switching_the_language_rewords_the_open_inbox_and_chat(qapp, qtbot, manager):
    _env, windows = manager
    inbox = windows.show_inbox()
    chat = windows.open_chat("p/a")
    qtbot.waitExposed(inbox)
    file_menu = inbox.menuBar().actions()[0]
    assert file_menu.text() == "&File"

    apply_language("id", qapp)
    qapp.processEvents()

    menu_title, placeholder, open_chat, take_over, waiting_tab, connected = in_indonesian(
        "&File", "Search customers, messages or channels", "&Open chat", "&Take over",
        "Waiting for a human ({count})", "Connected",
    )  # fmt: skip
    assert file_menu.text() == menu_title != "&File"
    assert inbox.search_edit.placeholderText() == placeholder
    assert inbox.open_button.text() == open_chat
    assert inbox.take_over_button.text() == take_over
    assert inbox.tabs.tabText(0) == waiting_tab.format(count=2)
    assert inbox.connection_label.text().startswith(connected)  # the status bar
    file_items = [a.text() for a in file_menu.menu().actions() if not a.isSeparator()]
    assert in_indonesian("&Quit")[0] in file_items
    headers = [inbox.model.headerData(c, Qt.Orientation.Horizontal) for c in range(inbox.model.columnCount())]
    assert headers[0] == in_indonesian("Customer")[0]
    assert all(not re.search(r"\b(File|Search|Open chat|Take over|Waiting for)\b", t) for t in file_items)
    assert chat.isVisible()
    ARTIFACTS.mkdir(exist_ok=True)
    inbox.grab().save(str(ARTIFACTS / "inbox-switched-to-id.png"))

    apply_language("en", qapp)
    assert file_menu.text() == "&File"
    assert inbox.search_edit.placeholderText() == "Search customers, messages or channels"
    assert inbox.tabs.tabText(0) == "Waiting for a human (2)"


def test_qt_dialog_buttons_already_open_follow_the_switch(qapp, qtbot, english):
    box = QMessageBox(QMessageBox.Icon.Question, "x", "y", QMessageBox.StandardButton.Cancel)
    qtbot.addWidget(box)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
    qtbot.addWidget(buttons)
    apply_language("id", qapp)
    assert box.button(QMessageBox.StandardButton.Cancel).text() == "Batal"
    assert sorted(b.text() for b in buttons.buttons()) == ["Batal", "Simpan"]


def test_server_sign_in_errors_are_shown_in_indonesian(qapp, qtbot, english):
    settings = LoadedSettings(settings=Settings(connection=ConnectionSettings(dialect="dashboard")))
    dialog = SignInDialog(settings, "dashboard")
    qtbot.addWidget(dialog)
    dialog.show_problem("Wrong e-mail, password or company.")  # core/protocol/auth.py's words
    assert dialog.problem_text == "Wrong e-mail, password or company."
    sign_in_text = dialog.sign_in_button.text()
    apply_language("id", qapp)
    (wrong,) = in_indonesian("Wrong e-mail, password or company.")
    assert dialog.problem_text == wrong != "Wrong e-mail, password or company."
    assert dialog.sign_in_button.text() == in_indonesian("&Sign in")[0] != sign_in_text
    dialog.show_problem("Sign-in refused: Account is locked.")
    assert dialog.problem_text == _("Sign-in refused: {reason}.").format(reason="Account is locked")
    dialog.show_problem("The server failed to sign in (HTTP 502).")
    assert dialog.problem_text == _("The server failed to sign in (HTTP {status}).").format(status="502")
    dialog.show_problem("Something only this server says")
    assert dialog.problem_text == "Something only this server says"


def test_quit_and_sign_out_are_different_words_in_indonesian(qapp, english):
    apply_language("id", qapp)
    quit_words = {t.replace("&", "").casefold() for t in in_indonesian("Quit", "&Quit")}
    sign_out_words = {
        t.replace("&", "").replace("…", "").casefold()
        for t in in_indonesian("Sign out", "Sign out…", "Sign &out…", "Sign out and delete")
    }
    assert quit_words.isdisjoint(sign_out_words)
    assert all("keluar" not in word for word in quit_words)  # "Keluar" is kept for signing out
    assert all("akun" in word for word in sign_out_words)


def test_tray_tooltip_and_menu_follow_the_switch(qapp, qtbot, english):
    store = Store()
    bridge = StoreBridge(store)
    clock = SettableClock()
    settings = AlertSettings()
    runner = EffectRunner(
        AlertPolicy(settings), FakeNotifier(), FakeSound(), clock, settings, spawn=close_awaitable
    )
    tray = TrayController(bridge, runner, FakeCommandSink(), clock, tray_available=False)
    try:
        assert "Nobody is waiting" in tray.tooltip
        apply_language("id", qapp)
        assert in_indonesian("Nobody is waiting")[0] in tray.tooltip
        assert "Nobody is waiting" not in tray.tooltip
        tray.refresh_menu()
        menu: QMenu = tray.menu
        assert in_indonesian("Quit")[0] in [a.text() for a in menu.actions()]
    finally:
        tray.hide()
        bridge.close()
