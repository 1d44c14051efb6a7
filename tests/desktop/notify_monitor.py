"""D-Bus monitor that records the org.freedesktop.Notifications traffic as JSON lines.

Run as a subprocess by :mod:`tests.desktop.session` (``python notify_monitor.py OUTFILE``) with
the session's ``DBUS_SESSION_BUS_ADDRESS``. It becomes a bus monitor (``BecomeMonitor``), so it
sees every ``Notify`` / ``CloseNotification`` call, their replies (the notification ids) and the
``ActionInvoked`` / ``NotificationClosed`` signals, whoever sends them. It writes ``{"ready": true}``
once monitoring has started. A monitor must never send anything, so every message is swallowed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TextIO

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

IFACE = "org.freedesktop.Notifications"
RULES = [
    f"type='method_call',interface='{IFACE}'",
    f"type='signal',interface='{IFACE}'",
    "type='method_return'",
    "type='error'",
]


def plain(value: Any) -> Any:
    """Turn D-Bus values (Variants, bytes, nested containers) into JSON-able Python values."""
    if isinstance(value, Variant):
        return plain(value.value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


async def main(out: TextIO) -> None:
    bus = await MessageBus().connect()
    pending: set[tuple[str, int]] = set()  # (sender, serial) of Notify calls awaiting their reply

    def write(record: dict[str, Any]) -> None:
        out.write(json.dumps(record) + "\n")

    def on_message(msg: Message) -> bool:
        # Our own BecomeMonitor reply must reach dbus-fast; everything else is monitored traffic.
        if msg.destination == bus.unique_name and msg.message_type is MessageType.METHOD_RETURN:
            return False
        if msg.message_type is MessageType.METHOD_CALL and msg.interface == IFACE:
            if msg.member == "Notify":
                pending.add((msg.sender, msg.serial))
            write(
                {
                    "kind": "call",
                    "member": msg.member,
                    "sender": msg.sender,
                    "serial": msg.serial,
                    "body": plain(msg.body),
                }
            )
        elif msg.message_type is MessageType.SIGNAL and msg.interface == IFACE:
            write({"kind": "signal", "member": msg.member, "body": plain(msg.body)})
        elif msg.message_type in (MessageType.METHOD_RETURN, MessageType.ERROR):
            key = (msg.destination, msg.reply_serial)
            if key in pending:
                pending.discard(key)
                ok = msg.message_type is MessageType.METHOD_RETURN
                write(
                    {
                        "kind": "return" if ok else "error",
                        "sender": msg.destination,
                        "serial": msg.reply_serial,
                        "body": plain(msg.body),
                    }
                )
        return True

    bus.add_message_handler(on_message)
    reply = await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus.Monitoring",
            member="BecomeMonitor",
            signature="asu",
            body=[RULES, 0],
        )
    )
    if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
        sys.exit(f"BecomeMonitor failed: {reply.body if reply else None}")
    write({"ready": True})
    await bus.wait_for_disconnect()


if __name__ == "__main__":
    with open(sys.argv[1], "a", buffering=1, encoding="utf-8") as stream:
        asyncio.run(main(stream))
