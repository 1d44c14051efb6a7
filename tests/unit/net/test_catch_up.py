"""CatchUp: which conversations a resync shows were missed, in what order, how many, and only once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from tray_agent.core.events import ConversationSummary, Event, MessageReceived, SenderKind, WaitingListPage
from tray_agent.core.protocol.base import HttpCall
from tray_agent.core.protocol.org import OrgCodec
from tray_agent.net.catch_up import CatchUp

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def row(key: str, minutes: float, **kw: object) -> ConversationSummary:
    return ConversationSummary(conversation=key, last_message_at=at(minutes), **kw)  # type: ignore[arg-type]


def page(*rows: ConversationSummary) -> WaitingListPage:
    return WaitingListPage(customers=rows)


def live(key: str, minutes: float) -> MessageReceived:
    return MessageReceived(conversation=key, text="live", sent_at=at(minutes), message_id=f"{key}-live")


class FakeServer:
    """History per chat (oldest first); answers the codec's GET .../messages calls newest first."""

    def __init__(self, history: dict[str, list[tuple[str, float]]]) -> None:
        self.history = history
        self.calls: list[str] = []
        self.failing: set[str] = set()

    async def fetch(self, call: HttpCall) -> tuple[int, bytes]:
        chat = call.path.split("/")[3]
        self.calls.append(chat)
        if chat in self.failing:
            raise OSError("connection reset")
        rows = [
            {"id": f"{chat}-{text}", "chat_id": chat, "sender_type": "customer", "content": text,
             "created_at": at(minutes).isoformat()}
            for text, minutes in reversed(self.history.get(chat, []))
        ]  # fmt: skip
        return 200, json.dumps({"messages": rows, "total": len(rows)}).encode()


class Sink:
    def __init__(self, catch_up: CatchUp) -> None:
        self.catch_up = catch_up
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:  # what the client's _emit does
        self.catch_up.observe(event)
        self.events.append(event)

    def texts(self) -> list[tuple[str, str]]:
        return [(e.conversation, e.text) for e in self.events if isinstance(e, MessageReceived)]


def _resync(catch_up: CatchUp, sink: Sink, *rows: ConversationSummary) -> None:
    catch_up.resync_started()
    sink(page(*rows))


@pytest.mark.asyncio
async def test_first_resync_fetches_nothing_then_missed_messages_are_delivered_once() -> None:
    catch_up = CatchUp(OrgCodec(user_id="me"))
    sink = Sink(catch_up)
    server = FakeServer({"a": [("old", 0), ("missed 1", 5), ("missed 2", 6)]})
    _resync(catch_up, sink, row("a", 0))  # first load: no baseline
    await catch_up.run(server.fetch, sink)
    assert server.calls == []
    sink(live("a", 1))  # delivered live before the socket dropped
    _resync(catch_up, sink, row("a", 6))  # after the reconnect
    await catch_up.run(server.fetch, sink)
    assert sink.texts() == [("a", "live"), ("a", "missed 1"), ("a", "missed 2")]
    assert all(e.sender is SenderKind.CUSTOMER for e in sink.events if isinstance(e, MessageReceived))
    _resync(catch_up, sink, row("a", 6))
    await catch_up.run(server.fetch, sink)
    assert server.calls == ["a"]
    assert len(sink.texts()) == 3


@pytest.mark.asyncio
async def test_live_messages_during_the_resync_do_not_hide_older_missed_ones() -> None:
    catch_up = CatchUp(OrgCodec(user_id="me"))
    sink = Sink(catch_up)
    server = FakeServer({"a": [("missed", 5), ("live", 7)]})
    _resync(catch_up, sink, row("a", 0))
    catch_up.resync_started()
    sink(live("a", 7))  # arrives on the new socket while the resync pages are in flight
    sink(page(row("a", 7)))
    await catch_up.run(server.fetch, sink)
    assert ("a", "missed") in sink.texts()


@pytest.mark.asyncio
async def test_mine_then_waiting_then_others_newest_first_and_bounded() -> None:
    catch_up = CatchUp(OrgCodec(user_id="me"), max_conversations=3)
    sink = Sink(catch_up)
    keys = ["other-old", "other-new", "waiting", "mine"]
    server = FakeServer({k: [("x", 9)] for k in keys})
    _resync(catch_up, sink, *(row(k, 0) for k in keys))
    sink(live("mine", 1))
    _resync(
        catch_up,
        sink,
        row("other-old", 8),
        row("other-new", 9),
        row("waiting", 5, waiting=True),
        row("mine", 4, assigned=True, assigned_to_me=True),
    )
    await catch_up.run(server.fetch, sink)
    assert server.calls == ["mine", "waiting", "other-new"]
    # The one left over is still due at the next resync (its message was never delivered).
    _resync(catch_up, sink, row("other-old", 8))
    await catch_up.run(server.fetch, sink)
    assert server.calls[-1] == "other-old"


@pytest.mark.asyncio
async def test_a_failed_fetch_is_retried_at_the_next_resync_and_others_still_come() -> None:
    catch_up = CatchUp(OrgCodec(user_id="me"))
    sink = Sink(catch_up)
    server = FakeServer({"a": [("for a", 5)], "b": [("for b", 5)]})
    _resync(catch_up, sink, row("a", 0), row("b", 0))
    server.failing.add("a")
    _resync(catch_up, sink, row("a", 5), row("b", 5))
    await catch_up.run(server.fetch, sink)
    assert sink.texts() == [("b", "for b")]
    server.failing.clear()
    _resync(catch_up, sink, row("a", 5), row("b", 5))
    await catch_up.run(server.fetch, sink)
    assert sink.texts() == [("b", "for b"), ("a", "for a")]


@pytest.mark.asyncio
async def test_a_conversation_never_heard_of_uses_the_newest_time_seen() -> None:
    catch_up = CatchUp(OrgCodec(user_id="me"))
    sink = Sink(catch_up)
    server = FakeServer({"new": [("before", 1), ("during the outage", 5)]})
    _resync(catch_up, sink, row("a", 2))
    _resync(catch_up, sink, row("a", 2), row("new", 5))
    await catch_up.run(server.fetch, sink)
    assert sink.texts() == [("new", "during the outage")]


@pytest.mark.asyncio
async def test_a_message_delivered_live_during_the_resync_is_not_caught_up_again() -> None:
    # Found by the soak test: messages that kept arriving live while a resync ran were fetched in
    # the history page too and emitted a second time (the store folded them, the client did not).
    catch_up = CatchUp(OrgCodec(user_id="me"))
    sink = Sink(catch_up)
    server = FakeServer({"a": [("old", 0), ("missed", 5), ("during", 6)]})
    _resync(catch_up, sink, row("a", 0))
    await catch_up.run(server.fetch, sink)
    _resync(catch_up, sink, row("a", 6))  # the socket was down at 5; 'during' came live at 6
    sink(MessageReceived(conversation="a", text="during", sent_at=at(6), message_id="a-during"))
    await catch_up.run(server.fetch, sink)
    assert server.calls == ["a"]
    assert sink.texts().count(("a", "during")) == 1
    assert ("a", "missed") in sink.texts()


@pytest.mark.asyncio
async def test_live_messages_that_arrive_while_the_history_is_read_do_not_push_out_its_copies() -> None:
    # Found by the soak test (one message delivered twice in 200,000): the page was read, then
    # more live messages arrived before its answer was handled and pushed the newest delivered
    # ones out of the page-sized memory, so a copy on the page counted as missed.
    catch_up = CatchUp(OrgCodec(user_id="me"), page_limit=3)
    sink = Sink(catch_up)
    for text, minute in (("m1", 1), ("m2", 2), ("m3", 3)):
        sink(MessageReceived(conversation="a", text=text, sent_at=at(minute), message_id=f"a-{text}"))
    server = FakeServer({"a": [("m1", 1), ("m2", 2), ("m3", 3.4)]})  # stamped finer than the live copy
    read = server.fetch

    async def read_then_more_arrive(call: HttpCall) -> tuple[int, bytes]:
        answer = await read(call)
        for text, minute in (("m4", 4), ("m5", 5), ("m6", 6)):
            sink(MessageReceived(conversation="a", text=text, sent_at=at(minute), message_id=f"a-{text}"))
        return answer

    _resync(catch_up, sink, row("a", 0))
    await catch_up.run(server.fetch, sink)
    _resync(catch_up, sink, row("a", 3.4))
    await catch_up.run(read_then_more_arrive, sink)
    assert server.calls == ["a"]
    assert sink.texts() == [("a", f"m{n}") for n in range(1, 7)]


@pytest.mark.asyncio
async def test_two_overlapping_catch_ups_of_one_conversation_each_see_what_arrived_meanwhile() -> None:
    catch_up = CatchUp(OrgCodec(user_id="me"), page_limit=1)
    sink = Sink(catch_up)
    sink(live("a", 1))
    server = FakeServer({"a": [("m2", 2)]})
    release = asyncio.Event()

    async def slow(call: HttpCall) -> tuple[int, bytes]:
        await release.wait()
        return await server.fetch(call)

    _resync(catch_up, sink, row("a", 0))
    await catch_up.run(server.fetch, sink)
    _resync(catch_up, sink, row("a", 2))
    first = asyncio.ensure_future(catch_up.run(slow, sink))
    await asyncio.sleep(0)
    _resync(catch_up, sink, row("a", 2))
    second = asyncio.ensure_future(catch_up.run(slow, sink))
    await asyncio.sleep(0)
    sink(MessageReceived(conversation="a", text="m2", sent_at=at(2), message_id="a-m2"))  # live, meanwhile
    sink(live("a", 3))  # pushes it out of the one-message memory
    release.set()
    await asyncio.gather(first, second)
    assert server.calls == ["a", "a"]
    assert sink.texts().count(("a", "m2")) == 1
    assert catch_up._arriving == {}


@pytest.mark.asyncio
async def test_the_late_live_copy_of_a_caught_up_message_is_recognised_once() -> None:
    # Found by the soak test: the history read after a resync held messages whose broadcast was
    # still on its way; the client emitted both. The client drops a copy is_copy() recognises.
    catch_up = CatchUp(OrgCodec(user_id="me"))
    sink = Sink(catch_up)
    server = FakeServer({"a": [("old", 0), ("in flight", 5)]})
    _resync(catch_up, sink, row("a", 0))
    await catch_up.run(server.fetch, sink)
    _resync(catch_up, sink, row("a", 5))
    await catch_up.run(server.fetch, sink)
    assert sink.texts() == [("a", "in flight")]
    copy = MessageReceived(conversation="a", text="in flight", sent_at=at(5), message_id="a-in flight")
    assert catch_up.is_copy(copy)
    assert not catch_up.is_copy(copy)  # one copy per caught-up message
    assert not catch_up.is_copy(live("a", 6))


@pytest.mark.asyncio
async def test_a_list_read_outside_a_resync_does_not_count_as_delivered() -> None:
    # Found under load: the dashboard's customers page read after connecting arrived after a lost
    # broadcast and its row's activity was taken as delivered, so the next resync fetched nothing.
    catch_up = CatchUp(OrgCodec(user_id="me"))
    sink = Sink(catch_up)
    server = FakeServer({"a": [("old", 0), ("lost", 5)]})
    _resync(catch_up, sink, row("a", 0))
    await catch_up.run(server.fetch, sink)
    sink(page(row("a", 5)))  # read outside a resync: shows the activity of the lost message
    _resync(catch_up, sink, row("a", 5))
    await catch_up.run(server.fetch, sink)
    assert sink.texts() == [("a", "lost")]


def test_the_recent_messages_table_keeps_the_conversations_heard_from_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tray_agent.net.catch_up.MAX_RECENT_CONVERSATIONS", 3)
    catch_up = CatchUp(OrgCodec(user_id="me"))
    for key, minute in (("a", 0), ("b", 1), ("c", 2), ("a", 3), ("d", 4)):
        catch_up.observe(live(key, minute))
    # "b" was heard from longest ago once "a" spoke again; the table stays bounded.
    assert list(catch_up._recent) == ["c", "a", "d"]
    assert [m.sent_at for m in catch_up._recent["a"]] == [at(0), at(3)]
