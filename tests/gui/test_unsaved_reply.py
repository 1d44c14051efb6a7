"""A reply queued without being saved on this computer says so in its bubble (CommandQueued.durable)."""

from __future__ import annotations

import pytest

from tests.gui.test_chat_window import Chat
from tray_agent.core.events import CommandQueued
from tray_agent.core.state import CommandState

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("online", [True, False])
def test_a_queued_reply_that_was_not_saved_is_marked(qtbot, tmp_path, online):
    chat = Chat(qtbot, tmp_path, online=online)
    try:
        window = chat.window
        window.reply_edit.setPlainText("saved")
        window.send_reply()
        chat.env.sink.durable = False  # the outbox store could not write (full disk, read-only)
        window.reply_edit.setPlainText("not saved")
        window.send_reply()
        chat.env.bridge.flush_now()
        saved, unsaved = chat.bubbles()[-2:]
        assert (saved.text, unsaved.text) == ("saved", "not saved")
        assert saved.reply_state is unsaved.reply_state is CommandState.QUEUED
        assert "not saved on this computer" not in window.delegate.status_text(saved, False)
        status = window.delegate.status_text(unsaved, False)
        assert status.startswith("Sending…" if online else "Queued: will be sent")
        assert status.endswith("not saved on this computer")
    finally:
        chat.env.close()


def test_a_saved_reply_the_store_cannot_mark_as_sent_turns_unsaved(qtbot, tmp_path):
    """The client holds it (net.outbox ``Outbox.hold``) and queues it again with ``durable`` False."""
    chat = Chat(qtbot, tmp_path)
    try:
        window = chat.window
        window._reply_edit.setPlainText("held")
        window.send_reply()
        chat.env.bridge.flush_now()
        (bubble,) = [b for b in chat.bubbles() if b.text == "held"]
        assert "not saved on this computer" not in window.delegate.status_text(bubble, False)
        command = chat.env.sink.commands[-1]
        chat.env.feed(
            CommandQueued(
                command_id=command.command_id,
                kind=command.kind,
                conversation=command.conversation_key,
                text="held",
                durable=False,
            )
        )
        (bubble,) = [b for b in chat.bubbles() if b.text == "held"]
        assert window.delegate.status_text(bubble, False).endswith("not saved on this computer")
    finally:
        chat.env.close()
