"""Wire codecs, one module per backend dialect (the only place JSON shapes live)."""

from __future__ import annotations

from typing import Any

from tray_agent.core.events import Dialect
from tray_agent.core.protocol.base import DialectCodec

__all__ = ["codec_for"]


def codec_for(dialect: Dialect, **kwargs: Any) -> DialectCodec:
    """Build the codec of a dialect, importing its module only now (keeps start-up light).

    Args:
        dialect: which backend.
        **kwargs: passed to the codec (org: ``user_id``, ``org_id``; dashboard: none).

    Raises:
        ValueError: for a dialect without a codec.
    """
    if dialect is Dialect.ORG:
        from tray_agent.core.protocol.org import OrgCodec

        return OrgCodec(**kwargs)
    if dialect is Dialect.DASHBOARD:
        from tray_agent.core.protocol.dashboard import DashboardCodec

        return DashboardCodec(**kwargs)
    raise ValueError(f"no codec for dialect {dialect!r}")
