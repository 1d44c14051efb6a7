"""No wheel edits on unfocused fields: scrolling over a form scrolls it, never changes a value.

Spin boxes, combo boxes and sliders take the mouse wheel by default even when the agent never
clicked them, so scrolling through the settings changed "Heartbeat" from 25 to 18 unnoticed.
One filter on the application sends such wheel events to the widget's parent instead (the
scroll area scrolls); a field the agent focused (click or Tab) still takes the wheel.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject
from PySide6.QtWidgets import QAbstractSlider, QAbstractSpinBox, QComboBox, QScrollBar, QWidget

_GUARDED = (QAbstractSpinBox, QComboBox, QAbstractSlider)


class WheelGuard(QObject):
    """Application event filter: wheel events over an unfocused value field go to its parent."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: D102, N802
        if event.type() != QEvent.Type.Wheel:  # the cheap test first: this sees every event
            return False
        if not isinstance(watched, _GUARDED) or isinstance(watched, QScrollBar):
            return False
        assert isinstance(watched, QWidget)
        if watched.hasFocus():
            return False
        # Not delivered to the field; ignored, so Qt propagates it to the parent (which scrolls).
        event.ignore()
        return True


def install_wheel_guard(app: QCoreApplication | None = None) -> WheelGuard | None:
    """Install the guard on the application once (later calls return the same guard)."""
    app = app or QCoreApplication.instance()
    if app is None:
        return None
    guard = app.findChild(WheelGuard)
    if guard is None:
        guard = WheelGuard(app)
        app.installEventFilter(guard)
    return guard
