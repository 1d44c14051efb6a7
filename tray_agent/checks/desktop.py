"""The doctor's desktop checks: the tray and the bundled resources, the session bus, audio.

PySide6 is never imported here: the tray check runs the app's ``--self-test`` in a child process,
so that it sees the real desktop (and a Qt that cannot start cannot take the doctor down).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from tray_agent.checks.results import CheckResult, Msg, Status, check_result
from tray_agent.core.i18n import _

SELF_TEST_TIMEOUT = 60.0  # seconds for the app's self-test (Qt start-up on a cold disk)
DBUS_TIMEOUT = 5.0

NOTIFICATIONS = "org.freedesktop.Notifications"
SNI_WATCHER = "org.kde.StatusNotifierWatcher"


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
        return [check_result("tray", Status.WARN, _(Msg.SELF_TEST_NO_QT).format(detail=detail[:200]))]
    results = []
    if missing or returncode != 0:
        results.append(
            check_result(
                "resources", Status.FAIL, _(Msg.SELF_TEST_MISSING).format(missing="; ".join(missing))
            )
        )
    else:
        results.append(check_result("resources", Status.OK, _(Msg.SELF_TEST_OK)))
    if tray.startswith("available"):
        results.append(
            check_result("tray", Status.OK, _(Msg.TRAY_OK).format(platform=platform), platform=platform)
        )
    else:
        results.append(
            check_result(
                "tray", Status.WARN, _(Msg.TRAY_MISSING).format(platform=platform), platform=platform
            )
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
        return [check_result("tray", Status.WARN, _(Msg.SELF_TEST_NO_QT).format(detail=exc))]
    try:
        out, err = await asyncio.wait_for(proc.communicate(), SELF_TEST_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # our own child, by its handle
        await proc.wait()
        return [check_result("tray", Status.WARN, _(Msg.SELF_TEST_TIMEOUT).format(seconds=SELF_TEST_TIMEOUT))]
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
        return [check_result("notifications", Status.OK, _(Msg.NOT_LINUX))]
    address = env.get("DBUS_SESSION_BUS_ADDRESS", "")
    if not address:
        detail = "DBUS_SESSION_BUS_ADDRESS is not set"
        return [
            check_result("sni", Status.WARN, _(Msg.NO_BUS).format(detail=detail)),
            check_result("notifications", Status.WARN, _(Msg.NOTIFY_MISSING).format(detail=detail)),
        ]
    try:
        from dbus_fast.aio import MessageBus
    except ImportError as exc:
        return [check_result("notifications", Status.WARN, _(Msg.NOTIFY_MISSING).format(detail=exc))]
    try:
        bus = await asyncio.wait_for(MessageBus(bus_address=address).connect(), DBUS_TIMEOUT)
    except Exception as exc:  # any transport or auth error: report it
        detail = f"{type(exc).__name__}: {exc}"
        return [
            check_result("sni", Status.WARN, _(Msg.NO_BUS).format(detail=detail)),
            check_result("notifications", Status.WARN, _(Msg.NOTIFY_MISSING).format(detail=detail)),
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
        return check_result("sni", Status.WARN, _(Msg.NO_BUS).format(detail=exc))
    if not has_owner:
        return check_result("sni", Status.WARN, _(Msg.SNI_MISSING), watcher=False)
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
    return check_result("sni", status, _(Msg.SNI_OK).format(detail=detail), watcher=True, host=host)


async def _check_notifications(bus: Any) -> CheckResult:
    path = "/org/freedesktop/Notifications"
    try:
        name, vendor, version, _spec = await _dbus_call(
            bus, NOTIFICATIONS, path, NOTIFICATIONS, "GetServerInformation"
        )
        (capabilities,) = await _dbus_call(bus, NOTIFICATIONS, path, NOTIFICATIONS, "GetCapabilities")
    except Exception as exc:
        return check_result(
            "notifications", Status.WARN, _(Msg.NOTIFY_MISSING).format(detail=exc), server=None
        )
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
    return check_result("notifications", status, text, server=name, version=version, capabilities=caps)


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
            return [check_result("audio", Status.WARN, _(Msg.AUDIO_MISSING).format(problem=sound.problem))]
        player = sound.player
        kind = str(player.kind) if player is not None else "?"
        info = await asyncio.to_thread(_pactl_info, env)
        if info is False:
            return [
                check_result("audio", Status.WARN, _(Msg.AUDIO_NO_SERVER).format(player=kind), player=kind)
            ]
        if not isinstance(info, tuple):
            info = None
        server = _(Msg.AUDIO_SERVER).format(name=info[0], sink=info[1]) if info else ""
        return [
            check_result(
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
