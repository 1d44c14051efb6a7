"""The client's configuration without sockets: URLs from the settings, timings and the machine's share."""

from __future__ import annotations

import pytest

from tray_agent.core.events import Dialect
from tray_agent.core.protocol.auth import redact_url
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.auth import Credentials
from tray_agent.net.config import POLL_ERRORS_BEFORE_GIVING_UP, ConfigError, Timings, http_base, ws_url
from tray_agent.net.connection import MachineTimings

# -- timings ----------------------------------------------------------------------------------------


def test_timings_come_from_settings() -> None:
    settings = ConnectionSettings(
        heartbeat_interval=30, heartbeat_timeout=5, resync_interval=120, backoff_max=90
    )
    timings = Timings.from_settings(settings)
    assert (timings.heartbeat_interval, timings.heartbeat_timeout) == (30, 5)
    assert (timings.resync_interval, timings.backoff_max, timings.command_timeout) == (120, 90, 10)


def test_timings_give_the_machine_its_share() -> None:
    timings = Timings(heartbeat_interval=3, heartbeat_timeout=2, limited_after=7, ws_retry_interval=9)
    assert timings.for_machine() == MachineTimings(
        heartbeat_interval=3,
        heartbeat_timeout=2,
        stable_after=timings.stable_after,
        early_drop_window=timings.early_drop_window,
        limited_after=7,
        poll_interval=timings.poll_interval,
        ws_retry_interval=9,
        backoff_max=timings.backoff_max,
        poll_errors_before_giving_up=POLL_ERRORS_BEFORE_GIVING_UP,
    )


# -- URLs -----------------------------------------------------------------------------------------


def test_ws_url_per_dialect() -> None:
    org = ConnectionSettings(dialect="org", server="https://crm.example.com:8443/api/", org="o 1")
    url = ws_url(org, Dialect.ORG, Credentials(token="a.b.c"))
    assert url == "wss://crm.example.com:8443/api/ws/o%201?token=a.b.c"
    assert redact_url(url) == "wss://crm.example.com:8443/api/ws/o%201"
    dash = ConnectionSettings(dialect="dashboard", server="http://127.0.0.1:8080")
    assert ws_url(dash, Dialect.DASHBOARD, Credentials(cookie="s")) == "ws://127.0.0.1:8080/api/dashboard/ws"
    assert http_base(dash) == "http://127.0.0.1:8080"


def test_urls_refuse_bad_or_insecure_servers() -> None:
    with pytest.raises(ConfigError):
        http_base(ConnectionSettings(server=""))
    with pytest.raises(ConfigError):
        http_base(ConnectionSettings(server="ftp://x"))
    with pytest.raises(ConfigError, match="unencrypted"):
        http_base(ConnectionSettings(server="http://crm.example.com"))
    assert http_base(ConnectionSettings(server="http://crm.example.com", allow_insecure=True))
    assert http_base(ConnectionSettings(server="http://localhost:8000"))
    with pytest.raises(ConfigError, match="organization"):
        ws_url(ConnectionSettings(dialect="org", server="https://x"), Dialect.ORG, Credentials(token="t"))
