"""Native toasts through desktop-notifier (:class:`ToastNotifier`), plus :class:`NullNotifier`.

:class:`ToastNotifier` implements :class:`tray_agent.core.ports.Notifier` on top of a small
:class:`ToastBackend` seam; :class:`DesktopNotifierBackend` is the real one (desktop-notifier:
freedesktop D-Bus on Linux, WinRT on Windows, UserNotifications on macOS) and tests inject fakes.

Rules it keeps:

- A toast with the same key replaces the previous one: the old one is closed, the new one sent
  (desktop-notifier has no ``replaces_id``).
- A bounded map remembers the last :data:`MAX_TRACKED` keys; each notification's callbacks carry
  their own key, so clicking an OLD toast opens exactly that customer. A key pushed out of the
  map has its toast withdrawn, so no toast stays on screen that we could no longer replace.
- A toast whose button or body was pressed is closed at once: the agent has answered it, and
  some servers (dunst's context menu) leave it on screen with a button that can no longer work.
- Customer text never becomes markup. The freedesktop spec makes the summary plain text (dunst
  escapes it itself, so escaping it here would show ``&amp;``) and the body markup when the
  server has the ``body-markup`` capability: then ``&``, ``<`` and ``>`` are escaped.
- Nothing raises: failures are logged (the first at WARNING, repeats at DEBUG) and
  :attr:`ToastNotifier.available` turns False until a toast goes through again.

The Qt fallback (``QSystemTrayIcon.showMessage``) lives in ui/: platform never imports Qt. It can
implement the same :class:`~tray_agent.core.ports.Notifier` protocol, and app.py picks it when
:func:`create_notifier` returns a :class:`NullNotifier`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tray_agent.core.effects import Toast, ToastAction, Urgency
from tray_agent.core.i18n import N_, _
from tray_agent.core.ports import ToastCallback

logger = logging.getLogger(__name__)

APP_NAME = "tray_agent"
MAX_TRACKED = 200
"""How many toast keys are remembered for replacement and withdrawal."""

BUTTON_LABELS: dict[ToastAction, str] = {
    ToastAction.TAKE_OVER: N_("Take over"),
    ToastAction.OPEN: N_("Open"),
}
"""User-visible button labels, in English: shown through ``core.i18n._`` (the current language)."""

_MARKUP_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_FREEDESKTOP = "org.freedesktop.Notifications"


def escape_markup(text: str) -> str:
    """Escape text for freedesktop notification body markup (``&``, ``<``, ``>``)."""
    return text.translate(_MARKUP_ESCAPES)


ActivatedCallback = Callable[[str | None], None]
"""Called with the pressed button's id, or None for a click on the toast itself."""


class ToastBackend(Protocol):
    """What :class:`ToastNotifier` needs from a notification library."""

    @property
    def body_markup(self) -> bool:
        """Whether the server interprets markup in the body (then it must be escaped)."""
        ...

    async def start(self) -> bool:
        """Connect and probe the notification server; False when there is none. Never raises."""
        ...

    async def send(
        self,
        identifier: str,
        title: str,
        body: str,
        urgency: Urgency,
        buttons: Sequence[tuple[str, str]],
        on_activated: ActivatedCallback,
        on_closed: Callable[[], None],
    ) -> None:
        """Show one notification.

        Args:
            identifier: our unique id for this notification (used by :meth:`clear`).
            title: the summary, as the server should receive it.
            body: the body, already escaped if the server takes markup.
            urgency: low / normal / critical.
            buttons: (button id, label) pairs.
            on_activated: called on a click (None) or a button press (its id).
            on_closed: called when the user dismissed the notification.

        Raises:
            Exception: any failure (the caller logs it).
        """
        ...

    async def clear(self, identifier: str) -> None:
        """Close a notification if it is still shown. Raises on failure."""
        ...

    async def close(self) -> None:
        """Release the connection. Never raises."""
        ...


class NullNotifier:
    """A notifier for places without notifications: shows nothing, says so."""

    @property
    def available(self) -> bool:
        """Always False."""
        return False

    def set_callback(self, callback: ToastCallback) -> None:
        """Ignore the callback: no toast will ever be clicked."""

    async def show(self, toast: Toast) -> None:
        """Drop the toast."""

    async def withdraw(self, key: str) -> None:
        """Nothing to withdraw."""

    async def aclose(self) -> None:
        """Nothing to release."""


class ToastNotifier:
    """:class:`~tray_agent.core.ports.Notifier` over a :class:`ToastBackend`.

    Call :meth:`start` once (or use :func:`create_notifier`) and :meth:`aclose` at shutdown.
    All methods run on the event loop that started it; callbacks arrive on that loop.
    """

    def __init__(self, backend: ToastBackend, max_tracked: int = MAX_TRACKED) -> None:
        """Wrap a backend.

        Args:
            backend: the notification library adapter.
            max_tracked: how many keys to remember (older toasts are withdrawn).
        """
        self._backend = backend
        self._max_tracked = max_tracked
        self._callback: ToastCallback | None = None
        self._shown: OrderedDict[str, str] = OrderedDict()  # toast key -> backend identifier
        self._available = False
        self._failure_logged = False
        self._lock = asyncio.Lock()  # show/withdraw of one key must not interleave
        self._closing: set[asyncio.Task[None]] = set()  # answered toasts being closed

    @property
    def available(self) -> bool:
        """False before :meth:`start` succeeded, and after a failed toast until one succeeds."""
        return self._available

    @property
    def tracked_keys(self) -> list[str]:
        """Keys of toasts that may still be on screen, oldest first."""
        return list(self._shown)

    async def start(self) -> bool:
        """Probe the backend; returns :attr:`available`. Never raises."""
        try:
            self._available = await self._backend.start()
        except Exception:
            logger.warning("Notifications unavailable", exc_info=True)
            self._available = False
        return self._available

    def set_callback(self, callback: ToastCallback) -> None:
        """Register the single click/button handler: ``callback(toast key, action or None)``."""
        self._callback = callback

    async def show(self, toast: Toast) -> None:
        """Show a toast, replacing the one with the same key. Never raises."""
        async with self._lock:
            old = self._shown.pop(toast.key, None)
            if old is not None:
                await self._clear(old)
            identifier = uuid.uuid4().hex
            body = escape_markup(toast.body) if self._backend.body_markup else toast.body
            buttons = [(action.value, _(BUTTON_LABELS[action])) for action in toast.actions]
            try:
                await self._backend.send(
                    identifier,
                    toast.title,  # plain text by the spec; servers escape it themselves
                    body,
                    toast.urgency,
                    buttons,
                    on_activated=lambda button: self._on_activated(toast.key, identifier, button),
                    on_closed=lambda: self._forget(toast.key, identifier),
                )
            except Exception:
                # Logged once at WARNING; repeats (server gone for good) only at DEBUG.
                level = logging.DEBUG if self._failure_logged else logging.WARNING
                logger.log(level, "Could not show a notification", exc_info=True)
                self._available = False
                self._failure_logged = True
                return
            self._available = True
            self._failure_logged = False
            self._shown[toast.key] = identifier
            while len(self._shown) > self._max_tracked:
                _key, stale = self._shown.popitem(last=False)
                await self._clear(stale)

    async def withdraw(self, key: str) -> None:
        """Close the toast with this key if it is still shown. Never raises."""
        async with self._lock:
            identifier = self._shown.pop(key, None)
            if identifier is not None:
                await self._clear(identifier)

    async def aclose(self) -> None:
        """Release the backend's connection (toasts stay on screen). Never raises."""
        if self._closing:  # answered toasts still being closed go first
            await asyncio.gather(*self._closing, return_exceptions=True)
        try:
            await self._backend.close()
        except Exception:
            logger.debug("Closing the notification backend failed", exc_info=True)

    async def _clear(self, identifier: str) -> None:
        try:
            await self._backend.clear(identifier)
        except Exception:
            # Usually already closed by the user or expired; nothing to do either way.
            logger.debug("Could not close notification %s", identifier, exc_info=True)

    def _forget(self, key: str, identifier: str) -> None:
        # Only if the key still maps to this notification (not to a newer replacement).
        if self._shown.get(key) == identifier:
            del self._shown[key]

    def _on_activated(self, key: str, identifier: str, button: str | None) -> None:
        self._forget(key, identifier)
        try:
            task = asyncio.get_running_loop().create_task(self._clear(identifier))
        except RuntimeError:  # no loop (never in the app): the server's own closing must do
            logger.debug("Cannot close the answered notification %s: no event loop", identifier)
        else:
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        action: ToastAction | None = None
        if button is not None:
            try:
                action = ToastAction(button)
            except ValueError:
                logger.debug("Ignoring unknown notification action %r", button)
                return
        if self._callback is None:
            return
        try:
            self._callback(key, action)
        except Exception:
            logger.exception("Toast callback failed")


_URGENCY_NAMES = {Urgency.LOW: "Low", Urgency.NORMAL: "Normal", Urgency.CRITICAL: "Critical"}


class DesktopNotifierBackend:
    """:class:`ToastBackend` on desktop-notifier (imported lazily, only when started)."""

    def __init__(
        self,
        app_name: str = APP_NAME,
        app_icon: Path | str | None = None,
        bus_address: str | None = None,
    ) -> None:
        """Configure (not connect).

        Args:
            app_name: the app name the server shows (on Linux: the .desktop file's name).
            app_icon: an icon file, an icon theme name, or None for no icon.
            bus_address: the D-Bus session bus to probe on Linux (default:
                ``DBUS_SESSION_BUS_ADDRESS``); desktop-notifier itself always uses the latter.
        """
        self._app_name = app_name
        self._app_icon = app_icon
        self._bus_address = bus_address
        self._notifier: Any = None
        self._body_markup = False
        # identifier -> the server's notification id, to close a toast after its button was
        # pressed: desktop-notifier forgets the id then (its clear() raises KeyError).
        self._server_ids: OrderedDict[str, int] = OrderedDict()

    @property
    def body_markup(self) -> bool:
        """Whether the server advertised ``body-markup`` (known after :meth:`start`)."""
        return self._body_markup

    async def start(self) -> bool:
        """Probe the server and create the desktop-notifier instance. Never raises."""
        if sys.platform.startswith("linux"):  # first: no server, no desktop-notifier import
            capabilities = await self._probe_freedesktop()
            if capabilities is None:
                return False
            self._body_markup = "body-markup" in capabilities
        try:
            from desktop_notifier import DesktopNotifier, Icon
        except ImportError:
            logger.warning("desktop-notifier is not installed: no native notifications")
            return False
        icon = None
        if isinstance(self._app_icon, Path):
            icon = Icon(path=self._app_icon)
        elif isinstance(self._app_icon, str):
            icon = Icon(name=self._app_icon)
        try:
            self._notifier = DesktopNotifier(app_name=self._app_name, app_icon=icon)
        except Exception:
            logger.warning("Could not set up desktop-notifier", exc_info=True)
            return False
        return True

    async def _probe_freedesktop(self) -> list[str] | None:
        """The notification server's capabilities, or None (logged) when there is no server."""
        address = self._bus_address
        if address is None:
            address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
        if not address:
            logger.warning("No D-Bus session bus (DBUS_SESSION_BUS_ADDRESS unset): no notifications")
            return None
        try:
            from dbus_fast import Message, MessageType
            from dbus_fast.aio import MessageBus
        except ImportError:
            logger.warning("dbus-fast is not installed: no native notifications")
            return None
        bus = None
        try:
            bus = await asyncio.wait_for(MessageBus(bus_address=address).connect(), 5)
            reply = await asyncio.wait_for(
                bus.call(
                    Message(
                        destination=_FREEDESKTOP,
                        path="/org/freedesktop/Notifications",
                        interface=_FREEDESKTOP,
                        member="GetCapabilities",
                    )
                ),
                10,  # may start the server through D-Bus activation
            )
        except Exception as exc:
            logger.warning("No D-Bus session bus at %s: no notifications (%s)", address, exc)
            return None
        finally:
            if bus is not None:
                bus.disconnect()
        if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
            detail = reply.body if reply is not None else "no reply"
            logger.warning("No notification server on the session bus: %s", detail)
            return None
        return [str(c) for c in reply.body[0]]

    async def send(
        self,
        identifier: str,
        title: str,
        body: str,
        urgency: Urgency,
        buttons: Sequence[tuple[str, str]],
        on_activated: ActivatedCallback,
        on_closed: Callable[[], None],
    ) -> None:
        """Send through desktop-notifier; raises when it did not reach the server."""
        from desktop_notifier import Button, Notification
        from desktop_notifier import Urgency as DNUrgency

        if self._notifier is None:
            raise RuntimeError("DesktopNotifierBackend.start() did not succeed")
        notification = Notification(
            title,
            body,
            urgency=DNUrgency[_URGENCY_NAMES[urgency]],
            buttons=tuple(
                Button(label, on_pressed=functools.partial(on_activated, button_id), identifier=button_id)
                for button_id, label in buttons
            ),
            on_clicked=functools.partial(on_activated, None),
            on_dismissed=on_closed,
            identifier=identifier,
        )
        await self._notifier.send_notification(notification)
        # desktop-notifier logs and swallows failures; a sent notification is in its list.
        if identifier not in await self._notifier.get_current_notifications():
            raise RuntimeError("desktop-notifier could not deliver the notification")
        ids = getattr(
            getattr(self._notifier, "_backend", None), "_platform_to_interface_notification_identifier", None
        )
        server_id = getattr(ids, "inverse", {}).get(identifier)
        if isinstance(server_id, int):
            self._server_ids[identifier] = server_id
            while len(self._server_ids) > 2 * MAX_TRACKED:
                self._server_ids.popitem(last=False)

    async def clear(self, identifier: str) -> None:
        """Close one notification through desktop-notifier (or by its id once it was answered)."""
        if self._notifier is None:
            return
        server_id = self._server_ids.pop(identifier, None)
        try:
            await self._notifier.clear(identifier)
        except KeyError:
            # Answered (button or body pressed): desktop-notifier no longer knows it.
            interface = getattr(getattr(self._notifier, "_backend", None), "interface", None)
            if server_id is None or interface is None:
                raise
            await interface.call_close_notification(server_id)

    async def close(self) -> None:
        """Disconnect desktop-notifier's D-Bus connection, if it made one."""
        # desktop-notifier has no public close; its Linux backend keeps the bus as ``bus``.
        bus = getattr(getattr(self._notifier, "_backend", None), "bus", None)
        if bus is not None:
            try:
                bus.disconnect()
            except Exception:
                logger.debug("Disconnecting desktop-notifier's bus failed", exc_info=True)
        self._notifier = None


async def create_notifier(
    app_name: str = APP_NAME,
    app_icon: Path | str | None = None,
    backend: ToastBackend | None = None,
) -> ToastNotifier | NullNotifier:
    """The native notifier when a notification server answers, else a :class:`NullNotifier`.

    Never raises. The app may wrap a Qt fallback (tray balloons) around a NullNotifier result.

    Args:
        app_name: app name shown by the server.
        app_icon: icon file or theme name.
        backend: a backend to use instead of desktop-notifier (tests).
    """
    notifier = ToastNotifier(backend or DesktopNotifierBackend(app_name, app_icon))
    if await notifier.start():
        return notifier
    await notifier.aclose()
    return NullNotifier()
