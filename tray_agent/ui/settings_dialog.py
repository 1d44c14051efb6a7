"""The settings dialog: every Settings key as a form generated from the pydantic model, with locks.

What an agent changes often comes first ("Basic": language, theme, alerts, quiet hours), then the
account, the quick replies, and last the engineering knobs ("Advanced": intervals, timeouts,
alert tuning). Every number carries its unit; the other backend's fields are hidden;
numbers that only make sense whole are whole; the volume is a slider.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, get_args, get_origin

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
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QTabWidget,
    QTimeEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tray_agent.core.i18n import LANGUAGE_NAMES, N_, _
from tray_agent.core.settings import QuietHoursRule, Settings
from tray_agent.core.settings_layers import SECRET_KEYS, LoadedSettings
from tray_agent.ui.quick_reply_popup import QuickRepliesEditor

logger = logging.getLogger(__name__)

SECTIONS: tuple[str, ...] = ("connection", "alerts", "ui")
_SKIPPED: frozenset[str] = SECRET_KEYS | {"alerts.dnd_until"}  # tokens; DND's end (the tray sets it)
READ_ONLY: frozenset[str] = frozenset({"ui.team_quick_replies"})
"""Shown but never edited here: IT provides them through the machine policy."""

PAGES: Final = ("basic", "account", "quick_replies", "advanced")
"""The dialog's tabs, in order."""
BASIC_KEYS: Final = (
    "ui.language",
    "ui.theme",
    "alerts.notify_escalations",
    "alerts.notify_messages",
    "alerts.ai_messages",
    "alerts.sounds",
    "alerts.volume",
    "alerts.sla_minutes",
    "alerts.quiet_hours",
    "ui.start_hidden",
    "ui.autostart",
    "ui.remember_password",
)
"""What an agent changes: the first tab."""
ACCOUNT_KEYS: Final = (
    "connection.dialect",
    "connection.server",
    "connection.org",
    "connection.company",
    "connection.email",
    "connection.supabase_url",
    "connection.supabase_key",
)
QUICK_REPLY_KEYS: Final = ("ui.quick_replies", "ui.team_quick_replies")
DIALECT_KEYS: Final = {
    "connection.org": "org",
    "connection.supabase_url": "org",
    "connection.supabase_key": "org",
    "connection.company": "dashboard",
}
"""Fields of one backend only: hidden while the other is chosen."""

UNITS: Final = {
    "connection.resync_interval": "s",
    "connection.command_timeout": "s",
    "connection.heartbeat_interval": "s",
    "connection.heartbeat_timeout": "s",
    "connection.backoff_max": "s",
    "connection.poll_interval": "s",
    "connection.ws_retry_interval": "s",
    "alerts.toast_min_interval": "s",
    "alerts.coalesce_window": "s",
    "alerts.summary_threshold": "customers",
    "alerts.reminder_after": "min",
    "alerts.reminder_backoff": "times",
    "alerts.reminder_max_interval": "min",
    "alerts.sla_minutes": "min",
    "alerts.volume": "%",
    "ui.history_limit": "messages",
}
"""The unit of every number (shown after it)."""
_UNIT_TEXTS: Final = {
    "s": N_("s"),
    "min": N_("min"),
    "days": N_("days"),
    "MB": N_("MB"),
    "messages": N_("messages"),
    "customers": N_("customers"),
    "times": N_("times"),
    "%": "%",
}
FRACTIONAL: Final = frozenset({"alerts.reminder_backoff"})
"""Numbers where a fraction means something (a growth factor); the others are whole numbers."""


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

    # -- test and accessibility seams (read-only views of the widgets)

    @property
    def rows(self) -> Sequence[tuple[QWidget, Sequence[QCheckBox], QTimeEdit, QTimeEdit]]:
        """Each rule's row: (row widget, Monday..Sunday check boxes, start time, end time)."""
        return tuple(self._rows)

    @property
    def add_button(self) -> QPushButton:
        """The "Add quiet hours" button."""
        return self._add_button


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
        self._tabs.setAccessibleDescription(
            _("Basic settings, the account, quick replies, and advanced settings.")
        )
        self._tabs.tabBar().setAccessibleName(_("Settings sections"))
        self._tabs.tabBar().setAccessibleDescription(_("Ctrl+Tab switches between the sections."))
        self._page_of: dict[str, int] = {}
        self._rows: dict[str, tuple[QFormLayout, QWidget]] = {}
        for page in PAGES:
            self._tabs.addTab(self._page(page), self._page_title(page))
        layout.addWidget(self._tabs, 1)
        dialect = self._editors.get("connection.dialect")
        if dialect is not None and isinstance(dialect[0], QComboBox):
            dialect[0].currentIndexChanged.connect(self._on_dialect_changed)
        self._on_dialect_changed()
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
        self.resize(780, 600)

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
            "connection.resync_interval": _("Refresh the whole list every"),
            "connection.command_timeout": _("Give up on an action after"),
            "connection.heartbeat_interval": _("Check the connection every"),
            "connection.heartbeat_timeout": _("The connection counts as lost after a silence of"),
            "connection.backoff_max": _("Longest wait between reconnection attempts"),
            "connection.poll_interval": _("When live updates are blocked, check for news every"),
            "connection.ws_retry_interval": _("When live updates are blocked, try them again every"),
            "connection.allow_insecure": _("Allow unencrypted connections"),
            "connection.ca_bundle": _("Extra CA certificates file"),
            "connection.proxy": _("HTTP(S) proxy"),
            "alerts.notify_messages": _("Notify about customer messages"),
            "alerts.notify_escalations": _("Notify when a customer asks for a human"),
            "alerts.escalations_bypass_dnd": _("Escalations break through do-not-disturb"),
            "alerts.toast_min_interval": _("Minimum time between notifications"),
            "alerts.coalesce_window": _("Group a customer's messages arriving within"),
            "alerts.summary_threshold": _("Summarise when this many customers write at once"),
            "alerts.reminder_after": _("Remind about untaken customers after"),
            "alerts.reminder_backoff": _("Each reminder waits longer than the last, by"),
            "alerts.reminder_max_interval": _("Longest time between reminders"),
            "alerts.sla_minutes": _("Waiting-time target"),
            "alerts.sounds": _("Play sounds"),
            "alerts.volume": _("Volume"),
            "alerts.quiet_hours": _("Quiet hours"),
            "alerts.ai_messages": _("Notify about messages in conversations the AI is handling"),
            "alerts.allow_manual_dnd": _("Allow do-not-disturb from the tray menu"),
            "ui.language": _("Language"),
            "ui.theme": _("Theme"),
            "ui.history_limit": _("Keep per conversation at most"),
            "ui.start_hidden": _("Start in the tray (window hidden)"),
            "ui.autostart": _("Start when I log in"),
            "ui.remember_password": _("Remember my password"),
            "ui.quick_replies": _("My quick replies"),
            "ui.team_quick_replies": _("Team quick replies"),
        }

    def _page_title(self, page: str) -> str:
        titles = {
            "basic": _("Basic"),
            "account": _("Account"),
            "quick_replies": _("Quick replies"),
            "advanced": _("Advanced"),
        }
        return titles[page]

    def _keys(self) -> list[tuple[str, FieldInfo, Any]]:
        """Every editable key with its field and loaded value, in model order."""
        keys = []
        for section in SECTIONS:
            model = getattr(self._loaded.settings, section)
            for name, info in type(model).model_fields.items():
                key = f"{section}.{name}"
                if key in _SKIPPED or info.annotation is SecretStr:
                    continue
                keys.append((key, info, getattr(model, name)))
        return keys

    def _page(self, page: str) -> QWidget:
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # rows fit the width
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        body = QWidget(scroll)
        fields = {key: (info, value) for key, info, value in self._keys()}
        if page == "advanced":
            shown = set(BASIC_KEYS) | set(ACCOUNT_KEYS) | set(QUICK_REPLY_KEYS)
            column = QVBoxLayout(body)
            note = QLabel(_("Most people never need to change these."), body)
            note.setWordWrap(True)
            column.addWidget(note)
            titles = {
                "connection": _("Connection"),
                "alerts": _("Alerts"),
                "ui": _("Window"),
            }
            for section in SECTIONS:
                keys = [k for k in fields if k.startswith(section + ".") and k not in shown]
                if not keys:
                    continue
                group = QGroupBox(titles[section], body)
                form = QFormLayout(group)
                for key in keys:
                    self._add_row(form, group, key, *fields[key], page)
                column.addWidget(group)
            column.addStretch(1)
        else:
            listed = {"basic": BASIC_KEYS, "account": ACCOUNT_KEYS, "quick_replies": QUICK_REPLY_KEYS}[page]
            form = QFormLayout(body)
            for key in listed:
                if key in fields:
                    self._add_row(form, body, key, *fields[key], page)
        scroll.setWidget(body)
        return scroll

    def _add_row(
        self, form: QFormLayout, parent: QWidget, key: str, info: FieldInfo, value: Any, page: str
    ) -> None:
        labels = self._labels()
        label = labels.get(key, key.split(".", 1)[1].replace("_", " ").capitalize())
        editor, getter = self._editor(key, info, value, label, parent)
        editor.setAccessibleDescription(_("Saved when you press Save."))
        cell = QWidget(parent)
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
            font = note.font()
            font.setItalic(True)
            note.setFont(font)
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
        self._page_of[key] = PAGES.index(page)
        self._rows[key] = (form, cell)
        form.addRow(label, cell)

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
        unit = UNITS.get(key, "")
        suffix = " " + _(_UNIT_TEXTS[unit]) if unit and unit != "%" else ""
        if key == "alerts.volume":
            return self._volume_editor(float(value), label, parent)
        whole = annotation is int or (
            annotation is float and key not in FRACTIONAL and float(value).is_integer()
        )  # a fraction someone wrote in the file keeps a box that can show it
        if whole:
            spin = QSpinBox(parent)
            spin.setRange(
                math.ceil(low) if low is not None else 0, math.floor(high) if high is not None else 1_000_000
            )
            spin.setValue(round(value))
            spin.setSuffix(suffix)
            spin.setAccessibleName(f"{label} ({suffix.strip()})" if suffix else label)
            if annotation is float:
                return spin, lambda: float(spin.value())
            return spin, spin.value
        if annotation is float:
            dspin = QDoubleSpinBox(parent)
            dspin.setDecimals(1)
            dspin.setRange(float(low if low is not None else 0.0), float(high if high is not None else 1e6))
            dspin.setSingleStep(0.5 if key in FRACTIONAL else 1.0)
            dspin.setValue(float(value))
            dspin.setSuffix(suffix)
            dspin.setAccessibleName(f"{label} ({suffix.strip()})" if suffix else label)
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

    def _volume_editor(self, value: float, label: str, parent: QWidget) -> tuple[QWidget, Callable[[], Any]]:
        box = QWidget(parent)
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        slider = QSlider(Qt.Orientation.Horizontal, box)
        slider.setObjectName("volumeSlider")
        slider.setRange(0, 100)
        slider.setSingleStep(5)
        slider.setPageStep(10)
        slider.setValue(round(value * 100))
        slider.setAccessibleName(label)
        shown = QLabel(box)
        shown.setMinimumWidth(shown.fontMetrics().horizontalAdvance("100 %") + 4)

        def show_value(percent: int) -> None:
            shown.setText(f"{percent} %")

        slider.valueChanged.connect(show_value)
        show_value(slider.value())
        row.addWidget(slider, 1)
        row.addWidget(shown)
        box.setAccessibleName(label)
        box.setFocusProxy(slider)
        return box, lambda: slider.value() / 100

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
                self._tabs.setCurrentIndex(self._page_of.get(first, 0))
                editor.setFocus()
            return
        self.settings_saved.emit(settings)
        self.accept()

    def _on_dialect_changed(self) -> None:
        """Show only the chosen backend's fields (the others keep their values)."""
        dialect = self._editors.get("connection.dialect")
        chosen = dialect[1]() if dialect is not None else self._loaded.settings.connection.dialect
        for key, only in DIALECT_KEYS.items():
            row = self._rows.get(key)
            if row is not None:
                row[0].setRowVisible(row[1], only == chosen)

    def is_shown(self, key: str) -> bool:
        """Whether the key's row is shown (the other backend's fields are hidden)."""
        row = self._rows[key]
        return not row[1].isHidden()

    def page_of(self, key: str) -> str:
        """The tab a key is on (``"basic"``, ``"account"``, ``"quick_replies"``, ``"advanced"``)."""
        return PAGES[self._page_of[key]]

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

    # -- test and accessibility seams (read-only views of the widgets)

    @property
    def problem_label(self) -> QLabel:
        """The problem line at the top (hidden when there is none)."""
        return self._problem_label

    @property
    def tabs(self) -> QTabWidget:
        """The section tabs (basic, account, quick replies, advanced)."""
        return self._tabs

    @property
    def buttons(self) -> QDialogButtonBox:
        """The Save / Cancel button box."""
        return self._buttons

    @property
    def save_button(self) -> QPushButton:
        """The "Save" button."""
        return self._save_button

    @property
    def labels(self) -> dict[str, str]:
        """The form label of each setting key that has an editor row (in the current language)."""
        return self._labels()


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    low = high = None
    for item in info.metadata:
        low = getattr(item, "ge", None) if getattr(item, "ge", None) is not None else low
        high = getattr(item, "le", None) if getattr(item, "le", None) is not None else high
    return low, high
