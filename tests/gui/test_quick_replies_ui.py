"""The "/" quick-reply picker in the chat's reply box, and the editor in the settings dialog."""

from __future__ import annotations

from datetime import timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tests.gui.fakes import make_env, page, summary
from tests.gui.test_customer_service import ARTIFACTS
from tray_agent.core.commands import SendReply
from tray_agent.core.settings import QuickReplySetting, Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.ui.language import apply_language
from tray_agent.ui.settings_dialog import SettingsDialog

pytestmark = pytest.mark.gui


def settings() -> Settings:
    s = Settings()
    s.connection.email = "sam.lee@example.com"
    s.ui.team_quick_replies = [
        QuickReplySetting(
            name="thanks",
            text="Thanks for waiting, {customer_name}. I'm {agent_name}.",
            text_id="Terima kasih sudah menunggu, {customer_name}. Saya {agent_name}.",
        ),
        QuickReplySetting(name="hours", text="We're open 9-17 ({channel})."),
    ]
    s.ui.quick_replies = [QuickReplySetting(name="track", text="Your ticket {conversation} is {status}.")]
    return s


@pytest.fixture
def chat(qtbot, tmp_path):
    env = make_env()
    env.feed(page(summary("p/a", "Ana", channel="Shoe Shop", since=timedelta(minutes=-2))))
    windows = env.window_manager(tmp_path / "w.json", LoadedSettings(settings=settings()))
    window = windows.open_chat("p/a")
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    yield env, window
    windows.close_all()
    env.close()


def test_quick_replies_ui_slash_filters_and_enter_inserts_with_variables(chat, qtbot):
    env, window = chat
    popup = window.quick_reply_popup
    edit = window.reply_edit
    qtbot.keyClick(edit, Qt.Key.Key_Slash)
    assert popup.is_open
    assert popup.names() == ["thanks", "hours", "track"]
    qtbot.keyClicks(edit, "th")
    assert popup.names() == ["thanks"]
    window.resize(440, 520)
    QApplication.processEvents()
    ARTIFACTS.mkdir(exist_ok=True)
    assert window.grab().save(str(ARTIFACTS / "quick-replies.png"))
    qtbot.keyClick(edit, Qt.Key.Key_Return)  # inserts, does not send
    assert not popup.is_open
    assert edit.toPlainText() == "Thanks for waiting, Ana. I'm Sam Lee."
    assert env.sink.of(SendReply) == []
    qtbot.keyClick(edit, Qt.Key.Key_Return)  # now Enter sends
    assert env.sink.last(SendReply).text == "Thanks for waiting, Ana. I'm Sam Lee."


def test_quick_replies_ui_arrows_escape_and_unknown_variables(chat, qtbot):
    _env, window = chat
    popup = window.quick_reply_popup
    edit = window.reply_edit
    qtbot.keyClicks(edit, "Hi! /")
    qtbot.keyClick(edit, Qt.Key.Key_Down)
    qtbot.keyClick(edit, Qt.Key.Key_Down)
    qtbot.keyClick(edit, Qt.Key.Key_Tab)
    assert edit.toPlainText() == "Hi! Your ticket p/a is {status}."  # unknown variable left as typed
    qtbot.keyClicks(edit, " /h")
    assert popup.is_open
    qtbot.keyClick(edit, Qt.Key.Key_Escape)
    assert not popup.is_open
    assert edit.toPlainText().endswith(" /h")
    qtbot.keyClicks(edit, "ttp://")  # a URL is not a query
    assert not popup.is_open


def test_quick_replies_ui_indonesian_text(chat, qtbot, qapp):
    _env, window = chat
    apply_language("id", qapp)
    try:
        qtbot.keyClicks(window.reply_edit, "/thanks")
        qtbot.keyClick(window.reply_edit, Qt.Key.Key_Return)
        assert window.reply_edit.toPlainText() == "Terima kasih sudah menunggu, Ana. Saya Sam Lee."
    finally:
        apply_language("en", qapp)


def test_quick_replies_ui_settings_editor_saves_own_and_keeps_team(qtbot):
    dialog = SettingsDialog(LoadedSettings(settings=settings()))
    qtbot.addWidget(dialog)
    team = dialog.editor("ui.team_quick_replies")
    own = dialog.editor("ui.quick_replies")
    assert team.table.rowCount() == 2
    assert team.add_button is None  # IT's list is read-only
    own.add_reply("bye", "Goodbye!", "Sampai jumpa!")
    edited = dialog.edited_settings()
    assert [r.name for r in edited.ui.quick_replies] == ["track", "bye"]
    assert edited.ui.quick_replies[1].text_id == "Sampai jumpa!"
    assert [r.name for r in edited.ui.team_quick_replies] == ["thanks", "hours"]
    own.table.setCurrentCell(0, 0)
    assert own.remove_button is not None
    own.remove_button.click()
    assert [r.name for r in dialog.edited_settings().ui.quick_replies] == ["bye"]
