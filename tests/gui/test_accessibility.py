"""Accessibility: every interactive widget of every window has an accessible name and description;
tab order and focus are sensible; new escalations are announced; nothing is clipped at 200 % text."""

from __future__ import annotations

from datetime import timedelta

import pytest
from PySide6.QtGui import QAction, QFont
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMenuBar,
    QPlainTextEdit,
    QTabBar,
    QTextEdit,
    QWidget,
)

from tests.gui.fakes import T0, make_env, page, summary
from tray_agent.core.events import (
    AgentRef,
    AssignmentAction,
    AssignmentChanged,
    HumanRequested,
    WaitingChanged,
)
from tray_agent.core.settings import QuickReplySetting, Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.ui.accessibility import EscalationAnnouncer
from tray_agent.ui.signin_dialog import SignInDialog
from tray_agent.ui.windows import WindowManager

pytestmark = pytest.mark.gui

INTERACTIVE = (
    QAbstractButton,
    QLineEdit,
    QTextEdit,
    QPlainTextEdit,
    QComboBox,
    QAbstractSpinBox,
    QTabBar,
    QAbstractItemView,
)


def _is_qt_internal(widget: QWidget) -> bool:
    """Parts Qt builds inside a composite widget, named through the composite."""
    name = widget.objectName()
    if isinstance(widget, QTabBar):
        return False  # a tab widget's bar is where the keyboard is: it needs its own name
    if name.startswith("qt_") or name.startswith("_q_"):
        return True
    if isinstance(widget, QHeaderView):
        return True  # named by its view; each section's title is its accessible text
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, (QAbstractSpinBox, QComboBox, QTabBar)):
            return True
        parent = parent.parentWidget()
    return False


def interactive_widgets(root: QWidget) -> list[QWidget]:
    return [
        w
        for w in root.findChildren(QWidget)
        if isinstance(w, INTERACTIVE) and not _is_qt_internal(w) and w.focusPolicy() != 0
    ]


def accessible_problems(root: QWidget) -> list[str]:
    problems = []
    for widget in interactive_widgets(root):
        label = (
            f"{type(widget).__name__} {widget.objectName()!r} text={getattr(widget, 'text', lambda: '')()!r}"
        )
        if not widget.accessibleName().strip():
            problems.append("no accessible name: " + label)
        if not widget.accessibleDescription().strip():
            problems.append("no accessible description: " + label)
    for action in root.findChildren(QAction):
        if action.isSeparator() or not action.associatedObjects() or action.objectName().startswith("_q_"):
            continue
        if action.menu() is not None and not action.menu().actions():
            continue
        owner = action.parent()
        if isinstance(owner, QMenu) and isinstance(owner.parent(), QMenuBar) and not owner.title():
            continue  # the menu bar's overflow menu (Qt's own)
        if not action.text().replace("&", "").strip():
            owner = action.parent()
            where = owner.title() if isinstance(owner, QMenu) else type(owner).__name__
            problems.append(f"action without text: {action.objectName()!r} in {where!r}")
    return problems


@pytest.fixture
def manager(qtbot, tmp_path):
    env = make_env()
    env.feed(
        page(
            summary("p/a", "Alice", since=timedelta(minutes=-12)),
            summary("p/b", "Budi", since=timedelta(minutes=-3)),
        )
    )
    settings = Settings()
    settings.ui.team_quick_replies = [QuickReplySetting(name="hello", text="Hello {customer_name}!")]
    settings.ui.quick_replies = [QuickReplySetting(name="mine", text="Mine", text_id="Punyaku")]
    manager = env.window_manager(
        tmp_path / "windows.json", LoadedSettings(settings=settings, locked=frozenset({"connection.server"}))
    )
    yield env, manager
    manager.close_all()
    env.close()


def all_windows(qtbot, manager: WindowManager) -> list[QWidget]:
    windows: list[QWidget] = [
        manager.show_inbox(),
        manager.open_chat("p/a"),
        manager.show_settings(),
        manager.show_keyboard_help(),
    ]
    for dialect in ("org", "dashboard"):
        dialog = SignInDialog(
            LoadedSettings(settings=Settings(), locked=frozenset({"connection.server"})), dialect
        )
        qtbot.addWidget(dialog)
        windows.append(dialog)
    return windows


def test_accessibility_every_interactive_widget_has_a_name_and_description(manager, qtbot):
    _env, windows = manager
    roots = all_windows(qtbot, windows)
    checked = 0
    problems = []
    for root in roots:
        checked += len(interactive_widgets(root))
        problems += [f"{type(root).__name__}: {p}" for p in accessible_problems(root)]
    assert checked > 60  # the walk found the widgets (an empty walk would pass vacuously)
    assert problems == [], "\n".join(problems)


def test_accessibility_status_window_and_tray_menu(qtbot):
    from tests.gui.conftest import SettableClock
    from tray_agent.core.policy import AlertPolicy
    from tray_agent.core.settings import AlertSettings
    from tray_agent.ui.effects import EffectRunner
    from tray_agent.ui.tray import TrayController

    env = make_env()
    clock = SettableClock()
    runner = EffectRunner(AlertPolicy(AlertSettings()), _NullNotifier(), _NullSound(), clock, AlertSettings())
    tray = TrayController(env.bridge, runner, env.sink, clock, tray_available=False)
    window = tray.show_status_window()
    qtbot.addWidget(window)
    assert accessible_problems(window) == []
    assert all(a.text() for a in tray.menu.actions() if not a.isSeparator())
    tray.hide()
    env.close()


class _NullNotifier:
    available = False

    def set_callback(self, callback):
        pass

    async def show(self, toast):
        pass

    async def withdraw(self, key):
        pass


class _NullSound:
    available = False

    def play(self, sound, volume=1.0):
        pass


def test_accessibility_inbox_tab_order_reaches_every_control(manager, qtbot):
    _env, windows = manager
    inbox = windows.show_inbox()
    qtbot.waitExposed(inbox)
    inbox.select_conversation("p/a")  # the buttons are enabled (disabled ones are skipped)
    inbox.search_edit.setFocus()
    seen = []
    widget = inbox.search_edit
    for _step in range(12):
        seen.append(widget)
        widget = widget.nextInFocusChain()
        while not (widget.focusPolicy() & 0x1) or not widget.isVisibleTo(inbox) or not widget.isEnabled():
            widget = widget.nextInFocusChain()
    order = [
        w for w in seen if w in (inbox.search_edit, inbox.tabs.tabBar(), inbox.tables[0], inbox.open_button)
    ]
    assert order[:4] == [inbox.search_edit, inbox.tabs.tabBar(), inbox.tables[0], inbox.open_button]


def test_accessibility_new_escalation_is_announced(qtbot):
    env = make_env()
    env.feed(page(summary("p/old", "Old")))
    target = QLabel("x")
    qtbot.addWidget(target)
    announcer = EscalationAnnouncer(env.bridge, lambda: target)
    with qtbot.waitSignal(announcer.announced) as blocker:
        env.feed(HumanRequested(conversation="p/new", customer_name="Ana", text="help"))
    assert blocker.args == ["Ana asks for a human"]
    announced = []
    announcer.announced.connect(announced.append)
    env.feed(HumanRequested(conversation="p/new", customer_name="Ana", text="again"))
    assert announced == []  # already known: not news
    env.feed(
        page(
            summary("p/old", "Old"),
            summary("p/new", "Ana"),
            summary("p/x", "X"),
            summary("p/y", "Y"),
        )
    )
    assert announced == ["2 customers ask for a human"]
    # Released (no longer waiting), then asking again: news again.
    env.feed(WaitingChanged(conversation="p/new", waiting=False, at=T0))
    env.feed(HumanRequested(conversation="p/new", customer_name="Ana", text="still there?"))
    assert announced[-1] == "Ana asks for a human"
    # Taken by an agent while waiting, then handed back to the queue: news again.
    env.feed(AssignmentChanged(conversation="p/x", action=AssignmentAction.ASSIGNED, agent=AgentRef("a-2")))
    env.feed(AssignmentChanged(conversation="p/x", action=AssignmentAction.UNASSIGNED))
    assert announced[-1] == "X asks for a human"
    assert len(announced) == 3
    env.close()


def test_accessibility_no_clipping_at_double_font_size(manager, qtbot):
    app = QApplication.instance()
    old = app.font()
    big = QFont(old)
    big.setPointSizeF(old.pointSizeF() * 2)
    app.setFont(big)
    try:
        _env, windows = manager
        inbox = windows.show_inbox()
        chat = windows.open_chat("p/a")
        for window in (inbox, chat):
            window.adjustSize()
            window.resize(window.sizeHint().expandedTo(window.size()))
            QApplication.processEvents()
            for button in window.findChildren(QAbstractButton):
                if button.isVisibleTo(window) and button.text():
                    hint = button.sizeHint()
                    assert button.width() >= hint.width() - 1, (button.text(), button.width(), hint)
                    assert button.height() >= hint.height() - 1, button.text()
            for label in window.findChildren(QLabel):
                if label.isVisibleTo(window) and label.text() and not label.wordWrap():
                    assert label.width() >= label.sizeHint().width() - 1, label.text()
        assert chat.reply_edit.height() >= chat.reply_edit.fontMetrics().lineSpacing() * 2
    finally:
        app.setFont(old)
