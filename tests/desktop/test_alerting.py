"""The app for real in the headless desktop: SNI tray, toasts in dunst, Take over, DND, sound, screenshots.

The app runs as a subprocess (``python -m tray_agent``) with the session's environment (xcb,
D-Bus, PulseAudio), against a ``tray-agent demo-server`` subprocess on 127.0.0.1 port 0 whose
control API injects customer events. Screenshots of the status window and the open tray menu
(test hook ``TRAY_AGENT_TEST_SHOW_MENU=1``, see tray_agent/ui/testing_hooks.py) go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.desktop.session import REPO, DesktopSession, stop_process, wait_until

ARTIFACTS = REPO / "test-artifacts"
APP_START_TIMEOUT = 20.0
ALL_DAY_QUIET = '[{"days": [1, 2, 3, 4, 5, 6, 7], "start": "00:00", "end": "00:00"}]'


@dataclass
class DemoServerProcess:
    process: subprocess.Popen[str]
    url: str
    control_url: str
    agent: dict[str, Any]
    db: Path

    def control(self, action: str, **params: Any) -> dict[str, Any]:
        body = json.dumps({"action": action, **params}).encode()
        request = urllib.request.Request(
            self.control_url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            result: dict[str, Any] = json.loads(answer.read())
        return result

    def assigned_to(self, ref: str) -> str:
        """The id of the agent the server has assigned this customer to ("" if nobody)."""
        page_id, _, customer_id = ref.partition("/")
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            row = db.execute(
                "SELECT agent_id FROM customers WHERE page_id = ? AND customer_id = ? AND is_assigned = 1",
                (page_id, customer_id),
            ).fetchone()
        return str(row[0]) if row else ""


@pytest.fixture(scope="module")
def demo_server(
    tmp_path_factory: pytest.TempPathFactory, desktop: DesktopSession
) -> Iterator[DemoServerProcess]:
    db = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-m", "tray_agent", "demo-server", "--port", "0", "--db", str(db)],
        env={**desktop.env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        yield DemoServerProcess(process, info["url"], info["control"], info["agents"][0], db)
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()


@dataclass
class AppProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = APP_START_TIMEOUT) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the app exited with {self.process.returncode}:\n{self.log_text()}")
            return text in self.log_text()

        wait_until(seen, timeout, f"{text!r} in the app's log")


@pytest.fixture
def launch(
    desktop: DesktopSession, demo_server: DemoServerProcess, tmp_path: Path
) -> Iterator[Callable[..., AppProcess]]:
    apps: list[AppProcess] = []

    def start(
        *extra: str, password: str | None = None, server: str | None = None, email: str | None = None
    ) -> AppProcess:
        agent = demo_server.agent
        basedir = tmp_path / f"app{len(apps)}"
        env = {
            **desktop.env,
            "PYTHONPATH": str(REPO),
            "TRAY_AGENT_PASSWORD": agent["password"] if password is None else password,
            "TRAY_AGENT_TEST_SHOW_MENU": "1",
        }
        argv = [
            sys.executable, "-m", "tray_agent", "--basedir", str(basedir),
            "--dialect", "dashboard", "--server", server or demo_server.url,
            "--company", agent["tenant"], "--email", email or agent["email"], *extra,
        ]  # fmt: skip
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        app = AppProcess(process, basedir / "log" / "tray-agent.log")
        apps.append(app)
        app.wait_for_log("Test hook: menu shown")
        return app

    yield start
    for app in apps:
        stop_process(app.process)
        assert "Stopped (exit code 0)" in app.log_text() or app.process.returncode == 0


def screenshot(desktop: DesktopSession, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    desktop.screenshot(ARTIFACTS / f"tray-{name}.png")


def peak_of(path: Path) -> float:
    import array

    data = array.array("h")
    raw = path.read_bytes()
    data.frombytes(raw[: len(raw) - len(raw) % 2])
    return max((abs(s) for s in data), default=0) / 32768


def test_alerting_toasts_take_over_sound_and_screenshot(
    desktop: DesktopSession, demo_server: DemoServerProcess, launch: Callable[..., AppProcess]
) -> None:
    # Messages in conversations the AI handles are quiet by default (issue 14); turned on, they
    # come as one low-urgency summary at most once a minute.
    app = launch("--set", "alerts.ai_messages=true")
    app.wait_for_log("Connection: connected")
    assert desktop.sni_items(), "the tray icon is not registered with the StatusNotifierWatcher"

    demo_server.control("customer_writes", name="Ann Lee", text="Where is my parcel?")
    message = desktop.wait_for_notification(lambda n: "conversations the AI is handling" in n.summary)
    assert message.summary == "1 new message in conversations the AI is handling"
    assert message.body == "Ann Lee"
    assert message.urgency == 0

    recording = desktop.start_recording()
    try:
        result = demo_server.control("ask_for_human", name="<b>Bob</b> & Co", text="<i>Now</i> & please")
        ref = result["customer"]["ref"]
        escalation = desktop.wait_for_notification(lambda n: "asks for a human" in n.summary)
        # Summary is plain text by the spec (the server escapes it); the body is markup, escaped.
        assert escalation.summary == "<b>Bob</b> & Co asks for a human"
        assert escalation.body == "&lt;i&gt;Now&lt;/i&gt; &amp; please"
        assert escalation.urgency == 2
        assert "Take over" in escalation.actions.values()
        wait_until(lambda: peak_of(recording.path) > 0.05, 10.0, "the escalation sound on the null sink")
    finally:
        recording.stop()

    screenshot(desktop, "connected-badge")

    desktop.press_action("Take over", escalation)
    me = demo_server.agent["user_id"]
    wait_until(lambda: demo_server.assigned_to(ref) == me, 10.0, "the take-over on the server")
    app.wait_for_log(f"Toast escalation:{ref}: take_over")


def test_alerting_burst_is_coalesced(
    desktop: DesktopSession, demo_server: DemoServerProcess, launch: Callable[..., AppProcess]
) -> None:
    app = launch("--set", "alerts.ai_messages=true")
    app.wait_for_log("Connection: connected")
    demo_server.control("burst", count=200, rate=400, customers=20, wait=True)
    desktop.wait_for_notification(lambda n: "conversations the AI is handling" in n.summary, timeout=10.0)
    messages = [n for n in desktop.notifications() if n.urgency != 2]
    # 200 messages from 20 customers the AI handles: one summary at once, the next a minute later
    # at the earliest (the exact rate is the policy's unit tests' job, on a fake clock). Never a
    # toast per message or per customer.
    assert len(messages) <= 2, [n.summary for n in messages]


def test_alerting_dnd_silences_messages_not_escalations(
    desktop: DesktopSession, demo_server: DemoServerProcess, launch: Callable[..., AppProcess]
) -> None:
    app = launch("--set", f"alerts.quiet_hours={ALL_DAY_QUIET}")
    app.wait_for_log("Connection: connected")
    demo_server.control("customer_writes", name="Quiet Quinn", text="hello?")
    demo_server.control("ask_for_human", name="Urgent Uma", text="help!")
    desktop.wait_for_notification(lambda n: n.summary == "Urgent Uma asks for a human")
    summaries = [n.summary for n in desktop.notifications()]
    assert not [s for s in summaries if "Quiet Quinn" in s], summaries
    screenshot(desktop, "dnd")


def test_alerting_auth_and_offline_states(desktop: DesktopSession, launch: Callable[..., AppProcess]) -> None:
    # A fresh account: no session cookie from an earlier test in the keyring.
    app = launch(email="nobody@example.test", password="wrong password")
    app.wait_for_log("Connection: auth_required")
    screenshot(desktop, "auth")
    app.process.terminate()
    app.process.wait(10)

    app = launch(server="http://127.0.0.1:9")  # nothing listens on the discard port
    app.wait_for_log("Connection: reconnecting")
    screenshot(desktop, "reconnecting")


def test_alerting_self_test(desktop: DesktopSession, tmp_path: Path) -> None:
    env = {**desktop.env, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "tray_agent", "--self-test", "--basedir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "tray: available, icon shown" in out.stdout
    assert "result: ok" in out.stdout
