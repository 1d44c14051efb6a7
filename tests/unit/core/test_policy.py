"""Unit tests for the notification policy: explicit datetimes, no event loop, no sleeps."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tray_agent.core.effects import (
    Alert,
    AlertKind,
    Effect,
    Handler,
    Notify,
    PlaySound,
    SoundName,
    Toast,
    ToastAction,
    Urgency,
    Withdraw,
)
from tray_agent.core.policy import (
    AI_SUMMARY_KEY,
    SUMMARY_KEY,
    AlertPolicy,
    AlertTexts,
    ToastKey,
    ToastKind,
    TrayLevel,
    WaitingCustomer,
    escalation_key,
    message_key,
    reminder_key,
)
from tray_agent.core.settings import AlertSettings, QuietHoursRule

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)  # a Monday
WIB = timezone(timedelta(hours=7))


def at(seconds: float = 0.0, minutes: float = 0.0) -> datetime:
    return T0 + timedelta(seconds=seconds, minutes=minutes)


def msg(conversation: str = "c1", text: str = "hello", name: str = "Ana", channel: str = "whatsapp") -> Alert:
    return Alert(AlertKind.MESSAGE, conversation, name, channel, text)


def esc(conversation: str = "c1", text: str = "I want a human", name: str = "Ana") -> Alert:
    return Alert(AlertKind.ESCALATION, conversation, name, "whatsapp", text)


def toasts(effects: list[Effect]) -> list[Toast]:
    return [e.toast for e in effects if isinstance(e, Notify)]


def sounds(effects: list[Effect]) -> list[SoundName]:
    return [e.sound for e in effects if isinstance(e, PlaySound)]


def withdrawn(effects: list[Effect]) -> set[str]:
    return {e.key for e in effects if isinstance(e, Withdraw)}


@pytest.fixture
def alert_settings() -> AlertSettings:
    return AlertSettings(toast_min_interval=1.0, coalesce_window=10.0, summary_threshold=3)


@pytest.fixture
def policy(alert_settings: AlertSettings) -> AlertPolicy:
    return AlertPolicy(alert_settings, local_tz=UTC)


# --------------------------------------------------------------------------- messages


def test_policy_first_message_shows_at_once_with_sound(policy: AlertPolicy) -> None:
    effects = policy.on_alert(msg(), at(0))
    assert toasts(effects) == [
        Toast(
            key=message_key("c1"),
            title="Ana · whatsapp",
            body="hello",
            urgency=Urgency.NORMAL,
            conversation="c1",
        )
    ]
    assert sounds(effects) == [SoundName.MESSAGE]
    assert policy.next_deadline() is None


def test_policy_burst_from_one_customer_updates_one_toast(policy: AlertPolicy) -> None:
    assert len(toasts(policy.on_alert(msg(text="one"), at(0)))) == 1
    assert policy.on_alert(msg(text="two"), at(2)) == []
    assert policy.on_alert(msg(text="three"), at(4)) == []
    assert policy.next_deadline() == at(10)  # one showing per conversation per coalesce_window
    assert policy.on_tick(at(9.9)) == []
    [update] = toasts(policy.on_tick(at(10)))
    assert update.key == message_key("c1")
    assert update.body == "3 new messages: three"
    assert policy.next_deadline() is None


def test_policy_burst_ends_after_quiet_window(policy: AlertPolicy) -> None:
    policy.on_alert(msg(text="one"), at(0))
    policy.on_alert(msg(text="two"), at(1))
    policy.on_tick(at(10))
    [fresh] = toasts(policy.on_alert(msg(text="later"), at(21)))  # 11 s after the last showing
    assert fresh.body == "later"


def test_policy_message_while_burst_alive_waits_for_window(policy: AlertPolicy) -> None:
    policy.on_alert(msg(text="one"), at(0))
    policy.on_alert(msg(text="two"), at(1))
    policy.on_tick(at(10))
    assert policy.on_alert(msg(text="three"), at(15)) == []  # 5 s after the last showing
    [update] = toasts(policy.on_tick(at(20)))
    assert update.body == "3 new messages: three"


def test_policy_zero_coalesce_window_counts_no_burst_but_keeps_rate(
    alert_settings: AlertSettings,
) -> None:
    alert_settings.coalesce_window = 0
    policy = AlertPolicy(alert_settings, UTC)
    policy.on_alert(msg(text="one"), at(0))
    policy.on_alert(msg(text="two"), at(0.5))
    assert policy.next_deadline() == at(1)
    [update] = toasts(policy.on_tick(at(1)))
    assert update.body == "two"


def test_policy_rate_limit_defers_and_never_drops(policy: AlertPolicy) -> None:
    assert [t.key for t in toasts(policy.on_alert(msg("a", name="Ana"), at(0)))] == [message_key("a")]
    assert policy.on_alert(msg("b", name="Budi", text="b1"), at(0.2)) == []
    assert policy.on_alert(msg("b", name="Budi", text="b2"), at(0.4)) == []
    assert policy.next_deadline() == at(1)
    effects = policy.on_tick(at(1))
    [shown] = toasts(effects)
    assert shown.key == message_key("b")
    assert shown.title == "Budi · whatsapp"
    assert shown.body == "2 new messages: b2"
    assert sounds(effects) == [SoundName.MESSAGE]


def test_policy_two_deferred_customers_below_threshold_show_one_per_interval(policy: AlertPolicy) -> None:
    policy.on_alert(msg("a"), at(0))
    policy.on_alert(msg("b"), at(0.1))
    policy.on_alert(msg("c"), at(0.2))
    assert [t.key for t in toasts(policy.on_tick(at(1)))] == [message_key("b")]
    assert policy.next_deadline() == at(2)
    assert [t.key for t in toasts(policy.on_tick(at(2)))] == [message_key("c")]


def test_policy_many_customers_become_one_summary(policy: AlertPolicy) -> None:
    policy.on_alert(msg("a", name="Ana"), at(0))
    for i, name in enumerate(["Budi", "Citra", "Dewi", "Eka", "Fajar"]):
        assert policy.on_alert(msg(f"c{i}", name=name), at(0.1 * (i + 1))) == []
    effects = policy.on_tick(at(1))
    [summary] = toasts(effects)
    assert summary.key == SUMMARY_KEY
    assert summary.conversation == ""
    assert summary.title == "5 customers wrote"
    assert summary.body == "Budi, Citra, Dewi and 2 more"
    assert sounds(effects) == [SoundName.MESSAGE]
    assert policy.next_deadline() is None


def test_policy_summary_withdrawn_when_all_its_customers_are_taken(policy: AlertPolicy) -> None:
    policy.on_alert(msg("a"), at(0))
    for conv in ("b", "c", "d"):
        policy.on_waiting_changed(WaitingCustomer(conv, at(0)), True, at(0.1))
        policy.on_alert(msg(conv), at(0.2))
    assert toasts(policy.on_tick(at(1)))[0].key == SUMMARY_KEY
    assert SUMMARY_KEY not in withdrawn(
        policy.on_waiting_changed(WaitingCustomer("b", assigned=True), True, at(2))
    )
    policy.on_waiting_changed(WaitingCustomer("c", assigned=True), True, at(3))
    last = policy.on_waiting_changed(WaitingCustomer("d"), False, at(4))
    assert withdrawn(last) == {SUMMARY_KEY}  # "d" was only ever in the summary


# --------------------------------------------------------------------------- escalations


def test_policy_escalation_gets_own_critical_toast_and_sound_at_once(policy: AlertPolicy) -> None:
    policy.on_alert(msg("a"), at(0))
    effects = policy.on_alert(esc("b", name="Budi", text="Talk to a human please"), at(0.1))
    assert toasts(effects) == [
        Toast(
            key=escalation_key("b"),
            title="Budi asks for a human",
            body="Talk to a human please",
            urgency=Urgency.CRITICAL,
            conversation="b",
            actions=(ToastAction.TAKE_OVER, ToastAction.OPEN),
        )
    ]
    assert sounds(effects) == [SoundName.ESCALATION]


def test_policy_escalation_pushes_message_toasts_back(policy: AlertPolicy) -> None:
    policy.on_alert(esc("a"), at(0))
    assert policy.on_alert(msg("b"), at(0.5)) == []
    assert policy.next_deadline() == at(1)
    assert [t.key for t in toasts(policy.on_tick(at(1)))] == [message_key("b")]


def test_policy_escalations_never_merge_into_summary(policy: AlertPolicy) -> None:
    policy.on_alert(msg("x"), at(0))
    critical = []
    for i in range(5):
        critical += toasts(policy.on_alert(esc(f"e{i}"), at(0.1)))
    assert [t.key for t in critical] == [escalation_key(f"e{i}") for i in range(5)]
    assert all(t.urgency is Urgency.CRITICAL for t in critical)
    assert policy.on_tick(at(5)) == []  # nothing left to summarise


def test_policy_escalation_passes_dnd_and_quiet_hours_by_default(policy: AlertPolicy) -> None:
    policy.set_dnd(at(minutes=30))
    effects = policy.on_alert(esc(), at(1))
    assert [t.urgency for t in toasts(effects)] == [Urgency.CRITICAL]
    assert sounds(effects) == [SoundName.ESCALATION]


def test_policy_escalation_suppressed_in_dnd_without_bypass(alert_settings: AlertSettings) -> None:
    alert_settings.escalations_bypass_dnd = False
    policy = AlertPolicy(alert_settings, UTC)
    policy.set_dnd(at(minutes=30))
    assert policy.on_alert(esc(), at(1)) == []


def test_policy_escalation_off_means_no_toast(alert_settings: AlertSettings) -> None:
    alert_settings.notify_escalations = False
    policy = AlertPolicy(alert_settings, UTC)
    assert policy.on_alert(esc(), at(0)) == []


def test_policy_escalation_without_text_uses_default_body(policy: AlertPolicy) -> None:
    [toast] = toasts(policy.on_alert(esc(text="", name=""), at(0)))
    assert toast.title == "A customer asks for a human"
    assert toast.body == AlertTexts.ESCALATION_BODY


# --------------------------------------------------------------------------- focus


def test_policy_focused_conversation_never_alerts(policy: AlertPolicy) -> None:
    policy.set_focus("c1")
    assert policy.on_alert(msg("c1"), at(0)) == []
    assert policy.on_alert(esc("c1"), at(1)) == []
    assert toasts(policy.on_alert(msg("c2"), at(2)))[0].key == message_key("c2")


def test_policy_focus_withdraws_and_drops_held_messages(policy: AlertPolicy) -> None:
    policy.on_alert(msg("c1", text="one"), at(0))
    policy.on_alert(msg("c1", text="two"), at(1))
    assert withdrawn(policy.set_focus("c1")) == {message_key("c1")}
    assert policy.next_deadline() is None
    assert policy.set_focus(None) == []


# --------------------------------------------------------------------------- DND and sounds


def test_policy_dnd_drops_messages_and_sounds_not_queued(policy: AlertPolicy) -> None:
    policy.set_dnd(at(minutes=30))
    assert policy.dnd_active(at(1))
    assert policy.on_alert(msg(), at(1)) == []
    assert policy.next_deadline() == at(minutes=30)  # only the end of DND
    assert policy.on_tick(at(minutes=30)) == []
    assert not policy.dnd_active(at(minutes=30))
    assert policy.next_deadline() is None


def test_policy_dnd_start_drops_held_back_toasts(policy: AlertPolicy) -> None:
    policy.on_alert(msg("a"), at(0))
    policy.on_alert(msg("b"), at(0.1))
    policy.set_dnd(at(minutes=60))
    assert policy.on_tick(at(1)) == []
    policy.set_dnd(None)
    assert policy.on_tick(at(2)) == []
    assert not policy.dnd_active(at(2))


def test_policy_sounds_off_mutes_messages_and_escalations(alert_settings: AlertSettings) -> None:
    alert_settings.sounds = False
    policy = AlertPolicy(alert_settings, UTC)
    first = policy.on_alert(msg("a"), at(0))
    second = policy.on_alert(esc("b"), at(0.5))
    assert len(toasts(first)) == len(toasts(second)) == 1
    assert sounds(first + second) == []


def test_policy_messages_off(alert_settings: AlertSettings) -> None:
    alert_settings.notify_messages = False
    policy = AlertPolicy(alert_settings, UTC)
    assert policy.on_alert(msg(), at(0)) == []


def test_policy_update_settings_turning_messages_off_drops_held_toasts(policy: AlertPolicy) -> None:
    policy.on_alert(msg("a"), at(0))
    policy.on_alert(msg("b"), at(0.1))
    policy.update_settings(AlertSettings(notify_messages=False))
    assert not policy.settings.notify_messages
    assert policy.on_tick(at(1)) == []


# --------------------------------------------------------------------------- quiet hours


def quiet(rules: list[QuietHoursRule], tz: timezone = WIB) -> AlertPolicy:
    return AlertPolicy(AlertSettings(quiet_hours=rules), local_tz=tz)


def local(day: int, hour: int, minute: int = 0, tz: timezone = WIB) -> datetime:
    """2025-03-03 is a Monday: day 3 -> Monday, 7 -> Friday, 8 -> Saturday (March 2025)."""
    return datetime(2025, 3, day, hour, minute, tzinfo=tz).astimezone(UTC)


def test_quiet_hours_window_across_midnight_belongs_to_its_start_day() -> None:
    policy = quiet([QuietHoursRule(days=[5], start="22:00", end="07:00")])  # Friday nights
    assert not policy.dnd_active(local(7, 21, 59))
    assert policy.dnd_active(local(7, 22, 0))
    assert policy.dnd_active(local(8, 6, 59))  # Saturday morning, started Friday
    assert not policy.dnd_active(local(8, 7, 0))
    assert not policy.dnd_active(local(8, 23, 0))  # Saturday night: not listed
    assert not policy.dnd_active(local(6, 23, 0))  # Thursday night


def test_quiet_hours_same_day_window_and_24_hours() -> None:
    office = quiet([QuietHoursRule(days=[1], start="09:00", end="17:00")])
    assert office.quiet_hours_active(local(3, 9, 0))
    assert not office.quiet_hours_active(local(3, 17, 0))
    assert not office.quiet_hours_active(local(4, 10, 0))  # Tuesday
    sunday = quiet([QuietHoursRule(days=[7], start="00:00", end="00:00")])
    assert sunday.dnd_active(local(9, 0, 0))
    assert sunday.dnd_active(local(9, 23, 59))
    assert not sunday.dnd_active(local(10, 0, 0))


def test_quiet_hours_use_the_local_zone() -> None:
    policy = quiet([QuietHoursRule(days=[1], start="22:00", end="07:00")])
    # 15:30 UTC Monday is 22:30 in UTC+7.
    assert policy.dnd_active(datetime(2025, 3, 3, 15, 30, tzinfo=UTC))
    assert not quiet(policy.settings.quiet_hours, UTC).dnd_active(datetime(2025, 3, 3, 15, 30, tzinfo=UTC))


def test_quiet_hours_with_dst_zone() -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time-zone database")
    policy = AlertPolicy(
        AlertSettings(quiet_hours=[QuietHoursRule(days=[6], start="22:00", end="07:00")]), berlin
    )
    # Saturday 29 March 2025 22:00 CET (21:00 UTC) to Sunday 07:00 CEST (05:00 UTC).
    assert policy.dnd_active(datetime(2025, 3, 29, 21, 0, tzinfo=UTC))
    assert policy.dnd_active(datetime(2025, 3, 30, 4, 59, tzinfo=UTC))
    assert not policy.dnd_active(datetime(2025, 3, 30, 5, 0, tzinfo=UTC))


def test_quiet_hours_suppress_messages_and_boundary_is_a_deadline() -> None:
    policy = quiet([QuietHoursRule(days=[1], start="22:00", end="07:00")])
    before = local(3, 21, 0)
    assert len(toasts(policy.on_alert(msg(), before))) == 1
    assert policy.next_deadline() == local(3, 22, 0)
    assert policy.on_alert(msg("other"), local(3, 23, 0)) == []
    assert policy.next_deadline() == local(4, 7, 0)


_RULE_TIMES = st.sampled_from(["00:00", "06:30", "07:00", "12:00", "17:45", "22:00", "23:59"])


@settings(max_examples=60, deadline=None)
@given(
    rules=st.lists(
        st.builds(
            QuietHoursRule,
            days=st.lists(st.integers(1, 7), min_size=1, max_size=7, unique=True),
            start=_RULE_TIMES,
            end=_RULE_TIMES,
        ),
        min_size=1,
        max_size=3,
    ),
    steps=st.lists(st.tuples(st.integers(-3 * 24 * 60, 3 * 24 * 60), st.booleans()), min_size=1, max_size=25),
)
def test_quiet_hours_cached_answer_equals_a_fresh_computation(
    rules: list[QuietHoursRule], steps: list[tuple[int, bool]]
) -> None:
    """The cached quiet-hours span gives what a fresh policy computes, whichever way time moves
    and whenever the rules change (new settings drop the cache)."""
    policy = quiet(rules)
    moment = local(3, 12, 0)
    in_force = rules
    for minutes, swap in steps:
        if swap:
            in_force = rules if in_force is not rules else rules[::-1][:1]
            policy.update_settings(AlertSettings(quiet_hours=in_force))
        moment += timedelta(minutes=minutes)
        assert policy.quiet_hours_active(moment) == quiet(in_force).quiet_hours_active(moment)


# --------------------------------------------------------------------------- reminders and tray


def test_policy_reminders_back_off_and_cap() -> None:
    policy = AlertPolicy(
        AlertSettings(reminder_after=5, reminder_backoff=2, reminder_max_interval=30, sla_minutes=1000), UTC
    )
    policy.on_waiting_changed(WaitingCustomer("c1", at(0), customer_name="Ana"), True, at(0))
    fired = []
    for _ in range(5):
        deadline = policy.next_deadline()
        assert deadline is not None
        [toast] = toasts(policy.on_tick(deadline))
        fired.append((deadline - T0) / timedelta(minutes=1))
        assert toast.key == reminder_key("c1")
    assert fired == [5, 15, 35, 65, 95]  # gaps 5, 10, 20, then capped at 30
    assert toast.title == "Ana is still waiting (95 min)"
    assert toast.actions == (ToastAction.TAKE_OVER, ToastAction.OPEN)
    assert toast.urgency is Urgency.CRITICAL  # the escalation's follow-up (issue 14)


def test_policy_late_tick_fires_one_reminder_only(policy: AlertPolicy) -> None:
    policy.on_waiting_changed(WaitingCustomer("c1", at(0)), True, at(0))
    effects = policy.on_tick(at(minutes=300))
    assert [t.title for t in toasts(effects)] == ["A customer is still waiting (300 min)"]
    deadline = policy.next_deadline()
    assert deadline is not None
    assert deadline > at(minutes=300)


def test_policy_taken_customer_withdraws_toasts_and_stops_reminders(policy: AlertPolicy) -> None:
    policy.on_alert(esc("c1"), at(0))  # an escalation starts the reminder schedule by itself
    policy.on_tick(at(minutes=5))
    effects = policy.on_waiting_changed(WaitingCustomer("c1", assigned=True), True, at(minutes=6))
    assert withdrawn(effects) == {escalation_key("c1"), reminder_key("c1")}
    assert policy.next_deadline() is None
    assert policy.tray_level(at(minutes=6)) is TrayLevel.NORMAL


def test_policy_reminders_follow_notify_escalations(alert_settings: AlertSettings) -> None:
    alert_settings.notify_escalations = False
    policy = AlertPolicy(alert_settings, UTC)
    policy.on_waiting_changed(WaitingCustomer("c1", at(0)), True, at(0))
    assert policy.on_tick(at(minutes=60)) == []


def test_policy_reminder_in_dnd_is_skipped_but_schedule_advances(alert_settings: AlertSettings) -> None:
    alert_settings.escalations_bypass_dnd = False  # reminders follow the escalations' DND rule
    policy = AlertPolicy(alert_settings, UTC)
    policy.on_waiting_changed(WaitingCustomer("c1", at(0)), True, at(0))
    policy.set_dnd(at(minutes=6))
    assert policy.on_tick(at(minutes=5)) == []
    assert policy.on_tick(at(minutes=6)) == []
    assert policy.next_deadline() == at(minutes=10)  # the SLA crossing
    assert policy.on_tick(at(minutes=10)) == []
    assert policy.next_deadline() == at(minutes=15)  # second reminder: 5 + 5 * 2


def test_policy_reminder_alert_from_reducer_is_shown(policy: AlertPolicy) -> None:
    effects = policy.on_alert(Alert(AlertKind.REMINDER, "c1", "Ana"), at(0))
    assert [t.key for t in toasts(effects)] == [reminder_key("c1")]


def test_policy_tray_level_and_sla_deadline(policy: AlertPolicy) -> None:
    assert policy.tray_level(at(0)) is TrayLevel.NORMAL
    policy.on_waiting_changed(WaitingCustomer("c1", at(0)), True, at(0))
    assert policy.waiting_count == 1
    assert policy.tray_level(at(minutes=9)) is TrayLevel.WAITING
    assert policy.next_deadline() == at(minutes=5)  # first reminder
    policy.on_tick(at(minutes=5))
    assert policy.next_deadline() == at(minutes=10)  # the SLA crossing
    policy.on_tick(at(minutes=10))
    assert policy.tray_level(at(minutes=10)) is TrayLevel.SLA_BREACHED
    assert policy.next_deadline() == at(minutes=15)  # next reminder, not the past crossing


def test_policy_set_waiting_snapshot_replaces_list(policy: AlertPolicy) -> None:
    policy.on_alert(esc("gone"), at(0))
    effects = policy.set_waiting(
        [WaitingCustomer("new", at(0)), WaitingCustomer("mine", assigned=True)], at(1)
    )
    assert withdrawn(effects) == {escalation_key("gone")}
    assert policy.waiting_count == 1


def test_policy_future_since_is_clamped_to_now(policy: AlertPolicy) -> None:
    policy.on_waiting_changed(WaitingCustomer("c1", at(minutes=60)), True, at(0))
    assert policy.next_deadline() == at(minutes=5)


# --------------------------------------------------------------------------- defensive


def test_policy_customer_text_is_plain_single_line_and_clipped(policy: AlertPolicy) -> None:
    [toast] = toasts(policy.on_alert(msg(text="line1\nline2\t\x07<b>x</b>" + "y" * 500, name=""), at(0)))
    assert toast.title == "A customer · whatsapp"
    assert toast.body.startswith("line1 line2 <b>x</b>")  # markup is escaped by the notifier
    assert "\x07" not in toast.body
    assert len(toast.body) == 200
    assert toast.body.endswith("…")


def test_policy_alert_without_conversation_is_ignored(policy: AlertPolicy) -> None:
    assert policy.on_alert(msg(""), at(0)) == []
    assert policy.on_alert(esc(""), at(0)) == []


def test_policy_clock_going_back_waits_at_most_one_interval(policy: AlertPolicy) -> None:
    policy.on_alert(msg("a"), at(100))
    assert policy.on_alert(msg("b"), at(0)) == []
    assert [t.key for t in toasts(policy.on_tick(at(1)))] == [message_key("b")]


def test_policy_naive_datetimes_are_taken_as_utc(policy: AlertPolicy) -> None:
    policy.set_dnd(datetime(2025, 3, 3, 12, 30))
    assert policy.dnd_until == at(minutes=30)


def test_alert_texts() -> None:
    assert AlertTexts.message_title("Ana", "") == "Ana"
    assert AlertTexts.message_body(2, "") == "2 new messages"
    assert AlertTexts.message_body(1, "") == "New message"
    assert AlertTexts.summary_title(4, any_message=False) == "4 customers are still waiting"
    assert AlertTexts.summary_body([], 4) == ""
    assert AlertTexts.summary_body(["A", "B"], 2) == "A, B"


# --------------------------------------------------------------------------- properties

CONVERSATIONS = ["a", "b", "c", "d", "e"]

operation = st.one_of(
    st.tuples(st.just("msg"), st.sampled_from(CONVERSATIONS)),
    st.tuples(st.just("esc"), st.sampled_from(CONVERSATIONS)),
    st.tuples(st.just("tick"), st.none()),
    st.tuples(st.just("deadline"), st.none()),
    st.tuples(st.just("focus"), st.sampled_from([*CONVERSATIONS, None])),
    st.tuples(st.just("dnd"), st.sampled_from([None, 1.0, 30.0])),
    st.tuples(st.just("take"), st.sampled_from(CONVERSATIONS)),
    st.tuples(st.just("wait"), st.sampled_from(CONVERSATIONS)),
)
steps = st.lists(st.tuples(st.floats(0, 8, allow_nan=False), operation), max_size=60)
policy_settings = st.builds(
    AlertSettings,
    toast_min_interval=st.sampled_from([0.0, 0.5, 1.0, 2.5]),
    coalesce_window=st.sampled_from([0.0, 3.0, 10.0]),
    summary_threshold=st.sampled_from([2, 3, 5]),
    escalations_bypass_dnd=st.booleans(),
    reminder_after=st.sampled_from([0.5, 1.0]),
)


def is_escalation(toast: Toast) -> bool:
    key = ToastKey.parse(toast.key)
    return key is not None and key.kind is ToastKind.ESCALATION


def run_step(policy: AlertPolicy, now: datetime, op: tuple[str, object]) -> tuple[datetime, list[Effect]]:
    kind, arg = op
    if kind == "msg":
        return now, policy.on_alert(msg(str(arg)), now)
    if kind == "esc":
        return now, policy.on_alert(esc(str(arg)), now)
    if kind == "deadline":
        deadline = policy.next_deadline()
        now = max(now, deadline) if deadline is not None else now
        return now, policy.on_tick(now)
    if kind == "focus":
        return now, policy.set_focus(arg if isinstance(arg, str) else None)
    if kind == "dnd":
        policy.set_dnd(now + timedelta(minutes=arg) if isinstance(arg, float) else None)
        return now, []
    if kind == "take":
        return now, policy.on_waiting_changed(WaitingCustomer(str(arg), assigned=True), True, now)
    if kind == "wait":
        return now, policy.on_waiting_changed(WaitingCustomer(str(arg), now), True, now)
    return now, policy.on_tick(now)


@settings(max_examples=300, deadline=None)
@given(alert_settings=policy_settings, script=steps)
def test_policy_property_rate_limit_and_escalations(
    alert_settings: AlertSettings, script: list[tuple[float, tuple[str, object]]]
) -> None:
    policy = AlertPolicy(alert_settings, UTC)
    interval = timedelta(seconds=alert_settings.toast_min_interval)
    now = T0
    last_notify: datetime | None = None
    for delta, op in script:
        now += timedelta(seconds=delta)
        expect_escalation = (
            op[0] == "esc"
            and op[1] != policy.focus
            and (alert_settings.escalations_bypass_dnd or not policy.dnd_active(now))
        )
        now, effects = run_step(policy, now, op)
        escalations = [t for t in toasts(effects) if is_escalation(t)]
        # Every escalation gives exactly one critical toast, its own. (Reminders are critical too
        # since issue 14, being the escalation's follow-up, but they keep the rate limit.)
        assert all(t.urgency is Urgency.CRITICAL for t in escalations)
        if expect_escalation:
            assert [t.key for t in escalations] == [escalation_key(str(op[1]))]
        else:
            assert escalations == []
        for toast in toasts(effects):
            if not is_escalation(toast) and last_notify is not None:
                # Non-escalation toasts keep the interval from the previous toast of any kind.
                assert now - last_notify >= interval or interval == timedelta(0)
            last_notify = now
        if op[0] not in ("focus", "dnd"):  # after on_tick the single-shot timer never spins
            deadline = policy.next_deadline()
            assert deadline is None or deadline > now


@settings(max_examples=200, deadline=None)
@given(
    alert_settings=policy_settings,
    script=st.lists(
        st.tuples(st.floats(0, 3, allow_nan=False), st.sampled_from(CONVERSATIONS)), min_size=1, max_size=40
    ),
)
def test_policy_property_no_message_is_lost(
    alert_settings: AlertSettings, script: list[tuple[float, str]]
) -> None:
    alert_settings.reminder_after = 1440  # keep reminders out of the way
    alert_settings.sla_minutes = 1440
    policy = AlertPolicy(alert_settings, UTC)
    now = T0
    last_message: dict[str, datetime] = {}
    shown: dict[str, datetime] = {}

    def record(effects: list[Effect]) -> None:
        for toast in toasts(effects):
            keys = CONVERSATIONS if toast.key == SUMMARY_KEY else [toast.key.removeprefix("message:")]
            for conv in keys:
                shown[conv] = now

    for delta, conv in script:
        now += timedelta(seconds=delta)
        last_message[conv] = now
        record(policy.on_alert(msg(conv), now))
    for _ in range(100):  # drive the single-shot timer until nothing is held back
        deadline = policy.next_deadline()
        if deadline is None or deadline > now + timedelta(hours=1):
            break
        now = max(now, deadline)
        record(policy.on_tick(now))
    for conv, when in last_message.items():
        assert conv in shown
        assert shown[conv] >= when


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["join", "leave", "take", "tick"]),
            st.integers(min_value=0, max_value=30),  # which customer
            st.integers(min_value=0, max_value=600),  # seconds forward
        ),
        max_size=60,
    )
)
def test_schedule_indexes_agree_with_a_full_scan(steps: list[tuple[str, int, int]]) -> None:
    """The heaps behind next_deadline / tray_level give what scanning every customer would."""
    policy = AlertPolicy(AlertSettings(reminder_after=1, sla_minutes=3, toast_min_interval=0), local_tz=UTC)
    now = T0
    for op, who, forward in steps:
        now += timedelta(seconds=forward)
        conversation = f"c{who}"
        if op == "join":
            policy.on_waiting_changed(WaitingCustomer(conversation, now, False, "N", "web"), True, now)
        elif op == "leave":
            policy.on_waiting_changed(WaitingCustomer(conversation, None, False, "N", "web"), False, now)
        elif op == "take":
            policy.on_waiting_changed(WaitingCustomer(conversation, None, True, "N", "web"), True, now)
        else:
            policy.on_tick(now)
        waiting = policy._waiting  # the full scan is the reference here, not the code under test
        expected_due = min((policy._next_reminder_at(w) for w in waiting.values()), default=None)
        assert policy._next_due() == expected_due
        expected_oldest = min((w.since for w in waiting.values()), default=None)
        assert policy._oldest_since() == expected_oldest
        if expected_oldest is None:
            assert policy.tray_level(now) is TrayLevel.NORMAL


# --------------------------------------------------------------------------- issue 14


def on_screen(effects: list[Effect], screen: set[str] | None = None) -> set[str]:
    """The toast keys on screen after ``effects`` (Notify adds or replaces, Withdraw removes)."""
    screen = set() if screen is None else screen
    for effect in effects:
        if isinstance(effect, Notify):
            screen.add(effect.toast.key)
        elif isinstance(effect, Withdraw):
            screen.discard(effect.key)
    return screen


def drive(policy: AlertPolicy, until: datetime) -> list[Effect]:
    """Fire the single-shot timer until ``until`` (nothing later)."""
    effects: list[Effect] = []
    while (deadline := policy.next_deadline()) is not None and deadline <= until:
        effects += policy.on_tick(deadline)
    return effects


def test_policy_escalation_after_its_message_leaves_one_toast(policy: AlertPolicy) -> None:
    effects = policy.on_alert(msg("c1", text="I want a human"), at(0))
    effects += policy.on_alert(esc("c1", text="I want a human"), at(0.1))
    effects += drive(policy, at(30))
    assert on_screen(effects) == {escalation_key("c1")}


def test_policy_message_of_an_escalation_makes_no_second_toast(policy: AlertPolicy) -> None:
    # The reducer's order for a message that announces human mode: escalation, then message.
    effects = policy.on_alert(esc("c1", text="I want a human"), at(0))
    effects += policy.on_alert(msg("c1", text="I want a human"), at(0))
    effects += drive(policy, at(30))
    assert [t.key for t in toasts(effects)] == [escalation_key("c1")]
    assert toasts(policy.on_alert(msg("c2"), at(31)))[0].key == message_key("c2")  # others still toast


def test_policy_reminder_alert_shows_the_real_waiting_time(policy: AlertPolicy) -> None:
    since = at(minutes=-7, seconds=-47)
    effects = policy.on_alert(Alert(AlertKind.REMINDER, "c1", "Ana", since=since), at(0))
    assert [t.title for t in toasts(effects)] == ["Ana is still waiting (7 min)"]
    assert policy.tray_level(at(0)) is TrayLevel.WAITING
    assert policy.next_deadline() == at(minutes=2, seconds=13)  # the SLA (10 min) from the real start


def test_policy_escalation_alert_schedules_reminders_from_the_real_start(policy: AlertPolicy) -> None:
    policy.on_alert(Alert(AlertKind.ESCALATION, "c1", "Ana", since=at(minutes=-3)), at(0))
    assert policy.next_deadline() == at(minutes=2)  # reminder_after (5 min) from since
    [toast] = toasts(policy.on_tick(at(minutes=2)))
    assert toast.title == "Ana is still waiting (5 min)"


def test_policy_escalation_reminders_pass_dnd_like_the_escalation(policy: AlertPolicy) -> None:
    policy.set_dnd(at(minutes=60))
    policy.on_alert(esc("c1", name="Ana"), at(0))
    effects = policy.on_tick(at(minutes=5))
    [toast] = toasts(effects)
    assert (toast.key, toast.urgency) == (reminder_key("c1"), Urgency.CRITICAL)
    assert sounds(effects) == [SoundName.ESCALATION]
    # A reminder alert from the reducer (first load) passes DND too.
    assert [
        t.key for t in toasts(policy.on_alert(Alert(AlertKind.REMINDER, "c2", "Budi"), at(minutes=6)))
    ] == [reminder_key("c2")]
    # Messages stay quiet.
    assert policy.on_alert(msg("c3"), at(minutes=7)) == []


def test_policy_reminder_summary_is_critical_with_the_escalation_sound(policy: AlertPolicy) -> None:
    for conv in ("a", "b", "c"):
        policy.on_waiting_changed(WaitingCustomer(conv, at(0)), True, at(0))
    effects = policy.on_tick(at(minutes=5))
    [toast] = toasts(effects)
    assert (toast.key, toast.urgency) == (SUMMARY_KEY, Urgency.CRITICAL)
    assert sounds(effects) == [SoundName.ESCALATION]


def test_policy_focus_withdraws_every_toast_of_the_customer(policy: AlertPolicy) -> None:
    policy.on_alert(esc("c1"), at(0))
    policy.on_tick(at(minutes=5))  # a reminder too
    assert withdrawn(policy.set_focus("c1")) == {escalation_key("c1"), reminder_key("c1")}


def test_policy_taken_customer_loses_the_message_toast_too(policy: AlertPolicy) -> None:
    effects = policy.on_alert(msg("c1"), at(0))
    taken = policy.on_waiting_changed(WaitingCustomer("c1", assigned=True), False, at(1))
    assert withdrawn(taken) == {message_key("c1")}
    # Now mine: a new message toasts, and the next flush of the (still assigned) customer keeps it.
    later = policy.on_alert(msg("c1", text="thanks"), at(20))
    assert [t.key for t in toasts(later)] == [message_key("c1")]
    assert policy.on_waiting_changed(WaitingCustomer("c1", assigned=True), False, at(21)) == []
    # Released, then taken again (by a colleague): withdrawn again.
    policy.on_waiting_changed(WaitingCustomer("c1"), False, at(22))
    assert withdrawn(policy.on_waiting_changed(WaitingCustomer("c1", assigned=True), False, at(23))) == {
        message_key("c1")
    }
    assert on_screen(effects + taken + later) == {message_key("c1")}


def test_policy_withdraw_all_clears_the_screen_and_held_toasts(policy: AlertPolicy) -> None:
    effects = policy.on_alert(msg("a"), at(0))
    effects += policy.on_alert(esc("b"), at(0.1))
    effects += policy.on_alert(msg("c"), at(0.2))  # held back by the rate limit
    gone = policy.withdraw_all()
    assert on_screen(effects + gone) == set()
    assert withdrawn(gone) == {message_key("a"), escalation_key("b")}
    assert toasts(drive(policy, at(30))) == []
    assert policy.withdraw_all() == []


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        (message_key("1001/77"), ToastKey(ToastKind.MESSAGE, "1001/77")),
        (escalation_key("a:b"), ToastKey(ToastKind.ESCALATION, "a:b")),
        (reminder_key("x"), ToastKey(ToastKind.REMINDER, "x")),
        (SUMMARY_KEY, ToastKey(ToastKind.SUMMARY)),
        (AI_SUMMARY_KEY, ToastKey(ToastKind.AI_SUMMARY)),
        ("message:", None),
        ("summary:x", None),
        ("bogus:x", None),
        ("", None),
    ],
)
def test_toast_key_round_trip(key: str, parsed: ToastKey | None) -> None:
    assert ToastKey.parse(key) == parsed
    if parsed is not None:
        assert str(parsed) == key


def test_alert_defaults_are_quiet_for_ai_messages() -> None:
    assert AlertSettings().ai_messages is False
    assert AlertSettings.model_validate({"notify_messages": True}).ai_messages is False  # an old file


@pytest.mark.parametrize(
    ("handler", "toasted"),
    [
        (Handler.ME, True),
        (Handler.NOBODY, True),
        (Handler.UNKNOWN, True),
        (Handler.AI, False),
        (Handler.COLLEAGUE, False),
    ],
)
def test_policy_messages_alert_for_mine_and_waiting_by_default(
    policy: AlertPolicy, handler: Handler, toasted: bool
) -> None:
    effects = policy.on_alert(Alert(AlertKind.MESSAGE, "c1", "Ana", "web", "hi", handler=handler), at(0))
    effects += drive(policy, at(600))
    assert bool(toasts(effects)) is toasted


def test_policy_ai_messages_when_on_are_one_summary_a_minute(alert_settings: AlertSettings) -> None:
    alert_settings.ai_messages = True
    policy = AlertPolicy(alert_settings, UTC)

    def ai(conv: str, name: str, seconds: float) -> list[Effect]:
        return policy.on_alert(
            Alert(AlertKind.MESSAGE, conv, name, text="x", handler=Handler.AI), at(seconds)
        )

    assert ai("a", "Ana", 0) == []  # settles first: an escalation may follow at once
    assert policy.next_deadline() == at(2)
    first = drive(policy, at(2))
    [toast] = toasts(first)
    assert (toast.key, toast.urgency, toast.conversation) == (AI_SUMMARY_KEY, Urgency.LOW, "")
    assert toast.title == "1 new message in conversations the AI is handling"
    assert sounds(first) == []  # AI chatter never makes a sound
    assert ai("b", "Budi", 10) == []
    assert ai("a", "Ana", 20) == []
    assert policy.next_deadline() == at(62)
    [later] = toasts(drive(policy, at(120)))
    assert later.title == "2 new messages in conversations the AI is handling"
    assert later.body == "Budi, Ana"
    assert policy.next_deadline() is None


def test_policy_escalation_right_after_an_ai_message_is_the_only_toast(
    alert_settings: AlertSettings,
) -> None:
    # A customer writes (still the AI's: a summary would be due), then asks for a human at
    # once, as both backends do it: one escalation = one toast (issue 14).
    alert_settings.ai_messages = True
    policy = AlertPolicy(alert_settings, UTC)
    ai = Alert(AlertKind.MESSAGE, "c1", "Ana", text="x", handler=Handler.AI)
    assert policy.on_alert(ai, at(0)) == []  # the summary settles first

    effects = policy.on_alert(esc("c1"), at(0.1))

    assert [t.key for t in toasts(effects)] == [escalation_key("c1")]
    assert toasts(drive(policy, at(120))) == []  # the summary had nobody left to name
    # Their next message makes no summary of its own while the critical toast is up.
    assert policy.on_alert(replace(ai, text="hello?"), at(1)) == []
    assert toasts(drive(policy, at(120))) == []


def test_policy_escalation_leaves_the_ai_summary_to_the_others_and_withdraws_it_when_alone(
    alert_settings: AlertSettings,
) -> None:
    alert_settings.ai_messages = True
    policy = AlertPolicy(alert_settings, UTC)

    def ai(conv: str, name: str, seconds: float) -> list[Effect]:
        return policy.on_alert(
            Alert(AlertKind.MESSAGE, conv, name, text="x", handler=Handler.AI), at(seconds)
        )

    ai("a", "Ana", 0)
    [shown] = toasts(drive(policy, at(2)))
    assert shown.body == "Ana"
    ai("b", "Budi", 10)  # held back: a summary a minute
    ai("c", "Cici", 10)
    effects = policy.on_alert(esc("b", name="Budi"), at(20))
    assert AI_SUMMARY_KEY not in withdrawn(effects)  # it names Ana, not Budi
    assert withdrawn(policy.on_alert(esc("a"), at(21))) == {AI_SUMMARY_KEY}  # Ana's summary goes
    [later] = toasts(drive(policy, at(120)))
    assert later.title == "1 new message in conversations the AI is handling"
    assert later.body == "Cici"


def test_manual_dnd_survives_a_restart(alert_settings: AlertSettings) -> None:
    alert_settings.dnd_until = at(minutes=30).isoformat()
    policy = AlertPolicy(alert_settings, UTC)
    assert policy.dnd_until == at(minutes=30)
    assert policy.dnd_active(at(1))
    assert alert_settings.manual_dnd_end() == at(minutes=30)


def test_manual_dnd_forbidden_by_policy(alert_settings: AlertSettings) -> None:
    alert_settings.dnd_until = at(minutes=30).isoformat()
    alert_settings.allow_manual_dnd = False
    policy = AlertPolicy(alert_settings, UTC)
    assert not policy.manual_dnd_allowed
    assert policy.dnd_until is None  # the saved DND is not honoured
    assert policy.set_dnd(at(minutes=60)) is False
    assert not policy.dnd_active(at(1))
    assert policy.set_dnd(None) is True


def test_manual_dnd_ends_when_the_policy_forbids_it(
    policy: AlertPolicy, alert_settings: AlertSettings
) -> None:
    assert policy.set_dnd(at(minutes=60)) is True
    alert_settings.allow_manual_dnd = False
    policy.update_settings(alert_settings)
    assert policy.dnd_until is None
    assert not policy.dnd_active(at(1))


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("", ""),
        ("2025-03-03T12:30:00+07:00", "2025-03-03T05:30:00+00:00"),
        ("2025-03-03T12:30:00", "2025-03-03T12:30:00+00:00"),  # naive: taken as UTC
    ],
)
def test_dnd_until_setting_is_stored_in_utc(raw: str, stored: str) -> None:
    assert AlertSettings(dnd_until=raw).dnd_until == stored


def test_dnd_until_setting_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="dnd_until"):
        AlertSettings(dnd_until="tomorrow")


def test_machine_policy_can_forbid_and_lock_manual_dnd() -> None:
    from tray_agent.core.settings_layers import load_settings

    policy_toml = 'locked = ["alerts.allow_manual_dnd"]\n[alerts]\nallow_manual_dnd = false\n'
    loaded = load_settings(policy_sources=[("machine", policy_toml)], env={})
    assert loaded.problems == []
    assert loaded.settings.alerts.allow_manual_dnd is False
    assert loaded.is_locked("alerts.allow_manual_dnd")
    policy = AlertPolicy(loaded.settings.alerts, UTC)
    assert policy.set_dnd(at(minutes=30)) is False
