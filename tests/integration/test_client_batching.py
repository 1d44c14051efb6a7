"""The net Client hands a burst of buffered frames to a batching sink (``emit.many``) at once."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.helpers.fakes import EventRecorder, FakeClock, FakeSecretStore, RecordingSleep
from tests.helpers.net_clients import FAST, Rig, running
from tests.helpers.scripted_server import DashboardServer, dashboard_customer
from tray_agent.core.events import ConnectionState, Event, MessageReceived
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import DashboardAuthenticator
from tray_agent.net.client import Client

pytestmark = pytest.mark.integration


class BatchRecorder(EventRecorder):
    """An event sink with ``many``: records each batch's size besides the events, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def many(self, events: list[Event]) -> None:
        self.batches.append(len(events))
        for event in events:
            self(event)


def batching_rig(server: DashboardServer) -> tuple[Rig, BatchRecorder]:
    settings = ConnectionSettings(
        dialect="dashboard", server=server.url, company=server.company, email=server.email
    )
    secrets, clock, events, sleep = FakeSecretStore(), FakeClock(), BatchRecorder(), RecordingSleep()
    auth = DashboardAuthenticator(settings, secrets, clock, password="pw", keepalive_interval=3600.0)
    client = Client(DashboardCodec(), auth, settings, events, clock, timings=replace(FAST), sleep=sleep)
    return Rig(client, events, sleep, secrets, clock, settings), events


def text_frame(payload: str) -> bytes:
    """One unmasked server text frame (RFC 6455), as a server writes it."""
    data = payload.encode()
    if len(data) < 126:
        return bytes([0x81, len(data)]) + data
    return bytes([0x81, 126]) + len(data).to_bytes(2, "big") + data


@pytest.mark.asyncio
async def test_a_burst_of_buffered_frames_reaches_the_sink_in_batches_in_order() -> None:
    server = DashboardServer()
    server.customers = [dashboard_customer("p1", "c0")]
    async with server:
        rig, sink = batching_rig(server)
        async with running(rig):
            await sink.wait_state(ConnectionState.CONNECTED)
            (conn,) = server.connections
            before = len(sink.events)
            burst = [json.dumps(server.customer_message("p1", f"c{n % 3}", f"burst {n}")) for n in range(40)]
            transport = conn.request.transport
            assert transport is not None
            transport.write(b"".join(text_frame(frame) for frame in burst))  # one write: one read
            await sink.wait_for(MessageReceived, lambda e: e.text == "burst 39", after=before)
            texts = [e.text for e in sink.events[before:] if isinstance(e, MessageReceived)]
            assert texts == [f"burst {n}" for n in range(40)]
            # Fewer hand-overs than frames: the buffered frames came as batches, none was lost.
            assert sink.batches
            assert max(sink.batches) > 1
            assert sum(sink.batches) <= len(sink.events)
            # Afterwards a single frame still arrives (delivered before the loop waits again).
            await conn.send(server.customer_message("p1", "c1", "after the burst"))
            await sink.wait_for(MessageReceived, lambda e: e.text == "after the burst", after=before)
