"""The one SVG icon renderer: the tray's icons, the first icon shown at start-up, the self-test.

Imports QtCore, QtGui and QtSvg only, and not the ``Qt`` namespace at module level (its first
import alone costs PySide6 about 15 ms): the first tray icon (``ui/early_tray.py``) is drawn
with it before anything else is loaded (``tests/desktop/test_startup.py`` holds the budget).
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QRectF
from PySide6.QtGui import QColor, QFont, QIcon, QImage, QPaintDevice, QPainter, QPen, QPixmap
from PySide6.QtSvg import QSvgRenderer

BADGE_FILL = "#c62828"
BADGE_INK = "#ffffff"


def svg_renderer(svg: bytes) -> QSvgRenderer:
    """A renderer of the SVG document ``svg`` (``isValid()`` is False for a broken one)."""
    return QSvgRenderer(QByteArray(svg))


def paint_svg(
    device: QPaintDevice,
    renderer: QSvgRenderer,
    size: int,
    badge: str = "",
    overlay: QSvgRenderer | None = None,
) -> None:
    """Paint the SVG at ``size`` px onto ``device`` (already cleared), with an optional badge.

    The badge sits in the top-right corner, clear of the bottom-right state emblem the icons carry.
    ``overlay`` (an SVG of the same view box: the tray's SLA warning mark) is painted over the
    icon, under the badge.
    """
    painter = QPainter(device)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    if overlay is not None:
        overlay.render(painter, QRectF(0, 0, size, size))
    if badge:
        from PySide6.QtCore import Qt  # only a badge needs the Qt namespace (see the module doc)

        # At most two characters ("9+", ui/tray.badge_text): a pill about half the icon high,
        # bold digits filling most of it, a white rim to part it from any panel colour.
        height = max(9.0, size * 0.55)
        width = min(float(size), height * (0.55 + 0.45 * len(badge)))
        rect = QRectF(size - width, 0, width, height)
        painter.setPen(QPen(QColor(BADGE_INK), max(1.0, size / 24)))
        painter.setBrush(QColor(BADGE_FILL))
        painter.drawRoundedRect(rect, height / 2, height / 2)
        font = QFont()
        font.setBold(True)
        font.setPixelSize(max(7, round(height * 0.78)))
        painter.setFont(font)
        painter.setPen(QColor(BADGE_INK))
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, badge)
    painter.end()


def render_svg_image(svg: bytes, size: int, badge: str = "", overlay: bytes = b"") -> QImage:
    """The SVG as a transparent ``size`` px QImage (works without a running QGuiApplication)."""
    from PySide6.QtCore import Qt

    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    paint_svg(image, svg_renderer(svg), size, badge, svg_renderer(overlay) if overlay else None)
    return image


def render_svg_icon(svg: bytes, sizes: tuple[int, ...], badge: str = "", overlay: bytes = b"") -> QIcon:
    """A QIcon of the SVG with a pixmap at each of ``sizes``, the badge (and overlay) painted in."""
    renderer = svg_renderer(svg)
    over = svg_renderer(overlay) if overlay else None
    icon = QIcon()
    for size in sizes:
        # A QPixmap, not a QImage: resolving QImage.fill's overloads builds the Qt namespace.
        pixmap = QPixmap(size, size)
        pixmap.fill(QColor(0, 0, 0, 0))
        paint_svg(pixmap, renderer, size, badge, over)
        icon.addPixmap(pixmap)
    return icon
