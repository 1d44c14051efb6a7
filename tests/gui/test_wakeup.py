"""WakeupWatcher: a clock jump or the network coming back asks for an immediate reconnect."""

from __future__ import annotations

from PySide6.QtNetwork import QNetworkInformation

from tray_agent.ui.wakeup import CHECK_INTERVAL_MS, WakeupWatcher


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
    watcher._on_timer_timeout()  # the timer's slot, driven with injected clocks
    assert reasons == []
    clocks.advance(10, slept=7_200)
    watcher._on_timer_timeout()
    clocks.advance(10)
    watcher._on_timer_timeout()
    assert reasons == ["resumed from sleep"]
    watcher.stop()


def test_timer_is_coarse_and_stops():
    clocks = FakeClocks()
    watcher = make_watcher(clocks)
    watcher.start()
    assert watcher._timer.isActive()
    assert CHECK_INTERVAL_MS >= 1_000  # never more than once a second while idle
    watcher.stop()
    assert not watcher._timer.isActive()


def test_network_coming_back_online_is_reported(qtbot):
    watcher = make_watcher(FakeClocks())
    watcher._reachability = QNetworkInformation.Reachability.Disconnected
    with qtbot.waitSignal(watcher.wakeup_detected) as blocker:
        watcher._on_network_reachability_changed(QNetworkInformation.Reachability.Online)
    assert blocker.args == ["network changed"]
    reasons: list[str] = []
    watcher.wakeup_detected.connect(reasons.append)
    watcher._on_network_reachability_changed(QNetworkInformation.Reachability.Online)  # no change
    watcher._on_network_reachability_changed(QNetworkInformation.Reachability.Disconnected)
    assert reasons == []
