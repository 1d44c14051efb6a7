"""Quick replies: IT's and the agent's canned replies, "/" filtering, and safe variable filling.

Pure: the reply box (ui/quick_reply_popup.py) asks this module what the agent is typing, which
replies match, and what text to insert.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from tray_agent.core.settings import QuickReplySetting

__all__ = [
    "VARIABLES",
    "QuickReply",
    "SlashQuery",
    "fill_variables",
    "filter_replies",
    "merge_replies",
    "slash_query",
]

VARIABLES: Final = ("customer_name", "agent_name", "channel", "conversation")
"""The variables a reply text may use, as ``{name}``."""

_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SLASH = re.compile(r"(?:^|(?<=\s))/([\w-]*)$")


@dataclass(frozen=True, slots=True)
class QuickReply:
    """A canned reply.

    Attributes:
        name: the short name typed after "/" (unique, case-insensitively).
        texts: the text by language code; ``"en"`` is the fallback for any other language.
        locked: provided by IT through the machine policy (not editable by the agent).
    """

    name: str
    texts: Mapping[str, str]
    locked: bool = False

    @classmethod
    def from_setting(cls, setting: QuickReplySetting, *, locked: bool = False) -> QuickReply:
        """A reply from its settings entry."""
        texts = {"en": setting.text}
        if setting.text_id:
            texts["id"] = setting.text_id
        return cls(setting.name, texts, locked)

    def text(self, language: str) -> str:
        """The text in ``language``, else English, else any text it has."""
        return self.texts.get(language) or self.texts.get("en") or next(iter(self.texts.values()), "")


def merge_replies(team: Iterable[QuickReplySetting], own: Iterable[QuickReplySetting]) -> list[QuickReply]:
    """IT's replies first (locked), then the agent's own; on a name clash IT's reply wins.

    Entries with no text in any language are skipped; names compare case-insensitively.
    """
    merged: list[QuickReply] = []
    seen: set[str] = set()
    for settings, locked in ((team, True), (own, False)):
        for setting in settings:
            key = setting.name.casefold()
            if key in seen or not (setting.text or setting.text_id):
                continue
            seen.add(key)
            merged.append(QuickReply.from_setting(setting, locked=locked))
    return merged


@dataclass(frozen=True, slots=True)
class SlashQuery:
    """A "/name" being typed: where it starts in the text and what follows the slash.

    Attributes:
        start: the index of the "/" (the text from here to the cursor is replaced on insert).
        prefix: what was typed after the "/" (may be "").
    """

    start: int
    prefix: str


def slash_query(text: str, cursor: int) -> SlashQuery | None:
    """The quick-reply query at ``cursor``: a "/" at the start or after a space, then a name.

    ``"Hi /tha|"`` gives ``SlashQuery(3, "tha")``; a slash inside a word or URL
    (``"http://x"``, ``"and/or"``) is not a query.
    """
    if cursor < 0 or cursor > len(text):
        return None
    match = _SLASH.search(text[:cursor])
    if match is None:
        return None
    return SlashQuery(match.start(), match.group(1))


def filter_replies(replies: Sequence[QuickReply], prefix: str, language: str) -> list[QuickReply]:
    """Replies matching what was typed after "/", best first.

    Names starting with ``prefix`` come first, then names or texts containing it
    (case-insensitive), each group in list order.
    """
    needle = prefix.casefold()
    if not needle:
        return list(replies)
    starts = [r for r in replies if r.name.casefold().startswith(needle)]
    contains = [
        r
        for r in replies
        if r not in starts and (needle in r.name.casefold() or needle in r.text(language).casefold())
    ]
    return starts + contains


def fill_variables(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{customer_name}``-style variables; anything else is left exactly as typed.

    Only names in :data:`VARIABLES` with a non-empty value are replaced, in one pass: a value
    containing braces is inserted literally (never expanded again), and no ``str.format``
    features (attribute access, indexing, format specs) exist, so a reply text cannot reach
    anything but these values.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        value = values.get(name, "") if name in VARIABLES else ""
        return value if value else match.group(0)

    return _VARIABLE.sub(replace, template)
