"""`listen`'s console: a discarded command is settled (listen can exit), and it is printed."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from tray_agent.core.events import CommandDiscarded, CommandKind, CommandQueued, Event
from tray_agent.core.state import Store
from tray_agent.listen import _Console


@pytest.mark.asyncio
async def test_a_discarded_queued_command_is_settled_and_printed() -> None:
    out = io.StringIO()
    console = _Console(out)
    store = Store()

    def dispatch(event: Event) -> None:
        old = store.state
        store.dispatch(event)
        console.on_dispatched(event, old, store.state)

    dispatch(CommandQueued(command_id="q1", kind=CommandKind.REPLY, conversation="p/1", text="hi"))
    assert not console.settled.is_set()
    dispatch(CommandDiscarded(command_id="q1", kind=CommandKind.REPLY, conversation="p/1"))
    await asyncio.wait_for(console.settled.wait(), 1)
    last = json.loads(out.getvalue().splitlines()[-1])
    assert last == {"event": "command_discarded", "command_id": "q1", "kind": "reply", "conversation": "p/1"}
