"""Composition root of the tray app: the wiring of every object, and its start and stop.

:class:`TrayApp` builds the store, the policy, the tray controller and, once started, the
services, the client and the windows. The process around it (logging, the QApplication, the
single-instance claim, the first tray icon, the event loop) is ``tray_agent/gui.py``, which
builds it; nothing else constructs the long-lived objects. This module imports only light
modules at import time (the heavy ones inside the methods that need them).

Test hooks (documented, tiny):

* ``TRAY_AGENT_TEST_SHOW_MENU=1``: once started, show the status window and pop the tray menu
  up next to it (kept up to date while open), so that a screenshot shows the icon, the badge
  and the menu. Used by ``tests/desktop/test_alerting.py``.
* ``TRAY_AGENT_TEST_LOG_COUNTS=1``: after every flush of the store to the windows, log one
  line ``Counts: waiting=<n> mine=<n> badge=<text> tabs=<title>|<title>|<title>`` (the tray
  badge and the inbox's tab titles as shown), read-only. Used by
  ``tests/desktop/test_workflow.py`` to check that they agree.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tray_agent.core.i18n import _

if TYPE_CHECKING:
    import tempfile
    from collections.abc import Coroutine
    from datetime import datetime

    from PySide6.QtWidgets import QApplication, QSystemTrayIcon

    from tray_agent.core.effects import Effect, ToastAction
    from tray_agent.core.events import Event
    from tray_agent.core.ports import Notifier, SecretStore, Sound
    from tray_agent.core.settings import Settings
    from tray_agent.core.settings_layers import LoadedSettings
    from tray_agent.core.state import ConnectionInfo, State, Store
    from tray_agent.demo.server import DemoServer
    from tray_agent.platform.paths import Paths
    from tray_agent.platform.storage import LocalStore
    from tray_agent.session import AccountSession, Dispatcher
    from tray_agent.session.account import SessionClient
    from tray_agent.ui.single_instance import SingleInstance
    from tray_agent.ui.wakeup import WakeupWatcher
    from tray_agent.ui.windows import WindowManager

logger = logging.getLogger("tray_agent.app")

DISPLAY_NAME = "tray_agent"
SIGN_OUT_SECRETS = ("password", "refresh_token", "session")  # as session.account (not imported at start-up)
TEST_SHOW_MENU_ENV = "TRAY_AGENT_TEST_SHOW_MENU"
TEST_LOG_COUNTS_ENV = "TRAY_AGENT_TEST_LOG_COUNTS"
DEMO_SEED = 7


# ---------------------------------------------------------------------------------------------
# Small adapters


def build_windows(app: TrayApp) -> WindowManager | None:
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
            dispatch=app.dispatcher.dispatch,
            demo=bool(app.args.demo),
        )
    except Exception:
        logger.exception("Could not build the windows")
        return None


# ---------------------------------------------------------------------------------------------
# The application


class TrayApp:
    """Wires the app's objects for one run (built by :class:`Launch`) and starts and stops them.

    The account's objects and flows (client, local store, secrets; sign-in, sign-out, settings)
    live in the Qt-free :class:`~tray_agent.session.AccountSession` built by
    :func:`~tray_agent.session.build_session`; this class connects it to the tray and windows.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        paths: Paths,
        loaded: LoadedSettings,
        app: QApplication,
        *,
        tray_icon: QSystemTrayIcon | None = None,
    ):
        """Build the session, store, alert engine and tray (not started: see :meth:`main`).

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
        from tray_agent.platform.notifier import NullNotifier
        from tray_agent.platform.sound import NullSound
        from tray_agent.session import SessionHooks, build_session
        from tray_agent.ui.bridge import StoreBridge
        from tray_agent.ui.confirm import LeaveGuard
        from tray_agent.ui.effects import EffectRunner
        from tray_agent.ui.single_instance import LaunchRequests
        from tray_agent.ui.theme import ThemeController
        from tray_agent.ui.tray import TrayController

        self.args = args
        self.paths = paths
        self.app = app
        self.clock = SystemClock()
        settings = loaded.settings
        self.windows: WindowManager | None = None
        hooks = SessionHooks(
            problem=self._on_session_problem,
            sign_in_needed=self._show_sign_in,
            local_store_changed=self._on_session_local_store_changed,
            local_store_closing=self._on_session_local_store_closing,
            signed_out=self._on_session_signed_out,
            settings_changed=self._on_session_settings_changed,
        )
        self.session: AccountSession = build_session(
            loaded, self.clock, data_dir=paths.data, state_dir=paths.state, hooks=hooks
        )
        self.dispatcher: Dispatcher = self.session.dispatcher
        self.store: Store = self.session.store
        if args.demo or self.session.configured:
            # The first icon said "connecting" and the client will: do not show the store's
            # initial OFFLINE meanwhile (services, keyring, demo). Without an account it is
            # offline (and the sign-in window follows).
            self.dispatcher.dispatch(ConnectionChanged(state=ConnectionState.CONNECTING, at=self.clock.now()))
        self.policy = AlertPolicy(settings.alerts)
        self.bridge = StoreBridge(self.store)
        self.commands: AccountSession = self.session  # the UI's CommandSink
        self.leave_guard = LeaveGuard(self.bridge, self.commands)  # Quit / Sign out while holding customers
        self.runner = EffectRunner(
            self.policy,
            NullNotifier(),
            NullSound("starting"),
            self.clock,
            settings.alerts,
        )
        # The one route into the policy: reducer alerts through the dispatcher, the waiting
        # list and the focus from the store.
        self.runner.attach(self.store)
        self.dispatcher.set_alerts(self.runner)
        self.tray = TrayController(
            self.bridge,
            self.runner,
            self.commands,
            self.clock,
            mute_locked=loaded.is_locked("alerts.sounds"),
            dnd_allowed=settings.alerts.allow_manual_dnd,
            tray_icon=tray_icon,
        )
        # Light/dark/high contrast: the setting, else the OS scheme, followed live (ui/theme.py).
        self.theme = ThemeController(app, settings.ui.theme, app)
        self.tray.set_icon_style(self.theme.icon_style)
        self.theme.icon_style_changed.connect(self.tray.set_icon_style)
        self.bridge.connection_changed.connect(self._on_bridge_connection_changed)
        self.tray.quit_requested.connect(self._on_tray_quit_requested)
        self.tray.reconnect_requested.connect(self._on_tray_reconnect_requested)
        self.tray.mute_toggled.connect(self._on_tray_mute_toggled)
        self.tray.sign_out_requested.connect(self._on_tray_sign_out_requested)
        self.tray.diagnostics_export_requested.connect(self._on_tray_diagnostics_export_requested)
        self.runner.dnd_changed.connect(self._on_runner_dnd_changed)
        self.wakeup: WakeupWatcher | None = None
        self.demo: DemoServer | None = None  # only with --demo
        self.stopping = asyncio.Event()
        self._auth_prompted = False
        self._last_logged_state = ""
        self.single_instance: SingleInstance | None = None
        self.launches = LaunchRequests()  # what launches asked for, until the windows exist
        self._demo_data: tempfile.TemporaryDirectory[str] | None = None

    # -------------------------------------------------------------- the session's objects

    @property
    def loaded(self) -> LoadedSettings:
        """The settings in force (the session's)."""
        return self.session.loaded

    @loaded.setter
    def loaded(self, value: LoadedSettings) -> None:
        self.session.loaded = value

    @property
    def client(self) -> SessionClient | None:
        """The account's network client, while one runs."""
        return self.session.client

    @property
    def local(self) -> LocalStore | None:
        """The account's local store, while open."""
        return self.session.local

    @local.setter
    def local(self, value: LocalStore | None) -> None:
        self.session.local = value

    @property
    def secrets(self) -> SecretStore | None:
        """The secret store (set once the keyring is open)."""
        return self.session.secrets

    @secrets.setter
    def secrets(self, value: SecretStore | None) -> None:
        self.session.secrets = value

    # -------------------------------------------------------------- start and stop

    def attach_single_instance(
        self, instance: SingleInstance, open_conversation: str = "", pending: Iterable[str] = ()
    ) -> None:
        """Receive later launches' requests; open ``open_conversation`` once the windows exist.

        ``pending``: requests that arrived before this app existed (while the first icon showed),
        answered as if they arrived now.
        """
        from tray_agent.ui.single_instance import LaunchRequests

        self.single_instance = instance
        self.launches = LaunchRequests(open_conversation)
        instance.message_received.connect(self.launches.receive)
        for message in pending:
            self.launches.receive(message)

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
        if self.session.client is not None:
            logger.info("Reconnecting at once: %s", reason)
            self.session.reconnect_now(automatic=True)

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
        if os.environ.get(TEST_LOG_COUNTS_ENV) == "1":
            self.bridge.flushed.connect(self._test_log_counts)
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

    def _test_log_counts(self, state: State) -> None:
        """Test hook: what the tray and the inbox show after a flush (see the module docstring)."""
        inbox = self.windows.inbox if self.windows is not None else None
        tabs = "|".join(inbox.tab_titles) if inbox is not None else ""
        logger.info(
            "Counts: waiting=%d mine=%d badge=%s tabs=%s",
            state.waiting_count, len(state.mine()), self.tray.badge or "-", tabs,
        )  # fmt: skip

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
        configured = self.session.configured
        if configured:
            # Before the windows: restored chats find their drafts in the account's store.
            self.local = self.session.open_local_store()
        self.attach_windows(build_windows(self))
        self.show_first_windows()
        self._apply_autostart()
        if not configured:
            logger.info("No server or account configured: asking the agent to sign in")
            self.session.set_offline()
            self._show_sign_in(_("Enter your server and account to sign in."))
            return
        self.session.start(password)

    def show_first_windows(self) -> None:
        """Once the windows exist: the last session's chats, then what launches asked for."""
        if self.windows is not None:
            self.launches.show_first_windows(self.windows, start_hidden=self.loaded.settings.ui.start_hidden)

    def attach_windows(self, windows: WindowManager | None) -> None:
        """Use ``windows`` (a ``ui.windows.WindowManager``, or None) and connect its signals."""
        self.windows = windows
        if windows is None:
            return
        # ui.tray's WindowsPort says the openers return None; WindowManager returns the window.
        self.tray.set_windows(windows)  # type: ignore[arg-type]
        windows.sign_in_requested.connect(self._on_windows_sign_in_requested)
        windows.settings_saved.connect(self._on_windows_settings_saved)
        windows.quit_requested.connect(self._on_tray_quit_requested)
        windows.sign_out_confirmed.connect(self._on_windows_sign_out_confirmed)

    async def _start_services(self) -> None:
        """The notifier (desktop-notifier, else tray messages, else none) and the sound."""
        from tray_agent.platform.notifier import NullNotifier, create_notifier
        from tray_agent.platform.sound import NullSound, SystemSound
        from tray_agent.ui.qt_notifier import TrayMessageNotifier

        notifier: Notifier = await create_notifier(app_name=DISPLAY_NAME)
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
        sound: Sound = SystemSound()
        if not sound.available:
            problem = getattr(sound, "problem", "") or "no audio player found"
            sound = NullSound(problem)
            self.tray.set_problem("sounds", problem)
        self.runner.set_sound(sound)

    def _make_secrets(self) -> SecretStore:
        """The keyring (blocking probe: runs in an executor). The demo keeps secrets in memory."""
        from tray_agent.platform.secrets import KeyringSecretStore, MemorySecretStore

        if self.args.demo:
            return MemorySecretStore()
        return KeyringSecretStore()

    async def _start_demo(self) -> str:
        """Start the built-in demo backend; the session uses its first agent and a throw-away store."""
        from tray_agent.demo_launch import start_demo_account

        demo = await start_demo_account(self.args.demo_dialect, self.loaded, seed=DEMO_SEED)
        self.demo, self._demo_data = demo.server, demo.data_dir
        self.session.data_dir = Path(demo.data_dir.name)
        self.loaded = demo.loaded
        return demo.password

    async def _shutdown(self) -> None:
        logger.info("Shutting down")
        if self.wakeup is not None:
            self.wakeup.stop()
        await self.session.stop()
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
        """An event from outside the UI (the client's sink): through the dispatcher."""
        self.dispatcher.dispatch(event)

    def dispatch(self, event: Event) -> tuple[Effect, ...]:
        """Reduce one event and carry out its effects (the dispatcher does both)."""
        return self.dispatcher.dispatch(event)

    # -------------------------------------------------------------- the session's hooks

    def _on_session_problem(self, area: str, text: str) -> None:
        self.tray.set_problem(area, text)

    def _on_session_local_store_changed(self, local: LocalStore | None) -> None:
        if self.windows is not None:
            self.windows.set_draft_store(local)

    def _on_session_local_store_closing(self) -> None:
        if self.windows is not None:
            self.windows.save_drafts()

    def _on_session_signed_out(self) -> None:
        if self.windows is not None:
            self.windows.signed_out()

    def _on_session_settings_changed(self, loaded: LoadedSettings) -> None:
        if self.windows is not None:
            self.windows.set_loaded_settings(loaded)
        self.runner.update_settings(loaded.settings.alerts)
        self.tray.set_dnd_allowed(loaded.settings.alerts.allow_manual_dnd)  # a policy may forbid DND

    # -------------------------------------------------------------- slots

    def _on_bridge_connection_changed(self, info: ConnectionInfo) -> None:
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
        from tray_agent.ui.confirm import LeaveAction

        self.leave_guard.request(LeaveAction.QUIT, self.stopping.set)

    def _on_tray_sign_out_requested(self) -> None:
        if self.windows is not None:
            self.windows.ask_sign_out()

    def _on_windows_sign_out_confirmed(self) -> None:
        from tray_agent.ui.confirm import LeaveAction

        self.leave_guard.request(LeaveAction.SIGN_OUT, lambda: self._spawn(self.sign_out()))

    def _on_tray_diagnostics_export_requested(self, path: str) -> None:
        self._spawn(self._export_diagnostics(Path(path)))

    async def _export_diagnostics(self, target: Path) -> None:
        await self.export_diagnostics(target)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.session.spawn(coro)  # one set of background tasks: the session's

    async def wait_for_tasks(self) -> None:
        """Wait until the background tasks started by UI signals (sign-in, sign-out, export) end."""
        await self.session.wait_for_tasks()

    def _on_tray_reconnect_requested(self) -> None:
        if self.session.client is not None:
            self.session.reconnect_now()
        else:  # no account (sign-in cancelled) or signed out: nothing to reconnect, so sign in
            self._show_sign_in(_("Enter your server and account to sign in."))

    def _on_tray_mute_toggled(self, muted: bool) -> None:
        self.session.set_sounds(not muted)

    def _on_runner_dnd_changed(self, until: datetime | None) -> None:
        self.session.remember_dnd(until)  # manual DND survives a restart (issue 14)

    def _on_windows_settings_saved(self, edited: Settings) -> None:
        problem = self.session.apply_settings(edited)
        if problem:
            if self.windows is not None:
                self.windows.settings_save_failed(problem)
            return
        settings = self.loaded.settings
        self.theme.set_setting(settings.ui.theme)
        from tray_agent.ui.language import apply_language

        apply_language(settings.ui.language, self.app)  # new windows and the tray menu follow
        self._apply_autostart()

    def _on_toast_activated(self, key: str, action: ToastAction | None) -> None:
        from tray_agent.ui.toasts import activate_toast

        activate_toast(key, action, commands=self.commands, windows=self.windows)

    def _show_sign_in(self, problem: str) -> None:
        if self.windows is not None:
            keyring_problem = getattr(self.secrets, "problem", None) or ""
            self.windows.show_sign_in(problem, keyring_problem=keyring_problem)
        else:
            logger.warning("Sign-in needed (%s), but this build has no sign-in window", problem)

    def _on_windows_sign_in_requested(self, credentials: object) -> None:
        self._spawn(self.session.sign_in(credentials))

    # -------------------------------------------------------------- sign out, diagnostics

    async def sign_out(self) -> None:
        """Forget the account on this computer, then ask for a sign-in. Never raises.

        The session deletes the account's local store and saved sign-in and empties the state
        (:meth:`AccountSession.sign_out`); the chats close (its ``signed_out`` hook); then the
        sign-in dialog shows.
        """
        self._auth_prompted = True  # the sign-in dialog below is the prompt
        self.runner.withdraw_all()  # the old account's toasts: their buttons would do nothing
        await self.session.sign_out()
        self._auth_prompted = True
        self._show_sign_in(_("You are signed out. Sign in to continue."))

    async def export_diagnostics(self, target: Path) -> bool:
        """Write the diagnostics zip to ``target`` (logs, settings without secrets, checks).

        The doctor's local checks are bounded (a few seconds); the zip is written off the GUI
        thread. The agent is told where it went, or why it failed. Never raises.

        Returns:
            True once the zip is written.
        """
        from tray_agent import diagnostics

        backend = getattr(self.secrets, "backend_name", None)
        try:
            await diagnostics.export_diagnostics(
                target,
                args=self.args,
                paths=self.paths,
                loaded=self.loaded,
                keyring_backend=backend if isinstance(backend, str) else None,
                store_problem=str(getattr(self.local, "problem", "") or ""),
                now=self.clock.now,
            )
        except Exception as exc:
            logger.exception("Could not export diagnostics to %s", target)
            problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            self.tray.show_info(
                _("Diagnostics not saved"), _("Could not save the file: {problem}").format(problem=problem)
            )
            return False
        self.tray.show_info(_("Diagnostics saved"), _("Saved to {path}").format(path=str(target)))
        return True
