"""The idle app does not load the standard modules that only a rare path needs (each ~0.7 MB of RSS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# html (tooltips), plistlib + pyexpat (macOS autostart), tomllib (a TOML machine policy).
RARE_PATH_MODULES = ("html", "plistlib", "tomllib")

PROBE = """
import json, sys
from PySide6.QtWidgets import QApplication
import tray_agent.app, tray_agent.gui
import tray_agent.ui.windows, tray_agent.ui.tray, tray_agent.ui.models
import tray_agent.platform.autostart, tray_agent.core.settings_layers
import tray_agent.session.wiring, tray_agent.net.client
from tray_agent.core.settings_layers import load_settings

app = QApplication([])
load_settings(user_file=None, env={})
print(json.dumps(sorted(sys.modules)))
"""


def test_start_path_loads_no_rare_path_module() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "tray_agent.ui.models" in loaded
    assert [m for m in RARE_PATH_MODULES if m in loaded] == []


def test_plain_tooltip_escapes_as_html_escape() -> None:
    from tray_agent.ui.models import plain_tooltip

    assert plain_tooltip("<b>&\"'\nx") == "<qt>&lt;b&gt;&amp;&quot;&#x27;<br>x</qt>"
