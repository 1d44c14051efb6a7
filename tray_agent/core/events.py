"""Dialect-neutral domain events: what the core, the UI and `tray-agent listen` see of either backend.

Every dialect module in :mod:`tray_agent.core.protocol` translates wire frames (and REST answers)
into these events; the network layer adds connection events; the reducer in
:mod:`tray_agent.core.state` folds them into state. Events are frozen, slotted dataclasses: they
are built on the hot path (one or more per frame), so they must be cheap, and they carry only
plain values (str, int, bool, datetime, tuples, other events' value objects) so that
:func:`event_to_json` can render any of them as one JSON object.

A *conversation* is identified everywhere by an opaque string (see :func:`conversation_key`):
the org dialect's ``chat_id``, or ``"<page_id>/<customer_id>"`` for the dashboard dialect, whose
customers are keyed by the pair (PROTOCOL.md G11).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Dialect(enum.StrEnum):
    """The two backend dialects (PROTOCOL.md 1 and 2)."""

    ORG = "org"
    DASHBOARD = "dashboard"


class SenderKind(enum.StrEnum):
    """Who wrote a message."""

    CUSTOMER = "customer"
    AI = "ai"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"


class ConnectionState(enum.StrEnum):
    """The connection's state machine, shown by the tray icon and printed by `listen`."""

    OFFLINE = "offline"  # not started, or stopped
    CONNECTING = "connecting"  # first attempt, or an immediate retry
    RESYNCING = "resyncing"  # socket open, full resync running; deltas not yet trusted
    CONNECTED = "connected"  # live and resynced
    RECONNECTING = "reconnecting"  # waiting out a backoff delay after a failure
    LIMITED = "limited"  # WebSocket blocked, REST polling fallback
    AUTH_REQUIRED = "auth_required"  # credentials refused; nothing retried until new ones
    SIGNED_IN_ELSEWHERE = "signed_in_elsewhere"  # another client of my user took the socket (dashboard)


class AssignmentAction(enum.StrEnum):
    """Direction of an assignment change."""

    ASSIGNED = "assigned"
    UNASSIGNED = "unassigned"


class FailureReason(enum.StrEnum):
    """Why a command failed, dialect-neutral (the server's own text travels alongside)."""

    ALREADY_ASSIGNED = "already_assigned"
    NOT_ASSIGNED = "not_assigned"
    NOT_FOUND = "not_found"
    NO_HUMAN_REQUESTED = "no_human_requested"
    ACCESS_DENIED = "access_denied"
    MISSING_FIELDS = "missing_fields"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    OFFLINE = "offline"  # could not be sent and may not be queued (e.g. sign-out)
    UNCONFIRMED = "unconfirmed"  # sent, then the connection dropped before any answer
    INVALID = "invalid"  # the command itself is malformed (bad `listen` line, unknown id)


class CommandKind(enum.StrEnum):
    """The kinds of command the agent can issue (see :mod:`tray_agent.core.commands`)."""

    TAKE_OVER = "take_over"
    RELEASE = "release"
    RESOLVE = "resolve"  # close the conversation (org resolve; dashboard: release + bot back)
    HAND_BACK = "hand_back"  # give the customer back to the AI / bot
    REPLY = "reply"
    RESEND = "resend"  # the agent sends an unconfirmed command again (same id)
    DISCARD = "discard"  # the agent drops an unconfirmed or queued command
    REFRESH = "refresh"
    HISTORY = "history"
    PING = "ping"
    UNKNOWN = "unknown"  # a `listen` input line naming no known command


# ---------------------------------------------------------------------------------------------
# Value objects carried by events
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a message. ``url`` is shown as a link only if it is http(s)."""

    url: str
    kind: str = ""  # "image", "video", "document" or a MIME type (PROTOCOL.md O4)
    name: str = ""


@dataclass(frozen=True, slots=True)
class AgentRef:
    """An agent as the server names it; any part may be empty (PROTOCOL.md G9)."""

    agent_id: str = ""
    name: str = ""
    email: str = ""


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """One row of the waiting list / conversation list, as a resync page delivers it.

    Attributes:
        conversation: opaque conversation key.
        customer_name: the customer's display name ("" if unknown).
        channel: org channel (whatsapp, telegram ...) or the dashboard page name.
        last_message: text of the last message, if the server says.
        last_message_at: when that message was written.
        waiting: the customer asked for a human (dashboard ``stop``; org escalated / human mode).
        waiting_since: when they asked (dashboard ``stopped_at``; org ``escalated_at``).
        assigned: an agent (human) currently has the customer.
        agent: that agent, if known.
        assigned_to_me: the server says the agent is me (dashboard ``is_assigned_to_me``).
        handled_by: org ``handled_by`` (ai|human|unassigned) or "" where the dialect has none.
        status: org chat status (open, pending, assigned, resolved, closed) or "".
    """

    conversation: str
    customer_name: str = ""
    channel: str = ""
    last_message: str = ""
    last_message_at: datetime | None = None
    waiting: bool = False
    waiting_since: datetime | None = None
    assigned: bool = False
    agent: AgentRef | None = None
    assigned_to_me: bool | None = None
    handled_by: str = ""
    status: str = ""


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every domain event. ``event_name`` is the snake_case name `listen` prints."""

    event_name: str = field(default="event", init=False, repr=False)


def _named(name: str) -> Any:
    return field(default=name, init=False, repr=False)


@dataclass(frozen=True, slots=True)
class ConnectionChanged(Event):
    """The connection's state changed (produced by the network layer, never by a parser).

    Attributes:
        state: the new state.
        detail: a short human-readable reason ("server unreachable", "HTTP 403" ...).
        retry_in: seconds until the next attempt, when reconnecting.
        at: when it happened (the network layer's Clock); the store's ``last_synced``.
    """

    state: ConnectionState = ConnectionState.OFFLINE
    detail: str = ""
    retry_in: float | None = None
    at: datetime | None = None
    event_name: str = _named("connection")


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The server welcomed us (org ``connection_established``, dashboard ``connected``)."""

    user_id: str = ""  # dashboard: the user's Mongo id; org: "" (the JWT ``sub`` is known to net)
    connection_count: int | None = None
    event_name: str = _named("connected")


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """A message in a conversation: from the customer, the AI/bot, an agent or the system.

    Attributes:
        conversation: opaque conversation key.
        sender: who wrote it.
        text: plain text, possibly "" (attachment-only, or a cleared bot reply: PROTOCOL.md G8).
        attachment: a file, if any.
        message_id: the server's id where one exists (org); None for the dashboard (G7).
        sent_at: when it was written (timezone-aware UTC), if known.
        customer_name: the customer's name, only when the frame really names the customer.
        channel: org channel or dashboard page name/id, if known.
        sender_name: display name of the sender, if any.
        agent_id: for agent messages, the agent's id (compare with my user id for "is me").
        requires_human: dashboard ``requires_human``: the customer is already in human mode.
        is_new_chat: org ``is_new_chat``.
    """

    conversation: str = ""
    sender: SenderKind = SenderKind.CUSTOMER
    text: str = ""
    attachment: Attachment | None = None
    message_id: str | None = None
    sent_at: datetime | None = None
    customer_name: str = ""
    channel: str = ""
    sender_name: str = ""
    agent_id: str = ""
    requires_human: bool = False
    is_new_chat: bool = False
    event_name: str = _named("message_received")

    @property
    def dedupe_key(self) -> str:
        """The message's identity across copies: ``id:<server id>``, else ``t:<time>|<sender>|<text>``.

        The dashboard has no message ids (PROTOCOL.md G7). The local store persists this key, so
        its format must not change.
        """
        if self.message_id:
            return f"id:{self.message_id}"
        at = self.sent_at.timestamp() if self.sent_at is not None else ""
        return f"t:{at}|{self.sender.value}|{self.text}"


@dataclass(frozen=True, slots=True)
class HumanRequested(Event):
    """A customer asked for a human (dashboard ``agent_requested``; org escalation seen)."""

    conversation: str = ""
    customer_name: str = ""
    text: str = ""
    at: datetime | None = None
    event_name: str = _named("human_requested")


@dataclass(frozen=True, slots=True)
class WaitingChanged(Event):
    """The customer's "waiting for a human" flag changed (dashboard ``stop`` on/off)."""

    conversation: str = ""
    waiting: bool = False
    customer: ConversationSummary | None = None
    at: datetime | None = None
    event_name: str = _named("waiting_changed")


@dataclass(frozen=True, slots=True)
class AssignmentChanged(Event):
    """A conversation was assigned to, or released by, an agent.

    ``is_me`` is what the frame says (None when it cannot tell); the reducer also compares
    ``agent.agent_id`` with my user id.
    """

    conversation: str = ""
    action: AssignmentAction = AssignmentAction.ASSIGNED
    agent: AgentRef | None = None
    is_me: bool | None = None
    customer: ConversationSummary | None = None
    at: datetime | None = None
    event_name: str = _named("assignment_changed")


@dataclass(frozen=True, slots=True)
class ConversationUpdated(Event):
    """Anything else the server says about a conversation (org ``chat_update``).

    ``fields`` holds the frame's data as plain JSON values (a read-only mapping).
    """

    conversation: str = ""
    update_type: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    event_name: str = _named("conversation_updated")


@dataclass(frozen=True, slots=True)
class WaitingListPage(Event):
    """One page of a resync: the waiting list (dashboard) or the open conversations (org).

    Attributes:
        customers: the rows of this page.
        offset: index of the first row in the whole list.
        total: the server's total, if it says.
        has_more: another page follows.
        complete_list: the pages together are the server's whole truth, so rows missing from
            them may be dropped from the store once the last page arrives.
        complete_assignments: the pages together list every conversation a human holds (org
            filtered resync), so one missing from them that the store holds for me is held by
            nobody any more (released to the AI, resolved).
        at: when it arrived (app.py stamps it): the last page of a resync while connected is
            the store's ``last_synced``.
        changed_live: conversations whose waiting, assignment or status a live event (or my
            confirmed command) changed while this page was being read over REST: the page's
            rows for them are older than the store, so only their names and last message apply,
            and the end of a resync drops none of them.
    """

    customers: tuple[ConversationSummary, ...] = ()
    offset: int = 0
    total: int | None = None
    has_more: bool = False
    complete_list: bool = True
    complete_assignments: bool = False
    at: datetime | None = None
    changed_live: frozenset[str] = frozenset()
    event_name: str = _named("waiting_list")


@dataclass(frozen=True, slots=True)
class HistoryPage(Event):
    """Messages of one conversation from the REST history, oldest first."""

    conversation: str = ""
    messages: tuple[MessageReceived, ...] = ()
    has_more: bool = False
    event_name: str = _named("history")


@dataclass(frozen=True, slots=True)
class CommandQueued(Event):
    """The network layer accepted a command; it is waiting to be sent (maybe until reconnect).

    ``text`` is the reply text for REPLY commands (the store shows it as pending at once).
    ``durable`` is True only when the command is in the outbox on disk (it survives a crash or a
    restart); False when nothing was persisted (read-only data directory, full disk, a store in
    memory, a kind that is never persisted), so nobody is told it is safe when it is not.
    """

    command_id: str = ""
    kind: CommandKind = CommandKind.PING
    conversation: str = ""
    text: str = ""
    durable: bool = False
    event_name: str = _named("command_queued")


@dataclass(frozen=True, slots=True)
class CommandSent(Event):
    """A command was written to the socket (or its HTTP request started)."""

    command_id: str = ""
    kind: CommandKind = CommandKind.PING
    conversation: str = ""
    event_name: str = _named("command_sent")


@dataclass(frozen=True, slots=True)
class CommandSucceeded(Event):
    """A command was confirmed by the server.

    ``message_id`` is the server id of a sent reply where the dialect has one.
    """

    command_id: str = ""
    kind: CommandKind = CommandKind.PING
    conversation: str = ""
    message_id: str | None = None
    event_name: str = _named("command_succeeded")


@dataclass(frozen=True, slots=True)
class CommandFailed(Event):
    """A command failed; ``text`` is the server's own words (or ours for timeouts)."""

    command_id: str = ""
    kind: CommandKind = CommandKind.PING
    conversation: str = ""
    reason: FailureReason = FailureReason.SERVER_ERROR
    text: str = ""
    event_name: str = _named("command_failed")


@dataclass(frozen=True, slots=True)
class CommandDiscarded(Event):
    """The agent dropped one of their commands (unconfirmed or still queued): it is never sent."""

    command_id: str = ""
    kind: CommandKind = CommandKind.REPLY
    conversation: str = ""
    event_name: str = _named("command_discarded")


@dataclass(frozen=True, slots=True)
class CommandRetried(Event):
    """The agent sent a failed command again as a new one: ``command_id`` now lives on as ``retried_as``."""

    command_id: str = ""
    retried_as: str = ""
    conversation: str = ""
    event_name: str = _named("command_retried")


@dataclass(frozen=True, slots=True)
class ServerAcked(Event):
    """A dialect saw a success frame for a command kind; net turns it into CommandSucceeded.

    Dashboard replies carry no correlation id (PROTOCOL.md G5), so the network layer matches
    this to the oldest outstanding command of that kind (and conversation, if given).
    """

    kind: CommandKind = CommandKind.PING
    conversation: str = ""
    message_id: str | None = None
    event_name: str = _named("server_acked")


@dataclass(frozen=True, slots=True)
class ServerRejected(Event):
    """A dialect saw an error frame; net matches it to an outstanding command.

    ``kinds`` lists the command kinds this error text can belong to, most likely first.
    """

    reason: FailureReason = FailureReason.SERVER_ERROR
    text: str = ""
    kinds: tuple[CommandKind, ...] = ()
    event_name: str = _named("server_rejected")


@dataclass(frozen=True, slots=True)
class KeepaliveReceived(Event):
    """A JSON ``ping`` or ``pong`` from the server (``ping`` wants a ``pong`` back)."""

    kind: str = "pong"  # "ping" | "pong"
    event_name: str = _named("keepalive")


@dataclass(frozen=True, slots=True)
class Ignored(Event):
    """Input we do not act on: unknown type, malformed JSON, echo, document notice ...

    ``kind`` is the frame's ``type`` if it had one (else "malformed", "binary", "oversized");
    ``why`` says why in a few words. The store counts these; nothing else happens.
    """

    kind: str = ""
    why: str = ""
    event_name: str = _named("ignored")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def conversation_key(dialect: Dialect, *, chat_id: str = "", page_id: str = "", customer_id: str = "") -> str:
    """Build the opaque conversation key of a dialect.

    Args:
        dialect: which backend.
        chat_id: org chat id.
        page_id: dashboard page id.
        customer_id: dashboard customer id (page-scoped PSID).
    """
    if dialect is Dialect.ORG:
        return chat_id
    return f"{page_id}/{customer_id}"


def split_dashboard_key(conversation: str) -> tuple[str, str] | None:
    """Return ``(page_id, customer_id)`` of a dashboard key, or None if it is not one."""
    page_id, sep, customer_id = conversation.partition("/")
    if not sep or not page_id or not customer_id or "/" in customer_id:
        return None
    return page_id, customer_id


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "event_name"
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    return value


def event_to_dict(event: Event) -> dict[str, Any]:
    """Render an event as a JSON-ready dict with an ``"event"`` key first (the `listen` format)."""
    body = _plain(event)
    assert isinstance(body, dict)
    return {"event": event.event_name, **body}


def event_to_json(event: Event) -> str:
    """Render an event as one line of JSON (no newline)."""
    return json.dumps(event_to_dict(event), ensure_ascii=False, separators=(",", ":"))
