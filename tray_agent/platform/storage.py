"""The local store: one private SQLite file per account (outbox and drafts).

:class:`LocalStore` implements :class:`~tray_agent.core.ports.OutboxStore` for the network client
and keeps the reply drafts of the chat windows. Decisions:

* **Durability.** WAL journal, ``synchronous=FULL``: a commit is on disk when the call returns,
  so a reply written before CommandQueued survives a crash, a kill or a power cut. One
  transaction per outbox change.
* **Schema.** Versioned with ``PRAGMA user_version`` and applied in order by :data:`_MIGRATIONS`;
  a file from a newer version is set aside, never altered. (Schema 1 also creates the tables
  ``conversations`` and ``messages`` for a local history that no version has ever written.)
* **Never a crash loop.** A file that is not a database, is damaged (``quick_check``) or cannot
  be read is renamed to ``<name>.corrupt-<UTC timestamp>`` (its -wal/-shm with it), a fresh file
  is started, and :attr:`LocalStore.problem` says so in plain words. If even a fresh file cannot
  be created the store runs in memory for this session. No method raises, except the outbox
  state changes :meth:`LocalStore.mark_sent` and :meth:`LocalStore.remove`: when they cannot be
  recorded (read-only or full disk, closed store) they raise
  :class:`~tray_agent.core.ports.OutboxWriteError`, so that the client never puts on the wire a
  command whose row would send it again at the next start.
* **Privacy.** The directory is 0700 and the files 0600 on POSIX. Only what the features need is
  kept: the outbox and drafts. :meth:`LocalStore.sign_out` deletes the files, set-aside copies
  included.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tray_agent.core.events import CommandKind
from tray_agent.core.ports import OutboxWriteError, StoredCommand, StoredState

if TYPE_CHECKING:
    from tray_agent.core.settings import ConnectionSettings

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FILE_MODE = 0o600
DIR_MODE = 0o700
SUFFIXES = ("", "-wal", "-shm", "-journal")
"""The SQLite file and its companions (all hold customer data)."""

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1
    (
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            command_id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            conversation TEXT NOT NULL,
            text TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL,
            queued_at REAL NOT NULL,
            updated_at REAL NOT NULL)""",
        """CREATE TABLE drafts (
            conversation TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            updated_at REAL NOT NULL)""",
        """CREATE TABLE conversations (
            conversation TEXT PRIMARY KEY,
            customer_name TEXT NOT NULL DEFAULT '',
            channel TEXT NOT NULL DEFAULT '',
            opened_at REAL,
            touched_at REAL NOT NULL,
            last_seen_id TEXT NOT NULL DEFAULT '',
            last_seen_at REAL,
            unread INTEGER NOT NULL DEFAULT 0)""",
        """CREATE TABLE messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation TEXT NOT NULL,
            message_key TEXT NOT NULL,
            sender TEXT NOT NULL,
            sender_name TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL DEFAULT '',
            sent_at REAL,
            UNIQUE (conversation, message_key))""",
        "CREATE INDEX messages_by_conversation ON messages (conversation, seq)",
    ),
)


def open_account_store(data_dir: Path, connection: ConnectionSettings) -> LocalStore:
    """The account's durable store under ``data_dir`` (never raises).

    The one way the app and ``tray-agent listen`` open it; a problem is in ``.problem``.
    """
    return LocalStore(store_path(data_dir, connection.secret_key("store")))


def store_path(data_dir: Path, account: str) -> Path:
    """The store file of one account under ``data_dir``.

    Args:
        data_dir: ``Paths.data``.
        account: anything that names the account uniquely, e.g.
            ``ConnectionSettings.secret_key("store")``; hashed so that no e-mail or server name
            appears in a file name.

    Returns:
        ``data_dir / "store-<16 hex>.sqlite3"``.
    """
    digest = hashlib.sha256(account.encode("utf-8")).hexdigest()[:16]
    return data_dir / f"store-{digest}.sqlite3"


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


class _UnusableError(Exception):
    """The file cannot be used as our database (why is in the message)."""


class LocalStore:
    """The account's private SQLite store (see the module docstring). Not thread-safe: one loop.

    Args:
        path: the database file (see :func:`store_path`); its directory is created 0700.
        now: wall-clock source (tests).
        connection_factory: the :class:`sqlite3.Connection` class to open the file with (tests use
            it to reach the connection and make it refuse writes, as a read-only or full disk does).
    """

    def __init__(
        self,
        path: Path,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        connection_factory: type[sqlite3.Connection] = sqlite3.Connection,
    ) -> None:
        self.path = Path(path)
        self._now = now
        self._factory = connection_factory
        self._db: sqlite3.Connection | None = None
        self._problem = ""
        self._last_error = ""
        self.set_aside: Path | None = None
        self.in_memory = False
        self.open()

    # -- life cycle ------------------------------------------------------------------------------

    @property
    def problem(self) -> str:
        """A plain-words description of the last storage problem ("" when all is well)."""
        return self._problem

    @property
    def is_open(self) -> bool:
        """False after :meth:`close` or :meth:`sign_out`."""
        return self._db is not None

    def open(self) -> None:
        """Open (or create, migrate, recover) the file; never raises. Idempotent."""
        if self._db is not None:
            return
        try:
            self._db = self._connect()
            return
        except (_UnusableError, sqlite3.DatabaseError) as exc:
            why = str(exc) or type(exc).__name__
            logger.error("local store %s is unusable (%s); setting it aside", self.path.name, why)
            self.set_aside = self._move_aside()
        except OSError as exc:
            logger.error("cannot open the local store %s: %s", self.path, exc)
            self._fall_back_to_memory(f"The local store could not be opened ({exc.strerror or exc}).")
            return
        try:
            self._db = self._connect()
        except (_UnusableError, sqlite3.Error, OSError) as exc:
            logger.error("cannot start a fresh local store %s: %s", self.path, exc)
            self._fall_back_to_memory("The local store is damaged and a fresh one could not be created.")
            return
        where = f" as {self.set_aside.name}" if self.set_aside is not None else ""
        self._problem = (
            f"The local message store was damaged or unreadable. It was set aside{where} and a fresh "
            "one was started: queued replies and drafts from before may be missing."
        )

    def close(self) -> None:
        """Close the file (a checkpoint folds the WAL back in). Never raises."""
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def sign_out(self) -> bool:
        """Delete everything about this account: the database, its -wal/-shm and set-aside copies.

        The store stays closed afterwards (every method is a no-op until :meth:`open`).

        Returns:
            True when no file is left.
        """
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        ok = True
        directory = self.path.parent
        victims = [self.path.with_name(self.path.name + s) for s in SUFFIXES]
        with contextlib.suppress(OSError):
            victims += [p for p in directory.iterdir() if p.name.startswith(self.path.name + ".corrupt-")]
        for victim in victims:
            try:
                victim.unlink(missing_ok=True)
            except OSError as exc:
                ok = False
                logger.error("sign-out could not delete %s: %s", victim.name, exc)
        self._problem = "" if ok else "Some local data could not be deleted; see the log."
        return ok

    def _connect(self) -> sqlite3.Connection:
        directory = self.path.parent
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if os.name == "posix":
            with contextlib.suppress(OSError):
                directory.chmod(DIR_MODE)
        # Create the file ourselves so it is 0600 from the first byte; SQLite gives its -wal and
        # -shm the database file's mode.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        os.close(fd)
        if os.name == "posix":
            self.path.chmod(FILE_MODE)
        db = sqlite3.connect(self.path, isolation_level=None, timeout=2.0, factory=self._factory)
        try:
            self._prepare(db)
        except BaseException:
            db.close()
            raise
        for suffix in ("-wal", "-shm"):
            companion = self.path.with_name(self.path.name + suffix)
            if os.name == "posix" and companion.exists():
                with contextlib.suppress(OSError):
                    companion.chmod(FILE_MODE)
        return db

    def _prepare(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _UnusableError(f"made by a newer version of the app (schema {version})")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise _UnusableError(f"integrity check failed: {check}")
        if version == 0:
            # Before the first table: lets pruning give pages back to the file system.
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logger.warning("local store: WAL mode unavailable (%s)", mode)
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute(
            "PRAGMA secure_delete = ON"
        )  # deleted customer text is overwritten, not left in free pages
        for target in range(version, SCHEMA_VERSION):
            with _transaction(db):
                for statement in _MIGRATIONS[target]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {target + 1}")
            logger.info("local store migrated to schema %d", target + 1)

    def _move_aside(self) -> Path | None:
        stamp = self._now().strftime("%Y%m%dT%H%M%S%fZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        moved: Path | None = None
        for suffix in SUFFIXES:
            source = self.path.with_name(self.path.name + suffix)
            if not source.exists():
                continue
            dest = target.with_name(target.name + suffix)
            try:
                os.replace(source, dest)
                if suffix == "":
                    moved = dest
            except OSError as exc:
                logger.error("could not set %s aside: %s", source.name, exc)
                with contextlib.suppress(OSError):
                    source.unlink()
        return moved

    def _fall_back_to_memory(self, why: str) -> None:
        self.in_memory = True
        self._problem = f"{why} This session keeps its data in memory only; nothing survives a restart."
        try:
            db = sqlite3.connect(":memory:", isolation_level=None)
            self._prepare(db)
            self._db = db
        except sqlite3.Error:  # pragma: no cover - :memory: does not fail short of no memory
            logger.exception("even an in-memory store failed")
            self._db = None

    def _run(self, what: str, action: Callable[[sqlite3.Connection], object]) -> bool:
        """Run ``action`` in one transaction; log and report failures instead of raising."""
        db = self._db
        if db is None:
            return False
        try:
            with _transaction(db):
                action(db)
        except sqlite3.Error as exc:
            logger.error("local store: %s failed: %s", what, exc)
            self._last_error = str(exc) or type(exc).__name__
            self._problem = f"The local store could not save data ({exc}); recent changes may be lost."
            return False
        return True

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        db = self._db
        if db is None:
            return []
        try:
            return list(db.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            logger.error("local store: reading failed: %s", exc)
            self._problem = f"The local store could not be read ({exc})."
            return []

    # -- outbox (core.ports.OutboxStore) ---------------------------------------------------------

    def pending(self) -> list[StoredCommand]:
        """Every persisted command, oldest first."""
        out: list[StoredCommand] = []
        rows = self._query(
            "SELECT command_id, kind, conversation, text, state, queued_at FROM outbox ORDER BY seq"
        )
        for command_id, kind, conversation, text, state, queued_at in rows:
            try:
                out.append(
                    StoredCommand(
                        command_id=str(command_id),
                        kind=CommandKind(kind),
                        conversation=str(conversation),
                        text=str(text),
                        state=StoredState(state),
                        queued_at=_dt(float(queued_at)),
                    )
                )
            except (ValueError, TypeError):
                logger.warning("local store: skipping an outbox row of unknown kind/state %r/%r", kind, state)
        return out

    def add(self, command: StoredCommand) -> bool:
        """Persist ``command`` as QUEUED (an existing id is reset to QUEUED); True once on disk."""
        now = self._now().timestamp()
        queued_at = _ts(command.queued_at) or now

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO outbox (command_id, kind, conversation, text, state, queued_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (command_id) DO UPDATE SET"
                " state = excluded.state, text = excluded.text, updated_at = excluded.updated_at",
                (
                    command.command_id,
                    command.kind.value,
                    command.conversation,
                    command.text,
                    StoredState.QUEUED.value,
                    queued_at,
                    now,
                ),
            )

        return self._run("queueing a command", write) and not self.in_memory

    def _set_state(self, command_id: str, state: StoredState) -> bool:
        now = self._now().timestamp()
        return self._run(
            f"marking a command {state.value}",
            lambda db: db.execute(
                "UPDATE outbox SET state = ?, updated_at = ? WHERE command_id = ?",
                (state.value, now, command_id),
            ),
        )

    def _write_failed(self, what: str, command_id: str) -> OutboxWriteError:
        why = "the local store is closed" if self._db is None else self._last_error
        return OutboxWriteError(f"the outbox could not record {what} of {command_id}: {why}")

    def mark_sent(self, command_id: str) -> None:
        """Record that the command is about to go out (call *before* writing it).

        Raises:
            OutboxWriteError: not recorded (the row still says queued): do not send the command.
        """
        if not self._set_state(command_id, StoredState.SENT):
            raise self._write_failed("the sending", command_id)

    def mark_unconfirmed(self, command_id: str) -> None:
        """Record that the command was sent but never confirmed."""
        self._set_state(command_id, StoredState.UNCONFIRMED)

    def remove(self, command_id: str) -> None:
        """Forget a command that ended (confirmed, failed or discarded).

        Raises:
            OutboxWriteError: not removed (the row comes back at the next start).
        """
        if not self._run(
            "removing a command",
            lambda db: db.execute("DELETE FROM outbox WHERE command_id = ?", (command_id,)),
        ):
            raise self._write_failed("the end", command_id)

    # -- drafts ----------------------------------------------------------------------------------

    def draft(self, conversation: str) -> str:
        """The saved draft of ``conversation`` ("" if none)."""
        rows = self._query("SELECT text FROM drafts WHERE conversation = ?", (conversation,))
        return str(rows[0][0]) if rows else ""

    def drafts(self) -> dict[str, str]:
        """Every saved draft by conversation."""
        return {str(c): str(t) for c, t in self._query("SELECT conversation, text FROM drafts")}

    def set_draft(self, conversation: str, text: str) -> None:
        """Save a draft; an empty (or blank) text deletes it."""
        now = self._now().timestamp()
        if not text.strip():
            self._run(
                "deleting a draft",
                lambda db: db.execute("DELETE FROM drafts WHERE conversation = ?", (conversation,)),
            )
            return
        self._run(
            "saving a draft",
            lambda db: db.execute(
                "INSERT INTO drafts (conversation, text, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (conversation) DO UPDATE SET"
                " text = excluded.text, updated_at = excluded.updated_at",
                (conversation, text, now),
            ),
        )


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error (autocommit connection)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
