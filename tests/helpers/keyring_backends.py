"""keyring backends for tests of the keyring helper process (chosen with ``PYTHON_KEYRING_BACKEND``).

A helper is a fresh process, so its backend is named in the environment, e.g.
``PYTHON_KEYRING_BACKEND=tests.helpers.keyring_backends.FileKeyring`` with the repository on
``PYTHONPATH``; :class:`FileKeyring` keeps its values in the JSON file named by
``TRAY_AGENT_TEST_KEYRING`` so that a test can look at what the "keyring" holds.
:class:`FakeKeyring` keeps its values in memory, for tests that run keyring in their own process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keyring.backend
import keyring.errors

KEYRING_FILE = "TRAY_AGENT_TEST_KEYRING"


class FileKeyring(keyring.backend.KeyringBackend):
    """Values in a JSON file ``{"service\\tkey": value}`` (the test's stand-in for the OS keyring)."""

    priority = 1

    @staticmethod
    def _path() -> Path:
        return Path(os.environ[KEYRING_FILE])

    def _load(self) -> dict[str, str]:
        path = self._path()
        return dict(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else {}

    def _save(self, values: dict[str, str]) -> None:
        self._path().write_text(json.dumps(values), encoding="utf-8")

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\t{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        values = self._load()
        values[f"{service}\t{username}"] = password
        self._save(values)

    def delete_password(self, service: str, username: str) -> None:
        values = self._load()
        if values.pop(f"{service}\t{username}", None) is None:
            raise keyring.errors.PasswordDeleteError("not found")
        self._save(values)


class LockedKeyring(FileKeyring):
    """A keyring whose unlock prompt was dismissed: every call raises ``KeyringLocked``."""

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("Failed to unlock the keyring!")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.KeyringLocked("Failed to unlock the keyring!")


class FakeKeyring(keyring.backend.KeyringBackend):
    """An in-memory keyring backend."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.values.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.values[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.values[(service, username)]
        except KeyError:
            raise keyring.errors.PasswordDeleteError("not found") from None
