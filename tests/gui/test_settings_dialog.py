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
        dialog.save_button.click()
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
    assert len(dialog.findChildren(type(dialog.problem_label), "lockNote")) == 3
    dialog.editor("connection.server").setText("https://elsewhere")  # even if forced, it is ignored
    assert dialog.edited_settings().connection.server == "https://it.example"


def test_validation_errors_are_shown_inline(qtbot):
    dialog = dialog_for(qtbot)
    dialog.editor("connection.server").setText("crm.example")
    quiet: QuietHoursEditor = dialog.editor("alerts.quiet_hours")
    quiet.add_rule(QuietHoursRule(days=[1]))
    quiet.rows[0][1][0].setChecked(False)  # no day left
    with qtbot.assertNotEmitted(dialog.settings_saved):
        dialog.save_button.click()
    assert dialog.error_text("connection.server") == "Must start with https:// (or http://)"
    assert dialog.error_text("alerts.quiet_hours").startswith("Choose at least one day")
    quiet.rows[0][1][0].setChecked(True)
    quiet.rows[0][2].setTime(QTime(8, 0))
    quiet.rows[0][3].setTime(QTime(8, 0))
    dialog.editor("connection.server").setText("https://crm.example")
    with qtbot.assertNotEmitted(dialog.settings_saved):
        dialog.save_button.click()
    assert dialog.error_text("connection.server") == ""
    assert dialog.error_text("alerts.quiet_hours").startswith("Quiet hours must end")


# --- issue 14: basic first, units, the other dialect hidden, whole numbers, volume slider ------


def test_settings_basic_first_and_engineering_knobs_under_advanced(qtbot):
    dialog = dialog_for(qtbot)
    titles = [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())]
    assert titles == ["Basic", "Account", "Quick replies", "Advanced"]
    assert dialog.tabs.currentIndex() == 0
    for key in ("ui.language", "ui.theme", "alerts.sounds", "alerts.volume", "alerts.quiet_hours"):
        assert dialog.page_of(key) == "basic", key
    for key in (
        "connection.heartbeat_interval",
        "connection.ws_retry_interval",
        "alerts.coalesce_window",
        "alerts.reminder_backoff",
    ):
        assert dialog.page_of(key) == "advanced", key
    assert dialog.page_of("connection.server") == "account"


def test_settings_every_key_has_a_human_label_and_every_number_a_unit(qtbot):
    from PySide6.QtWidgets import QAbstractSpinBox, QSlider

    dialog = dialog_for(qtbot)
    labels = dialog.labels
    for key in SETTING_KEYS:
        try:
            dialog.editor(key)
        except KeyError:
            continue  # no editor: secrets, and what the tray sets (alerts.dnd_until)
        assert key in labels, f"{key} has no human label"
        assert "(s)" not in labels[key], labels[key]  # the unit is on the number
        assert "(min)" not in labels[key], labels[key]
        editor = dialog.editor(key)
        if isinstance(editor, QAbstractSpinBox):
            assert editor.suffix().strip(), f"{key} has no unit"
    assert dialog.editor("connection.heartbeat_interval").suffix() == " s"
    assert dialog.editor("alerts.sla_minutes").suffix() == " min"
    assert dialog.editor("ui.history_limit").suffix() == " messages"
    assert dialog.editor("alerts.volume").findChild(QSlider) is not None


def test_settings_hide_the_other_dialects_fields(qtbot):
    dialog = dialog_for(qtbot)  # dashboard by default
    dialog.show()
    assert dialog.is_shown("connection.company")
    for key in ("connection.org", "connection.supabase_url", "connection.supabase_key"):
        assert not dialog.is_shown(key), key
    combo = dialog.editor("connection.dialect")
    combo.setCurrentIndex(combo.findData("org"))
    assert not dialog.is_shown("connection.company")
    assert all(
        dialog.is_shown(k) for k in ("connection.org", "connection.supabase_url", "connection.supabase_key")
    )
    assert dialog.edited_settings().connection.dialect == "org"


def test_settings_whole_numbers_where_fractions_make_no_sense(qtbot):
    from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox

    dialog = dialog_for(qtbot)
    for key in ("connection.heartbeat_interval", "alerts.sla_minutes", "alerts.coalesce_window"):
        assert type(dialog.editor(key)) is QSpinBox, key
    assert type(dialog.editor("alerts.reminder_backoff")) is QDoubleSpinBox  # a growth factor
    dialog.editor("connection.heartbeat_interval").setValue(30)
    saved = dialog.edited_settings()
    assert saved.connection.heartbeat_interval == 30.0
    assert saved.alerts == Settings().alerts
    # A fraction written in the settings file is shown as it is and kept.
    odd = dialog_for(qtbot, Settings.model_validate({"alerts": {"sla_minutes": 2.5}}))
    assert type(odd.editor("alerts.sla_minutes")) is QDoubleSpinBox
    assert odd.edited_settings().alerts.sla_minutes == 2.5


def test_settings_volume_is_a_slider_in_percent(qtbot):
    from PySide6.QtWidgets import QLabel, QSlider

    dialog = dialog_for(qtbot)
    slider = dialog.editor("alerts.volume").findChild(QSlider)
    assert slider.value() == 80
    slider.setValue(55)
    assert "55 %" in [label.text() for label in dialog.editor("alerts.volume").findChildren(QLabel)]
    assert dialog.edited_settings().alerts.volume == 0.55


def test_settings_locked_fields_stay_visibly_locked_on_every_page(qtbot):
    locked = frozenset({"alerts.volume", "connection.heartbeat_interval", "connection.server"})
    dialog = dialog_for(qtbot, locked=locked)
    notes = dialog.findChildren(type(dialog.problem_label), "lockNote")
    assert len(notes) == 3
    assert all(note.text() == "Set by your IT department" and note.font().italic() for note in notes)
    for key in locked:
        assert not dialog.editor(key).isEnabled(), key
    assert {dialog.page_of(k) for k in locked} == {"basic", "advanced", "account"}


@pytest.mark.parametrize("page", ["basic", "advanced"])
def test_settings_screenshot(qtbot, page):
    """Saves test-artifacts/settings-<page>.png for review."""
    from tests.gui.test_customer_service import ARTIFACTS

    dialog = dialog_for(qtbot, locked=frozenset({"alerts.sounds"}))
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.tabs.setCurrentIndex(["basic", "account", "quick_replies", "advanced"].index(page))
    ARTIFACTS.mkdir(exist_ok=True)
    assert dialog.grab().save(str(ARTIFACTS / f"settings-{page}.png"))
