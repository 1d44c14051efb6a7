"""`--demo`: start the built-in demo backend in-process and sign in to it with no configuration.

Used by the composition roots (``app.py`` and ``listen.py``) only: the demo package itself knows
nothing of the client, and this module only turns the demo's sign-in details into the same
command-line overrides an agent would type.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
from dataclasses import dataclass

from tray_agent.core.settings import ConnectionSettings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.demo.base import DemoInfo
from tray_agent.demo.server import DemoServer

logger = logging.getLogger(__name__)

DEMO_SIMULATE_RATE = 4.0  # simulated customers per minute: lively, but readable
DEMO_PRELOAD = 3  # customers already waiting when the app starts


@dataclass(frozen=True, slots=True)
class DemoSession:
    """A running demo backend and how to sign in to it."""

    server: DemoServer
    info: DemoInfo
    password: str


async def start_demo(dialect: str, *, seed: int | None = None) -> DemoSession:
    """Start the demo backend on a free loopback port with the customer simulator on.

    Args:
        dialect: ``"org"`` or ``"dashboard"``.
        seed: simulator seed (None: a different day every time).

    Returns:
        The running server (stop it with ``await session.server.stop()``) and its first agent's
        password.

    Raises:
        OSError: the loopback port could not be bound.
    """
    server = DemoServer(dialect, simulate=DEMO_SIMULATE_RATE, seed=seed, preload=DEMO_PRELOAD)
    info = await server.start()
    agent = info.agents[0]
    logger.info("demo backend (%s) at %s; signed in as %s", dialect, info.url, agent.email)
    return DemoSession(server=server, info=info, password=agent.password)


def demo_connection(info: DemoInfo) -> dict[str, str]:
    """The connection settings (``connection.*`` keys) that sign in as the demo's first agent."""
    agent = info.agents[0]
    values = {"dialect": info.dialect, "server": info.url, "email": agent.email}
    if info.dialect == "org":
        values["org"] = agent.tenant
        values["supabase_url"] = info.extra.get("supabase_url", info.url)
        values["supabase_key"] = info.extra.get("supabase_anon_key", "")
    else:
        values["company"] = agent.tenant
    return values


@dataclass(frozen=True, slots=True)
class DemoAccount:
    """The tray app's demo: its backend, the settings that sign in to it, a throw-away store.

    ``data_dir`` holds the demo account's local store; ``cleanup()`` it at the end.
    """

    server: DemoServer
    password: str
    loaded: LoadedSettings
    data_dir: tempfile.TemporaryDirectory[str]


async def start_demo_account(dialect: str, loaded: LoadedSettings, *, seed: int | None = None) -> DemoAccount:
    """:func:`start_demo` for the tray app, with the settings and the data directory to use.

    ``loaded`` gets the connection of the demo's first agent (nothing is saved); the account's
    local store goes in a temporary directory (the demo's account is throw-away).

    Raises:
        OSError: the loopback port could not be bound.
    """
    session = await start_demo(dialect, seed=seed)
    data_dir = tempfile.TemporaryDirectory(prefix="tray-agent-demo-")
    connection = ConnectionSettings(**demo_connection(session.info))
    settings = loaded.settings.model_copy(update={"connection": connection})
    logger.info(
        "Demo backend (%s) on %s, signed in as %s", connection.dialect, session.info.url, connection.email
    )
    return DemoAccount(
        session.server, session.password, dataclasses.replace(loaded, settings=settings), data_dir
    )


def apply_demo_flags(args: argparse.Namespace, session: DemoSession) -> None:
    """Set the connection flags on ``args`` as if the agent had typed them for the demo."""
    for key, value in demo_connection(session.info).items():
        setattr(args, key, value)
