"""User intents (take over, release, reply, refresh, history, ping) as frozen values.

A widget or a `listen` input line builds one of these; the network layer (the CommandSink)
encodes it with the dialect and tracks it until the server answers, the 10 s timeout passes,
or the connection drops. Every command carries a ``command_id`` (client-generated, unique in
this process) that comes back in CommandSucceeded / CommandFailed.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

from tray_agent.core.events import CommandKind

_counter = itertools.count(1)
_prefix = f"{os.getpid():x}"


def new_command_id() -> str:
    """A process-unique command id (``"<pid hex>-<n>"``)."""
    return f"{_prefix}-{next(_counter)}"


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every command."""

    command_id: str = field(default_factory=new_command_id, kw_only=True)

    @property
    def kind(self) -> CommandKind:
        """The command's kind (for correlation and `listen` output)."""
        raise NotImplementedError

    @property
    def conversation_key(self) -> str:
        """The conversation the command is about, or ""."""
        return ""


@dataclass(frozen=True, slots=True)
class TakeOver(Command):
    """Assign the conversation to me (dashboard ``assign_agent``; org PUT assign)."""

    conversation: str

    @property
    def kind(self) -> CommandKind:  # noqa: D102
        return CommandKind.TAKE_OVER

    @property
    def conversation_key(self) -> str:  # noqa: D102
        return self.conversation


@dataclass(frozen=True, slots=True)
class Release(Command):
    """Give the conversation back (dashboard ``unassign_agent``; org: see the dialect)."""

    conversation: str

    @property
    def kind(self) -> CommandKind:  # noqa: D102
        return CommandKind.RELEASE

    @property
    def conversation_key(self) -> str:  # noqa: D102
        return self.conversation


@dataclass(frozen=True, slots=True)
class SendReply(Command):
    """Send a text reply to the customer (dashboard ``send_message``; org multipart POST)."""

    conversation: str
    text: str

    @property
    def kind(self) -> CommandKind:  # noqa: D102
        return CommandKind.REPLY

    @property
    def conversation_key(self) -> str:  # noqa: D102
        return self.conversation


@dataclass(frozen=True, slots=True)
class RefreshWaitingList(Command):
    """Fetch one page of the waiting list / open conversations (a resync step)."""

    offset: int = 0
    limit: int = 200

    @property
    def kind(self) -> CommandKind:  # noqa: D102
        return CommandKind.REFRESH


@dataclass(frozen=True, slots=True)
class LoadHistory(Command):
    """Fetch one page of a conversation's history from REST (page 0 = newest)."""

    conversation: str
    page: int = 0
    limit: int = 50

    @property
    def kind(self) -> CommandKind:  # noqa: D102
        return CommandKind.HISTORY

    @property
    def conversation_key(self) -> str:  # noqa: D102
        return self.conversation


@dataclass(frozen=True, slots=True)
class Ping(Command):
    """Application-level JSON ping (heartbeat watchdog)."""

    @property
    def kind(self) -> CommandKind:  # noqa: D102
        return CommandKind.PING
