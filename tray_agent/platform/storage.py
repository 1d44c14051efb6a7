"""The local store: one private SQLite file per account (outbox, drafts, recent history, unread).

:class:`LocalStore` implements :class:`~tray_agent.core.ports.OutboxStore` for the network client
and offers drafts, the recent history of conversations the agent opened, last-seen ids and unread
counts to the UI. Decisions:

* **Durability.** WAL journal, ``synchronous=FULL``: a commit is on disk when the call returns,
  so a reply written before CommandQueued survives a crash, a kill or a power cut. One
  transaction per outbox change; history is written in one transaction per batch.
* **Schema.** Versioned with ``PRAGMA user_version`` and applied in order by :data:`_MIGRATIONS`;
  a file from a newer version is set aside, never altered.
* **Never a crash loop.** A file that is not a database, is damaged (``quick_check``) or cannot
  be read is renamed to ``<name>.corrupt-<UTC timestamp>`` (its -wal/-shm with it), a fresh file
  is started, and :attr:`LocalStore.problem` says so in plain words. If even a fresh file cannot
  be created the store runs in memory for this session. No method raises, except the outbox
  state changes :meth:`LocalStore.mark_sent` and :meth:`LocalStore.remove`: when they cannot be
  recorded (read-only or full disk, closed store) they raise
  :class:`~tray_agent.core.ports.OutboxWriteError`, so that the client never puts on the wire a
  command whose row would send it again at the next start.
* **Privacy.** The directory is 0700 and the files 0600 on POSIX. Only what the features need is
  kept: the outbox, drafts, the last ``history_limit`` messages of conversations the agent
  opened (for ``history_days``), last-seen ids and unread counts. :meth:`LocalStore.sign_out`
  deletes the files, set-aside copies included.
* **Bounds.** Per conversation ``history_limit`` messages; conversations untouched for
  ``history_days`` are dropped; above ``max_bytes`` the oldest history goes first (the outbox
  and drafts are never pruned).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tray_agent.core.events import CommandKind, MessageReceived, SenderKind
from tray_agent.core.ports import OutboxWriteError, StoredCommand, StoredState

if TYPE_CHECKING:
    from tray_agent.core.settings import ConnectionSettings, Settings

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FILE_MODE = 0o600
DIR_MODE = 0o700
SUFFIXES = ("", "-wal", "-shm", "-journal")
"""The SQLite file and its companions (all hold customer data)."""

DEFAULT_HISTORY_LIMIT = 500
DEFAULT_HISTORY_DAYS = 30
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

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


def open_account_store(data_dir: Path, connection: ConnectionSettings, settings: Settings) -> LocalStore:
    """The account's durable store under ``data_dir``, bounded by the settings (never raises).

    The one way the app and ``tray-agent listen`` open it; a problem is in ``.problem``.
    """
    return LocalStore(
        store_path(data_dir, connection.secret_key("store")),
        history_limit=settings.ui.history_limit,
        history_days=settings.storage.history_days,
        max_bytes=settings.storage.max_size_mb * 2**20,
        keep_history=settings.storage.keep_history,
    )


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


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message of the local history (oldest first when listed).

    Attributes:
        conversation: the conversation key.
        key: the dedupe key (server id, or time+sender+text where the dialect has no id).
        sender: who wrote it.
        sender_name: display name, if known.
        text: the text.
        sent_at: server time, if known.
    """

    conversation: str
    key: str
    sender: SenderKind
    sender_name: str
    text: str
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class RecentConversation:
    """A conversation the agent opened, for the recent list and unread badges."""

    conversation: str
    customer_name: str
    channel: str
    opened_at: datetime | None
    last_seen_id: str
    last_seen_at: datetime | None
    unread: int


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
        history_limit: messages kept per conversation (``ui.history_limit``).
        history_days: conversations untouched longer are pruned (``storage.history_days``).
        max_bytes: total size above which the oldest history is pruned (``storage.max_size_mb``).
        keep_history: False keeps no message history at all (``storage.keep_history``).
        now: wall-clock source (tests).
        connection_factory: the :class:`sqlite3.Connection` class to open the file with (tests use
            it to reach the connection and make it refuse writes, as a read-only or full disk does).
    """

    def __init__(
        self,
        path: Path,
        *,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        history_days: int = DEFAULT_HISTORY_DAYS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep_history: bool = True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        connection_factory: type[sqlite3.Connection] = sqlite3.Connection,
    ) -> None:
        self.path = Path(path)
        self.history_limit = max(1, history_limit)
        self.history_days = max(1, history_days)
        self.max_bytes = max(1024 * 1024, max_bytes)
        self.keep_history = keep_history
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
            self._prune()
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

    # -- recent conversations, last seen, unread -------------------------------------------------

    def _touch(self, db: sqlite3.Connection, conversation: str, now: float) -> None:
        db.execute(
            "INSERT INTO conversations (conversation, touched_at) VALUES (?, ?)"
            " ON CONFLICT (conversation) DO UPDATE SET touched_at = excluded.touched_at",
            (conversation, now),
        )

    def record_opened(self, conversation: str, customer_name: str = "", channel: str = "") -> None:
        """The agent opened ``conversation``: remember it (and its history from now on)."""
        now = self._now().timestamp()

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO conversations (conversation, customer_name, channel, opened_at, touched_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (conversation) DO UPDATE SET"
                " customer_name = CASE WHEN excluded.customer_name != '' THEN excluded.customer_name"
                " ELSE customer_name END,"
                " channel = CASE WHEN excluded.channel != '' THEN excluded.channel ELSE channel END,"
                " opened_at = excluded.opened_at, touched_at = excluded.touched_at",
                (conversation, customer_name, channel, now, now),
            )

        self._run("remembering a conversation", write)

    def recent_conversations(self, limit: int = 50) -> list[RecentConversation]:
        """Conversations the agent opened, most recently touched first."""
        rows = self._query(
            "SELECT conversation, customer_name, channel, opened_at, last_seen_id, last_seen_at, unread"
            " FROM conversations WHERE opened_at IS NOT NULL ORDER BY touched_at DESC LIMIT ?",
            (max(1, limit),),
        )
        return [
            RecentConversation(str(c), str(n), str(ch), _dt(o), str(i), _dt(s), int(u))
            for c, n, ch, o, i, s, u in rows
        ]

    def set_last_seen(self, conversation: str, message_id: str, at: datetime | None = None) -> None:
        """The agent has seen ``conversation`` up to ``message_id``; its unread count drops to 0."""
        now = self._now().timestamp()

        def write(db: sqlite3.Connection) -> None:
            self._touch(db, conversation, now)
            db.execute(
                "UPDATE conversations SET last_seen_id = ?, last_seen_at = ?, unread = 0"
                " WHERE conversation = ?",
                (message_id, _ts(at) or now, conversation),
            )

        self._run("saving the last-seen id", write)

    def last_seen(self, conversation: str) -> tuple[str, datetime | None]:
        """(last-seen id, when) of ``conversation``; ("", None) if never seen."""
        rows = self._query(
            "SELECT last_seen_id, last_seen_at FROM conversations WHERE conversation = ?", (conversation,)
        )
        if not rows:
            return "", None
        return str(rows[0][0]), _dt(rows[0][1])

    def set_unread(self, conversation: str, count: int) -> None:
        """Store the unread count of ``conversation`` (the servers keep none, PROTOCOL.md 1.6)."""
        now = self._now().timestamp()

        def write(db: sqlite3.Connection) -> None:
            self._touch(db, conversation, now)
            db.execute(
                "UPDATE conversations SET unread = ? WHERE conversation = ?", (max(0, count), conversation)
            )

        self._run("saving the unread count", write)

    def unread(self) -> dict[str, int]:
        """Unread counts of every conversation that has some."""
        return {
            str(c): int(u)
            for c, u in self._query("SELECT conversation, unread FROM conversations WHERE unread > 0")
        }

    # -- history ---------------------------------------------------------------------------------

    def add_messages(self, conversation: str, messages: Iterable[MessageReceived]) -> int:
        """Keep ``messages`` (oldest first) of ``conversation``; duplicates are skipped.

        Only the newest ``history_limit`` per conversation are kept. Nothing is written when
        ``keep_history`` is off.

        Returns:
            How many were new.
        """
        if not self.keep_history:
            return 0
        rows = [
            (
                conversation,
                m.dedupe_key,
                m.sender.value,
                m.sender_name or m.customer_name,
                m.text,
                _ts(m.sent_at),
            )
            for m in messages
        ]
        if not rows:
            return 0
        now = self._now().timestamp()
        added = 0

        def write(db: sqlite3.Connection) -> None:
            nonlocal added
            self._touch(db, conversation, now)
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO messages"
                " (conversation, message_key, sender, sender_name, text, sent_at) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            added = db.total_changes - before
            db.execute(
                "DELETE FROM messages WHERE conversation = ? AND seq NOT IN"
                " (SELECT seq FROM messages WHERE conversation = ? ORDER BY seq DESC LIMIT ?)",
                (conversation, conversation, self.history_limit),
            )

        if not self._run("saving history", write):
            return 0
        if added:
            self._prune_size()
        return added

    def history(self, conversation: str, limit: int | None = None) -> list[StoredMessage]:
        """The kept messages of ``conversation``, oldest first (the newest ``limit`` if given)."""
        count = self.history_limit if limit is None else max(1, limit)
        rows = self._query(
            "SELECT message_key, sender, sender_name, text, sent_at FROM"
            " (SELECT * FROM messages WHERE conversation = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq",
            (conversation, count),
        )
        out: list[StoredMessage] = []
        for key, sender, name, text, sent_at in rows:
            try:
                kind = SenderKind(sender)
            except ValueError:
                kind = SenderKind.SYSTEM
            out.append(StoredMessage(conversation, str(key), kind, str(name), str(text), _dt(sent_at)))
        return out

    def has_message(self, conversation: str, key: str) -> bool:
        """Whether a message with dedupe ``key`` (``MessageReceived.dedupe_key``) is kept."""
        return bool(
            self._query(
                "SELECT 1 FROM messages WHERE conversation = ? AND message_key = ?", (conversation, key)
            )
        )

    # -- pruning ---------------------------------------------------------------------------------

    def _prune(self) -> None:
        """Drop conversations untouched for ``history_days`` (never drafts or the outbox), then size."""
        cutoff = self._now().timestamp() - self.history_days * 86400.0

        def write(db: sqlite3.Connection) -> None:
            old = "SELECT conversation FROM conversations WHERE touched_at < ?"
            db.execute(f"DELETE FROM messages WHERE conversation IN ({old})", (cutoff,))
            db.execute(
                "DELETE FROM conversations WHERE touched_at < ? AND conversation NOT IN"
                " (SELECT conversation FROM drafts)",
                (cutoff,),
            )

        self._run("pruning old history", write)
        self._prune_size()

    def size_bytes(self) -> int:
        """The database's size in use (pages in use times page size)."""
        rows = self._query(
            "SELECT (SELECT page_count FROM pragma_page_count)"
            " - (SELECT freelist_count FROM pragma_freelist_count),"
            " (SELECT page_size FROM pragma_page_size)"
        )
        if not rows:
            return 0
        pages, size = rows[0]
        return int(pages) * int(size)

    def _prune_size(self) -> None:
        """Above ``max_bytes``, delete the oldest history in chunks until under 90 % of it."""
        db = self._db
        if db is None or self.size_bytes() <= self.max_bytes:
            return
        target = int(self.max_bytes * 0.9)
        for _ in range(64):  # bounded: each round deletes a tenth of the history
            count = self._query("SELECT COUNT(*) FROM messages")
            total = int(count[0][0]) if count else 0
            if total == 0:
                break
            chunk = max(100, total // 10)
            self._run("pruning history by size", functools.partial(_delete_oldest, count=chunk))
            if self.size_bytes() <= target:
                break
        with contextlib.suppress(sqlite3.Error):
            db.execute("PRAGMA incremental_vacuum")


def _delete_oldest(db: sqlite3.Connection, count: int) -> None:
    db.execute("DELETE FROM messages WHERE seq IN (SELECT seq FROM messages ORDER BY seq LIMIT ?)", (count,))


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
