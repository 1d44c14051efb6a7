"""ui/qt_messages.py: Qt's messages reach the log; the host-portal noise only at debug level."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QtMsgType, qInstallMessageHandler, qWarning

from tray_agent.ui.qt_messages import install_qt_message_handler, qt_message_level

pytestmark = pytest.mark.gui

PORTAL = (
    'Failed to register with host portal QDBusError("org.freedesktop.portal.Error.Failed", '
    "\"Could not register app ID: App info not found for 'tray-agent'\")"
)


@pytest.fixture
def handler() -> Iterator[None]:
    install_qt_message_handler()
    yield
    qInstallMessageHandler(None)  # back to Qt's default (pytest-qt installs its own per test)


def test_qt_message_level_keeps_the_type_and_quiets_the_portal_message() -> None:
    assert qt_message_level(QtMsgType.QtWarningMsg, "QPainter::begin: Paint device returned engine == 0") == (
        logging.WARNING
    )
    assert qt_message_level(QtMsgType.QtCriticalMsg, "something broke") == logging.ERROR
    assert qt_message_level(QtMsgType.QtWarningMsg, PORTAL) == logging.DEBUG


def test_qt_warnings_go_to_the_log_and_the_portal_one_only_at_debug(
    handler: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tray_agent.qt"):
        qWarning("a real Qt warning")
        qWarning(PORTAL)
    levels = {r.getMessage(): r.levelno for r in caplog.records if r.name == "tray_agent.qt"}
    assert levels == {"a real Qt warning": logging.WARNING, PORTAL: logging.DEBUG}
