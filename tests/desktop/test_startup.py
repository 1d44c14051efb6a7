"""Start-up in a real desktop: the tray icon is up before the heavy parts are imported, then adopted.

The app runs as a subprocess (``python -m tray_agent --demo``, xcb, the session's D-Bus with its
StatusNotifierWatcher). A small wrapper prints ``sys.modules`` the moment the first icon is shown
(``tray_agent.ui.early_tray.EarlyTray.show``); the tray menu is read over D-Bus (``com.canonical.dbusmenu``).
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest

from tests.desktop.session import REPO, DesktopSession, wait_until

START_TIMEOUT = 30.0

WRAPPER = """
import json, sys
import tray_agent.ui.early_tray as early

shown = early.EarlyTray.show

def show(self):
    shown(self)
    print(json.dumps(sorted(sys.modules)), flush=True)

early.EarlyTray.show = show
from tray_agent.cli import main
sys.exit(main(sys.argv[1:]))
"""

# Everything the first icon must not wait for (PERFORMANCE-NOTES, design choice 11).
LOADED_AFTER_THE_ICON = (
    "asyncio",
    "qasync",
    "pydantic",
    "websockets",
    "aiohttp",
    "desktop_notifier",
    "dbus_fast",
    "keyring",
    "sqlite3",
    "logging.handlers",
    "tray_agent.core.settings",
    "tray_agent.core.settings_layers",
    "tray_agent.core.state",
    "tray_agent.core.policy",
    "tray_agent.core.protocol",
    "tray_agent.net",
    "tray_agent.demo",
    "tray_agent.demo_launch",
    "tray_agent.platform.storage",
    "tray_agent.platform.secrets",
    "tray_agent.platform.notifier",
    "tray_agent.ui.tray",
    "tray_agent.ui.bridge",
    "tray_agent.ui.windows",
)


def read_line(stream: IO[str], timeout: float) -> str:
    """One line from a child's pipe, or a test failure after ``timeout`` s (never a hang)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no line from the app within {timeout:.0f} s (was the first icon shown?)")


def dbus(desktop: DesktopSession, dest: str, *args: str) -> str:
    out = subprocess.run(
        ["dbus-send", "--session", "--print-reply", f"--dest={dest}", *args],
        env=desktop.env, capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return out.stdout


def menu_labels(desktop: DesktopSession, item: str) -> list[str]:
    layout = dbus(
        desktop, item, "/MenuBar", "com.canonical.dbusmenu.GetLayout",
        "int32:0", "int32:-1", "array:string:label",
    )  # fmt: skip
    return re.findall(r'string "label"\s+variant\s+string "([^"]*)"', layout)


def test_tray_icon_shows_before_the_heavy_modules_and_is_adopted_by_the_app(
    desktop: DesktopSession, tmp_path: Path
) -> None:
    basedir = tmp_path / "base"
    before = set(desktop.sni_items())
    proc = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, "--demo", "--basedir", str(basedir)],
        env={**desktop.env, "PYTHONPATH": str(REPO), "LANGUAGE": "en"},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        modules = set(json.loads(read_line(proc.stdout, START_TIMEOUT)))
        assert "PySide6.QtWidgets" in modules
        assert [name for name in LOADED_AFTER_THE_ICON if name in modules] == []

        items = wait_until(lambda: set(desktop.sni_items()) - before, START_TIMEOUT, "the app's SNI item")
        assert len(items) == 1
        (item,) = items
        log = basedir / "log" / "tray-agent.log"
        wait_until(
            lambda: "Connection: connected" in log.read_text(encoding="utf-8") if log.exists() else False,
            START_TIMEOUT,
            "the app connected to its demo backend",
        )
        # The same item all along, now with the full menu in place of the first one (Quit only).
        assert set(desktop.sni_items()) - before == {item}
        labels = menu_labels(desktop, item)
        assert "Mute sounds" in labels
        assert labels[-1] == "Quit"
    finally:
        proc.terminate()
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
    assert code == 0
