"""Sign out through the tray and its confirmation: the account leaves the disk and the keyring."""

from __future__ import annotations

import argparse
import json
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from PySide6.QtWidgets import QApplication, QPushButton

from tests.gui.fakes import FakeSecretStore, page, summary
from tray_agent.app import TrayApp, build_windows
from tray_agent.core.events import CommandKind, ConnectionState
from tray_agent.core.ports import StoredCommand
from tray_agent.core.settings import ConnectionSettings, Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.platform.paths import Paths
from tray_agent.session.account import SIGN_OUT_SECRETS

pytestmark = [pytest.mark.gui, pytest.mark.asyncio]

ACCOUNT = ConnectionSettings(
    dialect="dashboard", server="https://support.example", company="acme", email="sam@example.com"
)
OTHER_ACCOUNT = ACCOUNT.model_copy(update={"email": "kim@example.com"})


@pytest_asyncio.fixture
async def tray_app(qapp: QApplication, tmp_path) -> AsyncIterator[TrayApp]:
    quit_on_close = qapp.quitOnLastWindowClosed()
    qapp.setQuitOnLastWindowClosed(False)  # as run() does: closing a dialog must not stop the loop
    paths = Paths.from_platform(tmp_path / "base", env={})
    paths.ensure_dirs()
    loaded = LoadedSettings(settings=Settings(connection=ACCOUNT))
    app = TrayApp(argparse.Namespace(demo=False), paths, loaded, qapp)
    app.session.secrets = FakeSecretStore(
        {ACCOUNT.secret_key(kind): f"s3cret-{kind}" for kind in SIGN_OUT_SECRETS}
        | {OTHER_ACCOUNT.secret_key("password"): "not this account"}
    )
    app.session.local = app.session.open_local_store()  # as _start does for a configured account
    app.attach_windows(build_windows(app))
    assert app.windows is not None
    yield app
    app.windows.close_all()
    await app.runner.aclose()
    app.bridge.close()
    app.tray.hide()
    qapp.setQuitOnLastWindowClosed(quit_on_close)


def find_action(app: TrayApp, name: str):
    app.tray.refresh_menu()
    return next(a for a in app.tray.menu.actions() if a.objectName() == name)


async def test_sign_out_deletes_the_local_copy_and_the_saved_sign_in(tray_app: TrayApp, tmp_path) -> None:
    app = tray_app
    windows = app.windows
    paths = app.paths
    # What an agent leaves behind: customers, an open chat with a draft, a queued reply.
    app.dispatcher.dispatch(page(summary("p/a", "Alice", since=timedelta(minutes=-3))))
    chat = windows.open_chat("p/a")
    chat.reply_edit.setPlainText("draft for Alice")
    windows.save_drafts()
    app.session.local.add(StoredCommand("c-1", CommandKind.REPLY, "p/a", "queued answer"))
    windows.save_session()
    store_files = sorted(p.name for p in paths.data.iterdir())
    assert any(name.startswith("store-") for name in store_files), store_files
    assert app.session.local.drafts() == {"p/a": "draft for Alice"}
    assert (paths.state / "windows.json").exists()

    # Tray -> confirmation -> "Sign out and delete".
    find_action(app, "signOut").trigger()
    box = windows.sign_out_box
    assert box is not None
    assert "conversations, drafts and queued replies" in box.text()
    box.findChild(QPushButton, "signOut").click()
    await app.session.wait_for_tasks()

    assert list(paths.data.iterdir()) == []  # the database, its -wal/-shm: all gone
    deleted = {ACCOUNT.secret_key(kind) for kind in SIGN_OUT_SECRETS}
    assert deleted <= set(app.session.secrets.deleted)
    assert set(app.session.secrets.secrets) == {OTHER_ACCOUNT.secret_key("password")}  # other accounts stay
    assert windows.chats == {}
    assert not (paths.state / "windows.json").exists()
    assert app.session.local is None
    state = app.store.state
    assert (len(state.conversations), len(state.outbound)) == (0, 0)
    assert state.connection.state is ConnectionState.AUTH_REQUIRED
    dialog = windows.sign_in_dialog
    assert dialog is not None
    assert dialog.isVisible()
    assert dialog.problem_text == "You are signed out. Sign in to continue."


async def test_sign_out_without_an_open_store_still_deletes_its_files(tray_app: TrayApp) -> None:
    app = tray_app
    app.session.local.set_draft("p/b", "left from last run")
    app.session.local.close()
    app.session.local = None  # e.g. the client never started this run
    assert list(app.paths.data.iterdir())
    await app.flows.sign_out()
    assert list(app.paths.data.iterdir()) == []
    assert app.windows.sign_in_dialog is not None


async def test_sign_out_withdraws_every_toast_of_the_old_account(tray_app: TrayApp) -> None:
    from tests.gui.conftest import FakeNotifier
    from tray_agent.core.effects import Alert, AlertKind

    app = tray_app
    notifier = FakeNotifier()
    app.runner.set_notifier(notifier)
    app.runner.run([Alert(AlertKind.MESSAGE, "p/a", "Alice", text="hi")])
    assert [t.key for t in notifier.shown] == ["message:p/a"]
    await app.flows.sign_out()
    assert notifier.withdrawn == ["message:p/a"]


async def test_manual_dnd_is_saved_and_restored_at_the_next_start(tray_app: TrayApp, tmp_path) -> None:
    import dataclasses
    from datetime import UTC, datetime

    from tray_agent.core.policy import AlertPolicy
    from tray_agent.core.settings_layers import load_settings

    app = tray_app
    user_file = tmp_path / "settings.json"
    app.session.loaded = dataclasses.replace(app.session.loaded, user_file=user_file)
    until = datetime(2099, 1, 1, 9, 0, tzinfo=UTC)
    app.runner.set_dnd(until)
    assert app.session.loaded.settings.alerts.dnd_until == until.isoformat()
    reloaded = load_settings(user_file=user_file)
    assert AlertPolicy(reloaded.settings.alerts).dnd_until == until  # the next start is quiet too
    app.runner.set_dnd(None)
    assert load_settings(user_file=user_file).settings.alerts.dnd_until == ""


async def test_cancelled_sign_out_keeps_everything(tray_app: TrayApp) -> None:
    app = tray_app
    app.session.local.set_draft("p/a", "keep me")
    find_action(app, "signOut").trigger()
    box = app.windows.sign_out_box
    assert box is not None
    box.reject()
    await app.session.wait_for_tasks()
    assert app.session.local is not None
    assert app.session.local.drafts() == {"p/a": "keep me"}
    assert app.session.secrets.deleted == []


async def test_export_diagnostics_from_the_tray_writes_the_zip(tray_app: TrayApp, tmp_path) -> None:
    app = tray_app
    (app.paths.log / "tray-agent.log").write_text("x INFO app: token=abc123secret\n", encoding="utf-8")
    find_action(app, "exportDiagnostics").trigger()
    dialog = app.tray.export_dialog
    assert dialog is not None
    target = tmp_path / "support.zip"
    dialog.fileSelected.emit(str(target))
    dialog.reject()
    await app.session.wait_for_tasks()
    with zipfile.ZipFile(target) as archive:
        names = set(archive.namelist())
        assert {"logs/tray-agent.log", "settings.json", "policy.json", "versions.json"} <= names
        assert all(b"abc123secret" not in archive.read(n) for n in names)
        versions = json.loads(archive.read("versions.json"))
    assert versions["keyring backend"] == "fake"


async def test_drafts_of_the_old_json_file_move_into_the_store_once(tray_app: TrayApp) -> None:
    app = tray_app
    app.session.local.set_draft("p/a", "newer draft in the store")
    app.session.local.close()
    old = app.paths.state / "drafts.json"
    old.write_text(
        json.dumps({"version": 1, "drafts": {"p/a": "older draft", "p/b": "only in the file", "p/c": " "}}),
        encoding="utf-8",
    )
    app.session.local = app.session.open_local_store()
    assert app.session.local.drafts() == {"p/a": "newer draft in the store", "p/b": "only in the file"}
    assert not old.exists()
    assert app.windows.draft_store is app.session.local
    assert app.windows.open_chat("p/b").reply_edit.toPlainText() == "only in the file"


async def test_later_launches_during_start_up_are_answered_once_the_windows_exist(
    qapp: QApplication, tmp_path
) -> None:
    """A link's "open" then a plain relaunch's "activate", both before the windows exist: the
    chat still opens (the activate does not cancel it); an "activate" alone shows the inbox."""
    from tray_agent.ui.single_instance import ACTIVATE, SingleInstance, open_message, server_name

    for messages, chat in (([open_message("p/a"), ACTIVATE], "p/a"), ([ACTIVATE], "")):
        paths = Paths.from_platform(tmp_path / f"base-{len(messages)}", env={})
        paths.ensure_dirs()
        app = TrayApp(
            argparse.Namespace(demo=False), paths, LoadedSettings(settings=Settings(connection=ACCOUNT)), qapp
        )
        app.session.secrets = FakeSecretStore({})
        instance = SingleInstance(server_name(str(paths.config)))
        app.attach_single_instance(instance, pending=messages)  # arrived while the first icon showed
        app.attach_windows(build_windows(app))
        assert app.windows is not None
        try:
            app.show_first_windows()
            if chat:
                assert list(app.windows.chats) == [chat]
            else:
                assert app.windows.chats == {}
                assert app.windows.inbox is not None
                assert app.windows.inbox.isVisible()
        finally:
            app.windows.close_all()
            await app.runner.aclose()
            app.bridge.close()
            app.tray.hide()
            instance.close()
