"""The client process never imports aiohttp (about 10 MB of idle memory): its HTTP is net.http."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from tests.integration.test_listen import ListenProcess, demo, flags_for, listen_env  # noqa: F401 (fixture)
from tray_agent.demo.server import DemoServer

pytestmark = pytest.mark.integration

# `tray-agent listen`, reporting on stderr at exit which aiohttp modules it had loaded.
WRAPPER = """
import atexit, sys
atexit.register(lambda: print("AIOHTTP:", sorted(m for m in sys.modules if m.split(".")[0] == "aiohttp"),
                              file=sys.stderr))
from tray_agent.cli import main
sys.exit(main(["listen", *sys.argv[1:]]))
"""


@pytest.mark.asyncio
async def test_a_client_session_never_imports_aiohttp(demo: DemoServer, tmp_path) -> None:  # noqa: F811
    agent = demo.info.agents[0]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRAPPER,
        *flags_for(demo, str(tmp_path)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=listen_env(agent.password),
    )
    listen = ListenProcess(proc)
    # Signed in over REST (Supabase token / dashboard login), resynced, then a take-over and a
    # reply: over REST in the org dialect.
    page = await listen.expect(lambda e: e["event"] == "waiting_list" and e["customers"])
    await listen.expect(lambda e: e["event"] == "connection" and e["state"] == "connected")
    conversation = next(c["conversation"] for c in page["customers"] if c["waiting"])
    for command in (
        {"cmd": "take_over", "conversation": conversation, "id": "t1"},
        {"cmd": "reply", "conversation": conversation, "text": "Halo", "id": "r1"},
    ):
        await listen.send(json.dumps(command))
        done = await listen.expect(
            lambda e, c=command: (
                e.get("command_id") == c["id"] and e["event"] in ("command_succeeded", "command_failed")
            )
        )
        assert done["event"] == "command_succeeded", done
    code, stderr = await listen.finish()
    assert code == 0, stderr
    assert "AIOHTTP: []" in stderr, stderr[-2000:]
