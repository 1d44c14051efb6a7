"""What each codec knows about its socket: the URL, who signed in, and a displacing close."""

from __future__ import annotations

import pytest

from tray_agent.core.protocol.base import UrlError
from tray_agent.core.protocol.dashboard import DashboardCodec
from tray_agent.core.protocol.org import OrgCodec


def test_org_codec_ws_url_carries_the_org_and_token_and_follows_the_scheme() -> None:
    codec = OrgCodec(org_id="from-codec")
    url = codec.ws_url("https://crm.example.com:8443/api", token="a.b.c", org="o 1")
    assert url == "wss://crm.example.com:8443/api/ws/o%201?token=a.b.c"
    assert codec.ws_url("http://127.0.0.1:8000", token="t") == "ws://127.0.0.1:8000/ws/from-codec?token=t"


def test_org_codec_ws_url_needs_an_organization() -> None:
    with pytest.raises(UrlError, match="organization"):
        OrgCodec().ws_url("https://x", token="t")


def test_dashboard_codec_ws_url_has_no_secret_in_it() -> None:
    codec = DashboardCodec()
    assert codec.ws_url("http://127.0.0.1:8080", token="secret") == "ws://127.0.0.1:8080/api/dashboard/ws"
    assert codec.ws_url("https://h/prefix/") == "wss://h/prefix/api/dashboard/ws"


@pytest.mark.parametrize("codec", [OrgCodec(), DashboardCodec()])
def test_codec_signed_in_keeps_a_known_user_id(codec: OrgCodec | DashboardCodec) -> None:
    codec.signed_in("u1")
    assert codec.user_id == "u1"
    codec.signed_in("")  # an unknown id never forgets the known one
    assert codec.user_id == "u1"


def test_only_the_dashboards_empty_close_means_displaced() -> None:
    assert DashboardCodec().displaced(1005)
    assert not DashboardCodec().displaced(1000)
    assert not DashboardCodec().displaced(None)
    assert not OrgCodec().displaced(1005)
