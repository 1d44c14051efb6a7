"""The doctor's local checks: the settings and machine policy as loaded, and the keyring."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from tray_agent.checks.results import CheckResult, Msg, Status, check_result
from tray_agent.core.i18n import _
from tray_agent.core.settings_layers import LoadedSettings

KEYRING_TIMEOUT = 15.0  # an unlock prompt may be showing


# ---------------------------------------------------------------------------------------------
# Settings and policy


@dataclass(frozen=True, slots=True)
class Setup:
    """The settings as the app would load them, the policy sources read, and the settings file."""

    loaded: LoadedSettings
    policy_sources: tuple[str, ...]
    settings_file: str


def load_setup(args: argparse.Namespace, env: Mapping[str, str]) -> Setup:
    """Load the settings with the command line's overrides, as the app does."""
    from tray_agent.platform.paths import Paths, load_settings_for, read_policy_sources

    paths = Paths.from_platform(getattr(args, "basedir", None), env)
    sources = read_policy_sources(paths)
    loaded = load_settings_for(paths, env, args, policy_sources=sources)
    return Setup(loaded, tuple(name for name, _source in sources), str(paths.settings_file))


def check_settings(setup: Setup) -> list[CheckResult]:
    """Problems met while loading the settings, and whether the connection is configured."""
    conn = setup.loaded.settings.connection
    results = [
        check_result("settings", Status.WARN, _(Msg.SETTINGS_PROBLEM).format(problem=p))
        for p in setup.loaded.problems
    ]
    missing = []
    if not conn.server:
        missing.append(_(Msg.NO_SERVER))
    elif not conn.server.startswith(("http://", "https://")):
        missing.append(_(Msg.BAD_SERVER).format(server=conn.server))
    if conn.dialect == "org" and not conn.org:
        missing.append(_(Msg.NO_ORG))
    if conn.dialect == "dashboard" and not conn.company:
        missing.append(_(Msg.NO_COMPANY))
    results += [check_result("settings", Status.FAIL, text) for text in missing]
    if not results:
        where = setup.settings_file
        results.append(
            check_result(
                "settings",
                Status.OK,
                _(Msg.SETTINGS_OK).format(where=where, dialect=conn.dialect, server=conn.server),
                file=where,
                dialect=conn.dialect,
                server=conn.server,
            )
        )
    locked = sorted(setup.loaded.locked)
    if not setup.policy_sources:
        results.append(check_result("policy", Status.OK, _(Msg.POLICY_NONE), sources=[], locked=[]))
    else:
        sources = ", ".join(setup.policy_sources)
        text = (
            _(Msg.POLICY_OK).format(sources=sources, locked=", ".join(locked))
            if locked
            else _(Msg.POLICY_NO_LOCKS).format(sources=sources)
        )
        results.append(
            check_result("policy", Status.OK, text, sources=list(setup.policy_sources), locked=locked)
        )
    return results


# ---------------------------------------------------------------------------------------------
# Keyring


async def check_keyring() -> list[CheckResult]:
    """Whether secrets reach the OS keyring (touches it once; may show an unlock prompt)."""
    from tray_agent.platform.secret_helper import HelperSecretStore

    def probe() -> tuple[bool, str | None, str | None]:
        # Through the app's keyring helper process, as the app does (so a bundle that cannot
        # run its helper fails here); a hung helper is killed after the same timeout.
        store = HelperSecretStore(timeout=KEYRING_TIMEOUT, linger=0)
        try:
            store.probe()
        finally:
            store.close()
        return store.persistent, store.problem, store.backend_name

    try:
        persistent, problem, backend = await asyncio.wait_for(asyncio.to_thread(probe), KEYRING_TIMEOUT)
    except TimeoutError:
        return [check_result("keyring", Status.WARN, _(Msg.KEYRING_TIMEOUT).format(seconds=KEYRING_TIMEOUT))]
    if persistent:
        return [
            check_result("keyring", Status.OK, _(Msg.KEYRING_OK).format(backend=backend), backend=backend)
        ]
    return [check_result("keyring", Status.WARN, problem or "", backend=backend)]
