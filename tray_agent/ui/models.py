"""Qt item models over the store: the conversation table, its tab proxies and a chat's messages."""

from __future__ import annotations

import bisect
import enum
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final

from PySide6.QtCore import (
    QAbstractListModel,
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QFont

from tray_agent.core.events import ConnectionState, SenderKind
from tray_agent.core.i18n import _, format_duration
from tray_agent.core.state import ConnectionInfo, Conversation, History, MessageRecord, State
from tray_agent.core.text import isolate_bidi

logger = logging.getLogger(__name__)

_Index = QModelIndex | QPersistentModelIndex
_ROOT: Final = QModelIndex()

KEY_ROLE: Final = int(Qt.ItemDataRole.UserRole) + 1
"""The conversation key of a row (str)."""
SORT_ROLE: Final = int(Qt.ItemDataRole.UserRole) + 2
"""A value that sorts a column naturally (timestamps as floats, text case-folded)."""
RECORD_ROLE: Final = int(Qt.ItemDataRole.UserRole) + 3
"""The MessageRecord of a chat row."""
SENDER_ROLE: Final = int(Qt.ItemDataRole.UserRole) + 4
"""The SenderKind of a chat row."""
RETRIED_ROLE: Final = int(Qt.ItemDataRole.UserRole) + 5
"""True when the agent already retried this failed reply (a UI fact, not server data)."""

STRUCTURAL_LIMIT: Final = 64
"""A tab proxy resets instead of moving rows one by one when a batch moves more than this."""
BULK_THRESHOLD: Final = 5000
"""A flush touching more rows than this (and more than half the table) resets the model."""
TICK_INTERVAL_MS: Final = 1000
"""The waiting-time column ticks at most once per second, and only while a view shows it."""
_PREVIEW_CHARS: Final = 200
_MIN_TIME: Final = datetime.min.replace(tzinfo=UTC)
_MAX_TIME: Final = datetime.max.replace(tzinfo=UTC)
_CLOSED_STATUSES: Final = frozenset({"resolved", "closed"})

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, timezone-aware UTC."""
    return datetime.now(UTC)


def one_line(text: str, limit: int = _PREVIEW_CHARS) -> str:
    """Text as one plain line (newlines and tabs become spaces), cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def plain_tooltip(text: str) -> str:
    """A tooltip that shows ``text`` literally (Qt guesses rich text in tooltips, so escape it)."""
    import html  # on the first tooltip: html.entities' table is ~0.7 MB the idle app never needs

    return "<qt>" + html.escape(text).replace("\n", "<br>") + "</qt>"


_CELL_ROLES: Final = frozenset(
    {
        KEY_ROLE,
        SORT_ROLE,
        int(Qt.ItemDataRole.DisplayRole),
        int(Qt.ItemDataRole.AccessibleTextRole),
        int(Qt.ItemDataRole.ToolTipRole),
        int(Qt.ItemDataRole.TextAlignmentRole),
        int(Qt.ItemDataRole.FontRole),
        int(Qt.ItemDataRole.BackgroundRole),
        int(Qt.ItemDataRole.ForegroundRole),
    }
)
"""The roles :meth:`ConversationTableModel.cell` answers; a view asks for about twice as many
per cell on every paint, and those get None before any lookup."""
_ROW_FLAGS: Final = (
    Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren
)


class Column(enum.IntEnum):
    """Columns of :class:`ConversationTableModel`."""

    CUSTOMER = 0
    CHANNEL = 1
    LAST_MESSAGE = 2
    WAITING = 3
    AGENT = 4
    UNREAD = 5


# The roles and columns as plain ints: data() runs for every role of every cell on every paint
# (about 800 calls for 20 rows), and a Qt enum attribute costs more than the comparison.
_DISPLAY: Final = int(Qt.ItemDataRole.DisplayRole)
_ACCESSIBLE_TEXT: Final = int(Qt.ItemDataRole.AccessibleTextRole)
_TOOLTIP: Final = int(Qt.ItemDataRole.ToolTipRole)
_ALIGNMENT: Final = int(Qt.ItemDataRole.TextAlignmentRole)
_FONT: Final = int(Qt.ItemDataRole.FontRole)
_BACKGROUND: Final = int(Qt.ItemDataRole.BackgroundRole)
_FOREGROUND: Final = int(Qt.ItemDataRole.ForegroundRole)
_RIGHT_ALIGNED: Final = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_RIGHT_COLUMNS: Final = frozenset({int(Column.WAITING), int(Column.UNREAD)})
_CUSTOMER: Final = int(Column.CUSTOMER)
_CHANNEL: Final = int(Column.CHANNEL)
_LAST_MESSAGE: Final = int(Column.LAST_MESSAGE)
_WAITING: Final = int(Column.WAITING)
_AGENT: Final = int(Column.AGENT)
_UNREAD: Final = int(Column.UNREAD)


OVERDUE_BACKGROUND: Final = "#fbd3cf"
"""Rows waiting past the waiting-time target: a soft red, with dark text on any theme."""
OVERDUE_FOREGROUND: Final = "#3c0a06"


_NCOLS: Final = len(Column)


class ConversationTableModel(QAbstractTableModel):
    """Every known conversation as one row; tabs filter and sort it through proxies.

    Rows are conversation keys in arrival order (new keys are appended; the proxies sort). Cell
    data is read from the store's current snapshot on demand, never copied. Updates come from
    the :class:`~tray_agent.ui.bridge.StoreBridge`'s ``conversations_changed`` signal, which is
    already coalesced per frame (single-shot, leading-edge 16 ms flush); one bridge flush becomes
    one row insert (new keys), ``dataChanged`` per contiguous run of changed rows, and row
    removals. While no view is active (:meth:`set_active`) changes only accumulate (a set
    union) and are applied when a view shows again: no view work while hidden.

    Args:
        state: returns the current state snapshot (``bridge.state`` or ``store.state``).
        dialect: ``"org"`` or ``"dashboard"`` (column titles, agent wording).
        parent: the Qt parent.
        clock: wall clock for the waiting time (tests inject one).

    Signals:
        ticked(): the waiting-time column moved on (once a second while ticking).
        keys_applied(object): after applying a batch, the frozenset of keys it touched, or
            None after a reset (the tab proxies follow this).
    """

    ticked = Signal()
    keys_applied = Signal(object)

    def __init__(
        self,
        state: Callable[[], State],
        dialect: str,
        parent: QObject | None = None,
        *,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(parent)
        self._state_of = state
        self._dialect = dialect
        self._clock = clock
        self._now = clock()
        self._state = state()
        self._keys: list[str] = list(self._state.conversations)
        self._row_of: dict[str, int] = {k: i for i, k in enumerate(self._keys)}
        self._pending: set[str] = set()
        self._sla_seconds: float | None = None
        self._bold: QFont | None = None  # made on first use (a QFont needs the application)
        self._active = True
        self._tick_timer = QTimer(self)
        self._tick_timer.setInterval(TICK_INTERVAL_MS)
        self._tick_timer.setTimerType(Qt.TimerType.CoarseTimer)
        self._tick_timer.timeout.connect(self._on_tick_timer_timeout)

    # ------------------------------------------------------------------ public API

    @property
    def dialect(self) -> str:
        """The backend dialect the table describes."""
        return self._dialect

    @property
    def now(self) -> datetime:
        """The time the waiting column is computed against (moves on each tick)."""
        return self._now

    @property
    def state(self) -> State:
        """The snapshot the rows reflect."""
        return self._state

    @property
    def pending_count(self) -> int:
        """Changed keys not yet applied (non-zero while inactive)."""
        return len(self._pending)

    def key_at(self, row: int) -> str:
        """The conversation key of a source row."""
        return self._keys[row]

    @property
    def sla_seconds(self) -> float | None:
        """The waiting-time target in seconds (rows past it are highlighted), or None."""
        return self._sla_seconds

    def set_sla_minutes(self, minutes: float | None) -> None:
        """Highlight the rows of untaken customers waiting longer than ``minutes`` (None: off).

        ``minutes`` is ``alerts.sla_minutes``, the tray's waiting-time target.
        """
        seconds = None if minutes is None else float(minutes) * 60.0
        if seconds != self._sla_seconds:
            self._sla_seconds = seconds
            if self._keys:
                self.dataChanged.emit(self.index(0, 0), self.index(len(self._keys) - 1, _NCOLS - 1))

    def overdue(self, conv: Conversation) -> bool:
        """The customer waits for a human, nobody has them, past the waiting-time target."""
        sla = self._sla_seconds
        if sla is None or not conv.waiting or conv.assigned or conv.waiting_since is None:
            return False
        return (self._now - conv.waiting_since).total_seconds() >= sla

    def first_unread_key(self, keys: Iterable[str]) -> str:
        """The first of ``keys`` (a tab's order) with unread customer messages, or ""."""
        conversations = self._state.conversations
        for key in keys:
            conv = conversations.get(key)
            if conv is not None and conv.unread > 0:
                return key
        return ""

    def row_of(self, key: str) -> int:
        """The source row of a conversation key, or -1."""
        return self._row_of.get(key, -1)

    def conversation_at(self, row: int) -> Conversation | None:
        """The current Conversation of a source row (None if it vanished)."""
        conv: Conversation | None = self._state.conversations.get(self._keys[row])
        return conv

    def on_conversations_changed(self, keys: Iterable[str]) -> None:
        """Take a batch of changed keys (connect the bridge's ``conversations_changed`` here)."""
        self._pending.update(keys)
        if self._active:
            self.flush()

    def set_active(self, active: bool) -> None:
        """Apply changes only while a view shows the model; catch up when it shows again."""
        self._active = active
        if active:
            self.flush()
        else:
            self.set_ticking(False)

    def set_ticking(self, ticking: bool) -> None:
        """Start or stop the once-a-second waiting-time tick (only while a view shows it)."""
        if ticking and self._active:
            if not self._tick_timer.isActive():
                self._now = self._clock()
                self._tick_timer.start()
        else:
            self._tick_timer.stop()

    @property
    def ticking(self) -> bool:
        """True while the waiting-time tick runs."""
        return self._tick_timer.isActive()

    def tick(self) -> None:
        """Move the waiting time on (the timer calls this; tests may too)."""
        self._now = self._clock()
        self.ticked.emit()

    def flush(self) -> None:
        """Apply pending changes: inserts, changed runs, removals (or a reset on bulk resync)."""
        self._state = self._state_of()
        if not self._pending:
            return
        pending, self._pending = self._pending, set()
        conversations = self._state.conversations
        new_keys = [k for k in pending if k not in self._row_of and k in conversations]
        gone = [self._row_of[k] for k in pending if k in self._row_of and k not in conversations]
        if len(pending) > BULK_THRESHOLD and len(pending) > len(self._keys) // 2:
            self.beginResetModel()
            self._keys = list(conversations)
            self._row_of = {k: i for i, k in enumerate(self._keys)}
            self.endResetModel()
            self.keys_applied.emit(None)
            return
        changed_rows = sorted(self._row_of[k] for k in pending if k in self._row_of and k in conversations)
        last_col = len(Column) - 1
        for first, last in _runs(changed_rows):
            self.dataChanged.emit(self.index(first, 0), self.index(last, last_col))
        if gone:
            self._remove_rows(sorted(gone))
        if new_keys:
            new_keys.sort()  # stable arrival order within one flush (tests, screenshots)
            start = len(self._keys)
            self.beginInsertRows(QModelIndex(), start, start + len(new_keys) - 1)
            self._keys.extend(new_keys)
            self._row_of.update(zip(new_keys, range(start, start + len(new_keys)), strict=True))
            self.endInsertRows()
        self.keys_applied.emit(frozenset(pending))

    # ------------------------------------------------------------------ Qt overrides

    def rowCount(self, parent: _Index = _ROOT) -> int:  # noqa: D102, N802
        return 0 if parent.isValid() else len(self._keys)

    def columnCount(self, parent: _Index = _ROOT) -> int:  # noqa: D102, N802
        return 0 if parent.isValid() else _NCOLS

    def headerData(  # noqa: D102, N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(Column):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._column_titles()[section]
        return None

    def flags(self, index: _Index) -> Qt.ItemFlag:  # noqa: D102
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return _ROW_FLAGS

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: D102
        if role not in _CELL_ROLES:
            return None
        row = index.row()  # -1 for an invalid index
        if not 0 <= row < len(self._keys):
            return None
        return self.cell(self._keys[row], index.column(), role)

    # ------------------------------------------------------------------ internals

    def cell(self, key: str, column: int, role: int) -> Any:
        """The data of one cell by conversation key (shared with the tab proxies)."""
        if role == KEY_ROLE:
            return key
        conv: Conversation | None = self._state.conversations.get(key)
        if conv is None:
            return None
        # The roles a paint asks for first, cheapest checks first (every cell, every paint).
        if role in (_DISPLAY, _ACCESSIBLE_TEXT):
            return self._display(conv, column)
        if role == _FONT:
            return self._bold_font() if conv.unread > 0 else None
        if role == _ALIGNMENT:
            return _RIGHT_ALIGNED if column in _RIGHT_COLUMNS else None
        if role == _BACKGROUND:
            return QColor(OVERDUE_BACKGROUND) if self.overdue(conv) else None
        if role == _FOREGROUND:
            return QColor(OVERDUE_FOREGROUND) if self.overdue(conv) else None
        if role == SORT_ROLE:
            return self._sort_value(conv, column)
        if role == _TOOLTIP:
            if column == _LAST_MESSAGE and conv.last_message:
                return plain_tooltip(conv.last_message[:2000])
            if column == _WAITING and self.overdue(conv):
                return _("Waiting longer than the target of {minutes} min").format(
                    minutes=round((self._sla_seconds or 0) / 60)
                )
            return None
        return None

    def _bold_font(self) -> QFont:
        if self._bold is None:
            self._bold = QFont()
            self._bold.setBold(True)
        return self._bold

    def _column_titles(self) -> tuple[str, ...]:
        channel = _("Channel") if self._dialect == "org" else _("Page")
        return (_("Customer"), channel, _("Last message"), _("Waiting"), _("Agent"), _("Unread"))

    def _display(self, conv: Conversation, column: int) -> str:
        if column == _LAST_MESSAGE:
            return isolate_bidi(one_line(conv.last_message))
        if column == _CUSTOMER:
            return isolate_bidi(one_line(conv.customer_name)) or _("Unknown customer")
        if column == _UNREAD:
            return str(conv.unread) if conv.unread > 0 else ""
        if column == _CHANNEL:
            return isolate_bidi(one_line(conv.channel, 60))
        if column == _WAITING:
            if not conv.urgent or conv.waiting_since is None:
                return ""  # taken: no waiting timer runs
            return waiting_duration((self._now - conv.waiting_since).total_seconds())
        if column == _AGENT:
            return agent_text(conv, self._dialect)
        return ""

    @staticmethod
    def _sort_value(conv: Conversation, column: int) -> Any:
        if column == Column.CUSTOMER:
            return conv.customer_name.casefold()
        if column == Column.CHANNEL:
            return conv.channel.casefold()
        if column == Column.LAST_MESSAGE:
            return (conv.last_message_at or _MIN_TIME).timestamp()
        if column == Column.WAITING:
            return (conv.waiting_since or _MAX_TIME).timestamp()
        if column == Column.UNREAD:
            return -conv.unread
        return (conv.agent.name or conv.agent.email) if conv.agent is not None else ""

    def _remove_rows(self, rows: list[int]) -> None:
        # Highest runs first so that lower row numbers stay valid; the index is rebuilt once from
        # the lowest removed row (C-speed dict update; removals are rare).
        for first, last in reversed(list(_runs(rows))):
            self.beginRemoveRows(QModelIndex(), first, last)
            for key in self._keys[first : last + 1]:
                del self._row_of[key]
            del self._keys[first : last + 1]
            self.endRemoveRows()
        low = rows[0]
        self._row_of.update(zip(self._keys[low:], range(low, len(self._keys)), strict=True))

    def _on_tick_timer_timeout(self) -> None:
        self.tick()


def _runs(rows: list[int]) -> Iterable[tuple[int, int]]:
    """Contiguous (first, last) runs of sorted row numbers."""
    if not rows:
        return
    first = prev = rows[0]
    for row in rows[1:]:
        if row != prev + 1:
            yield first, prev
            first = row
        prev = row
    yield first, prev


def waiting_duration(seconds: float) -> str:
    """The waiting column: a ticking ``4:05`` under an hour, then ``2 h 5 min``, ``3 d 4 h``.

    Longer times are :func:`tray_agent.core.i18n.format_duration`, localised ("2 j 5 mnt").
    """
    total = max(0, int(seconds))
    if total >= 3600:
        return format_duration(total)
    minutes, secs = divmod(total, 60)
    return f"{minutes}:{secs:02d}"


def agent_name(conv: Conversation) -> str:
    """Who has the customer, in words ("" when nobody does)."""
    if not conv.assigned:
        return ""
    if conv.assigned_to_me:
        return _("Me")
    agent = conv.agent
    if agent is not None:
        name = isolate_bidi(one_line(agent.name or agent.email, 80))
        if name:
            return name
    return _("Another agent")


def agent_text(conv: Conversation, dialect: str = "") -> str:
    """The agent column: me, another agent, nobody yet while the customer waits, or the AI.

    Org rows say who handles them (``handled_by``); on the dashboard the bot answers every
    customer nobody has taken who does not wait for a human.
    """
    if conv.assigned:
        return agent_name(conv)
    if conv.waiting:
        return _("Nobody yet")
    if conv.handled_by == "ai" or (dialect == "dashboard" and not conv.handled_by):
        return _("AI")
    return ""


# ---------------------------------------------------------------------------------------------
# Tab proxies
# ---------------------------------------------------------------------------------------------


class ConversationTabProxy(QAbstractTableModel):
    """Base of the tab proxies: a tab condition, a search text and a fixed tab order.

    A flat, sorted, filtered view of :class:`ConversationTableModel` with the same columns and
    data. Not a ``QSortFilterProxyModel``: that one sorts and re-sorts through a Python
    ``lessThan`` per comparison (about 1.4 s for 10,000 rows on this machine, again on every
    bulk resync). Here each row has a sort key tuple kept in a sorted list, so placing a changed
    row is one C-speed ``bisect``; a batch is diffed against the keys (row moves, inserts and
    removals; inserts in runs), and only a bulk change (more than :data:`STRUCTURAL_LIMIT` moves or
    removals) resets, merging the kept order with the changed rows rather than re-sorting all.

    Subclasses define :meth:`accepts` and :meth:`sort_key` (a tuple ending with the key).

    Args:
        source: the conversation table.
        parent: the Qt parent.
    """

    def __init__(self, source: ConversationTableModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._source = source
        self._needle = ""
        self._keys: list[str] = []
        self._sks: list[tuple[Any, ...]] = []  # sorted; parallel to _keys
        self._sk_of: dict[str, tuple[Any, ...]] = {}
        self._rebuild()
        source.keys_applied.connect(self._on_source_keys_applied)
        source.headerDataChanged.connect(self.headerDataChanged)

    # ------------------------------------------------------------------ public API

    @property
    def source(self) -> ConversationTableModel:
        """The conversation table this tab shows a part of."""
        return self._source

    def set_search_text(self, text: str) -> None:
        """Show only rows whose customer, last message or channel contain ``text`` (any case)."""
        needle = text.strip().casefold()
        if needle != self._needle:
            self._needle = needle
            self.beginResetModel()
            self._rebuild()
            self.endResetModel()

    def key_at(self, row: int) -> str:
        """The conversation key of a row."""
        return self._keys[row]

    def row_of(self, key: str) -> int:
        """The row of a conversation key, or -1 when this tab does not show it."""
        sk = self._sk_of.get(key)
        return -1 if sk is None else bisect.bisect_left(self._sks, sk)

    def keys(self) -> tuple[str, ...]:
        """The keys shown, in tab order."""
        return tuple(self._keys)

    def refresh_column(self, column: int, first: int, last: int) -> None:
        """Repaint one column over rows ``first..last`` (the waiting-time tick).

        With a waiting-time target the whole rows repaint: a row past it is highlighted.
        """
        first = max(0, first)
        last = min(last, len(self._keys) - 1)
        if first <= last and 0 <= column < _NCOLS:
            if self._source.sla_seconds is not None:
                self.dataChanged.emit(self.index(first, 0), self.index(last, _NCOLS - 1))
            else:
                self.dataChanged.emit(self.index(first, column), self.index(last, column))

    def accepts(self, conv: Conversation) -> bool:
        """The tab's condition."""
        raise NotImplementedError

    def sort_key(self, conv: Conversation) -> tuple[Any, ...]:
        """The tab's order (ascending); must end with ``conv.key`` so that keys are unique."""
        raise NotImplementedError

    # ------------------------------------------------------------------ Qt overrides

    def rowCount(self, parent: _Index = _ROOT) -> int:  # noqa: D102, N802
        return 0 if parent.isValid() else len(self._keys)

    def columnCount(self, parent: _Index = _ROOT) -> int:  # noqa: D102, N802
        return 0 if parent.isValid() else _NCOLS

    def headerData(  # noqa: D102, N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        return self._source.headerData(section, orientation, role)

    def flags(self, index: _Index) -> Qt.ItemFlag:  # noqa: D102
        return self._source.flags(index)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: D102
        if role not in _CELL_ROLES:
            return None
        row = index.row()  # -1 for an invalid index
        if not 0 <= row < len(self._keys):
            return None
        return self._source.cell(self._keys[row], index.column(), role)

    # ------------------------------------------------------------------ internals

    def _wanted(self, conv: Conversation | None) -> tuple[Any, ...] | None:
        if conv is None or not self.accepts(conv):
            return None
        needle = self._needle
        if needle and not (
            needle in conv.customer_name.casefold()
            or needle in conv.last_message.casefold()
            or needle in conv.channel.casefold()
        ):
            return None
        return self.sort_key(conv)

    def _rebuild(self) -> None:
        wanted = self._wanted
        pairs = [(sk, conv.key) for conv in self._source.state.conversations.values() if (sk := wanted(conv))]
        pairs.sort()
        self._sks = [p[0] for p in pairs]
        self._keys = [p[1] for p in pairs]
        self._sk_of = dict(zip(self._keys, self._sks, strict=True))

    def _on_source_keys_applied(self, keys: frozenset[str] | None) -> None:
        if keys is None:
            self.beginResetModel()
            self._rebuild()
            self.endResetModel()
            return
        conversations = self._source.state.conversations
        removes: list[str] = []
        inserts: list[tuple[tuple[Any, ...], str]] = []
        moves: list[tuple[tuple[Any, ...], str]] = []
        touched: list[str] = []
        for key in keys:
            new = self._wanted(conversations.get(key))
            old = self._sk_of.get(key)
            if old is None:
                if new is not None:
                    inserts.append((new, key))
            elif new is None:
                removes.append(key)
            elif new != old:
                moves.append((new, key))
            else:
                touched.append(key)
        if len(removes) + len(moves) > STRUCTURAL_LIMIT:
            self._bulk_reset(removes, inserts, moves)
            return
        for key in removes:
            row = bisect.bisect_left(self._sks, self._sk_of.pop(key))
            self.beginRemoveRows(_ROOT, row, row)
            del self._sks[row], self._keys[row]
            self.endRemoveRows()
        for sk, key in moves:
            self._move(key, sk)
        self._insert_runs(inserts)
        rows = sorted(r for key in (*touched, *(k for _, k in moves)) if (r := self.row_of(key)) >= 0)
        for first, last in _runs(rows):
            self.dataChanged.emit(self.index(first, 0), self.index(last, _NCOLS - 1))

    def _insert_runs(self, inserts: list[tuple[tuple[Any, ...], str]]) -> None:
        """Insert rows, one notification per run of rows landing together.

        A resync page of 200 customers who all sort after the ones already shown is one run: one
        ``rowsInserted`` and one list splice, however many pages came before.
        """
        inserts.sort()
        i = 0
        while i < len(inserts):
            row = bisect.bisect_left(self._sks, inserts[i][0])
            limit = self._sks[row] if row < len(self._sks) else None
            j = i + 1
            while j < len(inserts) and (limit is None or inserts[j][0] < limit):
                j += 1
            run = inserts[i:j]
            self.beginInsertRows(_ROOT, row, row + len(run) - 1)
            self._sks[row:row] = [sk for sk, _ in run]
            self._keys[row:row] = [key for _, key in run]
            self._sk_of.update((key, sk) for sk, key in run)
            self.endInsertRows()
            i = j

    def _bulk_reset(
        self,
        removes: list[str],
        inserts: list[tuple[tuple[Any, ...], str]],
        moves: list[tuple[tuple[Any, ...], str]],
    ) -> None:
        """Many rows move or go at once: one reset, with the order merged, not recomputed.

        Only the changed keys' sort keys were computed (by the caller); the kept rows are
        already sorted, so the sort below merges runs in C.
        """
        drop = set(removes)
        drop.update(key for _, key in moves)
        pairs = [(sk, key) for sk, key in zip(self._sks, self._keys, strict=True) if key not in drop]
        pairs += inserts
        pairs += moves
        pairs.sort()
        self.beginResetModel()
        for key in removes:
            self._sk_of.pop(key, None)
        self._sks = [sk for sk, _ in pairs]
        self._keys = [key for _, key in pairs]
        self._sk_of.update((key, sk) for sk, key in (*inserts, *moves))
        self.endResetModel()

    def _move(self, key: str, sk: tuple[Any, ...]) -> None:
        old_row = bisect.bisect_left(self._sks, self._sk_of[key])
        del self._sks[old_row], self._keys[old_row]
        new_row = bisect.bisect_left(self._sks, sk)  # in the list without the row
        self._sks.insert(old_row, self._sk_of[key])  # put it back for the move notification
        self._keys.insert(old_row, key)
        if new_row == old_row:
            self._sks[old_row] = sk
            self._sk_of[key] = sk
            return
        # Qt numbers the destination before the move: below the row it is one further.
        destination = new_row if new_row < old_row else new_row + 1
        self.beginMoveRows(_ROOT, old_row, old_row, _ROOT, destination)
        del self._sks[old_row], self._keys[old_row]
        self._sks.insert(new_row, sk)
        self._keys.insert(new_row, key)
        self._sk_of[key] = sk
        self.endMoveRows()


_INF: Final = float("inf")


def _timestamp(at: datetime | None, missing: float) -> float:
    return missing if at is None else at.timestamp()


class WaitingProxy(ConversationTabProxy):
    """Customers waiting for a human whom nobody has taken (``State.waiting_keys``), oldest first."""

    def accepts(self, conv: Conversation) -> bool:  # noqa: D102
        return conv.urgent  # a customer taken by anyone leaves Waiting at once (issue 14)

    def sort_key(self, conv: Conversation) -> tuple[Any, ...]:  # noqa: D102
        return (_timestamp(conv.waiting_since, _INF), conv.key)


class MineProxy(ConversationTabProxy):
    """Conversations assigned to me, most recent activity first."""

    def accepts(self, conv: Conversation) -> bool:  # noqa: D102
        return conv.assigned_to_me

    def sort_key(self, conv: Conversation) -> tuple[Any, ...]:  # noqa: D102
        return (-_timestamp(conv.last_message_at, -_INF), conv.key)


class AllActiveProxy(ConversationTabProxy):
    """Org: every open conversation; dashboard: every known customer. Most recent first."""

    def accepts(self, conv: Conversation) -> bool:  # noqa: D102
        return conv.status not in _CLOSED_STATUSES

    def sort_key(self, conv: Conversation) -> tuple[Any, ...]:  # noqa: D102
        return (-_timestamp(conv.last_message_at, -_INF), conv.key)


# ---------------------------------------------------------------------------------------------
# Chat messages
# ---------------------------------------------------------------------------------------------


class MessageListModel(QAbstractListModel):
    """One conversation's messages (the store's bounded History), oldest first.

    :meth:`set_history` diffs the new History against the shown one: appended rows become one
    insert, older pages one insert at the top, replaced rows ``dataChanged``; anything else
    (bounded by the history limit) a reset.

    Args:
        history: the initial History.
        parent: the Qt parent.
    """

    def __init__(self, history: History | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._records: tuple[MessageRecord, ...] = history.records if history is not None else ()

    @property
    def records(self) -> tuple[MessageRecord, ...]:
        """The rows shown."""
        return self._records

    def record_at(self, row: int) -> MessageRecord:
        """The record of a row."""
        return self._records[row]

    def set_history(self, history: History) -> None:
        """Show ``history``, emitting the smallest change signals that describe the difference."""
        old = self._records
        new = history.records
        if old is new:
            return
        n_old, n_new = len(old), len(new)
        if n_old == 0 or n_new == 0:
            self.beginResetModel()
            self._records = new
            self.endResetModel()
            return
        prefix = _common_prefix(old, new)
        if prefix == n_old and n_new > n_old:  # appended
            self.beginInsertRows(QModelIndex(), n_old, n_new - 1)
            self._records = new
            self.endInsertRows()
            return
        if n_new > n_old and _is_suffix(old, new):  # older page merged at the top
            self.beginInsertRows(QModelIndex(), 0, n_new - n_old - 1)
            self._records = new
            self.endInsertRows()
            return
        if n_new == n_old:  # rows replaced in place (reply state, echo ...)
            changed = [i for i in range(prefix, n_new) if old[i] is not new[i]]
            self._records = new
            for first, last in _runs(changed):
                self.dataChanged.emit(self.index(first, 0), self.index(last, 0))
            return
        self.beginResetModel()
        self._records = new
        self.endResetModel()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: D102, B008, N802
        return 0 if parent.isValid() else len(self._records)

    def flags(self, index: _Index) -> Qt.ItemFlag:  # noqa: D102
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: D102
        if not index.isValid() or index.row() >= len(self._records):
            return None
        record = self._records[index.row()]
        if role == Qt.ItemDataRole.DisplayRole or role == Qt.ItemDataRole.AccessibleTextRole:
            return record.text
        if role == RECORD_ROLE:
            return record
        if role == SENDER_ROLE:
            return record.sender
        if role == RETRIED_ROLE:
            return bool(record.retried_as)  # the store links a retried reply to its new one
        return None


def _common_prefix(old: tuple[MessageRecord, ...], new: tuple[MessageRecord, ...]) -> int:
    n = min(len(old), len(new))
    i = 0
    while i < n and old[i] is new[i]:
        i += 1
    return i


def _is_suffix(old: tuple[MessageRecord, ...], new: tuple[MessageRecord, ...]) -> bool:
    offset = len(new) - len(old)
    return all(a is b for a, b in zip(old, new[offset:], strict=True))


def sender_label(record: MessageRecord, customer_name: str, me: str) -> str:
    """Who wrote a bubble, in words: the customer's name, AI, Bot, an agent, or You."""
    if record.mine or (me and record.sender is SenderKind.AGENT and record.agent_id == me):
        return _("You")
    if record.sender is SenderKind.CUSTOMER:
        return isolate_bidi(one_line(customer_name, 80)) or _("Customer")
    if record.sender is SenderKind.AI:
        return _("AI")
    if record.sender is SenderKind.BOT:
        return _("Bot")
    if record.sender is SenderKind.SYSTEM:
        return _("System")
    return isolate_bidi(one_line(record.sender_name, 80)) or _("Agent")


# ---------------------------------------------------------------------------------------------
# Presentation helpers shared by the windows (plain text only)
# ---------------------------------------------------------------------------------------------


def connection_text(info: ConnectionInfo) -> str:
    """The connection state in words (the state is an enum; this is only its rendering)."""
    texts = {
        ConnectionState.OFFLINE: _("Offline"),
        ConnectionState.CONNECTING: _("Connecting…"),
        ConnectionState.RESYNCING: _("Connected, catching up…"),
        ConnectionState.CONNECTED: _("Connected"),
        ConnectionState.RECONNECTING: _("Connection lost, reconnecting…"),
        ConnectionState.LIMITED: _("Limited connection (updates may be slow)"),
        ConnectionState.AUTH_REQUIRED: _("Signed out: please sign in again"),
        ConnectionState.SIGNED_IN_ELSEWHERE: _(
            "Signed in elsewhere: another app or browser tab uses this account's live updates"
        ),
    }
    text = texts.get(info.state, str(info.state))
    if info.state is ConnectionState.RECONNECTING and info.retry_in is not None:
        text += " " + _("(next try in {seconds} s)").format(seconds=max(0, round(info.retry_in)))
    if info.detail and info.state is not ConnectionState.CONNECTED:
        text += " — " + one_line(info.detail, 120)
    return text


def is_online(info: ConnectionInfo) -> bool:
    """True when commands are being sent now (otherwise they wait in the outbox)."""
    return info.state in (ConnectionState.CONNECTED, ConnectionState.RESYNCING, ConnectionState.LIMITED)


_ALREADY_ASSIGNED_PREFIX: Final = "already assigned to"


def conflict_text(conv: Conversation | None, server_text: str) -> str:
    """Why my take-over failed and who has the customer, in plain words.

    The server's text is used when it names somebody ("Customer is already assigned to
    <email>"); the dashboard often leaves the email empty (PROTOCOL.md G9), and then the agent
    known from a later resync or assignment event is named, or "another agent".
    """
    customer = isolate_bidi(one_line(conv.customer_name, 80)) if conv is not None else ""
    customer = customer or _("This customer")
    server = one_line(server_text, 200)
    _head, found, rest = server.casefold().partition(_ALREADY_ASSIGNED_PREFIX)
    if server and (not found or rest.strip(" .")):
        return _("Could not take over {customer}: {reason}").format(
            customer=customer, reason=isolate_bidi(server)
        )
    who = ""
    if conv is not None and conv.assigned and not conv.assigned_to_me and conv.agent is not None:
        who = isolate_bidi(one_line(conv.agent.name or conv.agent.email, 80))
    if who:
        return _("{customer} is already being handled by {agent}.").format(customer=customer, agent=who)
    return _("{customer} is already being handled by another agent.").format(customer=customer)
