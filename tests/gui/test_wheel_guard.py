"""No wheel edits on unfocused fields anywhere in the app (issue 14: Heartbeat 25 -> 18)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QComboBox, QSlider, QSpinBox, QVBoxLayout, QWidget

from tray_agent.core.settings import Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.ui.settings_dialog import SettingsDialog
from tray_agent.ui.theme import ThemeController
from tray_agent.ui.wheel_guard import WheelGuard, install_wheel_guard

pytestmark = pytest.mark.gui


def wheel(widget: QWidget, steps: int = -3) -> None:
    """Scroll the wheel over the middle of ``widget`` (negative: towards the agent)."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(
        centre,
        QPointF(widget.mapToGlobal(widget.rect().center())),
        QPoint(0, 0),
        QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


@pytest.fixture
def guarded(qapp):
    theme = ThemeController(qapp, "system")  # the app's wiring: the theme installs the guard
    yield qapp
    theme.deleteLater()


def test_wheel_over_unfocused_settings_fields_changes_nothing(qtbot, guarded):
    dialog = SettingsDialog(LoadedSettings(settings=Settings()))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    # Every value field of every page, including the advanced ones.
    editors = [
        editor
        for key in ("connection.heartbeat_interval", "alerts.sla_minutes", "ui.theme", "alerts.volume")
        if (editor := dialog.editor(key)) is not None
    ]
    before = [dialog.edited_settings()]
    for editor in editors:
        editor.clearFocus()
        wheel(editor)
        wheel(editor, steps=3)
        wheel(editor, steps=-5)
    assert dialog.edited_settings() == before[0]


def test_wheel_guard_covers_spin_boxes_combos_and_sliders_but_not_focused_ones(qtbot, guarded):
    window = QWidget()
    qtbot.addWidget(window)
    layout = QVBoxLayout(window)
    spin, combo, slider = QSpinBox(window), QComboBox(window), QSlider(Qt.Orientation.Horizontal, window)
    spin.setValue(25)
    combo.addItems(["a", "b", "c"])
    combo.setCurrentIndex(1)
    slider.setRange(0, 100)
    slider.setValue(50)
    for widget in (spin, combo, slider):
        layout.addWidget(widget)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    for widget in (spin, combo, slider):
        wheel(widget)
    assert (spin.value(), combo.currentIndex(), slider.value()) == (25, 1, 50)
    assert not spin.hasFocus()  # the wheel did not take the focus either
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    wheel(spin, steps=-2)
    assert spin.value() == 23  # a field the agent chose still takes the wheel


def test_wheel_guard_is_installed_once(qapp):
    guard = install_wheel_guard(qapp)
    assert isinstance(guard, WheelGuard)
    assert install_wheel_guard(qapp) is guard
    assert len(qapp.findChildren(WheelGuard)) == 1
