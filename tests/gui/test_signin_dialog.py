"""Tests of the sign-in dialog for both dialects."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tests.gui.test_customer_service import ARTIFACTS
from tray_agent.core.settings import ConnectionSettings, Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.ui.signin_dialog import SignInDialog, SignInRequest

pytestmark = pytest.mark.gui


def loaded(dialect: str, locked: frozenset[str] = frozenset(), **conn: str) -> LoadedSettings:
    settings = Settings(connection=ConnectionSettings(dialect=dialect, **conn))
    return LoadedSettings(settings=settings, locked=locked)


def test_dashboard_sign_in_emits_the_request(qtbot):
    dialog = SignInDialog(loaded("dashboard", server="https://dash.example", company="acme"), "dashboard")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.org_edit is None
    assert dialog.token_edit is None
    qtbot.keyClicks(dialog.email_edit, "ann@example.com")
    qtbot.keyClicks(dialog.password_edit, "s3cret")
    qtbot.mouseClick(dialog.remember_check, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(dialog.sign_in_requested) as blocker:
        qtbot.mouseClick(dialog.sign_in_button, Qt.MouseButton.LeftButton)
    request = blocker.args[0]
    assert request == SignInRequest(
        dialect="dashboard",
        server="https://dash.example",
        company="acme",
        email="ann@example.com",
        password="s3cret",
        remember=True,
    )
    assert "s3cret" not in repr(request)
    assert not dialog.sign_in_button.isEnabled()  # waiting for app.py
    dialog.show_problem("Wrong email or password.")
    assert dialog.problem_text == "Wrong email or password."
    assert dialog.sign_in_button.isEnabled()


def test_org_fields_prefilled_and_locked_by_it(qtbot):
    settings = loaded(
        "org",
        frozenset({"connection.server", "connection.supabase_url", "connection.supabase_key"}),
        server="https://crm.example",
        org="org-1",
        supabase_url="https://x.supabase.co",
        supabase_key="anon",
    )
    dialog = SignInDialog(settings, "org")
    qtbot.addWidget(dialog)
    assert dialog.supabase_url_edit.text() == "https://x.supabase.co"
    for edit in (dialog.server_edit, dialog.supabase_url_edit, dialog.supabase_key_edit):
        assert not edit.isEnabled()
        assert edit.toolTip() == "Set by your IT department"
    assert dialog.org_edit.isEnabled()
    dialog.token_edit.setText("eyJ.token")
    with qtbot.waitSignal(dialog.sign_in_requested) as blocker:
        dialog.buttons.accepted.emit()
    assert blocker.args[0].token == "eyJ.token"
    assert blocker.args[0].org == "org-1"


def test_missing_fields_and_problems_are_plain_words(qtbot):
    dialog = SignInDialog(loaded("dashboard"), "dashboard")
    qtbot.addWidget(dialog)
    with qtbot.assertNotEmitted(dialog.sign_in_requested):
        dialog.buttons.accepted.emit()
    assert dialog.problem_text.startswith("Enter the server address")
    dialog.show_problem("<b>Server unreachable</b>")
    assert dialog.problem_label.textFormat() == Qt.TextFormat.PlainText
    dialog.set_keyring_problem("no keyring backend")
    assert dialog.keyring_label.text() == "Your sign-in will not be remembered: no keyring backend"
    for widget in (
        dialog.server_edit,
        dialog.company_edit,
        dialog.email_edit,
        dialog.password_edit,
        dialog.remember_check,
        dialog.sign_in_button,
    ):
        assert widget.accessibleName()


def test_signin_dialog_shows_a_whole_server_url(qtbot):
    url = "https://support.example-company.co.id:8443/"
    dialog = SignInDialog(loaded("dashboard", server=url, company="acme"), "dashboard")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    edit = dialog.server_edit
    assert dialog.width() >= 360  # was 241
    assert edit.width() >= edit.fontMetrics().horizontalAdvance(url) + 8
    ARTIFACTS.mkdir(exist_ok=True)
    dialog.grab().save(str(ARTIFACTS / "signin-dashboard.png"))


def test_signin_dialog_in_demo_mode_does_not_show_the_demo_account(qtbot):
    settings = loaded(
        "org",
        server="http://127.0.0.1:40123",
        org="demo-org",
        email="agent1@demo.example",
        supabase_url="http://127.0.0.1:40123",
        supabase_key="demo-anon-key",
    )
    dialog = SignInDialog(settings, "org", demo=True)
    qtbot.addWidget(dialog)
    texts = [edit.text() for edit in dialog.findChildren(type(dialog.email_edit))]
    assert not any("demo" in text for text in texts), texts
    assert dialog.email_edit.text() == ""
    assert dialog.server_edit.text() == "http://127.0.0.1:40123"  # where to sign in is no secret
    normal = SignInDialog(settings, "org")
    qtbot.addWidget(normal)
    assert normal.email_edit.text() == "agent1@demo.example"


def test_window_manager_builds_the_demo_sign_in_without_the_account(qtbot, store, sink):
    from tray_agent.ui.windows import WindowManager

    settings = loaded("dashboard", server="http://127.0.0.1:1", company="demo", email="a@demo.example")
    manager = WindowManager(store, sink, settings, "dashboard", demo=True)
    dialog = manager.show_sign_in()
    qtbot.addWidget(dialog)
    assert dialog.email_edit.text() == ""
    assert dialog.company_edit.text() == ""
