"""The dashboard codec's ``new_message`` fast path gives exactly the events of the pydantic path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.core.golden import frame_text, golden_files, load
from tray_agent.core.events import Event, MessageReceived, SenderKind
from tray_agent.core.protocol import dashboard
from tray_agent.core.protocol.dashboard import DashboardCodec

IN_FILES = golden_files("dashboard", "in_")


def both(frame: str | bytes) -> tuple[tuple[Event, ...], tuple[Event, ...]]:
    """(fast path on, every frame through pydantic), each with a fresh codec."""
    slow = DashboardCodec()
    slow.fast_path = False
    return tuple(DashboardCodec().parse_frame(frame)), tuple(slow.parse_frame(frame))


@pytest.mark.parametrize("path", IN_FILES, ids=[p.stem for p in IN_FILES])
def test_golden_frames_parse_the_same_with_and_without_the_fast_path(path: Path) -> None:
    fast, slow = both(frame_text(load(path)))
    assert fast == slow


def test_the_common_new_message_does_not_touch_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any) -> Any:
        raise AssertionError("pydantic was asked")

    frame = json.dumps(
        {
            "type": "new_message",
            "page_id": "101",
            "data": {
                "chat_id": "9001",
                "sender_id": "9001",
                "sender_name": "Ann",
                "recipient_id": "101",
                "message": "halo",
                "is_bot": False,
                "timestamp": 1_780_000_000,
            },
            "timestamp": 1_780_000_000,
        }
    )
    slow = DashboardCodec()
    slow.fast_path = False
    expected = slow.parse_frame(frame)
    monkeypatch.setattr(dashboard, "validate_json_lenient", refuse)
    (event,) = DashboardCodec().parse_frame(frame)
    assert (event,) == tuple(expected)
    assert isinstance(event, MessageReceived)
    assert event.conversation == "101/9001"
    assert event.sender is SenderKind.CUSTOMER
    assert event.customer_name == "Ann"


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(0, 2_000_000_000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["", "101", "9001", "true", "1", "yes", "2026-03-04T10:00:00Z", "1780000000", "a/b"]),
)
values = st.one_of(
    scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=3), scalars, max_size=2)
)
DATA_FIELDS = [
    "chat_id",
    "sender_id",
    "sender_name",
    "recipient_id",
    "message",
    "is_bot",
    "is_human",
    "agent_id",
    "agent_email",
    "agent_name",
    "requires_human",
    "timestamp",
]


# Frames repeating one conversation and one second, as a burst does, with odd twins.
REPEATED = [
    '{"type":"new_message","page_id":"101","data":{"chat_id":"9001","message":"a","timestamp":1780000000}}',
    '{"type":"new_message","page_id":"101","data":{"chat_id":"9001","message":"b","timestamp":1780000000}}',
    '{"type":"new_message","page_id":"101","data":{"chat_id":"9001","message":"c","timestamp":1780000001}}',
    '{"type":"new_message","page_id":"101","data":{"chat_id":"9001","message":"d","timestamp":true}}',
    '{"type":"new_message","page_id":"101","data":{"chat_id":9001,"message":"e","timestamp":"1780000000"}}',
    '{"type":"new_message","page_id":"101","data":{"chat_id":"9001/x","message":"f"}}',
    '{"type":"new_message","timestamp":1780000000,"data":{"sender_id":"9001","recipient_id":"101"}}',
    '{"type":"new_message","page_id":"101","data":{"chat_id":"9001","timestamp":1.78e9}}',
]


@st.composite
def new_message_frames(draw: st.DrawFn) -> str:
    data = {name: draw(values) for name in DATA_FIELDS if draw(st.booleans())}
    data.update(draw(st.dictionaries(st.sampled_from(["extra", "x"]), values, max_size=1)))
    frame: dict[str, Any] = {"type": "new_message"}
    if draw(st.booleans()):
        frame["page_id"] = draw(values)
    if draw(st.booleans()):
        frame["timestamp"] = draw(values)
    frame["data"] = draw(st.just(data) | values) if draw(st.integers(0, 9)) == 0 else data
    text = json.dumps(frame, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:
        text = text.replace('"message"', '"message": "\\ud800", "m"', 1)  # a lone surrogate
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(new_message_frames())
def test_any_new_message_frame_parses_the_same_with_and_without_the_fast_path(frame: str) -> None:
    fast, slow = both(frame)
    assert fast == slow


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"new_message","page_id":"1","page_id":"2","data":{"chat_id":"5","message":"a","message":"b"}}',
        ' {"type":"new_message","data":{"chat_id":"5","message":"a"},"page_id":"1"} \n',
        '{"type":"new_message","data":{"chat_id":"5","message":"a"},"page_id":"1"} x',
        '{"type":"new_message","data":{"chat_id":"5","message":"\\ud83d\\ude00"},"page_id":"1"}',
        '{"type":"new_message","data":{"chat_id":"5","timestamp":NaN},"page_id":"1"}',
        '{"type":"new_message","data":{"chat_id":"5","timestamp":1.5e9},"page_id":"1"}',
        '{"type":"new_message","data":null,"page_id":"1"}',
        '["new_message"]',
    ],
)
def test_edge_frames_parse_the_same_with_and_without_the_fast_path(frame: str) -> None:
    fast, slow = both(frame)
    assert fast == slow


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(new_message_frames() | st.sampled_from(REPEATED), min_size=2, max_size=12))
def test_one_codec_parses_a_stream_as_fresh_codecs_parse_each_frame(frames: list[str]) -> None:
    """What the fast path remembers between frames (timestamps, conversation keys) changes nothing."""
    codec = DashboardCodec()
    for frame in frames:
        fast, slow = both(frame)
        assert tuple(codec.parse_frame(frame)) == fast == slow
