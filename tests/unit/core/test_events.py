"""Domain events: conversation keys and the `listen` JSON rendering."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from tray_agent.core import events as ev
from tray_agent.core.commands import Ping, SendReply, TakeOver, new_command_id


def test_conversation_key_org_is_chat_id():
    assert ev.conversation_key(ev.Dialect.ORG, chat_id="c-1") == "c-1"


def test_conversation_key_dashboard_round_trips():
    key = ev.conversation_key(ev.Dialect.DASHBOARD, page_id="1001", customer_id="77")
    assert key == "1001/77"
    assert ev.split_dashboard_key(key) == ("1001", "77")


@pytest.mark.parametrize("bad", ["", "1001", "/77", "1001/", "a/b/c"])
def test_split_dashboard_key_rejects_malformed(bad):
    assert ev.split_dashboard_key(bad) is None


def test_event_to_json_has_event_name_first_and_plain_values():
    at = datetime(2026, 3, 21, 8, 15, 30, tzinfo=UTC)
    event = ev.MessageReceived(
        conversation="1001/77",
        sender=ev.SenderKind.CUSTOMER,
        text="Halo <b>",
        attachment=ev.Attachment(url="https://x/y.png", kind="image"),
        sent_at=at,
    )
    line = ev.event_to_json(event)
    assert "\n" not in line
    data = json.loads(line)
    assert next(iter(data)) == "event"
    assert data["event"] == "message_received"
    assert data["sender"] == "customer"
    assert data["sent_at"] == "2026-03-21T08:15:30+00:00"
    assert data["attachment"] == {"url": "https://x/y.png", "kind": "image", "name": ""}
    assert "event_name" not in data


def test_every_event_class_has_a_distinct_snake_case_name():
    classes = [
        c for c in vars(ev).values() if isinstance(c, type) and issubclass(c, ev.Event) and c is not ev.Event
    ]
    names = [c().event_name for c in classes]
    assert len(names) == len(set(names))
    assert all(n == n.lower() and " " not in n for n in names)


def test_nested_tuples_and_mappings_render():
    page = ev.WaitingListPage(
        customers=(ev.ConversationSummary(conversation="p/1", agent=ev.AgentRef(agent_id="a1")),),
        has_more=True,
        changed_live=frozenset({"p/2", "p/1"}),
    )
    data = ev.event_to_dict(page)
    assert data["event"] == "waiting_list"
    assert data["customers"][0]["agent"]["agent_id"] == "a1"
    assert data["changed_live"] == ["p/1", "p/2"]  # sets render sorted
    assert json.loads(ev.event_to_json(page))["changed_live"] == ["p/1", "p/2"]
    update = ev.ConversationUpdated(conversation="c", update_type="x", fields={"n": (1, 2)})
    assert ev.event_to_dict(update)["fields"] == {"n": [1, 2]}


def test_events_are_frozen():
    event = ev.Ignored(kind="echo", why="server echo")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.kind = "x"  # type: ignore[misc]


def test_commands_get_unique_ids_and_kinds():
    a, b = TakeOver("c1"), TakeOver("c1")
    assert a.command_id != b.command_id
    assert a.kind is ev.CommandKind.TAKE_OVER
    assert a.conversation_key == "c1"
    reply = SendReply("c2", "hi")
    assert reply.kind is ev.CommandKind.REPLY
    assert reply.conversation_key == "c2"
    assert Ping().conversation_key == ""
    assert new_command_id() != new_command_id()


def test_message_dedupe_key_is_the_id_else_time_sender_and_text() -> None:
    at = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    with_id = ev.MessageReceived(conversation="c", text="hi", message_id="m-1", sent_at=at)
    assert with_id.dedupe_key == "id:m-1"
    plain = ev.MessageReceived(conversation="c", sender=ev.SenderKind.AGENT, text="hi", sent_at=at)
    # Persisted by the local store: this exact format must not change.
    assert plain.dedupe_key == f"t:{at.timestamp()}|agent|hi"
    assert ev.MessageReceived(conversation="c", text="hi").dedupe_key == "t:|customer|hi"
    assert plain.dedupe_key != ev.MessageReceived(conversation="c", text="hi", sent_at=at).dedupe_key
