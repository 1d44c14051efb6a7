"""`tray-agent listen` as a user runs it: a subprocess against the demo backend, both dialects."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from tray_agent.demo.server import DemoServer

pytestmark = pytest.mark.integration

WAIT = 20.0  # generous upper bound for one expected line on a loaded 2-core machine


class ListenProcess:
    """A running `tray-agent listen` with helpers to send commands and await events."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        for event in self.events:
            if predicate(event):
                return event
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), WAIT)
            assert raw, f"listen exited; events so far: {self.events[-5:]}"
            event = json.loads(raw)
            self.events.append(event)
            if predicate(event):
                return event

    async def finish(self) -> tuple[int, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        out, err = await asyncio.wait_for(self.proc.communicate(), WAIT)
        self.events.extend(json.loads(line) for line in out.decode().splitlines() if line.strip())
        return self.proc.returncode if self.proc.returncode is not None else -1, err.decode()


def listen_env(password: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAY_AGENT_")}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"  # no keyring: memory only
    if password is not None:
        env["TRAY_AGENT_PASSWORD"] = password
    return env


async def start_listen(args: list[str], env: dict[str, str]) -> ListenProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tray_agent",
        "listen",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    return ListenProcess(proc)


def flags_for(server: DemoServer, basedir: str) -> list[str]:
    info = server.info
    agent = info.agents[0]
    flags = ["--basedir", basedir, "--dialect", info.dialect, "--server", info.url, "--email", agent.email]
    if info.dialect == "org":
        flags += [
            "--org",
            agent.tenant,
            "--supabase-url",
            info.extra["supabase_url"],
            "--supabase-key",
            info.extra["supabase_anon_key"],
        ]
    else:
        flags += ["--company", agent.tenant]
    return flags


@pytest_asyncio.fixture(params=["dashboard", "org"])
async def demo(request: pytest.FixtureRequest) -> AsyncIterator[DemoServer]:
    server = DemoServer(request.param, preload=2)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_listen_takes_over_replies_and_releases(demo: DemoServer, tmp_path):
    agent = demo.info.agents[0]
    listen = await start_listen(flags_for(demo, str(tmp_path)), listen_env(agent.password))
    page = await listen.expect(lambda e: e["event"] == "waiting_list" and e["customers"])
    await listen.expect(lambda e: e["event"] == "connection" and e["state"] == "connected")
    waiting = [c for c in page["customers"] if c["waiting"]]
    assert waiting, page
    conversation = waiting[0]["conversation"]

    await listen.send(json.dumps({"cmd": "take_over", "conversation": conversation, "id": "t1"}))
    done = await listen.expect(lambda e: e.get("command_id") == "t1" and e["event"].startswith("command_"))
    while done["event"] in ("command_queued", "command_sent"):
        done = await listen.expect(
            lambda e: e.get("command_id") == "t1" and e["event"] in ("command_succeeded", "command_failed")
        )
    assert done["event"] == "command_succeeded", done

    await listen.send(
        json.dumps({"cmd": "reply", "conversation": conversation, "text": "Halo, saya bantu ya", "id": "r1"})
    )
    reply = await listen.expect(
        lambda e: e.get("command_id") == "r1" and e["event"] in ("command_succeeded", "command_failed")
    )
    assert reply["event"] == "command_succeeded", reply

    customer = next(c for c in demo.backend.customers() if c.ref == conversation)
    replies = await demo.backend.agent_messages_since(customer, 0)
    assert [text for _, text in replies] == ["Halo, saya bantu ya"]  # delivered exactly once

    await listen.send("this is not json")
    bad = await listen.expect(lambda e: e["event"] == "command_failed" and e["reason"] == "invalid")
    assert "not JSON" in bad["text"]

    await listen.send(json.dumps({"cmd": "release", "conversation": conversation, "id": "x1"}))
    released = await listen.expect(
        lambda e: e.get("command_id") == "x1" and e["event"] in ("command_succeeded", "command_failed")
    )
    assert released["event"] == "command_succeeded", released

    code, stderr = await listen.finish()
    assert code == 0, stderr


@pytest.mark.asyncio
async def test_listen_customer_message_arrives_as_event(demo: DemoServer, tmp_path):
    agent = demo.info.agents[0]
    listen = await start_listen(flags_for(demo, str(tmp_path)), listen_env(agent.password))
    await listen.expect(lambda e: e["event"] == "connection" and e["state"] == "connected")
    customer = await demo.backend.new_customer(name="Rina <b>Putri</b>", language="id")
    await demo.backend.customer_writes(customer, "Pesanan saya belum sampai")
    message = await listen.expect(
        lambda e: e["event"] == "message_received" and e["text"] == "Pesanan saya belum sampai"
    )
    assert message["sender"] == "customer"
    assert message["conversation"] == customer.ref
    code, _ = await listen.finish()
    assert code == 0


@pytest.mark.asyncio
async def test_listen_wrong_password_exits_3_without_retry_storm(demo: DemoServer, tmp_path):
    listen = await start_listen(flags_for(demo, str(tmp_path)), listen_env("not-the-password"))
    await asyncio.wait_for(listen.proc.wait(), WAIT)  # stdin stays open: only the refusal ends it
    code, stderr = await listen.finish()
    assert code == 3, stderr
    states = [e["state"] for e in listen.events if e["event"] == "connection"]
    assert "auth_required" in states
    assert states.count("connecting") <= 2  # one sign-in, at most one retry: no storm


@pytest.mark.asyncio
async def test_listen_missing_settings_exits_2(tmp_path):
    listen = await start_listen(["--basedir", str(tmp_path), "--dialect", "dashboard"], listen_env(None))
    code, stderr = await listen.finish()
    assert code == 2
    assert "no server" in stderr
    assert "TRAY_AGENT_PASSWORD" in stderr


def message_texts(events: list[dict[str, Any]], conversation: str) -> list[str]:
    return [
        e["text"] for e in events if e["event"] == "message_received" and e["conversation"] == conversation
    ]


@pytest_asyncio.fixture(params=["dashboard", "org"])
async def noisy_demo(request: pytest.FixtureRequest) -> AsyncIterator[DemoServer]:
    """A demo backend that repeats itself: org WhatsApp messages come twice with one id (O6)."""
    options = {"whatsapp_split_events": True} if request.param == "org" else {}
    server = DemoServer(request.param, backend_options=options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def duplicate_frame(server: DemoServer, customer: Any, text: str) -> None:
    """The customer's message as the dashboard broadcasts it, twice: a webhook retry (G7: no ids)."""
    if server.info.dialect == "org":
        await server.backend.customer_writes(customer, text)  # WhatsApp: split into two events
        return
    page_id, customer_id = customer.ref.split("/", 1)
    data = {
        "chat_id": customer_id,
        "sender_id": customer_id,
        "sender_name": customer.name,
        "recipient_id": page_id,
        "message": text,
        "is_bot": False,
        "timestamp": int(time.time()),
    }
    for _ in range(2):
        server.backend.broadcast(customer.tenant, "new_message", data, page_id=page_id)


@pytest.mark.asyncio
async def test_listen_prints_the_stores_view_one_message_received_per_message(
    noisy_demo: DemoServer, tmp_path
):
    """Duplicates, self-echoes of my reply, empty bot replies and a reconnect: each message once,
    no empty message, one assignment_changed per change (issue 15, "listen prints what the app
    knows"). On the raw-event listen each of these printed twice (or printed the empty reply)."""
    server = noisy_demo
    agent = server.info.agents[0]
    listen = await start_listen(flags_for(server, str(tmp_path)), listen_env(agent.password))
    await listen.expect(lambda e: e["event"] == "connection" and e["state"] == "connected")
    org = server.info.dialect == "org"
    backend: Any = server.backend
    customer = await (
        backend.new_customer(name="Rina", channel="whatsapp") if org else backend.new_customer(name="Rina")
    )
    conversation = customer.ref

    def mine(text: str) -> Callable[[dict[str, Any]], bool]:
        return lambda e: (
            e["event"] == "message_received" and e["conversation"] == conversation and e["text"] == text
        )

    await backend.customer_writes(customer, "satu")
    await listen.expect(mine("satu"))
    await duplicate_frame(server, customer, "dua")
    await listen.expect(mine("dua"))
    await backend.bot_replies(customer, "")  # a cleared bot reply (G8)
    await backend.ask_for_human(customer, "tolong")
    await listen.expect(lambda e: e["event"] == "human_requested" and e["conversation"] == conversation)

    await listen.send(json.dumps({"cmd": "take_over", "conversation": conversation, "id": "t1"}))
    taken = await listen.expect(
        lambda e: e.get("command_id") == "t1" and e["event"] in ("command_succeeded", "command_failed")
    )
    assert taken["event"] == "command_succeeded", taken
    await listen.send(json.dumps({"cmd": "reply", "conversation": conversation, "text": "Halo", "id": "r1"}))
    replied = await listen.expect(
        lambda e: e.get("command_id") == "r1" and e["event"] in ("command_succeeded", "command_failed")
    )
    assert replied["event"] == "command_succeeded", replied
    await listen.expect(mine("Halo"))

    connected_before = sum(
        1 for e in listen.events if e["event"] == "connection" and e["state"] == "connected"
    )
    assert await backend.drop_sockets() >= 1
    await listen.expect(
        lambda e: (
            e["event"] == "connection"
            and e["state"] == "connected"
            and sum(1 for x in listen.events if x["event"] == "connection" and x["state"] == "connected")
            > connected_before
        )
    )
    await backend.customer_writes(customer, "setelah")
    await listen.expect(mine("setelah"))
    await listen.send(json.dumps({"cmd": "refresh"}))
    code, stderr = await listen.finish()
    assert code == 0, stderr

    texts = message_texts(listen.events, conversation)
    assert "" not in texts, texts  # the cleared bot reply is no message
    for text in ("satu", "dua", "tolong", "Halo", "setelah"):
        assert texts.count(text) == 1, (text, texts)
    ids = [
        e["message_id"]
        for e in listen.events
        if e["event"] == "message_received" and e["conversation"] == conversation and e["message_id"]
    ]
    assert len(ids) == len(set(ids)), ids
    assignments = [
        e for e in listen.events if e["event"] == "assignment_changed" and e["conversation"] == conversation
    ]
    assert len(assignments) == 1, assignments
    assert assignments[0]["is_me"] is True
    assert assignments[0]["action"] == "assigned"


@pytest.mark.asyncio
async def test_listen_prints_a_message_sent_during_a_reconnect_once(noisy_demo: DemoServer, tmp_path):
    """Issue 15: a customer of mine writes while the socket is down (upgrades refused, as during a
    reconnect through a broken proxy); nothing replays the broadcast, so the message reaches
    ``listen`` after the resync (catch-up, or limited-mode polling), exactly once."""
    server = noisy_demo
    agent = server.info.agents[0]
    listen = await start_listen(flags_for(server, str(tmp_path)), listen_env(agent.password))
    await listen.expect(lambda e: e["event"] == "connection" and e["state"] == "connected")
    backend: Any = server.backend
    customer = await backend.new_customer(name="Sinta")
    conversation = customer.ref
    await backend.ask_for_human(customer, "tolong")
    await listen.expect(lambda e: e["event"] == "human_requested" and e["conversation"] == conversation)
    await listen.send(json.dumps({"cmd": "take_over", "conversation": conversation, "id": "t1"}))
    taken = await listen.expect(
        lambda e: e.get("command_id") == "t1" and e["event"] in ("command_succeeded", "command_failed")
    )
    assert taken["event"] == "command_succeeded", taken

    backend.set_refuse_upgrades(True)
    assert await backend.drop_sockets() >= 1
    await listen.expect(lambda e: e["event"] == "connection" and e["state"] != "connected")
    await backend.customer_writes(customer, "selama terputus")
    backend.set_refuse_upgrades(False)
    await listen.expect(
        lambda e: (
            e["event"] == "message_received"
            and e["conversation"] == conversation
            and e["text"] == "selama terputus"
        )
    )
    await backend.customer_writes(customer, "sesudahnya")  # live again: ordering and no replay
    await listen.expect(
        lambda e: (
            e["event"] == "message_received"
            and e["conversation"] == conversation
            and e["text"] == "sesudahnya"
        )
    )
    code, stderr = await listen.finish()
    assert code == 0, stderr
    texts = message_texts(listen.events, conversation)
    assert texts.count("selama terputus") == 1, texts
    assert texts.count("sesudahnya") == 1, texts
