"""Export diagnostics: the zip has the expected members and nothing secret in any of them."""

from __future__ import annotations

import argparse
import asyncio
import json
import zipfile
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from tray_agent.core.settings import Settings
from tray_agent.core.settings_layers import Layer, LoadedSettings
from tray_agent.diagnostics import (
    DiagnosticsInput,
    collect_versions,
    local_checks,
    write_diagnostics_zip,
)

pytestmark = pytest.mark.integration

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudC0xIn0.c2lnbmF0dXJlLXNlY3JldA"
PASSWORD = "hunter2-very-secret"
COOKIE = "sess-5f1e2d3c4b5a69788796a5b4"
REFRESH = "rt-0a1b2c3d4e5f60718293a4b5"
SECRETS = (TOKEN, PASSWORD, COOKIE, REFRESH, "c2lnbmF0dXJlLXNlY3JldA")
AT = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


def loaded_with_a_token() -> LoadedSettings:
    settings = Settings()
    settings.connection.server = "https://support.example"
    settings.connection.email = "sam@example.com"
    settings.connection.token = SecretStr(TOKEN)
    settings.alerts.sounds = False
    return LoadedSettings(
        settings=settings,
        locked=frozenset({"alerts.sounds"}),
        sources={
            "connection.server": Layer.USER,
            "connection.token": Layer.ENV,
            "alerts.sounds": Layer.POLICY,
        },
        problems=["policy.toml: ui.theme: 'neon' is not a theme; ignored"],
        base_values={"alerts.sounds": False},
    )


def write_logs(log_dir) -> None:
    log_dir.mkdir()
    (log_dir / "tray-agent.log").write_text(
        "2026-03-04 09:00:00 INFO tray_agent.app: Connection: connected\n"
        f"2026-03-04 09:00:01 DEBUG tray_agent.net.auth: POST /login password={PASSWORD}\n"
        f"2026-03-04 09:00:02 DEBUG tray_agent.net.client: Cookie: session={COOKIE}; theme=dark\n",
        encoding="utf-8",
    )
    (log_dir / "tray-agent.log.1").write_text(
        f'old line from before redaction: {{"refresh_token": "{REFRESH}"}} Authorization: Bearer {TOKEN}\n'
        f"wss://host/ws?token={TOKEN}\n",
        encoding="utf-8",
    )
    (log_dir / "notes.txt").write_text("not a log file\n", encoding="utf-8")


def test_diagnostics_zip_has_its_members_and_no_secret(tmp_path) -> None:
    log_dir = tmp_path / "log"
    write_logs(log_dir)
    target = tmp_path / "out" / "tray-agent-diagnostics-2026-03-04.zip"
    target.parent.mkdir()
    inputs = DiagnosticsInput(
        loaded=loaded_with_a_token(),
        log_dir=log_dir,
        policy_sources=["/etc/xdg/tray-agent/policy.toml"],
        versions=collect_versions("SecretService Keyring"),
        store_problem="The local message store was damaged or unreadable.",
        doctor={"ok": True, "checks": [{"check": "settings", "status": "OK", "message": f"token={TOKEN}"}]},
        created_at=AT,
    )
    names = write_diagnostics_zip(target, inputs)

    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == sorted(names)
        assert set(names) == {
            "logs/tray-agent.log",
            "logs/tray-agent.log.1",
            "settings.json",
            "policy.json",
            "versions.json",
            "local-store.txt",
            "doctor.json",
        }
        members = {name: archive.read(name).decode("utf-8") for name in names}
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp file left

    for name, text in members.items():
        for secret in SECRETS:
            assert secret not in text, (name, secret)
    assert "Connection: connected" in members["logs/tray-agent.log"]
    assert "password=[REDACTED]" in members["logs/tray-agent.log"]

    settings = json.loads(members["settings.json"])
    assert "connection.token" not in settings["values"]
    assert "connection.token" not in settings["sources"]
    assert settings["values"]["connection.server"] == "https://support.example"
    assert settings["sources"]["alerts.sounds"] == "policy"
    policy = json.loads(members["policy.json"])
    assert policy["sources"] == ["/etc/xdg/tray-agent/policy.toml"]
    assert policy["locked"] == ["alerts.sounds"]
    assert policy["values"] == {"alerts.sounds": False}
    assert policy["problems"] == ["policy.toml: ui.theme: 'neon' is not a theme; ignored"]
    versions = json.loads(members["versions.json"])
    for key in ("tray-agent", "python", "os", "Qt", "PySide6", "websockets", "desktop-notifier"):
        assert versions[key], key
    assert "aiohttp" not in versions  # the demo server's, not the client's (net.http is stdlib)
    assert versions["keyring backend"] == "SecretService Keyring"
    assert "damaged" in members["local-store.txt"]
    assert json.loads(members["doctor.json"])["ok"] is True


def test_diagnostics_without_logs_or_doctor(tmp_path) -> None:
    target = tmp_path / "d.zip"
    names = write_diagnostics_zip(target, DiagnosticsInput(loaded=LoadedSettings(settings=Settings())))
    assert "doctor.json" not in names
    assert not any(n.startswith("logs/") for n in names)
    with zipfile.ZipFile(target) as archive:
        assert archive.read("local-store.txt").decode() == "No problem reported.\n"


def test_diagnostics_unwritable_target_raises_and_leaves_nothing(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        write_diagnostics_zip(
            tmp_path / "missing" / "d.zip", DiagnosticsInput(loaded=LoadedSettings(settings=Settings()))
        )
    assert list(tmp_path.iterdir()) == []


def test_diagnostics_local_doctor_checks_run_without_the_network(tmp_path) -> None:
    args = argparse.Namespace(basedir=str(tmp_path / "base"), demo=True)  # demo is never started here
    report = asyncio.run(local_checks(args, limit=30.0))
    assert report is not None
    checks = {c["check"] for c in report["checks"]}
    assert "settings" in checks
    assert not checks & {"network", "dns", "tcp", "tls", "websocket", "keyring", "tray"}
