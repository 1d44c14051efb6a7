"""Shared fakes and builders for the GUI tests: a command sink, a clock, a store environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tests.helpers.fakes import FakeSecretStore as FakeSecretStore  # one set of port fakes
from tests.helpers.fakes import SettableNow as SettableNow
from tray_agent.core.commands import (
    Command,
    DiscardCommand,
    HandBack,
    LoadHistory,
    Release,
    ResendCommand,
    Resolve,
    SendReply,
    TakeOver,
)
from tray_agent.core.events import (
    AgentRef,
    CommandDiscarded,
    CommandQueued,
    CommandRetried,
    Connected,
    ConnectionChanged,
    ConnectionState,
    ConversationSummary,
    Event,
    WaitingListPage,
)
from tray_agent.core.settings import Settings
from tray_agent.core.settings_layers import LoadedSettings
from tray_agent.core.state import Store
from tray_agent.ui.bridge import StoreBridge

if TYPE_CHECKING:
    from tray_agent.core.ports import DraftStore
    from tray_agent.ui.windows import WindowManager

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
"""A fixed 'now' for the tests (server times are built relative to it)."""

C = TypeVar("C", bound=Command)


class FakeCommandSink:
    """Records submitted commands; like the network client, reports tracked ones as queued.

    Args:
        store: when given, replies, take-overs and releases are dispatched as CommandQueued
            (the store then shows a pending bubble / optimistic take-over, as with net.Client);
            a ResendCommand queues the named command again (same id), a DiscardCommand
            discards it and a retried reply links the failed one to it, as net.Client does.

    Attributes:
        durable: what CommandQueued.durable says (net.Client: whether the outbox store saved it).
    """

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self.commands: list[Command] = []
        self.durable = True

    def submit(self, command: Command) -> None:
        self.commands.append(command)
        if self.store is None:
            return
        if isinstance(command, (ResendCommand, DiscardCommand)):
            known = self.store.state.outbound.get(command.command_id)
            if known is None:
                return
            if isinstance(command, ResendCommand):
                self.store.dispatch(
                    CommandQueued(
                        command_id=known.command_id,
                        kind=known.kind,
                        conversation=known.conversation,
                        text=known.text,
                        durable=self.durable,
                    )
                )
            else:
                self.store.dispatch(
                    CommandDiscarded(
                        command_id=known.command_id, kind=known.kind, conversation=known.conversation
                    )
                )
            return
        if isinstance(command, (SendReply, TakeOver, Release, Resolve, HandBack)):
            self.store.dispatch(
                CommandQueued(
                    command_id=command.command_id,
                    kind=command.kind,
                    conversation=command.conversation,
                    text=command.text if isinstance(command, SendReply) else "",
                    durable=self.durable,
                )
            )
            if isinstance(command, SendReply) and command.retry_of:
                self.store.dispatch(
                    CommandRetried(
                        command_id=command.retry_of,
                        retried_as=command.command_id,
                        conversation=command.conversation,
                    )
                )

    def of(self, kind: type[C]) -> list[C]:
        return [c for c in self.commands if isinstance(c, kind)]

    def last(self, kind: type[C]) -> C:
        found = self.of(kind)
        assert found, f"no {kind.__name__} submitted; got {self.commands!r}"
        return found[-1]

    def history_pages(self, conversation: str) -> list[int]:
        return [c.page for c in self.of(LoadHistory) if c.conversation == conversation]


@dataclass
class Env:
    """A real Store and StoreBridge with a recording command sink."""

    store: Store
    bridge: StoreBridge
    sink: FakeCommandSink
    clock: SettableNow = field(default_factory=lambda: SettableNow(T0))

    def window_manager(
        self,
        state_file: Path,
        loaded: LoadedSettings | None = None,
        *,
        dialect: str = "dashboard",
        draft_store: DraftStore | None = None,
    ) -> WindowManager:
        """A real WindowManager on this store, bridge, sink and clock (default settings)."""
        from tray_agent.ui.windows import WindowManager

        return WindowManager(
            self.store,
            self.sink,
            loaded if loaded is not None else LoadedSettings(settings=Settings()),
            dialect,
            bridge=self.bridge,
            state_file=state_file,
            draft_store=draft_store,
            clock=self.clock,
        )

    def feed(self, *events: Event) -> None:
        """Dispatch events and flush the bridge at once (no waiting on its 16 ms timer)."""
        self.store.dispatch_many(events)
        self.bridge.flush_now()

    def online(self, user_id: str = "me-1") -> None:
        self.feed(ConnectionChanged(state=ConnectionState.CONNECTED, at=T0), Connected(user_id=user_id))

    def offline(self) -> None:
        self.feed(
            ConnectionChanged(state=ConnectionState.RECONNECTING, detail="server unreachable", retry_in=4)
        )

    def close(self) -> None:
        self.bridge.close()


def make_env(*, user_id: str = "me-1", online: bool = True) -> Env:
    """A fresh store/bridge/sink; connected as ``user_id`` unless ``online`` is False."""
    store = Store()
    env = Env(store=store, bridge=StoreBridge(store), sink=FakeCommandSink(store))
    if online:
        env.online(user_id)
    return env


def summary(
    key: str,
    name: str = "",
    *,
    channel: str = "Shop page",
    last: str = "hello",
    last_at: timedelta = timedelta(minutes=-1),
    waiting: bool = True,
    since: timedelta | None = timedelta(minutes=-5),
    assigned: bool = False,
    agent: AgentRef | None = None,
    to_me: bool | None = None,
    handled_by: str = "",
    status: str = "",
) -> ConversationSummary:
    """A waiting-list row relative to :data:`T0`."""
    return ConversationSummary(
        conversation=key,
        customer_name=name or f"Customer {key}",
        channel=channel,
        last_message=last,
        last_message_at=T0 + last_at,
        waiting=waiting,
        waiting_since=(T0 + since) if (waiting and since is not None) else None,
        assigned=assigned,
        agent=agent,
        assigned_to_me=to_me,
        handled_by=handled_by,
        status=status,
    )


def page(*rows: ConversationSummary, complete: bool = True) -> WaitingListPage:
    """One complete resync page."""
    return WaitingListPage(customers=rows, offset=0, total=len(rows), complete_list=complete)
