"""The settings dialog: every Settings key as a form generated from the pydantic model, with locks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from PySide6.QtCore import Qt, QTime, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QTimeEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tray_agent.core.i18n import LANGUAGE_NAMES, _
from tray_agent.core.settings import QuietHoursRule, Settings
from tray_agent.core.settings_layers import SECRET_KEYS, LoadedSettings
from tray_agent.ui.quick_reply_popup import QuickRepliesEditor

logger = logging.getLogger(__name__)

SECTIONS: tuple[str, ...] = ("connection", "alerts", "ui", "storage")
_SKIPPED: frozenset[str] = SECRET_KEYS | {"alerts.dnd_until"}  # tokens; DND's end (the tray sets it)
READ_ONLY: frozenset[str] = frozenset({"ui.team_quick_replies"})
"""Shown but never edited here: IT provides them through the machine policy."""


class QuietHoursEditor(QWidget):
    """Weekly quiet-hours rules: days of the week plus a start and end time each.

    Signals:
        changed(): a rule was added, removed or edited.
    """

    changed = Signal()

    def __init__(self, rules: list[QuietHoursRule], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[QWidget, list[QCheckBox], QTimeEdit, QTimeEdit]] = []
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._add_button = QPushButton(_("Add quiet hours"), self)
        self._add_button.setAccessibleName(_("Add quiet hours"))
        self._add_button.setAccessibleDescription(_("Adds a rule: days of the week and a time range."))
        self._add_button.clicked.connect(self._on_add_button_clicked)
        self._layout.addWidget(self._add_button)
        for rule in rules:
            self.add_rule(rule)

    def _day_names(self) -> tuple[str, ...]:
        return (
            _("Mon"), _("Tue"), _("Wed"), _("Thu"),
            _("Fri"), _("Sat"), _("Sun"),
        )  # fmt: skip

    def add_rule(self, rule: QuietHoursRule | None = None) -> None:
        """Add a rule row (default: every day 22:00 to 07:00)."""
        rule = rule or QuietHoursRule()
        row = QWidget(self)
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        boxes = []
        for day, name in enumerate(self._day_names(), start=1):
            box = QCheckBox(name, row)
            box.setChecked(day in rule.days)
            box.setAccessibleName(_("Quiet on {day}").format(day=name))
            box.setAccessibleDescription(_("Quiet hours start on this day."))
            box.toggled.connect(self.changed)
            boxes.append(box)
            layout.addWidget(box)
        start = QTimeEdit(QTime.fromString(rule.start, "HH:mm"), row)
        end = QTimeEdit(QTime.fromString(rule.end, "HH:mm"), row)
        for edit, name in ((start, _("Quiet from")), (end, _("Quiet until"))):
            edit.setDisplayFormat("HH:mm")
            edit.setAccessibleName(name)
            edit.setAccessibleDescription(_("A time, hours and minutes."))
            edit.timeChanged.connect(self.changed)
            layout.addWidget(QLabel(name, row))
            layout.addWidget(edit)
        remove = QToolButton(row)
        remove.setText("✕")
        remove.setAccessibleName(_("Remove these quiet hours"))
        remove.setAccessibleDescription(_("Deletes this rule."))
        remove.clicked.connect(lambda: self._remove(row))
        layout.addWidget(remove)
        self._rows.append((row, boxes, start, end))
        self._layout.insertWidget(self._layout.count() - 1, row)
        self.changed.emit()

    def _remove(self, row: QWidget) -> None:
        self._rows = [r for r in self._rows if r[0] is not row]
        row.deleteLater()
        self.changed.emit()

    def value(self) -> list[dict[str, Any]]:
        """The rules as plain values (validated by the Settings model)."""
        return [
            {
                "days": [day for day, box in enumerate(boxes, start=1) if box.isChecked()],
                "start": start.time().toString("HH:mm"),
                "end": end.time().toString("HH:mm"),
            }
            for _, boxes, start, end in self._rows
        ]

    def _on_add_button_clicked(self) -> None:
        self.add_rule()


class SettingsDialog(QDialog):
    """Every configurable setting, generated from the Settings model.

    Keys the machine policy locks are disabled with the note "Set by your IT department".
    Invalid values are reported under their field; nothing is emitted until all are valid.
    app.py saves the emitted Settings through ``settings_layers.save_user_settings``.

    Args:
        loaded: the loaded settings (values and locks).
        parent: the Qt parent.

    Signals:
        settings_saved(object): the edited :class:`~tray_agent.core.settings.Settings`.
    """

    settings_saved = Signal(object)

    def __init__(self, loaded: LoadedSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._loaded = loaded
        self._editors: dict[str, tuple[QWidget, Callable[[], Any]]] = {}
        self._errors: dict[str, QLabel] = {}
        self.setWindowTitle(_("Settings"))
        layout = QVBoxLayout(self)
        self._problem_label = QLabel(self)
        self._problem_label.setTextFormat(Qt.TextFormat.PlainText)
        self._problem_label.setWordWrap(True)
        self._problem_label.setStyleSheet("color: #c62828;")
        self._problem_label.hide()
        layout.addWidget(self._problem_label)
        self._tabs = QTabWidget(self)
        self._tabs.setAccessibleName(_("Settings sections"))
        self._tabs.setAccessibleDescription(_("Connection, alerts, window and storage settings."))
        self._tabs.tabBar().setAccessibleName(_("Settings sections"))
        self._tabs.tabBar().setAccessibleDescription(_("Ctrl+Tab switches between the sections."))
        titles = {
            "connection": _("Connection"),
            "alerts": _("Alerts"),
            "ui": _("Window"),
            "storage": _("Storage"),
        }
        for section in SECTIONS:
            self._tabs.addTab(self._section_page(section), titles[section])
        layout.addWidget(self._tabs, 1)
        self._buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self
        )
        self._save_button = self._buttons.button(QDialogButtonBox.StandardButton.Save)
        self._save_button.setAccessibleName(_("Save settings"))
        self._save_button.setAccessibleDescription(_("Checks and saves every setting, then closes."))
        cancel = self._buttons.button(QDialogButtonBox.StandardButton.Cancel)
        cancel.setAccessibleName(_("Cancel"))
        cancel.setAccessibleDescription(_("Closes without saving."))
        self._buttons.accepted.connect(self._on_buttons_accepted)
        self._buttons.rejected.connect(self.reject)
        layout.addWidget(self._buttons)
        self.resize(640, 560)

    # ------------------------------------------------------------------ construction

    def _labels(self) -> dict[str, str]:
        return {
            "connection.dialect": _("Backend type"),
            "connection.server": _("Server URL"),
            "connection.org": _("Organisation ID"),
            "connection.company": _("Company ID"),
            "connection.email": _("Email"),
            "connection.supabase_url": _("Supabase URL"),
            "connection.supabase_key": _("Supabase anon key"),
            "connection.resync_interval": _("Full refresh every (s)"),
            "connection.command_timeout": _("Command timeout (s)"),
            "connection.heartbeat_interval": _("Heartbeat every (s)"),
            "connection.heartbeat_timeout": _("Heartbeat timeout (s)"),
            "connection.backoff_max": _("Longest reconnect wait (s)"),
            "connection.poll_interval": _("Polling interval when limited (s)"),
            "connection.allow_insecure": _("Allow unencrypted connections"),
            "connection.ca_bundle": _("Extra CA certificates file"),
            "connection.proxy": _("HTTP(S) proxy"),
            "alerts.notify_messages": _("Notify about customer messages"),
            "alerts.notify_escalations": _("Notify when a customer asks for a human"),
            "alerts.escalations_bypass_dnd": _("Escalations break through do-not-disturb"),
            "alerts.toast_min_interval": _("Minimum time between notifications (s)"),
            "alerts.coalesce_window": _("Group a customer's messages within (s)"),
            "alerts.summary_threshold": _("Summarise when this many customers at once"),
            "alerts.reminder_after": _("Remind about untaken customers after (min)"),
            "alerts.reminder_backoff": _("Reminder interval grows by a factor of"),
            "alerts.reminder_max_interval": _("Longest reminder interval (min)"),
            "alerts.sla_minutes": _("Waiting-time target (min)"),
            "alerts.sounds": _("Play sounds"),
            "alerts.volume": _("Volume"),
            "alerts.quiet_hours": _("Quiet hours"),
            "alerts.ai_messages": _("Notify about messages in conversations the AI is handling"),
            "alerts.allow_manual_dnd": _("Allow do-not-disturb from the tray menu"),
            "ui.language": _("Language"),
            "ui.theme": _("Theme"),
            "ui.history_limit": _("Messages kept per conversation"),
            "ui.start_hidden": _("Start in the tray (window hidden)"),
            "ui.autostart": _("Start when I log in"),
            "ui.remember_password": _("Remember my password"),
            "ui.quick_replies": _("My quick replies"),
            "ui.team_quick_replies": _("Team quick replies"),
            "storage.history_days": _("Forget conversations untouched for (days)"),
            "storage.max_size_mb": _("Largest size of the local store (MB)"),
            "storage.keep_history": _("Keep message history on this computer"),
        }

    def _section_page(self, section: str) -> QWidget:
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        page = QWidget(scroll)
        form = QFormLayout(page)
        model = getattr(self._loaded.settings, section)
        labels = self._labels()
        for name, info in type(model).model_fields.items():
            key = f"{section}.{name}"
            if key in _SKIPPED or info.annotation is SecretStr:
                continue
            label = labels.get(key, name.replace("_", " ").capitalize())
            editor, getter = self._editor(key, info, getattr(model, name), label, page)
            editor.setAccessibleDescription(_("Saved when you press Save."))
            cell = QWidget(page)
            cell_layout = QVBoxLayout(cell)
            cell_layout.setContentsMargins(0, 0, 0, 0)
            cell_layout.addWidget(editor)
            if key in READ_ONLY:
                note = QLabel(_("Provided by your IT department"), cell)
                note.setObjectName("teamNote")
                cell_layout.addWidget(note)
                editor.setAccessibleDescription(_("Provided by your IT department"))
            elif self._loaded.is_locked(key):
                editor.setEnabled(False)
                note = QLabel(_("Set by your IT department"), cell)
                note.setObjectName("lockNote")
                cell_layout.addWidget(note)
                editor.setToolTip(_("Set by your IT department"))
                editor.setAccessibleDescription(_("Set by your IT department"))
            error = QLabel(cell)
            error.setTextFormat(Qt.TextFormat.PlainText)
            error.setWordWrap(True)
            error.setStyleSheet("color: #c62828;")
            error.hide()
            cell_layout.addWidget(error)
            self._errors[key] = error
            self._editors[key] = (editor, getter)
            form.addRow(label, cell)
        scroll.setWidget(page)
        return scroll

    def _editor(
        self, key: str, info: FieldInfo, value: Any, label: str, parent: QWidget
    ) -> tuple[QWidget, Callable[[], Any]]:
        annotation = info.annotation
        low, high = _bounds(info)
        if annotation is bool:
            box = QCheckBox(parent)
            box.setChecked(bool(value))
            box.setAccessibleName(label)
            return box, box.isChecked
        if annotation is int:
            spin = QSpinBox(parent)
            spin.setRange(int(low if low is not None else 0), int(high if high is not None else 1_000_000))
            spin.setValue(int(value))
            spin.setAccessibleName(label)
            return spin, spin.value
        if annotation is float:
            dspin = QDoubleSpinBox(parent)
            dspin.setDecimals(2)
            dspin.setRange(float(low if low is not None else 0.0), float(high if high is not None else 1e6))
            dspin.setSingleStep(0.05 if (high or 0) <= 1 else 1.0)
            dspin.setValue(float(value))
            dspin.setAccessibleName(label)
            return dspin, dspin.value
        if get_origin(annotation) is Literal:
            combo = QComboBox(parent)
            for choice in get_args(annotation):
                combo.addItem(self._choice_text(str(choice)), choice)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            combo.setAccessibleName(label)
            return combo, combo.currentData
        if key in ("ui.quick_replies", "ui.team_quick_replies"):
            replies = QuickRepliesEditor(
                [reply.model_dump() for reply in value], read_only=key in READ_ONLY, parent=parent
            )
            replies.setAccessibleName(label)
            return replies, replies.value
        if get_origin(annotation) is list:
            editor = QuietHoursEditor(list(value), parent)
            editor.setAccessibleName(label)
            return editor, editor.value
        edit = QLineEdit(str(value), parent)
        edit.setAccessibleName(label)
        return edit, lambda: edit.text().strip()

    def _choice_text(self, choice: str) -> str:
        texts = {
            "system": _("Same as the system"),
            **LANGUAGE_NAMES,  # each language in its own words, never translated
            "light": _("Light"),
            "dark": _("Dark"),
            "org": _("Organisation (WhatsApp, Telegram, email)"),
            "dashboard": _("Dashboard (Messenger pages)"),
        }
        return texts.get(choice, choice)

    # ------------------------------------------------------------------ public API

    def editor(self, key: str) -> QWidget:
        """The editor widget of a key (``section.key``)."""
        return self._editors[key][0]

    def error_text(self, key: str) -> str:
        """The inline error under a key ("" when valid)."""
        label = self._errors[key]
        return label.text() if not label.isHidden() else ""

    def edited_settings(self) -> Settings:
        """The settings as the form holds them; locked keys keep their loaded value.

        Raises:
            ValidationError: a value is not valid (the form shows it inline too).
        """
        base = self._loaded.settings
        nested: dict[str, dict[str, Any]] = {}
        for section in SECTIONS:
            model: BaseModel = getattr(base, section)
            values = {name: getattr(model, name) for name in type(model).model_fields}
            for name in values:
                key = f"{section}.{name}"
                if key in self._editors and not self._loaded.is_locked(key) and key not in READ_ONLY:
                    values[name] = self._editors[key][1]()
            nested[section] = values
        return Settings.model_validate({"version": base.version, **nested})

    @Slot(str)
    def show_problem(self, text: str) -> None:
        """Show a problem with saving (e.g. the settings file is not writable)."""
        self._problem_label.setText(text)
        self._problem_label.setVisible(bool(text))

    # ------------------------------------------------------------------ slots

    def _on_buttons_accepted(self) -> None:
        for error_label in self._errors.values():
            error_label.hide()
        problems = self._extra_checks()
        settings: Settings | None = None
        try:
            settings = self.edited_settings()
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = [str(p) for p in error["loc"]]
                key = ".".join(loc[:2])
                problems.setdefault(key, str(error["msg"]))
        if problems or settings is None:
            for key, text in problems.items():
                label = self._errors.get(key)
                if label is not None:
                    label.setText(text)
                    label.show()
            first = next(iter(problems), "")
            if first in self._editors:
                editor = self._editors[first][0]
                self._tabs.setCurrentIndex(SECTIONS.index(first.split(".", 1)[0]))
                editor.setFocus()
            return
        self.settings_saved.emit(settings)
        self.accept()

    def _extra_checks(self) -> dict[str, str]:
        problems: dict[str, str] = {}
        for key in ("connection.server", "connection.supabase_url"):
            if key in self._editors and not self._loaded.is_locked(key):
                text = self._editors[key][1]()
                if text and not text.startswith(("http://", "https://")):
                    problems[key] = _("Must start with https:// (or http://)")
        rules = self._editors.get("alerts.quiet_hours")
        if rules is not None and not self._loaded.is_locked("alerts.quiet_hours"):
            if any(not rule["days"] for rule in rules[1]()):
                problems["alerts.quiet_hours"] = _("Choose at least one day for each quiet-hours rule")
            elif any(rule["start"] == rule["end"] for rule in rules[1]()):
                problems["alerts.quiet_hours"] = _("Quiet hours must end at a different time than they start")
        return problems


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    low = high = None
    for item in info.metadata:
        low = getattr(item, "ge", None) if getattr(item, "ge", None) is not None else low
        high = getattr(item, "le", None) if getattr(item, "le", None) is not None else high
    return low, high
