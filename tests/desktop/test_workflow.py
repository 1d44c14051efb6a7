"""One customer's whole life in the real app, per dialect: escalation to resolved (issue 14).

The app runs as a subprocess (``python -m tray_agent``) in the headless desktop session, signed
in to a ``tray-agent demo-server --dialect <org|dashboard>`` subprocess whose control API makes
customers write and ask for a human. Everything is observed from outside the app, as an agent
(or a desktop) would see it:

* toasts: every ``Notify`` / ``CloseNotification`` call on the session bus (the monitor of
  :mod:`tests.desktop.session`), and "Take over" pressed in dunst's context menu;
* the tray: the StatusNotifierItem's ``ToolTip`` and its exported menu (``com.canonical.dbusmenu``,
  read the way a panel does: ``AboutToShow`` then ``GetLayout``);
* the inbox's tab titles and the tray's badge: the test hook ``TRAY_AGENT_TEST_LOG_COUNTS=1``
  logs them after every flush (see tray_agent/ui/testing_hooks.py); there is no other way to read them
  from outside;
* the chat window: opened with a ``tray-agent://open/<conversation>`` link, typed into with
  XTEST (reply, Enter, Ctrl+Shift+D to resolve, Ctrl+W to close);
* the server: its SQLite database, read-only.

"No reminder afterwards" is checked against a witness: a second customer asks for a human
after the first is resolved; its reminder (``alerts.reminder_after`` = 30 s, the minimum) comes
later than the first customer's would have, so once it is on screen the first customer had
every chance to get one.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.desktop.conftest import unavailable
from tests.desktop.session import REPO, DesktopSession, Notification, stop_process, wait_until
from tests.desktop.test_alerting import AppProcess, DemoServerProcess
from tests.desktop.test_screenshots import press_keys, viewable_windows, wait_for_window
from tray_agent.core.deeplink import build_link

SNI_WATCHER = "org.kde.StatusNotifierWatcher"
SNI_ITEM = "org.kde.StatusNotifierItem"
DBUSMENU = "com.canonical.dbusmenu"
STEP_TIMEOUT = 20.0
REMINDER_TIMEOUT = 75.0  # reminder_after is 30 s at the least, counted from the escalation
REPLY = "thanks we are on it"
COUNTS_LINE = re.compile(r"Counts: waiting=(\d+) mine=(\d+) badge=(\S+) tabs=(.*)$")


# ---------------------------------------------------------------------- the demo server


@dataclass
class Server(DemoServerProcess):
    dialect: str = "dashboard"
    extra: dict[str, str] | None = None

    def query(self, sql: str, *args: Any) -> tuple[Any, ...] | None:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            row: tuple[Any, ...] | None = db.execute(sql, args).fetchone()
        return row

    def handler(self, ref: str) -> str:
        """The user id of the human the server has this customer assigned to ("" if nobody)."""
        if self.dialect == "org":
            row = self.query(
                "SELECT a.user_id FROM chats c JOIN agents a ON a.id = c.assigned_agent_id "
                "WHERE c.id = ? AND c.status = 'assigned' AND c.handled_by = 'human'",
                ref,
            )
            return str(row[0] or "") if row else ""
        return self.assigned_to(ref)

    def bot_stopped(self, ref: str) -> bool:
        """Dashboard: whether the bot is stopped for this customer (``stop``)."""
        page_id, _, customer_id = ref.partition("/")
        row = self.query(
            "SELECT stop FROM customers WHERE page_id = ? AND customer_id = ?", page_id, customer_id
        )
        return bool(row and row[0])

    def closed(self, ref: str) -> bool:
        """Resolved (org), or released with the bot back on (dashboard)."""
        if self.dialect == "org":
            row = self.query("SELECT status FROM chats WHERE id = ?", ref)
            return bool(row and row[0] == "resolved")
        return not self.handler(ref) and not self.bot_stopped(ref)

    def has_agent_reply(self, ref: str, text: str) -> bool:
        if self.dialect == "org":
            row = self.query(
                "SELECT 1 FROM messages WHERE chat_id = ? AND sender_type = 'agent' AND content = ?",
                ref,
                text,
            )
        else:
            page_id, _, customer_id = ref.partition("/")
            row = self.query(
                "SELECT 1 FROM messages WHERE page_id = ? AND chat_id = ? AND is_human = 1 AND message = ?",
                page_id, customer_id, text,
            )  # fmt: skip
        return row is not None

    def connection_args(self) -> list[str]:
        agent = self.agent
        argv = ["--dialect", self.dialect, "--server", self.url, "--email", agent["email"]]
        if self.dialect == "org":
            extra = self.extra or {}
            return [
                *argv, "--org", agent["tenant"],
                "--supabase-url", extra.get("supabase_url", self.url),
                "--supabase-key", extra.get("supabase_anon_key", ""),
            ]  # fmt: skip
        return [*argv, "--company", agent["tenant"]]


@pytest.fixture(params=["org", "dashboard"])
def server(request: pytest.FixtureRequest, desktop: DesktopSession, tmp_path: Path) -> Iterator[Server]:
    db = tmp_path / "demo.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-m", "tray_agent", "demo-server", "--dialect", request.param,
         "--port", "0", "--db", str(db)],
        env={**desktop.env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        yield Server(
            process,
            info["url"],
            info["control"],
            info["agents"][0],
            db,
            request.param,
            info.get("extra") or {},
        )
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()


# ---------------------------------------------------------------------- the app


class App(AppProcess):
    def counts(self) -> tuple[int, int, str, tuple[int, ...]] | None:
        """The last ``Counts:`` line: waiting, mine, the badge ("-" for none), the tabs' counts."""
        lines = [m for m in map(COUNTS_LINE.search, self.log_text().splitlines()) if m]
        if not lines:
            return None
        last = lines[-1]
        tabs = tuple(int(n) for n in re.findall(r"\((\d+)\)", last.group(4)))
        return int(last.group(1)), int(last.group(2)), last.group(3), tabs

    def all_tab(self) -> int | None:
        """The count in the third tab's title (All customers / All active)."""
        counts = self.counts()
        return counts[3][2] if counts is not None and len(counts[3]) > 2 else None


@pytest.fixture
def app(
    desktop: DesktopSession, server: Server, tmp_path: Path
) -> Iterator[tuple[App, list[str], dict[str, str]]]:
    env = {
        **desktop.env,
        "PYTHONPATH": str(REPO),
        "TRAY_AGENT_PASSWORD": server.agent["password"],
        "TRAY_AGENT_TEST_LOG_COUNTS": "1",
    }
    basedir = tmp_path / "app"
    argv = [
        sys.executable, "-m", "tray_agent", "--basedir", str(basedir), *server.connection_args(),
        "--set", "ui.start_hidden=false",  # the inbox is shown: its tab titles count
        "--set", "alerts.reminder_after=0.5", "--set", "alerts.reminder_backoff=1",
        "--set", "alerts.reminder_max_interval=1",
        "--set", "alerts.ai_messages=true",  # message toasts on: one escalation must still be one toast
    ]  # fmt: skip
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    running = App(process, basedir / "log" / "tray-agent.log")
    try:
        yield running, argv, env
    finally:
        stop_process(process)
    assert "Stopped (exit code 0)" in running.log_text() or process.returncode == 0, running.log_text()


def open_link(argv: list[str], env: dict[str, str], conversation: str) -> None:
    """A second launch with a ``tray-agent://`` link, handed over to the running app."""
    subprocess.run([*argv, build_link(conversation)], env=env, timeout=30, check=True, capture_output=True)


# ---------------------------------------------------------------------- X input


def keys_of(text: str) -> list[str]:
    """The X keysyms that type ``text`` (lower case letters, digits and spaces)."""
    assert re.fullmatch(r"[a-z0-9 ]*", text), text
    return ["space" if c == " " else c for c in text]


# ---------------------------------------------------------------------- the tray over D-Bus


@dataclass(frozen=True)
class TrayView:
    tooltip: str
    menu: tuple[str, ...]


async def _read_tray(pid: int) -> TrayView:
    from dbus_fast.aio import MessageBus
    from dbus_fast.errors import DBusError

    bus = await MessageBus().connect()
    try:

        async def get(service: str, path: str, interface: str, name: str) -> Any:
            introspection = await bus.introspect(service, path)
            props = bus.get_proxy_object(service, path, introspection).get_interface(
                "org.freedesktop.DBus.Properties"
            )
            return (await props.call_get(interface, name)).value  # type: ignore[attr-defined]

        items = await get(SNI_WATCHER, "/StatusNotifierWatcher", SNI_WATCHER, "RegisteredStatusNotifierItems")
        dbus = bus.get_proxy_object(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            await bus.introspect("org.freedesktop.DBus", "/org/freedesktop/DBus"),
        ).get_interface("org.freedesktop.DBus")
        ours = []
        for item in items:  # earlier tests' apps may still be listed: ours is the one of our process
            name = item.partition("/")[0]
            try:
                owner_pid = await dbus.call_get_connection_unix_process_id(name)  # type: ignore[attr-defined]
            except DBusError:  # a stale entry: its owner has gone
                continue
            if owner_pid == pid:
                ours.append(item)
        assert ours, f"no StatusNotifierItem of process {pid} among {items}"
        service, slash, path = ours[-1].partition("/")
        path = slash + path if slash else "/StatusNotifierItem"
        _icon, _pixmaps, title, text = await get(service, path, SNI_ITEM, "ToolTip")
        menu_path = await get(service, path, SNI_ITEM, "Menu")
        introspection = await bus.introspect(service, menu_path)
        menu = bus.get_proxy_object(service, menu_path, introspection).get_interface(DBUSMENU)
        await menu.call_about_to_show(0)  # type: ignore[attr-defined]
        _revision, layout = await menu.call_get_layout(0, -1, ["label"])  # type: ignore[attr-defined]
        labels: list[str] = []

        def walk(node: list[Any]) -> None:
            _id, props, children = node
            if "label" in props:
                labels.append(str(props["label"].value))
            for child in children:
                walk(child.value)

        walk(layout)
        return TrayView(f"{title}\n{text}", tuple(labels))
    finally:
        bus.disconnect()


def read_tray(app: App) -> TrayView:
    """The app's tray icon's tooltip and menu labels, as a panel reads them."""
    return asyncio.run(_read_tray(app.process.pid))


def tray_waiting(view: TrayView) -> tuple[int, int]:
    """The waiting count in the tooltip and in the menu (0 for "Nobody is waiting")."""

    def count(texts: str, pattern: str) -> int:
        if "Nobody is waiting" in texts:
            return 0
        match = re.search(pattern, texts)
        assert match, texts
        return int(match.group(1))

    return (
        count(view.tooltip, r"(\d+) customers? waiting"),
        count("\n".join(view.menu), r"Waiting customers \((\d+)\)"),
    )


# ---------------------------------------------------------------------- assertions


def expect_counts(app: App, waiting: int, mine: int) -> None:
    """Tray badge, tooltip, menu and the inbox's Waiting/Mine tabs all show these counts."""
    badge = str(waiting) if waiting else "-"

    def agree() -> bool:
        counts = app.counts()
        return (
            counts is not None and counts[:3] == (waiting, mine, badge) and counts[3][:2] == (waiting, mine)
        )

    try:
        wait_until(agree, STEP_TIMEOUT, f"counts waiting={waiting} mine={mine}")
    except TimeoutError:
        raise AssertionError(f"last counts {app.counts()}, expected waiting={waiting} mine={mine}") from None
    view = read_tray(app)
    assert tray_waiting(view) == (waiting, waiting), view


def about(name: str) -> Callable[[Notification], bool]:
    return lambda n: name in n.summary or name in n.body


def needs_x_tools() -> None:
    missing = [tool for tool in ("xwininfo",) if shutil.which(tool) is None]
    missing += [f"lib{lib}" for lib in ("X11", "Xtst") if ctypes.util.find_library(lib) is None]
    if missing:
        unavailable(f"workflow: missing {', '.join(missing)} (install tools/desktop-packages.txt)")


# ---------------------------------------------------------------------- the tests


def test_workflow_escalation_take_over_from_toast_reply_resolve(
    desktop: DesktopSession, server: Server, app: tuple[App, list[str], dict[str, str]]
) -> None:
    needs_x_tools()
    running, argv, env = app
    running.wait_for_log("Connection: connected")
    me = server.agent["user_id"]
    name = "Nora Ortega"

    # Escalation -> one critical toast with Take over; every count says 1 waiting.
    ref = server.control("ask_for_human", name=name, text="my order never arrived")["customer"]["ref"]
    escalation = desktop.wait_for_notification(
        lambda n: n.summary == f"{name} asks for a human", STEP_TIMEOUT
    )
    assert escalation.urgency == 2
    assert "Take over" in escalation.actions.values()
    expect_counts(running, waiting=1, mine=0)

    # Take over from the toast: the server has the customer with me; the toast is withdrawn.
    desktop.press_action("Take over", escalation)
    wait_until(lambda: server.handler(ref) == me, STEP_TIMEOUT, "the take-over on the server")
    wait_until(lambda: escalation.id in desktop.closed_ids(), STEP_TIMEOUT, "the toast to close")
    assert escalation.id in desktop.close_requests(), "closed, but not by the app"
    assert not [n for n in desktop.open_notifications() if about(name)(n)], desktop.open_notifications()
    expect_counts(running, waiting=0, mine=1)

    # Reply in the chat window (opened by a link), then resolve it there (Ctrl+Shift+D).
    open_link(argv, env, ref)
    chat = wait_for_window(desktop, running, lambda t: name in t, "the chat window")
    press_keys(desktop, chat, *keys_of(REPLY), "Return")
    wait_until(lambda: server.has_agent_reply(ref, REPLY), STEP_TIMEOUT, "the reply on the server")
    press_keys(desktop, chat, "Control_L+Shift_L+d")
    wait_until(lambda: server.closed(ref), STEP_TIMEOUT, "the resolve on the server")
    press_keys(desktop, chat, "Control_L+w")  # not looking at it any more: reminders would show
    wait_until(
        lambda: chat.id not in {w.id for w in viewable_windows(desktop)},
        STEP_TIMEOUT,
        "the chat window to close",
    )
    expect_counts(running, waiting=0, mine=0)

    # A witness asks for a human now: its reminder comes after Nora's would have been due.
    witness = "Will Witness"
    server.control("ask_for_human", name=witness, text="hello")
    desktop.wait_for_notification(lambda n: n.summary == f"{witness} asks for a human", STEP_TIMEOUT)
    desktop.wait_for_notification(
        lambda n: witness in n.summary and n.summary != f"{witness} asks for a human", REMINDER_TIMEOUT
    )
    # One escalation, one toast: no message toast beside it, no reminder afterwards.
    assert [n.summary for n in desktop.notifications() if about(name)(n)] == [escalation.summary]


@pytest.mark.parametrize("server", ["dashboard"], indirect=True)  # org: no bot to stop first
def test_workflow_dashboard_take_over_from_the_ai(
    desktop: DesktopSession, server: Server, app: tuple[App, list[str], dict[str, str]]
) -> None:
    # In the app itself, not through `tray-agent listen`: the dashboard server keeps one
    # socket per agent for its broadcasts, so a second run of the same agent would take the
    # app's broadcasts away.
    needs_x_tools()
    running, argv, env = app
    running.wait_for_log("Connection: connected")
    me = server.agent["user_id"]
    name = "Ada Ai"
    ref = server.control("customer_writes", name=name, text="what are your hours")["customer"]["ref"]
    server.control("bot_replies", customer=ref, text="We open at nine.")
    wait_until(lambda: running.all_tab() == 1, STEP_TIMEOUT, "the AI's customer in the All customers tab")
    assert not server.bot_stopped(ref)

    open_link(argv, env, ref)
    chat = wait_for_window(desktop, running, lambda t: name in t, "the chat window")
    press_keys(desktop, chat, "Control_L+Shift_L+t")
    wait_until(lambda: server.handler(ref) == me, STEP_TIMEOUT, "the take-over on the server")
    assert server.bot_stopped(ref)  # the bot was stopped first, as the web dashboard does
    expect_counts(running, waiting=0, mine=1)

    press_keys(desktop, chat, "Control_L+Shift_L+d")  # resolve: released, the bot takes over again
    wait_until(lambda: server.closed(ref), STEP_TIMEOUT, "the release and the bot back on the server")
    expect_counts(running, waiting=0, mine=0)
