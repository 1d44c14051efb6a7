"""Secrets in the OS keyring (``keyring``), with an in-memory fallback for this run only.

Every call blocks (D-Bus, Keychain, Credential Manager; an unlock prompt may appear), so async
code calls them through ``loop.run_in_executor(None, store.get, key)``.

Secrets are stored under the service name ``"tray-agent"`` with keys
``"<dialect>:<server>:<tenant>:<account>:<kind>"`` (see
:func:`tray_agent.core.settings.secret_key` / ``ConnectionSettings.secret_key``), e.g.
``"org:https://support.example.com:org-1:alice@example.com:refresh_token"``.

Plain-file keyrings (``keyrings.alt`` ``PlaintextKeyring`` and friends) are refused unless
explicitly allowed: a token is never written to a plain file. Values are never logged.

The tray app, ``listen`` and ``doctor`` do not run this store in their own process: they use
:class:`tray_agent.platform.secret_helper.HelperSecretStore`, which runs it in the short-lived
``tray-agent secret-helper`` process, so that keyring never stays resident in theirs.

``keyring`` is imported only when a store is made, and on Linux only the Secret Service backend
is probed (see :func:`detect_backend`): importing and probing all of keyring's backends and
plugins costs several MB of resident memory for a run that uses one of them, or none.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tray_agent.core.redact import redact

if TYPE_CHECKING:
    import keyring.backend

logger = logging.getLogger(__name__)

SERVICE = "tray-agent"

NO_KEYRING = "No system keyring is available; you will be asked to sign in again next time."
KEYRING_FAILED = "The system keyring did not work ({reason}); you will be asked to sign in again next time."
PLAINTEXT_REFUSED = (
    "The only keyring available stores passwords in a plain file ({backend}), which this app "
    "does not use; you will be asked to sign in again next time."
)

__all__ = [
    "NO_KEYRING",
    "SERVICE",
    "KeyringSecretStore",
    "MemorySecretStore",
    "is_insecure_backend",
    "no_session_bus",
]


class MemorySecretStore:
    """Secrets in a dict, for this run only (the fallback, and tests). Thread-safe."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def persistent(self) -> bool:
        """Always False: nothing survives the process."""
        return False

    @property
    def problem(self) -> str | None:
        """None: a memory store is used on purpose."""
        return None

    def get(self, key: str) -> str | None:
        """The secret, or None."""
        with self._lock:
            return self._values.get(key)

    def set(self, key: str, value: str) -> None:
        """Keep ``value`` until the process ends."""
        with self._lock:
            self._values[key] = value

    def delete(self, key: str) -> None:
        """Forget ``key`` if present."""
        with self._lock:
            self._values.pop(key, None)


def _backend_name(backend: keyring.backend.KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def is_insecure_backend(backend: keyring.backend.KeyringBackend) -> bool:
    """True for keyrings that keep secrets in a plain (or merely encoded) file.

    That is every ``keyrings.alt`` file backend (``PlaintextKeyring``, and ``EncryptedKeyring``,
    which also needs a typed master password) and anything named like a plaintext keyring.
    """
    module = type(backend).__module__
    name = type(backend).__name__.lower()
    return module.startswith("keyrings.alt") or "plaintext" in name


def _usable(
    backend: keyring.backend.KeyringBackend, allow_plaintext: bool
) -> tuple[keyring.backend.KeyringBackend | None, str | None]:
    """The backend to use (or None) and the problem to report."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring | null.Keyring):
        return None, NO_KEYRING
    if isinstance(backend, chainer.ChainerBackend):
        # The chainer would fall through to any viable backend, a plaintext one included; use the
        # best acceptable one directly instead.
        candidates = [b for b in backend.backends if not isinstance(b, fail.Keyring | null.Keyring)]
        for candidate in candidates:
            if allow_plaintext or not is_insecure_backend(candidate):
                return candidate, None
        if candidates:
            return None, PLAINTEXT_REFUSED.format(backend=_backend_name(candidates[0]))
        return None, NO_KEYRING
    if is_insecure_backend(backend) and not allow_plaintext:
        return None, PLAINTEXT_REFUSED.format(backend=_backend_name(backend))
    return backend, None


def _keyring_chosen() -> bool:
    """True when the program or the user chose a keyring backend: keyring's own choice then."""
    core = sys.modules.get("keyring.core")
    if core is not None and getattr(core, "_keyring_backend", None) is not None:
        return True  # keyring.set_keyring(), or keyring's detection already ran in this process
    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        return True
    # keyring's config file on Linux (keyring.util.platform_.config_root): a default-keyring there.
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home, "python_keyring", "keyringrc.cfg").exists()


def no_session_bus() -> bool:
    """True when :func:`detect_backend` would find nothing without importing keyring.

    On Linux with no backend chosen and no ``DBUS_SESSION_BUS_ADDRESS`` there is no Secret
    Service to reach. Cheap (no keyring import): the app's store asks it before it starts a helper.
    """
    return (
        sys.platform.startswith("linux")
        and not _keyring_chosen()
        and not os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    )


def detect_backend() -> keyring.backend.KeyringBackend | None:
    """The keyring backend for this run; None when there is none. Blocks (D-Bus): not on the GUI thread.

    Off Linux, or when a backend was chosen (``keyring.set_keyring``, ``PYTHON_KEYRING_BACKEND``,
    keyring's ``keyringrc.cfg``): ``keyring.get_keyring()``, as keyring decides. On Linux
    otherwise the Secret Service only (GNOME Keyring, KeePassXC and KWallet 5.97 and later
    provide it): keyring's detection would import and probe every backend and plugin to arrive
    at it. Without a session bus address (``DBUS_SESSION_BUS_ADDRESS``, the only one jeepney
    uses) there is no Secret Service, and keyring is not imported at all.

    Raises:
        Exception: whatever keyring's own detection raises (the caller falls back to memory).
    """
    if not sys.platform.startswith("linux") or _keyring_chosen():
        import keyring

        return keyring.get_keyring()
    if no_session_bus():
        logger.debug("No D-Bus session bus: no Secret Service")
        return None
    from keyring.backends import SecretService

    try:
        SecretService.Keyring.priority  # noqa: B018 (raises when not reachable)
    except Exception as exc:  # not viable, as keyring's detection counts it (any error)
        logger.debug("No Secret Service: %s: %s", type(exc).__name__, redact(str(exc)))
        return None
    return SecretService.Keyring()  # type: ignore[no-untyped-call]


class KeyringSecretStore:
    """:class:`~tray_agent.core.ports.SecretStore` on the OS keyring, falling back to memory.

    When no usable keyring exists (``NoKeyringError``, ``InitError``, a locked keyring or a
    dismissed unlock prompt, a D-Bus error, keyring's ``fail``/``null`` backend, or a refused
    plaintext backend), or when a call to it fails, the store switches to memory for the rest of
    the run: :attr:`persistent` becomes False and :attr:`problem` says so in plain words (the UI
    and ``doctor`` show it). Secrets set before the switch are not carried over (they may be in
    the keyring still; they are read again next run).

    All methods block; from async code use ``run_in_executor``. Never raises, never logs values.
    """

    def __init__(
        self,
        service: str = SERVICE,
        *,
        backend: keyring.backend.KeyringBackend | None = None,
        allow_plaintext: bool = False,
    ) -> None:
        """Pick the keyring backend.

        Args:
            service: The keyring service name.
            backend: Backend to use; default :func:`detect_backend` (the user's configured one,
                else on Linux the Secret Service, else keyring's best detected one).
            allow_plaintext: Accept a plain-file backend (never in the shipped app).
        """
        self._service = service
        self._memory = MemorySecretStore()
        self._lock = threading.Lock()
        self._problem: str | None = None
        self._backend: keyring.backend.KeyringBackend | None = None
        try:
            chosen = backend if backend is not None else detect_backend()
        except Exception as exc:  # backend discovery can fail in odd environments
            self._fall_back(exc)
            return
        if chosen is None:
            self._problem = NO_KEYRING
            logger.warning("Secrets are kept in memory only: %s", self._problem)
            return
        usable, problem = _usable(chosen, allow_plaintext)
        if usable is None:
            self._problem = problem or NO_KEYRING
            logger.warning(
                "Secrets are kept in memory only: %s (backend %s)", self._problem, _backend_name(chosen)
            )
        else:
            self._backend = usable
            logger.debug("Secrets go to keyring backend %s", _backend_name(usable))

    @property
    def persistent(self) -> bool:
        """True while secrets go to the OS keyring."""
        return self._backend is not None

    @property
    def problem(self) -> str | None:
        """Why secrets are not kept across runs, in plain words; None while they are."""
        return self._problem

    @property
    def backend_name(self) -> str | None:
        """The keyring backend in use (for ``doctor``), or None in memory mode."""
        return _backend_name(self._backend) if self._backend is not None else None

    def probe(self) -> bool:
        """Touch the keyring once (may show an unlock prompt) so that :attr:`persistent` is known.

        Returns:
            :attr:`persistent` afterwards.
        """
        self.get(f"{self._service}:probe")
        return self.persistent

    def _fall_back(self, exc: BaseException) -> None:
        import keyring.errors

        with self._lock:
            self._backend = None
            if isinstance(exc, keyring.errors.NoKeyringError):
                self._problem = NO_KEYRING
            else:
                reason = redact(str(exc)) or type(exc).__name__
                self._problem = KEYRING_FAILED.format(reason=reason)
        logger.warning(
            "Keyring failed (%s: %s); secrets are kept in memory for this run",
            type(exc).__name__,
            redact(str(exc)),
        )

    def get(self, key: str) -> str | None:
        """The secret for ``key``, or None (also when the keyring fails)."""
        backend = self._backend
        if backend is not None:
            try:
                return backend.get_password(self._service, key)
            except Exception as exc:  # keyring, D-Bus (jeepney/secretstorage), OS errors alike
                self._fall_back(exc)
        return self._memory.get(key)

    def set(self, key: str, value: str) -> None:
        """Store ``value`` for ``key``; in memory if the keyring fails."""
        backend = self._backend
        if backend is not None:
            try:
                backend.set_password(self._service, key, value)
            except Exception as exc:
                self._fall_back(exc)
            else:
                return
        self._memory.set(key, value)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present, from the keyring and from memory."""
        self._memory.delete(key)
        backend = self._backend
        if backend is None:
            return
        import keyring.errors

        try:
            backend.delete_password(self._service, key)
        except keyring.errors.PasswordDeleteError:
            pass  # not there: nothing to do
        except Exception as exc:
            self._fall_back(exc)
