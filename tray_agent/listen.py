"""`tray-agent listen`: a headless agent console (JSON events out, JSON commands in); a composition root.

Connects with the same settings and the same wiring as the app
(:func:`tray_agent.session.build_session`) and prints one JSON object per line on stdout
(``{"event": ..., ...}``). The output is the store's view, not the wire's (:class:`StoreView`):
what the app's windows see. One ``message_received`` per message, ever (after the store's dedupe
by server id and by text, the folding of my replies' echoes -- my reply prints once, when the
server confirmed it -- and the rule that an empty message, a cleared bot reply, is no message;
also across a resync or a reconnect), one ``assignment_changed`` per change of who has the
customer (``is_me`` and the agent as the store knows them), connection changes, command outcomes
and the other events as dispatched; never the keepalive pongs. The raw frames are in the ``-v``
log. Text is printed with C1 and bidi control characters escaped.

Commands: newline-delimited JSON on stdin (:func:`tray_agent.core.commands.command_from_line`),
each with an optional ``"id"`` echoed as the outcome's ``command_id``:

* ``{"cmd": "reply", "conversation": ID, "text": TEXT}``
* ``{"cmd": "take_over", "conversation": ID}``; ``"force": true`` takes the chat even when a
  colleague holds it (without it that case fails with reason ``already_assigned``)
* ``{"cmd": "release", "conversation": ID}``: give the customer back for another agent
* ``{"cmd": "resolve", "conversation": ID}``: close the conversation (org resolve; dashboard:
  release and hand back to the bot)
* ``{"cmd": "hand_back", "conversation": ID}``: give the customer back to the AI / the bot
* ``{"cmd": "refresh"}`` and ``{"cmd": "history", "conversation": ID, "page": N}``
* ``{"cmd": "resend"|"discard", "command_id": ID}`` for an unconfirmed command

Their outcome comes back as events: ``command_queued``, ``command_sent``, then
``command_succeeded`` or ``command_failed`` (with a ``reason``), or ``command_discarded``.

Replies, take-overs, releases, resolves and hand-backs go through the durable outbox
(:mod:`tray_agent.platform.storage`) under ``Paths.data`` (``--basedir DIR``: ``DIR/data``), one
file per account. ``command_queued`` carries ``"durable"``: true when the command is on disk (it
survives a crash or a restart), false when it could not be saved (read-only data directory, full
disk) and lives in memory only. A command already queued prints ``command_queued`` again with
``"durable": false`` when the store cannot record that it goes out: it is held, unsent, and tried
again later, so that a restart can never send it twice. Queued commands left by a previous run
(stopped or killed while offline) are sent after the first resync; commands that were sent but
never confirmed come back as ``command_failed`` with reason ``unconfirmed``, to be answered with
``resend`` or ``discard`` (a discard answers ``command_discarded``). ``--demo`` keeps its store in
a temporary directory deleted at exit (demo data never mixes with the agent's).

Exit codes: 0 end of input or Ctrl-C (after in-flight commands are settled), 2 bad settings,
3 authentication refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TextIO

from tray_agent.core import i18n
from tray_agent.core.commands import CommandLineError, command_from_line
from tray_agent.core.events import (
    AssignmentAction,
    AssignmentChanged,
    CommandDiscarded,
    CommandFailed,
    CommandKind,
    CommandQueued,
    CommandSucceeded,
    ConnectionChanged,
    ConnectionState,
    Event,
    FailureReason,
    KeepaliveReceived,
    MessageReceived,
    SenderKind,
    event_to_json,
)
from tray_agent.core.i18n import _
from tray_agent.core.ports import SecretStore, SystemClock
from tray_agent.core.redact import install_redaction
from tray_agent.core.settings import ConnectionSettings
from tray_agent.core.settings_layers import password_from_env
from tray_agent.core.state import CommandState, Conversation, MessageRecord, State
from tray_agent.core.text import escape_terminal
from tray_agent.exit_codes import EXIT_AUTH_REFUSED, EXIT_BAD_SETTINGS, EXIT_OK
from tray_agent.platform.paths import Paths, load_settings_for
from tray_agent.platform.secret_helper import HelperSecretStore
from tray_agent.platform.secrets import MemorySecretStore
from tray_agent.session import AccountSession, SessionHooks, build_session

logger = logging.getLogger(__name__)

SETTLE_GRACE = 2.0  # seconds beyond the command timeout to wait for in-flight commands at exit
PRINTED_IDS_LIMIT = 100_000  # message ids remembered as printed (one message_received per message, ever)


def missing_settings(conn: ConnectionSettings, password: str | None) -> list[str]:
    """What is missing to connect, in plain words (empty when the settings are usable)."""
    problems: list[str] = []
    if not conn.server:
        problems.append(_("no server: use --server URL or TRAY_AGENT_SERVER"))
    elif not conn.server.startswith(("http://", "https://")):
        problems.append(
            _("the server must be an http:// or https:// URL, not {server!r}").format(server=conn.server)
        )
    token = conn.token.get_secret_value()
    if conn.dialect == "org":
        if not conn.org:
            problems.append(_("no organisation id: use --org ID or TRAY_AGENT_ORG"))
        if not token:
            if not conn.email:
                problems.append(_("no e-mail: use --email, or --token TOKEN"))
            if not password:
                problems.append(_("no password: set TRAY_AGENT_PASSWORD, or use --token TOKEN"))
            if not conn.supabase_url or not conn.supabase_key:
                problems.append(
                    _("the org dialect signs in through Supabase: use --supabase-url and --supabase-key")
                )
    else:
        if not conn.company:
            problems.append(_("no company id: use --company ID or TRAY_AGENT_COMPANY"))
        if not conn.email:
            problems.append(_("no e-mail: use --email or TRAY_AGENT_EMAIL"))
        if not password:
            problems.append(_("no password: set TRAY_AGENT_PASSWORD"))
    return problems


Assignment = tuple[bool, bool, str]
"""(assigned, to me, the other agent's id): what an assignment change is about. Names only enrich
it, and so do my own ids (the org server names me by an agent id, not my sign-in's user id)."""


def _confirmed_assignment(conv: Conversation | None) -> Assignment:
    """A conversation's assignment as the server confirmed it (an optimistic take-over is not yet)."""
    if conv is None:
        return (False, False, "")
    if conv.pending_takeover is not None and conv.takeover_undo is not None:
        assigned, agent, to_me = conv.takeover_undo
    else:
        assigned, agent, to_me = conv.assigned, conv.agent, conv.assigned_to_me
    other = agent.agent_id if agent is not None and assigned and not to_me else ""
    return (assigned, to_me, other)


class StoreView:
    """What ``listen`` prints: the store's accepted changes, as the GUI's bridge sees them.

    The client's raw events go to the store first (``-v`` logs the frames); then, per event:

    * ``message_received`` once per message, ever: only when the store took a new message
      (after its dedupe by server id and by text, the folding of my replies' echoes, and the
      rule that an empty message -- a cleared bot reply -- is no message). My own reply prints
      once, when the server confirmed it; its echo and the REST copy print nothing more. Ids
      already printed are remembered, so a message seen again after a resync or a reconnect
      does not print twice.
    * ``assignment_changed`` once per change of who has the customer, with the store's view of
      it (``is_me`` and the agent as the store knows them); a take-over's or release's success
      that changes it prints one too (the org server broadcasts nothing).
    * keepalive pongs: nothing. Everything else (connection, command outcomes, waiting list,
      history pages ...) prints as it was dispatched.
    """

    def __init__(self, limit: int = PRINTED_IDS_LIMIT) -> None:
        self._printed: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def lines(self, event: Event, old: State, new: State) -> list[Event]:
        """The events to print for ``event``, just reduced from ``old`` into ``new``."""
        if isinstance(event, KeepaliveReceived):
            return []
        if isinstance(event, MessageReceived):
            return self._new_messages(event, old, new, event.conversation)
        if isinstance(event, AssignmentChanged):
            return self._assignment(event, old, new)
        out: list[Event] = [event]
        if isinstance(event, CommandSucceeded) and event.conversation:
            if event.kind is CommandKind.REPLY:
                out += self._new_messages(None, old, new, event.conversation)
            elif event.kind in (CommandKind.TAKE_OVER, CommandKind.RELEASE):
                out += self._assignment(None, old, new, event.conversation)
        return out

    # ------------------------------------------------------------------ messages

    def _new_messages(self, event: MessageReceived | None, old: State, new: State, key: str) -> list[Event]:
        conv = new.conversation(key)
        if conv is None:
            return []
        before = old.conversation(key)
        if before is not None and before.messages is conv.messages:
            return []  # nothing taken: a duplicate, an empty message, or nothing new
        known = {id(r) for r in before.messages.records} if before is not None else set()
        out: list[Event] = []
        for record in conv.messages.records:
            if id(record) in known:
                continue  # the same record object as before this event: not new
            if record.command_id is not None and not (
                record.echoed or record.reply_state is CommandState.CONFIRMED
            ):
                continue  # my reply, not yet confirmed: its outcome prints as command_*
            keys = [k for k in (record.message_id, _command_key(record.command_id)) if k]
            if any(k in self._printed for k in keys):
                self._remember(keys)
                continue
            self._remember(keys)
            out.append(
                event if event is not None and _is_record_of(record, event) else _message_of(conv, record)
            )
        return out

    def _remember(self, keys: list[str]) -> None:
        for k in keys:
            self._printed[k] = None
            self._printed.move_to_end(k)
        while len(self._printed) > self._limit:
            self._printed.popitem(last=False)

    # ------------------------------------------------------------------ assignments

    def _assignment(
        self, event: AssignmentChanged | None, old: State, new: State, key: str = ""
    ) -> list[Event]:
        key = event.conversation if event is not None else key
        conv = new.conversation(key)
        if conv is None or conv.pending_takeover is not None:
            return []
        now = _confirmed_assignment(conv)
        if now == _confirmed_assignment(old.conversation(key)):
            return []  # the same news again (an ack and its broadcast, a replay): printed once
        action = AssignmentAction.ASSIGNED if conv.assigned else AssignmentAction.UNASSIGNED
        if event is None:
            return [
                AssignmentChanged(
                    conversation=key,
                    action=action,
                    agent=conv.agent if conv.assigned else None,
                    is_me=conv.assigned_to_me if conv.assigned else True,
                )
            ]
        if conv.assigned:
            return [dataclasses.replace(event, action=action, agent=conv.agent, is_me=conv.assigned_to_me)]
        return [dataclasses.replace(event, action=action, agent=None)]


def _command_key(command_id: str | None) -> str:
    return f"command:{command_id}" if command_id else ""


def _is_record_of(record: MessageRecord, event: MessageReceived | None) -> bool:
    return (
        event is not None
        and record.command_id is None
        and record.text == event.text
        and record.message_id == (event.message_id or None)
    )


def _message_of(conv: Conversation, record: MessageRecord) -> MessageReceived:
    """A ``message_received`` of a record the store holds (my confirmed reply, a folded echo)."""
    return MessageReceived(
        conversation=conv.key,
        sender=record.sender,
        text=record.text,
        attachment=record.attachment,
        message_id=record.message_id,
        sent_at=record.at,
        customer_name=conv.customer_name if record.sender is SenderKind.CUSTOMER else "",
        channel=conv.channel,
        sender_name=record.sender_name,
        agent_id=record.agent_id,
    )


class _Console:
    """Prints the store's view, tracks in-flight commands and the exit code; one per run."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._view = StoreView()
        self.in_flight: set[str] = set()
        self.settled = asyncio.Event()
        self.settled.set()
        self.exit_code = EXIT_OK
        self.auth_refused = asyncio.Event()

    def on_dispatched(self, event: Event, old: State, new: State) -> None:
        """The dispatcher's observer: every event the client (or listen) dispatched."""
        if isinstance(event, CommandQueued):
            self.in_flight.add(event.command_id)
            self.settled.clear()
        elif isinstance(event, CommandSucceeded | CommandFailed | CommandDiscarded):
            self.in_flight.discard(event.command_id)
            if not self.in_flight:
                self.settled.set()
        elif isinstance(event, ConnectionChanged) and event.state is ConnectionState.AUTH_REQUIRED:
            self.exit_code = EXIT_AUTH_REFUSED
            self.auth_refused.set()
        for line in self._view.lines(event, old, new):
            self.print(line)

    def print(self, event: Event) -> None:
        try:
            self._out.write(escape_terminal(event_to_json(event)) + "\n")  # C1/bidi controls inert
            self._out.flush()
        except (OSError, ValueError):  # stdout closed (a pipe reader went away): keep running
            logger.debug("stdout is closed; event dropped", exc_info=True)


def _read_stdin_lines(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None], stream: TextIO
) -> None:
    """Feed stdin lines to ``queue`` from a daemon thread (works for ttys, pipes and files).

    A daemon thread, not the default executor: a blocked read must not hold up the exit.
    """

    def pump() -> None:
        try:
            for line in stream:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError):
            logger.debug("stdin read failed", exc_info=True)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="listen-stdin", daemon=True).start()


def _secret_store(demo: bool) -> SecretStore:
    if demo:
        return MemorySecretStore()  # never put demo credentials into the agent's keyring
    return HelperSecretStore()  # falls back to memory by itself, and says so in the log


async def _serve(args: argparse.Namespace, out: TextIO, stdin: TextIO, install_signals: bool) -> int:
    demo_session = None
    demo_dir: tempfile.TemporaryDirectory[str] | None = None
    session: AccountSession | None = None
    if args.demo:
        from tray_agent.demo_launch import apply_demo_flags, start_demo

        demo_session = await start_demo(args.demo_dialect)
        apply_demo_flags(args, demo_session)
    try:
        paths = Paths.from_platform(args.basedir, os.environ)
        loaded = load_settings_for(paths, os.environ, args)
        i18n.set_language(
            i18n.resolve_language(loaded.settings.ui.language, i18n.languages_from_environ(os.environ))
        )
        for problem in loaded.problems:
            print(f"tray-agent listen: {problem}", file=sys.stderr)
        conn = loaded.settings.connection
        password = demo_session.password if demo_session else password_from_env(os.environ)
        problems = missing_settings(conn, password)
        if problems:
            for problem in problems:
                print(f"tray-agent listen: {problem}", file=sys.stderr)
            return EXIT_BAD_SETTINGS
        if demo_session is not None:
            demo_dir = tempfile.TemporaryDirectory(prefix="tray-agent-listen-demo-")
            data_dir = Path(demo_dir.name)
        else:
            data_dir = paths.data
        console = _Console(out)
        # The same wiring as the tray app (session.build_session): authenticator, codec, local
        # store, client, store and dispatcher. No alert engine: listen prints, it does not toast.
        session = build_session(
            loaded,
            SystemClock(),
            data_dir=data_dir,
            # Blocking (the keyring helper starts and answers): off the loop.
            secrets=await asyncio.to_thread(_secret_store, demo_session is not None),
            hooks=SessionHooks(problem=_print_problem),
        )
        session.dispatcher.observe(console.on_dispatched)
        problem = session.start(password)
        if problem:
            print(f"tray-agent listen: {problem}", file=sys.stderr)
            return EXIT_BAD_SETTINGS
        return await _run_console(session, console, conn, stdin, install_signals)
    finally:
        if session is not None:
            await session.stop()
        if demo_session is not None:
            await demo_session.server.stop()
        if demo_dir is not None:
            demo_dir.cleanup()


def _print_problem(_area: str, text: str) -> None:
    if text:
        print(f"tray-agent listen: {text}", file=sys.stderr)


async def _run_console(
    session: AccountSession, console: _Console, conn: ConnectionSettings, stdin: TextIO, install_signals: bool
) -> int:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _read_stdin_lines(loop, lines, stdin)
    interrupted = asyncio.Event()
    if install_signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: no signal handlers
                loop.add_signal_handler(signum, interrupted.set)

    async def read_commands() -> None:
        while (line := await lines.get()) is not None:
            if not line.strip():
                continue
            try:
                command = command_from_line(line)
            except CommandLineError as exc:
                console.print(
                    CommandFailed(
                        command_id=exc.command_id, kind=exc.kind, reason=FailureReason.INVALID, text=exc.text
                    )
                )
                continue
            session.submit(command)

    reader = asyncio.create_task(read_commands(), name="listen-commands")
    waiters = [
        asyncio.create_task(interrupted.wait(), name="listen-interrupted"),
        asyncio.create_task(console.auth_refused.wait(), name="listen-auth-refused"),
    ]
    try:
        await asyncio.wait([reader, *waiters], return_when=asyncio.FIRST_COMPLETED)
        if not console.auth_refused.is_set():
            # End of input or Ctrl-C: let in-flight commands settle (they time out on their own).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(console.settled.wait(), conn.command_timeout + SETTLE_GRACE)
    finally:
        for task in (reader, *waiters):
            task.cancel()
        await session.stop()
    return console.exit_code


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    install_redaction()


def run(args: argparse.Namespace, *, out: TextIO | None = None, stdin: TextIO | None = None) -> int:
    """Run `tray-agent listen` until end of input, Ctrl-C or an authentication refusal.

    Args:
        args: parsed command line (see :mod:`tray_agent.cli`).
        out: where events go (default stdout).
        stdin: where commands come from (default stdin).

    Returns:
        The exit code (0, 2 or 3).
    """
    _configure_logging(getattr(args, "verbose", False))
    try:
        return asyncio.run(_serve(args, out or sys.stdout, stdin or sys.stdin, install_signals=True))
    except KeyboardInterrupt:
        return EXIT_OK
