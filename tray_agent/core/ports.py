"""Protocols the core needs from the outside: command sink, notifier, sound, secrets, clock.

Implementations live in net/ (CommandSink) and platform/ (the rest), each platform port with a
Null implementation so the app keeps running where the OS service is missing. Tests use fakes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from tray_agent.core.commands import Command
from tray_agent.core.effects import SoundName, Toast, ToastAction


class Clock(Protocol):
    """Time source; injected so that tests control time."""

    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds, for timeouts and rate limits."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:  # noqa: D102
        return datetime.now(UTC)

    def monotonic(self) -> float:  # noqa: D102
        return time.monotonic()


class CommandSink(Protocol):
    """Where user intents go (the network client)."""

    def submit(self, command: Command) -> None:
        """Queue a command; its outcome arrives later as events. Never raises."""
        ...


ToastCallback = Callable[[str, ToastAction | None], None]
"""Called with (toast key, button) when a toast is clicked (button None) or a button pressed."""


class Notifier(Protocol):
    """Native notifications."""

    @property
    def available(self) -> bool:
        """False when toasts cannot be shown at all (Null notifier); the UI says so."""
        ...

    def set_callback(self, callback: ToastCallback) -> None:
        """Register the single click/button handler."""
        ...

    def show(self, toast: Toast) -> Awaitable[None]:
        """Show or replace (same key) a toast. Never raises; failures are logged."""
        ...

    def withdraw(self, key: str) -> Awaitable[None]:
        """Remove a toast if it is still shown. Never raises."""
        ...


class Sound(Protocol):
    """Alert sounds."""

    @property
    def available(self) -> bool:
        """False when no playback works here (no player, no device)."""
        ...

    def play(self, sound: SoundName, volume: float = 1.0) -> None:
        """Start playing, without blocking. Never raises."""
        ...


class SecretStore(Protocol):
    """OS keyring access (blocking calls; run them in an executor from async code)."""

    @property
    def persistent(self) -> bool:
        """False when secrets live in memory only for this run (no keyring)."""
        ...

    def get(self, key: str) -> str | None:
        """The secret, or None."""
        ...

    def set(self, key: str, value: str) -> None:
        """Store a secret. Never raises; falls back to memory with a logged warning."""
        ...

    def delete(self, key: str) -> None:
        """Remove a secret if present. Never raises."""
        ...
