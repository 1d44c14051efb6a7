"""Logging of the tray app: stderr, a rotating log file opened after the first icon, redaction.

:func:`setup_logging` is called once by the GUI's entry point (``tray_agent/gui.py``) before Qt
starts; ``listen`` and ``doctor`` log to stderr only, with their own few lines.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

logger = logging.getLogger(__name__)

LOG_FILE = "tray-agent.log"
"""The log file's name in the log directory (``paths.log``)."""
LOG_BUFFER_LIMIT = 1000
"""Records kept in memory at most until the log file opens (start-up only)."""


class _StartupLogBuffer(logging.Handler):
    """Holds the records logged before the log file is open (see :func:`setup_logging`)."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < LOG_BUFFER_LIMIT:
            self.records.append(record)


def setup_logging(
    log_dir: Path | None, verbose: bool, *, open_file_later: bool = False
) -> Callable[[], None]:
    """Log to stderr (warnings, or debug with -v) and to a rotating file; redact secrets.

    Also routes uncaught exceptions (``sys.excepthook``) to the log.

    Args:
        log_dir: where the log file goes; None logs to stderr only.
        verbose: log debug details, to stderr too.
        open_file_later: hold the file's records in memory until the returned function opens
            it (``gui.run`` shows the tray icon first, and ``logging.handlers`` alone takes
            ~10 ms to import).

    Returns:
        A function that opens the log file and writes the records held until then into it;
        calling it again does nothing. Without ``open_file_later`` the file is open already.
    """
    from tray_agent.core.redact import install_redaction

    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    file_level = logging.DEBUG if verbose else logging.INFO
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.DEBUG if verbose else logging.WARNING)
    stderr.setFormatter(fmt)
    root.addHandler(stderr)
    buffer: _StartupLogBuffer | None = None
    if log_dir is not None and open_file_later:
        buffer = _StartupLogBuffer(file_level)
        root.addHandler(buffer)
    install_redaction(root)
    pending = [log_dir] if log_dir is not None else []

    def open_file() -> None:
        if not pending:
            return
        directory = pending.pop()
        import logging.handlers

        try:
            file_handler = logging.handlers.RotatingFileHandler(
                directory / LOG_FILE, maxBytes=1_000_000, backupCount=3, encoding="utf-8"
            )
        except OSError as exc:
            file_handler = None
            logger.warning("Cannot write the log file in %s: %s", directory, exc)
        if buffer is not None:
            root.removeHandler(buffer)
        if file_handler is None:
            return
        file_handler.setLevel(file_level)
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)
        install_redaction(root)
        for record in buffer.records if buffer is not None else ():
            file_handler.handle(record)  # in order, before any newer record

    if not open_file_later:
        open_file()

    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        logger.critical("Uncaught exception", exc_info=(kind, value, tb))

    sys.excepthook = excepthook
    return open_file
