"""`tray-agent listen`: a headless agent console (JSON events out, JSON commands in); a composition root.

Connects with the same settings as the app and prints one JSON object per line on stdout for
every domain event and connection-state change (``{"event": ..., ...}``), except the protocol's
keepalive pongs. Reads newline-delimited JSON commands on stdin (see
:func:`tray_agent.core.commands.command_from_line`); their outcome comes back as events.

Replies, take-overs and releases go through the durable outbox (:mod:`tray_agent.platform.storage`)
under ``Paths.data`` (``--basedir DIR``: ``DIR/data``), one file per account: ``command_queued`` is
printed only once the command is on disk, queued commands left by a previous run (stopped or
killed while offline) are sent after the first resync, and commands that were sent but never
confirmed come back as ``command_failed`` with reason ``unconfirmed``, to be answered with
``{"cmd": "resend"|"discard", "command_id": ID}``. ``--demo`` keeps its store in a temporary
directory deleted at exit (demo data never mixes with the agent's).

Exit codes: 0 end of input or Ctrl-C (after in-flight commands are settled), 2 bad settings,
3 authentication refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import TextIO

from tray_agent.core import i18n
from tray_agent.core.commands import CommandLineError, command_from_line
from tray_agent.core.events import (
    CommandFailed,
    CommandQueued,
    CommandSucceeded,
    ConnectionChanged,
    ConnectionState,
    Dialect,
    Event,
    FailureReason,
    KeepaliveReceived,
    event_to_json,
)
from tray_agent.core.i18n import _
from tray_agent.core.ports import SecretStore, SystemClock
from tray_agent.core.protocol import codec_for
from tray_agent.core.redact import install_redaction
from tray_agent.core.settings import ConnectionSettings
from tray_agent.core.settings_layers import password_from_env
from tray_agent.core.state import Store
from tray_agent.core.text import escape_terminal
from tray_agent.exit_codes import EXIT_AUTH_REFUSED, EXIT_BAD_SETTINGS, EXIT_OK
from tray_agent.net.auth import authenticator_for
from tray_agent.net.client import Client
from tray_agent.platform.paths import Paths, load_settings_for
from tray_agent.platform.secrets import KeyringSecretStore, MemorySecretStore
from tray_agent.platform.storage import LocalStore, open_account_store

logger = logging.getLogger(__name__)

SETTLE_GRACE = 2.0  # seconds beyond the command timeout to wait for in-flight commands at exit


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


class _Console:
    """Prints events, tracks in-flight commands and the exit code; one per run."""

    def __init__(self, out: TextIO, store: Store) -> None:
        self._out = out
        self._store = store
        self.in_flight: set[str] = set()
        self.settled = asyncio.Event()
        self.settled.set()
        self.exit_code = EXIT_OK
        self.auth_refused = asyncio.Event()

    def emit(self, event: Event) -> None:
        self._store.dispatch(event)
        if isinstance(event, CommandQueued):
            self.in_flight.add(event.command_id)
            self.settled.clear()
        elif isinstance(event, CommandSucceeded | CommandFailed):
            self.in_flight.discard(event.command_id)
            if not self.in_flight:
                self.settled.set()
        elif isinstance(event, ConnectionChanged) and event.state is ConnectionState.AUTH_REQUIRED:
            self.exit_code = EXIT_AUTH_REFUSED
            self.auth_refused.set()
        if not isinstance(event, KeepaliveReceived):
            self.print(event)

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
    return KeyringSecretStore()  # falls back to memory by itself, and says so in the log


async def _serve(args: argparse.Namespace, out: TextIO, stdin: TextIO, install_signals: bool) -> int:
    demo_session = None
    demo_dir: tempfile.TemporaryDirectory[str] | None = None
    local: LocalStore | None = None
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
        clock = SystemClock()
        token = conn.token.get_secret_value() or None
        try:
            authenticator = authenticator_for(
                conn, _secret_store(demo_session is not None), clock, password=password, token=token
            )
        except ValueError as exc:
            print(f"tray-agent listen: {exc}", file=sys.stderr)
            return EXIT_BAD_SETTINGS
        settings = loaded.settings
        if demo_session is not None:
            demo_dir = tempfile.TemporaryDirectory(prefix="tray-agent-listen-demo-")
            data_dir = Path(demo_dir.name)
        else:
            data_dir = paths.data
        local = open_account_store(data_dir, conn, settings)
        if local.problem:
            print(f"tray-agent listen: {local.problem}", file=sys.stderr)
        store = Store(history_limit=settings.ui.history_limit)
        console = _Console(out, store)
        codec = codec_for(Dialect(conn.dialect))
        client = Client(codec, authenticator, conn, console.emit, clock, outbox=local)
        return await _run_console(client, console, conn, stdin, install_signals)
    finally:
        if local is not None:
            local.close()
        if demo_session is not None:
            await demo_session.server.stop()
        if demo_dir is not None:
            demo_dir.cleanup()


async def _run_console(
    client: Client, console: _Console, conn: ConnectionSettings, stdin: TextIO, install_signals: bool
) -> int:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _read_stdin_lines(loop, lines, stdin)
    interrupted = asyncio.Event()
    if install_signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: no signal handlers
                loop.add_signal_handler(signum, interrupted.set)
    client.start()

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
            client.submit(command)

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
        await client.stop()
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
