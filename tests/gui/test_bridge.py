"""StoreBridge: fine-grained signals, coalesced with one single-shot leading-edge timer."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from tests.gui.conftest import connected, escalation
from tray_agent.core.events import ConnectionChanged, ConnectionState, MessageReceived, WaitingChanged
from tray_agent.core.state import ConnectionInfo, Store
from tray_agent.ui.bridge import FLUSH_INTERVAL_MS, MAX_LIST_INTERVAL_MS, QUIET_S, FlushPacer, StoreBridge

pytestmark = pytest.mark.gui


class FakeMonotonic:
    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def bridge(qtbot: QtBot, store: Store) -> StoreBridge:
    bridge = StoreBridge(store)
    yield bridge
    bridge.close()


def test_bridge_connection_changed_once_per_burst(qtbot: QtBot, store: Store, bridge: StoreBridge) -> None:
    seen: list[ConnectionInfo] = []
    bridge.connection_changed.connect(seen.append)
    with qtbot.waitSignal(bridge.flushed, timeout=1000):
        store.dispatch(ConnectionChanged(state=ConnectionState.CONNECTING))
        store.dispatch(ConnectionChanged(state=ConnectionState.RESYNCING))
        store.dispatch(connected())
    assert [info.state for info in seen] == [ConnectionState.CONNECTED]
    assert not bridge.flush_pending  # idle: no timer runs


def test_bridge_conversations_changed_carries_the_keys(
    qtbot: QtBot, store: Store, bridge: StoreBridge
) -> None:
    with qtbot.waitSignal(bridge.conversations_changed, timeout=1000) as blocker:
        store.dispatch(MessageReceived(conversation="p/1", text="hi", customer_name="Ann"))
        store.dispatch(MessageReceived(conversation="p/2", text="yo", customer_name="Bob"))
    assert blocker.args == [frozenset({"p/1", "p/2"})]


def test_bridge_badge_waiting_and_unread(qtbot: QtBot, store: Store, bridge: StoreBridge) -> None:
    badges: list[int] = []
    unread: list[int] = []
    waiting: list[frozenset[str]] = []
    bridge.badge_changed.connect(badges.append)
    bridge.unread_changed.connect(unread.append)
    bridge.waiting_changed.connect(waiting.append)
    with qtbot.waitSignal(bridge.flushed, timeout=1000):
        store.dispatch(escalation("p/1", "Ann", minutes_ago=3))
        store.dispatch(escalation("p/2", "Bob", minutes_ago=5))
        store.dispatch(MessageReceived(conversation="p/3", text="hi", customer_name="Cy"))
    assert badges == [2]
    assert unread == [store.state.unread_total]
    assert waiting == [frozenset({"p/1", "p/2"})]  # the keys; p/3 is not waiting
    assert [c.key for c in bridge.state.waiting_list()] == ["p/2", "p/1"]  # oldest first
    with qtbot.waitSignal(bridge.flushed, timeout=1000):
        store.dispatch(MessageReceived(conversation="p/3", text="more", customer_name="Cy"))
        store.dispatch(MessageReceived(conversation="p/1", text="still here", customer_name="Ann"))
    assert waiting[-1] == frozenset({"p/1"})  # a waiting customer's entry changed, p/3 does not wait
    with qtbot.waitSignal(bridge.flushed, timeout=1000):
        store.dispatch(WaitingChanged(conversation="p/2", waiting=False))
    assert waiting[-1] == frozenset({"p/2"})  # stopped waiting: told too


def test_bridge_no_signal_for_an_unrelated_change(qtbot: QtBot, store: Store, bridge: StoreBridge) -> None:
    with qtbot.waitSignal(bridge.flushed, timeout=1000):
        store.dispatch(connected())
    fired: list[object] = []
    bridge.connection_changed.connect(fired.append)
    bridge.badge_changed.connect(fired.append)
    with qtbot.waitSignal(bridge.conversations_changed, timeout=1000):
        store.dispatch(MessageReceived(conversation="p/9", text="hi"))
    assert fired == []


def test_bridge_leading_edge_then_trailing_window(qtbot: QtBot, store: Store) -> None:
    monotonic = FakeMonotonic()
    bridge = StoreBridge(store, monotonic=monotonic)
    try:
        store.dispatch(MessageReceived(conversation="p/1", text="a"))
        assert bridge.pending_delay_ms == 0  # leading edge: the next loop turn
        with qtbot.waitSignal(bridge.flushed, timeout=1000):
            pass
        monotonic.value += 0.005  # 5 ms after the flush
        store.dispatch(MessageReceived(conversation="p/1", text="b"))
        assert bridge.pending_delay_ms == FLUSH_INTERVAL_MS - 5
        store.dispatch(MessageReceived(conversation="p/1", text="c"))  # joins the pending flush
        with qtbot.waitSignal(bridge.conversations_changed, timeout=1000) as blocker:
            pass
        assert blocker.args == [frozenset({"p/1"})]
        assert not bridge.flush_pending
    finally:
        bridge.close()


def test_bridge_close_unsubscribes(qtbot: QtBot, store: Store) -> None:
    bridge = StoreBridge(store)
    bridge.close()
    store.dispatch(connected())
    assert not bridge.flush_pending


def test_flush_pacer_stretches_under_sustained_load_then_returns_at_once() -> None:
    pacer = FlushPacer()
    now = 100.0
    intervals: list[float] = []
    for _ in range(7):  # a change every millisecond, a list flush at each interval's end
        due = now + pacer.interval
        while now < due:
            now = round(now + 0.001, 6)
            pacer.changed(now)
        pacer.flushed(now, found=True)
        intervals.append(round(pacer.interval * 1000))
    assert MAX_LIST_INTERVAL_MS == 64
    assert intervals == [16, 16, 32, 64, 64, 64, 64]
    pacer.changed(now + QUIET_S + 0.001)  # the load stopped: the next change is told at the base pace
    assert pacer.interval * 1000 == FLUSH_INTERVAL_MS
    assert not pacer.stretched


def test_flush_pacer_single_changes_never_stretch() -> None:
    pacer = FlushPacer()
    now = 100.0
    for _ in range(10):  # a change now and then (a human's pace): each flush finds it
        now += 0.5
        pacer.changed(now)
        pacer.flushed(now + 0.001, found=True)
    assert pacer.interval * 1000 == FLUSH_INTERVAL_MS


def test_flush_pacer_flush_without_news_resets() -> None:
    pacer = FlushPacer()
    now = 100.0
    for _ in range(5):
        now += 0.016
        pacer.changed(now - 0.001)
        pacer.flushed(now, found=True)
    assert pacer.stretched
    pacer.flushed(now + 0.02, found=True)  # no change in the last 16 ms: the load stopped
    assert not pacer.stretched
    for _ in range(5):
        now += 0.016
        pacer.changed(now - 0.001)
        pacer.flushed(now, found=True)
    pacer.flushed(now + 0.001, found=False)
    assert not pacer.stretched


def _busy_until_the_list_flush(qtbot: QtBot, store: Store, bridge: StoreBridge, clock: FakeMonotonic) -> None:
    """A change every 8 ms (fake time) until the list flush is due, then that flush."""
    due = clock.value + bridge.list_interval_ms / 1000.0
    with qtbot.waitSignal(bridge.conversations_changed, timeout=1000):
        while clock.value < due:
            clock.value += 0.008
            store.dispatch(MessageReceived(conversation="p/1", text=f"at {clock.value}"))


def test_bridge_under_load_badge_keeps_its_pace_the_list_waits(qtbot: QtBot, store: Store) -> None:
    monotonic = FakeMonotonic()
    bridge = StoreBridge(store, monotonic=monotonic)
    lists: list[frozenset[str]] = []
    badges: list[int] = []
    bridge.conversations_changed.connect(lists.append)
    bridge.badge_changed.connect(badges.append)
    try:
        for _ in range(4):  # sustained load: every list flush finds fresh changes
            _busy_until_the_list_flush(qtbot, store, bridge, monotonic)
        assert bridge.list_interval_ms > FLUSH_INTERVAL_MS
        told = len(lists)
        # The next list flush is due later; a new waiting customer moves the badge at the base pace.
        monotonic.value += 0.008
        store.dispatch(escalation("p/2", "Bob"))
        assert bridge.pending_delay_ms is not None
        assert bridge.pending_delay_ms <= FLUSH_INTERVAL_MS
        monotonic.value += 0.008
        with qtbot.waitSignal(bridge.badge_changed, timeout=1000):
            pass
        assert badges == [1]
        assert len(lists) == told  # the list signals wait for their stretched interval
        assert bridge.flush_pending
        monotonic.value += bridge.list_interval_ms / 1000.0
        with qtbot.waitSignal(bridge.conversations_changed, timeout=1000) as blocker:
            pass
        assert blocker.args == [frozenset({"p/2"})]
        # The load stops: the next change is flushed on the next loop turn, at the base pace.
        monotonic.value += 1.0
        store.dispatch(MessageReceived(conversation="p/1", text="later"))
        assert bridge.pending_delay_ms == 0
        assert bridge.list_interval_ms == FLUSH_INTERVAL_MS
        with qtbot.waitSignal(bridge.conversations_changed, timeout=1000):
            pass
    finally:
        bridge.close()


def test_bridge_flush_now_tells_the_list_at_once_under_load(qtbot: QtBot, store: Store) -> None:
    monotonic = FakeMonotonic()
    bridge = StoreBridge(store, monotonic=monotonic)
    try:
        for _ in range(5):
            _busy_until_the_list_flush(qtbot, store, bridge, monotonic)
        assert bridge.list_interval_ms > FLUSH_INTERVAL_MS
        monotonic.value += 0.008
        store.dispatch(MessageReceived(conversation="p/3", text="new"))
        with qtbot.waitSignal(bridge.conversations_changed, timeout=1000) as blocker:
            bridge.flush_now()
        assert blocker.args == [frozenset({"p/3"})]
        assert bridge.flushed_state is store.state
    finally:
        bridge.close()


def test_bridge_list_follows_at_once_when_the_load_stops(qtbot: QtBot, store: Store) -> None:
    monotonic = FakeMonotonic()
    bridge = StoreBridge(store, monotonic=monotonic)
    lists: list[frozenset[str]] = []
    bridge.conversations_changed.connect(lists.append)
    try:
        for _ in range(4):
            _busy_until_the_list_flush(qtbot, store, bridge, monotonic)
        assert bridge.list_interval_ms >= 4 * FLUSH_INTERVAL_MS
        told = len(lists)
        monotonic.value += 0.008
        store.dispatch(MessageReceived(conversation="p/4", text="the last of the burst"))
        monotonic.value += 0.008  # a small-signal flush: the store changed 8 ms ago, still busy
        with qtbot.waitSignal(bridge.unread_changed, timeout=1000):
            pass
        assert len(lists) == told
        monotonic.value += FLUSH_INTERVAL_MS / 1000.0  # no change for 16 ms: the load stopped
        with qtbot.waitSignal(bridge.conversations_changed, timeout=1000) as blocker:
            pass
        assert blocker.args == [frozenset({"p/4"})]
        assert bridge.list_interval_ms == FLUSH_INTERVAL_MS
    finally:
        bridge.close()
