"""TLS: the OS trust store plus the policy's CA bundle, always verifying; a bad bundle is a state."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from tests.helpers.fakes import EventRecorder, FakeClock, FakeSecretStore
from tests.unit.net.test_client_units import FakeCodec
from tray_agent.core.events import ConnectionChanged, ConnectionState
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import DashboardAuthenticator, make_ssl_context
from tray_agent.net.client import Client


def test_context_always_verifies_certificates_and_host_names() -> None:
    context = make_ssl_context(ConnectionSettings(server="https://crm.example.com"))
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_unreadable_ca_bundle_raises_for_the_caller(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        make_ssl_context(ConnectionSettings(ca_bundle=str(tmp_path / "missing.pem")))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        make_ssl_context(ConnectionSettings(ca_bundle=str(garbage)))


@pytest.mark.asyncio
async def test_client_with_a_bad_ca_bundle_goes_offline_and_says_why(tmp_path) -> None:
    events = EventRecorder()
    settings = ConnectionSettings(
        dialect="dashboard",
        server="https://crm.example.com",
        email="a@b.c",
        company="co",
        ca_bundle=str(tmp_path / "missing.pem"),
    )
    clock = FakeClock()
    client = Client(
        FakeCodec(),
        DashboardAuthenticator(settings, FakeSecretStore(), clock, password="pw"),
        settings,
        events,
        clock,
    )
    await asyncio.wait_for(client.run(), 10)  # returns at once: nothing to retry until settings change
    (changed,) = events.of(ConnectionChanged)
    assert changed.state is ConnectionState.OFFLINE
    assert "CA bundle" in changed.detail
    await client.stop()
