"""Composition root of the tray app: the wiring of every object, and its start and stop.

:class:`TrayApp` builds the session (store, dispatcher), the policy, the tray controller and,
once started, the services, the client and the windows, and connects their signals to the
account flows (``session/flows.py``) and the GUI's side of them (``ui/front.py``). The process
around it (logging, the QApplication, the single-instance claim, the first tray icon, the event
loop) is ``tray_agent/gui.py``, which builds it; nothing else constructs the long-lived
objects. This module imports only light modules at import time (the heavy ones inside the
methods that need them). The desktop tests' hooks are ``ui/testing_hooks.py``.
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
    from datetime import datetime

    from PySide6.QtWidgets import QApplication, QSystemTrayIcon

    from tray_agent.core.ports import SecretStore, Sound
    from tray_agent.core.settings_layers import LoadedSettings
    from tray_agent.core.state import Store
    from tray_agent.demo.server import DemoServer
    from tray_agent.platform.paths import Paths
    from tray_agent.session import AccountSession, Dispatcher
    from tray_agent.session.flows import AccountFlows
    from tray_agent.ui.front import Front
    from tray_agent.ui.single_instance import SingleInstance
    from tray_agent.ui.wakeup import WakeupWatcher
    from tray_agent.ui.windows import WindowManager

logger = logging.getLogger("tray_agent.app")

DISPLAY_NAME = "tray_agent"
DEMO_SEED = 7


def build_windows(app: TrayApp) -> WindowManager | None:
    """Build ``ui.windows.WindowManager`` wired to the app, or None if this build has no windows."""
    try:
        from tray_agent.ui.windows import WindowManager
    except ImportError as exc:
        logger.warning("No windows in this build (%s): the tray works without them", exc)
        return None
    session = app.session
    try:
        return WindowManager(
            app.store,
            session,  # the UI's CommandSink
            session.loaded,
            session.loaded.settings.connection.dialect,
            bridge=app.bridge,
            state_file=app.paths.state / "windows.json",
            draft_store=session.local,
            clock=app.clock.now,
            dispatch=app.dispatcher.dispatch,
            demo=bool(app.args.demo),
        )
    except Exception:
        logger.exception("Could not build the windows")
        return None


class TrayApp:
    """Wires the app's objects for one run (built by ``gui.Launch``) and starts and stops them.

    The account's objects and flows live in the Qt-free session layer: the
    :class:`~tray_agent.session.AccountSession` built by :func:`~tray_agent.session.build_session`
    (client, local store, secrets; sign-in, sign-out, settings) and
    :class:`~tray_agent.session.flows.AccountFlows` (when to ask for a sign-in, sign out, settings
    saved, diagnostics); :class:`~tray_agent.ui.front.Front` is the GUI's side of both. This
    class connects them to the tray and the windows.
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
            tray_icon: an icon already shown (``ui.early_tray.EarlyTray``): the tray controller adopts it.
        """
        import asyncio

        from tray_agent.core.events import ConnectionChanged, ConnectionState
        from tray_agent.core.policy import AlertPolicy
        from tray_agent.core.ports import SystemClock
        from tray_agent.platform.notifier import NullNotifier
        from tray_agent.platform.sound import NullSound
        from tray_agent.session import SessionHooks, build_session
        from tray_agent.session.flows import AccountFlows
        from tray_agent.ui.bridge import StoreBridge
        from tray_agent.ui.confirm import LeaveGuard
        from tray_agent.ui.effects import EffectRunner
        from tray_agent.ui.front import Front
        from tray_agent.ui.single_instance import LaunchRequests
        from tray_agent.ui.theme import ThemeController
        from tray_agent.ui.tray import TrayController

        self.args = args
        self.paths = paths
        self.app = app
        self.clock = SystemClock()
        settings = loaded.settings
        self.session: AccountSession = build_session(
            loaded, self.clock, data_dir=paths.data, state_dir=paths.state
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
        self.leave_guard = LeaveGuard(self.bridge, self.session)  # Quit / Sign out while holding customers
        self.runner = EffectRunner(
            self.policy, NullNotifier(), NullSound("starting"), self.clock, settings.alerts
        )
        # The one route into the policy: reducer alerts through the dispatcher, the waiting
        # list and the focus from the store.
        self.runner.attach(self.store)
        self.dispatcher.set_alerts(self.runner)
        self.tray = TrayController(
            self.bridge,
            self.runner,
            self.session,  # the UI's CommandSink
            self.clock,
            mute_locked=loaded.is_locked("alerts.sounds"),
            dnd_allowed=settings.alerts.allow_manual_dnd,
            tray_icon=tray_icon,
        )
        # Light/dark/high contrast: the setting, else the OS scheme, followed live (ui/theme.py).
        self.theme = ThemeController(app, settings.ui.theme, app)
        self.tray.set_icon_style(self.theme.icon_style)
        self.theme.icon_style_changed.connect(self.tray.set_icon_style)
        self.front: Front = Front(
            self.tray, self.runner, self.session, self.theme, app, keyring_problem=self._keyring_problem
        )
        front = self.front
        self.session.hooks = SessionHooks(
            problem=front.set_problem,
            sign_in_needed=front.show_sign_in,
            local_store_changed=front.set_draft_store,
            local_store_closing=front.save_drafts,
            signed_out=front.signed_out,
            settings_changed=front.settings_changed,
        )
        self.flows: AccountFlows = AccountFlows(
            self.session,
            front,
            withdraw_alerts=self.runner.withdraw_all,
            write_diagnostics=self._write_diagnostics,
            autostart=not args.demo,  # never for the throw-away demo
        )
        self.bridge.connection_changed.connect(self.flows.on_connection_changed)
        self.tray.quit_requested.connect(self._on_tray_quit_requested)
        self.tray.reconnect_requested.connect(self.flows.reconnect_requested)
        self.tray.mute_toggled.connect(self._on_tray_mute_toggled)
        self.tray.sign_out_requested.connect(front.ask_sign_out)
        self.tray.diagnostics_export_requested.connect(self.flows.export_requested)
        self.runner.dnd_changed.connect(self._on_runner_dnd_changed)
        self.wakeup: WakeupWatcher | None = None
        self.demo: DemoServer | None = None  # only with --demo
        self.stopping = asyncio.Event()
        self.single_instance: SingleInstance | None = None
        self.launches = LaunchRequests()  # what launches asked for, until the windows exist
        self._demo_data: tempfile.TemporaryDirectory[str] | None = None

    @property
    def windows(self) -> WindowManager | None:
        """The windows, once built (None before, or in a build without them)."""
        return self.front.windows

    @windows.setter
    def windows(self, value: WindowManager | None) -> None:
        self.front.windows = value

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

    def show_tray(self) -> None:
        """Show the tray icon (or the status window) as early as possible."""
        self.tray.show()
        self.runner.start()

    async def main(self) -> int:
        """Start everything, wait for Quit / SIGINT / SIGTERM, shut down cleanly."""
        try:
            await self._start()
        except Exception:
            logger.exception("Start-up failed")
            await self._shutdown()
            return 1
        from tray_agent.ui.testing_hooks import install_test_hooks
        from tray_agent.ui.wakeup import WakeupWatcher

        # Reconnect at once after sleep/resume or a network change, not after the backoff.
        self.wakeup = WakeupWatcher(self.app)
        self.wakeup.wakeup_detected.connect(self.flows.wakeup_detected)
        self.wakeup.start()
        gc.freeze()  # PERFORMANCE-NOTES §6: no gen-2 pauses over start-up objects
        install_test_hooks(os.environ, self.tray, self.bridge, lambda: self.windows)
        await self.stopping.wait()
        await self._shutdown()
        return 0

    async def _start(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        await self._start_services()
        self.session.secrets = await loop.run_in_executor(None, self._make_secrets)
        password: str | None = None
        if self.args.demo:
            password = await self._start_demo()
        else:
            from tray_agent.core.settings_layers import password_from_env

            password = password_from_env(os.environ)
        configured = self.session.configured
        if configured:
            # Before the windows: restored chats find their drafts in the account's store.
            self.session.local = self.session.open_local_store()
        self.attach_windows(build_windows(self))
        self.show_first_windows()
        self.flows.sync_autostart()
        if not configured:
            logger.info("No server or account configured: asking the agent to sign in")
            self.session.set_offline()
            self.front.show_sign_in(_("Enter your server and account to sign in."))
            return
        self.session.start(password)

    def show_first_windows(self) -> None:
        """Once the windows exist: the last session's chats, then what launches asked for."""
        if self.windows is not None:
            self.launches.show_first_windows(
                self.windows, start_hidden=self.session.loaded.settings.ui.start_hidden
            )

    def attach_windows(self, windows: WindowManager | None) -> None:
        """Use ``windows`` (a ``ui.windows.WindowManager``, or None) and connect its signals."""
        self.windows = windows
        if windows is None:
            return
        # ui.tray's WindowsPort says the openers return None; WindowManager returns the window.
        self.tray.set_windows(windows)  # type: ignore[arg-type]
        windows.sign_in_requested.connect(self.flows.sign_in_requested)
        windows.settings_saved.connect(self.flows.settings_saved)
        windows.quit_requested.connect(self._on_tray_quit_requested)
        windows.sign_out_confirmed.connect(self._on_windows_sign_out_confirmed)

    async def _start_services(self) -> None:
        """The notifier (desktop-notifier, else tray messages, else none) and the sound."""
        from tray_agent.platform.notifier import create_notifier
        from tray_agent.platform.sound import NullSound, SystemSound

        notifier = await create_notifier(app_name=DISPLAY_NAME)  # NullNotifier: no service answered
        sound: Sound = SystemSound()
        if not sound.available:
            sound = NullSound(getattr(sound, "problem", "") or "no audio player found")
        self.front.use_services(notifier, sound)

    def _make_secrets(self) -> SecretStore:
        """The keyring (blocking probe: runs in an executor). The demo keeps secrets in memory.

        keyring itself runs in a short-lived helper process (platform.secret_helper): this
        process never imports it (about 11 MB of idle RSS with the Secret Service).
        """
        from tray_agent.platform.secret_helper import HelperSecretStore
        from tray_agent.platform.secrets import MemorySecretStore

        if self.args.demo:
            return MemorySecretStore()
        return HelperSecretStore()

    def _keyring_problem(self) -> str:
        return getattr(self.session.secrets, "problem", None) or ""

    async def _start_demo(self) -> str:
        """Start the built-in demo backend; the session uses its first agent and a throw-away store."""
        from tray_agent.demo_launch import start_demo_account

        demo = await start_demo_account(self.args.demo_dialect, self.session.loaded, seed=DEMO_SEED)
        self.demo, self._demo_data = demo.server, demo.data_dir
        self.session.data_dir = Path(demo.data_dir.name)
        self.session.loaded = demo.loaded
        return demo.password

    async def _write_diagnostics(self, target: Path, **inputs: Any) -> None:
        """The diagnostics zip with this run's command line and directories (the flows' writer)."""
        from tray_agent import diagnostics

        await diagnostics.export_diagnostics(target, args=self.args, paths=self.paths, **inputs)

    async def _shutdown(self) -> None:
        logger.info("Shutting down")
        if self.wakeup is not None:
            self.wakeup.stop()
        await self.session.stop()
        close_secrets = getattr(self.session.secrets, "close", None)
        if close_secrets is not None:  # a keyring helper still lingering after the last call
            import asyncio

            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(None, close_secrets)
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

    # -------------------------------------------------------------- slots

    def _on_tray_quit_requested(self) -> None:
        from tray_agent.ui.confirm import LeaveAction

        self.leave_guard.request(LeaveAction.QUIT, self.stopping.set)

    def _on_windows_sign_out_confirmed(self) -> None:
        from tray_agent.ui.confirm import LeaveAction

        self.leave_guard.request(LeaveAction.SIGN_OUT, self.flows.sign_out_confirmed)

    def _on_tray_mute_toggled(self, muted: bool) -> None:
        self.session.set_sounds(not muted)

    def _on_runner_dnd_changed(self, until: datetime | None) -> None:
        self.session.remember_dnd(until)  # manual DND survives a restart (issue 14)
