"""ToastNotifier bookkeeping, escaping and failure handling, with a fake backend (no D-Bus)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from tray_agent.core.effects import Toast, ToastAction, Urgency
from tray_agent.core.ports import Notifier
from tray_agent.platform.notifier import (
    BUTTON_LABELS,
    DesktopNotifierBackend,
    NullNotifier,
    ToastNotifier,
    create_notifier,
    escape_markup,
)


@dataclass
class Sent:
    identifier: str
    title: str
    body: str
    urgency: Urgency
    buttons: list[tuple[str, str]]
    on_activated: Callable[[str | None], None]
    on_closed: Callable[[], None]


@dataclass
class FakeBackend:
    """A ToastBackend recording what it was asked to do."""

    body_markup: bool = True
    starts: bool = True
    fail_sends: bool = False
    fail_clears: bool = False
    sent: list[Sent] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    closed: bool = False

    async def start(self) -> bool:
        return self.starts

    async def send(
        self,
        identifier: str,
        title: str,
        body: str,
        urgency: Urgency,
        buttons: Sequence[tuple[str, str]],
        on_activated: Callable[[str | None], None],
        on_closed: Callable[[], None],
    ) -> None:
        if self.fail_sends:
            raise RuntimeError("server gone")
        self.sent.append(Sent(identifier, title, body, urgency, list(buttons), on_activated, on_closed))

    async def clear(self, identifier: str) -> None:
        if self.fail_clears:
            raise KeyError(identifier)
        self.cleared.append(identifier)

    async def close(self) -> None:
        self.closed = True


async def started(backend: FakeBackend, max_tracked: int = 200) -> ToastNotifier:
    notifier = ToastNotifier(backend, max_tracked=max_tracked)
    assert await notifier.start()
    return notifier


def toast(key: str, **kw: object) -> Toast:
    return Toast(key=key, title=kw.pop("title", f"title {key}"), body=kw.pop("body", "body"), **kw)  # type: ignore[arg-type]


def test_escape_markup_escapes_ampersand_and_angle_brackets() -> None:
    assert escape_markup("<b>Eve</b> & co") == "&lt;b&gt;Eve&lt;/b&gt; &amp; co"
    assert escape_markup("&amp;") == "&amp;amp;"  # text, not markup: escaped again
    assert escape_markup('plain "quoted" it\'s') == 'plain "quoted" it\'s'


@pytest.mark.asyncio
async def test_notifier_body_escaped_title_plain_when_server_takes_markup() -> None:
    backend = FakeBackend(body_markup=True)
    notifier = await started(backend)

    await notifier.show(toast("k", title="<i>Eve</i> & co", body="<script>x</script> & y"))

    [sent] = backend.sent
    assert sent.title == "<i>Eve</i> & co"
    assert sent.body == "&lt;script&gt;x&lt;/script&gt; &amp; y"


@pytest.mark.asyncio
async def test_notifier_body_unchanged_when_server_has_no_markup() -> None:
    backend = FakeBackend(body_markup=False)
    notifier = await started(backend)

    await notifier.show(toast("k", body="a < b & c"))

    assert backend.sent[0].body == "a < b & c"


@pytest.mark.asyncio
async def test_notifier_passes_urgency_and_labelled_buttons() -> None:
    backend = FakeBackend()
    notifier = await started(backend)

    await notifier.show(
        toast("k", urgency=Urgency.CRITICAL, actions=(ToastAction.TAKE_OVER, ToastAction.OPEN))
    )

    [sent] = backend.sent
    assert sent.urgency is Urgency.CRITICAL
    assert sent.buttons == [("take_over", "Take over"), ("open", "Open")]
    assert set(BUTTON_LABELS) == set(ToastAction)


@pytest.mark.asyncio
async def test_notifier_same_key_clears_the_previous_toast() -> None:
    backend = FakeBackend()
    notifier = await started(backend)

    await notifier.show(toast("a", body="1"))
    await notifier.show(toast("b"))
    await notifier.show(toast("a", body="2"))

    first_a, b, second_a = backend.sent
    assert backend.cleared == [first_a.identifier]
    assert notifier.tracked_keys == ["b", "a"]
    assert len({first_a.identifier, b.identifier, second_a.identifier}) == 3


@pytest.mark.asyncio
async def test_notifier_map_is_bounded_and_withdraws_the_oldest() -> None:
    backend = FakeBackend()
    notifier = await started(backend, max_tracked=3)

    for key in "abcde":
        await notifier.show(toast(key))

    assert notifier.tracked_keys == ["c", "d", "e"]
    assert backend.cleared == [backend.sent[0].identifier, backend.sent[1].identifier]


@pytest.mark.asyncio
async def test_notifier_click_on_old_toast_reports_its_own_key() -> None:
    backend = FakeBackend()
    notifier = await started(backend)
    calls: list[tuple[str, ToastAction | None]] = []
    notifier.set_callback(lambda key, action: calls.append((key, action)))
    await notifier.show(toast("alice", actions=(ToastAction.OPEN,)))
    await notifier.show(toast("bob", actions=(ToastAction.TAKE_OVER,)))
    await notifier.show(toast("alice", body="newer"))

    backend.sent[0].on_activated(None)  # the replaced toast, clicked before it vanished
    backend.sent[1].on_activated("take_over")
    backend.sent[2].on_activated("open")

    assert calls == [("alice", None), ("bob", ToastAction.TAKE_OVER), ("alice", ToastAction.OPEN)]


@pytest.mark.asyncio
async def test_notifier_activation_forgets_only_that_notification() -> None:
    backend = FakeBackend()
    notifier = await started(backend)
    await notifier.show(toast("a"))
    await notifier.show(toast("a"))

    backend.sent[0].on_closed()  # the replaced one: must not drop the newer mapping
    assert notifier.tracked_keys == ["a"]
    backend.sent[1].on_activated(None)
    assert notifier.tracked_keys == []


@pytest.mark.asyncio
async def test_notifier_closes_a_toast_once_its_button_was_pressed() -> None:
    # dunst's context menu invokes the action and leaves the toast up: its Take over button
    # would stay on screen with nothing left to do (issue 14).
    backend = FakeBackend()
    notifier = await started(backend)
    await notifier.show(toast("escalation:c1", actions=(ToastAction.TAKE_OVER,)))
    await notifier.show(toast("escalation:c2", actions=(ToastAction.TAKE_OVER,)))

    backend.sent[0].on_activated("take_over")
    await notifier.aclose()  # waits for the closing under way

    assert backend.cleared == [backend.sent[0].identifier]
    assert notifier.tracked_keys == ["escalation:c2"]


@pytest.mark.asyncio
async def test_notifier_unknown_button_and_failing_callback_are_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = FakeBackend()
    notifier = await started(backend)

    def broken(key: str, action: ToastAction | None) -> None:
        raise ValueError("bug in the app")

    notifier.set_callback(broken)
    await notifier.show(toast("k", actions=(ToastAction.OPEN,)))

    with caplog.at_level(logging.ERROR):
        backend.sent[0].on_activated("no-such-button")
        backend.sent[0].on_activated("open")
    assert "Toast callback failed" in caplog.text


@pytest.mark.asyncio
async def test_notifier_withdraw_clears_and_forgets_and_tolerates_unknown_keys() -> None:
    backend = FakeBackend()
    notifier = await started(backend)
    await notifier.show(toast("k"))

    await notifier.withdraw("k")
    await notifier.withdraw("k")
    await notifier.withdraw("never-shown")

    assert backend.cleared == [backend.sent[0].identifier]
    assert notifier.tracked_keys == []


@pytest.mark.asyncio
async def test_notifier_failures_never_raise_and_log_once(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend(fail_sends=True, fail_clears=True)
    notifier = await started(backend)

    with caplog.at_level(logging.DEBUG):
        await notifier.show(toast("a"))
        await notifier.show(toast("b"))
        await notifier.withdraw("a")

    assert not notifier.available
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    backend.fail_sends = False
    await notifier.show(toast("c"))
    assert notifier.available


@pytest.mark.asyncio
async def test_notifier_clear_failure_on_replacement_still_sends() -> None:
    backend = FakeBackend(fail_clears=True)
    notifier = await started(backend)

    await notifier.show(toast("k"))
    await notifier.show(toast("k", body="again"))

    assert [s.body for s in backend.sent] == ["body", "again"]
    assert notifier.tracked_keys == ["k"]


@pytest.mark.asyncio
async def test_null_notifier_is_unavailable_and_inert() -> None:
    null = NullNotifier()
    null.set_callback(lambda key, action: None)

    await null.show(toast("k"))
    await null.withdraw("k")
    await null.aclose()

    assert not null.available


@pytest.mark.asyncio
async def test_create_notifier_falls_back_to_null_when_backend_has_no_server() -> None:
    backend = FakeBackend(starts=False)

    result = await create_notifier(backend=backend)

    assert isinstance(result, NullNotifier)
    assert backend.closed


@pytest.mark.asyncio
async def test_create_notifier_returns_the_toast_notifier_when_server_answers() -> None:
    result = await create_notifier(backend=FakeBackend())

    assert isinstance(result, ToastNotifier)
    assert result.available


def test_implementations_satisfy_the_notifier_port() -> None:
    implementations: list[Notifier] = [NullNotifier(), ToastNotifier(FakeBackend())]
    assert all(hasattr(n, "available") for n in implementations)


@pytest.mark.parametrize("address", ["", "unix:path=/nonexistent/tray_agent-test-bus"])
@pytest.mark.asyncio
async def test_desktop_notifier_backend_without_a_bus_is_unavailable(address: str) -> None:
    backend = DesktopNotifierBackend(bus_address=address)

    result = await create_notifier(backend=backend)

    assert isinstance(result, NullNotifier)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the freedesktop probe")
def test_no_bus_means_desktop_notifier_is_never_imported() -> None:
    """Without a notification server nothing of desktop-notifier is loaded (its resident memory)."""
    code = (
        "import asyncio, sys\n"
        "from tray_agent.platform.notifier import DesktopNotifierBackend, NullNotifier, create_notifier\n"
        "result = asyncio.run(create_notifier(backend=DesktopNotifierBackend(bus_address='')))\n"
        "print(isinstance(result, NullNotifier), 'desktop_notifier' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


class _Ids(dict[int, str]):
    """desktop-notifier's bidict of server ids to identifiers (``inverse``: the other way)."""

    @property
    def inverse(self) -> dict[str, int]:
        return {v: k for k, v in self.items()}


class _FakeInterface:
    def __init__(self) -> None:
        self.closed: list[int] = []

    async def call_close_notification(self, server_id: int) -> None:
        self.closed.append(server_id)


class _FakeLinuxBackend:
    def __init__(self) -> None:
        self._platform_to_interface_notification_identifier = _Ids()
        self.interface = _FakeInterface()


class _FakeDesktopNotifier:
    """The parts of desktop-notifier the backend uses, as its freedesktop backend behaves."""

    def __init__(self) -> None:
        self._backend = _FakeLinuxBackend()
        self.cleared: list[str] = []

    async def send_notification(self, notification: object) -> None:
        ids = self._backend._platform_to_interface_notification_identifier
        ids[len(ids) + 41] = notification.identifier  # type: ignore[attr-defined]

    async def get_current_notifications(self) -> list[str]:
        return list(self._backend._platform_to_interface_notification_identifier.values())

    async def clear(self, identifier: str) -> None:
        ids = self._backend._platform_to_interface_notification_identifier
        server_id = ids.inverse[identifier]  # KeyError once forgotten, as in desktop-notifier
        del ids[server_id]
        self.cleared.append(identifier)

    def press(self, identifier: str) -> None:
        """The user pressed a button: desktop-notifier forgets the server id (``_on_action``)."""
        ids = self._backend._platform_to_interface_notification_identifier
        del ids[ids.inverse[identifier]]


@pytest.mark.asyncio
async def test_desktop_notifier_backend_closes_a_toast_after_its_button_was_pressed() -> None:
    pytest.importorskip("desktop_notifier")
    backend = DesktopNotifierBackend()
    fake = _FakeDesktopNotifier()
    backend._notifier = fake  # started, without a bus
    for identifier in ("t1", "t2"):
        await backend.send(identifier, "title", "body", Urgency.CRITICAL, [], lambda b: None, lambda: None)

    await backend.clear("t1")  # still known to desktop-notifier: it closes it
    fake.press("t2")
    await backend.clear("t2")  # forgotten by desktop-notifier: closed by its server id

    assert fake.cleared == ["t1"]
    assert fake._backend.interface.closed == [42]
