r"""One running app per user and config directory: a second launch forwards its request over a local socket.

The first instance :meth:`~SingleInstance.listen`\\ s on a per-user local server (a Unix socket in
the temp directory, a named pipe on Windows). A second launch calls
:meth:`~SingleInstance.try_forward` with ``"activate"`` or ``"open <conversation>"``; when that
returns True it exits, and the first instance gets :attr:`~SingleInstance.message_received`.

Messages are one UTF-8 line each. A socket left behind by a crashed instance (Unix) is removed
when nobody answers on it.

On Linux and macOS the socket is a plain Unix socket handled with Python's :mod:`socket` and a
:class:`~PySide6.QtCore.QSocketNotifier`, at the path and with the permissions ``QLocalServer``
used (``QDir.tempPath()/<name>``, bound in a private directory, mode 0600, renamed into place),
so launches of earlier versions still find it. QtNetwork (``QLocalServer``, with the libraries it
links: about 4 MB resident) is loaded on Windows only, for its named pipes.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import logging
import os
import socket as sockets
import sys
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import QDir, QObject, QSocketNotifier, Signal

if TYPE_CHECKING:
    from PySide6.QtNetwork import QLocalServer, QLocalSocket

logger = logging.getLogger(__name__)

ACTIVATE = "activate"
"""Show the app's window (a plain second launch)."""
OPEN_PREFIX = "open "
"""``"open <conversation>"``: open that conversation's chat window."""
MAX_MESSAGE_BYTES = 4096
PROBE_TIMEOUT_MS = 500
UNIX_SOCKETS = sys.platform != "win32" and hasattr(sockets, "AF_UNIX")
"""Whether the channel is a Python Unix socket (else QLocalServer's named pipe)."""


def socket_path(name: str) -> str:
    """Where ``QLocalServer`` puts the socket of a server called ``name`` (Unix)."""
    return os.path.join(QDir.tempPath(), name)


def server_name(config_dir: str, user: str | None = None, app: str = "tray-agent") -> str:
    """The local server's name for this user and config directory.

    Two users on one machine, or one user with two ``--basedir`` directories, get different names;
    the hash keeps the name short enough for a Unix socket path.

    Args:
        config_dir: the app's config directory (``Paths.config``).
        user: the login name; default the current user.
        app: the app's name, the readable prefix.
    """
    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no user name (containers): the uid still separates users
            user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    digest = hashlib.sha256(f"{user}\0{os.path.abspath(config_dir)}".encode()).hexdigest()[:16]
    return f"{app}-{digest}"


def drain_lines(buffer: bytearray, emit: Callable[[bytes], object]) -> bool:
    """Hand each complete line of ``buffer`` to ``emit``, removing it from ``buffer``.

    Returns False when what is left is longer than :data:`MAX_MESSAGE_BYTES` (an over-long
    message: the caller drops the connection).
    """
    while (end := buffer.find(b"\n")) >= 0:
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        emit(line)
    if len(buffer) > MAX_MESSAGE_BYTES:
        logger.warning("Dropping an over-long single-instance message")
        return False
    return True


def open_message(conversation: str) -> str:
    """The message asking the running instance to open ``conversation``."""
    return OPEN_PREFIX + conversation


class SingleInstance(QObject):
    """The local server of the first instance, and the client side of later ones.

    Signals:
        message_received(str): a later launch forwarded ``"activate"`` or ``"open <conversation>"``.
    """

    message_received = Signal(str)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        """Prepare (not start) the single-instance channel.

        Args:
            name: the local server name, from :func:`server_name`.
            parent: Qt parent.
        """
        super().__init__(parent)
        self._name = name
        self._server: QLocalServer | None = None
        self._buffers: dict[QLocalSocket, bytearray] = {}
        self._unix: _UnixServer | None = None

    @property
    def name(self) -> str:
        """The local server name."""
        return self._name

    @property
    def listening(self) -> bool:
        """Whether this object is the running instance's server."""
        if UNIX_SOCKETS:
            return self._unix is not None
        return self._server is not None and self._server.isListening()

    def try_forward(self, message: str, timeout_ms: int = 2000) -> bool:
        """Send ``message`` to the running instance, if there is one. Blocks up to ``timeout_ms``.

        Call this before :meth:`listen`, before the event loop runs.

        Returns:
            True when the message was handed to a running instance (then exit); False when no
            instance answers (then :meth:`listen`).
        """
        data = message.replace("\n", " ").encode("utf-8")[: MAX_MESSAGE_BYTES - 1] + b"\n"
        if UNIX_SOCKETS:
            return _unix_forward(socket_path(self._name), data, timeout_ms, message)
        from PySide6.QtNetwork import QLocalSocket

        socket = QLocalSocket()
        socket.connectToServer(self._name)
        if not socket.waitForConnected(timeout_ms):
            logger.debug("No running instance at %s: %s", self._name, socket.errorString())
            return False
        socket.write(data)
        ok = socket.waitForBytesWritten(timeout_ms) or socket.bytesToWrite() == 0
        socket.disconnectFromServer()
        if socket.state() != QLocalSocket.LocalSocketState.UnconnectedState:
            socket.waitForDisconnected(timeout_ms)
        if not ok:
            logger.warning("Could not hand %r to the running instance: %s", message, socket.errorString())
        return ok

    def listen(self) -> bool:
        """Become the running instance. Removes a stale socket left by a crash.

        Returns:
            True when listening; False when another instance already listens (or the name is
            unusable), then forward to it with :meth:`try_forward` instead.
        """
        if self.listening:
            return True
        # Probe first: with UserAccessOption Qt binds in a private directory and renames the
        # socket into place, which would silently replace a live instance's socket.
        if self._someone_listens():
            return False
        if UNIX_SOCKETS:
            try:
                self._unix = _UnixServer(socket_path(self._name), self._emit)
            except OSError as exc:
                logger.warning("Single-instance server %s failed: %s", self._name, exc)
                return False
            return True
        from PySide6.QtNetwork import QAbstractSocket, QLocalServer

        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self._name):
            if server.serverError() != QAbstractSocket.SocketError.AddressInUseError:
                logger.warning("Single-instance server %s failed: %s", self._name, server.errorString())
                return False
            logger.info("Removing the stale single-instance socket %s", self._name)
            QLocalServer.removeServer(self._name)
            if not server.listen(self._name):
                logger.warning("Single-instance server %s failed: %s", self._name, server.errorString())
                return False
        server.newConnection.connect(self._on_server_new_connection)
        self._server = server
        return True

    def close(self) -> None:
        """Stop listening (at quit); the socket file goes away with it."""
        if self._unix is not None:
            self._unix.close()
            self._unix = None
        for socket in list(self._buffers):
            socket.readyRead.disconnect(self._on_socket_ready_read)
            socket.disconnected.disconnect(self._on_socket_disconnected)
            socket.abort()
        self._buffers.clear()
        if self._server is not None:
            self._server.newConnection.disconnect(self._on_server_new_connection)
            self._server.close()
            self._server.deleteLater()
            self._server = None

    def _someone_listens(self) -> bool:
        if UNIX_SOCKETS:
            with contextlib.closing(sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)) as connection:
                connection.settimeout(PROBE_TIMEOUT_MS / 1000)
                try:
                    connection.connect(socket_path(self._name))
                except OSError:
                    return False
                return True
        from PySide6.QtNetwork import QLocalSocket

        probe = QLocalSocket()
        probe.connectToServer(self._name)
        alive = probe.waitForConnected(PROBE_TIMEOUT_MS)
        probe.abort()
        return alive

    def _on_server_new_connection(self) -> None:
        assert self._server is not None
        while (socket := self._server.nextPendingConnection()) is not None:
            self._buffers[socket] = bytearray()
            # Bound slots, not lambdas: Qt drops them when this object goes (no calls into
            # sockets destroyed at exit).
            socket.readyRead.connect(self._on_socket_ready_read)
            socket.disconnected.connect(self._on_socket_disconnected)
            if socket.bytesAvailable():
                self._read(socket)

    def _on_socket_ready_read(self) -> None:
        from PySide6.QtNetwork import QLocalSocket

        socket = self.sender()
        if isinstance(socket, QLocalSocket):
            self._read(socket)

    def _read(self, socket: QLocalSocket) -> None:
        buffer = self._buffers.get(socket)
        if buffer is None:
            return
        buffer += bytes(socket.readAll().data())
        if not drain_lines(buffer, self._emit):
            self._buffers.pop(socket, None)
            socket.abort()

    def _on_socket_disconnected(self) -> None:
        from PySide6.QtNetwork import QLocalSocket

        socket = self.sender()
        if not isinstance(socket, QLocalSocket):
            return
        buffer = self._buffers.pop(socket, None)
        if buffer:
            self._emit(bytes(buffer))  # a last line without its newline
        socket.deleteLater()

    def _emit(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace").strip()
        if text:
            self.message_received.emit(text)


def _unix_forward(path: str, data: bytes, timeout_ms: int, message: str) -> bool:
    """Send ``data`` to the instance listening at ``path``; False when nobody listens there."""
    with contextlib.closing(sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)) as client:
        client.settimeout(timeout_ms / 1000)
        try:
            client.connect(path)
        except OSError as exc:
            logger.debug("No running instance at %s: %s", path, exc)
            return False
        try:
            client.sendall(data)
            client.shutdown(sockets.SHUT_WR)
        except OSError as exc:
            logger.warning("Could not hand %r to the running instance: %s", message, exc)
            return False
    return True


class _UnixServer:
    """The listening Unix socket and its connections, read on the Qt event loop.

    Args:
        path: the socket's path; a stale socket there is replaced (the caller checked that
            nobody answers on it).
        emit: called with each received line.
    """

    def __init__(self, path: str, emit: Any) -> None:
        self._path = path
        self._emit = emit
        self._clients: dict[int, tuple[sockets.socket, QSocketNotifier, bytearray]] = {}
        self._retired: list[QSocketNotifier] = []  # disabled, kept until the next accept
        # As QLocalServer with UserAccessOption: bind in a private directory, restrict, rename
        # into place (atomic; replaces a stale socket file).
        private = tempfile.mkdtemp(prefix=os.path.basename(path) + ".", dir=os.path.dirname(path))
        server = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
        bound = os.path.join(private, "socket")
        try:
            server.bind(bound)
            os.chmod(bound, 0o600)
            server.listen(16)
            server.setblocking(False)
            os.replace(bound, path)
        except OSError:
            server.close()
            with contextlib.suppress(OSError):
                os.unlink(bound)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(private)
        self._server = server
        self._notifier = QSocketNotifier(server.fileno(), QSocketNotifier.Type.Read)
        self._notifier.activated.connect(self._on_notifier_activated)

    def close(self) -> None:
        """Close every connection and the server; remove the socket file."""
        for fd in list(self._clients):
            self._drop(fd, emit_rest=False)
        self._notifier.setEnabled(False)
        self._retired.clear()
        self._server.close()
        with contextlib.suppress(OSError):
            os.unlink(self._path)

    def _on_notifier_activated(self) -> None:
        self._retired.clear()  # not inside their own signal any more
        while True:
            try:
                client, _address = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("Single-instance accept failed: %s", exc)
                return
            client.setblocking(False)
            fd = client.fileno()
            notifier = QSocketNotifier(fd, QSocketNotifier.Type.Read)  # owned here, not by Qt
            self._clients[fd] = (client, notifier, bytearray())
            notifier.activated.connect(self._on_client_activated)

    def _on_client_activated(self) -> None:
        # Every ready connection (a handful at most): which notifier fired is not needed.
        for fd in list(self._clients):
            self._read(fd)

    def _read(self, fd: int) -> None:
        entry = self._clients.get(fd)
        if entry is None:
            return
        client, _notifier, buffer = entry
        try:
            chunk = client.recv(MAX_MESSAGE_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the other side is done
            self._drop(fd, emit_rest=True)
            return
        buffer += chunk
        if not drain_lines(buffer, self._emit):
            self._drop(fd, emit_rest=False)

    def _drop(self, fd: int, *, emit_rest: bool) -> None:
        client, notifier, buffer = self._clients.pop(fd)
        notifier.setEnabled(False)  # deleted with its last reference, outside its own signal
        self._retired.append(notifier)
        client.close()
        if emit_rest and buffer:
            self._emit(bytes(buffer))  # a last line without its newline


class LaunchWindows(Protocol):
    """What later launches ask of the windows (``ui.windows.WindowManager``)."""

    def show_inbox(self) -> object:
        """Show the inbox window."""
        ...

    def open_chat(self, conversation: str) -> object:
        """Open (or raise) the chat window of a conversation."""
        ...

    def restore_session(self) -> object:
        """Reopen the last session's chats."""
        ...


class LaunchRequests:
    """What launches asked for (show the app, open a chat), held until the windows exist.

    Args:
        open_conversation: the chat this launch's own link named ("" for none).
    """

    def __init__(self, open_conversation: str = "") -> None:
        self._open = open_conversation
        self._show = False  # a later launch asked to show the app while this one started
        self._windows: LaunchWindows | None = None

    def receive(self, message: str) -> None:
        """A later launch's message: answered now, or once the windows exist."""
        opening = message.startswith(OPEN_PREFIX)
        if opening:
            logger.info("Another launch asked to open a conversation")
        else:
            logger.info("Another launch asked to show the app")
        if self._windows is None:  # still starting: show_first_windows does it
            if opening:
                self._open = message.removeprefix(OPEN_PREFIX)
            elif message == ACTIVATE:
                self._show = True  # an earlier request to open a chat still stands
        elif opening:
            self._windows.open_chat(message.removeprefix(OPEN_PREFIX))
        else:
            self._windows.show_inbox()

    def show_first_windows(self, windows: LaunchWindows, *, start_hidden: bool) -> None:
        """The windows exist: the last session's chats, then what launches asked for.

        The chat a launch's link named, else the inbox when a later launch asked to show the
        app or the settings do not start hidden. Later messages go to ``windows`` at once.
        """
        self._windows = windows
        windows.restore_session()
        if self._open:
            windows.open_chat(self._open)
        elif self._show or not start_hidden:
            windows.show_inbox()
