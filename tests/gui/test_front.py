"""ui.front: the GUI's side of the session hooks and the account flows (no TrayApp): which notifier
alerts, what the tray says is missing, where a toast click goes, a sign-in without windows."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from PySide6.QtWidgets import QApplication

from tests.gui.conftest import FakeWindowManager
from tests.helpers.fakes import (
    FakeCommandSink,
    FakeNotifier,
    FakeSound,
    SettableClock,
    close_awaitable,
)
from tray_agent.core.commands import TakeOver
from tray_agent.core.effects import ToastAction
from tray_agent.core.policy import AlertPolicy
from tray_agent.core.settings import AlertSettings
from tray_agent.core.state import Store
from tray_agent.ui.bridge import StoreBridge
from tray_agent.ui.effects import EffectRunner
from tray_agent.ui.front import Front
from tray_agent.ui.theme import ThemeController
from tray_agent.ui.tray import TrayController

pytestmark = pytest.mark.gui


@pytest.fixture
def front(qapp: QApplication, sink: FakeCommandSink) -> Iterator[Front]:
    settings = AlertSettings()
    clock = SettableClock()
    bridge = StoreBridge(Store())
    runner = EffectRunner(
        AlertPolicy(settings), FakeNotifier(), FakeSound(), clock, settings, spawn=close_awaitable
    )
    tray = TrayController(bridge, runner, sink, clock, tray_available=False)
    theme = ThemeController(qapp, "system", qapp)
    yield Front(tray, runner, sink, theme, qapp, keyring_problem=lambda: "")
    tray.hide()
    bridge.close()


def menu_texts(front: Front) -> list[str]:
    front.tray.refresh_menu()
    return [action.text() for action in front.tray.menu.actions()]


def test_front_without_a_notification_service_or_tray_says_what_is_missing(front: Front) -> None:
    notifier = FakeNotifier(available=False)
    front.use_services(notifier, FakeSound(available=False, problem="no audio player found"))
    assert front.runner.notifier is notifier  # nothing better here: alerts go nowhere, said so
    texts = menu_texts(front)
    assert "Notifications unavailable: no notification service on this desktop" in texts
    assert "Sounds unavailable: no audio player found" in texts


def test_front_routes_a_native_toasts_take_over_to_the_sink_then_the_chat(
    front: Front, sink: FakeCommandSink, windows: FakeWindowManager, caplog
) -> None:
    notifier = FakeNotifier()
    with caplog.at_level(logging.INFO, logger="tray_agent.ui.front"):
        front.use_services(notifier, FakeSound())
    assert "Notifications: native" in caplog.text
    assert not any("unavailable" in text for text in menu_texts(front))
    assert notifier.callback is not None
    notifier.callback("message:p/a", ToastAction.TAKE_OVER)  # before the windows exist
    front.windows = windows  # type: ignore[assignment]
    notifier.callback("message:p/b", None)
    assert [type(c) for c in sink.submitted] == [TakeOver]
    assert windows.calls == [("open_chat", "p/b")]


def test_front_without_windows_logs_the_sign_in_it_cannot_show(front: Front, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="tray_agent.ui.front"):
        front.show_sign_in("wrong password")
        front.close_sign_in()
        front.settings_save_failed("disk full")
    assert "Sign-in needed (wrong password), but this build has no sign-in window" in caplog.text


def test_the_counts_test_hook_logs_after_every_flush(qtbot, front: Front, caplog) -> None:
    """TRAY_AGENT_TEST_LOG_COUNTS=1 (tests/desktop/test_workflow.py reads these lines): the hook
    outlives the call that installed it."""
    import gc

    from tray_agent.core.events import ConnectionChanged, ConnectionState
    from tray_agent.ui.testing_hooks import TEST_LOG_COUNTS_ENV, install_test_hooks

    store = Store()
    bridge = StoreBridge(store)
    try:
        install_test_hooks({TEST_LOG_COUNTS_ENV: "1"}, front.tray, bridge, lambda: None)
        install_test_hooks({}, front.tray, bridge, lambda: None)  # not asked for: nothing more
        gc.collect()
        with (
            caplog.at_level(logging.INFO, logger="tray_agent.ui.testing_hooks"),
            qtbot.waitSignal(bridge.flushed, timeout=1000),
        ):
            store.dispatch(ConnectionChanged(state=ConnectionState.CONNECTED))
        assert [r.getMessage() for r in caplog.records] == ["Counts: waiting=0 mine=0 badge=- tabs="]
    finally:
        bridge.close()
