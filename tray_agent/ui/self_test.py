"""``tray-agent --self-test``: check the bundled icons, sounds and translations and the tray; print a report.

Also what ``tray-agent doctor`` runs in a child process to see the real desktop (its tray check
parses the report below). Uses importlib.resources only, so it works the same in a PyInstaller build.
"""

from __future__ import annotations

import importlib.resources
import io
import wave

from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from tray_agent.core.i18n import PoError, catalog_path, parse_po
from tray_agent.ui.icon_render import svg_renderer
from tray_agent.ui.tray import IconState, icon_svg, render_icon, render_icon_image

SOUND_FILES = ("message.wav", "escalation.wav")
SHIPPED_TRANSLATIONS = ("id",)  # catalogs the self-test requires (English is the source)


def self_test(app: QApplication) -> int:
    """Check the bundled resources and the tray; print a report; 0 when nothing is missing.

    Uses importlib.resources only, so it works the same in a PyInstaller build.
    """
    problems: list[str] = []
    lines: list[str] = []
    for state in (*IconState, "agent"):  # every tray state, and the app icon
        try:
            svg = icon_svg(state)
        except (OSError, ValueError) as exc:
            problems.append(f"icon {state}: missing ({exc})")
            continue
        renderer = svg_renderer(svg)
        image = render_icon_image(svg, 32)
        opaque = any(image.pixelColor(x, y).alpha() > 0 for x in range(0, 32, 2) for y in range(0, 32, 2))
        if not renderer.isValid() or not opaque:
            problems.append(f"icon {state}: does not render")
        else:
            lines.append(f"icon {state}: ok")
    sounds = importlib.resources.files("tray_agent.resources").joinpath("sounds")
    for name in SOUND_FILES:
        try:
            data = sounds.joinpath(name).read_bytes()
            with wave.open(io.BytesIO(data)) as wav:
                frames, rate = wav.getnframes(), wav.getframerate()
            if frames <= 0:
                raise wave.Error("no audio frames")
        except (OSError, wave.Error, EOFError) as exc:
            problems.append(f"sound {name}: {exc}")
        else:
            lines.append(f"sound {name}: ok ({frames / rate:.2f} s)")
    for lang in SHIPPED_TRANSLATIONS:
        try:
            entries = [e for e in parse_po(catalog_path(lang).read_text(encoding="utf-8")) if e.msgid]
        except (OSError, PoError) as exc:
            problems.append(f"translation {lang}: {exc}")
        else:
            lines.append(f"translation {lang}: ok ({len(entries)} strings)")
    if QSystemTrayIcon.isSystemTrayAvailable():
        tray = QSystemTrayIcon(render_icon("connected"))
        tray.show()
        app.processEvents()
        lines.append("tray: available, icon shown")
        tray.hide()
    else:
        lines.append("tray: not available on this desktop (the app shows a status window)")
    lines.append(f"qt platform: {app.platformName()}")
    print("tray-agent self-test")
    for line in lines + [f"MISSING {p}" for p in problems]:
        print("  " + line)
    print("result: " + ("FAILED" if problems else "ok"), flush=True)
    return 1 if problems else 0
