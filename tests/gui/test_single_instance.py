"""SingleInstance: a second launch forwards to the first, in one process and from a real second process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtNetwork import QLocalServer
from pytestqt.qtbot import QtBot

from tests.gui.conftest import FakeWindowManager
from tray_agent.ui.single_instance import (
    ACTIVATE,
    LaunchRequests,
    SingleInstance,
    open_message,
    server_name,
    socket_path,
)

pytestmark = pytest.mark.gui

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def name() -> Iterator[str]:
    """A server name no other test (or run) uses."""
    unique = f"tray-agent-test-{uuid.uuid4().hex[:12]}"
    yield unique
    QLocalServer.removeServer(unique)


def test_server_name_differs_per_user_and_config_dir(tmp_path: Path) -> None:
    a = server_name(str(tmp_path / "a"), user="ani")
    assert a == server_name(str(tmp_path / "a"), user="ani")
    assert a != server_name(str(tmp_path / "a"), user="budi")
    assert a != server_name(str(tmp_path / "b"), user="ani")
    assert a.startswith("tray-agent-")
    assert len(a) < 40  # short enough for a Unix socket path in any temp directory


def test_first_instance_listens_and_gets_forwarded_messages(qtbot: QtBot, name: str) -> None:
    first = SingleInstance(name)
    assert first.try_forward(ACTIVATE, timeout_ms=200) is False  # nobody there yet
    assert first.listen() is True
    second = SingleInstance(name)
    with qtbot.waitSignal(first.message_received, timeout=5000) as blocker:
        assert second.try_forward(ACTIVATE) is True
    assert blocker.args == [ACTIVATE]
    with qtbot.waitSignal(first.message_received, timeout=5000) as blocker:
        assert SingleInstance(name).try_forward(open_message("1001/77")) is True
    assert blocker.args == ["open 1001/77"]
    first.close()


def test_second_listen_fails_while_the_first_runs(name: str) -> None:
    first = SingleInstance(name)
    assert first.listen()
    assert SingleInstance(name).listen() is False
    first.close()
    assert SingleInstance(name).try_forward(ACTIVATE, timeout_ms=200) is False


@pytest.mark.skipif(sys.platform == "win32", reason="stale sockets are a Unix matter")
def test_a_stale_socket_left_by_a_crash_is_replaced(qtbot: QtBot, name: str) -> None:
    # What a crashed instance leaves behind: a socket file nobody listens on.
    stale = os.path.join(os.environ.get("TMPDIR", "/tmp"), name)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(stale)
    sock.close()  # bound, never listening: connecting is refused, the file stays
    assert Path(stale).exists()
    first = SingleInstance(name)
    assert first.try_forward(ACTIVATE, timeout_ms=200) is False
    assert first.listen() is True
    with qtbot.waitSignal(first.message_received, timeout=5000):
        assert SingleInstance(name).try_forward(ACTIVATE)
    first.close()


def test_a_second_process_forwards_to_the_running_instance(qtbot: QtBot, name: str) -> None:
    first = SingleInstance(name)
    assert first.listen()
    script = textwrap.dedent(
        """
        import sys
        from PySide6.QtCore import QCoreApplication
        from tray_agent.ui.single_instance import SingleInstance, open_message
        app = QCoreApplication([])
        sys.exit(0 if SingleInstance(sys.argv[1]).try_forward(open_message(sys.argv[2]), 5000) else 3)
        """
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    with qtbot.waitSignal(first.message_received, timeout=20000) as blocker:
        proc = subprocess.Popen([sys.executable, "-c", script, name, "chat-9"], cwd=REPO, env=env)
    assert blocker.args == ["open chat-9"]
    assert proc.wait(timeout=20) == 0
    first.close()


def test_launch_requests_wait_for_the_windows_then_go_straight_to_them() -> None:
    launches, windows = LaunchRequests(), FakeWindowManager()
    launches.receive(open_message("p/a"))
    launches.receive(ACTIVATE)  # does not cancel the chat asked for first
    launches.receive("something else")  # neither: nothing to remember
    assert windows.calls == []
    launches.show_first_windows(windows, start_hidden=True)
    assert windows.calls == [("restore_session",), ("open_chat", "p/a")]
    launches.receive(ACTIVATE)
    launches.receive(open_message("p/b"))
    assert windows.calls[2:] == [("show_inbox",), ("open_chat", "p/b")]


def test_launch_requests_show_the_inbox_unless_starting_hidden() -> None:
    hidden, shown, asked = FakeWindowManager(), FakeWindowManager(), FakeWindowManager()
    LaunchRequests().show_first_windows(hidden, start_hidden=True)
    LaunchRequests().show_first_windows(shown, start_hidden=False)
    launches = LaunchRequests()
    launches.receive(ACTIVATE)
    launches.show_first_windows(asked, start_hidden=True)
    assert hidden.calls == [("restore_session",)]
    assert shown.calls == asked.calls == [("restore_session",), ("show_inbox",)]
    link = FakeWindowManager()
    LaunchRequests("p/c").show_first_windows(link, start_hidden=False)  # this launch's own link
    assert link.calls == [("restore_session",), ("open_chat", "p/c")]


unix_only = pytest.mark.skipif(sys.platform == "win32", reason="Windows keeps QLocalServer's named pipes")


@unix_only
def test_unix_socket_is_private_and_where_qlocalserver_puts_it(name: str) -> None:
    first = SingleInstance(name)
    assert first.listen()
    path = Path(socket_path(name))
    assert path.is_socket()
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p for p in path.parent.glob(f"{name}.*")] == []  # the private bind directory is gone
    first.close()
    assert not path.exists()


@unix_only
def test_earlier_versions_qlocal_sockets_still_talk_to_us_both_ways(qtbot: QtBot, name: str) -> None:
    from PySide6.QtNetwork import QLocalSocket

    first = SingleInstance(name)
    assert first.listen()
    old_launch = QLocalSocket()  # a launch of an earlier version (QLocalSocket) forwards to us
    old_launch.connectToServer(name)
    assert old_launch.waitForConnected(2000)
    with qtbot.waitSignal(first.message_received, timeout=5000) as blocker:
        old_launch.write(b"open chat-3\n")
        old_launch.waitForBytesWritten(2000)
        old_launch.disconnectFromServer()
    assert blocker.args == ["open chat-3"]
    first.close()

    old_instance = QLocalServer()  # an earlier version running (QLocalServer) gets our launch
    old_instance.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
    assert old_instance.listen(name)
    assert SingleInstance(name).try_forward(ACTIVATE) is True
    assert old_instance.waitForNewConnection(2000)
    connection = old_instance.nextPendingConnection()
    assert connection is not None
    data = bytes(connection.readAll().data())
    while not data.endswith(b"\n") and connection.waitForReadyRead(2000):
        data += bytes(connection.readAll().data())
    assert data == b"activate\n"
    old_instance.close()


@unix_only
def test_the_running_instance_does_not_load_qtnetwork() -> None:
    script = textwrap.dedent(
        """
        import sys, uuid
        from PySide6.QtCore import QCoreApplication
        from tray_agent.ui.single_instance import SingleInstance
        app = QCoreApplication([])
        instance = SingleInstance("tray-agent-test-" + uuid.uuid4().hex[:12])
        print(instance.try_forward("activate", 200), instance.listen(), "PySide6.QtNetwork" in sys.modules)
        instance.close()
        """
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True", "False"]
