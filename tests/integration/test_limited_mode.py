"""Limited mode: WebSocket upgrades refused, REST works -> polling, same events, replies, and back to live."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import replace
from typing import TypeVar

import pytest

from tests.helpers.fakes import EventRecorder, FakeSecretStore
from tests.helpers.net_clients import FAST
from tests.integration.test_listen import flags_for, listen_env, start_listen
from tray_agent.core.commands import SendReply, TakeOver
from tray_agent.core.events import (
    CommandFailed,
    CommandSucceeded,
    ConnectionState,
    Dialect,
    FailureReason,
    HumanRequested,
    MessageReceived,
    SenderKind,
    WaitingChanged,
    WaitingListPage,
)
from tray_agent.core.ports import SystemClock
from tray_agent.core.protocol import codec_for
from tray_agent.core.settings import ConnectionSettings
from tray_agent.demo.server import DemoServer
from tray_agent.net.auth import authenticator_for
from tray_agent.net.client import Client

pytestmark = pytest.mark.integration

T = TypeVar("T")
LIMITED = ConnectionState.LIMITED
WAIT = 15.0


def _settings(server: DemoServer) -> ConnectionSettings:
    info = server.info
    agent = info.agents[0]
    if info.dialect == "org":
        return ConnectionSettings(
            dialect="org",
            server=info.url,
            org=agent.tenant,
            email=agent.email,
            supabase_url=info.extra["supabase_url"],
            supabase_key=info.extra["supabase_anon_key"],
        )
    return ConnectionSettings(dialect="dashboard", server=info.url, company=agent.tenant, email=agent.email)


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", ["dashboard", "org"])
async def test_client_polls_when_upgrades_are_refused_and_returns_to_live(dialect):
    async with DemoServer(dialect, refuse_upgrades=True) as server:
        settings = _settings(server)
        clock = SystemClock()
        auth = authenticator_for(settings, FakeSecretStore(), clock, password=server.info.agents[0].password)
        events = EventRecorder()
        timings = replace(FAST, poll_interval=0.1, ws_retry_interval=0.5, limited_after=3)
        client = Client(codec_for(Dialect(dialect)), auth, settings, events, clock, timings=timings)
        task = client.start()
        try:
            await events.wait_state(LIMITED, within=WAIT)
            assert ConnectionState.CONNECTED not in events.states()
            await events.wait_for(WaitingListPage, within=WAIT)  # the first poll: the baseline
            # An escalation while polling: the same events as live.
            result = await server.control("ask_for_human", text="I want a person please")
            customer = result["customer"]["ref"]
            asked = await events.wait_for(HumanRequested, lambda e: e.conversation == customer, within=WAIT)
            assert asked.conversation == customer
            await events.wait_for(
                WaitingChanged, lambda e: e.conversation == customer and e.waiting, within=WAIT
            )
            # A customer message in a watched conversation arrives once.
            mark = len(events.events)
            await server.control("customer_writes", customer=customer, text="Are you there?")
            got = await events.wait_for(
                MessageReceived, lambda e: e.text == "Are you there?", after=mark, within=WAIT
            )
            assert got.sender is SenderKind.CUSTOMER
            assert got.conversation == customer
            # A reply goes over REST, once.
            reply = SendReply(customer, "Yes, I am here.")
            client.submit(reply)
            await events.wait_for(CommandSucceeded, lambda e: e.command_id == reply.command_id, within=WAIT)
            demo_customer = next(c for c in server.backend.customers() if c.ref == customer)
            replies = await server.backend.agent_messages_since(demo_customer, 0)
            assert [text for _, text in replies] == ["Yes, I am here."]
            if dialect == "dashboard":
                # No REST route assigns to me on the dashboard: a clear failure, not a hang.
                take = TakeOver(customer)
                client.submit(take)
                failed = await events.wait_for(CommandFailed, lambda e: e.command_id == take.command_id)
                assert failed.reason is FailureReason.OFFLINE
                assert "limited mode" in failed.text
            # Two more polls: a message already seen never comes again.
            for _ in range(2):
                mark = len(events.events)
                await events.wait_for(WaitingListPage, after=mark, within=WAIT)
            assert sum(1 for e in events.of(MessageReceived) if e.text == "Are you there?") == 1
            await server.control("refuse_upgrades", on=False)
            await events.wait_state(ConnectionState.CONNECTED, within=WAIT)
            states = events.states()
            assert states.index(LIMITED) < states.index(ConnectionState.CONNECTED)
        finally:
            await client.stop()
            await task


async def _within(step: Awaitable[T]) -> T:
    # `expect` times out per line, but limited mode prints a waiting list every poll: bound the step.
    return await asyncio.wait_for(step, WAIT)


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", ["dashboard", "org"])
async def test_listen_keeps_working_in_limited_mode(dialect, tmp_path):
    async with DemoServer(dialect, refuse_upgrades=True, preload=1) as server:
        flags = [
            *flags_for(server, str(tmp_path)),
            "--set",
            "connection.poll_interval=2",
            "--set",
            "connection.ws_retry_interval=1",
        ]
        listen = await start_listen(flags, listen_env(server.info.agents[0].password))
        try:
            await _within(listen.expect(lambda e: e["event"] == "connection" and e["state"] == "limited"))
            await _within(listen.expect(lambda e: e["event"] == "waiting_list"))  # first poll: the baseline
            result = await server.control("ask_for_human", text="human please")
            customer = result["customer"]["ref"]
            await _within(
                listen.expect(lambda e: e["event"] == "human_requested" and e["conversation"] == customer)
            )
            reply = {"cmd": "reply", "conversation": customer, "text": "On it!", "id": "r1"}
            await listen.send(json.dumps(reply))
            await _within(
                listen.expect(lambda e: e["event"] == "command_succeeded" and e["command_id"] == "r1")
            )
            await server.control("refuse_upgrades", on=False)
            await _within(listen.expect(lambda e: e["event"] == "connection" and e["state"] == "connected"))
            code, _ = await listen.finish()
        finally:
            if listen.proc.returncode is None:
                listen.proc.kill()
                await listen.proc.wait()
        assert code == 0
        demo_customer = next(c for c in server.backend.customers() if c.ref == customer)
        assert [t for _, t in await server.backend.agent_messages_since(demo_customer, 0)] == ["On it!"]
