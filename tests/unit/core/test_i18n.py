"""core.i18n: .po parsing, language resolution, plurals, durations, and catalog completeness.

Run as a script to bring the catalogs up to date with the source (new strings are added
untranslated, stale ones are dropped, translations are kept)::

    .venv/bin/python -m tests.unit.core.test_i18n
"""

from __future__ import annotations

import ast
import gettext
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tray_agent.core import i18n
from tray_agent.core.i18n import (
    Message,
    PoEntry,
    PoError,
    _,
    compile_mo,
    extract_messages,
    format_ago,
    format_clock,
    format_duration,
    languages_from_environ,
    ngettext,
    parse_po,
    placeholders,
    quote_po,
    resolve_language,
    set_language,
)

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "tray_agent"
TRANSLATIONS = ROOT / "resources" / "translations"
TRANSLATED = ("id",)
"""Languages whose catalog must be complete (English is the source language)."""
_SKIP_DIRS = ("demo",)
HEADERS = {
    "id": (
        "Project-Id-Version: tray_agent\\n",
        "Language: id\\n",
        "MIME-Version: 1.0\\n",
        "Content-Type: text/plain; charset=UTF-8\\n",
        "Content-Transfer-Encoding: 8bit\\n",
        "Plural-Forms: nplurals=1; plural=0;\\n",
    )
}


@pytest.fixture(autouse=True)
def english():
    set_language("en")
    yield
    set_language("en")


# ---------------------------------------------------------------------------------------------
# Source scanning (shared with the catalog updater below)


def source_files() -> list[Path]:
    """Every module that uses core.i18n (modules that do not import it cannot mark strings)."""
    files = []
    for path in sorted(SOURCE.rglob("*.py")):
        rel = path.relative_to(SOURCE)
        if rel.parts[0] in _SKIP_DIRS:
            continue
        text = path.read_text(encoding="utf-8")
        if (
            "tray_agent.core.i18n" in text
            or "from tray_agent.core import i18n" in text
            or rel.name == "i18n.py"
        ):
            files.append(path)
    return files


def source_messages() -> tuple[dict[tuple[str | None, str], Message], list[str]]:
    found: dict[tuple[str | None, str], Message] = {}
    problems: list[str] = []
    for path in source_files():
        rel = str(path.relative_to(ROOT))
        messages, bad = extract_messages(path.read_text(encoding="utf-8"), rel)
        problems += bad
        for message in messages:
            found.setdefault((message.msgctxt, message.msgid), message)
    return found, problems


def catalog(lang: str) -> list[PoEntry]:
    return parse_po((TRANSLATIONS / lang / "LC_MESSAGES" / "tray_agent.po").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Completeness


def test_i18n_marker_calls_use_literals():
    _found, problems = source_messages()
    assert problems == []


def test_i18n_every_source_string_has_an_indonesian_translation():
    found, _problems = source_messages()
    assert len(found) > 200  # the scan works (an empty scan would pass vacuously)
    for lang in TRANSLATED:
        entries = {e.key: e for e in catalog(lang) if e.msgid}
        missing = [
            f"{m.where}: {m.msgid!r}"
            for key, m in found.items()
            if key not in entries or not entries[key].translated
        ]
        assert missing == [], f"untranslated in {lang} (run: python -m tests.unit.core.test_i18n)"
        plural_mismatch = [
            m.msgid
            for key, m in found.items()
            if (entries[key].msgid_plural is None) != (m.msgid_plural is None)
        ]
        assert plural_mismatch == []


def test_i18n_catalog_has_no_stale_entries():
    found, _problems = source_messages()
    for lang in TRANSLATED:
        stale = [e.msgid for e in catalog(lang) if e.msgid and e.key not in found]
        assert stale == [], f"stale entries in {lang} (run: python -m tests.unit.core.test_i18n)"


def test_i18n_translations_keep_placeholders_and_mnemonics():
    for lang in TRANSLATED:
        for entry in catalog(lang):
            if not entry.msgid:
                continue
            wanted = placeholders(entry.msgid) | placeholders(entry.msgid_plural or "")
            for text in entry.msgstr:
                assert placeholders(text) == wanted, (entry.msgid, text)
                # A mnemonic in English wants one in the translation (keyboard access).
                assert ("&" in entry.msgid.replace("&&", "")) == ("&" in text.replace("&&", "")), (
                    entry.msgid,
                    text,
                )
                assert text.count("\n") == entry.msgid.count("\n"), entry.msgid


def test_i18n_indonesian_catalog_header_plural_rule():
    header = next(e for e in catalog("id") if not e.msgid)
    assert "Plural-Forms: nplurals=1; plural=0;" in header.msgstr[0]
    assert "charset=UTF-8" in header.msgstr[0]


def test_i18n_indonesian_mnemonics_are_unique_per_window():
    # Each window's mnemonics (Alt+letter) must stay unique after translation (this tree's catalog).
    set_language("id", TRANSLATIONS)
    groups = [
        ["&Open chat", "&Take over", "&Release", "&File", "Resol&ve", "Hand back to &AI", "Take any&way"],
        ["&Take over", "&Release", "&Send", "Re&try", "Resol&ve", "Hand back to &AI", "Take any&way"],
        ["&Settings…", "Sign &in…", "&Close window", "&Quit", "&Keyboard shortcuts"],
    ]
    for group in groups:
        letters = [re.search(r"&(\w)", _(text)).group(1).lower() for text in group]  # type: ignore[union-attr]
        assert len(set(letters)) == len(letters), [_(t) for t in group]


# ---------------------------------------------------------------------------------------------
# The running catalog


def test_i18n_set_language_indonesian_translates_and_falls_back():
    assert set_language("id") == "id"
    assert i18n.language() == "id"
    assert _("Take over") == "Ambil alih"
    assert _("a string nobody translated") == "a string nobody translated"
    assert set_language("en") == "en"
    assert _("Take over") == "Take over"


def test_i18n_unknown_language_installs_english():
    assert set_language("xx") == "en"


def test_i18n_missing_catalog_falls_back_to_english(tmp_path, caplog):
    assert set_language("id", tmp_path) == "en"
    assert _("Take over") == "Take over"
    assert "No usable id catalog" in caplog.text


def test_i18n_plurals_english_and_indonesian():
    assert ngettext("{count} customer waiting", "{count} customers waiting", 1).format(count=1) == (
        "1 customer waiting"
    )
    assert ngettext("{count} customer waiting", "{count} customers waiting", 3).format(count=3) == (
        "3 customers waiting"
    )
    set_language("id")
    for n in (0, 1, 2, 21):
        assert ngettext("{count} customer waiting", "{count} customers waiting", n).format(count=n) == (
            f"{n} pelanggan menunggu"
        )


@pytest.mark.parametrize(
    ("seconds", "en", "id_"),
    [
        (0, "<1 min", "<1 mnt"),
        (59, "<1 min", "<1 mnt"),
        (60, "1 min", "1 mnt"),
        (5 * 60 + 30, "5 min", "5 mnt"),
        (3600, "1 h", "1 j"),
        (2 * 3600 + 3 * 60, "2 h 3 min", "2 j 3 mnt"),
        (86400, "1 d", "1 hr"),
        (3 * 86400 + 4 * 3600 + 59, "3 d 4 h", "3 hr 4 j"),
        (-5, "<1 min", "<1 mnt"),
    ],
)
def test_i18n_format_duration(seconds, en, id_):
    assert format_duration(seconds) == en
    set_language("id")
    assert format_duration(seconds) == id_


@pytest.mark.parametrize(
    ("delta", "en", "id_"),
    [
        (timedelta(seconds=10), "just now", "baru saja"),
        (timedelta(seconds=-30), "just now", "baru saja"),
        (timedelta(minutes=1), "1 minute ago", "1 menit yang lalu"),
        (timedelta(minutes=5), "5 minutes ago", "5 menit yang lalu"),
        (timedelta(hours=1, minutes=5), "1 hour ago", "1 jam yang lalu"),
        (timedelta(hours=2), "2 hours ago", "2 jam yang lalu"),
        (timedelta(days=1), "1 day ago", "1 hari yang lalu"),
        (timedelta(days=3), "3 days ago", "3 hari yang lalu"),
        (300.0, "5 minutes ago", "5 menit yang lalu"),
    ],
)
def test_i18n_format_ago(delta, en, id_):
    assert format_ago(delta) == en
    set_language("id")
    assert format_ago(delta) == id_


def test_i18n_format_clock_uses_the_language_convention():
    moment = datetime(2026, 3, 4, 14, 5, tzinfo=UTC).astimezone()  # local 14:05 whatever the TZ
    local = moment.replace(hour=14, minute=5)
    assert format_clock(local) == "14:05"
    set_language("id")
    assert format_clock(local) == "14.05"


# ---------------------------------------------------------------------------------------------
# Language resolution


@pytest.mark.parametrize(
    ("setting", "os_languages", "expected"),
    [
        ("id", ["en-US"], "id"),
        ("en", ["id-ID"], "en"),
        ("system", ["id-ID", "en-US"], "id"),
        ("system", "id_ID.UTF-8", "id"),
        ("system", ["in"], "id"),
        ("system", ["en-GB", "id-ID"], "en"),
        ("system", ["fr-FR", "id-ID"], "en"),
        ("system", ["C"], "en"),
        ("system", ["C", "id"], "id"),
        ("system", [], "en"),
        ("system", None, "en"),
        ("bogus", ["id-ID"], "id"),
    ],
)
def test_i18n_resolve_language(setting, os_languages, expected):
    assert resolve_language(setting, os_languages) == expected


def test_i18n_languages_from_environ():
    assert languages_from_environ({"LANGUAGE": "id:en", "LANG": "en_US.UTF-8"}) == ["id", "en"]
    assert languages_from_environ({"LC_ALL": "id_ID.UTF-8"}) == ["id_ID.UTF-8"]
    assert languages_from_environ({"LANG": "en_US.UTF-8"}) == ["en_US.UTF-8"]
    assert languages_from_environ({}) == []


# ---------------------------------------------------------------------------------------------
# .po parsing and compiling


PO = r"""# A translator comment
msgid ""
msgstr ""
"Language: id\n"
"Plural-Forms: nplurals=1; plural=0;\n"
"Content-Type: text/plain; charset=UTF-8\n"

#: tray_agent/ui/tray.py
msgid "Take over"
msgstr "Ambil alih"

msgid ""
"Two "
"lines\n"
"and a \"quote\""
msgstr "Dua baris\nlalu \"kutipan\""

#, fuzzy
msgid "Release"
msgstr "Lepas"

msgid "Empty"
msgstr ""

msgctxt "QLineEdit"
msgid "&Copy"
msgstr "&Salin"

msgid "{count} file"
msgid_plural "{count} files"
msgstr[0] "{count} berkas"

#~ msgid "Old"
#~ msgstr "Lama"
"""


def test_i18n_parse_po_reads_every_kind_of_entry():
    entries = parse_po(PO)
    by_id = {e.key: e for e in entries}
    assert by_id[(None, "Take over")].msgstr == ["Ambil alih"]
    assert by_id[(None, "Take over")].references == ["tray_agent/ui/tray.py"]
    assert by_id[(None, 'Two lines\nand a "quote"')].msgstr == ['Dua baris\nlalu "kutipan"']
    assert by_id[(None, "Release")].fuzzy
    assert not by_id[(None, "Release")].translated
    assert not by_id[(None, "Empty")].translated
    assert by_id[("QLineEdit", "&Copy")].msgstr == ["&Salin"]
    assert by_id[(None, "{count} file")].msgid_plural == "{count} files"
    assert (None, "Old") not in by_id
    assert "Plural-Forms" in by_id[(None, "")].msgstr[0]


def test_i18n_compiled_catalog_works_with_stdlib_gettext():
    import io

    translations = gettext.GNUTranslations(io.BytesIO(compile_mo(parse_po(PO))))
    assert translations.gettext("Take over") == "Ambil alih"
    assert translations.gettext("Release") == "Release"  # fuzzy: not used
    assert translations.gettext("Empty") == "Empty"
    assert translations.pgettext("QLineEdit", "&Copy") == "&Salin"
    assert translations.ngettext("{count} file", "{count} files", 5) == "{count} berkas"


@pytest.mark.parametrize(
    "bad",
    [
        'msgid "a"\n',
        'msgstr "a"\n',
        'msgid "a\nmsgstr "b"\n',
        'msgid "a"\nmsgstr "b\\q"\n',
        'msgid "a"\nmsgstr[0] "b"\n',
        'msgid "a"\nmsgid_plural "as"\nmsgstr "b"\n',
        'msgid "a"\nmsgid_plural "as"\nmsgstr[1] "b"\n',
        "nonsense\n",
        '"loose string"\n',
        'msgid "a"\nmsgid "b"\nmsgstr "c"\n',
    ],
)
def test_i18n_parse_po_rejects_malformed_text(bad):
    with pytest.raises(PoError):
        parse_po(bad)


def test_i18n_quote_po_round_trips():
    text = 'a "b"\\c\nd\te'
    assert parse_po(f"msgid {quote_po(text)}\nmsgstr {quote_po(text)}\n")[0].msgstr == [text]


def test_i18n_extract_messages_finds_marked_literals_only():
    source = """
from tray_agent.core import i18n
from tray_agent.core.i18n import _, N_, NP_, ngettext
a = _("One")
b = N_("Two")
c = ngettext("{n} cat", "{n} cats", 2)
d = NP_("QLineEdit", "&Copy")
e = i18n._("Three")
f = other.ngettext(x, y, 1)
g = _(variable)
h = _(f"no {x}")
i = _("a" + x)
"""
    found, problems = extract_messages(source, "m.py")
    assert [(m.msgctxt, m.msgid, m.msgid_plural) for m in found] == [
        (None, "One", None),
        (None, "Two", None),
        (None, "{n} cat", "{n} cats"),
        ("QLineEdit", "&Copy", None),
        (None, "Three", None),
    ] or sorted((m.msgctxt or "", m.msgid) for m in found) == sorted(
        [("", "One"), ("", "Two"), ("", "{n} cat"), ("QLineEdit", "&Copy"), ("", "Three")]
    )
    assert len(problems) == 2
    assert all(p.startswith("m.py:") for p in problems)


def test_i18n_placeholders():
    assert placeholders("{count} min") == {"count"}
    assert placeholders("{hour:02d}.{minute:02d}") == {"hour", "minute"}
    assert placeholders("{{literal}} {name}") == {"name"}
    assert placeholders("none") == frozenset()


def test_i18n_the_scanner_sees_the_whole_tree():
    # Guards the completeness test: a file that marks strings is scanned.
    names = {p.name for p in source_files()}
    assert {"tray.py", "chat_window.py", "policy.py", "notifier.py", "i18n.py"} <= names
    tree = ast.parse((SOURCE / "ui" / "tray.py").read_text(encoding="utf-8"))
    assert tree.body


# ---------------------------------------------------------------------------------------------
# The catalog updater


def write_catalog(path: Path, header: tuple[str, ...], entries: list[tuple[Message, list[str]]]) -> None:
    lines = ['msgid ""', 'msgstr ""', *(f'"{h}"' for h in header), ""]
    for message, msgstr in entries:
        lines.append(f"#: {message.where.rsplit(':', 1)[0]}")
        if message.msgctxt is not None:
            lines.append(f"msgctxt {quote_po(message.msgctxt)}")
        lines.append(f"msgid {quote_po(message.msgid)}")
        if message.msgid_plural is not None:
            lines.append(f"msgid_plural {quote_po(message.msgid_plural)}")
            forms = msgstr or [""]
            lines += [f"msgstr[{i}] {quote_po(text)}" for i, text in enumerate(forms)]
        else:
            lines.append(f"msgstr {quote_po(msgstr[0] if msgstr else '')}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def update_catalogs() -> None:
    found, problems = source_messages()
    for problem in problems:
        print("warning:", problem, file=sys.stderr)
    ordered = sorted(
        found.values(), key=lambda m: (m.where.rsplit(":", 1)[0], int(m.where.rsplit(":", 1)[1]))
    )
    pot_header = tuple(h for h in HEADERS["id"] if not h.startswith(("Language:", "Plural-Forms:")))
    write_catalog(TRANSLATIONS / "tray_agent.pot", pot_header, [(m, []) for m in ordered])
    for lang in TRANSLATED:
        path = TRANSLATIONS / lang / "LC_MESSAGES" / "tray_agent.po"
        old = {e.key: e for e in parse_po(path.read_text(encoding="utf-8"))} if path.exists() else {}
        entries = []
        for m in ordered:
            entry = old.get((m.msgctxt, m.msgid))
            entries.append((m, entry.msgstr if entry is not None and not entry.fuzzy else []))
        write_catalog(path, HEADERS[lang], entries)
        untranslated = sum(1 for _m, s in entries if not s or not all(s))
        print(f"{lang}: {len(entries)} strings, {untranslated} untranslated")


if __name__ == "__main__":
    update_catalogs()
