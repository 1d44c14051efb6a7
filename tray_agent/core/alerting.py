"""AlertEngine: the one route into the alert policy, and the one place its effects are carried out.

Everything that reaches :class:`~tray_agent.core.policy.AlertPolicy` comes through here:

* the reducer's :class:`~tray_agent.core.effects.Alert` effects, handed over by the session's
  dispatcher (:meth:`AlertEngine.run`);
* the waiting list and the focus, read from the store's (old, new) states: the engine subscribes
  to the :class:`~tray_agent.core.state.Store` (:meth:`AlertEngine.attach`). Focus changes go to
  the policy at once; waiting changes are coalesced like the UI bridge's flushes (the first
  change after a quiet period on the next loop turn, then at most one flush per 16 ms), and only
  the conversations that changed are fed, so a flush costs its changes, not the waiting list;
* time: ONE timer at ``policy.next_deadline()``, through the :class:`~tray_agent.core.ports.Scheduler`
  port (a QTimer adapter in the app, asyncio or a fake elsewhere); nothing runs while idle.

The policy's Notify/Withdraw/PlaySound effects go to the Notifier and Sound ports; failures are
logged, never raised. Pure: no Qt, no I/O of its own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

from tray_agent.core.effects import Alert, Effect, Notify, PlaySound, RequestResync, Withdraw
from tray_agent.core.policy import AlertPolicy, TrayLevel, WaitingCustomer
from tray_agent.core.ports import Clock, Notifier, Scheduler, Sound, TimerHandle
from tray_agent.core.settings import AlertSettings
from tray_agent.core.state import Conversation, State, Store, changed_conversations

logger = logging.getLogger(__name__)

MAX_TIMER_DELAY = 3600.0
"""Longest single wait (seconds); a later deadline is reached by re-arming."""

WAITING_FLUSH_INTERVAL = 0.016
"""At most one waiting-list update per this many seconds (as the UI bridge's flushes)."""

Spawn = Callable[[Awaitable[None]], None]


def _ignore(*_args: object) -> None:
    return None


class AlertEngine:
    """Feeds the policy (alerts, waiting list, focus, time) and carries out its effects.

    Args:
        policy: the notification policy.
        notifier: the toast port (swap later with :meth:`set_notifier`).
        sound: the sound port.
        clock: wall-clock time for the policy, monotonic time for the coalescing.
        settings: the alert settings in force (volume, sounds).
        scheduler: one-shot timers on the event loop.
        request_resync: called for a :class:`RequestResync` effect handed to :meth:`run`.
        spawn: schedules a notifier coroutine; default ``asyncio.ensure_future``.

    Listeners (plain attributes, replaced by the Qt adapter ``ui.effects.EffectRunner``):
        on_tray_level_changed(TrayLevel), on_dnd_changed(datetime | None),
        on_quiet_changed(bool), on_effects_ran(tuple[Effect, ...]).
    """

    def __init__(
        self,
        policy: AlertPolicy,
        notifier: Notifier,
        sound: Sound,
        clock: Clock,
        settings: AlertSettings,
        scheduler: Scheduler,
        *,
        request_resync: Callable[[str], None] | None = None,
        spawn: Spawn | None = None,
    ) -> None:
        self._policy = policy
        self._notifier = notifier
        self._sound = sound
        self._clock = clock
        self._settings = settings.model_copy(deep=True)
        self._scheduler = scheduler
        self._request_resync = request_resync
        self._spawn_fn = spawn
        self._tasks: set[object] = set()
        self._timer: TimerHandle | None = None
        self._timer_at: datetime | None = None
        self._timer_delay = 0.0
        self._level = TrayLevel.NORMAL
        self._quiet = False
        self._store: Store | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._base: State | None = None
        self._flush: TimerHandle | None = None
        self._last_flush = float("-inf")
        self.on_tray_level_changed: Callable[[TrayLevel], None] = _ignore
        self.on_dnd_changed: Callable[[datetime | None], None] = _ignore
        self.on_quiet_changed: Callable[[bool], None] = _ignore
        self.on_effects_ran: Callable[[tuple[Effect, ...]], None] = _ignore

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
        return self._timer is not None

    @property
    def timer_delay(self) -> float:
        """The delay (seconds) the policy timer was last armed with."""
        return self._timer_delay

    # ------------------------------------------------------------------ inputs

    def set_notifier(self, notifier: Notifier) -> None:
        """Use another notifier from now on (set up asynchronously at start-up)."""
        self._notifier = notifier

    def set_sound(self, sound: Sound) -> None:
        """Use another sound port from now on."""
        self._sound = sound

    def set_request_resync(self, request_resync: Callable[[str], None] | None) -> None:
        """Where :class:`RequestResync` effects handed to :meth:`run` go."""
        self._request_resync = request_resync

    def attach(self, store: Store) -> None:
        """Follow ``store``: its waiting list and focus feed the policy from now on."""
        self.detach()
        self._store = store
        self._base = store.state
        self._unsubscribe = store.subscribe(self._on_store_changed)

    def detach(self) -> None:
        """Stop following the store."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = None
        self._store = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None

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
        self._emit(self.on_dnd_changed, self.dnd_until)
        self._carry_out([])
        return accepted

    def withdraw_all(self) -> None:
        """Withdraw every toast on screen (sign-out, Quit): their buttons would do nothing."""
        self._carry_out(self._policy.withdraw_all())

    def update_settings(self, settings: AlertSettings) -> None:
        """Apply new alert settings (mute, volume, quiet hours ...)."""
        self._settings = settings.model_copy(deep=True)
        self._policy.update_settings(settings)
        self._carry_out([])

    def update_waiting(self, changed: Iterable[str], state: State) -> None:
        """Some conversations changed: reminders and the SLA level follow them.

        Only the changed conversations are looked at, so an update costs what changed, not the
        length of the waiting list; a conversation gone from ``state`` stops waiting.
        """
        changes: list[tuple[WaitingCustomer, bool]] = []
        for key in changed:
            conv = state.conversation(key)
            if conv is None:
                changes.append((WaitingCustomer(conversation=key, since=None, assigned=False), False))
                continue
            changes.append((waiting_customer(conv), conv.waiting))
        self._carry_out(self._policy.update_waiting(changes, self._clock.now()))

    def flush_now(self) -> None:
        """Feed the store's waiting changes at once (instead of at the next coalesced flush)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._flush_waiting()

    def stop_timers(self) -> None:
        """Cancel the policy timer and any pending waiting flush (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None

    @property
    def pending_tasks(self) -> list[object]:
        """Notifier calls still running (the Qt adapter waits for them at shutdown)."""
        return list(self._tasks)

    # ------------------------------------------------------------------ internals

    def _on_store_changed(self, old: State, new: State) -> None:
        if old.focused != new.focused:
            self.set_focus(new.focused)
        if self._flush is not None:
            return
        since = self._clock.monotonic() - self._last_flush
        delay = 0.0 if since >= WAITING_FLUSH_INTERVAL else WAITING_FLUSH_INTERVAL - since
        self._flush = self._scheduler.call_later(delay, self._on_flush_due)

    def _on_flush_due(self) -> None:
        self._flush = None
        self._flush_waiting()

    def _flush_waiting(self) -> None:
        store = self._store
        if store is None or self._base is None:
            return
        old, new = self._base, store.state
        self._last_flush = self._clock.monotonic()
        if old is new:
            return
        self._base = new
        changed = changed_conversations(old.conversations, new.conversations)
        if changed:
            try:
                self.update_waiting(changed, new)
            except Exception:
                logger.exception("Alert engine: waiting update failed")

    def _on_timer_timeout(self) -> None:
        self._timer = None
        self._timer_at = None
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
            self._emit(self.on_effects_ran, tuple(done))

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
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = None
        elif self._timer is None or deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            delay = min(max(0.0, (deadline - now).total_seconds()), MAX_TIMER_DELAY)
            self._timer_delay = math.ceil(delay * 1000.0) / 1000.0
            self._timer_at = deadline
            self._timer = self._scheduler.call_later(self._timer_delay, self._on_timer_timeout)
        level = self._policy.tray_level(now)
        if level is not self._level:
            self._level = level
            self._emit(self.on_tray_level_changed, level)
        quiet = self._policy.dnd_active(now)
        if quiet != self._quiet:
            self._quiet = quiet
            self._emit(self.on_quiet_changed, quiet)
            if not quiet:
                self._emit(self.on_dnd_changed, self.dnd_until)

    @staticmethod
    def _emit(listener: Callable[..., None], *args: object) -> None:
        try:
            listener(*args)
        except Exception:
            logger.exception("Alert engine listener failed")

    def _spawn(self, awaitable: Awaitable[None], what: str) -> None:
        if self._spawn_fn is not None:
            self._spawn_fn(awaitable)
            return
        import asyncio

        future = asyncio.ensure_future(awaitable)
        self._tasks.add(future)

        def finished(task: asyncio.Future[None]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                logger.warning("Could not %s", what, exc_info=task.exception())

        future.add_done_callback(finished)


def waiting_customer(conv: Conversation) -> WaitingCustomer:
    """How the policy needs to know a conversation's customer."""
    return WaitingCustomer(
        conversation=conv.key,
        since=conv.waiting_since,
        assigned=conv.assigned,
        customer_name=conv.customer_name,
        channel=conv.channel,
    )
