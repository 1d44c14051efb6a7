"""The "/" quick-reply picker of the reply box, and the quick-reply editor of the settings dialog."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tray_agent.core import i18n
from tray_agent.core.i18n import _
from tray_agent.core.quick_replies import (
    QuickReply,
    SlashQuery,
    fill_variables,
    filter_replies,
    slash_query,
)
from tray_agent.ui.accessibility import announce
from tray_agent.ui.models import one_line

logger = logging.getLogger(__name__)

MAX_VISIBLE = 8
"""Rows the picker shows before it scrolls."""
_PREVIEW = 90


class QuickReplyPopup(QObject):
    """Shows matching quick replies while the agent types "/name" in a reply box.

    The list is a child of the reply box's window, above the box, and never takes focus: the
    agent keeps typing to filter; Up/Down choose, Enter or Tab insert (variables filled), Esc
    closes. The box's Enter (send) only runs when the list is closed.

    Args:
        edit: the reply box.
        replies: the replies to offer (IT's then the agent's own), read on each keystroke.
        variables: the values of ``{customer_name}``, ``{agent_name}``, ... for this chat.
        parent: the Qt parent (normally the chat window).

    Signals:
        inserted(str): a reply was inserted (its name).
    """

    inserted = Signal(str)

    def __init__(
        self,
        edit: QPlainTextEdit,
        replies: Callable[[], Sequence[QuickReply]],
        variables: Callable[[], Mapping[str, str]],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._edit = edit
        self._replies = replies
        self._variables = variables
        self._query: SlashQuery | None = None
        self._shown: list[QuickReply] = []
        host = edit.window()
        self._list = QListWidget(host)
        self._list.setObjectName("quickReplyList")
        self._list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._list.setWordWrap(False)
        self._list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self._list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._list.setAccessibleName(_("Quick replies"))
        self._list.setAccessibleDescription(
            _("Replies matching what you typed after /. Up and Down choose, Enter inserts, Esc closes.")
        )
        self._list.itemClicked.connect(self._on_list_item_clicked)
        self._list.currentRowChanged.connect(self._on_list_current_row_changed)
        self._list.hide()
        edit.installEventFilter(self)
        host.installEventFilter(self)  # follow the window's resizes
        edit.textChanged.connect(self._on_edit_text_changed)
        edit.cursorPositionChanged.connect(self._on_edit_text_changed)

    # ------------------------------------------------------------------ public API

    @property
    def is_open(self) -> bool:
        """True while the picker is shown."""
        return self._list.isVisible()

    def names(self) -> list[str]:
        """The names offered now, in order."""
        return [reply.name for reply in self._shown]

    def close(self) -> None:
        """Hide the picker (the typed "/name" stays)."""
        self._list.hide()

    def insert_current(self) -> bool:
        """Replace the typed "/name" by the chosen reply, variables filled; False if none."""
        row = self._list.currentRow()
        if self._query is None or not 0 <= row < len(self._shown):
            return False
        reply = self._shown[row]
        text = fill_variables(reply.text(i18n.language()), self._variables())
        cursor = self._edit.textCursor()
        end = cursor.position()
        cursor.setPosition(self._query.start)
        cursor.setPosition(end, cursor.MoveMode.KeepAnchor)
        cursor.insertText(text)
        self._edit.setTextCursor(cursor)
        self._query = None
        self._list.hide()
        self.inserted.emit(reply.name)
        return True

    # ------------------------------------------------------------------ Qt overrides

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: D102, N802
        if watched is self._edit and event.type() == QEvent.Type.KeyPress and self.is_open:
            assert isinstance(event, QKeyEvent)
            key = event.key()
            if key in (Qt.Key.Key_Down, Qt.Key.Key_Up):
                step = 1 if key == Qt.Key.Key_Down else -1
                count = self._list.count()
                self._list.setCurrentRow((self._list.currentRow() + step) % count)
                return True
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Tab):
                return self.insert_current()
            if key == Qt.Key.Key_Escape:
                self.close()
                return True
        if watched is self._edit and event.type() in (QEvent.Type.FocusOut, QEvent.Type.Hide):
            self.close()
        if watched is not self._edit and event.type() == QEvent.Type.Resize and self.is_open:
            self._place()
        return super().eventFilter(watched, event)

    # ------------------------------------------------------------------ slots

    def _on_edit_text_changed(self) -> None:
        cursor = self._edit.textCursor()
        block = cursor.block()
        # The query lives in the current line: "/" at the line start or after a space.
        query = slash_query(block.text(), cursor.positionInBlock())
        if query is None:
            self._query = None
            self._list.hide()
            return
        self._query = SlashQuery(block.position() + query.start, query.prefix)
        language = i18n.language()
        self._shown = filter_replies(list(self._replies()), query.prefix, language)
        if not self._shown:
            self._list.hide()
            return
        self._list.clear()
        for reply in self._shown:
            item = QListWidgetItem(f"/{reply.name} — {one_line(reply.text(language), _PREVIEW)}")
            item.setToolTip(reply.text(language))
            self._list.addItem(item)
        self._list.setCurrentRow(0)
        self._place()
        self._list.show()
        self._list.raise_()

    def _on_list_item_clicked(self, item: QListWidgetItem) -> None:
        self._list.setCurrentItem(item)
        self.insert_current()
        self._edit.setFocus(Qt.FocusReason.OtherFocusReason)

    def _on_list_current_row_changed(self, row: int) -> None:
        if 0 <= row < len(self._shown) and self._list.isVisible():
            try:
                announce(self._list, self._list.item(row).text())
            except Exception:
                logger.debug("Could not announce the quick reply", exc_info=True)

    # ------------------------------------------------------------------ internals

    def _place(self) -> None:
        host = self._list.parentWidget()
        if host is None:
            return
        rows = min(MAX_VISIBLE, len(self._shown))
        row_height = max(self._list.sizeHintForRow(0), self._list.fontMetrics().height() + 4)
        height = row_height * rows + 2 * self._list.frameWidth() + 2
        top_left = self._edit.mapTo(host, QPoint(0, 0))
        width = max(self._edit.width(), 240)
        self._list.setGeometry(top_left.x(), max(0, top_left.y() - height), width, height)


class QuickRepliesEditor(QWidget):
    """Edits a list of quick replies (name, English text, Indonesian text) in the settings dialog.

    Args:
        replies: the entries as plain dicts (``name``, ``text``, ``text_id``).
        read_only: IT's list: shown, not editable.
        parent: the Qt parent.

    Signals:
        changed(): a reply was added, removed or edited.
    """

    changed = Signal()

    def __init__(
        self, replies: Sequence[Mapping[str, Any]], *, read_only: bool = False, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._read_only = read_only
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._table = QTableWidget(0, 3, self)
        self._table.setHorizontalHeaderLabels([_("Name"), _("English"), _("Bahasa Indonesia")])
        self._table.setAccessibleName(_("Quick replies"))
        self._table.setAccessibleDescription(
            _(
                "Name: what you type after / in the reply box. Texts may use {customer_name}, "
                "{agent_name}, {channel} and {conversation}."
            )
        )
        self._table.setTabKeyNavigation(False)
        self._table.verticalHeader().hide()
        header = self._table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self._table.setMinimumHeight(self._table.fontMetrics().height() * 8)
        if read_only:
            self._table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._table.itemChanged.connect(self._on_table_item_changed)
        layout.addWidget(self._table)
        for reply in replies:
            self._add_row(
                str(reply.get("name", "")), str(reply.get("text", "")), str(reply.get("text_id", ""))
            )
        self._add_button: QPushButton | None = None
        self._remove_button: QPushButton | None = None
        if not read_only:
            row = QHBoxLayout()
            self._add_button = QPushButton(_("Add quick reply"), self)
            self._add_button.setAccessibleName(_("Add quick reply"))
            self._add_button.setAccessibleDescription(_("Adds an empty row to fill in."))
            self._add_button.clicked.connect(self._on_add_button_clicked)
            self._remove_button = QPushButton(_("Remove quick reply"), self)
            self._remove_button.setAccessibleName(_("Remove quick reply"))
            self._remove_button.setAccessibleDescription(_("Removes the selected row."))
            self._remove_button.clicked.connect(self._on_remove_button_clicked)
            row.addWidget(self._add_button)
            row.addWidget(self._remove_button)
            row.addStretch(1)
            layout.addLayout(row)

    @property
    def table(self) -> QTableWidget:
        """The table (tests)."""
        return self._table

    def add_reply(self, name: str = "", text: str = "", text_id: str = "") -> None:
        """Add a row and start editing its name."""
        row = self._add_row(name, text, text_id)
        self._table.setCurrentCell(row, 0)
        item = self._table.item(row, 0)
        if not name and item is not None:
            self._table.editItem(item)
        self.changed.emit()

    def value(self) -> list[dict[str, str]]:
        """The replies as plain values (validated by the Settings model); empty rows skipped."""
        result = []
        for row in range(self._table.rowCount()):
            cells = [self._table.item(row, col) for col in range(3)]
            name, text, text_id = (c.text().strip() if c is not None else "" for c in cells)
            if name or text or text_id:
                result.append({"name": name.lstrip("/"), "text": text, "text_id": text_id})
        return result

    def _add_row(self, name: str, text: str, text_id: str) -> int:
        row = self._table.rowCount()
        self._table.blockSignals(True)
        self._table.insertRow(row)
        for col, value in enumerate((name, text, text_id)):
            self._table.setItem(row, col, QTableWidgetItem(value))
        self._table.blockSignals(False)
        return row

    def _on_add_button_clicked(self) -> None:
        self.add_reply()

    def _on_remove_button_clicked(self) -> None:
        row = self._table.currentRow()
        if row >= 0:
            self._table.removeRow(row)
            self.changed.emit()

    def _on_table_item_changed(self, item: QTableWidgetItem) -> None:
        self.changed.emit()

    # -- test and accessibility seams (read-only views of the widgets)

    @property
    def add_button(self) -> QPushButton | None:
        """The "Add quick reply" button (None for a read-only list)."""
        return self._add_button

    @property
    def remove_button(self) -> QPushButton | None:
        """The "Remove quick reply" button (None for a read-only list)."""
        return self._remove_button
