"""Tests of the per-customer chat window, driven by a real Store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from tests.gui.fakes import T0, Env, make_env, page, summary
from tests.gui.test_customer_service import ARTIFACTS, dark_palette, light_palette
from tests.helpers.fakes import FakeScheduler
from tray_agent.core.commands import (
    DiscardCommand,
    HandBack,
    Release,
    ResendCommand,
    Resolve,
    SendReply,
    TakeOver,
)
from tray_agent.core.events import (
    AgentRef,
    Attachment,
    CommandFailed,
    CommandKind,
    CommandSent,
    CommandSucceeded,
    ConversationUpdated,
    FailureReason,
    HistoryPage,
    MessageReceived,
    SenderKind,
)
from tray_agent.core.ports import DraftStore
from tray_agent.core.state import CommandState
from tray_agent.platform.storage import LocalStore
from tray_agent.ui.chat_window import (
    HISTORY_RETRY_DELAY,
    HISTORY_RETRY_MAX,
    ChatWindow,
    MemoryDraftStore,
    is_web_link,
)

pytestmark = pytest.mark.gui

KEY = "p/a"


def history(*messages: MessageReceived, has_more: bool = True) -> HistoryPage:
    return HistoryPage(conversation=KEY, messages=messages, has_more=has_more)


def msg(text: str, sender: SenderKind = SenderKind.CUSTOMER, minutes: int = -10, **kw) -> MessageReceived:
    return MessageReceived(
        conversation=KEY, sender=sender, text=text, sent_at=T0 + timedelta(minutes=minutes), **kw
    )


class Chat:
    """A chat window on a fresh env, with the links it tried to open."""

    def __init__(
        self, qtbot, tmp_path: Path, *, online: bool = True, drafts: DraftStore | None = None
    ) -> None:
        self.env = make_env(online=online)
        self.env.feed(page(summary(KEY, "Alice <i>A</i>", since=timedelta(minutes=-5))))
        self.opened: list[str] = []
        self.drafts = drafts if drafts is not None else MemoryDraftStore()
        self.window = ChatWindow(
            KEY,
            self.env.bridge,
            self.env.store.dispatch,
            self.env.sink,
            self.drafts,
            url_opener=lambda url: self.opened.append(url.toString()),
        )
        qtbot.addWidget(self.window)
        self.window.show()
        qtbot.waitExposed(self.window)

    def bubbles(self):
        return self.window.model.records


@pytest.fixture
def chat(qtbot, tmp_path):
    c = Chat(qtbot, tmp_path)
    yield c
    c.env.close()


def test_opening_loads_history_then_live_messages(chat, qtbot):
    assert chat.env.sink.history_pages(KEY) == [0]
    chat.env.feed(
        history(msg("hi"), msg("ai answer", SenderKind.AI, -9), msg("bot says", SenderKind.BOT, -8))
    )
    assert [r.text for r in chat.bubbles()] == ["hi", "ai answer", "bot says"]
    chat.env.feed(msg("live one", minutes=0))
    assert chat.bubbles()[-1].text == "live one"
    assert chat.window.windowTitle() == "Alice <i>A</i> — Shop page"
    qtbot.mouseClick(chat.window.older_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(chat.window.older_button, Qt.MouseButton.LeftButton)  # nothing new yet: no repeat
    assert chat.env.sink.history_pages(KEY) == [0, 1]
    chat.env.feed(history(msg("much older", minutes=-60)))
    chat.window.load_older()
    assert chat.env.sink.history_pages(KEY) == [0, 1, 2]
    assert chat.bubbles()[0].text == "much older"


def test_load_older_is_offered_only_while_the_server_has_older_messages(chat):
    older = chat.window._older_button
    assert not older.isHidden()  # nothing known yet: offered
    chat.env.feed(history(msg("hi"), has_more=True))
    assert not older.isHidden()
    chat.window.load_older()
    chat.env.feed(history(msg("the first one", minutes=-60), has_more=False))  # the server: no more
    assert older.isHidden()
    chat.window.load_older()  # scrolling to the top asks nothing more either
    assert chat.env.sink.history_pages(KEY) == [0, 1]


def test_a_conversation_shorter_than_a_page_offers_no_older_messages(chat):
    chat.env.feed(history(msg("hi"), msg("hello again", minutes=-5), has_more=False))
    assert chat.window._older_button.isHidden()
    chat.window.load_older()
    assert chat.env.sink.history_pages(KEY) == [0]


def test_enter_sends_and_shift_enter_starts_a_new_line(chat, qtbot):
    edit = chat.window.reply_edit
    edit.setFocus()
    qtbot.keyClicks(edit, "first line")
    qtbot.keyClick(edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(edit, "second line")
    assert chat.env.sink.of(SendReply) == []
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    reply = chat.env.sink.last(SendReply)
    assert (reply.conversation, reply.text) == (KEY, "first line\nsecond line")
    assert edit.toPlainText() == ""
    qtbot.keyClick(edit, Qt.Key.Key_Return)  # empty box: nothing sent
    assert len(chat.env.sink.of(SendReply)) == 1


def test_reply_pending_confirmed_failed_and_retry(chat, qtbot):
    window = chat.window
    window.reply_edit.setPlainText("Hello Alice")
    window.send_reply()
    chat.env.bridge.flush_now()
    mine = chat.bubbles()[-1]
    assert mine.mine
    assert mine.reply_state is CommandState.QUEUED
    assert window.delegate.status_text(mine, False) == "Sending…"
    first = chat.env.sink.last(SendReply)
    chat.env.feed(CommandSent(command_id=first.command_id, kind=CommandKind.REPLY, conversation=KEY))
    assert window.delegate.status_text(chat.bubbles()[-1], False) == "Sent"
    chat.env.feed(CommandSucceeded(command_id=first.command_id, kind=CommandKind.REPLY, conversation=KEY))
    assert chat.bubbles()[-1].reply_state is CommandState.CONFIRMED
    assert window.delegate.status_text(chat.bubbles()[-1], False) == "Delivered ✓"

    window.reply_edit.setPlainText("Second try")
    window.send_reply()
    second = chat.env.sink.last(SendReply)
    chat.env.feed(
        CommandFailed(
            command_id=second.command_id,
            kind=CommandKind.REPLY,
            conversation=KEY,
            reason=FailureReason.ACCESS_DENIED,
            text="Customer is already assigned to bob@example.com. Only the assigned agent can send.",
        )
    )
    failed = chat.bubbles()[-1]
    assert failed.reply_state is CommandState.FAILED
    assert window.failure_text.startswith("A reply could not be sent: Customer is already assigned to bob@")
    assert window.delegate.status_text(failed, False).startswith("Failed: Customer is already assigned")
    qtbot.mouseClick(window.retry_button, Qt.MouseButton.LeftButton)
    retry = chat.env.sink.last(SendReply)
    assert retry.text == "Second try"
    assert retry.command_id != second.command_id
    assert window.failure_text == ""
    chat.env.bridge.flush_now()
    assert chat.bubbles()[-1].command_id == retry.command_id


def test_retry_link_in_a_failed_bubble(chat, qtbot):
    window = chat.window
    window.reply_edit.setPlainText("again")
    window.send_reply()
    reply = chat.env.sink.last(SendReply)
    chat.env.feed(
        CommandFailed(
            command_id=reply.command_id,
            kind=CommandKind.REPLY,
            conversation=KEY,
            reason=FailureReason.TIMEOUT,
        )
    )
    view = window.message_view
    row = len(chat.bubbles()) - 1
    layout = bubble_layout(window, row)
    assert layout.retry is not None
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=layout.retry.center())
    assert [c.text for c in chat.env.sink.of(SendReply)] == ["again", "again"]


def test_offline_replies_show_as_queued(qtbot, tmp_path):
    chat = Chat(qtbot, tmp_path)
    chat.env.offline()
    assert chat.window.offline_label.isVisible()
    chat.window.reply_edit.setPlainText("sent later")
    chat.window.send_reply()
    chat.env.bridge.flush_now()
    pending = chat.bubbles()[-1]
    assert pending.reply_state is CommandState.QUEUED
    assert chat.window.delegate.status_text(pending, False).startswith(
        "Queued: will be sent when you are back online"
    )
    chat.env.online()
    assert chat.window.delegate.status_text(pending, False) == "Sending…"
    assert not chat.window.offline_label.isVisible()
    chat.env.close()


def test_drafts_survive_closing_and_restarting(qtbot, tmp_path):
    path = tmp_path / "data" / "store.sqlite3"
    store = LocalStore(path)
    chat = Chat(qtbot, tmp_path, drafts=store)
    qtbot.keyClicks(chat.window.reply_edit, "half-written answer")
    chat.window.close()
    assert store.drafts() == {KEY: "half-written answer"}
    chat.env.close()
    store.close()
    # "Restart": the account's store opened again from disk, a new window.
    reopened = LocalStore(path)
    again = Chat(qtbot, tmp_path, drafts=reopened)
    assert again.window.reply_edit.toPlainText() == "half-written answer"
    again.window.send_reply()
    assert reopened.drafts() == {}
    again.env.close()
    reopened.close()


def test_draft_is_written_once_typing_pauses(qtbot, tmp_path):
    store = MemoryDraftStore()
    chat = Chat(qtbot, tmp_path, drafts=store)
    qtbot.keyClicks(chat.window.reply_edit, "typing")
    qtbot.waitUntil(lambda: store.draft(KEY) == "typing")
    chat.env.close()


def test_a_new_draft_store_takes_the_reply_box_or_gives_its_draft(qtbot, tmp_path):
    chat = Chat(qtbot, tmp_path)
    chat.window.reply_edit.setPlainText("kept across the switch")
    account = LocalStore(tmp_path / "store.sqlite3")
    chat.window.set_draft_store(account)
    assert account.draft(KEY) == "kept across the switch"
    chat.window.reply_edit.clear()
    other = MemoryDraftStore()
    other.set_draft(KEY, "saved elsewhere")
    chat.window.set_draft_store(other)
    assert chat.window.reply_edit.toPlainText() == "saved elsewhere"
    chat.env.close()
    account.close()


def _unconfirmed_reply(chat: Chat, text: str) -> SendReply:
    chat.window.reply_edit.setPlainText(text)
    chat.window.send_reply()
    reply = chat.env.sink.last(SendReply)
    chat.env.feed(
        CommandSent(command_id=reply.command_id, kind=CommandKind.REPLY, conversation=KEY),
        CommandFailed(
            command_id=reply.command_id,
            kind=CommandKind.REPLY,
            conversation=KEY,
            reason=FailureReason.UNCONFIRMED,
            text="connection lost",
        ),
    )
    return reply


def test_unconfirmed_reply_can_be_sent_again_in_the_same_bubble(chat, qtbot):
    window = chat.window
    reply = _unconfirmed_reply(chat, "Your refund is on its way")
    count = len(chat.bubbles())
    mine = chat.bubbles()[-1]
    assert mine.reply_state is CommandState.UNCONFIRMED
    assert window.delegate.status_text(mine, False) == (
        "Not confirmed — the customer may or may not have received it"
    )
    assert window.failure_text == "Not confirmed — the customer may or may not have received it"
    assert window.resend_button.isVisible()
    assert window.discard_button.isVisible()
    assert not window.retry_button.isVisible()
    layout = bubble_layout(window, count - 1)
    assert layout.retry is None
    assert layout.resend is not None
    assert layout.discard is not None
    qtbot.mouseClick(window.resend_button, Qt.MouseButton.LeftButton)
    assert chat.env.sink.last(ResendCommand).command_id == reply.command_id
    assert chat.env.sink.of(SendReply) == [reply]  # no new reply: the same command again
    chat.env.bridge.flush_now()
    assert len(chat.bubbles()) == count
    assert chat.bubbles()[-1].reply_state is CommandState.QUEUED
    assert window.failure_text == ""
    chat.env.feed(
        CommandSent(command_id=reply.command_id, kind=CommandKind.REPLY, conversation=KEY),
        CommandSucceeded(command_id=reply.command_id, kind=CommandKind.REPLY, conversation=KEY),
    )
    assert len(chat.bubbles()) == count
    assert chat.bubbles()[-1].reply_state is CommandState.CONFIRMED
    assert window.delegate.status_text(chat.bubbles()[-1], False) == "Delivered ✓"


def test_unconfirmed_reply_can_be_discarded_from_its_bubble(chat, qtbot):
    window = chat.window
    reply = _unconfirmed_reply(chat, "maybe sent")
    row = len(chat.bubbles()) - 1
    layout = bubble_layout(window, row)
    assert layout.discard is not None
    qtbot.mouseClick(window.message_view.viewport(), Qt.MouseButton.LeftButton, pos=layout.discard.center())
    assert chat.env.sink.last(DiscardCommand).command_id == reply.command_id
    chat.env.bridge.flush_now()
    gone = chat.bubbles()[-1]
    assert gone.reply_state is CommandState.DISCARDED  # the store's state, not the window's memory
    assert window.delegate.status_text(gone, False) == "Discarded: not sent"
    after = bubble_layout(window, row)
    assert (after.retry, after.resend, after.discard) == (None, None, None)
    assert window.failure_text == ""
    assert chat.env.sink.of(SendReply) == [reply]
    # Closed and opened again: still discarded, still nothing offered.
    window.close()
    again = ChatWindow(KEY, chat.env.bridge, chat.env.store.dispatch, chat.env.sink)
    qtbot.addWidget(again)
    again.show()
    qtbot.waitExposed(again)
    assert again.delegate.status_text(again.model.records[-1], False) == "Discarded: not sent"
    assert again.failure_text == ""
    assert bubble_layout(again, row).discard is None


def test_a_retried_reply_stays_retried_in_a_new_window(chat, qtbot):
    window = chat.window
    window.reply_edit.setPlainText("lost")
    window.send_reply()
    first = chat.env.sink.last(SendReply)
    chat.env.feed(
        CommandFailed(command_id=first.command_id, kind=CommandKind.REPLY, conversation=KEY, text="boom")
    )
    qtbot.mouseClick(window.retry_button, Qt.MouseButton.LeftButton)
    retry = chat.env.sink.last(SendReply)
    assert retry.retry_of == first.command_id
    chat.env.feed(
        CommandFailed(command_id=retry.command_id, kind=CommandKind.REPLY, conversation=KEY, text="again")
    )
    window.close()
    again = ChatWindow(KEY, chat.env.bridge, chat.env.store.dispatch, chat.env.sink)
    qtbot.addWidget(again)
    again.show()
    qtbot.waitExposed(again)
    old = next(r for r in again.model.records if r.command_id == first.command_id)
    assert old.retried_as == retry.command_id
    assert "(retried)" in again.delegate.status_text(old, True)
    # Only the newest failure is offered again; retrying it sends the new one, not the old.
    qtbot.mouseClick(again.retry_button, Qt.MouseButton.LeftButton)
    assert chat.env.sink.last(SendReply).retry_of == retry.command_id


def test_markup_is_shown_literally_and_only_web_links_open(chat, qtbot):
    chat.env.feed(
        history(
            msg("<b>bold?</b> <a href='http://evil'>x</a>"),
            msg(
                "",
                attachment=Attachment(url="https://example.com/a.pdf", kind="document", name="a.pdf"),
                minutes=-9,
            ),
            msg("", attachment=Attachment(url="javascript:alert(1)", name="trap"), minutes=-8),
            msg("", attachment=Attachment(url="file:///etc/passwd", name="local"), minutes=-7),
        )
    )
    window = chat.window
    assert window.model.index(0, 0).data() == "<b>bold?</b> <a href='http://evil'>x</a>"
    assert window.handler_label.textFormat() == Qt.TextFormat.PlainText
    for row in (2, 3):
        text, clickable = window.delegate.link_text(chat.bubbles()[row])
        assert not clickable
        assert "not a web link" in text
        click_link(window, qtbot, row)
    assert chat.opened == []
    assert window.delegate.link_text(chat.bubbles()[1])[1]
    click_link(window, qtbot, 1)
    assert chat.opened == ["https://example.com/a.pdf"]
    assert not is_web_link("https:///nohost")


def test_banner_says_who_handles_the_chat(chat, qtbot):
    window = chat.window
    assert window.handler_text.startswith("Waiting for a human since")
    assert window.take_over_button.isEnabled()
    qtbot.mouseClick(window.take_over_button, Qt.MouseButton.LeftButton)
    take = chat.env.sink.last(TakeOver)
    chat.env.feed(CommandSucceeded(command_id=take.command_id, kind=CommandKind.TAKE_OVER, conversation=KEY))
    assert window.handler_text == "You are handling this customer."
    assert window.release_button.isVisible()
    assert window.release_button.isEnabled()
    qtbot.mouseClick(window.release_button, Qt.MouseButton.LeftButton)
    release = chat.env.sink.last(Release)
    chat.env.feed(CommandSucceeded(command_id=release.command_id, kind=CommandKind.RELEASE, conversation=KEY))
    # Released: they wait for nobody now (not "waiting since" their old time).
    assert window.handler_text == "Nobody is handling this customer."
    chat.env.feed(page(summary(KEY, "Alice", assigned=True, agent=AgentRef("x", "Sam"))))
    assert window.handler_text == "Sam is handling this customer."
    assert not window.take_over_button.isEnabled()
    chat.env.feed(page(summary(KEY, "Alice", waiting=False, handled_by="ai")))
    assert window.handler_text == "The AI is answering this customer."
    chat.env.feed(ConversationUpdated(conversation=KEY, update_type="chat_resolved", at=T0))
    assert window.handler_text == "The AI is answering this customer."


def test_conflict_in_the_chat_window(chat, qtbot):
    qtbot.mouseClick(chat.window.take_over_button, Qt.MouseButton.LeftButton)
    take = chat.env.sink.last(TakeOver)
    chat.env.feed(
        CommandFailed(
            command_id=take.command_id,
            kind=CommandKind.TAKE_OVER,
            conversation=KEY,
            reason=FailureReason.ALREADY_ASSIGNED,
            text="Customer is already assigned to sam@example.com",
        )
    )
    assert chat.window.conflict_banner.isVisible()
    assert "sam@example.com" in chat.window.conflict_banner.text
    assert chat.window.handler_text == "Another agent is handling this customer."


def test_active_window_marks_read_and_focuses(chat, qtbot):
    chat.env.feed(msg("unread!", minutes=0))
    expected = 0 if chat.window.isActiveWindow() else 1  # counted unless already being read
    assert chat.env.store.state.conversation(KEY).unread == expected
    chat.window.activateWindow()
    qtbot.waitUntil(chat.window.isActiveWindow)
    assert chat.env.store.state.focused == KEY
    assert chat.env.store.state.conversation(KEY).unread == 0
    chat.window.close()
    assert chat.env.store.state.focused is None


def test_widgets_have_accessible_names(chat):
    w = chat.window
    for widget in (
        w.reply_edit,
        w.send_button,
        w.message_view,
        w.older_button,
        w.take_over_button,
        w.release_button,
        w.retry_button,
        w.resend_button,
        w.discard_button,
        w.conflict_banner.close_button,
    ):
        assert widget.accessibleName(), widget


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_chat_screenshot(chat, theme):
    app = QApplication.instance()
    old = app.palette()
    app.setPalette(dark_palette() if theme == "dark" else light_palette())
    try:
        QApplication.processEvents()
        env = chat.env
        env.feed(
            history(
                msg("Hi, my order #1234 has not arrived <b>yet</b>.", minutes=-12),
                msg("I can help with that! Could you share your email?", SenderKind.AI, -11),
                msg(
                    "",
                    attachment=Attachment(url="https://example.com/receipt.pdf", name="receipt.pdf"),
                    minutes=-10,
                ),
                msg("Connecting you to a human agent.", SenderKind.BOT, -9),
                msg("Hello, Sam here.", SenderKind.AGENT, -8, sender_name="Sam", agent_id="x"),
            )
        )
        chat.window.reply_edit.setPlainText("Thanks, looking into it")
        chat.window.send_reply()
        chat.window.reply_edit.setPlainText("Failing reply")
        chat.window.send_reply()
        failing = chat.env.sink.last(SendReply)
        env.feed(
            CommandFailed(
                command_id=failing.command_id,
                kind=CommandKind.REPLY,
                conversation=KEY,
                reason=FailureReason.TIMEOUT,
                text="No answer from the server",
            )
        )
        chat.window.reply_edit.setPlainText("a draft")
        chat.window.resize(440, 640)
        QApplication.processEvents()
        ARTIFACTS.mkdir(exist_ok=True)
        assert chat.window.grab().save(str(ARTIFACTS / f"chat-{theme}.png"))
    finally:
        app.setPalette(old)


def bubble_layout(window: ChatWindow, row: int):
    from PySide6.QtWidgets import QStyleOptionViewItem

    view = window.message_view
    index = window.model.index(row, 0)
    view.scrollTo(index)
    QApplication.processEvents()
    option = QStyleOptionViewItem()
    option.initFrom(view)
    option.rect = view.visualRect(index)
    return window.delegate.bubble_layout(option, index)


def click_link(window: ChatWindow, qtbot, row: int) -> None:
    layout = bubble_layout(window, row)
    assert layout.link is not None
    point: QPoint = layout.link.topLeft() + QPoint(6, layout.link.height() // 2)
    qtbot.mouseClick(window.message_view.viewport(), Qt.MouseButton.LeftButton, pos=point)


def test_resolve_hand_back_and_take_anyway_in_the_chat_window(chat, qtbot):
    window = chat.window
    assert not window.resolve_button.isVisible()  # not mine yet
    qtbot.mouseClick(window.take_over_button, Qt.MouseButton.LeftButton)
    take = chat.env.sink.last(TakeOver)
    chat.env.feed(
        CommandFailed(
            command_id=take.command_id,
            kind=CommandKind.TAKE_OVER,
            conversation=KEY,
            reason=FailureReason.ALREADY_ASSIGNED,
            text="Sari is already handling this customer",
        )
    )
    assert window.conflict_banner.take_anyway_button.isVisible()
    qtbot.mouseClick(window.conflict_banner.take_anyway_button, Qt.MouseButton.LeftButton)
    forced = chat.env.sink.last(TakeOver)
    assert forced.force is True
    chat.env.feed(
        CommandSucceeded(command_id=forced.command_id, kind=CommandKind.TAKE_OVER, conversation=KEY)
    )
    assert window.resolve_button.isVisible()
    assert window.resolve_button.isEnabled()
    assert window.hand_back_button.isEnabled()
    qtbot.mouseClick(window.hand_back_button, Qt.MouseButton.LeftButton)
    assert chat.env.sink.last(HandBack).conversation == KEY
    qtbot.mouseClick(window.resolve_button, Qt.MouseButton.LeftButton)
    resolve = chat.env.sink.last(Resolve)
    chat.env.feed(CommandSucceeded(command_id=resolve.command_id, kind=CommandKind.RESOLVE, conversation=KEY))
    assert window.handler_text == "Nobody is handling this customer."
    assert not window.resolve_button.isVisible()
    assert chat.env.store.state.waiting_count == 0


# ---------------------------------------------------------------------------------------------
# A conversation the server does not know (a stale link: `tray-agent open inbox`)


def unknown_chat(qtbot, env, key: str = "inbox", scheduler: FakeScheduler | None = None) -> ChatWindow:
    window = ChatWindow(
        key,
        env.bridge,
        env.store.dispatch,
        env.sink,
        MemoryDraftStore(),
        scheduler=scheduler or FakeScheduler(),
    )
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def failed_chat(qtbot, reason: FailureReason, text: str) -> tuple[Env, FakeScheduler, ChatWindow]:
    """A chat window on the unknown conversation "inbox" whose first history load failed."""
    env = make_env()
    scheduler = FakeScheduler()
    window = unknown_chat(qtbot, env, scheduler=scheduler)
    env.feed(history_failed(reason, text))
    return env, scheduler, window


def history_failed(reason: FailureReason, text: str, key: str = "inbox") -> CommandFailed:
    return CommandFailed(command_id="h", kind=CommandKind.HISTORY, conversation=key, reason=reason, text=text)


def test_a_conversation_the_server_refuses_says_so_and_offers_no_action(qtbot):
    env = make_env()
    window = unknown_chat(qtbot, env)
    assert window.handler_text == "Loading…"
    env.feed(history_failed(FailureReason.NOT_FOUND, "Chat inbox\nnot found \u202e"))
    shown = "This conversation could not be opened: \u2068Chat inbox not found \u202e\u2069"
    assert window.handler_text == shown
    for button in (
        window.take_over_button,
        window.release_button,
        window.hand_back_button,
        window.resolve_button,
    ):
        assert not button.isEnabled()
    assert not window.send_button.isEnabled()
    assert window.older_button.isHidden()
    window.reply_edit.setPlainText("hello?")
    window.send_reply()  # Enter: nobody to send it to
    assert env.sink.of(SendReply) == []
    assert window.reply_edit.toPlainText() == "hello?"  # the draft stays
    env.close()


def test_a_refused_conversation_is_asked_again_on_reconnect_and_opens_if_it_loads(qtbot):
    env, scheduler, window = failed_chat(qtbot, FailureReason.NOT_FOUND, "Chat inbox not found")
    assert scheduler.pending == []  # a refusal is an answer: no retry while connected
    env.offline()
    assert env.sink.history_pages("inbox") == [0]
    env.online()  # a new session may know it (or the server's refusal was temporary)
    assert env.sink.history_pages("inbox") == [0, 0]
    assert "could not be opened" in window.handler_text  # until the answer comes
    env.feed(HistoryPage(conversation="inbox", messages=(), has_more=False))
    assert window.handler_text == "Nobody is handling this customer."
    assert window.send_button.isEnabled()
    assert env.store.state.refused == {}
    env.close()


def test_a_server_error_is_temporary_and_asked_again_after_a_delay_and_on_reconnect(qtbot):
    env, scheduler, window = failed_chat(qtbot, FailureReason.SERVER_ERROR, "HTTP 500")
    assert window.handler_text == (
        "The server could not load this conversation right now: HTTP 500. Trying again shortly."
    )
    assert window.send_button.isEnabled()  # as while loading: nothing says it does not exist
    assert window.older_button.isHidden()
    assert scheduler.run_soon(within=HISTORY_RETRY_DELAY - 1) == 0  # never at once (no busy loop)
    assert scheduler.run_soon(within=HISTORY_RETRY_DELAY) == 1
    assert env.sink.history_pages("inbox") == [0, 0]
    env.feed(history_failed(FailureReason.SERVER_ERROR, "HTTP 500"))  # failed again: same state
    # Asked again while it keeps failing, each time after twice the delay, at most 5 minutes.
    delays = []
    for _ in range(5):
        (timer,) = scheduler.pending
        delays.append(timer.delay)
        assert scheduler.run_soon(within=timer.delay) == 1
    assert (
        delays
        == [2 * HISTORY_RETRY_DELAY, 4 * HISTORY_RETRY_DELAY, 8 * HISTORY_RETRY_DELAY]
        + [HISTORY_RETRY_MAX] * 2
    )
    assert env.sink.history_pages("inbox") == [0] * 7
    env.offline()
    assert scheduler.pending == []  # no retry while offline
    env.online()
    assert env.sink.history_pages("inbox") == [0] * 8  # at once on reconnect
    (timer,) = scheduler.pending  # and again after the first delay if it still fails
    assert timer.delay == HISTORY_RETRY_DELAY
    env.feed(HistoryPage(conversation="inbox", messages=(), has_more=False))
    assert window.handler_text == "Nobody is handling this customer."
    assert scheduler.pending == []
    env.close()


def test_a_server_error_then_a_refusal_stops_the_retries(qtbot):
    env, scheduler, window = failed_chat(qtbot, FailureReason.SERVER_ERROR, "HTTP 502")
    assert len(scheduler.pending) == 1
    env.feed(history_failed(FailureReason.NOT_FOUND, "Chat inbox not found"))
    assert "could not be opened" in window.handler_text
    assert not window.send_button.isEnabled()
    assert scheduler.pending == []
    env.close()


def test_a_refused_conversation_that_appears_later_shows_normally(qtbot):
    env = make_env()
    window = unknown_chat(qtbot, env)
    env.feed(history_failed(FailureReason.INVALID, "not a dashboard conversation key: 'inbox'"))
    assert "could not be opened" in window.handler_text
    env.feed(MessageReceived(conversation="inbox", sender=SenderKind.CUSTOMER, text="hi", sent_at=T0))
    assert window.handler_text == "Nobody is handling this customer."
    assert [r.text for r in window.model.records] == ["hi"]
    assert window.send_button.isEnabled()
    assert window.take_over_button.isEnabled()
    assert not window.older_button.isHidden()
    env.close()


@pytest.mark.parametrize("reason", [FailureReason.TIMEOUT, FailureReason.UNCONFIRMED, FailureReason.OFFLINE])
def test_a_history_lost_with_the_connection_keeps_loading_and_is_asked_again(qtbot, reason):
    env = make_env()
    window = unknown_chat(qtbot, env)
    env.feed(history_failed(reason, "no answer"))
    assert window.handler_text == "Loading…"
    assert window.send_button.isEnabled()
    env.offline()
    env.online()
    assert env.sink.history_pages("inbox") == [0, 0]
    env.feed(HistoryPage(conversation="inbox", messages=(), has_more=False))
    assert window.handler_text == "Nobody is handling this customer."
    env.close()
