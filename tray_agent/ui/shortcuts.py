"""Keyboard paths inside the app: shortcuts in every window, next waiting customer, and their help."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tray_agent.core.i18n import N_, _
from tray_agent.core.state import Conversation, State

logger = logging.getLogger(__name__)


class Shortcut(enum.StrEnum):
    """What the agent can do from the keyboard in any of the app's windows."""

    OPEN_INBOX = "open_inbox"
    NEXT_WAITING = "next_waiting"
    TAKE_OVER = "take_over"
    RELEASE = "release"
    RESOLVE = "resolve"
    HAND_BACK = "hand_back"
    CLOSE = "close"
    HELP = "help"


@dataclass(frozen=True, slots=True)
class ShortcutInfo:
    """One shortcut: its keys and what it does (English, translated when shown).

    Keys are kept as text or a standard key: a QKeySequence needs a running QGuiApplication.
    """

    keys: str | QKeySequence.StandardKey
    label: str
    description: str

    def sequences(self) -> list[QKeySequence]:
        """Every binding (a standard key has several per platform: Ctrl+F4 and Ctrl+W)."""
        if isinstance(self.keys, QKeySequence.StandardKey):
            return list(QKeySequence.keyBindings(self.keys))
        return [QKeySequence(self.keys)]

    def keys_text(self) -> str:
        """The bindings as shown in the help, in the platform's notation ("Ctrl+F4, Ctrl+W").

        Dedicated keys (a keyboard's own Close or Help key) are left out of the list.
        """
        shown = [s for s in self.sequences() if _typeable(s)] or self.sequences()
        return ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in shown)


def _typeable(sequence: QKeySequence) -> bool:
    combination = sequence[0]  # type: ignore[index]  # PySide6 stubs lack QKeySequence.__getitem__
    key = combination.key()
    return bool(combination.keyboardModifiers()) or Qt.Key.Key_F1.value <= key.value <= Qt.Key.Key_F35.value


SHORTCUTS: Final[dict[Shortcut, ShortcutInfo]] = {
    Shortcut.OPEN_INBOX: ShortcutInfo(
        "Ctrl+Shift+I", N_("Open the inbox"), N_("Show the Customer Service window.")
    ),
    Shortcut.NEXT_WAITING: ShortcutInfo(
        "Ctrl+Shift+N",
        N_("Next waiting customer"),
        N_("Open the chat of the customer who has waited longest and nobody has taken."),
    ),
    Shortcut.TAKE_OVER: ShortcutInfo(
        "Ctrl+Shift+T",
        N_("Take over"),
        N_("Take over the customer of this chat, or the one selected in the inbox."),
    ),
    Shortcut.RELEASE: ShortcutInfo(
        "Ctrl+Shift+R",
        N_("Release"),
        N_("Give the customer back so that another agent can take them."),
    ),
    Shortcut.RESOLVE: ShortcutInfo(
        "Ctrl+Shift+D",
        N_("Resolve"),
        N_("Close the conversation of your customer: they leave your list."),
    ),
    Shortcut.HAND_BACK: ShortcutInfo(
        "Ctrl+Shift+B",
        N_("Hand back to AI"),
        N_("Give your customer back to the AI (or the bot)."),
    ),
    Shortcut.CLOSE: ShortcutInfo(
        QKeySequence.StandardKey.Close, N_("Close window"), N_("Close this chat window.")
    ),
    Shortcut.HELP: ShortcutInfo(
        QKeySequence.StandardKey.HelpContents,
        N_("Keyboard shortcuts"),
        N_("Show this list of shortcuts."),
    ),
}
"""The app's own shortcuts. Ctrl+Shift combinations stay clear of the reply box's editing keys."""

OTHER_KEYS: Final = (
    ("Ctrl+F", N_("Search the inbox")),
    ("Down", N_("From the search box to the list")),
    ("Enter", N_("Open the selected customer's chat (inbox), or send the reply (chat)")),
    ("Shift+Enter", N_("New line in the reply")),
    ("/", N_("Quick replies: type / then a name at the start of the reply box")),
    ("Tab / Shift+Tab", N_("Move between controls")),
    ("Ctrl+Tab", N_("Next tab in the inbox")),
    ("Ctrl+Shift+U", N_("First conversation with unread messages (inbox)")),
    ("Esc", N_("Clear the search, or close the quick-reply list")),
)
"""Keys that Qt or the windows handle themselves, listed in the help for completeness."""


class WindowsLike(Protocol):
    """What the shortcuts need of the window manager."""

    def show_inbox(self) -> object:
        """Show the inbox."""
        ...

    def open_chat(self, conversation: str) -> object:
        """Open a chat window."""
        ...


def next_waiting(state: State) -> Conversation | None:
    """The customer to serve next: the longest-waiting one nobody has (or is taking over)."""
    for conv in state.waiting_list():
        if not conv.assigned and conv.pending_takeover is None:
            return conv
    return None


class ShortcutController(QObject):
    """Puts the app's shortcuts into every window; the global ones act the same everywhere.

    Each window gets its own QActions (window context), so a key works in whichever app window is
    active, and a window's own targets (the chat's customer, the inbox's selection) are used.

    Args:
        windows: the window manager (inbox, chats).
        state: returns the current store snapshot.
        parent: the Qt parent.

    Signals:
        help_requested(): F1 was pressed in a window.
        triggered(str): a shortcut ran (its :class:`Shortcut` value), for tests and logging.
    """

    help_requested = Signal()
    triggered = Signal(str)

    def __init__(
        self, windows: WindowsLike, state: Callable[[], State], parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._windows = windows
        self._state = state

    def attach(
        self,
        window: QWidget,
        *,
        take_over: Callable[[], object] | None = None,
        release: Callable[[], object] | None = None,
        close: Callable[[], object] | None = None,
        resolve: Callable[[], object] | None = None,
        hand_back: Callable[[], object] | None = None,
    ) -> dict[Shortcut, QAction]:
        """Add the shortcuts to ``window``; the optional ones only when it has a target for them.

        Returns:
            The actions added (also reachable with ``window.findChild(QAction, "shortcut:<name>")``).
        """
        handlers: dict[Shortcut, Callable[[], object] | None] = {
            Shortcut.OPEN_INBOX: self.open_inbox,
            Shortcut.NEXT_WAITING: self.open_next_waiting,
            Shortcut.TAKE_OVER: take_over,
            Shortcut.RELEASE: release,
            Shortcut.RESOLVE: resolve,
            Shortcut.HAND_BACK: hand_back,
            Shortcut.CLOSE: close,
            Shortcut.HELP: self.help_requested.emit,
        }
        actions: dict[Shortcut, QAction] = {}
        for shortcut, handler in handlers.items():
            if handler is None:
                continue
            info = SHORTCUTS[shortcut]
            action = QAction(_(info.label), window)
            action.setObjectName(f"shortcut:{shortcut}")
            action.setShortcuts(info.sequences())
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.setToolTip(_(info.description))
            action.setStatusTip(_(info.description))
            action.triggered.connect(lambda _checked=False, s=shortcut, h=handler: self._run(s, h))
            window.addAction(action)
            actions[shortcut] = action
        return actions

    def open_inbox(self) -> None:
        """Show the inbox."""
        self._windows.show_inbox()

    def open_next_waiting(self) -> str:
        """Open the chat of the next waiting customer; "" (and the inbox) when nobody waits."""
        conv = next_waiting(self._state())
        if conv is None:
            self._windows.show_inbox()
            return ""
        self._windows.open_chat(conv.key)
        return conv.key

    def _run(self, shortcut: Shortcut, handler: Callable[[], object]) -> None:
        try:
            handler()
        except Exception:
            logger.exception("Shortcut %s failed", shortcut)
        self.triggered.emit(str(shortcut))


class KeyboardHelpDialog(QDialog):
    """Lists the app's keyboard shortcuts (Help → Keyboard shortcuts, or F1)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("keyboardHelp")
        self.setWindowTitle(_("Keyboard shortcuts"))
        self.setAccessibleName(_("Keyboard shortcuts"))
        self.setAccessibleDescription(_("Every key the app understands, and what it does."))
        layout = QVBoxLayout(self)
        intro = QLabel(
            _("Everything can be done from the keyboard. These keys work in every window of the app."),
            self,
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        rows: list[tuple[str, str]] = [(info.keys_text(), _(info.label)) for info in SHORTCUTS.values()]
        rows += [(keys, _(text)) for keys, text in OTHER_KEYS]
        self._table = QTableWidget(len(rows), 2, self)
        self._table.setHorizontalHeaderLabels([_("Keys"), _("Action")])
        self._table.setAccessibleName(_("Keyboard shortcuts"))
        self._table.setAccessibleDescription(_("Two columns: the keys, and what they do."))
        self._table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._table.setTabKeyNavigation(False)
        self._table.verticalHeader().hide()
        self._table.setWordWrap(True)
        for row, (keys, text) in enumerate(rows):
            self._table.setItem(row, 0, QTableWidgetItem(keys))
            self._table.setItem(row, 1, QTableWidgetItem(text))
        header = self._table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self._table.resizeRowsToContents()
        layout.addWidget(self._table, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        close.setAccessibleName(_("Close"))
        close.setAccessibleDescription(_("Close the list of keyboard shortcuts."))
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(560, 460)

    @property
    def rows(self) -> list[tuple[str, str]]:
        """The (keys, action) rows shown."""
        table = self._table

        def cell(row: int, column: int) -> str:
            item = table.item(row, column)
            return item.text() if item is not None else ""

        return [(cell(r, 0), cell(r, 1)) for r in range(table.rowCount())]
