"""`tray-agent listen` never claims more than it did: durability of queued commands (a subprocess)."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_listen import flags_for, listen_env, start_listen
from tray_agent.demo.server import DemoServer

pytestmark = pytest.mark.integration


@pytest.mark.asyncio
async def test_listen_says_when_a_queued_reply_was_not_saved(tmp_path):
    server = DemoServer("dashboard", preload=1)
    await server.start()
    try:
        password = server.info.agents[0].password
        for basedir, durable in ((tmp_path / "good", True), (tmp_path / "bad", False)):
            if not durable:  # the data directory cannot be created: the store runs in memory only
                basedir.mkdir()
                (basedir / "data").write_text("a file where the data directory should be")
            listen = await start_listen(flags_for(server, str(basedir)), listen_env(password))
            try:
                page = await listen.expect(lambda e: e["event"] == "waiting_list" and e["customers"])
                conversation = page["customers"][0]["conversation"]
                line = {"cmd": "reply", "conversation": conversation, "text": "Halo", "id": f"r-{durable}"}
                await listen.send(json.dumps(line))
                queued = await listen.expect(
                    lambda e, i=line["id"]: e["event"] == "command_queued" and e["command_id"] == i
                )
                assert queued["durable"] is durable, queued
                code, err = await listen.finish()
            finally:
                if listen.proc.returncode is None:
                    listen.proc.kill()
                    await listen.proc.wait()
            assert code == 0, err
            assert ("local store" in err) is not durable, err  # the store's problem is on stderr too
    finally:
        await server.stop()
