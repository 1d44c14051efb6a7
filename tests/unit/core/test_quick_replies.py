"""core.quick_replies: merging IT's and the agent's lists, "/" queries, filtering, safe variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tray_agent.core.quick_replies import (
    QuickReply,
    SlashQuery,
    fill_variables,
    filter_replies,
    merge_replies,
    slash_query,
)
from tray_agent.core.settings import QuickReplySetting, Settings

TEAM = [
    QuickReplySetting(
        name="thanks", text="Thanks, {customer_name}!", text_id="Terima kasih, {customer_name}!"
    ),
    QuickReplySetting(name="hours", text="We are open 9 to 5."),
]
OWN = [
    QuickReplySetting(name="Thanks", text="my own thanks"),  # clashes with IT's: IT wins
    QuickReplySetting(name="greet", text="Hi, I'm {agent_name}.", text_id="Halo, saya {agent_name}."),
    QuickReplySetting(name="empty"),
]


def test_quick_replies_merge_team_first_locked_and_wins_clashes():
    merged = merge_replies(TEAM, OWN)
    assert [(r.name, r.locked) for r in merged] == [("thanks", True), ("hours", True), ("greet", False)]


def test_quick_replies_text_per_language_with_english_fallback():
    thanks, hours, greet = merge_replies(TEAM, OWN)
    assert thanks.text("id") == "Terima kasih, {customer_name}!"
    assert thanks.text("en") == "Thanks, {customer_name}!"
    assert hours.text("id") == "We are open 9 to 5."
    assert QuickReply("x", {"id": "hanya"}).text("en") == "hanya"
    assert QuickReply("x", {}).text("en") == ""
    assert greet.text("fr") == "Hi, I'm {agent_name}."


@pytest.mark.parametrize(
    ("text", "cursor", "expected"),
    [
        ("/", 1, SlashQuery(0, "")),
        ("/tha", 4, SlashQuery(0, "tha")),
        ("Hi /gr", 6, SlashQuery(3, "gr")),
        ("Hi /gr and more", 6, SlashQuery(3, "gr")),
        ("http://x", 8, None),
        ("and/or", 6, None),
        ("/two words", 10, None),
        ("plain", 5, None),
        ("/x", 5, None),
        ("/x", -1, None),
    ],
)
def test_quick_replies_slash_query(text, cursor, expected):
    assert slash_query(text, cursor) == expected


def test_quick_replies_filter_prefix_first_then_contains():
    merged = merge_replies(TEAM, OWN)
    assert [r.name for r in filter_replies(merged, "", "en")] == ["thanks", "hours", "greet"]
    assert [r.name for r in filter_replies(merged, "TH", "en")] == ["thanks"]
    assert [r.name for r in filter_replies(merged, "h", "en")] == ["hours", "thanks", "greet"]
    assert [r.name for r in filter_replies(merged, "halo", "id")] == ["greet"]
    assert filter_replies(merged, "zzz", "en") == []


def test_quick_replies_fill_known_variables_only():
    values = {"customer_name": "Ana", "agent_name": "Sam", "channel": "Shop", "conversation": "p/1"}
    assert fill_variables("Hi {customer_name}, {agent_name} here ({channel}, {conversation})", values) == (
        "Hi Ana, Sam here (Shop, p/1)"
    )
    assert fill_variables("{unknown} {customer_name}", values) == "{unknown} Ana"
    assert fill_variables("{customer_name}", {"customer_name": ""}) == "{customer_name}"  # unknown stays


@pytest.mark.parametrize(
    "template",
    ["{0}", "{customer_name.__class__}", "{customer_name!r}", "{customer_name:>99}", "{{customer_name}}"],
)
def test_quick_replies_no_format_string_injection(template):
    filled = fill_variables(template, {"customer_name": "Ana"})
    assert "class" not in filled or filled == template
    assert filled in (template, "{Ana}")


def test_quick_replies_values_are_never_expanded_again():
    assert fill_variables("{customer_name}", {"customer_name": "{agent_name}", "agent_name": "X"}) == (
        "{agent_name}"
    )


def test_quick_replies_settings_validate_names():
    with pytest.raises(ValidationError):
        QuickReplySetting(name="two words", text="x")
    with pytest.raises(ValidationError):
        QuickReplySetting(name="", text="x")
    settings = Settings.model_validate({"ui": {"quick_replies": [{"name": "hi", "text": "Hello"}]}})
    assert settings.ui.quick_replies[0].name == "hi"
    assert settings.ui.team_quick_replies == []
