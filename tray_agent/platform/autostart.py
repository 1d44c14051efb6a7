r"""Start at login: XDG autostart ``.desktop`` file, Windows Run key, macOS LaunchAgent.

The entry starts the app in the tray with its window hidden (``--set ui.start_hidden=true``), so a
login never steals focus. The command is the frozen executable when running from a PyInstaller
build (``sys.frozen``), else ``<python> -m tray_agent``.

* Linux and other XDG desktops: ``$XDG_CONFIG_HOME/autostart/tray-agent.desktop`` (default
  ``~/.config/autostart``) with ``X-GNOME-Autostart-enabled=true``.
* Windows: value ``tray-agent`` under ``HKCU\Software\Microsoft\Windows\CurrentVersion\Run``.
* macOS: ``~/Library/LaunchAgents/com.trayagent.app.plist`` (``RunAtLoad``).

:func:`apply_autostart` is what ``session.flows.AccountFlows`` calls with the setting
``ui.autostart`` and whether the machine policy locks it: a locked value is applied as the policy
says, whatever the user chose. Nothing here raises into the caller; failures come back as plain words.
"""

from __future__ import annotations

import importlib
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tray_agent.core.settings_layers import atomic_write_text

logger = logging.getLogger(__name__)

APP_NAME = "tray-agent"
DESKTOP_FILE = "tray-agent.desktop"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "tray-agent"
LAUNCH_AGENT_LABEL = "com.trayagent.app"
HIDDEN_ARGS = ("--set", "ui.start_hidden=true")


class Msg:
    """Every user-visible text of this module, in one place (a later issue translates them)."""

    NAME = "tray_agent"
    COMMENT = "Alerts for customer-support agents (starts in the tray)"
    FAILED = "Could not change starting at login: {reason}"
    LOCKED = "Starting at login is set by your administrator."


def launch_command(
    *, frozen: bool | None = None, executable: str | None = None, extra: Sequence[str] = HIDDEN_ARGS
) -> list[str]:
    """The command line that starts the app hidden in the tray.

    Args:
        frozen: whether this is a PyInstaller build; default ``sys.frozen``.
        executable: the program; default ``sys.executable`` (the bundle's executable when frozen).
        extra: arguments after the program (default: start hidden).
    """
    frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
    executable = executable or sys.executable
    if not frozen:
        # pythonw.exe keeps a console window from opening at login on Windows.
        path = Path(executable)
        if path.name.lower() == "python.exe" and (pythonw := path.with_name("pythonw.exe")).exists():
            executable = str(pythonw)
        return [executable, "-m", "tray_agent", *extra]
    return [executable, *extra]


class Autostart(Protocol):
    """One OS's login-item mechanism."""

    def is_enabled(self) -> bool:
        """Whether the app starts at login."""
        ...

    def enable(self, command: Sequence[str]) -> None:
        """Start ``command`` at login (replaces an older entry). Raises OSError on failure."""
        ...

    def disable(self) -> None:
        """Do not start at login (no error when it was not enabled). Raises OSError on failure."""
        ...


# ---------------------------------------------------------------------------------------------
# XDG (Linux, BSD)


def _desktop_exec_quote(arg: str) -> str:
    """Quote one argument for a desktop entry's ``Exec`` key (Desktop Entry Spec, "Exec")."""
    reserved = set(" \t\n\"'\\><~|&;$*?#()`=%")
    if arg and not any(ch in reserved for ch in arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    # In a desktop file's string value, a backslash is itself escaped once more.
    return '"' + escaped.replace("\\", "\\\\").replace("%", "%%") + '"'


def desktop_entry(command: Sequence[str]) -> str:
    """The autostart ``.desktop`` file's text for ``command``."""
    exec_line = " ".join(_desktop_exec_quote(arg) for arg in command)
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        f"Name={Msg.NAME}\n"
        f"Comment={Msg.COMMENT}\n"
        f"Exec={exec_line}\n"
        f"Icon={APP_NAME}\n"
        "Terminal=false\n"
        "NoDisplay=true\n"
        "StartupNotify=false\n"
        "X-GNOME-Autostart-enabled=true\n"
        "X-GNOME-Autostart-Delay=5\n"
        "X-KDE-autostart-after=panel\n"
        "X-KDE-StartupNotify=false\n"
    )


@dataclass
class XdgAutostart:
    """``$XDG_CONFIG_HOME/autostart/tray-agent.desktop``.

    Args:
        env: the environment (``XDG_CONFIG_HOME``, ``HOME``); default ``os.environ``.
    """

    env: Mapping[str, str] | None = None

    @property
    def path(self) -> Path:
        """The autostart file."""
        env = os.environ if self.env is None else self.env
        base = env.get("XDG_CONFIG_HOME") or ""
        config = Path(base) if os.path.isabs(base) else Path(env.get("HOME") or Path.home()) / ".config"
        return config / "autostart" / DESKTOP_FILE

    def is_enabled(self) -> bool:
        """True when our file exists and is not disabled (``Hidden=true`` or the GNOME flag)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError:
            return False
        lines = {line.strip().lower() for line in text.splitlines()}
        return "hidden=true" not in lines and "x-gnome-autostart-enabled=false" not in lines

    def enable(self, command: Sequence[str]) -> None:
        """Write the autostart file (atomically)."""
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, desktop_entry(command))

    def disable(self) -> None:
        """Remove the autostart file."""
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Windows


class RegistryApi(Protocol):
    """The few ``winreg`` calls used here (tests inject a fake)."""

    def read(self, key: str, name: str) -> str | None:
        """The REG_SZ value under the HKCU key, or None."""
        ...

    def write(self, key: str, name: str, value: str) -> None:
        """Set a REG_SZ value under the HKCU key (creating the key)."""
        ...

    def delete(self, key: str, name: str) -> None:
        """Delete a value under the HKCU key (no error if absent)."""
        ...


def _winreg() -> Any:
    """The ``winreg`` module (Windows only; typed loosely so the checks pass on every OS)."""
    return importlib.import_module("winreg")


class WinregApi:
    """:class:`RegistryApi` on the real ``winreg`` (Windows only)."""

    def read(self, key: str, name: str) -> str | None:
        """The REG_SZ value under the HKCU key, or None."""
        winreg = _winreg()

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key) as handle:
                value, _kind = winreg.QueryValueEx(handle, name)
        except FileNotFoundError:
            return None
        return str(value)

    def write(self, key: str, name: str, value: str) -> None:
        """Set a REG_SZ value under the HKCU key."""
        winreg = _winreg()

        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, key, 0, winreg.KEY_SET_VALUE) as handle:
            winreg.SetValueEx(handle, name, 0, winreg.REG_SZ, value)

    def delete(self, key: str, name: str) -> None:
        """Delete a value under the HKCU key."""
        winreg = _winreg()

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key, 0, winreg.KEY_SET_VALUE) as handle:
                winreg.DeleteValue(handle, name)
        except FileNotFoundError:
            pass


@dataclass
class WindowsAutostart:
    """The ``tray-agent`` value of the current user's Run key."""

    registry: RegistryApi | None = None

    def _api(self) -> RegistryApi:
        return self.registry or WinregApi()

    def is_enabled(self) -> bool:
        """True when the Run value exists."""
        return bool(self._api().read(RUN_KEY, RUN_VALUE))

    def enable(self, command: Sequence[str]) -> None:
        """Write the Run value (quoted as Windows parses command lines)."""
        self._api().write(RUN_KEY, RUN_VALUE, subprocess.list2cmdline(list(command)))

    def disable(self) -> None:
        """Delete the Run value."""
        self._api().delete(RUN_KEY, RUN_VALUE)


# ---------------------------------------------------------------------------------------------
# macOS


def launch_agent(command: Sequence[str]) -> dict[str, Any]:
    """The LaunchAgent property list for ``command``."""
    return {
        "Label": LAUNCH_AGENT_LABEL,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        "KeepAlive": False,
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",
    }


def _read_plist(path: Path, *, strict: bool = False) -> Any:
    """The property list in ``path``; None when it cannot be read or parsed (``strict``: raise).

    plistlib (with pyexpat) is imported here, on macOS only: the other systems never load it.
    """
    import plistlib

    try:
        with path.open("rb") as stream:
            return plistlib.load(stream)
    except (OSError, ValueError):  # plistlib.InvalidFileException is a ValueError
        if strict:
            raise
        return None


@dataclass
class MacAutostart:
    """``~/Library/LaunchAgents/com.trayagent.app.plist`` (loaded by launchd at the next login)."""

    home: Path | None = None

    @property
    def path(self) -> Path:
        """The LaunchAgent file."""
        return (self.home or Path.home()) / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"

    def is_enabled(self) -> bool:
        """True when the plist exists and says RunAtLoad."""
        data = _read_plist(self.path)
        return isinstance(data, dict) and bool(data.get("RunAtLoad"))

    def enable(self, command: Sequence[str]) -> None:
        """Write the plist (atomically)."""
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        import plistlib  # macOS only (with pyexpat): not loaded on the other systems

        atomic_write_text(path, plistlib.dumps(launch_agent(command)).decode("utf-8"))

    def disable(self) -> None:
        """Remove the plist."""
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Choosing and applying


def autostart_for(platform: str = sys.platform, env: Mapping[str, str] | None = None) -> Autostart:
    """The mechanism for ``platform`` (a ``sys.platform`` value)."""
    if platform == "win32":
        return WindowsAutostart()
    if platform == "darwin":
        return MacAutostart()
    return XdgAutostart(env)


@dataclass(frozen=True, slots=True)
class AutostartResult:
    """What :func:`apply_autostart` did.

    Attributes:
        enabled: whether the app now starts at login.
        changed: whether anything was written or removed.
        problem: plain words when it could not be changed ("" when fine).
    """

    enabled: bool
    changed: bool
    problem: str = ""


def apply_autostart(
    wanted: bool,
    *,
    locked: bool = False,
    backend: Autostart | None = None,
    command: Sequence[str] | None = None,
) -> AutostartResult:
    """Make starting at login match the setting ``ui.autostart``. Never raises.

    An enabled entry is rewritten when its command differs (e.g. the app moved), so call this at
    every start as well as when the setting changes.

    Args:
        wanted: the effective value of ``ui.autostart``.
        locked: whether the machine policy locks ``ui.autostart``; then ``wanted`` is the policy's
            value and is applied even over the user's own login items.
        backend: the OS mechanism (default :func:`autostart_for`).
        command: the command to start (default :func:`launch_command`).
    """
    backend = backend or autostart_for()
    command = list(command or launch_command())
    try:
        enabled = backend.is_enabled()
        if wanted:
            if enabled and _runs(backend, command):
                return AutostartResult(True, False)
            backend.enable(command)
            logger.info("Autostart enabled%s: %s", " (policy)" if locked else "", command)
            return AutostartResult(True, True)
        if not enabled:
            return AutostartResult(False, False)
        backend.disable()
        logger.info("Autostart disabled%s", " (policy)" if locked else "")
        return AutostartResult(False, True)
    except OSError as exc:
        logger.warning("Autostart could not be changed: %s", exc)
        return AutostartResult(False, False, Msg.FAILED.format(reason=exc.strerror or exc))


def _runs(backend: Autostart, command: list[str]) -> bool:
    """Whether an existing entry runs exactly ``command`` (False when it cannot be read back)."""
    try:
        if isinstance(backend, XdgAutostart):
            for line in backend.path.read_text(encoding="utf-8").splitlines():
                if line.startswith("Exec="):
                    raw = line.removeprefix("Exec=").replace("\\\\", "\\").replace("%%", "%")
                    return shlex.split(raw) == command
        elif isinstance(backend, MacAutostart):
            return bool(_read_plist(backend.path, strict=True).get("ProgramArguments") == command)
        elif isinstance(backend, WindowsAutostart):
            return backend._api().read(RUN_KEY, RUN_VALUE) == subprocess.list2cmdline(command)
    except (OSError, ValueError, AttributeError):  # plistlib.InvalidFileException is a ValueError
        return False
    return False
