"""held_customers: the customers the Quit / Sign out warning counts."""

from __future__ import annotations

from tray_agent.core.events import (
    AgentRef,
    AssignmentAction,
    AssignmentChanged,
    CommandKind,
    CommandQueued,
    CommandSucceeded,
    Connected,
    ConversationUpdated,
    HumanRequested,
)
from tray_agent.core.lifecycle import held_customers
from tray_agent.core.state import State, reduce


def _state(*events: object) -> State:
    state = State()
    for event in (Connected(user_id="me"), *events):
        state, _ = reduce(state, event)  # type: ignore[arg-type]
    return state


def _mine(key: str) -> AssignmentChanged:
    return AssignmentChanged(
        conversation=key, action=AssignmentAction.ASSIGNED, agent=AgentRef("me"), is_me=True
    )


def test_held_customers_counts_mine_only() -> None:
    other = AssignmentChanged(
        conversation="c", action=AssignmentAction.ASSIGNED, agent=AgentRef("x"), is_me=False
    )
    state = _state(_mine("b"), _mine("a"), other, HumanRequested(conversation="d"))
    assert held_customers(state) == ("a", "b")
    assert held_customers(State()) == ()


def test_held_customers_leaves_out_resolved_and_released() -> None:
    state = _state(
        _mine("a"),
        _mine("b"),
        ConversationUpdated(conversation="a", update_type="chat_resolved"),
        CommandQueued(command_id="r", kind=CommandKind.RELEASE, conversation="b"),
        CommandSucceeded(command_id="r", kind=CommandKind.RELEASE, conversation="b"),
    )
    assert held_customers(state) == ()


def test_a_take_over_in_flight_counts() -> None:
    state = _state(
        HumanRequested(conversation="a"),
        CommandQueued(command_id="t", kind=CommandKind.TAKE_OVER, conversation="a"),
    )
    assert held_customers(state) == ("a",)
