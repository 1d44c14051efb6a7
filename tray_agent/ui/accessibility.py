"""Screen-reader announcements: a new escalation is spoken, not only shown as a toast."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAccessible, QAccessibleAnnouncementEvent

from tray_agent.core.i18n import ngettext
from tray_agent.core.policy import AlertTexts
from tray_agent.core.state import Conversation
from tray_agent.ui.bridge import StoreBridge

logger = logging.getLogger(__name__)


def announce(target: QObject, text: str, *, assertive: bool = False) -> None:
    """Have screen readers speak ``text`` now (Qt 6.8+ announcement event; no-op without one).

    Args:
        target: an object with an accessible interface (a visible window or widget).
        text: plain text, already translated.
        assertive: interrupt what is being read (escalations) instead of waiting politely.
    """
    event = QAccessibleAnnouncementEvent(target, text)
    event.setPoliteness(
        QAccessible.AnnouncementPoliteness.Assertive
        if assertive
        else QAccessible.AnnouncementPoliteness.Polite
    )
    QAccessible.updateAccessibility(event)


class EscalationAnnouncer(QObject):
    """Announces customers newly waiting for a human to screen readers.

    Announces one name ("Ana asks for a human"), or a count when several arrive at once (a
    resync must not read out a whole list). Customers already waiting when it starts are not news.

    Args:
        bridge: the store bridge (``waiting_changed``).
        target: returns the object to announce on (the active app window), or None when no
            window is open (then the toast alone tells the agent).
        parent: the Qt parent.

    Signals:
        announced(str): the text announced (tests; also logged at debug level).
    """

    announced = Signal(str)

    def __init__(
        self, bridge: StoreBridge, target: Callable[[], QObject | None], parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._target = target
        # What the bridge's signals have told so far: later flushes report changes against it.
        told = bridge.flushed_state
        self._known: set[str] = {k for k in told.waiting_keys if not told.conversations[k].assigned}
        self._bridge = bridge
        bridge.waiting_changed.connect(self._on_bridge_waiting_changed)

    def _on_bridge_waiting_changed(self, keys: Iterable[str]) -> None:
        # Only the customers this flush touched: the cost follows the change, not the list.
        state = self._bridge.state
        new: list[Conversation] = []
        for key in keys:
            conv = state.conversation(key)
            if conv is not None and conv.waiting and not conv.assigned:
                if key not in self._known:
                    self._known.add(key)
                    new.append(conv)
            else:
                self._known.discard(key)
        if not new:
            return
        if len(new) == 1:
            text = AlertTexts.escalation_title(new[0].customer_name or AlertTexts.UNKNOWN_CUSTOMER)
        else:
            text = ngettext(
                "{count} customer asks for a human", "{count} customers ask for a human", len(new)
            ).format(count=len(new))
        target = self._target()
        if target is not None:
            try:
                announce(target, text, assertive=True)
            except Exception:
                logger.warning("Could not announce to screen readers", exc_info=True)
        logger.debug("Announced: %s", text)
        self.announced.emit(text)
