"""A reply queued offline survives SIGKILL of `tray-agent listen` and is delivered exactly once."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_listen import ListenProcess, flags_for, listen_env, start_listen
from tray_agent.demo.server import DemoServer

pytestmark = pytest.mark.integration


def _is(event_name: str, command_id: str):
    return lambda e: e["event"] == event_name and e.get("command_id") == command_id


async def _first_waiting(listen: ListenProcess) -> str:
    page = await listen.expect(lambda e: e["event"] == "waiting_list" and e["customers"])
    waiting = [c for c in page["customers"] if c["waiting"]]
    assert waiting, page
    return str(waiting[0]["conversation"])


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", ["dashboard", "org"])
async def test_reply_queued_offline_survives_sigkill_and_is_delivered_once(dialect, tmp_path):
    db = tmp_path / "demo.sqlite3"
    basedir = str(tmp_path / "agent")
    text = f"Sorry for the wait ({dialect}), here is your answer."
    server = DemoServer(dialect, db_path=db, preload=1)
    await server.start()
    port = server.port
    password = server.info.agents[0].password
    flags = flags_for(server, basedir)
    first = await start_listen(flags, listen_env(password))
    try:
        conversation = await _first_waiting(first)
        await first.expect(lambda e: e["event"] == "connection" and e["state"] == "connected")
        await server.stop()  # the backend goes away: the reply can only be queued
        await first.expect(lambda e: e["event"] == "connection" and e["state"] == "reconnecting")
        await first.send(json.dumps({"cmd": "reply", "conversation": conversation, "text": text, "id": "r1"}))
        await first.expect(_is("command_queued", "r1"))  # printed only after the durable write
    finally:
        first.proc.kill()  # SIGKILL: no chance to flush or settle anything
        await first.proc.wait()
    assert not any(e["event"] == "command_sent" for e in first.events)

    server = DemoServer(dialect, db_path=db, port=port)  # same port and data: the "rebooted" backend
    await server.start()
    try:
        second = await start_listen(flags, listen_env(password))
        try:
            await second.expect(_is("command_queued", "r1"))  # restored from the outbox
            await second.expect(lambda e: e["event"] == "connection" and e["state"] == "connected")
            await second.expect(_is("command_succeeded", "r1"))
            await second.send(json.dumps({"cmd": "history", "conversation": conversation, "id": "h1"}))
            history = await second.expect(
                lambda e: e["event"] == "history" and e["conversation"] == conversation
            )
            mine = [m for m in history["messages"] if m["text"] == text]
            assert len(mine) == 1, history["messages"]
            code, _ = await second.finish()
        finally:
            if second.proc.returncode is None:
                second.proc.kill()
                await second.proc.wait()
        assert code == 0
        assert sum(1 for e in second.events if _is("command_sent", "r1")(e)) == 1
        assert not any(e["event"] == "command_failed" for e in second.events if e.get("command_id") == "r1")
    finally:
        await server.stop()
