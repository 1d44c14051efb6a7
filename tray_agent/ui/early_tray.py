"""The first tray icon, shown before the settings, the store, the network or the windows exist.

Imports only what that needs (QtWidgets, ``ui.icon_render``, ``core.i18n``, ``ui.language``):
``tests/desktop/test_startup.py`` checks ``sys.modules`` the moment :meth:`EarlyTray.show` runs.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable

from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon

from tray_agent.core.i18n import _
from tray_agent.ui.icon_render import render_svg_icon

EARLY_ICON_STATE = "connecting"
"""What the first icon shows: the app is starting and will connect."""
EARLY_ICON_SIZES = (16, 22, 24, 32, 48, 64)
"""Pixmap sizes of the first icon (as ``ui.tray.ICON_SIZES``, which is not imported yet)."""


class EarlyTray:
    """The tray icon shown first, before the settings, the store, the network or the windows exist.

    It shows the "connecting" icon, a tooltip and a menu with Quit, in the OS language (the
    ``ui.language`` setting is applied a moment later, with the settings). TrayApp's tray
    controller then adopts the same QSystemTrayIcon (the desktop keeps the item it registered)
    and puts the full menu in place of this one.

    Args:
        app: the running application (the icon's Qt parent until it is adopted).
        quit_requested: called when Quit is chosen.
    """

    def __init__(self, app: QApplication, quit_requested: Callable[[], None]) -> None:
        svg = (
            importlib.resources.files("tray_agent.resources")
            .joinpath("icons", f"tray-{EARLY_ICON_STATE}.svg")
            .read_bytes()
        )
        self._quit_requested = quit_requested
        self.menu: QMenu | None = None
        self.icon = QSystemTrayIcon(render_svg_icon(svg, EARLY_ICON_SIZES), app)
        self.icon.setToolTip("\n".join((_("tray_agent"), _("Connecting…"))))

    def show(self) -> None:
        """Show the icon, then give it its menu.

        The menu comes right after the icon: it is the process's first widget, which costs Qt
        its style, and the desktop can ask for the menu only once the event loop runs anyway.
        """
        self.icon.show()
        self.menu = QMenu()
        quit_action = self.menu.addAction(_("Quit"))
        quit_action.setObjectName("quit")
        quit_action.triggered.connect(self._on_quit_action_triggered)
        self.icon.setContextMenu(self.menu)

    def _on_quit_action_triggered(self) -> None:
        self._quit_requested()

    def handed_over(self) -> None:
        """The tray controller owns the icon now, with its own menu: drop the first menu."""
        if self.menu is not None:
            self.menu.deleteLater()
            self.menu = None

    def close(self) -> None:
        """Hide the icon (quit before the app was up)."""
        self.icon.hide()
        self.handed_over()


def show_early_tray(app: QApplication, quit_requested: Callable[[], None]) -> EarlyTray | None:
    """Show the first tray icon at once; None on a desktop without a tray.

    Without a tray there is nothing to show early: the tray controller shows its status window
    once it is built. The menu's language is the OS's (see :class:`EarlyTray`).
    """
    from tray_agent.core import i18n
    from tray_agent.ui.language import system_languages

    if not QSystemTrayIcon.isSystemTrayAvailable():
        return None
    i18n.set_language(i18n.resolve_language("system", system_languages()))
    early = EarlyTray(app, quit_requested)
    early.show()
    return early
