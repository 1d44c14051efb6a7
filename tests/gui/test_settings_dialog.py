"""Tests of the settings dialog generated from the Settings model."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QTime

from tray_agent.core.settings import QuietHoursRule, Settings
from tray_agent.core.settings_layers import SECRET_KEYS, SETTING_KEYS, LoadedSettings
from tray_agent.ui.settings_dialog import QuietHoursEditor, SettingsDialog

pytestmark = pytest.mark.gui


def dialog_for(
    qtbot, settings: Settings | None = None, locked: frozenset[str] = frozenset()
) -> SettingsDialog:
    dialog = SettingsDialog(LoadedSettings(settings=settings or Settings(), locked=locked))
    qtbot.addWidget(dialog)
    return dialog


def test_every_setting_has_an_editor_except_secrets(qtbot):
    dialog = dialog_for(qtbot)
    for key in SETTING_KEYS:
        if key in SECRET_KEYS or key == "alerts.dnd_until":  # the tray sets DND's end, not the form
            with pytest.raises(KeyError):
                dialog.editor(key)
        else:
            assert dialog.editor(key).accessibleName(), key
    assert dialog.edited_settings() == Settings()


def test_edits_are_emitted_as_settings(qtbot):
    dialog = dialog_for(qtbot)
    dialog.editor("alerts.sla_minutes").setValue(3)
    dialog.editor("ui.theme").setCurrentIndex(dialog.editor("ui.theme").findData("dark"))
    dialog.editor("alerts.sounds").setChecked(False)
    dialog.editor("connection.server").setText("https://crm.example")
    quiet: QuietHoursEditor = dialog.editor("alerts.quiet_hours")
    quiet.add_rule(QuietHoursRule(days=[6, 7], start="12:00", end="13:30"))
    with qtbot.waitSignal(dialog.settings_saved) as blocker:
        dialog._on_buttons_accepted()
    saved: Settings = blocker.args[0]
    assert saved.alerts.sla_minutes == 3
    assert saved.ui.theme == "dark"
    assert saved.alerts.sounds is False
    assert saved.connection.server == "https://crm.example"
    assert saved.alerts.quiet_hours == [QuietHoursRule(days=[6, 7], start="12:00", end="13:30")]


def test_locked_settings_are_disabled_with_a_note(qtbot):
    settings = Settings.model_validate(
        {"connection": {"server": "https://it.example"}, "alerts": {"sounds": False}}
    )
    dialog = dialog_for(
        qtbot, settings, frozenset({"connection.server", "alerts.sounds", "alerts.quiet_hours"})
    )
    for key in ("connection.server", "alerts.sounds", "alerts.quiet_hours"):
        editor = dialog.editor(key)
        assert not editor.isEnabled()
        assert editor.toolTip() == "Set by your IT department"
    assert dialog.editor("alerts.volume").isEnabled()
    assert len(dialog.findChildren(type(dialog._problem_label), "lockNote")) == 3
    dialog.editor("connection.server").setText("https://elsewhere")  # even if forced, it is ignored
    assert dialog.edited_settings().connection.server == "https://it.example"


def test_validation_errors_are_shown_inline(qtbot):
    dialog = dialog_for(qtbot)
    dialog.editor("connection.server").setText("crm.example")
    quiet: QuietHoursEditor = dialog.editor("alerts.quiet_hours")
    quiet.add_rule(QuietHoursRule(days=[1]))
    quiet._rows[0][1][0].setChecked(False)  # no day left
    with qtbot.assertNotEmitted(dialog.settings_saved):
        dialog._on_buttons_accepted()
    assert dialog.error_text("connection.server") == "Must start with https:// (or http://)"
    assert dialog.error_text("alerts.quiet_hours").startswith("Choose at least one day")
    quiet._rows[0][1][0].setChecked(True)
    quiet._rows[0][2].setTime(QTime(8, 0))
    quiet._rows[0][3].setTime(QTime(8, 0))
    dialog.editor("connection.server").setText("https://crm.example")
    with qtbot.assertNotEmitted(dialog.settings_saved):
        dialog._on_buttons_accepted()
    assert dialog.error_text("connection.server") == ""
    assert dialog.error_text("alerts.quiet_hours").startswith("Quiet hours must end")
