"""Dashboard dialect codec: golden frames (tests/data/dashboard), commands, errors, REST answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.core.golden import (
    assert_subset,
    body_bytes,
    command,
    events_plain,
    frame_text,
    golden_files,
    load,
    outbound_to_plain,
)
from tray_agent.core.commands import (
    HandBack,
    LoadHistory,
    Ping,
    RefreshWaitingList,
    Release,
    Resolve,
    SendReply,
    TakeOver,
)
from tray_agent.core.events import (
    CommandKind,
    CommandSucceeded,
    Connected,
    Dialect,
    FailureReason,
    Ignored,
    KeepaliveReceived,
    MessageReceived,
    ServerRejected,
)
from tray_agent.core.protocol import codec_for
from tray_agent.core.protocol.base import EncodeError, HttpCall, Plan, WsFrame
from tray_agent.core.protocol.dashboard import (
    MAX_FRAME_SIZE,
    DashboardCodec,
    classify_error,
    parse_send_answer,
)

ME = "66cd1f0e9b3e4a0012ab34cd"
PAGE = "104857600000001"
PSID = "7312345678901234"
KEY = f"{PAGE}/{PSID}"


@pytest.fixture
def codec() -> DashboardCodec:
    codec = DashboardCodec()
    codec.parse_frame(
        json.dumps({"type": "connected", "message": "WebSocket connection established", "user_id": ME})
    )
    return codec


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


IN_FILES = golden_files("dashboard", "in_")
JSON_IN_FILES = [p for p in IN_FILES if "raw" not in load(p)]
OUT_FILES = golden_files("dashboard", "out_")
REST_FILES = golden_files("dashboard", "rest_")


def test_golden_files_cover_every_frame_shape() -> None:
    assert len(IN_FILES) >= 26
    assert len(OUT_FILES) == 6
    assert len(REST_FILES) >= 13


@pytest.mark.parametrize("path", IN_FILES, ids=_ids(IN_FILES))
def test_parse_frame_golden(codec: DashboardCodec, path: Path) -> None:
    golden = load(path)
    events = codec.parse_frame(frame_text(golden))
    assert_subset(events_plain(events), golden["expect"])


@pytest.mark.parametrize("path", JSON_IN_FILES, ids=_ids(JSON_IN_FILES))
def test_parse_frame_golden_as_bytes(codec: DashboardCodec, path: Path) -> None:
    text = frame_text(load(path))
    assert events_plain(codec.parse_frame(text.encode())) == events_plain(codec.parse_frame(text))


@pytest.mark.parametrize("path", OUT_FILES, ids=_ids(OUT_FILES))
def test_encode_golden(codec: DashboardCodec, path: Path) -> None:
    golden = load(path)
    out = codec.encode(command(golden["command"]))
    assert outbound_to_plain(out) == golden["expect_out"]


@pytest.mark.parametrize("path", REST_FILES, ids=_ids(REST_FILES))
def test_parse_response_golden(codec: DashboardCodec, path: Path) -> None:
    golden = load(path)
    cmd = command(golden["command"])
    events = codec.parse_response(cmd, golden["status"], body_bytes(golden["body"]))
    plain = events_plain(events)
    assert_subset(plain, golden["expect"])
    assert plain[0]["command_id"] == "t-1"
    assert plain[0]["kind"] == cmd.kind.value


# -- frames: specific behaviour -----------------------------------------------------------------


def test_connected_teaches_the_user_id() -> None:
    codec = DashboardCodec()
    assert codec.user_id == ""
    assert codec.parse_frame('{"type":"connected","user_id":"abc"}') == (Connected(user_id="abc"),)
    assert codec.user_id == "abc"


def test_is_me_is_unknown_before_connected() -> None:
    codec = DashboardCodec()
    frame = {
        "type": "agent_assignment_changed",
        "page_id": PAGE,
        "data": {"customer_id": PSID, "agent_id": ME, "action": "assigned"},
        "timestamp": 1,
    }
    (event,) = codec.parse_frame(json.dumps(frame))
    assert event.is_me is None  # type: ignore[attr-defined]
    codec.user_id = ME
    (event,) = codec.parse_frame(json.dumps(frame))
    assert event.is_me is True  # type: ignore[attr-defined]


def test_pong_is_a_keepalive(codec: DashboardCodec) -> None:
    assert codec.parse_frame('{"type":"pong"}') == (KeepaliveReceived(kind="pong"),)


def test_new_message_without_ids_is_ignored(codec: DashboardCodec) -> None:
    frame = {"type": "new_message", "data": {"message": "hi"}, "timestamp": 1}
    assert codec.parse_frame(json.dumps(frame)) == (
        Ignored(kind="new_message", why="no page or customer id"),
    )


def test_new_message_with_slash_in_ids_is_ignored(codec: DashboardCodec) -> None:
    frame = {"type": "new_message", "page_id": "p", "data": {"chat_id": "a/b", "message": "hi"}}
    assert codec.parse_frame(json.dumps(frame)) == (
        Ignored(kind="new_message", why="no page or customer id"),
    )


def test_binary_and_oversized_frames_are_ignored(codec: DashboardCodec) -> None:
    assert codec.parse_frame(b"\x89PNG\r\n") == (Ignored(kind="binary", why="not a JSON text frame"),)
    (event,) = codec.parse_frame(b" " * (MAX_FRAME_SIZE + 1))
    assert isinstance(event, Ignored)
    assert event.kind == "oversized"
    assert MAX_FRAME_SIZE == 4 * 1024 * 1024


# -- error strings (PROTOCOL.md 2.3, 2.6) --------------------------------------------------------

_TK, _RL, _RP, _RF = CommandKind.TAKE_OVER, CommandKind.RELEASE, CommandKind.REPLY, CommandKind.REFRESH


@pytest.mark.parametrize(
    ("text", "reason", "kinds"),
    [
        ("Invalid request data", FailureReason.MISSING_FIELDS, (_TK, _RL)),
        ("customer_id and page_id are required", FailureReason.MISSING_FIELDS, (_TK, _RL)),
        ("Page not found or access denied", FailureReason.ACCESS_DENIED, (_TK, _RL, _RF)),
        ("Customer not found", FailureReason.NOT_FOUND, (_TK, _RP, _RL)),
        ("Customer has not requested human assistance", FailureReason.NO_HUMAN_REQUESTED, (_TK, _RP)),
        ("Customer is already assigned to ", FailureReason.ALREADY_ASSIGNED, (_TK, _RP)),
        ("Customer is already assigned to a@b.c", FailureReason.ALREADY_ASSIGNED, (_TK, _RP)),
        ("Failed to assign agent", FailureReason.SERVER_ERROR, (_TK,)),
        ("You are not assigned to this customer", FailureReason.NOT_ASSIGNED, (_RL,)),
        ("Failed to unassign agent", FailureReason.SERVER_ERROR, (_RL,)),
        ("Failed to retrieve stopped customers", FailureReason.SERVER_ERROR, (_RF,)),
        ("Missing required fields: customer_id, page_id, and message", FailureReason.MISSING_FIELDS, (_RP,)),
        ("Failed to get company configuration", FailureReason.SERVER_ERROR, (_RP,)),
        ("Failed to get company pages", FailureReason.SERVER_ERROR, (_RP,)),
        ("Page not found in company configuration", FailureReason.ACCESS_DENIED, (_RP,)),
        ("Failed to send message to customer", FailureReason.SERVER_ERROR, (_RP,)),
        ("Failed to send message to customer: (#551) blocked", FailureReason.SERVER_ERROR, (_RP,)),
        ("Failed to do something new", FailureReason.SERVER_ERROR, (_TK, _RL, _RP, _RF)),
        (
            "Customer has not requested human assistance. Set stop=true first.",
            FailureReason.NO_HUMAN_REQUESTED,
            (_TK, _RP),
        ),
        ("Something nobody documented", FailureReason.SERVER_ERROR, ()),
        ("", FailureReason.SERVER_ERROR, ()),
    ],
)
def test_every_error_string_is_classified(
    codec: DashboardCodec, text: str, reason: FailureReason, kinds: tuple[CommandKind, ...]
) -> None:
    assert classify_error(text) == (reason, kinds)
    frame = json.dumps({"type": "error", "error": text})
    assert codec.parse_frame(frame) == (ServerRejected(reason=reason, text=text, kinds=kinds),)


# -- commands -----------------------------------------------------------------------------------


def test_encode_exact_frames(codec: DashboardCodec) -> None:
    assert codec.encode(Ping()) == WsFrame(text='{"type":"ping"}')
    stop = HttpCall(
        method="PUT", path=f"/api/dashboard/customers/{PSID}/stop", json={"page_id": PAGE, "stop": True}
    )
    assign = WsFrame(text=f'{{"type":"assign_agent","data":{{"customer_id":"{PSID}","page_id":"{PAGE}"}}}}')
    assert codec.encode(TakeOver(conversation=KEY)) == Plan(steps=(stop, assign))
    assert codec.encode(Release(conversation=KEY)) == WsFrame(
        text=f'{{"type":"unassign_agent","data":{{"customer_id":"{PSID}","page_id":"{PAGE}"}}}}'
    )
    sent = codec.encode(SendReply(conversation=KEY, text='say "hi"\n'))
    head = f'{{"type":"send_message","customer_id":"{PSID}","page_id":"{PAGE}",'
    assert sent == WsFrame(text=head + '"message":"say \\"hi\\"\\n"}')
    assert codec.encode(RefreshWaitingList(offset=0, limit=0)) == WsFrame(
        text='{"type":"get_stopped_customers","data":{"limit":1,"skip":0}}'
    )
    assert codec.ping_frame() == '{"type":"ping"}'
    assert codec.pong_frame() == '{"type":"pong"}'


@pytest.mark.parametrize("conversation", ["", "no-slash", "/customer", "page/", "a/b/c"])
@pytest.mark.parametrize("make", [TakeOver, Release, LoadHistory])
def test_bad_conversation_key_is_invalid(codec: DashboardCodec, conversation: str, make: type) -> None:
    with pytest.raises(EncodeError) as info:
        codec.encode(make(conversation=conversation))
    assert info.value.reason is FailureReason.INVALID


def test_bad_key_in_reply_is_invalid(codec: DashboardCodec) -> None:
    with pytest.raises(EncodeError) as info:
        codec.encode(SendReply(conversation="nope", text="hi"))
    assert info.value.reason is FailureReason.INVALID


@pytest.mark.parametrize("text", ["", "  ", "\n"])
def test_empty_reply_is_missing_fields(codec: DashboardCodec, text: str) -> None:
    with pytest.raises(EncodeError) as info:
        codec.encode(SendReply(conversation=KEY, text=text))
    assert info.value.reason is FailureReason.MISSING_FIELDS


def test_history_call_pages_from_one(codec: DashboardCodec) -> None:
    out = codec.encode(LoadHistory(conversation=KEY, page=2, limit=1000))
    assert out == HttpCall(
        method="GET",
        path=f"/api/dashboard/messages/conversation/{PSID}",
        query=(("page_id", PAGE), ("page", "3"), ("limit", "200")),
    )


def test_rest_fallback_calls(codec: DashboardCodec) -> None:
    assert codec.encode_rest(RefreshWaitingList(offset=400, limit=200)) == HttpCall(
        method="GET", path="/api/dashboard/customers", query=(("page", "3"), ("limit", "200"))
    )
    assert codec.encode_rest(SendReply(conversation=KEY, text="hi")) == HttpCall(
        method="POST",
        path=f"/api/dashboard/customers/{PSID}/message",
        json={"page_id": PAGE, "message": "hi"},
    )
    with pytest.raises(EncodeError):
        codec.encode_rest(TakeOver(conversation=KEY))


# -- parse_response -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, FailureReason.MISSING_FIELDS),
        (401, FailureReason.ACCESS_DENIED),
        (403, FailureReason.ACCESS_DENIED),
        (404, FailureReason.NOT_FOUND),
        (409, FailureReason.ALREADY_ASSIGNED),
        (500, FailureReason.SERVER_ERROR),
        (502, FailureReason.SERVER_ERROR),
    ],
)
def test_failure_reason_by_status_when_text_is_unknown(
    codec: DashboardCodec, status: int, reason: FailureReason
) -> None:
    (event,) = codec.parse_response(LoadHistory(conversation=KEY, command_id="k"), status, b'{"error":"odd"}')
    assert event.reason is reason  # type: ignore[attr-defined]
    assert event.text == "odd"  # type: ignore[attr-defined]


def test_send_answer_helper(codec: DashboardCodec) -> None:
    cmd = SendReply(conversation=KEY, text="hi", command_id="k")
    assert parse_send_answer(cmd, 200, b"{}") == (
        CommandSucceeded(command_id="k", kind=CommandKind.REPLY, conversation=KEY),
    )
    (failed,) = parse_send_answer(cmd, 403, b'{"error":"Customer is already assigned to x@y.z. Only..."}')
    assert failed.reason is FailureReason.ALREADY_ASSIGNED  # type: ignore[attr-defined]


def test_history_with_unreadable_body_fails(codec: DashboardCodec) -> None:
    (event,) = codec.parse_response(LoadHistory(conversation=KEY), 200, b"<html>")
    assert event.reason is FailureReason.SERVER_ERROR  # type: ignore[attr-defined]


def test_codec_for_dashboard() -> None:
    codec = codec_for(Dialect.DASHBOARD)
    assert isinstance(codec, DashboardCodec)
    assert codec.dialect is Dialect.DASHBOARD


def test_new_message_names_the_page_once_a_customer_object_named_it() -> None:
    codec = DashboardCodec()
    frame = {
        "type": "new_message",
        "page_id": "p1",
        "timestamp": 1756288800,
        "data": {"chat_id": "c1", "sender_id": "c1", "recipient_id": "p1", "message": "hi", "is_bot": False},
    }
    (before,) = codec.parse_frame(json.dumps(frame))
    assert isinstance(before, MessageReceived)
    assert before.channel == ""  # only the page id is known: never shown as a "channel"
    page = {
        "type": "stopped_customers",
        "timestamp": 1756288800,
        "data": {
            "customers": [{"customer_id": "c2", "page_id": "p1", "page_name": "Shoe Shop", "stop": True}],
            "pagination": {"total": 1, "limit": 50, "skip": 0, "has_more": False},
            "page_id": "",
        },
    }
    codec.parse_frame(json.dumps(page))
    (after,) = codec.parse_frame(json.dumps(frame))
    assert isinstance(after, MessageReceived)
    assert after.channel == "Shoe Shop"


@pytest.mark.parametrize("command_type", [Resolve, HandBack])
def test_resolve_and_hand_back_release_then_give_the_customer_back_to_the_bot(codec, command_type) -> None:
    plan = codec.encode(command_type(conversation=KEY))
    assert plan == Plan(
        steps=(
            HttpCall(method="DELETE", path=f"/api/dashboard/customers/{PSID}/agent", json={"page_id": PAGE}),
            HttpCall(
                method="PUT",
                path=f"/api/dashboard/customers/{PSID}/stop",
                json={"page_id": PAGE, "stop": False},
            ),
        )
    )
    command = command_type(conversation=KEY)
    assert [type(e) for e in codec.parse_response(command, 200, b'{"message": "ok"}')] == [CommandSucceeded]


def test_a_failed_first_step_is_one_clear_failure(codec) -> None:
    take = TakeOver(conversation=KEY)
    assert codec.parse_step(take, 0, 200, b'{"message": "Customer status updated successfully"}') == ()
    (failure,) = codec.parse_step(take, 0, 404, b'{"error": "Customer not found"}')
    assert failure.command_id == take.command_id
    assert failure.reason is FailureReason.NOT_FOUND
    assert failure.text == "Could not stop the bot, so nothing was changed: Customer not found"
    (junk,) = codec.parse_step(take, 0, 500, b"<html>")
    assert junk.reason is FailureReason.SERVER_ERROR
    resolve = Resolve(conversation=KEY)
    (refused,) = codec.parse_step(
        resolve, 0, 403, b'{"error": "Only the assigned agent or an admin can unassign"}'
    )
    assert refused.text.startswith("Could not release the customer")


def test_resolve_failing_at_the_bot_step_says_the_customer_was_released(codec) -> None:
    resolve = Resolve(conversation=KEY)
    (failure,) = codec.parse_response(resolve, 404, b'{"error": "Customer not found"}')
    assert failure.reason is FailureReason.NOT_FOUND
    assert failure.text == "Released, but the bot could not take the customer back: Customer not found"
