"""TrayController: the tray icon (state + badge), its tooltip and menu, and the no-tray status window."""

from __future__ import annotations

import contextlib
import enum
import functools
import importlib.resources
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject, QPoint, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QIcon, QImage
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from tray_agent.core.commands import TakeOver
from tray_agent.core.events import ConnectionState
from tray_agent.core.i18n import _, format_clock, format_duration, ngettext
from tray_agent.core.policy import TrayLevel
from tray_agent.core.ports import Clock, CommandSink
from tray_agent.core.state import ConnectionInfo, Conversation
from tray_agent.core.text import isolate_bidi
from tray_agent.ui.bridge import StoreBridge
from tray_agent.ui.effects import EffectRunner
from tray_agent.ui.icon_render import render_svg_icon, render_svg_image
from tray_agent.ui.language import language_notifier
from tray_agent.ui.theme import IconStyle, contrast_svg

logger = logging.getLogger(__name__)

ICON_SIZES = (16, 22, 24, 32, 48, 64)
"""Pixmap sizes rendered from each SVG."""
MENU_CUSTOMERS = 10
"""Waiting customers listed in the menu; the rest are behind "N more…"."""
_ICON_CACHE_SIZE = 32


def diagnostics_file_name(now: datetime) -> str:
    """The suggested name of a diagnostics export: ``tray-agent-diagnostics-<local date>.zip``."""
    return f"tray-agent-diagnostics-{now.astimezone().date().isoformat()}.zip"


def menu_text(text: str) -> str:
    """Customer text for a menu item: plain, one line, ``&`` kept literal (not a mnemonic), bidi-isolated."""
    return isolate_bidi(" ".join(text.split()).replace("&", "&&"))


class IconState(enum.StrEnum):
    """The tray icon's states; each is ``resources/icons/tray-<value>.svg``."""

    CONNECTED = "connected"
    CONNECTING = "connecting"
    OFFLINE = "offline"
    AUTH = "auth"
    DND = "dnd"
    LIMITED = "limited"
    SLA = "sla"


_SIGNED_OUT_STATES = frozenset({ConnectionState.AUTH_REQUIRED, ConnectionState.OFFLINE})
_CONNECTING_STATES = frozenset(
    {ConnectionState.CONNECTING, ConnectionState.RECONNECTING, ConnectionState.RESYNCING}
)


def icon_state(connection: ConnectionState, level: TrayLevel, quiet: bool) -> IconState:
    """Which icon to show: trouble first, then do-not-disturb, limited, an SLA breach.

    Do-not-disturb and limited keep their own icon during an SLA breach: the breach is then
    the :func:`sla_overlay` mark on it.
    """
    if connection is ConnectionState.AUTH_REQUIRED:
        return IconState.AUTH
    if connection in (ConnectionState.OFFLINE, ConnectionState.SIGNED_IN_ELSEWHERE):
        return IconState.OFFLINE
    if connection in _CONNECTING_STATES:
        return IconState.CONNECTING
    if quiet:
        return IconState.DND
    if connection is ConnectionState.LIMITED:
        return IconState.LIMITED
    if level is TrayLevel.SLA_BREACHED:
        return IconState.SLA
    return IconState.CONNECTED


def sla_overlay(state: IconState, level: TrayLevel) -> bool:
    """Whether the SLA warning mark goes over ``state``'s icon (DND or limited during a breach)."""
    return level is TrayLevel.SLA_BREACHED and state in (IconState.DND, IconState.LIMITED)


def icon_svg(state: IconState | str, style: IconStyle = IconStyle.COLOR) -> bytes:
    """The bundled SVG of an icon state (``"agent"`` gives the app icon), in a theme variant.

    The colour SVGs are legible on light and dark panels alike (light halo under a dark
    outline); high contrast gets a two-colour variant derived from them (ui/theme.py).
    """
    name = "tray-agent.svg" if state == "agent" else f"tray-{state}.svg"
    svg = importlib.resources.files("tray_agent.resources").joinpath("icons", name).read_bytes()
    return contrast_svg(svg, style)


def overlay_svg(style: IconStyle = IconStyle.COLOR) -> bytes:
    """The SLA warning mark painted over the DND and limited icons (bottom-left corner)."""
    svg = importlib.resources.files("tray_agent.resources").joinpath("icons", "tray-overlay-sla.svg")
    return contrast_svg(svg.read_bytes(), style)


def badge_text(count: int) -> str:
    """The badge's text: "" for none, the number up to 9, then "9+" (legible at 22 px)."""
    if count <= 0:
        return ""
    return str(count) if count <= 9 else "9+"


def render_icon_image(svg: bytes, size: int, badge: str = "", overlay: bytes = b"") -> QImage:
    """Render an icon SVG at ``size`` px with an optional badge in the top-right corner.

    The badge keeps clear of the bottom-right state emblem the SVGs carry; ``overlay`` (an SVG
    of the same view box, e.g. :func:`overlay_svg`) is painted over the icon, under the badge.
    """
    return render_svg_image(svg, size, badge, overlay)


def render_icon(
    state: IconState | str, badge: str = "", style: IconStyle = IconStyle.COLOR, *, sla: bool = False
) -> QIcon:
    """A QIcon of the state at every size in :data:`ICON_SIZES`, with the badge painted in.

    ``sla``: add the SLA warning mark (:func:`sla_overlay`).
    """
    overlay = overlay_svg(style) if sla else b""
    return render_svg_icon(icon_svg(state, style), ICON_SIZES, badge, overlay)


class WindowsPort(Protocol):
    """What the tray needs of the window manager (ui/windows.py)."""

    def show_inbox(self) -> None:
        """Show the inbox window."""
        ...

    def open_chat(self, conversation: str) -> None:
        """Open (or raise) the chat window of a conversation."""
        ...

    def show_settings(self) -> None:
        """Show the settings dialog."""
        ...

    def show_sign_in(self, problem: str = "") -> None:
        """Show the sign-in dialog, with the reason it is needed."""
        ...


def waited_text(since: datetime | None, now: datetime) -> str:
    """How long someone has waited, for the menu ("<1 min", "5 min", "2 h 5 min")."""
    if since is None:
        return ""
    return format_duration((now - since).total_seconds())


def who_has_text(conv: Conversation) -> str:
    """Who has a waiting customer, for the menu."""
    if conv.assigned_to_me:
        return _("you have them")
    if conv.assigned:
        name = conv.agent.name or conv.agent.email if conv.agent else ""
        return _("{agent} has them").format(agent=isolate_bidi(name)) if name else _("an agent has them")
    return _("nobody has them")


def _clock_text(moment: datetime) -> str:
    return format_clock(moment)


def status_text(info: ConnectionInfo) -> str:
    """One line for the connection state (menu header, tooltip, status window)."""
    state = info.state
    if state is ConnectionState.CONNECTED:
        text = _("Connected")
    elif state is ConnectionState.CONNECTING:
        text = _("Connecting…")
    elif state is ConnectionState.RESYNCING:
        text = _("Syncing…")
    elif state is ConnectionState.RECONNECTING:
        if info.retry_in is not None:
            text = _("Reconnecting in {seconds} s").format(seconds=max(1, round(info.retry_in)))
        else:
            text = _("Reconnecting…")
    elif state is ConnectionState.LIMITED:
        text = _("Connected (limited: live updates blocked)")
    elif state is ConnectionState.AUTH_REQUIRED:
        text = _("Sign-in needed")
    elif state is ConnectionState.SIGNED_IN_ELSEWHERE:
        text = _("Signed in elsewhere (Reconnect now takes the live updates back)")
    else:
        text = _("Offline")
    if info.detail and state is not ConnectionState.CONNECTED:
        text = _("{status} ({detail})").format(status=text, detail=" ".join(info.detail.split())[:80])
    return text


def synced_text(info: ConnectionInfo) -> str:
    """The "Last synced HH:MM" line, or "" before the first sync."""
    if info.last_synced is None:
        return ""
    return _("Last synced {time}").format(time=_clock_text(info.last_synced))


def tomorrow_morning(now: datetime) -> datetime:
    """08:00 local time on the next day (the end of "until tomorrow")."""
    local = now.astimezone()
    target = (local + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    return target


class _DndChoice(enum.StrEnum):
    OFF = "off"
    MIN30 = "30min"
    HOUR = "1h"
    TOMORROW = "tomorrow"


class StatusWindow(QWidget):
    """A small always-available window for desktops without a tray: state, badge, menu.

    Signals:
        inbox_requested(): the "Open inbox" button was pressed.
    """

    inbox_requested = Signal()

    def __init__(self, menu: QMenu, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle(_("tray_agent"))
        self._menu = menu
        self._icon_label = QLabel(self)
        self._state_label = QLabel(self)
        self._state_label.setTextFormat(Qt.TextFormat.PlainText)
        self._badge_label = QLabel(self)
        self._badge_label.setTextFormat(Qt.TextFormat.PlainText)
        self._menu_button = QPushButton(_("&Menu"), self)
        self._menu_button.setAccessibleName(_("Menu"))
        self._menu_button.setAccessibleDescription(_("Status, waiting customers, do not disturb and more."))
        self._menu_button.clicked.connect(self._on_menu_button_clicked)
        self._inbox_button = QPushButton(_("Open &inbox"), self)
        self._inbox_button.setAccessibleName(_("Open inbox"))
        self._inbox_button.setAccessibleDescription(_("Shows the Customer Service window."))
        self._inbox_button.clicked.connect(self.inbox_requested)
        texts = QVBoxLayout()
        texts.addWidget(self._state_label)
        texts.addWidget(self._badge_label)
        buttons = QVBoxLayout()
        buttons.addWidget(self._inbox_button)
        buttons.addWidget(self._menu_button)
        layout = QHBoxLayout(self)
        layout.addWidget(self._icon_label)
        layout.addLayout(texts, 1)
        layout.addLayout(buttons)

    @property
    def state_text(self) -> str:
        """The state line shown."""
        return self._state_label.text()

    @property
    def badge_text(self) -> str:
        """The waiting-count line shown."""
        return self._badge_label.text()

    def update_view(self, icon: QIcon, state: str, badge: str, inbox_available: bool) -> None:
        """Show new values (plain text only)."""
        self._icon_label.setPixmap(icon.pixmap(48, 48))
        self._state_label.setText(state)
        self._badge_label.setText(badge)
        self._inbox_button.setVisible(inbox_available)

    def popup_menu(self) -> None:
        """Open the tray menu under the Menu button."""
        self._menu.popup(self._menu_button.mapToGlobal(QPoint(0, self._menu_button.height())))

    def _on_menu_button_clicked(self) -> None:
        self.popup_menu()


class TrayController(QObject):
    """The tray icon with live state and badge, its tooltip and menu; a status window without a tray.

    The menu is rebuilt only when it is about to show (or while it is open), never for every
    change while hidden. The icon is re-rendered only when its state or badge changes (and
    cached per pair).

    Args:
        bridge: the store bridge (state snapshots and change signals).
        runner: the effect runner (tray level, do-not-disturb, mute).
        commands: where Take over goes (the network client).
        clock: wall-clock time (waiting times, DND ends).
        windows: the window manager, or None while there is none (no inbox/chat items).
        mute_locked: the mute switch is fixed by the administrator's policy.
        dnd_allowed: manual do-not-disturb may be used (``alerts.allow_manual_dnd``; the policy
            can forbid it: the menu then has no do-not-disturb item). Its end survives a restart
            as ``alerts.dnd_until`` (core/policy.py restores it, app.py saves it).
        tray_available: override the tray detection (tests); None asks Qt.
        tray_icon: an icon already shown (app.py shows one before this controller exists): it
            is adopted, so the desktop keeps the item it registered; None creates one.
        parent: the Qt parent.

    Signals:
        quit_requested(): Quit was chosen.
        reconnect_requested(): "Reconnect now" was chosen (``session.flows.AccountFlows`` opens
            the sign-in when no client runs: nothing to reconnect).
        mute_toggled(bool): the agent switched sounds off (True) or on (False).
        icon_changed(str): the icon state or badge changed ("<state>:<badge>", the state with
            "+sla" when the SLA warning mark is on it).
        sign_out_requested(): "Sign out…" was chosen (``ui.front.Front`` asks the windows to confirm).
        diagnostics_export_requested(str): "Export diagnostics…" was chosen and a file picked
            (its path); ``session.flows.AccountFlows`` writes the zip.
    """

    quit_requested = Signal()
    reconnect_requested = Signal()
    mute_toggled = Signal(bool)
    icon_changed = Signal(str)
    sign_out_requested = Signal()
    diagnostics_export_requested = Signal(str)

    def __init__(
        self,
        bridge: StoreBridge,
        runner: EffectRunner,
        commands: CommandSink,
        clock: Clock,
        *,
        windows: WindowsPort | None = None,
        mute_locked: bool = False,
        dnd_allowed: bool = True,
        tray_available: bool | None = None,
        tray_icon: QSystemTrayIcon | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._runner = runner
        self._commands = commands
        self._clock = clock
        self._windows = windows
        self._mute_locked = mute_locked
        self._available = (
            QSystemTrayIcon.isSystemTrayAvailable() if tray_available is None else tray_available
        )
        self._problems: dict[str, str] = {}
        self._dnd_choice = _DndChoice.OFF
        self._dnd_allowed = dnd_allowed
        self._icons: OrderedDict[tuple[IconState, str, bool], QIcon] = OrderedDict()
        self._icon_key: tuple[IconState, str, bool] | None = None
        self._status_window: StatusWindow | None = None
        self._export_dialog: QFileDialog | None = None
        self._no_tray_reported = False
        self._icon_style = IconStyle.COLOR

        self._menu = QMenu()
        self._menu.aboutToShow.connect(self._on_menu_about_to_show)
        self._tray = QSystemTrayIcon(self) if tray_icon is None else tray_icon
        self._tray.setParent(self)  # adopted: it goes with this controller
        self._tray.setContextMenu(self._menu)
        self._tray.activated.connect(self._on_tray_activated)

        bridge.connection_changed.connect(self._on_bridge_connection_changed)
        bridge.waiting_changed.connect(self._on_bridge_waiting_changed)
        bridge.badge_changed.connect(self._on_bridge_badge_changed)
        runner.tray_level_changed.connect(self._on_runner_tray_level_changed)
        runner.quiet_changed.connect(self._on_runner_quiet_changed)
        runner.dnd_changed.connect(self._on_runner_dnd_changed)
        self._language_notifier = language_notifier()
        if self._language_notifier is not None:
            self._language_notifier.language_changed.connect(self._on_language_changed)
        self._update_icon()
        self.refresh_menu()

    # ------------------------------------------------------------------ public API

    @property
    def tray_icon(self) -> QSystemTrayIcon:
        """The QSystemTrayIcon (also used by the Qt toast fallback)."""
        return self._tray

    @property
    def tray_available(self) -> bool:
        """Whether this desktop has a system tray."""
        return self._available

    @property
    def menu(self) -> QMenu:
        """The tray menu (also the status window's)."""
        return self._menu

    @property
    def status_window(self) -> StatusWindow | None:
        """The status window, once created (no tray, or a test hook)."""
        return self._status_window

    @property
    def icon_state(self) -> IconState:
        """The icon state shown."""
        return self._current_key()[0]

    @property
    def badge(self) -> str:
        """The badge text shown ("" for none)."""
        return self._current_key()[1]

    @property
    def sla_warning(self) -> bool:
        """The SLA warning mark is on the icon (a breach during do-not-disturb or limited)."""
        return self._current_key()[2]

    @property
    def tooltip(self) -> str:
        """The tooltip text."""
        return self._tray.toolTip()

    @property
    def icon_style(self) -> IconStyle:
        """The icon variant in use (colour, or high contrast for a light or dark panel)."""
        return self._icon_style

    @property
    def export_dialog(self) -> QFileDialog | None:
        """The "Export diagnostics" file dialog while it is open."""
        return self._export_dialog

    def ask_export_diagnostics(self, directory: Path | None = None) -> QFileDialog:
        """Ask where to save the diagnostics zip (non-modal); a choice emits the path.

        Args:
            directory: where to suggest saving (default: the home directory).
        """
        if self._export_dialog is None:
            folder = directory if directory is not None else Path.home()
            suggested = folder / diagnostics_file_name(self._clock.now())
            dialog = QFileDialog(None, _("Export diagnostics"), str(suggested), _("Zip archives (*.zip)"))
            dialog.setObjectName("exportDiagnostics")
            dialog.setAccessibleName(_("Export diagnostics"))
            dialog.setAccessibleDescription(
                _("Choose where to save a zip of the logs and settings, without passwords or tokens.")
            )
            dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
            dialog.setFileMode(QFileDialog.FileMode.AnyFile)
            dialog.setDefaultSuffix("zip")
            dialog.selectFile(str(suggested))
            dialog.fileSelected.connect(self._on_export_dialog_file_selected)
            dialog.finished.connect(self._on_export_dialog_finished)
            self._export_dialog = dialog
        self._export_dialog.open()
        self._export_dialog.raise_()
        self._export_dialog.activateWindow()
        return self._export_dialog

    def set_icon_style(self, style: IconStyle | str) -> None:
        """Use another icon variant (ui.theme.ThemeController.icon_style_changed)."""
        style = IconStyle(style)
        if style is self._icon_style:
            return
        self._icon_style = style
        self._icons.clear()
        self._icon_key = None
        self._changed()

    @property
    def dnd_allowed(self) -> bool:
        """Manual do-not-disturb may be used (not forbidden by the policy)."""
        return self._dnd_allowed

    def set_dnd_allowed(self, allowed: bool) -> None:
        """Allow or forbid manual do-not-disturb (``alerts.allow_manual_dnd``); forbidding ends it."""
        self._dnd_allowed = allowed
        if not allowed and self._runner.dnd_until is not None:
            self._set_dnd(_DndChoice.OFF, None)
        self.refresh_menu()

    def set_windows(self, windows: WindowsPort | None) -> None:
        """Use this window manager from now on (inbox, chats, settings, sign-in)."""
        self._windows = windows
        self.refresh_menu()
        self._update_status_window()

    def set_problem(self, what: str, problem: str) -> None:
        """Say in the menu that a service is unavailable ("" clears it).

        Args:
            what: ``"notifications"``, ``"sounds"`` or ``"storage"``.
            problem: the reason, plain words.
        """
        if problem:
            self._problems[what] = problem
        else:
            self._problems.pop(what, None)
        self.refresh_menu()

    def show_info(self, title: str, text: str) -> None:
        """Tell the agent something brief (a tray balloon; the log when there is no tray)."""
        logger.info("%s: %s", title, text)
        if self._available and self._tray.isVisible():
            self._tray.showMessage(title, text, QSystemTrayIcon.MessageIcon.Information, 8000)
        elif self._status_window is not None:
            self._status_window.setToolTip(f"{title}: {text}")

    def show(self) -> None:
        """Show the tray icon; without a tray, say so once and show the status window."""
        if self._available:
            self._tray.show()
            return
        if not self._no_tray_reported:
            self._no_tray_reported = True
            logger.warning("No system tray on this desktop: showing a small status window instead")
        self.show_status_window()

    def hide(self) -> None:
        """Hide the tray icon and the status window (at shutdown)."""
        if self._language_notifier is not None:
            with contextlib.suppress(RuntimeError):  # already disconnected
                self._language_notifier.language_changed.disconnect(self._on_language_changed)
            self._language_notifier = None
        self._tray.hide()
        self._menu.close()
        if self._status_window is not None:
            self._status_window.close()

    def show_status_window(self) -> StatusWindow:
        """Create (once) and show the status window."""
        if self._status_window is None:
            self._status_window = StatusWindow(self._menu)
            self._status_window.inbox_requested.connect(self._on_status_window_inbox_requested)
        self._update_status_window()
        self._status_window.show()
        return self._status_window

    def popup_menu(self, pos: QPoint | None = None) -> None:
        """Open the menu (at ``pos``, or under the status window's Menu button)."""
        self.refresh_menu()
        if pos is None and self._status_window is not None and self._status_window.isVisible():
            self._status_window.popup_menu()
            return
        self._menu.popup(pos if pos is not None else QPoint(0, 0))

    def refresh_menu(self) -> None:
        """Rebuild the menu from the current state."""
        try:
            self._build_menu()
        except Exception:
            logger.exception("Building the tray menu failed")

    # ------------------------------------------------------------------ slots

    def _on_bridge_connection_changed(self, info: ConnectionInfo) -> None:
        self._changed()

    def _on_bridge_waiting_changed(self, waiting: object) -> None:
        # Icon, tooltip and status window show only the count (badge_changed); the list itself
        # is shown only by the open menu. This runs on most flushes: keep it that cheap.
        if self._menu.isVisible():
            self.refresh_menu()

    def _on_bridge_badge_changed(self, count: int) -> None:
        self._changed()

    def _on_runner_tray_level_changed(self, level: object) -> None:
        self._changed()

    def _on_runner_quiet_changed(self, quiet: bool) -> None:
        self._changed()

    def _on_runner_dnd_changed(self, until: object) -> None:
        if until is None:
            self._dnd_choice = _DndChoice.OFF
        self._changed()

    def _on_language_changed(self, language: str) -> None:
        self.refresh_menu()
        self._tray.setToolTip("")  # the tooltip is rebuilt below even if only its words changed
        self._changed()  # the status window's fixed texts follow ui.language.retranslate_widgets

    def _on_menu_about_to_show(self) -> None:
        self.refresh_menu()

    def _on_tray_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason is QSystemTrayIcon.ActivationReason.Trigger:
            self._open_inbox()

    def _on_export_dialog_file_selected(self, path: str) -> None:
        if path:
            self.diagnostics_export_requested.emit(path)

    def _on_export_dialog_finished(self) -> None:
        if self._export_dialog is not None:
            self._export_dialog.deleteLater()
            self._export_dialog = None

    def _on_status_window_inbox_requested(self) -> None:
        self._open_inbox()

    # ------------------------------------------------------------------ internals: view

    def _changed(self) -> None:
        self._update_icon()
        if self._menu.isVisible():
            self.refresh_menu()
        self._update_status_window()

    def _current_key(self) -> tuple[IconState, str, bool]:
        state = self._bridge.state
        level = self._runner.tray_level
        key = icon_state(state.connection.state, level, self._runner.quiet)
        return key, badge_text(state.waiting_count), sla_overlay(key, level)

    def _icon(self, key: tuple[IconState, str, bool]) -> QIcon:
        icon = self._icons.get(key)
        if icon is None:
            icon = render_icon(key[0], key[1], self._icon_style, sla=key[2])
            self._icons[key] = icon
            while len(self._icons) > _ICON_CACHE_SIZE:
                self._icons.popitem(last=False)
        else:
            self._icons.move_to_end(key)
        return icon

    def _update_icon(self) -> None:
        key = self._current_key()
        if key != self._icon_key:
            self._icon_key = key
            self._tray.setIcon(self._icon(key))
            self.icon_changed.emit(f"{key[0]}{'+sla' if key[2] else ''}:{key[1]}")
        text = self._tooltip_text()
        if text != self._tray.toolTip():  # each change is a D-Bus update on SNI desktops
            self._tray.setToolTip(text)

    def _waiting_line(self) -> str:
        count = self._bridge.state.waiting_count
        if count == 0:
            return _("Nobody is waiting")
        return ngettext("{count} customer waiting", "{count} customers waiting", count).format(count=count)

    def _dnd_line(self) -> str:
        until = self._runner.dnd_until
        if until is not None:
            return _("Do not disturb until {time}").format(time=_clock_text(until))
        if self._runner.quiet:
            return _("Do not disturb (quiet hours)")
        return ""

    def _tooltip_text(self) -> str:
        info = self._bridge.state.connection
        lines = [_("tray_agent"), status_text(info), self._waiting_line()]
        lines += [line for line in (synced_text(info), self._dnd_line()) if line]
        return "\n".join(lines)

    def _update_status_window(self) -> None:
        window = self._status_window
        if window is None:
            return
        info = self._bridge.state.connection
        state_line = status_text(info)
        synced = synced_text(info)
        if synced:
            state_line = f"{state_line} · {synced}"
        window.update_view(
            self._icon(self._current_key()), state_line, self._waiting_line(), self._windows is not None
        )

    def _build_menu(self) -> None:
        menu = self._menu
        menu.clear()
        state = self._bridge.state
        info = state.connection

        header = status_text(info)
        synced = synced_text(info)
        if synced:
            header = f"{header} · {synced}"
        self._info_item(menu, header)
        for what, problem in sorted(self._problems.items()):
            if what == "notifications":
                self._info_item(menu, _("Notifications unavailable: {problem}").format(problem=problem))
            elif what == "storage":
                self._info_item(menu, _("Local storage problem: {problem}").format(problem=problem))
            else:
                self._info_item(menu, _("Sounds unavailable: {problem}").format(problem=problem))
        if info.state in _SIGNED_OUT_STATES and self._windows is not None:
            # Signed out, no account, or the last sign-in settings do not work: a way back.
            self._item(menu, _("Sign in…"), self._sign_in).setObjectName("signIn")
        if info.state in (
            ConnectionState.RECONNECTING,
            ConnectionState.OFFLINE,
            ConnectionState.LIMITED,
            ConnectionState.SIGNED_IN_ELSEWHERE,
        ):
            self._item(menu, _("Reconnect now"), self.reconnect_requested.emit)
        menu.addSeparator()

        self._build_waiting(menu, state.waiting_list())
        menu.addSeparator()

        if self._windows is not None:
            self._item(menu, _("Open inbox"), self._open_inbox)
        if self._dnd_allowed:
            self._build_dnd(menu)
        mute = self._item(menu, _("Mute sounds"), None)
        mute.setCheckable(True)
        mute.setChecked(self._runner.muted)
        mute.setObjectName("mute")
        if self._mute_locked:
            mute.setEnabled(False)
            mute.setToolTip(_("Set by your administrator"))
        else:
            mute.toggled.connect(self.mute_toggled)
        if self._windows is not None:
            self._item(menu, _("Settings…"), self._show_settings)
        export = self._item(menu, _("Export diagnostics…"), self.ask_export_diagnostics)
        export.setObjectName("exportDiagnostics")
        export.setToolTip(_("Save the logs and settings (without secrets) to a zip for support"))
        if self._windows is not None:
            sign_out = self._item(menu, _("Sign out…"), self.sign_out_requested.emit)
            sign_out.setObjectName("signOut")
        menu.addSeparator()
        self._item(menu, _("Quit"), self.quit_requested.emit)

    def _build_waiting(self, menu: QMenu, waiting: tuple[Conversation, ...]) -> None:
        if not waiting:
            self._info_item(menu, _("Nobody is waiting"))
            return
        now = self._clock.now()
        self._info_item(menu, _("Waiting customers ({count})").format(count=len(waiting)))
        for conv in waiting[:MENU_CUSTOMERS]:
            name = conv.customer_name or _("Unknown customer")
            parts = [menu_text(name)]
            waited = waited_text(conv.waiting_since, now)
            if waited:
                parts.append(waited)
            parts.append(menu_text(who_has_text(conv)))
            sub = menu.addMenu(" · ".join(parts))
            sub.menuAction().setObjectName(f"customer:{conv.key}")
            key = conv.key
            take = self._item(sub, _("Take over"), functools.partial(self._take_over, key))
            take.setEnabled(not conv.assigned)
            take.setObjectName("take_over")
            if self._windows is not None:
                self._item(sub, _("Open"), functools.partial(self._open_chat, key)).setObjectName("open")
        more = len(waiting) - MENU_CUSTOMERS
        if more > 0:
            item = self._item(menu, _("{count} more…").format(count=more), self._open_inbox)
            item.setObjectName("more")
            item.setEnabled(self._windows is not None)

    def _build_dnd(self, menu: QMenu) -> None:
        until = self._runner.dnd_until
        if until is None and self._dnd_choice is not _DndChoice.OFF:
            self._dnd_choice = _DndChoice.OFF
        title = _("Do not disturb")
        line = self._dnd_line()
        if line:
            title = line
        sub = menu.addMenu(title)
        sub.menuAction().setObjectName("dnd")
        group = QActionGroup(sub)
        group.setExclusive(True)
        now = self._clock.now()
        choices: list[tuple[_DndChoice, str, datetime | None]] = [
            (_DndChoice.MIN30, _("For 30 minutes"), now + timedelta(minutes=30)),
            (_DndChoice.HOUR, _("For 1 hour"), now + timedelta(hours=1)),
            (_DndChoice.TOMORROW, _("Until tomorrow morning"), tomorrow_morning(now)),
            (_DndChoice.OFF, _("Off"), None),
        ]
        for choice, label, end in choices:
            text = label
            if choice is self._dnd_choice and until is not None:
                text = _("{label} (until {time})").format(label=label, time=_clock_text(until))
            action = self._item(sub, text, functools.partial(self._set_dnd, choice, end))
            action.setCheckable(True)
            action.setChecked(choice is self._dnd_choice)
            action.setObjectName(f"dnd:{choice}")
            group.addAction(action)

    def _info_item(self, menu: QMenu, text: str) -> QAction:
        action = menu.addAction(menu_text(text))
        action.setEnabled(False)
        return action

    def _item(self, menu: QMenu, text: str, slot: Callable[[], object] | None) -> QAction:
        action = menu.addAction(text)
        if slot is not None:
            action.triggered.connect(lambda _checked=False, slot=slot: slot())
        return action

    # ------------------------------------------------------------------ internals: actions

    def _open_inbox(self) -> None:
        if self._windows is None:
            self.show_status_window()
            return
        self._windows.show_inbox()

    def _open_chat(self, conversation: str) -> None:
        if self._windows is not None:
            self._windows.open_chat(conversation)

    def _take_over(self, conversation: str) -> None:
        self._commands.submit(TakeOver(conversation))
        self._open_chat(conversation)

    def _show_settings(self) -> None:
        if self._windows is not None:
            self._windows.show_settings()

    def _sign_in(self) -> None:
        if self._windows is not None:
            self._windows.show_sign_in(self._bridge.state.connection.detail)

    def _set_dnd(self, choice: _DndChoice, until: datetime | None) -> None:
        if until is not None and not self._dnd_allowed:
            return
        self._dnd_choice = choice
        self._runner.set_dnd(until)
        self._changed()
