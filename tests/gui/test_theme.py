"""Theme: forced light/dark palettes, following the OS scheme live, high-contrast tray icons,
and light/dark screenshots of the inbox and a chat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QApplication

from tests.gui.fakes import make_env, page, summary
from tests.gui.test_customer_service import ARTIFACTS
from tray_agent.core.events import AgentRef
from tray_agent.ui.theme import IconStyle, ThemeController, contrast_svg, is_dark, palette_for
from tray_agent.ui.tray import IconState, icon_svg, render_icon_image

pytestmark = pytest.mark.gui


@pytest.fixture
def theme(qapp):
    controller = ThemeController(qapp, "system")
    yield controller
    controller.set_setting("system")
    controller.deleteLater()


def test_theme_forced_dark_and_light_set_the_palette(theme, qapp):
    schemes = []
    theme.scheme_changed.connect(schemes.append)
    theme.set_setting("dark")
    assert theme.scheme == "dark"
    assert is_dark(qapp.palette())
    theme.set_setting("light")
    assert theme.scheme == "light"
    assert not is_dark(qapp.palette())
    assert schemes[-2:] == ["dark", "light"]
    theme.set_setting("bogus")
    assert theme.setting == "system"


def test_theme_follows_the_os_scheme_live(theme, qapp):
    # Offscreen Qt has no OS scheme: the test emits the style hints' colorSchemeChanged itself.
    theme.set_setting("system")
    before = theme.scheme
    qapp.setPalette(palette_for("dark"))  # what the platform theme does on a switch
    qapp.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert theme.scheme == "dark"
    qapp.setPalette(palette_for("light"))
    qapp.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert theme.scheme == "light"
    assert before in ("light", "dark")


def test_theme_palettes_keep_text_readable():
    for scheme in ("light", "dark"):
        palette = palette_for(scheme)
        for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Disabled):
            text = palette.color(group, QPalette.ColorRole.WindowText)
            window = palette.color(QPalette.ColorRole.Window)
            assert contrast(text, window) >= (4.5 if group == QPalette.ColorGroup.Active else 3.0), scheme


def contrast(a: QColor, b: QColor) -> float:
    def lum(c: QColor) -> float:
        def ch(v: float) -> float:
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        return 0.2126 * ch(c.redF()) + 0.7152 * ch(c.greenF()) + 0.0722 * ch(c.blueF())

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def silhouette(image: QImage, ink: QColor) -> frozenset[tuple[int, int]]:
    return frozenset(
        (x, y)
        for y in range(image.height())
        for x in range(image.width())
        if image.pixelColor(x, y).alpha() > 128 and contrast(image.pixelColor(x, y), ink) < 1.5
    )


@pytest.mark.parametrize("style", [IconStyle.CONTRAST_ON_LIGHT, IconStyle.CONTRAST_ON_DARK])
def test_theme_high_contrast_icons_differ_by_shape_alone(qapp, style):
    ink = QColor("#000000" if style is IconStyle.CONTRAST_ON_LIGHT else "#ffffff")
    shapes = {}
    for state in IconState:
        svg = icon_svg(state, style)
        colors = {c.lower() for c in __import__("re").findall(r"#[0-9a-fA-F]{6}", svg.decode())}
        assert colors <= {"#000000", "#ffffff"}, state  # two colours: no state told by colour
        shapes[state] = silhouette(render_icon_image(svg, 48), ink)
    assert len(set(shapes.values())) == len(IconState)  # every state has its own silhouette


def test_theme_icon_style_follows_contrast_preference(theme, qapp):
    assert theme.icon_style is IconStyle.COLOR or theme.high_contrast
    assert contrast_svg(b"<svg fill='#123456'/>", IconStyle.COLOR) == b"<svg fill='#123456'/>"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_theme_screenshots(theme, scheme, qtbot, tmp_path):
    theme.set_setting(scheme)
    env = make_env()
    env.feed(
        page(
            summary("p/a", "Alice", since=timedelta(minutes=-12), last="Where is my order?"),
            summary("p/b", "Budi", since=timedelta(minutes=-90), last="Hello?"),
            summary("p/c", "Carol", assigned=True, agent=AgentRef("me-1"), to_me=True),
        )
    )
    windows = env.window_manager(tmp_path / "w.json")
    try:
        inbox = windows.show_inbox()
        inbox.resize(900, 340)
        inbox.select_conversation("p/a")
        chat = windows.open_chat("p/a")
        chat.resize(440, 520)
        QApplication.processEvents()
        assert is_dark(inbox.palette()) == (scheme == "dark")
        ARTIFACTS.mkdir(exist_ok=True)
        assert inbox.grab().save(str(ARTIFACTS / f"theme-inbox-{scheme}.png"))
        assert chat.grab().save(str(ARTIFACTS / f"theme-chat-{scheme}.png"))
    finally:
        windows.close_all()
        env.close()
