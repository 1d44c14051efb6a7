"""tray_agent.platform.notifier against the real dunst in the headless session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.desktop.session import DesktopSession, Notification, wait_until
from tray_agent.core.effects import Toast, ToastAction, Urgency
from tray_agent.platform.notifier import APP_NAME, ToastNotifier, create_notifier

pytestmark = pytest.mark.asyncio

ESCALATION = Toast(
    key="conv-1",
    title="Escalation: Eve",
    body="I want to talk to a human",
    urgency=Urgency.CRITICAL,
    conversation="conv-1",
    actions=(ToastAction.TAKE_OVER, ToastAction.OPEN),
)


class Pressed:
    """Collects callback calls and lets a test await the next one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ToastAction | None]] = []
        self._event = asyncio.Event()

    def __call__(self, key: str, action: ToastAction | None) -> None:
        self.calls.append((key, action))
        self._event.set()

    async def next(self) -> tuple[str, ToastAction | None]:
        async with asyncio.timeout(5):
            await self._event.wait()
        self._event.clear()
        return self.calls[-1]


@pytest_asyncio.fixture
async def notifier() -> AsyncIterator[ToastNotifier]:
    created = await create_notifier()
    assert isinstance(created, ToastNotifier)
    assert created.available
    yield created
    await created.aclose()


def ours(n: Notification) -> bool:
    return n.app_name == APP_NAME


async def wait_for_ours(desktop: DesktopSession, count: int = 1) -> list[Notification]:
    def enough() -> list[Notification] | None:
        found = [n for n in desktop.notifications() if ours(n) and n.id is not None]
        return found if len(found) >= count else None

    result: list[Notification] = await asyncio.to_thread(wait_until, enough, 5.0, f"{count} toasts")
    return result


async def test_toast_reaches_dunst_with_title_body_and_critical_urgency(
    desktop: DesktopSession, notifier: ToastNotifier
) -> None:
    await notifier.show(ESCALATION)

    [n] = await wait_for_ours(desktop)
    assert (n.summary, n.body, n.urgency) == ("Escalation: Eve", "I want to talk to a human", 2)
    assert list(n.actions.values())[-2:] == ["Take over", "Open"]
    assert desktop.dunst_count("displayed") == 1


@pytest.mark.parametrize(("urgency", "hint"), [(Urgency.LOW, 0), (Urgency.NORMAL, 1)])
async def test_toast_urgency_maps_to_the_freedesktop_hint(
    desktop: DesktopSession, notifier: ToastNotifier, urgency: Urgency, hint: int
) -> None:
    await notifier.show(Toast(key="k", title="t", body="b", urgency=urgency))

    [n] = await wait_for_ours(desktop)
    assert n.urgency == hint


async def test_html_in_customer_text_is_shown_literally(
    desktop: DesktopSession, notifier: ToastNotifier
) -> None:
    name = "<b>Eve</b> & co"
    await notifier.show(Toast(key="k", title=name, body=name))

    [n] = await wait_for_ours(desktop)
    # The summary is plain text by the spec (dunst escapes it); the body is markup, so we escape.
    assert n.summary == name
    assert n.body == "&lt;b&gt;Eve&lt;/b&gt; &amp; co"
    # What dunst renders (its Pango markup): both show the literal text, neither is bold-ed nor
    # escaped twice.
    desktop.reset()
    [shown] = [h for h in desktop.dunst_history() if h["id"] == n.id]
    literal = "&lt;b&gt;Eve&lt;/b&gt; &amp; co"
    assert shown["message"].count(literal) == 2
    assert "&amp;amp;" not in shown["message"]
    assert "&amp;lt;" not in shown["message"]


async def test_take_over_button_invokes_the_callback_with_key_and_action(
    desktop: DesktopSession, notifier: ToastNotifier
) -> None:
    pressed = Pressed()
    notifier.set_callback(pressed)
    await notifier.show(ESCALATION)
    [n] = await wait_for_ours(desktop)

    await asyncio.to_thread(desktop.press_action, "Take over", n)

    assert await pressed.next() == ("conv-1", ToastAction.TAKE_OVER)


async def test_click_on_an_old_toast_opens_exactly_that_customer(
    desktop: DesktopSession, notifier: ToastNotifier
) -> None:
    pressed = Pressed()
    notifier.set_callback(pressed)
    await notifier.show(Toast(key="alice", title="Alice", body="hi", actions=(ToastAction.OPEN,)))
    await notifier.show(Toast(key="bob", title="Bob", body="hello", actions=(ToastAction.OPEN,)))
    alice, _bob = await wait_for_ours(desktop, 2)

    await asyncio.to_thread(desktop.press_action, "default", alice)  # a click on the toast
    assert await pressed.next() == ("alice", None)

    await asyncio.to_thread(desktop.press_action, "Open")  # newest toast with an Open button
    assert await pressed.next() == ("bob", ToastAction.OPEN)


async def test_same_key_replaces_the_toast_leaving_one(
    desktop: DesktopSession, notifier: ToastNotifier
) -> None:
    await notifier.show(Toast(key="conv-2", title="Bob", body="first"))
    await notifier.show(Toast(key="conv-2", title="Bob", body="second"))
    await notifier.show(Toast(key="conv-2", title="Bob", body="third"))

    await wait_for_ours(desktop, 3)
    [still_open] = await asyncio.to_thread(
        wait_until, lambda: len(desktop.open_notifications()) == 1 and desktop.open_notifications(), 5.0,
        "replaced toasts to close",
    )  # fmt: skip
    assert still_open.body == "third"
    assert desktop.dunst_count("displayed") + desktop.dunst_count("waiting") == 1


async def test_withdraw_closes_the_toast(desktop: DesktopSession, notifier: ToastNotifier) -> None:
    await notifier.show(Toast(key="conv-3", title="Carol", body="?"))
    await wait_for_ours(desktop)

    await notifier.withdraw("conv-3")

    await asyncio.to_thread(wait_until, lambda: not desktop.open_notifications(), 5.0, "the close")
    assert notifier.tracked_keys == []
