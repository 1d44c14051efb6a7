"""LocalStore: migrations, privacy, bounds, corrupt-file recovery, sign-out, drafts, outbox."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers.outbox import FailingOutbox
from tray_agent.core.commands import SendReply, TakeOver
from tray_agent.core.events import CommandKind
from tray_agent.core.ports import OutboxStore, OutboxWriteError, StoredCommand, StoredState
from tray_agent.platform.storage import SCHEMA_VERSION, LocalStore, store_path

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def path(tmp_path):
    return store_path(tmp_path / "data", "dashboard:http://x:acme:agent@x:store")


def test_store_path_hides_the_account_and_is_stable(tmp_path):
    first = store_path(tmp_path, "org:https://srv:org1:a@b.c:store")
    assert first == store_path(tmp_path, "org:https://srv:org1:a@b.c:store")
    assert "b.c" not in first.name
    assert first != store_path(tmp_path, "org:https://srv:org2:a@b.c:store")


def test_fresh_store_is_migrated_to_the_current_schema_in_wal_mode(path):
    store = LocalStore(path)
    assert store.problem == ""
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"outbox", "drafts", "conversations", "messages"} <= tables
    db.close()


def test_reopening_keeps_data_and_does_not_migrate_again(path):
    store = LocalStore(path)
    store.set_draft("p/1", "half a sentence")
    store.close()
    again = LocalStore(path)
    assert again.draft("p/1") == "half a sentence"
    assert again.problem == ""


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_files_are_private_to_the_user(path):
    store = LocalStore(path)
    store.add(StoredCommand.from_command(SendReply("p/1", "hi")))
    assert path.parent.stat().st_mode & 0o777 == 0o700
    for name in os.listdir(path.parent):
        assert (path.parent / name).stat().st_mode & 0o777 == 0o600, name


def test_outbox_round_trip_in_order_with_states(path):
    store = LocalStore(path)
    reply = SendReply("p/1", "Halo!", command_id="c-1")
    take = TakeOver("p/2", command_id="c-2")
    assert store.add(StoredCommand.from_command(reply, T0))
    assert store.add(StoredCommand.from_command(take, T0))
    store.mark_sent("c-1")
    store.close()
    store = LocalStore(path)
    pending = store.pending()
    assert [p.command_id for p in pending] == ["c-1", "c-2"]
    assert pending[0].state is StoredState.SENT
    assert pending[0].to_command() == reply
    assert pending[1].to_command() == take
    assert pending[0].queued_at == T0
    store.mark_unconfirmed("c-1")
    assert store.pending()[0].state is StoredState.UNCONFIRMED
    store.add(pending[0])  # resend: back to queued, same row
    assert [(p.command_id, p.state) for p in store.pending()] == [
        ("c-1", StoredState.QUEUED),
        ("c-2", StoredState.QUEUED),
    ]
    store.remove("c-1")
    assert [p.kind for p in store.pending()] == [CommandKind.TAKE_OVER]


def test_only_agent_commands_are_persistable():
    from tray_agent.core.commands import LoadHistory, Ping, RefreshWaitingList

    for command in (Ping(), RefreshWaitingList(), LoadHistory("p/1")):
        assert StoredCommand.from_command(command) is None


def test_drafts_are_saved_replaced_and_deleted_when_blank(path):
    store = LocalStore(path)
    store.set_draft("p/1", "first")
    store.set_draft("p/1", "second")
    store.set_draft("p/2", "other")
    assert store.drafts() == {"p/1": "second", "p/2": "other"}
    store.set_draft("p/1", "   ")
    assert store.draft("p/1") == ""
    assert store.drafts() == {"p/2": "other"}


@pytest.mark.parametrize(
    "garbage", [b"this is not a database at all" * 200, b"SQLite format 3\x00" + b"\xff" * 5000]
)
def test_corrupt_file_is_set_aside_and_a_fresh_store_started(path, garbage):
    store = LocalStore(path)
    store.set_draft("p/1", "lost")
    store.close()
    path.write_bytes(garbage)
    store = LocalStore(path)
    assert store.is_open
    assert not store.in_memory
    assert "set aside" in store.problem
    assert store.set_aside is not None
    assert store.set_aside.read_bytes() == garbage
    assert store.set_aside.name.startswith(path.name + ".corrupt-")
    assert store.draft("p/1") == ""
    store.set_draft("p/1", "fresh")  # usable
    store.close()
    again = LocalStore(path)  # and the next start is clean: no loop
    assert again.problem == ""
    assert again.draft("p/1") == "fresh"


def test_file_from_a_newer_version_is_set_aside_not_altered(path):
    LocalStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    store = LocalStore(path)
    assert store.set_aside is not None
    assert "set aside" in store.problem


def test_unopenable_location_falls_back_to_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a directory")
    store = LocalStore(blocker / "store.sqlite3")
    assert store.in_memory
    assert "memory" in store.problem
    assert store.add(StoredCommand.from_command(SendReply("p/1", "hi"))) is False  # not durable
    assert len(store.pending()) == 1


def test_sign_out_deletes_every_file_of_the_account(path):
    store = LocalStore(path)
    store.add(StoredCommand.from_command(SendReply("p/1", "private words")))
    store.set_draft("p/1", "private draft")
    aside = path.with_name(path.name + ".corrupt-20260101T000000000000Z")
    aside.write_bytes(b"old customer data")
    other = path.with_name("store-someoneelse.sqlite3")
    other.write_bytes(b"another account")
    assert store.sign_out()
    assert sorted(p.name for p in path.parent.iterdir()) == [other.name]
    assert not store.is_open
    assert store.pending() == []  # closed: reads are empty, writes are no-ops
    store.set_draft("p/1", "x")
    assert sorted(p.name for p in path.parent.iterdir()) == [other.name]


# -- the outbox when the disk refuses writes (core.ports.OutboxStore failure contract) -------------


def _local_store_that_can_refuse_writes(path: Path) -> tuple[LocalStore, Callable[[bool], None]]:
    """A real LocalStore plus a switch that makes SQLite itself refuse every write, as a read-only
    data directory or a full disk does (``PRAGMA query_only``: "attempt to write a readonly
    database"). Running as root, a chmod'ed file would still be writable, hence the pragma."""
    opened: list[sqlite3.Connection] = []

    class Recording(sqlite3.Connection):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

    store = LocalStore(path, connection_factory=Recording)

    def refuse(failing: bool) -> None:
        opened[-1].execute(f"PRAGMA query_only = {'ON' if failing else 'OFF'}")

    return store, refuse


@pytest.fixture(params=["LocalStore", "FailingOutbox"])
def refusing_outbox(request, path) -> tuple[OutboxStore, Callable[[bool], None]]:
    """The real store and the test fake, each with a switch that makes their writes fail."""
    if request.param == "LocalStore":
        return _local_store_that_can_refuse_writes(path)
    fake = FailingOutbox()
    return fake, fake.fail_writes


def test_outbox_state_changes_that_cannot_be_recorded_raise_and_leave_the_row(refusing_outbox):
    store, refuse = refusing_outbox
    assert store.add(StoredCommand.from_command(SendReply("p/1", "Halo!", command_id="c-1"), T0))
    refuse(True)
    with pytest.raises(OutboxWriteError, match="c-1"):
        store.mark_sent("c-1")
    assert [(p.command_id, p.state) for p in store.pending()] == [("c-1", StoredState.QUEUED)]
    with pytest.raises(OutboxWriteError, match="c-1"):
        store.remove("c-1")
    assert [p.command_id for p in store.pending()] == ["c-1"]
    assert store.add(StoredCommand.from_command(SendReply("p/1", "two", command_id="c-2"))) is False
    store.mark_unconfirmed("c-1")  # never raises: a row left at queued/sent is not a duplicate risk
    assert store.problem != ""
    assert [p.command_id for p in store.pending()] == ["c-1"]
    refuse(False)  # the disk has room again
    store.mark_sent("c-1")
    assert store.pending()[0].state is StoredState.SENT
    store.remove("c-1")
    assert store.pending() == []


def test_outbox_state_changes_on_a_closed_store_raise(path):
    store = LocalStore(path)
    store.add(StoredCommand.from_command(SendReply("p/1", "Halo!", command_id="c-1")))
    store.close()
    with pytest.raises(OutboxWriteError, match="closed"):
        store.mark_sent("c-1")
    with pytest.raises(OutboxWriteError, match="closed"):
        store.remove("c-1")
    assert LocalStore(path).pending()[0].state is StoredState.QUEUED
