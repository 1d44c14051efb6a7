"""Tests of the WindowManager: one chat per customer, dialogs, and session restore."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.gui.fakes import make_env, page, summary
from tray_agent.core.commands import LoadHistory
from tray_agent.core.settings import Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.ui.signin_dialog import SignInRequest
from tray_agent.ui.windows import WindowManager

pytestmark = pytest.mark.gui


@pytest.fixture
def env():
    e = make_env()
    e.feed(page(summary("p/a", "Alice", since=timedelta(minutes=-4)), summary("p/b", "Bob")))
    yield e
    e.close()


def manager(env, tmp_path, dialect="dashboard") -> WindowManager:
    return WindowManager(
        env.store,
        env.sink,
        LoadedSettings(settings=Settings()),
        dialect,
        env.bridge,
        state_file=tmp_path / "windows.json",
        clock=env.clock,
    )


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
        settings_dialog._on_buttons_accepted()
    assert isinstance(blocker.args[0], Settings)
    wm.settings_save_failed("Could not write the settings file.")
    assert wm.settings_dialog._problem_label.text() == "Could not write the settings file."

    inbox = wm.show_inbox()
    qtbot.addWidget(inbox)
    with qtbot.waitSignal(wm.quit_requested):
        inbox._quit_action.trigger()
    wm.close_all()
