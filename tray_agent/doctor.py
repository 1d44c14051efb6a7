"""`tray-agent doctor`: checks this machine and the way to the server and prints a report; a composition root.

Checks, in report order: settings and machine policy, the keyring, the tray and the bundled
resources (the app's own ``--self-test`` in a subprocess, so that it sees the real desktop), the
StatusNotifierWatcher, the notification server and its capabilities, audio, then the network:
proxy, DNS, TCP, TLS (certificate verified), HTTP (the server's ``Date`` header for clock skew),
the WebSocket handshake of the dialect's endpoint, and an org access token's ``iat``/``exp``.

Every check gives one line: ``OK``, ``WARN``, ``FAIL`` or ``SKIP`` (not applicable, or not possible
after an earlier failure) and plain words; ``--json`` prints the same as one JSON object. The exit
code is 1 when any check FAILs, else 0. Nothing secret is ever printed: messages are built from
non-secret values and pass through :func:`tray_agent.core.redact.redact` as well.

PySide6 is never imported here: the tray check runs the app's self-test as a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import enum
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from tray_agent import __version__
from tray_agent.cli import EXIT_FAILURE, EXIT_OK
from tray_agent.core import i18n
from tray_agent.core.events import Dialect
from tray_agent.core.i18n import N_, _, ngettext
from tray_agent.core.protocol import codec_for
from tray_agent.core.protocol.base import UrlError
from tray_agent.core.redact import install_redaction, redact
from tray_agent.core.settings import ConnectionSettings
from tray_agent.core.settings_layers import LoadedSettings

logger = logging.getLogger(__name__)


STEP_TIMEOUT = 5.0  # seconds for each network step (DNS, TCP, TLS, one HTTP answer)
SELF_TEST_TIMEOUT = 60.0  # seconds for the app's self-test (Qt start-up on a cold disk)
DBUS_TIMEOUT = 5.0
KEYRING_TIMEOUT = 15.0  # an unlock prompt may be showing
CLOCK_WARN = 60.0  # seconds of clock skew that start to matter (token iat/exp checks)
CLOCK_FAIL = 300.0  # sign-in tokens are refused beyond this
CERT_WARN_DAYS = 14
MAX_HEADER_BYTES = 64 * 1024

NOTIFICATIONS = "org.freedesktop.Notifications"
SNI_WATCHER = "org.kde.StatusNotifierWatcher"


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


def _result(check: str, status: Status, message: str, **details: Any) -> CheckResult:
    return CheckResult(check, status, redact(message), details)


# ---------------------------------------------------------------------------------------------
# Settings and policy


@dataclass(frozen=True, slots=True)
class _Setup:
    loaded: LoadedSettings
    policy_sources: tuple[str, ...]
    settings_file: str


def _load(args: argparse.Namespace, env: Mapping[str, str]) -> _Setup:
    from tray_agent.platform.paths import Paths, load_settings_for, read_policy_sources

    paths = Paths.from_platform(getattr(args, "basedir", None), env)
    sources = read_policy_sources(paths)
    loaded = load_settings_for(paths, env, args, policy_sources=sources)
    return _Setup(loaded, tuple(name for name, _source in sources), str(paths.settings_file))


def check_settings(setup: _Setup) -> list[CheckResult]:
    """Problems met while loading the settings, and whether the connection is configured."""
    conn = setup.loaded.settings.connection
    results = [
        _result("settings", Status.WARN, _(Msg.SETTINGS_PROBLEM).format(problem=p))
        for p in setup.loaded.problems
    ]
    missing = []
    if not conn.server:
        missing.append(_(Msg.NO_SERVER))
    elif not conn.server.startswith(("http://", "https://")):
        missing.append(_(Msg.BAD_SERVER).format(server=conn.server))
    if conn.dialect == "org" and not conn.org:
        missing.append(_(Msg.NO_ORG))
    if conn.dialect == "dashboard" and not conn.company:
        missing.append(_(Msg.NO_COMPANY))
    results += [_result("settings", Status.FAIL, text) for text in missing]
    if not results:
        where = setup.settings_file
        results.append(
            _result(
                "settings",
                Status.OK,
                _(Msg.SETTINGS_OK).format(where=where, dialect=conn.dialect, server=conn.server),
                file=where,
                dialect=conn.dialect,
                server=conn.server,
            )
        )
    locked = sorted(setup.loaded.locked)
    if not setup.policy_sources:
        results.append(_result("policy", Status.OK, _(Msg.POLICY_NONE), sources=[], locked=[]))
    else:
        sources = ", ".join(setup.policy_sources)
        text = (
            _(Msg.POLICY_OK).format(sources=sources, locked=", ".join(locked))
            if locked
            else _(Msg.POLICY_NO_LOCKS).format(sources=sources)
        )
        results.append(_result("policy", Status.OK, text, sources=list(setup.policy_sources), locked=locked))
    return results


# ---------------------------------------------------------------------------------------------
# Keyring


async def check_keyring() -> list[CheckResult]:
    """Whether secrets reach the OS keyring (touches it once; may show an unlock prompt)."""
    from tray_agent.platform.secrets import KeyringSecretStore

    def probe() -> tuple[bool, str | None, str | None]:
        store = KeyringSecretStore()
        store.probe()
        return store.persistent, store.problem, store.backend_name

    try:
        persistent, problem, backend = await asyncio.wait_for(asyncio.to_thread(probe), KEYRING_TIMEOUT)
    except TimeoutError:
        return [_result("keyring", Status.WARN, _(Msg.KEYRING_TIMEOUT).format(seconds=KEYRING_TIMEOUT))]
    if persistent:
        return [_result("keyring", Status.OK, _(Msg.KEYRING_OK).format(backend=backend), backend=backend)]
    return [_result("keyring", Status.WARN, problem or "", backend=backend)]


# ---------------------------------------------------------------------------------------------
# Tray and resources (the app's self-test, in a child process on the real desktop)


def self_test_command(frozen: bool | None = None, executable: str = sys.executable) -> list[str]:
    """How to run the app's ``--self-test``: the frozen executable itself, or ``python -m``."""
    if frozen if frozen is not None else bool(getattr(sys, "frozen", False)):
        return [executable, "--self-test"]
    return [executable, "-m", "tray_agent", "--self-test"]


def parse_self_test(returncode: int, stdout: str, stderr: str) -> list[CheckResult]:
    """Turn the self-test's report (see ``app.self_test``) into the resources and tray lines."""
    lines = [line.strip() for line in stdout.splitlines()]
    missing = [line.removeprefix("MISSING ").strip() for line in lines if line.startswith("MISSING")]
    platform = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("qt platform:")), "")
    tray = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("tray:")), None)
    if tray is None:  # Qt never got far enough to report (no display, missing library)
        errors = [line.strip() for line in stderr.splitlines() if line.strip()]
        detail = next((line for line in errors if "could not" in line.lower()), errors[-1] if errors else "")
        detail = detail or f"exit code {returncode}"
        return [_result("tray", Status.WARN, _(Msg.SELF_TEST_NO_QT).format(detail=detail[:200]))]
    results = []
    if missing or returncode != 0:
        results.append(
            _result("resources", Status.FAIL, _(Msg.SELF_TEST_MISSING).format(missing="; ".join(missing)))
        )
    else:
        results.append(_result("resources", Status.OK, _(Msg.SELF_TEST_OK)))
    if tray.startswith("available"):
        results.append(
            _result("tray", Status.OK, _(Msg.TRAY_OK).format(platform=platform), platform=platform)
        )
    else:
        results.append(
            _result("tray", Status.WARN, _(Msg.TRAY_MISSING).format(platform=platform), platform=platform)
        )
    return results


async def check_tray(args: argparse.Namespace, env: Mapping[str, str]) -> list[CheckResult]:
    """Run the app's self-test with QT_QPA_PLATFORM left as it is (the real desktop)."""
    argv = self_test_command()
    if getattr(args, "basedir", None):
        argv += ["--basedir", str(args.basedir)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
        )
    except OSError as exc:
        return [_result("tray", Status.WARN, _(Msg.SELF_TEST_NO_QT).format(detail=exc))]
    try:
        out, err = await asyncio.wait_for(proc.communicate(), SELF_TEST_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # our own child, by its handle
        await proc.wait()
        return [_result("tray", Status.WARN, _(Msg.SELF_TEST_TIMEOUT).format(seconds=SELF_TEST_TIMEOUT))]
    rc = proc.returncode if proc.returncode is not None else -1
    return parse_self_test(rc, out.decode(errors="replace"), err.decode(errors="replace"))


# ---------------------------------------------------------------------------------------------
# D-Bus: StatusNotifierWatcher and the notification server (Linux and other freedesktop systems)


async def _dbus_call(bus: Any, destination: str, path: str, interface: str, member: str, **kw: Any) -> Any:
    from dbus_fast import Message, MessageType

    reply = await asyncio.wait_for(
        bus.call(Message(destination=destination, path=path, interface=interface, member=member, **kw)),
        DBUS_TIMEOUT,
    )
    if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
        raise RuntimeError(str(reply.body[0]) if reply is not None and reply.body else "no reply")
    return reply.body


async def check_desktop_bus(env: Mapping[str, str], platform: str = sys.platform) -> list[CheckResult]:
    """The StatusNotifierWatcher and the notification server (name, version, capabilities)."""
    if platform in ("win32", "darwin"):
        return [_result("notifications", Status.OK, _(Msg.NOT_LINUX))]
    address = env.get("DBUS_SESSION_BUS_ADDRESS", "")
    if not address:
        detail = "DBUS_SESSION_BUS_ADDRESS is not set"
        return [
            _result("sni", Status.WARN, _(Msg.NO_BUS).format(detail=detail)),
            _result("notifications", Status.WARN, _(Msg.NOTIFY_MISSING).format(detail=detail)),
        ]
    try:
        from dbus_fast.aio import MessageBus
    except ImportError as exc:
        return [_result("notifications", Status.WARN, _(Msg.NOTIFY_MISSING).format(detail=exc))]
    try:
        bus = await asyncio.wait_for(MessageBus(bus_address=address).connect(), DBUS_TIMEOUT)
    except Exception as exc:  # any transport or auth error: report it
        detail = f"{type(exc).__name__}: {exc}"
        return [
            _result("sni", Status.WARN, _(Msg.NO_BUS).format(detail=detail)),
            _result("notifications", Status.WARN, _(Msg.NOTIFY_MISSING).format(detail=detail)),
        ]
    try:
        return [await _check_sni(bus), await _check_notifications(bus)]
    finally:
        bus.disconnect()


async def _check_sni(bus: Any) -> CheckResult:
    try:
        (has_owner,) = await _dbus_call(
            bus,
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            signature="s",
            body=[SNI_WATCHER],
        )
    except Exception as exc:
        return _result("sni", Status.WARN, _(Msg.NO_BUS).format(detail=exc))
    if not has_owner:
        return _result("sni", Status.WARN, _(Msg.SNI_MISSING), watcher=False)
    host = None
    with contextlib.suppress(Exception):  # an old watcher may not have the property
        (variant,) = await _dbus_call(
            bus,
            SNI_WATCHER,
            "/StatusNotifierWatcher",
            "org.freedesktop.DBus.Properties",
            "Get",
            signature="ss",
            body=[SNI_WATCHER, "IsStatusNotifierHostRegistered"],
        )
        host = bool(variant.value)
    detail = {True: "a tray host is registered", False: "no tray host registered", None: "host unknown"}[host]
    status = Status.WARN if host is False else Status.OK
    return _result("sni", status, _(Msg.SNI_OK).format(detail=detail), watcher=True, host=host)


async def _check_notifications(bus: Any) -> CheckResult:
    path = "/org/freedesktop/Notifications"
    try:
        name, vendor, version, _spec = await _dbus_call(
            bus, NOTIFICATIONS, path, NOTIFICATIONS, "GetServerInformation"
        )
        (capabilities,) = await _dbus_call(bus, NOTIFICATIONS, path, NOTIFICATIONS, "GetCapabilities")
    except Exception as exc:
        return _result("notifications", Status.WARN, _(Msg.NOTIFY_MISSING).format(detail=exc), server=None)
    caps = sorted(str(c) for c in capabilities)
    flags = {key: key in caps for key in ("body-markup", "actions", "persistence")}

    def yes(key: str) -> str:
        return "yes" if flags[key] else "no"

    features = _(Msg.NOTIFY_FEATURES).format(
        markup=yes("body-markup"), actions=yes("actions"), persistence=yes("persistence")
    )
    text = _(Msg.NOTIFY_OK).format(name=name, version=version, vendor=vendor, features=features)
    status = Status.OK
    if not flags["actions"]:
        status, text = Status.WARN, f"{text}. {_(Msg.NOTIFY_NO_ACTIONS)}"
    return _result("notifications", status, text, server=name, version=version, capabilities=caps)


# ---------------------------------------------------------------------------------------------
# Audio


def _pactl_info(env: Mapping[str, str]) -> tuple[str, str] | bool | None:
    """``(server name, default sink)``; None without pactl; False when no server answers."""
    pactl = shutil.which("pactl", path=env.get("PATH"))
    if pactl is None:
        return None
    try:
        out = subprocess.run(
            [pactl, "info"], capture_output=True, text=True, timeout=DBUS_TIMEOUT, env=dict(env), check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    if out.returncode != 0:
        return False
    fields = dict(line.split(":", 1) for line in out.stdout.splitlines() if ":" in line)
    return fields.get("Server Name", "?").strip(), fields.get("Default Sink", "?").strip()


async def check_audio(env: Mapping[str, str]) -> list[CheckResult]:
    """Whether an alert-sound player exists here, and the sound server it would use."""
    from tray_agent.platform.sound import SystemSound

    sound = SystemSound()
    try:
        if not sound.available:
            return [_result("audio", Status.WARN, _(Msg.AUDIO_MISSING).format(problem=sound.problem))]
        player = sound.player
        kind = str(player.kind) if player is not None else "?"
        info = await asyncio.to_thread(_pactl_info, env)
        if info is False:
            return [_result("audio", Status.WARN, _(Msg.AUDIO_NO_SERVER).format(player=kind), player=kind)]
        if not isinstance(info, tuple):
            info = None
        server = _(Msg.AUDIO_SERVER).format(name=info[0], sink=info[1]) if info else ""
        return [
            _result(
                "audio",
                Status.OK,
                _(Msg.AUDIO_OK).format(player=kind, server=server),
                player=kind,
                server=info[0] if info else None,
                sink=info[1] if info else None,
            )
        ]
    finally:
        sound.close()


# ---------------------------------------------------------------------------------------------
# Network


@dataclass(frozen=True, slots=True)
class Target:
    """Where the server is, from ``connection.server``."""

    scheme: str
    host: str
    port: int
    base_path: str

    @property
    def secure(self) -> bool:
        """Whether the connection uses TLS."""
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        """``host:port`` as in a Host header (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    @classmethod
    def from_url(cls, url: str) -> Target | None:
        """The target of an http(s) URL, or None when it is not one."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, port or default, parts.path.rstrip("/"))


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy to tunnel through (CONNECT)."""

    host: str
    port: int
    origin: str  # "settings" or the environment variable
    display: str  # the URL without credentials
    authorization: str | None = None  # Proxy-Authorization value; never printed


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}"


def find_proxy(
    conn: ConnectionSettings, target: Target, env: Mapping[str, str]
) -> tuple[Proxy | None, CheckResult]:
    """The proxy the app would use for ``target`` (settings first, else the environment).

    Returns:
        The proxy (or None for a direct connection) and the report line about it.
    """
    origin = "settings (connection.proxy)"
    url = conn.proxy
    if not url:
        proxies = {k.lower(): (k, v) for k, v in env.items() if k.lower().endswith("_proxy") and v}
        want = f"{target.scheme}_proxy"
        name, url = proxies.get(want, proxies.get("all_proxy", ("", "")))
        origin = name
        if url:
            no_proxy = proxies.get("no_proxy", ("", ""))[1]
            if no_proxy and _bypassed(target.host, no_proxy):
                shown = _strip_userinfo(url)
                text = _(Msg.PROXY_BYPASSED).format(proxy=shown, host=target.host)
                return None, _result("proxy", Status.OK, text, proxy=None)
    if not url:
        return None, _result("proxy", Status.OK, _(Msg.PROXY_NONE), proxy=None)
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        port = parts.port or 8080
    except ValueError:
        parts, port = urlsplit(""), 0
    if parts.scheme != "http" or not parts.hostname:
        return None, _result(
            "proxy", Status.WARN, _(Msg.PROXY_BAD).format(proxy=_strip_userinfo(url)), proxy=None
        )
    auth = None
    if parts.username:
        raw = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = "Basic " + base64.b64encode(raw).decode("ascii")
    shown = _strip_userinfo(url)
    proxy = Proxy(parts.hostname, port, origin, shown, auth)
    return proxy, _result(
        "proxy", Status.OK, _(Msg.PROXY_USED).format(proxy=shown, origin=origin), proxy=shown
    )


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma-separated hosts or domain suffixes, ``*`` for all) covers ``host``."""
    host = host.lower().rstrip(".")
    for entry in (part.strip().lower() for part in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry  # drop a port
        name = name.lstrip(".").rstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {STEP_TIMEOUT:.0f} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there, or a firewall rejects it)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@dataclass
class _Answer:
    status: int
    headers: dict[str, str]


async def _read_head(reader: asyncio.StreamReader) -> _Answer:
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP_TIMEOUT)
    if len(raw) > MAX_HEADER_BYTES:
        raise ValueError("answer headers too long")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return _Answer(int(parts[1]), headers)


def _ssl_context(conn: ConnectionSettings) -> ssl.SSLContext:
    from tray_agent.net.auth import make_ssl_context

    return make_ssl_context(conn)


def _cert_fields(cert: Mapping[str, Any]) -> tuple[str, str, str]:
    def name(entry: Any) -> str:
        values = dict(pair for rdn in entry or () for pair in rdn)
        return str(values.get("commonName") or values.get("organizationName") or "?")

    return name(cert.get("subject")), name(cert.get("issuer")), str(cert.get("notAfter", "?"))


def _describe_der(der: bytes | None) -> str:
    """Subject, issuer and expiry of an (unverified) certificate, when ``cryptography`` is here."""
    if not der:
        return ""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
    except ImportError:
        return ""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return ""

    def cn(name: Any) -> str:
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else name.rfc4514_string()

    expires = cert.not_valid_after_utc.strftime("%Y-%m-%d")
    return _(Msg.TLS_CERT_DETAIL).format(subject=cn(cert.subject), issuer=cn(cert.issuer), expires=expires)


def _verify_message(exc: ssl.SSLCertVerificationError, host: str, cert: str) -> str:
    # OpenSSL X509_V_ERR_* codes.
    code = exc.verify_code
    if code in (18, 19):
        return _(Msg.TLS_SELF_SIGNED).format(cert=cert)
    if code in (2, 20, 21):
        return _(Msg.TLS_UNKNOWN_CA).format(cert=cert)
    if code in (62, 64) or "mismatch" in str(exc).lower():  # host name, IP address
        return _(Msg.TLS_HOSTNAME).format(host=host, cert=cert)
    if code == 10:
        return _(Msg.TLS_EXPIRED).format(cert=cert)
    if code == 9:
        return _(Msg.TLS_NOT_YET).format(cert=cert)
    return _(Msg.TLS_OTHER).format(reason=exc.verify_message or exc.reason or exc, cert=cert)


class _StepError(Exception):
    """A network step failed; carries its report line."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.message)
        self.result = result


@dataclass
class NetworkProbe:
    """Connects to the server (through the proxy, if any) and speaks just enough HTTP.

    Each request uses a fresh connection (``Connection: close``); the first connection's steps
    (DNS, TCP, proxy CONNECT, TLS) are reported, later ones only fail their own check.
    """

    conn: ConnectionSettings
    target: Target
    proxy: Proxy | None
    results: list[CheckResult] = field(default_factory=list)
    reported: bool = False

    def _report(self, result: CheckResult) -> None:
        if not self.reported:
            self.results.append(result)

    async def resolve(self) -> None:
        """DNS for the server (and the proxy); a proxy resolves the server itself."""
        loop = asyncio.get_running_loop()
        names = [(self.proxy.host, self.proxy.port)] if self.proxy else []
        names.append((self.target.host, self.target.port))
        for host, port in names:
            is_server = host == self.target.host and port == self.target.port
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), STEP_TIMEOUT
                )
            except (OSError, TimeoutError) as exc:
                if is_server and self.proxy is not None:
                    text = _(Msg.DNS_VIA_PROXY).format(host=host, reason=_reason(exc))
                    self.results.append(_result("dns", Status.OK, text, host=host, addresses=[]))
                    continue
                text = _(Msg.DNS_FAIL).format(host=host, reason=_reason(exc))
                raise _StepError(_result("dns", Status.FAIL, text)) from exc
            addresses = sorted({str(info[4][0]) for info in infos})
            text = _(Msg.DNS_OK).format(host=host, addresses=", ".join(addresses[:4]))
            self.results.append(_result("dns", Status.OK, text, host=host, addresses=addresses))

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """TCP (+ proxy CONNECT) (+ TLS) to the server; raises :class:`_StepError` on a failure."""
        host, port = (
            (self.proxy.host, self.proxy.port) if self.proxy else (self.target.host, self.target.port)
        )
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), STEP_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise _StepError(
                _result("tcp", Status.FAIL, _(Msg.TCP_FAIL).format(host=host, port=port, reason=_reason(exc)))
            ) from exc
        try:
            self._report(_result("tcp", Status.OK, _(Msg.TCP_OK).format(host=host, port=port)))
            if self.proxy is not None:
                await self._connect_through(reader, writer)
            if self.target.secure:
                await self._start_tls(writer)
            elif not self.reported:
                self._report(_result("tls", Status.OK, _(Msg.TLS_PLAIN), tls=False))
        except BaseException:
            writer.close()
            raise
        self.reported = True
        return reader, writer

    async def _connect_through(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.proxy is not None
        target = f"{self.target.host}:{self.target.port}"
        if ":" in self.target.host:
            target = f"[{self.target.host}]:{self.target.port}"
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if self.proxy.authorization:
            head += f"Proxy-Authorization: {self.proxy.authorization}\r\n"
        writer.write((head + "\r\n").encode("latin-1"))
        try:
            await writer.drain()
            answer = await _read_head(reader)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            text = _(Msg.PROXY_CONNECT_FAIL).format(
                host=self.target.host, port=self.target.port, reason=_reason(exc)
            )
            raise _StepError(_result("proxy-connect", Status.FAIL, text)) from exc
        if answer.status != 200:
            text = _(Msg.PROXY_CONNECT_FAIL).format(
                host=self.target.host, port=self.target.port, reason=f"HTTP {answer.status}"
            )
            raise _StepError(_result("proxy-connect", Status.FAIL, text, http_status=answer.status))
        text = _(Msg.PROXY_CONNECT_OK).format(host=self.target.host, port=self.target.port)
        self._report(_result("proxy-connect", Status.OK, text))

    async def _start_tls(self, writer: asyncio.StreamWriter) -> None:
        context = _ssl_context(self.conn)
        host = self.target.host
        try:
            await asyncio.wait_for(writer.start_tls(context, server_hostname=host), STEP_TIMEOUT)
        except ssl.SSLCertVerificationError as exc:
            cert = _describe_der(await self._unverified_certificate())
            raise _StepError(
                _result("tls", Status.FAIL, _verify_message(exc, host, cert), verify_code=exc.verify_code)
            ) from exc
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            raise _StepError(
                _result("tls", Status.FAIL, _(Msg.TLS_FAILED).format(reason=_reason(exc)))
            ) from exc
        if self.reported:
            return
        ssl_object = writer.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        version = ssl_object.version() if ssl_object is not None else "TLS"
        subject, issuer, expires = _cert_fields(peer if isinstance(peer, dict) else {})
        details = {"tls": True, "version": version, "subject": subject, "issuer": issuer, "expires": expires}
        text = _(Msg.TLS_OK).format(version=version, subject=subject, issuer=issuer, expires=expires)
        status = Status.OK
        with contextlib.suppress(ValueError, KeyError):
            days = (ssl.cert_time_to_seconds(expires) - datetime.now(UTC).timestamp()) / 86400
            if days < CERT_WARN_DAYS:
                status = Status.WARN
                text = _(Msg.TLS_EXPIRING).format(days=int(days), expires=expires)
        self._report(_result("tls", status, text, **details))

    async def _unverified_certificate(self) -> bytes | None:
        """The server's certificate without verifying it, only to describe it in the report."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        probe = NetworkProbe(self.conn, Target("http", self.target.host, self.target.port, ""), self.proxy)
        probe.reported = True
        try:
            _reader, writer = await probe.open()
        except _StepError:
            return None
        try:
            await asyncio.wait_for(writer.start_tls(context, server_hostname=self.target.host), STEP_TIMEOUT)
            ssl_object = writer.get_extra_info("ssl_object")
            return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        except (ssl.SSLError, OSError, TimeoutError):
            return None
        finally:
            writer.close()

    async def request(self, path: str, extra_headers: Sequence[tuple[str, str]] = ()) -> _Answer:
        """One GET over a fresh connection; the status line and headers only."""
        reader, writer = await self.open()
        try:
            head = f"GET {path} HTTP/1.1\r\nHost: {self.target.authority}\r\n"
            head += f"User-Agent: tray-agent-doctor/{__version__}\r\nAccept: */*\r\n"
            for name, value in extra_headers:
                head += f"{name}: {value}\r\n"
            if not any(name.lower() == "connection" for name, _ in extra_headers):
                head += "Connection: close\r\n"
            writer.write((head + "\r\n").encode("latin-1"))
            await writer.drain()
            return await _read_head(reader)
        finally:
            writer.close()
            with contextlib.suppress(Exception):  # the server may reset a closed TLS stream
                await asyncio.wait_for(writer.wait_closed(), STEP_TIMEOUT)


def websocket_path(conn: ConnectionSettings, target: Target) -> tuple[str, str] | None:
    """The request path of the dialect's WebSocket endpoint, and the same for the report.

    The org path carries the token in its query (when one is set); the shown path never does.
    """
    token = conn.token.get_secret_value()
    base = f"{target.scheme}://{target.authority}{target.base_path}"
    try:
        url = urlsplit(codec_for(Dialect(conn.dialect)).ws_url(base, token=token, org=conn.org))
    except UrlError:
        return None
    return (f"{url.path}?{url.query}" if token and url.query else url.path), url.path


async def check_network(
    conn: ConnectionSettings, env: Mapping[str, str], now: Callable[[], datetime] | None = None
) -> list[CheckResult]:
    """Proxy, DNS, TCP, TLS, HTTP, WebSocket handshake, clock and token checks, in that order."""
    now = now or (lambda: datetime.now(UTC))
    target = Target.from_url(conn.server)
    if target is None:
        return [_result("network", Status.SKIP, _(Msg.SKIPPED_NO_SERVER))]
    proxy, proxy_line = find_proxy(conn, target, env)
    probe = NetworkProbe(conn, target, proxy, [proxy_line])
    url = f"{target.scheme}://{target.authority}{target.base_path or '/'}"
    failed = ""
    answer: _Answer | None = None
    try:
        await probe.resolve()
        answer = await probe.request(target.base_path or "/")
    except _StepError as step:
        probe.results.append(step.result)
        failed = step.result.check
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
        probe.results.append(
            _result("http", Status.FAIL, _(Msg.HTTP_BAD).format(url=url, reason=_reason(exc)))
        )
        failed = "http"
    results = probe.results
    if answer is not None:
        status = Status.WARN if answer.status >= 500 else Status.OK
        template = _(Msg.HTTP_ERROR) if answer.status >= 500 else _(Msg.HTTP_OK)
        results.append(
            _result("http", status, template.format(status=answer.status, url=url), http_status=answer.status)
        )
        results.append(await _check_websocket(probe, conn, target))
        results.append(_check_clock(answer, now()))
    else:
        for check in ("websocket", "clock"):
            results.append(_result(check, Status.SKIP, _(Msg.SKIPPED_AFTER).format(what=failed)))
    token_line = _check_token(conn, now())
    if token_line is not None:
        results.append(token_line)
    return results


async def _check_websocket(probe: NetworkProbe, conn: ConnectionSettings, target: Target) -> CheckResult:
    paths = websocket_path(conn, target)
    if paths is None:
        return _result("websocket", Status.SKIP, _(Msg.WS_NO_ORG))
    path, shown = paths
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    headers = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", key),
        ("Origin", f"{target.scheme}://{target.authority}"),
    ]
    try:
        answer = await probe.request(path, headers)
    except _StepError as step:
        return _result("websocket", Status.FAIL, f"{shown}: {step.result.message}")
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
        return _result("websocket", Status.FAIL, _(Msg.HTTP_BAD).format(url=shown, reason=_reason(exc)))
    status = answer.status
    if status == 101:
        return _result(
            "websocket", Status.OK, _(Msg.WS_OK).format(path=shown), http_status=status, path=shown
        )
    if status in (401, 403):
        return _result(
            "websocket",
            Status.OK,
            _(Msg.WS_SIGN_IN).format(path=shown, status=status),
            http_status=status,
            path=shown,
        )
    if status == 404:
        text = _(Msg.WS_NOT_FOUND).format(path=shown, dialect=conn.dialect)
        return _result("websocket", Status.FAIL, text, http_status=status, path=shown)
    return _result(
        "websocket",
        Status.FAIL,
        _(Msg.WS_REFUSED).format(path=shown, status=status),
        http_status=status,
        path=shown,
    )


def _check_clock(answer: _Answer, now: datetime) -> CheckResult:
    date = answer.headers.get("date")
    try:
        server_time = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        server_time = None
    if server_time is None or server_time.tzinfo is None:
        return _result("clock", Status.WARN, _(Msg.CLOCK_NO_DATE))
    skew = (now - server_time).total_seconds()  # > 0: we are ahead
    size = abs(skew)
    if size < CLOCK_WARN:
        return _result("clock", Status.OK, _(Msg.CLOCK_OK).format(skew=max(size, 1.0)), skew=skew)
    direction = _(Msg.CLOCK_AHEAD) if skew > 0 else _(Msg.CLOCK_BEHIND)
    status = Status.FAIL if size >= CLOCK_FAIL else Status.WARN
    return _result("clock", status, _(Msg.CLOCK_SKEW).format(skew=size, direction=direction), skew=skew)


def _check_token(conn: ConnectionSettings, now: datetime) -> CheckResult | None:
    token = conn.token.get_secret_value()
    if conn.dialect != "org" or not token:
        return None
    from tray_agent.core.protocol.auth import decode_jwt_claims

    try:
        claims = decode_jwt_claims(token)
    except ValueError as exc:
        return _result("token", Status.FAIL, _(Msg.TOKEN_BAD).format(reason=exc))
    if claims.issued_at is not None and (claims.issued_at - now).total_seconds() > CLOCK_WARN:
        seconds = (claims.issued_at - now).total_seconds()
        return _result("token", Status.WARN, _(Msg.TOKEN_FUTURE).format(seconds=seconds))
    if claims.expires_at is not None:
        minutes = (claims.expires_at - now).total_seconds() / 60
        if minutes <= 0:
            return _result("token", Status.FAIL, _(Msg.TOKEN_EXPIRED).format(minutes=-minutes))
        return _result("token", Status.OK, _(Msg.TOKEN_OK).format(minutes=minutes))
    return _result("token", Status.OK, _(Msg.TOKEN_OK).format(minutes=float("inf")))


# ---------------------------------------------------------------------------------------------
# Running and reporting


GROUPS = ("settings", "keyring", "tray", "desktop", "audio", "network")
"""Groups of checks, in report order (tests pick a few)."""


async def collect(
    args: argparse.Namespace,
    env: Mapping[str, str] | None = None,
    *,
    groups: Sequence[str] = GROUPS,
    set_language: bool = False,
) -> list[CheckResult]:
    """Run the checks of ``groups`` concurrently and return their lines in report order.

    Args:
        args: the parsed command line (connection flags, ``--basedir``).
        env: the environment (default ``os.environ``).
        groups: which groups of :data:`GROUPS` to run.
        set_language: switch the process's language to the settings' (the `doctor` command
            does; the app's diagnostics export must not, as the app chose its own).

    Returns:
        Every check's result.
    """
    env = dict(os.environ if env is None else env)
    demo = None
    if getattr(args, "demo", False):
        from tray_agent.demo_launch import apply_demo_flags, start_demo

        demo = await start_demo(getattr(args, "demo_dialect", "dashboard"))
        apply_demo_flags(args, demo)
    try:
        return await _collect(args, env, groups, set_language)
    finally:
        if demo is not None:
            await demo.server.stop()


async def _collect(
    args: argparse.Namespace, env: dict[str, str], groups: Sequence[str], set_language: bool
) -> list[CheckResult]:
    setup = _load(args, env)
    if set_language:  # the report speaks the agent's language (setting, else the OS locale)
        setting = setup.loaded.settings.ui.language
        i18n.set_language(i18n.resolve_language(setting, i18n.languages_from_environ(env)))
    conn = setup.loaded.settings.connection
    jobs: dict[str, Callable[[], Awaitable[list[CheckResult]]]] = {
        "keyring": check_keyring,
        "tray": lambda: check_tray(args, env),
        "desktop": lambda: check_desktop_bus(env),
        "audio": lambda: check_audio(env),
        "network": lambda: check_network(conn, env),
    }
    chosen = [g for g in GROUPS if g in groups and g in jobs]
    outcomes = await asyncio.gather(*(jobs[g]() for g in chosen), return_exceptions=True)
    results = check_settings(setup) if "settings" in groups else []
    for group, outcome in zip(chosen, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            logger.debug("doctor check %s crashed", group, exc_info=outcome)
            results.append(_result(group, Status.WARN, _(Msg.CHECK_CRASHED).format(error=repr(outcome))))
        else:
            results.extend(outcome)
    return results


def exit_code(results: Sequence[CheckResult]) -> int:
    """1 when any check FAILed, else 0."""
    return EXIT_FAILURE if any(r.status is Status.FAIL for r in results) else EXIT_OK


def summary(results: Sequence[CheckResult]) -> str:
    """The report's last line."""
    fail = sum(r.status is Status.FAIL for r in results)
    warn = sum(r.status is Status.WARN for r in results)
    warnings = ngettext("{count} warning", "{count} warnings", warn).format(count=warn)
    if fail:
        failures = ngettext("{count} check", "{count} checks", fail).format(count=fail)
        return _(Msg.SUMMARY_FAIL).format(failures=failures, warnings=warnings)
    return _(Msg.SUMMARY_WARN).format(warnings=warnings) if warn else _(Msg.SUMMARY_OK)


def format_report(results: Sequence[CheckResult]) -> str:
    """The human-readable report: one line per check, then a summary."""
    lines = [f"tray-agent doctor {__version__}"]
    lines += [f"{r.status:<5} {r.check:<14} {r.message}" for r in results]
    lines.append(summary(results))
    return "\n".join(lines) + "\n"


def format_json(results: Sequence[CheckResult]) -> str:
    """The machine-readable report."""
    document = {
        "version": __version__,
        "ok": exit_code(results) == EXIT_OK,
        "summary": summary(results),
        "checks": [r.to_json() for r in results],
    }
    return json.dumps(document, default=str)


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run `tray-agent doctor`: every check, the report on ``out``, exit code 1 on any FAIL.

    Args:
        args: the parsed command line (see :mod:`tray_agent.cli`); ``--json`` picks the format.
        out: where the report goes (default stdout).

    Returns:
        0 when no check failed, else 1.
    """
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.CRITICAL,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_redaction()
    out = out or sys.stdout
    results = asyncio.run(collect(args, set_language=True))
    out.write(format_json(results) + "\n" if getattr(args, "json", False) else format_report(results))
    out.flush()
    return exit_code(results)
