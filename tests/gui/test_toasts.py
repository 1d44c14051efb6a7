"""ui.toasts: what clicking a toast or its "Take over" button does (moved out of app.py)."""

from __future__ import annotations

from tests.gui.conftest import FakeWindowManager
from tests.helpers.fakes import FakeCommandSink
from tray_agent.core.commands import TakeOver
from tray_agent.core.effects import ToastAction
from tray_agent.core.policy import SUMMARY_KEY, escalation_key, message_key
from tray_agent.ui.toasts import activate_toast, conversation_of_toast


def test_conversation_of_toast_names_the_customer_or_nothing() -> None:
    assert conversation_of_toast(escalation_key("p/a")) == "p/a"
    assert conversation_of_toast(message_key("p/b")) == "p/b"
    assert conversation_of_toast(SUMMARY_KEY) == ""
    assert conversation_of_toast("no-such-kind:p/a") == ""
    assert conversation_of_toast("") == ""


def test_a_customer_toast_opens_the_chat_and_submits_nothing() -> None:
    sink, windows = FakeCommandSink(), FakeWindowManager()
    activate_toast(escalation_key("p/a"), None, commands=sink, windows=windows)
    assert windows.calls == [("open_chat", "p/a")]
    assert sink.submitted == []


def test_take_over_submits_the_take_over_then_opens_the_chat() -> None:
    sink, windows = FakeCommandSink(), FakeWindowManager()
    activate_toast(escalation_key("p/a"), ToastAction.TAKE_OVER, commands=sink, windows=windows)
    assert [type(c) for c in sink.submitted] == [TakeOver]
    assert sink.submitted[0].conversation_key == "p/a"
    assert windows.calls == [("open_chat", "p/a")]


def test_a_summary_toast_shows_the_inbox_even_with_a_take_over_action() -> None:
    sink, windows = FakeCommandSink(), FakeWindowManager()
    activate_toast(SUMMARY_KEY, ToastAction.TAKE_OVER, commands=sink, windows=windows)
    assert windows.calls == [("show_inbox",)]
    assert sink.submitted == []


def test_without_windows_the_take_over_still_goes_out() -> None:
    sink = FakeCommandSink()
    activate_toast(escalation_key("p/a"), ToastAction.TAKE_OVER, commands=sink, windows=None)
    activate_toast(SUMMARY_KEY, None, commands=sink, windows=None)
    assert [c.conversation_key for c in sink.submitted] == ["p/a"]
