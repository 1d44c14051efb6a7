"""Catch-up after a resync: fetch the messages that arrived while the socket was down.

Neither backend replays what it broadcast while we were away: a customer message sent during a
reconnect shows up afterwards only as a chat's ``last_message`` / ``last_message_at`` in the resync
list (PROTOCOL.md 5, G10). So after every resync, the conversations whose last activity is newer
than what the client has delivered to the store get their newest history page fetched, and the
messages newer than that are emitted as ordinary :class:`MessageReceived` events: the reducer
alerts for them like for live ones, and dedupes them (by id, else by sender/text/time) should a
copy arrive live too.

"What the store holds" is tracked here from the events the client emits (it never reads the
store): per conversation, the newest message time delivered, or the last activity a resync row
showed once nothing was missing; and the newest time seen at all, the floor for conversations the
client never heard of. Baselines are frozen when a resync starts, so messages that arrive live
during the resync cannot hide older ones that were missed. The newest messages delivered per
conversation are remembered too (by id, else by sender, text and time, as the reducer folds
copies), as they were when the page was asked for plus those delivered while it was read, so a
fetched page's copies of them are never emitted a second time.

Bounded: at most :data:`MAX_CONVERSATIONS` conversations per resync, mine first, then waiting
customers, then the others, newest activity first; one history page of :data:`PAGE_LIMIT` each.
Conversations left over stay candidates for the next resync. Nothing is fetched after the first
resync of a run (there is no baseline yet: the first load's summary covers it).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import chain

from tray_agent.core.commands import LoadHistory
from tray_agent.core.events import Event, HistoryPage, MessageReceived, WaitingListPage
from tray_agent.core.protocol.base import DialectCodec, HttpCall
from tray_agent.core.state import DUPLICATE_WINDOW

logger = logging.getLogger(__name__)

MAX_CONVERSATIONS = 20
"""History fetches per resync at most (each one GET)."""
PAGE_LIMIT = 50
"""Messages fetched per conversation (the newest ones)."""
MAX_TRACKED = 100_000
"""Conversations whose delivered-up-to time is remembered (the oldest are forgotten first)."""

MAX_RECENT_CONVERSATIONS = 2_000
"""Conversations whose newest delivered messages are remembered (the least recent forgotten first)."""

HttpFetch = Callable[[HttpCall], Awaitable[tuple[int, bytes]]]


@dataclass(frozen=True, slots=True)
class _Candidate:
    conversation: str
    rank: int  # 0 mine, 1 waiting, 2 other
    activity: datetime
    since: datetime  # deliver messages newer than this


class CatchUp:
    """Tracks what was delivered and fetches what a resync shows was missed (see the module doc).

    Not thread-safe; lives on the client's event loop. :meth:`observe` must see every event the
    client emits, in order.
    """

    def __init__(
        self,
        codec: DialectCodec,
        *,
        max_conversations: int = MAX_CONVERSATIONS,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        """Use ``codec`` to express and read the history calls."""
        self._codec = codec
        self._max = max_conversations
        self._page_limit = page_limit
        self._known: dict[str, datetime] = {}
        self._horizon: datetime | None = None
        self._baseline: dict[str, datetime] | None = None
        self._baseline_horizon: datetime | None = None
        self._candidates: dict[str, _Candidate] = {}
        # The newest messages delivered per conversation (as many as one history page holds), so
        # that a fetched page's copies of them are not emitted again: matched by server id, else
        # by sender and text within DUPLICATE_WINDOW, as the reducer folds copies (the dashboard
        # has no ids, and its broadcasts and history stamp a message with different precision).
        self._recent: OrderedDict[str, deque[MessageReceived]] = OrderedDict()
        # What the catch-up emitted, until its live copy (a broadcast still on its way when the
        # history was read) turns up: that copy is then dropped (see :meth:`is_copy`).
        self._emitted: OrderedDict[str, deque[MessageReceived]] = OrderedDict()
        # Per conversation whose history is being read (by one catch-up or by two overlapping
        # ones): the messages delivered meanwhile. They may push the page's newest copies out of
        # ``_recent`` before the answer is handled.
        self._arriving: dict[str, list[list[MessageReceived]]] = {}

    # -- bookkeeping -----------------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """Note what an emitted event delivered (messages, history) or showed (resync rows)."""
        if isinstance(event, MessageReceived):
            self._delivered(event.conversation, event.sent_at)
            self._note_recent(event)
        elif isinstance(event, HistoryPage):
            for message in event.messages:
                self._delivered(event.conversation or message.conversation, message.sent_at)
        elif isinstance(event, WaitingListPage):
            self._rows(event)

    def resync_started(self) -> None:
        """Freeze the baselines: the resync's rows are compared with what was delivered before it."""
        self._baseline = dict(self._known)
        self._baseline_horizon = self._horizon
        self._candidates = {}

    def _note_recent(self, message: MessageReceived) -> None:
        for arriving in self._arriving.get(message.conversation, ()):
            arriving.append(message)
        recents = self._recent
        recent = recents.get(message.conversation)
        if recent is None:
            recent = recents[message.conversation] = deque(maxlen=self._page_limit)
            if len(recents) > MAX_RECENT_CONVERSATIONS:
                recents.popitem(last=False)  # the conversation heard from longest ago
        else:
            recents.move_to_end(message.conversation)  # last: the order is the age order
        recent.append(message)

    @staticmethod
    def _seen(message: MessageReceived, delivered: Iterable[MessageReceived]) -> bool:
        """Whether a copy of ``message`` is among ``delivered`` (live, or by an earlier catch-up)."""
        return any(_same(known, message) for known in delivered)

    def is_copy(self, event: Event) -> bool:
        """Whether ``event`` is the live copy of a message the catch-up already delivered.

        The history read after a resync can hold messages whose broadcast is still on its way;
        the client drops that late copy, so each message is emitted once. Each caught-up message
        matches one copy at most.
        """
        if not isinstance(event, MessageReceived):
            return False
        emitted = self._emitted.get(event.conversation)
        if not emitted:
            return False
        for known in emitted:
            if _same(known, event):
                emitted.remove(known)
                return True
        return False

    def _note_emitted(self, message: MessageReceived) -> None:
        emitted = self._emitted.pop(message.conversation, None)
        if emitted is None:
            emitted = deque(maxlen=self._page_limit)
        emitted.append(message)
        self._emitted[message.conversation] = emitted
        if len(self._emitted) > MAX_RECENT_CONVERSATIONS:
            del self._emitted[next(iter(self._emitted))]

    def _delivered(self, conversation: str, at: datetime | None) -> None:
        if not conversation or at is None:
            return
        known = self._known.get(conversation)
        if known is None or at > known:
            self._remember(conversation, at)
        if self._horizon is None or at > self._horizon:
            self._horizon = at

    def _remember(self, conversation: str, at: datetime) -> None:
        known = self._known
        known.pop(conversation, None)
        known[conversation] = at  # re-inserted last: dict order is the age order
        if len(known) > MAX_TRACKED:
            del known[next(iter(known))]

    def _rows(self, page: WaitingListPage) -> None:
        baseline = self._baseline
        if baseline is None:
            # A list read outside a resync (the dashboard's customers page after connecting, an
            # agent's refresh): it may show activity whose messages were never delivered, so it
            # must not count as delivered; the next resync compares it with what was.
            return
        for row in page.customers:
            activity = row.last_message_at
            if not row.conversation or activity is None:
                continue
            since = baseline.get(row.conversation, self._baseline_horizon)
            if since is not None and activity > since:
                rank = 0 if row.assigned_to_me else 1 if row.waiting else 2
                self._candidates[row.conversation] = _Candidate(row.conversation, rank, activity, since)
                continue  # delivered only once fetched: a failed fetch is retried next resync
            known = self._known.get(row.conversation)
            if known is None or activity > known:
                self._remember(row.conversation, activity)
            if self._horizon is None or activity > self._horizon:
                self._horizon = activity

    def take_due(self) -> list[tuple[str, datetime]]:
        """End of a resync: the conversations to fetch now, as (key, deliver-after), best first.

        Those beyond the bound are dropped here and show up again in the next resync's rows.
        """
        ranked = sorted(
            self._candidates.values(), key=lambda c: (c.rank, -c.activity.timestamp(), c.conversation)
        )
        self._candidates = {}
        self._baseline = None
        return [(c.conversation, c.since) for c in ranked[: self._max]]

    # -- fetching --------------------------------------------------------------------------------

    async def run(self, fetch: HttpFetch, emit: Callable[[Event], None]) -> None:
        """Fetch the due conversations one after the other and emit their missed messages.

        ``emit`` must route back through the client (so :meth:`observe` sees them). Errors of
        one conversation are logged and skipped. The due list is taken when the task starts, so
        the rows of a resync's last page (emitted right after its command settles) count.
        Cancellation propagates.
        """
        emitted = 0
        for conversation, since in self.take_due():
            try:
                messages = await self._missed(fetch, conversation, since)
            except Exception as exc:  # a network or server failure must not end the catch-up
                logger.info("catch-up of %s failed: %s", conversation, exc)
                continue
            for message in messages:
                emit(message)
                self._note_emitted(message)
            emitted += len(messages)
        if emitted:
            logger.info("catch-up: %d message(s) missed while offline delivered", emitted)

    async def _missed(self, fetch: HttpFetch, conversation: str, since: datetime) -> list[MessageReceived]:
        command = LoadHistory(conversation=conversation, page=0, limit=self._page_limit)
        call = self._codec.encode(command)
        if not isinstance(call, HttpCall):
            return []
        # Every delivered copy of a message on the page is among the newest delivered when the
        # page was asked for, or arrived while it was read.
        before = tuple(self._recent.get(conversation, ()))
        arriving: list[MessageReceived] = []
        self._arriving.setdefault(conversation, []).append(arriving)
        try:
            status, body = await fetch(call)
            pages = [
                e for e in self._codec.parse_response(command, status, body) if isinstance(e, HistoryPage)
            ]
            missed = [
                message
                for page in pages
                for message in page.messages
                if message.sent_at is not None
                and message.sent_at > since
                and not self._seen(message, chain(before, arriving))  # once is enough
            ]
        finally:
            watches = self._arriving[conversation]
            del watches[next(i for i, w in enumerate(watches) if w is arriving)]
            if not watches:
                del self._arriving[conversation]
        if not pages:
            logger.info("catch-up of %s: HTTP %d, no history", conversation, status)
        return missed


def _same(a: MessageReceived, b: MessageReceived) -> bool:
    """Two copies of one message: the same server id, else sender and text within DUPLICATE_WINDOW."""
    if a.message_id and b.message_id:
        return a.message_id == b.message_id
    return (
        a.sender is b.sender
        and a.text == b.text
        and a.sent_at is not None
        and b.sent_at is not None
        and abs(a.sent_at - b.sent_at) <= DUPLICATE_WINDOW
    )


__all__ = ["MAX_CONVERSATIONS", "PAGE_LIMIT", "CatchUp"]
