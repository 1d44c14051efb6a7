"""Composition root of the tray app: logging, paths, settings, Qt + qasync, and the wiring of every object.

``tray-agent`` (no subcommand) calls :func:`run`. Nothing else in the package constructs the
long-lived objects; everything below gets its collaborators injected here.

Start-up order puts the tray icon first (PERFORMANCE-NOTES, design choice 11): paths, logging,
the QApplication and the single-instance claim, then at once an :class:`EarlyTray` icon
("connecting", with Quit). Everything else comes after it, on the running event loop, a loop
turn apart: the settings (pydantic), the language, the store, the policy and the tray controller
(which adopts the icon and attaches the full menu), then the notifier, the keyring, the demo
backend, the local store, the windows and the network client. So this module imports only what
that first step needs (no asyncio, pydantic or ``ui.tray`` at import time).

Test hooks (documented, tiny):

* ``TRAY_AGENT_TEST_SHOW_MENU=1``: once started, show the status window and pop the tray menu
  up next to it (kept up to date while open), so that a screenshot shows the icon, the badge
  and the menu. Used by ``tests/desktop/test_alerting.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib.resources
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tray_agent.core.i18n import _

if TYPE_CHECKING:
    import asyncio
    from types import TracebackType

    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon

    from tray_agent.core.commands import Command
    from tray_agent.core.events import Event
    from tray_agent.core.settings_layers import LoadedSettings
    from tray_agent.net.client import Client
    from tray_agent.platform.paths import Paths
    from tray_agent.ui.single_instance import SingleInstance

logger = logging.getLogger("tray_agent.app")

APP_NAME = "tray-agent"
DISPLAY_NAME = "tray_agent"
LOG_FILE = "tray-agent.log"
DRAFTS_FILE = "drafts.json"  # drafts of versions before the local store (migrated once, then deleted)
SIGN_OUT_SECRETS = ("password", "refresh_token", "session")  # keyring kinds of one account
TEST_SHOW_MENU_ENV = "TRAY_AGENT_TEST_SHOW_MENU"
DEMO_SEED = 7
SHIPPED_TRANSLATIONS = ("id",)  # catalogs the self-test requires (English is the source)
STOP_TIMEOUT = 5.0  # seconds for the client to close cleanly at shutdown

SOUND_FILES = ("message.wav", "escalation.wav")


# ---------------------------------------------------------------------------------------------
# Logging


LOG_BUFFER_LIMIT = 1000
"""Records kept in memory at most until the log file opens (start-up only)."""


class _StartupLogBuffer(logging.Handler):
    """Holds the records logged before the log file is open (see :func:`setup_logging`)."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < LOG_BUFFER_LIMIT:
            self.records.append(record)


def setup_logging(
    log_dir: Path | None, verbose: bool, *, open_file_later: bool = False
) -> Callable[[], None]:
    """Log to stderr (warnings, or debug with -v) and to a rotating file; redact secrets.

    Also routes uncaught exceptions (``sys.excepthook``) to the log.

    Args:
        log_dir: where the log file goes; None logs to stderr only.
        verbose: log debug details, to stderr too.
        open_file_later: hold the file's records in memory until the returned function opens
            it (:func:`run` shows the tray icon first, and ``logging.handlers`` alone takes
            ~10 ms to import).

    Returns:
        A function that opens the log file and writes the records held until then into it;
        calling it again does nothing. Without ``open_file_later`` the file is open already.
    """
    from tray_agent.core.redact import install_redaction

    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    file_level = logging.DEBUG if verbose else logging.INFO
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.DEBUG if verbose else logging.WARNING)
    stderr.setFormatter(fmt)
    root.addHandler(stderr)
    buffer: _StartupLogBuffer | None = None
    if log_dir is not None and open_file_later:
        buffer = _StartupLogBuffer(file_level)
        root.addHandler(buffer)
    install_redaction(root)
    pending = [log_dir] if log_dir is not None else []

    def open_file() -> None:
        if not pending:
            return
        directory = pending.pop()
        import logging.handlers

        try:
            file_handler = logging.handlers.RotatingFileHandler(
                directory / LOG_FILE, maxBytes=1_000_000, backupCount=3, encoding="utf-8"
            )
        except OSError as exc:
            file_handler = None
            logger.warning("Cannot write the log file in %s: %s", directory, exc)
        if buffer is not None:
            root.removeHandler(buffer)
        if file_handler is None:
            return
        file_handler.setLevel(file_level)
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)
        install_redaction(root)
        for record in buffer.records if buffer is not None else ():
            file_handler.handle(record)  # in order, before any newer record

    if not open_file_later:
        open_file()

    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        logger.critical("Uncaught exception", exc_info=(kind, value, tb))

    sys.excepthook = excepthook
    return open_file


def install_qt_message_handler() -> None:
    """Send Qt's own warnings to the log instead of stderr."""
    from PySide6.QtCore import QtMsgType, qInstallMessageHandler

    levels = {
        QtMsgType.QtDebugMsg: logging.DEBUG,
        QtMsgType.QtInfoMsg: logging.INFO,
        QtMsgType.QtWarningMsg: logging.WARNING,
        QtMsgType.QtCriticalMsg: logging.ERROR,
        QtMsgType.QtFatalMsg: logging.CRITICAL,
    }
    qt_logger = logging.getLogger("tray_agent.qt")

    def handler(mode: QtMsgType, context: object, message: str) -> None:
        qt_logger.log(levels.get(mode, logging.WARNING), "%s", message)

    qInstallMessageHandler(handler)


# ---------------------------------------------------------------------------------------------
# Self-test


def self_test(app: QApplication) -> int:
    """Check the bundled resources and the tray; print a report; 0 when nothing is missing.

    Uses importlib.resources only, so it works the same in a PyInstaller build.
    """
    import io
    import wave

    from PySide6.QtCore import QByteArray
    from PySide6.QtSvg import QSvgRenderer
    from PySide6.QtWidgets import QSystemTrayIcon

    from tray_agent.ui.tray import IconState, icon_svg, render_icon, render_icon_image

    problems: list[str] = []
    lines: list[str] = []
    for state in (*IconState, "agent"):  # every tray state, and the app icon
        try:
            svg = icon_svg(state)
        except (OSError, ValueError) as exc:
            problems.append(f"icon {state}: missing ({exc})")
            continue
        renderer = QSvgRenderer(QByteArray(svg))
        image = render_icon_image(svg, 32)
        opaque = any(image.pixelColor(x, y).alpha() > 0 for x in range(0, 32, 2) for y in range(0, 32, 2))
        if not renderer.isValid() or not opaque:
            problems.append(f"icon {state}: does not render")
        else:
            lines.append(f"icon {state}: ok")
    sounds = importlib.resources.files("tray_agent.resources").joinpath("sounds")
    for name in SOUND_FILES:
        try:
            data = sounds.joinpath(name).read_bytes()
            with wave.open(io.BytesIO(data)) as wav:
                frames, rate = wav.getnframes(), wav.getframerate()
            if frames <= 0:
                raise wave.Error("no audio frames")
        except (OSError, wave.Error, EOFError) as exc:
            problems.append(f"sound {name}: {exc}")
        else:
            lines.append(f"sound {name}: ok ({frames / rate:.2f} s)")
    from tray_agent.core.i18n import PoError, catalog_path, parse_po

    for lang in SHIPPED_TRANSLATIONS:
        try:
            entries = [e for e in parse_po(catalog_path(lang).read_text(encoding="utf-8")) if e.msgid]
        except (OSError, PoError) as exc:
            problems.append(f"translation {lang}: {exc}")
        else:
            lines.append(f"translation {lang}: ok ({len(entries)} strings)")
    if QSystemTrayIcon.isSystemTrayAvailable():
        tray = QSystemTrayIcon(render_icon("connected"))
        tray.show()
        app.processEvents()
        lines.append("tray: available, icon shown")
        tray.hide()
    else:
        lines.append("tray: not available on this desktop (the app shows a status window)")
    lines.append(f"qt platform: {app.platformName()}")
    print("tray-agent self-test")
    for line in lines + [f"MISSING {p}" for p in problems]:
        print("  " + line)
    print("result: " + ("FAILED" if problems else "ok"), flush=True)
    return 1 if problems else 0


# ---------------------------------------------------------------------------------------------
# Small adapters


class CommandRelay:
    """The CommandSink handed to the UI: forwards to the current client (which may be rebuilt).

    Without a client (not signed in yet) the command fails at once as OFFLINE, through the store.
    """

    def __init__(self, fail: Callable[[Command], None]) -> None:
        self.client: Client | None = None
        self._fail = fail

    def submit(self, command: Command) -> None:
        """Queue a command on the client. Never raises."""
        if self.client is not None:
            self.client.submit(command)
        else:
            self._fail(command)


def conversation_of_toast(key: str) -> str:
    """The conversation a toast key names ("" for the summary toast)."""
    _kind, sep, conversation = key.partition(":")
    return conversation if sep else ""


def build_windows(app: TrayApp) -> Any:
    """Build ``ui.windows.WindowManager`` wired to the app, or None if this build has no windows."""
    try:
        from tray_agent.ui.windows import WindowManager
    except ImportError as exc:
        logger.warning("No windows in this build (%s): the tray works without them", exc)
        return None
    try:
        return WindowManager(
            app.store,
            app.commands,
            app.loaded,
            app.loaded.settings.connection.dialect,
            bridge=app.bridge,
            state_file=app.paths.state / "windows.json",
            draft_store=app.local,
            clock=app.clock.now,
            demo=bool(app.args.demo),
        )
    except Exception:
        logger.exception("Could not build the windows")
        return None


# ---------------------------------------------------------------------------------------------
# The application


class TrayApp:
    """Holds and wires the app's objects for one run (built by :func:`run`)."""

    def __init__(
        self,
        args: argparse.Namespace,
        paths: Paths,
        loaded: LoadedSettings,
        app: QApplication,
        *,
        tray_icon: QSystemTrayIcon | None = None,
    ):
        """Build the store, policy, effect runner and tray (not started: see :meth:`main`).

        Args:
            args: the parsed command line.
            paths: the app's directories.
            loaded: the loaded settings.
            app: the running QApplication.
            tray_icon: an icon already shown (:class:`EarlyTray`): the tray controller adopts it.
        """
        import asyncio

        from tray_agent.core.events import ConnectionChanged, ConnectionState
        from tray_agent.core.policy import AlertPolicy
        from tray_agent.core.ports import SystemClock
        from tray_agent.core.state import Store
        from tray_agent.platform.notifier import NullNotifier
        from tray_agent.platform.sound import NullSound
        from tray_agent.ui.bridge import StoreBridge
        from tray_agent.ui.effects import EffectRunner
        from tray_agent.ui.theme import ThemeController
        from tray_agent.ui.tray import TrayController

        self.args = args
        self.paths = paths
        self.loaded = loaded
        self.app = app
        self.clock = SystemClock()
        settings = loaded.settings
        self.store = Store(history_limit=settings.ui.history_limit)
        if args.demo or self._configured():
            # The first icon said "connecting" and the client will: do not show the store's
            # initial OFFLINE meanwhile (services, keyring, demo). Without an account it is
            # offline (and the sign-in window follows).
            self.store.dispatch(ConnectionChanged(state=ConnectionState.CONNECTING, at=self.clock.now()))
        self.policy = AlertPolicy(settings.alerts)
        self.bridge = StoreBridge(self.store)
        self.commands = CommandRelay(self._fail_offline)
        self.runner = EffectRunner(
            self.policy,
            NullNotifier(),
            NullSound("starting"),
            self.clock,
            settings.alerts,
            request_resync=self._on_runner_resync_requested,
        )
        self.tray = TrayController(
            self.bridge,
            self.runner,
            self.commands,
            self.clock,
            mute_locked=loaded.is_locked("alerts.sounds"),
            dnd_allowed=settings.alerts.allow_dnd,
            dnd_file=paths.state / "dnd.json",
            tray_icon=tray_icon,
        )
        # Light/dark/high contrast: the setting, else the OS scheme, followed live (ui/theme.py).
        self.theme = ThemeController(app, settings.ui.theme, app)
        self.tray.set_icon_style(self.theme.icon_style)
        self.theme.icon_style_changed.connect(self.tray.set_icon_style)
        self.bridge.conversations_changed.connect(self._on_bridge_conversations_changed)
        self.bridge.focus_changed.connect(self._on_bridge_focus_changed)
        self.bridge.connection_changed.connect(self._on_bridge_connection_changed)
        self.tray.quit_requested.connect(self._on_tray_quit_requested)
        self.tray.reconnect_requested.connect(self._on_tray_reconnect_requested)
        self.tray.mute_toggled.connect(self._on_tray_mute_toggled)
        self.tray.sign_out_requested.connect(self._on_tray_sign_out_requested)
        self.tray.diagnostics_export_requested.connect(self._on_tray_diagnostics_export_requested)
        self.client: Client | None = None
        self.client_task: asyncio.Task[None] | None = None
        self.wakeup: Any = None  # ui.wakeup.WakeupWatcher, once started
        self.authenticator: Any = None
        self.secrets: Any = None
        self.windows: Any = None
        self.demo: Any = None
        self.stopping = asyncio.Event()
        self._auth_prompted = False
        self._last_logged_state = ""
        self._tasks: set[asyncio.Future[None]] = set()
        self.single_instance: Any = None
        self._open_at_start = ""
        self._show_at_start = False  # a later launch asked to show the app while it started
        self.local: Any = None
        self._demo_data: Any = None

    # -------------------------------------------------------------- start and stop

    def attach_single_instance(
        self, instance: Any, open_conversation: str = "", pending: Iterable[str] = ()
    ) -> None:
        """Receive later launches' requests; open ``open_conversation`` once the windows exist.

        ``pending``: requests that arrived before this app existed (while the first icon showed),
        answered as if they arrived now.
        """
        self.single_instance = instance
        self._open_at_start = open_conversation
        instance.message_received.connect(self._on_single_instance_message_received)
        for message in pending:
            self._on_single_instance_message_received(message)

    def _on_single_instance_message_received(self, message: str) -> None:
        from tray_agent.ui.single_instance import ACTIVATE, OPEN_PREFIX

        opening = message.startswith(OPEN_PREFIX)
        if opening:
            logger.info("Another launch asked to open a conversation")
        else:
            logger.info("Another launch asked to show the app")
        if self.windows is None:  # still starting: _start does it once the windows exist
            if opening:
                self._open_at_start = message.removeprefix(OPEN_PREFIX)
            elif message == ACTIVATE:
                self._show_at_start = True  # an earlier request to open a chat still stands
        elif opening:
            self.windows.open_chat(message.removeprefix(OPEN_PREFIX))
        else:
            self.windows.show_inbox()

    def _apply_autostart(self) -> None:
        """Make the login item match ``ui.autostart`` (never for the throw-away demo)."""
        if self.args.demo:
            return
        from tray_agent.platform.autostart import apply_autostart

        result = apply_autostart(
            self.loaded.settings.ui.autostart, locked=self.loaded.is_locked("ui.autostart")
        )
        if result.problem:
            logger.warning("Autostart: %s", result.problem)

    def show_tray(self) -> None:
        """Show the tray icon (or the status window) as early as possible."""
        self.tray.show()
        self.runner.start()

    def _watch_wakeups(self) -> None:
        """Reconnect at once after sleep/resume or a network change, not after the backoff."""
        from tray_agent.ui.wakeup import WakeupWatcher

        self.wakeup = WakeupWatcher(self.app)
        self.wakeup.wakeup_detected.connect(self._on_wakeup_detected)
        self.wakeup.start()

    def _on_wakeup_detected(self, reason: str) -> None:
        if self.client is not None:
            logger.info("Reconnecting at once: %s", reason)
            self.client.reconnect_now()

    async def main(self) -> int:
        """Start everything, wait for Quit / SIGINT / SIGTERM, shut down cleanly."""
        try:
            await self._start()
        except Exception:
            logger.exception("Start-up failed")
            await self._shutdown()
            return 1
        self._watch_wakeups()
        gc.freeze()  # PERFORMANCE-NOTES §6: no gen-2 pauses over start-up objects
        if os.environ.get(TEST_SHOW_MENU_ENV) == "1":
            self._test_show_menu()
        await self.stopping.wait()
        await self._shutdown()
        return 0

    def _test_show_menu(self) -> None:
        """Test hook: status window plus the open menu, for screenshots (see the module docstring)."""
        from PySide6.QtCore import QTimer

        window = self.tray.show_status_window()
        window.move(0, 0)
        # The popup needs the window mapped first (no window manager under Xvfb to tell us).
        QTimer.singleShot(300, self.tray.popup_menu)
        logger.info("Test hook: menu shown")

    async def _start(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        await self._start_services()
        self.secrets = await loop.run_in_executor(None, self._make_secrets)
        password: str | None = None
        if self.args.demo:
            password = await self._start_demo()
        else:
            from tray_agent.core.settings_layers import password_from_env

            password = password_from_env(os.environ)
        connection = self.loaded.settings.connection
        configured = self._configured()
        if configured:
            # Before the windows: restored chats find their drafts in the account's store.
            self.local = self.open_local_store(connection)
        self.attach_windows(build_windows(self))
        self.show_first_windows()
        self._apply_autostart()
        if not configured:
            logger.info("No server or account configured: asking the agent to sign in")
            self._set_offline()
            self._show_sign_in(_("Enter your server and account to sign in."))
            return
        self._start_client(password)

    def show_first_windows(self) -> None:
        """Once the windows exist: the last session's chats, then what launches asked for.

        The chat a launch's link named, else the inbox when a later launch asked to show the
        app (or the settings do not start hidden).
        """
        if self.windows is None:
            return
        self.windows.restore_session()
        if self._open_at_start:
            self.windows.open_chat(self._open_at_start)
        elif self._show_at_start or not self.loaded.settings.ui.start_hidden:
            self.windows.show_inbox()

    def attach_windows(self, windows: Any) -> None:
        """Use ``windows`` (a ``ui.windows.WindowManager``, or None) and connect its signals."""
        self.windows = windows
        if windows is None:
            return
        self.tray.set_windows(windows)
        windows.sign_in_requested.connect(self._on_windows_sign_in_requested)
        windows.settings_saved.connect(self._on_windows_settings_saved)
        windows.quit_requested.connect(self._on_tray_quit_requested)
        windows.sign_out_confirmed.connect(self._on_windows_sign_out_confirmed)

    async def _start_services(self) -> None:
        """The notifier (desktop-notifier, else tray messages, else none) and the sound."""
        from tray_agent.platform.notifier import NullNotifier, create_notifier
        from tray_agent.platform.sound import NullSound, SystemSound
        from tray_agent.ui.qt_notifier import TrayMessageNotifier

        notifier: Any = await create_notifier(app_name=DISPLAY_NAME)
        if isinstance(notifier, NullNotifier):
            if self.tray.tray_available:
                notifier = TrayMessageNotifier(self.tray.tray_icon)
                logger.info("Notifications: tray messages (no notification service answered)")
                self.tray.set_problem("notifications", "")
            else:
                self.tray.set_problem("notifications", _("no notification service on this desktop"))
        else:
            logger.info("Notifications: native")
        notifier.set_callback(self._on_toast_activated)
        self.runner.set_notifier(notifier)
        sound: Any = SystemSound()
        if not sound.available:
            problem = sound.problem or "no audio player found"
            sound = NullSound(problem)
            self.tray.set_problem("sounds", problem)
        self.runner.set_sound(sound)

    def _make_secrets(self) -> Any:
        """The keyring (blocking probe: runs in an executor). The demo keeps secrets in memory."""
        from tray_agent.platform.secrets import KeyringSecretStore, MemorySecretStore

        if self.args.demo:
            return MemorySecretStore()
        return KeyringSecretStore()

    async def _start_demo(self) -> str:
        """Start the built-in demo backend and configure the connection for its first agent."""
        import tempfile

        from tray_agent.core.settings import ConnectionSettings
        from tray_agent.demo_launch import demo_connection, start_demo

        session = await start_demo(self.args.demo_dialect, seed=DEMO_SEED)
        self.demo = session.server
        # The demo's account is throw-away: its local store lives in a temporary directory.
        self._demo_data = tempfile.TemporaryDirectory(prefix="tray-agent-demo-")
        connection = ConnectionSettings(**demo_connection(session.info))
        settings = self.loaded.settings.model_copy(update={"connection": connection})
        self.loaded = dataclasses.replace(self.loaded, settings=settings)
        logger.info(
            "Demo backend (%s) on %s, signed in as %s", connection.dialect, session.info.url, connection.email
        )
        return session.password

    def _start_client(self, password: str | None, token: str | None = None) -> None:
        from tray_agent.core.events import Dialect
        from tray_agent.core.protocol import codec_for
        from tray_agent.net.auth import authenticator_for
        from tray_agent.net.client import Client

        connection = self.loaded.settings.connection
        dialect = Dialect(connection.dialect)
        kwargs = {"org_id": connection.org} if dialect is Dialect.ORG else {}
        token = token or connection.token.get_secret_value() or None
        try:
            self.authenticator = authenticator_for(
                connection, self.secrets, self.clock, password=password, token=token
            )
        except ValueError as exc:
            if self.client is None:
                self._set_offline()
            self._show_sign_in(str(exc))
            return
        if self.local is None:
            self.local = self.open_local_store(connection)
        self.client = Client(
            codec_for(dialect, **kwargs),
            self.authenticator,
            connection,
            self.emit,
            self.clock,
            outbox=self.local,
        )
        self.commands.client = self.client
        self.client_task = self.client.start()

    def open_local_store(self, connection: Any) -> Any:
        """Open the account's durable store (outbox, drafts, recent history); never raises.

        Drafts of an older version (``drafts.json``) move into it once, and the windows keep
        their drafts in it from now on.
        """
        from tray_agent.platform.storage import open_account_store

        local = open_account_store(self._data_base(), connection, self.loaded.settings)
        if local.problem:
            logger.warning("Local store: %s", local.problem)
            self.tray.set_problem("storage", local.problem)
        self._migrate_drafts_file(local)
        if self.windows is not None:
            self.windows.set_draft_store(local)
        return local

    def _data_base(self) -> Path:
        """Where the account stores live: the data directory (the demo's is temporary)."""
        return Path(self._demo_data.name) if self._demo_data is not None else self.paths.data

    def _local_store_path(self, connection: Any) -> Path:
        from tray_agent.platform.storage import store_path

        return store_path(self._data_base(), connection.secret_key("store"))

    def _migrate_drafts_file(self, local: Any) -> None:
        """Move the drafts of an older version (``drafts.json``) into the account's store, once."""
        path = self.paths.state / DRAFTS_FILE
        if local.in_memory or not path.exists():
            return
        import json

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("Ignoring the unreadable old drafts file %s: %s", path, exc)
            data = {}
        drafts = data.get("drafts") if isinstance(data, dict) else None
        moved = 0
        if isinstance(drafts, dict):
            for conversation, text in drafts.items():
                usable = isinstance(conversation, str) and isinstance(text, str) and bool(text.strip())
                if usable and not local.draft(conversation):
                    local.set_draft(conversation, text)
                    moved += 1
        if local.problem:
            return  # keep the file: the store could not take them
        try:
            path.unlink()
        except OSError as exc:
            logger.warning("Could not delete the old drafts file %s: %s", path, exc)
        logger.info("Moved %d reply draft(s) from %s into the local store", moved, DRAFTS_FILE)

    async def _stop_client(self) -> None:
        import asyncio

        client, task, local = self.client, self.client_task, self.local
        if self.windows is not None and local is not None:
            with contextlib.suppress(Exception):
                self.windows.save_drafts()  # what the reply boxes hold, before the store closes
                self.windows.set_draft_store(None)
        self.client, self.client_task, self.commands.client, self.local = None, None, None, None
        if client is None:
            if local is not None:
                local.close()
            return
        try:
            await asyncio.wait_for(client.stop(), STOP_TIMEOUT)
        except Exception:
            logger.warning("The client did not stop cleanly", exc_info=True)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if local is not None:
            local.close()  # after the client: its last outbox writes go in first

    async def _shutdown(self) -> None:
        logger.info("Shutting down")
        if self.wakeup is not None:
            self.wakeup.stop()
        await self._stop_client()
        if self.windows is not None:
            with contextlib.suppress(Exception):
                self.windows.save_session()
                self.windows.close_all()
        await self.runner.aclose()
        notifier = self.runner.notifier
        with contextlib.suppress(Exception):
            await notifier.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            self.runner.sound.close()  # type: ignore[attr-defined]
        if self.demo is not None:
            with contextlib.suppress(Exception):
                await self.demo.stop()
        if self._demo_data is not None:
            self._demo_data.cleanup()
        self.bridge.close()
        self.tray.hide()

    # -------------------------------------------------------------- event flow

    def emit(self, event: Event) -> None:
        """The client's event sink: stamp connection changes, reduce, run the effects."""
        from tray_agent.core.events import ConnectionChanged, WaitingListPage

        if isinstance(event, ConnectionChanged | WaitingListPage) and event.at is None:
            event = dataclasses.replace(event, at=self.clock.now())
        self.dispatch(event)

    def _configured(self) -> bool:
        """A server and an account to sign in with are set."""
        connection = self.loaded.settings.connection
        return bool(connection.server and (connection.email or connection.token.get_secret_value()))

    def _set_offline(self) -> None:
        """No client will connect (no account, or unusable sign-in settings): say so."""
        from tray_agent.core.events import ConnectionChanged, ConnectionState

        self.emit(ConnectionChanged(state=ConnectionState.OFFLINE))

    def dispatch(self, event: Event) -> tuple[Any, ...]:
        """Reduce one event (from the client or the UI) and carry out its effects."""
        effects = self.store.dispatch(event)
        if effects:
            self.runner.run(effects)
        return effects

    def _fail_offline(self, command: Command) -> None:
        from tray_agent.core.commands import DiscardCommand, ResendCommand
        from tray_agent.core.events import CommandFailed, CommandQueued, FailureReason

        if isinstance(command, ResendCommand | DiscardCommand):
            # They name an existing command: a CommandQueued here would overwrite its record.
            logger.info("Not signed in: %s of %s ignored", type(command).__name__, command.command_id)
            return
        conversation = command.conversation_key
        self.dispatch(
            CommandQueued(command_id=command.command_id, kind=command.kind, conversation=conversation)
        )
        self.dispatch(
            CommandFailed(
                command_id=command.command_id,
                kind=command.kind,
                conversation=conversation,
                reason=FailureReason.OFFLINE,
                text=_("not signed in"),
            )
        )

    # -------------------------------------------------------------- slots

    def _on_bridge_conversations_changed(self, keys: Any) -> None:
        # Only what changed reaches the policy: a flush costs its changes, not the waiting list.
        self.runner.update_waiting(keys, self.store.state)

    def _on_bridge_focus_changed(self, conversation: Any) -> None:
        self.runner.set_focus(conversation)

    def _on_bridge_connection_changed(self, info: Any) -> None:
        from tray_agent.core.events import ConnectionState

        if info.state != self._last_logged_state:
            self._last_logged_state = info.state
            logger.info("Connection: %s %s", info.state, info.detail)
        if info.state is ConnectionState.AUTH_REQUIRED:
            if not self._auth_prompted:
                self._auth_prompted = True
                self._show_sign_in(info.detail)
        else:
            self._auth_prompted = False
        if info.state is ConnectionState.CONNECTED and self.windows is not None:
            self.windows.close_sign_in()

    def _on_tray_quit_requested(self) -> None:
        self.stopping.set()

    def _on_tray_sign_out_requested(self) -> None:
        if self.windows is not None:
            self.windows.ask_sign_out()

    def _on_windows_sign_out_confirmed(self) -> None:
        self._spawn(self.sign_out())

    def _on_tray_diagnostics_export_requested(self, path: str) -> None:
        self._spawn(self.export_diagnostics(Path(path)))

    def _spawn(self, coro: Any) -> None:
        import asyncio

        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_for_tasks(self) -> None:
        """Wait until the background tasks started by UI signals (sign-in, sign-out, export) end."""
        import asyncio

        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _on_tray_reconnect_requested(self) -> None:
        if self.client is not None:
            self.client.reconnect_now()
        else:  # no account (sign-in cancelled) or signed out: nothing to reconnect, so sign in
            self._show_sign_in(_("Enter your server and account to sign in."))

    def _on_tray_mute_toggled(self, muted: bool) -> None:
        from tray_agent.core.settings_layers import save_user_settings

        edited = self.loaded.settings.model_copy(deep=True)
        edited.alerts.sounds = not muted
        if not self.loaded.is_locked("alerts.sounds"):
            try:
                self.loaded = save_user_settings(self.loaded, edited)
            except (OSError, ValueError) as exc:
                logger.warning("Could not save the settings: %s", exc)
                self.loaded = dataclasses.replace(self.loaded, settings=edited)
        if self.windows is not None:
            self.windows.set_loaded_settings(self.loaded)
        self.runner.update_settings(self.loaded.settings.alerts)

    def _on_windows_settings_saved(self, edited: Any) -> None:
        from tray_agent.core.settings_layers import save_user_settings

        before = self.loaded.settings.connection
        try:
            self.loaded = save_user_settings(self.loaded, edited)
        except (OSError, ValueError) as exc:
            logger.warning("Could not save the settings: %s", exc)
            if self.windows is not None:
                self.windows.settings_save_failed(str(exc))
            return
        if self.windows is not None:
            self.windows.set_loaded_settings(self.loaded)
        settings = self.loaded.settings
        self.runner.update_settings(settings.alerts)
        self.tray.set_dnd_allowed(settings.alerts.allow_dnd)
        self.store.history_limit = settings.ui.history_limit
        self.theme.set_setting(settings.ui.theme)
        from tray_agent.ui.language import apply_language

        apply_language(settings.ui.language, self.app)  # new windows and the tray menu follow
        self._apply_autostart()
        if settings.connection != before:
            self._spawn(self._restart_client())

    async def _restart_client(self) -> None:
        await self._stop_client()
        self._start_client(None)

    def _on_runner_resync_requested(self, why: str) -> None:
        if self.client is not None:
            self.client.request_resync(why)

    def _on_toast_activated(self, key: str, action: Any) -> None:
        from tray_agent.core.commands import TakeOver
        from tray_agent.core.effects import ToastAction

        conversation = conversation_of_toast(key)
        logger.info("Toast %s: %s", key, action or "clicked")
        if not conversation:
            if self.windows is not None:
                self.windows.show_inbox()
            return
        if action is ToastAction.TAKE_OVER:
            self.commands.submit(TakeOver(conversation))
        if self.windows is not None:
            self.windows.open_chat(conversation)

    def _show_sign_in(self, problem: str) -> None:
        if self.windows is not None:
            keyring_problem = getattr(self.secrets, "problem", None) or ""
            self.windows.show_sign_in(problem, keyring_problem=keyring_problem)
        else:
            logger.warning("Sign-in needed (%s), but this build has no sign-in window", problem)

    def _on_windows_sign_in_requested(self, credentials: Any) -> None:
        self._spawn(self._sign_in(credentials))

    async def _sign_in(self, credentials: Any) -> None:
        """New credentials from the sign-in dialog: save the account, restart the client."""
        import asyncio

        from tray_agent.core.settings_layers import save_user_settings

        def field(name: str) -> Any:
            if isinstance(credentials, dict):
                return credentials.get(name)
            return getattr(credentials, name, None)

        edited = self.loaded.settings.model_copy(deep=True)
        for name in ("dialect", "server", "company", "org", "email", "supabase_url", "supabase_key"):
            value = field(name)
            if isinstance(value, str) and value and not self.loaded.is_locked(f"connection.{name}"):
                setattr(edited.connection, name, value)
        try:
            self.loaded = save_user_settings(self.loaded, edited)
        except (OSError, ValueError) as exc:
            logger.warning("Could not save the account settings: %s", exc)
            self.loaded = dataclasses.replace(self.loaded, settings=edited)
        password = field("password")
        token = field("token")
        await self._stop_client()
        self._start_client(
            password if isinstance(password, str) and password else None,
            token if isinstance(token, str) and token else None,
        )
        remember = bool(field("remember") or field("remember_password"))
        if remember and self.authenticator is not None and isinstance(password, str) and password:
            loop = asyncio.get_running_loop()
            authenticator = self.authenticator
            await loop.run_in_executor(None, lambda: authenticator.set_password(password, remember=True))

    # -------------------------------------------------------------- sign out, diagnostics

    async def sign_out(self) -> None:
        """Forget the account on this computer, then ask for a sign-in. Never raises.

        Stops the client; deletes the account's local store (conversations, drafts, queued
        replies: the database and its companions) and its secrets in the keyring (password,
        refresh token, session cookie); closes the chats and forgets which were open; empties
        the state (``SignedOut``) so every view follows; shows the sign-in dialog.
        """
        import asyncio

        from tray_agent.core.state import SignedOut

        logger.info("Signing out: deleting this computer's copy of the account")
        connection = self.loaded.settings.connection
        local = self.local
        await self._stop_client()
        self.authenticator = None
        try:
            if local is None:  # never opened this run: open (no migration) just to delete it
                from tray_agent.platform.storage import LocalStore

                local = LocalStore(self._local_store_path(connection))
            if not local.sign_out():
                logger.error("Sign-out: some local data could not be deleted")
        except Exception:
            logger.exception("Sign-out: deleting the local store failed")
        self.tray.set_problem("storage", "")
        secrets = self.secrets
        if secrets is not None:
            keys = [connection.secret_key(kind) for kind in SIGN_OUT_SECRETS]
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, lambda: [secrets.delete(key) for key in keys])
            except Exception:
                logger.exception("Sign-out: deleting the saved sign-in failed")
        if self.windows is not None:
            with contextlib.suppress(Exception):
                self.windows.signed_out()
        self._auth_prompted = True  # the sign-in dialog below is the prompt
        self.dispatch(SignedOut(detail=_("signed out")))
        self._show_sign_in(_("You are signed out. Sign in to continue."))

    async def export_diagnostics(self, target: Path) -> bool:
        """Write the diagnostics zip to ``target`` (logs, settings without secrets, checks).

        The doctor's local checks are bounded (a few seconds); the zip is written off the GUI
        thread. The agent is told where it went, or why it failed. Never raises.

        Returns:
            True once the zip is written.
        """
        import asyncio

        from tray_agent import diagnostics
        from tray_agent.platform.paths import read_policy_sources

        loop = asyncio.get_running_loop()
        try:
            sources = await loop.run_in_executor(None, read_policy_sources, self.paths)
            doctor = await diagnostics.local_checks(self.args)
            backend = getattr(self.secrets, "backend_name", None)
            inputs = diagnostics.DiagnosticsInput(
                loaded=self.loaded,
                log_dir=self.paths.log,
                policy_sources=[name for name, _source in sources],
                versions=diagnostics.collect_versions(backend if isinstance(backend, str) else None),
                store_problem=str(getattr(self.local, "problem", "") or ""),
                doctor=doctor,
                created_at=self.clock.now(),
            )
            await loop.run_in_executor(None, diagnostics.write_diagnostics_zip, target, inputs)
        except Exception as exc:
            logger.exception("Could not export diagnostics to %s", target)
            problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            self.tray.show_info(
                _("Diagnostics not saved"), _("Could not save the file: {problem}").format(problem=problem)
            )
            return False
        self.tray.show_info(_("Diagnostics saved"), _("Saved to {path}").format(path=str(target)))
        return True


# ---------------------------------------------------------------------------------------------
# Entry point


def claim_single_instance(args: argparse.Namespace, paths: Paths) -> tuple[Any, str] | int:
    """Become the one running instance, or hand this launch over to it.

    A second launch (or ``tray-agent open <conversation>`` / a ``tray-agent://`` link) forwards
    "activate" or "open <conversation>" to the running instance over a per-user local socket and
    exits 0. A malformed link exits 2 with a plain-words message.

    Returns:
        ``(single_instance, conversation_to_open)`` when this process is the instance, or the
        exit code when it is not.
    """
    from tray_agent.ui.single_instance import ACTIVATE, SingleInstance, open_message, server_name

    conversation = ""
    target = getattr(args, "target", None)
    if target:
        from tray_agent.core.deeplink import DeepLinkError, parse_link

        try:
            conversation = parse_link(target).conversation
        except DeepLinkError as exc:
            print(f"tray-agent: {exc}", file=sys.stderr)
            return 2
    instance = SingleInstance(server_name(str(paths.config)))
    if instance.try_forward(open_message(conversation) if conversation else ACTIVATE):
        logger.info("Another instance is running: handed over to it")
        return 0
    if instance.listen():
        logger.info("Single instance: listening for later launches")
    else:
        logger.warning("Could not listen for other launches; a second launch will start a second app")
    return instance, conversation


def _install_signal_handlers(loop: asyncio.AbstractEventLoop | None, stop: Callable[[], None]) -> None:
    """SIGINT and SIGTERM call ``stop``: through ``loop`` when it supports signals, else Python's handler."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if loop is not None:
            try:
                loop.add_signal_handler(sig, stop)
                continue
            except (NotImplementedError, RuntimeError, AttributeError, ValueError):
                pass  # Windows / loops without signal support: let Python's handler set the flag.
        signal.signal(sig, lambda *_args: stop())


EARLY_ICON_STATE = "connecting"
"""What the first icon shows: the app is starting and will connect."""
EARLY_ICON_SIZES = (16, 22, 24, 32, 48, 64)
"""Pixmap sizes of the first icon (as ``ui.tray.ICON_SIZES``, which is not imported yet)."""


def render_svg_icon(svg: bytes, sizes: tuple[int, ...] = EARLY_ICON_SIZES) -> QIcon:
    """A QIcon of an SVG at each size, for the first icon.

    ``ui.tray.render_icon`` draws the same, with badge and theme, but importing it brings the
    store and the policy; this needs QtGui and QtSvg only (and not the ``Qt`` namespace, whose
    first import alone costs PySide6 about 15 ms).
    """
    from PySide6.QtCore import QByteArray, QRectF
    from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(QByteArray(svg))
    icon = QIcon()
    for size in sizes:
        # A QPixmap, not a QImage: resolving QImage.fill's overloads builds the Qt namespace.
        pixmap = QPixmap(size, size)
        pixmap.fill(QColor(0, 0, 0, 0))
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        icon.addPixmap(pixmap)
    return icon


class EarlyTray:
    """The tray icon shown first, before the settings, the store, the network or the windows exist.

    It shows the "connecting" icon, a tooltip and a menu with Quit, in the OS language (the
    ``ui.language`` setting is applied a moment later, with the settings). TrayApp's tray
    controller then adopts the same QSystemTrayIcon (the desktop keeps the item it registered)
    and puts the full menu in place of this one.

    Args:
        app: the running application (the icon's Qt parent until it is adopted).
        quit_requested: called when Quit is chosen.
    """

    def __init__(self, app: QApplication, quit_requested: Callable[[], None]) -> None:
        from PySide6.QtWidgets import QSystemTrayIcon

        svg = (
            importlib.resources.files("tray_agent.resources")
            .joinpath("icons", f"tray-{EARLY_ICON_STATE}.svg")
            .read_bytes()
        )
        self._quit_requested = quit_requested
        self.menu: QMenu | None = None
        self.icon = QSystemTrayIcon(render_svg_icon(svg), app)
        self.icon.setToolTip("\n".join((_("tray_agent"), _("Connecting…"))))

    def show(self) -> None:
        """Show the icon, then give it its menu.

        The menu comes right after the icon: it is the process's first widget, which costs Qt
        its style, and the desktop can ask for the menu only once the event loop runs anyway.
        """
        from PySide6.QtWidgets import QMenu

        self.icon.show()
        self.menu = QMenu()
        quit_action = self.menu.addAction(_("Quit"))
        quit_action.setObjectName("quit")
        quit_action.triggered.connect(self._on_quit_action_triggered)
        self.icon.setContextMenu(self.menu)

    def _on_quit_action_triggered(self) -> None:
        self._quit_requested()

    def handed_over(self) -> None:
        """The tray controller owns the icon now, with its own menu: drop the first menu."""
        if self.menu is not None:
            self.menu.deleteLater()
            self.menu = None

    def close(self) -> None:
        """Hide the icon (quit before the app was up)."""
        self.icon.hide()
        self.handed_over()


def show_early_tray(app: QApplication, quit_requested: Callable[[], None]) -> EarlyTray | None:
    """Show the first tray icon at once; None on a desktop without a tray.

    Without a tray there is nothing to show early: the tray controller shows its status window
    once it is built. The menu's language is the OS's (see :class:`EarlyTray`).
    """
    from PySide6.QtWidgets import QSystemTrayIcon

    from tray_agent.core import i18n
    from tray_agent.ui.language import system_languages

    if not QSystemTrayIcon.isSystemTrayAvailable():
        return None
    i18n.set_language(i18n.resolve_language("system", system_languages()))
    early = EarlyTray(app, quit_requested)
    early.show()
    return early


class Launch:
    """One run of the tray app after the single-instance claim: the icon first, then the rest.

    :meth:`run` shows the :class:`EarlyTray` icon, then runs :meth:`main` on the qasync loop,
    which gives Qt a loop turn (the desktop asks the new icon for its properties) before each
    heavy step: loading the settings (pydantic), then the language and the :class:`TrayApp`
    (which adopts the icon), whose :meth:`TrayApp.main` starts everything else.

    Quit, SIGINT and SIGTERM work from the moment the icon shows: before the TrayApp exists they
    end the launch at the next step, afterwards they stop the app as usual.

    Args:
        args: the parsed command line.
        paths: the app's directories.
        app: the QApplication.
        instance: the single-instance server (this process is the instance).
        open_conversation: a conversation to open once the windows exist ("" for none).
        open_log_file: opens the log file (see :func:`setup_logging`); called after the first
            loop turn, so that Qt can answer the desktop about the new icon before.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        paths: Paths,
        app: QApplication,
        instance: SingleInstance,
        open_conversation: str = "",
        *,
        open_log_file: Callable[[], None] | None = None,
    ) -> None:
        self.args = args
        self.paths = paths
        self.app = app
        self.instance = instance
        self.open_conversation = open_conversation
        self._open_log_file = open_log_file
        self.early: EarlyTray | None = None
        self.tray_app: TrayApp | None = None
        self.stop_requested = False
        self._messages: list[str] = []

    def stop(self) -> None:
        """Quit: end the launch, or stop the app once it runs."""
        self.stop_requested = True
        if self.tray_app is not None:
            self.tray_app.stopping.set()

    def _on_instance_message_received(self, message: str) -> None:
        self._messages.append(message)  # later launches before the app is up: replayed to it

    def run(self) -> int:
        """Show the icon, run the app until Quit / SIGINT / SIGTERM; returns the exit code."""
        try:
            self.instance.message_received.connect(self._on_instance_message_received)
            self.early = show_early_tray(self.app, self.stop)
            _install_signal_handlers(None, self.stop)  # from the moment the icon shows

            import asyncio

            import qasync

            loop = qasync.QEventLoop(self.app)
            asyncio.set_event_loop(loop)
            try:
                _install_signal_handlers(loop, self.stop)
                with loop:
                    code = int(loop.run_until_complete(self.main()))
            finally:
                asyncio.set_event_loop(None)
        finally:
            self.instance.close()  # later launches must not hand over to a process that is gone
        logger.info("Stopped (exit code %d)", code)
        logging.shutdown()
        return code

    async def main(self) -> int:
        """Load the settings, build the TrayApp and run it (a loop turn between heavy steps).

        A failure while building (before :meth:`TrayApp.main` takes over, which handles its
        own) is logged and ends the launch with exit code 1 and no icon left behind.
        """
        try:
            built = await self._build()
        except Exception:
            logger.exception("Start-up failed")
            if self.tray_app is not None:
                self.tray_app.tray.hide()
            if self.early is not None:
                self.early.close()
            return 1
        if isinstance(built, int):
            return built  # quit before the app was up
        return await built.main()

    async def _build(self) -> TrayApp | int:
        from tray_agent.platform.paths import load_settings_for

        if not await self._next_turn():  # Qt answers the desktop's first questions about the icon
            return self._stopped_early()
        loaded = load_settings_for(self.paths, os.environ, self.args)  # pydantic: ~100 ms
        from tray_agent.ui.language import apply_language

        # Before the tray controller and any window: every string goes through core.i18n
        # (docs/i18n.md). Only the first icon's tooltip and Quit item were built before.
        apply_language(loaded.settings.ui.language, self.app)
        if not await self._next_turn():
            return self._stopped_early()
        from tray_agent.ui.tray import render_icon  # the store, the policy, the bridge: ~60 ms

        self.app.setWindowIcon(render_icon("agent"))
        if not await self._next_turn():
            return self._stopped_early()
        early = self.early
        tray_app = TrayApp(self.args, self.paths, loaded, self.app, tray_icon=early.icon if early else None)
        self.tray_app = tray_app
        if self.stop_requested:  # a signal during the build (Python runs handlers between any lines)
            tray_app.stopping.set()
        if early is not None:
            early.handed_over()
        self.instance.message_received.disconnect(self._on_instance_message_received)
        tray_app.attach_single_instance(self.instance, self.open_conversation, self._messages)
        self._messages.clear()
        tray_app.show_tray()
        return tray_app

    async def _next_turn(self) -> bool:
        """Let the event loop run once (and open the log file after the first); False on Quit."""
        import asyncio

        await asyncio.sleep(0)
        if self._open_log_file is not None:
            self._open_log_file()
            self._open_log_file = None
        return not self.stop_requested

    def _stopped_early(self) -> int:
        logger.info("Quit before the app was up")
        if self.early is not None:
            self.early.close()
        return 0


def run(args: argparse.Namespace) -> int:
    """Run the tray app until Quit, SIGINT or SIGTERM; returns the exit code.

    Paths, logging, the QApplication and the single-instance claim come first; then
    :class:`Launch` shows the tray icon before anything else is loaded.
    """
    from tray_agent.platform.paths import Paths

    verbose = bool(getattr(args, "verbose", False))
    paths: Paths | None = None
    try:
        paths = Paths.from_platform(getattr(args, "basedir", None))
        paths.ensure_dirs()
    except OSError as exc:
        print(f"tray-agent: cannot create the app's directories: {exc}", file=sys.stderr)
        if not getattr(args, "self_test", False):
            return 1
        paths = None  # the self-test runs without them
    open_log_file = setup_logging(paths.log if paths is not None else None, verbose, open_file_later=True)
    try:
        return _run_qt(args, paths, open_log_file)
    finally:
        open_log_file()  # when the launch did not get to it (handed over, self-test, failure)


def _run_qt(args: argparse.Namespace, paths: Paths | None, open_log_file: Callable[[], None]) -> int:
    from PySide6.QtWidgets import QApplication

    from tray_agent.platform.memory import install_pyside_linecache_guard

    install_pyside_linecache_guard()  # before the rest is imported: ~15 MB less (platform/memory.py)
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else APP_NAME])
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(DISPLAY_NAME)
    app.setDesktopFileName(APP_NAME)
    app.setQuitOnLastWindowClosed(False)
    install_qt_message_handler()
    if getattr(args, "self_test", False) or paths is None:
        from tray_agent.ui.tray import render_icon

        app.setWindowIcon(render_icon("agent"))
        return self_test(app)

    claimed = claim_single_instance(args, paths)
    if isinstance(claimed, int):
        return claimed  # forwarded to the running instance, or a bad link
    instance, open_conversation = claimed
    return Launch(args, paths, app, instance, open_conversation, open_log_file=open_log_file).run()
