"""core.text: customer text inert on terminals (escape_terminal) and isolated in the UI (isolate_bidi)."""

from __future__ import annotations

import json
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from tray_agent.core.text import _MAY_REORDER, FSI, PDI, escape_terminal, isolate_bidi

CSI = "\u009b"
RLO = "\u202e"
LRI, RLI = "\u2066", "\u2067"
HOSTILE = f"Ana{CSI}2J{RLO}gnp.exe\x7f\u2028\u0085\u200f{LRI}"
TERMINAL_ACTIVE = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]} | set(
    "\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def test_escape_terminal_leaves_nothing_a_terminal_acts_on_and_keeps_the_json_value():
    line = json.dumps({"customer_name": HOSTILE, "text": "x\ud800y"}, ensure_ascii=False)
    assert {CSI, RLO} <= set(line)  # what json.dumps alone lets through
    safe = escape_terminal(line)
    assert not TERMINAL_ACTIVE & set(safe)
    assert json.loads(safe) == json.loads(line)
    assert "\\u009b" in safe
    assert "\\u202e" in safe
    safe.encode("utf-8")  # the lone surrogate no longer makes the line unprintable


def test_escape_terminal_keeps_every_script_and_emoji_as_they_are():
    text = json.dumps({"n": "Çağrı 李雷 مرحبا שלום 😀 Ñandú"}, ensure_ascii=False)
    assert escape_terminal(text) == text
    assert escape_terminal('{"a":"plain"}') == '{"a":"plain"}'


@given(st.text())
def test_escape_terminal_round_trips_any_string_through_json(value):
    safe = escape_terminal(json.dumps(value, ensure_ascii=False))
    assert json.loads(safe) == value
    assert not TERMINAL_ACTIVE & set(safe)


def test_isolate_bidi_leaves_left_to_right_text_alone():
    for text in ("", "Ana Maria", "Çağrı Öztürk", "李雷", "Ñandú 😀", "<b>x</b> & y"):
        assert isolate_bidi(text) == text


def test_isolate_bidi_wraps_right_to_left_text_and_overrides():
    assert isolate_bidi("שלום") == f"{FSI}שלום{PDI}"
    assert isolate_bidi("محمد ٣") == f"{FSI}محمد ٣{PDI}"
    assert isolate_bidi(f"{RLO}gnp.exe") == f"{FSI}{RLO}gnp.exe{PDI}"


def test_isolate_bidi_cannot_be_closed_early_or_left_open_by_the_text():
    # A stray PDI would end our isolate and let the override reverse the app's own words.
    assert isolate_bidi(f"a{PDI}{RLO}evil") == f"{FSI}a{RLO}evil{PDI}"
    # An isolate opened inside is closed before ours.
    assert isolate_bidi(f"{RLI}evil") == f"{FSI}{RLI}evil{PDI}{PDI}"


def test_isolate_bidi_is_idempotent():
    once = isolate_bidi("שלום")
    assert isolate_bidi(once) == once
    sentence = f"{once} has them"
    assert isolate_bidi(sentence) == f"{FSI}{sentence}{PDI}"  # nested, not merged


BIDI_ALPHABET = st.sampled_from(["a", " ", "1", "ש", "م", "٣", RLO, "\u202c", LRI, RLI, FSI, PDI])


@given(st.lists(BIDI_ALPHABET).map("".join))
def test_isolate_bidi_is_one_balanced_isolate_from_first_to_last_character(text):
    out = isolate_bidi(text)
    assert out.replace(PDI, "").replace(FSI, "") == text.replace(PDI, "").replace(FSI, "")
    if not out or (out == text and not _MAY_REORDER.search(text)):
        return
    assert out[0] == FSI or out[0] in (LRI, RLI)
    depth = 0
    for i, ch in enumerate(out):
        depth += ch in (LRI, RLI, FSI)
        depth -= ch == PDI
        assert depth > 0 or i == len(out) - 1, (text, out)
    assert depth == 0


def test_may_reorder_covers_every_right_to_left_and_bidi_control_character():
    classes = {"R", "AL", "AN", "LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
    missed = [
        f"U+{c:04X}"
        for c in range(0x110000)
        if unicodedata.bidirectional(chr(c)) in classes and not _MAY_REORDER.match(chr(c))
    ]
    assert missed == []
