"""An alert that gives the policy nothing to do at once skips its tick: the results never change.

:attr:`AlertPolicy.skip_settled_ticks` (on by default) lets ``on_alert`` skip the ``on_tick`` that
follows it when a tick at the same instant already ran and the alert changed nothing the tick acts
on now (a burst of messages while the rate limit holds toasts back). These tests drive a policy
with the skip and one without through the same generated sequences of calls, many at the same
instant, and require identical effects and answers after every call.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tray_agent.core.effects import Alert, AlertKind, Handler
from tray_agent.core.policy import AlertPolicy, WaitingCustomer
from tray_agent.core.settings import AlertSettings, QuietHoursRule

T0 = datetime(2025, 3, 3, 21, 59, 50, tzinfo=UTC)  # a Monday, just before the quiet hours below
CONVERSATIONS = ("c1", "c2", "c3", "c4")

alert_settings = st.builds(
    AlertSettings,
    notify_messages=st.booleans(),
    notify_escalations=st.booleans(),
    escalations_bypass_dnd=st.booleans(),
    toast_min_interval=st.sampled_from([0.0, 0.5, 1.0, 5.0]),
    coalesce_window=st.sampled_from([0.0, 1.0, 10.0]),
    summary_threshold=st.integers(2, 4),
    reminder_after=st.sampled_from([0.5, 1.0]),
    sla_minutes=st.sampled_from([0.5, 2.0]),
    sounds=st.booleans(),
    ai_messages=st.booleans(),
    quiet_hours=st.sampled_from([[], [QuietHoursRule(start="22:00", end="22:01")]]),
)
alerts = st.builds(
    Alert,
    kind=st.sampled_from(AlertKind),
    conversation=st.sampled_from(("", *CONVERSATIONS)),
    customer_name=st.sampled_from(("", "Ana", "Budi")),
    channel=st.just("whatsapp"),
    text=st.sampled_from(("hi", "", "again")),
    since=st.none() | st.just(T0 - timedelta(minutes=3)),
    handler=st.sampled_from(Handler),
)
customers = st.builds(
    WaitingCustomer,
    conversation=st.sampled_from(CONVERSATIONS),
    since=st.none() | st.just(T0 - timedelta(minutes=1)),
    assigned=st.booleans(),
    customer_name=st.just("Ana"),
)
# Steps of time: mostly none (the same instant: a burst), sometimes a little, sometimes a lot.
steps = st.sampled_from([0.0] * 6 + [0.2, 0.6, 1.0, 11.0, 40.0])
calls = st.one_of(
    st.tuples(st.just("alert"), alerts, steps),
    st.tuples(st.just("alert"), alerts, steps),
    st.tuples(st.just("alert"), alerts, steps),
    st.tuples(st.just("tick"), st.none(), steps),
    st.tuples(st.just("focus"), st.none() | st.sampled_from(CONVERSATIONS), steps),
    st.tuples(st.just("dnd"), st.none() | st.just(timedelta(seconds=30)), steps),
    st.tuples(st.just("waiting"), st.tuples(customers, st.booleans()), steps),
    st.tuples(st.just("set_waiting"), st.lists(customers, max_size=3), steps),
    st.tuples(st.just("withdraw_all"), st.none(), steps),
    st.tuples(st.just("settings"), alert_settings, steps),
)


def call(policy: AlertPolicy, name: str, arg: Any, now: datetime) -> Any:
    if name == "alert":
        return policy.on_alert(arg, now)
    if name == "tick":
        return policy.on_tick(now)
    if name == "focus":
        return policy.set_focus(arg)
    if name == "dnd":
        return policy.set_dnd(None if arg is None else now + arg)
    if name == "waiting":
        return policy.on_waiting_changed(arg[0], arg[1], now)
    if name == "set_waiting":
        return policy.set_waiting(arg, now)
    if name == "withdraw_all":
        return policy.withdraw_all()
    policy.update_settings(arg)
    return None


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alert_settings, st.lists(calls, max_size=40))
def test_skipping_settled_ticks_changes_no_result(initial: AlertSettings, sequence: list[Any]) -> None:
    fast = AlertPolicy(initial, local_tz=UTC)
    slow = AlertPolicy(initial, local_tz=UTC)
    slow.skip_settled_ticks = False
    now = T0
    for name, arg, step in sequence:
        now += timedelta(seconds=step)
        assert call(fast, name, arg, now) == call(slow, name, arg, now), name
        assert fast.next_deadline() == slow.next_deadline()
        assert fast.tray_level(now) == slow.tray_level(now)
        assert fast.dnd_active(now) == slow.dnd_active(now)
        assert fast.waiting_count == slow.waiting_count


def test_a_burst_of_messages_while_toasts_are_held_back_shows_everything_later() -> None:
    """The rate limit holds the second customer's toast; the burst's skipped ticks lose nothing."""
    policy = AlertPolicy(AlertSettings(toast_min_interval=1.0, summary_threshold=3), local_tz=UTC)
    first = policy.on_alert(Alert(AlertKind.MESSAGE, "c1", "Ana", "wa", "one"), T0)
    assert len(first) == 2  # the toast and its sound
    held = [policy.on_alert(Alert(AlertKind.MESSAGE, "c2", "Budi", "wa", f"m{i}"), T0) for i in range(5)]
    assert held == [[]] * 5
    assert policy.next_deadline() == T0 + timedelta(seconds=1)
    later = policy.on_tick(T0 + timedelta(seconds=1))
    toasts = [e.toast for e in later if hasattr(e, "toast")]
    assert [t.conversation for t in toasts] == ["c2"]
    assert "5 new messages" in toasts[0].body


def test_messages_of_a_customer_inside_the_coalescing_window_skip_the_tick() -> None:
    """Past the rate limit, a customer just shown waits for the coalescing window: a burst of their
    messages at one instant ticks once, and the window's end still shows them all."""
    policy = AlertPolicy(AlertSettings(toast_min_interval=1.0, coalesce_window=10.0), local_tz=UTC)
    ticks: list[datetime] = []
    real_tick = policy.on_tick

    def counted(now: datetime) -> list[Any]:
        ticks.append(now)
        return real_tick(now)

    policy.on_tick = counted  # type: ignore[method-assign]
    assert len(policy.on_alert(Alert(AlertKind.MESSAGE, "c1", "Ana", "wa", "one"), T0)) == 2
    later = T0 + timedelta(seconds=2)  # past the rate limit, inside c1's coalescing window
    held = [policy.on_alert(Alert(AlertKind.MESSAGE, "c1", "Ana", "wa", f"m{i}"), later) for i in range(5)]
    assert held == [[]] * 5
    assert ticks == [T0, later]  # one tick for the first alert of each instant, none for the rest
    assert policy.next_deadline() == T0 + timedelta(seconds=10)
    shown = [e.toast for e in policy.on_tick(T0 + timedelta(seconds=10)) if hasattr(e, "toast")]
    assert [t.conversation for t in shown] == ["c1"]
    assert shown[0].body == "6 new messages: m4"  # the burst counts on from the first toast
