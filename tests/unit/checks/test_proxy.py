"""The doctor's reading of the proxy setting: the client's own (net.http), never a crash."""

from __future__ import annotations

import pytest

from tray_agent.checks.network import Target, find_proxy
from tray_agent.checks.results import Status
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.http import parse_proxy

TARGET = Target("https", "crm.example.test", 443, "")


@pytest.mark.parametrize(
    "url", ["http://proxy.corp:3128", "proxy.corp:3128", "http://user:pw@proxy.corp", "http://proxy.corp"]
)
def test_the_doctor_reads_the_proxy_as_the_client_does(url: str) -> None:
    proxy, result = find_proxy(ConnectionSettings(proxy=url), TARGET, {})
    used = parse_proxy(url)
    assert proxy is not None
    assert result.status is Status.OK
    assert (proxy.host, proxy.port, proxy.authorization) == (used.host, used.port, used.authorization)
    assert "pw" not in result.message
    assert "user" not in result.message


@pytest.mark.parametrize("url", ["http://proxy.corp:99999", "http://[::1", "socks5://proxy.corp:1080"])
def test_an_unusable_proxy_setting_is_a_warning_not_a_crash(url: str) -> None:
    proxy, result = find_proxy(ConnectionSettings(proxy=url), TARGET, {})
    assert proxy is None
    assert result.status is Status.WARN
    assert "proxy" in result.message


def test_an_unusable_environment_proxy_is_a_warning_not_a_crash() -> None:
    proxy, result = find_proxy(ConnectionSettings(), TARGET, {"https_proxy": "http://u:secret@proxy:70000"})
    assert proxy is None
    assert result.status is Status.WARN
    assert "secret" not in result.message
