"""LocalStore: migrations, privacy, bounds, corrupt-file recovery, sign-out, drafts, outbox."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers.outbox import FailingOutbox
from tray_agent.core.commands import SendReply, TakeOver
from tray_agent.core.events import CommandKind, MessageReceived, SenderKind
from tray_agent.core.ports import OutboxStore, OutboxWriteError, StoredCommand, StoredState
from tray_agent.platform.storage import SCHEMA_VERSION, LocalStore, store_path

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeNow:
    def __init__(self) -> None:
        self.value = T0

    def __call__(self) -> datetime:
        return self.value


@pytest.fixture
def path(tmp_path):
    return store_path(tmp_path / "data", "dashboard:http://x:acme:agent@x:store")


def _message(i: int, conversation: str = "p/1", message_id: str | None = None) -> MessageReceived:
    return MessageReceived(
        conversation=conversation,
        sender=SenderKind.CUSTOMER,
        text=f"message {i}",
        message_id=message_id,
        sent_at=T0 + timedelta(seconds=i),
    )


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


def test_history_is_deduplicated_and_bounded_per_conversation(path):
    store = LocalStore(path, history_limit=5)
    assert store.add_messages("p/1", [_message(i) for i in range(3)]) == 3
    assert store.add_messages("p/1", [_message(i) for i in range(8)]) == 5  # 0..2 already kept
    kept = store.history("p/1")
    assert [m.text for m in kept] == [f"message {i}" for i in range(3, 8)]
    assert store.has_message("p/1", _message(7).dedupe_key)
    assert store.history("p/1", limit=2)[-1].text == "message 7"


def test_history_dedupes_on_server_ids_when_present(path):
    store = LocalStore(path)
    store.add_messages("c", [_message(1, "c", "m-1")])
    assert store.add_messages("c", [_message(2, "c", "m-1")]) == 0  # same id, other copy (O6)


def test_no_history_is_kept_when_switched_off(path):
    store = LocalStore(path, keep_history=False)
    assert store.add_messages("p/1", [_message(1)]) == 0
    assert store.history("p/1") == []


def test_conversations_untouched_for_history_days_are_pruned_at_open(path):
    now = FakeNow()
    store = LocalStore(path, history_days=7, now=now)
    store.add_messages("old", [_message(1, "old")])
    store.set_draft("old", "keep my draft")
    now.value = T0 + timedelta(days=3)
    store.add_messages("new", [_message(1, "new")])
    store.close()
    now.value = T0 + timedelta(days=8)
    store = LocalStore(path, history_days=7, now=now)
    assert store.history("old") == []
    assert store.draft("old") == "keep my draft"  # drafts are never pruned
    assert len(store.history("new")) == 1


def test_total_size_is_bounded_by_pruning_the_oldest_history(path):
    store = LocalStore(path, max_bytes=1024 * 1024)
    store.add(StoredCommand.from_command(SendReply("p/1", "keep me", command_id="c-1")))
    blob = "x" * 2000
    for batch in range(12):
        store.add_messages(
            f"p/{batch}",
            [
                MessageReceived(
                    conversation=f"p/{batch}", text=f"{blob}{i}", sent_at=T0 + timedelta(seconds=i)
                )
                for i in range(50)
            ],
        )
    assert store.size_bytes() <= 1024 * 1024
    assert store.history("p/11")  # the newest survive
    assert not store.history("p/0")  # the oldest went first
    assert [p.command_id for p in store.pending()] == ["c-1"]  # the outbox is never pruned


def test_last_seen_and_unread_state(path):
    store = LocalStore(path)
    store.set_unread("p/1", 3)
    store.set_unread("p/2", 1)
    assert store.unread() == {"p/1": 3, "p/2": 1}
    store.set_last_seen("p/1", "m-9", T0)
    assert store.last_seen("p/1") == ("m-9", T0)
    assert store.unread() == {"p/2": 1}
    assert store.last_seen("nope") == ("", None)


def test_recent_conversations_are_the_opened_ones_newest_first(path):
    now = FakeNow()
    store = LocalStore(path, now=now)
    store.record_opened("p/1", "Ann", "Shop")
    now.value = T0 + timedelta(minutes=1)
    store.record_opened("p/2", "Bob")
    store.set_unread("p/3", 2)  # known, but never opened
    recent = store.recent_conversations()
    assert [(r.conversation, r.customer_name) for r in recent] == [("p/2", "Bob"), ("p/1", "Ann")]
    assert recent[1].channel == "Shop"


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
    store.add_messages("p/1", [_message(1)])
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
