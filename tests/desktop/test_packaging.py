"""The packaged app: build the PyInstaller bundle and the .deb, extract it, run it on the headless desktop.

One build per module (about 30 s): ``packaging/build.sh --dist <tmp> --work <tmp>``, exactly what
CI and a developer run, then ``dpkg-deb -x`` into a temporary root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.desktop.session import DesktopSession, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="the .deb is Linux-only")]

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 600
RUN_TIMEOUT = 120
APP_START_TIMEOUT = 30.0
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@dataclass(frozen=True)
class Build:
    dist: Path
    deb: Path
    root: Path  # the .deb extracted

    @property
    def executable(self) -> Path:
        return self.root / "opt" / "tray-agent" / "tray-agent"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Build]:
    for tool in ("dpkg-deb", "objdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        pytest.skip("PyInstaller is not installed (pip install -e .[package])")
    base = tmp_path_factory.mktemp("packaging")
    dist, work = base / "dist", base / "work"
    proc = subprocess.run(
        [str(REPO / "packaging" / "build.sh"), "--dist", str(dist), "--work", str(work)],
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    debs = sorted(dist.glob("tray-agent_*.deb"))
    assert len(debs) == 1, list(dist.iterdir())
    root = base / "root"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True, timeout=RUN_TIMEOUT)
    yield Build(dist, debs[0], root)
    shutil.rmtree(work, ignore_errors=True)


def field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True, timeout=RUN_TIMEOUT
    ).stdout.strip()


def test_deb_name_version_and_control(build: Build) -> None:
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
    assert build.deb.name == f"tray-agent_{VERSION}_{arch.stdout.strip()}.deb"
    assert field(build.deb, "Package") == "tray-agent"
    assert field(build.deb, "Version") == VERSION
    depends = {part.strip().split(" ")[0] for part in field(build.deb, "Depends").split(",")}
    # Qt's xcb platform plugin and what the bundle leaves to the system (checked with ldd).
    for package in (
        "libc6", "libgl1", "libegl1", "libfontconfig1", "libdbus-1-3", "libxkbcommon-x11-0",
        "libxcb1", "libxcb-cursor0", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1",
        "libxcb-randr0", "libxcb-render-util0", "libxcb-shape0", "libxcb-xkb1",
    ):  # fmt: skip
        assert package in depends, package
    assert int(field(build.deb, "Installed-Size")) > 10_000


def test_deb_layout(build: Build) -> None:
    root = build.root
    launcher = root / "usr" / "bin" / "tray-agent"
    assert os.access(launcher, os.X_OK)
    assert "/opt/tray-agent/tray-agent" in launcher.read_text()
    assert os.access(build.executable, os.X_OK)
    icon = root / "usr/share/icons/hicolor/scalable/apps/tray-agent.svg"
    assert icon.read_bytes() == (REPO / "resources" / "icons" / "tray-agent.svg").read_bytes()
    assert (root / "etc/xdg/tray-agent/policy.toml.example").is_file()
    bundled = root / "opt/tray-agent/_internal/tray_agent/resources"
    assert sorted(p.name for p in (bundled / "sounds").iterdir()) == ["escalation.wav", "message.wav"]
    assert (bundled / "icons" / "tray-agent.svg").is_file()


def test_desktop_file_handles_tray_agent_links(build: Build) -> None:
    desktop = build.root / "usr/share/applications/tray-agent.desktop"
    text = desktop.read_text()
    assert "MimeType=x-scheme-handler/tray-agent;" in text
    assert "Exec=tray-agent %u" in text
    assert "Icon=tray-agent" in text
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(desktop)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_launcher_turns_a_bare_link_into_open(build: Build, tmp_path: Path) -> None:
    # The launcher with the bundle replaced by a stub that prints its arguments.
    stub = tmp_path / "stub"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    stub.chmod(0o755)
    script = tmp_path / "launcher"
    script.write_text(
        (build.root / "usr/bin/tray-agent").read_text().replace("/opt/tray-agent/tray-agent", str(stub))
    )
    script.chmod(0o755)

    def args(*argv: str) -> list[str]:
        out = subprocess.run([str(script), *argv], capture_output=True, text=True, check=True, timeout=30)
        return out.stdout.splitlines()

    assert args("tray-agent://open/1001%2F77") == ["open", "tray-agent://open/1001%2F77"]
    assert args("doctor", "--json") == ["doctor", "--json"]
    assert args() == []


def test_policy_example_is_a_valid_policy(build: Build) -> None:
    from tray_agent.core.settings_layers import parse_policy

    text = (build.root / "etc/xdg/tray-agent/policy.toml.example").read_text()
    values, locked, problems = parse_policy("example", text)
    assert problems == []
    assert "connection.server" in locked
    assert values["connection.server"] == "https://support.example.com"


def test_bundle_starts_and_reports_its_version(build: Build) -> None:
    out = subprocess.run(
        [str(build.executable), "--version"], capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"tray-agent {VERSION}"


def test_bundle_self_test_shows_the_tray_on_the_desktop(
    build: Build, desktop: DesktopSession, tmp_path: Path
) -> None:
    env = {**desktop.env, "HOME": str(tmp_path)}
    out = subprocess.run(
        [str(build.executable), "--self-test"], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "tray: available" in out.stdout
    assert "qt platform: xcb" in out.stdout
    assert "result: ok" in out.stdout


def test_bundled_secret_helper_keeps_secrets_in_gnome_keyring(
    build: Build, desktop: DesktopSession, tmp_path: Path
) -> None:
    # The app starts `<bundle>/tray-agent secret-helper` for its keyring work (sys.executable
    # is the bundle's executable; there is no `python -m`): keyring and the Secret Service
    # backend must be in the bundle, and the helper must speak its protocol and exit at EOF.
    from keyring.backends import SecretService

    key = "dashboard:https://support.example.com:acme:bundle@example.com:session"
    proc = subprocess.Popen(
        [str(build.executable), "secret-helper"],
        env={**desktop.env, "HOME": str(tmp_path)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None

    def ask(request: dict[str, object]) -> dict[str, object]:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        return dict(json.loads(proc.stdout.readline()))

    try:
        status = ask({"id": 1, "op": "status"})
        assert (status["persistent"], status["backend"]) == (True, "keyring.backends.SecretService.Keyring")
        stored = ask({"id": 2, "op": "set", "key": key, "value": "cookie-from-the-bundle"})
        assert stored["persistent"] is True
        assert SecretService.Keyring().get_password("tray-agent", key) == "cookie-from-the-bundle"  # type: ignore[no-untyped-call]
        assert ask({"id": 3, "op": "get", "key": key})["value"] == "cookie-from-the-bundle"
        assert ask({"id": 4, "op": "delete", "key": key})["persistent"] is True
        assert SecretService.Keyring().get_password("tray-agent", key) is None  # type: ignore[no-untyped-call]
    finally:
        proc.stdin.close()
        code = proc.wait(RUN_TIMEOUT)  # the end of its input ends it
        proc.stdout.close()
        stderr = proc.stderr.read() if proc.stderr is not None else ""
        if proc.stderr is not None:
            proc.stderr.close()
    assert code == 0, stderr


def test_bundled_doctor_passes_on_the_desktop_against_its_demo_backend(
    build: Build, desktop: DesktopSession, tmp_path: Path
) -> None:
    # The frozen build's lazily imported parts: doctor, demo backend, keyring SecretService,
    # dbus-fast, sound players, and the self-test run by the frozen executable itself.
    env = {**desktop.env, "HOME": str(tmp_path)}
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    out = subprocess.run(
        [str(build.executable), "doctor", "--json", "--demo", "--basedir", str(tmp_path / "base")],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    report = json.loads(out.stdout)
    statuses = {check["check"]: check["status"] for check in report["checks"]}
    assert out.returncode == 0, report
    for check in ("settings", "keyring", "resources", "tray", "notifications", "audio", "tcp", "websocket"):
        assert statuses.get(check) == "OK", (check, report)
    # The session's watcher has no tray host (nothing draws icons): reported, not a failure.
    sni = next(check for check in report["checks"] if check["check"] == "sni")
    assert sni["watcher"] is True


def test_bundled_app_uses_native_notifications_on_the_desktop(
    build: Build, desktop: DesktopSession, tmp_path: Path
) -> None:
    # desktop-notifier reads its default icon from its package data when imported: a bundle
    # without desktop_notifier.resources falls back to tray messages.
    env = {**desktop.env, "HOME": str(tmp_path)}
    log = tmp_path / "base" / "log" / "tray-agent.log"
    app = subprocess.Popen(
        [str(build.executable), "--demo", "--basedir", str(tmp_path / "base")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def text() -> str:
        return log.read_text(errors="replace") if log.exists() else ""

    def started() -> bool:
        if app.poll() is not None:
            raise AssertionError(f"the bundle exited with {app.returncode}:\n{text()}")
        return "Notifications:" in text() or "not installed" in text()

    try:
        wait_until(started, APP_START_TIMEOUT, "the bundled app to set up its notifications")
    finally:
        app.terminate()
        try:
            app.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()
    assert "Notifications: native" in text(), text()
    assert "desktop-notifier is not installed" not in text()
