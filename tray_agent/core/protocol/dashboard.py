"""The "Dashboard" dialect (Go Fiber ``facebook-bot``, PROTOCOL.md 2): wire models, frames, commands, REST.

Inbound frames are parsed once, in C, by one module-level ``TypeAdapter`` over a union
discriminated on ``type`` (PERFORMANCE-NOTES "Design choices" 2); every field is tolerant (see
:mod:`tray_agent.core.protocol.common`). Nothing here raises out of ``parse_*``.

Notes:
* **Conversation key** = ``conversation_key(Dialect.DASHBOARD, page_id, customer_id)``: the chat
  id of a message equals the customer id; the page id comes from the broadcast envelope, else the
  message's recipient (customer messages) or sender (bot / agent messages), else the embedded
  Customer object. A frame whose key cannot be built is Ignored.
* **Direct replies carry no correlation** (G5): ``agent_assigned`` / ``agent_unassigned`` /
  ``message_sent`` / ``stopped_customers`` become :class:`ServerAcked` and ``error`` becomes
  :class:`ServerRejected` with the command kinds its exact text can belong to; the network layer
  matches them to its outstanding commands.
* **No message ids** (G7): MessageReceived.message_id is always None, also for REST history.
* **Two-step commands** (:class:`~tray_agent.core.protocol.base.Plan`). The server refuses
  ``assign_agent`` for a customer who has not asked for a human, so TakeOver first stops the bot
  (``PUT /customers/:id/stop`` stop=true, as the web dashboard does), then assigns. Resolve and
  HandBack release the customer (REST ``DELETE /customers/:id/agent``, which also succeeds when
  nobody has them) and then give them back to the bot (stop=false). The first failing step ends
  the command with one failure naming the step; later steps are never sent.
* **max_frame_size**: the server caps only *inbound* frames (512 KiB); what it sends is not capped.
  The biggest legitimate frame is a ``stopped_customers`` page of 200 customers (~1.5 KiB each,
  ~300 KiB), so the client caps received frames at 4 MiB: a generous margin that still bounds the
  memory a broken or hostile server can make us buffer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tray_agent.core.commands import (
    Command,
    HandBack,
    LoadHistory,
    Ping,
    RefreshWaitingList,
    Release,
    Resolve,
    SendReply,
    TakeOver,
    failed,
    succeeded,
)
from tray_agent.core.events import (
    AgentRef,
    AssignmentAction,
    AssignmentChanged,
    CommandFailed,
    CommandKind,
    Connected,
    ConversationSummary,
    Dialect,
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
    conversation_key,
    split_dashboard_key,
)
from tray_agent.core.fastinit import fast_constructor
from tray_agent.core.protocol.base import EncodeError, HttpCall, Outbound, Plan, WsFrame, websocket_url
from tray_agent.core.protocol.common import (
    LooseBool,
    LooseObject,
    LooseStr,
    NullableList,
    ObjectOrNone,
    OptBool,
    OptInt,
    Timestamp,
    TypeHead,
    clamp,
    classify_unparsed,
    parse_timestamp,
    to_bool,
    to_str,
    validate_json_lenient,
)

logger = logging.getLogger(__name__)

MAX_FRAME_SIZE = 4 * 1024 * 1024
"""Client cap on received frames (the server caps nothing it sends; see the module docstring)."""
MAX_STOPPED_PAGE = 200
"""``get_stopped_customers`` limit bound (<=0 or >200 -> the server uses 50)."""
MAX_REST_PAGE = 200
"""``limit`` bound of ``GET /customers`` and ``GET /messages/conversation/...``."""

_PING = '{"type":"ping"}'
_PONG = '{"type":"pong"}'
_BASE = "/api/dashboard"


# ---------------------------------------------------------------------------------------------
# Inbound wire models
# ---------------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class DashCustomerIn(_In):
    """The Customer object (``models/customer.go``), plus the stopped-list extras."""

    id: LooseStr = ""
    customer_id: LooseStr = ""
    customer_name: LooseStr = ""
    first_name: LooseStr = ""
    last_name: LooseStr = ""
    page_id: LooseStr = ""
    page_name: LooseStr = ""
    company_id: LooseStr = ""
    message_count: OptInt = None
    last_message: LooseStr = ""
    last_seen: Timestamp = None
    first_seen: Timestamp = None
    stop: LooseBool = False
    stopped_at: Timestamp = None
    is_assigned: LooseBool = False
    agent_name: LooseStr = ""
    agent_id: LooseStr = ""
    agent_email: LooseStr = ""
    assigned_at: Timestamp = None
    created_at: Timestamp = None
    updated_at: Timestamp = None
    time_since_last_conversation: LooseStr = ""
    minutes_since_last_conversation: OptInt = None
    is_assigned_to_me: OptBool = None


class DashPagination(_In):
    """``pagination`` of the stopped list (skip based) or of REST lists (page based)."""

    total: OptInt = None
    limit: OptInt = None
    skip: OptInt = None
    page: OptInt = None
    total_pages: OptInt = None
    has_more: LooseBool = False


class DashConnected(_In):
    """``connected``: always the first frame; names the user."""

    type: Literal["connected"]
    message: LooseStr = ""
    user_id: LooseStr = ""


class DashPong(_In):
    """``pong`` (no timestamp)."""

    type: Literal["pong"]


class DashError(_In):
    """``error``: text only, no correlation (G5)."""

    type: Literal["error"]
    error: LooseStr = ""


class DashStoppedData(_In):
    """``stopped_customers.data``."""

    customers: NullableList[DashCustomerIn] = Field(default_factory=list)
    pagination: LooseObject[DashPagination] = Field(default_factory=DashPagination)
    page_id: LooseStr = ""


class DashStoppedCustomers(_In):
    """``stopped_customers``: answer to ``get_stopped_customers``."""

    type: Literal["stopped_customers"]
    data: LooseObject[DashStoppedData] = Field(default_factory=DashStoppedData)
    timestamp: Timestamp = None


class DashAssignData(_In):
    """``data`` of ``agent_assigned`` / ``agent_unassigned``."""

    customer: ObjectOrNone[DashCustomerIn] = None
    agent_id: LooseStr = ""
    agent_email: LooseStr = ""
    agent_name: LooseStr = ""


class DashAgentAssigned(_In):
    """``agent_assigned``: direct success of ``assign_agent``."""

    type: Literal["agent_assigned"]
    data: LooseObject[DashAssignData] = Field(default_factory=DashAssignData)
    timestamp: Timestamp = None


class DashAgentUnassigned(_In):
    """``agent_unassigned``: direct success of ``unassign_agent``."""

    type: Literal["agent_unassigned"]
    data: LooseObject[DashAssignData] = Field(default_factory=DashAssignData)
    timestamp: Timestamp = None


class DashMessageSent(_In):
    """``message_sent``: direct success of ``send_message``, top-level fields, no ``data``."""

    type: Literal["message_sent"]
    customer_id: LooseStr = ""
    page_id: LooseStr = ""
    message: LooseStr = ""
    timestamp: Timestamp = None


class DashNewMessageData(_In):
    """``new_message.data`` in its three shapes (customer, bot, agent)."""

    chat_id: LooseStr = ""
    sender_id: LooseStr = ""
    sender_name: LooseStr = ""
    recipient_id: LooseStr = ""
    message: LooseStr = ""
    is_bot: LooseBool = False
    is_human: LooseBool = False
    agent_id: LooseStr = ""
    agent_email: LooseStr = ""
    agent_name: LooseStr = ""
    requires_human: LooseBool = False
    timestamp: Timestamp = None


class DashAgentRequestedData(_In):
    """``agent_requested.data``."""

    chat_id: LooseStr = ""
    customer_name: LooseStr = ""
    message: LooseStr = ""
    timestamp: Timestamp = None


class DashStopData(_In):
    """``customer_stop_status_changed.data``."""

    customer: ObjectOrNone[DashCustomerIn] = None
    stop: LooseBool = False
    timestamp: Timestamp = None


class DashAssignmentData(_In):
    """``data`` of the three assignment broadcasts (``agent_assignment_changed`` and the undocumented)."""

    customer_id: LooseStr = ""
    customer: ObjectOrNone[DashCustomerIn] = None
    agent_id: LooseStr = ""
    agent_email: LooseStr = ""
    agent_name: LooseStr = ""
    action: LooseStr = ""
    is_assigned: OptBool = None
    timestamp: Timestamp = None


class _Broadcast(_In):
    page_id: LooseStr = ""
    timestamp: Timestamp = None


class DashNewMessage(_Broadcast):
    """``new_message`` broadcast."""

    type: Literal["new_message"]
    data: LooseObject[DashNewMessageData] = Field(default_factory=DashNewMessageData)


class DashAgentRequested(_Broadcast):
    """``agent_requested`` broadcast (the AI decided the customer wants a human)."""

    type: Literal["agent_requested"]
    data: LooseObject[DashAgentRequestedData] = Field(default_factory=DashAgentRequestedData)


class DashStopChanged(_Broadcast):
    """``customer_stop_status_changed`` broadcast (stop true or false, G12)."""

    type: Literal["customer_stop_status_changed"]
    data: LooseObject[DashStopData] = Field(default_factory=DashStopData)


class DashAssignmentChanged(_Broadcast):
    """``agent_assignment_changed`` broadcast (assigned / unassigned)."""

    type: Literal["agent_assignment_changed"]
    data: LooseObject[DashAssignmentData] = Field(default_factory=DashAssignmentData)


class DashAgentStatusChanged(_Broadcast):
    """Undocumented ``agent_status_changed`` (REST ``DELETE /customers/:id/agent``)."""

    type: Literal["agent_status_changed"]
    data: LooseObject[DashAssignmentData] = Field(default_factory=DashAssignmentData)


class DashCustomerAssignmentUpdated(_Broadcast):
    """Undocumented ``customer_assignment_updated`` (REST ``PUT /customers/:id/assignment``)."""

    type: Literal["customer_assignment_updated"]
    data: LooseObject[DashAssignmentData] = Field(default_factory=DashAssignmentData)


DashFrame = Annotated[
    DashNewMessage
    | DashConnected
    | DashPong
    | DashError
    | DashStoppedCustomers
    | DashAgentAssigned
    | DashAgentUnassigned
    | DashMessageSent
    | DashAgentRequested
    | DashStopChanged
    | DashAssignmentChanged
    | DashAgentStatusChanged
    | DashCustomerAssignmentUpdated,
    Field(discriminator="type"),
]


class DashHistoryItemIn(_In):
    """One message of the REST history (conversation item or raw Message document)."""

    id: LooseStr = ""
    type: LooseStr = ""
    chat_id: LooseStr = ""
    message: LooseStr = ""
    timestamp: Timestamp = None
    is_bot: LooseBool = False
    is_human: LooseBool = False
    sender_id: LooseStr = ""
    sender_name: LooseStr = ""
    recipient_id: LooseStr = ""
    page_id: LooseStr = ""
    page_name: LooseStr = ""
    agent_id: LooseStr = ""
    agent_email: LooseStr = ""
    agent_name: LooseStr = ""


class DashHistoryIn(_In):
    """``GET /messages/conversation/:id`` (``conversation``, newest first) or ``/messages/chat/:id``."""

    customer_id: LooseStr = ""
    customer_name: LooseStr = ""
    page_id: LooseStr = ""
    page_name: LooseStr = ""
    conversation: NullableList[DashHistoryItemIn] = Field(default_factory=list)
    messages: NullableList[DashHistoryItemIn] = Field(default_factory=list)
    pagination: LooseObject[DashPagination] = Field(default_factory=DashPagination)


class DashCustomersIn(_In):
    """``GET /customers`` page (``customers`` may be null, G13)."""

    customers: NullableList[DashCustomerIn] = Field(default_factory=list)
    pagination: LooseObject[DashPagination] = Field(default_factory=DashPagination)
    page_id: LooseStr = ""
    company_id: LooseStr = ""


class DashErrorIn(_In):
    """REST error body ``{"error": ..., "details"?: ...}``."""

    error: LooseStr = ""
    details: LooseStr = ""


_FRAMES: TypeAdapter[DashFrame] = TypeAdapter(DashFrame)
_HEAD: TypeAdapter[TypeHead] = TypeAdapter(TypeHead)
_HISTORY: TypeAdapter[DashHistoryIn] = TypeAdapter(DashHistoryIn)
_CUSTOMERS: TypeAdapter[DashCustomersIn] = TypeAdapter(DashCustomersIn)
_ERROR: TypeAdapter[DashErrorIn] = TypeAdapter(DashErrorIn)


# ---------------------------------------------------------------------------------------------
# Outbound models (extra fields forbidden)
# ---------------------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DashTarget(_Out):
    """``data`` of ``assign_agent`` / ``unassign_agent``."""

    customer_id: str
    page_id: str


class DashAssignAgent(_Out):
    """``assign_agent`` command."""

    type: Literal["assign_agent"] = "assign_agent"
    data: DashTarget


class DashUnassignAgent(_Out):
    """``unassign_agent`` command."""

    type: Literal["unassign_agent"] = "unassign_agent"
    data: DashTarget


class DashSendMessage(_Out):
    """``send_message`` command: fields at the top level (G6)."""

    type: Literal["send_message"] = "send_message"
    customer_id: str
    page_id: str
    message: str


class DashStoppedQuery(_Out):
    """``data`` of ``get_stopped_customers``."""

    limit: int
    skip: int


class DashGetStoppedCustomers(_Out):
    """``get_stopped_customers`` command."""

    type: Literal["get_stopped_customers"] = "get_stopped_customers"
    data: DashStoppedQuery


class DashStopBody(_Out):
    """Body of REST ``PUT /api/dashboard/customers/:id/stop``."""

    page_id: str
    stop: bool


class DashPageBody(_Out):
    """Body of REST ``DELETE /api/dashboard/customers/:id/agent`` (JSON on DELETE)."""

    page_id: str


class DashRestSendBody(_Out):
    """Body of REST ``POST /api/dashboard/customers/:id/message``."""

    page_id: str
    message: str


# ---------------------------------------------------------------------------------------------
# Error texts (PROTOCOL.md 2.3 and 2.6) -> reason + the command kinds they can answer
# ---------------------------------------------------------------------------------------------

_TK, _RL, _RP, _RF = CommandKind.TAKE_OVER, CommandKind.RELEASE, CommandKind.REPLY, CommandKind.REFRESH

_EXACT_ERRORS: dict[str, tuple[FailureReason, tuple[CommandKind, ...]]] = {
    "You are not assigned to this customer": (FailureReason.NOT_ASSIGNED, (_RL,)),
    "Page not found or access denied": (FailureReason.ACCESS_DENIED, (_TK, _RL, _RF)),
    "Page not found in company configuration": (FailureReason.ACCESS_DENIED, (_RP,)),
    "Customer not found": (FailureReason.NOT_FOUND, (_TK, _RP, _RL)),
    "Missing required fields: customer_id, page_id, and message": (FailureReason.MISSING_FIELDS, (_RP,)),
    "customer_id and page_id are required": (FailureReason.MISSING_FIELDS, (_TK, _RL)),
    "Invalid request data": (FailureReason.MISSING_FIELDS, (_TK, _RL)),
    "Failed to retrieve stopped customers": (FailureReason.SERVER_ERROR, (_RF,)),
    "Failed to assign agent": (FailureReason.SERVER_ERROR, (_TK,)),
    "Failed to unassign agent": (FailureReason.SERVER_ERROR, (_RL,)),
    "Failed to get company configuration": (FailureReason.SERVER_ERROR, (_RP,)),
    "Failed to get company pages": (FailureReason.SERVER_ERROR, (_RP,)),
    "Failed to send message to customer": (FailureReason.SERVER_ERROR, (_RP,)),
}
_PREFIX_ERRORS: tuple[tuple[str, FailureReason, tuple[CommandKind, ...]], ...] = (
    # "<email>" is usually empty, so the text may end in a space (G9); REST adds a sentence.
    ("Customer is already assigned to", FailureReason.ALREADY_ASSIGNED, (_TK, _RP)),
    ("Customer has not requested human assistance", FailureReason.NO_HUMAN_REQUESTED, (_TK, _RP)),
    ("Failed to send message to customer", FailureReason.SERVER_ERROR, (_RP,)),
    ("Failed to ", FailureReason.SERVER_ERROR, (_TK, _RL, _RP, _RF)),
)


def classify_error(text: str) -> tuple[FailureReason, tuple[CommandKind, ...]]:
    """Map a server error text to a failure reason and the command kinds it can belong to.

    Args:
        text: the ``error`` of a WS ``error`` frame or of a REST error body.

    Returns:
        ``(reason, kinds)``, most likely kind first; unknown texts give SERVER_ERROR and ``()``.
    """
    stripped = text.strip()
    exact = _EXACT_ERRORS.get(stripped)
    if exact is not None:
        return exact
    for prefix, reason, kinds in _PREFIX_ERRORS:
        if stripped.startswith(prefix):
            return reason, kinds
    return FailureReason.SERVER_ERROR, ()


# ---------------------------------------------------------------------------------------------
# Codec
# ---------------------------------------------------------------------------------------------


def _key(page_id: str, customer_id: str) -> str | None:
    if not page_id or not customer_id:
        return None
    key = conversation_key(Dialect.DASHBOARD, page_id=page_id, customer_id=customer_id)
    return key if split_dashboard_key(key) == (page_id, customer_id) else None


_PAGE_NAME_CACHE = 1_000  # page id -> name entries kept
_KEY_CACHE = 4_096  # (page id, customer id) -> conversation key entries kept

_JSON_SPACE = " \t\n\r"


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN / Infinity: left to pydantic's parser


def _no_float(text: str) -> Any:
    raise ValueError(text)  # any float: left to pydantic's parser (they may differ at the edges)


_DECODER = json.JSONDecoder(parse_float=_no_float, parse_constant=_no_constant)


_NO_STATUS = 1005  # RFC 6455: a Close frame without a status code

_new_message: Callable[..., MessageReceived] = fast_constructor(MessageReceived)  # once per frame


class DashboardCodec:
    """Codec of the dashboard dialect (sans-I/O; see :class:`~tray_agent.core.protocol.base.DialectCodec`).

    Attributes:
        user_id: my Mongo user id, learned from the ``connected`` frame ("" until then).
    """

    dialect: Dialect = Dialect.DASHBOARD
    max_frame_size: int = MAX_FRAME_SIZE
    fast_path: bool = True
    """``new_message`` frames of the common shape are read with ``json.loads`` and dict access
    (the same coercions as the models: ``to_str``, ``to_bool``, ``parse_timestamp``); anything
    unusual falls back to pydantic. False: every frame through pydantic (tests compare both)."""

    def __init__(self) -> None:
        self.user_id = ""
        # new_message frames name the page by id only; customer objects carry its name. A
        # company has a handful of pages, so this map stays small (bounded anyway).
        self._page_names: dict[str, str] = {}
        # Hot-path memory (see _timestamp, _conversation): never changes a result.
        self._last_unix: int | None = None
        self._last_unix_time: datetime | None = None
        self._keys: dict[tuple[str, str], str] = {}

    def _page_name(self, page_id: str) -> str:
        """The page's display name if a customer object named it, else "" (never the bare id)."""
        return self._page_names.get(page_id, "")

    def _learn_page_name(self, page_id: str, page_name: str) -> None:
        if page_id and page_name and self._page_names.get(page_id) != page_name:
            if len(self._page_names) >= _PAGE_NAME_CACHE:
                self._page_names.pop(next(iter(self._page_names)))
            self._page_names[page_id] = page_name

    # -- frames --------------------------------------------------------------------------------

    def parse_frame(self, frame: str | bytes) -> Sequence[Event]:
        """Translate one WebSocket frame into domain events; never raises."""
        if len(frame) > self.max_frame_size:
            return (Ignored(kind="oversized", why=f"frame of {len(frame)} bytes"),)
        if self.fast_path and isinstance(frame, str):
            try:
                fast = self._fast_new_message(frame)
            except Exception:  # the slow path says what went wrong
                fast = None
            if fast is not None:
                return fast
        try:
            parsed = validate_json_lenient(_FRAMES, frame)
        except ValidationError as exc:
            return (classify_unparsed(frame, exc, _HEAD),)
        try:
            return self._translate(parsed)
        except Exception:  # a translation bug must never kill the receive loop
            logger.exception("dashboard frame translation failed")
            kind = getattr(parsed, "type", "")
            return (Ignored(kind=kind if isinstance(kind, str) else "", why="translation error"),)

    def _translate(self, frame: Any) -> Sequence[Event]:
        if isinstance(frame, DashNewMessage):
            return self._new_message(frame)
        if isinstance(frame, DashStopChanged):
            return self._stop_changed(frame)
        if isinstance(frame, DashAgentRequested):
            return self._agent_requested(frame)
        if isinstance(frame, (DashAssignmentChanged, DashAgentStatusChanged, DashCustomerAssignmentUpdated)):
            return self._assignment(frame)
        if isinstance(frame, DashPong):
            return (KeepaliveReceived(kind="pong"),)
        if isinstance(frame, DashMessageSent):
            key = _key(frame.page_id, frame.customer_id)
            return (ServerAcked(kind=CommandKind.REPLY, conversation=key or ""),)
        if isinstance(frame, DashAgentAssigned):
            return self._agent_assigned(frame)
        if isinstance(frame, DashAgentUnassigned):
            return self._agent_unassigned(frame)
        if isinstance(frame, DashStoppedCustomers):
            return self._stopped(frame)
        if isinstance(frame, DashError):
            reason, kinds = classify_error(frame.error)
            return (ServerRejected(reason=reason, text=frame.error, kinds=kinds),)
        if isinstance(frame, DashConnected):
            if frame.user_id:
                self.user_id = frame.user_id
            return (Connected(user_id=frame.user_id or self.user_id),)
        return (Ignored(kind=str(getattr(frame, "type", "")), why="unhandled frame"),)

    def _fast_new_message(self, frame: str) -> Sequence[Event] | None:
        r"""A ``new_message`` frame of the common shape without pydantic, or None (take the slow path).

        The fields go through the models' own coercions (``to_str``, ``to_bool``,
        ``parse_timestamp``), which take any JSON value; only the JSON parsers may disagree, so
        anything where they could (a float or NaN anywhere, a ``\ud800`` surrogate escape, an
        integer of thousands of digits, text around the document, ``data`` not an object) goes the
        slow way.
        """
        if '"new_message"' not in frame or ("\\u" in frame and ("\\ud" in frame or "\\uD" in frame)):
            return None
        try:
            obj, end = _DECODER.raw_decode(frame)
        except (ValueError, RecursionError):
            return None
        if end != len(frame) and frame[end:].strip(_JSON_SPACE):
            return None
        if type(obj) is not dict or obj.get("type") != "new_message":
            return None
        data = obj.get("data")
        if type(data) is not dict:
            return None
        get = data.get
        # The models' coercions, with their no-op cases (a str is a str, a bool a bool) inline.
        timestamp = self._timestamp(get("timestamp"))
        page_id = obj.get("page_id", "")
        chat_id = get("chat_id", "")
        sender_id = get("sender_id", "")
        sender_name = get("sender_name", "")
        recipient_id = get("recipient_id", "")
        message = get("message", "")
        agent_id = get("agent_id", "")
        agent_name = get("agent_name", "")
        is_bot = get("is_bot", False)
        is_human = get("is_human", False)
        requires_human = get("requires_human", False)
        return self._message_event(
            page_id if type(page_id) is str else to_str(page_id),
            self._timestamp(obj.get("timestamp")) if timestamp is None else None,
            chat_id if type(chat_id) is str else to_str(chat_id),
            sender_id if type(sender_id) is str else to_str(sender_id),
            sender_name if type(sender_name) is str else to_str(sender_name),
            recipient_id if type(recipient_id) is str else to_str(recipient_id),
            message if type(message) is str else to_str(message),
            is_bot if type(is_bot) is bool else to_bool(is_bot),
            is_human if type(is_human) is bool else to_bool(is_human),
            agent_id if type(agent_id) is str else to_str(agent_id),
            agent_name if type(agent_name) is str else to_str(agent_name),
            requires_human if type(requires_human) is bool else to_bool(requires_human),
            timestamp,
        )

    def _timestamp(self, value: object) -> datetime | None:
        """``parse_timestamp``, remembering the last unix second (a burst shares a few)."""
        if type(value) is int:
            if value == self._last_unix:
                return self._last_unix_time
            parsed = parse_timestamp(value)
            self._last_unix, self._last_unix_time = value, parsed
            return parsed
        return parse_timestamp(value)

    def _conversation(self, page_id: str, customer_id: str) -> str | None:
        """``_key(page_id, customer_id)``, remembered: one key object per conversation (bounded)."""
        pair = (page_id, customer_id)
        key = self._keys.get(pair)
        if key is None:
            key = _key(page_id, customer_id)
            if key is None:
                return None
            if len(self._keys) >= _KEY_CACHE:
                self._keys.clear()  # a hostile stream of new ids costs a rebuild, never memory
            self._keys[pair] = key
        return key

    def _new_message(self, frame: DashNewMessage) -> Sequence[Event]:
        data = frame.data
        return self._message_event(
            frame.page_id,
            frame.timestamp,
            data.chat_id,
            data.sender_id,
            data.sender_name,
            data.recipient_id,
            data.message,
            data.is_bot,
            data.is_human,
            data.agent_id,
            data.agent_name,
            data.requires_human,
            data.timestamp,
        )

    def _message_event(
        self,
        frame_page_id: str,
        frame_timestamp: datetime | None,
        chat_id: str,
        sender_id: str,
        sender_name: str,
        recipient_id: str,
        message: str,
        is_bot: bool,
        is_human: bool,
        agent_id: str,
        agent_name: str,
        requires_human: bool,
        timestamp: datetime | None,
    ) -> Sequence[Event]:
        if is_bot:
            sender = SenderKind.BOT
        elif is_human:
            sender = SenderKind.AGENT
        else:
            sender = SenderKind.CUSTOMER
        is_customer = sender is SenderKind.CUSTOMER
        customer_id = chat_id or (sender_id if is_customer else recipient_id)
        page_id = frame_page_id or (recipient_id if is_customer else sender_id)
        key = self._conversation(page_id, customer_id)
        if key is None:
            return (Ignored(kind="new_message", why="no page or customer id"),)
        is_agent = sender is SenderKind.AGENT
        return (
            _new_message(
                key,  # conversation
                sender,
                message,  # text
                None,  # attachment
                None,  # message_id (G7)
                timestamp or frame_timestamp,  # sent_at
                sender_name if is_customer else "",  # customer_name
                self._page_names.get(page_id, ""),  # channel: as _page_name
                sender_name or (agent_name if is_agent else ""),  # sender_name
                agent_id if is_agent else "",  # agent_id
                requires_human,
            ),
        )

    def _agent_requested(self, frame: DashAgentRequested) -> Sequence[Event]:
        data = frame.data
        key = _key(frame.page_id, data.chat_id)
        if key is None:
            # The customer_stop_status_changed that follows carries the full customer (2.5).
            return (Ignored(kind="agent_requested", why="no page or customer id"),)
        return (
            HumanRequested(
                conversation=key,
                customer_name=data.customer_name,
                text=data.message,
                at=data.timestamp or frame.timestamp,
            ),
        )

    def _stop_changed(self, frame: DashStopChanged) -> Sequence[Event]:
        data = frame.data
        customer = data.customer
        if customer is None:
            return (Ignored(kind="customer_stop_status_changed", why="no customer"),)
        summary = self.customer_summary(customer, page_id=frame.page_id)
        if summary is None:
            return (Ignored(kind="customer_stop_status_changed", why="no page or customer id"),)
        return (
            WaitingChanged(
                conversation=summary.conversation,
                waiting=data.stop,
                customer=summary,
                at=data.timestamp or frame.timestamp,
            ),
        )

    def _assignment(
        self, frame: DashAssignmentChanged | DashAgentStatusChanged | DashCustomerAssignmentUpdated
    ) -> Sequence[Event]:
        data = frame.data
        customer = data.customer
        summary = self.customer_summary(customer, page_id=frame.page_id) if customer is not None else None
        key = summary.conversation if summary is not None else _key(frame.page_id, data.customer_id)
        if key is None:
            return (Ignored(kind=frame.type, why="no page or customer id"),)
        if isinstance(frame, DashCustomerAssignmentUpdated):
            assigned = (
                data.is_assigned if data.is_assigned is not None else bool(summary and summary.assigned)
            )
        else:
            assigned = data.action == "assigned"
        agent: AgentRef | None = None
        is_me: bool | None = None
        if assigned:
            agent_id = data.agent_id or (customer.agent_id if customer is not None else "")
            agent = AgentRef(
                agent_id=agent_id,
                name=data.agent_name or (customer.agent_name if customer is not None else ""),
                email=data.agent_email or (customer.agent_email if customer is not None else ""),
            )
            if agent_id and self.user_id:
                is_me = agent_id == self.user_id
        elif data.agent_email:
            # agent_status_changed names the requester, who is the (former) assignee.
            agent = AgentRef(email=data.agent_email, name=data.agent_name)
        return (
            AssignmentChanged(
                conversation=key,
                action=AssignmentAction.ASSIGNED if assigned else AssignmentAction.UNASSIGNED,
                agent=agent,
                is_me=is_me,
                customer=summary,
                at=data.timestamp or frame.timestamp,
            ),
        )

    def _agent_assigned(self, frame: DashAgentAssigned) -> Sequence[Event]:
        data = frame.data
        summary = self.customer_summary(data.customer) if data.customer is not None else None
        key = summary.conversation if summary is not None else ""
        ack = ServerAcked(kind=CommandKind.TAKE_OVER, conversation=key)
        if summary is None:
            return (ack,)
        change = AssignmentChanged(
            conversation=key,
            action=AssignmentAction.ASSIGNED,
            agent=AgentRef(
                agent_id=data.agent_id or self.user_id, name=data.agent_name, email=data.agent_email
            ),
            is_me=True,
            customer=summary,
            at=frame.timestamp,
        )
        return (ack, change)

    def _agent_unassigned(self, frame: DashAgentUnassigned) -> Sequence[Event]:
        data = frame.data
        summary = self.customer_summary(data.customer) if data.customer is not None else None
        key = summary.conversation if summary is not None else ""
        ack = ServerAcked(kind=CommandKind.RELEASE, conversation=key)
        if summary is None:
            return (ack,)
        change = AssignmentChanged(
            conversation=key,
            action=AssignmentAction.UNASSIGNED,
            agent=None,
            is_me=True,  # only the assignee can unassign over WS: it was me who let go
            customer=summary,
            at=frame.timestamp,
        )
        return (ack, change)

    def _stopped(self, frame: DashStoppedCustomers) -> Sequence[Event]:
        data = frame.data
        rows = self._summaries(data.customers)
        pagination = data.pagination
        skip = max(0, pagination.skip or 0)
        page = WaitingListPage(
            customers=rows,
            offset=skip,
            total=pagination.total,
            has_more=pagination.has_more and bool(data.customers),  # an empty page ends the paging
            complete_list=not data.page_id,  # a page-filtered list says nothing about other pages
        )
        return (page, ServerAcked(kind=CommandKind.REFRESH))

    def _summaries(self, customers: Sequence[DashCustomerIn]) -> tuple[ConversationSummary, ...]:
        rows = []
        for customer in customers:
            summary = self.customer_summary(customer)
            if summary is not None:
                rows.append(summary)
        return tuple(rows)

    def customer_summary(self, customer: DashCustomerIn, *, page_id: str = "") -> ConversationSummary | None:
        """Summarise a Customer object; None when it has no usable (page_id, customer_id)."""
        page = customer.page_id or page_id
        key = _key(page, customer.customer_id)
        if key is None:
            return None
        name = customer.customer_name or " ".join(p for p in (customer.first_name, customer.last_name) if p)
        assigned = customer.is_assigned or bool(customer.agent_id)
        agent = (
            AgentRef(agent_id=customer.agent_id, name=customer.agent_name, email=customer.agent_email)
            if assigned
            else None
        )
        to_me = customer.is_assigned_to_me
        if to_me is None:
            if not assigned:
                to_me = False
            elif customer.agent_id and self.user_id:
                to_me = customer.agent_id == self.user_id
        self._learn_page_name(page, customer.page_name)
        return ConversationSummary(
            conversation=key,
            customer_name=name,
            channel=customer.page_name or self._page_name(page),
            last_message=customer.last_message,
            last_message_at=customer.last_seen or customer.updated_at,
            waiting=customer.stop,
            waiting_since=customer.stopped_at if customer.stop else None,
            assigned=assigned,
            agent=agent,
            assigned_to_me=to_me,
        )

    # -- commands ------------------------------------------------------------------------------

    def encode(self, command: Command) -> Outbound | Plan:
        """Express a command as a WebSocket frame (history: a REST call; two-step commands: a Plan).

        Raises:
            EncodeError: INVALID for a bad conversation key, MISSING_FIELDS for an empty reply.
        """
        if isinstance(command, Ping):
            return WsFrame(text=_PING)
        if isinstance(command, RefreshWaitingList):
            query = DashStoppedQuery(
                limit=clamp(command.limit, 1, MAX_STOPPED_PAGE), skip=max(0, command.offset)
            )
            return WsFrame(text=DashGetStoppedCustomers(data=query).model_dump_json())
        if isinstance(command, TakeOver):
            page_id, customer_id = _split(command.conversation)
            target = DashTarget(customer_id=customer_id, page_id=page_id)
            assign = WsFrame(text=DashAssignAgent(data=target).model_dump_json())
            return Plan(steps=(_stop_call(page_id, customer_id, stop=True), assign))
        if isinstance(command, Resolve | HandBack):
            page_id, customer_id = _split(command.conversation)
            unassign = HttpCall(
                method="DELETE",
                path=f"{_BASE}/customers/{quote(customer_id, safe='')}/agent",
                json=DashPageBody(page_id=page_id).model_dump(),
            )
            return Plan(steps=(unassign, _stop_call(page_id, customer_id, stop=False)))
        if isinstance(command, Release):
            page_id, customer_id = _split(command.conversation)
            target = DashTarget(customer_id=customer_id, page_id=page_id)
            return WsFrame(text=DashUnassignAgent(data=target).model_dump_json())
        if isinstance(command, SendReply):
            page_id, customer_id = _split(command.conversation)
            if not command.text.strip():
                raise EncodeError(FailureReason.MISSING_FIELDS, "the reply is empty")
            frame = DashSendMessage(customer_id=customer_id, page_id=page_id, message=command.text)
            return WsFrame(text=frame.model_dump_json())
        if isinstance(command, LoadHistory):
            page_id, customer_id = _split(command.conversation)
            return HttpCall(
                method="GET",
                path=f"{_BASE}/messages/conversation/{quote(customer_id, safe='')}",
                query=(
                    ("page_id", page_id),
                    ("page", str(max(0, command.page) + 1)),
                    ("limit", str(clamp(command.limit, 1, MAX_REST_PAGE))),
                ),
            )
        raise EncodeError(
            FailureReason.INVALID, f"the dashboard dialect cannot express {type(command).__name__}"
        )

    def encode_rest(self, command: Command) -> HttpCall:
        """REST fallback (WebSocket blocked): the HTTP call for a refresh page or a reply.

        ``RefreshWaitingList`` -> ``GET /api/dashboard/customers`` (all customers; ``stop`` marks the
        waiting ones), ``SendReply`` -> ``POST /api/dashboard/customers/:id/message``. Answers go to
        :meth:`parse_response`.

        Raises:
            EncodeError: as :meth:`encode`; INVALID for other command kinds.
        """
        if isinstance(command, RefreshWaitingList):
            limit = clamp(command.limit, 1, MAX_REST_PAGE)
            return HttpCall(
                method="GET",
                path=f"{_BASE}/customers",
                query=(("page", str(max(0, command.offset) // limit + 1)), ("limit", str(limit))),
            )
        if isinstance(command, SendReply):
            page_id, customer_id = _split(command.conversation)
            if not command.text.strip():
                raise EncodeError(FailureReason.MISSING_FIELDS, "the reply is empty")
            body = DashRestSendBody(page_id=page_id, message=command.text)
            return HttpCall(
                method="POST",
                path=f"{_BASE}/customers/{quote(customer_id, safe='')}/message",
                json=body.model_dump(),
            )
        if isinstance(command, LoadHistory):
            out = self.encode(command)
            assert isinstance(out, HttpCall)
            return out
        raise EncodeError(FailureReason.INVALID, f"no REST fallback for {type(command).__name__}")

    def parse_response(self, command: Command, status: int, body: bytes) -> Sequence[Event]:
        """Translate an HTTP answer (history; REST-fallback refresh and reply); never raises."""
        try:
            if not 200 <= status < 300:
                failure = _rest_failure(command, status, body)
                if isinstance(command, Resolve | HandBack):
                    # The last step of the plan: the customer is already released (step 1 passed).
                    text = f"Released, but the bot could not take the customer back: {failure.text}"
                    failure = failed(command, failure.reason, text)
                return (failure,)
            if isinstance(command, LoadHistory):
                return self.parse_history(command, body)
            if isinstance(command, RefreshWaitingList):
                return self.parse_customers_page(command, body)
            if isinstance(command, SendReply):
                return parse_send_answer(command, status, body)
            return (succeeded(command),)
        except Exception:
            logger.exception("dashboard response translation failed")
            if 200 <= status < 300:
                return (succeeded(command),)
            return (failed(command, FailureReason.SERVER_ERROR, f"HTTP {status}"),)

    def parse_step(self, command: Command, index: int, status: int, body: bytes) -> Sequence[Event]:
        """A first step of a Plan (stop the bot / release): nothing on success; never raises."""
        if 200 <= status < 300:
            return ()
        try:
            failure = _rest_failure(command, status, body)
        except Exception:
            logger.exception("dashboard step translation failed")
            failure = failed(command, FailureReason.SERVER_ERROR, f"HTTP {status}")
        what = "stop the bot" if isinstance(command, TakeOver) else "release the customer"
        text = f"Could not {what}, so nothing was changed: {failure.text}"
        return (failed(command, failure.reason, text),)

    def parse_history(self, command: LoadHistory, body: bytes) -> Sequence[Event]:
        """``GET /messages/conversation/:id`` (newest first) -> HistoryPage, oldest first."""
        try:
            answer = validate_json_lenient(_HISTORY, body)
        except ValidationError:
            return (failed(command, FailureReason.SERVER_ERROR, "unreadable history"),)
        split = split_dashboard_key(command.conversation)
        page_id = split[0] if split else answer.page_id
        items = _oldest_first(answer)
        messages = tuple(
            _history_message(item, command.conversation, page_id, answer.page_name) for item in items
        )
        pagination = answer.pagination
        has_more = pagination.has_more
        if not has_more and pagination.page is not None and pagination.total_pages is not None:
            has_more = pagination.page < pagination.total_pages
        history = HistoryPage(conversation=command.conversation, messages=messages, has_more=has_more)
        return (succeeded(command), history)

    def parse_customers_page(self, command: RefreshWaitingList, body: bytes) -> Sequence[Event]:
        """REST fallback: a ``GET /api/dashboard/customers`` page -> WaitingListPage (+ success)."""
        try:
            answer = validate_json_lenient(_CUSTOMERS, body)
        except ValidationError:
            return (failed(command, FailureReason.SERVER_ERROR, "unreadable customer list"),)
        pagination = answer.pagination
        if pagination.page is not None and pagination.limit is not None and pagination.page > 0:
            offset = (pagination.page - 1) * max(0, pagination.limit)
        else:
            offset = max(0, command.offset)
        page = WaitingListPage(
            customers=self._summaries(answer.customers),
            offset=offset,
            total=pagination.total,
            has_more=pagination.has_more and bool(answer.customers),  # an empty page ends the paging
            complete_list=not answer.page_id,
        )
        return (succeeded(command), page)

    # -- the socket --------------------------------------------------------------------------

    def ws_url(self, base: str, *, token: str = "", org: str = "") -> str:
        """``/api/dashboard/ws`` on ``base`` (the session cookie travels in a header, not the URL)."""
        return websocket_url(base, "/api/dashboard/ws")

    def signed_in(self, user_id: str) -> None:
        """Remember my user id from the login answer (the ``connected`` frame repeats it)."""
        if user_id:
            self.user_id = user_id

    def displaced(self, close_code: int | None) -> bool:
        """An empty Close frame (1005): the server dropped us from its one-socket-per-user map.

        PROTOCOL.md 2.5 / G4: a second socket of my user replaced ours, and the cleanup of the
        older one closes the newer one's queue without a status code.
        """
        return close_code == _NO_STATUS

    # -- keepalive -----------------------------------------------------------------------------

    def ping_frame(self) -> str:
        """The application-level ping (``{"type":"ping"}``)."""
        return _PING

    def pong_frame(self) -> str:
        """``{"type":"pong"}`` (this server never sends JSON pings; kept for the protocol)."""
        return _PONG


# ---------------------------------------------------------------------------------------------
# Module helpers
# ---------------------------------------------------------------------------------------------


def parse_send_answer(command: SendReply, status: int, body: bytes) -> Sequence[Event]:
    """REST fallback: the answer to ``POST /api/dashboard/customers/:id/message``; never raises.

    2xx -> CommandSucceeded (no message id exists, G7). 400 "has not requested human assistance",
    403 "already assigned", 500 "Failed to send message to customer: ..." -> CommandFailed.
    """
    try:
        if 200 <= status < 300:
            return (succeeded(command),)
        return (_rest_failure(command, status, body),)
    except Exception:
        logger.exception("dashboard send answer translation failed")
        return (failed(command, FailureReason.SERVER_ERROR, f"HTTP {status}"),)


def _oldest_first(answer: DashHistoryIn) -> list[DashHistoryItemIn]:
    """The history items, oldest first, whichever key and order the server used.

    ``/messages/conversation/:id`` answers ``conversation`` newest first, ``/messages/chat/:id``
    answers ``messages`` oldest first (G13); other builds (and the demo, once) mixed them up. The
    order is read from the first and last timestamps; only when they cannot tell is it assumed
    from the key.
    """
    items = list(answer.conversation or answer.messages)
    newest_first = bool(answer.conversation)
    stamped = [item.timestamp for item in items if item.timestamp is not None]
    if len(stamped) >= 2 and stamped[0] != stamped[-1]:
        newest_first = stamped[0] > stamped[-1]
    if newest_first:
        items.reverse()
    return items


def _history_message(
    item: DashHistoryItemIn, conversation: str, page_id: str, page_name: str
) -> MessageReceived:
    if item.is_human:
        sender = SenderKind.AGENT
    elif item.is_bot or item.type == "bot":
        sender = SenderKind.BOT
    else:
        sender = SenderKind.CUSTOMER
    return MessageReceived(
        conversation=conversation,
        sender=sender,
        text=item.message,
        message_id=None,
        sent_at=item.timestamp,
        customer_name=item.sender_name if sender is SenderKind.CUSTOMER else "",
        channel=item.page_name or page_name or page_id,
        sender_name=item.sender_name or (item.agent_name if sender is SenderKind.AGENT else ""),
        agent_id=item.agent_id if sender is SenderKind.AGENT else "",
    )


def _stop_call(page_id: str, customer_id: str, *, stop: bool) -> HttpCall:
    return HttpCall(
        method="PUT",
        path=f"{_BASE}/customers/{quote(customer_id, safe='')}/stop",
        json=DashStopBody(page_id=page_id, stop=stop).model_dump(),
    )


def _split(conversation: str) -> tuple[str, str]:
    split = split_dashboard_key(conversation)
    if split is None:
        raise EncodeError(FailureReason.INVALID, f"not a dashboard conversation key: {conversation!r}")
    return split


def _rest_failure(command: Command, status: int, body: bytes) -> CommandFailed:
    try:
        answer = _ERROR.validate_json(body)
        text = answer.error
    except ValidationError:
        text = ""
    if text:
        reason, kinds = classify_error(text)
        if kinds or reason is not FailureReason.SERVER_ERROR:
            return failed(command, reason, text)
    return failed(command, _reason_for_status(status), text or f"HTTP {status}")


def _reason_for_status(status: int) -> FailureReason:
    if status in (401, 403):
        return FailureReason.ACCESS_DENIED
    if status == 404:
        return FailureReason.NOT_FOUND
    if status == 409:
        return FailureReason.ALREADY_ASSIGNED
    if status in (400, 422):
        return FailureReason.MISSING_FIELDS
    return FailureReason.SERVER_ERROR


__all__ = [
    "MAX_FRAME_SIZE",
    "DashCustomerIn",
    "DashFrame",
    "DashboardCodec",
    "classify_error",
    "parse_send_answer",
]
