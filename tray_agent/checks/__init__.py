"""The checks of this machine and of the way to the server that ``tray-agent doctor`` reports.

One module per kind: :mod:`.local` (settings, policy, keyring), :mod:`.desktop` (tray and
resources, session bus, audio), :mod:`.network` (proxy to WebSocket, clock, token); every check
gives :class:`.results.CheckResult` lines, and :mod:`.report` runs them and formats the report.
The diagnostics export runs the quick local ones too, so this is not an entry point: the
``doctor`` command (``tray_agent/doctor.py``) and the app import it, never the reverse.
"""
