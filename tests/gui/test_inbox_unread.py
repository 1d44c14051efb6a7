"""Issue 14 in the inbox: unread shown (bold, count, chat title, jump to first unread), rows
past the waiting-time target highlighted, "AI" in the Agent column for AI-handled rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont

from tests.gui.fakes import T0, SettableNow, make_env, page, summary
from tests.gui.test_customer_service import ARTIFACTS
from tray_agent.core.events import AgentRef, MessageReceived, SenderKind
from tray_agent.ui.chat_window import ChatWindow, MemoryDraftStore
from tray_agent.ui.customer_service import CustomerServiceWindow
from tray_agent.ui.models import (
    OVERDUE_BACKGROUND,
    AllActiveProxy,
    Column,
    ConversationTableModel,
    WaitingProxy,
)

pytestmark = pytest.mark.gui


def said(key: str, text: str, minutes: float = 0.0) -> MessageReceived:
    return MessageReceived(
        conversation=key, sender=SenderKind.CUSTOMER, text=text, sent_at=T0 + timedelta(minutes=minutes)
    )


@pytest.fixture
def env():
    env = make_env()
    env.feed(
        page(
            summary("p/a", "Alice", since=timedelta(minutes=-12)),  # past a 10-minute target
            summary("p/b", "Bob", since=timedelta(minutes=-3)),
            summary("p/c", "Carol", since=timedelta(minutes=-30), assigned=True, agent=AgentRef("x", "Sam")),
            summary("p/d", "Dewi", waiting=False),  # the bot answers her (dashboard)
        )
    )
    yield env
    env.close()


def cell(proxy, key: str, column: Column, role=Qt.ItemDataRole.DisplayRole):
    return proxy.index(proxy.row_of(key), column).data(role)


def test_unread_rows_are_bold_with_a_count(env):
    model = ConversationTableModel(lambda: env.bridge.state, "dashboard", clock=SettableNow(T0))
    env.bridge.conversations_changed.connect(model.on_conversations_changed)
    everyone = AllActiveProxy(model)
    env.feed(said("p/b", "hello?"), said("p/b", "anyone?", 0.1))
    assert cell(everyone, "p/b", Column.UNREAD) == "2"
    font = cell(everyone, "p/b", Column.CUSTOMER, Qt.ItemDataRole.FontRole)
    assert isinstance(font, QFont)
    assert font.bold()
    assert cell(everyone, "p/a", Column.UNREAD) == ""
    assert cell(everyone, "p/a", Column.CUSTOMER, Qt.ItemDataRole.FontRole) is None
    assert model.headerData(Column.UNREAD, Qt.Orientation.Horizontal) == "Unread"


def test_rows_past_the_waiting_time_target_are_highlighted(env):
    clock = SettableNow(T0)
    model = ConversationTableModel(lambda: env.bridge.state, "dashboard", clock=clock)
    waiting = WaitingProxy(model)
    background = Qt.ItemDataRole.BackgroundRole
    assert cell(waiting, "p/a", Column.CUSTOMER, background) is None  # no target set
    model.set_sla_minutes(10)
    assert cell(waiting, "p/a", Column.CUSTOMER, background) == QColor(OVERDUE_BACKGROUND)
    assert cell(waiting, "p/a", Column.WAITING, Qt.ItemDataRole.ToolTipRole).startswith(
        "Waiting longer than the target of 10 min"
    )
    assert cell(waiting, "p/b", Column.CUSTOMER, background) is None  # 3 minutes
    assert cell(waiting, "p/c", Column.CUSTOMER, background) is None  # taken: not ours to rush
    clock.advance(8 * 60)
    model.tick()
    assert cell(waiting, "p/b", Column.CUSTOMER, background) == QColor(OVERDUE_BACKGROUND)


def test_agent_column_reads_ai_for_ai_handled_rows(env):
    model = ConversationTableModel(lambda: env.bridge.state, "dashboard", clock=SettableNow(T0))
    everyone = AllActiveProxy(model)
    assert cell(everyone, "p/d", Column.AGENT) == "AI"
    assert cell(everyone, "p/b", Column.AGENT) == "Nobody yet"
    assert cell(everyone, "p/c", Column.AGENT) == "Sam"
    org = make_env()
    org.feed(
        page(
            summary("o/1", "Ann", waiting=False, handled_by="ai"),
            summary("o/2", "Budi", handled_by="ai"),  # escalated: waits for a human now
        )
    )
    org_model = ConversationTableModel(lambda: org.bridge.state, "org", clock=SettableNow(T0))
    org_all = AllActiveProxy(org_model)
    assert cell(org_all, "o/1", Column.AGENT) == "AI"
    assert cell(org_all, "o/2", Column.AGENT) == "Nobody yet"
    org.close()


def test_inbox_jumps_to_the_first_unread(qtbot, env):
    window = CustomerServiceWindow(env.bridge, env.sink, "dashboard", clock=env.clock)
    window.model.set_sla_minutes(10)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert not window.jump_to_first_unread()  # nothing unread yet
    env.feed(said("p/d", "are you there?"))  # only in "All customers"
    window.findChild(type(window.first_unread_action), "firstUnread").trigger()
    assert window.current_index == 2
    assert window.selected_key() == "p/d"
    ARTIFACTS.mkdir(exist_ok=True)
    env.feed(said("p/a", "hello?"))
    window.set_current_tab(2)
    assert window.grab().save(str(ARTIFACTS / "inbox-unread-sla.png"))


def test_chat_window_title_counts_unread(qtbot, env):
    window = ChatWindow("p/b", env.bridge, env.store.dispatch, env.sink, MemoryDraftStore())
    qtbot.addWidget(window)
    env.feed(said("p/b", "hello?"), said("p/b", "anyone?", 0.1))  # the window is not focused
    assert window.windowTitle().startswith("(2) Bob")
