"""Tests of the conversation table, its tab proxies and the chat message model."""

from __future__ import annotations

from datetime import timedelta

import pytest
from PySide6.QtCore import QModelIndex, Qt

from tests.gui.fakes import T0, SettableNow, make_env, page, summary
from tray_agent.core.events import (
    AgentRef,
    AssignmentAction,
    AssignmentChanged,
    CommandKind,
    CommandQueued,
    CommandSucceeded,
    HistoryPage,
    MessageReceived,
    SenderKind,
    WaitingChanged,
    WaitingListPage,
)
from tray_agent.core.state import Conversation, ConversationMap, History, MessageRecord, State
from tray_agent.ui.models import (
    KEY_ROLE,
    RECORD_ROLE,
    AllActiveProxy,
    Column,
    ConversationTableModel,
    MessageListModel,
    MineProxy,
    WaitingProxy,
    conflict_text,
    waiting_duration,
)

pytestmark = pytest.mark.gui


def build(env, clock=None):
    model = ConversationTableModel(lambda: env.bridge.state, "dashboard", clock=clock or SettableNow(T0))
    env.bridge.conversations_changed.connect(model.on_conversations_changed)
    proxies = (WaitingProxy(model), MineProxy(model), AllActiveProxy(model))
    return model, proxies


def keys(proxy) -> list[str]:
    return list(proxy.keys())


def test_models_pass_the_model_tester_through_batches(qtmodeltester):
    env = make_env()
    env.feed(page(summary("p/1", since=timedelta(minutes=-3)), summary("p/2", since=timedelta(minutes=-9))))
    model, proxies = build(env)
    qtmodeltester.check(model)
    for proxy in proxies:
        qtmodeltester.check(proxy)

    # A batch of inserts (new customers), updates (messages) and moves (assignment to me).
    env.feed(
        *(
            WaitingChanged(conversation=f"p/{i}", waiting=True, customer=summary(f"p/{i}"), at=T0)
            for i in range(3, 40)
        ),
        MessageReceived(conversation="p/1", sender=SenderKind.CUSTOMER, text="again", sent_at=T0),
        AssignmentChanged(
            conversation="p/2", action=AssignmentAction.ASSIGNED, agent=AgentRef("me-1"), is_me=True
        ),
    )
    assert model.rowCount() == 39
    assert len(keys(proxies[0])) == 38  # p/2 taken: no longer waiting (issue 14)
    assert keys(proxies[1]) == ["p/2"]

    # Removals from the tabs: customers stop waiting, I release.
    env.feed(
        *(WaitingChanged(conversation=f"p/{i}", waiting=False, at=T0) for i in range(3, 20)),
        AssignmentChanged(conversation="p/2", action=AssignmentAction.UNASSIGNED),
    )
    assert len(keys(proxies[0])) == 22
    assert keys(proxies[1]) == []
    assert len(keys(proxies[2])) == 39  # the dashboard's "All" tab keeps every known customer


def test_source_model_removes_rows_and_passes_the_tester(qtmodeltester):
    convs = {f"k{i}": Conversation(key=f"k{i}", customer_name=f"N{i}", waiting=True) for i in range(10)}
    state = {"s": State(conversations=ConversationMap(convs.values()))}
    model = ConversationTableModel(lambda: state["s"], "org", clock=SettableNow(T0))
    proxy = WaitingProxy(model)
    qtmodeltester.check(model)
    qtmodeltester.check(proxy)
    survivors = [c for k, c in convs.items() if k not in {"k2", "k3", "k7"}]
    state["s"] = State(conversations=ConversationMap(survivors))
    model.on_conversations_changed({"k2", "k3", "k7"})
    assert model.rowCount() == 7
    assert {model.key_at(r) for r in range(7)} == {c.key for c in survivors}
    assert all(model.row_of(c.key) == r for r in range(7) if (c := model.conversation_at(r)))
    assert sorted(keys(proxy)) == sorted(c.key for c in survivors)


def test_tabs_filter_and_order(qtbot):
    env = make_env()
    env.feed(
        page(
            summary("p/new", "Newer", since=timedelta(minutes=-2), last_at=timedelta(minutes=-1)),
            summary("p/old", "Oldest", since=timedelta(minutes=-30), last_at=timedelta(minutes=-20)),
            summary(
                "p/mine",
                "Mine",
                since=timedelta(minutes=-10),
                assigned=True,
                agent=AgentRef("me-1"),
                to_me=True,
            ),
            summary(
                "p/other", "Other", since=timedelta(minutes=-20), assigned=True, agent=AgentRef("x", "Bob")
            ),
            summary("p/idle", "Idle", waiting=False, last_at=timedelta(minutes=-50)),
        )
    )
    _model, (waiting, mine, everyone) = build(env)
    # Issue 14: only customers nobody has taken are waiting (taken ones used to stay listed).
    assert keys(waiting) == ["p/old", "p/new"]  # oldest first
    assert keys(mine) == ["p/mine"]
    assert keys(everyone) == ["p/mine", "p/new", "p/other", "p/old", "p/idle"]  # latest first, then key
    assert waiting.index(1, Column.AGENT).data() == "Nobody yet"
    assert mine.index(0, Column.AGENT).data() == "Me"
    assert mine.index(0, Column.WAITING).data() == ""  # taken: no waiting timer runs
    assert len(keys(waiting)) == len(env.bridge.state.waiting_list()) == env.bridge.state.waiting_count

    waiting.set_search_text("OLD")
    assert keys(waiting) == ["p/old"]
    waiting.set_search_text("shop page")  # channel matches every row
    assert len(keys(waiting)) == 2
    waiting.set_search_text("")

    # A customer waiting longer moves up; a new message moves a row to the top of "All".
    env.feed(MessageReceived(conversation="p/idle", sender=SenderKind.CUSTOMER, text="hi?", sent_at=T0))
    assert keys(everyone)[0] == "p/idle"


def test_org_all_active_hides_resolved_chats(qtbot):
    env = make_env()
    env.feed(page(summary("c1", status="open"), summary("c2", status="resolved", waiting=False)))
    model = ConversationTableModel(lambda: env.bridge.state, "org", clock=SettableNow(T0))
    everyone = AllActiveProxy(model)
    assert keys(everyone) == ["c1"]
    assert model.headerData(Column.CHANNEL, Qt.Orientation.Horizontal) == "Channel"


def test_waiting_time_ticks_only_while_active(qtbot):
    env = make_env()
    clock = SettableNow(T0)
    env.feed(page(summary("p/1", since=timedelta(minutes=-5))))
    model, (waiting, _, _) = build(env, clock)
    assert waiting.index(0, Column.WAITING).data() == "5:00"
    clock.advance(61)
    with qtbot.waitSignal(model.ticked):
        model.tick()
    assert waiting.index(0, Column.WAITING).data() == "6:01"
    model.set_ticking(True)
    assert model.ticking
    model.set_active(False)  # hidden: no timer at all
    assert not model.ticking
    model.set_ticking(True)
    assert not model.ticking


def test_hidden_model_defers_changes_until_shown(qtbot):
    env = make_env()
    model, (waiting, _, _) = build(env)
    model.set_active(False)
    env.feed(page(summary("p/1"), summary("p/2")))
    assert model.rowCount() == 0
    assert model.pending_count == 2
    model.set_active(True)
    assert model.rowCount() == 2
    assert len(keys(waiting)) == 2


def test_ten_thousand_waiting_customers_load_in_one_batch(qtbot, qtmodeltester):
    env = make_env()
    model, (waiting, _mine, _everyone) = build(env)
    qtmodeltester.check(waiting)
    rows = [summary(f"p/{i}", since=timedelta(seconds=-((i * 7919) % 10_000) - 1)) for i in range(10_000)]
    env.feed(page(*rows))
    assert model.rowCount() == 10_000
    assert waiting.rowCount() == 10_000
    first = waiting.key_at(0)
    assert env.bridge.state.conversation(first).waiting_since == min(r.waiting_since for r in rows)
    # A later single change is a move, not a reset.
    resets: list[int] = []
    waiting.modelReset.connect(lambda: resets.append(1))
    env.feed(WaitingChanged(conversation="p/5", waiting=False, at=T0))
    assert waiting.rowCount() == 9_999
    assert resets == []


def test_paged_resync_inserts_in_runs_and_keeps_the_order(qtbot, qtmodeltester):
    """A resync arrives in pages: each page lands as a few row runs, never a reset, in order."""
    env = make_env()
    model, (waiting, _mine, everyone) = build(env)
    env.feed(page(summary("p/seed", since=timedelta(seconds=-1))))
    qtmodeltester.check(waiting)
    inserted: list[tuple[int, int]] = []
    resets: list[int] = []
    waiting.rowsInserted.connect(lambda _parent, first, last: inserted.append((first, last)))
    waiting.modelReset.connect(lambda: resets.append(1))
    total = 1_000
    for offset in range(0, total, 100):
        # Oldest first across pages, as the servers send them; page 5 interleaves with the rest.
        rows = [
            summary(
                f"p/{i}",
                since=timedelta(seconds=-1010.5 + (i - 500) * 5 if offset == 500 else -(total - i) - 10),
            )
            for i in range(offset, offset + 100)
        ]
        inserted.clear()
        env.feed(WaitingListPage(customers=tuple(rows), offset=offset, total=total, complete_list=False))
        assert sum(last - first + 1 for first, last in inserted) == 100
        assert len(inserted) == (100 if offset == 500 else 1)  # runs, not one per row
        fresh = WaitingProxy(model)  # built from scratch: the reference order
        assert keys(waiting) == keys(fresh)
    assert resets == []
    assert waiting.rowCount() == total + 1
    assert everyone.rowCount() == total + 1


def test_bulk_removal_resets_once_and_keeps_the_order(qtbot, qtmodeltester):
    env = make_env()
    model, (waiting, _mine, everyone) = build(env)
    env.feed(page(*(summary(f"p/{i}", since=timedelta(seconds=-((i * 37) % 500) - 1)) for i in range(500))))
    qtmodeltester.check(waiting)
    resets: list[int] = []
    waiting.modelReset.connect(lambda: resets.append(1))
    env.feed(
        *(WaitingChanged(conversation=f"p/{i}", waiting=False, at=T0) for i in range(0, 500, 3)),
        WaitingChanged(conversation="p/new", waiting=True, customer=summary("p/new"), at=T0),
    )
    assert resets == [1]
    assert keys(waiting) == keys(WaitingProxy(model))
    assert waiting.rowCount() == 500 - len(range(0, 500, 3)) + 1
    assert all(waiting.row_of(key) == row for row, key in enumerate(keys(waiting)))
    assert all(waiting.row_of(f"p/{i}") == -1 for i in range(0, 500, 3))
    # A bulk of moves: 100 customers write, in a new order; the "all" tab sorts by activity.
    everyone_resets: list[int] = []
    everyone.modelReset.connect(lambda: everyone_resets.append(1))
    env.feed(
        *(
            MessageReceived(
                conversation=f"p/{i}",
                sender=SenderKind.CUSTOMER,
                text=f"again {i}",
                sent_at=T0 + timedelta(seconds=(i * 37) % 101),
            )
            for i in range(1, 300, 3)
        )
    )
    assert everyone_resets == [1]
    assert keys(everyone) == keys(AllActiveProxy(model))
    assert len(set(keys(everyone))) == everyone.rowCount()  # no row twice
    assert all(everyone.row_of(key) == row for row, key in enumerate(keys(everyone)))
    env.feed(MessageReceived(conversation="p/1", sender=SenderKind.CUSTOMER, text="once more", sent_at=T0))
    assert keys(everyone).count("p/1") == 1
    assert keys(everyone) == keys(AllActiveProxy(model))


def test_cells_answer_no_role_outside_the_ones_data_passes_on(qtbot):
    """``data()`` returns None for roles outside ``_CELL_ROLES`` before any lookup: ``cell()``
    must answer nothing else, or a role added there would silently never reach the view."""
    from tray_agent.ui.models import _CELL_ROLES

    env = make_env()
    model, _proxies = build(env)
    env.feed(
        page(summary("p/1", "Ann", last="a long last message " * 5, since=timedelta(minutes=-3))),
        AssignmentChanged(conversation="p/1", action=AssignmentAction.ASSIGNED, agent=AgentRef("me-1")),
    )
    for role in range(0, 0x200):
        for column in range(model.columnCount()):
            if role not in _CELL_ROLES:
                assert model.cell("p/1", column, role) is None, (role, column)


def test_data_answers_nothing_for_an_invalid_index_or_a_row_past_the_end(qtbot):
    from tray_agent.ui.models import _CELL_ROLES

    env = make_env()
    model, (waiting, _, _) = build(env)
    env.feed(page(summary("p/1", "Ann")))
    past_end = model.createIndex(1, 0)  # no row 1: a stale index
    for role in _CELL_ROLES:
        for table in (model, waiting):
            assert table.data(QModelIndex(), role) is None
            assert table.data(table.createIndex(5, 0), role) is None
        assert model.data(past_end, role) is None
    assert model.data(model.index(0, Column.CUSTOMER)) == "Ann"
    assert waiting.data(waiting.index(0, Column.CUSTOMER)) == "Ann"
    right = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    alignment = Qt.ItemDataRole.TextAlignmentRole
    assert [waiting.index(0, c).data(alignment) for c in Column] == [None, None, None, right, None, right]


def test_markup_in_customer_data_is_returned_literally(qtbot):
    env = make_env()
    env.feed(page(summary("p/1", "<b>Eve</b><img src=x>", last="<a href='javascript:x'>click</a>\nline2")))
    _model, (waiting, _, _) = build(env)
    assert waiting.index(0, Column.CUSTOMER).data() == "<b>Eve</b><img src=x>"
    assert waiting.index(0, Column.LAST_MESSAGE).data() == "<a href='javascript:x'>click</a> line2"
    tooltip = waiting.index(0, Column.LAST_MESSAGE).data(Qt.ItemDataRole.ToolTipRole)
    assert "&lt;a href=" in tooltip
    assert "<a href" not in tooltip
    assert waiting.index(0, 0).data(KEY_ROLE) == "p/1"


def test_message_list_model_diffs_histories(qtmodeltester):
    records = [MessageRecord(sender=SenderKind.CUSTOMER, text=f"m{i}", message_id=str(i)) for i in range(5)]
    model = MessageListModel(History(records[2:4]))
    qtmodeltester.check(model)
    inserted: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda parent, first, last: inserted.append((first, last)))
    model.set_history(History(records[2:5]))  # appended
    model.set_history(History(records))  # older page at the top
    assert inserted == [(2, 2), (0, 1)]
    changed: list[int] = []
    model.dataChanged.connect(lambda tl, br, roles=(): changed.append(tl.row()))
    replaced = History(records).replaced(
        3, MessageRecord(sender=SenderKind.CUSTOMER, text="edited", message_id="3")
    )
    model.set_history(replaced)
    assert changed == [3]
    assert model.index(3, 0).data() == "edited"
    assert model.index(3, 0).data(RECORD_ROLE).message_id == "3"
    model.set_history(History(records[:2]))  # anything else: reset
    assert model.rowCount() == 2
    assert model.rowCount(model.index(0, 0)) == 0
    assert model.data(QModelIndex()) is None


def test_message_model_follows_the_store(qtmodeltester):
    env = make_env()
    env.feed(
        HistoryPage(conversation="c", messages=(MessageReceived(conversation="c", text="hi", sent_at=T0),))
    )
    model = MessageListModel(env.bridge.state.conversation("c").messages)
    qtmodeltester.check(model)
    env.feed(CommandQueued(command_id="x1", kind=CommandKind.REPLY, conversation="c", text="hello"))
    model.set_history(env.bridge.state.conversation("c").messages)
    env.feed(CommandSucceeded(command_id="x1", kind=CommandKind.REPLY, conversation="c", message_id="m9"))
    model.set_history(env.bridge.state.conversation("c").messages)
    assert model.rowCount() == 2
    assert model.record_at(1).mine


def test_format_and_conflict_helpers(qtbot):
    assert waiting_duration(59) == "0:59"
    assert waiting_duration(3600 + 120) == "1 h 2 min"
    assert waiting_duration(2 * 86400 + 3600) == "2 d 1 h"
    conv = Conversation(key="k", customer_name="Ann", assigned=True, agent=AgentRef("a", "Bob"))
    assert conflict_text(conv, "Customer is already assigned to x@y.z") == (
        "Could not take over Ann: Customer is already assigned to x@y.z"
    )
    assert conflict_text(conv, "Customer is already assigned to ") == "Ann is already being handled by Bob."
    assert conflict_text(None, "") == "This customer is already being handled by another agent."
