"""The resync without a socket: pages queued in the tracker, first and periodic resyncs, the schedule."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers.fakes import SettableClock
from tray_agent.core.commands import Command, RefreshWaitingList, TakeOver
from tray_agent.core.events import (
    AssignmentChanged,
    CommandFailed,
    CommandKind,
    CommandSucceeded,
    ConversationSummary,
    ConversationUpdated,
    Event,
    FailureReason,
    HumanRequested,
    MessageReceived,
    WaitingChanged,
    WaitingListPage,
)
from tray_agent.core.protocol.base import HttpCall
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.protocol.org import OrgCodec
from tray_agent.net.resync import (
    EVERYONE_PAGE,
    MAX_RESYNC_PAGES,
    RESYNC_PAGE,
    LiveChanges,
    Progress,
    Resync,
    list_everyone,
    stamped,
)
from tray_agent.net.tracker import CommandTracker, Outcome, PendingCommand, Transport

INTERVAL = 60.0


def _resync(interval: float | None = INTERVAL) -> tuple[Resync, CommandTracker, SettableClock]:
    tracker = CommandTracker(10.0)
    clock = SettableClock()
    return Resync(tracker, clock, interval), tracker, clock


def _page(rows: int, *, offset: int = 0, has_more: bool) -> WaitingListPage:
    customers = tuple(ConversationSummary(conversation=f"p/c{offset + i}") for i in range(rows))
    return WaitingListPage(customers=customers, offset=offset, has_more=has_more)


def _answer(tracker: CommandTracker, page: WaitingListPage | None, *, ok: bool = True) -> Outcome:
    """Send the queued page command and answer it (with ``page``, or a failure)."""
    (pending,) = tracker.take_sendable(live=False)
    tracker.mark_sent(pending, Transport.WS, 0.0)
    pending.page = page
    if ok:
        return tracker.answered(pending, (), 200)
    return tracker.fail(pending, FailureReason.SERVER_ERROR, "boom")


def _offsets(tracker: CommandTracker) -> list[int]:
    commands = [p.command for p in tracker.outbox]
    return [c.offset for c in commands if isinstance(c, RefreshWaitingList)]


def test_resync_pages_the_whole_list_then_is_live() -> None:
    resync, tracker, clock = _resync()
    resync.start(initial=True)
    assert resync.active
    (first,) = tracker.outbox
    assert first.internal
    assert first.command == RefreshWaitingList(
        offset=0, limit=RESYNC_PAGE, command_id=first.command.command_id
    )
    assert resync.step(_answer(tracker, _page(3, has_more=True))) is Progress.NEXT_PAGE
    assert _offsets(tracker) == [3]
    assert resync.step(_answer(tracker, _page(2, offset=3, has_more=False))) is Progress.FIRST_DONE
    assert not resync.active
    assert resync.next_at == clock.monotonic() + INTERVAL


def test_resync_a_failed_first_resync_drops_the_connection_a_periodic_one_is_rescheduled() -> None:
    resync, tracker, clock = _resync()
    resync.start(initial=True)
    assert resync.step(_answer(tracker, None, ok=False)) is Progress.FAILED
    assert resync.next_at is None  # the reconnect resyncs anyway
    resync.start(initial=False)
    assert resync.step(_answer(tracker, None, ok=False)) is Progress.NONE
    assert not resync.active
    assert resync.next_at == clock.monotonic() + INTERVAL


def test_resync_a_periodic_resync_ends_done_not_first_done() -> None:
    resync, tracker, _ = _resync()
    resync.start(initial=False)
    assert resync.step(_answer(tracker, _page(1, has_more=False))) is Progress.DONE


def test_resync_stops_after_the_page_limit() -> None:
    resync, tracker, _ = _resync()
    resync.start(initial=False)
    for index in range(MAX_RESYNC_PAGES - 1):
        assert resync.step(_answer(tracker, _page(1, offset=index, has_more=True))) is Progress.NEXT_PAGE
    assert resync.step(_answer(tracker, _page(1, offset=MAX_RESYNC_PAGES, has_more=True))) is Progress.DONE
    assert not tracker.outbox


def test_resync_a_page_after_a_drop_is_ignored() -> None:
    resync, tracker, _ = _resync()
    resync.start(initial=True)
    outcome = _answer(tracker, _page(1, has_more=True))
    resync.dropped()
    assert resync.step(outcome) is Progress.NONE
    assert not tracker.outbox


def test_resync_the_agents_refresh_reads_the_rest_when_its_page_says_more() -> None:
    resync, tracker, _ = _resync()
    refresh = PendingCommand(RefreshWaitingList(offset=0, limit=RESYNC_PAGE), page=_page(2, has_more=True))
    outcome = Outcome(refresh, tracker.answered(refresh, (), 200).event)
    assert resync.follow(outcome) is Progress.NEXT_PAGE
    assert resync.active
    assert _offsets(tracker) == [2]
    # While a resync runs, another refresh does not start a second one.
    assert resync.follow(outcome) is Progress.NONE
    assert _offsets(tracker) == [2]


def test_resync_other_commands_and_last_pages_are_not_followed() -> None:
    resync, tracker, _ = _resync()
    take = PendingCommand(TakeOver("p/c1"))
    assert resync.follow(Outcome(take, tracker.answered(take, (), 200).event)) is Progress.NONE
    last = PendingCommand(RefreshWaitingList(), page=_page(1, has_more=False))
    assert resync.follow(Outcome(last, tracker.answered(last, (), 200).event)) is Progress.NONE
    assert not resync.active


def test_resync_periodic_schedule_and_request() -> None:
    resync, _, clock = _resync()
    assert not resync.due(clock.monotonic())
    assert resync.deadline() is None
    resync.schedule()
    assert resync.deadline() == clock.monotonic() + INTERVAL
    clock.advance(INTERVAL)
    assert resync.due(clock.monotonic())
    resync.start(initial=False)
    assert not resync.due(clock.monotonic())  # one at a time
    assert resync.deadline() is None
    resync.dropped()
    resync.request()
    assert resync.due(clock.monotonic())


def test_resync_without_an_interval_plans_no_periodic_one() -> None:
    resync, tracker, _ = _resync(interval=None)
    resync.start(initial=True)
    resync.step(_answer(tracker, _page(1, has_more=False)))
    assert resync.next_at is None


# -- the list of everyone ---------------------------------------------------------------------------


class FakeHttp:
    """Answers every call with one status and body, and records the calls."""

    def __init__(self, status: int = 200, body: bytes = b"[]", error: Exception | None = None) -> None:
        self.status, self.body, self.error = status, body, error
        self.calls: list[HttpCall] = []

    async def __call__(self, call: HttpCall) -> tuple[int, bytes]:
        self.calls.append(call)
        if self.error is not None:
            raise self.error
        return self.status, self.body


class PagedCodec(DashboardCodec):
    """The dashboard codec whose REST answer is one given page (or a failure)."""

    def __init__(self, answer: Event) -> None:
        super().__init__()
        self.answer = answer

    def parse_response(self, command: Command, status: int, body: bytes) -> tuple[Event, ...]:
        return (self.answer,)


@pytest.mark.asyncio
async def test_list_everyone_adds_one_rest_page_and_drops_nobody() -> None:
    codec = PagedCodec(_page(3, offset=7, has_more=True))
    http = FakeHttp()
    emitted: list[Event] = []
    await list_everyone(codec, http, emitted.append, LiveChanges())
    (call,) = http.calls
    assert call.method == "GET"
    assert ("limit", str(EVERYONE_PAGE)) in call.query
    (page,) = emitted
    assert isinstance(page, WaitingListPage)
    assert (page.offset, page.has_more, page.complete_list, page.complete_assignments) == (
        0,
        False,
        False,
        False,
    )
    assert len(page.customers) == 3


@pytest.mark.asyncio
async def test_list_everyone_failures_are_only_logged() -> None:
    emitted: list[Event] = []
    await list_everyone(DashboardCodec(), FakeHttp(error=OSError("down")), emitted.append, LiveChanges())
    refusal = CommandFailed(command_id="x", kind=RefreshWaitingList().kind, reason=FailureReason.SERVER_ERROR)
    await list_everyone(PagedCodec(refusal), FakeHttp(), emitted.append, LiveChanges())
    assert emitted == []


@pytest.mark.asyncio
async def test_list_everyone_is_skipped_where_the_resync_already_read_the_rest_list() -> None:
    http = FakeHttp()
    await list_everyone(OrgCodec(org_id="o1"), http, lambda event: None, LiveChanges())
    assert http.calls == []


# -- rows made stale while a REST list was read -------------------------------------------------------


@pytest.mark.asyncio
async def test_list_everyone_names_the_conversations_changed_while_it_was_read() -> None:
    live = LiveChanges()
    gate = asyncio.Event()

    class SlowHttp(FakeHttp):
        async def __call__(self, call: HttpCall) -> tuple[int, bytes]:
            await gate.wait()
            return await super().__call__(call)

    emitted: list[Event] = []
    task = asyncio.ensure_future(
        list_everyone(PagedCodec(_page(2, has_more=False)), SlowHttp(), emitted.append, live)
    )
    await asyncio.sleep(0)
    live.observe(AssignmentChanged(conversation="p/c0"))
    gate.set()
    await task
    (page,) = emitted
    assert isinstance(page, WaitingListPage)
    assert page.changed_live == frozenset({"p/c0"})
    live.observe(AssignmentChanged(conversation="p/c1"))  # after the read: nobody to tell
    assert live._reads == []


@pytest.mark.asyncio
async def test_live_changes_count_state_changes_and_my_confirmed_commands_only() -> None:
    live = LiveChanges()
    gate = asyncio.Event()

    async def request() -> str:
        await gate.wait()
        return "answer"

    first = asyncio.ensure_future(live.read(request()))
    await asyncio.sleep(0)
    for event in (
        HumanRequested(conversation="a"),
        WaitingChanged(conversation="b"),
        ConversationUpdated(conversation="c"),
        CommandSucceeded(command_id="1", kind=CommandKind.TAKE_OVER, conversation="d"),
        CommandSucceeded(command_id="2", kind=CommandKind.REPLY, conversation="e"),
        CommandSucceeded(command_id="3", kind=CommandKind.HISTORY, conversation="x"),
        MessageReceived(conversation="y", text="hi"),  # its row's last message is merged by time
        AssignmentChanged(conversation=""),
    ):
        live.observe(event)
    second = asyncio.ensure_future(live.read(request()))
    await asyncio.sleep(0)
    live.observe(AssignmentChanged(conversation="f"))
    gate.set()
    assert await first == ("answer", frozenset("abcdef"))
    assert await second == ("answer", frozenset("f"))
    assert live._reads == []


@pytest.mark.asyncio
async def test_a_failed_read_is_forgotten() -> None:
    live = LiveChanges()

    async def broken() -> None:
        raise OSError("reset")

    with pytest.raises(OSError, match="reset"):
        await live.read(broken())
    assert live._reads == []


def test_stamped_marks_list_pages_only_and_keeps_their_own_marks() -> None:
    page = WaitingListPage(changed_live=frozenset({"a"}))
    other = MessageReceived(conversation="b", text="hi")
    events = (page, other)
    assert stamped(events, frozenset()) is events
    marked = stamped(events, frozenset({"b"}))
    assert marked[1] is other
    assert isinstance(marked[0], WaitingListPage)
    assert marked[0].changed_live == frozenset({"a", "b"})


def test_begin_and_end_bracket_a_read_asked_over_the_socket() -> None:
    live = LiveChanges()
    first, second = live.begin(), live.begin()
    live.observe(AssignmentChanged(conversation="a"))
    assert live.end(first) == frozenset({"a"})
    live.observe(AssignmentChanged(conversation="b"))
    assert live.end(second) == frozenset({"a", "b"})
    assert live.end(second) == frozenset({"a", "b"})  # ending twice changes nothing
    assert live._reads == []


def test_reads_whose_end_never_came_stop_being_watched_beyond_the_bound() -> None:
    live = LiveChanges(max_reads=2)
    lost = live.begin()
    kept = [live.begin(), live.begin()]
    live.observe(WaitingChanged(conversation="a"))
    assert lost == set()  # no longer watched: it grows no more
    assert [live.end(k) for k in kept] == [frozenset({"a"})] * 2
    assert live.end(lost) == frozenset()
    assert live._reads == []
