""" "Last synced" is true: every completed resync while connected moves it (issue 14: it stood
still for 7 minutes while connected and resyncing every minute)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tray_agent.core.events import (
    ConnectionChanged,
    ConnectionState,
    ConversationSummary,
    Event,
    WaitingListPage,
)
from tray_agent.core.state import State, reduce

T0 = datetime(2026, 3, 21, 8, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def run(events: list[Event], state: State | None = None) -> State:
    state = state if state is not None else State()
    for event in events:
        state, _effects = reduce(state, event, history_limit=100)
    return state


def page(when: datetime | None, *, has_more: bool = False, offset: int = 0) -> WaitingListPage:
    row = ConversationSummary(conversation=f"p/{offset}", customer_name="Ann", waiting=False)
    return WaitingListPage(customers=(row,), offset=offset, has_more=has_more, at=when)


def test_last_synced_follows_each_completed_periodic_resync():
    state = run([ConnectionChanged(state=ConnectionState.CONNECTED, at=at(0)), page(at(0))])
    assert state.connection.last_synced == at(0)
    for minute in range(1, 8):  # a periodic resync every minute, the connection never changes
        state = run([page(at(minute), has_more=True), page(at(minute), offset=1)], state)
        assert state.connection.last_synced == at(minute)


def test_last_synced_moves_only_when_the_last_page_arrives():
    state = run([ConnectionChanged(state=ConnectionState.CONNECTED, at=at(0))])
    state = run([page(at(5), has_more=True)], state)
    assert state.connection.last_synced == at(0)


def test_last_synced_also_moves_while_limited_but_not_while_offline():
    state = run([ConnectionChanged(state=ConnectionState.LIMITED, at=at(0)), page(at(2))])
    assert state.connection.last_synced == at(2)
    state = run([ConnectionChanged(state=ConnectionState.RECONNECTING, at=at(3)), page(at(4))], state)
    assert state.connection.last_synced == at(2)
    unstamped = run([ConnectionChanged(state=ConnectionState.CONNECTED, at=at(5)), page(None)], state)
    assert unstamped.connection.last_synced == at(5)
