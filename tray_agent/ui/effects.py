"""EffectRunner: the Qt face of the alert engine (signals for the tray, Qt timers for the policy).

The engine itself (:class:`tray_agent.core.alerting.AlertEngine`) is Qt-free: it is the one route
into the alert policy and carries out its effects. This adapter gives it Qt single-shot timers
(:class:`~tray_agent.ui.scheduler.QtScheduler`) and turns its listener calls into signals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from datetime import datetime

from PySide6.QtCore import QObject, Signal

from tray_agent.core.alerting import AlertEngine, Spawn, waiting_customer
from tray_agent.core.effects import Effect
from tray_agent.core.policy import AlertPolicy, TrayLevel
from tray_agent.core.ports import Clock, Notifier, Sound
from tray_agent.core.settings import AlertSettings
from tray_agent.core.state import State, Store
from tray_agent.ui.scheduler import QtScheduler

__all__ = ["EffectRunner", "Spawn", "waiting_customer"]


class EffectRunner(QObject):
    """Runs effects: Alerts through the :class:`AlertPolicy`, then Notify/Withdraw/PlaySound.

    A thin adapter over :class:`~tray_agent.core.alerting.AlertEngine`: the engine keeps ONE
    timer armed at ``policy.next_deadline()`` (a single-shot QTimer here) and none while idle.

    Args:
        policy: the notification policy.
        notifier: the toast port (swap later with :meth:`set_notifier`).
        sound: the sound port.
        clock: wall-clock time for the policy.
        settings: the alert settings in force (volume, sounds).
        request_resync: called for a :class:`RequestResync` effect (the network client).
        spawn: schedules an awaitable; default: ``asyncio.ensure_future`` on the current loop.
        parent: the Qt parent.

    Signals:
        tray_level_changed(TrayLevel): the waiting list's urgency changed (SLA crossing ...).
        dnd_changed(object): manual do-not-disturb changed: its end (datetime) or None.
        quiet_changed(bool): do-not-disturb (manual or quiet hours) became active or inactive.
        effects_ran(tuple): the Notify/Withdraw/PlaySound effects just carried out.
    """

    tray_level_changed = Signal(object)
    dnd_changed = Signal(object)
    quiet_changed = Signal(bool)
    effects_ran = Signal(tuple)

    def __init__(
        self,
        policy: AlertPolicy,
        notifier: Notifier,
        sound: Sound,
        clock: Clock,
        settings: AlertSettings,
        *,
        request_resync: Callable[[str], None] | None = None,
        spawn: Spawn | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._engine = AlertEngine(
            policy,
            notifier,
            sound,
            clock,
            settings,
            QtScheduler(self),
            request_resync=request_resync,
            spawn=spawn,
        )
        self._engine.on_tray_level_changed = self.tray_level_changed.emit
        self._engine.on_dnd_changed = self.dnd_changed.emit
        self._engine.on_quiet_changed = self.quiet_changed.emit
        self._engine.on_effects_ran = self.effects_ran.emit

    # ------------------------------------------------------------------ state for the tray

    @property
    def engine(self) -> AlertEngine:
        """The Qt-free engine behind this adapter."""
        return self._engine

    @property
    def policy(self) -> AlertPolicy:
        """The policy (read-only use: tray level, DND end)."""
        return self._engine.policy

    @property
    def notifier(self) -> Notifier:
        """The notifier in use."""
        return self._engine.notifier

    @property
    def sound(self) -> Sound:
        """The sound port in use."""
        return self._engine.sound

    @property
    def tray_level(self) -> TrayLevel:
        """The tray level as of the last policy call."""
        return self._engine.tray_level

    @property
    def dnd_until(self) -> datetime | None:
        """End of manual do-not-disturb, or None."""
        return self._engine.dnd_until

    @property
    def quiet(self) -> bool:
        """Do-not-disturb (manual or quiet hours) is active now."""
        return self._engine.quiet

    @property
    def muted(self) -> bool:
        """Sounds are switched off."""
        return self._engine.muted

    @property
    def timer_active(self) -> bool:
        """Whether the policy timer is armed (False when nothing is scheduled)."""
        return self._engine.timer_active

    @property
    def timer_interval_ms(self) -> int:
        """The interval the policy timer was last armed with."""
        return round(self._engine.timer_delay * 1000.0)

    # ------------------------------------------------------------------ inputs

    def set_notifier(self, notifier: Notifier) -> None:
        """Use another notifier from now on (set up asynchronously at start-up)."""
        self._engine.set_notifier(notifier)

    def set_sound(self, sound: Sound) -> None:
        """Use another sound port from now on."""
        self._engine.set_sound(sound)

    def attach(self, store: Store) -> None:
        """Follow ``store``'s waiting list and focus (the one route into the policy)."""
        self._engine.attach(store)

    def start(self) -> None:
        """Arm the timer for the first time (quiet hours, reminders of a restored list)."""
        self._engine.start()

    def run(self, effects: Iterable[Effect]) -> None:
        """Carry out the effects of one dispatch (Alerts go through the policy first)."""
        self._engine.run(effects)

    def set_focus(self, conversation: str | None) -> None:
        """The agent looks at ``conversation`` now (None: at none); its toasts go away."""
        self._engine.set_focus(conversation)

    def set_dnd(self, until: datetime | None) -> bool:
        """Manual do-not-disturb until ``until`` (aware), or off with None.

        Returns False when the policy forbids manual DND (``alerts.allow_manual_dnd``).
        """
        return self._engine.set_dnd(until)

    def withdraw_all(self) -> None:
        """Withdraw every toast on screen (sign-out; :meth:`aclose` does it at Quit)."""
        self._engine.withdraw_all()

    def update_settings(self, settings: AlertSettings) -> None:
        """Apply new alert settings (mute, volume, quiet hours ...)."""
        self._engine.update_settings(settings)

    def update_waiting(self, changed: Iterable[str], state: State) -> None:
        """Some conversations changed: reminders and the SLA level follow them."""
        self._engine.update_waiting(changed, state)

    async def aclose(self) -> None:
        """Withdraw every toast, stop the timers, wait (bounded) for the notifier. Never raises."""
        with contextlib.suppress(Exception):
            self.withdraw_all()  # no toast outlives the app: its buttons would do nothing
        self._engine.stop_timers()
        self._engine.detach()
        pending = [t for t in self._engine.pending_tasks if isinstance(t, asyncio.Future) and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)
