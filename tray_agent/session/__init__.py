"""The Qt-free session layer: one account's objects and flows, shared by the tray app and ``listen``.

* :mod:`.dispatcher`: :class:`Dispatcher`, the only entrance to ``Store.dispatch``;
* :mod:`.account`: :class:`AccountSession` (start/stop, sign in, sign out, settings);
* :mod:`.wiring`: :func:`build_session`, the one wiring of authenticator, codec, local store,
  client, store and dispatcher;
* :mod:`.flows`: :class:`~.flows.AccountFlows`, the tray app's account flows on top of a session
  (when to ask for a sign-in, reconnect and wake-up, sign out, settings saved, autostart,
  diagnostics export), behind a small ``FrontEnd`` port;
* :mod:`.scheduler`: :class:`AsyncioScheduler`, the Scheduler port on asyncio (the app's is
  ``ui.scheduler.QtScheduler``).

The alert engine the dispatcher routes alerts to is :class:`tray_agent.core.alerting.AlertEngine`
(pure, so that the Qt adapter in ``ui/`` can wrap it without importing the network).
Never imports PySide6, qasync, the UI, the demo or the entry points (import-linter contract).
"""

from tray_agent.session.account import AccountSession, SessionHooks
from tray_agent.session.dispatcher import Dispatcher
from tray_agent.session.scheduler import AsyncioScheduler
from tray_agent.session.wiring import build_session, make_client

__all__ = ["AccountSession", "AsyncioScheduler", "Dispatcher", "SessionHooks", "build_session", "make_client"]
