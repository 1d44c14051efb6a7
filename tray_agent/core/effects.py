"""Effects: what the pure core asks the outside world to do (alert, notify, play, resync).

The reducer (:mod:`tray_agent.core.state`) emits :class:`Alert` effects for things worth an
agent's attention; the notification policy (:mod:`tray_agent.core.policy`) turns alerts into
:class:`Notify` / :class:`Withdraw` / :class:`PlaySound` effects (coalescing, rate limit,
do-not-disturb); ``app.py`` carries those out through the platform services.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class AlertKind(enum.StrEnum):
    """Why the agent should look."""

    MESSAGE = "message"  # a customer wrote
    ESCALATION = "escalation"  # a customer asked for a human
    REMINDER = "reminder"  # a customer is still waiting, unassigned


class Handler(enum.StrEnum):
    """Who is handling the customer when an alert is raised (decides whether a message alerts)."""

    UNKNOWN = "unknown"  # not said: alerted like a customer of mine
    ME = "me"  # assigned to me
    NOBODY = "nobody"  # waiting for a human, or nobody (AI or human) handles the conversation
    COLLEAGUE = "colleague"  # another agent has the customer
    AI = "ai"  # the AI/bot is answering


class Urgency(enum.StrEnum):
    """Toast urgency (freedesktop low / normal / critical)."""

    LOW = "low"
    NORMAL = "normal"
    CRITICAL = "critical"


class ToastAction(enum.StrEnum):
    """Buttons a toast may carry; the id comes back when the agent presses it."""

    OPEN = "open"
    TAKE_OVER = "take_over"


class SoundName(enum.StrEnum):
    """Sounds shipped in resources/sounds (``<name>.wav``)."""

    MESSAGE = "message"
    ESCALATION = "escalation"


@dataclass(frozen=True, slots=True)
class Effect:
    """Base of every effect."""


@dataclass(frozen=True, slots=True)
class Alert(Effect):
    """Something happened that may deserve a toast; the policy decides.

    Attributes:
        kind: message, escalation or reminder.
        conversation: the conversation's opaque key.
        customer_name: the customer's display name ("" if unknown).
        channel: channel or page name.
        text: the message text (customer-supplied; escaped by the notifier, plain in Qt).
        since: when the customer started waiting for a human (aware), if they do: reminders
            count the waiting time from here.
        handler: who handles the customer (messages in AI-handled conversations are quiet by
            default).
    """

    kind: AlertKind
    conversation: str
    customer_name: str = ""
    channel: str = ""
    text: str = ""
    since: datetime | None = None
    handler: Handler = Handler.UNKNOWN


@dataclass(frozen=True, slots=True)
class Toast:
    """One native notification.

    Attributes:
        key: identity for replacement: a toast with the same key replaces the previous one
            (a burst from one customer updates one toast).
        title: plain text; the notifier escapes it for the server's markup.
        body: plain text; likewise escaped.
        urgency: low / normal / critical.
        conversation: what a click opens ("" for a summary toast: opens the inbox).
        actions: buttons.
    """

    key: str
    title: str
    body: str
    urgency: Urgency = Urgency.NORMAL
    conversation: str = ""
    actions: tuple[ToastAction, ...] = ()


@dataclass(frozen=True, slots=True)
class Notify(Effect):
    """Show (or replace, by key) a toast."""

    toast: Toast


@dataclass(frozen=True, slots=True)
class Withdraw(Effect):
    """Remove a toast that no longer applies (e.g. someone took the customer)."""

    key: str


@dataclass(frozen=True, slots=True)
class PlaySound(Effect):
    """Play one of the shipped sounds."""

    sound: SoundName


@dataclass(frozen=True, slots=True)
class RequestResync(Effect):
    """Ask the network layer for a full resync (e.g. an event referred to an unknown customer)."""

    why: str = ""
