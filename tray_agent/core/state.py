"""Frozen agent state, the pure reducer ``reduce(state, event) -> (state, effects)`` and the Store.

Shape (everything is immutable; a reducer step builds new objects and shares the rest):

* :class:`State` — the root: :class:`ConnectionInfo`, the conversations (a persistent
  :class:`ConversationMap`), my outbound commands (:class:`OutboundCommand` by command id), the
  focused conversation, counters, and derived indexes kept incrementally (``unread_total``,
  ``waiting_keys``, ``mine_keys``) so that the badge and the lists never scan every conversation.
* :class:`Conversation` — one customer thread, with a bounded :class:`History` of compact
  :class:`MessageRecord` rows.

The UI compares old and new state *by identity*: a conversation that an event did not touch is the
very same object in both states (see :func:`changed_conversations`).

Rules where the protocol leaves a choice (PROTOCOL.md 1.5, 2.5, 3) are documented on
:func:`reduce`.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, TypeVar, cast, overload

from tray_agent.core.effects import Alert, AlertKind, Effect, Handler, RequestResync
from tray_agent.core.events import (
    AgentRef,
    AssignmentAction,
    AssignmentChanged,
    Attachment,
    CommandDiscarded,
    CommandFailed,
    CommandKind,
    CommandQueued,
    CommandRetried,
    CommandSent,
    CommandSucceeded,
    Connected,
    ConnectionChanged,
    ConnectionState,
    ConversationSummary,
    ConversationUpdated,
    Event,
    FailureReason,
    HistoryPage,
    HumanRequested,
    Ignored,
    KeepaliveReceived,
    MessageReceived,
    SenderKind,
    ServerAcked,
    ServerRejected,
    WaitingChanged,
    WaitingListPage,
)
from tray_agent.core.fastinit import fast_constructor

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "REFUSED_LIMIT",
    "CommandState",
    "ConnectionInfo",
    "Conversation",
    "ConversationMap",
    "ConversationRead",
    "FocusChanged",
    "History",
    "MessageRecord",
    "OutboundCommand",
    "Refusal",
    "ResyncProgress",
    "SignedOut",
    "State",
    "Store",
    "changed_conversations",
    "reduce",
]

logger = logging.getLogger(__name__)

DEFAULT_HISTORY_LIMIT: Final = 500
"""Messages kept per conversation unless the caller says otherwise (setting ``ui.history_limit``)."""

DUPLICATE_WINDOW: Final = timedelta(seconds=2)
"""Two id-less messages with the same sender and text this close are one (Facebook retries, 2.5)."""

ECHO_TOLERANCE: Final = timedelta(minutes=2)
"""How much earlier than my reply's (estimated) send time its echo may be stamped (clock skew)."""

OUTBOUND_LIMIT: Final = 200
"""Outbound commands remembered; finished ones are forgotten first."""

IGNORED_KINDS_LIMIT: Final = 64
"""Distinct ignored-frame kinds counted; further kinds are counted under ``"other"``."""

REFUSED_LIMIT: Final = 32
"""Conversations remembered as refused by the server (:attr:`State.refused`); the oldest go first."""

# Failures that say nothing about the conversation (the answer was lost, not negative).
_TRANSIENT_FAILURES: Final = frozenset(
    {FailureReason.OFFLINE, FailureReason.TIMEOUT, FailureReason.UNCONFIRMED}
)
# Answers that say the server failed right now (HTTP 5xx), not that the conversation is not there.
_TEMPORARY_REFUSALS: Final = frozenset({FailureReason.SERVER_ERROR})

_KIND_MAX_LEN: Final = 64
# A duplicate can only sit among the newest rows: live messages arrive nearly in time order, so
# the backward scan stops at the first row clearly older than the window (or after this many).
_DUP_SCAN_ROWS: Final = 64
RECENT_ROWS: Final = _DUP_SCAN_ROWS
"""The newest rows of a History whose texts it counts (:meth:`History.recent_texts`)."""
# Texts kept in a History's recent counts, zeros included: at most what the table CPython sizes for
# RECENT_ROWS keys holds (2/3 of 128 slots), so the zeros cost no memory, only a prune now and then.
_RECENT_KEYS: Final = RECENT_ROWS + RECENT_ROWS // 3
_DUP_SCAN_SLACK: Final = timedelta(seconds=10)
_TRACKED_KINDS: Final = frozenset(
    {
        CommandKind.REPLY,
        CommandKind.TAKE_OVER,
        CommandKind.RELEASE,
        CommandKind.RESOLVE,
        CommandKind.HAND_BACK,
    }
)
# My commands after whose success the customer no longer waits for anyone (not for me either).
_LETTING_GO: Final = frozenset({CommandKind.RELEASE, CommandKind.RESOLVE, CommandKind.HAND_BACK})
_MIN_TIME: Final = datetime.min.replace(tzinfo=UTC)
_MAX_TIME: Final = datetime.max.replace(tzinfo=UTC)
_T = TypeVar("_T", "Conversation", "MessageRecord", "OutboundCommand", "ResyncProgress", "ConnectionInfo")
_D = TypeVar("_D")


# ---------------------------------------------------------------------------------------------
# State-local input events (UI intents; they never come from the wire)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FocusChanged(Event):
    """The agent opened a conversation (or closed it: None). Focusing marks it read."""

    conversation: str | None = None
    event_name: str = field(default="focus_changed", init=False, repr=False)


@dataclass(frozen=True, slots=True)
class ConversationRead(Event):
    """The agent has seen a conversation: its unread count drops to zero."""

    conversation: str = ""
    event_name: str = field(default="conversation_read", init=False, repr=False)


@dataclass(frozen=True, slots=True)
class SignedOut(Event):
    """The agent signed out: everything the app knew about the account is forgotten.

    The reducer answers with an empty state whose connection is AUTH_REQUIRED (``detail``), so
    every view empties and the tray offers "Sign in…".
    """

    detail: str = "signed out"
    event_name: str = field(default="signed_out", init=False, repr=False)


# ---------------------------------------------------------------------------------------------
# Value objects
# ---------------------------------------------------------------------------------------------


class CommandState(enum.StrEnum):
    """Where one of my commands (and the bubble of a reply) stands."""

    QUEUED = "queued"  # accepted by the network layer, not yet written
    SENT = "sent"  # written; no answer yet
    CONFIRMED = "confirmed"  # the server said yes (or echoed my reply back)
    FAILED = "failed"  # the server said no, or it timed out
    UNCONFIRMED = "unconfirmed"  # sent, then the connection dropped before any answer
    DISCARDED = "discarded"  # the agent dropped it: never sent (again)


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """The connection as the tray icon shows it.

    Attributes:
        state: the connection state machine's state.
        detail: short reason text from the network layer.
        retry_in: seconds until the next attempt, when reconnecting.
        last_synced: when we last became CONNECTED (live and resynced) or a later resync
            completed.
        user_id: my user id (dashboard Mongo id; org JWT ``sub``), "" while unknown.
        connection_count: the server's socket count for the org (org dialect only).
    """

    state: ConnectionState = ConnectionState.OFFLINE
    detail: str = ""
    retry_in: float | None = None
    last_synced: datetime | None = None
    user_id: str = ""
    connection_count: int | None = None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One chat bubble, compact (PERFORMANCE-NOTES: ~350 B rows, not full events).

    Attributes:
        sender: who wrote it.
        text: plain text ("" for an attachment-only message).
        at: when it was written; for my pending replies an estimate (the newest server time seen).
        message_id: the server's id where the dialect has one.
        attachment: a file, if any.
        sender_name: display name of the sender, if any.
        agent_id: for agent messages, the agent's id.
        command_id: set on my own replies sent from this app.
        reply_state: for my own replies, where the command stands.
        echoed: for my own replies, the server's copy (broadcast) has been seen.
        error: for failed replies, the server's words (or the failure reason).
        unsaved: for my own replies, queued without being saved on this computer (the outbox
            write failed: CommandQueued.durable False); a crash or restart would lose it.
        retried_as: for a failed reply the agent sent again, the new reply's command id.
    """

    sender: SenderKind
    text: str
    at: datetime | None = None
    message_id: str | None = None
    attachment: Attachment | None = None
    sender_name: str = ""
    agent_id: str = ""
    command_id: str | None = None
    reply_state: CommandState | None = None
    echoed: bool = False
    error: str = ""
    unsaved: bool = False
    retried_as: str = ""

    @property
    def mine(self) -> bool:
        """True for a reply I sent from this app."""
        return self.command_id is not None


class History(Sequence[MessageRecord]):
    """An immutable, bounded message list with an id index (oldest first).

    Every "modifying" method returns a new History; the old one is untouched. Appending copies
    one tuple of pointers (C speed), and the id index makes upsert-by-id O(1) on the hot path.
    """

    __slots__ = ("_ids", "_recent", "_records")

    _records: tuple[MessageRecord, ...]
    _ids: Mapping[str, None]
    _recent: dict[str, int] | None

    def __init__(self, records: Iterable[MessageRecord] = ()) -> None:
        self._records = tuple(records)
        self._ids = {r.message_id: None for r in self._records if r.message_id is not None}
        self._recent = None

    @classmethod
    def _make(
        cls, records: tuple[MessageRecord, ...], ids: Mapping[str, None], recent: dict[str, int] | None = None
    ) -> History:
        new = cls.__new__(cls)
        new._records = records
        new._ids = ids
        new._recent = recent
        return new

    @property
    def records(self) -> tuple[MessageRecord, ...]:
        """The rows as a tuple (oldest first)."""
        return self._records

    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, index: int) -> MessageRecord: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[MessageRecord, ...]: ...

    def __getitem__(self, index: int | slice) -> MessageRecord | tuple[MessageRecord, ...]:
        return self._records[index]

    def __iter__(self) -> Iterator[MessageRecord]:
        return iter(self._records)

    def __reversed__(self) -> Iterator[MessageRecord]:
        return reversed(self._records)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return self is other or self._records == other._records
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._records)

    def __repr__(self) -> str:
        return f"History({len(self._records)} messages)"

    def recent_texts(self) -> Mapping[str, int]:
        """How often each text occurs among the newest :data:`RECENT_ROWS` rows (a new dict)."""
        return {text: count for text, count in self._recent_counts().items() if count}

    def _recent_counts(self) -> dict[str, int]:
        """The counts behind :meth:`recent_texts`, which may hold texts counted 0 (read-only).

        Where a duplicate can sit (see the reducer's duplicate check): one lookup tells that no
        recent row has a text, the usual case. Counted once, then kept up to date by
        :meth:`appended` (a copy), never shared mutably. A text that leaves the newest rows is
        kept, counted 0, rather than deleted: a dict that never had a key deleted is copied
        as one block (``dict.copy``), five times faster than one with holes, and it is copied
        once per conversation per batch (bounded by :func:`_count_recent`).
        """
        recent = self._recent
        if recent is None:
            recent = {}
            for r in self._records[-RECENT_ROWS:]:
                recent[r.text] = recent.get(r.text, 0) + 1
            self._recent = recent
        return recent

    def has_id(self, message_id: str) -> bool:
        """True when a row carries this server id."""
        return message_id in self._ids

    def index_of_id(self, message_id: str) -> int:
        """Index of the row with this server id, or -1."""
        if message_id not in self._ids:
            return -1
        records = self._records
        for i in range(len(records) - 1, -1, -1):
            if records[i].message_id == message_id:
                return i
        return -1  # pragma: no cover - the index and the rows always agree

    def index_of_command(self, command_id: str) -> int:
        """Index of my reply with this command id, or -1 (newest rows are searched first)."""
        records = self._records
        for i in range(len(records) - 1, -1, -1):
            if records[i].command_id == command_id:
                return i
        return -1

    def appended(self, record: MessageRecord, limit: int) -> History:
        """A new History with ``record`` last, trimmed to the newest ``limit`` rows."""
        records = (*self._records, record)
        ids = self._ids
        if record.message_id is not None:
            ids = dict(ids)
            ids[record.message_id] = None
        recent = self._recent
        if recent is not None and limit >= RECENT_ROWS:  # trimming then leaves the newest rows be
            recent = recent.copy()
            _count_recent(recent, records)
        else:
            recent = None
        return self._trimmed(records, ids, limit, recent)

    def replaced(self, index: int, record: MessageRecord) -> History:
        """A new History with row ``index`` replaced."""
        old = self._records[index]
        records = (*self._records[:index], record, *self._records[index + 1 :])
        ids = self._ids
        if old.message_id != record.message_id:
            ids = dict(ids)
            if old.message_id is not None:
                ids.pop(old.message_id, None)
            if record.message_id is not None:
                ids[record.message_id] = None
        return History._make(records, ids)

    def removed(self, index: int) -> History:
        """A new History without row ``index``."""
        old = self._records[index]
        records = (*self._records[:index], *self._records[index + 1 :])
        ids = self._ids
        if old.message_id is not None:
            ids = dict(ids)
            ids.pop(old.message_id, None)
        return History._make(records, ids)

    def trimmed(self, limit: int) -> History:
        """This History cut to its newest ``limit`` rows (itself when already short enough)."""
        return self._trimmed(self._records, self._ids, limit, self._recent if limit >= RECENT_ROWS else None)

    @staticmethod
    def _trimmed(
        records: tuple[MessageRecord, ...], ids: Mapping[str, None], limit: int, recent: dict[str, int] | None
    ) -> History:
        excess = len(records) - limit
        if excess > 0:
            dropped = records[:excess]
            records = records[excess:]
            if any(r.message_id is not None for r in dropped):
                ids = dict(ids)
                for r in dropped:
                    if r.message_id is not None:
                        ids.pop(r.message_id, None)
        return History._make(records, ids, recent)


_EMPTY_HISTORY: Final = History()


def _count_recent(recent: dict[str, int], records: Sequence[MessageRecord]) -> None:
    """Count the newest row of ``records`` (just appended) in ``recent``.

    ``recent`` holds the text counts of the newest :data:`RECENT_ROWS` rows: the row that is no
    longer among them is uncounted.
    """
    text = records[-1].text
    recent[text] = recent.get(text, 0) + 1
    if len(records) > RECENT_ROWS:
        text = records[-RECENT_ROWS - 1].text  # the row that is no longer recent
        recent[text] -= 1  # kept at 0, not deleted (see History._recent_counts)
        if len(recent) > _RECENT_KEYS:  # mostly zeros by now: keep the counted ones only
            live = {t: count for t, count in recent.items() if count}
            recent.clear()
            recent.update(live)


class _GrowingHistory(History):
    """A History that one reducer transaction appends to in place (issue 16).

    Several messages to one conversation in a batch copy its rows once, into a list, instead of
    once per message; :meth:`_Tx.commit` turns it into a plain immutable :class:`History` (a
    tuple) before the new State is seen by anybody. Reads in between behave as History's.
    Never leaves the transaction that made it.
    """

    __slots__ = ()  # the same layout as History: commit switches the class back

    @classmethod
    def start(cls, base: History) -> _GrowingHistory:
        new = cls.__new__(cls)
        new._records = list(base._records)  # type: ignore[assignment]  # frozen again at commit
        new._ids = dict(base._ids)
        new._recent = base._recent.copy() if base._recent is not None else None
        return new

    @property
    def records(self) -> tuple[MessageRecord, ...]:
        return tuple(self._records)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return tuple(self._records[index])
        return self._records[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return self is other or tuple(self._records) == tuple(other._records)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._records))

    def append(self, record: MessageRecord, limit: int) -> None:
        """:meth:`History.appended`, in place."""
        records = cast("list[MessageRecord]", self._records)
        records.append(record)
        ids = cast("dict[str, None]", self._ids)
        if record.message_id is not None:
            ids[record.message_id] = None
        recent = self._recent
        if recent is not None and limit >= RECENT_ROWS:  # as History.appended
            _count_recent(recent, records)
        else:
            self._recent = None
        excess = len(records) - limit
        if excess == 1:  # the usual trim of a full history: one row out
            dropped = records[0].message_id
            if dropped is not None:
                ids.pop(dropped, None)
            del records[0]  # a memmove of pointers, no copy
        elif excess > 0:
            for r in records[:excess]:
                if r.message_id is not None:
                    ids.pop(r.message_id, None)
            del records[:excess]

    def freeze(self) -> None:
        """Become a plain History (at commit)."""
        self._records = tuple(self._records)
        self.__class__ = History  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Conversation:
    """One customer thread.

    Attributes:
        key: the opaque conversation key (org chat_id; dashboard ``"page/customer"``).
        customer_name: the customer's display name ("" if unknown).
        channel: org channel or dashboard page name/id.
        last_message: preview text of the newest message.
        last_message_at: when the newest message (or activity) happened.
        unread: customer messages not yet seen by the agent.
        waiting: the customer asked for a human and has not been released (dashboard ``stop``;
            org: escalated and nobody has it).
        waiting_since: when they asked.
        assigned: a human agent has the customer.
        agent: that agent, if known.
        assigned_to_me: the agent is me.
        handled_by: org ``handled_by`` (ai|human|unassigned), "" elsewhere.
        status: org chat status (open, assigned, resolved ...), "" elsewhere.
        ticket_number: org ticket number, if a ticket was created.
        ticket_status: org ticket status.
        messages: the bounded history, oldest first.
        escalation_alerted: an ESCALATION alert was raised (or deliberately not raised) for the
            current waiting episode; cleared when the customer is taken, released or resolved.
        pending_takeover: command id of my optimistic take-over, until the server answers.
        takeover_undo: assignment before the optimistic take-over, as (assigned, agent, to_me).
        released_at: when I let the customer go (release, resolve, hand back): a waiting flag
            from before then is the old episode and does not make them wait again.
        history_complete: the last history page said nothing older exists (the chat window
            offers no "Load older messages" then).
    """

    key: str
    customer_name: str = ""
    channel: str = ""
    last_message: str = ""
    last_message_at: datetime | None = None
    unread: int = 0
    waiting: bool = False
    waiting_since: datetime | None = None
    assigned: bool = False
    agent: AgentRef | None = None
    assigned_to_me: bool = False
    handled_by: str = ""
    status: str = ""
    ticket_number: str = ""
    ticket_status: str = ""
    messages: History = _EMPTY_HISTORY
    escalation_alerted: bool = False
    pending_takeover: str | None = None
    takeover_undo: tuple[bool, AgentRef | None, bool] | None = None
    released_at: datetime | None = None
    history_complete: bool = False

    @property
    def urgent(self) -> bool:
        """Waiting and nobody has them: counts in the badge."""
        return self.waiting and not self.assigned


@dataclass(frozen=True, slots=True)
class OutboundCommand:
    """One of my commands and where it stands (replies, take-overs, releases).

    Attributes:
        command_id: the client-generated id.
        kind: reply, take_over, release, resolve or hand_back.
        conversation: the conversation key.
        text: the reply text (REPLY).
        state: queued, sent, confirmed, failed, unconfirmed or discarded.
        reason: why it failed.
        error: the server's own words for a failure.
        message_id: the server id of a confirmed reply, where the dialect has one.
        retried_as: the command that sent this failed one again ("" if none).
    """

    command_id: str
    kind: CommandKind
    conversation: str = ""
    text: str = ""
    state: CommandState = CommandState.QUEUED
    reason: FailureReason | None = None
    error: str = ""
    message_id: str | None = None
    retried_as: str = ""


@dataclass(frozen=True, slots=True)
class ResyncProgress:
    """A resync in progress (pages arrive offset 0..N).

    Attributes:
        next_offset: the offset the next page must have for the pages to be contiguous.
        seen: conversations the pages (or live escalations during the resync) showed waiting.
        intact: pages were contiguous from offset 0 and all said ``complete_list``.
        held: all pages said ``complete_assignments`` (then ``listed`` holds every row's key).
        listed: every conversation the pages listed, when ``held``.
    """

    next_offset: int = 0
    seen: frozenset[str] = frozenset()
    intact: bool = True
    held: bool = False
    listed: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Refusal:
    """The server's answer to a history load of a conversation we do not know (:attr:`State.refused`).

    Attributes:
        text: the server's words (the reason's name when it gave none).
        reason: why: not found or invalid (a stale link), or a server error.
    """

    text: str
    reason: FailureReason

    @property
    def temporary(self) -> bool:
        """The server failed to load it right now (a server error): the history is asked again."""
        return self.reason in _TEMPORARY_REFUSALS


_NBUCKETS: Final = 128
_MASK: Final = _NBUCKETS - 1
_EMPTY_BUCKET: Mapping[str, Conversation] = MappingProxyType({})
_DELTA_DEPTH: Final = 32
"""Steps of a map's change log kept: comparing with a map further back scans the buckets."""


class _Delta:
    """One step of a map's change log: the keys set on the parent map (``prev``: its step).

    Every map has its own step (a map built from scratch: a root with no keys), so a map is
    recognised in another map's log by the identity of its step. The log holds keys, never
    maps, and is cut after :data:`_DELTA_DEPTH` steps: it costs a bounded amount of memory.
    """

    __slots__ = ("depth", "keys", "prev")

    def __init__(self, keys: tuple[str, ...], prev: _Delta | None) -> None:
        self.keys: tuple[str, ...] = keys
        self.prev: _Delta | None = prev
        self.depth: int = 0 if prev is None else prev.depth + 1


class ConversationMap(Mapping[str, Conversation]):
    """A persistent (immutable) map of conversation key -> Conversation.

    Keys are spread over 128 buckets; an update copies the bucket it touches and the bucket
    vector only, so the cost does not grow with every conversation ever seen, and untouched
    buckets (and conversations) are shared between old and new maps. Iteration order is not
    meaningful: sort for display.
    """

    __slots__ = ("_buckets", "_delta", "_len")

    _buckets: tuple[Mapping[str, Conversation], ...]
    _len: int
    _delta: _Delta

    def __init__(self, items: Mapping[str, Conversation] | Iterable[Conversation] = ()) -> None:
        values = items.values() if isinstance(items, Mapping) else items
        built: list[dict[str, Conversation]] = [{} for _ in range(_NBUCKETS)]
        for conv in values:
            built[hash(conv.key) & _MASK][conv.key] = conv
        self._buckets = tuple(b if b else _EMPTY_BUCKET for b in built)
        self._len = sum(len(b) for b in built)
        self._delta = _Delta((), None)

    @classmethod
    def _make(
        cls, buckets: tuple[Mapping[str, Conversation], ...], length: int, delta: _Delta
    ) -> ConversationMap:
        new = cls.__new__(cls)
        new._buckets = buckets
        new._len = length
        new._delta = delta
        return new

    def __getitem__(self, key: str) -> Conversation:
        return self._buckets[hash(key) & _MASK][key]

    @overload
    def get(self, key: str, /) -> Conversation | None: ...

    @overload
    def get(self, key: str, /, default: Conversation | _D) -> Conversation | _D: ...

    def get(self, key: str, /, default: Any = None) -> Any:
        """The conversation with this key, or ``default`` (one dict lookup, no exception)."""
        return self._buckets[hash(key) & _MASK].get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets[hash(key) & _MASK]

    def __iter__(self) -> Iterator[str]:
        for bucket in self._buckets:
            yield from bucket

    def __len__(self) -> int:
        return self._len

    def scan(self) -> Iterator[Conversation]:
        """Every conversation, in no meaningful order: a full scan without a lookup per key."""
        for bucket in self._buckets:
            yield from bucket.values()

    def __repr__(self) -> str:
        return f"ConversationMap({self._len} conversations)"

    def set_many(self, updates: Mapping[str, Conversation]) -> ConversationMap:
        """A new map with ``updates`` applied (each value's bucket copied once)."""
        if not updates:
            return self
        buckets = list(self._buckets)
        copied: dict[int, dict[str, Conversation]] = {}
        length = self._len
        for key, conv in updates.items():
            i = hash(key) & _MASK
            bucket = copied.get(i)
            if bucket is None:
                bucket = copied[i] = dict(buckets[i])
            if key not in bucket:
                length += 1
            bucket[key] = conv
        for i, bucket in copied.items():
            buckets[i] = bucket
        prev = self._delta
        delta = _Delta(tuple(updates), prev if prev.depth < _DELTA_DEPTH else None)
        return ConversationMap._make(tuple(buckets), length, delta)


def changed_conversations(old: ConversationMap, new: ConversationMap) -> frozenset[str]:
    """Keys whose Conversation object differs (by identity) between two maps.

    When ``new`` was made from ``old`` by recent updates (a few reducer transactions: the usual
    case for the bridge and the alert engine), only the keys those updates set are looked at;
    otherwise every bucket that differs is scanned (untouched buckets are the same objects and
    are skipped). Either way the answer is the same.
    """
    if old is new:
        return frozenset()
    target = old._delta
    step: _Delta | None = new._delta
    candidates: set[str] = set()
    while step is not None and step is not target:
        candidates.update(step.keys)
        step = step.prev
    if step is not target:
        return _changed_by_scan(old, new)
    old_buckets, new_buckets = old._buckets, new._buckets
    changed: list[str] = []
    for key in candidates:
        i = hash(key) & _MASK
        a, b = old_buckets[i], new_buckets[i]
        if a is not b and a.get(key) is not b.get(key):
            changed.append(key)
    return frozenset(changed)


def _changed_by_scan(old: ConversationMap, new: ConversationMap) -> frozenset[str]:
    changed: set[str] = set()
    for old_bucket, new_bucket in zip(old._buckets, new._buckets, strict=True):
        if old_bucket is new_bucket:
            continue
        for key, conv in new_bucket.items():
            if old_bucket.get(key) is not conv:
                changed.add(key)
        changed.update(key for key in old_bucket if key not in new_bucket)
    return frozenset(changed)


_EMPTY_CONVERSATIONS: Final = ConversationMap()
_EMPTY_OUTBOUND: Mapping[str, OutboundCommand] = MappingProxyType({})
_EMPTY_COUNTS: Mapping[str, int] = MappingProxyType({})
_EMPTY_REFUSED: Mapping[str, Refusal] = MappingProxyType({})


def _no_conversations() -> ConversationMap:
    return _EMPTY_CONVERSATIONS


def _no_outbound() -> Mapping[str, OutboundCommand]:
    return _EMPTY_OUTBOUND


def _no_counts() -> Mapping[str, int]:
    return _EMPTY_COUNTS


def _no_refusals() -> Mapping[str, Refusal]:
    return _EMPTY_REFUSED


@dataclass(frozen=True, slots=True, eq=False)
class State:
    """The whole agent state. Never mutated: :func:`reduce` returns a new one.

    An event that changes nothing (a keepalive, an ack, a repeat) gets this very state back.

    Attributes:
        connection: connection state, my user id.
        conversations: every known conversation by key.
        outbound: my tracked commands (replies, take-overs, releases) by command id, oldest
            first; bounded (finished ones are forgotten first).
        focused: the conversation the agent has open, if any.
        ignored: ignored inputs counted by kind (bounded).
        unread_total: sum of the conversations' unread counts.
        waiting_keys: keys of customers waiting for a human whom nobody has taken (``urgent``):
            THE waiting set. The badge, the tray menu, the inbox's Waiting tab and the policy's
            reminders all derive from it; a customer taken by anyone leaves it at once.
        mine_keys: keys of conversations assigned to me.
        initial_load_done: a resync has completed since start.
        resync: the resync in progress, if any.
        resync_requested: a RequestResync effect is outstanding (so it is not repeated).
        clock: the newest server timestamp seen: the reducer's only notion of "now".
        urgent_total: ``len(waiting_keys)`` (the badge), kept incrementally.
        refused: conversations that are not known and whose history the server refused to load
            (an unknown or malformed key: a stale link) or failed to load just now (a server
            error: :attr:`Refusal.temporary`), key -> the server's answer, oldest first; bounded
            (:data:`REFUSED_LIMIT`). The newest answer replaces the previous one; a key leaves
            it when its conversation appears. Never a row of any list: only a chat window opened
            on the key shows it (and asks again on reconnect, or soon after a temporary one).
    """

    connection: ConnectionInfo = field(default_factory=ConnectionInfo)
    conversations: ConversationMap = field(default_factory=_no_conversations)
    outbound: Mapping[str, OutboundCommand] = field(default_factory=_no_outbound)
    focused: str | None = None
    ignored: Mapping[str, int] = field(default_factory=_no_counts)
    unread_total: int = 0
    waiting_keys: frozenset[str] = frozenset()
    mine_keys: frozenset[str] = frozenset()
    initial_load_done: bool = False
    resync: ResyncProgress | None = None
    resync_requested: bool = False
    clock: datetime | None = None
    urgent_total: int = 0
    refused: Mapping[str, Refusal] = field(default_factory=_no_refusals)
    # Lazily computed views of this (immutable) state; invisible to equality and repr.
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def conversation(self, key: str) -> Conversation | None:
        """The conversation with this key, or None."""
        conv: Conversation | None = self.conversations.get(key)
        return conv

    def waiting_list(self) -> tuple[Conversation, ...]:
        """Customers waiting for a human whom nobody has taken, oldest waiting first."""
        cached: tuple[Conversation, ...] | None = self._cache.get("waiting_list")
        if cached is None:
            convs = [self.conversations[k] for k in self.waiting_keys]
            convs.sort(key=lambda c: (c.waiting_since or _MAX_TIME, c.key))
            cached = self._cache["waiting_list"] = tuple(convs)
        return cached

    def mine(self) -> tuple[Conversation, ...]:
        """Conversations assigned to me, most recent activity first."""
        cached: tuple[Conversation, ...] | None = self._cache.get("mine")
        if cached is None:
            convs = [self.conversations[k] for k in self.mine_keys]
            convs.sort(key=lambda c: (c.last_message_at or _MIN_TIME, c.key), reverse=True)
            cached = self._cache["mine"] = tuple(convs)
        return cached

    @property
    def waiting_count(self) -> int:
        """The badge: waiting customers nobody has taken yet."""
        return self.urgent_total

    @property
    def oldest_waiting_since(self) -> datetime | None:
        """When the longest-waiting untaken customer asked for a human (None if none / unknown)."""
        if "oldest" not in self._cache:
            times = [
                c.waiting_since
                for k in self.waiting_keys
                if not (c := self.conversations[k]).assigned and c.waiting_since is not None
            ]
            self._cache["oldest"] = min(times) if times else None
        oldest: datetime | None = self._cache["oldest"]
        return oldest


# ---------------------------------------------------------------------------------------------
# Reducer machinery
# ---------------------------------------------------------------------------------------------

Result = tuple[State, tuple[Effect, ...]]


class _Tx:
    """Collects one event's changes, then builds the next State once (local; never shared)."""

    __slots__ = (
        "changes",
        "conversations",
        "effects",
        "growing",
        "mine_delta",
        "pending",
        "state",
        "unread_total",
        "urgent_total",
        "waiting_delta",
    )

    def __init__(self, state: State) -> None:
        self.state = state
        self.conversations = state.conversations
        self.pending: dict[str, Conversation] = {}
        self.unread_total = state.unread_total
        self.urgent_total = state.urgent_total
        # Key -> now in the set or not, for keys whose membership changed in this transaction:
        # the frozensets are rebuilt once at commit, not once per put (a resync page puts 200).
        self.waiting_delta: dict[str, bool] = {}
        self.mine_delta: dict[str, bool] = {}
        self.effects: list[Effect] = []
        self.changes: dict[str, Any] = {}
        self.growing: list[_GrowingHistory] = []  # appended to in place; frozen at commit

    def get(self, key: str) -> Conversation | None:
        conv = self.pending.get(key)
        if conv is None:
            conv = self.conversations.get(key)
        return conv

    def put(self, new: Conversation) -> None:
        key = new.key
        old = self.get(key)
        if old is new:
            return
        self.pending[key] = new
        if old is None:
            if key in self.state.refused:  # it exists after all (creation only: not a hot path)
                self.forget_refusal(key)
            self.unread_total += new.unread
            self.urgent_total += new.urgent
            if new.urgent:
                self.waiting_delta[key] = True
            if new.assigned_to_me:
                self.mine_delta[key] = True
            return
        self.unread_total += new.unread - old.unread
        self.urgent_total += new.urgent - old.urgent
        if old.urgent != new.urgent:
            self.waiting_delta[key] = new.urgent
        if old.assigned_to_me != new.assigned_to_me:
            self.mine_delta[key] = new.assigned_to_me

    @property
    def waiting_keys(self) -> frozenset[str]:
        """The waiting keys as this transaction leaves them."""
        return _applied(self.state.waiting_keys, self.waiting_delta)

    @property
    def mine_keys(self) -> frozenset[str]:
        """The keys assigned to me as this transaction leaves them."""
        return _applied(self.state.mine_keys, self.mine_delta)

    def alert(self, kind: AlertKind, conv: Conversation, text: str) -> None:
        self.effects.append(
            _new_alert(
                kind,
                conv.key,
                conv.customer_name,
                conv.channel,
                text,
                conv.waiting_since if conv.waiting else None,
                _handler(conv),
            )
        )

    def forget_refusal(self, key: str) -> None:
        """``key`` is no longer a conversation the server refused to load."""
        refused: Mapping[str, Refusal] = self.changes.get("refused", self.state.refused)
        if key in refused:
            new = dict(refused)
            del new[key]
            self.changes["refused"] = MappingProxyType(new) if new else _EMPTY_REFUSED

    def request_resync(self, why: str) -> None:
        # One outstanding request at a time: a burst of unknown customers must not become a
        # burst of resyncs. Cleared when the next resync starts (a page at offset 0).
        if self.state.resync_requested or self.changes.get("resync_requested"):
            return
        self.changes["resync_requested"] = True
        self.effects.append(RequestResync(why=why))

    def touch_clock(self, at: datetime | None) -> datetime | None:
        """Advance the reducer's clock to ``at`` if newer; return the effective clock."""
        clock: datetime | None = self.changes.get("clock", self.state.clock)
        if at is not None and (clock is None or at > clock):
            self.changes["clock"] = at
            return at
        return clock

    def mark_waiting_seen(self, key: str) -> None:
        # A customer who starts waiting while a resync runs may be missing from pages fetched
        # before: never let the end of that resync drop them.
        resync: ResyncProgress | None = self.changes.get("resync", self.state.resync)
        if resync is not None and key not in resync.seen:
            self.changes["resync"] = _replace(resync, seen=resync.seen | {key})

    def appended(self, history: History, record: MessageRecord, limit: int) -> History:
        """``history.appended(record, limit)``, copying the rows once per transaction.

        The first append in this transaction copies ``history`` into a growing one; later
        appends to it (more messages of the same conversation in a batch) extend it in place.
        """
        if type(history) is _GrowingHistory:  # made by this transaction: no other can see it
            history.append(record, limit)
            return history
        grown = _GrowingHistory.start(history)
        grown.append(record, limit)
        self.growing.append(grown)
        return grown

    def grow(self, conv: Conversation, messages: History, unread: int, last: Mapping[str, Any]) -> None:
        """Update a conversation made by THIS transaction in place, then put it (issue 16).

        Only for one nobody outside the transaction can hold (not the state's own): a batch of
        messages to one conversation then builds one Conversation, not one per message.
        """
        if self.pending.get(conv.key) is conv:  # put() would see no change: count it here
            self.unread_total += unread - conv.unread
        setattr_ = object.__setattr__  # frozen for everybody else
        setattr_(conv, "messages", messages)
        setattr_(conv, "unread", unread)
        for name, value in last.items():
            setattr_(conv, name, value)
        self.put(conv)

    def commit(self) -> Result:
        for grown in self.growing:
            grown.freeze()
        self.growing.clear()
        state = self.state
        changes = self.changes
        if not changes and not self.pending and not self.effects:
            return state, ()  # nothing changed: the same state, no snapshot, no notification
        if self.pending:
            changes["conversations"] = self.conversations.set_many(self.pending)
            if self.unread_total != state.unread_total:
                changes["unread_total"] = self.unread_total
            if self.urgent_total != state.urgent_total:
                changes["urgent_total"] = self.urgent_total
            if self.waiting_delta:
                changes["waiting_keys"] = self.waiting_keys
            if self.mine_delta:
                changes["mine_keys"] = self.mine_keys
        get = changes.get
        # Built field by field (not dataclasses.replace): this runs once per event on the hot path.
        new = State(
            get("connection", state.connection),
            get("conversations", state.conversations),
            get("outbound", state.outbound),
            get("focused", state.focused),
            get("ignored", state.ignored),
            get("unread_total", state.unread_total),
            get("waiting_keys", state.waiting_keys),
            get("mine_keys", state.mine_keys),
            get("initial_load_done", state.initial_load_done),
            get("resync", state.resync),
            get("resync_requested", state.resync_requested),
            get("clock", state.clock),
            get("urgent_total", state.urgent_total),
            get("refused", state.refused),
        )
        return new, tuple(self.effects)


def _applied(keys: frozenset[str], delta: Mapping[str, bool]) -> frozenset[str]:
    """``keys`` with ``delta`` applied (key -> member or not); ``keys`` itself if nothing changes."""
    added = [k for k, member in delta.items() if member and k not in keys]
    removed = [k for k, member in delta.items() if not member and k in keys]
    if removed:
        keys = keys.difference(removed)
    if added:
        keys = keys.union(added)
    return keys


def _utc(value: datetime | None) -> datetime | None:
    # Events should carry aware UTC times; a naive one (a codec slip) would make comparisons
    # raise, so it is read as UTC (PROTOCOL.md O3).
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b


_FIELD_SPECS: dict[type, tuple[Callable[[Any], tuple[Any, ...]], dict[str, int], Callable[..., Any]]] = {}


def _replace(obj: _T, **changes: Any) -> _T:
    """``dataclasses.replace`` for this module's slotted dataclasses, at a fraction of the cost.

    All init field values are read in one C call (``operator.attrgetter``) and passed
    positionally to the class's :func:`~tray_agent.core.fastinit.fast_constructor`, so it needs
    classes without ``kw_only`` fields, ``InitVar`` or ``default_factory`` (true of all of
    them); an unknown field name raises ``KeyError``. It runs on every event.
    """
    getter, index, build = _spec(type(obj))
    values = list(getter(obj))
    for name, value in changes.items():
        values[index[name]] = value
    built: _T = build(*values)
    return built


def _spec(cls: type) -> tuple[Callable[[Any], tuple[Any, ...]], dict[str, int], Callable[..., Any]]:
    """(read every init field, field name -> position, fast constructor) of a dataclass."""
    spec = _FIELD_SPECS.get(cls)
    if spec is None:
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        spec = _FIELD_SPECS[cls] = (
            operator.attrgetter(*names),
            {n: i for i, n in enumerate(names)},
            fast_constructor(cls),
        )
    return spec


_CONV_FIELDS: Final = _spec(Conversation)
_CONV_MESSAGES: Final = _CONV_FIELDS[1]["messages"]
_CONV_UNREAD: Final = _CONV_FIELDS[1]["unread"]
_CONV_LAST: Final = _CONV_FIELDS[1]["last_message"]
_CONV_LAST_AT: Final = _CONV_FIELDS[1]["last_message_at"]


def _with_message(conv: Conversation, messages: History, unread: int, record: MessageRecord) -> Conversation:
    """``_replace(conv, messages=messages, unread=unread, **_with_last(conv, record))``, cheaper."""
    getter, _index, build = _CONV_FIELDS
    values = list(getter(conv))
    values[_CONV_MESSAGES] = messages
    values[_CONV_UNREAD] = unread
    last_at, r_at = conv.last_message_at, record.at
    if last_at is None or r_at is None or r_at >= last_at:  # as _with_last
        values[_CONV_LAST] = _preview(record)
        values[_CONV_LAST_AT] = _later(last_at, r_at)
    new: Conversation = build(*values)
    return new


def _update(obj: _T, **changes: Any) -> _T:
    """:func:`_replace` that returns ``obj`` itself when nothing actually changes.

    Keeping the identity of unchanged objects is what lets the UI skip them.
    """
    for name, value in changes.items():
        if getattr(obj, name) != value:
            return _replace(obj, **changes)
    return obj


def _describe(conv: Conversation, customer_name: str, channel: str) -> Conversation:
    """Fill in the customer's name and channel when the event names them."""
    return _update(conv, customer_name=customer_name or conv.customer_name, channel=channel or conv.channel)


def _handler(conv: Conversation) -> Handler:
    """Who handles the customer, for the policy (messages of AI-handled ones are quiet)."""
    if conv.assigned_to_me:
        return Handler.ME
    if conv.assigned:
        return Handler.COLLEAGUE
    if conv.waiting or conv.handled_by in ("human", "unassigned"):
        return Handler.NOBODY
    return Handler.AI  # dashboard: the bot answers until stopped; org: handled_by "ai"


def _known_before(conv: Conversation, at: datetime | None) -> bool:
    """A customer message older than what we already had of the conversation: no news.

    A replay or a backfill after a sign-in, reconnect or resync raises no alert. Compared with
    the newest customer message in the history, or, with no customer message there, with the
    conversation's last activity as a resync row told it.
    """
    if at is None:
        return False
    for record in reversed(conv.messages):
        if record.sender is SenderKind.CUSTOMER and record.at is not None:
            return at < record.at
    return not conv.messages and conv.last_message_at is not None and at < conv.last_message_at


def _is_me(user_id: str, agent_id: str) -> bool:
    return bool(user_id) and agent_id == user_id


def _merge_agent(known: AgentRef | None, new: AgentRef | None) -> AgentRef | None:
    """``new``, with what is already known of the same agent filling its blanks.

    Partial answers (the org ``assign`` answer is not enriched: names are null) must never
    overwrite a known name with "" (issue 15).
    """
    if new is None or known is None:
        return new
    if new.agent_id and new.agent_id != known.agent_id:
        return new  # another agent (or one we cannot tell is the same)
    merged = AgentRef(
        agent_id=new.agent_id or known.agent_id,
        name=new.name or known.name,
        email=new.email or known.email,
    )
    return merged if merged != new else new


def _same_agent(known: AgentRef | None, new: AgentRef | None) -> bool:
    """Both name the same agent id (so "is it me?" has not changed)."""
    return known is not None and new is not None and bool(new.agent_id) and new.agent_id == known.agent_id


def _norm(text: str) -> str:
    return text.strip()


def _same_attachment(a: Attachment | None, b: Attachment | None) -> bool:
    return (a.url if a is not None else "") == (b.url if b is not None else "")


def _close(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= DUPLICATE_WINDOW


def _preview(record: MessageRecord) -> str:
    if record.text:
        return record.text
    if record.attachment is not None:
        return record.attachment.name or record.attachment.kind or record.attachment.url
    return ""


def _with_last(conv: Conversation, record: MessageRecord) -> dict[str, Any]:
    """Changes making ``record`` the conversation's newest message, unless it is older."""
    if conv.last_message_at is not None and record.at is not None and record.at < conv.last_message_at:
        return {}
    return {"last_message": _preview(record), "last_message_at": _later(conv.last_message_at, record.at)}


_new_record: Final = fast_constructor(MessageRecord)  # MessageRecord(...): once per message
_new_alert: Final = fast_constructor(Alert)


def _record_of(event: MessageReceived, at: datetime | None) -> MessageRecord:
    record: MessageRecord = _new_record(
        event.sender,
        event.text,
        at,
        event.message_id or None,
        event.attachment,
        event.sender_name,
        event.agent_id,
    )
    return record


def _count_ignored(tx: _Tx, kind: str) -> None:
    kind = kind[:_KIND_MAX_LEN] or "unknown"
    counts: Mapping[str, int] = tx.changes.get("ignored", tx.state.ignored)
    if kind not in counts and len(counts) >= IGNORED_KINDS_LIMIT:
        kind = "other"  # the dict stays bounded whatever a hostile server sends
    new = dict(counts)
    new[kind] = new.get(kind, 0) + 1
    tx.changes["ignored"] = MappingProxyType(new)


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


def _find_recent_duplicate(history: History, record: MessageRecord) -> int:
    """Index of an id-less duplicate of ``record`` among the newest rows, or -1."""
    # Hot path (every id-less message): cheapest tests first; retries repeat the text exactly.
    text = record.text
    if not history._recent_counts().get(text):
        return -1  # no recent row with this text at all (one lookup): the usual case
    records = history.records
    at = record.at
    floor = at - _DUP_SCAN_SLACK if at is not None else None
    stop = max(-1, len(records) - 1 - _DUP_SCAN_ROWS)
    for i in range(len(records) - 1, stop, -1):
        r = records[i]
        r_at = r.at
        if floor is not None and r_at is not None and r_at < floor:
            break
        if (
            r.text == text
            and r.sender is record.sender
            and r.agent_id == record.agent_id
            and _close(r_at, at)
            and _same_attachment(r.attachment, record.attachment)
        ):
            return i
    return -1


def _find_own_reply(history: History, record: MessageRecord) -> int:
    """Index of my reply that this agent message (from me) echoes, or -1.

    Preference: the newest reply still waiting for its echo; else a reply already echoed at
    the same time (a replayed echo); else a failed one (a timed-out reply that did arrive).
    """
    text = _norm(record.text)
    replay = failed = -1
    records = history.records
    for i in range(len(records) - 1, -1, -1):
        r = records[i]
        if r.command_id is None or _norm(r.text) != text:
            continue
        if r.message_id is not None and record.message_id is not None and r.message_id != record.message_id:
            continue
        if r.echoed:
            if replay < 0 and _close(r.at, record.at) and _same_attachment(r.attachment, record.attachment):
                replay = i
            continue
        if r.at is not None and record.at is not None and record.at < r.at - ECHO_TOLERANCE:
            continue  # stamped before I even queued it: somebody else's identical text
        if r.reply_state is CommandState.FAILED:
            if failed < 0:
                failed = i
            continue
        return i
    return replay if replay >= 0 else failed


def _confirm_outbound(tx: _Tx, command_id: str, message_id: str | None) -> None:
    outbound: Mapping[str, OutboundCommand] = tx.changes.get("outbound", tx.state.outbound)
    cmd = outbound.get(command_id)
    if cmd is None:
        return
    updated = _replace(
        cmd, state=CommandState.CONFIRMED, reason=None, error="", message_id=message_id or cmd.message_id
    )
    if updated != cmd:
        new = dict(outbound)
        new[command_id] = updated
        tx.changes["outbound"] = MappingProxyType(new)


def _on_message(state: State, event: MessageReceived, limit: int) -> Result:
    tx = _Tx(state)
    _message_into(tx, event, limit)
    return tx.commit()


def reduce_messages(
    state: State, events: Iterable[MessageReceived], *, history_limit: int = DEFAULT_HISTORY_LIMIT
) -> Result:
    """Fold a run of messages in ONE transaction: one new State for the whole run.

    The same state and effects (in order) as :func:`reduce` of each message in turn, without a
    snapshot per message: what a burst of frames costs (issue 16). Pure, as :func:`reduce`.
    """
    tx = _Tx(state)
    limit = max(1, history_limit)
    for event in events:
        _message_into(tx, event, limit)
    return tx.commit()


def _message_into(tx: _Tx, event: MessageReceived, limit: int) -> None:
    # A message never changes the connection or the focus: tx.state's are current in a run.
    # Hot path (every message of a burst): helpers are inlined where the common case is cheap.
    state = tx.state
    key = event.conversation
    if not key:
        _count_ignored(tx, "message_without_conversation")
        return
    at = event.sent_at
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # as _utc
    clock = tx.changes.get("clock", state.clock)  # as tx.touch_clock(at)
    if at is not None and (clock is None or at > clock):
        tx.changes["clock"] = clock = at
    conv = tx.pending.get(key)
    stored: Conversation | None = None  # the state's own conversation, when looked up already
    if conv is None:
        conv = stored = tx.conversations.get(key)
        if conv is None:
            conv = Conversation(key=key)
    name, channel = event.customer_name, event.channel
    if (name and name != conv.customer_name) or (channel and channel != conv.channel):
        conv = _describe(conv, name, channel)  # (a no-op otherwise)
    history = conv.messages
    record: MessageRecord = _new_record(  # as _record_of
        event.sender,
        event.text,
        at if at is not None else clock,
        event.message_id or None,
        event.attachment,
        event.sender_name,
        event.agent_id,
    )
    empty = record.attachment is None and not record.text.strip()

    # 1. Same server id: the same message again (my REST reply's echo, a WhatsApp split event
    #    merged by the router: PROTOCOL.md O6). Upsert, keeping what the first copy had.
    if record.message_id is not None:
        idx = history.index_of_id(record.message_id)
        if idx >= 0:
            first = history[idx]
            merged = _update(
                first,
                text=record.text or first.text,
                attachment=record.attachment or first.attachment,
                sender_name=record.sender_name or first.sender_name,
                agent_id=record.agent_id or first.agent_id,
                at=record.at if first.mine and record.at is not None else first.at or record.at,
                echoed=first.echoed or first.mine,
            )
            if merged is not first:
                conv = _replace(conv, messages=history.replaced(idx, merged))
            tx.put(conv)
            return

    # 2. The echo of my own reply (dashboard: no ids, PROTOCOL.md 2.5/G7; org when the ack has
    #    not come yet). It may arrive before or after the ack: either way, one bubble.
    if event.sender is SenderKind.AGENT and not empty and _is_me(state.connection.user_id, event.agent_id):
        idx = _find_own_reply(history, record)
        if idx >= 0:
            own = history[idx]
            folded = _update(
                own,
                at=record.at or own.at,
                message_id=record.message_id or own.message_id,
                attachment=record.attachment or own.attachment,
                echoed=True,
                reply_state=CommandState.CONFIRMED,  # the server's copy proves delivery
                error="",
            )
            if folded is not own:
                # The server's time of my reply: it is the newest message unless another came after.
                conv = _replace(conv, messages=history.replaced(idx, folded), **_with_last(conv, folded))
                assert own.command_id is not None
                _confirm_outbound(tx, own.command_id, record.message_id)
            tx.put(conv)
            return

    # 3. Id-less duplicates (Facebook webhook retries, replays): same sender and text within
    #    DUPLICATE_WINDOW is one message.
    recent = history._recent
    if (
        record.message_id is None
        and not empty
        and (recent is None or recent.get(record.text))  # no recent row with the text: no duplicate
        and _find_recent_duplicate(history, record) >= 0
    ):
        tx.put(conv)
        return

    # 4. Human mode announced by a customer message we did not know was waiting: we missed the
    #    escalation (dropped broadcast, G10). Treat it as the escalation, and ask for the truth.
    requires_human = event.requires_human and event.sender is SenderKind.CUSTOMER and not conv.waiting
    escalated = False
    if requires_human:
        raise_alert = not conv.escalation_alerted and not conv.assigned
        conv = _replace(
            conv,
            waiting=True,
            waiting_since=record.at,
            escalation_alerted=conv.escalation_alerted or raise_alert,
        )
        tx.mark_waiting_seen(key)
        if raise_alert:
            tx.alert(AlertKind.ESCALATION, conv, event.text)
            escalated = True  # one escalation = one alert: no MESSAGE alert for the same words
        tx.request_resync("message from a customer in human mode that was not known to be waiting")

    # 5. Empty text and no attachment (G8: attachment-only dashboard message, cleared bot
    #    reply): no bubble, no alert, but it is activity in the conversation.
    if empty:
        if record.at is not None and (conv.last_message_at is None or record.at > conv.last_message_at):
            conv = _replace(conv, last_message_at=record.at)
        tx.put(conv)
        return

    customer = event.sender is SenderKind.CUSTOMER
    unread = conv.unread + 1 if customer and state.focused != key else conv.unread
    # After a sign-in or reconnect, replayed or backfilled messages older than what we already
    # had are not news: they count as unread, but do not alert again.
    news = customer and not escalated
    r_at = record.at
    if news and r_at is not None:
        rows = history._records
        newest = rows[-1] if rows else None
        if newest is not None and newest.sender is SenderKind.CUSTOMER and newest.at is not None:
            news = not r_at < newest.at  # as _known_before, which stops at this row
        else:
            news = not _known_before(conv, r_at)
    if type(history) is _GrowingHistory:
        # Grown by an earlier message of this batch, so the conversation was made by this
        # transaction too: both updated in place (tx.appended + tx.grow, inlined).
        history.append(record, limit)
        last_at, r_at = conv.last_message_at, record.at
        setattr_ = object.__setattr__  # frozen for everybody else
        if tx.pending.get(key) is conv:
            tx.unread_total += unread - conv.unread
            setattr_(conv, "unread", unread)
            if last_at is None or r_at is None or r_at >= last_at:  # as _with_last
                setattr_(conv, "last_message", _preview(record))
                setattr_(conv, "last_message_at", _later(last_at, r_at))
        else:
            tx.grow(conv, history, unread, _with_last(conv, record))
    else:
        grown = tx.appended(history, record, limit)
        if stored is None:
            stored = tx.conversations.get(key)
        if conv is stored:  # the state's own conversation: a new copy
            new = _with_message(conv, grown, unread, record)
            if key in tx.pending:
                tx.put(new)
            else:  # as tx.put: only the unread count differs (waiting, assigned are the same)
                tx.pending[key] = new
                tx.unread_total += unread - conv.unread
            conv = new
        else:  # made by this transaction (an earlier message of the batch): updated in place
            tx.grow(conv, grown, unread, _with_last(conv, record))
    if news:
        tx.alert(AlertKind.MESSAGE, conv, _preview(record))
    return


def _merge_history(
    history: History, page: Sequence[MessageReceived], conversation: str, limit: int
) -> tuple[History, str]:
    """Merge older messages into ``history``; return it and the newest customer name seen."""
    existing = history.records
    ids = {r.message_id for r in existing if r.message_id is not None}
    fuzzy: dict[tuple[SenderKind, str, str, str], list[MessageRecord]] = {}
    for r in existing:
        fuzzy.setdefault((r.sender, _norm(r.text), r.agent_id, _attach_url(r.attachment)), []).append(r)
    added: list[MessageRecord] = []
    name = ""
    for message in page:
        if message.conversation and message.conversation != conversation:
            continue  # a codec slip: never merge another customer's messages here
        record = _record_of(message, _utc(message.sent_at))
        if not record.text.strip() and record.attachment is None:
            continue
        if message.sender is SenderKind.CUSTOMER and message.customer_name:
            name = message.customer_name
        if record.message_id is not None and record.message_id in ids:
            continue
        fkey = (record.sender, _norm(record.text), record.agent_id, _attach_url(record.attachment))
        twins = fuzzy.setdefault(fkey, [])
        if any(
            _close(t.at, record.at)
            and (t.message_id is None or record.message_id is None or t.message_id == record.message_id)
            for t in twins
        ):
            continue
        twins.append(record)
        if record.message_id is not None:
            ids.add(record.message_id)
        added.append(record)
    if not added:
        return history, name
    # Stable merge by time; rows without a time sort with the row before them.
    keyed: list[tuple[datetime, int, int, MessageRecord]] = []
    for rank, rows in enumerate((added, existing)):
        carry = _MIN_TIME
        for i, r in enumerate(rows):
            if r.at is not None:
                carry = r.at
            keyed.append((carry, rank, i, r))
    keyed.sort(key=lambda item: (item[0], item[1], item[2]))
    merged = History(item[3] for item in keyed[-limit:])
    return merged, name


def _attach_url(attachment: Attachment | None) -> str:
    return attachment.url if attachment is not None else ""


def _on_history(state: State, event: HistoryPage, limit: int) -> Result:
    tx = _Tx(state)
    key = event.conversation
    if not key:
        _count_ignored(tx, "history_without_conversation")
        return tx.commit()
    old = tx.get(key)
    conv = old if old is not None else Conversation(key=key)
    history, name = _merge_history(conv.messages, event.messages, key, limit)
    if history is not conv.messages:
        changes: dict[str, Any] = {"messages": history}
        if history:
            changes.update(_with_last(conv, history[-1]))
        conv = _replace(conv, **changes)
    if name and not conv.customer_name:
        conv = _replace(conv, customer_name=name)
    conv = _update(conv, history_complete=not event.has_more)
    tx.put(conv)
    return tx.commit()


# ---------------------------------------------------------------------------------------------
# Waiting, assignment, conversation updates, resync
# ---------------------------------------------------------------------------------------------


def _apply_summary_description(conv: Conversation, summary: ConversationSummary | None) -> Conversation:
    """Descriptive fields of a summary carried by a live event (never assignment truth)."""
    if summary is None:
        return conv
    conv = _describe(conv, summary.customer_name, summary.channel)
    at = _utc(summary.last_message_at)
    if (
        summary.last_message
        and at is not None
        and (conv.last_message_at is None or at > conv.last_message_at)
    ):
        conv = _replace(conv, last_message=summary.last_message, last_message_at=at)
    return conv


def _on_human_requested(state: State, event: HumanRequested, limit: int) -> Result:
    tx = _Tx(state)
    key = event.conversation
    if not key:
        _count_ignored(tx, "human_requested_without_conversation")
        return tx.commit()
    at = _utc(event.at)
    clock = tx.touch_clock(at)
    old = tx.get(key)
    conv = _describe(old if old is not None else Conversation(key=key), event.customer_name, "")
    if _before_release(conv, at):
        tx.put(conv)
        return tx.commit()  # the episode I let go of: not a new request for a human
    since = conv.waiting_since if conv.waiting else (at or clock)
    # One alert per escalation: `agent_requested` then `customer_stop_status_changed{stop}` (and
    # the org codec's HumanRequested on every unanswered customer message) are one episode.
    raise_alert = not conv.escalation_alerted
    conv = _update(conv, waiting=True, waiting_since=since, escalation_alerted=True)
    tx.put(conv)
    tx.mark_waiting_seen(key)
    if raise_alert:
        tx.alert(AlertKind.ESCALATION, conv, event.text or _last_customer_text(conv))
    return tx.commit()


def _before_release(conv: Conversation, since: datetime | None) -> bool:
    """A waiting signal from ``since`` belongs to the episode I let go of (release, resolve, hand back).

    Unknown times count as new: a real new request for a human must never be lost.
    """
    released = conv.released_at
    return released is not None and not conv.waiting and since is not None and since <= released


def _last_customer_text(conv: Conversation) -> str:
    """The customer's latest words (for an escalation inferred from someone else's message)."""
    for record in reversed(conv.messages):
        if record.sender is SenderKind.CUSTOMER and record.text:
            return record.text
    return ""


def _on_waiting_changed(state: State, event: WaitingChanged, limit: int) -> Result:
    tx = _Tx(state)
    key = event.conversation
    if not key:
        _count_ignored(tx, "waiting_changed_without_conversation")
        return tx.commit()
    at = _utc(event.at)
    clock = tx.touch_clock(at)
    old = tx.get(key)
    if old is None and not event.waiting:
        return tx.commit()  # an unknown customer stopped waiting: nothing to show
    conv = _apply_summary_description(old if old is not None else Conversation(key=key), event.customer)
    if event.waiting and _before_release(
        conv, (_utc(event.customer.waiting_since) if event.customer is not None else None) or at
    ):
        tx.put(conv)
        return tx.commit()  # the episode I let go of (a late or replayed frame): not waiting again
    if event.waiting:
        summary_since = _utc(event.customer.waiting_since) if event.customer is not None else None
        since = conv.waiting_since if conv.waiting else (summary_since or at or clock)
        raise_alert = not conv.waiting and not conv.escalation_alerted and not conv.assigned
        conv = _update(
            conv, waiting=True, waiting_since=since, escalation_alerted=conv.escalation_alerted or raise_alert
        )
        tx.mark_waiting_seen(key)
        if raise_alert:
            text = event.customer.last_message if event.customer is not None else ""
            tx.alert(AlertKind.ESCALATION, conv, text)
    else:
        conv = _update(conv, waiting=False, waiting_since=None, escalation_alerted=False)
    tx.put(conv)
    return tx.commit()


def _on_assignment(state: State, event: AssignmentChanged, limit: int) -> Result:
    tx = _Tx(state)
    key = event.conversation
    if not key:
        _count_ignored(tx, "assignment_without_conversation")
        return tx.commit()
    tx.touch_clock(_utc(event.at))
    old = tx.get(key)
    assigned = event.action is AssignmentAction.ASSIGNED
    if old is None and not assigned:
        return tx.commit()  # an unknown customer was released: nothing to show
    conv = _apply_summary_description(old if old is not None else Conversation(key=key), event.customer)
    if assigned:
        known = conv.agent if conv.assigned else None
        named = event.agent or (event.customer.agent if event.customer is not None else None)
        agent = _merge_agent(known, named)
        me = state.connection.user_id
        # No agent id and no is_me (dashboard customer_assignment_updated): it says nothing about
        # who, so what the store knows stands (a known "mine", a pending take-over).
        unsaid = (
            event.is_me is None
            and (event.customer is None or event.customer.assigned_to_me is None)
            and (named is None or not named.agent_id)
        )
        if event.is_me is not None:
            to_me = event.is_me
        elif event.customer is not None and event.customer.assigned_to_me is not None:
            to_me = event.customer.assigned_to_me
        elif unsaid or _same_agent(known, agent):
            to_me = conv.assigned_to_me  # the same assignee again, or unsaid: nothing new about "me"
        else:
            to_me = agent is not None and _is_me(me, agent.agent_id)
        if unsaid and agent is None:
            agent = conv.agent
        if agent is None and to_me and me:
            agent = AgentRef(agent_id=me)
        # Taken: their "waiting for someone" urgency ends and they leave the waiting set at once
        # (issue 14); a later request for a human is a new escalation.
        conv = _update(
            conv,
            assigned=True,
            agent=agent,
            assigned_to_me=to_me,
            escalation_alerted=False,
            pending_takeover=conv.pending_takeover if unsaid else None,
            takeover_undo=conv.takeover_undo if unsaid else None,
        )
        if old is None and event.customer is None:
            tx.request_resync("assignment of an unknown customer")
    else:
        conv = _update(
            conv, assigned=False, agent=None, assigned_to_me=False, pending_takeover=None, takeover_undo=None
        )
    tx.put(conv)
    return tx.commit()


def _field_str(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


_CLOSED_STATUSES: Final = frozenset({"resolved", "closed"})
_LIVE_STATES: Final = frozenset(
    {ConnectionState.RESYNCING, ConnectionState.CONNECTED, ConnectionState.LIMITED}
)


def _on_conversation_updated(state: State, event: ConversationUpdated, limit: int) -> Result:
    tx = _Tx(state)
    key = event.conversation
    if not key:
        _count_ignored(tx, "conversation_update_without_conversation")
        return tx.commit()
    tx.touch_clock(_utc(event.at))
    old = tx.get(key)
    kind = event.update_type
    if old is None and kind != "chat_created":
        return tx.commit()  # tickets of chats we never saw: nothing to attach them to
    conv = old if old is not None else Conversation(key=key)
    fields = event.fields if isinstance(event.fields, Mapping) else {}
    status = _field_str(fields, "status")
    if kind.startswith("ticket_"):
        # A ticket's status is not the chat's status: keep them apart.
        conv = _update(
            conv,
            ticket_number=_field_str(fields, "ticket_number") or conv.ticket_number,
            ticket_status=status or conv.ticket_status,
        )
    else:
        if kind == "chat_resolved" and not status:
            status = "resolved"
        conv = _describe(conv, _field_str(fields, "customer_name"), _field_str(fields, "channel"))
        conv = _update(
            conv,
            status=status or conv.status,
            handled_by=_field_str(fields, "handled_by") or conv.handled_by,
        )
        if kind == "chat_resolved" or status in _CLOSED_STATUSES:
            conv = _update(conv, waiting=False, waiting_since=None, escalation_alerted=False)
    tx.put(conv)
    return tx.commit()


def _apply_summary(
    conv: Conversation,
    summary: ConversationSummary,
    me: str,
    clock: datetime | None,
    *,
    changed_live: bool = False,
) -> Conversation:
    """Server truth from a resync row; local history and unread count are kept.

    ``changed_live``: a live event changed the conversation after the row was read, so its
    waiting, assignment and status are older than the store's and stay unapplied.
    """
    conv = _describe(conv, summary.customer_name, summary.channel)
    changes: dict[str, Any] = {}
    at = _utc(summary.last_message_at)
    # Strictly newer only: at the same time, mine stands (a dashboard row's text is the customer's
    # last message, stamped with their last_seen, even after my reply).
    if summary.last_message and (
        conv.last_message_at is None
        or (
            at is not None
            and (at > conv.last_message_at or (at == conv.last_message_at and not conv.last_message))
        )
    ):
        changes["last_message"] = summary.last_message
    if at is not None:
        changes["last_message_at"] = _later(conv.last_message_at, at)
    if changed_live:
        return _update(conv, **changes)
    waiting = summary.waiting and summary.status not in _CLOSED_STATUSES
    if waiting and _before_release(conv, _utc(summary.waiting_since)):
        waiting = False  # the episode I let go of, still in a list fetched before the server knew
    if waiting:
        since = _utc(summary.waiting_since) or (conv.waiting_since if conv.waiting else None) or clock
        # Untaken: this episode is known (alerted now or summarised on first load). Taken: it is
        # handled, so a later request for a human is a new escalation.
        changes.update(waiting=True, waiting_since=since, escalation_alerted=not summary.assigned)
    else:
        changes.update(waiting=False, waiting_since=None, escalation_alerted=False)
    known = conv.agent if conv.assigned else None
    agent = _merge_agent(known, summary.agent) if summary.assigned else None
    if summary.assigned_to_me is not None:
        to_me = summary.assigned and summary.assigned_to_me
    elif _same_agent(known, agent):
        to_me = conv.assigned_to_me  # a row that does not say (not enriched): keep what is known
    else:
        to_me = agent is not None and _is_me(me, agent.agent_id)
    changes.update(assigned=summary.assigned, agent=agent, assigned_to_me=to_me)
    if conv.pending_takeover is None or summary.assigned:
        # Server truth wins over my optimistic take-over, except a stale "unassigned" row that
        # was fetched before my take-over reached the server.
        changes.update(pending_takeover=None, takeover_undo=None)
    else:
        changes.update(assigned=conv.assigned, agent=conv.agent, assigned_to_me=conv.assigned_to_me)
    if summary.handled_by:
        changes["handled_by"] = summary.handled_by
    if summary.status:
        changes["status"] = summary.status
    return _update(conv, **changes)


def _on_waiting_list(state: State, event: WaitingListPage, limit: int) -> Result:
    tx = _Tx(state)
    me = state.connection.user_id
    clock = state.clock
    first_load = not state.initial_load_done
    if event.offset == 0:
        armed = (
            state.resync.seen if state.resync is not None and state.resync.next_offset == 0 else frozenset()
        )
        progress = ResyncProgress(seen=armed, intact=event.complete_list, held=event.complete_assignments)
        tx.changes["resync_requested"] = False
    elif state.resync is not None and event.offset == state.resync.next_offset:
        progress = state.resync
        if not event.complete_list:
            progress = _replace(progress, intact=False)
        if not event.complete_assignments and progress.held:
            progress = _replace(progress, held=False)
    else:
        # We missed the start or a page: merge what we got, but drop nobody at the end.
        progress = ResyncProgress(intact=False)
    seen = set(progress.seen)
    listed = set(progress.listed) if progress.held else set()
    for summary in event.customers:
        key = summary.conversation
        if not key:
            continue
        if progress.held:
            listed.add(key)
        old = tx.get(key)
        conv = _apply_summary(
            old if old is not None else Conversation(key=key),
            summary,
            me,
            clock,
            changed_live=old is not None and key in event.changed_live,
        )
        if conv.waiting:
            seen.add(key)
            newly = old is None or not old.waiting
            if newly and not first_load and not conv.assigned:
                # Asked for a human while we were away (or the broadcast was lost): alert.
                tx.alert(AlertKind.ESCALATION, conv, summary.last_message)
        tx.put(conv)
    for key in event.changed_live:
        # Changed after this page was read: what the store holds is newer than the page, listed
        # on it or not, so the end of the resync keeps it.
        if progress.held:
            listed.add(key)
        live = tx.get(key)
        if live is not None and live.waiting:
            seen.add(key)
    next_offset = event.offset + len(event.customers)
    if event.has_more:
        tx.changes["resync"] = ResyncProgress(
            next_offset=next_offset,
            seen=frozenset(seen),
            intact=progress.intact,
            held=progress.held,
            listed=frozenset(listed),
        )
        return tx.commit()
    # Last page: customers still waiting here but absent from a complete, contiguous list were
    # handled while we were offline.
    if progress.intact:
        # The waiting set holds only untaken customers: taken ones still flagged waiting (the
        # customer's human mode) are looked up too, so that a later release does not revive them.
        taken = (c.key for c in state.conversations.scan() if c.waiting and c.assigned)
        for key in (tx.waiting_keys | frozenset(taken)) - seen:
            gone = tx.get(key)
            if gone is not None and gone.waiting:
                tx.put(_update(gone, waiting=False, waiting_since=None, escalation_alerted=False))
        if progress.held:
            # Every chat a human holds was listed: mine that were not are held by nobody now
            # (handed back to the AI, resolved) -- unless my take-over is still on its way.
            for key in tx.mine_keys - listed:
                mine = tx.get(key)
                if mine is not None and mine.pending_takeover is None:
                    tx.put(_update(mine, assigned=False, agent=None, assigned_to_me=False))
    tx.changes["resync"] = None
    tx.changes["initial_load_done"] = True
    conn = state.connection
    if event.at is not None and conn.state in (ConnectionState.CONNECTED, ConnectionState.LIMITED):
        # A periodic resync (or a poll while limited) is a sync too: "Last synced" moves on.
        tx.changes["connection"] = _replace(conn, last_synced=_utc(event.at))
    if first_load:
        _first_load_summary(tx)
    return tx.commit()


def _first_load_summary(tx: _Tx) -> None:
    # First load: every waiting customer shows in the badge, but only ONE alert is raised, a
    # REMINDER about the longest-waiting customer nobody has taken (it opens that customer).
    urgent = [c for k in tx.waiting_keys if (c := tx.get(k)) is not None and not c.assigned]
    if not urgent:
        return
    oldest = min(urgent, key=lambda c: (c.waiting_since or _MAX_TIME, c.key))
    tx.alert(AlertKind.REMINDER, oldest, oldest.last_message)


# ---------------------------------------------------------------------------------------------
# My commands
# ---------------------------------------------------------------------------------------------


def _put_outbound(tx: _Tx, command: OutboundCommand) -> None:
    outbound: Mapping[str, OutboundCommand] = tx.changes.get("outbound", tx.state.outbound)
    new = dict(outbound)
    new[command.command_id] = command
    if len(new) > OUTBOUND_LIMIT:
        finished = [
            cid
            for cid, c in new.items()
            if c.state
            in (CommandState.CONFIRMED, CommandState.FAILED, CommandState.UNCONFIRMED, CommandState.DISCARDED)
        ]
        excess = len(new) - OUTBOUND_LIMIT
        victims = finished[:excess] if len(finished) >= excess else list(new)[:excess]
        for cid in victims:
            del new[cid]
    tx.changes["outbound"] = MappingProxyType(new)


def _on_command_queued(state: State, event: CommandQueued, limit: int) -> Result:
    tx = _Tx(state)
    if event.kind is CommandKind.REFRESH and state.resync is None:
        # Arm a resync now: customers who start waiting between this request and its first
        # page are recorded as seen, so the (older) answer cannot drop them.
        tx.changes["resync"] = ResyncProgress()
        return tx.commit()
    if event.kind not in _TRACKED_KINDS:
        return tx.commit()  # pings, refreshes, history loads: nothing the agent sees
    key = event.conversation
    _put_outbound(
        tx,
        OutboundCommand(
            command_id=event.command_id,
            kind=event.kind,
            conversation=key,
            text=event.text,
            state=CommandState.QUEUED,
        ),
    )
    if not key:
        return tx.commit()
    old = tx.get(key)
    conv = old if old is not None else Conversation(key=key)
    me = state.connection.user_id
    if event.kind is CommandKind.REPLY and not event.text.strip():
        pass  # nothing to show (the codec refuses empty replies; G8: never a blank bubble)
    elif event.kind is CommandKind.REPLY:
        idx = conv.messages.index_of_command(event.command_id)
        if idx >= 0:  # queued again (after a reconnect): same bubble
            own = conv.messages[idx]
            conv = _replace(
                conv,
                messages=conv.messages.replaced(
                    idx, _update(own, reply_state=CommandState.QUEUED, error="", unsaved=not event.durable)
                ),
            )
        else:
            record = MessageRecord(
                sender=SenderKind.AGENT,
                text=event.text,
                at=state.clock,  # an estimate; the echo brings the server's time
                agent_id=me,
                command_id=event.command_id,
                reply_state=CommandState.QUEUED,
                unsaved=not event.durable,
            )
            # What I just wrote is the newest message, whatever the (lagging) clock estimate says.
            conv = _replace(
                conv,
                messages=conv.messages.appended(record, limit),
                last_message=_preview(record),
                last_message_at=_later(conv.last_message_at, record.at),
            )
    elif event.kind is CommandKind.TAKE_OVER and not conv.assigned_to_me:
        # Optimistic: the button flips at once; a failure rolls it back.
        undo = conv.takeover_undo or (conv.assigned, conv.agent, conv.assigned_to_me)
        conv = _replace(
            conv,
            assigned=True,
            agent=AgentRef(agent_id=me) if me else None,
            assigned_to_me=True,
            pending_takeover=event.command_id,
            takeover_undo=undo,
        )
    tx.put(conv)
    return tx.commit()


def _set_reply_state(
    tx: _Tx,
    key: str,
    command_id: str,
    reply_state: CommandState,
    error: str = "",
    message_id: str | None = None,
) -> None:
    conv = tx.get(key)
    if conv is None:
        return
    history = conv.messages
    idx = history.index_of_command(command_id)
    if idx < 0:
        return
    own = history[idx]
    if own.echoed and reply_state is not CommandState.CONFIRMED:
        return  # the server's copy already proved delivery: a late timeout changes nothing
    if message_id is not None and own.message_id != message_id:
        echo_idx = history.index_of_id(message_id)
        if echo_idx >= 0 and (
            history[echo_idx].sender is not SenderKind.AGENT or history[echo_idx].command_id is not None
        ):
            message_id = None  # ids are unique server-side: never take another bubble's id
        elif echo_idx >= 0:
            # The echo came first and could not be matched to me (org agent ids differ from
            # the JWT sub): fold it into my bubble so the reply shows once.
            echo = history[echo_idx]
            own = _replace(
                own, at=echo.at or own.at, attachment=echo.attachment or own.attachment, echoed=True
            )
            history = history.removed(echo_idx)
            if echo_idx < idx:
                idx -= 1
    new = _update(own, reply_state=reply_state, error=error, message_id=message_id or own.message_id)
    if new is not own or history is not conv.messages:
        tx.put(_replace(conv, messages=history.replaced(idx, new)))


def _update_outbound(
    tx: _Tx,
    command_id: str,
    state: CommandState,
    reason: FailureReason | None = None,
    error: str = "",
    message_id: str | None = None,
) -> OutboundCommand | None:
    outbound: Mapping[str, OutboundCommand] = tx.changes.get("outbound", tx.state.outbound)
    cmd = outbound.get(command_id)
    if cmd is None:
        return None
    if cmd.state is CommandState.CONFIRMED and state is not CommandState.CONFIRMED:
        return cmd  # confirmed (e.g. by the echo) before a late answer: keep it
    updated = _replace(cmd, state=state, reason=reason, error=error, message_id=message_id or cmd.message_id)
    if updated != cmd:
        new = dict(outbound)
        new[command_id] = updated
        tx.changes["outbound"] = MappingProxyType(new)
    return updated


def _on_command_sent(state: State, event: CommandSent, limit: int) -> Result:
    tx = _Tx(state)
    if event.kind not in _TRACKED_KINDS:
        return tx.commit()
    cmd = _update_outbound(tx, event.command_id, CommandState.SENT)
    key = event.conversation or (cmd.conversation if cmd is not None else "")
    if event.kind is CommandKind.REPLY and key:
        conv = tx.get(key)
        if conv is not None:
            idx = conv.messages.index_of_command(event.command_id)
            if idx >= 0:
                own = conv.messages[idx]
                if own.reply_state in (CommandState.QUEUED, None):
                    # Written now: refresh the time estimate the echo is matched against.
                    sent = _update(own, reply_state=CommandState.SENT, at=_later(own.at, state.clock))
                    tx.put(_replace(conv, messages=conv.messages.replaced(idx, sent)))
    return tx.commit()


def _on_command_succeeded(state: State, event: CommandSucceeded, limit: int) -> Result:
    tx = _Tx(state)
    if event.kind not in _TRACKED_KINDS:
        return tx.commit()
    cmd = _update_outbound(tx, event.command_id, CommandState.CONFIRMED, message_id=event.message_id)
    key = event.conversation or (cmd.conversation if cmd is not None else "")
    if not key:
        return tx.commit()
    if event.kind is CommandKind.REPLY:
        _set_reply_state(tx, key, event.command_id, CommandState.CONFIRMED, message_id=event.message_id)
        return tx.commit()
    conv = tx.get(key)
    if conv is None:
        return tx.commit()
    me = state.connection.user_id
    if event.kind is CommandKind.TAKE_OVER:
        # Org take-overs are never broadcast (O9): the success is the truth.
        agent = (
            conv.agent
            if conv.assigned_to_me and conv.agent is not None
            else (AgentRef(agent_id=me) if me else None)
        )
        conv = _update(
            conv,
            assigned=True,
            agent=agent,
            assigned_to_me=True,
            escalation_alerted=False,
            pending_takeover=None,
            takeover_undo=None,
        )
    elif event.kind in _LETTING_GO:
        # Let go of: they wait for nobody now (not since their old time either), until they ask
        # for a human again (a waiting flag from after ``released_at``).
        changes: dict[str, Any] = {
            "waiting": False,
            "waiting_since": None,
            "escalation_alerted": False,
            "released_at": _later(state.clock, conv.waiting_since) or conv.released_at,
        }
        if conv.assigned_to_me or event.kind is not CommandKind.RELEASE:
            changes.update(assigned=False, agent=None, assigned_to_me=False)
        if event.kind is CommandKind.RESOLVE:
            changes["status"] = "resolved"
        conv = _update(conv, **changes)
    tx.put(conv)
    return tx.commit()


def _on_command_failed(state: State, event: CommandFailed, limit: int) -> Result:
    tx = _Tx(state)
    if event.kind is CommandKind.REFRESH and state.resync is not None:
        tx.changes["resync"] = None  # this resync will not complete; the next starts afresh
        return tx.commit()
    if event.kind is CommandKind.HISTORY:
        _note_refusal(tx, event)
        return tx.commit()
    if event.kind not in _TRACKED_KINDS:
        return tx.commit()
    new_state = CommandState.UNCONFIRMED if event.reason is FailureReason.UNCONFIRMED else CommandState.FAILED
    cmd = _update_outbound(tx, event.command_id, new_state, event.reason, event.text)
    key = event.conversation or (cmd.conversation if cmd is not None else "")
    if not key:
        return tx.commit()
    if event.kind is CommandKind.REPLY:
        _set_reply_state(tx, key, event.command_id, new_state, error=event.text or event.reason.value)
        return tx.commit()
    conv = tx.get(key)
    if conv is None or event.kind is not CommandKind.TAKE_OVER or conv.pending_takeover != event.command_id:
        return tx.commit()
    undo = conv.takeover_undo or (False, None, False)
    if event.reason is FailureReason.ALREADY_ASSIGNED:
        # Somebody else has them (the server rarely says who: G9).
        was_other = undo[0] and not undo[2]
        conv = _replace(
            conv,
            assigned=True,
            agent=undo[1] if was_other else None,
            assigned_to_me=False,
            pending_takeover=None,
            takeover_undo=None,
        )
    else:
        conv = _undo_takeover(conv)
    tx.put(conv)
    return tx.commit()


def _note_refusal(tx: _Tx, event: CommandFailed) -> None:
    """Remember that the server refused (or failed) the history of a conversation we do not know.

    A lost answer (offline, timeout, unconfirmed) says nothing: the chat window asks again on
    reconnect. A server error is kept as a temporary refusal (the window asks again soon). A
    refusal of a known conversation's (older) page changes nothing either.
    """
    key = event.conversation
    if not key or event.reason in _TRANSIENT_FAILURES or tx.get(key) is not None:
        return
    refusal = Refusal(event.text.strip() or event.reason.value, event.reason)
    refused = tx.state.refused
    if refused.get(key) == refusal:
        return
    new = dict(refused)
    new.pop(key, None)  # newest last
    new[key] = refusal
    while len(new) > REFUSED_LIMIT:
        del new[next(iter(new))]
    tx.changes["refused"] = MappingProxyType(new)


def _undo_takeover(conv: Conversation) -> Conversation:
    """``conv`` as it was before my optimistic take-over."""
    undo = conv.takeover_undo or (False, None, False)
    return _replace(
        conv,
        assigned=undo[0],
        agent=undo[1],
        assigned_to_me=undo[2],
        pending_takeover=None,
        takeover_undo=None,
    )


def _on_command_discarded(state: State, event: CommandDiscarded, limit: int) -> Result:
    tx = _Tx(state)
    cmd = _update_outbound(tx, event.command_id, CommandState.DISCARDED)
    key = event.conversation or (cmd.conversation if cmd is not None else "")
    if not key:
        return tx.commit()
    if event.kind is CommandKind.REPLY:
        _set_reply_state(tx, key, event.command_id, CommandState.DISCARDED)
        return tx.commit()
    conv = tx.get(key)
    if conv is not None and conv.pending_takeover == event.command_id:
        tx.put(_undo_takeover(conv))
    return tx.commit()


def _on_command_retried(state: State, event: CommandRetried, limit: int) -> Result:
    tx = _Tx(state)
    outbound: Mapping[str, OutboundCommand] = state.outbound
    cmd = outbound.get(event.command_id)
    if cmd is not None and cmd.retried_as != event.retried_as:
        new = dict(outbound)
        new[event.command_id] = _replace(cmd, retried_as=event.retried_as)
        tx.changes["outbound"] = MappingProxyType(new)
    key = event.conversation or (cmd.conversation if cmd is not None else "")
    conv = tx.get(key) if key else None
    if conv is not None:
        idx = conv.messages.index_of_command(event.command_id)
        if idx >= 0:
            own = conv.messages[idx]
            linked = _update(own, retried_as=event.retried_as)
            if linked is not own:
                tx.put(_replace(conv, messages=conv.messages.replaced(idx, linked)))
    return tx.commit()


# ---------------------------------------------------------------------------------------------
# Connection, counters, UI intents
# ---------------------------------------------------------------------------------------------


def _on_connection_changed(state: State, event: ConnectionChanged, limit: int) -> Result:
    tx = _Tx(state)
    conn = state.connection
    last_synced = conn.last_synced
    if event.state is ConnectionState.CONNECTED:
        last_synced = _utc(event.at) or state.clock or last_synced
    new = _replace(
        conn, state=event.state, detail=event.detail, retry_in=event.retry_in, last_synced=last_synced
    )
    if new != conn:
        tx.changes["connection"] = new
    if state.resync is not None and event.state not in _LIVE_STATES:
        tx.changes["resync"] = None  # the connection dropped: the next resync starts afresh
    return tx.commit()


def _on_connected(state: State, event: Connected, limit: int) -> Result:
    tx = _Tx(state)
    conn = state.connection
    new = _replace(
        conn,
        user_id=event.user_id or conn.user_id,
        connection_count=event.connection_count
        if event.connection_count is not None
        else conn.connection_count,
    )
    if new != conn:
        tx.changes["connection"] = new
    return tx.commit()


def _on_ignored(state: State, event: Ignored, limit: int) -> Result:
    tx = _Tx(state)
    _count_ignored(tx, event.kind)
    return tx.commit()


def _on_nothing(state: State, event: Event, limit: int) -> Result:
    # Keepalives; ServerAcked/ServerRejected are the network layer's (it turns them into
    # CommandSucceeded/CommandFailed): the same state back.
    return state, ()


def _on_focus(state: State, event: FocusChanged, limit: int) -> Result:
    tx = _Tx(state)
    key = event.conversation or None
    if key != state.focused:
        tx.changes["focused"] = key
    if key is not None:
        conv = tx.get(key)
        if conv is not None and conv.unread:
            tx.put(_replace(conv, unread=0))
    return tx.commit()


def _on_read(state: State, event: ConversationRead, limit: int) -> Result:
    tx = _Tx(state)
    conv = tx.get(event.conversation) if event.conversation else None
    if conv is not None and conv.unread:
        tx.put(_replace(conv, unread=0))
    return tx.commit()


def _on_signed_out(state: State, event: SignedOut, limit: int) -> Result:
    # A fresh state (no conversations, outbound commands or counters): nothing of the old
    # account may linger in a view. Not signed in, so the connection asks for a sign-in.
    connection = ConnectionInfo(state=ConnectionState.AUTH_REQUIRED, detail=event.detail)
    return State(connection=connection), ()


_Handler = Callable[[State, Any, int], Result]

_HANDLERS: Final[Mapping[type[Event], _Handler]] = {
    MessageReceived: _on_message,
    HumanRequested: _on_human_requested,
    WaitingChanged: _on_waiting_changed,
    AssignmentChanged: _on_assignment,
    ConversationUpdated: _on_conversation_updated,
    WaitingListPage: _on_waiting_list,
    HistoryPage: _on_history,
    CommandQueued: _on_command_queued,
    CommandSent: _on_command_sent,
    CommandSucceeded: _on_command_succeeded,
    CommandFailed: _on_command_failed,
    CommandDiscarded: _on_command_discarded,
    CommandRetried: _on_command_retried,
    ConnectionChanged: _on_connection_changed,
    Connected: _on_connected,
    KeepaliveReceived: _on_nothing,
    ServerAcked: _on_nothing,
    ServerRejected: _on_nothing,
    Ignored: _on_ignored,
    FocusChanged: _on_focus,
    ConversationRead: _on_read,
    SignedOut: _on_signed_out,
}


def _on_unknown(state: State, event: Event, limit: int) -> Result:
    tx = _Tx(state)
    _count_ignored(tx, f"unhandled:{type(event).__name__}")
    return tx.commit()


def reduce(state: State, event: Event, *, history_limit: int = DEFAULT_HISTORY_LIMIT) -> Result:
    """Fold one event into the state. Pure: no I/O, no clock, never mutates ``state``.

    Rules where the protocol leaves a choice:

    * **Messages.** Same ``message_id`` -> upsert (never a second bubble). Id-less duplicates
      (same sender, agent and text, and attachment, within :data:`DUPLICATE_WINDOW`) fold. An
      agent message from me (``agent_id`` == my user id) folds into my newest reply with that
      text still awaiting its echo, whether the ack came first or not; the echo confirms the
      reply. Empty text without attachment: no bubble, no alert; it only moves
      ``last_message_at``. Unread +1 and ``Alert(MESSAGE)`` for new customer bubbles only
      (the alert is raised even for the focused conversation: the policy decides), and only
      when the message is news: one older than the newest customer message we already had (or,
      with none, than the resync row's last activity) is a replay or backfill after a sign-in,
      reconnect or resync, counted unread but not alerted. Alerts say who handles the customer
      (``Alert.handler``: me, a colleague, nobody/waiting, the AI) and since when they wait.
      Unknown conversations are created, without a resync (new customers are normal).
    * **Human mode.** A customer message with ``requires_human`` in a conversation not known
      to be waiting means we missed the escalation: waiting, one ESCALATION alert (if nobody
      has them) and no MESSAGE alert for the same words, and one :class:`RequestResync`.
    * **Escalations.** One ESCALATION alert per episode; the episode ends when the customer is
      taken, released (``waiting=False``) or resolved. ``WaitingChanged(True)`` alerts only if
      the customer was not waiting and nobody has them.
    * **Assignment.** Taking a customer (anyone, my optimistic take-over included) ends their
      urgency (``Conversation.urgent``) and removes them from the waiting set
      (``waiting_keys``: the badge, menu and Waiting tab all derive from it). Release of an
      unknown customer is ignored; assignment of an unknown one without a customer summary
      requests a resync (once).
    * **Resync.** A page at offset 0 starts a resync. Rows are server truth for waiting and
      assignment; history and unread are kept. After the last page of a complete, contiguous
      list, waiting customers (taken ones still flagged waiting too) that no page (nor a live
      escalation during the resync) showed stop waiting. The first resync after start raises
      no per-customer alerts, only one REMINDER for the longest-waiting untaken customer; later
      resyncs alert (ESCALATION) for customers newly waiting and untaken.
    * **Commands.** Only replies, take-overs and releases are tracked. A take-over assigns me
      optimistically; a failure rolls it back (``already_assigned``: assigned to somebody else).
      A history load the server refuses for a conversation we do not know (a stale link) is
      remembered in ``refused`` (never a conversation, so never a list row) until it appears;
      a server error there is remembered as temporary (:attr:`Refusal.temporary`).

    Args:
        state: the current state.
        event: any domain event; unknown kinds are counted in ``ignored``.
        history_limit: messages kept per conversation (setting ``ui.history_limit``).

    Returns:
        The new state (``state`` itself when the event changes nothing) and the effects for the
        outside world (alerts, resync requests).
    """
    handler = _HANDLERS.get(type(event))
    if handler is None:
        handler = next((h for t, h in _HANDLERS.items() if isinstance(event, t)), _on_unknown)
    return handler(state, event, max(1, history_limit))


# ---------------------------------------------------------------------------------------------
# Store
# ---------------------------------------------------------------------------------------------

Subscriber = Callable[[State, State], None]


class Store:
    """Holds the current state; dispatches events through :func:`reduce`; notifies subscribers.

    Subscribers are called synchronously as ``callback(old_state, new_state)`` after each
    dispatch that changed the state (once per :meth:`dispatch_many` batch). A subscriber that
    raises is logged and skipped. A subscriber may dispatch: the nested change is applied at
    once and its notification is delivered after the current one, so every subscriber sees the
    transitions in order.
    """

    def __init__(self, state: State | None = None, *, history_limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        """Start from ``state`` (default: empty) keeping ``history_limit`` messages per conversation."""
        self._state = state if state is not None else State()
        self._history_limit = history_limit
        self._subscribers: tuple[Subscriber, ...] = ()
        self._queue: list[tuple[State, State]] = []
        self._notifying = False

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def history_limit(self) -> int:
        """Messages kept per conversation."""
        return self._history_limit

    @history_limit.setter
    def history_limit(self, value: int) -> None:
        # Applies to later appends; existing histories are trimmed as they next change.
        self._history_limit = max(1, value)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(old, new)`` after every change; returns the unsubscribe function."""
        self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            subs = list(self._subscribers)
            if callback in subs:
                subs.remove(callback)
                self._subscribers = tuple(subs)

        return unsubscribe

    def dispatch(self, event: Event) -> tuple[Effect, ...]:
        """Reduce one event; notify subscribers; return the effects."""
        old = self._state
        effects = self._reduce(event)
        self._notify(old, self._state)
        return effects

    def dispatch_many(self, events: Iterable[Event]) -> tuple[Effect, ...]:
        """Reduce a batch of events with ONE notification; return all effects in order.

        A run of consecutive messages (a burst of frames) is folded in one transaction
        (:func:`reduce_messages`): one new State for the run, not one per message.
        """
        old = self._state
        effects: list[Effect] = []
        run: list[MessageReceived] = []
        for event in events:
            if type(event) is MessageReceived:
                run.append(event)
                continue
            if run:
                effects.extend(self._reduce_run(run))
                run = []
            effects.extend(self._reduce(event))
        if run:
            effects.extend(self._reduce_run(run))
        self._notify(old, self._state)
        return tuple(effects)

    def _reduce_run(self, run: list[MessageReceived]) -> tuple[Effect, ...]:
        if len(run) > 1:
            try:
                self._state, effects = reduce_messages(self._state, run, history_limit=self._history_limit)
            except Exception:  # one bad message must not cost the others: each on its own
                logger.debug("batched reduction failed; reducing the run one by one", exc_info=True)
            else:
                return effects
        out: list[Effect] = []
        for event in run:
            out.extend(self._reduce(event))
        return tuple(out)

    def _reduce(self, event: Event) -> tuple[Effect, ...]:
        try:
            self._state, effects = reduce(self._state, event, history_limit=self._history_limit)
        except Exception:  # a reducer bug must never take the receive loop down
            logger.exception("reducer failed on %s", type(event).__name__)
            return ()
        return effects

    def _notify(self, old: State, new: State) -> None:
        if old is new:
            return
        self._queue.append((old, new))
        if self._notifying:
            return  # the outer _notify delivers it, in order
        self._notifying = True
        try:
            while self._queue:
                before, after = self._queue.pop(0)
                for callback in self._subscribers:
                    try:
                        callback(before, after)
                    except Exception:
                        logger.exception("state subscriber %r failed", callback)
        finally:
            self._notifying = False
