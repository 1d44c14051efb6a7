"""`listen`'s console: a discarded command is settled (listen can exit), and it is printed."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from tray_agent import listen
from tray_agent.core.commands import _LISTEN_COMMANDS
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


def test_the_module_doc_describes_every_command_and_the_durable_flag():
    """`listen`'s documentation is its interface for scripts: every command and field in it."""
    doc = listen.__doc__ or ""
    missing = [name for name in _LISTEN_COMMANDS if f'"{name}"' not in doc]
    assert missing == []
    for word in ('"force": true', '"durable"', "command_discarded", "store's view", "once"):
        assert word in doc, word
    assert "printed only once the command is on disk" not in doc  # false when durable is false
