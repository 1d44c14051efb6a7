"""The desktop tests' two hooks into a running app, switched on by the environment (documented, tiny).

* ``TRAY_AGENT_TEST_SHOW_MENU=1``: once started, show the status window and pop the tray menu
  up next to it (kept up to date while open), so that a screenshot shows the icon, the badge
  and the menu. Used by ``tests/desktop/test_alerting.py``.
* ``TRAY_AGENT_TEST_LOG_COUNTS=1``: after every flush of the store to the windows, log one
  line ``Counts: waiting=<n> mine=<n> badge=<text> tabs=<title>|<title>|<title>`` (the tray
  badge and the inbox's tab titles as shown), read-only. Used by
  ``tests/desktop/test_workflow.py`` to check that they agree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tray_agent.core.state import State
    from tray_agent.ui.bridge import StoreBridge
    from tray_agent.ui.tray import TrayController
    from tray_agent.ui.windows import WindowManager

logger = logging.getLogger(__name__)

TEST_SHOW_MENU_ENV = "TRAY_AGENT_TEST_SHOW_MENU"
TEST_LOG_COUNTS_ENV = "TRAY_AGENT_TEST_LOG_COUNTS"


def install_test_hooks(
    env: Mapping[str, str],
    tray: TrayController,
    bridge: StoreBridge,
    windows: Callable[[], WindowManager | None],
) -> None:
    """Switch on the hooks ``env`` asks for (see the module docstring); nothing otherwise."""
    if env.get(TEST_SHOW_MENU_ENV) == "1":
        show_menu(tray)
    if env.get(TEST_LOG_COUNTS_ENV) == "1":
        bridge.flushed.connect(counts_logger(tray, windows))


def show_menu(tray: TrayController) -> None:
    """Test hook: status window plus the open menu, for screenshots (see the module docstring)."""
    from PySide6.QtCore import QTimer

    window = tray.show_status_window()
    window.move(0, 0)
    # The popup needs the window mapped first (no window manager under Xvfb to tell us).
    QTimer.singleShot(300, tray.popup_menu)
    logger.info("Test hook: menu shown")


def counts_logger(
    tray: TrayController, windows: Callable[[], WindowManager | None]
) -> Callable[[State], None]:
    """Test hook: a slot logging what the tray and the inbox show after a flush (see the module docstring).

    A function, not a bound method: a signal holds a plain object's bound method weakly, and
    nothing else would keep that object alive.
    """

    def log(state: State) -> None:
        current = windows()
        inbox = current.inbox if current is not None else None
        tabs = "|".join(inbox.tab_titles) if inbox is not None else ""
        logger.info(
            "Counts: waiting=%d mine=%d badge=%s tabs=%s",
            state.waiting_count, len(state.mine()), tray.badge or "-", tabs,
        )  # fmt: skip

    return log
