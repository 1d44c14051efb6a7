"""Benchmark client process: the whole app pipeline, or a bare ``websockets`` loop (the limit).

``python benchmarks/bench_client.py MODE SERVER_JSON`` where MODE is:

* ``bare``: asyncio + websockets, no Qt. ``recv()`` only for floods (PERFORMANCE-NOTES (a)), and
  ``recv()`` + ``json.loads`` for the steady stream (it must read the send time).
* ``app``: what ``tray-agent`` runs, minus the OS services: QApplication (offscreen), qasync,
  the real net.Client (dashboard), Store + reducer, StoreBridge, AlertPolicy + EffectRunner with
  a recording notifier, the TrayController, and the inbox window SHOWN (the worst case: the
  app starts hidden). As app.py: the linecache guard right after Qt is imported
  (``platform/memory.py``) and ``gc.freeze()`` right after start-up.
* ``app-tray``: the same with the inbox window never shown: the app's default state
  (``ui.start_hidden``), where only the tray (here its status window) follows the store.

Both print ``{"ready": ...}`` once connected and resynced, then answer one JSON line per stdin
command: ``expect`` (count N load frames; report the time the last one was handled and, for
the app, when the UI model reflected it), ``latency`` (N escalations: send -> notifier call),
``stall`` (as expect, with a 5 ms PreciseTimer probe running), ``rss``, ``idle`` (CPU and timer
events over S seconds).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {"p50": q[49], "p99": q[98], "max": values[-1], "n": len(values)}


def out(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def login(info: dict[str, Any]) -> str:
    import aiohttp

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        body = {"email": info["email"], "password": info["password"], "company_id": info["company"]}
        async with http.post(info["url"] + "/auth/login", json=body) as resp:
            resp.raise_for_status()
            return resp.cookies["session"].value


# ---------------------------------------------------------------------------------------------
# bare


async def bare(info: dict[str, Any]) -> None:
    from websockets.asyncio.client import connect

    cookie = await login(info)
    url = info["url"].replace("http://", "ws://") + "/api/dashboard/ws"
    async with connect(url, additional_headers={"Cookie": f"session={cookie}"}, max_queue=16) as ws:
        await ws.recv()  # "connected"
        out({"ready": True, "rss_mb": rss_mb()})
        commands = await stdin_reader()
        while line := await commands.readline():
            cmd = json.loads(line)
            count = int(cmd["events"])
            out({"armed": cmd["cmd"]})
            if cmd["cmd"] == "expect":
                cpu0 = cpu_s()
                for _ in range(count):
                    await ws.recv()
                out({"t_last": time.monotonic(), "cpu_s": cpu_s() - cpu0, "rss_mb": rss_mb()})
            elif cmd["cmd"] == "latency":
                lat: list[float] = []
                while len(lat) < count:
                    frame = json.loads(await ws.recv())
                    text = frame.get("data", {}).get("message", "")
                    if text.startswith("ts="):
                        lat.append((time.monotonic() - float(text[3:].split()[0])) * 1000.0)
                out({"latency_ms": percentiles(lat[count // 50 :])})  # first 2 % = warm-up


# ---------------------------------------------------------------------------------------------
# app


class RecordingNotifier:
    """The Notifier port: records the monotonic time of each call and the send time in the body."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.calls = 0

    @property
    def available(self) -> bool:
        return True

    def set_callback(self, callback: Any) -> None:
        return None

    def show(self, toast: Any) -> Any:
        now = time.monotonic()
        self.calls += 1
        body: str = toast.body
        at = body.find("ts=")
        if at >= 0:
            self.latencies.append((now - float(body[at + 3 :].split()[0])) * 1000.0)
        return _done()

    def withdraw(self, key: str) -> Any:
        return _done()


async def _done() -> None:
    return None


class StallProbe:
    """A 5 ms Qt.PreciseTimer; the longest gap between its ticks is the UI stall."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self.last = 0.0
        self.max_gap = 0.0

    def _tick(self) -> None:
        now = time.monotonic()
        if self.last:
            self.max_gap = max(self.max_gap, now - self.last)
        self.last = now

    def start(self) -> None:
        self.last, self.max_gap = 0.0, 0.0
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return self.max_gap * 1000.0


def app(info: dict[str, Any], inbox_shown: bool = True) -> None:
    import qasync
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QApplication

    from tray_agent.platform.memory import install_pyside_linecache_guard

    install_pyside_linecache_guard()  # as app.run(), right after Qt is imported

    from tray_agent.core.events import ConnectionState, HumanRequested, MessageReceived
    from tray_agent.core.policy import AlertPolicy
    from tray_agent.core.ports import SystemClock
    from tray_agent.core.protocol.dashboard import DashboardCodec
    from tray_agent.core.settings import AlertSettings, ConnectionSettings
    from tray_agent.core.state import Store
    from tray_agent.net.auth import DashboardAuthenticator
    from tray_agent.net.client import Client
    from tray_agent.platform.secrets import MemorySecretStore
    from tray_agent.platform.sound import NullSound
    from tray_agent.session.dispatcher import Dispatcher
    from tray_agent.ui.bridge import StoreBridge
    from tray_agent.ui.customer_service import CustomerServiceWindow
    from tray_agent.ui.effects import EffectRunner
    from tray_agent.ui.tray import TrayController

    qt = QApplication([])
    loop = qasync.QEventLoop(qt)
    asyncio.set_event_loop(loop)
    clock = SystemClock()
    store = Store()
    alerts = AlertSettings()
    notifier = RecordingNotifier()
    runner = EffectRunner(AlertPolicy(alerts), notifier, NullSound("benchmark"), clock, alerts)
    bridge = StoreBridge(store)
    # As app.py: the dispatcher hands alerts to the engine; waiting list and focus come from the store.
    runner.attach(store)
    dispatcher = Dispatcher(store, clock, alerts=runner)

    class Sink:
        def submit(self, command: Any) -> None:
            client.submit(command)

    tray = TrayController(bridge, runner, Sink(), clock, tray_available=False)
    tray.show()
    runner.start()
    inbox = CustomerServiceWindow(bridge, Sink(), "dashboard")
    if inbox_shown:
        inbox.show()
    counted = [0]
    hit = [0, 0.0]  # [target count, monotonic time the target was reached in emit()]

    def emit(event: Any) -> None:
        if isinstance(event, MessageReceived | HumanRequested):
            counted[0] += 1
            if counted[0] == hit[0]:
                hit[1] = time.monotonic()
        dispatcher.dispatch(event)

    batches = [0]  # batches handed over (frames per batch: informative)

    def emit_many(events: Any) -> None:
        # As the app's session sink: the client hands a burst's events over as one batch.
        batches[0] += 1
        for event in events:
            if isinstance(event, MessageReceived | HumanRequested):
                counted[0] += 1
                if counted[0] == hit[0]:
                    hit[1] = time.monotonic()
        dispatcher.dispatch_many(events)

    emit.many = emit_many  # type: ignore[attr-defined]

    settings = ConnectionSettings(
        dialect="dashboard", server=info["url"], company=info["company"], email=info["email"]
    )
    auth = DashboardAuthenticator(settings, MemorySecretStore(), clock, password=info["password"])
    client = Client(DashboardCodec(), auth, settings, emit, clock)
    probe = StallProbe()
    flushed = asyncio.Event()
    bridge.flushed.connect(lambda _state: flushed.set())

    async def until(condition: Any) -> None:
        while not condition():
            flushed.clear()
            await flushed.wait()

    class TimerCounter(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.counts: dict[str, int] = {}

        def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
            if event.type() == QEvent.Type.Timer:
                name = type(watched).__name__ + ":" + (watched.objectName() or "")
                self.counts[name] = self.counts.get(name, 0) + 1
            return False

    async def main() -> None:
        t_start = time.monotonic()
        probe.start()
        client.start()
        gc.freeze()  # as app.py after start-up (PERFORMANCE-NOTES §6)
        await until(
            lambda: (
                store.state.initial_load_done and store.state.connection.state is ConnectionState.CONNECTED
            )
        )
        resync_s = time.monotonic() - t_start
        out(
            {
                "ready": True,
                "resync_s": resync_s,
                "resync_max_gap_ms": probe.stop(),
                "waiting": len(store.state.waiting_keys),
                "rss_mb": rss_mb(),
            }
        )
        commands = await stdin_reader()
        while line := await commands.readline():
            cmd = json.loads(line)
            name = cmd["cmd"]
            if name in ("expect", "stall"):
                target = counted[0] + int(cmd["events"])
                hit[0], hit[1] = target, 0.0
                cpu0, batches0 = cpu_s(), batches[0]
                if name == "stall":
                    probe.start()
                out({"armed": name})
                await until(lambda target=target: counted[0] >= target)
                t_ui = time.monotonic()  # the flush that carried the last event into the models
                gap = probe.stop() if name == "stall" else None
                out(
                    {
                        "t_last": hit[1] or t_ui,
                        "t_ui": t_ui,
                        "cpu_s": cpu_s() - cpu0,
                        "rss_mb": rss_mb(),
                        "max_gap_ms": gap,
                        "rows": inbox.model.rowCount(),
                        "batches": batches[0] - batches0,
                    }
                )
            elif name == "latency":
                notifier.latencies.clear()
                count = int(cmd["events"])
                out({"armed": name})
                while len(notifier.latencies) < count:
                    flushed.clear()
                    await flushed.wait()
                lat = notifier.latencies[:count]
                out({"latency_ms": percentiles(lat[count // 50 :]), "toasts": notifier.calls})
            elif name == "stats":
                out({"counted": counted[0], "toasts": notifier.calls, "latencies": len(notifier.latencies)})
            elif name == "rss":
                gc.collect()
                out({"rss_mb": rss_mb(), "objects": len(gc.get_objects())})
            elif name == "idle":
                # The app's idle state is tray-only (ui.start_hidden): the inbox is hidden first.
                # A short sample with the inbox shown is reported too (its 1 s waiting-time tick
                # and the text cursor's blink are legitimate while a window is open).
                async def sample(seconds: float) -> dict[str, Any]:
                    # Qt timers are counted per receiver. qasync delivers *every* asyncio callback
                    # (call_soon included: I/O completions, task steps) through one Qt timer
                    # object, so asyncio timers are attributed per callback instead, counting
                    # only delayed ones (call_later with a delay > 0): those are the timers.
                    counter = TimerCounter()
                    delayed: dict[str, int] = {}
                    original_call_later = loop.call_later

                    def counting_call_later(delay: float, callback: Any, *args: Any, **kw: Any) -> Any:
                        if delay <= 0:
                            return original_call_later(delay, callback, *args, **kw)
                        # Counted when it fires: a timeout re-armed (and cancelled) each time its
                        # loop wakes is a deadline moved, not a timer firing.
                        name = "asyncio:" + getattr(callback, "__qualname__", type(callback).__name__)

                        def fired(*fired_args: Any) -> Any:
                            delayed[name] = delayed.get(name, 0) + 1
                            return callback(*fired_args)

                        return original_call_later(delay, fired, *args, **kw)

                    loop.call_later = counting_call_later  # type: ignore[method-assign]
                    qt.installEventFilter(counter)
                    cpu0, t0 = cpu_s(), time.monotonic()
                    await asyncio.sleep(seconds)  # the idle period being measured
                    cpu, wall = cpu_s() - cpu0, time.monotonic() - t0
                    qt.removeEventFilter(counter)
                    loop.call_later = original_call_later  # type: ignore[method-assign]
                    qt_timers = {
                        k: v / wall for k, v in counter.counts.items() if not k.startswith("_SimpleTimer")
                    }
                    asyncio_timers = {k: v / wall for k, v in delayed.items()}
                    rates = {**qt_timers, **asyncio_timers}
                    return {
                        "cpu_pct": 100.0 * cpu / wall,
                        "seconds": wall,
                        "timer_events": sum(counter.counts.values()),
                        "asyncio_callbacks_per_s": counter.counts.get("_SimpleTimer:", 0) / wall,
                        "max_timer_rate_hz": max(rates.values(), default=0.0),
                        "timers": {k: round(v, 3) for k, v in sorted(rates.items())},
                    }

                shown = await sample(min(10.0, float(cmd["seconds"])))
                inbox.hide()
                await asyncio.sleep(1.0)  # let the hide settle before measuring
                hidden = await sample(float(cmd["seconds"]))
                out({**hidden, "inbox_shown": shown, "state": str(store.state.connection.state)})
        await client.stop()

    profile_to = os.environ.get("TRAY_AGENT_BENCH_PROFILE")  # a path: cProfile the app's run there
    profiler = cProfile.Profile() if profile_to else None
    with loop:
        if profiler is not None:
            profiler.enable()
        try:
            loop.run_until_complete(main())
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(f"{profile_to}.{os.getpid()}")


if __name__ == "__main__":
    mode, server = sys.argv[1], json.loads(sys.argv[2])
    if mode == "bare":
        asyncio.run(bare(server))
    else:
        app(server, inbox_shown=mode != "app-tray")
