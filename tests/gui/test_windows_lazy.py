"""The window manager loads the inbox, chat and settings modules only when one is first opened."""

from __future__ import annotations

import os
import subprocess
import sys

WINDOW_MODULES = ("chat_window", "customer_service", "settings_dialog")

PROBE = """
import sys
from PySide6.QtWidgets import QApplication
from tray_agent.core.settings import Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.core.state import Store
from tray_agent.ui.windows import WindowManager

class Sink:
    def submit(self, command):
        return None

class Drafts:
    def draft(self, conversation):
        return ""
    def set_draft(self, conversation, text):
        pass
    def drafts(self):
        return {}

app = QApplication([])
loaded_settings = LoadedSettings(settings=Settings())
windows = WindowManager(Store(), Sink(), loaded_settings, "dashboard", draft_store=Drafts())
loaded = lambda: [m for m in %r if "tray_agent.ui." + m in sys.modules]
print(loaded())
windows.show_inbox()
print(loaded())
"""


def test_tray_only_start_loads_no_window_module() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    code = PROBE % (WINDOW_MODULES,)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    before, after = out.stdout.strip().splitlines()[-2:]
    assert before == "[]"
    assert "customer_service" in after
