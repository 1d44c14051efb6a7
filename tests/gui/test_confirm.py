"""The Quit / Sign out warning while the agent holds customers."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMessageBox

from tests.gui.fakes import make_env, page, summary
from tray_agent.core.commands import Release
from tray_agent.core.events import AgentRef, CommandKind, CommandSucceeded
from tray_agent.core.i18n import set_language
from tray_agent.ui.confirm import LeaveAction, LeaveChoice, LeaveGuard, leave_question

pytestmark = pytest.mark.gui


def _env_holding(*keys: str):
    env = make_env()
    env.feed(
        page(*(summary(k, f"Customer {k}", assigned=True, agent=AgentRef("me-1"), to_me=True) for k in keys))
    )
    return env


def test_leave_question_counts_and_says_they_stay_assigned() -> None:
    set_language("en")
    assert leave_question(3).startswith("You are handling 3 customers: they stay assigned to you.")
    assert leave_question(1).startswith("You are handling 1 customer: they stay assigned to you.")


def test_nobody_held_goes_on_at_once(qtbot) -> None:
    env = make_env()
    guard = LeaveGuard(env.bridge, env.sink)
    done: list[str] = []
    assert guard.request(LeaveAction.QUIT, lambda: done.append("quit")) is True
    assert done == ["quit"]
    assert guard.box is None
    env.close()


def test_keep_goes_on_and_cancel_stays(qtbot) -> None:
    env = _env_holding("p/a", "p/b", "p/c")
    guard = LeaveGuard(env.bridge, env.sink)
    done: list[str] = []
    assert guard.request(LeaveAction.QUIT, lambda: done.append("quit")) is False
    box = guard.box
    assert box is not None
    qtbot.addWidget(box)
    assert "You are handling 3 customers: they stay assigned to you." in box.text()
    assert box.accessibleName() == "You are handling customers"
    guard.choose(LeaveChoice.CANCEL)
    assert done == []
    guard.request(LeaveAction.SIGN_OUT, lambda: done.append("sign out"))
    guard.choose(LeaveChoice.KEEP)
    assert done == ["sign out"]
    assert env.sink.of(Release) == []
    env.close()


def test_release_first_releases_then_goes_on_once_confirmed(qtbot) -> None:
    env = _env_holding("p/a", "p/b")
    guard = LeaveGuard(env.bridge, env.sink)
    done: list[str] = []
    guard.request(LeaveAction.QUIT, lambda: done.append("quit"))
    box = guard.box
    assert box is not None
    qtbot.addWidget(box)
    release_button = next(b for b in box.buttons() if b.objectName() == "releaseFirst")
    assert box.buttonRole(release_button) is QMessageBox.ButtonRole.AcceptRole
    release_button.click()
    releases = env.sink.of(Release)
    assert sorted(r.conversation for r in releases) == ["p/a", "p/b"]
    assert done == []  # waits for the server
    first, second = releases
    env.feed(
        CommandSucceeded(
            command_id=first.command_id, kind=CommandKind.RELEASE, conversation=first.conversation
        )
    )
    assert done == []
    env.feed(
        CommandSucceeded(
            command_id=second.command_id, kind=CommandKind.RELEASE, conversation=second.conversation
        )
    )
    assert done == ["quit"]
    env.close()


def test_unconfirmed_releases_go_on_after_the_wait(qtbot, monkeypatch) -> None:
    env = _env_holding("p/a")
    guard = LeaveGuard(env.bridge, env.sink, release_wait_ms=10)
    done: list[str] = []
    guard.request(LeaveAction.QUIT, lambda: done.append("quit"))
    guard.choose(LeaveChoice.RELEASE)
    qtbot.waitUntil(lambda: done == ["quit"], timeout=2000)
    env.close()
