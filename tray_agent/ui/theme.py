"""Light, dark and high contrast: follows the OS colour scheme live, or the ``ui.theme`` setting.

* ``"system"``: Qt's style hints say the OS scheme (``QStyleHints.colorScheme``); the platform
  supplies the palette and :class:`ThemeController` follows ``colorSchemeChanged`` live (tray
  icon variant, widgets repaint from the palette).
* ``"light"`` / ``"dark"``: the scheme is requested from Qt (``setColorScheme``, honoured by the
  Windows, macOS and Fusion styles) and an explicit palette is set as well, so the choice holds on
  platforms whose theme ignores the request.
* High contrast (``QStyleHints.accessibility().contrastPreference()``, Qt 6.10+): the platform's
  palette is kept as is and the tray icon becomes a two-colour variant whose states differ by
  the emblem's shape only (dot, ring, cross, key, moon, triangle); the colour icons carry the same
  shapes, colour only repeats them.
"""

from __future__ import annotations

import enum
import logging
import re
from typing import Final

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette

from tray_agent.ui.wheel_guard import install_wheel_guard

logger = logging.getLogger(__name__)

THEMES: Final = ("system", "light", "dark")


class IconStyle(enum.StrEnum):
    """Tray icon variants: colour (legible on light and dark panels), or two-colour high contrast."""

    COLOR = "color"
    CONTRAST_ON_LIGHT = "contrast-light"  # black shapes for a light panel
    CONTRAST_ON_DARK = "contrast-dark"  # white shapes for a dark panel


_LIGHT: Final = {
    QPalette.ColorRole.Window: "#f3f3f3",
    QPalette.ColorRole.WindowText: "#1b1b1b",
    QPalette.ColorRole.Base: "#ffffff",
    QPalette.ColorRole.AlternateBase: "#eef2f6",
    QPalette.ColorRole.Text: "#1b1b1b",
    QPalette.ColorRole.Button: "#e6e6e6",
    QPalette.ColorRole.ButtonText: "#1b1b1b",
    QPalette.ColorRole.BrightText: "#ffffff",
    QPalette.ColorRole.Highlight: "#2f6fd6",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#1a5fc4",
    QPalette.ColorRole.LinkVisited: "#6b3fa0",
    QPalette.ColorRole.ToolTipBase: "#ffffff",
    QPalette.ColorRole.ToolTipText: "#1b1b1b",
    QPalette.ColorRole.PlaceholderText: "#6b6b6b",
    QPalette.ColorRole.Light: "#ffffff",
    QPalette.ColorRole.Midlight: "#eaeaea",
    QPalette.ColorRole.Mid: "#b8b8b8",
    QPalette.ColorRole.Dark: "#8a8a8a",
    QPalette.ColorRole.Shadow: "#5a5a5a",
}
_DARK: Final = {
    QPalette.ColorRole.Window: "#202124",
    QPalette.ColorRole.WindowText: "#e8eaed",
    QPalette.ColorRole.Base: "#17181a",
    QPalette.ColorRole.AlternateBase: "#25272b",
    QPalette.ColorRole.Text: "#e8eaed",
    QPalette.ColorRole.Button: "#303134",
    QPalette.ColorRole.ButtonText: "#e8eaed",
    QPalette.ColorRole.BrightText: "#ffffff",
    QPalette.ColorRole.Highlight: "#8ab4f8",
    QPalette.ColorRole.HighlightedText: "#202124",
    QPalette.ColorRole.Link: "#8ab4f8",
    QPalette.ColorRole.LinkVisited: "#c58af9",
    QPalette.ColorRole.ToolTipBase: "#303134",
    QPalette.ColorRole.ToolTipText: "#e8eaed",
    QPalette.ColorRole.PlaceholderText: "#9aa0a6",
    QPalette.ColorRole.Light: "#4a4b4f",
    QPalette.ColorRole.Midlight: "#3c3d41",
    QPalette.ColorRole.Mid: "#2a2b2e",
    QPalette.ColorRole.Dark: "#141517",
    QPalette.ColorRole.Shadow: "#000000",
}
# Disabled text must stay readable (WCAG-ish 3:1 on the window colour), not vanish.
_DISABLED: Final = {"light": "#7a7a7a", "dark": "#8d9196"}


def palette_for(scheme: str) -> QPalette:
    """The app's explicit palette for ``"light"`` or ``"dark"``."""
    colors = _DARK if scheme == "dark" else _LIGHT
    palette = QPalette()
    for role, color in colors.items():
        palette.setColor(role, QColor(color))
    disabled = QColor(_DISABLED["dark" if scheme == "dark" else "light"])
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
        QPalette.ColorRole.PlaceholderText,
    ):
        palette.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return palette


def is_dark(palette: QPalette) -> bool:
    """True when the palette's window colour is dark."""
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


_HEX = re.compile(r"#[0-9a-fA-F]{6}\b")
_HALO = "#ffffff"


def contrast_svg(svg: bytes, style: IconStyle) -> bytes:
    """A two-colour version of a tray icon SVG for high contrast.

    The light halo becomes the panel colour and every other colour the foreground, so each
    state is told apart only by its emblem's silhouette (which the halo ring cuts out).
    """
    if style is IconStyle.COLOR:
        return svg
    fg, bg = ("#000000", "#ffffff") if style is IconStyle.CONTRAST_ON_LIGHT else ("#ffffff", "#000000")
    text = svg.decode("utf-8")
    text = _HEX.sub(lambda m: bg if m.group(0).lower() == _HALO else fg, text)
    text = text.replace('stroke-opacity="0.9"', 'stroke-opacity="1"').replace(
        'fill-opacity="0.9"', 'fill-opacity="1"'
    )
    return text.encode("utf-8")


class ThemeController(QObject):
    """Applies ``ui.theme`` and follows the OS colour scheme and contrast preference live.

    It also installs the app-wide :class:`~tray_agent.ui.wheel_guard.WheelGuard` (no wheel
    edits on unfocused fields).

    Args:
        app: the application.
        setting: ``"system"``, ``"light"`` or ``"dark"``.
        parent: the Qt parent.

    Signals:
        scheme_changed(str): the effective scheme became ``"light"`` or ``"dark"``.
        icon_style_changed(str): the tray icon variant to use (an :class:`IconStyle` value).
    """

    scheme_changed = Signal(str)
    icon_style_changed = Signal(str)

    def __init__(self, app: QGuiApplication, setting: str = "system", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._app = app
        self._setting = "system"
        self._scheme = ""
        self._icon_style = IconStyle.COLOR
        # WORKAROUND(PySide6 6.11): the QAccessibilityHints wrapper is invalidated when the
        # QStyleHints wrapper it came from is garbage-collected; keep both for our lifetime.
        self._hints = hints = app.styleHints()
        hints.colorSchemeChanged.connect(self._on_hints_color_scheme_changed)
        self._accessibility = hints.accessibility()
        self._accessibility.contrastPreferenceChanged.connect(self._on_contrast_preference_changed)
        install_wheel_guard(app)  # app-wide input behaviour goes with the look (ui/wheel_guard.py)
        self.set_setting(setting)

    @property
    def setting(self) -> str:
        """The ``ui.theme`` value applied."""
        return self._setting

    @property
    def scheme(self) -> str:
        """The effective scheme, ``"light"`` or ``"dark"``."""
        return self._scheme

    @property
    def high_contrast(self) -> bool:
        """True when the OS asks for high contrast."""
        return self._accessibility.contrastPreference() == Qt.ContrastPreference.HighContrast

    @property
    def icon_style(self) -> IconStyle:
        """The tray icon variant for the current scheme and contrast."""
        return self._icon_style

    def set_setting(self, setting: str) -> None:
        """Apply ``ui.theme`` (unknown values count as ``"system"``)."""
        self._setting = setting if setting in THEMES else "system"
        hints = self._hints
        if self._setting == "system":
            hints.unsetColorScheme()
            self._app.setPalette(QPalette())  # an empty palette: back to the platform's
        else:
            scheme = Qt.ColorScheme.Dark if self._setting == "dark" else Qt.ColorScheme.Light
            hints.setColorScheme(scheme)
            self._app.setPalette(palette_for(self._setting))
        self._update()

    def _on_hints_color_scheme_changed(self, scheme: Qt.ColorScheme) -> None:
        if self._setting == "system":
            logger.info("The OS colour scheme changed: %s", scheme.name)
        self._update()

    def _on_contrast_preference_changed(self, preference: Qt.ContrastPreference) -> None:
        logger.info("The OS contrast preference changed: %s", preference.name)
        self._update()

    def _effective_scheme(self) -> str:
        if self._setting in ("light", "dark"):
            return self._setting
        scheme = self._hints.colorScheme()
        if scheme == Qt.ColorScheme.Dark:
            return "dark"
        if scheme == Qt.ColorScheme.Light:
            return "light"
        return "dark" if is_dark(self._app.palette()) else "light"

    def _update(self) -> None:
        scheme = self._effective_scheme()
        if scheme != self._scheme:
            self._scheme = scheme
            self.scheme_changed.emit(scheme)
        style = IconStyle.COLOR
        if self.high_contrast:
            style = IconStyle.CONTRAST_ON_DARK if scheme == "dark" else IconStyle.CONTRAST_ON_LIGHT
        if style is not self._icon_style:
            self._icon_style = style
            self.icon_style_changed.emit(str(style))
