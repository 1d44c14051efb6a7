r"""Where the app keeps its files (platformdirs or ``--basedir``) and reading the machine policy.

``app.py`` builds one frozen :class:`Paths` at start-up and passes it down; nothing else asks
platformdirs. The machine policy comes from ``policy.toml`` in the site config directories
(Linux ``/etc/xdg/tray-agent/policy.toml``, Windows ``C:\ProgramData\tray-agent\policy.toml``,
macOS ``/Library/Application Support/tray-agent/policy.toml``), plus the Windows registry key
``HKLM\Software\Policies\tray-agent`` and macOS managed preferences
``/Library/Managed Preferences[/<user>]/com.trayagent.app.plist``.

``--basedir`` moves the user's files only: the machine policy (site files, registry, managed
preferences) is read whatever the flags, so that its locks always hold.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from platformdirs import PlatformDirs

    # Imported where used: settings_layers brings pydantic and the settings schemas, and the
    # app builds its Paths before the tray icon is up, the settings only after (app.py).
    from tray_agent.core.settings_layers import LoadedSettings, PolicyInput

logger = logging.getLogger(__name__)

APP_NAME = "tray-agent"
# The same values as in core.settings_layers (tests/unit/platform/test_paths.py checks it);
# repeated here so that building a Paths imports no pydantic.
POLICY_FILE_ENV = "TRAY_AGENT_POLICY_FILE"
USER_FILE_NAME = "settings.json"
POLICY_FILE_NAME = "policy.toml"
REGISTRY_POLICY_KEY = r"Software\Policies\tray-agent"
"""Under HKEY_LOCAL_MACHINE: values ``locked`` (REG_MULTI_SZ or REG_SZ) and ``lock_all``
(REG_DWORD) at the top, one subkey per section (``connection``, ``alerts``, ``ui``) whose values
are the settings (REG_SZ, REG_DWORD for numbers and 0/1 booleans, lists as JSON text)."""
MANAGED_PREFERENCES_DIR = Path("/Library/Managed Preferences")
MANAGED_PLIST_NAME = "com.trayagent.app.plist"

_DIR_MODE = 0o700

PolicySources: TypeAlias = list[tuple[str, "PolicyInput"]]
PolicyReader: TypeAlias = Callable[[], PolicySources]


@dataclass(frozen=True)
class Paths:
    """The app's directories and the machine-policy files to read.

    Attributes:
        config: User settings (``settings.json``).
        data: User data the app keeps (e.g. message history).
        state: Run-time state: window geometry, last-seen ids.
        cache: Anything that can be thrown away.
        log: Log files.
        policy_files: Machine-policy TOML files, lowest precedence first.
        os_policy: Whether to read the Windows registry / macOS managed preferences too
            (always True from :meth:`from_platform`, ``--basedir`` or not; tests build Paths
            without it).
        policy_file_from_env: The file named by ``TRAY_AGENT_POLICY_FILE``, if any; unlike the
            site files, it is reported when missing.
    """

    config: Path
    data: Path
    state: Path
    cache: Path
    log: Path
    policy_files: tuple[Path, ...] = ()
    os_policy: bool = True
    policy_file_from_env: Path | None = None

    @property
    def settings_file(self) -> Path:
        """The user settings file (JSON)."""
        return self.config / USER_FILE_NAME

    @property
    def user_dirs(self) -> tuple[Path, ...]:
        """The directories the app writes to."""
        return (self.config, self.data, self.state, self.cache, self.log)

    @classmethod
    def from_platform(
        cls,
        basedir: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        dirs: PlatformDirs | None = None,
    ) -> Paths:
        """The paths for this machine and user. Creates nothing (see :meth:`ensure_dirs`).

        Args:
            basedir: ``--basedir``: the user's files go under it (``config/``, ``data/``,
                ``state/``, ``cache/``, ``log/``). The machine policy is still read (site
                files, registry, managed preferences, ``TRAY_AGENT_POLICY_FILE``): a flag never
                lifts an administrator's lock.
            env: The environment (for ``TRAY_AGENT_POLICY_FILE``); default ``os.environ``.
            dirs: platformdirs object to use (tests); default ``PlatformDirs("tray-agent")``.

        Returns:
            The frozen paths.
        """
        env = os.environ if env is None else env
        from_env = env.get(POLICY_FILE_ENV) or None
        env_file = Path(from_env).expanduser() if from_env else None
        if dirs is None:
            from platformdirs import PlatformDirs

            dirs = PlatformDirs(APP_NAME, appauthor=False, multipath=True)
        # XDG_CONFIG_DIRS lists the most important directory first; we apply files lowest first.
        site_dirs = [Path(part) for part in dirs.site_config_dir.split(os.pathsep) if part]
        site_files = tuple(directory / POLICY_FILE_NAME for directory in reversed(site_dirs))
        # The env file comes first so that the site policy overrides it: a user cannot use it to
        # get around the administrator's values (it can only add locks).
        policy_files = ((env_file,) if env_file else ()) + site_files
        if basedir is not None:
            base = Path(basedir).expanduser().absolute()
            return cls(
                config=base / "config",
                data=base / "data",
                state=base / "state",
                cache=base / "cache",
                log=base / "log",
                policy_files=policy_files,
                os_policy=True,
                policy_file_from_env=env_file,
            )
        return cls(
            config=Path(dirs.user_config_dir),
            data=Path(dirs.user_data_dir),
            state=Path(dirs.user_state_dir),
            cache=Path(dirs.user_cache_dir),
            log=Path(dirs.user_log_dir),
            policy_files=policy_files,
            os_policy=True,
            policy_file_from_env=env_file,
        )

    def ensure_dirs(self) -> None:
        """Create the user directories with mode 0700 (and tighten existing ones to it).

        Raises:
            OSError: A directory cannot be created (the app cannot run without them).
        """
        for directory in self.user_dirs:
            directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            if os.name == "posix" and directory.stat().st_mode & 0o777 != _DIR_MODE:
                try:
                    directory.chmod(_DIR_MODE)
                except OSError as exc:
                    logger.warning("Could not make %s private (mode 0700): %s", directory, exc)


def read_policy_sources(
    paths: Paths,
    *,
    registry_reader: PolicyReader | None = None,
    managed_prefs_reader: PolicyReader | None = None,
    platform: str = sys.platform,
) -> PolicySources:
    """Read every machine-policy source, lowest precedence first. Never raises.

    Files come first, then (when ``paths.os_policy``) the Windows registry policy or the macOS
    managed preferences, so that policies pushed by device management win over files.

    Args:
        paths: Which files to read.
        registry_reader: Reads the Windows registry policy (tests inject one); used on win32.
        managed_prefs_reader: Reads the macOS managed preferences (tests inject one); used on
            darwin.
        platform: ``sys.platform`` (tests override it).

    Returns:
        ``(source name, text bytes | mapping | exception)`` pairs for
        :func:`tray_agent.core.settings_layers.load_settings`; a missing site file is left out,
        an unreadable one is passed on as its exception so that it is reported.
    """
    sources: PolicySources = []
    for path in paths.policy_files:
        try:
            sources.append((f"file {path}", path.read_bytes()))
        except FileNotFoundError as exc:
            if path == paths.policy_file_from_env:
                sources.append((f"file {path} (from {POLICY_FILE_ENV})", exc))
        except OSError as exc:
            sources.append((f"file {path}", exc))
    if not paths.os_policy:
        return sources
    reader: PolicyReader | None = None
    if platform == "win32":
        reader = registry_reader or read_registry_policy
    elif platform == "darwin":
        reader = managed_prefs_reader or read_managed_preferences
    if reader is not None:
        try:
            sources.extend(reader())
        except Exception as exc:  # a reader bug must not stop the app
            logger.warning("Reading the OS policy failed: %s", exc)
            sources.append(("OS-managed policy", exc))
    return sources


def load_settings_for(
    paths: Paths,
    env: Mapping[str, str],
    cli: Mapping[str, Any] | object | None = None,
    *,
    policy_sources: Sequence[tuple[str, PolicyInput]] | None = None,
) -> LoadedSettings:
    """Load the layered settings for ``paths``: what ``app.py`` and ``listen`` call.

    Args:
        paths: From :meth:`Paths.from_platform`.
        env: The environment (``os.environ``).
        cli: The parsed ``argparse.Namespace`` (or a mapping), or None.
        policy_sources: Already-read policy sources; default :func:`read_policy_sources`.

    Returns:
        See :class:`tray_agent.core.settings_layers.LoadedSettings`.
    """
    from tray_agent.core.settings_layers import load_settings

    if policy_sources is None:
        policy_sources = read_policy_sources(paths)
    args: Mapping[str, Any] | None = cli if cli is None or isinstance(cli, Mapping) else vars(cli)
    return load_settings(policy_sources=policy_sources, user_file=paths.settings_file, env=env, cli=args)


def read_registry_policy() -> PolicySources:
    r"""Read ``HKLM\Software\Policies\tray-agent`` into a mapping (Windows only; else empty)."""
    if sys.platform != "win32":
        return []
    import winreg

    name = f"registry HKLM\\{REGISTRY_POLICY_KEY}"

    def values(key: Any) -> dict[str, Any]:
        found: dict[str, Any] = {}
        index = 0
        while True:
            try:
                value_name, value, _kind = winreg.EnumValue(key, index)
            except OSError:
                return found
            found[value_name] = value
            index += 1

    try:
        root = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, REGISTRY_POLICY_KEY)
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [(name, exc)]
    with root:
        data = values(root)
        index = 0
        while True:
            try:
                section = winreg.EnumKey(root, index)
            except OSError:
                break
            with winreg.OpenKey(root, section) as sub:
                data[section] = values(sub)
            index += 1
    return [(name, data)]


def read_managed_preferences(user: str | None = None, root: Path = MANAGED_PREFERENCES_DIR) -> PolicySources:
    """Read the macOS managed preferences (device-wide, then the user's, which wins).

    Args:
        user: The login name; default the current user.
        root: The managed-preferences directory (tests pass a temporary one).

    Returns:
        ``(name, mapping or exception)`` for each plist that exists.
    """
    import plistlib  # macOS only: not on every start's import path

    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no user name: only the device-wide file
            user = ""
    candidates = [root / MANAGED_PLIST_NAME]
    if user:
        candidates.append(root / user / MANAGED_PLIST_NAME)
    sources: PolicySources = []
    for path in candidates:
        try:
            with path.open("rb") as stream:
                data = plistlib.load(stream)
        except FileNotFoundError:
            continue
        except (OSError, plistlib.InvalidFileException, ValueError) as exc:
            sources.append((f"managed preferences {path}", exc))
            continue
        if isinstance(data, dict):
            sources.append((f"managed preferences {path}", data))
        else:
            sources.append((f"managed preferences {path}", ValueError("the plist is not a dictionary")))
    return sources
