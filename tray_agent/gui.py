"""`tray-agent` (the tray app): the process's start-up, from the command line to the running app.

``tray-agent`` (no subcommand), ``tray-agent open <conversation>`` and ``--self-test`` call
:func:`run`. The objects of the app are built and wired by :class:`tray_agent.app.TrayApp`; this
module only starts the process around it.

Start-up order puts the tray icon first (PERFORMANCE-NOTES, design choice 11): paths, logging,
the QApplication and the single-instance claim, then at once an
:class:`~tray_agent.ui.early_tray.EarlyTray` icon ("connecting", with Quit). Everything else
comes after it, on the running event loop, a loop turn apart: the settings (pydantic), the
language, then the :class:`~tray_agent.app.TrayApp` (the store, the policy and the tray controller,
which adopts the icon and attaches the full menu), whose ``main`` starts the notifier, the
keyring, the demo backend, the local store, the windows and the network client. So this module
imports only what that first step needs (no asyncio, pydantic, ``ui.tray`` or ``tray_agent.app``
at import time).

Without a display (Linux/BSD: no ``DISPLAY`` or ``WAYLAND_DISPLAY`` for the Qt platform in use)
it says so and exits 1 before Qt would abort the process.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tray_agent.core.i18n import _
from tray_agent.exit_codes import EXIT_BAD_SETTINGS, EXIT_FAILURE, EXIT_OK

if TYPE_CHECKING:
    import asyncio

    from PySide6.QtWidgets import QApplication

    from tray_agent.app import TrayApp
    from tray_agent.platform.paths import Paths
    from tray_agent.ui.early_tray import EarlyTray
    from tray_agent.ui.single_instance import SingleInstance

logger = logging.getLogger(__name__)

APP_NAME = "tray-agent"
DISPLAY_NAME = "tray_agent"


def display_missing(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """True when Qt would find no display to open (it would abort the process, exit 134).

    Only X11/Wayland systems need a display server named in the environment; Windows and macOS
    always have their own. ``QT_QPA_PLATFORM`` may name a headless plugin (``offscreen``), or a
    list of plugins tried in turn (``wayland;xcb``).
    """
    if platform.startswith(("win", "darwin", "cygwin")):
        return False
    x11 = bool(env.get("DISPLAY"))
    wayland = bool(env.get("WAYLAND_DISPLAY"))
    wanted = [p.split(":", 1)[0].strip() for p in env.get("QT_QPA_PLATFORM", "").split(";")]
    wanted = [p for p in wanted if p]
    for plugin in wanted or ["xcb", "wayland"]:
        if plugin == "xcb":
            usable = x11
        elif plugin.startswith("wayland"):
            usable = wayland
        else:
            usable = True  # offscreen, vnc, eglfs...: no display server needed (or Qt decides)
        if usable:
            return False
    return True


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
            return EXIT_BAD_SETTINGS
    instance = SingleInstance(server_name(str(paths.config)))
    if instance.try_forward(open_message(conversation) if conversation else ACTIVATE):
        logger.info("Another instance is running: handed over to it")
        return EXIT_OK
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
            from tray_agent.ui.early_tray import show_early_tray

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
        from tray_agent.app import TrayApp

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
    from tray_agent.platform.logs import setup_logging
    from tray_agent.platform.paths import Paths

    if display_missing(os.environ):
        from tray_agent.core import i18n

        i18n.set_language(i18n.resolve_language("system", i18n.languages_from_environ(os.environ)))
        problem = _("no display: set DISPLAY or run `tray-agent listen --demo`")
        print(f"tray-agent: {problem}", file=sys.stderr)
        return EXIT_FAILURE
    verbose = bool(getattr(args, "verbose", False))
    paths: Paths | None = None
    try:
        paths = Paths.from_platform(getattr(args, "basedir", None))
        paths.ensure_dirs()
    except OSError as exc:
        print(f"tray-agent: cannot create the app's directories: {exc}", file=sys.stderr)
        if not getattr(args, "self_test", False):
            return EXIT_FAILURE
        paths = None  # the self-test runs without them
    open_log_file = setup_logging(paths.log if paths is not None else None, verbose, open_file_later=True)
    try:
        code = _run_qt(args, paths, open_log_file)
    finally:
        open_log_file()  # when the launch did not get to it (handed over, self-test, failure)
    # WORKAROUND(PySide6 teardown): the app has shut down (sockets, local store, demo data and
    # logs closed), but destroying the remaining Qt objects during interpreter finalization
    # crashed now and then (SIGSEGV after "Stopped (exit code 0)"): end the process here.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_qt(args: argparse.Namespace, paths: Paths | None, open_log_file: Callable[[], None]) -> int:
    from PySide6.QtWidgets import QApplication

    from tray_agent.platform.memory import install_pyside_linecache_guard
    from tray_agent.ui.qt_messages import install_qt_message_handler

    install_pyside_linecache_guard()  # before the rest is imported: ~15 MB less (platform/memory.py)
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else APP_NAME])
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(DISPLAY_NAME)
    app.setDesktopFileName(APP_NAME)
    app.setQuitOnLastWindowClosed(False)
    install_qt_message_handler()
    if getattr(args, "self_test", False) or paths is None:
        from tray_agent.ui.self_test import self_test
        from tray_agent.ui.tray import render_icon

        app.setWindowIcon(render_icon("agent"))
        return self_test(app)

    claimed = claim_single_instance(args, paths)
    if isinstance(claimed, int):
        return claimed  # forwarded to the running instance, or a bad link
    instance, open_conversation = claimed
    return Launch(args, paths, app, instance, open_conversation, open_log_file=open_log_file).run()
