# mypy: disable-error-code="no-untyped-call"
"""The keyring helper process: its protocol, its loop, and the app's store on it (real and fake helpers)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import keyring
import keyring.core
import pytest

from tests.helpers.keyring_backends import KEYRING_FILE, FakeKeyring
from tray_agent.core.ports import SecretStore
from tray_agent.platform import secret_helper
from tray_agent.platform.secret_helper import (
    HelperSecretStore,
    ProtocolError,
    encode,
    helper_command,
    parse_reply,
    parse_request,
    serve,
)
from tray_agent.platform.secrets import NO_KEYRING, SERVICE

KEY = "org:https://support.example.com:org-1:alice@example.com:refresh_token"
SECRET = 'rt-s3cr3t\nwith a newline, ä and "quotes"'
REPO = Path(__file__).resolve().parents[3]
BACKENDS = "tests.helpers.keyring_backends"


# --- the protocol ----------------------------------------------------------------------------


def test_encode_is_one_ascii_line_whatever_the_value() -> None:
    line = encode({"id": 1, "op": "set", "key": KEY, "value": SECRET})
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert line.isascii()
    assert parse_request(line) == (1, "set", KEY, SECRET)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"id": 1, "op": "status"}', (1, "status", "", None)),
        ('{"id": 2, "op": "get", "key": "k"}', (2, "get", "k", None)),
        ('{"id": 3, "op": "delete", "key": "k", "value": "ignored"}', (3, "delete", "k", None)),
    ],
)
def test_parse_request_reads_each_op(line: str, expected: tuple[int, str, str, str | None]) -> None:
    assert parse_request(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "garbage",
        "[1, 2]",
        '{"op": "get", "key": "k"}',
        '{"id": true, "op": "status"}',
        '{"id": 1, "op": "list"}',
        '{"id": 1, "op": "get"}',
        '{"id": 1, "op": "get", "key": 7}',
        '{"id": 1, "op": "set", "key": "k"}',
        '{"id": 1, "op": "set", "key": "k", "value": null}',
    ],
)
def test_parse_request_refuses_bad_lines(line: str) -> None:
    with pytest.raises(ProtocolError):
        parse_request(line)


def test_parse_reply_reads_value_and_keyring_state() -> None:
    reply = parse_reply('{"id": 4, "value": "v", "persistent": true, "problem": null, "backend": "b.K"}', 4)
    assert (reply.value, reply.persistent, reply.problem, reply.backend) == ("v", True, None, "b.K")


@pytest.mark.parametrize(
    "line",
    [
        "hello",
        "null",
        '{"id": 3, "value": null, "persistent": true}',  # the reply to another request
        '{"id": 4, "error": "bad request: not JSON"}',
        '{"id": 4, "value": null}',
        '{"id": 4, "value": 5, "persistent": true}',
        '{"id": 4, "value": null, "persistent": false, "problem": ["x"]}',
    ],
)
def test_parse_reply_refuses_anything_else(line: str) -> None:
    with pytest.raises(ProtocolError):
        parse_reply(line, 4)


# --- the helper's loop (in this process, on keyring's API) ------------------------------------


def _serve(*requests: str) -> list[dict[str, object]]:
    replies = io.StringIO()
    assert serve(io.StringIO("".join(requests)), replies) == 0  # the end of input ends it
    return [json.loads(line) for line in replies.getvalue().splitlines()]


def test_serve_answers_each_request_with_the_keyring_state(fake_keyring: FakeKeyring) -> None:
    replies = _serve(
        encode({"id": 1, "op": "status"}),
        encode({"id": 2, "op": "set", "key": KEY, "value": SECRET}),
        encode({"id": 3, "op": "get", "key": KEY}),
        "\n",
        encode({"id": 4, "op": "delete", "key": KEY}),
        encode({"id": 5, "op": "get", "key": KEY}),
    )
    assert [r["id"] for r in replies] == [1, 2, 3, 4, 5]
    assert [r["value"] for r in replies] == [None, None, SECRET, None, None]
    assert all(r["persistent"] is True and r["problem"] is None for r in replies)
    assert str(replies[0]["backend"]).endswith("FakeKeyring")
    assert fake_keyring.values == {}


def test_serve_answers_a_bad_line_with_an_error_and_goes_on(fake_keyring: FakeKeyring) -> None:
    replies = _serve("garbage\n", '{"id": 7, "op": "frobnicate"}\n', encode({"id": 8, "op": "status"}))
    assert replies[0] == {"id": None, "error": "bad request: not JSON"}
    assert replies[1] == {"id": 7, "error": "bad request: unknown op"}
    assert replies[2]["persistent"] is True


# --- the app's store on a real helper process --------------------------------------------------


@pytest.fixture
def file_keyring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The helpers' keyring: tests.helpers.keyring_backends.FileKeyring on a file in tmp_path."""
    path = tmp_path / "keyring.json"
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", f"{BACKENDS}.FileKeyring")
    monkeypatch.setenv(KEYRING_FILE, str(path))
    return path


def _held(path: Path) -> dict[str, str]:
    return dict(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else {}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_helper_command_runs_the_hidden_subcommand() -> None:
    assert helper_command() == [sys.executable, "-m", "tray_agent", "secret-helper"]


def test_frozen_helper_command_runs_the_bundle_executable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert helper_command() == [sys.executable, "secret-helper"]


def test_store_round_trip_through_the_helper(file_keyring: Path) -> None:
    store: SecretStore = HelperSecretStore(linger=0)
    assert store.persistent
    store.set(KEY, SECRET)
    assert _held(file_keyring) == {f"{SERVICE}\t{KEY}": SECRET}
    assert store.get(KEY) == SECRET
    assert HelperSecretStore(linger=0).get(KEY) == SECRET  # another helper: kept in the keyring
    store.delete(KEY)
    store.delete(KEY)  # absent: no error
    assert store.get(KEY) is None
    assert _held(file_keyring) == {}
    assert store.persistent


def test_store_reports_backend_and_probe(file_keyring: Path) -> None:
    store = HelperSecretStore(linger=0)
    assert store.problem is None
    assert store.probe() is True
    assert store.backend_name == f"{BACKENDS}.FileKeyring"


def test_one_helper_serves_a_burst_and_ends_at_close(file_keyring: Path) -> None:
    store = HelperSecretStore(linger=600)
    pid = store.helper_pid
    assert pid is not None
    store.set(KEY, "v")
    assert store.get(KEY) == "v"
    assert store.helper_pid == pid  # the start-up's reads share one process
    store.close()
    assert store.helper_pid is None
    assert _gone(pid)
    assert store.get(KEY) == "v"  # a new helper for the next burst
    store.close()


def test_helper_ends_after_each_call_without_linger(file_keyring: Path) -> None:
    store = HelperSecretStore(linger=0)
    assert store.helper_pid is None
    store.get(KEY)
    assert store.helper_pid is None


def test_helper_ends_when_its_stdin_ends(file_keyring: Path) -> None:
    proc = subprocess.Popen(
        helper_command(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out, _ = proc.communicate(encode({"id": 1, "op": "get", "key": KEY}), timeout=60)
    assert proc.returncode == 0
    assert json.loads(out)["persistent"] is True


@pytest.mark.parametrize("backend", ["keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"])
def test_no_keyring_in_the_helper_means_memory(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend)
    store = HelperSecretStore()
    assert store.persistent is False
    assert store.problem == NO_KEYRING
    assert store.backend_name is None
    assert store.helper_pid is None  # nothing left running
    store.set(KEY, "v")
    assert store.get(KEY) == "v"


def test_locked_keyring_in_the_helper_means_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", f"{BACKENDS}.LockedKeyring")
    monkeypatch.setenv(KEYRING_FILE, str(tmp_path / "keyring.json"))
    store = HelperSecretStore(linger=0)
    assert store.persistent  # not known until the first call, as in process
    store.set(KEY, SECRET)
    assert store.persistent is False
    assert store.problem is not None
    assert "did not work (Failed to unlock the keyring!)" in store.problem
    assert store.get(KEY) == SECRET  # kept in this process's memory for this run
    store.delete(KEY)
    assert store.get(KEY) is None
    assert SECRET not in caplog.text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux detection path")
def test_no_session_bus_means_memory_without_a_helper(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)  # no backend chosen in process

    def no_helper(*args: object) -> None:
        pytest.fail("a helper was started")

    monkeypatch.setattr(secret_helper, "_Helper", no_helper)
    store = HelperSecretStore()
    assert store.persistent is False
    assert store.problem == NO_KEYRING


def test_the_tray_apps_secret_store_keeps_keyring_out_of_its_process(file_keyring: Path) -> None:
    # The store the tray app builds (TrayApp._make_secrets), used as at start-up and sign-in.
    code = textwrap.dedent(
        """
        import sys
        from types import SimpleNamespace
        from tray_agent.app import TrayApp
        store = TrayApp._make_secrets(SimpleNamespace(args=SimpleNamespace(demo=False)))
        store.set("k", "v")
        value = store.get("k")
        store.delete("k")
        getattr(store, "close", lambda: None)()
        heavy = ("keyring", "secretstorage", "jeepney", "cryptography", "PySide6", "pydantic")
        print(store.persistent, value, sorted(m for m in sys.modules if m.split(".")[0] in heavy))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["True", "v", "[]"]


# --- the app's store on fake helpers: every way a helper can fail ------------------------------

# A helper that answers each request as a keyring with nothing in it would, and writes its pid,
# argv and environment to the file named by argv[1] first (what a secret must never reach).
ECHO = """
import json, os, sys
record = dict(pid=os.getpid(), argv=sys.argv, env=dict(os.environ))
open(sys.argv[1], "w").write(json.dumps(record))
BEFORE
for line in sys.stdin:
    request = json.loads(line)
    EACH
    reply = dict(id=request["id"], value=None, persistent=True, problem=None, backend="fake.Keyring")
    print(json.dumps(reply), flush=True)
"""


def _fake(tmp_path: Path, before: str = "", each: str = "pass") -> tuple[list[str], Path]:
    record = tmp_path / "helper.json"
    return [sys.executable, "-c", ECHO.replace("BEFORE", before).replace("EACH", each), str(record)], record


def _pid(record: Path) -> int:
    return int(json.loads(record.read_text(encoding="utf-8"))["pid"])


@pytest.mark.parametrize(
    ("before", "each", "reason"),
    [
        ("sys.exit(3)", "pass", "ended unexpectedly (exit code 3)"),
        ("", 'print("hello", flush=True)', "unreadable reply (not JSON)"),
        ("", 'request["id"] += 1', "unreadable reply (a reply to another request)"),
        ("", 'print(json.dumps({"id": request["id"], "error": "no"}), flush=True)', "unreadable reply"),
        ("", "import time; time.sleep(600)", "did not answer within"),
    ],
    ids=["crash", "garbage", "wrong-id", "error-reply", "hang"],
)
def test_failing_helper_means_memory_and_a_clear_problem(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, before: str, each: str, reason: str
) -> None:
    command, record = _fake(tmp_path, before, each)
    store = HelperSecretStore(command, timeout=3.0)  # never a hang: a silent helper is killed
    assert store.persistent is False
    assert store.problem is not None
    assert reason in store.problem
    assert "sign in again" in store.problem
    assert store.backend_name is None
    assert store.helper_pid is None
    assert _gone(_pid(record))  # killed or ended, and reaped: nothing lingers
    store.set(KEY, SECRET)
    assert store.get(KEY) == SECRET
    assert SECRET not in caplog.text


def test_helper_that_cannot_start_means_memory(tmp_path: Path) -> None:
    store = HelperSecretStore([str(tmp_path / "no-such-helper")])
    assert store.persistent is False
    assert store.problem is not None
    assert "helper process did not start: FileNotFoundError" in store.problem
    store.set(KEY, "v")
    assert store.get(KEY) == "v"


def test_helper_dying_mid_run_loses_no_value(tmp_path: Path) -> None:
    # Answers the status, then dies at the next request: the value set then stays in memory.
    command, record = _fake(tmp_path, each='if request["op"] != "status": sys.exit(1)')
    store = HelperSecretStore(command, linger=600)
    assert store.persistent
    assert store.backend_name == "fake.Keyring"
    store.set(KEY, SECRET)
    assert store.persistent is False
    assert store.problem is not None
    assert "exit code 1" in store.problem
    assert store.get(KEY) == SECRET
    assert _gone(_pid(record))


def test_secrets_travel_only_through_the_pipes(tmp_path: Path) -> None:
    command, record = _fake(tmp_path)
    store = HelperSecretStore(command, linger=600)
    store.set(KEY, SECRET)
    seen = record.read_text(encoding="utf-8")
    store.close()
    assert store.persistent
    assert "s3cr3t" not in seen  # neither argv nor the environment


def test_close_during_a_hung_call_kills_the_helper_and_loses_no_value(tmp_path: Path) -> None:
    # Answers the status; at the next request says so in a file, then hangs (an unlock prompt
    # nobody answers). The app quits meanwhile: close() must not wait for the call.
    marker = tmp_path / "busy"
    command, record = _fake(
        tmp_path, each=f'if request["op"] != "status": open({str(marker)!r}, "w").close(); sys.stdin.read()'
    )
    store = HelperSecretStore(command, timeout=600, linger=600)
    call = threading.Thread(target=store.set, args=(KEY, SECRET))
    call.start()
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the helper never got the call"
        time.sleep(0.01)
    store.close(timeout=0.1)
    call.join(60)
    assert not call.is_alive()
    assert store.persistent is False
    assert store.problem is not None
    assert "helper process ended unexpectedly" in store.problem
    assert store.get(KEY) == SECRET
    assert _gone(_pid(record))
