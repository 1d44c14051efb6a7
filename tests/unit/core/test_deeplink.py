"""tray-agent:// links: parse, reject, build, round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tray_agent.core.deeplink import (
    DeepLink,
    DeepLinkAction,
    DeepLinkError,
    build_link,
    parse_link,
)


@pytest.mark.parametrize(
    ("text", "conversation"),
    [
        ("tray-agent://open/chat-42", "chat-42"),
        ("tray-agent://open/1001%2F77", "1001/77"),
        ("tray-agent://open/1001/77", "1001/77"),  # an unencoded dashboard key
        ("TRAY-AGENT://OPEN/abc", "abc"),
        ("tray-agent:open/abc", "abc"),
        ("  tray-agent://open/a%20b  ", "a b"),
        ("tray-agent://open/9a04e2c-8fa9-48ec%3Fx", "9a04e2c-8fa9-48ec?x"),
        ("1001/77", "1001/77"),
        ("9a044e2c-8fa9-48ec-8559-85bc005ccc13", "9a044e2c-8fa9-48ec-8559-85bc005ccc13"),
    ],
)
def test_parse_link_accepts_links_and_plain_ids(text: str, conversation: str) -> None:
    assert parse_link(text) == DeepLink(DeepLinkAction.OPEN, conversation)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("https://example.com/open/1", "not a tray-agent link"),
        ("mailto:someone@example.com", "not a tray-agent link"),
        ("tray-agent://delete/1", "only 'open'"),
        ("tray-agent://open/", "names no conversation"),
        ("tray-agent://open", "names no conversation"),
        ("tray-agent://open/a%0Ab", "not valid"),
        ("tray-agent://open/" + "x" * 600, "too long"),
    ],
)
def test_parse_link_rejects_anything_else_in_plain_words(text: str, words: str) -> None:
    with pytest.raises(DeepLinkError, match=words):
        parse_link(text)


def test_build_link_encodes_the_slash_of_dashboard_keys() -> None:
    assert build_link("1001/77") == "tray-agent://open/1001%2F77"
    assert DeepLink(DeepLinkAction.OPEN, "a b").to_url() == "tray-agent://open/a%20b"
    with pytest.raises(DeepLinkError):
        build_link("")


@given(
    st.text(
        alphabet=st.characters(min_codepoint=0x20, blacklist_characters="\x7f", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=80,
    ).filter(lambda s: s == s.strip())
)
def test_build_then_parse_round_trips(conversation: str) -> None:
    assert parse_link(build_link(conversation)).conversation == conversation


def test_lone_surrogate_is_refused_not_mangled() -> None:
    with pytest.raises(DeepLinkError):
        build_link("\ud800")
    with pytest.raises(DeepLinkError):
        parse_link("\ud800")
