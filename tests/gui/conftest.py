"""GUI-test fixtures: a qasync loop for async tests, fakes at the ports, a store with helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
import qasync
from PySide6.QtWidgets import QApplication

from tests.helpers.fakes import (
    SETTABLE_NOW,
    FakeCommandSink,
    FakeNotifier,
    FakeSound,
    SettableClock,
    close_awaitable,
)
from tray_agent.core.events import ConnectionChanged, ConnectionState, Event, HumanRequested
from tray_agent.core.state import Store

__all__ = [
    "FakeCommandSink",
    "FakeNotifier",
    "FakeSound",
    "FakeWindowManager",
    "SettableClock",
    "close_awaitable",
]

NOW = SETTABLE_NOW


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], Any]]:
    """Async GUI tests run on a qasync loop over the test QApplication (DESKTOP-TESTING.md A)."""
    return {"qasync": lambda: qasync.QEventLoop(QApplication.instance() or QApplication([]))}


class FakeWindowManager:
    """Same methods as ui.windows.WindowManager; records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def show_inbox(self) -> None:
        self.calls.append(("show_inbox",))

    def open_chat(self, conversation: str) -> None:
        self.calls.append(("open_chat", conversation))

    def show_settings(self) -> None:
        self.calls.append(("show_settings",))

    def show_sign_in(self, problem: str = "") -> None:
        self.calls.append(("show_sign_in", problem))

    def restore_session(self) -> None:
        self.calls.append(("restore_session",))


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def notifier() -> FakeNotifier:
    return FakeNotifier()


@pytest.fixture
def sound() -> FakeSound:
    return FakeSound()


@pytest.fixture
def sink() -> FakeCommandSink:
    return FakeCommandSink()


@pytest.fixture
def windows() -> FakeWindowManager:
    return FakeWindowManager()


def connected(at: datetime = NOW) -> Event:
    return ConnectionChanged(state=ConnectionState.CONNECTED, at=at)


def escalation(key: str, name: str, minutes_ago: float = 1.0, now: datetime = NOW) -> Event:
    return HumanRequested(
        conversation=key, customer_name=name, text="help", at=now - timedelta(minutes=minutes_ago)
    )
