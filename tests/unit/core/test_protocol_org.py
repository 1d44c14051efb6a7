"""Org dialect codec: golden frames (tests/data/org), commands, REST answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.core.golden import (
    DATA,
    assert_subset,
    body_bytes,
    command,
    events_plain,
    frame_text,
    golden_files,
    load,
    outbound_to_plain,
)
from tray_agent.core.commands import LoadHistory, Ping, RefreshWaitingList, Release, SendReply, TakeOver
from tray_agent.core.events import (
    CommandFailed,
    CommandKind,
    Connected,
    Dialect,
    FailureReason,
    Ignored,
    MessageReceived,
    WaitingChanged,
    WaitingListPage,
    event_to_dict,
)
from tray_agent.core.protocol import codec_for
from tray_agent.core.protocol.base import EncodeError, HttpCall, WsFrame
from tray_agent.core.protocol.org import MAX_FRAME_SIZE, OrgChatIn, OrgCodec
from tray_agent.core.state import State, reduce

DATA_ORG = DATA / "org"
ME = "9f1e2d3c-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
CHAT = "0b6c3c1e-6a4e-4f5b-9d2a-1f2e3d4c5b6a"


@pytest.fixture
def codec() -> OrgCodec:
    return OrgCodec(user_id=ME, org_id="org-1")


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


IN_FILES = golden_files("org", "in_")
JSON_IN_FILES = [p for p in IN_FILES if "raw" not in load(p)]
OUT_FILES = golden_files("org", "out_")
REST_FILES = [p for p in golden_files("org", "rest_") if "command" in load(p)]
CHAT_FILES = [p for p in golden_files("org", "rest_") if "chat" in load(p)]


def test_golden_files_cover_every_frame_shape() -> None:
    assert len(IN_FILES) >= 28
    assert len(OUT_FILES) == 6
    assert len(REST_FILES) >= 15
    assert len(CHAT_FILES) == 2


@pytest.mark.parametrize("path", IN_FILES, ids=_ids(IN_FILES))
def test_parse_frame_golden(codec: OrgCodec, path: Path) -> None:
    golden = load(path)
    events = codec.parse_frame(frame_text(golden))
    assert_subset(events_plain(events), golden["expect"])


@pytest.mark.parametrize("path", JSON_IN_FILES, ids=_ids(JSON_IN_FILES))
def test_parse_frame_golden_as_bytes(codec: OrgCodec, path: Path) -> None:
    golden = load(path)
    text = frame_text(golden)
    fresh = OrgCodec(user_id=codec.user_id, org_id=codec.org_id)  # the codec remembers assignments
    assert events_plain(codec.parse_frame(text.encode())) == events_plain(fresh.parse_frame(text))


@pytest.mark.parametrize("path", OUT_FILES, ids=_ids(OUT_FILES))
def test_encode_golden(codec: OrgCodec, path: Path) -> None:
    golden = load(path)
    if "learn" in golden:
        codec.parse_frame(json.dumps(golden["learn"]))
    out = codec.encode(command(golden["command"]))
    assert outbound_to_plain(out) == golden["expect_out"]


@pytest.mark.parametrize("path", REST_FILES, ids=_ids(REST_FILES))
def test_parse_response_golden(codec: OrgCodec, path: Path) -> None:
    golden = load(path)
    cmd = command(golden["command"])
    events = codec.parse_response(cmd, golden["status"], body_bytes(golden["body"]))
    plain = events_plain(events)
    assert_subset(plain, golden["expect"])
    assert plain[0]["command_id"] == "t-1"
    assert plain[0]["kind"] == cmd.kind.value


@pytest.mark.parametrize("path", CHAT_FILES, ids=_ids(CHAT_FILES))
def test_chat_row_summary_golden(codec: OrgCodec, path: Path) -> None:
    golden = load(path)
    chat = OrgChatIn.model_validate_json(json.dumps(golden["chat"]))
    summary = codec.chat_summary(chat)
    plain = event_to_dict(WaitingChanged(customer=summary))["customer"]
    assert_subset(plain, golden["expect_summary"])


# -- frames: specific behaviour -----------------------------------------------------------------


def test_connection_established_reports_the_writable_user_id() -> None:
    codec = OrgCodec()
    codec.user_id = "sub-2"
    (event,) = codec.parse_frame('{"type":"connection_established","connection_count":"3"}')
    assert event == Connected(user_id="sub-2", connection_count=3)


def test_binary_and_oversized_frames_are_ignored(codec: OrgCodec) -> None:
    assert codec.parse_frame(b"\x00\xff\xfe") == (Ignored(kind="binary", why="not a JSON text frame"),)
    big = "x" * (MAX_FRAME_SIZE + 1)
    (event,) = codec.parse_frame(big)
    assert isinstance(event, Ignored)
    assert event.kind == "oversized"


@pytest.mark.parametrize(
    ("frame", "kind", "why"),
    [
        ("[1, 2]", "malformed", "not a JSON object"),
        ("42", "malformed", "not a JSON object"),
        ("{}", "malformed", "no type"),
        ('{"type": null}', "malformed", "no type"),
        ('{"type": 7}', "7", "unknown frame type"),
        ("", "malformed", "invalid JSON"),
    ],
)
def test_junk_frames_are_explained(codec: OrgCodec, frame: str, kind: str, why: str) -> None:
    assert codec.parse_frame(frame) == (Ignored(kind=kind, why=why),)


def test_new_message_timestamps_fall_back_to_the_frame_time(codec: OrgCodec) -> None:
    frame = {
        "type": "new_message",
        "timestamp": 1774080930,
        "data": {"chat_id": "c", "sender_type": "customer"},
    }
    (event,) = codec.parse_frame(json.dumps(frame))
    assert isinstance(event, MessageReceived)
    assert event.sent_at is not None
    assert event.sent_at.isoformat() == "2026-03-21T08:15:30+00:00"


def test_new_message_with_null_handled_by_never_requests_a_human(codec: OrgCodec) -> None:
    frame = {"type": "new_message", "data": {"chat_id": "c", "sender_type": "customer", "handled_by": None}}
    events = codec.parse_frame(json.dumps(frame))
    assert [e.event_name for e in events] == ["message_received"]


def test_agent_message_in_unassigned_chat_is_not_a_human_request(codec: OrgCodec) -> None:
    frame = {
        "type": "new_message",
        "data": {"chat_id": "c", "sender_type": "agent", "handled_by": "unassigned"},
    }
    assert [e.event_name for e in codec.parse_frame(json.dumps(frame))] == ["message_received"]


def test_chat_update_fields_are_read_only(codec: OrgCodec) -> None:
    frame = {"type": "chat_update", "update_type": "ticket_created", "data": {"chat_id": "c", "x": 1}}
    (event,) = codec.parse_frame(json.dumps(frame))
    with pytest.raises(TypeError):
        event.fields["x"] = 2  # type: ignore[attr-defined, index]


def test_chat_update_without_chat_id_is_ignored(codec: OrgCodec) -> None:
    frame = {"type": "chat_update", "update_type": "ticket_created", "data": {"ticket_id": "t"}}
    assert codec.parse_frame(json.dumps(frame)) == (Ignored(kind="chat_update", why="no chat_id"),)


# -- commands -----------------------------------------------------------------------------------


def test_encode_take_over_exact(codec: OrgCodec) -> None:
    out = codec.encode(TakeOver(conversation="a b/c", command_id="x"))
    assert out == HttpCall(method="PUT", path="/crm/chats/a%20b%2Fc/assign", json={"assigned_to_me": True})


def test_encode_ping_is_a_ws_frame(codec: OrgCodec) -> None:
    assert codec.encode(Ping()) == WsFrame(text='{"type":"ping"}')
    assert codec.ping_frame() == '{"type":"ping"}'
    assert codec.pong_frame() == '{"type":"pong"}'


def test_release_without_known_ai_agent_cannot_be_encoded(codec: OrgCodec) -> None:
    with pytest.raises(EncodeError) as info:
        codec.encode(Release(conversation=CHAT))
    assert info.value.reason is FailureReason.INVALID


def test_release_learns_the_ai_agent_from_the_chat_list(codec: OrgCodec) -> None:
    body = {
        "chats": [{"id": "c9", "ai_agent_id": "ai-9", "handled_by": "human", "status": "assigned"}],
        "total": 1,
    }
    codec.parse_response(RefreshWaitingList(), 200, json.dumps(body).encode())
    out = codec.encode(Release(conversation="c9"))
    assert out == HttpCall(
        method="PUT", path="/crm/chats/c9/assign", json={"assigned_agent_id": "ai-9", "assigned_to_me": False}
    )


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_reply_is_refused(codec: OrgCodec, text: str) -> None:
    with pytest.raises(EncodeError) as info:
        codec.encode(SendReply(conversation=CHAT, text=text))
    assert info.value.reason is FailureReason.MISSING_FIELDS


def test_reply_needs_the_user_id() -> None:
    with pytest.raises(EncodeError) as info:
        OrgCodec().encode(SendReply(conversation=CHAT, text="hi"))
    assert info.value.reason is FailureReason.INVALID


@pytest.mark.parametrize("conversation", ["", " padded "])
def test_bad_chat_id_is_refused(codec: OrgCodec, conversation: str) -> None:
    with pytest.raises(EncodeError) as info:
        codec.encode(TakeOver(conversation=conversation))
    assert info.value.reason is FailureReason.INVALID


@pytest.mark.parametrize(("limit", "sent"), [(0, "1"), (-5, "1"), (50, "50"), (101, "100"), (10_000, "100")])
def test_refresh_limit_is_clamped(codec: OrgCodec, limit: int, sent: str) -> None:
    out = codec.encode(RefreshWaitingList(offset=-3, limit=limit))
    assert isinstance(out, HttpCall)
    assert out.query[-2:] == (("skip", "0"), ("limit", sent))


def test_history_limit_is_clamped_and_paged(codec: OrgCodec) -> None:
    out = codec.encode(LoadHistory(conversation=CHAT, page=3, limit=500))
    assert isinstance(out, HttpCall)
    assert out.query == (("sort_order", "desc"), ("skip", "300"), ("limit", "100"))


# -- parse_response -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, FailureReason.INVALID),
        (401, FailureReason.ACCESS_DENIED),
        (403, FailureReason.ACCESS_DENIED),
        (404, FailureReason.NOT_FOUND),
        (409, FailureReason.ALREADY_ASSIGNED),
        (422, FailureReason.MISSING_FIELDS),
        (429, FailureReason.SERVER_ERROR),
        (500, FailureReason.SERVER_ERROR),
        (503, FailureReason.SERVER_ERROR),
    ],
)
def test_failure_reason_by_status(codec: OrgCodec, status: int, reason: FailureReason) -> None:
    cmd = TakeOver(conversation=CHAT, command_id="k")
    (event,) = codec.parse_response(cmd, status, b'{"detail": "whatever"}')
    assert event == CommandFailed(
        command_id="k", kind=CommandKind.TAKE_OVER, conversation=CHAT, reason=reason, text="whatever"
    )


def test_success_with_unreadable_body_still_succeeds(codec: OrgCodec) -> None:
    cmd = TakeOver(conversation=CHAT, command_id="k")
    events = codec.parse_response(cmd, 200, b"not json")
    assert [e.event_name for e in events] == ["command_succeeded"]


def test_refresh_with_unreadable_body_fails(codec: OrgCodec) -> None:
    (event,) = codec.parse_response(RefreshWaitingList(command_id="k"), 200, b"[]")
    assert isinstance(event, CommandFailed)
    assert event.reason is FailureReason.SERVER_ERROR


class FakeChats:
    """``GET /crm/chats`` as the real server answers it: filters, newest activity first, skip/limit."""

    def __init__(self, chats: list[dict[str, object]]) -> None:
        self.chats = chats
        self.queries: list[dict[str, str]] = []

    def answer(self, call: HttpCall) -> bytes:
        query = dict(call.query)
        self.queries.append(query)
        rows = [
            c
            for c in self.chats
            if all(
                c[col] == query[name]
                for name, col in (("handled_by", "handled_by"), ("status_filter", "status"))
                if name in query
            )
        ]
        rows.sort(key=lambda c: str(c["last_message_at"]), reverse=True)
        skip, limit = int(query["skip"]), int(query["limit"])
        return json.dumps({"chats": rows[skip : skip + limit], "total": len(rows)}).encode()


def _resync(codec: OrgCodec, server: FakeChats) -> list[WaitingListPage]:
    pages: list[WaitingListPage] = []
    offset = 0
    while True:
        command = RefreshWaitingList(offset=offset, limit=200)
        call = codec.encode(command)
        assert isinstance(call, HttpCall)
        [page] = [
            e
            for e in codec.parse_response(command, 200, server.answer(call))
            if isinstance(e, WaitingListPage)
        ]
        pages.append(page)
        assert page.offset == offset
        if not page.has_more:
            return pages
        offset = page.offset + len(page.customers)
        assert len(pages) < 100


def _chat(i: int, handled_by: str, status: str, minute: int, human: str = "") -> dict[str, object]:
    return {
        "id": f"c{i}",
        "handled_by": handled_by,
        "status": status,
        "human_agent_id": human,
        "ai_agent_id": "ai",
        "last_message_at": f"2026-03-01T{10 + minute // 60:02d}:{minute % 60:02d}:00+00:00",
    }


def test_resync_reads_only_human_and_waiting_chats_plus_recent_activity(codec: OrgCodec) -> None:
    # Issue 15: 3,000 chats used to cost 30 GETs a resync. Mostly the AI's or closed.
    chats = [_chat(i, "ai", "open" if i % 2 else "resolved", i % 600) for i in range(2_900)]
    chats += [_chat(3_000 + i, "human", "open", 100 + i) for i in range(150)]  # waiting (team inbox)
    chats += [_chat(4_000 + i, "human", "assigned", 50 + i, human="h1") for i in range(20)]  # held
    chats += [_chat(5_000 + i, "unassigned", "open", 70 + i) for i in range(5)]
    server = FakeChats(chats)
    pages = _resync(codec, server)
    listed = {row.conversation for page in pages for row in page.customers}
    wanted = {c["id"] for c in chats if c["handled_by"] != "ai"}
    assert wanted <= listed
    assert all(p.complete_list and p.complete_assignments for p in pages)
    filters = [(q.get("handled_by"), q.get("status_filter"), q["skip"]) for q in server.queries]
    assert filters == [
        ("human", "open", "0"),
        ("human", "open", "100"),
        ("human", "pending", "0"),
        ("human", "assigned", "0"),
        ("unassigned", "open", "0"),
        ("unassigned", "pending", "0"),
        (None, None, "0"),  # recent activity: one page on the first resync
    ]
    # The next resync reads recent activity only down to what the previous one saw.
    server.queries.clear()
    for i in range(150):
        chats[i * 2 + 1]["last_message_at"] = "2026-03-01T23:00:00+00:00"  # new AI-chat activity
    pages = _resync(codec, server)
    recent = [q for q in server.queries if "handled_by" not in q]
    assert [q["skip"] for q in recent] == ["0", "100"]
    assert {f"c{i * 2 + 1}" for i in range(150)} <= {r.conversation for p in pages for r in p.customers}
    assert len(server.queries) == 8


def test_an_empty_segment_moves_on_to_the_next(codec: OrgCodec) -> None:
    server = FakeChats([_chat(1, "unassigned", "pending", 5)])
    pages = _resync(codec, server)
    assert [len(p.customers) for p in pages] == [0, 0, 0, 0, 1, 1]
    assert [p.has_more for p in pages] == [True] * 5 + [False]


def test_codec_for_org_builds_an_org_codec() -> None:
    codec = codec_for(Dialect.ORG, user_id="u", org_id="o")
    assert isinstance(codec, OrgCodec)
    assert codec.user_id == "u"
    assert codec.dialect is Dialect.ORG
    assert codec.max_frame_size == 16 * 1024 * 1024


def test_ai_handoff_leaving_the_ai_in_assigned_agent_id_is_waiting(codec: OrgCodec) -> None:
    row = {
        "id": "c1",
        "ai_agent_id": "ai-1",
        "assigned_agent_id": "ai-1",
        "human_agent_id": None,
        "handled_by": "human",
        "status": "open",
        "escalated_at": "2026-03-21T08:00:00+00:00",
    }
    summary = codec.chat_summary(OrgChatIn.model_validate(row))
    assert summary.waiting is True
    assert summary.assigned is False
    assert summary.agent is None


def test_chat_escalated_to_a_human_agent_is_assigned_not_waiting(codec: OrgCodec) -> None:
    row = {
        "id": "c2",
        "ai_agent_id": "ai-1",
        "assigned_agent_id": "h-7",
        "human_agent_id": "h-7",
        "human_agent_name": "Ani",
        "handled_by": "human",
        "status": "assigned",
    }
    summary = codec.chat_summary(OrgChatIn.model_validate(row))
    assert summary.assigned is True
    assert summary.waiting is False
    assert summary.agent is not None
    assert summary.agent.agent_id == "h-7"


def test_ai_hand_off_message_is_a_human_request(codec: OrgCodec) -> None:
    frame = {
        "type": "new_message",
        "timestamp": "2026-03-21T08:15:30",
        "data": {
            "chat_id": "c",
            "sender_type": "ai",
            "customer_id": "cust-1",
            "customer_name": "AI Agent",
            "message_content": "A human agent will contact you shortly.",
            "handled_by": "human",
            "human_agent_id": None,
        },
    }
    events = codec.parse_frame(json.dumps(frame))
    assert [e.event_name for e in events] == ["message_received", "human_requested"]
    human = events[1]
    assert human.customer_name == ""  # "AI Agent" is not the customer (O5)
    assert human.text == ""  # the store uses the customer's own last words


# -- assignment learned from new_message (issue 15: REST escalate/assign broadcast nothing) --------


def _escalated_frame(handled_by: str, human: str | None, message_id: str) -> str:
    golden = load(DATA_ORG / "in_new_message_after_rest_escalate.json")
    data = golden["frame"]["data"]
    data.update(handled_by=handled_by, human_agent_id=human, assigned_agent_id=human or data["ai_agent_id"])
    data.update(message_id=message_id, human_agent_name=None)
    return json.dumps(golden["frame"])


def _list_with_my_chat(codec: OrgCodec) -> None:
    """A resync row held by me (``human_id`` = my user id) teaches the codec my agent row id."""
    row = {
        "id": "other-chat",
        "handled_by": "human",
        "human_agent_id": "h-me",
        "human_id": ME,
        "human_agent_name": "Me Myself",
        "status": "assigned",
    }
    codec.parse_response(
        RefreshWaitingList(command_id="r"), 200, json.dumps({"chats": [row], "total": 1}).encode()
    )


def _assignments(events: object) -> list[dict[str, object]]:
    return [e for e in events_plain(events) if e["event"] == "assignment_changed"]


def test_new_message_reveals_an_escalation_to_me_at_once(codec: OrgCodec) -> None:
    _list_with_my_chat(codec)
    [change] = _assignments(codec.parse_frame(_escalated_frame("human", "h-me", "m-1")))
    assert change["action"] == "assigned"
    assert change["is_me"] is True
    assert change["agent"] == {"agent_id": "h-me", "name": "Me Myself", "email": ""}  # name learned
    # The same holder again: nothing new to say.
    assert _assignments(codec.parse_frame(_escalated_frame("human", "h-me", "m-2"))) == []
    # Handed back to the AI (the org "release"): human_agent_id stays, handled_by says "ai".
    [back] = _assignments(codec.parse_frame(_escalated_frame("ai", "h-me", "m-3")))
    assert (back["action"], back["agent"]) == ("unassigned", None)


def test_new_message_without_agent_ids_or_handler_says_nothing_about_assignment(codec: OrgCodec) -> None:
    # REST-posted messages carry handled_by but no agent ids; handled_by null is not authoritative.
    assert _assignments(codec.parse_frame(_escalated_frame("human", None, "m-1"))) == []
    assert _assignments(codec.parse_frame(_escalated_frame("", "h1", "m-2"))) == []
    # An AI chat nobody was known to hold stays quiet.
    assert _assignments(codec.parse_frame(_escalated_frame("ai", None, "m-3"))) == []


def test_store_learns_an_escalation_to_me_from_the_next_message(codec: OrgCodec) -> None:
    _list_with_my_chat(codec)
    state = reduce(State(), Connected(user_id=ME))[0]
    before = codec.parse_frame(_escalated_frame("ai", None, "m-0"))
    after = codec.parse_frame(_escalated_frame("human", "h-me", "m-1"))
    for event in (*before, *after):
        state = reduce(state, event)[0]
    conv = state.conversation("chat-esc")
    assert conv is not None
    assert (conv.assigned, conv.assigned_to_me) == (True, True)
    assert "chat-esc" in state.mine_keys


def test_take_over_answer_names_the_agent_from_what_rows_said_before(codec: OrgCodec) -> None:
    # The real assign answer is not enriched (agent_name, human_agent_name, customer_name null).
    _list_with_my_chat(codec)
    body = {
        "id": "chat-x",
        "assigned_agent_id": "h-me",
        "human_agent_id": "h-me",
        "agent_name": None,
        "human_agent_name": None,
        "customer_name": None,
        "handled_by": "human",
        "status": "assigned",
    }
    events = events_plain(
        codec.parse_response(TakeOver(command_id="t", conversation="chat-x"), 200, json.dumps(body).encode())
    )
    [change] = [e for e in events if e["event"] == "assignment_changed"]
    assert change["agent"] == {"agent_id": "h-me", "name": "Me Myself", "email": ""}
    assert codec.my_agent_id == "h-me"
