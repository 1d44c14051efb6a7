"""WindowManager: owns the inbox, chat, sign-in and settings windows and the window session."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from PySide6.QtCore import QByteArray, QObject, Signal
from PySide6.QtWidgets import QAbstractButton, QMessageBox, QWidget

from tray_agent.core.events import CommandKind, Event
from tray_agent.core.i18n import _, ngettext
from tray_agent.core.ports import CommandSink, DraftStore
from tray_agent.core.quick_replies import QuickReply, merge_replies
from tray_agent.core.settings_layers import LoadedSettings, atomic_write_text
from tray_agent.core.state import CommandState, State, Store
from tray_agent.ui.accessibility import EscalationAnnouncer
from tray_agent.ui.bridge import StoreBridge
from tray_agent.ui.models import utc_now
from tray_agent.ui.shortcuts import KeyboardHelpDialog, ShortcutController
from tray_agent.ui.signin_dialog import SignInDialog, SignInRequest

if TYPE_CHECKING:  # imported when first opened: a tray-only run never loads them (idle RSS)
    from tray_agent.ui.chat_window import ChatWindow
    from tray_agent.ui.customer_service import CustomerServiceWindow
    from tray_agent.ui.settings_dialog import SettingsDialog

logger = logging.getLogger(__name__)

SESSION_VERSION: Final = 1
MAX_RESTORED_CHATS: Final = 20
"""A session never reopens more chat windows than this."""

__all__ = ["SignInRequest", "WindowManager", "replies_at_risk", "sign_out_question"]

_AT_RISK: Final = frozenset({CommandState.QUEUED, CommandState.SENT, CommandState.UNCONFIRMED})


def _memory_drafts() -> DraftStore:
    """Drafts in memory (no account store open); the chat module loads with the first use."""
    from tray_agent.ui.chat_window import MemoryDraftStore

    return MemoryDraftStore()


def replies_at_risk(state: State) -> int:
    """My replies not yet confirmed (queued, in flight or unconfirmed): signing out loses them."""
    return sum(1 for c in state.outbound.values() if c.kind is CommandKind.REPLY and c.state in _AT_RISK)


def sign_out_question(queued: int) -> str:
    """What the sign-out confirmation says, in plain words (with the replies that would be lost)."""
    text = _(
        "Sign out of this account?\n\nThis deletes this computer's copy of your conversations, "
        "drafts and queued replies, and the saved sign-in. You will need to sign in again."
    )
    if queued:
        lost = ngettext(
            "{count} reply has not been confirmed yet and will be lost.",
            "{count} replies have not been confirmed yet and will be lost.",
            queued,
        ).format(count=queued)
        text = text + "\n\n" + lost
    return text


def _geometry(widget: QWidget) -> str:
    return bytes(widget.saveGeometry().toBase64().data()).decode("ascii")


def _restore_geometry(widget: QWidget, text: object) -> None:
    if isinstance(text, str) and text:
        widget.restoreGeometry(QByteArray.fromBase64(text.encode("ascii")))


class WindowManager(QObject):
    """Creates and raises the app's windows; persists which chats were open, and where.

    Args:
        store: the store (snapshots for the sign-out question).
        command_sink: where the windows' commands go (the network client).
        loaded_settings: the loaded settings (dialog values, locks).
        dialect: ``"org"`` or ``"dashboard"``.
        bridge: the store bridge; one is created if None.
        parent: the Qt parent.
        state_file: the window session file (``paths.state / "windows.json"``), or None.
        draft_store: where reply drafts are kept (the account's ``LocalStore``, injected by
            app.py); None keeps them in memory until :meth:`set_draft_store` gives one.
        clock: wall clock for waiting times (tests inject one).
        dispatch: where UI events (FocusChanged, ConversationRead) go: the session's dispatcher,
            which carries out their effects; None dispatches to ``store`` (tests).

    Signals:
        sign_in_requested(object): a :class:`~tray_agent.ui.signin_dialog.SignInRequest`.
        settings_saved(object): the edited :class:`~tray_agent.core.settings.Settings`; the
            session saves them (``session.flows.AccountFlows.settings_saved``) and calls
            :meth:`set_loaded_settings`.
        quit_requested(): the agent chose Quit in a window.
        sign_out_confirmed(): the agent confirmed signing out; the session deletes the local
            data and the saved sign-in (``AccountFlows.sign_out``), then calls :meth:`signed_out`.
    """

    sign_in_requested = Signal(object)
    settings_saved = Signal(object)
    quit_requested = Signal()
    sign_out_confirmed = Signal()

    def __init__(
        self,
        store: Store,
        command_sink: CommandSink,
        loaded_settings: LoadedSettings,
        dialect: str,
        bridge: StoreBridge | None = None,
        parent: QObject | None = None,
        *,
        state_file: Path | None = None,
        draft_store: DraftStore | None = None,
        clock: Callable[[], datetime] = utc_now,
        dispatch: Callable[[Event], object] | None = None,
        demo: bool = False,
    ) -> None:
        super().__init__(parent)
        self._demo = demo  # the built-in demo's account: the sign-in dialog does not show it
        self._store = store
        # UI events (FocusChanged, ConversationRead) go through the session's dispatcher, so
        # their effects are carried out; tests without a session use the store's own.
        self._dispatch: Callable[[Event], object] = dispatch if dispatch is not None else store.dispatch
        self._sink = command_sink
        self._loaded = loaded_settings
        self._dialect = dialect
        self._bridge = bridge if bridge is not None else StoreBridge(store, self)
        self._state_file = state_file
        self._drafts: DraftStore = draft_store if draft_store is not None else _memory_drafts()
        self._clock = clock
        self._sign_out_box: QMessageBox | None = None
        self._inbox: CustomerServiceWindow | None = None
        self._chats: dict[str, ChatWindow] = {}
        self._sign_in: SignInDialog | None = None
        self._settings: SettingsDialog | None = None
        self._help: KeyboardHelpDialog | None = None
        self._keyring_problem = ""
        self._shortcuts = ShortcutController(self, lambda: self._bridge.state, self)
        self._shortcuts.help_requested.connect(self._on_shortcuts_help_requested)
        self._announcer = EscalationAnnouncer(self._bridge, self._announce_target, self)

    # ------------------------------------------------------------------ public API

    @property
    def bridge(self) -> StoreBridge:
        """The store bridge the windows listen to."""
        return self._bridge

    @property
    def inbox(self) -> CustomerServiceWindow | None:
        """The inbox window, once created."""
        return self._inbox

    @property
    def chats(self) -> dict[str, ChatWindow]:
        """Open chat windows by conversation (a copy)."""
        return dict(self._chats)

    @property
    def shortcuts(self) -> ShortcutController:
        """The keyboard shortcuts every window gets."""
        return self._shortcuts

    @property
    def announcer(self) -> EscalationAnnouncer:
        """Speaks new escalations to screen readers."""
        return self._announcer

    @property
    def keyboard_help(self) -> KeyboardHelpDialog | None:
        """The keyboard-shortcut list while it is open."""
        return self._help

    def show_keyboard_help(self) -> KeyboardHelpDialog:
        """Show the list of keyboard shortcuts (F1 in any window, Help menu in the inbox)."""
        if self._help is None:
            self._help = KeyboardHelpDialog()
            self._help.finished.connect(self._on_help_finished)
        _raise(self._help)
        return self._help

    def open_next_waiting(self) -> str:
        """Open the chat of the next waiting customer (the tray and toasts may call this too)."""
        return self._shortcuts.open_next_waiting()

    @property
    def sign_in_dialog(self) -> SignInDialog | None:
        """The sign-in dialog while it is open."""
        return self._sign_in

    @property
    def settings_dialog(self) -> SettingsDialog | None:
        """The settings dialog while it is open."""
        return self._settings

    def quick_replies(self) -> list[QuickReply]:
        """The quick replies on offer: IT's (from the policy) first, then the agent's own."""
        ui = self._loaded.settings.ui
        return merge_replies(ui.team_quick_replies, ui.quick_replies)

    def agent_name(self) -> str:
        """My name for quick replies: the account email's name part ("sam.lee@x" -> "Sam Lee")."""
        local = self._loaded.settings.connection.email.partition("@")[0]
        return " ".join(part.capitalize() for part in re.split(r"[._-]+", local) if part)

    @property
    def draft_store(self) -> DraftStore:
        """Where reply drafts are kept now."""
        return self._drafts

    def set_draft_store(self, store: DraftStore | None) -> None:
        """Keep drafts in ``store`` from now on (app.py: the account's store was (re)opened).

        Open chats write what their reply box holds to the new store (an empty box takes the
        store's draft). None keeps drafts in memory (no account store open).
        """
        self._drafts = store if store is not None else _memory_drafts()
        for window in self._chats.values():
            window.set_draft_store(self._drafts)

    def save_drafts(self) -> None:
        """Write every open chat's reply box to the draft store now (before it is closed)."""
        for window in self._chats.values():
            window.save_draft()

    @property
    def sign_out_box(self) -> QMessageBox | None:
        """The sign-out confirmation while it is open."""
        return self._sign_out_box

    def ask_sign_out(self) -> QMessageBox:
        """Ask whether to sign out (non-modal); :attr:`sign_out_confirmed` follows a yes."""
        if self._sign_out_box is None:
            box = QMessageBox(
                QMessageBox.Icon.Question, _("Sign out"), "", QMessageBox.StandardButton.NoButton
            )
            box.setObjectName("signOutBox")
            box.setAccessibleName(_("Sign out"))
            box.setAccessibleDescription(_("Confirm that this computer should forget the account."))
            sign_out = box.addButton(_("Sign out and delete"), QMessageBox.ButtonRole.DestructiveRole)
            sign_out.setObjectName("signOut")
            sign_out.setAccessibleName(_("Sign out and delete the local data"))
            cancel = box.addButton(QMessageBox.StandardButton.Cancel)
            box.setDefaultButton(cancel)
            box.setEscapeButton(cancel)
            box.buttonClicked.connect(self._on_sign_out_box_button_clicked)
            box.finished.connect(self._on_sign_out_box_finished)
            self._sign_out_box = box
        self._sign_out_box.setText(sign_out_question(replies_at_risk(self._store.state)))
        _raise(self._sign_out_box)
        return self._sign_out_box

    def signed_out(self) -> None:
        """After a sign-out: close every chat (drafts are gone with the store) and forget the session."""
        self._drafts = _memory_drafts()
        for window in list(self._chats.values()):
            window.set_draft_store(self._drafts)
            window.reply_edit.clear()
            window.close()
        self.clear_session()

    def clear_session(self) -> None:
        """Delete the window session file (which chats were open); failures are logged."""
        if self._state_file is None:
            return
        try:
            self._state_file.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("Could not delete the window session %s: %s", self._state_file, exc)

    def set_loaded_settings(self, loaded: LoadedSettings) -> None:
        """Use new settings (after a save) for the next dialogs."""
        self._loaded = loaded
        if self._inbox is not None:
            self._inbox.model.set_sla_minutes(loaded.settings.alerts.sla_minutes)

    def show_inbox(self) -> CustomerServiceWindow:
        """Show and raise the Customer Service window."""
        inbox = self._ensure_inbox()
        _raise(inbox)
        return inbox

    def open_chat(self, conversation: str) -> ChatWindow:
        """Open the chat window of a conversation, or raise the one already open."""
        window = self._chats.get(conversation)
        if window is None:
            from tray_agent.ui.chat_window import ChatWindow

            window = ChatWindow(
                conversation,
                self._bridge,
                self._dispatch,
                self._sink,
                self._drafts,
                quick_replies=self.quick_replies,
                agent_name=self.agent_name,
            )
            window.closed.connect(self._on_chat_closed)
            self._shortcuts.attach(
                window,
                take_over=window.take_over,
                release=window.release,
                close=window.close,
                resolve=window.resolve,
                hand_back=window.hand_back,
            )
            self._chats[conversation] = window
        _raise(window)
        return window

    def show_settings(self) -> SettingsDialog:
        """Show the settings dialog (non-modal; one at a time)."""
        if self._settings is None:
            from tray_agent.ui.settings_dialog import SettingsDialog

            dialog = SettingsDialog(self._loaded)
            dialog.settings_saved.connect(self.settings_saved)
            dialog.finished.connect(self._on_settings_finished)
            self._settings = dialog
        _raise(self._settings)
        return self._settings

    def settings_save_failed(self, problem: str) -> None:
        """Tell the agent that saving failed (``ui.front.Front`` calls this when saving raised OSError)."""
        dialog = self.show_settings()
        dialog.show_problem(problem)

    def show_sign_in(self, problem: str = "", *, keyring_problem: str | None = None) -> SignInDialog:
        """Show the sign-in dialog, with a plain-words problem from the last attempt if any.

        Args:
            problem: why the last sign-in failed ("" for none).
            keyring_problem: why secrets cannot be remembered (None: keep the last one said).
        """
        if keyring_problem is not None:
            self._keyring_problem = keyring_problem
        if self._sign_in is None:
            dialog = SignInDialog(self._loaded, self._dialect, demo=self._demo)
            dialog.sign_in_requested.connect(self._on_sign_in_dialog_sign_in_requested)
            dialog.finished.connect(self._on_sign_in_finished)
            self._sign_in = dialog
        self._sign_in.set_keyring_problem(self._keyring_problem)
        self._sign_in.show_problem(problem)
        _raise(self._sign_in)
        return self._sign_in

    def close_sign_in(self) -> None:
        """Close the sign-in dialog (``ui.front.Front`` calls this once connected)."""
        if self._sign_in is not None:
            self._sign_in.accept()

    def save_session(self) -> None:
        """Write which windows are open and where (atomically); failures are logged."""
        self.save_drafts()
        if self._state_file is None:
            return
        inbox = self._inbox
        data: dict[str, Any] = {
            "version": SESSION_VERSION,
            "inbox": {
                "open": inbox is not None and inbox.isVisible(),
                "geometry": _geometry(inbox) if inbox is not None else "",
                "tab": inbox.current_index if inbox is not None else 0,
            },
            "chats": [
                {"conversation": key, "geometry": _geometry(window)}
                for key, window in self._chats.items()
                if window.isVisible()
            ],
        }
        try:
            atomic_write_text(self._state_file, json.dumps(data, indent=1))
        except OSError as exc:
            logger.warning("Could not save the window session to %s: %s", self._state_file, exc)

    def restore_session(self) -> None:
        """Reopen the windows of the last session (unknown or broken content is ignored)."""
        data = self._read_session()
        inbox_data = data.get("inbox")
        if isinstance(inbox_data, dict):
            if inbox_data.get("geometry"):
                _restore_geometry(self._ensure_inbox(), inbox_data.get("geometry"))
            tab = inbox_data.get("tab")
            if isinstance(tab, int) and self._inbox is not None:
                self._inbox.set_current_tab(tab)
            if inbox_data.get("open") is True:
                self.show_inbox()
        chats = data.get("chats")
        if isinstance(chats, list):
            for entry in chats[:MAX_RESTORED_CHATS]:
                if (
                    isinstance(entry, dict)
                    and isinstance(entry.get("conversation"), str)
                    and entry["conversation"]
                ):
                    window = self.open_chat(entry["conversation"])
                    _restore_geometry(window, entry.get("geometry"))

    def close_all(self) -> None:
        """Close every window (at quit, after :meth:`save_session`)."""
        for window in list(self._chats.values()):
            window.close()
        for dialog in (self._sign_in, self._settings, self._help, self._sign_out_box):
            if dialog is not None:
                dialog.reject()
        if self._inbox is not None:
            self._inbox.hide()

    # ------------------------------------------------------------------ slots

    def _on_chat_closed(self, conversation: str) -> None:
        window = self._chats.pop(conversation, None)
        if window is not None:
            window.deleteLater()

    def _on_inbox_chat_requested(self, conversation: str) -> None:
        self.open_chat(conversation)

    def _on_inbox_settings_requested(self) -> None:
        self.show_settings()

    def _on_inbox_sign_in_requested(self) -> None:
        self.show_sign_in()

    def _on_inbox_sign_out_requested(self) -> None:
        self.ask_sign_out()

    def _on_sign_out_box_button_clicked(self, button: QAbstractButton) -> None:
        box = self._sign_out_box
        if box is not None and box.buttonRole(button) is QMessageBox.ButtonRole.DestructiveRole:
            self.sign_out_confirmed.emit()

    def _on_sign_out_box_finished(self) -> None:
        if self._sign_out_box is not None:
            self._sign_out_box.deleteLater()
            self._sign_out_box = None

    def _on_sign_in_dialog_sign_in_requested(self, request: SignInRequest) -> None:
        self.sign_in_requested.emit(request)

    def _on_sign_in_finished(self) -> None:
        if self._sign_in is not None:
            self._sign_in.deleteLater()
            self._sign_in = None

    def _on_shortcuts_help_requested(self) -> None:
        self.show_keyboard_help()

    def _on_help_finished(self) -> None:
        if self._help is not None:
            self._help.deleteLater()
            self._help = None

    def _on_settings_finished(self) -> None:
        if self._settings is not None:
            self._settings.deleteLater()
            self._settings = None

    # ------------------------------------------------------------------ internals

    def _ensure_inbox(self) -> CustomerServiceWindow:
        if self._inbox is None:
            from tray_agent.ui.customer_service import CustomerServiceWindow

            inbox = CustomerServiceWindow(self._bridge, self._sink, self._dialect, clock=self._clock)
            inbox.model.set_sla_minutes(self._loaded.settings.alerts.sla_minutes)  # rows past it stand out
            inbox.chat_requested.connect(self._on_inbox_chat_requested)
            inbox.settings_requested.connect(self._on_inbox_settings_requested)
            inbox.sign_in_requested.connect(self._on_inbox_sign_in_requested)
            inbox.sign_out_requested.connect(self._on_inbox_sign_out_requested)
            inbox.quit_requested.connect(self.quit_requested)
            actions = self._shortcuts.attach(
                inbox,
                take_over=inbox.take_over_selected,
                release=inbox.release_selected,
                resolve=inbox.resolve_selected,
                hand_back=inbox.hand_back_selected,
            )
            inbox.add_shortcut_menus({str(name): action for name, action in actions.items()})
            self._inbox = inbox
        return self._inbox

    def _announce_target(self) -> QWidget | None:
        windows: list[QWidget] = [w for w in (self._inbox, *self._chats.values()) if w is not None]
        for window in windows:
            if window.isActiveWindow():
                return window
        return next((w for w in windows if w.isVisible()), None)

    def _read_session(self) -> dict[str, Any]:
        if self._state_file is None:
            return {}
        try:
            data = json.loads(self._state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("Ignoring unreadable window session %s: %s", self._state_file, exc)
            return {}
        return data if isinstance(data, dict) else {}


def _raise(widget: QWidget) -> None:
    if widget.isMinimized():
        widget.showNormal()
    widget.show()
    widget.raise_()
    widget.activateWindow()
