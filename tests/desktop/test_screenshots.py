"""Screenshots of the inbox and a chat window, in English and Indonesian, light and dark, for real.

The app runs as a subprocess (``python -m tray_agent``) in the headless desktop session (Xvfb,
D-Bus, dunst), signed in to a ``tray-agent demo-server`` subprocess (dashboard dialect) seeded
through its control API and a ``tray-agent listen`` run of the same agent: two customers waiting
for a human, two the AI is handling (they write again once the app is connected: the dashboard
resync lists only who waits for a human), and one the agent has taken over and answered (a chat
of four messages). For each language and theme (``--set ui.language=... --set ui.theme=...``)
the app starts with its inbox shown (``ui.start_hidden=false``); the test types Tab, Right, Right
into it (XTEST) to show the "All customers" list, captures it, then a second launch with a
``tray-agent://open/<conversation>`` link hands the chat over to the running app, and the chat
window is captured. Each window is captured on its own with ImageMagick ``import -window <id>``,
the id found by its title with ``xwininfo -root -children``, after checking that nothing is
stacked over it.

The PNGs go to ``tmp_path``, or to the directory named by ``TRAY_AGENT_SAVE_SCREENSHOTS``
(relative to the repository). To refresh the ones the README shows (about 20 s)::

    TRAY_AGENT_SAVE_SCREENSHOTS=docs/screenshots python -m pytest tests/desktop/test_screenshots.py

Each is named ``<window>-<language>-<theme>.png`` (``inbox-en-light.png``, ``chat-id-dark.png``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.desktop.conftest import unavailable
from tests.desktop.session import REPO, DesktopSession, wait_until
from tests.desktop.test_alerting import AppProcess, DemoServerProcess
from tests.desktop.test_alerting import demo_server as demo_server  # the fixture
from tray_agent.core.deeplink import build_link
from tray_agent.core.i18n import load_translations

SAVE_ENV = "TRAY_AGENT_SAVE_SCREENSHOTS"
LANGUAGES = ("en", "id")
THEMES = ("light", "dark")
WINDOW_TIMEOUT = 20.0
MIN_INBOX = (600, 400)  # px: smaller would cut the inbox's columns
MIN_CHAT = (360, 400)  # px
MIN_COLOURS = 64  # a real window with text and icons has far more; a blank one has 1 or 2
CHAT_CUSTOMER = "Sarah Johnson"
WINDOW_LINE = re.compile(
    r'^\s*(0x[0-9a-f]+) (?:"(.*)"|\(has no name\)): .*?\s(\d+)x(\d+)\+-?\d+\+-?\d+\s+\+(-?\d+)\+(-?\d+)\s*$'
)


@dataclass(frozen=True)
class Window:
    id: str
    title: str
    width: int
    height: int
    x: int
    y: int

    def overlaps(self, other: Window) -> bool:
        return (
            self.x < other.x + other.width
            and other.x < self.x + self.width
            and self.y < other.y + other.height
            and other.y < self.y + self.height
        )


@dataclass(frozen=True)
class Shot:
    path: Path
    window: Window
    width: int
    height: int
    colours: int
    mean: float  # mean luminance, 0.0 (black) to 1.0 (white)


@dataclass(frozen=True)
class Seeded:
    chat: str  # the conversation shown in the chat window (taken over by the agent)
    ai: tuple[str, ...]  # conversations the AI handles (listed once they write while connected)


def out_dir(tmp_path: Path) -> Path:
    """Where the PNGs go: ``$TRAY_AGENT_SAVE_SCREENSHOTS`` (relative to the repository), else tmp_path."""
    target = os.environ.get(SAVE_ENV, "")
    path = (REPO / target) if target else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def viewable_windows(desktop: DesktopSession) -> list[Window]:
    """The mapped top-level windows, topmost first (xwininfo; there is no window manager)."""
    tree = subprocess.run(
        ["xwininfo", "-display", desktop.display, "-root", "-children"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    found = []
    for line in tree.splitlines():
        match = WINDOW_LINE.match(line)
        if not match:
            continue
        info = subprocess.run(
            ["xwininfo", "-display", desktop.display, "-id", match.group(1)],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout  # fmt: skip
        if "Map State: IsViewable" in info:
            width, height, x, y = (int(match.group(i)) for i in range(3, 7))
            found.append(Window(match.group(1), match.group(2) or "", width, height, x, y))
    return found


def wait_for_window(
    desktop: DesktopSession, app: AppProcess, matches: Callable[[str], bool], what: str
) -> Window:
    """The first shown window whose title ``matches``; fails if the app exits first."""

    def find() -> Window | None:
        if app.process.poll() is not None:
            raise AssertionError(f"the app exited with {app.process.returncode}:\n{app.log_text()}")
        return next((w for w in viewable_windows(desktop) if matches(w.title)), None)

    try:
        window: Window = wait_until(find, WINDOW_TIMEOUT, what, interval=0.2)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; windows: {viewable_windows(desktop)}\n{app.log_text()}") from None
    return window


def press_keys(desktop: DesktopSession, window: Window, *strokes: str) -> None:
    """Focus ``window`` and type ``strokes`` through XTEST: keysyms, or chords ("Control_L+w").

    There is no window manager to give the focus: ``XSetInputFocus`` does it. Returns once the
    X server has the events (``XSync``); the app handles them on its own time.
    """
    xlib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    xtst = ctypes.CDLL(ctypes.util.find_library("Xtst") or "libXtst.so.6")
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XSetInputFocus.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_ulong]
    xlib.XStringToKeysym.restype = ctypes.c_ulong
    xlib.XStringToKeysym.argtypes = [ctypes.c_char_p]
    xlib.XKeysymToKeycode.restype = ctypes.c_ubyte
    xlib.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    xlib.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
    display = xlib.XOpenDisplay(desktop.display.encode())
    assert display, f"cannot open the X display {desktop.display}"

    def code(key: str) -> int:
        keycode = int(xlib.XKeysymToKeycode(display, xlib.XStringToKeysym(key.encode())))
        assert keycode, f"no keycode for {key!r}"
        return keycode

    try:
        xlib.XSetInputFocus(display, int(window.id, 16), 2, 0)  # RevertToParent, CurrentTime
        for stroke in strokes:
            keys = [code(k) for k in stroke.split("+")]
            for keycode in keys:
                xtst.XTestFakeKeyEvent(display, keycode, 1, 0)
            for keycode in reversed(keys):
                xtst.XTestFakeKeyEvent(display, keycode, 0, 0)
        xlib.XSync(display, 0)
    finally:
        xlib.XCloseDisplay(display)


def grab_pixels(desktop: DesktopSession, window: Window) -> bytes:
    return subprocess.run(
        ["import", "-display", desktop.display, "-window", window.id, "-depth", "8", "rgb:-"],
        capture_output=True, timeout=20, check=True,
    ).stdout  # fmt: skip


def wait_until_drawn(desktop: DesktopSession, window: Window) -> None:
    """Wait until two captures in a row are identical: the window has stopped filling in."""
    previous: list[bytes] = [b""]

    def settled() -> bool:
        pixels = grab_pixels(desktop, window)
        same = pixels == previous[0]
        previous[0] = pixels
        return same

    wait_until(settled, WINDOW_TIMEOUT, f"the window {window.title!r} to finish drawing", interval=0.3)


def capture(desktop: DesktopSession, window: Window, path: Path) -> Shot:
    """Save ``window`` as a stripped PNG and measure it (size, colours, mean luminance).

    ``import -window`` reads the screen: a window stacked above this one (a toast, a popup)
    would be in the picture, so that fails the test instead.
    """
    desktop.reset()  # close the toasts
    wait_until_drawn(desktop, window)
    stack = viewable_windows(desktop)
    ids = [w.id for w in stack]
    assert window.id in ids, f"{window.title!r} is no longer shown"
    above = [w for w in stack[: ids.index(window.id)] if w.overlaps(window)]
    assert not above, f"windows over {window.title!r}: {above}"
    subprocess.run(
        ["import", "-display", desktop.display, "-window", window.id, "-strip", str(path)],
        timeout=20, check=True,
    )  # fmt: skip
    subprocess.run(["convert", str(path), "-strip", str(path)], timeout=20, check=True)
    fields = subprocess.run(
        ["convert", str(path), "-format", "%w %h %k %[fx:mean]", "info:"],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout.split()  # fmt: skip
    return Shot(path, window, int(fields[0]), int(fields[1]), int(fields[2]), float(fields[3]))


class Listen:
    """A ``tray-agent listen`` run of the demo agent: commands in, their outcome awaited."""

    def __init__(self, desktop: DesktopSession, server: DemoServerProcess, basedir: Path) -> None:
        agent = server.agent
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tray_agent", "--basedir", str(basedir), "--dialect", "dashboard",
             "--server", server.url, "--company", agent["tenant"], "--email", agent["email"], "listen"],
            env={**desktop.env, "PYTHONPATH": str(REPO), "TRAY_AGENT_PASSWORD": agent["password"]},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def run(self, **command: str) -> None:
        """Send one command and read events until it succeeded (fail on its failure)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        command_id = f"shots-{time.monotonic_ns()}"
        self.process.stdin.write(json.dumps({**command, "id": command_id}) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            event = json.loads(line)
            if event.get("command_id") != command_id:
                continue
            if event["event"] == "command_succeeded":
                return
            assert event["event"] not in ("command_failed", "command_rejected"), event
        raise AssertionError(f"listen ended before {command} was confirmed")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory,
    desktop: DesktopSession,
    demo_server: DemoServerProcess,
) -> Seeded:
    """Waiting, AI-handled and mine rows, and a chat of four messages, on the demo server."""
    control = demo_server.control
    control("ask_for_human", name="Budi Santoso", text="Pesanan saya belum sampai, tolong bantu.")
    control("ask_for_human", name="Maria Garcia", text="I was charged twice for order #4471.")
    ann = control("customer_writes", name="Ann Lee", text="Where is my parcel?")["customer"]["ref"]
    control("bot_replies", customer=ann, text="It left our warehouse yesterday and arrives on Friday.")
    kevin = control("new_customer", name="Kevin Tan")["customer"]["ref"]
    sarah = control("customer_writes", name=CHAT_CUSTOMER, text="Hi! I ordered a rain jacket last week.")
    sarah_ref: str = sarah["customer"]["ref"]
    control("bot_replies", customer=sarah_ref, text="Thanks! Could you tell me your order number?")
    control(
        "ask_for_human",
        customer=sarah_ref,
        text="It's #5120, it arrived in the wrong size. A person, please.",
    )
    listen = Listen(desktop, demo_server, tmp_path_factory.mktemp("listen"))
    try:
        listen.run(cmd="take_over", conversation=sarah_ref)
        listen.run(
            cmd="reply",
            conversation=sarah_ref,
            text="Hello Sarah, sorry about that! I'm arranging an exchange.",
        )
    finally:
        listen.close()
    return Seeded(chat=sarah_ref, ai=(ann, kevin))


class Launcher:
    """Starts the app of the demo agent in one language and theme, and hands it links."""

    def __init__(self, desktop: DesktopSession, server: DemoServerProcess, tmp_path: Path) -> None:
        agent = server.agent
        self.server = server
        self.tmp_path = tmp_path
        self.env = {**desktop.env, "PYTHONPATH": str(REPO), "TRAY_AGENT_PASSWORD": agent["password"]}
        self.connection = [
            "--dialect", "dashboard", "--server", server.url,
            "--company", agent["tenant"], "--email", agent["email"],
        ]  # fmt: skip
        self.apps: list[AppProcess] = []

    def argv(self, language: str, theme: str) -> list[str]:
        basedir = self.tmp_path / f"app-{language}-{theme}"
        return [
            sys.executable, "-m", "tray_agent", "--basedir", str(basedir), *self.connection,
            "--set", f"ui.language={language}", "--set", f"ui.theme={theme}",
            "--set", "ui.start_hidden=false",
        ]  # fmt: skip

    def start(self, language: str, theme: str) -> AppProcess:
        """Start the app; its inbox shows once it is up (``ui.start_hidden=false``)."""
        argv = self.argv(language, theme)
        process = subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        app = AppProcess(process, Path(argv[argv.index("--basedir") + 1]) / "log" / "tray-agent.log")
        self.apps.append(app)
        return app

    def open_link(self, language: str, theme: str, conversation: str) -> None:
        """A second launch with a ``tray-agent://`` link, as a desktop starts a link handler."""
        argv = [*self.argv(language, theme), build_link(conversation)]
        subprocess.run(argv, env=self.env, timeout=30, check=True, capture_output=True)

    @staticmethod
    def stop(app: AppProcess) -> None:
        app.process.terminate()
        try:
            app.process.wait(10)
        except subprocess.TimeoutExpired:
            app.process.kill()
            app.process.wait()


@pytest.fixture
def launcher(
    desktop: DesktopSession,
    demo_server: DemoServerProcess,
    tmp_path: Path,
) -> Iterator[Launcher]:
    launcher = Launcher(desktop, demo_server, tmp_path)
    yield launcher
    for app in launcher.apps:
        if app.process.poll() is None:
            launcher.stop(app)


def shoot_one(
    desktop: DesktopSession, launcher: Launcher, seeded: Seeded, language: str, theme: str, target: Path
) -> tuple[Shot, Shot]:
    """Start the app in ``language`` and ``theme``; capture its inbox, then the chat; stop it."""
    app = launcher.start(language, theme)
    app.wait_for_log("Connection: connected")
    title = load_translations(language).gettext("Customer Service")
    # Qt appends " — <application name>" to the title when there is no window manager.
    inbox = wait_for_window(desktop, app, lambda t: t.split(" — ")[0] == title, "the inbox")
    before = grab_pixels(desktop, inbox)
    # The resync lists who waits for a human; the AI's conversations appear as they write.
    control = launcher.server.control
    control("customer_writes", customer=seeded.ai[0], text="Thank you! Can I change the address?")
    control("customer_writes", customer=seeded.ai[1], text="Do you ship to Surabaya?")
    # Tab from the search box to the lists, Right twice: "All customers", every kind of row.
    press_keys(desktop, inbox, "Tab", "Right", "Right")
    wait_until(lambda: grab_pixels(desktop, inbox) != before, WINDOW_TIMEOUT, "the All customers tab")
    inbox_shot = capture(desktop, inbox, target / f"inbox-{language}-{theme}.png")

    # The chat window opens on top of the inbox (there is no window manager to place it).
    launcher.open_link(language, theme, seeded.chat)
    chat = wait_for_window(desktop, app, lambda t: CHAT_CUSTOMER in t, "the chat window")
    chat_shot = capture(desktop, chat, target / f"chat-{language}-{theme}.png")
    launcher.stop(app)
    assert app.process.returncode == 0, app.log_text()
    return inbox_shot, chat_shot


def test_screenshots_inbox_and_chat_in_both_languages_and_themes(
    desktop: DesktopSession, seeded: Seeded, launcher: Launcher, tmp_path: Path
) -> None:
    missing = [tool for tool in ("import", "convert", "xwininfo") if shutil.which(tool) is None]
    missing += [f"lib{lib}" for lib in ("X11", "Xtst") if ctypes.util.find_library(lib) is None]
    if missing:
        unavailable(f"screenshots: missing {', '.join(missing)} (install tools/desktop-packages.txt)")
    target = out_dir(tmp_path)
    shots: dict[tuple[str, str, str], Shot] = {}
    for language in LANGUAGES:
        for theme in THEMES:
            inbox, chat = shoot_one(desktop, launcher, seeded, language, theme, target)
            shots["inbox", language, theme] = inbox
            shots["chat", language, theme] = chat

    for (kind, language, theme), shot in shots.items():
        name = shot.path.name
        minimum = MIN_INBOX if kind == "inbox" else MIN_CHAT
        # The whole window, as big as X says it is, and not squeezed below a usable size.
        assert (shot.width, shot.height) == (shot.window.width, shot.window.height), name
        assert shot.width >= minimum[0], (name, shot.width)
        assert shot.height >= minimum[1], (name, shot.height)
        assert shot.colours >= MIN_COLOURS, f"{name} looks blank: {shot.colours} colours"
        if theme == "dark":
            light = shots[kind, language, "light"]
            assert shot.mean < light.mean - 0.2, (name, shot.mean, light.path.name, light.mean)
    # Found by their translated titles: the Indonesian inbox is not the English one.
    english, indonesian = (
        shots["inbox", "en", "light"].window.title,
        shots["inbox", "id", "light"].window.title,
    )
    assert english.startswith("Customer Service")
    assert indonesian != english
    assert not indonesian.startswith("Customer Service"), indonesian
