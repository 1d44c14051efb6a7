"""The sign-in dialog, per dialect: server and tenant, email and password (or an org token)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from PySide6.QtCore import QEvent, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from tray_agent.core.i18n import N_, _
from tray_agent.core.settings_layers import LoadedSettings


@dataclass(frozen=True, slots=True)
class SignInRequest:
    """What the agent entered; app.py signs in with it (and stores secrets in the keyring).

    Attributes:
        dialect: ``"org"`` or ``"dashboard"``.
        server: backend base URL.
        org: org dialect: organisation id.
        company: dashboard dialect: company id.
        supabase_url: org dialect: Supabase project URL.
        supabase_key: org dialect: Supabase anon key.
        email: the agent's email.
        password: the password ("" when a token was pasted).
        token: org dialect: a pasted access token ("" otherwise).
        remember: keep the password (refresh token) in the OS keyring.
    """

    dialect: str
    server: str
    org: str = ""
    company: str = ""
    supabase_url: str = ""
    supabase_key: str = ""
    email: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    remember: bool = False


LOCK_NOTE = N_("Set by your IT department")
"""Shown by locked fields (translated when shown)."""
SAMPLE_URL = "https://support.example-company.co.id:8443/"
"""A long but ordinary server URL: the URL fields are at least this wide."""
DEMO_HIDDEN_KEYS = frozenset(
    {"connection.email", "connection.org", "connection.company", "connection.supabase_key"}
)
"""In demo mode the form does not show the demo agent's account (the demo signs itself in)."""

SIGN_IN_PROBLEMS: Final = (
    N_("Wrong e-mail, password or company."),
    N_("Wrong e-mail or password."),
    N_("This account is disabled."),
    N_("Too many sign-in attempts; trying again later."),
    N_("Please sign in."),
    N_("Sign-in needs the Supabase URL and anon key in the settings."),
    N_("Sign-in needs the e-mail and company id in the settings."),
    N_("The pasted token has expired; paste a new one or sign in."),
    N_("The pasted token was refused; paste a new one or sign in."),
    N_("The server signed in but sent no session cookie."),
    N_("The sign-in service gave an unexpected answer."),
)
"""The network layer's sign-in problems (core/protocol/auth.py, net/auth.py): fixed English."""
_SIGN_IN_PATTERNS: Final = (
    (re.compile(r"Sign-in refused: (?P<reason>.+)\.$"), N_("Sign-in refused: {reason}.")),
    (
        re.compile(r"The server failed to sign in \(HTTP (?P<status>\d+)\)\.$"),
        N_("The server failed to sign in (HTTP {status})."),
    ),
    (
        re.compile(r"The server answered HTTP (?P<status>\d+) to sign-in\.$"),
        N_("The server answered HTTP {status} to sign-in."),
    ),
    (
        re.compile(r"The sign-in service failed \(HTTP (?P<status>\d+)\)\.$"),
        N_("The sign-in service failed (HTTP {status})."),
    ),
    (
        re.compile(r"The sign-in service answered HTTP (?P<status>\d+)\.$"),
        N_("The sign-in service answered HTTP {status}."),
    ),
    (
        re.compile(r"Session check failed \(HTTP (?P<status>\d+)\)\.$"),
        N_("Session check failed (HTTP {status})."),
    ),
)


def problem_text(text: str) -> str:
    """A sign-in problem in the app's language.

    The network layer words its problems in English (core has no UI language); the known ones
    are translated here. Anything else (a server's own words) is shown as it came.
    """
    words = text.strip()
    if words in SIGN_IN_PROBLEMS:
        return _(words)
    for pattern, template in _SIGN_IN_PATTERNS:
        match = pattern.match(words)
        if match:
            return _(template).format(**match.groupdict())
    return text


class SignInDialog(QDialog):
    """Sign in to the org or dashboard backend.

    Fields pre-filled from settings; keys locked by the machine policy are shown read-only.
    Errors arrive from app.py as plain words through :meth:`show_problem`.

    Args:
        loaded: the loaded settings (values and locks).
        dialect: ``"org"`` or ``"dashboard"``.
        demo: the account is the built-in demo's: its sign-in details are not shown.
        parent: the Qt parent.

    Signals:
        sign_in_requested(object): a :class:`SignInRequest` when the agent pressed Sign in.
    """

    sign_in_requested = Signal(object)

    def __init__(
        self, loaded: LoadedSettings, dialect: str, parent: QWidget | None = None, *, demo: bool = False
    ) -> None:
        super().__init__(parent)
        self._loaded = loaded
        self._dialect = dialect
        self._demo = demo
        self._problem = ""  # as it came (English from the network layer): re-worded per language
        conn = loaded.settings.connection
        self.setWindowTitle(_("Sign in"))
        layout = QVBoxLayout(self)
        self._problem_label = QLabel(self)
        self._problem_label.setTextFormat(Qt.TextFormat.PlainText)
        self._problem_label.setWordWrap(True)
        self._problem_label.setStyleSheet("color: #c62828;")
        self._problem_label.setAccessibleName(_("Sign-in problem"))
        self._problem_label.hide()
        layout.addWidget(self._problem_label)

        form = QFormLayout()
        self._server_edit = self._line(form, _("Server URL"), conn.server, "connection.server")
        self._server_edit.setPlaceholderText("https://")
        # A whole URL stays readable (the dialog was 241 px wide and cut it).
        url_width = self._server_edit.fontMetrics().horizontalAdvance(max(SAMPLE_URL, conn.server, key=len))
        self._server_edit.setMinimumWidth(min(url_width + 24, 720))
        self._org_edit = self._company_edit = None
        self._supabase_url_edit = self._supabase_key_edit = self._token_edit = None
        if dialect == "org":
            self._org_edit = self._line(form, _("Organisation ID"), conn.org, "connection.org")
            self._supabase_url_edit = self._line(
                form, _("Supabase URL"), conn.supabase_url, "connection.supabase_url"
            )
            self._supabase_key_edit = self._line(
                form, _("Supabase anon key"), conn.supabase_key, "connection.supabase_key"
            )
        else:
            self._company_edit = self._line(form, _("Company ID"), conn.company, "connection.company")
        self._email_edit = self._line(form, _("Email"), conn.email, "connection.email")
        self._password_edit = QLineEdit(self)
        self._password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self._password_edit.setAccessibleName(_("Password"))
        self._password_edit.setAccessibleDescription(_("Your password; it is never shown."))
        form.addRow(_("&Password"), self._password_edit)
        if dialect == "org":
            self._token_edit = QLineEdit(self)
            self._token_edit.setEchoMode(QLineEdit.EchoMode.Password)
            self._token_edit.setAccessibleName(_("Access token (instead of a password)"))
            self._token_edit.setAccessibleDescription(
                _("Paste a token from your IT department, or leave empty.")
            )
            self._token_edit.setPlaceholderText(_("or paste an access token"))
            form.addRow(_("Access &token"), self._token_edit)
        layout.addLayout(form)

        self._remember_check = QCheckBox(_("&Remember password"), self)
        self._remember_check.setAccessibleName(_("Remember password"))
        self._remember_check.setAccessibleDescription(_("Keeps you signed in, stored in the system keyring."))
        self._remember_check.setChecked(loaded.settings.ui.remember_password)
        layout.addWidget(self._remember_check, 0, Qt.AlignmentFlag.AlignLeft)  # not wider than its text
        self._keyring_label = QLabel(self)
        self._keyring_label.setTextFormat(Qt.TextFormat.PlainText)
        self._keyring_label.setWordWrap(True)
        self._keyring_label.setAccessibleName(_("Keyring note"))
        self._keyring_label.hide()
        layout.addWidget(self._keyring_label)

        self._buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        # Not a standard OK with other words: Qt would put "OK" back on a language change.
        self._sign_in_button = self._buttons.addButton(_("&Sign in"), QDialogButtonBox.ButtonRole.AcceptRole)
        self._sign_in_button.setDefault(True)
        self._sign_in_button.setAccessibleName(_("Sign in"))
        self._sign_in_button.setAccessibleDescription(_("Signs in with these details."))
        cancel = self._buttons.button(QDialogButtonBox.StandardButton.Cancel)
        cancel.setAccessibleName(_("Cancel"))
        cancel.setAccessibleDescription(_("Closes without signing in."))
        self._buttons.accepted.connect(self._on_buttons_accepted)
        self._buttons.rejected.connect(self.reject)
        layout.addWidget(self._buttons)
        first_empty = next((e for e in self._edits() if e.isEnabled() and not e.text()), self._password_edit)
        first_empty.setFocus()

    def _line(self, form: QFormLayout, label: str, value: str, key: str) -> QLineEdit:
        if self._demo and key in DEMO_HIDDEN_KEYS and not self._loaded.is_locked(key):
            value = ""
        edit = QLineEdit(value, self)
        edit.setAccessibleName(label)
        edit.setAccessibleDescription(_("Needed to sign in."))
        if self._loaded.is_locked(key):
            edit.setEnabled(False)
            edit.setToolTip(_(LOCK_NOTE))
            label = label + " 🔒"
            edit.setAccessibleDescription(_(LOCK_NOTE))
        form.addRow(label, edit)
        return edit

    def _edits(self) -> list[QLineEdit]:
        edits = [
            self._server_edit,
            self._org_edit,
            self._company_edit,
            self._supabase_url_edit,
            self._supabase_key_edit,
            self._email_edit,
            self._password_edit,
        ]
        return [e for e in edits if e is not None]

    # ------------------------------------------------------------------ public API

    def request(self) -> SignInRequest:
        """What the form holds now."""

        def text(edit: QLineEdit | None) -> str:
            return edit.text().strip() if edit is not None else ""

        return SignInRequest(
            dialect=self._dialect,
            server=text(self._server_edit),
            org=text(self._org_edit),
            company=text(self._company_edit),
            supabase_url=text(self._supabase_url_edit),
            supabase_key=text(self._supabase_key_edit),
            email=text(self._email_edit),
            password=self._password_edit.text(),
            token=text(self._token_edit),
            remember=self._remember_check.isChecked(),
        )

    @Slot(str)
    def show_problem(self, text: str) -> None:
        """Show a plain-words sign-in error ("" hides it) and let the agent try again."""
        self._problem = text
        self._problem_label.setText(problem_text(text))
        self._problem_label.setVisible(bool(text))
        self._sign_in_button.setEnabled(True)
        if text:
            self._password_edit.setFocus()
            self._password_edit.selectAll()

    @Slot(str)
    def set_keyring_problem(self, problem: str) -> None:
        """Say that no keyring works, so the sign-in will not be remembered ("" hides it)."""
        if problem:
            self._keyring_label.setText(
                _("Your sign-in will not be remembered: {problem}").format(problem=problem)
            )
        self._keyring_label.setVisible(bool(problem))

    @property
    def problem_text(self) -> str:
        """The problem shown ("" when none)."""
        return self._problem_label.text() if not self._problem_label.isHidden() else ""

    def changeEvent(self, event: QEvent) -> None:  # noqa: D102, N802
        super().changeEvent(event)
        if event.type() == QEvent.Type.LanguageChange and self._problem:
            self._problem_label.setText(problem_text(self._problem))

    # ------------------------------------------------------------------ slots

    def _on_buttons_accepted(self) -> None:
        request = self.request()
        missing = self._missing(request)
        if missing:
            self.show_problem(missing)
            return
        self._problem_label.hide()
        self._sign_in_button.setEnabled(False)  # until app.py answers (show_problem or close)
        self.sign_in_requested.emit(request)

    def _missing(self, request: SignInRequest) -> str:
        if not request.server.startswith(("http://", "https://")):
            return _("Enter the server address, starting with https://")
        if self._dialect == "org":
            if not request.org:
                return _("Enter your organisation ID.")
            if request.token:
                return ""
            if not (request.supabase_url and request.supabase_key):
                return _("Enter the Supabase URL and anon key (ask your IT department).")
        elif not request.company:
            return _("Enter your company ID.")
        if not request.email or not request.password:
            return _("Enter your email and password.")
        return ""

    # -- test and accessibility seams (read-only views of the widgets)

    @property
    def problem_label(self) -> QLabel:
        """The problem line at the top (hidden when there is none)."""
        return self._problem_label

    @property
    def server_edit(self) -> QLineEdit:
        """The server URL box."""
        return self._server_edit

    @property
    def org_edit(self) -> QLineEdit | None:
        """The organisation ID box (org dialect only)."""
        return self._org_edit

    @property
    def supabase_url_edit(self) -> QLineEdit | None:
        """The Supabase URL box (org dialect only)."""
        return self._supabase_url_edit

    @property
    def supabase_key_edit(self) -> QLineEdit | None:
        """The Supabase anon key box (org dialect only)."""
        return self._supabase_key_edit

    @property
    def company_edit(self) -> QLineEdit | None:
        """The company ID box (dashboard dialect only)."""
        return self._company_edit

    @property
    def email_edit(self) -> QLineEdit:
        """The email box."""
        return self._email_edit

    @property
    def password_edit(self) -> QLineEdit:
        """The password box."""
        return self._password_edit

    @property
    def token_edit(self) -> QLineEdit | None:
        """The access token box (org dialect only)."""
        return self._token_edit

    @property
    def remember_check(self) -> QCheckBox:
        """The "Remember password" check box."""
        return self._remember_check

    @property
    def keyring_label(self) -> QLabel:
        """The keyring note (hidden when the keyring works)."""
        return self._keyring_label

    @property
    def buttons(self) -> QDialogButtonBox:
        """The Sign in / Cancel button box."""
        return self._buttons

    @property
    def sign_in_button(self) -> QPushButton:
        """The "Sign in" button."""
        return self._sign_in_button
