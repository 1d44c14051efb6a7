"""The UI in Indonesian (screenshots), Qt's own strings translated, and no untranslated literal
handed to a Qt text setter anywhere in tray_agent/ui (AST walk)."""

from __future__ import annotations

import ast
import re
from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QLocale, Qt
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QLineEdit

from tests.gui.fakes import make_env, page, summary
from tests.gui.test_customer_service import ARTIFACTS
from tray_agent.core import i18n
from tray_agent.core.events import AgentRef, HistoryPage, MessageReceived, SenderKind
from tray_agent.ui.language import apply_language

pytestmark = pytest.mark.gui

UI = Path(__file__).resolve().parents[2] / "tray_agent" / "ui"


@pytest.fixture
def indonesian(qapp):
    assert apply_language("id", qapp) == "id"
    yield
    apply_language("en", qapp)


@pytest.fixture
def manager(tmp_path):
    env = make_env()
    env.feed(
        page(
            summary("p/a", "Siti Rahma", since=timedelta(minutes=-12), last="Pesanan saya belum sampai"),
            summary("p/b", "Budi", since=timedelta(minutes=-75), last="Halo?"),
            summary(
                "p/c", "Citra", since=timedelta(minutes=-3), assigned=True, agent=AgentRef("me-1"), to_me=True
            ),
            summary("p/d", "Dewi", since=timedelta(minutes=-30), assigned=True, agent=AgentRef("x", "Agus")),
        )
    )
    manager = env.window_manager(tmp_path / "windows.json")
    yield env, manager
    manager.close_all()
    env.close()


def test_i18n_ui_inbox_and_chat_in_indonesian(indonesian, manager, qtbot):
    env, windows = manager
    inbox = windows.show_inbox()
    qtbot.waitExposed(inbox)
    assert inbox.windowTitle() == "Layanan Pelanggan"
    assert inbox.tabs.tabText(0) == "Menunggu agen (2)"  # Citra and Dewi are taken (issue 14)
    assert inbox.take_over_button.text() == "&Ambil alih"
    assert inbox.model.headerData(0, Qt.Orientation.Horizontal) == "Pelanggan"
    assert inbox.proxies[0].index(0, 3).data() == "1 j 15 mnt"  # Budi, waiting 75 min
    menus = [a.text() for a in inbox.menuBar().actions()]
    assert menus[:3] == ["&Berkas", "Perca&kapan", "Ban&tuan"]
    inbox.resize(900, 380)
    inbox.select_conversation("p/a")
    QApplication.processEvents()
    ARTIFACTS.mkdir(exist_ok=True)
    assert inbox.grab().save(str(ARTIFACTS / "inbox-id.png"))

    chat = windows.open_chat("p/a")
    env.feed(
        HistoryPage(
            conversation="p/a",
            messages=(
                MessageReceived(
                    conversation="p/a",
                    sender=SenderKind.CUSTOMER,
                    text="Halo, pesanan saya belum sampai.",
                    sent_at=env.clock.now - timedelta(minutes=10),
                ),
                MessageReceived(
                    conversation="p/a",
                    sender=SenderKind.BOT,
                    text="Menghubungkan Anda ke agen.",
                    sent_at=env.clock.now - timedelta(minutes=9),
                ),
            ),
        )
    )
    assert chat.handler_text.startswith("Menunggu agen sejak ")
    assert chat.send_button.text() == "&Kirim"
    assert chat.reply_edit.placeholderText().startswith("Tulis balasan")
    chat.resize(440, 560)
    QApplication.processEvents()
    assert chat.grab().save(str(ARTIFACTS / "chat-id.png"))

    help_dialog = windows.show_keyboard_help()
    assert ("Ctrl+Shift+N", "Pelanggan berikutnya yang menunggu") in help_dialog.rows
    assert help_dialog.grab().save(str(ARTIFACTS / "keyboard-help-id.png"))
    settings = windows.show_settings()
    assert settings.windowTitle() == "Pengaturan"
    assert settings.save_button.text() == "Simpan"  # Qt's own button, from our catalog
    settings.resize(700, 600)
    assert settings.grab().save(str(ARTIFACTS / "settings-id.png"))


def test_i18n_ui_qt_strings_and_locale_follow_the_language(indonesian, qtbot):
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
    qtbot.addWidget(buttons)
    assert sorted(b.text() for b in buttons.buttons()) == ["Batal", "Simpan"]
    edit = QLineEdit()
    qtbot.addWidget(edit)
    menu = edit.createStandardContextMenu()
    texts = [a.text().split("\t")[0] for a in menu.actions() if not a.isSeparator()]
    assert "&Salin" in texts
    assert "&Tempel" in texts
    assert QLocale().language() == QLocale.Language.Indonesian


def test_i18n_ui_english_is_back_after_switching(qapp):
    apply_language("id", qapp)
    apply_language("en", qapp)
    assert i18n.language() == "en"
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
    assert buttons.buttons()[0].text() == "Cancel"
    assert QLocale().language() == QLocale.Language.English


# ---------------------------------------------------------------------------------------------
# Static check: every user-visible literal handed to Qt goes through _()

TEXT_SETTERS = frozenset(
    {
        "setText",
        "setWindowTitle",
        "setToolTip",
        "setStatusTip",
        "setWhatsThis",
        "setPlaceholderText",
        "setAccessibleName",
        "setAccessibleDescription",
        "setTabText",
        "setTitle",
        "addAction",
        "addMenu",
        "addTab",
        "addItem",
        "insertItem",
        "showMessage",
        "setHorizontalHeaderLabels",
        "setLabelText",
        "setInformativeText",
        "information",
        "warning",
        "critical",
        "question",
        "addRow",
    }
)
WIDGET_CLASSES = frozenset(
    {"QPushButton", "QLabel", "QCheckBox", "QAction", "QToolButton", "QRadioButton", "QGroupBox", "QMenu"}
)


def _visible_literal(node: ast.expr) -> bool:
    """A string literal (or f-string) with letters in it: words a user would read."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        if re.fullmatch(r"[a-z]+://\S*", node.value):
            return False  # a URL template, the same in every language
        return any(ch.isalpha() for ch in node.value)
    if isinstance(node, ast.JoinedStr):
        return any(
            isinstance(v, ast.Constant) and any(ch.isalpha() for ch in str(v.value)) for v in node.values
        )
    if isinstance(node, ast.List):
        return any(_visible_literal(e) for e in node.elts)
    return False


def untranslated_literals(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        owner = func.value if isinstance(func, ast.Attribute) else None
        if isinstance(owner, ast.Name) and owner.id in ("logger", "logging"):
            continue  # log lines are for developers, in English
        if name in TEXT_SETTERS or name in WIDGET_CLASSES:
            for arg in node.args[:2]:
                if _visible_literal(arg):
                    found.append(f"{filename}:{node.lineno}: {name}({ast.unparse(arg)[:50]})")
    return found


def test_i18n_ui_no_literal_reaches_a_qt_text_setter_untranslated():
    problems = []
    files = sorted(UI.glob("*.py"))
    assert len(files) > 10
    for path in files:
        problems += untranslated_literals(path.read_text(encoding="utf-8"), path.name)
    assert problems == [], "\n".join(problems)


def test_i18n_ui_the_literal_check_catches_offenders():
    bad = """
button.setText("Send")
label = QLabel("Hello", self)
box.setWindowTitle(f"Chat with {name}")
action.setToolTip(_("fine"))
sign.setText("✕")
"""
    found = untranslated_literals(bad, "x.py")
    assert [f.split(":")[1] for f in found] == ["2", "3", "4"]
