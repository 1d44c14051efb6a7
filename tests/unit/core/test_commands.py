"""`listen` command lines -> commands, and every way a line can be wrong."""

from __future__ import annotations

import pytest

from tray_agent.core.commands import (
    CommandLineError,
    DiscardCommand,
    HandBack,
    LoadHistory,
    RefreshWaitingList,
    Release,
    ResendCommand,
    Resolve,
    SendReply,
    TakeOver,
    command_from_line,
)
from tray_agent.core.events import CommandKind


@pytest.mark.parametrize(
    ("line", "expected_type", "conversation"),
    [
        ('{"cmd": "take_over", "conversation": "p/1"}', TakeOver, "p/1"),
        ('{"cmd": "release", "conversation": "chat-9"}', Release, "chat-9"),
        ('{"cmd": "refresh"}', RefreshWaitingList, ""),
        ('{"cmd": "history", "conversation": "c", "page": 2}', LoadHistory, "c"),
    ],
)
def test_command_from_line_builds_each_command(line, expected_type, conversation):
    command = command_from_line(line)
    assert type(command) is expected_type
    assert command.conversation_key == conversation


def test_reply_keeps_text_verbatim_and_caller_id():
    command = command_from_line(
        '{"cmd": "reply", "conversation": "p/1", "text": " Halo <b>!\\n", "id": "mine-1"}'
    )
    assert isinstance(command, SendReply)
    assert command.text == " Halo <b>!\n"
    assert command.command_id == "mine-1"


@pytest.mark.parametrize(
    ("line", "kind", "fragment"),
    [
        ("not json", CommandKind.UNKNOWN, "not JSON"),
        ("[1, 2]", CommandKind.UNKNOWN, "JSON object"),
        ('{"cmd": "explode"}', CommandKind.UNKNOWN, "unknown command"),
        ('{"conversation": "x"}', CommandKind.UNKNOWN, "unknown command"),
        ('{"cmd": "take_over"}', CommandKind.TAKE_OVER, "conversation"),
        ('{"cmd": "reply", "conversation": "p/1"}', CommandKind.REPLY, "text"),
        ('{"cmd": "reply", "conversation": "p/1", "text": "   "}', CommandKind.REPLY, "text"),
        ('{"cmd": "release", "conversation": 5}', CommandKind.RELEASE, "conversation"),
        ('{"cmd": "history", "conversation": "c", "page": -1}', CommandKind.HISTORY, "page"),
        ('{"cmd": "history", "conversation": "c", "page": true}', CommandKind.HISTORY, "page"),
        ("[" * 100_000, CommandKind.UNKNOWN, "not JSON"),
    ],
)
def test_command_from_line_rejects_bad_lines(line, kind, fragment):
    with pytest.raises(CommandLineError) as info:
        command_from_line(line)
    assert info.value.kind is kind
    assert fragment in info.value.text


def test_rejected_line_keeps_caller_id():
    with pytest.raises(CommandLineError) as info:
        command_from_line('{"cmd": "take_over", "id": "k-7"}')
    assert info.value.command_id == "k-7"


@pytest.mark.parametrize(("name", "expected_type"), [("resend", ResendCommand), ("discard", DiscardCommand)])
def test_command_from_line_resolves_unconfirmed_by_command_id(name, expected_type):
    command = command_from_line(f'{{"cmd": "{name}", "command_id": "abc-3"}}')
    assert type(command) is expected_type
    assert command.command_id == "abc-3"


@pytest.mark.parametrize("line", ['{"cmd": "resend"}', '{"cmd": "discard", "command_id": ""}'])
def test_command_from_line_resend_needs_command_id(line):
    with pytest.raises(CommandLineError) as info:
        command_from_line(line)
    assert "command_id" in info.value.text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"cmd": "resolve", "conversation": "p/1"}', Resolve("p/1", command_id="x")),
        ('{"cmd": "hand_back", "conversation": "chat-9"}', HandBack("chat-9", command_id="x")),
        (
            '{"cmd": "take_over", "conversation": "c", "force": true}',
            TakeOver("c", force=True, command_id="x"),
        ),
        ('{"cmd": "take_over", "conversation": "c"}', TakeOver("c", force=False, command_id="x")),
    ],
)
def test_command_from_line_life_cycle_commands(line: str, expected: object) -> None:
    command = command_from_line(line[:-1] + ', "id": "x"}')
    assert command == expected


def test_command_from_line_force_must_be_a_bool() -> None:
    with pytest.raises(CommandLineError) as info:
        command_from_line('{"cmd": "take_over", "conversation": "c", "force": "yes"}')
    assert info.value.kind is CommandKind.TAKE_OVER
    assert "force" in info.value.text


def test_resend_and_discard_have_their_own_kinds() -> None:
    assert ResendCommand(command_id="a").kind is CommandKind.RESEND
    assert DiscardCommand(command_id="a").kind is CommandKind.DISCARD
    assert Resolve("c").kind is CommandKind.RESOLVE
    assert HandBack("c").kind is CommandKind.HAND_BACK
