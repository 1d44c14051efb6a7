"""Keyboard-only flow: escalation -> next waiting customer -> take over -> reply -> release -> close,
driven by key events only, checking the commands the sink received."""

from __future__ import annotations

from datetime import timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication

from tests.gui.fakes import make_env, page, summary
from tray_agent.core.commands import HandBack, LoadHistory, Release, Resolve, SendReply, TakeOver
from tray_agent.core.events import AgentRef, CommandKind, CommandSucceeded, HumanRequested
from tray_agent.ui.shortcuts import SHORTCUTS, Shortcut, next_waiting

pytestmark = pytest.mark.gui

CTRL_SHIFT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier


@pytest.fixture
def rig(tmp_path):
    env = make_env()
    env.feed(
        page(
            summary("p/mine", "Citra", assigned=True, agent=AgentRef("me-1"), to_me=True),
            summary(
                "p/other", "Dewi", since=timedelta(minutes=-30), assigned=True, agent=AgentRef("x", "Agus")
            ),
        )
    )
    manager = env.window_manager(tmp_path / "windows.json")
    yield env, manager
    manager.close_all()
    env.close()


def activate(qtbot, window) -> None:
    window.show()
    window.raise_()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)


def test_keyboard_flow_from_escalation_to_release_and_close(rig, qtbot):
    env, windows = rig
    inbox = windows.show_inbox()
    activate(qtbot, inbox)

    # A customer asks for a human (the toast is on screen); the agent stays on the keyboard.
    env.feed(HumanRequested(conversation="p/new", customer_name="Ana", text="I need a person"))
    assert next_waiting(env.store.state).key == "p/new"
    qtbot.keyClick(inbox.focusWidget() or inbox, Qt.Key.Key_N, CTRL_SHIFT)
    chat = windows.chats["p/new"]
    activate(qtbot, chat)
    assert chat.focusWidget() is chat.reply_edit  # focus lands in the reply box
    assert env.sink.last(LoadHistory).conversation == "p/new"

    # Take over with the shortcut; the server confirms.
    qtbot.keyClick(chat.reply_edit, Qt.Key.Key_T, CTRL_SHIFT)
    take = env.sink.last(TakeOver)
    assert take.conversation == "p/new"
    env.feed(CommandSucceeded(command_id=take.command_id, kind=CommandKind.TAKE_OVER, conversation="p/new"))
    assert chat.handler_text == "You are handling this customer."

    # Type a reply and send it with Enter.
    qtbot.keyClicks(chat.reply_edit, "Hello Ana, I'm here to help.")
    qtbot.keyClick(chat.reply_edit, Qt.Key.Key_Return)
    reply = env.sink.last(SendReply)
    assert (reply.conversation, reply.text) == ("p/new", "Hello Ana, I'm here to help.")
    assert chat.reply_edit.toPlainText() == ""

    # Release with the shortcut, then close the chat with Ctrl+W.
    qtbot.keyClick(chat.reply_edit, Qt.Key.Key_R, CTRL_SHIFT)
    release = env.sink.last(Release)
    assert release.conversation == "p/new"
    env.feed(CommandSucceeded(command_id=release.command_id, kind=CommandKind.RELEASE, conversation="p/new"))
    qtbot.keyClick(chat.reply_edit, Qt.Key.Key_W, Qt.KeyboardModifier.ControlModifier)
    assert not chat.isVisible()
    QApplication.processEvents()
    assert "p/new" not in windows.chats

    kinds = [type(c).__name__ for c in env.sink.commands if not isinstance(c, LoadHistory)]
    assert kinds == ["TakeOver", "SendReply", "Release"]


def test_keyboard_flow_hand_back_and_resolve_shortcuts(rig, qtbot):
    env, windows = rig
    env.feed(HumanRequested(conversation="p/new", customer_name="Ana", text="I need a person"))
    chat = windows.open_chat("p/new")
    activate(qtbot, chat)
    qtbot.keyClick(chat.reply_edit, Qt.Key.Key_D, CTRL_SHIFT)  # not mine: nothing to resolve
    qtbot.keyClick(chat.reply_edit, Qt.Key.Key_T, CTRL_SHIFT)
    take = env.sink.last(TakeOver)
    env.feed(CommandSucceeded(command_id=take.command_id, kind=CommandKind.TAKE_OVER, conversation="p/new"))
    qtbot.keyClick(chat.reply_edit, Qt.Key.Key_B, CTRL_SHIFT)
    assert env.sink.last(HandBack).conversation == "p/new"
    qtbot.keyClick(chat.reply_edit, Qt.Key.Key_D, CTRL_SHIFT)
    assert env.sink.last(Resolve).conversation == "p/new"
    kinds = [type(c).__name__ for c in env.sink.commands if not isinstance(c, LoadHistory)]
    assert kinds == ["TakeOver", "HandBack", "Resolve"]
    inbox = windows.show_inbox()
    names = [a.objectName() for m in inbox.menuBar().actions() if m.menu() for a in m.menu().actions()]
    assert "shortcut:resolve" in names
    assert "shortcut:hand_back" in names


def test_keyboard_flow_toast_open_then_inbox_shortcuts(rig, qtbot):
    env, windows = rig
    env.feed(HumanRequested(conversation="p/new", customer_name="Ana", text="help"))
    # The toast's "Open" action calls WindowManager.open_chat (ui.front.Front.activate_toast).
    chat = windows.open_chat("p/new")
    activate(qtbot, chat)
    qtbot.keyClick(chat.reply_edit, Qt.Key.Key_I, CTRL_SHIFT)  # open the inbox from the chat
    inbox = windows.inbox
    assert inbox is not None
    assert inbox.isVisible()
    activate(qtbot, inbox)
    # In the inbox: Ctrl+F to search, Down to the list, take over the selection with the shortcut.
    qtbot.keyClick(inbox, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert inbox.focusWidget() is inbox.search_edit
    qtbot.keyClicks(inbox.search_edit, "Ana")
    qtbot.keyClick(inbox.search_edit, Qt.Key.Key_Down)
    assert inbox.selected_key() == "p/new"
    qtbot.keyClick(inbox.focusWidget(), Qt.Key.Key_T, CTRL_SHIFT)
    assert env.sink.last(TakeOver).conversation == "p/new"
    # Nothing happens for a customer somebody else has.
    inbox.search_edit.clear()
    inbox.select_conversation("p/other")
    before = len(env.sink.commands)
    qtbot.keyClick(inbox.focusWidget(), Qt.Key.Key_T, CTRL_SHIFT)
    qtbot.keyClick(inbox.focusWidget(), Qt.Key.Key_R, CTRL_SHIFT)
    assert len(env.sink.commands) == before


def test_keyboard_flow_next_waiting_with_nobody_waiting_shows_the_inbox(rig, qtbot):
    _env, windows = rig
    assert windows.open_next_waiting() == ""
    assert windows.inbox is not None
    assert windows.inbox.isVisible()


def test_keyboard_flow_help_lists_every_shortcut(rig, qtbot):
    _env, windows = rig
    inbox = windows.show_inbox()
    activate(qtbot, inbox)
    qtbot.keyClick(inbox.focusWidget() or inbox, Qt.Key.Key_F1)
    dialog = windows.keyboard_help
    assert dialog is not None
    keys = [keys for keys, _text in dialog.rows]
    for info in SHORTCUTS.values():
        assert info.keys_text() in keys
        assert info.keys_text()
    help_action = inbox.findChild(type(inbox.menuBar().actions()[0]), f"shortcut:{Shortcut.HELP}")
    assert help_action is not None
    assert help_action.text() == "&Keyboard shortcuts"


def test_keyboard_flow_help_lists_the_inbox_own_shortcuts(rig, qtbot):
    _env, windows = rig
    inbox = windows.show_inbox()
    activate(qtbot, inbox)
    qtbot.keyClick(inbox.focusWidget() or inbox, Qt.Key.Key_F1)
    dialog = windows.keyboard_help
    assert dialog is not None
    listed = {key for keys, _text in dialog.rows for key in keys.split(", ")}  # "Ctrl+F4, Ctrl+W"
    first_unread = inbox.findChild(QAction, "firstUnread")
    assert first_unread is not None
    assert first_unread.shortcut().toString() == "Ctrl+Shift+U"
    own = {a.shortcut().toString() for a in inbox.findChildren(QAction) if not a.shortcut().isEmpty()}
    assert own - listed == set()
