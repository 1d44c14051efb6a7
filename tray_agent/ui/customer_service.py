"""The Customer Service inbox window: waiting, mine and all conversations, take over and release."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from PySide6.QtCore import QEvent, QItemSelection, QObject, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QHideEvent, QKeyEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QTableView,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tray_agent.core.commands import HandBack, Release, Resolve, TakeOver
from tray_agent.core.events import CommandKind, FailureReason
from tray_agent.core.i18n import _, format_clock
from tray_agent.core.ports import CommandSink
from tray_agent.core.state import CommandState, ConnectionInfo, Conversation, OutboundCommand
from tray_agent.ui.bridge import StoreBridge
from tray_agent.ui.models import (
    AllActiveProxy,
    Column,
    ConversationTableModel,
    ConversationTabProxy,
    MineProxy,
    WaitingProxy,
    conflict_text,
    connection_text,
    utc_now,
)

logger = logging.getLogger(__name__)


class ConflictBanner(QFrame):
    """A non-modal strip saying who already has a customer I tried to take; closable.

    Signals:
        dismissed(): the agent closed the banner.
        take_anyway_requested(str): the agent chose "Take anyway" for the conversation shown.
    """

    dismissed = Signal()
    take_anyway_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("conflictBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self._label = QLabel(self)
        self._label.setTextFormat(Qt.TextFormat.PlainText)  # server and customer text: never markup
        self._label.setWordWrap(True)
        self._label.setAccessibleName(_("Conflict message"))
        self._close_button = QToolButton(self)
        self._close_button.setText("✕")
        self._close_button.setAccessibleName(_("Dismiss conflict message"))
        self._close_button.setAccessibleDescription(_("Hides this message. The customer stays as they are."))
        self._close_button.setToolTip(_("Dismiss"))
        self._close_button.clicked.connect(self._on_close_button_clicked)
        self._take_anyway_button = QPushButton(_("Take any&way"), self)
        self._take_anyway_button.setAccessibleName(_("Take this customer anyway"))
        self._take_anyway_button.setAccessibleDescription(
            _("Takes the customer from the agent who has them now. They are not asked first.")
        )
        self._take_anyway_button.clicked.connect(self._on_take_anyway_button_clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self._label, 1)
        layout.addWidget(self._take_anyway_button)
        layout.addWidget(self._close_button)
        self.conversation = ""
        self.server_text = ""
        self.hide()

    @property
    def text(self) -> str:
        """The message shown."""
        return self._label.text()

    def show_conflict(self, conversation: str, conv: Conversation | None, server_text: str) -> None:
        """Say who has ``conversation`` (the server's words, or the agent we know of)."""
        self.conversation = conversation
        self.server_text = server_text
        self.refresh(conv)
        self.show()

    def refresh(self, conv: Conversation | None) -> None:
        """Re-word the message after the conversation changed (e.g. the agent became known)."""
        self._label.setText(conflict_text(conv, self.server_text))

    @property
    def take_anyway_button(self) -> QPushButton:
        """The "Take anyway" button."""
        return self._take_anyway_button

    def _on_close_button_clicked(self) -> None:
        self.hide()
        self.conversation = ""
        self.dismissed.emit()

    def _on_take_anyway_button_clicked(self) -> None:
        conversation = self.conversation
        self.hide()
        self.conversation = ""
        if conversation:
            self.take_anyway_requested.emit(conversation)

    # -- test and accessibility seams (read-only views of the widgets)

    @property
    def close_button(self) -> QToolButton:
        """The dismiss (✕) button."""
        return self._close_button

    @property
    def label(self) -> QLabel:
        """The banner's message label."""
        return self._label


def new_conflicts(
    outbound: Mapping[str, OutboundCommand], reported: set[str], conversation: str | None = None
) -> list[OutboundCommand]:
    """My take-overs that failed because somebody else has the customer, not yet reported.

    Marks the returned ones as reported. ``outbound`` is bounded (core OUTBOUND_LIMIT).
    """
    found = []
    for command_id, cmd in outbound.items():
        if (
            cmd.kind is CommandKind.TAKE_OVER
            and cmd.state is CommandState.FAILED
            and cmd.reason is FailureReason.ALREADY_ASSIGNED
            and command_id not in reported
            and (conversation is None or cmd.conversation == conversation)
        ):
            reported.add(command_id)
            found.append(cmd)
    return found


class CustomerServiceWindow(QMainWindow):
    """The inbox: tabs of conversations, search, take over / release, connection status.

    Args:
        bridge: the store bridge (signals and the current snapshot).
        command_sink: where take-over and release commands go.
        dialect: ``"org"`` or ``"dashboard"``.
        parent: the Qt parent (normally None: a top-level window).
        clock: wall clock for the waiting time (tests inject one).

    Signals:
        chat_requested(str): the agent wants the chat window of a conversation.
        settings_requested(): the agent chose Settings.
        sign_in_requested(): the agent chose Sign in.
        sign_out_requested(): the agent chose Sign out (the WindowManager asks to confirm).
        quit_requested(): the agent chose Quit.
    """

    chat_requested = Signal(str)
    settings_requested = Signal()
    sign_in_requested = Signal()
    sign_out_requested = Signal()
    quit_requested = Signal()

    def __init__(
        self,
        bridge: StoreBridge,
        command_sink: CommandSink,
        dialect: str,
        parent: QWidget | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._sink = command_sink
        self._dialect = dialect
        self._selected_key = ""
        self._removing = False  # rows are being removed from a tab (see _on_table_selection_changed)
        self._jumped = False
        self._reported: set[str] = set()
        new_conflicts(bridge.state.outbound, self._reported)  # old failures are not news
        self.setWindowTitle(_("Customer Service"))
        self.setObjectName("customerServiceWindow")

        self._model = ConversationTableModel(lambda: bridge.state, dialect, self, clock=clock)
        self._model.set_active(False)  # nothing to show until the window is shown
        self._proxies: tuple[ConversationTabProxy, ...] = (
            WaitingProxy(self._model, self),
            MineProxy(self._model, self),
            AllActiveProxy(self._model, self),
        )
        self._build_ui()
        bridge.conversations_changed.connect(self._on_bridge_conversations_changed)
        bridge.connection_changed.connect(self._on_bridge_connection_changed)
        bridge.outbound_changed.connect(self._on_bridge_outbound_changed)
        self._model.ticked.connect(self._on_model_ticked)
        self._on_bridge_connection_changed(bridge.state.connection)
        self._update_tab_titles()
        self._update_buttons()

    # ------------------------------------------------------------------ construction

    def _build_ui(self) -> None:
        file_menu = self.menuBar().addMenu(_("&File"))
        self._settings_action = QAction(_("&Settings…"), self)
        self._settings_action.triggered.connect(self.settings_requested)
        self._sign_in_action = QAction(_("Sign &in…"), self)
        self._sign_in_action.triggered.connect(self.sign_in_requested)
        self._sign_out_action = QAction(_("Sign &out…"), self)
        self._sign_out_action.setObjectName("signOut")
        self._sign_out_action.setToolTip(
            _("Forget this account on this computer: conversations, drafts, queued replies, saved sign-in.")
        )
        self._sign_out_action.triggered.connect(self.sign_out_requested)
        self._close_action = QAction(_("&Close window"), self)
        self._close_action.setShortcut(QKeySequence.StandardKey.Close)
        self._close_action.triggered.connect(self.close)
        self._quit_action = QAction(_("&Quit"), self)
        self._quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        self._quit_action.triggered.connect(self.quit_requested)
        for action in (
            self._settings_action,
            self._sign_in_action,
            self._sign_out_action,
            self._close_action,
            self._quit_action,
        ):
            file_menu.addAction(action)
        self._find_action = QAction(_("Find"), self)
        self._find_action.setShortcut(QKeySequence.StandardKey.Find)
        self._find_action.triggered.connect(self._on_find_action_triggered)
        self.addAction(self._find_action)

        central = QWidget(self)
        layout = QVBoxLayout(central)
        self._conflict_banner = ConflictBanner(central)
        self._conflict_banner.take_anyway_requested.connect(self._on_conflict_banner_take_anyway_requested)
        layout.addWidget(self._conflict_banner)

        self._search_edit = QLineEdit(central)
        self._search_edit.setPlaceholderText(_("Search customers, messages or channels"))
        self._search_edit.setClearButtonEnabled(True)
        self._search_edit.setAccessibleName(_("Search conversations"))
        self._search_edit.setAccessibleDescription(
            _("Filters every list as you type. Down arrow moves to the list, Enter opens the first match.")
        )
        self._search_edit.textChanged.connect(self._on_search_edit_text_changed)
        self._search_edit.installEventFilter(self)
        search_row = QHBoxLayout()
        search_row.addWidget(self._search_edit, 1)
        self._first_unread_action = QAction(_("First &unread"), self)
        self._first_unread_action.setObjectName("firstUnread")
        self._first_unread_action.setShortcut(QKeySequence("Ctrl+Shift+U"))
        self._first_unread_action.setToolTip(_("Jump to the first conversation with unread messages"))
        self._first_unread_action.triggered.connect(self.jump_to_first_unread)
        self.addAction(self._first_unread_action)
        self._first_unread_button = QToolButton(central)
        self._first_unread_button.setDefaultAction(self._first_unread_action)
        self._first_unread_button.setAccessibleName(_("Jump to first unread"))
        self._first_unread_button.setAccessibleDescription(
            _("Selects the first conversation with unread messages. Shortcut: Ctrl+Shift+U.")
        )
        search_row.addWidget(self._first_unread_button)
        layout.addLayout(search_row)

        self._tabs = QTabWidget(central)
        self._tabs.setAccessibleName(_("Conversation lists"))
        self._tabs.setAccessibleDescription(_("Waiting customers, your customers, and all of them."))
        self._tabs.tabBar().setAccessibleName(_("Conversation lists"))
        self._tabs.tabBar().setAccessibleDescription(_("Ctrl+Tab switches between the lists."))
        self._tables: list[QTableView] = []
        for proxy in self._proxies:
            table = self._make_table(proxy)
            self._tables.append(table)
            self._tabs.addTab(table, "")
        self._tabs.currentChanged.connect(self._on_tabs_current_changed)
        layout.addWidget(self._tabs, 1)

        buttons = QHBoxLayout()
        self._open_button = QPushButton(_("&Open chat"), central)
        self._open_button.setAccessibleName(_("Open chat with the selected customer"))
        self._open_button.setAccessibleDescription(
            _("Opens the chat window. Enter in the list does the same.")
        )
        self._open_button.clicked.connect(self._on_open_button_clicked)
        self._take_over_button = QPushButton(_("&Take over"), central)
        self._take_over_button.setAccessibleName(_("Take over the selected customer"))
        self._take_over_button.setAccessibleDescription(
            _("You become the agent for this customer. Shortcut: Ctrl+Shift+T.")
        )
        self._take_over_button.clicked.connect(self._on_take_over_button_clicked)
        self._release_button = QPushButton(_("&Release"), central)
        self._release_button.setAccessibleName(_("Release the selected customer"))
        self._release_button.setAccessibleDescription(
            _("Gives the customer back so another agent can take them. Shortcut: Ctrl+Shift+R.")
        )
        self._release_button.clicked.connect(self._on_release_button_clicked)
        self._resolve_button = QPushButton(_("Resol&ve"), central)
        self._resolve_button.setAccessibleName(_("Resolve the selected conversation"))
        self._resolve_button.setAccessibleDescription(
            _("Closes the conversation: the customer leaves your list. Shortcut: Ctrl+Shift+D.")
        )
        self._resolve_button.clicked.connect(self._on_resolve_button_clicked)
        self._hand_back_button = QPushButton(_("Hand back to &AI"), central)
        self._hand_back_button.setAccessibleName(_("Hand the selected customer back to the AI"))
        self._hand_back_button.setAccessibleDescription(
            _("The AI (or the bot) answers the customer again. Shortcut: Ctrl+Shift+B.")
        )
        self._hand_back_button.clicked.connect(self._on_hand_back_button_clicked)
        buttons.addWidget(self._open_button)
        buttons.addStretch(1)
        buttons.addWidget(self._take_over_button)
        buttons.addWidget(self._release_button)
        buttons.addWidget(self._hand_back_button)
        buttons.addWidget(self._resolve_button)
        layout.addLayout(buttons)
        self.setCentralWidget(central)

        self._connection_label = QLabel(self)
        self._connection_label.setTextFormat(Qt.TextFormat.PlainText)
        self._connection_label.setAccessibleName(_("Connection status"))
        self.statusBar().addWidget(self._connection_label, 1)

        QWidget.setTabOrder(self._search_edit, self._tabs)
        QWidget.setTabOrder(self._tabs, self._tables[0])
        QWidget.setTabOrder(self._tables[0], self._open_button)
        QWidget.setTabOrder(self._open_button, self._take_over_button)
        QWidget.setTabOrder(self._take_over_button, self._release_button)
        QWidget.setTabOrder(self._release_button, self._hand_back_button)
        QWidget.setTabOrder(self._hand_back_button, self._resolve_button)
        QWidget.setTabOrder(self._resolve_button, self._conflict_banner.take_anyway_button)
        QWidget.setTabOrder(self._conflict_banner.take_anyway_button, self._conflict_banner._close_button)
        self.resize(820, 520)

    def _make_table(self, proxy: ConversationTabProxy) -> QTableView:
        table = QTableView(self)
        # Before setModel: this runs before the selection model reacts to a removal.
        proxy.rowsAboutToBeRemoved.connect(self._on_proxy_rows_about_to_be_removed)
        table.setModel(proxy)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setTabKeyNavigation(False)  # Tab leaves the table: a sensible tab order
        table.setWordWrap(False)
        table.setTextElideMode(Qt.TextElideMode.ElideRight)
        table.setAlternatingRowColors(True)
        table.setCornerButtonEnabled(False)
        table.setAccessibleName(_("Conversations"))
        table.setAccessibleDescription(
            _("Customer, channel, last message, waiting time and agent. Enter opens the chat.")
        )
        # PERFORMANCE-NOTES §2.3: a fixed row height keeps relayout O(1) at any row count.
        vheader = table.verticalHeader()
        vheader.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vheader.setDefaultSectionSize(table.fontMetrics().height() + 10)
        vheader.hide()
        header = table.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(Column.LAST_MESSAGE, QHeaderView.ResizeMode.Stretch)
        for column, width in ((Column.CUSTOMER, 180), (Column.CHANNEL, 110), (Column.WAITING, 80)):
            header.resizeSection(column, width)
        header.resizeSection(Column.AGENT, 140)
        header.resizeSection(Column.UNREAD, 100)
        table.doubleClicked.connect(self._on_table_double_clicked)
        table.selectionModel().selectionChanged.connect(self._on_table_selection_changed)
        table.installEventFilter(self)
        proxy.modelReset.connect(self._on_proxy_rows_changed)
        proxy.rowsInserted.connect(self._on_proxy_rows_changed)
        proxy.rowsRemoved.connect(self._on_proxy_rows_changed)
        return table

    # ------------------------------------------------------------------ public API

    @property
    def model(self) -> ConversationTableModel:
        """The conversation table behind the tabs."""
        return self._model

    @property
    def proxies(self) -> tuple[ConversationTabProxy, ...]:
        """The tab models: waiting, mine, all active."""
        return self._proxies

    @property
    def current_table(self) -> QTableView:
        """The table of the current tab."""
        return self._tables[self._tabs.currentIndex()]

    @property
    def current_index(self) -> int:
        """The current tab (0 waiting, 1 mine, 2 all)."""
        return self._tabs.currentIndex()

    @property
    def tab_titles(self) -> tuple[str, ...]:
        """The tab titles shown, counts included ("Waiting for a human (2)", "Mine (1)", ...)."""
        return tuple(self._tabs.tabText(i) for i in range(self._tabs.count()))

    def set_current_tab(self, index: int) -> None:
        """Switch tabs (session restore)."""
        if 0 <= index < self._tabs.count():
            self._tabs.setCurrentIndex(index)

    @property
    def conflict_banner(self) -> ConflictBanner:
        """The conflict banner (for tests and the tray)."""
        return self._conflict_banner

    def selected_key(self) -> str:
        """The conversation selected in the current tab, or ""."""
        table = self.current_table
        rows = table.selectionModel().selectedRows()
        if not rows:
            return ""
        proxy = self._proxies[self._tabs.currentIndex()]
        return proxy.key_at(rows[0].row())

    def select_conversation(self, key: str) -> bool:
        """Select a conversation in the current tab; False if the tab does not show it."""
        proxy = self._proxies[self._tabs.currentIndex()]
        row = proxy.row_of(key)
        if row < 0:
            return False
        table = self.current_table
        table.selectRow(row)
        table.scrollTo(proxy.index(row, 0))
        return True

    def take_over_selected(self) -> bool:
        """Take over the selected customer (button, Alt+T, Ctrl+Shift+T) when nobody has them."""
        key = self.selected_key()
        if not key or not can_take_over(self._bridge.state.conversation(key)):
            return False
        self._conflict_banner.hide()
        self._sink.submit(TakeOver(key))
        self._update_buttons()
        return True

    def release_selected(self) -> bool:
        """Release the selected customer (button, Alt+R, Ctrl+Shift+R) when they are mine."""
        key = self.selected_key()
        if not key or not can_release(self._bridge.state.conversation(key)):
            return False
        self._sink.submit(Release(key))
        self._update_buttons()
        return True

    def resolve_selected(self) -> bool:
        """Resolve the selected conversation (button, Alt+V, Ctrl+Shift+D) when the customer is mine."""
        key = self.selected_key()
        if not key or not can_resolve(self._bridge.state.conversation(key)):
            return False
        self._sink.submit(Resolve(key))
        self._update_buttons()
        return True

    def hand_back_selected(self) -> bool:
        """Hand the selected customer back to the AI (button, Alt+A, Ctrl+Shift+B) when mine."""
        key = self.selected_key()
        if not key or not can_hand_back(self._bridge.state.conversation(key)):
            return False
        self._sink.submit(HandBack(key))
        self._update_buttons()
        return True

    def take_anyway(self, key: str) -> bool:
        """Take ``key`` even though another agent has it (the conflict banner's "Take anyway")."""
        if not key:
            return False
        self._conflict_banner.hide()
        self._sink.submit(TakeOver(key, force=True))
        self._update_buttons()
        return True

    def jump_to_first_unread(self) -> bool:
        """Select the first conversation with unread messages: in this tab, else in another."""
        current = self._tabs.currentIndex()
        for index in (current, *(i for i in range(len(self._proxies)) if i != current)):
            key = self._model.first_unread_key(self._proxies[index].keys())
            if key:
                self._tabs.setCurrentIndex(index)
                self.select_conversation(key)
                self._selected_key = key
                self.current_table.setFocus(Qt.FocusReason.ShortcutFocusReason)
                return True
        self.statusBar().showMessage(_("No unread messages"), 4000)
        return False

    def add_shortcut_menus(self, actions: Mapping[str, QAction]) -> None:
        """Show the app-wide shortcuts in a Conversation menu and a Help menu (discoverable keys)."""
        conversation_menu = self.menuBar().addMenu(_("Co&nversation"))
        for name in ("next_waiting", "take_over", "release", "hand_back", "resolve", "open_inbox"):
            if name in actions:
                conversation_menu.addAction(actions[name])
        help_menu = self.menuBar().addMenu(_("&Help"))
        if "help" in actions:
            help_action = actions["help"]
            help_action.setText(_("&Keyboard shortcuts"))
            help_menu.addAction(help_action)

    # ------------------------------------------------------------------ Qt overrides

    def showEvent(self, event: QShowEvent) -> None:  # noqa: D102, N802
        super().showEvent(event)
        self._bridge.flush_now()
        self._model.set_active(True)
        self._update_ticking()
        self._update_tab_titles()

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: D102, N802
        super().hideEvent(event)
        self._model.set_active(False)  # PERFORMANCE-NOTES §7: no view work while hidden

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: D102, N802
        # A tray app: closing the inbox hides it; Quit is a separate action.
        event.accept()

    def changeEvent(self, event: QEvent) -> None:  # noqa: D102, N802
        super().changeEvent(event)
        if event.type() == QEvent.Type.LanguageChange:
            self.retranslate()

    def retranslate(self) -> None:
        """Rebuild the texts made with values (tab counts, status bar) in the new language.

        Fixed texts (menus, buttons, search box) are re-worded by ``ui.language.retranslate_widgets``.
        """
        self._update_tab_titles()
        self._on_bridge_connection_changed(self._bridge.state.connection)
        self._model.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, self._model.columnCount() - 1)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: D102, N802
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            key = event.key()
            if watched in self._tables and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self._open_selected()
                return True
            if watched is self._search_edit:
                if key == Qt.Key.Key_Down:
                    self._focus_table()
                    return True
                if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                    self._focus_table()
                    self._open_selected()
                    return True
                if key == Qt.Key.Key_Escape and self._search_edit.text():
                    self._search_edit.clear()
                    return True
        return super().eventFilter(watched, event)

    # ------------------------------------------------------------------ slots

    def _on_bridge_conversations_changed(self, keys: frozenset[str]) -> None:
        self._model.on_conversations_changed(keys)
        if self._conflict_banner.conversation in keys:
            conv = self._bridge.state.conversation(self._conflict_banner.conversation)
            self._conflict_banner.refresh(conv)
        if self._selected_key in keys:
            self._update_buttons()

    def _on_bridge_connection_changed(self, info: ConnectionInfo) -> None:
        text = connection_text(info)
        if info.last_synced is not None:
            text += "  ·  " + _("last synced {time}").format(time=format_clock(info.last_synced))
        self._connection_label.setText(text)

    def _on_bridge_outbound_changed(self, outbound: Mapping[str, OutboundCommand]) -> None:
        for cmd in new_conflicts(outbound, self._reported):
            conv = self._bridge.state.conversation(cmd.conversation)
            self._conflict_banner.show_conflict(cmd.conversation, conv, cmd.error)
        self._update_buttons()

    def _on_model_ticked(self) -> None:
        table = self.current_table
        proxy = self._proxies[self._tabs.currentIndex()]
        top = table.rowAt(0)
        if top < 0:
            return
        bottom = table.rowAt(table.viewport().height() - 1)
        proxy.refresh_column(Column.WAITING, top, bottom if bottom >= 0 else proxy.rowCount() - 1)

    def _on_search_edit_text_changed(self, text: str) -> None:
        key = self._selected_key
        for proxy in self._proxies:
            proxy.set_search_text(text)
        if key:
            self.select_conversation(key)
        self._update_tab_titles()

    def _on_tabs_current_changed(self, index: int) -> None:
        if self._selected_key and not self.select_conversation(self._selected_key):
            self._selected_key = self.selected_key()
        self._update_ticking()
        self._update_buttons()

    def _on_table_double_clicked(self) -> None:
        self._open_selected()

    def _on_table_selection_changed(self, selected: QItemSelection, deselected: QItemSelection) -> None:
        key = self.selected_key()
        if self._removing and self._selected_key and key != self._selected_key:
            # The selected customer is leaving this tab (taken, resolved) and Qt moved the
            # selection to a neighbour: undone once the rows are gone (a second "Take over" must
            # not hit someone else). The key is kept: a rolled-back take-over selects them again.
            self._jumped = True
            return
        if key or self.sender() is self.current_table.selectionModel():
            self._selected_key = key
        self._update_buttons()

    def _on_proxy_rows_about_to_be_removed(self) -> None:
        self._removing = True  # until rowsRemoved: a selection change now is not the agent's

    def _on_proxy_rows_changed(self) -> None:
        self._removing = False
        if self._jumped:
            self._jumped = False
            table = self.current_table
            with QSignalBlocker(table.selectionModel()):
                table.clearSelection()
            table.viewport().update()
            self._update_buttons()
        self._update_tab_titles()
        self._update_ticking()
        proxy = self.sender()
        if proxy is self._proxies[self._tabs.currentIndex()] and self._selected_key:
            table = self.current_table
            if not table.selectionModel().hasSelection():
                self.select_conversation(self._selected_key)

    def _on_open_button_clicked(self) -> None:
        self._open_selected()

    def _on_take_over_button_clicked(self) -> None:
        self.take_over_selected()

    def _on_release_button_clicked(self) -> None:
        self.release_selected()

    def _on_resolve_button_clicked(self) -> None:
        self.resolve_selected()

    def _on_hand_back_button_clicked(self) -> None:
        self.hand_back_selected()

    def _on_conflict_banner_take_anyway_requested(self, key: str) -> None:
        self.take_anyway(key)

    def _on_find_action_triggered(self) -> None:
        self._search_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self._search_edit.selectAll()

    # ------------------------------------------------------------------ internals

    def _focus_table(self) -> None:
        table = self.current_table
        table.setFocus(Qt.FocusReason.OtherFocusReason)
        if not table.selectionModel().hasSelection() and table.model().rowCount() > 0:
            table.selectRow(0)

    def _open_selected(self) -> None:
        key = self.selected_key()
        if key:
            self.chat_requested.emit(key)

    def _update_buttons(self) -> None:
        key = self.selected_key()
        conv = self._bridge.state.conversation(key) if key else None
        self._open_button.setEnabled(conv is not None)
        self._take_over_button.setEnabled(can_take_over(conv))
        self._release_button.setEnabled(can_release(conv))
        self._resolve_button.setEnabled(can_resolve(conv))
        self._hand_back_button.setEnabled(can_hand_back(conv))

    def _update_tab_titles(self) -> None:
        titles = (_("Waiting for a human ({count})"), _("Mine ({count})"), self._all_title())
        for i, (proxy, title) in enumerate(zip(self._proxies, titles, strict=True)):
            text = title.format(count=proxy.rowCount())
            if self._tabs.tabText(i) != text:  # runs per inserted run of rows: set only changes
                self._tabs.setTabText(i, text)

    def _all_title(self) -> str:
        return _("All active ({count})") if self._dialect == "org" else _("All customers ({count})")

    def _update_ticking(self) -> None:
        proxy = self._proxies[self._tabs.currentIndex()]
        self._model.set_ticking(self.isVisible() and proxy.rowCount() > 0)

    # -- test and accessibility seams (read-only views of the widgets)

    @property
    def search_edit(self) -> QLineEdit:
        """The search box."""
        return self._search_edit

    @property
    def tabs(self) -> QTabWidget:
        """The tab bar of conversation lists (waiting, mine, all)."""
        return self._tabs

    @property
    def tables(self) -> Sequence[QTableView]:
        """The conversation tables, one per tab."""
        return tuple(self._tables)

    @property
    def open_button(self) -> QPushButton:
        """The "Open chat" button."""
        return self._open_button

    @property
    def take_over_button(self) -> QPushButton:
        """The "Take over" button."""
        return self._take_over_button

    @property
    def release_button(self) -> QPushButton:
        """The "Release" button."""
        return self._release_button

    @property
    def resolve_button(self) -> QPushButton:
        """The "Resolve" button."""
        return self._resolve_button

    @property
    def hand_back_button(self) -> QPushButton:
        """The "Hand back to AI" button."""
        return self._hand_back_button

    @property
    def connection_label(self) -> QLabel:
        """The connection status line."""
        return self._connection_label

    @property
    def sign_out_action(self) -> QAction:
        """The "Sign out…" menu action."""
        return self._sign_out_action

    @property
    def quit_action(self) -> QAction:
        """The "Quit" menu action."""
        return self._quit_action

    @property
    def first_unread_action(self) -> QAction:
        """The "First unread" action."""
        return self._first_unread_action


def can_take_over(conv: Conversation | None) -> bool:
    """Take over is offered when nobody (human) has the customer and no take-over is pending."""
    return conv is not None and not conv.assigned and conv.pending_takeover is None


def can_release(conv: Conversation | None) -> bool:
    """Release is offered for my customers once my take-over is confirmed."""
    return conv is not None and conv.assigned_to_me and conv.pending_takeover is None


def can_resolve(conv: Conversation | None) -> bool:
    """Resolve is offered for my customers (I close the conversations I hold)."""
    return can_release(conv)


def can_hand_back(conv: Conversation | None) -> bool:
    """Hand back to the AI is offered for my customers."""
    return can_release(conv)
