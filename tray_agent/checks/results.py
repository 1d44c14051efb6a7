"""What a check says: its status, its line of plain words (every text of the report), its JSON."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tray_agent.core.i18n import N_
from tray_agent.core.redact import redact


class Status(enum.StrEnum):
    """The outcome of one check."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


class Msg:
    """Every user-visible text of the report, marked for translation (translated where used)."""

    SETTINGS_OK = N_("{where}; dialect {dialect}, server {server}")
    SETTINGS_PROBLEM = N_("{problem}")
    NO_SERVER = N_("no server set: use --server URL, TRAY_AGENT_SERVER or the settings dialog")
    BAD_SERVER = N_("the server must be an http:// or https:// URL, not {server!r}")
    NO_ORG = N_("no organisation id set (org dialect): use --org ID or TRAY_AGENT_ORG")
    NO_COMPANY = N_("no company id set (dashboard dialect): use --company ID or TRAY_AGENT_COMPANY")
    POLICY_NONE = N_("no machine policy")
    POLICY_OK = N_("machine policy from {sources}; locked: {locked}")
    POLICY_NO_LOCKS = N_("machine policy from {sources}; nothing locked")
    KEYRING_OK = N_("secrets go to the system keyring ({backend})")
    KEYRING_TIMEOUT = N_("the keyring did not answer within {seconds:.0f} s (is an unlock prompt open?)")
    SELF_TEST_OK = N_("icons and sounds bundled and readable")
    SELF_TEST_MISSING = N_("the app's resources are broken: {missing}")
    SELF_TEST_NO_QT = N_("Qt could not start here ({detail}); is there a display?")
    SELF_TEST_TIMEOUT = N_("the app's self-test did not finish within {seconds:.0f} s")
    TRAY_OK = N_("system tray available ({platform})")
    TRAY_MISSING = N_(
        "no system tray on this desktop ({platform}); the app shows a status window instead. "
        "GNOME needs the AppIndicator extension"
    )
    SNI_OK = N_("StatusNotifierWatcher on the session bus ({detail})")
    SNI_MISSING = N_(
        "no StatusNotifierWatcher on the session bus: tray icons fall back to the old XEmbed tray "
        "(GNOME needs the AppIndicator extension)"
    )
    NO_BUS = N_("no D-Bus session bus ({detail})")
    NOTIFY_OK = N_("{name} {version} by {vendor}; {features}")
    NOTIFY_MISSING = N_("no notification server on the session bus ({detail}); alerts only show in the tray")
    NOTIFY_FEATURES = N_("markup: {markup}, buttons: {actions}, kept in a history: {persistence}")
    NOTIFY_NO_ACTIONS = N_("the notification server shows no buttons (Take over / Open only from the tray)")
    NOT_LINUX = N_("native notifications of this OS (nothing to check)")
    AUDIO_OK = N_("alert sounds play with {player}{server}")
    AUDIO_MISSING = N_("alert sounds cannot play: {problem}")
    AUDIO_SERVER = N_("; sound server {name}, output {sink}")
    AUDIO_NO_SERVER = N_("{player} is installed but no sound server answers (pactl info failed)")
    PROXY_NONE = N_("no proxy: direct connection")
    PROXY_USED = N_("through proxy {proxy} (from {origin})")
    PROXY_BYPASSED = N_("proxy {proxy} is bypassed for {host} (no_proxy)")
    PROXY_BAD = N_("the proxy setting {proxy!r} is not an http:// proxy URL; connecting directly")
    DNS_OK = N_("{host} -> {addresses}")
    DNS_FAIL = N_("cannot resolve {host}: {reason}")
    DNS_VIA_PROXY = N_("{host} is not resolvable here ({reason}); the proxy resolves it")
    TCP_OK = N_("connected to {host}:{port}")
    TCP_FAIL = N_("cannot connect to {host}:{port}: {reason}")
    PROXY_CONNECT_OK = N_("connected to {host}:{port} through the proxy")
    PROXY_CONNECT_FAIL = N_("the proxy refused to connect to {host}:{port}: {reason}")
    TLS_OK = N_("{version}, certificate for {subject} issued by {issuer}, valid until {expires}")
    TLS_EXPIRING = N_("the certificate expires in {days} days ({expires})")
    TLS_SELF_SIGNED = N_("the server's certificate is self-signed, so it is not trusted{cert}")
    TLS_UNKNOWN_CA = N_(
        "the server's certificate is issued by an unknown authority{cert}; a TLS-inspecting "
        "proxy needs its CA in connection.ca_bundle"
    )
    TLS_HOSTNAME = N_("the server's certificate is not valid for {host}{cert}")
    TLS_EXPIRED = N_("the server's certificate has expired{cert}")
    TLS_NOT_YET = N_("the server's certificate is not valid yet (check this computer's clock){cert}")
    TLS_OTHER = N_("the server's certificate is not trusted: {reason}{cert}")
    TLS_FAILED = N_("TLS handshake failed: {reason}")
    TLS_CERT_DETAIL = N_(" (subject {subject}, issuer {issuer}, valid until {expires})")
    TLS_PLAIN = N_("plain http:// (no TLS)")
    HTTP_OK = N_("HTTP {status} from {url}")
    HTTP_ERROR = N_("the server answered HTTP {status} at {url}")
    HTTP_BAD = N_("no HTTP answer from {url}: {reason}")
    WS_OK = N_("WebSocket handshake accepted at {path}")
    WS_SIGN_IN = N_("server reachable at {path}; sign-in needed (HTTP {status})")
    WS_NOT_FOUND = N_("no WebSocket endpoint at {path} (HTTP 404): is the dialect ({dialect}) right?")
    WS_REFUSED = N_("WebSocket handshake refused at {path}: HTTP {status}")
    WS_NO_ORG = N_("no organisation id: the org WebSocket endpoint cannot be named")
    CLOCK_OK = N_("clock within {skew:.0f} s of the server")
    CLOCK_SKEW = N_("this computer's clock is {skew:.0f} s {direction} the server's; sign-in may fail")
    CLOCK_AHEAD = N_("ahead of")
    CLOCK_BEHIND = N_("behind")
    CLOCK_NO_DATE = N_("the server sent no Date header; clock not checked")
    TOKEN_OK = N_("access token valid for {minutes:.0f} more minutes")
    TOKEN_EXPIRED = N_("the access token expired {minutes:.0f} minutes ago")
    TOKEN_FUTURE = N_(
        "the access token was issued {seconds:.0f} s in the future: this computer's clock is behind"
    )
    TOKEN_BAD = N_("the access token is not a JWT ({reason})")
    SKIPPED_AFTER = N_("not checked: {what} failed")
    SKIPPED_NO_SERVER = N_("not checked: no usable server URL")
    SUMMARY_OK = N_("all checks passed")
    CHECK_CRASHED = N_("the check itself failed: {error}")
    SUMMARY_WARN = N_("{warnings}, no failures")
    SUMMARY_FAIL = N_("{failures} FAILED, {warnings}")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the report.

    Attributes:
        check: short id ("settings", "dns", "tls" ...).
        status: OK, WARN, FAIL or SKIP.
        message: plain words (never a secret).
        details: machine-readable extras for ``--json``.
    """

    check: str
    status: Status
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return {"check": self.check, "status": str(self.status), "message": self.message, **self.details}


def check_result(check: str, status: Status, message: str, **details: Any) -> CheckResult:
    """One line of the report; the message passes through ``redact`` (nothing secret is printed)."""
    return CheckResult(check, status, redact(message), details)
