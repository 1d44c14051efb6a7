# mypy: disable-error-code="no-untyped-call"
"""Tests for the keyring secret store, its memory fallback, and the memory store."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import keyring
import keyring.backend
import keyring.core
import keyring.errors
import pytest
from keyring.backends import chainer, fail, null

from tests.helpers.keyring_backends import FakeKeyring
from tray_agent.core.ports import SecretStore
from tray_agent.platform import secrets
from tray_agent.platform.secrets import (
    NO_KEYRING,
    SERVICE,
    KeyringSecretStore,
    MemorySecretStore,
    is_insecure_backend,
)

KEY = "org:https://support.example.com:alice@example.com:refresh_token"


class FailingKeyring(FakeKeyring):
    """A backend whose every call raises the given error (locked, dismissed prompt, D-Bus ...)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def get_password(self, service: str, username: str) -> str | None:
        raise self.error

    def set_password(self, service: str, username: str, password: str) -> None:
        raise self.error


class PlaintextKeyring(FakeKeyring):
    """Stands in for keyrings.alt.file.PlaintextKeyring (a base64 file)."""


PlaintextKeyring.__module__ = "keyrings.alt.file"


def test_memory_store_round_trip() -> None:
    store: SecretStore = MemorySecretStore()
    assert store.persistent is False
    assert store.get(KEY) is None
    store.set(KEY, "rt-1")
    assert store.get(KEY) == "rt-1"
    store.delete(KEY)
    store.delete(KEY)  # absent: no error
    assert store.get(KEY) is None


def test_keyring_store_uses_global_keyring(fake_keyring: FakeKeyring) -> None:
    store: SecretStore = KeyringSecretStore()
    assert store.persistent
    store.set(KEY, "rt-1")
    assert fake_keyring.values == {(SERVICE, KEY): "rt-1"}
    assert store.get(KEY) == "rt-1"
    store.delete(KEY)
    store.delete(KEY)  # PasswordDeleteError for a missing key is not a failure
    assert store.get(KEY) is None
    assert store.persistent


def test_keyring_store_problem_and_probe(fake_keyring: FakeKeyring) -> None:
    store = KeyringSecretStore()
    assert store.problem is None
    assert store.probe() is True
    assert store.backend_name is not None
    assert store.backend_name.endswith("FakeKeyring")


@pytest.mark.parametrize(
    "error",
    [
        keyring.errors.NoKeyringError("No recommended backend was available."),
        keyring.errors.InitError("Failed to create the collection: Prompt dismissed.."),
        keyring.errors.KeyringLocked("Failed to unlock the keyring!"),
        ConnectionError("org.freedesktop.DBus.Error.ServiceUnknown"),
    ],
)
def test_keyring_store_falls_back_to_memory_when_backend_raises(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    store = KeyringSecretStore(backend=FailingKeyring(error))
    assert store.persistent  # not known until the first call
    store.set(KEY, "rt-secret-value")
    assert store.persistent is False
    assert store.problem is not None
    assert "sign in again" in store.problem
    if isinstance(error, keyring.errors.NoKeyringError):
        assert store.problem == NO_KEYRING
    assert store.get(KEY) == "rt-secret-value"  # still works for this run
    store.delete(KEY)
    assert store.get(KEY) is None
    assert "rt-secret-value" not in caplog.text


def test_keyring_store_get_failure_falls_back() -> None:
    store = KeyringSecretStore(backend=FailingKeyring(keyring.errors.KeyringLocked("locked")))
    assert store.get(KEY) is None
    assert store.persistent is False


def test_keyring_store_delete_failure_falls_back() -> None:
    class DeleteFails(FakeKeyring):
        def delete_password(self, service: str, username: str) -> None:
            raise keyring.errors.InitError("Prompt dismissed")

    store = KeyringSecretStore(backend=DeleteFails())
    store.delete(KEY)
    assert store.persistent is False


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()])
def test_keyring_store_refuses_fail_and_null_backends(backend: keyring.backend.KeyringBackend) -> None:
    store = KeyringSecretStore(backend=backend)
    assert store.persistent is False
    assert store.problem == NO_KEYRING
    store.set(KEY, "v")
    assert store.get(KEY) == "v"


def test_keyring_store_refuses_global_fail_backend() -> None:
    original = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        store = KeyringSecretStore()
    finally:
        keyring.set_keyring(original)
    assert store.persistent is False
    assert store.problem == NO_KEYRING


def test_keyring_store_refuses_plaintext_backend() -> None:
    backend = PlaintextKeyring()
    assert is_insecure_backend(backend)
    store = KeyringSecretStore(backend=backend)
    assert store.persistent is False
    assert store.problem is not None
    assert "plain file" in store.problem
    store.set(KEY, "rt-1")
    assert backend.values == {}  # never written to the file backend
    assert store.get(KEY) == "rt-1"


def test_keyring_store_plaintext_only_when_allowed() -> None:
    backend = PlaintextKeyring()
    store = KeyringSecretStore(backend=backend, allow_plaintext=True)
    store.set(KEY, "rt-1")
    assert backend.values == {(SERVICE, KEY): "rt-1"}


def _chainer_of(*backends: keyring.backend.KeyringBackend) -> chainer.ChainerBackend:
    # A subclass, not monkeypatch.setattr: reading the real ``backends`` class property would
    # probe every installed backend (and D-Bus) in whatever environment the test runs in.
    class _Chainer(chainer.ChainerBackend):
        pass

    _Chainer.backends = list(backends)  # type: ignore[misc]
    return _Chainer()


def test_keyring_store_chainer_skips_plaintext() -> None:
    secure = FakeKeyring()
    plaintext = PlaintextKeyring()
    store = KeyringSecretStore(backend=_chainer_of(plaintext, secure))
    store.set(KEY, "rt-1")
    assert secure.values == {(SERVICE, KEY): "rt-1"}
    assert plaintext.values == {}

    assert KeyringSecretStore(backend=_chainer_of(plaintext)).persistent is False
    assert KeyringSecretStore(backend=_chainer_of()).problem == NO_KEYRING


def test_keyring_store_backend_discovery_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> keyring.backend.KeyringBackend:
        raise keyring.errors.InitError("no D-Bus session")

    monkeypatch.setattr(secrets, "detect_backend", broken)
    store = KeyringSecretStore()
    assert store.persistent is False
    assert store.problem is not None
    assert "no D-Bus session" in store.problem


def test_keyring_store_never_logs_values(fake_keyring: FakeKeyring, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        store = KeyringSecretStore()
        store.set(KEY, "rt-very-secret")
        store.get(KEY)
    assert "rt-very-secret" not in caplog.text


# --- which backend a store picks by itself (detect_backend) ------------------------------------

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux detection path")


@pytest.fixture
def unchosen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No backend chosen by the program (set_keyring), the environment or keyring's config file."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))

    def every_backend() -> list[keyring.backend.KeyringBackend]:
        raise AssertionError("keyring's detection of every backend and plugin ran")

    monkeypatch.setattr(keyring.backend, "get_all_keyring", every_backend)


@linux_only
@pytest.mark.usefixtures("unchosen")
def test_no_session_bus_means_memory_without_probing_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    store = KeyringSecretStore()
    assert store.persistent is False
    assert store.problem == NO_KEYRING
    store.set(KEY, "rt-1")
    assert store.get(KEY) == "rt-1"


@linux_only
@pytest.mark.usefixtures("unchosen")
def test_unreachable_secret_service_means_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    store = KeyringSecretStore()
    assert store.persistent is False
    assert store.problem == NO_KEYRING


@linux_only
@pytest.mark.usefixtures("unchosen")
def test_session_bus_uses_the_secret_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from keyring.backends import SecretService

    class FakeSecretService(FakeKeyring):
        pass

    monkeypatch.setattr(SecretService, "Keyring", FakeSecretService)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'bus'}")
    store = KeyringSecretStore()
    assert store.persistent
    assert store.backend_name is not None
    assert store.backend_name.endswith("FakeSecretService")


@pytest.mark.usefixtures("unchosen")
def test_backend_chosen_in_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", f"{__name__}.FakeKeyring")
    store = KeyringSecretStore()
    assert store.persistent
    assert store.backend_name is not None
    assert store.backend_name.endswith("FakeKeyring")


@linux_only
def test_memory_fallback_does_not_import_keyring(tmp_path: Path) -> None:
    """Without a session bus nothing of keyring (or secretstorage, cryptography) is loaded."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "PYTHON_KEYRING_BACKEND")
    }
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    code = (
        "import sys\n"
        "from tray_agent.platform.secrets import KeyringSecretStore\n"
        "store = KeyringSecretStore()\n"
        "print(store.persistent, sorted(m for m in ('keyring', 'secretstorage') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "[]"]
