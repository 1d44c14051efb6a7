"""The Qt-free session layer with fakes at the ports: dispatcher routing, the alert engine's one
route into the policy, sign-in, sign-out and settings of an AccountSession (no TrayApp, no Qt)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.fakes import (
    FakeAuthenticator,
    FakeNotifier,
    FakeScheduler,
    FakeSecretStore,
    FakeSessionClient,
    FakeSound,
    SettableClock,
    close_awaitable,
)
from tray_agent.core.alerting import AlertEngine
from tray_agent.core.commands import SendReply
from tray_agent.core.effects import Alert, AlertKind, Effect, RequestResync
from tray_agent.core.events import (
    CommandFailed,
    CommandKind,
    ConnectionChanged,
    ConnectionState,
    ConversationSummary,
    Event,
    FailureReason,
    HumanRequested,
    MessageReceived,
    SenderKind,
    WaitingListPage,
)
from tray_agent.core.policy import AlertPolicy, TrayLevel
from tray_agent.core.ports import StoredCommand
from tray_agent.core.settings import AlertSettings, ConnectionSettings, Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.core.state import FocusChanged, Store
from tray_agent.session import AccountSession, Dispatcher, SessionHooks, build_session
from tray_agent.session.account import SIGN_OUT_SECRETS

NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
ACCOUNT = ConnectionSettings(
    dialect="dashboard", server="https://support.example", company="acme", email="sam@example.com"
)


class RecordingEffects:
    def __init__(self) -> None:
        self.runs: list[list[Effect]] = []

    def run(self, effects: Any) -> None:
        self.runs.append(list(effects))


def message(key: str, text: str = "halo", name: str = "Ann") -> MessageReceived:
    return MessageReceived(
        conversation=key, sender=SenderKind.CUSTOMER, text=text, sent_at=NOW, customer_name=name
    )


# ------------------------------------------------------------------------------ Dispatcher


def test_dispatcher_routes_alerts_to_the_engine_and_resyncs_to_the_client() -> None:
    store = Store()
    effects = RecordingEffects()
    resyncs: list[str] = []
    dispatcher = Dispatcher(store, SettableClock(), alerts=effects, resync=resyncs.append)
    dispatcher.dispatch(message("p/a"))
    assert [type(e) for e in effects.runs[0]] == [Alert]
    dispatcher.route((RequestResync(why="unknown customer"),))
    assert resyncs == ["unknown customer"]


def test_dispatcher_stamps_connection_changes_and_tells_observers() -> None:
    store = Store()
    seen: list[tuple[Event, Any, Any]] = []
    dispatcher = Dispatcher(store, SettableClock())
    dispatcher.observe(lambda event, old, new: seen.append((event, old, new)))
    dispatcher.dispatch(ConnectionChanged(state=ConnectionState.CONNECTED))
    event, old, new = seen[0]
    assert isinstance(event, ConnectionChanged)
    assert event.at == NOW
    assert old is not new
    assert new is store.state


def test_dispatch_many_reduces_a_burst_with_one_notification_and_routes_its_effects_in_order() -> None:
    store = Store()
    effects = RecordingEffects()
    dispatcher = Dispatcher(store, SettableClock(NOW), alerts=effects)
    changes: list[tuple[Any, Any]] = []
    store.subscribe(lambda old, new: changes.append((old, new)))
    before = store.state
    burst: list[Event] = [
        message("p/a", "one"),
        ConnectionChanged(state=ConnectionState.CONNECTED),
        message("p/b", "two", name="Bea"),
        message("p/a", "three"),
    ]
    returned = dispatcher.dispatch_many(burst)
    # One snapshot for the burst: the subscribers are told once, from before to after.
    assert changes == [(before, store.state)]
    # Every effect, in order, routed once.
    assert [(type(e), e.conversation) for e in returned if isinstance(e, Alert)] == [
        (Alert, "p/a"),
        (Alert, "p/b"),
        (Alert, "p/a"),
    ]
    assert effects.runs == [list(returned)]
    # The same state as one dispatch per event (the connection change stamped the same way).
    one_by_one = Store()
    single = Dispatcher(one_by_one, SettableClock(NOW))
    for event in burst:
        single.dispatch(event)
    assert store.state.connection == one_by_one.state.connection
    assert store.state.connection.last_synced == NOW
    assert store.state.unread_total == one_by_one.state.unread_total == 3
    for key in ("p/a", "p/b"):
        mine, theirs = store.state.conversation(key), one_by_one.state.conversation(key)
        assert mine is not None
        assert theirs is not None
        assert [m.text for m in mine.messages.records] == [m.text for m in theirs.messages.records]


def test_dispatch_many_with_observers_shows_them_every_event() -> None:
    store = Store()
    seen: list[tuple[Event, Any, Any]] = []
    dispatcher = Dispatcher(store, SettableClock(NOW))
    dispatcher.observe(lambda event, old, new: seen.append((event, old, new)))
    burst = [message("p/a", "one"), message("p/a", "two")]
    dispatcher.dispatch_many(burst)
    assert [event for event, _old, _new in seen] == burst
    assert seen[0][2] is seen[1][1]
    assert seen[1][2] is store.state


# ------------------------------------------------------------------------------ Alert engine


def engine_with(store: Store, dispatcher: Dispatcher) -> tuple[AlertEngine, FakeNotifier, FakeScheduler]:
    notifier = FakeNotifier()
    scheduler = FakeScheduler()
    settings = AlertSettings()
    engine = AlertEngine(
        AlertPolicy(settings, UTC),
        notifier,
        FakeSound(),
        SettableClock(),
        settings,
        scheduler,
        spawn=close_awaitable,
    )
    engine.attach(store)
    dispatcher.set_alerts(engine)
    return engine, notifier, scheduler


def test_focus_reaches_the_policy_through_the_store_at_once() -> None:
    """A UI event's effect is no longer lost: focusing a chat withdraws its toast at once (no bridge,
    no app slot in between)."""
    store = Store()
    dispatcher = Dispatcher(store, SettableClock())
    _engine, notifier, _scheduler = engine_with(store, dispatcher)
    # An escalation: it toasts whoever handles the customer (an AI-handled customer's plain
    # message no longer toasts by default, issue 14).
    dispatcher.dispatch(HumanRequested(conversation="p/a", customer_name="Ann", text="help", at=NOW))
    assert [t.key for t in notifier.shown] == ["escalation:p/a"]
    dispatcher.dispatch(FocusChanged("p/a"))
    assert notifier.withdrawn == ["escalation:p/a"]


def test_the_waiting_list_reaches_the_policy_from_the_store() -> None:
    store = Store()
    dispatcher = Dispatcher(store, SettableClock())
    engine, _notifier, scheduler = engine_with(store, dispatcher)
    row = ConversationSummary(
        conversation="p/a", customer_name="Ann", waiting=True, waiting_since=NOW - timedelta(minutes=2)
    )
    dispatcher.dispatch(WaitingListPage(customers=(row,), offset=0, total=1, complete_list=True))
    scheduler.run_soon()
    assert engine.tray_level is TrayLevel.WAITING
    assert engine.policy.waiting_count == 1
    dispatcher.dispatch(WaitingListPage(customers=(), offset=0, total=0, complete_list=True))
    scheduler.run_soon(within=1.0)
    assert engine.tray_level is TrayLevel.NORMAL


def test_escalation_toast_comes_once_through_the_dispatcher() -> None:
    store = Store()
    dispatcher = Dispatcher(store, SettableClock())
    _engine, notifier, scheduler = engine_with(store, dispatcher)
    dispatcher.dispatch(HumanRequested(conversation="p/b", customer_name="Bob", text="help", at=NOW))
    scheduler.run_soon()
    assert [t.key for t in notifier.shown] == ["escalation:p/b"]


# ------------------------------------------------------------------------------ AccountSession


class Harness:
    def __init__(self, tmp_path: Path, connection: ConnectionSettings = ACCOUNT) -> None:
        self.saved: list[Settings] = []
        self.problems: list[tuple[str, str]] = []
        self.sign_ins: list[str] = []
        self.signed_out = 0
        self.clients: list[FakeSessionClient] = []
        self.authenticators: list[FakeAuthenticator] = []
        self.secrets = FakeSecretStore(
            {connection.secret_key(kind): f"s3cret-{kind}" for kind in SIGN_OUT_SECRETS}
            | {"other-account": "keep"}
        )
        hooks = SessionHooks(
            problem=lambda area, text: self.problems.append((area, text)),
            sign_in_needed=self.sign_ins.append,
            signed_out=self._signed_out,
        )
        self.session: AccountSession = build_session(
            LoadedSettings(settings=Settings(connection=connection)),
            SettableClock(),
            data_dir=tmp_path / "data",
            secrets=self.secrets,
            hooks=hooks,
            client_factory=self._client,
        )
        self.session._authenticator_factory = self._authenticator
        self.session._save_settings = self._save
        self.session._blocking = self._blocking

    def _signed_out(self) -> None:
        self.signed_out += 1

    def _authenticator(self, connection: Any, secrets: Any, clock: Any, *, password: Any, token: Any) -> Any:
        if token == "not-a-jwt":
            raise ValueError("the token is not a JWT")
        authenticator = FakeAuthenticator(password, token)
        self.authenticators.append(authenticator)
        return authenticator

    def _client(self, connection: Any, authenticator: Any, emit: Any, clock: Any, outbox: Any) -> Any:
        client = FakeSessionClient(connection, authenticator, emit, outbox)
        self.clients.append(client)
        return client

    def _save(self, loaded: LoadedSettings, edited: Settings) -> LoadedSettings:
        self.saved.append(edited)
        return LoadedSettings(settings=edited)

    @staticmethod
    async def _blocking(call: Any) -> None:
        call()


@pytest.mark.asyncio
async def test_sign_in_saves_the_account_and_restarts_the_client(tmp_path: Path) -> None:
    h = Harness(tmp_path, ConnectionSettings())
    session = h.session
    await session.sign_in(
        {
            "dialect": "dashboard",
            "server": "https://support.example",
            "company": "acme",
            "email": "kim@example.com",
            "password": "pw",
            "remember": True,
        }
    )
    assert h.saved[-1].connection.email == "kim@example.com"
    assert session.loaded.settings.connection.email == "kim@example.com"
    client = h.clients[-1]
    assert client.calls == ["start"]
    assert client.outbox is session.local
    assert session.local is not None
    assert h.authenticators[-1].remembered == ["pw"]
    session.submit(SendReply("p/a", "hi"))
    assert [type(c) for c in client.submitted] == [SendReply]
    await session.sign_in({"email": "ann@example.com", "password": "pw2"})  # again: the old client stops
    assert client.calls == ["start", "stop"]
    assert h.clients[-1].calls == ["start"]
    await session.stop()


@pytest.mark.asyncio
async def test_the_client_sink_takes_a_burst_as_one_batch_through_the_dispatcher(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    session = h.session
    await session.sign_in({"email": "kim@example.com", "password": "pw"})
    client = h.clients[-1]
    changes: list[Any] = []
    session.store.subscribe(lambda old, new: changes.append(new))
    client.emit(message("p/a", "one"))  # one event: as before
    client.emit.many([message("p/a", "two"), message("p/b", "three", name="Bea")])  # a burst
    assert len(changes) == 2
    conv = session.store.state.conversation("p/a")
    assert conv is not None
    assert [m.text for m in conv.messages.records] == ["one", "two"]
    assert session.store.state.conversation("p/b") is not None
    await session.stop()


@pytest.mark.asyncio
async def test_sign_in_with_a_bad_token_asks_again_and_stays_offline(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.session.sign_in({"token": "not-a-jwt"})
    assert h.sign_ins == ["the token is not a JWT"]
    assert h.session.client is None
    assert h.session.store.state.connection.state is ConnectionState.OFFLINE


def test_commands_without_a_client_fail_at_once_as_not_signed_in(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    failed: list[CommandFailed] = []
    h.session.dispatcher.observe(lambda e, _o, _n: failed.append(e) if isinstance(e, CommandFailed) else None)
    h.session.submit(SendReply("p/a", "hi", command_id="c-1"))
    assert [(f.command_id, f.reason) for f in failed] == [("c-1", FailureReason.OFFLINE)]


@pytest.mark.asyncio
async def test_sign_out_deletes_the_store_and_the_saved_sign_in_and_empties_the_state(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    session = h.session
    assert session.start("pw") == ""
    assert session.local is not None
    session.local.add(StoredCommand("c-1", CommandKind.REPLY, "p/a", "queued answer"))
    session.dispatcher.dispatch(message("p/a"))
    assert list((tmp_path / "data").iterdir())
    client = h.clients[-1]
    await session.sign_out()
    assert client.calls == ["start", "stop"]
    assert session.client is None
    assert session.local is None
    assert list((tmp_path / "data").iterdir()) == []
    assert set(h.secrets.values) == {"other-account"}
    assert h.signed_out == 1
    state = session.store.state
    assert len(state.conversations) == 0
    assert state.connection.state is ConnectionState.AUTH_REQUIRED
    assert ("storage", "") in h.problems


@pytest.mark.asyncio
async def test_apply_settings_restarts_the_client_only_when_the_connection_changed(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    session = h.session
    session.start("pw")
    edited = session.loaded.settings.model_copy(deep=True)
    edited.ui.history_limit = 50
    assert session.apply_settings(edited) == ""
    await session.wait_for_tasks()
    assert len(h.clients) == 1
    assert session.store.history_limit == 50
    edited = session.loaded.settings.model_copy(deep=True)
    edited.connection.server = "https://other.example"
    assert session.apply_settings(edited) == ""
    await session.wait_for_tasks()
    assert h.clients[0].calls == ["start", "stop"]
    assert len(h.clients) == 2
    assert h.clients[1].connection.server == "https://other.example"
    await session.stop()


def test_mute_saves_the_sounds_setting_unless_a_policy_locks_it(tmp_path: Path) -> None:
    import dataclasses

    h = Harness(tmp_path)
    session = h.session
    shown: list[LoadedSettings] = []
    session.hooks.settings_changed = shown.append
    session.set_sounds(False)
    assert [s.alerts.sounds for s in h.saved] == [False]
    assert session.loaded.settings.alerts.sounds is False
    session.loaded = dataclasses.replace(session.loaded, locked=frozenset({"alerts.sounds"}))
    session.set_sounds(True)  # locked: nothing saved, nothing changed, the tray told again
    assert len(h.saved) == 1
    assert session.loaded.settings.alerts.sounds is False
    assert [s.settings.alerts.sounds for s in shown] == [False, False]


def test_manual_dnd_end_is_saved_once_and_not_when_locked(tmp_path: Path) -> None:
    import dataclasses

    h = Harness(tmp_path)
    session = h.session
    until = datetime(2099, 1, 1, 9, 0, tzinfo=UTC)
    session.remember_dnd(until)
    session.remember_dnd(until)  # already saved: not written again
    assert [s.alerts.dnd_until for s in h.saved] == [until.isoformat()]
    session.remember_dnd(None)
    assert [s.alerts.dnd_until for s in h.saved] == [until.isoformat(), ""]
    session.loaded = dataclasses.replace(session.loaded, locked=frozenset({"alerts.dnd_until"}))
    session.remember_dnd(until)
    assert len(h.saved) == 2


@pytest.mark.asyncio
async def test_the_alert_engine_runs_on_asyncio_timers_too() -> None:
    """Without Qt (listen, tests): the policy's deadline fires through AsyncioScheduler."""
    import asyncio

    from tray_agent.core.ports import SystemClock
    from tray_agent.session import AsyncioScheduler

    notifier = FakeNotifier()
    settings = AlertSettings(toast_min_interval=0.05, coalesce_window=0.0)
    fired = asyncio.Event()
    engine = AlertEngine(
        AlertPolicy(settings, UTC),
        notifier,
        FakeSound(),
        SystemClock(),
        settings,
        AsyncioScheduler(),
        spawn=close_awaitable,
    )
    engine.on_effects_ran = lambda _effects: fired.set()
    engine.run([Alert(AlertKind.MESSAGE, "p/1", "Ann"), Alert(AlertKind.MESSAGE, "p/2", "Bob")])
    assert [t.key for t in notifier.shown] == ["message:p/1"]  # the second is held back
    fired.clear()
    await asyncio.wait_for(fired.wait(), 5.0)
    assert [t.key for t in notifier.shown] == ["message:p/1", "message:p/2"]
    assert not engine.timer_active
