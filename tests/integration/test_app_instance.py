"""The app as a process: one instance per user, later launches and deep links hand over to it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

pytestmark = pytest.mark.integration

WAIT = 30.0


async def _start_app(*args: str) -> asyncio.subprocess.Process:
    env = dict(
        os.environ, QT_QPA_PLATFORM="offscreen", PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring"
    )
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tray_agent",
        *args,
        "-v",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def _wait_for_line(proc: asyncio.subprocess.Process, fragment: str) -> None:
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), WAIT)
        assert line, f"the app exited before logging {fragment!r}"
        if fragment in line.decode(errors="replace"):
            return


@pytest.mark.asyncio
async def test_second_launch_and_deep_link_hand_over_to_the_running_app(tmp_path):
    basedir = str(tmp_path)
    first = await _start_app("--demo", "--basedir", basedir)
    try:
        await _wait_for_line(first, "Single instance: listening")

        second = await _start_app("--basedir", basedir)
        assert await asyncio.wait_for(second.wait(), WAIT) == 0
        await _wait_for_line(first, "Another launch asked to show the app")

        link = await _start_app("tray-agent://open/101000000000001%2F42", "--basedir", basedir)
        assert await asyncio.wait_for(link.wait(), WAIT) == 0
        await _wait_for_line(first, "Another launch asked to open a conversation")
    finally:
        if first.returncode is None:
            first.send_signal(signal.SIGTERM)
        await asyncio.wait_for(first.communicate(), WAIT)  # drains stderr so the app never blocks on it
        assert first.returncode == 0


@pytest.mark.asyncio
async def test_malformed_link_exits_2(tmp_path):
    proc = await _start_app("tray-agent://delete/everything", "--basedir", str(tmp_path))
    assert proc.stderr is not None
    err = await asyncio.wait_for(proc.stderr.read(), WAIT)
    assert await proc.wait() == 2
    assert b"tray-agent" in err
