r"""Customer-supplied text made safe to show: inert on a terminal, isolated from the UI's own text.

Names and messages come from customers and reach two kinds of display:

* **terminals**, through ``tray-agent listen``'s JSON lines. ``json.dumps(ensure_ascii=False)``
  escapes only the C0 controls, so DEL, the C1 controls (U+009B is a one-byte CSI: ``\x9b2J``
  clears the screen on many terminals), the bidi overrides (U+202E reverses what follows on
  the line) and the line separators would reach the terminal raw. :func:`escape_terminal`
  writes them as ``\uXXXX`` escapes: the same string to any JSON parser, inert on a screen.
* **the UI** (inbox cells, chat title and bubble headers, tray menu, toasts), where a name is
  put into the app's own sentences ("{name} asks for a human"). A right-to-left name, or one
  carrying an override, would reorder the words around it. :func:`isolate_bidi` wraps such text
  in FIRST STRONG ISOLATE ... POP DIRECTIONAL ISOLATE (Unicode bidi algorithm, UAX #9), so it
  is laid out on its own and nothing in it leaks out.
"""

from __future__ import annotations

import re
from typing import Final

FSI: Final = "\u2068"
"""FIRST STRONG ISOLATE: starts an isolate whose direction is that of its first strong letter."""
PDI: Final = "\u2069"
"""POP DIRECTIONAL ISOLATE: ends the isolate."""

_ISOLATE_OPENERS: Final = frozenset("\u2066\u2067\u2068")  # LRI, RLI, FSI

_TERMINAL_UNSAFE: Final = re.compile(
    "["
    "\x00-\x1f\x7f-\x9f"  # C0 controls, DEL, C1 controls (U+009B: CSI)
    "\u061c\u200e\u200f"  # ARABIC LETTER MARK, LRM, RLM
    "\u2028\u2029"  # LINE / PARAGRAPH SEPARATOR
    "\u202a-\u202e"  # LRE, RLE, PDF, LRO, RLO
    "\u2066-\u2069"  # LRI, RLI, FSI, PDI
    "\ud800-\udfff"  # lone surrogates (cannot even be encoded to UTF-8)
    "]"
)

_MAY_REORDER: Final = re.compile(
    "["
    "\u0590-\u08ff"  # Hebrew, Arabic (letters, digits, ALM), Syriac, Thaana, NKo, ... Mandaic
    "\u200f"  # RIGHT-TO-LEFT MARK
    "\u202a-\u202e"  # LRE, RLE, PDF, LRO, RLO
    "\u2066-\u2069"  # LRI, RLI, FSI, PDI
    "\ufb1d-\ufdff\ufe70-\ufefe"  # Hebrew and Arabic presentation forms
    "\U00010800-\U00010fff\U0001e800-\U0001efff"  # historic right-to-left scripts, Adlam, ...
    "]"
)
"""Characters that can move the text around them (bidi classes R, AL, AN and the explicit
controls), or share a block with them: a superset, so that the check is one C-speed search;
wrapping a left-to-right text by mistake changes nothing visible."""


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escape_terminal(text: str) -> str:
    r"""``text`` with every character a terminal would act on written as a ``\uXXXX`` escape.

    Escaped: C0 and C1 control characters, DEL, the bidi marks, embeddings, overrides and
    isolates, the Unicode line and paragraph separators, and lone surrogates. Everything else
    (letters of every script, emoji) is kept as it is.

    Meant for one line of JSON (the ``listen`` output): such characters only occur inside its
    strings, where ``\uXXXX`` is the same character to a JSON parser, so
    ``json.loads(escape_terminal(line)) == json.loads(line)``.
    """
    if text.isascii() and text.isprintable():
        return text  # the common case, checked in C
    return _TERMINAL_UNSAFE.sub(_escape, text)


def isolate_bidi(text: str) -> str:
    """``text`` ready to be placed inside the UI's own text without reordering it (UAX #9).

    Text that can move what surrounds it (right-to-left letters, Arabic digits, explicit bidi
    controls) is wrapped in FSI ... PDI; inside, unmatched PDIs (which would end the isolate
    early and let an override out) are dropped and isolates left open are closed, so the
    wrapper always ends exactly where the text does. Embeddings and overrides inside are
    contained by the isolate. Left-to-right text (any text without such characters, all ASCII
    included) is returned unchanged: in the app's left-to-right languages it cannot reorder
    anything, and it stays byte-for-byte what the server sent.

    Plain text for Qt widgets and toasts; never used on text sent to a server.
    """
    if not text or text.isascii() or _MAY_REORDER.search(text) is None:
        return text
    kept: list[str] = []
    depth = 0
    closed_at = -1  # where the isolate opened by the first character closed, if it did
    for ch in text:
        if ch in _ISOLATE_OPENERS:
            depth += 1
        elif ch == PDI:
            if depth == 0:
                continue  # would close our isolate
            depth -= 1
            if depth == 0 and closed_at < 0:
                closed_at = len(kept)
        kept.append(ch)
    if not kept:
        return ""  # nothing but stray PDIs
    if depth == 0 and kept[0] in _ISOLATE_OPENERS and closed_at == len(kept) - 1:
        return "".join(kept)  # already one isolate from the first character to the last
    return FSI + "".join(kept) + PDI * (depth + 1)
