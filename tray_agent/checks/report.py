"""Running the doctor's checks together, and the report: lines, summary, JSON and exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence

from tray_agent import __version__
from tray_agent.checks.desktop import check_audio, check_desktop_bus, check_tray
from tray_agent.checks.local import check_keyring, check_settings, load_setup
from tray_agent.checks.network import check_network
from tray_agent.checks.results import CheckResult, Msg, Status, check_result
from tray_agent.core import i18n
from tray_agent.core.i18n import _, ngettext
from tray_agent.exit_codes import EXIT_FAILURE, EXIT_OK

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Running and reporting


GROUPS = ("settings", "keyring", "tray", "desktop", "audio", "network")
"""Groups of checks, in report order (tests pick a few)."""


async def collect(
    args: argparse.Namespace,
    env: Mapping[str, str] | None = None,
    *,
    groups: Sequence[str] = GROUPS,
    set_language: bool = False,
) -> list[CheckResult]:
    """Run the checks of ``groups`` concurrently and return their lines in report order.

    Args:
        args: the parsed command line (connection flags, ``--basedir``).
        env: the environment (default ``os.environ``).
        groups: which groups of :data:`GROUPS` to run.
        set_language: switch the process's language to the settings' (the `doctor` command
            does; the app's diagnostics export must not, as the app chose its own).

    Returns:
        Every check's result.
    """
    env = dict(os.environ if env is None else env)
    demo = None
    if getattr(args, "demo", False):
        from tray_agent.demo_launch import apply_demo_flags, start_demo

        demo = await start_demo(getattr(args, "demo_dialect", "dashboard"))
        apply_demo_flags(args, demo)
    try:
        return await _collect(args, env, groups, set_language)
    finally:
        if demo is not None:
            await demo.server.stop()


async def _collect(
    args: argparse.Namespace, env: dict[str, str], groups: Sequence[str], set_language: bool
) -> list[CheckResult]:
    setup = load_setup(args, env)
    if set_language:  # the report speaks the agent's language (setting, else the OS locale)
        setting = setup.loaded.settings.ui.language
        i18n.set_language(i18n.resolve_language(setting, i18n.languages_from_environ(env)))
    conn = setup.loaded.settings.connection
    jobs: dict[str, Callable[[], Awaitable[list[CheckResult]]]] = {
        "keyring": check_keyring,
        "tray": lambda: check_tray(args, env),
        "desktop": lambda: check_desktop_bus(env),
        "audio": lambda: check_audio(env),
        "network": lambda: check_network(conn, env),
    }
    chosen = [g for g in GROUPS if g in groups and g in jobs]
    outcomes = await asyncio.gather(*(jobs[g]() for g in chosen), return_exceptions=True)
    results = check_settings(setup) if "settings" in groups else []
    for group, outcome in zip(chosen, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            logger.debug("doctor check %s crashed", group, exc_info=outcome)
            results.append(check_result(group, Status.WARN, _(Msg.CHECK_CRASHED).format(error=repr(outcome))))
        else:
            results.extend(outcome)
    return results


def exit_code(results: Sequence[CheckResult]) -> int:
    """1 when any check FAILed, else 0."""
    return EXIT_FAILURE if any(r.status is Status.FAIL for r in results) else EXIT_OK


def summary(results: Sequence[CheckResult]) -> str:
    """The report's last line."""
    fail = sum(r.status is Status.FAIL for r in results)
    warn = sum(r.status is Status.WARN for r in results)
    warnings = ngettext("{count} warning", "{count} warnings", warn).format(count=warn)
    if fail:
        failures = ngettext("{count} check", "{count} checks", fail).format(count=fail)
        return _(Msg.SUMMARY_FAIL).format(failures=failures, warnings=warnings)
    return _(Msg.SUMMARY_WARN).format(warnings=warnings) if warn else _(Msg.SUMMARY_OK)


def format_report(results: Sequence[CheckResult]) -> str:
    """The human-readable report: one line per check, then a summary."""
    lines = [f"tray-agent doctor {__version__}"]
    lines += [f"{r.status:<5} {r.check:<14} {r.message}" for r in results]
    lines.append(summary(results))
    return "\n".join(lines) + "\n"


def format_json(results: Sequence[CheckResult]) -> str:
    """The machine-readable report."""
    document = {
        "version": __version__,
        "ok": exit_code(results) == EXIT_OK,
        "summary": summary(results),
        "checks": [r.to_json() for r in results],
    }
    return json.dumps(document, default=str)
