"""The REST fallback ("limited mode"): poll the waiting list and open conversations, diff, emit domain events.

Some corporate proxies break WebSockets while plain HTTPS works. The :class:`Poller` then stands in
for the socket: every poll it reads the whole conversation list through the dialect's REST call
(dashboard ``GET /api/dashboard/customers``, org ``GET /crm/chats``), compares it with the previous
poll and emits the events the socket would have carried; it reads the newest history page of the
conversations that matter (waiting, or assigned to me) and emits only the messages not seen before.

Decisions:

* **Same events as live.** A conversation that starts waiting (dashboard ``stop`` turned true, org
  ``handled_by`` human/unassigned without a human) gives HumanRequested (if nobody has it) and
  WaitingChanged(True); one that stops waiting WaitingChanged(False); an assignment change
  AssignmentChanged. The list pages follow as WaitingListPage, so the reducer resyncs exactly as
  after a reconnect (and still alerts on anything the diff could not see).
* **First poll = baseline.** Entering limited mode says nothing new: the first poll emits the
  pages only and records the messages it sees. A conversation that becomes worth watching later
  (a new escalation) gets its newest page as a HistoryPage once, then MessageReceived deltas.
* **Dedupe** on the server's message id (org) or on (time, sender, text) (dashboard history has
  no usable id, G7), per conversation, bounded.
* **Cost.** Histories are re-read only when the list shows a change for that conversation
  (last message or its time), plus every ``full_every`` polls as a safety net, and at most
  ``max_histories`` per poll, most recent activity first.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from tray_agent.core.commands import Command, LoadHistory, RefreshWaitingList
from tray_agent.core.events import (
    AssignmentAction,
    AssignmentChanged,
    CommandFailed,
    ConversationSummary,
    Event,
    FailureReason,
    HistoryPage,
    HumanRequested,
    MessageReceived,
    WaitingChanged,
    WaitingListPage,
)
from tray_agent.core.protocol.base import DialectCodec, EncodeError, HttpCall

logger = logging.getLogger(__name__)

LIST_PAGE = 100  # both servers accept 100 (org caps at 100, dashboard REST at 200)
MAX_LIST_PAGES = 50
HISTORY_PAGE = 50
SEEN_PER_CONVERSATION = 400
_CLOSED = frozenset({"resolved", "closed"})


def rest_call(codec: DialectCodec, command: Command) -> HttpCall:
    """The HTTP call that carries ``command`` without a WebSocket.

    Dashboard: :meth:`encode_rest` (refresh, reply, history). Org: every command already is a REST
    call (:meth:`encode`).

    Raises:
        EncodeError: the dialect has no REST form for this command (dashboard take-over/release).
    """
    encode_rest = getattr(codec, "encode_rest", None)
    out = encode_rest(command) if callable(encode_rest) else codec.encode(command)
    if not isinstance(out, HttpCall):
        raise EncodeError(FailureReason.INVALID, f"no REST form for {type(command).__name__}")
    return out


class PollError(Exception):
    """A poll could not read the conversation list (the text says why, in plain words)."""


Call = Callable[[Command], Awaitable[Sequence[Event]]]
"""Carries out one internal command over REST and returns the codec's events for the answer.

Raises PollError for transport failures; authentication errors propagate as they are."""


@dataclass(slots=True)
class _Watch:
    signature: tuple[str, str]
    seen: OrderedDict[str, None]


def _signature(summary: ConversationSummary) -> tuple[str, str]:
    at = summary.last_message_at.isoformat() if summary.last_message_at is not None else ""
    return (summary.last_message, at)


def _agent_id(summary: ConversationSummary) -> str:
    return summary.agent.agent_id if summary.agent is not None else ""


class Poller:
    """Polls one account over REST and turns differences into domain events (see the module docstring).

    Args:
        call: performs one internal command (see :data:`Call`).
        max_histories: most conversations whose history is read in one poll.
        full_every: every this many polls, watched histories are read even without a visible change.
    """

    def __init__(self, call: Call, *, max_histories: int = 20, full_every: int = 6) -> None:
        self._call = call
        self._max_histories = max(1, max_histories)
        self._full_every = max(1, full_every)
        self._last: dict[str, ConversationSummary] | None = None
        self._watch: dict[str, _Watch] = {}
        self._polls = 0

    async def probe(self) -> bool:
        """Whether the REST API answers (one small list request). Never raises PollError."""
        try:
            events = await self._call(RefreshWaitingList(offset=0, limit=1))
        except PollError as exc:
            logger.info("REST probe failed: %s", exc)
            return False
        return not any(isinstance(e, CommandFailed) for e in events)

    async def poll(self) -> list[Event]:
        """One poll: list pages, diff, histories. Returns the events to emit, in order.

        Raises:
            PollError: the list could not be read (history failures are only logged).
        """
        pages = await self._read_list()
        current: dict[str, ConversationSummary] = {}
        for page in pages:
            for summary in page.customers:
                if summary.conversation:
                    current[summary.conversation] = summary
        baseline = self._last is None
        out: list[Event] = []
        if not baseline:
            out.extend(self._diff(self._last or {}, current))
        out.extend(pages)
        out.extend(await self._histories(current, baseline))
        self._last = current
        self._polls += 1
        return out

    async def _read_list(self) -> list[WaitingListPage]:
        pages: list[WaitingListPage] = []
        offset = 0
        for _ in range(MAX_LIST_PAGES):
            command = RefreshWaitingList(offset=offset, limit=LIST_PAGE)
            events = await self._call(command)
            for event in events:
                if isinstance(event, CommandFailed):
                    raise PollError(event.text or event.reason.value)
            page = next((e for e in events if isinstance(e, WaitingListPage)), None)
            if page is None:
                raise PollError("the server's conversation list was empty or unreadable")
            pages.append(page)
            if not page.has_more:  # an empty page may end one filtered segment of several
                break
            offset = page.offset + len(page.customers)
        return pages

    def _diff(
        self, last: dict[str, ConversationSummary], current: dict[str, ConversationSummary]
    ) -> list[Event]:
        out: list[Event] = []
        for key, now in current.items():
            old = last.get(key)
            at = now.waiting_since or now.last_message_at
            if now.waiting and (old is None or not old.waiting):
                if not now.assigned:
                    out.append(
                        HumanRequested(
                            conversation=key, customer_name=now.customer_name, text=now.last_message, at=at
                        )
                    )
                out.append(WaitingChanged(conversation=key, waiting=True, customer=now, at=at))
            elif old is not None and old.waiting and not now.waiting:
                out.append(
                    WaitingChanged(conversation=key, waiting=False, customer=now, at=now.last_message_at)
                )
            if old is not None and (old.assigned != now.assigned or _agent_id(old) != _agent_id(now)):
                out.append(
                    AssignmentChanged(
                        conversation=key,
                        action=AssignmentAction.ASSIGNED if now.assigned else AssignmentAction.UNASSIGNED,
                        agent=now.agent,
                        is_me=now.assigned_to_me,
                        customer=now,
                        at=now.last_message_at,
                    )
                )
        return out

    def _wanted(self, current: dict[str, ConversationSummary]) -> list[ConversationSummary]:
        wanted = [
            s for s in current.values() if (s.waiting or s.assigned_to_me) and s.status.lower() not in _CLOSED
        ]
        wanted.sort(key=lambda s: s.last_message_at.timestamp() if s.last_message_at else 0.0, reverse=True)
        return wanted[: self._max_histories]

    async def _histories(self, current: dict[str, ConversationSummary], baseline: bool) -> list[Event]:
        out: list[Event] = []
        wanted = self._wanted(current)
        full = self._polls % self._full_every == 0
        for key in [k for k in self._watch if k not in {s.conversation for s in wanted}]:
            del self._watch[key]  # no longer waiting or mine: forget (bounded memory)
        for summary in wanted:
            key = summary.conversation
            watch = self._watch.get(key)
            signature = _signature(summary)
            if watch is not None and watch.signature == signature and not full:
                continue
            try:
                events = await self._call(LoadHistory(key, page=0, limit=HISTORY_PAGE))
            except PollError as exc:
                logger.info("limited mode: history of %s failed: %s", key, exc)
                continue
            page = next((e for e in events if isinstance(e, HistoryPage)), None)
            if page is None:
                continue
            if watch is None:
                watch = _Watch(signature, OrderedDict())
                self._watch[key] = watch
                self._remember(watch, page.messages)
                if not baseline:
                    out.append(page)  # newly worth watching: what was said so far, once
                continue
            watch.signature = signature
            for message in page.messages:
                mkey = message.dedupe_key
                if mkey in watch.seen:
                    continue
                self._remember(watch, (message,))
                out.append(message)
        return out

    @staticmethod
    def _remember(watch: _Watch, messages: Sequence[MessageReceived]) -> None:
        for message in messages:
            watch.seen[message.dedupe_key] = None
        while len(watch.seen) > SEEN_PER_CONVERSATION:
            watch.seen.popitem(last=False)
