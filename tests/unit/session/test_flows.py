"""The tray app's account flows with fakes at the ports (no TrayApp, no Qt): when to ask for a
sign-in, reconnect and wake-up, sign-in and sign-out, settings saved (theme, language, autostart),
diagnostics export."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.fakes import (
    FakeAuthenticator,
    FakeAutostart,
    FakeDiagnosticsWriter,
    FakeFrontEnd,
    FakeSecretStore,
    FakeSessionClient,
    SettableClock,
)
from tray_agent.core.events import ConnectionState
from tray_agent.core.settings import ConnectionSettings, Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.core.state import ConnectionInfo, Store
from tray_agent.session import AccountSession, Dispatcher
from tray_agent.session.account import SIGN_OUT_SECRETS
from tray_agent.session.flows import AccountFlows

ACCOUNT = ConnectionSettings(
    dialect="dashboard", server="https://support.example", company="acme", email="sam@example.com"
)
SIGN_IN_PROMPT = "Enter your server and account to sign in."
SIGNED_OUT_PROMPT = "You are signed out. Sign in to continue."


class Rig:
    """An AccountSession on fake ports, its flows, and what they asked of the front end."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        save_fails: Exception | None = None,
        writer: FakeDiagnosticsWriter | None = None,
        autostart: bool = True,
        autostart_problem: str = "",
    ) -> None:
        self.clients: list[FakeSessionClient] = []
        self.saved: list[Settings] = []
        self.withdrawn = 0
        self.save_fails = save_fails
        self.secrets = FakeSecretStore({ACCOUNT.secret_key(kind): "s3cret" for kind in SIGN_OUT_SECRETS})
        self.front = FakeFrontEnd()
        self.writer = writer or FakeDiagnosticsWriter()
        self.autostart = FakeAutostart(autostart_problem)
        dispatcher = Dispatcher(Store(), SettableClock())
        self.session = AccountSession(
            LoadedSettings(settings=Settings(connection=ACCOUNT)),
            dispatcher,
            SettableClock(),
            data_dir=tmp_path / "data",
            secrets=self.secrets,
            authenticator_factory=self._authenticator,
            client_factory=self._client,
            save_settings=self._save,
            blocking=self._blocking,
        )
        dispatcher.set_resync(self.session.request_resync)
        self.flows = AccountFlows(
            self.session,
            self.front,
            withdraw_alerts=self._withdraw,
            write_diagnostics=self.writer,
            autostart=autostart,
            apply_autostart=self.autostart,
        )

    def _withdraw(self) -> None:
        self.withdrawn += 1

    @staticmethod
    def _authenticator(connection: Any, secrets: Any, clock: Any, *, password: Any, token: Any) -> Any:
        return FakeAuthenticator(password, token)

    def _client(self, connection: Any, authenticator: Any, emit: Any, clock: Any, outbox: Any) -> Any:
        client = FakeSessionClient(connection, authenticator, emit, outbox)
        self.clients.append(client)
        return client

    def _save(self, loaded: LoadedSettings, edited: Settings) -> LoadedSettings:
        if self.save_fails is not None:
            raise self.save_fails
        self.saved.append(edited)
        return LoadedSettings(settings=edited)

    @staticmethod
    async def _blocking(call: Any) -> None:
        call()


def info(state: ConnectionState, detail: str = "") -> ConnectionInfo:
    return ConnectionInfo(state=state, detail=detail)


# ------------------------------------------------------------------------------ connection


def test_auth_required_asks_for_a_sign_in_once_until_the_state_moves_on(tmp_path: Path, caplog) -> None:
    rig = Rig(tmp_path)
    with caplog.at_level(logging.INFO, logger="tray_agent.session.flows"):
        rig.flows.on_connection_changed(info(ConnectionState.AUTH_REQUIRED, "wrong password"))
        rig.flows.on_connection_changed(info(ConnectionState.AUTH_REQUIRED, "wrong password"))
        rig.flows.on_connection_changed(info(ConnectionState.CONNECTING))
        rig.flows.on_connection_changed(info(ConnectionState.AUTH_REQUIRED, "expired"))
        rig.flows.on_connection_changed(info(ConnectionState.CONNECTED))
    assert rig.front.calls == [
        ("show_sign_in", "wrong password"),
        ("show_sign_in", "expired"),
        ("close_sign_in", None),  # connected: the dialog goes
    ]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [  # one line per new state, not per repeat
        "Connection: auth_required wrong password",
        "Connection: connecting ",
        "Connection: auth_required expired",
        "Connection: connected ",
    ]


@pytest.mark.asyncio
async def test_reconnect_now_reconnects_the_client_or_asks_for_a_sign_in_without_one(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.flows.reconnect_requested()  # no client yet (no account, sign-in cancelled, signed out)
    assert rig.front.of("show_sign_in") == [SIGN_IN_PROMPT]
    rig.session.start("pw")
    rig.flows.reconnect_requested()
    assert rig.clients[-1].calls == ["start", "reconnect_now"]
    assert rig.front.of("show_sign_in") == [SIGN_IN_PROMPT]
    await rig.session.stop()


@pytest.mark.asyncio
async def test_a_wakeup_reconnects_at_once_only_while_a_client_runs(tmp_path: Path, caplog) -> None:
    rig = Rig(tmp_path)
    with caplog.at_level(logging.INFO, logger="tray_agent.session.flows"):
        rig.flows.wakeup_detected("resumed from sleep")  # nothing to reconnect
        rig.session.start("pw")
        rig.flows.wakeup_detected("network changed")
    assert rig.clients[-1].calls == ["start", "reconnect_now (automatic)"]
    assert [r.getMessage() for r in caplog.records] == ["Reconnecting at once: network changed"]
    await rig.session.stop()


# ------------------------------------------------------------------------------ sign in, sign out


@pytest.mark.asyncio
async def test_sign_in_requested_signs_in_in_the_background(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.flows.sign_in_requested({"email": "kim@example.com", "password": "pw"})
    await rig.session.wait_for_tasks()
    assert rig.session.loaded.settings.connection.email == "kim@example.com"
    assert rig.clients[-1].calls == ["start"]
    await rig.session.stop()


@pytest.mark.asyncio
async def test_sign_out_withdraws_the_toasts_forgets_the_account_then_asks_for_a_sign_in_once(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.session.start("pw")
    client = rig.clients[-1]
    rig.flows.sign_out_confirmed()
    await rig.session.wait_for_tasks()
    assert rig.withdrawn == 1
    assert client.calls == ["start", "stop"]
    assert rig.session.client is None
    assert rig.secrets.values == {}
    assert rig.front.of("show_sign_in") == [SIGNED_OUT_PROMPT]
    # The emptied state says AUTH_REQUIRED: the dialog already asks, so no second prompt.
    state = rig.session.store.state.connection
    assert state.state is ConnectionState.AUTH_REQUIRED
    rig.flows.on_connection_changed(state)
    assert rig.front.of("show_sign_in") == [SIGNED_OUT_PROMPT]


# ------------------------------------------------------------------------------ settings


def test_saved_settings_are_applied_then_theme_language_and_autostart_follow(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    edited = rig.session.loaded.settings.model_copy(deep=True)
    edited.ui.theme = "dark"
    edited.ui.autostart = True
    rig.flows.settings_saved(edited)
    assert rig.saved == [edited]
    [shown] = rig.front.of("appearance_changed")
    assert shown.ui.theme == "dark"
    assert rig.autostart.applied == [(True, False)]
    assert rig.front.of("settings_save_failed") == []


def test_settings_that_cannot_be_saved_are_reported_and_nothing_follows(tmp_path: Path) -> None:
    rig = Rig(tmp_path, save_fails=OSError("read-only file system"))
    rig.flows.settings_saved(rig.session.loaded.settings.model_copy(deep=True))
    assert rig.front.of("settings_save_failed") == ["read-only file system"]
    assert rig.front.of("appearance_changed") == []
    assert rig.autostart.applied == []


def test_autostart_follows_the_setting_and_its_lock_and_logs_a_problem(tmp_path: Path, caplog) -> None:
    import dataclasses

    rig = Rig(tmp_path, autostart_problem="no autostart folder")
    rig.session.loaded = dataclasses.replace(rig.session.loaded, locked=frozenset({"ui.autostart"}))
    with caplog.at_level(logging.WARNING, logger="tray_agent.session.flows"):
        rig.flows.sync_autostart()
    assert rig.autostart.applied == [(rig.session.loaded.settings.ui.autostart, True)]
    assert [r.getMessage() for r in caplog.records] == ["Autostart: no autostart folder"]


def test_the_demo_never_touches_autostart(tmp_path: Path) -> None:
    rig = Rig(tmp_path, autostart=False)
    rig.flows.sync_autostart()
    rig.flows.settings_saved(rig.session.loaded.settings.model_copy(deep=True))
    assert rig.autostart.applied == []


# ------------------------------------------------------------------------------ diagnostics


@pytest.mark.asyncio
async def test_export_diagnostics_writes_with_the_sessions_inputs_and_says_where(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    target = tmp_path / "support.zip"
    rig.flows.export_requested(str(target))
    await rig.session.wait_for_tasks()
    [(written_to, inputs)] = rig.writer.written
    assert written_to == target
    assert inputs["loaded"] is rig.session.loaded
    assert inputs["keyring_backend"] == "fake"
    assert inputs["store_problem"] == ""
    assert rig.front.of("show_info") == [("Diagnostics saved", f"Saved to {target}")]


@pytest.mark.asyncio
async def test_export_diagnostics_that_fails_says_why_and_never_raises(tmp_path: Path, caplog) -> None:
    rig = Rig(tmp_path, writer=FakeDiagnosticsWriter(OSError(errno.ENOSPC, "No space left on device")))
    target = tmp_path / "support.zip"
    with caplog.at_level(logging.ERROR, logger="tray_agent.session.flows"):
        assert await rig.flows.export_diagnostics(target) is False
    assert rig.front.of("show_info") == [
        ("Diagnostics not saved", "Could not save the file: No space left on device")
    ]
    assert f"Could not export diagnostics to {target}" in caplog.text
    rig.writer.fail = ValueError("bad")
    assert await rig.flows.export_diagnostics(target) is False
    assert rig.front.of("show_info")[-1] == ("Diagnostics not saved", "Could not save the file: ValueError")
