"""Translations for every layer: gettext catalogs (.po) loaded without Qt, plural-aware formatting.

One mechanism for core, platform, CLI and Qt widgets alike (docs/i18n.md):

* Source strings are English and are marked with :func:`_` (or :func:`N_` where the lookup must
  happen later, e.g. in a constant) and :func:`ngettext` for counts. Placeholders are named
  ``str.format`` fields (``{count}``, ``{name}``) so that a translation may reorder them.
* Catalogs are GNU gettext ``.po`` files in
  ``tray_agent/resources/translations/<lang>/LC_MESSAGES/tray_agent.po``. They are parsed here
  at start-up and compiled in memory to the ``.mo`` form the stdlib reads, so that the running
  catalog is a plain :class:`gettext.GNUTranslations` (plural rules from the catalog header; for
  Indonesian ``nplurals=1; plural=0;``). No build step and no extra dependency.
* The language is resolved from the ``ui.language`` setting and the OS languages, which the
  caller reads (app.py from QLocale, the CLI from the environment): this module does no I/O
  besides reading the bundled catalog.

The module keeps the installed catalog in a module global: the app speaks one language at a time
and every layer must agree on it.
"""

from __future__ import annotations

import ast
import gettext
import importlib.resources
import io
import logging
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    # Not imported at run time here: app.py builds its first tray menu before anything needs it.
    from datetime import datetime, timedelta

logger = logging.getLogger(__name__)

__all__ = [
    "DOMAIN",
    "LANGUAGE_NAMES",
    "MARKERS",
    "NP_",
    "N_",
    "SOURCE_LANGUAGE",
    "SUPPORTED_LANGUAGES",
    "Message",
    "PoEntry",
    "PoError",
    "_",
    "catalog_path",
    "compile_mo",
    "extract_messages",
    "format_ago",
    "format_clock",
    "format_duration",
    "language",
    "languages_from_environ",
    "load_translations",
    "ngettext",
    "parse_po",
    "pgettext",
    "placeholders",
    "quote_po",
    "resolve_language",
    "set_language",
]

DOMAIN: Final = "tray_agent"
"""The gettext domain: catalogs are ``<lang>/LC_MESSAGES/tray_agent.po``."""
SOURCE_LANGUAGE: Final = "en"
"""The language of the source strings (no catalog needed)."""
SUPPORTED_LANGUAGES: Final = ("en", "id")
"""Languages with a complete catalog."""
LANGUAGE_NAMES: Final[Mapping[str, str]] = {"en": "English", "id": "Bahasa Indonesia"}
"""Each language's name in that language (shown untranslated in the language picker)."""

# Old and alternative codes for Indonesian ("in" is the pre-1989 ISO code Java and some Android
# builds still report; "ind" is ISO 639-2).
_ALIASES: Final[Mapping[str, str]] = {"in": "id", "ind": "id", "eng": "en"}


# ---------------------------------------------------------------------------------------------
# Language resolution


def _base_language(tag: str) -> str:
    """``"id_ID.UTF-8"``, ``"id-ID"``, ``"in"`` -> ``"id"``; ``"C"``/``"POSIX"``/"" -> ""."""
    tag = tag.strip().split(".", 1)[0].split("@", 1)[0]
    base = re.split(r"[-_]", tag, maxsplit=1)[0].lower()
    if base in ("", "c", "posix"):
        return ""
    return _ALIASES.get(base, base)


def resolve_language(setting: str, os_languages: str | Iterable[str] | None) -> str:
    """The language to use: the setting when it names one, else the first supported OS language.

    Args:
        setting: ``ui.language``: ``"system"``, ``"en"`` or ``"id"`` (unknown values count as
            ``"system"``).
        os_languages: the OS's preferred UI languages, best first, in any common spelling
            (``"id-ID"``, ``"id_ID.UTF-8"``, ``"in"``); app.py passes
            ``QLocale.system().uiLanguages()``, the CLI :func:`languages_from_environ`.

    Returns:
        One of :data:`SUPPORTED_LANGUAGES`; English when nothing matches.
    """
    if setting in SUPPORTED_LANGUAGES:
        return setting
    if isinstance(os_languages, str):
        os_languages = [os_languages]
    for tag in os_languages or ():
        base = _base_language(tag)
        if base in SUPPORTED_LANGUAGES:
            return base
        if base:
            # The first real language decides: an English-first user with Indonesian as a
            # fallback keeps English (the source language) rather than skipping past it.
            return SOURCE_LANGUAGE
    return SOURCE_LANGUAGE


def languages_from_environ(environ: Mapping[str, str]) -> list[str]:
    """The POSIX locale variables as a language list, for tools without Qt (doctor, listen).

    ``LANGUAGE`` (a colon-separated priority list) wins, then ``LC_ALL``, ``LC_MESSAGES``,
    ``LANG``, as gettext itself reads them.
    """
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            return [part for part in value.split(":") if part]
    return []


# ---------------------------------------------------------------------------------------------
# .po parsing and in-memory compilation


class PoError(ValueError):
    """A .po file could not be parsed (with the line number)."""


@dataclass(slots=True)
class PoEntry:
    """One catalog entry.

    Attributes:
        msgid: the English source text ("" is the header entry).
        msgstr: translations: one for a simple entry, one per plural form for a plural one.
        msgid_plural: the English plural (None for a simple entry).
        msgctxt: a disambiguating context (None for none).
        fuzzy: flagged ``#, fuzzy``: not used at run time (as with msgfmt).
        references: ``#:`` source references (informational).
        line: the line of the ``msgid`` keyword.
    """

    msgid: str
    msgstr: list[str] = field(default_factory=list)
    msgid_plural: str | None = None
    msgctxt: str | None = None
    fuzzy: bool = False
    references: list[str] = field(default_factory=list)
    line: int = 0

    @property
    def key(self) -> tuple[str | None, str]:
        """(context, msgid): what a lookup matches."""
        return self.msgctxt, self.msgid

    @property
    def translated(self) -> bool:
        """True when every form has a non-empty translation and the entry is not fuzzy."""
        return not self.fuzzy and bool(self.msgstr) and all(self.msgstr)


_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b"}
_KEYWORD = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(".*")\s*$')


def _unquote(token: str, line: int) -> str:
    if len(token) < 2 or not (token.startswith('"') and token.endswith('"')):
        raise PoError(f"line {line}: expected a quoted string, got {token!r}")
    body = token[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            if i + 1 >= len(body):
                raise PoError(f"line {line}: dangling backslash")
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise PoError(f"line {line}: unknown escape \\{nxt}")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        if char == '"':
            raise PoError(f"line {line}: unescaped quote")
        out.append(char)
        i += 1
    return "".join(out)


def parse_po(text: str) -> list[PoEntry]:
    """Parse a .po file's text into entries (header included, obsolete ``#~`` ones skipped).

    Raises:
        PoError: the text is not a well-formed .po file.
    """
    entries: list[PoEntry] = []
    fuzzy = False
    references: list[str] = []
    current: PoEntry | None = None
    field_name = ""  # the keyword continuation lines append to
    msgctxt: str | None = None

    def finish() -> None:
        nonlocal current, fuzzy, references, msgctxt, field_name
        if current is not None:
            entries.append(current)
        current = None
        fuzzy = False
        references = []
        msgctxt = None
        field_name = ""

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if current is not None and current.msgstr:
                finish()
            if line.startswith("#,") and "fuzzy" in line[2:].replace(",", " ").split():
                fuzzy = True
            elif line.startswith("#:"):
                references.extend(line[2:].split())
            continue  # translator / extracted comments, and obsolete "#~" entries
        if line.startswith('"'):
            value = _unquote(line, number)
            if field_name == "msgctxt" and msgctxt is not None:
                msgctxt += value
            elif current is None:
                raise PoError(f"line {number}: a string outside an entry")
            elif field_name == "msgid":
                current.msgid += value
            elif field_name == "msgid_plural" and current.msgid_plural is not None:
                current.msgid_plural += value
            elif field_name.startswith("msgstr"):
                current.msgstr[-1] += value
            else:
                raise PoError(f"line {number}: a string outside an entry")
            continue
        match = _KEYWORD.match(line)
        if match is None:
            raise PoError(f"line {number}: cannot read {line[:40]!r}")
        keyword, index, token = match.group(1), match.group(2), match.group(3)
        value = _unquote(token, number)
        if keyword == "msgctxt":
            if current is not None:
                finish()
            msgctxt = value
        elif keyword == "msgid":
            if current is not None:
                if not current.msgstr:
                    raise PoError(f"line {number}: msgid without msgstr before it")
                finish()
            current = PoEntry(msgid=value, msgctxt=msgctxt, fuzzy=fuzzy, references=references, line=number)
            msgctxt = None  # consumed: a context belongs to one entry
        elif keyword == "msgid_plural":
            if current is None:
                raise PoError(f"line {number}: msgid_plural without msgid")
            current.msgid_plural = value
        else:  # msgstr / msgstr[n]
            if current is None:
                raise PoError(f"line {number}: msgstr without msgid")
            if index is not None and int(index) != len(current.msgstr):
                raise PoError(f"line {number}: msgstr[{index}] out of order")
            if (index is None) != (current.msgid_plural is None):
                raise PoError(f"line {number}: plural and msgstr forms do not match")
            current.msgstr.append(value)
        field_name = keyword
    if current is not None:
        if not current.msgstr:
            raise PoError(f"line {current.line}: msgid without msgstr")
        entries.append(current)
    return entries


def compile_mo(entries: Iterable[PoEntry]) -> bytes:
    """The GNU .mo bytes of the usable entries (fuzzy and untranslated ones are left out).

    The header entry (msgid "") is always kept: it carries the charset and the plural rule.
    """
    catalog: dict[bytes, bytes] = {}
    for entry in entries:
        if entry.msgid and not entry.translated:
            continue
        if entry.msgid == "" and entry.msgctxt is None:
            key = ""
        else:
            key = entry.msgid
            if entry.msgid_plural is not None:
                key += "\0" + entry.msgid_plural
            if entry.msgctxt is not None:
                key = entry.msgctxt + "\x04" + key
        catalog[key.encode("utf-8")] = "\0".join(entry.msgstr).encode("utf-8")
    keys = sorted(catalog)
    ids = b"".join(k + b"\0" for k in keys)
    strs = b"".join(catalog[k] + b"\0" for k in keys)
    count = len(keys)
    key_start = 7 * 4 + 16 * count
    value_start = key_start + len(ids)
    offsets: list[int] = []
    key_offset = value_offset = 0
    for k in keys:
        offsets += [len(k), key_start + key_offset]
        key_offset += len(k) + 1
    for k in keys:
        offsets += [len(catalog[k]), value_start + value_offset]
        value_offset += len(catalog[k]) + 1
    header = struct.pack("Iiiiiii", 0x950412DE, 0, count, 7 * 4, 7 * 4 + count * 8, 0, 0)
    return header + struct.pack(f"{len(offsets)}i", *offsets) + ids + strs


# ---------------------------------------------------------------------------------------------
# Loading and the current language


def catalog_path(lang: str, root: Traversable | Path | None = None) -> Traversable | Path:
    """Where the .po catalog of ``lang`` lives (bundled resources unless ``root`` is given)."""
    base: Traversable | Path = (
        root
        if root is not None
        else importlib.resources.files("tray_agent.resources").joinpath("translations")
    )
    return base.joinpath(lang, "LC_MESSAGES", f"{DOMAIN}.po")


def load_translations(lang: str, root: Traversable | Path | None = None) -> gettext.NullTranslations:
    """The translations of ``lang``: the source language gets identity, others their catalog.

    A missing or broken catalog is logged and gives English (the app must start regardless).
    """
    if lang == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    path = catalog_path(lang, root)
    try:
        entries = parse_po(path.read_text(encoding="utf-8"))
    except (OSError, PoError) as exc:
        logger.warning("No usable %s catalog at %s (%s): using English", lang, path, exc)
        return gettext.NullTranslations()
    return gettext.GNUTranslations(io.BytesIO(compile_mo(entries)))


_translations: gettext.NullTranslations = gettext.NullTranslations()
_language: str = SOURCE_LANGUAGE


def set_language(lang: str, root: Traversable | Path | None = None) -> str:
    """Use ``lang`` from now on in every layer; returns the language actually installed.

    Args:
        lang: one of :data:`SUPPORTED_LANGUAGES` (anything else installs English).
        root: a catalog directory (tests); default the bundled ``resources/translations``.
    """
    global _translations, _language
    if lang not in SUPPORTED_LANGUAGES:
        lang = SOURCE_LANGUAGE
    _translations = load_translations(lang, root)
    loaded = lang == SOURCE_LANGUAGE or isinstance(_translations, gettext.GNUTranslations)
    _language = lang if loaded else SOURCE_LANGUAGE
    return _language


def language() -> str:
    """The installed language (``"en"`` or ``"id"``)."""
    return _language


def retranslation_table(old: str, new: str, root: Traversable | Path | None = None) -> dict[str, str]:
    """Text shown in ``old`` -> the same message in ``new``: to re-word windows already open.

    Built from the catalogs: every simple (no context, no plural) message whose wording differs
    between the two languages. A text that stands for two messages with different wordings in
    ``new`` is left out (ambiguous), as are untranslated entries. Unreadable catalogs give {}.
    """
    if old == new:
        return {}
    catalogs: dict[str, dict[str, str]] = {}
    for lang in {old, new} - {SOURCE_LANGUAGE}:
        try:
            entries = parse_po(catalog_path(lang, root).read_text(encoding="utf-8"))
        except (OSError, PoError) as exc:
            logger.warning("No usable %s catalog (%s): windows keep their words", lang, exc)
            return {}
        catalogs[lang] = {
            e.msgid: e.msgstr[0]
            for e in entries
            if e.msgid and e.msgctxt is None and e.msgid_plural is None and e.translated
        }
    msgids = {msgid for table in catalogs.values() for msgid in table}

    def wording(lang: str, msgid: str) -> str:
        return catalogs.get(lang, {}).get(msgid, msgid)

    table: dict[str, str | None] = {}
    for msgid in msgids:
        before, after = wording(old, msgid), wording(new, msgid)
        if before in table and table[before] != after:
            table[before] = None  # two messages share the old wording but not the new one
        else:
            table[before] = after
    return {before: after for before, after in table.items() if after is not None and after != before}


def _(message: str) -> str:
    """Translate a user-visible string (call it with a literal so that the extractor sees it)."""
    return _translations.gettext(message)


def N_(message: str) -> str:  # noqa: N802 (the gettext convention)
    """Mark a literal for extraction without translating it now (translate with :func:`_` later)."""
    return message


def NP_(context: str, message: str) -> tuple[str, str]:  # noqa: N802 (the gettext convention)
    """Mark a (context, literal) pair for extraction; translate it later with :func:`pgettext`."""
    return context, message


def ngettext(singular: str, plural: str, n: int) -> str:
    """Translate a string that depends on a count, by the language's plural rule."""
    return _translations.ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """Translate a string within a context (Qt's own strings use their class name as context)."""
    return _translations.pgettext(context, message)


# ---------------------------------------------------------------------------------------------
# Times and durations


def format_duration(seconds: float) -> str:
    """A waiting time, short and plural-correct: "<1 min", "5 min", "2 h 3 min", "3 d 4 h".

    Indonesian: "<1 mnt", "5 mnt", "2 j 3 mnt", "3 hr 4 j".
    """
    total_minutes = max(0, int(seconds // 60))
    if total_minutes < 1:
        return _("<1 min")
    days, rest = divmod(total_minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        day_text = ngettext("{count} d", "{count} d", days).format(count=days)
        if not hours:
            return day_text
        hour_text = ngettext("{count} h", "{count} h", hours).format(count=hours)
        return _("{days} {hours}").format(days=day_text, hours=hour_text)
    minute_text = ngettext("{count} min", "{count} min", minutes).format(count=minutes)
    if not hours:
        return minute_text
    hour_text = ngettext("{count} h", "{count} h", hours).format(count=hours)
    if not minutes:
        return hour_text
    return _("{hours} {minutes}").format(hours=hour_text, minutes=minute_text)


def format_ago(delta: timedelta | float) -> str:
    """How long ago something happened: "just now", "5 minutes ago", "2 hours ago", "3 days ago".

    Args:
        delta: the time since (a timedelta or seconds); the future counts as "just now".
    """
    from datetime import timedelta

    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    if seconds < 60:
        return _("just now")
    minutes = int(seconds // 60)
    if minutes < 60:
        return ngettext("{count} minute ago", "{count} minutes ago", minutes).format(count=minutes)
    hours = minutes // 60
    if hours < 24:
        return ngettext("{count} hour ago", "{count} hours ago", hours).format(count=hours)
    days = hours // 24
    return ngettext("{count} day ago", "{count} days ago", days).format(count=days)


def format_clock(moment: datetime) -> str:
    """A local wall-clock time: "14:05" (English), "14.05" (Indonesian convention)."""
    local = moment.astimezone()
    return _("{hour:02d}:{minute:02d}").format(hour=local.hour, minute=local.minute)


# ---------------------------------------------------------------------------------------------
# Extraction (used by the completeness test and by catalog maintenance)

MARKERS: Final = frozenset({"_", "N_", "NP_", "ngettext", "pgettext"})
"""The call names whose literal arguments are translatable strings."""


@dataclass(frozen=True, slots=True)
class Message:
    """A translatable string found in the source.

    Attributes:
        msgid: the English text.
        msgid_plural: the English plural (ngettext), else None.
        msgctxt: the context (pgettext), else None.
        where: ``path:line`` of the call.
    """

    msgid: str
    msgid_plural: str | None
    msgctxt: str | None
    where: str


def extract_messages(source: str, filename: str = "<string>") -> tuple[list[Message], list[str]]:
    """Find every marked string in Python source.

    Returns:
        (messages, problems): the literals found, and the calls whose arguments are not string
        literals (those can never be in a catalog).
    """
    tree = ast.parse(source, filename)
    found: list[Message] = []
    problems: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name not in MARKERS:
            continue
        if isinstance(func, ast.Attribute) and not (
            isinstance(func.value, ast.Name) and func.value.id == "i18n"
        ):
            continue  # e.g. translations.ngettext inside this module
        where = f"{filename}:{node.lineno}"
        want = {"_": 1, "N_": 1, "NP_": 2, "ngettext": 2, "pgettext": 2}[name]
        args = node.args[:want]
        literals = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if len(literals) != want:
            # A variable is a late lookup of text marked elsewhere (N_); text built at run time
            # (f-strings, concatenation, %, .format before translation) can never be in a catalog.
            if any(isinstance(a, (ast.JoinedStr, ast.BinOp, ast.Call)) for a in args):
                problems.append(f"{where}: {name}() of text built at run time; mark a literal")
            continue
        if name == "ngettext":
            found.append(Message(literals[0], literals[1], None, where))
        elif name in ("pgettext", "NP_"):
            found.append(Message(literals[1], None, literals[0], where))
        else:
            found.append(Message(literals[0], None, None, where))
    return found, problems


def placeholders(text: str) -> frozenset[str]:
    """The ``str.format`` field names of a string (``"{count} min"`` -> ``{"count"}``)."""
    return frozenset(m.group(1) for m in re.finditer(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)[^{}]*\}", text))


def quote_po(text: str) -> str:
    """A .po string literal of ``text``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'
