"""``tray-agent://`` links and plain conversation ids: parsing, validation and building."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

SCHEME = "tray-agent"
MAX_CONVERSATION_LENGTH = 512


class DeepLinkAction(enum.StrEnum):
    """What a link asks the app to do."""

    OPEN = "open"


class DeepLinkError(ValueError):
    """A link or id the app does not accept; the message is plain words for the user."""


class Msg:
    """Every user-visible text of this module, in one place (a later issue translates them)."""

    EMPTY = "The link is empty."
    WRONG_SCHEME = "This is not a tray-agent link (it starts with {scheme}:)."
    UNKNOWN_ACTION = "The link asks for {action!r}, which this version cannot do; only 'open' is known."
    NO_CONVERSATION = "The link names no conversation."
    BAD_CONVERSATION = "The conversation id in the link is not valid."
    TOO_LONG = "The conversation id is too long."


@dataclass(frozen=True, slots=True)
class DeepLink:
    """A parsed link: what to do with which conversation.

    Attributes:
        action: what to do.
        conversation: the conversation key, as ``tray-agent listen`` prints it (opaque; dashboard
            keys are ``"<page_id>/<customer_id>"``).
    """

    action: DeepLinkAction
    conversation: str

    def to_url(self) -> str:
        """The link as a URL (see :func:`build_link`)."""
        return build_link(self.conversation, self.action)


def build_link(conversation: str, action: DeepLinkAction = DeepLinkAction.OPEN) -> str:
    """``tray-agent://open/<conversation>`` with the conversation percent-encoded (``/`` too).

    Raises:
        DeepLinkError: the conversation id is empty or not valid.
    """
    _check_conversation(conversation)
    return f"{SCHEME}://{action.value}/{quote(conversation, safe='')}"


def parse_link(text: str) -> DeepLink:
    """Parse a ``tray-agent://`` link, or a plain conversation id (which means "open it").

    Accepted: ``tray-agent://open/<conversation>`` (percent-encoded; an unencoded ``/`` inside a
    dashboard key is accepted too), ``tray-agent:open/<conversation>``, and a bare conversation id
    such as ``1001/77``.

    Raises:
        DeepLinkError: anything else, with a plain-words message.
    """
    text = text.strip()
    if not text:
        raise DeepLinkError(Msg.EMPTY)
    scheme, sep, _rest = text.partition(":")
    looks_like_url = sep and scheme and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()
    if not looks_like_url or not scheme[0].isalpha():
        return DeepLink(DeepLinkAction.OPEN, _check_conversation(text))
    if scheme.lower() != SCHEME:
        raise DeepLinkError(Msg.WRONG_SCHEME.format(scheme=scheme.lower()))
    parts = urlsplit(text)
    if parts.netloc:  # tray-agent://open/<conversation>
        action_text, path = parts.netloc, parts.path.removeprefix("/")
    else:  # tray-agent:open/<conversation>
        action_text, _, path = parts.path.lstrip("/").partition("/")
    try:
        action = DeepLinkAction(unquote(action_text).lower())
    except ValueError:
        raise DeepLinkError(Msg.UNKNOWN_ACTION.format(action=unquote(action_text))) from None
    if not path:
        raise DeepLinkError(Msg.NO_CONVERSATION)
    return DeepLink(action, _check_conversation(unquote(path)))


def _check_conversation(conversation: str) -> str:
    if not conversation or not conversation.strip():
        raise DeepLinkError(Msg.NO_CONVERSATION)
    if len(conversation) > MAX_CONVERSATION_LENGTH:
        raise DeepLinkError(Msg.TOO_LONG)
    if conversation != conversation.strip() or any(ch < " " or ch == "\x7f" for ch in conversation):
        raise DeepLinkError(Msg.BAD_CONVERSATION)
    try:
        conversation.encode("utf-8")  # a lone surrogate cannot travel in a URL (or a socket)
    except UnicodeEncodeError:
        raise DeepLinkError(Msg.BAD_CONVERSATION) from None
    return conversation
