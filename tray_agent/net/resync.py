"""The resync: page the whole waiting list through internal commands, after each connect and periodically.

:class:`Resync` is the bookkeeping (pure: it queues the internal RefreshWaitingList pages in the
tracker and says what the client must do next); :func:`list_everyone` is the one REST page of all
customers read after a connection's first resync; :class:`LiveChanges` marks the rows of a list
read over REST that live events made stale while it was read.

Decisions:

* **Resync** runs after every (re)connect (state RESYNCING until the last page) and again every
  ``resync_interval`` while connected, for both dialects (O9, G10). A failed first resync counts
  as a connection failure (reconnect with backoff); a failed periodic one is only logged.
* **The agent's refresh** reads the whole list as a resync does when its first page says there is
  more: the org list comes in segments (waiting, held, recent), and its first page may be empty.
* **A list read over REST** travels apart from the socket, so its answer can arrive after a
  broadcast the server sent later (an assignment, an escalation): such rows are older than the
  store. The conversations live events changed while the request was out are named in the
  page's ``changed_live`` and the reducer keeps their state (found by the fault tests: a reply's
  assignment undone by the customer list read just before it).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Final, TypeVar

from tray_agent.core.commands import RefreshWaitingList
from tray_agent.core.events import (
    AssignmentChanged,
    CommandFailed,
    CommandKind,
    CommandSucceeded,
    ConversationUpdated,
    Event,
    HumanRequested,
    WaitingChanged,
    WaitingListPage,
)
from tray_agent.core.ports import Clock
from tray_agent.core.protocol.base import DialectCodec, EncodeError, HttpCall, WsFrame
from tray_agent.net.polling import rest_call
from tray_agent.net.tracker import CommandTracker, Outcome

logger = logging.getLogger(__name__)

RESYNC_PAGE = 200
"""Rows asked for per resync page (the codec clamps it to what its server allows)."""
MAX_RESYNC_PAGES = 500
EVERYONE_PAGE = 100
"""Rows of the one REST page of all customers read after a connection's first resync (see
:func:`list_everyone`): the most recently active, bounded to one request."""


class Progress(enum.Enum):
    """What a settled resync page asks of the client."""

    NONE = enum.auto()
    """Nothing: no resync is running, or a periodic one failed (logged, rescheduled)."""
    NEXT_PAGE = enum.auto()
    """The next page is queued: wake the send loop."""
    FAILED = enum.auto()
    """The connection's first resync failed: drop the connection."""
    DONE = enum.auto()
    """A periodic resync (or the agent's refresh) read its last page: run the catch-up."""
    FIRST_DONE = enum.auto()
    """The connection's first resync read its last page: the connection is live; catch up."""


class Resync:
    """Which resync runs, its pages, and when the next periodic one is due.

    Args:
        tracker: where the internal page commands are queued (at the front of the outbox).
        clock: monotonic time for the periodic schedule.
        interval: seconds between periodic resyncs while connected; None disables them.
    """

    def __init__(self, tracker: CommandTracker, clock: Clock, interval: float | None) -> None:
        self._tracker = tracker
        self._clock = clock
        self._interval = interval
        self.active = False
        self._initial = False
        self._pages = 0
        self.next_at: float | None = None
        """Monotonic time of the next periodic resync (None: none planned)."""

    def start(self, *, initial: bool) -> None:
        """Queue the first page of a resync (``initial``: the connection's first)."""
        self.active = True
        self._initial = initial
        self._pages = 0
        self._tracker.enqueue(RefreshWaitingList(offset=0, limit=RESYNC_PAGE), internal=True, front=True)

    def follow(self, outcome: Outcome) -> Progress:
        """The agent's refresh ended: when its page says there is more, read the rest as a resync does."""
        page = outcome.pending.page
        if (
            outcome.ok
            and isinstance(outcome.pending.command, RefreshWaitingList)
            and page is not None
            and page.has_more
            and not self.active
        ):
            self.active = True
            self._initial = False
            self._pages = 0
            return self.step(outcome)
        return Progress.NONE

    def step(self, outcome: Outcome) -> Progress:
        """A page's command ended: queue the next page or finish."""
        if not self.active:
            return Progress.NONE
        if not outcome.ok:
            self.active = False
            if self._initial:
                return Progress.FAILED
            logger.info("periodic resync failed: %s", failure_text(outcome))
            self.schedule()
            return Progress.NONE
        page = outcome.pending.page
        self._pages += 1
        if page is not None and page.has_more and self._pages < MAX_RESYNC_PAGES:
            offset = page.offset + len(page.customers)
            self._tracker.enqueue(
                RefreshWaitingList(offset=offset, limit=RESYNC_PAGE), internal=True, front=True
            )
            return Progress.NEXT_PAGE
        self.active = False
        self.schedule()
        return Progress.FIRST_DONE if self._initial else Progress.DONE

    def dropped(self) -> None:
        """The socket closed: a running resync is abandoned (its commands are dropped with it)."""
        self.active = False

    def schedule(self) -> None:
        """Plan the next periodic resync ``interval`` from now (or none)."""
        interval = self._interval
        self.next_at = self._clock.monotonic() + interval if interval else None

    def request(self) -> None:
        """Make a periodic resync due now."""
        self.next_at = self._clock.monotonic()

    def due(self, now: float) -> bool:
        """Whether a periodic resync should start now (the caller checks the connection is live)."""
        return not self.active and self.next_at is not None and now >= self.next_at

    def deadline(self) -> float | None:
        """When the next periodic resync is due, unless one is running."""
        return None if self.active else self.next_at


def failure_text(outcome: Outcome) -> str:
    """The failure text of a failed page ("" for a success)."""
    return outcome.event.text if isinstance(outcome.event, CommandFailed) else ""


HttpCaller = Callable[[HttpCall], Awaitable[tuple[int, bytes]]]

_T = TypeVar("_T")

MAX_OPEN_READS = 64
"""List reads watched at once at most (see :meth:`LiveChanges.begin`)."""

_LIVE_CHANGES: Final = (HumanRequested, WaitingChanged, AssignmentChanged, ConversationUpdated)
"""Events that change a conversation's waiting, assignment or status."""
_MY_CHANGES: Final = frozenset(
    {
        CommandKind.TAKE_OVER,
        CommandKind.RELEASE,
        CommandKind.RESOLVE,
        CommandKind.HAND_BACK,
        CommandKind.REPLY,
    }
)
"""My commands whose success changes them (a reply assigns the customer on the dashboard)."""


class LiveChanges:
    """The conversations live events changed while each list read was on its way.

    :meth:`observe` must see every event the client emits; :meth:`read` wraps a REST list
    request, :meth:`begin` and :meth:`end` bracket one asked over the socket (the server may
    build its answer before a broadcast it sends first). Bounded: each read holds the keys
    changed during it, until it ends, and at most :data:`MAX_OPEN_READS` are watched.
    """

    def __init__(self, max_reads: int = MAX_OPEN_READS) -> None:
        self._reads: list[set[str]] = []
        self._max = max_reads

    def observe(self, event: Event) -> None:
        """Note the conversation of an event that changes its state, for every read in flight."""
        if not self._reads:
            return
        if isinstance(event, _LIVE_CHANGES) or (
            isinstance(event, CommandSucceeded) and event.kind in _MY_CHANGES
        ):
            key = event.conversation
            if key:
                for changed in self._reads:
                    changed.add(key)

    def begin(self) -> set[str]:
        """Start watching for one read; :meth:`end` it with what this returns.

        At most ``max_reads`` are watched: beyond, the oldest stops growing (a read whose
        answer never came and whose end was missed cannot make the watch grow for ever).
        """
        changed: set[str] = set()
        self._reads.append(changed)
        if len(self._reads) > self._max:
            del self._reads[0]
        return changed

    def end(self, changed: set[str]) -> frozenset[str]:
        """Stop watching a read begun with :meth:`begin`; the conversations changed meanwhile."""
        for index, watched in enumerate(self._reads):
            if watched is changed:
                del self._reads[index]
                break
        return frozenset(changed)

    async def read(self, request: Awaitable[_T]) -> tuple[_T, frozenset[str]]:
        """Await ``request``; return its result and the conversations changed meanwhile."""
        changed = self.begin()
        try:
            result = await request
        finally:
            done = self.end(changed)
        return result, done


def stamp(page: WaitingListPage, changed: frozenset[str]) -> WaitingListPage:
    """``page`` naming ``changed`` as changed live too (see :class:`LiveChanges`)."""
    return replace(page, changed_live=page.changed_live | changed) if changed else page


def stamped(events: Sequence[Event], changed: frozenset[str]) -> Sequence[Event]:
    """``events`` with their list pages stamped (:func:`stamp`)."""
    if not changed:
        return events
    return [stamp(e, changed) if isinstance(e, WaitingListPage) else e for e in events]


async def list_everyone(
    codec: DialectCodec, http_call: HttpCaller, emit: Callable[[Event], None], live: LiveChanges
) -> None:
    """After a connection's first resync: one REST page of every customer, AI-handled too.

    The dashboard's socket resync (``get_stopped_customers``) lists only the customers waiting
    for a human, so those the bot handles were missing from the inbox until they wrote again.
    Where the socket resync is not already the REST list (org) and the dialect has a REST
    list (dashboard ``GET /customers``, newest activity first; PROTOCOL.md 2.6), its first
    page is read once per connection and emitted as a page that adds rows and drops nobody.
    Failures are logged only: the waiting list already came. Cancellation propagates.
    """
    command = RefreshWaitingList(offset=0, limit=EVERYONE_PAGE)
    try:
        if not isinstance(codec.encode(command), WsFrame):
            return  # the resync itself read the REST list
        call = rest_call(codec, command)
    except EncodeError:
        return
    try:
        (status, body), changed = await live.read(http_call(call))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.info("reading the customer list failed: %s", exc)
        return
    for event in stamped(codec.parse_response(command, status, body), changed):
        if isinstance(event, WaitingListPage):
            emit(replace(event, offset=0, has_more=False, complete_list=False, complete_assignments=False))
        elif isinstance(event, CommandFailed):
            logger.info("reading the customer list failed: %s", event.text or event.reason.value)
