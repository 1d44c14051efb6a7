"""EffectRunner: carries out the store's effects through the policy, the notifier and the sound port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

from PySide6.QtCore import QObject, QTimer, Signal

from tray_agent.core.effects import Alert, Effect, Notify, PlaySound, RequestResync, Withdraw
from tray_agent.core.policy import AlertPolicy, TrayLevel, WaitingCustomer
from tray_agent.core.ports import Clock, Notifier, Sound
from tray_agent.core.settings import AlertSettings
from tray_agent.core.state import Conversation, State

logger = logging.getLogger(__name__)

MAX_TIMER_MS = 3_600_000
"""Longest single wait; a later deadline is reached by re-arming (QTimer takes an int32)."""

Spawn = Callable[[Awaitable[None]], None]


class EffectRunner(QObject):
    """Runs effects: Alerts through the :class:`AlertPolicy`, then Notify/Withdraw/PlaySound.

    The policy owns no timer; this object keeps exactly ONE single-shot QTimer armed at
    ``policy.next_deadline()`` after every call into the policy, and stopped when there is no
    deadline (idle: no timer runs). Notifier calls are coroutines scheduled on the event loop
    (qasync in the app); their failures are logged, never raised. Sounds use
    ``settings.volume`` and are skipped while muted.

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
        self._policy = policy
        self._notifier = notifier
        self._sound = sound
        self._clock = clock
        self._settings = settings.model_copy(deep=True)
        self._request_resync = request_resync
        self._spawn_fn = spawn
        self._tasks: set[asyncio.Future[None]] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer_timeout)
        self._level = TrayLevel.NORMAL
        self._quiet = False

    # ------------------------------------------------------------------ state for the tray

    @property
    def policy(self) -> AlertPolicy:
        """The policy (read-only use: tray level, DND end)."""
        return self._policy

    @property
    def notifier(self) -> Notifier:
        """The notifier in use."""
        return self._notifier

    @property
    def sound(self) -> Sound:
        """The sound port in use."""
        return self._sound

    @property
    def tray_level(self) -> TrayLevel:
        """The tray level as of the last policy call."""
        return self._level

    @property
    def dnd_until(self) -> datetime | None:
        """End of manual do-not-disturb, or None."""
        until = self._policy.dnd_until
        if until is not None and until <= self._clock.now():
            return None
        return until

    @property
    def quiet(self) -> bool:
        """Do-not-disturb (manual or quiet hours) is active now."""
        return self._policy.dnd_active(self._clock.now())

    @property
    def muted(self) -> bool:
        """Sounds are switched off."""
        return not self._settings.sounds

    @property
    def timer_active(self) -> bool:
        """Whether the policy timer is armed (False when nothing is scheduled)."""
        return self._timer.isActive()

    @property
    def timer_interval_ms(self) -> int:
        """The interval the policy timer was last armed with."""
        return self._timer.interval()

    # ------------------------------------------------------------------ inputs

    def set_notifier(self, notifier: Notifier) -> None:
        """Use another notifier from now on (set up asynchronously at start-up)."""
        self._notifier = notifier

    def set_sound(self, sound: Sound) -> None:
        """Use another sound port from now on."""
        self._sound = sound

    def start(self) -> None:
        """Arm the timer for the first time (quiet hours, reminders of a restored list)."""
        self._carry_out(self._policy.on_tick(self._clock.now()))

    def run(self, effects: Iterable[Effect]) -> None:
        """Carry out the effects of one dispatch (Alerts go through the policy first)."""
        now = self._clock.now()
        out: list[Effect] = []
        for effect in effects:
            if isinstance(effect, Alert):
                out += self._policy.on_alert(effect, now)
            elif isinstance(effect, RequestResync):
                self._resync(effect.why)
            else:
                out.append(effect)
        self._carry_out(out)

    def set_focus(self, conversation: str | None) -> None:
        """The agent looks at ``conversation`` now (None: at none); its toasts go away."""
        self._carry_out(self._policy.set_focus(conversation))

    def set_dnd(self, until: datetime | None) -> bool:
        """Manual do-not-disturb until ``until`` (aware), or off with None.

        Returns False when the policy forbids manual DND (``alerts.allow_manual_dnd``).
        """
        accepted = self._policy.set_dnd(until)
        self.dnd_changed.emit(self.dnd_until)
        self._carry_out([])
        return accepted

    def withdraw_all(self) -> None:
        """Withdraw every toast on screen (sign-out; :meth:`aclose` does it at Quit)."""
        self._carry_out(self._policy.withdraw_all())

    def update_settings(self, settings: AlertSettings) -> None:
        """Apply new alert settings (mute, volume, quiet hours ...)."""
        self._settings = settings.model_copy(deep=True)
        self._policy.update_settings(settings)
        self._carry_out([])

    def update_waiting(self, changed: Iterable[str], state: State) -> None:
        """Some conversations changed (a bridge flush): reminders and the SLA level follow them.

        Only the changed conversations are looked at, so a flush costs what changed, not the
        length of the waiting list; a conversation gone from ``state`` stops waiting.
        """
        changes: list[tuple[WaitingCustomer, bool]] = []
        for key in changed:
            conv = state.conversation(key)
            if conv is None:
                changes.append((WaitingCustomer(conversation=key, since=None, assigned=False), False))
                continue
            changes.append((_waiting_customer(conv), conv.waiting))
        self._carry_out(self._policy.update_waiting(changes, self._clock.now()))

    async def aclose(self) -> None:
        """Withdraw every toast, stop the timer, wait (bounded) for the notifier. Never raises."""
        with contextlib.suppress(Exception):
            self.withdraw_all()  # no toast outlives the app: its buttons would do nothing
        self._timer.stop()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    # ------------------------------------------------------------------ internals

    def _on_timer_timeout(self) -> None:
        self._carry_out(self._policy.on_tick(self._clock.now()))

    def _carry_out(self, effects: list[Effect]) -> None:
        done: list[Effect] = []
        for effect in effects:
            try:
                if isinstance(effect, Notify):
                    self._spawn(self._notifier.show(effect.toast), "show a toast")
                elif isinstance(effect, Withdraw):
                    self._spawn(self._notifier.withdraw(effect.key), "withdraw a toast")
                elif isinstance(effect, PlaySound):
                    if self._settings.sounds:
                        self._sound.play(effect.sound, self._settings.volume)
                elif isinstance(effect, RequestResync):
                    self._resync(effect.why)
                else:
                    continue
                done.append(effect)
            except Exception:
                logger.exception("Could not carry out %s", type(effect).__name__)
        self._arm()
        if done:
            self.effects_ran.emit(tuple(done))

    def _resync(self, why: str) -> None:
        if self._request_resync is None:
            return
        try:
            self._request_resync(why)
        except Exception:
            logger.exception("Resync request failed")

    def _arm(self) -> None:
        now = self._clock.now()
        deadline = self._policy.next_deadline()
        if deadline is None:
            self._timer.stop()
        else:
            ms = math.ceil(max(0.0, (deadline - now).total_seconds()) * 1000.0)
            self._timer.start(min(ms, MAX_TIMER_MS))
        level = self._policy.tray_level(now)
        if level is not self._level:
            self._level = level
            self.tray_level_changed.emit(level)
        quiet = self._policy.dnd_active(now)
        if quiet != self._quiet:
            self._quiet = quiet
            self.quiet_changed.emit(quiet)
            if not quiet:
                self.dnd_changed.emit(self.dnd_until)

    def _spawn(self, awaitable: Awaitable[None], what: str) -> None:
        if self._spawn_fn is not None:
            self._spawn_fn(awaitable)
            return
        future = asyncio.ensure_future(awaitable)
        self._tasks.add(future)

        def finished(task: asyncio.Future[None]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                logger.warning("Could not %s", what, exc_info=task.exception())

        future.add_done_callback(finished)


def _waiting_customer(conv: Conversation) -> WaitingCustomer:
    """How the policy needs to know a conversation's customer."""
    return WaitingCustomer(
        conversation=conv.key,
        since=conv.waiting_since,
        assigned=conv.assigned,
        customer_name=conv.customer_name,
        channel=conv.channel,
    )
