"""One chat window per customer: history then live bubbles, who handles it, replies, retry, drafts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from PySide6.QtCore import (
    QAbstractItemModel,
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QCloseEvent,
    QColor,
    QDesktopServices,
    QFont,
    QFontMetrics,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPalette,
    QShortcut,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QPlainTextEdit,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from tray_agent.core.commands import (
    DiscardCommand,
    HandBack,
    LoadHistory,
    Release,
    ResendCommand,
    Resolve,
    SendReply,
    TakeOver,
)
from tray_agent.core.events import ConnectionState, Event, SenderKind
from tray_agent.core.i18n import _, format_clock
from tray_agent.core.ports import CommandSink, DraftStore, Scheduler, TimerHandle
from tray_agent.core.quick_replies import QuickReply
from tray_agent.core.state import (
    CommandState,
    ConnectionInfo,
    Conversation,
    FocusChanged,
    History,
    MessageRecord,
    OutboundCommand,
    Refusal,
)
from tray_agent.core.text import isolate_bidi
from tray_agent.ui.bridge import StoreBridge
from tray_agent.ui.customer_service import (
    ConflictBanner,
    can_hand_back,
    can_release,
    can_resolve,
    can_take_over,
    new_conflicts,
)
from tray_agent.ui.models import (
    RECORD_ROLE,
    RETRIED_ROLE,
    MessageListModel,
    agent_name,
    is_online,
    one_line,
    sender_label,
)
from tray_agent.ui.quick_reply_popup import QuickReplyPopup
from tray_agent.ui.scheduler import QtScheduler
from tray_agent.ui.theme import is_dark

logger = logging.getLogger(__name__)

_Index = QModelIndex | QPersistentModelIndex

DRAFT_SAVE_DELAY_MS: Final = 500
"""Drafts are written at most this often while typing (and at once when a window closes)."""
HISTORY_RETRY_DELAY: Final = 30.0
"""Seconds before asking again for the first history page while the server fails to load it (a
server error for a conversation we do not know), as long as we are connected; the delay doubles
with each failed ask up to :data:`HISTORY_RETRY_MAX`. A reconnect asks at once and starts over."""
HISTORY_RETRY_MAX: Final = 300.0
"""The longest delay between two asks for a first history page the server keeps failing."""
LINK_SCHEMES: Final = frozenset({"http", "https"})
"""Attachment URLs with these schemes are links; anything else is shown as plain text."""
_EMPTY_HISTORY: Final = History()


def is_web_link(url: str) -> bool:
    """True for a well-formed http(s) URL (the only links a bubble makes clickable)."""
    parsed = QUrl(url, QUrl.ParsingMode.StrictMode)
    return parsed.isValid() and parsed.scheme().lower() in LINK_SCHEMES and bool(parsed.host())


class MemoryDraftStore:
    """A :class:`~tray_agent.core.ports.DraftStore` in memory (no account's local store yet, tests)."""

    def __init__(self) -> None:
        self._drafts: dict[str, str] = {}

    def draft(self, conversation: str) -> str:
        """The draft of ``conversation`` ("" if none)."""
        return self._drafts.get(conversation, "")

    def set_draft(self, conversation: str, text: str) -> None:
        """Remember a draft; a blank text forgets it."""
        if text.strip():
            self._drafts[conversation] = text
        else:
            self._drafts.pop(conversation, None)

    def drafts(self) -> dict[str, str]:
        """Every draft by conversation."""
        return dict(self._drafts)


# ---------------------------------------------------------------------------------------------
# Bubbles
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BubbleLayout:
    """Where the parts of one bubble go (computed identically for sizing, painting, clicks)."""

    bubble: QRect
    header: QRect
    body: QRect
    link: QRect | None
    status: QRect | None
    retry: QRect | None
    height: int
    resend: QRect | None = None
    discard: QRect | None = None


_PAD: Final = 8
_GAP: Final = 6
_TEXT_FLAGS: Final = int(Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)


class BubbleDelegate(QStyledItemDelegate):
    """Paints a message as a plain-text bubble: customer left, everyone else right.

    Text is drawn with ``QPainter.drawText`` (never interpreted as markup). An http(s)
    attachment is a link opened on click; a failed reply of mine has a Retry link; an
    unconfirmed one (sent, then the connection dropped) has "Send again" and "Discard" links.

    Args:
        view: the list view (its width sets the bubble width).
        context: returns (customer name, my user id, online) for labels and queued marks.

    Signals:
        link_activated(QUrl): an http(s) attachment link was clicked.
        retry_requested(object): Retry was clicked on a failed reply (its MessageRecord).
        resend_requested(object): "Send again" was clicked on an unconfirmed reply.
        discard_requested(object): "Discard" was clicked on an unconfirmed reply.
    """

    link_activated = Signal(QUrl)
    retry_requested = Signal(object)
    resend_requested = Signal(object)
    discard_requested = Signal(object)

    def __init__(self, view: QListView, context: Callable[[], tuple[str, str, bool]]) -> None:
        super().__init__(view)
        self._view = view
        self._context = context

    # ------------------------------------------------------------------ texts

    def header_text(self, record: MessageRecord) -> str:
        """Sender and time."""
        customer, me, _online = self._context()
        label = sender_label(record, customer, me)
        if record.at is not None:
            label += "  ·  " + format_clock(record.at)
        return label

    def status_text(self, record: MessageRecord, retried: bool) -> str:
        """Where my reply stands ("" for others' messages)."""
        if not record.mine:
            return ""
        _customer, _me, online = self._context()
        state = record.reply_state
        if state is CommandState.DISCARDED:
            return _("Discarded: not sent")
        if state is CommandState.QUEUED:
            text = _("Sending…") if online else _("Queued: will be sent when you are back online")
            return text + ("  · " + _("not saved on this computer") if record.unsaved else "")
        if state is CommandState.SENT:
            return _("Sent")
        if state is CommandState.CONFIRMED:
            return _("Delivered ✓")
        if state is CommandState.FAILED:
            text = _("Failed: {reason}").format(reason=one_line(record.error, 160) or _("unknown error"))
            return text + ("  " + _("(retried)") if retried else "")
        if state is CommandState.UNCONFIRMED:
            return _("Not confirmed — the customer may or may not have received it")
        return ""

    def link_text(self, record: MessageRecord) -> tuple[str, bool]:
        """The attachment line and whether it is a clickable web link."""
        attachment = record.attachment
        if attachment is None:
            return "", False
        label = one_line(attachment.name or attachment.kind or _("attachment"), 80)
        if is_web_link(attachment.url):
            return _("Attachment: {name} — {url}").format(name=label, url=one_line(attachment.url, 120)), True
        return _("Attachment: {name} (not a web link: {url})").format(
            name=label, url=one_line(attachment.url, 120)
        ), False

    @staticmethod
    def can_retry(record: MessageRecord, retried: bool) -> bool:
        """Retry (a new reply with the same text) is offered once for my failed replies."""
        return record.mine and not retried and record.reply_state is CommandState.FAILED

    @staticmethod
    def can_resend(record: MessageRecord) -> bool:
        """Whether to offer Send again (same command, same bubble) and Discard: my unconfirmed replies."""
        return record.mine and record.reply_state is CommandState.UNCONFIRMED

    # ------------------------------------------------------------------ geometry

    def _fonts(self, option: QStyleOptionViewItem) -> tuple[QFont, QFont]:
        body = QFont(option.font)
        small = QFont(option.font)
        small.setPointSizeF(max(6.0, body.pointSizeF() * 0.85))
        return body, small

    def bubble_layout(self, option: QStyleOptionViewItem, index: _Index) -> BubbleLayout:
        """Compute the bubble's geometry inside ``option.rect``."""
        record: MessageRecord = index.data(RECORD_ROLE)
        retried = bool(index.data(RETRIED_ROLE))
        body_font, small_font = self._fonts(option)
        body_fm, small_fm = QFontMetrics(body_font), QFontMetrics(small_font)
        full = max(200, self._view.viewport().width())
        width = max(160, int(full * 0.78))
        inner = width - 2 * _PAD
        header_h = small_fm.height()
        text = record.text
        body_h = body_fm.boundingRect(QRect(0, 0, inner, 100000), _TEXT_FLAGS, text).height() if text else 0
        link_text, _clickable = self.link_text(record)
        link_h = (
            small_fm.boundingRect(QRect(0, 0, inner, 1000), _TEXT_FLAGS, link_text).height()
            if link_text
            else 0
        )
        status = self.status_text(record, retried)
        status_h = (
            small_fm.boundingRect(QRect(0, 0, inner, 1000), _TEXT_FLAGS, status).height() if status else 0
        )
        retry_w = small_fm.horizontalAdvance(_("Retry")) + 2 * _PAD if self.can_retry(record, retried) else 0
        resend_w = discard_w = 0
        if self.can_resend(record):
            resend_w = small_fm.horizontalAdvance(_("Send again")) + 2 * _PAD
            discard_w = small_fm.horizontalAdvance(_("Discard")) + 2 * _PAD
        height = _PAD + header_h + (_GAP + body_h if body_h else 0)
        height += (
            (_GAP + link_h if link_h else 0)
            + (_GAP + max(status_h, small_fm.height()) if status else 0)
            + (_GAP + small_fm.height() if resend_w else 0)
            + _PAD
        )
        left = option.rect.left() + _GAP
        right_side = record.sender is not SenderKind.CUSTOMER
        x = option.rect.left() + full - width - _GAP if right_side else left
        top = option.rect.top() + _GAP // 2
        bubble = QRect(x, top, width, height)
        y = top + _PAD
        header = QRect(x + _PAD, y, inner, header_h)
        y += header_h
        body = QRect(x + _PAD, y + _GAP, inner, body_h) if body_h else QRect(x + _PAD, y, inner, 0)
        y = body.bottom() + 1 if body_h else y
        link = None
        if link_h:
            link = QRect(x + _PAD, y + _GAP, inner, link_h)
            y = link.bottom() + 1
        status_rect = retry = resend = discard = None
        if status:
            status_rect = QRect(x + _PAD, y + _GAP, inner - retry_w, max(status_h, small_fm.height()))
            if retry_w:
                retry = QRect(x + width - _PAD - retry_w, y + _GAP, retry_w, small_fm.height())
            y = status_rect.bottom() + 1
        if resend_w:
            # The agent decides: their own line, so neither link hides the status words.
            discard = QRect(x + width - _PAD - discard_w, y + _GAP, discard_w, small_fm.height())
            resend = QRect(discard.left() - resend_w, y + _GAP, resend_w, small_fm.height())
        return BubbleLayout(
            bubble, header, body, link, status_rect, retry, height + _GAP, resend=resend, discard=discard
        )

    # ------------------------------------------------------------------ Qt overrides

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:  # noqa: D102, N802
        layout = self.bubble_layout(option, index)
        return QSize(max(200, self._view.viewport().width()), layout.height)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:  # noqa: D102
        record: MessageRecord = index.data(RECORD_ROLE)
        retried = bool(index.data(RETRIED_ROLE))
        layout = self.bubble_layout(option, index)
        palette = option.palette
        body_font, small_font = self._fonts(option)
        fill, ink = bubble_colors(palette, record)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawRoundedRect(layout.bubble, 8, 8)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.setPen(palette.color(QPalette.ColorRole.Highlight))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(layout.bubble, 8, 8)
        muted = QColor(ink)
        muted.setAlphaF(0.7)
        painter.setFont(small_font)
        painter.setPen(muted)
        painter.drawText(layout.header, _TEXT_FLAGS, self.header_text(record))
        painter.setFont(body_font)
        painter.setPen(ink)
        if record.text:
            painter.drawText(layout.body, _TEXT_FLAGS, record.text)
        painter.setFont(small_font)
        if layout.link is not None:
            text, clickable = self.link_text(record)
            if clickable:
                link_font = QFont(small_font)
                link_font.setUnderline(True)
                painter.setFont(link_font)
                painter.setPen(palette.color(QPalette.ColorRole.Link))
            else:
                painter.setPen(muted)
            painter.drawText(layout.link, _TEXT_FLAGS, text)
            painter.setFont(small_font)
        if layout.status is not None:
            failed = record.reply_state in (CommandState.FAILED, CommandState.UNCONFIRMED)
            painter.setPen(QColor("#c62828") if failed and not retried else muted)
            painter.drawText(layout.status, _TEXT_FLAGS, self.status_text(record, retried))
        if layout.retry is not None:
            retry_font = QFont(small_font)
            retry_font.setBold(True)
            retry_font.setUnderline(True)
            painter.setFont(retry_font)
            painter.setPen(palette.color(QPalette.ColorRole.Link))
            painter.drawText(layout.retry, int(Qt.AlignmentFlag.AlignCenter), _("Retry"))
        for rect, label in ((layout.resend, _("Send again")), (layout.discard, _("Discard"))):
            if rect is None:
                continue
            action_font = QFont(small_font)
            action_font.setBold(True)
            action_font.setUnderline(True)
            painter.setFont(action_font)
            painter.setPen(palette.color(QPalette.ColorRole.Link))
            painter.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), label)
        painter.restore()

    def editorEvent(  # noqa: D102, N802
        self, event: QEvent, model: QAbstractItemModel, option: QStyleOptionViewItem, index: _Index
    ) -> bool:
        if (
            event.type() == QEvent.Type.MouseButtonRelease
            and isinstance(event, QMouseEvent)
            and event.button() == Qt.MouseButton.LeftButton
        ):
            layout = self.bubble_layout(option, index)
            pos = event.position().toPoint()
            record: MessageRecord = index.data(RECORD_ROLE)
            attachment = record.attachment
            link = layout.link
            if (
                link is not None
                and link.contains(pos)
                and attachment is not None
                and is_web_link(attachment.url)
            ):
                self.link_activated.emit(QUrl(attachment.url, QUrl.ParsingMode.StrictMode))
                return True
            if layout.retry is not None and layout.retry.contains(pos):
                self.retry_requested.emit(record)
                return True
            if layout.resend is not None and layout.resend.contains(pos):
                self.resend_requested.emit(record)
                return True
            if layout.discard is not None and layout.discard.contains(pos):
                self.discard_requested.emit(record)
                return True
        return super().editorEvent(event, model, option, index)


def bubble_colors(palette: QPalette, record: MessageRecord) -> tuple[QColor, QColor]:
    """Fill and text colour of a bubble, readable on light and dark palettes."""
    dark = is_dark(palette)
    if record.mine or record.sender is SenderKind.AGENT:
        hue = 210 if record.mine else 270  # me: blue; other agents: violet
    elif record.sender is SenderKind.CUSTOMER:
        hue = -1
    elif record.sender is SenderKind.AI:
        hue = 150  # green
    else:
        hue = 35  # bot / system: amber
    if hue < 0:
        fill = palette.color(QPalette.ColorRole.AlternateBase if not dark else QPalette.ColorRole.Button)
    else:
        fill = QColor.fromHsl(hue, 90 if dark else 160, 60 if dark else 225)
    return fill, palette.color(QPalette.ColorRole.Text)


# ---------------------------------------------------------------------------------------------
# Reply box
# ---------------------------------------------------------------------------------------------


class ReplyEdit(QPlainTextEdit):
    """The reply box: Enter sends, Shift+Enter starts a new line.

    Signals:
        submitted(): Enter was pressed.
    """

    submitted = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: D102, N802
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
            else:
                self.submitted.emit()
            event.accept()
            return
        super().keyPressEvent(event)


# ---------------------------------------------------------------------------------------------
# The window
# ---------------------------------------------------------------------------------------------


class ChatWindow(QWidget):
    """A small window for one customer: history then live messages, handler banner, replies.

    Args:
        conversation: the conversation key.
        bridge: the store bridge (signals and snapshots).
        dispatch: dispatches UI events to the store (FocusChanged, ConversationRead).
        command_sink: where replies, take-overs, releases and history loads go.
        drafts: where reply drafts are kept (the account's local store, injected by app.py
            through the WindowManager); written shortly after typing stops and at close.
        parent: the Qt parent (normally None: a top-level window).
        url_opener: opens a clicked http(s) link (default: QDesktopServices.openUrl).
        quick_replies: the quick replies offered after "/" in the reply box (read when typing).
        agent_name: my name, for the ``{agent_name}`` variable of quick replies.
        scheduler: the timers of the history retry (default: Qt timers owned by the window).

    Signals:
        closed(str): the window was closed (its conversation key).
    """

    closed = Signal(str)

    def __init__(
        self,
        conversation: str,
        bridge: StoreBridge,
        dispatch: Callable[[Event], Any],
        command_sink: CommandSink,
        drafts: DraftStore | None = None,
        parent: QWidget | None = None,
        *,
        url_opener: Callable[[QUrl], Any] = QDesktopServices.openUrl,
        quick_replies: Callable[[], Sequence[QuickReply]] = tuple,
        agent_name: Callable[[], str] = str,
        scheduler: Scheduler | None = None,
    ) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self._conversation = conversation
        self._bridge = bridge
        self._dispatch = dispatch
        self._sink = command_sink
        self._drafts: DraftStore = drafts if drafts is not None else MemoryDraftStore()
        self._draft_timer = QTimer(self)
        self._draft_timer.setSingleShot(True)
        self._draft_timer.setInterval(DRAFT_SAVE_DELAY_MS)
        self._draft_timer.timeout.connect(self._on_draft_timer_timeout)
        self._url_opener = url_opener
        self._quick_replies = quick_replies
        self._agent_name = agent_name
        self._reported: set[str] = set()
        self._history_page = 0
        self._older_requested_at: int | None = None  # history length when "load older" was asked
        self._online = is_online(bridge.state.connection)
        self._scheduler: Scheduler = scheduler if scheduler is not None else QtScheduler(self)
        self._history_retry: TimerHandle | None = None  # armed while the server fails the first page
        self._history_retries = 0  # asks made by the retry since the last reconnect (the backoff)
        self._stick_to_bottom = True
        self._focused = False
        new_conflicts(bridge.state.outbound, self._reported, conversation)
        self.setObjectName("chatWindow")

        conv = self._conv()
        self._model = MessageListModel(conv.messages if conv is not None else None, self)
        self._build_ui()
        self._refresh()
        bridge.conversations_changed.connect(self._on_bridge_conversations_changed)
        bridge.connection_changed.connect(self._on_bridge_connection_changed)
        bridge.outbound_changed.connect(self._on_bridge_outbound_changed)
        self._ask_first_page()

    # ------------------------------------------------------------------ construction

    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        self._handler_frame = QFrame(self)
        self._handler_frame.setFrameShape(QFrame.Shape.StyledPanel)
        # The sentence on its own line, the actions under it: at a chat window's width a sentence
        # beside four buttons wrapped to three lines (Indonesian).
        handler_layout = QVBoxLayout(self._handler_frame)
        handler_layout.setContentsMargins(8, 4, 8, 4)
        handler_layout.setSpacing(4)
        actions = QHBoxLayout()
        actions.setContentsMargins(0, 0, 0, 0)
        self._handler_label = QLabel(self._handler_frame)
        self._handler_label.setTextFormat(Qt.TextFormat.PlainText)
        self._handler_label.setWordWrap(True)
        self._handler_label.setAccessibleName(_("Who handles this chat"))
        self._take_over_button = QPushButton(_("&Take over"), self._handler_frame)
        self._take_over_button.setAccessibleName(_("Take over this customer"))
        self._take_over_button.setAccessibleDescription(
            _("You become the agent for this customer. Shortcut: Ctrl+Shift+T.")
        )
        self._take_over_button.clicked.connect(self._on_take_over_button_clicked)
        self._release_button = QPushButton(_("&Release"), self._handler_frame)
        self._release_button.setAccessibleName(_("Release this customer"))
        self._release_button.setAccessibleDescription(
            _("Gives the customer back so another agent can take them. Shortcut: Ctrl+Shift+R.")
        )
        self._release_button.clicked.connect(self._on_release_button_clicked)
        self._hand_back_button = QPushButton(_("Hand back to &AI"), self._handler_frame)
        self._hand_back_button.setAccessibleName(_("Hand this customer back to the AI"))
        self._hand_back_button.setAccessibleDescription(
            _("The AI (or the bot) answers the customer again. Shortcut: Ctrl+Shift+B.")
        )
        self._hand_back_button.clicked.connect(self._on_hand_back_button_clicked)
        self._resolve_button = QPushButton(_("Resol&ve"), self._handler_frame)
        self._resolve_button.setAccessibleName(_("Resolve this conversation"))
        self._resolve_button.setAccessibleDescription(
            _("Closes the conversation: the customer leaves your list. Shortcut: Ctrl+Shift+D.")
        )
        self._resolve_button.clicked.connect(self._on_resolve_button_clicked)
        handler_layout.addWidget(self._handler_label)
        actions.addStretch(1)
        actions.addWidget(self._take_over_button)
        actions.addWidget(self._release_button)
        actions.addWidget(self._hand_back_button)
        actions.addWidget(self._resolve_button)
        handler_layout.addLayout(actions)
        layout.addWidget(self._handler_frame)

        self._conflict_banner = ConflictBanner(self)
        self._conflict_banner.take_anyway_requested.connect(self._on_conflict_banner_take_anyway_requested)
        layout.addWidget(self._conflict_banner)

        self._older_button = QPushButton(_("Load older messages"), self)
        self._older_button.setFlat(True)
        self._older_button.setAccessibleName(_("Load older messages"))
        self._older_button.setAccessibleDescription(
            _("Adds earlier messages at the top of the conversation.")
        )
        self._older_button.clicked.connect(self._on_older_button_clicked)
        layout.addWidget(self._older_button)

        self._message_view = QListView(self)
        self._message_view.setModel(self._model)
        self._message_view.setAccessibleName(_("Messages"))
        self._message_view.setAccessibleDescription(
            _("The conversation, oldest first. Ctrl+C copies the selected message.")
        )
        self._message_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._message_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._message_view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self._message_view.setResizeMode(QListView.ResizeMode.Adjust)
        self._message_view.setWordWrap(True)
        self._message_view.setMouseTracking(True)
        self._delegate = BubbleDelegate(self._message_view, self._bubble_context)
        self._delegate.link_activated.connect(self._on_delegate_link_activated)
        self._delegate.retry_requested.connect(self._on_delegate_retry_requested)
        self._delegate.resend_requested.connect(self._on_delegate_resend_requested)
        self._delegate.discard_requested.connect(self._on_delegate_discard_requested)
        self._message_view.setItemDelegate(self._delegate)
        scrollbar = self._message_view.verticalScrollBar()
        scrollbar.valueChanged.connect(self._on_scrollbar_value_changed)
        scrollbar.rangeChanged.connect(self._on_scrollbar_range_changed)
        self._model.rowsInserted.connect(self._on_model_rows_inserted)
        layout.addWidget(self._message_view, 1)
        self._copy_shortcut = QShortcut(QKeySequence.StandardKey.Copy, self._message_view)
        self._copy_shortcut.activated.connect(self._on_copy_shortcut_activated)

        self._failure_frame = QFrame(self)
        failure_layout = QHBoxLayout(self._failure_frame)
        failure_layout.setContentsMargins(8, 2, 8, 2)
        self._failure_label = QLabel(self._failure_frame)
        self._failure_label.setTextFormat(Qt.TextFormat.PlainText)
        self._failure_label.setWordWrap(True)
        self._failure_label.setAccessibleName(_("Failed reply"))
        self._retry_button = QPushButton(_("Retr&y"), self._failure_frame)
        self._retry_button.setAccessibleName(_("Retry sending the failed reply"))
        self._retry_button.setAccessibleDescription(_("Sends the same text again as a new reply."))
        self._retry_button.clicked.connect(self._on_retry_button_clicked)
        self._resend_button = QPushButton(_("Send a&gain"), self._failure_frame)
        self._resend_button.setAccessibleName(_("Send the unconfirmed reply again"))
        self._resend_button.setAccessibleDescription(
            _("Sends the same reply again. The customer may then receive it twice.")
        )
        self._resend_button.clicked.connect(self._on_resend_button_clicked)
        self._discard_button = QPushButton(_("&Discard"), self._failure_frame)
        self._discard_button.setAccessibleName(_("Discard the unconfirmed reply"))
        self._discard_button.setAccessibleDescription(
            _("Stops trying to send the reply. It is kept in the chat as not sent.")
        )
        self._discard_button.clicked.connect(self._on_discard_button_clicked)
        failure_layout.addWidget(self._failure_label, 1)
        failure_layout.addWidget(self._retry_button)
        failure_layout.addWidget(self._resend_button)
        failure_layout.addWidget(self._discard_button)
        self._failure_frame.hide()
        layout.addWidget(self._failure_frame)

        reply_row = QHBoxLayout()
        self._reply_edit = ReplyEdit(self)
        self._reply_edit.setAccessibleName(_("Reply"))
        self._reply_edit.setAccessibleDescription(
            _("Enter sends, Shift+Enter starts a new line. Type / for quick replies.")
        )
        self._reply_edit.setPlaceholderText(_("Write a reply — Enter sends, Shift+Enter for a new line"))
        self._reply_edit.setTabChangesFocus(True)
        self._reply_edit.setFixedHeight(self._reply_edit.fontMetrics().lineSpacing() * 4 + 12)
        self._reply_edit.setPlainText(self._drafts.draft(self._conversation))
        self._reply_edit.moveCursor(self._reply_edit.textCursor().MoveOperation.End)
        self._reply_edit.submitted.connect(self._on_reply_edit_submitted)
        self._reply_edit.textChanged.connect(self._on_reply_edit_text_changed)
        self._quick_reply_popup = QuickReplyPopup(
            self._reply_edit, self._quick_replies, self._quick_reply_variables, self
        )
        self._send_button = QPushButton(_("&Send"), self)
        self._send_button.setAccessibleName(_("Send reply"))
        self._send_button.setAccessibleDescription(_("Sends what the reply box holds."))
        self._send_button.clicked.connect(self._on_send_button_clicked)
        reply_row.addWidget(self._reply_edit, 1)
        reply_row.addWidget(self._send_button, 0, Qt.AlignmentFlag.AlignBottom)
        layout.addLayout(reply_row)

        self._offline_label = QLabel(self)
        self._offline_label.setTextFormat(Qt.TextFormat.PlainText)
        self._offline_label.setAccessibleName(_("Connection note"))
        layout.addWidget(self._offline_label)

        QWidget.setTabOrder(self._reply_edit, self._send_button)
        QWidget.setTabOrder(self._send_button, self._message_view)
        QWidget.setTabOrder(self._message_view, self._older_button)
        QWidget.setTabOrder(self._older_button, self._take_over_button)
        QWidget.setTabOrder(self._take_over_button, self._release_button)
        QWidget.setTabOrder(self._release_button, self._hand_back_button)
        QWidget.setTabOrder(self._hand_back_button, self._resolve_button)
        QWidget.setTabOrder(self._resolve_button, self._retry_button)
        QWidget.setTabOrder(self._retry_button, self._resend_button)
        QWidget.setTabOrder(self._resend_button, self._discard_button)
        self.setFocusProxy(self._reply_edit)
        self._reply_edit.setFocus(Qt.FocusReason.OtherFocusReason)  # a new chat starts in the reply box
        self.resize(420, 560)

    # ------------------------------------------------------------------ public API

    @property
    def conversation(self) -> str:
        """The conversation key."""
        return self._conversation

    @property
    def model(self) -> MessageListModel:
        """The message model."""
        return self._model

    @property
    def message_view(self) -> QListView:
        """The bubble list."""
        return self._message_view

    @property
    def delegate(self) -> BubbleDelegate:
        """The bubble painter."""
        return self._delegate

    @property
    def reply_edit(self) -> ReplyEdit:
        """The reply box."""
        return self._reply_edit

    @property
    def quick_reply_popup(self) -> QuickReplyPopup:
        """The "/" quick-reply picker of the reply box."""
        return self._quick_reply_popup

    @property
    def handler_text(self) -> str:
        """What the banner says about who handles the chat."""
        return self._handler_label.text()

    @property
    def conflict_banner(self) -> ConflictBanner:
        """The conflict banner."""
        return self._conflict_banner

    @property
    def failure_text(self) -> str:
        """The failure bar's text ("" when hidden)."""
        return self._failure_label.text() if not self._failure_frame.isHidden() else ""

    def send_reply(self) -> None:
        """Send what the reply box holds (Enter and the Send button)."""
        text = self._reply_edit.toPlainText()
        if not text.strip() or self._refused():
            return  # nothing to send, or nobody to send it to (the draft stays)
        self._sink.submit(SendReply(self._conversation, text))
        self._reply_edit.clear()
        self.save_draft()
        self._stick_to_bottom = True
        self._scroll_to_bottom()

    def retry(self, record: MessageRecord) -> None:
        """Send a failed reply again as a new command with the same text (the store links them)."""
        if record.command_id is None or not BubbleDelegate.can_retry(record, bool(record.retried_as)):
            return
        self._sink.submit(SendReply(self._conversation, record.text, retry_of=record.command_id))
        self._stick_to_bottom = True
        self._refresh_failure()

    def resend(self, record: MessageRecord) -> None:
        """Send an unconfirmed reply again: the same command id, so the same bubble."""
        if record.command_id is None or not BubbleDelegate.can_resend(record):
            return
        self._sink.submit(ResendCommand(command_id=record.command_id))
        self._stick_to_bottom = True
        self._refresh_failure()

    def discard(self, record: MessageRecord) -> None:
        """Give up on an unconfirmed reply: it is never sent; the bubble says so."""
        if record.command_id is None or not BubbleDelegate.can_resend(record):
            return
        self._sink.submit(DiscardCommand(command_id=record.command_id))
        self._refresh_failure()

    def save_draft(self) -> None:
        """Write the reply box to the draft store now (a blank box deletes the draft)."""
        self._draft_timer.stop()
        self._drafts.set_draft(self._conversation, self._reply_edit.toPlainText())

    def set_draft_store(self, drafts: DraftStore) -> None:
        """Keep drafts in another store from now on (the account's store was re-opened).

        What the reply box holds goes to the new store; an empty box takes the new store's draft.
        """
        self._draft_timer.stop()
        self._drafts = drafts
        text = self._reply_edit.toPlainText()
        if text.strip():
            drafts.set_draft(self._conversation, text)
        else:
            saved = drafts.draft(self._conversation)
            if saved:
                self._reply_edit.setPlainText(saved)
                self._reply_edit.moveCursor(self._reply_edit.textCursor().MoveOperation.End)
                self._draft_timer.stop()  # setPlainText started it; nothing new to write

    def take_over(self) -> bool:
        """Take over this customer (button, Alt+T, Ctrl+Shift+T) when nobody has them."""
        if not can_take_over(self._conv()):
            return False
        self._conflict_banner.hide()
        self._sink.submit(TakeOver(self._conversation))
        self._refresh_buttons(self._conv())
        return True

    def release(self) -> bool:
        """Release this customer (button, Alt+R, Ctrl+Shift+R) when they are mine."""
        if not can_release(self._conv()):
            return False
        self._sink.submit(Release(self._conversation))
        self._refresh_buttons(self._conv())
        return True

    def resolve(self) -> bool:
        """Resolve this conversation (button, Alt+V, Ctrl+Shift+D) when the customer is mine."""
        if not can_resolve(self._conv()):
            return False
        self._sink.submit(Resolve(self._conversation))
        self._refresh_buttons(self._conv())
        return True

    def hand_back(self) -> bool:
        """Hand this customer back to the AI (button, Alt+A, Ctrl+Shift+B) when mine."""
        if not can_hand_back(self._conv()):
            return False
        self._sink.submit(HandBack(self._conversation))
        self._refresh_buttons(self._conv())
        return True

    def take_anyway(self) -> bool:
        """Take this customer even though another agent has them (the conflict banner)."""
        self._conflict_banner.hide()
        self._sink.submit(TakeOver(self._conversation, force=True))
        self._refresh_buttons(self._conv())
        return True

    def load_older(self) -> None:
        """Ask for the next older history page (once per page until it arrives; none past the first)."""
        conv = self._conv()
        if conv is not None and conv.history_complete:
            return  # the server said there is nothing older
        length = len(self._model.records)
        if self._older_requested_at is not None and self._older_requested_at == length:
            return  # the previous page has not added anything yet
        self._older_requested_at = length
        self._history_page += 1
        self._sink.submit(LoadHistory(self._conversation, page=self._history_page))

    # ------------------------------------------------------------------ Qt overrides

    def changeEvent(self, event: QEvent) -> None:  # noqa: D102, N802
        super().changeEvent(event)
        if event.type() == QEvent.Type.ActivationChange:
            self._set_focused(self.isActiveWindow())
        elif event.type() == QEvent.Type.LanguageChange:
            self.retranslate()

    def retranslate(self) -> None:
        """Rebuild the texts made with values (title, who has the customer) in the new language.

        Fixed texts are re-worded by ``ui.language.retranslate_widgets``.
        """
        self._refresh()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: D102, N802
        self.save_draft()
        self._set_focused(False)
        self._cancel_history_retry()
        super().closeEvent(event)
        self.closed.emit(self._conversation)

    # ------------------------------------------------------------------ slots

    def _on_bridge_conversations_changed(self, keys: frozenset[str]) -> None:
        if self._conversation in keys:
            self._refresh()
            self._sync_history_retry()

    def _on_bridge_connection_changed(self, info: ConnectionInfo) -> None:
        self._refresh_connection(info)
        came_online = is_online(info) and not self._online
        self._online = is_online(info)
        if self._online:
            self._older_requested_at = None  # a lost history request may be asked again
        if came_online:
            self._history_retries = 0
        if came_online and self._conv() is None:
            # Not loaded: the first page may have been lost with the connection (offline, timed
            # out, unconfirmed), the server may have failed, or a new session may know what the
            # old one refused. Asking again is harmless (a read) if it is still on its way.
            self._ask_first_page()
        else:
            self._sync_history_retry()  # offline: no retry until the reconnect asks
        self._message_view.viewport().update()  # queued marks depend on the connection

    def _on_history_retry_due(self) -> None:
        self._history_retry = None
        if self._retry_wanted():
            self._history_retries += 1
            self._ask_first_page()

    def _on_bridge_outbound_changed(self, outbound: Mapping[str, OutboundCommand]) -> None:
        for cmd in new_conflicts(outbound, self._reported, self._conversation):
            self._conflict_banner.show_conflict(self._conversation, self._conv(), cmd.error)
        self._refresh_buttons(self._conv())

    def _on_take_over_button_clicked(self) -> None:
        self.take_over()

    def _on_release_button_clicked(self) -> None:
        self.release()

    def _on_resolve_button_clicked(self) -> None:
        self.resolve()

    def _on_hand_back_button_clicked(self) -> None:
        self.hand_back()

    def _on_conflict_banner_take_anyway_requested(self, key: str) -> None:
        self.take_anyway()

    def _on_older_button_clicked(self) -> None:
        self.load_older()

    def _on_reply_edit_submitted(self) -> None:
        self.send_reply()

    def _on_send_button_clicked(self) -> None:
        self.send_reply()

    def _on_reply_edit_text_changed(self) -> None:
        if not self._draft_timer.isActive():
            self._draft_timer.start()  # at most one write per DRAFT_SAVE_DELAY_MS while typing

    def _on_draft_timer_timeout(self) -> None:
        self.save_draft()

    def _on_resend_button_clicked(self) -> None:
        record = self._newest_failed()
        if record is not None:
            self.resend(record)

    def _on_discard_button_clicked(self) -> None:
        record = self._newest_failed()
        if record is not None:
            self.discard(record)

    def _on_delegate_resend_requested(self, record: MessageRecord) -> None:
        self.resend(record)

    def _on_delegate_discard_requested(self, record: MessageRecord) -> None:
        self.discard(record)

    def _on_retry_button_clicked(self) -> None:
        record = self._newest_failed()
        if record is not None:
            self.retry(record)

    def _on_delegate_retry_requested(self, record: MessageRecord) -> None:
        self.retry(record)

    def _on_delegate_link_activated(self, url: QUrl) -> None:
        if url.scheme().lower() in LINK_SCHEMES:
            self._url_opener(url)

    def _on_scrollbar_value_changed(self, value: int) -> None:
        scrollbar = self._message_view.verticalScrollBar()
        self._stick_to_bottom = value >= scrollbar.maximum() - 4
        if value == scrollbar.minimum() and scrollbar.maximum() > 0 and self.isVisible():
            self.load_older()

    def _on_scrollbar_range_changed(self, minimum: int, maximum: int) -> None:
        if self._stick_to_bottom:
            self._scroll_to_bottom()

    def _on_model_rows_inserted(self, parent: QModelIndex, first: int, last: int) -> None:
        if self._stick_to_bottom:
            QTimer.singleShot(0, self._scroll_to_bottom)

    def _on_copy_shortcut_activated(self) -> None:
        rows = self._message_view.selectionModel().selectedRows()
        if rows:
            QGuiApplication.clipboard().setText(self._model.record_at(rows[0].row()).text)

    # ------------------------------------------------------------------ internals

    def _conv(self) -> Conversation | None:
        return self._bridge.state.conversation(self._conversation)

    def _quick_reply_variables(self) -> dict[str, str]:
        conv = self._conv()
        return {
            "customer_name": one_line(conv.customer_name, 80) if conv is not None else "",
            "agent_name": self._agent_name(),
            "channel": one_line(conv.channel, 80) if conv is not None else "",
            "conversation": self._conversation,
        }

    def _bubble_context(self) -> tuple[str, str, bool]:
        state = self._bridge.state
        conv = state.conversation(self._conversation)
        return (
            (conv.customer_name if conv is not None else ""),
            state.connection.user_id,
            is_online(state.connection),
        )

    def _set_focused(self, focused: bool) -> None:
        if focused == self._focused:
            return
        self._focused = focused
        if focused:
            self._dispatch(FocusChanged(self._conversation))
        elif self._bridge.state.focused == self._conversation:
            self._dispatch(FocusChanged(None))

    def _refresh(self) -> None:
        conv = self._conv()
        self._model.set_history(conv.messages if conv is not None else _EMPTY_HISTORY)
        name = one_line(conv.customer_name, 80) if conv is not None else ""
        channel = one_line(conv.channel, 40) if conv is not None else ""
        title = isolate_bidi(name) or _("Unknown customer")
        if conv is not None and conv.unread > 0:  # unread customer messages, as mail apps do
            title = f"({conv.unread}) {title}"
        self.setWindowTitle(f"{title} — {isolate_bidi(channel)}" if channel else title)
        self._handler_label.setText(self._handler_sentence(conv))
        self._refresh_buttons(conv)
        self._refresh_failure()
        self._refresh_connection(self._bridge.state.connection)
        if self._conflict_banner.conversation:
            self._conflict_banner.refresh(conv)

    def _refusal(self) -> Refusal | None:
        """The server's answer if it refused (or failed) to load this unknown conversation."""
        return self._bridge.state.refused.get(self._conversation)

    def _refused(self) -> bool:
        """The server refused to load this unknown conversation (not just failed right now)."""
        refusal = self._refusal()
        return refusal is not None and not refusal.temporary

    def _retry_wanted(self) -> bool:
        refusal = self._refusal()
        return self._online and refusal is not None and refusal.temporary

    def _ask_first_page(self) -> None:
        """Ask for the newest history page; while the server fails to load it, again later."""
        self._sink.submit(LoadHistory(self._conversation, page=0))
        self._cancel_history_retry()  # the delay counts from this ask
        self._sync_history_retry()

    def _sync_history_retry(self) -> None:
        """Arm the retry while connected and the server fails to load this page; else disarm it."""
        if not self._retry_wanted():
            self._cancel_history_retry()
        elif self._history_retry is None:
            # One ask per delay: an answer that fails again in the same words changes no state
            # (no signal), so the retry stays armed until the conversation loads or is refused.
            delay = min(HISTORY_RETRY_DELAY * 2**self._history_retries, HISTORY_RETRY_MAX)
            self._history_retry = self._scheduler.call_later(delay, self._on_history_retry_due)

    def _cancel_history_retry(self) -> None:
        retry, self._history_retry = self._history_retry, None
        if retry is not None:
            retry.cancel()

    def _handler_sentence(self, conv: Conversation | None) -> str:
        if conv is None:
            refusal = self._refusal()
            if refusal is not None:
                reason = isolate_bidi(one_line(refusal.text, 160)) or _("unknown error")
                if refusal.temporary:  # asked again soon, and on reconnect
                    return _(
                        "The server could not load this conversation right now: {reason}."
                        " Trying again shortly."
                    ).format(reason=reason)
                # Until the conversation appears (a stale link); asked again on reconnect.
                return _("This conversation could not be opened: {reason}").format(reason=reason)
            return _("Loading…")
        if conv.pending_takeover is not None:
            return _("Taking over…")
        if conv.assigned_to_me:
            return _("You are handling this customer.")
        if conv.assigned:
            return _("{agent} is handling this customer.").format(agent=agent_name(conv))
        if conv.handled_by == "ai":
            return _("The AI is answering this customer.")
        if conv.waiting:
            since = format_clock(conv.waiting_since) if conv.waiting_since else ""
            if since:
                return _("Waiting for a human since {time} — nobody has them yet.").format(time=since)
            return _("Waiting for a human — nobody has them yet.")
        return _("Nobody is handling this customer.")

    def _refresh_buttons(self, conv: Conversation | None) -> None:
        self._take_over_button.setEnabled(can_take_over(conv))
        self._release_button.setEnabled(can_release(conv))
        self._take_over_button.setVisible(conv is None or not conv.assigned_to_me)
        mine = conv is not None and conv.assigned_to_me
        self._release_button.setVisible(mine)
        self._resolve_button.setEnabled(can_resolve(conv))
        self._resolve_button.setVisible(mine)
        self._hand_back_button.setEnabled(can_hand_back(conv))
        self._hand_back_button.setVisible(mine)
        unloaded = conv is None and self._refusal() is not None  # no first page to go back from
        self._older_button.setVisible(not unloaded and (conv is None or not conv.history_complete))
        self._send_button.setEnabled(not self._refused())

    def _newest_failed(self) -> MessageRecord | None:
        conv = self._conv()  # the store's truth: a retry or discard shows at once, not at the next flush
        for record in reversed(conv.messages if conv is not None else self._model.records):
            if BubbleDelegate.can_resend(record) or BubbleDelegate.can_retry(record, bool(record.retried_as)):
                return record
        return None

    def _refresh_failure(self) -> None:
        record = self._newest_failed()
        if record is None:
            self._failure_frame.hide()
            return
        unconfirmed = record.reply_state is CommandState.UNCONFIRMED
        if unconfirmed:
            text = _("Not confirmed — the customer may or may not have received it")
            self._failure_label.setAccessibleName(_("Unconfirmed reply"))
        else:
            reason = one_line(record.error, 160) or _("unknown error")
            text = _("A reply could not be sent: {reason}").format(reason=reason)
            self._failure_label.setAccessibleName(_("Failed reply"))
        self._failure_label.setText(text)
        self._retry_button.setVisible(not unconfirmed)
        self._resend_button.setVisible(unconfirmed)
        self._discard_button.setVisible(unconfirmed)
        self._failure_frame.show()

    def _refresh_connection(self, info: ConnectionInfo) -> None:
        if is_online(info):
            self._offline_label.hide()
            return
        if info.state is ConnectionState.AUTH_REQUIRED:
            self._offline_label.setText(_("Signed out: replies wait in the outbox until you sign in."))
        else:
            self._offline_label.setText(_("Offline: replies wait in the outbox and are sent on reconnect."))
        self._offline_label.show()

    def _scroll_to_bottom(self) -> None:
        self._message_view.scrollToBottom()

    # -- test and accessibility seams (read-only views of the widgets)

    @property
    def take_over_button(self) -> QPushButton:
        """The handler banner's "Take over" button."""
        return self._take_over_button

    @property
    def release_button(self) -> QPushButton:
        """The handler banner's "Release" button."""
        return self._release_button

    @property
    def hand_back_button(self) -> QPushButton:
        """The handler banner's "Hand back to AI" button."""
        return self._hand_back_button

    @property
    def resolve_button(self) -> QPushButton:
        """The handler banner's "Resolve" button."""
        return self._resolve_button

    @property
    def older_button(self) -> QPushButton:
        """The "Load older messages" button."""
        return self._older_button

    @property
    def retry_button(self) -> QPushButton:
        """The failure bar's "Retry" button."""
        return self._retry_button

    @property
    def resend_button(self) -> QPushButton:
        """The failure bar's "Send again" button."""
        return self._resend_button

    @property
    def discard_button(self) -> QPushButton:
        """The failure bar's "Discard" button."""
        return self._discard_button

    @property
    def send_button(self) -> QPushButton:
        """The "Send" button."""
        return self._send_button

    @property
    def offline_label(self) -> QLabel:
        """The offline / signed-out line above the reply box."""
        return self._offline_label

    @property
    def handler_label(self) -> QLabel:
        """The handler banner's label (who handles the chat)."""
        return self._handler_label
