"""The environment's proxy (net.http.proxy_from_environment): the one rule the client and the doctor share."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from tray_agent.net.http import (
    SYSTEM_PROXY_ORIGIN,
    choose_proxy,
    proxy_from_environment,
    proxy_variable,
    system_proxy,
)

P = "http://proxy.corp:3128"
Q = "http://other.corp:8080"
HOST = "crm.example.test"


@dataclass(frozen=True)
class Case:
    """One environment, one target, and the (variable, URL) the client goes through (None: direct)."""

    id: str
    env: dict[str, str]
    expected: tuple[str, str] | None
    scheme: str = "https"
    host: str = HOST
    port: int = 443


CASES = [
    Case("nothing set", {}, None),
    Case("lowercase", {"https_proxy": P}, ("https_proxy", P)),
    Case("uppercase", {"HTTPS_PROXY": P}, ("HTTPS_PROXY", P)),
    Case("no scheme in the value", {"https_proxy": "proxy.corp:3128"}, ("https_proxy", "proxy.corp:3128")),
    Case("other scheme's variable", {"http_proxy": P}, None),
    Case("http target", {"http_proxy": P, "https_proxy": Q}, ("http_proxy", P), scheme="http", port=80),
    # The old doctor and the client disagreed on each case below.
    Case("lowercase wins (set second)", {"HTTPS_PROXY": Q, "https_proxy": P}, ("https_proxy", P)),
    Case("lowercase wins (set first)", {"https_proxy": P, "HTTPS_PROXY": Q}, ("https_proxy", P)),
    Case("empty lowercase means none", {"https_proxy": "", "HTTPS_PROXY": Q}, None),
    Case("empty uppercase means none", {"HTTPS_PROXY": ""}, None),
    Case("all_proxy is not read", {"all_proxy": P}, None),
    Case("ALL_PROXY is not read", {"ALL_PROXY": Q, "https_proxy": P}, ("https_proxy", P)),
    Case("CGI: HTTP_PROXY ignored", {"REQUEST_METHOD": "GET", "HTTP_PROXY": P}, None, scheme="http", port=80),
    Case(
        "CGI: http_proxy kept",
        {"REQUEST_METHOD": "GET", "http_proxy": P},
        ("http_proxy", P),
        scheme="http",
        port=80,
    ),
    Case("CGI: HTTPS_PROXY kept", {"REQUEST_METHOD": "GET", "HTTPS_PROXY": P}, ("HTTPS_PROXY", P)),
    Case(
        "* inside a list is no wildcard", {"https_proxy": P, "no_proxy": "other.test,*"}, ("https_proxy", P)
    ),
    Case("entry with another port", {"https_proxy": P, "no_proxy": f"{HOST}:8443"}, ("https_proxy", P)),
    Case("entry with the target's port", {"https_proxy": P, "no_proxy": f"{HOST}:443"}, None),
    Case("suffix with the port", {"https_proxy": P, "no_proxy": ".example.test:8443"}, None, port=8443),
    Case(
        "lowercase no_proxy wins",
        {"https_proxy": P, "no_proxy": "other.test", "NO_PROXY": "example.test"},
        ("https_proxy", P),
    ),
    Case(
        "empty lowercase no_proxy means none",
        {"https_proxy": P, "no_proxy": "", "NO_PROXY": "example.test"},
        ("https_proxy", P),
    ),
    # no_proxy
    Case("* alone", {"https_proxy": P, "no_proxy": "*"}, None),
    Case("exact host", {"https_proxy": P, "no_proxy": HOST}, None),
    Case("domain suffix", {"https_proxy": P, "no_proxy": "example.test"}, None),
    Case("leading dot", {"https_proxy": P, "no_proxy": ".example.test"}, None),
    Case("not a label boundary", {"https_proxy": P, "no_proxy": "ample.test"}, ("https_proxy", P)),
    Case("case-insensitive", {"https_proxy": P, "no_proxy": "CRM.Example.TEST"}, None),
    Case("spaces and empty entries", {"https_proxy": P, "no_proxy": " other.test , ,example.test "}, None),
    Case("NO_PROXY", {"https_proxy": P, "NO_PROXY": "example.test"}, None),
    Case("IPv4 literal", {"https_proxy": P, "no_proxy": "10.0.0.5"}, None, host="10.0.0.5"),
    Case("IPv6 literal", {"https_proxy": P, "no_proxy": "::1"}, None, host="::1", port=8443),
    Case("IPv6 with its port", {"https_proxy": P, "no_proxy": "[::1]:8443"}, None, host="::1", port=8443),
    Case(
        "IPv6 with another port",
        {"https_proxy": P, "no_proxy": "[::1]:443"},
        ("https_proxy", P),
        host="::1",
        port=8443,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_proxy_from_environment_follows_the_clients_rules(case: Case) -> None:
    assert proxy_from_environment(case.scheme, case.host, case.port, case.env) == case.expected


def test_proxy_variable_ignores_no_proxy() -> None:
    env = {"HTTPS_PROXY": P, "no_proxy": "*"}
    assert proxy_from_environment("https", HOST, 443, env) is None
    assert proxy_variable("https", env) == ("HTTPS_PROXY", P)
    assert proxy_variable("http", env) is None


@pytest.fixture
def windows_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Internet settings of a Windows machine: proxy P, bypassed for intranet.corp."""
    import urllib.request

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(urllib.request, "getproxies", lambda: {"https": P, "http": P})
    monkeypatch.setattr(urllib.request, "proxy_bypass", lambda host: host == "intranet.corp")


@pytest.mark.usefixtures("windows_settings")
def test_without_proxy_variables_the_systems_settings_are_chosen() -> None:
    assert choose_proxy("https", HOST, 443, {}) == (SYSTEM_PROXY_ORIGIN, P)
    assert choose_proxy("https", "intranet.corp", 443, {}) is None  # the settings' bypass list
    assert choose_proxy("https", HOST, 443, {"https_proxy": Q}) == ("https_proxy", Q)
    # Any proxy variable (no_proxy too) means the environment decides, as urllib's getproxies.
    assert choose_proxy("https", HOST, 443, {"no_proxy": "other.test"}) is None


def test_linux_has_no_system_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(urllib.request, "getproxies", lambda: {"https": P})
    assert system_proxy("https", HOST) is None
    assert choose_proxy("https", HOST, 443, {}) is None
