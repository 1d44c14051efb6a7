"""Root test configuration: Qt runs offscreen unless a desktop test starts its own session."""

from __future__ import annotations

import os

# GUI tests run on the offscreen platform; desktop tests run the app in subprocesses with the
# headless session's DISPLAY (see tests/desktop/conftest.py). Set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
