"""The notification policy: turns alerts into toasts and sounds (coalescing, rate limit, DND, reminders).

:class:`AlertPolicy` is a pure state machine. It owns no timer and reads no clock: every method
that depends on time takes ``now`` (a timezone-aware UTC :class:`~datetime.datetime`), and
:meth:`AlertPolicy.next_deadline` says when the app must call :meth:`AlertPolicy.on_tick` next.
The app keeps ONE single-shot timer: after every call into the policy it re-arms that timer for
``next_deadline()`` (or stops it on ``None``). Calling ``on_tick`` early or late is harmless:
anything due is done, nothing is done twice, and a late tick never fires a storm of catch-up
reminders.

Rules (each is covered by ``tests/unit/core/test_policy.py``):

* **Whose messages.** A message alerts (as below) when its customer is mine, waits for a human,
  or nobody handles them (:class:`~tray_agent.core.effects.Handler` ``ME``, ``NOBODY``,
  ``UNKNOWN``). A colleague's customers never toast. Messages in conversations the AI handles
  are quiet unless ``ai_messages`` is on; then they become ONE low-urgency toast (key
  ``ai_summary``, no sound, a click opens the inbox) at most once a minute, and never sooner
  than :data:`AI_SUMMARY_SETTLE` after the first message it holds: a customer who asks for a
  human writes first (their message is still the AI's), and the escalation that follows at once
  takes them out of the summary (one escalation = one toast).
* **Coalescing.** A burst of messages from one customer updates ONE toast (key
  ``message:<conversation>``; body "3 new messages: <last text>"). A conversation's toast is
  shown at most once per ``coalesce_window`` seconds: the first message of a burst shows at once
  (subject to the rate limit), later ones are merged into an update shown when the window since
  the previous showing has passed. A burst ends after ``coalesce_window`` seconds with neither a
  new message nor a showing; the next message starts a new count at 1 (same key: it replaces the
  stale toast).
* **Summary.** When a flush finds ``summary_threshold`` or more distinct customers ready to be
  shown, they become ONE summary toast (key ``summary``, conversation ``""``: a click opens the
  inbox) instead of individual toasts.
* **Rate limit.** Message, reminder and summary toasts are at least ``toast_min_interval``
  seconds apart, measured from the previous toast of ANY kind (an escalation toast also pushes
  the next message toast back). What the limit holds back is deferred and merged, never dropped.
* **Escalations** (a customer asks for a human) bypass the rate limit and coalescing: each one
  immediately gets its own critical toast (key ``escalation:<conversation>``, actions TAKE_OVER
  and OPEN) and the escalation sound, and is never part of a summary. With
  ``escalations_bypass_dnd`` (the default) they also pass manual DND and quiet hours. Several
  escalations at the same moment therefore give several toasts at once; this is deliberate,
  each needs an agent. One escalation = one toast: the escalation withdraws the customer's
  message toast (and drops a held-back one), and their messages make no toast of their own
  while the escalation toast is on screen.
* **Focus.** Nothing alerts for the conversation the agent is looking at (:meth:`set_focus`):
  no message toast, no sound, no reminder, no escalation toast; focusing withdraws every toast
  of that customer. The app must clear the focus (``set_focus(None)``) as soon as the chat
  window is no longer the active window.
* **Taken.** When a customer becomes assigned (to me, by a toast button, or to a colleague),
  every toast of theirs is withdrawn and their reminders stop: a "Take over" button that can no
  longer work never stays on screen. :meth:`withdraw_all` clears the screen at Quit and sign-out.
* **DND and quiet hours.** Manual DND (:meth:`set_dnd`) and quiet hours (weekly windows in local
  time; ``days`` name the weekday a window *starts* on; a window whose end is not after its start
  runs past midnight, and ``start == end`` means 24 hours) suppress message toasts and their
  sounds entirely: they are dropped, not queued for later. Reminders follow the escalations'
  rule: with ``escalations_bypass_dnd`` they pass DND, otherwise they are dropped too. The
  unread badge is the reducer's business and still counts them. Reminder schedules keep running
  during DND, so a customer still waiting afterwards gets the next reminder on time. Manual DND
  may be forbidden (``allow_manual_dnd``); its end is saved as ``dnd_until`` by the app and
  restored when the policy is built.
* **Sounds.** ``sounds`` off mutes everything, escalations included (the critical toast still
  shows). At most one sound per flush. PlaySound carries no volume: the app applies
  ``settings.volume``.
* **Reminders.** A customer waiting and unassigned for ``reminder_after`` minutes gets a
  reminder toast (key ``reminder:<conversation>``, rate-limited like messages, may be merged
  into a summary), repeated at intervals growing by ``reminder_backoff`` up to
  ``reminder_max_interval`` minutes, until anyone takes them or they stop waiting; then all their
  toasts are withdrawn. Reminders are the escalation's follow-up: they follow
  ``notify_escalations`` (not ``notify_messages``), are critical, play the escalation sound (a
  summary with a reminder in it too), and count the waiting time from when the customer really
  started waiting (``Alert.since`` / ``WaitingCustomer.since``), not from when the app heard of
  them.
* **Tray level.** :meth:`tray_level` is ``WAITING`` while any customer waits unassigned and
  ``SLA_BREACHED`` once the oldest of them has waited ``sla_minutes``; ``next_deadline`` includes
  that crossing so the icon changes on time.

Customer-supplied text is passed as plain text (whitespace collapsed, control characters removed,
clipped); the notifier escapes it for its markup. User-visible strings live in :class:`AlertTexts`.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from tray_agent.core.effects import (
    Alert,
    AlertKind,
    Effect,
    Handler,
    Notify,
    PlaySound,
    SoundName,
    Toast,
    ToastAction,
    Urgency,
    Withdraw,
)
from tray_agent.core.i18n import N_, _, ngettext
from tray_agent.core.settings import AlertSettings, QuietHoursRule
from tray_agent.core.text import isolate_bidi

__all__ = [
    "AI_SUMMARY_KEY",
    "SUMMARY_KEY",
    "AlertPolicy",
    "AlertTexts",
    "ToastKey",
    "ToastKind",
    "TrayLevel",
    "WaitingCustomer",
    "escalation_key",
    "message_key",
    "reminder_key",
]


class ToastKind(enum.StrEnum):
    """What a toast is about; the first part of its key."""

    MESSAGE = "message"  # a customer wrote (one toast per conversation)
    ESCALATION = "escalation"  # a customer asks for a human
    REMINDER = "reminder"  # a customer is still waiting
    SUMMARY = "summary"  # many customers at once (no conversation)
    AI_SUMMARY = "ai_summary"  # messages in AI-handled conversations (no conversation)


_WHOLE_INBOX: frozenset[ToastKind] = frozenset({ToastKind.SUMMARY, ToastKind.AI_SUMMARY})


@dataclass(frozen=True, slots=True)
class ToastKey:
    """A toast's identity, typed: built here, read back with :meth:`parse` (nobody splits strings).

    ``str(key)`` is the wire form the notifier replaces and withdraws by:
    ``"<kind>:<conversation>"``, or just ``"<kind>"`` for the summaries.
    """

    kind: ToastKind
    conversation: str = ""

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.conversation}" if self.conversation else self.kind.value

    @classmethod
    def parse(cls, key: str) -> ToastKey | None:
        """The key ``str(ToastKey(...))`` gave, or None for anything else (never raises)."""
        kind_text, sep, conversation = key.partition(":")
        try:
            kind = ToastKind(kind_text)
        except ValueError:
            return None
        if kind in _WHOLE_INBOX:
            return None if sep else cls(kind)
        return cls(kind, conversation) if conversation else None


SUMMARY_KEY = str(ToastKey(ToastKind.SUMMARY))
"""Toast key of the summary toast (many customers at once)."""

AI_SUMMARY_KEY = str(ToastKey(ToastKind.AI_SUMMARY))
"""Toast key of the summary of messages in AI-handled conversations."""

AI_SUMMARY_INTERVAL = timedelta(minutes=1)
"""The AI-messages summary shows at most once per this interval."""

AI_SUMMARY_SETTLE = timedelta(seconds=2)
"""The AI-messages summary waits this long after the first message it holds (see the rules)."""

_BODY_LIMIT = 200  # characters of customer text in a toast body
_NAME_LIMIT = 60  # characters of a customer name in a title
_SUMMARY_NAMES = 3  # names listed in a summary body


def message_key(conversation: str) -> str:
    """Toast key of a conversation's message toast."""
    return str(ToastKey(ToastKind.MESSAGE, conversation))


def escalation_key(conversation: str) -> str:
    """Toast key of a conversation's escalation toast."""
    return str(ToastKey(ToastKind.ESCALATION, conversation))


def reminder_key(conversation: str) -> str:
    """Toast key of a conversation's reminder toast."""
    return str(ToastKey(ToastKind.REMINDER, conversation))


_CUSTOMER_KEYS: tuple[Callable[[str], str], ...] = (message_key, escalation_key, reminder_key)
_ESCALATION_PREFIX = escalation_key("?")[:-1]  # "escalation:" (+ a conversation: its key)


class TrayLevel(enum.StrEnum):
    """How urgent the waiting list is, for the tray icon."""

    NORMAL = "normal"  # nobody waits unassigned
    WAITING = "waiting"  # someone waits unassigned, within the SLA
    SLA_BREACHED = "sla_breached"  # the oldest unassigned customer waits beyond sla_minutes


class _Text:
    """A class attribute that reads as its translation in the current language (looked up late)."""

    def __init__(self, message: str) -> None:
        self._message = message

    def __get__(self, instance: object, owner: type | None = None) -> str:
        return _(self._message)


class AlertTexts:
    """Every user-visible string the policy produces, in one place, translated (core.i18n).

    All arguments are plain text; the results are plain text in the current language, with the
    customer-supplied parts bidi-isolated (:func:`~tray_agent.core.text.isolate_bidi`).
    """

    UNKNOWN_CUSTOMER = _Text(N_("A customer"))
    ESCALATION_BODY = _Text(N_("Wants to talk to a person."))
    REMINDER_BODY = _Text(N_("Nobody has taken this conversation yet."))
    NEW_MESSAGE = _Text(N_("New message"))  # body when the message has no text (an attachment)

    @staticmethod
    def message_title(name: str, channel: str) -> str:
        """Title of a message toast: "<customer name> · <channel>"."""
        name, channel = isolate_bidi(name), isolate_bidi(channel)
        return _("{name} · {channel}").format(name=name, channel=channel) if channel else name

    @staticmethod
    def message_body(count: int, text: str) -> str:
        """Body of a message toast; ``count`` messages in the burst, ``text`` the last one."""
        if count <= 1:
            return text or AlertTexts.NEW_MESSAGE
        if text:
            return ngettext("{count} new message: {text}", "{count} new messages: {text}", count).format(
                count=count, text=isolate_bidi(text)
            )
        return ngettext("{count} new message", "{count} new messages", count).format(count=count)

    @staticmethod
    def escalation_title(name: str) -> str:
        """Title of an escalation toast."""
        return _("{name} asks for a human").format(name=isolate_bidi(name))

    @staticmethod
    def reminder_title(name: str, minutes: int) -> str:
        """Title of a reminder toast ("Ana is still waiting (95 min)"; minutes, localised)."""
        duration = ngettext("{count} min", "{count} min", minutes).format(count=minutes)
        return _("{name} is still waiting ({duration})").format(name=isolate_bidi(name), duration=duration)

    @staticmethod
    def summary_title(count: int, any_message: bool) -> str:
        """Title of a summary toast for ``count`` customers."""
        if any_message:
            return ngettext("{count} customer wrote", "{count} customers wrote", count).format(count=count)
        return ngettext(
            "{count} customer is still waiting", "{count} customers are still waiting", count
        ).format(count=count)

    @staticmethod
    def ai_summary_title(count: int) -> str:
        """Title of the summary of ``count`` messages in conversations the AI is handling."""
        return ngettext(
            "{count} new message in conversations the AI is handling",
            "{count} new messages in conversations the AI is handling",
            count,
        ).format(count=count)

    @staticmethod
    def summary_body(names: list[str], total: int) -> str:
        """Body of a summary toast: a few names, then how many more."""
        shown = names[:_SUMMARY_NAMES]
        more = total - len(shown)
        if not shown:
            return ""
        listed = _(", ").join(isolate_bidi(name) for name in shown)
        if more > 0:
            return ngettext("{names} and {count} more", "{names} and {count} more", more).format(
                names=listed, count=more
            )
        return listed


@dataclass(frozen=True, slots=True)
class WaitingCustomer:
    """A customer on the waiting list, as the policy needs to know them.

    Attributes:
        conversation: the conversation's opaque key.
        since: when they started waiting (aware); None means "now".
        assigned: True once an agent has taken them (they no longer count as waiting).
        customer_name: display name ("" if unknown).
        channel: channel or page name.
    """

    conversation: str
    since: datetime | None = None
    assigned: bool = False
    customer_name: str = ""
    channel: str = ""


_BURSTS_KEPT = 256  # finished bursts are pruned once the table grows past this


@dataclass(slots=True)
class _Burst:
    """One conversation's coalesced messages."""

    customer_name: str
    channel: str
    count: int
    last_text: str  # raw (clipped to a bound); cleaned only when a toast shows it
    last_message_at: datetime
    ready_at: datetime  # earliest showing (per-conversation throttle)
    dirty_since: datetime | None  # unshown content since; None = nothing to show
    seq: int  # tie-break for ordering
    shown_at: datetime | None = None


@dataclass(slots=True)
class _Waiting:
    """A customer waiting unassigned, with their reminder schedule."""

    customer_name: str
    channel: str
    since: datetime
    reminders_sent: int = 0
    last_reminder_at: datetime | None = None
    due: datetime | None = None  # next reminder; mirrored in AlertPolicy._due_heap


@dataclass(slots=True)
class _PendingReminder:
    queued_at: datetime
    seq: int


def _clean(text: str, limit: int) -> str:
    """Plain, single-line, clipped text: control characters dropped, whitespace collapsed."""
    if len(text) > limit * 4:
        text = text[: limit * 4]  # bound the work on pathological input
    if text.isprintable():
        # The common case, checked in C: no control, format or separator characters other than
        # the ASCII space, so only runs of spaces are left to collapse.
        kept = text
    else:
        kept = "".join(
            " " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] != "C"
        )
    collapsed = " ".join(kept.split())
    if len(collapsed) > limit:
        return collapsed[: limit - 1].rstrip() + "…"
    return collapsed


def _as_utc(moment: datetime) -> datetime:
    """The instant in UTC; a naive datetime is taken to be UTC already (defensive)."""
    tz = moment.tzinfo
    if tz is UTC:
        return moment  # the usual case, once per alert
    if tz is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class AlertPolicy:
    """Decides which alerts become toasts and sounds, and when (see the module docstring).

    Args:
        settings: the alert settings (replace them later with :meth:`update_settings`).
        local_tz: the zone quiet hours are written in; None uses the operating system's local
            time (DST-correct per instant). Tests pass an explicit zone.
    """

    skip_settled_ticks: bool = True
    """An alert that changes nothing :meth:`on_tick` would act on at once skips that tick (the
    result is the same). False: every alert ticks (tests compare both)."""

    def __init__(self, settings: AlertSettings, local_tz: tzinfo | None = None) -> None:
        self._settings = settings.model_copy(deep=True)
        self._timings()
        self._tz = local_tz
        self._focus: str | None = None
        self._dnd_until: datetime | None = None
        self._bursts: dict[str, _Burst] = {}
        self._reminders: dict[str, _PendingReminder] = {}
        self._waiting: dict[str, _Waiting] = {}
        # Min-heaps over the waiting customers, so that an alert costs O(log n) however many
        # customers wait: (next reminder, tie, conversation) and (waiting since, tie, conversation).
        # Entries go stale when a customer leaves or is rescheduled; they are skipped lazily and
        # the heaps are rebuilt when stale entries outnumber live ones.
        self._due_heap: list[tuple[datetime, int, str]] = []
        self._since_heap: list[tuple[datetime, int, str]] = []
        self._tie = itertools.count()
        self._shown: set[str] = set()  # toast keys shown and not withdrawn
        self._summary_members: set[str] = set()
        self._taken: set[str] = set()  # conversations last known assigned to someone
        # Messages in AI-handled conversations, summarised at most once a minute:
        # conversation -> customer name (insertion order = first message first), and a count
        # per conversation; then who the summary on screen names (withdrawn once none is left).
        self._ai: dict[str, str] = {}
        self._ai_counts: dict[str, int] = {}
        self._ai_members: set[str] = set()
        self._ai_since: datetime | None = None  # when the first message now held came
        self._ai_shown_at: datetime | None = None
        self._last_toast_at: datetime | None = None
        self._last_now: datetime | None = None
        self._seq = 0
        # (computed at, quiet hours active, next window edge): see _quiet_span.
        self._quiet_cache: tuple[datetime, bool, datetime | None] | None = None
        # The instant of the last on_tick while nothing has changed since (None once anything
        # may have): on_tick is idempotent, so another at that instant would do nothing, and an
        # alert that gives it nothing new skips it (a burst of alerts: one tick, not one each).
        # Every public method that changes the policy without ticking clears it.
        self._settled_at: datetime | None = None
        if self._settings.allow_manual_dnd:
            self._dnd_until = self._settings.manual_dnd_end()  # manual DND survives a restart

    # ------------------------------------------------------------------ settings and modes

    @property
    def settings(self) -> AlertSettings:
        """A copy of the settings in force."""
        return self._settings.model_copy(deep=True)

    def update_settings(self, settings: AlertSettings) -> None:
        """Apply new settings; reminder schedules and quiet hours follow them from now on.

        Turning message notifications off drops held-back message toasts; turning escalation
        notifications off drops held-back reminders; ``allow_manual_dnd`` off ends manual DND.
        The saved ``dnd_until`` is read only at construction (:meth:`set_dnd` rules afterwards).
        Call :meth:`next_deadline` afterwards.
        """
        self._settings = settings.model_copy(deep=True)
        self._timings()
        self._quiet_cache = None
        self._settled_at = None
        if not self._settings.allow_manual_dnd:
            self._dnd_until = None  # forbidden by policy: manual DND ends now
        if not self._settings.notify_messages:
            self._bursts.clear()
        if not (self._settings.notify_messages and self._settings.ai_messages):
            self._drop_ai()
        if not self._settings.notify_escalations:
            self._reminders.clear()
        self._due_heap.clear()
        for conversation, waiting in self._waiting.items():  # the reminder gaps may have changed
            self._schedule(conversation, waiting)

    @property
    def focus(self) -> str | None:
        """The conversation the agent is looking at, or None."""
        return self._focus

    def set_focus(self, conversation: str | None) -> list[Effect]:
        """Say which conversation the agent is looking at right now (None: none).

        Focusing a conversation counts as reading it: its held-back message and reminder toasts
        are dropped and every toast of the customer is withdrawn, the escalation's too (the chat
        window now shows them, with its own Take over button).

        Returns:
            Withdraw effects for the focused conversation's toasts.
        """
        self._focus = conversation or None
        self._settled_at = None
        if self._focus is None:
            return []
        self._bursts.pop(self._focus, None)
        self._reminders.pop(self._focus, None)
        return self._withdraw(self._focus, _CUSTOMER_KEYS)

    def withdraw_all(self) -> list[Effect]:
        """Withdraw every toast on screen and drop the held-back ones (Quit, sign-out).

        Reminder schedules are kept (a new sign-in replaces the waiting list anyway).

        Returns:
            One Withdraw per toast shown and not yet withdrawn.
        """
        effects: list[Effect] = [Withdraw(key) for key in sorted(self._shown)]
        self._settled_at = None
        self._shown.clear()
        self._summary_members.clear()
        self._ai_members.clear()
        self._bursts.clear()
        self._reminders.clear()
        self._drop_ai()
        return effects

    @property
    def dnd_until(self) -> datetime | None:
        """End of manual do-not-disturb, or None when it is off."""
        return self._dnd_until

    @property
    def manual_dnd_allowed(self) -> bool:
        """Whether the agent may turn do-not-disturb on (``alerts.allow_manual_dnd``)."""
        return self._settings.allow_manual_dnd

    def set_dnd(self, until: datetime | None) -> bool:
        """Turn manual do-not-disturb on until ``until`` (aware), or off with None.

        The menu computes ``until`` (30 minutes, 1 hour, until tomorrow). Held-back message and
        reminder toasts are dropped when DND starts (reminders only if escalations do not pass
        DND). Call :meth:`next_deadline` afterwards: the end of DND is a deadline (the tray icon
        changes back). The app saves ``until`` as ``alerts.dnd_until`` so that it survives a
        restart.

        Returns:
            False when manual DND is forbidden (``allow_manual_dnd`` off) and ``until`` was
            refused; turning it off always works.
        """
        if until is not None and not self._settings.allow_manual_dnd:
            return False
        self._settled_at = None
        self._dnd_until = None if until is None else _as_utc(until)
        if self._dnd_until is not None:
            self._drop_quiet_content()
        return True

    def dnd_active(self, now: datetime) -> bool:
        """True during manual DND or quiet hours."""
        return self._quiet(_as_utc(now))

    def _quiet(self, now: datetime) -> bool:
        """:meth:`dnd_active` for a ``now`` already in UTC (as :meth:`_see` returns it)."""
        until = self._dnd_until
        if until is not None and now < until:
            return True
        return bool(self._settings.quiet_hours) and self._quiet_span(now)[0]

    def quiet_hours_active(self, now: datetime) -> bool:
        """True while one of the quiet-hours windows covers ``now``."""
        if not self._settings.quiet_hours:
            return False
        return self._quiet_span(_as_utc(now))[0]

    def _quiet_span(self, now: datetime) -> tuple[bool, datetime | None]:
        """(quiet hours active at ``now``, the next window edge after it).

        Both stay true until that edge, so they are computed (times parsed, zones converted)
        once per edge, not once per alert: the answer is cached for ``[now, edge)``.
        """
        cached = self._quiet_cache
        if cached is not None and cached[0] <= now and (cached[2] is None or now < cached[2]):
            return cached[1], cached[2]
        active = False
        local_day = self._to_local(now).date()
        for rule in self._settings.quiet_hours:
            for back in (1, 0):
                window = self._window(rule, local_day - timedelta(days=back))
                if window is not None and window[0] <= now < window[1]:
                    active = True
        edge = self._next_quiet_boundary(now)
        self._quiet_cache = (now, active, edge)
        return active, edge

    # ------------------------------------------------------------------ waiting list

    def set_waiting(self, customers: Iterable[WaitingCustomer], now: datetime) -> list[Effect]:
        """Replace the whole waiting list (after a resync).

        Customers no longer waiting unassigned are forgotten and their toasts withdrawn;
        customers already known keep their reminder schedule.

        Returns:
            Withdraw effects, plus anything that fell due (as :meth:`on_tick`).
        """
        now = self._see(now)
        fresh = {c.conversation: c for c in customers if c.conversation and not c.assigned}
        effects: list[Effect] = []
        for conversation in [c for c in self._waiting if c not in fresh]:
            effects += self._forget(conversation)
        for customer in fresh.values():
            self._upsert_waiting(customer, now)
        return effects + self.on_tick(now)

    def on_waiting_changed(self, customer: WaitingCustomer, waiting: bool, now: datetime) -> list[Effect]:
        """One customer started or stopped waiting, or was taken or released.

        Args:
            customer: who, since when, and whether they are assigned.
            waiting: False when they no longer wait (left, resolved).
            now: current time.

        Returns:
            Withdraw effects when they stopped waiting unassigned, plus anything that fell due.
        """
        return self.update_waiting(((customer, waiting),), now)

    def update_waiting(self, changes: Iterable[tuple[WaitingCustomer, bool]], now: datetime) -> list[Effect]:
        """Several customers changed at once (a batch of :meth:`on_waiting_changed`, one tick).

        The app feeds only the conversations that changed since its last update, so the cost
        follows the changes, not the length of the waiting list.

        A customer who becomes assigned (taken by anyone) loses every toast, their message
        toast included; later message toasts of an assigned customer (mine) are left alone.

        Returns:
            Withdraw effects for customers no longer waiting unassigned, plus anything due.
        """
        now = self._see(now)
        effects: list[Effect] = []
        for customer, waiting in changes:
            conversation = customer.conversation
            if not conversation:
                continue
            if customer.assigned:
                if conversation not in self._taken:
                    # Just taken (by me, a toast button or a colleague): no toast of theirs may
                    # stay, as "Take over" can no longer work; their reminders stop.
                    self._taken.add(conversation)
                    effects += self._forget(conversation)
                elif conversation in self._waiting:
                    effects += self._forget(conversation)
                continue
            self._taken.discard(conversation)
            if waiting:
                self._upsert_waiting(customer, now)
            elif conversation in self._waiting or (
                self._shown & {escalation_key(conversation), reminder_key(conversation)}
            ):
                effects += self._forget(conversation)
        return effects + self.on_tick(now)

    @property
    def waiting_count(self) -> int:
        """How many customers wait unassigned."""
        return len(self._waiting)

    def tray_level(self, now: datetime) -> TrayLevel:
        """How urgent the waiting list is at ``now`` (for the tray icon)."""
        oldest = self._oldest_since()
        if oldest is None:
            return TrayLevel.NORMAL
        if _as_utc(now) - oldest >= self._minutes(self._settings.sla_minutes):
            return TrayLevel.SLA_BREACHED
        return TrayLevel.WAITING

    # ------------------------------------------------------------------ alerts and time

    def on_alert(self, alert: Alert, now: datetime) -> list[Effect]:
        """Take one alert from the reducer.

        Returns:
            The effects due now: this alert's toast if it may show at once, and anything else
            that fell due (as :meth:`on_tick`). Deferred toasts come from later calls.
        """
        now = self._see(now)
        # A tick at this very instant already ran and nothing changed since: unless this alert
        # gives it something to do now, the tick would do nothing (see _settled_at).
        settled = self.skip_settled_ticks and self._settled_at == now
        effects: list[Effect] = []
        conversation = alert.conversation
        if conversation and conversation != self._focus:
            if alert.kind is AlertKind.ESCALATION:
                effects += self._escalate(alert, now)
                settled = False
            elif alert.kind is AlertKind.REMINDER:
                self._queue_reminder_alert(alert, now)
                settled = False
            elif alert.kind is AlertKind.MESSAGE:
                if alert.handler is Handler.AI:
                    if self._queue_ai_message(alert, now):
                        # Held back by the rate limit or the settling time: nothing to show now.
                        settled = settled and (self._rate_limited(now) or now < self._ai_ready_at())
                # A colleague's customer is not mine; a queued message waits for a later tick.
                elif alert.handler is not Handler.COLLEAGUE and self._queue_message(alert, now):
                    # Or its burst waits for the coalescing window (its customer was just shown).
                    settled = settled and (
                        self._rate_limited(now) or self._bursts[conversation].ready_at > now
                    )
        if settled:
            return effects
        return effects + self.on_tick(now)

    def on_tick(self, now: datetime) -> list[Effect]:
        """Do whatever fell due by ``now``: reminders, deferred toasts, summaries.

        Returns:
            Notify / PlaySound effects (possibly none).
        """
        now = self._see(now)
        effects = self._tick(now)
        self._settled_at = now
        return effects

    def _tick(self, now: datetime) -> list[Effect]:
        if self._last_toast_at is not None and now < self._last_toast_at:
            self._last_toast_at = now  # the clock went back: wait at most one interval
        quiet = self._quiet(now)
        # Reminders are the escalation's follow-up: they pass DND when escalations do.
        hold_reminders = quiet and not self._settings.escalations_bypass_dnd
        self._due_reminders(now, hold_reminders)
        if quiet:
            self._drop_quiet_content()
            if hold_reminders:
                return []
        return self._flush(now) + self._flush_ai(now, quiet)

    def _rate_limited(self, now: datetime) -> bool:
        """No toast of the rate-limited kinds (messages, reminders, summaries) may show at ``now``."""
        last = self._last_toast_at
        return last is not None and now < last + self._interval_length

    def next_deadline(self) -> datetime | None:
        """When :meth:`on_tick` must be called next (aware UTC), or None if nothing is scheduled.

        Covers held-back toasts, reminders, the oldest customer crossing the SLA, the end of
        manual DND and the next quiet-hours boundary. Never returns a moment that ``on_tick``
        would not move past, so a single-shot timer re-armed after each call never spins.
        """
        candidates: list[datetime] = []
        ready = [b.ready_at for b in self._bursts.values() if b.dirty_since is not None]
        ready += [r.queued_at for r in self._reminders.values()]
        if ready:
            flush_at = min(ready)
            if self._last_toast_at is not None:
                flush_at = max(flush_at, self._last_toast_at + self._interval())
            candidates.append(flush_at)
        if self._ai:
            ai_at = self._ai_ready_at()
            if self._last_toast_at is not None:
                ai_at = max(ai_at, self._last_toast_at + self._interval())
            candidates.append(ai_at)
        if self._settings.notify_escalations:
            due = self._next_due()
            if due is not None:
                candidates.append(due)
        last = self._last_now
        oldest = self._oldest_since()
        if oldest is not None:
            crossing = oldest + self._minutes(self._settings.sla_minutes)
            if last is None or crossing > last:
                candidates.append(crossing)
        if self._dnd_until is not None and (last is None or self._dnd_until > last):
            candidates.append(self._dnd_until)
        if last is not None and self._settings.quiet_hours:
            boundary = self._quiet_span(last)[1]
            if boundary is not None:
                candidates.append(boundary)
        return min(candidates) if candidates else None

    # ------------------------------------------------------------------ internals: alerts

    def _escalate(self, alert: Alert, now: datetime) -> list[Effect]:
        settings = self._settings
        # An escalation means the customer now waits for a human; the waiting-list events
        # remain authoritative, this only makes sure reminders start (from the real start).
        self._note_waiting(alert, now)
        if not settings.notify_escalations:
            return []
        if self.dnd_active(now) and not settings.escalations_bypass_dnd:
            return []
        name = _clean(alert.customer_name, _NAME_LIMIT) or AlertTexts.UNKNOWN_CUSTOMER
        body = _clean(alert.text, _BODY_LIMIT) or AlertTexts.ESCALATION_BODY
        key = escalation_key(alert.conversation)
        toast = Toast(
            key=key,
            title=AlertTexts.escalation_title(name),
            body=body,
            urgency=Urgency.CRITICAL,
            conversation=alert.conversation,
            actions=(ToastAction.TAKE_OVER, ToastAction.OPEN),
        )
        # One escalation = one toast: the critical toast replaces the customer's message toast
        # (shown or held back); their messages stay silent while it is on screen.
        self._bursts.pop(alert.conversation, None)
        effects: list[Effect] = self._withdraw(alert.conversation, (message_key,))
        self._shown.add(key)
        # Escalations bypass the rate limit but reset it: no message toast follows within the
        # interval, so a critical toast is never immediately buried by a routine one.
        self._last_toast_at = now
        effects.append(Notify(toast))
        if settings.sounds:
            effects.append(PlaySound(SoundName.ESCALATION))
        return effects

    def _note_waiting(self, alert: Alert, now: datetime) -> None:
        """Make sure the alert's customer is on the waiting list, since when they really wait."""
        if alert.conversation not in self._waiting or alert.since is not None:
            self._upsert_waiting(
                WaitingCustomer(alert.conversation, alert.since, False, alert.customer_name, alert.channel),
                now,
            )

    def _queue_ai_message(self, alert: Alert, now: datetime) -> bool:
        """Hold the message for the AI summary; False when it is dropped (nothing changed)."""
        settings = self._settings
        if not (settings.notify_messages and settings.ai_messages) or self._quiet(now):
            return False
        if self._escalation_shown(alert.conversation):
            return False  # the critical toast already speaks for this customer
        if not self._ai:
            self._ai_since = now
        name = self._ai.pop(alert.conversation, "")  # re-inserted: names stay newest last
        self._ai[alert.conversation] = alert.customer_name or name
        self._ai_counts[alert.conversation] = self._ai_counts.get(alert.conversation, 0) + 1
        return True

    def _queue_message(self, alert: Alert, now: datetime) -> bool:
        """Add the message to its customer's burst; False when it is dropped (nothing changed)."""
        if not self._settings.notify_messages or self._quiet(now):
            return False  # dropped, not queued: the badge still counts it
        if self._escalation_shown(alert.conversation):
            return False  # the critical toast already speaks for this customer
        window = self._coalesce_window
        # Kept raw (bounded) and cleaned only if it is ever shown: in a burst most texts are
        # replaced by the next one before the rate limit lets a toast out.
        text = alert.text[: _BODY_LIMIT * 4]
        burst = self._bursts.get(alert.conversation)
        if burst is not None:
            activity = max(burst.last_message_at, burst.shown_at or burst.last_message_at)
            if burst.dirty_since is None and now - activity > window:
                burst = None  # the previous burst is over: start counting again
        if burst is None:
            self._seq += 1
            self._bursts[alert.conversation] = _Burst(
                customer_name=alert.customer_name,
                channel=alert.channel,
                count=1,
                last_text=text,
                last_message_at=now,
                ready_at=now,
                dirty_since=now,
                seq=self._seq,
            )
            return True
        burst.count += 1
        burst.last_text = text
        burst.last_message_at = now
        burst.customer_name = alert.customer_name or burst.customer_name
        burst.channel = alert.channel or burst.channel
        if burst.dirty_since is None:
            self._seq += 1
            burst.seq = self._seq
            burst.dirty_since = now
            burst.ready_at = (burst.shown_at + window) if burst.shown_at is not None else now
        return True

    def _queue_reminder_alert(self, alert: Alert, now: datetime) -> None:
        self._note_waiting(alert, now)
        settings = self._settings
        if not settings.notify_escalations:
            return
        if self.dnd_active(now) and not settings.escalations_bypass_dnd:
            return
        self._queue_reminder(alert.conversation, now)

    def _queue_reminder(self, conversation: str, now: datetime) -> None:
        if conversation not in self._reminders:
            self._seq += 1
            self._reminders[conversation] = _PendingReminder(now, self._seq)

    # ------------------------------------------------------------------ internals: schedule

    def _timings(self) -> None:
        """Compute the settings' durations once (they are read on every alert)."""
        self._interval_length = timedelta(seconds=self._settings.toast_min_interval)
        self._coalesce_window = timedelta(seconds=self._settings.coalesce_window)

    def _interval(self) -> timedelta:
        return self._interval_length

    def _escalation_shown(self, conversation: str) -> bool:
        """``escalation_key(conversation) in self._shown``, for a conversation that is not ""."""
        return bool(self._shown) and _ESCALATION_PREFIX + conversation in self._shown

    @staticmethod
    def _minutes(value: float) -> timedelta:
        return timedelta(minutes=value)

    def _reminder_gap(self, sent: int) -> timedelta:
        """Gap before reminder number ``sent`` (0 = the first, measured from ``since``).

        ``reminder_after * reminder_backoff**sent`` minutes, capped at ``reminder_max_interval``
        (or at ``reminder_after`` if that is larger: reminders never get more frequent).
        """
        settings = self._settings
        after = settings.reminder_after
        if sent == 0:
            return self._minutes(after)
        cap = max(settings.reminder_max_interval, after)
        backoff = settings.reminder_backoff
        # Compare logarithms first so that a long-waiting customer never overflows the power.
        if backoff > 1.0 and sent * math.log(backoff) >= math.log(cap / after):
            return self._minutes(cap)
        return self._minutes(min(after * backoff**sent, cap))

    def _next_reminder_at(self, waiting: _Waiting) -> datetime:
        base = waiting.since if waiting.last_reminder_at is None else waiting.last_reminder_at
        return base + self._reminder_gap(waiting.reminders_sent)

    def _due_reminders(self, now: datetime, quiet: bool) -> None:
        """Advance the schedules that fell due; queue their toasts unless ``quiet`` holds them."""
        if not self._settings.notify_escalations:
            return
        heap = self._due_heap
        due_now: list[tuple[datetime, int, str]] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            waiting = self._waiting.get(entry[2])
            if waiting is not None and waiting.due == entry[0]:
                due_now.append(entry)
        # Same order as the waiting list (oldest first), as the toasts' order follows it.
        for _due, _tie, conversation in sorted(due_now, key=lambda e: self._waiting[e[2]].since):
            waiting = self._waiting[conversation]
            # One reminder however late the tick; the schedule restarts from now.
            waiting.reminders_sent += 1
            waiting.last_reminder_at = now
            self._schedule(conversation, waiting)
            if not quiet and conversation != self._focus:
                self._queue_reminder(conversation, now)

    def _schedule(self, conversation: str, waiting: _Waiting) -> None:
        """(Re)compute the customer's next reminder and index it."""
        waiting.due = self._next_reminder_at(waiting)
        heapq.heappush(self._due_heap, (waiting.due, next(self._tie), conversation))
        if len(self._due_heap) > 2 * len(self._waiting) + 64:
            self._due_heap = [
                (w.due, next(self._tie), c) for c, w in self._waiting.items() if w.due is not None
            ]
            heapq.heapify(self._due_heap)

    def _index_since(self, conversation: str, since: datetime) -> None:
        heapq.heappush(self._since_heap, (since, next(self._tie), conversation))
        if len(self._since_heap) > 2 * len(self._waiting) + 64:
            self._since_heap = [(w.since, next(self._tie), c) for c, w in self._waiting.items()]
            heapq.heapify(self._since_heap)

    def _next_due(self) -> datetime | None:
        """The earliest scheduled reminder (stale heap entries are dropped on the way)."""
        heap = self._due_heap
        while heap:
            due, _tie, conversation = heap[0]
            waiting = self._waiting.get(conversation)
            if waiting is not None and waiting.due == due:
                return due
            heapq.heappop(heap)
        return None

    def _oldest_since(self) -> datetime | None:
        """When the longest-waiting customer started waiting (stale entries dropped)."""
        heap = self._since_heap
        while heap:
            since, _tie, conversation = heap[0]
            waiting = self._waiting.get(conversation)
            if waiting is not None and waiting.since == since:
                return since
            heapq.heappop(heap)
        return None

    def _upsert_waiting(self, customer: WaitingCustomer, now: datetime) -> None:
        since = now if customer.since is None else min(_as_utc(customer.since), now)
        known = self._waiting.get(customer.conversation)
        if known is None:
            waiting = _Waiting(customer.customer_name, customer.channel, since)
            self._waiting[customer.conversation] = waiting
            self._schedule(customer.conversation, waiting)
            self._index_since(customer.conversation, since)
            return
        known.customer_name = customer.customer_name or known.customer_name
        known.channel = customer.channel or known.channel
        if customer.since is not None and since != known.since:
            known.since = since
            self._schedule(customer.conversation, known)
            self._index_since(customer.conversation, since)

    # ------------------------------------------------------------------ internals: showing

    def _prune_bursts(self, now: datetime) -> None:
        """Forget finished bursts: shown, and quiet for a whole coalescing window.

        A new message starts a new burst for them anyway. Amortised: only when the table grew.
        """
        if len(self._bursts) <= _BURSTS_KEPT:
            return
        window = self._coalesce_window
        for conversation in [
            c
            for c, b in self._bursts.items()
            if b.dirty_since is None
            and now - max(b.last_message_at, b.shown_at or b.last_message_at) > window
        ]:
            del self._bursts[conversation]

    def _flush(self, now: datetime) -> list[Effect]:
        self._prune_bursts(now)
        effects: list[Effect] = []
        interval = self._interval()
        reminded = False
        while self._last_toast_at is None or now >= self._last_toast_at + interval:
            ready_bursts = {
                c: b for c, b in self._bursts.items() if b.dirty_since is not None and b.ready_at <= now
            }
            ready_reminders = {c: r for c, r in self._reminders.items() if r.queued_at <= now}
            customers = set(ready_bursts) | set(ready_reminders)
            if not customers:
                break
            if len(customers) >= self._settings.summary_threshold:
                shown = self._summary(ready_bursts, ready_reminders, now)
            else:
                shown = self._single(ready_bursts, ready_reminders, now)
            reminded = reminded or shown.toast.urgency is Urgency.CRITICAL
            effects.append(shown)
            self._last_toast_at = now
        if effects and self._settings.sounds:
            # A reminder is the escalation's follow-up: it sounds like one.
            effects.append(PlaySound(SoundName.ESCALATION if reminded else SoundName.MESSAGE))
        return effects

    def _ai_ready_at(self) -> datetime:
        """When the AI-messages summary may show (settled, at most once per AI_SUMMARY_INTERVAL)."""
        settled = (self._ai_since or self._last_now or datetime.min.replace(tzinfo=UTC)) + AI_SUMMARY_SETTLE
        if self._ai_shown_at is None:
            return settled
        return max(settled, self._ai_shown_at + AI_SUMMARY_INTERVAL)

    def _flush_ai(self, now: datetime, quiet: bool) -> list[Effect]:
        """The summary of messages in AI-handled conversations, if one is due (no sound)."""
        if not self._ai or quiet or now < self._ai_ready_at():
            return []
        if self._last_toast_at is not None and now < self._last_toast_at + self._interval():
            return []
        names = [n for n in dict.fromkeys(_clean(name, _NAME_LIMIT) for name in self._ai.values()) if n]
        toast = Toast(
            key=AI_SUMMARY_KEY,
            title=AlertTexts.ai_summary_title(sum(self._ai_counts.values())),
            body=AlertTexts.summary_body(names, len(self._ai)),
            urgency=Urgency.LOW,
            conversation="",
        )
        self._ai_members = set(self._ai)
        self._drop_ai()
        self._ai_shown_at = now
        self._last_toast_at = now
        self._shown.add(AI_SUMMARY_KEY)
        return [Notify(toast)]

    def _drop_ai(self) -> None:
        self._ai.clear()
        self._ai_counts.clear()

    def _single(
        self, bursts: dict[str, _Burst], reminders: dict[str, _PendingReminder], now: datetime
    ) -> Notify:
        order: list[tuple[datetime, int, str, bool]] = [
            (b.dirty_since or now, b.seq, c, True) for c, b in bursts.items()
        ]
        order += [(r.queued_at, r.seq, c, False) for c, r in reminders.items()]
        _due, _seq, conversation, is_message = min(order)
        if is_message:
            return self._show_burst(conversation, bursts[conversation], now)
        return self._show_reminder(conversation, now)

    def _show_burst(self, conversation: str, burst: _Burst, now: datetime) -> Notify:
        name = _clean(burst.customer_name, _NAME_LIMIT) or AlertTexts.UNKNOWN_CUSTOMER
        key = message_key(conversation)
        toast = Toast(
            key=key,
            title=AlertTexts.message_title(name, _clean(burst.channel, _NAME_LIMIT)),
            body=AlertTexts.message_body(burst.count, _clean(burst.last_text, _BODY_LIMIT)),
            urgency=Urgency.NORMAL,
            conversation=conversation,
        )
        self._mark_burst_shown(burst, now)
        self._shown.add(key)
        return Notify(toast)

    @staticmethod
    def _mark_burst_shown(burst: _Burst, now: datetime) -> None:
        burst.shown_at = now
        burst.dirty_since = None

    def _show_reminder(self, conversation: str, now: datetime) -> Notify:
        self._reminders.pop(conversation, None)
        waiting = self._waiting.get(conversation)
        burst = self._bursts.get(conversation)
        raw_name = waiting.customer_name if waiting else ""
        raw_name = raw_name or (burst.customer_name if burst else "")
        name = _clean(raw_name, _NAME_LIMIT) or AlertTexts.UNKNOWN_CUSTOMER
        since = waiting.since if waiting else now
        minutes = max(0, int((now - since).total_seconds() // 60))
        key = reminder_key(conversation)
        toast = Toast(
            key=key,
            title=AlertTexts.reminder_title(name, minutes),
            body=AlertTexts.REMINDER_BODY,
            urgency=Urgency.CRITICAL,  # the escalation's follow-up
            conversation=conversation,
            actions=(ToastAction.TAKE_OVER, ToastAction.OPEN),
        )
        self._shown.add(key)
        return Notify(toast)

    def _summary(
        self, bursts: dict[str, _Burst], reminders: dict[str, _PendingReminder], now: datetime
    ) -> Notify:
        members = set(bursts) | set(reminders)
        ordered = sorted(
            members,
            key=lambda c: bursts[c].seq if c in bursts else reminders[c].seq,
        )
        names: list[str] = []
        for conversation in ordered:
            if len(names) >= _SUMMARY_NAMES:
                break  # the toast names only these (a first resync may hold thousands)
            raw = bursts[conversation].customer_name if conversation in bursts else ""
            if not raw and conversation in self._waiting:
                raw = self._waiting[conversation].customer_name
            name = _clean(raw, _NAME_LIMIT)
            if name and name not in names:
                names.append(name)
        for burst in bursts.values():
            self._mark_burst_shown(burst, now)
        for conversation in reminders:
            self._reminders.pop(conversation, None)
        self._summary_members = members
        self._shown.add(SUMMARY_KEY)
        return Notify(
            Toast(
                key=SUMMARY_KEY,
                title=AlertTexts.summary_title(len(members), bool(bursts)),
                body=AlertTexts.summary_body(names, len(members)),
                urgency=Urgency.CRITICAL if reminders else Urgency.NORMAL,
                conversation="",
            )
        )

    # ------------------------------------------------------------------ internals: forgetting

    def _drop_quiet_content(self) -> None:
        """DND: held-back message (and, unless escalations pass DND, reminder) toasts are dropped."""
        for burst in self._bursts.values():
            burst.dirty_since = None
        self._drop_ai()
        if not self._settings.escalations_bypass_dnd:
            self._reminders.clear()

    def _forget(self, conversation: str) -> list[Effect]:
        self._waiting.pop(conversation, None)
        self._bursts.pop(conversation, None)
        self._reminders.pop(conversation, None)
        return self._withdraw(conversation, _CUSTOMER_KEYS)

    def _withdraw(self, conversation: str, keys: tuple[Callable[[str], str], ...]) -> list[Effect]:
        effects: list[Effect] = []
        for make_key in keys:
            key = make_key(conversation)
            if key in self._shown:
                self._shown.discard(key)
                effects.append(Withdraw(key))
        if conversation in self._summary_members:
            self._summary_members.discard(conversation)
            if not self._summary_members and SUMMARY_KEY in self._shown:
                self._shown.discard(SUMMARY_KEY)
                effects.append(Withdraw(SUMMARY_KEY))
        # The AI-messages summary too: held back, the customer leaves it; shown naming only
        # them, it goes (an escalation's critical toast, a take over, focus speak for them now).
        self._ai.pop(conversation, None)
        self._ai_counts.pop(conversation, None)
        if conversation in self._ai_members:
            self._ai_members.discard(conversation)
            if not self._ai_members and AI_SUMMARY_KEY in self._shown:
                self._shown.discard(AI_SUMMARY_KEY)
                effects.append(Withdraw(AI_SUMMARY_KEY))
        return effects

    # ------------------------------------------------------------------ internals: time

    def _see(self, now: datetime) -> datetime:
        now = _as_utc(now)
        if self._last_now is None or now > self._last_now:
            self._last_now = now
        return now

    def _to_local(self, now: datetime) -> datetime:
        return now.astimezone() if self._tz is None else now.astimezone(self._tz)

    def _localize(self, day: date, clock: time) -> datetime:
        naive = datetime.combine(day, clock)
        aware = naive.astimezone() if self._tz is None else naive.replace(tzinfo=self._tz)
        return aware.astimezone(UTC)

    def _window(self, rule: QuietHoursRule, start_day: date) -> tuple[datetime, datetime] | None:
        """The rule's window starting on ``start_day`` (UTC bounds), or None if not that day."""
        if start_day.isoweekday() not in rule.days:
            return None
        start = time.fromisoformat(rule.start)
        end = time.fromisoformat(rule.end)
        end_day = start_day + timedelta(days=1) if end <= start else start_day
        return self._localize(start_day, start), self._localize(end_day, end)

    def _next_quiet_boundary(self, after: datetime) -> datetime | None:
        if not self._settings.quiet_hours:
            return None
        local_day = self._to_local(after).date()
        best: datetime | None = None
        for rule in self._settings.quiet_hours:
            for offset in range(-1, 8):
                window = self._window(rule, local_day + timedelta(days=offset))
                if window is None:
                    continue
                for edge in window:
                    if edge > after and (best is None or edge < best):
                        best = edge
        return best
