"""Messages written while the client reconnects arrive after the resync, once (issue 15), both demos."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.fakes import EventRecorder, FakeSecretStore
from tests.helpers.net_clients import FAST
from tray_agent.core.events import ConnectionState, Dialect, MessageReceived
from tray_agent.core.ports import SystemClock
from tray_agent.core.protocol import codec_for
from tray_agent.core.settings import ConnectionSettings
from tray_agent.demo.server import DemoServer
from tray_agent.net.auth import authenticator_for
from tray_agent.net.client import Client

pytestmark = pytest.mark.integration


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", ["org", "dashboard"])
async def test_message_written_while_reconnecting_arrives_once(tmp_path: Path, dialect: str) -> None:
    server = DemoServer(dialect, db_path=tmp_path / "demo.sqlite3")
    await server.start()
    try:
        agent = server.info.agents[0]
        extra = server.info.extra
        settings = ConnectionSettings(
            dialect=dialect,  # type: ignore[arg-type]
            server=server.url,
            org=agent.tenant if dialect == "org" else "",
            company=agent.tenant if dialect == "dashboard" else "",
            email=agent.email,
            supabase_url=server.url if dialect == "org" else "",
            supabase_key=extra.get("supabase_anon_key", "") if dialect == "org" else "",
        )
        clock, events = SystemClock(), EventRecorder()
        auth = authenticator_for(settings, FakeSecretStore(), clock, password=agent.password)
        kwargs = {"org_id": settings.org} if dialect == "org" else {}
        client = Client(
            codec_for(Dialect(dialect), **kwargs), auth, settings, events, clock, timings=replace(FAST)
        )
        task = client.start()
        try:
            customer = await server.backend.new_customer(tenant=agent.tenant)
            await events.wait_state(ConnectionState.CONNECTED)
            await server.backend.customer_writes(customer, "first words")
            await events.wait_for(MessageReceived, lambda e: e.text == "first words")
            # A customer waiting for a human: the dashboard's resync lists only those.
            await server.backend.ask_for_human(customer, "a human please")
            await events.wait_for(MessageReceived, lambda e: e.text == "a human please")
            server.backend.set_silent(True)  # the broadcast of the next message is lost
            await server.backend.customer_writes(customer, "written while away")
            server.backend.set_silent(False)
            mark = events.mark()
            await server.backend.drop_sockets()
            await events.wait_state(ConnectionState.CONNECTED, after=mark)
            caught = await events.wait_for(MessageReceived, lambda e: e.text == "written while away")
            assert caught.conversation == customer.ref
            # Once: another resync delivers nothing new; a live sentinel proves the catch-up ran.
            client.request_resync("test")
            await server.backend.customer_writes(customer, "sentinel")
            await events.wait_for(MessageReceived, lambda e: e.text == "sentinel")
            texts = [e.text for e in events.of(MessageReceived) if e.conversation == customer.ref]
            assert texts.count("written while away") == 1
        finally:
            await client.stop()
            await task
    finally:
        await server.stop()
