"""Qt's own messages (warnings, criticals) go to the log, not to stderr; known noise goes to debug."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QtMsgType, qInstallMessageHandler

qt_logger = logging.getLogger("tray_agent.qt")

LEVELS = {
    QtMsgType.QtDebugMsg: logging.DEBUG,
    QtMsgType.QtInfoMsg: logging.INFO,
    QtMsgType.QtWarningMsg: logging.WARNING,
    QtMsgType.QtCriticalMsg: logging.ERROR,
    QtMsgType.QtFatalMsg: logging.CRITICAL,
}

QUIET_MESSAGES = (
    # Qt 6.5+ registers the app with the XDG desktop portal's host registry at every start; a
    # desktop without the portal (or one that does not know the app's .desktop file) answers
    # with an error that changes nothing for the app: not worth a warning on each start.
    "Failed to register with host portal",
)
"""Prefixes of Qt messages that are logged at debug level whatever their type."""


def qt_message_level(mode: QtMsgType, message: str) -> int:
    """The log level of one Qt message: its type's level, debug for :data:`QUIET_MESSAGES`."""
    if message.startswith(QUIET_MESSAGES):
        return logging.DEBUG
    return LEVELS.get(mode, logging.WARNING)


def _on_qt_message(mode: QtMsgType, context: Any, message: str) -> None:
    qt_logger.log(qt_message_level(mode, message), "%s", message)


def install_qt_message_handler() -> None:
    """Send Qt's own warnings to the log instead of stderr."""
    qInstallMessageHandler(_on_qt_message)
