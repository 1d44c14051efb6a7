# ruff: noqa: N802 - D-Bus member names are fixed by the StatusNotifierItem spec
"""Minimal org.kde.StatusNotifierWatcher for headless tests (no Debian package needed).

Used by tests/desktop when ``status-notifier-watcher`` (haskell-status-notifier-item-utils) is not
installed. dbus-fast comes with desktop-notifier. It claims a host is registered, so Qt's
QSystemTrayIcon picks its StatusNotifierItem back end, and prints each registration to stdout.
Items whose bus name disappears are dropped, like the real watcher does.
"""

import asyncio
from typing import Annotated

from dbus_fast import BusType, PropertyAccess
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature
from dbus_fast.service import ServiceInterface, dbus_property, method, signal

Str = Annotated[str, DBusSignature("s")]
StrList = Annotated[list[str], DBusSignature("as")]
Bool = Annotated[bool, DBusSignature("b")]
Int = Annotated[int, DBusSignature("i")]
Nothing = Annotated[None, DBusSignature("")]


class Watcher(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.kde.StatusNotifierWatcher")
        self.items: list[str] = []

    @method()
    def RegisterStatusNotifierItem(self, service: Str) -> None:
        # Qt passes its unique or well-known bus name; Ayatana passes an object path.
        if service not in self.items:
            self.items.append(service)
        print("SNI registered:", service, flush=True)
        self.StatusNotifierItemRegistered(service)

    @method()
    def RegisterStatusNotifierHost(self, service: Str) -> None:
        pass

    @dbus_property(access=PropertyAccess.READ)
    def RegisteredStatusNotifierItems(self) -> StrList:
        return list(self.items)

    @dbus_property(access=PropertyAccess.READ)
    def IsStatusNotifierHostRegistered(self) -> Bool:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def ProtocolVersion(self) -> Int:
        return 0

    @signal()
    def StatusNotifierItemRegistered(self, service: Str) -> Str:
        return service

    @signal()
    def StatusNotifierItemUnregistered(self, service: Str) -> Str:
        return service

    @signal()
    def StatusNotifierHostRegistered(self) -> Nothing:
        return None

    def drop_owner(self, name: str) -> None:
        for item in [i for i in self.items if i == name or i.startswith(name + "/")]:
            self.items.remove(item)
            print("SNI unregistered:", item, flush=True)
            self.StatusNotifierItemUnregistered(item)


async def main() -> None:
    bus = await MessageBus(bus_type=BusType.SESSION).connect()
    watcher = Watcher()
    bus.export("/StatusNotifierWatcher", watcher)
    introspection = await bus.introspect("org.freedesktop.DBus", "/org/freedesktop/DBus")
    dbus = bus.get_proxy_object("org.freedesktop.DBus", "/org/freedesktop/DBus", introspection)
    iface = dbus.get_interface("org.freedesktop.DBus")

    def on_owner_changed(name: str, old: str, new: str) -> None:
        if old and not new:
            watcher.drop_owner(name)

    iface.on_name_owner_changed(on_owner_changed)  # type: ignore[attr-defined]
    await bus.request_name("org.kde.StatusNotifierWatcher")
    print("watcher ready", flush=True)
    await bus.wait_for_disconnect()


if __name__ == "__main__":
    asyncio.run(main())
