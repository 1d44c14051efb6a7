"""Fakes at the ports: clock, secret store, event recorder, backoff sleep, JWTs (net tests); notifier,
sound, command sink, scheduler, authenticator and client (session, alert engine and GUI tests); front
end, diagnostics writer and autostart (the account flows' tests)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from tray_agent.core.commands import Command
from tray_agent.core.effects import SoundName, Toast
from tray_agent.core.events import ConnectionChanged, ConnectionState, Event
from tray_agent.core.ports import ToastCallback

E = TypeVar("E", bound=Event)

SETTABLE_NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
"""Where a :class:`SettableClock` starts unless told."""


class FakeClock:
    """A Clock port on real time: ``now`` (fixed or real) and ``monotonic`` (real) plus ``offset``.

    For code that really waits (network clients): time goes on by itself. See
    :class:`SettableClock` for a clock that stands still until the test moves it.
    """

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now
        self.offset = 0.0

    def now(self) -> datetime:
        base = self._now if self._now is not None else datetime.now(UTC)
        return base + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


class SettableClock:
    """A Clock port that stands still: the test sets ``current`` or calls :meth:`advance`.

    ``monotonic`` follows the wall time (its epoch seconds), so both move together.
    """

    def __init__(self, now: datetime = SETTABLE_NOW) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return self.current.timestamp()

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class SettableNow:
    """A bare ``now()`` function (``Callable[[], datetime]``, e.g. the models' ``clock``) that
    stands still: the test sets ``now`` or calls :meth:`advance`. Not a Clock port (no monotonic).
    """

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeSecretStore:
    """An in-memory SecretStore that records deletions (net, session and GUI tests)."""

    backend_name = "fake"

    def __init__(self, initial: dict[str, str] | None = None, *, persistent: bool = False) -> None:
        self.values: dict[str, str] = dict(initial or {})
        self.deleted: list[str] = []
        self.problem = ""
        self._persistent = persistent

    @property
    def persistent(self) -> bool:
        return self._persistent

    @property
    def secrets(self) -> dict[str, str]:
        """The stored secrets (an alias of ``values``)."""
        return self.values

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.deleted.append(key)
        self.values.pop(key, None)


class RecordingSleep:
    """A backoff sleep that records each delay and yields briefly instead of waiting it out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0.005)  # keeps a refused-connection retry loop from spinning the CPU


class EventRecorder:
    """Collects emitted events and lets a test wait for one (never by sleeping)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def states(self) -> list[ConnectionState]:
        return [e.state for e in self.of(ConnectionChanged)]

    async def wait_for(
        self,
        kind: type[E],
        predicate: Callable[[E], bool] = lambda e: True,
        *,
        after: int = 0,
        within: float = 5.0,
    ) -> E:
        """The first event of ``kind`` at index >= ``after`` matching ``predicate``."""

        async def scan() -> E:
            index = after
            while True:
                while index < len(self.events):
                    event = self.events[index]
                    index += 1
                    if isinstance(event, kind) and predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(scan(), within)

    async def wait_state(
        self, state: ConnectionState, *, after: int = 0, within: float = 5.0
    ) -> ConnectionChanged:
        return await self.wait_for(ConnectionChanged, lambda e: e.state is state, after=after, within=within)

    async def wait_count(self, kind: type[E], count: int, *, within: float = 5.0) -> list[E]:
        async def scan() -> list[E]:
            while True:
                found = self.of(kind)
                if len(found) >= count:
                    return found
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(scan(), within)

    def mark(self) -> int:
        return len(self.events)


def _b64(obj: Any) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_jwt(sub: str, *, exp: float | None = None, email: str = "agent@example.com", nonce: str = "") -> str:
    """An unsigned-looking HS256 JWT with the claims the org server checks (not verifiable)."""
    payload: dict[str, Any] = {"sub": sub, "aud": "authenticated", "email": email, "role": "authenticated"}
    if exp is not None:
        payload["exp"] = int(exp)
    if nonce:
        payload["jti"] = nonce
    return f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(payload)}.c2lnbmF0dXJl"


# ---------------------------------------------------------------------------------------------
# Fakes at the app's ports (session, alert engine, GUI tests): one set, used everywhere


async def _done() -> None:
    return None


class FakeNotifier:
    """Records toasts at the call (the coroutine it returns does nothing)."""

    def __init__(self, available: bool = True, fail: bool = False) -> None:
        self.shown: list[Toast] = []
        self.withdrawn: list[str] = []
        self.callback: ToastCallback | None = None
        self._available = available
        self._fail = fail

    @property
    def available(self) -> bool:
        return self._available

    def set_callback(self, callback: ToastCallback) -> None:
        self.callback = callback

    def show(self, toast: Toast) -> Awaitable[None]:
        self.shown.append(toast)
        return self._failing() if self._fail else _done()

    def withdraw(self, key: str) -> Awaitable[None]:
        self.withdrawn.append(key)
        return _done()

    async def _failing(self) -> None:
        raise RuntimeError("the notification server went away")


class FakeSound:
    """Records what was played; ``available=False`` with a ``problem`` plays as no player here."""

    def __init__(self, available: bool = True, problem: str = "") -> None:
        self.played: list[tuple[SoundName, float]] = []
        self.problem = problem
        self._available = available

    @property
    def available(self) -> bool:
        return self._available

    def play(self, sound: SoundName, volume: float = 1.0) -> None:
        self.played.append((sound, volume))


class FakeCommandSink:
    """Records submitted commands."""

    def __init__(self) -> None:
        self.submitted: list[Command] = []

    def submit(self, command: Command) -> None:
        self.submitted.append(command)


def close_awaitable(awaitable: Awaitable[None]) -> None:
    """A spawn for engines/runners in sync tests: the fakes already recorded the call."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


class FakeTimer:
    """One pending call of :class:`FakeScheduler`."""

    def __init__(self, delay: float, callback: Callable[[], None]) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """A core.ports.Scheduler that runs nothing by itself: the test runs the calls."""

    def __init__(self) -> None:
        self.timers: list[FakeTimer] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(delay, callback)
        self.timers.append(timer)
        return timer

    @property
    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]

    def run_soon(self, within: float = 0.1) -> int:
        """Run the pending calls due within ``within`` seconds (the next loop turns); how many ran."""
        due = [t for t in self.pending if t.delay <= within]
        for timer in due:
            timer.cancelled = True  # ran: a handle cancelled later changes nothing
            timer.callback()
        return len(due)


class FakeAuthenticator:
    """An authenticator that records the passwords it was given."""

    def __init__(self, password: str | None = None, token: str | None = None) -> None:
        self.password = password
        self.token = token
        self.remembered: list[str] = []

    def set_password(self, password: str, *, remember: bool = False) -> None:
        self.password = password
        if remember:
            self.remembered.append(password)


class FakeSessionClient:
    """A network client for session tests: records commands and life-cycle calls."""

    def __init__(
        self, connection: Any, authenticator: Any, emit: Callable[[Event], None], outbox: Any
    ) -> None:
        self.connection = connection
        self.authenticator = authenticator
        self.emit = emit
        self.outbox = outbox
        self.submitted: list[Command] = []
        self.calls: list[str] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.calls.append("start")
        self.task = asyncio.ensure_future(asyncio.Event().wait())
        return self.task

    async def stop(self) -> None:
        self.calls.append("stop")
        self.emit(ConnectionChanged(state=ConnectionState.OFFLINE, detail="stopped"))

    def submit(self, command: Command) -> None:
        self.submitted.append(command)

    def reconnect_now(self, *, automatic: bool = False) -> None:
        self.calls.append("reconnect_now" + (" (automatic)" if automatic else ""))

    def request_resync(self, why: str = "") -> None:
        self.calls.append(f"resync:{why}")


class FakeFrontEnd:
    """The GUI as ``session.flows.AccountFlows`` sees it: records what it was asked to show."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def of(self, name: str) -> list[Any]:
        """The arguments of every call of ``name``, in order."""
        return [args for called, args in self.calls if called == name]

    def show_sign_in(self, problem: str) -> None:
        self.calls.append(("show_sign_in", problem))

    def close_sign_in(self) -> None:
        self.calls.append(("close_sign_in", None))

    def settings_save_failed(self, problem: str) -> None:
        self.calls.append(("settings_save_failed", problem))

    def appearance_changed(self, settings: Any) -> None:
        self.calls.append(("appearance_changed", settings))

    def show_info(self, title: str, text: str) -> None:
        self.calls.append(("show_info", (title, text)))


class FakeDiagnosticsWriter:
    """A diagnostics writer that records its inputs, or raises ``fail``."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.written: list[tuple[Any, dict[str, Any]]] = []

    async def __call__(self, target: Any, **inputs: Any) -> None:
        if self.fail is not None:
            raise self.fail
        self.written.append((target, inputs))


class FakeAutostart:
    """``platform.autostart.apply_autostart`` that records ``(wanted, locked)`` and answers ``problem``."""

    def __init__(self, problem: str = "") -> None:
        self.problem = problem
        self.applied: list[tuple[bool, bool]] = []

    def __call__(self, wanted: bool, *, locked: bool = False) -> Any:
        from tray_agent.platform.autostart import AutostartResult

        self.applied.append((wanted, locked))
        return AutostartResult(enabled=wanted and not self.problem, changed=True, problem=self.problem)
