"""Tests of the Customer Service inbox window, driven by a real Store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from tests.gui.fakes import T0, make_env, page, summary
from tray_agent.core.commands import HandBack, Release, Resolve, TakeOver
from tray_agent.core.events import (
    AgentRef,
    AssignmentAction,
    AssignmentChanged,
    CommandFailed,
    CommandKind,
    CommandSucceeded,
    ConnectionChanged,
    ConnectionState,
    FailureReason,
)
from tray_agent.ui.customer_service import CustomerServiceWindow
from tray_agent.ui.models import Column

pytestmark = pytest.mark.gui

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def rows():
    return page(
        summary("p/a", "Alice", since=timedelta(minutes=-12), last="Where is my order?"),
        summary("p/b", "Bob <script>alert(1)</script>", since=timedelta(minutes=-3), last="<b>help</b>"),
        summary(
            "p/c", "Carol", since=timedelta(minutes=-7), assigned=True, agent=AgentRef("me-1"), to_me=True
        ),
        summary("p/d", "Dan", since=timedelta(minutes=-30), assigned=True, agent=AgentRef("x", "Sam Agent")),
        summary("p/e", "Erin", waiting=False, channel="Other page", last="thanks!"),
    )


@pytest.fixture
def inbox(qtbot):
    env = make_env()
    env.feed(rows())
    window = CustomerServiceWindow(env.bridge, env.sink, "dashboard", clock=env.clock)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    yield env, window
    env.close()


def tab_keys(window, tab):
    return list(window.proxies[tab].keys())


def test_inbox_tabs_show_the_right_customers(inbox):
    _env, window = inbox
    # Issue 14: taken customers (p/c mine, p/d a colleague's) are not waiting any more.
    assert tab_keys(window, 0) == ["p/a", "p/b"]
    assert tab_keys(window, 1) == ["p/c"]
    assert set(tab_keys(window, 2)) == {"p/a", "p/b", "p/c", "p/d", "p/e"}
    titles = [window.tabs.tabText(i) for i in range(3)]
    assert titles == ["Waiting for a human (2)", "Mine (1)", "All customers (5)"]
    table = window.current_table
    assert table.verticalHeader().sectionResizeMode(0) == table.verticalHeader().ResizeMode.Fixed
    assert window.proxies[0].index(0, Column.WAITING).data() == "12:00"


def test_search_filters_every_tab(inbox, qtbot):
    _env, window = inbox
    qtbot.keyClicks(window.search_edit, "order")
    assert tab_keys(window, 0) == ["p/a"]
    window.search_edit.clear()
    qtbot.keyClicks(window.search_edit, "other page")
    assert tab_keys(window, 0) == []
    assert tab_keys(window, 2) == ["p/e"]


def test_enter_opens_the_selected_chat(inbox, qtbot):
    _env, window = inbox
    window.search_edit.setFocus()
    qtbot.keyClick(window.search_edit, Qt.Key.Key_Down)  # into the table, first row selected
    table = window.current_table
    assert table.hasFocus() or QApplication.focusWidget() is table
    qtbot.keyClick(table, Qt.Key.Key_Down)
    with qtbot.waitSignal(window.chat_requested) as blocker:
        qtbot.keyClick(table, Qt.Key.Key_Return)
    assert blocker.args == ["p/b"]  # the second waiting row (p/d and p/c are taken)


def test_take_over_and_release_submit_commands(inbox, qtbot):
    env, window = inbox
    assert window.select_conversation("p/b")
    assert window.take_over_button.isEnabled()
    assert not window.release_button.isEnabled()
    qtbot.mouseClick(window.take_over_button, Qt.MouseButton.LeftButton)
    take = env.sink.last(TakeOver)
    assert take.conversation == "p/b"
    env.bridge.flush_now()
    # Bob left Waiting: nobody else is selected in his place, so a second press takes nobody.
    assert window.selected_key() == ""
    assert not window.take_over_button.isEnabled()  # pending: no double take-over
    env.feed(CommandSucceeded(command_id=take.command_id, kind=CommandKind.TAKE_OVER, conversation="p/b"))
    assert "p/b" in tab_keys(window, 1)
    assert "p/b" not in tab_keys(window, 0)  # taken: left Waiting (issue 14)
    window.tabs.setCurrentIndex(1)
    assert window.select_conversation("p/b")
    assert window.release_button.isEnabled()
    qtbot.mouseClick(window.release_button, Qt.MouseButton.LeftButton)
    assert env.sink.last(Release).conversation == "p/b"
    # Another agent's customer: neither button.
    window.tabs.setCurrentIndex(2)
    assert window.select_conversation("p/d")
    assert not window.take_over_button.isEnabled()
    assert not window.release_button.isEnabled()


def test_conflict_rolls_back_and_names_who_has_the_customer(inbox, qtbot):
    env, window = inbox
    window.select_conversation("p/a")
    qtbot.mouseClick(window.take_over_button, Qt.MouseButton.LeftButton)
    take = env.sink.last(TakeOver)
    env.bridge.flush_now()
    assert "p/a" not in tab_keys(window, 0)  # taken (optimistically): left Waiting
    assert window.proxies[2].index(window.proxies[2].row_of("p/a"), Column.AGENT).data() == "Me"
    env.feed(
        CommandFailed(
            command_id=take.command_id,
            kind=CommandKind.TAKE_OVER,
            conversation="p/a",
            reason=FailureReason.ALREADY_ASSIGNED,
            text="Customer is already assigned to sam@example.com",
        )
    )
    banner = window.conflict_banner
    assert banner.isVisible()
    assert banner.text == "Could not take over Alice: Customer is already assigned to sam@example.com"
    row = window.proxies[2].row_of("p/a")
    assert window.proxies[2].index(row, Column.AGENT).data() == "Another agent"  # rolled back
    assert "p/a" not in tab_keys(window, 1)

    # The dashboard often sends an empty email (G9): the agent known later is named instead.
    window.select_conversation("p/b")
    qtbot.mouseClick(window.take_over_button, Qt.MouseButton.LeftButton)
    take = env.sink.last(TakeOver)
    env.feed(
        CommandFailed(
            command_id=take.command_id,
            kind=CommandKind.TAKE_OVER,
            conversation="p/b",
            reason=FailureReason.ALREADY_ASSIGNED,
            text="Customer is already assigned to ",
        )
    )
    assert banner.text == "Bob <script>alert(1)</script> is already being handled by another agent."
    env.feed(
        AssignmentChanged(
            conversation="p/b", action=AssignmentAction.ASSIGNED, agent=AgentRef("z", "Zoe"), at=T0
        )
    )
    assert banner.text == "Bob <script>alert(1)</script> is already being handled by Zoe."
    assert banner.label.textFormat() == Qt.TextFormat.PlainText
    qtbot.mouseClick(banner.close_button, Qt.MouseButton.LeftButton)
    assert not banner.isVisible()


def test_connection_state_in_the_status_bar(inbox):
    env, window = inbox
    assert window.connection_label.text().startswith("Connected")
    env.feed(ConnectionChanged(state=ConnectionState.RECONNECTING, detail="server unreachable", retry_in=4.2))
    assert window.connection_label.text().startswith("Connection lost, reconnecting… (next try in 4 s)")
    assert "server unreachable" in window.connection_label.text()


def test_hidden_inbox_does_no_view_work_then_catches_up(inbox, qtbot):
    env, window = inbox
    window.hide()
    assert not window.model.ticking
    env.feed(page(*rows().customers, summary("p/z", "Zed", since=timedelta(minutes=-1))))
    assert "p/z" not in tab_keys(window, 0)
    window.show()
    assert tab_keys(window, 0)[-1] == "p/z"
    assert window.model.ticking


def test_every_interactive_widget_has_an_accessible_name(inbox):
    _env, window = inbox
    for widget in (
        window.search_edit,
        window.tabs,
        *window.tables,
        window.open_button,
        window.take_over_button,
        window.release_button,
        window.conflict_banner.close_button,
    ):
        assert widget.accessibleName(), widget


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_inbox_screenshot(inbox, theme, qtbot):
    _env, window = inbox
    app = QApplication.instance()
    old = app.palette()
    app.setPalette(dark_palette() if theme == "dark" else light_palette())
    try:
        QApplication.processEvents()  # deliver the palette change
        window.resize(900, 360)
        window.select_conversation("p/a")
        ARTIFACTS.mkdir(exist_ok=True)
        assert window.grab().save(str(ARTIFACTS / f"inbox-{theme}.png"))
    finally:
        app.setPalette(old)


def light_palette() -> QPalette:
    palette = QPalette()
    for role, color in (
        (QPalette.ColorRole.Window, "#f3f3f3"),
        (QPalette.ColorRole.Base, "#ffffff"),
        (QPalette.ColorRole.AlternateBase, "#eef2f6"),
        (QPalette.ColorRole.Text, "#1b1b1b"),
        (QPalette.ColorRole.WindowText, "#1b1b1b"),
        (QPalette.ColorRole.Button, "#e6e6e6"),
        (QPalette.ColorRole.ButtonText, "#1b1b1b"),
        (QPalette.ColorRole.Highlight, "#2f6fd6"),
        (QPalette.ColorRole.HighlightedText, "#ffffff"),
        (QPalette.ColorRole.Link, "#1a5fc4"),
    ):
        palette.setColor(role, QColor(color))
    return palette


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, color in (
        (QPalette.ColorRole.Window, "#202124"),
        (QPalette.ColorRole.Base, "#17181a"),
        (QPalette.ColorRole.AlternateBase, "#25272b"),
        (QPalette.ColorRole.Text, "#e8eaed"),
        (QPalette.ColorRole.WindowText, "#e8eaed"),
        (QPalette.ColorRole.Button, "#303134"),
        (QPalette.ColorRole.ButtonText, "#e8eaed"),
        (QPalette.ColorRole.Highlight, "#8ab4f8"),
        (QPalette.ColorRole.HighlightedText, "#202124"),
        (QPalette.ColorRole.Link, "#8ab4f8"),
        (QPalette.ColorRole.PlaceholderText, "#9aa0a6"),
    ):
        palette.setColor(role, QColor(color))
    return palette


def test_resolve_and_hand_back_are_offered_for_my_customers(inbox, qtbot):
    env, window = inbox
    window.tabs.setCurrentIndex(2)  # All customers: taken ones are not in Waiting (issue 14)
    assert window.select_conversation("p/a")  # nobody has Alice: nothing to resolve or hand back
    assert not window.resolve_button.isEnabled()
    assert not window.hand_back_button.isEnabled()
    assert window.select_conversation("p/d")  # Sam's
    assert not window.resolve_button.isEnabled()
    assert window.select_conversation("p/c")  # mine
    assert window.resolve_button.isEnabled()
    assert window.hand_back_button.isEnabled()
    assert window.resolve_button.accessibleName() == "Resolve the selected conversation"
    qtbot.mouseClick(window.hand_back_button, Qt.MouseButton.LeftButton)
    assert env.sink.last(HandBack).conversation == "p/c"
    qtbot.mouseClick(window.resolve_button, Qt.MouseButton.LeftButton)
    resolve = env.sink.last(Resolve)
    assert resolve.conversation == "p/c"
    env.feed(CommandSucceeded(command_id=resolve.command_id, kind=CommandKind.RESOLVE, conversation="p/c"))
    # Gone from Waiting and Mine at once, and not counted.
    assert "p/c" not in tab_keys(window, 0)
    assert "p/c" not in tab_keys(window, 1)
    assert window.tabs.tabText(1) == "Mine (0)"


def test_conflict_banner_take_anyway_forces_the_take_over(inbox, qtbot):
    env, window = inbox
    window.select_conversation("p/a")
    qtbot.mouseClick(window.take_over_button, Qt.MouseButton.LeftButton)
    take = env.sink.last(TakeOver)
    assert take.force is False
    env.feed(
        CommandFailed(
            command_id=take.command_id,
            kind=CommandKind.TAKE_OVER,
            conversation="p/a",
            reason=FailureReason.ALREADY_ASSIGNED,
            text="Sari is already handling this customer",
        )
    )
    banner = window.conflict_banner
    assert banner.take_anyway_button.isVisible()
    assert banner.take_anyway_button.accessibleName() == "Take this customer anyway"
    qtbot.mouseClick(banner.take_anyway_button, Qt.MouseButton.LeftButton)
    forced = env.sink.last(TakeOver)
    assert (forced.conversation, forced.force) == ("p/a", True)
    assert not banner.isVisible()


def test_a_conversation_the_server_refused_is_no_row(inbox):
    env, window = inbox
    refused = CommandFailed(
        command_id="h", kind=CommandKind.HISTORY, conversation="inbox", reason=FailureReason.NOT_FOUND
    )
    env.feed(refused)  # a chat window opened on a stale link: the bridge tells the key
    assert "inbox" in env.store.state.refused
    assert set(tab_keys(window, 2)) == {"p/a", "p/b", "p/c", "p/d", "p/e"}
    assert window.tabs.tabText(2) == "All customers (5)"
