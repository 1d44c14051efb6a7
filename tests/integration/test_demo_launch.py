"""demo_launch.start_demo_account: the tray app's --demo (backend, sign-in settings, throw-away store)."""

from __future__ import annotations

import os

import pytest

from tray_agent.core.settings import Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.demo_launch import start_demo_account

pytestmark = [pytest.mark.integration]


@pytest.mark.asyncio
@pytest.mark.parametrize("dialect", ["dashboard", "org"])
async def test_demo_account_signs_in_as_the_first_agent_with_a_throw_away_store(dialect: str) -> None:
    before = LoadedSettings(settings=Settings())
    demo = await start_demo_account(dialect, before, seed=7)
    try:
        info = demo.server.info
        agent = info.agents[0]
        connection = demo.loaded.settings.connection
        assert (connection.dialect, connection.server, connection.email) == (dialect, info.url, agent.email)
        assert (connection.org if dialect == "org" else connection.company) == agent.tenant
        assert demo.password == agent.password
        assert before.settings.connection.server == ""  # nothing else changed, nothing saved
        assert demo.loaded.settings.alerts == before.settings.alerts
        assert os.path.isdir(demo.data_dir.name)  # noqa: ASYNC240 (a test's one stat)
    finally:
        await demo.server.stop()
        demo.data_dir.cleanup()
    assert not os.path.exists(demo.data_dir.name)  # noqa: ASYNC240
