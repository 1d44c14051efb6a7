"""The GUI as the account session and its flows see it: the tray, the windows (once built), the alerts.

:class:`Front` is what ``session.AccountFlows`` calls (its ``FrontEnd`` port) and what the app
hands the session as its hooks: every call goes to the windows when this build has them (they
are built after the tray, and a build may have none), else to the tray or the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from tray_agent.core.effects import ToastAction
from tray_agent.core.i18n import _
from tray_agent.core.ports import CommandSink, DraftStore, Notifier, Sound
from tray_agent.core.settings import Settings
from tray_agent.core.settings_layers import LoadedSettings

if TYPE_CHECKING:
    from PySide6.QtCore import QCoreApplication

    from tray_agent.ui.effects import EffectRunner
    from tray_agent.ui.theme import ThemeController
    from tray_agent.ui.tray import TrayController
    from tray_agent.ui.windows import WindowManager

logger = logging.getLogger(__name__)


class Front:
    """The tray, the windows and the alert engine, for the session's hooks and flows.

    Args:
        tray: the tray controller (problems, messages).
        runner: the alert engine's Qt adapter (follows the alert settings).
        commands: where a toast's Take over goes.
        theme: the theme controller (follows ``ui.theme``).
        app: the application (its translators follow ``ui.language``).
        keyring_problem: why the keyring cannot keep a password ("" when it can), read when the
            sign-in dialog opens.
    """

    def __init__(
        self,
        tray: TrayController,
        runner: EffectRunner,
        commands: CommandSink,
        theme: ThemeController,
        app: QCoreApplication,
        *,
        keyring_problem: Callable[[], str],
    ) -> None:
        self.tray = tray
        self.runner = runner
        self.commands = commands
        self.theme = theme
        self.app = app
        self._keyring_problem = keyring_problem
        self.windows: WindowManager | None = None

    # -------------------------------------------------------------- the session's hooks

    def set_problem(self, area: str, text: str) -> None:
        """A problem of an area appeared ("" : went away): the tray shows it."""
        self.tray.set_problem(area, text)

    def show_sign_in(self, problem: str) -> None:
        """Ask the agent to sign in, saying why."""
        if self.windows is not None:
            self.windows.show_sign_in(problem, keyring_problem=self._keyring_problem())
        else:
            logger.warning("Sign-in needed (%s), but this build has no sign-in window", problem)

    def set_draft_store(self, local: DraftStore | None) -> None:
        """The account's store was opened (or closed): the reply boxes keep their drafts there."""
        if self.windows is not None:
            self.windows.set_draft_store(local)

    def save_drafts(self) -> None:
        """The account's store is about to close: save what the reply boxes hold."""
        if self.windows is not None:
            self.windows.save_drafts()

    def signed_out(self) -> None:
        """The account was forgotten: close its chats."""
        if self.windows is not None:
            self.windows.signed_out()

    def settings_changed(self, loaded: LoadedSettings) -> None:
        """New settings are in force: the dialogs, the alerts and the tray's DND follow."""
        if self.windows is not None:
            self.windows.set_loaded_settings(loaded)
        self.runner.update_settings(loaded.settings.alerts)
        self.tray.set_dnd_allowed(loaded.settings.alerts.allow_manual_dnd)  # a policy may forbid DND

    # -------------------------------------------------------------- the flows' FrontEnd port

    def close_sign_in(self) -> None:
        """Close the sign-in dialog if it is open."""
        if self.windows is not None:
            self.windows.close_sign_in()

    def settings_save_failed(self, problem: str) -> None:
        """Saving the settings failed: the settings dialog says why."""
        if self.windows is not None:
            self.windows.settings_save_failed(problem)

    def appearance_changed(self, settings: Settings) -> None:
        """Saved settings: the theme and the language follow (new windows and the tray menu too)."""
        from tray_agent.ui.language import apply_language

        self.theme.set_setting(settings.ui.theme)
        apply_language(settings.ui.language, self.app)

    def show_info(self, title: str, text: str) -> None:
        """A short message from the tray."""
        self.tray.show_info(title, text)

    # -------------------------------------------------------------- the tray's and the notifier's

    def use_services(self, notifier: Notifier, sound: Sound) -> None:
        """Alert through ``notifier`` (else tray messages, else none) and ``sound``; show what is missing.

        Args:
            notifier: the native notifier, or one that is not ``available`` (no service answered).
            sound: the sound, or one that is not ``available`` (its ``problem`` says why).
        """
        from tray_agent.ui.qt_notifier import TrayMessageNotifier

        if not notifier.available:
            if self.tray.tray_available:
                notifier = TrayMessageNotifier(self.tray.tray_icon)
                logger.info("Notifications: tray messages (no notification service answered)")
                self.tray.set_problem("notifications", "")
            else:
                self.tray.set_problem("notifications", _("no notification service on this desktop"))
        else:
            logger.info("Notifications: native")
        notifier.set_callback(self.activate_toast)
        self.runner.set_notifier(notifier)
        if not sound.available:
            self.tray.set_problem("sounds", getattr(sound, "problem", ""))
        self.runner.set_sound(sound)

    def ask_sign_out(self) -> None:
        """The tray's Sign out: the windows ask first (``sign_out_confirmed`` follows a yes)."""
        if self.windows is not None:
            self.windows.ask_sign_out()

    def activate_toast(self, key: str, action: ToastAction | None) -> None:
        """The notifier's callback: a toast or one of its buttons was clicked (``ui.toasts``)."""
        from tray_agent.ui.toasts import activate_toast

        activate_toast(key, action, commands=self.commands, windows=self.windows)
