"""EffectRunner: policy effects reach the Notifier/Sound ports; one single-shot timer at next_deadline."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from pytestqt.qtbot import QtBot

from tests.gui.conftest import FakeNotifier, FakeSound, SettableClock, close_awaitable
from tray_agent.core.effects import (
    Alert,
    AlertKind,
    Notify,
    PlaySound,
    RequestResync,
    SoundName,
    ToastAction,
    Urgency,
)
from tray_agent.core.policy import AlertPolicy, TrayLevel
from tray_agent.core.ports import SystemClock
from tray_agent.core.settings import AlertSettings, QuietHoursRule
from tray_agent.ui.effects import EffectRunner

pytestmark = pytest.mark.gui


def message(key: str, name: str = "Ann", text: str = "hi") -> Alert:
    return Alert(AlertKind.MESSAGE, key, customer_name=name, text=text)


def make_runner(
    notifier: FakeNotifier,
    sound: FakeSound,
    clock: object,
    settings: AlertSettings | None = None,
    **kwargs: object,
) -> EffectRunner:
    settings = settings or AlertSettings()
    policy = AlertPolicy(settings)
    return EffectRunner(policy, notifier, sound, clock, settings, spawn=close_awaitable, **kwargs)  # type: ignore[arg-type]


def test_effects_escalation_toast_and_sound_with_volume(
    qtbot: QtBot, notifier: FakeNotifier, sound: FakeSound, clock: SettableClock
) -> None:
    runner = make_runner(notifier, sound, clock, AlertSettings(volume=0.3))
    with qtbot.waitSignal(runner.effects_ran, timeout=1000) as blocker:
        runner.run([Alert(AlertKind.ESCALATION, "p/1", customer_name="Ann", text="A human please")])
    toast = notifier.shown[0]
    assert toast.urgency is Urgency.CRITICAL
    assert toast.title == "Ann asks for a human"
    assert toast.actions == (ToastAction.TAKE_OVER, ToastAction.OPEN)
    assert sound.played == [(SoundName.ESCALATION, 0.3)]
    assert any(isinstance(e, Notify) for e in blocker.args[0])
    assert any(isinstance(e, PlaySound) for e in blocker.args[0])


def test_effects_muted_plays_nothing(notifier: FakeNotifier, sound: FakeSound, clock: SettableClock) -> None:
    runner = make_runner(notifier, sound, clock)
    runner.update_settings(AlertSettings(sounds=False))
    runner.run([Alert(AlertKind.ESCALATION, "p/1", customer_name="Ann")])
    assert len(notifier.shown) == 1
    assert sound.played == []
    assert runner.muted


def test_effects_timer_rearmed_to_next_deadline(
    notifier: FakeNotifier, sound: FakeSound, clock: SettableClock
) -> None:
    runner = make_runner(notifier, sound, clock, AlertSettings(toast_min_interval=2.0))
    runner.run([message("p/1", "Ann")])
    assert [t.key for t in notifier.shown] == ["message:p/1"]
    assert not runner.timer_active  # nothing held back: idle
    clock.advance(0.5)
    runner.run([message("p/2", "Bob")])  # rate limit: held back until 2 s after the first toast
    assert len(notifier.shown) == 1
    assert runner.timer_active
    deadline = runner.policy.next_deadline()
    assert deadline is not None
    assert runner.timer_interval_ms == round((deadline - clock.now()).total_seconds() * 1000) == 1500


def test_effects_timer_fires_and_goes_idle(qtbot: QtBot, notifier: FakeNotifier, sound: FakeSound) -> None:
    settings = AlertSettings(toast_min_interval=0.05, coalesce_window=0.0)
    runner = make_runner(notifier, sound, SystemClock(), settings)
    runner.run([message("p/1", "Ann"), message("p/2", "Bob")])
    assert [t.key for t in notifier.shown] == ["message:p/1"]
    with qtbot.waitSignal(runner.effects_ran, timeout=2000):
        pass
    assert [t.key for t in notifier.shown] == ["message:p/1", "message:p/2"]
    assert not runner.timer_active


def test_effects_waiting_list_drives_sla_level(
    qtbot: QtBot, notifier: FakeNotifier, sound: FakeSound
) -> None:
    from tray_agent.core.state import Conversation, ConversationMap, State

    clock = SettableClock()
    runner = make_runner(notifier, sound, clock, AlertSettings(sla_minutes=10, reminder_after=60))
    levels: list[object] = []
    runner.tray_level_changed.connect(levels.append)
    ann = Conversation(
        "p/1", customer_name="Ann", waiting=True, waiting_since=clock.now() - timedelta(minutes=3)
    )
    runner.update_waiting({"p/1"}, State(conversations=ConversationMap([ann])))
    assert runner.tray_level is TrayLevel.WAITING
    # The SLA crossing (7 minutes from now) is the next deadline.
    assert runner.timer_interval_ms == 7 * 60 * 1000
    runner.update_waiting({"p/1"}, State())  # gone from the state: no longer waiting
    assert runner.tray_level is TrayLevel.NORMAL
    assert levels == [TrayLevel.WAITING, TrayLevel.NORMAL]
    assert not runner.timer_active


def test_effects_dnd_silences_messages_not_escalations(
    notifier: FakeNotifier, sound: FakeSound, clock: SettableClock
) -> None:
    runner = make_runner(notifier, sound, clock)
    runner.set_dnd(clock.now() + timedelta(minutes=30))
    assert runner.quiet
    assert runner.timer_active  # the end of DND is a deadline
    runner.run([message("p/1")])
    assert notifier.shown == []
    runner.run([Alert(AlertKind.ESCALATION, "p/2", customer_name="Bob")])
    assert [t.key for t in notifier.shown] == ["escalation:p/2"]
    runner.set_dnd(None)
    assert not runner.quiet


def test_effects_quiet_hours_reported(notifier: FakeNotifier, sound: FakeSound, clock: SettableClock) -> None:
    settings = AlertSettings(quiet_hours=[QuietHoursRule(start="00:00", end="00:00")])  # all day
    runner = make_runner(notifier, sound, clock, settings)
    quiet: list[bool] = []
    runner.quiet_changed.connect(quiet.append)
    runner.start()
    assert quiet == [True]
    assert runner.dnd_until is None


def test_effects_focus_withdraws_the_conversation_toast(
    notifier: FakeNotifier, sound: FakeSound, clock: SettableClock
) -> None:
    runner = make_runner(notifier, sound, clock)
    runner.run([message("p/1")])
    runner.set_focus("p/1")
    assert notifier.withdrawn == ["message:p/1"]
    clock.advance(30)
    runner.run([message("p/1", text="again")])
    assert len(notifier.shown) == 1  # nothing for the conversation on screen


@pytest.mark.asyncio
async def test_effects_close_withdraws_every_toast(
    notifier: FakeNotifier, sound: FakeSound, clock: SettableClock
) -> None:
    runner = make_runner(notifier, sound, clock)
    runner.run([message("p/1"), Alert(AlertKind.ESCALATION, "p/2", customer_name="Bob")])
    await runner.aclose()  # Quit
    assert sorted(notifier.withdrawn) == ["escalation:p/2", "message:p/1"]
    assert not runner.timer_active


def test_effects_withdraw_all_for_sign_out(
    notifier: FakeNotifier, sound: FakeSound, clock: SettableClock
) -> None:
    runner = make_runner(notifier, sound, clock)
    runner.run([message("p/1")])
    runner.withdraw_all()
    assert notifier.withdrawn == ["message:p/1"]


def test_effects_manual_dnd_refused_when_forbidden(
    notifier: FakeNotifier, sound: FakeSound, clock: SettableClock
) -> None:
    runner = make_runner(notifier, sound, clock, AlertSettings(allow_manual_dnd=False))
    assert runner.set_dnd(clock.now() + timedelta(minutes=30)) is False
    assert runner.dnd_until is None


def test_effects_resync_request_forwarded(
    notifier: FakeNotifier, sound: FakeSound, clock: SettableClock
) -> None:
    asked: list[str] = []
    runner = make_runner(notifier, sound, clock, request_resync=asked.append)
    runner.run([RequestResync("unknown customer")])
    assert asked == ["unknown customer"]


@pytest.mark.asyncio
async def test_effects_notifier_failure_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture, sound: FakeSound, clock: SettableClock
) -> None:
    notifier = FakeNotifier(fail=True)
    policy = AlertPolicy(AlertSettings())
    runner = EffectRunner(policy, notifier, sound, clock, AlertSettings())  # default spawn: the loop
    with caplog.at_level(logging.WARNING, logger="tray_agent.ui.effects"):
        runner.run([Alert(AlertKind.ESCALATION, "p/1", customer_name="Ann")])
        await runner.aclose()
        await asyncio.sleep(0)  # let the done-callback run
    assert notifier.shown
    assert "Could not show a toast" in caplog.text


def test_effects_changed_conversations_update_the_waiting_list(
    qtbot: QtBot, notifier: FakeNotifier, sound: FakeSound
) -> None:
    """The app's path: only the conversations a flush changed reach the policy."""
    from tray_agent.core.events import AgentRef, AssignmentAction, AssignmentChanged, HumanRequested
    from tray_agent.core.state import Store

    clock = SettableClock()
    runner = make_runner(notifier, sound, clock, AlertSettings(sla_minutes=10, reminder_after=60))
    store = Store()
    store.dispatch(HumanRequested(conversation="p/1", customer_name="Ann", at=clock.now()))
    store.dispatch(HumanRequested(conversation="p/2", customer_name="Bob", at=clock.now()))
    runner.update_waiting({"p/1", "p/2"}, store.state)
    assert runner.policy.waiting_count == 2
    assert runner.tray_level is TrayLevel.WAITING
    # Someone takes Ann: only her conversation changed, and only it is passed on.
    store.dispatch(
        AssignmentChanged(conversation="p/1", action=AssignmentAction.ASSIGNED, agent=AgentRef(agent_id="x"))
    )
    runner.update_waiting({"p/1"}, store.state)
    assert runner.policy.waiting_count == 1
    # A conversation gone from the state (sign-out) stops waiting.
    runner.update_waiting({"p/2"}, Store().state)
    assert runner.policy.waiting_count == 0
    assert runner.tray_level is TrayLevel.NORMAL
