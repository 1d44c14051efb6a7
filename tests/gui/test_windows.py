"""Tests of the WindowManager: one chat per customer, dialogs, and session restore."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from PySide6.QtWidgets import QMessageBox, QPushButton

from tests.gui.fakes import make_env, page, summary
from tray_agent.core.commands import LoadHistory
from tray_agent.core.settings import Settings
from tray_agent.platform.storage import LocalStore
from tray_agent.ui.signin_dialog import SignInRequest
from tray_agent.ui.windows import WindowManager, replies_at_risk, sign_out_question

pytestmark = pytest.mark.gui


@pytest.fixture
def env():
    e = make_env()
    e.feed(page(summary("p/a", "Alice", since=timedelta(minutes=-4)), summary("p/b", "Bob")))
    yield e
    e.close()


def manager(env, tmp_path, dialect="dashboard", draft_store=None) -> WindowManager:
    return env.window_manager(tmp_path / "windows.json", dialect=dialect, draft_store=draft_store)


def test_one_chat_window_per_customer(qtbot, env, tmp_path):
    wm = manager(env, tmp_path)
    inbox = wm.show_inbox()
    qtbot.addWidget(inbox)
    inbox.select_conversation("p/a")
    inbox.chat_requested.emit("p/a")
    first = wm.chats["p/a"]  # the manager owns (and deletes) chat windows
    assert wm.open_chat("p/a") is first
    assert env.sink.history_pages("p/a") == [0]  # loaded once, not per raise
    first.close()
    assert "p/a" not in wm.chats
    wm.close_all()


def test_session_restore_reopens_chats_and_the_inbox(qtbot, env, tmp_path):
    wm = manager(env, tmp_path)
    inbox = wm.show_inbox()
    qtbot.addWidget(inbox)
    inbox.set_current_tab(2)
    for key in ("p/a", "p/b"):
        wm.open_chat(key)
    wm.chats["p/b"].resize(333, 444)
    wm.save_session()
    data = json.loads((tmp_path / "windows.json").read_text())
    assert [c["conversation"] for c in data["chats"]] == ["p/a", "p/b"]
    wm.close_all()

    again = manager(env, tmp_path)
    again.restore_session()
    assert set(again.chats) == {"p/a", "p/b"}
    assert again.chats["p/b"].size().width() == 333
    assert again.inbox is not None
    assert again.inbox.isVisible()
    assert again.inbox.current_index == 2
    qtbot.addWidget(again.inbox)
    assert env.sink.of(LoadHistory)[-1].conversation in {"p/a", "p/b"}
    again.close_all()


def test_broken_session_file_is_ignored(qtbot, env, tmp_path):
    (tmp_path / "windows.json").write_text('{"chats": [{"conversation": 5}, "x"], "inbox": []}')
    wm = manager(env, tmp_path)
    wm.restore_session()
    assert wm.chats == {}
    (tmp_path / "windows.json").write_text("not json")
    wm.restore_session()
    assert wm.inbox is None


def test_dialog_signals_reach_the_manager(qtbot, env, tmp_path):
    wm = manager(env, tmp_path, "org")
    dialog = wm.show_sign_in("Wrong password.", keyring_problem="no keyring")
    qtbot.addWidget(dialog)
    assert dialog.problem_text == "Wrong password."
    request = SignInRequest(dialect="org", server="https://x", org="o", token="t")
    with qtbot.waitSignal(wm.sign_in_requested) as blocker:
        dialog.sign_in_requested.emit(request)
    assert blocker.args == [request]
    assert wm.show_sign_in() is dialog
    wm.close_sign_in()
    assert wm.sign_in_dialog is None

    settings_dialog = wm.show_settings()
    qtbot.addWidget(settings_dialog)
    with qtbot.waitSignal(wm.settings_saved) as blocker:
        settings_dialog.save_button.click()
    assert isinstance(blocker.args[0], Settings)
    wm.settings_save_failed("Could not write the settings file.")
    assert wm.settings_dialog.problem_label.text() == "Could not write the settings file."

    inbox = wm.show_inbox()
    qtbot.addWidget(inbox)
    with qtbot.waitSignal(wm.quit_requested):
        inbox.quit_action.trigger()
    wm.close_all()


def test_drafts_live_in_the_account_store_across_restarts(qtbot, env, tmp_path):
    path = tmp_path / "data" / "store.sqlite3"
    store = LocalStore(path)
    wm = manager(env, tmp_path, draft_store=store)
    chat = wm.open_chat("p/a")
    qtbot.keyClicks(chat.reply_edit, "I will check your order")
    chat.close()
    wm.close_all()
    store.close()
    assert not (tmp_path / "drafts.json").exists()  # the JSON file is gone for good

    reopened = LocalStore(path)  # "restart": the store from disk, a new manager
    again = manager(env, tmp_path, draft_store=reopened)
    assert again.open_chat("p/a").reply_edit.toPlainText() == "I will check your order"
    again.close_all()
    reopened.close()


def test_a_new_draft_store_follows_the_account(qtbot, env, tmp_path):
    wm = manager(env, tmp_path)  # no store yet: drafts in memory
    chat = wm.open_chat("p/a")
    chat.reply_edit.setPlainText("typed before the store opened")
    store = LocalStore(tmp_path / "store.sqlite3")
    wm.set_draft_store(store)
    assert wm.draft_store is store
    assert store.draft("p/a") == "typed before the store opened"
    chat.reply_edit.setPlainText("changed")
    wm.save_drafts()
    assert store.draft("p/a") == "changed"
    wm.close_all()
    store.close()


def test_sign_out_from_the_inbox_asks_first_and_counts_replies_at_risk(qtbot, env, tmp_path):
    wm = manager(env, tmp_path)
    inbox = wm.show_inbox()
    qtbot.addWidget(inbox)
    wm.open_chat("p/a").reply_edit.setPlainText("one")
    wm.chats["p/a"].send_reply()
    assert replies_at_risk(env.store.state) == 1
    inbox.sign_out_action.trigger()
    box = wm.sign_out_box
    assert box is not None
    assert box.isVisible()
    assert "deletes this computer's copy" in box.text()
    assert "1 reply has not been confirmed yet and will be lost." in box.text()
    assert box.accessibleName() == "Sign out"
    with qtbot.assertNotEmitted(wm.sign_out_confirmed):
        box.button(QMessageBox.StandardButton.Cancel).click()
    assert wm.sign_out_box is None or not wm.sign_out_box.isVisible()

    box = wm.ask_sign_out()
    confirm = box.findChild(QPushButton, "signOut")
    assert confirm.accessibleName()
    with qtbot.waitSignal(wm.sign_out_confirmed):
        confirm.click()
    wm.close_all()


def test_sign_out_question_without_replies_at_risk():
    text = sign_out_question(0)
    assert "sign in again" in text
    assert "will be lost" not in text
    assert "3 replies have not been confirmed" in sign_out_question(3)


def test_signed_out_closes_chats_and_forgets_the_session(qtbot, env, tmp_path):
    wm = manager(env, tmp_path)
    wm.open_chat("p/a").reply_edit.setPlainText("secret plan")
    wm.open_chat("p/b")
    wm.save_session()
    assert (tmp_path / "windows.json").exists()
    wm.signed_out()
    assert wm.chats == {}
    assert not (tmp_path / "windows.json").exists()
    assert wm.draft_store.drafts() == {}
    wm.close_all()
