"""Property tests: both codecs' parse_frame / parse_response never raise and return only Events."""

from __future__ import annotations

import json
import logging
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.core.golden import command, golden_files, load
from tray_agent.core.commands import Command, LoadHistory, RefreshWaitingList, Release, SendReply, TakeOver
from tray_agent.core.events import Event, Ignored, event_to_json
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.protocol.org import OrgCodec

FAST = settings(
    max_examples=3000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
# The JSON-generating strategies cost ~5 ms per example; keep the whole file well under 60 s.
MEDIUM = settings(FAST, max_examples=1200)
SLOWER = settings(FAST, max_examples=800)

CODECS = (OrgCodec(user_id="me", org_id="org"), DashboardCodec())


class _ErrorLog(logging.Handler):
    """Collects error records of the protocol modules: the never-raise safety nets must stay unused."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_ERRORS = _ErrorLog()
logging.getLogger("tray_agent.core.protocol").addHandler(_ERRORS)


def _frames(dialect: str) -> list[Any]:
    return [load(p)["frame"] for p in golden_files(dialect, "in_") if "frame" in load(p)]


def _answers(dialect: str) -> list[tuple[dict[str, Any], int, Any]]:
    out = []
    for path in golden_files(dialect, "rest_"):
        golden = load(path)
        if "command" in golden:
            out.append((golden["command"], golden["status"], golden["body"]))
    return out


GOLDEN_FRAMES = _frames("org") + _frames("dashboard")
GOLDEN_ANSWERS = _answers("org") + _answers("dashboard")
KNOWN_TYPES = sorted(
    {f["type"] for f in GOLDEN_FRAMES if isinstance(f.get("type"), str)} | {"echo", "message"}
)


def _check(events: Any) -> None:
    assert isinstance(events, (tuple, list))
    for event in events:
        assert isinstance(event, Event)
        assert not (isinstance(event, Ignored) and event.why == "translation error"), event
        event_to_json(event)  # every event must stay renderable for `listen`
    assert not _ERRORS.records, _ERRORS.records[0].getMessage()


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "2026-03-21T08:15:30.123456",
            "2025-08-27T10:00:00.123456789Z",
            "2026-13-45T99:99:99",
            "1756288800",
            "-1",
            '{"a": 1}',
            "{not json",
            "null",
            "assigned",
            "unassigned",
            "human",
            "customer",
            "ai",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=12,
)


def _mutate(data: st.DataObject, value: Any, depth: int = 0) -> Any:
    """Remove a field, replace a value by junk of another type, or go one level deeper."""
    if isinstance(value, dict) and value and depth < 4:
        key = data.draw(st.sampled_from(sorted(value)))
        op = data.draw(st.sampled_from(["remove", "replace", "deeper", "deeper", "add"]))
        copy = dict(value)
        if op == "remove":
            del copy[key]
        elif op == "replace":
            copy[key] = data.draw(json_values)
        elif op == "add":
            copy[data.draw(st.text(max_size=10))] = data.draw(json_values)
        else:
            copy[key] = _mutate(data, value[key], depth + 1)
        return copy
    if isinstance(value, list) and value and depth < 4:
        index = data.draw(st.integers(0, len(value) - 1))
        copy_list = list(value)
        if data.draw(st.booleans()):
            copy_list[index] = _mutate(data, value[index], depth + 1)
        else:
            copy_list[index] = data.draw(json_values)
        return copy_list
    return data.draw(json_values)


# -- parse_frame --------------------------------------------------------------------------------


@FAST
@given(frame=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(frame: bytes) -> None:
    for codec in CODECS:
        _check(codec.parse_frame(frame))


@FAST
@given(frame=st.text(max_size=300))
def test_arbitrary_text_never_raises(frame: str) -> None:
    for codec in CODECS:
        _check(codec.parse_frame(frame))


@MEDIUM
@given(value=json_values)
def test_arbitrary_json_never_raises(value: Any) -> None:
    text = json.dumps(value)
    for codec in CODECS:
        _check(codec.parse_frame(text))


@SLOWER
@given(
    kind=st.sampled_from(KNOWN_TYPES),
    data=st.one_of(
        json_values, st.dictionaries(st.sampled_from(["chat_id", "customer", "page_id"]), json_values)
    ),
    extra=st.dictionaries(
        st.sampled_from(["timestamp", "page_id", "update_type", "error", "user_id"]), json_values
    ),
)
def test_known_types_with_junk_payloads_never_raise(kind: str, data: Any, extra: dict[str, Any]) -> None:
    text = json.dumps({"type": kind, "data": data, **extra})
    for codec in CODECS:
        _check(codec.parse_frame(text))


@MEDIUM
@given(golden=st.sampled_from(GOLDEN_FRAMES), data=st.data())
def test_mutated_golden_frames_never_raise(golden: Any, data: st.DataObject) -> None:
    mutated = golden
    for _ in range(data.draw(st.integers(1, 4))):
        mutated = _mutate(data, mutated)
    text = json.dumps(mutated)
    for codec in CODECS:
        _check(codec.parse_frame(text))
        _check(codec.parse_frame(text.encode()))


@FAST
@given(golden=st.sampled_from(GOLDEN_FRAMES), cut=st.integers(min_value=0, max_value=400))
def test_truncated_golden_frames_never_raise(golden: Any, cut: int) -> None:
    text = json.dumps(golden)[:cut]
    for codec in CODECS:
        _check(codec.parse_frame(text))


# -- parse_response -----------------------------------------------------------------------------

CONVERSATIONS = st.sampled_from(["c1", "104857600000001/7312345678901234", "", "a/b/c", "x y"])
COMMANDS = st.one_of(
    st.builds(TakeOver, conversation=CONVERSATIONS),
    st.builds(Release, conversation=CONVERSATIONS),
    st.builds(SendReply, conversation=CONVERSATIONS, text=st.text(max_size=10)),
    st.builds(RefreshWaitingList, offset=st.integers(-5, 10**6), limit=st.integers(-5, 10**4)),
    st.builds(
        LoadHistory, conversation=CONVERSATIONS, page=st.integers(-2, 10**6), limit=st.integers(-5, 10**4)
    ),
)
STATUSES = st.sampled_from([200, 201, 204, 400, 401, 403, 404, 409, 422, 429, 500, 502, 0, 999])


@SLOWER
@given(
    cmd=COMMANDS,
    status=STATUSES,
    body=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())),
)
def test_parse_response_with_arbitrary_bodies_never_raises(cmd: Command, status: int, body: bytes) -> None:
    for codec in CODECS:
        events = codec.parse_response(cmd, status, body)
        _check(events)
        assert events, "a response always yields at least the command's outcome"
        assert events[0].event_name in ("command_succeeded", "command_failed")


@SLOWER
@given(answer=st.sampled_from(GOLDEN_ANSWERS), status=STATUSES, data=st.data())
def test_mutated_golden_answers_never_raise(
    answer: tuple[dict[str, Any], int, Any], status: int, data: st.DataObject
) -> None:
    spec, golden_status, body = answer
    cmd = command(spec)
    mutated = _mutate(data, body) if body is not None else data.draw(json_values)
    payload = json.dumps(mutated).encode()
    for codec in CODECS:
        for code in (golden_status, status):
            events = codec.parse_response(cmd, code, payload)
            _check(events)
            assert events[0].event_name in ("command_succeeded", "command_failed")
