"""The process exit codes of every entry point (``tray-agent``, ``listen``, ``doctor``).

A leaf module: the entry points import it, and it imports nothing, so no entry point has to
import another one (or the CLI) for a number.
"""

from __future__ import annotations

EXIT_OK = 0
"""Success, end of input, or Ctrl-C."""
EXIT_FAILURE = 1
"""Start-up failed, or a doctor check FAILed."""
EXIT_BAD_SETTINGS = 2
"""The settings (or the command line) cannot be used."""
EXIT_AUTH_REFUSED = 3
"""The server refused the sign-in (``listen``)."""
