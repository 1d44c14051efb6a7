"""The reducer and the Store: one test per rule (explicit datetimes, no clock, no event loop)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from tray_agent.core.effects import Alert, AlertKind, Effect, Handler, RequestResync
from tray_agent.core.events import (
    AgentRef,
    AssignmentAction,
    AssignmentChanged,
    Attachment,
    CommandDiscarded,
    CommandFailed,
    CommandKind,
    CommandQueued,
    CommandRetried,
    CommandSent,
    CommandSucceeded,
    Connected,
    ConnectionChanged,
    ConnectionState,
    ConversationSummary,
    ConversationUpdated,
    Event,
    FailureReason,
    HistoryPage,
    HumanRequested,
    Ignored,
    KeepaliveReceived,
    MessageReceived,
    SenderKind,
    ServerAcked,
    ServerRejected,
    WaitingChanged,
    WaitingListPage,
)
from tray_agent.core.state import (
    IGNORED_KINDS_LIMIT,
    OUTBOUND_LIMIT,
    CommandState,
    Conversation,
    ConversationMap,
    ConversationRead,
    FocusChanged,
    History,
    MessageRecord,
    Refusal,
    SignedOut,
    State,
    Store,
    changed_conversations,
    reduce,
    reduce_messages,
)

T0 = datetime(2026, 3, 21, 8, 0, 0, tzinfo=UTC)
ME = "me-1"
KEY = "1001/77"
OTHER = "1001/88"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(
    events: Iterable[Event], state: State | None = None, *, limit: int = 500
) -> tuple[State, list[Effect]]:
    state = state if state is not None else State()
    effects: list[Effect] = []
    for event in events:
        state, out = reduce(state, event, history_limit=limit)
        effects.extend(out)
    return state, effects


def alerts(effects: Iterable[Effect], kind: AlertKind | None = None) -> list[Alert]:
    return [e for e in effects if isinstance(e, Alert) and (kind is None or e.kind is kind)]


def customer(text: str, t: float, key: str = KEY, **kw: object) -> MessageReceived:
    return MessageReceived(
        conversation=key,
        sender=SenderKind.CUSTOMER,
        text=text,
        sent_at=at(t),
        customer_name=kw.pop("customer_name", "Ann"),  # type: ignore[arg-type]
        channel=kw.pop("channel", "Page A"),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def agent_echo(text: str, t: float, key: str = KEY, agent_id: str = ME, **kw: object) -> MessageReceived:
    return MessageReceived(
        conversation=key,
        sender=SenderKind.AGENT,
        text=text,
        sent_at=at(t),
        agent_id=agent_id,
        **kw,  # type: ignore[arg-type]
    )


def me_connected() -> State:
    state, _ = run([Connected(user_id=ME), customer("hello", 0)])
    return state


def bubbles(state: State, key: str = KEY) -> tuple[MessageRecord, ...]:
    conv = state.conversation(key)
    assert conv is not None
    return conv.messages.records


def summary(key: str, **kw: object) -> ConversationSummary:
    kw.setdefault("customer_name", f"name-{key}")
    return ConversationSummary(conversation=key, **kw)  # type: ignore[arg-type]


def reply_flow(cid: str, text: str, key: str = KEY) -> list[Event]:
    return [
        CommandQueued(command_id=cid, kind=CommandKind.REPLY, conversation=key, text=text),
        CommandSent(command_id=cid, kind=CommandKind.REPLY, conversation=key),
    ]


# --- messages ---------------------------------------------------------------------------------


def test_reduce_customer_message_creates_conversation_with_bubble_unread_and_alert():
    state, effects = run([customer("Halo", 1)])
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.customer_name, conv.channel, conv.last_message, conv.last_message_at) == (
        "Ann",
        "Page A",
        "Halo",
        at(1),
    )
    assert conv.unread == 1
    assert state.unread_total == 1
    assert [r.text for r in conv.messages] == ["Halo"]
    assert effects == [
        Alert(
            kind=AlertKind.MESSAGE,
            conversation=KEY,
            customer_name="Ann",
            channel="Page A",
            text="Halo",
            handler=Handler.AI,  # nobody asked for a human: the AI answers
        )
    ]


def test_reduce_focused_conversation_gets_no_unread_but_still_alerts():
    state, effects = run([FocusChanged(KEY), customer("Halo", 1)])
    assert state.conversation(KEY).unread == 0  # type: ignore[union-attr]
    assert len(alerts(effects, AlertKind.MESSAGE)) == 1


@pytest.mark.parametrize("sender", [SenderKind.AI, SenderKind.BOT, SenderKind.AGENT, SenderKind.SYSTEM])
def test_reduce_non_customer_messages_never_alert_or_count_unread(sender):
    state, effects = run([MessageReceived(conversation=KEY, sender=sender, text="auto", sent_at=at(1))])
    assert [r.text for r in bubbles(state)] == ["auto"]
    assert state.unread_total == 0
    assert alerts(effects) == []


def test_reduce_same_message_id_upserts_instead_of_appending():
    first = MessageReceived(
        conversation="c1", sender=SenderKind.CUSTOMER, text="pic", message_id="m1", sent_at=at(1)
    )
    merged = MessageReceived(
        conversation="c1",
        sender=SenderKind.CUSTOMER,
        text="pic",
        message_id="m1",
        sent_at=at(2),
        attachment=Attachment(url="https://x/1.jpg", kind="image"),
    )
    state, effects = run([first, merged])
    (record,) = bubbles(state, "c1")
    assert record.attachment is not None
    assert record.attachment.url == "https://x/1.jpg"
    assert record.at == at(1)  # the first copy's time stays
    assert len(alerts(effects)) == 1
    assert state.conversation("c1").unread == 1  # type: ignore[union-attr]


def test_reduce_webhook_retry_within_two_seconds_folds_but_later_repeat_does_not():
    state, effects = run([customer("ok", 10), customer("ok", 11.5), customer("ok", 14)])
    assert [r.at for r in bubbles(state)] == [at(10), at(14)]
    assert len(alerts(effects)) == 2
    assert state.conversation(KEY).unread == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(("between", "folded"), [(1, True), (63, True), (64, False)])
def test_reduce_retry_after_other_messages_folds_within_the_scanned_rows(between: int, folded: bool):
    """A webhook retry arriving after other messages still folds, while its first copy is among
    the newest 64 rows (the duplicate scan's window); older copies are not searched."""
    others = [customer(f"other {i}", 10) for i in range(between)]
    state, _ = run([customer("ok", 10), *others, customer("ok", 11)])
    texts = [r.text for r in bubbles(state)]
    assert texts.count("ok") == (1 if folded else 2)


def test_reduce_empty_message_makes_no_bubble_no_alert_but_is_activity():
    empty_bot = MessageReceived(conversation=KEY, sender=SenderKind.BOT, text="", sent_at=at(5))
    state, effects = run([customer("I want a human", 1), empty_bot, customer("", 6)])
    conv = state.conversation(KEY)
    assert conv is not None
    assert [r.text for r in conv.messages] == ["I want a human"]
    assert conv.last_message == "I want a human"
    assert conv.last_message_at == at(6)
    assert len(alerts(effects)) == 1
    assert conv.unread == 1


def test_reduce_empty_message_from_unknown_customer_creates_conversation_silently():
    state, effects = run([customer("", 1, key=OTHER)])
    assert state.conversation(OTHER) is not None
    assert bubbles(state, OTHER) == ()
    assert effects == []


def test_reduce_attachment_only_message_is_a_bubble_and_alerts_with_its_name():
    msg = MessageReceived(
        conversation="c1",
        sender=SenderKind.CUSTOMER,
        text="",
        attachment=Attachment(url="https://x/a.pdf", kind="document", name="a.pdf"),
        message_id="m1",
        sent_at=at(1),
    )
    state, effects = run([msg])
    assert len(bubbles(state, "c1")) == 1
    assert alerts(effects)[0].text == "a.pdf"
    assert state.conversation("c1").last_message == "a.pdf"  # type: ignore[union-attr]


def test_reduce_out_of_order_older_message_does_not_replace_last_message():
    state, _ = run([customer("new", 10), customer("old", 5)])
    assert state.conversation(KEY).last_message == "new"  # type: ignore[union-attr]


@pytest.mark.parametrize("batched", [False, True], ids=["one_by_one", "batched"])
def test_reduce_customer_message_alerts_unless_older_than_the_newest_customer_message(batched):
    # Same second as the newest customer message: news (a burst shares seconds); older: a replay.
    events = [
        customer("first", 10),
        agent_echo("agent in between", 30, agent_id="someone"),
        customer("same second", 10),
        customer("newer", 20),
        customer("same as newest", 20),
        customer("older", 15),
        MessageReceived(conversation=KEY, sender=SenderKind.CUSTOMER, text="undated", sent_at=None),
    ]
    if batched:
        _, effects = reduce_messages(State(), events)
    else:
        _, effects = run(events)
    texts = [a.text for a in alerts(effects, AlertKind.MESSAGE)]
    assert texts == ["first", "same second", "newer", "same as newest", "undated"]


def test_reduce_history_is_bounded_by_history_limit():
    state, _ = run([customer(f"m{i}", i * 10) for i in range(12)], limit=5)
    assert [r.text for r in bubbles(state)] == ["m7", "m8", "m9", "m10", "m11"]


def test_reduce_history_bound_drops_ids_of_trimmed_rows():
    msgs = [
        MessageReceived(
            conversation="c1", sender=SenderKind.CUSTOMER, text=f"t{i}", message_id=f"m{i}", sent_at=at(i)
        )
        for i in range(4)
    ]
    state, _ = run(msgs, limit=2)
    history = state.conversation("c1").messages  # type: ignore[union-attr]
    assert not history.has_id("m0")
    assert history.has_id("m3")


def test_reduce_requires_human_for_unknown_waiting_is_a_missed_escalation():
    msg = customer("still there?", 1, requires_human=True)
    state, effects = run([msg, customer("hello??", 30, requires_human=True)])
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.waiting, conv.waiting_since) == (True, at(1))
    assert len(alerts(effects, AlertKind.ESCALATION)) == 1
    # One escalation = one alert: the message that announced it raises no MESSAGE alert too
    # (issue 14); the next message does.
    assert [a.text for a in alerts(effects, AlertKind.MESSAGE)] == ["hello??"]
    assert len([e for e in effects if isinstance(e, RequestResync)]) == 1


def test_reduce_naive_timestamps_are_read_as_utc():
    naive = MessageReceived(
        conversation=KEY, sender=SenderKind.CUSTOMER, text="a", sent_at=datetime(2026, 3, 21, 8)
    )
    state, _ = run([customer("b", 10), naive])
    assert bubbles(state)[-1].at == T0


# --- my replies and their echoes --------------------------------------------------------------


def test_reduce_reply_queued_shows_pending_bubble_at_once():
    state, _ = run(
        [CommandQueued(command_id="c1", kind=CommandKind.REPLY, conversation=KEY, text="On it")],
        me_connected(),
    )
    own = bubbles(state)[-1]
    assert (own.text, own.sender, own.command_id, own.reply_state, own.agent_id) == (
        "On it",
        SenderKind.AGENT,
        "c1",
        CommandState.QUEUED,
        ME,
    )
    assert own.mine
    assert state.outbound["c1"].state is CommandState.QUEUED
    assert state.conversation(KEY).last_message == "On it"  # type: ignore[union-attr]


def test_reduce_dashboard_ack_then_echo_shows_reply_once():
    events = [
        *reply_flow("c1", "On it"),
        CommandSucceeded(command_id="c1", kind=CommandKind.REPLY, conversation=KEY),
        agent_echo("On it", 3),
    ]
    state, effects = run(events, me_connected())
    own = [r for r in bubbles(state) if r.sender is SenderKind.AGENT]
    assert len(own) == 1
    assert (own[0].reply_state, own[0].echoed, own[0].at) == (CommandState.CONFIRMED, True, at(3))
    assert state.outbound["c1"].state is CommandState.CONFIRMED
    assert alerts(effects) == []


def test_reduce_dashboard_echo_then_ack_shows_reply_once():
    events = [
        *reply_flow("c1", "On it"),
        agent_echo("On it", 3),
        CommandSucceeded(command_id="c1", kind=CommandKind.REPLY, conversation=KEY),
    ]
    state, _ = run(events, me_connected())
    own = [r for r in bubbles(state) if r.sender is SenderKind.AGENT]
    assert len(own) == 1
    assert own[0].reply_state is CommandState.CONFIRMED


def test_reduce_echo_of_same_text_from_another_agent_is_a_separate_bubble():
    state, _ = run([*reply_flow("c1", "ok"), agent_echo("ok", 3, agent_id="someone-else")], me_connected())
    agents = [r for r in bubbles(state) if r.sender is SenderKind.AGENT]
    assert [(r.command_id, r.reply_state) for r in agents] == [("c1", CommandState.SENT), (None, None)]


def test_reduce_two_identical_replies_each_fold_one_echo():
    events = [*reply_flow("c1", "ok"), *reply_flow("c2", "ok"), agent_echo("ok", 3), agent_echo("ok", 4)]
    state, _ = run(events, me_connected())
    agents = [r for r in bubbles(state) if r.sender is SenderKind.AGENT]
    assert len(agents) == 2
    assert all(r.echoed for r in agents)


def test_reduce_org_echo_with_id_before_ack_is_folded_by_the_ack():
    # The echo's sender id is the agent row id, not my JWT sub: it cannot be matched as mine.
    echo = agent_echo("Done", 3, agent_id="agent-row-9", message_id="m9")
    events = [
        *reply_flow("c1", "Done"),
        echo,
        CommandSucceeded(command_id="c1", kind=CommandKind.REPLY, conversation=KEY, message_id="m9"),
    ]
    state, _ = run(events, me_connected())
    agents = [r for r in bubbles(state) if r.sender is SenderKind.AGENT]
    assert len(agents) == 1
    assert (agents[0].command_id, agents[0].message_id, agents[0].at) == ("c1", "m9", at(3))
    assert state.conversation(KEY).messages.has_id("m9")  # type: ignore[union-attr]
    assert state.outbound["c1"].message_id == "m9"


def test_reduce_org_ack_with_id_then_echo_upserts():
    events = [
        *reply_flow("c1", "Done"),
        CommandSucceeded(command_id="c1", kind=CommandKind.REPLY, conversation=KEY, message_id="m9"),
        agent_echo("Done", 3, agent_id="agent-row-9", message_id="m9"),
    ]
    state, effects = run(events, me_connected())
    agents = [r for r in bubbles(state) if r.sender is SenderKind.AGENT]
    assert len(agents) == 1
    assert (agents[0].echoed, agents[0].at) == (True, at(3))
    assert alerts(effects) == []


def _row_says(state: State, text: str, t: float) -> State:
    """A resync row of KEY whose last message is the customer's ``text`` (dashboard: last_seen)."""
    row = summary(KEY, last_message=text, last_message_at=at(t))
    state, _ = run([WaitingListPage(customers=(row,), offset=0)], state)
    return state


def test_reduce_my_echoed_reply_stays_the_last_message_after_a_resync():
    state, _ = run([*reply_flow("r1", "my reply"), agent_echo("my reply", 5)], me_connected())
    state = _row_says(state, "hello", 0)
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.last_message, conv.last_message_at) == ("my reply", at(5))


def test_reduce_my_queued_reply_is_the_last_message_even_when_the_clock_lags():
    state = _row_says(me_connected(), "newer, from the list", 60)  # the reducer's clock is still at 0
    state, _ = run(reply_flow("r1", "my reply"), state)
    state = _row_says(state, "newer, from the list", 60)  # the same row again at the next resync
    conv = state.conversation(KEY)
    assert conv is not None
    assert conv.last_message == "my reply"
    assert [b.text for b in bubbles(state)][-1] == "my reply"


def test_reduce_reply_failure_marks_bubble_and_outbound():
    events = [
        *reply_flow("c1", "hi"),
        CommandFailed(
            command_id="c1",
            kind=CommandKind.REPLY,
            conversation=KEY,
            reason=FailureReason.ALREADY_ASSIGNED,
            text="Customer is already assigned to ",
        ),
    ]
    state, _ = run(events, me_connected())
    own = bubbles(state)[-1]
    assert (own.reply_state, own.error) == (CommandState.FAILED, "Customer is already assigned to ")
    cmd = state.outbound["c1"]
    assert (cmd.state, cmd.reason, cmd.error) == (
        CommandState.FAILED,
        FailureReason.ALREADY_ASSIGNED,
        "Customer is already assigned to ",
    )


def test_reduce_reply_unconfirmed_reason_gives_unconfirmed_state():
    events = [
        *reply_flow("c1", "hi"),
        CommandFailed(
            command_id="c1", kind=CommandKind.REPLY, conversation=KEY, reason=FailureReason.UNCONFIRMED
        ),
    ]
    state, _ = run(events, me_connected())
    assert bubbles(state)[-1].reply_state is CommandState.UNCONFIRMED
    assert state.outbound["c1"].state is CommandState.UNCONFIRMED


def test_reduce_resent_unconfirmed_reply_reuses_its_bubble_until_confirmed():
    unconfirmed = CommandFailed(
        command_id="c1", kind=CommandKind.REPLY, conversation=KEY, reason=FailureReason.UNCONFIRMED
    )
    state, _ = run([*reply_flow("c1", "hi"), unconfirmed], me_connected())
    count = len(bubbles(state))
    # ResendCommand: the client queues the same command id again.
    state, _ = run(
        [CommandQueued(command_id="c1", kind=CommandKind.REPLY, conversation=KEY, text="hi")], state
    )
    assert len(bubbles(state)) == count
    assert (bubbles(state)[-1].reply_state, bubbles(state)[-1].error) == (CommandState.QUEUED, "")
    assert state.outbound["c1"].state is CommandState.QUEUED
    state, _ = run([CommandSent(command_id="c1", kind=CommandKind.REPLY, conversation=KEY)], state)
    assert bubbles(state)[-1].reply_state is CommandState.SENT
    state, _ = run([CommandSucceeded(command_id="c1", kind=CommandKind.REPLY, conversation=KEY)], state)
    assert [b.reply_state for b in bubbles(state) if b.command_id == "c1"] == [CommandState.CONFIRMED]
    assert state.outbound["c1"].state is CommandState.CONFIRMED


def test_reduce_signed_out_forgets_everything_and_asks_for_a_sign_in():
    state, _ = run([*reply_flow("c1", "hi"), FocusChanged(KEY)], me_connected())
    assert state.conversations
    assert state.outbound
    state, effects = run([SignedOut()], state)
    assert effects == []
    assert (state.conversations, dict(state.outbound), state.focused) == ({}, {}, None)
    assert (state.unread_total, state.waiting_keys, state.initial_load_done) == (0, frozenset(), False)
    assert state.connection.state is ConnectionState.AUTH_REQUIRED
    assert state.connection.user_id == ""


def test_reduce_late_timeout_after_echo_keeps_reply_confirmed():
    events = [
        *reply_flow("c1", "hi"),
        agent_echo("hi", 3),
        CommandFailed(
            command_id="c1", kind=CommandKind.REPLY, conversation=KEY, reason=FailureReason.TIMEOUT
        ),
    ]
    state, _ = run(events, me_connected())
    assert bubbles(state)[-1].reply_state is CommandState.CONFIRMED
    assert state.outbound["c1"].state is CommandState.CONFIRMED


def test_reduce_echo_of_timed_out_reply_confirms_it():
    events = [
        *reply_flow("c1", "hi"),
        CommandFailed(
            command_id="c1", kind=CommandKind.REPLY, conversation=KEY, reason=FailureReason.TIMEOUT
        ),
        agent_echo("hi", 12),
    ]
    state, _ = run(events, me_connected())
    agents = [r for r in bubbles(state) if r.sender is SenderKind.AGENT]
    assert [(r.reply_state, r.echoed) for r in agents] == [(CommandState.CONFIRMED, True)]


def test_reduce_untracked_commands_change_nothing():
    state = me_connected()
    new, effects = run(
        [
            CommandQueued(command_id="p1", kind=CommandKind.PING),
            CommandSent(command_id="p1", kind=CommandKind.PING),
        ],
        state,
    )
    assert new is state  # no new snapshot for an event that changes nothing
    assert effects == []


def test_reduce_outbound_commands_are_bounded():
    events: list[Event] = []
    for i in range(OUTBOUND_LIMIT + 50):
        events.append(CommandQueued(command_id=f"c{i}", kind=CommandKind.RELEASE, conversation=KEY))
        events.append(CommandSucceeded(command_id=f"c{i}", kind=CommandKind.RELEASE, conversation=KEY))
    events.append(CommandQueued(command_id="last", kind=CommandKind.RELEASE, conversation=KEY))
    state, _ = run(events, me_connected())
    assert len(state.outbound) == OUTBOUND_LIMIT
    assert "last" in state.outbound
    assert "c0" not in state.outbound


# --- escalations and waiting ------------------------------------------------------------------


def test_reduce_human_requested_then_stop_status_is_one_escalation():
    events = [
        HumanRequested(conversation=KEY, customer_name="Ann", text="a human please", at=at(5)),
        WaitingChanged(conversation=KEY, waiting=True, customer=summary(KEY, waiting=True), at=at(5)),
    ]
    state, effects = run(events)
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.waiting, conv.waiting_since, conv.urgent) == (True, at(5), True)
    assert alerts(effects) == [
        Alert(
            kind=AlertKind.ESCALATION,
            conversation=KEY,
            customer_name="Ann",
            text="a human please",
            since=at(5),
            handler=Handler.NOBODY,
        )
    ]
    assert state.waiting_count == 1


def test_reduce_stop_status_then_human_requested_is_one_escalation():
    events = [
        WaitingChanged(conversation=KEY, waiting=True, at=at(5)),
        HumanRequested(conversation=KEY, customer_name="Ann", text="a human please", at=at(6)),
    ]
    state, effects = run(events)
    assert len(alerts(effects, AlertKind.ESCALATION)) == 1
    assert state.conversation(KEY).waiting_since == at(5)  # type: ignore[union-attr]


def test_reduce_repeated_human_requests_in_one_episode_alert_once():
    events = [HumanRequested(conversation="c1", text=f"msg {i}", at=at(i)) for i in range(3)]
    _, effects = run(events)
    assert len(alerts(effects, AlertKind.ESCALATION)) == 1


def test_reduce_request_after_release_is_a_new_escalation():
    events = [
        HumanRequested(conversation=KEY, at=at(1)),
        WaitingChanged(conversation=KEY, waiting=False, at=at(2)),
        HumanRequested(conversation=KEY, at=at(3)),
    ]
    state, effects = run(events)
    assert len(alerts(effects, AlertKind.ESCALATION)) == 2
    assert state.conversation(KEY).waiting_since == at(3)  # type: ignore[union-attr]


def test_reduce_request_after_being_handled_is_a_new_escalation():
    events = [
        HumanRequested(conversation=KEY, at=at(1)),
        AssignmentChanged(
            conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef("a2"), is_me=False
        ),
        HumanRequested(conversation=KEY, at=at(3)),
    ]
    _, effects = run(events)
    assert len(alerts(effects, AlertKind.ESCALATION)) == 2


def test_reduce_waiting_changed_false_stops_waiting():
    state, effects = run(
        [HumanRequested(conversation=KEY, at=at(1)), WaitingChanged(conversation=KEY, waiting=False)]
    )
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.waiting, conv.waiting_since) == (False, None)
    assert len(alerts(effects)) == 1
    assert state.waiting_list() == ()
    assert state.waiting_count == 0


def test_reduce_waiting_false_for_unknown_customer_creates_nothing():
    state, effects = run([WaitingChanged(conversation=KEY, waiting=False)])
    assert state.conversation(KEY) is None
    assert effects == []


def test_reduce_waiting_for_already_assigned_customer_does_not_alert():
    events = [
        AssignmentChanged(
            conversation=KEY,
            action=AssignmentAction.ASSIGNED,
            agent=AgentRef("a2"),
            is_me=False,
            customer=summary(KEY),
        ),
        WaitingChanged(conversation=KEY, waiting=True, at=at(2)),
    ]
    state, effects = run(events)
    assert alerts(effects) == []
    assert state.waiting_list() == ()  # taken: not waiting for anyone (issue 14)
    assert state.waiting_count == 0


# --- assignment -------------------------------------------------------------------------------


def test_reduce_assignment_uses_frame_is_me():
    state, _ = run(
        [
            AssignmentChanged(
                conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef("x"), is_me=True
            )
        ],
        me_connected(),
    )
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.assigned, conv.assigned_to_me, conv.agent) == (True, True, AgentRef("x"))
    assert [c.key for c in state.mine()] == [KEY]


@pytest.mark.parametrize(("agent_id", "mine"), [(ME, True), ("other", False)])
def test_reduce_assignment_compares_agent_id_with_my_user_id(agent_id, mine):
    state, _ = run(
        [AssignmentChanged(conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef(agent_id))],
        me_connected(),
    )
    assert state.conversation(KEY).assigned_to_me is mine  # type: ignore[union-attr]


@pytest.mark.parametrize("who", [None, AgentRef(""), AgentRef("", name="")])
def test_reduce_assignment_that_does_not_say_who_keeps_a_known_mine(who):
    """A broadcast with no agent id and no is_me (dashboard ``customer_assignment_updated``, PROTOCOL.md)."""
    state, _ = run(
        [
            AssignmentChanged(
                conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef(ME), is_me=True
            )
        ],
        me_connected(),
    )
    state, _ = run(
        [AssignmentChanged(conversation=KEY, action=AssignmentAction.ASSIGNED, agent=who, is_me=None)], state
    )
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.assigned, conv.assigned_to_me, conv.agent) == (True, True, AgentRef(ME))
    assert [c.key for c in state.mine()] == [KEY]


def test_reduce_assignment_that_does_not_say_who_keeps_a_pending_take_over():
    take = CommandQueued(command_id="t1", kind=CommandKind.TAKE_OVER, conversation=KEY)
    state, _ = run([take], me_connected())
    state, _ = run(
        [AssignmentChanged(conversation=KEY, action=AssignmentAction.ASSIGNED, agent=None, is_me=None)], state
    )
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.assigned, conv.assigned_to_me, conv.pending_takeover) == (True, True, "t1")


def test_reduce_assignment_that_does_not_say_who_of_an_unassigned_customer_is_assigned_unknown():
    state, _ = run(
        [AssignmentChanged(conversation=KEY, action=AssignmentAction.ASSIGNED, agent=None, is_me=None)],
        me_connected(),
    )
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.assigned, conv.assigned_to_me, conv.agent) == (True, False, None)


def test_reduce_taking_a_waiting_customer_clears_urgency_and_leaves_the_waiting_list():
    events = [
        HumanRequested(conversation=KEY, at=at(1)),
        AssignmentChanged(
            conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef("a2", name="Bo")
        ),
    ]
    state, _ = run(events, me_connected())
    assert state.waiting_count == 0
    assert state.oldest_waiting_since is None
    # Issue 14: a taken customer leaves "Waiting" at once (they used to stay listed).
    assert state.waiting_list() == ()
    assert state.waiting_keys == frozenset()
    row = state.conversation(KEY)
    assert row is not None
    assert (row.agent, row.urgent) == (AgentRef("a2", name="Bo"), False)


def test_reduce_unassignment_makes_waiting_customer_urgent_again():
    events = [
        HumanRequested(conversation=KEY, at=at(1)),
        AssignmentChanged(conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef(ME), is_me=True),
        AssignmentChanged(conversation=KEY, action=AssignmentAction.UNASSIGNED),
    ]
    state, _ = run(events, me_connected())
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.assigned, conv.agent, conv.assigned_to_me) == (False, None, False)
    assert state.waiting_count == 1
    assert state.mine() == ()


def test_reduce_assignment_of_unknown_customer_without_summary_requests_one_resync():
    events = [
        AssignmentChanged(conversation="x/1", action=AssignmentAction.ASSIGNED, agent=AgentRef("a")),
        AssignmentChanged(conversation="x/2", action=AssignmentAction.ASSIGNED, agent=AgentRef("a")),
    ]
    state, effects = run(events)
    assert len([e for e in effects if isinstance(e, RequestResync)]) == 1
    assert state.resync_requested
    state, _ = run([WaitingListPage(customers=(), offset=0)], state)
    assert not state.resync_requested


def test_reduce_release_of_unknown_customer_is_ignored():
    state, effects = run([AssignmentChanged(conversation="x/1", action=AssignmentAction.UNASSIGNED)])
    assert state.conversation("x/1") is None
    assert effects == []


def test_reduce_duplicate_assignment_keeps_conversation_identity():
    change = AssignmentChanged(
        conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef(ME), is_me=True
    )
    first, _ = run([change], me_connected())
    second, _ = run([change], first)
    assert second.conversation(KEY) is first.conversation(KEY)
    assert second.conversations is first.conversations


# --- take-over, optimistic --------------------------------------------------------------------


def take_over(cid: str = "t1") -> CommandQueued:
    return CommandQueued(command_id=cid, kind=CommandKind.TAKE_OVER, conversation=KEY)


def test_reduce_take_over_is_optimistic_and_confirmed_by_success():
    state, _ = run([HumanRequested(conversation=KEY, at=at(1)), take_over()], me_connected())
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.assigned_to_me, conv.pending_takeover, state.waiting_count) == (True, "t1", 0)
    state, _ = run([CommandSucceeded(command_id="t1", kind=CommandKind.TAKE_OVER, conversation=KEY)], state)
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.assigned_to_me, conv.pending_takeover) == (True, None)
    assert state.outbound["t1"].state is CommandState.CONFIRMED


def test_reduce_take_over_already_assigned_rolls_back_to_somebody_else():
    events = [
        HumanRequested(conversation=KEY, at=at(1)),
        take_over(),
        CommandFailed(
            command_id="t1",
            kind=CommandKind.TAKE_OVER,
            conversation=KEY,
            reason=FailureReason.ALREADY_ASSIGNED,
        ),
    ]
    state, _ = run(events, me_connected())
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.assigned, conv.assigned_to_me, conv.pending_takeover) == (True, False, None)
    assert state.mine() == ()


def test_reduce_take_over_timeout_restores_previous_assignment():
    events = [
        HumanRequested(conversation=KEY, at=at(1)),
        take_over(),
        CommandFailed(
            command_id="t1", kind=CommandKind.TAKE_OVER, conversation=KEY, reason=FailureReason.TIMEOUT
        ),
    ]
    state, _ = run(events, me_connected())
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.assigned, conv.assigned_to_me, conv.agent) == (False, False, None)
    assert state.waiting_count == 1


def test_reduce_server_assignment_wins_over_optimistic_take_over():
    events = [
        take_over(),
        AssignmentChanged(
            conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef("a2"), is_me=False
        ),
        CommandFailed(
            command_id="t1",
            kind=CommandKind.TAKE_OVER,
            conversation=KEY,
            reason=FailureReason.ALREADY_ASSIGNED,
        ),
    ]
    state, _ = run(events, me_connected())
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.agent, conv.assigned_to_me) == (AgentRef("a2"), False)


def test_reduce_release_success_unassigns_me():
    events = [
        AssignmentChanged(conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef(ME), is_me=True),
        CommandQueued(command_id="r1", kind=CommandKind.RELEASE, conversation=KEY),
        CommandSucceeded(command_id="r1", kind=CommandKind.RELEASE, conversation=KEY),
    ]
    state, _ = run(events, me_connected())
    assert state.conversation(KEY).assigned is False  # type: ignore[union-attr]


# --- resync -----------------------------------------------------------------------------------


def waiting_row(key: str, since: float, **kw: object) -> ConversationSummary:
    return summary(key, waiting=True, waiting_since=at(since), **kw)


def test_reduce_first_resync_shows_everyone_but_raises_one_reminder():
    pages = [
        WaitingListPage(
            customers=(waiting_row("a/1", 30), waiting_row("a/2", 10)), offset=0, total=3, has_more=True
        ),
        WaitingListPage(
            customers=(waiting_row("a/3", 5, assigned=True, agent=AgentRef("x")),),
            offset=2,
            total=3,
            has_more=False,
        ),
    ]
    state, effects = run(pages)
    assert [c.key for c in state.waiting_list()] == ["a/2", "a/1"]  # a/3 is taken
    assert state.waiting_count == 2
    assert state.oldest_waiting_since == at(10)
    assert effects == [
        Alert(
            kind=AlertKind.REMINDER,
            conversation="a/2",
            customer_name="name-a/2",
            since=at(10),
            handler=Handler.NOBODY,
        )
    ]
    assert state.initial_load_done
    assert state.resync is None


def test_reduce_first_resync_with_nobody_waiting_is_silent():
    state, effects = run([WaitingListPage(customers=(), offset=0)])
    assert effects == []
    assert state.initial_load_done


def test_reduce_later_resync_alerts_newly_waiting_and_drops_the_handled():
    state, _ = run([WaitingListPage(customers=(waiting_row("a/1", 1), waiting_row("a/2", 2)), offset=0)])
    state, _ = run([customer("hi", 3, key="a/1")], state)
    state, effects = run(
        [
            WaitingListPage(
                customers=(
                    waiting_row("a/1", 1, assigned=True, agent=AgentRef(ME)),
                    waiting_row("a/3", 50),
                    waiting_row("a/4", 51, assigned=True, agent=AgentRef("x")),
                ),
                offset=0,
            )
        ],
        state,
    )
    assert [(a.kind, a.conversation) for a in alerts(effects)] == [(AlertKind.ESCALATION, "a/3")]
    assert state.conversation("a/2").waiting is False  # type: ignore[union-attr]
    a1 = state.conversation("a/1")
    assert a1 is not None
    assert [r.text for r in a1.messages] == ["hi"]  # local history kept
    assert a1.unread == 1  # local unread kept
    assert (a1.assigned, a1.agent) == (True, AgentRef(ME))  # server truth for assignment
    assert {c.key for c in state.waiting_list()} == {"a/3"}  # a/1 and a/4 are taken


def test_reduce_resync_with_a_gap_drops_nobody():
    state, _ = run([WaitingListPage(customers=(waiting_row("a/1", 1), waiting_row("a/2", 2)), offset=0)])
    state, _ = run(
        [
            WaitingListPage(customers=(waiting_row("a/1", 1),), offset=0, has_more=True),
            WaitingListPage(customers=(waiting_row("a/5", 1),), offset=5, has_more=False),
        ],
        state,
    )
    assert state.conversation("a/2").waiting is True  # type: ignore[union-attr]


def test_reduce_partial_list_drops_nobody():
    state, _ = run([WaitingListPage(customers=(waiting_row("a/1", 1), waiting_row("a/2", 2)), offset=0)])
    state, _ = run(
        [WaitingListPage(customers=(waiting_row("a/1", 1),), offset=0, complete_list=False)], state
    )
    assert state.conversation("a/2").waiting is True  # type: ignore[union-attr]


def test_reduce_live_escalation_during_resync_survives_its_end():
    state, _ = run([WaitingListPage(customers=(), offset=0)])
    state, effects = run(
        [
            CommandQueued(command_id="r", kind=CommandKind.REFRESH),
            HumanRequested(conversation="a/9", at=at(100)),  # after the server built the page
            WaitingListPage(customers=(waiting_row("a/1", 1),), offset=0, has_more=True),
            WaitingListPage(customers=(), offset=1, has_more=False),
        ],
        state,
    )
    assert state.conversation("a/9").waiting is True  # type: ignore[union-attr]
    assert state.waiting_count == 2
    assert [a.conversation for a in alerts(effects, AlertKind.ESCALATION)] == ["a/9", "a/1"]


def test_a_list_row_read_before_a_live_assignment_does_not_undo_it():
    # Found by the fault tests: a REST list (the dashboard's customer list after connecting, the
    # org resync) read before my reply assigned the customer arrived after the assignment's
    # broadcast and put the customer back in Waiting, untaken.
    state, _ = run([WaitingListPage(customers=(waiting_row(KEY, 1), waiting_row(OTHER, 1)))], me_connected())
    taken = AssignmentChanged(
        conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef(ME), is_me=True
    )
    state, effects = run([taken], state)
    stale = (
        waiting_row(KEY, 1, customer_name="Budi", last_message="hi", last_message_at=at(5)),
        waiting_row(OTHER, 1),
    )
    for complete in (False, True):
        later, effects = run(
            [WaitingListPage(customers=stale, complete_list=complete, changed_live=frozenset({KEY}))], state
        )
        conv = later.conversation(KEY)
        assert conv is not None
        assert (conv.assigned, conv.assigned_to_me, conv.waiting) == (True, True, True)
        assert (conv.customer_name, conv.last_message) == ("Budi", "hi")  # the rest of the row applies
        assert later.waiting_keys == frozenset({OTHER})
        assert KEY in later.mine_keys
        assert alerts(effects) == []
    # Without the mark the row is the newer truth and applies, as before.
    later, _ = run([WaitingListPage(customers=stale, complete_list=False)], state)
    assert later.waiting_keys == frozenset({KEY, OTHER})


def test_a_resync_does_not_drop_what_changed_live_while_its_pages_were_read():
    state, _ = run([WaitingListPage(customers=(waiting_row(OTHER, 1),))], me_connected())
    state, _ = run([HumanRequested(conversation=KEY, at=at(3))], state)
    taken = AssignmentChanged(
        conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef(ME), is_me=True
    )
    state, _ = run([taken], state)
    # The pages were read before both changes: KEY is on neither (not waiting then, held by nobody).
    pages = [
        WaitingListPage(
            customers=(waiting_row(OTHER, 1),),
            has_more=True,
            complete_assignments=True,
            changed_live=frozenset({KEY}),
        ),
        WaitingListPage(customers=(), offset=1, complete_assignments=True),
    ]
    state, _ = run(pages, state)
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.waiting, conv.assigned_to_me) == (True, True)
    assert KEY in state.mine_keys
    # A later resync whose pages were read after the change is the truth again.
    state, _ = run([WaitingListPage(customers=(waiting_row(OTHER, 1),), complete_assignments=True)], state)
    assert KEY not in state.mine_keys


def test_reduce_resync_row_resolved_is_not_waiting():
    state, _ = run([HumanRequested(conversation="c1", at=at(1))])
    state, _ = run(
        [WaitingListPage(customers=(summary("c1", waiting=True, status="resolved"),), offset=0)], state
    )
    conv = state.conversation("c1")
    assert conv is not None
    assert (conv.waiting, conv.status) == (False, "resolved")


# --- conversation updates and history ---------------------------------------------------------


def test_reduce_chat_resolved_stops_waiting_and_sets_status():
    events = [
        HumanRequested(conversation="c1", at=at(1)),
        ConversationUpdated(
            conversation="c1", update_type="chat_resolved", fields={"chat_id": "c1", "handled_by": "human"}
        ),
    ]
    state, _ = run(events)
    conv = state.conversation("c1")
    assert conv is not None
    assert (conv.waiting, conv.status, conv.handled_by) == (False, "resolved", "human")


def test_reduce_ticket_update_keeps_chat_status_apart():
    events = [
        customer("hi", 1, key="c1"),
        ConversationUpdated(conversation="c1", update_type="chat_created", fields={"status": "open"}),
        ConversationUpdated(
            conversation="c1",
            update_type="ticket_created",
            fields={"chat_id": "c1", "ticket_number": 17, "status": "in_progress", "priority": "high"},
        ),
    ]
    state, _ = run(events)
    conv = state.conversation("c1")
    assert conv is not None
    assert (conv.status, conv.ticket_number, conv.ticket_status) == ("open", "17", "in_progress")


def test_reduce_update_of_unknown_chat_creates_only_on_chat_created():
    state, _ = run(
        [
            ConversationUpdated(conversation="c1", update_type="ticket_updated", fields={"status": "closed"}),
            ConversationUpdated(
                conversation="c2",
                update_type="chat_created",
                fields={"status": "open", "channel": "whatsapp"},
            ),
        ]
    )
    assert state.conversation("c1") is None
    assert state.conversation("c2").channel == "whatsapp"  # type: ignore[union-attr]


def hist(
    text: str, t: float, sender: SenderKind = SenderKind.CUSTOMER, mid: str | None = None
) -> MessageReceived:
    return MessageReceived(
        conversation=KEY, sender=sender, text=text, sent_at=at(t), message_id=mid, customer_name="Ann"
    )


def test_reduce_history_page_prepends_older_messages_without_alerts():
    state, _ = run([customer("now", 100)])
    state, effects = run(
        [HistoryPage(conversation=KEY, messages=(hist("old1", 1), hist("old2", 2, SenderKind.BOT)))], state
    )
    assert [r.text for r in bubbles(state)] == ["old1", "old2", "now"]
    assert effects == []
    assert state.conversation(KEY).unread == 1  # type: ignore[union-attr]


def test_reduce_history_page_records_whether_older_messages_exist():
    state, _ = run([customer("now", 100)])
    assert not state.conversation(KEY).history_complete  # type: ignore[union-attr]
    state, _ = run([HistoryPage(conversation=KEY, messages=(hist("old", 1),), has_more=True)], state)
    assert not state.conversation(KEY).history_complete  # type: ignore[union-attr]
    state, _ = run([HistoryPage(conversation=KEY, messages=(), has_more=False)], state)
    assert state.conversation(KEY).history_complete  # type: ignore[union-attr]


def test_reduce_history_page_dedupes_by_id_and_by_text_and_time():
    state, _ = run(
        [
            MessageReceived(
                conversation=KEY, sender=SenderKind.CUSTOMER, text="with id", message_id="m1", sent_at=at(10)
            ),
            customer("no id", 20),
        ]
    )
    page = HistoryPage(
        conversation=KEY,
        messages=(hist("older", 5), hist("with id", 10, mid="m1"), hist("no id", 21), hist("no id", 21)),
    )
    state, _ = run([page], state)
    assert [r.text for r in bubbles(state)] == ["older", "with id", "no id"]


def test_reduce_history_page_respects_the_bound():
    state, _ = run([customer(f"live{i}", 100 + i) for i in range(3)], limit=4)
    state, _ = run(
        [HistoryPage(conversation=KEY, messages=tuple(hist(f"h{i}", i) for i in range(5)))], state, limit=4
    )
    assert [r.text for r in bubbles(state)] == ["h4", "live0", "live1", "live2"]


def test_reduce_history_page_for_unknown_conversation_creates_it():
    state, _ = run([HistoryPage(conversation=KEY, messages=(hist("a", 1), hist("", 2)))])
    conv = state.conversation(KEY)
    assert conv is not None
    assert ([r.text for r in conv.messages], conv.customer_name, conv.last_message) == (["a"], "Ann", "a")


# --- connection, counters, focus --------------------------------------------------------------


def test_reduce_connection_changed_connected_sets_last_synced():
    state, _ = run(
        [
            ConnectionChanged(state=ConnectionState.RESYNCING, detail="resyncing", at=at(1)),
            ConnectionChanged(state=ConnectionState.CONNECTED, at=at(2)),
            ConnectionChanged(
                state=ConnectionState.RECONNECTING, detail="server unreachable", retry_in=5.0, at=at(3)
            ),
        ]
    )
    conn = state.connection
    assert (conn.state, conn.detail, conn.retry_in, conn.last_synced) == (
        ConnectionState.RECONNECTING,
        "server unreachable",
        5.0,
        at(2),
    )


def test_reduce_connected_without_time_uses_newest_server_time():
    state, _ = run([customer("x", 7), ConnectionChanged(state=ConnectionState.CONNECTED)])
    assert state.connection.last_synced == at(7)


def test_reduce_connected_sets_user_id_and_count_and_keeps_known_id():
    state, _ = run([Connected(user_id=ME, connection_count=2), Connected(user_id="", connection_count=3)])
    assert (state.connection.user_id, state.connection.connection_count) == (ME, 3)


@pytest.mark.parametrize(
    "event",
    [
        KeepaliveReceived(kind="pong"),
        ServerAcked(kind=CommandKind.REPLY, conversation=KEY),
        ServerRejected(reason=FailureReason.NOT_FOUND, text="Customer not found"),
    ],
)
def test_reduce_keepalive_and_server_acks_return_the_same_state(event):
    state = me_connected()
    new, effects = reduce(state, event)
    assert effects == ()
    assert new is state


def test_reduce_ignored_counts_by_kind_and_stays_bounded():
    events = [Ignored(kind="echo"), Ignored(kind="echo"), Ignored(kind="")]
    events += [Ignored(kind=f"junk{i}") for i in range(IGNORED_KINDS_LIMIT + 10)]
    state, _ = run(events)
    assert state.ignored["echo"] == 2
    assert state.ignored["unknown"] == 1
    assert len(state.ignored) <= IGNORED_KINDS_LIMIT + 1
    assert state.ignored["other"] >= 10


def test_reduce_unknown_event_is_counted_not_raised():
    class Strange(Event):
        pass

    state, effects = run([Event(), Strange()])
    assert effects == []
    assert state.ignored == {"unhandled:Event": 1, "unhandled:Strange": 1}


def test_reduce_focus_marks_read_and_read_clears_unread():
    state, _ = run([customer("a", 1), customer("b", 5, key=OTHER)])
    assert state.unread_total == 2
    state, _ = run([FocusChanged(KEY)], state)
    assert (state.focused, state.conversation(KEY).unread, state.unread_total) == (KEY, 0, 1)  # type: ignore[union-attr]
    state, _ = run([ConversationRead(OTHER), FocusChanged(None)], state)
    assert (state.focused, state.unread_total) == (None, 0)


def test_reduce_events_without_conversation_are_counted():
    state, effects = run([MessageReceived(text="x"), HumanRequested(), HistoryPage()])
    assert effects == []
    assert len(state.conversations) == 0
    assert sum(state.ignored.values()) == 3


# --- structure and read API -------------------------------------------------------------------


def test_reduce_shares_untouched_conversations_and_reports_changed_keys():
    state, _ = run([customer("a", 1), customer("b", 1, key=OTHER)])
    new, _ = reduce(state, customer("c", 2))
    assert new.conversation(OTHER) is state.conversation(OTHER)
    assert new.conversation(KEY) is not state.conversation(KEY)
    assert changed_conversations(state.conversations, new.conversations) == {KEY}
    assert new.connection is state.connection


def test_state_mine_is_most_recent_first():
    events = [
        customer("x", 5, key="a/1"),
        customer("y", 9, key="a/2"),
        AssignmentChanged(conversation="a/1", action=AssignmentAction.ASSIGNED, is_me=True),
        AssignmentChanged(conversation="a/2", action=AssignmentAction.ASSIGNED, is_me=True),
    ]
    state, _ = run(events, me_connected())
    assert [c.key for c in state.mine()] == ["a/2", "a/1"]


def test_conversation_map_behaves_as_mapping():
    convs = ConversationMap([Conversation(key=f"k{i}") for i in range(300)])
    assert len(convs) == 300
    assert set(convs) == {f"k{i}" for i in range(300)}
    updated = convs.set_many({"k1": Conversation(key="k1", unread=2), "new": Conversation(key="new")})
    assert (len(convs), len(updated)) == (300, 301)
    assert convs["k1"].unread == 0
    assert updated["k1"].unread == 2
    assert "new" in updated
    assert "new" not in convs
    assert changed_conversations(convs, updated) == {"k1", "new"}


def test_history_sequence_api():
    history = History(
        [MessageRecord(SenderKind.CUSTOMER, "a", message_id="m1"), MessageRecord(SenderKind.AI, "b")]
    )
    assert len(history) == 2
    assert history[0].text == "a"
    assert [r.text for r in reversed(history)] == ["b", "a"]
    assert history.index_of_id("m1") == 0
    assert history.index_of_id("zz") == -1
    assert history == History(history.records)
    assert history.removed(0).has_id("m1") is False
    assert history.trimmed(1).records == (history[1],)


# --- Store ------------------------------------------------------------------------------------


def test_store_dispatch_returns_effects_and_notifies_with_old_and_new():
    store = Store(history_limit=10)
    seen: list[tuple[State, State]] = []
    store.subscribe(lambda old, new: seen.append((old, new)))
    before = store.state
    effects = store.dispatch(customer("hi", 1))
    assert len(alerts(effects)) == 1
    assert seen == [(before, store.state)]


def test_store_dispatch_many_notifies_once():
    store = Store()
    seen: list[tuple[State, State]] = []
    store.subscribe(lambda old, new: seen.append((old, new)))
    before = store.state
    effects = store.dispatch_many([customer("a", 1), customer("b", 5), Connected(user_id=ME)])
    assert len(alerts(effects)) == 2
    assert len(seen) == 1
    assert seen[0] == (before, store.state)
    assert store.state.connection.user_id == ME


def test_store_unsubscribe_stops_notifications():
    store = Store()
    calls: list[int] = []
    unsubscribe = store.subscribe(lambda old, new: calls.append(1))
    store.dispatch(FocusChanged(KEY))
    unsubscribe()
    unsubscribe()  # idempotent
    store.dispatch(FocusChanged(OTHER))
    assert calls == [1]


def test_store_keepalive_keeps_the_state_and_notifies_nobody():
    store = Store()
    store.dispatch(FocusChanged(KEY))
    before = store.state
    calls: list[State] = []
    store.subscribe(lambda old, new: calls.append(new))
    assert store.dispatch(KeepaliveReceived()) == ()
    assert store.dispatch_many([KeepaliveReceived(kind="pong"), FocusChanged(KEY)]) == ()
    assert store.state is before
    assert calls == []


def test_store_failing_subscriber_is_logged_and_others_still_run(caplog):
    store = Store()
    calls: list[int] = []

    def broken(old: State, new: State) -> None:
        raise RuntimeError("boom")

    store.subscribe(broken)
    store.subscribe(lambda old, new: calls.append(1 if new.focused == KEY else 0))
    with caplog.at_level(logging.ERROR, logger="tray_agent.core.state"):
        store.dispatch(FocusChanged(KEY))
    assert calls == [1]
    assert "subscriber" in caplog.text


def test_store_nested_dispatch_delivers_transitions_in_order():
    store = Store()
    seen: list[tuple[str | None, str | None]] = []

    def echo_once(old: State, new: State) -> None:
        if new.focused == KEY:
            store.dispatch(FocusChanged(OTHER))

    store.subscribe(echo_once)
    store.subscribe(lambda old, new: seen.append((old.focused, new.focused)))
    store.dispatch(FocusChanged(KEY))
    assert seen == [(None, KEY), (KEY, OTHER)]
    assert store.state.focused == OTHER


def test_store_history_limit_applies_to_dispatch():
    store = Store(history_limit=3)
    store.dispatch_many([customer(f"m{i}", i * 10) for i in range(6)])
    assert [r.text for r in bubbles(store.state)] == ["m3", "m4", "m5"]
    store.history_limit = 2
    store.dispatch(customer("m6", 100))
    assert [r.text for r in bubbles(store.state)] == ["m5", "m6"]


def test_store_reducer_bug_is_logged_not_raised(caplog, monkeypatch):
    from tray_agent.core import state as state_module

    def explode(state: State, event: Event, *, history_limit: int = 500) -> tuple[State, tuple[Effect, ...]]:
        raise ValueError("bug")

    monkeypatch.setattr(state_module, "reduce", explode)
    store = Store()
    with caplog.at_level(logging.ERROR, logger="tray_agent.core.state"):
        assert store.dispatch(KeepaliveReceived()) == ()
    assert "reducer failed" in caplog.text


def test_escalation_inferred_from_another_senders_message_quotes_the_customer() -> None:
    from tray_agent.core.effects import Alert, AlertKind
    from tray_agent.core.events import HumanRequested, MessageReceived, SenderKind
    from tray_agent.core.state import Store

    store = Store()
    store.dispatch(
        MessageReceived(
            conversation="c", sender=SenderKind.CUSTOMER, text="I need a person", customer_name="Ani"
        )
    )
    store.dispatch(MessageReceived(conversation="c", sender=SenderKind.AI, text="A human will contact you"))
    effects = store.dispatch(HumanRequested(conversation="c"))
    alerts = [e for e in effects if isinstance(e, Alert) and e.kind is AlertKind.ESCALATION]
    assert [a.text for a in alerts] == ["I need a person"]
    assert alerts[0].customer_name == "Ani"


# -- partial answers (issue 15: the org assign answer is not enriched) --------------------------


def _assigned_to_me_state() -> State:
    row = ConversationSummary(
        conversation=KEY,
        customer_name="Budi",
        channel="whatsapp",
        assigned=True,
        agent=AgentRef(agent_id="h1", name="Sari", email="sari@example.com"),
        assigned_to_me=True,
    )
    state, _ = run([Connected(user_id=ME), WaitingListPage(customers=(row,), complete_list=False)])
    conv = state.conversation(KEY)
    assert conv is not None
    assert conv.assigned_to_me
    return state


def test_partial_assignment_never_blanks_known_names() -> None:
    state = _assigned_to_me_state()
    blank = ConversationSummary(
        conversation=KEY, assigned=True, agent=AgentRef(agent_id="h1"), assigned_to_me=None
    )
    event = AssignmentChanged(
        conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef(agent_id="h1"), customer=blank
    )
    conv = run([event], state)[0].conversation(KEY)
    assert conv is not None
    assert conv.customer_name == "Budi"
    assert conv.agent == AgentRef(agent_id="h1", name="Sari", email="sari@example.com")
    assert conv.assigned_to_me  # the same assignee, and the answer does not say: still mine


def test_partial_resync_row_never_blanks_known_names_or_mine() -> None:
    state = _assigned_to_me_state()
    row = ConversationSummary(
        conversation=KEY, customer_name="", assigned=True, agent=AgentRef(agent_id="h1"), assigned_to_me=None
    )
    conv = run([WaitingListPage(customers=(row,), complete_list=False)], state)[0].conversation(KEY)
    assert conv is not None
    assert (conv.customer_name, conv.agent) == ("Budi", AgentRef("h1", "Sari", "sari@example.com"))
    assert conv.assigned_to_me


def test_assignment_to_another_agent_takes_their_names_only() -> None:
    state = _assigned_to_me_state()
    event = AssignmentChanged(
        conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef(agent_id="h2"), is_me=False
    )
    conv = run([event], state)[0].conversation(KEY)
    assert conv is not None
    assert conv.agent == AgentRef(agent_id="h2")
    assert not conv.assigned_to_me


def test_a_resync_listing_every_held_chat_releases_mine_that_are_missing() -> None:
    # Issue 15: the org resync reads only waiting and human-held chats; one of mine handed back to
    # the AI (or resolved) while we were away is simply not listed any more.
    state = _assigned_to_me_state()
    other = summary(OTHER, assigned=True, agent=AgentRef(agent_id="h1"), assigned_to_me=True)
    state, _ = run([WaitingListPage(customers=(other,), complete_assignments=True)], state)
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.assigned, conv.assigned_to_me, conv.agent) == (False, False, None)
    assert state.mine_keys == frozenset({OTHER})


def test_a_resync_without_that_promise_leaves_mine_alone() -> None:
    state = _assigned_to_me_state()
    state, _ = run([WaitingListPage(customers=(summary(OTHER),))], state)
    assert KEY in state.mine_keys


# --- issue 14: one customer, one truth -----------------------------------------------------------


def test_reduce_message_announcing_human_mode_is_one_escalation_alert():
    _state, effects = run([customer("I want a human", 1, requires_human=True)])
    assert [(a.kind, a.text) for a in alerts(effects)] == [(AlertKind.ESCALATION, "I want a human")]


def test_reduce_escalation_alert_carries_the_waiting_start():
    events = [HumanRequested(conversation=KEY, at=at(5)), HumanRequested(conversation=OTHER, at=at(9))]
    _state, effects = run(events)
    assert [a.since for a in alerts(effects)] == [at(5), at(9)]


def test_reduce_taken_customer_leaves_waiting_and_every_count_agrees():
    rows = tuple(waiting_row(f"a/{i}", i) for i in range(4))
    state, _ = run([WaitingListPage(customers=rows, offset=0)], me_connected())
    state, _ = run(
        [
            AssignmentChanged(
                conversation="a/2", action=AssignmentAction.ASSIGNED, agent=AgentRef("colleague")
            )
        ],
        state,
    )
    # badge == tray menu == Waiting tab: all read the one waiting set.
    assert state.waiting_count == len(state.waiting_list()) == len(state.waiting_keys) == 3
    assert "a/2" not in state.waiting_keys
    assert state.oldest_waiting_since == at(0)


def test_reduce_my_take_over_leaves_waiting_at_once_and_a_failure_brings_them_back():
    state, _ = run([HumanRequested(conversation=KEY, at=at(1))], me_connected())
    state, _ = run([CommandQueued(command_id="t1", kind=CommandKind.TAKE_OVER, conversation=KEY)], state)
    assert (state.waiting_list(), state.waiting_count) == ((), 0)
    state, _ = run(
        [
            CommandFailed(
                command_id="t1", kind=CommandKind.TAKE_OVER, conversation=KEY, reason=FailureReason.TIMEOUT
            )
        ],
        state,
    )
    assert [c.key for c in state.waiting_list()] == [KEY]
    assert state.waiting_count == 1


def test_reduce_resync_forgets_a_taken_customer_the_server_no_longer_lists():
    state, _ = run([WaitingListPage(customers=(waiting_row("a/1", 1, assigned=True),), offset=0)])
    assert state.conversation("a/1").waiting  # type: ignore[union-attr]  # taken, still in human mode
    state, _ = run([WaitingListPage(customers=(), offset=0)], state)
    state, _ = run([AssignmentChanged(conversation="a/1", action=AssignmentAction.UNASSIGNED)], state)
    assert state.waiting_list() == ()  # not revived by the release with their old waiting time


def test_reduce_replayed_older_messages_after_a_reconnect_do_not_alert_again():
    state, _ = run([customer("first", 10), customer("second", 20)])
    # A reconnect replays what we had, and backfills one we missed but older than what we saw.
    _state, effects = run([customer("first", 10), customer("missed earlier", 15)], state)
    assert alerts(effects) == []
    _state, effects = run([customer("new", 30)], state)
    assert [a.text for a in alerts(effects)] == ["new"]


def test_reduce_messages_older_than_the_resync_row_do_not_alert():
    row = summary(KEY, last_message="latest", last_message_at=at(100))
    state, _ = run([WaitingListPage(customers=(row,), offset=0)])
    _state, effects = run([customer("old one", 50)], state)
    assert alerts(effects) == []
    assert _state.conversation(KEY).unread == 1  # type: ignore[union-attr]  # still counted
    _state, effects = run([customer("fresh", 101)], state)
    assert [a.text for a in alerts(effects)] == ["fresh"]


@pytest.mark.parametrize(
    ("events", "handler"),
    [
        ([], Handler.AI),
        ([HumanRequested(conversation=KEY, at=at(0))], Handler.NOBODY),
        (
            [AssignmentChanged(conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef(ME))],
            Handler.ME,
        ),
        (
            [AssignmentChanged(conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef("x"))],
            Handler.COLLEAGUE,
        ),
        (
            [ConversationUpdated(conversation=KEY, update_type="chat_created", fields={"handled_by": "ai"})],
            Handler.AI,
        ),
        (
            [
                ConversationUpdated(
                    conversation=KEY, update_type="chat_created", fields={"handled_by": "unassigned"}
                )
            ],
            Handler.NOBODY,
        ),
    ],
)
def test_reduce_message_alert_says_who_handles_the_customer(events, handler):
    state, _ = run([Connected(user_id=ME), *events])
    _state, effects = run([customer("hi", 10)], state)
    assert [a.handler for a in alerts(effects, AlertKind.MESSAGE)] == [handler]


def test_conversation_map_scan_yields_every_conversation_once():
    convs = [Conversation(key=f"k{i}") for i in range(300)]
    cmap = ConversationMap(convs).set_many({"k1": Conversation(key="k1", unread=2)})
    scanned = list(cmap.scan())
    assert sorted(c.key for c in scanned) == sorted(c.key for c in convs)
    assert next(c for c in scanned if c.key == "k1").unread == 2


# --- letting go: release, resolve, hand back (the customer's life cycle) ----------------------


def _held_then(kind: CommandKind) -> list[Event]:
    return [
        HumanRequested(conversation=KEY, at=at(1)),
        AssignmentChanged(conversation=KEY, action=AssignmentAction.ASSIGNED, agent=AgentRef(ME), is_me=True),
        customer("thanks!", 60),
        CommandQueued(command_id="x1", kind=kind, conversation=KEY),
        CommandSucceeded(command_id="x1", kind=kind, conversation=KEY),
    ]


@pytest.mark.parametrize("kind", [CommandKind.RELEASE, CommandKind.RESOLVE, CommandKind.HAND_BACK])
def test_reduce_letting_go_ends_waiting_and_mine(kind: CommandKind) -> None:
    state, _ = run(_held_then(kind), me_connected())
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.waiting, conv.waiting_since, conv.assigned_to_me, conv.assigned) == (
        False,
        None,
        False,
        False,
    )
    assert KEY not in state.waiting_keys
    assert state.mine() == ()
    assert state.waiting_count == 0
    assert state.oldest_waiting_since is None
    assert state.outbound["x1"].state is CommandState.CONFIRMED
    assert conv.status == ("resolved" if kind is CommandKind.RESOLVE else "")


@pytest.mark.parametrize("kind", [CommandKind.RELEASE, CommandKind.RESOLVE, CommandKind.HAND_BACK])
def test_reduce_let_go_customer_never_comes_back_waiting_since_the_old_time(kind: CommandKind) -> None:
    state, _ = run(_held_then(kind), me_connected())
    # A list fetched before the server knew, and a late stop frame, still show the old episode.
    stale = WaitingListPage(customers=(waiting_row(KEY, 1),), offset=0, total=1)
    late = WaitingChanged(conversation=KEY, waiting=True, customer=waiting_row(KEY, 1), at=at(61))
    state, effects = run([stale, late, HumanRequested(conversation=KEY, at=at(30))], state)
    conv = state.conversation(KEY)
    assert conv is not None
    assert conv.waiting is False
    assert state.waiting_count == 0
    assert alerts(effects) == []
    # They ask for a human again: a new episode, since the new time, alerted.
    state, effects = run([HumanRequested(conversation=KEY, text="me again", at=at(120))], state)
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.waiting, conv.waiting_since) == (True, at(120))
    assert len(alerts(effects, AlertKind.ESCALATION)) == 1


def test_reduce_discarded_reply_is_discarded_in_the_store() -> None:
    events = [
        CommandQueued(command_id="r1", kind=CommandKind.REPLY, conversation=KEY, text="maybe"),
        CommandFailed(
            command_id="r1", kind=CommandKind.REPLY, conversation=KEY, reason=FailureReason.UNCONFIRMED
        ),
        CommandDiscarded(command_id="r1", kind=CommandKind.REPLY, conversation=KEY),
    ]
    state, _ = run(events, me_connected())
    assert state.outbound["r1"].state is CommandState.DISCARDED
    bubble = state.conversation(KEY).messages[-1]  # type: ignore[union-attr]
    assert bubble.reply_state is CommandState.DISCARDED


def test_reduce_discarded_take_over_rolls_back() -> None:
    events = [
        HumanRequested(conversation=KEY, at=at(1)),
        take_over(),
        CommandDiscarded(command_id="t1", kind=CommandKind.TAKE_OVER, conversation=KEY),
    ]
    state, _ = run(events, me_connected())
    conv = state.conversation(KEY)
    assert conv is not None
    assert (conv.assigned_to_me, conv.pending_takeover, state.waiting_count) == (False, None, 1)
    assert state.outbound["t1"].state is CommandState.DISCARDED


def test_reduce_retried_reply_points_to_the_new_reply() -> None:
    events = [
        CommandQueued(command_id="r1", kind=CommandKind.REPLY, conversation=KEY, text="hello"),
        CommandFailed(command_id="r1", kind=CommandKind.REPLY, conversation=KEY, text="boom"),
        CommandQueued(command_id="r2", kind=CommandKind.REPLY, conversation=KEY, text="hello"),
        CommandRetried(command_id="r1", retried_as="r2", conversation=KEY),
    ]
    state, _ = run(events, me_connected())
    assert state.outbound["r1"].retried_as == "r2"
    first, second = state.conversation(KEY).messages[-2:]  # type: ignore[union-attr]
    assert (first.reply_state, first.retried_as) == (CommandState.FAILED, "r2")
    assert (second.reply_state, second.retried_as) == (CommandState.QUEUED, "")


# ---------------------------------------------------------------------------------------------
# History refused for an unknown conversation (a stale link)


def history_failed(
    reason: FailureReason, text: str = "", key: str = "inbox", cid: str = "h1"
) -> CommandFailed:
    return CommandFailed(command_id=cid, kind=CommandKind.HISTORY, conversation=key, reason=reason, text=text)


def words(refused) -> dict[str, str]:
    return {key: refusal.text for key, refusal in refused.items()}


def test_reduce_history_refused_for_an_unknown_conversation_is_remembered_not_listed():
    state, effects = run([history_failed(FailureReason.NOT_FOUND, "Chat inbox not found")])
    assert dict(state.refused) == {"inbox": Refusal("Chat inbox not found", FailureReason.NOT_FOUND)}
    assert not state.refused["inbox"].temporary  # final until the conversation appears
    assert state.conversation("inbox") is None  # never a row of a list
    assert len(state.conversations) == 0
    assert effects == []
    state, _ = run([history_failed(FailureReason.INVALID, "", key="x")], state)
    assert state.refused["x"].text == "invalid"  # no words from the server: the reason


def test_reduce_history_server_error_is_a_temporary_failure_not_a_refusal():
    state, effects = run([history_failed(FailureReason.SERVER_ERROR, " HTTP 500 ")])
    failure = state.refused["inbox"]
    assert (failure.text, failure.temporary) == ("HTTP 500", True)  # the window asks again
    assert effects == []
    assert reduce(state, history_failed(FailureReason.SERVER_ERROR, "HTTP 500", cid="h2"))[0] is state
    refused, _ = run([history_failed(FailureReason.NOT_FOUND, "Chat inbox not found", cid="h3")], state)
    assert not refused.refused["inbox"].temporary  # the newest answer wins
    failing, _ = run([history_failed(FailureReason.SERVER_ERROR, "HTTP 503", cid="h4")], refused)
    assert failing.refused["inbox"] == Refusal("HTTP 503", FailureReason.SERVER_ERROR)
    assert refused.refused["inbox"].text == "Chat inbox not found"  # snapshots never change


@pytest.mark.parametrize("reason", [FailureReason.OFFLINE, FailureReason.TIMEOUT, FailureReason.UNCONFIRMED])
def test_reduce_history_lost_with_the_connection_is_no_refusal(reason):
    state = State()
    assert reduce(state, history_failed(reason, "timed out"))[0] is state


def test_reduce_history_refused_for_a_known_conversation_changes_nothing():
    state, _ = run([MessageReceived(conversation=KEY, text="hi", sent_at=at(0))])
    assert reduce(state, history_failed(FailureReason.SERVER_ERROR, "boom", key=KEY))[0] is state


def test_reduce_refusal_is_forgotten_when_the_conversation_appears():
    refused, _ = run(
        [
            history_failed(FailureReason.NOT_FOUND, "gone"),
            history_failed(FailureReason.NOT_FOUND, "gone", key="y"),
        ]
    )
    by_message, _ = run([MessageReceived(conversation="inbox", text="hi", sent_at=at(0))], refused)
    assert words(by_message.refused) == {"y": "gone"}
    assert by_message.conversation("inbox") is not None
    by_batch, _ = reduce_messages(refused, [MessageReceived(conversation="inbox", text="hi", sent_at=at(0))])
    assert words(by_batch.refused) == {"y": "gone"}
    summary = ConversationSummary(conversation="inbox", waiting=True, waiting_since=at(0))
    by_resync, _ = run([WaitingListPage(customers=(summary,), offset=0, total=1)], refused)
    assert words(by_resync.refused) == {"y": "gone"}
    by_history, _ = run([HistoryPage(conversation="inbox", messages=(), has_more=False)], refused)
    assert words(by_history.refused) == {"y": "gone"}


def test_reduce_refusals_are_bounded_oldest_first():
    from tray_agent.core.state import REFUSED_LIMIT

    events = [history_failed(FailureReason.NOT_FOUND, "no", key=f"k{i}") for i in range(REFUSED_LIMIT + 3)]
    state, _ = run(events)
    assert list(state.refused) == [f"k{i}" for i in range(3, REFUSED_LIMIT + 3)]
