"""gui.py without a display: a plain message and exit 1 before Qt would abort the process (exit 134)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tray_agent.gui import display_missing

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("env", "platform", "missing"),
    [
        ({}, "linux", True),
        ({"DISPLAY": ":0"}, "linux", False),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", False),
        ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),
        ({"QT_QPA_PLATFORM": "vnc:size=800x600"}, "linux", False),
        ({"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0"}, "linux", True),
        ({"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"}, "linux", False),
        ({"DISPLAY": ""}, "freebsd14", True),
        ({}, "win32", False),
        ({}, "darwin", False),
    ],
)
def test_display_missing_reads_the_environment_like_qt(
    env: dict[str, str], platform: str, missing: bool
) -> None:
    assert display_missing(env, platform) is missing


def headless_env(language: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    return {**env, "PYTHONPATH": str(REPO), "LANGUAGE": language, "LC_ALL": "C.UTF-8"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland only")
@pytest.mark.parametrize(
    ("argv", "language", "expected"),
    [
        (["--demo"], "en", "tray-agent: no display: set DISPLAY or run `tray-agent listen --demo`"),
        (["--self-test"], "en", "tray-agent: no display: set DISPLAY or run `tray-agent listen --demo`"),
        (
            ["--demo"],
            "id",
            "tray-agent: tidak ada layar: atur DISPLAY atau jalankan `tray-agent listen --demo`",
        ),
    ],
)
def test_the_tray_app_without_a_display_says_so_and_exits_1(
    argv: list[str], language: str, expected: str, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tray_agent", *argv, "--basedir", str(tmp_path / "base")],
        env=headless_env(language),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stderr.strip(), proc.stdout) == (1, expected, "")
