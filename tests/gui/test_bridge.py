"""StoreBridge: fine-grained signals, coalesced with one single-shot leading-edge timer."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from tests.gui.conftest import connected, escalation
from tray_agent.core.events import ConnectionChanged, ConnectionState, MessageReceived, WaitingChanged
from tray_agent.core.state import ConnectionInfo, Store
from tray_agent.ui.bridge import FLUSH_INTERVAL_MS, StoreBridge

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
