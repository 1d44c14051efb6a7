"""CommandTracker: outbox order, gating, correlation of uncorrelated answers, timeouts, drops."""

from __future__ import annotations

from tray_agent.core.commands import LoadHistory, Ping, RefreshWaitingList, Release, SendReply, TakeOver
from tray_agent.core.events import (
    CommandFailed,
    CommandKind,
    CommandSucceeded,
    FailureReason,
    ServerAcked,
    ServerRejected,
)
from tray_agent.net.tracker import CommandTracker, Transport


def _send_all(tracker: CommandTracker, now: float = 0.0, *, live: bool = True) -> list[str]:
    sent = tracker.take_sendable(live=live)
    for pending in sent:
        tracker.mark_sent(pending, Transport.WS, now)
    return [p.command.command_id for p in sent]


def test_tracker_outbox_keeps_order_and_waits_for_resync() -> None:
    tracker = CommandTracker(10.0)
    a, b = SendReply(conversation="p/a", text="1"), TakeOver(conversation="p/b")
    tracker.enqueue(a)
    tracker.enqueue(b)
    internal = tracker.enqueue(RefreshWaitingList(), internal=True, front=True)
    # Not live: only the internal resync step may go.
    assert tracker.take_sendable(live=False) == [internal]
    assert _send_all(tracker) == [a.command_id, b.command_id]


def test_tracker_one_outstanding_per_kind_and_conversation() -> None:
    tracker = CommandTracker(10.0)
    first = SendReply(conversation="p/a", text="1")
    second = SendReply(conversation="p/a", text="2")
    take_a = TakeOver(conversation="p/a")
    other = SendReply(conversation="p/b", text="3")
    for command in (first, second, take_a, other):
        tracker.enqueue(command)
    # second waits for first; take_a waits behind second (same conversation); other goes.
    assert _send_all(tracker) == [first.command_id, other.command_id]
    outcome = tracker.acked(ServerAcked(kind=CommandKind.REPLY, conversation="p/a"))
    assert outcome is not None
    assert outcome.event == CommandSucceeded(
        command_id=first.command_id, kind=CommandKind.REPLY, conversation="p/a"
    )
    # Once nothing blocks the conversation, different kinds may be in flight together.
    assert _send_all(tracker) == [second.command_id, take_a.command_id]
    assert _send_all(tracker) == []


def test_tracker_ack_matches_oldest_of_kind_and_conversation() -> None:
    tracker = CommandTracker(10.0)
    x, y = TakeOver(conversation="p/x"), TakeOver(conversation="p/y")
    tracker.enqueue(x)
    tracker.enqueue(y)
    _send_all(tracker)
    outcome = tracker.acked(ServerAcked(kind=CommandKind.TAKE_OVER, conversation="p/y"))
    assert outcome is not None
    assert outcome.event.command_id == y.command_id
    assert tracker.acked(ServerAcked(kind=CommandKind.RELEASE, conversation="p/x")) is None
    outcome = tracker.acked(ServerAcked(kind=CommandKind.TAKE_OVER))
    assert outcome is not None
    assert outcome.event.command_id == x.command_id


def test_tracker_rejection_matches_oldest_candidate_kind() -> None:
    tracker = CommandTracker(10.0)
    reply, take = SendReply(conversation="p/a", text="hi"), TakeOver(conversation="p/b")
    tracker.enqueue(reply)
    tracker.enqueue(take)
    _send_all(tracker)
    rejection = ServerRejected(
        reason=FailureReason.ALREADY_ASSIGNED,
        text="Customer is already assigned to ",
        kinds=(CommandKind.TAKE_OVER,),
    )
    outcome = tracker.rejected(rejection)
    assert outcome is not None
    assert outcome.event == CommandFailed(
        command_id=take.command_id,
        kind=CommandKind.TAKE_OVER,
        conversation="p/b",
        reason=FailureReason.ALREADY_ASSIGNED,
        text="Customer is already assigned to ",
    )
    # An error text that fits any command goes to the oldest outstanding one.
    outcome = tracker.rejected(ServerRejected(text="boom"))
    assert outcome is not None
    assert outcome.event.command_id == reply.command_id
    assert tracker.rejected(ServerRejected(text="late")) is None


def test_tracker_timeouts_with_fake_time() -> None:
    tracker = CommandTracker(10.0)
    early, late = TakeOver(conversation="p/a"), TakeOver(conversation="p/b")
    tracker.enqueue(early)
    _send_all(tracker, now=100.0)
    tracker.enqueue(late)
    _send_all(tracker, now=105.0)
    assert tracker.next_deadline() == 110.0
    assert tracker.expire(109.9) == []
    (outcome,) = tracker.expire(110.0)
    assert isinstance(outcome.event, CommandFailed)
    assert outcome.event.reason is FailureReason.TIMEOUT
    assert outcome.event.command_id == early.command_id
    assert tracker.next_deadline() == 115.0
    (outcome,) = tracker.expire(1000.0)
    assert outcome.event.command_id == late.command_id
    assert tracker.next_deadline() is None


def test_tracker_disconnect_fails_replies_and_requeues_idempotent_commands() -> None:
    tracker = CommandTracker(10.0)
    reply = SendReply(conversation="p/a", text="hi")
    take = TakeOver(conversation="p/b")
    release = Release(conversation="p/c")
    history = LoadHistory(conversation="p/d")
    ping = Ping()
    waiting = SendReply(conversation="p/e", text="queued")
    for command in (reply, take, release, history, ping):
        tracker.enqueue(command)
    tracker.enqueue(RefreshWaitingList(), internal=True)
    _send_all(tracker)
    tracker.enqueue(waiting)
    tracker.enqueue(RefreshWaitingList(offset=200), internal=True)
    outcomes = tracker.disconnected()
    failed = {o.event.command_id: o.event for o in outcomes}
    assert set(failed) == {reply.command_id, release.command_id, ping.command_id}
    assert all(
        isinstance(e, CommandFailed) and e.reason is FailureReason.UNCONFIRMED for e in failed.values()
    )
    # Idempotent ones first, in their order, then the untouched outbox; internal steps gone.
    assert [p.command.command_id for p in tracker.outbox] == [
        take.command_id,
        history.command_id,
        waiting.command_id,
    ]
    assert tracker.outstanding == []


def test_tracker_http_commands_survive_a_socket_drop() -> None:
    tracker = CommandTracker(10.0)
    reply = SendReply(conversation="chat1", text="hi")
    tracker.enqueue(reply)
    (pending,) = tracker.take_sendable(live=True)
    tracker.mark_sent(pending, Transport.HTTP, 0.0)
    assert tracker.next_deadline() is None  # HTTP has its own timeout
    assert tracker.disconnected() == []
    outcome = tracker.answered(pending, (), 201)
    assert isinstance(outcome.event, CommandSucceeded)
    assert tracker.outstanding == []


def test_tracker_answered_uses_the_codec_outcome_or_synthesises_one() -> None:
    tracker = CommandTracker(10.0)
    take = TakeOver(conversation="c")
    pending = tracker.enqueue(take)
    tracker.take_sendable(live=True)
    tracker.mark_sent(pending, Transport.HTTP, 0.0)
    codec_says = CommandFailed(
        command_id=take.command_id, kind=take.kind, reason=FailureReason.NOT_FOUND, text="x"
    )
    assert tracker.answered(pending, (codec_says,), 404).event is codec_says
    pending = tracker.enqueue(take)
    event = tracker.answered(pending, (), 502).event
    assert isinstance(event, CommandFailed)
    assert (event.reason, event.text) == (FailureReason.SERVER_ERROR, "HTTP 502")


def test_tracker_unsend_and_settle_all() -> None:
    tracker = CommandTracker(10.0)
    sent, queued = TakeOver(conversation="a"), SendReply(conversation="b", text="t")
    tracker.enqueue(sent)
    (pending,) = tracker.take_sendable(live=True)
    tracker.mark_sent(pending, Transport.WS, 0.0)
    tracker.unsend(pending)
    assert tracker.outstanding == []
    assert tracker.outbox[0] is pending
    _send_all(tracker)
    tracker.enqueue(queued)
    tracker.enqueue(RefreshWaitingList(), internal=True)
    reasons = {o.event.command_id: o.event.reason for o in tracker.settle_all("stopped")}  # type: ignore[union-attr]
    assert reasons == {sent.command_id: FailureReason.UNCONFIRMED, queued.command_id: FailureReason.OFFLINE}


def test_tracker_a_held_command_keeps_its_place_and_holds_its_conversation() -> None:
    tracker = CommandTracker(10.0)
    take = TakeOver(conversation="p/a", command_id="take")
    reply = SendReply(conversation="p/a", text="after the take-over", command_id="reply")
    other = SendReply(conversation="p/b", text="elsewhere", command_id="other")
    for command in (take, reply, other):
        tracker.enqueue(command)
    batch = tracker.take_sendable(live=True, now=0.0)
    assert [p.command.command_id for p in batch] == ["take", "reply", "other"]
    # The store could not mark the take-over as sent: it and the rest of the batch go back, in order.
    batch[0].hold_until = 5.0
    tracker.put_back(batch)
    assert [p.command.command_id for p in tracker.outbox] == ["take", "reply", "other"]
    assert tracker.next_deadline() == 5.0
    ready = tracker.take_sendable(live=True, now=1.0)
    assert [p.command.command_id for p in ready] == ["other"]  # p/a waits behind its held take-over
    assert [p.command.command_id for p in tracker.take_sendable(live=True, now=5.0)] == ["take", "reply"]
    assert tracker.next_deadline() is None
