"""Dispatcher: the only entrance to ``Store.dispatch``; routes every effect through injected ports."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

from tray_agent.core.effects import Alert, Effect, Notify, PlaySound, RequestResync, Withdraw
from tray_agent.core.events import ConnectionChanged, Event, WaitingListPage
from tray_agent.core.ports import Clock, EffectSink
from tray_agent.core.state import State, Store

logger = logging.getLogger(__name__)

Observer = Callable[[Event, State, State], None]
"""Called as ``observer(event, old_state, new_state)`` after every dispatch (``listen``'s view)."""

_ALERT_EFFECTS = (Alert, Notify, Withdraw, PlaySound)


class Dispatcher:
    """Reduces events from the client and the UI, then routes their effects.

    * ``Alert`` (and any Notify / Withdraw / PlaySound) effects go to the ``alerts`` port, the
      alert engine, which is the one route into the policy;
    * ``RequestResync`` goes to ``resync`` (the session: its client, if any);
    * connection changes without a time are stamped with the clock first.

    Nothing is raised into the caller (the client's receive loop or a Qt slot): a failing port is
    logged. Observers see ``(event, old, new)`` after the store's subscribers.

    Args:
        store: the store (nobody else calls its ``dispatch``).
        clock: stamps connection changes.
        alerts: where alert effects go; None drops them (``listen``: no toasts).
        resync: where resync requests go; None drops them.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        alerts: EffectSink | None = None,
        resync: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._alerts = alerts
        self._resync = resync
        self._observers: tuple[Observer, ...] = ()

    @property
    def store(self) -> Store:
        """The store this dispatcher feeds (read its ``state``; never dispatch to it directly)."""
        return self._store

    def set_alerts(self, alerts: EffectSink | None) -> None:
        """Route alert effects to ``alerts`` from now on."""
        self._alerts = alerts

    def set_resync(self, resync: Callable[[str], None] | None) -> None:
        """Route resync requests to ``resync`` from now on."""
        self._resync = resync

    def observe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(event, old, new)`` after every dispatch; returns the unsubscribe function."""
        self._observers = (*self._observers, observer)

        def unsubscribe() -> None:
            self._observers = tuple(o for o in self._observers if o is not observer)

        return unsubscribe

    def dispatch(self, event: Event) -> tuple[Effect, ...]:
        """Reduce one event, tell the observers, carry out its effects; returns the effects."""
        if isinstance(event, ConnectionChanged | WaitingListPage) and event.at is None:
            # Stamped: a resync's last page moves "Last synced" (issue 14)
            event = dataclasses.replace(event, at=self._clock.now())
        old = self._store.state
        effects = self._store.dispatch(event)
        if self._observers:
            new = self._store.state
            for observer in self._observers:
                try:
                    observer(event, old, new)
                except Exception:
                    logger.exception("dispatch observer %r failed", observer)
        if effects:
            self.route(effects)
        return effects

    def dispatch_many(self, events: Sequence[Event]) -> tuple[Effect, ...]:
        """Reduce a batch of events (read in one loop turn) with one store notification.

        Each event is stamped and reduced as :meth:`dispatch` does; the store's subscribers are
        told once (old, new) for the batch and all effects are routed once, in order. With
        observers (``listen``) each event is dispatched on its own: they see every
        ``(event, old, new)``. Returns all effects, in order.
        """
        if self._observers or len(events) == 1:
            effects: list[Effect] = []
            for event in events:
                effects.extend(self.dispatch(event))
            return tuple(effects)
        clock = self._clock
        stamped = [
            dataclasses.replace(event, at=clock.now())
            if isinstance(event, ConnectionChanged | WaitingListPage) and event.at is None
            else event
            for event in events
        ]
        batch_effects = self._store.dispatch_many(stamped)
        if batch_effects:
            self.route(batch_effects)
        return batch_effects

    def route(self, effects: tuple[Effect, ...]) -> None:
        """Send each effect to its port (in order within a port). Never raises."""
        alerts: list[Effect] = []
        for effect in effects:
            if isinstance(effect, _ALERT_EFFECTS):
                alerts.append(effect)
            elif isinstance(effect, RequestResync):
                self._request_resync(effect.why)
            else:
                logger.warning("No port for the %s effect: dropped", type(effect).__name__)
        if alerts and self._alerts is not None:
            try:
                self._alerts.run(alerts)
            except Exception:
                logger.exception("The alert engine failed on %d effect(s)", len(alerts))

    def _request_resync(self, why: str) -> None:
        if self._resync is None:
            logger.debug("Resync requested (%s) with nobody to do it", why)
            return
        try:
            self._resync(why)
        except Exception:
            logger.exception("Resync request failed")
