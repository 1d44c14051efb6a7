"""Export diagnostics: a zip of the logs, settings without secrets, policy, versions and local checks.

Used by the app only (no command of its own): ``session.flows.AccountFlows`` hands over the
session's settings, keyring name and local store problem, and app.py the paths, to
:func:`export_diagnostics`, which
gathers the rest and calls :func:`write_diagnostics_zip` off the GUI thread; the doctor's quick
local checks come from :mod:`tray_agent.checks`, not from the ``doctor`` command. Qt is never
imported at module level (only :func:`collect_versions` asks it for its version, lazily).

What goes in, and what never does:

* ``logs/<file>``: every log file of the log directory, each line passed through
  :func:`tray_agent.core.redact.redact` again, in case a line predates redaction.
* ``settings.json``: the effective settings (``flatten_settings``) and the layer each key came
  from, **without** ``connection.token`` (the only secret setting; passwords, refresh tokens and
  session cookies live in the keyring and are never read here).
* ``policy.json``: the machine-policy sources, the keys they set and locked, and the problems
  met while loading the settings.
* ``versions.json``: app, Python, OS, Qt/PySide6, websockets, desktop-notifier, keyring
  and its backend.
* ``local-store.txt``: the local store's problem, if any.
* ``doctor.json``: the doctor's local checks (settings, desktop bus, audio), when they ran.

Every text member goes through ``redact`` once more before it is written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr

from tray_agent import __version__
from tray_agent.core.redact import REDACTED, redact
from tray_agent.core.settings_layers import SECRET_KEYS, Layer, LoadedSettings, flatten_settings

if TYPE_CHECKING:
    from tray_agent.platform.paths import Paths

logger = logging.getLogger(__name__)

LOG_PATTERNS = ("*.log", "*.log.*")
"""Log files taken from the log directory (the rotating file and its backups)."""
MAX_LOG_BYTES = 20 * 1024 * 1024
"""A log file larger than this is cut to its last MAX_LOG_BYTES (the newest lines matter)."""
DOCTOR_TIMEOUT = 5.0
"""Seconds the doctor's local checks may take before they are left out."""
DOCTOR_GROUPS = ("settings", "desktop", "audio")
"""The doctor's checks that stay on this machine and answer quickly (no network, no keyring prompt,
no child process)."""
PACKAGES = ("PySide6-Essentials", "websockets", "desktop-notifier", "keyring", "pydantic")
"""The client's third-party packages (aiohttp is the demo server's only: the client speaks HTTP with
the standard library, net.http)."""


@dataclass(frozen=True)
class DiagnosticsInput:
    """What the zip is built from (gathered by :func:`export_diagnostics`).

    Attributes:
        loaded: the loaded settings (values, layers, locks, problems).
        log_dir: the log directory (``paths.log``), or None.
        policy_sources: names of the machine-policy sources that were read.
        versions: from :func:`collect_versions`.
        store_problem: the local store's problem text ("" when all is well).
        doctor: the doctor's JSON report of local checks, or None when they did not run.
        created_at: when the export was made (UTC).
    """

    loaded: LoadedSettings
    log_dir: Path | None = None
    policy_sources: Sequence[str] = ()
    versions: Mapping[str, str] = field(default_factory=dict)
    store_problem: str = ""
    doctor: Mapping[str, Any] | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _json_default(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value, key=str)
    return str(value)


def _dumps(document: Any) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False, sort_keys=True, default=_json_default)


def redact_lines(text: str) -> str:
    """``text`` with every line passed through :func:`redact` (line ends kept)."""
    return "".join(redact(line) for line in text.splitlines(keepends=True))


def settings_document(loaded: LoadedSettings) -> dict[str, Any]:
    """The effective settings without secret keys, and the layer each key came from."""
    values = {k: v for k, v in flatten_settings(loaded.settings).items() if k not in SECRET_KEYS}
    sources = {k: str(v) for k, v in sorted(loaded.sources.items()) if k not in SECRET_KEYS}
    return {
        "values": values,
        "sources": sources,
        "secret_keys_left_out": sorted(SECRET_KEYS),
        "user_file": str(loaded.user_file) if loaded.user_file is not None else None,
        "user_file_ok": loaded.user_file_ok,
        "unknown_user_keys": sorted(loaded.user_unknown),
    }


def policy_document(loaded: LoadedSettings, policy_sources: Sequence[str]) -> dict[str, Any]:
    """The machine policy: its sources, the keys it set, the keys it locked, and load problems."""
    by_policy = sorted(k for k, layer in loaded.sources.items() if layer is Layer.POLICY)
    set_keys = sorted((set(by_policy) | set(loaded.locked)) - SECRET_KEYS)
    return {
        "sources": list(policy_sources),
        "values": {k: loaded.base_values.get(k) for k in set_keys},
        "set_by_policy": by_policy,
        "locked": sorted(loaded.locked),
        "problems": list(loaded.problems),
    }


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def collect_versions(keyring_backend: str | None = None) -> dict[str, str]:
    """Versions of the app, Python, the OS, Qt and the libraries that matter for support."""
    versions = {
        "tray-agent": __version__,
        "python": sys.version.replace("\n", " "),
        "os": platform.platform(),
        "frozen": str(bool(getattr(sys, "frozen", False))),
    }
    for name in PACKAGES:
        versions[name] = _package_version(name)
    try:
        from PySide6 import __version__ as pyside_version
        from PySide6.QtCore import qVersion

        versions["PySide6"] = pyside_version
        versions["Qt"] = qVersion()
    except ImportError:
        versions["Qt"] = "not available"
    versions["keyring backend"] = keyring_backend or "none (secrets in memory only)"
    return versions


async def local_checks(args: argparse.Namespace, limit: float = DOCTOR_TIMEOUT) -> dict[str, Any] | None:
    """The doctor's local checks as its JSON report, or None when they fail or take too long.

    Cancellation: cancelled with the caller; bounded by ``limit`` seconds.
    """
    from tray_agent.checks.report import collect, format_json

    quiet = argparse.Namespace(**{**vars(args), "demo": False})  # never start a demo server here
    try:
        results = await asyncio.wait_for(collect(quiet, groups=DOCTOR_GROUPS), limit)
    except TimeoutError:
        logger.info("Diagnostics: the doctor's local checks took over %.0f s; left out", limit)
        return None
    except Exception:
        logger.warning("Diagnostics: the doctor's local checks failed", exc_info=True)
        return None
    document: dict[str, Any] = json.loads(format_json(results))
    return document


def _log_files(log_dir: Path | None) -> list[Path]:
    if log_dir is None or not log_dir.is_dir():
        return []
    found: set[Path] = set()
    for pattern in LOG_PATTERNS:
        found.update(p for p in log_dir.glob(pattern) if p.is_file())
    return sorted(found)


def _read_log(path: Path) -> str:
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - MAX_LOG_BYTES))
        data = handle.read()
    text = data.decode("utf-8", errors="replace")
    if size > MAX_LOG_BYTES:
        text = "[earlier lines left out]\n" + text.partition("\n")[2]
    return text


def build_members(inputs: DiagnosticsInput) -> dict[str, str]:
    """Every member of the zip by name, already redacted (pure apart from reading the logs)."""
    members: dict[str, str] = {}
    for path in _log_files(inputs.log_dir):
        try:
            members[f"logs/{path.name}"] = _read_log(path)  # redacted with every member below
        except OSError as exc:
            members[f"logs/{path.name}.unreadable.txt"] = f"could not read: {exc.strerror or exc}\n"
    members["settings.json"] = _dumps(settings_document(inputs.loaded))
    members["policy.json"] = _dumps(policy_document(inputs.loaded, inputs.policy_sources))
    members["versions.json"] = _dumps(
        {**inputs.versions, "exported_at": inputs.created_at.isoformat(timespec="seconds")}
    )
    members["local-store.txt"] = (inputs.store_problem or "No problem reported.") + "\n"
    if inputs.doctor is not None:
        members["doctor.json"] = _dumps(inputs.doctor)
    # Belt and braces: whatever a value held, nothing secret-looking leaves the machine.
    return {name: redact_lines(text) for name, text in members.items()}


def write_diagnostics_zip(target: Path, inputs: DiagnosticsInput) -> list[str]:
    """Write the diagnostics zip to ``target`` atomically (temp file + replace). Blocking.

    Returns:
        The member names, in the order written.

    Raises:
        OSError: the file could not be written (the caller tells the agent).
    """
    members = build_members(inputs)
    target = Path(target)
    fd, temp_name = tempfile.mkstemp(prefix=".tray-agent-diagnostics-", suffix=".zip", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            stamp = inputs.created_at.astimezone(UTC).timetuple()[:6]
            for name, text in members.items():
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, text.encode("utf-8"))
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    logger.info("Diagnostics written (%d members)", len(members))
    return list(members)


async def export_diagnostics(
    target: Path,
    *,
    args: argparse.Namespace,
    paths: Paths,
    loaded: LoadedSettings,
    keyring_backend: str | None,
    store_problem: str,
    now: Callable[[], datetime],
) -> None:
    """Gather the inputs (policy sources, the bounded local checks, versions) and write the zip.

    The policy files are read and the zip is written in an executor (off the GUI thread).

    Args:
        target: where the zip goes.
        args: the app's command line (the local checks read it).
        paths: the app's directories (the logs, the policy sources).
        loaded: the settings in force.
        keyring_backend: the keyring's backend name, if known.
        store_problem: the local store's problem ("" when all is well).
        now: the clock, read once the checks are done (the zip's date).

    Raises:
        Exception: whatever gathering or writing raised (the caller tells the agent).
    """
    from tray_agent.platform.paths import read_policy_sources

    loop = asyncio.get_running_loop()
    sources = await loop.run_in_executor(None, read_policy_sources, paths)
    doctor = await local_checks(args)
    inputs = DiagnosticsInput(
        loaded=loaded,
        log_dir=paths.log,
        policy_sources=[name for name, _source in sources],
        versions=collect_versions(keyring_backend),
        store_problem=store_problem,
        doctor=doctor,
        created_at=now(),
    )
    await loop.run_in_executor(None, write_diagnostics_zip, target, inputs)
