"""The keyring in a short-lived helper process: its line-JSON protocol, its loop, and the app's store on it.

keyring's Secret Service backend pulls in SecretStorage, jeepney and cryptography: about 11 MB
of resident memory that would stay in the tray process for its whole life, for a handful of
keyring calls (read the saved sign-in at start-up, write it at sign-in and token renewals,
delete it at sign-out). So the app never imports keyring: :class:`HelperSecretStore` starts
``tray-agent secret-helper`` (:func:`helper_command`), which runs
:class:`~tray_agent.platform.secrets.KeyringSecretStore` (keyring does the work, with the same
backend choice and refusals as before) and answers on its stdout.

Protocol (one JSON object per line, ASCII, both ways; secrets only ever travel through the pipes,
never in argv or the environment)::

    -> {"id": 1, "op": "status"}
    <- {"id": 1, "value": null, "persistent": true, "problem": null, "backend": "keyring.backends..."}
    -> {"id": 2, "op": "get", "key": "org:...:refresh_token"}
    <- {"id": 2, "value": "rt-...", "persistent": true, "problem": null, "backend": "..."}
    -> {"id": 3, "op": "set", "key": "...", "value": "..."}      (and "delete" with a key)
    <- {"id": 3, "error": "bad request: ..."}                    (a request it cannot read)

Every reply carries the helper's keyring state after the operation: ``persistent`` false means
the keyring failed or is absent, and ``problem`` says why in the app's words (no keyring, locked
or denied, plaintext backend refused). The helper reads requests until its stdin ends, then exits.

The app side starts one helper for a burst of operations (start-up reads the sign-in it needs
through one process) and closes it ``linger`` seconds after the last one. A helper that cannot
start, crashes, sends garbage or does not answer within ``timeout`` (killed by PID) turns the
store to memory for the rest of the run, as a failing keyring does, with a plain-words problem.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from tray_agent.core.redact import redact
from tray_agent.platform.secrets import (
    KEYRING_FAILED,
    NO_KEYRING,
    SERVICE,
    MemorySecretStore,
    no_session_bus,
)

logger = logging.getLogger(__name__)

__all__ = ["HELPER_COMMAND", "HelperSecretStore", "helper_command", "run_helper", "serve"]

HELPER_COMMAND = "secret-helper"
"""The hidden subcommand of ``tray-agent`` that runs :func:`run_helper`."""

OP_TIMEOUT = 60.0
"""Seconds one operation may take (start-up and an unlock prompt the agent answers included)."""
LINGER = 5.0
"""Seconds a helper stays after its last operation, so that a burst shares one process."""
CLOSE_TIMEOUT = 5.0
"""Seconds a helper has to exit once its stdin is closed, before it is killed."""
MAX_LINE = 1 << 20
"""The longest reply line read; a longer one is garbage."""
STDERR_TAIL = 2000
"""How much of a failed helper's stderr goes to the log (redacted)."""

OPS = ("status", "get", "set", "delete")

# ---------------------------------------------------------------------------------------------
# The protocol


class ProtocolError(ValueError):
    """A line that is not a valid request or reply."""


def encode(message: dict[str, Any]) -> str:
    """One protocol line (ASCII JSON: a value's newlines and non-ASCII characters are escaped)."""
    return json.dumps(message, ensure_ascii=True, separators=(",", ":")) + "\n"


def _json_object(line: str) -> dict[str, Any]:
    """The JSON object on ``line``.

    Raises:
        ProtocolError: not JSON, or not an object.
    """
    try:
        message = json.loads(line)
    except ValueError:
        raise ProtocolError("not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("not an object")
    return message


def parse_request(line: str) -> tuple[int, str, str, str | None]:
    """``(id, op, key, value)`` of a request line.

    Raises:
        ProtocolError: not JSON, not an object, an unknown op, or a missing or mistyped field.
    """
    message = _json_object(line)
    request_id, op = message.get("id"), message.get("op")
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise ProtocolError("no integer id")
    if op not in OPS:
        raise ProtocolError("unknown op")
    key, value = message.get("key", ""), message.get("value")
    if op != "status" and (not isinstance(key, str) or not key):
        raise ProtocolError(f"{op} needs a key")
    if op == "set" and not isinstance(value, str):
        raise ProtocolError("set needs a string value")
    return request_id, str(op), str(key), value if op == "set" else None


class Reply:
    """One reply: the value read (get) and the helper's keyring state after the operation."""

    __slots__ = ("backend", "persistent", "problem", "value")

    def __init__(self, value: str | None, persistent: bool, problem: str | None, backend: str | None) -> None:
        """Keep the fields (see the module docstring)."""
        self.value = value
        self.persistent = persistent
        self.problem = problem
        self.backend = backend


def parse_reply(line: str, expected_id: int) -> Reply:
    """The reply to request ``expected_id``.

    Raises:
        ProtocolError: not a well-formed reply, an error reply, or the reply to another request.
    """
    message = _json_object(line)
    if message.get("id") != expected_id:
        raise ProtocolError("a reply to another request")
    if "error" in message:
        raise ProtocolError(f"refused the request: {message['error']}")
    value, persistent = message.get("value"), message.get("persistent")
    problem, backend = message.get("problem"), message.get("backend")
    if not isinstance(persistent, bool):
        raise ProtocolError("no persistent flag")
    for name, field in (("value", value), ("problem", problem), ("backend", backend)):
        if field is not None and not isinstance(field, str):
            raise ProtocolError(f"{name} is not a string")
    return Reply(value, persistent, problem, backend)


# ---------------------------------------------------------------------------------------------
# The helper (runs in the child process)


def serve(requests: IO[str], replies: IO[str], service: str = SERVICE) -> int:
    """Answer requests line by line until ``requests`` ends; returns the exit code (0).

    The keyring is opened at the first request (:class:`KeyringSecretStore`: the same backend
    choice, refusals and messages as in the app). A bad line gets an error reply; nothing here
    raises out, and values are never logged.
    """
    from tray_agent.platform.secrets import KeyringSecretStore

    store: KeyringSecretStore | None = None
    for line in iter(lambda: requests.readline(MAX_LINE), ""):
        if not line.strip():
            continue
        try:
            request_id, op, key, value = parse_request(line)
        except ProtocolError as exc:
            replies.write(encode({"id": _id_of(line), "error": f"bad request: {exc}"}))
            replies.flush()
            continue
        if store is None:
            store = KeyringSecretStore(service)
        result: str | None = None
        if op == "get":
            result = store.get(key)
        elif op == "set" and value is not None:
            store.set(key, value)
        elif op == "delete":
            store.delete(key)
        replies.write(
            encode(
                {
                    "id": request_id,
                    "value": result,
                    "persistent": store.persistent,
                    "problem": store.problem,
                    "backend": store.backend_name,
                }
            )
        )
        replies.flush()
    return 0


def _id_of(line: str) -> int | None:
    with contextlib.suppress(ValueError, AttributeError):
        request_id = json.loads(line).get("id")
        if isinstance(request_id, int) and not isinstance(request_id, bool):
            return request_id
    return None


def run_helper() -> int:
    """``tray-agent secret-helper``: serve the protocol on stdin/stdout; returns the exit code.

    Only the replies go to stdout: anything a library prints goes to stderr instead, so it can
    never be taken for a reply.
    """
    stdin, stdout = sys.stdin, sys.stdout
    if stdin is None or stdout is None:  # a windowed build started without pipes
        return 2
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, format="secret-helper: %(levelname)s %(message)s")
    try:
        return serve(stdin, stdout)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0  # the app went away: nothing left to answer


# ---------------------------------------------------------------------------------------------
# The app's side


def helper_command() -> list[str]:
    """How to start the helper: the bundle's executable when frozen, else ``python -m tray_agent``."""
    if getattr(sys, "frozen", False):
        return [sys.executable, HELPER_COMMAND]
    return [sys.executable, "-m", "tray_agent", HELPER_COMMAND]


def _helper_environment() -> dict[str, str]:
    """The app's environment, with this very ``tray_agent`` importable by a source checkout's helper."""
    env = dict(os.environ)
    if getattr(sys, "frozen", False):
        # PyInstaller: the child is a new instance of the bundle, not a worker of this one.
        env["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
        return env
    root = str(Path(__file__).resolve().parents[2])
    if Path(root).name not in ("site-packages", "dist-packages"):
        parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if root not in parts:
            env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return env


class _HelperError(Exception):
    """The helper did not give a usable reply; the message says why, in plain words."""


class _Helper:
    """One running helper process: its pipes, a reader thread, and its stderr in a temporary file."""

    def __init__(self, command: Sequence[str], env: dict[str, str] | None) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        creationflags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
        try:
            self.process = subprocess.Popen(
                list(command),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
                text=True,
                encoding="utf-8",
                errors="replace",
                creationflags=creationflags,
            )
        except Exception as exc:
            self._stderr.close()
            raise _HelperError(f"its helper process did not start: {type(exc).__name__}") from exc
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name="secret-helper-reader", daemon=True).start()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def _read(self) -> None:
        stdout = self.process.stdout
        try:
            if stdout is not None:
                for line in iter(lambda: stdout.readline(MAX_LINE), ""):
                    self._lines.put(line)
        except (OSError, ValueError):
            pass  # the pipe was closed under us: same as its end
        finally:
            self._lines.put(None)

    def ask(self, line: str, request_id: int, timeout: float) -> Reply:
        """Send one request and wait for its reply.

        Raises:
            _HelperError: the helper is gone, silent for ``timeout`` s, or said something else.
        """
        stdin = self.process.stdin
        try:
            if stdin is None:
                raise OSError("no stdin pipe")
            stdin.write(line)
            stdin.flush()
        except (OSError, ValueError):
            raise _HelperError(self._ended()) from None
        try:
            answer = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise _HelperError(f"its helper process did not answer within {timeout:.0f} s") from None
        if answer is None:
            raise _HelperError(self._ended())
        try:
            return parse_reply(answer, request_id)
        except ProtocolError as exc:
            raise _HelperError(f"its helper process sent an unreadable reply ({exc})") from None

    def _ended(self) -> str:
        try:
            code = self.process.wait(CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return "its helper process stopped answering"
        return f"its helper process ended unexpectedly (exit code {code})"

    def kill(self) -> None:
        """Kill the process by its id (the reader then sees its end)."""
        with contextlib.suppress(OSError):
            self.process.kill()

    def stop(self, *, kill: bool = False) -> int | None:
        """End the process: EOF on its stdin (or a kill), then reap it. Returns its exit code."""
        process = self.process
        if kill and process.poll() is None:
            self.kill()
        if process.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                process.stdin.close()
        try:
            code = process.wait(CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.warning("The keyring helper (pid %d) did not exit; killing it", process.pid)
            with contextlib.suppress(OSError):
                process.kill()
            code = process.wait()
        if process.stdout is not None:
            with contextlib.suppress(OSError, ValueError):
                process.stdout.close()
        self._stderr.close()
        return code

    def stderr_tail(self) -> str:
        """The end of what the helper wrote to stderr (redacted), for the log."""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - STDERR_TAIL))
            return redact(self._stderr.read().decode("utf-8", "replace")).strip()
        return ""


class HelperSecretStore:
    """:class:`~tray_agent.core.ports.SecretStore` on the OS keyring through ``tray-agent secret-helper``.

    The same behaviour as :class:`~tray_agent.platform.secrets.KeyringSecretStore` (which the
    helper runs), without keyring in this process: when no usable keyring exists, or a call to it
    fails, or the helper fails (cannot start, crashes, garbles, hangs: killed after ``timeout``),
    the store switches to memory for the rest of the run; :attr:`persistent` becomes False and
    :attr:`problem` says why in plain words. A helper serves a burst of calls and ends
    ``linger`` seconds after the last one (``0``: after each call), or at :meth:`close`.

    All methods block (the constructor too: it starts a helper to learn the keyring's state);
    from async code use ``run_in_executor``. Thread-safe; never raises, never logs values.
    """

    def __init__(
        self,
        command: Sequence[str] | None = None,
        *,
        env: dict[str, str] | None = None,
        timeout: float = OP_TIMEOUT,
        linger: float = LINGER,
    ) -> None:
        """Learn the keyring's state (starts a helper, unless there is plainly no keyring).

        Args:
            command: How to start the helper; default :func:`helper_command`.
            env: Its environment; default this process's (plus what a source checkout needs).
            timeout: Seconds one operation may take before the helper is killed.
            linger: Seconds a helper stays after its last operation.
        """
        self._command = list(command) if command is not None else helper_command()
        self._env = env if env is not None else _helper_environment()
        self._timeout = timeout
        self._linger = linger
        self._memory = MemorySecretStore()
        self._lock = threading.Lock()
        self._helper: _Helper | None = None
        self._timer: threading.Timer | None = None
        self._next_id = 0
        self._persistent = True
        self._problem: str | None = None
        self._backend: str | None = None
        if command is None and no_session_bus():
            self._to_memory(NO_KEYRING)  # no session bus: nothing for a helper to find
            return
        self._call("status")

    @property
    def persistent(self) -> bool:
        """True while secrets go to the OS keyring."""
        return self._persistent

    @property
    def problem(self) -> str | None:
        """Why secrets are not kept across runs, in plain words; None while they are."""
        return self._problem

    @property
    def backend_name(self) -> str | None:
        """The keyring backend the helper uses (for ``doctor``), or None in memory mode."""
        return self._backend if self._persistent else None

    @property
    def helper_pid(self) -> int | None:
        """The running helper's process id, or None between bursts."""
        helper = self._helper
        return helper.pid if helper is not None else None

    def probe(self) -> bool:
        """Touch the keyring once (may show an unlock prompt) so that :attr:`persistent` is known.

        Returns:
            :attr:`persistent` afterwards.
        """
        self.get(f"{SERVICE}:probe")
        return self.persistent

    def get(self, key: str) -> str | None:
        """The secret for ``key``, or None (also when the keyring fails)."""
        reply = self._call("get", key)
        return reply.value if reply is not None else self._memory.get(key)

    def set(self, key: str, value: str) -> None:
        """Store ``value`` for ``key``; in memory if the keyring fails."""
        if self._call("set", key, value) is None:
            self._memory.set(key, value)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present, from the keyring and from memory."""
        self._memory.delete(key)
        self._call("delete", key)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """End the helper now (it would end ``linger`` seconds after its last call anyway).

        Never waits long (app shutdown): when a call is still in flight after ``timeout``
        seconds (an unlock prompt left open), the helper is killed and that call falls back to
        memory, as a crashed helper's would.
        """
        if not self._lock.acquire(timeout=timeout):
            helper = self._helper
            if helper is not None:
                logger.warning("Keyring helper (pid %d) still busy at close: killing it", helper.pid)
                helper.kill()
            return
        try:
            self._cancel_timer()
            self._stop_helper()
        finally:
            self._lock.release()

    # ------------------------------------------------------------------ internals

    def _call(self, op: str, key: str = "", value: str | None = None) -> Reply | None:
        """One operation through the helper; None when the store is (now) in memory."""
        with self._lock:
            if not self._persistent:
                return None
            self._cancel_timer()
            self._next_id += 1
            request: dict[str, Any] = {"id": self._next_id, "op": op}
            if op != "status":
                request["key"] = key
            if value is not None:
                request["value"] = value
            try:
                if self._helper is None:
                    self._helper = _Helper(self._command, self._env)
                    logger.debug("Keyring helper started (pid %d)", self._helper.pid)
                reply = self._helper.ask(encode(request), self._next_id, self._timeout)
            except _HelperError as exc:
                self._fail(str(exc))
                return None
            self._backend = reply.backend
            if not reply.persistent:
                # The keyring failed or is absent: what the helper kept in its memory dies with
                # it, so this operation (and every later one) uses this process's memory.
                self._to_memory(reply.problem or NO_KEYRING)
                return None
            self._schedule_close()
            return reply

    def _fail(self, reason: str) -> None:
        helper = self._helper
        tail = helper.stderr_tail() if helper is not None else ""
        logger.warning("Keyring helper failed (%s); secrets are kept in memory for this run", reason)
        if tail:
            logger.warning("Keyring helper's last words: %s", tail)
        self._to_memory(KEYRING_FAILED.format(reason=reason), kill=True)

    def _to_memory(self, problem: str, *, kill: bool = False) -> None:
        self._persistent = False
        self._problem = problem
        self._stop_helper(kill=kill)
        logger.warning("Secrets are kept in memory only: %s", problem)

    def _stop_helper(self, *, kill: bool = False) -> None:
        helper, self._helper = self._helper, None
        if helper is not None:
            code = helper.stop(kill=kill)
            logger.debug("Keyring helper (pid %d) ended with exit code %s", helper.pid, code)

    def _schedule_close(self) -> None:
        if self._linger <= 0:
            self._stop_helper()
            return
        generation = self._next_id
        timer = threading.Timer(self._linger, self._close_if_idle, args=(generation,))
        timer.daemon = True
        timer.name = "secret-helper-linger"
        self._timer = timer
        timer.start()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close_if_idle(self, generation: int) -> None:
        with self._lock:
            if self._next_id == generation:
                self._timer = None
                self._stop_helper()
