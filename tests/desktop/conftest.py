"""Desktop-test fixtures: one real headless desktop session per pytest run (tests/desktop only).

``desktop`` (session scope) starts Xvfb, a private D-Bus bus, dunst, an SNI watcher,
gnome-keyring and PulseAudio (see :mod:`tests.desktop.session`) and stops exactly those
processes at the end. Every test under tests/desktop gets the ``desktop`` marker, and the
session's environment exported in ``os.environ`` for its duration (restored afterwards), so
in-process clients (desktop-notifier, keyring) talk to the session; the pytest process itself
stays on Qt's offscreen platform, anything needing xcb runs as a subprocess with ``desktop.env``.

When a binary is missing or the session cannot start, the tests SKIP naming what is missing,
except with ``CI=true`` in the environment: then they FAIL, so CI never silently skips them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.desktop.session import DesktopSession, SessionError, missing_binaries

HERE = Path(__file__).resolve().parent


def in_ci() -> bool:
    """Whether we run in CI, where desktop tests must never be skipped."""
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip the test because of ``reason``, or fail it in CI (``CI=true``)."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: desktop tests must not be skipped)", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything under tests/desktop with ``desktop``."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.desktop)


@pytest.fixture(scope="session")
def desktop() -> Iterator[DesktopSession]:
    """The running headless desktop session (started once, stopped at the end of the run)."""
    missing = missing_binaries()
    if missing:
        unavailable(
            "desktop session: missing " + ", ".join(missing) + " (install tools/desktop-packages.txt)"
        )
    # auto: status-notifier-watcher if installed, else tools/fake_sni_watcher.py; or real / fake.
    session = DesktopSession(sni_watcher=os.environ.get("TRAY_AGENT_SNI_WATCHER", "auto"))
    try:
        session.start()
    except (SessionError, TimeoutError, OSError) as exc:
        unavailable(f"desktop session did not start: {exc}")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(autouse=True)
def desktop_environ(desktop: DesktopSession) -> Iterator[DesktopSession]:
    """Export the session's environment into os.environ for one test and reset dunst first."""
    with desktop.environ():
        desktop.reset()
        yield desktop
