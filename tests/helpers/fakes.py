"""Fakes at the ports for net tests: clock, secret store, event recorder, backoff sleep, JWTs."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from tray_agent.core.events import ConnectionChanged, ConnectionState, Event

E = TypeVar("E", bound=Event)


class FakeClock:
    """A clock whose monotonic time follows the real one plus a settable offset for ``now``."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now
        self.offset = 0.0

    def now(self) -> datetime:
        base = self._now if self._now is not None else datetime.now(UTC)
        return base + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


class FakeSecretStore:
    """An in-memory SecretStore."""

    persistent = False

    def __init__(self, initial: dict[str, str] | None = None) -> None:
        self.values: dict[str, str] = dict(initial or {})

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
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
