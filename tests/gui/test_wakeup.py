"""WakeupWatcher: a clock jump or the network coming back asks for an immediate reconnect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtNetwork import QNetworkInformation

from tray_agent.ui.wakeup import CHECK_INTERVAL_MS, WakeupWatcher, network_plugins_present


class FakeClocks:
    def __init__(self) -> None:
        self.wall = 1_000.0
        self.mono = 50.0

    def advance(self, seconds: float, *, slept: float = 0.0) -> None:
        self.mono += seconds
        self.wall += seconds + slept


def make_watcher(clocks: FakeClocks) -> WakeupWatcher:
    return WakeupWatcher(
        wall=lambda: clocks.wall, monotonic=lambda: clocks.mono, use_network_information=False
    )


def test_resume_from_sleep_is_reported_once(qtbot):
    clocks = FakeClocks()
    watcher = make_watcher(clocks)
    watcher.start()
    reasons: list[str] = []
    watcher.wakeup_detected.connect(reasons.append)
    clocks.advance(10)
    watcher.check_clocks()  # the timer's work, driven with injected clocks
    assert reasons == []
    clocks.advance(10, slept=7_200)
    watcher.check_clocks()
    clocks.advance(10)
    watcher.check_clocks()
    assert reasons == ["resumed from sleep"]
    watcher.stop()


def test_timer_is_coarse_and_stops():
    clocks = FakeClocks()
    watcher = make_watcher(clocks)
    watcher.start()
    assert watcher.watching
    assert CHECK_INTERVAL_MS >= 1_000  # never more than once a second while idle
    watcher.stop()
    assert not watcher.watching


def test_network_coming_back_online_is_reported(qtbot):
    watcher = make_watcher(FakeClocks())
    watcher.note_reachability(QNetworkInformation.Reachability.Disconnected)  # the start: offline
    with qtbot.waitSignal(watcher.wakeup_detected) as blocker:
        watcher.note_reachability(QNetworkInformation.Reachability.Online)
    assert blocker.args == ["network changed"]
    reasons: list[str] = []
    watcher.wakeup_detected.connect(reasons.append)
    watcher.note_reachability(QNetworkInformation.Reachability.Online)  # no change
    watcher.note_reachability(QNetworkInformation.Reachability.Disconnected)
    assert reasons == []


def test_network_plugins_present_looks_for_qts_networkinformation_plugins(tmp_path: Path) -> None:
    assert network_plugins_present(str(tmp_path)) is False  # no folder
    (tmp_path / "networkinformation").mkdir()
    assert network_plugins_present(str(tmp_path)) is False  # empty (the bundle leaves them out)
    (tmp_path / "networkinformation" / "libqnetworkmanager.so").write_bytes(b"")
    assert network_plugins_present(str(tmp_path)) is True


def test_without_network_plugins_qtnetwork_is_not_loaded(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from unittest import mock\n"
        "from PySide6.QtCore import QCoreApplication\n"
        "from tray_agent.ui import wakeup\n"
        "app = QCoreApplication([])\n"
        "with mock.patch.object(wakeup, 'network_plugins_present', lambda: False):\n"
        "    watcher = wakeup.WakeupWatcher()\n"
        "print('PySide6.QtNetwork' in sys.modules)\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
