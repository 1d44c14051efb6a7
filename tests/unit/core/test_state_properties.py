"""Property tests of the reducer: any event sequence keeps the state's invariants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tray_agent.core.effects import Alert, Effect
from tray_agent.core.events import (
    AgentRef,
    AssignmentAction,
    AssignmentChanged,
    Attachment,
    CommandFailed,
    CommandKind,
    CommandQueued,
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
    RECENT_ROWS,
    CommandState,
    Conversation,
    ConversationMap,
    ConversationRead,
    FocusChanged,
    History,
    MessageRecord,
    State,
    Store,
    changed_conversations,
    reduce,
    reduce_messages,
)

LIMIT = 6
T0 = datetime(2026, 3, 21, 8, 0, 0, tzinfo=UTC)
ME = "me"

keys = st.sampled_from(["p/1", "p/2", "c3"])
texts = st.sampled_from(["", "ok", " ok ", "hi", "a human please"])
ids = st.none() | st.sampled_from(["m1", "m2", "m3"])
agent_ids = st.sampled_from(["", ME, "other"])
command_ids = st.sampled_from(["c1", "c2", "c3"])
kinds = st.sampled_from(list(CommandKind))


@st.composite
def times(draw: st.DrawFn) -> datetime | None:
    if draw(st.integers(0, 15)) == 0:
        return None
    value = T0 + timedelta(seconds=draw(st.integers(0, 90)))
    # A codec slip: naive times must not break comparisons.
    return value.replace(tzinfo=None) if draw(st.integers(0, 15)) == 0 else value


attachments = st.none() | st.builds(
    Attachment, url=st.sampled_from(["https://x/1", "https://x/2"]), name=st.just("f")
)
agents = st.none() | st.builds(AgentRef, agent_id=agent_ids, name=st.sampled_from(["", "Bo"]))

messages = st.builds(
    MessageReceived,
    conversation=keys | st.just(""),
    sender=st.sampled_from(list(SenderKind)),
    text=texts,
    attachment=attachments,
    message_id=ids,
    sent_at=times(),
    customer_name=st.sampled_from(["", "Ann"]),
    channel=st.sampled_from(["", "Page"]),
    agent_id=agent_ids,
    requires_human=st.booleans(),
)

summaries = st.builds(
    ConversationSummary,
    conversation=keys,
    customer_name=st.sampled_from(["", "Ann", "Bob"]),
    last_message=texts,
    last_message_at=times(),
    waiting=st.booleans(),
    waiting_since=times(),
    assigned=st.booleans(),
    agent=agents,
    assigned_to_me=st.none() | st.booleans(),
    status=st.sampled_from(["", "open", "resolved"]),
)

field_values = st.one_of(
    st.none(), st.integers(-3, 3), st.booleans(), texts, st.sampled_from(["resolved", "closed"])
)

events: st.SearchStrategy[Event] = st.one_of(
    messages,
    messages,
    messages,
    st.builds(
        HumanRequested, conversation=keys, customer_name=st.sampled_from(["", "Ann"]), text=texts, at=times()
    ),
    st.builds(
        WaitingChanged, conversation=keys, waiting=st.booleans(), customer=st.none() | summaries, at=times()
    ),
    st.builds(
        AssignmentChanged,
        conversation=keys,
        action=st.sampled_from(list(AssignmentAction)),
        agent=agents,
        is_me=st.none() | st.booleans(),
        customer=st.none() | summaries,
        at=times(),
    ),
    st.builds(
        ConversationUpdated,
        conversation=keys,
        update_type=st.sampled_from(["chat_resolved", "chat_created", "ticket_created", "other"]),
        fields=st.dictionaries(
            st.sampled_from(["status", "handled_by", "ticket_number", "customer_name", "channel"]),
            field_values,
        ),
        at=times(),
    ),
    st.builds(
        WaitingListPage,
        customers=st.lists(summaries, max_size=3).map(tuple),
        offset=st.integers(0, 4),
        has_more=st.booleans(),
        complete_list=st.booleans(),
    ),
    st.builds(HistoryPage, conversation=keys, messages=st.lists(messages, max_size=4).map(tuple)),
    st.builds(CommandQueued, command_id=command_ids, kind=kinds, conversation=keys, text=texts),
    st.builds(CommandSent, command_id=command_ids, kind=kinds, conversation=keys | st.just("")),
    st.builds(
        CommandSucceeded, command_id=command_ids, kind=kinds, conversation=keys | st.just(""), message_id=ids
    ),
    st.builds(
        CommandFailed,
        command_id=command_ids,
        kind=kinds,
        conversation=keys | st.just(""),
        reason=st.sampled_from(list(FailureReason)),
        text=texts,
    ),
    st.builds(ConnectionChanged, state=st.sampled_from(list(ConnectionState)), at=times()),
    st.builds(Connected, user_id=st.sampled_from([ME, ""]), connection_count=st.none() | st.integers(0, 3)),
    st.builds(Ignored, kind=st.text(max_size=80)),
    st.builds(FocusChanged, conversation=st.none() | keys),
    st.builds(ConversationRead, conversation=keys),
    st.just(KeepaliveReceived()),
    st.builds(ServerAcked, kind=kinds),
    st.builds(ServerRejected, text=texts),
    st.just(Event()),
)

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fingerprint(state: State) -> Any:
    """A deep, plain copy of everything observable in a state (to detect later mutation)."""
    return (
        state.connection,
        tuple(sorted((k, c, c.messages.records) for k, c in state.conversations.items())),
        tuple(state.outbound.items()),
        state.focused,
        tuple(state.ignored.items()),
        state.unread_total,
        state.waiting_keys,
        state.mine_keys,
        state.initial_load_done,
        state.resync,
        state.resync_requested,
        state.clock,
    )


def check_invariants(state: State) -> None:
    convs = list(state.conversations.values())
    assert len(convs) == len(state.conversations)
    assert all(k == c.key for k, c in state.conversations.items())
    assert state.unread_total == sum(c.unread for c in convs)
    assert all(c.unread >= 0 for c in convs)
    assert state.waiting_keys == {c.key for c in convs if c.urgent}  # the one waiting set
    assert state.waiting_count == len(state.waiting_keys) == len(state.waiting_list())
    assert state.mine_keys == {c.key for c in convs if c.assigned_to_me}
    assert state.waiting_count == sum(1 for c in convs if c.urgent)
    since = [c.waiting_since or datetime.max.replace(tzinfo=UTC) for c in state.waiting_list()]
    assert since == sorted(since)
    for conv in convs:
        records = conv.messages.records
        assert len(records) <= LIMIT
        with_ids = [r.message_id for r in records if r.message_id is not None]
        assert len(with_ids) == len(set(with_ids)), "a server id shows twice"
        assert all(conv.messages.has_id(i) for i in with_ids)
        assert not any(conv.messages.has_id(i) for i in ("m1", "m2", "m3") if i not in with_ids), "stale id"
        assert all(r.text.strip() or r.attachment is not None for r in records), "blank bubble"


def bubbles(state: State, key: str) -> int:
    conv = state.conversation(key)
    return len(conv.messages) if conv is not None else 0


@PROPERTY_SETTINGS
@given(st.lists(events, max_size=40))
def test_reduce_any_sequence_keeps_invariants_and_never_mutates_old_states(sequence):
    state = State()
    history: list[tuple[State, Any]] = [(state, fingerprint(state))]
    for event in sequence:
        new, effects = reduce(state, event, history_limit=LIMIT)
        assert isinstance(new, State)
        assert all(isinstance(e, Effect) for e in effects)
        if new is state:  # an event that changes nothing: no new snapshot, and nothing to do
            assert effects == ()
        check_invariants(new)
        history.append((new, fingerprint(new)))
        state = new
    for old, print_ in history:
        assert fingerprint(old) == print_, "a reducer mutated an earlier state"


def _batch_as_one_by_one(state: State, run: list[Any], limit: int) -> tuple[State, State]:
    """``reduce_messages`` of ``run`` and ``reduce`` of each message give the same state and effects.

    Returns:
        The batch's state and the one-by-one state.
    """
    one_by_one, expected = state, []
    for message in run:
        one_by_one, effects = reduce(one_by_one, message, history_limit=limit)
        expected.extend(effects)
    batched, effects = reduce_messages(state, run, history_limit=limit)
    assert fingerprint(batched) == fingerprint(one_by_one)
    assert list(effects) == expected
    return batched, one_by_one


@PROPERTY_SETTINGS
@given(st.lists(events, max_size=30), st.lists(messages, min_size=1, max_size=12))
def test_reduce_messages_folds_a_run_as_reduce_does_each_in_one_snapshot(prefix, run):
    state = State()
    for event in prefix:
        state, _ = reduce(state, event, history_limit=LIMIT)
    before = fingerprint(state)
    batched, one_by_one = _batch_as_one_by_one(state, run, LIMIT)
    assert (batched is state) == (one_by_one is state)
    check_invariants(batched)
    assert all(type(c.messages) is History for c in batched.conversations.values())
    assert fingerprint(state) == before, "the batch mutated the state it started from"


@PROPERTY_SETTINGS
@given(st.lists(events.map(lambda e: [e]) | st.lists(messages, min_size=2, max_size=6), max_size=15))
def test_store_dispatch_many_ends_where_one_dispatch_per_event_does(chunks):
    sequence = [event for chunk in chunks for event in chunk]  # with runs of messages (bursts)
    single, batched = Store(history_limit=LIMIT), Store(history_limit=LIMIT)
    expected: list[Effect] = []
    for event in sequence:
        expected.extend(single.dispatch(event))
    told: list[tuple[State, State]] = []
    batched.subscribe(lambda old, new: told.append((old, new)))
    effects = batched.dispatch_many(sequence)
    assert fingerprint(batched.state) == fingerprint(single.state)
    assert list(effects) == expected
    assert len(told) <= 1


@PROPERTY_SETTINGS
@given(st.lists(events, max_size=30), messages)
def test_reduce_replayed_message_never_adds_a_bubble_or_alert(prefix, message):
    state = State()
    for event in prefix:
        state, _ = reduce(state, event, history_limit=LIMIT)
    once, _ = reduce(state, message, history_limit=LIMIT)
    twice, effects = reduce(once, message, history_limit=LIMIT)
    key = message.conversation
    assert bubbles(twice, key) == bubbles(once, key)
    assert not [e for e in effects if isinstance(e, Alert)]
    if key:
        assert twice.conversation(key).unread == once.conversation(key).unread  # type: ignore[union-attr]


@PROPERTY_SETTINGS
@given(st.lists(events, max_size=30))
def test_reduce_replaying_every_message_in_place_never_adds_a_bubble(sequence):
    state = State()
    for event in sequence:
        state, _ = reduce(state, event, history_limit=LIMIT)
        if isinstance(event, MessageReceived):
            again, effects = reduce(state, event, history_limit=LIMIT)
            assert bubbles(again, event.conversation) == bubbles(state, event.conversation)
            assert not [e for e in effects if isinstance(e, Alert)]


@settings(max_examples=100, deadline=None)
@given(
    st.permutations(["ack", "echo", "echo", "sent"]),
    st.booleans(),
    st.integers(0, 30),
    st.lists(messages.filter(lambda m: m.sender is not SenderKind.AGENT), max_size=5),
)
def test_reduce_my_reply_shows_once_whatever_the_order_of_ack_and_echoes(order, with_ids, delay, noise):
    t = T0 + timedelta(seconds=40)
    state = State()
    prefix: list[Event] = [
        Connected(user_id=ME),
        CommandQueued(command_id="c1", kind=CommandKind.REPLY, conversation="p/1", text="On it"),
    ]
    for event in prefix:
        state, _ = reduce(state, event)
    mid = "m-reply" if with_ids else None
    by_name: dict[str, Event] = {
        "ack": CommandSucceeded(command_id="c1", kind=CommandKind.REPLY, conversation="p/1", message_id=mid),
        "echo": MessageReceived(
            conversation="p/1",
            sender=SenderKind.AGENT,
            text="On it",
            agent_id=ME,
            message_id=mid,
            sent_at=t + timedelta(seconds=delay),
        ),
        "sent": CommandSent(command_id="c1", kind=CommandKind.REPLY, conversation="p/1"),
    }
    for i, name in enumerate(order):
        state, effects = reduce(state, by_name[name])
        assert not [e for e in effects if isinstance(e, Alert)]
        if i < len(noise):
            state, _ = reduce(state, noise[i])
    conv = state.conversation("p/1")
    assert conv is not None
    mine = [r for r in conv.messages if r.sender is SenderKind.AGENT and r.text == "On it"]
    assert len(mine) == 1
    assert mine[0].reply_state is CommandState.CONFIRMED
    assert mine[0].echoed
    assert state.outbound["c1"].state is CommandState.CONFIRMED


def scan_changes(old: ConversationMap, new: ConversationMap) -> frozenset[str]:
    """The definition: every key whose Conversation object differs by identity (a full scan)."""
    return frozenset(k for k in {*old, *new} if old.get(k) is not new.get(k))


@PROPERTY_SETTINGS
@given(st.lists(events, max_size=40), st.data())
def test_changed_conversations_between_any_two_states_equals_a_full_scan(sequence, data):
    states = [State()]
    for event in sequence:
        states.append(reduce(states[-1], event, history_limit=LIMIT)[0])
    for _ in range(10):
        old = data.draw(st.sampled_from(states))
        new = data.draw(st.sampled_from(states))
        got = changed_conversations(old.conversations, new.conversations)
        assert got == scan_changes(old.conversations, new.conversations)


map_steps = st.lists(
    st.dictionaries(st.sampled_from([f"k{i}" for i in range(12)]), st.booleans(), max_size=4)
    | st.just("fresh"),
    max_size=80,
)


@PROPERTY_SETTINGS
@given(map_steps, st.data())
def test_changed_conversations_follows_long_change_logs_and_fresh_maps(steps, data):
    # Long runs of updates (past the change log's cut), maps built from scratch, updates that
    # put the very same object back: the answer is always the full scan's.
    maps = [ConversationMap()]
    for step in steps:
        current = maps[-1]
        if step == "fresh":
            maps.append(ConversationMap(current))
            continue
        updates = {
            key: (current[key] if same and key in current else Conversation(key=key))
            for key, same in step.items()
        }
        maps.append(current.set_many(updates))
    for _ in range(20):
        old = data.draw(st.sampled_from(maps))
        new = data.draw(st.sampled_from(maps))
        assert changed_conversations(old, new) == scan_changes(old, new)


history_ops = st.lists(
    st.tuples(st.sampled_from(["append"] * 6 + ["replace", "remove", "trim"]), texts, st.integers(0, 200)),
    max_size=200,  # past RECENT_ROWS: rows leave the counted window
)


@PROPERTY_SETTINGS
@given(history_ops, st.booleans())
def test_history_recent_texts_count_the_newest_rows_after_any_change(ops, ask_early):
    # The count kept up to date by appended() is the one recounted from the rows.
    history = History()
    for op, text, n in ops:
        record = MessageRecord(sender=SenderKind.CUSTOMER, text=text)
        if ask_early:
            history.recent_texts()  # counted now, then carried along
        if op == "append":
            history = history.appended(record, max(1, n))
        elif op == "replace" and len(history):
            history = history.replaced(n % len(history), record)
        elif op == "remove" and len(history):
            history = history.removed(n % len(history))
        elif op == "trim":
            history = history.trimmed(max(1, n))
        expected: dict[str, int] = {}
        for r in history.records[-RECENT_ROWS:]:
            expected[r.text] = expected.get(r.text, 0) + 1
        assert dict(history.recent_texts()) == expected


@PROPERTY_SETTINGS
@given(st.lists(messages, min_size=2, max_size=40), st.booleans())
def test_reduce_messages_long_histories_batched_as_one_by_one(run, counted):
    # Histories past RECENT_ROWS, several messages per conversation per batch: the rows are
    # copied once per batch (appended in place), yet the result is reduce's, message by message.
    limit = RECENT_ROWS + 4
    state = State()
    for i in range(limit + 2):
        for key in ("p/1", "p/2"):
            fill = MessageReceived(conversation=key, text=f"t{i % 9}", sent_at=T0 + timedelta(seconds=i))
            state, _ = reduce(state, fill, history_limit=limit)
    if counted:
        for conv in state.conversations.values():
            conv.messages.recent_texts()  # counted before the batch: carried along by appends
    before = fingerprint(state)
    batched, _ = _batch_as_one_by_one(state, run, limit)
    assert fingerprint(state) == before, "the batch mutated the state it started from"
    for conv in batched.conversations.values():
        history = conv.messages
        assert type(history) is History
        assert type(history.records) is tuple
        assert len(history) <= limit
        recount: dict[str, int] = {}
        for r in history.records[-RECENT_ROWS:]:
            recount[r.text] = recount.get(r.text, 0) + 1
        assert dict(history.recent_texts()) == recount
        assert all(history.has_id(r.message_id) for r in history if r.message_id is not None)
        assert history == History(history.records)


def test_reduce_messages_trims_the_ids_of_rows_pushed_out_within_the_batch():
    run = [MessageReceived(conversation="p/1", text="first", message_id="m1")]
    run += [MessageReceived(conversation="p/1", text=f"n{i}") for i in range(4)]
    run.append(MessageReceived(conversation="p/1", text="first again", message_id="m1"))
    run.append(MessageReceived(conversation="p/1", text="last", message_id="m2"))
    one_by_one = State()
    for message in run:
        one_by_one, _ = reduce(one_by_one, message, history_limit=3)
    batched, _ = reduce_messages(State(), run, history_limit=3)
    assert fingerprint(batched) == fingerprint(one_by_one)
    history = batched.conversations["p/1"].messages
    assert [r.text for r in history] == ["n3", "first again", "last"]  # m1 left, then came anew
    check_invariants(batched)
    more = [MessageReceived(conversation="p/1", text=f"x{i}") for i in range(3)]
    batched, _ = reduce_messages(batched, more, history_limit=3)
    assert not batched.conversations["p/1"].messages.has_id("m1")


def test_history_recent_texts_stay_exact_and_bounded_over_many_distinct_texts():
    # Texts leaving the newest rows are kept counted 0 (cheap copies) until the counts are
    # pruned: over thousands of distinct texts they stay exact and bounded, appended one by one
    # or in reducer batches.
    history = History()
    state = State()
    for i in range(3 * 3 * RECENT_ROWS + 7):
        record = MessageRecord(sender=SenderKind.CUSTOMER, text=f"t{i}" if i % 3 else "same")
        history = history.appended(record, 2 * RECENT_ROWS)
        expected = {r.text: 0 for r in history.records[-RECENT_ROWS:]}
        for r in history.records[-RECENT_ROWS:]:
            expected[r.text] += 1
        assert dict(history.recent_texts()) == expected
        assert len(history._recent_counts()) <= RECENT_ROWS + RECENT_ROWS // 3
    batch = [
        MessageReceived(conversation="p/1", text=f"m{i}", sent_at=T0 + timedelta(seconds=i))
        for i in range(6 * RECENT_ROWS)
    ]
    for start in range(0, len(batch), 50):
        state, _ = reduce_messages(state, batch[start : start + 50], history_limit=2 * RECENT_ROWS)
        messages = state.conversations["p/1"].messages
        assert dict(messages.recent_texts()) == {r.text: 1 for r in messages.records[-RECENT_ROWS:]}
        assert len(messages._recent_counts()) <= RECENT_ROWS + RECENT_ROWS // 3
