"""TrayMessageNotifier: the Notifier port on QSystemTrayIcon.showMessage, when desktop-notifier fails."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QSystemTrayIcon

from tray_agent.core.effects import Toast, Urgency
from tray_agent.core.ports import ToastCallback

logger = logging.getLogger(__name__)

SHOW_MS = 10_000
"""How long a balloon stays (the desktop may ignore it)."""

_ICONS = {
    Urgency.LOW: QSystemTrayIcon.MessageIcon.Information,
    Urgency.NORMAL: QSystemTrayIcon.MessageIcon.Information,
    Urgency.CRITICAL: QSystemTrayIcon.MessageIcon.Warning,
}


class TrayMessageNotifier(QObject):
    """:class:`~tray_agent.core.ports.Notifier` over ``QSystemTrayIcon.showMessage``.

    A fallback with less power than the native notifier: one message at a time, no buttons,
    nothing can be withdrawn once shown. A click (``messageClicked``) is reported for the key of
    the LAST message shown, since Qt does not say which one was clicked. Title and body are
    passed as plain text (Qt sends them to the notification server as such; on SNI desktops the
    server escapes them itself).

    Args:
        tray: the tray icon the messages come from.
        parent: the Qt parent.
    """

    def __init__(self, tray: QSystemTrayIcon, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tray = tray
        self._callback: ToastCallback | None = None
        self._last_key: str | None = None
        tray.messageClicked.connect(self._on_tray_message_clicked)

    @property
    def available(self) -> bool:
        """True when the tray exists and can show messages."""
        return QSystemTrayIcon.isSystemTrayAvailable() and QSystemTrayIcon.supportsMessages()

    def set_callback(self, callback: ToastCallback) -> None:
        """Register the click handler: ``callback(key, None)`` (there are no buttons)."""
        self._callback = callback

    async def show(self, toast: Toast) -> None:
        """Show the toast as a tray message. Never raises."""
        try:
            self._tray.showMessage(toast.title, toast.body, _ICONS[toast.urgency], SHOW_MS)
            self._last_key = toast.key
        except Exception:
            logger.warning("Could not show a tray message", exc_info=True)

    async def withdraw(self, key: str) -> None:
        """Qt cannot take a message back; a later click on it no longer opens anything."""
        if key == self._last_key:
            self._last_key = None

    async def aclose(self) -> None:
        """Nothing to release."""

    def _on_tray_message_clicked(self) -> None:
        if self._callback is None or self._last_key is None:
            return
        try:
            self._callback(self._last_key, None)
        except Exception:
            logger.exception("Toast callback failed")
