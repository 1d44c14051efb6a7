"""Notices sleep/resume and network changes, so the app reconnects at once instead of waiting.

Two sources: a coarse timer comparing the wall and monotonic clocks
(:class:`tray_agent.core.wakeup.ResumeDetector`), and Qt's QNetworkInformation reachability
(NetworkManager, ConnMan or GLib on Linux; the OS APIs on Windows and macOS), which is simply
skipped where no backend loads. Where Qt has no network-information plugin at all (the bundle
leaves them out: packaging/tray-agent.spec), QtNetwork is not even imported (about 3 MB resident
with the libraries it links).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QLibraryInfo, QObject, QTimer, Signal

from tray_agent.core.wakeup import ResumeDetector

if TYPE_CHECKING:
    from PySide6.QtNetwork import QNetworkInformation

logger = logging.getLogger(__name__)

CHECK_INTERVAL_MS = 10_000  # coarse on purpose: idle CPU stays near zero


class WakeupWatcher(QObject):
    """Emits when the connection should be re-established at once.

    Signals:
        wakeup_detected(str): a plain-words reason ("resumed from sleep", "network changed").
    """

    wakeup_detected = Signal(str)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        use_network_information: bool = True,
    ) -> None:
        super().__init__(parent)
        self._wall = wall
        self._monotonic = monotonic
        self._detector = ResumeDetector()
        self._timer = QTimer(self)
        self._timer.setInterval(CHECK_INTERVAL_MS)
        self._timer.timeout.connect(self._on_timer_timeout)
        self._reachability: QNetworkInformation.Reachability | None = None
        self._network: QNetworkInformation | None = None
        if use_network_information:
            self._watch_network()

    def start(self) -> None:
        """Take the first clock sample and start watching."""
        self._detector.observe(self._wall(), self._monotonic())
        self._timer.start()

    def stop(self) -> None:
        """Stop watching."""
        self._timer.stop()

    @property
    def watching(self) -> bool:
        """Between :meth:`start` and :meth:`stop` (the coarse timer runs)."""
        return self._timer.isActive()

    def check_clocks(self) -> None:
        """Compare the clocks now: a jump emits ``wakeup_detected`` (the timer's work)."""
        jump = self._detector.observe(self._wall(), self._monotonic())
        if jump is not None:
            logger.info("The clocks jumped by %.0f s (sleep/resume or a clock change)", jump)
            self.wakeup_detected.emit("resumed from sleep" if jump > 0 else "clock changed")

    def note_reachability(self, reachability: QNetworkInformation.Reachability) -> None:
        """The network's reachability is now ``reachability``: coming online emits ``wakeup_detected``."""
        from PySide6.QtNetwork import QNetworkInformation

        before, self._reachability = self._reachability, reachability
        online = reachability in (
            QNetworkInformation.Reachability.Online,
            QNetworkInformation.Reachability.Site,
        )
        if online and reachability != before:
            logger.info("The network changed (%s)", reachability.name)
            self.wakeup_detected.emit("network changed")

    def _watch_network(self) -> None:
        if not network_plugins_present():
            logger.info("No network-information plugin: network changes are noticed by the heartbeat only")
            return
        from PySide6.QtNetwork import QNetworkInformation

        try:
            loaded = QNetworkInformation.loadBackendByFeatures(QNetworkInformation.Feature.Reachability)
        except Exception:  # a platform plugin failing must never stop the app
            logger.debug("QNetworkInformation unavailable", exc_info=True)
            return
        network = QNetworkInformation.instance() if loaded else None
        if network is None:
            logger.info("No network-information backend: network changes are noticed by the heartbeat only")
            return
        self._network = network
        self._reachability = network.reachability()
        network.reachabilityChanged.connect(self._on_network_reachability_changed)

    def _on_timer_timeout(self) -> None:
        self.check_clocks()

    def _on_network_reachability_changed(self, reachability: QNetworkInformation.Reachability) -> None:
        self.note_reachability(reachability)


def network_plugins_present(plugins: str | None = None) -> bool:
    """Whether Qt has any network-information plugin (``<plugins>/networkinformation``)."""
    folder = os.path.join(
        plugins or QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath), "networkinformation"
    )
    try:
        with os.scandir(folder) as entries:
            return any(entry.is_file() for entry in entries)
    except OSError:
        return False
