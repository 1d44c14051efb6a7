"""tools/bootstrap ends with the command to run next (run with stubs: no apt, no pip, no network)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Debian/Ubuntu script")


def executable(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of tools/ with a stub venv python and a dpkg-query that finds every package installed."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "tools", root / "tools")
    (root / ".venv" / "bin").mkdir(parents=True)
    executable(root / ".venv" / "bin" / "python", "#!/bin/sh\nexit 0\n")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    executable(stubs / "dpkg-query", "#!/bin/sh\necho 'install ok installed'\n")
    return root


@pytest.mark.parametrize(
    ("argv", "next_command"),
    [([], ".venv/bin/tray-agent --demo"), (["--test"], "./tools/check")],
)
def test_bootstrap_ends_with_the_command_to_run_next(
    checkout: Path, argv: list[str], next_command: str
) -> None:
    env = {**os.environ, "PATH": f"{checkout.parent / 'stubs'}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", str(checkout / "tools" / "bootstrap"), *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"Ready. Next: {next_command}")
