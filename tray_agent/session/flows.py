"""The tray app's account flows: when to ask for a sign-in, sign out, settings saved, export.

Qt-free. :class:`AccountFlows` decides what the GUI shows next from the session and the
connection state; the GUI carries it out through the small :class:`FrontEnd` port
(``ui.front.Front`` in the app, fakes in tests). The app connects the tray's and the windows'
signals to its methods; ``listen`` has no front end and does not use it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tray_agent.core.events import ConnectionState
from tray_agent.core.i18n import _
from tray_agent.core.settings import Settings
from tray_agent.core.settings_layers import LoadedSettings

if TYPE_CHECKING:
    from tray_agent.core.state import ConnectionInfo
    from tray_agent.platform.autostart import AutostartResult
    from tray_agent.session.account import AccountSession

logger = logging.getLogger(__name__)


class FrontEnd(Protocol):
    """What the flows need of the GUI (``ui.front.Front``)."""

    def show_sign_in(self, problem: str) -> None:
        """Show the sign-in dialog, saying why."""
        ...

    def close_sign_in(self) -> None:
        """Close the sign-in dialog if it is open."""
        ...

    def settings_save_failed(self, problem: str) -> None:
        """The settings dialog's result could not be saved: say why (the dialog stays open)."""
        ...

    def appearance_changed(self, settings: Settings) -> None:
        """Saved settings are in force: follow their theme and language."""
        ...

    def show_info(self, title: str, text: str) -> None:
        """A short message to the agent (a tray balloon or a box)."""
        ...


class DiagnosticsWriter(Protocol):
    """Writes the diagnostics zip (``diagnostics.export_diagnostics`` with the app's args and paths)."""

    def __call__(
        self,
        target: Path,
        *,
        loaded: LoadedSettings,
        keyring_backend: str | None,
        store_problem: str,
        now: Callable[[], datetime],
    ) -> Awaitable[None]:
        """Gather and write; raises what went wrong."""
        ...


ApplyAutostart = Callable[..., "AutostartResult"]
"""``(wanted, *, locked) -> AutostartResult`` (``platform.autostart.apply_autostart``)."""


class AccountFlows:
    """The GUI's account flows on top of an :class:`AccountSession`.

    Args:
        session: the account session.
        front: the GUI.
        withdraw_alerts: withdraws every toast (the alert engine's ``withdraw_all``).
        write_diagnostics: writes the diagnostics zip.
        autostart: keep the login item in line with ``ui.autostart`` (False for the demo).
        apply_autostart: the OS side (default ``platform.autostart.apply_autostart``, imported
            when first used).
    """

    def __init__(
        self,
        session: AccountSession,
        front: FrontEnd,
        *,
        withdraw_alerts: Callable[[], None],
        write_diagnostics: DiagnosticsWriter,
        autostart: bool = True,
        apply_autostart: ApplyAutostart | None = None,
    ) -> None:
        self.session = session
        self.front = front
        self._withdraw_alerts = withdraw_alerts
        self._write_diagnostics = write_diagnostics
        self._autostart = autostart
        self._apply_autostart = apply_autostart
        self._auth_prompted = False
        self._last_logged_state = ""

    # -------------------------------------------------------------- connection

    def on_connection_changed(self, info: ConnectionInfo) -> None:
        """Log each new state; ask for a sign-in once per AUTH_REQUIRED; close it once connected."""
        if info.state != self._last_logged_state:
            self._last_logged_state = info.state
            logger.info("Connection: %s %s", info.state, info.detail)
        if info.state is ConnectionState.AUTH_REQUIRED:
            if not self._auth_prompted:
                self._auth_prompted = True
                self.front.show_sign_in(info.detail)
        else:
            self._auth_prompted = False
        if info.state is ConnectionState.CONNECTED:
            self.front.close_sign_in()

    def reconnect_requested(self) -> None:
        """The tray's Reconnect now; without a client (no account, signed out): sign in instead."""
        if self.session.client is not None:
            self.session.reconnect_now()
        else:
            self.front.show_sign_in(_("Enter your server and account to sign in."))

    def wakeup_detected(self, reason: str) -> None:
        """Sleep/resume or a network change: reconnect at once, not after the backoff."""
        if self.session.client is not None:
            logger.info("Reconnecting at once: %s", reason)
            self.session.reconnect_now(automatic=True)

    # -------------------------------------------------------------- sign in, sign out

    def sign_in_requested(self, credentials: object) -> None:
        """The sign-in dialog's credentials: sign in in the background."""
        self.session.spawn(self.session.sign_in(credentials))

    def sign_out_confirmed(self) -> None:
        """The agent confirmed Sign out: sign out in the background."""
        self.session.spawn(self.sign_out())

    async def sign_out(self) -> None:
        """Forget the account on this computer, then ask for a sign-in. Never raises.

        The session deletes the account's local store and saved sign-in and empties the state
        (:meth:`AccountSession.sign_out`); the chats close (its ``signed_out`` hook); then the
        sign-in dialog shows.
        """
        self._auth_prompted = True  # the sign-in dialog below is the prompt
        self._withdraw_alerts()  # the old account's toasts: their buttons would do nothing
        await self.session.sign_out()
        self._auth_prompted = True
        self.front.show_sign_in(_("You are signed out. Sign in to continue."))

    # -------------------------------------------------------------- settings

    def settings_saved(self, edited: Settings) -> None:
        """The settings dialog's result: save it, then follow its theme, language and autostart."""
        problem = self.session.apply_settings(edited)
        if problem:
            self.front.settings_save_failed(problem)
            return
        self.front.appearance_changed(self.session.loaded.settings)  # new windows and the tray menu follow
        self.sync_autostart()

    def sync_autostart(self) -> None:
        """Make the login item match ``ui.autostart`` (never for the throw-away demo)."""
        if not self._autostart:
            return
        apply = self._apply_autostart
        if apply is None:
            from tray_agent.platform.autostart import apply_autostart

            apply = apply_autostart
        loaded = self.session.loaded
        result = apply(loaded.settings.ui.autostart, locked=loaded.is_locked("ui.autostart"))
        if result.problem:
            logger.warning("Autostart: %s", result.problem)

    # -------------------------------------------------------------- diagnostics

    def export_requested(self, path: str) -> None:
        """The tray's Export diagnostics: write the zip to ``path`` in the background."""
        self.session.spawn(self._export(Path(path)))

    async def _export(self, target: Path) -> None:
        await self.export_diagnostics(target)

    async def export_diagnostics(self, target: Path) -> bool:
        """Write the diagnostics zip to ``target`` (logs, settings without secrets, checks).

        The doctor's local checks are bounded (a few seconds); the zip is written off the GUI
        thread. The agent is told where it went, or why it failed. Never raises.

        Returns:
            True once the zip is written.
        """
        session = self.session
        backend: Any = getattr(session.secrets, "backend_name", None)
        try:
            await self._write_diagnostics(
                target,
                loaded=session.loaded,
                keyring_backend=backend if isinstance(backend, str) else None,
                store_problem=str(getattr(session.local, "problem", "") or ""),
                now=session.clock.now,
            )
        except Exception as exc:
            logger.exception("Could not export diagnostics to %s", target)
            problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            self.front.show_info(
                _("Diagnostics not saved"), _("Could not save the file: {problem}").format(problem=problem)
            )
            return False
        self.front.show_info(_("Diagnostics saved"), _("Saved to {path}").format(path=str(target)))
        return True
