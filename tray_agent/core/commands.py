"""User intents (take over, release, reply, refresh, history, ping) as frozen values.

A widget or a `listen` input line builds one of these; the network layer (the CommandSink)
encodes it with the dialect and tracks it until the server answers, the 10 s timeout passes,
or the connection drops. Every command carries a ``command_id`` (client-generated, unique in
this process) that comes back in CommandSucceeded / CommandFailed.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from dataclasses import dataclass, field

from tray_agent.core.events import CommandFailed, CommandKind, CommandSucceeded, FailureReason

_counter = itertools.count(1)
# Commands outlive the process (the durable outbox): a random part keeps a later process that
# happens to get the same pid from reusing the id of a command still stored from before.
_prefix = f"{os.getpid():x}.{secrets.token_hex(3)}"


def new_command_id() -> str:
    """A unique command id (``"<pid hex>.<6 random hex>-<n>"``)."""
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
    """Assign the conversation to me.

    Dashboard: stop the bot (``PUT /customers/:id/stop`` stop=true), then ``assign_agent``. Org:
    read the chat first and refuse (``already_assigned``) when another human holds it, unless
    ``force`` ("Take anyway"), then ``PUT assign``.
    """

    conversation: str
    force: bool = False

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
class Resolve(Command):
    """Close the conversation (org ``PUT resolve``; dashboard: release, and the bot answers again)."""

    conversation: str

    @property
    def kind(self) -> CommandKind:  # noqa: D102
        return CommandKind.RESOLVE

    @property
    def conversation_key(self) -> str:  # noqa: D102
        return self.conversation


@dataclass(frozen=True, slots=True)
class HandBack(Command):
    """Give the customer back to the AI (org: assign to the chat AI agent; dashboard: release, stop=false)."""

    conversation: str

    @property
    def kind(self) -> CommandKind:  # noqa: D102
        return CommandKind.HAND_BACK

    @property
    def conversation_key(self) -> str:  # noqa: D102
        return self.conversation


@dataclass(frozen=True, slots=True)
class SendReply(Command):
    """Send a text reply to the customer (dashboard ``send_message``; org multipart POST).

    ``retry_of`` names the failed reply this one sends again (the store links them).
    """

    conversation: str
    text: str
    retry_of: str = ""

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


@dataclass(frozen=True, slots=True)
class ResendCommand(Command):
    """The agent sends an unconfirmed command again; ``command_id`` names it (same id, same bubble).

    Only an explicit decision of the agent sends again what may already have reached the
    customer (see the durable outbox in :mod:`tray_agent.net.outbox`).
    """

    @property
    def kind(self) -> CommandKind:  # noqa: D102
        return CommandKind.RESEND


@dataclass(frozen=True, slots=True)
class DiscardCommand(Command):
    """The agent drops an unconfirmed (or still queued) command; ``command_id`` names it."""

    @property
    def kind(self) -> CommandKind:  # noqa: D102
        return CommandKind.DISCARD


def succeeded(command: Command, message_id: str | None = None) -> CommandSucceeded:
    """The CommandSucceeded event of ``command`` (``message_id``: a sent reply's server id)."""
    return CommandSucceeded(
        command_id=command.command_id,
        kind=command.kind,
        conversation=command.conversation_key,
        message_id=message_id,
    )


def failed(command: Command, reason: FailureReason, text: str) -> CommandFailed:
    """The CommandFailed event of ``command``, with the server's (or our) words."""
    return CommandFailed(
        command_id=command.command_id,
        kind=command.kind,
        conversation=command.conversation_key,
        reason=reason,
        text=text,
    )


_LISTEN_COMMANDS: dict[str, CommandKind] = {
    "take_over": CommandKind.TAKE_OVER,
    "release": CommandKind.RELEASE,
    "resolve": CommandKind.RESOLVE,
    "hand_back": CommandKind.HAND_BACK,
    "reply": CommandKind.REPLY,
    "refresh": CommandKind.REFRESH,
    "history": CommandKind.HISTORY,
    "resend": CommandKind.RESEND,
    "discard": CommandKind.DISCARD,
}


class CommandLineError(ValueError):
    """A `listen` input line that is not a valid command; carries what `listen` reports."""

    def __init__(self, text: str, *, kind: CommandKind = CommandKind.UNKNOWN, command_id: str = "") -> None:
        """Store the plain-words problem, the command kind if known, and the caller's id."""
        super().__init__(text)
        self.text = text
        self.kind = kind
        self.command_id = command_id


def command_from_line(line: str) -> Command:
    """Parse one `tray-agent listen` input line (a JSON object) into a command.

    Accepted: ``{"cmd": "take_over"|"release"|"resolve"|"hand_back", "conversation": ID}``
    (``take_over`` also takes ``"force": true``: take the chat even from a colleague),
    ``{"cmd": "reply", "conversation": ID, "text": TEXT}``, ``{"cmd": "refresh"}``,
    ``{"cmd": "history", "conversation": ID, "page": N}``, and for an unconfirmed reply (one
    that was sent but never confirmed, e.g. across a crash) ``{"cmd": "resend"|"discard",
    "command_id": ID}``. An optional ``"id"`` (string) becomes the command id echoed in the
    outcome event, so scripts can correlate (resend/discard answer under ``command_id``).

    Raises:
        CommandLineError: the line is not JSON, not an object, names no known command, or lacks
            a field. Never any other exception.
    """
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise CommandLineError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CommandLineError("a command is a JSON object")
    raw_id = obj.get("id")
    command_id = raw_id if isinstance(raw_id, str) and raw_id else new_command_id()
    name = obj.get("cmd")
    kind = _LISTEN_COMMANDS.get(name) if isinstance(name, str) else None
    if kind is None:
        known = ", ".join(_LISTEN_COMMANDS)
        raise CommandLineError(f"unknown command {name!r}; known: {known}", command_id=command_id)

    def text_field(field_name: str) -> str:
        value = obj.get(field_name)
        if not isinstance(value, str) or not value.strip():
            problem = f"{field_name!r} must be a non-empty string"
            raise CommandLineError(problem, kind=kind, command_id=command_id)
        return value

    if name in ("resend", "discard"):
        target = obj.get("command_id")
        if not isinstance(target, str) or not target.strip():
            problem = "'command_id' must name the unconfirmed command (a non-empty string)"
            raise CommandLineError(problem, kind=kind, command_id=command_id)
        if name == "resend":
            return ResendCommand(command_id=target)
        return DiscardCommand(command_id=target)
    if kind is CommandKind.REFRESH:
        return RefreshWaitingList(command_id=command_id)
    conversation = text_field("conversation")
    if kind is CommandKind.TAKE_OVER:
        force = obj.get("force", False)
        if not isinstance(force, bool):
            raise CommandLineError("'force' must be true or false", kind=kind, command_id=command_id)
        return TakeOver(conversation, force=force, command_id=command_id)
    if kind is CommandKind.RELEASE:
        return Release(conversation, command_id=command_id)
    if kind is CommandKind.RESOLVE:
        return Resolve(conversation, command_id=command_id)
    if kind is CommandKind.HAND_BACK:
        return HandBack(conversation, command_id=command_id)
    if kind is CommandKind.REPLY:
        return SendReply(conversation, text_field("text"), command_id=command_id)
    page = obj.get("page", 0)
    if not isinstance(page, int) or isinstance(page, bool) or page < 0:
        raise CommandLineError("'page' must be a whole number >= 0", kind=kind, command_id=command_id)
    return LoadHistory(conversation, page=page, command_id=command_id)
