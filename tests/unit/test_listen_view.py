"""listen's StoreView without sockets: what it prints for one event, given the store's states."""

from __future__ import annotations

from datetime import UTC, datetime

from tray_agent.core.events import (
    AgentRef,
    AssignmentAction,
    AssignmentChanged,
    CommandKind,
    CommandQueued,
    CommandSucceeded,
    Connected,
    Event,
    KeepaliveReceived,
    MessageReceived,
    SenderKind,
)
from tray_agent.core.state import Store
from tray_agent.listen import StoreView

NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


class Feed:
    def __init__(self) -> None:
        self.store = Store()
        self.view = StoreView()
        self.printed: list[Event] = []

    def __call__(self, *events: Event) -> list[Event]:
        out: list[Event] = []
        for event in events:
            old = self.store.state
            self.store.dispatch(event)
            out += self.view.lines(event, old, self.store.state)
        self.printed += out
        return out


def test_a_dashboard_take_over_prints_one_assignment_changed_not_its_broadcast_too() -> None:
    feed = Feed()
    feed(Connected(user_id="me-1"))
    feed(MessageReceived(conversation="p/a", text="hi", sent_at=NOW, customer_name="Ann"))
    feed(CommandQueued(command_id="t1", kind=CommandKind.TAKE_OVER, conversation="p/a"))
    assert feed(CommandSucceeded(command_id="t1", kind=CommandKind.TAKE_OVER, conversation="p/a"))[1:] == [
        AssignmentChanged(
            conversation="p/a", action=AssignmentAction.ASSIGNED, agent=AgentRef("me-1"), is_me=True
        )
    ]
    ack = AssignmentChanged(conversation="p/a", agent=AgentRef("me-1", "Sam"), is_me=True, at=NOW)
    broadcast = AssignmentChanged(conversation="p/a", agent=AgentRef("me-1"), is_me=None, at=NOW)
    assert feed(ack, broadcast) == []  # the same change again: nothing more


def test_someone_else_taking_the_customer_prints_with_the_stores_view() -> None:
    feed = Feed()
    feed(Connected(user_id="me-1"))
    feed(MessageReceived(conversation="p/a", text="hi", sent_at=NOW))
    printed = feed(AssignmentChanged(conversation="p/a", agent=AgentRef("kim", "Kim"), is_me=None))
    assert len(printed) == 1
    assert isinstance(printed[0], AssignmentChanged)
    assert printed[0].is_me is False  # the store's answer, not the frame's null
    assert feed(AssignmentChanged(conversation="p/a", agent=AgentRef("kim"), is_me=None)) == []


def test_my_org_reply_prints_once_whichever_copy_comes_first() -> None:
    """The WS echo (agent id unknown to me), the REST 201's success and its copy: one message."""
    feed = Feed()
    feed(Connected(user_id="me-1"))
    feed(CommandQueued(command_id="r1", kind=CommandKind.REPLY, conversation="c-1", text="Halo"))
    echo = MessageReceived(
        conversation="c-1",
        sender=SenderKind.AGENT,
        text="Halo",
        message_id="m-9",
        sent_at=NOW,
        agent_id="agent-7",
    )
    feed(echo)
    feed(CommandSucceeded(command_id="r1", kind=CommandKind.REPLY, conversation="c-1", message_id="m-9"))
    feed(echo)
    messages = [e for e in feed.printed if isinstance(e, MessageReceived)]
    assert [(m.text, m.message_id) for m in messages] == [("Halo", "m-9")]


def test_empty_duplicate_and_keepalive_print_nothing() -> None:
    feed = Feed()
    first = MessageReceived(conversation="p/a", text="dua", sent_at=NOW)
    assert feed(first) == [first]
    assert feed(first) == []  # a webhook retry (no ids): the store's dedupe
    assert feed(MessageReceived(conversation="p/a", sender=SenderKind.BOT, text="", sent_at=NOW)) == []
    assert feed(KeepaliveReceived()) == []
