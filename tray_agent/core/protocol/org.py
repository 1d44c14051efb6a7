"""The "Org" dialect (FastAPI + Supabase, PROTOCOL.md 1): wire models, frame translation, REST commands.

Inbound WebSocket frames are parsed once, in C, by one module-level ``TypeAdapter`` over a union
discriminated on ``type`` (PERFORMANCE-NOTES "Design choices" 2). Every field is tolerant (see
:mod:`tray_agent.core.protocol.common`), so a known frame type with odd values still parses; junk
becomes :class:`~tray_agent.core.events.Ignored`. Nothing here raises out of ``parse_*``.

Decisions documented here (the server gives no better answer):

* **Sender kind of ``new_message``.** ``sender_type`` customer/agent/ai maps to CUSTOMER/AGENT/AI,
  except: the ticket follow-up cron (``customer_name == "System"``) and the busy /
  out-of-schedule auto-replies (``sender_type == "ai"`` with ``customer_id`` null) are SYSTEM.
  Frames from before ``sender_type`` existed (the 9-field legacy shape, only sent by the
  webhook) are CUSTOMER. ``customer_name`` is passed on only for customer messages (O5).
* **HumanRequested from ``new_message``.** The org server never broadcasts escalations (1.2 item
  3), so an escalation is inferred: a customer, AI or system message (the AI's hand-off
  message is the first to carry the new ``handled_by``) in a chat whose ``handled_by`` is
  ``"human"`` or ``"unassigned"`` while no ``human_agent_id`` is set (nobody will answer it: it
  went to humans but no human has it, or no handler at all) yields a HumanRequested after the
  MessageReceived. This repeats for every such message; the reducer dedupes (a conversation
  already waiting stays waiting). ``handled_by`` null (O8) never triggers it.
* **Assignment from ``new_message``.** REST escalate and assign broadcast nothing, but every later
  ``new_message`` of the chat carries ``handled_by`` and the agent ids (PROTOCOL.md 5). The codec
  remembers each chat's human holder (from frames, rows and my take-over answers) and emits an
  AssignmentChanged after the MessageReceived when a frame shows a new one: ``handled_by``
  ``"human"`` with ``human_agent_id`` (or an ``assigned_agent_id`` that is not the AI) is that
  agent; ``"ai"``/``"unassigned"`` is nobody; null, or ``"human"`` without any id (the REST message
  emitter passes none), says nothing. ``is_me`` compares the holder with my agent row id
  (:attr:`OrgCodec.my_agent_id`, learned from rows whose ``human_id`` is my user id and from my
  take-over answers), None while that is unknown. Agent names missing from an answer that is
  not enriched (the assign answer) are filled from earlier rows.
* **Waiting / assigned in the REST chat list.** A chat row is *assigned* when ``handled_by`` is
  ``"human"`` and a human agent id (or an assigned agent id other than the chat's AI agent: an
  AI hand-off leaves the AI in ``assigned_agent_id``) is set; it is *waiting* when it is not
  resolved/closed, not assigned, and ``handled_by`` is ``"human"`` or ``"unassigned"``.
  ``assigned_to_me`` compares the row's ``human_id`` (the human agent's auth user id) with the
  JWT ``sub`` (:attr:`OrgCodec.user_id`); None when either is unknown.
* **Resync (RefreshWaitingList).** Paging through every chat costs one GET per 100 chats on every
  resync (3,000 chats = 30 GETs a minute), and most chats are the AI's or closed. ``GET
  /crm/chats`` filters by one ``status_filter`` and one ``handled_by`` value (it has no "updated
  since", PROTOCOL.md 1.6), so a resync is a fixed list of segments (:data:`RESYNC_SEGMENTS`),
  each paged with ``skip``/``limit`` until the server's ``total``: every chat a human holds or a
  customer waits in (``handled_by`` human or unassigned, status open, pending or assigned), then
  the newest activity of all chats (no filter, newest first), read only until the rows reach the
  newest activity the previous resync saw (one page on the first resync). The global ``offset``
  of the command maps to (segment, skip) through the segment starts learned from earlier pages of
  the same resync (offset 0 starts one); an empty segment yields an empty page with ``has_more``
  and the next request repeats its offset, which the codec tells from a new resync by the offset
  it expects next (cleared when a resync ends or fails).
  The pages together list every waiting or human-held chat (``complete_list`` and
  ``complete_assignments``): a conversation missing from them is neither. ``limit`` is clamped
  to 1..100 (the server's bound).
* **Release.** The server has no unassign. ``PUT /crm/chats/{id}/assign`` with
  ``assigned_to_me: false`` and no ``assigned_agent_id`` answers **400 "No agent identified for
  assignment"** (``assign_chat``: ``target_agent_id = assignment.assigned_agent_id`` -> None ->
  ``HTTPException(400, ...)``; ``ChatAssign.assigned_agent_id`` is documented "Required if
  assigned_to_me is False"), and there is no ``PUT /crm/chats/{id}`` or DELETE route. The most
  faithful release is to hand the chat back to its AI agent: ``PUT .../assign
  {"assigned_agent_id": <chat.ai_agent_id>, "assigned_to_me": false}``, which the server turns
  into ``handled_by="ai"``, ``status="assigned"`` (``human_agent_id`` is left as it was). The
  codec learns each chat's ``ai_agent_id`` from frames and REST rows (a bounded cache); when it
  is unknown, encoding Release raises ``EncodeError(INVALID)`` (refresh first).
"""

from __future__ import annotations

import dataclasses
import logging
import types
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tray_agent.core.commands import (
    Command,
    LoadHistory,
    Ping,
    RefreshWaitingList,
    Release,
    SendReply,
    TakeOver,
    failed,
    succeeded,
)
from tray_agent.core.events import (
    AgentRef,
    AssignmentAction,
    AssignmentChanged,
    Attachment,
    CommandFailed,
    CommandSucceeded,
    Connected,
    ConversationSummary,
    ConversationUpdated,
    Dialect,
    Event,
    FailureReason,
    HistoryPage,
    HumanRequested,
    Ignored,
    KeepaliveReceived,
    MessageReceived,
    SenderKind,
    WaitingChanged,
    WaitingListPage,
)
from tray_agent.core.protocol.base import EncodeError, HttpCall, Outbound, UrlError, WsFrame, websocket_url
from tray_agent.core.protocol.common import (
    JsonObject,
    LooseBool,
    LooseObject,
    LooseStr,
    Metadata,
    NullableList,
    ObjectOrNone,
    OptInt,
    Timestamp,
    TypeHead,
    clamp,
    classify_unparsed,
    validate_json_lenient,
)

logger = logging.getLogger(__name__)

MAX_FRAME_SIZE = 16 * 1024 * 1024
"""uvicorn's default max message (PROTOCOL.md 1.4); the server never sends more."""
MAX_PAGE = 100
"""``limit`` bound of ``GET /crm/chats`` and ``GET /crm/chats/{id}/messages``."""

_PING = '{"type":"ping"}'
_PONG = '{"type":"pong"}'
_CLOSED_STATUSES = frozenset({"resolved", "closed"})
_AI_CACHE_SIZE = 10_000
RESYNC_SEGMENTS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("handled_by", "human"), ("status_filter", "open")),
    (("handled_by", "human"), ("status_filter", "pending")),
    (("handled_by", "human"), ("status_filter", "assigned")),
    (("handled_by", "unassigned"), ("status_filter", "open")),
    (("handled_by", "unassigned"), ("status_filter", "pending")),
    (),  # recent activity of every chat, newest first, down to the last resync's newest
)
"""The filters of each resync segment, in order (see the module docstring)."""
_AGENT_NAMES_SIZE = 1_000


# ---------------------------------------------------------------------------------------------
# Inbound wire models (extra fields ignored, every field tolerant)
# ---------------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OrgAttachmentIn(_In):
    """``attachment`` of a message: ``type`` is image/video/document or a MIME type (O4)."""

    url: LooseStr = ""
    type: LooseStr = ""
    name: LooseStr = ""


class OrgMessageIn(_In):
    """A ``messages`` row (REST Message, and ``new_message.data.last_message``)."""

    id: LooseStr = ""
    chat_id: LooseStr = ""
    sender_type: LooseStr = ""
    sender_id: LooseStr = ""
    sender_name: LooseStr = ""
    content: LooseStr = ""
    ticket_id: LooseStr = ""
    metadata: Metadata = Field(default_factory=dict)
    attachment: ObjectOrNone[OrgAttachmentIn] = None
    created_at: Timestamp = None
    updated_at: Timestamp = None


class OrgChatIn(_In):
    """A ``chats`` row as REST returns it (list, get, assign, escalate, resolve, chat_update data)."""

    id: LooseStr = ""
    organization_id: LooseStr = ""
    customer_id: LooseStr = ""
    customer_name: LooseStr = ""
    assigned_agent_id: LooseStr = ""
    agent_name: LooseStr = ""
    ai_agent_id: LooseStr = ""
    ai_agent_name: LooseStr = ""
    human_agent_id: LooseStr = ""
    human_id: LooseStr = ""
    human_agent_name: LooseStr = ""
    handled_by: LooseStr = ""
    escalated_at: Timestamp = None
    escalation_reason: LooseStr = ""
    status: LooseStr = ""
    channel: LooseStr = ""
    unread_count: OptInt = None
    last_message_at: Timestamp = None
    last_message: ObjectOrNone[OrgMessageIn] = None
    created_at: Timestamp = None
    resolved_at: Timestamp = None
    resolved_by_agent_id: LooseStr = ""
    updated_at: Timestamp = None
    metadata: Metadata = Field(default_factory=dict)


class OrgNewMessageData(_In):
    """``new_message.data`` at HEAD: the legacy flat part plus the nested chat copy (1.2 item 2)."""

    chat_id: LooseStr = ""
    message_id: LooseStr = ""
    customer_id: LooseStr = ""
    customer_name: LooseStr = ""
    message_content: LooseStr = ""
    channel: LooseStr = ""
    handled_by: LooseStr = ""
    sender_type: LooseStr = ""
    sender_id: LooseStr = ""
    sender_name: LooseStr = ""
    is_new_chat: LooseBool = False
    was_reopened: LooseBool = False
    metadata: Metadata = Field(default_factory=dict)
    attachment: ObjectOrNone[OrgAttachmentIn] = None
    created_at: Timestamp = None
    ai_agent_id: LooseStr = ""
    ai_agent_name: LooseStr = ""
    assigned_agent_id: LooseStr = ""
    human_agent_id: LooseStr = ""
    human_agent_name: LooseStr = ""
    id: LooseStr = ""
    status: LooseStr = ""
    unread_count: OptInt = None
    last_message_at: Timestamp = None
    last_message: ObjectOrNone[OrgMessageIn] = None


class OrgConnectionEstablished(_In):
    """``connection_established``: the welcome frame (no timestamp)."""

    type: Literal["connection_established"]
    message: LooseStr = ""
    connection_count: OptInt = None


class OrgNewMessage(_In):
    """``new_message``."""

    type: Literal["new_message"]
    timestamp: Timestamp = None
    data: LooseObject[OrgNewMessageData] = Field(default_factory=OrgNewMessageData)


class OrgChatUpdate(_In):
    """``chat_update`` with any ``update_type``; ``data`` stays a plain JSON object."""

    type: Literal["chat_update"]
    timestamp: Timestamp = None
    update_type: LooseStr = ""
    data: JsonObject = Field(default_factory=dict)


class OrgPing(_In):
    """Server JSON ``ping`` after 30 s without a client frame (wants a ``pong``)."""

    type: Literal["ping"]
    timestamp: Timestamp = None
    message: LooseStr = ""


class OrgPong(_In):
    """Server ``pong`` answering our ``ping``."""

    type: Literal["pong"]
    timestamp: Timestamp = None


class OrgEcho(_In):
    """``echo`` of a client frame the server did not understand."""

    type: Literal["echo"]
    data: Any = None


class OrgDocumentNotice(_In):
    """Document-pipeline notifications forwarded from Redis (1.2 item 7); ignored by the app."""

    type: Literal[
        "file_upload_completed",
        "document_upload_completed",
        "file_upload_warning",
        "document_upload_warning",
        "file_upload_failed",
        "document_upload_failed",
    ]
    organization_id: LooseStr = ""
    agent_id: LooseStr = ""
    doc_id: LooseStr = ""
    filename: LooseStr = ""
    status: LooseStr = ""
    table: LooseStr = ""
    url: LooseStr = ""
    message: LooseStr = ""
    error: LooseStr = ""


OrgFrame = Annotated[
    OrgConnectionEstablished
    | OrgNewMessage
    | OrgChatUpdate
    | OrgPing
    | OrgPong
    | OrgEcho
    | OrgDocumentNotice,
    Field(discriminator="type"),
]


class OrgChatListIn(_In):
    """``GET /crm/chats`` answer."""

    chats: NullableList[OrgChatIn] = Field(default_factory=list)
    total: OptInt = None


class OrgMessageListIn(_In):
    """``GET /crm/chats/{id}/messages`` answer."""

    messages: NullableList[OrgMessageIn] = Field(default_factory=list)
    total: OptInt = None


class OrgErrorIn(_In):
    """FastAPI error body: ``detail`` is a string, or a list of ``{loc, msg, type}`` for 422."""

    detail: Any = None


_FRAMES: TypeAdapter[OrgFrame] = TypeAdapter(OrgFrame)
_HEAD: TypeAdapter[TypeHead] = TypeAdapter(TypeHead)
_CHAT: TypeAdapter[OrgChatIn] = TypeAdapter(OrgChatIn)
_CHAT_LIST: TypeAdapter[OrgChatListIn] = TypeAdapter(OrgChatListIn)
_MESSAGE: TypeAdapter[OrgMessageIn] = TypeAdapter(OrgMessageIn)
_MESSAGE_LIST: TypeAdapter[OrgMessageListIn] = TypeAdapter(OrgMessageListIn)
_ERROR: TypeAdapter[OrgErrorIn] = TypeAdapter(OrgErrorIn)


# ---------------------------------------------------------------------------------------------
# Outbound models (extra fields forbidden)
# ---------------------------------------------------------------------------------------------


class OrgAssignBody(BaseModel):
    """Body of ``PUT /crm/chats/{id}/assign`` (``ChatAssign``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    assigned_agent_id: str | None = None
    assigned_to_me: bool = False
    reason: str | None = None


# ---------------------------------------------------------------------------------------------
# Translation helpers
# ---------------------------------------------------------------------------------------------


def _attachment(raw: OrgAttachmentIn | None, metadata: dict[str, Any]) -> Attachment | None:
    """The frame's attachment, else one described by metadata (``crm_chats._extract_attachment``)."""
    if raw is not None and raw.url:
        return Attachment(url=raw.url, kind=raw.type, name=raw.name)
    url = metadata.get("media_url") or metadata.get("file_url")
    if isinstance(url, str) and url:
        kind = metadata.get("media_type")
        name = metadata.get("filename")
        return Attachment(
            url=url,
            kind=kind if isinstance(kind, str) else "",
            name=name if isinstance(name, str) else "",
        )
    return None


def _sender_kind(sender_type: str, customer_id: str, customer_name: str) -> SenderKind:
    if sender_type != "customer" and customer_name == "System":
        return SenderKind.SYSTEM  # ticket follow-up cron (jobs_scheduler.py)
    if sender_type == "customer" or not sender_type:
        return SenderKind.CUSTOMER  # "" = legacy 9-field frame, only ever sent by the webhook
    if sender_type == "agent" or sender_type == "human":
        return SenderKind.AGENT
    if sender_type == "ai":
        # Busy / out-of-schedule auto replies carry customer_id null (save_and_broadcast_system_message).
        return SenderKind.AI if customer_id else SenderKind.SYSTEM
    return SenderKind.SYSTEM


def _history_message(msg: OrgMessageIn, conversation: str) -> MessageReceived:
    kind = _sender_kind(msg.sender_type, "-", "")
    return MessageReceived(
        conversation=msg.chat_id or conversation,
        sender=kind,
        text=msg.content,
        attachment=_attachment(msg.attachment, msg.metadata),
        message_id=msg.id or None,
        sent_at=msg.created_at,
        sender_name=msg.sender_name,
        agent_id=msg.sender_id if kind is SenderKind.AGENT else "",
    )


def _is_waiting(handled_by: str, human_agent_id: str, status: str) -> bool:
    return handled_by in ("human", "unassigned") and not human_agent_id and status not in _CLOSED_STATUSES


class OrgCodec:
    """Codec of the org dialect (sans-I/O; see :class:`~tray_agent.core.protocol.base.DialectCodec`).

    Attributes:
        user_id: the JWT ``sub`` of the signed-in agent; set by the network layer after sign-in.
        org_id: the organization id of the socket URL.
    """

    dialect: Dialect = Dialect.ORG
    max_frame_size: int = MAX_FRAME_SIZE

    def __init__(self, user_id: str = "", org_id: str = "") -> None:
        self.user_id = user_id
        self.org_id = org_id
        self.my_agent_id = ""
        """My ``agents`` row id (frames name agents by row id, not by auth user id); learned from
        chat rows whose ``human_id`` is my user id and from my take-over answers."""
        self._ai_agents: OrderedDict[str, str] = OrderedDict()
        self._assignees: OrderedDict[str, str] = OrderedDict()  # chat -> human agent id ("" = none)
        self._agent_names: OrderedDict[str, str] = OrderedDict()  # agent id -> name
        self._segment_starts: list[int] = [0]  # global offset where each resync segment began
        self._continue_at: int | None = None  # the offset the resync in progress asks for next
        self._recent_floor: datetime | None = None  # newest activity the last resync saw
        self._recent_top: datetime | None = None  # newest activity this resync saw

    # -- frames --------------------------------------------------------------------------------

    def parse_frame(self, frame: str | bytes) -> Sequence[Event]:
        """Translate one WebSocket frame into domain events; never raises."""
        if len(frame) > self.max_frame_size:
            return (Ignored(kind="oversized", why=f"frame of {len(frame)} bytes"),)
        try:
            parsed = validate_json_lenient(_FRAMES, frame)
        except ValidationError as exc:
            return (classify_unparsed(frame, exc, _HEAD),)
        try:
            return self._translate(parsed)
        except Exception:  # a translation bug must never kill the receive loop
            logger.exception("org frame translation failed")
            return (Ignored(kind=_type_of(parsed), why="translation error"),)

    def _translate(self, frame: Any) -> Sequence[Event]:
        if isinstance(frame, OrgNewMessage):
            return self._new_message(frame)
        if isinstance(frame, OrgPing):
            return (KeepaliveReceived(kind="ping"),)
        if isinstance(frame, OrgPong):
            return (KeepaliveReceived(kind="pong"),)
        if isinstance(frame, OrgChatUpdate):
            return self._chat_update(frame)
        if isinstance(frame, OrgConnectionEstablished):
            return (Connected(user_id=self.user_id, connection_count=frame.connection_count),)
        if isinstance(frame, OrgEcho):
            return (Ignored(kind="echo", why="server echoed a client frame it did not understand"),)
        if isinstance(frame, OrgDocumentNotice):
            return (Ignored(kind=frame.type, why="document pipeline notice"),)
        return (Ignored(kind=_type_of(frame), why="unhandled frame"),)

    def _new_message(self, frame: OrgNewMessage) -> Sequence[Event]:
        data = frame.data
        last = data.last_message
        chat_id = data.chat_id or data.id or (last.chat_id if last is not None else "")
        if not chat_id:
            return (Ignored(kind="new_message", why="no chat_id"),)
        self._learn_ai_agent(chat_id, data.ai_agent_id)
        # "" (legacy 9-field frame, no sender_type and no nested copy) counts as the customer.
        sender_type = data.sender_type or (last.sender_type if last is not None else "")
        kind = _sender_kind(sender_type, data.customer_id, data.customer_name)
        is_customer = kind is SenderKind.CUSTOMER
        text = data.message_content or (last.content if last is not None else "")
        metadata = data.metadata or (last.metadata if last is not None else {})
        raw_attachment = data.attachment or (last.attachment if last is not None else None)
        sent_at = data.created_at or (last.created_at if last is not None else None) or frame.timestamp
        sender_name = data.sender_name or (last.sender_name if last is not None else "")
        if is_customer and not sender_name:
            sender_name = data.customer_name
        message = MessageReceived(
            conversation=chat_id,
            sender=kind,
            text=text,
            attachment=_attachment(raw_attachment, metadata),
            message_id=data.message_id or (last.id if last is not None else "") or None,
            sent_at=sent_at,
            customer_name=data.customer_name if is_customer else "",
            channel=data.channel,
            sender_name=sender_name,
            agent_id=(data.sender_id or data.human_agent_id) if kind is SenderKind.AGENT else "",
            is_new_chat=data.is_new_chat,
        )
        events: list[Event] = [message]
        change = self._frame_assignment(chat_id, data, sent_at)
        if change is not None:
            events.append(change)
        # The AI's hand-off message ("a human will contact you") is the first frame that shows
        # handled_by="human": the customer's own request went out while the AI still had the chat.
        if kind is not SenderKind.AGENT and _is_waiting(data.handled_by, data.human_agent_id, ""):
            human = HumanRequested(
                conversation=chat_id,
                customer_name=data.customer_name if is_customer else "",
                text=text if is_customer else "",  # the store fills in the customer's last words
                at=sent_at,
            )
            events.append(human)
        return tuple(events)

    def _frame_assignment(
        self, chat_id: str, data: OrgNewMessageData, at: datetime | None
    ) -> AssignmentChanged | None:
        """The assignment a ``new_message`` reveals, when it differs from the last one seen.

        REST escalate and assign broadcast nothing (PROTOCOL.md 5); the next ``new_message`` of
        the chat carries the new ``handled_by`` and agent ids, so the change is known at once.
        ``handled_by`` null says nothing (O8); ``"human"`` without any agent id says nothing
        either (the REST message emitter passes no agent ids; the AI hand-off has none yet).
        """
        self._learn_agent_name(data.human_agent_id, data.human_agent_name)
        if data.handled_by == "human":
            human = data.assigned_agent_id if data.assigned_agent_id != data.ai_agent_id else ""
            assignee = data.human_agent_id or human
            if not assignee:
                return None
        elif data.handled_by in ("ai", "unassigned"):
            assignee = ""
        else:
            return None
        previous = self._assignees.get(chat_id)
        self._learn_assignee(chat_id, assignee)
        if assignee == previous or (not assignee and not previous):
            return None  # nothing new (and a chat nobody was known to hold stays unheld)
        if not assignee:
            return AssignmentChanged(
                conversation=chat_id, action=AssignmentAction.UNASSIGNED, agent=None, is_me=None, at=at
            )
        return AssignmentChanged(
            conversation=chat_id,
            action=AssignmentAction.ASSIGNED,
            agent=AgentRef(agent_id=assignee, name=self._agent_name(assignee, data.human_agent_name)),
            is_me=(assignee == self.my_agent_id) if self.my_agent_id else None,
            at=at,
        )

    def _chat_update(self, frame: OrgChatUpdate) -> Sequence[Event]:
        data = frame.data
        chat_id = data.get("chat_id") or data.get("id")
        if not isinstance(chat_id, str) or not chat_id:
            return (Ignored(kind="chat_update", why="no chat_id"),)
        update = ConversationUpdated(
            conversation=chat_id,
            update_type=frame.update_type,
            fields=types.MappingProxyType(data),
            at=frame.timestamp,
        )
        if frame.update_type not in ("chat_resolved", "chat_created") or "status" not in data:
            return (update,)
        chat = _CHAT.validate_python(data)
        if not chat.id:
            chat = chat.model_copy(update={"id": chat_id})
        self._learn_ai_agent(chat_id, chat.ai_agent_id)
        summary = self.chat_summary(chat)
        if frame.update_type == "chat_resolved":
            return (
                update,
                WaitingChanged(conversation=chat_id, waiting=False, customer=summary, at=frame.timestamp),
            )
        if summary.waiting:
            return (
                update,
                WaitingChanged(conversation=chat_id, waiting=True, customer=summary, at=frame.timestamp),
            )
        return (update,)

    def chat_summary(self, chat: OrgChatIn) -> ConversationSummary:
        """Summarise a REST chat row for the conversation list (rules in the module docstring)."""
        # After an AI hand-off ``assigned_agent_id`` may still name the AI agent: only a human
        # agent id (or an assigned agent that is not the chat's AI) means a human has the chat.
        human_assignee = chat.assigned_agent_id if chat.assigned_agent_id != chat.ai_agent_id else ""
        assigned = chat.handled_by == "human" and bool(chat.human_agent_id or human_assignee)
        waiting = not assigned and _is_waiting(chat.handled_by, chat.human_agent_id, chat.status)
        agent: AgentRef | None = None
        assigned_to_me: bool | None = False
        self._learn_agent_name(chat.human_agent_id, chat.human_agent_name)
        self._learn_agent_name(chat.assigned_agent_id, chat.agent_name)
        if chat.human_id and chat.human_id == self.user_id and chat.human_agent_id:
            self.my_agent_id = chat.human_agent_id
        if assigned:
            agent_id = chat.human_agent_id or human_assignee
            agent = AgentRef(
                agent_id=agent_id,
                name=self._agent_name(agent_id, chat.human_agent_name or chat.agent_name),
            )
            assigned_to_me = (chat.human_id == self.user_id) if (chat.human_id and self.user_id) else None
            if assigned_to_me is None and self.my_agent_id:
                assigned_to_me = agent_id == self.my_agent_id
        if chat.id and chat.handled_by:
            self._learn_assignee(chat.id, agent.agent_id if agent is not None else "")
        last = chat.last_message
        return ConversationSummary(
            conversation=chat.id,
            customer_name=chat.customer_name,
            channel=chat.channel,
            last_message=last.content if last is not None else "",
            last_message_at=chat.last_message_at or (last.created_at if last is not None else None),
            waiting=waiting,
            waiting_since=chat.escalated_at if waiting else None,
            assigned=assigned,
            agent=agent,
            assigned_to_me=assigned_to_me,
            handled_by=chat.handled_by,
            status=chat.status,
        )

    def _learn_assignee(self, chat_id: str, agent_id: str) -> None:
        cache = self._assignees
        cache[chat_id] = agent_id
        cache.move_to_end(chat_id)
        if len(cache) > _AI_CACHE_SIZE:
            cache.popitem(last=False)

    def _learn_agent_name(self, agent_id: str, name: str) -> None:
        if not agent_id or not name:
            return
        cache = self._agent_names
        cache[agent_id] = name
        cache.move_to_end(agent_id)
        if len(cache) > _AGENT_NAMES_SIZE:
            cache.popitem(last=False)

    def _agent_name(self, agent_id: str, name: str) -> str:
        """``name``, else the name this agent id had elsewhere (answers that are not enriched)."""
        return name or self._agent_names.get(agent_id, "")

    def _learn_ai_agent(self, chat_id: str, ai_agent_id: str) -> None:
        if not ai_agent_id:
            return
        cache = self._ai_agents
        cache[chat_id] = ai_agent_id
        cache.move_to_end(chat_id)
        if len(cache) > _AI_CACHE_SIZE:
            cache.popitem(last=False)

    # -- commands ------------------------------------------------------------------------------

    def encode(self, command: Command) -> Outbound:
        """Express a command as a REST call (org has no WebSocket commands, PROTOCOL.md 1.3).

        Raises:
            EncodeError: bad conversation key, empty reply, unknown user id, or a Release whose
                chat's AI agent is unknown (see the module docstring).
        """
        if isinstance(command, Ping):
            return WsFrame(text=_PING)
        if isinstance(command, RefreshWaitingList):
            offset = max(0, command.offset)
            if offset == 0 and self._continue_at != 0:
                # A new resync (an empty first segment asks for offset 0 again: not new).
                self._segment_starts = [0]
                self._recent_top = None
            segment, skip = self._segment_of(offset)
            return HttpCall(
                method="GET",
                path="/crm/chats",
                query=(
                    *RESYNC_SEGMENTS[segment],
                    ("skip", str(skip)),
                    ("limit", str(clamp(command.limit, 1, MAX_PAGE))),
                ),
            )
        if isinstance(command, TakeOver):
            body = OrgAssignBody(assigned_to_me=True)
            return HttpCall(
                method="PUT",
                path=f"{_chat_path(command.conversation)}/assign",
                json=body.model_dump(exclude_none=True),
            )
        if isinstance(command, Release):
            path = _chat_path(command.conversation)
            ai_agent = self._ai_agents.get(command.conversation)
            if not ai_agent:
                raise EncodeError(
                    FailureReason.INVALID,
                    "the org server has no unassign, and this chat's AI agent is unknown (refresh first)",
                )
            body = OrgAssignBody(assigned_agent_id=ai_agent, assigned_to_me=False)
            return HttpCall(method="PUT", path=f"{path}/assign", json=body.model_dump(exclude_none=True))
        if isinstance(command, SendReply):
            path = _chat_path(command.conversation)
            if not command.text.strip():
                raise EncodeError(FailureReason.MISSING_FIELDS, "the reply is empty")
            if not self.user_id:
                raise EncodeError(FailureReason.INVALID, "not signed in: the agent's user id is unknown")
            return HttpCall(
                method="POST",
                path=f"{path}/messages",
                form=(("sender_type", "agent"), ("sender_id", self.user_id), ("content", command.text)),
            )
        if isinstance(command, LoadHistory):
            path = _chat_path(command.conversation)
            limit = clamp(command.limit, 1, MAX_PAGE)
            return HttpCall(
                method="GET",
                path=f"{path}/messages",
                query=(
                    ("sort_order", "desc"),
                    ("skip", str(max(0, command.page) * limit)),
                    ("limit", str(limit)),
                ),
            )
        raise EncodeError(FailureReason.INVALID, f"the org dialect cannot express {type(command).__name__}")

    def parse_response(self, command: Command, status: int, body: bytes) -> Sequence[Event]:
        """Translate the HTTP answer to a call from :meth:`encode`; never raises."""
        try:
            if 200 <= status < 300:
                return self._success(command, body)
            return (self._failure(command, status, body),)
        except Exception:  # never let a bad body or a bug escape into the network layer
            logger.exception("org response translation failed")
            if 200 <= status < 300:
                return (succeeded(command),)
            return (failed(command, FailureReason.SERVER_ERROR, f"HTTP {status}"),)

    def _success(self, command: Command, body: bytes) -> Sequence[Event]:
        if isinstance(command, (TakeOver, Release)):
            return self._assign_answer(command, body)
        if isinstance(command, SendReply):
            return self._reply_answer(command, body)
        if isinstance(command, RefreshWaitingList):
            return self._chats_answer(command, body)
        if isinstance(command, LoadHistory):
            return self._history_answer(command, body)
        return (succeeded(command),)

    def _assign_answer(self, command: TakeOver | Release, body: bytes) -> Sequence[Event]:
        done = succeeded(command)
        try:
            chat = validate_json_lenient(_CHAT, body)
        except ValidationError:
            return (done,)
        if not chat.id:
            chat = chat.model_copy(update={"id": command.conversation})
        self._learn_ai_agent(chat.id, chat.ai_agent_id)
        if isinstance(command, TakeOver) and (chat.assigned_agent_id or chat.human_agent_id):
            # assigned_to_me: the target is my agent row. The answer is not enriched (names and
            # human_id are null, PROTOCOL.md 5): names come from what rows said before.
            self.my_agent_id = chat.assigned_agent_id or chat.human_agent_id
        summary = self.chat_summary(chat)
        if isinstance(command, TakeOver):
            # Org assign broadcasts nothing (PROTOCOL.md O9): this answer is the only news of it.
            agent_id = chat.assigned_agent_id or chat.human_agent_id
            change = AssignmentChanged(
                conversation=command.conversation,
                action=AssignmentAction.ASSIGNED,
                agent=AgentRef(
                    agent_id=agent_id,
                    name=self._agent_name(agent_id, chat.agent_name or chat.human_agent_name),
                ),
                is_me=True,
                customer=summary,
                at=chat.updated_at,
            )
        else:
            change = AssignmentChanged(
                conversation=command.conversation,
                action=AssignmentAction.UNASSIGNED,
                agent=None,
                is_me=True,  # it was me who let go of the conversation
                customer=summary,
                at=chat.updated_at,
            )
        return (done, change)

    def _reply_answer(self, command: SendReply, body: bytes) -> Sequence[Event]:
        try:
            msg = validate_json_lenient(_MESSAGE, body)
        except ValidationError:
            return (succeeded(command),)
        done = CommandSucceeded(
            command_id=command.command_id,
            kind=command.kind,
            conversation=command.conversation,
            message_id=msg.id or None,
        )
        if not msg.id:
            return (done,)
        # The WS copy may never come (other worker process, O9); it has the same id (O6): upsert.
        echo = _history_message(msg, command.conversation)
        if echo.sender is SenderKind.AGENT and not echo.agent_id:
            echo = dataclasses.replace(echo, agent_id=self.user_id)
        return (done, echo)

    def _chats_answer(self, command: RefreshWaitingList, body: bytes) -> Sequence[Event]:
        self._continue_at = None  # unless this page says more follows
        try:
            page = validate_json_lenient(_CHAT_LIST, body)
        except ValidationError:
            return (failed(command, FailureReason.SERVER_ERROR, "unreadable chat list"),)
        rows = []
        for chat in page.chats:
            if not chat.id:
                continue
            self._learn_ai_agent(chat.id, chat.ai_agent_id)
            rows.append(self.chat_summary(chat))
        offset = max(0, command.offset)
        segment, skip = self._segment_of(offset)
        total = page.total
        count = len(page.chats)
        more_here = total is not None and skip + count < total and count > 0
        if segment == len(RESYNC_SEGMENTS) - 1:
            newest = max((r.last_message_at for r in rows if r.last_message_at is not None), default=None)
            if newest is not None and (self._recent_top is None or newest > self._recent_top):
                self._recent_top = newest
            oldest = min((r.last_message_at for r in rows if r.last_message_at is not None), default=None)
            floor = self._recent_floor
            # Newest first: once a row is no newer than what the last resync saw, the rest is known.
            if floor is None or oldest is None or oldest <= floor:
                more_here = False
            if not more_here:
                self._recent_floor = self._recent_top or floor
            has_more = more_here
        elif more_here:
            has_more = True
        else:
            del self._segment_starts[segment + 1 :]
            self._segment_starts.append(offset + count)  # the next segment starts here
            has_more = True
        self._continue_at = offset + count if has_more else None
        result = WaitingListPage(
            customers=tuple(rows),
            offset=offset,
            total=None,
            has_more=has_more,
            complete_list=True,
            complete_assignments=True,
        )
        return (succeeded(command), result)

    def _segment_of(self, offset: int) -> tuple[int, int]:
        """The resync segment a global offset falls in, and the ``skip`` within it."""
        starts = self._segment_starts
        segment = 0
        for index, start in enumerate(starts):
            if start <= offset:
                segment = index
        segment = min(segment, len(RESYNC_SEGMENTS) - 1)
        return segment, offset - starts[segment]

    def _history_answer(self, command: LoadHistory, body: bytes) -> Sequence[Event]:
        try:
            page = validate_json_lenient(_MESSAGE_LIST, body)
        except ValidationError:
            return (failed(command, FailureReason.SERVER_ERROR, "unreadable message list"),)
        limit = clamp(command.limit, 1, MAX_PAGE)
        skip = max(0, command.page) * limit
        messages = tuple(_history_message(m, command.conversation) for m in reversed(page.messages))
        total = page.total
        has_more = total is not None and skip + len(page.messages) < total and len(page.messages) > 0
        history = HistoryPage(conversation=command.conversation, messages=messages, has_more=has_more)
        return (succeeded(command), history)

    def _failure(self, command: Command, status: int, body: bytes) -> CommandFailed:
        if isinstance(command, RefreshWaitingList):
            self._continue_at = None  # the resync is over; the next one starts afresh
        text = _detail_text(body) or f"HTTP {status}"
        return failed(command, _reason_for(status, text), text)

    # -- the socket --------------------------------------------------------------------------

    def ws_url(self, base: str, *, token: str = "", org: str = "") -> str:
        """``/ws/{org_id}?token=JWT`` on ``base`` (``org`` or else :attr:`org_id`).

        Raises:
            UrlError: no organization id.
        """
        org_id = org or self.org_id
        if not org_id:
            raise UrlError("The organization id is missing in the settings.")
        return websocket_url(base, f"/ws/{quote(org_id, safe='')}", urlencode({"token": token}))

    def signed_in(self, user_id: str) -> None:
        """Remember my JWT ``sub``: it names me as the sender of replies and in assignments."""
        if user_id:
            self.user_id = user_id

    def displaced(self, close_code: int | None) -> bool:
        """Never: the org server keeps every socket of a user (``connection_count``)."""
        return False

    # -- keepalive -----------------------------------------------------------------------------

    def ping_frame(self) -> str:
        """The application-level ping (``{"type":"ping"}``)."""
        return _PING

    def pong_frame(self) -> str:
        """The answer to a server JSON ping (``{"type":"pong"}``)."""
        return _PONG


# ---------------------------------------------------------------------------------------------
# Module helpers
# ---------------------------------------------------------------------------------------------


def _chat_path(conversation: str) -> str:
    if not conversation or conversation.strip() != conversation:
        raise EncodeError(FailureReason.INVALID, f"not an org chat id: {conversation!r}")
    return f"/crm/chats/{quote(conversation, safe='')}"


def _detail_text(body: bytes) -> str:
    """The human text of a FastAPI error body (``detail`` string or 422 list), or ""."""
    try:
        detail = _ERROR.validate_json(body).detail
    except ValidationError:
        return ""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail[:10]:
            if not isinstance(item, dict):
                continue
            loc = item.get("loc")
            where = (
                ".".join(str(p) for p in loc if isinstance(p, (str, int))) if isinstance(loc, list) else ""
            )
            msg = item.get("msg")
            msg_text = msg if isinstance(msg, str) else "invalid"
            parts.append(f"{where}: {msg_text}" if where else msg_text)
        return "; ".join(parts)
    return ""


def _reason_for(status: int, text: str) -> FailureReason:
    lowered = text.lower()
    if status == 404:
        return FailureReason.NOT_FOUND
    if status == 409 or "already being handled by a human" in lowered:
        return FailureReason.ALREADY_ASSIGNED
    if status in (401, 403) or "must belong to an organization" in lowered:
        return FailureReason.ACCESS_DENIED
    if status == 422:
        return FailureReason.MISSING_FIELDS
    if status == 400:
        if "message failed" in lowered:  # channel delivery failed, message rolled back
            return FailureReason.SERVER_ERROR
        if "no agent identified" in lowered or "required" in lowered:
            return FailureReason.MISSING_FIELDS
        return FailureReason.INVALID
    return FailureReason.SERVER_ERROR


def _type_of(frame: Any) -> str:
    kind = getattr(frame, "type", "")
    return kind if isinstance(kind, str) else ""


__all__ = [
    "MAX_FRAME_SIZE",
    "OrgAssignBody",
    "OrgChatIn",
    "OrgChatListIn",
    "OrgCodec",
    "OrgErrorIn",
    "OrgFrame",
    "OrgMessageIn",
    "OrgMessageListIn",
    "OrgNewMessageData",
]
