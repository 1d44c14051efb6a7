"""What a click on a toast, or on one of its buttons, does: open the chat, maybe take over first.

The notifier calls back with the toast's key (built by ``core.policy.ToastKey``) and the button
pressed (None for the toast itself). The app hands that to :func:`activate_toast`.
"""

from __future__ import annotations

import logging
from typing import Protocol

from tray_agent.core.commands import TakeOver
from tray_agent.core.effects import ToastAction
from tray_agent.core.policy import ToastKey
from tray_agent.core.ports import CommandSink

logger = logging.getLogger(__name__)


class ToastWindows(Protocol):
    """What a toast opens (``ui.windows.WindowManager``)."""

    def show_inbox(self) -> object:
        """Show the inbox window."""
        ...

    def open_chat(self, conversation: str) -> object:
        """Open (or raise) the chat window of a conversation."""
        ...


def conversation_of_toast(key: str) -> str:
    """The conversation a toast key names ("" for the summary toasts and unknown keys)."""
    parsed = ToastKey.parse(key)
    return parsed.conversation if parsed is not None else ""


def activate_toast(
    key: str, action: ToastAction | None, *, commands: CommandSink, windows: ToastWindows | None
) -> None:
    """Answer a toast: a summary toast shows the inbox; a customer's opens the chat.

    "Take over" submits the take-over first (also without windows). Never raises.
    """
    conversation = conversation_of_toast(key)
    logger.info("Toast %s: %s", key, action or "clicked")
    if not conversation:
        if windows is not None:
            windows.show_inbox()
        return
    if action is ToastAction.TAKE_OVER:
        commands.submit(TakeOver(conversation))
    if windows is not None:
        windows.open_chat(conversation)
