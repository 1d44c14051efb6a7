"""The Quit / Sign out warning while I hold customers: keep them assigned, release them first, or cancel."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QAbstractButton, QMessageBox, QWidget

from tray_agent.core.commands import Release
from tray_agent.core.i18n import _, ngettext
from tray_agent.core.lifecycle import held_customers
from tray_agent.core.ports import CommandSink
from tray_agent.ui.bridge import StoreBridge

logger = logging.getLogger(__name__)

__all__ = ["LeaveAction", "LeaveChoice", "LeaveGuard", "leave_question"]

RELEASE_WAIT_MS = 10_000
"""How long Quit / Sign out waits for the server to confirm the releases before going on anyway."""


class LeaveAction(enum.StrEnum):
    """What the agent is about to do."""

    QUIT = "quit"
    SIGN_OUT = "sign_out"


class LeaveChoice(enum.StrEnum):
    """The agent's answer to the warning."""

    KEEP = "keep"  # go on; the customers stay assigned to me
    RELEASE = "release"  # release them first, then go on
    CANCEL = "cancel"  # stay


def leave_question(count: int) -> str:
    """What the warning says ("You are handling 3 customers: they stay assigned to you.")."""
    return (
        ngettext(
            "You are handling {count} customer: they stay assigned to you.",
            "You are handling {count} customers: they stay assigned to you.",
            count,
        ).format(count=count)
        + "\n\n"
        + _("Release them first so that another agent can take them?")
    )


class LeaveGuard(QObject):
    """Asks before Quit / Sign out while I hold customers, and releases them first if asked.

    Args:
        bridge: the store bridge (the held customers; changes while releasing).
        sink: where the Release commands go.
        parent: the Qt parent.
        release_wait_ms: how long to wait for the releases to be confirmed.

    Signals:
        asked(QMessageBox): the warning is on screen (tests answer it).
    """

    asked = Signal(QMessageBox)

    def __init__(
        self,
        bridge: StoreBridge,
        sink: CommandSink,
        parent: QObject | None = None,
        *,
        release_wait_ms: int = RELEASE_WAIT_MS,
    ) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._sink = sink
        self._box: QMessageBox | None = None
        self._pending: Callable[[], object] | None = None
        self._releasing: frozenset[str] = frozenset()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(release_wait_ms)
        self._timer.timeout.connect(self._on_timer_timeout)
        bridge.conversations_changed.connect(self._on_bridge_conversations_changed)

    @property
    def box(self) -> QMessageBox | None:
        """The warning while it is open."""
        return self._box

    def request(
        self, action: LeaveAction, proceed: Callable[[], object], parent: QWidget | None = None
    ) -> bool:
        """Go on with ``proceed`` at once when I hold nobody; else ask first (non-modal).

        Returns:
            True when ``proceed`` ran at once.
        """
        held = held_customers(self._bridge.state)
        if not held:
            proceed()
            return True
        self._pending = proceed
        if self._box is None:
            title = _("Quit") if action is LeaveAction.QUIT else _("Sign out")
            box = QMessageBox(
                QMessageBox.Icon.Warning, title, "", QMessageBox.StandardButton.NoButton, parent
            )
            box.setObjectName("leaveBox")
            box.setAccessibleName(_("You are handling customers"))
            box.setAccessibleDescription(_("Choose whether to release your customers before you leave."))
            release = box.addButton(_("&Release them first"), QMessageBox.ButtonRole.AcceptRole)
            release.setObjectName("releaseFirst")
            release.setAccessibleName(_("Release your customers, then go on"))
            keep = box.addButton(_("&Keep them assigned"), QMessageBox.ButtonRole.DestructiveRole)
            keep.setObjectName("keepAssigned")
            keep.setAccessibleName(_("Go on; your customers stay assigned to you"))
            cancel = box.addButton(QMessageBox.StandardButton.Cancel)
            box.setDefaultButton(release)
            box.setEscapeButton(cancel)
            box.buttonClicked.connect(self._on_box_button_clicked)
            box.finished.connect(self._on_box_finished)
            self._box = box
        self._box.setText(leave_question(len(held)))
        self._box.show()
        self._box.raise_()
        self._box.activateWindow()
        self.asked.emit(self._box)
        return False

    def choose(self, choice: LeaveChoice) -> None:
        """Act on the agent's answer (the box's buttons call this)."""
        proceed, self._pending = self._pending, None
        if proceed is None or choice is LeaveChoice.CANCEL:
            return
        if choice is LeaveChoice.KEEP:
            proceed()
            return
        held = held_customers(self._bridge.state)
        for key in held:
            self._sink.submit(Release(key))
        self._releasing = frozenset(held)
        self._pending = proceed
        self._timer.start()
        self._check_released()

    def _check_released(self) -> None:
        if self._pending is None or not self._releasing:
            return
        still = self._releasing & set(held_customers(self._bridge.state))
        if still:
            return
        self._finish()

    def _finish(self) -> None:
        self._timer.stop()
        self._releasing = frozenset()
        proceed, self._pending = self._pending, None
        if proceed is not None:
            proceed()

    def _on_bridge_conversations_changed(self, keys: frozenset[str]) -> None:
        if self._releasing & keys:
            self._check_released()

    def _on_timer_timeout(self) -> None:
        logger.info("releases not all confirmed within %d ms; going on", self._timer.interval())
        self._finish()

    def _on_box_button_clicked(self, button: QAbstractButton) -> None:
        box = self._box
        if box is None:
            return
        name = button.objectName()
        if name == "releaseFirst":
            self.choose(LeaveChoice.RELEASE)
        elif name == "keepAssigned":
            self.choose(LeaveChoice.KEEP)
        else:
            self.choose(LeaveChoice.CANCEL)

    def _on_box_finished(self) -> None:
        if self._box is not None:
            self._box.deleteLater()
            self._box = None
