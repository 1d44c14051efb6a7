"""A real headless desktop session for tests: Xvfb, D-Bus, dunst, SNI watcher, keyring, PulseAudio.

:class:`DesktopSession` starts every daemon itself under one temp directory, records each PID and
stops exactly those. The recipe and its traps are in /work/shared/DESKTOP-TESTING.md:

- Xvfb picks a free display itself (``-displayfd``), so it never clashes with other X servers.
- The private ``dbus-daemon`` runs with a generated config that has NO service directories, so
  nothing can be D-Bus-activated behind our back (a second dunst or keyring we would not track).
- dunst gets a copy of the system dunstrc whose ``dmenu`` is ``tools/dmenu_pick.sh``; popups never
  time out, so what tests see does not depend on timing.
- gnome-keyring is unlocked with a NON-empty password (an empty one creates no login keyring).
- PulseAudio runs with a null sink and an anonymous unix socket (``PULSE_SERVER``).
- A bus monitor (``notify_monitor.py``) records every ``Notify`` call, with its hints (urgency) and
  actions, which ``dunstctl history`` does not report reliably.

Every daemon gets ``TRAY_AGENT_DESKTOP_SESSION=<root>`` in its environment, so a test can prove
that nothing started by the session outlives it (:func:`processes_with_marker`).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
MONITOR = Path(__file__).with_name("notify_monitor.py")
FAKE_SNI_WATCHER = TOOLS / "fake_sni_watcher.py"
DMENU_PICK = TOOLS / "dmenu_pick.sh"
MARKER = "TRAY_AGENT_DESKTOP_SESSION"
NOTIFICATIONS = "org.freedesktop.Notifications"
SNI_WATCHER = "org.kde.StatusNotifierWatcher"
SECRETS = "org.freedesktop.secrets"
KEYRING_PASSWORD = "ci"  # must be non-empty, see the module docstring
SAMPLE_RATE = 44100

# Binaries the session needs, with the Debian package that provides each (tools/desktop-packages.txt).
REQUIRED_BINARIES = {
    "Xvfb": "xvfb",
    "dbus-daemon": "dbus-daemon",
    "dbus-send": "dbus-bin",
    "dunst": "dunst",
    "dunstctl": "dunst",
    "gnome-keyring-daemon": "gnome-keyring",
    "pulseaudio": "pulseaudio",
    "parec": "pulseaudio-utils",
    "paplay": "pulseaudio-utils",
    "pactl": "pulseaudio-utils",
}
OPTIONAL_BINARIES = {
    "status-notifier-watcher": "haskell-status-notifier-item-utils (else tools/fake_sni_watcher.py)",
    "import": "imagemagick (screenshots)",
}

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies (Linux PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 == PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM ``proc``, then SIGKILL after ``grace`` seconds; returns once it has ended."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SessionError(RuntimeError):
    """The session could not start (a daemon died or never became ready)."""


def missing_binaries() -> list[str]:
    """Required binaries not on PATH, as ``"binary (package)"`` strings."""
    return [f"{b} ({pkg})" for b, pkg in REQUIRED_BINARIES.items() if shutil.which(b) is None]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy, which is returned.

    Raises:
        TimeoutError: with ``what`` in the message, when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def processes_with_marker(value: str) -> list[int]:
    """PIDs of live processes whose environment has ``TRAY_AGENT_DESKTOP_SESSION=value``."""
    needle = f"{MARKER}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and state != "Z":
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class Notification:
    """One ``Notify`` call seen on the bus.

    Attributes:
        id: the id the server returned (None until the reply was seen, or on error).
        app_name: the sender's app name.
        replaces_id: the id this one replaces (0: none).
        summary: the title, exactly as sent.
        body: the body, exactly as sent (markup and entities included).
        actions: action id -> label, in order ("default" is the click action).
        hints: the hints, Variants unwrapped.
        expire_timeout: milliseconds (-1: server default).
        sender: the unique bus name of the sender.
    """

    id: int | None
    app_name: str
    replaces_id: int
    summary: str
    body: str
    actions: dict[str, str]
    hints: dict[str, Any]
    expire_timeout: int
    sender: str

    @property
    def urgency(self) -> int | None:
        """The urgency hint: 0 low, 1 normal, 2 critical (None if absent)."""
        value = self.hints.get("urgency")
        return int(value) if value is not None else None


@dataclass(frozen=True)
class AudioCapture:
    """Samples recorded from the null sink's monitor (mono, signed 16 bit)."""

    samples: array.array[int]
    rate: int = SAMPLE_RATE

    @property
    def peak(self) -> float:
        """Largest absolute sample, 0.0 to 1.0."""
        return max((abs(s) for s in self.samples), default=0) / 32768

    @property
    def rms(self) -> float:
        """Root mean square amplitude, 0.0 to 1.0."""
        if not self.samples:
            return 0.0
        return math.sqrt(sum(s * s for s in self.samples) / len(self.samples)) / 32768


@dataclass
class Recording:
    """A running ``parec`` on ``nullsink.monitor``; :meth:`stop` returns what it captured."""

    process: subprocess.Popen[bytes]
    path: Path
    _session: DesktopSession = field(repr=False)

    def stop(self) -> AudioCapture:
        """Stop recording and return the capture."""
        self._session._stop_process(self.process)
        data = array.array("h")
        raw = self.path.read_bytes()
        data.frombytes(raw[: len(raw) - len(raw) % 2])
        if sys.byteorder != "little":
            data.byteswap()
        return AudioCapture(data)


class DesktopSession:
    """A headless desktop session under one temp directory.

    Use :meth:`start` / :meth:`stop` (or ``with``). :attr:`env` is the environment for
    subprocesses (the app, Qt scripts); :meth:`environ` applies the same to ``os.environ`` for
    in-process clients (desktop-notifier, keyring), except ``QT_QPA_PLATFORM``.
    """

    def __init__(self, root: Path | None = None, sni_watcher: str = "auto") -> None:
        """Prepare (not start) a session.

        Args:
            root: state directory (a new temp dir if None; removed by :meth:`stop` only if ours).
            sni_watcher: "real" (status-notifier-watcher), "fake" (tools/fake_sni_watcher.py) or
                "auto" (real if installed).
        """
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="tray-agent-desktop-")) if root is None else root
        self.sni_watcher = sni_watcher
        self.pids: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []
        self.env: dict[str, str] = {}
        self.display = ""
        self._notify_offset = 0
        self._pick_counter = 0

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> DesktopSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def monitor_log(self) -> Path:
        """The JSON-lines file the bus monitor writes."""
        return self.root / "notify.jsonl"

    @property
    def bus_address(self) -> str:
        """The private session bus address."""
        return f"unix:path={self.root / 'bus'}"

    def start(self, timeout: float = 15.0) -> None:
        """Start every daemon and wait until each is ready.

        Raises:
            SessionError: a binary is missing, a daemon died or did not become ready in time.
        """
        missing = missing_binaries()
        if missing:
            raise SessionError("missing: " + ", ".join(missing))
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        home = self.root / "home"
        runtime = self.root / "xdg-runtime"
        for d in (home / ".config", home / ".local/share", home / ".cache"):
            d.mkdir(parents=True, exist_ok=True)
        runtime.mkdir(mode=0o700, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_STATE_HOME": str(home / ".local/state"),
            "XDG_CURRENT_DESKTOP": "tray-agent-test",
            "DMENU_PICK_FILE": str(self.root / "dmenu_pick"),
            MARKER: str(self.root),
        }

        # 1. X server on a free display number.
        read_fd, write_fd = os.pipe()
        try:
            self._spawn(
                "xvfb",
                ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            # Xvfb writes "N\n" once it accepts connections; EOF means it died.
            line = pipe.readline().strip()
        if not line.isdigit():
            raise SessionError(f"Xvfb did not report a display: {self._tail('xvfb')}")
        self.display = f":{line}"
        self.env["DISPLAY"] = self.display

        # 2. Private bus without service directories (no D-Bus activation of untracked daemons).
        bus_socket = self.root / "bus"
        config = self.root / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=bus_socket))
        self._spawn("dbus", ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile"])
        self._wait(lambda: bus_socket.is_socket(), deadline, "dbus", "the bus socket")
        self.env["DBUS_SESSION_BUS_ADDRESS"] = self.bus_address
        self._wait(lambda: self._dbus_send_ok(), deadline, "dbus", "the bus to answer")

        # 3. Bus monitor first, so it sees every notification.
        self._spawn("notify-monitor", [sys.executable, str(MONITOR), str(self.monitor_log)])
        self._wait(lambda: self._monitor_ready(), deadline, "notify-monitor", "the bus monitor")

        # 4. The rest in parallel.
        dunstrc = self.root / "dunstrc"
        dunstrc.write_text(make_dunstrc(Path("/etc/xdg/dunst/dunstrc"), DMENU_PICK))
        self._spawn("dunst", ["dunst", "-config", str(dunstrc)])
        use_real = self.sni_watcher == "real" or (
            self.sni_watcher == "auto" and shutil.which("status-notifier-watcher")
        )
        if use_real:
            self._spawn("sni-watcher", ["status-notifier-watcher"])
        else:
            self._spawn("sni-watcher", [sys.executable, str(FAKE_SNI_WATCHER)])
        self._spawn(
            "gnome-keyring",
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin_data=KEYRING_PASSWORD.encode(),
        )
        pulse_socket = self.root / "pulse.sock"
        self._spawn(
            "pulseaudio",
            [
                "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
                "--disable-shm=yes", "--log-target=stderr",
                "--load=module-null-sink sink_name=nullsink rate=44100",
                f"--load=module-native-protocol-unix socket={pulse_socket} auth-anonymous=1",
            ],
        )  # fmt: skip
        self.env["PULSE_SERVER"] = f"unix:{pulse_socket}"
        self.env["QT_QPA_PLATFORM"] = "xcb"

        self._wait(lambda: self.has_owner(NOTIFICATIONS), deadline, "dunst", NOTIFICATIONS)
        self._wait(lambda: self.has_owner(SNI_WATCHER), deadline, "sni-watcher", SNI_WATCHER)
        self._wait(lambda: self.has_owner(SECRETS), deadline, "gnome-keyring", SECRETS)
        self._wait(lambda: pulse_socket.is_socket() and self._pactl_ok(), deadline, "pulseaudio", "pulse")

    def stop(self) -> None:
        """Stop the daemons this session started (only those, by PID), newest first."""
        for name in reversed(list(self._procs)):
            self._stop_process(self._procs[name])
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _stop_process(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
        stop_process(proc, grace)

    def _spawn(
        self,
        name: str,
        argv: list[str],
        pass_fds: tuple[int, ...] = (),
        stdin_data: bytes | None = None,
    ) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        proc = subprocess.Popen(
            argv,
            env=self.env,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
            cwd=self.root,
            start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, which cleans up
            preexec_fn=_die_with_parent,  # if pytest is killed outright, the daemons go too
        )
        if stdin_data is not None and proc.stdin is not None:
            proc.stdin.write(stdin_data)
            proc.stdin.close()
        self._procs[name] = proc
        self.pids[name] = proc.pid

    def _tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.root / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait(self, predicate: Callable[[], Any], deadline: float, name: str, what: str) -> None:
        while not predicate():
            proc = self._procs[name]
            if proc.poll() is not None:
                raise SessionError(f"{name} exited with {proc.returncode}: {self._tail(name)}")
            if time.monotonic() >= deadline:
                raise SessionError(f"timed out waiting for {what}: {self._tail(name)}")
            time.sleep(0.05)

    def _run(self, argv: list[str], timeout: float = 10.0, check: bool = True) -> str:
        result = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise SessionError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def _dbus_send_ok(self) -> bool:
        argv = ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus", "org.freedesktop.DBus.GetId"]  # fmt: skip
        return subprocess.run(argv, env=self.env, capture_output=True, check=False).returncode == 0

    def _pactl_ok(self) -> bool:
        argv = ["pactl", "list", "short", "sinks"]
        out = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        return out.returncode == 0 and "nullsink" in out.stdout

    def _monitor_ready(self) -> bool:
        try:
            return '"ready": true' in self.monitor_log.read_text()
        except FileNotFoundError:
            return False

    # ------------------------------------------------------------------ environment
    @contextlib.contextmanager
    def environ(self) -> Iterator[dict[str, str]]:
        """Export :attr:`env` (minus PATH, LANG and QT_QPA_PLATFORM) into os.environ, then restore.

        The pytest process keeps its own Qt platform (offscreen); only subprocesses use xcb.
        """
        keys = [k for k in self.env if k not in ("PATH", "LANG", "QT_QPA_PLATFORM")]
        saved = {k: os.environ.get(k) for k in keys}
        os.environ.update({k: self.env[k] for k in keys})
        try:
            yield self.env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # ------------------------------------------------------------------ D-Bus helpers
    def has_owner(self, name: str) -> bool:
        """Whether ``name`` has an owner on the bus (never triggers activation)."""
        out = subprocess.run(
            ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
             "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", f"string:{name}"],
            env=self.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        return "boolean true" in out.stdout

    def sni_items(self) -> list[str]:
        """The StatusNotifierItems registered with the watcher (service names or paths)."""
        out = self._run(
            ["dbus-send", "--session", "--print-reply", f"--dest={SNI_WATCHER}",
             "/StatusNotifierWatcher", "org.freedesktop.DBus.Properties.Get",
             f"string:{SNI_WATCHER}", "string:RegisteredStatusNotifierItems"],
        )  # fmt: skip
        return re.findall(r'string "([^"]*)"', out)

    # ------------------------------------------------------------------ notifications
    def _records(self) -> list[dict[str, Any]]:
        try:
            text = self.monitor_log.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        # The last line may be half-written; complete lines end with "\n".
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def notifications(self, since_reset: bool = True) -> list[Notification]:
        """Every ``Notify`` call seen on the bus, oldest first (since :meth:`reset` by default)."""
        records = self._records()
        replies = {(r["sender"], r["serial"]): r["body"][0] for r in records if r.get("kind") == "return"}
        result = []
        for r in records[self._notify_offset if since_reset else 0 :]:
            if r.get("kind") != "call" or r["member"] != "Notify":
                continue
            app, replaces, _icon, summary, body, actions, hints, expire = r["body"]
            result.append(
                Notification(
                    id=replies.get((r["sender"], r["serial"])),
                    app_name=app,
                    replaces_id=replaces,
                    summary=summary,
                    body=body,
                    actions=dict(zip(actions[::2], actions[1::2], strict=False)),
                    hints=hints,
                    expire_timeout=expire,
                    sender=r["sender"],
                )
            )
        return result

    def closed_ids(self) -> set[int]:
        """Ids of notifications the server reported closed (``NotificationClosed``)."""
        return {
            r["body"][0]
            for r in self._records()
            if r.get("kind") == "signal" and r["member"] == "NotificationClosed"
        }

    def close_requests(self) -> set[int]:
        """Ids a client asked the server to close (``CloseNotification`` calls, i.e. withdrawn)."""
        return {
            r["body"][0]
            for r in self._records()
            if r.get("kind") == "call" and r["member"] == "CloseNotification"
        }

    def open_notifications(self) -> list[Notification]:
        """Notifications sent since :meth:`reset` that the server has not closed yet."""
        closed = self.closed_ids()
        return [n for n in self.notifications() if n.id is not None and n.id not in closed]

    def wait_for_notification(
        self, predicate: Callable[[Notification], bool] = lambda n: True, timeout: float = 5.0
    ) -> Notification:
        """The first notification since :meth:`reset` matching ``predicate`` whose id is known.

        Raises:
            TimeoutError: none arrived within ``timeout`` seconds.
        """

        def find() -> Notification | None:
            return next((n for n in self.notifications() if n.id is not None and predicate(n)), None)

        result: Notification = wait_until(find, timeout, "a matching notification")
        return result

    def dunst_count(self, which: str = "displayed") -> int:
        """``dunstctl count displayed|waiting|history``."""
        return int(self._run(["dunstctl", "count", which]).strip())

    def dunst_history(self) -> list[dict[str, Any]]:
        """dunst's history (closed notifications), newest first, as dunstctl prints it."""
        data = json.loads(self._run(["dunstctl", "history"]))
        return [{k: v.get("data") for k, v in n.items()} for n in data["data"][0]]

    def reset(self) -> None:
        """Close every notification in dunst and start a new recording window."""
        self._run(["dunstctl", "close-all"])
        wait_until(lambda: self.dunst_count("displayed") == 0, 5.0, "dunst to close all")
        self._notify_offset = len(self._records())
        (self.root / "dmenu_pick").unlink(missing_ok=True)

    def press_action(self, label_or_id: str, notification: Notification | None = None) -> None:
        """Press a notification's action through dunst's context menu and the fake dmenu.

        dunst 1.9 offers one line per action of every displayed notification,
        ``#<label> (<summary>) [<notification id>,<action id>]``; the fake picker
        (tools/dmenu_pick.sh) chooses the first line containing the pattern written to
        ``DMENU_PICK_FILE``. When the notification is known the pattern is its exact
        ``[id,action]`` suffix, so an identical label on another popup is never pressed.

        Args:
            label_or_id: the action's label or its id.
            notification: the notification to act on; by default the newest one (since
                :meth:`reset`) that has such an action.

        Raises:
            LookupError: no recorded notification has such an action.
        """
        candidates = [notification] if notification else list(reversed(self.notifications()))
        for n in candidates:
            if n.id is None:
                continue
            action = label_or_id if label_or_id in n.actions else None
            if action is None:
                action = next((k for k, v in n.actions.items() if v == label_or_id), None)
            if action is not None:
                break
        else:
            raise LookupError(f"no notification with an action {label_or_id!r}")
        pick = self.root / "dmenu_pick"
        pick.write_text(f"[{n.id},{action}]")
        self._run(["dunstctl", "context"])
        # The picker removes the file once it has read it: dunst has the answer after that.
        wait_until(lambda: not pick.exists(), 5.0, "dunst to run the fake dmenu")

    # ------------------------------------------------------------------ audio, screen
    def start_recording(self) -> Recording:
        """Start recording the null sink's monitor; returns once ``parec`` is connected."""
        path = self.root / f"rec-{time.monotonic_ns()}.raw"
        with open(path, "wb") as out:
            proc = subprocess.Popen(
                ["parec", "-d", "nullsink.monitor", "--raw", "--format=s16le",
                 f"--rate={SAMPLE_RATE}", "--channels=1", "--latency-msec=20"],
                env=self.env, stdout=out, stderr=subprocess.DEVNULL,
            )  # fmt: skip

        def connected() -> bool:
            if proc.poll() is not None:
                raise SessionError(f"parec exited with {proc.returncode}")
            return bool(self._run(["pactl", "list", "short", "source-outputs"]).strip())

        try:
            wait_until(connected, 5.0, "parec to connect")
        except BaseException:
            self._stop_process(proc)
            raise
        return Recording(proc, path, self)

    def play(self, wav: Path, timeout: float = 10.0) -> None:
        """Play a sound file with ``paplay`` on the null sink, until it has finished."""
        self._run(["paplay", "-d", "nullsink", str(wav)], timeout=timeout)

    def screenshot(self, path: Path) -> Path:
        """Save the root window as PNG (ImageMagick ``import``)."""
        if shutil.which("import") is None:
            raise SessionError("missing: import (imagemagick)")
        self._run(["import", "-display", self.display, "-window", "root", str(path)])
        return path


def make_dunstrc(system: Path, dmenu: Path) -> str:
    """The system dunstrc with the fake dmenu and no popup timeouts.

    Falls back to a minimal config when the system file is absent.
    """
    try:
        text = system.read_text()
    except OSError:
        text = "[global]\n    dmenu = x\n[urgency_low]\n[urgency_normal]\n[urgency_critical]\n"
    text = re.sub(r"(?m)^(\s*)dmenu\s*=.*$", rf"\g<1>dmenu = {dmenu}", text)
    # Popups stay until closed, so what a test sees does not depend on how long it took.
    text = re.sub(r"(?m)^(\s*)timeout\s*=.*$", r"\g<1>timeout = 0", text)
    return text
