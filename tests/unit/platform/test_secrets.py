# mypy: disable-error-code="no-untyped-call"
"""Tests for the keyring secret store, its memory fallback, and the memory store."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import keyring
import keyring.backend
import keyring.errors
import pytest
from keyring.backends import chainer, fail, null

from tray_agent.core.ports import SecretStore
from tray_agent.platform.secrets import (
    NO_KEYRING,
    SERVICE,
    KeyringSecretStore,
    MemorySecretStore,
    is_insecure_backend,
)

KEY = "org:https://support.example.com:alice@example.com:refresh_token"


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


@pytest.fixture
def fake_keyring() -> Iterator[FakeKeyring]:
    original = keyring.get_keyring()
    backend = FakeKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(original)


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

    monkeypatch.setattr(keyring, "get_keyring", broken)
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
