"""Build a net Client wired to a scripted server with fast, injected timings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from tests.helpers.fakes import EventRecorder, FakeClock, FakeSecretStore, RecordingSleep
from tests.helpers.scripted_server import DashboardServer, OrgServer
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.protocol.org import OrgCodec
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import DashboardAuthenticator, OrgAuthenticator
from tray_agent.net.client import Client
from tray_agent.net.config import Timings

FAST = Timings(
    heartbeat_interval=30.0,
    heartbeat_timeout=30.0,
    command_timeout=2.0,
    resync_interval=None,
    backoff_base=0.01,
    backoff_max=0.05,
    stable_after=60.0,
    early_drop_window=60.0,
    open_timeout=3.0,
    close_timeout=0.3,
    protocol_ping_interval=None,
    protocol_ping_timeout=None,
    http_timeout=3.0,
)


@dataclass
class Rig:
    client: Client
    events: EventRecorder
    sleep: RecordingSleep
    secrets: FakeSecretStore
    clock: FakeClock
    settings: ConnectionSettings


def dashboard_rig(
    server: DashboardServer, *, timings: Timings = FAST, password: str = "pw", **changes: float
) -> Rig:
    settings = ConnectionSettings(
        dialect="dashboard", server=server.url, company=server.company, email=server.email
    )
    secrets, clock, events, sleep = FakeSecretStore(), FakeClock(), EventRecorder(), RecordingSleep()
    auth = DashboardAuthenticator(settings, secrets, clock, password=password, keepalive_interval=3600.0)
    client = Client(
        DashboardCodec(), auth, settings, events, clock, timings=replace(timings, **changes), sleep=sleep
    )
    return Rig(client, events, sleep, secrets, clock, settings)


def org_rig(
    server: OrgServer,
    *,
    timings: Timings = FAST,
    password: str | None = "pw",
    token: str | None = None,
    **changes: float,
) -> Rig:
    settings = ConnectionSettings(
        dialect="org",
        server=server.url,
        org=server.org_id,
        email=server.email,
        supabase_url=server.url,
        supabase_key=server.anon_key,
    )
    secrets, clock, events, sleep = FakeSecretStore(), FakeClock(), EventRecorder(), RecordingSleep()
    auth = OrgAuthenticator(settings, secrets, clock, password=password, token=token)
    codec = OrgCodec(org_id=server.org_id)
    client = Client(codec, auth, settings, events, clock, timings=replace(timings, **changes), sleep=sleep)
    return Rig(client, events, sleep, secrets, clock, settings)


@contextlib.asynccontextmanager
async def running_client(client: Client) -> AsyncIterator[Client]:
    """Start ``client``; stop it and wait for its task however the block ends."""
    task = client.start()
    try:
        yield client
    finally:
        await client.stop()
        await task


@contextlib.asynccontextmanager
async def running(rig: Rig) -> AsyncIterator[Rig]:
    """:func:`running_client` for a :class:`Rig`."""
    async with running_client(rig.client):
        yield rig


def sent_texts(server: DashboardServer) -> list[str]:
    """Every reply text the scripted dashboard server received, over all its connections."""
    return [f["message"] for c in server.connections for f in c.frames_of("send_message")]
