"""``fast_constructor`` builds the very objects the frozen dataclasses' own constructors build."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tray_agent.core.effects import Alert, AlertKind, Handler
from tray_agent.core.events import Attachment, Event, MessageReceived, SenderKind
from tray_agent.core.fastinit import fast_constructor
from tray_agent.core.state import CommandState, Conversation, MessageRecord, State

texts = st.text(max_size=8)
times = st.none() | st.datetimes(timezones=st.just(UTC))
attachments = st.none() | st.builds(Attachment, url=texts, kind=texts, name=texts)

records = st.fixed_dictionaries(
    {"sender": st.sampled_from(SenderKind), "text": texts},
    optional={
        "at": times,
        "message_id": st.none() | texts,
        "attachment": attachments,
        "sender_name": texts,
        "agent_id": texts,
        "command_id": st.none() | texts,
        "reply_state": st.none() | st.sampled_from(CommandState),
        "echoed": st.booleans(),
        "error": texts,
        "unsaved": st.booleans(),
        "retried_as": texts,
    },
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "conversation": texts,
        "sender": st.sampled_from(SenderKind),
        "text": texts,
        "attachment": attachments,
        "message_id": st.none() | texts,
        "sent_at": times,
        "customer_name": texts,
        "channel": texts,
        "sender_name": texts,
        "agent_id": texts,
        "requires_human": st.booleans(),
        "is_new_chat": st.booleans(),
    },
)
alerts = st.fixed_dictionaries(
    {"kind": st.sampled_from(AlertKind), "conversation": texts},
    optional={
        "customer_name": texts,
        "channel": texts,
        "text": texts,
        "since": times,
        "handler": st.sampled_from(Handler),
    },
)
conversations = st.fixed_dictionaries(
    {"key": texts},
    optional={
        "customer_name": texts,
        "unread": st.integers(0, 9),
        "waiting": st.booleans(),
        "last_message_at": times,
    },
)


def same_object(fast: Any, slow: Any) -> None:
    assert type(fast) is type(slow)
    assert fast == slow
    assert hash(fast) == hash(slow)
    assert repr(fast) == repr(slow)
    for f in dataclasses.fields(slow):
        assert getattr(fast, f.name) is getattr(slow, f.name) or getattr(fast, f.name) == getattr(
            slow, f.name
        )
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.__setattr__(dataclasses.fields(slow)[0].name, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.__delattr__(dataclasses.fields(slow)[0].name)
    assert pickle.loads(pickle.dumps(fast)) == slow
    assert dataclasses.replace(fast) == slow


@pytest.mark.parametrize(
    ("cls", "strategy"),
    [(MessageRecord, records), (MessageReceived, messages), (Alert, alerts), (Conversation, conversations)],
    ids=["MessageRecord", "MessageReceived", "Alert", "Conversation"],
)
def test_fast_constructor_builds_what_the_class_builds(cls: type, strategy: Any) -> None:
    build: Any = fast_constructor(cls)

    @given(strategy)
    def check(kwargs: dict[str, Any]) -> None:
        same_object(build(**kwargs), cls(**kwargs))
        values = [kwargs.get(f.name, f.default) for f in dataclasses.fields(cls) if f.init]
        same_object(build(*values), cls(*values))

    check()


def test_fast_constructor_keeps_the_init_false_defaults_and_the_signature() -> None:
    build = fast_constructor(MessageReceived)
    event = build(conversation="p/c", text="hi", sent_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert event.event_name == "message_received"
    assert isinstance(event, Event)
    with pytest.raises(TypeError):
        build(event_name="other")  # not an init field, as in MessageReceived(...)
    with pytest.raises(TypeError):
        fast_constructor(MessageRecord)()  # sender and text are required, as in MessageRecord()


def test_fast_constructor_refuses_classes_it_cannot_copy() -> None:
    with pytest.raises(TypeError):
        fast_constructor(State)  # default_factory fields

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int = 0

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError(self.value)

    with pytest.raises(TypeError):
        fast_constructor(Checked)

    class Plain:
        pass

    with pytest.raises(TypeError):
        fast_constructor(Plain)
