"""Tests for Paths (platformdirs, --basedir, 0700 dirs) and reading the machine policy."""

from __future__ import annotations

import os
import plistlib
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from platformdirs import PlatformDirs

from tray_agent.core.settings_layers import Layer
from tray_agent.platform.paths import (
    Paths,
    PolicySources,
    load_settings_for,
    read_managed_preferences,
    read_policy_sources,
)

POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def os_paths(tmp_path: Path) -> Paths:
    """Paths without policy files that do read the OS policy (as without --basedir)."""
    return Paths(
        config=tmp_path,
        data=tmp_path,
        state=tmp_path,
        cache=tmp_path,
        log=tmp_path,
        policy_files=(),
        os_policy=True,
    )


def site_dirs(*directories: Path) -> PlatformDirs:
    """platformdirs whose site config directories are ``directories`` (most important first)."""
    return SimpleNamespace(site_config_dir=os.pathsep.join(str(d) for d in directories))  # type: ignore[return-value]


def test_paths_basedir_puts_the_user_files_under_it_and_keeps_the_machine_policy(tmp_path: Path) -> None:
    site = tmp_path / "etc" / "xdg" / "tray-agent"
    paths = Paths.from_platform(tmp_path / "base", env={}, dirs=site_dirs(site))
    base = tmp_path / "base"
    assert paths.config == base / "config"
    assert paths.data == base / "data"
    assert paths.state == base / "state"
    assert paths.cache == base / "cache"
    assert paths.log == base / "log"
    assert paths.settings_file == base / "config" / "settings.json"
    assert paths.policy_files == (site / "policy.toml",)  # --basedir moves the user's files only
    assert paths.os_policy is True


def test_paths_policy_file_variable_is_the_settings_layers_one() -> None:
    # paths.py repeats it so that building a Paths imports no pydantic (app start-up); the
    # settings layers must not read it as a setting.
    from tray_agent.core import settings_layers
    from tray_agent.platform import paths

    assert paths.POLICY_FILE_ENV == settings_layers.POLICY_FILE_ENV


def test_paths_basedir_reads_the_policy_file_from_env_before_the_site_policy(tmp_path: Path) -> None:
    policy = tmp_path / "trial-policy.toml"
    site = tmp_path / "site"
    env = {"TRAY_AGENT_POLICY_FILE": str(policy)}
    paths = Paths.from_platform(tmp_path, env=env, dirs=site_dirs(site))
    assert paths.policy_files == (policy, site / "policy.toml")
    assert paths.policy_file_from_env == policy


class _Flags:
    """What a user who wants around the policy passes: --server, --set."""

    def __init__(self) -> None:
        self.server = "https://mine.example"
        self.email = None
        self.set = ["alerts.volume=0.1", "connection.server=https://mine.example"]


@pytest.mark.parametrize("where", ["machine location", "TRAY_AGENT_POLICY_FILE"])
def test_basedir_does_not_lift_the_machine_policy_locks(tmp_path: Path, where: str) -> None:
    site = tmp_path / "etc" / "xdg" / "tray-agent"
    policy = site / "policy.toml" if where == "machine location" else tmp_path / "it-policy.toml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(
        'locked = ["connection.server", "alerts.volume"]\n'
        '[connection]\nserver = "https://it.example"\n[alerts]\nvolume = 0.8\n',
        encoding="utf-8",
    )
    env = {"TRAY_AGENT_POLICY_FILE": str(policy)} if where != "machine location" else {}
    paths = Paths.from_platform(tmp_path / "base", env=env, dirs=site_dirs(site))
    paths.ensure_dirs()
    paths.settings_file.write_text('{"version": 1, "alerts": {"volume": 0.2}}', encoding="utf-8")
    loaded = load_settings_for(paths, env={**env, "TRAY_AGENT_SERVER": "https://env.example"}, cli=_Flags())
    assert loaded.settings.connection.server == "https://it.example"
    assert loaded.settings.alerts.volume == 0.8
    assert {"connection.server", "alerts.volume"} <= loaded.locked


def test_basedir_does_not_lift_the_os_managed_policy(tmp_path: Path) -> None:
    def registry() -> PolicySources:
        return [("registry", {"locked": ["ui.theme"], "ui": {"theme": "dark"}})]

    paths = Paths.from_platform(tmp_path / "base", env={}, dirs=site_dirs(tmp_path / "none"))
    sources = read_policy_sources(paths, registry_reader=registry, platform="win32")
    loaded = load_settings_for(paths, env={}, cli={"set": ["ui.theme=light"]}, policy_sources=sources)
    assert loaded.settings.ui.theme == "dark"
    assert loaded.locked == frozenset({"ui.theme"})


def test_paths_from_platformdirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", f"{tmp_path / 'site1'}{os.pathsep}{tmp_path / 'site2'}")
    dirs = PlatformDirs("tray-agent", appauthor=False, multipath=True)
    extra = tmp_path / "extra.toml"
    paths = Paths.from_platform(env={"TRAY_AGENT_POLICY_FILE": str(extra)}, dirs=dirs)
    assert paths.config == Path(dirs.user_config_dir)
    assert paths.os_policy is True
    if os.name == "posix" and not dirs.site_config_dir.startswith("/Library"):
        # Lowest precedence first: the env file, then XDG dirs in reverse (the first one wins).
        assert paths.policy_files == (
            extra,
            tmp_path / "site2" / "tray-agent" / "policy.toml",
            tmp_path / "site1" / "tray-agent" / "policy.toml",
        )


def test_paths_is_frozen(tmp_path: Path) -> None:
    paths = Paths.from_platform(tmp_path, env={})
    with pytest.raises(AttributeError):
        paths.config = tmp_path  # type: ignore[misc]


@POSIX_ONLY
def test_ensure_dirs_creates_private_directories(tmp_path: Path) -> None:
    paths = Paths.from_platform(tmp_path / "base", env={})
    paths.config.mkdir(parents=True, mode=0o755)
    paths.config.chmod(0o755)  # an older, too open directory is tightened
    paths.ensure_dirs()
    for directory in paths.user_dirs:
        assert directory.is_dir()
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    paths.ensure_dirs()  # idempotent


def test_read_policy_sources_files(tmp_path: Path) -> None:
    site = tmp_path / "site" / "policy.toml"
    site.parent.mkdir()
    site.write_text('[ui]\ntheme = "dark"\n', encoding="utf-8")
    paths = Paths(
        config=tmp_path / "c",
        data=tmp_path / "d",
        state=tmp_path / "s",
        cache=tmp_path / "k",
        log=tmp_path / "l",
        policy_files=(tmp_path / "missing.toml", site),
        os_policy=False,
    )
    sources = read_policy_sources(paths)
    assert sources == [(f"file {site}", b'[ui]\ntheme = "dark"\n')]


def test_read_policy_sources_reports_missing_env_file(tmp_path: Path) -> None:
    paths = Paths.from_platform(tmp_path, env={"TRAY_AGENT_POLICY_FILE": str(tmp_path / "nope.toml")})
    loaded = load_settings_for(paths, env={})
    assert len(loaded.problems) == 1
    assert "nope.toml" in loaded.problems[0]
    assert "TRAY_AGENT_POLICY_FILE" in loaded.problems[0]


@POSIX_ONLY
def test_read_policy_sources_reports_unreadable_file(tmp_path: Path) -> None:
    directory_not_file = tmp_path / "policy.toml"
    directory_not_file.mkdir()
    paths = Paths.from_platform(tmp_path / "b", env={"TRAY_AGENT_POLICY_FILE": str(directory_not_file)})
    loaded = load_settings_for(paths, env={})
    assert str(directory_not_file) in loaded.problems[0]


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_read_policy_sources_injected_os_readers(tmp_path: Path, platform: str) -> None:
    def registry() -> PolicySources:
        return [("registry HKLM\\Software\\Policies\\tray-agent", {"lock_all": 1, "ui": {"theme": "light"}})]

    def managed() -> PolicySources:
        return [("managed preferences x.plist", {"locked": ["ui.theme"], "ui.theme": "dark"})]

    paths = os_paths(tmp_path)
    sources = read_policy_sources(
        paths, registry_reader=registry, managed_prefs_reader=managed, platform=platform
    )
    expected = registry() if platform == "win32" else managed()
    assert sources[-len(expected) :] == expected
    loaded = load_settings_for(paths, env={}, policy_sources=sources)
    assert loaded.settings.ui.theme == ("light" if platform == "win32" else "dark")
    assert loaded.locked == frozenset({"ui.theme"})


def test_read_policy_sources_os_readers_unused_elsewhere(tmp_path: Path) -> None:
    def boom() -> PolicySources:
        raise AssertionError("must not be called")

    assert (
        read_policy_sources(
            os_paths(tmp_path), registry_reader=boom, managed_prefs_reader=boom, platform="linux"
        )
        == []
    )


def test_read_policy_sources_failing_reader_is_reported(tmp_path: Path) -> None:
    def broken() -> PolicySources:
        raise OSError(5, "Access is denied")

    paths = os_paths(tmp_path)
    sources = read_policy_sources(paths, registry_reader=broken, platform="win32")
    loaded = load_settings_for(paths, env={}, policy_sources=sources)
    assert "Access is denied" in loaded.problems[0]


def test_read_managed_preferences_device_then_user(tmp_path: Path) -> None:
    (tmp_path / "alice").mkdir()
    with (tmp_path / "com.trayagent.app.plist").open("wb") as stream:
        plistlib.dump({"ui": {"theme": "dark", "language": "en"}}, stream)
    with (tmp_path / "alice" / "com.trayagent.app.plist").open("wb") as stream:
        plistlib.dump({"ui.theme": "light", "locked": ["ui.theme"]}, stream)
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "com.trayagent.app.plist").write_bytes(b"not a plist")

    sources = read_managed_preferences("alice", root=tmp_path)
    assert [name.rsplit("/", 2)[-2:] for name, _ in sources] == [
        [tmp_path.name, "com.trayagent.app.plist"],
        ["alice", "com.trayagent.app.plist"],
    ]
    paths = Paths.from_platform(tmp_path / "b", env={})
    loaded = load_settings_for(paths, env={}, policy_sources=sources)
    assert loaded.settings.ui.theme == "light"
    assert loaded.settings.ui.language == "en"
    assert loaded.locked == frozenset({"ui.theme"})

    broken = read_managed_preferences("bob", root=tmp_path)
    assert isinstance(broken[-1][1], Exception)
    assert read_managed_preferences("carol", root=tmp_path / "none") == []


def test_load_settings_for_full_stack(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'locked = ["connection.server"]\n[connection]\nserver = "https://it"\n', encoding="utf-8"
    )
    paths = Paths.from_platform(tmp_path / "base", env={"TRAY_AGENT_POLICY_FILE": str(policy)})
    paths.ensure_dirs()
    paths.settings_file.write_text('{"version": 1, "ui": {"theme": "dark"}}', encoding="utf-8")

    class Args:
        def __init__(self) -> None:
            self.server = "https://mine"
            self.email = None
            self.set = ["alerts.volume=0.5"]

    loaded = load_settings_for(paths, env={"TRAY_AGENT_EMAIL": "a@example.com"}, cli=Args())
    assert loaded.settings.connection.server == "https://it"
    assert loaded.settings.connection.email == "a@example.com"
    assert loaded.settings.ui.theme == "dark"
    assert loaded.settings.alerts.volume == 0.5
    assert loaded.sources["ui.theme"] is Layer.USER
    assert loaded.user_file == paths.settings_file
    assert len(loaded.problems) == 1  # the ignored --server
