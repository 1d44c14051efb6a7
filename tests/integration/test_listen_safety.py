"""`tray-agent listen` never claims more than it did: durability of queued commands (a subprocess)."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from tests.integration.test_listen import WAIT, flags_for, listen_env, start_listen
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


@pytest.mark.asyncio
@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the site policy directory from XDG_CONFIG_DIRS"
)
async def test_listen_with_basedir_keeps_the_machine_policy_locks(tmp_path):
    site = tmp_path / "etc-xdg"
    (site / "tray-agent").mkdir(parents=True)
    (site / "tray-agent" / "policy.toml").write_text(
        'locked = ["connection.server"]\n[connection]\nserver = "https://it.example"\n', encoding="utf-8"
    )
    env = {**listen_env("pw"), "XDG_CONFIG_DIRS": str(site)}
    flags = ["--basedir", str(tmp_path / "base"), "--dialect", "dashboard", "--server", "http://127.0.0.1:9"]
    listen = await start_listen(flags, env)  # no company: stops at the settings check (exit 2)
    code, err = await listen.finish()
    assert code == 2, err
    assert "connection.server is locked by your administrator" in err, err


HOSTILE_NAME = "Ana\u009b2J\u202egnp.exe"  # a one-byte CSI (clear screen), then a right-to-left override
HOSTILE_TEXT = "hi\u009b31m red \u202eevil\u2028next \x7f"


@pytest.mark.asyncio
async def test_listen_output_carries_no_raw_control_or_bidi_characters(tmp_path):
    server = DemoServer("dashboard", preload=0)
    await server.start()
    listen = await start_listen(flags_for(server, str(tmp_path)), listen_env(server.info.agents[0].password))
    try:
        await listen.expect(lambda e: e["event"] == "connection" and e["state"] == "connected")
        customer = await server.backend.new_customer(name=HOSTILE_NAME)
        await server.backend.customer_writes(customer, HOSTILE_TEXT)
        assert listen.proc.stdout is not None
        raw_lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(listen.proc.stdout.readline(), WAIT)
            assert raw, f"listen exited; lines so far: {raw_lines[-5:]}"
            line = raw.decode("utf-8").removesuffix("\n")
            raw_lines.append(line)
            event = json.loads(line)
            if event["event"] == "message_received" and event["text"] == HOSTILE_TEXT:
                break
        assert event["customer_name"] == HOSTILE_NAME  # the value is intact for a JSON reader
        for line in raw_lines:  # ... and nothing in the bytes acts on a terminal
            assert all(not (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0) for ch in line), line
            assert not set(line) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
        assert "\\u009b" in line
    finally:
        listen.proc.kill()
        await listen.proc.wait()
        await server.stop()
