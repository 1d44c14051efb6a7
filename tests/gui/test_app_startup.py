"""gui.py start-up: the first tray icon (EarlyTray), its adoption, quitting early, the log file."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication, QMenu
from pytestqt.qtbot import QtBot

from tests.gui.conftest import FakeCommandSink, FakeNotifier, FakeSound, SettableClock, close_awaitable
from tray_agent.core import i18n
from tray_agent.core.policy import AlertPolicy
from tray_agent.core.redact import RedactingFilter
from tray_agent.core.settings import AlertSettings
from tray_agent.core.state import Store
from tray_agent.gui import Launch
from tray_agent.platform.logs import LOG_FILE, setup_logging
from tray_agent.platform.paths import Paths
from tray_agent.ui.bridge import StoreBridge
from tray_agent.ui.early_tray import EarlyTray
from tray_agent.ui.effects import EffectRunner
from tray_agent.ui.single_instance import SingleInstance, server_name
from tray_agent.ui.tray import TrayController

pytestmark = pytest.mark.gui


@pytest.fixture
def english() -> Iterator[None]:
    before = i18n.language()
    i18n.set_language("en")
    yield
    i18n.set_language(before)


def menu_texts(menu: QMenu) -> list[str]:
    return [action.text() for action in menu.actions() if not action.isSeparator()]


def test_early_tray_is_a_connecting_icon_with_a_tooltip_and_a_working_quit(
    qapp: QApplication, english: None
) -> None:
    quits: list[bool] = []
    early = EarlyTray(qapp, lambda: quits.append(True))
    try:
        assert not early.icon.icon().isNull()
        assert early.icon.toolTip() == "tray_agent\nConnecting…"
        assert early.menu is None  # the menu comes right after the icon is shown
        early.show()
        assert early.menu is not None
        assert early.icon.contextMenu() is early.menu
        assert menu_texts(early.menu) == ["Quit"]
        early.menu.actions()[0].trigger()
        assert quits == [True]
    finally:
        early.close()


def test_tray_controller_adopts_the_early_icon_and_puts_its_full_menu_in(
    qapp: QApplication, qtbot: QtBot, english: None
) -> None:
    early = EarlyTray(qapp, lambda: None)
    early.show()
    first_menu = early.menu
    assert first_menu is not None
    clock = SettableClock()
    settings = AlertSettings()
    bridge = StoreBridge(Store())
    runner = EffectRunner(
        AlertPolicy(settings), FakeNotifier(), FakeSound(), clock, settings, spawn=close_awaitable
    )
    tray = TrayController(bridge, runner, FakeCommandSink(), clock, tray_icon=early.icon)
    try:
        assert tray.tray_icon is early.icon  # one icon: the desktop keeps the item it registered
        assert early.icon.parent() is tray
        assert early.icon.contextMenu() is tray.menu
        early.handed_over()
        with qtbot.waitSignal(first_menu.destroyed, timeout=1000):
            pass
        assert "Mute sounds" in menu_texts(tray.menu)
        assert tray.tooltip.startswith("tray_agent\nOffline")  # the store's state from now on
    finally:
        tray.hide()
        bridge.close()


@pytest.mark.asyncio
async def test_quit_before_the_app_is_up_ends_the_launch_without_loading_more(
    qapp: QApplication, tmp_path: Path, english: None
) -> None:
    paths = Paths.from_platform(tmp_path / "base", env={})
    paths.ensure_dirs()
    instance = SingleInstance(server_name(str(paths.config)))
    opened: list[bool] = []
    launch = Launch(
        argparse.Namespace(demo=False), paths, qapp, instance, open_log_file=lambda: opened.append(True)
    )
    launch.early = EarlyTray(qapp, launch.stop)
    launch.early.show()
    assert launch.early.menu is not None
    launch.early.menu.actions()[0].trigger()  # Quit, at once
    try:
        assert await launch.main() == 0
        assert launch.tray_app is None  # no store, tray controller, client or windows were built
        assert not launch.early.icon.isVisible()
        assert opened == [True]  # the log file still opens (the records held so far go in)
    finally:
        instance.close()


@pytest.mark.asyncio
async def test_a_failure_while_building_the_app_ends_the_launch_with_code_1(
    qapp: QApplication, tmp_path: Path, english: None, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    import tray_agent.app as app_module

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("broken build")

    monkeypatch.setattr(app_module, "TrayApp", broken)
    paths = Paths.from_platform(tmp_path / "base", env={})
    paths.ensure_dirs()
    instance = SingleInstance(server_name(str(paths.config)))
    launch = Launch(argparse.Namespace(demo=False, basedir=None, set=None), paths, qapp, instance)
    launch.early = EarlyTray(qapp, launch.stop)
    launch.early.show()
    try:
        with caplog.at_level(logging.ERROR, logger="tray_agent.gui"):
            assert await launch.main() == 1
        assert "Start-up failed" in caplog.text
        assert not launch.early.icon.isVisible()  # no icon left behind that nothing answers
    finally:
        instance.close()


def test_setup_logging_holds_the_records_until_the_log_file_opens(tmp_path: Path) -> None:
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    log = tmp_path / LOG_FILE
    try:
        open_file = setup_logging(tmp_path, verbose=False, open_file_later=True)
        logging.getLogger("tray_agent.test").info("before the file, token=s3cret-before")
        assert not log.exists()
        open_file()
        logging.getLogger("tray_agent.test").info("after the file")
        open_file()  # again: nothing more happens
        added = [h for h in root.handlers if h not in handlers]
        text = log.read_text(encoding="utf-8")
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:  # pytest's own handlers live on: no redaction left on them
            for existing in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
                handler.removeFilter(existing)
        root.setLevel(level)
        sys.excepthook = hook
    assert len(added) == 2  # stderr and the file; the holding buffer is gone
    assert text.index("before the file") < text.index("after the file")
    assert "s3cret-before" not in text  # redacted, as every record


@pytest.mark.parametrize(
    ("server", "email", "expected"),
    [("https://support.example", "sam@example.com", "connecting"), ("", "", "offline")],
)
def test_the_app_says_connecting_from_the_start_when_it_has_an_account(
    qapp: QApplication, tmp_path: Path, server: str, email: str, expected: str
) -> None:
    """The first icon says "connecting": a configured app must not flash "offline" (the store's
    initial state) while its services, keyring and demo start; without an account it is
    honestly offline (the sign-in window follows)."""
    from tray_agent.app import TrayApp
    from tray_agent.core.settings import ConnectionSettings, Settings
    from tray_agent.core.settings_layers import LoadedSettings

    paths = Paths.from_platform(tmp_path / "base", env={})
    account = ConnectionSettings(dialect="dashboard", server=server, company="acme", email=email)
    loaded = LoadedSettings(settings=Settings(connection=account))
    app = TrayApp(argparse.Namespace(demo=False), paths, loaded, qapp)
    try:
        assert str(app.store.state.connection.state) == expected
        assert app.tray.icon_state == expected  # what the tray controller showed first
    finally:
        app.bridge.close()
        app.tray.hide()


def test_reconnect_now_without_an_account_opens_the_sign_in(qapp: QApplication, tmp_path: Path) -> None:
    """No configuration, sign-in cancelled: "Reconnect now" has nothing to reconnect, so it
    opens the sign-in instead of doing nothing."""
    from tray_agent.app import TrayApp
    from tray_agent.core.settings import Settings
    from tray_agent.core.settings_layers import LoadedSettings

    class Windows:
        def __init__(self) -> None:
            self.sign_ins: list[str] = []

        def show_sign_in(self, problem: str = "", *, keyring_problem: str | None = None) -> None:
            self.sign_ins.append(problem)

    paths = Paths.from_platform(tmp_path / "base", env={})
    app = TrayApp(argparse.Namespace(demo=False), paths, LoadedSettings(settings=Settings()), qapp)
    windows = Windows()
    app.windows = windows
    try:
        assert app.session.client is None
        app.tray.reconnect_requested.emit()
        assert windows.sign_ins == ["Enter your server and account to sign in."]
    finally:
        app.bridge.close()
        app.tray.hide()


def test_last_synced_in_the_tray_moves_with_each_periodic_resync(qtbot: QtBot, english: None) -> None:
    """The client's resync pages reach the store stamped (the session's dispatcher, as app.py
    wires it): "Last synced" in the tray follows every completed resync, not only the first
    connect (it stood still for 7 minutes while connected and resyncing)."""
    from datetime import timedelta

    from tray_agent.core.events import ConnectionChanged, ConnectionState, WaitingListPage
    from tray_agent.session.dispatcher import Dispatcher

    clock = SettableClock()
    store = Store()
    dispatcher = Dispatcher(store, clock)
    bridge = StoreBridge(store)
    settings = AlertSettings()
    runner = EffectRunner(
        AlertPolicy(settings), FakeNotifier(), FakeSound(), clock, settings, spawn=close_awaitable
    )
    tray = TrayController(bridge, runner, FakeCommandSink(), clock, tray_available=False)
    try:
        with qtbot.waitSignal(bridge.flushed, timeout=1000):
            dispatcher.dispatch(ConnectionChanged(state=ConnectionState.CONNECTED))
            dispatcher.dispatch(WaitingListPage())
        first = clock.now()
        assert store.state.connection.last_synced == first
        clock.advance(7 * 60)
        with qtbot.waitSignal(bridge.flushed, timeout=1000):
            dispatcher.dispatch(WaitingListPage())  # the periodic resync's last page
        assert store.state.connection.last_synced == first + timedelta(minutes=7)
        expected = (first + timedelta(minutes=7)).astimezone().strftime("%H:%M")
        assert f"Last synced {expected}" in tray.tooltip
    finally:
        tray.hide()
        bridge.close()
