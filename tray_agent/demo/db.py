"""SQLite helpers for the demo backends: open in WAL mode and apply versioned migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path


def open_db(path: str | Path, migrations: Sequence[str]) -> sqlite3.Connection:
    """Open (creating if needed) a database and bring its schema up to date.

    Args:
        path: the database file.
        migrations: SQL scripts; script ``i`` moves the schema from version ``i`` to ``i + 1``
            (``PRAGMA user_version`` records the version). Never edit a released script: add one.

    Returns:
        A connection in WAL mode with ``synchronous=NORMAL`` (every committed write survives a
        killed process; only an OS crash may lose the last transactions) and rows as
        :class:`sqlite3.Row`.
    """
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(migrations[version:], start=version + 1):
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")
    return conn
