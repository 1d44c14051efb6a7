"""Autostart at login: XDG file under tmp_path, Windows Run key and macOS LaunchAgent via fakes."""

from __future__ import annotations

import configparser
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from tray_agent.platform.autostart import (
    RUN_KEY,
    RUN_VALUE,
    MacAutostart,
    WindowsAutostart,
    XdgAutostart,
    apply_autostart,
    autostart_for,
    launch_command,
)

COMMAND = ["/opt/tray-agent/tray-agent", "--set", "ui.start_hidden=true"]


class FakeRegistry:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}
        self.writes = 0

    def read(self, key: str, name: str) -> str | None:
        return self.values.get((key, name))

    def write(self, key: str, name: str, value: str) -> None:
        self.writes += 1
        self.values[(key, name)] = value

    def delete(self, key: str, name: str) -> None:
        self.values.pop((key, name), None)


class FailingBackend:
    def is_enabled(self) -> bool:
        return False

    def enable(self, command: object) -> None:
        raise PermissionError(13, "Permission denied")

    def disable(self) -> None:
        raise PermissionError(13, "Permission denied")


def test_launch_command_frozen_and_from_source() -> None:
    assert launch_command(frozen=True, executable="/opt/tray-agent/tray-agent") == COMMAND
    assert launch_command(frozen=False, executable="/venv/bin/python") == [
        "/venv/bin/python",
        "-m",
        "tray_agent",
        "--set",
        "ui.start_hidden=true",
    ]


def test_xdg_autostart_writes_a_valid_hidden_entry_and_removes_it(tmp_path: Path) -> None:
    backend = XdgAutostart({"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "HOME": str(tmp_path)})
    assert backend.path == tmp_path / "cfg" / "autostart" / "tray-agent.desktop"
    assert not backend.is_enabled()

    result = apply_autostart(True, backend=backend, command=COMMAND)
    assert (result.enabled, result.changed, result.problem) == (True, True, "")
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(backend.path, encoding="utf-8")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application"
    assert section["Exec"] == '/opt/tray-agent/tray-agent --set "ui.start_hidden=true"'  # "=" is reserved
    assert section["X-GNOME-Autostart-enabled"] == "true"
    assert section["NoDisplay"] == "true"
    assert backend.is_enabled()
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(backend.path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr

    assert apply_autostart(True, backend=backend, command=COMMAND).changed is False  # already right
    moved = ["/new place/tray-agent", "--set", "ui.start_hidden=true"]
    assert apply_autostart(True, backend=backend, command=moved).changed is True
    assert 'Exec="/new place/tray-agent" --set' in backend.path.read_text()
    assert apply_autostart(True, backend=backend, command=moved).changed is False  # quoted round trip

    result = apply_autostart(False, backend=backend, command=COMMAND)
    assert (result.enabled, result.changed) == (False, True)
    assert not backend.path.exists()
    assert apply_autostart(False, backend=backend, command=COMMAND).changed is False


def test_xdg_autostart_defaults_to_home_config_and_honours_a_user_disabled_entry(tmp_path: Path) -> None:
    backend = XdgAutostart({"HOME": str(tmp_path), "XDG_CONFIG_HOME": "relative/ignored"})
    assert backend.path == tmp_path / ".config" / "autostart" / "tray-agent.desktop"
    backend.enable(COMMAND)
    backend.path.write_text(backend.path.read_text().replace("enabled=true", "enabled=false"))
    assert not backend.is_enabled()
    assert apply_autostart(True, backend=backend, command=COMMAND).changed is True  # re-enabled
    assert backend.is_enabled()


def test_locked_policy_value_is_applied_over_the_users_entry(tmp_path: Path) -> None:
    backend = XdgAutostart({"XDG_CONFIG_HOME": str(tmp_path)})
    backend.enable(COMMAND)  # the user had it on
    result = apply_autostart(False, locked=True, backend=backend, command=COMMAND)
    assert (result.enabled, result.changed) == (False, True)
    assert not backend.is_enabled()


def test_windows_run_key_via_a_fake_registry() -> None:
    registry = FakeRegistry()
    backend = WindowsAutostart(registry)
    command = [r"C:\Program Files\tray-agent\tray-agent.exe", "--set", "ui.start_hidden=true"]
    assert apply_autostart(True, backend=backend, command=command).changed
    assert registry.values[(RUN_KEY, RUN_VALUE)] == (
        r'"C:\Program Files\tray-agent\tray-agent.exe" --set ui.start_hidden=true'
    )
    assert RUN_KEY == r"Software\Microsoft\Windows\CurrentVersion\Run"
    assert apply_autostart(True, backend=backend, command=command).changed is False
    assert registry.writes == 1
    assert apply_autostart(False, backend=backend, command=command).changed
    assert registry.values == {}


def test_macos_launch_agent_plist(tmp_path: Path) -> None:
    backend = MacAutostart(home=tmp_path)
    command = ["/Applications/tray-agent.app/Contents/MacOS/tray-agent", "--set", "ui.start_hidden=true"]
    assert apply_autostart(True, backend=backend, command=command).changed
    path = tmp_path / "Library" / "LaunchAgents" / "com.trayagent.app.plist"
    with path.open("rb") as stream:
        data = plistlib.load(stream)
    assert data["Label"] == "com.trayagent.app"
    assert data["ProgramArguments"] == command
    assert data["RunAtLoad"] is True
    assert apply_autostart(True, backend=backend, command=command).changed is False
    assert apply_autostart(False, backend=backend, command=command).changed
    assert not path.exists()


def test_failures_come_back_in_plain_words() -> None:
    result = apply_autostart(True, backend=FailingBackend(), command=COMMAND)
    assert (result.enabled, result.changed) == (False, False)
    assert "Permission denied" in result.problem


@pytest.mark.parametrize(
    ("platform", "kind"), [("linux", XdgAutostart), ("win32", WindowsAutostart), ("darwin", MacAutostart)]
)
def test_autostart_for_picks_the_os_mechanism(platform: str, kind: type) -> None:
    assert isinstance(autostart_for(platform), kind)


def test_macos_unreadable_plist_counts_as_disabled_and_is_rewritten(tmp_path: Path) -> None:
    backend = MacAutostart(home=tmp_path)
    backend.path.parent.mkdir(parents=True)
    backend.path.write_bytes(b"not a property list")
    assert backend.is_enabled() is False
    assert apply_autostart(True, backend=backend, command=COMMAND).changed
    with backend.path.open("rb") as stream:
        assert plistlib.load(stream)["ProgramArguments"] == COMMAND
