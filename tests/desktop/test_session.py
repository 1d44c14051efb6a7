"""The headless desktop session itself: lifecycle, bus recorder, dunst actions, keyring, audio, tray."""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import pytest

from tests.desktop.conftest import unavailable
from tests.desktop.session import (
    NOTIFICATIONS,
    SECRETS,
    SNI_WATCHER,
    DesktopSession,
    processes_with_marker,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]


def write_tone(path: Path, seconds: float = 0.5, freq: float = 880.0, amplitude: float = 0.5) -> Path:
    rate = 44100
    frames = b"".join(
        struct.pack("<h", int(amplitude * 32767 * math.sin(2 * math.pi * freq * i / rate)))
        for i in range(int(rate * seconds))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return path


def test_session_second_instance_starts_and_stops_leaving_no_process(desktop: DesktopSession) -> None:
    # A second, independent session (with the fake SNI watcher) proves start/stop on its own,
    # and that it does not disturb the shared one.
    other = DesktopSession(sni_watcher="fake")
    marker = str(other.root)
    with other:
        assert other.display
        assert other.display != desktop.display
        assert other.env["DBUS_SESSION_BUS_ADDRESS"] != desktop.env["DBUS_SESSION_BUS_ADDRESS"]
        assert all(other.has_owner(name) for name in (NOTIFICATIONS, SNI_WATCHER, SECRETS))
        assert set(other.pids.values()) <= set(processes_with_marker(marker))
        # The fake watcher records registrations like the real one.
        subprocess.run(
            ["dbus-send", "--session", "--print-reply", f"--dest={SNI_WATCHER}", "/StatusNotifierWatcher",
             f"{SNI_WATCHER}.RegisterStatusNotifierItem", "string:/org/example/Item"],
            env=other.env, check=True, capture_output=True, timeout=10,
        )  # fmt: skip
        assert other.sni_items() == ["/org/example/Item"]
    assert processes_with_marker(marker) == []
    assert not Path(marker).exists()
    assert desktop.has_owner(NOTIFICATIONS)


def test_session_env_is_exported_for_the_test_only_without_qt_platform(desktop: DesktopSession) -> None:
    import os

    assert os.environ["DBUS_SESSION_BUS_ADDRESS"] == desktop.bus_address
    assert os.environ["HOME"] == desktop.env["HOME"]
    assert os.environ["PULSE_SERVER"] == desktop.env["PULSE_SERVER"]
    assert os.environ.get("QT_QPA_PLATFORM") == "offscreen"
    assert desktop.env["QT_QPA_PLATFORM"] == "xcb"


def test_notifications_records_notify_calls_with_urgency_and_actions(desktop: DesktopSession) -> None:
    proc = subprocess.Popen(
        ["notify-send", "-a", "probe", "-u", "critical", "-A", "yes=Take over", "-A", "no=Open",
         "Summary <b>x</b>", "Body & more"],
        env=desktop.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        n = desktop.wait_for_notification(lambda n: n.app_name == "probe")
        assert (n.summary, n.body, n.urgency) == ("Summary <b>x</b>", "Body & more", 2)
        assert n.actions == {"yes": "Take over", "no": "Open"}
        assert [o.id for o in desktop.open_notifications()] == [n.id]

        desktop.press_action("Take over")

        out, _ = proc.communicate(timeout=10)
        assert out.strip() == "yes"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_keyring_round_trip_through_gnome_keyring(desktop: DesktopSession) -> None:
    from keyring.backends import SecretService

    backend = SecretService.Keyring()
    assert backend.priority > 0  # viable: the session's Secret Service answers
    backend.set_password("tray_agent-test", "alice", "s3cr3t")
    assert backend.get_password("tray_agent-test", "alice") == "s3cr3t"
    backend.delete_password("tray_agent-test", "alice")
    assert backend.get_password("tray_agent-test", "alice") is None


def test_keyring_module_api_stores_in_the_secret_service_of_the_session(desktop: DesktopSession) -> None:
    import keyring
    import keyring.core
    from keyring.backends import SecretService

    previous = keyring.get_keyring()
    try:
        keyring.core.init_backend()  # detect again, now with the session's bus in os.environ
        active = keyring.get_keyring()
        chain = getattr(active, "backends", [active])  # keyring may wrap it in its ChainerBackend
        assert any(isinstance(b, SecretService.Keyring) for b in chain), chain
        keyring.set_password("tray_agent-test", "bob", "hunter2")
        # Read it back straight from gnome-keyring, not through whatever keyring chose.
        assert SecretService.Keyring().get_password("tray_agent-test", "bob") == "hunter2"
        keyring.delete_password("tray_agent-test", "bob")
    finally:
        keyring.set_keyring(previous)


def test_audio_tone_reaches_the_null_sink(desktop: DesktopSession, tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "tone.wav")
    recording = desktop.start_recording()
    desktop.play(tone)
    capture = recording.stop()
    assert capture.peak > 0.2
    assert capture.rms > 0.05


def test_audio_shipped_escalation_sound_reaches_the_null_sink(desktop: DesktopSession) -> None:
    wav = REPO / "resources" / "sounds" / "escalation.wav"
    if not wav.exists():
        unavailable(f"{wav.relative_to(REPO)} not generated yet (tools/make_sounds.py)")
    recording = desktop.start_recording()
    desktop.play(wav)
    assert recording.stop().peak > 0.05


def test_screenshot_writes_a_png(desktop: DesktopSession, tmp_path: Path) -> None:
    if shutil.which("import") is None:
        unavailable("screenshots: missing import (imagemagick)")
    shot = desktop.screenshot(tmp_path / "root.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


TRAY_SCRIPT = textwrap.dedent(
    """
    import sys
    from PySide6.QtGui import QColor, QIcon, QPixmap
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon

    app = QApplication(sys.argv)
    print("available", QSystemTrayIcon.isSystemTrayAvailable(), flush=True)
    pixmap = QPixmap(32, 32)
    pixmap.fill(QColor("teal"))
    tray = QSystemTrayIcon(QIcon(pixmap))
    tray.setToolTip("tray_agent test")
    tray.show()
    tray.showMessage("Tray title", "Tray body", QSystemTrayIcon.MessageIcon.Information, 10000)
    sys.exit(app.exec())
    """
)


def test_tray_icon_registers_with_the_watcher_and_shows_a_message(
    desktop: DesktopSession, tmp_path: Path
) -> None:
    script = tmp_path / "tray.py"
    script.write_text(TRAY_SCRIPT)
    before = set(desktop.sni_items())
    with subprocess.Popen(
        [sys.executable, str(script)], env=desktop.env, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "available True"
            items = wait_until(lambda: set(desktop.sni_items()) - before, 10, "a registered SNI item")
            assert len(items) == 1
            n = desktop.wait_for_notification(lambda n: n.summary == "Tray title", timeout=10)
            assert n.body == "Tray body"
        finally:
            proc.terminate()
            proc.wait(10)
    if proc.returncode not in (0, -15):
        pytest.fail(f"tray script exited with {proc.returncode}")
