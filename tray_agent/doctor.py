"""`tray-agent doctor`: checks this machine and the way to the server and prints a report; a composition root.

Checks, in report order: settings and machine policy, the keyring, the tray and the bundled
resources (the app's own ``--self-test`` in a subprocess, so that it sees the real desktop), the
StatusNotifierWatcher, the notification server and its capabilities, audio, then the network:
proxy, DNS, TCP, TLS (certificate verified), HTTP (the server's ``Date`` header for clock skew),
the WebSocket handshake of the dialect's endpoint, and an org access token's ``iat``/``exp``.

Every check gives one line: ``OK``, ``WARN``, ``FAIL`` or ``SKIP`` (not applicable, or not possible
after an earlier failure) and plain words; ``--json`` prints the same as one JSON object. The exit
code is 1 when any check FAILs, else 0. Nothing secret is ever printed: messages are built from
non-secret values and pass through :func:`tray_agent.core.redact.redact` as well.

The checks themselves live in :mod:`tray_agent.checks` (local, desktop, network, and the
report); this module is the command around them. PySide6 is never imported: the tray check runs
the app's self-test as a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import TextIO

from tray_agent.checks.desktop import parse_self_test, self_test_command
from tray_agent.checks.local import load_setup
from tray_agent.checks.network import check_network, websocket_path
from tray_agent.checks.report import GROUPS, collect, exit_code, format_json, format_report, summary
from tray_agent.checks.results import CheckResult, Msg, Status
from tray_agent.core.redact import install_redaction

__all__ = [
    "GROUPS",
    "CheckResult",
    "Msg",
    "Status",
    "check_network",
    "collect",
    "exit_code",
    "format_json",
    "format_report",
    "load_setup",
    "parse_self_test",
    "run",
    "self_test_command",
    "summary",
    "websocket_path",
]


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run `tray-agent doctor`: every check, the report on ``out``, exit code 1 on any FAIL.

    Args:
        args: the parsed command line (see :mod:`tray_agent.cli`); ``--json`` picks the format.
        out: where the report goes (default stdout).

    Returns:
        0 when no check failed, else 1.
    """
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.CRITICAL,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_redaction()
    out = out or sys.stdout
    results = asyncio.run(collect(args, set_language=True))
    out.write(format_json(results) + "\n" if getattr(args, "json", False) else format_report(results))
    out.flush()
    return exit_code(results)
