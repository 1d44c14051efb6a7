"""Customer names and messages cannot reorder the app's own words: bidi isolation where they are shown.

The check is what Qt lays out: after the customer's text, the app's words must run left to right
(QTextLayout implements the Unicode bidi algorithm, isolates included, as toast daemons do).
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QTextLayout

from tests.gui.fakes import T0, SettableNow, make_env, page, summary
from tests.gui.test_chat_window import KEY, Chat
from tray_agent.core.events import AgentRef, SenderKind
from tray_agent.core.policy import AlertTexts
from tray_agent.core.state import MessageRecord
from tray_agent.core.text import FSI, PDI
from tray_agent.ui.models import Column, ConversationTableModel, conflict_text, sender_label
from tray_agent.ui.tray import menu_text, who_has_text

pytestmark = pytest.mark.gui

RLO = "\u202e"
SPOOF = f"{RLO}evil"  # would reverse everything after it on the line
HEBREW = "שלום"


def runs_left_to_right(text: str, words: str) -> bool:
    """Whether ``words`` (the app's own, the last occurrence in ``text``) are laid out left to right."""
    assert words in text
    layout = QTextLayout(text, QFont())
    layout.beginLayout()
    line = layout.createLine()
    line.setLineWidth(100_000)
    layout.endLayout()
    start = text.rindex(words)
    xs = [line.cursorToX(i)[0] for i in range(start, start + len(words) + 1)]
    return all(a < b for a, b in itertools.pairwise(xs))


def test_the_check_sees_an_override_reverse_the_app_words(qapp):
    assert not runs_left_to_right(f"{SPOOF} asks for a human", " asks for a human")
    assert runs_left_to_right(f"{FSI}{SPOOF}{PDI} asks for a human", " asks for a human")


def test_inbox_cells_isolate_customer_text(qapp):
    env = make_env()
    env.feed(page(summary("p/1", SPOOF, channel=HEBREW, last=f"{RLO}olleh"), summary("p/2", "Ana Maria")))
    model = ConversationTableModel(lambda: env.bridge.state, "dashboard", clock=SettableNow(T0))
    model.on_conversations_changed(env.bridge.state.conversations)
    row = {model.index(r, Column.CUSTOMER).data(Qt.ItemDataRole.DisplayRole): r for r in range(2)}
    assert set(row) == {f"{FSI}{SPOOF}{PDI}", "Ana Maria"}  # left-to-right text is left as it is
    hostile = row[f"{FSI}{SPOOF}{PDI}"]
    assert model.index(hostile, Column.CHANNEL).data() == f"{FSI}{HEBREW}{PDI}"
    assert model.index(hostile, Column.LAST_MESSAGE).data() == f"{FSI}{RLO}olleh{PDI}"
    env.close()


def test_chat_sentences_and_headers_keep_their_order(qapp):
    env = make_env()
    env.feed(
        page(summary("p/1", SPOOF, assigned=True, agent=AgentRef(agent_id="a2", name=SPOOF), to_me=False))
    )
    conv = env.bridge.state.conversations.get("p/1")
    text = conflict_text(conv, "")
    assert text == f"{FSI}{SPOOF}{PDI} is already being handled by {FSI}{SPOOF}{PDI}."
    assert runs_left_to_right(text, " is already being handled by ")
    header = sender_label(MessageRecord(SenderKind.CUSTOMER, "hi"), SPOOF, "me") + "  ·  09:00"
    assert runs_left_to_right(header, "  ·  09:00")
    env.close()


def test_the_chat_window_title_isolates_the_name(qtbot, tmp_path):
    chat = Chat(qtbot, tmp_path)
    try:
        chat.env.feed(page(summary(KEY, SPOOF, channel="Shop page", since=timedelta(minutes=-5))))
        title = chat.window.windowTitle()
        assert title == f"{FSI}{SPOOF}{PDI} — Shop page"
        assert runs_left_to_right(title, " — Shop page")
    finally:
        chat.env.close()


def test_tray_menu_entries_isolate_names(qapp):
    entry = " · ".join([menu_text(SPOOF), "5 min", menu_text("nobody has them")])
    assert runs_left_to_right(entry, " · 5 min · nobody has them")
    env = make_env()
    env.feed(page(summary("p/1", "x", assigned=True, agent=AgentRef(agent_id="a2", name=SPOOF), to_me=False)))
    sentence = who_has_text(env.bridge.state.conversations.get("p/1"))
    assert runs_left_to_right(sentence, " has them")
    env.close()


@pytest.mark.parametrize(
    ("build", "tail"),
    [
        (lambda name: AlertTexts.escalation_title(name), " asks for a human"),
        (lambda name: AlertTexts.reminder_title(name, 95), " is still waiting (95 min)"),
        (lambda name: AlertTexts.message_title(name, "whatsapp"), " · whatsapp"),
        (lambda name: AlertTexts.summary_body([name, "Budi"], 4), ", Budi and 2 more"),
        (lambda name: AlertTexts.message_body(3, name), ""),
    ],
)
def test_toast_texts_isolate_customer_text(qapp, build, tail):
    assert build(HEBREW).count(f"{FSI}{HEBREW}{PDI}") == 1
    assert build("Ana") == build("Ana").replace(FSI, "")  # left-to-right names are left alone
    if tail:
        assert runs_left_to_right(build(SPOOF), tail)
