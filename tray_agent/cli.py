"""Command-line parsing for every entry point (gui, listen, demo-server); parsing only.

Each subcommand's work lives in its own module, imported lazily so that `tray-agent listen`
never pays for Qt, `tray-agent demo-server` never imports the client, and the hidden
`tray-agent secret-helper` (the app's keyring process) imports keyring and little else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tray_agent import __version__


def _add_connection_flags(parser: argparse.ArgumentParser, *, subcommand: bool = False) -> None:
    """Flags shared by the GUI and `listen` (they override settings files and environment).

    The top-level parser and each subcommand both accept them (``tray-agent --server X listen``
    and ``tray-agent listen --server X``); on a subcommand their defaults are suppressed so that
    an absent flag does not overwrite the value given before the subcommand.
    """
    group = parser.add_argument_group("connection (override settings and TRAY_AGENT_* variables)")
    group.add_argument("--dialect", choices=["org", "dashboard"], help="backend dialect")
    group.add_argument("--server", metavar="URL", help="http(s) base URL of the backend")
    group.add_argument("--org", metavar="ID", help="organisation id (org dialect)")
    group.add_argument("--company", metavar="ID", help="company id (dashboard dialect)")
    group.add_argument(
        "--email", metavar="EMAIL", help="agent e-mail; the password comes from TRAY_AGENT_PASSWORD"
    )
    group.add_argument("--token", metavar="TOKEN", help="access token (org dialect), instead of a password")
    group.add_argument("--supabase-url", metavar="URL", help="Supabase project URL (org dialect)")
    group.add_argument("--supabase-key", metavar="KEY", help="Supabase anon key (org dialect)")
    group.add_argument(
        "--set",
        # A subcommand's --set values go to their own list, merged by parse_args().
        dest="set_after_command" if subcommand else "set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override any setting, e.g. --set alerts.sla_minutes=5 (repeatable)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start the built-in demo backend on a free loopback port and sign in to it",
    )
    parser.add_argument(
        "--demo-dialect",
        choices=["org", "dashboard"],
        default="dashboard",
        help="dialect of the built-in demo backend (with --demo)",
    )
    parser.add_argument("--basedir", metavar="DIR", help="keep settings, data and logs under DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    if subcommand:
        for action in parser._actions:  # argparse has no public accessor
            if action.dest not in ("help", "version"):
                action.default = argparse.SUPPRESS


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by tests and the docs)."""
    parser = argparse.ArgumentParser(
        prog="tray-agent",
        description="System-tray app for customer-support agents.",
    )
    parser.add_argument("--version", action="version", version=f"tray-agent {__version__}")
    _add_connection_flags(parser)
    parser.add_argument("--self-test", action="store_true", help="start, check resources and the tray, exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gui = sub.add_parser("gui", help="run the tray app (the default)")
    _add_connection_flags(gui, subcommand=True)

    listen = sub.add_parser(
        "listen",
        help="headless agent console: JSON events on stdout, JSON commands on stdin",
        description=(
            "Connect with the app's settings and print one JSON object per line for every domain "
            "event; read newline-delimited JSON commands on stdin. Exit codes: 0 end of input or "
            "Ctrl-C, 2 bad settings, 3 authentication refused."
        ),
    )
    _add_connection_flags(listen, subcommand=True)

    doctor = sub.add_parser(
        "doctor",
        help="check settings, keyring, tray, notifications, audio and the server; exit non-zero on a failure",
    )
    _add_connection_flags(doctor, subcommand=True)
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")

    open_cmd = sub.add_parser(
        "open",
        help="open a conversation's chat window in the running app (or start it first)",
    )
    open_cmd.add_argument("target", help="a conversation id, or a tray-agent:// link")
    _add_connection_flags(open_cmd, subcommand=True)

    demo = sub.add_parser(
        "demo-server",
        help="run the reference backend (both dialects) with simulated customers",
    )
    demo.add_argument("--dialect", choices=["org", "dashboard"], default="dashboard")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=0, help="0 picks a free port")
    demo.add_argument("--db", metavar="FILE", help="SQLite file to keep data in (default: a temporary file)")
    demo.add_argument(
        "--simulate", type=float, default=0.0, metavar="RATE", help="simulated customers per minute (0 = off)"
    )
    demo.add_argument("--seed", type=int, default=None, help="seed for the simulator's randomness")
    demo.add_argument("--preload", type=int, default=0, metavar="N", help="start with N customers waiting")
    demo.add_argument("--refuse-upgrades", action="store_true", help="refuse WebSocket upgrades (REST works)")
    demo.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")

    # Hidden (no help): the app's keyring helper, started by platform.secret_helper, never by hand.
    sub.add_parser("secret-helper", description="keyring operations as line-JSON on stdin/stdout")
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse a command line; ``--set`` given before and after the subcommand are merged.

    A bare ``tray-agent://...`` argument (how desktops and browsers launch a link handler) means
    ``open <link>``.
    """
    argv = list(argv)
    for index, arg in enumerate(argv):
        if arg.startswith("tray-agent:"):
            if "open" not in argv[:index]:
                argv.insert(index, "open")
            break
    args = build_parser().parse_args(argv)
    args.set = [*getattr(args, "set", []), *vars(args).pop("set_after_command", [])]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the process exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    command = args.command or "gui"
    if command == "listen":
        from tray_agent.listen import run as run_listen

        return run_listen(args)
    if command == "doctor":
        from tray_agent.doctor import run as run_doctor

        return run_doctor(args)
    if command == "secret-helper":
        from tray_agent.platform.secret_helper import run_helper

        return run_helper()
    if command == "demo-server":
        from tray_agent.demo.server import run as run_demo

        return run_demo(args)
    from tray_agent.gui import run as run_gui

    return run_gui(args)
