"""The Settings model: every user-configurable value, validated, with safe defaults.

Loading in layers (defaults < machine policy < user file < environment < command line), locks
from the machine policy, and atomic saving live in :mod:`tray_agent.core.settings_layers`; this
module holds only the model so that every layer validates against one definition.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

SETTINGS_VERSION = 1
"""Version of the settings layout; files carry it so that later versions can migrate them."""

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class _Section(BaseModel):
    # Unknown keys in a settings file never crash (STYLE.md); they are ignored.
    model_config = ConfigDict(extra="ignore", validate_assignment=True, frozen=False)


class QuietHoursRule(_Section):
    """A weekly quiet-hours window, acting as do-not-disturb.

    ``days`` are ISO weekdays 1 (Monday) to 7 (Sunday) on which the window *starts*; a window
    whose end is before its start runs past midnight.
    """

    days: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7])
    start: str = "22:00"
    end: str = "07:00"

    @field_validator("days")
    @classmethod
    def _check_days(cls, value: list[int]) -> list[int]:
        if any(d < 1 or d > 7 for d in value):
            raise ValueError("days are 1 (Monday) to 7 (Sunday)")
        return sorted(set(value))

    @field_validator("start", "end")
    @classmethod
    def _check_time(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("times are HH:MM, 00:00 to 23:59")
        return value


class ConnectionSettings(_Section):
    """Where and how to connect."""

    dialect: Literal["org", "dashboard"] = "dashboard"
    server: str = ""  # http(s) base URL of the backend
    org: str = ""  # org dialect: organization id
    company: str = ""  # dashboard dialect: company id
    email: str = ""
    # Access token for the org dialect, from TRAY_AGENT_TOKEN or --token only: never read from or
    # written to a settings file (see settings_layers.SECRET_KEYS). SecretStr keeps it out of
    # reprs and logs; read it with ``.get_secret_value()``.
    token: SecretStr = Field(default=SecretStr(""), repr=False)
    supabase_url: str = ""  # org dialect: Supabase project URL (token endpoint)
    supabase_key: str = ""  # org dialect: Supabase anon key (public, not a secret)
    resync_interval: float = Field(default=60.0, ge=10.0, le=3600.0)  # org periodic resync, s
    command_timeout: float = Field(default=10.0, ge=1.0, le=120.0)  # s
    heartbeat_interval: float = Field(default=25.0, ge=5.0, le=300.0)  # s, app-level ping
    heartbeat_timeout: float = Field(default=10.0, ge=1.0, le=120.0)  # s, dead if nothing arrives
    backoff_max: float = Field(default=60.0, ge=1.0, le=3600.0)  # s
    poll_interval: float = Field(default=10.0, ge=2.0, le=600.0)  # s, REST fallback polling
    ws_retry_interval: float = Field(default=180.0, ge=1.0, le=3600.0)  # s, limited mode: retry WS
    allow_insecure: bool = False  # allow ws:// / http:// to non-loopback hosts
    ca_bundle: str = ""  # extra CA bundle (TLS-inspecting proxies)
    proxy: str = ""  # explicit HTTP(S) proxy; empty = from the environment

    def secret_key(self, kind: str, account: str | None = None) -> str:
        """The keyring key for one of this connection's secrets.

        Args:
            kind: What the secret is, e.g. ``"refresh_token"`` or ``"password"``.
            account: The account it belongs to; defaults to ``email``.

        Returns:
            ``"<dialect>:<server>:<tenant>:<account>:<kind>"``, see :func:`secret_key`; the
            tenant is the organisation (org) or company (dashboard), so that one agent's
            accounts in two tenants of one server never share a secret.
        """
        tenant = self.org if self.dialect == "org" else self.company
        return secret_key(self.dialect, self.server, tenant, self.email if account is None else account, kind)


class AlertSettings(_Section):
    """What alerts, how loud, and when to stay quiet (used by core.policy)."""

    notify_messages: bool = True  # toasts for customer messages
    notify_escalations: bool = True  # toasts for customers asking for a human
    escalations_bypass_dnd: bool = True  # escalations pass do-not-disturb and quiet hours
    toast_min_interval: float = Field(default=1.0, ge=0.0, le=60.0)  # s between toasts
    coalesce_window: float = Field(default=10.0, ge=0.0, le=600.0)  # s: one customer's burst
    summary_threshold: int = Field(default=3, ge=2, le=100)  # customers at once -> summary
    reminder_after: float = Field(default=5.0, ge=0.5, le=1440.0)  # min unassigned -> reminder
    reminder_backoff: float = Field(default=2.0, ge=1.0, le=10.0)  # factor between reminders
    reminder_max_interval: float = Field(default=60.0, ge=1.0, le=1440.0)  # min
    sla_minutes: float = Field(default=10.0, ge=0.5, le=1440.0)  # oldest waiting -> tray state
    sounds: bool = True  # mute switch
    volume: float = Field(default=0.8, ge=0.0, le=1.0)
    quiet_hours: list[QuietHoursRule] = Field(default_factory=list)
    # Messages in conversations the AI is handling: off by default (quiet); when on, they come as
    # one summary toast at most once a minute. Messages of my customers and of customers waiting
    # for a human follow ``notify_messages``; a colleague's customers never toast.
    ai_messages: bool = False
    # IT may forbid manual do-not-disturb (set False in the machine policy and lock it).
    allow_manual_dnd: bool = True
    # End of manual do-not-disturb (ISO 8601, UTC), kept across restarts; "" = off.
    dnd_until: str = ""

    @field_validator("dnd_until")
    @classmethod
    def _check_dnd_until(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("dnd_until is a date and time (ISO 8601), or empty") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()

    def manual_dnd_end(self) -> datetime | None:
        """When the saved manual do-not-disturb ends (aware UTC), or None when it is off."""
        return datetime.fromisoformat(self.dnd_until) if self.dnd_until else None


class QuickReplySetting(_Section):
    """A canned reply: a short name the agent types after "/", and its text per language.

    The texts may hold ``{customer_name}``, ``{agent_name}``, ``{channel}`` and ``{conversation}``
    (filled in by :mod:`tray_agent.core.quick_replies`).
    """

    name: str = Field(min_length=1, max_length=32, pattern=r"^[\w-]+$")
    text: str = Field(default="", max_length=4000)  # English (and any language without its own)
    text_id: str = Field(default="", max_length=4000)  # Bahasa Indonesia; "" uses ``text``


class UiSettings(_Section):
    """Windows and presentation."""

    language: Literal["system", "en", "id"] = "system"
    theme: Literal["system", "light", "dark"] = "system"
    history_limit: int = Field(default=500, ge=50, le=10_000)  # messages kept per conversation
    start_hidden: bool = True
    autostart: bool = False
    remember_password: bool = False
    quick_replies: list[QuickReplySetting] = Field(default_factory=list)  # the agent's own
    # Set by IT in the machine policy (lock it there); shown read-only, before the agent's own.
    team_quick_replies: list[QuickReplySetting] = Field(default_factory=list)


def secret_key(dialect: str, server: str, tenant: str, account: str, kind: str) -> str:
    """The keyring key of one secret: ``"<dialect>:<server>:<tenant>:<account>:<kind>"``.

    The server URL loses a trailing slash and the account is lower-cased, so that the same
    sign-in always finds the same secret.

    Args:
        dialect: ``"org"`` or ``"dashboard"``.
        server: Base URL of the backend.
        tenant: Organisation id (org) or company id (dashboard).
        account: The agent's e-mail (or another account id).
        kind: What the secret is, e.g. ``"refresh_token"``.

    Returns:
        The key; the keyring's service name is ``"tray-agent"``.
    """
    return f"{dialect}:{server.rstrip('/')}:{tenant.strip()}:{account.strip().lower()}:{kind}"


class Settings(_Section):
    """All settings. Keys are addressed as ``section.key`` (e.g. ``alerts.sla_minutes``)."""

    version: int = SETTINGS_VERSION
    connection: ConnectionSettings = Field(default_factory=ConnectionSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    ui: UiSettings = Field(default_factory=UiSettings)
