"""The doctor's reading of the proxy setting: the client's own (net.http), never a crash."""

from __future__ import annotations

import os

import pytest

from tests.unit.net.test_proxy_environment import CASES, Case, windows_settings  # noqa: F401 - fixture
from tray_agent.checks.network import Target, find_proxy
from tray_agent.checks.results import Status
from tray_agent.core.settings import ConnectionSettings
from tray_agent.net.http import environment_proxy, parse_proxy

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


# -- the doctor and the client choose the same environment proxy --------------------------------------


def _client_choice(case: Case, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int, str | None] | None:
    """The proxy the client's HTTP layer picks with ``case.env`` as its process environment."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    proxy = environment_proxy(case.scheme, case.host, case.port)
    return None if proxy is None else (proxy.host, proxy.port, proxy.authorization)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_doctor_and_the_client_choose_the_same_environment_proxy(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = Target(case.scheme, case.host, case.port, "")
    proxy, result = find_proxy(ConnectionSettings(), target, case.env)
    doctor = None if proxy is None else (proxy.host, proxy.port, proxy.authorization)
    assert doctor == _client_choice(case, monkeypatch)
    assert result.status is Status.OK
    if case.expected is None:
        assert proxy is None
    else:
        assert proxy is not None
        assert proxy.origin == case.expected[0]  # the report names the variable the client reads


def test_the_doctor_says_when_no_proxy_bypasses_the_environment_proxy() -> None:
    env = {"HTTPS_PROXY": "http://u:secret@proxy.corp:3128", "no_proxy": ".example.test"}
    proxy, result = find_proxy(ConnectionSettings(), TARGET, env)
    assert proxy is None
    assert result.message == "proxy http://proxy.corp:3128 is bypassed for crm.example.test (no_proxy)"
    _, result = find_proxy(ConnectionSettings(), TARGET, {})
    assert result.message == "no proxy: direct connection"


@pytest.mark.usefixtures("windows_settings")
def test_the_doctor_and_the_client_both_read_the_systems_proxy_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy, _ = find_proxy(ConnectionSettings(), TARGET, {})
    assert proxy is not None
    assert (proxy.host, proxy.port, proxy.origin) == ("proxy.corp", 3128, "system proxy settings")
    no_variables = Case("no proxy variables", {}, None)
    assert _client_choice(no_variables, monkeypatch) == (proxy.host, proxy.port, proxy.authorization)
