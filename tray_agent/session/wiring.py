"""build_session: the ONE wiring of an account's objects, used by the tray app and ``listen``.

Authenticator (``net.auth``), codec (``core.protocol``), local store (``platform.storage``),
network client (``net.client``), store and dispatcher: built here and nowhere else. The network
and storage modules are imported when first used (the app builds its session before its tray
menu is up; websockets, truststore and the codecs cost tens of milliseconds to import).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tray_agent.core.events import Dialect, Event
from tray_agent.core.ports import Clock, EffectSink, OutboxStore, SecretStore
from tray_agent.core.settings import ConnectionSettings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.core.state import Store
from tray_agent.session.account import AccountSession, ClientFactory, SessionClient, SessionHooks
from tray_agent.session.dispatcher import Dispatcher


def make_client(
    connection: ConnectionSettings,
    authenticator: Any,
    emit: Callable[[Event], None],
    clock: Clock,
    outbox: OutboxStore,
) -> SessionClient:
    """The dialect's codec and the network client of one account (the app's and ``listen``'s)."""
    from tray_agent.core.protocol import codec_for
    from tray_agent.net.client import Client

    dialect = Dialect(connection.dialect)
    kwargs = {"org_id": connection.org} if dialect is Dialect.ORG else {}
    return Client(codec_for(dialect, **kwargs), authenticator, connection, emit, clock, outbox=outbox)


def authenticator_for(
    connection: ConnectionSettings,
    secrets: SecretStore,
    clock: Clock,
    *,
    password: str | None = None,
    token: str | None = None,
) -> Any:
    """``net.auth.authenticator_for`` (imported now). Raises ValueError for a token that is not a JWT."""
    from tray_agent.net.auth import authenticator_for as build

    return build(connection, secrets, clock, password=password, token=token)


def build_session(
    loaded: LoadedSettings,
    clock: Clock,
    *,
    data_dir: Path,
    state_dir: Path | None = None,
    secrets: SecretStore | None = None,
    alerts: EffectSink | None = None,
    hooks: SessionHooks | None = None,
    store: Store | None = None,
    client_factory: ClientFactory = make_client,
) -> AccountSession:
    """Build the store, the dispatcher and the account session (not started: see ``start``).

    Args:
        loaded: the settings in force.
        clock: the clock.
        data_dir: where account stores live.
        state_dir: where an old ``drafts.json`` may be (the app), or None (``listen``).
        secrets: the secret store, or None to set later.
        alerts: the alert engine the dispatcher hands alert effects to (None: no alerts).
        hooks: how outcomes reach the front end.
        store: a store to use (default: a new one bounded by ``ui.history_limit``).
        client_factory: builds the client (tests pass fakes).

    Returns:
        The session; its ``dispatcher`` (and ``dispatcher.store``) are the run's.
    """
    if store is None:
        store = Store(history_limit=loaded.settings.ui.history_limit)
    dispatcher = Dispatcher(store, clock, alerts=alerts)
    session = AccountSession(
        loaded,
        dispatcher,
        clock,
        data_dir=data_dir,
        state_dir=state_dir,
        secrets=secrets,
        hooks=hooks,
        authenticator_factory=authenticator_for,
        client_factory=client_factory,
    )
    dispatcher.set_resync(session.request_resync)
    return session
